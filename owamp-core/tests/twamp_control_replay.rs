//! Replays the TWAMP reference traces (perfSONAR twampd/twping 5.2.3,
//! testdata/traces/twamp) through the control state machines speaking TWAMP
//! (`Protocol::Twamp`): the server fed the recorded client-to-server stream, cut at any points,
//! must send the recorded server-to-client stream, and the client fed the server's stream must
//! send the client's, byte for byte, in open, authenticated and encrypted modes and for the
//! refused set-up of d_authfail. Negative cases: what TWAMP does not have (Fetch-Session, OWAMP's
//! Request-Session) closes the connection; a Stop-Sessions with the wrong session count too.
//! The server's side is replayed through `connection::ServerConnection` as well.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use owamp_core::control::replay::{InsecureScriptedRng, Recorded, RecordedCommand, Replayed};
use owamp_core::control::{
    Client, ClientCommand, ClientConfig, CloseReason, ControlError, Identity, Mode, Modes,
    PortRange, Protocol, ProtocolError, Server, ServerConfig,
};
use owamp_core::io::{Input, Output};
use owamp_core::policy::{ClassLimits, Limits};
use owamp_core::wire::twamp::MIXED_MODE_BIT;

/// twampd's `testports 8770-8970`.
const PORTS: PortRange = PortRange {
    low: 8770,
    high: 8970,
};

const ALICE: &[u8] = b"alice";
const CORRECT: &[u8] = b"correct horse battery staple";

struct Trace {
    cs: Vec<Vec<u8>>,
    sc: Vec<Vec<u8>>,
}

impl Trace {
    fn cs(&self) -> Vec<u8> {
        self.cs.concat()
    }
    fn sc(&self) -> Vec<u8> {
        self.sc.concat()
    }
}

fn load(file: &str) -> Option<Trace> {
    let path = format!(
        "{}/../testdata/traces/twamp/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(path).ok()?;
    let mut t = Trace {
        cs: Vec::new(),
        sc: Vec::new(),
    };
    for line in text.lines() {
        if let Some(x) = line.strip_prefix("C>S ") {
            t.cs.push(hex::decode(x.trim()).unwrap());
        } else if let Some(x) = line.strip_prefix("S>C ") {
            t.sc.push(hex::decode(x.trim()).unwrap());
        }
    }
    Some(t)
}

fn recorded(name: &str) -> (Trace, Recorded) {
    let wire = load(&format!("{name}.trace")).expect("trace");
    let plain = load(&format!("{name}.plain.trace"))
        .unwrap_or_else(|| load(&format!("{name}.trace")).unwrap());
    let rec = Recorded::from_twamp_plaintext(&plain.cs(), &plain.sc()).expect("recorded exchange");
    (wire, rec)
}

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

/// twamp-server.limits and twamp-server.pfs of the recording (see the traces' README); the
/// server offers every mode and RFC 5618's mixed mode, as twampd does.
fn policy() -> Limits {
    let p = Limits::new(
        Modes::from_raw(Modes::ALL.raw() | MIXED_MODE_BIT),
        "regular",
        ClassLimits {
            bandwidth_bps: 20_000_000,
            disk_octets: 10_000_000_000,
            allow_open_mode: true,
        },
    );
    p.add_class("authd", ClassLimits::default());
    p.assign_user(ALICE, "authd");
    p.set_passphrase(ALICE, CORRECT);
    p
}

fn server_config(rec: &Recorded) -> ServerConfig {
    ServerConfig {
        start_time: rec.server_start.start_time,
        kdf_count: rec.greeting.count,
        test_ports: Some(PORTS),
        end_delay: Duration::ZERO,
        protocol: Protocol::Twamp,
        ..ServerConfig::default()
    }
}

fn replay_server(rec: &Recorded, segments: &[&[u8]]) -> Replayed {
    rec.replay_server(
        server_config(rec),
        policy(),
        localhost(8620),
        localhost(40000),
        segments,
    )
}

fn replay_client(name: &str, modes: Modes, pass: Option<&[u8]>) -> (Replayed, Vec<u8>) {
    let (wire, rec) = recorded(name);
    let keys = pass.and_then(|p| rec.client_keys(p));
    let cfg = ClientConfig {
        modes,
        identity: pass.map(|p| Identity {
            key_id: ALICE.to_vec(),
            passphrase: p.to_vec().into(),
        }),
        protocol: Protocol::Twamp,
        ..ClientConfig::default()
    };
    let segs: Vec<&[u8]> = wire.sc.iter().map(Vec::as_slice).collect();
    let out = rec.replay_client(cfg, keys.as_ref(), &segs);
    (out, wire.cs())
}

fn check(name: &str, got: &Replayed, want: &[u8]) {
    assert!(got.errors.is_empty(), "{name}: {:?}", got.errors);
    let at = got.sent.iter().zip(want).position(|(a, b)| a != b);
    assert!(
        got.sent == want,
        "{name}: {} octets produced, {} recorded, first difference at {at:?}\n got  {}\n want {}",
        got.sent.len(),
        want.len(),
        hex::encode(&got.sent),
        hex::encode(want),
    );
}

const NAMES: [&str; 6] = [
    "a_open",
    "b_auth",
    "c_encrypted",
    "d_authfail",
    "r_open_raw",
    "m_open_machine",
];

#[test]
fn server_replays_every_trace_at_any_split() {
    for name in NAMES {
        let (wire, rec) = recorded(name);
        let cs = wire.cs();
        // As recorded, then cut at reproducible pseudo-random points.
        let recorded_segs: Vec<&[u8]> = wire.cs.iter().map(Vec::as_slice).collect();
        let out = replay_server(&rec, &recorded_segs);
        check(&format!("{name} server"), &out, &wire.sc());
        for seed in [1u64, 7, 0xdead_beef] {
            let mut x = seed | 1;
            let mut segs: Vec<&[u8]> = Vec::new();
            let mut at = 0;
            while at < cs.len() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let n = (1 + (x % 40) as usize).min(cs.len() - at);
                segs.push(&cs[at..at + n]);
                at += n;
            }
            let out = replay_server(&rec, &segs);
            check(&format!("{name} server, split {seed}"), &out, &wire.sc());
        }
        if name == "d_authfail" {
            assert!(matches!(out.closed, Some(CloseReason::SetupRejected(_))));
        } else {
            // The test ended with the client's Stop-Sessions; the connection stays open
            // until the client closes it.
            assert_eq!(out.closed, None, "{name}");
        }
    }
}

