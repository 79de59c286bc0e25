//! Authenticated and encrypted traces: the session keys from the passphrase, the control
//! streams decrypted (or, for a decrypted trace, encrypted again), every control HMAC and every
//! test packet HMAC verified.
//!
//! [`open`] turns a trace into an [`Exchange`]: the same control lines and test packets both
//! as sent on the wire and in plaintext, with the messages of the plaintext located. In open
//! mode both views are the trace itself. In authenticated and encrypted modes (RFC 4656 3.1,
//! 4.1.2, as observed in perfSONAR owamp 5.2.3; see `owamp_core::crypto`):
//!
//! - the passphrase comes from the `passphrase-hex` (or quoted `passphrase`) header; PBKDF2 of it
//!   with the Greeting's Salt and Count must open the Set-Up-Response Token (the Token holds the
//!   Greeting's Challenge);
//! - the client-to-server stream after its first 164 octets is one AES-CBC chain with the
//!   Client-IV, the server-to-client stream after its first 96 octets one with the Server-IV;
//! - every HMAC field is checked with `owamp_core::crypto::ControlOpener`, message by message;
//! - every test packet is matched to its session by its ports, and opened with
//!   `owamp_core::crypto::TestPacketCrypto` (keys from the SID and the session keys).
//!
//! TWAMP traces (RFC 5357 3.1, 4.1.2, 4.2.1) are read the same way: the set-up and the control
//! chains are OWAMP's; Request-TW-Session carries one HMAC (over its first 96 octets), and each
//! reflector packet is opened as one (its HMAC at octets 96..112).
//!
//! A decrypted trace (`decrypted: yes`, or a `DECRYPTED` comment as in the reference
//! `.plain.trace` files) is encrypted again with the same keys: CBC is deterministic, so this
//! gives the octets that were on the wire, and their HMACs are checked the same way.

use std::fmt::Write as _;

use owamp_core::control::replay::Recorded;
use owamp_core::control::Protocol;
use owamp_core::crypto::{
    derive_key, open_token, ControlDecryptor, ControlEncryptor, ControlOpener, CryptoError,
    SecureMode, SessionKeys, TestPacketCrypto, HMAC_LEN, SECURE_TEST_PACKET_MIN_LEN,
};
use owamp_core::wire::{
    framing, FetchAck, FetchData, ReflectorPacket, RequestSession, RequestTwSession,
    ServerGreeting, ServerStart, SetUpResponse, SkipRange, TwampStopSessions, WireError,
};

use crate::check::{self, Message};
use crate::frame::{be32, MsgKind};
use crate::trace::{Comment, Direction, Event, Mode, Trace};

/// Octets the client sends in the clear before its CBC chain starts: Set-Up-Response.
pub const CLEAR_CS: usize = SetUpResponse::LEN;
/// Octets the server sends in the clear: Server-Greeting and the first 32 octets of
/// Server-Start.
pub const CLEAR_SC: usize = ServerGreeting::LEN + ServerStart::CLEAR_LEN;

/// What the headers say about the passphrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Passphrase {
    /// The octets (from `passphrase-hex`, or the quoted text of `passphrase`).
    Known(Vec<u8>),
    /// `unknown`: the recording's passphrase was not published.
    Unknown,
    /// No passphrase header, or `<none>`.
    Missing,
}

/// Reads the passphrase headers.
pub fn passphrase(t: &Trace) -> Passphrase {
    if let Some(p) = t.passphrase() {
        return Passphrase::Known(p);
    }
    let unknown = ["passphrase-hex", "passphrase"].iter().any(|k| {
        t.header(k).is_some_and(|v| {
            let w = v.split_whitespace().next().unwrap_or("");
            w.eq_ignore_ascii_case("unknown") || w.eq_ignore_ascii_case("<unknown>")
        })
    });
    if unknown {
        Passphrase::Unknown
    } else {
        Passphrase::Missing
    }
}

