//! A whole TWAMP test in memory, in milliseconds: a control client and server speaking TWAMP
//! (open, authenticated, encrypted, RFC 5618 mixed), a session-sender and a session-reflector built from what
//! they agree on, a fake clock, and injected loss, duplication and hops. This is the API a
//! twping/twampd author drives: the test checks what both sides see and that the statistics
//! follow from what was injected.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use owamp_core::control::{
    Client, ClientCommand, ClientConfig, Identity, Mode, Modes, PortRange, Protocol, Role, Server,
    ServerConfig, SessionRequest,
};
use owamp_core::io::{Input, Output, SessionInfo, SessionReport};
use owamp_core::policy::{ClassLimits, Limits};
use owamp_core::session::twamp::{default_padding, Reflector, SessionSender, TwoWayRecord};
use owamp_core::stats::twamp::TwoWaySummary;
use owamp_core::time::{ErrorEstimate, Interval, OwampTime};
use owamp_core::wire::twamp::{with_mixed, MIXED_MODE_BIT};
use owamp_core::wire::{Slot, SlotKind, TypeP};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

const ALICE: &[u8] = b"alice";
const PASS: &[u8] = b"correct horse battery staple";

fn lo(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

fn policy(modes: Modes) -> Limits {
    let p = Limits::new(modes, "regular", ClassLimits::default());
    p.set_passphrase(ALICE, PASS);
    p
}

#[derive(Default)]
struct Seen {
    sent: Vec<u8>,
    accepted: Option<SessionInfo>,
    start: bool,
    stop_local: bool,
    complete: bool,
    closed: bool,
}

fn note(o: Output, seen: &mut Seen) {
    match o {
        Output::SessionAccepted(i) => seen.accepted = Some(*i),
        Output::StartSessions => seen.start = true,
        Output::StopLocalSessions => seen.stop_local = true,
        Output::TestComplete => seen.complete = true,
        Output::Close(_) => seen.closed = true,
        Output::Connected { .. } => {}
        other => panic!("unexpected {other:?}"),
    }
}

struct Pair {
    now: OwampTime,
    client: Client<ChaCha8Rng>,
    server: Server<Limits, ChaCha8Rng>,
    c: Seen,
    s: Seen,
}

/// What the client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice {
    /// One of OWAMP's modes.
    Only(Mode),
    /// RFC 5618 mixed mode.
    Mixed,
}

impl Choice {
    const ALL: [Choice; 4] = [
        Choice::Only(Mode::Open),
        Choice::Only(Mode::Authenticated),
        Choice::Only(Mode::Encrypted),
        Choice::Mixed,
    ];

    fn modes(self) -> Modes {
        match self {
            Choice::Only(m) => Modes::from(m),
            Choice::Mixed => Modes::from_raw(MIXED_MODE_BIT),
        }
    }

    fn packet_mode(self) -> Mode {
        match self {
            Choice::Only(m) => m,
            Choice::Mixed => Mode::Open,
        }
    }

    fn secure(self) -> bool {
        self != Choice::Only(Mode::Open)
    }
}

impl Pair {
    fn with(choice: Choice, offered: Modes) -> Self {
        let now = OwampTime::from_raw(0xeeb2_5d00_0000_0000);
        let server = Server::new(
            now,
            ServerConfig {
                start_time: now,
                test_ports: Some(PortRange {
                    low: 8770,
                    high: 8970,
                }),
                control_timeout: Duration::from_secs(30),
                protocol: Protocol::Twamp,
                ..ServerConfig::default()
            },
            policy(offered),
            ChaCha8Rng::seed_from_u64(1),
            lo(8620),
            lo(9000),
        );
        let client = Client::new(
            now,
            ClientConfig {
                modes: choice.modes(),
                identity: choice.secure().then(|| Identity {
                    key_id: ALICE.to_vec(),
                    passphrase: PASS.to_vec().into(),
                }),
                control_timeout: Duration::from_secs(30),
                protocol: Protocol::Twamp,
                ..ClientConfig::default()
            },
            ChaCha8Rng::seed_from_u64(2),
        );
        let mut p = Self {
            now,
            client,
            server,
            c: Seen::default(),
            s: Seen::default(),
        };
        p.pump();
        p
    }

