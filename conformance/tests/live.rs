//! The live probe and the strict server over loopback: the probe against our owampd and the
//! perfSONAR owampd, the strict server with our owping and perfSONAR's, and the probe against
//! deliberately broken servers.
//!
//! Our binaries come from the target directory this test runs from (built when missing);
//! the reference binaries from `../shared/reference/perfsonar-owamp-5.2.3/bin` beside the
//! checkout: tests that need them print a message and pass when they are absent.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use conformance::live::probe::{owamp_checks, ProbeConfig};
use conformance::live::report::LiveReport;
use conformance::live::serve::{serve, Fault, ServeConfig};
use owamp_core::control::Identity;
use owamp_core::wire::{Mode, Modes};

const PASSPHRASE: &[u8] = b"correct horse battery staple";

fn reference_bin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference/perfsonar-owamp-5.2.3/bin")
}

/// Our binaries: beside the test's own directory (`target/<profile>/`), built when missing.
fn our_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let path = dir.join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "-q",
            "-p",
            "owamp-cli",
            "--bin",
            "owampd",
            "--bin",
            "owping",
        ]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let st = cmd
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .status()
            .unwrap();
        assert!(st.success(), "building owamp-cli failed");
    }
    assert!(path.exists(), "{} missing", path.display());
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A daemon on 127.0.0.1 with a temporary configuration (limits with disk and bandwidth caps,
/// the identity `alice`), killed when dropped.
struct Daemon {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(owampd: &Path, test_ports: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        // The reference daemon may drop privileges; let it read and write its directories.
        for p in [dir.path(), data.as_path()] {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777));
        }
        let port = free_port();
        std::fs::write(
            dir.path().join("owamp-server.conf"),
            format!(
                "srcnode 127.0.0.1:{port}\ndatadir {}\nvardir {}\ntestports {test_ports}\n",
                data.display(),
                dir.path().display()
            ),
        )
        .unwrap();
        // Disk and bandwidth limits, so that absurd requests are refused; the sessions are
        // kept after a fetch (our owampd deletes a session on any fetch with
        // delete_on_fetch=on, the reference only on a complete one).
        std::fs::write(
            dir.path().join("owamp-server.limits"),
            "limit root with disk=10m, bandwidth=10m, delete_on_fetch=off, allow_open_mode=on\nassign default root\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("owamp-server.pfs"),
            format!("alice\t{}\n", hex::encode(PASSPHRASE)),
        )
        .unwrap();
        let child = Command::new(owampd)
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
            assert!(
                Instant::now() < deadline,
                "{} did not start",
                owampd.display()
            );
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

fn alice() -> Identity {
    Identity {
        key_id: b"alice".to_vec(),
        passphrase: PASSPHRASE.to_vec().into(),
    }
}

fn probe(addr: SocketAddr, traces: &Path, timeout: Duration) -> LiveReport {
    let mut cfg = ProbeConfig::new(addr);
    cfg.identity = Some(alice());
    cfg.traces = Some(traces.to_path_buf());
    cfg.timeout = timeout;
    let r = owamp_checks(&cfg);
    print!("{}", r.to_text());
    r
}

/// The traces of whole sessions replay through our cores with `conformance run`.
fn assert_sessions_replay(traces: &Path) {
    let files: Vec<PathBuf> = std::fs::read_dir(traces)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("-mode-"))
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    let vectors: Vec<_> = files
        .into_iter()
        .map(conformance::runner::trace_vector)
        .collect();
    let report = conformance::runner::run(&vectors);
    assert!(report.all_passed(), "{}", report.to_text());
    assert_eq!(report.replayed, 3, "{}", report.to_text());
}

#[test]
fn probe_runs_clean_against_our_owampd() {
    let d = Daemon::start(&our_bin("owampd"), "31000-31400");
    let traces = tempfile::tempdir().unwrap();
    let r = probe(d.addr, traces.path(), Duration::from_secs(5));
    assert!(r.all_passed(), "{}", r.to_text());
    assert!(r.not_run.is_empty(), "{:?}", r.not_run);
    // Every check group ran.
    for name in [
        "greeting",
        "mode/open/fetch-partial",
        "mode/authenticated/fetch-complete",
        "mode/encrypted/server-sends",
        "set-up/wrong-passphrase",
        "set-up/unknown-identity",
        "request/zero-packets",
        "request/absurd-count",
        "request/impossible-schedule",
        "stop-sessions/skip-ranges",
        "malformed/truncated/next-client",
        "malformed/mbz",
        "malformed/hmac",
    ] {
        assert!(r.get(name).is_some(), "{name} did not run");
    }
    assert_sessions_replay(traces.path());
}

/// The reference server's deviations, documented in docs/conformance.md: it accepts a
/// zero-packet session and ignores a non-zero MBZ octet in Request-Session.
const REFERENCE_DEVIATIONS: [&str; 2] = ["request/zero-packets", "malformed/mbz"];

#[test]
fn probe_against_the_reference_owampd() {
    let owampd = reference_bin().join("owampd");
    if !owampd.exists() {
        println!("no reference owampd at {}: skipped", owampd.display());
        return;
    }
    let d = Daemon::start(&owampd, "31500-31900");
    let traces = tempfile::tempdir().unwrap();
    let r = probe(d.addr, traces.path(), Duration::from_secs(5));
    let failed: Vec<&str> = r
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(failed, REFERENCE_DEVIATIONS, "{}", r.to_text());
    assert!(r.not_run.is_empty(), "{:?}", r.not_run);
    assert_sessions_replay(traces.path());
}

