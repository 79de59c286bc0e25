//! Byte-exact fixtures for every OWAMP-Control message and test packet, taken from the
//! perfSONAR reference traces (authenticated-mode plaintext, so HMAC fields are real), plus
//! negative tests: truncation, extra octets, non-zero MBZ, bad modes, bad accept codes and
//! oversize counts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use owamp_core::time::Interval;
use owamp_core::time::{ErrorEstimate, OwampTime};
use owamp_core::wire::{
    framing, AcceptCode, AcceptSession, ControlMessage, ControlMessageKind, DataRecord, FetchAck,
    FetchData, FetchSession, Finished, Frame, Mode, Modes, RequestSession, ServerGreeting,
    ServerStart, SessionId, SessionStop, SetUpResponse, SkipRange, Slot, SlotKind, StartAck,
    StartSessions, StopSessions, TestPacket, TypeP, WireError,
};

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn arr<const N: usize>(s: &str) -> [u8; N] {
    h(s).try_into().unwrap()
}

const GREETING: &str = "000000000000000000000000000000074e389de9bbc7d8693ef6fd3e6055edc2\
                        3455142a7d429274b30fefab5f3acd0500000800000000000000000000000000";
const SETUP: &str = "00000002616c6963650000000000000000000000000000000000000000000000\
                     0000000000000000000000000000000000000000000000000000000000000000\
                     000000000000000000000000000000000000000021d8646ba01b01d5c8450311\
                     15c8ae7efc0e6da34e15b68d85dd893beaffb13a7daa9106023fffe11561ac03\
                     004c4cb23aed8d168ef5ec42488e642fb65a7db33fed08ee3746a08a58f219b3\
                     5eb61ab5";
const SERVER_START: &str = "00000000000000000000000000000000b01229ea08c9b13b5b5bb1a228bc460d\
                            eeb25d4edfcb5fe50000000000000000";
const REQUEST_TO: &str = "010400010000000100000014250b00007f000001000000000000000000000000\
                          7f00000100000000000000000000000000000000000000000000000000000000\
                          00000000eeb25d76a18b71b90000000200cb3a26000000000000000000000000\
                          823a9cb6a3bf399618bfb6f7117fc3c1\
                          0000000000000000000000000ccccccc\
                          c999d26376f01834beb7fa08660b2855";
const REQUEST_FROM: &str = "010401000000000100000014000026cb7f000001000000000000000000000000\
                            7f0000010000000000000000000000007f000001eeb25d75aad2242473ceffd8\
                            00000000eeb25d76a18b71b90000000200cb3a26000000000000000000000000\
                            0a2d2447dd5df375c3bd0fcc1b810c6c\
                            0000000000000000000000000ccccccc\
                            c999d26376f01834beb7fa08660b2855";
const ACCEPT: &str = "0000227c7f000001eeb25d75aa8c79f6d940f8da000000000000000000000000\
                      a869719082861711c234e42220e903fa";
const START_SESSIONS: &str = "020000000000000000000000000000003d9f0fe99f757eae3b74fdcff0c3b4b0";
const START_ACK: &str = "0000000000000000000000000000000059d71254d7f93b54e69762fc1cd0e9b1";
const STOP_SERVER: &str = "03000000000000010000000000000000\
                           7f000001eeb25d75aad2242473ceffd8\
                           00000014000000000000000000000000\
                           0760fb379787835438602345c0ff9e7c";
const FETCH_SESSION: &str = "040000000000000000000000ffffffff7f000001eeb25d75aa8c79f6d940f8da\
                             4b4737402687124b1da5698a50cbfae2";
const FETCH_ACK: &str = "000100000000001400000000000000141803a71fac0fcfab0881024479f31bef";
const TEST_AUTH: &str = "00000000000000000000000000000000eeb25d76a46c00da0001000000000000\
                         ff156f51ca4a68aea8bb8b7c6679b7b1";
const TEST_OPEN: &str = "00000005eeb25d70140f98fa0001";

fn sid(s: &str) -> SessionId {
    SessionId(arr(s))
}

