//! Checks for the OWAMP-Control and OWAMP-Test layouts in `owamp_core::wire`.
//!
//! For every message the parser must not panic, must reject any input whose length is not the
//! message's, and, when it accepts, writing the value back must give the input octets again
//! (after the normalisations the format documents: unused octets are sent as zero and boolean
//! octets as 0 or 1) and parsing that must give the same value.

use core::fmt::Debug;

use owamp_core::wire::framing::{self, Frame};
use owamp_core::wire::{
    AcceptSession, ControlMessage, DataRecord, FetchAck, FetchData, FetchSession, Mode,
    RequestSession, ServerGreeting, ServerStart, SetUpResponse, SkipRange, Slot, StartAck,
    StartSessions, StopSessions, TestPacket, WireError, BLOCK_LEN,
};

use super::Input;

/// The common check of a control message: parse, re-encode, compare, re-parse. `fixed_len` is
/// the only length the message may have, if it has one; `normalise` turns the input into what
/// the encoder must write back. Returns the parsed value.
fn round_trip<T>(data: &[u8], fixed_len: Option<usize>, normalise: impl Fn(&mut [u8])) -> Option<T>
where
    T: ControlMessage + PartialEq + Debug,
{
    let parsed = T::parse(data);
    if let Some(len) = fixed_len {
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
    }
    let m = parsed.ok()?;
    let out = m.to_bytes();
    let mut expect = data.to_vec();
    normalise(&mut expect);
    assert_eq!(out, expect, "{}: re-encoding differs", T::NAME);
    assert_eq!(
        T::parse(&out).as_ref(),
        Ok(&m),
        "{}: re-parse differs",
        T::NAME
    );
    Some(m)
}

/// Makes a boolean octet 0 or 1, as the encoders write it.
fn bool_octet(b: &mut [u8], at: usize) {
    if let Some(x) = b.get_mut(at) {
        *x = u8::from(*x != 0);
    }
}

/// The client-request framing of a whole, valid message must be its exact length.
fn assert_frames_as_whole(data: &[u8]) {
    assert_eq!(
        framing::client_request(data),
        Ok(Frame::Complete { len: data.len() }),
        "client_request framing of a valid message"
    );
}

/// Server-Greeting (RFC 4656 3.1): 64 octets, the first 12 unused (written as zero).
pub fn wire_server_greeting(data: &[u8]) {
    round_trip::<ServerGreeting>(data, Some(ServerGreeting::LEN), |b| b[..12].fill(0));
}

/// Set-Up-Response (RFC 4656 3.1): 164 octets, exact round trip.
pub fn wire_set_up_response(data: &[u8]) {
    if let Some(m) = round_trip::<SetUpResponse>(data, Some(SetUpResponse::LEN), |_| {}) {
        // The KeyID name is a prefix of the field without NULs.
        let name = m.key_id_name();
        assert!(!name.contains(&0));
        assert_eq!(&m.key_id[..name.len()], name);
    }
}

/// Server-Start (RFC 4656 3.1): 48 octets, exact round trip.
pub fn wire_server_start(data: &[u8]) {
    round_trip::<ServerStart>(data, Some(ServerStart::LEN), |_| {});
}

/// Request-Session (RFC 4656 3.5): 112 + 16 per slot + 16 octets. Conf-Sender and
/// Conf-Receiver read any non-zero octet as set. A valid message frames as its own length.
pub fn wire_request_session(data: &[u8]) {
    let Some(m) = round_trip::<RequestSession>(data, None, |b| {
        bool_octet(b, 2);
        bool_octet(b, 3);
    }) else {
        return;
    };
    assert_eq!(m.encoded_len(), data.len());
    assert_eq!(
        RequestSession::wire_len(m.slots.len() as u32),
        Ok(data.len())
    );
    assert_eq!(
        framing::request_session(data),
        Ok(Frame::Complete { len: data.len() })
    );
    assert_frames_as_whole(data);
    let mut fixed = [0u8; RequestSession::FIXED_LEN];
    fixed.copy_from_slice(&m.to_bytes()[..RequestSession::FIXED_LEN]);
    assert_eq!(m.fixed_part(), fixed);
}

/// Accept-Session (RFC 4656 3.5): 48 octets, exact round trip.
pub fn wire_accept_session(data: &[u8]) {
    round_trip::<AcceptSession>(data, Some(AcceptSession::LEN), |_| {});
}

/// Start-Sessions (RFC 4656 3.7): 32 octets, exact round trip.
pub fn wire_start_sessions(data: &[u8]) {
    if round_trip::<StartSessions>(data, Some(StartSessions::LEN), |_| {}).is_some() {
        assert_frames_as_whole(data);
    }
}

/// Start-Ack (RFC 4656 3.7): 32 octets, exact round trip.
pub fn wire_start_ack(data: &[u8]) {
    round_trip::<StartAck>(data, Some(StartAck::LEN), |_| {});
}

