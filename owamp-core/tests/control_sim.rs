//! Whole control sessions between the client and server state machines, in simulation (see
//! `sim/mod.rs`): every mode in both directions, refusals, a client that vanishes, a server
//! that stops early, lossy networks and fetches of partial sessions.

mod sim;

use std::time::Duration;

use owamp_core::control::{
    AcceptCode, ClientConfig, CloseReason, Identity, Mode, Modes, Role, SetupRefusal, SetupRefused,
};
use owamp_core::io::{Finished, SkipRange};
use owamp_core::policy::{ClassLimits, Limits, Peer, ServerPolicy, TestAdmission};
use sim::{after, client_config, server_config, t0, NetConfig, Side, Sim, Step};

const ALICE: &[u8] = b"alice";
const PASS: &[u8] = b"correct horse battery staple";

fn limits() -> Limits {
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
    p.set_passphrase(ALICE, PASS);
    p
}

fn client_for(mode: Mode, pass: &[u8]) -> ClientConfig {
    ClientConfig {
        modes: Modes::from(mode),
        identity: mode.is_secure().then(|| Identity {
            key_id: ALICE.to_vec(),
            passphrase: pass.into(),
        }),
        ..client_config()
    }
}

fn full_session(role: Role, packets: u32) -> Vec<Step> {
    let mut s = vec![
        Step::Request {
            role,
            packets,
            mean: 0.05,
        },
        Step::Start,
    ];
    if role == Role::Sender {
        s.push(Step::FetchServerReceived {
            index: 0,
            begin: 0,
            end: u32::MAX,
        });
    }
    s.push(Step::Close);
    s
}

#[test]
fn every_mode_in_both_directions() {
    for mode in [Mode::Open, Mode::Authenticated, Mode::Encrypted] {
        for role in [Role::Sender, Role::Receiver] {
            let policy = limits();
            let mut sim = Sim::new(
                7,
                t0(),
                client_for(mode, PASS),
                server_config(t0()),
                policy.clone(),
                NetConfig::default(),
                full_session(role, 20),
            );
            let log = sim.run(Duration::from_secs(120));
            let what = format!("{mode:?} client {role:?}");
            assert_eq!(log.connected, Some(mode), "{what}");
            assert_eq!(log.accepted.len(), 1, "{what}");
            assert_eq!(log.test_complete.get(&Side::Client), Some(&1), "{what}");
            assert_eq!(log.test_complete.get(&Side::Server), Some(&1), "{what}");
            assert_eq!(
                log.closed.get(&Side::Client),
                Some(&CloseReason::Local),
                "{what}"
            );
            assert_eq!(
                log.closed.get(&Side::Server),
                Some(&CloseReason::PeerClosed),
                "{what}"
            );
            let records = match role {
                Role::Sender => {
                    assert_eq!(log.fetched.len(), 1, "{what}");
                    let f = &log.fetched[0];
                    assert_eq!(f.finished, Finished::Normal, "{what}");
                    assert_eq!(f.next_seqno, 20, "{what}");
                    assert_eq!(f.request.sid, log.accepted[0].sid, "{what}");
                    f.records.clone()
                }
                Role::Receiver => {
                    let s = sim.client_store.values().next().expect("client stored");
                    assert_eq!(s.finished, Finished::Normal, "{what}");
                    s.records.clone()
                }
            };
            assert_eq!(records.len(), 20, "{what}");
            assert!(records.iter().all(|r| !r.is_lost()), "{what}");
            let seqs: Vec<u32> = records.iter().map(|r| r.seq).collect();
            assert_eq!(seqs, (0..20).collect::<Vec<_>>(), "{what}");
            // Everything reserved for the test was given back.
            let class = if mode == Mode::Open {
                "regular"
            } else {
                "authd"
            };
            assert_eq!(policy.in_use(class), (0.0, 0), "{what}");
            // A whole session in virtual time: about 1 s start delay + 20 * 50 ms + timeouts.
            assert!(
                sim.log.end_time.raw() < after(t0(), Duration::from_secs(20)).raw(),
                "{what}"
            );
        }
    }
}

