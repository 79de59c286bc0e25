//! Checks one trace: splits each control direction into OWAMP-Control (or TWAMP-Control)
//! messages, checks every message that is in the clear, checks that the encrypted part has the
//! framing its mode implies, and checks the test packets.
//!
//! TWAMP-Control (RFC 5357 3) is OWAMP-Control with Request-TW-Session (command 5, 112 octets)
//! for Request-Session, a 32-octet Stop-Sessions that only the client sends, and no
//! Fetch-Session. Which protocol a trace speaks is decided by [`protocol_of`].
//!
//! What is checked depends on what the trace shows:
//! - open mode, or a decrypted trace (`.plain.trace`): every message is split and checked
//!   (RFC 4656 3.1-3.9); test packets must belong to a session that Request-Session and
//!   Accept-Session set up, with a sequence number below its packet count (RFC 4656 4.1.2);
//! - authenticated or encrypted mode on the wire: the clear prefix (Server-Greeting, the Mode
//!   of Set-Up-Response, the first 32 octets of Server-Start) is checked, and the rest of each
//!   direction must be whole 16-octet AES blocks (RFC 4656 3.4); test packets must be at least
//!   48 octets, and in authenticated mode their clear second block is checked (RFC 4656 4.1.2).

use std::collections::VecDeque;
use std::fmt;

use crate::frame::{be16, be32, frame, Context, Framed, MsgKind};
use owamp_core::control::Protocol;
use owamp_core::wire::{Mode as WireMode, ReflectorPacket, RequestTwSession, TestPacket};

use crate::trace::{Direction, Event, Mode, Trace};

/// A problem found in a trace, located as precisely as the trace allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// 1-based line of the trace holding the offending octet.
    pub line: usize,
    /// What and where, e.g. `S>C message 2 (Server-Start), byte 3 (stream offset 67)`.
    pub place: String,
    /// Why it is wrong.
    pub why: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}: {}", self.line, self.place, self.why)
    }
}

/// A control message found in a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Who sent it.
    pub dir: Direction,
    /// 1-based index among that direction's messages.
    pub index: usize,
    /// What it is.
    pub kind: MsgKind,
    /// Stream offset of its first octet.
    pub start: usize,
    /// Its length in octets.
    pub len: usize,
}

/// What a check saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The mode, from the Set-Up-Response (or the trace header when that is missing).
    pub mode: Option<Mode>,
    /// Whether the control bytes after the clear prefix were readable.
    pub clear: bool,
    /// Messages split off each direction, in stream order.
    pub messages: Vec<Message>,
    /// Octets of ciphertext checked for framing only: (C>S, S>C).
    pub opaque: (usize, usize),
    /// Test packets checked.
    pub test_packets: usize,
    /// Test packets matched to a session set up on the control connection.
    pub matched_test_packets: usize,
    /// Problems, in the order found.
    pub findings: Vec<Finding>,
    /// The protocol the trace was checked as.
    pub protocol: Protocol,
    /// Messages that could not be split off (a finding stopped their direction there): the
    /// direction, the kind expected and the stream offset of its first octet.
    pub unsplit: Vec<(Direction, MsgKind, usize)>,
}

impl Report {
    /// The messages of one kind.
    pub fn count(&self, kind: MsgKind) -> usize {
        self.messages.iter().filter(|m| m.kind == kind).count()
    }
}

/// One direction's bytes with the trace line of each segment.
#[derive(Default)]
struct Stream {
    bytes: Vec<u8>,
    /// (stream offset of a segment's first octet, its trace line)
    segments: Vec<(usize, usize)>,
    pos: usize,
    count: usize,
}

impl Stream {
    fn line_of(&self, offset: usize) -> usize {
        match self.segments.binary_search_by(|(o, _)| o.cmp(&offset)) {
            Ok(i) => self.segments[i].1,
            Err(0) => self.segments.first().map_or(0, |s| s.1),
            Err(i) => self.segments[i - 1].1,
        }
    }

    fn rest(&self) -> &[u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }
}

