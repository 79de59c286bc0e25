//! What every control driver shares, whether it blocks (this crate) or is async (another
//! adapter): the bookkeeping that follows each [`Output`] of a control state machine (which
//! test endpoint to create, the endpoints running, the followup inputs, the events for the
//! application), the connection counts of a server, its connection summary, and the client's
//! view of its connection.
//!
//! Nothing here waits or does I/O: [`DriverState::next_io`] carries out every output that needs
//! none and hands the others ([`Io`]) to the adapter, which writes, joins, loads and stores
//! in its own way and then reports back.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use owamp_core::control::{
    AcceptCode, Client, CloseReason, ControlError, Mode, PortRange, Role, Server, SessionRequest,
};
use owamp_core::io::{
    FetchReply, FetchedSession, Input, Output, SessionEnd, SessionInfo, SessionReport,
    StoredSession,
};
use owamp_core::policy::ServerPolicy;
use owamp_core::time::OwampTime;
use owamp_core::wire::SessionId;
use rand_core::{CryptoRng, RngCore};

use super::client::{bind_test_socket, ClientError, ClientOptions, SessionSpec, TestEnd};
use super::server::{ConnectionSummary, ServeConfig};
use crate::endpoint::{EndpointResult, TestEndpoint};
use owamp_os::clock::{Clock, SharedClock};
use owamp_os::net::{canonical, is_addr_in_use, TestSocket};
use owamp_os::rng::OsRng;
use owamp_os::store::SessionStore;

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

/// A test endpoint running on a thread or a task, as a driver sees it.
pub trait Running {
    /// Asks it to end; returns at once.
    fn stop(&self);
}

impl Running for crate::endpoint::RunningEndpoint {
    fn stop(&self) {
        crate::endpoint::RunningEndpoint::stop(self);
    }
}

/// What happened on a connection that the application may want to know.
#[derive(Debug)]
pub enum Event {
    /// Client: the connection is set up.
    Connected {
        /// The mode in use.
        mode: Mode,
        /// The server's Start-Time.
        server_start: OwampTime,
    },
    /// A session was accepted by both sides.
    Accepted(Box<SessionInfo>),
    /// Client: the server refused a session.
    Rejected(AcceptCode),
    /// The local sessions were started.
    Started,
    /// A local receive session ended: its stored form.
    Received(Box<StoredSession>),
    /// Both Stop-Sessions were exchanged.
    TestComplete,
    /// Client: the records fetched.
    Fetched(Box<FetchedSession>),
    /// Client: the server refused a Fetch-Session.
    FetchDenied(AcceptCode),
    /// The connection closed.
    Closed(CloseReason),
}

/// How a receive session ended, which decides its stored form.
#[derive(Debug)]
pub enum Ending {
    /// The peer's Stop-Sessions gave its end (RFC 4656 3.8).
    Stopped(SessionEnd),
    /// The test broke off: the session is incomplete.
    Aborted,
}

impl Ending {
    /// The stored form of what a finished endpoint did: `None` for a sender, or an endpoint
    /// that did not end cleanly.
    pub fn stored(&self, result: Option<EndpointResult>) -> Option<StoredSession> {
        match result? {
            EndpointResult::Receiver(out) => Some(match self {
                Ending::Stopped(end) => out.stopped(end),
                Ending::Aborted => out.aborted(),
            }),
            EndpointResult::Sender(_) => None,
        }
    }
}

/// An output that needs the adapter's I/O ([`DriverState::next_io`]).
pub enum Io<R> {
    /// Write these octets to the peer unless the connection is closed; if that fails, call
    /// [`DriverState::peer_closed`].
    Transmit(Vec<u8>),
    /// Start the local sessions: call [`DriverState::start_sessions`].
    StartSessions,
    /// Join these endpoints (already removed from the running ones) and keep the stored
    /// form ([`Ending::stored`]) of each receiver with [`DriverState::received`].
    Finish(Vec<(R, Ending)>),
    /// The test is over: end every endpoint ([`DriverState::end_endpoints`]), then push
    /// [`Event::TestComplete`].
    TestComplete,
    /// Load this session from the store and answer with [`DriverState::fetch_reply`].
    Fetch {
        /// The session asked for.
        sid: SessionId,
        /// Where it is stored.
        store: Arc<dyn SessionStore>,
    },
    /// Close the connection at once (ending every endpoint, keeping the receivers as aborted:
    /// [`DriverState::abort_endpoints`]), then push [`Event::Closed`].
    Close(CloseReason),
}