#[test]
fn both_directions_on_one_connection_over_a_bad_network() {
    let net = NetConfig {
        jitter: Duration::from_millis(120),
        loss: 0.2,
        duplicate: 0.1,
        ..NetConfig::default()
    };
    let script = vec![
        Step::Request {
            role: Role::Sender,
            packets: 200,
            mean: 0.01,
        },
        Step::Request {
            role: Role::Receiver,
            packets: 200,
            mean: 0.01,
        },
        Step::Start,
        Step::FetchServerReceived {
            index: 0,
            begin: 0,
            end: u32::MAX,
        },
        Step::Close,
    ];
    let mut sim = Sim::new(
        11,
        t0(),
        client_for(Mode::Encrypted, PASS),
        server_config(t0()),
        limits(),
        net,
        script,
    );
    sim.run(Duration::from_secs(120));
    assert_eq!(sim.log.accepted.len(), 2);
    assert_eq!(sim.log.fetched.len(), 1);
    for (name, records) in [
        ("fetched", sim.log.fetched[0].records.clone()),
        (
            "client",
            sim.client_store.values().next().unwrap().records.clone(),
        ),
    ] {
        let mut seen = std::collections::BTreeSet::new();
        let mut dups = 0;
        for r in records.iter().filter(|r| !r.is_lost()) {
            if !seen.insert(r.seq) {
                dups += 1;
            }
        }
        let lost = records.iter().filter(|r| r.is_lost()).count();
        assert_eq!(
            seen.len() + lost,
            200,
            "{name}: every packet received or lost"
        );
        assert!(lost > 10 && lost < 80, "{name}: about 20% lost, got {lost}");
        assert!(dups > 0, "{name}: duplicates recorded");
    }
    // What the client fetched is what the server stored.
    let stored = sim.server_store.values().next().unwrap();
    assert_eq!(stored.records, sim.log.fetched[0].records);
}

#[test]
fn wrong_passphrase_is_refused_with_accept_1() {
    let mut sim = Sim::new(
        3,
        t0(),
        client_for(Mode::Authenticated, b"wrong passphrase"),
        server_config(t0()),
        limits(),
        NetConfig::default(),
        full_session(Role::Sender, 10),
    );
    let log = sim.run(Duration::from_secs(60));
    assert_eq!(log.connected, None);
    assert_eq!(
        log.closed.get(&Side::Client),
        Some(&CloseReason::SetupRejected(AcceptCode::Failure))
    );
    assert_eq!(
        log.closed.get(&Side::Server),
        Some(&CloseReason::SetupRejected(AcceptCode::Failure))
    );
    let why = sim.server.setup_refused().expect("the server says why");
    assert_eq!(why.reason, SetupRefusal::WrongPassphrase);
    assert_eq!(why.mode, Some(Mode::Authenticated));
    assert_eq!(why.key_id.as_deref(), Some(ALICE));
    let line = why.to_string();
    assert_eq!(
        line,
        "wrong passphrase for identity \"alice\" (mode authenticated)"
    );
    assert!(!line.contains("wrong passphrase\""));
}

/// How a refused set-up is told, for a client of `cfg` against `policy`.
fn refusal_of<P: ServerPolicy>(seed: u64, cfg: ClientConfig, policy: P) -> Option<SetupRefused> {
    let mut sim = Sim::new(
        seed,
        t0(),
        cfg,
        server_config(t0()),
        policy,
        NetConfig::default(),
        full_session(Role::Sender, 10),
    );
    let log = sim.run(Duration::from_secs(60));
    assert_eq!(log.connected, None);
    sim.server.setup_refused().cloned()
}

#[test]
fn an_unknown_identity_is_told_apart_from_a_wrong_passphrase() {
    let cfg = ClientConfig {
        identity: Some(Identity {
            key_id: b"mallory\n".to_vec(),
            passphrase: PASS.into(),
        }),
        ..client_for(Mode::Encrypted, PASS)
    };
    let why = refusal_of(31, cfg, limits()).expect("refused");
    assert_eq!(why.reason, SetupRefusal::UnknownKeyId);
    // The KeyID comes from the network: its control characters are escaped.
    assert_eq!(
        why.to_string(),
        "unknown identity \"mallory\\n\" (mode encrypted)"
    );
}

/// Offers every mode and knows alice, but refuses every connection once set up.
struct NoControl;

