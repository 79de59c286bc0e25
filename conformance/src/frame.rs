//! Message framing and field checks for OWAMP-Control messages (RFC 4656 3.1-3.9) and the
//! TWAMP-Control messages that differ from them (RFC 5357 3.5, 3.8), as the
//! trace checks need them: given the octets at the start of a stream, how long is the next
//! message and is every field that can be checked valid.
//!
//! Lengths come from the framing helpers of `owamp_core::wire::framing` and fields are checked
//! by the `parse` of each `owamp_core::wire` message type; the errors are theirs. On top of
//! that, a Set-Up-Response must choose a mode the Server-Greeting offered (RFC 4656 3.1).

use std::fmt;

use owamp_core::wire::framing::{self, Frame};
use owamp_core::wire::{
    AcceptSession, FetchAck, FetchData, FetchSession, RequestSession, RequestTwSession,
    ServerGreeting, ServerStart, SetUpResponse, StartAck, StartSessions, StopSessions,
    TwampStopSessions, WireError,
};

/// The kinds of OWAMP-Control message (and the parts of a Fetch-Session response).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum MsgKind {
    /// Server-Greeting, 64 octets (RFC 4656 3.1).
    ServerGreeting,
    /// Set-Up-Response, 164 octets (RFC 4656 3.1).
    SetUpResponse,
    /// Server-Start, 48 octets (RFC 4656 3.1).
    ServerStart,
    /// Request-Session, 112 + 16 per slot + 16 octets (RFC 4656 3.5).
    RequestSession,
    /// Accept-Session, 48 octets (RFC 4656 3.5).
    AcceptSession,
    /// Start-Sessions, 32 octets (RFC 4656 3.7).
    StartSessions,
    /// Start-Ack, 32 octets (RFC 4656 3.7).
    StartAck,
    /// Stop-Sessions, variable (RFC 4656 3.8).
    StopSessions,
    /// Fetch-Session, 48 octets (RFC 4656 3.9).
    FetchSession,
    /// Fetch-Ack, 32 octets (RFC 4656 3.9).
    FetchAck,
    /// What follows the stored Request-Session after an accepting Fetch-Ack: the skip ranges
    /// and the data records, each padded and followed by an HMAC (RFC 4656 3.8).
    FetchData,
    /// Request-TW-Session, 112 octets (RFC 5357 3.5; TWAMP only).
    RequestTwSession,
    /// TWAMP's Stop-Sessions, 32 octets with no session descriptions (RFC 5357 3.8).
    TwampStopSessions,
    /// A command octet that names no command.
    Command,
}

impl MsgKind {
    /// The message's name as the RFC spells it.
    pub fn name(self) -> &'static str {
        match self {
            MsgKind::ServerGreeting => "Server-Greeting",
            MsgKind::SetUpResponse => "Set-Up-Response",
            MsgKind::ServerStart => "Server-Start",
            MsgKind::RequestSession => "Request-Session",
            MsgKind::AcceptSession => "Accept-Session",
            MsgKind::StartSessions => "Start-Sessions",
            MsgKind::StartAck => "Start-Ack",
            MsgKind::StopSessions => "Stop-Sessions",
            MsgKind::FetchSession => "Fetch-Session",
            MsgKind::FetchAck => "Fetch-Ack",
            MsgKind::FetchData => "Fetch-Session data",
            MsgKind::RequestTwSession => "Request-TW-Session",
            MsgKind::TwampStopSessions => "Stop-Sessions",
            MsgKind::Command => "command",
        }
    }
}

impl fmt::Display for MsgKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A field that is wrong, or a message that does not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bad {
    /// Offset of the offending octet within the message (0 when the error names no octet).
    pub offset: usize,
    /// Why.
    pub why: String,
}

/// The outcome of looking at the start of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framed {
    /// At least this many octets are needed to go on.
    NeedMore(usize),
    /// A valid message of this length.
    Ok(usize),
    /// An invalid message.
    Bad(Bad),
}

/// What the framing of one message depends on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context {
    /// The whole message is in the clear (open mode, or decrypted bytes). When false, the
    /// encrypted last block of a Server-Start is not checked (RFC 4656 3.1).
    pub clear: bool,
    /// The Modes word of the Server-Greeting, once seen.
    pub offered_modes: Option<u32>,
    /// For [`MsgKind::FetchData`]: the Number of Skip Ranges and Number of Records of the
    /// Fetch-Ack.
    pub counts: (u32, u32),
}

/// Big-endian u16 at `at`.
pub fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// Big-endian u32 at `at`.
pub fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The offset of the octet a count field sits at, for errors that name a count.
fn count_offset(kind: MsgKind, field: &str) -> usize {
    match (kind, field) {
        (MsgKind::RequestSession, _) => 4,
        (MsgKind::StopSessions, "number of sessions") => 4,
        (MsgKind::FetchAck, "number of skip ranges") => 8,
        (MsgKind::FetchAck, _) => 12,
        _ => 0,
    }
}

