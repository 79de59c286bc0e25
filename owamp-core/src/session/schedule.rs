//! Send schedules of test sessions (RFC 4656 3.5, 3.6 and Appendix B).
//!
//! A Request-Session carries a list of slots; the slots are used cyclically, one per packet,
//! and each gives the gap before its packet: a fixed gap, or an exponential deviate scaled by
//! the slot's mean. Deviates come from the generator of RFC 4656 Appendix B, keyed by the SID,
//! so that sender and receiver compute the same schedule.
//!
//! Packet `i` is due at `start + gap(0) + ... + gap(i)`: the first packet already waits one gap
//! after the start time (RFC 4656 3.5; the reference implementation and its traces agree).

use core::time::Duration;

use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
use aes::Aes128;

use crate::time::{Interval, OwampTime};
use crate::wire::{SessionId, Slot, SlotKind};

/// Q[k] = ln2/1! + ln2^2/2! + ... + ln2^k/k!, 1 <= k <= 11, as 32.32 fixed point
/// (RFC 4656 Appendix B). Index 0 is unused so the indices match the appendix.
const Q: [u64; 12] = [
    0,
    0xB172_17F8,
    0xEEF1_93F7,
    0xFD27_1862,
    0xFF9D_6DD0,
    0xFFF4_CFD0,
    0xFFFE_E819,
    0xFFFF_E7FF,
    0xFFFF_FE2B,
    0xFFFF_FFE0,
    0xFFFF_FFFE,
    0xFFFF_FFFF,
];

/// ln 2 in 32.32 fixed point (Q[1]).
const LN2: u64 = Q[1];

/// Multiplies two 32.32 fixed-point numbers the way RFC 4656 Appendix B prescribes:
/// `(u * v) >> 32`, computed exactly, the low 32 bits truncated (not rounded) and the bits
/// above 64 discarded.
///
/// This is bit for bit perfSONAR's OWPNum64Mult (Knuth's algorithm 4.3.1 M on 32-bit digits,
/// keeping the middle two digits of the 128-bit product), which both its schedule and its
/// statistics use.
pub fn mul_fixed(u: u64, v: u64) -> u64 {
    ((u128::from(u) * u128::from(v)) >> 32) as u64
}

/// The exponential deviate generator of RFC 4656 Appendix B: Knuth's algorithm S driven by
/// AES-128 in counter mode keyed by the SID.
///
/// Each call to [`next_deviate`](Self::next_deviate) returns an exponential deviate of mean 1
/// in 32.32 fixed point; the stream is the same on every implementation.
#[derive(Clone)]
pub struct ExpDeviates {
    cipher: Aes128,
    /// The 128-bit counter; its big-endian bytes are the AES input (Appendix B, algorithm Unif).
    counter: u128,
    /// The last encrypted counter block: four 32-bit uniforms.
    block: [u8; 16],
}

impl core::fmt::Debug for ExpDeviates {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The key is the SID, which is not secret, but the cipher state is opaque anyway.
        f.debug_struct("ExpDeviates")
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

impl ExpDeviates {
    /// A generator seeded with `sid` (RFC 4656 Appendix B, step U1).
    pub fn new(sid: &SessionId) -> Self {
        Self {
            cipher: Aes128::new(GenericArray::from_slice(&sid.0)),
            counter: 0,
            block: [0; 16],
        }
    }

    /// The next 32-bit uniform random number, in the low 32 bits (Appendix B, steps U2-U4).
    fn uniform(&mut self) -> u64 {
        // The counter mod 4 picks the quartet; a new block is encrypted every fourth call.
        let quartet = (self.counter & 3) as usize;
        if quartet == 0 {
            let mut b = GenericArray::from(self.counter.to_be_bytes());
            self.cipher.encrypt_block(&mut b);
            self.block = b.into();
        }
        self.counter = self.counter.wrapping_add(1);
        let i = 4 * quartet;
        u64::from(u32::from_be_bytes([
            self.block[i],
            self.block[i + 1],
            self.block[i + 2],
            self.block[i + 3],
        ]))
    }

