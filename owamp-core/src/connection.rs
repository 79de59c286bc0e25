//! A control connection together with its test sessions: the one object a host drives.
//!
//! [`ClientConnection`] and [`ServerConnection`] wrap the control state machines of
//! [`crate::control`] and own a [`TestSession`] for every session accepted on the connection,
//! so that every protocol decision is made here and the host only moves octets, datagrams and
//! time. The contract, after quinn-proto and str0m:
//!
//! - Feed what happens with the `handle_*` methods, each stamped with the current time:
//!   octets read from the control connection ([`Connection::handle_control`]), its end
//!   ([`Connection::handle_control_closed`]), a datagram read from a test socket
//!   ([`Connection::handle_datagram`]), the time ([`Connection::handle_timeout`]), the answer
//!   to a request for a socket ([`Connection::socket_opened`]), and the application's
//!   commands (the client's [`request_session`](Connection::request_session),
//!   [`start_sessions`](Connection::start_sessions), [`fetch`](Connection::fetch), ...; the
//!   server's [`fetch_reply`](Connection::fetch_reply)).
//! - Then send every test packet [`Connection::poll_transmit`] builds (read the clock just
//!   before each call: it stamps the packet with that time), and carry out every
//!   [`Output`] [`Connection::poll_output`] returns, until both return `None`.
//! - Then wait for input, at most until [`Connection::poll_timeout`]. When it is
//!   [`precise`](Timeout::precise), a test packet is due then: wake up a little early and
//!   spin to the exact time. This is the only timer.
//!
//! Outputs come in four kinds: octets for the control connection and its close
//! ([`ControlAction`]), UDP test sockets to open, mark and close ([`SocketAction`]), a
//! received session to keep ([`Output::Store`], whole at its end; or, with
//! [`Connection::with_streamed_records`], its records as they come, [`Output::Stream`]), and
//! what the application may want to know ([`ClientEvent`] / [`ServerEvent`]; a TWAMP
//! client's two-way records among them). Inputs that only one role takes are methods of that
//! role only, so a server can never be handed a client command.
//!
//! Nothing here reads a clock, touches a socket or a file, or draws randomness other than from
//! the RNG the state machine was built with.
//!
//! # TWAMP
//!
//! With [`Protocol::Twamp`] in the [`ClientConfig`] or [`ServerConfig`] (RFC 5357), the same
//! connection drives TWAMP-Control and TWAMP-Test, with the same inputs and outputs:
//!
//! - Client (the control-client and session-sender): [`request_session`](Connection::request_session)
//!   with [`Role::Sender`] (the slots and packet count are the local schedule, never sent) opens
//!   the test socket and sends Request-TW-Session; after
//!   [`start_sessions`](Connection::start_sessions), `poll_transmit` sends the test packets on
//!   that schedule, and the reflector's replies, fed with `handle_datagram` on the same
//!   socket, come out as [`ClientEvent::TwoWayRecords`] (batches, as they come). Once the
//!   last packet has left and its Timeout plus `end_delay` has passed, the client sends
//!   Stop-Sessions: [`ClientEvent::TwoWayEnd`] (how many were sent) and
//!   [`ClientEvent::TestComplete`] follow. [`fetch`](Connection::fetch) is refused: TWAMP has
//!   no Fetch-Session.
//! - Server (the session-reflector): Request-TW-Session is admitted by the policy as an OWAMP
//!   request in which the server receives, and the reflector's socket is asked for with
//!   [`SocketAction::Open`]; every packet from the sender fed with `handle_datagram` is
//!   answered by the next `poll_transmit`, stamped with its receive time and with the `now` of
//!   that call (RFC 5357 4.2.1: the reply's Timestamp is when it leaves). The client's
//!   Stop-Sessions ends the test ([`ServerEvent::TestComplete`]); the reflector keeps
//!   answering packets still in transit for the request's Timeout (RFC 5357 3.5), then its
//!   socket is closed. Nothing is stored.
//!
//! [`Protocol::Twamp`]: crate::control::Protocol::Twamp
//!
//! # Example: the host's loop, with the I/O left out
//!
//! ```
//! use owamp_core::connection::{ClientConnection, ControlAction, Output, SocketAction};
//! use owamp_core::control::ClientConfig;
//! use owamp_core::time::OwampTime;
//! # struct Rng(u64);
//! # impl rand_core::RngCore for Rng {
//! #     fn next_u32(&mut self) -> u32 { self.next_u64() as u32 }
//! #     fn next_u64(&mut self) -> u64 { self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1); self.0 }
//! #     fn fill_bytes(&mut self, d: &mut [u8]) { for b in d { *b = self.next_u32() as u8 } }
//! #     fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), rand_core::Error> { self.fill_bytes(d); Ok(()) }
//! # }
//! # impl rand_core::CryptoRng for Rng {}
//! let now = OwampTime::from_parts(3_900_000_000, 0);
//! let mut conn = ClientConnection::client(now, ClientConfig::default(), Rng(1));
//! // ... octets read from the TCP connection:
//! // conn.handle_control(now, &greeting_bytes);
//! let mut buf = [0u8; 2048];
//! while let Some(t) = conn.poll_transmit(now, &mut buf) {
//!     // send buf[..t.transmit.len] from socket t.socket to t.transmit.dest
//! #   let _ = t;
//! }
//! while let Some(out) = conn.poll_output() {
//!     match out {
//!         Output::Control(ControlAction::Transmit(bytes)) => { /* write to the TCP stream */ }
//!         Output::Control(ControlAction::Close(reason)) => { /* close it */ }
//!         Output::Socket(SocketAction::Open { id, local, .. }) => {
//!             /* bind a UDP socket at `local` (its receive buffer sized as asked),
//!                then: conn.socket_opened(now, id, Ok(port)) */
//!         }
//!         Output::Socket(_) => { /* set its DSCP, or close it */ }
//!         Output::Store(session) => { /* keep the received session */ }
//!         Output::Stream(records) => { /* only with with_streamed_records */ }
//!         Output::Event(event) => { /* tell the application */ }
//!     }
//! }
//! // wait for input, at most until conn.poll_timeout(), then feed it in
//! assert!(conn.poll_timeout().is_some()); // waiting for the Server-Greeting
//! ```

use std::collections::VecDeque;

use core::net::{IpAddr, SocketAddr};

use rand_core::{CryptoRng, RngCore};

use crate::control::{Client, ClientConfig, ControlError, PortRange, Server, ServerConfig};
use crate::io::{
    FetchReply, FetchStream, FetchedSession, Input, Output as MachineOutput, SessionInfo,
};
use crate::io::{SessionEnd, StoredSession};
use crate::policy::ServerPolicy;
use crate::proto::{canonical, ClientCommand, CloseReason, Protocol, Role, SessionRequest};
use crate::session::twamp::{SentPacket, TwoWayRecord};
use crate::session::{Datagram, DatagramOutcome, StreamEnd, TestSession, Timeout, Transmit};
use crate::time::{ErrorEstimate, OwampTime};
use crate::wire::{AcceptCode, DataRecord, Mode, RequestSession, SessionId, SkipRange};