#[test]
fn client_replays_every_trace() {
    for (name, modes, pass) in [
        ("a_open", Modes::ALL, None),
        ("r_open_raw", Modes::ALL, None),
        ("m_open_machine", Modes::ALL, None),
        ("b_auth", Modes::from(Mode::Authenticated), Some(CORRECT)),
        ("c_encrypted", Modes::from(Mode::Encrypted), Some(CORRECT)),
    ] {
        let (got, want) = replay_client(name, modes, pass);
        check(&format!("{name} client"), &got, &want);
        assert_eq!(got.closed, None, "{name}");
    }
    let (got, want) = replay_client(
        "d_authfail",
        Modes::from(Mode::Encrypted),
        Some(b"wrong passphrase"),
    );
    check("d_authfail client", &got, &want);
    assert!(matches!(got.closed, Some(CloseReason::SetupRejected(_))));
}

#[test]
fn recorded_twamp_exchange_reads_every_message() {
    let (_, rec) = recorded("c_encrypted");
    assert_eq!(rec.requests.len(), 1);
    assert!(rec.requests[0].server_receives());
    assert_eq!(rec.requests[0].request.padding_length, 64);
    assert!(matches!(
        rec.commands.as_slice(),
        [
            RecordedCommand::RequestSession(0),
            RecordedCommand::StartSessions,
            RecordedCommand::StopSessions(_)
        ]
    ));
    assert_eq!(rec.greeting.modes.raw(), 0x0f);
}

/// A TWAMP server after the set-up of a_open, and what it sent so far.
fn open_server() -> (Server<Limits, InsecureScriptedRng>, Trace, Recorded) {
    let (wire, rec) = recorded("a_open");
    let mut s = Server::new(
        rec.server_start.start_time,
        server_config(&rec),
        policy(),
        rec.server_rng(Some(PORTS)),
        localhost(8620),
        localhost(40000),
    );
    s.handle_input(rec.server_start.start_time, Input::Received(&wire.cs[0]))
        .unwrap();
    while s.poll_output().is_some() {}
    (s, wire, rec)
}

