//! Drives one control state machine (client or server) over a `TcpStream`, carrying out every
//! [`Output`] as `owamp_core::io` describes: octets to the stream, the timer, test endpoints
//! bound, started, stopped and finished, stored sessions looked up.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use owamp_core::control::{AcceptCode, Client, CloseReason, ControlError, Mode, Server};
use owamp_core::io::{
    FetchReply, FetchedSession, Input, Output, SessionInfo, SessionReport, StoredSession,
};
use owamp_core::policy::ServerPolicy;
use owamp_core::time::OwampTime;
use owamp_core::wire::SessionId;
use rand_core::{CryptoRng, RngCore};

use super::store::SessionStore;
use super::StopHandle;
use crate::clock::{Clock, SharedClock};
use crate::endpoint::{EndpointConfig, EndpointResult, RunningEndpoint, TestEndpoint};
use crate::net::{is_addr_in_use, TestSocket};

/// The longest wait of an idle connection (no test endpoint running): how fast a stop or
/// shutdown flag is noticed then.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// What a driver needs from a control state machine: the core's [`Client`] and [`Server`]
/// behind one interface, so that one driver (blocking here, or async in another adapter)
/// serves both.
pub trait Machine {
    /// `handle_input`.
    fn handle(&mut self, now: OwampTime, input: Input<'_>) -> Result<(), ControlError>;
    /// `poll_output`.
    fn poll(&mut self) -> Option<Output>;
    /// `is_closed`.
    fn closed(&self) -> bool;
    /// `timeout`: when the connection's timer fires.
    fn deadline(&self) -> Option<OwampTime>;
}

impl<R: RngCore + CryptoRng> Machine for Client<R> {
    fn handle(&mut self, now: OwampTime, input: Input<'_>) -> Result<(), ControlError> {
        self.handle_input(now, input)
    }
    fn poll(&mut self) -> Option<Output> {
        self.poll_output()
    }
    fn closed(&self) -> bool {
        self.is_closed()
    }
    fn deadline(&self) -> Option<OwampTime> {
        self.timeout()
    }
}

impl<P: ServerPolicy, R: RngCore + CryptoRng> Machine for Server<P, R> {
    fn handle(&mut self, now: OwampTime, input: Input<'_>) -> Result<(), ControlError> {
        self.handle_input(now, input)
    }
    fn poll(&mut self) -> Option<Output> {
        self.poll_output()
    }
    fn closed(&self) -> bool {
        self.is_closed()
    }
    fn deadline(&self) -> Option<OwampTime> {
        self.timeout()
    }
}

/// What happened on the connection that the application may want to know.
#[derive(Debug)]
pub(crate) enum Event {
    Connected {
        mode: Mode,
        server_start: OwampTime,
    },
    Accepted(Box<SessionInfo>),
    Rejected(AcceptCode),
    Started,
    /// A local receive session ended: its stored form.
    Received(Box<StoredSession>),
    TestComplete,
    Fetched(Box<FetchedSession>),
    FetchDenied(AcceptCode),
    Closed(CloseReason),
}

/// One control connection being driven.
pub(crate) struct Driver<M> {
    pub m: M,
    stream: TcpStream,
    pub clock: SharedClock,
    ep: EndpointConfig,
    reports_tx: mpsc::Sender<SessionReport>,
    reports_rx: mpsc::Receiver<SessionReport>,
    /// Server: sockets bound for sessions being requested.
    pending_sockets: HashMap<SessionId, TestSocket>,
    /// Client: the socket of the request in flight.
    pub client_socket: Option<TestSocket>,
    prepared: Vec<TestEndpoint>,
    /// Sessions accepted that cannot run (their endpoint failed): reported as failed.
    failed: Vec<SessionId>,
    running: HashMap<SessionId, RunningEndpoint>,
    store: Option<Arc<dyn SessionStore>>,
    pub events: VecDeque<Event>,
    followups: VecDeque<Input<'static>>,
    buf: Vec<u8>,
    /// How long writing one [`Output::Transmit`] may take in all.
    io_timeout: Duration,
    pub in_test: bool,
    pub closed: bool,
    pub stop: Option<StopHandle>,
    pub stop_fed: bool,
    pub store_errors: usize,
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
            m,
            stream,
            clock: ep.clock.clone(),
            ep,
            reports_tx,
            reports_rx,
            pending_sockets: HashMap::new(),
            client_socket: None,
            prepared: Vec::new(),
            failed: Vec::new(),
            running: HashMap::new(),
            store,
            events: VecDeque::new(),
            followups: VecDeque::new(),
            buf: vec![0u8; 16 * 1024],
            io_timeout,
            in_test: false,
            closed: false,
            stop,
            stop_fed: false,
            store_errors: 0,
        };
        // The state machine may have queued outputs when it was built (Server-Greeting).
        d.drain();
        Ok(d)
    }

    pub fn now(&self) -> OwampTime {
        self.clock.now()
    }

    /// Feeds one input and carries out everything that follows from it.
    pub fn feed(&mut self, input: Input<'_>) -> Result<(), ControlError> {
        let now = self.clock.now();
        let r = self.m.handle(now, input);
        self.drain();
        r
    }

    fn drain(&mut self) {
        loop {
            while let Some(o) = self.m.poll() {
                self.on_output(o);
            }
            let Some(next) = self.followups.pop_front() else {
                break;
            };
            let now = self.clock.now();
            // Answers to the machine's own requests: an error here would be a bug in this
            // driver, and the state machine ignores inputs once closed.
            let _ = self.m.handle(now, next);
        }
    }

    fn on_output(&mut self, o: Output) {
        match o {
            Output::Transmit(bytes) => {
                if !self.closed {
                    // A peer that stops reading, or reads a few octets at a time, cannot hold
                    // us for longer than the I/O timeout.
                    if let Err(_e) = write_all_within(&mut self.stream, &bytes, self.io_timeout) {
                        self.followups.push_back(Input::PeerClosed);
                    }
                }
            }
            // The deadline is read from the machine itself before every wait.
            Output::Timer(_) => {}
            Output::Connected { mode, server_start } => self
                .events
                .push_back(Event::Connected { mode, server_start }),
            Output::PrepareTestEndpoint(setup) => {
                let input = match TestSocket::bind(setup.local) {
                    Ok(s) => {
                        let port = s.local_addr().port();
                        self.pending_sockets.insert(setup.sid, s);
                        Input::EndpointReady {
                            sid: setup.sid,
                            port,
                        }
                    }
                    Err(e) if is_addr_in_use(&e) => Input::PortInUse { sid: setup.sid },
                    Err(_) => Input::EndpointFailed {
                        sid: setup.sid,
                        accept: AcceptCode::InternalError,
                    },
                };
                self.followups.push_back(input);
            }
            Output::SessionAccepted(info) => {
                let socket = match self.pending_sockets.remove(&info.sid) {
                    Some(s) => Some(s),
                    None => self.client_socket.take(),
                };
                let ep = socket
                    .ok_or(())
                    .and_then(|s| TestEndpoint::new((*info).clone(), s).map_err(|_| ()));
                match ep {
                    Ok(ep) => self.prepared.push(ep),
                    Err(()) => self.failed.push(info.sid),
                }
                self.events.push_back(Event::Accepted(info));
            }
            Output::SessionRejected { accept } => {
                self.client_socket = None;
                self.events.push_back(Event::Rejected(accept));
            }
            Output::StartSessions => {
                self.in_test = true;
                for ep in std::mem::take(&mut self.prepared) {
                    let sid = ep.info().sid;
                    match ep.start(&self.ep, Some(self.reports_tx.clone())) {
                        Ok(r) => {
                            self.running.insert(sid, r);
                        }
                        Err(_) => self.failed.push(sid),
                    }
                }
                for sid in std::mem::take(&mut self.failed) {
                    self.followups
                        .push_back(Input::SessionFinished(SessionReport {
                            sid,
                            next_seqno: 0,
                            skips: Vec::new(),
                            failed: true,
                        }));
                }
                self.events.push_back(Event::Started);
            }
            Output::StopLocalSessions => {
                // Each thread reports on the channel as it ends.
                for r in self.running.values() {
                    r.stop();
                }
            }
            Output::SessionStopped(end) => {
                if let Some(r) = self.running.remove(&end.sid) {
                    if let Some(EndpointResult::Receiver(out)) = r.finish() {
                        self.keep(out.stopped(&end));
                    }
                }
            }
            Output::SessionsAborted { sids } => {
                for sid in sids {
                    if let Some(r) = self.running.remove(&sid) {
                        if let Some(EndpointResult::Receiver(out)) = r.finish() {
                            self.keep(out.aborted());
                        }
                    }
                }
            }
            Output::TestComplete => {
                self.in_test = false;
                self.finish_endpoints();
                self.events.push_back(Event::TestComplete);
            }
            Output::FetchRequest { sid, .. } => {
                let reply = match &self.store {
                    Some(s) => s.load(&sid),
                    None => FetchReply::NotFound,
                };
                self.followups.push_back(Input::FetchReply(reply));
            }
            Output::Fetched(f) => self.events.push_back(Event::Fetched(f)),
            Output::FetchDenied { accept } => self.events.push_back(Event::FetchDenied(accept)),
            Output::Close(reason) => {
                self.close_now();
                self.events.push_back(Event::Closed(reason));
            }
        }
    }

    /// A local receive session is over: store it (server) and tell the application.
    fn keep(&mut self, s: StoredSession) {
        if let Some(store) = &self.store {
            if store.save(&s).is_err() {
                self.store_errors += 1;
            }
        }
        self.events.push_back(Event::Received(Box::new(s)));
    }

    /// Stops and joins every endpoint thread still there (each within its poll interval).
    fn finish_endpoints(&mut self) {
        for r in self.running.values() {
            r.stop();
        }
        for (_, r) in self.running.drain() {
            let _ = r.finish();
        }
        self.prepared.clear();
        self.pending_sockets.clear();
        self.client_socket = None;
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
        self.in_test = false;
        for r in self.running.values() {
            r.stop();
        }
        let sids: Vec<SessionId> = self.running.keys().copied().collect();
        for sid in sids {
            if let Some(r) = self.running.remove(&sid) {
                if let Some(EndpointResult::Receiver(out)) = r.finish() {
                    self.keep(out.aborted());
                }
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
        if self.in_test && !self.stop_fed && self.stop.as_ref().is_some_and(|s| s.is_stopped()) {
            self.stop_fed = true;
            let _ = self.feed(Input::StopSessions);
        }
        if self.closed || self.m.closed() {
            return;
        }
        let now = self.clock.now();
        // Endpoint reports and the stop flag are looked at between waits: often while
        // sessions run, less often when idle.
        let mut wait = if self.running.is_empty() {
            IDLE_POLL.max(self.ep.poll_interval)
        } else {
            self.ep.poll_interval
        };
        if let Some(d) = self.m.deadline() {
            if now >= d {
                let _ = self.feed(Input::Timer);
                return;
            }
            wait = wait.min(d.duration_since(now).unwrap_or(Duration::ZERO));
        }
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
            if let Some(e) = self.events.pop_front() {
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
        for r in self.running.values() {
            r.stop();
        }
    }
}
