//! Properties of the statistics on synthetic sessions.

use owamp_core::io::{FetchedSession, Finished, StoredSession};
use owamp_core::stats::report::{self, EndpointName, ReportContext, Scale};
use owamp_core::stats::{SessionMeta, Stats, StatsConfig, Summary};
use owamp_core::time::{ErrorEstimate, Interval, OwampTime};
use owamp_core::wire::{DataRecord, SessionId, Slot, SlotKind};
use proptest::prelude::*;

const START: u64 = 3_900_000_000 << 32;
/// 10 ms between packets.
const INTERVAL: u64 = 0x028F_5C28;
/// A loss timeout far beyond the session, so that nothing closes early.
const TIMEOUT: u64 = 1000 << 32;

fn info(n: u32) -> SessionMeta {
    SessionMeta {
        sid: SessionId([7; 16]),
        start_time: OwampTime::from_raw(START),
        loss_timeout: Interval::from_raw(TIMEOUT),
        num_packets: n,
        slots: vec![Slot {
            kind: SlotKind::Fixed,
            mean: Interval::from_raw(INTERVAL),
        }],
        skip_ranges: Vec::new(),
        next_seqno: None,
    }
}

fn send_time(seq: u32) -> u64 {
    START + (u64::from(seq) + 1) * INTERVAL
}

fn received(seq: u32, delay: u64, ttl: u8) -> DataRecord {
    DataRecord {
        seq,
        send_error: ErrorEstimate::from_raw(0x8001),
        send_time: OwampTime::from_raw(send_time(seq)),
        recv_error: ErrorEstimate::from_raw(0x8001),
        recv_time: OwampTime::from_raw(send_time(seq) + delay),
        ttl,
    }
}

fn lost(seq: u32) -> DataRecord {
    DataRecord {
        recv_time: OwampTime::from_raw(0),
        ttl: 255,
        ..received(seq, 0, 255)
    }
}

fn summarize(n: u32, recs: &[DataRecord]) -> Summary {
    let mut stats = Stats::new(info(n), StatsConfig::default()).unwrap();
    let mut s = stats.summarize(0, None).unwrap();
    for r in recs {
        s.push(r).unwrap();
    }
    s.finish().unwrap()
}

/// What happens to one packet: lost, or received with a delay (in 2^-32 s) and extra copies.
#[derive(Debug, Clone)]
enum Fate {
    Lost,
    Received { delay: u64, copies: u32, ttl: u8 },
}

fn fate() -> impl Strategy<Value = Fate> {
    prop_oneof![
        1 => Just(Fate::Lost),
        6 => (1u64..(1 << 30), 1u32..3, 250u8..=255)
            .prop_map(|(delay, copies, ttl)| Fate::Received { delay, copies, ttl }),
    ]
}

/// Received records in arrival order `order` (a permutation), then the lost ones in sequence
/// order, as a receiver writes them once their timeout expires.
fn records(fates: &[Fate], order: &[usize]) -> Vec<DataRecord> {
    let mut out = Vec::new();
    for &i in order {
        if let Fate::Received { delay, copies, ttl } = fates[i] {
            for _ in 0..copies {
                out.push(received(i as u32, delay, ttl));
            }
        }
    }
    for (i, f) in fates.iter().enumerate() {
        if matches!(f, Fate::Lost) {
            out.push(lost(i as u32));
        }
    }
    out
}

fn session() -> impl Strategy<Value = (Vec<Fate>, Vec<usize>)> {
    proptest::collection::vec(fate(), 1..120).prop_flat_map(|fates| {
        let n = fates.len();
        (Just(fates), Just((0..n).collect::<Vec<_>>()).prop_shuffle())
    })
}

