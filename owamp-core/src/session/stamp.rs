//! STAMP (RFC 8762) and TWAMP Light (RFC 5357 Appendix I): test sessions without a control
//! connection, sans-IO.
//!
//! Both ends are configured out of band (addresses, ports, and in authenticated mode a
//! [`StampKey`]): there is no SID, no negotiation and no Stop-Sessions. The
//! [`StampReflector`] answers every valid packet that reaches it; the [`StampSender`] sends a
//! fixed number of packets at a fixed interval and turns replies into the
//! [`TwoWayRecord`]s that [`crate::stats::twamp::TwoWaySummary`] summarizes, as for TWAMP.
//!
//! [`TestFormat`] chooses the packets: STAMP unauthenticated or authenticated (RFC 8762 4.2,
//! 4.3), or TWAMP Light (TWAMP's open-mode packets, RFC 5357 4.1.2 and 4.2.1). The formats
//! interoperate in unauthenticated mode as RFC 8762 4.6 asks: a STAMP sender's 44-octet
//! packet is a TWAMP test packet with padding, and a TWAMP Light reflector's answer to it is
//! a STAMP reflector packet; a STAMP reflector answers a TWAMP Light sender's shorter packet
//! with its 44-octet base packet, which a TWAMP Light sender reads as a reflector packet with
//! three octets of padding.
//!
//! ```text
//! sender host                                      reflector host
//! sender.due(start) -> when to send packet n
//! sender.build(now, ee, &mut buf)  ------------->  reflector.reflect(peer, recv_time, ttl,
//!                                                       datagram, send_now, ee, &mut out)
//! sender.handle_reply(recv_time,   <-------------  (out goes back to peer)
//!     ttl, ee, datagram) -> TwoWayRecord
//! ```
//!
//! Neither machine reads a clock or a socket: the host passes the times it read (the kernel's
//! receive time when it has one) and the TTL it received.

use core::net::SocketAddr;
use core::time::Duration;
use peers::Peers;

use crate::crypto::StampKey;
use crate::time::{ErrorEstimate, OwampTime};
use crate::wire::{Mode, ReflectorPacket, StampMode, TestPacket};

pub use super::twamp::{TwampPacketError as StampPacketError, TwoWayRecord};

/// The largest test packet either machine builds or answers: the largest UDP payload over
/// IPv4.
pub const MAX_PACKET_LEN: usize = 65_507;

/// Peers whose sequence numbers a stateful reflector keeps, when not configured.
pub const DEFAULT_MAX_PEERS: usize = 1024;

/// Which test packets a session uses.
#[derive(Debug, Clone)]
pub enum TestFormat {
    /// STAMP, unauthenticated mode (RFC 8762 4.2.1, 4.3.1): 44-octet base packets.
    Stamp,
    /// STAMP, authenticated mode (RFC 8762 4.2.2, 4.3.2): 112-octet base packets with an
    /// HMAC-SHA-256 keyed with this key.
    StampAuthenticated(StampKey),
    /// TWAMP Light (RFC 5357 Appendix I): TWAMP's unauthenticated packets, a 14-octet sender
    /// header and a 41-octet reflector header, each followed by padding.
    TwampLight,
}

impl TestFormat {
    /// The shortest sender packet of this format.
    pub fn min_packet_len(&self) -> usize {
        match self {
            TestFormat::Stamp => StampMode::Unauthenticated.base_len(),
            TestFormat::StampAuthenticated(_) => StampMode::Authenticated.base_len(),
            TestFormat::TwampLight => TestPacket::OPEN_LEN,
        }
    }

    /// The sender packet length used when none is configured: the STAMP base packet, or for
    /// TWAMP Light twping's (its header and 27 octets of padding, the size of the reflector's
    /// header, so that both directions carry packets of the same size).
    pub fn default_packet_len(&self) -> usize {
        match self {
            TestFormat::TwampLight => ReflectorPacket::OPEN_LEN,
            f => f.min_packet_len(),
        }
    }

    fn stamp_mode(&self) -> Option<StampMode> {
        match self {
            TestFormat::Stamp => Some(StampMode::Unauthenticated),
            TestFormat::StampAuthenticated(_) => Some(StampMode::Authenticated),
            TestFormat::TwampLight => None,
        }
    }

    fn key(&self) -> Option<&StampKey> {
        match self {
            TestFormat::StampAuthenticated(k) => Some(k),
            _ => None,
        }
    }
}

