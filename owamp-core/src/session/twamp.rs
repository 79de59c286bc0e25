//! TWAMP-Test (RFC 5357 4): the session-sender and the session-reflector, per packet, sans-IO.
//!
//! Both are built from the [`SessionInfo`] a control machine speaking TWAMP hands out
//! ([`Output::SessionAccepted`](crate::io::Output::SessionAccepted)): at the server (role
//! `Receiver`) build a [`Reflector`], at the client (role `Sender`) a [`SessionSender`]. Neither
//! reads a clock or draws randomness: the host passes the times it read (the send time just
//! before sending, the receive time with the datagram, preferably the kernel's) and the
//! sender's padding.
//!
//! ```text
//! sender host                                   reflector host
//! SessionSender::build(now, ee, &mut buf) --->  Reflector::reflect(recv_time, ttl, datagram,
//!                                                                  send_now, ee, &mut out)
//! SessionSender::handle_reply(recv_time, <---   (out is sent back to the datagram's source)
//!     ttl, ee, datagram) -> TwoWayRecord
//! ```
//!
//! [`TestSession::twamp`](super::TestSession::twamp) wraps them behind the same contract as
//! OWAMP's sessions (the sender on the schedule of its local request; the reflector's
//! [`accept`](Reflector::accept) on arrival and [`reply`](Reflector::reply) stamped just before
//! the reply leaves), and [`crate::connection`] drives that for a whole control connection.
//!
//! The records go to [`crate::stats::twamp::TwoWaySummary`], which computes what twping prints.
//! When the sender's session is over (its schedule is the host's: TWAMP does not send it, RFC
//! 5357 3.5), the host reports it to the control client with `Input::SessionFinished`, which
//! sends Stop-Sessions once the loss timeout has passed. The reflector keeps answering until the
//! control server asks for `StopLocalSessions`, and for the request's Timeout after that (RFC
//! 5357 3.8).

use crate::crypto::CryptoError;
use crate::io::SessionInfo;
use crate::time::{ErrorEstimate, OwampTime};
use crate::wire::{Mode, ReflectorPacket, TestPacket, WireError};

use super::packet::PacketProtection;
use super::test_session::{packet_protection, SessionSetupError};

/// Why a TWAMP test datagram was not accepted. Such datagrams are dropped (and may be
/// counted); they never end a session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TwampPacketError {
    /// The datagram is not a valid packet of the session's mode.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// Too short to open, or its HMAC does not match.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A reply to a packet this sender never sent.
    #[error("reply to sequence number {0}, which was not sent")]
    NotSent(u32),
}

/// The padding twping uses by default: the difference of the reflector's and the sender's
/// headers, so that both directions carry packets of the same size (27 octets in open mode, 64
/// in authenticated and encrypted modes).
pub const fn default_padding(mode: Mode) -> u32 {
    (ReflectorPacket::header_len(mode) - TestPacket::header_len(mode)) as u32
}

/// The session-reflector of one TWAMP session (RFC 5357 4.2).
#[derive(Debug, Clone)]
pub struct Reflector {
    protection: PacketProtection,
    next_seq: u32,
}

impl Reflector {
    /// The reflector for a session the control server accepted.
    pub fn new(info: &SessionInfo) -> Result<Self, SessionSetupError> {
        Ok(Self::with_protection(packet_protection(info)?))
    }

    /// The reflector for packets protected as `protection`.
    pub fn with_protection(protection: PacketProtection) -> Self {
        Self {
            protection,
            next_seq: 0,
        }
    }

    /// Packets reflected so far (the next reflector sequence number).
    pub fn reflected(&self) -> u32 {
        self.next_seq
    }

    /// Answers one sender packet (RFC 5357 4.2.1): `datagram` arrived at `received` with TTL
    /// `ttl`; the reply, stamped `send_time` with `error_estimate`, replaces the contents of
    /// `out`. Returns the sender's fields.
    ///
    /// The reply is as long as the sender's packet, or the reflector header if that is longer;
    /// its padding is a copy of the start of the sender's padding (as twampd does). An invalid
    /// packet leaves `out` empty and the sequence number unused. This is
    /// [`accept`](Self::accept) followed by [`reply`](Self::reply).
    pub fn reflect(
        &mut self,
        received: OwampTime,
        ttl: u8,
        datagram: &[u8],
        send_time: OwampTime,
        error_estimate: ErrorEstimate,
        out: &mut Vec<u8>,
    ) -> Result<TestPacket, TwampPacketError> {
        out.clear();
        let incoming = self.accept(received, ttl, datagram)?;
        self.reply(&incoming, send_time, error_estimate, out)?;
        Ok(incoming.sent)
    }

