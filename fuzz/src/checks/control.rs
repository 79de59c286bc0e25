//! Checks for the OWAMP-Control state machines (`owamp_core::control`) fed arbitrary octets
//! in arbitrary chunks, interleaved with timers, the peer closing and the application's
//! commands and answers.
//!
//! Both machines draw their random values from the input (a scripted RNG), so the seeds can
//! replay the recorded exchanges and reach every phase of the protocol.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use owamp_core::control::replay::InsecureScriptedRng;
use owamp_core::control::{
    AcceptCode, Client, ClientCommand, ClientConfig, ControlError, Identity, Modes, PortRange,
    Protocol, Role, Server, ServerConfig, SessionRequest,
};
use owamp_core::io::{
    FetchReply, Finished, Input, Output, SessionInfo, SessionReport, StoredSession, FETCH_BATCH,
};
use owamp_core::policy::{ServerPolicy, TestAdmission};
use owamp_core::time::{ErrorEstimate, Interval, OwampTime};
use owamp_core::wire::{
    DataRecord, Mode, ServerGreeting, SessionId, SetUpResponse, Slot, SlotKind, TypeP,
};

use super::Input as Bytes;

/// The one identity the fuzzed server knows and the fuzzed client may use: the reference
/// traces' user, so that their authenticated and encrypted exchanges replay as seeds.
pub const KEY_ID: &[u8] = b"alice";
/// Its passphrase.
pub const PASSPHRASE: &[u8] = b"correct horse battery staple";
/// The server's test ports when a range is configured (the reference server's range).
pub const TEST_PORTS: PortRange = PortRange {
    low: 8760,
    high: 8960,
};
/// The largest PBKDF2 count used: the reference's 2048, and a little room.
const MAX_KDF_COUNT: u32 = 4096;
/// The most events one input drives.
const MAX_EVENTS: usize = 512;
/// Records a fuzzed fetch may return.
const MAX_FETCH_ITEMS: u32 = 1 << 12;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

/// Offers the modes it was built with, knows [`KEY_ID`], admits every test.
struct Policy {
    modes: Modes,
}

impl ServerPolicy for Policy {
    fn modes(&mut self, _addr: IpAddr) -> Modes {
        self.modes
    }

    fn passphrase(&mut self, key_id: &[u8]) -> Option<owamp_core::crypto::Passphrase> {
        (key_id == KEY_ID).then(|| PASSPHRASE.into())
    }

    fn admit_test(&mut self, _test: &TestAdmission<'_>) -> Result<(), AcceptCode> {
        Ok(())
    }
}

/// What the driver needs of either machine.
trait Machine {
    fn handle(&mut self, now: OwampTime, input: Input<'_>) -> Result<(), ControlError>;
    fn poll(&mut self) -> Option<Output>;
    fn closed(&self) -> bool;
    fn deadline(&self) -> Option<OwampTime>;
}

impl Machine for Server<Policy, InsecureScriptedRng> {
    fn handle(&mut self, now: OwampTime, input: Input<'_>) -> Result<(), ControlError> {
        self.handle_input(now, input)
    }
    fn poll(&mut self) -> Option<Output> {
        self.poll_output()
    }
    fn closed(&self) -> bool {
        self.is_closed()
    }
    fn deadline(&self) -> Option<OwampTime> {
        self.poll_timeout()
    }
}

impl Machine for Client<InsecureScriptedRng> {
    fn handle(&mut self, now: OwampTime, input: Input<'_>) -> Result<(), ControlError> {
        self.handle_input(now, input)
    }
    fn poll(&mut self) -> Option<Output> {
        self.poll_output()
    }
    fn closed(&self) -> bool {
        self.is_closed()
    }
    fn deadline(&self) -> Option<OwampTime> {
        self.poll_timeout()
    }
}

/// Drives a machine as a well-behaved application would, and checks what it does.
struct Driver<M> {
    m: M,
    now: OwampTime,
    /// Every octet the machine transmitted.
    sent: Vec<u8>,
    close_seen: bool,
    sessions: Vec<SessionInfo>,
    reported: Vec<SessionId>,
    /// Fail endpoint set-ups instead of binding them.
    fail_endpoints: bool,
    /// A streamed Fetch-Session answer being read: records announced, records handed out.
    fetching: Option<(u32, usize)>,
}

impl<M: Machine> Driver<M> {
    fn new(m: M, now: OwampTime, fail_endpoints: bool) -> Self {
        let mut d = Self {
            m,
            now,
            sent: Vec::new(),
            close_seen: false,
            sessions: Vec::new(),
            reported: Vec::new(),
            fail_endpoints,
            fetching: None,
        };
        d.drain();
        d
    }

