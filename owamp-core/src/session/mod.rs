//! Test sessions (RFC 4656 4): schedules, sender and receiver, all sans-IO.
//!
//! - [`Schedule`]: when each packet is due (RFC 4656 3.5 and Appendix B).
//! - [`Sender`]: builds test packets into caller buffers, open, authenticated or encrypted.
//! - [`Receiver`]: validates datagrams, detects loss and duplicates, and produces the
//!   session's [`DataRecord`](crate::wire::DataRecord)s in the reference implementation's
//!   order.
//! - [`twamp`]: TWAMP's session-sender and session-reflector (RFC 5357 4).
//! - [`stamp`]: STAMP (RFC 8762) and TWAMP Light sender and reflector, without control.

pub mod packet;
pub mod receiver;
pub mod schedule;
pub mod sender;
pub mod stamp;
pub mod test_session;
pub mod twamp;

pub use packet::PacketProtection;
pub use receiver::{
    Accepted, DropCounts, DropReason, FinishError, Prune, Receiver, ReceiverStats, StreamEnd,
    DEFAULT_MAX_WINDOW, TTL_UNKNOWN,
};
pub use schedule::{
    session_end_bound, ExpDeviates, Schedule, ScheduleCursor, ScheduleError, ScheduleIter,
    ScheduledPacket,
};
pub use sender::{PaddingFill, Prepared, Sender, SenderError};
pub use test_session::{
    recv_buffer_len, Datagram, DatagramOutcome, SessionCounters, SessionSetupError, TestSession,
    Timeout, Transmit,
};

use crate::time::{Interval, OwampTime};

/// What both ends of a test session agree on in Request-Session (RFC 4656 3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionParams {
    /// The send schedule (SID, slots and packet count).
    pub schedule: Schedule,
    /// Start Time: packet `i` is due at this time plus the schedule's offset of `i`.
    pub start: OwampTime,
    /// Timeout: how long after its scheduled send time a packet may still arrive before it
    /// counts as lost (RFC 4656 3.5).
    pub timeout: Interval,
    /// Octets of padding after the test packet header.
    pub padding: u32,
}
