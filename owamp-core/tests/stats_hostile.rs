//! Statistics over records whose order was made to hurt: the work must stay proportional to
//! the number of records, whatever their order, with the results of owstats's algorithm.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use owamp_core::stats::{SessionMeta, Stats, StatsConfig, StatsError, Summary};
use owamp_core::time::{ErrorEstimate, Interval, OwampTime};
use owamp_core::wire::SkipRange;
use owamp_core::wire::{DataRecord, SessionId, Slot, SlotKind};
use proptest::prelude::*;

const START: u64 = 3_900_000_000 << 32;
const SEC: u64 = 1 << 32;

/// A session of `n` packets `gap` apart with loss timeout `timeout`: owstats tracks
/// reordering up to rate * timeout * 3.5 (at least 10) packets deep.
fn info(n: u32, gap: u64, timeout: u64) -> SessionMeta {
    SessionMeta {
        sid: SessionId([7; 16]),
        start_time: OwampTime::from_raw(START),
        loss_timeout: Interval::from_raw(timeout),
        num_packets: n,
        slots: vec![Slot {
            kind: SlotKind::Fixed,
            mean: Interval::from_raw(gap),
        }],
        skip_ranges: Vec::new(),
        next_seqno: None,
    }
}

/// Every record arrives at the same instant, so that no packet's loss window closes and any
/// arrival order is valid.
fn arrival(seq: u32, gap: u64) -> DataRecord {
    DataRecord {
        seq,
        send_error: ErrorEstimate::from_raw(0x8001),
        send_time: OwampTime::from_raw(START + (u64::from(seq) + 1) * gap),
        recv_error: ErrorEstimate::from_raw(0x8001),
        recv_time: OwampTime::from_raw(START + 1),
        ttl: 250,
    }
}

fn summarize(info: SessionMeta, seqs: &[u32]) -> Summary {
    let gap = info.slots[0].mean.raw();
    let mut stats = Stats::new(info, StatsConfig::default()).unwrap();
    let mut s = stats.summarize(0, None).unwrap();
    for &seq in seqs {
        s.push(&arrival(seq, gap)).unwrap();
    }
    s.finish().unwrap()
}

/// owstats's n-reordering as it computes it: each arrival looks back over at most `bound`
/// previous arrivals for as long as they carry higher numbers.
fn reference_reordering(seqs: &[u32], bound: usize) -> Vec<u32> {
    let mut window: VecDeque<u32> = VecDeque::new();
    let mut reorder: Vec<u32> = Vec::new();
    for &seq in seqs {
        let n = window.len().min(bound);
        for i in 0..n {
            if seq < window[window.len() - 1 - i] {
                if reorder.len() <= i {
                    reorder.resize(i + 1, 0);
                }
                reorder[i] += 1;
            } else {
                break;
            }
        }
        window.push_back(seq);
        if window.len() > bound {
            window.pop_front();
        }
    }
    reorder
}

#[test]
fn records_in_descending_order_take_linear_time() {
    // 100 packets a second and a 1000 s timeout: Interval::from_raw(reordering is tracked 350000 deep), deeper
    // than the session. Arriving last to first, every record is reordered against all the
    // earlier ones: looking back record by record would take 5e9 steps.
    let n = 100_000u32;
    let seqs: Vec<u32> = (0..n).rev().collect();
    let t0 = Instant::now();
    let s = summarize(info(n, SEC / 100, 1000 * SEC), &seqs);
    let took = t0.elapsed();
    assert_eq!(s.reorder_bound, 350_000);
    assert_eq!(s.reordering.len(), n as usize - 1);
    assert_eq!(s.reordering[0], n - 1);
    assert_eq!(s.reordering[n as usize - 2], 1);
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn reordering_is_owstats_s(
        seqs in proptest::collection::vec(0u32..40, 0..120),
        deep in any::<bool>(),
    ) {
        // Shallow: one packet every 1000 s with a 1000 s timeout, 10 deep (the minimum).
        // Deep: 100 a second with a 1000 s timeout, 350000 deep.
        let i = if deep {
            info(40, SEC / 100, 1000 * SEC)
        } else {
            info(40, 1000 * SEC, 1000 * SEC)
        };
        let s = summarize(i, &seqs);
        let bound = usize::try_from(s.reorder_bound).unwrap();
        prop_assert_eq!(bound, if deep { 350_000 } else { 10 });
        prop_assert_eq!(s.reordering, reference_reordering(&seqs, bound));
        prop_assert_eq!(s.reorder_seen as usize, seqs.len());
    }

    /// Runs of consecutive numbers (packets arriving in order between losses and
    /// reorderings), cut and overtaken anywhere, also shorter and longer than the bound.
    #[test]
    fn reordering_of_runs_is_owstats_s(
        runs in proptest::collection::vec((0u32..60, 1u32..25), 0..12),
        deep in any::<bool>(),
    ) {
        let seqs: Vec<u32> = runs
            .iter()
            .flat_map(|&(first, len)| first..(first + len).min(80))
            .collect();
        let i = if deep {
            info(80, SEC / 100, 1000 * SEC)
        } else {
            info(80, 1000 * SEC, 1000 * SEC)
        };
        let s = summarize(i, &seqs);
        let bound = usize::try_from(s.reorder_bound).unwrap();
        prop_assert_eq!(s.reordering, reference_reordering(&seqs, bound));
        prop_assert_eq!(s.reorder_seen as usize, seqs.len());
    }
}

#[test]
fn many_skip_ranges_take_logarithmic_time_per_record() {
    // 100000 records in order, and 100000 skip ranges above them: checking every range for
    // every record would take 1e10 steps.
    let n = 100_000u32;
    let mut i = info(2 * n + 10, SEC / 100, 1000 * SEC);
    i.skip_ranges = (0..n)
        .map(|k| SkipRange {
            first: n + 2 * k,
            last: n + 2 * k,
        })
        .collect();
    // One record inside a range (skipped), the others outside (counted).
    i.skip_ranges[0].first = 7;
    i.skip_ranges[0].last = 7;
    let seqs: Vec<u32> = (0..n).collect();
    let t0 = Instant::now();
    let s = summarize(i, &seqs);
    let took = t0.elapsed();
    assert_eq!(s.sent, n - 1);
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn skip_ranges_out_of_order_are_refused() {
    let mut i = info(100, SEC / 100, 1000 * SEC);
    i.skip_ranges = vec![
        SkipRange {
            first: 50,
            last: 60,
        },
        SkipRange {
            first: 10,
            last: 20,
        },
    ];
    assert!(matches!(
        Stats::new(i.clone(), StatsConfig::default()),
        Err(StatsError::SkipRanges)
    ));
    // Nested: ordered by start, not by end.
    i.skip_ranges = vec![
        SkipRange {
            first: 10,
            last: 60,
        },
        SkipRange {
            first: 20,
            last: 30,
        },
    ];
    assert!(matches!(
        Stats::new(i.clone(), StatsConfig::default()),
        Err(StatsError::SkipRanges)
    ));
    // Ranges that share an end point, as Stop-Sessions may carry them, are fine.
    i.skip_ranges = vec![
        SkipRange {
            first: 10,
            last: 20,
        },
        SkipRange {
            first: 20,
            last: 30,
        },
    ];
    assert!(Stats::new(i, StatsConfig::default()).is_ok());
}
