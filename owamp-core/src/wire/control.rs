//! Session control messages: Start-Sessions, Start-Ack, Stop-Sessions, Fetch-Session and
//! Fetch-Ack (RFC 4656 3.7 and 3.8), plus the data that follows an accepted Fetch-Ack.

use zerocopy::network_endian::U32;
use zerocopy::{FromBytes, IntoBytes};

use super::error::{check_len, check_mbz, WireError};
use super::{pad_to_block, raw, read_layout, AcceptCode, DataRecord, Hmac, SessionId, BLOCK_LEN};

/// The command number in the first octet of a client request (RFC 4656 3.4). Stop-Sessions is
/// also sent by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlMessageKind {
    /// 1: Request-Session.
    RequestSession,
    /// 2: Start-Sessions.
    StartSessions,
    /// 3: Stop-Sessions.
    StopSessions,
    /// 4: Fetch-Session.
    FetchSession,
}

impl ControlMessageKind {
    /// The command number.
    pub const fn command(self) -> u8 {
        match self {
            ControlMessageKind::RequestSession => 1,
            ControlMessageKind::StartSessions => 2,
            ControlMessageKind::StopSessions => 3,
            ControlMessageKind::FetchSession => 4,
        }
    }

    /// The kind for a command number; `None` for any other value (including 5, the TWAMP
    /// Request-TW-Session).
    pub const fn from_command(v: u8) -> Option<Self> {
        Some(match v {
            1 => ControlMessageKind::RequestSession,
            2 => ControlMessageKind::StartSessions,
            3 => ControlMessageKind::StopSessions,
            4 => ControlMessageKind::FetchSession,
            _ => return None,
        })
    }
}

/// Start-Sessions: the client starts every accepted session, 32 octets (RFC 4656 3.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct StartSessions {
    /// HMAC over the first 16 octets.
    pub hmac: Hmac,
}

impl StartSessions {
    /// Command number.
    pub const COMMAND: u8 = 2;
    /// Octets of the message.
    pub const LEN: usize = 32;
    const NAME: &'static str = "Start-Sessions";

    /// Decodes and validates the message (command 2, MBZ octets).
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let r: raw::StartSessions = read_layout(Self::NAME, bytes)?;
        if r.command != Self::COMMAND {
            return Err(WireError::invalid(Self::NAME, "command", 0, r.command));
        }
        check_mbz(Self::NAME, &r.mbz, 1)?;
        Ok(Self { hmac: r.hmac })
    }

    /// Appends the 32-octet encoding to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let r = raw::StartSessions {
            command: Self::COMMAND,
            mbz: [0; 15],
            hmac: self.hmac,
        };
        out.extend_from_slice(r.as_bytes());
    }
}

/// Start-Ack: the server's answer to Start-Sessions, 32 octets (RFC 4656 3.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StartAck {
    /// Whether the sessions started.
    pub accept: AcceptCode,
    /// HMAC over the first 16 octets.
    pub hmac: Hmac,
}

impl StartAck {
    /// Octets of the message.
    pub const LEN: usize = 32;
    const NAME: &'static str = "Start-Ack";

    /// Decodes and validates the message (Accept code, MBZ octets).
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let r: raw::StartAck = read_layout(Self::NAME, bytes)?;
        let accept = AcceptCode::parse_field(Self::NAME, 0, r.accept)?;
        check_mbz(Self::NAME, &r.mbz, 1)?;
        Ok(Self {
            accept,
            hmac: r.hmac,
        })
    }

    /// Appends the 32-octet encoding to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let r = raw::StartAck {
            accept: self.accept.to_u8(),
            mbz: [0; 15],
            hmac: self.hmac,
        };
        out.extend_from_slice(r.as_bytes());
    }
}