/// A trace read as far as its headers allow: its control lines and test packets both as sent
/// and in plaintext.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The protocol of the control connection (see [`check::protocol_of`]).
    pub protocol: Protocol,
    /// The mode the Set-Up-Response chose.
    pub mode: Mode,
    /// The trace as sent (control lines encrypted in authenticated and encrypted modes).
    pub wire: Trace,
    /// The same lines in plaintext (the same as `wire` in open mode and after a refused
    /// set-up). Its line numbers are those of the trace it came from.
    pub plain: Trace,
    /// The messages of `plain`, in the order [`check::check`] found them.
    pub messages: Vec<Message>,
    /// The session keys (authenticated and encrypted modes, when the passphrase is known).
    pub keys: Option<SessionKeys>,
    /// The passphrase, when known.
    pub passphrase: Option<Vec<u8>>,
    /// Whether the server accepted the set-up (Server-Start Accept 0).
    pub accepted: bool,
    /// Control HMAC fields verified.
    pub hmacs: usize,
    /// Test packets opened and verified.
    pub test_packets: usize,
}

/// What [`open`] could do with a trace.
#[derive(Debug, Clone)]
pub enum Opened {
    /// Everything on the control connection can be read.
    Readable(Box<Exchange>),
    /// Only the clear part can be read; why.
    Unreadable(String),
}

/// `Some(octets)` of the Server-Start Accept field, if the stream is long enough.
fn server_accept(sc: &[u8]) -> Option<u8> {
    sc.get(ServerGreeting::LEN + 15).copied()
}

/// Where stream offset `so` of direction `dir` lies: the trace line, the message and the octet
/// within it, in the form `line L: C>S message 2 (Request-Session), byte 5 (stream offset 169)`.
pub fn place(trace: &Trace, messages: &[Message], dir: Direction, so: usize) -> String {
    let mut at = 0;
    let mut line = 0;
    for (i, e) in trace.events.iter().enumerate() {
        if let Event::Control { dir: d, bytes, .. } = e {
            if *d == dir {
                line = trace.event_line(i);
                if so < at + bytes.len() {
                    break;
                }
                at += bytes.len();
            }
        }
    }
    let mut s = format!("line {line}: ");
    let msg = messages
        .iter()
        .find(|m| m.dir == dir && so >= m.start && so < m.start + m.len);
    match msg {
        Some(m) => {
            let _ = write!(
                s,
                "{dir} message {} ({}), byte {} (stream offset {so})",
                m.index,
                m.kind,
                so - m.start
            );
        }
        None => {
            let last = messages.iter().rfind(|m| m.dir == dir);
            match last {
                Some(m) if so >= m.start + m.len => {
                    let _ = write!(
                        s,
                        "{dir} after message {} ({}), stream offset {so}",
                        m.index, m.kind
                    );
                }
                _ => {
                    let _ = write!(s, "{dir} stream offset {so}");
                }
            }
        }
    }
    s
}

/// A copy of `t` whose control lines hold `cs` and `sc` (cut as the lines of `t` are) and whose
/// test lines hold `tests` (in order; `None` keeps a line as it is).
fn with_bytes(t: &Trace, cs: &[u8], sc: &[u8], tests: &[Option<(Vec<u8>, String)>]) -> Trace {
    let mut out = t.clone();
    let (mut c, mut s, mut n) = (0, 0, 0);
    for e in &mut out.events {
        match e {
            Event::Control { dir, bytes, .. } => {
                let (src, at) = match dir {
                    Direction::ClientToServer => (cs, &mut c),
                    Direction::ServerToClient => (sc, &mut s),
                };
                if let Some(b) = src.get(*at..*at + bytes.len()) {
                    bytes.copy_from_slice(b);
                }
                *at += bytes.len();
            }
            Event::Test {
                payload, comment, ..
            } => {
                if let Some(Some((p, c))) = tests.get(n) {
                    *payload = p.clone();
                    *comment = Some(c.clone());
                }
                n += 1;
            }
        }
    }
    out
}

/// Marks a trace as decrypted without moving its event lines: the marker goes after the last
/// event.
fn mark_decrypted(t: &mut Trace) {
    if !t.decrypted() {
        t.comments.push(Comment {
            before_event: t.events.len(),
            text: " DECRYPTED with the passphrase of the headers".into(),
        });
    }
}

/// Runs `f` (decrypt or encrypt in place) over the part of `stream` after `clear` octets.
fn transform(
    stream: &[u8],
    clear: usize,
    dir: Direction,
    f: &mut dyn FnMut(&mut [u8]) -> Result<(), CryptoError>,
) -> Result<Vec<u8>, String> {
    let mut out = stream.to_vec();
    if let Some(rest) = out.get_mut(clear..) {
        f(rest).map_err(|e| format!("{dir} after the first {clear} octets: {e}"))?;
    }
    Ok(out)
}

