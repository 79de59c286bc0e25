//! The core's TWAMP client and session-sender against the perfSONAR twampd 5.2.3 (the reference
//! binary in ../shared/reference, skipped with a message when absent), over loopback, in open
//! and encrypted modes: a minimal blocking host (one TCP stream, one UDP socket, the system
//! clock) drives `control::Client` with `Protocol::Twamp` and `session::twamp::SessionSender`,
//! and every packet comes back reflected, with twampd's timestamps between ours.
//!
//! The other way round, the reference twping against the core's TWAMP server and reflector
//! (`control::Server` with `Protocol::Twamp`, `session::twamp::Reflector`), open and encrypted:
//! twping must finish, with every packet reflected (`-R` output). The host cannot read TTLs
//! with std sockets and reports 255.
//!
//! Every wait is bounded: socket timeouts of at most 500 ms and a 20 s limit per test.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use owamp_core::control::{
    Client, ClientCommand, ClientConfig, Identity, Mode, Modes, Protocol, Role, Server,
    ServerConfig, SessionRequest,
};
use owamp_core::io::{Input, Output, SessionReport};
use owamp_core::policy::{ClassLimits, Limits};
use owamp_core::session::twamp::Reflector;
use owamp_core::session::twamp::{default_padding, SessionSender};
use owamp_core::stats::twamp::TwoWaySummary;
use owamp_core::time::{ErrorEstimate, Interval, OwampTime};
use owamp_core::wire::{Slot, SlotKind, TypeP};
use rand_chacha::rand_core::SeedableRng;

const PASS: &[u8] = b"correct horse battery staple";

fn twampd() -> Option<PathBuf> {
    let p = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/reference/perfsonar-owamp-5.2.3/bin/twampd"
    ));
    p.exists().then_some(p)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn now() -> OwampTime {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    OwampTime::UNIX_EPOCH.saturating_add_interval(Interval::saturating_from_duration(d))
}

