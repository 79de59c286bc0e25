//! Secrets stay out of `Debug` output: the passphrase, the key derived from it (RFC 4656 3.1),
//! the session keys of the Token and the per-session test-packet keys (RFC 4656 4.1.2), in
//! every type that holds them and in the connections, events and options around them. The
//! keys of a real set-up are recovered the way an eavesdropper who knew the passphrase would
//! (from the Server-Greeting and the Token on the wire), so the test checks the keys actually
//! in use, not ones it guessed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes128;
use owamp_core::connection::{
    ClientConnection, ClientEvent, ControlAction, Output, ServerConnection, ServerEvent,
    SocketAction,
};
use owamp_core::control::{
    Client, ClientConfig, Identity, Mode, Modes, ProtocolError, Role, ServerConfig, SessionRequest,
};
use owamp_core::crypto::{
    decrypt_token, derive_key, derive_key_with_limit, ControlDecryptor, ControlEncryptor,
    ControlHmac, ControlOpener, ControlSealer, CryptoError, DerivedKey, Passphrase, SecureMode,
    SessionKeys, TestPacketCrypto, DEFAULT_MAX_KDF_COUNT,
};
use owamp_core::io::{Input, Output as CtlOutput};
use owamp_core::policy::{ClassLimits, Limits};
use owamp_core::time::{Interval, OwampTime};
use owamp_core::wire::{ServerGreeting, SetUpResponse, Slot, SlotKind, TypeP};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

const ALICE: &[u8] = b"alice";
const PASS: &str = "Tr0ub4dor&3 correct horse";

