//! End to end: sender -> in-memory network injecting known losses, duplicates and reorderings
//! -> receiver -> .owp file -> reader -> statistics. The statistics must report exactly what
//! the network injected, in all three test packet modes.

mod session_support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Cursor;

use owamp_core::crypto::SecureMode;
use owamp_core::owp::{self, header::FINISHED_NORMAL, OwpReader, SessionHeader};
use owamp_core::session::{Schedule, Sender, SessionParams, TTL_UNKNOWN};
use owamp_core::stats::report::{self, EndpointName, ReportContext, Scale};
use owamp_core::stats::{
    PacketEvent, SessionMeta, Stats, StatsConfig, Summary, DEFAULT_BUCKET_WIDTH,
};
use owamp_core::time::Interval;
use owamp_core::time::{ErrorEstimate, OwampTime};
use owamp_core::wire::{DataRecord, RequestSession, SessionId, Slot, SlotKind, TypeP};
use proptest::prelude::*;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use session_support::sim::{self, Arrival, Delivery, MODES, SEC};

const SID: SessionId = SessionId([
    0x7f, 0, 0, 1, 0xee, 0xb2, 0x5d, 0x6f, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
]);
const START: u64 = 0xeeb2_5d6f_0000_0000;
const TIMEOUT: u64 = 2 * SEC;
/// Synchronised clocks with small errors, so that the summary's error is known too.
const ERR_SEND: ErrorEstimate = ErrorEstimate::from_raw(0x8002);
const ERR_RECV: ErrorEstimate = ErrorEstimate::from_raw(0x8003);
/// One microsecond: how far behind the packet it follows a late or duplicated copy arrives.
const EPS: u64 = SEC / 1_000_000;
/// The fixed one-way delay, 25.05 ms: mid-way in a 0.1 ms histogram bucket, so that rounding
/// the timestamps to doubles cannot move it to the next bucket.
const DELAY: u64 = 25 * (SEC / 1000) + SEC / 20_000;
/// TTL of the normal path, of the path every seventh packet takes, and of duplicate copies.
const TTL_MAIN: u8 = 64;
const TTL_ALT: u8 = 61;
const TTL_DUP: u8 = 60;

fn params(count: u32, padding: u32) -> SessionParams {
    let slot = Slot {
        kind: SlotKind::Exponential,
        mean: Interval::from_raw(SEC / 100), // 10 ms
    };
    SessionParams {
        schedule: Schedule::new(SID, &[slot], count).unwrap(),
        start: OwampTime::from_raw(START),
        timeout: Interval::from_raw(TIMEOUT),
        padding,
    }
}

/// What the network does: which packets it loses, which it delivers twice, and which it holds
/// back until right after a later one.
#[derive(Debug, Clone, Default)]
struct Plan {
    lost: BTreeSet<u32>,
    duplicated: BTreeSet<u32>,
    /// `late -> after`: packet `late` arrives just after packet `after` (> `late`).
    late: BTreeMap<u32, u32>,
}

impl Plan {
    fn ttl(seq: u32) -> u8 {
        if seq % 7 == 0 {
            TTL_ALT
        } else {
            TTL_MAIN
        }
    }

    /// The copies of packet `seq`: every packet takes DELAY, except a late one, which arrives
    /// EPS after the packet it waits for; a duplicate arrives EPS after the original.
    fn deliveries(&self, p: &SessionParams, seq: u32) -> Vec<Delivery> {
        if self.lost.contains(&seq) {
            return Vec::new();
        }
        let due = |s| p.schedule.send_time(p.start, s).unwrap().raw();
        let at = match self.late.get(&seq) {
            Some(&after) => due(after) + DELAY + EPS,
            None => due(seq) + DELAY,
        };
        let mut v = vec![Delivery {
            at: OwampTime::from_raw(at),
            ttl: Self::ttl(seq),
        }];
        if self.duplicated.contains(&seq) {
            v.push(Delivery {
                at: OwampTime::from_raw(at + EPS),
                ttl: TTL_DUP,
            });
        }
        v
    }

    /// The arrival order the plan means, derived from the plan alone.
    fn arrival_order(&self, count: u32) -> Vec<u32> {
        let mut order = Vec::new();
        let push = |s: u32, order: &mut Vec<u32>| {
            if !self.lost.contains(&s) {
                order.push(s);
                if self.duplicated.contains(&s) {
                    order.push(s);
                }
            }
        };
        for s in 0..count {
            if !self.late.contains_key(&s) {
                push(s, &mut order);
            }
            for (&l, _) in self.late.iter().filter(|&(_, &a)| a == s) {
                push(l, &mut order);
            }
        }
        order
    }