/// Why a sender or reflector cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StampSetupError {
    /// The packet length is below the format's header.
    #[error("a test packet of this format has at least {min} octets, not {len}")]
    PacketTooShort {
        /// The length asked for.
        len: usize,
        /// The shortest allowed.
        min: usize,
    },
    /// The packet length is above [`MAX_PACKET_LEN`].
    #[error("a test packet has at most {max} octets, not {len}")]
    PacketTooLong {
        /// The length asked for.
        len: usize,
        /// The longest allowed.
        max: usize,
    },
    /// A stateful reflector must keep at least one peer.
    #[error("a stateful reflector keeps at least one peer")]
    NoPeers,
}

/// How a [`StampReflector`] numbers its packets (RFC 8762 4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Numbering {
    /// Stateless: the reply carries the sender's sequence number.
    Stateless,
    /// Stateful: the reflector counts the packets it reflected to each peer (source address
    /// and port) from 0, keeping at most this many peers (the least recently heard is
    /// forgotten first).
    Stateful {
        /// Peers kept.
        max_peers: usize,
    },
}

/// What a reflector has done since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReflectorCounters {
    /// Packets answered.
    pub reflected: u64,
    /// Datagrams dropped because they are not packets of the format (too short, corrupt error
    /// estimate).
    pub malformed: u64,
    /// Authenticated-mode datagrams dropped because their HMAC is wrong (RFC 8762 4.4).
    pub bad_hmac: u64,
    /// Peers a stateful reflector forgot to make room for a new one.
    pub evicted: u64,
}

/// A STAMP or TWAMP Light Session-Reflector (RFC 8762 4.3, RFC 5357 Appendix I) for any
/// number of senders.
///
/// ```
/// use owamp_core::session::stamp::{Numbering, StampReflector, StampSender, TestFormat};
/// use owamp_core::stats::twamp::TwoWaySummary;
/// use owamp_core::time::{ErrorEstimate, OwampTime};
/// use std::time::Duration;
///
/// let ee = ErrorEstimate::UNSYNCHRONIZED;
/// let t0 = OwampTime::from_parts(3_900_000_000, 0);
/// let mut sender = StampSender::new(TestFormat::Stamp, 44, 3, Duration::from_millis(10))?;
/// let mut reflector = StampReflector::new(TestFormat::TwampLight, Numbering::Stateless)?;
/// let peer = "192.0.2.1:5000".parse()?;
/// let (mut pkt, mut reply, mut records) = (Vec::new(), Vec::new(), Vec::new());
/// while let Some(at) = sender.due(t0) {
///     sender.build(at, ee, &mut pkt)?;
///     let there = at.saturating_add(Duration::from_millis(1));
///     reflector.reflect(peer, there, 254, &pkt, there, ee, &mut reply)?;
///     let back = there.saturating_add(Duration::from_millis(1));
///     records.push(sender.handle_reply(back, 254, ee, &reply)?);
/// }
/// let s = TwoWaySummary::new(&records, sender.sent());
/// assert_eq!((s.sent, s.lost), (3, 0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct StampReflector {
    format: TestFormat,
    peers: Option<Peers>,
    counters: ReflectorCounters,
}

impl StampReflector {
    /// A reflector for `format` numbering its packets as `numbering` says.
    pub fn new(format: TestFormat, numbering: Numbering) -> Result<Self, StampSetupError> {
        let peers = match numbering {
            Numbering::Stateless => None,
            Numbering::Stateful { max_peers: 0 } => return Err(StampSetupError::NoPeers),
            Numbering::Stateful { max_peers } => Some(Peers::new(max_peers)),
        };
        Ok(Self {
            format,
            peers,
            counters: ReflectorCounters::default(),
        })
    }

    /// What it has done so far.
    pub fn counters(&self) -> ReflectorCounters {
        self.counters
    }

    /// Peers a stateful reflector currently keeps (0 when stateless).
    pub fn peers(&self) -> usize {
        self.peers.as_ref().map_or(0, Peers::len)
    }

