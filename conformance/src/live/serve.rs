//! `conformance serve`: a strict OWAMP server for testing clients. It serves each connection
//! with our server core (every mode it is given, any test session, Fetch-Session from what it
//! received), records the connection as a trace, and reports every deviation of the client:
//!
//! - `connection/N/protocol` (3): the client broke the protocol (the core closed on it: a
//!   message that does not parse, a bad HMAC, a message out of turn), or left before its
//!   test ended;
//! - `connection/N/messages` (3.1-3.9, 4.1): the recorded trace passes [`check::check`] (every
//!   field, MBZ octet, count, slot type of every message; test packets in their sessions) and,
//!   in authenticated and encrypted modes, [`secure::open`] (every HMAC, every test packet
//!   decrypted and checked);
//! - `connection/N/session/K/schedule` (3.5, 4.1): every test packet of a session the server
//!   received left at its scheduled time (not more than 1 ms early, not later than the
//!   session's loss timeout);
//! - `connection/N/session/K/stop-sessions` (3.8): the client's Next-Seqno is at most the
//!   session's packet count, every packet received lies below it, and the skip ranges are in
//!   order and below it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use owamp_core::connection::{ServerConnection, ServerEvent};
use owamp_core::control::{CloseReason, Server, ServerConfig};
use owamp_core::io::{FetchReply, StoredSession};
use owamp_core::policy::{ServerPolicy, TestAdmission};
use owamp_core::session::schedule::Schedule;
use owamp_core::wire::{AcceptCode, Mode, Modes, SessionId};
use owamp_os::clock::{Clock, SystemClock};
use owamp_os::rng::OsRng;

use super::driver::{Alter, Driver};
use super::report::{CheckOutcome, LiveReport};
use crate::check;
use crate::secure::{self, Opened};
use crate::trace::Direction;

/// A fault the server commits on purpose, to test a probe (a test double of a broken server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Sets one bit of an MBZ octet of the Server-Greeting (octet 60).
    FlipGreetingMbz,
    /// Never sends its own Stop-Sessions (open mode: the message is dropped on the way out).
    SkipStopSessions,
}

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The modes offered.
    pub modes: Modes,
    /// Identities and passphrases for authenticated and encrypted modes.
    pub identities: Vec<(String, Vec<u8>)>,
    /// Where each connection's trace is written (created if needed); `None`: not written.
    pub traces: Option<PathBuf>,
    /// The longest a connection may last.
    pub connection_limit: Duration,
    /// How long the server waits for the client when it is the client's turn.
    pub control_timeout: Duration,
    /// A fault to commit (tests of probes only).
    pub fault: Option<Fault>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            modes: Modes::ALL,
            identities: Vec::new(),
            traces: None,
            connection_limit: Duration::from_secs(600),
            control_timeout: Duration::from_secs(60),
            fault: None,
        }
    }
}

/// The policy: the modes and identities configured, every test admitted.
pub(super) struct Strict {
    pub(super) modes: Modes,
    pub(super) identities: Vec<(String, Vec<u8>)>,
}

impl ServerPolicy for Strict {
    fn modes(&mut self, _addr: IpAddr) -> Modes {
        self.modes
    }
    fn passphrase(&mut self, key_id: &[u8]) -> Option<owamp_core::crypto::Passphrase> {
        self.identities
            .iter()
            .find(|(id, _)| id.as_bytes() == key_id)
            .map(|(_, p)| owamp_core::crypto::Passphrase::new(p.clone()))
    }
    fn admit_test(&mut self, _test: &TestAdmission<'_>) -> Result<(), AcceptCode> {
        Ok(())
    }
}

type ServerDriver = Driver<Server<Strict, OsRng>>;

/// Serves `count` connections (`None`: until the listener fails) from `listener`, one at a
/// time, calling `each` with the checks of each connection as it ends; returns them all.
pub fn serve(
    cfg: &ServeConfig,
    listener: &TcpListener,
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
    let mut store: HashMap<SessionId, StoredSession> = HashMap::new();
    let mut n = 0;
    while count.map_or(true, |c| n < c) {
        let Ok((stream, peer)) = listener.accept() else {
            break;
        };
        n += 1;
        let checks = serve_one(cfg, stream, peer, n, start_time, &mut store);
        each(&checks);
        for c in checks {
            report.push(c);
        }
    }
    report
}

