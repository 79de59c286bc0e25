//! twping and twampd over loopback: our twping against the perfSONAR twampd 5.2.3 (the
//! reference binaries in ../shared/reference, skipped with a message when absent), the
//! reference twping against our twampd, and ours against ours, in the four modes (open,
//! authenticated, encrypted and RFC 5618 mixed). twping's output is compared in shape with the recorded reference
//! output in testdata/traces/twamp: the numbers differ, the lines and labels must not. The
//! core's TWAMP client connection runs against both twampds too (`core_connection_against_twampd`).
//!
//! Every process runs under a time limit (common::run, the daemons are killed on drop).

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{run, run_with};

const TWPING: &str = env!("CARGO_BIN_EXE_twping");
const TWAMPD: &str = env!("CARGO_BIN_EXE_twampd");
const PASS: &str = "correct horse battery staple";
const LIMIT: Duration = Duration::from_secs(15);

fn reference(name: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/reference/perfsonar-owamp-5.2.3/bin")
        .join(name);
    p.exists().then_some(p)
}

fn recorded(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../testdata/traces/twamp")
            .join(name),
    )
    .unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A twampd (ours or the reference) on 127.0.0.1 with a temporary configuration directory
/// that also holds `alice.pfs` for the clients; killed when dropped.
struct Daemon {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

const OPEN_LIMITS: &str =
    "limit root with disk=0, bandwidth=0, allow_open_mode=on\nassign default root\n";

impl Daemon {
    fn start(bin: &Path) -> Daemon {
        Self::start_with(bin, "", OPEN_LIMITS)
    }

    /// A daemon with `conf` added to its configuration and `limits` as its limits file.
    fn start_with(bin: &Path, conf: &str, limits: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            // The reference drops privileges to nobody when run as root.
            let _ = std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777));
        }
        let port = free_port();
        let low = 20000 + (port % 20000);
        std::fs::write(
            dir.path().join("twamp-server.conf"),
            format!(
                "srcnode 127.0.0.1:{port}\ntestports {low}-{}\ndatadir {d}\nvardir {d}\n{conf}",
                low + 100,
                d = dir.path().display()
            ),
        )
        .unwrap();
        std::fs::write(dir.path().join("twamp-server.limits"), limits).unwrap();
        let line = format!("alice\t{}\n", hex::encode(PASS));
        for f in ["twamp-server.pfs", "alice.pfs"] {
            let p = dir.path().join(f);
            std::fs::write(&p, &line).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
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
        Daemon { child, addr, dir }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A line with every word holding a digit replaced by `#` (words end at spaces, tabs and
/// `/:()=,[]%`), so that outputs with different numbers compare equal.
fn shape(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| {
            let mut out = String::new();
            let mut word = String::new();
            let flush = |w: &mut String, out: &mut String| {
                if w.chars().any(|c| c.is_ascii_digit()) {
                    out.push('#');
                } else {
                    out.push_str(w);
                }
                w.clear();
            };
            for c in l.chars() {
                if " \t/:()=,[]%".contains(c) {
                    flush(&mut word, &mut out);
                    out.push(c);
                } else {
                    word.push(c);
                }
            }
            flush(&mut word, &mut out);
            out
        })
        .collect()
}

/// The keys of a -M output (lines not starting with a tab).
fn machine_keys(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('\t'))
        .map(|l| shape(l.split('\t').next().unwrap_or(""))[0].clone())
        .collect()
}

fn twping(cwd: &Path, extra: &[&str], addr: SocketAddr) -> common::Output {
    run_with(
        Command::new(TWPING)
            .current_dir(cwd)
            .args(extra)
            .args(["-c", "5", "-i", "0.05", "-L", "1"])
            .arg(addr.to_string()),
        "",
        LIMIT,
    )
}

fn reference_twping(bin: &Path, cwd: &Path, extra: &[&str], addr: SocketAddr) -> common::Output {
    run_with(
        Command::new(bin)
            .current_dir(cwd)
            .args(extra)
            .args(["-c", "5", "-i", "0.05", "-L", "1"])
            .arg(addr.to_string()),
        "",
        LIMIT,
    )
}

