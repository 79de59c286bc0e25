//! Running a core [`Connection`] on a host, for any runtime: the configuration and results
//! of clients and servers, and [`Host`], which carries out every output of a connection that
//! needs no waiting (test sockets bound, marked and closed, test packets sent, datagrams read
//! and handed over, received sessions stored) and gives the adapter only the control
//! connection's octets to write and the time to wait until.
//!
//! An adapter's loop, blocking or async, is then:
//!
//! 1. [`Host::poll_control`] until `None`, writing each [`ControlAction::Transmit`] to the
//!    control connection (closing it on [`ControlAction::Close`]);
//! 2. wait until the control connection or a test socket ([`Host::sockets`]) is readable, or
//!    until [`Host::poll_timeout`]: [`Host::wait_for`] says how long, waking a precise
//!    timeout early by the host's learnt spin window;
//! 3. if the wait ended by its timer, tell [`Host::timer_expired`] (it learns how late the
//!    wake-up was), and [`Host::spin_until`] a precise timeout;
//! 4. feed what happened: [`Host::handle_control`], [`Host::handle_control_closed`],
//!    [`Host::receive`] for a readable socket, [`Host::handle_timeout`]; then back to 1.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use owamp_core::connection::{
    ClientConnection, ClientEvent, Connection, ControlAction, Machine, OpenError, Output,
    RecordStream, ServerConnection, SocketAction, SocketId, StoreFailure, TwoWayEnd,
};
use owamp_core::control::{
    AcceptCode, ClientConfig, CloseReason, ControlError, Mode, PortRange, Role, ServerConfig,
    SessionRequest, SetupRefused,
};
use owamp_core::io::{FetchedSession, SessionInfo, StoredSession};
use owamp_core::policy::{OverLimit, PerAddr, ServerPolicy};
pub use owamp_core::session::twamp::SentPacket;
use owamp_core::session::{Datagram, Timeout};
use owamp_core::time::{Interval, OwampTime};
use owamp_core::wire::{SessionId, Slot, SlotKind, TypeP};

use crate::client_records::SavedSession;
#[cfg(doc)]
use crate::client_records::{ClientRecords, Report};
use crate::clock::{Clock, SharedClock, SystemClock};
use crate::net::{is_addr_in_use, recv_batch, RecvBatch, RecvBufferSize, TestSocket, MAX_DATAGRAM};
use crate::rng::OsRng;
use crate::store::{FetchSource, RecordIter, RecordSink, SessionStore, StoreError};
use crate::timing::SpinWindow;

/// A flag that asks a test (client) or a server to stop early; clones share the flag.
///
/// Setting it is a single atomic store, so it may be done from a signal handler's context
/// (for example through a handle kept in a static).
///
/// - Client (an adapter's `wait` or `run_test`): during the test, the local sessions
///   are stopped and Stop-Sessions is exchanged ([`Input::StopSessions`]); the records
///   received so far are kept and the server's are still fetched.
/// - Server (an adapter's `Server`): no new connection is accepted; connections
///   in a test stop it the same way, the others are closed.
///
/// [`Input::StopSessions`]: owamp_core::io::Input::StopSessions
#[derive(Debug, Clone, Default)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    /// A flag not yet set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the flag.
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether the flag is set.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// How test endpoints run.
#[derive(Clone)]
pub struct EndpointConfig {
    /// The clock that stamps packets.
    pub clock: SharedClock,
    /// The longest a sender spins before a packet is due. It stops sleeping 200 µs early at
    /// first (or this, if shorter), then as early as recent wake-ups were late
    /// ([`SpinWindow`]); zero never spins (packets then leave as
    /// late as the sleep wakes).
    pub max_spin: Duration,
    /// The shortest spin before a packet is due, whatever the wake-ups learnt
    /// ([`SpinWindow`]; at most `max_spin`). [`SpinWindow::DEFAULT_MIN`] by default; a sender
    /// of a high rate sets more ([`crate::timing::min_spin_for`]).
    pub min_spin: Duration,
    /// The longest single wait of an endpoint thread: how fast it notices
    /// a [`StopHandle`].
    pub poll_interval: Duration,
    /// Added to the end of the schedule and the loss timeout: past that an endpoint ends even
    /// if nobody stopped it.
    pub margin: Duration,
    /// Whether receivers use the kernel's receive timestamps when the socket delivers them
    /// (otherwise, and when none comes, the clock is read on receipt).
    pub use_kernel_timestamps: bool,
    /// Whether an adapter whose runtime timer is coarse (Tokio's: 1 ms) waits with a timer of
    /// its own of nanosecond resolution (a `timerfd` per connection, [`crate::timing::TimerFd`]).
    /// A server of many connections may turn it off, with `max_spin` zero, to spend far less
    /// CPU: its packets then leave up to about a millisecond late (each stamped with the time
    /// it left).
    pub fine_timer: bool,
    /// Whether senders keep, per packet sent, the difference between its timestamp and its
    /// scheduled time.
    pub record_send_lateness: bool,
    /// Told about what makes a measurement less reliable without stopping it (a receive
    /// buffer smaller than the session's rate wants). Called on the thread or task that runs
    /// the connection: it should not block.
    pub warn: Option<WarningLog>,
    /// The network interface test sockets are bound to (`SO_BINDTODEVICE`, the clients'
    /// `-B`): their packets leave and arrive by it only. `None`: any interface.
    pub bind_device: Option<String>,
}

/// A callback told about [`HostWarning`]s.
pub type WarningLog = Arc<dyn Fn(&HostWarning) + Send + Sync>;

/// Something that makes a measurement less reliable without stopping it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostWarning {
    /// A receiving test socket has a smaller receive queue than a second of its session's
    /// packets needs: a receiver that falls behind may lose packets the network delivered.
    #[error("{0}")]
    RecvBufferShort(RecvBufferSize),
    /// A receiving test socket's receive buffer could not be set at all.
    #[error("cannot size a test socket's receive buffer ({wanted} octets wanted): {error}")]
    RecvBufferFailed {
        /// Octets of queue wanted.
        wanted: usize,
        /// Why not.
        error: String,
    },
}