    /// The next exponential deviate with mean 1, in 32.32 fixed point (Appendix B, algorithm S).
    pub fn next_deviate(&mut self) -> u64 {
        // S1: count the leading one bits j of a 32-bit uniform, then drop them and the zero.
        let u = self.uniform() as u32;
        let j = u.leading_ones();
        // If all 32 bits are one there is no zero; U becomes 0, which yields 32*ln2 below, as
        // the appendix prescribes.
        let u = if j >= 31 { 0 } else { u64::from(u << (j + 1)) };
        let j = u64::from(j) << 32;
        // S2: immediate acceptance.
        if u < LN2 {
            return mul_fixed(j, LN2).wrapping_add(u);
        }
        // S3: the least k >= 2 with U < Q[k]. U is even after the shift, so U < Q[11] =
        // 2^32 - 1 always holds; were it not, the reference's search would end at k = 12.
        let k = (2..Q.len()).find(|&k| u < Q[k]).unwrap_or(Q.len());
        let mut v = self.uniform();
        for _ in 2..=k {
            v = v.min(self.uniform());
        }
        // S4: (j + V) * ln2.
        mul_fixed(j.wrapping_add(v), LN2)
    }
}

/// Why a schedule cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// A session with packets needs at least one slot (RFC 4656 3.5).
    #[error("schedule has packets but no slots")]
    NoSlots,
}

/// The send schedule of one test session: slots used cyclically for `count` packets
/// (RFC 4656 3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    sid: SessionId,
    slots: Vec<Slot>,
    count: u32,
}

impl Schedule {
    /// The schedule for the session `sid` with the given slots and packet count.
    ///
    /// `slots` is what the Request-Session carried, so its length is bounded by the message.
    pub fn new(sid: SessionId, slots: &[Slot], count: u32) -> Result<Self, ScheduleError> {
        if slots.is_empty() && count > 0 {
            return Err(ScheduleError::NoSlots);
        }
        Ok(Self {
            sid,
            slots: slots.to_vec(),
            count,
        })
    }

    /// The session identifier that seeds the exponential deviates.
    pub fn sid(&self) -> SessionId {
        self.sid
    }

    /// The slots, in order.
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// Number of packets in the session.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Iterates over the packets in order, giving each one's send offset from the start time.
    pub fn iter(&self) -> ScheduleIter<'_> {
        ScheduleIter {
            schedule: self,
            cursor: ScheduleCursor::new(self),
        }
    }

    /// The send offset of packet `seq` from the start time, or `None` if `seq` is not below
    /// the packet count.
    ///
    /// This replays the schedule from the start (O(seq)); walk [`iter`](Self::iter) to visit
    /// packets in order.
    pub fn offset(&self, seq: u32) -> Option<Interval> {
        let mut it = self.iter();
        it.advance_to(seq)?;
        it.next().map(|p| p.offset)
    }

    /// The send time of packet `seq` for a session starting at `start`.
    pub fn send_time(&self, start: OwampTime, seq: u32) -> Option<OwampTime> {
        self.offset(seq).map(|o| start.saturating_add_interval(o))
    }
}

impl<'a> IntoIterator for &'a Schedule {
    type Item = ScheduledPacket;
    type IntoIter = ScheduleIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// One packet of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduledPacket {
    /// Sequence number.
    pub seq: u32,
    /// Send offset from the session start time.
    pub offset: Interval,
}

impl ScheduledPacket {
    /// The send time of this packet for a session starting at `start` (saturating, so that
    /// send times stay monotone even for absurd schedules beyond 136 years).
    pub fn send_time(&self, start: OwampTime) -> OwampTime {
        start.saturating_add_interval(self.offset)
    }
}

/// A position in a [`Schedule`] that owns its generator state but not the schedule, so that
/// it can live beside the schedule in one struct. Offsets are cumulative sums of gaps.
#[derive(Debug, Clone)]
pub struct ScheduleCursor {
    deviates: ExpDeviates,
    next_seq: u32,
    offset: Interval,
}

impl ScheduleCursor {
    /// A cursor at the first packet of `schedule`.
    pub fn new(schedule: &Schedule) -> Self {
        Self {
            deviates: ExpDeviates::new(&schedule.sid),
            next_seq: 0,
            offset: Interval::ZERO,
        }
    }

    /// Sequence number of the packet the next call to [`next`](Self::next) returns.
    pub fn next_seq(&self) -> u32 {
        self.next_seq
    }

    /// The next packet of `schedule` (which must be the schedule the cursor was made for).
    pub fn next(&mut self, schedule: &Schedule) -> Option<ScheduledPacket> {
        let seq = self.next_seq;
        self.next_gap(schedule)?;
        Some(ScheduledPacket {
            seq,
            offset: self.offset,
        })
    }

