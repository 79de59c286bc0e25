//! A TWAMP client test (RFC 5357) on owamp-std's `ClientConnection` against owamp-std's
//! server with `Protocol::Twamp`, over loopback: the replies handed over as they come, the
//! end of each session (packets sent, those no reply answered), in the four modes, and a
//! request without addresses (twping's `-Z`).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use owamp_core::control::{Mode, Modes, Protocol, Role};
use owamp_core::session::twamp::TwoWayRecord;
use owamp_core::wire::twamp::{with_mixed, MIXED_MODE_BIT};
use owamp_core::wire::SessionId;
use owamp_os::store::MemoryStore;
use owamp_std::control::{
    ClientConnection, ClientOptions, RunningServer, Server, SessionSpec, TwoWayTestEnd,
};
use owamp_testkit::{client, lo_addr as lo, serve_config};

/// A TWAMP server (a reflector for every session) offering every mode, mixed included.
fn twamp_server() -> (RunningServer, SocketAddr) {
    let mut config = serve_config(Duration::from_secs(5), 8);
    config.control.protocol = Protocol::Twamp;
    let policy = owamp_core::policy::Limits::new(
        with_mixed(Modes::ALL),
        "default",
        owamp_core::policy::ClassLimits::default(),
    );
    policy.set_passphrase(b"alice", b"wonderland");
    let server = Server::bind(lo(), config, policy, Arc::new(MemoryStore::new())).unwrap();
    let addr = server.local_addr().unwrap();
    (server.spawn().unwrap(), addr)
}

/// A TWAMP client that offers `modes`.
fn twamp_client(modes: Modes, identity: bool) -> ClientOptions {
    let mut opts = client(identity.then_some(("alice", "wonderland")), modes);
    opts.control.protocol = Protocol::Twamp;
    opts
}

/// `packets` packets every 5 ms, loss timeout 300 ms.
fn spec(packets: u32) -> SessionSpec {
    SessionSpec {
        timeout: Duration::from_millis(300),
        ..SessionSpec::periodic(packets, Duration::from_millis(5))
    }
}

/// Runs one session of `packets` on `conn`; the replies, how many batches they came in, and
/// the end.
fn run(
    conn: &mut ClientConnection,
    packets: u32,
    unaddressed: bool,
) -> (
    owamp_core::io::SessionInfo,
    Vec<TwoWayRecord>,
    usize,
    TwoWayTestEnd,
) {
    let start = conn.now().saturating_add(Duration::from_millis(300));
    let info = if unaddressed {
        conn.request_session_unaddressed(Role::Sender, &spec(packets), start)
    } else {
        conn.request_session(Role::Sender, &spec(packets), start)
    }
    .unwrap();
    conn.start().unwrap();
    let mut records = Vec::new();
    let mut batches = 0;
    let end = conn
        .wait_two_way(None, &mut |sid: SessionId, r: &[TwoWayRecord]| {
            assert_eq!(sid, info.sid);
            batches += 1;
            records.extend_from_slice(r);
        })
        .unwrap();
    (info, records, batches, end)
}

/// Every packet answered once, in a plausible order of timestamps, with the TTLs read.
fn check_all_answered(records: &[TwoWayRecord], end: &TwoWayTestEnd, packets: u32) {
    assert!(end.test.complete, "{:?}", end.test.closed);
    assert!(end.test.received.is_empty() && end.test.saved.is_empty());
    assert_eq!(end.sessions.len(), 1);
    let s = &end.sessions[0];
    assert!(s.end.complete);
    assert_eq!(s.end.sent, packets);
    assert!(s.end.skips.is_empty());
    assert!(s.unanswered.is_empty(), "{:?}", s.unanswered);
    assert_eq!(records.len(), packets as usize);
    let seqs: BTreeSet<u32> = records.iter().map(|r| r.sender_seq).collect();
    assert_eq!(seqs, (0..packets).collect());
    for r in records {
        assert!(r.reflector_recv_time >= r.send_time, "{r:?}");
        assert!(r.reflector_send_time >= r.reflector_recv_time, "{r:?}");
        assert!(r.recv_time >= r.reflector_send_time, "{r:?}");
        assert!(r.recv_time.diff_nanos(r.send_time) < 100_000_000, "{r:?}");
        // Sent with TTL 255 (the reflector's Sender TTL) and answered with it, on loopback.
        assert_eq!((r.sender_ttl, r.reply_ttl), (255, 255), "{r:?}");
    }
}