/// A strict server on a free port, serving in a thread.
fn start_serve(cfg: ServeConfig) -> (SocketAddr, std::thread::JoinHandle<LiveReport>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = std::thread::spawn(move || serve(&cfg, &l, Some(1), |_| {}));
    (addr, h)
}

fn probe_broken(fault: Fault, modes: Modes) -> LiveReport {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let cfg = ServeConfig {
        modes,
        fault: Some(fault),
        control_timeout: Duration::from_secs(5),
        ..ServeConfig::default()
    };
    // Serves until the test process ends: the probe opens several connections.
    std::thread::spawn(move || serve(&cfg, &l, None, |_| {}));
    let traces = tempfile::tempdir().unwrap();
    let mut pc = ProbeConfig::new(addr);
    pc.traces = Some(traces.path().to_path_buf());
    pc.timeout = Duration::from_secs(2);
    let r = owamp_checks(&pc);
    print!("{}", r.to_text());
    r
}

#[test]
fn probe_names_a_flipped_greeting_mbz_bit() {
    let r = probe_broken(Fault::FlipGreetingMbz, Modes::OPEN);
    let f = r.failure("greeting").expect("greeting did not fail");
    assert_eq!(f.section, "3.1");
    assert!(f.seen.contains("MBZ"), "{}", f.seen);
    assert!(!r.all_passed());
}

#[test]
fn probe_names_a_skipped_stop_sessions() {
    let r = probe_broken(Fault::SkipStopSessions, Modes::OPEN);
    let f = r
        .failure("mode/open/stop-sessions")
        .expect("stop-sessions did not fail");
    assert_eq!(f.section, "3.8");
    assert!(r.get("greeting").is_some_and(|c| c.passed));
    assert!(r.get("mode/open/start-sessions").is_some_and(|c| c.passed));
}

fn owping(bin: &Path, addr: SocketAddr, mode: Option<&str>, pfs: &Path) -> std::process::Output {
    let mut cmd = Command::new(bin);
    if let Some(m) = mode {
        cmd.args(["-A", m, "-u", "alice", "-k"]).arg(pfs);
    }
    cmd.args(["-c", "10", "-i", "0.01", "-L", "1"])
        .arg(addr.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn serve_with_owping(bin: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let pfs = dir.path().join("alice.pfs");
    std::fs::write(&pfs, format!("alice\t{}\n", hex::encode(PASSPHRASE))).unwrap();
    for mode in [None, Some("A"), Some("E")] {
        let traces = dir.path().join(mode.unwrap_or("O"));
        let (addr, h) = start_serve(ServeConfig {
            modes: Modes::ALL,
            identities: vec![("alice".into(), PASSPHRASE.to_vec())],
            traces: Some(traces.clone()),
            control_timeout: Duration::from_secs(10),
            ..ServeConfig::default()
        });
        let out = owping(bin, addr, mode, &pfs);
        let r = h.join().unwrap();
        print!("{}", r.to_text());
        assert!(
            out.status.success(),
            "{mode:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(r.all_passed(), "{mode:?}: {}", r.to_text());
        // Both directions were received or sent: owping tests both by default.
        assert!(
            r.checks.iter().any(|c| c.name.ends_with("/schedule")),
            "{}",
            r.to_text()
        );
        let written = std::fs::read_dir(&traces).unwrap().count();
        assert_eq!(written, 1);
        let _ = Mode::Open;
    }
}

#[test]
fn serve_runs_clean_with_our_owping() {
    serve_with_owping(&our_bin("owping"));
}

#[test]
fn serve_runs_clean_with_the_reference_owping() {
    let owping = reference_bin().join("owping");
    if !owping.exists() {
        println!("no reference owping at {}: skipped", owping.display());
        return;
    }
    serve_with_owping(&owping);
}

/// The strict server reports a client that deviates: the probe's altered requests (a
/// non-zero MBZ octet, a truncated Request-Session) are named with their octet.
#[test]
fn serve_reports_a_deviating_client() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let cfg = ServeConfig {
        modes: Modes::OPEN,
        control_timeout: Duration::from_secs(5),
        ..ServeConfig::default()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        serve(&cfg, &l, None, |checks| {
            let _ = tx.send(checks.to_vec());
        })
    });
    let mut pc = ProbeConfig::new(addr);
    pc.timeout = Duration::from_secs(2);
    owamp_checks(&pc);
    // The last connection's checks come once it closed.
    std::thread::sleep(Duration::from_millis(300));
    let checks: Vec<_> = rx.try_iter().flatten().collect();
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| format!("{} [{}]: {}", c.name, c.section, c.seen))
        .collect();
    assert!(
        failed
            .iter()
            .any(|f| f.contains("/messages") && f.contains("non-zero MBZ octet at offset 88")),
        "{failed:#?}"
    );
    assert!(
        failed
            .iter()
            .any(|f| f.contains("/protocol") && f.contains("broke the protocol")),
        "{failed:#?}"
    );
    // Whole sessions pass.
    assert!(checks
        .iter()
        .any(|c| c.name.ends_with("/schedule") && c.passed));
}
