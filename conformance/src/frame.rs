//! Message framing and field checks for OWAMP-Control messages (RFC 4656 3.1-3.8), as the
//! trace checks need them: given the octets at the start of a stream, how long is the next
//! message and is every field that can be checked valid.

use std::fmt;

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
    /// The skip ranges after a Fetch-Ack, padded, and their HMAC (RFC 4656 3.9).
    FetchSkipRanges,
    /// The data records after a Fetch-Ack, padded, and their HMAC (RFC 4656 3.9).
    FetchRecords,
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
            MsgKind::FetchSkipRanges => "Fetch skip ranges",
            MsgKind::FetchRecords => "Fetch data records",
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
    /// Offset of the offending octet within the message.
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
    /// The whole message is in the clear (open mode, or decrypted bytes). When false, only the
    /// clear prefix of the Set-Up-Response and Server-Start is checked.
    pub clear: bool,
    /// The Modes word of the Server-Greeting, once seen.
    pub offered_modes: Option<u32>,
    /// For [`MsgKind::FetchSkipRanges`] and [`MsgKind::FetchRecords`]: how many.
    pub count: u32,
}

/// The largest schedule a Request-Session may carry in these checks: a bound so a corrupt count
/// is reported instead of waited for (65536 slots = 1 MiB).
pub const MAX_SLOTS: u32 = 1 << 16;
/// The largest number of sessions in a Stop-Sessions, for the same reason.
pub const MAX_SESSIONS: u32 = 1 << 16;
/// The largest number of skip ranges per session or Fetch-Ack, likewise.
pub const MAX_SKIP_RANGES: u32 = 1 << 20;
/// The largest number of records in a Fetch-Ack, likewise.
pub const MAX_RECORDS: u32 = 1 << 26;

/// Big-endian u16 at `at`.
pub fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// Big-endian u32 at `at`.
pub fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The first non-zero octet in `b[range]`, as a failure.
fn mbz(b: &[u8], from: usize, to: usize, what: &str) -> Result<(), Bad> {
    match b.get(from..to).and_then(|s| s.iter().position(|&x| x != 0)) {
        Some(i) => Err(Bad {
            offset: from + i,
            why: format!("{what} must be zero, is {:#04x}", b[from + i]),
        }),
        None => Ok(()),
    }
}

/// Accept values of RFC 4656 3.3.
fn accept(b: &[u8], at: usize) -> Result<u8, Bad> {
    let v = b.get(at).copied().unwrap_or(0);
    if v > 5 {
        return Err(Bad {
            offset: at,
            why: format!("Accept value {v} is not defined (0-5, RFC 4656 3.3)"),
        });
    }
    Ok(v)
}

fn pad16(n: usize) -> usize {
    n.div_ceil(16) * 16
}

