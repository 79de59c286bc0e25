//! A simulation harness: a control client and a control server wired together in memory, with
//! a virtual clock, seeded randomness, and the test sessions run by the session sender and
//! receiver over a simulated network that can lose, delay, duplicate and reorder test packets.
//!
//! Everything is driven by one event queue ordered by virtual time, so a whole session runs in
//! milliseconds and the same seed gives the same run.

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use owamp_core::control::{
    AcceptCode, Client, ClientCommand, ClientConfig, CloseReason, Mode, PortRange, Role, Server,
    ServerConfig, SessionRequest,
};
use owamp_core::io::{
    FetchReply, FetchedSession, Finished, Input, Output, SessionInfo, SessionReport, SkipRange,
    StoredSession,
};
use owamp_core::policy::ServerPolicy;
use owamp_core::session::{test_session, Receiver, Sender};
use owamp_core::time::Interval;
use owamp_core::time::{ErrorEstimate, OwampTime};
use owamp_core::wire::{SessionId, Slot, SlotKind, TypeP};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::{ChaCha20Rng, ChaCha8Rng};

/// Error estimate of the simulated clocks: unsynchronized, multiplier 1.
pub const ERR: ErrorEstimate = ErrorEstimate::from_raw(1);

/// Seconds as 32.32 fixed point.
pub fn secs(s: f64) -> u64 {
    (s * 4_294_967_296.0) as u64
}

/// `t + d`.
pub fn after(t: OwampTime, d: Duration) -> OwampTime {
    OwampTime::from_raw(t.raw() + secs(d.as_secs_f64()))
}

/// The two ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Client,
    Server,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
}

/// How the simulated network treats test packets.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// One-way delay of the control connection.
    pub control_delay: Duration,
    /// Base one-way delay of test packets.
    pub delay: Duration,
    /// Extra random delay, uniform in 0..jitter (reorders packets closer than this).
    pub jitter: Duration,
    /// Probability that a test packet is lost.
    pub loss: f64,
    /// Probability that a test packet is duplicated.
    pub duplicate: f64,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            control_delay: Duration::from_millis(1),
            delay: Duration::from_millis(5),
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
        }
    }
}

/// What the client does, one step after another, whenever it is ready.
#[derive(Debug, Clone)]
pub enum Step {
    /// Request a session in which the client has `role`.
    Request { role: Role, packets: u32, mean: f64 },
    /// Start the sessions.
    Start,
    /// Fetch the records of the `index`-th session the server received, `begin..=end`.
    FetchServerReceived { index: usize, begin: u32, end: u32 },
    /// Fetch a session by SID.
    Fetch {
        sid: SessionId,
        begin: u32,
        end: u32,
    },
    /// Close the connection.
    Close,
}

/// A session stored by a receiver.
#[derive(Debug, Clone)]
pub struct Stored {
    pub info: SessionInfo,
    pub finished: Finished,
    pub next_seqno: u32,
    pub skips: Vec<SkipRange>,
    pub records: Vec<owamp_core::wire::DataRecord>,
}

enum Endpoint {
    Sender(Sender),
    Receiver(Option<Receiver>),
}

struct Ep {
    info: SessionInfo,
    kind: Endpoint,
    active: bool,
    reported: bool,
}

#[derive(Debug)]
enum Ev {
    Ctl {
        to: Side,
        bytes: Vec<u8>,
    },
    PeerClosed {
        to: Side,
    },
    Timer {
        side: Side,
    },
    Send {
        side: Side,
        sid: SessionId,
    },
    Packet {
        to: Side,
        sid: SessionId,
        bytes: Vec<u8>,
    },
    Poll {
        side: Side,
        sid: SessionId,
    },
    Vanish,
    Stop {
        side: Side,
    },
}

/// What happened during a run.
#[derive(Debug, Default)]
pub struct Log {
    pub connected: Option<Mode>,
    pub accepted: Vec<SessionInfo>,
    pub rejected: Vec<AcceptCode>,
    pub fetched: Vec<FetchedSession>,
    pub fetch_denied: Vec<AcceptCode>,
    pub test_complete: HashMap<Side, usize>,
    pub aborted: HashMap<Side, Vec<SessionId>>,
    pub stopped: HashMap<Side, Vec<(SessionId, u32)>>,
    pub closed: HashMap<Side, CloseReason>,
    pub client_sent: usize,
    pub end_time: OwampTime,
}

