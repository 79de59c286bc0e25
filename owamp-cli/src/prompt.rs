//! Reading a pass-phrase: from the terminal without echo, or one line of standard input when
//! it is not a terminal (for scripts).

use std::io::{BufRead, Write};

/// Whether standard input is a terminal.
pub fn stdin_is_tty() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(libc::STDIN_FILENO) == 1 }
}

/// Turns terminal echo off on standard input until dropped.
struct EchoOff(Option<libc::termios>);

impl EchoOff {
    fn new() -> Self {
        // SAFETY: an all-zero termios is valid storage for tcgetattr, which fills it.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: t is valid, writable storage.
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut t) } != 0 {
            return Self(None);
        }
        let saved = t;
        t.c_lflag &= !libc::ECHO;
        // SAFETY: t is a valid termios obtained from tcgetattr.
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSAFLUSH, &t) } != 0 {
            return Self(None);
        }
        Self(Some(saved))
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            // SAFETY: t is the termios read by tcgetattr before echo was turned off.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSAFLUSH, t);
            }
        }
    }
}

/// Reads one line (without its line end) from `input`; `None` at end of input.
pub fn read_line(input: &mut dyn BufRead) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    if input.read_until(b'\n', &mut line)? == 0 {
        return Ok(None);
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    Ok(Some(line))
}

/// Asks for a pass-phrase: on a terminal, prints `prompt` to standard error and reads without
/// echo; otherwise reads one line of standard input. `None` when nothing could be read.
pub fn read_passphrase(prompt: &str) -> std::io::Result<Option<Vec<u8>>> {
    let stdin = std::io::stdin();
    if stdin_is_tty() {
        let mut err = std::io::stderr();
        write!(err, "{prompt}")?;
        err.flush()?;
        let line = {
            let _echo = EchoOff::new();
            read_line(&mut stdin.lock())?
        };
        writeln!(err)?;
        Ok(line)
    } else {
        read_line(&mut stdin.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_lose_their_ends() {
        let mut input: &[u8] = b"secret words\r\nnext\n";
        assert_eq!(
            read_line(&mut input).unwrap(),
            Some(b"secret words".to_vec())
        );
        assert_eq!(read_line(&mut input).unwrap(), Some(b"next".to_vec()));
        assert_eq!(read_line(&mut input).unwrap(), None);
    }
}