fn serve_one(
    cfg: &ServeConfig,
    stream: std::net::TcpStream,
    peer: SocketAddr,
    n: usize,
    start_time: owamp_core::time::OwampTime,
    store: &mut HashMap<SessionId, StoredSession>,
) -> Vec<CheckOutcome> {
    let name = |s: &str| format!("connection/{n}/{s}");
    let local = stream
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let policy = Strict {
        modes: cfg.modes,
        identities: cfg.identities.clone(),
    };
    let control = ServerConfig {
        start_time,
        control_timeout: cfg.control_timeout,
        end_delay: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let now = SystemClock::new().now();
    let conn = ServerConnection::server(now, control, policy, OsRng, local, peer);
    let mut drv: ServerDriver = match Driver::new(conn, stream, Direction::ServerToClient) {
        Ok(d) => d,
        Err(e) => {
            return vec![outcome(
                &name("protocol"),
                "3",
                "a connection",
                Err(e.to_string()),
                None,
            )]
        }
    };
    match cfg.fault {
        Some(Fault::FlipGreetingMbz) => {
            drv.control_hook = Some(Box::new(|i, b| {
                if i == 0 {
                    if let Some(o) = b.get_mut(60) {
                        *o ^= 0x01;
                    }
                }
                Alter::Send
            }))
        }
        Some(Fault::SkipStopSessions) => {
            drv.control_hook = Some(Box::new(|_, b| {
                if b.first() == Some(&owamp_core::wire::StopSessions::COMMAND) {
                    Alter::Drop
                } else {
                    Alter::Send
                }
            }))
        }
        None => {}
    }
    let mut in_test = false;
    let mut complete = false;
    drv.pump(cfg.connection_limit, |d| {
        while let Some(e) = d.events.pop_front() {
            match e {
                ServerEvent::Started => in_test = true,
                ServerEvent::TestComplete => complete = true,
                ServerEvent::FetchRequest { sid, .. } => {
                    let reply = match d
                        .stored
                        .iter()
                        .find(|s| s.request.sid == sid)
                        .or_else(|| store.get(&sid))
                    {
                        Some(s) => FetchReply::Found(Box::new(s.clone())),
                        None => FetchReply::NotFound,
                    };
                    let now = d.now();
                    d.conn.fetch_reply(now, reply);
                }
                ServerEvent::SessionAccepted(_) => {}
            }
        }
        false
    });
    let mut checks = Vec::new();
    // Protocol: how the connection ended.
    let protocol = match (&drv.closed, drv.peer_closed) {
        (Some(CloseReason::Protocol(e)), _) => Err(format!("the client broke the protocol: {e}")),
        (Some(CloseReason::Timeout), _) => Err("the client stopped answering".into()),
        _ if in_test && !complete => {
            Err("the client left during the test, before Stop-Sessions".into())
        }
        (_, true) | (Some(_), _) => Ok(if complete {
            "set up, tested, stopped and closed".into()
        } else {
            "set up and closed".into()
        }),
        (None, false) => Err(format!(
            "the connection still open after {:?}",
            cfg.connection_limit
        )),
    };
    let mode = drv.conn.mode();
    let key_id = drv
        .conn
        .key_id()
        .map(|k| String::from_utf8_lossy(k).into_owned());
    let passphrase = key_id.as_ref().and_then(|k| {
        cfg.identities
            .iter()
            .find(|(id, _)| id == k)
            .map(|(_, p)| p.clone())
    });
    let (local_addr, peer_addr) = drv.addrs();
    let mut headers = vec![
        ("scenario", format!("connection-{n}")),
        (
            "provenance",
            "recorded by conformance serve (the server side)".to_string(),
        ),
        ("mode", trace_mode_name(mode).to_string()),
        (
            "identity",
            key_id.clone().unwrap_or_else(|| "<none>".into()),
        ),
        (
            "passphrase-hex",
            passphrase
                .as_ref()
                .map(hex::encode)
                .unwrap_or_else(|| "<none>".into()),
        ),
    ];
    if let Some(l) = local_addr {
        headers.push(("server-control", l.to_string()));
    }
    if let Some(p) = peer_addr {
        headers.push(("client-control", p.to_string()));
    }
    let trace = drv.rec.to_trace(&headers);
    let trace_file = cfg.traces.as_ref().and_then(|dir| {
        let path = dir.join(format!("connection-{n:03}.trace"));
        std::fs::write(&path, trace.to_text())
            .ok()
            .map(|()| path.display().to_string())
    });
    checks.push(outcome(
        &name("protocol"),
        "3",
        "a client that follows the protocol to the end of its test",
        protocol,
        trace_file.clone(),
    ));
    // Messages: every field of every message (and in A/E every HMAC and test packet).
    let messages = (|| {
        let r = check::check(&trace);
        if let Some(f) = r.findings.first() {
            return Err(f.to_string());
        }
        match secure::open(&trace, None)? {
            Opened::Readable(ex) if ex.keys.is_some() => Ok(format!(
                "every message well formed; {} HMACs and {} test packets verified",
                ex.hmacs, ex.test_packets
            )),
            Opened::Readable(_) => Ok("every message and test packet well formed".into()),
            Opened::Unreadable(why) => Err(why),
        }
    })();
    checks.push(outcome(
        &name("messages"),
        "3.1-3.9, 4.1",
        "every message and test packet of the client well formed (zero MBZ, valid fields), every HMAC verified",
        messages,
        trace_file.clone(),
    ));
    // The sessions the server received.
    for (k, s) in drv.stored.iter().enumerate() {
        let k = k + 1;
        checks.push(outcome(
            &name(&format!("session/{k}/schedule")),
            "3.5, 4.1",
            "every test packet sent at its scheduled time (at most 1 ms early, no later than the loss timeout)",
            schedule_check(s),
            trace_file.clone(),
        ));
        checks.push(outcome(
            &name(&format!("session/{k}/stop-sessions")),
            "3.8",
            "Next-Seqno at most the packet count and above every packet received; skip ranges in order below it",
            stop_check(s),
            trace_file.clone(),
        ));
    }
    for s in drv.stored.drain(..) {
        // Kept for fetches on later connections; the oldest go first past a bound.
        if store.len() >= 64 {
            if let Some(k) = store.keys().next().copied() {
                store.remove(&k);
            }
        }
        store.insert(s.request.sid, s);
    }
    checks
}

fn trace_mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Open => "open",
        Mode::Authenticated => "authenticated",
        Mode::Encrypted => "encrypted",
    }
}

