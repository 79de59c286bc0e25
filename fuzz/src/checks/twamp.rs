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
    test_sessions(data);
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

/// The same datagrams through `TestSession::twamp`, as a connection drives it: a reflector
/// fed every datagram (from the sender's address) answers exactly those it accepts, through
/// `poll_transmit`; a sender reads any datagram from the reflector without panicking, and its
/// own packets, reflected, always come back as records.
///
/// Input: mode octet, SID (16), AES session key (16), HMAC session key (32), padding octet,
/// then datagrams as for [`session_twamp`].
fn test_sessions(data: &[u8]) {
    use core::net::{IpAddr, Ipv4Addr, SocketAddr};
    use owamp_core::io::SessionInfo;
    use owamp_core::proto::Role;
    use owamp_core::session::{Datagram, DatagramOutcome, TestSession};
    use owamp_core::time::Interval;
    use owamp_core::wire::{RequestSession, SessionId, Slot, SlotKind, TypeP};

    let mut input = Input::new(data);
    let mode = [Mode::Open, Mode::Authenticated, Mode::Encrypted][usize::from(input.u8() % 3)];
    let sid = SessionId(input.array());
    let keys = keys(&mut input);
    let padding = u32::from(input.u8());
    let client = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 5000);
    let server = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 6000);
    let t0 = OwampTime::from_raw(0xeeb2_5d00_0000_0000);
    let request = RequestSession {
        conf_sender: false,
        conf_receiver: true,
        num_packets: 64,
        sender_port: client.port(),
        receiver_port: server.port(),
        sender_address: client.ip(),
        receiver_address: server.ip(),
        sid,
        padding_length: padding,
        start_time: t0,
        timeout: Interval::from_raw(1 << 32),
        type_p: TypeP::BEST_EFFORT,
        hmac: [0; 16],
        slots: vec![Slot {
            kind: SlotKind::Fixed,
            mean: Interval::from_raw(1 << 22),
        }],
        slots_hmac: [0; 16],
    };
    let info = |role, local, peer| SessionInfo {
        sid,
        role,
        mode,
        keys: Some(keys.clone()),
        local,
        peer,
        request: request.clone(),
    };
    let mut reflector =
        TestSession::twamp(info(Role::Receiver, server, client)).expect("reflector");
    let mut sender = TestSession::twamp(info(Role::Sender, client, server)).expect("sender");
    reflector.start();
    sender.start();
    let ee = ErrorEstimate::from_raw(1);
    let mut buf = vec![0u8; 2048];
    fn datagram(source: SocketAddr, at: OwampTime, payload: &[u8]) -> Datagram<'_> {
        Datagram {
            source,
            recv_time: at,
            ttl: Some(64),
            truncated: false,
            payload,
        }
    }
    for i in 0..64u64 {
        if input.is_empty() {
            break;
        }
        let t = t0.saturating_add_interval(Interval::from_raw(i << 22));
        let n = usize::from(input.u16());
        let bytes = input.bytes(n);
        match reflector.handle_datagram(&datagram(client, t, bytes), ee) {
            DatagramOutcome::Accepted { .. } => {
                let r = reflector.poll_transmit(t, ee, &mut buf).expect("a reply");
                assert_eq!(r.dest, client);
                // `bytes` may be shorter than the `n` asked for (the input ran out).
                assert_eq!(r.len, bytes.len().max(ReflectorPacket::header_len(mode)));
            }
            _ => assert!(reflector.poll_transmit(t, ee, &mut buf).is_none()),
        }
        let _ = sender.handle_datagram(&datagram(server, t, bytes), ee);
        let _ = sender.take_two_way();
        // The sender's own packet, reflected, reads back.
        let Some(p) = sender.poll_transmit(t, ee, &mut buf) else {
            continue;
        };
        let pkt = buf[..p.len].to_vec();
        assert!(matches!(
            reflector.handle_datagram(&datagram(client, t, &pkt), ee),
            DatagramOutcome::Accepted { .. }
        ));
        let r = reflector.poll_transmit(t, ee, &mut buf).expect("reflected");
        let reply = buf[..r.len].to_vec();
        assert!(matches!(
            sender.handle_datagram(&datagram(server, t, &reply), ee),
            DatagramOutcome::Accepted {
                duplicate: false,
                ..
            }
        ));
        let records = sender.take_two_way();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].sender_seq, p.seq);
    }
}
