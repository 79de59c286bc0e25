//! Requests a hostile client can send that the server must refuse before any resource sized by
//! them is given out.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use owamp_core::control::{
    AcceptCode, Client, ClientCommand, ClientConfig, Role, Server, ServerConfig, SessionRequest,
};
use owamp_core::io::{Input, Output};
use owamp_core::policy::AllowAll;
use owamp_core::time::Interval;
use owamp_core::time::OwampTime;
use owamp_core::wire::{Slot, SlotKind, TypeP};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

type TestServer = Server<AllowAll, ChaCha20Rng>;
type TestClient = Client<ChaCha20Rng>;

fn t0() -> OwampTime {
    OwampTime::from_raw(0xeeb2_5d00_0000_0000)
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

/// What the server asked the application for while the two machines talked.
#[derive(Default)]
struct Seen {
    endpoints: usize,
    rejected: Vec<AcceptCode>,
    accepted: usize,
}

/// Moves octets between the two machines until neither has anything to say; answers the
/// server's endpoint requests with the port asked for.
fn pump(s: &mut TestServer, c: &mut TestClient, seen: &mut Seen) {
    for _ in 0..100 {
        let mut quiet = true;
        while let Some(o) = s.poll_output() {
            match o {
                Output::Transmit(b) => {
                    quiet = false;
                    c.handle_input(t0(), Input::Received(&b)).unwrap();
                }
                Output::PrepareTestEndpoint(e) => {
                    quiet = false;
                    seen.endpoints += 1;
                    let port = e.local.port().max(9000);
                    s.handle_input(t0(), Input::EndpointReady { sid: e.sid, port })
                        .unwrap();
                }
                _ => {}
            }
        }
        while let Some(o) = c.poll_output() {
            match o {
                Output::Transmit(b) => {
                    quiet = false;
                    s.handle_input(t0(), Input::Received(&b)).unwrap();
                }
                Output::SessionRejected { accept } => seen.rejected.push(accept),
                Output::SessionAccepted(_) => seen.accepted += 1,
                _ => {}
            }
        }
        if quiet {
            return;
        }
    }
    panic!("the machines never went quiet");
}

fn connected() -> (TestServer, TestClient, Seen) {
    let cfg = ServerConfig {
        control_timeout: Duration::from_secs(10),
        ..ServerConfig::default()
    };
    let mut s = Server::new(
        t0(),
        cfg,
        AllowAll,
        ChaCha20Rng::seed_from_u64(1),
        addr(861),
        addr(40000),
    );
    let mut c = Client::new(
        t0(),
        ClientConfig {
            control_timeout: Duration::from_secs(10),
            ..ClientConfig::default()
        },
        ChaCha20Rng::seed_from_u64(2),
    );
    let mut seen = Seen::default();
    pump(&mut s, &mut c, &mut seen);
    assert!(c.is_ready());
    (s, c, seen)
}

fn request(role: Role, padding: u32) -> SessionRequest {
    SessionRequest {
        role,
        local: addr(40001),
        peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
        slots: vec![Slot {
            kind: SlotKind::Exponential,
            mean: Interval::from_raw(1 << 28),
        }],
        packets: 10,
        padding,
        start_time: t0(),
        timeout: Interval::from_raw(2 << 32),
        type_p: TypeP::BEST_EFFORT,
    }
}

#[test]
fn padding_beyond_a_udp_datagram_is_refused_before_an_endpoint_is_made() {
    for role in [Role::Sender, Role::Receiver] {
        // The largest open-mode IPv4 packet still fits: 14 + 65493 = 65507 octets.
        let (mut s, mut c, mut seen) = connected();
        c.handle_input(
            t0(),
            Input::Command(ClientCommand::RequestSession(request(role, 65_493))),
        )
        .unwrap();
        pump(&mut s, &mut c, &mut seen);
        assert_eq!((seen.endpoints, seen.accepted), (1, 1), "{role:?}");

        // One octet more, or a padding of gigabytes: refused, no endpoint asked for.
        for padding in [65_494, u32::MAX] {
            let (mut s, mut c, mut seen) = connected();
            c.handle_input(
                t0(),
                Input::Command(ClientCommand::RequestSession(request(role, padding))),
            )
            .unwrap();
            pump(&mut s, &mut c, &mut seen);
            assert_eq!(seen.endpoints, 0, "{role:?} padding {padding}");
            assert_eq!(
                seen.rejected,
                vec![AcceptCode::NotSupported],
                "{role:?} padding {padding}"
            );
            // The connection stays usable.
            assert!(c.is_ready());
        }
    }
}

#[test]
fn open_mode_server_never_sends_to_a_third_party() {
    // The client asks the server to send (it receives), naming another host as the receiver:
    // plainly, and as an IPv4-mapped IPv6 address of it.
    let v4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped());
    let mapped_peer = IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped());
    for (local, peer) in [(v4, IpAddr::V4(Ipv4Addr::LOCALHOST)), (mapped, mapped_peer)] {
        let (mut s, mut c, mut seen) = connected();
        let req = SessionRequest {
            local: SocketAddr::new(local, 40001),
            peer,
            ..request(Role::Receiver, 0)
        };
        c.handle_input(t0(), Input::Command(ClientCommand::RequestSession(req)))
            .unwrap();
        pump(&mut s, &mut c, &mut seen);
        assert_eq!(seen.endpoints, 0, "{local}");
        assert_eq!(seen.rejected, vec![AcceptCode::Failure], "{local}");
    }
}

