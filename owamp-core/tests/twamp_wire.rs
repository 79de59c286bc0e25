//! TWAMP wire formats (RFC 5357) against the perfSONAR twampd/twping 5.2.3 traces
//! (testdata/traces/twamp): Request-TW-Session, TWAMP Stop-Sessions and every test packet of
//! every trace parse and re-encode byte for byte; the A/E packets on the wire are the plain
//! trace's packets sealed with the session's test keys; negative vectors name the offset and
//! reason; proptest round trips.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use owamp_core::crypto::{SecureMode, SessionKeys, TestPacketCrypto};
use owamp_core::time::{ErrorEstimate, Interval, OwampTime};
use owamp_core::wire::{
    AcceptCode, AcceptSession, Mode, ReflectorPacket, RequestTwSession, SessionId, StartAck,
    StartSessions, TestPacket, TwampStopSessions, TypeP, WireError,
};
use proptest::prelude::*;

struct Trace {
    cs: Vec<Vec<u8>>,
    sc: Vec<Vec<u8>>,
    /// (sender to reflector?, payload)
    tests: Vec<(bool, Vec<u8>)>,
    header: String,
}

fn load(file: &str) -> Trace {
    let path = format!(
        "{}/../testdata/traces/twamp/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut t = Trace {
        cs: Vec::new(),
        sc: Vec::new(),
        tests: Vec::new(),
        header: String::new(),
    };
    let mut first_src: Option<String> = None;
    for line in text.lines() {
        if let Some(x) = line.strip_prefix("C>S ") {
            t.cs.push(hex::decode(x.trim()).unwrap());
        } else if let Some(x) = line.strip_prefix("S>C ") {
            t.sc.push(hex::decode(x.trim()).unwrap());
        } else if let Some(x) = line.strip_prefix("T ") {
            // `T <t> <src>-><dst> <hex>`: twping's sender packet comes first, so the first
            // source is the session-sender.
            let mut f = x.split_whitespace().skip(1);
            let src = f.next().unwrap().split("->").next().unwrap().to_string();
            let payload = hex::decode(f.next().unwrap()).unwrap();
            let sender = first_src.get_or_insert_with(|| src.clone());
            t.tests.push((*sender == src, payload));
        } else if line.starts_with('#') {
            t.header.push_str(line);
            t.header.push('\n');
        }
    }
    t
}