/// Parses, re-encodes, and checks the encoding (through both the inherent API and the trait).
fn exact<T: ControlMessage + PartialEq + core::fmt::Debug>(hex: &str) -> T {
    let b = h(hex);
    let v = T::parse(&b).unwrap();
    assert_eq!(hex::encode(v.to_bytes()), hex::encode(&b), "{}", T::NAME);
    let mut out = vec![0xee];
    v.write_to(&mut out);
    assert_eq!(&out[1..], &b[..]);
    v
}

#[test]
fn server_greeting() {
    let g: ServerGreeting = exact(GREETING);
    assert_eq!(g.modes, Modes::ALL);
    assert_eq!(g.challenge, arr::<16>("4e389de9bbc7d8693ef6fd3e6055edc2"));
    assert_eq!(g.salt, arr::<16>("3455142a7d429274b30fefab5f3acd05"));
    assert_eq!(g.count, 2048);
    assert_eq!(ServerGreeting::LEN, 64);
}

#[test]
fn set_up_response() {
    let s: SetUpResponse = exact(SETUP);
    assert_eq!(s.mode, Mode::Authenticated);
    assert_eq!(s.key_id_name(), b"alice");
    assert_eq!(s.token[..4], [0x21, 0xd8, 0x64, 0x6b]);
    assert_eq!(s.client_iv, arr::<16>("3fed08ee3746a08a58f219b35eb61ab5"));
    // Open mode as owping sends it.
    let open: SetUpResponse = exact(&format!("00000001{}", "00".repeat(160)));
    assert_eq!(open, SetUpResponse::open());
}

#[test]
fn server_start() {
    let s: ServerStart = exact(SERVER_START);
    assert_eq!(s.accept, AcceptCode::Ok);
    assert_eq!(s.server_iv, arr::<16>("b01229ea08c9b13b5b5bb1a228bc460d"));
    assert_eq!(s.start_time, OwampTime::from_raw(0xeeb2_5d4e_dfcb_5fe5));
}

