//! The receiving side of a test session (RFC 4656 4.2), without clock or socket.
//!
//! The caller hands each datagram to [`Receiver::receive`] with its receive timestamp, and
//! calls [`Receiver::poll`] from a timer (see [`Receiver::next_deadline`]) so that missing
//! packets are declared lost on time. [`Receiver::finish`] produces the session's records.
//!
//! # Behaviour, as in the reference implementation (owamp 5.2.3)
//!
//! - The caller drops datagrams whose source is not the session's sender (address and port)
//!   before handing them over, as the reference does.
//! - A datagram must have exactly the length of a test packet of the session; in
//!   authenticated and encrypted modes its HMAC must match. MBZ octets are ignored.
//! - A packet is declared lost once the receiver's clock passes its scheduled send time plus
//!   the session timeout; a packet arriving after that is dropped, even a duplicate.
//! - A packet is discarded when its send timestamp differs from its receive time, or from its
//!   scheduled send time, by more than the timeout (RFC 4656 4.2).
//! - Every valid arrival is recorded, duplicates included, so the records come in the order in
//!   which packets were accepted, with each lost-packet record (receive time zero, send time =
//!   scheduled time, TTL 255) where the packet was declared lost. The reference stores its
//!   session file, and serves Fetch-Session, in that order: it is not sorted by sequence number.
//!
//! # Memory
//!
//! Nothing is allocated from a sequence number in a packet beyond a fixed bound. State grows
//! with: the packets between the oldest one not yet declared lost and the newest one that could
//! still be valid (16 octets each; packets scheduled within about three timeouts, and at most
//! `max_window`, by default [`DEFAULT_MAX_WINDOW`]: a packet further ahead is dropped, since
//! the timeout and the schedule come from the peer's request and a schedule of zero gaps puts
//! every packet of the session within the timeout), and the records (one per accepted packet
//! or lost packet, at most the packet count, plus at most `max_duplicates` duplicate records,
//! by default the packet count or 4096 if more; further duplicates are counted but not
//! recorded).

use std::collections::VecDeque;

use super::packet::PacketProtection;
use super::schedule::ScheduleCursor;
use super::SessionParams;
use crate::io::{Finished, SessionEnd, StoredSession};
use crate::time::{ErrorEstimate, Interval, OwampTime};
use crate::wire::{DataRecord, RequestSession, TestPacket};

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum DropReason {
    /// Its length is not that of a test packet of this session (mode and padding).
    #[error("wrong length for a test packet of this session")]
    WrongLength,
    /// The HMAC does not match (authenticated and encrypted modes).
    #[error("HMAC mismatch")]
    BadHmac,
    /// The sender's error estimate has a zero multiplier, which RFC 4656 4.1.2 forbids.
    #[error("invalid error estimate")]
    InvalidErrorEstimate,
    /// The sequence number is not below the session's packet count.
    #[error("sequence number beyond the packet count")]
    SeqOutOfRange,
    /// The packet had already been declared lost (or its duplicates are no longer accepted).
    #[error("packet arrived after its loss timeout")]
    TooLate,
    /// Send and receive timestamps differ by more than the timeout (RFC 4656 4.2).
    #[error("send and receive timestamps differ by more than the timeout")]
    ClockMismatch,
    /// The send timestamp differs from the scheduled send time by more than the timeout
    /// (RFC 4656 4.2).
    #[error("send timestamp too far from the scheduled send time")]
    OffSchedule,
    /// The packet is `max_window` or more packets ahead of the oldest one outstanding (see
    /// [`Receiver::with_max_window`]).
    #[error("sequence number too far ahead of the oldest outstanding packet")]
    WindowFull,
}

/// Datagrams dropped, per reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DropCounts {
    /// [`DropReason::WrongLength`].
    pub wrong_length: u64,
    /// [`DropReason::BadHmac`].
    pub bad_hmac: u64,
    /// [`DropReason::InvalidErrorEstimate`].
    pub invalid_error_estimate: u64,
    /// [`DropReason::SeqOutOfRange`].
    pub seq_out_of_range: u64,
    /// [`DropReason::TooLate`].
    pub too_late: u64,
    /// [`DropReason::ClockMismatch`].
    pub clock_mismatch: u64,
    /// [`DropReason::WindowFull`].
    pub window_full: u64,
    /// [`DropReason::OffSchedule`].
    pub off_schedule: u64,
}

