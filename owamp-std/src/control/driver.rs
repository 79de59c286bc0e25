//! Drives one control state machine (client or server) over a `TcpStream`, carrying out every
//! output as `owamp_core::io` describes: octets to the stream, the timer, test endpoints
//! bound, started, stopped and finished, stored sessions looked up.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use owamp_core::control::ControlError;
use owamp_core::io::{Input, SessionReport, StoredSession};
use owamp_core::time::OwampTime;

use super::common::{DriverState, Ending, Event, Io, Machine};
use super::StopHandle;
use crate::endpoint::{EndpointConfig, RunningEndpoint};
use owamp_os::clock::Clock;
use owamp_os::store::SessionStore;

/// The longest wait of an idle connection (no test endpoint running): how fast a stop or
/// shutdown flag is noticed then.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// One control connection being driven.
pub(crate) struct Driver<M> {
    pub s: DriverState<M, RunningEndpoint>,
    stream: TcpStream,
    ep: EndpointConfig,
    reports_tx: mpsc::Sender<SessionReport>,
    reports_rx: mpsc::Receiver<SessionReport>,
    buf: Vec<u8>,
    /// How long writing one [`Output::Transmit`](owamp_core::io::Output::Transmit) may take
    /// in all.
    io_timeout: Duration,
    pub closed: bool,
    pub stop: Option<StopHandle>,
    pub stop_fed: bool,
}

impl<M: Machine> Driver<M> {
    pub fn new(
        m: M,
        stream: TcpStream,
        ep: EndpointConfig,
        store: Option<Arc<dyn SessionStore>>,
        stop: Option<StopHandle>,
        io_timeout: Duration,
    ) -> io::Result<Self> {
        stream.set_nodelay(true)?;
        let io_timeout = io_timeout.max(Duration::from_millis(1));
        stream.set_write_timeout(Some(io_timeout))?;
        let (reports_tx, reports_rx) = mpsc::channel();
        let mut d = Self {
            s: DriverState::new(m, ep.clock.clone(), store),
            stream,
            ep,
            reports_tx,
            reports_rx,
            buf: vec![0u8; 16 * 1024],
            io_timeout,
            closed: false,
            stop,
            stop_fed: false,
        };
        // The state machine may have queued outputs when it was built (Server-Greeting).
        d.drain();
        Ok(d)
    }

    pub fn now(&self) -> OwampTime {
        self.s.clock.now()
    }

    /// Feeds one input and carries out everything that follows from it.
    pub fn feed(&mut self, input: Input<'_>) -> Result<(), ControlError> {
        let r = self.s.handle(input);
        self.drain();
        r
    }

    fn drain(&mut self) {
        while let Some(io) = self.s.next_io() {
            match io {
                Io::Transmit(bytes) => {
                    if !self.closed {
                        // A peer that stops reading, or reads a few octets at a time, cannot
                        // hold us for longer than the I/O timeout.
                        if write_all_within(&mut self.stream, &bytes, self.io_timeout).is_err() {
                            self.s.peer_closed();
                        }
                    }
                }
                Io::StartSessions => {
                    let (ep, tx) = (&self.ep, &self.reports_tx);
                    self.s.start_sessions(|e| e.start(ep, Some(tx.clone())));
                }
                Io::Finish(ended) => {
                    for (r, ending) in ended {
                        if let Some(s) = ending.stored(r.finish()) {
                            self.keep(s);
                        }
                    }
                }
                Io::TestComplete => {
                    self.finish_endpoints();
                    self.s.events.push_back(Event::TestComplete);
                }
                Io::Fetch { sid, store } => self.s.fetch_reply(store.load(&sid)),
                Io::Close(reason) => {
                    self.close_now();
                    self.s.events.push_back(Event::Closed(reason));
                }
            }
        }
    }

    /// A local receive session is over: store it (server) and tell the application.
    fn keep(&mut self, s: StoredSession) {
        let saved = self.s.store().map_or(true, |store| store.save(&s).is_ok());
        self.s.received(s, saved);
    }

    /// Stops and joins every endpoint thread still there (each within its poll interval).
    fn finish_endpoints(&mut self) {
        for r in self.s.end_endpoints() {
            let _ = r.finish();
        }
    }

    /// Closes the connection at once and ends every endpoint. A receiver still running (the
    /// state machine normally reports it first with `SessionsAborted`) is kept as incomplete,
    /// so records received are never thrown away.
    pub fn close_now(&mut self) {
        if !self.closed {
            self.closed = true;
            let _ = self.stream.flush();
            let _ = self.stream.shutdown(Shutdown::Both);
        }
        for r in self.s.abort_endpoints() {
            if let Some(s) = Ending::Aborted.stored(r.finish()) {
                self.keep(s);
            }
        }
        self.finish_endpoints();
    }

    /// Waits once, at most until the state machine's deadline or the poll interval, and
    /// handles what happened: endpoint reports, the stop handle, octets from the peer, the
    /// timer.
    pub fn step(&mut self) {
        if self.closed {
            return;
        }
        while let Ok(report) = self.reports_rx.try_recv() {
            // A report about a session of a test already over is not an error.
            let _ = self.feed(Input::SessionFinished(report));
        }
        if self.s.in_test && !self.stop_fed && self.stop.as_ref().is_some_and(|s| s.is_stopped()) {
            self.stop_fed = true;
            let _ = self.feed(Input::StopSessions);
        }
        if self.closed || self.s.m.closed() {
            return;
        }
        // Endpoint reports and the stop flag are looked at between waits: often while
        // sessions run, less often when idle.
        let poll = if self.s.has_running() {
            self.ep.poll_interval
        } else {
            IDLE_POLL.max(self.ep.poll_interval)
        };
        let Some(wait) = self.s.wait_limit(poll) else {
            let _ = self.feed(Input::Timer);
            return;
        };
        let wait = wait.max(Duration::from_millis(1));
        if self.stream.set_read_timeout(Some(wait)).is_err() {
            let _ = self.feed(Input::PeerClosed);
            return;
        }
        let mut buf = std::mem::take(&mut self.buf);
        match self.stream.read(&mut buf) {
            Ok(0) => {
                let _ = self.feed(Input::PeerClosed);
            }
            Ok(n) => {
                let _ = self.feed(Input::Received(&buf[..n]));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => {
                let _ = self.feed(Input::PeerClosed);
            }
        }
        self.buf = buf;
    }

    /// The next event, stepping until there is one; `None` once the connection is closed and
    /// every event has been taken. Every step is bounded and the state machine always has a
    /// deadline, so this returns.
    pub fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.s.events.pop_front() {
                return Some(e);
            }
            if self.closed {
                return None;
            }
            self.step();
        }
    }
}

/// Writes all of `bytes` within `limit` in all: each write waits at most what is left, so a
/// peer that keeps letting a few octets through cannot stretch the whole beyond it.
fn write_all_within(stream: &mut TcpStream, bytes: &[u8], limit: Duration) -> io::Result<()> {
    let deadline = Instant::now() + limit;
    let mut rest = bytes;
    while !rest.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        // A zero timeout would mean "block forever".
        stream.set_write_timeout(Some(left.max(Duration::from_millis(1))))?;
        match stream.write(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => rest = rest.get(n..).unwrap_or(&[]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl<M> Drop for Driver<M> {
    fn drop(&mut self) {
        self.s.stop_all();
    }
}
