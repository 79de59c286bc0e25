//! TWAMP-Test checks (RFC 5357 4) on the test packets of a TWAMP trace read by
//! [`crate::secure::open`]: every packet of an accepted session parsed as what it is (a
//! session-sender packet from the sender's port to the reflector's, a session-reflector packet
//! the other way), then one named check per rule, each with its RFC section:
//!
//! | check | RFC 5357 | rule |
//! |---|---|---|
//! | `sender-packets` | 4.1.2 | each sender packet parses (length, MBZ, error estimate) |
//! | `sender-seq` | 4.1.2 | the sender numbers its packets 0, 1, 2, ... |
//! | `reflector-packets` | 4.2.1 | each reflector packet parses (length, MBZ, error estimate) |
//! | `reflector-seq` | 4.2.1 | the reflector numbers its own packets 0, 1, 2, ... |
//! | `reflected-fields` | 4.2.1 | Sender Sequence Number, Timestamp and Error Estimate are copied from a sender packet |
//! | `copied-padding` | 4.2.1 | the reflector's padding is the start of that sender packet's padding (twampd's behaviour; RFC 6038 3.1 describes reflecting octets) |
//! | `sender-ttl` | 4.2.1 | Sender TTL is 255 when both ends are on one host (loopback), non-zero otherwise (the sender sends with TTL 255, 4.1.2) |
//! | `receive-before-send` | 4.2.1 | the reflector's Receive Timestamp is not after its own Timestamp |
//!
//! The packets are read from the plaintext ([`Exchange::plain`]): in authenticated and
//! encrypted modes [`crate::secure::open`] has opened them and checked their HMACs.

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

use owamp_core::control::Protocol;
use owamp_core::wire::{Mode as WireMode, ReflectorPacket, TestPacket};

use crate::secure::{self, Exchange};
use crate::trace::{Event, Mode};

/// The outcome of one rule over every packet it applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PacketCheck {
    /// A short stable name (see the module documentation).
    pub name: &'static str,
    /// The RFC section the rule comes from, e.g. `RFC 5357 4.2.1`.
    pub rfc: &'static str,
    /// Packets the rule held for.
    pub passed: usize,
    /// The first packet it did not hold for (`line N: ...`), and how many did not.
    pub failed: Option<(String, usize)>,
}

impl PacketCheck {
    fn new(name: &'static str, rfc: &'static str) -> Self {
        PacketCheck {
            name,
            rfc,
            passed: 0,
            failed: None,
        }
    }

    fn hold(&mut self, ok: bool, why: impl FnOnce() -> String) {
        if ok {
            self.passed += 1;
        } else {
            match &mut self.failed {
                Some((_, n)) => *n += 1,
                None => self.failed = Some((why(), 1)),
            }
        }
    }
}

impl fmt::Display for PacketCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.failed {
            None => write!(f, "{} ({}): {} ok", self.name, self.rfc, self.passed),
            Some((why, n)) => write!(f, "{} ({}): {n} failed, first {why}", self.name, self.rfc),
        }
    }
}

fn wire_mode(m: Mode) -> WireMode {
    match m {
        Mode::Open => WireMode::Open,
        Mode::Authenticated => WireMode::Authenticated,
        Mode::Encrypted => WireMode::Encrypted,
    }
}

/// A session's ports: the sender's and the reflector's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Ports {
    sender: u16,
    reflector: u16,
}