proptest! {
    #[test]
    fn loss_plus_received_equals_sent((fates, order) in session()) {
        let n = fates.len() as u32;
        let s = summarize(n, &records(&fates, &order));
        let lost = fates.iter().filter(|f| matches!(f, Fate::Lost)).count() as u32;
        let dups: u32 = fates
            .iter()
            .map(|f| match f { Fate::Received { copies, .. } => copies - 1, Fate::Lost => 0 })
            .sum();
        let histogram: u32 = s.buckets.iter().map(|&(_, c)| c).sum();
        let ttls: u32 = s.ttl.iter().sum();
        prop_assert_eq!(s.sent, n);
        prop_assert_eq!(s.lost, lost);
        prop_assert_eq!(s.duplicates, dups);
        prop_assert_eq!(histogram + s.lost, s.sent);
        prop_assert_eq!(ttls + s.lost, s.sent);
        prop_assert!((s.loss_fraction() - f64::from(lost) / f64::from(n)).abs() < 1e-12);
    }

    #[test]
    fn in_order_arrival_has_no_reordering((fates, _) in session()) {
        let n = fates.len();
        let s = summarize(n as u32, &records(&fates, &(0..n).collect::<Vec<_>>()));
        prop_assert!(s.reordering.is_empty());
        let text = report::summary(&s, &header_stub(n as u32), &ctx(), &[]);
        prop_assert!(text.contains("\nno reordering\n"));
    }

    #[test]
    fn percentiles_are_monotone(
        (fates, order) in session(),
        mut alphas in proptest::collection::vec(0.0f64..=1.0, 2..10),
    ) {
        let s = summarize(fates.len() as u32, &records(&fates, &order));
        alphas.sort_by(f64::total_cmp);
        let values: Vec<f64> = alphas.iter().filter_map(|&a| s.percentile(a)).collect();
        for w in values.windows(2) {
            prop_assert!(w[0] <= w[1], "{:?}", values);
        }
        // A percentile is the upper edge of a bucket that holds a delay.
        if let (Some(min), Some(med)) = (s.min_delay(), s.median()) {
            prop_assert!(med >= min - 1e-12);
        }
        if let Some(j) = s.jitter() {
            prop_assert!(j >= 0.0);
        }
    }
}

fn header_stub(n: u32) -> owamp_core::owp::SessionHeader {
    let req = owamp_core::wire::RequestSession {
        conf_sender: true,
        conf_receiver: false,
        num_packets: n,
        sender_port: 1,
        receiver_port: 2,
        sender_address: "127.0.0.1".parse().unwrap(),
        receiver_address: "127.0.0.1".parse().unwrap(),
        sid: SessionId([7; 16]),
        padding_length: 0,
        start_time: OwampTime::from_raw(START),
        timeout: Interval::from_raw(TIMEOUT),
        type_p: owamp_core::wire::TypeP(0),
        hmac: [0; 16],
        slots: info(n).slots,
        slots_hmac: [0; 16],
    };
    owamp_core::owp::SessionHeader::new(req, Vec::new(), n, 1, n)
}

fn ctx() -> ReportContext<'static> {
    let p = EndpointName::numeric("127.0.0.1".parse().unwrap(), 1);
    ReportContext {
        from: p.clone(),
        to: p,
        scale: Scale::Milliseconds,
        unix_timestamps: false,
        time: &report::utc_time,
    }
}

/// RFC 4656 3.8: the sender sent every packet below its Next-Seqno that it did not skip, so a
/// packet with no record at all, neither received nor lost, was lost.
#[test]
fn missing_record_below_next_seqno_counts_as_lost() {
    let recs: Vec<_> = [0, 1, 3, 4]
        .iter()
        .map(|&s| received(s, INTERVAL / 2, 255))
        .collect();
    let request = header_stub(6).request;
    let fetched = FetchedSession {
        sid: request.sid,
        finished: Finished::Normal,
        next_seqno: 5,
        skips: Vec::new(),
        request: request.clone(),
        records: recs.clone(),
    };
    // Packet 2 is missing and lost; packet 5 was never sent (at or past Next-Seqno).
    let s = Stats::of_fetched(&fetched).unwrap();
    assert_eq!((s.sent, s.lost), (5, 1));
    let stored = StoredSession {
        request,
        finished: Finished::Normal,
        next_seqno: 5,
        skips: Vec::new(),
        records: recs.clone(),
    };
    assert_eq!(Stats::of_stored(&stored).unwrap(), s);
    // Without a Next-Seqno (an incomplete session, or owstats on a file) it is not counted.
    let unfinished = FetchedSession {
        finished: Finished::Incomplete,
        ..fetched
    };
    assert_eq!(SessionMeta::from_fetched(&unfinished).next_seqno, None);
    let s = Stats::of_fetched(&unfinished).unwrap();
    assert_eq!((s.sent, s.lost), (4, 0));
    let s = summarize(6, &recs);
    assert_eq!((s.sent, s.lost), (4, 0));
}

