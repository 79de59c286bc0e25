//! Checks for the conformance crate's readers of untrusted files: the text trace parser, the
//! pcap/pcapng importer, the message framing the trace checker runs, and the analysis of a
//! trace as OWAMP or as TWAMP (with the TWAMP-Test checks).

use conformance::check::{check, check_as, Report};
use conformance::frame::be32;
use conformance::frame::{frame, Context, Framed, MsgKind};
use conformance::import::{import, ImportOptions};
use conformance::runner::{analyse, analyse_as};
use conformance::secure::{open_as, Opened};
use conformance::trace::{equivalent, Direction, Event, Trace};
use owamp_core::control::Protocol;

use super::Input;

/// What must hold for any trace, however it was obtained: writing it and reading it back gives
/// the same trace, and the checker runs to completion with its findings inside the trace.
fn trace_properties(t: &Trace) {
    let text = t.to_text();
    let back = Trace::parse(&text).unwrap_or_else(|e| panic!("written trace unreadable: {e}"));
    assert_eq!(&back, t, "trace -> text -> trace differs");
    assert_eq!(back.to_text(), text, "canonical text is not stable");
    assert_eq!(equivalent(t, &back), Ok(()));

    // The typed headers never panic.
    let _ = (
        t.headers(),
        t.mode(),
        t.identity(),
        t.passphrase(),
        t.decrypted(),
    );
    let lines = text.lines().count();
    for i in 0..t.events.len() {
        let l = t.event_line(i);
        assert!(l >= 1 && l <= lines, "event {i} on line {l} of {lines}");
    }

    report_properties(t, &check(t));
}

fn report_properties(t: &Trace, r: &Report) {
    let c = t.stream(Direction::ClientToServer).len();
    let s = t.stream(Direction::ServerToClient).len();
    for m in &r.messages {
        let len = match m.dir {
            Direction::ClientToServer => c,
            Direction::ServerToClient => s,
        };
        assert!(m.index >= 1);
        assert!(
            m.start.checked_add(m.len).is_some_and(|end| end <= len),
            "message {m:?} beyond the {len}-octet stream"
        );
    }
    let tests = t
        .events
        .iter()
        .filter(|e| matches!(e, Event::Test { .. }))
        .count();
    assert!(r.test_packets <= tests);
    assert!(r.matched_test_packets <= r.test_packets);
    let max_line = t.event_line(t.events.len());
    for f in &r.findings {
        assert!(f.line <= max_line, "finding {f} beyond the trace");
    }
}

/// The text trace parser (`conformance::trace`). Input: the text (not UTF-8: rejected before
/// parsing, as reading a file to a string does).
///
/// A trace that parses writes back to text that parses to the same trace, and that text is
/// canonical (writing it again gives it unchanged); the checker runs on it without panicking
/// and reports messages within the streams.
pub fn conformance_trace(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(t) = Trace::parse(text) else { return };
    trace_properties(&t);
}

/// The pcap/pcapng importer (`conformance::import`). Input: a capture file.
///
/// Never panics; an imported trace has the trace properties (see [`conformance_trace`]).
pub fn conformance_pcap(data: &[u8]) {
    let opts = ImportOptions {
        connection: 0,
        name: "fuzz.pcap".to_string(),
    };
    if let Ok(t) = import(data, &opts) {
        trace_properties(&t);
    }
}

/// The message kinds `conformance_frame` chooses from, by its first input octet.
pub const FRAME_KINDS: [MsgKind; 14] = [
    MsgKind::ServerGreeting,
    MsgKind::SetUpResponse,
    MsgKind::ServerStart,
    MsgKind::RequestSession,
    MsgKind::AcceptSession,
    MsgKind::StartSessions,
    MsgKind::StartAck,
    MsgKind::StopSessions,
    MsgKind::FetchSession,
    MsgKind::FetchAck,
    MsgKind::FetchData,
    MsgKind::Command,
    MsgKind::RequestTwSession,
    MsgKind::TwampStopSessions,
];

/// The message framing of the checker (`conformance::frame::frame`).
///
/// Input: kind octet, flags octet (bit 0: clear; bit 1: a Modes word follows), the Modes word
/// (u32, if flagged), the Fetch-Ack counts (two u32), then the stream.
///
/// `NeedMore(n)` asks for more than the stream holds; `Ok(len)` is a whole number of blocks
/// within the stream, and the message alone frames the same way.
pub fn conformance_frame(data: &[u8]) {
    let mut input = Input::new(data);
    let kind = FRAME_KINDS[usize::from(input.u8()) % FRAME_KINDS.len()];
    let flags = input.u8();
    let offered_modes = (flags & 2 != 0).then(|| input.u32());
    let ctx = Context {
        clear: flags & 1 != 0,
        offered_modes,
        counts: (input.u32(), input.u32()),
    };
    let b = input.rest();
    match frame(kind, b, &ctx) {
        Framed::NeedMore(n) => assert!(n > b.len(), "{kind}: NeedMore({n}) with {}", b.len()),
        Framed::Ok(len) => {
            assert!(len <= b.len());
            // Set-Up-Response is 164 octets, the one message that is not whole blocks.
            if kind != MsgKind::SetUpResponse {
                assert_eq!(len % 16, 0, "{kind}: {len} octets");
            }
            assert_eq!(frame(kind, &b[..len], &ctx), Framed::Ok(len));
        }
        Framed::Bad(_) => {}
    }
}

/// The largest PBKDF2 count a replayed trace may ask for (the reference uses 2048); above it
/// the input is skipped, since key derivation alone would make the run slow.
const MAX_REPLAY_KDF_COUNT: u32 = 4096;

/// The conformance runner's analysis of a trace (`conformance::runner::analyse`): decrypting it
/// with the passphrase of its headers, verifying every HMAC, and replaying it through the
/// server and client state machines. Input: the text of a trace.
///
/// Never panics, whatever the trace holds.
pub fn conformance_replay(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(t) = Trace::parse(text) else { return };
    let greeting_count = be32(&t.stream(Direction::ServerToClient), 48);
    if greeting_count.is_some_and(|c| c > MAX_REPLAY_KDF_COUNT) {
        return;
    }
    let _ = analyse(&t, None);
}

/// The runner's analysis of a trace read as TWAMP whatever it holds
/// (`conformance::runner::analyse_as` with the TWAMP hint: the TWAMP message split, decryption
/// with reflector packets, replay through the TWAMP state machines) and the TWAMP-Test checks
/// (`conformance::twamp::check_test_packets`). Input: the text of a trace.
///
/// Never panics; the check as TWAMP reports messages within the streams; the packet checks
/// count no more packets than the trace holds.
pub fn conformance_twamp(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(t) = Trace::parse(text) else { return };
    report_properties(&t, &check_as(&t, Protocol::Twamp));
    let greeting_count = be32(&t.stream(Direction::ServerToClient), 48);
    if greeting_count.is_some_and(|c| c > MAX_REPLAY_KDF_COUNT) {
        return;
    }
    let _ = analyse_as(&t, None, Some(Protocol::Twamp));
    if let Ok(Opened::Readable(ex)) = open_as(&t, None, Some(Protocol::Twamp)) {
        if let Ok(checks) = conformance::twamp::check_test_packets(&ex) {
            let tests = t
                .events
                .iter()
                .filter(|e| matches!(e, Event::Test { .. }))
                .count();
            for c in &checks {
                let failed = c.failed.as_ref().map_or(0, |(_, n)| *n);
                assert!(c.passed + failed <= tests, "{c}: more than {tests} packets");
            }
        }
    }
}
