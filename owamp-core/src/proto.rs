//! The protocol's vocabulary above the octets: what the control state machines, their I/O
//! contract ([`crate::io`]), the server's policy ([`crate::policy`]) and the test sessions
//! ([`crate::session`]) say to each other.
//!
//! These are not wire values: [`Role`] is which end of a test session a side is (derived from
//! Request-Session's Conf-Sender and Conf-Receiver octets), [`ClientCommand`] and
//! [`SessionRequest`] are what an application asks a client to do, [`CloseReason`] and
//! [`ProtocolError`] why a control connection ends, and [`canonical`] is the address form in
//! which requests and datagrams are compared. The values that are octets on the wire (`Mode`,
//! `Modes`, `AcceptCode`, `RequestSession`) live in [`crate::wire`].
//!
//! They sit in a module of their own, below everything that uses them, so that the layers
//! above the wire depend on each other in one direction only (docs/architecture.md lists the
//! order; `scripts/check-core-layers.sh` checks it). [`crate::control`] re-exports each name
//! here, so `control::Role` and the like still resolve.

use core::net::{IpAddr, SocketAddr};

use crate::time::{Interval, OwampTime};
use crate::wire::{AcceptCode, SessionId, Slot, TypeP, WireError};

/// The protocol a control connection speaks. TWAMP-Control (RFC 5357 3) is OWAMP-Control
/// with Request-TW-Session (command 5) for Request-Session, a Stop-Sessions without session
/// descriptions that only the client sends, and no Fetch-Session; the set-up, Accept-Session,
/// Start-Sessions and Start-Ack are OWAMP's, so one pair of state machines speaks both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// OWAMP (RFC 4656).
    #[default]
    Owamp,
    /// TWAMP (RFC 5357): the client is the session-sender, the server the session-reflector.
    /// A session's [`Role`] is [`Role::Sender`] at the client and [`Role::Receiver`] at the
    /// server (the reflector receives first, and makes the SID, as an OWAMP receiver does).
    Twamp,
}

/// Which end of a test session a side is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Sends test packets.
    Sender,
    /// Receives test packets and keeps the records.
    Receiver,
}

/// What the client asks for in [`ClientCommand::RequestSession`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRequest {
    /// Whether the client sends or receives.
    pub role: Role,
    /// The client's test socket (already bound: its port goes into the request).
    pub local: SocketAddr,
    /// The server's test address (the server chooses the port).
    pub peer: IpAddr,
    /// Schedule slots (at least one).
    pub slots: Vec<Slot>,
    /// Number of packets (at least one).
    pub packets: u32,
    /// Padding octets per packet.
    pub padding: u32,
    /// Start time of the schedule.
    pub start_time: OwampTime,
    /// Loss timeout (the Timeout of Request-Session, RFC 4656 3.5).
    pub timeout: Interval,
    /// Type-P descriptor ([`TypeP::BEST_EFFORT`] for the default).
    pub type_p: TypeP,
}

/// A command from the application to a [`Client`](crate::control::Client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCommand {
    /// Send a Request-Session; answered by `SessionAccepted` or `SessionRejected`.
    RequestSession(SessionRequest),
    /// Send Start-Sessions; answered by `StartSessions` once Start-Ack accepts.
    StartSessions,
    /// Send a Fetch-Session; answered by `Fetched` or `FetchDenied`.
    Fetch {
        /// The session.
        sid: SessionId,
        /// First sequence number wanted.
        begin: u32,
        /// Last sequence number wanted (0xFFFFFFFF for all).
        end: u32,
    },
    /// Close the control connection.
    Close,
}

impl ClientCommand {
    /// The command's name, as errors give it: the message it sends (RFC 4656 3.4).
    pub fn name(&self) -> &'static str {
        match self {
            ClientCommand::RequestSession(_) => "Request-Session",
            ClientCommand::StartSessions => "Start-Sessions",
            ClientCommand::Fetch { .. } => "Fetch-Session",
            ClientCommand::Close => "Close",
        }
    }
}

/// Why a protocol exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A message does not parse.
    #[error("{0}")]
    Wire(WireError),
    /// A message could not be parsed.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// A message's HMAC does not match.
    #[error("HMAC check failed on {0}")]
    BadHmac(&'static str),
    /// A message arrived that is not allowed in the current state.
    #[error("unexpected message type {0}")]
    Unexpected(u8),
    /// The Set-Up-Response asks for something that is not exactly one mode.
    #[error("invalid mode {0:#x}")]
    InvalidMode(u32),
    /// The Server-Greeting asks for a PBKDF2 count above the client's limit
    /// ([`ClientConfig::max_kdf_count`](crate::control::ClientConfig::max_kdf_count)).
    #[error(
        "the server asks for a PBKDF2 iteration count of {count}, above this client's limit of \
         {max}: refused"
    )]
    KdfCount {
        /// The Count of the Server-Greeting.
        count: u32,
        /// The largest count the client accepts.
        max: u32,
    },
    /// A Stop-Sessions message does not describe the local receive sessions.
    #[error("Stop-Sessions does not match the sessions: {0}")]
    BadStop(&'static str),
    /// More data than the configured limits allow.
    #[error("limit exceeded: {0}")]
    Limit(&'static str),
}

/// Why a control connection is closed ([`Output::Close`](crate::io::Output::Close)). Its
/// `Display` is a sentence fragment for users ("the peer did not answer in time").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseReason {
    /// The application asked for it, or the exchange finished normally.
    #[error("closed normally")]
    Local,
    /// The peer closed the connection.
    #[error("the peer closed the connection")]
    PeerClosed,
    /// The peer did not answer in time.
    #[error("the peer did not answer in time")]
    Timeout,
    /// Client: no mode is allowed by both sides ("No Common Modes").
    #[error("no mode is allowed by both sides")]
    NoCommonMode,
    /// Set-up refused with this Accept code (the server sent it, or the client received it).
    #[error("the set-up was refused: {0} (Accept = {code})", code = .0.to_u8())]
    SetupRejected(AcceptCode),
    /// Start-Sessions refused with this Accept code.
    #[error("Start-Sessions was refused: {0} (Accept = {code})", code = .0.to_u8())]
    StartRejected(AcceptCode),
    /// The local endpoints did not report in time after being stopped.
    #[error("the test sessions did not report in time after they were stopped")]
    SessionsUnreported,
    /// The peer broke the protocol.
    #[error("the peer does not speak OWAMP as RFC 4656 says: {0}")]
    Protocol(ProtocolError),
}

/// The same address with an IPv4-mapped IPv6 address turned into IPv4: a dual-stack socket
/// reports IPv4 peers that way, while requests carry plain IPv4 addresses.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}
