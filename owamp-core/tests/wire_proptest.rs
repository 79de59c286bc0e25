//! Property tests: `parse(serialize(x)) == x` for arbitrary valid values, `serialize(parse(b))
//! == b` for arbitrary valid octet strings, framing agrees with the encodings, and no input
//! makes a parser or framing function panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use owamp_core::time::Interval;
use owamp_core::time::{ErrorEstimate, OwampTime};
use owamp_core::wire::{
    framing, AcceptCode, AcceptSession, ControlMessage, DataRecord, FetchAck, FetchData,
    FetchSession, Finished, Frame, Mode, Modes, RequestSession, ServerGreeting, ServerStart,
    SessionId, SessionStop, SetUpResponse, SkipRange, Slot, SlotKind, StartAck, StartSessions,
    StopSessions, TestPacket, TypeP,
};
use proptest::prelude::*;

fn accept() -> impl Strategy<Value = AcceptCode> {
    (0u8..=5).prop_map(|v| AcceptCode::from_u8(v).unwrap())
}

fn mode() -> impl Strategy<Value = Mode> {
    prop::sample::select(Mode::ALL.to_vec())
}

fn sid() -> impl Strategy<Value = SessionId> {
    any::<[u8; 16]>().prop_map(SessionId)
}

fn time() -> impl Strategy<Value = OwampTime> {
    any::<u64>().prop_map(OwampTime::from_raw)
}

fn estimate() -> impl Strategy<Value = ErrorEstimate> {
    // Valid estimates: non-zero multiplier.
    any::<u16>()
        .prop_filter("zero multiplier", |v| v & 0xff != 0)
        .prop_map(ErrorEstimate::from_raw)
}

fn addresses() -> impl Strategy<Value = (IpAddr, IpAddr)> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<[u8; 4]>())
            .prop_map(|(a, b)| (Ipv4Addr::from(a).into(), Ipv4Addr::from(b).into())),
        (any::<[u8; 16]>(), any::<[u8; 16]>())
            .prop_map(|(a, b)| (Ipv6Addr::from(a).into(), Ipv6Addr::from(b).into())),
    ]
}

fn slot() -> impl Strategy<Value = Slot> {
    (any::<bool>(), any::<u64>()).prop_map(|(fixed, mean)| Slot {
        kind: if fixed {
            SlotKind::Fixed
        } else {
            SlotKind::Exponential
        },
        mean: Interval::from_raw(mean),
    })
}

prop_compose! {
    fn request_session()(
        conf in (any::<bool>(), any::<bool>()),
        num_packets in any::<u32>(),
        ports in any::<(u16, u16)>(),
        addrs in addresses(),
        sid in sid(),
        padding_length in any::<u32>(),
        start_time in time(),
        timeout in any::<u64>(),
        type_p in any::<u32>(),
        hmac in any::<[u8; 16]>(),
        slots in prop::collection::vec(slot(), 0..6),
        slots_hmac in any::<[u8; 16]>(),
    ) -> RequestSession {
        RequestSession {
            conf_sender: conf.0,
            conf_receiver: conf.1,
            num_packets,
            sender_port: ports.0,
            receiver_port: ports.1,
            sender_address: addrs.0,
            receiver_address: addrs.1,
            sid,
            padding_length,
            start_time,
            timeout: Interval::from_raw(timeout),
            type_p: TypeP(type_p),
            hmac,
            slots,
            slots_hmac,
        }
    }
}

fn skip_range() -> impl Strategy<Value = SkipRange> {
    any::<(u32, u32)>().prop_map(|(first, last)| SkipRange { first, last })
}

prop_compose! {
    fn stop_sessions()(
        accept in accept(),
        sessions in prop::collection::vec(
            (sid(), any::<u32>(), prop::collection::vec(skip_range(), 0..5)).prop_map(
                |(sid, next_seqno, skip_ranges)| SessionStop { sid, next_seqno, skip_ranges },
            ),
            0..4,
        ),
        hmac in any::<[u8; 16]>(),
    ) -> StopSessions {
        StopSessions { accept, sessions, hmac }
    }
}

