//! STAMP (RFC 8762) and TWAMP Light: byte-exact fixtures of the four packet layouts, property
//! round trips, and whole sessions in memory between every sender and reflector format, with
//! injected loss, duplication and wrong keys.

use std::net::SocketAddr;
use std::time::Duration;

use owamp_core::crypto::{CryptoError, StampKey};
use owamp_core::session::stamp::{
    Numbering, StampPacketError, StampReflector, StampSender, StampSetupError, TestFormat,
    TwoWayRecord,
};
use owamp_core::stats::twamp::TwoWaySummary;
use owamp_core::time::{ErrorEstimate, OwampTime};
use owamp_core::wire::{ReflectorPacket, StampMode, TestPacket, WireError};
use proptest::prelude::*;

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.replace([' ', '\n'], "")).unwrap()
}

fn key() -> StampKey {
    StampKey::new((1..=32).collect()).unwrap()
}

fn sender_fields() -> TestPacket {
    TestPacket {
        seq: 7,
        timestamp: OwampTime::from_raw(0x0102_0304_0506_0708),
        error_estimate: ErrorEstimate::from_raw(0x8001),
        hmac: [0; 16],
    }
}

fn reflector_fields() -> ReflectorPacket {
    ReflectorPacket {
        seq: 0x0a0b_0c0d,
        timestamp: OwampTime::from_raw(0x1112_1314_1516_1718),
        error_estimate: ErrorEstimate::from_raw(0x0001),
        receive_timestamp: OwampTime::from_raw(0x2122_2324_2526_2728),
        sender_seq: 7,
        sender_timestamp: OwampTime::from_raw(0x0102_0304_0506_0708),
        sender_error_estimate: ErrorEstimate::from_raw(0x8001),
        sender_ttl: 0xfe,
        hmac: [0; 16],
    }
}

// RFC 8762 4.2.1: Sequence Number, Timestamp, Error Estimate, 30 MBZ octets.
#[test]
fn unauthenticated_sender_packet_fixture() {
    let want = h("00000007 0102030405060708 8001")
        .into_iter()
        .chain([0; 30])
        .collect::<Vec<_>>();
    let mut got = Vec::new();
    sender_fields().write_stamp(StampMode::Unauthenticated, &mut got);
    assert_eq!(got, want);
    let (p, rest) = TestPacket::parse_stamp(StampMode::Unauthenticated, &want).unwrap();
    assert_eq!((p, rest), (sender_fields(), &[][..]));
}

// RFC 8762 4.2.2: Sequence Number, 12 MBZ, Timestamp, Error Estimate, 70 MBZ, HMAC; the HMAC
// is HMAC-SHA-256 over the 96 octets before it, truncated to 16 (value from Python's hmac).
#[test]
fn authenticated_sender_packet_fixture() {
    let mut want = vec![0u8; 112];
    want[..4].copy_from_slice(&h("00000007"));
    want[16..26].copy_from_slice(&h("0102030405060708 8001"));
    want[96..].copy_from_slice(&h("7e15e6fd6ac8cfd3cda7fd2cfa26071e"));
    let mut got = Vec::new();
    sender_fields().write_stamp(StampMode::Authenticated, &mut got);
    key().seal(&mut got).unwrap();
    assert_eq!(got, want);
    key().verify(&want).unwrap();
    let (p, _) = TestPacket::parse_stamp(StampMode::Authenticated, &want).unwrap();
    assert_eq!(p.seq, 7);
    assert_eq!(p.hmac, want[96..112]);
}

