//! Files with skip ranges and unfinished files: layouts write and read back, and the statistics
//! leave skipped packets out.

use std::io::Cursor;

use owamp_core::owp::{self, OwpError, OwpReader, SessionHeader};
use owamp_core::stats::{SessionMeta, Stats, StatsConfig};
use owamp_core::time::Interval;
use owamp_core::time::{ErrorEstimate, OwampTime};
use owamp_core::wire::SkipRange;
use owamp_core::wire::{DataRecord, RequestSession, SessionId, Slot, SlotKind, TypeP};

const START: u64 = 3_900_000_000 << 32;
const INTERVAL: u64 = 1 << 28;

fn request(n: u32) -> RequestSession {
    RequestSession {
        conf_sender: false,
        conf_receiver: true,
        num_packets: n,
        sender_port: 8000,
        receiver_port: 9000,
        sender_address: "2001:db8::1".parse().unwrap(),
        receiver_address: "2001:db8::2".parse().unwrap(),
        sid: SessionId([3; 16]),
        padding_length: 12,
        start_time: OwampTime::from_raw(START),
        timeout: Interval::from_raw(2 << 32),
        type_p: TypeP(0),
        hmac: [0; 16],
        slots: vec![
            Slot {
                kind: SlotKind::Fixed,
                mean: Interval::from_raw(INTERVAL),
            },
            Slot {
                kind: SlotKind::Exponential,
                mean: Interval::from_raw(INTERVAL),
            },
        ],
        slots_hmac: [0; 16],
    }
}

fn rec(seq: u32) -> DataRecord {
    DataRecord {
        seq,
        send_error: ErrorEstimate::from_raw(0x8003),
        send_time: OwampTime::from_raw(START + u64::from(seq) * INTERVAL),
        recv_error: ErrorEstimate::from_raw(0x8003),
        recv_time: OwampTime::from_raw(START + u64::from(seq) * INTERVAL + 1000),
        ttl: 60,
    }
}

fn round_trip(h: &SessionHeader, recs: &[DataRecord]) -> (SessionHeader, Vec<DataRecord>) {
    let bytes = owp::to_bytes(h, recs).unwrap();
    let mut r = OwpReader::new(Cursor::new(&bytes)).unwrap();
    let got: Vec<_> = r.records().unwrap().map(Result::unwrap).collect();
    let h2 = r.header().clone();
    assert_eq!(owp::to_bytes(&h2, &got).unwrap(), bytes);
    (h2, got)
}

#[test]
fn skip_ranges_first_round_trip() {
    let recs: Vec<_> = (0..6).filter(|s| !(2..=3).contains(s)).map(rec).collect();
    let skips = vec![SkipRange { first: 2, last: 3 }];
    let h = SessionHeader::new(request(6), skips.clone(), recs.len() as u32, 1, 6);
    assert_eq!(h.skip_ranges_offset, h.header_len());
    let (h2, got) = round_trip(&h, &recs);
    assert_eq!(h2, h);
    assert_eq!(got, recs);
    assert_eq!(h2.skip_ranges, skips);
}

#[test]
fn skip_ranges_after_records_round_trip_and_bound_the_records() {
    let recs: Vec<_> = (0..5).map(rec).collect();
    let mut h = SessionHeader::new(request(8), Vec::new(), 5, 1, 5);
    // A receiver appends the sender's skip ranges after the records.
    h.skip_ranges = vec![SkipRange { first: 5, last: 7 }];
    h.skip_ranges_offset = h.records_offset + 5 * 25;
    let (h2, got) = round_trip(&h, &recs);
    assert_eq!(h2, h);
    assert_eq!(got, recs);
    let r = OwpReader::new(Cursor::new(owp::to_bytes(&h, &recs).unwrap())).unwrap();
    assert_eq!(
        r.stats_record_count(0),
        5,
        "the skip ranges are not records"
    );
    assert_eq!(r.stats_record_count(2), 3);
    // The bound counts every octet of the file, header and skip ranges included.
    assert_eq!(r.max_records(), r.file_len() / 25);
    assert!(r.max_records() > 5);
}

#[test]
fn unfinished_file_counts_records_from_its_size() {
    let recs: Vec<_> = (0..4).map(rec).collect();
    // An incomplete session whose record count was never written.
    let h = SessionHeader::new(request(10), Vec::new(), 0, 2, 0);
    let bytes = owp::to_bytes(&h, &recs).unwrap();
    let mut r = OwpReader::new(Cursor::new(&bytes)).unwrap();
    assert!(!r.header().is_finished());
    assert_eq!(r.record_count(), 4);
    assert_eq!(r.records().unwrap().count(), 4);
}

#[test]
fn inconsistent_layouts_are_not_written() {
    let recs: Vec<_> = (0..3).map(rec).collect();
    let mut h = SessionHeader::new(request(3), Vec::new(), 3, 1, 3);
    h.records_offset += 8;
    assert!(matches!(owp::to_bytes(&h, &recs), Err(OwpError::Layout(_))));
    let h = SessionHeader::new(request(3), Vec::new(), 3, 1, 3);
    // A finished header counting more records than given.
    assert!(matches!(
        owp::to_bytes(&h, &recs[..2]),
        Err(OwpError::Layout(_))
    ));
}

