//! The fixed header of a version 3 .owp file.
//!
//! Layout (octet offsets, all integers big-endian), as perfSONAR owamp writes it:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic "OwA\0" |
//! | 4 | 4 | version (3; 3 + 128 in a two-way file, see [`super::two_way`]) |
//! | 8 | 4 | finished (0 error, 1 normal, 2 incomplete) |
//! | 12 | 4 | next sequence number |
//! | 16 | 4 | number of skip ranges |
//! | 20 | 4 | number of data records |
//! | 24 | 8 | offset of the skip ranges |
//! | 32 | 8 | offset of the data records |
//! | 40 | 112 | the Request-Session message (RFC 4656 3.5), HMAC field zero |
//! | 152 | 16 each | the schedule slots |
//! | ... | 16 | integrity zero padding |
//!
//! The skip ranges (8 octets: first and last skipped sequence number) and the 25-octet data
//! records (RFC 4656 3.8) follow, in either order; the two offsets say where.

use super::error::OwpError;
use crate::wire::{DataRecord, RequestSession, SkipRange, Slot};

/// The four magic octets that start every .owp file.
pub const MAGIC: [u8; 4] = *b"OwA\0";
/// The only file version read and written here.
pub const VERSION: u32 = 3;
/// Added to the version word of a two-way (TWAMP) file, as perfSONAR's twping writes it.
pub const TWO_WAY_FLAG: u32 = 128;
/// Octets before the stored Request-Session.
pub const FIXED_LEN: u64 = 40;
/// Offset of the first schedule slot.
pub const SLOTS_OFFSET: u64 = FIXED_LEN + RequestSession::FIXED_LEN as u64;
/// Octets of one skip range.
pub const SKIP_RANGE_LEN: u64 = SkipRange::LEN as u64;
/// Octets of one data record.
pub const RECORD_LEN: u64 = DataRecord::LEN as u64;

/// "Finished" value of a session that ended normally.
pub const FINISHED_NORMAL: u32 = 1;
/// "Finished" value of a session whose Stop-Sessions never came.
pub const FINISHED_INCOMPLETE: u32 = 2;

/// Everything in a .owp file but the data records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionHeader {
    /// The "finished" word: 0 error, 1 normal, 2 incomplete.
    pub finished: u32,
    /// The sequence number after the last one sent.
    pub next_seqno: u32,
    /// The "number of data records" word; only trusted when `finished` is normal.
    pub num_records: u32,
    /// Offset of the skip ranges (may be zero when there are none).
    pub skip_ranges_offset: u64,
    /// Offset of the first data record.
    pub records_offset: u64,
    /// The stored Request-Session with its slots; its HMAC fields are zero in files.
    pub request: RequestSession,
    /// The skip ranges.
    pub skip_ranges: Vec<SkipRange>,
}

impl SessionHeader {
    /// The header of a stored session's file (RFC 4656 3.8 stored form; the request's HMAC
    /// fields are zero in files, and Finished maps to the file's 0 / 1 / 2).
    pub fn of_stored(s: &crate::io::StoredSession) -> Self {
        let finished = Self::finished_word(s.finished);
        let request = RequestSession {
            hmac: [0; 16],
            slots_hmac: [0; 16],
            ..s.request.clone()
        };
        let n = u32::try_from(s.records.len()).unwrap_or(u32::MAX);
        Self::new(request, s.skips.clone(), n, finished, s.next_seqno)
    }

    /// The stored session this header and `records` describe (the inverse of
    /// [`of_stored`](Self::of_stored)).
    pub fn into_stored(self, records: Vec<crate::wire::DataRecord>) -> crate::io::StoredSession {
        let finished = match self.finished {
            FINISHED_NORMAL => crate::io::Finished::Normal,
            FINISHED_INCOMPLETE => crate::io::Finished::Incomplete,
            _ => crate::io::Finished::No,
        };
        crate::io::StoredSession {
            request: self.request,
            finished,
            next_seqno: self.next_seqno,
            skips: self.skip_ranges,
            records,
        }
    }

