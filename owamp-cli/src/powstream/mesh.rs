//! What the peers' threads share: the console they write their messages and file names to
//! (one thread writes them all, whole lines, in the order they came), and the backoff of a peer
//! that fails.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::time::Duration;

use owamp_std::control::StopHandle;
use rand_core::RngCore;

/// Lines waiting for the console at most; a peer that gets ahead of it waits (bounded memory).
const CONSOLE_QUEUE: usize = 1024;

/// How often the console thread looks at the signal flag and at the peers' threads.
const CONSOLE_POLL: Duration = Duration::from_millis(50);

/// A line for standard output or standard error.
pub(crate) enum Line {
    Out(Vec<u8>),
    Err(Vec<u8>),
}

/// Creates the console's queue.
pub(crate) fn console() -> (SyncSender<Line>, Receiver<Line>) {
    mpsc::sync_channel(CONSOLE_QUEUE)
}

/// A `Write` that sends whole lines to the console (the rest when flushed or dropped).
pub(crate) struct ConsoleWriter {
    tx: SyncSender<Line>,
    to_err: bool,
    buf: Vec<u8>,
}

impl ConsoleWriter {
    pub(crate) fn out(tx: SyncSender<Line>) -> Self {
        Self {
            tx,
            to_err: false,
            buf: Vec::new(),
        }
    }

    pub(crate) fn err(tx: SyncSender<Line>) -> Self {
        Self {
            tx,
            to_err: true,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, upto: usize) -> std::io::Result<()> {
        let rest = self.buf.split_off(upto);
        let bytes = std::mem::replace(&mut self.buf, rest);
        let line = if self.to_err {
            Line::Err(bytes)
        } else {
            Line::Out(bytes)
        };
        self.tx
            .send(line)
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

impl Write for ConsoleWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if let Some(i) = self.buf.iter().rposition(|&c| c == b'\n') {
            self.send(i + 1)?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.send(self.buf.len())?;
        }
        Ok(())
    }
}

impl Drop for ConsoleWriter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// Writes the console's lines to `out` and `err` until every thread of `running` is over,
/// passing a signal (`stop`) on to each peer's own stop flag. A failure to write standard
/// output sets `abort`, which stops every peer, as a write error stops a single powstream.
pub(crate) fn serve(
    rx: &Receiver<Line>,
    out: &mut dyn Write,
    err: &mut dyn Write,
    stop: &StopHandle,
    peers: &[StopHandle],
    running: &dyn Fn() -> bool,
    abort: &AtomicBool,
) {
    let mut write = |line: Line| match line {
        Line::Out(b) => {
            if let Err(e) = out.write_all(&b).and_then(|()| out.flush()) {
                let _ = writeln!(
                    err,
                    "powstream[{}]: standard output: {e}",
                    std::process::id()
                );
                if !super::is_temporary(&e) {
                    abort.store(true, Ordering::SeqCst);
                }
            }
        }
        Line::Err(b) => {
            let _ = err.write_all(&b).and_then(|()| err.flush());
        }
    };
    loop {
        match rx.recv_timeout(CONSOLE_POLL) {
            Ok(line) => write(line),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if stop.is_stopped() || abort.load(Ordering::SeqCst) {
            for p in peers {
                p.stop();
            }
        }
        if !running() {
            // Every peer is done: what they sent last is already queued.
            while let Ok(line) = rx.try_recv() {
                write(line);
            }
            break;
        }
    }
}

/// The wait before a failing peer tries again: the retry delay (`-I`) after the first failure,
/// doubling after each further one up to [`BACKOFF_CAP`] (or `-I`, if longer), each drawn
/// uniformly from the upper half of that (so that peers that failed together do not retry
/// together).
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

/// The longest wait between two attempts, unless `-I` is longer.
pub(crate) const BACKOFF_CAP: Duration = Duration::from_secs(600);

impl Backoff {
    pub(crate) fn new(base: Duration) -> Self {
        let base = base.max(Duration::from_millis(100));
        Self {
            base,
            cap: BACKOFF_CAP.max(base),
            failures: 0,
        }
    }

    /// The longest wait: [`BACKOFF_CAP`], or the retry delay if that is longer.
    #[cfg(test)]
    pub(crate) fn cap(&self) -> Duration {
        self.cap
    }

    /// After a success.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }

    /// After a failure: how long to wait.
    pub(crate) fn next_delay(&mut self, rng: &mut dyn RngCore) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << self.failures.min(20))
            .min(self.cap);
        self.failures = self.failures.saturating_add(1);
        // Uniform in [ceiling / 2, ceiling], to the millisecond.
        let half = ceiling / 2;
        let span = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(rng.next_u64() % span.saturating_add(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let mut rng = owamp_os::rng::OsRng;
        let mut b = Backoff::new(Duration::from_secs(1));
        for k in 0..14u32 {
            let ceiling = Duration::from_secs(1u64 << k).min(b.cap());
            let d = b.next_delay(&mut rng);
            assert!(d >= ceiling / 2 && d <= ceiling, "{k}: {d:?}");
        }
        b.reset();
        assert!(b.next_delay(&mut rng) <= Duration::from_secs(1));
        // -I 0 never spins; a retry delay over the cap is kept.
        let mut z = Backoff::new(Duration::ZERO);
        assert!(z.next_delay(&mut rng) >= Duration::from_millis(50));
        let mut long = Backoff::new(Duration::from_secs(3600));
        assert!(long.next_delay(&mut rng) >= Duration::from_secs(1800));
    }

    #[test]
    fn the_console_writes_whole_lines_in_order() {
        let (tx, rx) = console();
        let mut o = ConsoleWriter::out(tx.clone());
        let mut e = ConsoleWriter::err(tx);
        write!(o, "a").unwrap();
        e.write_all(b"x\n").unwrap();
        writeln!(o, "b").unwrap();
        write!(o, "tail").unwrap();
        drop(o);
        drop(e);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let abort = AtomicBool::new(false);
        serve(
            &rx,
            &mut out,
            &mut err,
            &StopHandle::new(),
            &[],
            &|| true,
            &abort,
        );
        assert_eq!(out, b"ab\ntail");
        assert_eq!(err, b"x\n");
        assert!(!abort.load(Ordering::SeqCst));
    }
}
