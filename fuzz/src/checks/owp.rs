//! Checks for the .owp session file reader (`owamp_core::owp`) and the statistics owstats
//! computes over what it reads (`owamp_core::stats`).

use std::io::Cursor;

use owamp_core::owp::{encode_two_way, read_two_way, to_bytes, OwpReader};
use owamp_core::stats::{SessionMeta, Stats, StatsConfig};
use owamp_core::wire::DataRecord;

/// Record length in a file.
const RECORD_LEN: u64 = DataRecord::LEN as u64;

/// Schedule offsets the statistics may compute per run, on top of 8 per record (owstats allows
/// 2^26; a small budget keeps a run short, about a millisecond at most, while still reaching
/// the limit check).
const SCHEDULE_BASE: u64 = 1 << 10;

/// Input: a .owp file.
///
/// - the reader never panics and never reads (or allocates for) more than the file holds;
/// - the records it streams are at most `record_count`, which fits in the file;
/// - a file whose records all read writes back (`owp::to_bytes`) to a file that reads as the
///   same header and records;
/// - the statistics over the records, as owstats runs them, never panic, and their counts are
///   consistent (lost and duplicates within what was sent, percentiles within the delays);
/// - the same for a two-way file (twping `-F`, [`two_way`]).
pub fn owp_reader(data: &[u8]) {
    two_way(data);
    let Ok(mut r) = OwpReader::new(Cursor::new(data)) else {
        return;
    };
    let len = data.len() as u64;
    assert_eq!(r.file_len(), len);
    let header = r.header().clone();
    assert!(header.records_offset <= len, "records offset past the end");
    let count = r.record_count();
    if !header.is_finished() {
        assert!(count <= len / RECORD_LEN);
    }
    let _ = r.stats_record_count(0);
    let _ = r.stats_record_count(u64::MAX);

    let mut records = Vec::new();
    let mut all_ok = true;
    match r.records() {
        Ok(it) => {
            for rec in it {
                match rec {
                    Ok(rec) => records.push(rec),
                    Err(_) => {
                        all_ok = false;
                        break;
                    }
                }
            }
        }
        Err(_) => all_ok = false,
    }
    assert!(records.len() as u64 <= count);
    assert!(records.len() as u64 * RECORD_LEN <= len);
    // Any window of records, as owstats -N asks for them.
    if let Ok(it) = r.records_from(count / 2, u64::MAX) {
        assert!(it.take(4).count() <= 4);
    }

    if all_ok && records.len() as u64 == count {
        if let Ok(bytes) = to_bytes(&header, &records) {
            let mut back = OwpReader::new(Cursor::new(&bytes[..]))
                .unwrap_or_else(|e| panic!("written file unreadable: {e}"));
            assert_eq!(
                back.header(),
                &header,
                "header differs after write and read"
            );
            let again: Vec<DataRecord> = back
                .records()
                .expect("records of a written file")
                .collect::<Result<_, _>>()
                .expect("records of a written file read");
            assert_eq!(again, records, "records differ after write and read");
        }
    }

    statistics(&header, &records, len);
}

/// A two-way file (twping `-F`): the reader never panics and reads no more records than the
/// file holds; what it reads writes back (`owp::encode_two_way`) to a file that reads as the
/// same packets; the two-way statistics over them never panic and count no more lost packets
/// than were sent.
fn two_way(data: &[u8]) {
    let Ok(f) = read_two_way(Cursor::new(data)) else {
        return;
    };
    let len = data.len() as u64;
    assert!(f.entries.len() as u64 * owamp_core::owp::two_way::RECORD_LEN <= len);
    let replies = f.replies();
    let sent = f.sent();
    assert!(sent as usize <= f.entries.len());
    let s = owamp_core::stats::twamp::TwoWaySummary::new(&replies, sent).with_lost(
        f.entries.iter().filter_map(|e| match e {
            owamp_core::owp::TwoWayEntry::Lost { send_error, .. } => Some(*send_error),
            owamp_core::owp::TwoWayEntry::Reply(_) => None,
        }),
    );
    assert!(s.lost <= s.sent, "{} lost of {} sent", s.lost, s.sent);
    let _ = (s.round_trip_percentile(0.0), s.round_trip.jitter());
    let mut bytes = Vec::new();
    if encode_two_way(&mut bytes, &f.header.request, &f.entries).is_ok() {
        let back = read_two_way(Cursor::new(&bytes[..]))
            .unwrap_or_else(|e| panic!("written two-way file unreadable: {e}"));
        assert_eq!(
            back.entries, f.entries,
            "packets differ after write and read"
        );
        assert_eq!(
            back.header,
            owamp_core::owp::two_way::header_for(&f.header.request),
            "header differs after write and read"
        );
    }
}

fn statistics(header: &owamp_core::owp::SessionHeader, records: &[DataRecord], len: u64) {
    let config = StatsConfig {
        schedule_limit: Some(SCHEDULE_BASE + len / RECORD_LEN * 8),
        ..StatsConfig::default()
    };
    let Ok(mut stats) = Stats::new(SessionMeta::from_header(header), config) else {
        return;
    };
    let Ok(mut sum) = stats.summarize(0, None) else {
        return;
    };
    for rec in records {
        if sum.push(rec).is_err() {
            return;
        }
    }
    let Ok(s) = sum.finish() else { return };
    assert!(s.lost <= s.sent, "{} lost of {} sent", s.lost, s.sent);
    let _ = (s.loss_fraction(), s.jitter(), s.ttl_range());
    if let (Some(min), Some(max), Some(median)) = (s.min_delay(), s.max_delay(), s.median()) {
        assert!(min <= max, "min delay {min} above max {max}");
        // The median comes from the histogram: within a bucket of the extremes, as long as the
        // bucket numbers fit in 32 bits. Beyond, owstats's bucket number saturates (its C
        // double-to-int conversion on x86 gives INT_MIN), and so does ours.
        let w = s.bucket_width;
        let fits = |d: f64| (d / w).abs() < f64::from(i32::MAX);
        if fits(min) && fits(max) {
            assert!(
                median >= min - w && median <= max + w,
                "median {median} outside [{min}, {max}] (bucket {w})"
            );
        }
    }
}