    /// Carries control octets both ways until both are quiet; the host binds every port the
    /// server asks for.
    fn pump(&mut self) {
        for _ in 0..64 {
            let (mut to_client, mut to_server, mut binds) = (Vec::new(), Vec::new(), Vec::new());
            while let Some(o) = self.server.poll_output() {
                match o {
                    Output::Transmit(b) => to_client.extend_from_slice(&b),
                    Output::PrepareTestEndpoint(e) => {
                        assert_eq!(e.role, Role::Receiver, "the TWAMP server reflects");
                        binds.push((e.sid, e.local.port()));
                    }
                    o => note(o, &mut self.s),
                }
            }
            while let Some(o) = self.client.poll_output() {
                match o {
                    Output::Transmit(b) => to_server.extend_from_slice(&b),
                    o => note(o, &mut self.c),
                }
            }
            if to_client.is_empty() && to_server.is_empty() && binds.is_empty() {
                return;
            }
            self.s.sent.extend_from_slice(&to_client);
            self.c.sent.extend_from_slice(&to_server);
            let now = self.now;
            if !to_client.is_empty() {
                self.client
                    .handle_input(now, Input::Received(&to_client))
                    .unwrap();
            }
            if !to_server.is_empty() {
                self.server
                    .handle_input(now, Input::Received(&to_server))
                    .unwrap();
            }
            for (sid, port) in binds {
                self.server
                    .handle_input(now, Input::EndpointReady { sid, port })
                    .unwrap();
            }
        }
        panic!("control exchange does not settle");
    }
}

/// Runs one test of 20 packets; packet `lost` is lost on the way out, reply `dup` arrives
/// twice; the path has 2 hops out and 3 back.
fn run(choice: Choice, lost: u32, dup: u32) -> (Pair, Vec<TwoWayRecord>, TwoWaySummary) {
    let mut p = Pair::with(choice, with_mixed(Modes::ALL));
    let mode = choice.packet_mode();
    assert_eq!(p.client.packet_mode(), mode);
    assert_eq!(p.server.packet_mode(), mode);
    assert_eq!(p.client.is_mixed(), choice == Choice::Mixed);
    assert_eq!(p.server.is_mixed(), choice == Choice::Mixed);
    let start = p.now.saturating_add_interval(Interval::from_raw(1 << 32));
    let gap = Interval::saturating_from_duration(Duration::from_millis(50));
    let padding = default_padding(mode);
    let req = SessionRequest {
        role: Role::Sender,
        local: lo(9100),
        peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
        slots: vec![Slot {
            kind: SlotKind::Fixed,
            mean: gap,
        }],
        packets: 20,
        padding,
        start_time: start,
        timeout: Interval::from_raw(2 << 32),
        type_p: TypeP::BEST_EFFORT,
    };
    p.client
        .handle_input(p.now, Input::Command(ClientCommand::RequestSession(req)))
        .unwrap();
    p.pump();
    let ci = p.c.accepted.clone().expect("the client's session");
    let si = p.s.accepted.clone().expect("the server's session");
    assert_eq!((ci.role, si.role), (Role::Sender, Role::Receiver));
    assert_eq!(ci.sid, si.sid);
    assert_eq!(
        ci.peer.port(),
        si.local.port(),
        "the client sends to the reflector"
    );
    assert_eq!(si.peer, lo(9100), "the reflector answers the sender");
    assert_eq!((ci.mode, si.mode), (mode, mode), "the test packets' mode");
    let mut sender = SessionSender::new(&ci, vec![0x5a; padding as usize]).unwrap();
    let mut reflector = Reflector::new(&si).unwrap();
    p.client
        .handle_input(p.now, Input::Command(ClientCommand::StartSessions))
        .unwrap();
    p.pump();
    assert!(p.c.start && p.s.start);

    let ee = ErrorEstimate::from_raw(1);
    let us = |n: u64| Interval::saturating_from_duration(Duration::from_micros(n));
    let (mut pkt, mut reply, mut records) = (Vec::new(), Vec::new(), Vec::new());
    let mut t = start;
    for i in 0..20 {
        sender.build(t, ee, &mut pkt).unwrap();
        if i != lost {
            let arrive = t.saturating_add_interval(us(100));
            reflector
                .reflect(
                    arrive,
                    253,
                    &pkt,
                    arrive.saturating_add_interval(us(10)),
                    ee,
                    &mut reply,
                )
                .unwrap();
            assert_eq!(reply.len(), pkt.len(), "same size both ways by default");
            let back = t.saturating_add_interval(us(250));
            let copies = if i == dup { 2 } else { 1 };
            for _ in 0..copies {
                records.push(sender.handle_reply(back, 252, ee, &reply).unwrap());
            }
        }
        t = t.saturating_add_interval(gap);
    }
    // The sender is done: the client sends Stop-Sessions once the loss timeout has passed.
    p.now = t;
    p.client
        .handle_input(
            p.now,
            Input::SessionFinished(SessionReport::completed(ci.sid, 20)),
        )
        .unwrap();
    p.pump();
    assert!(!p.c.complete, "Stop-Sessions waits for the loss timeout");
    let due = p.client.poll_timeout().unwrap();
    p.now = due;
    p.client.handle_input(due, Input::Timer).unwrap();
    p.pump();
    assert!(p.c.complete && p.s.complete && p.s.stop_local);
    assert!(!p.client.in_test() && !p.server.in_test());
    let summary = TwoWaySummary::new(&records, sender.sent());
    (p, records, summary)
}