impl ServerPolicy for NoControl {
    fn modes(&mut self, _addr: std::net::IpAddr) -> Modes {
        Modes::ALL
    }
    fn passphrase(&mut self, key_id: &[u8]) -> Option<owamp_core::crypto::Passphrase> {
        (key_id == ALICE).then(|| PASS.into())
    }
    fn allow_control(&mut self, _peer: Peer<'_>) -> Result<(), AcceptCode> {
        Err(AcceptCode::PermanentResourceLimit)
    }
    fn admit_test(&mut self, _test: &TestAdmission<'_>) -> Result<(), AcceptCode> {
        Ok(())
    }
}

#[test]
fn refusals_by_the_policy_and_for_modes_are_told() {
    let why = refusal_of(32, client_for(Mode::Authenticated, PASS), NoControl).unwrap();
    assert_eq!(
        why.reason,
        SetupRefusal::Policy(AcceptCode::PermanentResourceLimit)
    );
    assert!(
        why.to_string()
            .starts_with("refused by the limits for identity \"alice\": ")
            && why
                .to_string()
                .ends_with("(Accept = 4) (mode authenticated)"),
        "{why}"
    );
    // Open mode only, from an address whose class may not use it: nothing is offered.
    let policy = Limits::new(
        Modes::OPEN,
        "regular",
        ClassLimits {
            allow_open_mode: false,
            ..ClassLimits::default()
        },
    );
    let why = refusal_of(33, client_for(Mode::Open, b""), policy).unwrap();
    assert_eq!(
        (why.reason, why.mode, why.key_id),
        (SetupRefusal::NoModeOffered, None, None)
    );
    // A completed set-up is no refusal.
    let mut sim = Sim::new(
        34,
        t0(),
        client_for(Mode::Open, b""),
        server_config(t0()),
        limits(),
        NetConfig::default(),
        full_session(Role::Sender, 3),
    );
    sim.run(Duration::from_secs(60));
    assert_eq!(sim.server.setup_refused(), None);
}

#[test]
fn no_common_mode_gives_up_before_set_up() {
    let policy = Limits::new(
        Modes::ALL,
        "regular",
        ClassLimits {
            allow_open_mode: false,
            ..ClassLimits::default()
        },
    );
    let mut sim = Sim::new(
        4,
        t0(),
        client_config(),
        server_config(t0()),
        policy,
        NetConfig::default(),
        full_session(Role::Sender, 10),
    );
    let log = sim.run(Duration::from_secs(60));
    assert_eq!(
        log.closed.get(&Side::Client),
        Some(&CloseReason::NoCommonMode)
    );
    assert_eq!(log.client_sent, 0, "nothing sent");
    assert_eq!(
        log.closed.get(&Side::Server),
        Some(&CloseReason::PeerClosed)
    );
}

#[test]
fn session_over_the_bandwidth_limit_is_denied_and_the_connection_goes_on() {
    let policy = Limits::new(
        Modes::ALL,
        "regular",
        ClassLimits {
            // 20 packets per second of 42 octets is 6720 bit/s.
            bandwidth_bps: 5000,
            ..ClassLimits::default()
        },
    );
    let script = vec![
        Step::Request {
            role: Role::Sender,
            packets: 20,
            mean: 0.05,
        },
        Step::Request {
            role: Role::Sender,
            packets: 20,
            mean: 1.0,
        },
        Step::Close,
    ];
    let mut sim = Sim::new(
        5,
        t0(),
        client_config(),
        server_config(t0()),
        policy.clone(),
        NetConfig::default(),
        script,
    );
    let log = sim.run(Duration::from_secs(60));
    assert_eq!(log.rejected, vec![AcceptCode::Failure]);
    // The second, slower request fits.
    assert_eq!(log.accepted.len(), 1);
    assert_eq!(log.closed.get(&Side::Client), Some(&CloseReason::Local));
    assert_eq!(policy.in_use("regular"), (0.0, 0));
}

#[test]
fn busy_test_ports_are_skipped() {
    let mut sim = Sim::new(
        6,
        t0(),
        client_config(),
        server_config(t0()),
        limits(),
        NetConfig::default(),
        full_session(Role::Sender, 5),
    );
    sim.busy_ports = (8760..=8960).filter(|p| p % 3 != 0).collect();
    sim.run(Duration::from_secs(60));
    let port = sim.log.accepted[0].peer.port();
    assert_eq!(port % 3, 0, "a free port was chosen: {port}");
    assert_eq!(sim.log.fetched.len(), 1);

    // No free port at all: refused with Accept = 5.
    let mut sim = Sim::new(
        6,
        t0(),
        client_config(),
        server_config(t0()),
        limits(),
        NetConfig::default(),
        full_session(Role::Sender, 5),
    );
    sim.busy_ports = (8760..=8960).collect();
    sim.run(Duration::from_secs(60));
    assert_eq!(sim.log.rejected, vec![AcceptCode::TemporaryResourceLimit]);
}

