//! owampd as a classic daemon (no -Z), as perfSONAR's `Type=forking` unit starts it: the
//! parent exits once the pid file names a detached child that serves; the log goes to syslog
//! (here a socket the test binds, through OWAMPD_SYSLOG_SOCKET); start-up errors still reach
//! the terminal; a data directory it can not write stops it at start-up.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{run_with, OWAMPD};

const OWPING: &str = env!("CARGO_BIN_EXE_owping");

fn write_conf(dir: &Path, data: &Path, extra: &str) {
    std::fs::write(
        dir.join("owamp-server.conf"),
        format!(
            "srcnode 127.0.0.1:0\ndatadir {}\nvardir {}\nfacility local5\n{extra}",
            data.display(),
            dir.display()
        ),
    )
    .unwrap();
}

/// Syslog lines received on `sock` until `until` matches one, within `limit`.
fn syslog_until(sock: &UnixDatagram, limit: Duration, until: &str) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut lines = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            let l = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = l.contains(until);
            lines.push(l);
            if done {
                break;
            }
        }
    }
    lines
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[test]
fn without_z_owampd_detaches_writes_its_pid_file_and_logs_to_syslog() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_conf(dir.path(), &data, "");
    let sock_path = dir.path().join("log.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();

    let o = run_with(
        Command::new(OWAMPD)
            .args(["-f", "-c"])
            .arg(dir.path())
            .env("OWAMPD_SYSLOG_SOCKET", &sock_path),
        "",
        Duration::from_secs(20),
    );
    // The parent is gone, with status 0, once the child serves.
    assert_eq!(o.code, 0, "{}", o.stderr);
    let pid: i32 = std::fs::read_to_string(dir.path().join("owamp-server.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(pid), "the daemon {pid} is not running");
    // SAFETY: getsid on a pid has no memory-safety preconditions.
    assert_eq!(unsafe { libc::getsid(pid) }, pid, "not a session leader");

    let lines = syslog_until(&sock, Duration::from_secs(5), "listening on");
    let listening = lines
        .iter()
        .find(|l| l.contains("listening on 127.0.0.1:"))
        .unwrap_or_else(|| panic!("no listening line in syslog: {lines:?}"));
    // <facility * 8 + severity>: local5 (21), info (6).
    assert!(listening.starts_with("<174>"), "{listening}");
    assert!(listening.contains(&format!("owampd[{pid}]")), "{listening}");
    let port: String = listening
        .split("listening on 127.0.0.1:")
        .nth(1)
        .unwrap()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();

    let out = Command::new(OWPING)
        .args(["-c", "10", "-i", "0.01", "-t", "-Q"])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = syslog_until(&sock, Duration::from_secs(10), "connection from 127.0.0.1");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("connection from 127.0.0.1")),
        "{lines:?}"
    );

    // SAFETY: kill on the daemon's pid.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let lines = syslog_until(&sock, Duration::from_secs(20), "exiting");
    assert!(lines.iter().any(|l| l.contains("exiting")), "{lines:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(pid), "the daemon did not exit");
    assert!(!dir.path().join("owamp-server.pid").exists());
}

#[test]
fn a_daemon_without_syslog_says_so_on_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    write_conf(dir.path(), &dir.path().join("data"), "");
    let o = run_with(
        Command::new(OWAMPD)
            .args(["-f", "-c"])
            .arg(dir.path())
            .env("OWAMPD_SYSLOG_SOCKET", dir.path().join("nobody-listens")),
        "",
        Duration::from_secs(20),
    );
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("Unable to log to syslog"), "{}", o.stderr);
    assert!(o.stderr.contains("-Z"), "{}", o.stderr);
}

#[test]
fn an_unwritable_datadir_stops_owampd_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let mut cmd = Command::new(OWAMPD);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // Root writes anywhere: run as nobody, in a directory only root may write.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        write_conf(dir.path(), &data, "user nobody\n");
        // The pid and info files are written before owampd drops root.
    } else {
        use std::os::unix::fs::PermissionsExt;
        write_conf(dir.path(), &data, "");
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    cmd.args(["-Z", "-c"]).arg(dir.path());
    let o = run_with(&mut cmd, "", Duration::from_secs(20));
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(
        o.stderr
            .contains(&format!("datadir {} is not writable", data.display())),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("Permission denied"), "{}", o.stderr);
}
