//! The built-in vectors: hand-built OWAMP-Control messages laid out as in RFC 4656, each with
//! the framing and checks they must pass, and broken ones with the exact error they must
//! produce.
//!
//! The TWAMP vectors (RFC 5357) are in `vectors/twamp.rs`: recorded twampd/twping exchanges
//! altered in one place and fed to our TWAMP server core, and broken TWAMP messages and test
//! packets given to the parsers.
//!
//! To add vectors, write a function returning `Vec<Vector>` and add it to [`builtin`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use owamp_core::time::{ErrorEstimate, Interval, OwampTime};
use owamp_core::wire::{
    AcceptCode, AcceptSession, DataRecord, FetchAck, FetchData, FetchSession, Mode, Modes,
    RequestSession, ServerGreeting, ServerStart, SessionId, SessionStop, SetUpResponse, SkipRange,
    Slot, SlotKind, StartAck, StartSessions, StopSessions, TestPacket, TypeP, WireError,
};

use crate::frame::{frame, Bad, Context, Framed, MsgKind};
use crate::runner::Vector;

mod twamp;

/// Every built-in vector, in a stable order.
pub fn builtin() -> Vec<Vector> {
    let mut v = Vec::new();
    v.extend(message_vectors());
    v.extend(negative_vectors());
    v.extend(schedule_vectors());
    v.extend(secure_vectors());
    v.extend(twamp::vectors());
    v
}

/// Message builders, field by field (RFC 4656 3.1-3.9).
pub mod build {
    /// The Challenge the builders use: c0 c1 ... cf.
    pub const CHALLENGE: [u8; 16] = seq16(0xc0);
    /// The Salt the builders use: 50 51 ... 5f.
    pub const SALT: [u8; 16] = seq16(0x50);

    /// 16 consecutive octet values from `first`.
    pub const fn seq16(first: u8) -> [u8; 16] {
        let mut a = [0u8; 16];
        let mut i = 0;
        while i < 16 {
            a[i] = first.wrapping_add(i as u8);
            i += 1;
        }
        a
    }

    /// Server-Greeting: Unused 12, Modes, Challenge 16, Salt 16, Count, MBZ 12.
    pub fn server_greeting(modes: u32, count: u32) -> Vec<u8> {
        let mut b = vec![0u8; 12];
        b.extend_from_slice(&modes.to_be_bytes());
        b.extend_from_slice(&CHALLENGE);
        b.extend_from_slice(&SALT);
        b.extend_from_slice(&count.to_be_bytes());
        b.extend_from_slice(&[0; 12]);
        b
    }

    /// Set-Up-Response: Mode, KeyID 80 (NUL-padded), Token 64, Client-IV 16.
    pub fn set_up_response(mode: u32, key_id: &str) -> Vec<u8> {
        let mut b = mode.to_be_bytes().to_vec();
        let mut k = key_id.as_bytes().to_vec();
        k.resize(80, 0);
        b.extend(k);
        let fill = if mode == 1 { 0 } else { 0x7b };
        b.extend_from_slice(&[fill; 64]);
        b.extend_from_slice(&[fill; 16]);
        b
    }

    /// Server-Start: MBZ 15, Accept, Server-IV 16, Start-Time 8, MBZ 8.
    pub fn server_start(accept: u8, iv: [u8; 16], start_time: u64) -> Vec<u8> {
        let mut b = vec![0u8; 15];
        b.push(accept);
        b.extend_from_slice(&iv);
        b.extend_from_slice(&start_time.to_be_bytes());
        b.extend_from_slice(&[0; 8]);
        b
    }

    /// Request-Session with `slots` (type, mean), both HMACs zero, sender address 192.0.2.1
    /// and receiver address 192.0.2.2 (or 2001:db8::1 and 2001:db8::2 when `ipvn` is 6).
    pub fn request_session(
        ipvn: u8,
        conf_sender: u8,
        conf_receiver: u8,
        packets: u32,
        ports: (u16, u16),
        slots: &[(u8, u64)],
    ) -> Vec<u8> {
        let (sender_port, receiver_port) = ports;
        let mut b = vec![1, ipvn, conf_sender, conf_receiver];
        b.extend_from_slice(&(slots.len() as u32).to_be_bytes());
        b.extend_from_slice(&packets.to_be_bytes());
        b.extend_from_slice(&sender_port.to_be_bytes());
        b.extend_from_slice(&receiver_port.to_be_bytes());
        for last in [1u8, 2] {
            let mut a = [0u8; 16];
            if ipvn == 6 {
                a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
                a[15] = last;
            } else {
                a[..4].copy_from_slice(&[192, 0, 2, last]);
            }
            b.extend_from_slice(&a);
        }
        b.extend_from_slice(&super::SID); // SID
        b.extend_from_slice(&0u32.to_be_bytes()); // padding length
        b.extend_from_slice(&0xeeb2_5d6f_ea72_8631u64.to_be_bytes()); // start time
        b.extend_from_slice(&0x0000_0002_0005_2d67u64.to_be_bytes()); // timeout
        b.extend_from_slice(&0u32.to_be_bytes()); // Type-P
        b.extend_from_slice(&[0; 8]); // MBZ
        b.extend_from_slice(&[0; 16]); // HMAC
        for &(kind, mean) in slots {
            b.push(kind);
            b.extend_from_slice(&[0; 7]);
            b.extend_from_slice(&mean.to_be_bytes());
        }
        b.extend_from_slice(&[0; 16]); // HMAC
        b
    }

    /// Accept-Session: Accept, MBZ, Port, SID 16, MBZ 12, HMAC 16.
    pub fn accept_session(accept: u8, port: u16, sid: [u8; 16]) -> Vec<u8> {
        let mut b = vec![accept, 0];
        b.extend_from_slice(&port.to_be_bytes());
        b.extend_from_slice(&sid);
        b.extend_from_slice(&[0; 28]);
        b
    }

    /// Start-Sessions: 2, MBZ 15, HMAC 16.
    pub fn start_sessions() -> Vec<u8> {
        let mut b = vec![2];
        b.extend_from_slice(&[0; 31]);
        b
    }

    /// Start-Ack: Accept, MBZ 15, HMAC 16.
    pub fn start_ack(accept: u8) -> Vec<u8> {
        let mut b = vec![accept];
        b.extend_from_slice(&[0; 31]);
        b
    }