// RFC 8762 4.3.1: TWAMP's 41-octet reflector packet and three MBZ octets.
#[test]
fn unauthenticated_reflector_packet_fixture() {
    let want = h("0a0b0c0d 1112131415161718 0001 0000 2122232425262728
                  00000007 0102030405060708 8001 0000 fe 000000");
    assert_eq!(want.len(), 44);
    let mut got = Vec::new();
    reflector_fields().write_stamp(StampMode::Unauthenticated, &mut got);
    assert_eq!(got, want);
    let (p, rest) = ReflectorPacket::parse_stamp(StampMode::Unauthenticated, &want).unwrap();
    assert_eq!((p, rest), (reflector_fields(), &[][..]));
}

// RFC 8762 4.3.2.
#[test]
fn authenticated_reflector_packet_fixture() {
    let mut want = vec![0u8; 112];
    want[..4].copy_from_slice(&h("0a0b0c0d"));
    want[16..26].copy_from_slice(&h("1112131415161718 0001"));
    want[32..40].copy_from_slice(&h("2122232425262728"));
    want[48..52].copy_from_slice(&h("00000007"));
    want[64..74].copy_from_slice(&h("0102030405060708 8001"));
    want[80] = 0xfe;
    let mut got = Vec::new();
    reflector_fields().write_stamp(StampMode::Authenticated, &mut got);
    assert_eq!(got, want);
    let (p, _) = ReflectorPacket::parse_stamp(StampMode::Authenticated, &want).unwrap();
    assert_eq!(p, reflector_fields());
}

#[test]
fn bad_packets_are_typed_errors() {
    for mode in [StampMode::Unauthenticated, StampMode::Authenticated] {
        let n = mode.base_len();
        for len in [0, 1, 14, 41, n - 1] {
            let b = vec![0u8; len];
            assert_eq!(
                TestPacket::parse_stamp(mode, &b).unwrap_err(),
                WireError::Truncated {
                    message: "STAMP Session-Sender packet",
                    needed: n,
                    got: len
                }
            );
            assert!(matches!(
                ReflectorPacket::parse_stamp(mode, &b),
                Err(WireError::Truncated { .. })
            ));
        }
        // A zero multiplier marks the packet corrupt (RFC 4656 4.1.2).
        let mut b = Vec::new();
        let mut p = sender_fields();
        p.error_estimate = ErrorEstimate::from_raw(0x8000);
        p.write_stamp(mode, &mut b);
        assert!(matches!(
            TestPacket::parse_stamp(mode, &b),
            Err(WireError::Invalid {
                field: "error estimate",
                ..
            })
        ));
    }
}

#[test]
fn mbz_octets_are_ignored_on_receipt_and_extra_octets_returned() {
    // RFC 8972 puts an SSID at octets 14-15 and TLVs after the base packet.
    let mut b = Vec::new();
    sender_fields().write_stamp(StampMode::Unauthenticated, &mut b);
    b[14] = 0x12;
    b[15] = 0x34;
    b.extend_from_slice(&[9, 9, 9]);
    let (p, rest) = TestPacket::parse_stamp(StampMode::Unauthenticated, &b).unwrap();
    assert_eq!((p, rest), (sender_fields(), &[9u8, 9, 9][..]));
}

fn arb_ee() -> impl Strategy<Value = ErrorEstimate> {
    (any::<u16>()).prop_map(|r| ErrorEstimate::from_raw(r | 1))
}

proptest! {
    #[test]
    fn sender_packets_round_trip(seq: u32, ts: u64, ee in arb_ee(), hmac: [u8; 16], auth: bool) {
        let mode = if auth { StampMode::Authenticated } else { StampMode::Unauthenticated };
        let p = TestPacket {
            seq,
            timestamp: OwampTime::from_raw(ts),
            error_estimate: ee,
            hmac: if auth { hmac } else { [0; 16] },
        };
        let mut b = Vec::new();
        p.write_stamp(mode, &mut b);
        prop_assert_eq!(b.len(), mode.base_len());
        prop_assert_eq!(TestPacket::parse_stamp(mode, &b).unwrap(), (p, &[][..]));
    }

    #[test]
    fn reflector_packets_round_trip(
        seq: u32, ts: u64, ee in arb_ee(), rts: u64, sseq: u32, sts: u64, see: u16, ttl: u8,
        hmac: [u8; 16], auth: bool,
    ) {
        let mode = if auth { StampMode::Authenticated } else { StampMode::Unauthenticated };
        let p = ReflectorPacket {
            seq,
            timestamp: OwampTime::from_raw(ts),
            error_estimate: ee,
            receive_timestamp: OwampTime::from_raw(rts),
            sender_seq: sseq,
            sender_timestamp: OwampTime::from_raw(sts),
            sender_error_estimate: ErrorEstimate::from_raw(see),
            sender_ttl: ttl,
            hmac: if auth { hmac } else { [0; 16] },
        };
        let mut b = Vec::new();
        p.write_stamp(mode, &mut b);
        prop_assert_eq!(b.len(), mode.base_len());
        prop_assert_eq!(ReflectorPacket::parse_stamp(mode, &b).unwrap(), (p, &[][..]));
    }

    #[test]
    fn reflector_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), which in 0..3u8) {
        let f = match which {
            0 => TestFormat::Stamp,
            1 => TestFormat::StampAuthenticated(key()),
            _ => TestFormat::TwampLight,
        };
        let mut r = StampReflector::new(f, Numbering::Stateful { max_peers: 2 }).unwrap();
        let mut out = Vec::new();
        let t = OwampTime::from_raw(1);
        if r.reflect(peer(1), t, 255, &bytes, t, ErrorEstimate::UNSYNCHRONIZED, &mut out).is_ok() {
            prop_assert_eq!(out.len(), bytes.len().max(match which { 2 => 41, 0 => 44, _ => 112 }));
        } else {
            prop_assert!(out.is_empty());
        }
    }
}

