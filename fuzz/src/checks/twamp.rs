//! Checks for TWAMP (RFC 5357): its own messages in `owamp_core::wire::twamp`, the reflector
//! packet crypto, and the session-reflector and session-sender of `owamp_core::session::twamp`.
//! (The TWAMP control machines are fuzzed by `control_server` and `control_client`, flag bit 5.)

use owamp_core::crypto::{CryptoError, SecureMode, SessionKeys, TestPacketCrypto};
use owamp_core::session::twamp::{Reflector, SessionSender};
use owamp_core::session::PacketProtection;
use owamp_core::time::{ErrorEstimate, OwampTime};
use owamp_core::wire::{
    ControlMessage, Mode, ReflectorPacket, RequestTwSession, TestPacket, TwampStopSessions,
    WireError,
};

use super::Input;

/// Parse, re-encode, compare, re-parse; only `len` octets accepted.
fn round_trip<T: ControlMessage + PartialEq + core::fmt::Debug>(
    data: &[u8],
    len: usize,
) -> Option<T> {
    let parsed = T::parse(data);
    if data.len() != len {
        assert!(
            matches!(
                parsed,
                Err(WireError::Truncated { .. } | WireError::Length { .. })
            ),
            "{}: {} octets accepted: {parsed:?}",
            T::NAME,
            data.len()
        );
    }
    let m = parsed.ok()?;
    let out = m.to_bytes();
    assert_eq!(out, data, "{}: re-encoding differs", T::NAME);
    assert_eq!(
        T::parse(&out).as_ref(),
        Ok(&m),
        "{}: re-parse differs",
        T::NAME
    );
    Some(m)
}

/// Request-TW-Session (RFC 5357 3.5): 112 octets, exact round trip; the request a server
/// keeps has the server receiving and no slots, and a client sending it again writes the same
/// addresses, times and padding.
pub fn wire_request_tw_session(data: &[u8]) {
    let Some(m) = round_trip::<RequestTwSession>(data, RequestTwSession::LEN) else {
        return;
    };
    let r = m.to_request();
    assert!(r.conf_receiver && !r.conf_sender && r.slots.is_empty());
    let back = RequestTwSession::from_request(&r);
    assert_eq!(
        (
            back.sender_address,
            back.receiver_address,
            back.sid,
            back.padding_length
        ),
        (
            m.sender_address,
            m.receiver_address,
            m.sid,
            m.padding_length
        )
    );
    assert_eq!(
        (back.start_time, back.timeout, back.type_p),
        (m.start_time, m.timeout, m.type_p)
    );
}

/// TWAMP Stop-Sessions (RFC 5357 3.8): 32 octets, exact round trip.
pub fn wire_twamp_stop_sessions(data: &[u8]) {
    round_trip::<TwampStopSessions>(data, TwampStopSessions::LEN);
}

/// TWAMP reflector packet plaintext (RFC 5357 4.2.1).
///
/// Input: one octet choosing the mode (open, authenticated, encrypted), then the packet.
/// Short packets are rejected; accepted ones have a valid error estimate, their padding is what
/// follows the header, and writing them back gives the input.
pub fn wire_reflector_packet(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = Mode::ALL[usize::from(input.u8() % 3)];
    let bytes = input.rest();
    let parsed = ReflectorPacket::parse(mode, bytes);
    if bytes.len() < ReflectorPacket::header_len(mode) {
        assert!(parsed.is_err(), "short {mode} reflector packet accepted");
    }
    let Ok((p, padding)) = parsed else { return };
    assert!(p.error_estimate.is_valid());
    assert_eq!(padding, &bytes[ReflectorPacket::header_len(mode)..]);
    assert_eq!(p.to_bytes(mode, padding), bytes);
}

fn secure_mode(b: u8) -> SecureMode {
    if b & 1 == 0 {
        SecureMode::Authenticated
    } else {
        SecureMode::Encrypted
    }
}

fn keys(input: &mut Input<'_>) -> SessionKeys {
    SessionKeys {
        aes: input.array(),
        hmac: input.array(),
    }
}