#[test]
fn a_whole_test_in_every_mode() {
    for mode in Choice::ALL {
        let (p, records, s) = run(mode, 3, 5);
        assert!(!p.c.closed && !p.s.closed);
        // C>S: Set-Up-Response, Request-TW-Session, Start-Sessions, Stop-Sessions (as twping).
        assert_eq!(p.c.sent.len(), 164 + 112 + 32 + 32, "{mode:?}");
        // S>C: Greeting, Server-Start, Accept-Session, Start-Ack; no Stop-Sessions.
        assert_eq!(p.s.sent.len(), 64 + 48 + 48 + 32, "{mode:?}");
        assert_eq!(records.len(), 20);
        assert_eq!(
            (s.sent, s.lost, s.send_duplicates, s.reflect_duplicates),
            (20, 1, 0, 1)
        );
        let rt = s.round_trip.min.unwrap();
        assert!((rt - 240e-6).abs() < 2e-6, "{rt}");
        assert!((s.send.min.unwrap() - 100e-6).abs() < 2e-6);
        assert!((s.reflect.max.unwrap() - 140e-6).abs() < 2e-6);
        assert!((s.processing.max.unwrap() - 10e-6).abs() < 2e-6);
        assert_eq!(s.send_hops.map(|h| (h.min, h.max)), Some((2, 2)));
        assert_eq!(s.reflect_hops.map(|h| (h.min, h.max)), Some((3, 3)));
    }
}

#[test]
fn nothing_lost_nothing_duplicated() {
    let (_, _, s) = run(Choice::Only(Mode::Encrypted), 99, 99);
    assert_eq!((s.lost, s.send_duplicates, s.reflect_duplicates), (0, 0, 0));
    assert_eq!(s.send.jitter(), Some(0.0));
}

/// RFC 5618: the Set-Up-Response says 8, the control stream is encrypted as in authenticated
/// mode, and the test packets have the open layout (14 + 27 octets out, 41 back).
#[test]
fn mixed_mode_encrypts_control_and_opens_packets() {
    let (p, _, _) = run(Choice::Mixed, 99, 99);
    assert_eq!(&p.c.sent[..4], &8u32.to_be_bytes(), "Set-Up-Response Mode");
    assert_eq!(&p.c.sent[4..9], b"alice", "KeyID");
    let open = run(Choice::Only(Mode::Open), 99, 99).0;
    // Request-TW-Session in the clear in open mode, encrypted in mixed mode.
    assert_eq!(open.c.sent[164], 5);
    assert_ne!(&p.c.sent[164..276], &open.c.sent[164..276]);
    assert_eq!(default_padding(Choice::Mixed.packet_mode()), 27);
}

/// A client that prefers stronger modes still picks them; one that offers only mixed mode gets
/// it only from a server that offers the bit, and no identity means no mixed mode.
#[test]
fn mixed_mode_choice() {
    let both = with_mixed(Modes::from(Mode::Authenticated));
    let mut p = Pair::with(Choice::Mixed, both);
    assert!(p.client.is_mixed());
    p.pump();
    assert!(!p.c.closed);

    // Offered E, A, M, O and asked for A and M: authenticated wins.
    let now = OwampTime::from_raw(0xeeb2_5d00_0000_0000);
    let mut c = Client::new(
        now,
        ClientConfig {
            modes: with_mixed(Modes::AUTHENTICATED | Modes::OPEN),
            identity: Some(Identity {
                key_id: ALICE.to_vec(),
                passphrase: PASS.to_vec().into(),
            }),
            protocol: Protocol::Twamp,
            ..ClientConfig::default()
        },
        ChaCha8Rng::seed_from_u64(3),
    );
    let mut greeting = vec![0u8; 64];
    greeting[12..16].copy_from_slice(&15u32.to_be_bytes());
    greeting[48..52].copy_from_slice(&1024u32.to_be_bytes());
    c.handle_input(now, Input::Received(&greeting)).unwrap();
    assert_eq!((c.mode(), c.is_mixed()), (Mode::Authenticated, false));

    // A server without the bit: a mixed-only client finds no common mode.
    let q = Pair::with(Choice::Mixed, Modes::ALL);
    assert!(q.c.closed, "no common mode");
}
