//! How test packets are protected, and in-place access to their fields (RFC 4656 4.1.2).
//!
//! The layouts are those of [`crate::wire::TestPacket`]: open mode Seq 4, Timestamp 8, Error
//! Estimate 2 (14 octets); authenticated and encrypted modes Seq 4, MBZ 12, Timestamp 8,
//! Error Estimate 2, MBZ 6, HMAC 16 (48 octets); padding follows. The session code writes and
//! reads them in the caller's buffers, without allocating.

use zerocopy::network_endian::{U16, U32, U64};
use zerocopy::FromBytes;

use crate::crypto::{SecureMode, TestPacketCrypto};
use crate::time::{ErrorEstimate, OwampTime};
use crate::wire::raw::{AuthTestPacket, OpenTestPacket};
use crate::wire::{Mode, TestPacket};

/// How the test packets of a session are protected: the mode the control connection chose.
// One value per session, used on every packet: keeping the keys inline avoids an indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum PacketProtection {
    /// Open mode: packets are sent in the clear.
    Open,
    /// Authenticated or encrypted mode, with the session's test packet keys (the mode is the
    /// one `TestPacketCrypto` was built for).
    Sealed(TestPacketCrypto),
}

impl PacketProtection {
    /// The session's mode.
    pub fn mode(&self) -> Mode {
        match self {
            PacketProtection::Open => Mode::Open,
            PacketProtection::Sealed(c) => match c.mode() {
                SecureMode::Authenticated => Mode::Authenticated,
                SecureMode::Encrypted => Mode::Encrypted,
            },
        }
    }

    /// Octets of a test packet before the padding: 14 in open mode, 48 otherwise.
    pub fn header_len(&self) -> usize {
        TestPacket::header_len(self.mode())
    }

    /// Octets of a whole test packet with `padding` octets of padding, or `None` if that does
    /// not fit in memory.
    pub fn packet_len(&self, padding: u32) -> Option<usize> {
        usize::try_from(padding)
            .ok()?
            .checked_add(self.header_len())
    }

    fn is_open(&self) -> bool {
        matches!(self, PacketProtection::Open)
    }

    /// Writes the sequence number into a zeroed header at the start of `pkt`.
    pub(crate) fn write_seq(&self, pkt: &mut [u8], seq: u32) -> Option<()> {
        if self.is_open() {
            OpenTestPacket::mut_from_prefix(pkt).ok()?.0.seq = U32::new(seq);
        } else {
            AuthTestPacket::mut_from_prefix(pkt).ok()?.0.seq = U32::new(seq);
        }
        Some(())
    }

    /// Writes the timestamp and error estimate into the (plaintext) header.
    pub(crate) fn write_stamp(
        &self,
        pkt: &mut [u8],
        timestamp: OwampTime,
        error: ErrorEstimate,
    ) -> Option<()> {
        let (ts, ee) = (U64::new(timestamp.raw()), U16::new(error.raw()));
        if self.is_open() {
            let (h, _) = OpenTestPacket::mut_from_prefix(pkt).ok()?;
            h.timestamp = ts;
            h.error_estimate = ee;
        } else {
            let (h, _) = AuthTestPacket::mut_from_prefix(pkt).ok()?;
            h.timestamp = ts;
            h.error_estimate = ee;
        }
        Some(())
    }

    /// Reads sequence number, timestamp and error estimate from a plaintext header.
    pub(crate) fn read_fields(&self, head: &[u8]) -> Option<(u32, OwampTime, ErrorEstimate)> {
        let (seq, ts, ee) = if self.is_open() {
            let (h, _) = OpenTestPacket::ref_from_prefix(head).ok()?;
            (h.seq, h.timestamp, h.error_estimate)
        } else {
            let (h, _) = AuthTestPacket::ref_from_prefix(head).ok()?;
            (h.seq, h.timestamp, h.error_estimate)
        };
        Some((
            seq.get(),
            OwampTime::from_raw(ts.get()),
            ErrorEstimate::from_raw(ee.get()),
        ))
    }
}