    fn advance(&mut self, dt: u16) {
        // Steps of 2^-16 s (about 15 microseconds) up to one second.
        self.now = OwampTime::from_raw(self.now.raw().saturating_add(u64::from(dt) << 16));
    }

    fn set_now(&mut self, t: u64) {
        // Time never goes back.
        self.now = OwampTime::from_raw(t.max(self.now.raw()));
    }

    /// An input that comes from the peer or the passage of time: the machine must take it
    /// without complaint (problems caused by the peer close the connection instead).
    fn peer(&mut self, input: Input<'_>) {
        let what = match &input {
            Input::Received(b) => format!("{} octets", b.len()),
            other => format!("{other:?}"),
        };
        let r = self.m.handle(self.now, input);
        assert_eq!(r, Ok(()), "{what} refused");
        self.drain();
    }

    /// An input from the application: it may be refused (a command in the wrong state).
    fn app(&mut self, input: Input<'_>) {
        let _ = self.m.handle(self.now, input);
        self.drain();
    }

    fn timer(&mut self) {
        if let Some(t) = self.m.deadline() {
            self.set_now(t.raw());
        }
        self.peer(Input::Timer);
    }

    /// Collects the outputs, answering what the application is asked, until the machine is
    /// quiet; then checks that it is closed or has a deadline.
    fn drain(&mut self) {
        for _ in 0..64 {
            let mut answers = Vec::new();
            while let Some(o) = self.m.poll() {
                match o {
                    Output::Transmit(b) => {
                        assert!(!self.close_seen, "transmit after close");
                        self.sent.extend_from_slice(&b);
                    }
                    Output::Close(_) => {
                        assert!(!self.close_seen, "closed twice");
                        self.close_seen = true;
                    }
                    Output::PrepareTestEndpoint(s) => answers.push(if self.fail_endpoints {
                        Input::EndpointFailed {
                            sid: s.sid,
                            accept: AcceptCode::TemporaryResourceLimit,
                        }
                    } else {
                        let port = match s.local.port() {
                            0 => 9000,
                            p => p,
                        };
                        Input::EndpointReady { sid: s.sid, port }
                    }),
                    Output::SessionAccepted(info) => self.sessions.push(*info),
                    Output::StopLocalSessions => {
                        for s in &self.sessions {
                            if !self.reported.contains(&s.sid) {
                                self.reported.push(s.sid);
                                answers.push(Input::SessionFinished(SessionReport::completed(
                                    s.sid,
                                    s.request.num_packets,
                                )));
                            }
                        }
                    }
                    Output::FetchRequest { sid, .. } => {
                        answers.push(Input::FetchReply(self.stored(&sid)));
                    }
                    Output::FetchBegin { head, .. } => {
                        assert!(self.fetching.is_none(), "two answers begun");
                        assert!(head.num_records <= MAX_FETCH_ITEMS);
                        assert!(head.skips.len() <= MAX_FETCH_ITEMS as usize);
                        self.fetching = Some((head.num_records, 0));
                    }
                    Output::FetchedRecords { records, .. } => {
                        let (n, got) = self.fetching.as_mut().expect("records before the head");
                        assert!(!records.is_empty() && records.len() <= FETCH_BATCH);
                        *got += records.len();
                        assert!(*got <= *n as usize, "more records than announced");
                    }
                    Output::Fetched(f) => {
                        assert!(f.records.len() <= MAX_FETCH_ITEMS as usize);
                        assert!(f.skips.len() <= MAX_FETCH_ITEMS as usize);
                        if let Some((n, got)) = self.fetching.take() {
                            assert!(f.records.is_empty(), "streamed records given twice");
                            assert_eq!(got, n as usize, "records missing from the answer");
                        }
                    }
                    _ => {}
                }
            }
            assert_eq!(
                self.m.closed(),
                self.close_seen,
                "closed without saying so, or the reverse"
            );
            if answers.is_empty() {
                break;
            }
            for a in answers {
                let _ = self.m.handle(self.now, a);
            }
        }
        assert!(
            self.m.closed() || self.m.deadline().is_some(),
            "open with no deadline"
        );
    }

