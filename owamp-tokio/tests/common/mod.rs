//! Shared set-up of the loopback tests: servers, client options, session plans, checks.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use owamp_core::control::{ClientConfig, Identity, Modes, ServerConfig};
use owamp_core::io::{Finished, StoredSession};
use owamp_core::policy::{ClassLimits, Limits, ServerPolicy};
use owamp_tokio::control::{
    ClientOptions, MemoryStore, RunningServer, ServeConfig, Server, SessionSpec, TestPlan,
};

pub const PACKETS: u32 = 50;

pub fn lo() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)
}

pub fn serve_config(control_timeout: Duration, max_connections: usize) -> ServeConfig {
    ServeConfig {
        control: ServerConfig {
            control_timeout,
            end_delay: Duration::from_millis(200),
            ..ServerConfig::default()
        },
        max_connections,
        shutdown_grace: Duration::from_secs(5),
        ..ServeConfig::default()
    }
}

/// A tokio server on 127.0.0.1 with a memory store.
pub async fn serve<P: ServerPolicy + Clone + Send + 'static>(
    policy: P,
    config: ServeConfig,
) -> (RunningServer, SocketAddr, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let server = Server::bind(lo(), config, policy, store.clone())
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    (server.spawn(), addr, store)
}

pub fn client(identity: Option<(&str, &str)>, modes: Modes) -> ClientOptions {
    ClientOptions {
        control: ClientConfig {
            modes,
            identity: identity.map(|(k, p)| Identity {
                key_id: k.as_bytes().to_vec(),
                passphrase: p.as_bytes().to_vec(),
            }),
            control_timeout: Duration::from_secs(5),
            end_delay: Duration::from_millis(200),
            ..ClientConfig::default()
        },
        ..ClientOptions::default()
    }
}

pub fn spec(packets: u32, interval: Duration) -> SessionSpec {
    SessionSpec {
        timeout: Duration::from_secs(1),
        ..SessionSpec::periodic(packets, interval)
    }
}

pub fn both_ways() -> TestPlan {
    TestPlan {
        send: Some(spec(PACKETS, Duration::from_millis(10))),
        receive: Some(spec(PACKETS, Duration::from_millis(10))),
        start_delay: Duration::from_millis(300),
    }
}

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

/// Polls `f` every 10 ms for at most `max`.
pub async fn wait_until(max: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < max {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}