/// Checks a -R output of `n` packets: 16 fields a line, both sequence numbers counting up,
/// the reflector's timestamps between the sender's.
fn check_raw(stdout: &str, n: usize) {
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), n, "{stdout}");
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.len(), 16, "{stdout}");
        assert_eq!(r[0], i.to_string());
        assert_eq!(r[8], i.to_string());
        let t = |k: usize| r[k].parse::<u64>().unwrap();
        assert!(t(4) >= t(1) && t(9) >= t(4) && t(12) >= t(9), "{stdout}");
    }
    // The same layout as the reference's.
    let reference = recorded("r_open_raw.twping.stdout.txt");
    assert_eq!(shape(stdout)[0], shape(&reference)[0]);
}

/// Our twping's three outputs against a server, compared with the recorded reference's.
fn our_twping_outputs(d: &Daemon, auth: &[&str], reference_default: &str) {
    let out = twping(d.dir.path(), auth, d.addr);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        shape(&out.stdout),
        shape(&recorded(reference_default)),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("5 sent, 0 lost"), "{}", out.stdout);

    let mut raw_args = auth.to_vec();
    raw_args.push("-R");
    let out = twping(d.dir.path(), &raw_args, d.addr);
    assert_eq!(out.code, 0, "{}", out.stderr);
    check_raw(&out.stdout, 5);

    let mut m_args = auth.to_vec();
    m_args.push("-M");
    let out = twping(d.dir.path(), &m_args, d.addr);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        machine_keys(&out.stdout),
        machine_keys(&recorded("m_open_machine.twping.stdout.txt")),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("\nSENT\t5\n"), "{}", out.stdout);
}

/// The four modes (RFC 5357 3.1 and RFC 5618 mixed mode): the -A flags of either twping.
const MODES: [(&str, &[&str]); 4] = [
    ("open", &[]),
    (
        "authenticated",
        &["-A", "A", "-u", "alice", "-k", "alice.pfs"],
    ),
    ("encrypted", &["-A", "E", "-u", "alice", "-k", "alice.pfs"]),
    ("mixed", &["-A", "M", "-u", "alice", "-k", "alice.pfs"]),
];

fn mode_flags(name: &str) -> &'static [&'static str] {
    MODES.iter().find(|m| m.0 == name).unwrap().1
}

/// Our twping against the reference twampd in `mode`: the default, -R and -M outputs. A mode
/// the two sides understood differently loses every packet, which the checks catch.
fn twping_against_reference_twampd(mode: &str) {
    let Some(bin) = reference("twampd") else {
        eprintln!("skipped: the reference twampd is not in ../shared/reference");
        return;
    };
    let d = Daemon::start(&bin);
    our_twping_outputs(&d, mode_flags(mode), "a_open.twping.stdout.txt");
}

#[test]
fn twping_against_reference_twampd_open() {
    twping_against_reference_twampd("open");
}

#[test]
fn twping_against_reference_twampd_authenticated() {
    twping_against_reference_twampd("authenticated");
}

#[test]
fn twping_against_reference_twampd_encrypted() {
    twping_against_reference_twampd("encrypted");
}

#[test]
fn twping_against_reference_twampd_mixed() {
    twping_against_reference_twampd("mixed");
}

fn reference_twping_against_twampd(mode: &str) {
    let Some(bin) = reference("twping") else {
        eprintln!("skipped: the reference twping is not in ../shared/reference");
        return;
    };
    let auth = mode_flags(mode);
    let d = Daemon::start(Path::new(TWAMPD));
    let mut raw_args = auth.to_vec();
    raw_args.push("-R");
    let out = reference_twping(&bin, d.dir.path(), &raw_args, d.addr);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    check_raw(&out.stdout, 5);
    let out = reference_twping(&bin, d.dir.path(), auth, d.addr);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("5 sent, 0 lost"), "{}", out.stdout);
}

