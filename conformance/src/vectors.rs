//! The built-in vectors: hand-built OWAMP-Control messages laid out as in RFC 4656, each with
//! the framing and checks they must pass, and broken ones with the exact error they must
//! produce.
//!
//! To add vectors, write a function returning `Vec<Vector>` and add it to [`builtin`].

use crate::frame::{frame, Bad, Context, Framed, MsgKind};
use crate::runner::Vector;

/// Every built-in vector, in a stable order.
pub fn builtin() -> Vec<Vector> {
    let mut v = Vec::new();
    v.extend(framing_vectors());
    v.extend(negative_vectors());
    v.extend(crate::replay::vectors());
    v
}

/// Message builders, field by field (RFC 4656 3.1-3.9).
pub mod build {
    /// Server-Greeting: Unused 12, Modes, Challenge 16, Salt 16, Count, MBZ 12.
    pub fn server_greeting(modes: u32, count: u32) -> Vec<u8> {
        let mut b = vec![0u8; 12];
        b.extend_from_slice(&modes.to_be_bytes());
        b.extend((0..16).map(|i| 0xc0 + i as u8));
        b.extend((0..16).map(|i| 0x50 + i as u8));
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

    /// Request-Session with `slots` (type, mean) and both HMACs zero.
    #[allow(clippy::too_many_arguments)]
    pub fn request_session(
        ipvn: u8,
        conf_sender: u8,
        conf_receiver: u8,
        packets: u32,
        sender_port: u16,
        receiver_port: u16,
        slots: &[(u8, u64)],
    ) -> Vec<u8> {
        let mut b = vec![1, ipvn, conf_sender, conf_receiver];
        b.extend_from_slice(&(slots.len() as u32).to_be_bytes());
        b.extend_from_slice(&packets.to_be_bytes());
        b.extend_from_slice(&sender_port.to_be_bytes());
        b.extend_from_slice(&receiver_port.to_be_bytes());
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&[192, 0, 2, 1]);
        b.extend_from_slice(&a);
        a[3] = 2;
        b.extend_from_slice(&a);
        b.extend_from_slice(&[0; 16]); // SID
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

const SID: [u8; 16] = [
    0xc0, 0, 2, 2, 0xee, 0xb2, 0x5d, 0x6e, 0xf6, 0x42, 0x17, 0xd2, 0xe7, 0xf3, 0xe7, 0x51,
];

fn ctx(clear: bool, offered: Option<u32>, count: u32) -> Context {
    Context {
        clear,
        offered_modes: offered,
        count,
    }
}

/// A vector: `bytes` framed as `kind` must give `want`.
fn expect(name: &str, kind: MsgKind, bytes: Vec<u8>, c: Context, want: Framed) -> Vector {
    Vector::new(name, move || {
        let got = frame(kind, &bytes, &c);
        if got == want {
            Ok(())
        } else {
            Err(format!("{kind}: got {got:?}, want {want:?}"))
        }
    })
}

fn bad(offset: usize, why: &str) -> Framed {
    Framed::Bad(Bad {
        offset,
        why: why.into(),
    })
}

/// One well-formed message of each type, in each mode where its checks differ.
fn framing_vectors() -> Vec<Vector> {
    use build::*;
    let mut v = Vec::new();
    for (mode, name) in [(1u32, "open"), (2, "authenticated"), (4, "encrypted")] {
        let clear = mode == 1;
        v.push(expect(
            &format!("frame/server-greeting/{name}"),
            MsgKind::ServerGreeting,
            server_greeting(mode, 2048),
            ctx(clear, None, 0),
            Framed::Ok(64),
        ));
        v.push(expect(
            &format!("frame/set-up-response/{name}"),
            MsgKind::SetUpResponse,
            set_up_response(mode, if clear { "" } else { "alice" }),
            ctx(clear, Some(7), 0),
            Framed::Ok(164),
        ));
        // In A and E modes the last block (Start-Time, MBZ) is ciphertext: any octets pass.
        let mut ss = server_start(0, [0x11; 16], 0xeeb2_5d4e_dfcb_5fe5);
        if !clear {
            ss[40..48].copy_from_slice(&[0xa5; 8]);
        }
        v.push(expect(
            &format!("frame/server-start/{name}"),
            MsgKind::ServerStart,
            ss,
            ctx(clear, Some(7), 0),
            Framed::Ok(48),
        ));
    }
    v.push(expect(
        "frame/server-start/open-with-encrypted-looking-tail",
        MsgKind::ServerStart,
        {
            let mut ss = server_start(0, [0; 16], 1);
            ss[44] = 0xa5;
            ss
        },
        ctx(true, Some(7), 0),
        bad(44, "MBZ must be zero, is 0xa5"),
    ));
    v.push(expect(
        "frame/request-session/to-one-slot",
        MsgKind::RequestSession,
        request_session(4, 0, 1, 20, 8864, 0, &[(0, 0x0ccc_cccc)]),
        ctx(true, None, 0),
        Framed::Ok(144),
    ));
    v.push(expect(
        "frame/request-session/from-three-slots-ipv6",
        MsgKind::RequestSession,
        request_session(6, 1, 0, 100, 0, 9472, &[(0, 1 << 32), (1, 1 << 31), (0, 1)]),
        ctx(true, None, 0),
        Framed::Ok(112 + 48 + 16),
    ));
    v.push(expect(
        "frame/accept-session",
        MsgKind::AcceptSession,
        accept_session(0, 8811, SID),
        ctx(true, None, 0),
        Framed::Ok(48),
    ));
    v.push(expect(
        "frame/start-sessions",
        MsgKind::StartSessions,
        start_sessions(),
        ctx(true, None, 0),
        Framed::Ok(32),
    ));
    v.push(expect(
        "frame/start-ack",
        MsgKind::StartAck,
        start_ack(0),
        ctx(true, None, 0),
        Framed::Ok(32),
    ));
    for (name, sessions, len) in [
        ("no-sessions", vec![], 32),
        ("one-session", vec![(SID, 20u32, &[][..])], 64),
        ("one-skip-range", vec![(SID, 20, &[(3u32, 5u32)][..])], 64),
        (
            "two-sessions-three-skip-ranges",
            vec![(SID, 20, &[(3, 5), (7, 7), (9, 12)][..]), (SID, 0, &[][..])],
            16 + 48 + 32 + 16,
        ),
    ] {
        v.push(expect(
            &format!("frame/stop-sessions/{name}"),
            MsgKind::StopSessions,
            stop_sessions(0, &sessions),
            ctx(true, None, 0),
            Framed::Ok(len),
        ));
    }
    v.push(expect(
        "frame/fetch-session",
        MsgKind::FetchSession,
        fetch_session(0, 0xffff_ffff, SID),
        ctx(true, None, 0),
        Framed::Ok(48),
    ));
    v.push(expect(
        "frame/fetch-ack",
        MsgKind::FetchAck,
        fetch_ack(0, 1, 20, 0, 20),
        ctx(true, None, 0),
        Framed::Ok(32),
    ));
    v.push(expect(
        "frame/fetch-records/20",
        MsgKind::FetchRecords,
        vec![0; 512 + 16],
        ctx(true, None, 20),
        Framed::Ok(528),
    ));
    v.push(expect(
        "frame/fetch-skip-ranges/3",
        MsgKind::FetchSkipRanges,
        vec![0; 32 + 16],
        ctx(true, None, 3),
        Framed::Ok(48),
    ));
    v
}

/// Broken messages and the exact error each must produce.
fn negative_vectors() -> Vec<Vector> {
    use build::*;
    let mut v = Vec::new();
    // Truncated: every fixed-size message one octet short asks for the full size.
    for (name, kind, msg) in [
        (
            "server-greeting",
            MsgKind::ServerGreeting,
            server_greeting(7, 2048),
        ),
        (
            "set-up-response",
            MsgKind::SetUpResponse,
            set_up_response(1, ""),
        ),
        (
            "server-start",
            MsgKind::ServerStart,
            server_start(0, [0; 16], 1),
        ),
        (
            "request-session",
            MsgKind::RequestSession,
            request_session(4, 0, 1, 20, 1, 0, &[(0, 1)]),
        ),
        (
            "accept-session",
            MsgKind::AcceptSession,
            accept_session(0, 1, SID),
        ),
        ("start-sessions", MsgKind::StartSessions, start_sessions()),
        ("start-ack", MsgKind::StartAck, start_ack(0)),
        (
            "stop-sessions",
            MsgKind::StopSessions,
            stop_sessions(0, &[(SID, 1, &[(0, 0)][..])]),
        ),
        (
            "fetch-session",
            MsgKind::FetchSession,
            fetch_session(0, 1, SID),
        ),
        ("fetch-ack", MsgKind::FetchAck, fetch_ack(0, 1, 0, 0, 0)),
    ] {
        let full = msg.len();
        let mut short = msg;
        short.pop();
        v.push(expect(
            &format!("negative/truncated/{name}"),
            kind,
            short,
            ctx(true, Some(7), 0),
            Framed::NeedMore(full),
        ));
    }
    let with = |mut m: Vec<u8>, at: usize, val: u8| {
        m[at] = val;
        m
    };
    let mbz = "MBZ must be zero, is 0x01";
    for (name, kind, msg, at, why) in [
        (
            "server-greeting",
            MsgKind::ServerGreeting,
            server_greeting(1, 0),
            60,
            mbz,
        ),
        (
            "server-start",
            MsgKind::ServerStart,
            server_start(0, [0; 16], 0),
            7,
            mbz,
        ),
        (
            "request-session",
            MsgKind::RequestSession,
            request_session(4, 0, 1, 20, 1, 0, &[(0, 1)]),
            90,
            mbz,
        ),
        (
            "request-session-ipvn-high-bits",
            MsgKind::RequestSession,
            request_session(0x14, 0, 1, 20, 1, 0, &[(0, 1)]),
            1,
            "MBZ bits above IPVN must be zero, octet is 0x14",
        ),
        (
            "request-session-slot",
            MsgKind::RequestSession,
            request_session(4, 0, 1, 20, 1, 0, &[(0, 1), (1, 1)]),
            112 + 16 + 3,
            "slot 2 MBZ must be zero, is 0x01",
        ),
        (
            "accept-session",
            MsgKind::AcceptSession,
            accept_session(0, 1, SID),
            25,
            mbz,
        ),
        (
            "start-sessions",
            MsgKind::StartSessions,
            start_sessions(),
            15,
            mbz,
        ),
        ("start-ack", MsgKind::StartAck, start_ack(0), 1, mbz),
        (
            "stop-sessions",
            MsgKind::StopSessions,
            stop_sessions(0, &[]),
            12,
            mbz,
        ),
        (
            "stop-sessions-padding",
            MsgKind::StopSessions,
            stop_sessions(0, &[(SID, 1, &[][..])]),
            16 + 24,
            "padding must be zero, is 0x01",
        ),
        (
            "fetch-session",
            MsgKind::FetchSession,
            fetch_session(0, 1, SID),
            5,
            mbz,
        ),
        (
            "fetch-ack",
            MsgKind::FetchAck,
            fetch_ack(0, 0, 0, 0, 0),
            3,
            mbz,
        ),
    ] {
        let mut m = msg;
        if m[at] == 0 {
            m[at] = 1;
        }
        v.push(expect(
            &format!("negative/mbz/{name}"),
            kind,
            m,
            ctx(true, Some(7), 0),
            bad(at, why),
        ));
    }
    // Modes.
    v.push(expect(
        "negative/mode/greeting-unknown-bit",
        MsgKind::ServerGreeting,
        server_greeting(0x17, 2048),
        ctx(true, None, 0),
        bad(12, "Modes 0x00000017 has bits other than 1, 2 and 4"),
    ));
    v.push(expect(
        "negative/mode/greeting-count-below-1024",
        MsgKind::ServerGreeting,
        server_greeting(7, 512),
        ctx(true, None, 0),
        bad(48, "Count 512 is below 1024 (RFC 4656 3.1)"),
    ));
    for (word, why) in [
        (0u32, "Mode 0x00000000 is not exactly one of 1, 2, 4"),
        (3, "Mode 0x00000003 is not exactly one of 1, 2, 4"),
        (8, "Mode 0x00000008 is not exactly one of 1, 2, 4"),
    ] {
        v.push(expect(
            &format!("negative/mode/set-up-response-{word}"),
            MsgKind::SetUpResponse,
            set_up_response(word, ""),
            ctx(true, Some(7), 0),
            bad(0, why),
        ));
    }
    v.push(expect(
        "negative/mode/set-up-response-not-offered",
        MsgKind::SetUpResponse,
        set_up_response(4, "alice"),
        ctx(false, Some(3), 0),
        bad(0, "Mode 4 was not offered (Server-Greeting Modes 0x3)"),
    ));
    // Oversize and zero counts.
    let rs = request_session(4, 0, 1, 20, 1, 0, &[(0, 1)]);
    for (name, count, why) in [
        (
            "request-session-slots",
            0xffff_ffffu32,
            "Number of Schedule Slots 4294967295 exceeds 65536",
        ),
        (
            "request-session-no-slots",
            0,
            "Number of Schedule Slots is 0",
        ),
    ] {
        let mut m = rs.clone();
        m[4..8].copy_from_slice(&count.to_be_bytes());
        v.push(expect(
            &format!("negative/count/{name}"),
            MsgKind::RequestSession,
            m,
            ctx(true, None, 0),
            bad(4, why),
        ));
    }
    let mut m = stop_sessions(0, &[]);
    m[4..8].copy_from_slice(&0x0100_0000u32.to_be_bytes());
    v.push(expect(
        "negative/count/stop-sessions-sessions",
        MsgKind::StopSessions,
        m,
        ctx(true, None, 0),
        bad(4, "Number of Sessions 16777216 exceeds 65536"),
    ));
    let mut m = stop_sessions(0, &[(SID, 1, &[][..])]);
    m[36..40].copy_from_slice(&0xffff_ffffu32.to_be_bytes());
    v.push(expect(
        "negative/count/stop-sessions-skip-ranges",
        MsgKind::StopSessions,
        m,
        ctx(true, None, 0),
        bad(36, "Number of Skip Ranges 4294967295 exceeds 1048576"),
    ));
    v.push(expect(
        "negative/count/fetch-ack-records",
        MsgKind::FetchAck,
        fetch_ack(0, 1, 0, 0, 0xffff_ffff),
        ctx(true, None, 0),
        bad(12, "Number of Records 4294967295 exceeds 67108864"),
    ));
    // Accept codes (RFC 4656 3.3 defines 0-5).
    for (name, kind, msg, at) in [
        (
            "server-start",
            MsgKind::ServerStart,
            server_start(6, [0; 16], 0),
            15,
        ),
        (
            "accept-session",
            MsgKind::AcceptSession,
            accept_session(6, 0, [0; 16]),
            0,
        ),
        ("start-ack", MsgKind::StartAck, start_ack(6), 0),
        (
            "stop-sessions",
            MsgKind::StopSessions,
            stop_sessions(6, &[]),
            1,
        ),
        ("fetch-ack", MsgKind::FetchAck, fetch_ack(6, 0, 0, 0, 0), 0),
    ] {
        v.push(expect(
            &format!("negative/accept/{name}"),
            kind,
            with(msg, at, 0xff),
            ctx(true, None, 0),
            bad(at, "Accept value 255 is not defined (0-5, RFC 4656 3.3)"),
        ));
    }
    // Other invalid values.
    v.push(expect(
        "negative/value/request-session-ipvn-5",
        MsgKind::RequestSession,
        request_session(5, 0, 1, 20, 1, 0, &[(0, 1)]),
        ctx(true, None, 0),
        bad(1, "IPVN 5 is neither 4 nor 6"),
    ));
    v.push(expect(
        "negative/value/request-session-conf-sender-2",
        MsgKind::RequestSession,
        request_session(4, 2, 1, 20, 1, 0, &[(0, 1)]),
        ctx(true, None, 0),
        bad(2, "Conf-Sender 2 is neither 0 nor 1"),
    ));
    v.push(expect(
        "negative/value/request-session-slot-type-2",
        MsgKind::RequestSession,
        request_session(4, 0, 1, 20, 1, 0, &[(2, 1)]),
        ctx(true, None, 0),
        bad(
            112,
            "slot 1 type 2 is neither 0 (exponential) nor 1 (fixed)",
        ),
    ));
    v.push(expect(
        "negative/value/fetch-ack-finished-2",
        MsgKind::FetchAck,
        fetch_ack(0, 2, 0, 0, 0),
        ctx(true, None, 0),
        bad(1, "Finished 2 is neither 0 nor 1"),
    ));
    v.push(expect(
        "negative/value/unknown-command-5",
        MsgKind::Command,
        with(start_sessions(), 0, 5),
        ctx(true, None, 0),
        bad(
            0,
            "unknown command type 5 (want 1 Request-Session, 2 Start-Sessions, 3 Stop-Sessions or 4 Fetch-Session)",
        ),
    ));
    v
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
        let v = expect(
            "x",
            MsgKind::StartAck,
            build::start_ack(0),
            ctx(true, None, 0),
            Framed::Ok(31),
        );
        let r = crate::runner::run(&[v]);
        assert_eq!(r.failed, 1);
        assert!(r.vectors[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("got Ok(32)"));
    }
}
