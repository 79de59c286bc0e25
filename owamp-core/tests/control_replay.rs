//! Replays the reference traces (perfSONAR owamp 5.2.3, testdata/traces/reference) through the
//! server and client state machines and checks that each produces exactly the octets the
//! reference sent: the server fed the recorded client-to-server stream must send the recorded
//! server-to-client stream, and the other way round.
//!
//! Random values and times come from the trace (see the `owamp_core::control` module docs).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use owamp_core::control::replay::{Recorded, ScriptedRng};
use owamp_core::control::{
    Client, ClientCommand, ClientConfig, CloseReason, Identity, Mode, Modes, PortRange, Role,
    Server, ServerConfig, SessionRequest,
};
use owamp_core::crypto::SessionKeys;
use owamp_core::io::{
    FetchReply, Finished, Input, Output, SessionInfo, SessionReport, StoredSession,
};
use owamp_core::policy::{ClassLimits, Limits};
use owamp_core::time::{ErrorEstimate, OwampTime};
use owamp_core::wire::{DataRecord, SessionId, Slot, SlotKind, TypeP};

const PORTS: PortRange = PortRange {
    low: 8760,
    high: 8960,
};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Dir {
    Cs,
    Sc,
}

#[derive(Clone, Debug, Default)]
struct Trace {
    headers: Vec<String>,
    segments: Vec<(Dir, Vec<u8>)>,
}

fn load(file: &str) -> Option<Trace> {
    let path = format!(
        "{}/../testdata/traces/reference/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(path).ok()?;
    let mut t = Trace::default();
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("# ") {
            t.headers.push(h.to_owned());
        } else if let Some(x) = line.strip_prefix("C>S ") {
            t.segments.push((Dir::Cs, hex::decode(x.trim()).unwrap()));
        } else if let Some(x) = line.strip_prefix("S>C ") {
            t.segments.push((Dir::Sc, hex::decode(x.trim()).unwrap()));
        }
    }
    Some(t)
}

impl Trace {
    fn stream(&self, d: Dir) -> Vec<u8> {
        self.segments
            .iter()
            .filter(|(x, _)| *x == d)
            .flat_map(|(_, b)| b.iter().copied())
            .collect()
    }

    /// The hex value after `key=` in the header line starting with `line`.
    fn header_hex(&self, line: &str, key: &str) -> Option<Vec<u8>> {
        let h = self.headers.iter().find(|h| h.starts_with(line))?;
        let at = h.find(&format!("{key}="))? + key.len() + 1;
        let v: String = h[at..]
            .chars()
            .take_while(|c| c.is_ascii_hexdigit())
            .collect();
        hex::decode(v).ok()
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(b[at..at + 2].try_into().unwrap())
}
fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}
fn sid_at(b: &[u8], at: usize) -> SessionId {
    SessionId(b[at..at + 16].try_into().unwrap())
}

/// A client message found in the plaintext client-to-server stream.
#[derive(Debug, Clone)]
enum ClientMsg {
    Request {
        body: Vec<u8>,
        slots: Vec<Slot>,
    },
    Start,
    Stop,
    Fetch {
        begin: u32,
        end: u32,
        sid: SessionId,
    },
}

fn client_messages(cs: &[u8]) -> Vec<ClientMsg> {
    let mut out = Vec::new();
    let mut at = 164;
    while at < cs.len() {
        match cs[at] {
            1 => {
                let n = be32(cs, at + 4) as usize;
                let slots = (0..n)
                    .map(|i| {
                        let s = &cs[at + 112 + 16 * i..];
                        Slot {
                            kind: if s[0] == 0 {
                                SlotKind::Exponential
                            } else {
                                SlotKind::Fixed
                            },
                            mean: be64(s, 8),
                        }
                    })
                    .collect();
                let len = 112 + 16 * n + 16;
                out.push(ClientMsg::Request {
                    body: cs[at..at + 112].to_vec(),
                    slots,
                });
                at += len;
            }
            2 => {
                out.push(ClientMsg::Start);
                at += 32;
            }
            3 => {
                at += stop_len(&cs[at..]);
                out.push(ClientMsg::Stop);
            }
            4 => {
                out.push(ClientMsg::Fetch {
                    begin: be32(cs, at + 8),
                    end: be32(cs, at + 12),
                    sid: sid_at(cs, at + 16),
                });
                at += 48;
            }
            other => panic!("unknown client message {other}"),
        }
    }
    out
}