    /// Moves to the next packet of `schedule` like [`next`](Self::next), but returns the gap
    /// between that packet and the previous one (the start time, for packet 0) instead of the
    /// cumulative offset: the delta of the reference's schedule context, for callers that keep
    /// their own clock.
    pub fn next_gap(&mut self, schedule: &Schedule) -> Option<Interval> {
        if self.next_seq >= schedule.count {
            return None;
        }
        // RFC 4656 3.5: slots are used cyclically. `Schedule::new` guarantees a slot when
        // count > 0.
        let n = schedule.slots.len();
        let slot = schedule.slots.get(self.next_seq as usize % n.max(1))?;
        let gap = match slot.kind {
            // Appendix B: the deviate (mean 1) scaled by the slot mean with the truncating
            // 32.32 product. Fixed slots do not draw from the generator.
            SlotKind::Exponential => {
                Interval::from_raw(mul_fixed(self.deviates.next_deviate(), slot.mean.raw()))
            }
            SlotKind::Fixed => slot.mean,
        };
        self.offset = self.offset.saturating_add(gap);
        self.next_seq += 1;
        Some(gap)
    }
}

/// Iterator over the packets of a [`Schedule`].
#[derive(Debug, Clone)]
pub struct ScheduleIter<'a> {
    schedule: &'a Schedule,
    cursor: ScheduleCursor,
}

impl ScheduleIter<'_> {
    /// Skips ahead so that the next packet returned is `seq`; `None` if `seq` is beyond the
    /// packet count or already passed.
    pub fn advance_to(&mut self, seq: u32) -> Option<()> {
        if seq < self.cursor.next_seq || seq >= self.schedule.count {
            return None;
        }
        while self.cursor.next_seq < seq {
            self.cursor.next(self.schedule);
        }
        Some(())
    }

    /// Sequence number of the packet the next call to `next` returns.
    pub fn next_seq(&self) -> u32 {
        self.cursor.next_seq
    }
}

impl Iterator for ScheduleIter<'_> {
    type Item = ScheduledPacket;

    fn next(&mut self) -> Option<ScheduledPacket> {
        self.cursor.next(self.schedule)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.schedule.count.saturating_sub(self.cursor.next_seq) as usize;
        (left, Some(left))
    }
}

impl ExactSizeIterator for ScheduleIter<'_> {}