#[test]
fn reference_twping_against_twampd_open() {
    reference_twping_against_twampd("open");
}

#[test]
fn reference_twping_against_twampd_authenticated() {
    reference_twping_against_twampd("authenticated");
}

#[test]
fn reference_twping_against_twampd_encrypted() {
    reference_twping_against_twampd("encrypted");
}

#[test]
fn reference_twping_against_twampd_mixed() {
    reference_twping_against_twampd("mixed");
}

fn twping_against_twampd(mode: &str) {
    let d = Daemon::start(Path::new(TWAMPD));
    our_twping_outputs(&d, mode_flags(mode), "a_open.twping.stdout.txt");
}

#[test]
fn twping_against_twampd_open() {
    twping_against_twampd("open");
}

#[test]
fn twping_against_twampd_authenticated() {
    twping_against_twampd("authenticated");
}

#[test]
fn twping_against_twampd_encrypted() {
    twping_against_twampd("encrypted");
}

#[test]
fn twping_against_twampd_mixed() {
    twping_against_twampd("mixed");
}

/// -Z: a request without addresses, against the reference twampd and ours.
#[test]
fn twping_without_addresses() {
    let mut daemons = vec![Daemon::start(Path::new(TWAMPD))];
    if let Some(bin) = reference("twampd") {
        daemons.push(Daemon::start(&bin));
    }
    for d in &daemons {
        let out = twping(d.dir.path(), &["-Z", "-M"], d.addr);
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        assert!(out.stdout.contains("\nSENT\t5\n") && out.stdout.contains("\nLOST\t0\n"));
        assert!(
            out.stdout.contains("\nTO_ADDR\t127.0.0.1\n"),
            "{}",
            out.stdout
        );
    }
}

/// -P, -D, -z and a second operand naming the server: the test port comes from the range,
/// the DSCP is reported, and the start waits for -z.
#[test]
fn twping_test_flags() {
    let d = Daemon::start(Path::new(TWAMPD));
    let low = 30000 + (d.addr.port() % 20000);
    let range = format!("{low}-{}", low + 5);
    let t0 = Instant::now();
    let out = twping(
        d.dir.path(),
        &["-M", "-P", &range, "-D", "EF", "-z", "0.5", "127.0.0.1"],
        d.addr,
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(t0.elapsed() >= Duration::from_millis(500));
    let value = |k: &str| {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}\t")))
            .unwrap_or_else(|| panic!("{k} in {}", out.stdout))
            .to_string()
    };
    let port: u16 = value("FROM_PORT").parse().unwrap();
    assert!((low..=low + 5).contains(&port), "{port} in {range}");
    assert_eq!(value("DSCP"), "0x2e");
    assert_eq!(value("SENT"), "5");
    assert_eq!(value("LOST"), "0");
}

/// -v and -v -U: our twping's lines have the reference twping's layout (both against our
/// twampd, the reference live: there is no recorded -v output).
fn same_layout_as_reference(cases: &[(&[&str], usize)]) {
    let Some(bin) = reference("twping") else {
        eprintln!("skipped: the reference twping is not in ../shared/reference");
        return;
    };
    let d = Daemon::start(Path::new(TWAMPD));
    for &(flags, lines) in cases {
        let ours = twping(d.dir.path(), flags, d.addr);
        assert_eq!(ours.code, 0, "{}{}", ours.stdout, ours.stderr);
        let theirs = reference_twping(&bin, d.dir.path(), flags, d.addr);
        assert_eq!(theirs.code, 0, "{}{}", theirs.stdout, theirs.stderr);
        assert_eq!(shape(&ours.stdout), shape(&theirs.stdout), "{flags:?}");
        assert_eq!(
            ours.stdout.matches("seq_no=").count(),
            lines,
            "{}",
            ours.stdout
        );
    }
}

#[test]
fn twping_individual_delays_layout() {
    same_layout_as_reference(&[(&["-v"], 5), (&["-v2", "-U"], 2)]);
}

