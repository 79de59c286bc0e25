//! A TWAMP client [`Connection`](owamp_core::connection::Connection) and a TWAMP server
//! connection wired together in memory with a virtual clock, as `connection_pair.rs` does for
//! OWAMP: whole two-way tests through the one contract a host drives (octets, datagrams and
//! time in; control octets, socket actions and events out), in open, authenticated, encrypted
//! and mixed (RFC 5618) modes, with loss, duplication and reordering injected on the test
//! packets' way out and back. Nothing is built by hand on SessionAccepted: the server's
//! connection reflects, the client's sends on its schedule and hands out two-way records.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use owamp_core::connection::{
    ClientConnection, ClientEvent, ControlAction, Output, ServerConnection, ServerEvent,
    SocketAction, SocketId, TwoWayEnd,
};
use owamp_core::control::{
    ClientConfig, CloseReason, ControlError, Identity, Mode, Modes, PortRange, Protocol, Role,
    ServerConfig, SessionRequest,
};
use owamp_core::io::SessionInfo;
use owamp_core::policy::{ClassLimits, Limits};
use owamp_core::session::twamp::{default_padding, TwoWayRecord};
use owamp_core::session::{Datagram, DatagramOutcome};
use owamp_core::stats::twamp::TwoWaySummary;
use owamp_core::time::{Interval, OwampTime};
use owamp_core::wire::twamp::{with_mixed, MIXED_MODE_BIT};
use owamp_core::wire::{ReflectorPacket, Slot, SlotKind, TestPacket, TypeP};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

const ALICE: &[u8] = b"alice";
const PASS: &[u8] = b"correct horse battery staple";
const CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const SERVER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// The path: 2 hops out, 3 back (TTLs as received from senders that send with 255).
const TTL_OUT: u8 = 253;
const TTL_BACK: u8 = 252;
/// The one-way delay of every datagram before jitter.
const BASE_DELAY: Duration = Duration::from_millis(5);

fn t0() -> OwampTime {
    OwampTime::from_raw(0xeeb2_5d00_0000_0000)
}

fn after(t: OwampTime, d: Duration) -> OwampTime {
    t.saturating_add(d)
}

/// What the client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice {
    Only(Mode),
    /// RFC 5618 mixed mode: authenticated control, open test packets.
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Side {
    Client,
    Server,
}

#[derive(Debug)]
enum Flight {
    Control(Side, Vec<u8>),
    Datagram {
        to: SocketAddr,
        from: SocketAddr,
        ttl: u8,
        bytes: Vec<u8>,
    },
}

#[derive(Debug, Clone, Copy)]
struct Plan {
    packets: u32,
    /// Mean gap between the client's packets (exponential schedule).
    interval: Duration,
    /// Drop every n-th test packet on its way out (0: none).
    drop_out_every: u64,
    /// Drop every n-th reply on its way back (0: none).
    drop_back_every: u64,
    /// Deliver every n-th test packet twice (0: none).
    dup_out_every: u64,
    /// Deliver every n-th reply twice (0: none).
    dup_back_every: u64,
    /// Up to this much random delay on top of [`BASE_DELAY`], per datagram: reordering when
    /// larger than the gap between packets.
    jitter: Duration,
    /// The client stops the test early after this many replies.
    stop_after: Option<usize>,
    /// The server shuts the connection after this many packets reflected.
    server_closes_after: Option<u64>,
    /// The client keeps the connection open after the test.
    keep_open: bool,
    /// The request names no addresses (zeros, RFC 4656 3.5; twping's -Z), and the client's
    /// connection knows the control connection's.
    unaddressed: bool,
}

impl Default for Plan {
    fn default() -> Self {
        Self {
            packets: 100,
            interval: Duration::from_millis(10),
            drop_out_every: 0,
            drop_back_every: 0,
            dup_out_every: 0,
            dup_back_every: 0,
            jitter: Duration::ZERO,
            stop_after: None,
            server_closes_after: None,
            keep_open: false,
            unaddressed: false,
        }
    }
}