fn closed_by(s: &mut Server<Limits, InsecureScriptedRng>) -> Option<CloseReason> {
    let mut r = None;
    while let Some(o) = s.poll_output() {
        if let Output::Close(c) = o {
            r = Some(c);
        }
    }
    r
}

/// A command TWAMP does not have between tests (OWAMP's Request-Session 1 and Fetch-Session
/// 4, Stop-Sessions 3 with no test, an unassigned 9): answered block by block with an
/// Accept-Session whose Accept is 3 (RFC 4656 3.3), as perfSONAR's twampd answers, and the
/// connection stays open: a Request-TW-Session after it is served.
#[test]
fn twamp_server_answers_unknown_commands_with_not_supported() {
    let t0 = recorded("a_open").1.server_start.start_time;
    for command in [1u8, 4, 3, 9, 0, 255] {
        let (mut s, wire, _) = open_server();
        let mut unknown = vec![0u8; 16];
        unknown[0] = command;
        s.handle_input(t0, Input::Received(&unknown)).unwrap();
        let mut sent = Vec::new();
        while let Some(o) = s.poll_output() {
            match o {
                Output::Transmit(b) => sent.extend_from_slice(&b),
                Output::Close(c) => panic!("command {command}: closed: {c:?}"),
                _ => {}
            }
        }
        let mut want = [0u8; 48];
        want[0] = 3;
        assert_eq!(sent, want, "command {command}");
        // The recorded request still gets its session.
        s.handle_input(t0, Input::Received(&wire.cs[1])).unwrap();
        let prepared = std::iter::from_fn(|| s.poll_output())
            .any(|o| matches!(o, Output::PrepareTestEndpoint(_)));
        assert!(
            prepared,
            "command {command}: the request after it was not served"
        );
    }
}

#[test]
fn twamp_server_refuses_a_stop_with_the_wrong_session_count() {
    let (mut s, wire, rec) = open_server();
    let t = rec.requests[0].request_time();
    s.handle_input(t, Input::Received(&wire.cs[1])).unwrap();
    let mut sid = None;
    while let Some(o) = s.poll_output() {
        if let Output::PrepareTestEndpoint(e) = o {
            sid = Some(e.sid);
        }
    }
    s.handle_input(
        t,
        Input::EndpointReady {
            sid: sid.unwrap(),
            port: 8816,
        },
    )
    .unwrap();
    s.handle_input(t, Input::Received(&wire.cs[2])).unwrap();
    let outs: Vec<Output> = std::iter::from_fn(|| s.poll_output()).collect();
    assert!(outs.iter().any(|o| matches!(o, Output::StartSessions)));
    let mut stop = wire.cs[3].clone();
    stop[7] = 2;
    s.handle_input(t, Input::Received(&stop)).unwrap();
    assert!(matches!(
        closed_by(&mut s),
        Some(CloseReason::Protocol(ProtocolError::BadStop(_)))
    ));
}

#[test]
fn twamp_client_has_no_fetch_and_only_sends() {
    let rng = InsecureScriptedRng::default();
    let cfg = ClientConfig {
        protocol: Protocol::Twamp,
        ..ClientConfig::default()
    };
    let t0 = owamp_core::time::OwampTime::from_raw(1 << 32);
    let mut c = Client::new(t0, cfg, rng);
    let e = c
        .handle_input(
            t0,
            Input::Command(ClientCommand::Fetch {
                sid: Default::default(),
                begin: 0,
                end: u32::MAX,
            }),
        )
        .unwrap_err();
    assert!(matches!(e, ControlError::InvalidRequest(_)));
}

/// A TWAMP server whose client never sends Stop-Sessions (found by the `control_server` fuzz
/// target): its reflector reporting does not end the test; once the test's bound passes the
/// reflectors are stopped, and a control timeout later the connection closes. Every deadline
/// makes progress, so a host never spins on a past deadline.
#[test]
fn twamp_server_without_stop_sessions_times_out() {
    let (mut s, wire, rec) = open_server();
    let t = rec.requests[0].request_time();
    s.handle_input(t, Input::Received(&wire.cs[1])).unwrap();
    let sid = std::iter::from_fn(|| s.poll_output())
        .find_map(|o| match o {
            Output::PrepareTestEndpoint(e) => Some(e.sid),
            _ => None,
        })
        .unwrap();
    s.handle_input(t, Input::EndpointReady { sid, port: 8816 })
        .unwrap();
    s.handle_input(t, Input::Received(&wire.cs[2])).unwrap();
    s.handle_input(
        t,
        Input::SessionFinished(owamp_core::io::SessionReport::completed(sid, 0)),
    )
    .unwrap();
    while s.poll_output().is_some() {}
    let mut stopped = false;
    let mut last = None;
    for _ in 0..4 {
        let Some(d) = s.poll_timeout() else { break };
        assert!(
            last.map_or(true, |l| d > l),
            "a deadline that does not move"
        );
        last = Some(d);
        s.handle_input(d, Input::Timer).unwrap();
        while let Some(o) = s.poll_output() {
            stopped |= matches!(o, Output::StopLocalSessions);
        }
    }
    assert!(stopped);
    assert!(s.is_closed());
}