/// Reflector packet protection (RFC 5357 4.2.1, as twampd 5.2.3 does it).
///
/// Input: mode octet (even: authenticated, odd: encrypted), SID (16), AES session key (16),
/// HMAC session key (32), then a received packet.
///
/// - a packet under 112 octets is `TooShort` and left untouched;
/// - when `open_reflector` accepts, sealing the opened packet gives the input back;
/// - `open_reflector(seal_reflector(p))` accepts and restores the protected part; the padding
///   after octet 112 is never touched.
pub fn crypto_reflector_packet(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = secure_mode(input.u8());
    let sid: [u8; 16] = input.array();
    let keys = keys(&mut input);
    let packet = input.rest();
    let c = TestPacketCrypto::new(mode, &sid, &keys);
    let mut opened = packet.to_vec();
    let r = c.open_reflector(&mut opened);
    if packet.len() < ReflectorPacket::AUTH_LEN {
        assert_eq!(
            r,
            Err(CryptoError::TooShort {
                len: packet.len(),
                min: ReflectorPacket::AUTH_LEN
            })
        );
        assert_eq!(opened, packet);
        return;
    }
    assert_eq!(opened[112..], packet[112..], "padding changed by open");
    if r.is_ok() {
        let mut resealed = opened.clone();
        c.seal_reflector(&mut resealed).expect("seal what opened");
        assert_eq!(resealed, packet, "seal(open(p)) != p");
    }
    let mut sealed = packet.to_vec();
    c.seal_reflector(&mut sealed).expect("seal 112+ octets");
    assert_eq!(sealed[112..], packet[112..], "padding changed by seal");
    let mut back = sealed.clone();
    assert_eq!(c.open_reflector(&mut back), Ok(()), "open(seal(p)) fails");
    assert_eq!(back[..96], packet[..96]);
}

/// The session-reflector and session-sender (RFC 5357 4) fed arbitrary datagrams.
///
/// Input: mode octet (0 open, 1 authenticated, 2 encrypted), SID (16), session keys (48), a
/// padding length octet, then datagrams: u16 length and octets.
///
/// - the reflector answers a datagram exactly when it is a valid sender packet of the
///   session, with a reply as long as the packet or the reflector header if longer, which the
///   sender reads back with the packet's fields; otherwise it leaves no reply and its count
///   unchanged;
/// - the sender reads any datagram without panicking, and its own packets always reflect.
pub fn session_twamp(data: &[u8]) {
    let mut input = Input::new(data);
    let m = input.u8() % 3;
    let sid: [u8; 16] = input.array();
    let keys = keys(&mut input);
    let pad_len = usize::from(input.u8());
    let padding = input.bytes(pad_len).to_vec();
    let protection = || match m {
        0 => PacketProtection::Open,
        _ => PacketProtection::Sealed(TestPacketCrypto::new(secure_mode(m - 1), &sid, &keys)),
    };
    let mode = [Mode::Open, Mode::Authenticated, Mode::Encrypted][usize::from(m)];
    let mut reflector = Reflector::with_protection(protection());
    let mut sender = SessionSender::with_protection(protection(), padding);
    let ee = ErrorEstimate::from_raw(1);
    let (mut pkt, mut reply) = (Vec::new(), Vec::new());
    for i in 0..64u64 {
        if input.is_empty() {
            break;
        }
        let n = usize::from(input.u16());
        let datagram = input.bytes(n);
        let before = reflector.reflected();
        let t = OwampTime::from_raw(i << 20);
        match reflector.reflect(t, 64, datagram, t, ee, &mut reply) {
            Ok(p) => {
                let header = ReflectorPacket::header_len(mode);
                assert_eq!(reply.len(), datagram.len().max(header));
                assert_eq!(reflector.reflected(), before.wrapping_add(1));
                if p.seq < sender.sent() {
                    let rec = sender
                        .handle_reply(t, 64, ee, &reply)
                        .expect("a reply to a packet the sender sent");
                    assert_eq!(rec.sender_seq, p.seq);
                    assert_eq!(rec.send_time, p.timestamp);
                }
            }
            Err(_) => {
                assert!(reply.is_empty());
                assert_eq!(reflector.reflected(), before);
            }
        }
        let _ = sender.handle_reply(t, 64, ee, datagram);
        // The sender's own packet always reflects and reads back.
        sender.build(t, ee, &mut pkt).expect("build");
        assert!(pkt.len() >= TestPacket::header_len(mode));
        let sent = reflector
            .reflect(t, 255, &pkt, t, ee, &mut reply)
            .expect("the sender's packet reflects");
        let rec = sender
            .handle_reply(t, 255, ee, &reply)
            .expect("read the reply");
        assert_eq!(rec.sender_seq, sent.seq);
        assert_eq!(rec.sender_ttl, 255);
    }
}