impl DropCounts {
    fn count(&mut self, r: DropReason) {
        let c = match r {
            DropReason::WrongLength => &mut self.wrong_length,
            DropReason::BadHmac => &mut self.bad_hmac,
            DropReason::InvalidErrorEstimate => &mut self.invalid_error_estimate,
            DropReason::SeqOutOfRange => &mut self.seq_out_of_range,
            DropReason::TooLate => &mut self.too_late,
            DropReason::ClockMismatch => &mut self.clock_mismatch,
            DropReason::WindowFull => &mut self.window_full,
            DropReason::OffSchedule => &mut self.off_schedule,
        };
        *c += 1;
    }

    /// All dropped datagrams.
    pub fn total(&self) -> u64 {
        self.wrong_length
            + self.bad_hmac
            + self.invalid_error_estimate
            + self.seq_out_of_range
            + self.too_late
            + self.clock_mismatch
            + self.window_full
            + self.off_schedule
    }
}

/// Counters of a receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReceiverStats {
    /// Distinct packets accepted.
    pub received: u64,
    /// Valid arrivals of a packet already accepted.
    pub duplicates: u64,
    /// Duplicates counted but not recorded because `max_duplicates` records were kept.
    pub duplicates_unrecorded: u64,
    /// Packets declared lost so far.
    pub lost: u64,
    /// Datagrams dropped.
    pub drops: DropCounts,
}

/// A datagram accepted as a test packet of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// Its sequence number.
    pub seq: u32,
    /// Whether this sequence number had been accepted before.
    pub duplicate: bool,
}

/// Why a session's records cannot be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FinishError {
    /// The Next Seqno of Stop-Sessions is above the packet count.
    #[error("Next Seqno {next_seqno} exceeds the packet count {count}")]
    NextSeqnoTooLarge {
        /// The Next Seqno received.
        next_seqno: u32,
        /// Packets in the session.
        count: u32,
    },
    /// A packet was received whose sequence number is not below the sender's Next Seqno: the
    /// session is invalid (the reference discards it).
    #[error("packet {seq} was received but the sender reports Next Seqno {next_seqno}")]
    ReceivedBeyondNextSeqno {
        /// The offending sequence number.
        seq: u32,
        /// The Next Seqno received.
        next_seqno: u32,
    },
}

/// A packet not yet declared lost or finished.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// Scheduled send offset from the start time.
    offset: Interval,
    hit: bool,
}

/// The receiver of one test session.
#[derive(Debug, Clone)]
pub struct Receiver {
    params: SessionParams,
    protection: PacketProtection,
    /// `None` when the padding does not fit in memory: then no datagram can match.
    packet_len: Option<usize>,
    /// Generates the offsets of `begin + window.len()` onwards.
    cursor: ScheduleCursor,
    /// Sequence number of `window[0]`: every packet below it is finished.
    begin: u32,
    window: VecDeque<Pending>,
    /// Records not yet taken ([`take_records`](Receiver::take_records)).
    records: Vec<DataRecord>,
    /// What was taken, as far as [`finish`](Receiver::finish) needs to know.
    taken: Taken,
    /// The highest sequence number of a packet recorded as received.
    max_received: Option<u32>,
    max_window: usize,
    max_duplicates: u64,
    duplicates_recorded: u64,
    stats: ReceiverStats,
}

/// A summary of the records handed out by [`Receiver::take_records`]: enough to tell at the
/// end whether any of them must be removed (RFC 4656 3.8, see [`Prune`]).
#[derive(Debug, Clone, Copy, Default)]
struct Taken {
    count: u64,
    /// The highest sequence number among the lost-packet records taken.
    lost_max_seq: Option<u32>,
    /// The latest send time among the lost-packet records taken.
    lost_max_send: u64,
}

