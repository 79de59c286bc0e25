//! Checks for the test session receiver (`owamp_core::session::Receiver`), which takes
//! datagrams from the network (RFC 4656 4.2).

use owamp_core::crypto::{SecureMode, SessionKeys, TestPacketCrypto};
use owamp_core::session::{PacketProtection, Receiver, Schedule, SessionParams};
use owamp_core::time::{ErrorEstimate, Interval, OwampTime};
use owamp_core::wire::{Mode, SessionId, Slot, SlotKind, TestPacket};

use super::Input;

/// The most packets a fuzzed session has. The receiver keeps state and records in proportion
/// to the packet count (which the control layer bounds), and computes the schedule packet by
/// packet: 2^12 keeps a run at a few milliseconds at worst, while offsets (which depend on the
/// slot means, not the count) still reach every corner of the 64-bit range.
const MAX_COUNT: u32 = 1 << 12;

/// The most events one input drives.
const MAX_EVENTS: usize = 256;

/// Input: mode octet (0 open, 1 authenticated, 2 encrypted), SID (16), AES and HMAC session
/// keys (16 + 32), packet count (u32, reduced below 2^12), start time (u64), timeout (u64),
/// padding (u16, reduced below 2^12), slot count octet (1 to 4 slots: type octet, mean u64),
/// then events:
/// - `0`: poll at start + u64;
/// - `1`: a datagram of arbitrary octets (length u16, the octets), received at start + u64
///   with a TTL octet;
/// - `2`: a well-formed packet (seq u32, send time start + u64, error estimate u16), sealed in
///   the session's mode, received at start + u64 with a TTL octet;
/// - `3`: finish at start + u64 with the Next Seqno u32 (or all packets if the top bit of a
///   flag octet is set), ending the input.
///
/// Checks: no panic; the counters add up to the datagrams seen; every record has a sequence
/// number below the count; after a poll the next deadline is not in the past; accepting a
/// sealed, well-formed packet never fails its HMAC; `finish` keeps only records below the Next
/// Seqno and sent by the stop time less the timeout.
pub fn session_receiver(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = Mode::ALL[usize::from(input.u8() % 3)];
    let sid = SessionId(input.array());
    let keys = SessionKeys {
        aes: input.array(),
        hmac: input.array(),
    };
    let count = input.u32() % MAX_COUNT;
    let start = OwampTime::from_raw(input.u64());
    let timeout = Interval::from_raw(input.u64());
    let padding = u32::from(input.u16() % 4096);
    let nslots = usize::from(input.u8() % 4) + 1;
    let slots: Vec<Slot> = (0..nslots)
        .map(|_| Slot {
            kind: if input.u8() & 1 == 0 {
                SlotKind::Exponential
            } else {
                SlotKind::Fixed
            },
            mean: Interval::from_raw(input.u64()),
        })
        .collect();
    let schedule = Schedule::new(sid, &slots, count).expect("slots are never empty");
    let params = SessionParams {
        schedule,
        start,
        timeout,
        padding,
    };
    let crypto = match mode {
        Mode::Open => None,
        Mode::Authenticated => Some(TestPacketCrypto::new(
            SecureMode::Authenticated,
            &sid.0,
            &keys,
        )),
        Mode::Encrypted => Some(TestPacketCrypto::new(SecureMode::Encrypted, &sid.0, &keys)),
    };
    let protection = match &crypto {
        None => PacketProtection::Open,
        Some(c) => PacketProtection::Sealed(c.clone()),
    };
    let mut rx = Receiver::new(params, protection);
    let at = |offset: u64| OwampTime::from_raw(start.raw().wrapping_add(offset));
    let ee = ErrorEstimate::from_raw(0x0001);

    let mut datagrams = 0u64;
    for _ in 0..MAX_EVENTS {
        if input.is_empty() {
            break;
        }
        match input.u8() % 4 {
            0 => {
                let now = at(input.u64());
                rx.poll(now, ee);
                if let Some(d) = rx.next_deadline() {
                    assert!(d >= now, "deadline {d:?} before {now:?} after poll");
                }
            }
            1 => {
                let len = usize::from(input.u16());
                let bytes = input.bytes(len).to_vec();
                let now = at(input.u64());
                let ttl = input.u8();
                datagrams += 1;
                let before = rx.records().len();
                if let Ok(a) = rx.receive(&bytes, now, ee, ttl) {
                    assert!(a.seq < count);
                    assert!(rx.records().len() <= before + 1 + count as usize);
                }
            }
            2 => {
                let p = TestPacket {
                    seq: input.u32(),
                    timestamp: at(input.u64()),
                    error_estimate: ErrorEstimate::from_raw(input.u16()),
                    hmac: [0; 16],
                };
                let now = at(input.u64());
                let ttl = input.u8();
                let mut bytes = p.to_bytes(mode, &vec![0; padding as usize]);
                if let Some(c) = &crypto {
                    c.seal(&mut bytes).expect("sealing a whole packet");
                }
                datagrams += 1;
                let r = rx.receive(&bytes, now, ee, ttl);
                assert_ne!(
                    r,
                    Err(owamp_core::session::DropReason::BadHmac),
                    "a sealed packet failed its HMAC"
                );
                assert_ne!(r, Err(owamp_core::session::DropReason::WrongLength));
                if let Ok(a) = r {
                    assert_eq!(a.seq, p.seq);
                    let last = rx.records().last().expect("accepted packets are recorded");
                    if last.seq == p.seq && last.recv_time == now {
                        assert_eq!(last.send_time, p.timestamp);
                        assert_eq!(last.ttl, ttl);
                    }
                }
            }
            _ => {
                let stop = at(input.u64());
                let next = input.u32();
                let limit = if input.u8() & 0x80 != 0 {
                    None
                } else {
                    Some(next)
                };
                check_counts(&rx, datagrams);
                if let Ok(records) = rx.finish(stop, limit, ee) {
                    let counted = limit.is_some();
                    let limit = limit.unwrap_or(count);
                    let threshold = stop.raw().saturating_sub(timeout.raw());
                    for r in &records {
                        assert!(r.seq < limit);
                        // Without a Next Seqno, packets that may not have been sent yet are
                        // not counted lost.
                        assert!(counted || !r.is_lost() || r.send_time.raw() <= threshold);
                    }
                    if counted {
                        // RFC 4656 3.8: every packet below Next Seqno is kept or lost.
                        let mut seen = vec![false; limit as usize];
                        for r in &records {
                            if let Some(f) = seen.get_mut(r.seq as usize) {
                                *f = true;
                            }
                        }
                        assert!(
                            seen.iter().all(|&f| f),
                            "a packet below Next Seqno vanished"
                        );
                    }
                }
                return;
            }
        }
        check_counts(&rx, datagrams);
    }
}

fn check_counts(rx: &Receiver, datagrams: u64) {
    let s = rx.stats();
    assert_eq!(
        s.received + s.duplicates + s.drops.total(),
        datagrams,
        "counters do not add up: {s:?}"
    );
    assert!(s.received + s.lost <= u64::from(rx.params().schedule.count()));
    assert!(rx
        .records()
        .iter()
        .all(|r| r.seq < rx.params().schedule.count()));
    if rx.is_complete() {
        assert_eq!(rx.next_deadline(), None);
    }
}