#[derive(Default)]
struct Outcome {
    client_events: Vec<String>,
    server_events: Vec<String>,
    client_info: Option<SessionInfo>,
    server_info: Option<SessionInfo>,
    records: Vec<TwoWayRecord>,
    batches: usize,
    end: Option<TwoWayEnd>,
    /// Events after the end that should not come.
    records_after_end: usize,
    client_closed: Option<CloseReason>,
    server_closed: Option<CloseReason>,
    /// Control octets each side sent.
    control_sent: HashMap<Side, usize>,
    /// Lengths of the test packets and replies sent.
    out_lens: Vec<usize>,
    back_lens: Vec<usize>,
    drops_out: u64,
    drops_back: u64,
    dups_out: u64,
    dups_back: u64,
    reflected: u64,
    /// What the client's connection made of each reply.
    reply_outcomes: Vec<DatagramOutcome>,
    open_sockets: usize,
    completed: bool,
}

struct Pair {
    now: OwampTime,
    client: ClientConnection<ChaCha8Rng>,
    server: ServerConnection<Limits, ChaCha8Rng>,
    flights: BTreeMap<(OwampTime, u64), Flight>,
    seq: u64,
    sockets: HashMap<SocketAddr, (Side, SocketId)>,
    addrs: HashMap<(Side, SocketId), SocketAddr>,
    next_port: u16,
    plan: Plan,
    choice: Choice,
    rng: ChaCha8Rng,
    out_count: u64,
    back_count: u64,
    /// The client's last test packet: source, destination, octets.
    last_out: Option<(SocketAddr, SocketAddr, Vec<u8>)>,
    out: Outcome,
}

fn policy(modes: Modes) -> Limits {
    let p = Limits::new(
        modes,
        "regular",
        ClassLimits {
            bandwidth_bps: 20_000_000,
            disk_octets: 0,
            allow_open_mode: true,
        },
    );
    p.set_passphrase(ALICE, PASS);
    p
}

impl Pair {
    fn new(choice: Choice, plan: Plan) -> Self {
        Self::offering(choice, with_mixed(Modes::ALL), plan)
    }

    fn offering(choice: Choice, offered: Modes, plan: Plan) -> Self {
        let now = t0();
        let ccfg = ClientConfig {
            modes: choice.modes(),
            identity: (choice != Choice::Only(Mode::Open)).then(|| Identity {
                key_id: ALICE.to_vec(),
                passphrase: PASS.into(),
            }),
            control_timeout: Duration::from_secs(30),
            end_delay: Duration::from_millis(100),
            protocol: Protocol::Twamp,
            ..ClientConfig::default()
        };
        let scfg = ServerConfig {
            start_time: now,
            test_ports: Some(PortRange {
                low: 8760,
                high: 8960,
            }),
            control_timeout: Duration::from_secs(30),
            kdf_count: 1024,
            protocol: Protocol::Twamp,
            ..ServerConfig::default()
        };
        let mut client = ClientConnection::client(now, ccfg, ChaCha8Rng::seed_from_u64(1));
        if plan.unaddressed {
            client = client.with_control_addresses(CLIENT_IP, SERVER_IP);
        }
        let server = ServerConnection::server(
            now,
            scfg,
            policy(offered),
            ChaCha8Rng::seed_from_u64(2),
            SocketAddr::new(SERVER_IP, 862),
            SocketAddr::new(CLIENT_IP, 40000),
        );
        Self {
            now,
            client,
            server,
            flights: BTreeMap::new(),
            seq: 0,
            sockets: HashMap::new(),
            addrs: HashMap::new(),
            next_port: 30000,
            plan,
            choice,
            rng: ChaCha8Rng::seed_from_u64(3),
            out_count: 0,
            back_count: 0,
            last_out: None,
            out: Outcome::default(),
        }
    }

    fn ship(&mut self, at: OwampTime, f: Flight) {
        self.seq += 1;
        self.flights.insert((at, self.seq), f);
    }

    fn request(&mut self) {
        let req = self.session_request();
        self.client.request_session(req).unwrap();
    }