/// The same traces through the connection a host drives (`connection::ServerConnection` with
/// `Protocol::Twamp`): fed the client's octets as recorded, with the reflector's socket bound
/// at the recorded port, it sends exactly what twampd sent, and for every accepted session it
/// asks for one socket at that port, reflects (the session is running until Stop-Sessions) and
/// reports the test complete.
#[test]
fn server_connection_replays_every_trace() {
    use owamp_core::connection::{
        ControlAction, Output as ConnOutput, ServerConnection, ServerEvent, SocketAction,
    };

    for name in NAMES {
        let (wire, rec) = recorded(name);
        let times: Vec<(usize, owamp_core::time::OwampTime)> = rec
            .requests
            .iter()
            .filter(|r| r.server_receives() && r.accept.accept.is_ok())
            .map(|r| (r.end, r.request_time()))
            .collect();
        let mut now = rec.server_start.start_time;
        let mut conn = ServerConnection::server(
            now,
            server_config(&rec),
            policy(),
            rec.server_rng(Some(PORTS)),
            localhost(8620),
            localhost(40000),
        );
        let (mut sent, mut events, mut opened, mut closed) =
            (Vec::new(), Vec::new(), Vec::new(), None);
        let mut answered = 0;
        let mut at = 0;
        for seg in &wire.cs {
            // Cut where requests end, so that each input carries its own time (the SID's).
            let mut pieces = Vec::new();
            let mut from = 0;
            for &(end, t) in &times {
                if end > at && end <= at + seg.len() {
                    pieces.push((&seg[from..end - at], Some(t)));
                    from = end - at;
                }
            }
            pieces.push((&seg[from..], None));
            at += seg.len();
            for (piece, t) in pieces {
                if let Some(t) = t {
                    now = t;
                }
                if !piece.is_empty() {
                    conn.handle_control(now, piece);
                }
                while let Some(o) = conn.poll_output() {
                    match o {
                        ConnOutput::Control(ControlAction::Transmit(b)) => sent.extend(b),
                        ConnOutput::Control(ControlAction::Close(r)) => closed = Some(r),
                        ConnOutput::Socket(SocketAction::Open { id, local, .. }) => {
                            let port = rec.requests[answered].accept.port;
                            answered += 1;
                            assert_eq!(local.port(), port, "{name}: the recorded port drawn");
                            opened.push(id);
                            conn.socket_opened(now, id, Ok(port));
                        }
                        ConnOutput::Socket(_) => {}
                        ConnOutput::Store(_) | ConnOutput::Stream(_) => {
                            panic!("{name}: a reflector stores nothing")
                        }
                        ConnOutput::Event(e) => {
                            if let ServerEvent::Started = e {
                                let (_, s) = conn.sessions().next().expect("a session");
                                assert!(s.is_running() && s.reflector().is_some());
                            }
                            events.push(
                                format!("{e:?}")
                                    .split([' ', '('])
                                    .next()
                                    .unwrap()
                                    .to_string(),
                            );
                        }
                    }
                }
            }
        }
        let got = Replayed {
            sent,
            ..Replayed::default()
        };
        check(&format!("{name} server connection"), &got, &wire.sc());
        if name == "d_authfail" {
            assert!(matches!(closed, Some(CloseReason::SetupRejected(_))));
            assert!(events.is_empty());
        } else {
            assert_eq!(closed, None, "{name}");
            assert_eq!(opened.len(), 1, "{name}");
            assert_eq!(
                events,
                ["SessionAccepted", "Started", "TestComplete"],
                "{name}"
            );
        }
    }
}