/// Length of a Stop-Sessions message at the start of `b`.
fn stop_len(b: &[u8]) -> usize {
    let n = be32(b, 4) as usize;
    let mut at = 16;
    for _ in 0..n {
        let nskips = be32(b, at + 20) as usize;
        at += 16 + (8 + 8 * nskips).div_ceil(16) * 16;
    }
    at + 16
}

/// What the server sent: Accept-Sessions, the records of the fetch response.
struct ServerSide {
    stops: Vec<(SessionId, u32)>,
    fetched: Vec<DataRecord>,
}

fn server_side(sc: &[u8], nreq: usize) -> ServerSide {
    let mut at = 112;
    // The Accept-Sessions, one per request.
    at += 48 * nreq;
    let mut stops = Vec::new();
    let mut fetched = Vec::new();
    while at < sc.len() {
        match sc[at] {
            // Start-Ack (Accept 0) is the only 32-octet message starting with 0 before Stop.
            0 if sc.len() - at >= 32 && be32(sc, at + 12) == 0 && stops.is_empty() => at += 32,
            3 => {
                let n = be32(sc, at + 4) as usize;
                let mut p = at + 16;
                for _ in 0..n {
                    stops.push((sid_at(sc, p), be32(sc, p + 16)));
                    let nskips = be32(sc, p + 20) as usize;
                    p += 16 + (8 + 8 * nskips).div_ceil(16) * 16;
                }
                at += stop_len(&sc[at..]);
            }
            _ => {
                // Fetch-Ack and the data after it.
                let nskips = be32(sc, at + 8) as usize;
                let nrec = be32(sc, at + 12) as usize;
                at += 32;
                let nslots = be32(sc, at + 4) as usize;
                at += 112 + 16 * nslots + 16;
                at += (8 * nskips).div_ceil(16) * 16 + 16;
                for i in 0..nrec {
                    let r = &sc[at + 25 * i..];
                    fetched.push(DataRecord {
                        seq: be32(r, 0),
                        send_error: ErrorEstimate::from_raw(be16(r, 4)),
                        recv_error: ErrorEstimate::from_raw(be16(r, 6)),
                        send_time: OwampTime::from_raw(be64(r, 8)),
                        recv_time: OwampTime::from_raw(be64(r, 16)),
                        ttl: r[24],
                    });
                }
                at += (25 * nrec).div_ceil(16) * 16 + 16;
            }
        }
    }
    ServerSide { stops, fetched }
}

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

fn policy(identity: Option<(&[u8], &[u8])>) -> Limits {
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
    if let Some((k, pass)) = identity {
        p.assign_user(k, "authd");
        p.set_passphrase(k, pass);
    }
    p
}

const ALICE: &[u8] = b"alice";
const CORRECT: &[u8] = b"correct horse battery staple";

/// Feeds the server the recorded client octets; returns what it sent and how it closed.
fn replay_server(name: &str) -> (Vec<u8>, Vec<u8>, Option<CloseReason>) {
    replay_server_chunked(name, None)
}