/// A test socket the connection asked the host for ([`SocketAction::Open`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(pub u32);

/// One action asked of the host.
#[derive(Debug)]
pub enum Output<E> {
    /// The control connection.
    Control(ControlAction),
    /// The UDP test sockets.
    Socket(SocketAction),
    /// A session this end received is over (RFC 4656 3.8): keep it (a server stores it for
    /// Fetch-Session; a client hands it to the application).
    Store(Box<StoredSession>),
    /// With [`Connection::with_streamed_records`], instead of [`Output::Store`]: a received
    /// session's records as they come.
    Stream(RecordStream),
    /// Something the application may want to know.
    Event(E),
}

/// A receive session's records as they come ([`Connection::with_streamed_records`]), so that
/// the host writes them out at once: memory stays bounded whatever the session's length, and
/// a crash leaves what was received on disk (in the `.owp` layout, a file whose header says
/// "not finished" holds as many records as fit in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordStream {
    /// A session this end receives was agreed on: open its file with this request (as
    /// stored: [`SessionInfo::request`]).
    Begin(Box<RequestSession>),
    /// Records of the session, in order: append them.
    Records {
        /// The session.
        sid: SessionId,
        /// The records.
        records: Vec<DataRecord>,
    },
    /// The session is over (RFC 4656 3.8): append the tail, apply the prune if there is one,
    /// and finish the file.
    End(Box<StreamEnd>),
}

/// Records a streaming receive session holds before it hands them out
/// ([`RecordStream::Records`]).
pub const STREAM_BATCH: usize = 512;

/// How long a streaming receive session holds records at most before it hands them out.
pub const STREAM_INTERVAL: core::time::Duration = core::time::Duration::from_secs(1);

/// What to do with the control connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlAction {
    /// Write these octets, in order.
    Transmit(Vec<u8>),
    /// Close it once every octet queued before is written; the connection takes no input
    /// after this, and its sockets have all been closed.
    Close(CloseReason),
}

/// What to do with the UDP test sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketAction {
    /// Bind a UDP socket at `local` (port 0: any port) and answer with
    /// [`Connection::socket_opened`]. An `Open` for an `id` already open means: that bind
    /// failed as in use, try this address instead (the old socket is not kept).
    Open {
        /// The socket's name in later actions and inputs.
        id: SocketId,
        /// Where to bind it.
        local: SocketAddr,
        /// The receive buffer (`SO_RCVBUF`) it should have, in octets: room for about a
        /// second of the session's test packets ([`recv_buffer_len`]). 0 when the socket only
        /// sends. A host keeps its default if that is larger, and may not get as much as this.
        ///
        /// [`recv_buffer_len`]: crate::session::recv_buffer_len
        recv_buffer: usize,
    },
    /// Mark the datagrams sent from the socket with this DSCP (RFC 4656 3.5 Type-P).
    SetDscp {
        /// The socket.
        id: SocketId,
        /// The DSCP, 1 to 63.
        dscp: u8,
    },
    /// Take datagrams only from `peer` (`connect(2)` the socket): the kernel then drops
    /// datagrams from anyone else before they are queued, so a flood at the port does not
    /// crowd the session's packets out of the receive buffer. Asked for a receiving socket
    /// whose peer's port is known; the connection ignores datagrams from anyone but the peer
    /// in any case, so a host may skip it (or fail to do it) at the cost of that protection.
    Connect {
        /// The socket.
        id: SocketId,
        /// The sender's address and port, as agreed in Request-Session (RFC 4656 3.5).
        peer: SocketAddr,
    },
    /// Close the socket.
    Close(SocketId),
}

/// Why the host could not keep a receive session's records ([`Connection::store_failed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFailure {
    /// The disk (or the user's quota) is full: room may come back.
    NoSpace,
    /// Any other error.
    Other,
}

impl StoreFailure {
    /// The Accept code of the Stop-Sessions that reports it (RFC 4656 3.8, with the codes
    /// of 3.3): a full disk is a temporary resource limitation, anything else an internal
    /// error.
    pub const fn accept(self) -> AcceptCode {
        match self {
            StoreFailure::NoSpace => AcceptCode::TemporaryResourceLimit,
            StoreFailure::Other => AcceptCode::InternalError,
        }
    }
}

/// Why a socket could not be opened ([`Connection::socket_opened`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// The port is in use: the connection tries another one when it has a range.
    InUse,
    /// Any other error.
    Failed,
}

/// A test packet to send ([`Connection::poll_transmit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketTransmit {
    /// The socket to send it from.
    pub socket: SocketId,
    /// The packet, at the start of the buffer given.
    pub transmit: Transmit,
}

/// What a connection tells the application, for both roles.
#[derive(Debug, Clone)]
pub enum SessionEvent {
    /// A test session has been agreed on by both sides.
    SessionAccepted(Box<SessionInfo>),
    /// The test sessions started (Start-Sessions accepted, RFC 4656 3.6).
    Started,
    /// Both Stop-Sessions messages were exchanged: the test is over (RFC 4656 3.8).
    TestComplete,
}

/// What a client connection tells the application.
#[derive(Debug, Clone)]
pub enum ClientEvent {
    /// The control connection is set up (Server-Start accepted, RFC 4656 3.1): the client
    /// takes commands.
    Connected {
        /// The mode in use.
        mode: Mode,
        /// The server's Start-Time.
        server_start: OwampTime,
    },
    /// A test session has been agreed on.
    SessionAccepted(Box<SessionInfo>),
    /// The server refused a Request-Session (the connection stays usable).
    SessionRejected {
        /// The Accept code of Accept-Session.
        accept: AcceptCode,
    },
    /// No test socket could be opened for a request; it was not sent.
    SocketFailed,
    /// The test sessions started.
    Started,
    /// The test is over: the server's records can be fetched.
    TestComplete,
    /// The server's Stop-Sessions had a non-zero Accept (RFC 4656 3.8): it ended the test
    /// abnormally (a server of this crate does so when it cannot keep the records it
    /// receives, [`Connection::store_failed`]). Comes before [`ClientEvent::TestComplete`].
    TestAborted {
        /// The Accept code of the server's Stop-Sessions.
        accept: AcceptCode,
    },
    /// With [`Connection::with_streamed_records`]: the answer to [`Connection::fetch`] has
    /// reached its records; `head` holds everything else it says, and how many records
    /// follow in [`ClientEvent::FetchedRecords`].
    FetchBegin {
        /// The session asked for.
        sid: SessionId,
        /// The answer but its records.
        head: Box<FetchStream>,
    },
    /// With [`Connection::with_streamed_records`]: the next records of the answer, in order.
    /// Provisional until [`ClientEvent::Fetched`]: if the answer's HMAC does not match (or
    /// it breaks off), the connection closes instead and they must be discarded.
    FetchedRecords {
        /// The session asked for.
        sid: SessionId,
        /// The records.
        records: Vec<DataRecord>,
    },
    /// The records asked for with [`Connection::fetch`] (with
    /// [`Connection::with_streamed_records`], none: they came in
    /// [`ClientEvent::FetchedRecords`], and this says they are complete and intact).
    Fetched(Box<FetchedSession>),
    /// The server refused a Fetch-Session.
    FetchDenied {
        /// The Accept code of Fetch-Ack.
        accept: AcceptCode,
    },
    /// TWAMP: replies the session-reflector sent back for a session this client sends
    /// (RFC 5357 4.2.1), in the order they arrived, duplicates included: at least every
    /// [`STREAM_BATCH`] replies, or with the first reply after [`STREAM_INTERVAL`], and the
    /// rest just before [`ClientEvent::TwoWayEnd`].
    TwoWayRecords {
        /// The session.
        sid: SessionId,
        /// The replies.
        records: Vec<TwoWayRecord>,
    },
    /// TWAMP: a session this client sent is over; no more of its replies come.
    TwoWayEnd(Box<TwoWayEnd>),
}