/// -n: the delays in seconds (no label, as twping) and in microseconds.
#[test]
fn twping_units_layout() {
    same_layout_as_reference(&[(&["-n", "s", "-v1"], 1), (&["-n", "u"], 0)]);
}

/// -N: a summary for each 2 packets (5 packets: 2, 2 and 1).
#[test]
fn twping_sub_sessions_layout() {
    same_layout_as_reference(&[(&["-N", "2"], 0)]);
}

/// twampd writes its pid and info files in the var directory, as owampd does.
#[test]
fn twampd_pid_and_info_files() {
    let d = Daemon::start(Path::new(TWAMPD));
    let pid = std::fs::read_to_string(d.dir.path().join("twamp-server.pid")).unwrap();
    assert_eq!(pid.trim(), d.child.id().to_string());
    let info = std::fs::read_to_string(d.dir.path().join("twamp-server.info")).unwrap();
    assert!(info.starts_with("START="), "{info}");
    assert!(
        info.contains(&format!("\nPID={}\n", d.child.id())),
        "{info}"
    );
}

/// The core's TWAMP client connection (`owamp_core::connection`, the contract twampd's
/// reflector runs on too) against a twampd, from a host of a few lines: std sockets, the
/// system clock, short waits. The test packets leave with TTL 64, so the replies' Sender TTL
/// shows whether the reflector read the TTL each packet arrived with (RFC 5357 4.2.1) rather
/// than writing a constant. Returns the replies and the session's end.
fn connection_against(
    addr: SocketAddr,
) -> (
    Vec<owamp_core::session::twamp::TwoWayRecord>,
    owamp_core::connection::TwoWayEnd,
) {
    use owamp_core::connection::{
        ClientConnection, ClientEvent, ControlAction, Output, SocketAction,
    };
    use owamp_core::control::{ClientConfig, Modes, Protocol, Role, SessionRequest};
    use owamp_core::session::twamp::default_padding;
    use owamp_core::session::Datagram;
    use owamp_core::time::Interval;
    use owamp_core::wire::{Mode, Slot, SlotKind, TypeP};
    use owamp_os::clock::{Clock, SystemClock};
    use std::io::{ErrorKind, Read, Write};
    use std::net::UdpSocket;

    let clock = SystemClock::new();
    let mut tcp = TcpStream::connect_timeout(&addr, LIMIT).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(2)))
        .unwrap();
    let cfg = ClientConfig {
        modes: Modes::from(Mode::Open),
        protocol: Protocol::Twamp,
        end_delay: Duration::from_millis(100),
        ..ClientConfig::default()
    };
    let mut conn = ClientConnection::client(clock.now(), cfg, owamp_os::rng::OsRng);
    let mut udp: Option<(owamp_core::connection::SocketId, UdpSocket)> = None;
    let (mut records, mut end) = (Vec::new(), None);
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + LIMIT;
    while !conn.is_closed() {
        assert!(Instant::now() < deadline, "no end: {records:?}");
        while let Some(t) = conn.poll_transmit(clock.now(), &mut buf) {
            let (_, u) = udp.as_ref().unwrap();
            u.send_to(&buf[..t.transmit.len], t.transmit.dest).unwrap();
        }
        while let Some(o) = conn.poll_output() {
            let now = clock.now();
            match o {
                Output::Control(ControlAction::Transmit(b)) => tcp.write_all(&b).unwrap(),
                Output::Control(ControlAction::Close(_)) => {}
                Output::Socket(SocketAction::Open { id, local, .. }) => {
                    let u = UdpSocket::bind(local).unwrap();
                    u.set_ttl(64).unwrap();
                    u.set_read_timeout(Some(Duration::from_millis(2))).unwrap();
                    let port = u.local_addr().unwrap().port();
                    udp = Some((id, u));
                    conn.socket_opened(now, id, Ok(port));
                }
                Output::Socket(_) | Output::Store(_) | Output::Stream(_) => {}
                Output::Event(e) => match e {
                    ClientEvent::Connected { .. } => {
                        let start = now.saturating_add(Duration::from_millis(200));
                        let req = SessionRequest {
                            role: Role::Sender,
                            local: SocketAddr::new(addr.ip(), 0),
                            peer: addr.ip(),
                            slots: vec![Slot {
                                kind: SlotKind::Fixed,
                                mean: Interval::saturating_from_duration(Duration::from_millis(10)),
                            }],
                            packets: 10,
                            padding: default_padding(Mode::Open),
                            start_time: start,
                            timeout: Interval::from_raw(1 << 32),
                            type_p: TypeP::BEST_EFFORT,
                        };
                        conn.request_session(req).unwrap();
                    }
                    ClientEvent::SessionAccepted(_) => conn.start_sessions(now).unwrap(),
                    ClientEvent::TwoWayRecords { records: r, .. } => records.extend(r),
                    ClientEvent::TwoWayEnd(e) => end = Some(*e),
                    ClientEvent::TestComplete => conn.close(now),
                    ClientEvent::SessionRejected { accept } => panic!("refused: {accept:?}"),
                    _ => {}
                },
            }
        }
        match tcp.read(&mut buf) {
            Ok(0) => conn.handle_control_closed(clock.now()),
            Ok(n) => conn.handle_control(clock.now(), &buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("control connection: {e}"),
        }
        if let Some((id, u)) = &udp {
            if let Ok((n, source)) = u.recv_from(&mut buf) {
                let now = clock.now();
                let d = Datagram {
                    source,
                    recv_time: now,
                    ttl: None,
                    truncated: false,
                    payload: &buf[..n],
                };
                conn.handle_datagram(now, *id, &d);
            }
        }
        if conn.poll_timeout().is_some_and(|t| clock.now() >= t.at) {
            conn.handle_timeout(clock.now());
        }
    }
    (records, end.expect("the session's end"))
}