#[test]
fn request_session_to() {
    let r: RequestSession = exact(REQUEST_TO);
    assert!(!r.conf_sender && r.conf_receiver);
    assert_eq!(r.num_packets, 20);
    assert_eq!((r.sender_port, r.receiver_port), (0x250b, 0));
    assert_eq!(r.sender_address, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(r.receiver_address, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(r.sid, SessionId::default());
    assert_eq!(r.padding_length, 0);
    assert_eq!(r.start_time, OwampTime::from_raw(0xeeb2_5d76_a18b_71b9));
    assert_eq!(r.timeout, Interval::from_raw(0x0000_0002_00cb_3a26));
    assert_eq!(r.type_p, TypeP::BEST_EFFORT);
    assert_eq!(r.hmac, arr::<16>("823a9cb6a3bf399618bfb6f7117fc3c1"));
    assert_eq!(
        r.slots,
        [Slot {
            kind: SlotKind::Exponential,
            mean: Interval::from_raw(0x0ccc_cccc)
        }]
    );
    assert_eq!(r.slots_hmac, arr::<16>("c999d26376f01834beb7fa08660b2855"));
    assert_eq!(r.encoded_len(), 144);
    assert_eq!(RequestSession::wire_len(1), Ok(144));
    assert_eq!(&r.fixed_part()[..], &h(REQUEST_TO)[..112]);
}

#[test]
fn request_session_from() {
    let r: RequestSession = exact(REQUEST_FROM);
    assert!(r.conf_sender && !r.conf_receiver);
    assert_eq!((r.sender_port, r.receiver_port), (0, 0x26cb));
    assert_eq!(r.sid, sid("7f000001eeb25d75aad2242473ceffd8"));
}

#[test]
fn request_session_ipv6_and_dscp() {
    let mut r = RequestSession::parse(&h(REQUEST_TO)).unwrap();
    r.sender_address = IpAddr::V6(Ipv6Addr::LOCALHOST);
    r.receiver_address = IpAddr::V6("2001:db8::1".parse().unwrap());
    r.type_p = TypeP::from_dscp(46).unwrap();
    let b = r.to_bytes();
    assert_eq!(b[1], 6);
    assert_eq!(b[16..32], Ipv6Addr::LOCALHOST.octets());
    assert_eq!(b[84..88], [0x2e, 0, 0, 0]);
    assert_eq!(RequestSession::parse(&b).unwrap(), r);
    // A v4 address in a v6 request travels IPv4-mapped.
    r.receiver_address = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    let back = RequestSession::parse(&r.to_bytes()).unwrap();
    assert_eq!(
        back.receiver_address,
        IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped())
    );
}

#[test]
fn accept_session() {
    let a: AcceptSession = exact(ACCEPT);
    assert_eq!(a.accept, AcceptCode::Ok);
    assert_eq!(a.port, 0x227c);
    assert_eq!(a.sid, sid("7f000001eeb25d75aa8c79f6d940f8da"));
    assert_eq!(a.hmac, arr::<16>("a869719082861711c234e42220e903fa"));
}

#[test]
fn start_sessions_and_ack() {
    let s: StartSessions = exact(START_SESSIONS);
    assert_eq!(s.hmac, arr::<16>("3d9f0fe99f757eae3b74fdcff0c3b4b0"));
    let a: StartAck = exact(START_ACK);
    assert_eq!(a.accept, AcceptCode::Ok);
    assert_eq!(a.hmac, arr::<16>("59d71254d7f93b54e69762fc1cd0e9b1"));
}

#[test]
fn stop_sessions() {
    let s: StopSessions = exact(STOP_SERVER);
    assert_eq!(s.accept, AcceptCode::Ok);
    assert_eq!(
        s.sessions,
        [SessionStop {
            sid: sid("7f000001eeb25d75aad2242473ceffd8"),
            next_seqno: 20,
            skip_ranges: vec![]
        }]
    );
    assert_eq!(s.hmac, arr::<16>("0760fb379787835438602345c0ff9e7c"));
    assert_eq!(s.encoded_len(), 64);
}

#[test]
fn stop_sessions_skip_range_padding() {
    // One range fills the second block exactly; two need 8 octets of padding.
    let mut s = StopSessions::parse(&h(STOP_SERVER)).unwrap();
    s.sessions[0].skip_ranges = vec![SkipRange { first: 3, last: 4 }];
    let b = s.to_bytes();
    assert_eq!(b.len(), 16 + 32 + 16);
    assert_eq!(hex::encode(&b[32..48]), "00000014000000010000000300000004");
    s.sessions[0]
        .skip_ranges
        .push(SkipRange { first: 9, last: 9 });
    let b = s.to_bytes();
    assert_eq!(b.len(), 16 + 48 + 16);
    assert_eq!(b[56..64], [0; 8]);
    assert_eq!(StopSessions::parse(&b).unwrap(), s);
    assert_eq!(framing::stop_sessions(&b), Ok(Frame::Complete { len: 80 }));
    // Non-zero padding is refused.
    let mut bad = b.clone();
    bad[60] = 1;
    assert_eq!(
        StopSessions::parse(&bad),
        Err(WireError::Mbz {
            message: "Stop-Sessions",
            offset: 60
        })
    );
}

#[test]
fn fetch_session() {
    let f: FetchSession = exact(FETCH_SESSION);
    assert_eq!((f.begin_seq, f.end_seq), (0, u32::MAX));
    assert_eq!(f.sid, sid("7f000001eeb25d75aa8c79f6d940f8da"));
    assert_eq!(f.hmac, arr::<16>("4b4737402687124b1da5698a50cbfae2"));
}

#[test]
fn fetch_ack() {
    let f: FetchAck = exact(FETCH_ACK);
    assert_eq!(f.accept, AcceptCode::Ok);
    assert_eq!(f.finished, owamp_core::wire::Finished::Normal);
    assert_eq!(
        (f.next_seqno, f.num_skip_ranges, f.num_records),
        (20, 0, 20)
    );
    assert_eq!(f.hmac, arr::<16>("1803a71fac0fcfab0881024479f31bef"));
    // Nothing to skip (16 octets of HMAC), 500 octets of records padded to 512, an HMAC.
    assert_eq!(f.data_len(), Ok(16 + 512 + 16));
    let refused = FetchAck {
        accept: AcceptCode::Failure,
        ..f
    };
    assert_eq!(refused.data_len(), Ok(0));
}

#[test]
fn fetch_data_layout() {
    let rec = DataRecord {
        seq: 7,
        send_error: ErrorEstimate::from_raw(1),
        send_time: OwampTime::from_raw(10),
        recv_error: ErrorEstimate::from_raw(1),
        recv_time: OwampTime::ZERO,
        ttl: 255,
    };
    let d = FetchData {
        skip_ranges: vec![SkipRange { first: 1, last: 2 }],
        skip_ranges_hmac: [1; 16],
        records: vec![rec, rec],
        records_hmac: [2; 16],
    };
    let b = d.to_bytes();
    assert_eq!(b.len(), FetchData::wire_len(1, 2).unwrap());
    assert_eq!(b.len(), 16 + 16 + 64 + 16);
    assert_eq!(b[8..16], [0; 8]);
    assert_eq!(b[32 + 50..96], [0; 14]);
    assert_eq!(FetchData::parse(&b, 1, 2).unwrap(), d);
    assert!(d.records[0].is_lost());
    let mut bad = b.clone();
    bad[90] = 1;
    assert!(matches!(
        FetchData::parse(&bad, 1, 2),
        Err(WireError::Mbz { offset: 90, .. })
    ));
    assert!(matches!(
        FetchData::parse(&b, 1, 3),
        Err(WireError::Truncated { .. })
    ));
}

#[test]
fn test_packets() {
    let b = h(TEST_AUTH);
    for mode in [Mode::Authenticated, Mode::Encrypted] {
        let (p, pad) = TestPacket::parse(mode, &b).unwrap();
        assert_eq!(p.seq, 0);
        assert_eq!(p.timestamp, OwampTime::from_raw(0xeeb2_5d76_a46c_00da));
        assert_eq!(p.error_estimate.raw(), 1);
        assert_eq!(p.hmac, arr::<16>("ff156f51ca4a68aea8bb8b7c6679b7b1"));
        assert!(pad.is_empty());
        assert_eq!(p.to_bytes(mode, pad), b);
    }
    let o = h(TEST_OPEN);
    let (p, pad) = TestPacket::parse(Mode::Open, &o).unwrap();
    assert_eq!(p.seq, 5);
    assert_eq!(p.timestamp, OwampTime::from_raw(0xeeb2_5d70_140f_98fa));
    assert_eq!(p.to_bytes(Mode::Open, pad), o);
    // Padding is handed back as is.
    let mut padded = o.clone();
    padded.extend([0xab; 5]);
    let (_, pad) = TestPacket::parse(Mode::Open, &padded).unwrap();
    assert_eq!(pad, [0xab; 5]);
    assert_eq!(p.to_bytes(Mode::Open, pad), padded);
}

#[test]
fn test_packet_negatives() {
    let b = h(TEST_AUTH);
    assert!(matches!(
        TestPacket::parse(Mode::Authenticated, &b[..47]),
        Err(WireError::Truncated { needed: 48, .. })
    ));
    assert!(matches!(
        TestPacket::parse(Mode::Open, &b[..13]),
        Err(WireError::Truncated { needed: 14, .. })
    ));
    for off in [4, 15, 26, 31] {
        let mut bad = b.clone();
        bad[off] = 0x80;
        assert_eq!(
            TestPacket::parse(Mode::Encrypted, &bad),
            Err(WireError::Mbz {
                message: "test packet",
                offset: off
            })
        );
    }
    // A zero multiplier marks a corrupt packet (RFC 4656 4.1.2).
    let mut bad = b.clone();
    bad[25] = 0;
    assert!(matches!(
        TestPacket::parse(Mode::Authenticated, &bad),
        Err(WireError::Invalid {
            field: "error estimate",
            offset: 24,
            ..
        })
    ));
}

/// Every fixed-size message rejects one octet too few and one too many.
#[test]
fn wrong_lengths() {
    fn check<T: ControlMessage + core::fmt::Debug>(hex: &str) {
        let b = h(hex);
        let short = T::parse(&b[..b.len() - 1]);
        assert!(
            matches!(short, Err(WireError::Truncated { .. })),
            "{}: {short:?}",
            T::NAME
        );
        let mut long = b.clone();
        long.push(0);
        let long = T::parse(&long);
        assert!(
            matches!(long, Err(WireError::Length { .. })),
            "{}: {long:?}",
            T::NAME
        );
        assert!(T::parse(&[]).is_err());
    }
    check::<ServerGreeting>(GREETING);
    check::<SetUpResponse>(SETUP);
    check::<ServerStart>(SERVER_START);
    check::<RequestSession>(REQUEST_TO);
    check::<AcceptSession>(ACCEPT);
    check::<StartSessions>(START_SESSIONS);
    check::<StartAck>(START_ACK);
    check::<StopSessions>(STOP_SERVER);
    check::<FetchSession>(FETCH_SESSION);
    check::<FetchAck>(FETCH_ACK);
}

/// Setting any MBZ octet is refused, with the offset reported.
#[test]
fn non_zero_mbz() {
    fn check<T: ControlMessage + core::fmt::Debug>(hex: &str, offsets: &[usize]) {
        for &off in offsets {
            let mut b = h(hex);
            assert_eq!(b[off] & 0xf0, 0, "{} fixture octet {off}", T::NAME);
            b[off] |= 0x10;
            assert_eq!(
                T::parse(&b).unwrap_err(),
                WireError::Mbz {
                    message: T::NAME,
                    offset: off
                },
                "{} octet {off}",
                T::NAME
            );
        }
    }
    check::<ServerGreeting>(GREETING, &[52, 57, 63]);
    check::<ServerStart>(SERVER_START, &[0, 14, 40, 47]);
    // 1: the MBZ half of the IPVN octet; 20 and 47: after the IPv4 addresses.
    check::<RequestSession>(REQUEST_TO, &[1, 20, 31, 36, 47, 88, 95]);
    check::<AcceptSession>(ACCEPT, &[1, 20, 31]);
    check::<StartSessions>(START_SESSIONS, &[1, 15]);
    check::<StartAck>(START_ACK, &[1, 15]);
    check::<StopSessions>(STOP_SERVER, &[2, 3, 8, 15, 40, 47]);
    check::<FetchSession>(FETCH_SESSION, &[1, 7]);
    check::<FetchAck>(FETCH_ACK, &[2, 3]);
    // Slot MBZ is reported with the slot's own name.
    let mut b = h(REQUEST_TO);
    b[113] = 1;
    assert_eq!(
        RequestSession::parse(&b),
        Err(WireError::Mbz {
            message: "schedule slot",
            offset: 113
        })
    );
}

#[test]
fn bad_mode_and_modes_word() {
    for m in [0u32, 3, 5, 7, 8, 0x100] {
        let mut b = h(SETUP);
        b[..4].copy_from_slice(&m.to_be_bytes());
        assert!(
            matches!(
                SetUpResponse::parse(&b),
                Err(WireError::Invalid { field: "mode", .. })
            ),
            "mode {m}"
        );
    }
    // Unknown Modes bits in the greeting are tolerated and kept.
    let mut b = h(GREETING);
    b[12] = 0x80;
    b[15] = 0x02;
    let g = ServerGreeting::parse(&b).unwrap();
    assert_eq!(g.modes.raw(), 0x8000_0002);
    assert_eq!(g.modes.iter().collect::<Vec<_>>(), [Mode::Authenticated]);
    assert_eq!(g.to_bytes(), b);
    // An empty Modes word (server refuses) is still a valid greeting.
    b[12] = 0;
    b[15] = 0;
    assert!(ServerGreeting::parse(&b).unwrap().modes.is_empty());
}

#[test]
fn bad_accept_codes() {
    fn check<T: ControlMessage + core::fmt::Debug>(hex: &str, off: usize) {
        for v in [6u8, 7, 0x80, 0xff] {
            let mut b = h(hex);
            b[off] = v;
            assert_eq!(
                T::parse(&b).unwrap_err(),
                WireError::Invalid {
                    message: T::NAME,
                    field: "accept code",
                    offset: off,
                    value: u64::from(v)
                }
            );
        }
        for v in 0u8..=5 {
            let mut b = h(hex);
            b[off] = v;
            assert!(T::parse(&b).is_ok(), "{} accept {v}", T::NAME);
        }
    }
    check::<ServerStart>(SERVER_START, 15);
    check::<AcceptSession>(ACCEPT, 0);
    check::<StartAck>(START_ACK, 0);
    check::<StopSessions>(STOP_SERVER, 1);
    check::<FetchAck>(FETCH_ACK, 0);
}

#[test]
fn bad_commands_ipvn_and_slot_types() {
    for (hex, name) in [
        (REQUEST_TO, "Request-Session"),
        (START_SESSIONS, "Start-Sessions"),
        (STOP_SERVER, "Stop-Sessions"),
        (FETCH_SESSION, "Fetch-Session"),
    ] {
        let mut b = h(hex);
        b[0] = 5;
        let e = match name {
            "Request-Session" => RequestSession::parse(&b).map(|_| ()),
            "Start-Sessions" => StartSessions::parse(&b).map(|_| ()),
            "Stop-Sessions" => StopSessions::parse(&b).map(|_| ()),
            _ => FetchSession::parse(&b).map(|_| ()),
        };
        assert!(
            matches!(
                e,
                Err(WireError::Invalid {
                    field: "command",
                    ..
                })
            ),
            "{name}"
        );
    }
    for ipvn in [0u8, 5, 7, 0xf] {
        let mut b = h(REQUEST_TO);
        b[1] = ipvn;
        assert!(matches!(
            RequestSession::parse(&b),
            Err(WireError::Invalid { field: "IPVN", .. })
        ));
    }
    let mut b = h(REQUEST_TO);
    b[112] = 2;
    assert!(matches!(
        RequestSession::parse(&b),
        Err(WireError::Invalid {
            field: "slot type",
            offset: 112,
            ..
        })
    ));
    b[112] = 1;
    assert_eq!(
        RequestSession::parse(&b).unwrap().slots[0].kind,
        SlotKind::Fixed
    );
    // Conf-Sender and Conf-Receiver: any non-zero octet means set.
    let mut b = h(REQUEST_TO);
    b[2] = 7;
    assert!(RequestSession::parse(&b).unwrap().conf_sender);
}

#[test]
fn oversize_counts() {
    // A slot count that does not match the length given.
    let mut b = h(REQUEST_TO);
    b[7] = 2;
    assert!(matches!(
        RequestSession::parse(&b),
        Err(WireError::Truncated { needed: 160, .. })
    ));
    // Slot counts beyond the limit, in the message and in the framing helper.
    b[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    let too_many = WireError::TooMany {
        message: "Request-Session",
        field: "number of schedule slots",
        count: u64::from(u32::MAX),
        max: u64::from(RequestSession::MAX_SLOTS),
    };
    assert_eq!(RequestSession::parse(&b), Err(too_many.clone()));
    assert_eq!(framing::request_session(&b[..16]), Err(too_many));
    b[4..8].copy_from_slice(&RequestSession::MAX_SLOTS.to_be_bytes());
    assert_eq!(
        framing::request_session(&b[..16]),
        Ok(Frame::Complete {
            len: 112 + 16 * (1 << 16) + 16
        })
    );

    // Stop-Sessions: too many sessions, too many skip ranges, counts beyond the bytes.
    let mut s = h(STOP_SERVER);
    s[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        StopSessions::parse(&s),
        Err(WireError::TooMany {
            field: "number of sessions",
            ..
        })
    ));
    assert!(matches!(
        framing::stop_sessions(&s),
        Err(WireError::TooMany { .. })
    ));
    s[4..8].copy_from_slice(&2u32.to_be_bytes());
    assert!(matches!(
        StopSessions::parse(&s),
        Err(WireError::Truncated { .. })
    ));
    let mut s = h(STOP_SERVER);
    s[36..40].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        StopSessions::parse(&s),
        Err(WireError::TooMany {
            field: "number of skip ranges",
            ..
        })
    ));
    assert!(matches!(
        framing::stop_sessions(&s),
        Err(WireError::TooMany { .. })
    ));
    s[36..40].copy_from_slice(&1000u32.to_be_bytes());
    assert!(matches!(
        StopSessions::parse(&s),
        Err(WireError::Truncated { .. })
    ));

    // Fetch data: counts beyond the bytes at hand.
    assert!(matches!(
        FetchData::parse(&[0u8; 32], 0, u32::MAX),
        Err(WireError::Truncated { .. })
    ));
    assert!(matches!(
        FetchData::parse(&[0u8; 32], u32::MAX, 0),
        Err(WireError::TooMany { .. })
    ));
    assert!(FetchData::parse(&[0u8; 32], 0, 0).is_ok());
}

