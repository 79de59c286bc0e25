//! The I/O contract of the OWAMP-Control state machines ([`crate::control`]): the layer
//! below [`crate::connection`], which drives them together with the test sessions. A host
//! normally uses [`crate::connection`]; these types are for driving the control protocol
//! alone (replays, conformance tests, custom session handling).
//!
//! The state machines never touch a socket, a clock or a random source on their own. The
//! caller feeds them [`Input`]s with [`handle_input`](crate::control::Server::handle_input),
//! each stamped with the current time, and then drains [`Output`]s with `poll_output` until it
//! returns `None`, carrying each one out. The one timer is `poll_timeout()`: when that time
//! has come, feed [`Input::Timer`]. Every state of a connection has a deadline, so a peer that
//! stops talking never blocks a connection forever.
//!
//! - [`Output::Transmit`]: write the bytes to the control connection, in order.
//! - [`Output::PrepareTestEndpoint`] (server): bind a UDP test socket, then answer with
//!   [`Input::EndpointReady`], [`Input::PortInUse`] or [`Input::EndpointFailed`].
//! - [`Output::SessionAccepted`]: a test session is configured; create its sender or receiver.
//! - [`Output::StartSessions`]: start every configured sender and receiver.
//! - [`Output::StopLocalSessions`]: stop every local sender and receiver now and report each
//!   with [`Input::SessionFinished`].
//! - [`Output::SessionStopped`] / [`Output::SessionsAborted`]: finish the records of the local
//!   receive sessions (with the peer's Next-Seqno and skip ranges, or as incomplete).
//! - [`Output::TestAborted`]: the peer's Stop-Sessions said the test ended abnormally.
//! - [`Output::FetchRequest`] (server): look up stored records and answer with
//!   [`Input::FetchReply`].
//! - [`Output::Fetched`] (client): the answer to a Fetch-Session; with streamed answers
//!   ([`Client::with_streamed_fetch`](crate::control::Client::with_streamed_fetch)) after
//!   [`Output::FetchBegin`] and the records in [`Output::FetchedRecords`].
//! - [`Output::Close`]: after writing every queued [`Output::Transmit`], close the connection.
//!   The state machine ignores every later input.
//!
//! Local test sessions report to the state machine with [`Input::SessionFinished`] when they
//! end on their own (a sender after its last packet, a receiver once the loss timeout after the
//! last scheduled packet has passed) or after [`Output::StopLocalSessions`].

use core::net::SocketAddr;

use crate::crypto::SessionKeys;
use crate::proto::{ClientCommand, CloseReason, Role};
use crate::time::OwampTime;
use crate::wire::{AcceptCode, DataRecord, Mode, RequestSession, SessionId};

pub use crate::wire::{Finished, SkipRange};

