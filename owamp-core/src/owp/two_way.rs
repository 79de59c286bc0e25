//! Two-way (TWAMP) session files, laid out as perfSONAR's twping writes them with `-F` and its
//! owstats reads them.
//!
//! The header is a version 3 header ([`super::header`]) whose version word also carries
//! [`TWO_WAY_FLAG`] (131 in all). Its stored request is the
//! session's Request-TW-Session in the Request-Session layout (RFC 4656 3.5; RFC 5357 3.5 adds
//! no field the file keeps), with both Conf-Sender and Conf-Receiver set, its HMACs zero, and
//! the sender's schedule slots. The sender's side writes: finished 1, next sequence number,
//! number of skip ranges, number of records and skip ranges offset all zero (readers count the
//! records from the file's length), records right after the header.
//!
//! Each record is [`RECORD_LEN`] octets: two 25-octet data records (RFC 4656 3.8), one for each
//! leg.
//!
//! | half | Seq Number | Send Error | Receive Error | Send Timestamp | Receive Timestamp | TTL |
//! |---|---|---|---|---|---|---|
//! | first | sender's | sender's | reflector's | sender's send | reflector's receive | Sender TTL |
//! | second | reflector's | reflector's | sender's | reflector's send | sender's receive | reply TTL |
//!
//! A packet that no reply answered has a zero reflector receive time; its first half keeps the
//! sequence number and send time, its second half is zero but for its error estimates (the
//! sender's) and TTL (255). The records follow the sender's sequence numbers, one per packet
//! sent (duplicates after the first reply to the same packet).

use std::io::{Read, Seek, SeekFrom, Write};

use super::error::OwpError;
use super::header::{SessionHeader, FINISHED_NORMAL, TWO_WAY_FLAG, VERSION};
use super::reader::{read_header, read_up_to};
use crate::session::twamp::TwoWayRecord;
use crate::time::{ErrorEstimate, OwampTime};
use crate::wire::{DataRecord, RequestSession};

/// Octets of one two-way record: two data records.
pub const RECORD_LEN: u64 = 2 * DataRecord::LEN as u64;

/// The TTL written in a lost packet's record (perfSONAR's).
const LOST_TTL: u8 = 255;

/// One packet of a two-way session as the session-sender saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwoWayEntry {
    /// A reply came back.
    Reply(TwoWayRecord),
    /// The packet was sent and no reply came back in time.
    Lost {
        /// The sender's sequence number.
        seq: u32,
        /// When it was sent.
        send_time: OwampTime,
        /// The sender's error estimate.
        send_error: ErrorEstimate,
    },
}

impl TwoWayEntry {
    /// The sender's sequence number.
    pub fn seq(&self) -> u32 {
        match self {
            Self::Reply(r) => r.sender_seq,
            Self::Lost { seq, .. } => *seq,
        }
    }

    /// When the packet was sent.
    pub fn send_time(&self) -> OwampTime {
        match self {
            Self::Reply(r) => r.send_time,
            Self::Lost { send_time, .. } => *send_time,
        }
    }

    /// The two 25-octet halves of the record.
    fn halves(&self) -> [DataRecord; 2] {
        match *self {
            Self::Reply(r) => [
                DataRecord {
                    seq: r.sender_seq,
                    send_error: r.send_error,
                    send_time: r.send_time,
                    recv_error: r.reflector_error,
                    recv_time: r.reflector_recv_time,
                    ttl: r.sender_ttl,
                },
                DataRecord {
                    seq: r.reflector_seq,
                    send_error: r.reflector_error,
                    send_time: r.reflector_send_time,
                    recv_error: r.recv_error,
                    recv_time: r.recv_time,
                    ttl: r.reply_ttl,
                },
            ],
            Self::Lost {
                seq,
                send_time,
                send_error,
            } => [
                DataRecord {
                    seq,
                    send_error,
                    send_time,
                    recv_error: send_error,
                    recv_time: OwampTime::ZERO,
                    ttl: LOST_TTL,
                },
                DataRecord {
                    seq: 0,
                    send_error,
                    send_time: OwampTime::ZERO,
                    recv_error: send_error,
                    recv_time: OwampTime::ZERO,
                    ttl: LOST_TTL,
                },
            ],
        }
    }

    /// The entry two halves describe.
    fn from_halves(a: &DataRecord, b: &DataRecord) -> Self {
        if a.is_lost() {
            return Self::Lost {
                seq: a.seq,
                send_time: a.send_time,
                send_error: a.send_error,
            };
        }
        Self::Reply(TwoWayRecord {
            sender_seq: a.seq,
            send_time: a.send_time,
            send_error: a.send_error,
            reflector_recv_time: a.recv_time,
            reflector_error: a.recv_error,
            sender_ttl: a.ttl,
            reflector_seq: b.seq,
            reflector_send_time: b.send_time,
            recv_time: b.recv_time,
            recv_error: b.recv_error,
            reply_ttl: b.ttl,
        })
    }
}