    /// A header laid out as perfSONAR owamp lays out a new file: skip ranges first when there are
    /// any, otherwise data records first with the skip offset just past them (or zero when there
    /// are no records either).
    pub fn new(
        request: RequestSession,
        skip_ranges: Vec<SkipRange>,
        num_records: u32,
        finished: u32,
        next_seqno: u32,
    ) -> Self {
        let mut h = Self::unplaced(request, skip_ranges, num_records, finished, next_seqno);
        let hdr = h.header_len();
        if h.skip_ranges.is_empty() {
            h.records_offset = hdr;
            if num_records > 0 {
                h.skip_ranges_offset = hdr + RECORD_LEN * u64::from(num_records);
            }
        } else {
            h.skip_ranges_offset = hdr;
            h.records_offset = hdr + SKIP_RANGE_LEN * h.skip_ranges.len() as u64;
        }
        h
    }

    /// A header laid out for records written as they come ([`StreamWriter`](super::StreamWriter)):
    /// the data records right after the header, the skip ranges after them (the reference's
    /// daemon lays out its files the same way when it writes records during the session).
    pub fn records_first(
        request: RequestSession,
        skip_ranges: Vec<SkipRange>,
        num_records: u32,
        finished: u32,
        next_seqno: u32,
    ) -> Self {
        let mut h = Self::unplaced(request, skip_ranges, num_records, finished, next_seqno);
        h.records_offset = h.header_len();
        if num_records > 0 || !h.skip_ranges.is_empty() {
            h.skip_ranges_offset = h.records_offset + RECORD_LEN * u64::from(num_records);
        }
        h
    }

    /// The fields, with both offsets still zero.
    fn unplaced(
        request: RequestSession,
        skip_ranges: Vec<SkipRange>,
        num_records: u32,
        finished: u32,
        next_seqno: u32,
    ) -> Self {
        Self {
            finished,
            next_seqno,
            num_records,
            skip_ranges_offset: 0,
            records_offset: 0,
            request,
            skip_ranges,
        }
    }

    /// The file's "finished" word for a session's state.
    pub fn finished_word(f: crate::io::Finished) -> u32 {
        match f {
            crate::io::Finished::No => 0,
            crate::io::Finished::Normal => FINISHED_NORMAL,
            crate::io::Finished::Incomplete => FINISHED_INCOMPLETE,
        }
    }

    /// Octets of the header proper: fixed part, Request-Session, slots and zero padding.
    pub fn header_len(&self) -> u64 {
        FIXED_LEN + self.request.encoded_len() as u64
    }

    /// The schedule slots.
    pub fn slots(&self) -> &[Slot] {
        &self.request.slots
    }

    /// Whether the session ended normally.
    pub fn is_finished(&self) -> bool {
        self.finished == FINISHED_NORMAL
    }

    /// Encodes the header proper (without skip ranges and records).
    pub fn encode_header(&self) -> Vec<u8> {
        self.encode_header_as(VERSION)
    }

    /// Encodes the header proper with `version` in the version word.
    pub(crate) fn encode_header_as(&self, version: u32) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.header_len() as usize);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&version.to_be_bytes());
        b.extend_from_slice(&self.finished.to_be_bytes());
        b.extend_from_slice(&self.next_seqno.to_be_bytes());
        let nskips = u32::try_from(self.skip_ranges.len()).unwrap_or(u32::MAX);
        b.extend_from_slice(&nskips.to_be_bytes());
        b.extend_from_slice(&self.num_records.to_be_bytes());
        b.extend_from_slice(&self.skip_ranges_offset.to_be_bytes());
        b.extend_from_slice(&self.records_offset.to_be_bytes());
        self.request.write_to(&mut b);
        b
    }

    /// The offset just past the data records region and the number of records the statistics
    /// read from `begin`: up to the skip ranges when they follow the records, else to the end of
    /// the file (as perfSONAR's OWPStatsParse does).
    pub(crate) fn records_end(&self, file_len: u64) -> u64 {
        if self.skip_ranges_offset > self.records_offset {
            self.skip_ranges_offset
        } else {
            file_len
        }
    }
}

/// The fixed 40 octets, before the Request-Session.
pub(crate) struct Fixed {
    /// The version word carries [`TWO_WAY_FLAG`]: records of two halves.
    pub two_way: bool,
    pub finished: u32,
    pub next_seqno: u32,
    pub num_skips: u32,
    pub num_records: u32,
    pub skip_oset: u64,
    pub rec_oset: u64,
}