fn header_hex(t: &Trace, key: &str) -> Vec<u8> {
    let at = t
        .header
        .find(key)
        .unwrap_or_else(|| panic!("{key} in header"))
        + key.len();
    let v: String = t.header[at..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    hex::decode(v).unwrap()
}

const OPEN: [&str; 3] = ["a_open", "r_open_raw", "m_open_machine"];
const SECURE: [(&str, Mode); 2] = [
    ("b_auth", Mode::Authenticated),
    ("c_encrypted", Mode::Encrypted),
];

fn all_plain() -> Vec<(String, Mode)> {
    let mut v: Vec<(String, Mode)> = OPEN
        .iter()
        .map(|n| (format!("{n}.trace"), Mode::Open))
        .collect();
    v.extend(SECURE.iter().map(|(n, m)| (format!("{n}.plain.trace"), *m)));
    v
}

#[test]
fn request_tw_session_fixture_a_open() {
    let t = load("a_open.trace");
    let b = &t.cs[1];
    let r = RequestTwSession::parse(b).unwrap();
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    assert_eq!(r.conf_sender, 0);
    assert_eq!(r.conf_receiver, 0);
    assert_eq!(r.num_slots, 0);
    assert_eq!(r.num_packets, 0);
    assert_eq!(r.sender_port, 8815);
    assert_eq!(
        r.receiver_port, 8815,
        "twping puts its own port in both fields"
    );
    assert_eq!(r.sender_address, lo);
    assert_eq!(r.receiver_address, lo);
    assert_eq!(r.sid, SessionId::default());
    assert_eq!(r.padding_length, 27);
    assert_eq!(r.start_time, OwampTime::from_raw(0xeec0_be30_e365_a9aa));
    assert_eq!(r.timeout, Interval::from_raw(0x0000_0002_000d_6f55));
    assert_eq!(r.type_p, TypeP(0));
    assert_eq!(r.to_bytes(), *b);
    // What a control-client keeps is an OWAMP request with the server receiving; sending it
    // again gives the same octets.
    assert_eq!(
        RequestTwSession::from_request(&r.to_request()).to_bytes(),
        *b
    );
}

#[test]
fn control_messages_of_every_trace_round_trip() {
    for (file, _) in all_plain() {
        let t = load(&file);
        // C>S: Set-Up-Response, Request-TW-Session, Start-Sessions, Stop-Sessions.
        assert_eq!(t.cs.len(), 4, "{file}");
        let req = RequestTwSession::parse(&t.cs[1]).unwrap();
        assert_eq!(req.to_bytes(), t.cs[1], "{file}");
        assert_eq!(StartSessions::parse(&t.cs[2]).unwrap().to_bytes(), t.cs[2]);
        let stop = TwampStopSessions::parse(&t.cs[3]).unwrap();
        assert_eq!(stop.accept, AcceptCode::Ok);
        assert_eq!(stop.num_sessions, 1);
        assert_eq!(stop.to_bytes(), t.cs[3], "{file}");
        // S>C: Greeting, Server-Start, Accept-Session, Start-Ack.
        let a = AcceptSession::parse(&t.sc[2]).unwrap();
        assert!((8770..=8970).contains(&a.port), "{file}");
        assert_eq!(&a.sid.0[..4], &[127, 0, 0, 1]);
        assert_eq!(a.to_bytes(), t.sc[2]);
        assert_eq!(StartAck::parse(&t.sc[3]).unwrap().to_bytes(), t.sc[3]);
    }
}

#[test]
fn test_packets_of_every_trace_round_trip() {
    for (file, mode) in all_plain() {
        let t = load(&file);
        assert_eq!(t.tests.len(), 40, "{file}");
        let mut last_sender: Option<TestPacket> = None;
        let mut reflected = 0;
        for (from_sender, b) in &t.tests {
            if *from_sender {
                let (p, pad) = TestPacket::parse(mode, b).unwrap();
                assert_eq!(p.to_bytes(mode, pad), *b, "{file}");
                last_sender = Some(p);
            } else {
                let (r, pad) = ReflectorPacket::parse(mode, b).unwrap();
                assert_eq!(r.to_bytes(mode, pad), *b, "{file}");
                assert!(pad.is_empty(), "default padding: no reflected padding");
                let s = last_sender.expect("the sender's packet comes first");
                assert_eq!(r.sender_seq, s.seq);
                assert_eq!(r.sender_timestamp, s.timestamp);
                assert_eq!(r.sender_error_estimate, s.error_estimate);
                assert_eq!(r.seq, reflected, "the reflector counts from 0");
                assert_eq!(r.sender_ttl, 255);
                assert_eq!(r.error_estimate, ErrorEstimate::from_raw(1));
                assert!(r.receive_timestamp >= s.timestamp);
                assert!(r.timestamp >= r.receive_timestamp);
                reflected += 1;
            }
        }
        assert_eq!(reflected, 20);
    }
}

#[test]
fn secure_test_packets_are_the_plain_ones_sealed() {
    for (name, mode) in SECURE {
        let wire = load(&format!("{name}.trace"));
        let plain = load(&format!("{name}.plain.trace"));
        let keys = SessionKeys {
            aes: header_hex(&plain, "aes-session-key=").try_into().unwrap(),
            hmac: header_hex(&plain, "hmac-session-key=").try_into().unwrap(),
        };
        let sid: [u8; 16] = header_hex(&plain, "session: sid=").try_into().unwrap();
        let secure = match mode {
            Mode::Authenticated => SecureMode::Authenticated,
            _ => SecureMode::Encrypted,
        };
        let c = TestPacketCrypto::new(secure, &sid, &keys);
        for ((from_sender, w), (_, p)) in wire.tests.iter().zip(&plain.tests) {
            let mut sealed = p.clone();
            let mut opened = w.clone();
            if *from_sender {
                c.seal(&mut sealed).unwrap();
                c.open(&mut opened).unwrap();
            } else {
                c.seal_reflector(&mut sealed).unwrap();
                c.open_reflector(&mut opened).unwrap();
            }
            assert_eq!(sealed, *w, "{name}");
            assert_eq!(opened, *p, "{name}");
        }
        // A flipped bit in the reflector's protected part fails the HMAC.
        let (_, w) = wire.tests.iter().find(|(s, _)| !s).unwrap();
        let mut bad = w.clone();
        bad[0] ^= 1;
        assert!(c.open_reflector(&mut bad).is_err());
        let mut short = w[..100].to_vec();
        assert!(c.open_reflector(&mut short).is_err());
    }
}

// Negative vectors: each names the offset and reason.

#[test]
fn request_tw_session_negative_vectors() {
    let good = load("a_open.trace").cs[1].clone();
    let with = |at: usize, v: u8| {
        let mut b = good.clone();
        b[at] = v;
        RequestTwSession::parse(&b).unwrap_err()
    };
    assert!(matches!(
        with(0, 1),
        WireError::Invalid {
            field: "command",
            offset: 0,
            value: 1,
            ..
        }
    ));
    assert!(matches!(with(1, 0x14), WireError::Mbz { offset: 1, .. }));
    assert!(matches!(
        with(1, 5),
        WireError::Invalid {
            field: "IPVN",
            offset: 1,
            ..
        }
    ));
    assert!(matches!(with(21, 1), WireError::Mbz { offset: 21, .. }));
    assert!(matches!(with(90, 1), WireError::Mbz { offset: 90, .. }));
    assert!(matches!(
        RequestTwSession::parse(&good[..111]).unwrap_err(),
        WireError::Length { .. } | WireError::Truncated { .. }
    ));
    let mut long = good.clone();
    long.push(0);
    assert!(RequestTwSession::parse(&long).is_err());
    // An OWAMP Request-Session is not a TWAMP one.
    assert!(matches!(with(0, 1), WireError::Invalid { .. }));
}

#[test]
fn stop_and_reflector_negative_vectors() {
    let stop = load("a_open.trace").cs[3].clone();
    let mut b = stop.clone();
    b[1] = 9;
    assert!(matches!(
        TwampStopSessions::parse(&b).unwrap_err(),
        WireError::Invalid {
            field: "accept code",
            offset: 1,
            ..
        }
    ));
    let mut b = stop.clone();
    b[9] = 1;
    assert!(matches!(
        TwampStopSessions::parse(&b).unwrap_err(),
        WireError::Mbz { offset: 9, .. }
    ));
    assert!(TwampStopSessions::parse(&stop[..16]).is_err());

    let t = load("a_open.trace");
    let refl = t.tests.iter().find(|(s, _)| !s).unwrap().1.clone();
    let mut b = refl.clone();
    b[15] = 1;
    assert!(matches!(
        ReflectorPacket::parse(Mode::Open, &b).unwrap_err(),
        WireError::Mbz { offset: 15, .. }
    ));
    let mut b = refl.clone();
    b[13] = 0; // zero multiplier
    assert!(matches!(
        ReflectorPacket::parse(Mode::Open, &b).unwrap_err(),
        WireError::Invalid {
            field: "error estimate",
            offset: 12,
            ..
        }
    ));
    assert!(matches!(
        ReflectorPacket::parse(Mode::Open, &refl[..40]).unwrap_err(),
        WireError::Truncated { needed: 41, .. }
    ));
    assert!(ReflectorPacket::parse(Mode::Encrypted, &refl).is_err());
}

fn addresses() -> impl Strategy<Value = (IpAddr, IpAddr)> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<[u8; 4]>())
            .prop_map(|(a, b)| (Ipv4Addr::from(a).into(), Ipv4Addr::from(b).into())),
        (any::<[u8; 16]>(), any::<[u8; 16]>())
            .prop_map(|(a, b)| (Ipv6Addr::from(a).into(), Ipv6Addr::from(b).into())),
    ]
}