/// Stop-Sessions (RFC 4656 3.8): variable length, exact round trip (padding is checked to be
/// zero), and a valid message frames as its own length.
pub fn wire_stop_sessions(data: &[u8]) {
    let Some(m) = round_trip::<StopSessions>(data, None, |_| {}) else {
        return;
    };
    assert_eq!(m.encoded_len(), data.len());
    assert!(m.sessions.len() <= StopSessions::MAX_SESSIONS as usize);
    assert_eq!(
        framing::stop_sessions(data),
        Ok(Frame::Complete { len: data.len() })
    );
    assert_frames_as_whole(data);
}

/// Fetch-Session (RFC 4656 3.8): 48 octets, exact round trip.
pub fn wire_fetch_session(data: &[u8]) {
    if round_trip::<FetchSession>(data, Some(FetchSession::LEN), |_| {}).is_some() {
        assert_frames_as_whole(data);
    }
}

/// Fetch-Ack (RFC 4656 3.8): 32 octets, exact round trip (Finished is 0, 1 or 2).
pub fn wire_fetch_ack(data: &[u8]) {
    let Some(m) = round_trip::<FetchAck>(data, Some(FetchAck::LEN), |_| {}) else {
        return;
    };
    assert!(data[1] <= 2, "Finished octet {} accepted", data[1]);
    // The announced data length is an error or a whole number of blocks, never a panic.
    if let Ok(len) = m.data_len() {
        assert_eq!(len % BLOCK_LEN, 0);
    }
}

/// The data after an accepted Fetch-Ack (RFC 4656 3.8).
///
/// Input: one flag octet; if its top bit is set the two counts follow as big-endian u32
/// (any value, to exercise the limits), else as one octet (skip ranges) and a big-endian u16
/// (records), which keeps valid lengths within reach. The rest is the section.
pub fn wire_fetch_data(data: &[u8]) {
    let mut input = Input::new(data);
    let (nskip, nrec) = if input.u8() & 0x80 != 0 {
        (input.u32(), input.u32())
    } else {
        (u32::from(input.u8()), u32::from(input.u16()))
    };
    let bytes = input.rest();
    let want = FetchData::wire_len(nskip, nrec);
    let parsed = FetchData::parse(bytes, nskip, nrec);
    match &want {
        Ok(len) => {
            assert_eq!(len % BLOCK_LEN, 0);
            if *len != bytes.len() {
                assert!(parsed.is_err(), "{} octets accepted for {len}", bytes.len());
            }
        }
        Err(e) => assert_eq!(parsed.as_ref().err(), Some(e)),
    }
    // The section's pieces on their own, on the same octets.
    if let Ok(len) = SkipRange::block_len(nskip) {
        if let Some(block) = bytes.get(..len) {
            if let Ok(ranges) = SkipRange::parse_block(block, nskip, 0) {
                let mut out = Vec::new();
                SkipRange::write_block(&ranges, &mut out);
                assert_eq!(out, block);
            }
        }
    }
    if let Ok(len) = FetchData::records_len(nrec) {
        if let Some(block) = bytes.get(..len) {
            if let Ok(records) = FetchData::parse_records(block, nrec, 0) {
                let mut out = Vec::new();
                FetchData::write_records(&records, &mut out);
                assert_eq!(out, block);
            }
        }
    }
    let Ok(d) = parsed else { return };
    assert_eq!(d.skip_ranges.len(), nskip as usize);
    assert_eq!(d.records.len(), nrec as usize);
    assert_eq!(
        d.to_bytes(),
        bytes,
        "Fetch-Session data: re-encoding differs"
    );
    assert_eq!(
        FetchData::parse(&d.to_bytes(), nskip, nrec).as_ref(),
        Ok(&d)
    );
}