    fn session_request(&self) -> SessionRequest {
        let mode = self.choice.packet_mode();
        let (local, peer) = if self.plan.unaddressed {
            let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
            (any, any)
        } else {
            (CLIENT_IP, SERVER_IP)
        };
        SessionRequest {
            role: Role::Sender,
            local: SocketAddr::new(local, 0),
            peer,
            slots: vec![Slot {
                kind: SlotKind::Exponential,
                mean: Interval::saturating_from_duration(self.plan.interval),
            }],
            packets: self.plan.packets,
            padding: default_padding(mode),
            start_time: after(self.now, Duration::from_secs(1)),
            timeout: Interval::from_raw(2 << 32),
            type_p: TypeP::BEST_EFFORT,
        }
    }

    fn open_socket(&mut self, side: Side, id: SocketId, local: SocketAddr) -> u16 {
        let port = if local.port() == 0 {
            self.next_port += 1;
            self.next_port
        } else {
            local.port()
        };
        let addr = SocketAddr::new(local.ip(), port);
        if let Some(old) = self.addrs.insert((side, id), addr) {
            self.sockets.remove(&old);
        }
        self.sockets.insert(addr, (side, id));
        port
    }

    fn close_socket(&mut self, side: Side, id: SocketId) {
        if let Some(a) = self.addrs.remove(&(side, id)) {
            self.sockets.remove(&a);
        }
    }

    fn pump(&mut self) {
        loop {
            let mut busy = self.transmit(Side::Client);
            busy |= self.transmit(Side::Server);
            while let Some(o) = self.client.poll_output() {
                busy = true;
                self.client_output(o);
            }
            while let Some(o) = self.server.poll_output() {
                busy = true;
                self.server_output(o);
            }
            if !busy {
                break;
            }
        }
    }

    /// Sends every test packet (client) or reply (server) due, through the lossy path.
    fn transmit(&mut self, side: Side) -> bool {
        let mut buf = [0u8; 2048];
        let mut any = false;
        loop {
            let now = self.now;
            let t = match side {
                Side::Client => self.client.poll_transmit(now, &mut buf),
                Side::Server => self.server.poll_transmit(now, &mut buf),
            };
            let Some(t) = t else { break };
            any = true;
            let from = self.addrs[&(side, t.socket)];
            let bytes = buf[..t.transmit.len].to_vec();
            if side == Side::Client {
                self.last_out = Some((from, t.transmit.dest, bytes.clone()));
            }
            let (n, drop_every, dup_every, ttl) = match side {
                Side::Client => {
                    self.out_count += 1;
                    self.out.out_lens.push(bytes.len());
                    (
                        self.out_count,
                        self.plan.drop_out_every,
                        self.plan.dup_out_every,
                        TTL_OUT,
                    )
                }
                Side::Server => {
                    self.back_count += 1;
                    self.out.reflected += 1;
                    self.out.back_lens.push(bytes.len());
                    if self.plan.server_closes_after == Some(self.out.reflected) {
                        self.server.close(now);
                    }
                    (
                        self.back_count,
                        self.plan.drop_back_every,
                        self.plan.dup_back_every,
                        TTL_BACK,
                    )
                }
            };
            if drop_every > 0 && n % drop_every == 0 {
                match side {
                    Side::Client => self.out.drops_out += 1,
                    Side::Server => self.out.drops_back += 1,
                }
                continue;
            }
            let copies = if dup_every > 0 && n % dup_every == 0 {
                match side {
                    Side::Client => self.out.dups_out += 1,
                    Side::Server => self.out.dups_back += 1,
                }
                2
            } else {
                1
            };
            for _ in 0..copies {
                let jitter = match self.plan.jitter.as_micros() as u64 {
                    0 => 0,
                    j => self.rng.next_u64() % j,
                };
                let at = after(now, BASE_DELAY + Duration::from_micros(jitter));
                self.ship(
                    at,
                    Flight::Datagram {
                        to: t.transmit.dest,
                        from,
                        ttl,
                        bytes: bytes.clone(),
                    },
                );
            }
        }
        any
    }

    fn control(&mut self, from: Side, b: Vec<u8>) {
        *self.out.control_sent.entry(from).or_default() += b.len();
        let to = match from {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        };
        let at = after(self.now, Duration::from_millis(1));
        self.ship(at, Flight::Control(to, b));
    }

