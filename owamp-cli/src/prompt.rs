//! Reading a pass-phrase: from the terminal without echo, or one line of standard input when
//! it is not a terminal (for scripts).
//!
//! The pass-phrase is read straight from the descriptor, one octet at a time, into a buffer
//! that never grows and becomes the [`Passphrase`]: no stdio buffer or reallocated copy keeps
//! it, and nothing after its line is consumed.

use std::io::{Read, Write};

use owamp_core::crypto::Passphrase;
use zeroize::{Zeroize, Zeroizing};

/// The longest pass-phrase read: a longer line is an error, not an allocation.
pub const MAX_PASSPHRASE_LEN: usize = 4096;

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

/// Standard input read with read(2), bypassing the standard library's buffer (which would
/// keep a copy of the pass-phrase, and read past its line).
struct RawStdin;

impl Read for RawStdin {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // SAFETY: buf is valid, writable storage of buf.len() octets.
        let n = unsafe { libc::read(libc::STDIN_FILENO, buf.as_mut_ptr().cast(), buf.len()) };
        usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
    }
}

/// Reads one line (without its line end: `\n`, and any `\r` before it) from `input`, one
/// octet at a time; `None` at end of input. A line longer than [`MAX_PASSPHRASE_LEN`] is an
/// `InvalidData` error.
pub fn read_line(input: &mut dyn Read) -> std::io::Result<Option<Passphrase>> {
    // Allocated once at its largest, so that it never moves (and leaves a copy behind).
    let mut line = Zeroizing::new(Vec::with_capacity(MAX_PASSPHRASE_LEN));
    let mut octet = [0u8; 1];
    let mut seen = false;
    loop {
        match input.read(&mut octet) {
            Ok(0) => break,
            Ok(_) => {
                seen = true;
                if octet[0] == b'\n' {
                    break;
                }
                if line.len() == MAX_PASSPHRASE_LEN {
                    octet.zeroize();
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("pass-phrase longer than {MAX_PASSPHRASE_LEN} octets"),
                    ));
                }
                line.push(octet[0]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    octet.zeroize();
    if !seen {
        return Ok(None);
    }
    while line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(Passphrase::new(std::mem::take(&mut *line))))
}

/// Asks for a pass-phrase: on a terminal, prints `prompt` to standard error and reads without
/// echo; otherwise reads one line of standard input. `None` when nothing could be read.
pub fn read_passphrase(prompt: &str) -> std::io::Result<Option<Passphrase>> {
    if stdin_is_tty() {
        let mut err = std::io::stderr();
        write!(err, "{prompt}")?;
        err.flush()?;
        let line = {
            let _echo = EchoOff::new();
            read_line(&mut RawStdin)?
        };
        writeln!(err)?;
        Ok(line)
    } else {
        read_line(&mut RawStdin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_lose_their_ends() {
        let mut input: &[u8] = b"secret words\r\nnext\n\nlast";
        assert_eq!(
            read_line(&mut input).unwrap(),
            Some(Passphrase::from("secret words"))
        );
        assert_eq!(read_line(&mut input).unwrap(), Some("next".into()));
        assert_eq!(read_line(&mut input).unwrap(), Some("".into()));
        assert_eq!(read_line(&mut input).unwrap(), Some("last".into()));
        assert_eq!(read_line(&mut input).unwrap(), None);
    }

    #[test]
    fn nothing_after_the_line_is_consumed() {
        let mut input: &[u8] = b"pass\nrest of the input";
        read_line(&mut input).unwrap();
        assert_eq!(input, b"rest of the input");
    }

    #[test]
    fn an_endless_line_is_refused() {
        let long = vec![b'x'; MAX_PASSPHRASE_LEN + 1];
        let e = read_line(&mut long.as_slice()).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        let mut exact = vec![b'y'; MAX_PASSPHRASE_LEN];
        exact.push(b'\n');
        let p = read_line(&mut exact.as_slice()).unwrap().unwrap();
        assert_eq!(p.len(), MAX_PASSPHRASE_LEN);
    }
}