/// Which records already handed out must go once the session is over (RFC 4656 3.8): the
/// lost-packet records at or past the sender's Next-Seqno and, when the sender's Next-Seqno
/// is unknown, those of packets scheduled less than a timeout before the end.
///
/// Only lost-packet records are ever removed; a packet received is always kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prune {
    /// Records numbered at or past this go (lost ones only: a received one there makes the
    /// session incomplete instead).
    pub below: u32,
    /// When set, lost-packet records of packets scheduled after this time go too.
    pub lost_sent_by: Option<OwampTime>,
}

impl Prune {
    /// Whether `r` stays.
    pub fn keeps(&self, r: &DataRecord) -> bool {
        if !r.is_lost() {
            return true;
        }
        r.seq < self.below && !matches!(self.lost_sent_by, Some(t) if r.send_time.raw() > t.raw())
    }
}

/// How a receive session whose records were handed out as they came
/// ([`Receiver::take_records`]) ends: what the file header says, the last records, and which
/// records already handed out must be removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEnd {
    /// The session.
    pub sid: crate::wire::SessionId,
    /// Finished normally, or incomplete.
    pub finished: Finished,
    /// The sender's Next-Seqno (zero when incomplete).
    pub next_seqno: u32,
    /// The sender's skip ranges (none when incomplete).
    pub skips: Vec<crate::wire::SkipRange>,
    /// The records not handed out yet, in order, to follow the others.
    pub tail: Vec<DataRecord>,
    /// `Some` when records already handed out must be removed: rare (a sender that was
    /// more than a loss timeout behind its schedule when it stopped), so a file is rewritten
    /// only then.
    pub prune: Option<Prune>,
}

/// Send Error Estimate of a lost-packet record: unsynchronized, multiplier 1, scale 0, as the
/// reference writes.
const LOST_SEND_ERROR: ErrorEstimate = ErrorEstimate::from_raw(0x0001);

/// Packets tracked by default between the oldest outstanding one and the newest one accepted
/// (16 octets each): far more than a session at owping's rates keeps in flight within a loss
/// timeout.
pub const DEFAULT_MAX_WINDOW: usize = 1 << 20;

/// Duplicate records kept by default even in short sessions.
const DEFAULT_MIN_DUPLICATES: u64 = 4096;

/// TTL recorded for a lost packet, and the value for "unknown".
pub const TTL_UNKNOWN: u8 = 255;

impl Receiver {
    /// A receiver for the session described by `params`, whose packets are protected as
    /// `protection` says. By default it records at most as many duplicates as the session
    /// has packets, or 4096 if that is more.
    pub fn new(params: SessionParams, protection: PacketProtection) -> Self {
        let packet_len = protection.packet_len(params.padding);
        let cursor = ScheduleCursor::new(&params.schedule);
        let max_duplicates = u64::from(params.schedule.count()).max(DEFAULT_MIN_DUPLICATES);
        let mut r = Self {
            params,
            protection,
            packet_len,
            cursor,
            begin: 0,
            window: VecDeque::new(),
            records: Vec::new(),
            taken: Taken::default(),
            max_received: None,
            max_window: DEFAULT_MAX_WINDOW,
            max_duplicates,
            duplicates_recorded: 0,
            stats: ReceiverStats::default(),
        };
        r.fill_front();
        r
    }

    /// Caps the number of packets tracked at once (at least one): a packet that many or more
    /// ahead of the oldest one outstanding is dropped ([`DropReason::WindowFull`]).
    pub fn with_max_window(mut self, max: usize) -> Self {
        self.max_window = max.max(1);
        self
    }

    /// Caps the number of duplicate records kept (duplicates beyond are only counted).
    pub fn with_max_duplicates(mut self, max: u64) -> Self {
        self.max_duplicates = max;
        self
    }

    /// The session parameters.
    pub fn params(&self) -> &SessionParams {
        &self.params
    }

    /// Octets of a test packet of this session, or `None` when its padding does not fit in
    /// memory (then no datagram can match).
    pub fn packet_len(&self) -> Option<usize> {
        self.packet_len
    }

    /// The counters so far.
    pub fn stats(&self) -> &ReceiverStats {
        &self.stats
    }

    /// The records so far and not yet taken, in the order the reference would store them.
    pub fn records(&self) -> &[DataRecord] {
        &self.records
    }