/// The HMAC-terminated pieces of a message of `kind` whose plaintext starts `p` (and may run
/// on past it), as ends of pieces within it (RFC 4656 3.4-3.8, and the coverage the reference
/// shows; see `owamp_core::crypto`). `len` is its length when known; `counts` the skip ranges and
/// records the last Fetch-Ack announced. The last piece is left out when its length cannot be
/// told.
fn hmac_pieces(kind: MsgKind, p: &[u8], len: Option<usize>, counts: (u32, u32)) -> Vec<usize> {
    let framed = |f: fn(&[u8]) -> Result<framing::Frame, WireError>| {
        len.or_else(|| f(p).ok().and_then(|f| f.complete_len()))
    };
    match kind {
        MsgKind::RequestSession => {
            let mut v = vec![RequestSession::FIXED_LEN];
            v.extend(framed(framing::request_session));
            v
        }
        MsgKind::StopSessions => framed(framing::stop_sessions).into_iter().collect(),
        MsgKind::FetchData => {
            let Ok(skips) = SkipRange::block_len(counts.0) else {
                return Vec::new();
            };
            let mut v = vec![skips + HMAC_LEN];
            v.extend(len.or_else(|| FetchData::wire_len(counts.0, counts.1).ok()));
            v
        }
        // RFC 5357 3.5: one HMAC, over the first 96 octets.
        MsgKind::RequestTwSession => vec![RequestTwSession::LEN],
        MsgKind::TwampStopSessions => vec![TwampStopSessions::LEN],
        MsgKind::AcceptSession | MsgKind::FetchSession => vec![48],
        MsgKind::StartSessions | MsgKind::StartAck | MsgKind::FetchAck => vec![32],
        _ => Vec::new(),
    }
}

/// Checks every control HMAC of `wire` with [`ControlOpener`], using the messages found in the
/// plaintext, and the HMACs of the message each direction stopped at when its plaintext does
/// not check (an altered ciphertext block decrypts to garbage: its HMAC tells). Returns how
/// many HMAC fields were verified.
fn verify_control(
    wire: &Trace,
    plain: &Trace,
    report: &check::Report,
    keys: &SessionKeys,
) -> Result<usize, String> {
    let all = located(report);
    let mut verified = 0;
    for dir in [Direction::ClientToServer, Direction::ServerToClient] {
        let w = wire.stream(dir);
        let p = plain.stream(dir);
        let iv_at = match dir {
            Direction::ClientToServer => CLEAR_CS - 16,
            Direction::ServerToClient => ServerGreeting::LEN + 16,
        };
        let Some(iv) = w
            .get(iv_at..iv_at + 16)
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
        else {
            continue;
        };
        let mut opener = ControlOpener::new(keys, &iv);
        // Skip ranges and records announced by the last Fetch-Ack, for the data after it.
        let mut counts = (0, 0);
        // The message after Server-Start, whose HMAC also covers Server-Start's last block.
        let mut first_after_start = false;
        for m in all.iter().filter(|m| m.dir == dir) {
            let split = m.len != usize::MAX - m.start;
            let rest = p.get(m.start..).unwrap_or_default();
            match m.kind {
                MsgKind::ServerGreeting | MsgKind::SetUpResponse => continue,
                MsgKind::ServerStart => {
                    // Its last block starts the chain and the first HMAC.
                    let at = m.start + ServerStart::CLEAR_LEN;
                    if let Some(mut last) = w.get(at..at + 16).map(<[u8]>::to_vec) {
                        opener
                            .update(&mut last)
                            .map_err(|e| format!("{}: {e}", place(wire, &all, dir, m.start)))?;
                    }
                    first_after_start = true;
                    continue;
                }
                MsgKind::FetchAck => {
                    if let Some(ack) = rest
                        .get(..FetchAck::LEN)
                        .and_then(|b| FetchAck::parse(b).ok())
                    {
                        counts = (ack.num_skip_ranges, ack.num_records);
                    }
                }
                _ => {}
            }
            let also = if first_after_start {
                " and the last block of Server-Start"
            } else {
                ""
            };
            first_after_start = false;
            let mut from = 0;
            for end in hmac_pieces(m.kind, rest, split.then_some(m.len), counts) {
                let Some(mut piece) = w.get(m.start + from..m.start + end).map(<[u8]>::to_vec)
                else {
                    break;
                };
                if let Err(e) = opener.open(&mut piece) {
                    let field = end - HMAC_LEN;
                    let why = match e {
                        CryptoError::HmacMismatch => format!(
                            "HMAC verification failed: the HMAC at bytes {field}..{end} does not match bytes {from}..{field}{also} as decrypted: the ciphertext was altered or the keys are wrong"
                        ),
                        other => other.to_string(),
                    };
                    return Err(format!(
                        "{}: {why}",
                        place(wire, &all, dir, m.start + field)
                    ));
                }
                verified += 1;
                from = end;
            }
        }
    }
    Ok(verified)
}