#[test]
fn core_connection_against_twampd() {
    let ttl_known = owamp_os::net::TestSocket::bind("127.0.0.1:0".parse().unwrap())
        .unwrap()
        .features()
        .ttl;
    let mut daemons = vec![("ours", Daemon::start(Path::new(TWAMPD)))];
    match reference("twampd") {
        Some(bin) => daemons.push(("reference", Daemon::start(&bin))),
        None => eprintln!("reference twampd absent: only ours"),
    }
    for (name, d) in &daemons {
        let (records, end) = connection_against(d.addr);
        assert!(end.complete, "{name}");
        assert_eq!(end.sent, 10, "{name}");
        let mut seqs: Vec<u32> = records.iter().map(|r| r.sender_seq).collect();
        seqs.sort_unstable();
        assert_eq!(
            seqs,
            (0..10).collect::<Vec<_>>(),
            "{name}: every packet reflected"
        );
        for r in &records {
            assert!(r.send_time <= r.reflector_recv_time, "{name}: {r:?}");
            assert!(r.reflector_send_time <= r.recv_time, "{name}: {r:?}");
            if ttl_known {
                assert_eq!(r.sender_ttl, 64, "{name}: the TTL the packet arrived with");
            }
        }
    }
}

/// The limits file's allow_open_mode=off refuses open mode and not the others; one control
/// connection per address (maxcontrolsessionsperaddr 1) refuses a second.
#[test]
fn twampd_enforces_its_limits() {
    let d = Daemon::start_with(
        Path::new(TWAMPD),
        "",
        "limit root with disk=0, bandwidth=0, allow_open_mode=off\nassign default root\n",
    );
    let out = twping(d.dir.path(), mode_flags("open"), d.addr);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let out = twping(
        d.dir.path(),
        &["-Q", "-A", "A", "-u", "alice", "-k", "alice.pfs"],
        d.addr,
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let out = twping(
        d.dir.path(),
        &["-Q", "-A", "M", "-u", "alice", "-k", "alice.pfs"],
        d.addr,
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    // Hold the only connection this address may have.
    let d = Daemon::start_with(
        Path::new(TWAMPD),
        "maxcontrolsessionsperaddr 1\n",
        OPEN_LIMITS,
    );
    // (The daemon may still be closing the connection of its start-up probe: retry.)
    let deadline = Instant::now() + Duration::from_secs(5);
    let held = loop {
        let held = TcpStream::connect(d.addr).unwrap();
        held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut greeting = [0u8; 64];
        if std::io::Read::read_exact(&mut &held, &mut greeting).is_ok() {
            break held;
        }
        assert!(Instant::now() < deadline, "no greeting");
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = twping(
        d.dir.path(),
        &["-A", "A", "-u", "alice", "-k", "alice.pfs"],
        d.addr,
    );
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    drop(held);
}

#[test]
fn twping_fails_with_status_1() {
    // Nothing listens on a port just released.
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let out = run(TWPING, &[addr.to_string().into()], "", LIMIT);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("Unable to open control connection"),
        "{}",
        out.stderr
    );
    // A wrong pass-phrase: the server refuses the connection.
    let d = Daemon::start(Path::new(TWAMPD));
    std::fs::write(
        d.dir.path().join("wrong.pfs"),
        format!("alice\t{}\n", hex::encode("wrong")),
    )
    .unwrap();
    let out = twping(
        d.dir.path(),
        &["-A", "E", "-u", "alice", "-k", "wrong.pfs"],
        d.addr,
    );
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
}

const OWSTATS: &str = env!("CARGO_BIN_EXE_owstats");

/// The structure of a two-way session file (twping -F): the header's fixed words (version,
/// finished, next sequence number, skip ranges and records counts, skip ranges and records
/// offsets), the stored request's first four octets (command, IP version, Conf-Sender,
/// Conf-Receiver), its packet and slot counts, and the number of 50-octet records after the
/// header.
#[derive(Debug, PartialEq)]
struct TwoWayLayout {
    words: Vec<u64>,
    request_head: Vec<u8>,
    packets: u32,
    slots: u32,
    records: usize,
    rest: usize,
}

fn two_way_layout(b: &[u8]) -> TwoWayLayout {
    assert_eq!(&b[..4], b"OwA\0");
    let w32 = |o: usize| u64::from(u32::from_be_bytes(b[o..o + 4].try_into().unwrap()));
    let w64 = |o: usize| u64::from_be_bytes(b[o..o + 8].try_into().unwrap());
    let records_at = w64(32) as usize;
    TwoWayLayout {
        words: vec![w32(4), w32(8), w32(12), w32(16), w32(20), w64(24), w64(32)],
        request_head: b[40..44].to_vec(),
        packets: w32(48) as u32,
        slots: w32(44) as u32,
        records: (b.len() - records_at) / 50,
        rest: (b.len() - records_at) % 50,
    }
}

/// `owstats flags file` with the given binary.
fn owstats(bin: &Path, flags: &[&str], file: &Path) -> common::Output {
    run_with(Command::new(bin).args(flags).arg(file), "", LIMIT)
}

/// -F: the file has the layout of the reference twping's (both against our twampd); our
/// owstats prints from it what twping printed; perfSONAR's owstats, given our file or the
/// reference's, prints exactly what ours prints, with owstats's output flags.
#[test]
fn twping_saves_results_that_owstats_reads() {
    let d = Daemon::start(Path::new(TWAMPD));
    let ours = d.dir.path().join("ours.owp");
    let out = twping(d.dir.path(), &["-F", ours.to_str().unwrap()], d.addr);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let bytes = std::fs::read(&ours).unwrap();
    let layout = two_way_layout(&bytes);
    // Version 3 with the two-way flag, finished, nothing counted in the header, the records
    // right after a header of one slot.
    assert_eq!(layout.words, vec![131, 1, 0, 0, 0, 0, 184], "{layout:?}");
    assert_eq!(layout.request_head, vec![1, 4, 1, 1]);
    assert_eq!((layout.packets, layout.slots), (5, 1));
    assert_eq!((layout.records, layout.rest), (5, 0));

    // Our owstats prints twping's summary from the file: the same lines, but the receiver's
    // name, which owstats looks up.
    let stats = owstats(Path::new(OWSTATS), &[], &ours);
    assert_eq!(stats.code, 0, "{}", stats.stderr);
    let summary: Vec<&str> = out.stdout.lines().skip(1).collect();
    let from_file: Vec<&str> = stats.stdout.lines().collect();
    assert_eq!(
        summary.len(),
        from_file.len(),
        "{}{}",
        out.stdout,
        stats.stdout
    );
    for (a, b) in summary.iter().zip(&from_file) {
        if !a.starts_with("--- twping statistics") {
            assert_eq!(a, b, "{}{}", out.stdout, stats.stdout);
        }
    }
    assert!(stats.stdout.contains("5 sent, 0 lost"), "{}", stats.stdout);
    // -Q still saves; a second run replaces the file.
    let out = twping(d.dir.path(), &["-Q", "-F", ours.to_str().unwrap()], d.addr);
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{}", out.stderr);
    assert_ne!(std::fs::read(&ours).unwrap(), bytes);

    let mut files = vec![ours];
    if let Some(bin) = reference("twping") {
        let theirs = d.dir.path().join("theirs.owp");
        let out = reference_twping(
            &bin,
            d.dir.path(),
            &["-F", theirs.to_str().unwrap()],
            d.addr,
        );
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        let their_layout = two_way_layout(&std::fs::read(&theirs).unwrap());
        assert_eq!(their_layout, layout);
        files.push(theirs);
    } else {
        eprintln!("skipped: the reference twping is not in ../shared/reference");
    }
    let Some(reference_owstats) = reference("owstats") else {
        eprintln!("skipped: the reference owstats is not in ../shared/reference");
        return;
    };
    for f in &files {
        for flags in [
            &[][..],
            &["-M"],
            &["-v"],
            &["-v2", "-U"],
            &["-a", "10,90,99.5", "-b", "0.001"],
            &["-N", "2", "-n", "u"],
            &["-a", "0", "-N", "3", "-v"],
        ] {
            let theirs = owstats(&reference_owstats, flags, f);
            let ours = owstats(Path::new(OWSTATS), flags, f);
            assert_eq!(
                (ours.code, &ours.stdout),
                (theirs.code, &theirs.stdout),
                "owstats {flags:?} {}",
                f.display()
            );
        }
    }
}

/// -a and -b: the percentiles' lines and the bucket width as the reference twping prints them
/// (both against our twampd).
#[test]
fn twping_percentiles_and_bucket_width_layout() {
    same_layout_as_reference(&[
        (&["-a", "10,90,99.5"], 0),
        (&["-a", "50", "-b", "0.001", "-n", "u"], 0),
        (&["-a", "25", "-N", "2"], 0),
    ]);
    let d = Daemon::start(Path::new(TWAMPD));
    let out = twping(d.dir.path(), &["-a", "10,99.95"], d.addr);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("\nPercentiles:\n\t10.0: ") && out.stdout.contains(" ms\n\t99.9: "),
        "{}",
        out.stdout
    );
    let out = twping(d.dir.path(), &["-M", "-b", "0.001"], d.addr);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("\nBUCKET_WIDTH\t0.001\n"),
        "{}",
        out.stdout
    );
    assert_eq!(
        machine_keys(&out.stdout),
        machine_keys(&recorded("m_open_machine.twping.stdout.txt")),
    );
    // The reference's -M ends with an empty line.
    assert!(out.stdout.ends_with("</TTLBUCKETS>\n\n"), "{}", out.stdout);
}

