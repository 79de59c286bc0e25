//! `conformance probe --twamp`: the client and session-sender of TWAMP (RFC 5357) against any
//! TWAMP server, checked step by step. Each check names its RFC 5357 section and the trace
//! file of its exchange.
//!
//! The checks ([`twamp_checks`] runs them in this order):
//!
//! - `twamp/greeting` (3.1): 64 octets, a Modes word of known modes (1, 2, 4, and RFC 5618's
//!   mixed mode 8), zero MBZ, a Count of at least 1024.
//! - For each mode the server offers (O, A, E; A and E need an identity), one connection:
//!   `twamp/mode/M/set-up` (3.1), `twamp/mode/M/request-tw-session` (3.5),
//!   `twamp/mode/M/start-sessions` (3.7), `twamp/mode/M/reflected` (4.2: every packet sent
//!   comes back), `twamp/mode/M/test-packets` (4.2.1: the recorded exchange passes every check
//!   of [`crate::twamp`]: sequence numbers, copied fields and padding, Sender TTL 255 on
//!   loopback, Receive Timestamp not after the reflector's Timestamp),
//!   `twamp/mode/M/stop-sessions` (3.8: the server sends nothing back: only the client sends
//!   Stop-Sessions).
//! - `twamp/owamp-request-session` and `twamp/fetch-session` (3.5; open mode only): OWAMP's
//!   Request-Session (command 1) and Fetch-Session (command 4), which TWAMP does not have, get
//!   no answer: the server closes the connection or ignores them.
//!
//! The host is blocking and single-threaded: one TCP stream for `owamp_core::control::Client`
//! with `Protocol::Twamp`, one UDP socket for `owamp_core::session::twamp::SessionSender`.
//! Every read has a timeout of at most 20 ms (control) or the probe's answer timeout (test
//! packets), and every wait ends at a deadline.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use owamp_core::control::{
    AcceptCode, Client, ClientCommand, ClientConfig, CloseReason, Identity, Mode, Modes, Protocol,
    Role, SessionRequest,
};
use owamp_core::io::{Input, Output, SessionInfo, SessionReport};
use owamp_core::session::twamp::{default_padding, SessionSender};
use owamp_core::time::{Interval, OwampTime};
use owamp_core::wire::twamp::MIXED_MODE_BIT;
use owamp_core::wire::{ServerGreeting, Slot, SlotKind, TypeP};
use owamp_os::clock::{Clock, SystemClock};
use owamp_os::rng::OsRng;

use super::driver::Recorder;
use super::probe::ProbeConfig;
use super::report::{CheckOutcome, LiveReport};
use crate::secure::{open_as, Opened};
use crate::trace::{Direction, Trace};

/// The TWAMP-Control port (RFC 5357 2).
pub const TWAMP_PORT: u16 = 862;

/// The Timeout of each Request-TW-Session (RFC 5357 3.5): how long the reflector keeps the
/// session after Stop-Sessions, and how long the client waits for late replies before it.
const LOSS_TIMEOUT: Duration = Duration::from_millis(500);

/// What one check found: passed or not, and what was seen.
type Found = Result<String, String>;

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Open => "open",
        Mode::Authenticated => "authenticated",
        Mode::Encrypted => "encrypted",
    }
}

/// One control connection of the probe, recorded.
struct Host {
    c: Client<OsRng>,
    tcp: TcpStream,
    clock: SystemClock,
    rec: Recorder,
    connected: Option<Mode>,
    accepted: Option<SessionInfo>,
    rejected: Option<AcceptCode>,
    started: bool,
    complete: bool,
    closed: Option<CloseReason>,
    peer_closed: bool,
    error: Option<String>,
}

impl Host {
    fn connect(cfg: &ProbeConfig, mode: Mode, identity: Option<Identity>) -> Result<Host, String> {
        let tcp = TcpStream::connect_timeout(&cfg.server, cfg.timeout)
            .map_err(|e| format!("cannot connect to {}: {e}", cfg.server))?;
        tcp.set_read_timeout(Some(Duration::from_millis(20)))
            .and_then(|()| tcp.set_write_timeout(Some(cfg.timeout)))
            .map_err(|e| e.to_string())?;
        let clock = SystemClock::new();
        let ccfg = ClientConfig {
            modes: Modes::from(mode),
            identity,
            control_timeout: cfg.timeout,
            end_delay: Duration::from_millis(100),
            protocol: Protocol::Twamp,
            ..ClientConfig::default()
        };
        Ok(Host {
            c: Client::new(clock.now(), ccfg, OsRng),
            tcp,
            clock,
            rec: Recorder::default(),
            connected: None,
            accepted: None,
            rejected: None,
            started: false,
            complete: false,
            closed: None,
            peer_closed: false,
            error: None,
        })
    }

