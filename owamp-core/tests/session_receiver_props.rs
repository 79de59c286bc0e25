//! Properties of the session receiver: arbitrary input never panics and is accounted for, and
//! for any loss and duplication pattern the records say exactly what happened.

use owamp_core::crypto::{SecureMode, SessionKeys, TestPacketCrypto};
use owamp_core::session::{PacketProtection, Receiver, Schedule, Sender, SessionParams};
use owamp_core::time::Interval;
use owamp_core::time::{ErrorEstimate, OwampTime};
use owamp_core::wire::{SessionId, Slot, SlotKind};
use proptest::prelude::*;

const SEC: u64 = 1 << 32;
const START: u64 = 0xeeb2_5d6f_0000_0000;

fn params(count: u32, kind: SlotKind) -> SessionParams {
    SessionParams {
        schedule: Schedule::new(
            SessionId([5; 16]),
            &[Slot {
                kind,
                mean: Interval::from_raw(SEC / 50),
            }],
            count,
        )
        .unwrap(),
        start: OwampTime::from_raw(START),
        timeout: Interval::from_raw(SEC),
        padding: 4,
    }
}

fn protection(mode: u8) -> PacketProtection {
    let keys = SessionKeys {
        aes: [1; 16],
        hmac: [2; 32],
    };
    match mode % 3 {
        0 => PacketProtection::Open,
        1 => PacketProtection::Sealed(TestPacketCrypto::new(
            SecureMode::Authenticated,
            &[5; 16],
            &keys,
        )),
        _ => PacketProtection::Sealed(TestPacketCrypto::new(
            SecureMode::Encrypted,
            &[5; 16],
            &keys,
        )),
    }
}

const E: ErrorEstimate = ErrorEstimate::from_raw(1);

proptest! {
    #[test]
    fn arbitrary_datagrams_are_accounted_for(
        mode in 0u8..3,
        datagrams in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..80), 0u64..(30 * SEC)),
            1..60,
        ),
    ) {
        let mut rx = Receiver::new(params(1000, SlotKind::Exponential), protection(mode));
        let mut accepted = 0u64;
        for (mut d, t) in datagrams {
            // Make some of them plausible open-mode packets: right length, seq in range,
            // timestamp at the receive time.
            if mode == 0 && d.len() >= 14 {
                d.truncate(18);
                d[0..2].fill(0);
                d[4..12].copy_from_slice(&(START + t).to_be_bytes());
            }
            let r = rx.receive(&d, OwampTime::from_raw(START + t), E, 64);
            if r.is_ok() {
                accepted += 1;
            }
            if mode != 0 {
                // Nothing forged passes the HMAC.
                prop_assert!(r.is_err());
            }
        }
        let s = *rx.stats();
        prop_assert_eq!(s.received + s.duplicates, accepted);
        prop_assert_eq!(rx.records().len() as u64, accepted + s.lost);
    }

    #[test]
    fn records_match_any_loss_and_duplication(
        mode in 0u8..3,
        fixed in any::<bool>(),
        copies in proptest::collection::vec(0u8..4, 1..120),
    ) {
        let count = copies.len() as u32;
        let kind = if fixed { SlotKind::Fixed } else { SlotKind::Exponential };
        let p = params(count, kind);
        let mut tx = Sender::new(p.clone(), protection(mode)).unwrap();
        let mut rx = Receiver::new(p.clone(), protection(mode));
        let mut buf = vec![0u8; tx.packet_len()];
        for &n in &copies {
            let (_, due) = tx.next_due().unwrap();
            let len = tx.build(&mut buf, due, E).unwrap();
            for k in 0..n {
                let at = OwampTime::from_raw(due.raw() + 1000 * (u64::from(k) + 1));
                prop_assert!(rx.receive(&buf[..len], at, E, 1).is_ok());
            }
        }
        let lost = copies.iter().filter(|&&n| n == 0).count() as u64;
        let dups: u64 = copies.iter().map(|&n| u64::from(n.saturating_sub(1))).sum();
        let last_due = p.schedule.send_time(p.start, count - 1).unwrap();
        let end = OwampTime::from_raw(last_due.raw() + 2 * SEC);
        let recs = rx.finish(end, None, E).unwrap();
        prop_assert_eq!(recs.len() as u64, u64::from(count) + dups);
        prop_assert_eq!(recs.iter().filter(|r| r.is_lost()).count() as u64, lost);
        for (seq, &n) in copies.iter().enumerate() {
            let k = recs.iter().filter(|r| r.seq == seq as u32).count();
            prop_assert_eq!(k, usize::from(n.max(1)));
        }
    }
}
