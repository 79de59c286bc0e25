//! The client side of a control connection (owping).

use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use owamp_core::control::{
    AcceptCode, Client, ClientCommand, ClientConfig, CloseReason, ControlError, Mode, PortRange,
    Role, SessionRequest,
};
use owamp_core::io::{FetchedSession, Input, SessionInfo, StoredSession};
use owamp_core::time::{Interval, OwampTime};
use owamp_core::wire::{SessionId, Slot, SlotKind, TypeP};
use rand_core::RngCore;

use super::common::{incomplete, on_fetch, on_start, take_received, ClientState, Event};
use super::driver::Driver;
use super::StopHandle;
use crate::endpoint::{EndpointConfig, EndpointError};
use owamp_os::clock::Clock;
use owamp_os::net::{BindError, TestSocket};
use owamp_os::rng::OsRng;

/// How a client connects and runs its test sessions.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The control state machine's settings: modes, identity, timeouts.
    pub control: ClientConfig,
    /// How long to wait for the TCP connection.
    pub connect_timeout: Duration,
    /// How long writing what the state machine queued at once (one message, or a whole
    /// Fetch-Session answer) may take in all; a server that reads slower is given up.
    pub io_timeout: Duration,
    /// Local address of the test sockets (default: that of the control connection).
    pub test_ip: Option<IpAddr>,
    /// Local ports for test sockets (default: any).
    pub test_ports: Option<PortRange>,
    /// How the test endpoints run (and the clock).
    pub endpoint: EndpointConfig,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            control: ClientConfig::default(),
            connect_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(30),
            test_ip: None,
            test_ports: None,
            endpoint: EndpointConfig::default(),
        }
    }
}

/// One test session to request (RFC 4656 3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSpec {
    /// Number of test packets.
    pub packets: u32,
    /// The schedule, used cyclically (at least one slot).
    pub slots: Vec<Slot>,
    /// Octets of padding per packet.
    pub padding: u32,
    /// Loss timeout: how long after its send time a packet may still arrive.
    pub timeout: Duration,
    /// DSCP of the test packets (0..=63).
    pub dscp: u8,
}

impl SessionSpec {
    /// `packets` packets at exponentially distributed intervals of mean `mean` (owping's
    /// default schedule), loss timeout 2 s, no padding, best effort.
    pub fn poisson(packets: u32, mean: Duration) -> Self {
        Self::with_slot(packets, SlotKind::Exponential, mean)
    }

    /// `packets` packets every `interval`, loss timeout 2 s, no padding, best effort.
    pub fn periodic(packets: u32, interval: Duration) -> Self {
        Self::with_slot(packets, SlotKind::Fixed, interval)
    }

    /// The Request-Session parameters for this session, in which the client has `role`, tests
    /// from `local` (its bound test socket) with the server at `peer`, from `start_time`.
    pub fn request(
        &self,
        role: Role,
        local: SocketAddr,
        peer: IpAddr,
        start_time: OwampTime,
    ) -> Result<SessionRequest, ClientError> {
        let type_p =
            TypeP::from_dscp(self.dscp).ok_or(ClientError::InvalidSpec("DSCP above 63"))?;
        let timeout = Interval::from_duration(self.timeout)
            .ok_or(ClientError::InvalidSpec("timeout too large"))?;
        if self.slots.is_empty() || self.packets == 0 {
            return Err(ClientError::InvalidSpec("no slots or no packets"));
        }
        Ok(SessionRequest {
            role,
            local,
            peer,
            slots: self.slots.clone(),
            packets: self.packets,
            padding: self.padding,
            start_time,
            timeout,
            type_p,
        })
    }