/// The messages of a check, and after them each message that did not split, taken to run to
/// the end of its stream (for locating octets in it).
fn located(report: &check::Report) -> Vec<Message> {
    let mut v = report.messages.clone();
    for &(dir, kind, start) in &report.unsplit {
        v.push(Message {
            dir,
            index: report.messages.iter().filter(|m| m.dir == dir).count() + 1,
            kind,
            start,
            len: usize::MAX - start,
        });
    }
    v
}

/// Where one altered ciphertext octet is, from the plaintext it decrypts to (`got`) and the
/// true plaintext (`want`), both CBC after `clear` octets: the block holding the altered octet
/// decrypts to garbage, and the next block differs exactly in the altered octet's position.
fn altered_octet(got: &[u8], want: &[u8], clear: usize) -> Option<usize> {
    let first = (clear..got.len().min(want.len())).find(|&i| got[i] != want[i])?;
    let block = clear + (first - clear) / 16 * 16;
    let next: Vec<usize> = (block + 16..block + 32)
        .filter(|&i| got.get(i) != want.get(i))
        .collect();
    match next.as_slice() {
        [one] => Some(one - 16),
        _ => Some(first),
    }
}

/// The SID of the session whose test packets go from `src` port to `dst` port, and whether
/// they are TWAMP reflector packets (from the receiver's port back to the sender's, RFC 5357
/// 4.2; only when `twamp`).
fn session_for(rec: &Recorded, src: u16, dst: u16, twamp: bool) -> Option<([u8; 16], bool)> {
    rec.requests
        .iter()
        .filter(|r| r.accept.accept.is_ok())
        .find_map(|r| {
            // The server's port fills the end it plays (RFC 4656 3.5).
            let (sp, rp) = if r.server_receives() {
                (r.request.sender_port, r.accept.port)
            } else {
                (r.accept.port, r.request.receiver_port)
            };
            if sp == src && rp == dst {
                Some((r.sid().0, false))
            } else if twamp && rp == src && sp == dst {
                Some((r.sid().0, true))
            } else {
                None
            }
        })
}

/// Opens (or, for decrypted input, checks the HMAC of) every test packet. Returns the other
/// view of each packet with a comment, and how many were verified.
#[allow(clippy::type_complexity)]
fn verify_tests(
    input: &Trace,
    twamp: bool,
    decrypted: bool,
    rec: &Recorded,
    mode: SecureMode,
    keys: &SessionKeys,
) -> Result<(Vec<Option<(Vec<u8>, String)>>, usize), String> {
    let mut out = Vec::new();
    let mut verified = 0;
    let mut n = 0;
    for (i, e) in input.events.iter().enumerate() {
        let Event::Test {
            src, dst, payload, ..
        } = e
        else {
            continue;
        };
        n += 1;
        let Some((sid, reflected)) = session_for(rec, src.port(), dst.port(), twamp) else {
            // Reported by the check of the plaintext.
            out.push(None);
            continue;
        };
        let c = TestPacketCrypto::new(mode, &sid, keys);
        let mut other = payload.clone();
        // A reflector packet's HMAC is at 96..112 (RFC 5357 4.2.1), a sender's at 32..48.
        let hmac_at = if reflected {
            ReflectorPacket::AUTH_HMAC_OFFSET
        } else {
            32
        };
        let hmac = hmac_at..hmac_at + HMAC_LEN;
        let r = if decrypted {
            // Seal a copy: the HMAC it computes over the plaintext must be the recorded one.
            let sealed = if reflected {
                c.seal_reflector(&mut other)
            } else {
                c.seal(&mut other)
            };
            sealed.and_then(|()| {
                if other.get(hmac.clone()) == payload.get(hmac.clone()) {
                    Ok(())
                } else {
                    Err(CryptoError::HmacMismatch)
                }
            })
        } else if reflected {
            c.open_reflector(&mut other)
        } else {
            c.open(&mut other)
        };
        if let Err(e) = r {
            let why = match e {
                CryptoError::HmacMismatch => format!(
                    "HMAC verification failed: the HMAC at bytes {}..{} does not match the {} (session {})",
                    hmac.start,
                    hmac.end,
                    match (mode, reflected) {
                        (SecureMode::Authenticated, _) => "decrypted first block",
                        (SecureMode::Encrypted, false) => "decrypted first two blocks",
                        (SecureMode::Encrypted, true) => "decrypted first six blocks",
                    },
                    hex::encode(sid)
                ),
                CryptoError::TooShort { len, .. } => format!(
                    "{len} octets, shorter than the {SECURE_TEST_PACKET_MIN_LEN} a test packet needs"
                ),
                other => other.to_string(),
            };
            return Err(format!(
                "line {}: test packet {n} ({src}->{dst}): {why}",
                input.event_line(i)
            ));
        }
        verified += 1;
        out.push(Some((other, format!("sid={} hmac=ok", hex::encode(sid)))));
    }
    Ok((out, verified))
}

