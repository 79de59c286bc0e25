//! Properties of schedules (RFC 4656 3.5).

use owamp_core::session::Schedule;
use owamp_core::time::Interval;
use owamp_core::wire::{SessionId, Slot, SlotKind};
use proptest::prelude::*;

fn slot_strategy() -> impl Strategy<Value = Slot> {
    (any::<bool>(), 0u64..(10u64 << 32)).prop_map(|(exp, mean)| Slot {
        kind: if exp {
            SlotKind::Exponential
        } else {
            SlotKind::Fixed
        },
        mean: Interval::from_raw(mean),
    })
}

proptest! {
    #[test]
    fn offsets_are_monotone(
        sid in any::<[u8; 16]>(),
        slots in proptest::collection::vec(slot_strategy(), 1..6),
        count in 0u32..300,
    ) {
        let s = Schedule::new(SessionId(sid), &slots, count).unwrap();
        let offs: Vec<u64> = s.iter().map(|p| p.offset.raw()).collect();
        prop_assert_eq!(offs.len() as u32, count);
        for w in offs.windows(2) {
            prop_assert!(w[0] <= w[1]);
        }
        // Indexed access agrees with iteration.
        if count > 0 {
            let i = count / 2;
            prop_assert_eq!(s.offset(i).map(Interval::raw), Some(offs[i as usize]));
        }
    }

    #[test]
    fn fixed_slots_give_exact_multiples(
        sid in any::<[u8; 16]>(),
        gap in 0u64..(1u64 << 40),
        count in 1u32..500,
    ) {
        let slot = Slot { kind: SlotKind::Fixed, mean: Interval::from_raw(gap) };
        let s = Schedule::new(SessionId(sid), &[slot], count).unwrap();
        for p in &s {
            prop_assert_eq!(p.offset.raw(), gap * (u64::from(p.seq) + 1));
        }
    }

    #[test]
    fn cyclic_fixed_slots_sum_per_cycle(
        gaps in proptest::collection::vec(0u64..(1u64 << 36), 1..5),
        cycles in 1u32..20,
    ) {
        let slots: Vec<Slot> = gaps.iter().map(|&g| Slot { kind: SlotKind::Fixed, mean: Interval::from_raw(g) }).collect();
        let n = gaps.len() as u32;
        let s = Schedule::new(SessionId::default(), &slots, n * cycles).unwrap();
        let per_cycle: u64 = gaps.iter().sum();
        let offs: Vec<u64> = s.iter().map(|p| p.offset.raw()).collect();
        for c in 1..=cycles {
            prop_assert_eq!(offs[(c * n - 1) as usize], per_cycle * u64::from(c));
        }
    }

    #[test]
    fn huge_gaps_saturate_instead_of_wrapping(count in 2u32..50) {
        let slot = Slot { kind: SlotKind::Fixed, mean: Interval::from_raw(u64::MAX / 3) };
        let s = Schedule::new(SessionId::default(), &[slot], count).unwrap();
        let offs: Vec<u64> = s.iter().map(|p| p.offset.raw()).collect();
        for w in offs.windows(2) {
            prop_assert!(w[0] <= w[1]);
        }
    }
}