fn estimate() -> impl Strategy<Value = ErrorEstimate> {
    any::<u16>()
        .prop_filter("zero multiplier", |v| v & 0xff != 0)
        .prop_map(ErrorEstimate::from_raw)
}

prop_compose! {
    fn request()(
        conf in any::<(u8, u8)>(),
        counts in any::<(u32, u32)>(),
        ports in any::<(u16, u16)>(),
        (sender_address, receiver_address) in addresses(),
        sid in any::<[u8; 16]>(),
        padding_length in any::<u32>(),
        times in any::<(u64, u64)>(),
        type_p in any::<u32>(),
        hmac in any::<[u8; 16]>(),
    ) -> RequestTwSession {
        RequestTwSession {
            conf_sender: conf.0,
            conf_receiver: conf.1,
            num_slots: counts.0,
            num_packets: counts.1,
            sender_port: ports.0,
            receiver_port: ports.1,
            sender_address,
            receiver_address,
            sid: SessionId(sid),
            padding_length,
            start_time: OwampTime::from_raw(times.0),
            timeout: Interval::from_raw(times.1),
            type_p: TypeP(type_p),
            hmac,
        }
    }
}

prop_compose! {
    fn reflector()(
        seqs in any::<(u32, u32)>(),
        times in any::<(u64, u64, u64)>(),
        error_estimate in estimate(),
        sender_error_estimate in any::<u16>(),
        sender_ttl in any::<u8>(),
        hmac in any::<[u8; 16]>(),
    ) -> ReflectorPacket {
        ReflectorPacket {
            seq: seqs.0,
            timestamp: OwampTime::from_raw(times.0),
            error_estimate,
            receive_timestamp: OwampTime::from_raw(times.1),
            sender_seq: seqs.1,
            sender_timestamp: OwampTime::from_raw(times.2),
            sender_error_estimate: ErrorEstimate::from_raw(sender_error_estimate),
            sender_ttl,
            hmac,
        }
    }
}