    fn now(&self) -> OwampTime {
        self.clock.now()
    }

    fn input(&mut self, i: Input<'_>) {
        let now = self.now();
        if let Err(e) = self.c.handle_input(now, i) {
            self.error.get_or_insert(e.to_string());
        }
        self.flush();
    }

    /// Writes what the client wants written and notes the rest.
    fn flush(&mut self) {
        while let Some(o) = self.c.poll_output() {
            match o {
                Output::Transmit(b) => self.send_raw(&b),
                Output::Connected { mode, .. } => self.connected = Some(mode),
                Output::SessionAccepted(i) => self.accepted = Some(*i),
                Output::SessionRejected { accept } => self.rejected = Some(accept),
                Output::StartSessions => self.started = true,
                Output::TestComplete => self.complete = true,
                Output::Close(r) => self.closed = Some(r),
                _ => {}
            }
        }
    }

    fn send_raw(&mut self, b: &[u8]) {
        self.rec.control(Direction::ClientToServer, b, None);
        if let Err(e) = self.tcp.write_all(b) {
            self.error.get_or_insert(format!("write: {e}"));
        }
    }

    /// Reads the control connection until `done` holds, the peer closes or `limit` passes.
    fn pump(&mut self, limit: Duration, done: impl Fn(&Host) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 4096];
        self.flush();
        loop {
            if done(self) {
                return true;
            }
            if self.peer_closed || self.error.is_some() || Instant::now() >= deadline {
                return false;
            }
            if let Some(t) = self.c.poll_timeout() {
                if self.now() >= t {
                    self.input(Input::Timer);
                    continue;
                }
            }
            match self.tcp.read(&mut buf) {
                Ok(0) => self.peer_closed = true,
                Ok(n) => {
                    self.rec.control(Direction::ServerToClient, &buf[..n], None);
                    if self.closed.is_none() {
                        self.input(Input::Received(&buf[..n]));
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => self.peer_closed = true,
            }
        }
    }

    /// Why a wait for `what` ended without it.
    fn ended(&self, what: &str) -> String {
        if let Some(e) = &self.error {
            format!("no {what}: {e}")
        } else if let Some(c) = &self.closed {
            format!("no {what}: the probe's client closed: {c:?}")
        } else if self.peer_closed {
            format!("no {what}: the server closed the connection")
        } else {
            format!("no {what} before the timeout")
        }
    }

    fn close(&mut self) {
        if !self.c.is_closed() {
            self.input(Input::Command(ClientCommand::Close));
        }
        let _ = self.tcp.shutdown(Shutdown::Write);
        // The server's close, briefly.
        self.pump(Duration::from_millis(200), |h| h.peer_closed);
    }
}

struct Probe<'a> {
    cfg: &'a ProbeConfig,
    report: LiveReport,
    written: usize,
}

