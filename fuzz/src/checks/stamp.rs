//! Checks for STAMP (RFC 8762) and TWAMP Light: the packet layouts of
//! `owamp_core::wire::stamp` and the reflector and sender of `owamp_core::session::stamp`.

use std::time::Duration;

use owamp_core::crypto::StampKey;
use owamp_core::session::stamp::{Numbering, StampReflector, StampSender, TestFormat};
use owamp_core::time::{ErrorEstimate, OwampTime};
use owamp_core::wire::{ReflectorPacket, StampMode, TestPacket, WireError};

use super::Input;

/// STAMP Session-Sender and Session-Reflector packets (RFC 8762 4.2, 4.3).
///
/// Input: one octet (bit 0: authenticated, bit 1: reflector packet), then the packet.
///
/// - a packet shorter than the base packet (44 or 112 octets) is `Truncated`;
/// - an accepted one has a valid error estimate, returns the octets after the base packet,
///   and writing it back gives a base packet that parses to the same fields.
pub fn wire_stamp_packet(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.u8();
    let mode = if flags & 1 == 0 {
        StampMode::Unauthenticated
    } else {
        StampMode::Authenticated
    };
    let bytes = input.rest();
    let base = mode.base_len();
    if flags & 2 == 0 {
        let parsed = TestPacket::parse_stamp(mode, bytes);
        if bytes.len() < base {
            assert!(
                matches!(parsed, Err(WireError::Truncated { .. })),
                "{parsed:?}"
            );
        }
        let Ok((p, rest)) = parsed else { return };
        assert!(p.error_estimate.is_valid());
        assert_eq!(rest, &bytes[base..]);
        let mut w = Vec::new();
        p.write_stamp(mode, &mut w);
        assert_eq!(w.len(), base);
        assert_eq!(TestPacket::parse_stamp(mode, &w), Ok((p, &[][..])));
    } else {
        let parsed = ReflectorPacket::parse_stamp(mode, bytes);
        if bytes.len() < base {
            assert!(
                matches!(parsed, Err(WireError::Truncated { .. })),
                "{parsed:?}"
            );
        }
        let Ok((p, rest)) = parsed else { return };
        assert!(p.error_estimate.is_valid());
        assert_eq!(rest, &bytes[base..]);
        let mut w = Vec::new();
        p.write_stamp(mode, &mut w);
        assert_eq!(w.len(), base);
        assert_eq!(ReflectorPacket::parse_stamp(mode, &w), Ok((p, &[][..])));
    }
}

/// The STAMP / TWAMP Light reflector fed arbitrary datagrams from a few peers.
///
/// Input: format octet (0 STAMP, 1 authenticated STAMP, 2 TWAMP Light), numbering octet
/// (even: stateless; odd: stateful keeping 1 to 4 peers), key (32 octets), then datagrams:
/// source port octet, u16 length, octets.
///
/// - an answered datagram gets a reply as long as it or the format's reflector header if
///   longer, carrying the sender's sequence number when stateless and a valid HMAC when
///   authenticated; a refused one leaves no reply and is counted as malformed or bad HMAC;
/// - a stateful reflector never keeps more peers than allowed;
/// - a sender of the same format always gets its own packets reflected and reads the replies.
pub fn session_stamp_reflector(data: &[u8]) {
    let mut input = Input::new(data);
    let f = input.u8() % 3;
    let n = input.u8();
    let key_octets: [u8; 32] = input.array();
    let key = StampKey::new(key_octets.to_vec()).expect("32-octet key");
    let format = || match f {
        0 => TestFormat::Stamp,
        1 => TestFormat::StampAuthenticated(key.clone()),
        _ => TestFormat::TwampLight,
    };
    let max_peers = usize::from((n >> 1) % 4) + 1;
    let numbering = if n & 1 == 0 {
        Numbering::Stateless
    } else {
        Numbering::Stateful { max_peers }
    };
    let header = match f {
        0 => 44,
        1 => 112,
        _ => 41,
    };
    let mut reflector = StampReflector::new(format(), numbering).expect("reflector");
    let mut sender = StampSender::new(
        format(),
        format().default_packet_len(),
        64,
        Duration::from_millis(1),
    )
    .expect("sender");
    let ee = ErrorEstimate::from_raw(1);
    let (mut pkt, mut reply) = (Vec::new(), Vec::new());
    for i in 0..64u64 {
        if input.is_empty() {
            break;
        }
        let peer = std::net::SocketAddr::from(([192, 0, 2, 1], u16::from(input.u8())));
        let len = usize::from(input.u16());
        let datagram = input.bytes(len);
        let before = reflector.counters();
        let t = OwampTime::from_raw(i << 20);
        match reflector.reflect(peer, t, 64, datagram, t, ee, &mut reply) {
            Ok(p) => {
                assert_eq!(reply.len(), datagram.len().max(header));
                assert_eq!(reflector.counters().reflected, before.reflected + 1);
                if f == 1 {
                    key.verify(&reply).expect("the reply's HMAC");
                }
                if n & 1 == 0 {
                    let seq = u32::from_be_bytes([reply[0], reply[1], reply[2], reply[3]]);
                    assert_eq!(seq, p.seq);
                }
            }
            Err(_) => {
                assert!(reply.is_empty());
                let c = reflector.counters();
                assert_eq!(c.reflected, before.reflected);
                assert_eq!(
                    c.malformed + c.bad_hmac,
                    before.malformed + before.bad_hmac + 1
                );
            }
        }
        if n & 1 == 1 {
            assert!(reflector.peers() <= max_peers);
        }
        let _ = sender.handle_reply(t, 64, ee, datagram);
        if sender.build(t, ee, &mut pkt).expect("build").is_some() {
            let sent = reflector
                .reflect(peer, t, 255, &pkt, t, ee, &mut reply)
                .expect("the sender's packet reflects");
            let rec = sender
                .handle_reply(t, 255, ee, &reply)
                .expect("read the reply");
            assert_eq!(rec.sender_seq, sent.seq);
            assert_eq!(rec.sender_ttl, 255);
        }
    }
}