/// Bad -a and -b values, a bucket wider than the loss timeout and a -F file that cannot be
/// written end twping with status 1 and the reference's message, before any test for all but
/// the last.
#[test]
fn twping_refuses_bad_output_values() {
    let d = Daemon::start(Path::new(TWAMPD));
    let dir = d.dir.path().to_str().unwrap().to_string();
    let cases: Vec<(Vec<&str>, Option<&str>)> = vec![
        (vec!["-a", "x"], Some("Invalid numeric value (x) for percentile")),
        (vec!["-a", "101"], Some("Invalid numeric value (101) for percentile")),
        (vec!["-a", "50,"], Some("Unable to parse percentiles specification")),
        (vec!["-b", "0"], Some("Invalid '-b' value. Positive float expected")),
        (vec!["-b", "-1"], Some("Invalid '-b' value. Positive float expected")),
        (
            vec!["-b", "2"],
            Some("Invalid test specification: LossThreshold(1.000000) '-L' < BucketWidth (2.000000) '-b'"),
        ),
        // A directory: the reference says fopen(...), this twping says why in its words.
        (vec!["-F", dir.as_str()], None),
    ];
    for (flags, message) in &cases {
        let ours = twping(d.dir.path(), flags, d.addr);
        assert_eq!(ours.code, 1, "{flags:?}: {}{}", ours.stdout, ours.stderr);
        assert!(
            !ours.stdout.contains("statistics"),
            "{flags:?}: {}",
            ours.stdout
        );
        if let Some(m) = message {
            assert!(ours.stderr.contains(m), "{flags:?}: {}", ours.stderr);
        }
        if let Some(bin) = reference("twping") {
            let theirs = reference_twping(&bin, d.dir.path(), flags, d.addr);
            assert_eq!(theirs.code, 1, "reference {flags:?}: {}", theirs.stderr);
            if let Some(m) = message {
                assert!(
                    theirs.stderr.contains(m),
                    "reference {flags:?}: {}",
                    theirs.stderr
                );
            }
        }
    }
    // A file that cannot be written to after the test: an error (the reference exits 0).
    if Path::new("/dev/full").exists() {
        let out = twping(d.dir.path(), &["-F", "/dev/full"], d.addr);
        assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
        assert!(out.stderr.contains("No space left"), "{}", out.stderr);
    }
}

