//! Negative vectors for TWAMP (RFC 5357): recorded twampd/twping exchanges
//! (testdata/traces/twamp, built into the binary) altered in one place and fed to our TWAMP
//! server core, or broken TWAMP messages and test packets given to the parsers. Each vector
//! names the outcome it wants (a typed error, a refusal, a close) and reports it with the RFC
//! section it comes from.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use owamp_core::control::replay::{Recorded, Replayed};
use owamp_core::control::{AcceptCode, CloseReason, Modes, Protocol, ProtocolError, ServerConfig};
use owamp_core::crypto::{CryptoError, SecureMode, SessionKeys, TestPacketCrypto};
use owamp_core::policy::{ClassLimits, Limits};
use owamp_core::wire::twamp::MIXED_MODE_BIT;
use owamp_core::wire::{
    AcceptSession, Mode, ReflectorPacket, RequestTwSession, SetUpResponse, TwampStopSessions,
    WireError,
};

use crate::runner::{Passed, Vector};
use crate::trace::{Direction, Trace};

const A_OPEN: &str = include_str!("../../../testdata/traces/twamp/a_open.trace");
const B_AUTH: &str = include_str!("../../../testdata/traces/twamp/b_auth.trace");
const B_AUTH_PLAIN: &str = include_str!("../../../testdata/traces/twamp/b_auth.plain.trace");

/// The identity and passphrase of the recordings (see the traces' README).
const ALICE: &[u8] = b"alice";
const CORRECT: &[u8] = b"correct horse battery staple";

/// A recorded exchange: the client's octets as sent and the exchange read from the plaintext.
struct Recording {
    cs: Vec<u8>,
    rec: Recorded,
}

fn recording(wire: &str, plain: &str) -> Result<Recording, String> {
    let parse = |s: &str| Trace::parse(s).map_err(|e| format!("built-in trace: {e}"));
    let (w, p) = (parse(wire)?, parse(plain)?);
    let rec = Recorded::from_twamp_plaintext(
        &p.stream(Direction::ClientToServer),
        &p.stream(Direction::ServerToClient),
    )
    .map_err(|e| format!("built-in trace: {e}"))?;
    Ok(Recording {
        cs: w.stream(Direction::ClientToServer),
        rec,
    })
}

/// twamp-server.limits and .pfs of the recordings, offering `modes`.
fn policy(modes: u32) -> Limits {
    let p = Limits::new(
        Modes::from_raw(modes),
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

/// Our TWAMP server core fed the recording's client octets after `edit`, offering `modes`.
fn serve(r: &Recording, modes: u32, edit: impl FnOnce(&mut Vec<u8>)) -> Replayed {
    let mut cs = r.cs.clone();
    edit(&mut cs);
    let cfg = ServerConfig {
        start_time: r.rec.server_start.start_time,
        kdf_count: r.rec.greeting.count,
        test_ports: None,
        end_delay: Duration::ZERO,
        protocol: Protocol::Twamp,
        ..ServerConfig::default()
    };
    let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 862);
    let peer = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40000);
    r.rec.replay_server(cfg, policy(modes), local, peer, &[&cs])
}

/// Offset of the first command in the client's stream.
const CMD: usize = SetUpResponse::LEN;
/// Offsets of Start-Sessions and Stop-Sessions in twping's stream.
const START: usize = CMD + RequestTwSession::LEN;
const STOP: usize = START + 32;
/// The modes twampd offers: open, authenticated, encrypted and RFC 5618's mixed mode.
const TWAMPD_MODES: u32 = 0x07 | MIXED_MODE_BIT;

fn close_text(c: &Option<CloseReason>) -> String {
    match c {
        None => "the server kept the connection open".into(),
        Some(r) => format!("the server closed: {r:?}"),
    }
}

/// A vector: the server core fed the altered recording closes for the reason `want` accepts,
/// having sent `sent_before` octets at most.
fn expect_close(
    name: &str,
    rfc: &'static str,
    what: fn() -> Result<Recording, String>,
    modes: u32,
    edit: fn(&mut Vec<u8>),
    want: fn(&CloseReason) -> bool,
) -> Vector {
    Vector::detailed(format!("negative/twamp/{name}"), move || {
        let r = what()?;
        let out = serve(&r, modes, edit);
        match &out.closed {
            Some(c) if want(c) => Ok(Passed {
                note: Some(format!("{rfc}: closed: {c:?}")),
                replay: None,
            }),
            other => Err(format!("{rfc}: {}", close_text(other))),
        }
    })
}