/// The session keys in the Token, opened with `pass` (RFC 4656 3.1).
pub fn session_keys(cs: &[u8], sc: &[u8], pass: &[u8]) -> Result<SessionKeys, String> {
    let g = sc
        .get(..ServerGreeting::LEN)
        .and_then(|b| ServerGreeting::parse(b).ok())
        .ok_or("no Server-Greeting to take the Salt and Count from")?;
    let s = cs
        .get(..SetUpResponse::LEN)
        .and_then(|b| SetUpResponse::parse(b).ok())
        .ok_or("no Set-Up-Response to take the Token from")?;
    let key = derive_key(pass, &g.salt, g.count)
        .map_err(|e| format!("cannot derive the key from the passphrase: {e}"))?;
    open_token(&key, &s.token, &g.challenge).map_err(|e| match e {
        CryptoError::ChallengeMismatch => "the passphrase of the headers does not open the Set-Up-Response Token (the Token does not hold the Greeting's Challenge): wrong passphrase".to_string(),
        other => other.to_string(),
    })
}

/// Compares the plaintext of an exchange with a decrypted twin (`X.plain.trace`).
fn compare_twin(ex: &Exchange, twin: &Trace, twin_name: &str) -> Result<(), String> {
    let show = |v: Option<&u8>| v.map_or("nothing".into(), |x| format!("0x{x:02x}"));
    for dir in [Direction::ClientToServer, Direction::ServerToClient] {
        let (a, b) = (ex.plain.stream(dir), twin.stream(dir));
        if let Some(i) = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i)) {
            return Err(format!(
                "{}: decrypts to {}, {twin_name} has {}",
                place(&ex.wire, &ex.messages, dir, i),
                show(a.get(i)),
                show(b.get(i))
            ));
        }
    }
    let tests = |t: &Trace| -> Vec<(usize, Vec<u8>)> {
        t.events
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match e {
                Event::Test { payload, .. } => Some((t.event_line(i), payload.clone())),
                _ => None,
            })
            .collect()
    };
    for (n, ((la, a), (lb, b))) in tests(&ex.plain).iter().zip(&tests(twin)).enumerate() {
        if let Some(i) = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i)) {
            return Err(format!(
                "line {la}: test packet {}: byte {i} decrypts to {}, {twin_name} line {lb} has {}",
                n + 1,
                show(a.get(i)),
                show(b.get(i))
            ));
        }
    }
    Ok(())
}

/// Reads a trace as far as its headers allow, verifying every HMAC, and, when `twin` (the
/// decrypted `X.plain.trace` of a wire trace, with its name) is given, that the plaintext is
/// the twin's.
///
/// `Err` is a failure: the mode header disagrees with the Set-Up-Response, an authenticated or
/// encrypted trace has no passphrase header (or `<none>`), the passphrase does not open the
/// Token, an HMAC does not verify, the plaintext does not check, or differs from the twin.
pub fn open(trace: &Trace, twin: Option<(&Trace, &str)>) -> Result<Opened, String> {
    open_as(trace, twin, None)
}