impl Probe<'_> {
    fn check(
        &mut self,
        name: &str,
        section: &str,
        expected: &str,
        found: Found,
        trace: &Option<String>,
    ) {
        let (passed, seen) = match found {
            Ok(s) => (true, s),
            Err(s) => (false, s),
        };
        self.report.push(CheckOutcome {
            name: name.into(),
            section: format!("RFC 5357 {section}"),
            passed,
            expected: expected.into(),
            seen,
            trace: trace.clone(),
        });
    }

    fn identity_for(&self, mode: Mode) -> Option<Identity> {
        if mode.is_secure() {
            self.cfg.identity.clone()
        } else {
            None
        }
    }

    /// The exchange of `h` as a trace (with the headers `conformance run` needs).
    fn trace_of(&self, scenario: &str, h: &Host, mode: Mode) -> Trace {
        let mut headers = vec![
            ("scenario", scenario.to_string()),
            (
                "provenance",
                format!(
                    "recorded by conformance probe --twamp against {}",
                    self.cfg.server
                ),
            ),
            ("protocol", "twamp".to_string()),
            ("mode", mode_name(mode).to_string()),
        ];
        match self.identity_for(mode) {
            Some(id) => {
                headers.push(("identity", String::from_utf8_lossy(&id.key_id).into_owned()));
                headers.push(("passphrase-hex", hex::encode(id.passphrase.as_bytes())));
            }
            None => {
                headers.push(("identity", "<none>".into()));
                headers.push(("passphrase-hex", "<none>".into()));
            }
        }
        headers.push(("server-control", self.cfg.server.to_string()));
        if let Ok(l) = h.tcp.local_addr() {
            headers.push(("client-control", l.to_string()));
        }
        h.rec.to_trace(&headers)
    }

    /// Writes `t` as `NN-scenario.trace`; returns the file's path.
    fn write(&mut self, scenario: &str, t: &Trace) -> Option<String> {
        let dir = self.cfg.traces.clone()?;
        self.written += 1;
        let path = dir.join(format!(
            "{:02}-{}.trace",
            self.written,
            scenario.replace('/', "-")
        ));
        match std::fs::write(&path, t.to_text()) {
            Ok(()) => Some(path.display().to_string()),
            Err(e) => {
                self.report
                    .not_run
                    .push(format!("trace {}: {e}", path.display()));
                None
            }
        }
    }

    /// `twamp/greeting` (RFC 5357 3.1): returns the modes offered.
    fn greeting(&mut self) -> Option<u32> {
        let expected = "a 64-octet Server-Greeting with a non-zero Modes word of known modes \
                        (1, 2, 4 and RFC 5618's 8), zero MBZ octets and a Count of at least 1024";
        let mut h = match Host::connect(self.cfg, Mode::Open, None) {
            Ok(h) => h,
            Err(e) => {
                self.check("twamp/greeting", "3.1", expected, Err(e), &None);
                return None;
            }
        };
        h.pump(self.cfg.timeout, |h| {
            h.connected.is_some() || h.closed.is_some()
        });
        h.close();
        let t = self.trace_of("twamp-greeting", &h, Mode::Open);
        let trace = self.write("twamp-greeting", &t);
        let bytes = t.stream(Direction::ServerToClient);
        let found = bytes
            .get(..ServerGreeting::LEN)
            .ok_or_else(|| format!("{} octets, then {}", bytes.len(), h.ended("greeting")))
            .and_then(|g| ServerGreeting::parse(g).map_err(|e| e.to_string()))
            .and_then(|g| {
                let raw = g.modes.raw();
                if raw & (Modes::ALL.raw() | MIXED_MODE_BIT) == 0 {
                    Err(format!("Modes {raw:#x}: no mode the probe knows"))
                } else if raw & !(Modes::ALL.raw() | MIXED_MODE_BIT) != 0 {
                    Err(format!("Modes {raw:#x}: bits beyond 1, 2, 4 and 8"))
                } else if g.count < 1024 {
                    Err(format!("Count {}", g.count))
                } else {
                    Ok(g)
                }
            });
        let modes = found.as_ref().ok().map(|g| g.modes.raw());
        let found = found.map(|g| format!("Modes {:#x}, Count {}", g.modes.raw(), g.count));
        self.check("twamp/greeting", "3.1", expected, found, &trace);
        modes
    }

    /// One whole session in `mode`.
    fn full_session(&mut self, mode: Mode) {
        let m = mode_name(mode);
        let name = |c: &str| format!("twamp/mode/{m}/{c}");
        let scenario = format!("twamp-{m}");
        let mut h = match Host::connect(self.cfg, mode, self.identity_for(mode)) {
            Ok(h) => h,
            Err(e) => {
                self.check(
                    &name("set-up"),
                    "3.1",
                    "Server-Start Accept 0",
                    Err(e),
                    &None,
                );
                return;
            }
        };
        let steps = self.session_steps(&mut h, mode);
        h.close();
        let t = self.trace_of(&scenario, &h, mode);
        let trace = self.write(&scenario, &t);
        let mut failed = false;
        for (check, section, expected, found) in steps {
            failed |= found.is_err();
            self.check(&name(check), section, expected, found, &trace);
        }
        if failed {
            return;
        }
        let found = recorded_checks(&t);
        self.check(
            &name("test-packets"),
            "4.2.1",
            "the recorded exchange decrypts and verifies, and every TWAMP-Test check of `conformance run` holds",
            found,
            &trace,
        );
    }

    /// The steps of one session: (check, section, expected, found); stops at the first
    /// failure.
    fn session_steps(
        &self,
        h: &mut Host,
        mode: Mode,
    ) -> Vec<(&'static str, &'static str, &'static str, Found)> {
        let mut v = Vec::new();
        let limit = self.cfg.timeout;
        h.pump(limit, |h| h.connected.is_some());
        let found = match h.connected {
            Some(got) => Ok(format!("Server-Start Accept 0, mode {}", mode_name(got))),
            None => Err(h.ended("Server-Start")),
        };
        let ok = found.is_ok();
        v.push(("set-up", "3.1", "Server-Start Accept 0", found));
        if !ok {
            return v;
        }
        // The session-sender's socket, on the control connection's local address.
        let local_ip = h
            .tcp
            .local_addr()
            .map(|a| a.ip())
            .unwrap_or(match self.cfg.server.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            });
        let udp = match UdpSocket::bind(SocketAddr::new(local_ip, 0))
            .and_then(|u| u.set_read_timeout(Some(limit)).map(|()| u))
        {
            Ok(u) => u,
            Err(e) => {
                v.push((
                    "request-tw-session",
                    "3.5",
                    "Accept-Session Accept 0",
                    Err(format!("the probe could not open its test socket: {e}")),
                ));
                return v;
            }
        };
        // RFC 5357 4.1.2: the sender sends with TTL 255, so the Sender TTL counts hops.
        let _ = udp.set_ttl(255);
        let padding = default_padding(mode);
        let req = SessionRequest {
            role: Role::Sender,
            local: udp.local_addr().unwrap_or(SocketAddr::new(local_ip, 0)),
            peer: self.cfg.server.ip(),
            slots: vec![Slot {
                kind: SlotKind::Fixed,
                mean: Interval::saturating_from_duration(self.cfg.interval),
            }],
            packets: self.cfg.packets,
            padding,
            start_time: h
                .now()
                .saturating_add_interval(Interval::saturating_from_duration(
                    Duration::from_millis(200),
                )),
            timeout: Interval::saturating_from_duration(LOSS_TIMEOUT),
            type_p: TypeP::BEST_EFFORT,
        };
        h.input(Input::Command(ClientCommand::RequestSession(req)));
        h.pump(limit, |h| h.accepted.is_some() || h.rejected.is_some());
        let found = match (&h.accepted, h.rejected) {
            (Some(i), _) => Ok(format!("Accept 0, reflector port {}", i.peer.port())),
            (None, Some(a)) => Err(format!("Accept-Session Accept {}", a.to_u8())),
            (None, None) => Err(h.ended("Accept-Session")),
        };
        let ok = found.is_ok();
        v.push((
            "request-tw-session",
            "3.5",
            "Accept-Session Accept 0",
            found,
        ));
        let Some(info) = h.accepted.clone().filter(|_| ok) else {
            return v;
        };
        h.pump(limit, |h| h.c.is_ready());
        h.input(Input::Command(ClientCommand::StartSessions));
        h.pump(limit, |h| h.started);
        let found = if h.started {
            Ok("Start-Ack Accept 0".to_string())
        } else {
            Err(h.ended("Start-Ack"))
        };
        let ok = found.is_ok();
        v.push(("start-sessions", "3.7", "Start-Ack Accept 0", found));
        if !ok {
            return v;
        }
        let found = send_packets(h, &udp, &info, padding, self.cfg.packets, self.cfg.interval);
        v.push((
            "reflected",
            "4.2",
            "every test packet reflected to the sender's port within the timeout",
            found,
        ));
        // RFC 5357 3.8: the client ends the test (after the session's timeout for late
        // replies); the server answers nothing.
        let before = h.rec.stream(Direction::ServerToClient).len();
        h.input(Input::SessionFinished(SessionReport::completed(
            info.sid,
            self.cfg.packets,
        )));
        h.pump(limit + LOSS_TIMEOUT, |h| h.complete);
        h.pump(Duration::from_millis(300), |_| false);
        let after = h.rec.stream(Direction::ServerToClient).len();
        let found = match (&h.error, after - before) {
            (Some(e), _) => Err(format!("after Stop-Sessions: {e}")),
            (None, 0) if h.complete => Ok("Stop-Sessions sent; the server sent nothing".into()),
            (None, 0) => Err("the probe's client did not finish the test".into()),
            (None, n) => Err(format!("the server sent {n} octets after Stop-Sessions")),
        };
        v.push((
            "stop-sessions",
            "3.8",
            "the server sends nothing after the client's Stop-Sessions",
            found,
        ));
        v
    }

    /// `twamp/owamp-request-session` and `twamp/fetch-session` (RFC 5357 3.5).
    fn foreign_commands(&mut self) {
        let mut request = vec![0u8; 112 + 16 + 16];
        request[0] = 1;
        request[1] = 4;
        request[7] = 1;
        let mut fetch = vec![0u8; 48];
        fetch[0] = 4;
        for (check, bytes) in [("owamp-request-session", request), ("fetch-session", fetch)] {
            let name = format!("twamp/{check}");
            let expected = "the command refused: the server closes the connection, ignores it, or \
                            answers with Accept-Session refusals (Accept non-zero)";
            let mut h = match Host::connect(self.cfg, Mode::Open, None) {
                Ok(h) => h,
                Err(e) => {
                    self.check(&name, "3.5", expected, Err(e), &None);
                    continue;
                }
            };
            h.pump(self.cfg.timeout, |h| h.connected.is_some());
            let found = if h.connected.is_none() {
                Err(h.ended("Server-Start"))
            } else {
                let before = h.rec.stream(Direction::ServerToClient).len();
                h.send_raw(&bytes);
                // Fed to nothing: the probe's own client would refuse what the server sends.
                let mut buf = [0u8; 4096];
                let deadline = Instant::now() + Duration::from_secs(1).min(self.cfg.timeout);
                while !h.peer_closed && Instant::now() < deadline {
                    match h.tcp.read(&mut buf) {
                        Ok(0) => h.peer_closed = true,
                        Ok(n) => h.rec.control(Direction::ServerToClient, &buf[..n], None),
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(_) => h.peer_closed = true,
                    }
                }
                let sc = h.rec.stream(Direction::ServerToClient);
                let answer = sc.get(before..).unwrap_or_default();
                let closed = if h.peer_closed {
                    ", then closed the connection"
                } else {
                    ""
                };
                refusals(answer).map(|n| match n {
                    0 if h.peer_closed => "the server closed the connection".to_string(),
                    0 => "no answer within 1 s".to_string(),
                    n => format!("{n} Accept-Session refusal(s){closed}"),
                })
            };
            let _ = h.tcp.shutdown(Shutdown::Both);
            let mut t = self.trace_of(&format!("twamp-{check}"), &h, Mode::Open);
            t.push_header(
                "probe-note",
                &format!("the probe sent command {} after the set-up: not a TWAMP command, so this trace fails `conformance run` there", bytes[0]),
            );
            let trace = self.write(&format!("twamp-{check}"), &t);
            self.check(&name, "3.5", expected, found, &trace);
        }
    }
}