/// The Accept field of the first Accept-Session the server sent (after its Server-Greeting and
/// Server-Start), in open mode.
fn first_accept(out: &Replayed) -> Option<u8> {
    out.sent.get(64 + 48).copied()
}

/// A vector: the server answers the altered request with an Accept-Session whose Accept is not
/// 0, or closes (RFC 5357 3.5 lets it refuse; a request it cannot read may end the
/// connection, RFC 4656 3.5).
fn expect_refusal(name: &str, rfc: &'static str, edit: fn(&mut Vec<u8>)) -> Vector {
    Vector::detailed(format!("negative/twamp/{name}"), move || {
        let r = recording(A_OPEN, A_OPEN)?;
        let out = serve(&r, TWAMPD_MODES, edit);
        let accept = if out.sent.len() >= 64 + 48 + AcceptSession::LEN {
            first_accept(&out)
        } else {
            None
        };
        match (accept, &out.closed) {
            (Some(a), _) if a != 0 => Ok(Passed {
                note: Some(format!("{rfc}: refused with Accept {a}")),
                replay: None,
            }),
            (None, Some(c)) => Ok(Passed {
                note: Some(format!("{rfc}: closed: {c:?}")),
                replay: None,
            }),
            (Some(_), _) => Err(format!("{rfc}: the server accepted the session")),
            (None, None) => Err(format!(
                "{rfc}: the server neither answered nor closed ({} octets sent)",
                out.sent.len()
            )),
        }
    })
}

/// A vector: the server answers the command that the edit puts in the open recording with an
/// Accept-Session whose Accept is 3 ("not supported"), starting at octet `at` of what it sent,
/// and does not close the connection for it.
fn expect_not_supported(
    name: &str,
    rfc: &'static str,
    edit: fn(&mut Vec<u8>),
    at: usize,
) -> Vector {
    Vector::detailed(format!("negative/twamp/{name}"), move || {
        let r = recording(A_OPEN, A_OPEN)?;
        let out = serve(&r, TWAMPD_MODES, edit);
        match out.sent.get(at..at + AcceptSession::LEN) {
            Some(m) if m[0] == 3 => Ok(Passed {
                note: Some(format!(
                    "{rfc}: answered with Accept 3 at octet {at}; then {}",
                    close_text(&out.closed)
                )),
                replay: None,
            }),
            Some(m) => Err(format!(
                "{rfc}: answered with Accept {} at octet {at}",
                m[0]
            )),
            None => Err(format!(
                "{rfc}: no answer at octet {at} ({} octets sent); {}",
                out.sent.len(),
                close_text(&out.closed)
            )),
        }
    })
}

fn auth() -> Result<Recording, String> {
    recording(B_AUTH, B_AUTH_PLAIN)
}

fn open() -> Result<Recording, String> {
    recording(A_OPEN, A_OPEN)
}

fn parse_error<T: std::fmt::Debug>(
    name: &str,
    rfc: &'static str,
    bytes: Vec<u8>,
    parse: impl Fn(&[u8]) -> Result<T, WireError> + Send + Sync + 'static,
    want: fn(&WireError) -> bool,
) -> Vector {
    Vector::detailed(format!("negative/twamp/{name}"), move || {
        match parse(&bytes) {
            Err(e) if want(&e) => Ok(Passed {
                note: Some(format!("{rfc}: {e}")),
                replay: None,
            }),
            Err(e) => Err(format!("{rfc}: failed with `{e}`, not the error wanted")),
            Ok(v) => Err(format!("{rfc}: parsed as {v:?}")),
        }
    })
}

/// The recorded open-mode Request-TW-Session of a_open.
fn recorded_request() -> Vec<u8> {
    let t = Trace::parse(A_OPEN).unwrap_or_default();
    let cs = t.stream(Direction::ClientToServer);
    cs.get(CMD..START).map(<[u8]>::to_vec).unwrap_or_default()
}