    fn client_output(&mut self, o: Output<ClientEvent>) {
        match o {
            Output::Control(ControlAction::Transmit(b)) => self.control(Side::Client, b),
            Output::Control(ControlAction::Close(r)) => {
                self.out.client_closed = Some(r);
                self.control(Side::Client, Vec::new());
            }
            Output::Socket(SocketAction::Open { id, local, .. }) => {
                let port = self.open_socket(Side::Client, id, local);
                self.client.socket_opened(self.now, id, Ok(port));
            }
            Output::Socket(SocketAction::Close(id)) => self.close_socket(Side::Client, id),
            Output::Socket(_) => {}
            Output::Store(_) | Output::Stream(_) => panic!("a TWAMP client stores nothing"),
            Output::Event(e) => {
                let name = format!("{e:?}");
                self.out
                    .client_events
                    .push(name.split([' ', '(', '{']).next().unwrap_or("").to_string());
                match e {
                    ClientEvent::Connected { .. } => {
                        // The TWAMP control-client only sends (RFC 5357 3.5): refused at once,
                        // before any socket is opened.
                        let mut wrong = self.session_request();
                        wrong.role = Role::Receiver;
                        assert!(matches!(
                            self.client.request_session(wrong),
                            Err(ControlError::InvalidRequest(_))
                        ));
                        self.request()
                    }
                    ClientEvent::SessionAccepted(info) => {
                        self.out.client_info = Some(*info);
                        self.client.start_sessions(self.now).unwrap();
                    }
                    ClientEvent::TwoWayRecords { sid, records } => {
                        assert_eq!(Some(sid), self.out.client_info.as_ref().map(|i| i.sid));
                        assert!(!records.is_empty());
                        if self.out.end.is_some() {
                            self.out.records_after_end += records.len();
                        }
                        self.out.batches += 1;
                        self.out.records.extend(records);
                        if self
                            .plan
                            .stop_after
                            .is_some_and(|n| self.out.records.len() >= n)
                            && self.client.in_test()
                        {
                            self.client.stop_sessions(self.now).unwrap();
                        }
                    }
                    ClientEvent::TwoWayEnd(end) => {
                        assert!(self.out.end.is_none(), "ended twice");
                        self.out.end = Some(*end);
                    }
                    ClientEvent::TestComplete => {
                        self.out.completed = true;
                        // TWAMP has no Fetch-Session (RFC 5357 3.4).
                        let sid = self.out.end.as_ref().expect("ended first").sid;
                        assert!(matches!(
                            self.client.fetch(self.now, sid, 0, u32::MAX),
                            Err(ControlError::InvalidRequest(_))
                        ));
                        if !self.plan.keep_open {
                            self.client.close(self.now);
                        }
                    }
                    ClientEvent::SessionRejected { .. } => self.client.close(self.now),
                    _ => {}
                }
            }
        }
    }

    fn server_output(&mut self, o: Output<ServerEvent>) {
        match o {
            Output::Control(ControlAction::Transmit(b)) => self.control(Side::Server, b),
            Output::Control(ControlAction::Close(r)) => {
                self.out.server_closed = Some(r);
                self.control(Side::Server, Vec::new());
            }
            Output::Socket(SocketAction::Open { id, local, .. }) => {
                let port = self.open_socket(Side::Server, id, local);
                self.server.socket_opened(self.now, id, Ok(port));
            }
            Output::Socket(SocketAction::Close(id)) => self.close_socket(Side::Server, id),
            Output::Socket(_) => {}
            Output::Store(_) | Output::Stream(_) => panic!("a reflector stores nothing"),
            Output::Event(e) => {
                let name = format!("{e:?}");
                self.out
                    .server_events
                    .push(name.split([' ', '(', '{']).next().unwrap_or("").to_string());
                if let ServerEvent::SessionAccepted(info) = e {
                    self.out.server_info = Some(*info);
                }
            }
        }
    }