    /// One session description of a Stop-Sessions: SID, Next Seqno, skip ranges.
    pub type SessionDescription<'a> = ([u8; 16], u32, &'a [(u32, u32)]);

    /// Stop-Sessions with one description per session.
    pub fn stop_sessions(accept: u8, sessions: &[SessionDescription<'_>]) -> Vec<u8> {
        let mut b = vec![3, accept, 0, 0];
        b.extend_from_slice(&(sessions.len() as u32).to_be_bytes());
        b.extend_from_slice(&[0; 8]);
        for (sid, next, skips) in sessions {
            b.extend_from_slice(sid);
            b.extend_from_slice(&next.to_be_bytes());
            b.extend_from_slice(&(skips.len() as u32).to_be_bytes());
            for (first, last) in *skips {
                b.extend_from_slice(&first.to_be_bytes());
                b.extend_from_slice(&last.to_be_bytes());
            }
            while b.len() % 16 != 0 {
                b.push(0);
            }
        }
        b.extend_from_slice(&[0; 16]);
        b
    }

    /// Fetch-Session: 4, MBZ 7, Begin Seq, End Seq, SID 16, HMAC 16.
    pub fn fetch_session(begin: u32, end: u32, sid: [u8; 16]) -> Vec<u8> {
        let mut b = vec![4, 0, 0, 0, 0, 0, 0, 0];
        b.extend_from_slice(&begin.to_be_bytes());
        b.extend_from_slice(&end.to_be_bytes());
        b.extend_from_slice(&sid);
        b.extend_from_slice(&[0; 16]);
        b
    }

    /// Fetch-Ack: Accept, Finished, MBZ 2, Next Seqno, Skip Ranges, Records, HMAC 16.
    pub fn fetch_ack(accept: u8, finished: u8, next: u32, skips: u32, records: u32) -> Vec<u8> {
        let mut b = vec![accept, finished, 0, 0];
        for v in [next, skips, records] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(&[0; 16]);
        b
    }
}

/// The SID the builders use.
pub const SID: [u8; 16] = [
    0xc0, 0, 2, 2, 0xee, 0xb2, 0x5d, 0x6e, 0xf6, 0x42, 0x17, 0xd2, 0xe7, 0xf3, 0xe7, 0x51,
];

/// A raw HMAC field value for the A and E mode vectors (the wire layer carries it as is).
const HMAC: [u8; 16] = build::seq16(0xa0);

fn ctx(clear: bool, offered: Option<u32>) -> Context {
    Context {
        clear,
        offered_modes: offered,
        counts: (0, 0),
    }
}

/// A vector: `bytes` framed as `kind` must give `want`.
fn expect_frame(name: String, kind: MsgKind, bytes: Vec<u8>, c: Context, want: Framed) -> Vector {
    Vector::new(name, move || {
        let got = frame(kind, &bytes, &c);
        if got == want {
            Ok(())
        } else {
            Err(format!("{kind}: framed as {got:?}, want {want:?}"))
        }
    })
}

/// A vector: `bytes` must frame as one whole `kind` message and parse to `want`.
fn expect_parse<T>(
    name: String,
    kind: MsgKind,
    bytes: Vec<u8>,
    c: Context,
    parse: fn(&[u8]) -> Result<T, WireError>,
    want: T,
) -> Vector
where
    T: PartialEq + std::fmt::Debug + Send + Sync + 'static,
{
    Vector::new(name, move || {
        match frame(kind, &bytes, &c) {
            Framed::Ok(n) if n == bytes.len() => {}
            other => {
                return Err(format!(
                    "{kind}: framed as {other:?}, want Ok({})",
                    bytes.len()
                ))
            }
        }
        let got = parse(&bytes).map_err(|e| format!("{kind}: {e}"))?;
        if got == want {
            Ok(())
        } else {
            Err(format!("{kind}: parsed as {got:?}, want {want:?}"))
        }
    })
}

/// A vector: parsing `bytes` must fail with exactly `want`.
fn expect_error<T: std::fmt::Debug>(
    name: String,
    bytes: Vec<u8>,
    parse: impl Fn(&[u8]) -> Result<T, WireError> + Send + Sync + 'static,
    want: WireError,
) -> Vector {
    Vector::new(name, move || match parse(&bytes) {
        Err(e) if e == want => Ok(()),
        Err(e) => Err(format!("failed with `{e}`, want `{want}`")),
        Ok(v) => Err(format!("parsed as {v:?}, want `{want}`")),
    })
}

fn wire_mode(word: u32) -> Mode {
    match word {
        1 => Mode::Open,
        2 => Mode::Authenticated,
        _ => Mode::Encrypted,
    }
}