/// A command that TWAMP does not have (OWAMP's Request-Session 1 and Fetch-Session 4,
/// Stop-Sessions with no test, an unassigned 9) after an open-mode set-up: our twampd
/// answers each 16-octet block as perfSONAR's does, with an Accept-Session whose Accept is 3
/// ("not supported", RFC 4656 3.3), and keeps the connection open.
#[test]
fn twampd_answers_unknown_commands_with_not_supported() {
    use std::io::{Read, Write};
    let mut daemons = vec![("ours", Daemon::start(Path::new(TWAMPD)))];
    if let Some(bin) = reference("twampd") {
        daemons.push(("reference", Daemon::start(&bin)));
    }
    for (who, d) in &daemons {
        let mut s = TcpStream::connect_timeout(&d.addr, Duration::from_secs(5)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut greeting = [0u8; 64];
        s.read_exact(&mut greeting).unwrap();
        // Set-Up-Response: mode 1 (open), the rest zero.
        let mut setup = vec![0u8; 164];
        setup[3] = 1;
        s.write_all(&setup).unwrap();
        let mut start = [0u8; 48];
        s.read_exact(&mut start).unwrap();
        assert_eq!(start[15], 0, "{who}: Server-Start Accept");
        for command in [9u8, 1, 4, 3] {
            let mut block = [0u8; 16];
            block[0] = command;
            s.write_all(&block).unwrap();
            let mut answer = [0u8; 48];
            s.read_exact(&mut answer)
                .unwrap_or_else(|e| panic!("{who}: command {command}: {e}"));
            let mut want = [0u8; 48];
            want[0] = 3;
            assert_eq!(answer, want, "{who}: command {command}");
        }
        // Still open: nothing more comes, and no end of stream.
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut more = [0u8; 1];
        match s.read(&mut more) {
            Ok(n) => panic!("{who}: {n} more octets or a close"),
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "{who}: {e}"
            ),
        }
    }
}