fn record() -> impl Strategy<Value = DataRecord> {
    (
        any::<u32>(),
        any::<u16>(),
        time(),
        any::<u16>(),
        time(),
        any::<u8>(),
    )
        .prop_map(|(seq, se, st, re, rt, ttl)| DataRecord {
            seq,
            send_error: ErrorEstimate::from_raw(se),
            send_time: st,
            recv_error: ErrorEstimate::from_raw(re),
            recv_time: rt,
            ttl,
        })
}

/// Encodes, checks the length, parses back and compares.
fn round_trip<T: ControlMessage + PartialEq + core::fmt::Debug>(
    x: &T,
) -> Result<Vec<u8>, TestCaseError> {
    let b = x.to_bytes();
    prop_assert_eq!(b.len() % 16 == 0 || b.len() == 164, true);
    let back = T::parse(&b).map_err(|e| TestCaseError::fail(format!("{}: {e}", T::NAME)))?;
    prop_assert_eq!(&back, x);
    Ok(b)
}

/// Drives a framing function block by block over a complete encoding.
fn frame_len(
    b: &[u8],
    f: fn(&[u8]) -> Result<Frame, owamp_core::wire::WireError>,
) -> Result<usize, TestCaseError> {
    let mut have = 16.min(b.len());
    loop {
        match f(&b[..have]).map_err(|e| TestCaseError::fail(e.to_string()))? {
            Frame::Complete { len } => return Ok(len),
            Frame::Incomplete { need } => {
                prop_assert!(need > have && need <= b.len());
                have = need;
            }
        }
    }
}

