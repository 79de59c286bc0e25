//! Tokio server behaviour over loopback: clients that go silent or close, the connection
//! cap, shutdown, and sessions stored as .owp files.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use owamp_core::control::{Modes, Role};
use owamp_core::io::Finished;
use owamp_core::owp::OwpReader;
use owamp_core::policy::AllowAll;
use owamp_os::store::{DirectoryStore, MemoryStore};
use owamp_testkit::freezable_relay;
use owamp_tokio::control::{run_test, ClientConnection, ClientError, Server, TestPlan};

fn short(packets: u32) -> owamp_tokio::control::SessionSpec {
    owamp_tokio::control::SessionSpec {
        timeout: Duration::from_millis(300),
        ..owamp_tokio::control::SessionSpec::periodic(packets, Duration::from_millis(10))
    }
}

/// A client starts a test in both directions and runs it until its sender is done, then goes
/// silent without closing its connection. The server finishes its sessions, sends
/// Stop-Sessions, waits its control timeout for the client's, then stores what it received
/// as incomplete and drops the connection.
#[tokio::test(flavor = "multi_thread")]
async fn silent_client_is_dropped_after_the_timeout() {
    let (server, addr, store) = serve(AllowAll, serve_config(Duration::from_secs(1), 4)).await;
    let (relay, silence) = freezable_relay(addr);
    let mut conn = ClientConnection::connect(relay, &client(None, Modes::ALL))
        .await
        .unwrap();
    let start = conn.now().saturating_add(Duration::from_millis(200));
    let to = conn
        .request_session(Role::Sender, &short(20), start)
        .await
        .unwrap();
    conn.request_session(Role::Receiver, &short(20), start)
        .await
        .unwrap();
    conn.start().await.unwrap();
    assert_eq!(server.handle().active_connections(), 1);
    let t0 = Instant::now();
    // Go silent: the connection stays open, but nothing reaches the server any more (the
    // test packets still do).
    silence.store(true, std::sync::atomic::Ordering::SeqCst);
    let handle = server.handle().clone();
    // Sessions end ~0.4 s + 0.3 s timeout, Stop-Sessions after 0.2 s, then 1 s of waiting.
    assert!(
        wait_until(Duration::from_secs(5), || handle.active_connections() == 0).await,
        "the server still serves the silent client"
    );
    let took = t0.elapsed();
    assert!(
        took > Duration::from_millis(1500),
        "dropped too early: {took:?}"
    );
    let kept = store.get(&to.sid).expect("the received session is stored");
    assert_eq!(kept.finished, Finished::Incomplete);
    assert_eq!(kept.records.iter().filter(|r| !r.is_lost()).count(), 20);
    drop(conn);
    server.shutdown().await.unwrap();
}

/// A client whose connection closes mid-test is cleaned up at once, keeping its records.
#[tokio::test(flavor = "multi_thread")]
async fn closed_client_is_cleaned_up_at_once() {
    let (server, addr, store) = serve(AllowAll, serve_config(Duration::from_secs(30), 4)).await;
    let mut conn = ClientConnection::connect(addr, &client(None, Modes::ALL))
        .await
        .unwrap();
    let start = conn.now().saturating_add(Duration::from_millis(100));
    let to = conn
        .request_session(Role::Sender, &short(300), start)
        .await
        .unwrap();
    conn.start().await.unwrap();
    // The test runs while the client is awaited; then its connection closes mid-test.
    let running = tokio::time::timeout(Duration::from_millis(500), conn.wait(None)).await;
    assert!(running.is_err(), "the test ended early: {running:?}");
    drop(conn);
    let handle = server.handle().clone();
    assert!(wait_until(Duration::from_secs(2), || handle.active_connections() == 0).await);
    let kept = store.get(&to.sid).unwrap();
    assert_eq!(kept.finished, Finished::Incomplete);
    assert!(kept.records.len() >= 20, "{}", kept.records.len());
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_the_cap_are_refused_and_shutdown_is_prompt() {
    let (server, addr, _) = serve(AllowAll, serve_config(Duration::from_secs(30), 1)).await;
    let first = ClientConnection::connect(addr, &client(None, Modes::ALL))
        .await
        .unwrap();
    let handle = server.handle().clone();
    assert!(wait_until(Duration::from_secs(2), || handle.active_connections() == 1).await);
    // The second one is closed before any greeting.
    let err = ClientConnection::connect(addr, &client(None, Modes::ALL))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Closed(_)), "{err:?}");
    assert_eq!(handle.refused_connections(), 1);
    // An idle connection (waiting up to its 30 s control timeout) does not hold shutdown up.
    let t0 = Instant::now();
    server.shutdown().await.unwrap();
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_eq!(handle.active_connections(), 0);
    drop(first);
    // Nothing listens any more.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// Shutting the server down during a test stops the test (Stop-Sessions both ways): both
