//! `conformance probe --twamp` against perfSONAR's twampd 5.2.3 (from
//! `../shared/reference/perfsonar-owamp-5.2.3/bin`; skipped with a message when absent) on
//! loopback, in open, authenticated and encrypted modes: every check passes, and every trace
//! the probe wrote is run by the runner (whole sessions replay through our TWAMP cores).
//! Bounded: 5 packets per session, 2 s per answer, the daemon killed at the end.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use conformance::live::probe::ProbeConfig;
use conformance::live::twamp::twamp_checks;
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