/// The recorded first reflector packet of a_open (41 octets).
fn recorded_reply() -> Vec<u8> {
    let t = Trace::parse(A_OPEN).unwrap_or_default();
    t.events
        .iter()
        .filter_map(|e| match e {
            crate::trace::Event::Test { payload, .. } => Some(payload.clone()),
            _ => None,
        })
        .nth(1)
        .unwrap_or_default()
}

/// The server's answer to a Set-Up-Response choosing mode 8: it closes, refusing the mode.
fn refuses_mode_8(c: &CloseReason) -> bool {
    matches!(
        c,
        CloseReason::Protocol(ProtocolError::Wire(WireError::Invalid {
            field: "mode",
            value: 8,
            ..
        })) | CloseReason::Protocol(ProtocolError::InvalidMode(8))
            | CloseReason::NoCommonMode
            // The server's refusal of a mode it did not offer (RFC 4656 3.1: Accept 1).
            | CloseReason::SetupRejected(AcceptCode::Failure)
    )
}

/// Every TWAMP negative vector.
pub fn vectors() -> Vec<Vector> {
    let mut v = vec![
        // RFC 5357 3.5 (HMAC over the first 96 octets), RFC 4656 3.4: a wrong HMAC ends the
        // connection. Octet 100 of the request is in its HMAC block (ciphertext).
        expect_close(
            "request-tw-session/bad-hmac",
            "RFC 5357 3.5, RFC 4656 3.4",
            auth,
            TWAMPD_MODES,
            |cs| cs[CMD + 100] ^= 0x01,
            |c| matches!(c, CloseReason::Protocol(ProtocolError::BadHmac(_))),
        ),
        // RFC 5357 3.5: only Request-TW-Session; OWAMP's Request-Session (1) is no TWAMP
        // command. The answer to a command the server does not know is the reference's
        // (the RFCs say none): Accept-Session with Accept 3, RFC 4656 3.3.
        expect_not_supported(
            "owamp-request-session",
            "RFC 5357 3.5, RFC 4656 3.3",
            |cs| cs[CMD] = 1,
            64 + 48,
        ),
        // RFC 5357 3.5: TWAMP has no Fetch-Session (4); answered after the accepted request.
        expect_not_supported(
            "fetch-session",
            "RFC 5357 3.5, RFC 4656 3.3",
            |cs| cs[START] = 4,
            64 + 48 + AcceptSession::LEN,
        ),
        // RFC 5357 3.8: Stop-Sessions names the number of sessions; twping set up one.
        expect_close(
            "stop-sessions/wrong-count",
            "RFC 5357 3.8",
            open,
            TWAMPD_MODES,
            |cs| cs[STOP + 7] = 2,
            |c| matches!(c, CloseReason::Protocol(ProtocolError::BadStop(_))),
        ),
        // RFC 5357 3.1 (RFC 5618 3): mixed mode (8) chosen from a server that offers only
        // modes 1, 2 and 4; and from one that offers it, as twampd does, with the open
        // set-up's all-zero KeyID and Token: mixed mode authenticates TWAMP-Control as
        // authenticated mode does, so the set-up is refused.
        expect_close(
            "set-up-response/mixed-mode-not-offered",
            "RFC 5357 3.1, RFC 5618 3",
            open,
            0x07,
            |cs| cs[3] = 8,
            refuses_mode_8,
        ),
        expect_close(
            "set-up-response/mixed-mode-without-identity",
            "RFC 5357 3.1, RFC 5618 3",
            open,
            TWAMPD_MODES,
            |cs| cs[3] = 8,
            |c| matches!(c, CloseReason::SetupRejected(AcceptCode::Failure)),
        ),
        // RFC 5357 3.5: IPVN is 4 or 6.
        expect_refusal("request-tw-session/bad-ip-version", "RFC 5357 3.5", |cs| {
            cs[CMD + 1] = 5
        }),
        // RFC 5357 3.5: the padding must fit a datagram of the session.
        expect_refusal(
            "request-tw-session/padding-length-too-large",
            "RFC 5357 3.5, RFC 4656 3.5",
            |cs| cs[CMD + 64..CMD + 68].copy_from_slice(&0xffff_fff0u32.to_be_bytes()),
        ),
    ];
    // A Request-TW-Session cut short: the server waits for the rest (within its control
    // timeout) and sends no Accept-Session.
    v.push(Vector::detailed(
        "negative/twamp/request-tw-session/truncated-stream",
        || {
            let r = open()?;
            let out = serve(&r, TWAMPD_MODES, |cs| cs.truncate(CMD + 100));
            if out.sent.len() == 64 + 48 && out.closed.is_none() {
                Ok(Passed {
                    note: Some("RFC 5357 3.5: 100 of 112 octets: no answer, still waiting".into()),
                    replay: None,
                })
            } else {
                Err(format!(
                    "RFC 5357 3.5: sent {} octets ({})",
                    out.sent.len(),
                    close_text(&out.closed)
                ))
            }
        },
    ));
    // The zero Timeout of a Request-TW-Session (RFC 5357 3.5: how long the reflector keeps a
    // session after Stop-Sessions). Zero is a valid value: the session is accepted.
    v.push(Vector::detailed(
        "twamp/request-tw-session/zero-timeout-accepted",
        || {
            let r = open()?;
            let out = serve(&r, TWAMPD_MODES, |cs| {
                cs[CMD + 80..CMD + 88].fill(0);
            });
            match first_accept(&out) {
                Some(0) => Ok(Passed {
                    note: Some("RFC 5357 3.5: Accept 0".into()),
                    replay: None,
                }),
                a => Err(format!(
                    "RFC 5357 3.5: Accept {a:?} ({})",
                    close_text(&out.closed)
                )),
            }
        },
    ));
    // The parsers.
    let req = recorded_request();
    v.push(parse_error(
        "request-tw-session/short",
        "RFC 5357 3.5",
        req.get(..100).map(<[u8]>::to_vec).unwrap_or_default(),
        RequestTwSession::parse,
        |e| matches!(e, WireError::Truncated { .. } | WireError::Length { .. }),
    ));
    let mut bad = req.clone();
    if let Some(b) = bad.get_mut(1) {
        *b = 6 << 4 | 4;
    }
    v.push(parse_error(
        "request-tw-session/ipvn-mbz",
        "RFC 5357 3.5",
        bad,
        RequestTwSession::parse,
        |e| matches!(e, WireError::Mbz { offset: 1, .. }),
    ));
    let mut bad = req.clone();
    if let Some(b) = bad.get_mut(1) {
        *b = 5;
    }
    v.push(parse_error(
        "request-tw-session/ipvn-5",
        "RFC 5357 3.5",
        bad,
        RequestTwSession::parse,
        |e| matches!(e, WireError::Invalid { offset: 1, .. }),
    ));
    let mut stop = vec![3, 0, 0, 0, 0, 0, 0, 1];
    stop.resize(TwampStopSessions::LEN - 1, 0);
    v.push(parse_error(
        "stop-sessions/short",
        "RFC 5357 3.8",
        stop,
        TwampStopSessions::parse,
        |e| matches!(e, WireError::Truncated { .. } | WireError::Length { .. }),
    ));
    let reply = recorded_reply();
    for (name, mode, len) in [
        ("reflector-packet/open-truncated", Mode::Open, 40),
        (
            "reflector-packet/authenticated-truncated",
            Mode::Authenticated,
            111,
        ),
    ] {
        let mut b = reply.clone();
        b.resize(len, 0);
        v.push(parse_error(
            name,
            "RFC 5357 4.2.1",
            b,
            move |b: &[u8]| ReflectorPacket::parse(mode, b).map(|(p, _)| p),
            |e| matches!(e, WireError::Truncated { .. }),
        ));
    }
    // An encrypted reflector packet shorter than its six encrypted blocks and HMAC cannot be
    // opened: a typed error, not a panic.
    v.push(Vector::detailed(
        "negative/twamp/reflector-packet/encrypted-truncated",
        || {
            let keys = SessionKeys {
                aes: [1; 16],
                hmac: [2; 32],
            };
            let c = TestPacketCrypto::new(SecureMode::Encrypted, &[3; 16], &keys);
            let mut p = vec![0u8; ReflectorPacket::AUTH_LEN - 1];
            match c.open_reflector(&mut p) {
                Err(e @ CryptoError::TooShort { .. }) => Ok(Passed {
                    note: Some(format!("RFC 5357 4.2.1: {e}")),
                    replay: None,
                }),
                other => Err(format!("RFC 5357 4.2.1: {other:?}")),
            }
        },
    ));
    v
}