    /// Answers one datagram that arrived from `peer` at `received` with TTL `ttl` (255 when the
    /// host cannot read it, RFC 5357 4.2.1); the reply, stamped `send_time` with
    /// `error_estimate`, replaces the contents of `out` and goes back to `peer`. Returns the
    /// sender's fields. An invalid datagram leaves `out` empty and is counted.
    ///
    /// The reply has the sender packet's length, or the format's reflector header if that is
    /// longer (RFC 8762 4.6, RFC 6038's symmetric size): in STAMP the octets after the base
    /// packet are copied from the sender's packet (RFC 8762 4.6); in TWAMP Light the padding
    /// is the start of the sender's padding (RFC 5357 4.2.1). `out` is reused: once its
    /// capacity has grown to the largest packet seen, a reply allocates nothing (except, in a
    /// stateful reflector, the table entry of a peer heard for the first time).
    #[allow(clippy::too_many_arguments)]
    pub fn reflect(
        &mut self,
        peer: SocketAddr,
        received: OwampTime,
        ttl: u8,
        datagram: &[u8],
        send_time: OwampTime,
        error_estimate: ErrorEstimate,
        out: &mut Vec<u8>,
    ) -> Result<TestPacket, StampPacketError> {
        out.clear();
        let sent = match self.parse(datagram) {
            Ok(p) => p,
            Err(e) => {
                match e {
                    StampPacketError::Crypto(crate::crypto::CryptoError::HmacMismatch) => {
                        self.counters.bad_hmac += 1
                    }
                    _ => self.counters.malformed += 1,
                }
                return Err(e);
            }
        };
        let seq = match &mut self.peers {
            None => sent.seq,
            Some(peers) => {
                let (seq, evicted) = peers.next_seq(peer, received);
                self.counters.evicted += u64::from(evicted);
                seq
            }
        };
        let reply = ReflectorPacket {
            seq,
            timestamp: send_time,
            error_estimate,
            receive_timestamp: received,
            sender_seq: sent.seq,
            sender_timestamp: sent.timestamp,
            sender_error_estimate: sent.error_estimate,
            sender_ttl: ttl,
            hmac: [0; 16],
        };
        match self.format.stamp_mode() {
            Some(mode) => {
                out.reserve(datagram.len().max(mode.base_len()));
                reply.write_stamp(mode, out);
                // RFC 8762 4.6: the remainder of a longer packet is copied.
                out.extend_from_slice(datagram.get(mode.base_len()..).unwrap_or_default());
                if let Some(key) = self.format.key() {
                    key.seal(out)?;
                }
            }
            None => {
                // RFC 5357 4.2.1: the reflector's padding is the start of the sender's, cut so
                // that both packets have the same length.
                let header = ReflectorPacket::OPEN_LEN;
                let pad_len = datagram.len().saturating_sub(header);
                let start = TestPacket::OPEN_LEN;
                let padding = datagram.get(start..start + pad_len).unwrap_or_default();
                reply.write_to(Mode::Open, padding, out);
            }
        }
        self.counters.reflected += 1;
        Ok(sent)
    }

    fn parse(&self, datagram: &[u8]) -> Result<TestPacket, StampPacketError> {
        if let Some(key) = self.format.key() {
            // RFC 8762 4.4: check the HMAC before anything else.
            key.verify(datagram)?;
        }
        Ok(match self.format.stamp_mode() {
            Some(StampMode::Unauthenticated) if datagram.len() < 44 => {
                // RFC 8762 4.6: a TWAMP Light sender's packet may be shorter than STAMP's
                // base packet; its fields are at the same offsets, the rest is MBZ.
                TestPacket::parse(Mode::Open, datagram)?.0
            }
            Some(mode) => TestPacket::parse_stamp(mode, datagram)?.0,
            None => TestPacket::parse(Mode::Open, datagram)?.0,
        })
    }
}

/// A STAMP or TWAMP Light Session-Sender (RFC 8762 4.2, RFC 5357 Appendix I): `count`
/// packets of `packet_len` octets, one every `interval` from a start time the host chooses.
#[derive(Debug, Clone)]
pub struct StampSender {
    format: TestFormat,
    packet_len: usize,
    count: u32,
    interval: Duration,
    next_seq: u32,
}

impl StampSender {
    /// A sender of `count` packets of `packet_len` octets (at least the format's
    /// [`min_packet_len`](TestFormat::min_packet_len), the octets after the header zero), one
    /// every `interval`.
    pub fn new(
        format: TestFormat,
        packet_len: usize,
        count: u32,
        interval: Duration,
    ) -> Result<Self, StampSetupError> {
        let min = format.min_packet_len();
        if packet_len < min {
            return Err(StampSetupError::PacketTooShort {
                len: packet_len,
                min,
            });
        }
        if packet_len > MAX_PACKET_LEN {
            return Err(StampSetupError::PacketTooLong {
                len: packet_len,
                max: MAX_PACKET_LEN,
            });
        }
        Ok(Self {
            format,
            packet_len,
            count,
            interval,
            next_seq: 0,
        })
    }