/// Where a wire error points, within the message.
pub fn error_offset(kind: MsgKind, e: &WireError) -> usize {
    match e {
        WireError::Mbz { offset, .. } | WireError::Invalid { offset, .. } => *offset,
        WireError::TooMany { field, .. } => count_offset(kind, field),
        _ => 0,
    }
}

fn wire_bad(kind: MsgKind, e: WireError) -> Framed {
    Framed::Bad(Bad {
        offset: error_offset(kind, &e),
        why: e.to_string(),
    })
}

/// Frames and checks the message of kind `kind` at the start of `b`.
pub fn frame(kind: MsgKind, b: &[u8], ctx: &Context) -> Framed {
    // The message length, from the framing helpers.
    let len = match kind {
        MsgKind::ServerGreeting => Ok(Frame::Complete {
            len: ServerGreeting::LEN,
        }),
        MsgKind::SetUpResponse => Ok(Frame::Complete {
            len: SetUpResponse::LEN,
        }),
        MsgKind::ServerStart => Ok(Frame::Complete {
            len: ServerStart::LEN,
        }),
        MsgKind::RequestSession => framing::request_session(b),
        MsgKind::AcceptSession => Ok(Frame::Complete {
            len: AcceptSession::LEN,
        }),
        MsgKind::StartSessions | MsgKind::FetchSession | MsgKind::Command => {
            framing::client_request(b)
        }
        MsgKind::StartAck => Ok(Frame::Complete { len: StartAck::LEN }),
        MsgKind::StopSessions => framing::stop_sessions(b),
        MsgKind::FetchAck => Ok(Frame::Complete { len: FetchAck::LEN }),
        MsgKind::RequestTwSession => Ok(Frame::Complete {
            len: RequestTwSession::LEN,
        }),
        MsgKind::TwampStopSessions => Ok(Frame::Complete {
            len: TwampStopSessions::LEN,
        }),
        MsgKind::FetchData => {
            FetchData::wire_len(ctx.counts.0, ctx.counts.1).map(|len| Frame::Complete { len })
        }
    };
    let len = match len {
        Err(e) => return wire_bad(kind, e),
        Ok(Frame::Incomplete { need }) => return Framed::NeedMore(need),
        Ok(Frame::Complete { len }) => len,
    };
    let Some(m) = b.get(..len) else {
        return Framed::NeedMore(len);
    };
    let checked = match kind {
        MsgKind::ServerGreeting => ServerGreeting::parse(m).map(drop),
        MsgKind::SetUpResponse => match SetUpResponse::parse(m) {
            Ok(r) => {
                // RFC 4656 3.1: the client picks one of the modes the server offered.
                if let Some(offered) = ctx.offered_modes {
                    if offered & r.mode.bits() == 0 {
                        return Framed::Bad(Bad {
                            offset: 0,
                            why: format!(
                                "Set-Up-Response: mode {} was not offered (Server-Greeting Modes {offered:#x})",
                                r.mode.bits()
                            ),
                        });
                    }
                }
                Ok(())
            }
            Err(e) => Err(e),
        },
        MsgKind::ServerStart if !ctx.clear => {
            // Only the first 32 octets are clear; the last block is ciphertext.
            let mut copy = m.to_vec();
            copy[ServerStart::CLEAR_LEN..].fill(0);
            ServerStart::parse(&copy).map(drop)
        }
        MsgKind::ServerStart => ServerStart::parse(m).map(drop),
        MsgKind::RequestSession => RequestSession::parse(m).map(drop),
        MsgKind::AcceptSession => AcceptSession::parse(m).map(drop),
        MsgKind::StartSessions => StartSessions::parse(m).map(drop),
        MsgKind::StartAck => StartAck::parse(m).map(drop),
        MsgKind::StopSessions => StopSessions::parse(m).map(drop),
        MsgKind::FetchSession => FetchSession::parse(m).map(drop),
        MsgKind::FetchAck => FetchAck::parse(m).map(drop),
        MsgKind::FetchData => FetchData::parse(m, ctx.counts.0, ctx.counts.1).map(drop),
        MsgKind::RequestTwSession => RequestTwSession::parse(m).map(drop),
        MsgKind::TwampStopSessions => TwampStopSessions::parse(m).map(drop),
        // A known command framed as `Command` is the caller's mistake; parse it as what it is.
        MsgKind::Command => Ok(()),
    };
    match checked {
        Ok(()) => Framed::Ok(len),
        Err(e) => wire_bad(kind, e),
    }
}
