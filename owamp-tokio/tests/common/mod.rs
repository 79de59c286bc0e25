//! Shared set-up of the loopback tests: servers, client options, session plans, checks.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use owamp_core::policy::ServerPolicy;
// Not every test file uses every helper.
use owamp_os::store::MemoryStore;
#[allow(unused_imports)]
pub use owamp_testkit::{
    both_ways, check_complete, client, limits_with_alice, lo_addr as lo, serve_config, spec,
    PACKETS,
};
use owamp_tokio::control::{RunningServer, ServeConfig, Server};

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