    /// Checks a sender packet that arrived at `received` with TTL `ttl` (its length, HMAC and
    /// fields) and keeps what its reply needs, so that the reply can be stamped later, just
    /// before it leaves (RFC 5357 4.2.1: the Timestamp is the time the reply is sent).
    pub fn accept(
        &self,
        received: OwampTime,
        ttl: u8,
        datagram: &[u8],
    ) -> Result<Incoming, TwampPacketError> {
        let mode = self.protection.mode();
        let sent = match &self.protection {
            PacketProtection::Open => TestPacket::parse(mode, datagram)?.0,
            PacketProtection::Sealed(c) => {
                let mut plain = datagram.to_vec();
                c.open(&mut plain)?;
                TestPacket::parse(mode, &plain)?.0
            }
        };
        // RFC 5357 4.2.1: the reflector's padding comes from the sender's.
        let pad_len = datagram
            .len()
            .saturating_sub(ReflectorPacket::header_len(mode));
        let start = TestPacket::header_len(mode);
        let padding = datagram
            .get(start..start.saturating_add(pad_len))
            .unwrap_or_default()
            .to_vec();
        Ok(Incoming {
            sent,
            received,
            ttl,
            padding,
        })
    }

    /// The reply to a packet [`accept`](Self::accept)ed, stamped `send_time` with
    /// `error_estimate`, replacing the contents of `out`; takes the next reflector sequence
    /// number.
    pub fn reply(
        &mut self,
        incoming: &Incoming,
        send_time: OwampTime,
        error_estimate: ErrorEstimate,
        out: &mut Vec<u8>,
    ) -> Result<(), TwampPacketError> {
        out.clear();
        let mode = self.protection.mode();
        let sent = &incoming.sent;
        let reply = ReflectorPacket {
            seq: self.next_seq,
            timestamp: send_time,
            error_estimate,
            receive_timestamp: incoming.received,
            sender_seq: sent.seq,
            sender_timestamp: sent.timestamp,
            sender_error_estimate: sent.error_estimate,
            sender_ttl: incoming.ttl,
            hmac: [0; 16],
        };
        reply.write_to(mode, &incoming.padding, out);
        if let PacketProtection::Sealed(c) = &self.protection {
            if let Err(e) = c.seal_reflector(out) {
                out.clear();
                return Err(e.into());
            }
        }
        self.next_seq = self.next_seq.wrapping_add(1);
        Ok(())
    }

    /// The mode of the session's packets.
    pub fn mode(&self) -> Mode {
        self.protection.mode()
    }
}

/// A sender packet the reflector accepted, waiting for its reply ([`Reflector::accept`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The sender's fields.
    pub sent: TestPacket,
    /// When it arrived.
    pub received: OwampTime,
    /// The TTL it arrived with (the reply's Sender TTL).
    pub ttl: u8,
    /// The padding the reply carries: the start of the sender's.
    padding: Vec<u8>,
}

impl Incoming {
    /// Octets of the reply.
    pub fn reply_len(&self, mode: Mode) -> usize {
        ReflectorPacket::header_len(mode) + self.padding.len()
    }
}

/// A test packet the session-sender sent that no reply has answered (yet): once the session is
/// over, a lost packet, with what a two-way session file keeps of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentPacket {
    /// Its sequence number.
    pub seq: u32,
    /// Its timestamp: when it left.
    pub send_time: OwampTime,
    /// The error estimate it carried.
    pub send_error: ErrorEstimate,
}