/// One event fed to a control state machine.
#[derive(Debug)]
pub enum Input<'a> {
    /// Octets read from the control connection, in order (any split is fine).
    Received(&'a [u8]),
    /// The time given by `poll_timeout()` has come (early or spurious calls are harmless:
    /// the state machine checks the time itself).
    Timer,
    /// The peer closed the control connection (end of stream or error).
    PeerClosed,
    /// Server: the test socket asked for by [`Output::PrepareTestEndpoint`] is bound to `port`.
    EndpointReady {
        /// The session the endpoint belongs to.
        sid: SessionId,
        /// The UDP port actually bound (the one asked for, or the one the system chose when
        /// port 0 was asked for).
        port: u16,
    },
    /// Server: the port asked for is in use; the state machine tries the next one in its range.
    PortInUse {
        /// The session the endpoint belongs to.
        sid: SessionId,
    },
    /// Server: the endpoint cannot be set up; the request is refused with `accept`.
    EndpointFailed {
        /// The session the endpoint belongs to.
        sid: SessionId,
        /// The Accept code to refuse the request with (non-zero).
        accept: AcceptCode,
    },
    /// A local test session ended (on its own, or after [`Output::StopLocalSessions`]).
    SessionFinished(SessionReport),
    /// Server: the answer to [`Output::FetchRequest`].
    FetchReply(FetchReply),
    /// Server: after [`FetchReply::Streamed`], the next records of the answer, in order (at
    /// most as many as remain to be sent).
    FetchRecords(&'a [DataRecord]),
    /// Stop the test early (either side): the local sessions are stopped
    /// ([`Output::StopLocalSessions`]) and Stop-Sessions is exchanged.
    StopSessions,
    /// A local receive session cannot go on: its records cannot be kept (the host's store
    /// failed). During the test, the test is stopped early as with [`Input::StopSessions`]
    /// and our Stop-Sessions carries `accept` (RFC 4656 3.8: a non-zero Accept ends the
    /// sessions abnormally); before the test, the test stops as soon as it starts. The first
    /// failure of a test gives the Accept code.
    SessionFailed {
        /// The session.
        sid: SessionId,
        /// The Accept code of our Stop-Sessions (non-zero).
        accept: AcceptCode,
    },
    /// Client: a command from the application.
    Command(ClientCommand),
}

/// One action asked of the caller by a control state machine.
#[derive(Debug)]
pub enum Output {
    /// Write these octets to the control connection.
    Transmit(Vec<u8>),
    /// Client: the control connection is set up (Server-Start accepted).
    Connected {
        /// The mode in use.
        mode: Mode,
        /// The server's Start-Time from Server-Start (RFC 4656 3.1).
        server_start: OwampTime,
    },
    /// Server: bind a UDP test socket for a session being requested, then answer with
    /// [`Input::EndpointReady`], [`Input::PortInUse`] or [`Input::EndpointFailed`].
    PrepareTestEndpoint(EndpointSetup),
    /// A test session has been accepted by both sides: create its local sender or receiver.
    SessionAccepted(Box<SessionInfo>),
    /// Client: the server refused a Request-Session (the connection stays usable).
    SessionRejected {
        /// The Accept code of Accept-Session.
        accept: AcceptCode,
    },
    /// Start every local sender and receiver (Start-Sessions was accepted).
    StartSessions,
    /// Stop every local sender and receiver now and report each one with
    /// [`Input::SessionFinished`] (senders must report their Next-Seqno and skip ranges).
    StopLocalSessions,
    /// A local receive session is over: the peer's Stop-Sessions gave its Next-Seqno and skip
    /// ranges (RFC 4656 3.8). Records of packets numbered `next_seqno` or later must be
    /// discarded, and the session marked finished.
    SessionStopped(SessionEnd),
    /// The peer went away during the test: the local receive sessions listed are incomplete
    /// (RFC 4656 3.8: missing packets after the last one received are not counted as lost).
    SessionsAborted {
        /// The receive sessions concerned.
        sids: Vec<SessionId>,
    },
    /// The peer's Stop-Sessions had a non-zero Accept (RFC 4656 3.8): it ended the test
    /// abnormally, and its results are suspect. Comes before [`Output::TestComplete`].
    TestAborted {
        /// The Accept code of the peer's Stop-Sessions.
        accept: AcceptCode,
    },
    /// Both Stop-Sessions messages have been exchanged: the test is over.
    TestComplete,
    /// Server: a client asked for stored records; answer with [`Input::FetchReply`].
    FetchRequest {
        /// The session asked for.
        sid: SessionId,
        /// First sequence number asked for.
        begin: u32,
        /// Last sequence number asked for (0xFFFFFFFF for the whole session).
        end: u32,
    },
    /// Client, streamed Fetch-Session answers only ([`Client::with_streamed_fetch`]): the
    /// Fetch-Ack, the stored request and the skip ranges have been read, their HMACs checked
    /// (RFC 4656 3.9); `head.num_records` records follow in [`Output::FetchedRecords`].
    ///
    /// [`Client::with_streamed_fetch`]: crate::control::Client::with_streamed_fetch
    FetchBegin {
        /// The session asked for.
        sid: SessionId,
        /// What the answer says of the session, and how many records follow.
        head: Box<FetchStream>,
    },
    /// Client, streamed Fetch-Session answers only: the next records of the answer, in the
    /// order the server sent them (batches of [`FETCH_BATCH`], the last one shorter).
    ///
    /// They are provisional until [`Output::Fetched`] arrives: the HMAC that covers them
    /// comes after the last one. If it does not match, or the answer breaks off, the
    /// connection closes with an error instead, and the application must discard them.
    FetchedRecords {
        /// The session asked for.
        sid: SessionId,
        /// The records.
        records: Vec<DataRecord>,
    },
    /// Client: the records asked for by [`ClientCommand::Fetch`]. When the answer was
    /// streamed, its records came before in [`Output::FetchedRecords`] and
    /// [`FetchedSession::records`] is empty; this output says they are all there and their
    /// HMAC matched.
    Fetched(Box<FetchedSession>),
    /// Client: the server refused the Fetch-Session.
    FetchDenied {
        /// The Accept code of Fetch-Ack.
        accept: AcceptCode,
    },
    /// Close the control connection once every queued [`Output::Transmit`] is written.
    Close(CloseReason),
}

/// What the server needs bound for a session (see [`Output::PrepareTestEndpoint`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSetup {
    /// The session.
    pub sid: SessionId,
    /// Whether the server sends or receives in this session.
    pub role: Role,
    /// Local address and port to bind; port 0 means any port.
    pub local: SocketAddr,
    /// The receive buffer the socket should have when the server receives, in octets
    /// ([`recv_buffer_len`](crate::session::recv_buffer_len)); 0 when it sends.
    pub recv_buffer: usize,
}

/// A session configured on both sides (see [`Output::SessionAccepted`]).
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The session.
    pub sid: SessionId,
    /// Whether this side sends or receives.
    pub role: Role,
    /// The mode of the test packets: the control connection's, or open in RFC 5618 mixed
    /// mode (whose control connection is authenticated: `keys` are present then).
    pub mode: Mode,
    /// The session keys of the control connection (absent in open mode); test packet keys
    /// derive from them and the SID.
    pub keys: Option<SessionKeys>,
    /// Local test address and port.
    pub local: SocketAddr,
    /// The peer's test address and port.
    pub peer: SocketAddr,
    /// The request as both sides now know it: ports and SID filled in. This is also what a
    /// receiver stores and returns in a Fetch-Session answer.
    pub request: RequestSession,
}