/// Every way `Debug` could print `secret`: hex (either case, any 4-octet window), decimal or
/// hex lists of 4 consecutive octets, and the octets themselves when they are text.
fn leaked(shown: &str, secret: &[u8]) -> Option<String> {
    // Pretty-printed (`{:#?}`) lists put each element on a line of its own.
    let compact: String = shown
        .to_ascii_lowercase()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    for w in secret.windows(4.min(secret.len())) {
        let forms = [
            hex::encode(w),
            w.iter()
                .map(|b| b.to_string())
                .collect::<Vec<_>>()
                .join(","),
            w.iter()
                .map(|b| format!("{b:x}"))
                .collect::<Vec<_>>()
                .join(","),
            w.iter()
                .map(|b| format!("{b:#x}"))
                .collect::<Vec<_>>()
                .join(","),
            w.iter()
                .map(|b| format!("{b:#04x}"))
                .collect::<Vec<_>>()
                .join(","),
        ];
        for f in forms {
            if compact.contains(&f) {
                return Some(f);
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(secret) {
        if secret.len() >= 4 && shown.contains(text) {
            return Some(text.to_owned());
        }
    }
    None
}

fn assert_hidden(what: &str, shown: &str, secrets: &[(&str, &[u8])]) {
    for (name, s) in secrets {
        if let Some(form) = leaked(shown, s) {
            panic!("{what}'s Debug shows the {name} ({form}): {shown}");
        }
    }
}

#[test]
fn the_leak_check_finds_what_a_derived_debug_would_print() {
    // The check itself must be able to fail.
    let key = [0xa1u8, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6, 0x07, 0x18];
    assert!(leaked(&format!("{key:?}"), &key).is_some());
    assert!(leaked(&format!("{key:x?}"), &key).is_some());
    assert!(leaked(&format!("{key:#04x?}"), &key).is_some());
    assert!(leaked(&hex::encode_upper(key), &key).is_some());
    assert!(leaked(&format!("{:?}", PASS.as_bytes()), PASS.as_bytes()).is_some());
    assert!(leaked(&format!("{:?}", PASS), PASS.as_bytes()).is_some());
    assert!(leaked("nothing here", &key).is_none());
}

fn pattern<const N: usize>(start: u8) -> [u8; N] {
    core::array::from_fn(|i| start.wrapping_add((i as u8).wrapping_mul(37)))
}

#[test]
fn every_secret_holding_type_redacts() {
    let aes: [u8; 16] = pattern(0x91);
    let hmac: [u8; 32] = pattern(0x2c);
    let derived: [u8; 16] = pattern(0x5e);
    let iv = [0u8; 16];
    let keys = SessionKeys { aes, hmac };
    let secrets: [(&str, &[u8]); 4] = [
        ("AES session key", &aes),
        ("HMAC session key", &hmac),
        ("derived key", &derived),
        ("passphrase", PASS.as_bytes()),
    ];
    let shown = [
        ("SessionKeys", format!("{keys:?} {keys:#?}")),
        (
            "DerivedKey",
            format!("{:?}", DerivedKey::from_bytes(derived)),
        ),
        ("Passphrase", format!("{:#?}", Passphrase::from(PASS))),
        (
            "ControlEncryptor",
            format!("{:?}", ControlEncryptor::new(&aes, &iv)),
        ),
        (
            "ControlDecryptor",
            format!("{:?}", ControlDecryptor::new(&aes, &iv)),
        ),
        ("ControlHmac", format!("{:?}", ControlHmac::new(&hmac))),
        (
            "ControlSealer",
            format!("{:#?}", ControlSealer::new(&keys, &iv)),
        ),
        (
            "ControlOpener",
            format!("{:#?}", ControlOpener::new(&keys, &iv)),
        ),
        (
            "TestPacketCrypto",
            format!(
                "{:?}",
                TestPacketCrypto::new(SecureMode::Encrypted, &[7; 16], &keys)
            ),
        ),
        ("Identity", format!("{:#?}", Identity::new(ALICE, PASS))),
        (
            "ClientConfig",
            format!(
                "{:#?}",
                ClientConfig {
                    identity: Some(Identity::new(ALICE, PASS)),
                    ..ClientConfig::default()
                }
            ),
        ),
        ("Limits", {
            let l = Limits::new(Modes::ALL, "c", ClassLimits::default());
            l.set_passphrase(ALICE, PASS.as_bytes());
            format!("{l:#?}")
        }),
    ];
    for (what, s) in &shown {
        assert_hidden(what, s, &secrets);
    }
    // The identity is not a secret: it stays visible where it helps.
    assert!(shown[9].1.contains("alice"));
}

fn t0() -> OwampTime {
    OwampTime::from_raw(0xeeb2_5d00_0000_0000)
}

const CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const SERVER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

type Cli = ClientConnection<ChaCha8Rng>;
type Srv = ServerConnection<Limits, ChaCha8Rng>;

/// What the two ends said: the octets each way, every output's `Debug`, the SIDs agreed on.
#[derive(Default)]
struct Seen {
    to_server: Vec<u8>,
    to_client: Vec<u8>,
    outputs: Vec<String>,
    sids: Vec<[u8; 16]>,
}

/// Moves control octets and socket openings between the two ends until both are quiet.
fn pump(c: &mut Cli, s: &mut Srv, seen: &mut Seen) {
    let now = t0();
    let mut port = 9000;
    for _ in 0..100 {
        let mut moved = false;
        while let Some(o) = c.poll_output() {
            match o {
                Output::Control(ControlAction::Transmit(b)) => {
                    seen.to_server.extend_from_slice(&b);
                    s.handle_control(now, &b);
                    moved = true;
                }
                Output::Socket(SocketAction::Open { id, .. }) => {
                    port += 1;
                    c.socket_opened(now, id, Ok(port));
                    moved = true;
                }
                Output::Event(e) => {
                    if let ClientEvent::SessionAccepted(i) = &e {
                        seen.sids.push(i.sid.0);
                    }
                    seen.outputs.push(format!("{e:?}"));
                }
                other => seen.outputs.push(format!("{other:?}")),
            }
        }
        while let Some(o) = s.poll_output() {
            match o {
                Output::Control(ControlAction::Transmit(b)) => {
                    seen.to_client.extend_from_slice(&b);
                    c.handle_control(now, &b);
                    moved = true;
                }
                Output::Socket(SocketAction::Open { id, .. }) => {
                    port += 1;
                    s.socket_opened(now, id, Ok(port));
                    moved = true;
                }
                Output::Event(e) => {
                    if let ServerEvent::SessionAccepted(i) = &e {
                        seen.sids.push(i.sid.0);
                    }
                    seen.outputs.push(format!("{e:?}"));
                }
                other => seen.outputs.push(format!("{other:?}")),
            }
        }
        if !moved {
            return;
        }
    }
    panic!("the two ends never went quiet");
}

fn request(role: Role) -> SessionRequest {
    SessionRequest {
        role,
        local: SocketAddr::new(CLIENT_IP, 0),
        peer: SERVER_IP,
        slots: vec![Slot {
            kind: SlotKind::Exponential,
            mean: Interval::from_raw((1 << 32) / 10),
        }],
        packets: 10,
        padding: 0,
        start_time: t0().saturating_add(Duration::from_secs(1)),
        timeout: Interval::from_raw(2 << 32),
        type_p: TypeP::BEST_EFFORT,
    }
}

/// The test-packet keys of a session (RFC 4656 4.1.2), computed apart from the crate.
fn test_packet_keys(sid: &[u8; 16], keys: &SessionKeys) -> (Vec<u8>, Vec<u8>) {
    let c = Aes128::new(sid.into());
    let mut aes = aes::Block::from(keys.aes);
    c.encrypt_block(&mut aes);
    // AES-CBC with IV 0 over the two blocks of the HMAC key.
    let mut first = aes::Block::clone_from_slice(&keys.hmac[..16]);
    c.encrypt_block(&mut first);
    let mut second = aes::Block::clone_from_slice(&keys.hmac[16..]);
    for (b, p) in second.iter_mut().zip(first.iter()) {
        *b ^= p;
    }
    c.encrypt_block(&mut second);
    let hmac = [first.as_slice(), second.as_slice()].concat();
    (aes.to_vec(), hmac)
}

#[test]
fn connections_and_events_of_an_encrypted_set_up_show_no_secret() {
    let now = t0();
    let limits = Limits::new(Modes::ALL, "c", ClassLimits::default());
    limits.set_passphrase(ALICE, PASS.as_bytes());
    let ccfg = ClientConfig {
        modes: Modes::from(Mode::Encrypted),
        identity: Some(Identity::new(ALICE, PASS)),
        ..ClientConfig::default()
    };
    let scfg = ServerConfig {
        start_time: now,
        kdf_count: 1024,
        ..ServerConfig::default()
    };
    let mut c = ClientConnection::client(now, ccfg, ChaCha8Rng::seed_from_u64(11));
    let mut s = ServerConnection::server(
        now,
        scfg,
        limits,
        ChaCha8Rng::seed_from_u64(12),
        SocketAddr::new(SERVER_IP, 861),
        SocketAddr::new(CLIENT_IP, 40000),
    );
    let mut seen = Seen::default();
    pump(&mut c, &mut s, &mut seen);
    assert!(c.is_ready(), "set-up did not complete: {:?}", seen.outputs);
    assert_eq!(c.mode(), Mode::Encrypted);
    c.request_session(request(Role::Sender)).unwrap();
    pump(&mut c, &mut s, &mut seen);
    c.request_session(request(Role::Receiver)).unwrap();
    pump(&mut c, &mut s, &mut seen);

    // What the eavesdropper with the passphrase recovers.
    let greeting = ServerGreeting::parse(&seen.to_client[..64]).unwrap();
    let setup = SetUpResponse::parse(&seen.to_server[..164]).unwrap();
    let derived = derive_key(PASS.as_bytes(), &greeting.salt, greeting.count).unwrap();
    let (challenge, keys) = decrypt_token(&derived, &setup.token);
    assert_eq!(
        challenge, greeting.challenge,
        "the keys recovered are not the ones in use"
    );

    let mut secrets: Vec<(String, Vec<u8>)> = vec![
        ("passphrase".into(), PASS.as_bytes().to_vec()),
        ("derived key".into(), derived.as_bytes().to_vec()),
        ("AES session key".into(), keys.aes.to_vec()),
        ("HMAC session key".into(), keys.hmac.to_vec()),
    ];
    // Each session's test-packet keys are secrets too.
    for sid in &seen.sids {
        let (a, h) = test_packet_keys(sid, &keys);
        secrets.push((format!("test AES key of {}", hex::encode(sid)), a));
        secrets.push((format!("test HMAC key of {}", hex::encode(sid)), h));
    }
    // Both sessions, accepted on both ends.
    assert_eq!(seen.sids.len(), 4, "{:?}", seen.outputs);
    assert_eq!(c.sessions().count(), 2);
    let secrets: Vec<(&str, &[u8])> = secrets
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_slice()))
        .collect();
    assert_hidden("ClientConnection", &format!("{c:#?}"), &secrets);
    assert_hidden("ServerConnection", &format!("{s:#?}"), &secrets);
    for (_, session) in c.sessions() {
        assert_hidden("TestSession", &format!("{session:?}"), &secrets);
    }
    assert_hidden("the outputs", &seen.outputs.join("\n"), &secrets);
}

/// A client with an identity, fed a Server-Greeting that asks for `count` iterations.
fn greet_client(count: u32, max: Option<u32>) -> Vec<CtlOutput> {
    let mut cfg = ClientConfig {
        identity: Some(Identity::new(ALICE, PASS)),
        ..ClientConfig::default()
    };
    if let Some(m) = max {
        cfg.max_kdf_count = m;
    }
    let mut c = Client::new(t0(), cfg, ChaCha8Rng::seed_from_u64(3));
    let g = ServerGreeting {
        modes: Modes::ALL,
        challenge: [1; 16],
        salt: [2; 16],
        count,
    };
    c.handle_input(t0(), Input::Received(&g.to_bytes()))
        .unwrap();
    std::iter::from_fn(|| c.poll_output()).collect()
}

#[test]
fn a_client_refuses_a_huge_pbkdf2_count_before_deriving() {
    // 2^32 - 1 iterations would be hours of one core's time.
    let out = greet_client(u32::MAX, None);
    let closed = out
        .iter()
        .find_map(|o| match o {
            CtlOutput::Close(r) => Some(r.clone()),
            _ => None,
        })
        .expect("the client closes");
    let owamp_core::control::CloseReason::Protocol(ProtocolError::KdfCount { count, max }) =
        closed.clone()
    else {
        panic!("closed for another reason: {closed:?}");
    };
    assert_eq!((count, max), (u32::MAX, DEFAULT_MAX_KDF_COUNT));
    let msg = closed.to_string();
    assert!(
        msg.contains("4294967295") && msg.contains("1048576"),
        "{msg}"
    );
    // Nothing was sent: no Set-Up-Response with a Token.
    assert!(
        !out.iter().any(|o| matches!(o, CtlOutput::Transmit(_))),
        "{out:?}"
    );

    // The bound is the client's to set, and the server's default is within it.
    assert!(matches!(
        greet_client(4096, Some(2048)).iter().find_map(|o| match o {
            CtlOutput::Close(r) => Some(r.clone()),
            _ => None,
        }),
        Some(owamp_core::control::CloseReason::Protocol(
            ProtocolError::KdfCount {
                count: 4096,
                max: 2048
            }
        ))
    ));
    let ok = greet_client(ServerConfig::default().kdf_count, None);
    assert!(
        ok.iter().any(|o| matches!(o, CtlOutput::Transmit(_))),
        "{ok:?}"
    );
    assert!(
        !ok.iter().any(|o| matches!(o, CtlOutput::Close(_))),
        "{ok:?}"
    );
    // A count of zero is refused as malformed rather than derived.
    assert!(greet_client(0, None)
        .iter()
        .any(|o| matches!(o, CtlOutput::Close(_))));
    // The same bound as the key derivation itself.
    assert_eq!(
        derive_key_with_limit(
            b"x",
            &[0; 16],
            DEFAULT_MAX_KDF_COUNT + 1,
            DEFAULT_MAX_KDF_COUNT
        ),
        Err(CryptoError::IterationCountTooLarge {
            count: DEFAULT_MAX_KDF_COUNT + 1,
            max: DEFAULT_MAX_KDF_COUNT
        })
    );
}

/// The secret-holding types wipe themselves when dropped: they implement `ZeroizeOnDrop`, and
/// so do the AES key schedules and CBC chains inside the control and test-packet crypto (the
/// `zeroize` features of `aes` and `cbc`).
#[test]
fn secrets_are_wiped_on_drop() {
    fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
    wiped_on_drop::<Passphrase>();
    wiped_on_drop::<DerivedKey>();
    wiped_on_drop::<SessionKeys>();
    wiped_on_drop::<Aes128>();
    wiped_on_drop::<cbc::Encryptor<Aes128>>();
    wiped_on_drop::<cbc::Decryptor<Aes128>>();

    use zeroize::Zeroize;
    let mut keys = SessionKeys {
        aes: [0xa5; 16],
        hmac: [0x5a; 32],
    };
    keys.zeroize();
    assert_eq!((keys.aes, keys.hmac), ([0; 16], [0; 32]));
    let mut p = Passphrase::from(PASS);
    p.zeroize();
    assert!(p.is_empty());
}
