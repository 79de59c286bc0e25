//! The control state machines never panic on what the peer sends, always have a deadline
//! while open, and close a connection that stops talking.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use owamp_core::control::{Client, ClientConfig, CloseReason, Server, ServerConfig};
use owamp_core::io::{Input, Output};
use owamp_core::policy::AllowAll;
use owamp_core::time::OwampTime;
use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn t0() -> OwampTime {
    OwampTime::from_raw(0xeeb2_5d00_0000_0000)
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

fn server() -> Server<AllowAll, ChaCha20Rng> {
    let cfg = ServerConfig {
        control_timeout: Duration::from_secs(10),
        ..ServerConfig::default()
    };
    Server::new(
        t0(),
        cfg,
        AllowAll,
        ChaCha20Rng::seed_from_u64(1),
        addr(861),
        addr(40000),
    )
}

fn client() -> Client<ChaCha20Rng> {
    let cfg = ClientConfig {
        control_timeout: Duration::from_secs(10),
        ..ClientConfig::default()
    };
    Client::new(t0(), cfg, ChaCha20Rng::seed_from_u64(2))
}

fn drain_server(s: &mut Server<AllowAll, ChaCha20Rng>) -> Vec<Output> {
    std::iter::from_fn(|| s.poll_output()).collect()
}

fn drain_client(c: &mut Client<ChaCha20Rng>) -> Vec<Output> {
    std::iter::from_fn(|| c.poll_output()).collect()
}

fn closed_with(outs: &[Output]) -> Option<&CloseReason> {
    outs.iter().find_map(|o| match o {
        Output::Close(r) => Some(r),
        _ => None,
    })
}

#[test]
fn server_closes_a_silent_client_after_the_control_timeout() {
    let mut s = server();
    drain_server(&mut s);
    let deadline = s.poll_timeout().expect("waiting for Set-Up-Response");
    assert_eq!(deadline.raw() - t0().raw(), 10 << 32);
    // Early timer: nothing happens.
    s.handle_input(t0(), Input::Timer).unwrap();
    assert!(!s.is_closed());
    s.handle_input(deadline, Input::Timer).unwrap();
    let outs = drain_server(&mut s);
    assert_eq!(closed_with(&outs), Some(&CloseReason::Timeout));
    assert!(s.is_closed());
}

#[test]
fn client_closes_a_silent_server_after_the_control_timeout() {
    let mut c = client();
    drain_client(&mut c);
    let deadline = c.poll_timeout().expect("waiting for Server-Greeting");
    c.handle_input(deadline, Input::Timer).unwrap();
    let outs = drain_client(&mut c);
    assert_eq!(closed_with(&outs), Some(&CloseReason::Timeout));
}

#[test]
fn open_client_and_server_set_up() {
    let mut s = server();
    let mut c = client();
    let mut to_client: Vec<u8> = Vec::new();
    for o in drain_server(&mut s) {
        if let Output::Transmit(b) = o {
            to_client.extend(b);
        }
    }
    c.handle_input(t0(), Input::Received(&to_client)).unwrap();
    let mut to_server = Vec::new();
    for o in drain_client(&mut c) {
        if let Output::Transmit(b) = o {
            to_server.extend(b);
        }
    }
    assert_eq!(to_server.len(), 164);
    s.handle_input(t0(), Input::Received(&to_server)).unwrap();
    let mut back = Vec::new();
    for o in drain_server(&mut s) {
        if let Output::Transmit(b) = o {
            back.extend(b);
        }
    }
    assert_eq!(back.len(), 48);
    c.handle_input(t0(), Input::Received(&back)).unwrap();
    assert!(drain_client(&mut c)
        .iter()
        .any(|o| matches!(o, Output::Connected { .. })));
    assert!(c.is_ready());
}

#[test]
fn mode_not_offered_is_refused_with_accept_1_and_zeros() {
    // AllowAll offers open mode only; the client asks for authenticated mode.
    let mut s = server();
    drain_server(&mut s);
    let mut setup = open_setup();
    setup[3] = 2;
    s.handle_input(t0(), Input::Received(&setup)).unwrap();
    let outs = drain_server(&mut s);
    let sent: Vec<u8> = outs
        .iter()
        .filter_map(|o| match o {
            Output::Transmit(b) => Some(b.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    let mut want = vec![0u8; 48];
    want[15] = 1;
    assert_eq!(sent, want);
    assert_eq!(
        closed_with(&outs),
        Some(&CloseReason::SetupRejected(
            owamp_core::control::AcceptCode::Failure
        ))
    );
}

/// A valid open-mode Set-Up-Response.
fn open_setup() -> Vec<u8> {
    let mut b = vec![0u8; 164];
    b[3] = 1;
    b
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn server_never_panics(
        setup in any::<bool>(),
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..8),
    ) {
        let mut s = server();
        drain_server(&mut s);
        let mut now = t0();
        if setup {
            s.handle_input(now, Input::Received(&open_setup())).unwrap();
        }
        for c in &chunks {
            now = OwampTime::from_raw(now.raw() + (1 << 30));
            s.handle_input(now, Input::Received(c)).unwrap();
            drain_server(&mut s);
            prop_assert!(s.is_closed() || s.poll_timeout().is_some());
        }
        // Whatever state it is in, the deadline ends it.
        if let Some(d) = s.poll_timeout() {
            s.handle_input(OwampTime::from_raw(d.raw() + 1), Input::Timer).unwrap();
            let outs = drain_server(&mut s);
            prop_assert!(closed_with(&outs).is_some());
        }
    }

    #[test]
    fn client_never_panics(
        greeting in any::<bool>(),
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..8),
    ) {
        let mut c = client();
        drain_client(&mut c);
        let mut now = t0();
        if greeting {
            let mut g = vec![0u8; 64];
            g[15] = 1;
            g[51] = 8;
            c.handle_input(now, Input::Received(&g)).unwrap();
        }
        for ch in &chunks {
            now = OwampTime::from_raw(now.raw() + (1 << 30));
            c.handle_input(now, Input::Received(ch)).unwrap();
            drain_client(&mut c);
            prop_assert!(c.is_closed() || c.poll_timeout().is_some());
        }
    }
}