/// As [`replay_server`], with the client's octets cut into pieces of 1 to 40 octets chosen by
/// `seed` instead of the recorded segments.
fn replay_server_chunked(name: &str, seed: Option<u64>) -> (Vec<u8>, Vec<u8>, Option<CloseReason>) {
    let mut wire = load(&format!("{name}.trace")).expect("trace");
    if let Some(seed) = seed {
        let cs = wire.stream(Dir::Cs);
        let mut x = seed | 1;
        let mut segs = Vec::new();
        let mut at = 0;
        while at < cs.len() {
            // xorshift: any split will do, as long as it is reproducible.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = (1 + (x % 40) as usize).min(cs.len() - at);
            segs.push((Dir::Cs, cs[at..at + n].to_vec()));
            at += n;
        }
        wire.segments.retain(|(d, _)| *d == Dir::Sc);
        wire.segments.extend(segs);
    }
    let plain = load(&format!("{name}.plain.trace")).unwrap_or_else(|| wire.clone());
    let cs = plain.stream(Dir::Cs);
    let sc = plain.stream(Dir::Sc);
    let msgs = client_messages(&cs);
    let nreq = msgs
        .iter()
        .filter(|m| matches!(m, ClientMsg::Request { .. }))
        .count();
    let accepted = sc.len() >= 112 && sc[64 + 15] == 0;
    let side = if accepted {
        server_side(&sc, nreq)
    } else {
        ServerSide {
            stops: vec![],
            fetched: vec![],
        }
    };

    // Random values in the order the server draws them, and the times the SIDs carry.
    let recorded = Recorded::from_plaintext(&cs, &sc).expect("recorded exchange");
    let rng = recorded.server_rng(Some(PORTS));
    let times: Vec<(usize, OwampTime)> = recorded
        .requests
        .iter()
        .filter(|r| r.server_receives())
        .map(|r| (r.end, r.request_time()))
        .collect();
    assert_eq!(recorded.requests.len(), nreq);
    let start_time = if sc.len() >= 104 {
        OwampTime::from_raw(be64(&sc, 96))
    } else {
        OwampTime::default()
    };
    let base = OwampTime::from_raw(start_time.raw() + (60 << 32));
    let cfg = ServerConfig {
        start_time,
        kdf_count: be32(&sc, 48),
        test_ports: Some(PORTS),
        end_delay: Duration::ZERO,
        ..ServerConfig::default()
    };
    let mut server = Server::new(
        base,
        cfg,
        policy(Some((ALICE, CORRECT))),
        rng,
        localhost(8610),
        localhost(40000),
    );

    let mut out = Vec::new();
    let mut closed = None;
    let mut sessions: Vec<SessionInfo> = Vec::new();
    let mut stopped: Vec<(SessionId, u32)> = Vec::new();
    let mut cs_at = 0;
    let mut now = base;
    for (d, seg) in &wire.segments {
        if *d != Dir::Cs {
            continue;
        }
        let seg_end = cs_at + seg.len();
        if let Some((_, t)) = times.iter().find(|(e, _)| *e > cs_at && *e <= seg_end) {
            now = *t;
        }
        cs_at = seg_end;
        let mut inputs = vec![Input::Received(seg)];
        while let Some(input) = inputs.pop() {
            server.handle_input(now, input).unwrap();
            while let Some(o) = server.poll_output() {
                match o {
                    Output::Transmit(b) => out.extend_from_slice(&b),
                    Output::PrepareTestEndpoint(e) => inputs.push(Input::EndpointReady {
                        sid: e.sid,
                        port: e.local.port(),
                    }),
                    Output::SessionAccepted(info) => sessions.push(*info),
                    Output::StartSessions | Output::StopLocalSessions => {
                        for s in &sessions {
                            inputs.push(Input::SessionFinished(SessionReport::completed(
                                s.sid,
                                s.request.num_packets,
                            )));
                        }
                    }
                    Output::SessionStopped(e) => stopped.push((e.sid, e.next_seqno)),
                    Output::FetchRequest { sid, .. } => {
                        let info = sessions.iter().find(|s| s.sid == sid).unwrap();
                        let next = stopped.iter().find(|s| s.0 == sid).unwrap().1;
                        inputs.push(Input::FetchReply(FetchReply::Found(Box::new(
                            StoredSession {
                                request: info.request.clone(),
                                finished: Finished::Normal,
                                next_seqno: next,
                                skips: vec![],
                                records: side.fetched.clone(),
                            },
                        ))));
                    }
                    Output::Close(r) => closed = Some(r),
                    _ => {}
                }
            }
            // Answers go in the order the outputs came.
            inputs.reverse();
        }
    }
    // The server's own Stop-Sessions reported what its senders sent.
    for (sid, next) in &side.stops {
        let info = sessions
            .iter()
            .find(|s| s.sid == *sid)
            .expect("server sender");
        assert_eq!(*next, info.request.num_packets);
    }
    (out, wire.stream(Dir::Sc), closed)
}

