//! Server behaviour over loopback: clients that vanish, the connection cap, shutdown, and
//! sessions stored as .owp files.

use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use owamp_core::control::{ClientConfig, Role};
use owamp_core::io::{FetchReply, Finished, StoredSession};
use owamp_core::owp::OwpReader;
use owamp_core::policy::AllowAll;
use owamp_core::session::StreamEnd;
use owamp_core::wire::{DataRecord, RequestSession, SessionId};
use owamp_os::store::{
    read_owp, DirectoryStore, FetchSource, MemoryStore, RecordSink, SessionStore, StoreError,
};
use owamp_std::control::{
    run_test, ClientConnection, ClientOptions, Server, SessionSpec, TestPlan,
};
use owamp_testkit::{freezable_relay, lo_addr as lo, serve_config as config};

fn client() -> ClientOptions {
    ClientOptions {
        control: ClientConfig {
            control_timeout: Duration::from_secs(5),
            end_delay: Duration::from_millis(200),
            ..ClientConfig::default()
        },
        ..ClientOptions::default()
    }
}

fn spec(packets: u32) -> SessionSpec {
    SessionSpec {
        timeout: Duration::from_millis(300),
        ..SessionSpec::periodic(packets, Duration::from_millis(10))
    }
}

fn wait_until(max: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < max {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

/// A client starts a test in both directions, then goes silent without closing its
/// connection. The server finishes its sessions, sends Stop-Sessions, waits its control
/// timeout for the client's, then stores what it received as incomplete and drops the
/// connection.
#[test]
fn silent_client_is_dropped_after_the_timeout() {
    let store = Arc::new(MemoryStore::new());
    let server = Server::bind(
        lo(),
        config(Duration::from_secs(1), 4),
        AllowAll,
        store.clone(),
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    let server = server.spawn().unwrap();
    let (relay, silence) = freezable_relay(addr);
    let mut conn = ClientConnection::connect(relay, &client()).unwrap();
    let start = conn.now().saturating_add(Duration::from_millis(200));
    let to = conn
        .request_session(Role::Sender, &spec(20), start)
        .unwrap();
    conn.request_session(Role::Receiver, &spec(20), start)
        .unwrap();
    conn.start().unwrap();
    assert_eq!(server.handle().active_connections(), 1);
    let t0 = Instant::now();
    // Vanish: the connection stays open but nothing reaches the server any more (the test
    // packets still do).
    silence.store(true, Ordering::SeqCst);
    // Sessions end ~0.4 s + 0.3 s timeout, Stop-Sessions after 0.2 s, then 1 s of waiting.
    assert!(
        wait_until(Duration::from_secs(5), || server
            .handle()
            .active_connections()
            == 0),
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
    server.shutdown().unwrap();
    drop(conn);
}

/// A client whose connection closes mid-test is cleaned up at once.
#[test]
fn closed_client_is_cleaned_up_at_once() {
    let store = Arc::new(MemoryStore::new());
    let server = Server::bind(
        lo(),
        config(Duration::from_secs(30), 4),
        AllowAll,
        store.clone(),
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    let server = server.spawn().unwrap();
    let mut conn = ClientConnection::connect(addr, &client()).unwrap();
    let start = conn.now().saturating_add(Duration::from_millis(100));
    let to = conn
        .request_session(Role::Sender, &spec(300), start)
        .unwrap();
    conn.start().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    drop(conn);
    assert!(wait_until(Duration::from_secs(2), || server
        .handle()
        .active_connections()
        == 0));
    let kept = store.get(&to.sid).unwrap();
    assert_eq!(kept.finished, Finished::Incomplete);
    assert!(kept.records.len() >= 20, "{}", kept.records.len());
    server.shutdown().unwrap();
}

#[test]
fn connections_beyond_the_cap_are_refused_and_shutdown_is_prompt() {
    let store = Arc::new(MemoryStore::new());
    let server = Server::bind(lo(), config(Duration::from_secs(30), 1), AllowAll, store).unwrap();
    let addr = server.local_addr().unwrap();
    let server = server.spawn().unwrap();
    let first = ClientConnection::connect(addr, &client()).unwrap();
    assert!(wait_until(Duration::from_secs(2), || server
        .handle()
        .active_connections()
        == 1));
    // The second one is closed before any greeting.
    let err = ClientConnection::connect(addr, &client()).unwrap_err();
    assert!(
        matches!(err, owamp_std::control::ClientError::Closed(_)),
        "{err:?}"
    );
    assert_eq!(server.handle().refused_connections(), 1);
    // An idle connection does not hold shutdown up.
    let t0 = Instant::now();
    server.shutdown().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    drop(first);
    // Nothing listens any more.
    std::thread::sleep(Duration::from_millis(50));
    let c = TcpStream::connect_timeout(&addr, Duration::from_millis(500));
    if let Ok(mut s) = c {
        // The listener may linger until dropped; it must not answer.
        use std::io::Read;
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut b = [0u8; 1];
        assert!(!matches!(s.read(&mut b), Ok(1)));
    }
}

#[test]
fn directory_store_writes_owp_files_and_serves_fetches() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(DirectoryStore::new(dir.path()).unwrap());
    let server = Server::bind(
        lo(),
        config(Duration::from_secs(5), 4),
        AllowAll,
        store.clone(),
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    let server = server.spawn().unwrap();
    let plan = TestPlan {
        send: Some(spec(30)),
        receive: None,
        start_delay: Duration::from_millis(200),
    };
    let r = run_test(addr, &client(), &plan, None).unwrap();
    let to = r.to.unwrap();
    let fetched = to.data.unwrap();
    assert_eq!(fetched.records.len(), 30);
    let path = store.path_of(&to.info.sid);
    // The file reads back with the core's .owp reader as a finished session.
    let mut rd = OwpReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    assert!(rd.header().is_finished());
    assert_eq!(rd.header().next_seqno, 30);
    assert_eq!(rd.header().request.sid, to.info.sid);
    assert_eq!(rd.header().request.hmac, [0; 16]);
    let recs: Vec<_> = rd.records().unwrap().map(Result::unwrap).collect();
    assert_eq!(recs, fetched.records);
    assert_eq!(read_owp(&path).unwrap().records, fetched.records);
    server.shutdown().unwrap();
}

/// Shutting the server down during a test stops the test (Stop-Sessions both ways): both
/// sides keep what they received, then the server closes the connection.
#[test]
fn shutdown_during_a_test_stops_it_and_keeps_the_records() {
    let store = Arc::new(MemoryStore::new());
    let server = Server::bind(
        lo(),
        config(Duration::from_secs(5), 4),
        AllowAll,
        store.clone(),
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    let server = server.spawn().unwrap();
    let plan = TestPlan {
        send: Some(spec(300)),
        receive: Some(spec(300)),
        start_delay: Duration::from_millis(200),
    };
    let t = std::thread::spawn(move || run_test(addr, &client(), &plan, None));
    std::thread::sleep(Duration::from_millis(1200));
    let t0 = Instant::now();
    server.shutdown().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    let r = t.join().unwrap().unwrap();
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

/// A store whose sessions take a while to complete (a slow disk): its sinks wait before
/// they finish their file.
struct SlowFinish {
    inner: DirectoryStore,
    delay: Duration,
}

struct SlowSink {
    inner: Box<dyn RecordSink>,
    delay: Duration,
}

impl RecordSink for SlowSink {
    fn append(&mut self, records: &[DataRecord]) -> Result<(), StoreError> {
        self.inner.append(records)
    }

    fn finish(self: Box<Self>, end: &StreamEnd) -> Result<Option<StoredSession>, StoreError> {
        std::thread::sleep(self.delay);
        self.inner.finish(end)
    }
}

impl SessionStore for SlowFinish {
    fn save(&self, session: &StoredSession) -> Result<(), StoreError> {
        self.inner.save(session)
    }
    fn load(&self, sid: &SessionId) -> FetchReply {
        self.inner.load(sid)
    }
    fn begin(&self, request: &RequestSession) -> Result<Box<dyn RecordSink>, StoreError> {
        Ok(Box::new(SlowSink {
            inner: self.inner.begin(request)?,
            delay: self.delay,
        }))
    }
    fn fetch(&self, sid: &SessionId, begin: u32, end: u32) -> FetchSource {
        self.inner.fetch(sid, begin, end)
    }
}

/// The server sends its Stop-Sessions first (its receive session is over before the
/// client's end delay), so the client's answer ends the test on the client before the server
/// has read it and completed the file. A fetch on a second connection at that moment waits
/// for the file rather than being told there is no such session (RFC 4656 3.9).
#[test]
fn fetch_from_another_connection_right_after_the_test_waits_for_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SlowFinish {
        inner: DirectoryStore::new(dir.path()).unwrap(),
        delay: Duration::from_millis(400),
    });
    let server = Server::bind(lo(), config(Duration::from_secs(5), 4), AllowAll, store).unwrap();
    let addr = server.local_addr().unwrap();
    let server = server.spawn().unwrap();
    let opts = ClientOptions {
        control: ClientConfig {
            control_timeout: Duration::from_secs(5),
            end_delay: Duration::from_millis(500),
            ..ClientConfig::default()
        },
        ..ClientOptions::default()
    };
    let mut conn = ClientConnection::connect(addr, &opts).unwrap();
    let mut other = ClientConnection::connect(addr, &opts).unwrap();
    let start = conn.now().saturating_add(Duration::from_millis(200));
    let to = conn
        .request_session(Role::Sender, &spec(10), start)
        .unwrap();
    conn.start().unwrap();
    let end = conn.wait(None).unwrap();
    assert!(end.complete);
    let fetched = other.fetch(to.sid, 0, u32::MAX).unwrap();
    assert_eq!(fetched.finished, Finished::Normal);
    assert_eq!(fetched.records.len(), 10);
    drop(conn);
    drop(other);
    server.shutdown().unwrap();
}
