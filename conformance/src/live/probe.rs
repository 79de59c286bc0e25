//! `conformance probe`: the client side of OWAMP (RFC 4656) against any server, checked step
//! by step. Each check names the RFC section it tests and the trace file of its exchange.
//!
//! The checks ([`owamp_checks`] runs them in this order):
//!
//! - `greeting` (3.1): 64 octets, a Modes word with at least one known mode, zero MBZ, a
//!   Count of at least 1024.
//! - For each mode the server offers (O, A, E; A and E need an identity), one connection:
//!   `mode/M/set-up` (3.1), `mode/M/request-session` (3.5: a session in each direction),
//!   `mode/M/start-sessions` (3.6), `mode/M/server-sends` (4.1: every packet of the session
//!   the client receives arrives), `mode/M/stop-sessions` (3.8), `mode/M/fetch-complete` and
//!   `mode/M/fetch-partial` (3.9: the session the server received, whole and a range).
//! - `set-up/wrong-passphrase`, `set-up/unknown-identity` (3.1): Server-Start refuses.
//! - `request/zero-packets`, `request/absurd-count` (2^32-1 packets for the server to
//!   receive), `request/impossible-schedule` (10^9 packets 1 us apart for the server to
//!   send) (3.5): Accept-Session refuses. The last two are refusals for want of resources:
//!   a server with no limits configured may accept them, and the check then fails.
//! - `stop-sessions/skip-ranges` (3.8): packets the client left unsent and declared skipped
//!   come back as skip ranges in Fetch-Session (3.9).
//! - `malformed/truncated`, `malformed/mbz`, `malformed/hmac`: the server closes the
//!   connection, and `.../next-client`: it serves the next client.

use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use owamp_core::connection::ClientEvent;
use owamp_core::control::{Client, ClientConfig, CloseReason, Identity, Role, SessionRequest};
use owamp_core::io::{FetchedSession, SessionInfo};
use owamp_core::time::{Interval, OwampTime};
use owamp_core::wire::{
    Mode, Modes, RequestSession, ServerGreeting, SessionStop, SkipRange, Slot, SlotKind,
    StopSessions, TypeP,
};
use owamp_os::rng::OsRng;

use super::driver::{Alter, Driver};
use super::report::{CheckOutcome, LiveReport};
use crate::trace::Direction;

/// The OWAMP control port (RFC 4656 2).
pub const OWAMP_PORT: u16 = 861;

/// How to probe a server.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// The server's control address.
    pub server: SocketAddr,
    /// The identity for authenticated and encrypted modes.
    pub identity: Option<Identity>,
    /// Where the trace of each exchange is written (created if needed); `None`: not written.
    pub traces: Option<PathBuf>,
    /// The longest wait for any one answer of the server.
    pub timeout: Duration,
    /// Test packets per session.
    pub packets: u32,
    /// Interval between test packets.
    pub interval: Duration,
}

impl ProbeConfig {
    /// Defaults for `server`: no identity, no traces, 10 s per answer, 10 packets 10 ms apart.
    pub fn new(server: SocketAddr) -> Self {
        Self {
            server,
            identity: None,
            traces: None,
            timeout: Duration::from_secs(10),
            packets: 10,
            interval: Duration::from_millis(10),
        }
    }
}

/// `HOST[:PORT]` (port 861 when left out; IPv6 as `[addr]:port` or a bare address) as a
/// socket address.
pub fn resolve(target: &str) -> Result<SocketAddr, String> {
    resolve_with_port(target, OWAMP_PORT)
}

/// [`resolve`] with `port` when the target names none (862 for TWAMP).
pub fn resolve_with_port(target: &str, port: u16) -> Result<SocketAddr, String> {
    if let Ok(a) = target.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = target.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let with_port = if target.contains(':') {
        target.to_string()
    } else {
        format!("{target}:{port}")
    };
    with_port
        .to_socket_addrs()
        .map_err(|e| format!("{target}: {e}"))?
        .next()
        .ok_or_else(|| format!("{target}: no address"))
}

type ClientDriver = Driver<Client<OsRng>>;