/// Feeds the client the recorded server octets and the commands owping gave; returns what it
/// sent and what was recorded.
fn replay_client(
    name: &str,
    modes: Modes,
    pass: Option<&[u8]>,
) -> (Vec<u8>, Vec<u8>, Option<CloseReason>) {
    let wire = load(&format!("{name}.trace")).expect("trace");
    let plain = load(&format!("{name}.plain.trace"));
    let cs_wire = wire.stream(Dir::Cs);
    let sc_wire = wire.stream(Dir::Sc);
    let cs = plain
        .as_ref()
        .map_or(cs_wire.clone(), |p| p.stream(Dir::Cs));
    let msgs = client_messages(&cs);

    // The client's keys: from the decrypted trace's header, else from the Token with the
    // passphrase the client used.
    let sc_plain = plain
        .as_ref()
        .map_or(sc_wire.clone(), |p| p.stream(Dir::Sc));
    let recorded = Recorded::from_plaintext(&cs, &sc_plain).expect("recorded exchange");
    let keys = match &plain {
        Some(p) if be32(&cs, 0) != 1 => Some(SessionKeys {
            aes: p
                .header_hex("token-decrypt", "aes-session-key")
                .unwrap()
                .try_into()
                .unwrap(),
            hmac: p
                .header_hex("token-decrypt", "hmac-session-key")
                .unwrap()
                .try_into()
                .unwrap(),
        }),
        _ => pass.and_then(|p| recorded.client_keys(p)),
    };
    let rng = recorded.client_rng(keys.as_ref());
    let mut commands = Vec::new();
    for m in &msgs {
        match m {
            ClientMsg::Request { body, slots, .. } => {
                let sender = IpAddr::V4(Ipv4Addr::new(body[16], body[17], body[18], body[19]));
                let receiver = IpAddr::V4(Ipv4Addr::new(body[32], body[33], body[34], body[35]));
                let sid = sid_at(body, 48);
                let (role, local, peer, now) = if body[3] != 0 {
                    (
                        Role::Sender,
                        SocketAddr::new(sender, be16(body, 12)),
                        receiver,
                        None,
                    )
                } else {
                    (
                        Role::Receiver,
                        SocketAddr::new(receiver, be16(body, 14)),
                        sender,
                        Some(OwampTime::from_raw(be64(&sid.0, 4))),
                    )
                };
                commands.push((
                    now,
                    ClientCommand::RequestSession(SessionRequest {
                        role,
                        local,
                        peer,
                        slots: slots.clone(),
                        packets: be32(body, 8),
                        padding: be32(body, 64),
                        start_time: OwampTime::from_raw(be64(body, 68)),
                        timeout: be64(body, 76),
                        type_p: TypeP(be32(body, 84)),
                    }),
                ));
            }
            ClientMsg::Start => commands.push((None, ClientCommand::StartSessions)),
            ClientMsg::Stop => {}
            ClientMsg::Fetch { begin, end, sid } => commands.push((
                None,
                ClientCommand::Fetch {
                    sid: *sid,
                    begin: *begin,
                    end: *end,
                },
            )),
        }
    }
    commands.reverse();

    let base = OwampTime::from_raw(0xeeb2_5d6e_0000_0000);
    let cfg = ClientConfig {
        modes,
        identity: pass.map(|p| Identity {
            key_id: ALICE.to_vec(),
            passphrase: p.to_vec(),
        }),
        end_delay: Duration::ZERO,
        ..ClientConfig::default()
    };
    let mut client = Client::new(base, cfg, rng);
    let mut out = Vec::new();
    let mut closed = None;
    let mut sessions: Vec<SessionInfo> = Vec::new();
    let mut pending: Vec<Input<'static>> = Vec::new();
    let drain = |client: &mut Client<ScriptedRng>,
                 out: &mut Vec<u8>,
                 closed: &mut Option<CloseReason>,
                 sessions: &mut Vec<SessionInfo>,
                 pending: &mut Vec<Input<'static>>| {
        while let Some(o) = client.poll_output() {
            match o {
                Output::Transmit(b) => out.extend_from_slice(&b),
                Output::SessionAccepted(info) => sessions.push(*info),
                Output::StartSessions | Output::StopLocalSessions => {
                    for s in sessions.iter() {
                        pending.push(Input::SessionFinished(SessionReport::completed(
                            s.sid,
                            s.request.num_packets,
                        )));
                    }
                }
                Output::TestComplete => sessions.clear(),
                Output::Close(r) => *closed = Some(r),
                _ => {}
            }
        }
    };
    for (d, seg) in &wire.segments {
        if *d != Dir::Sc {
            continue;
        }
        client.handle_input(base, Input::Received(seg)).unwrap();
        loop {
            drain(
                &mut client,
                &mut out,
                &mut closed,
                &mut sessions,
                &mut pending,
            );
            if let Some(input) = (!pending.is_empty()).then(|| pending.remove(0)) {
                client.handle_input(base, input).unwrap();
                continue;
            }
            if client.is_ready() {
                if let Some((t, cmd)) = commands.pop() {
                    client
                        .handle_input(t.unwrap_or(base), Input::Command(cmd))
                        .unwrap();
                    continue;
                }
            }
            break;
        }
    }
    (out, cs_wire, closed)
}