proptest! {
    #[test]
    fn greeting_values(modes in any::<u32>(), challenge in any::<[u8; 16]>(), salt in any::<[u8; 16]>(), count in any::<u32>()) {
        round_trip(&ServerGreeting { modes: Modes::from_raw(modes), challenge, salt, count })?;
    }

    #[test]
    fn set_up_values(mode in mode(), key_id in prop::collection::vec(any::<u8>(), 80), token in prop::collection::vec(any::<u8>(), 64), client_iv in any::<[u8; 16]>()) {
        round_trip(&SetUpResponse {
            mode,
            key_id: key_id.try_into().unwrap(),
            token: token.try_into().unwrap(),
            client_iv,
        })?;
    }

    #[test]
    fn server_start_values(accept in accept(), server_iv in any::<[u8; 16]>(), start_time in time()) {
        round_trip(&ServerStart { accept, server_iv, start_time })?;
    }

    #[test]
    fn request_session_values(r in request_session()) {
        let b = round_trip(&r)?;
        prop_assert_eq!(b.len(), RequestSession::wire_len(r.slots.len() as u32).unwrap());
        prop_assert_eq!(frame_len(&b, framing::request_session)?, b.len());
        prop_assert_eq!(frame_len(&b, framing::client_request)?, b.len());
    }

    #[test]
    fn accept_session_values(accept in accept(), port in any::<u16>(), sid in sid(), hmac in any::<[u8; 16]>()) {
        round_trip(&AcceptSession { accept, port, sid, hmac })?;
    }

    #[test]
    fn start_values(accept in accept(), hmac in any::<[u8; 16]>()) {
        let b = round_trip(&StartSessions { hmac })?;
        prop_assert_eq!(frame_len(&b, framing::client_request)?, 32);
        round_trip(&StartAck { accept, hmac })?;
    }

    #[test]
    fn stop_sessions_values(s in stop_sessions()) {
        let b = round_trip(&s)?;
        prop_assert_eq!(b.len(), s.encoded_len());
        prop_assert_eq!(frame_len(&b, framing::stop_sessions)?, b.len());
        prop_assert_eq!(frame_len(&b, framing::client_request)?, b.len());
    }

    #[test]
    fn fetch_values(begin_seq in any::<u32>(), end_seq in any::<u32>(), sid in sid(), hmac in any::<[u8; 16]>(),
                    accept in accept(), finished in 0u8..=2, counts in any::<(u32, u32, u32)>()) {
        round_trip(&FetchSession { begin_seq, end_seq, sid, hmac })?;
        round_trip(&FetchAck {
            accept,
            finished: Finished::from_u8(finished).unwrap(),
            next_seqno: counts.0,
            num_skip_ranges: counts.1,
            num_records: counts.2,
            hmac,
        })?;
    }

    #[test]
    fn fetch_response_values(r in request_session(), skips in prop::collection::vec(skip_range(), 0..5),
                             records in prop::collection::vec(record(), 0..40), hmacs in any::<([u8; 16], [u8; 16], [u8; 16])>()) {
        let ack = FetchAck {
            accept: AcceptCode::Ok,
            finished: Finished::Normal,
            next_seqno: records.len() as u32,
            num_skip_ranges: skips.len() as u32,
            num_records: records.len() as u32,
            hmac: hmacs.0,
        };
        let data = FetchData { skip_ranges: skips, skip_ranges_hmac: hmacs.1, records, records_hmac: hmacs.2 };
        let mut b = ack.to_bytes();
        r.write_to(&mut b);
        let d = data.to_bytes();
        prop_assert_eq!(d.len(), ack.data_len().unwrap());
        b.extend(&d);
        prop_assert_eq!(frame_len(&b, framing::fetch_response)?, b.len());
        let back = FetchData::parse(&d, ack.num_skip_ranges, ack.num_records).unwrap();
        prop_assert_eq!(back, data);
    }

    #[test]
    fn records(r in record()) {
        let b = r.to_bytes();
        prop_assert_eq!(DataRecord::parse(&b).unwrap(), r);
    }

    #[test]
    fn test_packet_values(mode in mode(), seq in any::<u32>(), timestamp in time(), error_estimate in estimate(),
                          hmac in any::<[u8; 16]>(), padding in prop::collection::vec(any::<u8>(), 0..64)) {
        let p = TestPacket { seq, timestamp, error_estimate, hmac: if mode == Mode::Open { [0; 16] } else { hmac } };
        let b = p.to_bytes(mode, &padding);
        prop_assert_eq!(b.len(), TestPacket::header_len(mode) + padding.len());
        let (back, pad) = TestPacket::parse(mode, &b).unwrap();
        prop_assert_eq!(back, p);
        prop_assert_eq!(pad, &padding[..]);
    }

    // serialize(parse(b)) == b: arbitrary octets with the MBZ fields cleared and the coded fields
    // set to valid values.

    #[test]
    fn greeting_bytes(mut b in prop::collection::vec(any::<u8>(), 64)) {
        b[..12].fill(0);
        b[52..].fill(0);
        prop_assert_eq!(ServerGreeting::parse(&b).unwrap().to_bytes(), b);
    }

    #[test]
    fn set_up_bytes(mut b in prop::collection::vec(any::<u8>(), 164), m in mode()) {
        b[..4].copy_from_slice(&m.bits().to_be_bytes());
        prop_assert_eq!(SetUpResponse::parse(&b).unwrap().to_bytes(), b);
    }

    #[test]
    fn server_start_bytes(mut b in prop::collection::vec(any::<u8>(), 48), a in 0u8..=5) {
        b[..15].fill(0);
        b[15] = a;
        b[40..].fill(0);
        prop_assert_eq!(ServerStart::parse(&b).unwrap().to_bytes(), b);
    }

    #[test]
    fn request_session_bytes(mut b in prop::collection::vec(any::<u8>(), 112), slots in prop::collection::vec(any::<[u8; 16]>(), 0..5),
                             hmac in any::<[u8; 16]>(), v6 in any::<bool>(), conf in any::<(bool, bool)>()) {
        b[0] = 1;
        b[1] = if v6 { 6 } else { 4 };
        b[2] = u8::from(conf.0);
        b[3] = u8::from(conf.1);
        b[4..8].copy_from_slice(&(slots.len() as u32).to_be_bytes());
        if !v6 {
            b[20..32].fill(0);
            b[36..48].fill(0);
        }
        b[88..96].fill(0);
        for mut s in slots {
            s[0] &= 1;
            s[1..8].fill(0);
            b.extend(s);
        }
        b.extend(hmac);
        prop_assert_eq!(RequestSession::parse(&b).unwrap().to_bytes(), b);
    }

    #[test]
    fn accept_session_bytes(mut b in prop::collection::vec(any::<u8>(), 48), a in 0u8..=5) {
        b[0] = a;
        b[1] = 0;
        b[20..32].fill(0);
        prop_assert_eq!(AcceptSession::parse(&b).unwrap().to_bytes(), b);
    }

    #[test]
    fn start_bytes(mut b in prop::collection::vec(any::<u8>(), 32), a in 0u8..=5) {
        b[1..16].fill(0);
        b[0] = 2;
        prop_assert_eq!(StartSessions::parse(&b).unwrap().to_bytes(), b.clone());
        b[0] = a;
        prop_assert_eq!(StartAck::parse(&b).unwrap().to_bytes(), b);
    }

    #[test]
    fn fetch_bytes(mut b in prop::collection::vec(any::<u8>(), 48), a in 0u8..=5, finished in 0u8..=2) {
        b[0] = 4;
        b[1..8].fill(0);
        prop_assert_eq!(FetchSession::parse(&b).unwrap().to_bytes(), b.clone());
        let mut ack = b[16..].to_vec();
        ack[0] = a;
        ack[1] = finished;
        ack[2..4].fill(0);
        prop_assert_eq!(FetchAck::parse(&ack).unwrap().to_bytes(), ack);
    }

    #[test]
    fn stop_sessions_bytes(a in 0u8..=5, sessions in prop::collection::vec((any::<[u8; 20]>(), prop::collection::vec(any::<[u8; 8]>(), 0..5)), 0..4),
                           hmac in any::<[u8; 16]>()) {
        let mut b = vec![3, a, 0, 0];
        b.extend((sessions.len() as u32).to_be_bytes());
        b.extend([0; 8]);
        for (head, ranges) in sessions {
            b.extend(head);
            b.extend((ranges.len() as u32).to_be_bytes());
            for r in &ranges {
                b.extend(r);
            }
            if ranges.len() % 2 == 0 {
                b.extend([0; 8]);
            }
        }
        b.extend(hmac);
        prop_assert_eq!(StopSessions::parse(&b).unwrap().to_bytes(), b);
    }

    #[test]
    fn auth_test_packet_bytes(mut b in prop::collection::vec(any::<u8>(), 48..100), mode in mode()) {
        if mode == Mode::Open {
            b[13] |= 1;
        } else {
            b[4..16].fill(0);
            b[25] |= 1;
            b[26..32].fill(0);
        }
        let (p, pad) = TestPacket::parse(mode, &b).unwrap();
        prop_assert_eq!(p.to_bytes(mode, pad), b);
    }

    // No input makes a parser or a framing function panic.
    #[test]
    fn arbitrary_input_never_panics(b in prop::collection::vec(any::<u8>(), 0..300), lead in 0u8..6) {
        let mut b = b;
        if let Some(x) = b.first_mut() {
            *x = lead;
        }
        let _ = ServerGreeting::parse(&b);
        let _ = SetUpResponse::parse(&b);
        let _ = ServerStart::parse(&b);
        let _ = RequestSession::parse(&b);
        let _ = AcceptSession::parse(&b);
        let _ = StartSessions::parse(&b);
        let _ = StartAck::parse(&b);
        let _ = StopSessions::parse(&b);
        let _ = FetchSession::parse(&b);
        let _ = FetchAck::parse(&b);
        let _ = DataRecord::parse(&b);
        let _ = Slot::parse(&b);
        for m in Mode::ALL {
            let _ = TestPacket::parse(m, &b);
        }
        for n in [0, 1, 7, u32::MAX] {
            let _ = FetchData::parse(&b, n, n);
            let _ = FetchData::parse(&b, 0, n);
        }
        for f in [framing::request_session, framing::stop_sessions, framing::client_request, framing::fetch_response] {
            if let Ok(Frame::Incomplete { need }) = f(&b) {
                prop_assert!(need > b.len());
            }
        }
    }
}