    fn with_slot(packets: u32, kind: SlotKind, d: Duration) -> Self {
        Self {
            packets,
            slots: vec![Slot {
                kind,
                mean: Interval::saturating_from_duration(d),
            }],
            padding: 0,
            timeout: Duration::from_secs(2),
            dscp: 0,
        }
    }
}

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The TCP connection could not be made.
    #[error("cannot connect: {0}")]
    Connect(io::Error),
    /// Another I/O error on the control connection.
    #[error("control connection: {0}")]
    Io(#[from] io::Error),
    /// The control connection closed (set-up refused, no common mode, timeout, protocol
    /// error, peer gone).
    #[error("control connection closed: {0:?}")]
    Closed(CloseReason),
    /// The server refused a Request-Session.
    #[error("session refused by the server: {0:?}")]
    Rejected(AcceptCode),
    /// The server refused a Fetch-Session.
    #[error("fetch refused by the server: {0:?}")]
    FetchDenied(AcceptCode),
    /// A test socket could not be bound.
    #[error("{0}")]
    Bind(#[from] BindError),
    /// A test endpoint could not be set up.
    #[error("{0}")]
    Endpoint(#[from] EndpointError),
    /// The session specification is unusable.
    #[error("invalid session: {0}")]
    InvalidSpec(&'static str),
    /// The stop handle was set before the test started.
    #[error("interrupted")]
    Interrupted,
    /// The operation is not valid now (for example a request during a test).
    #[error("{0}")]
    Control(#[from] ControlError),
}

/// Binds a client's test socket on `ip`: in `ports` (from a random port of the range,
/// upwards) when given, else on any free port.
pub fn bind_test_socket(ip: IpAddr, ports: Option<PortRange>) -> Result<TestSocket, ClientError> {
    let sock = match ports {
        Some(range) => {
            let first = range.pick(OsRng.next_u32());
            TestSocket::bind_in_range(ip, range, first)?
        }
        None => TestSocket::bind(SocketAddr::new(ip, 0)).map_err(BindError::Io)?,
    };
    Ok(sock)
}

/// How a test ended ([`ClientConnection::wait`]).
#[derive(Debug)]
pub struct TestEnd {
    /// Both Stop-Sessions were exchanged: the server's records can be fetched.
    pub complete: bool,
    /// The connection closed before that, and why.
    pub closed: Option<CloseReason>,
    /// The test was stopped early through the stop handle.
    pub stopped_early: bool,
    /// The sessions this client received (finished normally, or incomplete if the test broke
    /// off), in the order they ended.
    pub received: Vec<StoredSession>,
}

/// A control connection to a server, set up and ready for commands.
pub struct ClientConnection {
    d: Driver<Client<OsRng>>,
    st: ClientState,
}

impl std::fmt::Debug for ClientConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConnection")
            .field("server", &self.st.server_ip())
            .field("mode", &self.st.mode())
            .field("sessions", &self.st.sessions().len())
            .finish_non_exhaustive()
    }
}

impl ClientConnection {
    /// Connects to `server` and completes the set-up (RFC 4656 3.1): the strongest mode both
    /// allow is used.
    pub fn connect(server: SocketAddr, opts: &ClientOptions) -> Result<Self, ClientError> {
        let stream = TcpStream::connect_timeout(&server, opts.connect_timeout)
            .map_err(ClientError::Connect)?;
        Self::from_stream(stream, opts)
    }

    /// Completes the set-up on a connected stream.
    pub fn from_stream(stream: TcpStream, opts: &ClientOptions) -> Result<Self, ClientError> {
        let st = ClientState::new(opts, stream.local_addr()?, stream.peer_addr()?);
        let now = opts.endpoint.clock.now();
        let m = Client::new(now, opts.control.clone(), OsRng);
        let d = Driver::new(
            m,
            stream,
            opts.endpoint.clone(),
            None,
            None,
            opts.io_timeout,
        )?;
        let mut c = Self { d, st };
        loop {
            let e = c.next_event();
            if let Some(r) = c.st.on_setup(e) {
                return r.map(|()| c);
            }
        }
    }

    /// The mode in use.
    pub fn mode(&self) -> Mode {
        self.st.mode()
    }

    /// The server's Start-Time from Server-Start.
    pub fn server_start(&self) -> OwampTime {
        self.st.server_start()
    }

    /// The current time of the connection's clock.
    pub fn now(&self) -> OwampTime {
        self.d.now()
    }

    /// The sessions accepted so far on this connection.
    pub fn sessions(&self) -> &[SessionInfo] {
        self.st.sessions()
    }

    /// The next event; sessions received are kept aside as they come.
    fn next_event(&mut self) -> Option<Event> {
        loop {
            let e = self.d.next_event()?;
            if let Some(e) = self.st.keep_received(e) {
                return Some(e);
            }
        }
    }

    /// Requests one test session (RFC 4656 3.5) in which this client has `role`
    /// ([`Role::Sender`]: packets go to the server; [`Role::Receiver`]: they come from it),
    /// starting at `start_time`. Returns the session as both sides agreed on it.
    pub fn request_session(
        &mut self,
        role: Role,
        spec: &SessionSpec,
        start_time: OwampTime,
    ) -> Result<SessionInfo, ClientError> {
        let (sock, req) = self.st.prepare_request(role, spec, start_time)?;
        self.d.s.client_socket = Some(sock);
        if let Err(e) = self
            .d
            .feed(Input::Command(ClientCommand::RequestSession(req)))
        {
            self.d.s.client_socket = None;
            return Err(e.into());
        }
        loop {
            let e = self.next_event();
            if let Some(r) = self.st.on_request(e) {
                return r;
            }
        }
    }

    /// Starts the sessions requested (RFC 4656 3.6): returns once the server accepted, with
    /// the local senders and receivers running.
    pub fn start(&mut self) -> Result<(), ClientError> {
        self.d.feed(Input::Command(ClientCommand::StartSessions))?;
        loop {
            if let Some(r) = on_start(self.next_event()) {
                return r;
            }
        }
    }

    /// Waits for the end of the test: both sides send Stop-Sessions once their sessions are
    /// over (RFC 4656 3.8). Setting `stop` stops the test early: the local sessions end at
    /// once and Stop-Sessions is exchanged; records received so far are kept.
    pub fn wait(&mut self, stop: Option<&StopHandle>) -> Result<TestEnd, ClientError> {
        self.d.stop = stop.cloned();
        self.d.stop_fed = false;
        let ended = loop {
            if let Some(ended) = ClientState::on_wait(self.next_event()) {
                break ended;
            }
        };
        let end = self
            .st
            .test_end(&mut self.d.s.events, ended, self.d.stop_fed);
        self.d.stop = None;
        Ok(end)
    }

    /// Fetches the records of a session the server received (RFC 4656 3.8), sequence numbers
    /// `begin..=end` (`0, u32::MAX` for all).
    pub fn fetch(
        &mut self,
        sid: SessionId,
        begin: u32,
        end: u32,
    ) -> Result<FetchedSession, ClientError> {
        self.d
            .feed(Input::Command(ClientCommand::Fetch { sid, begin, end }))?;
        loop {
            if let Some(r) = on_fetch(self.next_event()) {
                return r;
            }
        }
    }

    /// Closes the connection.
    pub fn close(mut self) {
        let _ = self.d.feed(Input::Command(ClientCommand::Close));
        self.d.close_now();
    }
}

/// The sessions of a measurement ([`run_test`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestPlan {
    /// A session from the client to the server ("to"), if any.
    pub send: Option<SessionSpec>,
    /// A session from the server to the client ("from"), if any.
    pub receive: Option<SessionSpec>,
    /// How long after the requests the sessions start (the same start time for both).
    pub start_delay: Duration,
}

/// The outcome of one direction of a measurement.
#[derive(Debug)]
pub struct DirectionResult {
    /// The session as both sides agreed on it (its `request` is what goes into a `.owp` file).
    pub info: SessionInfo,
    /// The receiver's data: fetched from the server ("to"), or kept locally ("from").
    pub data: Result<StoredSession, ClientError>,
}

/// The outcome of [`run_test`].
#[derive(Debug)]
pub struct TestResults {
    /// The mode used.
    pub mode: Mode,
    /// Client to server.
    pub to: Option<DirectionResult>,
    /// Server to client.
    pub from: Option<DirectionResult>,
    /// The test was stopped early through the stop handle.
    pub stopped_early: bool,
}

/// The stored form of a fetched session (what [`write_owp`](owamp_os::store::write_owp) takes).
pub fn fetched_to_stored(f: FetchedSession) -> StoredSession {
    StoredSession {
        request: f.request,
        finished: f.finished,
        next_seqno: f.next_seqno,
        skips: f.skips,
        records: f.records,
    }
}

/// Runs a whole measurement against `server`, as owping does: connect and set up, request
/// the sessions of `plan` (both start `plan.start_delay` from now), start them, wait for the
/// end (or for `stop`), fetch the records of the session the server received, close.
///
/// Errors before the test starts are returned as `Err`; after that, each direction carries
/// its own result, so records already received are never lost.
pub fn run_test(
    server: SocketAddr,
    opts: &ClientOptions,
    plan: &TestPlan,
    stop: Option<&StopHandle>,
) -> Result<TestResults, ClientError> {
    let interrupted = || stop.is_some_and(|s| s.is_stopped());
    let mut conn = ClientConnection::connect(server, opts)?;
    if interrupted() {
        conn.close();
        return Err(ClientError::Interrupted);
    }
    let start = conn.now().saturating_add(plan.start_delay);
    let to = plan
        .send
        .as_ref()
        .map(|s| conn.request_session(Role::Sender, s, start))
        .transpose()?;
    let from = plan
        .receive
        .as_ref()
        .map(|s| conn.request_session(Role::Receiver, s, start))
        .transpose()?;
    if interrupted() {
        conn.close();
        return Err(ClientError::Interrupted);
    }
    conn.start()?;
    let mut end = conn.wait(stop)?;
    let mut received = std::mem::take(&mut end.received);
    let from = from.map(|info| DirectionResult {
        data: take_received(&mut received, &info, &end),
        info,
    });
    let to = to.map(|info| {
        let data = if end.complete {
            conn.fetch(info.sid, 0, u32::MAX).map(fetched_to_stored)
        } else {
            Err(incomplete(&end))
        };
        DirectionResult { info, data }
    });
    let mode = conn.mode();
    conn.close();
    Ok(TestResults {
        mode,
        to,
        from,
        stopped_early: end.stopped_early,
    })
}