impl std::fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointConfig")
            .field("max_spin", &self.max_spin)
            .field("min_spin", &self.min_spin)
            .field("poll_interval", &self.poll_interval)
            .field("margin", &self.margin)
            .field("use_kernel_timestamps", &self.use_kernel_timestamps)
            .field("fine_timer", &self.fine_timer)
            .field("record_send_lateness", &self.record_send_lateness)
            .field("warn", &self.warn.is_some())
            .field("bind_device", &self.bind_device)
            .finish_non_exhaustive()
    }
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock::new()),
            max_spin: SpinWindow::DEFAULT_MAX,
            min_spin: SpinWindow::DEFAULT_MIN,
            poll_interval: Duration::from_millis(20),
            margin: Duration::from_secs(5),
            use_kernel_timestamps: true,
            fine_timer: true,
            record_send_lateness: false,
            warn: None,
            bind_device: None,
        }
    }
}

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
    /// Where the sessions this client receives go: written to `<dir>/<SID>.owp` as their
    /// records come, so that memory does not grow with a session's length (each one is
    /// reported in [`TestEnd::saved`]); `None`: gathered in memory ([`TestEnd::received`]).
    pub receive_dir: Option<PathBuf>,
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
            receive_dir: None,
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
    #[error("control connection closed: {0}")]
    Closed(CloseReason),
    /// The server refused a Request-Session.
    #[error("session refused by the server: {0:?}")]
    Rejected(AcceptCode),
    /// The server refused a Fetch-Session.
    #[error("fetch refused by the server: {0:?}")]
    FetchDenied(AcceptCode),
    /// No UDP test socket could be bound for a session (on the test address, in the port
    /// range if one is set).
    #[error("cannot bind a UDP test socket for the session")]
    NoTestSocket,
    /// The session specification is unusable.
    #[error("invalid session: {0}")]
    InvalidSpec(&'static str),
    /// The stop handle was set before the test started.
    #[error("interrupted")]
    Interrupted,
    /// Records could not be written to (or read back from) their file.
    #[error("{}: {error}", path.display())]
    Save {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        error: StoreError,
    },
    /// The operation is not valid now (for example a request during a test).
    #[error("{0}")]
    Control(#[from] ControlError),
}

/// How a test ended (an adapter client's `wait`).
#[derive(Debug)]
pub struct TestEnd {
    /// Both Stop-Sessions were exchanged: the server's records can be fetched.
    pub complete: bool,
    /// The connection closed before that, and why.
    pub closed: Option<CloseReason>,
    /// The test was stopped early through the stop handle.
    pub stopped_early: bool,
    /// The server ended the test abnormally: its Stop-Sessions had this non-zero Accept
    /// (RFC 4656 3.8; a server of this crate sends one when it cannot keep the records it
    /// receives: [`StoreFailure::accept`]).
    pub server_failure: Option<AcceptCode>,
    /// The sessions this client received (finished normally, or incomplete if the test broke
    /// off), in the order they ended.
    pub received: Vec<StoredSession>,
    /// With [`ClientOptions::receive_dir`], instead: the files the sessions this client
    /// received were written to (or why not), in the order they ended.
    pub saved: Vec<SavedSession>,
}

/// How a TWAMP test ended (an adapter client's `wait_two_way`): as an OWAMP test, and each
/// session this client sent.
#[derive(Debug)]
pub struct TwoWayTestEnd {
    /// The test's end (`complete`: the client's Stop-Sessions was sent, RFC 5357 3.8; a TWAMP
    /// client receives no session, so `received` and `saved` are empty).
    pub test: TestEnd,
    /// The sessions this client sent, in the order they ended.
    pub sessions: Vec<TwoWaySessionEnd>,
}

/// The sessions of a measurement (an adapter's `run_test`).
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

/// The outcome of an adapter's `run_test`.
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

/// The stored form of a fetched session (what [`write_owp`](crate::store::write_owp) takes).
pub fn fetched_to_stored(f: FetchedSession) -> StoredSession {
    StoredSession {
        request: f.request,
        finished: f.finished,
        next_seqno: f.next_seqno,
        skips: f.skips,
        records: f.records,
    }
}

/// What a finished connection did, for logging.
#[derive(Debug, Clone)]
pub struct ConnectionSummary {
    /// The client.
    pub peer: SocketAddr,
    /// The mode used (open if set-up did not complete).
    pub mode: Mode,
    /// The KeyID the client authenticated with.
    pub key_id: Option<Vec<u8>>,
    /// Sessions accepted.
    pub sessions: usize,
    /// Receive sessions that ended and were stored.
    pub stored: usize,
    /// Receive sessions that could not be stored.
    pub store_errors: usize,
    /// The last store error (with the OS error), when there was one.
    pub store_error: Option<String>,
    /// Why the connection closed (`None` if it was closed by a server shutdown).
    pub close: Option<CloseReason>,
    /// When the set-up was refused: the mode and KeyID asked for, and why (never a secret).
    pub setup_refused: Option<SetupRefused>,
    /// Datagrams at its test sockets from others than the sessions' peers, dropped.
    pub foreign_datagrams: u64,
}

/// A callback told about each connection when it ends.
pub type ConnectionLog = Arc<dyn Fn(&ConnectionSummary) + Send + Sync>;

/// How a server runs.
#[derive(Clone)]
pub struct ServeConfig {
    /// The control state machine's settings: test port range, timeouts, PBKDF2 count,
    /// Start-Time (when zero, the adapter's `Server::bind` sets it to the current time).
    pub control: ServerConfig,
    /// How the test endpoints run (and the clock).
    pub endpoint: EndpointConfig,
    /// How long writing what the state machine queued at once (one message, or a whole
    /// Fetch-Session answer) may take in all; a client that reads slower is dropped.
    pub io_timeout: Duration,
    /// Connections served at once; further ones are closed at once.
    pub max_connections: usize,
    /// Connections served at once from one address (an IPv4 address, or an IPv6 /64:
    /// [`addr_key`](owamp_core::policy::addr_key)); further ones are closed at once,
    /// before the Server-Greeting. 0: no limit.
    pub max_connections_per_addr: usize,
    /// Told about every connection closed at once by `max_connections` or
    /// `max_connections_per_addr`, with the peer and the reason.
    pub refused: Option<RefusalLog>,
    /// After shutdown, how long the adapter's `Server::run` waits for running connections to finish.
    pub shutdown_grace: Duration,
    /// Told about every connection when it ends.
    pub log: Option<ConnectionLog>,
}

impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeConfig")
            .field("control", &self.control)
            .field("endpoint", &self.endpoint)
            .field("io_timeout", &self.io_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_addr", &self.max_connections_per_addr)
            .field("shutdown_grace", &self.shutdown_grace)
            .finish_non_exhaustive()
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            control: ServerConfig::default(),
            endpoint: EndpointConfig::default(),
            io_timeout: Duration::from_secs(30),
            max_connections: 64,
            max_connections_per_addr: 16,
            refused: None,
            shutdown_grace: Duration::from_secs(10),
            log: None,
        }
    }
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