/// One client connection to one server, with the server's stored sessions.
pub struct Sim<P: ServerPolicy> {
    pub now: OwampTime,
    start: OwampTime,
    seq: u64,
    events: BinaryHeap<Reverse<(u64, u64)>>,
    pending: HashMap<u64, Ev>,
    net: NetConfig,
    net_rng: ChaCha8Rng,
    pub client: Client<ChaCha20Rng>,
    pub server: Server<P, ChaCha20Rng>,
    eps: HashMap<(Side, SessionId), Ep>,
    /// Sessions the server received, in the order they were accepted (survives the run).
    pub server_store: BTreeMap<SessionId, Stored>,
    pub server_received: Vec<SessionId>,
    /// Sessions the client received.
    pub client_store: BTreeMap<SessionId, Stored>,
    script: Vec<Step>,
    next_client_port: u16,
    /// Server ports reported as in use.
    pub busy_ports: HashSet<u16>,
    vanished: bool,
    closed: HashSet<Side>,
    pub log: Log,
    /// Sessions not sent after this many packets (the sender stops early on its own).
    pub server_sender_limit: Option<u32>,
    /// Sequence numbers the client's senders skip instead of sending.
    pub client_skips: HashSet<u32>,
    followups: std::collections::VecDeque<(Side, Input<'static>)>,
    feeding: bool,
    /// The timer last scheduled per side (`poll_timeout` when it was read).
    armed: HashMap<Side, OwampTime>,
}

impl<P: ServerPolicy> Sim<P> {
    /// A client and a server connected at virtual time `t0`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        seed: u64,
        t0: OwampTime,
        client_cfg: ClientConfig,
        server_cfg: ServerConfig,
        policy: P,
        net: NetConfig,
        script: Vec<Step>,
    ) -> Self {
        let server = Server::new(
            t0,
            server_cfg,
            policy,
            ChaCha20Rng::seed_from_u64(seed ^ 0x5e),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 861),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40000),
        );
        let client = Client::new(t0, client_cfg, ChaCha20Rng::seed_from_u64(seed ^ 0xc1));
        let mut s = Self {
            now: t0,
            start: t0,
            seq: 0,
            events: BinaryHeap::new(),
            pending: HashMap::new(),
            net,
            net_rng: ChaCha8Rng::seed_from_u64(seed),
            client,
            server,
            eps: HashMap::new(),
            server_store: BTreeMap::new(),
            server_received: Vec::new(),
            client_store: BTreeMap::new(),
            script: script.into_iter().rev().collect(),
            next_client_port: 9000,
            busy_ports: HashSet::new(),
            vanished: false,
            closed: HashSet::new(),
            log: Log::default(),
            server_sender_limit: None,
            client_skips: HashSet::new(),
            followups: std::collections::VecDeque::new(),
            feeding: false,
            armed: HashMap::new(),
        };
        s.drain(Side::Server);
        s.drain(Side::Client);
        s
    }

    /// Carries the server's stored sessions over from an earlier run.
    pub fn with_store(mut self, store: BTreeMap<SessionId, Stored>) -> Self {
        self.server_store = store;
        self
    }

    fn at(&mut self, t: OwampTime, ev: Ev) {
        self.seq += 1;
        self.events.push(Reverse((t.raw(), self.seq)));
        self.pending.insert(self.seq, ev);
    }

    /// The client disappears without closing its connection at `t`.
    pub fn vanish_at(&mut self, t: OwampTime) {
        self.at(t, Ev::Vanish);
    }

    /// The application of `side` stops the test at `t`.
    pub fn stop_at(&mut self, side: Side, t: OwampTime) {
        self.at(t, Ev::Stop { side });
    }

    /// Runs until both sides are closed, nothing is left to do, or `limit` of virtual time.
    pub fn run(&mut self, limit: Duration) -> &Log {
        let end = after(self.start, limit);
        loop {
            self.issue_commands();
            let Some(Reverse((t, id))) = self.events.pop() else {
                break;
            };
            if t > end.raw() {
                break;
            }
            self.now = OwampTime::from_raw(t.max(self.now.raw()));
            let Some(ev) = self.pending.remove(&id) else {
                continue;
            };
            self.dispatch(ev);
            if self.closed.len() == 2 || (self.vanished && self.closed.contains(&Side::Server)) {
                break;
            }
        }
        self.log.end_time = self.now;
        &self.log
    }

    fn alive(&self, side: Side) -> bool {
        !self.closed.contains(&side) && (side != Side::Client || !self.vanished)
    }

    fn issue_commands(&mut self) {
        while self.alive(Side::Client) && self.client.is_ready() {
            let Some(step) = self.script.pop() else {
                return;
            };
            let cmd = match step {
                Step::Request {
                    role,
                    packets,
                    mean,
                } => {
                    let port = self.next_client_port;
                    self.next_client_port += 1;
                    ClientCommand::RequestSession(SessionRequest {
                        role,
                        local: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
                        peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
                        slots: vec![Slot {
                            kind: SlotKind::Exponential,
                            mean: Interval::from_raw(secs(mean)),
                        }],
                        packets,
                        padding: 0,
                        start_time: after(self.now, Duration::from_secs(1)),
                        timeout: Interval::from_raw(secs(2.0)),
                        type_p: TypeP::BEST_EFFORT,
                    })
                }
                Step::Start => ClientCommand::StartSessions,
                Step::FetchServerReceived { index, begin, end } => ClientCommand::Fetch {
                    sid: self.server_received.get(index).copied().unwrap_or_default(),
                    begin,
                    end,
                },
                Step::Fetch { sid, begin, end } => ClientCommand::Fetch { sid, begin, end },
                Step::Close => ClientCommand::Close,
            };
            self.feed(Side::Client, Input::Command(cmd));
        }
    }

    fn dispatch(&mut self, ev: Ev) {
        match ev {
            Ev::Ctl { to, bytes } => {
                if self.alive(to) {
                    self.feed(to, Input::Received(&bytes));
                }
            }
            Ev::PeerClosed { to } => {
                if self.alive(to) {
                    self.feed(to, Input::PeerClosed);
                }
            }
            Ev::Timer { side } => {
                let due = match side {
                    Side::Client => self.client.poll_timeout(),
                    Side::Server => self.server.poll_timeout(),
                };
                if self.alive(side) && due.is_some_and(|d| d <= self.now) {
                    self.feed(side, Input::Timer);
                }
            }
            Ev::Send { side, sid } => self.send_packet(side, sid),
            Ev::Packet { to, sid, bytes } => self.receive_packet(to, sid, &bytes),
            Ev::Poll { side, sid } => self.poll_receiver(side, sid),
            Ev::Vanish => {
                self.vanished = true;
                for ((side, _), ep) in self.eps.iter_mut() {
                    if *side == Side::Client {
                        ep.active = false;
                    }
                }
            }
            Ev::Stop { side } => {
                if self.alive(side) {
                    self.feed(side, Input::StopSessions);
                }
            }
        }
    }

    /// Feeds one input and carries out every output, including the answers they call for.
    fn feed(&mut self, side: Side, input: Input<'_>) {
        self.feed_one(side, input);
        if self.feeding {
            return;
        }
        self.feeding = true;
        while let Some((side, input)) = self.followups.pop_front() {
            if self.alive(side) {
                self.feed_one(side, input);
            }
        }
        self.feeding = false;
    }

    fn feed_one(&mut self, side: Side, input: Input<'_>) {
        let now = self.now;
        let r = match side {
            Side::Client => self.client.handle_input(now, input),
            Side::Server => self.server.handle_input(now, input),
        };
        r.expect("the harness uses the state machines correctly");
        // Every state waits for something with a deadline.
        let bounded = match side {
            Side::Client => self.client.is_closed() || self.client.poll_timeout().is_some(),
            Side::Server => self.server.is_closed() || self.server.poll_timeout().is_some(),
        };
        assert!(bounded, "{side:?} waits without a deadline");
        self.drain(side);
    }

    /// Queues an answer to feed once the current outputs are carried out.
    fn answer(&mut self, side: Side, input: Input<'static>) {
        self.followups.push_back((side, input));
        if !self.feeding {
            self.feed_followups();
        }
    }

    fn feed_followups(&mut self) {
        self.feeding = true;
        while let Some((side, input)) = self.followups.pop_front() {
            if self.alive(side) {
                self.feed_one(side, input);
            }
        }
        self.feeding = false;
    }

    fn drain(&mut self, side: Side) {
        loop {
            let o = match side {
                Side::Client => self.client.poll_output(),
                Side::Server => self.server.poll_output(),
            };
            let Some(o) = o else { break };
            self.on_output(side, o);
        }
        // The one timer: schedule the machine's deadline whenever it changes.
        let t = match side {
            Side::Client => self.client.poll_timeout(),
            Side::Server => self.server.poll_timeout(),
        };
        match t {
            Some(t) if self.armed.get(&side) != Some(&t) => {
                self.armed.insert(side, t);
                self.at(t, Ev::Timer { side });
            }
            Some(_) => {}
            None => {
                self.armed.remove(&side);
            }
        }
    }

    fn report(&mut self, side: Side, report: SessionReport) {
        self.answer(side, Input::SessionFinished(report));
    }

    fn on_output(&mut self, side: Side, o: Output) {
        let now = self.now;
        match o {
            Output::Transmit(b) => {
                if side == Side::Client {
                    self.log.client_sent += b.len();
                }
                if self.alive(side) {
                    let t = after(now, self.net.control_delay);
                    self.at(
                        t,
                        Ev::Ctl {
                            to: side.other(),
                            bytes: b,
                        },
                    );
                }
            }
            Output::Connected { mode, .. } => self.log.connected = Some(mode),
            Output::PrepareTestEndpoint(e) => {
                let port = e.local.port();
                let input = if self.busy_ports.contains(&port) {
                    Input::PortInUse { sid: e.sid }
                } else {
                    Input::EndpointReady {
                        sid: e.sid,
                        port: if port == 0 { 20000 } else { port },
                    }
                };
                self.answer(Side::Server, input);
            }
            Output::SessionAccepted(info) => self.add_endpoint(side, *info),
            Output::SessionRejected { accept } => self.log.rejected.push(accept),
            Output::StartSessions => self.start_endpoints(side),
            Output::StopLocalSessions => self.stop_endpoints(side),
            Output::SessionStopped(end) => {
                self.log
                    .stopped
                    .entry(side)
                    .or_default()
                    .push((end.sid, end.next_seqno));
                if let Some(ep) = self.eps.get_mut(&(side, end.sid)) {
                    ep.active = false;
                    if let Endpoint::Receiver(r) = &mut ep.kind {
                        if let Some(r) = r.take() {
                            let records = r
                                .finish(end.stop_time, Some(end.next_seqno), ERR)
                                .unwrap_or_default();
                            let stored = Stored {
                                info: ep.info.clone(),
                                finished: Finished::Normal,
                                next_seqno: end.next_seqno,
                                skips: end.skips.clone(),
                                records,
                            };
                            self.store(side).insert(end.sid, stored);
                        }
                    }
                }
            }
            Output::SessionsAborted { sids } => {
                for sid in &sids {
                    if let Some(ep) = self.eps.get_mut(&(side, *sid)) {
                        ep.active = false;
                        if let Endpoint::Receiver(r) = &mut ep.kind {
                            if let Some(r) = r.take() {
                                let stored = Stored {
                                    info: ep.info.clone(),
                                    finished: Finished::Incomplete,
                                    next_seqno: 0,
                                    skips: vec![],
                                    records: r.records().to_vec(),
                                };
                                self.store(side).insert(*sid, stored);
                            }
                        }
                    }
                }
                self.log.aborted.entry(side).or_default().extend(sids);
            }
            // What follows (the sessions' ends) is checked as for any end.
            Output::TestAborted { .. } => {}
            Output::TestComplete => {
                *self.log.test_complete.entry(side).or_default() += 1;
                self.eps.retain(|(s, _), _| *s != side);
            }
            Output::FetchRequest { sid, .. } => {
                let reply = match self.server_store.get(&sid) {
                    Some(s) => FetchReply::Found(Box::new(StoredSession {
                        request: s.info.request.clone(),
                        finished: s.finished,
                        next_seqno: s.next_seqno,
                        skips: s.skips.clone(),
                        records: s.records.clone(),
                    })),
                    None => FetchReply::NotFound,
                };
                self.answer(Side::Server, Input::FetchReply(reply));
            }
            Output::Fetched(f) => self.log.fetched.push(*f),
            Output::FetchBegin { .. } | Output::FetchedRecords { .. } => {
                panic!("the simulated client reads Fetch-Session answers whole")
            }
            Output::FetchDenied { accept } => self.log.fetch_denied.push(accept),
            Output::Close(reason) => {
                self.closed.insert(side);
                self.log.closed.insert(side, reason);
                for ((s, _), ep) in self.eps.iter_mut() {
                    if *s == side {
                        ep.active = false;
                    }
                }
                if !(side == Side::Client && self.vanished) {
                    let t = after(now, self.net.control_delay);
                    self.at(t, Ev::PeerClosed { to: side.other() });
                }
            }
        }
    }

    fn store(&mut self, side: Side) -> &mut BTreeMap<SessionId, Stored> {
        match side {
            Side::Client => &mut self.client_store,
            Side::Server => &mut self.server_store,
        }
    }

    fn add_endpoint(&mut self, side: Side, info: SessionInfo) {
        if side == Side::Client {
            self.log.accepted.push(info.clone());
        }
        // What both ends agreed on, derived by the core (schedule, keys, protection).
        let params = test_session::session_params(&info).expect("valid schedule");
        let protection = test_session::packet_protection(&info).expect("keys for secure modes");
        let kind = match info.role {
            Role::Sender => Endpoint::Sender(Sender::new(params, protection).expect("sender")),
            Role::Receiver => {
                if side == Side::Server {
                    self.server_received.push(info.sid);
                }
                Endpoint::Receiver(Some(Receiver::new(params, protection)))
            }
        };
        self.eps.insert(
            (side, info.sid),
            Ep {
                info,
                kind,
                active: false,
                reported: false,
            },
        );
    }

    fn start_endpoints(&mut self, side: Side) {
        let mut evs = Vec::new();
        for ((s, sid), ep) in self.eps.iter_mut() {
            if *s != side {
                continue;
            }
            ep.active = true;
            match &ep.kind {
                Endpoint::Sender(snd) => {
                    if let Some((_, t)) = snd.next_due() {
                        evs.push((t, Ev::Send { side, sid: *sid }));
                    }
                }
                Endpoint::Receiver(Some(r)) => {
                    if let Some(t) = r.next_deadline() {
                        evs.push((t, Ev::Poll { side, sid: *sid }));
                    }
                }
                Endpoint::Receiver(None) => {}
            }
        }
        for (t, ev) in evs {
            self.at(t, ev);
        }
    }

    fn stop_endpoints(&mut self, side: Side) {
        let mut reports = Vec::new();
        for ((s, sid), ep) in self.eps.iter_mut() {
            if *s != side || ep.reported {
                continue;
            }
            ep.active = false;
            ep.reported = true;
            reports.push(match &ep.kind {
                Endpoint::Sender(snd) => sender_report(*sid, snd),
                Endpoint::Receiver(_) => SessionReport::completed(*sid, 0),
            });
        }
        for r in reports {
            self.report(side, r);
        }
    }

    fn send_packet(&mut self, side: Side, sid: SessionId) {
        let now = self.now;
        let limit = if side == Side::Server {
            self.server_sender_limit
        } else {
            None
        };
        let skips = if side == Side::Client {
            self.client_skips.clone()
        } else {
            HashSet::new()
        };
        let Some(ep) = self.eps.get_mut(&(side, sid)) else {
            return;
        };
        if !ep.active {
            return;
        }
        let Endpoint::Sender(snd) = &mut ep.kind else {
            return;
        };
        let mut out = Vec::new();
        let stop_here = limit.is_some_and(|l| snd.next_seqno() >= l);
        if !stop_here {
            let mut buf = vec![0u8; snd.packet_len()];
            if snd.is_too_late(now) || skips.contains(&snd.next_seqno()) {
                snd.skip();
            } else if let Ok(n) = snd.build(&mut buf, now, ERR) {
                buf.truncate(n);
                out.push(buf);
            }
        }
        let next = if stop_here { None } else { snd.next_due() };
        let done = next.is_none() && !ep.reported;
        let report = done.then(|| sender_report(sid, snd));
        if done {
            ep.reported = true;
        }
        for p in out {
            self.transmit_packet(side.other(), sid, p);
        }
        if let Some((_, t)) = next {
            self.at(t, Ev::Send { side, sid });
        }
        if let Some(r) = report {
            self.report(side, r);
        }
    }

    fn transmit_packet(&mut self, to: Side, sid: SessionId, p: Vec<u8>) {
        if self.vanished {
            return;
        }
        if self.net_rng.next_u32() as f64 / 4_294_967_296.0 < self.net.loss {
            return;
        }
        let copies = if (self.net_rng.next_u32() as f64 / 4_294_967_296.0) < self.net.duplicate {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter = if self.net.jitter.is_zero() {
                0.0
            } else {
                self.net.jitter.as_secs_f64() * (self.net_rng.next_u32() as f64 / 4_294_967_296.0)
            };
            let t = after(
                after(self.now, self.net.delay),
                Duration::from_secs_f64(jitter),
            );
            self.at(
                t,
                Ev::Packet {
                    to,
                    sid,
                    bytes: p.clone(),
                },
            );
        }
    }

    fn receive_packet(&mut self, to: Side, sid: SessionId, bytes: &[u8]) {
        let now = self.now;
        let Some(ep) = self.eps.get_mut(&(to, sid)) else {
            return;
        };
        if !ep.active {
            return;
        }
        if let Endpoint::Receiver(Some(r)) = &mut ep.kind {
            let _ = r.receive(bytes, now, ERR, 64);
        }
        self.check_receiver(to, sid);
    }

    fn poll_receiver(&mut self, side: Side, sid: SessionId) {
        let now = self.now;
        let Some(ep) = self.eps.get_mut(&(side, sid)) else {
            return;
        };
        if !ep.active {
            return;
        }
        if let Endpoint::Receiver(Some(r)) = &mut ep.kind {
            r.poll(now, ERR);
        }
        self.check_receiver(side, sid);
    }

    fn check_receiver(&mut self, side: Side, sid: SessionId) {
        let Some(ep) = self.eps.get_mut(&(side, sid)) else {
            return;
        };
        let Endpoint::Receiver(Some(r)) = &ep.kind else {
            return;
        };
        if r.is_complete() {
            if !ep.reported {
                ep.reported = true;
                self.report(side, SessionReport::completed(sid, 0));
            }
        } else if let Some(t) = r.next_deadline() {
            // Just past the deadline, so the packet is declared lost.
            let t = OwampTime::from_raw(t.raw() + 1);
            self.at(t, Ev::Poll { side, sid });
        }
    }
}

fn sender_report(sid: SessionId, snd: &Sender) -> SessionReport {
    SessionReport {
        sid,
        next_seqno: snd.next_seqno(),
        skips: snd.skip_ranges().to_vec(),
        failed: false,
    }
}

/// A server configuration for simulations: test ports 8760-8960, short timeouts.
pub fn server_config(t0: OwampTime) -> ServerConfig {
    ServerConfig {
        start_time: t0,
        test_ports: Some(PortRange {
            low: 8760,
            high: 8960,
        }),
        control_timeout: Duration::from_secs(30),
        ..ServerConfig::default()
    }
}

/// A client configuration for simulations.
pub fn client_config() -> ClientConfig {
    ClientConfig {
        control_timeout: Duration::from_secs(30),
        ..ClientConfig::default()
    }
}

/// A plausible start time.
pub fn t0() -> OwampTime {
    OwampTime::from_raw(0xeeb2_5d00_0000_0000)
}