/// A test session set up on the control connection.
#[derive(Debug, Clone)]
struct Session {
    sender_port: u16,
    receiver_port: u16,
    packets: u32,
}

#[derive(Default)]
struct Walker {
    /// TWAMP-Control rather than OWAMP-Control.
    twamp: bool,
    /// The bytes after the clear prefix can be read.
    clear: bool,
    mode: Option<Mode>,
    offered: Option<u32>,
    c: Stream,
    s: Stream,
    setup_done: bool,
    /// Server side: 0 Greeting next, 1 Server-Start next, 2 commands, 3 closed.
    server_phase: u8,
    server_accept: u8,
    /// Responses the server owes, in order.
    owed: VecDeque<MsgKind>,
    /// Parts the server must send next (after an accepting Fetch-Ack): kind and count.
    forced: VecDeque<(MsgKind, (u32, u32))>,
    started: bool,
    server_stopped: bool,
    /// Request-Sessions awaiting Accept-Session: sender port, receiver port, packets,
    /// conf-sender.
    requests: VecDeque<(u16, u16, u32, bool)>,
    sessions: Vec<Session>,
    messages: Vec<Message>,
    findings: Vec<Finding>,
    unsplit: Vec<(Direction, MsgKind, usize)>,
    /// Set once a finding stops a direction.
    stuck: [bool; 2],
}

fn di(dir: Direction) -> usize {
    match dir {
        Direction::ClientToServer => 0,
        Direction::ServerToClient => 1,
    }
}

impl Walker {
    fn st(&self, dir: Direction) -> &Stream {
        match dir {
            Direction::ClientToServer => &self.c,
            Direction::ServerToClient => &self.s,
        }
    }

    fn st_mut(&mut self, dir: Direction) -> &mut Stream {
        match dir {
            Direction::ClientToServer => &mut self.c,
            Direction::ServerToClient => &mut self.s,
        }
    }

    fn fail(&mut self, dir: Direction, kind: MsgKind, offset: usize, why: String) {
        let st = self.st(dir);
        let so = st.pos + offset;
        let line = st.line_of(so);
        let place = format!(
            "{dir} message {} ({kind}), byte {offset} (stream offset {so})",
            st.count + 1
        );
        let pos = st.pos;
        self.findings.push(Finding { line, place, why });
        self.unsplit.push((dir, kind, pos));
        self.stuck[di(dir)] = true;
    }

    /// Frames the next message of `kind`; on success takes it off the stream and returns its
    /// octets.
    fn next(&mut self, dir: Direction, kind: MsgKind, ctx: Context) -> Option<Vec<u8>> {
        match frame(kind, self.st(dir).rest(), &ctx) {
            Framed::NeedMore(_) => None,
            Framed::Bad(b) => {
                self.fail(dir, kind, b.offset, b.why);
                None
            }
            Framed::Ok(len) => {
                let st = self.st_mut(dir);
                let start = st.pos;
                let m = st.bytes.get(start..start + len)?.to_vec();
                st.pos += len;
                st.count += 1;
                let index = st.count;
                self.messages.push(Message {
                    dir,
                    index,
                    kind,
                    start,
                    len,
                });
                Some(m)
            }
        }
    }

    fn ctx(&self, counts: (u32, u32)) -> Context {
        Context {
            clear: self.clear,
            offered_modes: self.offered,
            counts,
        }
    }