struct Daemon {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(bin: &PathBuf) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777));
        }
        let port = free_port();
        let low = 20000 + (port % 20000);
        std::fs::write(
            dir.path().join("twamp-server.conf"),
            format!(
                "srcnode 127.0.0.1:{port}\ntestports {low}-{}\ndatadir {d}\nvardir {d}\n",
                low + 100,
                d = dir.path().display()
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("twamp-server.limits"),
            "limit root with disk=0, bandwidth=0, allow_open_mode=on\nassign default root\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("twamp-server.pfs"),
            format!("alice\t{}\n", hex::encode(PASS)),
        )
        .unwrap();
        let child = Command::new(bin)
            .args(["-Z", "-f", "-c"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "twampd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Daemon {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the host saw of the control connection.
#[derive(Default)]
struct Events {
    accepted: Option<owamp_core::io::SessionInfo>,
    started: bool,
    complete: bool,
    closed: bool,
}

/// Writes what the client wants written and notes the rest.
fn flush(c: &mut Client<rand_chacha::ChaCha20Rng>, tcp: &mut TcpStream, ev: &mut Events) {
    while let Some(o) = c.poll_output() {
        match o {
            Output::Transmit(b) => tcp.write_all(&b).unwrap(),
            Output::SessionAccepted(i) => ev.accepted = Some(*i),
            Output::StartSessions => ev.started = true,
            Output::TestComplete => ev.complete = true,
            Output::Close(r) => {
                ev.closed = true;
                panic!("closed: {r:?}");
            }
            _ => {}
        }
    }
}

/// Reads the control stream until `done` holds (bounded by `limit`).
fn until(
    c: &mut Client<rand_chacha::ChaCha20Rng>,
    tcp: &mut TcpStream,
    ev: &mut Events,
    limit: Instant,
    done: impl Fn(&Client<rand_chacha::ChaCha20Rng>, &Events) -> bool,
) {
    let mut buf = [0u8; 4096];
    flush(c, tcp, ev);
    while !done(c, ev) {
        assert!(Instant::now() < limit, "no progress from twampd");
        if let Some(t) = c.poll_timeout() {
            if now() >= t {
                c.handle_input(now(), Input::Timer).unwrap();
                flush(c, tcp, ev);
                continue;
            }
        }
        match tcp.read(&mut buf) {
            Ok(0) => panic!("twampd closed the connection"),
            Ok(n) => c.handle_input(now(), Input::Received(&buf[..n])).unwrap(),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("{e}"),
        }
        flush(c, tcp, ev);
    }
}

fn run_against_twampd(mode: Mode) {
    let Some(bin) = twampd() else {
        eprintln!("skipped: the reference twampd is not in ../shared/reference");
        return;
    };
    let d = Daemon::start(&bin);
    let limit = Instant::now() + Duration::from_secs(20);
    let mut tcp = TcpStream::connect_timeout(&d.addr, Duration::from_secs(2)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let cfg = ClientConfig {
        modes: Modes::from(mode),
        identity: mode.is_secure().then(|| Identity {
            key_id: b"alice".to_vec(),
            passphrase: PASS.to_vec().into(),
        }),
        control_timeout: Duration::from_secs(10),
        end_delay: Duration::from_millis(100),
        protocol: Protocol::Twamp,
        ..ClientConfig::default()
    };
    let mut c = Client::new(
        now(),
        cfg,
        rand_chacha::ChaCha20Rng::seed_from_u64(
            // Keys for a test connection only.
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64,
        ),
    );
    let mut ev = Events::default();
    until(&mut c, &mut tcp, &mut ev, limit, |c, _| c.is_ready());
    assert_eq!(c.mode(), mode);

    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // twping sends with TTL 255, so that the reflector's Sender TTL counts the hops.
    udp.set_ttl(255).unwrap();
    const PACKETS: u32 = 5;
    let gap = Interval::saturating_from_duration(Duration::from_millis(20));
    let padding = default_padding(mode);
    let req = SessionRequest {
        role: Role::Sender,
        local: udp.local_addr().unwrap(),
        peer: d.addr.ip(),
        slots: vec![Slot {
            kind: SlotKind::Fixed,
            mean: gap,
        }],
        packets: PACKETS,
        padding,
        start_time: now().saturating_add_interval(Interval::saturating_from_duration(
            Duration::from_millis(300),
        )),
        timeout: Interval::saturating_from_duration(Duration::from_millis(500)),
        type_p: TypeP::BEST_EFFORT,
    };
    c.handle_input(now(), Input::Command(ClientCommand::RequestSession(req)))
        .unwrap();
    until(&mut c, &mut tcp, &mut ev, limit, |c, ev| {
        ev.accepted.is_some() && c.is_ready()
    });
    let info = ev.accepted.clone().unwrap();
    let mut sender = SessionSender::new(&info, vec![0x33; padding as usize]).unwrap();
    c.handle_input(now(), Input::Command(ClientCommand::StartSessions))
        .unwrap();
    until(&mut c, &mut tcp, &mut ev, limit, |_, ev| ev.started);

    let ee = ErrorEstimate::from_raw(1);
    let (mut pkt, mut buf, mut records) = (Vec::new(), [0u8; 2048], Vec::new());
    for _ in 0..PACKETS {
        sender.build(now(), ee, &mut pkt).unwrap();
        udp.send_to(&pkt, info.peer).unwrap();
        let (n, from) = udp
            .recv_from(&mut buf)
            .expect("twampd reflects within 500 ms");
        assert_eq!(from, info.peer);
        assert_eq!(n, pkt.len(), "twampd answers with the same size by default");
        records.push(sender.handle_reply(now(), 255, ee, &buf[..n]).unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    c.handle_input(
        now(),
        Input::SessionFinished(SessionReport::completed(info.sid, PACKETS)),
    )
    .unwrap();
    until(&mut c, &mut tcp, &mut ev, limit, |_, ev| ev.complete);
    assert!(!c.in_test());

    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.sender_seq, i as u32);
        assert_eq!(r.reflector_seq, i as u32);
        assert!(r.send_time <= r.reflector_recv_time || r.reflector_recv_time.raw() > 0);
        assert!(r.reflector_recv_time <= r.reflector_send_time);
        assert_eq!(r.sender_ttl, 255, "loopback, sent with TTL 255");
    }
    let s = TwoWaySummary::new(&records, sender.sent());
    assert_eq!(
        (s.sent, s.lost, s.send_duplicates, s.reflect_duplicates),
        (PACKETS, 0, 0, 0)
    );
    assert!(s.processing.min.unwrap() >= 0.0);
    c.handle_input(now(), Input::Command(ClientCommand::Close))
        .unwrap();
}

#[test]
fn core_client_against_reference_twampd_open() {
    run_against_twampd(Mode::Open);
}

#[test]
fn core_client_against_reference_twampd_encrypted() {
    run_against_twampd(Mode::Encrypted);
}

#[test]
fn core_client_against_reference_twampd_authenticated() {
    run_against_twampd(Mode::Authenticated);
}

fn twping() -> Option<PathBuf> {
    twampd()
        .map(|p| p.with_file_name("twping"))
        .filter(|p| p.exists())
}

/// Serves one TWAMP control connection on `listener` with the core's server and reflector,
/// until the client closes or `limit`.
fn serve_one(listener: TcpListener, limit: Instant) {
    listener.set_nonblocking(true).unwrap();
    let (mut tcp, peer) = loop {
        match listener.accept() {
            Ok(c) => break c,
            Err(_) if Instant::now() < limit => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("twping did not connect: {e}"),
        }
    };
    tcp.set_nonblocking(false).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let policy = Limits::new(Modes::ALL, "root", ClassLimits::default());
    policy.set_passphrase(b"alice", PASS);
    let cfg = ServerConfig {
        start_time: now(),
        control_timeout: Duration::from_secs(10),
        protocol: Protocol::Twamp,
        ..ServerConfig::default()
    };
    let rng = rand_chacha::ChaCha20Rng::seed_from_u64(now().raw());
    let local = tcp.local_addr().unwrap();
    let mut server = Server::new(now(), cfg, policy, rng, local, peer);
    let mut socket: Option<UdpSocket> = None;
    let mut reflector: Option<(Reflector, SocketAddr)> = None;
    let mut started = false;
    let (mut buf, mut dgram, mut reply) = ([0u8; 4096], [0u8; 4096], Vec::new());
    let ee = ErrorEstimate::from_raw(1);
    while Instant::now() < limit {
        let mut inputs = Vec::new();
        while let Some(o) = server.poll_output() {
            match o {
                Output::Transmit(b) => tcp.write_all(&b).unwrap(),
                Output::PrepareTestEndpoint(e) => {
                    let u = UdpSocket::bind(e.local).unwrap();
                    u.set_nonblocking(true).unwrap();
                    let port = u.local_addr().unwrap().port();
                    socket = Some(u);
                    inputs.push(Input::EndpointReady { sid: e.sid, port });
                }
                Output::SessionAccepted(info) => {
                    reflector = Some((Reflector::new(&info).unwrap(), info.peer));
                }
                Output::StartSessions => started = true,
                Output::StopLocalSessions => started = false,
                Output::Close(_) => return,
                _ => {}
            }
        }
        for i in inputs {
            server.handle_input(now(), i).unwrap();
        }
        if let (true, Some(u), Some((r, peer))) = (started, &socket, &mut reflector) {
            while let Ok((n, from)) = u.recv_from(&mut dgram) {
                let at = now();
                if from == *peer
                    && r.reflect(at, 255, &dgram[..n], now(), ee, &mut reply)
                        .is_ok()
                {
                    u.send_to(&reply, from).unwrap();
                }
            }
        }
        if server.poll_timeout().is_some_and(|t| now() >= t) {
            server.handle_input(now(), Input::Timer).unwrap();
        }
        match tcp.read(&mut buf) {
            Ok(0) => {
                server.handle_input(now(), Input::PeerClosed).unwrap();
                return;
            }
            Ok(n) => server
                .handle_input(now(), Input::Received(&buf[..n]))
                .unwrap(),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
    panic!("the connection outlived its limit");
}

fn reference_twping_against_core(extra: &[&str]) {
    let Some(bin) = twping() else {
        eprintln!("skipped: the reference twping is not in ../shared/reference");
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let limit = Instant::now() + Duration::from_secs(20);
    let server = std::thread::spawn(move || serve_one(listener, limit));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("alice.pfs"),
        format!("alice\t{}\n", hex::encode(PASS)),
    )
    .unwrap();
    let out = Command::new(bin)
        .current_dir(dir.path())
        .args(extra)
        .args(["-R", "-c", "5", "-i", "0.05"])
        .arg(addr.to_string())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    server.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "twping failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 5, "{stdout}");
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.len(), 16, "{stdout}");
        // SSEQ and RSEQ; the reflector's receive time is not before the send time, nor its send
        // time before its receive time (one clock).
        assert_eq!(r[0], i.to_string());
        assert_eq!(r[8], i.to_string());
        let t = |k: usize| r[k].parse::<u64>().unwrap();
        assert!(t(4) >= t(1) && t(9) >= t(4) && t(12) >= t(9), "{stdout}");
    }
}

#[test]
fn reference_twping_against_core_server_open() {
    reference_twping_against_core(&[]);
}

#[test]
fn reference_twping_against_core_server_encrypted() {
    reference_twping_against_core(&["-A", "E", "-u", "alice", "-k", "alice.pfs"]);
}
