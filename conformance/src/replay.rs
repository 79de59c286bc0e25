//! Control-protocol replay: a trace's client octets fed to our server core, its server octets
//! fed to our client core, each of which must send exactly what the other side of the trace
//! holds.
//!
//! Everything a core would otherwise choose comes from the trace's headers and its plaintext
//! (see [`crate::secure`] for how authenticated and encrypted traces are decrypted):
//!
//! | input | where it is in the trace |
//! |---|---|
//! | modes the server offers, Challenge, Salt, Count | Server-Greeting |
//! | Server-IV, Start-Time, Accept | Server-Start (Start-Time decrypted in A/E) |
//! | the mode the client wants | the `mode` header (which must agree with Set-Up-Response) |
//! | KeyID and passphrase | the `identity` and `passphrase-hex` headers |
//! | session keys, Client-IV | the Token (opened with the passphrase), Set-Up-Response |
//! | the client's commands | the Request-Session, Start-Sessions and Fetch-Session messages |
//! | SIDs and their times | Accept-Session (server receives) or Request-Session (client receives) |
//! | test ports | Accept-Session: the server's endpoint binds the recorded port |
//! | refusals | Accept codes: the server's endpoint fails with the recorded code |
//! | Next-Seqno and skip ranges | each side's Stop-Sessions |
//! | stored records | the Fetch-Session response |
//!
//! The random values are handed to the cores in the order they draw them (see
//! `owamp_core::control`), through `owamp_core::control::replay`, which also drives the cores.
//! A replay that differs names the direction, the trace line, the message, the octet within
//! it and within the stream, and the octet each side has.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use serde::Serialize;

use owamp_core::control::replay::{InsecureScriptedRng, Recorded, Replayed};
use owamp_core::control::{
    AcceptCode, Client, ClientConfig, CloseReason, Identity, Modes, Server, ServerConfig,
};
use owamp_core::io::{Input, Output};
use owamp_core::policy::{Peer, ServerPolicy, TestAdmission};
use owamp_core::wire::{self, ServerGreeting};

use crate::secure::{self, Exchange, Opened};
use crate::trace::{Direction, Event, Mode, Trace};

/// What the replay of one side found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Side {
    /// Our core sent exactly the octets of the trace.
    Identical {
        /// How many octets.
        octets: usize,
    },
    /// The replay could not be run.
    NotPossible {
        /// Why.
        reason: String,
    },
}

impl Side {
    /// Whether the replay ran and matched.
    pub fn is_identical(&self) -> bool {
        matches!(self, Side::Identical { .. })
    }
}

/// What a replay of one trace found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplayOutcome {
    /// Our server core, fed the client's octets.
    pub server: Side,
    /// Our client core, fed the server's octets.
    pub client: Side,
}

impl ReplayOutcome {
    fn not_possible(reason: &str) -> Self {
        let s = Side::NotPossible {
            reason: reason.to_string(),
        };
        ReplayOutcome {
            server: s.clone(),
            client: s,
        }
    }

    /// A short description for the runner's output.
    pub fn summary(&self) -> String {
        let side = |name: &str, s: &Side, dir: &str| match s {
            Side::Identical { octets } => format!("{name} {octets} octets {dir} identical"),
            Side::NotPossible { reason } => format!("{name} not replayed: {reason}"),
        };
        match (&self.server, &self.client) {
            (Side::NotPossible { reason: a }, Side::NotPossible { reason: b }) if a == b => {
                format!("not replayed: {a}")
            }
            (s, c) => format!(
                "replayed: {}; {}",
                side("server", s, "S>C"),
                side("client", c, "C>S")
            ),
        }
    }
}

/// Why a replay failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// A core sent something other than what the trace holds.
    #[error("{place}: {why}")]
    Mismatch {
        /// Whose output differs (the trace's S>C octets are the server's).
        dir: Direction,
        /// First differing stream offset.
        offset: usize,
        /// Where: the trace line, the message and the octet in it.
        place: String,
        /// What differs.
        why: String,
    },
    /// The trace lacks something the replay needs, or cannot be read.
    #[error("cannot replay: {0}")]
    Unusable(String),
}

