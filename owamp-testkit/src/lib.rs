//! Test set-up shared by the test suites of owamp-std and owamp-tokio (it depends on neither): a test session's two
//! endpoints on loopback, built without a control connection, and the configurations and
//! checks of the loopback measurements. Test code only: it panics on any failure.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use owamp_core::control::{ClientConfig, Identity, Mode, Modes, Role, ServerConfig};
use owamp_core::crypto::SessionKeys;
use owamp_core::io::{Finished, SessionInfo, StoredSession};
use owamp_core::policy::{ClassLimits, Limits};
use owamp_core::time::{Interval, OwampTime};
use owamp_core::wire::{RequestSession, SessionId, Slot, SlotKind, TypeP};
use owamp_os::host::{ClientOptions, EndpointConfig, ServeConfig, SessionSpec, TestPlan};
use owamp_os::net::TestSocket;
use owamp_os::rng::OsRng;

/// `d` in the 32.32 fixed-point format of requests.
pub fn secs(d: Duration) -> Interval {
    Interval::from_duration(d).unwrap()
}

/// 127.0.0.1.
pub fn lo() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

/// The two ends of one test session: each end's session and bound socket.
pub struct SessionPair {
    /// The sending end.
    pub sender: (SessionInfo, TestSocket),
    /// The receiving end.
    pub receiver: (SessionInfo, TestSocket),
    /// The receiver's address.
    pub recv_addr: SocketAddr,
}

/// A session of `packets` packets every `interval` from one loopback socket to another,
/// with loss timeout `timeout`, starting at `start`, DSCP 46 (EF), in `mode` (fresh keys
/// unless open).
pub fn session_pair(
    mode: Mode,
    packets: u32,
    interval: Duration,
    timeout: Duration,
    start: OwampTime,
) -> SessionPair {
    let a = TestSocket::bind(SocketAddr::new(lo(), 0)).unwrap();
    let b = TestSocket::bind(SocketAddr::new(lo(), 0)).unwrap();
    let mut sid = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut OsRng, &mut sid);
    let sid = SessionId(sid);
    let request = RequestSession {
        conf_sender: false,
        conf_receiver: true,
        num_packets: packets,
        sender_port: a.local_addr().port(),
        receiver_port: b.local_addr().port(),
        sender_address: lo(),
        receiver_address: lo(),
        sid,
        padding_length: 0,
        start_time: start,
        timeout: secs(timeout),
        type_p: TypeP::from_dscp(46).unwrap(),
        hmac: [0; 16],
        slots: vec![Slot {
            kind: SlotKind::Fixed,
            mean: secs(interval),
        }],
        slots_hmac: [0; 16],
    };
    let keys = (mode != Mode::Open).then(|| SessionKeys::generate(&mut OsRng));
    let info = |role, local: SocketAddr, peer: SocketAddr| SessionInfo {
        sid,
        role,
        mode,
        keys: keys.clone(),
        local,
        peer,
        request: request.clone(),
    };
    let (al, bl) = (a.local_addr(), b.local_addr());
    SessionPair {
        sender: (info(Role::Sender, al, bl), a),
        receiver: (info(Role::Receiver, bl, al), b),
        recv_addr: bl,
    }
}

/// The endpoint configuration of the tests: the default, with senders' lateness recorded.
pub fn config() -> EndpointConfig {
    EndpointConfig {
        record_send_lateness: true,
        ..EndpointConfig::default()
    }
}

/// Packets per session of the loopback measurements.
pub const PACKETS: u32 = 50;

/// 127.0.0.1, any port.
pub fn lo_addr() -> SocketAddr {
    SocketAddr::new(lo(), 0)
}