/// Takes `len` octets at `offset` of `bytes` (which holds the file from offset 0), or says which
/// field the file is too short for.
pub(crate) fn field<'a>(
    bytes: &'a [u8],
    file_len: u64,
    offset: u64,
    len: u64,
    name: &'static str,
) -> Result<&'a [u8], OwpError> {
    let trunc = || OwpError::Truncated {
        field: name,
        offset,
        needed: len,
        available: file_len.saturating_sub(offset),
    };
    let start = usize::try_from(offset).map_err(|_| trunc())?;
    let end = usize::try_from(offset.saturating_add(len)).map_err(|_| trunc())?;
    bytes.get(start..end).ok_or_else(trunc)
}

fn be32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// Decodes the fixed 40 octets from the start of the file.
pub(crate) fn parse_fixed(bytes: &[u8], file_len: u64) -> Result<Fixed, OwpError> {
    let magic = field(bytes, file_len, 0, 4, "magic")?;
    if magic != MAGIC {
        let mut found = [0u8; 4];
        found.copy_from_slice(magic);
        return Err(OwpError::BadMagic { found });
    }
    let version = be32(field(bytes, file_len, 4, 4, "version")?);
    if version & !TWO_WAY_FLAG != VERSION {
        return Err(OwpError::UnsupportedVersion { version });
    }
    Ok(Fixed {
        two_way: version & TWO_WAY_FLAG != 0,
        finished: be32(field(bytes, file_len, 8, 4, "finished")?),
        next_seqno: be32(field(bytes, file_len, 12, 4, "next seqno")?),
        num_skips: be32(field(bytes, file_len, 16, 4, "number of skip ranges")?),
        num_records: be32(field(bytes, file_len, 20, 4, "number of records")?),
        skip_oset: be64(field(bytes, file_len, 24, 8, "skip ranges offset")?),
        rec_oset: be64(field(bytes, file_len, 32, 8, "records offset")?),
    })
}

/// The Number of Schedule Slots field of the stored Request-Session (file offset 44).
pub(crate) fn request_num_slots(bytes: &[u8], file_len: u64) -> Result<u32, OwpError> {
    Ok(be32(field(
        bytes,
        file_len,
        FIXED_LEN + 4,
        4,
        "number of slots",
    )?))
}

/// Where the header proper ends, as the reference derives it from the two offsets.
pub(crate) fn header_end(fixed: &Fixed) -> u64 {
    let lo = fixed.skip_oset.min(fixed.rec_oset);
    if lo == 0 {
        fixed.skip_oset.max(fixed.rec_oset)
    } else {
        lo
    }
}

/// Checks the offsets and counts against each other and the file size, before anything sized by
/// them is read or allocated.
pub(crate) fn check_layout(fixed: &Fixed, num_slots: u32, file_len: u64) -> Result<u64, OwpError> {
    let hdr_end = header_end(fixed);
    let slot_bytes = hdr_end.saturating_sub(SLOTS_OFFSET);
    if hdr_end < SLOTS_OFFSET + 16 || slot_bytes % 16 != 0 {
        return Err(OwpError::Layout(format!(
            "header end {hdr_end} (from the offsets at 24 and 32) leaves no whole slots and padding after offset {SLOTS_OFFSET}"
        )));
    }
    let file_slots = slot_bytes / 16 - 1;
    if file_slots != u64::from(num_slots) {
        return Err(OwpError::Layout(format!(
            "the header holds {file_slots} slots but Request-Session (offset 44) says {num_slots}"
        )));
    }
    if hdr_end > file_len {
        return Err(OwpError::Truncated {
            field: "schedule slots",
            offset: SLOTS_OFFSET,
            needed: slot_bytes,
            available: file_len.saturating_sub(SLOTS_OFFSET),
        });
    }
    if fixed.rec_oset < hdr_end {
        return Err(OwpError::Layout(format!(
            "records offset {} lies inside the header (which ends at {hdr_end})",
            fixed.rec_oset
        )));
    }
    if fixed.rec_oset > file_len {
        return Err(OwpError::Truncated {
            field: "data records",
            offset: fixed.rec_oset,
            needed: 0,
            available: 0,
        });
    }
    let record_len = if fixed.two_way {
        super::two_way::RECORD_LEN
    } else {
        RECORD_LEN
    };
    if u64::from(fixed.num_records) > (file_len - fixed.rec_oset) / record_len {
        return Err(OwpError::Layout(format!(
            "number of records {} (offset 20) is larger than the {} octets from offset {} hold",
            fixed.num_records,
            file_len - fixed.rec_oset,
            fixed.rec_oset
        )));
    }
    if fixed.num_skips > 0 {
        let need = SKIP_RANGE_LEN * u64::from(fixed.num_skips);
        if fixed.skip_oset < hdr_end {
            return Err(OwpError::Layout(format!(
                "skip ranges offset {} lies inside the header (which ends at {hdr_end})",
                fixed.skip_oset
            )));
        }
        if fixed.skip_oset.saturating_add(need) > file_len {
            return Err(OwpError::Truncated {
                field: "skip ranges",
                offset: fixed.skip_oset,
                needed: need,
                available: file_len.saturating_sub(fixed.skip_oset),
            });
        }
    }
    Ok(hdr_end)
}