fn outcome(
    name: &str,
    section: &str,
    expected: &str,
    found: Result<String, String>,
    trace: Option<String>,
) -> CheckOutcome {
    let (passed, seen) = match found {
        Ok(s) => (true, s),
        Err(s) => (false, s),
    };
    CheckOutcome {
        name: name.into(),
        section: section.into(),
        passed,
        expected: expected.into(),
        seen,
        trace,
    }
}

/// Every received packet's send timestamp against its slot (RFC 4656 3.5, 4.1).
fn schedule_check(s: &StoredSession) -> Result<String, String> {
    let req = &s.request;
    let schedule = Schedule::new(req.sid, &req.slots, req.num_packets)
        .map_err(|e| format!("the schedule cannot be computed: {e:?}"))?;
    let late_limit = req.timeout.to_duration();
    let mut early = Vec::new();
    let mut late = Vec::new();
    let mut checked = 0;
    for r in s.records.iter().filter(|r| !r.is_lost()) {
        let Some(due) = schedule.send_time(req.start_time, r.seq) else {
            early.push(format!("seq {} beyond the schedule", r.seq));
            continue;
        };
        checked += 1;
        let d = r.send_time.diff_nanos(due);
        if d < -1_000_000 {
            early.push(format!("seq {} {:.3} ms early", r.seq, -d as f64 / 1e6));
        } else if d > 0 && Duration::from_nanos(d.unsigned_abs()) > late_limit {
            late.push(format!("seq {} {:.3} s late", r.seq, d as f64 / 1e9));
        }
    }
    if early.is_empty() && late.is_empty() {
        Ok(format!("{checked} packets on schedule"))
    } else {
        let mut v = early;
        v.extend(late);
        let more = v.len().saturating_sub(5);
        v.truncate(5);
        Err(format!(
            "{}{}",
            v.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ))
    }
}

/// The client's Stop-Sessions for a session it sent (RFC 4656 3.8).
fn stop_check(s: &StoredSession) -> Result<String, String> {
    if !s.finished.is_finished() {
        return Err(format!(
            "the session ended without Stop-Sessions ({:?})",
            s.finished
        ));
    }
    let next = s.next_seqno;
    let count = s.request.num_packets;
    if next > count {
        return Err(format!("Next-Seqno {next} above the packet count {count}"));
    }
    if let Some(r) = s.records.iter().find(|r| !r.is_lost() && r.seq >= next) {
        return Err(format!(
            "packet {} received, at or past Next-Seqno {next}",
            r.seq
        ));
    }
    let mut prev: Option<u32> = None;
    for r in &s.skips {
        if !r.is_ordered() || r.last >= next || prev.is_some_and(|p| r.first <= p) {
            return Err(format!(
                "skip range {}-{} out of order or not below Next-Seqno {next}",
                r.first, r.last
            ));
        }
        prev = Some(r.last);
    }
    Ok(format!(
        "Next-Seqno {next} of {count}, {} skip ranges",
        s.skips.len()
    ))
}