/// A server configuration with short timeouts.
pub fn serve_config(control_timeout: Duration, max_connections: usize) -> ServeConfig {
    ServeConfig {
        control: ServerConfig {
            control_timeout,
            end_delay: Duration::from_millis(200),
            ..ServerConfig::default()
        },
        max_connections,
        // Every test client comes from 127.0.0.1.
        max_connections_per_addr: 0,
        shutdown_grace: Duration::from_secs(5),
        ..ServeConfig::default()
    }
}

/// A client that offers `modes`, with `identity` (KeyID, passphrase) if given, and short
/// timeouts.
pub fn client(identity: Option<(&str, &str)>, modes: Modes) -> ClientOptions {
    ClientOptions {
        control: ClientConfig {
            modes,
            identity: identity.map(|(k, p)| Identity {
                key_id: k.as_bytes().to_vec(),
                passphrase: p.into(),
            }),
            control_timeout: Duration::from_secs(5),
            end_delay: Duration::from_millis(200),
            ..ClientConfig::default()
        },
        ..ClientOptions::default()
    }
}

/// `packets` packets every `interval`, loss timeout 1 s.
pub fn spec(packets: u32, interval: Duration) -> SessionSpec {
    SessionSpec {
        timeout: Duration::from_secs(1),
        ..SessionSpec::periodic(packets, interval)
    }
}

/// [`PACKETS`] packets every 10 ms each way, starting 300 ms after the requests.
pub fn both_ways() -> TestPlan {
    TestPlan {
        send: Some(spec(PACKETS, Duration::from_millis(10))),
        receive: Some(spec(PACKETS, Duration::from_millis(10))),
        start_delay: Duration::from_millis(300),
    }
}

/// Limits that allow every mode and know the user "alice".
pub fn limits_with_alice() -> Limits {
    let l = Limits::new(Modes::ALL, "default", ClassLimits::default());
    l.set_passphrase(b"alice", b"wonderland");
    l
}

/// Every one of `packets` packets arrived once, with a small positive delay and TTL 255.
pub fn check_complete(s: &StoredSession, packets: u32) {
    assert_eq!(s.finished, Finished::Normal);
    assert_eq!(s.next_seqno, packets);
    assert_eq!(s.records.len(), packets as usize, "records");
    let mut seen = vec![false; packets as usize];
    for r in &s.records {
        assert!(!r.is_lost(), "packet {} lost", r.seq);
        assert!(!seen[r.seq as usize], "duplicate {}", r.seq);
        seen[r.seq as usize] = true;
        let delay = r.recv_time.diff_nanos(r.send_time);
        assert!(delay > 0, "delay {delay} ns of packet {}", r.seq);
        assert!(delay < 100_000_000, "delay {delay} ns of packet {}", r.seq);
        assert_eq!(r.ttl, 255, "TTL");
        assert!(r.send_error.is_valid() && r.recv_error.is_valid());
    }
}

/// A TCP relay on loopback for one control connection to `server`; once the flag it returns
/// is set, it stops relaying in both directions but keeps both connections open: the client
/// has gone silent, as far as the server can tell. Every wait is bounded (the relay threads
/// end when either side closes, or after 30 s).
pub fn freezable_relay(server: SocketAddr) -> (SocketAddr, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let frozen = Arc::new(AtomicBool::new(false));
    let f = frozen.clone();
    std::thread::spawn(move || {
        let Ok((client, _)) = listener.accept() else {
            return;
        };
        let Ok(upstream) = TcpStream::connect(server) else {
            return;
        };
        let pipe = |mut from: TcpStream, mut to: TcpStream, frozen: Arc<AtomicBool>| {
            let t0 = Instant::now();
            let _ = from.set_read_timeout(Some(Duration::from_millis(20)));
            let mut buf = [0u8; 4096];
            while t0.elapsed() < Duration::from_secs(30) {
                if frozen.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => break,
                }
            }
        };
        let (c2, u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
        let g = f.clone();
        let a = std::thread::spawn(move || pipe(client, upstream, g));
        pipe(u2, c2, f);
        let _ = a.join();
    });
    (addr, frozen)
}
