//! Message lengths for stream readers.
//!
//! OWAMP-Control runs over TCP and, in authenticated and encrypted modes, is decrypted one
//! 16-octet block at a time. A reader decrypts what it has, asks the function for the message
//! it expects how long that message is, and reads more until it has that many octets. Every
//! length here is a whole number of blocks.
//!
//! Server-to-client messages other than Stop-Sessions and the Fetch-Session response have
//! fixed lengths that the protocol state determines: `ServerGreeting::LEN`,
//! `ServerStart::LEN`, `AcceptSession::LEN`, `StartAck::LEN`, `FetchAck::LEN`.
//!
//! The functions read only counts and command numbers, never trusting a count to size an
//! allocation: they answer with the length the next decision needs, and the reader grows its
//! buffer only as octets arrive. Counts above the limits of [`RequestSession::MAX_SLOTS`],
//! [`StopSessions::MAX_SESSIONS`] and [`StopSessions::MAX_SKIP_RANGES`] are errors.

use zerocopy::network_endian::U32;
use zerocopy::FromBytes;

use super::{
    AcceptCode, ControlMessageKind, FetchAck, FetchSession, RequestSession, SessionStop,
    StartSessions, StopSessions, WireError, BLOCK_LEN,
};

/// What a framing function knows about the next message from the octets at hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// Not enough octets to tell: call again once at least `need` octets (counted from the
    /// start of the message) are available. `need` exceeds the octets given.
    Incomplete {
        /// Octets needed before the next call.
        need: usize,
    },
    /// The message is exactly `len` octets (the octets given may be more or fewer).
    Complete {
        /// Octets of the whole message.
        len: usize,
    },
}

impl Frame {
    /// The message length, if known.
    pub fn complete_len(self) -> Option<usize> {
        match self {
            Frame::Complete { len } => Some(len),
            Frame::Incomplete { .. } => None,
        }
    }

    /// Octets to have before calling again (or, when complete, the whole message).
    pub fn need(self) -> usize {
        match self {
            Frame::Complete { len } => len,
            Frame::Incomplete { need } => need,
        }
    }
}

fn u32_at(bytes: &[u8], off: usize) -> Option<u32> {
    bytes
        .get(off..off + 4)
        .and_then(|b| U32::read_from_bytes(b).ok())
        .map(U32::get)
}

/// The length of a Request-Session from its first block (command and slot count).
pub fn request_session(prefix: &[u8]) -> Result<Frame, WireError> {
    let Some(&command) = prefix.first() else {
        return Ok(Frame::Incomplete { need: BLOCK_LEN });
    };
    if command != RequestSession::COMMAND {
        return Err(WireError::invalid("Request-Session", "command", 0, command));
    }
    match u32_at(prefix, 4) {
        None => Ok(Frame::Incomplete { need: BLOCK_LEN }),
        Some(n) => Ok(Frame::Complete {
            len: RequestSession::wire_len(n)?,
        }),
    }
}

/// The length of a Stop-Sessions from its header and each session description's count of
/// skip ranges. Validates the header.
pub fn stop_sessions(prefix: &[u8]) -> Result<Frame, WireError> {
    let Some(head) = prefix.get(..StopSessions::HEADER_LEN) else {
        return Ok(Frame::Incomplete {
            need: StopSessions::HEADER_LEN,
        });
    };
    let (_, n) = StopSessions::parse_header(head)?;
    let mut off = StopSessions::HEADER_LEN;
    for _ in 0..n {
        // The count of skip ranges sits in the second block of a description.
        let Some(nskip) = u32_at(prefix, off + 20) else {
            return Ok(Frame::Incomplete {
                need: off + 2 * BLOCK_LEN,
            });
        };
        off += SessionStop::wire_len(nskip)?;
    }
    Ok(Frame::Complete {
        len: off + BLOCK_LEN,
    })
}

/// The length of the next client request, told by its command number: Request-Session,
/// Start-Sessions, Stop-Sessions or Fetch-Session.
pub fn client_request(prefix: &[u8]) -> Result<Frame, WireError> {
    let Some(&command) = prefix.first() else {
        return Ok(Frame::Incomplete { need: BLOCK_LEN });
    };
    match ControlMessageKind::from_command(command) {
        Some(ControlMessageKind::RequestSession) => request_session(prefix),
        Some(ControlMessageKind::StartSessions) => Ok(Frame::Complete {
            len: StartSessions::LEN,
        }),
        Some(ControlMessageKind::StopSessions) => stop_sessions(prefix),
        Some(ControlMessageKind::FetchSession) => Ok(Frame::Complete {
            len: FetchSession::LEN,
        }),
        None => Err(WireError::invalid("control request", "command", 0, command)),
    }
}

/// The length of a whole Fetch-Session response: Fetch-Ack, then, if accepted, the stored
/// Request-Session and [`super::FetchData`].
pub fn fetch_response(prefix: &[u8]) -> Result<Frame, WireError> {
    let Some(ack) = prefix.get(..FetchAck::LEN) else {
        return Ok(Frame::Incomplete {
            need: FetchAck::LEN,
        });
    };
    let ack = FetchAck::parse(ack)?;
    if ack.accept != AcceptCode::Ok {
        return Ok(Frame::Complete { len: FetchAck::LEN });
    }
    let data = ack.data_len()?;
    match request_session(&prefix[FetchAck::LEN..])? {
        Frame::Incomplete { need } => Ok(Frame::Incomplete {
            need: FetchAck::LEN + need,
        }),
        Frame::Complete { len } => {
            let total = (FetchAck::LEN + len)
                .checked_add(data)
                .ok_or(WireError::TooMany {
                    message: "Fetch-Ack",
                    field: "number of records",
                    count: u64::from(ack.num_records),
                    max: u64::from(u32::MAX),
                })?;
            Ok(Frame::Complete { len: total })
        }
    }
}