/// How many Accept-Session refusals (48 octets each, Accept non-zero) `answer` holds; `Err`
/// when it holds anything else (an acceptance, a partial message).
fn refusals(answer: &[u8]) -> Result<usize, String> {
    if answer.len() % 48 != 0 {
        return Err(format!(
            "the server answered with {} octets, not whole Accept-Sessions",
            answer.len()
        ));
    }
    for m in answer.chunks(48) {
        match owamp_core::wire::AcceptSession::parse(m) {
            Ok(a) if !a.accept.is_ok() => {}
            Ok(_) => return Err("the server accepted (Accept-Session Accept 0)".into()),
            Err(e) => return Err(format!("the server answered: {e}")),
        }
    }
    Ok(answer.len() / 48)
}

/// Sends `count` packets `interval` apart, each answered before the next; records both.
fn send_packets(
    h: &mut Host,
    udp: &UdpSocket,
    info: &SessionInfo,
    padding: u32,
    count: u32,
    interval: Duration,
) -> Found {
    let pad: Vec<u8> = (0..padding).map(|i| (i as u8).wrapping_mul(37)).collect();
    let mut sender = SessionSender::new(info, pad).map_err(|e| e.to_string())?;
    let local = udp.local_addr().map_err(|e| e.to_string())?;
    let (mut pkt, mut buf) = (Vec::new(), vec![0u8; 65536]);
    let mut reflected = 0;
    let mut problems = Vec::new();
    for _ in 0..count {
        let now = h.now();
        sender
            .build(now, h.clock.error_estimate(), &mut pkt)
            .map_err(|e| e.to_string())?;
        h.rec.test(local, info.peer, &pkt);
        udp.send_to(&pkt, info.peer).map_err(|e| e.to_string())?;
        match udp.recv_from(&mut buf) {
            Ok((n, from)) => {
                let reply = buf.get(..n).unwrap_or_default();
                h.rec.test(from, local, reply);
                if from != info.peer {
                    problems.push(format!("a reply from {from}, not {}", info.peer));
                    continue;
                }
                match sender.handle_reply(h.now(), 255, h.clock.error_estimate(), reply) {
                    Ok(_) => reflected += 1,
                    Err(e) => problems.push(e.to_string()),
                }
            }
            Err(e) => problems.push(format!("no reply: {e}")),
        }
        std::thread::sleep(interval);
    }
    match problems.first() {
        None => Ok(format!("{reflected} of {count} reflected")),
        Some(p) => Err(format!(
            "{reflected} of {count} reflected; first problem: {p}"
        )),
    }
}