/// [`open`] with a hint of the protocol (see [`check::protocol_of`]): without a `protocol`
/// header and a hint, the protocol is found in the plaintext.
pub fn open_as(
    trace: &Trace,
    twin: Option<(&Trace, &str)>,
    hint: Option<Protocol>,
) -> Result<Opened, String> {
    let fixed = trace.protocol().or(hint);
    let cs = trace.stream(Direction::ClientToServer);
    let sc = trace.stream(Direction::ServerToClient);
    let wire_mode = be32(&cs, 0).and_then(Mode::from_word);
    let mode = match (trace.mode(), wire_mode) {
        (Some(h), Some(w)) if h != w => {
            return Err(format!(
                "the mode header says {} but the Set-Up-Response chose {}",
                h.name(),
                w.name()
            ))
        }
        (_, Some(w)) => w,
        (Some(h), None) => h,
        (None, None) => {
            return Err(
                "the mode is unknown: no Set-Up-Response and no mode header (add `# mode: open`, `authenticated` or `encrypted`)".into(),
            )
        }
    };
    let accepted = server_accept(&sc) == Some(0);
    let pass = passphrase(trace);
    let checked = |t: &Trace, protocol: Protocol| -> Result<Vec<Message>, String> {
        let r = check::check_as(t, protocol);
        match r.findings.first() {
            Some(f) => Err(format!("decrypted: {f}")),
            None => Ok(r.messages),
        }
    };
    if mode == Mode::Open {
        let mut plain = trace.clone();
        mark_decrypted(&mut plain);
        let protocol = check::protocol_of(&plain, fixed);
        let messages = checked(&plain, protocol)?;
        return Ok(Opened::Readable(Box::new(Exchange {
            protocol,
            mode,
            wire: trace.clone(),
            plain,
            messages,
            keys: None,
            passphrase: None,
            accepted,
            hmacs: 0,
            test_packets: 0,
        })));
    }
    let pass = match pass {
        Passphrase::Known(p) => p,
        Passphrase::Missing => {
            return Err(format!(
                "{} mode needs the passphrase: add a `# passphrase-hex: <hex>` header (or `# passphrase-hex: unknown` if it is not known)",
                mode.name()
            ))
        }
        Passphrase::Unknown if !accepted => {
            // A refused set-up sends nothing encrypted: everything can be read.
            let mut plain = trace.clone();
            mark_decrypted(&mut plain);
            let protocol = check::protocol_of(&plain, fixed);
            let messages = checked(&plain, protocol)?;
            return Ok(Opened::Readable(Box::new(Exchange {
                protocol,
                mode,
                wire: trace.clone(),
                plain,
                messages,
                keys: None,
                passphrase: None,
                accepted,
                hmacs: 0,
                test_packets: 0,
            })));
        }
        Passphrase::Unknown => {
            return Ok(Opened::Unreadable(format!(
                "the passphrase is unknown, so the {} mode control stream after the clear prefix and the test packets cannot be decrypted",
                mode.name()
            )))
        }
    };
    let keys = session_keys(&cs, &sc, &pass)?;
    let decrypted = trace.decrypted();
    let secure_mode = if mode == Mode::Encrypted {
        SecureMode::Encrypted
    } else {
        SecureMode::Authenticated
    };
    // The other view of the control streams: one CBC chain per direction after the clear
    // prefix; after a refused set-up the server sends nothing encrypted.
    let iv = |b: &[u8], at: usize| -> [u8; 16] {
        b.get(at..at + 16)
            .and_then(|x| <[u8; 16]>::try_from(x).ok())
            .unwrap_or_default()
    };
    let (civ, siv) = (iv(&cs, CLEAR_CS - 16), iv(&sc, ServerGreeting::LEN + 16));
    let sc_clear = if accepted { CLEAR_SC } else { sc.len() };
    let (ocs, osc) = if decrypted {
        let mut ec = ControlEncryptor::new(&keys.aes, &civ);
        let mut es = ControlEncryptor::new(&keys.aes, &siv);
        (
            transform(&cs, CLEAR_CS, Direction::ClientToServer, &mut |b| {
                ec.encrypt(b)
            })?,
            transform(&sc, sc_clear, Direction::ServerToClient, &mut |b| {
                es.encrypt(b)
            })?,
        )
    } else {
        let mut dc = ControlDecryptor::new(&keys.aes, &civ);
        let mut ds = ControlDecryptor::new(&keys.aes, &siv);
        (
            transform(&cs, CLEAR_CS, Direction::ClientToServer, &mut |b| {
                dc.decrypt(b)
            })?,
            transform(&sc, sc_clear, Direction::ServerToClient, &mut |b| {
                ds.decrypt(b)
            })?,
        )
    };
    let (wire, mut plain) = if decrypted {
        (with_bytes(&as_wire(trace), &ocs, &osc, &[]), trace.clone())
    } else {
        (trace.clone(), with_bytes(trace, &ocs, &osc, &[]))
    };
    mark_decrypted(&mut plain);
    let protocol = check::protocol_of(&plain, fixed);
    // The plaintext splits into messages; their HMACs are checked before anything is read from
    // them, as a receiver would.
    let report = check::check_control(&plain, protocol);
    let hmacs = verify_control(&wire, &plain, &report, &keys).map_err(|e| match twin {
        Some((t, name)) if !decrypted => {
            let mut e = e;
            for (dir, clear) in [
                (Direction::ClientToServer, CLEAR_CS),
                (Direction::ServerToClient, sc_clear),
            ] {
                let (a, b) = (plain.stream(dir), t.stream(dir));
                if let Some(so) = altered_octet(&a, &b, clear) {
                    let _ = write!(
                        e,
                        "; decrypted and compared with {name}, the altered ciphertext octet is at {}",
                        place(&wire, &located(&report), dir, so)
                    );
                    break;
                }
            }
            e
        }
        _ => e,
    })?;
    if let Some(f) = report.findings.first() {
        return Err(format!("decrypted: {f}"));
    }
    // Test packets: per-session keys, for the sessions the plaintext set up.
    let mut test_packets = 0;
    let (mut wire, mut plain) = (wire, plain);
    if accepted {
        let rec =
            recorded(&plain, protocol).map_err(|e| format!("decrypted control stream: {e}"))?;
        let twamp = protocol == Protocol::Twamp;
        let (others, n) = verify_tests(trace, twamp, decrypted, &rec, secure_mode, &keys)?;
        test_packets = n;
        if decrypted {
            wire = with_bytes(&wire, &ocs, &osc, &others);
        } else {
            plain = with_bytes(&plain, &ocs, &osc, &others);
        }
    }
    // Everything decrypted must check as an open-mode trace would.
    let messages = checked(&plain, protocol)?;
    finish(
        Exchange {
            protocol,
            mode,
            wire,
            plain,
            messages,
            keys: Some(keys),
            passphrase: Some(pass),
            accepted,
            hmacs,
            test_packets,
        },
        twin,
    )
}