    /// The one-way delay of the first copy of `seq`, in 32.32 seconds.
    fn delay(&self, p: &SessionParams, seq: u32) -> u64 {
        let due = |s| p.schedule.send_time(p.start, s).unwrap().raw();
        match self.late.get(&seq) {
            Some(&after) => due(after) + DELAY + EPS - due(seq),
            None => DELAY,
        }
    }
}

fn request(p: &SessionParams) -> RequestSession {
    RequestSession {
        conf_sender: false,
        conf_receiver: true,
        num_packets: p.schedule.count(),
        sender_port: 8000,
        receiver_port: 9000,
        sender_address: "127.0.0.1".parse().unwrap(),
        receiver_address: "127.0.0.1".parse().unwrap(),
        sid: p.schedule.sid(),
        padding_length: p.padding,
        start_time: p.start,
        timeout: p.timeout,
        type_p: TypeP(0),
        hmac: [0; 16],
        slots: p.schedule.slots().to_vec(),
        slots_hmac: [0; 16],
    }
}

fn header(p: &SessionParams, records: &[DataRecord]) -> SessionHeader {
    let count = p.schedule.count();
    SessionHeader::new(
        request(p),
        Vec::new(),
        records.len() as u32,
        FINISHED_NORMAL,
        count,
    )
}

/// Sends the session through the network of `plan` and returns the arrivals and the records
/// the receiver serves.
fn run_network(
    p: &SessionParams,
    mode: Option<SecureMode>,
    plan: &Plan,
) -> (Vec<Arrival>, Vec<DataRecord>) {
    let mut tx = Sender::new(p.clone(), sim::protection(mode, &SID)).unwrap();
    let arrivals = sim::transmit(&mut tx, ERR_SEND, |seq, _| plan.deliveries(p, seq));
    assert!(tx.is_finished());
    let (accepted, records) = sim::receive_all(p, sim::protection(mode, &SID), &arrivals, ERR_RECV);
    let dups = accepted.iter().filter(|a| a.duplicate).count();
    assert_eq!(dups, plan.duplicated.len(), "receiver duplicates");
    (arrivals, records)
}

/// Reads a .owp file and computes its statistics, collecting the per-packet events.
fn stats_of<R: std::io::Read + std::io::Seek>(
    reader: R,
) -> (SessionHeader, Summary, Vec<PacketEvent>) {
    let mut r = OwpReader::new(reader).unwrap();
    let h = r.header().clone();
    let mut stats = Stats::new(SessionMeta::from_header(&h), StatsConfig::default()).unwrap();
    let n = r.stats_record_count(0);
    let mut sum = stats.summarize(0, None).unwrap();
    let mut events = Vec::new();
    for rec in r.records_from(0, n).unwrap() {
        events.extend(sum.push(&rec.unwrap()).unwrap());
    }
    (h, sum.finish().unwrap(), events)
}

fn seconds(raw: u64) -> f64 {
    raw as f64 / SEC as f64
}

/// Histogram bucket of a delay: owstats rounds delay / width up.
fn bucket(delay: f64) -> i32 {
    (delay / DEFAULT_BUCKET_WIDTH).ceil() as i32
}

/// The plan of the fixed scenario.
fn fixed_plan() -> Plan {
    Plan {
        lost: [3, 17, 40, 41, 42, 43, 44, 250, 399].into(),
        duplicated: [5, 9, 300].into(),
        // Swap 20 and 21; 30 arrives after 33; 150 after 160.
        late: [(20, 21), (30, 33), (150, 160)].into(),
    }
}

