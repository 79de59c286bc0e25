//! Test endpoints as tasks on loopback without a control connection: a sender task and a
//! receiver task exchanging one session's packets.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use owamp_core::control::Mode;
use owamp_os::clock::{Clock, SystemClock};
use owamp_std::endpoint::EndpointResult;
use owamp_testkit::{config, lo, pair};
use owamp_tokio::endpoint::spawn;
use owamp_tokio::net::AsyncTestSocket;

#[tokio::test(flavor = "multi_thread")]
async fn sender_and_receiver_tasks_exchange_a_session() {
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
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let cfg = config();
        let t0 = Instant::now();
        let r = spawn(p.receiver, &cfg, Some(tx.clone())).unwrap();
        let s = spawn(p.sender, &cfg, Some(tx)).unwrap();
        // Both end on their own and report: the sender after 50 packets (~0.35 s), the
        // receiver once the last packet's timeout has passed (~0.65 s).
        let wait = Duration::from_secs(5);
        let a = tokio::time::timeout(wait, rx.recv())
            .await
            .unwrap()
            .unwrap();
        let b = tokio::time::timeout(wait, rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(t0.elapsed() < Duration::from_secs(3));
        assert_eq!(a.sid, b.sid);
        let Some(EndpointResult::Sender(so)) = s.finish_after(wait).await else {
            panic!("sender result")
        };
        let Some(EndpointResult::Receiver(ro)) = r.finish_after(wait).await else {
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
        let mut late = so.lateness_nanos.clone();
        late.sort_unstable();
        eprintln!(
            "{mode:?}: send lateness median {} us, max {} us",
            late[25] / 1000,
            late[49] / 1000
        );
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

#[tokio::test(flavor = "multi_thread")]
async fn stopping_a_sender_reports_where_it_stopped() {
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
    let r = spawn(p.receiver, &cfg, None).unwrap();
    let s = spawn(p.sender, &cfg, None).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    let Some(EndpointResult::Sender(so)) = s.finish().await else {
        panic!()
    };
    let Some(EndpointResult::Receiver(ro)) = r.finish().await else {
        panic!()
    };
    // Stopping is prompt (the tasks wake on the signal), and both keep what they did.
    assert!(
        t0.elapsed() < Duration::from_millis(100),
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

#[tokio::test(flavor = "multi_thread")]
async fn receiver_ignores_other_sources_and_late_senders_skip() {
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
    let s = spawn(p.sender, &cfg, None).unwrap();
    let Some(EndpointResult::Sender(so)) = s.finish_after(Duration::from_secs(2)).await else {
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
    let r = spawn(p.receiver, &cfg, None).unwrap();
    let stranger = AsyncTestSocket::bind(SocketAddr::new(lo(), 0)).unwrap();
    stranger.send_to(&[0u8; 14], p.recv_addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let Some(EndpointResult::Receiver(ro)) = r.finish().await else {
        panic!()
    };
    assert_eq!(ro.foreign, 1);
    assert_eq!(ro.stats().received, 0);
}

/// A receiver whose sender never shows up declares every packet lost once each loss
/// deadline passes, and ends on its own (it is woken by the deadlines, not by packets).
#[tokio::test(flavor = "multi_thread")]
async fn receiver_without_sender_ends_at_the_loss_deadlines() {
    let clock = SystemClock::new();
    let start = clock.now().saturating_add(Duration::from_millis(50));
    let p = pair(
        Mode::Open,
        10,
        Duration::from_millis(10),
        Duration::from_millis(200),
        start,
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let t0 = Instant::now();
    let r = spawn(p.receiver, &config(), Some(tx)).unwrap();
    drop(p.sender);
    // Last packet due at ~0.14 s, lost at ~0.34 s.
    let report = tokio::time::timeout(Duration::from_secs(3), rx.recv())
        .await
        .unwrap()
        .unwrap();
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    assert!(!report.failed);
    let Some(EndpointResult::Receiver(ro)) = r.finish().await else {
        panic!()
    };
    assert_eq!(ro.stats().lost, 10);
    assert_eq!(ro.stats().received, 0);
}