/// Decodes the stored Request-Session with its slots; `bytes` holds the file up to `hdr_end`.
///
/// Like the reference, which writes some of these octets from uninitialised memory, the MBZ
/// octets, the unused octets after IPv4 addresses and the slots' MBZ octets are ignored; the
/// integrity padding after the slots must be zero.
pub(crate) fn parse_request(
    bytes: &[u8],
    file_len: u64,
    hdr_end: u64,
) -> Result<RequestSession, OwpError> {
    let raw = field(
        bytes,
        file_len,
        FIXED_LEN,
        hdr_end - FIXED_LEN,
        "Request-Session",
    )?;
    let mut m = raw.to_vec();
    m[1] &= 0x0f;
    if m[1] == 4 {
        m[20..32].fill(0);
        m[36..48].fill(0);
    }
    m[88..96].fill(0);
    let slots_end = m.len() - 16;
    for slot in m[RequestSession::FIXED_LEN..slots_end].chunks_exact_mut(16) {
        slot[1..8].fill(0);
    }
    // The reference refuses a request that configures neither endpoint.
    if m[2] == 0 && m[3] == 0 {
        return Err(OwpError::Invalid {
            field: "Conf-Sender/Conf-Receiver",
            offset: FIXED_LEN + 2,
            value: 0,
        });
    }
    let req = RequestSession::parse(&m).map_err(OwpError::Request)?;
    if let Some(pos) = req.slots_hmac.iter().position(|&x| x != 0) {
        return Err(OwpError::Invalid {
            field: "integrity zero padding",
            offset: hdr_end - 16 + pos as u64,
            value: u64::from(req.slots_hmac[pos]),
        });
    }
    Ok(req)
}

/// Decodes skip ranges from `bytes`, which holds exactly their octets.
pub(crate) fn parse_skips(bytes: &[u8]) -> Vec<SkipRange> {
    bytes
        .chunks_exact(SKIP_RANGE_LEN as usize)
        .map(|c| SkipRange {
            first: be32(&c[0..4]),
            last: be32(&c[4..8]),
        })
        .collect()
}

/// Encodes one skip range.
pub(crate) fn encode_skip(s: &SkipRange) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0..4].copy_from_slice(&s.first.to_be_bytes());
    b[4..8].copy_from_slice(&s.last.to_be_bytes());
    b
}

/// Checks a decoded record the way the reference does: both error estimates need a non-zero
/// multiplier (RFC 4656 4.1.2).
pub(crate) fn check_record(rec: &DataRecord, index: u64, offset: u64) -> Result<(), OwpError> {
    if rec.send_error.raw() & 0xff == 0 {
        return Err(OwpError::InvalidRecord {
            index,
            offset: offset + 4,
            field: "send error estimate",
        });
    }
    if rec.recv_error.raw() & 0xff == 0 {
        return Err(OwpError::InvalidRecord {
            index,
            offset: offset + 6,
            field: "receive error estimate",
        });
    }
    Ok(())
}