    fn deliver(&mut self, f: Flight) {
        let now = self.now;
        match f {
            Flight::Control(Side::Client, b) if b.is_empty() => {
                self.client.handle_control_closed(now)
            }
            Flight::Control(Side::Client, b) => self.client.handle_control(now, &b),
            Flight::Control(Side::Server, b) if b.is_empty() => {
                self.server.handle_control_closed(now)
            }
            Flight::Control(Side::Server, b) => self.server.handle_control(now, &b),
            Flight::Datagram {
                to,
                from,
                ttl,
                bytes,
            } => {
                let Some(&(side, id)) = self.sockets.get(&to) else {
                    return;
                };
                let d = Datagram {
                    source: from,
                    recv_time: now,
                    ttl: Some(ttl),
                    truncated: false,
                    payload: &bytes,
                };
                match side {
                    Side::Client => {
                        let o = self.client.handle_datagram(now, id, &d);
                        self.out.reply_outcomes.push(o);
                    }
                    Side::Server => {
                        self.server.handle_datagram(now, id, &d);
                    }
                }
            }
        }
    }

    fn run(mut self) -> Outcome {
        let end = after(self.now, Duration::from_secs(120));
        self.pump();
        let mut steps = 0u32;
        while self.now < end && !(self.client.is_closed() && self.server.is_closed()) {
            steps += 1;
            assert!(
                steps < 1_000_000,
                "no progress: {:?}",
                self.out.client_events
            );
            if !self.step(None) {
                break;
            }
        }
        self.out.open_sockets = self.sockets.len();
        self.out
    }