/// A two-way session file, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwoWayFile {
    /// The header (see the module docs for what the sender's side writes in it).
    pub header: SessionHeader,
    /// The packets, in file order.
    pub entries: Vec<TwoWayEntry>,
}

impl TwoWayFile {
    /// The replies, in file order.
    pub fn replies(&self) -> Vec<TwoWayRecord> {
        self.entries
            .iter()
            .filter_map(|e| match e {
                TwoWayEntry::Reply(r) => Some(*r),
                TwoWayEntry::Lost { .. } => None,
            })
            .collect()
    }

    /// The number of packets sent: the distinct sequence numbers of the records.
    pub fn sent(&self) -> u32 {
        let mut seqs: Vec<u32> = self.entries.iter().map(TwoWayEntry::seq).collect();
        seqs.sort_unstable();
        seqs.dedup();
        u32::try_from(seqs.len()).unwrap_or(u32::MAX)
    }

    /// The send times of the first and the last packet sent (lost ones included).
    pub fn send_span(&self) -> Option<(OwampTime, OwampTime)> {
        let times = self.entries.iter().map(TwoWayEntry::send_time);
        Some((times.clone().min()?, times.max()?))
    }
}

/// The header a two-way file of `request` gets (see the module docs).
pub fn header_for(request: &RequestSession) -> SessionHeader {
    let request = RequestSession {
        conf_sender: true,
        conf_receiver: true,
        hmac: [0; 16],
        slots_hmac: [0; 16],
        ..request.clone()
    };
    // No records counted and no skip ranges: both offsets but the records' stay zero.
    SessionHeader::records_first(request, Vec::new(), 0, FINISHED_NORMAL, 0)
}

/// Writes a whole two-way file: the header for `request` ([`header_for`]), then `entries` in
/// the order given.
pub fn encode_two_way<W: Write>(
    out: &mut W,
    request: &RequestSession,
    entries: &[TwoWayEntry],
) -> Result<(), OwpError> {
    if request.slots.is_empty() {
        return Err(OwpError::Layout(
            "cannot write: a two-way file needs the request's schedule slots".into(),
        ));
    }
    let header = header_for(request);
    out.write_all(&header.encode_header_as(VERSION | TWO_WAY_FLAG))?;
    let mut buf = Vec::with_capacity(RECORD_LEN as usize);
    for e in entries {
        buf.clear();
        for half in e.halves() {
            buf.extend_from_slice(&half.to_bytes());
        }
        out.write_all(&buf)?;
    }
    Ok(())
}

