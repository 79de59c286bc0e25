//! The sending side of a test session (RFC 4656 4.1), without clock or socket.
//!
//! The caller asks [`Sender::next_due`] when the next packet is due, waits until then, and
//! builds the packet into its own buffer with the actual send timestamp. Building does not
//! allocate. To keep the time between stamping and sending short, the work that does not
//! depend on the timestamp can be done first with [`Sender::prepare`]; [`Sender::stamp`] then
//! writes the timestamp (and, in encrypted mode, seals the packet, since the timestamp is
//! encrypted and authenticated there).

use super::packet::PacketProtection;
use super::schedule::{ScheduleCursor, ScheduledPacket};
use super::SessionParams;
use crate::crypto::{CryptoError, SecureMode};
use crate::time::{ErrorEstimate, OwampTime};
use crate::wire::SkipRange;

/// What goes into the padding of each packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PaddingFill {
    /// The sender writes zeros into the padding of every packet.
    #[default]
    Zeros,
    /// The sender leaves the padding octets of the buffer as the caller put them, for example
    /// random octets written once per session (RFC 4656 4.1.2 allows random padding). Sealing
    /// never touches the padding, so a buffer can be reused from packet to packet.
    Caller,
}

/// Why a packet cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SenderError {
    /// Every packet of the session has been sent or skipped.
    #[error("all packets of the session have been sent")]
    Finished,
    /// The buffer is shorter than a test packet of this session.
    #[error("buffer of {got} octets is shorter than the {need}-octet test packet")]
    BufferTooSmall {
        /// Octets a packet needs.
        need: usize,
        /// Octets given.
        got: usize,
    },
    /// The padding length does not fit in memory.
    #[error("padding of {0} octets is too large")]
    PaddingTooLarge(u32),
    /// [`Sender::stamp`] was given a packet that is no longer the next one due.
    #[error("prepared packet {prepared} is not the next due packet")]
    NotNextPacket {
        /// Sequence number of the prepared packet.
        prepared: u32,
    },
    /// Sealing failed (cannot happen with a buffer of the checked length).
    #[error("sealing the test packet failed: {0}")]
    Crypto(#[from] CryptoError),
}

/// A packet whose timestamp-independent part is in the caller's buffer; see
/// [`Sender::prepare`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Prepared {
    seq: u32,
    len: usize,
}

impl Prepared {
    /// Sequence number of the packet.
    pub fn seq(&self) -> u32 {
        self.seq
    }

    /// Octets of the packet at the start of the buffer.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the packet is empty (never: a test packet has at least 14 octets).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The sender of one test session.
#[derive(Debug, Clone)]
pub struct Sender {
    params: SessionParams,
    protection: PacketProtection,
    fill: PaddingFill,
    packet_len: usize,
    cursor: ScheduleCursor,
    next: Option<ScheduledPacket>,
    /// Ranges of skipped sequence numbers, merged when adjacent (RFC 4656 3.8).
    skipped: Vec<SkipRange>,
}

impl Sender {
    /// A sender for the session described by `params`, protecting packets as `protection`
    /// says.
    pub fn new(params: SessionParams, protection: PacketProtection) -> Result<Self, SenderError> {
        let packet_len = protection
            .packet_len(params.padding)
            .ok_or(SenderError::PaddingTooLarge(params.padding))?;
        let mut cursor = ScheduleCursor::new(&params.schedule);
        let next = cursor.next(&params.schedule);
        Ok(Self {
            params,
            protection,
            fill: PaddingFill::Zeros,
            packet_len,
            cursor,
            next,
            skipped: Vec::new(),
        })
    }

    /// Chooses what goes into the padding (zeros by default).
    pub fn with_padding_fill(mut self, fill: PaddingFill) -> Self {
        self.fill = fill;
        self
    }

    /// The session parameters.
    pub fn params(&self) -> &SessionParams {
        &self.params
    }

    /// How the session's packets are protected.
    pub(crate) fn protection(&self) -> &PacketProtection {
        &self.protection
    }

    /// Octets of every test packet of this session.
    pub fn packet_len(&self) -> usize {
        self.packet_len
    }

    /// The next packet to send and its scheduled send time, or `None` when all are done.
    pub fn next_due(&self) -> Option<(u32, OwampTime)> {
        self.next.map(|p| (p.seq, p.send_time(self.params.start)))
    }