/// Runs every OWAMP check against the server of `cfg`.
pub fn owamp_checks(cfg: &ProbeConfig) -> LiveReport {
    let mut p = Probe {
        cfg: cfg.clone(),
        report: LiveReport::default(),
        written: 0,
    };
    if let Some(dir) = &cfg.traces {
        if let Err(e) = std::fs::create_dir_all(dir) {
            p.report
                .not_run
                .push(format!("traces: cannot create {}: {e}", dir.display()));
            p.cfg.traces = None;
        }
    }
    let Some(modes) = p.greeting() else {
        return p.report;
    };
    for mode in Mode::ALL {
        if !modes.contains(mode) {
            continue;
        }
        if mode.is_secure() && cfg.identity.is_none() {
            p.report.not_run.push(format!(
                "mode/{}: the server offers it; give -u ID -k PFSFILE to test it",
                mode_name(mode)
            ));
            continue;
        }
        p.full_session(mode);
    }
    p.refused_set_up(modes);
    p.refused_requests(modes);
    p.skip_ranges(modes);
    p.malformed(modes);
    p.report
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Open => "open",
        Mode::Authenticated => "authenticated",
        Mode::Encrypted => "encrypted",
    }
}

struct Probe {
    cfg: ProbeConfig,
    report: LiveReport,
    written: usize,
}

/// What one check found: passed or not, and what was seen.
type Found = Result<String, String>;