    /// Hands out the records so far (in order), so that they can be written out as they
    /// come and the receiver's memory stays bounded whatever the session's length. The end
    /// of the session then comes as a [`StreamEnd`] ([`finish_stream`](Self::finish_stream)).
    pub fn take_records(&mut self) -> Vec<DataRecord> {
        let out = std::mem::take(&mut self.records);
        self.taken.count += out.len() as u64;
        for r in out.iter().filter(|r| r.is_lost()) {
            self.taken.lost_max_seq = self.taken.lost_max_seq.max(Some(r.seq));
            self.taken.lost_max_send = self.taken.lost_max_send.max(r.send_time.raw());
        }
        out
    }

    /// Records taken with [`take_records`](Self::take_records) so far.
    pub fn records_taken(&self) -> u64 {
        self.taken.count
    }

    /// Whether every packet has been received or declared lost.
    pub fn is_complete(&self) -> bool {
        self.window.is_empty()
    }

    /// The time after which [`poll`](Self::poll) will declare the oldest outstanding packet
    /// lost (its scheduled send time plus the timeout), or `None` when none is outstanding.
    pub fn next_deadline(&self) -> Option<OwampTime> {
        self.window.front().map(|p| self.deadline(p.offset))
    }

    fn expected(&self, offset: Interval) -> OwampTime {
        self.params.start.saturating_add_interval(offset)
    }

    fn deadline(&self, offset: Interval) -> OwampTime {
        self.expected(offset)
            .saturating_add_interval(self.params.timeout)
    }

    /// Keeps the window non-empty while packets remain, so the next deadline is known.
    fn fill_front(&mut self) {
        if self.window.is_empty() {
            if let Some(p) = self.cursor.next(&self.params.schedule) {
                self.window.push_back(Pending {
                    offset: p.offset,
                    hit: false,
                });
            }
        }
    }

    /// Pops the oldest outstanding packet, recording it as lost if it never arrived.
    fn pop_front(&mut self, recv_error: ErrorEstimate) {
        if let Some(p) = self.window.pop_front() {
            if !p.hit {
                self.push_lost(self.begin, p.offset, recv_error);
            }
            self.begin = self.begin.saturating_add(1);
        }
    }

    fn push_lost(&mut self, seq: u32, offset: Interval, recv_error: ErrorEstimate) {
        self.stats.lost += 1;
        self.records.push(DataRecord {
            seq,
            send_error: LOST_SEND_ERROR,
            send_time: self.expected(offset),
            recv_error,
            recv_time: OwampTime::from_raw(0),
            ttl: TTL_UNKNOWN,
        });
    }

    /// Declares lost every outstanding packet whose scheduled send time plus the timeout is
    /// before `now`. `recv_error` is the receiver's current error estimate, recorded in the
    /// lost-packet records as the reference does.
    pub fn poll(&mut self, now: OwampTime, recv_error: ErrorEstimate) {
        while let Some(p) = self.window.front() {
            if self.deadline(p.offset) >= now {
                break;
            }
            self.pop_front(recv_error);
            self.fill_front();
        }
    }

    /// Handles one datagram received at `recv_time` with the given TTL or hop limit
    /// ([`TTL_UNKNOWN`] if unknown) and the receiver's error estimate. Missing packets due by
    /// `recv_time` are declared lost first, as by [`poll`](Self::poll).
    pub fn receive(
        &mut self,
        datagram: &[u8],
        recv_time: OwampTime,
        recv_error: ErrorEstimate,
        ttl: u8,
    ) -> Result<Accepted, DropReason> {
        self.poll(recv_time, recv_error);
        let r = self.accept(datagram, recv_time, recv_error, ttl);
        match r {
            Ok(a) if a.duplicate => self.stats.duplicates += 1,
            Ok(_) => self.stats.received += 1,
            Err(reason) => self.stats.drops.count(reason),
        }
        r
    }