/// Runs every check on the test packets of a TWAMP exchange. `Err` when the exchange is not
/// TWAMP or its sessions cannot be read. An exchange whose set-up was refused has no test
/// packets and gives checks with nothing counted.
pub fn check_test_packets(ex: &Exchange) -> Result<Vec<PacketCheck>, String> {
    if ex.protocol != Protocol::Twamp {
        return Err("not a TWAMP exchange".into());
    }
    let mut sender_packets = PacketCheck::new("sender-packets", "RFC 5357 4.1.2");
    let mut sender_seq = PacketCheck::new("sender-seq", "RFC 5357 4.1.2");
    let mut reflector_packets = PacketCheck::new("reflector-packets", "RFC 5357 4.2.1");
    let mut reflector_seq = PacketCheck::new("reflector-seq", "RFC 5357 4.2.1");
    let mut reflected = PacketCheck::new("reflected-fields", "RFC 5357 4.2.1");
    let mut padding = PacketCheck::new("copied-padding", "RFC 5357 4.2.1");
    let mut ttl = PacketCheck::new("sender-ttl", "RFC 5357 4.2.1");
    let mut order = PacketCheck::new("receive-before-send", "RFC 5357 4.2.1");
    let sessions: Vec<Ports> = if ex.accepted {
        let rec = secure::recorded(&ex.plain, Protocol::Twamp)
            .map_err(|e| format!("the control stream cannot be read: {e}"))?;
        rec.requests
            .iter()
            .filter(|r| r.accept.accept.is_ok())
            .map(|r| Ports {
                sender: r.request.sender_port,
                reflector: r.accept.port,
            })
            .collect()
    } else {
        Vec::new()
    };
    let mode = wire_mode(ex.mode);
    // Per session: the next sequence numbers expected, and the sender packets by number
    // (timestamp, error estimate, padding).
    type Sent = HashMap<u32, (u64, u16, Vec<u8>)>;
    let mut next: HashMap<Ports, (u32, u32)> = HashMap::new();
    let mut sent: HashMap<Ports, Sent> = HashMap::new();
    for (i, e) in ex.plain.events.iter().enumerate() {
        let Event::Test {
            src, dst, payload, ..
        } = e
        else {
            continue;
        };
        let line = ex.plain.event_line(i);
        let at = |why: String| format!("line {line} ({src}->{dst}): {why}");
        let from_sender = sessions
            .iter()
            .find(|p| p.sender == src.port() && p.reflector == dst.port());
        let from_reflector = sessions
            .iter()
            .find(|p| p.reflector == src.port() && p.sender == dst.port());
        if let Some(&p) = from_sender {
            match TestPacket::parse(mode, payload) {
                Err(e) => sender_packets.hold(false, || at(e.to_string())),
                Ok((pkt, pad)) => {
                    sender_packets.hold(true, String::new);
                    let want = &mut next.entry(p).or_default().0;
                    let w = *want;
                    sender_seq.hold(pkt.seq == w, || {
                        at(format!("sequence number {}, expected {w}", pkt.seq))
                    });
                    *want = pkt.seq.wrapping_add(1);
                    sent.entry(p).or_default().insert(
                        pkt.seq,
                        (pkt.timestamp.raw(), pkt.error_estimate.raw(), pad.to_vec()),
                    );
                }
            }
        } else if let Some(&p) = from_reflector {
            let (pkt, pad) = match ReflectorPacket::parse(mode, payload) {
                Err(e) => {
                    reflector_packets.hold(false, || at(e.to_string()));
                    continue;
                }
                Ok(x) => x,
            };
            reflector_packets.hold(true, String::new);
            let want = &mut next.entry(p).or_default().1;
            let w = *want;
            reflector_seq.hold(pkt.seq == w, || {
                at(format!("sequence number {}, expected {w}", pkt.seq))
            });
            *want = pkt.seq.wrapping_add(1);
            let original = sent.get(&p).and_then(|s| s.get(&pkt.sender_seq));
            reflected.hold(
                original.is_some_and(|(ts, ee, _)| {
                    *ts == pkt.sender_timestamp.raw() && *ee == pkt.sender_error_estimate.raw()
                }),
                || match original {
                    None => at(format!(
                        "Sender Sequence Number {} names no sender packet seen before it",
                        pkt.sender_seq
                    )),
                    Some(_) => at(format!(
                        "Sender Timestamp or Error Estimate differ from sender packet {}",
                        pkt.sender_seq
                    )),
                },
            );
            if let Some((_, _, sender_pad)) = original {
                padding.hold(sender_pad.get(..pad.len()) == Some(pad), || {
                    at(format!(
                        "its {} octets of padding are not the start of sender packet {}'s {} octets",
                        pad.len(),
                        pkt.sender_seq,
                        sender_pad.len()
                    ))
                });
            }
            let one_host = src.ip().is_loopback() && dst.ip().is_loopback();
            ttl.hold(
                if one_host {
                    pkt.sender_ttl == 255
                } else {
                    pkt.sender_ttl != 0
                },
                || {
                    at(format!(
                        "Sender TTL {}, expected {}",
                        pkt.sender_ttl,
                        if one_host {
                            "255 on loopback"
                        } else {
                            "non-zero"
                        }
                    ))
                },
            );
            order.hold(pkt.receive_timestamp.raw() <= pkt.timestamp.raw(), || {
                at(format!(
                    "Receive Timestamp {:#018x} is after the reflector's Timestamp {:#018x}",
                    pkt.receive_timestamp.raw(),
                    pkt.timestamp.raw()
                ))
            });
        } else {
            // RFC 5357 4: test packets belong to a session the control connection set up.
            sender_packets.hold(false, || {
                at("no accepted session uses these ports in either direction".into())
            });
        }
    }
    Ok(vec![
        sender_packets,
        sender_seq,
        reflector_packets,
        reflector_seq,
        reflected,
        padding,
        ttl,
        order,
    ])
}