/// A callback told about each connection refused at once.
pub type RefusalLog = Arc<dyn Fn(&Refused) + Send + Sync>;

/// A control connection closed as soon as it was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The client.
    pub peer: SocketAddr,
    /// Why.
    pub reason: Refusal,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "connection from {} refused: {}",
            owamp_core::control::canonical(self.peer),
            self.reason
        )
    }
}

/// Why a control connection was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// [`ServeConfig::max_connections`] are being served.
    #[error("{max} control connections are being served (the limit)")]
    Busy {
        /// The limit.
        max: usize,
    },
    /// The client's address holds [`ServeConfig::max_connections_per_addr`] already.
    #[error("per-address limit: {0} control connections")]
    PerAddr(OverLimit),
}

/// A server's connection counts, shared by the accept loops of its listeners and their
/// connections.
#[derive(Debug, Clone)]
pub struct ConnectionCounts {
    active: Arc<AtomicUsize>,
    accepted: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    per_addr: PerAddr,
}

impl Default for ConnectionCounts {
    fn default() -> Self {
        Self {
            active: Arc::default(),
            accepted: Arc::default(),
            refused: Arc::default(),
            per_addr: PerAddr::new(0),
        }
    }
}

impl ConnectionCounts {
    /// Admits a new connection from `peer` unless `max` are being served or its address
    /// ([`addr_key`](owamp_core::policy::addr_key)) has `max_per_addr` (0: no limit): it
    /// counts as active until the guard is dropped. A connection not admitted is counted as
    /// refused.
    pub fn admit(
        &self,
        max: usize,
        max_per_addr: usize,
        peer: IpAddr,
    ) -> Result<ActiveGuard, Refusal> {
        if self.active.load(Ordering::SeqCst) >= max {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(Refusal::Busy { max });
        }
        if let Err(e) = self.per_addr.acquire_up_to(peer, max_per_addr) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(Refusal::PerAddr(e));
        }
        self.active.fetch_add(1, Ordering::SeqCst);
        self.accepted.fetch_add(1, Ordering::SeqCst);
        Ok(ActiveGuard {
            active: self.active.clone(),
            per_addr: self.per_addr.clone(),
            peer,
        })
    }

    /// Admits `stream`'s peer as [`admit`](Self::admit) does with the limits of `config`;
    /// a refusal is told to [`ServeConfig::refused`].
    pub fn admit_peer(&self, config: &ServeConfig, peer: SocketAddr) -> Option<ActiveGuard> {
        match self.admit(
            config.max_connections,
            config.max_connections_per_addr,
            peer.ip(),
        ) {
            Ok(g) => Some(g),
            Err(reason) => {
                if let Some(log) = &config.refused {
                    log(&Refused { peer, reason });
                }
                None
            }
        }
    }

    /// Connections being served now from `addr`'s address (as counted: its IPv4 address or
    /// IPv6 /64).
    pub fn active_from(&self, addr: IpAddr) -> usize {
        self.per_addr.held(addr)
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

/// Decrements the active counts when a connection ends, however it ends.
#[derive(Debug)]
pub struct ActiveGuard {
    active: Arc<AtomicUsize>,
    per_addr: PerAddr,
    peer: IpAddr,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Ordering::SeqCst);
        self.per_addr.release(self.peer);
    }
}

/// The longest an adapter leaves the datagrams of a [batched](Host::is_batched) test socket
/// unread when nothing else wakes it. A receiving socket's queue holds about a second of its
/// session's packets ([`owamp_core::session::recv_buffer_len`]; more at low rates, where the
/// kernel's default is larger), so nothing overflows in between; and a receiver wakes anyway
/// for its loss deadlines (one per packet, on a 10 ms grid), after which it reads the batch.
/// So a receiver of 10 packets a second wakes about 10 times a second, one of 1,000 about
/// 100 times, where it woke once a packet.
pub const RECV_BATCH_WAIT: Duration = Duration::from_millis(100);

/// How long before the next packet is due a budgeted read of batched sockets stops
/// ([`Host::read_budget_end`]): more than one `recvmmsg` batch's work (32 datagrams), so
/// that the read ends before the packet is due whatever batch it is on.
const READ_MARGIN: Duration = Duration::from_micros(30);

/// How long an adapter may go without looking at its control connection and its test sockets
/// while it only waits for test packets to send: between two packets due within a few
/// milliseconds it may sleep on a bare timer (a `clock_nanosleep(2)` costs less than a
/// `ppoll(2)` over several descriptors, and sleeps more precisely), as long as every socket it
/// skips is [send-only](Host::is_send_only) or [batched](Host::is_batched) and it looks at
/// them all at least this often. A control message (an early Stop-Sessions, say) is then read
/// up to this much later; no timestamp depends on it.
pub const POLL_EVERY: Duration = Duration::from_millis(10);

