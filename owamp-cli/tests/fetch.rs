//! Fetch-Session against owampd as a process: with `delete_on_fetch`, only a complete fetch
//! removes a session; a session is fetchable from another connection as soon as its test is
//! over. The same sequences run against perfSONAR's owampd when its binary is present.

mod common;

use common::Daemon;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use owamp_core::control::{ClientConfig, Role};
use owamp_core::io::Finished;
use owamp_core::wire::SessionId;
use owamp_os::host::{ClientOptions, SessionSpec};
use owamp_os::store::sid_hex;
use owamp_std::control::{ClientConnection, ClientError};

const DELETE_ON_FETCH: &str = "limit root with delete_on_fetch=on\n";

fn options() -> ClientOptions {
    ClientOptions {
        control: ClientConfig {
            control_timeout: Duration::from_secs(10),
            end_delay: Duration::from_millis(500),
            ..ClientConfig::default()
        },
        ..ClientOptions::default()
    }
}

/// Runs one session of `packets` packets to the server at `addr` on `conn`; returns its SID.
fn send_session(conn: &mut ClientConnection, packets: u32) -> SessionId {
    let spec = SessionSpec {
        timeout: Duration::from_millis(500),
        ..SessionSpec::periodic(packets, Duration::from_millis(5))
    };
    let start = conn.now().saturating_add(Duration::from_millis(200));
    let info = conn.request_session(Role::Sender, &spec, start).unwrap();
    conn.start().unwrap();
    let end = conn.wait(None).unwrap();
    assert!(end.complete, "{end:?}");
    info.sid
}

/// Whether the server still keeps the session's file: it goes just after the answer's last
/// octets were written, so a file still there is looked at again for half a second.
fn stored(data: &Path, sid: &SessionId) -> bool {
    let path = common::catalog_link(data, &sid_hex(sid));
    for _ in 0..50 {
        if !path.exists() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    path.exists()
}

/// Partial, empty-range and full fetches of a `delete_on_fetch` session, in that order: what
/// each returns, and whether the session is still there after it (`data`: where the server
/// keeps its files, when it can be looked at).
fn partial_then_full(addr: SocketAddr, data: Option<&Path>) -> Vec<(String, Option<bool>)> {
    let mut conn = ClientConnection::connect(addr, &options()).unwrap();
    let sid = send_session(&mut conn, 20);
    let mut seen = Vec::new();
    for (begin, end) in [(0, 4), (5, 3), (0, u32::MAX), (0, u32::MAX)] {
        let got = match conn.fetch(sid, begin, end) {
            Ok(f) => format!("{} records, {:?}", f.records.len(), f.finished),
            Err(ClientError::FetchDenied(a)) => format!("denied {a:?}"),
            Err(e) => format!("error {e}"),
        };
        seen.push((got, data.map(|d| stored(d, &sid))));
    }
    seen
}

#[test]
fn delete_on_fetch_only_after_a_complete_fetch() {
    let d = Daemon::start("", Some(DELETE_ON_FETCH), None);
    let seen = partial_then_full(d.addr().parse().unwrap(), Some(&d.path("data")));
    let normal = format!("{:?}", Finished::Normal);
    assert_eq!(
        seen,
        vec![
            (format!("5 records, {normal}"), Some(true)),
            (format!("0 records, {normal}"), Some(true)),
            (format!("20 records, {normal}"), Some(false)),
            ("denied Failure".to_string(), Some(false)),
        ]
    );
}

/// perfSONAR's owampd, same sequence (its data directory is not looked at).
#[test]
fn reference_delete_on_fetch_sequence() {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/reference/perfsonar-owamp-5.2.3/bin/owampd");
    if !bin.exists() {
        eprintln!("skipped: no reference owampd at {}", bin.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    std::fs::write(
        dir.path().join("owamp-server.conf"),
        format!(
            "srcnode 127.0.0.1:{port}\ndatadir {}\nvardir {}\n",
            data.display(),
            dir.path().display()
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("owamp-server.limits"), DELETE_ON_FETCH).unwrap();
    let mut child = std::process::Command::new(&bin)
        .args(["-f", "-Z", "-c"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let up = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        std::net::TcpStream::connect(addr).is_ok()
    });
    if up {
        let seen = partial_then_full(addr, None);
        eprintln!("perfSONAR owampd, delete_on_fetch: partial, empty, full, full: {seen:?}");
    } else {
        eprintln!("skipped: the reference owampd did not start");
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The session is fetched on a second connection the moment the test is over on the first.
#[test]
fn fetch_from_a_second_connection_right_after_stop_sessions() {
    let d = Daemon::start("", None, None);
    let addr: SocketAddr = d.addr().parse().unwrap();
    for _ in 0..3 {
        let mut conn = ClientConnection::connect(addr, &options()).unwrap();
        let mut other = ClientConnection::connect(addr, &options()).unwrap();
        let sid = send_session(&mut conn, 10);
        let f = other.fetch(sid, 0, u32::MAX).unwrap();
        assert_eq!((f.records.len(), f.finished), (10, Finished::Normal));
    }
}