#[test]
fn exact_percentiles_come_from_the_delays() {
    // Delays 1..=10 ms in a session whose histogram buckets are 0.1 ms wide.
    let ms = (1u64 << 32) / 1000;
    let recs: Vec<_> = (0..10u32)
        .map(|s| received(s, ms * u64::from(s + 1), 255))
        .collect();
    let s = summarize(10, &recs);
    let max = s.max_delay().unwrap();
    let median = s.exact_median().unwrap();
    assert!(median <= max);
    assert_eq!(median, s.delays()[4]);
    assert_eq!(s.exact_percentile(1.0), Some(max));
    assert_eq!(s.exact_percentile(0.0), s.min_delay());
    assert_eq!(s.exact_percentile(1.5), None);
    assert_eq!(summarize(10, &[]).exact_median(), None);
    // Without the delays kept, the same summary but for them.
    let config = StatsConfig {
        keep_delays: false,
        ..StatsConfig::default()
    };
    let lean = Stats::summarize_all(info(10), &recs, config).unwrap();
    assert_eq!(lean.exact_median(), None);
    assert!(lean.delays().is_empty());
    assert_eq!(
        (lean.sent, lean.lost, lean.median(), lean.max_delay()),
        (s.sent, s.lost, s.median(), s.max_delay())
    );
    assert_eq!(lean.buckets, s.buckets);
}

#[test]
fn three_reordering_is_found() {
    // 0 arrives after 1, 2 and 3: it is 1-, 2- and 3-reordered (RFC 4737 section 5).
    let recs: Vec<_> = [1, 2, 3, 0, 4]
        .iter()
        .map(|&s| received(s, 1 << 20, 255))
        .collect();
    let s = summarize(5, &recs);
    assert_eq!(s.reordering, vec![1, 1, 1]);
    let text = report::summary(&s, &header_stub(5), &ctx(), &[]);
    assert!(text.contains("1-reordering = 20.000000%\n2-reordering = 20.000000%\n3-reordering = 20.000000%\nno 4-reordering\n"), "{text}");
    let m = report::machine(&s, &header_stub(5), &ctx());
    assert!(
        m.contains("<NREORDERING>\n\t1\t1\n\t2\t1\n\t3\t1\n</NREORDERING>\n"),
        "{m}"
    );
}

#[test]
fn median_comes_from_the_histogram() {
    // Delays of 0.25 ms, 0.35 ms and 1.05 ms with 0.1 ms buckets: buckets 3, 4 and 11.
    let ms = |x: f64| (x / 1000.0 * 4_294_967_296.0) as u64;
    let recs = vec![
        received(0, ms(0.25), 255),
        received(1, ms(0.35), 250),
        received(2, ms(1.05), 255),
    ];
    let s = summarize(3, &recs);
    let edge = |b: f64| b * f64::from(0.0001f32);
    assert_eq!(s.median(), Some(edge(4.0)));
    assert_eq!(s.percentile(0.95), Some(edge(11.0)));
    assert_eq!(s.jitter(), Some(edge(11.0) - edge(4.0)));
    assert_eq!(s.ttl_range(), (2, 250, 255));
    let text = report::summary(&s, &header_stub(3), &ctx(), &[50.0, 95.0]);
    assert!(
        text.contains("hops takes 2 values; min hops = 0, max hops = 5\n"),
        "{text}"
    );
    assert!(text.contains("(err=4.66e-07 ms)"), "{text}");
    assert!(
        text.contains("Percentiles:\n\t50.0: 0.4 ms\n\t95.0: 1.1 ms\n"),
        "{text}"
    );
}

#[test]
fn records_after_a_closed_loss_window_are_refused() {
    use owamp_core::stats::StatsError;
    let mut info = info(4);
    info.loss_timeout = Interval::from_raw(INTERVAL);
    let mut stats = Stats::new(info.clone(), StatsConfig::default()).unwrap();
    let mut s = stats.summarize(0, None).unwrap();
    // Seq 2 arrives 5 ms after it was due, 15 ms after packet 0's window (10 ms) closed.
    s.push(&received(2, INTERVAL / 2, 255)).unwrap();
    assert_eq!(
        s.push(&received(0, 1 << 20, 255)),
        Err(StatsError::StaleRecord { seq: 0 })
    );
    // A record arriving after every packet's window closed: owstats gives up too.
    let mut stats = Stats::new(info, StatsConfig::default()).unwrap();
    let mut s = stats.summarize(0, None).unwrap();
    assert_eq!(
        s.push(&received(1, 100 * INTERVAL, 255)),
        Err(StatsError::PastEnd { seq: 1 })
    );
}