/// A core connection and what the host holds for it: its test sockets, its clock, where
/// received sessions go, and the events for the application.
pub struct Host<M: Machine> {
    /// The core connection.
    pub conn: Connection<M>,
    clock: SharedClock,
    cfg: EndpointConfig,
    sockets: BTreeMap<SocketId, TestSocket>,
    store: Option<Arc<dyn SessionStore>>,
    /// Sessions this end received that were not given to a store (a client's).
    pub received: Vec<StoredSession>,
    /// Events not yet taken by the application.
    pub events: VecDeque<M::Event>,
    /// Receive sessions stored.
    pub stored: usize,
    /// Receive sessions that could not be stored.
    pub store_errors: usize,
    /// The last store error, for the log.
    pub last_store_error: Option<String>,
    /// Receive sessions whose records are being written as they come.
    sinks: HashMap<SessionId, Box<dyn RecordSink>>,
    /// A Fetch-Session answer being streamed from the store.
    feed: Option<FetchFeed<M>>,
    /// A Fetch-Session whose session the store is still writing: asked again until then.
    pending_fetch: Option<PendingFetch>,
    /// A streamed answer that held every stored record of this session was fed whole: the
    /// store hears of it once the connection has taken every octet of it without error.
    fetch_done: Option<SessionId>,
    /// Datagrams that could not be sent (counted as sent: they are lost in the network).
    pub send_errors: u64,
    /// Datagrams read from a test socket that did not come from its session's peer, and
    /// were dropped unread (those the kernel dropped for a connected socket are not seen).
    pub foreign_datagrams: u64,
    /// Why the control connection closed, once it has.
    pub closed: Option<CloseReason>,
    buf: Vec<u8>,
    /// Buffers for reading datagrams.
    batch: RecvBatch,
    /// How early to wake before a test packet is due.
    spin: SpinWindow,
    /// When the wait [`wait_for`](Self::wait_for) planned for a precise timeout should end.
    planned_wake: Option<OwampTime>,
    /// Kernel receive timestamps are used and the clock takes them (a clock that ignores
    /// them reads its own time on receipt, which a batched read would delay).
    kernel_times: bool,
    /// Reused by [`receive_batched`](Self::receive_batched): no allocation per wake-up.
    batched_ids: Vec<SocketId>,
}

impl<M: Machine> std::fmt::Debug for Host<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("sockets", &self.sockets.len())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl<M: Machine> Host<M> {
    /// Hosts `conn`; received sessions go to `store` when given (a server), else to
    /// [`received`](Self::received).
    pub fn new(
        conn: Connection<M>,
        cfg: &EndpointConfig,
        store: Option<Arc<dyn SessionStore>>,
    ) -> Self {
        let mut h = Self {
            conn,
            clock: cfg.clock.clone(),
            cfg: cfg.clone(),
            sockets: BTreeMap::new(),
            store,
            received: Vec::new(),
            events: VecDeque::new(),
            stored: 0,
            store_errors: 0,
            last_store_error: None,
            sinks: HashMap::new(),
            feed: None,
            pending_fetch: None,
            fetch_done: None,
            send_errors: 0,
            foreign_datagrams: 0,
            closed: None,
            buf: vec![0u8; MAX_DATAGRAM],
            // Sized for each socket when it is read.
            batch: RecvBatch::new(1),
            spin: SpinWindow::new(cfg.min_spin, cfg.max_spin),
            planned_wake: None,
            kernel_times: cfg.use_kernel_timestamps
                && cfg
                    .clock
                    .kernel_timestamp(std::time::SystemTime::now())
                    .is_some(),
            batched_ids: Vec::new(),
        };
        h.conn.set_clock_error(h.clock.error_estimate());
        h
    }

    /// The clock's time now.
    pub fn now(&self) -> OwampTime {
        self.clock.now()
    }

    /// The test sockets open now.
    pub fn sockets(&self) -> impl Iterator<Item = (SocketId, &TestSocket)> {
        self.sockets.iter().map(|(id, s)| (*id, s))
    }

    /// The next action on the control connection, after sending every test packet due and
    /// carrying out every other output; `None` when there is nothing left to do.
    pub fn poll_control(&mut self) -> Option<ControlAction> {
        loop {
            self.transmit_due();
            let Some(o) = self.conn.poll_output() else {
                // Every action returned before was carried out (the adapter calls again
                // only then): a complete answer's last octets are with the connection.
                if let Some(sid) = self.fetch_done.take() {
                    if !self.conn.is_closed() {
                        if let Some(store) = &self.store {
                            store.fetch_complete(&sid);
                        }
                    }
                }
                // A streamed Fetch-Session answer takes its next batch only once the last
                // one is on its way: one batch in memory at a time.
                if self.feed_fetch() {
                    continue;
                }
                return None;
            };
            match o {
                Output::Control(c) => {
                    if let ControlAction::Close(r) = &c {
                        self.closed = Some(r.clone());
                    }
                    return Some(c);
                }
                Output::Socket(a) => self.socket(a),
                Output::Store(s) => self.keep(*s),
                Output::Stream(r) => self.stream(r),
                Output::Event(e) => self.events.push_back(e),
            }
        }
    }

    /// Sends every test packet due now, each stamped just before it leaves.
    ///
    /// One `sendto` per packet rather than a `sendmmsg` of all those due: several are due at
    /// once only when the sender is behind its schedule or beyond about 100,000 packets/s, and
    /// a batch would stamp each packet before the whole batch leaves.
    pub fn transmit_due(&mut self) {
        loop {
            let now = self.clock.now();
            let Some(t) = self.conn.poll_transmit(now, &mut self.buf) else {
                return;
            };
            let sent = self
                .sockets
                .get(&t.socket)
                .map(|s| s.send_to(&self.buf[..t.transmit.len], t.transmit.dest));
            if !matches!(sent, Some(Ok(_))) {
                self.send_errors += 1;
            }
        }
    }

    fn socket(&mut self, a: SocketAction) {
        let now = self.clock.now();
        match a {
            SocketAction::Open {
                id,
                local,
                recv_buffer,
            } => {
                self.sockets.remove(&id);
                let r = match TestSocket::bind_on(local, self.cfg.bind_device.as_deref()) {
                    Ok(s) => {
                        self.size_recv_buffer(&s, recv_buffer);
                        let port = s.local_addr().port();
                        self.sockets.insert(id, s);
                        Ok(port)
                    }
                    Err(e) if is_addr_in_use(&e) => Err(OpenError::InUse),
                    Err(_) => Err(OpenError::Failed),
                };
                self.conn.socket_opened(now, id, r);
            }
            SocketAction::SetDscp { id, dscp } => {
                // A socket that cannot be marked still measures, unmarked, as the reference
                // does when setsockopt fails.
                if let Some(s) = self.sockets.get(&id) {
                    let _ = s.set_dscp(dscp);
                }
            }
            SocketAction::Connect { id, peer } => {
                // The connection filters datagrams itself as well: a socket that cannot be
                // connected still measures, only without the kernel's help against floods.
                if let Some(s) = self.sockets.get(&id) {
                    let _ = s.accept_only_from(peer);
                }
            }
            SocketAction::Close(id) => {
                self.sockets.remove(&id);
            }
        }
    }