/// How a local test session ended (see [`Input::SessionFinished`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionReport {
    /// The session.
    pub sid: SessionId,
    /// Sender: the sequence number of the first packet not sent. Ignored for receivers.
    pub next_seqno: u32,
    /// Sender: ranges of sequence numbers that were skipped (not sent), ascending.
    pub skips: Vec<SkipRange>,
    /// Whether the endpoint failed (the Stop-Sessions Accept field then reports a failure).
    pub failed: bool,
}

impl SessionReport {
    /// A normal end with nothing skipped.
    pub fn completed(sid: SessionId, next_seqno: u32) -> Self {
        Self {
            sid,
            next_seqno,
            skips: Vec::new(),
            failed: false,
        }
    }
}

/// The end of a local receive session, as the peer's Stop-Sessions describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEnd {
    /// The session.
    pub sid: SessionId,
    /// The sender's Next-Seqno.
    pub next_seqno: u32,
    /// The sender's skip ranges.
    pub skips: Vec<SkipRange>,
    /// The Accept field of the Stop-Sessions message.
    pub accept: AcceptCode,
    /// When the Stop-Sessions message was read (RFC 4656 3.8: records of packets sent after
    /// this time minus the loss timeout may be discarded).
    pub stop_time: OwampTime,
}

/// A session as stored by a receiver, returned by the application for a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// The request as stored (see [`SessionInfo::request`]).
    pub request: RequestSession,
    /// Whether the session is finished.
    pub finished: Finished,
    /// Next-Seqno from the sender's Stop-Sessions (meaningful when finished normally).
    pub next_seqno: u32,
    /// Skip ranges from the sender's Stop-Sessions.
    pub skips: Vec<SkipRange>,
    /// Every record stored, in storage order. The state machine selects the ones asked for.
    pub records: Vec<DataRecord>,
}

/// The application's answer to [`Output::FetchRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchReply {
    /// The session's stored data.
    Found(Box<StoredSession>),
    /// The session's header and how many records the answer has; the records follow with
    /// [`Input::FetchRecords`], so that a large session is served without being in memory.
    Streamed(Box<FetchStream>),
    /// No such session (refused with Accept = 1).
    NotFound,
    /// The data cannot be read (refused with Accept = 2).
    Failed,
}

/// A Fetch-Session answer sent or received record by record: everything in it but the
/// records (the server's [`FetchReply::Streamed`], the client's [`Output::FetchBegin`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchStream {
    /// The request as stored.
    pub request: RequestSession,
    /// Whether the session is finished.
    pub finished: Finished,
    /// Next-Seqno from the sender's Stop-Sessions.
    pub next_seqno: u32,
    /// Skip ranges from the sender's Stop-Sessions.
    pub skips: Vec<SkipRange>,
    /// How many records follow: those [`FetchSelection`] keeps.
    pub num_records: u32,
}

/// Records a client holds at most, in a streamed Fetch-Session answer, before it hands them
/// out ([`Output::FetchedRecords`]).
pub const FETCH_BATCH: usize = 1024;

/// Which stored records a Fetch-Session for `begin..=end` gets (RFC 4656 3.9): those
/// numbered in the range; for a session that did not finish normally, none after the last
/// packet received (later missing packets may still be in flight, or were never sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchSelection {
    /// The first sequence number served.
    pub begin: u32,
    /// The last sequence number served.
    pub end: u32,
}

impl FetchSelection {
    /// The selection for a Fetch-Session of `begin..=end` from a session in state
    /// `finished` whose highest received sequence number is `max_received` (only looked at,
    /// and only needed, when the session is not finished normally).
    pub fn new(
        begin: u32,
        end: u32,
        finished: Finished,
        max_received: impl FnOnce() -> Option<u32>,
    ) -> Self {
        let end = if finished == Finished::Normal {
            end
        } else {
            end.min(max_received().unwrap_or(0))
        };
        Self { begin, end }
    }

    /// Whether `r` is served.
    pub fn keeps(&self, r: &DataRecord) -> bool {
        r.seq >= self.begin && r.seq <= self.end
    }

    /// Whether the server must refuse it: a whole session can only be fetched once it is
    /// complete (RFC 4656 3.9).
    pub fn refused(begin: u32, end: u32, finished: Finished) -> bool {
        begin == 0 && end == u32::MAX && finished != Finished::Normal
    }
}

/// What the client received for a Fetch-Session (see [`Output::Fetched`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedSession {
    /// The session asked for.
    pub sid: SessionId,
    /// The Finished field of Fetch-Ack.
    pub finished: Finished,
    /// Next-Seqno of Fetch-Ack.
    pub next_seqno: u32,
    /// The skip ranges sent after the stored request.
    pub skips: Vec<SkipRange>,
    /// The stored request.
    pub request: RequestSession,
    /// The records, as the server sent them; empty when the answer was streamed (they came
    /// before, in [`Output::FetchedRecords`]).
    pub records: Vec<DataRecord>,
}