/// The end of a TWAMP session this client sent ([`ClientEvent::TwoWayEnd`]): with the
/// replies of [`ClientEvent::TwoWayRecords`], what
/// [`TwoWaySummary`](crate::stats::twamp::TwoWaySummary) needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwoWayEnd {
    /// The session.
    pub sid: SessionId,
    /// Packets sent.
    pub sent: u32,
    /// Packets skipped rather than sent late (more than the timeout behind the schedule),
    /// ascending.
    pub skips: Vec<SkipRange>,
    /// Whether the test ended with the client's Stop-Sessions (RFC 5357 3.8); `false` when
    /// the control connection broke off first (replies may be missing).
    pub complete: bool,
    /// The packets sent that no reply answered, in sequence order: the lost ones, each with
    /// the time it left and its error estimate (a two-way session file keeps both).
    pub unanswered: Vec<SentPacket>,
}

impl From<SessionEvent> for ClientEvent {
    fn from(e: SessionEvent) -> Self {
        match e {
            SessionEvent::SessionAccepted(i) => ClientEvent::SessionAccepted(i),
            SessionEvent::Started => ClientEvent::Started,
            SessionEvent::TestComplete => ClientEvent::TestComplete,
        }
    }
}

/// What a server connection tells its host.
#[derive(Debug, Clone)]
pub enum ServerEvent {
    /// A test session has been agreed on.
    SessionAccepted(Box<SessionInfo>),
    /// The test sessions started.
    Started,
    /// The test is over.
    TestComplete,
    /// The client asked for stored records: answer with [`Connection::fetch_reply`].
    FetchRequest {
        /// The session asked for.
        sid: SessionId,
        /// First sequence number asked for.
        begin: u32,
        /// Last sequence number asked for (0xFFFFFFFF for all).
        end: u32,
    },
}