/// One well-formed message of each type, in each mode, with its expected fields.
fn message_vectors() -> Vec<Vector> {
    use build::*;
    let mut v = Vec::new();
    for (word, name) in [(1u32, "open"), (2, "authenticated"), (4, "encrypted")] {
        let clear = word == 1;
        let mode = wire_mode(word);
        let hmac = if clear { [0; 16] } else { HMAC };
        let offered = Modes::from_raw(7);
        v.push(expect_parse(
            format!("message/server-greeting/{name}"),
            MsgKind::ServerGreeting,
            server_greeting(word | 1, 2048),
            ctx(clear, None),
            ServerGreeting::parse,
            ServerGreeting {
                modes: Modes::from_raw(word | 1),
                challenge: CHALLENGE,
                salt: SALT,
                count: 2048,
            },
        ));
        let key_id = if clear { "" } else { "alice" };
        let mut kid = [0u8; 80];
        kid[..key_id.len()].copy_from_slice(key_id.as_bytes());
        let fill = if clear { 0 } else { 0x7b };
        v.push(expect_parse(
            format!("message/set-up-response/{name}"),
            MsgKind::SetUpResponse,
            set_up_response(word, key_id),
            ctx(clear, Some(offered.raw())),
            SetUpResponse::parse,
            SetUpResponse {
                mode,
                key_id: kid,
                token: [fill; 64],
                client_iv: [fill; 16],
            },
        ));
        // In A and E modes the last block (Start-Time, MBZ) is ciphertext: the framing checks
        // the clear part only; the expected fields are those of the decrypted message.
        let iv = if clear { [0; 16] } else { seq16(0x11) };
        let start = 0xeeb2_5d4e_dfcb_5fe5;
        let plain = server_start(0, iv, start);
        let mut on_wire = plain.clone();
        if !clear {
            on_wire[32..48].copy_from_slice(&seq16(0xe0));
            v.push(expect_frame(
                format!("frame/server-start/{name}-ciphertext-tail"),
                MsgKind::ServerStart,
                on_wire,
                ctx(false, Some(7)),
                Framed::Ok(48),
            ));
        }
        v.push(expect_parse(
            format!("message/server-start/{name}"),
            MsgKind::ServerStart,
            plain,
            ctx(true, Some(7)),
            ServerStart::parse,
            ServerStart {
                accept: AcceptCode::Ok,
                server_iv: iv,
                start_time: OwampTime::from_raw(start),
            },
        ));
        let mut rs = request_session(4, 0, 1, 20, (8864, 0), &[(0, 0x0ccc_cccc)]);
        rs[96..112].copy_from_slice(&hmac);
        rs[128..144].copy_from_slice(&hmac);
        v.push(expect_parse(
            format!("message/request-session/{name}"),
            MsgKind::RequestSession,
            rs,
            ctx(true, None),
            RequestSession::parse,
            RequestSession {
                conf_sender: false,
                conf_receiver: true,
                num_packets: 20,
                sender_port: 8864,
                receiver_port: 0,
                sender_address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
                receiver_address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
                sid: SessionId(SID),
                padding_length: 0,
                start_time: OwampTime::from_raw(0xeeb2_5d6f_ea72_8631),
                timeout: Interval::from_raw(0x0000_0002_0005_2d67),
                type_p: TypeP(0),
                hmac,
                slots: vec![Slot {
                    kind: SlotKind::Exponential,
                    mean: Interval::from_raw(0x0ccc_cccc),
                }],
                slots_hmac: hmac,
            },
        ));
        let mut a = accept_session(0, 8811, SID);
        a[32..48].copy_from_slice(&hmac);
        v.push(expect_parse(
            format!("message/accept-session/{name}"),
            MsgKind::AcceptSession,
            a,
            ctx(true, None),
            AcceptSession::parse,
            AcceptSession {
                accept: AcceptCode::Ok,
                port: 8811,
                sid: SessionId(SID),
                hmac,
            },
        ));
        let mut m = start_sessions();
        m[16..].copy_from_slice(&hmac);
        v.push(expect_parse(
            format!("message/start-sessions/{name}"),
            MsgKind::StartSessions,
            m,
            ctx(true, None),
            StartSessions::parse,
            StartSessions { hmac },
        ));
        let mut m = start_ack(0);
        m[16..].copy_from_slice(&hmac);
        v.push(expect_parse(
            format!("message/start-ack/{name}"),
            MsgKind::StartAck,
            m,
            ctx(true, None),
            StartAck::parse,
            StartAck {
                accept: AcceptCode::Ok,
                hmac,
            },
        ));
        let mut m = stop_sessions(0, &[(SID, 20, &[(3, 5)])]);
        let n = m.len();
        m[n - 16..].copy_from_slice(&hmac);
        v.push(expect_parse(
            format!("message/stop-sessions/{name}"),
            MsgKind::StopSessions,
            m,
            ctx(true, None),
            StopSessions::parse,
            StopSessions {
                accept: AcceptCode::Ok,
                sessions: vec![SessionStop {
                    sid: SessionId(SID),
                    next_seqno: 20,
                    skip_ranges: vec![SkipRange { first: 3, last: 5 }],
                }],
                hmac,
            },
        ));
        let mut m = fetch_session(0, 0xffff_ffff, SID);
        m[32..].copy_from_slice(&hmac);
        v.push(expect_parse(
            format!("message/fetch-session/{name}"),
            MsgKind::FetchSession,
            m,
            ctx(true, None),
            FetchSession::parse,
            FetchSession {
                begin_seq: 0,
                end_seq: 0xffff_ffff,
                sid: SessionId(SID),
                hmac,
            },
        ));
        let mut m = fetch_ack(0, 1, 20, 1, 2);
        m[16..].copy_from_slice(&hmac);
        v.push(expect_parse(
            format!("message/fetch-ack/{name}"),
            MsgKind::FetchAck,
            m,
            ctx(true, None),
            FetchAck::parse,
            FetchAck {
                accept: AcceptCode::Ok,
                finished: owamp_core::wire::Finished::Normal,
                next_seqno: 20,
                num_skip_ranges: 1,
                num_records: 2,
                hmac,
            },
        ));
        // Fetch data for that Fetch-Ack: one skip range padded, HMAC, two records padded, HMAC.
        let mut d = Vec::new();
        d.extend_from_slice(&7u32.to_be_bytes());
        d.extend_from_slice(&9u32.to_be_bytes());
        d.extend_from_slice(&[0; 8]);
        d.extend_from_slice(&hmac);
        let recs = [
            (
                0u32,
                0xeeb2_5d6f_ed38_151au64,
                0xeeb2_5d6f_ed39_0000u64,
                255u8,
            ),
            (1, 0xeeb2_5d6f_f715_1e75, 0, 64),
        ];
        for (seq, sent, recv, ttl) in recs {
            // RFC 4656 3.8: Seq, Send Error Estimate, Receive Error Estimate, Send
            // Timestamp, Receive Timestamp, TTL.
            d.extend_from_slice(&seq.to_be_bytes());
            d.extend_from_slice(&1u16.to_be_bytes());
            d.extend_from_slice(&1u16.to_be_bytes());
            d.extend_from_slice(&sent.to_be_bytes());
            d.extend_from_slice(&recv.to_be_bytes());
            d.push(ttl);
        }
        d.extend_from_slice(&[0; 14]);
        d.extend_from_slice(&hmac);
        let want = FetchData {
            skip_ranges: vec![SkipRange { first: 7, last: 9 }],
            skip_ranges_hmac: hmac,
            records: recs
                .iter()
                .map(|&(seq, sent, recv, ttl)| DataRecord {
                    seq,
                    send_time: OwampTime::from_raw(sent),
                    send_error: ErrorEstimate::from_raw(1),
                    recv_time: OwampTime::from_raw(recv),
                    recv_error: ErrorEstimate::from_raw(1),
                    ttl,
                })
                .collect(),
            records_hmac: hmac,
        };
        let dc = d.clone();
        v.push(Vector::new(
            format!("message/fetch-data/{name}"),
            move || {
                let c = Context {
                    clear: true,
                    offered_modes: None,
                    counts: (1, 2),
                };
                match frame(MsgKind::FetchData, &dc, &c) {
                    Framed::Ok(112) => {}
                    other => return Err(format!("framed as {other:?}, want Ok(112)")),
                }
                let got = FetchData::parse(&dc, 1, 2).map_err(|e| e.to_string())?;
                if got == want {
                    Ok(())
                } else {
                    Err(format!("parsed as {got:?}, want {want:?}"))
                }
            },
        ));
        // Test packets (RFC 4656 4.1.2), decrypted: open 14 octets + padding; A and E 48.
        let mut p = 5u32.to_be_bytes().to_vec();
        if !clear {
            p.extend_from_slice(&[0; 12]);
        }
        p.extend_from_slice(&0xeeb2_5d6f_ed38_151au64.to_be_bytes());
        p.extend_from_slice(&0x0001u16.to_be_bytes());
        if !clear {
            p.extend_from_slice(&[0; 6]);
            p.extend_from_slice(&HMAC);
        }
        p.extend_from_slice(&[0xee; 3]); // padding
        let want = TestPacket {
            seq: 5,
            timestamp: OwampTime::from_raw(0xeeb2_5d6f_ed38_151a),
            error_estimate: ErrorEstimate::from_raw(1),
            hmac,
        };
        v.push(Vector::new(
            format!("message/test-packet/{name}"),
            move || {
                let (got, pad) = TestPacket::parse(mode, &p).map_err(|e| e.to_string())?;
                if got != want || pad != [0xee; 3] {
                    return Err(format!(
                        "parsed as {got:?} + {pad:02x?}, want {want:?} + [ee; 3]"
                    ));
                }
                Ok(())
            },
        ));
    }
    // Variants that change the length or the address family.
    v.push(expect_parse(
        "message/request-session/from-three-slots-ipv6".into(),
        MsgKind::RequestSession,
        request_session(
            6,
            1,
            0,
            100,
            (0, 9472),
            &[(0, 1 << 32), (1, 1 << 31), (0, 1)],
        ),
        ctx(true, None),
        |b| RequestSession::parse(b).map(|r| (r.sender_address, r.receiver_port, r.slots)),
        (
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            9472,
            vec![
                Slot {
                    kind: SlotKind::Exponential,
                    mean: Interval::from_raw(1 << 32),
                },
                Slot {
                    kind: SlotKind::Fixed,
                    mean: Interval::from_raw(1 << 31),
                },
                Slot {
                    kind: SlotKind::Exponential,
                    mean: Interval::from_raw(1),
                },
            ],
        ),
    ));
    for (name, sessions, len) in [
        ("no-sessions", vec![], 32),
        ("one-session", vec![(SID, 20u32, &[][..])], 64),
        (
            "two-sessions-three-skip-ranges",
            vec![(SID, 20, &[(3, 5), (7, 7), (9, 12)][..]), (SID, 0, &[][..])],
            16 + 48 + 32 + 16,
        ),
    ] {
        v.push(expect_frame(
            format!("frame/stop-sessions/{name}"),
            MsgKind::StopSessions,
            build::stop_sessions(0, &sessions),
            ctx(true, None),
            Framed::Ok(len),
        ));
    }
    v
}