    /// Gives a receiving socket the queue its session wants (as much as the kernel allows);
    /// a socket that gets less still measures, and the warning callback is told.
    fn size_recv_buffer(&self, s: &TestSocket, wanted: usize) {
        if wanted == 0 {
            return;
        }
        let warning = match s.set_recv_buffer(wanted) {
            Ok(r) if !r.is_short() => return,
            Ok(r) => HostWarning::RecvBufferShort(r),
            Err(e) => HostWarning::RecvBufferFailed {
                wanted,
                error: e.to_string(),
            },
        };
        if let Some(warn) = &self.cfg.warn {
            warn(&warning);
        }
    }

    fn keep(&mut self, s: StoredSession) {
        match &self.store {
            Some(store) => match store.save(&s) {
                Ok(()) => self.stored += 1,
                Err(e) => self.session_store_failed(s.request.sid, e),
            },
            None => {
                self.stored += 1;
                self.received.push(s);
            }
        }
    }

    /// Feeds the next batch of a streamed Fetch-Session answer; whether there was one. If
    /// the store fails midway, the answer cannot be completed: the connection closes.
    fn feed_fetch(&mut self) -> bool {
        let Some(f) = self.feed.as_mut() else {
            return false;
        };
        let remaining = (f.remaining)(&self.conn);
        if remaining == 0 {
            // Every record was fed (perhaps none): complete, unless the connection broke.
            if f.covers_all && !self.conn.is_closed() {
                self.fetch_done = Some(f.sid);
            }
            self.feed = None;
            return self.fetch_done.is_some();
        }
        let want = remaining.min(FETCH_FEED_BATCH) as usize;
        let mut batch = Vec::with_capacity(want);
        let mut failed = None;
        for r in f.records.by_ref().take(want) {
            match r {
                Ok(r) => batch.push(r),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let now = self.clock.now();
        if failed.is_some() || batch.is_empty() {
            // Fewer records than announced, or unreadable.
            let close = f.close;
            self.feed = None;
            if let Some(e) = failed {
                self.store_failed(e);
            } else {
                self.last_store_error = Some("a session file changed while it was fetched".into());
                self.store_errors += 1;
            }
            close(&mut self.conn, now);
            return true;
        }
        (f.push)(&mut self.conn, now, &batch);
        true
    }

    fn store_failed(&mut self, e: StoreError) {
        self.store_errors += 1;
        self.last_store_error = Some(e.to_string());
    }

    /// The records of receive session `sid` could not be kept: counted and kept for the log,
    /// and told to the connection, which decides what the peer hears (during the test, a
    /// Stop-Sessions that ends it early, RFC 4656 3.8).
    fn session_store_failed(&mut self, sid: SessionId, e: StoreError) {
        let failure = if e.is_no_space() {
            StoreFailure::NoSpace
        } else {
            StoreFailure::Other
        };
        self.store_failed(e);
        let now = self.clock.now();
        self.conn.store_failed(now, sid, failure);
    }

    /// A receive session's records as they come: to the store's sink for it (or gathered in
    /// memory without a store). A session whose sink failed is counted once as a store
    /// error and reported to the connection, which hands out no more of its records.
    fn stream(&mut self, r: RecordStream) {
        match r {
            RecordStream::Begin(request) => {
                let sink = match &self.store {
                    Some(store) => store.begin(&request),
                    None => Ok(crate::store::gather(&request)),
                };
                match sink {
                    Ok(sink) => {
                        self.sinks.insert(request.sid, sink);
                    }
                    Err(e) => self.session_store_failed(request.sid, e),
                }
            }
            RecordStream::Records { sid, records } => {
                let Some(sink) = self.sinks.get_mut(&sid) else {
                    return;
                };
                if let Err(e) = sink.append(&records) {
                    self.sinks.remove(&sid);
                    self.session_store_failed(sid, e);
                }
            }
            RecordStream::End(end) => {
                let Some(sink) = self.sinks.remove(&end.sid) else {
                    return;
                };
                match sink.finish(&end) {
                    Ok(Some(whole)) => self.keep(whole),
                    Ok(None) => self.stored += 1,
                    Err(e) => self.session_store_failed(end.sid, e),
                }
            }
        }
    }

    /// Octets read from the control connection.
    pub fn handle_control(&mut self, bytes: &[u8]) {
        let now = self.clock.now();
        self.conn.set_clock_error(self.clock.error_estimate());
        self.conn.handle_control(now, bytes);
    }

    /// The control connection ended or failed.
    pub fn handle_control_closed(&mut self) {
        let now = self.clock.now();
        self.conn.handle_control_closed(now);
    }

    /// Reads the datagrams waiting on socket `id` (without blocking), several per system call
    /// (`recvmmsg`, [`recv_batch`]), and hands each to the connection, stamped with the
    /// kernel's receive timestamp when there is one. Stops when the queue is empty (a batch
    /// came back short) or after 1,024. Returns how many were read.
    pub fn receive(&mut self, id: SocketId) -> usize {
        self.receive_until(id, None).0
    }

    /// [`receive`](Self::receive), stopping also once the clock reaches `limit` (looked at
    /// after each batch of datagrams, so one batch is always read). Returns how many were read
    /// and whether the queue was found empty.
    fn receive_until(&mut self, id: SocketId, limit: Option<OwampTime>) -> (usize, bool) {
        use std::os::fd::AsRawFd;
        let Some(fd) = self.sockets.get(&id).map(|s| s.as_raw_fd()) else {
            return (0, true);
        };
        self.batch
            .set_datagram_len(self.conn.datagram_buffer_len(id));
        let mut n = 0;
        // Bounded: a flood cannot keep the connection from its other work.
        while n < 1024 {
            // One batch at least, whatever the limit: a sender whose packets never leave it
            // the time still keeps up with what it receives.
            if n > 0 && limit.is_some_and(|l| self.clock.now() >= l) {
                return (n, false);
            }
            let got = match recv_batch(fd, &mut self.batch, libc::MSG_DONTWAIT) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return (n, true),
            };
            n += got;
            let now = self.clock.now();
            for i in 0..got {
                let Some((r, payload)) = self.batch.get(i) else {
                    break;
                };
                let kernel = if self.cfg.use_kernel_timestamps {
                    r.kernel_time.and_then(|k| self.clock.kernel_timestamp(k))
                } else {
                    None
                };
                let d = Datagram {
                    source: r.source,
                    recv_time: kernel.unwrap_or(now),
                    ttl: r.ttl,
                    truncated: r.truncated,
                    payload,
                };
                let outcome = self.conn.handle_datagram(now, id, &d);
                if outcome == owamp_core::session::DatagramOutcome::Foreign {
                    self.foreign_datagrams += 1;
                }
            }
            if got < self.batch.capacity() {
                return (n, true);
            }
        }
        (n, false)
    }

    /// Whether the datagrams of test socket `id` may wait in its queue and be read in batches
    /// ([`receive_batched`](Self::receive_batched), at least every [`RECV_BATCH_WAIT`]) rather
    /// than as each arrives: the socket belongs to a session in which this end receives (an
    /// OWAMP receiver only records; it answers nothing, whereas a TWAMP reflector answers at
    /// once and is never batched), and every datagram comes stamped by
    /// the kernel on arrival in a time scale the clock takes, so reading it later changes no
    /// measurement. A loss is only decided by [`handle_timeout`](Self::handle_timeout) (RFC
    /// 4656 3.6's timeout), which an adapter calls after reading the batch. An adapter need
    /// not wake for such a socket at all, which at a thousand packets a second saves most of
    /// a receiver's wake-ups.
    pub fn is_batched(&self, id: SocketId) -> bool {
        if !self.kernel_times {
            return false;
        }
        let Some(s) = self.sockets.get(&id) else {
            return false;
        };
        s.features().kernel_timestamps
            && self
                .conn
                .sessions()
                .any(|(sock, t)| sock == id && t.receiver().is_some())
    }

    /// Whether test socket `id` belongs to an OWAMP session in which this end sends (a TWAMP
    /// session-sender reads its replies there): what it
    /// may read (a queued ICMP error, a stray datagram) measures nothing, so an adapter may
    /// look at it late ([`POLL_EVERY`]).
    pub fn is_send_only(&self, id: SocketId) -> bool {
        self.sockets.contains_key(&id)
            && self
                .conn
                .sessions()
                .any(|(sock, t)| sock == id && t.role() == Role::Sender && !t.is_twamp())
    }

    /// Reads every test socket that [`is_batched`](Self::is_batched) (each until its queue is
    /// empty, at most 4,096 datagrams a socket). Returns how many datagrams were read.
    pub fn receive_batched(&mut self) -> usize {
        self.receive_batched_until(None).0
    }

    /// [`receive_batched`](Self::receive_batched), stopping once the clock reaches `limit`
    /// (looked at after each `recvmmsg`: one batch of each socket is read whatever the limit,
    /// so the reads keep up at any rate, and the limit may be passed by one batch's work): a
    /// sender reads what it received between its packets without making the next one late. Returns
    /// how many datagrams were read and whether every queue was read to its end (if not,
    /// call again before [`handle_timeout`](Self::handle_timeout), whose loss deadlines
    /// assume nothing that arrived in time is still queued).
    pub fn receive_batched_until(&mut self, limit: Option<OwampTime>) -> (usize, bool) {
        let mut ids = std::mem::take(&mut self.batched_ids);
        ids.clear();
        ids.extend(
            self.sockets
                .keys()
                .copied()
                .filter(|id| self.is_batched(*id)),
        );
        let mut n = 0;
        let mut complete = true;
        'sockets: for &id in &ids {
            for _ in 0..4 {
                let (got, empty) = self.receive_until(id, limit);
                n += got;
                if empty {
                    continue 'sockets;
                }
                if limit.is_some_and(|l| self.clock.now() >= l) {
                    complete = false;
                    break 'sockets;
                }
            }
            // 4,096 read and more queued: a flood; the rest waits for the next call.
        }
        self.batched_ids = ids;
        (n, complete)
    }

