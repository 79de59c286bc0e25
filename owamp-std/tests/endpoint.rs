//! Test endpoints on loopback without a control connection: a sender thread and a receiver
//! thread exchanging one session's packets.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use owamp_core::control::Mode;
use owamp_core::time::OwampTime;
use owamp_os::clock::{Clock, SystemClock};
use owamp_os::net::TestSocket;
use owamp_std::endpoint::EndpointResult;
use owamp_std::endpoint::TestEndpoint;
use owamp_testkit::{config, lo, session_pair};

/// The two ends of one session as test endpoints (see `owamp_testkit::session_pair`).
struct Pair {
    sender: TestEndpoint,
    receiver: TestEndpoint,
    recv_addr: SocketAddr,
}

fn pair(mode: Mode, packets: u32, interval: Duration, timeout: Duration, start: OwampTime) -> Pair {
    let p = session_pair(mode, packets, interval, timeout, start);
    Pair {
        sender: TestEndpoint::new(p.sender.0, p.sender.1).unwrap(),
        receiver: TestEndpoint::new(p.receiver.0, p.receiver.1).unwrap(),
        recv_addr: p.recv_addr,
    }
}

#[test]
fn sender_and_receiver_threads_exchange_a_session() {
    for mode in [Mode::Open, Mode::Authenticated, Mode::Encrypted] {
        let clock = SystemClock::new();
        let start = clock.now().saturating_add(Duration::from_millis(100));
        let p = pair(
            mode,
            50,
            Duration::from_millis(5),
            Duration::from_millis(300),
            start,
        );
        let kernel = p.receiver.socket().features().kernel_timestamps;
        // The sender's socket carries the session's DSCP (46, EF) in its TOS octet.
        assert_eq!(p.sender.socket().socket().tos_v4().unwrap(), 46 << 2);
        let (tx, rx) = mpsc::channel();
        let cfg = config();
        let t0 = Instant::now();
        let r = p.receiver.start(&cfg, Some(tx.clone())).unwrap();
        let s = p.sender.start(&cfg, Some(tx)).unwrap();
        // Both end on their own and report: the sender after 50 packets (~0.35 s), the
        // receiver once the last packet's timeout has passed (~0.65 s).
        let a = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let b = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(t0.elapsed() < Duration::from_secs(3));
        assert_eq!(a.sid, b.sid);
        let Some(EndpointResult::Sender(so)) = s.finish() else {
            panic!("sender result")
        };
        let Some(EndpointResult::Receiver(ro)) = r.finish() else {
            panic!("receiver result")
        };
        assert_eq!(so.sent, 50);
        assert_eq!(so.report.next_seqno, 50);
        assert!(so.report.skips.is_empty());
        assert_eq!(so.lateness_nanos.len(), 50);
        // Never stamped before its scheduled time; late by less than the timeout.
        assert!(so
            .lateness_nanos
            .iter()
            .all(|&l| (0..300_000_000).contains(&l)));
        assert_eq!(ro.stats().received, 50, "{mode:?}");
        assert_eq!(ro.stats().lost, 0);
        assert_eq!(ro.foreign, 0);
        if kernel {
            assert_eq!(ro.kernel_stamped, 50, "kernel timestamps used");
        } else {
            eprintln!("kernel timestamps unavailable: receiver read the clock");
            assert_eq!(ro.clock_stamped, 50);
        }
        for rec in ro.receiver.records() {
            let d = rec.recv_time.diff_nanos(rec.send_time);
            assert!(d > 0 && d < 50_000_000, "delay {d}");
            assert_eq!(rec.ttl, 255);
        }
    }
}

#[test]
fn stopping_a_sender_reports_where_it_stopped() {
    let clock = SystemClock::new();
    let start = clock.now().saturating_add(Duration::from_millis(50));
    let p = pair(
        Mode::Open,
        1000,
        Duration::from_millis(5),
        Duration::from_secs(1),
        start,
    );
    let cfg = config();
    let r = p.receiver.start(&cfg, None).unwrap();
    let s = p.sender.start(&cfg, None).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let Some(EndpointResult::Sender(so)) = s.finish() else {
        panic!()
    };
    let Some(EndpointResult::Receiver(ro)) = r.finish() else {
        panic!()
    };
    // Stopping is prompt (one poll interval), and both keep what they did.
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "{:?}",
        t0.elapsed()
    );
    let n = so.report.next_seqno;
    assert!(n > 10 && n < 1000, "next seqno {n}");
    assert_eq!(so.sent, u64::from(n));
    assert!(
        ro.stats().received >= u64::from(n) - 2,
        "{} of {n}",
        ro.stats().received
    );
}

#[test]
fn receiver_ignores_other_sources_and_late_senders_skip() {
    let clock = SystemClock::new();
    // Started 2 s ago (within the 5 s margin): every packet is more than the 100 ms
    // timeout late and is skipped, none sent.
    let start = clock.now().saturating_sub(Duration::from_secs(2));
    let p = pair(
        Mode::Open,
        20,
        Duration::from_millis(1),
        Duration::from_millis(100),
        start,
    );
    let cfg = config();
    let s = p.sender.start(&cfg, None).unwrap();
    let Some(EndpointResult::Sender(so)) = s.finish_after(Duration::from_secs(2)) else {
        panic!()
    };
    assert_eq!(so.sent, 0);
    assert_eq!(so.report.next_seqno, 20);
    assert_eq!(so.report.skips.len(), 1);
    assert_eq!((so.report.skips[0].first, so.report.skips[0].last), (0, 19));

    // A receiver of a session starting now gets junk from a stranger.
    let start = clock.now().saturating_add(Duration::from_millis(50));
    let p = pair(
        Mode::Open,
        5,
        Duration::from_millis(10),
        Duration::from_millis(100),
        start,
    );
    let r = p.receiver.start(&cfg, None).unwrap();
    let stranger = TestSocket::bind(SocketAddr::new(lo(), 0)).unwrap();
    stranger.send_to(&[0u8; 14], p.recv_addr).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let Some(EndpointResult::Receiver(ro)) = r.finish() else {
        panic!()
    };
    assert_eq!(ro.foreign, 1);
    assert_eq!(ro.stats().received, 0);
}