fn scenario(mode: Option<SecureMode>, padding: u32) {
    const COUNT: u32 = 400; // about 4 s at 10 ms: longer than the 2 s loss timeout
    let p = params(COUNT, padding);
    let plan = fixed_plan();
    let (arrivals, records) = run_network(&p, mode, &plan);

    // The network did what the plan says (this also checks that no two schedule gaps around
    // the injections are shorter than EPS, which would mix the order up).
    let order: Vec<u32> = arrivals.iter().map(|a| a.seq).collect();
    assert_eq!(order, plan.arrival_order(COUNT), "arrival order");
    // The early losses were declared while the session went on, so the statistics see lost
    // records between received ones, as in a real session longer than the timeout.
    let at = |seq: u32| records.iter().position(|r| r.seq == seq).unwrap();
    assert!(records[at(3)].is_lost() && at(3) < at(350));

    // Through a file on disk.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.owp");
    let mut file = File::create(&path).unwrap();
    owp::encode(&mut file, &header(&p, &records), records.iter().copied()).unwrap();
    drop(file);
    let (h, s, events) = stats_of(File::open(&path).unwrap());
    assert_eq!(h.request.num_packets, COUNT);

    // Counts.
    assert_eq!(s.sent, COUNT);
    assert_eq!(s.lost as usize, plan.lost.len());
    assert_eq!(s.duplicates as usize, plan.duplicated.len());
    let lost: BTreeSet<u32> = events
        .iter()
        .filter_map(|e| match e {
            PacketEvent::Lost { seq } => Some(*seq),
            _ => None,
        })
        .collect();
    assert_eq!(lost, plan.lost, "which packets were lost");
    let mut copies: BTreeMap<u32, u32> = BTreeMap::new();
    for e in &events {
        if let PacketEvent::Received { seq, .. } = e {
            *copies.entry(*seq).or_default() += 1;
        }
    }
    let duplicated: BTreeSet<u32> = copies
        .iter()
        .filter(|&(_, &c)| c > 1)
        .map(|(&s, _)| s)
        .collect();
    assert_eq!(duplicated, plan.duplicated, "which packets were duplicated");
    assert!(copies.values().all(|&c| c <= 2));

    // First and last scheduled send times: the sender's schedule.
    assert_eq!(s.start_time, p.schedule.send_time(p.start, 0).unwrap());
    assert_eq!(
        s.end_time,
        p.schedule.send_time(p.start, COUNT - 1).unwrap()
    );

    // RFC 4737 n-reordering, as owstats evaluates it: an arriving packet is n-reordered for
    // every n up to the number of packets received immediately before it that all carry a
    // larger sequence number. With the arrival order
    //   ... 19 21 20 22 ... 29 31 32 33 30 34 ... 149 151 ... 160 150 161 ...
    // 20 follows one larger packet (21): 1-reordered.
    // 30 follows three (31 32 33): 1-, 2- and 3-reordered.
    // 150 follows ten (151..160, none lost or duplicated): 1- to 10-reordered.
    // A duplicate follows its original (equal, not larger) and the packet after a loss follows
    // a smaller one, so neither counts. Hence n = 1: 3 packets, n = 2, 3: 2, n = 4..10: 1.
    assert_eq!(s.reordering, vec![3, 2, 2, 1, 1, 1, 1, 1, 1, 1]);
    let received = COUNT as usize - plan.lost.len();
    assert_eq!(s.reorder_seen as usize, received + plan.duplicated.len());

    // Delays: DELAY for every packet but the late ones, whose delay grows by the schedule gap
    // they waited for. Timestamps become doubles (about 0.5 us apart at this epoch) before
    // they are subtracted: compare within 2 us.
    let close = |got: Option<f64>, want: f64| {
        let got = got.unwrap();
        assert!((got - want).abs() < 2e-6, "{got} vs {want}");
    };
    let late_delays: Vec<u64> = plan.late.keys().map(|&l| plan.delay(&p, l)).collect();
    close(s.min_delay(), seconds(DELAY));
    close(s.max_delay(), seconds(*late_delays.iter().max().unwrap()));
    // Median and P95 are bucket edges (0.1 ms); all but three received packets share the
    // bucket of DELAY, and those are over 95 % of the packets sent.
    let median = s.median().unwrap();
    assert_eq!(
        median,
        f64::from(bucket(seconds(DELAY))) * DEFAULT_BUCKET_WIDTH
    );
    assert!(median >= seconds(DELAY) && median - seconds(DELAY) < DEFAULT_BUCKET_WIDTH);
    assert_eq!(s.jitter(), Some(0.0));
    // The whole histogram: first copies only.
    let mut want_hist: BTreeMap<i32, u32> = BTreeMap::new();
    for seq in (0..COUNT).filter(|s| !plan.lost.contains(s)) {
        let d = seconds(plan.delay(&p, seq));
        // Keep clear of bucket edges, where rounding could decide.
        let frac = d / DEFAULT_BUCKET_WIDTH - (d / DEFAULT_BUCKET_WIDTH).floor();
        assert!(
            frac > 0.05 && frac < 0.95,
            "seq {seq} delay {d} too near an edge"
        );
        *want_hist.entry(bucket(d)).or_default() += 1;
    }
    let got_hist: BTreeMap<i32, u32> = s.buckets.iter().copied().collect();
    assert_eq!(got_hist, want_hist);

    // TTL: first copies only, as injected.
    let alt = (0..COUNT)
        .filter(|s| !plan.lost.contains(s) && Plan::ttl(*s) == TTL_ALT)
        .count() as u32;
    let mut want_ttl = [0u32; 256];
    want_ttl[usize::from(TTL_ALT)] = alt;
    want_ttl[usize::from(TTL_MAIN)] = received as u32 - alt;
    assert_eq!(s.ttl, want_ttl);
    assert_eq!(s.ttl_range(), (2, TTL_ALT, TTL_MAIN));
    assert!(records.iter().all(|r| !r.is_lost() || r.ttl == TTL_UNKNOWN));

    // Errors: both clocks synchronised; the largest error is send + receive estimate.
    assert!(s.sync);
    assert_eq!(s.max_error, 5.0 / SEC as f64);

    // And owstats -M reports the same.
    let ctx = ReportContext {
        from: EndpointName::numeric(h.request.sender_address, h.request.sender_port),
        to: EndpointName::numeric(h.request.receiver_address, h.request.receiver_port),
        scale: Scale::Milliseconds,
        unix_timestamps: false,
        time: &report::utc_time,
    };
    let m = report::machine(&s, &h, &ctx);
    for line in [
        format!("SENT\t{COUNT}"),
        format!("LOST\t{}", plan.lost.len()),
        format!("DUPS\t{}", plan.duplicated.len()),
        format!("MINTTL\t{TTL_ALT}"),
        format!("MAXTTL\t{TTL_MAIN}"),
        "SYNC\t1".to_string(),
    ] {
        assert!(m.lines().any(|l| l == line), "{line:?} missing in\n{m}");
    }
    let reorder_block: Vec<&str> = m.lines().skip_while(|l| *l != "<NREORDERING>").collect();
    assert_eq!(
        reorder_block,
        [
            "<NREORDERING>",
            "\t1\t3",
            "\t2\t2",
            "\t3\t2",
            "\t4\t1",
            "\t5\t1",
            "\t6\t1",
            "\t7\t1",
            "\t8\t1",
            "\t9\t1",
            "\t10\t1",
            "</NREORDERING>"
        ]
    );
}