impl Probe {
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
            section: section.into(),
            passed,
            expected: expected.into(),
            seen,
            trace: trace.clone(),
        });
    }

    /// Writes the exchange of `drv` as `NN-scenario.trace`; returns the file's path.
    fn write_trace(
        &mut self,
        scenario: &str,
        drv: &ClientDriver,
        mode: Mode,
        identity: Option<&Identity>,
        note: &str,
    ) -> Option<String> {
        let dir = self.cfg.traces.clone()?;
        let (local, peer) = drv.addrs();
        let mut headers = vec![
            ("scenario", scenario.to_string()),
            (
                "provenance",
                format!("recorded by conformance probe against {}", self.cfg.server),
            ),
            ("mode", mode_name(mode).to_string()),
        ];
        match identity {
            Some(id) => {
                headers.push(("identity", String::from_utf8_lossy(&id.key_id).into_owned()));
                headers.push(("passphrase-hex", hex::encode(id.passphrase.as_bytes())));
            }
            None => {
                headers.push(("identity", "<none>".into()));
                headers.push(("passphrase-hex", "<none>".into()));
            }
        }
        if let Some(p) = peer {
            headers.push(("server-control", p.to_string()));
        }
        if let Some(l) = local {
            headers.push(("client-control", l.to_string()));
        }
        if !note.is_empty() {
            headers.push(("probe-note", note.to_string()));
        }
        let t = drv.rec.to_trace(&headers);
        self.written += 1;
        let file = format!("{:02}-{}.trace", self.written, scenario.replace('/', "-"));
        let path = dir.join(file);
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

    fn tcp(&self) -> Result<TcpStream, String> {
        TcpStream::connect_timeout(&self.cfg.server, self.cfg.timeout)
            .map_err(|e| format!("cannot connect to {}: {e}", self.cfg.server))
    }

    /// A client connection that wants `mode` only.
    fn connect(&self, mode: Mode, identity: Option<Identity>) -> Result<ClientDriver, String> {
        let stream = self.tcp()?;
        let cfg = ClientConfig {
            modes: Modes::EMPTY.with(mode),
            identity,
            control_timeout: self.cfg.timeout,
            end_delay: Duration::from_millis(300),
            ..ClientConfig::default()
        };
        let conn = owamp_core::connection::ClientConnection::client(
            owamp_os::clock::Clock::now(&owamp_os::clock::SystemClock::new()),
            cfg,
            OsRng,
        );
        Driver::new(conn, stream, Direction::ClientToServer).map_err(|e| e.to_string())
    }

    fn identity_for(&self, mode: Mode) -> Option<Identity> {
        if mode.is_secure() {
            self.cfg.identity.clone()
        } else {
            None
        }
    }

    /// The mode the probe uses for a check that needs some mode: open if offered, else the
    /// first secure mode it has an identity for.
    fn some_mode(&self, modes: Modes) -> Option<Mode> {
        Mode::ALL
            .into_iter()
            .find(|m| modes.contains(*m) && (!m.is_secure() || self.cfg.identity.is_some()))
    }

    /// `greeting` (RFC 4656 3.1): returns the modes offered.
    fn greeting(&mut self) -> Option<Modes> {
        let expected = "a 64-octet Server-Greeting with a non-zero Modes word of known modes \
                        (1, 2, 4), zero MBZ octets and a Count of at least 1024";
        let mut drv = match self.connect(Mode::Open, None) {
            Ok(d) => d,
            Err(e) => {
                self.check("greeting", "3.1", expected, Err(e), &None);
                return None;
            }
        };
        // Set up in open mode when offered, so the trace holds a whole exchange; the
        // greeting is read from what was recorded either way.
        let _ = self.set_up(&mut drv);
        let now = drv.now();
        drv.conn.close(now);
        drv.pump(Duration::from_millis(100), |_| false);
        let bytes = drv.rec.stream(Direction::ServerToClient);
        let trace = self.write_trace("greeting", &drv, Mode::Open, None, "");
        let found = (|| {
            let g = bytes.get(..ServerGreeting::LEN).ok_or_else(|| {
                format!(
                    "{} octets before {}",
                    bytes.len(),
                    if drv.peer_closed {
                        "the server closed"
                    } else {
                        "the timeout"
                    }
                )
            })?;
            let greeting = ServerGreeting::parse(g).map_err(|e| e.to_string())?;
            let raw = greeting.modes.raw();
            if raw == 0 {
                return Err("Modes 0: the server refuses every client".to_string());
            }
            if raw & !Modes::ALL.raw() != 0 {
                return Err(format!("Modes {raw:#x}: bits beyond 1, 2 and 4"));
            }
            if greeting.count < 1024 {
                return Err(format!("Count {}", greeting.count));
            }
            Ok(format!("Modes {raw:#x}, Count {}", greeting.count))
        })();
        let modes = found
            .as_ref()
            .ok()
            .and_then(|_| bytes.get(..ServerGreeting::LEN))
            .and_then(|g| ServerGreeting::parse(g).ok())
            .map(|g| g.modes.known());
        self.check("greeting", "3.1", expected, found, &trace);
        modes
    }

    /// Sets up `drv` (RFC 4656 3.1): waits for Connected, or says why not.
    fn set_up(&self, drv: &mut ClientDriver) -> Found {
        let mut seen = None;
        drv.pump(self.cfg.timeout, |d| {
            while let Some(e) = d.events.pop_front() {
                if let ClientEvent::Connected { mode, .. } = e {
                    seen = Some(mode);
                    return true;
                }
            }
            false
        });
        match seen {
            Some(m) => Ok(format!("Server-Start Accept 0, mode {}", mode_name(m))),
            None => Err(ended(drv, "Server-Start")),
        }
    }

    fn request(&self, role: Role, packets: u32, start: OwampTime) -> SessionRequest {
        let local_ip = match self.cfg.server.ip() {
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        };
        SessionRequest {
            role,
            local: SocketAddr::new(local_ip, 0),
            peer: self.cfg.server.ip(),
            slots: vec![Slot {
                kind: SlotKind::Fixed,
                mean: Interval::saturating_from_duration(self.cfg.interval),
            }],
            packets,
            padding: 0,
            start_time: start,
            timeout: Interval::saturating_from_duration(Duration::from_secs(1)),
            type_p: TypeP::BEST_EFFORT,
        }
    }

    /// Requests a session: its info, or the Accept code / reason it failed.
    fn request_session(
        &self,
        drv: &mut ClientDriver,
        req: SessionRequest,
    ) -> Result<SessionInfo, String> {
        if let Err(e) = drv.conn.request_session(with_local_ip(req, drv)) {
            return Err(format!("the probe could not ask: {e}"));
        }
        let mut out = None;
        drv.pump(self.cfg.timeout, |d| {
            while let Some(e) = d.events.pop_front() {
                match e {
                    ClientEvent::SessionAccepted(i) => {
                        out = Some(Ok(*i));
                        return true;
                    }
                    ClientEvent::SessionRejected { accept } => {
                        out = Some(Err(format!("Accept-Session Accept {}", accept.to_u8())));
                        return true;
                    }
                    ClientEvent::SocketFailed => {
                        out = Some(Err("the probe could not open a test socket".into()));
                        return true;
                    }
                    _ => {}
                }
            }
            false
        });
        out.unwrap_or_else(|| Err(ended(drv, "Accept-Session")))
    }

    fn wait_event(
        &self,
        drv: &mut ClientDriver,
        limit: Duration,
        mut pick: impl FnMut(ClientEvent) -> Option<Result<String, String>>,
    ) -> Option<Result<String, String>> {
        let mut out = None;
        drv.pump(limit, |d| {
            while let Some(e) = d.events.pop_front() {
                if let Some(r) = pick(e) {
                    out = Some(r);
                    return true;
                }
            }
            false
        });
        out
    }

    fn fetch(
        &self,
        drv: &mut ClientDriver,
        sid: owamp_core::wire::SessionId,
        begin: u32,
        end: u32,
    ) -> Result<FetchedSession, String> {
        let now = drv.now();
        drv.conn
            .fetch(now, sid, begin, end)
            .map_err(|e| format!("the probe could not ask: {e}"))?;
        let mut out = None;
        drv.pump(self.cfg.timeout, |d| {
            while let Some(e) = d.events.pop_front() {
                match e {
                    ClientEvent::Fetched(f) => {
                        out = Some(Ok(*f));
                        return true;
                    }
                    ClientEvent::FetchDenied { accept } => {
                        out = Some(Err(format!("Fetch-Ack Accept {}", accept.to_u8())));
                        return true;
                    }
                    _ => {}
                }
            }
            false
        });
        out.unwrap_or_else(|| Err(ended(drv, "the Fetch-Session answer")))
    }

    /// How long a test of `packets` takes at most, with the loss timeout and margins.
    fn test_limit(&self) -> Duration {
        self.cfg.interval * self.cfg.packets + Duration::from_secs(4) + self.cfg.timeout
    }

    /// A session each way in `mode`, stopped, fetched whole and in part.
    fn full_session(&mut self, mode: Mode) {
        let m = mode_name(mode);
        let identity = self.identity_for(mode);
        let name = |s: &str| format!("mode/{m}/{s}");
        let mut drv = match self.connect(mode, identity.clone()) {
            Ok(d) => d,
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
        let mut results: Vec<(String, &str, &str, Found)> = Vec::new();
        let setup = self.set_up(&mut drv);
        let ok = setup.is_ok();
        results.push((
            name("set-up"),
            "3.1",
            "Server-Start Accept 0 in the mode asked for",
            setup,
        ));
        if ok {
            self.run_session(&mut drv, &name, &mut results);
        }
        let now = drv.now();
        drv.conn.close(now);
        drv.pump(Duration::from_millis(200), |_| false);
        let trace = self.write_trace(&format!("mode-{m}"), &drv, mode, identity.as_ref(), "");
        for (n, s, e, f) in results {
            self.check(&n, s, e, f, &trace);
        }
    }

    fn run_session(
        &self,
        drv: &mut ClientDriver,
        name: &dyn Fn(&str) -> String,
        results: &mut Vec<(String, &'static str, &'static str, Found)>,
    ) {
        let n = self.cfg.packets;
        let start = drv.now().saturating_add(Duration::from_millis(1500));
        let send = self.request_session(drv, self.request(Role::Sender, n, start));
        let recv = match &send {
            Ok(_) => self.request_session(drv, self.request(Role::Receiver, n, start)),
            Err(_) => Err("not asked: the first request failed".into()),
        };
        let requested = match (&send, &recv) {
            (Ok(s), Ok(r)) => Ok(format!(
                "both accepted: server receives on port {}, sends from port {}",
                s.peer.port(),
                r.peer.port()
            )),
            (Err(e), _) => Err(format!("client-sends session: {e}")),
            (_, Err(e)) => Err(format!("client-receives session: {e}")),
        };
        results.push((
            name("request-session"),
            "3.5",
            "Accept-Session Accept 0 with a port, for a session in each direction",
            requested,
        ));
        let (Ok(send), Ok(recv)) = (send, recv) else {
            return;
        };
        let now = drv.now();
        let started = match drv.conn.start_sessions(now) {
            Err(e) => Err(format!("the probe could not ask: {e}")),
            Ok(()) => self
                .wait_event(drv, self.cfg.timeout, |e| match e {
                    ClientEvent::Started => Some(Ok("Start-Ack Accept 0".into())),
                    _ => None,
                })
                .unwrap_or_else(|| Err(ended(drv, "Start-Ack"))),
        };
        let ok = started.is_ok();
        results.push((name("start-sessions"), "3.6", "Start-Ack Accept 0", started));
        if !ok {
            return;
        }
        let complete = self
            .wait_event(drv, self.test_limit(), |e| match e {
                ClientEvent::TestComplete => Some(Ok("both Stop-Sessions exchanged".into())),
                _ => None,
            })
            .unwrap_or_else(|| Err(ended(drv, "the server's Stop-Sessions")));
        let stored = drv.stored.iter().find(|s| s.request.sid == recv.sid);
        let sent = match stored {
            None => Err("no session received (the test did not end)".to_string()),
            Some(s) => {
                let got = s.records.iter().filter(|r| !r.is_lost()).count();
                if s.next_seqno != n {
                    Err(format!(
                        "Stop-Sessions Next-Seqno {} for {n} packets",
                        s.next_seqno
                    ))
                } else if got != n as usize {
                    Err(format!("{got} of {n} packets arrived"))
                } else {
                    Ok(format!("{got} of {n} packets arrived, Next-Seqno {n}"))
                }
            }
        };
        results.push((
            name("server-sends"),
            "4.1",
            "every test packet of the session the client receives, and Next-Seqno equal to the packet count",
            sent,
        ));
        let ok = complete.is_ok();
        results.push((
            name("stop-sessions"),
            "3.8",
            "the server's Stop-Sessions, describing its send session",
            complete,
        ));
        if !ok {
            return;
        }
        // The part first: a server may delete a session once it was fetched whole.
        let (b, e) = (2.min(n - 1), 5.min(n - 1));
        let part = self.fetch(drv, send.sid, b, e).and_then(|f| {
            let seqs: Vec<u32> = f.records.iter().map(|r| r.seq).collect();
            if seqs != (b..=e).collect::<Vec<_>>() {
                return Err(format!("records {}", seq_list(&seqs)));
            }
            Ok(format!("records {}", seq_list(&seqs)))
        });
        results.push((
            name("fetch-partial"),
            "3.9",
            "exactly the records of sequence numbers 2 to 5",
            part,
        ));
        let whole = self.fetch(drv, send.sid, 0, u32::MAX).and_then(|f| {
            let seqs: Vec<u32> = f.records.iter().map(|r| r.seq).collect();
            let lost = f.records.iter().filter(|r| r.is_lost()).count();
            if f.request.sid != send.sid {
                return Err("the stored Request-Session has another SID".into());
            }
            if f.next_seqno != n || seqs != (0..n).collect::<Vec<_>>() || lost != 0 {
                return Err(format!(
                    "Next-Seqno {}, records {}, {lost} lost",
                    f.next_seqno,
                    seq_list(&seqs)
                ));
            }
            Ok(format!(
                "{n} records, none lost, Next-Seqno {n}, finished {:?}",
                f.finished
            ))
        });
        results.push((
            name("fetch-complete"),
            "3.9",
            "Fetch-Ack Accept 0 and one received record per packet sent, in order",
            whole,
        ));
    }

    /// `set-up/wrong-passphrase` and `set-up/unknown-identity` (RFC 4656 3.1).
    fn refused_set_up(&mut self, modes: Modes) {
        let Some(mode) = [Mode::Authenticated, Mode::Encrypted]
            .into_iter()
            .find(|m| modes.contains(*m))
        else {
            self.report.not_run.push(
                "set-up/*: the server offers neither authenticated nor encrypted mode".into(),
            );
            return;
        };
        let expected = "Server-Start with a non-zero Accept, then the connection closed";
        let mut cases = Vec::new();
        match &self.cfg.identity {
            Some(id) => {
                let mut wrong = id.clone();
                let mut octets = wrong.passphrase.as_bytes().to_vec();
                octets.extend_from_slice(b"-wrong");
                wrong.passphrase = octets.into();
                cases.push(("set-up/wrong-passphrase", wrong));
            }
            None => self
                .report
                .not_run
                .push("set-up/wrong-passphrase: needs -u ID -k PFSFILE".into()),
        }
        cases.push((
            "set-up/unknown-identity",
            Identity {
                key_id: b"conformance-probe-unknown".to_vec(),
                passphrase: b"no such identity".to_vec().into(),
            },
        ));
        for (name, id) in cases {
            let mut drv = match self.connect(mode, Some(id.clone())) {
                Ok(d) => d,
                Err(e) => {
                    self.check(name, "3.1", expected, Err(e), &None);
                    continue;
                }
            };
            let found = match self.set_up(&mut drv) {
                Ok(_) => Err("Server-Start Accept 0: the server accepted".to_string()),
                Err(_) => match drv.closed.clone() {
                    Some(CloseReason::SetupRejected(a)) => {
                        if drv.wait_peer_close(self.cfg.timeout) {
                            Ok(format!(
                                "Server-Start Accept {}, connection closed",
                                a.to_u8()
                            ))
                        } else {
                            Err(format!(
                                "Server-Start Accept {}, but the connection stayed open",
                                a.to_u8()
                            ))
                        }
                    }
                    _ => Err(ended(&drv, "Server-Start")),
                },
            };
            let trace = self.write_trace(name, &drv, mode, Some(&id), "");
            self.check(name, "3.1", expected, found, &trace);
        }
    }

    /// Requests the server should refuse (RFC 4656 3.5).
    fn refused_requests(&mut self, modes: Modes) {
        let expected = "Accept-Session with a non-zero Accept";
        if modes.contains(Mode::Open) {
            // Number of Packets (octets 8..12 of Request-Session) set to 0 on the way out:
            // the client core never asks for it.
            self.refused_request(
                "request/zero-packets",
                Mode::Open,
                Role::Sender,
                1,
                Duration::from_millis(1500),
                "Number of Packets altered to 0",
                Box::new(|_, b| {
                    if b.first() == Some(&RequestSession::COMMAND) && b.len() >= 112 {
                        b[8..12].fill(0);
                    }
                    Alter::Send
                }),
                expected,
            );
        } else {
            self.report
                .not_run
                .push("request/zero-packets: needs open mode (the request is altered)".into());
        }
        let Some(mode) = self.some_mode(modes) else {
            return;
        };
        self.refused_request(
            "request/absurd-count",
            mode,
            Role::Sender,
            u32::MAX,
            Duration::from_millis(1500),
            "Number of Packets 4294967295",
            Box::new(|_, _| Alter::Send),
            expected,
        );
        self.impossible_schedule(mode, expected);
    }

    /// `request/impossible-schedule`: the server to send 10^9 packets 1 us apart.
    fn impossible_schedule(&mut self, mode: Mode, expected: &str) {
        let name = "request/impossible-schedule";
        let identity = self.identity_for(mode);
        let mut drv = match self.connect(mode, identity.clone()) {
            Ok(d) => d,
            Err(e) => {
                self.check(name, "3.5", expected, Err(e), &None);
                return;
            }
        };
        let found = self.set_up(&mut drv).and_then(|_| {
            let start = drv.now().saturating_add(Duration::from_millis(1500));
            let mut req = self.request(Role::Receiver, 1_000_000_000, start);
            req.slots = vec![Slot {
                kind: SlotKind::Fixed,
                mean: Interval::saturating_from_duration(Duration::from_micros(1)),
            }];
            match self.request_session(&mut drv, req) {
                Ok(_) => Err("Accept-Session Accept 0: the server accepted".to_string()),
                Err(e) if e.starts_with("Accept-Session Accept") => Ok(e),
                Err(e) => Err(e),
            }
        });
        let now = drv.now();
        drv.conn.close(now);
        drv.pump(Duration::from_millis(100), |_| false);
        let note = "the server to send 1000000000 packets 1 us apart";
        let trace = self.write_trace(name, &drv, mode, identity.as_ref(), note);
        self.check(name, "3.5", expected, found, &trace);
    }

    #[allow(clippy::too_many_arguments)]
    fn refused_request(
        &mut self,
        name: &str,
        mode: Mode,
        role: Role,
        packets: u32,
        start_in: Duration,
        note: &str,
        hook: super::driver::ControlHook,
        expected: &str,
    ) {
        let identity = self.identity_for(mode);
        let mut drv = match self.connect(mode, identity.clone()) {
            Ok(d) => d,
            Err(e) => {
                self.check(name, "3.5", expected, Err(e), &None);
                return;
            }
        };
        drv.control_hook = Some(hook);
        let found = self.set_up(&mut drv).and_then(|_| {
            let start = drv.now().saturating_add(start_in);
            match self.request_session(&mut drv, self.request(role, packets, start)) {
                Ok(_) => Err("Accept-Session Accept 0: the server accepted".to_string()),
                Err(e) if e.starts_with("Accept-Session Accept") => Ok(e),
                Err(e) => Err(e),
            }
        });
        let now = drv.now();
        drv.conn.close(now);
        drv.pump(Duration::from_millis(100), |_| false);
        let trace = self.write_trace(name, &drv, mode, identity.as_ref(), note);
        self.check(name, "3.5", expected, found, &trace);
    }

    /// `stop-sessions/skip-ranges` (RFC 4656 3.8, 3.9): open mode; packets 3 to 5 are left
    /// unsent and the client's Stop-Sessions declares them skipped.
    fn skip_ranges(&mut self, modes: Modes) {
        let name = "stop-sessions/skip-ranges";
        let expected = "Fetch-Session returns Next-Seqno 10 and the skip range 3-5 the client's \
                        Stop-Sessions declared, with the other 7 packets received";
        if !modes.contains(Mode::Open) {
            self.report.not_run.push(format!(
                "{name}: needs open mode (Stop-Sessions is rewritten)"
            ));
            return;
        }
        let mut drv = match self.connect(Mode::Open, None) {
            Ok(d) => d,
            Err(e) => {
                self.check(name, "3.8", expected, Err(e), &None);
                return;
            }
        };
        let n = 10;
        let found = self.set_up(&mut drv).and_then(|_| {
            let start = drv.now().saturating_add(Duration::from_millis(1000));
            let info = self.request_session(&mut drv, self.request(Role::Sender, n, start))?;
            let sid = info.sid;
            drv.packet_hook = Some(Box::new(|seq| !(3..=5).contains(&seq)));
            drv.control_hook = Some(Box::new(move |_, b| {
                if b.first() == Some(&StopSessions::COMMAND) {
                    *b = StopSessions {
                        accept: owamp_core::wire::AcceptCode::Ok,
                        sessions: vec![SessionStop {
                            sid,
                            next_seqno: n,
                            skip_ranges: vec![SkipRange { first: 3, last: 5 }],
                        }],
                        hmac: [0; 16],
                    }
                    .to_bytes();
                }
                Alter::Send
            }));
            let now = drv.now();
            drv.conn
                .start_sessions(now)
                .map_err(|e| format!("the probe could not ask: {e}"))?;
            self.wait_event(&mut drv, self.test_limit(), |e| match e {
                ClientEvent::TestComplete => Some(Ok(String::new())),
                _ => None,
            })
            .unwrap_or_else(|| Err(ended(&drv, "the server's Stop-Sessions")))?;
            let f = self.fetch(&mut drv, sid, 0, u32::MAX)?;
            let skips: Vec<(u32, u32)> = f.skips.iter().map(|s| (s.first, s.last)).collect();
            let received: Vec<u32> = f
                .records
                .iter()
                .filter(|r| !r.is_lost())
                .map(|r| r.seq)
                .collect();
            let want: Vec<u32> = (0..n).filter(|s| !(3..=5).contains(s)).collect();
            let seen = format!(
                "Next-Seqno {}, skip ranges {skips:?}, received {}, {} records in all",
                f.next_seqno,
                seq_list(&received),
                f.records.len()
            );
            if f.next_seqno == n && skips == [(3, 5)] && received == want {
                Ok(seen)
            } else {
                Err(seen)
            }
        });
        let now = drv.now();
        drv.conn.close(now);
        drv.pump(Duration::from_millis(100), |_| false);
        let trace = self.write_trace(
            name,
            &drv,
            Mode::Open,
            None,
            "packets 3-5 left unsent; the client's Stop-Sessions rewritten to skip them",
        );
        self.check(name, "3.8", expected, found, &trace);
    }

    /// Malformed input: the connection must close, and the server serve the next client.
    fn malformed(&mut self, modes: Modes) {
        type Hook = fn() -> super::driver::ControlHook;
        let mut cases: Vec<(&str, &str, Mode, &str, Hook)> = Vec::new();
        let secure = [Mode::Authenticated, Mode::Encrypted]
            .into_iter()
            .find(|m| modes.contains(*m) && self.cfg.identity.is_some());
        if let Some(mode) = self.some_mode(modes) {
            cases.push((
                "malformed/truncated",
                "3.5",
                mode,
                "Request-Session cut after 40 octets, then the client's half closed",
                || {
                    Box::new(|i, b| {
                        // The first transmit is the Set-Up-Response; the second the request.
                        if i == 1 {
                            Alter::SendAndShutdown(b[..40.min(b.len())].to_vec())
                        } else {
                            Alter::Send
                        }
                    })
                },
            ));
        }
        if modes.contains(Mode::Open) {
            cases.push((
                "malformed/mbz",
                "3.5",
                Mode::Open,
                "Request-Session with MBZ octet 88 set to 0x01",
                || {
                    Box::new(|_, b| {
                        if b.first() == Some(&RequestSession::COMMAND) && b.len() >= 112 {
                            b[88] = 0x01;
                        }
                        Alter::Send
                    })
                },
            ));
        } else {
            self.report
                .not_run
                .push("malformed/mbz: needs open mode (the request is altered)".into());
        }
        match secure {
            Some(mode) => cases.push((
                "malformed/hmac",
                "3.5",
                mode,
                "Request-Session with octet 100 of its ciphertext (in its first HMAC) flipped",
                || {
                    Box::new(|i, b| {
                        if i == 1 {
                            if let Some(o) = b.get_mut(100) {
                                *o ^= 0x01;
                            }
                        }
                        Alter::Send
                    })
                },
            )),
            None => self.report.not_run.push(
                "malformed/hmac: needs authenticated or encrypted mode and -u ID -k PFSFILE".into(),
            ),
        }
        for (name, section, mode, note, hook) in cases {
            self.malformed_case(name, section, mode, note, hook());
        }
    }

    fn malformed_case(
        &mut self,
        name: &str,
        section: &str,
        mode: Mode,
        note: &str,
        hook: super::driver::ControlHook,
    ) {
        let identity = self.identity_for(mode);
        let expected = "the server closes the control connection without accepting the request";
        let found = match self.connect(mode, identity.clone()) {
            Err(e) => Err(e),
            Ok(mut drv) => {
                drv.control_hook = Some(hook);
                let found = self.set_up(&mut drv).and_then(|_| {
                    let start = drv.now().saturating_add(Duration::from_millis(1500));
                    let req = with_local_ip(self.request(Role::Sender, 1, start), &drv);
                    drv.conn
                        .request_session(req)
                        .map_err(|e| format!("the probe could not ask: {e}"))?;
                    let mut accepted = false;
                    drv.pump(self.cfg.timeout, |d| {
                        while let Some(e) = d.events.pop_front() {
                            if matches!(e, ClientEvent::SessionAccepted(_)) {
                                accepted = true;
                            }
                        }
                        accepted || d.peer_closed
                    });
                    if accepted {
                        return Err("Accept-Session Accept 0: the server took the request".into());
                    }
                    if drv.peer_closed || drv.wait_peer_close(self.cfg.timeout) {
                        Ok("the server closed the connection".into())
                    } else {
                        Err(format!(
                            "the connection still open after {:?}",
                            self.cfg.timeout
                        ))
                    }
                });
                let trace = self.write_trace(name, &drv, mode, identity.as_ref(), note);
                self.check(name, section, expected, found.clone(), &trace);
                found
            }
        };
        if let Err(e) = &found {
            if e.starts_with("cannot connect") {
                self.check(name, section, expected, found.clone(), &None);
            }
        }
        self.next_client(&format!("{name}/next-client"), section);
    }

    /// The server still serves: a new connection sets up and has a request accepted.
    fn next_client(&mut self, name: &str, section: &str) {
        let expected = "a new client is set up and its Request-Session accepted";
        let mode = Mode::ALL
            .into_iter()
            .find(|m| !m.is_secure())
            .unwrap_or(Mode::Open);
        let (mode, identity) = match self.cfg.identity.clone() {
            Some(id) => (Mode::Authenticated, Some(id)),
            None => (mode, None),
        };
        let try_mode = |p: &Self, mode: Mode, identity: Option<Identity>| {
            let mut drv = p.connect(mode, identity)?;
            p.set_up(&mut drv)?;
            let start = drv.now().saturating_add(Duration::from_millis(1500));
            let r = p.request_session(&mut drv, p.request(Role::Sender, 1, start));
            let now = drv.now();
            drv.conn.close(now);
            drv.pump(Duration::from_millis(100), |_| false);
            r.map(|_| "set up and accepted".to_string())
        };
        // Open first; the identity's modes when the server does not offer open mode.
        let found = try_mode(self, Mode::Open, None).or_else(|e| {
            if identity.is_some() {
                try_mode(self, mode, identity.clone())
            } else {
                Err(e)
            }
        });
        self.check(name, section, expected, found, &None);
    }
}

/// A request from the control connection's local address (the server checks the client's
/// test address against it in open mode, RFC 4656 7).
fn with_local_ip(mut req: SessionRequest, drv: &ClientDriver) -> SessionRequest {
    if let (Some(local), _) = drv.addrs() {
        if req.local.ip().is_unspecified() {
            req.local.set_ip(local.ip());
        }
    }
    req
}

/// What the connection did instead of answering `what`.
fn ended(drv: &ClientDriver, what: &str) -> String {
    match &drv.closed {
        Some(CloseReason::SetupRejected(a)) => format!("Server-Start Accept {}", a.to_u8()),
        Some(CloseReason::StartRejected(a)) => format!("Start-Ack Accept {}", a.to_u8()),
        Some(CloseReason::Protocol(e)) => format!("the probe's client closed: {e}"),
        Some(CloseReason::Timeout) => format!("no {what} in time"),
        Some(r) => format!("the connection closed ({r:?}) before {what}"),
        None if drv.peer_closed => format!("the server closed the connection before {what}"),
        None => format!("no {what} within the probe's timeout"),
    }
}

/// `0-2,6-9` for a list of sequence numbers.
fn seq_list(seqs: &[u32]) -> String {
    if seqs.is_empty() {
        return "none".into();
    }
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < seqs.len() {
        let mut j = i;
        while j + 1 < seqs.len() && seqs[j + 1] == seqs[j].wrapping_add(1) {
            j += 1;
        }
        out.push(if i == j {
            seqs[i].to_string()
        } else {
            format!("{}-{}", seqs[i], seqs[j])
        });
        i = j + 1;
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_lists() {
        assert_eq!(seq_list(&[0, 1, 2, 6, 7, 9]), "0-2,6-7,9");
        assert_eq!(seq_list(&[]), "none");
    }

    #[test]
    fn targets_resolve() {
        assert_eq!(resolve("127.0.0.1").unwrap().port(), 861);
        assert_eq!(resolve("127.0.0.1:4000").unwrap().port(), 4000);
        assert_eq!(resolve("::1").unwrap().port(), 861);
        assert_eq!(resolve("[::1]:9").unwrap().port(), 9);
    }
}