impl From<SessionEvent> for ServerEvent {
    fn from(e: SessionEvent) -> Self {
        match e {
            SessionEvent::SessionAccepted(i) => ServerEvent::SessionAccepted(i),
            SessionEvent::Started => ServerEvent::Started,
            SessionEvent::TestComplete => ServerEvent::TestComplete,
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl<R> Sealed for crate::control::Client<R> {}
    impl<P, R> Sealed for crate::control::Server<P, R> {}
}

/// The control state machine of a [`Connection`]: [`Client`] or [`Server`].
pub trait Machine: sealed::Sealed {
    /// What the connection tells the application.
    type Event: From<SessionEvent> + core::fmt::Debug;
    #[doc(hidden)]
    fn handle(&mut self, now: OwampTime, input: Input<'_>) -> Result<(), ControlError>;
    #[doc(hidden)]
    fn poll(&mut self) -> Option<MachineOutput>;
    #[doc(hidden)]
    fn deadline(&self) -> Option<OwampTime>;
    #[doc(hidden)]
    fn closed(&self) -> bool;
    #[doc(hidden)]
    fn current_mode(&self) -> Mode;
    #[doc(hidden)]
    fn testing(&self) -> bool;
    #[doc(hidden)]
    fn role_event(o: MachineOutput) -> Option<Self::Event>;
    #[doc(hidden)]
    fn socket_failed_event() -> Option<Self::Event>;
    #[doc(hidden)]
    fn stream_records(&mut self) {}
    #[doc(hidden)]
    fn protocol(&self) -> Protocol;
    #[doc(hidden)]
    fn two_way_event(e: TwoWay) -> Option<Self::Event>;
}

/// What a TWAMP session-sender hands out ([`Machine::two_way_event`]).
#[doc(hidden)]
#[derive(Debug)]
pub enum TwoWay {
    Records(SessionId, Vec<TwoWayRecord>),
    End(Box<TwoWayEnd>),
}

impl<R: RngCore + CryptoRng> Machine for Client<R> {
    type Event = ClientEvent;
    fn handle(&mut self, now: OwampTime, input: Input<'_>) -> Result<(), ControlError> {
        self.handle_input(now, input)
    }
    fn poll(&mut self) -> Option<MachineOutput> {
        self.poll_output()
    }
    fn deadline(&self) -> Option<OwampTime> {
        self.poll_timeout()
    }
    fn closed(&self) -> bool {
        self.is_closed()
    }
    fn current_mode(&self) -> Mode {
        self.mode()
    }
    fn testing(&self) -> bool {
        self.in_test()
    }
    fn socket_failed_event() -> Option<ClientEvent> {
        Some(ClientEvent::SocketFailed)
    }
    fn stream_records(&mut self) {
        self.stream_fetches();
    }
    fn protocol(&self) -> Protocol {
        Client::protocol(self)
    }
    fn two_way_event(e: TwoWay) -> Option<ClientEvent> {
        Some(match e {
            TwoWay::Records(sid, records) => ClientEvent::TwoWayRecords { sid, records },
            TwoWay::End(end) => ClientEvent::TwoWayEnd(end),
        })
    }
    fn role_event(o: MachineOutput) -> Option<ClientEvent> {
        Some(match o {
            MachineOutput::Connected { mode, server_start } => {
                ClientEvent::Connected { mode, server_start }
            }
            MachineOutput::SessionRejected { accept } => ClientEvent::SessionRejected { accept },
            MachineOutput::FetchBegin { sid, head } => ClientEvent::FetchBegin { sid, head },
            MachineOutput::FetchedRecords { sid, records } => {
                ClientEvent::FetchedRecords { sid, records }
            }
            MachineOutput::Fetched(f) => ClientEvent::Fetched(f),
            MachineOutput::FetchDenied { accept } => ClientEvent::FetchDenied { accept },
            MachineOutput::TestAborted { accept } => ClientEvent::TestAborted { accept },
            _ => return None,
        })
    }
}

impl<P: ServerPolicy, R: RngCore + CryptoRng> Machine for Server<P, R> {
    type Event = ServerEvent;
    fn handle(&mut self, now: OwampTime, input: Input<'_>) -> Result<(), ControlError> {
        self.handle_input(now, input)
    }
    fn poll(&mut self) -> Option<MachineOutput> {
        self.poll_output()
    }
    fn deadline(&self) -> Option<OwampTime> {
        self.poll_timeout()
    }
    fn closed(&self) -> bool {
        self.is_closed()
    }
    fn current_mode(&self) -> Mode {
        self.mode()
    }
    fn testing(&self) -> bool {
        self.in_test()
    }
    fn socket_failed_event() -> Option<ServerEvent> {
        None
    }
    fn protocol(&self) -> Protocol {
        Server::protocol(self)
    }
    fn two_way_event(_: TwoWay) -> Option<ServerEvent> {
        // A server never sends TWAMP test packets: it reflects.
        None
    }
    fn role_event(o: MachineOutput) -> Option<ServerEvent> {
        match o {
            MachineOutput::FetchRequest { sid, begin, end } => {
                Some(ServerEvent::FetchRequest { sid, begin, end })
            }
            _ => None,
        }
    }
}

/// A test session with the socket it runs on.
#[derive(Debug)]
struct Entry {
    socket: SocketId,
    session: TestSession,
    /// Its end was reported to the state machine.
    reported: bool,
    /// When its records were last handed out (streaming only).
    flushed_at: OwampTime,
    /// Its records cannot be kept ([`Connection::store_failed`]): none is handed out any
    /// more.
    failed: bool,
    /// A TWAMP reflector of a test that is over, answering until its Timeout after
    /// Stop-Sessions has passed (RFC 5357 3.5); no longer part of a test.
    draining: bool,
}

impl Entry {
    /// Whether `held` records (or replies) are to be handed out at `now`: a full batch, or
    /// any after [`STREAM_INTERVAL`] since the last; if so, that is now.
    fn batch_due(&mut self, held: usize, now: OwampTime) -> bool {
        if held == 0
            || (held < STREAM_BATCH && now < self.flushed_at.saturating_add(STREAM_INTERVAL))
        {
            return false;
        }
        self.flushed_at = now;
        true
    }
}

/// A socket asked for and not yet attached to a session.
#[derive(Debug)]
struct PendingSocket {
    id: SocketId,
    /// Server: the session being requested.
    sid: Option<SessionId>,
    /// Client: the request waiting for its socket, or sent with it.
    request: Option<ClientRequest>,
    /// The host reported it open.
    open: bool,
}

/// The receive buffer of the client's test socket for `req`: sized from the session's rate and
/// packet length when the client receives (OWAMP) or reads the reflector's replies (TWAMP,
/// whose replies are at least the reflector's header), none when it only sends.
fn client_recv_buffer(req: &SessionRequest, mode: Mode, protocol: Protocol) -> usize {
    let padding = match (req.role, protocol) {
        (Role::Receiver, _) => req.padding,
        (Role::Sender, Protocol::Twamp) => req
            .padding
            .max(crate::session::twamp::default_padding(mode)),
        (Role::Sender, Protocol::Owamp) => return 0,
    };
    crate::session::recv_buffer_len(mode, &req.slots, req.packets, padding)
}

#[derive(Debug)]
struct ClientRequest {
    req: SessionRequest,
    range: Option<PortRange>,
    tries: u32,
    sent: bool,
}

/// A control connection and its test sessions, driven as the [module docs](self) say.
#[derive(Debug)]
pub struct Connection<M: Machine> {
    machine: M,
    out: VecDeque<Output<M::Event>>,
    sessions: Vec<Entry>,
    pending: Vec<PendingSocket>,
    /// Sessions whose [`TestSession`] could not be built: reported failed at start.
    unusable: Vec<SessionId>,
    next_socket: u32,
    error: ErrorEstimate,
    test_ports: Option<PortRange>,
    /// The control connection's local and peer addresses, when the host gave them
    /// ([`Connection::with_control_addresses`]).
    control_addrs: Option<(IpAddr, IpAddr)>,
    closed: bool,
    /// Receive sessions hand out their records as they come.
    stream: bool,
    /// Receive sessions whose records the host could not keep ([`Connection::store_failed`]).
    failed: Vec<SessionId>,
}

/// Where a client's request has its socket bound: `local`, its unspecified address replaced
/// by the control connection's (`control`: local, server), when known.
fn bind_addr(control: Option<(IpAddr, IpAddr)>, mut local: SocketAddr) -> SocketAddr {
    if let Some((ip, _)) = control.filter(|_| local.ip().is_unspecified()) {
        local.set_ip(ip);
    }
    local
}

/// The client's side: owping's.
pub type ClientConnection<R> = Connection<Client<R>>;
/// The server's side: owampd's, for one accepted connection.
pub type ServerConnection<P, R> = Connection<Server<P, R>>;

impl<M: Machine> Connection<M> {
    fn with_machine(now: OwampTime, machine: M) -> Self {
        let mut c = Self {
            machine,
            out: VecDeque::new(),
            sessions: Vec::new(),
            pending: Vec::new(),
            unusable: Vec::new(),
            next_socket: 0,
            error: ErrorEstimate::UNSYNCHRONIZED,
            test_ports: None,
            control_addrs: None,
            closed: false,
            stream: false,
            failed: Vec::new(),
        };
        c.drain(now);
        c
    }

    /// Hands out the records of the sessions this end receives as they come
    /// ([`Output::Stream`]: at least every [`STREAM_BATCH`] records or [`STREAM_INTERVAL`])
    /// instead of whole at the end ([`Output::Store`]). Set it before any session is agreed
    /// on.
    ///
    /// A client's Fetch-Session answers stream too (RFC 4656 3.9): [`ClientEvent::FetchBegin`],
    /// the records in batches ([`ClientEvent::FetchedRecords`]), then [`ClientEvent::Fetched`]
    /// without records once the answer's HMAC is checked
    /// ([`Client::with_streamed_fetch`]). What goes on the wire does not change.
    pub fn with_streamed_records(mut self) -> Self {
        self.stream = true;
        self.machine.stream_records();
        self
    }

    /// The mode of the control connection (open until the set-up completes).
    pub fn mode(&self) -> Mode {
        self.machine.current_mode()
    }

    /// Whether a test is running: from Start-Ack until both Stop-Sessions are exchanged.
    pub fn in_test(&self) -> bool {
        self.machine.testing()
    }

    /// The control state machine.
    pub fn machine(&self) -> &M {
        &self.machine
    }

    /// Whether the connection has closed ([`ControlAction::Close`] was output).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The error estimate of the host's clock (RFC 4656 4.1.2), stamped into every packet
    /// sent and every record received from now on. Set it whenever the clock's state changes;
    /// until then the clock counts as unsynchronised.
    pub fn set_clock_error(&mut self, error: ErrorEstimate) {
        self.error = error;
    }

    /// The test sessions of the current test, with their sockets.
    pub fn sessions(&self) -> impl Iterator<Item = (SocketId, &TestSession)> {
        self.sessions.iter().map(|e| (e.socket, &e.session))
    }

    /// How long a buffer for datagrams read from `socket` must be (one octet more than the
    /// session's test packets, so that a longer datagram is seen as such).
    pub fn datagram_buffer_len(&self, socket: SocketId) -> usize {
        self.sessions
            .iter()
            .find(|e| e.socket == socket)
            .map_or(crate::session::test_session::MAX_DATAGRAM, |e| {
                e.session.datagram_buffer_len()
            })
    }

    /// Octets read from the control connection (any split).
    pub fn handle_control(&mut self, now: OwampTime, bytes: &[u8]) {
        self.feed(now, Input::Received(bytes));
    }

    /// The control connection ended (end of stream, or an error reading or writing it).
    pub fn handle_control_closed(&mut self, now: OwampTime) {
        self.feed(now, Input::PeerClosed);
    }

    /// The host could not keep the records of receive session `sid` (its store failed: no
    /// room left, or another error). The session's records are no longer handed out, and
    /// during the test the test is stopped early with a Stop-Sessions whose Accept says why
    /// ([`StoreFailure::accept`], RFC 4656 3.8), so the peer learns at once that its results
    /// are lost rather than when it fetches them; before the test, the test stops as soon
    /// as it starts. Later failures of the same test change nothing.
    pub fn store_failed(&mut self, now: OwampTime, sid: SessionId, failure: StoreFailure) {
        if self.closed {
            return;
        }
        if !self.failed.contains(&sid) {
            self.failed.push(sid);
        }
        if let Some(e) = self.sessions.iter_mut().find(|e| e.session.sid() == sid) {
            e.failed = true;
        }
        self.feed(
            now,
            Input::SessionFailed {
                sid,
                accept: failure.accept(),
            },
        );
    }

    /// Time passed: call at [`poll_timeout`](Self::poll_timeout) (early or late calls are
    /// harmless).
    pub fn handle_timeout(&mut self, now: OwampTime) {
        if self.closed {
            return;
        }
        let error = self.error;
        for e in &mut self.sessions {
            e.session.handle_timeout(now, error);
        }
        // Reflectors of an ended test whose Timeout after Stop-Sessions is over.
        let out = &mut self.out;
        self.sessions.retain(|e| {
            let over = e.draining && !e.session.is_running();
            if over {
                out.push_back(Output::Socket(SocketAction::Close(e.socket)));
            }
            !over
        });
        for i in 0..self.sessions.len() {
            if self.sessions[i].session.is_twamp() {
                self.flush_two_way(i, now);
            } else if self.stream {
                self.flush_records(i, now);
            }
        }
        if self.machine.deadline().is_some_and(|d| now >= d) {
            self.feed(now, Input::Timer);
        } else {
            self.drain(now);
        }
    }

    /// A datagram read from test socket `socket`, received at `d.recv_time` (`now` is the
    /// time it is handed over).
    pub fn handle_datagram(
        &mut self,
        now: OwampTime,
        socket: SocketId,
        d: &Datagram<'_>,
    ) -> DatagramOutcome {
        let error = self.error;
        let Some(i) = self.sessions.iter().position(|e| e.socket == socket) else {
            return DatagramOutcome::NotReceiving;
        };
        let e = &mut self.sessions[i];
        let outcome = e.session.handle_datagram(d, error);
        let done = e.session.is_done() && !e.reported;
        if e.session.is_twamp() {
            self.flush_two_way(i, now);
        } else if self.stream {
            self.flush_records(i, now);
        }
        if done {
            self.drain(now);
        }
        outcome
    }

    /// The answer to [`SocketAction::Open`]: the port bound, or why not.
    pub fn socket_opened(&mut self, now: OwampTime, id: SocketId, result: Result<u16, OpenError>) {
        let Some(i) = self.pending.iter().position(|p| p.id == id) else {
            return;
        };
        if let Some(sid) = self.pending[i].sid {
            // Server: the state machine picks the ports (RFC 4656 3.5).
            let input = match result {
                Ok(port) => {
                    self.pending[i].open = true;
                    Input::EndpointReady { sid, port }
                }
                Err(OpenError::InUse) => Input::PortInUse { sid },
                Err(OpenError::Failed) => {
                    self.pending.remove(i);
                    Input::EndpointFailed {
                        sid,
                        accept: AcceptCode::InternalError,
                    }
                }
            };
            self.feed(now, input);
            return;
        }
        self.client_socket_opened(now, i, result);
    }

    /// Builds the next test packet due at `now` into `buf`, stamped with `now` (read the
    /// clock right before calling), and says which socket sends it where. `None` when no
    /// packet is due.
    pub fn poll_transmit(&mut self, now: OwampTime, buf: &mut [u8]) -> Option<SocketTransmit> {
        let error = self.error;
        for e in &mut self.sessions {
            if let Some(t) = e.session.poll_transmit(now, error, buf) {
                return Some(SocketTransmit {
                    socket: e.socket,
                    transmit: t,
                });
            }
        }
        if self
            .sessions
            .iter()
            .any(|e| e.session.is_done() && !e.reported)
        {
            self.drain(now);
        }
        None
    }

    /// The next action for the host, if any.
    pub fn poll_output(&mut self) -> Option<Output<M::Event>> {
        self.out.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) (or, when `precise`,
    /// [`poll_transmit`](Self::poll_transmit)) at the latest; `None` once closed.
    pub fn poll_timeout(&self) -> Option<Timeout> {
        if self.closed {
            return None;
        }
        let control = self
            .machine
            .deadline()
            .map(|at| Timeout { at, precise: false });
        self.sessions
            .iter()
            .map(|e| {
                if e.session.is_done() && !e.reported {
                    // Something to report: at once.
                    Some(Timeout {
                        at: OwampTime::ZERO,
                        precise: false,
                    })
                } else {
                    e.session.poll_timeout()
                }
            })
            .fold(control, Timeout::earliest)
    }

    fn socket_id(&mut self) -> SocketId {
        self.next_socket = self.next_socket.wrapping_add(1);
        SocketId(self.next_socket)
    }

    fn feed(&mut self, now: OwampTime, input: Input<'_>) {
        // Inputs from the host and the peer never misuse the state machine; an error here is
        // an input crossing the end of a test, which changes nothing.
        let _ = self.machine.handle(now, input);
        self.drain(now);
    }

    fn command(&mut self, now: OwampTime, input: Input<'_>) -> Result<(), ControlError> {
        let r = self.machine.handle(now, input);
        self.drain(now);
        r
    }

    /// Carries out the state machine's outputs and feeds back the sessions' reports, until
    /// neither has anything left.
    fn drain(&mut self, now: OwampTime) {
        loop {
            while let Some(o) = self.machine.poll() {
                self.on_output(o, now);
            }
            let Some(report) = self.next_report() else {
                break;
            };
            let _ = self.machine.handle(now, Input::SessionFinished(report));
        }
    }

    fn next_report(&mut self) -> Option<crate::io::SessionReport> {
        if let Some(sid) = self.unusable.pop() {
            return Some(crate::io::SessionReport {
                sid,
                next_seqno: 0,
                skips: Vec::new(),
                failed: true,
            });
        }
        let e = self
            .sessions
            .iter_mut()
            .find(|e| !e.reported && e.session.is_done())?;
        e.reported = true;
        Some(e.session.report())
    }

    fn event(&mut self, e: impl Into<M::Event>) {
        self.out.push_back(Output::Event(e.into()));
    }

    fn on_output(&mut self, o: MachineOutput, now: OwampTime) {
        match o {
            MachineOutput::Transmit(b) => self
                .out
                .push_back(Output::Control(ControlAction::Transmit(b))),
            MachineOutput::Connected { mode, server_start } => {
                self.on_role_output(MachineOutput::Connected { mode, server_start })
            }
            MachineOutput::PrepareTestEndpoint(setup) => {
                // RFC 4656 3.5: the server binds the receiver's (or sender's) test port
                // before it answers Request-Session. A retry for the same SID reuses its id.
                let id = match self.pending.iter().find(|p| p.sid == Some(setup.sid)) {
                    Some(p) => p.id,
                    None => {
                        let id = self.socket_id();
                        self.pending.push(PendingSocket {
                            id,
                            sid: Some(setup.sid),
                            request: None,
                            open: false,
                        });
                        id
                    }
                };
                self.out.push_back(Output::Socket(SocketAction::Open {
                    id,
                    local: setup.local,
                    recv_buffer: setup.recv_buffer,
                }));
            }
            MachineOutput::SessionAccepted(info) => self.accepted(info),
            MachineOutput::SessionRejected { accept } => {
                if let Some(i) = self.pending.iter().position(|p| p.request.is_some()) {
                    let p = self.pending.remove(i);
                    self.out
                        .push_back(Output::Socket(SocketAction::Close(p.id)));
                }
                self.on_role_output(MachineOutput::SessionRejected { accept });
            }
            MachineOutput::StartSessions => {
                for e in &mut self.sessions {
                    e.session.start();
                }
                self.event(SessionEvent::Started);
            }
            MachineOutput::StopLocalSessions => {
                for e in &mut self.sessions {
                    if e.session.reflector().is_some() {
                        // RFC 5357 3.5: packets still in transit are reflected if they
                        // arrive within the request's Timeout after Stop-Sessions.
                        let timeout = e.session.info().request.timeout;
                        e.session.stop_at(now.saturating_add_interval(timeout));
                    } else {
                        e.session.stop();
                    }
                }
            }
            MachineOutput::SessionStopped(end) => self.stopped(&end),
            MachineOutput::SessionsAborted { sids } => {
                for sid in sids {
                    if let Some(i) = self.sessions.iter().position(|e| e.session.sid() == sid) {
                        let e = self.sessions.remove(i);
                        self.out
                            .push_back(Output::Socket(SocketAction::Close(e.socket)));
                        self.keep(e, None);
                    }
                }
            }
            MachineOutput::TestComplete => {
                for mut e in std::mem::take(&mut self.sessions) {
                    if e.session.reflector().is_some() && e.session.is_running() {
                        // A reflector still answering for the Timeout after Stop-Sessions:
                        // kept (out of later tests) until it stops.
                        e.draining = true;
                        e.reported = true;
                        self.sessions.push(e);
                        continue;
                    }
                    self.out
                        .push_back(Output::Socket(SocketAction::Close(e.socket)));
                    self.end_two_way(e, true);
                }
                self.event(SessionEvent::TestComplete);
            }
            MachineOutput::Close(reason) => self.shut(reason),
            other @ (MachineOutput::TestAborted { .. }
            | MachineOutput::FetchRequest { .. }
            | MachineOutput::FetchBegin { .. }
            | MachineOutput::FetchedRecords { .. }
            | MachineOutput::Fetched(_)
            | MachineOutput::FetchDenied { .. }) => self.on_role_output(other),
        }
    }

    /// A session agreed on: it gets its socket (the one opened for it) and its state machine.
    fn accepted(&mut self, mut info: Box<SessionInfo>) {
        // Zero addresses stand for the control connection's (RFC 4656 3.5).
        if let Some((local, server)) = self.control_addrs {
            if info.local.ip().is_unspecified() {
                info.local.set_ip(local);
            }
            if info.peer.ip().is_unspecified() {
                info.peer.set_ip(server);
            }
        }
        let at = self
            .pending
            .iter()
            .position(|p| p.sid == Some(info.sid))
            .or_else(|| self.pending.iter().position(|p| p.request.is_some()));
        let socket = at.map(|i| self.pending.remove(i).id);
        let session = match self.machine.protocol() {
            Protocol::Owamp => TestSession::new((*info).clone()),
            Protocol::Twamp => TestSession::twamp((*info).clone()),
        };
        match (socket, session) {
            (Some(socket), Ok(session)) => {
                // A TWAMP reflector sends too: its replies carry the request's Type-P (RFC
                // 5357 4.2.1).
                let sends = session.role() == Role::Sender || session.is_twamp();
                if sends && session.dscp() != 0 {
                    self.out.push_back(Output::Socket(SocketAction::SetDscp {
                        id: socket,
                        dscp: session.dscp(),
                    }));
                }
                // RFC 4656 4.2: the receiver takes test packets from the sender's address and
                // port (TestSession::handle_datagram checks them anyway); the kernel can
                // apply that filter before anything is queued.
                if session.role() == Role::Receiver && info.peer.port() != 0 {
                    self.out.push_back(Output::Socket(SocketAction::Connect {
                        id: socket,
                        peer: info.peer,
                    }));
                }
                // Only an OWAMP receiver keeps records (a TWAMP reflector keeps none).
                if self.stream && session.receiver().is_some() {
                    self.out
                        .push_back(Output::Stream(RecordStream::Begin(Box::new(
                            info.request.clone(),
                        ))));
                }
                self.sessions.push(Entry {
                    socket,
                    session,
                    reported: false,
                    flushed_at: OwampTime::ZERO,
                    failed: self.failed.contains(&info.sid),
                    draining: false,
                });
            }
            (socket, _) => {
                if let Some(id) = socket {
                    self.out.push_back(Output::Socket(SocketAction::Close(id)));
                }
                self.unusable.push(info.sid);
            }
        }
        self.event(SessionEvent::SessionAccepted(info));
    }

    /// The peer's Stop-Sessions ended a receive session (RFC 4656 3.8).
    fn stopped(&mut self, end: &SessionEnd) {
        let Some(i) = self
            .sessions
            .iter()
            .position(|e| e.session.sid() == end.sid)
        else {
            return;
        };
        let e = self.sessions.remove(i);
        self.out
            .push_back(Output::Socket(SocketAction::Close(e.socket)));
        self.keep(e, Some(end));
    }

    /// A receive session is over: with the peer's Stop-Sessions (`end`) or without (the test
    /// broke off: incomplete). Its records go to the host, whole or as the stream's end.
    fn keep(&mut self, e: Entry, end: Option<&SessionEnd>) {
        if e.failed {
            // The host gave up on its records: there is nothing to finish.
            return;
        }
        let out = if self.stream {
            e.session
                .finish_stream(end, self.error)
                .map(|s| Output::Stream(RecordStream::End(Box::new(s))))
        } else {
            match end {
                Some(end) => e.session.into_stored(end, self.error),
                None => e.session.into_incomplete(),
            }
            .map(|s| Output::Store(Box::new(s)))
        };
        self.out.extend(out);
    }

    /// A TWAMP sender's session is over (`complete`: with the client's Stop-Sessions): the
    /// replies it still holds, then its end.
    fn end_two_way(&mut self, mut e: Entry, complete: bool) {
        let Some(sender) = e.session.sender().filter(|_| e.session.is_twamp()) else {
            return;
        };
        let skips = sender.skip_ranges().to_vec();
        let end = TwoWayEnd {
            sid: e.session.sid(),
            sent: u32::try_from(e.session.counters().sent).unwrap_or(u32::MAX),
            skips,
            complete,
            unanswered: e.session.take_unanswered(),
        };
        let records = e.session.take_two_way();
        if !records.is_empty() {
            self.out
                .extend(M::two_way_event(TwoWay::Records(end.sid, records)).map(Output::Event));
        }
        self.out
            .extend(M::two_way_event(TwoWay::End(Box::new(end))).map(Output::Event));
    }

    /// Hands out the replies TWAMP session `i` holds when there are enough of them, or they
    /// have waited long enough.
    fn flush_two_way(&mut self, i: usize, now: OwampTime) {
        let Some(e) = self.sessions.get_mut(i) else {
            return;
        };
        if !e.batch_due(e.session.two_way_held(), now) {
            return;
        }
        let sid = e.session.sid();
        let records = e.session.take_two_way();
        self.out
            .extend(M::two_way_event(TwoWay::Records(sid, records)).map(Output::Event));
    }

    /// Hands out the records session `i` holds when there are enough of them, or they have
    /// waited long enough.
    fn flush_records(&mut self, i: usize, now: OwampTime) {
        let Some(e) = self.sessions.get_mut(i) else {
            return;
        };
        if e.failed {
            // Records of a session the host gave up on are dropped as they come.
            drop(e.session.take_records());
            return;
        }
        if !e.batch_due(e.session.records_held(), now) {
            return;
        }
        let records = e.session.take_records();
        let sid = e.session.sid();
        self.out
            .push_back(Output::Stream(RecordStream::Records { sid, records }));
    }

    /// The control connection closes: sockets are closed and every receive session still
    /// here is kept as incomplete, so nothing received is lost.
    fn shut(&mut self, reason: CloseReason) {
        for e in std::mem::take(&mut self.sessions) {
            self.out
                .push_back(Output::Socket(SocketAction::Close(e.socket)));
            if e.session.is_twamp() {
                self.end_two_way(e, false);
            } else {
                self.keep(e, None);
            }
        }
        for p in std::mem::take(&mut self.pending) {
            if p.open {
                self.out
                    .push_back(Output::Socket(SocketAction::Close(p.id)));
            }
        }
        self.out
            .push_back(Output::Control(ControlAction::Close(reason)));
        self.closed = true;
    }

    /// Client: the socket of a request is open (send the request) or not (try the next port
    /// of the range, or give up).
    fn client_socket_opened(&mut self, now: OwampTime, i: usize, result: Result<u16, OpenError>) {
        let Some(r) = self.pending[i].request.as_mut() else {
            return;
        };
        if r.sent {
            return;
        }
        match result {
            Ok(port) => {
                r.sent = true;
                r.req.local.set_port(port);
                let req = r.req.clone();
                self.pending[i].open = true;
                if self
                    .command(now, Input::Command(ClientCommand::RequestSession(req)))
                    .is_err()
                {
                    let p = self.pending.remove(i);
                    self.out
                        .push_back(Output::Socket(SocketAction::Close(p.id)));
                    self.socket_failed();
                }
            }
            Err(OpenError::InUse) if r.range.is_some_and(|g| r.tries < g.len()) => {
                // The next port of the range, wrapping (as the server does).
                let Some(g) = r.range else { return };
                r.tries += 1;
                let port = g.next(r.req.local.port().max(g.low));
                r.req.local.set_port(port);
                let local = r.req.local;
                let recv_buffer = client_recv_buffer(
                    &r.req,
                    self.machine.current_mode(),
                    self.machine.protocol(),
                );
                let id = self.pending[i].id;
                let local = bind_addr(self.control_addrs, local);
                self.out.push_back(Output::Socket(SocketAction::Open {
                    id,
                    local,
                    recv_buffer,
                }));
            }
            Err(_) => {
                self.pending.remove(i);
                self.socket_failed();
            }
        }
    }

    fn socket_failed(&mut self) {
        if let Some(e) = M::socket_failed_event() {
            self.out.push_back(Output::Event(e));
        }
    }

    fn on_role_output(&mut self, o: MachineOutput) {
        let e = M::role_event(o);
        if let Some(e) = e {
            self.out.push_back(Output::Event(e));
        }
    }
}

impl<R: RngCore + CryptoRng> Connection<Client<R>> {
    /// A client on a control connection established at `now`; it waits for the
    /// Server-Greeting.
    pub fn client(now: OwampTime, cfg: ClientConfig, rng: R) -> Self {
        Self::with_machine(now, Client::new(now, cfg, rng))
    }

    /// Local ports for the client's test sockets (default: any port). A request whose
    /// `local` port is not 0 uses that port alone.
    pub fn with_test_ports(mut self, ports: Option<PortRange>) -> Self {
        self.test_ports = ports;
        self
    }

    /// The addresses of the control connection (`local`, the client's; `server`), as the
    /// socket reports them. With them, a request whose addresses are unspecified (zeros:
    /// "the control connection's", RFC 4656 3.5, which RFC 5357 3.5 keeps; a client behind a
    /// NAT sends them) has its test socket bound on `local`, and the session it agrees on
    /// tests between `local` and `server` ([`SessionInfo::local`] and [`SessionInfo::peer`];
    /// its `request` keeps the zeros that were sent). Without them such a session tests
    /// to and from the unspecified address.
    pub fn with_control_addresses(mut self, local: IpAddr, server: IpAddr) -> Self {
        self.control_addrs = Some((local, server));
        self
    }

    /// Whether the client takes a command now: set up, no answer outstanding, no test
    /// running.
    pub fn is_ready(&self) -> bool {
        !self.closed && self.machine.is_ready() && !self.pending.iter().any(|p| p.request.is_some())
    }

    /// Requests a test session (RFC 4656 3.5): a test socket is opened first
    /// ([`SocketAction::Open`]: at `req.local`, or in the connection's port range when its
    /// port is 0), then Request-Session is sent with its port. Answered by
    /// [`ClientEvent::SessionAccepted`], [`ClientEvent::SessionRejected`] or
    /// [`ClientEvent::SocketFailed`].
    pub fn request_session(&mut self, req: SessionRequest) -> Result<(), ControlError> {
        if !self.is_ready() {
            let state = if self.pending.iter().any(|p| p.request.is_some()) {
                "a request is outstanding"
            } else {
                "the client is not ready"
            };
            return Err(ControlError::WrongState {
                input: "Request-Session",
                state,
            });
        }
        // Checked again by the state machine when the socket is open; refused at once here
        // so that no socket is opened for nothing.
        if req.slots.is_empty() || req.packets == 0 {
            return Err(ControlError::InvalidRequest("no slots or no packets"));
        }
        if self.machine.protocol() == Protocol::Twamp && req.role != Role::Sender {
            // RFC 5357 3.5: the control-client is the session-sender.
            return Err(ControlError::InvalidRequest(
                "a TWAMP control-client is the session-sender",
            ));
        }
        let range = (req.local.port() == 0).then_some(self.test_ports).flatten();
        let mut local = bind_addr(self.control_addrs, req.local);
        if let Some(r) = range {
            local.set_port(r.pick(self.machine.draw_u32()));
        }
        let id = self.socket_id();
        let recv_buffer =
            client_recv_buffer(&req, self.machine.current_mode(), self.machine.protocol());
        self.pending.push(PendingSocket {
            id,
            sid: None,
            request: Some(ClientRequest {
                req,
                range,
                tries: 1,
                sent: false,
            }),
            open: false,
        });
        self.out.push_back(Output::Socket(SocketAction::Open {
            id,
            local,
            recv_buffer,
        }));
        Ok(())
    }

    /// Starts the sessions requested (RFC 4656 3.6); answered by [`ClientEvent::Started`].
    pub fn start_sessions(&mut self, now: OwampTime) -> Result<(), ControlError> {
        self.command(now, Input::Command(ClientCommand::StartSessions))
    }

    /// Stops the test early: the local sessions stop and Stop-Sessions is exchanged
    /// (RFC 4656 3.8); records received so far are kept.
    pub fn stop_sessions(&mut self, now: OwampTime) -> Result<(), ControlError> {
        self.command(now, Input::StopSessions)
    }

    /// Asks for the records of a session the server received, sequence numbers
    /// `begin..=end` (`0, u32::MAX` for all; RFC 4656 3.9); answered by
    /// [`ClientEvent::Fetched`] (with [`with_streamed_records`](Self::with_streamed_records),
    /// after [`ClientEvent::FetchBegin`] and the records in [`ClientEvent::FetchedRecords`])
    /// or [`ClientEvent::FetchDenied`].
    pub fn fetch(
        &mut self,
        now: OwampTime,
        sid: SessionId,
        begin: u32,
        end: u32,
    ) -> Result<(), ControlError> {
        self.command(
            now,
            Input::Command(ClientCommand::Fetch { sid, begin, end }),
        )
    }

    /// Closes the connection.
    pub fn close(&mut self, now: OwampTime) {
        let _ = self.command(now, Input::Command(ClientCommand::Close));
    }
}

impl<P: ServerPolicy, R: RngCore + CryptoRng> Connection<Server<P, R>> {
    /// The server side of a connection from `peer` accepted on `local` at `now`: the
    /// Server-Greeting is queued at once. IPv4-mapped addresses (as a dual-stack listener
    /// reports IPv4 peers) are taken as IPv4.
    pub fn server(
        now: OwampTime,
        cfg: ServerConfig,
        policy: P,
        rng: R,
        local: SocketAddr,
        peer: SocketAddr,
    ) -> Self {
        let local = canonical(local);
        let peer = canonical(peer);
        let mut c = Self::with_machine(now, Server::new(now, cfg, policy, rng, local, peer));
        c.drain(now);
        c
    }

    /// The KeyID the client authenticated with, if any.
    pub fn key_id(&self) -> Option<&[u8]> {
        self.machine.key_id()
    }

    /// Why the set-up was refused, if it was: the mode and KeyID asked for and the reason,
    /// for the operator's log.
    pub fn setup_refused(&self) -> Option<&crate::control::SetupRefused> {
        self.machine.setup_refused()
    }

    /// The answer to [`ServerEvent::FetchRequest`]: the stored session, or why not.
    pub fn fetch_reply(&mut self, now: OwampTime, reply: FetchReply) {
        self.feed(now, Input::FetchReply(reply));
    }

    /// After [`FetchReply::Streamed`]: the next records of the answer, in order. Feed them
    /// while [`fetch_remaining`](Self::fetch_remaining) is not zero, a batch each time the
    /// outputs are drained, so that only a batch is in memory; if the records cannot be
    /// read, [`close`](Self::close) the connection (the answer cannot be completed).
    pub fn fetch_records(&mut self, now: OwampTime, records: &[DataRecord]) {
        self.feed(now, Input::FetchRecords(records));
    }

    /// Records of a streamed Fetch-Session answer still to be fed.
    pub fn fetch_remaining(&self) -> u32 {
        self.machine.fetch_remaining()
    }

    /// Stops a running test early (the server shuts down): the local sessions stop and
    /// Stop-Sessions is exchanged; outside a test, nothing happens.
    pub fn stop_sessions(&mut self, now: OwampTime) {
        self.feed(now, Input::StopSessions);
    }

    /// Closes the connection now (the server shuts down): receive sessions still running are
    /// kept as incomplete.
    pub fn close(&mut self, now: OwampTime) {
        if !self.closed {
            self.machine.abort();
            self.drain(now);
        }
    }
}