/// Frames and checks the message of kind `kind` at the start of `b`.
pub fn frame(kind: MsgKind, b: &[u8], ctx: &Context) -> Framed {
    let need = |n: usize| -> Option<Framed> { (b.len() < n).then_some(Framed::NeedMore(n)) };
    let r = (|| -> Result<Framed, Bad> {
        Ok(match kind {
            // RFC 4656 3.1: Unused 12, Modes 4, Challenge 16, Salt 16, Count 4, MBZ 12.
            MsgKind::ServerGreeting => {
                if let Some(n) = need(64) {
                    return Ok(n);
                }
                let modes = be32(b, 12).unwrap_or(0);
                if modes & !7 != 0 {
                    return Err(Bad {
                        offset: 12,
                        why: format!("Modes {modes:#010x} has bits other than 1, 2 and 4"),
                    });
                }
                let count = be32(b, 48).unwrap_or(0);
                if modes & 6 != 0 && count < 1024 {
                    return Err(Bad {
                        offset: 48,
                        why: format!("Count {count} is below 1024 (RFC 4656 3.1)"),
                    });
                }
                mbz(b, 52, 64, "MBZ")?;
                Framed::Ok(64)
            }
            // RFC 4656 3.1: Mode 4, KeyID 80, Token 64, Client-IV 16.
            MsgKind::SetUpResponse => {
                if let Some(n) = need(164) {
                    return Ok(n);
                }
                let mode = be32(b, 0).unwrap_or(0);
                if !matches!(mode, 1 | 2 | 4) {
                    return Err(Bad {
                        offset: 0,
                        why: format!("Mode {mode:#010x} is not exactly one of 1, 2, 4"),
                    });
                }
                if let Some(offered) = ctx.offered_modes {
                    if offered & mode == 0 {
                        return Err(Bad {
                            offset: 0,
                            why: format!(
                                "Mode {mode} was not offered (Server-Greeting Modes {offered:#x})"
                            ),
                        });
                    }
                }
                Framed::Ok(164)
            }
            // RFC 4656 3.1: MBZ 15, Accept 1, Server-IV 16, Start-Time 8, MBZ 8. In
            // authenticated and encrypted modes the last 16 octets are encrypted.
            MsgKind::ServerStart => {
                if let Some(n) = need(48) {
                    return Ok(n);
                }
                mbz(b, 0, 15, "MBZ")?;
                accept(b, 15)?;
                if ctx.clear {
                    mbz(b, 40, 48, "MBZ")?;
                }
                Framed::Ok(48)
            }
            // RFC 4656 3.5.
            MsgKind::RequestSession => {
                if let Some(n) = need(112) {
                    return Ok(n);
                }
                let slots = be32(b, 4).unwrap_or(0);
                if slots == 0 {
                    return Err(Bad {
                        offset: 4,
                        why: "Number of Schedule Slots is 0".into(),
                    });
                }
                if slots > MAX_SLOTS {
                    return Err(Bad {
                        offset: 4,
                        why: format!("Number of Schedule Slots {slots} exceeds {MAX_SLOTS}"),
                    });
                }
                let len = 112 + 16 * slots as usize + 16;
                if let Some(n) = need(len) {
                    return Ok(n);
                }
                check_request_session(b, slots as usize)?;
                Framed::Ok(len)
            }
            // RFC 4656 3.5: Accept 1, MBZ 1, Port 2, SID 16, MBZ 12, HMAC 16.
            MsgKind::AcceptSession => {
                if let Some(n) = need(48) {
                    return Ok(n);
                }
                accept(b, 0)?;
                mbz(b, 1, 2, "MBZ")?;
                mbz(b, 20, 32, "MBZ")?;
                Framed::Ok(48)
            }
            // RFC 4656 3.7: 2, MBZ 15, HMAC 16.
            MsgKind::StartSessions => {
                if let Some(n) = need(32) {
                    return Ok(n);
                }
                mbz(b, 1, 16, "MBZ")?;
                Framed::Ok(32)
            }
            // RFC 4656 3.7: Accept 1, MBZ 15, HMAC 16.
            MsgKind::StartAck => {
                if let Some(n) = need(32) {
                    return Ok(n);
                }
                accept(b, 0)?;
                mbz(b, 1, 16, "MBZ")?;
                Framed::Ok(32)
            }
            // RFC 4656 3.8: 3, Accept 1, MBZ 2, Number of Sessions 4, MBZ 8; then per session
            // SID 16, Next Seqno 4, Number of Skip Ranges 4, skip ranges 8 each, padded to a
            // 16-octet boundary; then HMAC 16.
            MsgKind::StopSessions => {
                if let Some(n) = need(16) {
                    return Ok(n);
                }
                accept(b, 1)?;
                mbz(b, 2, 4, "MBZ")?;
                mbz(b, 8, 16, "MBZ")?;
                let sessions = be32(b, 4).unwrap_or(0);
                if sessions > MAX_SESSIONS {
                    return Err(Bad {
                        offset: 4,
                        why: format!("Number of Sessions {sessions} exceeds {MAX_SESSIONS}"),
                    });
                }
                let mut at = 16;
                for _ in 0..sessions {
                    if let Some(n) = need(at + 24) {
                        return Ok(n);
                    }
                    let skips = be32(b, at + 20).unwrap_or(0);
                    if skips > MAX_SKIP_RANGES {
                        return Err(Bad {
                            offset: at + 20,
                            why: format!(
                                "Number of Skip Ranges {skips} exceeds {MAX_SKIP_RANGES}"
                            ),
                        });
                    }
                    let body = 8 + 8 * skips as usize;
                    let end = at + 16 + pad16(body);
                    if let Some(n) = need(end) {
                        return Ok(n);
                    }
                    mbz(b, at + 16 + body, end, "padding")?;
                    at = end;
                }
                if let Some(n) = need(at + 16) {
                    return Ok(n);
                }
                Framed::Ok(at + 16)
            }
            // RFC 4656 3.9: 4, MBZ 7, Begin Seq 4, End Seq 4, SID 16, HMAC 16.
            MsgKind::FetchSession => {
                if let Some(n) = need(48) {
                    return Ok(n);
                }
                mbz(b, 1, 8, "MBZ")?;
                Framed::Ok(48)
            }
            // RFC 4656 3.9: Accept 1, Finished 1, MBZ 2, Next Seqno 4, Number of Skip Ranges 4,
            // Number of Records 4, HMAC 16.
            MsgKind::FetchAck => {
                if let Some(n) = need(32) {
                    return Ok(n);
                }
                accept(b, 0)?;
                if b[1] > 1 {
                    return Err(Bad {
                        offset: 1,
                        why: format!("Finished {} is neither 0 nor 1", b[1]),
                    });
                }
                mbz(b, 2, 4, "MBZ")?;
                let skips = be32(b, 8).unwrap_or(0);
                if skips > MAX_SKIP_RANGES {
                    return Err(Bad {
                        offset: 8,
                        why: format!("Number of Skip Ranges {skips} exceeds {MAX_SKIP_RANGES}"),
                    });
                }
                let records = be32(b, 12).unwrap_or(0);
                if records > MAX_RECORDS {
                    return Err(Bad {
                        offset: 12,
                        why: format!("Number of Records {records} exceeds {MAX_RECORDS}"),
                    });
                }
                if b[0] != 0 {
                    mbz(b, 4, 16, "fields of a refusing Fetch-Ack")?;
                }
                Framed::Ok(32)
            }
            MsgKind::FetchSkipRanges => {
                let body = 8 * ctx.count as usize;
                let len = pad16(body) + 16;
                if let Some(n) = need(len) {
                    return Ok(n);
                }
                mbz(b, body, pad16(body), "padding")?;
                Framed::Ok(len)
            }
            MsgKind::FetchRecords => {
                let body = 25 * ctx.count as usize;
                let len = pad16(body) + 16;
                if let Some(n) = need(len) {
                    return Ok(n);
                }
                for (i, rec) in b[..body].chunks_exact(25).enumerate() {
                    if let Err(e) = owamp_core::wire::DataRecord::parse(rec) {
                        return Err(Bad {
                            offset: i * 25,
                            why: format!("record {}: {e}", i + 1),
                        });
                    }
                }
                mbz(b, body, pad16(body), "padding")?;
                Framed::Ok(len)
            }
            MsgKind::Command => Framed::Bad(Bad {
                offset: 0,
                why: format!(
                    "unknown command type {} (want 1 Request-Session, 2 Start-Sessions, 3 Stop-Sessions or 4 Fetch-Session)",
                    b.first().copied().unwrap_or(0)
                ),
            }),
        })
    })();
    r.unwrap_or_else(Framed::Bad)
}