    /// What the application has stored for `sid`: a few records of a session it received.
    fn stored(&self, sid: &SessionId) -> FetchReply {
        let Some(s) = self
            .sessions
            .iter()
            .find(|s| s.sid == *sid && s.role == Role::Receiver)
        else {
            return FetchReply::NotFound;
        };
        let r = &s.request;
        let records = (0..r.num_packets.min(16))
            .map(|seq| DataRecord {
                seq,
                send_error: ErrorEstimate::from_raw(1),
                send_time: r.start_time,
                recv_error: ErrorEstimate::from_raw(1),
                recv_time: OwampTime::from_raw(r.start_time.raw().wrapping_add(1 << 20)),
                ttl: 255,
            })
            .collect();
        FetchReply::Found(Box::new(StoredSession {
            request: r.clone(),
            finished: Finished::Normal,
            next_seqno: r.num_packets,
            skips: Vec::new(),
            records,
        }))
    }

    /// The connection stops talking: firing the timer at each deadline closes it.
    fn run_out(&mut self) {
        for _ in 0..32 {
            if self.m.closed() {
                return;
            }
            self.timer();
        }
        panic!("still open after 32 deadlines");
    }
}

/// Flag bit 5: the machine speaks TWAMP (RFC 5357).
fn protocol(flags: u8) -> Protocol {
    if flags & 32 != 0 {
        Protocol::Twamp
    } else {
        Protocol::Owamp
    }
}

/// The header common to both targets: flags, PBKDF2 count (server) or limit (client), the
/// start time, and the RNG script.
struct Setup {
    flags: u8,
    kdf: u32,
    now: OwampTime,
    start_time: OwampTime,
    rng: InsecureScriptedRng,
}

fn setup(input: &mut Bytes<'_>) -> Setup {
    let flags = input.u8();
    let kdf = u32::from(input.u16()).min(MAX_KDF_COUNT);
    let now = OwampTime::from_raw(input.u64());
    let start_time = OwampTime::from_raw(input.u64());
    let n = usize::from(input.u8());
    let rng = InsecureScriptedRng::new([input.bytes(n)]);
    Setup {
        flags,
        kdf,
        now,
        start_time,
        rng,
    }
}

/// The server fed a client's octets (RFC 4656 3).
///
/// Input: flags (bits 0-2: the modes offered; bit 3: a test port range; bit 4: test endpoints
/// fail; bit 5: TWAMP), PBKDF2 count (u16, at most 4096), the time at the start (u64), Server-Start's
/// Start-Time (u64), RNG script (length octet and octets), then events: `0` octets from the
/// client (u16 length, octets, u16 time step), `1` the timer fires at the deadline, `2` the
/// client closes, `3` the application stops the test, `4` the clock jumps to a u64 time.
///
/// - octets, timers and the peer closing are always taken (`Ok`); the application's answers
///   may be refused, never panicked on;
/// - the machine always has a deadline until it closes, says when it closes, and transmits
///   nothing after; everything it sends is whole 16-octet blocks, and it starts with a
///   Server-Greeting offering the policy's modes;
/// - a connection that stops talking is closed by its deadlines.
pub fn control_server(data: &[u8]) {
    let mut input = Bytes::new(data);
    let s = setup(&mut input);
    let modes = Modes::from_raw(u32::from(s.flags & 7));
    let cfg = ServerConfig {
        start_time: s.start_time,
        kdf_count: s.kdf,
        test_ports: (s.flags & 8 != 0).then_some(TEST_PORTS),
        control_timeout: Duration::from_secs(10),
        end_delay: Duration::from_secs(1),
        protocol: protocol(s.flags),
        ..ServerConfig::default()
    };
    let server = Server::new(s.now, cfg, Policy { modes }, s.rng, addr(861), addr(40000));
    let mut d = Driver::new(server, s.now, s.flags & 16 != 0);
    let greeting = ServerGreeting::parse(d.sent.get(..ServerGreeting::LEN).unwrap_or_default())
        .expect("the server starts with a Server-Greeting");
    assert_eq!(greeting.modes, modes);
    assert_eq!(greeting.count, s.kdf);

    for _ in 0..MAX_EVENTS {
        if input.is_empty() || d.m.closed() {
            break;
        }
        match input.u8() % 5 {
            0 => {
                let n = usize::from(input.u16());
                let chunk = input.bytes(n);
                d.peer(Input::Received(chunk));
                d.advance(input.u16());
            }
            1 => d.timer(),
            2 => d.peer(Input::PeerClosed),
            3 => d.app(Input::StopSessions),
            _ => d.set_now(input.u64()),
        }
        assert_eq!(d.sent.len() % 16, 0, "server sent a partial block");
    }
    d.run_out();
    assert_eq!(d.sent.len() % 16, 0, "server sent a partial block");
}

/// Reads a session request command (see [`control_client`]).
fn session_request(input: &mut Bytes<'_>) -> SessionRequest {
    let role = if input.u8() & 1 == 0 {
        Role::Sender
    } else {
        Role::Receiver
    };
    let local = addr(input.u16());
    let packets = input.u32();
    let padding = input.u32();
    let start_time = OwampTime::from_raw(input.u64());
    let timeout = Interval::from_raw(input.u64());
    let n = usize::from(input.u8() % 4) + 1;
    let slots = (0..n)
        .map(|_| Slot {
            kind: if input.u8() & 1 == 0 {
                SlotKind::Exponential
            } else {
                SlotKind::Fixed
            },
            mean: Interval::from_raw(input.u64()),
        })
        .collect();
    SessionRequest {
        role,
        local,
        peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
        slots,
        packets,
        padding,
        start_time,
        timeout,
        type_p: TypeP::BEST_EFFORT,
    }
}

/// The client fed a server's octets (RFC 4656 3).
///
/// Input: flags (bits 0-2: the modes the client accepts; bit 3: it has the identity; bit 4:
/// it reads Fetch-Session answers record by record; bit 5: TWAMP), the
/// largest PBKDF2 count it accepts (u16, at most 4096), the time at the start (u64), an unused
/// u64, RNG script (length octet and octets), then events: `0` octets from the server (u16
/// length, octets, u16 time step), `1` the timer fires at the deadline, `2` the server
/// closes, `3` a Request-Session command (role octet, local port u16, packets u32, padding
/// u32, start time u64, timeout u64, slot count octet, then per slot a type octet and a u64
/// mean), `4` Start-Sessions, `5` a Fetch (SID, begin u32, end u32), `6` Close, `7` the
/// application stops the test, `8` the clock jumps to a u64 time.
///
/// - octets, timers and the server closing are always taken (`Ok`); commands may be refused,
///   never panicked on;
/// - the machine always has a deadline until it closes, says when it closes, and transmits
///   nothing after; it sends a 164-octet Set-Up-Response and then whole 16-octet blocks;
/// - a fetched session holds no more records or skip ranges than the configured limit; read
///   record by record, the records come after the head, in batches, exactly as many as it
///   announced, before the end;
/// - a connection that stops talking is closed by its deadlines.
pub fn control_client(data: &[u8]) {
    let mut input = Bytes::new(data);
    let s = setup(&mut input);
    let cfg = ClientConfig {
        modes: Modes::from_raw(u32::from(s.flags & 7)),
        identity: (s.flags & 8 != 0).then(|| Identity {
            key_id: KEY_ID.to_vec(),
            passphrase: PASSPHRASE.into(),
        }),
        control_timeout: Duration::from_secs(10),
        end_delay: Duration::from_secs(1),
        max_kdf_count: s.kdf,
        max_fetch_items: MAX_FETCH_ITEMS,
        protocol: protocol(s.flags),
    };
    let mut client = Client::new(s.now, cfg, s.rng);
    if s.flags & 16 != 0 {
        client = client.with_streamed_fetch();
    }
    let mut d = Driver::new(client, s.now, false);
    let check_blocks = |sent: &[u8]| {
        if let Some(rest) = sent.len().checked_sub(SetUpResponse::LEN) {
            assert_eq!(rest % 16, 0, "client sent a partial block");
            let setup = SetUpResponse::parse(&sent[..SetUpResponse::LEN])
                .expect("the client starts with a Set-Up-Response");
            assert!(setup.mode == Mode::Open || s.flags & 8 != 0);
        } else {
            assert!(sent.is_empty(), "client sent {} octets", sent.len());
        }
    };

    for _ in 0..MAX_EVENTS {
        if input.is_empty() || d.m.closed() {
            break;
        }
        match input.u8() % 9 {
            0 => {
                let n = usize::from(input.u16());
                let chunk = input.bytes(n);
                d.peer(Input::Received(chunk));
                d.advance(input.u16());
            }
            1 => d.timer(),
            2 => d.peer(Input::PeerClosed),
            3 => {
                let r = session_request(&mut input);
                d.app(Input::Command(ClientCommand::RequestSession(r)));
            }
            4 => d.app(Input::Command(ClientCommand::StartSessions)),
            5 => {
                let sid = SessionId(input.array());
                let begin = input.u32();
                let end = input.u32();
                d.app(Input::Command(ClientCommand::Fetch { sid, begin, end }));
            }
            6 => d.app(Input::Command(ClientCommand::Close)),
            7 => d.app(Input::StopSessions),
            _ => d.set_now(input.u64()),
        }
        check_blocks(&d.sent);
    }
    d.run_out();
    check_blocks(&d.sent);
}