    /// When a budgeted read ([`receive_batched_until`](Self::receive_batched_until)) should
    /// stop so that the next test packet still leaves on time: a margin before it is due.
    /// The read may use the spin window (the thread is awake then anyway, and would only
    /// spin). `None` when no packet is due (read everything).
    pub fn read_budget_end(&self) -> Option<OwampTime> {
        self.poll_timeout()
            .filter(|t| t.precise)
            .map(|t| t.at.saturating_sub(READ_MARGIN))
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) at the latest.
    pub fn poll_timeout(&self) -> Option<Timeout> {
        let retry = self.pending_fetch.as_ref().map(|p| Timeout {
            at: p.retry_at,
            precise: false,
        });
        Timeout::earliest(self.conn.poll_timeout(), retry)
    }

    /// Time passed: feeds the clock's time (and its error estimate) to the connection.
    pub fn handle_timeout(&mut self) {
        self.conn.set_clock_error(self.clock.error_estimate());
        let now = self.clock.now();
        self.conn.handle_timeout(now);
    }

    /// How long to wait from now for `t` at most, and at most `max`; zero when it is time. A
    /// precise `t` (a test packet due) is woken early by the [spin window](Self::spin_window);
    /// if the wait then ends by its timer, call [`timer_expired`](Self::timer_expired).
    pub fn wait_for(&mut self, t: Option<Timeout>, max: Duration) -> Duration {
        self.planned_wake = None;
        let Some(t) = t else { return max };
        let now = self.clock.now();
        let left = t.at.duration_since(now).unwrap_or(Duration::ZERO);
        if !t.precise {
            return left.min(max);
        }
        let wait = left.saturating_sub(self.spin.window());
        if wait < max && !wait.is_zero() {
            self.planned_wake = Some(now.saturating_add(wait));
        }
        wait.min(max)
    }

    /// The wait [`wait_for`](Self::wait_for) gave ended by its timer rather than by input: how
    /// late it woke up adjusts the spin window. Nothing happens if that wait was not for a
    /// precise timeout.
    pub fn timer_expired(&mut self) {
        if let Some(planned) = self.planned_wake.take() {
            let late = self
                .clock
                .now()
                .duration_since(planned)
                .unwrap_or(Duration::ZERO);
            self.spin.record(late);
        }
    }

    /// How long before a test packet is due the host stops waiting and spins, as learnt so
    /// far (at most [`EndpointConfig::max_spin`]).
    pub fn spin_window(&self) -> Duration {
        self.spin.window()
    }