/// RFC 4656 3.5: type 1, MBZ 4 bits + IPVN 4 bits, Conf-Sender, Conf-Receiver, slots 4,
/// packets 4, sender port 2, receiver port 2, sender address 16, receiver address 16, SID 16,
/// padding length 4, start time 8, timeout 8, Type-P 4, MBZ 8, HMAC 16; then the slots (type 1,
/// MBZ 7, value 8) and an HMAC 16.
fn check_request_session(b: &[u8], slots: usize) -> Result<(), Bad> {
    if b[1] >> 4 != 0 {
        return Err(Bad {
            offset: 1,
            why: format!("MBZ bits above IPVN must be zero, octet is {:#04x}", b[1]),
        });
    }
    let ipvn = b[1] & 0x0f;
    if ipvn != 4 && ipvn != 6 {
        return Err(Bad {
            offset: 1,
            why: format!("IPVN {ipvn} is neither 4 nor 6"),
        });
    }
    for (at, name) in [(2, "Conf-Sender"), (3, "Conf-Receiver")] {
        if b[at] > 1 {
            return Err(Bad {
                offset: at,
                why: format!("{name} {} is neither 0 nor 1", b[at]),
            });
        }
    }
    mbz(b, 88, 96, "MBZ")?;
    for i in 0..slots {
        let at = 112 + 16 * i;
        if b[at] > 1 {
            return Err(Bad {
                offset: at,
                why: format!(
                    "slot {} type {} is neither 0 (exponential) nor 1 (fixed)",
                    i + 1,
                    b[at]
                ),
            });
        }
        mbz(b, at + 1, at + 8, &format!("slot {} MBZ", i + 1))?;
    }
    Ok(())
}

/// The minimum length of a test packet payload in `mode` (RFC 4656 4.1.2): 14 octets in open
/// mode, 48 in authenticated and encrypted modes.
pub fn min_test_packet(authenticated: bool) -> usize {
    if authenticated {
        48
    } else {
        14
    }
}