    /// One step on the client side; false when nothing more can be done yet.
    fn client_step(&mut self) -> bool {
        use Direction::ClientToServer as C;
        if self.stuck[0] || self.c.rest().is_empty() {
            return false;
        }
        if !self.setup_done {
            let Some(m) = self.next(C, MsgKind::SetUpResponse, self.ctx((0, 0))) else {
                return false;
            };
            self.setup_done = true;
            self.mode = be32(&m, 0).and_then(Mode::from_word);
            if self.mode == Some(Mode::Open) {
                self.clear = true;
            }
            return true;
        }
        if !self.clear {
            return false;
        }
        let command = self.c.rest()[0];
        let kind = client_kind(self.twamp, true, command);
        if self.twamp && matches!(command, 1 | 4) {
            // RFC 5357 3.5, 3.9: no Request-Session and no Fetch-Session in TWAMP.
            let why = format!(
                "command {command} is not a TWAMP-Control command: a TWAMP client requests sessions with Request-TW-Session (5) and fetches nothing (RFC 5357 3.5)"
            );
            self.fail(C, MsgKind::Command, 0, why);
            return false;
        }
        let Some(m) = self.next(C, kind, self.ctx((0, 0))) else {
            return false;
        };
        match kind {
            MsgKind::RequestTwSession => {
                // The server reflects (RFC 5357 3.5): its Accept-Session port is the
                // receiver's; TWAMP counts no packets.
                self.owed.push_back(MsgKind::AcceptSession);
                self.requests.push_back((
                    be16(&m, 12).unwrap_or(0),
                    be16(&m, 14).unwrap_or(0),
                    u32::MAX,
                    false,
                ));
            }
            MsgKind::RequestSession => {
                self.owed.push_back(MsgKind::AcceptSession);
                self.requests.push_back((
                    be16(&m, 12).unwrap_or(0),
                    be16(&m, 14).unwrap_or(0),
                    be32(&m, 8).unwrap_or(0),
                    m.get(2) == Some(&1),
                ));
            }
            MsgKind::StartSessions => self.owed.push_back(MsgKind::StartAck),
            MsgKind::FetchSession => self.owed.push_back(MsgKind::FetchAck),
            _ => {}
        }
        true
    }

    /// One step on the server side; false when nothing more can be done yet.
    fn server_step(&mut self) -> bool {
        use Direction::ServerToClient as S;
        if self.stuck[1] || self.s.rest().is_empty() {
            return false;
        }
        match self.server_phase {
            0 => {
                let Some(m) = self.next(S, MsgKind::ServerGreeting, self.ctx((0, 0))) else {
                    return false;
                };
                self.offered = be32(&m, 12);
                self.server_phase = 1;
                true
            }
            1 => {
                // Server-Start's last block is clear only in open mode; the Set-Up-Response
                // that chose the mode comes first in any real exchange.
                if !self.setup_done {
                    return false;
                }
                let Some(m) = self.next(S, MsgKind::ServerStart, self.ctx((0, 0))) else {
                    return false;
                };
                self.server_accept = m[15];
                self.server_phase = if m[15] == 0 { 2 } else { 3 };
                true
            }
            3 => {
                let n = self.s.rest().len();
                let why = format!(
                    "{n} octet(s) after a Server-Start with Accept={}: the server must close the connection (RFC 4656 3.1)",
                    self.server_accept
                );
                self.fail(S, MsgKind::ServerStart, 0, why);
                false
            }
            _ => {
                if !self.clear {
                    return false;
                }
                let (kind, count) = if let Some(&f) = self.forced.front() {
                    f
                } else if !self.twamp
                    && self.s.rest()[0] == 3
                    && self.started
                    && !self.server_stopped
                {
                    // RFC 4656 3.8; in TWAMP only the client sends Stop-Sessions (RFC 5357 3.8).
                    (MsgKind::StopSessions, (0, 0))
                } else if let Some(&k) = self.owed.front() {
                    (k, (0, 0))
                } else {
                    // Either the request is not parsed yet, or there is none: decided at the
                    // end of the trace.
                    return false;
                };
                let Some(m) = self.next(S, kind, self.ctx(count)) else {
                    return false;
                };
                match kind {
                    MsgKind::StopSessions => self.server_stopped = true,
                    MsgKind::RequestSession | MsgKind::FetchData if !self.forced.is_empty() => {
                        self.forced.pop_front();
                    }
                    MsgKind::AcceptSession => {
                        self.owed.pop_front();
                        let req = self.requests.pop_front();
                        if let (Some((sp, rp, n, conf_sender)), 0) = (req, m[0]) {
                            let port = be16(&m, 2).unwrap_or(0);
                            // The server's port fills the end the server plays (RFC 4656 3.5).
                            let (sender_port, receiver_port) =
                                if conf_sender { (port, rp) } else { (sp, port) };
                            self.sessions.push(Session {
                                sender_port,
                                receiver_port,
                                packets: n,
                            });
                        }
                    }
                    MsgKind::StartAck => {
                        self.owed.pop_front();
                        if m[0] == 0 {
                            self.started = true;
                            self.server_stopped = false;
                        }
                    }
                    MsgKind::FetchAck => {
                        self.owed.pop_front();
                        if m[0] == 0 {
                            // RFC 4656 3.8: the stored Request-Session, then the skip ranges
                            // and the records, each with its HMAC.
                            self.forced.push_back((MsgKind::RequestSession, (0, 0)));
                            let counts = (be32(&m, 8).unwrap_or(0), be32(&m, 12).unwrap_or(0));
                            self.forced.push_back((MsgKind::FetchData, counts));
                        }
                    }
                    _ => {}
                }
                true
            }
        }
    }

