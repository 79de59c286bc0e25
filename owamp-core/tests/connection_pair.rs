//! A client and a server [`Connection`] wired together in memory with a virtual clock: whole
//! measurements in every mode through the one contract a host drives (octets, datagrams and
//! time in; control octets, socket actions, stored sessions and events out), with nothing
//! built by hand on SessionAccepted.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use owamp_core::connection::{
    ClientConnection, ClientEvent, ControlAction, Output, RecordStream, ServerConnection,
    ServerEvent, SocketAction, SocketId, StoreFailure,
};
use owamp_core::control::{
    ClientConfig, CloseReason, Identity, Mode, Modes, PortRange, ProtocolError, Role, ServerConfig,
    SessionRequest,
};
use owamp_core::io::{
    FetchReply, FetchSelection, FetchStream, FetchedSession, Finished, StoredSession, FETCH_BATCH,
};
use owamp_core::policy::{ClassLimits, Limits};
use owamp_core::session::Datagram;
use owamp_core::time::{Interval, OwampTime};
use owamp_core::wire::{AcceptCode, DataRecord, RequestSession, SessionId, Slot, SlotKind, TypeP};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

const ALICE: &[u8] = b"alice";
const PASS: &[u8] = b"correct horse battery staple";
const CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const SERVER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

fn t0() -> OwampTime {
    OwampTime::from_raw(0xeeb2_5d00_0000_0000)
}