/// The checks `conformance run` makes of a TWAMP trace, on a recorded exchange.
fn recorded_checks(t: &Trace) -> Found {
    let ex = match open_as(t, None, Some(Protocol::Twamp))? {
        Opened::Readable(ex) => ex,
        Opened::Unreadable(why) => return Err(why),
    };
    let checks = crate::twamp::check_test_packets(&ex)?;
    crate::twamp::summary(&checks)
}

/// Runs every TWAMP check against the server of `cfg` (its port: 862 unless given).
pub fn twamp_checks(cfg: &ProbeConfig) -> LiveReport {
    let mut p = Probe {
        cfg,
        report: LiveReport::default(),
        written: 0,
    };
    if let Some(dir) = &cfg.traces {
        if let Err(e) = std::fs::create_dir_all(dir) {
            p.report
                .not_run
                .push(format!("traces: cannot create {}: {e}", dir.display()));
        }
    }
    let Some(modes) = p.greeting() else {
        return p.report;
    };
    let offered = Modes::from_raw(modes);
    for mode in [Mode::Open, Mode::Authenticated, Mode::Encrypted] {
        if !offered.contains(mode) {
            continue;
        }
        if mode.is_secure() && cfg.identity.is_none() {
            p.report.not_run.push(format!(
                "twamp/mode/{}: the server offers it; give -u ID -k PFSFILE to test it",
                mode_name(mode)
            ));
            continue;
        }
        p.full_session(mode);
    }
    if offered.contains(Mode::Open) {
        p.foreign_commands();
    } else {
        p.report
            .not_run
            .push("twamp/owamp-request-session, twamp/fetch-session: need open mode".into());
    }
    p.report
}