/// Reads a whole two-way file. A one-way file gives [`OwpError::OneWay`]. The records are as
/// many as fit whole between the records offset and the end of the records region (the file's
/// end, or the skip ranges when they follow); a partial last record is ignored, as the
/// reference ignores it.
pub fn read_two_way<R: Read + Seek>(mut inner: R) -> Result<TwoWayFile, OwpError> {
    let (header, file_len, two_way) = read_header(&mut inner)?;
    if !two_way {
        return Err(OwpError::OneWay);
    }
    let end = header.records_end(file_len).min(file_len);
    let count = end.saturating_sub(header.records_offset) / RECORD_LEN;
    inner.seek(SeekFrom::Start(header.records_offset))?;
    // count * RECORD_LEN <= file_len: the allocation is bounded by the file.
    let raw = read_up_to(&mut inner, count * RECORD_LEN)?;
    let mut entries = Vec::with_capacity(raw.len() / RECORD_LEN as usize);
    for (i, rec) in raw.chunks_exact(RECORD_LEN as usize).enumerate() {
        let offset = header.records_offset + i as u64 * RECORD_LEN;
        let truncated = || OwpError::Truncated {
            field: "two-way record",
            offset,
            needed: RECORD_LEN,
            available: file_len.saturating_sub(offset),
        };
        let (a, b) = rec.split_at(DataRecord::LEN);
        let a = DataRecord::parse(a).map_err(|_| truncated())?;
        let b = DataRecord::parse(b).map_err(|_| truncated())?;
        entries.push(TwoWayEntry::from_halves(&a, &b));
    }
    Ok(TwoWayFile { header, entries })
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::wire::{Slot, SlotKind, TypeP};

    fn request() -> RequestSession {
        RequestSession {
            conf_sender: false,
            conf_receiver: true,
            num_packets: 3,
            sender_port: 9463,
            receiver_port: 28074,
            sender_address: "127.0.0.1".parse().unwrap(),
            receiver_address: "127.0.0.1".parse().unwrap(),
            sid: crate::wire::SessionId([7; 16]),
            padding_length: 27,
            start_time: OwampTime::from_raw(1 << 40),
            timeout: crate::time::Interval::from_raw(1 << 32),
            type_p: TypeP::default(),
            hmac: [1; 16],
            slots: vec![Slot {
                kind: SlotKind::Exponential,
                mean: crate::time::Interval::from_raw(0x0ccc_cccc),
            }],
            slots_hmac: [2; 16],
        }
    }

    fn reply(seq: u32) -> TwoWayRecord {
        let t = |s: u64| OwampTime::from_raw((100 + s) << 32);
        TwoWayRecord {
            sender_seq: seq,
            send_time: t(0),
            send_error: ErrorEstimate::from_raw(1),
            reflector_recv_time: t(1),
            reflector_error: ErrorEstimate::from_raw(2),
            sender_ttl: 254,
            reflector_seq: seq + 10,
            reflector_send_time: t(2),
            recv_time: t(3),
            recv_error: ErrorEstimate::from_raw(3),
            reply_ttl: 253,
        }
    }

    #[test]
    fn the_layout_is_twpings() {
        let lost = TwoWayEntry::Lost {
            seq: 1,
            send_time: OwampTime::from_raw(5 << 32),
            send_error: ErrorEstimate::from_raw(1),
        };
        let entries = [TwoWayEntry::Reply(reply(0)), lost];
        let mut b = Vec::new();
        encode_two_way(&mut b, &request(), &entries).unwrap();
        // Header: 40 fixed octets, 112 of request, one slot, 16 of padding.
        assert_eq!(b.len(), 184 + 2 * 50);
        assert_eq!(&b[0..4], b"OwA\0");
        assert_eq!(b[4..8], 131u32.to_be_bytes());
        assert_eq!(b[8..12], 1u32.to_be_bytes());
        assert!(b[12..32].iter().all(|&x| x == 0));
        assert_eq!(b[32..40], 184u64.to_be_bytes());
        // Request-Session: command 1, IPv4, both endpoints configured.
        assert_eq!(b[40..44], [1, 4, 1, 1]);
        assert!(b[136..152].iter().all(|&x| x == 0), "HMAC zero");
        // The first half of the reply, then the second.
        assert_eq!(b[184..188], 0u32.to_be_bytes());
        assert_eq!(b[184 + 24], 254);
        assert_eq!(b[209..213], 10u32.to_be_bytes());
        assert_eq!(b[209 + 24], 253);
        // The lost packet: reflector receive time zero, second half zero but errors and TTL.
        assert_eq!(b[234..238], 1u32.to_be_bytes());
        assert!(b[250..258].iter().all(|&x| x == 0));
        assert_eq!(&b[259..267], &[0, 0, 0, 0, 0, 1, 0, 1]);

        let f = read_two_way(Cursor::new(&b)).unwrap();
        assert_eq!(f.entries, entries);
        assert_eq!(f.sent(), 2);
        assert_eq!(f.replies(), vec![reply(0)]);
        assert_eq!(
            f.send_span(),
            Some((OwampTime::from_raw(5 << 32), reply(0).send_time))
        );
        assert!(f.header.request.conf_sender && f.header.request.conf_receiver);
        assert_eq!(f.header.request.slots, request().slots);
    }

    #[test]
    fn one_way_and_two_way_files_are_told_apart() {
        let mut b = Vec::new();
        encode_two_way(&mut b, &request(), &[TwoWayEntry::Reply(reply(0))]).unwrap();
        assert!(matches!(
            super::super::OwpReader::new(Cursor::new(&b)),
            Err(OwpError::TwoWay)
        ));
        let one = super::super::to_bytes(&header_for(&request()), &[]).unwrap();
        assert!(matches!(
            read_two_way(Cursor::new(&one)),
            Err(OwpError::OneWay)
        ));
        // A partial last record is not read; a file cut inside the header is an error.
        b.truncate(b.len() - 1);
        assert!(read_two_way(Cursor::new(&b)).unwrap().entries.is_empty());
        b.truncate(100);
        assert!(read_two_way(Cursor::new(&b)).is_err());
        // Other version words are refused.
        let mut v = one.clone();
        v[7] = 0x84;
        assert!(matches!(
            read_two_way(Cursor::new(&v)),
            Err(OwpError::UnsupportedVersion { version: 0x84 })
        ));
    }
}