/// A range of sequence numbers the sender scheduled but never sent (RFC 4656 3.8), both ends
/// inclusive.
///
/// The crate's one skip-range type: Stop-Sessions and the Fetch-Session answer carry it on the
/// wire, [`crate::io`] passes it in session reports, the `.owp` header
/// ([`crate::owp::SessionHeader`]) stores it and the statistics read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SkipRange {
    /// First Seqno Skipped.
    pub first: u32,
    /// Last Seqno Skipped (inclusive).
    pub last: u32,
}

impl SkipRange {
    /// Octets of one encoded range.
    pub const LEN: usize = 8;

    /// Whether `first <= last` (the wire does not enforce it; the session layer should).
    pub fn is_ordered(&self) -> bool {
        self.first <= self.last
    }

    /// Whether `seq` lies in the range.
    pub fn contains(&self, seq: u32) -> bool {
        self.first <= seq && seq <= self.last
    }

    fn from_raw(r: &raw::SkipRange) -> Self {
        Self {
            first: r.first.get(),
            last: r.last.get(),
        }
    }

    fn to_raw(self) -> raw::SkipRange {
        raw::SkipRange {
            first: U32::new(self.first),
            last: U32::new(self.last),
        }
    }

    /// Octets of `n` skip ranges padded to a block boundary, as they follow an accepted
    /// Fetch-Ack; an error above [`StopSessions::MAX_SKIP_RANGES`].
    pub fn block_len(n: u32) -> Result<usize, WireError> {
        check_skip_count("skip ranges", n)?;
        // n <= 2^20: 8 n fits in any usize of 32 bits or more.
        pad_to_block(n as usize * Self::LEN).ok_or(WireError::TooMany {
            message: "skip ranges",
            field: "number of skip ranges",
            count: u64::from(n),
            max: u64::from(StopSessions::MAX_SKIP_RANGES),
        })
    }

    /// Decodes `n` skip ranges followed by zero padding to a block boundary; `bytes` must be
    /// exactly [`SkipRange::block_len`] octets. `base` is their offset in the enclosing
    /// message, for error reports.
    pub fn parse_block(bytes: &[u8], n: u32, base: usize) -> Result<Vec<Self>, WireError> {
        const NAME: &str = "skip ranges";
        check_len(NAME, bytes, Self::block_len(n)?)?;
        let (ranges, pad) = bytes.split_at(n as usize * Self::LEN);
        check_mbz(NAME, pad, base + ranges.len())?;
        let raw = <[raw::SkipRange]>::ref_from_bytes(ranges).map_err(|_| WireError::Truncated {
            message: NAME,
            needed: ranges.len(),
            got: ranges.len(),
        })?;
        Ok(raw.iter().map(Self::from_raw).collect())
    }

    /// Appends the ranges and zero padding to a block boundary.
    pub fn write_block(ranges: &[SkipRange], out: &mut Vec<u8>) {
        let start = out.len();
        for r in ranges {
            out.extend_from_slice(r.to_raw().as_bytes());
        }
        let len = out.len() - start;
        out.resize(start + len.next_multiple_of(BLOCK_LEN), 0);
    }
}

fn check_skip_count(message: &'static str, n: u32) -> Result<(), WireError> {
    if n > StopSessions::MAX_SKIP_RANGES {
        return Err(WireError::TooMany {
            message,
            field: "number of skip ranges",
            count: u64::from(n),
            max: u64::from(StopSessions::MAX_SKIP_RANGES),
        });
    }
    Ok(())
}

/// One session description of Stop-Sessions (RFC 4656 3.8).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionStop {
    /// The session.
    pub sid: SessionId,
    /// The first sequence number the sender did not send.
    pub next_seqno: u32,
    /// Ranges the sender skipped.
    pub skip_ranges: Vec<SkipRange>,
}

