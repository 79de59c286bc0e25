//! Splits the control streams of the perfSONAR reference traces into messages with the framing
//! helpers, in protocol order, and checks that every message parses and re-encodes byte for
//! byte. Open mode uses the capture as is; authenticated and encrypted modes use the decrypted
//! streams of the `.plain.trace` files.

use std::net::{IpAddr, Ipv4Addr};

use owamp_core::time::Interval;
use owamp_core::time::OwampTime;
use owamp_core::wire::{
    framing, AcceptCode, AcceptSession, ControlMessageKind, FetchAck, FetchData, FetchSession,
    Frame, Mode, Modes, RequestSession, ServerGreeting, ServerStart, SetUpResponse, SlotKind,
    StartAck, StartSessions, StopSessions, TestPacket,
};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/traces/reference/");

struct Trace {
    c2s: Vec<u8>,
    s2c: Vec<u8>,
    /// Test packet payloads (plaintext in the files used here).
    tests: Vec<Vec<u8>>,
}

fn load(name: &str) -> Trace {
    let text = std::fs::read_to_string(format!("{DIR}{name}")).unwrap();
    let mut t = Trace {
        c2s: Vec::new(),
        s2c: Vec::new(),
        tests: Vec::new(),
    };
    for line in text.lines() {
        let mut f = line.split_whitespace();
        match f.next() {
            Some("C>S") => t.c2s.extend(hex::decode(f.next().unwrap()).unwrap()),
            Some("S>C") => t.s2c.extend(hex::decode(f.next().unwrap()).unwrap()),
            // T <time> <src>-><dst> <hex> [# comment]
            Some("T") => t.tests.push(hex::decode(f.nth(2).unwrap()).unwrap()),
            _ => {}
        }
    }
    t
}