    /// Packets built so far (the next sequence number).
    pub fn sent(&self) -> u32 {
        self.next_seq
    }

    /// Packets the session sends.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Octets of each packet.
    pub fn packet_len(&self) -> usize {
        self.packet_len
    }

    /// When the next packet is due if the session started at `start` (packet `n` at `start +
    /// n * interval`); `None` once all are built.
    pub fn due(&self, start: OwampTime) -> Option<OwampTime> {
        if self.next_seq >= self.count {
            return None;
        }
        let offset = self.interval.saturating_mul(self.next_seq);
        Some(start.saturating_add(offset))
    }

    /// Builds the next packet, stamped `now` with `error_estimate`, into `out` (replacing its
    /// contents); returns its sequence number, or `None` once all `count` are built.
    pub fn build(
        &mut self,
        now: OwampTime,
        error_estimate: ErrorEstimate,
        out: &mut Vec<u8>,
    ) -> Result<Option<u32>, StampPacketError> {
        out.clear();
        if self.next_seq >= self.count {
            return Ok(None);
        }
        let seq = self.next_seq;
        let p = TestPacket {
            seq,
            timestamp: now,
            error_estimate,
            hmac: [0; 16],
        };
        out.reserve(self.packet_len);
        match self.format.stamp_mode() {
            Some(mode) => p.write_stamp(mode, out),
            None => p.write_to(Mode::Open, &[], out),
        }
        out.resize(self.packet_len, 0);
        if let Some(key) = self.format.key() {
            key.seal(out)?;
        }
        self.next_seq += 1;
        Ok(Some(seq))
    }

    /// Reads a reply that arrived at `received` with TTL `ttl` (the host has checked that it
    /// came from the reflector's address and port).
    ///
    /// Unauthenticated replies (STAMP or TWAMP Light) are read leniently: any reply of at
    /// least TWAMP's 41-octet reflector header is read as a STAMP reflector packet, whose
    /// fields are at the same offsets, and MBZ octets are not checked (RFC 8762 4.6).
    pub fn handle_reply(
        &self,
        received: OwampTime,
        ttl: u8,
        error_estimate: ErrorEstimate,
        datagram: &[u8],
    ) -> Result<TwoWayRecord, StampPacketError> {
        let r = match self.format.key() {
            Some(key) => {
                key.verify(datagram)?;
                ReflectorPacket::parse_stamp(StampMode::Authenticated, datagram)?.0
            }
            None => {
                let base = StampMode::Unauthenticated.base_len();
                if (ReflectorPacket::OPEN_LEN..base).contains(&datagram.len()) {
                    let mut padded = [0u8; 44];
                    padded[..datagram.len()].copy_from_slice(datagram);
                    ReflectorPacket::parse_stamp(StampMode::Unauthenticated, &padded)?.0
                } else {
                    ReflectorPacket::parse_stamp(StampMode::Unauthenticated, datagram)?.0
                }
            }
        };
        if r.sender_seq >= self.next_seq {
            return Err(StampPacketError::NotSent(r.sender_seq));
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
}

mod peers {
    //! The stateful reflector's per-peer counters: a bounded table, least recently heard peer
    //! evicted first.

    use std::collections::BTreeMap;

    use core::net::SocketAddr;

    use crate::time::OwampTime;

    #[derive(Debug)]
    pub(super) struct Peers {
        map: BTreeMap<SocketAddr, (u32, OwampTime)>,
        max: usize,
    }

    impl Peers {
        pub(super) fn new(max: usize) -> Self {
            Self {
                map: BTreeMap::new(),
                max,
            }
        }

        pub(super) fn len(&self) -> usize {
            self.map.len()
        }

        /// The sequence number of the next reply to `peer`, heard at `now`; whether another
        /// peer was forgotten to make room.
        pub(super) fn next_seq(&mut self, peer: SocketAddr, now: OwampTime) -> (u32, bool) {
            if let Some((seq, last)) = self.map.get_mut(&peer) {
                let s = *seq;
                *seq = seq.wrapping_add(1);
                *last = now;
                return (s, false);
            }
            let mut evicted = false;
            if self.map.len() >= self.max {
                let oldest = self
                    .map
                    .iter()
                    .min_by_key(|(_, (_, last))| *last)
                    .map(|(k, _)| *k);
                if let Some(k) = oldest {
                    self.map.remove(&k);
                    evicted = true;
                }
            }
            self.map.insert(peer, (1, now));
            (0, evicted)
        }
    }
}
