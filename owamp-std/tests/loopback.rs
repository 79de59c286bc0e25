//! Client and server in one process over loopback: whole measurements in every mode.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use owamp_core::control::{CloseReason, Mode, Modes, ServerConfig};
use owamp_core::io::{Finished, StoredSession};
use owamp_core::policy::{AllowAll, ServerPolicy};
use owamp_os::store::MemoryStore;
use owamp_std::control::{
    run_test, ClientError, ClientOptions, RunningServer, ServeConfig, Server, SessionSpec,
    StopHandle, TestPlan,
};
use owamp_testkit::{both_ways, client, limits_with_alice, serve_config, PACKETS};

fn serve<P: ServerPolicy + Clone + Send + 'static>(
    ip: IpAddr,
    policy: P,
    control_timeout: Duration,
) -> (RunningServer, SocketAddr, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let config = serve_config(control_timeout, 8);
    let server = Server::bind(SocketAddr::new(ip, 0), config, policy, store.clone()).unwrap();
    let addr = server.local_addr().unwrap();
    (server.spawn().unwrap(), addr, store)
}

fn spec() -> SessionSpec {
    owamp_testkit::spec(PACKETS, Duration::from_millis(10))
}

/// Every packet arrived once, with a small positive delay and TTL 255.
fn check_complete(s: &StoredSession) {
    owamp_testkit::check_complete(s, PACKETS);
}

#[test]
fn open_mode_both_directions() {
    let (server, addr, store) = serve(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        AllowAll,
        Duration::from_secs(5),
    );
    let r = run_test(addr, &client(None, Modes::ALL), &both_ways(), None).unwrap();
    assert_eq!(r.mode, Mode::Open);
    assert!(!r.stopped_early);
    let to = r.to.unwrap();
    let from = r.from.unwrap();
    check_complete(to.data.as_ref().unwrap());
    check_complete(from.data.as_ref().unwrap());
    // The server kept what it received, under the SID of the "to" session.
    let kept = store.get(&to.info.sid).unwrap();
    assert_eq!(kept.records, to.data.unwrap().records);
    server.shutdown().unwrap();
}

#[test]
fn authenticated_and_encrypted_modes() {
    for mode in [Mode::Authenticated, Mode::Encrypted] {
        let (server, addr, _) = serve(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            limits_with_alice(),
            Duration::from_secs(5),
        );
        let modes = Modes::EMPTY.with(mode);
        let opts = client(Some(("alice", "wonderland")), modes);
        let r = run_test(addr, &opts, &both_ways(), None).unwrap();
        assert_eq!(r.mode, mode);
        check_complete(r.to.unwrap().data.as_ref().unwrap());
        check_complete(r.from.unwrap().data.as_ref().unwrap());
        server.shutdown().unwrap();
    }
}

#[test]
fn wrong_passphrase_is_rejected() {
    let (server, addr, _) = serve(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        limits_with_alice(),
        Duration::from_secs(5),
    );
    let opts = client(Some(("alice", "looking-glass")), Modes::AUTHENTICATED);
    let t0 = Instant::now();
    match run_test(addr, &opts, &both_ways(), None) {
        Err(ClientError::Closed(CloseReason::SetupRejected(_))) => {}
        other => panic!("expected a refused set-up, got {other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(5));
    server.shutdown().unwrap();
}

#[test]
fn ipv6_loopback() {
    let lo = IpAddr::V6(Ipv6Addr::LOCALHOST);
    if std::net::UdpSocket::bind(SocketAddr::new(lo, 0)).is_err()
        || std::net::TcpListener::bind(SocketAddr::new(lo, 0)).is_err()
    {
        eprintln!("skipping: ::1 is not available on this host");
        return;
    }
    let (server, addr, _) = serve(lo, AllowAll, Duration::from_secs(5));
    let r = run_test(addr, &client(None, Modes::ALL), &both_ways(), None).unwrap();
    let to = r.to.unwrap();
    assert!(to.info.peer.is_ipv6());
    check_complete(to.data.as_ref().unwrap());
    check_complete(r.from.unwrap().data.as_ref().unwrap());
    server.shutdown().unwrap();
}

#[test]
fn early_stop_keeps_records() {
    let (server, addr, _) = serve(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        AllowAll,
        Duration::from_secs(5),
    );
    // 300 packets over 3 s; stopped after about 1.5 s.
    let long = SessionSpec {
        timeout: Duration::from_millis(500),
        ..SessionSpec::periodic(300, Duration::from_millis(10))
    };
    let plan = TestPlan {
        send: Some(long.clone()),
        receive: Some(long),
        start_delay: Duration::from_millis(200),
    };
    let stop = StopHandle::new();
    let s2 = stop.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1700));
        s2.stop();
    });
    let t0 = Instant::now();
    let r = run_test(addr, &client(None, Modes::ALL), &plan, Some(&stop)).unwrap();
    t.join().unwrap();
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
    server.shutdown().unwrap();
}