    /// What is left at the end of the trace.
    fn finish(&mut self) {
        for dir in [Direction::ClientToServer, Direction::ServerToClient] {
            if self.stuck[di(dir)] {
                continue;
            }
            let rest = self.st(dir).rest().len();
            if rest == 0 {
                continue;
            }
            let prefix_done = match dir {
                Direction::ClientToServer => self.setup_done,
                Direction::ServerToClient => self.server_phase >= 2,
            };
            if prefix_done && !self.clear {
                // Ciphertext: whole AES blocks (RFC 4656 3.4).
                if rest % 16 != 0 {
                    let why = format!(
                        "{rest} octet(s) of ciphertext after the clear prefix is not a whole number of 16-octet blocks"
                    );
                    let st = self.st(dir);
                    let so = st.bytes.len() - rest % 16;
                    self.findings.push(Finding {
                        line: st.line_of(so),
                        place: format!("{dir} ciphertext, stream offset {so}"),
                        why,
                    });
                }
                continue;
            }
            // Clear bytes that form no whole message.
            let (kind, count) = match dir {
                Direction::ClientToServer => (
                    client_kind(self.twamp, self.setup_done, self.c.rest()[0]),
                    (0, 0),
                ),
                Direction::ServerToClient => match self.server_phase {
                    0 => (MsgKind::ServerGreeting, (0, 0)),
                    1 if !self.setup_done => {
                        let why = format!(
                            "{rest} octet(s) after the Server-Greeting, but the client sent no Set-Up-Response"
                        );
                        self.fail(dir, MsgKind::ServerStart, 0, why);
                        continue;
                    }
                    1 => (MsgKind::ServerStart, (0, 0)),
                    _ => match self
                        .forced
                        .front()
                        .copied()
                        .or(self.owed.front().map(|&k| (k, (0, 0))))
                    {
                        Some(k) => k,
                        None => {
                            let why = format!(
                                "{rest} octet(s) the server sent with no request outstanding (first octet {})",
                                self.s.rest()[0]
                            );
                            self.fail(dir, MsgKind::Command, 0, why);
                            continue;
                        }
                    },
                },
            };
            let need = match frame(kind, self.st(dir).rest(), &self.ctx(count)) {
                Framed::NeedMore(n) => n,
                _ => rest,
            };
            let why = format!("truncated: need {need} octets, the trace ends after {rest}");
            self.fail(dir, kind, 0, why);
        }
    }
}

/// The kind of the client's next message, by its first octet.
fn client_kind(twamp: bool, setup_done: bool, command: u8) -> MsgKind {
    match (setup_done, twamp, command) {
        (false, _, _) => MsgKind::SetUpResponse,
        (true, false, 1) => MsgKind::RequestSession,
        (true, true, RequestTwSession::COMMAND) => MsgKind::RequestTwSession,
        (true, _, 2) => MsgKind::StartSessions,
        (true, false, 3) => MsgKind::StopSessions,
        (true, true, 3) => MsgKind::TwampStopSessions,
        (true, false, 4) => MsgKind::FetchSession,
        _ => MsgKind::Command,
    }
}

