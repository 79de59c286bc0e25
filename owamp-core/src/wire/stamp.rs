//! STAMP test packets (RFC 8762 4.2, 4.3): the Session-Sender's and the Session-Reflector's,
//! unauthenticated (44 octets) and authenticated (112 octets).
//!
//! The fields are TWAMP's, in the RFC's own words (RFC 8762 4.2.1 and 4.3.1 name them as
//! RFC 5357 4.1.2 and 4.2.1 do), so the typed values are [`TestPacket`] and
//! [`ReflectorPacket`]; only the layouts differ:
//!
//! | packet | unauthenticated | authenticated |
//! |---|---|---|
//! | Session-Sender | Seq 4, Timestamp 8, Error Estimate 2, MBZ 30 (44) | Seq 4, MBZ 12, Timestamp 8, Error Estimate 2, MBZ 70, HMAC 16 (112) |
//! | Session-Reflector | TWAMP's 41-octet reflector packet, MBZ 3 (44) | TWAMP's 112-octet authenticated reflector packet |
//!
//! The unauthenticated packets are TWAMP Light packets (RFC 5357 Appendix I) with their
//! padding: a STAMP Session-Sender's packet is an open TWAMP test packet with 30 zero padding
//! octets, and a TWAMP Light reflector answers it with a 44-octet packet whose last three
//! octets are that padding (RFC 8762 4.6).
//!
//! Parsing has the usual two phases (zerocopy layout, then validation). MBZ octets are sent
//! as zero and not checked on receipt: RFC 8972 gives some of them a meaning (the SSID at
//! octets 14-15, flags), and a reflector must still answer such a sender. The HMAC
//! (authenticated mode) is carried as octets; [`crate::crypto::StampKey`] computes and checks
//! it. Octets after the base packet (RFC 8972's TLVs, or padding) are returned as they are.

use zerocopy::network_endian::{U16, U32, U64};
use zerocopy::{FromBytes, IntoBytes};

use super::{raw, ReflectorPacket, TestPacket, WireError};
use crate::time::{ErrorEstimate, OwampTime};

/// Whether STAMP test packets carry an HMAC (RFC 8762 4.2.1 and 4.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StampMode {
    /// 44-octet packets, no HMAC.
    Unauthenticated,
    /// 112-octet packets, HMAC-SHA-256 truncated to 16 octets at offset 96.
    Authenticated,
}

impl StampMode {
    /// Octets of the base packet, sender's or reflector's (both are the same size: RFC 8762
    /// 4.2 and 4.3 make STAMP symmetric).
    pub const fn base_len(self) -> usize {
        match self {
            StampMode::Unauthenticated => 44,
            StampMode::Authenticated => 112,
        }
    }
}

/// Offset of the Error Estimate in each layout (for error reports).
const fn ee_offset(mode: StampMode) -> usize {
    match mode {
        StampMode::Unauthenticated => 12,
        StampMode::Authenticated => 24,
    }
}

fn truncated(message: &'static str, mode: StampMode, got: usize) -> WireError {
    WireError::Truncated {
        message,
        needed: mode.base_len(),
        got,
    }
}

fn check_ee(message: &'static str, mode: StampMode, ee: ErrorEstimate) -> Result<(), WireError> {
    // RFC 8762 4.2.1 takes the Error Estimate from RFC 4656 4.1.2, where a zero multiplier
    // marks the packet as corrupt.
    if ee.is_valid() {
        Ok(())
    } else {
        Err(WireError::invalid(
            message,
            "error estimate",
            ee_offset(mode),
            ee.raw(),
        ))
    }
}

impl TestPacket {
    const STAMP_NAME: &'static str = "STAMP Session-Sender packet";

    /// Decodes a STAMP Session-Sender packet (RFC 8762 4.2.1, 4.2.2); returns the fields and
    /// the octets after the base packet.
    pub fn parse_stamp(mode: StampMode, bytes: &[u8]) -> Result<(Self, &[u8]), WireError> {
        let name = Self::STAMP_NAME;
        let (p, rest) = match mode {
            StampMode::Unauthenticated => {
                let (r, rest) = raw::StampSenderPacket::read_from_prefix(bytes)
                    .map_err(|_| truncated(name, mode, bytes.len()))?;
                let p = TestPacket {
                    seq: r.seq.get(),
                    timestamp: OwampTime::from_raw(r.timestamp.get()),
                    error_estimate: ErrorEstimate::from_raw(r.error_estimate.get()),
                    hmac: [0; 16],
                };
                (p, rest)
            }
            StampMode::Authenticated => {
                let (r, rest) = raw::StampAuthSenderPacket::read_from_prefix(bytes)
                    .map_err(|_| truncated(name, mode, bytes.len()))?;
                let p = TestPacket {
                    seq: r.seq.get(),
                    timestamp: OwampTime::from_raw(r.timestamp.get()),
                    error_estimate: ErrorEstimate::from_raw(r.error_estimate.get()),
                    hmac: r.hmac,
                };
                (p, rest)
            }
        };
        check_ee(name, mode, p.error_estimate)?;
        Ok((p, rest))
    }

