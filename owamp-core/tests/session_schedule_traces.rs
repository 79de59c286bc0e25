//! The schedule computed from a Request-Session matches the send timestamps of the reference
//! implementation's test packets (RFC 4656 3.5 and Appendix B).

mod session_support;

use owamp_core::session::Schedule;
use owamp_core::time::OwampTime;
use session_support::{load, Trace};

/// Offset of the 64-bit timestamp in a test packet (open: after Seq; A/E: after Seq + MBZ).
fn timestamp_at(payload: &[u8], authenticated: bool) -> u64 {
    let at = if authenticated { 16 } else { 4 };
    u64::from_be_bytes(payload[at..at + 8].try_into().unwrap())
}

/// Seconds between each packet's send timestamp and its scheduled time, with the schedule
/// shifted by `shift` packets (0 = the first packet waits one gap).
fn lateness(trace: &Trace, authenticated: bool, shift: u32) -> Vec<f64> {
    assert_eq!(trace.sessions.len(), 2, "both directions");
    let mut out = Vec::new();
    for s in &trace.sessions {
        let sched = Schedule::new(s.sid, &s.slots, s.count).unwrap();
        let start = OwampTime::from_raw(s.start_time);
        let pkts = trace.packets_to(s.receiver_port);
        assert_eq!(pkts.len() as u32, s.count);
        for p in pkts {
            let seq = u32::from_be_bytes(p.payload[0..4].try_into().unwrap());
            if let Some(sid) = p.sid {
                assert_eq!(sid, s.sid);
            }
            let due = if seq < shift {
                start
            } else {
                sched.send_time(start, seq - shift).unwrap()
            };
            let sent = timestamp_at(&p.payload, authenticated);
            out.push((sent as i128 - due.raw() as i128) as f64 / 4_294_967_296.0);
        }
    }
    out
}

fn check(name: &str, authenticated: bool) {
    let trace = load(name);
    let late = lateness(&trace, authenticated, 0);
    assert_eq!(late.len(), 40);
    for (i, l) in late.iter().enumerate() {
        // The reference sends just after the scheduled time (loopback, same host: 60-700 us).
        assert!(
            (0.0..0.002).contains(l),
            "{name}: packet {i} is {l:.6} s off schedule"
        );
    }
    // The other reading of RFC 4656 3.5 (first packet at the start time) does not fit.
    let shifted = lateness(&trace, authenticated, 1);
    assert!(
        shifted.iter().any(|l| l.abs() > 0.005),
        "{name}: the trace cannot tell the two conventions apart"
    );
}

#[test]
fn a_open_packets_follow_schedule() {
    check("a_open.trace", false);
}

#[test]
fn b_auth_packets_follow_schedule() {
    check("b_auth.plain.trace", true);
}

#[test]
fn c_encrypted_packets_follow_schedule() {
    check("c_encrypted.plain.trace", true);
}