impl SessionStop {
    /// Octets of the description with `n` skip ranges: SID, Next Seqno, count, the ranges,
    /// then zero padding to a block boundary (as the reference sends it).
    pub fn wire_len(n: u32) -> Result<usize, WireError> {
        check_skip_count(StopSessions::NAME, n)?;
        pad_to_block(24 + n as usize * SkipRange::LEN).ok_or(WireError::TooMany {
            message: StopSessions::NAME,
            field: "number of skip ranges",
            count: u64::from(n),
            max: u64::from(StopSessions::MAX_SKIP_RANGES),
        })
    }

    fn encoded_len(&self) -> usize {
        (24 + self.skip_ranges.len() * SkipRange::LEN).next_multiple_of(BLOCK_LEN)
    }
}

/// Stop-Sessions: ends the test sessions, sent by both sides (RFC 4656 3.8).
///
/// On the wire: a 16-octet header (command 3, Accept, MBZ, Number of Sessions, MBZ), then one
/// description per session the sending side sent packets for, each padded to a block
/// boundary, then an HMAC over everything before it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StopSessions {
    /// Zero when the sessions ended normally.
    pub accept: AcceptCode,
    /// The session descriptions.
    pub sessions: Vec<SessionStop>,
    /// HMAC over the preceding octets.
    pub hmac: Hmac,
}

impl StopSessions {
    /// Command number.
    pub const COMMAND: u8 = 3;
    /// Octets of the header.
    pub const HEADER_LEN: usize = 16;
    /// The most session descriptions accepted in one message.
    pub const MAX_SESSIONS: u32 = 1 << 12;
    /// The most skip ranges accepted for one session (8 MiB).
    pub const MAX_SKIP_RANGES: u32 = 1 << 20;
    const NAME: &'static str = "Stop-Sessions";

    pub(crate) fn check_session_count(n: u32) -> Result<(), WireError> {
        if n > Self::MAX_SESSIONS {
            return Err(WireError::TooMany {
                message: Self::NAME,
                field: "number of sessions",
                count: u64::from(n),
                max: u64::from(Self::MAX_SESSIONS),
            });
        }
        Ok(())
    }

    /// Validates the 16-octet header; returns the Accept code and the session count.
    pub(crate) fn parse_header(bytes: &[u8]) -> Result<(AcceptCode, u32), WireError> {
        let h: raw::StopSessionsHeader = read_layout(Self::NAME, bytes)?;
        if h.command != Self::COMMAND {
            return Err(WireError::invalid(Self::NAME, "command", 0, h.command));
        }
        let accept = AcceptCode::parse_field(Self::NAME, 1, h.accept)?;
        check_mbz(Self::NAME, &h.mbz1, 2)?;
        check_mbz(Self::NAME, &h.mbz2, 8)?;
        let n = h.num_sessions.get();
        Self::check_session_count(n)?;
        Ok((accept, n))
    }

    /// Octets of this message's encoding.
    pub fn encoded_len(&self) -> usize {
        Self::HEADER_LEN
            + self
                .sessions
                .iter()
                .map(SessionStop::encoded_len)
                .sum::<usize>()
            + BLOCK_LEN
    }