/// The checks as one line for the runner (`name (RFC ...): N ok; ...`), or the first failure.
pub fn summary(checks: &[PacketCheck]) -> Result<String, String> {
    if let Some(c) = checks.iter().find(|c| c.failed.is_some()) {
        return Err(c.to_string());
    }
    Ok(checks
        .iter()
        .map(PacketCheck::to_string)
        .collect::<Vec<_>>()
        .join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secure::{open_as, Opened};
    use crate::trace::Trace;

    const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/traces/twamp");

    fn load(name: &str) -> Trace {
        Trace::parse(&std::fs::read_to_string(format!("{DIR}/{name}")).unwrap()).unwrap()
    }

    fn exchange(t: &Trace) -> Exchange {
        match open_as(t, None, Some(Protocol::Twamp)).unwrap() {
            Opened::Readable(e) => *e,
            Opened::Unreadable(why) => panic!("{why}"),
        }
    }

    #[test]
    fn every_recorded_session_passes_every_check() {
        for name in [
            "a_open.trace",
            "b_auth.trace",
            "c_encrypted.trace",
            "b_auth.plain.trace",
            "r_open_raw.trace",
            "m_open_machine.trace",
        ] {
            let checks = check_test_packets(&exchange(&load(name))).unwrap();
            for c in &checks {
                assert_eq!(c.failed, None, "{name}: {c}");
                assert_eq!(c.passed, 20, "{name}: {c}");
            }
        }
        let checks = check_test_packets(&exchange(&load("d_authfail.trace"))).unwrap();
        assert!(checks.iter().all(|c| c.passed == 0 && c.failed.is_none()));
    }

    /// Changes one octet of the first reflector packet of a_open and returns the failing check.
    fn break_reply(at: usize, value: u8) -> PacketCheck {
        let mut t = load("a_open.trace");
        let Some(Event::Test { payload, .. }) = t
            .events
            .iter_mut()
            .filter(|e| matches!(e, Event::Test { .. }))
            .nth(1)
        else {
            panic!("no reply")
        };
        payload[at] = value;
        let checks = check_test_packets(&exchange(&t)).unwrap();
        let failed: Vec<_> = checks.into_iter().filter(|c| c.failed.is_some()).collect();
        assert_eq!(failed.len(), 1, "{failed:?}");
        failed.into_iter().next().unwrap()
    }

    #[test]
    fn each_broken_rule_is_named() {
        // Octet 40 is the Sender TTL, 3 the reflector's sequence number, 27 the sender's
        // sequence number it echoes, 16 the Receive Timestamp's high octet.
        let c = break_reply(40, 64);
        assert_eq!(c.name, "sender-ttl");
        assert!(c.to_string().contains("Sender TTL 64, expected 255"), "{c}");
        assert_eq!(break_reply(3, 9).name, "reflector-seq");
        assert_eq!(break_reply(27, 9).name, "reflected-fields");
        assert_eq!(break_reply(16, 0xff).name, "receive-before-send");
    }

    #[test]
    fn a_reflector_packet_that_does_not_parse_fails_the_trace_check() {
        // Octet 15 is MBZ: the trace's own check (before these) names it.
        let mut t = load("a_open.trace");
        let Some(Event::Test { payload, .. }) = t
            .events
            .iter_mut()
            .filter(|e| matches!(e, Event::Test { .. }))
            .nth(1)
        else {
            panic!("no reply")
        };
        payload[15] = 1;
        let e = open_as(&t, None, Some(Protocol::Twamp)).unwrap_err();
        assert!(
            e.ends_with("byte 15: reflector packet: non-zero MBZ octet at offset 15"),
            "{e}"
        );
    }

    #[test]
    fn a_sender_packet_out_of_order_is_found() {
        let mut t = load("a_open.trace");
        let Some(Event::Test { payload, .. }) = t
            .events
            .iter_mut()
            .find(|e| matches!(e, Event::Test { .. }))
        else {
            panic!()
        };
        payload[3] = 5;
        let checks = check_test_packets(&exchange(&t)).unwrap();
        let s = summary(&checks).unwrap_err();
        assert!(
            s.starts_with("sender-seq (RFC 5357 4.1.2): 2 failed"),
            "{s}"
        );
    }
}
