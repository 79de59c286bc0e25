//! The session sender and receiver against the reference traces: the receiver accepts the
//! reference's test packets, the sender reproduces their exact bytes, and the receiver
//! reproduces the records of the reference's .owp files from the packets of the same run.

mod session_support;

use owamp_core::crypto::{SecureMode, SessionKeys, TestPacketCrypto};
use owamp_core::session::{PacketProtection, Receiver, Schedule, Sender, SessionParams};
use owamp_core::time::Interval;
use owamp_core::time::{ErrorEstimate, OwampTime};
use owamp_core::wire::DataRecord;
use session_support::{load, trace_path, Trace, TraceSession};

fn params(s: &TraceSession) -> SessionParams {
    SessionParams {
        schedule: Schedule::new(s.sid, &s.slots, s.count).unwrap(),
        start: OwampTime::from_raw(s.start_time),
        timeout: Interval::from_raw(s.timeout),
        padding: s.padding,
    }
}

fn protection(plain: &Trace, s: &TraceSession, mode: Option<SecureMode>) -> PacketProtection {
    match mode {
        None => PacketProtection::Open,
        Some(m) => {
            let keys = SessionKeys {
                aes: plain
                    .header_hex("aes-session-key")
                    .unwrap()
                    .try_into()
                    .unwrap(),
                hmac: plain
                    .header_hex("hmac-session-key")
                    .unwrap()
                    .try_into()
                    .unwrap(),
            };
            PacketProtection::Sealed(TestPacketCrypto::new(m, &s.sid.0, &keys))
        }
    }
}

/// Plain fields of a test packet: seq, timestamp, error estimate.
fn fields(plain: &[u8], secure: bool) -> (u32, u64, u16) {
    let (ts, err) = if secure { (16, 24) } else { (4, 12) };
    (
        u32::from_be_bytes(plain[0..4].try_into().unwrap()),
        u64::from_be_bytes(plain[ts..ts + 8].try_into().unwrap()),
        u16::from_be_bytes(plain[err..err + 2].try_into().unwrap()),
    )
}

/// The wire trace, the trace with plain test packets, and the mode.
fn scenario(name: &str) -> (Trace, Trace, Option<SecureMode>) {
    match name {
        "a_open" => (load("a_open.trace"), load("a_open.trace"), None),
        "b_auth" => (
            load("b_auth.trace"),
            load("b_auth.plain.trace"),
            Some(SecureMode::Authenticated),
        ),
        "c_encrypted" => (
            load("c_encrypted.trace"),
            load("c_encrypted.plain.trace"),
            Some(SecureMode::Encrypted),
        ),
        _ => unreachable!(),
    }
}

fn check_sender(name: &str) {
    let (wire, plain, mode) = scenario(name);
    assert_eq!(wire.packets.len(), plain.packets.len());
    assert_eq!(plain.sessions.len(), 2);
    for s in &plain.sessions {
        let mut tx = Sender::new(params(s), protection(&plain, s, mode)).unwrap();
        let mut buf = vec![0u8; tx.packet_len()];
        let mut n = 0;
        for (w, p) in wire.packets.iter().zip(&plain.packets) {
            if p.dst_port != s.receiver_port {
                continue;
            }
            let (seq, ts, err) = fields(&p.payload, mode.is_some());
            assert_eq!(tx.next_due().unwrap().0, seq);
            let len = tx
                .build(
                    &mut buf,
                    OwampTime::from_raw(ts),
                    ErrorEstimate::from_raw(err),
                )
                .unwrap();
            assert_eq!(
                hex::encode(&buf[..len]),
                hex::encode(&w.payload),
                "{name} seq {seq}"
            );
            n += 1;
        }
        assert_eq!(n, s.count);
        assert!(tx.is_finished());
    }
}

#[test]
fn sender_reproduces_reference_bytes_open() {
    check_sender("a_open");
}

#[test]
fn sender_reproduces_reference_bytes_authenticated() {
    check_sender("b_auth");
}

#[test]
fn sender_reproduces_reference_bytes_encrypted() {
    check_sender("c_encrypted");
}

fn check_receiver(name: &str) {
    let (wire, plain, mode) = scenario(name);
    for s in &plain.sessions {
        let p = params(s);
        let mut rx = Receiver::new(p.clone(), protection(&plain, s, mode));
        let mut last = 0;
        for (w, pl) in wire.packets.iter().zip(&plain.packets) {
            if pl.dst_port != s.receiver_port {
                continue;
            }
            let (seq, ts, _) = fields(&pl.payload, mode.is_some());
            // Loopback: received 50 us after it was stamped.
            last = ts + (1 << 32) / 20_000;
            let a = rx
                .receive(
                    &w.payload,
                    OwampTime::from_raw(last),
                    ErrorEstimate::from_raw(1),
                    255,
                )
                .unwrap_or_else(|e| panic!("{name}: packet {seq} dropped: {e}"));
            assert_eq!((a.seq, a.duplicate), (seq, false));
        }
        let stop = OwampTime::from_raw(last + 10 * (1 << 32));
        let recs = rx
            .finish(stop, Some(s.count), ErrorEstimate::from_raw(1))
            .unwrap();
        assert_eq!(recs.len() as u32, s.count);
        assert!(recs.iter().all(|r| !r.is_lost()));
    }
}

#[test]
fn receiver_accepts_reference_packets_open() {
    check_receiver("a_open");
}

#[test]
fn receiver_accepts_reference_packets_authenticated() {
    check_receiver("b_auth");
}

#[test]
fn receiver_accepts_reference_packets_encrypted() {
    check_receiver("c_encrypted");
}

/// The 25-octet records of an .owp file, read from the records offset in its header.
fn owp_records(name: &str) -> Vec<DataRecord> {
    let b = std::fs::read(trace_path(&format!("owp/summary/{name}"))).unwrap();
    let oset = u64::from_be_bytes(b[0x20..0x28].try_into().unwrap()) as usize;
    b[oset..]
        .chunks_exact(DataRecord::LEN)
        .map(|r| DataRecord::parse(r).unwrap())
        .collect()
}

#[test]
fn receiver_reproduces_owp_records() {
    let trace = load("owp/summary/session.trace");
    assert_eq!(trace.sessions.len(), 2);
    for file in ["to.owp", "from.owp"] {
        let want = owp_records(file);
        assert_eq!(want.len(), 20, "{file}");
        // The session whose packets carry the send timestamps of this file.
        let s = trace
            .sessions
            .iter()
            .find(|s| {
                trace
                    .packets_to(s.receiver_port)
                    .iter()
                    .any(|p| fields(&p.payload, false).1 == want[0].send_time.raw())
            })
            .unwrap();
        let mut rx = Receiver::new(params(s), PacketProtection::Open);
        for p in trace.packets_to(s.receiver_port) {
            let (seq, _, _) = fields(&p.payload, false);
            let rec = want.iter().find(|r| r.seq == seq).unwrap();
            rx.receive(&p.payload, rec.recv_time, rec.recv_error, rec.ttl)
                .unwrap();
        }
        let got = rx
            .finish(
                OwampTime::from_raw(u64::MAX),
                Some(s.count),
                ErrorEstimate::from_raw(1),
            )
            .unwrap();
        assert_eq!(got, want, "{file}");
    }
}