    fn accept(
        &mut self,
        datagram: &[u8],
        recv_time: OwampTime,
        recv_error: ErrorEstimate,
        ttl: u8,
    ) -> Result<Accepted, DropReason> {
        if Some(datagram.len()) != self.packet_len {
            return Err(DropReason::WrongLength);
        }
        // Decrypt a copy of the header: the caller's buffer stays as received.
        let header_len = self.protection.header_len();
        let mut head = [0u8; TestPacket::AUTH_LEN];
        let head = head.get_mut(..header_len).ok_or(DropReason::WrongLength)?;
        head.copy_from_slice(datagram.get(..header_len).ok_or(DropReason::WrongLength)?);
        if let PacketProtection::Sealed(crypto) = &self.protection {
            // MBZ octets are ignored, as owamp 5.2.3 does; the HMAC covers those it encrypts.
            crypto.open(head).map_err(|_| DropReason::BadHmac)?;
        }
        let (seq, send_time, send_error) = self
            .protection
            .read_fields(head)
            .ok_or(DropReason::WrongLength)?;
        // RFC 4656 4.1.2: a zero multiplier is not a valid error estimate.
        if !send_error.is_valid() {
            return Err(DropReason::InvalidErrorEstimate);
        }
        if seq >= self.params.schedule.count() {
            return Err(DropReason::SeqOutOfRange);
        }
        if seq < self.begin {
            return Err(DropReason::TooLate);
        }
        let timeout = self.params.timeout.raw();
        // RFC 4656 4.2: discard if the send timestamp is more than the timeout in the past or
        // future of the receive time...
        if send_time.raw().abs_diff(recv_time.raw()) > timeout {
            return Err(DropReason::ClockMismatch);
        }
        // ... or more than the timeout from the scheduled send time. Scheduled times grow with
        // the sequence number, so extending the window stops at the first packet scheduled
        // after send_time + timeout: later packets cannot match either. With the check above,
        // every packet held is scheduled before recv_time + 2 * timeout.
        let idx = (seq - self.begin) as usize;
        while self.window.len() <= idx {
            // The schedule and the timeout are the peer's (a schedule of zero gaps puts every
            // packet on schedule): bound what one packet can make us hold.
            if self.window.len() >= self.max_window {
                return Err(DropReason::WindowFull);
            }
            let p = self
                .cursor
                .next(&self.params.schedule)
                .ok_or(DropReason::SeqOutOfRange)?;
            self.window.push_back(Pending {
                offset: p.offset,
                hit: false,
            });
            if self.expected(p.offset).raw() > send_time.raw().saturating_add(timeout) {
                return Err(DropReason::OffSchedule);
            }
        }
        let offset = self.window.get(idx).ok_or(DropReason::TooLate)?.offset;
        if send_time.raw().abs_diff(self.expected(offset).raw()) > timeout {
            return Err(DropReason::OffSchedule);
        }
        let duplicate = self.window.get(idx).is_some_and(|p| p.hit);
        if duplicate {
            if self.duplicates_recorded >= self.max_duplicates {
                self.stats.duplicates_unrecorded += 1;
                return Ok(Accepted { seq, duplicate });
            }
            self.duplicates_recorded += 1;
        } else if let Some(p) = self.window.get_mut(idx) {
            p.hit = true;
        }
        self.max_received = self.max_received.max(Some(seq));
        self.records.push(DataRecord {
            seq,
            send_error,
            send_time,
            recv_error,
            recv_time,
            ttl,
        });
        Ok(Accepted { seq, duplicate })
    }

    /// The session as a receiver stores it after the sender's Stop-Sessions (RFC 4656 3.8):
    /// finished normally, with the sender's Next-Seqno and skip ranges and the records
    /// [`finish`](Self::finish) leaves. If the records contradict Stop-Sessions (a packet
    /// received at or past Next-Seqno), the session is kept as incomplete with the records as
    /// received. Records already taken ([`take_records`](Self::take_records)) are not in it.
    pub fn into_stored(
        self,
        request: RequestSession,
        end: &SessionEnd,
        recv_error: ErrorEstimate,
    ) -> StoredSession {
        let e = self.finish_stream(request.sid, Some(end), recv_error);
        StoredSession {
            request,
            finished: e.finished,
            next_seqno: e.next_seqno,
            skips: e.skips,
            records: e.tail,
        }
    }