#[test]
fn client_vanishing_mid_session_is_timed_out_and_cleaned_up() {
    let policy = limits();
    let script = vec![
        Step::Request {
            role: Role::Sender,
            packets: 100,
            mean: 0.05,
        },
        Step::Start,
    ];
    let mut sim = Sim::new(
        8,
        t0(),
        client_config(),
        server_config(t0()),
        policy.clone(),
        NetConfig::default(),
        script,
    );
    sim.vanish_at(after(t0(), Duration::from_secs(3)));
    sim.run(Duration::from_secs(600));
    assert_eq!(
        sim.log.closed.get(&Side::Server),
        Some(&CloseReason::Timeout)
    );
    let aborted = sim
        .log
        .aborted
        .get(&Side::Server)
        .expect("receive session aborted");
    assert_eq!(aborted.len(), 1);
    let stored = sim.server_store.values().next().unwrap();
    assert_eq!(stored.finished, Finished::Incomplete);
    let received = stored.records.iter().filter(|r| !r.is_lost()).count();
    assert!(received > 0 && received < 100, "received {received}");
    assert_eq!(policy.in_use("regular"), (0.0, 0));
    // Bounded: the loss timeout after the last packet, then the control timeout.
    assert!(sim.log.end_time.raw() < after(t0(), Duration::from_secs(60)).raw());
}

#[test]
fn server_stopping_early_ends_the_session_for_both() {
    let script = full_session(Role::Receiver, 100);
    let mut sim = Sim::new(
        9,
        t0(),
        client_for(Mode::Authenticated, PASS),
        server_config(t0()),
        limits(),
        NetConfig::default(),
        script,
    );
    // The schedule starts about 1 s after the request; stop about 2 s into it.
    sim.stop_at(Side::Server, after(t0(), Duration::from_secs(3)));
    sim.run(Duration::from_secs(120));
    assert_eq!(sim.log.test_complete.get(&Side::Client), Some(&1));
    assert_eq!(sim.log.test_complete.get(&Side::Server), Some(&1));
    let (_, next) = sim.log.stopped[&Side::Client][0];
    assert!(next > 0 && next < 100, "stopped early at {next}");
    let stored = sim.client_store.values().next().unwrap();
    assert_eq!(stored.next_seqno, next);
    assert!(stored.records.iter().all(|r| r.seq < next));
    assert_eq!(sim.log.closed.get(&Side::Client), Some(&CloseReason::Local));
}

#[test]
fn sender_that_ends_early_reports_its_next_seqno() {
    let mut sim = Sim::new(
        10,
        t0(),
        client_config(),
        server_config(t0()),
        limits(),
        NetConfig::default(),
        full_session(Role::Receiver, 30),
    );
    sim.server_sender_limit = Some(12);
    sim.run(Duration::from_secs(120));
    let stored = sim.client_store.values().next().unwrap();
    assert_eq!(stored.next_seqno, 12);
    assert_eq!(stored.records.len(), 12);
}