/// `conformance serve --twamp`: serves `count` TWAMP control connections (`None`: until the
/// listener fails) from `listener`, one at a time, with our TWAMP server core and
/// session-reflector (`Protocol::Twamp`, `session::twamp::Reflector`), offering the modes and
/// identities of `cfg`, admitting every session; calls `each` with the checks of each
/// connection as it ends; returns them all. The checks, each of the client:
///
/// - `connection/N/protocol` (RFC 5357 3): no message our core refuses (a field that does not
///   parse, a bad HMAC, a message out of turn), and a test that was started ended with the
///   client's Stop-Sessions (3.8) before it closed;
/// - `connection/N/messages` (3.1-3.8): the recorded trace passes the TWAMP check and, in A/E,
///   decrypts with every HMAC and test packet verified;
/// - `connection/N/test-packets` (4.1.2, 4.2.1): every check of [`crate::twamp`] holds (the
///   sender's rules test the client; the reflector's test our own reflector).
pub fn serve_twamp(
    cfg: &super::serve::ServeConfig,
    listener: &std::net::TcpListener,
    count: Option<usize>,
    mut each: impl FnMut(&[CheckOutcome]),
) -> LiveReport {
    let mut report = LiveReport::default();
    if let Some(dir) = &cfg.traces {
        if let Err(e) = std::fs::create_dir_all(dir) {
            report
                .not_run
                .push(format!("traces: cannot create {}: {e}", dir.display()));
        }
    }
    let clock = SystemClock::new();
    let start_time = clock.now();
    let mut n = 0;
    while count.map_or(true, |c| n < c) {
        let Ok((stream, peer)) = listener.accept() else {
            break;
        };
        n += 1;
        let checks = serve_one(cfg, stream, peer, n, start_time, &clock);
        each(&checks);
        for c in checks {
            report.push(c);
        }
    }
    report
}