    /// Appends the base STAMP Session-Sender packet (MBZ zero; in authenticated mode the
    /// HMAC field holds `self.hmac`, which the key overwrites when it seals the packet).
    pub fn write_stamp(&self, mode: StampMode, out: &mut Vec<u8>) {
        match mode {
            StampMode::Unauthenticated => {
                let r = raw::StampSenderPacket {
                    seq: U32::new(self.seq),
                    timestamp: U64::new(self.timestamp.raw()),
                    error_estimate: U16::new(self.error_estimate.raw()),
                    mbz: [0; 30],
                };
                out.extend_from_slice(r.as_bytes());
            }
            StampMode::Authenticated => {
                let r = raw::StampAuthSenderPacket {
                    seq: U32::new(self.seq),
                    mbz1: [0; 12],
                    timestamp: U64::new(self.timestamp.raw()),
                    error_estimate: U16::new(self.error_estimate.raw()),
                    mbz2: [0; 70],
                    hmac: self.hmac,
                };
                out.extend_from_slice(r.as_bytes());
            }
        }
    }
}

impl ReflectorPacket {
    const STAMP_NAME: &'static str = "STAMP Session-Reflector packet";

    /// Decodes a STAMP Session-Reflector packet (RFC 8762 4.3.1, 4.3.2); returns the fields
    /// and the octets after the base packet.
    pub fn parse_stamp(mode: StampMode, bytes: &[u8]) -> Result<(Self, &[u8]), WireError> {
        let name = Self::STAMP_NAME;
        let (p, rest) = match mode {
            StampMode::Unauthenticated => {
                let (r, rest) = raw::StampReflectorPacket::read_from_prefix(bytes)
                    .map_err(|_| truncated(name, mode, bytes.len()))?;
                let r = r.twamp;
                let p = Self {
                    seq: r.seq.get(),
                    timestamp: OwampTime::from_raw(r.timestamp.get()),
                    error_estimate: ErrorEstimate::from_raw(r.error_estimate.get()),
                    receive_timestamp: OwampTime::from_raw(r.receive_timestamp.get()),
                    sender_seq: r.sender_seq.get(),
                    sender_timestamp: OwampTime::from_raw(r.sender_timestamp.get()),
                    sender_error_estimate: ErrorEstimate::from_raw(r.sender_error_estimate.get()),
                    sender_ttl: r.sender_ttl,
                    hmac: [0; 16],
                };
                (p, rest)
            }
            StampMode::Authenticated => {
                let (r, rest) = raw::AuthReflectorPacket::read_from_prefix(bytes)
                    .map_err(|_| truncated(name, mode, bytes.len()))?;
                let p = Self {
                    seq: r.seq.get(),
                    timestamp: OwampTime::from_raw(r.timestamp.get()),
                    error_estimate: ErrorEstimate::from_raw(r.error_estimate.get()),
                    receive_timestamp: OwampTime::from_raw(r.receive_timestamp.get()),
                    sender_seq: r.sender_seq.get(),
                    sender_timestamp: OwampTime::from_raw(r.sender_timestamp.get()),
                    sender_error_estimate: ErrorEstimate::from_raw(r.sender_error_estimate.get()),
                    sender_ttl: r.sender_ttl,
                    hmac: r.hmac,
                };
                (p, rest)
            }
        };
        check_ee(name, mode, p.error_estimate)?;
        Ok((p, rest))
    }

    /// Appends the base STAMP Session-Reflector packet (MBZ zero; in authenticated mode the
    /// HMAC field holds `self.hmac`).
    pub fn write_stamp(&self, mode: StampMode, out: &mut Vec<u8>) {
        let open = raw::OpenReflectorPacket {
            seq: U32::new(self.seq),
            timestamp: U64::new(self.timestamp.raw()),
            error_estimate: U16::new(self.error_estimate.raw()),
            mbz1: [0; 2],
            receive_timestamp: U64::new(self.receive_timestamp.raw()),
            sender_seq: U32::new(self.sender_seq),
            sender_timestamp: U64::new(self.sender_timestamp.raw()),
            sender_error_estimate: U16::new(self.sender_error_estimate.raw()),
            mbz2: [0; 2],
            sender_ttl: self.sender_ttl,
        };
        match mode {
            StampMode::Unauthenticated => {
                let r = raw::StampReflectorPacket {
                    twamp: open,
                    mbz: [0; 3],
                };
                out.extend_from_slice(r.as_bytes());
            }
            StampMode::Authenticated => {
                // Same octets as TWAMP's authenticated reflector packet (RFC 8762 4.3.2).
                self.write_to(super::Mode::Authenticated, &[], out);
            }
        }
    }
}
