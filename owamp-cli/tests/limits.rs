//! owampd's per-address limits: control connections and test sessions from one address.

mod common;

use common::Daemon;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use owamp_core::control::{AcceptCode, ClientConfig, Role};
use owamp_os::host::{ClientOptions, SessionSpec};
use owamp_std::control::{ClientConnection, ClientError};

/// Whether the server greets a new connection (12 octets of Unused, then the modes...) or
/// closes it at once.
fn greeted(addr: SocketAddr) -> (TcpStream, bool) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    (s, n > 0)
}

/// Waits (bounded) for a log line containing `what`.
fn logged(d: &Daemon, what: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match d.log.recv_timeout(left) {
            Ok(l) if l.contains(what) => return Some(l),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    None
}

#[test]
fn control_connections_per_address_are_limited() {
    let d = Daemon::start("maxcontrolsessionsperaddr 2\n", None, None);
    let addr: SocketAddr = d.addr().parse().unwrap();
    let (a, ok_a) = greeted(addr);
    let (_b, ok_b) = greeted(addr);
    assert!(ok_a && ok_b);
    let (_c, ok_c) = greeted(addr);
    assert!(
        !ok_c,
        "a third connection from 127.0.0.1 is refused before the greeting"
    );
    let line = logged(&d, "refused").expect("the refusal is logged");
    assert!(
        line.contains("connection from 127.0.0.1:") && line.contains("per-address limit"),
        "{line}"
    );
    // A slot freed is a slot for the same address again.
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_d, ok) = greeted(addr);
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the freed slot was never given back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn test_sessions_per_address_are_limited() {
    let d = Daemon::start("maxsessionsperaddr 1\n", None, None);
    let addr: SocketAddr = d.addr().parse().unwrap();
    let opts = ClientOptions {
        control: ClientConfig {
            end_delay: Duration::from_millis(200),
            ..ClientConfig::default()
        },
        ..ClientOptions::default()
    };
    let spec = SessionSpec {
        timeout: Duration::from_millis(300),
        ..SessionSpec::periodic(5, Duration::from_millis(10))
    };
    let mut first = ClientConnection::connect(addr, &opts).unwrap();
    let start = first.now().saturating_add(Duration::from_secs(1));
    first.request_session(Role::Sender, &spec, start).unwrap();
    // The address holds its one session: another, on this connection or another, is refused.
    let e = first
        .request_session(Role::Receiver, &spec, start)
        .unwrap_err();
    assert!(
        matches!(e, ClientError::Rejected(AcceptCode::TemporaryResourceLimit)),
        "{e:?}"
    );
    let mut second = ClientConnection::connect(addr, &opts).unwrap();
    let e = second
        .request_session(Role::Sender, &spec, start)
        .unwrap_err();
    assert!(
        matches!(e, ClientError::Rejected(AcceptCode::TemporaryResourceLimit)),
        "{e:?}"
    );
    let line = logged(&d, "session request from 127.0.0.1 refused").expect("logged");
    assert!(line.contains("per-address limit"), "{line}");
    // Once the first test is over, its session no longer counts.
    first.start().unwrap();
    assert!(first.wait(None).unwrap().complete);
    let start = second.now().saturating_add(Duration::from_millis(200));
    second.request_session(Role::Sender, &spec, start).unwrap();
}

#[test]
fn the_connection_cap_refuses_and_logs() {
    // No per-address limit: only maxcontrolsessions stands in the way.
    let d = Daemon::start(
        "maxcontrolsessions 2\nmaxcontrolsessionsperaddr 0\n",
        None,
        None,
    );
    let addr: SocketAddr = d.addr().parse().unwrap();
    let (_a, ok_a) = greeted(addr);
    let (_b, ok_b) = greeted(addr);
    assert!(ok_a && ok_b);
    let (_c, ok_c) = greeted(addr);
    assert!(!ok_c, "a third connection is refused before the greeting");
    let line = logged(&d, "refused").expect("the refusal is logged");
    assert!(
        line.contains("connection from 127.0.0.1:")
            && line.contains("2 control connections are being served")
            && line.ends_with("(maxcontrolsessions)"),
        "{line}"
    );
}

#[test]
fn the_default_cap_follows_the_descriptor_limit_and_is_logged() {
    // owampd under a soft limit of 200 descriptors: (200 - 32) / 4 = 42 connections.
    let dir = common::config_dir();
    std::fs::write(
        dir.path().join("owamp-server.conf"),
        format!(
            "srcnode 127.0.0.1:0\ndatadir {}\nvardir {}\n",
            dir.path().join("data").display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let o = common::run_with(
        std::process::Command::new("sh")
            .arg("-c")
            .arg("ulimit -Sn 200 && exec timeout -s INT 2 \"$0\" -f -Z -c \"$1\"")
            .arg(common::OWAMPD)
            .arg(dir.path()),
        "",
        Duration::from_secs(20),
    );
    let line = o
        .stderr
        .lines()
        .find(|l| l.contains("limits: "))
        .unwrap_or_else(|| panic!("no limits line: {}", o.stderr));
    assert!(
        line.contains("limits: 42 control connections (maxcontrolsessions not set: (RLIMIT_NOFILE 200 - 32 reserved) / 4"),
        "{line}"
    );
    // A quarter of them per address.
    assert!(line.contains(", 10 per address,"), "{line}");
}