    /// Spins on the clock until `t` when it is precise and due within the spin window: the
    /// packet then leaves on time rather than when a sleep happens to wake.
    pub fn spin_until(&self, t: Option<Timeout>) {
        let Some(t) = t.filter(|t| t.precise) else {
            return;
        };
        let window = self.spin.window();
        loop {
            let now = self.clock.now();
            if now >= t.at || t.at.duration_since(now).is_some_and(|d| d > window) {
                return;
            }
            std::hint::spin_loop();
        }
    }

    /// Closes every test socket (the adapter ends the connection).
    pub fn close_sockets(&mut self) {
        self.sockets.clear();
    }
}

/// The end of a TWAMP session this client sent: the core's [`TwoWayEnd`] (packets sent,
/// skipped, whether the test ended normally), its packets no reply answered moved out to
/// `unanswered`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwoWaySessionEnd {
    /// The core's end of the session (its `unanswered` left empty).
    pub end: TwoWayEnd,
    /// The packets sent that no reply answered, in sequence order: the lost ones.
    pub unanswered: Vec<SentPacket>,
}

/// Records fed to a streamed Fetch-Session answer at a time.
const FETCH_FEED_BATCH: u32 = 4096;

/// How long a Fetch-Session waits for a session the store is still writing
/// ([`FetchSource::Pending`]) before it is answered as not found. The wait is for the
/// server to read the client's Stop-Sessions on the session's own connection, which the
/// client sent before it could fetch: normally well under a millisecond.
pub const FETCH_PENDING_WAIT: Duration = Duration::from_secs(2);

/// How often a pending Fetch-Session asks the store again.
const FETCH_PENDING_RETRY: Duration = Duration::from_millis(5);

/// A Fetch-Session waiting for its session to be written.
#[derive(Debug, Clone, Copy)]
struct PendingFetch {
    sid: SessionId,
    begin: u32,
    end: u32,
    since: OwampTime,
    retry_at: OwampTime,
}

/// A Fetch-Session answer streamed from the store into a server connection.
struct FetchFeed<M: Machine> {
    sid: SessionId,
    covers_all: bool,
    records: RecordIter,
    remaining: fn(&Connection<M>) -> u32,
    push: fn(&mut Connection<M>, OwampTime, &[owamp_core::wire::DataRecord]),
    close: fn(&mut Connection<M>, OwampTime),
}

/// A client's view of its connection: the address its test sockets use, what the set-up
/// gave, the sessions accepted. Interprets the client's events for the blocking and async
/// `ClientConnection`s.
#[derive(Debug)]
pub struct ClientState {
    test_ip: IpAddr,
    server_ip: IpAddr,
    mode: Mode,
    server_start: OwampTime,
    sessions: Vec<SessionInfo>,
    server_failure: Option<AcceptCode>,
}