#[test]
fn a_client_trickling_one_octet_a_second_is_closed_at_the_control_timeout() {
    let cfg = ServerConfig {
        control_timeout: Duration::from_secs(10),
        ..ServerConfig::default()
    };
    let mut s = Server::new(
        t0(),
        cfg,
        AllowAll,
        ChaCha20Rng::seed_from_u64(1),
        addr(861),
        addr(40000),
    );
    // A valid open-mode Set-Up-Response, one octet a second: it would take 164 s.
    let mut setup = [0u8; 164];
    setup[3] = 1;
    let mut closed_at = None;
    for (i, b) in setup.iter().enumerate() {
        let now = OwampTime::from_raw(t0().raw() + ((i as u64) << 32));
        if s.poll_timeout().is_some_and(|d| now >= d) {
            s.handle_input(now, Input::Timer).unwrap();
        }
        if s.is_closed() {
            closed_at = Some(i);
            break;
        }
        s.handle_input(now, Input::Received(std::slice::from_ref(b)))
            .unwrap();
        while s.poll_output().is_some() {}
    }
    assert_eq!(closed_at, Some(10));
}

#[test]
fn a_receive_session_beyond_the_packet_cap_is_refused_before_an_endpoint_is_made() {
    let cap = ServerConfig::default().max_receive_packets;
    // The server receives when the client sends.
    let at_cap = SessionRequest {
        packets: cap,
        ..request(Role::Sender, 0)
    };
    let (mut s, mut c, mut seen) = connected();
    c.handle_input(t0(), Input::Command(ClientCommand::RequestSession(at_cap)))
        .unwrap();
    pump(&mut s, &mut c, &mut seen);
    assert_eq!((seen.endpoints, seen.accepted), (1, 1));

    for packets in [cap + 1, u32::MAX] {
        let (mut s, mut c, mut seen) = connected();
        let req = SessionRequest {
            packets,
            ..request(Role::Sender, 0)
        };
        c.handle_input(t0(), Input::Command(ClientCommand::RequestSession(req)))
            .unwrap();
        pump(&mut s, &mut c, &mut seen);
        assert_eq!(seen.endpoints, 0, "{packets} packets");
        assert_eq!(seen.rejected, vec![AcceptCode::PermanentResourceLimit]);
        assert!(c.is_ready());
    }

    // The cap is the server's to receive: it may still send that many.
    let (mut s, mut c, mut seen) = connected();
    let req = SessionRequest {
        packets: cap + 1,
        ..request(Role::Receiver, 0)
    };
    c.handle_input(t0(), Input::Command(ClientCommand::RequestSession(req)))
        .unwrap();
    pump(&mut s, &mut c, &mut seen);
    assert_eq!((seen.endpoints, seen.accepted), (1, 1));
}

/// Feeds the server `n` octets in 1 KiB pieces while it waits for the application to bind a
/// test socket (when a well-behaved client waits for Accept-Session) and says whether it closed.
fn server_closes_after_out_of_turn_octets(n: usize) -> bool {
    let (mut s, mut c, _) = connected();
    c.handle_input(
        t0(),
        Input::Command(ClientCommand::RequestSession(request(Role::Sender, 0))),
    )
    .unwrap();
    let mut asked = false;
    while let Some(o) = c.poll_output() {
        if let Output::Transmit(b) = o {
            s.handle_input(t0(), Input::Received(&b)).unwrap();
        }
    }
    while let Some(o) = s.poll_output() {
        asked |= matches!(o, Output::PrepareTestEndpoint(_));
    }
    assert!(asked, "the server should be waiting for its endpoint");
    let chunk = [0u8; 1024];
    let mut sent = 0;
    while sent < n {
        let k = chunk.len().min(n - sent);
        s.handle_input(t0(), Input::Received(&chunk[..k])).unwrap();
        sent += k;
    }
    let mut closed = false;
    while let Some(o) = s.poll_output() {
        if let Output::Close(r) = o {
            assert!(
                matches!(r, owamp_core::control::CloseReason::Protocol(_)),
                "{r:?}"
            );
            closed = true;
        }
    }
    assert_eq!(closed, s.is_closed());
    closed
}

#[test]
fn octets_sent_out_of_turn_are_bounded() {
    // A few messages' worth is held until the server reads on.
    assert!(!server_closes_after_out_of_turn_octets(4 * 1024));
    // A stream of them is not.
    assert!(server_closes_after_out_of_turn_octets(1024 * 1024));
}