/// The protocol a trace speaks, decided in this order:
///
/// 1. a `protocol` header (`twamp` or `owamp`; the importer writes it when it knows);
/// 2. `hint`, what the caller knows (the runner: a trace below a directory named `twamp`);
/// 3. the first client command after the Set-Up-Response, when it is readable (open mode or a
///    decrypted trace): Request-TW-Session (5) is TWAMP (RFC 5357 3.5);
/// 4. OWAMP.
///
/// A trace whose client sent no command (a refused set-up) and an encrypted trace cannot show
/// the difference on the control connection: for them the header or the hint decides.
pub fn protocol_of(trace: &Trace, hint: Option<Protocol>) -> Protocol {
    if let Some(p) = trace.protocol() {
        return p;
    }
    if let Some(p) = hint {
        return p;
    }
    let cs = trace.stream(Direction::ClientToServer);
    let readable = trace.decrypted() || be32(&cs, 0) == Some(Mode::Open.word());
    if readable && cs.get(owamp_core::wire::SetUpResponse::LEN) == Some(&RequestTwSession::COMMAND)
    {
        Protocol::Twamp
    } else {
        Protocol::Owamp
    }
}

/// Checks one trace as the protocol [`protocol_of`] finds (with no hint). A trace with no
/// control connection checks only its test packets.
pub fn check(trace: &Trace) -> Report {
    check_as(trace, protocol_of(trace, None))
}

/// Checks one trace as `protocol`.
pub fn check_as(trace: &Trace, protocol: Protocol) -> Report {
    check_with(trace, true, protocol)
}

/// Checks the control connection of a trace only, leaving its test packets aside (for a trace
/// whose control lines are decrypted before its test packets are).
pub fn check_control(trace: &Trace, protocol: Protocol) -> Report {
    check_with(trace, false, protocol)
}

fn check_with(trace: &Trace, test_packets: bool, protocol: Protocol) -> Report {
    let mut w = Walker {
        twamp: protocol == Protocol::Twamp,
        clear: trace.decrypted(),
        ..Default::default()
    };
    let mut tests: Vec<(usize, &Event)> = Vec::new();
    for (i, ev) in trace.events.iter().enumerate() {
        let line = trace.event_line(i);
        match ev {
            Event::Control { dir, bytes, .. } => {
                let st = w.st_mut(*dir);
                st.segments.push((st.bytes.len(), line));
                st.bytes.extend_from_slice(bytes);
                while w.client_step() || w.server_step() {}
            }
            Event::Test { .. } if test_packets => tests.push((line, ev)),
            Event::Test { .. } => {}
        }
    }
    w.finish();
    let has_control = !w.c.bytes.is_empty() || !w.s.bytes.is_empty();
    let mode = w.mode.or(trace.mode());
    let mut report = Report {
        mode,
        clear: w.clear,
        protocol,
        opaque: if w.clear {
            (0, 0)
        } else {
            (w.c.rest().len(), w.s.rest().len())
        },
        ..Default::default()
    };
    check_tests(&w, mode, has_control, &tests, &mut report);
    report.messages = w.messages;
    report.unsplit = w.unsplit;
    let mut findings = w.findings;
    findings.append(&mut report.findings);
    findings.sort_by_key(|f| f.line);
    report.findings = findings;
    report
}