/// The runtime-independent state of one control connection being driven: the state machine,
/// the endpoints being prepared and running (`R`: the adapter's running endpoint), and the
/// events for the application.
pub struct DriverState<M, R> {
    /// The state machine.
    pub m: M,
    /// The connection's clock.
    pub clock: SharedClock,
    /// Server: sockets bound for sessions being requested.
    pending_sockets: HashMap<SessionId, TestSocket>,
    /// Client: the socket of the request in flight.
    pub client_socket: Option<TestSocket>,
    prepared: Vec<TestEndpoint>,
    /// Sessions accepted that cannot run (their endpoint failed): reported as failed.
    failed: Vec<SessionId>,
    running: HashMap<SessionId, R>,
    store: Option<Arc<dyn SessionStore>>,
    /// Events not yet taken by the application.
    pub events: VecDeque<Event>,
    followups: VecDeque<Input<'static>>,
    /// Between the start of the sessions and the end of the test.
    pub in_test: bool,
    /// Receive sessions that could not be stored.
    pub store_errors: usize,
}

impl<M: Machine, R: Running> DriverState<M, R> {
    /// The state of a new connection; received sessions go to `store` (server), if any.
    pub fn new(m: M, clock: SharedClock, store: Option<Arc<dyn SessionStore>>) -> Self {
        Self {
            m,
            clock,
            pending_sockets: HashMap::new(),
            client_socket: None,
            prepared: Vec::new(),
            failed: Vec::new(),
            running: HashMap::new(),
            store,
            events: VecDeque::new(),
            followups: VecDeque::new(),
            in_test: false,
            store_errors: 0,
        }
    }

    /// Feeds one input to the state machine at the clock's current time; the adapter then
    /// carries out what follows ([`next_io`](Self::next_io) until `None`).
    pub fn handle(&mut self, input: Input<'_>) -> Result<(), ControlError> {
        let now = self.clock.now();
        self.m.handle(now, input)
    }

    /// The next output that needs the adapter, carrying out all the others on the way (and
    /// feeding the answers to the machine's own requests); `None` once there is nothing left
    /// to do.
    pub fn next_io(&mut self) -> Option<Io<R>> {
        loop {
            while let Some(o) = self.m.poll() {
                if let Some(io) = self.on_output(o) {
                    return Some(io);
                }
            }
            let next = self.followups.pop_front()?;
            // Answers to the machine's own requests: an error here would be a bug in this
            // driver, and the state machine ignores inputs once closed.
            let _ = self.handle(next);
        }
    }

    fn on_output(&mut self, o: Output) -> Option<Io<R>> {
        match o {
            Output::Transmit(bytes) => return Some(Io::Transmit(bytes)),
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
            Output::StartSessions => return Some(Io::StartSessions),
            // Each endpoint reports to the driver as it ends.
            Output::StopLocalSessions => self.stop_all(),
            Output::SessionStopped(end) => {
                let r = self.running.remove(&end.sid)?;
                return Some(Io::Finish(vec![(r, Ending::Stopped(end))]));
            }
            Output::SessionsAborted { sids } => {
                let ended: Vec<(R, Ending)> = sids
                    .iter()
                    .filter_map(|sid| self.running.remove(sid))
                    .map(|r| (r, Ending::Aborted))
                    .collect();
                if !ended.is_empty() {
                    return Some(Io::Finish(ended));
                }
            }
            Output::TestComplete => {
                self.in_test = false;
                return Some(Io::TestComplete);
            }
            Output::FetchRequest { sid, .. } => match &self.store {
                Some(store) => {
                    return Some(Io::Fetch {
                        sid,
                        store: store.clone(),
                    })
                }
                None => self.fetch_reply(FetchReply::NotFound),
            },
            Output::Fetched(f) => self.events.push_back(Event::Fetched(f)),
            Output::FetchDenied { accept } => self.events.push_back(Event::FetchDenied(accept)),
            Output::Close(reason) => return Some(Io::Close(reason)),
        }
        None
    }