/// Replays `trace` (see [`replay_exchange`]); an authenticated or encrypted trace is first
/// decrypted and verified with [`secure::open`].
pub fn replay_trace(trace: &Trace) -> Result<ReplayOutcome, ReplayError> {
    match secure::open(trace, None).map_err(ReplayError::Unusable)? {
        Opened::Readable(ex) => replay_exchange(&ex),
        Opened::Unreadable(why) => Ok(ReplayOutcome::not_possible(&why)),
    }
}

/// The server's decisions, as the recording shows them: the modes of its Greeting, the
/// passphrase of the trace's identity when it accepted the set-up, its Accept code when it
/// refused, every test admitted (refusals come from the endpoints), every fetch allowed.
#[derive(Debug, Clone)]
struct RecordedPolicy {
    modes: Modes,
    passphrase: Option<Vec<u8>>,
    setup: AcceptCode,
}

impl ServerPolicy for RecordedPolicy {
    fn modes(&mut self, _addr: IpAddr) -> Modes {
        self.modes
    }

    fn passphrase(&mut self, _key_id: &[u8]) -> Option<owamp_core::crypto::Passphrase> {
        self.passphrase.as_deref().map(Into::into)
    }

    fn allow_control(&mut self, _peer: Peer<'_>) -> Result<(), AcceptCode> {
        if self.setup.is_ok() {
            Ok(())
        } else {
            Err(self.setup)
        }
    }

    fn admit_test(&mut self, _test: &TestAdmission<'_>) -> Result<(), AcceptCode> {
        Ok(())
    }
}

fn wire_mode(m: Mode) -> wire::Mode {
    match m {
        Mode::Open => wire::Mode::Open,
        Mode::Authenticated => wire::Mode::Authenticated,
        Mode::Encrypted => wire::Mode::Encrypted,
    }
}

/// The address in a `host:port ...` header.
fn header_addr(t: &Trace, key: &str) -> Option<SocketAddr> {
    t.header(key)?.split_whitespace().next()?.parse().ok()
}

