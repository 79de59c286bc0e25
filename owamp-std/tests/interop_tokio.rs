//! The two adapters against each other over loopback: a tokio client measures against a
//! blocking owamp-std server, and a blocking owamp-std client against a tokio server, in
//! every mode and both directions.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use owamp_core::control::{Mode, Modes};
use owamp_core::policy::{AllowAll, ServerPolicy};
use owamp_os::store::MemoryStore;
use owamp_testkit::{
    both_ways, check_complete, client, limits_with_alice, lo_addr as lo, serve_config, PACKETS,
};
use owamp_tokio::control::run_test;

/// A tokio server on 127.0.0.1 with a memory store.
async fn serve<P: ServerPolicy + Clone + Send + 'static>(
    policy: P,
    config: owamp_tokio::control::ServeConfig,
) -> (
    owamp_tokio::control::RunningServer,
    SocketAddr,
    Arc<MemoryStore>,
) {
    let store = Arc::new(MemoryStore::new());
    let server = owamp_tokio::control::Server::bind(lo(), config, policy, store.clone())
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    (server.spawn(), addr, store)
}

/// An owamp-std server on its own thread.
fn std_server<P: ServerPolicy + Clone + Send + 'static>(
    policy: P,
) -> (
    owamp_std::control::RunningServer,
    std::net::SocketAddr,
    Arc<MemoryStore>,
) {
    let store = Arc::new(MemoryStore::new());
    let server = owamp_std::control::Server::bind(
        lo(),
        serve_config(Duration::from_secs(5), 8),
        policy,
        store.clone(),
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    (server.spawn().unwrap(), addr, store)
}

fn modes() -> [(Mode, Option<(&'static str, &'static str)>); 3] {
    [
        (Mode::Open, None),
        (Mode::Authenticated, Some(("alice", "wonderland"))),
        (Mode::Encrypted, Some(("alice", "wonderland"))),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn tokio_client_against_std_server() {
    for (mode, identity) in modes() {
        let (server, addr, store) = std_server(limits_with_alice());
        let opts = client(identity, Modes::EMPTY.with(mode));
        let r = run_test(addr, &opts, &both_ways(), None).await.unwrap();
        assert_eq!(r.mode, mode);
        let to = r.to.unwrap();
        check_complete(to.data.as_ref().unwrap(), PACKETS);
        check_complete(r.from.unwrap().data.as_ref().unwrap(), PACKETS);
        assert_eq!(
            store.get(&to.info.sid).unwrap().records,
            to.data.unwrap().records
        );
        tokio::task::spawn_blocking(move || server.shutdown())
            .await
            .unwrap()
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn std_client_against_tokio_server() {
    for (mode, identity) in modes() {
        let (server, addr, store) =
            serve(limits_with_alice(), serve_config(Duration::from_secs(5), 8)).await;
        let opts = client(identity, Modes::EMPTY.with(mode));
        let r = tokio::task::spawn_blocking(move || {
            owamp_std::control::run_test(addr, &opts, &both_ways(), None)
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(r.mode, mode);
        let to = r.to.unwrap();
        check_complete(to.data.as_ref().unwrap(), PACKETS);
        check_complete(r.from.unwrap().data.as_ref().unwrap(), PACKETS);
        assert_eq!(
            store.get(&to.info.sid).unwrap().records,
            to.data.unwrap().records
        );
        server.shutdown().await.unwrap();
    }
}

/// Open mode only is offered by `AllowAll`: a client that insists on encryption finds no
/// common mode, whichever adapter runs which side.
#[tokio::test(flavor = "multi_thread")]
async fn no_common_mode_across_adapters() {
    let (server, addr, _) = std_server(AllowAll);
    let opts = client(Some(("alice", "wonderland")), Modes::ENCRYPTED);
    let e = run_test(addr, &opts, &both_ways(), None).await.unwrap_err();
    assert!(
        matches!(
            e,
            owamp_tokio::control::ClientError::Closed(
                owamp_core::control::CloseReason::NoCommonMode
            )
        ),
        "{e:?}"
    );
    tokio::task::spawn_blocking(move || server.shutdown())
        .await
        .unwrap()
        .unwrap();
}
