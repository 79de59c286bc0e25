//! The 25-octet data record of Fetch-Session responses and .owp files (RFC 4656 3.8).
//!
//! Layout: Seq Number (4), Send Error Estimate (2), Receive Error Estimate (2), Send
//! Timestamp (8), Receive Timestamp (8), TTL (1).

use super::error::WireError;
use crate::time::{ErrorEstimate, OwampTime};

/// One packet as the receiver saw it (RFC 4656 3.8).
///
/// A packet that never arrived has a receive timestamp of zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataRecord {
    /// Sequence number of the test packet.
    pub seq: u32,
    /// Error estimate of the sender's clock.
    pub send_error: ErrorEstimate,
    /// When the packet was sent, by the sender's clock.
    pub send_time: OwampTime,
    /// Error estimate of the receiver's clock.
    pub recv_error: ErrorEstimate,
    /// When the packet arrived, by the receiver's clock; zero if it was lost.
    pub recv_time: OwampTime,
    /// The IP TTL or hop limit the packet arrived with; 255 when unknown.
    pub ttl: u8,
}

impl DataRecord {
    /// Octets of one encoded record.
    pub const LEN: usize = 25;

    /// Whether this record marks a lost packet (a zero receive timestamp, RFC 4656 3.8).
    pub fn is_lost(&self) -> bool {
        self.recv_time.raw() == 0
    }

    /// Decodes one record from the first 25 octets of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let b: &[u8; Self::LEN] = bytes
            .get(..Self::LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(WireError::Truncated {
                message: "data record",
                needed: Self::LEN,
                got: bytes.len(),
            })?;
        let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_be_bytes(a)
        };
        Ok(Self {
            seq: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            send_error: ErrorEstimate::from_raw(u16_at(4)),
            recv_error: ErrorEstimate::from_raw(u16_at(6)),
            send_time: OwampTime::from_raw(u64_at(8)),
            recv_time: OwampTime::from_raw(u64_at(16)),
            ttl: b[24],
        })
    }

    /// Encodes the record as 25 octets.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..4].copy_from_slice(&self.seq.to_be_bytes());
        b[4..6].copy_from_slice(&self.send_error.raw().to_be_bytes());
        b[6..8].copy_from_slice(&self.recv_error.raw().to_be_bytes());
        b[8..16].copy_from_slice(&self.send_time.raw().to_be_bytes());
        b[16..24].copy_from_slice(&self.recv_time.raw().to_be_bytes());
        b[24] = self.ttl;
        b
    }
}
