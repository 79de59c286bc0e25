//! `conformance probe --twamp` against perfSONAR's twampd 5.2.3 (from
//! `../shared/reference/perfsonar-owamp-5.2.3/bin`; skipped with a message when absent) on
//! loopback, in open, authenticated and encrypted modes: every check passes, and every trace
//! the probe wrote is run by the runner (whole sessions replay through our TWAMP cores).
//! `conformance serve --twamp` with perfSONAR's twping in the same modes, and the probe against
//! `serve --twamp`. Bounded: 5 packets per session, 2 s per answer, every child killed at the
//! end or at a deadline.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use conformance::live::probe::ProbeConfig;
use conformance::live::serve::ServeConfig;
use conformance::live::twamp::{serve_twamp, twamp_checks};
use owamp_core::control::Identity;

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
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

struct Daemon {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(bin: &PathBuf) -> Option<Daemon> {
        let dir = tempfile::tempdir().ok()?;
        {
            use std::os::unix::fs::PermissionsExt;
            // The daemon may drop privileges: let it use its directory.
            let _ = std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777));
        }
        let port = free_port();
        let low = 20000 + (port % 20000);
        let files = [
            (
                "twamp-server.conf",
                format!(
                    "srcnode 127.0.0.1:{port}\ntestports {low}-{}\ndatadir {d}\nvardir {d}\n",
                    low + 100,
                    d = dir.path().display()
                ),
            ),
            (
                "twamp-server.limits",
                "limit root with disk=0, bandwidth=0, allow_open_mode=on\nassign default root\n"
                    .to_string(),
            ),
            (
                "twamp-server.pfs",
                format!("alice\t{}\n", hex::encode(PASS)),
            ),
        ];
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).ok()?;
        }
        let child = Command::new(bin)
            .args(["-Z", "-f", "-c"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut d = Daemon {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&d.addr, Duration::from_millis(200)).is_err() {
            if Instant::now() > deadline || d.child.try_wait().ok().flatten().is_some() {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(d)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn probe_twamp_against_the_reference_twampd() {
    let Some(bin) = twampd() else {
        println!("no reference twampd in ../shared/reference: skipped");
        return;
    };
    let Some(d) = Daemon::start(&bin) else {
        println!("the reference twampd did not start here: skipped");
        return;
    };
    let traces = tempfile::tempdir().unwrap();
    let mut cfg = ProbeConfig::new(d.addr);
    cfg.traces = Some(traces.path().to_path_buf());
    cfg.timeout = Duration::from_secs(2);
    cfg.packets = 5;
    cfg.interval = Duration::from_millis(10);
    cfg.identity = Some(Identity {
        key_id: b"alice".to_vec(),
        passphrase: PASS.to_vec().into(),
    });
    let r = twamp_checks(&cfg);
    let text = r.to_text();
    println!("{text}");
    assert!(r.all_passed(), "{text}");
    assert!(r.not_run.is_empty(), "{text}");
    for m in ["open", "authenticated", "encrypted"] {
        for c in [
            "set-up",
            "request-tw-session",
            "start-sessions",
            "reflected",
            "test-packets",
            "stop-sessions",
        ] {
            let name = format!("twamp/mode/{m}/{c}");
            assert!(r.get(&name).is_some_and(|c| c.passed), "{name}: {text}");
        }
    }
    assert!(text.contains("[RFC 5357 4.2.1]"), "{text}");
    // Every trace the probe wrote runs: the greeting and the three whole sessions replay
    // through both TWAMP cores; the two with OWAMP commands fail at the command.
    let report = conformance::runner::run(&conformance::runner::vectors_from_dirs(&[traces
        .path()
        .to_path_buf()]));
    let text = report.to_text();
    assert_eq!((report.passed, report.failed), (4, 2), "{text}");
    assert_eq!(report.replayed, 4, "{text}");
    for o in report.vectors.iter().filter(|o| !o.passed) {
        assert!(
            o.reason
                .as_deref()
                .unwrap_or("")
                .contains("is not a TWAMP-Control command"),
            "{text}"
        );
    }
}

fn serve_config(traces: &std::path::Path) -> ServeConfig {
    ServeConfig {
        identities: vec![("alice".into(), PASS.to_vec())],
        traces: Some(traces.to_path_buf()),
        connection_limit: Duration::from_secs(15),
        control_timeout: Duration::from_secs(5),
        ..ServeConfig::default()
    }
}

/// The reference twping (open, authenticated, encrypted) against `serve --twamp`: twping
/// finishes with every packet reflected, every check of each connection passes, and the traces
/// replay through our cores.
#[test]
fn serve_twamp_with_the_reference_twping() {
    let Some(twping) = twampd()
        .map(|p| p.with_file_name("twping"))
        .filter(|p| p.exists())
    else {
        println!("no reference twping in ../shared/reference: skipped");
        return;
    };
    let traces = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = serve_config(traces.path());
    let server = std::thread::spawn(move || serve_twamp(&cfg, &listener, Some(3), |_| {}));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("alice.pfs"),
        format!("alice\t{}\n", hex::encode(PASS)),
    )
    .unwrap();
    for extra in [
        &[][..],
        &["-A", "A", "-u", "alice", "-k", "alice.pfs"][..],
        &["-A", "E", "-u", "alice", "-k", "alice.pfs"][..],
    ] {
        let mut child = Command::new(&twping)
            .current_dir(dir.path())
            .args(extra)
            .args(["-R", "-c", "5", "-i", "0.05"])
            .arg(addr.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Bounded: twping ends about 3 s after it starts; kill it after 15.
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("twping {extra:?} did not finish");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stdout = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
        assert!(status.success(), "twping {extra:?}: {stdout}");
        assert_eq!(stdout.lines().count(), 5, "twping {extra:?}: {stdout}");
    }
    let r = server.join().unwrap();
    let text = r.to_text();
    assert!(r.all_passed(), "{text}");
    assert_eq!(r.passed, 9, "{text}");
    let report = conformance::runner::run(&conformance::runner::vectors_from_dirs(&[traces
        .path()
        .to_path_buf()]));
    assert_eq!(
        (report.passed, report.replayed),
        (3, 3),
        "{}",
        report.to_text()
    );
}

/// `probe --twamp` against `serve --twamp`: the probe finds nothing wrong with our TWAMP
/// server; the server answers the probe's two OWAMP commands with Accept-Session refusals (as
/// perfSONAR's twampd does) and its trace check reports them as foreign to TWAMP (RFC 5357
/// 3.5), and nothing else.
#[test]
fn probe_twamp_against_serve_twamp() {
    let traces = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = serve_config(&traces.path().join("serve"));
    // The greeting, a session in each of three modes, the two foreign commands.
    let server = std::thread::spawn(move || serve_twamp(&cfg, &listener, Some(6), |_| {}));
    let mut cfg = ProbeConfig::new(addr);
    cfg.traces = Some(traces.path().join("probe"));
    cfg.timeout = Duration::from_secs(2);
    cfg.packets = 5;
    cfg.interval = Duration::from_millis(10);
    cfg.identity = Some(Identity {
        key_id: b"alice".to_vec(),
        passphrase: PASS.to_vec().into(),
    });
    let probe = twamp_checks(&cfg);
    assert!(probe.all_passed(), "{}", probe.to_text());
    assert_eq!(probe.passed, 21, "{}", probe.to_text());
    let served = server.join().unwrap();
    let text = served.to_text();
    let failed: Vec<_> = served.checks.iter().filter(|c| !c.passed).collect();
    assert_eq!(failed.len(), 2, "{text}");
    for c in failed {
        assert!(
            (c.name == "connection/5/messages" && c.seen.contains("command 1 is not"))
                || (c.name == "connection/6/messages" && c.seen.contains("command 4 is not")),
            "{text}"
        );
    }
}