/// sides keep what they received, then the server closes the connection.
#[tokio::test(flavor = "multi_thread")]
async fn shutdown_during_a_test_stops_it_and_keeps_the_records() {
    let (server, addr, store) = serve(AllowAll, serve_config(Duration::from_secs(5), 4)).await;
    let plan = TestPlan {
        send: Some(short(300)),
        receive: Some(short(300)),
        start_delay: Duration::from_millis(200),
    };
    let t =
        tokio::spawn(async move { run_test(addr, &client(None, Modes::ALL), &plan, None).await });
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let t0 = Instant::now();
    server.shutdown().await.unwrap();
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    let r = t.await.unwrap().unwrap();
    let from = r.from.unwrap().data.unwrap();
    assert_eq!(from.finished, Finished::Normal);
    assert!(
        from.next_seqno > 20 && from.next_seqno < 300,
        "{}",
        from.next_seqno
    );
    assert!(from.records.len() > 20);
    let to = r.to.unwrap();
    let kept = store.get(&to.info.sid).unwrap();
    assert_eq!(kept.finished, Finished::Normal);
    assert!(kept.records.len() > 20, "{}", kept.records.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn directory_store_writes_owp_files_and_serves_fetches() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(DirectoryStore::new(dir.path()).unwrap());
    let server = Server::bind(
        lo(),
        serve_config(Duration::from_secs(5), 4),
        AllowAll,
        store.clone(),
    )
    .await
    .unwrap();
    let addr = server.local_addr().unwrap();
    let server = server.spawn();
    let plan = TestPlan {
        send: Some(short(30)),
        receive: None,
        start_delay: Duration::from_millis(200),
    };
    let r = run_test(addr, &client(None, Modes::ALL), &plan, None)
        .await
        .unwrap();
    let to = r.to.unwrap();
    let fetched = to.data.unwrap();
    assert_eq!(fetched.records.len(), 30);
    let path = store.path_of(&to.info.sid);
    let mut rd = OwpReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    assert!(rd.header().is_finished());
    assert_eq!(rd.header().next_seqno, 30);
    assert_eq!(rd.header().request.sid, to.info.sid);
    let recs: Vec<_> = rd.records().unwrap().map(Result::unwrap).collect();
    assert_eq!(recs, fetched.records);
    server.shutdown().await.unwrap();
}

/// Connections are logged when they end.
#[tokio::test(flavor = "multi_thread")]
async fn finished_connections_are_logged() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut config = serve_config(Duration::from_secs(5), 4);
    config.log = Some(Arc::new(
        move |s: &owamp_tokio::control::ConnectionSummary| {
            let _ = tx.send(s.clone());
        },
    ));
    let store = Arc::new(MemoryStore::new());
    let server = Server::bind(lo(), config, AllowAll, store).await.unwrap();
    let addr = server.local_addr().unwrap();
    let server = server.spawn();
    let plan = TestPlan {
        send: Some(short(10)),
        receive: None,
        start_delay: Duration::from_millis(100),
    };
    run_test(addr, &client(None, Modes::ALL), &plan, None)
        .await
        .unwrap();
    let s = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.sessions, 1);
    assert_eq!(s.stored, 1);
    assert_eq!(s.store_errors, 0);
    assert_eq!(s.close, Some(owamp_core::control::CloseReason::PeerClosed));
    server.shutdown().await.unwrap();
}