    /// Decodes and validates one whole message: command 3, Accept code, MBZ octets and
    /// padding, counts within the limits and exactly matching the length given.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let head = bytes.get(..Self::HEADER_LEN).ok_or(WireError::Truncated {
            message: Self::NAME,
            needed: Self::HEADER_LEN,
            got: bytes.len(),
        })?;
        let (accept, n) = Self::parse_header(head)?;
        let mut off = Self::HEADER_LEN;
        // Grows with the descriptions actually present, never by the announced count.
        let mut sessions = Vec::new();
        for _ in 0..n {
            let truncated = |needed| WireError::Truncated {
                message: Self::NAME,
                needed,
                got: bytes.len(),
            };
            let (d, _) = bytes
                .get(off..)
                .and_then(|b| raw::SessionDescription::read_from_prefix(b).ok())
                .ok_or(truncated(off + 24))?;
            let nskip = d.num_skip_ranges.get();
            let len = SessionStop::wire_len(nskip)?;
            let rec = bytes
                .get(off..off + len)
                .ok_or(truncated(off.saturating_add(len)))?;
            // RFC 4656 3.8; the reference pads each description to a block boundary (8 zero
            // octets when the count is even) and checks the padding is zero.
            let ranges_end = 24 + nskip as usize * SkipRange::LEN;
            check_mbz(Self::NAME, &rec[ranges_end..], off + ranges_end)?;
            let ranges = <[raw::SkipRange]>::ref_from_bytes(&rec[24..ranges_end])
                .map_err(|_| truncated(off + ranges_end))?;
            sessions.push(SessionStop {
                sid: SessionId(d.sid),
                next_seqno: d.next_seqno.get(),
                skip_ranges: ranges.iter().map(SkipRange::from_raw).collect(),
            });
            off += len;
        }
        check_len(Self::NAME, bytes, off + BLOCK_LEN)?;
        let mut hmac = [0u8; 16];
        hmac.copy_from_slice(&bytes[off..]);
        Ok(Self {
            accept,
            sessions,
            hmac,
        })
    }

    /// Appends the encoding to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        let h = raw::StopSessionsHeader {
            command: Self::COMMAND,
            accept: self.accept.to_u8(),
            mbz1: [0; 2],
            num_sessions: U32::new(u32::try_from(self.sessions.len()).unwrap_or(u32::MAX)),
            mbz2: [0; 8],
        };
        out.extend_from_slice(h.as_bytes());
        for s in &self.sessions {
            let d = raw::SessionDescription {
                sid: s.sid.0,
                next_seqno: U32::new(s.next_seqno),
                num_skip_ranges: U32::new(u32::try_from(s.skip_ranges.len()).unwrap_or(u32::MAX)),
            };
            let start = out.len();
            out.extend_from_slice(d.as_bytes());
            for r in &s.skip_ranges {
                out.extend_from_slice(r.to_raw().as_bytes());
            }
            let len = out.len() - start;
            out.resize(start + len.next_multiple_of(BLOCK_LEN), 0);
        }
        out.extend_from_slice(&self.hmac);
    }
}

/// Fetch-Session: the client asks for a session's records, 48 octets (RFC 4656 3.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FetchSession {
    /// First sequence number wanted.
    pub begin_seq: u32,
    /// Last sequence number wanted (`0xffffffff` with `begin_seq` 0: the whole session).
    pub end_seq: u32,
    /// The session.
    pub sid: SessionId,
    /// HMAC over the first 32 octets.
    pub hmac: Hmac,
}

impl FetchSession {
    /// Command number.
    pub const COMMAND: u8 = 4;
    /// Octets of the message.
    pub const LEN: usize = 48;
    const NAME: &'static str = "Fetch-Session";

    /// Decodes and validates the message (command 4, MBZ octets).
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let r: raw::FetchSession = read_layout(Self::NAME, bytes)?;
        if r.command != Self::COMMAND {
            return Err(WireError::invalid(Self::NAME, "command", 0, r.command));
        }
        check_mbz(Self::NAME, &r.mbz, 1)?;
        Ok(Self {
            begin_seq: r.begin_seq.get(),
            end_seq: r.end_seq.get(),
            sid: SessionId(r.sid),
            hmac: r.hmac,
        })
    }

    /// Appends the 48-octet encoding to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let r = raw::FetchSession {
            command: Self::COMMAND,
            mbz: [0; 7],
            begin_seq: U32::new(self.begin_seq),
            end_seq: U32::new(self.end_seq),
            sid: self.sid.0,
            hmac: self.hmac,
        };
        out.extend_from_slice(r.as_bytes());
    }
}

/// The Finished octet of Fetch-Ack (RFC 4656 3.8), with the values perfSONAR owamp gives it in
/// its session files and on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Finished {
    /// The session is still running (0).
    No,
    /// Stop-Sessions was received: Next-Seqno and the skip ranges are known (1).
    Normal,
    /// The session ended without Stop-Sessions (2).
    Incomplete,
}