fn peer(port: u16) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1], port))
}

fn format(name: &str) -> TestFormat {
    match name {
        "stamp" => TestFormat::Stamp,
        "auth" => TestFormat::StampAuthenticated(key()),
        "light" => TestFormat::TwampLight,
        _ => unreachable!(),
    }
}

/// A session in memory: the sender sends `count` packets 10 ms apart, the path takes 3 ms
/// each way, packets whose sequence number `lose` selects vanish on the way out, those `dup`
/// selects reach the reflector twice. Returns the records and the sender and reflector.
fn run(
    sender_format: TestFormat,
    len: usize,
    mut reflector: StampReflector,
    count: u32,
    lose: &dyn Fn(u32) -> bool,
    dup: &dyn Fn(u32) -> bool,
) -> (Vec<TwoWayRecord>, StampSender, StampReflector, Vec<usize>) {
    let ee = ErrorEstimate::UNSYNCHRONIZED;
    let start = OwampTime::from_parts(3_900_000_000, 0);
    let mut s = StampSender::new(sender_format, len, count, Duration::from_millis(10)).unwrap();
    let (mut pkt, mut reply, mut records, mut reply_lens) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    while let Some(at) = s.due(start) {
        let seq = s.build(at, ee, &mut pkt).unwrap().unwrap();
        assert_eq!(pkt.len(), len);
        if lose(seq) {
            continue;
        }
        let copies = if dup(seq) { 2 } else { 1 };
        for _ in 0..copies {
            let there = at.saturating_add(Duration::from_millis(3));
            let back = there.saturating_add(Duration::from_millis(4));
            if reflector
                .reflect(
                    peer(5000),
                    there,
                    250,
                    &pkt,
                    there.saturating_add(Duration::from_millis(1)),
                    ee,
                    &mut reply,
                )
                .is_err()
            {
                continue;
            }
            reply_lens.push(reply.len());
            if let Ok(r) = s.handle_reply(back, 251, ee, &reply) {
                records.push(r);
            }
        }
    }
    (records, s, reflector, reply_lens)
}