    /// Advances to the next thing to happen (not past `until`) and carries it out; `false`
    /// when nothing is left to happen.
    fn step(&mut self, until: Option<OwampTime>) -> bool {
        {
            let next = [self.client.poll_timeout(), self.server.poll_timeout()]
                .iter()
                .flatten()
                .map(|t| t.at)
                .chain(self.flights.keys().next().map(|k| k.0))
                .chain(until)
                .min();
            let Some(next) = next else { return false };
            self.now = self.now.max(next);
            while let Some(e) = self.flights.first_entry() {
                if e.key().0 > self.now {
                    break;
                }
                let f = e.remove();
                self.deliver(f);
                self.pump();
            }
            if self.client.poll_timeout().is_some_and(|t| t.at <= self.now) {
                self.client.handle_timeout(self.now);
            }
            if self.server.poll_timeout().is_some_and(|t| t.at <= self.now) {
                self.server.handle_timeout(self.now);
            }
            self.pump();
        }
        true
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Checks what every complete run must show, and returns the summary.
fn check_complete(choice: Choice, plan: Plan, out: &Outcome) -> TwoWaySummary {
    let ev = &out.client_events;
    assert_eq!(out.client_closed, Some(CloseReason::Local), "{ev:?}");
    assert!(out.completed, "{ev:?}");
    assert_eq!(out.open_sockets, 0, "every test socket closed");
    assert_eq!(out.records_after_end, 0);
    // The client's events, in order.
    let first = |name: &str| ev.iter().position(|e| e == name).expect(name);
    assert!(first("Connected") < first("SessionAccepted"));
    assert!(first("SessionAccepted") < first("Started"));
    assert!(first("Started") < first("TwoWayRecords"));
    assert!(first("TwoWayEnd") < first("TestComplete"), "{ev:?}");
    assert_eq!(
        out.server_events,
        ["SessionAccepted", "Started", "TestComplete"]
    );
    let (ci, si) = (
        out.client_info.as_ref().unwrap(),
        out.server_info.as_ref().unwrap(),
    );
    assert_eq!((ci.role, si.role), (Role::Sender, Role::Receiver));
    assert_eq!(ci.sid, si.sid);
    let mode = choice.packet_mode();
    assert_eq!((ci.mode, si.mode), (mode, mode), "the test packets' mode");
    // C>S: Set-Up-Response, Request-TW-Session, Start-Sessions, Stop-Sessions (as twping);
    // S>C: Greeting, Server-Start, Accept-Session, Start-Ack and no Stop-Sessions.
    assert_eq!(out.control_sent[&Side::Client], 164 + 112 + 32 + 32);
    assert_eq!(out.control_sent[&Side::Server], 64 + 48 + 48 + 32);
    // The default padding makes both directions carry packets of one size.
    let len = ReflectorPacket::header_len(mode);
    assert_eq!(
        TestPacket::header_len(mode) + default_padding(mode) as usize,
        len
    );
    assert!(out.out_lens.iter().chain(&out.back_lens).all(|&l| l == len));
    let end = out.end.as_ref().expect("the session's end");
    assert!(end.complete);
    assert_eq!(end.sid, ci.sid);
    assert!(end.skips.is_empty());
    assert_eq!(end.sent as usize, out.out_lens.len());
    if plan.stop_after.is_none() {
        assert_eq!(end.sent, plan.packets);
    }
    TwoWaySummary::new(&out.records, end.sent)
}

fn check_delays(s: &TwoWaySummary, jitter: Duration) {
    let lo = secs(BASE_DELAY) - 2e-6;
    let hi = secs(BASE_DELAY + jitter) + 2e-6;
    for d in [&s.send, &s.reflect] {
        assert!(d.min.unwrap() >= lo && d.max.unwrap() <= hi, "{d:?}");
    }
    // The reply leaves in the same turn as the packet is handed over.
    assert!(s.processing.max.unwrap().abs() < 2e-6);
    assert!(s.round_trip.min.unwrap() >= 2.0 * lo);
    assert_eq!(s.send_hops.map(|h| (h.min, h.max)), Some((2, 2)));
    assert_eq!(s.reflect_hops.map(|h| (h.min, h.max)), Some((3, 3)));
}

#[test]
fn a_whole_test_in_every_mode() {
    for choice in Choice::ALL {
        let plan = Plan::default();
        let out = Pair::new(choice, plan).run();
        let s = check_complete(choice, plan, &out);
        assert_eq!((s.sent, s.lost), (100, 0), "{choice:?}");
        assert_eq!((s.send_duplicates, s.reflect_duplicates), (0, 0));
        assert_eq!(out.records.len(), 100);
        check_delays(&s, Duration::ZERO);
        // One reply per packet, with the reflector's own sequence numbers in order.
        let mut refl: Vec<u32> = out.records.iter().map(|r| r.reflector_seq).collect();
        refl.sort_unstable();
        assert_eq!(refl, (0..100).collect::<Vec<_>>());
        // The reflector stamps the receive time it was handed and the TTL it saw.
        assert!(out.records.iter().all(|r| r.sender_ttl == TTL_OUT));
        assert!(out.reply_outcomes.iter().all(|o| matches!(
            o,
            DatagramOutcome::Accepted {
                duplicate: false,
                ..
            }
        )));
    }
}

/// A request without addresses (RFC 4656 3.5: zeros stand for the control connection's):
/// the client's socket is bound on its control address, the session tests between the
/// control connection's addresses, and the request keeps its zeros.
#[test]
fn a_request_without_addresses() {
    let choice = Choice::Only(Mode::Open);
    let plan = Plan {
        unaddressed: true,
        ..Plan::default()
    };
    let out = Pair::new(choice, plan).run();
    let s = check_complete(choice, plan, &out);
    assert_eq!((s.sent, s.lost), (100, 0));
    let ci = out.client_info.as_ref().unwrap();
    assert_eq!((ci.local.ip(), ci.peer.ip()), (CLIENT_IP, SERVER_IP));
    assert!(ci.request.sender_address.is_unspecified());
    assert!(ci.request.receiver_address.is_unspecified());
    assert_ne!(ci.local.port(), 0);
}

#[test]
fn loss_both_ways_in_every_mode() {
    for choice in Choice::ALL {
        let plan = Plan {
            drop_out_every: 7,
            drop_back_every: 11,
            ..Plan::default()
        };
        let out = Pair::new(choice, plan).run();
        let s = check_complete(choice, plan, &out);
        assert!(out.drops_out > 0 && out.drops_back > 0);
        // Each drop loses a different packet: no duplicates here.
        assert_eq!(
            u64::from(s.lost),
            out.drops_out + out.drops_back,
            "{choice:?}"
        );
        assert_eq!(out.records.len() as u32, 100 - s.lost);
        check_delays(&s, Duration::ZERO);
    }
}

#[test]
fn duplicates_both_ways_in_every_mode() {
    for choice in Choice::ALL {
        let plan = Plan {
            dup_out_every: 9,
            dup_back_every: 13,
            ..Plan::default()
        };
        let out = Pair::new(choice, plan).run();
        let s = check_complete(choice, plan, &out);
        assert_eq!(s.lost, 0);
        // A packet delivered twice is reflected twice (two reflector sequence numbers); a
        // reply delivered twice is the same reply twice.
        assert_eq!(u64::from(s.send_duplicates), out.dups_out, "{choice:?}");
        assert_eq!(u64::from(s.reflect_duplicates), out.dups_back, "{choice:?}");
        let dups = out
            .reply_outcomes
            .iter()
            .filter(|o| {
                matches!(
                    o,
                    DatagramOutcome::Accepted {
                        duplicate: true,
                        ..
                    }
                )
            })
            .count() as u64;
        assert_eq!(dups, out.dups_out + out.dups_back);
    }
}

/// Up to 40 ms of jitter on packets 10 ms apart: replies come back out of order, and the
/// statistics still follow from what was sent.
#[test]
fn reordering_and_loss_in_every_mode() {
    for choice in Choice::ALL {
        let jitter = Duration::from_millis(40);
        let plan = Plan {
            packets: 300,
            drop_out_every: 17,
            drop_back_every: 19,
            jitter,
            ..Plan::default()
        };
        let out = Pair::new(choice, plan).run();
        let s = check_complete(choice, plan, &out);
        let seqs: Vec<u32> = out.records.iter().map(|r| r.sender_seq).collect();
        assert!(
            seqs.windows(2).any(|w| w[1] < w[0]),
            "replies arrived in order: no reordering exercised"
        );
        assert_eq!(
            u64::from(s.lost),
            out.drops_out + out.drops_back,
            "{choice:?}"
        );
        check_delays(&s, jitter);
        assert!(s.send.max.unwrap() > s.send.min.unwrap() + 0.01);
    }
}

/// Replies are handed out as they come, in batches (at least every second), not only at the
/// end.
#[test]
fn replies_come_in_batches_during_the_test() {
    let plan = Plan {
        packets: 500,
        ..Plan::default()
    };
    let out = Pair::new(Choice::Only(Mode::Encrypted), plan).run();
    check_complete(Choice::Only(Mode::Encrypted), plan, &out);
    // About five seconds of replies.
    assert!(out.batches >= 4, "{}", out.batches);
}

/// The client stops early: Stop-Sessions goes at once, the end says how many were sent.
#[test]
fn the_client_stops_early() {
    let plan = Plan {
        packets: 1000,
        stop_after: Some(50),
        ..Plan::default()
    };
    let out = Pair::new(Choice::Only(Mode::Authenticated), plan).run();
    let s = check_complete(Choice::Only(Mode::Authenticated), plan, &out);
    let end = out.end.as_ref().unwrap();
    assert!(end.sent >= 50 && end.sent < 1000, "{}", end.sent);
    // Replies still in flight when the test stopped are lost with it.
    assert!(out.records.len() >= 50 && s.lost <= 2, "{}", s.lost);
}

/// The server goes away during the test: the client's session ends incomplete, with what
/// came back so far.
#[test]
fn the_server_shuts_down_during_the_test() {
    let plan = Plan {
        server_closes_after: Some(30),
        ..Plan::default()
    };
    let out = Pair::new(Choice::Only(Mode::Open), plan).run();
    assert_eq!(out.server_closed, Some(CloseReason::Local));
    assert!(out.client_closed.is_some());
    let end = out.end.as_ref().expect("the session's end");
    assert!(!end.complete);
    assert!(
        (29..=30).contains(&out.records.len()),
        "{}",
        out.records.len()
    );
    assert_eq!(out.open_sockets, 0);
    assert!(!out.completed);
}

/// The reflector answers only the sender named in the request; a tampered packet is not
/// answered in authenticated mode.
#[test]
fn the_reflector_answers_only_valid_packets_from_the_sender() {
    let mut p = Pair::new(Choice::Only(Mode::Authenticated), Plan::default());
    // Run until the session started.
    p.pump();
    while !p.out.server_events.iter().any(|e| e == "Started") {
        let (at, _) = *p.flights.keys().next().expect("a flight");
        p.now = at;
        let f = p.flights.pop_first().unwrap().1;
        p.deliver(f);
        p.pump();
    }
    let si = p.out.server_info.clone().unwrap();
    let (_, sock) = p
        .server
        .sessions()
        .next()
        .map(|(id, s)| (s.sid(), id))
        .unwrap();
    let len =
        TestPacket::header_len(Mode::Authenticated) + default_padding(Mode::Authenticated) as usize;
    let junk = vec![0x42u8; len];
    let mut buf = [0u8; 2048];
    let from = |addr| Datagram {
        source: addr,
        recv_time: p.now,
        ttl: Some(64),
        truncated: false,
        payload: &junk,
    };
    let stranger = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)), si.peer.port());
    assert_eq!(
        p.server.handle_datagram(p.now, sock, &from(stranger)),
        DatagramOutcome::Foreign
    );
    assert!(matches!(
        p.server.handle_datagram(p.now, sock, &from(si.peer)),
        DatagramOutcome::Dropped(_)
    ));
    let short = Datagram {
        payload: &junk[..20],
        ..from(si.peer)
    };
    assert!(matches!(
        p.server.handle_datagram(p.now, sock, &short),
        DatagramOutcome::Dropped(_)
    ));
    assert!(
        p.server.poll_transmit(p.now, &mut buf).is_none(),
        "nothing reflected"
    );
    // The test still completes.
    let out = p.run();
    let s = check_complete(Choice::Only(Mode::Authenticated), Plan::default(), &out);
    assert_eq!(s.lost, 0);
}