impl Finished {
    /// The octet on the wire.
    pub fn to_u8(self) -> u8 {
        match self {
            Finished::No => 0,
            Finished::Normal => 1,
            Finished::Incomplete => 2,
        }
    }

    /// The value of an octet; `None` for octets no implementation sends (3 and above).
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Finished::No),
            1 => Some(Finished::Normal),
            2 => Some(Finished::Incomplete),
            _ => None,
        }
    }

    /// Whether the session has ended (normally or not).
    pub fn is_finished(self) -> bool {
        self != Finished::No
    }
}

/// Fetch-Ack: the server's answer to Fetch-Session, 32 octets (RFC 4656 3.8).
///
/// When accepted, it is followed by the session's Request-Session (with recomputed HMACs), the
/// skip ranges padded to a block, an HMAC, the records padded to a block and a final HMAC; see
/// [`FetchAck::data_len`] and [`FetchData`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FetchAck {
    /// Whether the fetch is accepted.
    pub accept: AcceptCode,
    /// Whether the session has ended, and how.
    pub finished: Finished,
    /// The first sequence number not sent (meaningful when finished).
    pub next_seqno: u32,
    /// Number of skip ranges that follow (meaningful when finished).
    pub num_skip_ranges: u32,
    /// Number of records that follow.
    pub num_records: u32,
    /// HMAC over the first 16 octets.
    pub hmac: Hmac,
}

impl FetchAck {
    /// Octets of the message.
    pub const LEN: usize = 32;
    const NAME: &'static str = "Fetch-Ack";

    /// Decodes and validates the message (Accept code, MBZ octets).
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let r: raw::FetchAck = read_layout(Self::NAME, bytes)?;
        let accept = AcceptCode::parse_field(Self::NAME, 0, r.accept)?;
        check_mbz(Self::NAME, &r.mbz, 2)?;
        Ok(Self {
            accept,
            finished: Finished::from_u8(r.finished).ok_or(WireError::Invalid {
                message: Self::NAME,
                field: "Finished",
                offset: 1,
                value: u64::from(r.finished),
            })?,
            next_seqno: r.next_seqno.get(),
            num_skip_ranges: r.num_skip_ranges.get(),
            num_records: r.num_records.get(),
            hmac: r.hmac,
        })
    }

    /// Appends the 32-octet encoding to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let r = raw::FetchAck {
            accept: self.accept.to_u8(),
            finished: self.finished.to_u8(),
            mbz: [0; 2],
            next_seqno: U32::new(self.next_seqno),
            num_skip_ranges: U32::new(self.num_skip_ranges),
            num_records: U32::new(self.num_records),
            hmac: self.hmac,
        };
        out.extend_from_slice(r.as_bytes());
    }

    /// Octets that follow the stored Request-Session: zero if the fetch was refused, else
    /// [`FetchData::wire_len`] of the announced counts.
    pub fn data_len(&self) -> Result<usize, WireError> {
        if !self.accept.is_ok() {
            return Ok(0);
        }
        FetchData::wire_len(self.num_skip_ranges, self.num_records)
    }
}

/// What follows the stored Request-Session in an accepted Fetch-Session response (RFC 4656
/// 3.8): skip ranges padded to a block, an HMAC, records padded to a block, an HMAC.
///
/// For large sessions a reader can stream instead: [`SkipRange::block_len`] and
/// [`FetchData::records_len`] give the section sizes, [`DataRecord::parse`] decodes one
/// record at a time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FetchData {
    /// The skip ranges.
    pub skip_ranges: Vec<SkipRange>,
    /// HMAC over everything since the previous HMAC (the skip-range blocks).
    pub skip_ranges_hmac: Hmac,
    /// The data records.
    pub records: Vec<DataRecord>,
    /// HMAC over the record blocks.
    pub records_hmac: Hmac,
}

impl FetchData {
    const NAME: &'static str = "Fetch-Session data";

