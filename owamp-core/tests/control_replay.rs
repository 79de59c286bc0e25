//! Replays the reference traces (perfSONAR owamp 5.2.3, testdata/traces/reference) through the
//! server and client state machines and checks that each produces exactly the octets the
//! reference sent: the server fed the recorded client-to-server stream must send the recorded
//! server-to-client stream, and the other way round.
//!
//! Random values and times come from the trace (see the `owamp_core::control` module docs);
//! the replay itself is `owamp_core::control::replay::Recorded::replay_server` and
//! `replay_client`. The server here runs with the reference's configuration (limit classes, test
//! ports 8760-8960), so its port draws are replayed too.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use owamp_core::control::replay::{Recorded, Replayed};
use owamp_core::control::{
    ClientConfig, CloseReason, Identity, Mode, Modes, PortRange, ServerConfig,
};
use owamp_core::policy::{ClassLimits, Limits};

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
        if let Some(x) = line.strip_prefix("C>S ") {
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

    fn segments(&self, d: Dir) -> Vec<&[u8]> {
        self.segments
            .iter()
            .filter(|(x, _)| *x == d)
            .map(|(_, b)| b.as_slice())
            .collect()
    }
}

/// The recorded exchange, read from the plaintext streams (the `.plain.trace` in A and E
/// modes).
fn recorded(name: &str) -> (Trace, Recorded) {
    let wire = load(&format!("{name}.trace")).expect("trace");
    let plain = load(&format!("{name}.plain.trace")).unwrap_or_else(|| wire.clone());
    let rec = Recorded::from_plaintext(&plain.stream(Dir::Cs), &plain.stream(Dir::Sc))
        .expect("recorded exchange");
    (wire, rec)
}

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

const ALICE: &[u8] = b"alice";
const CORRECT: &[u8] = b"correct horse battery staple";

/// The reference server's limits file and pfs file (see the traces' README).
fn policy() -> Limits {
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
    p.assign_user(ALICE, "authd");
    p.set_passphrase(ALICE, CORRECT);
    p
}

/// Feeds the server the recorded client octets, cut into `segments`.
fn replay_server_segments(rec: &Recorded, segments: &[&[u8]]) -> Replayed {
    let cfg = ServerConfig {
        start_time: rec.server_start.start_time,
        kdf_count: rec.greeting.count,
        test_ports: Some(PORTS),
        end_delay: Duration::ZERO,
        ..ServerConfig::default()
    };
    rec.replay_server(cfg, policy(), localhost(8610), localhost(40000), segments)
}

/// Feeds the server the recorded client octets; returns what it sent and what was recorded.
fn replay_server(name: &str) -> (Replayed, Vec<u8>) {
    let (wire, rec) = recorded(name);
    let out = replay_server_segments(&rec, &wire.segments(Dir::Cs));
    (out, wire.stream(Dir::Sc))
}

/// Feeds the client the recorded server octets and the commands owping gave; returns what it
/// sent and what was recorded.
fn replay_client(name: &str, modes: Modes, pass: Option<&[u8]>) -> (Replayed, Vec<u8>) {
    let (wire, rec) = recorded(name);
    // The client's keys, from the Token with the passphrase the client used.
    let keys = pass.and_then(|p| rec.client_keys(p));
    let cfg = ClientConfig {
        modes,
        identity: pass.map(|p| Identity {
            key_id: ALICE.to_vec(),
            passphrase: p.into(),
        }),
        end_delay: Duration::ZERO,
        ..ClientConfig::default()
    };
    let out = rec.replay_client(cfg, keys.as_ref(), &wire.segments(Dir::Sc));
    (out, wire.stream(Dir::Cs))
}

fn check(name: &str, got: &Replayed, want: &[u8]) {
    assert!(got.errors.is_empty(), "{name}: {:?}", got.errors);
    let got = &got.sent;
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
        let (wire, rec) = recorded(name);
        let cs = wire.stream(Dir::Cs);
        for seed in [1u64, 2, 3, 0xdead_beef] {
            // xorshift: any split will do, as long as it is reproducible.
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
            let out = replay_server_segments(&rec, &segs);
            check(
                &format!("{name} server, split {seed}"),
                &out,
                &wire.stream(Dir::Sc),
            );
        }
    }
}

#[test]
fn server_replays_a_open() {
    let (got, want) = replay_server("a_open");
    check("a_open server", &got, &want);
}

#[test]
fn client_replays_a_open() {
    let (got, want) = replay_client("a_open", Modes::ALL, None);
    check("a_open client", &got, &want);
}

#[test]
fn server_replays_b_auth() {
    let (got, want) = replay_server("b_auth");
    check("b_auth server", &got, &want);
}

#[test]
fn client_replays_b_auth() {
    let (got, want) = replay_client("b_auth", Modes::from(Mode::Authenticated), Some(CORRECT));
    check("b_auth client", &got, &want);
}

#[test]
fn server_replays_c_encrypted() {
    let (got, want) = replay_server("c_encrypted");
    check("c_encrypted server", &got, &want);
}

#[test]
fn client_replays_c_encrypted() {
    let (got, want) = replay_client("c_encrypted", Modes::from(Mode::Encrypted), Some(CORRECT));
    check("c_encrypted client", &got, &want);
}

#[test]
fn server_replays_d_authfail() {
    let (got, want) = replay_server("d_authfail");
    check("d_authfail server", &got, &want);
    assert!(matches!(got.closed, Some(CloseReason::SetupRejected(_))));
}

#[test]
fn client_replays_d_authfail() {
    let (got, want) = replay_client(
        "d_authfail",
        Modes::from(Mode::Authenticated),
        Some(b"wrong passphrase"),
    );
    check("d_authfail client", &got, &want);
    assert!(matches!(got.closed, Some(CloseReason::SetupRejected(_))));
}

#[test]
fn recorded_exchange_reads_every_message() {
    use owamp_core::control::replay::RecordedCommand;
    let (_, rec) = recorded("c_encrypted");
    assert_eq!(rec.requests.len(), 2);
    assert_eq!(rec.fetches.len(), 1);
    assert_eq!(rec.server_stops.len(), 1);
    let kinds: Vec<&str> = rec
        .commands
        .iter()
        .map(|c| match c {
            RecordedCommand::RequestSession(_) => "request",
            RecordedCommand::StartSessions => "start",
            RecordedCommand::StopSessions(_) => "stop",
            RecordedCommand::FetchSession(_) => "fetch",
        })
        .collect();
    assert_eq!(kinds, ["request", "request", "start", "stop", "fetch"]);
    let f = &rec.fetches[0];
    let (stored, data) = f.data.as_ref().unwrap();
    assert_eq!(stored.sid, f.fetch.sid);
    assert_eq!(data.records.len(), 20);
    // The server's Stop-Sessions describes the session it sent.
    let sent = &rec.server_stops[0].sessions;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].next_seqno, 20);
    let (_, rec) = recorded("d_authfail");
    assert!(rec.commands.is_empty() && rec.requests.is_empty());
}
