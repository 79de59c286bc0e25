//! Drives one control state machine (client or server) over a Tokio `TcpStream`, carrying
//! out every [`Output`] as `owamp_core::io` describes: octets to the stream, the timer, test
//! endpoints bound, started, stopped and finished, stored sessions looked up.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use owamp_core::control::{AcceptCode, CloseReason, ControlError, Mode};
use owamp_core::io::{
    FetchReply, FetchedSession, Input, Output, SessionInfo, SessionReport, StoredSession,
};
use owamp_core::time::OwampTime;
use owamp_core::wire::SessionId;
use owamp_std::clock::{Clock, SharedClock};
use owamp_std::control::{Machine, SessionStore};
use owamp_std::endpoint::{EndpointConfig, EndpointResult, TestEndpoint};
use owamp_std::net::{is_addr_in_use, TestSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::endpoint::{self, RunningEndpoint};
use crate::StopToken;

/// The longest single wait of a connection; the state machine always has an earlier
/// deadline, this only bounds the wait if it ever had none.
const MAX_WAIT: Duration = Duration::from_secs(60);

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

/// What ended one wait of [`Driver::step`].
enum Wake {
    Report(SessionReport),
    Stop,
    Read(io::Result<usize>),
    Timer,
}

/// One control connection being driven.
pub(crate) struct Driver<M> {
    pub m: M,
    stream: TcpStream,
    pub clock: SharedClock,
    ep: EndpointConfig,
    io_timeout: Duration,
    reports_tx: mpsc::UnboundedSender<SessionReport>,
    reports_rx: mpsc::UnboundedReceiver<SessionReport>,
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
    pub in_test: bool,
    pub closed: bool,
    /// Stops a test in progress ([`Input::StopSessions`]).
    pub stop: Option<StopToken>,
    pub stop_fed: bool,
    /// Server: the stop signal also ends an idle wait, so that the connection closes.
    close_on_stop: bool,
    pub store_errors: usize,
}

impl<M: Machine> Driver<M> {
    pub async fn new(
        m: M,
        stream: TcpStream,
        ep: EndpointConfig,
        store: Option<Arc<dyn SessionStore>>,
        stop: Option<StopToken>,
        io_timeout: Duration,
    ) -> io::Result<Self> {
        stream.set_nodelay(true)?;
        let (reports_tx, reports_rx) = mpsc::unbounded_channel();
        let close_on_stop = stop.is_some();
        let mut d = Self {
            m,
            stream,
            clock: ep.clock.clone(),
            ep,
            io_timeout: io_timeout.max(Duration::from_millis(1)),
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
            in_test: false,
            closed: false,
            stop,
            stop_fed: false,
            close_on_stop,
            store_errors: 0,
        };
        // The state machine may have queued outputs when it was built (Server-Greeting).
        d.drain().await;
        Ok(d)
    }

    pub fn now(&self) -> OwampTime {
        self.clock.now()
    }

    /// Feeds one input and carries out everything that follows from it.
    pub async fn feed(&mut self, input: Input<'_>) -> Result<(), ControlError> {
        let now = self.clock.now();
        let r = self.m.handle(now, input);
        self.drain().await;
        r
    }

    async fn drain(&mut self) {
        loop {
            while let Some(o) = self.m.poll() {
                self.on_output(o).await;
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

    async fn on_output(&mut self, o: Output) {
        match o {
            Output::Transmit(bytes) => {
                if !self.closed {
                    // A peer that stops reading cannot hold us for longer than this.
                    let w = tokio::time::timeout(self.io_timeout, self.stream.write_all(&bytes));
                    if !matches!(w.await, Ok(Ok(()))) {
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
                    match endpoint::spawn(ep, &self.ep, Some(self.reports_tx.clone())) {
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
                // Each task reports on the channel as it ends.
                for r in self.running.values() {
                    r.stop();
                }
            }
            Output::SessionStopped(end) => {
                if let Some(r) = self.running.remove(&end.sid) {
                    if let Some(EndpointResult::Receiver(out)) = r.finish().await {
                        self.keep(out.stopped(&end)).await;
                    }
                }
            }
            Output::SessionsAborted { sids } => {
                for sid in sids {
                    if let Some(r) = self.running.remove(&sid) {
                        if let Some(EndpointResult::Receiver(out)) = r.finish().await {
                            self.keep(out.aborted()).await;
                        }
                    }
                }
            }
            Output::TestComplete => {
                self.in_test = false;
                self.finish_endpoints().await;
                self.events.push_back(Event::TestComplete);
            }
            Output::FetchRequest { sid, .. } => {
                let reply = match &self.store {
                    // Stores may read files: off the async workers.
                    Some(s) => {
                        let s = s.clone();
                        tokio::task::spawn_blocking(move || s.load(&sid))
                            .await
                            .unwrap_or(FetchReply::Failed)
                    }
                    None => FetchReply::NotFound,
                };
                self.followups.push_back(Input::FetchReply(reply));
            }
            Output::Fetched(f) => self.events.push_back(Event::Fetched(f)),
            Output::FetchDenied { accept } => self.events.push_back(Event::FetchDenied(accept)),
            Output::Close(reason) => {
                self.close_now().await;
                self.events.push_back(Event::Closed(reason));
            }
        }
    }

    /// A local receive session is over: store it (server) and tell the application.
    async fn keep(&mut self, s: StoredSession) {
        let s = match &self.store {
            Some(store) => {
                // Stores may write files: off the async workers.
                let store = store.clone();
                let saved = tokio::task::spawn_blocking(move || {
                    let ok = store.save(&s).is_ok();
                    (s, ok)
                })
                .await;
                match saved {
                    Ok((s, true)) => s,
                    Ok((s, false)) => {
                        self.store_errors += 1;
                        s
                    }
                    // The blocking task panicked: the session is gone.
                    Err(_) => {
                        self.store_errors += 1;
                        return;
                    }
                }
            }
            None => s,
        };
        self.events.push_back(Event::Received(Box::new(s)));
    }

    /// Stops and joins every endpoint task still there.
    async fn finish_endpoints(&mut self) {
        for r in self.running.values() {
            r.stop();
        }
        for (_, r) in self.running.drain() {
            let _ = r.finish().await;
        }
        self.prepared.clear();
        self.pending_sockets.clear();
        self.client_socket = None;
    }

    /// Closes the connection at once and ends every endpoint. A receiver still running (the
    /// state machine normally reports it first with `SessionsAborted`) is kept as incomplete,
    /// so records received are never thrown away.
    pub async fn close_now(&mut self) {
        if !self.closed {
            self.closed = true;
            // Everything queued was written by `write_all`; FIN both ways.
            let _ = socket2::SockRef::from(&self.stream).shutdown(std::net::Shutdown::Both);
        }
        self.in_test = false;
        for r in self.running.values() {
            r.stop();
        }
        let sids: Vec<SessionId> = self.running.keys().copied().collect();
        for sid in sids {
            if let Some(r) = self.running.remove(&sid) {
                if let Some(EndpointResult::Receiver(out)) = r.finish().await {
                    self.keep(out.aborted()).await;
                }
            }
        }
        self.finish_endpoints().await;
    }

    /// Waits once, at most until the state machine's deadline, and handles what happened:
    /// an endpoint report, the stop signal, octets from the peer, the timer.
    pub async fn step(&mut self) {
        if self.closed {
            return;
        }
        while let Ok(report) = self.reports_rx.try_recv() {
            // A report about a session of a test already over is not an error.
            let _ = self.feed(Input::SessionFinished(report)).await;
        }
        if self.closed || self.m.closed() {
            return;
        }
        let now = self.clock.now();
        let mut wait = MAX_WAIT;
        if let Some(d) = self.m.deadline() {
            if now >= d {
                let _ = self.feed(Input::Timer).await;
                return;
            }
            wait = wait.min(d.duration_since(now).unwrap_or(Duration::ZERO));
        }
        // The stop signal matters during a test (until fed), and for a server at any time.
        let stop = match &self.stop {
            Some(s)
                if (self.in_test && !self.stop_fed) || (!self.in_test && self.close_on_stop) =>
            {
                Some(s.clone())
            }
            _ => None,
        };
        let wake = tokio::select! {
            Some(r) = self.reports_rx.recv() => Wake::Report(r),
            _ = wait_stop(stop.as_ref()) => Wake::Stop,
            r = self.stream.read(&mut self.buf) => Wake::Read(r),
            _ = tokio::time::sleep(wait) => Wake::Timer,
        };
        match wake {
            Wake::Report(r) => {
                let _ = self.feed(Input::SessionFinished(r)).await;
            }
            Wake::Stop => {
                if self.in_test {
                    self.stop_fed = true;
                    let _ = self.feed(Input::StopSessions).await;
                } else {
                    // Outside a test a stopped server closes the connection.
                    self.close_now().await;
                }
            }
            Wake::Read(Ok(0)) | Wake::Read(Err(_)) => {
                let _ = self.feed(Input::PeerClosed).await;
            }
            Wake::Read(Ok(n)) => {
                let buf = std::mem::take(&mut self.buf);
                let _ = self
                    .feed(Input::Received(buf.get(..n).unwrap_or(&[])))
                    .await;
                self.buf = buf;
            }
            Wake::Timer => {
                let _ = self.feed(Input::Timer).await;
            }
        }
    }

    /// The next event, stepping until there is one; `None` once the connection is closed and
    /// every event has been taken. Every step is bounded and the state machine always has a
    /// deadline, so this returns.
    pub async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.events.pop_front() {
                return Some(e);
            }
            if self.closed {
                return None;
            }
            self.step().await;
        }
    }
}

/// Returns when `stop` is set; never if there is none.
async fn wait_stop(stop: Option<&StopToken>) {
    match stop {
        Some(s) => s.stopped().await,
        None => std::future::pending().await,
    }
}

impl<M> Drop for Driver<M> {
    fn drop(&mut self) {
        for r in self.running.values() {
            r.stop();
        }
    }
}
