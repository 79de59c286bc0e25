//! Tokio client and tokio server in one process over loopback: whole measurements in every
//! mode, an early stop, and many measurements at once.

mod common;

use std::time::{Duration, Instant};

use common::*;
use owamp_core::control::{CloseReason, Mode, Modes, Role};
use owamp_core::io::Finished;
use owamp_core::policy::AllowAll;
use owamp_tokio::control::{run_test, ClientConnection, ClientError, TestPlan};
use owamp_tokio::net::AsyncTestSocket;
use owamp_tokio::StopToken;

#[tokio::test(flavor = "multi_thread")]
async fn open_mode_both_directions() {
    let (server, addr, store) = serve(AllowAll, serve_config(Duration::from_secs(5), 8)).await;
    let r = run_test(addr, &client(None, Modes::ALL), &both_ways(), None)
        .await
        .unwrap();
    assert_eq!(r.mode, Mode::Open);
    assert!(!r.stopped_early);
    let to = r.to.unwrap();
    let from = r.from.unwrap();
    check_complete(to.data.as_ref().unwrap(), PACKETS);
    check_complete(from.data.as_ref().unwrap(), PACKETS);
    // The server kept what it received, under the SID of the "to" session.
    let kept = store.get(&to.info.sid).unwrap();
    assert_eq!(kept.records, to.data.unwrap().records);
    assert_eq!(server.handle().accepted_connections(), 1);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn authenticated_and_encrypted_modes() {
    for mode in [Mode::Authenticated, Mode::Encrypted] {
        let (server, addr, _) =
            serve(limits_with_alice(), serve_config(Duration::from_secs(5), 8)).await;
        let opts = client(Some(("alice", "wonderland")), Modes::EMPTY.with(mode));
        let r = run_test(addr, &opts, &both_ways(), None).await.unwrap();
        assert_eq!(r.mode, mode);
        check_complete(r.to.unwrap().data.as_ref().unwrap(), PACKETS);
        check_complete(r.from.unwrap().data.as_ref().unwrap(), PACKETS);
        server.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_passphrase_is_rejected() {
    let (server, addr, _) =
        serve(limits_with_alice(), serve_config(Duration::from_secs(5), 8)).await;
    let opts = client(Some(("alice", "looking-glass")), Modes::AUTHENTICATED);
    let t0 = Instant::now();
    match run_test(addr, &opts, &both_ways(), None).await {
        Err(ClientError::Closed(CloseReason::SetupRejected(_))) => {}
        other => panic!("expected a refused set-up, got {other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(5));
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn early_stop_keeps_records() {
    let (server, addr, _) = serve(AllowAll, serve_config(Duration::from_secs(5), 8)).await;
    // 300 packets over 3 s; stopped after about 1.5 s.
    let long = owamp_tokio::control::SessionSpec {
        timeout: Duration::from_millis(500),
        ..owamp_tokio::control::SessionSpec::periodic(300, Duration::from_millis(10))
    };
    let plan = TestPlan {
        send: Some(long.clone()),
        receive: Some(long),
        start_delay: Duration::from_millis(200),
    };
    let stop = StopToken::new();
    let s2 = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1700)).await;
        s2.stop();
    });
    let t0 = Instant::now();
    let r = run_test(addr, &client(None, Modes::ALL), &plan, Some(&stop))
        .await
        .unwrap();
    assert!(r.stopped_early);
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    for (name, d) in [("to", r.to.unwrap()), ("from", r.from.unwrap())] {
        let s = d.data.unwrap();
        assert_eq!(s.finished, Finished::Normal, "{name}");
        // The sender stopped part way: Next-Seqno says where.
        assert!(
            s.next_seqno > 50 && s.next_seqno < 300,
            "{name}: {}",
            s.next_seqno
        );
        // RFC 4656 3.8: records of packets sent within the timeout before Stop-Sessions may be
        // dropped; everything before is kept, and received.
        let kept = s.records.iter().filter(|r| !r.is_lost()).count();
        assert!(kept >= 50, "{name}: {kept} records kept");
        assert!(s.records.iter().all(|r| r.seq < s.next_seqno));
        let mut seqs: Vec<u32> = s.records.iter().map(|r| r.seq).collect();
        seqs.sort_unstable();
        // The kept records are a prefix without gaps (nothing lost on loopback).
        assert!(
            seqs.iter().enumerate().all(|(i, &q)| q == i as u32),
            "{name}"
        );
    }
    server.shutdown().await.unwrap();
}

/// 32 clients measure both ways at once against one server: every session completes with
/// every packet, and the server serves them all concurrently.
#[tokio::test(flavor = "multi_thread")]
async fn many_concurrent_measurements() {
    const CLIENTS: usize = 32;
    let (server, addr, store) = serve(AllowAll, serve_config(Duration::from_secs(10), 64)).await;
    let plan = TestPlan {
        send: Some(spec(PACKETS, Duration::from_millis(10))),
        receive: Some(spec(PACKETS, Duration::from_millis(10))),
        start_delay: Duration::from_millis(500),
    };
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let plan = plan.clone();
        tasks.push(tokio::spawn(async move {
            let opts = client(None, Modes::ALL);
            run_test(addr, &opts, &plan, None).await
        }));
    }
    let handle = server.handle().clone();
    // All of them are served at once (none waits for another to finish).
    assert!(
        wait_until(Duration::from_secs(3), || handle.active_connections()
            == CLIENTS)
        .await,
        "{} connections active",
        handle.active_connections()
    );
    let t0 = Instant::now();
    let mut sids = Vec::new();
    for t in tasks {
        let r = tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("a measurement hangs")
            .unwrap()
            .unwrap();
        let to = r.to.unwrap();
        check_complete(to.data.as_ref().unwrap(), PACKETS);
        check_complete(r.from.unwrap().data.as_ref().unwrap(), PACKETS);
        sids.push(to.info.sid);
    }
    // Concurrent, not serial: 32 x ~1 s would take far longer.
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    sids.sort_unstable_by_key(|s| s.0);
    sids.dedup();
    assert_eq!(sids.len(), CLIENTS);
    assert!(sids.iter().all(|s| store.get(s).is_some()));
    assert_eq!(handle.accepted_connections(), CLIENTS as u64);
    assert_eq!(handle.refused_connections(), 0);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn ipv6_loopback() {
    use std::net::{IpAddr, Ipv6Addr, SocketAddr};
    let lo6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0);
    if std::net::UdpSocket::bind(lo6).is_err() || std::net::TcpListener::bind(lo6).is_err() {
        eprintln!("skipping: ::1 is not available on this host");
        return;
    }
    let store = std::sync::Arc::new(owamp_os::store::MemoryStore::new());
    let server = owamp_tokio::control::Server::bind(
        lo6,
        serve_config(Duration::from_secs(5), 8),
        AllowAll,
        store,
    )
    .await
    .unwrap();
    let addr = server.local_addr().unwrap();
    let server = server.spawn();
    let r = run_test(addr, &client(None, Modes::ALL), &both_ways(), None)
        .await
        .unwrap();
    let to = r.to.unwrap();
    assert!(to.info.peer.is_ipv6() && to.info.local.is_ipv6());
    check_complete(to.data.as_ref().unwrap(), PACKETS);
    check_complete(r.from.unwrap().data.as_ref().unwrap(), PACKETS);
    server.shutdown().await.unwrap();
}

/// Datagrams from a stranger on a client's receiving test socket, before and during the
/// test, are ignored: the session gets every packet of its sender and nothing else.
#[tokio::test(flavor = "multi_thread")]
async fn datagrams_from_strangers_are_ignored() {
    let (server, addr, _) = serve(AllowAll, serve_config(Duration::from_secs(5), 8)).await;
    let mut conn = ClientConnection::connect(addr, &client(None, Modes::ALL))
        .await
        .unwrap();
    let start = conn.now().saturating_add(Duration::from_millis(200));
    let from = conn
        .request_session(
            Role::Receiver,
            &spec(PACKETS, Duration::from_millis(10)),
            start,
        )
        .await
        .unwrap();
    let stranger = AsyncTestSocket::bind(lo()).unwrap();
    let target = from.local;
    // Queued before the test starts, then sent while it runs.
    stranger.send_to(&[0u8; 14], target).await.unwrap();
    let junk = tokio::spawn(async move {
        for len in [1usize, 14, 64, 1500].into_iter().cycle().take(40) {
            let _ = stranger.send_to(&vec![0xa5; len], target).await;
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    });
    conn.start().await.unwrap();
    let end = conn.wait(None).await.unwrap();
    assert!(end.complete);
    let s = end
        .received
        .iter()
        .find(|s| s.request.sid == from.sid)
        .expect("the received session");
    check_complete(s, PACKETS);
    junk.await.unwrap();
    conn.close().await;
    server.shutdown().await.unwrap();
}

/// Records written to files as they come read back as the records gathered in memory
/// (`fetch_to`: byte for byte the file of the answer fetched whole; `receive_dir`: the
/// received session), and a fetch that cannot complete leaves no file.
#[tokio::test(flavor = "multi_thread")]
async fn records_written_as_they_come_match_records_in_memory() {
    use owamp_os::host::fetched_to_stored;
    use owamp_os::store::{read_owp, write_owp};
    use owamp_tokio::control::ClientOptions;

    let (server, addr, _) = serve(AllowAll, serve_config(Duration::from_secs(5), 8)).await;
    let dir = tempfile::tempdir().unwrap();
    let opts = ClientOptions {
        receive_dir: Some(dir.path().join("received")),
        ..client(None, Modes::ALL)
    };
    let mut conn = ClientConnection::connect(addr, &opts).await.unwrap();
    let start = conn.now().saturating_add(Duration::from_millis(300));
    let sp = spec(PACKETS, Duration::from_millis(10));
    let to = conn
        .request_session(Role::Sender, &sp, start)
        .await
        .unwrap();
    let from = conn
        .request_session(Role::Receiver, &sp, start)
        .await
        .unwrap();
    conn.start().await.unwrap();
    let end = conn.wait(None).await.unwrap();
    assert!(end.complete && end.received.is_empty());
    assert_eq!(end.saved.len(), 1);
    assert_eq!((end.saved[0].sid, &end.saved[0].error), (from.sid, &None));
    check_complete(&read_owp(&end.saved[0].path).unwrap(), PACKETS);

    let whole = conn.fetch(to.sid, 0, u32::MAX).await.unwrap();
    let path = dir.path().join("to.owp");
    let head = conn.fetch_to(to.sid, 0, u32::MAX, &path).await.unwrap();
    assert!(head.records.is_empty());
    let expect = dir.path().join("expect.owp");
    write_owp(&expect, &fetched_to_stored(whole)).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(&expect).unwrap()
    );
    let nowhere = dir.path().join("missing").join("to.owp");
    assert!(matches!(
        conn.fetch_to(to.sid, 0, u32::MAX, &nowhere).await,
        Err(ClientError::Save { .. })
    ));
    conn.close().await;
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
    server.shutdown().await.unwrap();
}