fn with(mut m: Vec<u8>, at: usize, val: u8) -> Vec<u8> {
    m[at] = val;
    m
}

/// Broken messages and the exact error each must produce.
fn negative_vectors() -> Vec<Vector> {
    use build::*;
    let mut v = Vec::new();
    let rs = || request_session(4, 0, 1, 20, (1, 0), &[(0, 1)]);
    // Truncated: one octet short.
    macro_rules! truncated {
        ($name:literal, $t:ty, $msg:expr, $label:literal) => {{
            let mut m: Vec<u8> = $msg;
            let need = m.len();
            m.pop();
            v.push(expect_error(
                format!("negative/truncated/{}", $name),
                m,
                <$t>::parse,
                WireError::Truncated {
                    message: $label,
                    needed: need,
                    got: need - 1,
                },
            ));
        }};
    }
    truncated!(
        "server-greeting",
        ServerGreeting,
        server_greeting(7, 2048),
        "Server-Greeting"
    );
    truncated!(
        "set-up-response",
        SetUpResponse,
        set_up_response(1, ""),
        "Set-Up-Response"
    );
    truncated!(
        "server-start",
        ServerStart,
        server_start(0, [0; 16], 1),
        "Server-Start"
    );
    truncated!("request-session", RequestSession, rs(), "Request-Session");
    truncated!(
        "accept-session",
        AcceptSession,
        accept_session(0, 1, SID),
        "Accept-Session"
    );
    truncated!(
        "start-sessions",
        StartSessions,
        start_sessions(),
        "Start-Sessions"
    );
    truncated!("start-ack", StartAck, start_ack(0), "Start-Ack");
    truncated!(
        "fetch-session",
        FetchSession,
        fetch_session(0, 1, SID),
        "Fetch-Session"
    );
    truncated!("fetch-ack", FetchAck, fetch_ack(0, 1, 0, 0, 0), "Fetch-Ack");
    // Framing asks for the whole message when a prefix is given.
    v.push(expect_frame(
        "negative/truncated/stop-sessions-framing".into(),
        MsgKind::StopSessions,
        stop_sessions(0, &[(SID, 1, &[(0, 0)][..])])[..40].to_vec(),
        ctx(true, None),
        Framed::NeedMore(64),
    ));
    v.push(expect_frame(
        "negative/truncated/request-session-framing".into(),
        MsgKind::RequestSession,
        rs()[..120].to_vec(),
        ctx(true, None),
        Framed::NeedMore(144),
    ));
    v.push(expect_error(
        "negative/truncated/test-packet-authenticated".into(),
        vec![0; 47],
        |b| TestPacket::parse(Mode::Authenticated, b).map(|(p, _)| p),
        WireError::Truncated {
            message: "test packet",
            needed: 48,
            got: 47,
        },
    ));
    v.push(expect_error(
        "negative/truncated/test-packet-open".into(),
        vec![0; 13],
        |b| TestPacket::parse(Mode::Open, b).map(|(p, _)| p),
        WireError::Truncated {
            message: "test packet",
            needed: 14,
            got: 13,
        },
    ));
    // MBZ octets.
    macro_rules! mbz {
        ($name:literal, $t:ty, $msg:expr, $at:expr, $label:literal) => {{
            v.push(expect_error(
                format!("negative/mbz/{}", $name),
                with($msg, $at, 1),
                <$t>::parse,
                WireError::Mbz {
                    message: $label,
                    offset: $at,
                },
            ));
        }};
    }
    mbz!(
        "server-greeting",
        ServerGreeting,
        server_greeting(1, 0),
        60,
        "Server-Greeting"
    );
    mbz!(
        "server-start",
        ServerStart,
        server_start(0, [0; 16], 0),
        7,
        "Server-Start"
    );
    mbz!(
        "server-start-tail",
        ServerStart,
        server_start(0, [0; 16], 0),
        44,
        "Server-Start"
    );
    mbz!(
        "request-session",
        RequestSession,
        rs(),
        90,
        "Request-Session"
    );
    mbz!(
        "request-session-ipv4-address",
        RequestSession,
        rs(),
        20,
        "Request-Session"
    );
    mbz!(
        "accept-session",
        AcceptSession,
        accept_session(0, 1, SID),
        25,
        "Accept-Session"
    );
    mbz!(
        "start-sessions",
        StartSessions,
        start_sessions(),
        15,
        "Start-Sessions"
    );
    mbz!("start-ack", StartAck, start_ack(0), 1, "Start-Ack");
    mbz!(
        "stop-sessions",
        StopSessions,
        stop_sessions(0, &[]),
        12,
        "Stop-Sessions"
    );
    mbz!(
        "stop-sessions-padding",
        StopSessions,
        stop_sessions(0, &[(SID, 1, &[][..])]),
        16 + 24,
        "Stop-Sessions"
    );
    mbz!(
        "fetch-session",
        FetchSession,
        fetch_session(0, 1, SID),
        5,
        "Fetch-Session"
    );
    mbz!(
        "fetch-ack",
        FetchAck,
        fetch_ack(0, 0, 0, 0, 0),
        3,
        "Fetch-Ack"
    );
    v.push(expect_error(
        "negative/mbz/test-packet-authenticated".into(),
        with(vec![0; 48], 30, 1),
        |b| TestPacket::parse(Mode::Authenticated, b).map(|(p, _)| p),
        WireError::Mbz {
            message: "test packet",
            offset: 30,
        },
    ));
    // Modes.
    for word in [0u32, 3, 8] {
        v.push(expect_error(
            format!("negative/mode/set-up-response-{word}"),
            set_up_response(word, ""),
            SetUpResponse::parse,
            WireError::Invalid {
                message: "Set-Up-Response",
                field: "mode",
                offset: 0,
                value: u64::from(word),
            },
        ));
    }
    v.push(expect_frame(
        "negative/mode/set-up-response-not-offered".into(),
        MsgKind::SetUpResponse,
        set_up_response(4, "alice"),
        ctx(false, Some(3)),
        Framed::Bad(Bad {
            offset: 0,
            why: "Set-Up-Response: mode 4 was not offered (Server-Greeting Modes 0x3)".into(),
        }),
    ));
    // Oversize counts: reported from the header, before the octets they announce arrive.
    let mut m = rs();
    m[4..8].copy_from_slice(&0xffff_ffffu32.to_be_bytes());
    v.push(expect_frame(
        "negative/count/request-session-slots".into(),
        MsgKind::RequestSession,
        m[..16].to_vec(),
        ctx(true, None),
        Framed::Bad(Bad {
            offset: 4,
            why: "Request-Session: number of schedule slots 4294967295 exceeds the limit of 65536"
                .into(),
        }),
    ));
    let mut m = stop_sessions(0, &[]);
    m[4..8].copy_from_slice(&0x0100_0000u32.to_be_bytes());
    v.push(expect_frame(
        "negative/count/stop-sessions-sessions".into(),
        MsgKind::StopSessions,
        m[..16].to_vec(),
        ctx(true, None),
        Framed::Bad(Bad {
            offset: 4,
            why: "Stop-Sessions: number of sessions 16777216 exceeds the limit of 4096".into(),
        }),
    ));
    let mut m = stop_sessions(0, &[(SID, 1, &[][..])]);
    m[36..40].copy_from_slice(&0xffff_ffffu32.to_be_bytes());
    v.push(expect_error(
        "negative/count/stop-sessions-skip-ranges".into(),
        m[..48].to_vec(),
        owamp_core::wire::framing::stop_sessions,
        WireError::TooMany {
            message: "Stop-Sessions",
            field: "number of skip ranges",
            count: 0xffff_ffff,
            max: 1 << 20,
        },
    ));
    v.push(expect_error(
        "negative/count/fetch-data-skip-ranges".into(),
        Vec::new(),
        |_| FetchData::wire_len(0xffff_ffff, 0),
        WireError::TooMany {
            message: "skip ranges",
            field: "number of skip ranges",
            count: 0xffff_ffff,
            max: 1 << 20,
        },
    ));
    // Accept codes (RFC 4656 3.3 defines 0-5).
    macro_rules! accept {
        ($name:literal, $t:ty, $msg:expr, $at:expr, $label:literal) => {{
            v.push(expect_error(
                format!("negative/accept/{}", $name),
                with($msg, $at, 6),
                <$t>::parse,
                WireError::Invalid {
                    message: $label,
                    field: "accept code",
                    offset: $at,
                    value: 6,
                },
            ));
        }};
    }
    accept!(
        "server-start",
        ServerStart,
        server_start(0, [0; 16], 0),
        15,
        "Server-Start"
    );
    accept!(
        "accept-session",
        AcceptSession,
        accept_session(0, 0, [0; 16]),
        0,
        "Accept-Session"
    );
    accept!("start-ack", StartAck, start_ack(0), 0, "Start-Ack");
    accept!(
        "stop-sessions",
        StopSessions,
        stop_sessions(0, &[]),
        1,
        "Stop-Sessions"
    );
    accept!(
        "fetch-ack",
        FetchAck,
        fetch_ack(0, 0, 0, 0, 0),
        0,
        "Fetch-Ack"
    );
    // Other invalid values.
    v.push(expect_error(
        "negative/value/request-session-ipvn-5".into(),
        request_session(5, 0, 1, 20, (1, 0), &[(0, 1)]),
        RequestSession::parse,
        WireError::Invalid {
            message: "Request-Session",
            field: "IPVN",
            offset: 1,
            value: 5,
        },
    ));
    v.push(expect_error(
        "negative/value/request-session-slot-type-2".into(),
        request_session(4, 0, 1, 20, (1, 0), &[(2, 1)]),
        RequestSession::parse,
        WireError::Invalid {
            message: "schedule slot",
            field: "slot type",
            offset: 112,
            value: 2,
        },
    ));
    v.push(expect_error(
        "negative/value/test-packet-zero-multiplier".into(),
        {
            let mut p = vec![0u8; 14];
            p[12] = 0x80; // S set, multiplier 0
            p
        },
        |b| TestPacket::parse(Mode::Open, b).map(|(p, _)| p),
        WireError::Invalid {
            message: "test packet",
            field: "error estimate",
            offset: 12,
            value: 0x8000,
        },
    ));
    v.push(expect_frame(
        "negative/value/unknown-command-5".into(),
        MsgKind::Command,
        with(start_sessions(), 0, 5),
        ctx(true, None),
        Framed::Bad(Bad {
            offset: 0,
            why: "control request: invalid command at offset 0: 0x5".into(),
        }),
    ));
    v
}