#[test]
fn framing_steps() {
    let req = h(REQUEST_TO);
    assert_eq!(
        framing::request_session(&[]),
        Ok(Frame::Incomplete { need: 16 })
    );
    assert_eq!(
        framing::request_session(&req[..3]),
        Ok(Frame::Incomplete { need: 16 })
    );
    assert_eq!(
        framing::request_session(&req[..16]),
        Ok(Frame::Complete { len: 144 })
    );
    assert_eq!(
        framing::client_request(&req[..16]),
        Ok(Frame::Complete { len: 144 })
    );
    assert_eq!(
        framing::client_request(&h(START_SESSIONS)[..16]),
        Ok(Frame::Complete { len: 32 })
    );
    assert_eq!(
        framing::client_request(&h(FETCH_SESSION)[..16]),
        Ok(Frame::Complete { len: 48 })
    );
    assert!(framing::client_request(&[0u8; 16]).is_err());
    assert!(framing::client_request(&[5u8; 16]).is_err());

    let stop = h(STOP_SERVER);
    assert_eq!(
        framing::stop_sessions(&stop[..8]),
        Ok(Frame::Incomplete { need: 16 })
    );
    assert_eq!(
        framing::stop_sessions(&stop[..16]),
        Ok(Frame::Incomplete { need: 48 })
    );
    assert_eq!(
        framing::stop_sessions(&stop[..48]),
        Ok(Frame::Complete { len: 64 })
    );
    assert_eq!(
        framing::client_request(&stop[..48]),
        Ok(Frame::Complete { len: 64 })
    );
    // No sessions: header and HMAC.
    let mut empty = stop[..16].to_vec();
    empty[7] = 0;
    assert_eq!(
        framing::stop_sessions(&empty),
        Ok(Frame::Complete { len: 32 })
    );

    let ack = h(FETCH_ACK);
    assert_eq!(
        framing::fetch_response(&ack[..16]),
        Ok(Frame::Incomplete { need: 32 })
    );
    assert_eq!(
        framing::fetch_response(&ack),
        Ok(Frame::Incomplete { need: 48 })
    );
    let mut with_req = ack.clone();
    with_req.extend(&req[..16]);
    assert_eq!(
        framing::fetch_response(&with_req),
        Ok(Frame::Complete {
            len: 32 + 144 + 16 + 512 + 16
        })
    );
    let mut refused = ack.clone();
    refused[0] = 3;
    assert_eq!(
        framing::fetch_response(&refused),
        Ok(Frame::Complete { len: 32 })
    );
}

#[test]
fn command_numbers() {
    for c in 0u8..=255 {
        match ControlMessageKind::from_command(c) {
            Some(k) => assert_eq!(k.command(), c),
            None => assert!(!(1..=4).contains(&c)),
        }
    }
}

#[test]
fn fetch_ack_keeps_the_three_finished_values_and_refuses_others() {
    let mut b =
        hex::decode("0001000000000014000000000000001400000000000000000000000000000000").unwrap();
    for (octet, f) in [
        (0, Finished::No),
        (1, Finished::Normal),
        (2, Finished::Incomplete),
    ] {
        b[1] = octet;
        let ack = FetchAck::parse(&b).unwrap();
        assert_eq!(ack.finished, f);
        assert_eq!(ack.to_bytes().to_vec(), b);
    }
    b[1] = 3;
    assert!(matches!(
        FetchAck::parse(&b),
        Err(WireError::Invalid {
            field: "Finished",
            offset: 1,
            ..
        })
    ));
}