    /// Whether the next packet is so late at `now` that it should be skipped rather than sent:
    /// more than the session timeout past its scheduled time, as the reference sender does.
    pub fn is_too_late(&self, now: OwampTime) -> bool {
        self.next_due()
            .is_some_and(|(_, due)| now > due.saturating_add_interval(self.params.timeout))
    }

    /// The Next Seqno of Stop-Sessions (RFC 4656 3.8): the first packet neither sent nor
    /// skipped; the packet count once the session is complete.
    pub fn next_seqno(&self) -> u32 {
        self.next.map_or(self.params.schedule.count(), |p| p.seq)
    }

    /// Whether every packet has been sent or skipped.
    pub fn is_finished(&self) -> bool {
        self.next.is_none()
    }

    /// Ranges of skipped packets in increasing order, adjacent ranges merged: the skip ranges
    /// of Stop-Sessions (RFC 4656 3.8). There is one range per run of consecutive skips, so
    /// at most half the packet count.
    pub fn skip_ranges(&self) -> &[SkipRange] {
        &self.skipped
    }

    /// Gives up on the next packet without sending it and records it as skipped. Returns its
    /// sequence number.
    pub fn skip(&mut self) -> Option<u32> {
        let seq = self.next?.seq;
        match self.skipped.last_mut() {
            Some(r) if r.last.checked_add(1) == Some(seq) => r.last = seq,
            _ => self.skipped.push(SkipRange {
                first: seq,
                last: seq,
            }),
        }
        self.advance();
        Some(seq)
    }

    fn advance(&mut self) {
        self.next = self.cursor.next(&self.params.schedule);
    }

    /// Writes everything of the next packet that does not depend on its timestamp into the
    /// start of `buf`: sequence number, MBZ octets, padding, and in authenticated mode the
    /// sealed first block and HMAC (the timestamp is neither encrypted nor authenticated in
    /// that mode). Does not advance; finish with [`stamp`](Self::stamp) on the same buffer.
    pub fn prepare(&self, buf: &mut [u8]) -> Result<Prepared, SenderError> {
        let seq = self.next.ok_or(SenderError::Finished)?.seq;
        let len = self.packet_len;
        let got = buf.len();
        let pkt = buf
            .get_mut(..len)
            .ok_or(SenderError::BufferTooSmall { need: len, got })?;
        // RFC 4656 4.1.2: all MBZ octets and, unless the caller supplies it, the padding.
        match self.fill {
            PaddingFill::Zeros => pkt.fill(0),
            PaddingFill::Caller => pkt[..self.protection.header_len()].fill(0),
        }
        self.protection
            .write_seq(pkt, seq)
            .ok_or(SenderError::BufferTooSmall { need: len, got })?;
        if let PacketProtection::Sealed(crypto) = &self.protection {
            if crypto.mode() == SecureMode::Authenticated {
                crypto.seal(pkt)?;
            }
        }
        Ok(Prepared { seq, len })
    }

    /// Completes a prepared packet with its send timestamp and error estimate (sealing it in
    /// encrypted mode), advances to the next packet, and returns the packet length.
    pub fn stamp(
        &mut self,
        buf: &mut [u8],
        prepared: Prepared,
        timestamp: OwampTime,
        error: ErrorEstimate,
    ) -> Result<usize, SenderError> {
        let next = self.next.ok_or(SenderError::Finished)?;
        if next.seq != prepared.seq || prepared.len != self.packet_len {
            return Err(SenderError::NotNextPacket {
                prepared: prepared.seq,
            });
        }
        let len = self.packet_len;
        let got = buf.len();
        let pkt = buf
            .get_mut(..len)
            .ok_or(SenderError::BufferTooSmall { need: len, got })?;
        self.protection
            .write_stamp(pkt, timestamp, error)
            .ok_or(SenderError::BufferTooSmall { need: len, got })?;
        if let PacketProtection::Sealed(crypto) = &self.protection {
            if crypto.mode() == SecureMode::Encrypted {
                crypto.seal(pkt)?;
            }
        }
        self.advance();
        Ok(len)
    }

    /// Builds the next packet into `buf` with the given send timestamp and error estimate
    /// ([`prepare`](Self::prepare) then [`stamp`](Self::stamp)), advances, and returns the
    /// packet length.
    pub fn build(
        &mut self,
        buf: &mut [u8],
        timestamp: OwampTime,
        error: ErrorEstimate,
    ) -> Result<usize, SenderError> {
        let p = self.prepare(buf)?;
        self.stamp(buf, p, timestamp, error)
    }
}
