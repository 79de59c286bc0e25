//! How test packets are protected and where their fields sit (RFC 4656 4.1.2).
//!
//! Open mode: Seq 4, Timestamp 8, Error Estimate 2, then padding (14 + padding octets).
//! Authenticated and encrypted modes: Seq 4, MBZ 12, Timestamp 8, Error Estimate 2, MBZ 6,
//! HMAC 16, then padding (48 + padding octets).

use crate::crypto::{SecureMode, TestPacketCrypto, SECURE_TEST_PACKET_MIN_LEN};

/// Octets of an open-mode test packet before the padding.
pub const OPEN_HEADER_LEN: usize = 14;

/// Octets of an authenticated or encrypted test packet before the padding.
pub const SECURE_HEADER_LEN: usize = SECURE_TEST_PACKET_MIN_LEN;

/// Field offsets of the two layouts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    pub(crate) timestamp: usize,
    pub(crate) error: usize,
    pub(crate) header: usize,
}

pub(crate) const OPEN_LAYOUT: Layout = Layout {
    timestamp: 4,
    error: 12,
    header: OPEN_HEADER_LEN,
};

pub(crate) const SECURE_LAYOUT: Layout = Layout {
    timestamp: 16,
    error: 24,
    header: SECURE_HEADER_LEN,
};

/// MBZ octets after the sequence number in the secure layout (encrypted in modes A and E).
pub(crate) const SECURE_MBZ1: core::ops::Range<usize> = 4..16;
/// MBZ octets after the error estimate in the secure layout (encrypted in mode E only).
pub(crate) const SECURE_MBZ2: core::ops::Range<usize> = 26..32;

/// How the test packets of a session are protected: the mode the control connection chose.
#[derive(Debug, Clone)]
pub enum PacketProtection {
    /// Open mode: packets are sent in the clear.
    Open,
    /// Authenticated or encrypted mode, with the session's test packet keys (the mode is the
    /// one `TestPacketCrypto` was built for).
    Sealed(TestPacketCrypto),
}

impl PacketProtection {
    pub(crate) fn layout(&self) -> Layout {
        match self {
            PacketProtection::Open => OPEN_LAYOUT,
            PacketProtection::Sealed(_) => SECURE_LAYOUT,
        }
    }

    /// The mode A/E of a sealed session, `None` in open mode.
    pub fn secure_mode(&self) -> Option<SecureMode> {
        match self {
            PacketProtection::Open => None,
            PacketProtection::Sealed(c) => Some(c.mode()),
        }
    }

    /// Octets of a test packet before the padding: 14 in open mode, 48 otherwise.
    pub fn header_len(&self) -> usize {
        self.layout().header
    }

    /// Octets of a whole test packet with `padding` octets of padding, or `None` if that does
    /// not fit in memory.
    pub fn packet_len(&self, padding: u32) -> Option<usize> {
        usize::try_from(padding)
            .ok()?
            .checked_add(self.header_len())
    }
}

pub(crate) fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_u16(buf: &mut [u8], at: usize, v: u16) {
    buf[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Reads fixed-size fields from a header whose length has already been checked.
pub(crate) fn get<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    if let Some(s) = buf.get(at..at + N) {
        a.copy_from_slice(s);
    }
    a
}
