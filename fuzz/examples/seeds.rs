//! Writes the seed corpora under `fuzz/seeds/<target>/` from the reference traces in
//! `testdata/traces/reference` (perfSONAR owamp 5.2.3 on loopback).
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example seeds` rewrites every seed folder;
//! with `--check` it only compares and exits non-zero if a committed seed is stale or missing.
//!
//! Messages are split with the conformance checker; decrypted control bytes and test packets
//! come from the `.plain.trace` files, ciphertext from the matching `.trace`, keys from the
//! `.plain.trace` headers. Every seed is checked to take the path it is meant for (a sealed
//! packet opens, a control stream decrypts with every HMAC matching, a receiver accepts the
//! session's packets), so the fuzzer starts from inputs that reach deep.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use conformance::check::check;
use conformance::frame::MsgKind;
use conformance::trace::{Direction, Event, Trace};
use owamp_core::control::replay::{port_draw, Recorded, RecordedCommand};
use owamp_core::control::Role;
use owamp_core::crypto::{
    open_token, ControlOpener, DerivedKey, SecureMode, SessionKeys, TestPacketCrypto,
};
use owamp_core::session::{PacketProtection, Receiver, Schedule, SessionParams};
use owamp_core::time::{ErrorEstimate, OwampTime};
use owamp_core::wire::{
    AcceptSession, FetchAck, FetchData, Mode, RequestSession, SkipRange, TestPacket, BLOCK_LEN,
};

/// The most seeds kept per target.
const MAX_SEEDS: usize = 12;

/// The most seeds kept for `target`: `conformance_frame` has one per message kind, OWAMP's
/// eleven and TWAMP's two.
fn max_seeds(target: &str) -> usize {
    if target == "conformance_frame" {
        14
    } else {
        MAX_SEEDS
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Seeds per target, in insertion order, without duplicates.
#[derive(Default)]
struct Seeds {
    files: BTreeMap<&'static str, Vec<(String, Vec<u8>)>>,
    groups: BTreeSet<(&'static str, String)>,
}

impl Seeds {
    fn add(&mut self, target: &'static str, name: String, bytes: Vec<u8>) {
        let v = self.files.entry(target).or_default();
        if v.len() < max_seeds(target) && !v.iter().any(|(_, b)| *b == bytes) {
            v.push((name, bytes));
        }
    }

    /// Adds a seed only if none of `group` was added to `target` yet, so that a target's few
    /// seeds cover different kinds of input.
    fn add_one_of(&mut self, target: &'static str, group: &str, name: String, bytes: Vec<u8>) {
        if self.groups.insert((target, group.to_string())) {
            self.add(target, name, bytes);
        }
    }
}

/// One recorded scenario: its decrypted (or clear) trace and, in A/E modes, the on-wire one.
struct Scenario {
    name: &'static str,
    plain: Trace,
    wire: Option<Trace>,
    mode: Mode,
}

impl Scenario {
    fn load(name: &'static str, mode: Mode, encrypted: bool) -> Self {
        Self::load_from("testdata/traces/reference", name, mode, encrypted)
    }

    fn load_from(dir: &str, name: &'static str, mode: Mode, encrypted: bool) -> Self {
        let dir = root().join(dir);
        let read = |file: String| {
            let text =
                fs::read_to_string(dir.join(&file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            Trace::parse(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
        };
        let (plain, wire) = if encrypted {
            (
                read(format!("{name}.plain.trace")),
                Some(read(format!("{name}.trace"))),
            )
        } else {
            (read(format!("{name}.trace")), None)
        };
        Self {
            name,
            plain,
            wire,
            mode,
        }
    }

    /// The on-wire trace (the plain one in open mode).
    fn wire(&self) -> &Trace {
        self.wire.as_ref().unwrap_or(&self.plain)
    }

    /// `field=<hex>` from the comment that contains `marker`.
    fn header_hex(&self, marker: &str, field: &str) -> Option<Vec<u8>> {
        let c = self
            .plain
            .comments
            .iter()
            .find(|c| c.text.contains(marker))?;
        let at = c.text.find(field)? + field.len();
        let hexs: String = c.text[at..]
            .chars()
            .take_while(char::is_ascii_hexdigit)
            .collect();
        hex::decode(hexs).ok()
    }

    fn keys(&self) -> Option<SessionKeys> {
        Some(SessionKeys {
            aes: self
                .header_hex("token-decrypt:", "aes-session-key=")?
                .try_into()
                .ok()?,
            hmac: self
                .header_hex("token-decrypt:", "hmac-session-key=")?
                .try_into()
                .ok()?,
        })
    }
}

/// A control message of the plain trace: direction, kind, stream offset, octets.
struct Msg {
    dir: Direction,
    kind: MsgKind,
    start: usize,
    bytes: Vec<u8>,
}

fn messages(t: &Trace) -> Vec<Msg> {
    let c = t.stream(Direction::ClientToServer);
    let s = t.stream(Direction::ServerToClient);
    check(t)
        .messages
        .iter()
        .filter_map(|m| {
            let stream = match m.dir {
                Direction::ClientToServer => &c,
                Direction::ServerToClient => &s,
            };
            Some(Msg {
                dir: m.dir,
                kind: m.kind,
                start: m.start,
                bytes: stream.get(m.start..m.start + m.len)?.to_vec(),
            })
        })
        .collect()
}

/// The index of a kind in `conformance_frame`'s kind table.
fn frame_kind_index(kind: MsgKind) -> u8 {
    owamp_fuzz::checks::FRAME_KINDS
        .iter()
        .position(|k| *k == kind)
        .expect("every kind is in the table") as u8
}

/// Test packets: (payload as recorded, destination port, trailing comment).
fn test_packets(t: &Trace) -> Vec<(Vec<u8>, u16, Option<String>)> {
    t.events
        .iter()
        .filter_map(|e| match e {
            Event::Test {
                payload,
                dst,
                comment,
                ..
            } => Some((payload.clone(), dst.port(), comment.clone())),
            Event::Control { .. } => None,
        })
        .collect()
}

fn message_seeds(sc: &Scenario, msgs: &[Msg], seeds: &mut Seeds) {
    let n = sc.name;
    let mut fetch_counts = (0u32, 0u32);
    for (i, m) in msgs.iter().enumerate() {
        let name = format!("{n}-{i:02}-{}", m.kind.name().replace(' ', "-"));
        let b = m.bytes.clone();
        let target = match m.kind {
            MsgKind::ServerGreeting => Some("wire_server_greeting"),
            MsgKind::SetUpResponse => Some("wire_set_up_response"),
            MsgKind::ServerStart => Some("wire_server_start"),
            MsgKind::RequestSession => Some("wire_request_session"),
            MsgKind::AcceptSession => Some("wire_accept_session"),
            MsgKind::StartSessions => Some("wire_start_sessions"),
            MsgKind::StartAck => Some("wire_start_ack"),
            MsgKind::StopSessions => Some("wire_stop_sessions"),
            MsgKind::FetchSession => Some("wire_fetch_session"),
            MsgKind::FetchAck => Some("wire_fetch_ack"),
            MsgKind::RequestTwSession => Some("wire_request_tw_session"),
            MsgKind::TwampStopSessions => Some("wire_twamp_stop_sessions"),
            MsgKind::FetchData | MsgKind::Command => None,
        };
        if let Some(t) = target {
            seeds.add(t, name.clone(), b.clone());
        }
        match m.kind {
            MsgKind::RequestSession => {
                seeds.add_one_of(
                    "wire_framing",
                    "request",
                    format!("{name}-request"),
                    cat(&[&[0], &b]),
                );
                if let Some(slot) = b.get(112..128) {
                    seeds.add("wire_slot", format!("{name}-slot"), slot.to_vec());
                }
            }
            MsgKind::StopSessions => {
                seeds.add_one_of(
                    "wire_framing",
                    "stop",
                    format!("{name}-stop"),
                    cat(&[&[1], &b]),
                );
            }
            MsgKind::FetchAck => {
                if let Ok(a) = FetchAck::parse(&b) {
                    fetch_counts = (a.num_skip_ranges, a.num_records);
                }
                // The whole Fetch-Session response: from the Fetch-Ack to the end of its data.
                let s = sc.plain.stream(Direction::ServerToClient);
                if let Ok(owamp_core::wire::Frame::Complete { len }) =
                    owamp_core::wire::framing::fetch_response(&s[m.start..])
                {
                    if let Some(resp) = s.get(m.start..m.start + len) {
                        seeds.add_one_of(
                            "wire_framing",
                            "fetch",
                            format!("{name}-fetch"),
                            cat(&[&[3], resp]),
                        );
                    }
                }
            }
            MsgKind::FetchData => {
                let (ns, nr) = fetch_counts;
                if let (Ok(ns8), Ok(nr16)) = (u8::try_from(ns), u16::try_from(nr)) {
                    let head = [&[0u8, ns8][..], &nr16.to_be_bytes()].concat();
                    seeds.add("wire_fetch_data", name.clone(), cat(&[&head, &b]));
                }
                if let Ok(d) = FetchData::parse(&b, ns, nr) {
                    for (j, r) in d.records.iter().enumerate().take(2) {
                        seeds.add(
                            "wire_data_record",
                            format!("{name}-record{j}"),
                            r.to_bytes().to_vec(),
                        );
                    }
                }
            }
            _ => {}
        }
        if m.kind != MsgKind::Command {
            let (ns, nr) = if m.kind == MsgKind::FetchData {
                fetch_counts
            } else {
                (0, 0)
            };
            let head = [
                &[frame_kind_index(m.kind), 0b11][..],
                &7u32.to_be_bytes(),
                &ns.to_be_bytes(),
                &nr.to_be_bytes(),
            ]
            .concat();
            seeds.add_one_of("conformance_frame", m.kind.name(), name, cat(&[&head, &b]));
        }
    }
    // All client requests after Set-Up-Response, as one stream.
    let c = sc.plain.stream(Direction::ClientToServer);
    if let Some(cmds) = c.get(164..).filter(|c| !c.is_empty()) {
        seeds.add_one_of(
            "wire_framing",
            n,
            format!("{n}-client-requests"),
            cat(&[&[2], cmds]),
        );
    }
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// The mode octet of `wire_test_packet` and `session_receiver`.
fn mode_index(mode: Mode) -> u8 {
    Mode::ALL.iter().position(|m| *m == mode).unwrap_or(0) as u8
}

fn secure_mode(mode: Mode) -> Option<SecureMode> {
    match mode {
        Mode::Open => None,
        Mode::Authenticated => Some(SecureMode::Authenticated),
        Mode::Encrypted => Some(SecureMode::Encrypted),
    }
}

fn packet_seeds(sc: &Scenario, seeds: &mut Seeds) {
    let plain = test_packets(&sc.plain);
    let wire = test_packets(sc.wire());
    for (i, (p, _, _)) in plain.iter().enumerate().take(2) {
        seeds.add(
            "wire_test_packet",
            format!("{}-packet{i}", sc.name),
            cat(&[&[mode_index(sc.mode)], p]),
        );
    }
    let (Some(mode), Some(keys)) = (secure_mode(sc.mode), sc.keys()) else {
        return;
    };
    for (i, ((p, _, comment), (w, _, _))) in plain.iter().zip(&wire).enumerate().take(2) {
        let Some(sid) = comment
            .as_deref()
            .and_then(|c| c.strip_prefix("sid="))
            .and_then(|c| hex::decode(c.get(..32)?).ok())
            .and_then(|s| <[u8; 16]>::try_from(s).ok())
        else {
            continue;
        };
        let c = TestPacketCrypto::new(mode, &sid, &keys);
        let mut opened = w.clone();
        if c.open(&mut opened).is_err() || opened[..32] != p[..32] {
            eprintln!(
                "{}: packet {i} does not open with the trace's keys",
                sc.name
            );
            continue;
        }
        let mode_octet = u8::from(mode == SecureMode::Encrypted);
        seeds.add(
            "crypto_test_packet",
            format!("{}-packet{i}", sc.name),
            cat(&[&[mode_octet], &sid, &keys.aes, &keys.hmac, w]),
        );
    }
}

/// The `crypto_control` step octet: ends a message (open) or not (update), whole blocks.
fn step(close: bool, len: usize) -> Option<u8> {
    let blocks = len / BLOCK_LEN;
    (len % BLOCK_LEN == 0 && (1..64).contains(&blocks)).then(|| u8::from(close) << 7 | blocks as u8)
}

/// The steps that open one direction's messages, as the reference writes them.
fn control_steps(dir: Direction, msgs: &[Msg]) -> Option<Vec<u8>> {
    let mut steps = Vec::new();
    let mut counts = (0u32, 0u32);
    for m in msgs.iter().filter(|m| m.dir == dir) {
        let len = m.bytes.len();
        match m.kind {
            MsgKind::ServerGreeting | MsgKind::SetUpResponse => {}
            // Only the last block is encrypted; it starts the HMAC of the next message.
            MsgKind::ServerStart => steps.push(step(false, BLOCK_LEN)?),
            // RFC 4656 3.5: one HMAC over the first 96 octets, one over the slots.
            MsgKind::RequestSession => {
                steps.push(step(true, RequestSession::FIXED_LEN)?);
                steps.push(step(true, len - RequestSession::FIXED_LEN)?);
            }
            MsgKind::FetchAck => {
                if let Ok(a) = FetchAck::parse(&m.bytes) {
                    counts = (a.num_skip_ranges, a.num_records);
                }
                steps.push(step(true, len)?);
            }
            // RFC 4656 3.8: the skip ranges and the records each end in an HMAC.
            MsgKind::FetchData => {
                let skips = SkipRange::block_len(counts.0).ok()? + BLOCK_LEN;
                steps.push(step(true, skips)?);
                steps.push(step(true, len - skips)?);
            }
            _ => steps.push(step(true, len)?),
        }
    }
    steps.push(0);
    Some(steps)
}

fn control_seeds(sc: &Scenario, msgs: &[Msg], seeds: &mut Seeds) {
    let (Some(wire), Some(keys)) = (&sc.wire, sc.keys()) else {
        return;
    };
    let dirs = [
        (
            Direction::ClientToServer,
            "setup-response:",
            "client-iv=",
            164,
        ),
        (Direction::ServerToClient, "server-start:", "server-iv=", 96),
    ];
    for (dir, marker, field, clear) in dirs {
        let Some(iv) = sc
            .header_hex(marker, field)
            .and_then(|v| <[u8; 16]>::try_from(v).ok())
        else {
            continue;
        };
        let Some(steps) = control_steps(dir, msgs) else {
            eprintln!("{}: {dir} messages do not fit the step format", sc.name);
            continue;
        };
        let stream = wire.stream(dir);
        let Some(cipher) = stream.get(clear..) else {
            continue;
        };
        if !opens(&keys, &iv, &steps, cipher) {
            eprintln!("{}: {dir} does not open with the trace's keys", sc.name);
            continue;
        }
        seeds.add(
            "crypto_control",
            format!("{}-{}", sc.name, dir.tag().replace('>', "to")),
            cat(&[&[1], &keys.aes, &keys.hmac, &iv, &steps, cipher]),
        );
    }
}

/// Whether every step of a control seed succeeds.
fn opens(keys: &SessionKeys, iv: &[u8; 16], steps: &[u8], stream: &[u8]) -> bool {
    let mut o = ControlOpener::new(keys, iv);
    let mut off = 0;
    for &s in steps.iter().take_while(|s| **s != 0) {
        let len = usize::from(s & 0x3f) * BLOCK_LEN;
        let Some(chunk) = stream.get(off..off + len) else {
            return false;
        };
        off += len;
        let mut buf = chunk.to_vec();
        let r = if s & 0x80 != 0 {
            o.open(&mut buf)
        } else {
            o.update(&mut buf)
        };
        if r.is_err() {
            return false;
        }
    }
    off == stream.len()
}

fn token_seeds(sc: &Scenario, msgs: &[Msg], seeds: &mut Seeds) {
    let key = sc
        .header_hex("pbkdf2-hmac-sha1", ") = ")
        .and_then(|k| <[u8; 16]>::try_from(k).ok());
    let challenge = sc
        .header_hex("server-greeting:", "challenge=")
        .and_then(|k| <[u8; 16]>::try_from(k).ok());
    let token = msgs
        .iter()
        .find(|m| m.kind == MsgKind::SetUpResponse)
        .and_then(|m| m.bytes.get(84..148));
    let (Some(key), Some(challenge), Some(token)) = (key, challenge, token) else {
        return;
    };
    let token: [u8; 64] = token.try_into().expect("64 octets");
    if open_token(&DerivedKey::from_bytes(key), &token, &challenge).is_err() {
        eprintln!("{}: the Token does not open", sc.name);
        return;
    }
    seeds.add(
        "crypto_token",
        format!("{}-token", sc.name),
        cat(&[&key, &challenge, &token]),
    );
}

/// One receiver seed per test session: its parameters from Request-Session and
/// Accept-Session, its packets as they were on the wire, received shortly after their send
/// timestamps, then Stop-Sessions.
fn receiver_seeds(sc: &Scenario, msgs: &[Msg], seeds: &mut Seeds) {
    let reqs = msgs
        .iter()
        .filter(|m| m.dir == Direction::ClientToServer && m.kind == MsgKind::RequestSession)
        .filter_map(|m| RequestSession::parse(&m.bytes).ok());
    let accs = msgs
        .iter()
        .filter(|m| m.kind == MsgKind::AcceptSession)
        .filter_map(|m| AcceptSession::parse(&m.bytes).ok());
    let keys = sc.keys().unwrap_or(SessionKeys {
        aes: [0; 16],
        hmac: [0; 32],
    });
    let plain = test_packets(&sc.plain);
    let wire = test_packets(sc.wire());
    let ts_at = if sc.mode == Mode::Open { 4 } else { 16 };
    for (k, (req, acc)) in reqs.zip(accs).enumerate() {
        // The server sends (conf-sender): the client chose SID and receiver port.
        let (sid, port) = if req.conf_sender {
            (req.sid, req.receiver_port)
        } else {
            (acc.sid, acc.port)
        };
        let start = req.start_time.raw();
        let mut input = vec![mode_index(sc.mode)];
        input.extend_from_slice(&sid.0);
        input.extend_from_slice(&keys.aes);
        input.extend_from_slice(&keys.hmac);
        input.extend_from_slice(&req.num_packets.to_be_bytes());
        input.extend_from_slice(&start.to_be_bytes());
        input.extend_from_slice(&req.timeout.raw().to_be_bytes());
        let Ok(padding) = u16::try_from(req.padding_length) else {
            continue;
        };
        input.extend_from_slice(&padding.to_be_bytes());
        let Some(nslots) = req.slots.len().checked_sub(1).filter(|n| *n < 4) else {
            continue;
        };
        input.push(nslots as u8);
        for s in &req.slots {
            input.push(s.kind.to_u8());
            input.extend_from_slice(&s.mean.raw().to_be_bytes());
        }
        let mut last = 0u64;
        let mut datagrams = Vec::new();
        for ((p, dst, _), (w, _, _)) in plain.iter().zip(&wire) {
            if *dst != port {
                continue;
            }
            let Some(ts) = p.get(ts_at..ts_at + 8) else {
                continue;
            };
            let ts = u64::from_be_bytes(ts.try_into().expect("8 octets"));
            // Received 100 microseconds after it was sent.
            let now = ts.wrapping_sub(start).wrapping_add(429_497);
            last = last.max(now);
            input.push(1);
            input.extend_from_slice(&(w.len() as u16).to_be_bytes());
            input.extend_from_slice(w);
            input.extend_from_slice(&now.to_be_bytes());
            input.push(255);
            datagrams.push((w.clone(), now));
        }
        // Stop-Sessions after the last packet plus twice the timeout, all packets sent.
        input.push(3);
        input.extend_from_slice(&last.wrapping_add(2 * req.timeout.raw()).to_be_bytes());
        input.extend_from_slice(&req.num_packets.to_be_bytes());
        input.push(0x80);

        let accepted = accepted(sc, &keys, &req, sid, &datagrams);
        if accepted != datagrams.len() || accepted == 0 {
            eprintln!(
                "{}: session {k}: {accepted} of {} packets accepted",
                sc.name,
                datagrams.len()
            );
            continue;
        }
        seeds.add("session_receiver", format!("{}-session{k}", sc.name), input);
    }
}

/// How many of `datagrams` a receiver for the session accepts.
fn accepted(
    sc: &Scenario,
    keys: &SessionKeys,
    req: &RequestSession,
    sid: owamp_core::wire::SessionId,
    datagrams: &[(Vec<u8>, u64)],
) -> usize {
    let Ok(schedule) = Schedule::new(sid, &req.slots, req.num_packets) else {
        return 0;
    };
    let protection = match secure_mode(sc.mode) {
        None => PacketProtection::Open,
        Some(m) => PacketProtection::Sealed(TestPacketCrypto::new(m, &sid.0, keys)),
    };
    let mut rx = Receiver::new(
        SessionParams {
            schedule,
            start: req.start_time,
            timeout: req.timeout,
            padding: req.padding_length,
        },
        protection,
    );
    let start = req.start_time.raw();
    datagrams
        .iter()
        .filter(|(d, now)| {
            let t = OwampTime::from_raw(start.wrapping_add(*now));
            rx.receive(d, t, ErrorEstimate::from_raw(1), 255).is_ok()
        })
        .count()
}

fn time_seeds(sc: &Scenario, msgs: &[Msg], seeds: &mut Seeds) {
    let Some(req) = msgs
        .iter()
        .find(|m| m.kind == MsgKind::RequestSession)
        .and_then(|m| RequestSession::parse(&m.bytes).ok())
    else {
        return;
    };
    let ts_at = if sc.mode == Mode::Open { 4 } else { 16 };
    let Some((p, _, _)) = test_packets(&sc.plain).into_iter().next() else {
        return;
    };
    let (Some(ts), Some(ee)) = (p.get(ts_at..ts_at + 8), p.get(ts_at + 8..ts_at + 10)) else {
        return;
    };
    let timeout = req.timeout.to_duration();
    let input = cat(&[
        ts,
        &req.start_time.raw().to_be_bytes(),
        ee,
        &timeout.as_secs().to_be_bytes(),
        &timeout.subsec_nanos().to_be_bytes(),
        &[0, 0, 1],
    ]);
    seeds.add("time_conversions", format!("{}-packet", sc.name), input);
}

fn file_seeds(seeds: &mut Seeds) {
    let refdir = "testdata/traces/reference";
    for f in [
        "d_authfail.trace",
        "a_open.trace",
        "c_encrypted.plain.trace",
    ] {
        if let Ok(b) = fs::read(root().join(refdir).join(f)) {
            seeds.add("conformance_trace", f.to_string(), b);
        }
    }
    for f in [
        "a_open.trace",
        "b_auth.trace",
        "c_encrypted.trace",
        "d_authfail.trace",
    ] {
        if let Ok(b) = fs::read(root().join(refdir).join(f)) {
            seeds.add("conformance_replay", f.to_string(), b);
        }
    }
    for f in ["from.owp", "to.owp"] {
        if let Ok(b) = fs::read(root().join(refdir).join("owp/summary").join(f)) {
            seeds.add("owp_reader", f.to_string(), b);
        }
    }
    // TWAMP: traces for the runner (as found and as TWAMP whatever they hold), a capture.
    for f in ["a_open.trace", "c_encrypted.trace"] {
        if let Ok(b) = fs::read(root().join(TWAMP_DIR).join(f)) {
            seeds.add("conformance_replay", format!("twamp-{f}"), b.clone());
            seeds.add("conformance_twamp", format!("twamp-{f}"), b);
        }
    }
    for f in ["b_auth.plain.trace", "d_authfail.trace"] {
        if let Ok(b) = fs::read(root().join(TWAMP_DIR).join(f)) {
            seeds.add("conformance_twamp", format!("twamp-{f}"), b);
        }
    }
    if let Ok(b) = fs::read(root().join(TWAMP_DIR).join("b_auth.plain.trace")) {
        seeds.add("conformance_trace", "twamp-b_auth.plain.trace".into(), b);
    }
    for f in [
        format!("{refdir}/d_authfail.pcap"),
        format!("{refdir}/a_open.pcap"),
        "testdata/traces/esnet/owamp-auth-failed.pcap".to_string(),
        format!("{TWAMP_DIR}/a_open.pcap"),
    ] {
        if let Ok(b) = fs::read(root().join(&f)) {
            let mut name = f.rsplit('/').next().unwrap_or(&f).to_string();
            if f.starts_with(TWAMP_DIR) {
                name = format!("twamp-{name}");
            }
            seeds.add("conformance_pcap", name, b);
        }
    }
}

fn build() -> Seeds {
    let mut seeds = Seeds::default();
    let scenarios = [
        Scenario::load("a_open", Mode::Open, false),
        Scenario::load("b_auth", Mode::Authenticated, true),
        Scenario::load("c_encrypted", Mode::Encrypted, true),
        Scenario::load("d_authfail", Mode::Authenticated, false),
    ];
    for sc in &scenarios {
        let msgs = messages(&sc.plain);
        message_seeds(sc, &msgs, &mut seeds);
        packet_seeds(sc, &mut seeds);
        control_seeds(sc, &msgs, &mut seeds);
        token_seeds(sc, &msgs, &mut seeds);
        receiver_seeds(sc, &msgs, &mut seeds);
        time_seeds(sc, &msgs, &mut seeds);
        state_machine_seeds(sc, &msgs, &mut seeds);
    }
    file_seeds(&mut seeds);
    cli_seeds(&mut seeds);
    for sc in [
        Scenario::load_from(TWAMP_DIR, "a_open", Mode::Open, false),
        Scenario::load_from(TWAMP_DIR, "b_auth", Mode::Authenticated, true),
        Scenario::load_from(TWAMP_DIR, "c_encrypted", Mode::Encrypted, true),
    ] {
        twamp_seeds(&sc, &mut seeds);
    }
    seeds
}

/// Seeds of the command-line and configuration targets: files and command lines written here
/// in the shapes perfSONAR's documentation describes (there are no traces of them).
fn cli_seeds(seeds: &mut Seeds) {
    let texts: [(&str, &str, &str); 13] = [
        (
            "config_server",
            "full.conf",
            "# owampd settings\nuser owamp\ngroup owamp\nverbose\nloglevel info\n\
             facility local5\nsrcnode [::1]:861\ndatadir /var/lib/owamp\nvardir /var/run\n\
             testports 8760-9960\ndiskfudge 3.0\ndieby 5\ncontroltimeout 1800\n\
             pbkdf2_count 2048\nauthmode AEO\nenddelay 1.5\nmaxcontrolsessions 50\n\
             syncfuzz 0.1\nloglocation\nrootfolly\n",
        ),
        (
            "config_server",
            "continued.conf",
            "authmode \\\n  E # encrypted only\r\ntestports 0\npbkdf2_count 1048576\n",
        ),
        (
            "config_server",
            "unknown-keyword.conf",
            "srcnode 127.0.0.1:0\nbogus value\n",
        ),
        (
            "config_limits",
            "classes.limits",
            "limit root with disk=0, bandwidth=0, delete_on_fetch=on, allow_open_mode=on\n\
             limit regular with parent=root, disk=10G, bandwidth=20M\n\
             limit authd with parent=root, disk=10G, bandwidth=0\n\
             assign default regular\nassign user alice authd\n",
        ),
        (
            "config_limits",
            "nets.limits",
            "# all\nlimit root with \\\n    disk=100M, \\\n    bandwidth=0, \\\n\
             \x20   allow_open_mode=off\nlimit hostile with parent=root, disk=1, \\\n\
             \x20   bandwidth=1, test_sessions=1\nlimit local with parent=root, disk=10G\n\
             assign net 192.0.2.0/24 hostile\nassign net 2001:db8::/32 local\n\
             assign net 127.0.0.1 local\nassign default root\n",
        ),
        (
            "config_pfs",
            "pfstore.pfs",
            "# written by pfstore\nalice\t636f72726563742068\n",
        ),
        (
            "config_pfs",
            "several.pfs",
            "joe    a0167ac6101b360d2f4dd164abba2337\n  # bob's\n\
             bob    2dc36fc4807894cdfbe180b71d4a0f\nsam 3fc763fb\r\n",
        ),
        ("owping_schedule", "exponential", "0.1e"),
        ("owping_schedule", "mixed", "1f,2e,0.5F,0.25"),
        ("owping_schedule", "exponent", "1e-3e,2.5E2f"),
        ("owping_schedule", "zero-slot", "0,0.01"),
        ("config_pfs", "bad-hex.pfs", "alice 6162zz\n"),
        (
            "config_limits",
            "undefined-parent.limits",
            "limit a with parent=b\n",
        ),
    ];
    for (target, name, text) in texts {
        seeds.add(target, name.to_string(), text.as_bytes().to_vec());
    }
    let lines: [(&str, u8, &[&str]); 12] = [
        (
            "owping-secure",
            0,
            &[
                "-A",
                "AE",
                "-u",
                "alice",
                "-k",
                "alice.pfs",
                "-c",
                "100",
                "-i",
                "0.1e",
                "-L",
                "10",
                "127.0.0.1",
            ],
        ),
        (
            "owping-schedule",
            0,
            &[
                "-t",
                "-i",
                "1f,2e",
                "-s",
                "1000",
                "-D",
                "AF41",
                "-P",
                "8760-8960",
                "-z",
                "0.5",
                "-E",
                "2",
                "--max-pbkdf2-count",
                "4096",
                "[::1]:861",
            ],
        ),
        (
            "owping-output",
            0,
            &[
                "-f", "-M", "-a", "95", "-b", "0.001", "-n", "m", "-v20", "-F", "x.owp", "h:861",
            ],
        ),
        (
            "powstream",
            1,
            &[
                "-c",
                "600",
                "-N",
                "300",
                "-i",
                "0.1",
                "-L",
                "10",
                "-p",
                "-d",
                "/tmp",
                "-X",
                "2",
                "-t",
                "127.0.0.1",
            ],
        ),
        (
            "powstream-auth",
            1,
            &[
                "-A", "A", "-u", "alice", "-k", "a.pfs", "-I", "30", "-b", "0.0001", "h",
            ],
        ),
        (
            "owfetch",
            2,
            &[
                "-A",
                "E",
                "-u",
                "alice",
                "-k",
                "a.pfs",
                "127.0.0.1",
                "0123456789abcdef0123456789abcdef",
                "out.owp",
            ],
        ),
        (
            "owstats",
            3,
            &["-M", "-a", "50,90", "-n", "u", "-v", "x.owp"],
        ),
        (
            "owstats-raw",
            3,
            &["-R", "-U", "-b", "0.01", "x.owp", "y.owp"],
        ),
        (
            "owampd",
            4,
            &[
                "-c",
                "/etc/owamp",
                "-a",
                "AE",
                "-S",
                "127.0.0.1:8610",
                "-P",
                "8760-8960",
                "-e",
                "LOG_LOCAL5",
                "-v",
                "-f",
            ],
        ),
        ("owampd-v6", 4, &["-S", "[::1]", "-P", "0", "-Z"]),
        ("pfstore", 5, &["-n", "-f", "owamp-server.pfs", "alice"]),
        ("pfstore-delete", 5, &["-d", "-f", "x.pfs", "bob"]),
    ];
    for (name, tool, argv) in lines {
        let mut b = vec![tool];
        b.extend_from_slice(argv.join("\0").as_bytes());
        seeds.add("cli_argv", name.to_string(), b);
    }
}

/// The TWAMP reference traces (twampd/twping 5.2.3).
const TWAMP_DIR: &str = "testdata/traces/twamp";

/// One direction's control segments.
fn segments(t: &Trace, dir: Direction) -> Vec<Vec<u8>> {
    t.events
        .iter()
        .filter_map(|e| match e {
            Event::Control { dir: d, bytes, .. } if *d == dir => Some(bytes.clone()),
            _ => None,
        })
        .collect()
}

/// Seeds for the TWAMP targets from a TWAMP trace: its messages, packets, and its control
/// exchange for the state machines in TWAMP mode (flag bit 5).
fn twamp_seeds(sc: &Scenario, seeds: &mut Seeds) {
    let cs = segments(&sc.plain, Direction::ClientToServer);
    let s2c = segments(&sc.plain, Direction::ServerToClient);
    let name = format!("twamp-{}", sc.name);
    if let [_, request, _, stop] = cs.as_slice() {
        seeds.add("wire_request_tw_session", name.clone(), request.clone());
        seeds.add("wire_twamp_stop_sessions", name.clone(), stop.clone());
        // The checker's framing of both (clear, Modes 0xf offered, no counts).
        for (kind, m) in [
            (MsgKind::RequestTwSession, request),
            (MsgKind::TwampStopSessions, stop),
        ] {
            let head = [
                &[frame_kind_index(kind), 0b11][..],
                &15u32.to_be_bytes(),
                &[0; 8],
            ]
            .concat();
            seeds.add_one_of(
                "conformance_frame",
                &format!("twamp-{}", kind.name()),
                format!("{name}-{}", kind.name()),
                cat(&[&head, m]),
            );
        }
    }
    let plain = test_packets(&sc.plain);
    let wire = test_packets(sc.wire());
    // Packets alternate: the sender's, then the reflector's answer.
    for (i, (p, _, _)) in plain.iter().skip(1).step_by(2).enumerate().take(2) {
        seeds.add(
            "wire_reflector_packet",
            format!("{name}-reply{i}"),
            cat(&[&[mode_index(sc.mode)], p]),
        );
    }
    let keys = sc.keys().unwrap_or(SessionKeys {
        aes: [0; 16],
        hmac: [0; 32],
    });
    let sid: [u8; 16] = sc
        .header_hex("session:", "sid=")
        .and_then(|s| s.try_into().ok())
        .unwrap_or_default();
    if let Some(mode) = secure_mode(sc.mode) {
        let c = TestPacketCrypto::new(mode, &sid, &keys);
        for (i, (w, _, _)) in wire.iter().skip(1).step_by(2).enumerate().take(2) {
            let mut opened = w.clone();
            if c.open_reflector(&mut opened).is_err() {
                eprintln!("{}: reply {i} does not open with the trace's keys", sc.name);
                continue;
            }
            let mode_octet = u8::from(mode == SecureMode::Encrypted);
            seeds.add(
                "crypto_reflector_packet",
                format!("{name}-reply{i}"),
                cat(&[&[mode_octet], &sid, &keys.aes, &keys.hmac, w]),
            );
        }
    }
    // The session: the sender's padding, then the recorded datagrams of both directions.
    let padding = wire
        .first()
        .and_then(|(p, _, _)| p.get(TestPacket::header_len(sc.mode)..))
        .unwrap_or_default();
    let mut v = cat(&[&[mode_index(sc.mode)], &sid, &keys.aes, &keys.hmac]);
    v.push(padding.len() as u8);
    v.extend_from_slice(padding);
    for (p, _, _) in wire.iter().take(6) {
        v.extend_from_slice(&(p.len() as u16).to_be_bytes());
        v.extend_from_slice(p);
    }
    seeds.add("session_twamp", name.clone(), v);

    let Ok(rec) = Recorded::from_twamp_plaintext(&cs.concat(), &s2c.concat()) else {
        eprintln!("{}: not a complete TWAMP exchange", sc.name);
        return;
    };
    let Some(req) = rec.requests.first() else {
        return;
    };
    let now = rec.server_start.start_time.raw();
    let secure = rec.setup.mode.is_secure();
    // Server: Challenge, Salt, Server-IV, the SID's octets, the port draw.
    let mut rng = cat(&[&rec.greeting.challenge, &rec.greeting.salt]);
    if secure {
        rng.extend_from_slice(&rec.server_start.server_iv);
    }
    rng.extend_from_slice(&req.accept.sid.0[12..]);
    rng.extend_from_slice(&port_draw(owamp_fuzz::TEST_PORTS, req.accept.port).unwrap_or_default());
    let Some(mut server) = control_header(7 | 8 | 32, 2048, now, now, &rng) else {
        return;
    };
    for (i, seg) in segments(sc.wire(), Direction::ClientToServer)
        .iter()
        .enumerate()
    {
        if i == 1 {
            // Request-TW-Session: the SID's time.
            server.push(4);
            server.extend_from_slice(&req.request_time().raw().to_be_bytes());
        }
        if received(&mut server, seg).is_none() {
            return;
        }
    }
    seeds.add("control_server", format!("{name}-server"), server);

    // Client: session keys and Client-IV; Request-TW-Session after Server-Start, Start-Sessions
    // after Accept-Session, then timers until its Stop-Sessions.
    let mut rng = Vec::new();
    if let (true, Some(k)) = (secure, sc.keys()) {
        rng = cat(&[&k.aes, &k.hmac, &rec.setup.client_iv]);
    }
    let flags = if secure { 7 | 8 | 32 } else { 7 | 32 };
    let Some(mut client) = control_header(flags, 4096, now, 0, &rng) else {
        return;
    };
    for (i, seg) in segments(sc.wire(), Direction::ServerToClient)
        .iter()
        .enumerate()
    {
        if received(&mut client, seg).is_none() {
            return;
        }
        match i {
            1 => command(&mut client, &rec, &RecordedCommand::RequestSession(0)),
            2 => command(&mut client, &rec, &RecordedCommand::StartSessions),
            _ => {}
        }
    }
    client.extend_from_slice(&[1, 1, 1]);
    seeds.add("control_client", format!("{name}-client"), client);
}

fn main() -> ExitCode {
    let check_only = std::env::args().any(|a| a == "--check");
    let seeds = build();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let mut stale = 0;
    for (name, _) in owamp_fuzz::TARGETS {
        let files = seeds.files.get(name).map(Vec::as_slice).unwrap_or_default();
        if files.is_empty() {
            eprintln!("{name}: no seeds from the traces");
        }
        let tdir = dir.join(name);
        for (file, bytes) in files {
            let path = tdir.join(file);
            if fs::read(&path).ok().as_deref() == Some(bytes.as_slice()) {
                continue;
            }
            stale += 1;
            if check_only {
                eprintln!("stale or missing: {}", path.display());
            } else {
                fs::create_dir_all(&tdir).expect("create the seed folder");
                fs::write(&path, bytes).expect("write a seed");
            }
        }
        // Files the traces no longer give.
        for (path, _) in owamp_fuzz::replay::files(&tdir) {
            let known = files
                .iter()
                .any(|(f, _)| path.file_name() == Some(f.as_ref()));
            if !known {
                stale += 1;
                if check_only {
                    eprintln!("not from the traces: {}", path.display());
                } else {
                    fs::remove_file(&path).expect("remove a stale seed");
                }
            }
        }
        println!("{name}: {} seeds", files.len());
    }
    if check_only && stale > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The header of the control targets: flags, PBKDF2 count, start time, Start-Time, RNG script.
fn control_header(flags: u8, kdf: u32, now: u64, start: u64, rng: &[u8]) -> Option<Vec<u8>> {
    let mut v = vec![flags];
    v.extend_from_slice(&u16::try_from(kdf).ok()?.to_be_bytes());
    v.extend_from_slice(&now.to_be_bytes());
    v.extend_from_slice(&start.to_be_bytes());
    v.push(u8::try_from(rng.len()).ok()?);
    v.extend_from_slice(rng);
    Some(v)
}

/// A `Received` event: octets and a time step of about a millisecond.
fn received(v: &mut Vec<u8>, bytes: &[u8]) -> Option<()> {
    v.push(0);
    v.extend_from_slice(&u16::try_from(bytes.len()).ok()?.to_be_bytes());
    v.extend_from_slice(bytes);
    v.extend_from_slice(&64u16.to_be_bytes());
    Some(())
}

/// Seeds that replay a recorded exchange through the fuzzed server (the client's octets as
/// they were on the wire) and client (the server's octets), with the random values of the
/// recording in the RNG scripts and the application's commands where the client gave them.
fn state_machine_seeds(sc: &Scenario, msgs: &[Msg], seeds: &mut Seeds) {
    let cs = sc.plain.stream(Direction::ClientToServer);
    let s2c = sc.plain.stream(Direction::ServerToClient);
    let Ok(rec) = Recorded::from_plaintext(&cs, &s2c) else {
        eprintln!("{}: not a complete recorded exchange", sc.name);
        return;
    };
    let keys = sc.keys();
    let now = rec.server_start.start_time.raw();
    let secure = rec.setup.mode.is_secure();
    // Flags: every mode, a test port range; the client has the identity in A/E.
    let ports = owamp_fuzz::TEST_PORTS;

    // Server: Challenge, Salt, Server-IV, then per request the SID octets and port draw.
    let mut rng = [rec.greeting.challenge, rec.greeting.salt].concat();
    if secure && rec.server_start.accept.is_ok() {
        rng.extend_from_slice(&rec.server_start.server_iv);
    }
    for r in &rec.requests {
        if r.server_receives() {
            rng.extend_from_slice(&r.accept.sid.0[12..]);
        }
        if let Some(d) = port_draw(ports, r.accept.port) {
            rng.extend_from_slice(&d);
        }
    }
    let Some(mut server) = control_header(
        7 | 8,
        rec.greeting.count,
        now,
        rec.server_start.start_time.raw(),
        &rng,
    ) else {
        return;
    };
    // Where the server's own Stop-Sessions start: its sessions ended there, which the
    // application tells the fuzzed server (event 3) at that point.
    let server_stops: Vec<usize> = msgs
        .iter()
        .filter(|m| m.dir == Direction::ServerToClient && m.kind == MsgKind::StopSessions)
        .map(|m| m.start)
        .collect();
    let mut sc_off = 0;
    let mut off = 0;
    for e in &sc.wire().events {
        let bytes = match e {
            Event::Control {
                dir: Direction::ClientToServer,
                bytes,
                ..
            } => bytes,
            Event::Control { bytes, .. } => {
                let end = sc_off + bytes.len();
                if server_stops.iter().any(|s| (sc_off..end).contains(s)) {
                    server.push(3);
                }
                sc_off = end;
                continue;
            }
            Event::Test { .. } => continue,
        };
        // The input that completes a request the server receives carries the SID's time.
        if let Some(r) = rec
            .requests
            .iter()
            .find(|r| r.server_receives() && (off..off + bytes.len()).contains(&(r.end - 1)))
        {
            server.push(4);
            server.extend_from_slice(&r.request_time().raw().to_be_bytes());
        }
        off += bytes.len();
        if received(&mut server, bytes).is_none() {
            return;
        }
    }
    seeds.add("control_server", format!("{}-server", sc.name), server);

    // Client: session keys and Client-IV, then per request it receives the SID octets.
    let mut rng = Vec::new();
    if let (true, Some(k)) = (secure, &keys) {
        rng.extend_from_slice(&k.aes);
        rng.extend_from_slice(&k.hmac);
        rng.extend_from_slice(&rec.setup.client_iv);
    }
    for r in &rec.requests {
        if !r.server_receives() {
            rng.extend_from_slice(&r.request.sid.0[12..]);
        }
    }
    let flags = if secure { 7 | 8 } else { 7 };
    let Some(mut client) = control_header(flags, 4096, now, 0, &rng) else {
        return;
    };
    // The client's messages after Set-Up-Response, with their stream offsets.
    let starts: Vec<usize> = msgs
        .iter()
        .filter(|m| m.dir == Direction::ClientToServer && m.kind != MsgKind::SetUpResponse)
        .map(|m| m.start)
        .collect();
    let mut commands = starts.iter().zip(&rec.commands);
    let mut next = commands.next();
    let mut cs_off = 0;
    for e in &sc.wire().events {
        match e {
            Event::Control {
                dir: Direction::ServerToClient,
                bytes,
                ..
            } => {
                if received(&mut client, bytes).is_none() {
                    return;
                }
            }
            Event::Control { bytes, .. } => {
                let end = cs_off + bytes.len();
                while let Some((&start, cmd)) = next {
                    if start >= end {
                        break;
                    }
                    command(&mut client, &rec, cmd);
                    next = commands.next();
                }
                cs_off = end;
            }
            Event::Test { .. } => {}
        }
    }
    let fetches = rec
        .commands
        .iter()
        .any(|c| matches!(c, RecordedCommand::FetchSession(_)));
    seeds.add(
        "control_client",
        format!("{}-client", sc.name),
        client.clone(),
    );
    // The same exchange with the Fetch-Session answer read record by record (flag bit 4).
    if fetches {
        client[0] |= 16;
        seeds.add(
            "control_client",
            format!("{}-streamed-client", sc.name),
            client,
        );
    }
}

/// The events that make the client send a recorded message.
fn command(v: &mut Vec<u8>, rec: &Recorded, cmd: &RecordedCommand) {
    match cmd {
        RecordedCommand::RequestSession(i) => {
            let Some(r) = rec.requests.get(*i) else {
                return;
            };
            if !r.server_receives() {
                // The client makes the SID from the time it handles the command.
                v.push(8);
                v.extend_from_slice(&r.request_time().raw().to_be_bytes());
            }
            let c = r.command();
            v.push(3);
            v.push(u8::from(c.role == Role::Receiver));
            v.extend_from_slice(&c.local.port().to_be_bytes());
            v.extend_from_slice(&c.packets.to_be_bytes());
            v.extend_from_slice(&c.padding.to_be_bytes());
            v.extend_from_slice(&c.start_time.raw().to_be_bytes());
            v.extend_from_slice(&c.timeout.raw().to_be_bytes());
            v.push(c.slots.len().saturating_sub(1) as u8);
            for s in &c.slots {
                v.push(s.kind.to_u8());
                v.extend_from_slice(&s.mean.raw().to_be_bytes());
            }
        }
        RecordedCommand::StartSessions => v.push(4),
        RecordedCommand::StopSessions(_) => v.push(7),
        RecordedCommand::FetchSession(i) => {
            let Some(f) = rec.fetches.get(*i) else {
                return;
            };
            v.push(5);
            v.extend_from_slice(&f.fetch.sid.0);
            v.extend_from_slice(&f.fetch.begin_seq.to_be_bytes());
            v.extend_from_slice(&f.fetch.end_seq.to_be_bytes());
        }
    }
}