/// A server without the mixed-mode bit and a client that only asks for it find no common
/// mode; a client that offers more gets a stronger mode from it.
#[test]
fn mixed_mode_needs_the_servers_offer() {
    let out = Pair::offering(Choice::Mixed, Modes::ALL, Plan::default()).run();
    assert_eq!(out.client_closed, Some(CloseReason::NoCommonMode));
    assert!(out.end.is_none());
    let plan = Plan::default();
    let out = Pair::offering(
        Choice::Mixed,
        with_mixed(Modes::from(Mode::Authenticated)),
        plan,
    )
    .run();
    check_complete(Choice::Mixed, plan, &out);
}

/// RFC 5357 3.5: after Stop-Sessions the reflector still answers packets in transit for the
/// request's Timeout (2 s here), then stops and closes its socket.
#[test]
fn the_reflector_answers_for_the_timeout_after_stop_sessions() {
    let plan = Plan {
        packets: 20,
        keep_open: true,
        ..Plan::default()
    };
    let mut p = Pair::new(Choice::Only(Mode::Encrypted), plan);
    p.pump();
    while !p.out.server_events.iter().any(|e| e == "TestComplete") {
        assert!(p.step(None));
    }
    let stopped = p.now;
    assert!(!p.server.in_test());
    let (sock, s) = p.server.sessions().next().expect("the reflector is kept");
    assert!(s.is_running());
    let (from, to, bytes) = p.last_out.clone().unwrap();
    assert_eq!(p.addrs[&(Side::Server, sock)], to);
    let packet = |at| Datagram {
        source: from,
        recv_time: at,
        ttl: Some(TTL_OUT),
        truncated: false,
        payload: &bytes,
    };
    let mut buf = [0u8; 2048];
    // A second before the Timeout is over: answered.
    let at = after(stopped, Duration::from_secs(1));
    p.step(Some(at));
    p.now = at;
    assert!(matches!(
        p.server.handle_datagram(at, sock, &packet(at)),
        DatagramOutcome::Accepted { .. }
    ));
    let t = p.server.poll_transmit(at, &mut buf).expect("reflected");
    assert_eq!(t.socket, sock);
    assert_eq!(t.transmit.dest, from);
    // At the Timeout the reflector stops and its socket is closed.
    let until = after(stopped, Duration::from_secs(2));
    let timeout = p.server.poll_timeout().expect("the reflector's end");
    assert!(timeout.at <= until, "{timeout:?}");
    p.now = until;
    p.server.handle_timeout(until);
    let mut closed = false;
    while let Some(o) = p.server.poll_output() {
        closed |= matches!(o, Output::Socket(SocketAction::Close(id)) if id == sock);
    }
    assert!(closed, "the reflector's socket is closed");
    assert_eq!(p.server.sessions().count(), 0);
    assert_eq!(
        p.server.handle_datagram(until, sock, &packet(until)),
        DatagramOutcome::NotReceiving
    );
}
