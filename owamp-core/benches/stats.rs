//! Statistics over a session of a million packets, from memory and through the .owp reader.

use std::io::Cursor;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use owamp_core::owp::{self, OwpReader, SessionHeader};
use owamp_core::stats::{SessionMeta, Stats, StatsConfig};
use owamp_core::time::Interval;
use owamp_core::time::{ErrorEstimate, OwampTime};
use owamp_core::wire::{DataRecord, RequestSession, SessionId, Slot, SlotKind, TypeP};

const N: u32 = 1_000_000;
const START: u64 = 3_900_000_000 << 32;
/// 1 ms between packets.
const INTERVAL: u64 = 4_294_967;
/// 2 s loss timeout.
const TIMEOUT: u64 = 2 << 32;

fn header() -> SessionHeader {
    let req = RequestSession {
        conf_sender: true,
        conf_receiver: false,
        num_packets: N,
        sender_port: 8000,
        receiver_port: 9000,
        sender_address: "192.0.2.1".parse().unwrap(),
        receiver_address: "192.0.2.2".parse().unwrap(),
        sid: SessionId(*b"benchmark-sid-01"),
        padding_length: 0,
        start_time: OwampTime::from_raw(START),
        timeout: Interval::from_raw(TIMEOUT),
        type_p: TypeP(0),
        hmac: [0; 16],
        slots: vec![Slot {
            kind: SlotKind::Fixed,
            mean: Interval::from_raw(INTERVAL),
        }],
        slots_hmac: [0; 16],
    };
    SessionHeader::new(req, Vec::new(), N, 1, N)
}

/// A session with 1% loss, jittered delays and some reordering, in the order a receiver writes
/// it: lost-packet records once their timeout has passed.
fn records() -> Vec<DataRecord> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let sched = |s: u32| START + (u64::from(s) + 1) * INTERVAL;
    let err = ErrorEstimate::from_raw(0x8001);
    let mut out = Vec::with_capacity(N as usize);
    let mut pending_lost: std::collections::VecDeque<u32> = Default::default();
    let mut held: Option<DataRecord> = None;
    for s in 0..N {
        let r = rnd();
        if r % 100 == 0 {
            pending_lost.push_back(s);
            continue;
        }
        // 0.5 ms .. 20 ms delays.
        let delay = 2_147_483 + (r >> 8) % 85_899_345;
        let rec = DataRecord {
            seq: s,
            send_error: err,
            send_time: OwampTime::from_raw(sched(s)),
            recv_error: err,
            recv_time: OwampTime::from_raw(sched(s) + delay),
            ttl: 250 + (r % 3) as u8,
        };
        while let Some(&l) = pending_lost.front() {
            if sched(l) + TIMEOUT < rec.recv_time.raw() {
                out.push(DataRecord {
                    recv_time: OwampTime::from_raw(0),
                    ..rec
                });
                let last = out.len() - 1;
                out[last].seq = l;
                out[last].send_time = OwampTime::from_raw(sched(l));
                pending_lost.pop_front();
            } else {
                break;
            }
        }
        // Swap neighbours now and then.
        if r % 50 == 1 && held.is_none() {
            held = Some(rec);
            continue;
        }
        out.push(rec);
        if let Some(h) = held.take() {
            out.push(h);
        }
    }
    out.extend(held);
    for l in pending_lost {
        out.push(DataRecord {
            seq: l,
            send_error: err,
            send_time: OwampTime::from_raw(sched(l)),
            recv_error: err,
            recv_time: OwampTime::from_raw(0),
            ttl: 255,
        });
    }
    out
}

fn bench(c: &mut Criterion) {
    let h = header();
    let recs = records();
    let file = owp::to_bytes(&h, &recs).unwrap();
    let mut g = c.benchmark_group("stats");
    g.sample_size(10);
    g.throughput(Throughput::Elements(recs.len() as u64));
    g.bench_function("summary_1m_records_in_memory", |b| {
        b.iter(|| {
            let mut stats =
                Stats::new(SessionMeta::from_header(&h), StatsConfig::default()).unwrap();
            let mut s = stats.summarize(0, None).unwrap();
            for r in &recs {
                s.push(r).unwrap();
            }
            s.finish().unwrap()
        })
    });
    g.bench_function("summary_1m_records_from_owp_bytes", |b| {
        b.iter_batched(
            || Cursor::new(file.as_slice()),
            |cur| {
                let mut reader = OwpReader::new(cur).unwrap();
                let info = SessionMeta::from_header(reader.header());
                let mut stats = Stats::new(info, StatsConfig::default()).unwrap();
                let n = reader.stats_record_count(0);
                let mut s = stats.summarize(0, None).unwrap();
                for r in reader.records_from(0, n).unwrap() {
                    s.push(&r.unwrap()).unwrap();
                }
                s.finish().unwrap()
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