fn check(name: &str, got: &[u8], want: &[u8]) {
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{name}: {} octets produced, {} recorded, first difference at {:?}\n got  {}\n want {}",
            got.len(),
            want.len(),
            at,
            hex::encode(
                &got[at.unwrap_or(0).saturating_sub(16)..got.len().min(at.unwrap_or(0) + 48)]
            ),
            hex::encode(
                &want[at.unwrap_or(0).saturating_sub(16)..want.len().min(at.unwrap_or(0) + 48)]
            ),
        );
    }
}

#[test]
fn server_replays_any_segmentation() {
    for name in ["a_open", "b_auth", "c_encrypted", "d_authfail"] {
        for seed in [1, 2, 3, 0xdead_beef] {
            let (got, want, _) = replay_server_chunked(name, Some(seed));
            check(&format!("{name} server, split {seed}"), &got, &want);
        }
    }
}

#[test]
fn server_replays_a_open() {
    let (got, want, _) = replay_server("a_open");
    check("a_open server", &got, &want);
}

#[test]
fn client_replays_a_open() {
    let (got, want, _) = replay_client("a_open", Modes::ALL, None);
    check("a_open client", &got, &want);
}

#[test]
fn server_replays_b_auth() {
    let (got, want, _) = replay_server("b_auth");
    check("b_auth server", &got, &want);
}

#[test]
fn client_replays_b_auth() {
    let (got, want, _) = replay_client("b_auth", Modes::from(Mode::Authenticated), Some(CORRECT));
    check("b_auth client", &got, &want);
}

#[test]
fn server_replays_c_encrypted() {
    let (got, want, _) = replay_server("c_encrypted");
    check("c_encrypted server", &got, &want);
}

#[test]
fn client_replays_c_encrypted() {
    let (got, want, _) = replay_client("c_encrypted", Modes::from(Mode::Encrypted), Some(CORRECT));
    check("c_encrypted client", &got, &want);
}

#[test]
fn server_replays_d_authfail() {
    let (got, want, closed) = replay_server("d_authfail");
    check("d_authfail server", &got, &want);
    assert!(matches!(closed, Some(CloseReason::SetupRejected(_))));
}

#[test]
fn client_replays_d_authfail() {
    let (got, want, closed) = replay_client(
        "d_authfail",
        Modes::from(Mode::Authenticated),
        Some(b"wrong passphrase"),
    );
    check("d_authfail client", &got, &want);
    assert!(matches!(closed, Some(CloseReason::SetupRejected(_))));
}