/// Three consecutive UDP ports on 127.0.0.1, the first two held (bound) by the caller.
fn three_ports() -> (u16, Vec<std::net::UdpSocket>) {
    for base in (42_000u16..60_000).step_by(97) {
        let hold: Vec<_> = (0..2)
            .filter_map(|i| std::net::UdpSocket::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if hold.len() == 2 && std::net::UdpSocket::bind(("127.0.0.1", base + 2)).is_ok() {
            return (base, hold);
        }
    }
    panic!("no free ports");
}

#[test]
fn test_ports_come_from_the_configured_ranges() {
    use owamp_core::control::PortRange;
    // The server's range has its first two ports taken: it must move on to the third.
    let (base, _held) = three_ports();
    let store = Arc::new(MemoryStore::new());
    let config = ServeConfig {
        control: ServerConfig {
            control_timeout: Duration::from_secs(5),
            end_delay: Duration::from_millis(200),
            test_ports: Some(PortRange {
                low: base,
                high: base + 2,
            }),
            ..ServerConfig::default()
        },
        ..ServeConfig::default()
    };
    let lo = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
    let server = Server::bind(lo, config, AllowAll, store).unwrap();
    let addr = server.local_addr().unwrap();
    let server = server.spawn().unwrap();
    let crange = PortRange {
        low: base + 3,
        high: base + 60,
    };
    let opts = ClientOptions {
        test_ports: Some(crange),
        ..client(None, Modes::ALL)
    };
    let plan = TestPlan {
        send: Some(spec()),
        receive: None,
        start_delay: Duration::from_millis(200),
    };
    let r = run_test(addr, &opts, &plan, None).unwrap();
    let to = r.to.unwrap();
    assert_eq!(to.info.peer.port(), base + 2, "server receiver port");
    let cport = to.info.local.port();
    assert!(
        (crange.low..=crange.high).contains(&cport),
        "client port {cport}"
    );
    check_complete(to.data.as_ref().unwrap());
    server.shutdown().unwrap();
}

/// A dual-stack listener sees IPv4 clients as IPv4-mapped IPv6 addresses: test sessions
/// still run over IPv4.
#[test]
fn dual_stack_listener_serves_ipv4_clients() {
    let Ok(listener) = std::net::TcpListener::bind("[::]:0") else {
        eprintln!("skipping: cannot listen on [::]");
        return;
    };
    let port = listener.local_addr().unwrap().port();
    let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    if std::net::TcpStream::connect_timeout(&v4, Duration::from_secs(1)).is_err() {
        eprintln!("skipping: the [::] listener is IPv6-only on this host");
        return;
    }
    // Take the probe connection off the queue.
    let _ = listener.accept();
    let store = Arc::new(MemoryStore::new());
    let config = ServeConfig {
        control: ServerConfig {
            control_timeout: Duration::from_secs(5),
            end_delay: Duration::from_millis(200),
            ..ServerConfig::default()
        },
        ..ServeConfig::default()
    };
    let server = Server::from_listener(listener, config, AllowAll, store)
        .spawn()
        .unwrap();
    let r = run_test(v4, &client(None, Modes::ALL), &both_ways(), None).unwrap();
    let to = r.to.unwrap();
    assert!(to.info.peer.is_ipv4());
    check_complete(to.data.as_ref().unwrap());
    check_complete(r.from.unwrap().data.as_ref().unwrap());
    server.shutdown().unwrap();
}

/// Records written to files as they come read back as the records gathered in memory: a
/// fetched session written by `fetch_to` is the file `write_owp` makes of the same answer
/// fetched whole, byte for byte; a received session goes to its directory. A fetch that
/// cannot complete leaves no file, and the connection stays usable.
#[test]
fn records_written_as_they_come_match_records_in_memory() {
    use owamp_core::control::Role;
    use owamp_os::host::fetched_to_stored;
    use owamp_os::store::{read_owp, write_owp};
    use owamp_std::control::ClientConnection;

    let (server, addr, _) = serve(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        limits_with_alice(),
        Duration::from_secs(5),
    );
    let dir = tempfile::tempdir().unwrap();
    let opts = ClientOptions {
        receive_dir: Some(dir.path().join("received")),
        ..client(Some(("alice", "wonderland")), Modes::ENCRYPTED)
    };
    let mut conn = ClientConnection::connect(addr, &opts).unwrap();
    let start = conn.now().saturating_add(Duration::from_millis(300));
    let to = conn.request_session(Role::Sender, &spec(), start).unwrap();
    let from = conn
        .request_session(Role::Receiver, &spec(), start)
        .unwrap();
    conn.start().unwrap();
    let end = conn.wait(None).unwrap();
    assert!(end.complete);
    assert!(end.received.is_empty(), "nothing gathered in memory");
    assert_eq!(end.saved.len(), 1);
    assert_eq!(end.saved[0].sid, from.sid);
    assert_eq!(end.saved[0].error, None);
    assert!(end.saved[0].path.starts_with(dir.path().join("received")));
    check_complete(&read_owp(&end.saved[0].path).unwrap());

    let whole = conn.fetch(to.sid, 0, u32::MAX).unwrap();
    check_complete(&fetched_to_stored(whole.clone()));
    let path = dir.path().join("to.owp");
    let head = conn.fetch_to(to.sid, 0, u32::MAX, &path).unwrap();
    assert!(head.records.is_empty());
    assert_eq!(head.request, whole.request);
    let expect = dir.path().join("expect.owp");
    write_owp(&expect, &fetched_to_stored(whole)).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(&expect).unwrap()
    );

    // Refused, or nowhere to write: an error, no file, and the next fetch works.
    let unknown = owamp_core::wire::SessionId([0; 16]);
    let denied = dir.path().join("denied.owp");
    assert!(matches!(
        conn.fetch_to(unknown, 0, u32::MAX, &denied),
        Err(ClientError::FetchDenied(_))
    ));
    assert!(!denied.exists());
    let nowhere = dir.path().join("missing").join("to.owp");
    match conn.fetch_to(to.sid, 0, u32::MAX, &nowhere) {
        Err(ClientError::Save { path, .. }) => assert_eq!(path, nowhere),
        other => panic!("expected a save error, got {other:?}"),
    }
    let again = conn.fetch(to.sid, 0, u32::MAX).unwrap();
    check_complete(&fetched_to_stored(again));
    conn.close();
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["expect.owp", "received", "to.owp"]);

    // run_test with a receive directory reads the received session back.
    let r = run_test(addr, &opts, &both_ways(), None).unwrap();
    check_complete(r.from.unwrap().data.as_ref().unwrap());
    check_complete(r.to.unwrap().data.as_ref().unwrap());
    server.shutdown().unwrap();
}

/// No end delay either way, at 1,000 packets/s: Stop-Sessions follows the last packet at
/// once, while a receiving socket is read in batches (every few milliseconds, not as each
/// packet arrives); still every packet is received, on the server's side and the client's.
#[test]
fn stop_right_after_the_last_packet_loses_nothing_queued() {
    let store = Arc::new(MemoryStore::new());
    let mut config = serve_config(Duration::from_secs(5), 8);
    config.control.end_delay = Duration::ZERO;
    let server = Server::bind(
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        config,
        AllowAll,
        store,
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    let server = server.spawn().unwrap();
    let mut opts = client(None, Modes::OPEN);
    opts.control.end_delay = Duration::ZERO;
    let plan = TestPlan {
        send: Some(owamp_testkit::spec(200, Duration::from_millis(1))),
        receive: Some(owamp_testkit::spec(200, Duration::from_millis(1))),
        start_delay: Duration::from_millis(300),
    };
    let r = run_test(addr, &opts, &plan, None).unwrap();
    owamp_testkit::check_complete(r.to.unwrap().data.as_ref().unwrap(), 200);
    owamp_testkit::check_complete(r.from.unwrap().data.as_ref().unwrap(), 200);
    server.shutdown().unwrap();
}