#[test]
fn skipped_packets_are_not_counted() {
    let recs: Vec<_> = (0..6).map(rec).collect();
    let h = SessionHeader::new(request(6), vec![SkipRange { first: 1, last: 2 }], 6, 1, 6);
    let mut stats = Stats::new(SessionMeta::from_header(&h), StatsConfig::default()).unwrap();
    let mut s = stats.summarize(0, None).unwrap();
    for r in &recs {
        s.push(r).unwrap();
    }
    let sum = s.finish().unwrap();
    assert_eq!(sum.sent, 4);
    assert_eq!(sum.lost, 0);
    assert_eq!(sum.buckets.iter().map(|b| b.1).sum::<u32>(), 4);
}

/// A file written as records come reads, at every point, as the records appended so far
/// (a record cut short by a crash is not counted), and once finished, as the whole session
/// with its skip ranges after the records.
#[test]
fn streamed_file_is_readable_midway_and_whole_at_the_end() {
    let recs: Vec<_> = (0..9).map(rec).collect();
    let mut w = owp::StreamWriter::begin(Cursor::new(Vec::new()), &request(12)).unwrap();
    for chunk in recs.chunks(4) {
        w.append(chunk).unwrap();
        let bytes = w.get_mut().get_ref().clone();
        let mut r = OwpReader::new(Cursor::new(&bytes)).unwrap();
        assert!(!r.header().is_finished());
        assert_eq!(r.record_count(), w.records());
        let got: Vec<_> = r.records().unwrap().map(Result::unwrap).collect();
        assert_eq!(got[..], recs[..w.records() as usize]);
        // Cut in the middle of the last record: one record less.
        let cut = &bytes[..bytes.len() - 7];
        let r = OwpReader::new(Cursor::new(cut)).unwrap();
        assert_eq!(r.record_count(), w.records() - 1);
    }
    let skips = vec![SkipRange { first: 9, last: 11 }];
    let bytes = w
        .finish(owamp_core::io::Finished::Normal, 9, &skips)
        .unwrap()
        .into_inner();
    let (h, got) = round_trip(
        &OwpReader::new(Cursor::new(&bytes))
            .unwrap()
            .header()
            .clone(),
        &recs,
    );
    assert!(h.is_finished());
    assert_eq!((h.next_seqno, h.num_records), (9, 9));
    assert_eq!(h.skip_ranges, skips);
    assert_eq!(h.records_offset, h.header_len());
    assert_eq!(h.skip_ranges_offset, h.records_offset + 9 * 25);
    assert_eq!(got, recs);
    // The file is the records-first layout of the same session, byte for byte.
    let expect = SessionHeader::records_first(request(12), skips, 9, 1, 9);
    assert_eq!(bytes, owp::to_bytes(&expect, &recs).unwrap());
}

/// Skip ranges known before the records (a Fetch-Session answer): written after the header,
/// the file reads midway as the records so far, and once finished it is byte for byte the
/// whole-file encoding of the same session (skip ranges first).
#[test]
fn streamed_file_with_leading_skips_is_the_whole_encoding() {
    let recs: Vec<_> = (0..9).map(rec).collect();
    let skips = vec![SkipRange { first: 9, last: 11 }];
    let mut w =
        owp::StreamWriter::begin_with_skips(Cursor::new(Vec::new()), &request(12), &skips).unwrap();
    for chunk in recs.chunks(4) {
        w.append(chunk).unwrap();
        let bytes = w.get_mut().get_ref().clone();
        let mut r = OwpReader::new(Cursor::new(&bytes)).unwrap();
        assert!(!r.header().is_finished());
        let got: Vec<_> = r.records().unwrap().map(Result::unwrap).collect();
        assert_eq!(got[..], recs[..w.records() as usize]);
    }
    let bytes = w
        .finish(owamp_core::io::Finished::Normal, 9, &skips)
        .unwrap()
        .into_inner();
    let expect = SessionHeader::new(request(12), skips.clone(), 9, 1, 9);
    assert_eq!(bytes, owp::to_bytes(&expect, &recs).unwrap());
    // Other skip ranges at the end than at the start: refused.
    let mut w =
        owp::StreamWriter::begin_with_skips(Cursor::new(Vec::new()), &request(12), &skips).unwrap();
    w.append(&recs).unwrap();
    let err = w
        .finish(owamp_core::io::Finished::Normal, 9, &[])
        .unwrap_err();
    assert!(matches!(err, OwpError::Layout(_)), "{err}");
    // Without skip ranges, both ways of starting write the same file.
    let mut a = owp::StreamWriter::begin(Cursor::new(Vec::new()), &request(12)).unwrap();
    let mut b =
        owp::StreamWriter::begin_with_skips(Cursor::new(Vec::new()), &request(12), &[]).unwrap();
    a.append(&recs).unwrap();
    b.append(&recs).unwrap();
    let fin = |w: owp::StreamWriter<Cursor<Vec<u8>>>| {
        w.finish(owamp_core::io::Finished::Normal, 9, &[])
            .unwrap()
            .into_inner()
    };
    assert_eq!(fin(a), fin(b));
}