/// A generous upper bound on when a session is over: the end of its schedule, plus the loss
/// timeout, plus `slack`.
///
/// Fixed slots give the exact end. Exponential gaps are random, so their sum is bounded by
/// `2 n m + 50 m` for `n` packets of mean gap `m`, which a schedule exceeds with a probability
/// far below 1e-20. Used only as a deadline: the control state machines stop the local sessions
/// past it (with their own slack), and a [`TestSession`](super::TestSession) ends by itself past
/// it (with its end margin).
pub fn session_end_bound(
    start: OwampTime,
    slots: &[Slot],
    packets: u32,
    timeout: Interval,
    slack: Duration,
) -> OwampTime {
    let n = u128::from(packets);
    let len = slots.len() as u128;
    let mut fixed: u128 = 0;
    let mut exp: u128 = 0;
    if let Some(cycles) = n.checked_div(len) {
        // Slots are used cyclically: full cycles, then a partial one.
        let rest = (n - cycles * len) as usize;
        for (i, s) in slots.iter().enumerate() {
            let uses = cycles + u128::from(i < rest);
            match s.kind {
                SlotKind::Fixed => fixed = fixed.saturating_add(uses * u128::from(s.mean.raw())),
                SlotKind::Exponential => exp = exp.saturating_add(uses * u128::from(s.mean.raw())),
            }
        }
        let max_exp_mean = slots
            .iter()
            .filter(|s| s.kind == SlotKind::Exponential)
            .map(|s| u128::from(s.mean.raw()))
            .max()
            .unwrap_or(0);
        exp = exp.saturating_mul(2).saturating_add(max_exp_mean * 50);
    }
    let total = fixed
        .saturating_add(exp)
        .saturating_add(u128::from(timeout.raw()))
        .saturating_add(u128::from(Interval::from_duration_truncated(slack).raw()));
    let total = u64::try_from(total).unwrap_or(u64::MAX);
    start.saturating_add_interval(Interval::from_raw(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_bound_fixed_is_exact() {
        let slots = [Slot {
            kind: SlotKind::Fixed,
            mean: Interval::from_raw(1 << 31),
        }];
        let start = OwampTime::from_raw(100 << 32);
        let end = session_end_bound(start, &slots, 10, Interval::from_secs(2), Duration::ZERO);
        assert_eq!(end.raw(), (100 + 5 + 2) << 32);
    }

    #[test]
    fn mul_fixed_is_exact() {
        assert_eq!(mul_fixed(1 << 32, 1 << 32), 1 << 32);
        assert_eq!(mul_fixed(3 << 31, 1 << 33), 3 << 32);
        assert_eq!(mul_fixed(u64::MAX, 1 << 32), u64::MAX);
        // 0.5 * 0.5 = 0.25
        assert_eq!(mul_fixed(1 << 31, 1 << 31), 1 << 30);
        // The reference truncates: 2^-32 * 0.5 is 0, not rounded up to 2^-32.
        assert_eq!(mul_fixed(1, 1 << 31), 0);
        assert_eq!(mul_fixed(0xFFFF_FFFF, 0xFFFF_FFFF), 0xFFFF_FFFE);
        // ... and drops what does not fit in 64 bits: 2^31 s * 2^2 s = 2^33 s wraps to 0.
        assert_eq!(mul_fixed(1 << 63, 1 << 34), 0);
        assert_eq!(mul_fixed(3 << 62, 1 << 33), 1 << 63);
    }

    #[test]
    fn gaps_add_up_to_offsets() {
        let sid = SessionId([0x5a; 16]);
        let slots = [
            Slot {
                kind: SlotKind::Exponential,
                mean: Interval::from_raw(1 << 31),
            },
            Slot {
                kind: SlotKind::Fixed,
                mean: Interval::from_raw(3 << 30),
            },
        ];
        let s = Schedule::new(sid, &slots, 9).unwrap();
        let mut c = ScheduleCursor::new(&s);
        let mut sum = 0u64;
        for p in s.iter() {
            assert_eq!(c.next_seq(), p.seq);
            let gap = c.next_gap(&s).unwrap().raw();
            if p.seq % 2 == 1 {
                assert_eq!(gap, 3 << 30);
            }
            sum += gap;
            assert_eq!(sum, p.offset.raw());
        }
        assert_eq!(c.next_gap(&s), None);
        assert_eq!(c.next_seq(), 9);
    }

    #[test]
    fn all_ones_uniform_gives_32_ln2() {
        // Algorithm S1 with no zero bit: the appendix prescribes 32*ln2.
        let j = 32u64 << 32;
        assert_eq!(mul_fixed(j, LN2), 32 * LN2);
    }

    #[test]
    fn deviates_have_mean_near_one() {
        let mut g = ExpDeviates::new(&SessionId([7; 16]));
        let n = 20_000u64;
        let sum: u64 = (0..n).map(|_| g.next_deviate()).sum();
        let mean = sum as f64 / n as f64 / 4_294_967_296.0;
        assert!((mean - 1.0).abs() < 0.05, "mean {mean}");
    }

    #[test]
    fn first_packet_waits_one_gap() {
        let slot = Slot {
            kind: SlotKind::Fixed,
            mean: Interval::from_raw(5 << 32),
        };
        let s = Schedule::new(SessionId::default(), &[slot], 3).unwrap();
        let offs: Vec<u64> = s.iter().map(|p| p.offset.raw()).collect();
        assert_eq!(offs, vec![5 << 32, 10 << 32, 15 << 32]);
        assert_eq!(s.offset(3), None);
        assert_eq!(
            s.send_time(OwampTime::from_raw(1 << 32), 1),
            Some(OwampTime::from_raw(11 << 32))
        );
    }

    #[test]
    fn no_slots_is_an_error_only_with_packets() {
        assert_eq!(
            Schedule::new(SessionId::default(), &[], 1),
            Err(ScheduleError::NoSlots)
        );
        let s = Schedule::new(SessionId::default(), &[], 0).unwrap();
        assert_eq!(s.iter().count(), 0);
    }

    #[test]
    fn fixed_slots_do_not_consume_deviates() {
        let sid = SessionId([0x42; 16]);
        let e = Slot {
            kind: SlotKind::Exponential,
            mean: Interval::from_raw(1 << 32),
        };
        let f = Slot {
            kind: SlotKind::Fixed,
            mean: Interval::from_raw(1 << 30),
        };
        let mixed = Schedule::new(sid, &[e, f], 6).unwrap();
        let mut g = ExpDeviates::new(&sid);
        let mut off = 0u64;
        let mut want = Vec::new();
        for i in 0..6 {
            off += if i % 2 == 0 {
                mul_fixed(g.next_deviate(), 1 << 32)
            } else {
                1 << 30
            };
            want.push(off);
        }
        let got: Vec<u64> = mixed.iter().map(|p| p.offset.raw()).collect();
        assert_eq!(got, want);
    }
}