proptest! {
    #[test]
    fn request_tw_session_round_trips(r in request()) {
        let b = r.to_bytes();
        prop_assert_eq!(b.len(), RequestTwSession::LEN);
        prop_assert_eq!(RequestTwSession::parse(&b).unwrap(), r);
    }

    #[test]
    fn stop_round_trips(accept in 0u8..=5, n in any::<u32>(), hmac in any::<[u8; 16]>()) {
        let s = TwampStopSessions { accept: AcceptCode::from_u8(accept).unwrap(), num_sessions: n, hmac };
        prop_assert_eq!(TwampStopSessions::parse(&s.to_bytes()).unwrap(), s);
    }

    #[test]
    fn reflector_round_trips(
        p in reflector(),
        secure in any::<bool>(),
        pad in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let (mode, p) = if secure {
            (Mode::Encrypted, p)
        } else {
            (Mode::Open, ReflectorPacket { hmac: [0; 16], ..p })
        };
        let b = p.to_bytes(mode, &pad);
        prop_assert_eq!(b.len(), ReflectorPacket::header_len(mode) + pad.len());
        let (q, qpad) = ReflectorPacket::parse(mode, &b).unwrap();
        prop_assert_eq!(q, p);
        prop_assert_eq!(qpad, &pad[..]);
    }

    #[test]
    fn parsers_never_panic(b in prop::collection::vec(any::<u8>(), 0..160)) {
        let _ = RequestTwSession::parse(&b);
        let _ = TwampStopSessions::parse(&b);
        let _ = ReflectorPacket::parse(Mode::Open, &b);
        let _ = ReflectorPacket::parse(Mode::Authenticated, &b);
    }
}

/// RFC 5618 3.1: a Set-Up-Response with Mode 8 reads as mixed mode with authenticated mode's
/// credentials and writes back byte for byte; OWAMP's parser still refuses it.
#[test]
fn mixed_mode_set_up_response_round_trips() {
    use owamp_core::wire::twamp::{parse_setup_response, write_setup_response};
    use owamp_core::wire::SetUpResponse;
    let mut b = vec![0u8; SetUpResponse::LEN];
    b[3] = 8;
    b[4..9].copy_from_slice(b"alice");
    b[84] = 0xaa; // Token
    b[148] = 0xbb; // Client-IV
    assert!(SetUpResponse::parse(&b).is_err());
    let (s, mixed) = parse_setup_response(&b).unwrap();
    assert!(mixed);
    assert_eq!(s.mode, Mode::Authenticated);
    assert_eq!(s.key_id_name(), b"alice");
    let mut out = vec![0x11];
    write_setup_response(&s, mixed, &mut out);
    assert_eq!(&out[1..], &b[..]);
    // Other modes are OWAMP's, and Mode values that are not one mode stay errors.
    b[3] = 2;
    assert_eq!(parse_setup_response(&b).unwrap(), (s, false));
    b[3] = 9;
    assert!(parse_setup_response(&b).is_err());
    assert!(parse_setup_response(&b[..10]).is_err());
}
