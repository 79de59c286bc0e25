//! The send schedule of a session: offsets between packets from the slots and, for exponential
//! slots, the AES-counter-mode exponential deviates of RFC 4656 Appendix A/B, keyed by the SID.
//!
//! The statistics need it to know when each packet was due (loss detection and the first/last
//! times of a summary).

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes128;

use super::num::num64_mul;
use crate::wire::{SessionId, Slot, SlotKind};

/// Q[k] = sum_{i=1..k} (ln 2)^i / i!, scaled by 2^32 (Knuth's Algorithm S, RFC 4656 Appendix B).
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
const LN2: u64 = Q[1];

/// What the reference's delta generator returns once the schedule is exhausted: its FATAL error
/// code (-4) reinterpreted as a 32.32 offset.
const EXHAUSTED: u64 = (-4i64) as u64;

/// Generator of successive send offsets, like perfSONAR's OWPScheduleContext.
#[derive(Clone)]
pub struct Schedule {
    cipher: Aes128,
    counter: u128,
    out: [u8; 16],
    index: u64,
    max_index: u64,
    slots: Vec<Slot>,
}

impl std::fmt::Debug for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schedule")
            .field("index", &self.index)
            .finish()
    }
}

impl Schedule {
    /// A generator for `num_packets` packets; `slots` must not be empty.
    pub fn new(sid: &SessionId, slots: &[Slot], num_packets: u32) -> Self {
        // Only min(slots, packets) slots are ever used.
        let n = slots.len().min(num_packets as usize);
        Self {
            cipher: Aes128::new(&sid.0.into()),
            counter: 0,
            out: [0; 16],
            index: 0,
            max_index: u64::from(num_packets),
            slots: slots[..n].to_vec(),
        }
    }

    /// Back to the first packet.
    pub fn reset(&mut self) {
        self.counter = 0;
        self.out = [0; 16];
        self.index = 0;
    }

    /// A 32-bit uniform random number from AES in counter mode: each block gives four of them,
    /// picked by the counter modulo 4 (RFC 4656 Appendix B).
    fn uniform(&mut self) -> u64 {
        let quarter = (self.counter & 3) as usize;
        if quarter == 0 {
            let mut block: aes::Block = self.counter.to_be_bytes().into();
            self.cipher.encrypt_block(&mut block);
            self.out.copy_from_slice(&block);
        }
        self.counter = self.counter.wrapping_add(1);
        let b = &self.out[4 * quarter..4 * quarter + 4];
        u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An exponential deviate of mean 1 in 32.32 fixed point (Knuth 3.4.1 Algorithm S, as
    /// RFC 4656 Appendix A prescribes).
    fn exponential(&mut self) -> u64 {
        let mut u = self.uniform();
        let mut j: u64 = 0;
        // S1: count and shift off the leading one bits and the first zero bit.
        while u & 0x8000_0000 != 0 && j < 32 {
            u <<= 1;
            j += 1;
        }
        u = (u << 1) & 0xffff_ffff;
        // S2: immediate acceptance.
        if u < LN2 {
            return num64_mul(j << 32, LN2).wrapping_add(u);
        }
        // S3: the least k >= 2 with u < Q[k], then the minimum of k uniforms.
        let mut k = 2;
        while k < Q.len() && u >= Q[k] {
            k += 1;
        }
        let mut v = self.uniform();
        for _ in 2..=k {
            v = v.min(self.uniform());
        }
        // S4.
        num64_mul((j << 32).wrapping_add(v), LN2)
    }

    /// The offset from the previous packet to the next one.
    pub fn next_delta(&mut self) -> u64 {
        if self.index >= self.max_index || self.slots.is_empty() {
            return EXHAUSTED;
        }
        let slot = self.slots[(self.index % self.slots.len() as u64) as usize];
        self.index += 1;
        match slot.kind {
            SlotKind::Exponential => num64_mul(self.exponential(), slot.mean),
            SlotKind::Fixed => slot.mean,
        }
    }
}