    /// Octets of `n` records padded to a block boundary; an error if that does not fit in
    /// memory addresses.
    pub fn records_len(n: u32) -> Result<usize, WireError> {
        usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_mul(DataRecord::LEN))
            .and_then(pad_to_block)
            .ok_or(WireError::TooMany {
                message: Self::NAME,
                field: "number of records",
                count: u64::from(n),
                max: (usize::MAX / DataRecord::LEN / 2) as u64,
            })
    }

    /// Octets of the whole section for the given counts.
    pub fn wire_len(num_skip_ranges: u32, num_records: u32) -> Result<usize, WireError> {
        let overflow = WireError::TooMany {
            message: Self::NAME,
            field: "number of records",
            count: u64::from(num_records),
            max: (usize::MAX / DataRecord::LEN / 2) as u64,
        };
        SkipRange::block_len(num_skip_ranges)?
            .checked_add(Self::records_len(num_records)?)
            .and_then(|v| v.checked_add(2 * BLOCK_LEN))
            .ok_or(overflow)
    }

    /// Decodes the section; `bytes` must be exactly [`FetchData::wire_len`] octets. Padding
    /// must be zero.
    pub fn parse(bytes: &[u8], num_skip_ranges: u32, num_records: u32) -> Result<Self, WireError> {
        check_len(
            Self::NAME,
            bytes,
            Self::wire_len(num_skip_ranges, num_records)?,
        )?;
        let skip_len = SkipRange::block_len(num_skip_ranges)?;
        let (skips, rest) = bytes.split_at(skip_len);
        let skip_ranges = SkipRange::parse_block(skips, num_skip_ranges, 0)?;
        let (h1, rest) = rest.split_at(BLOCK_LEN);
        let (recs, h2) = rest.split_at(rest.len() - BLOCK_LEN);
        let records = Self::parse_records(recs, num_records, skip_len + BLOCK_LEN)?;
        let mut skip_ranges_hmac = [0u8; 16];
        skip_ranges_hmac.copy_from_slice(h1);
        let mut records_hmac = [0u8; 16];
        records_hmac.copy_from_slice(h2);
        Ok(Self {
            skip_ranges,
            skip_ranges_hmac,
            records,
            records_hmac,
        })
    }

    /// Decodes `n` records followed by zero padding to a block boundary; `bytes` must be
    /// exactly [`FetchData::records_len`] octets. `base` is their offset in the enclosing
    /// section, for error reports.
    pub fn parse_records(bytes: &[u8], n: u32, base: usize) -> Result<Vec<DataRecord>, WireError> {
        check_len(Self::NAME, bytes, Self::records_len(n)?)?;
        // records_len succeeded, so n * 25 fits.
        let (recs, pad) = bytes.split_at(n as usize * DataRecord::LEN);
        check_mbz(Self::NAME, pad, base + recs.len())?;
        let raw = <[raw::DataRecord]>::ref_from_bytes(recs).map_err(|_| WireError::Truncated {
            message: Self::NAME,
            needed: recs.len(),
            got: recs.len(),
        })?;
        Ok(raw.iter().map(DataRecord::from_raw).collect())
    }

    /// Appends records and zero padding to a block boundary.
    pub fn write_records(records: &[DataRecord], out: &mut Vec<u8>) {
        let start = out.len();
        for r in records {
            r.write_to(out);
        }
        let len = out.len() - start;
        out.resize(start + len.next_multiple_of(BLOCK_LEN), 0);
    }

    /// Appends the section.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        SkipRange::write_block(&self.skip_ranges, out);
        out.extend_from_slice(&self.skip_ranges_hmac);
        Self::write_records(&self.records, out);
        out.extend_from_slice(&self.records_hmac);
    }

    /// The encoding as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v);
        v
    }
}

super::impl_message!(
    StartSessions,
    StartAck,
    StopSessions,
    FetchSession,
    FetchAck
);