/// Hand-built authenticated and encrypted exchanges, for the decryption and HMAC vectors.
pub mod secure_build {
    use owamp_core::crypto::{
        derive_key, seal_token, ControlEncryptor, ControlHmac, SecureMode, SessionKeys,
        TestPacketCrypto,
    };

    use super::build::{self, seq16, CHALLENGE, SALT};
    use crate::trace::{Direction, Event, Mode, Trace};

    /// The passphrase of the hand-built exchanges.
    pub const PASSPHRASE: &[u8] = b"conformance vectors";
    /// The Client-IV.
    pub const CLIENT_IV: [u8; 16] = seq16(0x60);
    /// The Server-IV.
    pub const SERVER_IV: [u8; 16] = seq16(0x70);
    /// The SID the server makes (receiver 192.0.2.2, a time, 4 random octets).
    pub const SERVER_SID: [u8; 16] = [
        192, 0, 2, 2, 0xee, 0xb2, 0x5d, 0x6e, 0xf6, 0x42, 0x17, 0xd2, 0x12, 0x34, 0x56, 0x78,
    ];

    /// The session keys the client chose.
    pub fn keys() -> SessionKeys {
        let mut hmac = [0u8; 32];
        hmac[..16].copy_from_slice(&seq16(0x80));
        hmac[16..].copy_from_slice(&seq16(0x90));
        SessionKeys {
            aes: seq16(0x30),
            hmac,
        }
    }