#[test]
fn every_unauthenticated_pairing_round_trips() {
    // RFC 8762 4.6: STAMP and TWAMP Light senders and reflectors in every combination.
    for (sf, rf, len, reply_len) in [
        ("stamp", "stamp", 44, 44),
        ("stamp", "light", 44, 44),
        ("light", "stamp", 41, 44),
        ("light", "light", 41, 41),
        ("light", "stamp", 14, 44),
        ("stamp", "stamp", 100, 100),
        ("light", "light", 100, 100),
    ] {
        let r = StampReflector::new(format(rf), Numbering::Stateless).unwrap();
        let (records, s, r, lens) = run(format(sf), len, r, 20, &|q| q % 5 == 1, &|q| q == 3);
        let sum = TwoWaySummary::new(&records, s.sent());
        assert_eq!((sum.sent, sum.lost), (20, 4), "{sf} -> {rf}");
        // Stateless: a packet duplicated on the way out comes back as the same pair of
        // sequence numbers, which reads as a reflect duplicate (RFC 8762 4.3: only a stateful
        // reflector tells the directions apart).
        assert_eq!(
            (sum.send_duplicates, sum.reflect_duplicates),
            (0, 1),
            "{sf} -> {rf}"
        );
        assert_eq!(r.counters().reflected, 17);
        assert!(
            lens.iter().all(|&l| l == reply_len),
            "{sf} -> {rf}: {lens:?}"
        );
        // Stateless: the reflector's sequence number is the sender's.
        assert!(records.iter().all(|x| x.reflector_seq == x.sender_seq));
        let rt = sum.round_trip.min.unwrap();
        // 3 ms out, 3 ms back; the 1 ms in the reflector is not part of the round trip.
        assert!((rt - 0.006).abs() < 1e-5, "{rt}");
        assert!((sum.send.min.unwrap() - 0.003).abs() < 1e-5);
        assert_eq!(records[0].sender_ttl, 250);
        assert_eq!(records[0].reply_ttl, 251);

        let r = StampReflector::new(format(rf), Numbering::Stateful { max_peers: 4 }).unwrap();
        let (records, s, _, _) = run(format(sf), len, r, 20, &|q| q % 5 == 1, &|q| q == 3);
        let sum = TwoWaySummary::new(&records, s.sent());
        assert_eq!((sum.sent, sum.lost), (20, 4), "{sf} -> {rf} stateful");
        assert_eq!((sum.send_duplicates, sum.reflect_duplicates), (1, 0));
        let seqs: Vec<u32> = records.iter().map(|x| x.reflector_seq).collect();
        assert_eq!(seqs, (0..17).collect::<Vec<_>>());
    }
}

#[test]
fn authenticated_round_trip_and_wrong_key() {
    let r = StampReflector::new(format("auth"), Numbering::Stateless).unwrap();
    let (records, s, r, lens) = run(format("auth"), 112, r, 10, &|_| false, &|_| false);
    assert_eq!(TwoWaySummary::new(&records, s.sent()).lost, 0);
    assert_eq!(r.counters().reflected, 10);
    assert!(lens.iter().all(|&l| l == 112));

    // A sender with another key: every packet is dropped and counted.
    let other = TestFormat::StampAuthenticated(StampKey::new(vec![9; 32]).unwrap());
    let r = StampReflector::new(format("auth"), Numbering::Stateless).unwrap();
    let (records, s, r, _) = run(other, 112, r, 10, &|_| false, &|_| false);
    assert_eq!(TwoWaySummary::new(&records, s.sent()).lost, 10);
    assert_eq!(r.counters().bad_hmac, 10);
    assert_eq!(r.counters().reflected, 0);

    // An unauthenticated sender against an authenticated reflector: too short.
    let r = StampReflector::new(format("auth"), Numbering::Stateless).unwrap();
    let (records, _, r, _) = run(format("stamp"), 44, r, 3, &|_| false, &|_| false);
    assert!(records.is_empty());
    assert_eq!(r.counters().malformed, 3);
}

#[test]
fn a_tampered_reply_is_refused() {
    let ee = ErrorEstimate::UNSYNCHRONIZED;
    let t = OwampTime::from_parts(3_900_000_000, 0);
    let mut s = StampSender::new(format("auth"), 112, 1, Duration::ZERO).unwrap();
    let mut r = StampReflector::new(format("auth"), Numbering::Stateless).unwrap();
    let (mut pkt, mut reply) = (Vec::new(), Vec::new());
    s.build(t, ee, &mut pkt).unwrap();
    r.reflect(peer(1), t, 255, &pkt, t, ee, &mut reply).unwrap();
    reply[40] ^= 1;
    assert_eq!(
        s.handle_reply(t, 255, ee, &reply),
        Err(StampPacketError::Crypto(CryptoError::HmacMismatch))
    );
}