    /// The session as a receiver stores it when the test ended without the sender's
    /// Stop-Sessions (RFC 4656 3.8: the peer went away): incomplete, with the records as
    /// received.
    pub fn into_incomplete(self, request: RequestSession) -> StoredSession {
        StoredSession {
            request,
            finished: Finished::Incomplete,
            next_seqno: 0,
            skips: Vec::new(),
            records: self.records,
        }
    }

    /// Ends the session as [`into_stored`](Self::into_stored) (with the peer's
    /// Stop-Sessions, `end`) or [`into_incomplete`](Self::into_incomplete) (without, `None`)
    /// do, for records handed out as they came: the records not yet taken, and which of those
    /// taken must be removed.
    pub fn finish_stream(
        mut self,
        sid: crate::wire::SessionId,
        end: Option<&SessionEnd>,
        recv_error: ErrorEstimate,
    ) -> StreamEnd {
        let incomplete = |tail| StreamEnd {
            sid,
            finished: Finished::Incomplete,
            next_seqno: 0,
            skips: Vec::new(),
            tail,
            prune: None,
        };
        let Some(end) = end else {
            return incomplete(self.records);
        };
        let raw = self.records.clone();
        match self.finish_in_place(end.stop_time, Some(end.next_seqno), recv_error) {
            Ok(prune) => StreamEnd {
                sid,
                finished: Finished::Normal,
                next_seqno: end.next_seqno,
                skips: end.skips.clone(),
                tail: self.records,
                prune,
            },
            Err(_) => incomplete(raw),
        }
    }

    /// Ends the session when Stop-Sessions has been exchanged at `stop_time` (receiver's
    /// clock), and returns its records in the reference's order, as Fetch-Session serves them
    /// (those not taken with [`take_records`](Self::take_records)).
    ///
    /// RFC 4656 3.8: every packet below `next_seqno` (the sender's Next Seqno; `None` means all
    /// packets) not yet received is recorded as lost, and lost records at or beyond
    /// `next_seqno` are removed. A packet received at or beyond `next_seqno` invalidates the
    /// session.
    ///
    /// A packet the sender counts in its Next Seqno is always either kept or counted as lost:
    /// a packet received is never removed, even one sent less than a timeout before
    /// `stop_time` (the reference drops those, so a last packet sent a little late vanished
    /// from both the received and the lost counts). Without a Next Seqno (`None`), the lost
    /// records of packets scheduled after `stop_time - timeout` are removed: the sender may
    /// not have sent them yet.
    pub fn finish(
        mut self,
        stop_time: OwampTime,
        next_seqno: Option<u32>,
        recv_error: ErrorEstimate,
    ) -> Result<Vec<DataRecord>, FinishError> {
        self.finish_in_place(stop_time, next_seqno, recv_error)?;
        Ok(self.records)
    }

    /// [`finish`](Self::finish) on the records not taken; returns what must go of those taken,
    /// if anything.
    fn finish_in_place(
        &mut self,
        stop_time: OwampTime,
        next_seqno: Option<u32>,
        recv_error: ErrorEstimate,
    ) -> Result<Option<Prune>, FinishError> {
        let count = self.params.schedule.count();
        let limit = next_seqno.unwrap_or(count);
        if limit > count {
            return Err(FinishError::NextSeqnoTooLarge {
                next_seqno: limit,
                count,
            });
        }
        if let Some(seq) = self.max_received.filter(|&s| s >= limit) {
            return Err(FinishError::ReceivedBeyondNextSeqno {
                seq,
                next_seqno: limit,
            });
        }
        while self.begin < limit {
            self.fill_front();
            if self.window.is_empty() {
                break;
            }
            self.pop_front(recv_error);
        }
        let prune = Prune {
            below: limit,
            lost_sent_by: next_seqno.is_none().then(|| {
                OwampTime::from_raw(stop_time.raw().saturating_sub(self.params.timeout.raw()))
            }),
        };
        self.records.retain(|r| prune.keeps(r));
        let taken_affected = self.taken.lost_max_seq.is_some_and(|s| {
            s >= limit
                || prune
                    .lost_sent_by
                    .is_some_and(|t| self.taken.lost_max_send > t.raw())
        });
        Ok(taken_affected.then_some(prune))
    }
}
