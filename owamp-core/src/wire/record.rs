//! The 25-octet data record of Fetch-Session responses and .owp files (RFC 4656 3.8).

use zerocopy::network_endian::{U16, U32, U64};
use zerocopy::{FromBytes, IntoBytes};

use super::error::WireError;
use super::raw;
use crate::time::{ErrorEstimate, OwampTime};

/// One packet as the receiver saw it (RFC 4656 3.8).
///
/// On the wire: Seq Number (4), Send Error Estimate (2), Receive Error Estimate (2), Send
/// Timestamp (8), Receive Timestamp (8), TTL (1). A packet that never arrived has a receive
/// timestamp of zero.
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

    /// Decodes one record from the first 25 octets of `bytes` (any further octets are ignored).
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let (r, _) =
            raw::DataRecord::read_from_prefix(bytes).map_err(|_| WireError::Truncated {
                message: "data record",
                needed: Self::LEN,
                got: bytes.len(),
            })?;
        Ok(Self::from_raw(&r))
    }

    pub(crate) fn from_raw(r: &raw::DataRecord) -> Self {
        Self {
            seq: r.seq.get(),
            send_error: ErrorEstimate::from_raw(r.send_error.get()),
            send_time: OwampTime::from_raw(r.send_time.get()),
            recv_error: ErrorEstimate::from_raw(r.recv_error.get()),
            recv_time: OwampTime::from_raw(r.recv_time.get()),
            ttl: r.ttl,
        }
    }

    pub(crate) fn to_raw(self) -> raw::DataRecord {
        raw::DataRecord {
            seq: U32::new(self.seq),
            send_error: U16::new(self.send_error.raw()),
            recv_error: U16::new(self.recv_error.raw()),
            send_time: U64::new(self.send_time.raw()),
            recv_time: U64::new(self.recv_time.raw()),
            ttl: self.ttl,
        }
    }

    /// Encodes the record as 25 octets.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b.copy_from_slice(self.to_raw().as_bytes());
        b
    }

    /// Appends the 25-octet encoding to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.to_raw().as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_record_layout() {
        // First record fetched in the a_open reference trace.
        let b: [u8; 25] = [
            0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0xee, 0xb2, 0x5d, 0x6f, 0xed, 0x38,
            0x15, 0x1a, 0xee, 0xb2, 0x5d, 0x6f, 0xed, 0x3e, 0x70, 0x7e, 0xff,
        ];
        let r = DataRecord::parse(&b).unwrap();
        assert_eq!(r.seq, 0);
        assert_eq!(r.send_error.raw(), 1);
        assert_eq!(r.recv_error.raw(), 1);
        assert_eq!(r.send_time.raw(), 0xeeb2_5d6f_ed38_151a);
        assert_eq!(r.recv_time.raw(), 0xeeb2_5d6f_ed3e_707e);
        assert_eq!(r.ttl, 255);
        assert!(!r.is_lost());
        assert_eq!(r.to_bytes(), b);
        assert!(DataRecord::parse(&b[..24]).is_err());
    }
}