/// A cursor over one direction's byte stream that hands out messages.
struct Stream<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Stream<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    fn rest(&self) -> &'a [u8] {
        &self.bytes[self.pos..]
    }

    fn take(&mut self, len: usize) -> &'a [u8] {
        let m = &self.rest()[..len];
        self.pos += len;
        m
    }

    /// Drives a framing function the way a block reader would: offer only the octets the
    /// function asked for, until it knows the length.
    fn take_framed(
        &mut self,
        f: fn(&[u8]) -> Result<Frame, owamp_core::wire::WireError>,
    ) -> &'a [u8] {
        let mut have = 16.min(self.rest().len());
        loop {
            match f(&self.rest()[..have]).unwrap() {
                Frame::Complete { len } => return self.take(len),
                Frame::Incomplete { need } => {
                    assert!(need > have, "framing must ask for more octets");
                    assert_eq!(need % 16, 0);
                    assert!(need <= self.rest().len(), "stream ends early");
                    have = need;
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.pos == self.bytes.len()
    }
}

/// Parses with `parse`, then checks the encoding equals the input.
fn round_trip<T>(
    bytes: &[u8],
    parse: fn(&[u8]) -> Result<T, owamp_core::wire::WireError>,
    enc: fn(&T) -> Vec<u8>,
) -> T {
    let v = parse(bytes).unwrap();
    assert_eq!(hex::encode(enc(&v)), hex::encode(bytes));
    v
}

struct Seen {
    mode: Mode,
    requests: Vec<RequestSession>,
    accepts: Vec<AcceptSession>,
}

fn check_client_stream(t: &Trace, want_mode: Mode) -> Seen {
    let mut s = Stream::new(&t.c2s);
    let setup = round_trip(
        s.take(SetUpResponse::LEN),
        SetUpResponse::parse,
        SetUpResponse::to_bytes,
    );
    assert_eq!(setup.mode, want_mode);
    if want_mode == Mode::Open {
        assert_eq!(setup.key_id_name(), b"");
    } else {
        assert_eq!(setup.key_id_name(), b"alice");
    }

    let mut kinds = Vec::new();
    let mut requests = Vec::new();
    while !s.is_empty() {
        let kind = ControlMessageKind::from_command(s.rest()[0]).unwrap();
        kinds.push(kind);
        let msg = s.take_framed(framing::client_request);
        match kind {
            ControlMessageKind::RequestSession => {
                requests.push(round_trip(
                    msg,
                    RequestSession::parse,
                    RequestSession::to_bytes,
                ));
            }
            ControlMessageKind::StartSessions => {
                round_trip(msg, StartSessions::parse, StartSessions::to_bytes);
            }
            ControlMessageKind::StopSessions => {
                let stop = round_trip(msg, StopSessions::parse, StopSessions::to_bytes);
                assert_eq!(stop.accept, AcceptCode::Ok);
                // The client stops the one session it sent.
                assert_eq!(stop.sessions.len(), 1);
                assert_eq!(stop.sessions[0].next_seqno, 20);
                assert!(stop.sessions[0].skip_ranges.is_empty());
            }
            ControlMessageKind::FetchSession => {
                let f = round_trip(msg, FetchSession::parse, FetchSession::to_bytes);
                assert_eq!((f.begin_seq, f.end_seq), (0, u32::MAX));
            }
        }
    }
    type K = ControlMessageKind;
    assert_eq!(
        kinds,
        [
            K::RequestSession,
            K::RequestSession,
            K::StartSessions,
            K::StopSessions,
            K::FetchSession
        ]
    );

    for r in &requests {
        assert_eq!(r.ipvn(), 4);
        assert_eq!(r.sender_address, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(r.receiver_address, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(r.num_packets, 20);
        assert_eq!(r.slots.len(), 1);
        assert_eq!(r.slots[0].kind, SlotKind::Exponential);
        assert_eq!(r.slots[0].mean, Interval::from_raw(0x0ccc_cccc));
        assert_eq!(r.padding_length, 0);
        assert_eq!(r.type_p.dscp(), Some(0));
        assert!(r.conf_sender != r.conf_receiver);
        let t = r.timeout.as_secs_f64();
        assert!((2.0..2.1).contains(&t), "timeout {t}");
    }
    // "to" direction: the server receives; "from": the server sends and the client gave a SID.
    assert!(requests[0].conf_receiver && requests[0].sid.0 == [0; 16]);
    assert!(requests[1].conf_sender && requests[1].sid.0 != [0; 16]);
    Seen {
        mode: setup.mode,
        requests,
        accepts: Vec::new(),
    }
}

fn check_server_stream(t: &Trace, seen: &mut Seen) {
    let mut s = Stream::new(&t.s2c);
    let g = round_trip(
        s.take(ServerGreeting::LEN),
        ServerGreeting::parse,
        ServerGreeting::to_bytes,
    );
    assert_eq!(g.modes, Modes::ALL);
    assert_eq!(g.count, 2048);
    let start = round_trip(
        s.take(ServerStart::LEN),
        ServerStart::parse,
        ServerStart::to_bytes,
    );
    assert_eq!(start.accept, AcceptCode::Ok);
    assert_eq!(start.start_time, OwampTime::from_raw(0xeeb2_5d4e_dfcb_5fe5));
    assert_eq!(start.server_iv == [0; 16], seen.mode == Mode::Open);

    for req in &seen.requests {
        let a = round_trip(
            s.take(AcceptSession::LEN),
            AcceptSession::parse,
            AcceptSession::to_bytes,
        );
        assert_eq!(a.accept, AcceptCode::Ok);
        assert_ne!(a.port, 0);
        if req.sid.0 != [0; 16] {
            assert_eq!(a.sid, req.sid);
        }
        seen.accepts.push(a);
    }
    let ack = round_trip(s.take(StartAck::LEN), StartAck::parse, StartAck::to_bytes);
    assert_eq!(ack.accept, AcceptCode::Ok);

    let stop = round_trip(
        s.take_framed(framing::stop_sessions),
        StopSessions::parse,
        StopSessions::to_bytes,
    );
    // The server stops the session it sent: the "from" session.
    assert_eq!(stop.sessions.len(), 1);
    assert_eq!(stop.sessions[0].sid, seen.requests[1].sid);
    assert_eq!(stop.sessions[0].next_seqno, 20);

    // Fetch-Ack, the stored Request-Session, skip ranges and records.
    let whole = s.take_framed(framing::fetch_response);
    let (ack, rest) = whole.split_at(FetchAck::LEN);
    let fa = round_trip(ack, FetchAck::parse, FetchAck::to_bytes);
    assert_eq!(fa.accept, AcceptCode::Ok);
    assert_eq!(fa.finished, owamp_core::wire::Finished::Normal);
    assert_eq!(
        (fa.next_seqno, fa.num_skip_ranges, fa.num_records),
        (20, 0, 20)
    );
    let rs_len = framing::request_session(rest)
        .unwrap()
        .complete_len()
        .unwrap();
    let (stored, data) = rest.split_at(rs_len);
    let stored = round_trip(stored, RequestSession::parse, RequestSession::to_bytes);
    // The stored request is the "to" session, completed with the server's port and SID.
    assert_eq!(stored.sid, seen.accepts[0].sid);
    assert_eq!(stored.receiver_port, seen.accepts[0].port);
    assert_eq!(stored.sender_port, seen.requests[0].sender_port);
    assert_eq!(data.len(), fa.data_len().unwrap());
    let fd = FetchData::parse(data, fa.num_skip_ranges, fa.num_records).unwrap();
    assert_eq!(hex::encode(fd.to_bytes()), hex::encode(data));
    assert_eq!(fd.records.len(), 20);
    for (i, r) in fd.records.iter().enumerate() {
        assert_eq!(r.seq, i as u32);
        assert!(!r.is_lost());
        assert!(r.recv_time > r.send_time);
        assert_eq!(r.ttl, 255);
        assert!(!r.send_error.synchronized());
    }
    assert!(s.is_empty(), "{} octets left", s.rest().len());
}

fn check_test_packets(t: &Trace, mode: Mode) {
    assert_eq!(t.tests.len(), 40);
    for p in &t.tests {
        let (pkt, padding) = TestPacket::parse(mode, p).unwrap();
        assert!(padding.is_empty());
        assert!(pkt.seq < 20);
        assert_eq!(pkt.error_estimate.raw(), 0x0001);
        assert_eq!(pkt.to_bytes(mode, padding), *p);
    }
}

#[test]
fn open_mode_trace() {
    let t = load("a_open.trace");
    let mut seen = check_client_stream(&t, Mode::Open);
    check_server_stream(&t, &mut seen);
    check_test_packets(&t, Mode::Open);
}

#[test]
fn authenticated_mode_trace() {
    let t = load("b_auth.plain.trace");
    let mut seen = check_client_stream(&t, Mode::Authenticated);
    check_server_stream(&t, &mut seen);
    check_test_packets(&t, Mode::Authenticated);
}

#[test]
fn encrypted_mode_trace() {
    let t = load("c_encrypted.plain.trace");
    let mut seen = check_client_stream(&t, Mode::Encrypted);
    check_server_stream(&t, &mut seen);
    check_test_packets(&t, Mode::Encrypted);
}

#[test]
fn auth_failure_trace() {
    // The server refuses: Server-Start with Accept 1 and everything else zero.
    let t = load("d_authfail.trace");
    let mut s = Stream::new(&t.s2c);
    round_trip(
        s.take(ServerGreeting::LEN),
        ServerGreeting::parse,
        ServerGreeting::to_bytes,
    );
    let start = round_trip(
        s.take(ServerStart::LEN),
        ServerStart::parse,
        ServerStart::to_bytes,
    );
    assert_eq!(start.accept, AcceptCode::Failure);
    assert_eq!(start.start_time, OwampTime::ZERO);
    assert!(s.is_empty());
    let setup = SetUpResponse::parse(&t.c2s[..SetUpResponse::LEN]).unwrap();
    assert_eq!(setup.mode, Mode::Authenticated);
}
