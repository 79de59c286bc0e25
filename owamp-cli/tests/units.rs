//! The systemd units: ours (packaging/systemd/) start commands that parse and behave as their
//! `Type=` says, and perfSONAR's `owampd.service` (Type=forking, a PIDFile, no -Z) works with
//! our owampd in place of theirs. systemd itself is not run: each unit's ExecStart is run with
//! its paths moved into a temporary directory, and what systemd would wait for is checked.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use common::{run_with, wait_bounded, OWAMPD};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The value of `key=` in the [Service] section of a unit.
fn service_key(unit: &str, key: &str) -> Option<String> {
    let mut in_service = false;
    for l in unit.lines() {
        let l = l.trim();
        if l.starts_with('[') {
            in_service = l == "[Service]";
        } else if in_service {
            if let Some(v) = l.strip_prefix(&format!("{key}=")) {
                return Some(v.to_owned());
            }
        }
    }
    None
}

fn exec_start(unit: &str) -> Vec<String> {
    service_key(unit, "ExecStart")
        .expect("no ExecStart")
        .replace("%i", "peer.example.net")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn conf_dir(dir: &Path) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(
        dir.join("owamp-server.conf"),
        format!(
            "srcnode 127.0.0.1:0\ndatadir {}\nfacility local5\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
}

/// The unit's command with its system paths moved under `dir`.
fn localised(argv: &[String], dir: &Path) -> Vec<String> {
    argv[1..]
        .iter()
        .map(|a| match a.as_str() {
            "/etc/owamp-server" | "/var/run" | "/run/owamp" => dir.display().to_string(),
            other => other.to_owned(),
        })
        .collect()
}

#[test]
fn our_units_start_commands_that_parse() {
    let owampd = std::fs::read_to_string(repo().join("packaging/systemd/owampd.service")).unwrap();
    assert_eq!(service_key(&owampd, "Type").as_deref(), Some("simple"));
    let argv = exec_start(&owampd);
    assert!(argv[0].ends_with("/owampd"));
    let a = owamp_cli::owampd::Args::try_parse_from(&argv).unwrap();
    // Type=simple: the process systemd started is the daemon.
    assert!(a.foreground, "Type=simple needs -Z");
    for key in ["NoNewPrivileges", "ProtectSystem", "CapabilityBoundingSet"] {
        assert!(
            service_key(&owampd, key).is_some(),
            "owampd.service: no {key}"
        );
    }

    let pow = std::fs::read_to_string(repo().join("packaging/systemd/powstream@.service")).unwrap();
    let argv = exec_start(&pow);
    assert!(argv[0].ends_with("/powstream"));
    let a = owamp_cli::powstream::Args::try_parse_from(&argv).unwrap();
    assert!(format!("{a:?}").contains("peer.example.net"));
    for key in ["NoNewPrivileges", "ProtectSystem", "CapabilityBoundingSet"] {
        assert!(
            service_key(&pow, key).is_some(),
            "powstream@.service: no {key}"
        );
    }
}

#[test]
fn our_owampd_unit_runs_in_the_foreground() {
    let unit = std::fs::read_to_string(repo().join("packaging/systemd/owampd.service")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    conf_dir(dir.path());
    let mut args = localised(&exec_start(&unit), dir.path());
    args.insert(0, "-f".into()); // the test may run as root, without the unit's User=
    let mut child = Command::new(OWAMPD)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid_file = dir.path().join("owamp-server.pid");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pid_file.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, child.id(), "the started process must be the daemon");
    assert!(child.try_wait().unwrap().is_none(), "it must stay running");
    // SAFETY: kill on our child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(wait_bounded(&mut child, Duration::from_secs(20)), 0);
}

#[test]
fn perfsonar_owampd_unit_works_with_our_owampd() {
    let path = repo().join("../shared/reference/perfsonar-owamp-5.2.3/conf/owampd.service");
    let Ok(unit) = std::fs::read_to_string(&path) else {
        eprintln!("{} is not there: skipped", path.display());
        return;
    };
    assert_eq!(service_key(&unit, "Type").as_deref(), Some("forking"));
    let dir = tempfile::tempdir().unwrap();
    conf_dir(dir.path());
    let pid_file = PathBuf::from(service_key(&unit, "PIDFile").unwrap());
    let pid_file = dir.path().join(pid_file.file_name().unwrap());
    let sock_path = dir.path().join("log.sock");
    let _syslog = UnixDatagram::bind(&sock_path).unwrap();
    let mut args = localised(&exec_start(&unit), dir.path());
    args.insert(0, "-f".into());
    // systemd waits for the process it started to exit, then reads the PIDFile.
    let o = run_with(
        Command::new(OWAMPD)
            .args(&args)
            .env("OWAMPD_SYSLOG_SOCKET", &sock_path),
        "",
        Duration::from_secs(20),
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap_or_else(|e| panic!("{}: {e}", pid_file.display()))
        .trim()
        .parse()
        .unwrap();
    // SAFETY: signal 0 only checks the process exists; SIGTERM stops it.
    unsafe {
        assert_eq!(
            libc::kill(pid, 0),
            0,
            "the PIDFile names no running process"
        );
        libc::kill(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    // SAFETY: as above.
    while unsafe { libc::kill(pid, 0) } == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!pid_file.exists(), "the PIDFile outlived the daemon");
}