    /// Writing to the peer failed: the machine is told that the peer is gone.
    pub fn peer_closed(&mut self) {
        self.followups.push_back(Input::PeerClosed);
    }

    /// Answers the machine's [`Io::Fetch`].
    pub fn fetch_reply(&mut self, reply: FetchReply) {
        self.followups.push_back(Input::FetchReply(reply));
    }

    /// Starts every prepared endpoint with `start` ([`Io::StartSessions`]); those that
    /// cannot start, or could not be prepared, are reported to the machine as failed.
    pub fn start_sessions<E>(&mut self, mut start: impl FnMut(TestEndpoint) -> Result<R, E>) {
        self.in_test = true;
        for ep in std::mem::take(&mut self.prepared) {
            let sid = ep.info().sid;
            match start(ep) {
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

    /// Where received sessions are stored, if anywhere.
    pub fn store(&self) -> Option<&Arc<dyn SessionStore>> {
        self.store.as_ref()
    }

    /// A local receive session is over and was given to the store (`saved`: it was stored,
    /// or there is no store): the application is told.
    pub fn received(&mut self, s: StoredSession, saved: bool) {
        if !saved {
            self.store_errors += 1;
        }
        self.events.push_back(Event::Received(Box::new(s)));
    }

    /// Ends the test's endpoints: the running ones are stopped and returned for the adapter
    /// to join, those not started are dropped.
    pub fn end_endpoints(&mut self) -> Vec<R> {
        self.stop_all();
        let running = self.running.drain().map(|(_, r)| r).collect();
        self.prepared.clear();
        self.pending_sockets.clear();
        self.client_socket = None;
        running
    }

    /// The connection closes: the running endpoints are stopped and returned for the adapter
    /// to join and keep as incomplete ([`Ending::Aborted`]), so records received are never
    /// thrown away (the state machine normally reports them first with `SessionsAborted`).
    pub fn abort_endpoints(&mut self) -> Vec<R> {
        self.in_test = false;
        self.stop_all();
        self.running.drain().map(|(_, r)| r).collect()
    }

    /// How long the adapter may wait for the peer: at most `max`, and no later than the
    /// machine's deadline; `None` if the deadline has come (feed [`Input::Timer`]).
    pub fn wait_limit(&self, max: Duration) -> Option<Duration> {
        let now = self.clock.now();
        match self.m.deadline() {
            Some(d) if now >= d => None,
            Some(d) => Some(max.min(d.duration_since(now).unwrap_or(Duration::ZERO))),
            None => Some(max),
        }
    }
}

impl<M, R: Running> DriverState<M, R> {
    /// Asks every running endpoint to stop.
    pub fn stop_all(&self) {
        for r in self.running.values() {
            r.stop();
        }
    }

    /// Whether an endpoint is running.
    pub fn has_running(&self) -> bool {
        !self.running.is_empty()
    }
}

impl<P: ServerPolicy, G: RngCore + CryptoRng, R> DriverState<Server<P, G>, R> {
    /// Takes the events into a server connection's `summary`.
    pub fn count_events(&mut self, summary: &mut ConnectionSummary) {
        while let Some(e) = self.events.pop_front() {
            match e {
                Event::Accepted(_) => summary.sessions += 1,
                Event::Received(_) => summary.stored += 1,
                Event::Closed(r) => summary.close = Some(r),
                _ => {}
            }
        }
    }

    /// Completes the summary of the connection once it has closed.
    pub fn finish_summary(&self, mut summary: ConnectionSummary) -> ConnectionSummary {
        summary.mode = self.m.mode();
        summary.key_id = self.m.key_id().map(<[u8]>::to_vec);
        summary.store_errors = self.store_errors;
        summary.stored = summary.stored.saturating_sub(self.store_errors);
        summary
    }
}

/// The server state machine of an accepted connection between `local` and `peer` (as the
/// socket reports them), and the connection's summary as it starts.
pub fn server_connection<P: ServerPolicy>(
    config: &ServeConfig,
    policy: P,
    local: SocketAddr,
    peer: SocketAddr,
) -> (Server<P, OsRng>, ConnectionSummary) {
    // A dual-stack listener reports IPv4 clients as IPv4-mapped IPv6 addresses; the state
    // machine compares them with the addresses in requests, which are plain IPv4.
    let local = canonical(local);
    let peer = canonical(peer);
    let m = Server::new(
        config.endpoint.clock.now(),
        config.control.clone(),
        policy,
        OsRng,
        local,
        peer,
    );
    let summary = ConnectionSummary {
        peer,
        mode: Mode::Open,
        key_id: None,
        sessions: 0,
        stored: 0,
        store_errors: 0,
        close: None,
    };
    (m, summary)
}

/// What a server gives each connection: a clone of the operator's policy (a
/// [`Limits`](owamp_core::policy::Limits) clone shares its state), the configuration and the
/// store.
#[derive(Clone)]
pub struct ServerParts<P> {
    /// The operator's policy.
    pub policy: P,
    /// How the server runs.
    pub config: ServeConfig,
    /// Where received sessions go, and Fetch-Session looks.
    pub store: Arc<dyn SessionStore>,
}

impl<P> ServerParts<P> {
    /// The parts of a new server; a Start-Time of zero in `config` becomes the current time.
    pub fn new(mut config: ServeConfig, policy: P, store: Arc<dyn SessionStore>) -> Self {
        if config.control.start_time == OwampTime::ZERO {
            config.control.start_time = config.endpoint.clock.now();
        }
        Self {
            policy,
            config,
            store,
        }
    }
}

/// Tells the configured log about a connection that has ended, unless serving it failed.
pub fn log_connection(config: &ServeConfig, served: &std::io::Result<ConnectionSummary>) {
    if let (Ok(summary), Some(log)) = (served, &config.log) {
        log(summary);
    }
}

/// A server's connection counts, shared by the accept loops of its listeners and their
/// connections.
#[derive(Debug, Clone, Default)]
pub struct ConnectionCounts {
    active: Arc<AtomicUsize>,
    accepted: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
}

impl ConnectionCounts {
    /// Admits a new connection unless `max` are being served: it counts as active until the
    /// guard is dropped. A connection not admitted is counted as refused.
    pub fn admit(&self, max: usize) -> Option<ActiveGuard> {
        if self.active.load(Ordering::SeqCst) >= max {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return None;
        }
        self.active.fetch_add(1, Ordering::SeqCst);
        self.accepted.fetch_add(1, Ordering::SeqCst);
        Some(ActiveGuard(self.active.clone()))
    }

    /// Connections being served now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Connections admitted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }
}

/// Decrements the active count when a connection ends, however it ends.
#[derive(Debug)]
pub struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A client's view of its control connection: the addresses its test sockets use, what the
/// set-up gave, the sessions accepted and the sessions received.
#[derive(Debug)]
pub struct ClientState {
    test_ip: IpAddr,
    server_ip: IpAddr,
    test_ports: Option<PortRange>,
    mode: Mode,
    server_start: OwampTime,
    sessions: Vec<SessionInfo>,
    received: Vec<StoredSession>,
}

impl ClientState {
    /// A connection from `local` to `server` (as the socket reports them).
    pub fn new(opts: &ClientOptions, local: SocketAddr, server: SocketAddr) -> Self {
        Self {
            test_ip: opts.test_ip.unwrap_or(canonical(local).ip()),
            server_ip: canonical(server).ip(),
            test_ports: opts.test_ports,
            mode: Mode::Open,
            server_start: OwampTime::ZERO,
            sessions: Vec::new(),
            received: Vec::new(),
        }
    }

    /// The server's address.
    pub fn server_ip(&self) -> IpAddr {
        self.server_ip
    }

    /// The mode in use.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The server's Start-Time from Server-Start.
    pub fn server_start(&self) -> OwampTime {
        self.server_start
    }

    /// The sessions accepted so far.
    pub fn sessions(&self) -> &[SessionInfo] {
        &self.sessions
    }

    /// Keeps aside a session received; any other event is returned.
    pub fn keep_received(&mut self, e: Event) -> Option<Event> {
        match e {
            Event::Received(s) => {
                self.received.push(*s);
                None
            }
            e => Some(e),
        }
    }

    /// Binds the test socket of a session in which this client has `role`, and builds its
    /// request.
    pub fn prepare_request(
        &self,
        role: Role,
        spec: &SessionSpec,
        start_time: OwampTime,
    ) -> Result<(TestSocket, SessionRequest), ClientError> {
        let sock = bind_test_socket(self.test_ip, self.test_ports)?;
        let req = spec.request(role, sock.local_addr(), self.server_ip, start_time)?;
        Ok((sock, req))
    }

    /// The set-up's answer, once there is one (`None`: wait for the next event).
    pub fn on_setup(&mut self, e: Option<Event>) -> Option<Result<(), ClientError>> {
        match e {
            Some(Event::Connected { mode, server_start }) => {
                self.mode = mode;
                self.server_start = server_start;
                Some(Ok(()))
            }
            other => closed_by(other),
        }
    }

    /// The answer to Request-Session, once there is one (`None`: wait for the next event).
    pub fn on_request(&mut self, e: Option<Event>) -> Option<Result<SessionInfo, ClientError>> {
        match e {
            Some(Event::Accepted(info)) => {
                self.sessions.push((*info).clone());
                Some(Ok(*info))
            }
            Some(Event::Rejected(code)) => Some(Err(ClientError::Rejected(code))),
            other => closed_by(other),
        }
    }

    /// How the test ended, once it has (`None`: wait for the next event): whether it is
    /// complete, or why the connection closed.
    pub fn on_wait(e: Option<Event>) -> Option<(bool, Option<CloseReason>)> {
        match e {
            Some(Event::TestComplete) => Some((true, None)),
            Some(Event::Closed(r)) => Some((false, Some(r))),
            Some(_) => None,
            None => Some((false, Some(CloseReason::PeerClosed))),
        }
    }

    /// The end of a test: `events` left after it are looked through for sessions received.
    pub fn test_end(
        &mut self,
        events: &mut VecDeque<Event>,
        (complete, closed): (bool, Option<CloseReason>),
        stopped_early: bool,
    ) -> TestEnd {
        // Receive sessions stored as the test ended.
        while let Some(e) = events.pop_front() {
            if let Event::Received(s) = e {
                self.received.push(*s);
            }
        }
        TestEnd {
            complete,
            closed,
            stopped_early,
            received: std::mem::take(&mut self.received),
        }
    }
}

/// The answer to Start-Sessions, once there is one (`None`: wait for the next event).
pub fn on_start(e: Option<Event>) -> Option<Result<(), ClientError>> {
    match e {
        Some(Event::Started) => Some(Ok(())),
        other => closed_by(other),
    }
}

/// The answer to Fetch-Session, once there is one (`None`: wait for the next event).
pub fn on_fetch(e: Option<Event>) -> Option<Result<FetchedSession, ClientError>> {
    match e {
        Some(Event::Fetched(f)) => Some(Ok(*f)),
        Some(Event::FetchDenied(code)) => Some(Err(ClientError::FetchDenied(code))),
        other => closed_by(other),
    }
}

/// An event that ends a wait for an answer: the connection closed.
fn closed_by<T>(e: Option<Event>) -> Option<Result<T, ClientError>> {
    match e {
        Some(Event::Closed(r)) => Some(Err(ClientError::Closed(r))),
        Some(_) => None,
        None => Some(Err(ClientError::Closed(CloseReason::PeerClosed))),
    }
}

/// Why a direction of a measurement has no data when the test did not complete.
pub fn incomplete(end: &TestEnd) -> ClientError {
    ClientError::Closed(end.closed.clone().unwrap_or(CloseReason::Local))
}

/// The data of the session this client received in a measurement, taken out of `received`.
pub fn take_received(
    received: &mut Vec<StoredSession>,
    info: &SessionInfo,
    end: &TestEnd,
) -> Result<StoredSession, ClientError> {
    match received.iter().position(|s| s.request.sid == info.sid) {
        Some(i) => Ok(received.swap_remove(i)),
        None => Err(incomplete(end)),
    }
}