/// RFC 4656 4.1.2: test packets.
fn check_tests(
    w: &Walker,
    mode: Option<Mode>,
    has_control: bool,
    tests: &[(usize, &Event)],
    report: &mut Report,
) {
    let Some(mode) = mode else {
        if let Some((line, _)) = tests.first() {
            report.findings.push(Finding {
                line: *line,
                place: "test packets".into(),
                why: "the mode is unknown (no Set-Up-Response and no mode header), so the test packets cannot be read".into(),
            });
        }
        return;
    };
    // In authenticated mode only the first block is encrypted; in encrypted mode the first two.
    let readable_from = match (w.clear, mode) {
        (true, _) | (false, Mode::Open) => 0,
        (false, Mode::Authenticated) => 16,
        (false, Mode::Encrypted) => 32,
    };
    // Sessions are known only from a control connection read to its end without error.
    let know_sessions = has_control && w.clear && w.findings.is_empty();
    for (n, (line, ev)) in tests.iter().enumerate() {
        let Event::Test {
            src, dst, payload, ..
        } = ev
        else {
            continue;
        };
        report.test_packets += 1;
        let fail = |report: &mut Report, offset: usize, why: String| {
            report.findings.push(Finding {
                line: *line,
                place: format!("test packet {} ({src}->{dst}), byte {offset}", n + 1),
                why,
            });
        };
        // Blocks that are ciphertext on the wire are zeroed so that the clear ones can be
        // parsed: block 1 in authenticated mode, blocks 1 and 2 in encrypted mode.
        let wmode = match mode {
            Mode::Open => WireMode::Open,
            Mode::Authenticated => WireMode::Authenticated,
            Mode::Encrypted => WireMode::Encrypted,
        };
        // The session, and whether the packet is a TWAMP reflector's answer (it goes from the
        // receiver's port back to the sender's, RFC 5357 4.2).
        let session = w.sessions.iter().find_map(|s| {
            if s.sender_port == src.port() && s.receiver_port == dst.port() {
                Some((s, false))
            } else if w.twamp && s.receiver_port == src.port() && s.sender_port == dst.port() {
                Some((s, true))
            } else {
                None
            }
        });
        let session = session.filter(|_| know_sessions);
        let reflected = session.is_some_and(|(_, r)| r);
        let (min, what, rfc) = if reflected {
            (
                ReflectorPacket::header_len(wmode),
                "reflector packet",
                "RFC 5357 4.2.1",
            )
        } else if w.twamp {
            (
                TestPacket::header_len(wmode),
                "test packet",
                "RFC 5357 4.1.2",
            )
        } else {
            (
                TestPacket::header_len(wmode),
                "test packet",
                "RFC 4656 4.1.2",
            )
        };
        if payload.len() < min {
            fail(
                report,
                payload.len(),
                format!(
                    "{} octets, shorter than the {min} a {} mode {what} needs ({rfc})",
                    payload.len(),
                    mode.name()
                ),
            );
            continue;
        }
        if reflected && readable_from == 0 {
            if let Err(e) = ReflectorPacket::parse(wmode, payload) {
                let off = crate::frame::error_offset(MsgKind::Command, &e);
                fail(report, off, e.to_string());
                continue;
            }
        } else if readable_from < 32 {
            let mut p = payload.clone();
            p[..readable_from].fill(0);
            if let Err(e) = TestPacket::parse(wmode, &p) {
                let off = crate::frame::error_offset(MsgKind::Command, &e);
                fail(report, off, e.to_string());
                continue;
            }
        }
        if readable_from == 0 && know_sessions {
            let seq = be32(payload, 0).unwrap_or(0);
            match session.map(|(s, _)| s) {
                None => fail(
                    report,
                    0,
                    "no session set up on the control connection uses these ports".into(),
                ),
                // TWAMP sessions name no packet count (RFC 5357 3.5).
                Some(s) if !w.twamp && seq >= s.packets => fail(
                    report,
                    0,
                    format!(
                        "sequence number {seq} is not below the session's {} packets",
                        s.packets
                    ),
                ),
                Some(_) => {
                    report.matched_test_packets += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/traces/reference");

    fn load(name: &str) -> Trace {
        Trace::parse(&std::fs::read_to_string(format!("{REF}/{name}")).unwrap()).unwrap()
    }

    #[test]
    fn open_trace_splits_into_every_message() {
        let r = check(&load("a_open.trace"));
        assert!(r.findings.is_empty(), "{:?}", r.findings);
        assert!(r.clear);
        assert_eq!(r.count(MsgKind::ServerGreeting), 1);
        assert_eq!(r.count(MsgKind::SetUpResponse), 1);
        assert_eq!(r.count(MsgKind::ServerStart), 1);
        // Two Request-Sessions from the client, one stored copy in the Fetch response.
        assert_eq!(r.count(MsgKind::RequestSession), 3);
        assert_eq!(r.count(MsgKind::AcceptSession), 2);
        assert_eq!(r.count(MsgKind::StartSessions), 1);
        assert_eq!(r.count(MsgKind::StartAck), 1);
        assert_eq!(r.count(MsgKind::StopSessions), 2);
        assert_eq!(r.count(MsgKind::FetchSession), 1);
        assert_eq!(r.count(MsgKind::FetchAck), 1);
        assert_eq!(r.count(MsgKind::FetchData), 1);
        let total: usize = r.messages.iter().map(|m| m.len).sum();
        assert_eq!(total, 596 + 1024);
        assert_eq!(r.test_packets, 40);
        assert_eq!(r.matched_test_packets, 40);
    }

    #[test]
    fn plain_traces_split_like_open_mode() {
        for name in ["b_auth.plain.trace", "c_encrypted.plain.trace"] {
            let r = check(&load(name));
            assert!(r.findings.is_empty(), "{name}: {:?}", r.findings);
            assert!(r.clear);
            assert_eq!(r.count(MsgKind::RequestSession), 3, "{name}");
            assert_eq!(r.count(MsgKind::FetchData), 1, "{name}");
            assert_eq!(r.matched_test_packets, 40, "{name}");
        }
    }

    #[test]
    fn encrypted_traces_check_prefix_and_blocks() {
        for (name, mode) in [
            ("b_auth.trace", Mode::Authenticated),
            ("c_encrypted.trace", Mode::Encrypted),
        ] {
            let r = check(&load(name));
            assert!(r.findings.is_empty(), "{name}: {:?}", r.findings);
            assert!(!r.clear);
            assert_eq!(r.mode, Some(mode));
            assert_eq!(r.messages.len(), 3, "{name}");
            assert_eq!(r.opaque, (596 - 164, 1024 - 112), "{name}");
            assert_eq!(r.test_packets, 40);
        }
        let r = check(&load("d_authfail.trace"));
        assert!(r.findings.is_empty(), "{:?}", r.findings);
        assert_eq!(r.opaque, (0, 0));
    }

    #[test]
    fn a_flipped_mbz_octet_is_located() {
        let mut t = load("a_open.trace");
        // The third S>C line is the Server-Start; octet 3 is MBZ.
        let idx = t
            .events
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                matches!(
                    e,
                    Event::Control {
                        dir: Direction::ServerToClient,
                        ..
                    }
                )
            })
            .nth(1)
            .unwrap()
            .0;
        let Event::Control { bytes, .. } = &mut t.events[idx] else {
            unreachable!()
        };
        bytes[3] ^= 0x40;
        let r = check(&t);
        let f = &r.findings[0];
        assert_eq!(f.line, t.event_line(idx));
        assert_eq!(
            f.to_string(),
            format!(
                "line {}: S>C message 2 (Server-Start), byte 3 (stream offset 67): Server-Start: non-zero MBZ octet at offset 3",
                t.event_line(idx)
            )
        );
    }

    #[test]
    fn truncated_and_trailing_bytes_are_reported() {
        let t = Trace::parse("S>C 00000000000000000000000000000007\n").unwrap();
        let r = check(&t);
        assert_eq!(
            r.findings[0].why,
            "truncated: need 64 octets, the trace ends after 16"
        );
        let mut t = load("d_authfail.trace");
        t.events.push(Event::Control {
            dir: Direction::ServerToClient,
            bytes: vec![0; 16],
            comment: None,
        });
        let r = check(&t);
        assert!(r.findings[0]
            .why
            .contains("after a Server-Start with Accept=1"));
        let mut t = load("b_auth.trace");
        t.events.insert(
            5,
            Event::Control {
                dir: Direction::ClientToServer,
                bytes: vec![0; 5],
                comment: None,
            },
        );
        let r = check(&t);
        assert!(r.findings[0]
            .why
            .contains("not a whole number of 16-octet blocks"));
    }
}