/// The recorded exchange of a plaintext trace, read as `protocol`.
pub fn recorded(plain: &Trace, protocol: Protocol) -> Result<Recorded, WireError> {
    let (cs, sc) = (
        plain.stream(Direction::ClientToServer),
        plain.stream(Direction::ServerToClient),
    );
    match protocol {
        Protocol::Owamp => Recorded::from_plaintext(&cs, &sc),
        Protocol::Twamp => Recorded::from_twamp_plaintext(&cs, &sc),
    }
}

/// A decrypted trace relabelled as sent on the wire (its events are then replaced): the
/// markers that say it is decrypted are reworded, so no line moves.
fn as_wire(t: &Trace) -> Trace {
    let mut w = t.clone();
    for c in &mut w.comments {
        if c.text.contains("DECRYPTED") {
            c.text = c.text.replace("DECRYPTED", "re-encrypted");
        }
        if c.text.trim_start().starts_with("decrypted:") {
            c.text = " decrypted: no (re-encrypted)".into();
        }
    }
    w
}

fn finish(ex: Exchange, twin: Option<(&Trace, &str)>) -> Result<Opened, String> {
    if let Some((t, name)) = twin {
        compare_twin(&ex, t, name)?;
    }
    Ok(Opened::Readable(Box::new(ex)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/traces/reference");

    fn load(name: &str) -> Trace {
        Trace::parse(&std::fs::read_to_string(format!("{REF}/{name}")).unwrap()).unwrap()
    }

    fn readable(o: Opened) -> Exchange {
        match o {
            Opened::Readable(e) => *e,
            Opened::Unreadable(why) => panic!("unreadable: {why}"),
        }
    }

    #[test]
    fn wire_traces_decrypt_to_their_plain_twins() {
        for name in ["b_auth", "c_encrypted"] {
            let plain = load(&format!("{name}.plain.trace"));
            let ex =
                readable(open(&load(&format!("{name}.trace")), Some((&plain, "twin"))).unwrap());
            // Two Request-Sessions (2 HMACs each), 2 Accept-Sessions, Start-Sessions,
            // Start-Ack, two Stop-Sessions, Fetch-Session, Fetch-Ack, the stored request (2)
            // and the data (2).
            assert_eq!(ex.hmacs, 4 + 2 + 1 + 1 + 2 + 1 + 1 + 2 + 2, "{name}");
            assert_eq!(ex.test_packets, 40, "{name}");
            assert_eq!(
                ex.plain.stream(Direction::ClientToServer),
                plain.stream(Direction::ClientToServer)
            );
        }
    }

    #[test]
    fn plain_traces_encrypt_to_their_wire_twins() {
        for name in ["b_auth", "c_encrypted"] {
            let wire = load(&format!("{name}.trace"));
            let ex = readable(open(&load(&format!("{name}.plain.trace")), None).unwrap());
            assert_eq!(ex.test_packets, 40);
            crate::trace::equivalent(&ex.wire, &wire).unwrap();
        }
    }

    #[test]
    fn a_flipped_ciphertext_octet_fails_the_hmac_of_its_message() {
        let mut t = load("b_auth.trace");
        // The 4th C>S line holds the first Request-Session's first 112 octets (after the
        // 164-octet Set-Up-Response line).
        let (i, _) = t
            .events
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                matches!(
                    e,
                    Event::Control {
                        dir: Direction::ClientToServer,
                        ..
                    }
                )
            })
            .nth(1)
            .unwrap();
        let Event::Control { bytes, .. } = &mut t.events[i] else {
            unreachable!()
        };
        bytes[20] ^= 1;
        let e = open(&t, None).unwrap_err();
        assert!(
            e.starts_with("line 19: C>S message 2 (Request-Session), byte 96 (stream offset 260): HMAC verification failed"),
            "{e}"
        );
        // With the decrypted twin, the altered octet itself is found.
        let twin = load("b_auth.plain.trace");
        let e = open(&t, Some((&twin, "b_auth.plain.trace"))).unwrap_err();
        assert!(
            e.ends_with("; decrypted and compared with b_auth.plain.trace, the altered ciphertext octet is at line 19: C>S message 2 (Request-Session), byte 20 (stream offset 184)"),
            "{e}"
        );
    }

    #[test]
    fn a_wrong_or_missing_passphrase_is_a_failure_and_an_unknown_one_is_not() {
        let mut t = load("c_encrypted.trace");
        let text = t
            .to_text()
            .replace("passphrase-hex: 636f", "passphrase-hex: 646f");
        t = Trace::parse(&text).unwrap();
        assert!(open(&t, None).unwrap_err().contains("wrong passphrase"));
        // Every passphrase header set to `with`, or removed.
        let headers = |t: &Trace, with: Option<&str>| -> Trace {
            let text: Vec<String> = t
                .to_text()
                .lines()
                .filter_map(|l| match (l.starts_with("# passphrase"), with) {
                    (false, _) => Some(l.to_string()),
                    (true, Some(v)) => l.split_once(':').map(|(k, _)| format!("{k}: {v}")),
                    (true, None) => None,
                })
                .collect();
            Trace::parse(&(text.join("\n") + "\n")).unwrap()
        };
        let t = headers(&t, Some("unknown"));
        assert_eq!(passphrase(&t), Passphrase::Unknown);
        assert!(matches!(open(&t, None).unwrap(), Opened::Unreadable(_)));
        let t = headers(&t, None);
        assert_eq!(passphrase(&t), Passphrase::Missing);
        assert!(open(&t, None).unwrap_err().contains("needs the passphrase"));
    }

    #[test]
    fn a_flipped_test_packet_octet_fails_its_hmac() {
        let mut t = load("c_encrypted.trace");
        let i = t
            .events
            .iter()
            .position(|e| matches!(e, Event::Test { .. }))
            .unwrap();
        let Event::Test { payload, .. } = &mut t.events[i] else {
            unreachable!()
        };
        payload[3] ^= 0x80;
        let e = open(&t, None).unwrap_err();
        assert!(
            e.contains("test packet 1") && e.contains("HMAC verification failed"),
            "{e}"
        );
    }
}
