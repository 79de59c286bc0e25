//! OWAMP-Test packet plaintext (RFC 4656 4.1.2).
//!
//! Open mode: Sequence Number (4), Timestamp (8), Error Estimate (2), padding: 14 octets plus
//! padding. Authenticated and encrypted modes: Sequence Number (4), MBZ (12), Timestamp (8),
//! Error Estimate (2), MBZ (6), HMAC (16), padding: 48 octets plus padding. These functions
//! work on plaintext; encryption and the HMAC are the crypto module's job.

use zerocopy::network_endian::{U16, U32, U64};
use zerocopy::{FromBytes, IntoBytes};

use super::error::{check_mbz, WireError};
use super::{raw, Hmac, Mode};
use crate::time::{ErrorEstimate, OwampTime};

/// The fields of one test packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TestPacket {
    /// Sequence number.
    pub seq: u32,
    /// When the sender sent it.
    pub timestamp: OwampTime,
    /// The sender's clock error estimate.
    pub error_estimate: ErrorEstimate,
    /// HMAC field (authenticated and encrypted modes; ignored and zero in open mode).
    pub hmac: Hmac,
}

impl TestPacket {
    /// Octets before the padding in open mode.
    pub const OPEN_LEN: usize = 14;
    /// Octets before the padding in authenticated and encrypted modes.
    pub const AUTH_LEN: usize = 48;
    /// Offset of the HMAC field in authenticated and encrypted modes.
    pub const AUTH_HMAC_OFFSET: usize = 32;
    const NAME: &'static str = "test packet";

    /// Octets before the padding in `mode`.
    pub const fn header_len(mode: Mode) -> usize {
        match mode {
            Mode::Open => Self::OPEN_LEN,
            Mode::Authenticated | Mode::Encrypted => Self::AUTH_LEN,
        }
    }

    /// Decodes a plaintext packet; returns the fields and the padding.
    ///
    /// Checks the length, the MBZ octets, and that the error estimate's multiplier is not zero
    /// (RFC 4656 4.1.2 treats such a packet as corrupt).
    pub fn parse(mode: Mode, bytes: &[u8]) -> Result<(Self, &[u8]), WireError> {
        let truncated = WireError::Truncated {
            message: Self::NAME,
            needed: Self::header_len(mode),
            got: bytes.len(),
        };
        let (p, padding, ee_offset) = match mode {
            Mode::Open => {
                let (r, padding) =
                    raw::OpenTestPacket::read_from_prefix(bytes).map_err(|_| truncated)?;
                let p = TestPacket {
                    seq: r.seq.get(),
                    timestamp: OwampTime::from_raw(r.timestamp.get()),
                    error_estimate: ErrorEstimate::from_raw(r.error_estimate.get()),
                    hmac: [0; 16],
                };
                (p, padding, 12)
            }
            Mode::Authenticated | Mode::Encrypted => {
                let (r, padding) =
                    raw::AuthTestPacket::read_from_prefix(bytes).map_err(|_| truncated)?;
                check_mbz(Self::NAME, &r.mbz1, 4)?;
                check_mbz(Self::NAME, &r.mbz2, 26)?;
                let p = TestPacket {
                    seq: r.seq.get(),
                    timestamp: OwampTime::from_raw(r.timestamp.get()),
                    error_estimate: ErrorEstimate::from_raw(r.error_estimate.get()),
                    hmac: r.hmac,
                };
                (p, padding, 24)
            }
        };
        // RFC 4656 4.1.2: a zero multiplier marks the packet as corrupt.
        if !p.error_estimate.is_valid() {
            return Err(WireError::invalid(
                Self::NAME,
                "error estimate",
                ee_offset,
                p.error_estimate.raw(),
            ));
        }
        Ok((p, padding))
    }

    /// Appends the plaintext packet with the given padding.
    pub fn write_to(&self, mode: Mode, padding: &[u8], out: &mut Vec<u8>) {
        out.reserve(Self::header_len(mode) + padding.len());
        match mode {
            Mode::Open => {
                let r = raw::OpenTestPacket {
                    seq: U32::new(self.seq),
                    timestamp: U64::new(self.timestamp.raw()),
                    error_estimate: U16::new(self.error_estimate.raw()),
                };
                out.extend_from_slice(r.as_bytes());
            }
            Mode::Authenticated | Mode::Encrypted => {
                let r = raw::AuthTestPacket {
                    seq: U32::new(self.seq),
                    mbz1: [0; 12],
                    timestamp: U64::new(self.timestamp.raw()),
                    error_estimate: U16::new(self.error_estimate.raw()),
                    mbz2: [0; 6],
                    hmac: self.hmac,
                };
                out.extend_from_slice(r.as_bytes());
            }
        }
        out.extend_from_slice(padding);
    }

    /// The plaintext packet with the given padding, as a new vector.
    pub fn to_bytes(&self, mode: Mode, padding: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(mode, padding, &mut v);
        v
    }
}