/// The framing helpers (`wire::framing`), as a stream reader uses them.
///
/// Input: one octet choosing the helper (request_session, stop_sessions, client_request,
/// fetch_response), then the stream. For every prefix of the stream:
/// - `Incomplete { need }` asks for more than the prefix holds, and never for more than the
///   message turns out to be;
/// - `Complete { len }` is a whole number of blocks and is what the whole stream gives too;
/// - an error on a prefix is the error on the whole stream.
///
/// When the whole message is there, the matching parser never complains about its length.
pub fn wire_framing(data: &[u8]) {
    type Framer = fn(&[u8]) -> Result<Frame, WireError>;
    const FRAMERS: [Framer; 4] = [
        framing::request_session,
        framing::stop_sessions,
        framing::client_request,
        framing::fetch_response,
    ];
    let mut input = Input::new(data);
    let which = usize::from(input.u8() % 4);
    let f = FRAMERS[which];
    let stream = input.rest();
    let whole = f(stream);
    // Prefix stability; at most 1024 prefixes, so long inputs stay fast.
    let step = (stream.len() / 1024).max(1);
    for k in (0..=stream.len()).step_by(step) {
        match f(&stream[..k]) {
            Err(e) => assert_eq!(whole.as_ref().err(), Some(&e), "prefix {k} errs"),
            Ok(Frame::Complete { len }) => {
                assert_eq!(len % BLOCK_LEN, 0);
                assert!(len >= BLOCK_LEN);
                assert_eq!(whole, Ok(Frame::Complete { len }), "prefix {k} complete");
            }
            Ok(Frame::Incomplete { need }) => {
                assert!(need > k, "prefix {k}: need {need} is not more");
                match whole {
                    Ok(Frame::Complete { len }) => assert!(len >= need),
                    Ok(Frame::Incomplete { need: n }) => assert!(n >= need),
                    Err(_) => {}
                }
            }
        }
    }
    let Ok(Frame::Complete { len }) = whole else {
        return;
    };
    let Some(msg) = stream.get(..len) else {
        return;
    };
    let not_length = |r: Result<(), WireError>, what: &str| {
        assert!(
            !matches!(
                r,
                Err(WireError::Truncated { .. } | WireError::Length { .. })
            ),
            "{what}: framed length {len} rejected: {r:?}"
        );
    };
    match which {
        0 => not_length(RequestSession::parse(msg).map(drop), "Request-Session"),
        1 => not_length(StopSessions::parse(msg).map(drop), "Stop-Sessions"),
        2 => match msg.first() {
            Some(1) => not_length(RequestSession::parse(msg).map(drop), "Request-Session"),
            Some(2) => not_length(StartSessions::parse(msg).map(drop), "Start-Sessions"),
            Some(3) => not_length(StopSessions::parse(msg).map(drop), "Stop-Sessions"),
            Some(4) => not_length(FetchSession::parse(msg).map(drop), "Fetch-Session"),
            other => panic!("client_request framed command {other:?}"),
        },
        _ => {
            let ack = FetchAck::parse(&msg[..FetchAck::LEN]);
            let Ok(ack) = ack else {
                panic!("fetch_response framed a bad Fetch-Ack: {ack:?}");
            };
            if len == FetchAck::LEN {
                return;
            }
            let rest = &msg[FetchAck::LEN..];
            let Ok(Frame::Complete { len: rs }) = framing::request_session(rest) else {
                panic!("fetch_response framed without a Request-Session length");
            };
            not_length(
                RequestSession::parse(&rest[..rs]).map(drop),
                "stored Request-Session",
            );
            not_length(
                FetchData::parse(&rest[rs..], ack.num_skip_ranges, ack.num_records).map(drop),
                "Fetch-Session data",
            );
        }
    }
}

/// OWAMP-Test packet plaintext (RFC 4656 4.1.2).
///
/// Input: one octet choosing the mode (open, authenticated, encrypted), then the packet.
/// Accepted packets have a valid error estimate, their padding is what follows the header, and
/// writing them back gives the input.
pub fn wire_test_packet(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = Mode::ALL[usize::from(input.u8() % 3)];
    let bytes = input.rest();
    let parsed = TestPacket::parse(mode, bytes);
    if bytes.len() < TestPacket::header_len(mode) {
        assert!(parsed.is_err(), "short {mode} packet accepted");
    }
    let Ok((p, padding)) = parsed else { return };
    assert!(p.error_estimate.is_valid());
    assert_eq!(padding, &bytes[TestPacket::header_len(mode)..]);
    assert_eq!(
        p.to_bytes(mode, padding),
        bytes,
        "{mode} packet re-encoding"
    );
    if mode == Mode::Open {
        assert_eq!(p.hmac, [0; 16]);
    }
}

/// The 25-octet data record (RFC 4656 3.8): parses from any input of at least 25 octets, and
/// re-encodes to those 25 octets.
pub fn wire_data_record(data: &[u8]) {
    let parsed = DataRecord::parse(data);
    let Some(head) = data.get(..DataRecord::LEN) else {
        assert!(parsed.is_err(), "short data record accepted");
        return;
    };
    let r = parsed.expect("25 octets always form a record");
    assert_eq!(r.to_bytes(), head);
    assert_eq!(r.is_lost(), r.recv_time.raw() == 0);
    let mut out = Vec::new();
    r.write_to(&mut out);
    assert_eq!(out, head);
}

/// A schedule slot (RFC 4656 3.5): exactly 16 octets, exact round trip.
pub fn wire_slot(data: &[u8]) {
    let parsed = Slot::parse(data);
    if data.len() != Slot::LEN {
        assert!(parsed.is_err(), "{} octets accepted as a slot", data.len());
    }
    let Ok(s) = parsed else { return };
    assert_eq!(s.to_bytes(), data);
    // The duration conversion is total.
    let _ = s.mean.to_duration();
}