#[test]
fn twamp_test_in_every_mode() {
    let (server, addr) = twamp_server();
    let choices = [
        (Modes::from(Mode::Open), false, Mode::Open, Mode::Open),
        (
            Modes::from(Mode::Authenticated),
            true,
            Mode::Authenticated,
            Mode::Authenticated,
        ),
        (
            Modes::from(Mode::Encrypted),
            true,
            Mode::Encrypted,
            Mode::Encrypted,
        ),
        // RFC 5618: authenticated control, open test packets.
        (
            Modes::from_raw(MIXED_MODE_BIT),
            true,
            Mode::Authenticated,
            Mode::Open,
        ),
    ];
    for (modes, identity, control, packets_in) in choices {
        let mut conn = ClientConnection::connect(addr, &twamp_client(modes, identity)).unwrap();
        assert_eq!((conn.mode(), conn.packet_mode()), (control, packets_in));
        let (info, records, batches, end) = run(&mut conn, 40, false);
        assert_eq!(info.mode, packets_in);
        assert!(batches >= 1);
        check_all_answered(&records, &end, 40);
        // TWAMP has no Fetch-Session (RFC 5357 3.1).
        assert!(conn.fetch(info.sid, 0, u32::MAX).is_err());
        conn.close();
    }
    server.shutdown().unwrap();
}

/// A request without addresses (zeros, RFC 4656 3.5): the session still tests between the
/// control connection's addresses, and every packet is answered.
#[test]
fn twamp_request_without_addresses() {
    let (server, addr) = twamp_server();
    let mut conn =
        ClientConnection::connect(addr, &twamp_client(Modes::from(Mode::Open), false)).unwrap();
    let (info, records, _, end) = run(&mut conn, 20, true);
    assert!(info.request.sender_address.is_unspecified());
    assert!(info.request.receiver_address.is_unspecified());
    assert_eq!(info.local.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(info.peer.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    check_all_answered(&records, &end, 20);
    conn.close();
    server.shutdown().unwrap();
}

/// Packets no reply answers are handed back at the end, each with the time it left: the
/// client tests from 127.0.0.2 while its request names no address, so the reflector expects
/// the control connection's 127.0.0.1 and its connected socket never sees the packets.
#[test]
fn unanswered_packets_are_reported_with_their_send_times() {
    if std::net::UdpSocket::bind("127.0.0.2:0").is_err() {
        eprintln!("skipped: 127.0.0.2 is not a loopback address here");
        return;
    }
    let (server, addr) = twamp_server();
    let mut opts = twamp_client(Modes::from(Mode::Open), false);
    opts.test_ip = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let mut conn = ClientConnection::connect(addr, &opts).unwrap();
    let (info, records, batches, end) = run(&mut conn, 10, true);
    assert_eq!(info.local.ip(), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    assert!(records.is_empty() && batches == 0, "{records:?}");
    assert!(end.test.complete);
    let s = &end.sessions[0];
    assert_eq!(s.end.sent, 10);
    let seqs: Vec<u32> = s.unanswered.iter().map(|p| p.seq).collect();
    assert_eq!(seqs, (0..10).collect::<Vec<_>>());
    // Sent on their schedule (every 5 ms from the start), in order.
    let start = info.request.start_time;
    for (i, p) in s.unanswered.iter().enumerate() {
        let due = start.saturating_add(Duration::from_millis(5 * i as u64));
        let late = p.send_time.diff_nanos(due);
        assert!((0..50_000_000).contains(&late), "packet {i} {late} ns late");
    }
    conn.close();
    server.shutdown().unwrap();
}