/// What one served connection saw.
#[derive(Default)]
struct Served {
    rec: Recorder,
    closed: Option<CloseReason>,
    started: bool,
    stopped: bool,
    peer_closed: bool,
    error: Option<String>,
}

fn serve_one(
    cfg: &super::serve::ServeConfig,
    mut tcp: TcpStream,
    peer: SocketAddr,
    n: usize,
    start_time: OwampTime,
    clock: &SystemClock,
) -> Vec<CheckOutcome> {
    use owamp_core::control::{Server, ServerConfig};
    use owamp_core::session::twamp::Reflector;
    let mut out = Served::default();
    let _ = tcp.set_read_timeout(Some(Duration::from_millis(5)));
    let _ = tcp.set_write_timeout(Some(cfg.control_timeout));
    let local = tcp
        .local_addr()
        .unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
    let policy = super::serve::Strict {
        modes: cfg.modes,
        identities: cfg.identities.clone(),
    };
    let scfg = ServerConfig {
        start_time,
        control_timeout: cfg.control_timeout,
        protocol: Protocol::Twamp,
        ..ServerConfig::default()
    };
    let mut server = Server::new(clock.now(), scfg, policy, OsRng, local, peer);
    let mut socket: Option<UdpSocket> = None;
    let mut reflector: Option<(Reflector, SocketAddr)> = None;
    let (mut buf, mut dgram, mut reply) = ([0u8; 4096], vec![0u8; 65536], Vec::new());
    let deadline = Instant::now() + cfg.connection_limit;
    let handle =
        |server: &mut Server<super::serve::Strict, OsRng>, out: &mut Served, i: Input<'_>| {
            if let Err(e) = server.handle_input(clock.now(), i) {
                out.error.get_or_insert(e.to_string());
            }
        };
    'conn: while Instant::now() < deadline {
        let mut inputs = Vec::new();
        while let Some(o) = server.poll_output() {
            match o {
                Output::Transmit(b) => {
                    out.rec.control(Direction::ServerToClient, &b, None);
                    if tcp.write_all(&b).is_err() {
                        out.peer_closed = true;
                    }
                }
                Output::PrepareTestEndpoint(e) => match UdpSocket::bind(e.local) {
                    Ok(u) => {
                        let port = u.local_addr().map(|a| a.port()).unwrap_or(0);
                        let _ = u.set_nonblocking(true);
                        socket = Some(u);
                        inputs.push((e.sid, Some(port)));
                    }
                    Err(_) => inputs.push((e.sid, None)),
                },
                Output::SessionAccepted(info) => {
                    reflector = Reflector::new(&info).ok().map(|r| (r, info.peer));
                }
                Output::StartSessions => out.started = true,
                Output::StopLocalSessions => out.stopped = true,
                Output::Close(r) => {
                    out.closed = Some(r);
                    break 'conn;
                }
                _ => {}
            }
        }
        for (sid, port) in inputs {
            let i = match port {
                Some(port) => Input::EndpointReady { sid, port },
                None => Input::EndpointFailed {
                    sid,
                    accept: AcceptCode::InternalError,
                },
            };
            handle(&mut server, &mut out, i);
        }
        if let (true, false, Some(u), Some((r, from_peer))) =
            (out.started, out.stopped, &socket, &mut reflector)
        {
            let me = u.local_addr().unwrap_or(local);
            while let Ok((len, from)) = u.recv_from(&mut dgram) {
                let at = clock.now();
                let d = dgram.get(..len).unwrap_or_default();
                out.rec.test(from, me, d);
                // std sockets cannot read the TTL: 255, as on loopback.
                if from == *from_peer
                    && r.reflect(at, 255, d, clock.now(), clock.error_estimate(), &mut reply)
                        .is_ok()
                    && u.send_to(&reply, from).is_ok()
                {
                    out.rec.test(me, from, &reply);
                }
            }
        }
        if server.poll_timeout().is_some_and(|t| clock.now() >= t) {
            handle(&mut server, &mut out, Input::Timer);
            continue;
        }
        if out.peer_closed {
            break;
        }
        match tcp.read(&mut buf) {
            Ok(0) => {
                out.peer_closed = true;
                handle(&mut server, &mut out, Input::PeerClosed);
            }
            Ok(len) => {
                out.rec
                    .control(Direction::ClientToServer, &buf[..len], None);
                handle(&mut server, &mut out, Input::Received(&buf[..len]));
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                out.peer_closed = true;
                handle(&mut server, &mut out, Input::PeerClosed);
            }
        }
    }
    let _ = tcp.shutdown(Shutdown::Both);
    // The trace, with what the runner needs to read it.
    let mode = server.mode();
    let identity = server
        .key_id()
        .map(|k| String::from_utf8_lossy(k).into_owned());
    let pass = identity.as_ref().and_then(|id| {
        cfg.identities
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, p)| hex::encode(p))
    });
    let headers = vec![
        ("scenario", format!("twamp-connection-{n:03}")),
        (
            "provenance",
            "recorded by conformance serve --twamp".to_string(),
        ),
        ("protocol", "twamp".to_string()),
        ("mode", mode_name(mode).to_string()),
        ("identity", identity.unwrap_or_else(|| "<none>".into())),
        ("passphrase-hex", pass.unwrap_or_else(|| "<none>".into())),
        ("server-control", local.to_string()),
        ("client-control", peer.to_string()),
    ];
    let t = out.rec.to_trace(&headers);
    let trace = cfg.traces.as_ref().and_then(|dir| {
        let path = dir.join(format!("twamp-connection-{n:03}.trace"));
        std::fs::write(&path, t.to_text())
            .ok()
            .map(|()| path.display().to_string())
    });
    let name = |c: &str| format!("connection/{n}/{c}");
    let outcome = |c: &str, section: &str, expected: &str, found: Found| {
        let (passed, seen) = match found {
            Ok(s) => (true, s),
            Err(s) => (false, s),
        };
        CheckOutcome {
            name: name(c),
            section: format!("RFC 5357 {section}"),
            passed,
            expected: expected.into(),
            seen,
            trace: trace.clone(),
        }
    };
    let mut checks = Vec::new();
    let protocol = match (&out.closed, &out.error) {
        (Some(CloseReason::Protocol(e)), _) => Err(format!("our server closed: {e}")),
        (_, Some(e)) => Err(format!("our server refused an input: {e}")),
        _ if out.started && !out.stopped => {
            Err("the client left during its test, without Stop-Sessions".into())
        }
        _ if out.stopped => Ok("a whole test, ended by the client's Stop-Sessions".into()),
        _ => Ok("no protocol error".into()),
    };
    checks.push(outcome(
        "protocol",
        "3",
        "no message our core refuses; a started test ended with the client's Stop-Sessions",
        protocol,
    ));
    let report = crate::check::check_as(&t, Protocol::Twamp);
    let messages = match report.findings.first() {
        Some(f) => Err(f.to_string()),
        None => match open_as(&t, None, Some(Protocol::Twamp)) {
            Err(e) => Err(e),
            Ok(Opened::Unreadable(why)) => Err(why),
            Ok(Opened::Readable(ex)) => Ok((
                format!(
                    "{} messages, {} control HMACs, {} test packets verified",
                    ex.messages.len(),
                    ex.hmacs,
                    ex.test_packets
                ),
                ex,
            )),
        },
    };
    let ex = messages.as_ref().ok().map(|(_, ex)| ex.clone());
    checks.push(outcome(
        "messages",
        "3.1-3.8",
        "every message and test packet of the trace valid (every HMAC verified in A/E)",
        messages.map(|(s, _)| s),
    ));
    if let Some(ex) = ex.filter(|ex| ex.accepted && out.started) {
        let found = crate::twamp::check_test_packets(&ex).and_then(|c| crate::twamp::summary(&c));
        checks.push(outcome(
            "test-packets",
            "4.1.2, 4.2.1",
            "every TWAMP-Test check of `conformance run` holds",
            found,
        ));
    }
    checks
}