/// The control connection's addresses (server, client): from the `server-control` and
/// `client-control` headers, else from the addresses the requests name.
fn addresses(t: &Trace, rec: Option<&Recorded>) -> (SocketAddr, SocketAddr) {
    let from_requests = |server: bool| -> Option<IpAddr> {
        rec?.requests.iter().find_map(|r| {
            // The server is the receiver when it receives, the sender otherwise.
            let a = if r.server_receives() == server {
                r.request.receiver_address
            } else {
                r.request.sender_address
            };
            (!a.is_unspecified()).then_some(a)
        })
    };
    let unspecified = |like: Option<IpAddr>| match like {
        Some(IpAddr::V6(_)) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    let server = header_addr(t, "server-control").unwrap_or_else(|| {
        let ip = from_requests(true);
        SocketAddr::new(ip.unwrap_or_else(|| unspecified(ip)), 861)
    });
    let client = header_addr(t, "client-control").unwrap_or_else(|| {
        let ip = from_requests(false);
        SocketAddr::new(ip.unwrap_or_else(|| unspecified(Some(server.ip()))), 0)
    });
    (server, client)
}

fn segments(t: &Trace, dir: Direction) -> Vec<&[u8]> {
    t.events
        .iter()
        .filter_map(|e| match e {
            Event::Control { dir: d, bytes, .. } if *d == dir => Some(bytes.as_slice()),
            _ => None,
        })
        .collect()
}

fn close_text(r: &CloseReason) -> String {
    match r {
        CloseReason::Local => "it closed the connection".into(),
        CloseReason::PeerClosed => "it saw the peer close".into(),
        CloseReason::Timeout => "it timed out".into(),
        CloseReason::NoCommonMode => "it closed: no common mode".into(),
        CloseReason::SetupRejected(c) => {
            format!("it closed: set-up refused (Accept {})", c.to_u8())
        }
        CloseReason::StartRejected(c) => {
            format!("it closed: Start-Sessions refused (Accept {})", c.to_u8())
        }
        CloseReason::SessionsUnreported => "it closed: sessions unreported".into(),
        CloseReason::Protocol(e) => format!("it closed: {e}"),
    }
}

/// Compares what a core sent with the trace's octets of that direction.
fn compare(ex: &Exchange, dir: Direction, who: &str, out: &Replayed) -> Result<Side, ReplayError> {
    let want = ex.wire.stream(dir);
    let got = &out.sent;
    let closed = out
        .closed
        .as_ref()
        .map(|r| format!(" ({})", close_text(r)))
        .unwrap_or_default();
    let diff = (0..got.len().max(want.len())).find(|&i| got.get(i) != want.get(i));
    let Some(i) = diff else {
        if let Some(e) = out.errors.first() {
            return Err(ReplayError::Unusable(format!(
                "the {who} core refused an input of the replay: {e}"
            )));
        }
        return Ok(Side::Identical { octets: got.len() });
    };
    let why = match (got.get(i), want.get(i)) {
        (Some(g), Some(w)) => format!(
            "replay mismatch: our {who} core sent 0x{g:02x}, the trace has 0x{w:02x}{closed}"
        ),
        (None, _) => format!(
            "replay mismatch: our {who} core sent only {} octets, the trace has {}{closed}",
            got.len(),
            want.len()
        ),
        (Some(_), None) => format!(
            "replay mismatch: our {who} core sent {} octets more than the trace's {}{closed}",
            got.len() - want.len(),
            want.len()
        ),
    };
    Err(ReplayError::Mismatch {
        dir,
        offset: i,
        place: secure::place(&ex.wire, &ex.messages, dir, i),
        why,
    })
}

/// Replays an exchange read by [`secure::open`]: our server core fed its client octets, our
/// client core fed its server octets, segment by segment as recorded.
///
/// The server runs with the recorded Greeting values, Start-Time and Count, no test port range
/// (each endpoint binds the recorded port), end delay zero. The client allows only the
/// recorded mode, with the `identity` header and the passphrase in authenticated and encrypted
/// modes. A side that needs the passphrase when it is unknown is [`Side::NotPossible`].
pub fn replay_exchange(ex: &Exchange) -> Result<ReplayOutcome, ReplayError> {
    let cs = ex.plain.stream(Direction::ClientToServer);
    let sc = ex.plain.stream(Direction::ServerToClient);
    let secure = ex.mode != Mode::Open;
    let identity = match (secure, ex.wire.identity()) {
        (false, _) => None,
        (true, Some(id)) => Some(id.as_bytes().to_vec()),
        (true, None) => {
            return Err(ReplayError::Unusable(format!(
                "{} mode needs the KeyID: add an `# identity: <KeyID>` header",
                ex.mode.name()
            )))
        }
    };
    let client_cfg = |pass: Option<&Vec<u8>>| ClientConfig {
        modes: Modes::from(wire_mode(ex.mode)),
        identity: match (&identity, pass) {
            (Some(k), Some(p)) => Some(Identity {
                key_id: k.clone(),
                passphrase: p.as_slice().into(),
            }),
            _ => None,
        },
        end_delay: Duration::ZERO,
        protocol: ex.protocol,
        ..ClientConfig::default()
    };
    if cs.is_empty() {
        return replay_greeting_only(ex, &sc, client_cfg(ex.passphrase.as_ref()));
    }
    let rec = secure::recorded(&ex.plain, ex.protocol)
        .map_err(|e| ReplayError::Unusable(format!("the recorded exchange cannot be read: {e}")))?;
    let accept = rec.server_start.accept;
    // The server knows the passphrase when it accepted; when it refused with anything but
    // Accept 1 the refusal came from its policy, after the passphrase was checked.
    let server_pass = if accept.is_ok() || accept != AcceptCode::Failure {
        ex.passphrase.clone()
    } else {
        None
    };
    let (local, peer) = addresses(&ex.wire, Some(&rec));
    let server = if secure && server_pass.is_none() && accept.is_ok() {
        Side::NotPossible {
            reason: "the passphrase is unknown".into(),
        }
    } else {
        let cfg = ServerConfig {
            start_time: rec.server_start.start_time,
            kdf_count: rec.greeting.count,
            test_ports: None,
            end_delay: Duration::ZERO,
            protocol: ex.protocol,
            ..ServerConfig::default()
        };
        let policy = RecordedPolicy {
            modes: rec.greeting.modes,
            passphrase: server_pass,
            setup: accept,
        };
        let out = rec.replay_server(
            cfg,
            policy,
            local,
            peer,
            &segments(&ex.wire, Direction::ClientToServer),
        );
        compare(ex, Direction::ServerToClient, "server", &out)?
    };
    let client = match (&ex.passphrase, secure) {
        (None, true) => Side::NotPossible {
            reason: "the passphrase is unknown, so the Token cannot be reproduced".into(),
        },
        (pass, _) => {
            let keys = pass.as_ref().and_then(|p| rec.client_keys(p));
            let out = rec.replay_client(
                client_cfg(pass.as_ref()),
                keys.as_ref(),
                &segments(&ex.wire, Direction::ServerToClient),
            );
            compare(ex, Direction::ClientToServer, "client", &out)?
        }
    };
    Ok(ReplayOutcome { server, client })
}

/// An exchange that ended after the Server-Greeting (the client found no common mode, for
/// example): the server must send the same Greeting, the client nothing.
fn replay_greeting_only(
    ex: &Exchange,
    sc: &[u8],
    client_cfg: ClientConfig,
) -> Result<ReplayOutcome, ReplayError> {
    let g = sc
        .get(..ServerGreeting::LEN)
        .and_then(|b| ServerGreeting::parse(b).ok())
        .ok_or_else(|| ReplayError::Unusable("the trace holds no Server-Greeting".into()))?;
    let (local, peer) = addresses(&ex.wire, None);
    let cfg = ServerConfig {
        kdf_count: g.count,
        protocol: ex.protocol,
        ..ServerConfig::default()
    };
    let policy = RecordedPolicy {
        modes: g.modes,
        passphrase: None,
        setup: AcceptCode::Ok,
    };
    let mut out = Replayed::default();
    let mut server = Server::new(
        Default::default(),
        cfg,
        policy,
        InsecureScriptedRng::new([g.challenge, g.salt]),
        local,
        peer,
    );
    drain(&mut out, |o| {
        server.poll_output().map(|x| *o = Some(x)).is_some()
    });
    let server = compare(ex, Direction::ServerToClient, "server", &out)?;
    let mut out = Replayed::default();
    let mut client = Client::new(
        Default::default(),
        client_cfg,
        InsecureScriptedRng::default(),
    );
    for seg in segments(&ex.wire, Direction::ServerToClient) {
        if let Err(e) = client.handle_input(Default::default(), Input::Received(seg)) {
            out.errors.push(e);
        }
        drain(&mut out, |o| {
            client.poll_output().map(|x| *o = Some(x)).is_some()
        });
    }
    let client = compare(ex, Direction::ClientToServer, "client", &out)?;
    Ok(ReplayOutcome { server, client })
}

/// Collects the octets and the close reason from a core's outputs.
fn drain(out: &mut Replayed, mut next: impl FnMut(&mut Option<Output>) -> bool) {
    let mut o = None;
    while next(&mut o) {
        match o.take() {
            Some(Output::Transmit(b)) => out.sent.extend_from_slice(&b),
            Some(Output::Close(r)) => out.closed = Some(r),
            _ => {}
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
    fn every_reference_trace_replays_byte_for_byte() {
        for name in [
            "a_open.trace",
            "b_auth.trace",
            "b_auth.plain.trace",
            "c_encrypted.trace",
            "c_encrypted.plain.trace",
            "d_authfail.trace",
            "owp/summary/session.trace",
        ] {
            let t = load(name);
            let r = replay_trace(&t).unwrap_or_else(|e| panic!("{name}: {e}"));
            let (cs, sc) = (
                t.stream(Direction::ClientToServer).len(),
                t.stream(Direction::ServerToClient).len(),
            );
            assert_eq!(r.server, Side::Identical { octets: sc }, "{name}");
            assert_eq!(r.client, Side::Identical { octets: cs }, "{name}");
        }
    }

    #[test]
    fn a_changed_client_octet_is_a_client_mismatch() {
        let mut t = load("a_open.trace");
        // The first Request-Session (client sends): the receiver port, octets 14-15, is the
        // server's to choose, so the client leaves it zero.
        let i = t
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
            .unwrap()
            .0;
        let line = t.event_line(i);
        let Event::Control { bytes, .. } = &mut t.events[i] else {
            unreachable!()
        };
        bytes[15] = 0x21;
        let e = replay_trace(&t).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("line {line}: C>S message 2 (Request-Session), byte 15 (stream offset 179): replay mismatch: our client core sent 0x00, the trace has 0x21")
        );
    }

    #[test]
    fn a_changed_server_octet_is_a_server_mismatch() {
        // A refusing Server-Start carries a zero Start-Time (as the reference sends it).
        let mut t = load("d_authfail.trace");
        let i = t.events.len() - 1;
        let line = t.event_line(i);
        let Event::Control { bytes, .. } = &mut t.events[i] else {
            panic!()
        };
        bytes[39] = 1;
        let e = replay_trace(&t).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("line {line}: S>C message 2 (Server-Start), byte 39 (stream offset 103): replay mismatch: our server core sent 0x00, the trace has 0x01 (it closed: set-up refused (Accept 1))")
        );
    }

    #[test]
    fn without_the_passphrase_only_a_refused_server_replays() {
        let strip = |t: &Trace| {
            let text: Vec<String> = t
                .to_text()
                .lines()
                .map(|l| match l.split_once(':') {
                    Some((k, _)) if k.starts_with("# passphrase") => format!("{k}: unknown"),
                    _ => l.to_string(),
                })
                .collect();
            Trace::parse(&(text.join("\n") + "\n")).unwrap()
        };
        let r = replay_trace(&strip(&load("b_auth.trace"))).unwrap();
        assert!(!r.server.is_identical() && !r.client.is_identical());
        assert!(r
            .summary()
            .starts_with("not replayed: the passphrase is unknown"));
        let r = replay_trace(&strip(&load("d_authfail.trace"))).unwrap();
        assert_eq!(r.server, Side::Identical { octets: 112 });
        assert!(matches!(r.client, Side::NotPossible { .. }));
    }

    #[test]
    fn a_greeting_only_exchange_replays() {
        // A server that offers only authenticated and encrypted modes, and an open-mode client:
        // "No Common Modes", the client closes without answering.
        let t = load("a_open.trace");
        let Some(Event::Control { bytes, .. }) = t.events.first() else {
            panic!()
        };
        let mut greeting = bytes.clone();
        greeting[15] = 6;
        let text = format!("# mode: open\nS>C {}\n", hex::encode(&greeting));
        let r = replay_trace(&Trace::parse(&text).unwrap()).unwrap();
        assert_eq!(r.server, Side::Identical { octets: 64 });
        assert_eq!(r.client, Side::Identical { octets: 0 });
        // With open mode offered, the client answers, and the trace shows no answer.
        let text = format!("# mode: open\nS>C {}\n", hex::encode(bytes));
        let e = replay_trace(&Trace::parse(&text).unwrap()).unwrap_err();
        assert!(
            e.to_string().contains(
                "replay mismatch: our client core sent 164 octets more than the trace's 0"
            ),
            "{e}"
        );
    }
}