    /// An exchange in `mode` (authenticated or encrypted): Server-Greeting, Set-Up-Response,
    /// Server-Start, one Request-Session (the client sends 20 packets), its Accept-Session and
    /// one test packet. With `cover_server_start` false, the Accept-Session's HMAC leaves out
    /// the last block of Server-Start, which the reference covers. Returns the trace and the
    /// plaintext of both control streams (C>S, S>C).
    pub fn exchange(mode: Mode, cover_server_start: bool) -> (Trace, Vec<u8>, Vec<u8>) {
        let keys = keys();
        let greeting = build::server_greeting(7, 2048);
        let mut setup = mode.word().to_be_bytes().to_vec();
        let mut key_id = b"alice".to_vec();
        key_id.resize(80, 0);
        setup.extend(key_id);
        let derived = derive_key(PASSPHRASE, &SALT, 2048).expect("count 2048 is valid");
        setup.extend_from_slice(&seal_token(&derived, &CHALLENGE, &keys));
        setup.extend_from_slice(&CLIENT_IV);
        let start = build::server_start(0, SERVER_IV, 0xeeb2_5d4e_dfcb_5fe5);
        let request = build::request_session(4, 0, 1, 20, (8864, 0), &[(0, 0x0ccc_cccc)]);
        let accept = build::accept_session(0, 8811, SERVER_SID);

        // C>S: the request's two parts, each followed by its HMAC (RFC 4656 3.5).
        let mut cenc = ControlEncryptor::new(&keys.aes, &CLIENT_IV);
        let mut cmac = ControlHmac::new(&keys.hmac);
        let mut req_plain = request.clone();
        for (from, to) in [(0, 112), (112, req_plain.len())] {
            cmac.update(&req_plain[from..to - 16]);
            let tag = cmac.finish();
            req_plain[to - 16..to].copy_from_slice(&tag);
        }
        let mut req_wire = req_plain.clone();
        cenc.encrypt(&mut req_wire).expect("whole blocks");

        // S>C: the last block of Server-Start starts the chain (and, in the reference, the
        // HMAC of the first Accept-Session).
        let mut senc = ControlEncryptor::new(&keys.aes, &SERVER_IV);
        let mut smac = ControlHmac::new(&keys.hmac);
        let mut start_wire = start.clone();
        if cover_server_start {
            smac.update(&start[32..]);
        }
        senc.encrypt(&mut start_wire[32..]).expect("whole blocks");
        let mut acc_plain = accept.clone();
        smac.update(&acc_plain[..32]);
        let tag = smac.finish();
        acc_plain[32..].copy_from_slice(&tag);
        let mut acc_wire = acc_plain.clone();
        senc.encrypt(&mut acc_wire).expect("whole blocks");

        // One test packet: Seqno 0, Timestamp, Error Estimate 1 (RFC 4656 4.1.2).
        let mut packet = vec![0u8; 48];
        packet[16..24].copy_from_slice(&0xeeb2_5d7d_aac2_df0du64.to_be_bytes());
        packet[24..26].copy_from_slice(&1u16.to_be_bytes());
        let secure = match mode {
            Mode::Encrypted => SecureMode::Encrypted,
            _ => SecureMode::Authenticated,
        };
        TestPacketCrypto::new(secure, &SERVER_SID, &keys)
            .seal(&mut packet)
            .expect("48 octets");

        let text = format!(
            "# mode: {}\n# identity: alice\n# passphrase-hex: {}\n",
            mode.name(),
            hex::encode(PASSPHRASE)
        );
        let mut t = Trace::parse(&text).expect("headers");
        let ctl = |dir, bytes: &[u8]| Event::Control {
            dir,
            bytes: bytes.to_vec(),
            comment: None,
        };
        use Direction::{ClientToServer as C, ServerToClient as S};
        t.events = vec![
            ctl(S, &greeting),
            ctl(C, &setup),
            ctl(S, &start_wire),
            ctl(C, &req_wire),
            ctl(S, &acc_wire),
            Event::Test {
                micros: 1_000_000,
                src: "192.0.2.1:8864".parse().expect("address"),
                dst: "192.0.2.2:8811".parse().expect("address"),
                payload: packet,
                comment: None,
            },
        ];
        let cs = [setup, req_plain].concat();
        let sc = [greeting, start, acc_plain].concat();
        (t, cs, sc)
    }