#[test]
fn open_mode_statistics_report_the_injection() {
    scenario(MODES[0], 0);
}

#[test]
fn authenticated_mode_statistics_report_the_injection() {
    scenario(MODES[1], 32);
}

#[test]
fn encrypted_mode_statistics_report_the_injection() {
    scenario(MODES[2], 7);
}

/// A random plan over `count` packets drawn from a seeded RNG: each packet is lost, delivered
/// once or delivered up to three times, every copy with its own delay (up to 0.5 s, well within
/// the loss timeout, against 10 ms gaps: heavy reordering).
fn random_fates(count: u32, rng: &mut ChaCha8Rng) -> Vec<Vec<u64>> {
    (0..count)
        .map(|_| {
            let copies = match rng.next_u32() % 20 {
                0..=1 => 0,
                2 => 2,
                3 => 3,
                _ => 1,
            };
            (0..copies)
                .map(|_| 1000 + rng.next_u64() % (SEC / 2))
                .collect()
        })
        .collect()
}

/// owstats's n-reordering over an arrival order (duplicates included in the history).
fn n_reordering(order: &[u32]) -> Vec<u32> {
    let mut counts: Vec<u32> = Vec::new();
    for (j, &s) in order.iter().enumerate() {
        let n = order[..j].iter().rev().take_while(|&&x| x > s).count();
        if counts.len() < n {
            counts.resize(n, 0);
        }
        for c in &mut counts[..n] {
            *c += 1;
        }
    }
    counts
}

proptest! {
    #[test]
    fn random_injections_are_reported_exactly(
        count in 1u32..150,
        seed in any::<u64>(),
        mode in 0usize..3,
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let fates = random_fates(count, &mut rng);
        let p = params(count, 0);
        let mut tx = Sender::new(p.clone(), sim::protection(MODES[mode], &SID)).unwrap();
        let arrivals = sim::transmit(&mut tx, ERR_SEND, |seq, due| {
            fates[seq as usize]
                .iter()
                .map(|&d| Delivery { at: OwampTime::from_raw(due.raw() + d), ttl: 64 })
                .collect()
        });
        let (_, records) =
            sim::receive_all(&p, sim::protection(MODES[mode], &SID), &arrivals, ERR_RECV);

        // Through the .owp encoding, in memory.
        let bytes = owp::to_bytes(&header(&p, &records), &records).unwrap();
        let (_, s, events) = stats_of(Cursor::new(bytes));

        let want_lost: BTreeSet<u32> =
            (0..count).filter(|&i| fates[i as usize].is_empty()).collect();
        let want_dups: usize = fates.iter().map(|f| f.len().saturating_sub(1)).sum();
        prop_assert_eq!(s.sent, count);
        prop_assert_eq!(s.lost as usize, want_lost.len());
        prop_assert_eq!(s.duplicates as usize, want_dups);
        let lost: BTreeSet<u32> = events
            .iter()
            .filter_map(|e| match e {
                PacketEvent::Lost { seq } => Some(*seq),
                _ => None,
            })
            .collect();
        prop_assert_eq!(lost, want_lost);
        let order: Vec<u32> = arrivals.iter().map(|a| a.seq).collect();
        prop_assert_eq!(s.reorder_seen as usize, order.len());
        prop_assert_eq!(&s.reordering, &n_reordering(&order));
    }
}