fn after(t: OwampTime, d: Duration) -> OwampTime {
    t.saturating_add(d)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Side {
    Client,
    Server,
}

/// What travels, and when it arrives.
#[derive(Debug)]
enum Flight {
    Control(Side, Vec<u8>),
    Datagram {
        to: SocketAddr,
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    /// Nothing: the harness wakes up (to send a late packet).
    Wake,
}

#[derive(Default)]
struct Plan {
    send: u32,
    receive: u32,
    /// Extra lateness of the client's last packet to the server.
    late_last: Duration,
    /// Drop every n-th datagram (0: none).
    drop_every: u64,
    /// The client reads the server's octets in many pieces of odd sizes.
    split_reads: bool,
    /// Flip the bits of the octet at this offset of the Fetch-Session answer on its way.
    corrupt_fetch_at: Option<usize>,
    /// The client's limit on fetched items (default: the configuration's).
    max_fetch_items: Option<u32>,
    /// The server's store fails (no room left) at this batch of streamed records, counting
    /// from 1 (`Some(0)`: when the session begins).
    server_store_fails_at: Option<usize>,
}

/// Sizes of the pieces the client reads with `split_reads`, in turn.
const READ_SIZES: [usize; 10] = [1, 3, 7, 13, 29, 61, 127, 251, 509, 1021];

#[derive(Default)]
struct Outcome {
    events: Vec<String>,
    client_received: Vec<StoredSession>,
    server_stored: BTreeMap<SessionId, StoredSession>,
    fetched: Option<FetchedSession>,
    closed: Option<CloseReason>,
    accepted: Vec<(Role, SessionId)>,
    dropped: u64,
    open_sockets: usize,
    /// Streaming: sessions begun and not ended, with the records so far.
    streams: HashMap<SessionId, (RequestSession, Vec<DataRecord>)>,
    /// Streaming: batches of records handed out.
    batches: usize,
    /// Streaming: ends that pruned records already handed out.
    prunes: usize,
    /// Streamed fetch: the answer's head, and its records so far.
    fetch_head: Option<(SessionId, FetchStream)>,
    fetch_records: Vec<DataRecord>,
    /// Streamed fetch: batches of records handed out.
    fetch_batches: usize,
    /// Control reads of the client (`split_reads` only).
    reads: usize,
    /// The receive buffer each side asked for, per socket opened.
    recv_buffers: Vec<(Side, usize)>,
    /// The Accept code of a server's Stop-Sessions that ended the test abnormally.
    client_aborted: Option<AcceptCode>,
    /// When the client saw the test end.
    completed_at: Option<OwampTime>,
    /// The server's streamed batches of records.
    server_batches: usize,
}

impl Outcome {
    /// Follows a record stream; the session, once ended, as a whole one would have been.
    fn stream(&mut self, r: RecordStream) -> Option<StoredSession> {
        match r {
            RecordStream::Begin(req) => {
                let prev = self.streams.insert(req.sid, (*req, Vec::new()));
                assert!(prev.is_none(), "a session begun twice");
                None
            }
            RecordStream::Records { sid, records } => {
                assert!(!records.is_empty());
                self.batches += 1;
                self.streams.get_mut(&sid).expect("begun").1.extend(records);
                None
            }
            RecordStream::End(end) => {
                let (request, mut records) = self.streams.remove(&end.sid).expect("begun");
                if let Some(p) = end.prune {
                    self.prunes += 1;
                    records.retain(|r| p.keeps(r));
                }
                records.extend(end.tail.iter().copied());
                Some(StoredSession {
                    request,
                    finished: end.finished,
                    next_seqno: end.next_seqno,
                    skips: end.skips.clone(),
                    records,
                })
            }
        }
    }
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
    requested: u32,
    /// Streamed records and Fetch-Session answers.
    stream: bool,
    out: Outcome,
    sent_datagrams: u64,
    /// Octets of the Fetch-Session answer sent so far, once it has begun.
    answer_sent: Option<usize>,
    /// Where the next piece of `split_reads` comes from in READ_SIZES.
    next_read: usize,
}

fn limits() -> Limits {
    let p = Limits::new(
        Modes::ALL,
        "regular",
        ClassLimits {
            bandwidth_bps: 20_000_000,
            disk_octets: 10_000_000_000,
            allow_open_mode: true,
        },
    );
    p.add_class("authd", ClassLimits::default());
    p.assign_user(ALICE, "authd");
    p.set_passphrase(ALICE, PASS);
    p
}

impl Pair {
    fn new(mode: Mode, plan: Plan) -> Self {
        Self::with(mode, plan, false)
    }

    /// With `stream`, both ends hand out received records as they come.
    fn with(mode: Mode, plan: Plan, stream: bool) -> Self {
        let now = t0();
        let ccfg = ClientConfig {
            modes: Modes::from(mode),
            identity: mode.is_secure().then(|| Identity {
                key_id: ALICE.to_vec(),
                passphrase: PASS.into(),
            }),
            control_timeout: Duration::from_secs(30),
            max_fetch_items: plan
                .max_fetch_items
                .unwrap_or(ClientConfig::default().max_fetch_items),
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
            ..ServerConfig::default()
        };
        let mut client = ClientConnection::client(now, ccfg, ChaCha8Rng::seed_from_u64(1));
        let mut server = ServerConnection::server(
            now,
            scfg,
            limits(),
            ChaCha8Rng::seed_from_u64(2),
            SocketAddr::new(SERVER_IP, 861),
            SocketAddr::new(CLIENT_IP, 40000),
        );
        if stream {
            client = client.with_streamed_records();
            server = server.with_streamed_records();
        }
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
            requested: 0,
            stream,
            out: Outcome::default(),
            sent_datagrams: 0,
            answer_sent: None,
            next_read: 0,
        }
    }

    fn ship(&mut self, at: OwampTime, f: Flight) {
        self.seq += 1;
        self.flights.insert((at, self.seq), f);
    }

    fn request(&mut self, role: Role, packets: u32) {
        let start = after(self.now, Duration::from_secs(1));
        let req = SessionRequest {
            role,
            local: SocketAddr::new(CLIENT_IP, 0),
            peer: SERVER_IP,
            slots: vec![Slot {
                kind: SlotKind::Exponential,
                mean: Interval::from_raw((1 << 32) / 100),
            }],
            packets,
            padding: 0,
            start_time: start,
            timeout: Interval::from_raw(2 << 32),
            type_p: TypeP::BEST_EFFORT,
        };
        self.client.request_session(req).unwrap();
        self.requested += 1;
    }

    /// The client's script: the requests of the plan, start, fetch what the server
    /// received, close.
    fn next_command(&mut self) {
        if !self.client.is_ready() {
            return;
        }
        let want = u32::from(self.plan.send > 0) + u32::from(self.plan.receive > 0);
        if self.requested < want {
            if self.requested == 0 && self.plan.send > 0 {
                self.request(Role::Sender, self.plan.send);
            } else {
                self.request(Role::Receiver, self.plan.receive);
            }
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

    /// Carries out everything both sides have to do at `now`.
    fn pump(&mut self) {
        loop {
            let mut busy = false;
            busy |= self.transmit(Side::Client);
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

    /// When the client's last packet to the server must wait to leave late, the time it may.
    fn held_back(&self) -> Option<OwampTime> {
        if self.plan.late_last.is_zero() {
            return None;
        }
        let (_, s) = self
            .client
            .sessions()
            .find(|(_, s)| s.role() == Role::Sender)?;
        let (seq, due) = s.sender()?.next_due()?;
        let leave = after(due, self.plan.late_last);
        (seq + 1 == self.plan.send && self.now < leave).then_some(leave)
    }

    fn transmit(&mut self, side: Side) -> bool {
        let mut buf = [0u8; 2048];
        let mut any = false;
        loop {
            let now = self.now;
            if side == Side::Client {
                if let Some(leave) = self.held_back() {
                    if !self.flights.values().any(|f| matches!(f, Flight::Wake)) {
                        self.ship(leave, Flight::Wake);
                    }
                    break;
                }
            }
            let t = match side {
                Side::Client => self.client.poll_transmit(now, &mut buf),
                Side::Server => self.server.poll_transmit(now, &mut buf),
            };
            let Some(t) = t else { break };
            any = true;
            self.sent_datagrams += 1;
            let from = self.addrs[&(side, t.socket)];
            let delay = Duration::from_millis(5);
            if self.plan.drop_every > 0 && self.sent_datagrams % self.plan.drop_every == 0 {
                self.out.dropped += 1;
                continue;
            }
            self.ship(
                after(now, delay),
                Flight::Datagram {
                    to: t.transmit.dest,
                    from,
                    bytes: buf[..t.transmit.len].to_vec(),
                },
            );
        }
        any
    }

    fn client_output(&mut self, o: Output<ClientEvent>) {
        match o {
            Output::Control(ControlAction::Transmit(b)) => {
                let at = after(self.now, Duration::from_millis(1));
                self.ship(at, Flight::Control(Side::Server, b));
            }
            Output::Control(ControlAction::Close(r)) => {
                self.out.closed = Some(r);
                let at = after(self.now, Duration::from_millis(1));
                self.ship(at, Flight::Control(Side::Server, Vec::new()));
            }
            Output::Socket(SocketAction::Open {
                id,
                local,
                recv_buffer,
            }) => {
                self.out.recv_buffers.push((Side::Client, recv_buffer));
                let port = self.open_socket(Side::Client, id, local);
                self.client.socket_opened(self.now, id, Ok(port));
            }
            Output::Socket(SocketAction::SetDscp { .. } | SocketAction::Connect { .. }) => {}
            Output::Socket(SocketAction::Close(id)) => self.close_socket(Side::Client, id),
            Output::Store(s) => self.out.client_received.push(*s),
            Output::Stream(r) => {
                if let Some(s) = self.out.stream(r) {
                    self.out.client_received.push(s);
                }
            }
            Output::Event(e) => {
                self.out
                    .events
                    .push(format!("client {e:?}").chars().take(40).collect());
                match e {
                    ClientEvent::Connected { .. } => self.next_command(),
                    ClientEvent::SessionAccepted(info) => {
                        self.out.accepted.push((info.role, info.sid));
                        let want = u32::from(self.plan.send > 0) + u32::from(self.plan.receive > 0);
                        if self.requested == want {
                            self.client.start_sessions(self.now).unwrap();
                        } else {
                            self.next_command();
                        }
                    }
                    ClientEvent::TestAborted { accept } => {
                        assert!(self.out.client_aborted.is_none(), "aborted twice");
                        self.out.client_aborted = Some(accept);
                    }
                    ClientEvent::FetchDenied { .. } => self.client.close(self.now),
                    ClientEvent::TestComplete => {
                        self.out.completed_at = Some(self.now);
                        match self.out.accepted.iter().find(|(r, _)| *r == Role::Sender) {
                            Some(&(_, sid)) => {
                                self.client.fetch(self.now, sid, 0, u32::MAX).unwrap()
                            }
                            None => self.client.close(self.now),
                        }
                    }
                    ClientEvent::FetchBegin { sid, head } => {
                        assert!(self.stream, "an answer streamed without asking");
                        assert!(self.out.fetch_head.is_none(), "two answers begun");
                        self.out.fetch_head = Some((sid, *head));
                    }
                    ClientEvent::FetchedRecords { sid, records } => {
                        let (head_sid, head) = self.out.fetch_head.as_ref().expect("begun");
                        assert_eq!(sid, *head_sid);
                        assert!(!records.is_empty() && records.len() <= FETCH_BATCH);
                        self.out.fetch_records.extend(records);
                        assert!(self.out.fetch_records.len() <= head.num_records as usize);
                        self.out.fetch_batches += 1;
                    }
                    ClientEvent::Fetched(mut f) => {
                        if self.stream {
                            // The records came before; the head said what this says.
                            assert!(f.records.is_empty());
                            let (sid, head) = self.out.fetch_head.take().expect("begun");
                            f.records = std::mem::take(&mut self.out.fetch_records);
                            assert_eq!(sid, f.sid);
                            assert_eq!(head.num_records as usize, f.records.len());
                            assert_eq!(
                                (&head.request, head.finished, head.next_seqno, &head.skips),
                                (&f.request, f.finished, f.next_seqno, &f.skips)
                            );
                        }
                        self.out.fetched = Some(*f);
                        self.client.close(self.now);
                    }
                    _ => {}
                }
            }
        }
    }

    fn server_output(&mut self, o: Output<ServerEvent>) {
        if let Output::Event(ServerEvent::FetchRequest { .. }) = &o {
            self.answer_sent = Some(0);
        }
        match o {
            Output::Control(ControlAction::Transmit(mut b)) => {
                if let Some(sent) = self.answer_sent.as_mut() {
                    let at = self
                        .plan
                        .corrupt_fetch_at
                        .and_then(|c| c.checked_sub(*sent));
                    if let Some(x) = at.and_then(|i| b.get_mut(i)) {
                        *x ^= 0xff;
                    }
                    *sent += b.len();
                }
                let at = after(self.now, Duration::from_millis(1));
                self.ship(at, Flight::Control(Side::Client, b));
            }
            Output::Control(ControlAction::Close(_)) => {
                let at = after(self.now, Duration::from_millis(1));
                self.ship(at, Flight::Control(Side::Client, Vec::new()));
            }
            Output::Socket(SocketAction::Open {
                id,
                local,
                recv_buffer,
            }) => {
                self.out.recv_buffers.push((Side::Server, recv_buffer));
                let port = self.open_socket(Side::Server, id, local);
                self.server.socket_opened(self.now, id, Ok(port));
            }
            Output::Socket(SocketAction::SetDscp { .. } | SocketAction::Connect { .. }) => {}
            Output::Socket(SocketAction::Close(id)) => self.close_socket(Side::Server, id),
            Output::Store(s) => {
                self.out.server_stored.insert(s.request.sid, *s);
            }
            Output::Stream(r) => {
                let sid = match &r {
                    RecordStream::Begin(req) => Some(req.sid),
                    RecordStream::Records { sid, .. } => {
                        self.out.server_batches += 1;
                        Some(*sid)
                    }
                    RecordStream::End(_) => None,
                };
                if let Some(s) = self.out.stream(r) {
                    self.out.server_stored.insert(s.request.sid, s);
                }
                if let (Some(sid), Some(at)) = (sid, self.plan.server_store_fails_at) {
                    if self.out.server_batches == at {
                        self.server
                            .store_failed(self.now, sid, StoreFailure::NoSpace);
                    }
                }
            }
            Output::Event(ServerEvent::FetchRequest { sid, begin, end }) if self.stream => {
                // Served record by record, in odd-sized batches.
                let Some(s) = self.out.server_stored.get(&sid).cloned() else {
                    self.server.fetch_reply(self.now, FetchReply::NotFound);
                    return;
                };
                let sel = FetchSelection::new(begin, end, s.finished, || {
                    s.records
                        .iter()
                        .filter(|r| !r.is_lost())
                        .map(|r| r.seq)
                        .max()
                });
                let records: Vec<_> = s.records.iter().filter(|r| sel.keeps(r)).copied().collect();
                let head = FetchStream {
                    request: s.request.clone(),
                    finished: s.finished,
                    next_seqno: s.next_seqno,
                    skips: s.skips.clone(),
                    num_records: records.len() as u32,
                };
                self.server
                    .fetch_reply(self.now, FetchReply::Streamed(Box::new(head)));
                for chunk in records.chunks(7) {
                    assert!(self.server.fetch_remaining() >= chunk.len() as u32);
                    self.server.fetch_records(self.now, chunk);
                }
                assert_eq!(self.server.fetch_remaining(), 0);
            }
            Output::Event(ServerEvent::FetchRequest { sid, .. }) => {
                let reply = match self.out.server_stored.get(&sid) {
                    Some(s) => FetchReply::Found(Box::new(s.clone())),
                    None => FetchReply::NotFound,
                };
                self.server.fetch_reply(self.now, reply);
            }
            Output::Event(_) => {}
        }
    }

    fn deliver(&mut self, f: Flight) {
        let now = self.now;
        match f {
            Flight::Wake => {}
            Flight::Control(Side::Client, b) if b.is_empty() => {
                self.client.handle_control_closed(now)
            }
            Flight::Control(Side::Client, b) if self.plan.split_reads => {
                let mut rest = &b[..];
                while !rest.is_empty() {
                    let n = READ_SIZES[self.next_read % READ_SIZES.len()].min(rest.len());
                    self.next_read += 1;
                    self.out.reads += 1;
                    let (piece, tail) = rest.split_at(n);
                    self.client.handle_control(now, piece);
                    self.pump();
                    rest = tail;
                }
            }
            Flight::Control(Side::Client, b) => self.client.handle_control(now, &b),
            Flight::Control(Side::Server, b) if b.is_empty() => {
                self.server.handle_control_closed(now)
            }
            Flight::Control(Side::Server, b) => self.server.handle_control(now, &b),
            Flight::Datagram { to, from, bytes } => {
                let Some(&(side, id)) = self.sockets.get(&to) else {
                    return;
                };
                let d = Datagram {
                    source: from,
                    recv_time: now,
                    ttl: Some(64),
                    truncated: false,
                    payload: &bytes,
                };
                match side {
                    Side::Client => {
                        self.client.handle_datagram(now, id, &d);
                    }
                    Side::Server => {
                        self.server.handle_datagram(now, id, &d);
                    }
                }
            }
        }
    }

    fn run(mut self, limit: Duration) -> Outcome {
        let end = after(self.now, limit);
        self.pump();
        let mut steps = 0u32;
        while self.now < end && !(self.client.is_closed() && self.server.is_closed()) {
            steps += 1;
            assert!(
                steps < 1_000_000,
                "no progress at {:?}: {:?} {:?} {:?}",
                self.now,
                self.client.poll_timeout(),
                self.server.poll_timeout(),
                self.out.events
            );
            let next_flight = self.flights.keys().next().map(|k| k.0);
            // A late packet held back: the client's packet timer waits for the harness.
            let client = self
                .client
                .poll_timeout()
                .filter(|t| !(t.precise && self.held_back().is_some()));
            let timeouts = [client, self.server.poll_timeout()];
            let next = timeouts
                .iter()
                .flatten()
                .map(|t| t.at)
                .chain(next_flight)
                .min()
                .expect("something to wait for");
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
        self.out.open_sockets = self.sockets.len();
        self.out
    }
}

fn check_full(mode: Mode) {
    let out = Pair::new(
        mode,
        Plan {
            send: 100,
            receive: 80,
            late_last: Duration::ZERO,
            drop_every: 0,
            ..Plan::default()
        },
    )
    .run(Duration::from_secs(120));
    assert_eq!(out.closed, Some(CloseReason::Local), "{:?}", out.events);
    // Server to client: kept by the client, complete.
    assert_eq!(out.client_received.len(), 1);
    let from = &out.client_received[0];
    assert_eq!(from.finished, Finished::Normal);
    assert_eq!(from.next_seqno, 80);
    assert_eq!(from.records.len(), 80);
    assert!(from.records.iter().all(|r| !r.is_lost()));
    // Client to server: stored by the server and fetched.
    let to = out.fetched.expect("fetched");
    assert_eq!(to.finished, Finished::Normal);
    assert_eq!(to.records.len(), 100);
    assert!(to.records.iter().all(|r| !r.is_lost() && r.ttl == 64));
    assert_eq!(out.server_stored.len(), 1);
    // Each side asked for a receive buffer for the socket it receives on, and none for the
    // one it sends from.
    let mut asked = out.recv_buffers.clone();
    asked.sort_unstable();
    assert_eq!(asked.len(), 4, "{asked:?}");
    assert_eq!((asked[0].0, asked[0].1), (Side::Client, 0));
    assert!(asked[1].0 == Side::Client && asked[1].1 > 0, "{asked:?}");
    assert_eq!((asked[2].0, asked[2].1), (Side::Server, 0));
    assert!(asked[3].0 == Side::Server && asked[3].1 > 0, "{asked:?}");
}

#[test]
fn open_mode_both_directions() {
    check_full(Mode::Open);
}

#[test]
fn authenticated_mode_both_directions() {
    check_full(Mode::Authenticated);
}

#[test]
fn encrypted_mode_both_directions() {
    check_full(Mode::Encrypted);
}

#[test]
fn losses_are_counted_not_dropped() {
    let out = Pair::new(
        Mode::Open,
        Plan {
            send: 200,
            receive: 0,
            late_last: Duration::ZERO,
            drop_every: 7,
            ..Plan::default()
        },
    )
    .run(Duration::from_secs(120));
    let to = out.fetched.expect("fetched");
    let lost = to.records.iter().filter(|r| r.is_lost()).count() as u64;
    assert_eq!(to.records.len(), 200);
    assert_eq!(lost, out.dropped);
    assert!(lost > 20);
}

#[test]
fn every_socket_is_closed_at_the_end() {
    let out = Pair::new(
        Mode::Open,
        Plan {
            send: 10,
            receive: 10,
            late_last: Duration::ZERO,
            drop_every: 0,
            ..Plan::default()
        },
    )
    .run(Duration::from_secs(60));
    assert!(out.closed.is_some());
    assert_eq!(out.open_sockets, 0);
}

/// RFC 4656 3.8: the last packet leaves 20 ms late, well inside the loss timeout: it is
/// received and kept, and nothing is counted lost.
#[test]
fn late_last_packet_is_kept() {
    let out = Pair::new(
        Mode::Open,
        Plan {
            send: 100,
            receive: 0,
            late_last: Duration::from_millis(20),
            drop_every: 0,
            ..Plan::default()
        },
    )
    .run(Duration::from_secs(120));
    let to = out.fetched.expect("fetched");
    assert_eq!(to.next_seqno, 100);
    assert_eq!(to.records.len(), 100, "{:?}", out.events);
    assert!(to.records.iter().all(|r| !r.is_lost()));
    let last = to
        .records
        .iter()
        .find(|r| r.seq == 99)
        .expect("last packet");
    let sched = to.records.iter().map(|r| r.send_time).max().unwrap();
    assert_eq!(last.send_time, sched);
}

/// Records handed out as they come make, once the session is over, exactly the session
/// that is otherwise kept whole at its end: in both directions, with losses.
#[test]
fn streamed_records_make_the_same_sessions() {
    let plan = || Plan {
        send: 1500,
        receive: 1200,
        late_last: Duration::ZERO,
        drop_every: 7,
        ..Plan::default()
    };
    let whole = Pair::with(Mode::Encrypted, plan(), false).run(Duration::from_secs(120));
    let streamed = Pair::with(Mode::Encrypted, plan(), true).run(Duration::from_secs(120));
    assert_eq!(whole.batches, 0);
    // 1500 packets at 10 ms: batches by count (512) and by time (1 s).
    assert!(streamed.batches >= 10, "{} batches", streamed.batches);
    assert!(streamed.streams.is_empty(), "a stream never ended");
    assert_eq!(streamed.prunes, 0);
    assert_eq!(whole.client_received, streamed.client_received);
    assert_eq!(whole.server_stored, streamed.server_stored);
    // The Fetch-Session answer, whole or streamed in batches, reads the same (HMAC and
    // encryption run across the batches).
    assert_eq!(whole.fetched, streamed.fetched);
    let to = streamed.fetched.expect("fetched");
    assert_eq!(to.records.len(), 1500);
    assert!(to.records.iter().filter(|r| r.is_lost()).count() > 100);
    assert_eq!(streamed.client_received[0].records.len(), 1200);
}

/// The server's store fails midway (its disk is full): the server stops the test at once
/// with a Stop-Sessions whose Accept is 5 (RFC 4656 3.8), the client learns it while the
/// session runs rather than when it fetches, no further records of the session are handed
/// out, and the Fetch-Session for it is refused.
#[test]
fn a_store_failure_stops_the_test_and_tells_the_client() {
    for fails_at in [0, 3] {
        let plan = Plan {
            send: 3000,
            server_store_fails_at: Some(fails_at),
            ..Plan::default()
        };
        let out = Pair::with(Mode::Authenticated, plan, true).run(Duration::from_secs(120));
        assert_eq!(
            out.client_aborted,
            Some(AcceptCode::TemporaryResourceLimit),
            "{fails_at}: {:?}",
            out.events
        );
        // 3000 packets at 10 ms take 30 s: the test ended long before.
        let took = out
            .completed_at
            .expect("the test completed")
            .duration_since(t0())
            .unwrap();
        assert!(took < Duration::from_secs(10), "{fails_at}: {took:?}");
        assert_eq!(out.server_batches, fails_at, "records after the failure");
        assert!(out.server_stored.is_empty(), "{fails_at}");
        assert!(out.fetched.is_none(), "{fails_at}");
        assert!(
            out.events.iter().any(|e| e.contains("FetchDenied")),
            "{fails_at}: {:?}",
            out.events
        );
        assert_eq!(out.open_sockets, 0, "{fails_at}");
    }
}

/// Without a failure, nothing says the test was aborted.
#[test]
fn a_normal_test_is_not_aborted() {
    let plan = Plan {
        send: 200,
        ..Plan::default()
    };
    let out = Pair::with(Mode::Open, plan, true).run(Duration::from_secs(120));
    assert!(out.client_aborted.is_none());
    assert!(out.fetched.is_some());
}

/// Packets sent to the server in the fetch tests: three batches, the last one shorter.
const FETCHED: u32 = 2 * FETCH_BATCH as u32 + 452;

/// Octets of a Fetch-Session answer before its records, for a request of one slot and no
/// skip ranges (RFC 4656 3.9): Fetch-Ack (32), the stored Request-Session (112, then one
/// slot and its HMAC: 32), the skip ranges' HMAC (16).
const RECORDS_AT: usize = 32 + 112 + 32 + 16;

fn fetch_plan(split_reads: bool) -> Plan {
    Plan {
        send: FETCHED,
        drop_every: 9,
        split_reads,
        ..Plan::default()
    }
}

/// RFC 4656 3.9: a Fetch-Session answer read record by record as it arrives, in pieces of
/// odd sizes (records, blocks and HMACs cut anywhere), gives exactly the records read whole,
/// in every mode (decryption and HMAC run across the pieces).
#[test]
fn streamed_fetch_reads_the_same_records_in_every_mode() {
    for mode in [Mode::Open, Mode::Authenticated, Mode::Encrypted] {
        let whole = Pair::with(mode, fetch_plan(false), false).run(Duration::from_secs(120));
        let streamed = Pair::with(mode, fetch_plan(true), true).run(Duration::from_secs(120));
        assert_eq!(streamed.closed, Some(CloseReason::Local), "{mode:?}");
        assert_eq!(whole.fetch_batches, 0);
        assert_eq!(streamed.fetch_batches, 3, "{mode:?}");
        assert!(streamed.reads > 300, "{mode:?}: {} reads", streamed.reads);
        let (a, b) = (
            whole.fetched.expect("whole"),
            streamed.fetched.expect("streamed"),
        );
        assert_eq!(a, b, "{mode:?}");
        assert_eq!(b.records.len(), FETCHED as usize);
        assert!(b.records.iter().any(|r| r.is_lost()));
    }
}

/// A flipped octet in the records section: the HMAC after the last record does not match,
/// so the connection closes with that error and no Fetched comes; the records handed out
/// before (the corrupted one among them) were provisional. Read whole, the same answer
/// fails the same way.
#[test]
fn a_corrupted_record_fails_the_fetch() {
    let at = RECORDS_AT + 25 * (FETCH_BATCH + 500);
    for stream in [true, false] {
        let plan = Plan {
            corrupt_fetch_at: Some(at),
            ..fetch_plan(stream)
        };
        let out = Pair::with(Mode::Authenticated, plan, stream).run(Duration::from_secs(120));
        assert!(out.fetched.is_none(), "stream {stream}");
        assert_eq!(
            out.closed,
            Some(CloseReason::Protocol(ProtocolError::BadHmac(
                "fetched records"
            ))),
            "stream {stream}"
        );
        if stream {
            assert!(out.fetch_head.is_some());
            // The full batches went out before the HMAC after the last record was
            // checked; the last one, shorter, waits for it.
            assert_eq!(out.fetch_batches, 2);
            assert_eq!(out.fetch_records.len(), 2 * FETCH_BATCH);
        }
    }
    // Unharmed, the same run fetches.
    let out = Pair::with(Mode::Authenticated, fetch_plan(true), true).run(Duration::from_secs(120));
    assert_eq!(
        out.fetched.expect("fetched").records.len(),
        FETCHED as usize
    );
}

/// The client's limit on fetched items holds for streamed answers too: the answer is
/// refused at its Fetch-Ack, before any record.
#[test]
fn streamed_fetch_respects_the_item_limit() {
    let plan = Plan {
        max_fetch_items: Some(FETCHED - 1),
        ..fetch_plan(true)
    };
    let out = Pair::with(Mode::Open, plan, true).run(Duration::from_secs(120));
    assert!(out.fetched.is_none());
    assert!(out.fetch_head.is_none());
    assert_eq!(
        out.closed,
        Some(CloseReason::Protocol(ProtocolError::Limit(
            "fetched session too large"
        )))
    );
}