#[test]
fn stateful_reflector_counts_per_peer_and_evicts_the_least_recent() {
    let ee = ErrorEstimate::UNSYNCHRONIZED;
    let mut r = StampReflector::new(format("stamp"), Numbering::Stateful { max_peers: 2 }).unwrap();
    let mut s = StampSender::new(format("stamp"), 44, 100, Duration::ZERO).unwrap();
    let (mut pkt, mut out) = (Vec::new(), Vec::new());
    let mut seqs = Vec::new();
    // Peers 1, 1, 2, 1, 3 (evicts 2, heard least recently), 2 (new again: evicts 1).
    for (i, port) in [1u16, 1, 2, 1, 3, 2].into_iter().enumerate() {
        let t = OwampTime::from_parts(3_900_000_000 + i as u32, 0);
        s.build(t, ee, &mut pkt).unwrap();
        r.reflect(peer(port), t, 255, &pkt, t, ee, &mut out)
            .unwrap();
        let (p, _) = ReflectorPacket::parse_stamp(StampMode::Unauthenticated, &out).unwrap();
        seqs.push(p.seq);
    }
    assert_eq!(seqs, [0, 1, 0, 2, 0, 0]);
    assert_eq!(r.counters().evicted, 2);
    assert_eq!(r.peers(), 2);
    assert_eq!(
        StampReflector::new(format("stamp"), Numbering::Stateful { max_peers: 0 }).unwrap_err(),
        StampSetupError::NoPeers
    );
}

#[test]
fn stamp_reflector_copies_the_octets_after_the_base_packet() {
    // RFC 8762 4.6: a longer packet is answered with a packet of the same length whose
    // remainder is copied.
    let ee = ErrorEstimate::UNSYNCHRONIZED;
    let t = OwampTime::from_parts(3_900_000_000, 0);
    let mut s = StampSender::new(format("stamp"), 44, 1, Duration::ZERO).unwrap();
    let mut pkt = Vec::new();
    s.build(t, ee, &mut pkt).unwrap();
    pkt.extend_from_slice(b"tlv!");
    let mut r = StampReflector::new(format("stamp"), Numbering::Stateless).unwrap();
    let mut out = Vec::new();
    r.reflect(peer(1), t, 255, &pkt, t, ee, &mut out).unwrap();
    assert_eq!(out.len(), 48);
    assert_eq!(&out[44..], b"tlv!");
}

#[test]
fn sender_limits() {
    assert_eq!(
        StampSender::new(format("auth"), 111, 1, Duration::ZERO).unwrap_err(),
        StampSetupError::PacketTooShort { len: 111, min: 112 }
    );
    assert!(StampSender::new(format("light"), 65_508, 1, Duration::ZERO).is_err());
    let mut s = StampSender::new(format("light"), 14, 1, Duration::from_secs(1)).unwrap();
    let t = OwampTime::from_parts(3_900_000_000, 0);
    assert_eq!(s.due(t), Some(t));
    let mut b = Vec::new();
    assert_eq!(
        s.build(t, ErrorEstimate::UNSYNCHRONIZED, &mut b).unwrap(),
        Some(0)
    );
    assert_eq!(s.due(t), None);
    assert_eq!(
        s.build(t, ErrorEstimate::UNSYNCHRONIZED, &mut b).unwrap(),
        None
    );
    assert!(b.is_empty());
    // A reply to a packet never sent.
    let mut reply = Vec::new();
    let mut p = reflector_fields();
    p.sender_seq = 1;
    p.write_stamp(StampMode::Unauthenticated, &mut reply);
    assert_eq!(
        s.handle_reply(t, 255, ErrorEstimate::UNSYNCHRONIZED, &reply),
        Err(StampPacketError::NotSent(1))
    );
}
