//! Truncated and corrupted .owp files give typed errors that say where, and never panic.

use std::io::Cursor;

use owamp_core::owp::{OwpError, OwpReader};
use owamp_core::stats::{SessionMeta, Stats, StatsConfig};
use proptest::prelude::*;

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../testdata/traces/reference/owp/summary/"
);

fn load(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DIR}{name}")).unwrap()
}

/// The field a truncation at `len` octets must be reported against (both reference files have
/// one slot, so the header ends at 184; their record count is trusted as they are finished).
fn expected_field(len: usize) -> Option<&'static str> {
    Some(match len {
        0..=3 => "magic",
        4..=7 => "version",
        8..=11 => "finished",
        12..=15 => "next seqno",
        16..=19 => "number of skip ranges",
        20..=23 => "number of records",
        24..=31 => "skip ranges offset",
        32..=39 => "records offset",
        40..=151 => "Request-Session",
        152..=183 => "schedule slots",
        _ => return None,
    })
}

#[test]
fn every_truncation_is_reported_with_its_field() {
    for name in ["from.owp", "to.owp"] {
        let bytes = load(name);
        for len in 0..bytes.len() {
            let err = OwpReader::new(Cursor::new(&bytes[..len])).unwrap_err();
            match (expected_field(len), &err) {
                (Some(want), OwpError::Truncated { field, offset, .. }) => {
                    assert_eq!(*field, want, "{name} cut at {len}: {err}");
                    assert!(*offset <= len as u64, "{name} cut at {len}: {err}");
                }
                // Past the header the record count (offset 20) no longer fits the file.
                (None, OwpError::Layout(msg)) => {
                    assert!(
                        msg.contains("number of records"),
                        "{name} cut at {len}: {msg}"
                    )
                }
                _ => panic!("{name} cut at {len}: unexpected {err}"),
            }
        }
    }
}

#[test]
fn specific_corruptions_name_the_field_and_offset() {
    let good = load("from.owp");
    let with = |at: usize, v: u8| {
        let mut b = good.clone();
        b[at] = v;
        OwpReader::new(Cursor::new(b)).unwrap_err()
    };
    assert!(matches!(with(0, b'X'), OwpError::BadMagic { .. }));
    assert!(matches!(
        with(7, 2),
        OwpError::UnsupportedVersion { version: 2 }
    ));
    // IPVN 5.
    assert!(matches!(with(41, 5), OwpError::Request(_)));
    // Slot type 7 at offset 152.
    let e = with(152, 7);
    assert!(e.to_string().contains("slot type"), "{e}");
    // Non-zero integrity padding.
    assert!(matches!(
        with(170, 1),
        OwpError::Invalid {
            field: "integrity zero padding",
            offset: 170,
            ..
        }
    ));
    // A second slot claimed by the request but absent from the layout.
    let e = with(47, 2);
    assert!(
        matches!(e, OwpError::Layout(ref m) if m.contains("slots")),
        "{e}"
    );
    // Records offset pointing into the header.
    let e = with(39, 0x10);
    assert!(matches!(e, OwpError::Layout(_)), "{e}");
}

#[test]
fn invalid_record_error_estimate_is_located() {
    let mut b = load("from.owp");
    // Record 3 starts at 184 + 75; its send error estimate multiplier is at +5.
    b[184 + 75 + 5] = 0;
    let mut r = OwpReader::new(Cursor::new(b)).unwrap();
    let results: Vec<_> = r.records().unwrap().collect();
    assert_eq!(results.len(), 4, "the stream stops at the bad record");
    match &results[3] {
        Err(OwpError::InvalidRecord {
            index: 3, offset, ..
        }) => assert_eq!(*offset, 184 + 75 + 4),
        other => panic!("{other:?}"),
    }
}

#[test]
fn skip_range_count_beyond_the_file_is_refused_before_allocating() {
    let mut b = load("to.owp");
    b[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
    let e = OwpReader::new(Cursor::new(b)).unwrap_err();
    assert!(
        matches!(
            e,
            OwpError::Truncated {
                field: "skip ranges",
                ..
            }
        ),
        "{e}"
    );
}

/// Reads everything and computes the statistics; errors are fine, panics are not.
fn exercise(bytes: &[u8]) {
    let Ok(mut r) = OwpReader::new(Cursor::new(bytes)) else {
        return;
    };
    let _ = r.records().map(|it| it.count());
    let h = r.header().clone();
    let config = StatsConfig {
        schedule_limit: Some(100_000),
        ..StatsConfig::default()
    };
    let Ok(mut stats) = Stats::new(SessionMeta::from_header(&h), config) else {
        return;
    };
    let n = r.stats_record_count(0);
    let Ok(mut sum) = stats.summarize(0, None) else {
        return;
    };
    let Ok(recs) = r.records_from(0, n) else {
        return;
    };
    for rec in recs {
        let Ok(rec) = rec else { return };
        if sum.push(&rec).is_err() {
            return;
        }
    }
    let _ = sum.finish();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn bit_flips_never_panic(
        which in 0usize..2,
        flips in proptest::collection::vec((0usize..684, 0u8..8), 1..6),
    ) {
        let mut b = load(if which == 0 { "from.owp" } else { "to.owp" });
        for (at, bit) in flips {
            b[at] ^= 1 << bit;
        }
        exercise(&b);
    }

    #[test]
    fn truncated_and_flipped_never_panic(
        len in 0usize..684,
        at in 0usize..684,
        bit in 0u8..8,
    ) {
        let mut b = load("from.owp");
        b[at] ^= 1 << bit;
        b.truncate(len);
        exercise(&b);
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_prefix_never_panic(
        keep in 0usize..200,
        tail in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut b = load("to.owp");
        b.truncate(keep);
        b.extend_from_slice(&tail);
        exercise(&b);
    }
}