    /// `t` with octet `at` of event `event` (0-based) XORed with `x`.
    pub fn flip(mut t: Trace, event: usize, at: usize, x: u8) -> Trace {
        match t.events.get_mut(event) {
            Some(Event::Control { bytes, .. }) | Some(Event::Test { payload: bytes, .. }) => {
                if let Some(b) = bytes.get_mut(at) {
                    *b ^= x;
                }
            }
            None => {}
        }
        t
    }
}

/// Decryption and HMAC vectors: hand-built authenticated and encrypted exchanges must decrypt
/// and verify; an altered octet must give the HMAC error, located.
fn secure_vectors() -> Vec<Vector> {
    use crate::secure::{open, Opened};
    use crate::trace::{Direction, Mode};
    use owamp_core::crypto::{
        ControlOpener, ControlSealer, CryptoError, SecureMode, TestPacketCrypto,
    };
    use secure_build::{exchange, flip};

    /// A vector: the trace must check, decrypt and verify (`hmacs` control HMACs, one test
    /// packet) to the plaintext the builder made.
    fn expect_open(
        name: String,
        mode: Mode,
        tweak: fn(crate::trace::Trace) -> crate::trace::Trace,
    ) -> Vector {
        Vector::new(name, move || {
            let (t, cs, sc) = exchange(mode, true);
            let t = tweak(t);
            if let Some(f) = crate::check::check(&t).findings.first() {
                return Err(f.to_string());
            }
            match open(&t, None)? {
                Opened::Unreadable(why) => Err(why),
                Opened::Readable(ex) => {
                    let got = (
                        ex.plain.stream(Direction::ClientToServer),
                        ex.plain.stream(Direction::ServerToClient),
                        ex.hmacs,
                        ex.test_packets,
                    );
                    if got == (cs, sc, 3, 1) {
                        Ok(())
                    } else {
                        Err(format!(
                            "decrypted to {} + {} octets, {} HMACs and {} test packets verified; want the built plaintext, 3 HMACs, 1 packet",
                            got.0.len(),
                            got.1.len(),
                            got.2,
                            got.3
                        ))
                    }
                }
            }
        })
    }

    /// A vector: opening the trace must fail with exactly `want`.
    fn expect_failure(name: String, t: crate::trace::Trace, want: String) -> Vector {
        Vector::new(name, move || match open(&t, None) {
            Err(e) if e == want => Ok(()),
            Err(e) => Err(format!("failed with `{e}`, want `{want}`")),
            Ok(_) => Err(format!("opened, want `{want}`")),
        })
    }

    let mut v = Vec::new();
    for mode in [Mode::Authenticated, Mode::Encrypted] {
        let m = mode.name();
        v.push(expect_open(
            format!("secure/{m}/hand-built-exchange"),
            mode,
            |t| t,
        ));
        let (t, _, _) = exchange(mode, true);
        // Event 3 is the Request-Session. Its second block decrypts to garbage (the first
        // HMAC fails); its third block (the slot) likewise for the second HMAC.
        v.push(expect_failure(
            format!("negative/hmac/{m}/request-session"),
            flip(t.clone(), 3, 21, 0x01),
            "line 7: C>S message 2 (Request-Session), byte 96 (stream offset 260): HMAC verification failed: the HMAC at bytes 96..112 does not match bytes 0..96 as decrypted: the ciphertext was altered or the keys are wrong".into(),
        ));
        v.push(expect_failure(
            format!("negative/hmac/{m}/request-session-slots"),
            flip(t.clone(), 3, 115, 0x40),
            "line 7: C>S message 2 (Request-Session), byte 128 (stream offset 292): HMAC verification failed: the HMAC at bytes 128..144 does not match bytes 112..128 as decrypted: the ciphertext was altered or the keys are wrong".into(),
        ));
        v.push(expect_failure(
            format!("negative/hmac/{m}/accept-session"),
            flip(t.clone(), 4, 3, 0x80),
            "line 8: S>C message 3 (Accept-Session), byte 32 (stream offset 144): HMAC verification failed: the HMAC at bytes 32..48 does not match bytes 0..32 and the last block of Server-Start as decrypted: the ciphertext was altered or the keys are wrong".into(),
        ));
        // RFC 4656 leaves it open; the reference's first Accept-Session HMAC also covers the
        // last block of Server-Start. An HMAC without it must fail.
        v.push(expect_failure(
            format!("negative/hmac/{m}/accept-session-without-server-start-block"),
            exchange(mode, false).0,
            "line 8: S>C message 3 (Accept-Session), byte 32 (stream offset 144): HMAC verification failed: the HMAC at bytes 32..48 does not match bytes 0..32 and the last block of Server-Start as decrypted: the ciphertext was altered or the keys are wrong".into(),
        ));
        v.push(expect_failure(
            format!("negative/hmac/{m}/test-packet"),
            flip(t.clone(), 5, 3, 0x02),
            format!(
                "line 9: test packet 1 (192.0.2.1:8864->192.0.2.2:8811): HMAC verification failed: the HMAC at bytes 32..48 does not match the {} (session {})",
                if mode == Mode::Encrypted {
                    "decrypted first two blocks"
                } else {
                    "decrypted first block"
                },
                hex::encode(secure_build::SERVER_SID)
            ),
        ));
        v.push(expect_failure(
            format!("negative/passphrase/{m}-wrong"),
            crate::trace::Trace::parse(&t.to_text().replace(
                &hex::encode(secure_build::PASSPHRASE),
                &hex::encode(b"another passphrase"),
            ))
            .unwrap_or_default(),
            "the passphrase of the headers does not open the Set-Up-Response Token (the Token does not hold the Greeting's Challenge): wrong passphrase".into(),
        ));
        v.push(expect_failure(
            format!("negative/passphrase/{m}-missing"),
            crate::trace::Trace::parse(&t.to_text().replace(
                &format!("# passphrase-hex: {}\n", hex::encode(secure_build::PASSPHRASE)),
                "",
            ))
            .unwrap_or_default(),
            format!("{m} mode needs the passphrase: add a `# passphrase-hex: <hex>` header (or `# passphrase-hex: unknown` if it is not known)"),
        ));
    }
    // Mode A encrypts and authenticates the first block only: the timestamp (octets 16..24) is
    // not covered, as in the reference. Mode E covers it.
    v.push(expect_open(
        "secure/authenticated/test-packet-timestamp-not-covered".into(),
        Mode::Authenticated,
        |t| flip(t, 5, 20, 0x01),
    ));
    let (t, _, _) = exchange(Mode::Encrypted, true);
    v.push(expect_failure(
        "negative/hmac/encrypted/test-packet-timestamp".into(),
        flip(t, 5, 20, 0x01),
        format!(
            "line 9: test packet 1 (192.0.2.1:8864->192.0.2.2:8811): HMAC verification failed: the HMAC at bytes 32..48 does not match the decrypted first two blocks (session {})",
            hex::encode(secure_build::SERVER_SID)
        ),
    ));
    // The crypto layer's own error for a flipped octet.
    v.push(Vector::new("negative/hmac/control-opener", || {
        let keys = secure_build::keys();
        let mut msg = build::start_sessions();
        ControlSealer::new(&keys, &secure_build::CLIENT_IV)
            .seal(&mut msg)
            .map_err(|e| e.to_string())?;
        for at in [0, 15, 16, 31] {
            let mut m = msg.clone();
            m[at] ^= 0x10;
            let r = ControlOpener::new(&keys, &secure_build::CLIENT_IV).open(&mut m);
            if r != Err(CryptoError::HmacMismatch) {
                return Err(format!("octet {at} flipped: {r:?}, want HmacMismatch"));
            }
        }
        let mut m = msg;
        ControlOpener::new(&keys, &secure_build::CLIENT_IV)
            .open(&mut m)
            .map_err(|e| format!("unaltered: {e}"))
    }));
    for (name, mode) in [
        ("authenticated", SecureMode::Authenticated),
        ("encrypted", SecureMode::Encrypted),
    ] {
        v.push(Vector::new(
            format!("negative/hmac/test-packet-crypto-{name}"),
            move || {
                let c =
                    TestPacketCrypto::new(mode, &secure_build::SERVER_SID, &secure_build::keys());
                let mut p = vec![0u8; 48];
                c.seal(&mut p).map_err(|e| e.to_string())?;
                for at in [0, 15, 32, 47] {
                    let mut q = p.clone();
                    q[at] ^= 0x01;
                    if c.open(&mut q) != Err(CryptoError::HmacMismatch) {
                        return Err(format!("octet {at} flipped: not HmacMismatch"));
                    }
                }
                c.open(&mut p).map_err(|e| format!("unaltered: {e}"))
            },
        ));
    }
    v
}