/// One reflected packet as the session-sender saw it: everything twping `-R` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwoWayRecord {
    /// The sender's sequence number.
    pub sender_seq: u32,
    /// When the sender sent it.
    pub send_time: OwampTime,
    /// The sender's error estimate.
    pub send_error: ErrorEstimate,
    /// When the reflector received it.
    pub reflector_recv_time: OwampTime,
    /// The reflector's error estimate (for both of its timestamps).
    pub reflector_error: ErrorEstimate,
    /// The TTL the reflector saw.
    pub sender_ttl: u8,
    /// The reflector's sequence number.
    pub reflector_seq: u32,
    /// When the reflector sent the reply.
    pub reflector_send_time: OwampTime,
    /// When the sender received the reply.
    pub recv_time: OwampTime,
    /// The sender's error estimate at reception.
    pub recv_error: ErrorEstimate,
    /// The TTL of the reply as the sender received it.
    pub reply_ttl: u8,
}

/// The session-sender of one TWAMP session (RFC 5357 4.1): builds packets and reads the
/// reflector's replies. The schedule is the host's (it decides when to call
/// [`build`](Self::build)).
#[derive(Debug, Clone)]
pub struct SessionSender {
    protection: PacketProtection,
    padding: Vec<u8>,
    next_seq: u32,
}

impl SessionSender {
    /// The sender for a session the control client set up, with this padding (random octets
    /// from the host, of the request's padding length: see [`default_padding`]).
    pub fn new(info: &SessionInfo, padding: Vec<u8>) -> Result<Self, SessionSetupError> {
        Ok(Self::with_protection(packet_protection(info)?, padding))
    }

    /// The sender for packets protected as `protection`.
    pub fn with_protection(protection: PacketProtection, padding: Vec<u8>) -> Self {
        Self {
            protection,
            padding,
            next_seq: 0,
        }
    }

    /// Packets built so far (the next sequence number).
    pub fn sent(&self) -> u32 {
        self.next_seq
    }

    /// Builds the next packet (RFC 5357 4.1.2: an OWAMP test packet), stamped `now` with
    /// `error_estimate`, into `out` (replacing its contents); returns its sequence number.
    pub fn build(
        &mut self,
        now: OwampTime,
        error_estimate: ErrorEstimate,
        out: &mut Vec<u8>,
    ) -> Result<u32, CryptoError> {
        out.clear();
        let seq = self.next_seq;
        let p = TestPacket {
            seq,
            timestamp: now,
            error_estimate,
            hmac: [0; 16],
        };
        p.write_to(self.protection.mode(), &self.padding, out);
        if let PacketProtection::Sealed(c) = &self.protection {
            c.seal(out)?;
        }
        self.next_seq = self.next_seq.wrapping_add(1);
        Ok(seq)
    }

    /// Reads a reply that arrived at `received` with TTL `ttl` (the host has checked that it
    /// came from the reflector's address and port).
    pub fn handle_reply(
        &self,
        received: OwampTime,
        ttl: u8,
        error_estimate: ErrorEstimate,
        datagram: &[u8],
    ) -> Result<TwoWayRecord, TwampPacketError> {
        read_reply(
            &self.protection,
            self.next_seq,
            received,
            ttl,
            error_estimate,
            datagram,
        )
    }
}

/// Reads a reflector's reply (RFC 5357 4.2.1) to a sender that has sent packets `0..sent`,
/// protected as `protection`: opened, checked, and turned into the two-way record of the
/// packet it answers.
pub(crate) fn read_reply(
    protection: &PacketProtection,
    sent: u32,
    received: OwampTime,
    ttl: u8,
    error_estimate: ErrorEstimate,
    datagram: &[u8],
) -> Result<TwoWayRecord, TwampPacketError> {
    let mode = protection.mode();
    let mut plain;
    let bytes = match protection {
        PacketProtection::Open => datagram,
        PacketProtection::Sealed(c) => {
            plain = datagram.to_vec();
            c.open_reflector(&mut plain)?;
            &plain[..]
        }
    };
    let (r, _) = ReflectorPacket::parse(mode, bytes)?;
    if r.sender_seq >= sent {
        return Err(TwampPacketError::NotSent(r.sender_seq));
    }
    Ok(TwoWayRecord {
        sender_seq: r.sender_seq,
        send_time: r.sender_timestamp,
        send_error: r.sender_error_estimate,
        reflector_recv_time: r.receive_timestamp,
        reflector_error: r.error_estimate,
        sender_ttl: r.sender_ttl,
        reflector_seq: r.seq,
        reflector_send_time: r.timestamp,
        recv_time: received,
        recv_error: error_estimate,
        reply_ttl: ttl,
    })
}