impl ClientState {
    /// A connection from `local` to `server` (as the socket reports them).
    pub fn new(opts: &ClientOptions, local: SocketAddr, server: SocketAddr) -> Self {
        Self {
            test_ip: opts
                .test_ip
                .unwrap_or(owamp_core::control::canonical(local).ip()),
            server_ip: owamp_core::control::canonical(server).ip(),
            mode: Mode::Open,
            server_start: OwampTime::ZERO,
            sessions: Vec::new(),
            server_failure: None,
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

    /// The request for a session in which this client has `role`; the core opens its socket
    /// on the test address (in the port range of [`ClientOptions::test_ports`]).
    pub fn request(
        &self,
        role: Role,
        spec: &SessionSpec,
        start_time: OwampTime,
    ) -> Result<SessionRequest, ClientError> {
        spec.request(
            role,
            SocketAddr::new(self.test_ip, 0),
            self.server_ip,
            start_time,
        )
    }

    /// The set-up's answer, once there is one (`None`: wait for the next event). `closed`
    /// is why the connection closed, if it has and no event is left.
    pub fn on_setup(&mut self, e: Next) -> Option<Result<(), ClientError>> {
        match e {
            Next::Event(ClientEvent::Connected { mode, server_start }) => {
                self.mode = mode;
                self.server_start = server_start;
                Some(Ok(()))
            }
            other => other.closed(),
        }
    }

    /// The answer to Request-Session, once there is one.
    pub fn on_request(&mut self, e: Next) -> Option<Result<SessionInfo, ClientError>> {
        match e {
            Next::Event(ClientEvent::SessionAccepted(info)) => {
                self.sessions.push((*info).clone());
                Some(Ok(*info))
            }
            Next::Event(ClientEvent::SessionRejected { accept }) => {
                Some(Err(ClientError::Rejected(accept)))
            }
            Next::Event(ClientEvent::SocketFailed) => Some(Err(ClientError::NoTestSocket)),
            other => other.closed(),
        }
    }

    /// The answer to Start-Sessions, once there is one.
    pub fn on_start(e: Next) -> Option<Result<(), ClientError>> {
        match e {
            Next::Event(ClientEvent::Started) => Some(Ok(())),
            other => other.closed(),
        }
    }

    /// How the test ended, once it has: whether it is complete, or why the connection closed.
    /// A Stop-Sessions from the server that ended the test abnormally is kept for
    /// [`take_server_failure`](Self::take_server_failure).
    pub fn on_wait(&mut self, e: Next) -> Option<(bool, Option<CloseReason>)> {
        match e {
            Next::Event(ClientEvent::TestComplete) => Some((true, None)),
            Next::Event(ClientEvent::TestAborted { accept }) => {
                self.server_failure.get_or_insert(accept);
                None
            }
            Next::Event(_) | Next::Fetched(_) => None,
            Next::Closed(r) => Some((false, Some(r))),
        }
    }

    /// The non-zero Accept of the server's Stop-Sessions in the last test, if it had one.
    pub fn take_server_failure(&mut self) -> Option<AcceptCode> {
        self.server_failure.take()
    }

    /// The answer to Fetch-Session, once there is one (the connection's [`ClientRecords`]
    /// put its records where they were to go).
    pub fn on_fetch(e: Next) -> Option<Result<FetchedSession, ClientError>> {
        match e {
            Next::Fetched(r) => Some(*r),
            other => other.closed(),
        }
    }
}

/// What a client waits for next: an event, or the end of the connection.
#[derive(Debug)]
pub enum Next {
    /// An event.
    Event(ClientEvent),
    /// The answer to a Fetch-Session ([`Report::Fetched`]).
    Fetched(Box<Result<FetchedSession, ClientError>>),
    /// The connection closed, for this reason, and no event is left.
    Closed(CloseReason),
}

impl Next {
    fn closed<T>(self) -> Option<Result<T, ClientError>> {
        match self {
            Next::Closed(r) => Some(Err(ClientError::Closed(r))),
            Next::Event(_) | Next::Fetched(_) => None,
        }
    }
}

/// Why a direction of a measurement has no data when the test did not complete.
pub fn incomplete(end: &TestEnd) -> ClientError {
    ClientError::Closed(end.closed.clone().unwrap_or(CloseReason::Local))
}

/// The data of the session this client received in a measurement, taken out of `received`
/// (or read back from its file, with [`ClientOptions::receive_dir`]).
pub fn take_received(
    received: &mut Vec<StoredSession>,
    info: &SessionInfo,
    end: &TestEnd,
) -> Result<StoredSession, ClientError> {
    if let Some(i) = received.iter().position(|s| s.request.sid == info.sid) {
        return Ok(received.swap_remove(i));
    }
    let saved = end
        .saved
        .iter()
        .find(|s| s.sid == info.sid)
        .ok_or_else(|| incomplete(end))?;
    let error = match &saved.error {
        Some(e) => StoreError::Io(io::Error::other(e.clone())),
        None => match crate::store::read_owp(&saved.path) {
            Ok(s) => return Ok(s),
            Err(e) => e.into(),
        },
    };
    Err(ClientError::Save {
        path: saved.path.clone(),
        error,
    })
}

/// A client connection to `server` from `local`, as a core [`ClientConnection`] built at the
/// clock's time, with the options' test ports.
///
/// Its records stream (received sessions and Fetch-Session answers alike): the connection's
/// [`ClientRecords`] gathers them in memory or writes them to files, as the application
/// asked.
pub fn client_connection(opts: &ClientOptions) -> ClientConnection<OsRng> {
    let now = opts.endpoint.clock.now();
    ClientConnection::client(now, opts.control.clone(), OsRng)
        .with_test_ports(opts.test_ports)
        .with_streamed_records()
}

/// The server connection of an accepted TCP connection between `local` and `peer`, and its
/// summary as it starts.
pub fn server_connection<P: ServerPolicy>(
    config: &ServeConfig,
    policy: P,
    local: SocketAddr,
    peer: SocketAddr,
) -> (ServerConnection<P, OsRng>, ConnectionSummary) {
    let now = config.endpoint.clock.now();
    // Received records go to the store as they come: its memory stays bounded whatever the
    // session's length, and a crash leaves them on disk.
    let conn = ServerConnection::server(now, config.control.clone(), policy, OsRng, local, peer)
        .with_streamed_records();
    let summary = ConnectionSummary {
        peer: owamp_core::control::canonical(peer),
        mode: Mode::Open,
        key_id: None,
        sessions: 0,
        stored: 0,
        store_errors: 0,
        store_error: None,
        close: None,
        setup_refused: None,
        foreign_datagrams: 0,
    };
    (conn, summary)
}

impl<P: ServerPolicy, R: rand_core::RngCore + rand_core::CryptoRng>
    Host<owamp_core::control::Server<P, R>>
{
    /// Counts the server's events into `summary` and answers fetch requests from the store
    /// (asking again, while it is due, about a session the store is still writing).
    pub fn serve_events(&mut self, summary: &mut ConnectionSummary) {
        use owamp_core::connection::ServerEvent;
        if let Some(p) = self.pending_fetch {
            if self.clock.now() >= p.retry_at {
                self.pending_fetch = None;
                self.answer_fetch(p);
            }
        }
        while let Some(e) = self.events.pop_front() {
            match e {
                ServerEvent::SessionAccepted(_) => summary.sessions += 1,
                ServerEvent::FetchRequest { sid, begin, end } => {
                    let now = self.clock.now();
                    self.answer_fetch(PendingFetch {
                        sid,
                        begin,
                        end,
                        since: now,
                        retry_at: now,
                    });
                }
                ServerEvent::Started | ServerEvent::TestComplete => {}
            }
        }
    }

    /// Answers a Fetch-Session from the store, or keeps it to ask again when the store is
    /// still writing the session (at most [`FETCH_PENDING_WAIT`], then it is not found).
    fn answer_fetch(&mut self, p: PendingFetch) {
        use owamp_core::io::FetchReply;
        let source = match &self.store {
            Some(store) => store.fetch(&p.sid, p.begin, p.end),
            None => FetchSource::Reply(FetchReply::NotFound),
        };
        let now = self.clock.now();
        match source {
            FetchSource::Reply(reply) => self.conn.fetch_reply(now, reply),
            FetchSource::Pending => {
                let waited = now.duration_since(p.since).unwrap_or(Duration::ZERO);
                if waited >= FETCH_PENDING_WAIT || self.conn.is_closed() {
                    self.conn.fetch_reply(now, FetchReply::NotFound);
                } else {
                    self.pending_fetch = Some(PendingFetch {
                        retry_at: now.saturating_add(FETCH_PENDING_RETRY),
                        ..p
                    });
                }
            }
            FetchSource::Stream {
                head,
                records,
                covers_all,
            } => {
                self.conn
                    .fetch_reply(now, FetchReply::Streamed(Box::new(head)));
                self.feed = Some(FetchFeed {
                    sid: p.sid,
                    covers_all,
                    records,
                    remaining: |c| c.fetch_remaining(),
                    push: |c, now, r| c.fetch_records(now, r),
                    close: |c, now| c.close(now),
                });
            }
        }
    }

    /// Completes the summary of the connection once it has closed.
    pub fn finish_summary(&self, mut summary: ConnectionSummary) -> ConnectionSummary {
        summary.mode = self.conn.mode();
        summary.key_id = self.conn.key_id().map(<[u8]>::to_vec);
        summary.stored = self.stored;
        summary.store_errors = self.store_errors;
        summary.store_error = self.last_store_error.clone();
        summary.close = self.closed.clone();
        summary.setup_refused = self.conn.setup_refused().cloned();
        summary.foreign_datagrams = self.foreign_datagrams;
        summary
    }
}