/// RFC 4656 Appendix B: for four SIDs, the sum of the first 1,000,000 exponential deviates
/// (mean 1, 32.32 fixed point, summed modulo 2^64) that the SID-keyed generator yields.
pub const APPENDIX_B: [(&str, u64); 4] = [
    ("2872979303ab47eeac028dab3829dab2", 0x000f_4479_bd31_7381),
    ("0102030405060708090a0b0c0d0e0f00", 0x000f_4336_8646_6a62),
    ("deadbeefdeadbeefdeadbeefdeadbeef", 0x000f_416c_8884_d2d3),
    ("feed0feed1feed2feed3feed4feed5ab", 0x000f_3f0b_4b41_6ec8),
];

/// The Appendix B sums, one vector each.
fn schedule_vectors() -> Vec<Vector> {
    APPENDIX_B
        .iter()
        .enumerate()
        .map(|(i, &(sid_hex, want))| {
            Vector::new(format!("schedule/appendix-b/{}", i + 1), move || {
                let mut sid = [0u8; 16];
                hex::decode_to_slice(sid_hex, &mut sid).map_err(|e| e.to_string())?;
                let mut g = owamp_core::session::ExpDeviates::new(&SessionId(sid));
                let got = (0..1_000_000).fold(0u64, |acc, _| acc.wrapping_add(g.next_deviate()));
                if got == want {
                    Ok(())
                } else {
                    Err(format!(
                        "SID {sid_hex}: sum of the first 1000000 deviates is {got:#018x}, want {want:#018x}"
                    ))
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_vectors_pass_and_names_are_unique() {
        let vs = builtin();
        let r = crate::runner::run(&vs);
        assert!(r.all_passed(), "{}", r.to_text());
        let mut names: Vec<&str> = vs.iter().map(|v| v.name.as_str()).collect();
        names.sort();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "duplicate vector names");
    }

    #[test]
    fn a_wrong_expectation_fails() {
        let v = expect_frame(
            "x".into(),
            MsgKind::StartAck,
            build::start_ack(0),
            ctx(true, None),
            Framed::Ok(31),
        );
        let r = crate::runner::run(&[v]);
        assert_eq!(r.failed, 1);
        assert!(r.vectors[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("framed as Ok(32)"));
        let v = expect_error(
            "y".into(),
            build::start_ack(0),
            StartAck::parse,
            WireError::Mbz {
                message: "Start-Ack",
                offset: 1,
            },
        );
        let r = crate::runner::run(&[v]);
        assert!(r.vectors[0]
            .reason
            .as_deref()
            .unwrap()
            .starts_with("parsed as"));
    }
}