#[test]
fn fetch_of_a_range_and_of_a_partial_session() {
    // A complete session: a range of it.
    let script = vec![
        Step::Request {
            role: Role::Sender,
            packets: 20,
            mean: 0.05,
        },
        Step::Start,
        Step::FetchServerReceived {
            index: 0,
            begin: 5,
            end: 9,
        },
        Step::Close,
    ];
    let mut sim = Sim::new(
        12,
        t0(),
        client_config(),
        server_config(t0()),
        limits(),
        NetConfig::default(),
        script,
    );
    sim.run(Duration::from_secs(120));
    let seqs: Vec<u32> = sim.log.fetched[0].records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![5, 6, 7, 8, 9]);

    // A session whose client vanished: stored as incomplete.
    let script = vec![
        Step::Request {
            role: Role::Sender,
            packets: 100,
            mean: 0.05,
        },
        Step::Start,
    ];
    let mut first = Sim::new(
        13,
        t0(),
        client_config(),
        server_config(t0()),
        limits(),
        NetConfig::default(),
        script,
    );
    first.vanish_at(after(t0(), Duration::from_secs(3)));
    first.run(Duration::from_secs(600));
    let sid = first.server_received[0];
    let stored = first.server_store[&sid].clone();
    assert_eq!(stored.finished, Finished::Incomplete);
    let last_seen = stored
        .records
        .iter()
        .filter(|r| !r.is_lost())
        .map(|r| r.seq)
        .max()
        .unwrap();

    // Another client fetches it: a range is served up to the last packet received; the whole
    // session is refused because it is not complete.
    let t1 = after(t0(), Duration::from_secs(700));
    let script = vec![
        Step::Fetch {
            sid,
            begin: 0,
            end: u32::MAX - 1,
        },
        Step::Fetch {
            sid,
            begin: 0,
            end: u32::MAX,
        },
        Step::Close,
    ];
    let mut second = Sim::new(
        14,
        t1,
        client_config(),
        server_config(t1),
        limits(),
        NetConfig::default(),
        script,
    )
    .with_store(first.server_store.clone());
    second.run(Duration::from_secs(60));
    assert_eq!(second.log.fetched.len(), 1);
    let f = &second.log.fetched[0];
    assert_eq!(f.finished, Finished::Incomplete);
    assert_eq!(f.records.last().map(|r| r.seq), Some(last_seen));
    assert_eq!(
        f.records.len(),
        stored.records.iter().filter(|r| r.seq <= last_seen).count()
    );
    assert_eq!(second.log.fetch_denied, vec![AcceptCode::Failure]);
}

#[test]
fn skip_ranges_travel_in_stop_sessions_and_fetch() {
    let mut sim = Sim::new(
        15,
        t0(),
        client_for(Mode::Encrypted, PASS),
        server_config(t0()),
        limits(),
        NetConfig::default(),
        full_session(Role::Sender, 30),
    );
    sim.client_skips = [3, 4, 5, 10, 20, 21].into_iter().collect();
    sim.run(Duration::from_secs(120));
    let want = vec![
        SkipRange { first: 3, last: 5 },
        SkipRange {
            first: 10,
            last: 10,
        },
        SkipRange {
            first: 20,
            last: 21,
        },
    ];
    let (_, next) = sim.log.stopped[&Side::Server][0];
    assert_eq!(next, 30);
    let stored = sim.server_store.values().next().unwrap();
    assert_eq!(stored.skips, want);
    let f = &sim.log.fetched[0];
    assert_eq!(f.skips, want);
    assert_eq!(f.next_seqno, 30);
    // Skipped packets were never sent: the receiver recorded them as lost.
    let lost: Vec<u32> = f
        .records
        .iter()
        .filter(|r| r.is_lost())
        .map(|r| r.seq)
        .collect();
    assert_eq!(lost, vec![3, 4, 5, 10, 20, 21]);
}

/// A policy that refuses every test with one Accept code.
struct Refuse(AcceptCode);

impl ServerPolicy for Refuse {
    fn modes(&mut self, _addr: std::net::IpAddr) -> Modes {
        Modes::ALL
    }
    fn passphrase(&mut self, _key_id: &[u8]) -> Option<owamp_core::crypto::Passphrase> {
        None
    }
    fn admit_test(&mut self, _test: &TestAdmission<'_>) -> Result<(), AcceptCode> {
        Err(self.0)
    }
}

#[test]
fn the_policy_can_refuse_with_each_accept_code() {
    for code in [
        AcceptCode::Failure,
        AcceptCode::InternalError,
        AcceptCode::NotSupported,
        AcceptCode::PermanentResourceLimit,
        AcceptCode::TemporaryResourceLimit,
    ] {
        let script = vec![
            Step::Request {
                role: Role::Sender,
                packets: 10,
                mean: 0.1,
            },
            Step::Request {
                role: Role::Receiver,
                packets: 10,
                mean: 0.1,
            },
            Step::Close,
        ];
        let mut sim = Sim::new(
            16,
            t0(),
            client_config(),
            server_config(t0()),
            Refuse(code),
            NetConfig::default(),
            script,
        );
        let log = sim.run(Duration::from_secs(60));
        assert_eq!(log.rejected, vec![code, code]);
        assert!(log.accepted.is_empty());
        assert_eq!(log.closed.get(&Side::Client), Some(&CloseReason::Local));
    }
}
