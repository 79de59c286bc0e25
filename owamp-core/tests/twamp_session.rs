//! TWAMP-Test against the twampd/twping 5.2.3 traces (testdata/traces/twamp): the reflector
//! fed each recorded sender packet (with the recorded receive and send times) answers with the
//! recorded reflector packet byte for byte, open, authenticated and encrypted; the sender
//! builds the recorded sender packets and reads the replies into records that agree with
//! twping -R; the two-way statistics agree with what twping printed (a_open, m_open_machine)
//! where the trace holds the times they come from. Lost, duplicated and forged replies are
//! counted or refused.

use owamp_core::crypto::{SecureMode, SessionKeys, TestPacketCrypto};
use owamp_core::session::twamp::{
    default_padding, Reflector, SessionSender, TwampPacketError, TwoWayRecord,
};
use owamp_core::session::PacketProtection;
use owamp_core::stats::twamp::TwoWaySummary;
use owamp_core::time::{ErrorEstimate, OwampTime};
use owamp_core::wire::{Mode, ReflectorPacket, TestPacket};

struct Trace {
    header: String,
    /// (from the sender?, payload)
    tests: Vec<(bool, Vec<u8>)>,
}

fn path(file: &str) -> String {
    format!(
        "{}/../testdata/traces/twamp/{file}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn load(file: &str) -> Trace {
    let text = std::fs::read_to_string(path(file)).unwrap();
    let mut t = Trace {
        header: String::new(),
        tests: Vec::new(),
    };
    let mut first_src: Option<String> = None;
    for line in text.lines() {
        if let Some(x) = line.strip_prefix("T ") {
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
    let at = t.header.find(key).unwrap() + key.len();
    let v: String = t.header[at..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    hex::decode(v).unwrap()
}

/// The wire trace, the plain one (the same in open mode) and the session's protection.
fn session(name: &str, mode: Mode) -> (Trace, Trace, PacketProtection) {
    let wire = load(&format!("{name}.trace"));
    if mode == Mode::Open {
        return (wire, load(&format!("{name}.trace")), PacketProtection::Open);
    }
    let plain = load(&format!("{name}.plain.trace"));
    let keys = SessionKeys {
        aes: header_hex(&plain, "aes-session-key=").try_into().unwrap(),
        hmac: header_hex(&plain, "hmac-session-key=").try_into().unwrap(),
    };
    let sid: [u8; 16] = header_hex(&plain, "session: sid=").try_into().unwrap();
    let secure = if mode == Mode::Authenticated {
        SecureMode::Authenticated
    } else {
        SecureMode::Encrypted
    };
    let c = TestPacketCrypto::new(secure, &sid, &keys);
    (wire, plain, PacketProtection::Sealed(c))
}

const ALL: [(&str, Mode); 5] = [
    ("a_open", Mode::Open),
    ("r_open_raw", Mode::Open),
    ("m_open_machine", Mode::Open),
    ("b_auth", Mode::Authenticated),
    ("c_encrypted", Mode::Encrypted),
];

/// Pairs (sender packet, reflector packet) in the wire and plain forms.
fn exchanges(wire: &Trace, plain: &Trace) -> Vec<[Vec<u8>; 4]> {
    let mut v = Vec::new();
    let mut it = wire.tests.iter().zip(&plain.tests);
    while let (Some(((s, ws), (_, ps))), Some(((r, wr), (_, pr)))) = (it.next(), it.next()) {
        assert!(*s && !*r, "sender and reply alternate in every trace");
        v.push([ws.clone(), ps.clone(), wr.clone(), pr.clone()]);
    }
    v
}

#[test]
fn reflector_reproduces_every_recorded_reply() {
    for (name, mode) in ALL {
        let (wire, plain, protection) = session(name, mode);
        let mut reflector = Reflector::with_protection(protection);
        let mut out = Vec::new();
        for [ws, ps, wr, pr] in exchanges(&wire, &plain) {
            let (want, _) = ReflectorPacket::parse(mode, &pr).unwrap();
            let sent = reflector
                .reflect(
                    want.receive_timestamp,
                    want.sender_ttl,
                    &ws,
                    want.timestamp,
                    want.error_estimate,
                    &mut out,
                )
                .unwrap();
            assert_eq!(sent, TestPacket::parse(mode, &ps).unwrap().0);
            assert_eq!(out, wr, "{name} reply {}", want.seq);
        }
        assert_eq!(reflector.reflected(), 20);
        // A forged or corrupt sender packet gets no reply.
        let mut bad = wire.tests[0].1.clone();
        if mode == Mode::Open {
            bad[13] = 0; // zero error-estimate multiplier
        } else {
            bad[0] ^= 1;
        }
        assert!(reflector
            .reflect(
                OwampTime::ZERO,
                255,
                &bad,
                OwampTime::ZERO,
                ErrorEstimate::from_raw(1),
                &mut out
            )
            .is_err());
        assert!(out.is_empty());
        assert_eq!(reflector.reflected(), 20);
    }
}

#[test]
fn reflector_copies_the_start_of_a_longer_padding() {
    let mut s = SessionSender::with_protection(PacketProtection::Open, (0..100u8).collect());
    let mut r = Reflector::with_protection(PacketProtection::Open);
    let (mut pkt, mut reply) = (Vec::new(), Vec::new());
    s.build(
        OwampTime::from_raw(10),
        ErrorEstimate::from_raw(1),
        &mut pkt,
    )
    .unwrap();
    r.reflect(
        OwampTime::from_raw(11),
        64,
        &pkt,
        OwampTime::from_raw(12),
        ErrorEstimate::from_raw(1),
        &mut reply,
    )
    .unwrap();
    assert_eq!(reply.len(), pkt.len());
    let (_, pad) = ReflectorPacket::parse(Mode::Open, &reply).unwrap();
    assert_eq!(pad, &pkt[14..14 + pad.len()]);
    assert_eq!(pad.len(), 100 + 14 - 41);
}

#[test]
fn sender_builds_the_recorded_packets_and_reads_the_replies() {
    for (name, mode) in ALL {
        let (wire, plain, protection) = session(name, mode);
        let ex = exchanges(&wire, &plain);
        let padding = ex[0][0][TestPacket::header_len(mode)..].to_vec();
        assert_eq!(padding.len() as u32, default_padding(mode), "{name}");
        let mut sender = SessionSender::with_protection(protection, padding);
        let mut pkt = Vec::new();
        for [ws, ps, wr, pr] in &ex {
            let (p, pad) = TestPacket::parse(mode, ps).unwrap();
            // twping draws fresh padding per packet; the sender's is fixed per session.
            let mut s = SessionSender::with_protection(session(name, mode).2, pad.to_vec());
            for _ in 0..p.seq {
                s.build(OwampTime::ZERO, p.error_estimate, &mut pkt)
                    .unwrap();
            }
            s.build(p.timestamp, p.error_estimate, &mut pkt).unwrap();
            assert_eq!(pkt, *ws, "{name} packet {}", p.seq);
            sender
                .build(p.timestamp, p.error_estimate, &mut pkt)
                .unwrap();
            let (r, _) = ReflectorPacket::parse(mode, pr).unwrap();
            let rec = sender
                .handle_reply(r.timestamp, 255, ErrorEstimate::from_raw(1), wr)
                .unwrap();
            assert_eq!(rec.sender_seq, p.seq);
            assert_eq!(rec.send_time, p.timestamp);
            assert_eq!(rec.reflector_seq, r.seq);
            assert_eq!(rec.reflector_recv_time, r.receive_timestamp);
            assert_eq!(rec.reflector_send_time, r.timestamp);
            assert_eq!(rec.sender_ttl, 255);
        }
        // A reply to a packet not sent yet is refused.
        let mut s = SessionSender::with_protection(session(name, mode).2, Vec::new());
        assert_eq!(
            s.handle_reply(OwampTime::ZERO, 255, ErrorEstimate::from_raw(1), &ex[0][2]),
            Err(TwampPacketError::NotSent(0))
        );
        s.build(OwampTime::ZERO, ErrorEstimate::from_raw(1), &mut pkt)
            .unwrap();
        let mut forged = ex[0][2].clone();
        forged[1] ^= 0x80;
        if mode == Mode::Open {
            forged[15] = 1; // MBZ
        }
        assert!(s
            .handle_reply(OwampTime::ZERO, 255, ErrorEstimate::from_raw(1), &forged)
            .is_err());
    }
}

/// The records of a trace; `rtime` gives twping's receive time of reply `i` when known (else
/// the reflector's send time stands in: the reflect leg is then zero).
fn records(name: &str, rtime: impl Fn(usize) -> Option<u64>) -> Vec<TwoWayRecord> {
    let (wire, plain, protection) = session(name, Mode::Open);
    let mut sender = SessionSender::with_protection(protection, Vec::new());
    let mut pkt = Vec::new();
    exchanges(&wire, &plain)
        .iter()
        .enumerate()
        .map(|(i, [_, ps, wr, _])| {
            let (p, _) = TestPacket::parse(Mode::Open, ps).unwrap();
            sender
                .build(p.timestamp, p.error_estimate, &mut pkt)
                .unwrap();
            let (r, _) = ReflectorPacket::parse(Mode::Open, wr).unwrap();
            let at = rtime(i).map_or(r.timestamp, OwampTime::from_raw);
            sender
                .handle_reply(at, 255, ErrorEstimate::from_raw(1), wr)
                .unwrap()
        })
        .collect()
}

#[test]
fn records_agree_with_twping_raw_output() {
    let text = std::fs::read_to_string(path("r_open_raw.twping.stdout.txt")).unwrap();
    let rows: Vec<Vec<u64>> = text
        .lines()
        .map(|l| {
            l.split_whitespace()
                .map(|x| x.parse::<f64>().map(|v| v as u64).unwrap_or(0))
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 20);
    let raw =
        |l: &str, col: usize| -> u64 { l.split_whitespace().nth(col).unwrap().parse().unwrap() };
    let lines: Vec<&str> = text.lines().collect();
    let recs = records("r_open_raw", |i| Some(raw(lines[i], 12)));
    for (i, r) in recs.iter().enumerate() {
        let l = lines[i];
        assert_eq!(u64::from(r.sender_seq), raw(l, 0));
        assert_eq!(r.send_time.raw(), raw(l, 1));
        assert_eq!(r.reflector_recv_time.raw(), raw(l, 4));
        assert_eq!(u64::from(r.sender_ttl), raw(l, 7));
        assert_eq!(u64::from(r.reflector_seq), raw(l, 8));
        assert_eq!(r.reflector_send_time.raw(), raw(l, 9));
        assert_eq!(r.recv_time.raw(), raw(l, 12));
    }
    let s = TwoWaySummary::new(&recs, 20);
    assert_eq!(
        (s.sent, s.lost, s.send_duplicates, s.reflect_duplicates),
        (20, 0, 0, 0)
    );
    let rt = s.round_trip.min.unwrap();
    assert!(rt > 0.0 && rt <= s.round_trip.max.unwrap());
}

/// `x` printed by twping with 3 significant digits ("%.3g").
fn close(got: f64, printed: f64) -> bool {
    (got - printed).abs() <= printed.abs() * 5e-3 + 1e-12
}

#[test]
fn statistics_agree_with_twping_machine_output() {
    let text = std::fs::read_to_string(path("m_open_machine.twping.stdout.txt")).unwrap();
    let v = |key: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}\t")))
            .unwrap_or_else(|| panic!("{key}"))
            .trim()
            .parse()
            .unwrap()
    };
    let s = TwoWaySummary::new(&records("m_open_machine", |_| None), v("SENT") as u32);
    assert_eq!(f64::from(s.lost), v("LOST"));
    assert_eq!(f64::from(s.send_duplicates), v("DUPS_FWD"));
    assert_eq!(f64::from(s.reflect_duplicates), v("DUPS_BCK"));
    for (got, key) in [
        (s.send.min.unwrap(), "MIN_FWD"),
        (s.send.max.unwrap(), "MAX_FWD"),
        (s.send.median().unwrap(), "MEDIAN_FWD"),
        (s.send.jitter().unwrap(), "PDV_FWD"),
        (s.send.max_error, "MAXERR_FWD"),
        (s.processing.min.unwrap(), "MIN_PROC"),
        (s.processing.max.unwrap(), "MAX_PROC"),
    ] {
        assert!(close(got, v(key)), "{key}: {got} vs {}", v(key));
    }
    let hops = s.send_hops.unwrap();
    assert_eq!(255.0 - f64::from(hops.max), v("MINTTL_FWD"));
    assert_eq!(255.0 - f64::from(hops.min), v("MAXTTL_FWD"));
}

#[test]
fn statistics_agree_with_twping_default_output() {
    let text = std::fs::read_to_string(path("a_open.twping.stdout.txt")).unwrap();
    // "send time min/median/max = 0.0668/0.1/0.277 ms, (err=4.66e-07 ms)"
    let triple = |prefix: &str| -> Vec<f64> {
        let l = text.lines().find(|l| l.starts_with(prefix)).unwrap();
        let nums = l.split(" = ").nth(1).unwrap().split(' ').next().unwrap();
        nums.split('/')
            .map(|x| x.parse::<f64>().unwrap() / 1e3)
            .collect()
    };
    let s = TwoWaySummary::new(&records("a_open", |_| None), 20);
    let send = triple("send time");
    assert!(close(s.send.min.unwrap(), send[0]));
    assert!(close(s.send.median().unwrap(), send[1]));
    assert!(close(s.send.max.unwrap(), send[2]));
    let proc = triple("reflector processing time");
    assert!(
        close(s.processing.min.unwrap(), proc[0]),
        "{:?}",
        s.processing
    );
    assert!(close(s.processing.max.unwrap(), proc[1]));
    let jitter = triple("send jitter");
    assert!(close(s.send.jitter().unwrap(), jitter[0]));
    assert!(text.contains("20 sent, 0 lost (0.000%), 0 send duplicates, 0 reflect duplicates"));
    assert_eq!(s.lost, 0);
    assert_eq!(s.send_hops.unwrap().max, 0);
}

#[test]
fn losses_and_duplicates_per_direction() {
    let recs = records("a_open", |_| None);
    let mut got: Vec<TwoWayRecord> = recs[..18].to_vec(); // two replies lost
    got.push(recs[3]); // the same reply twice: a reflect duplicate
    let mut again = recs[4];
    again.reflector_seq = 99; // the reflector answered packet 4 twice: a send duplicate
    got.push(again);
    let s = TwoWaySummary::new(&got, 20);
    assert_eq!((s.lost, s.send_duplicates, s.reflect_duplicates), (2, 1, 1));
    assert!((s.loss_fraction() - 0.1).abs() < 1e-12);
    // Lost packets count in the percentiles' base, as owstats's.
    assert!(s.send.percentile(0.95).is_none());
}
