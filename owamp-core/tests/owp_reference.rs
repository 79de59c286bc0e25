//! The reference .owp files read, decode as owstats -R shows them, and write back unchanged.

use std::io::Cursor;
use std::net::{IpAddr, Ipv4Addr};

use owamp_core::owp::{self, OwpReader};
use owamp_core::time::Interval;
use owamp_core::wire::{DataRecord, SlotKind};

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../testdata/traces/reference/owp/summary/"
);

fn load(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DIR}{name}")).unwrap()
}

fn read_all(bytes: &[u8]) -> (owp::SessionHeader, Vec<DataRecord>) {
    let mut r = OwpReader::new(Cursor::new(bytes)).unwrap();
    let recs = r.records().unwrap().collect::<Result<Vec<_>, _>>().unwrap();
    (r.header().clone(), recs)
}

/// Parses the owstats -R line "SEQ STIME SSYNC SERR RTIME RSYNC RERR TTL".
fn raw_fields(line: &str) -> (u32, u64, u64, u8) {
    let f: Vec<&str> = line.split(' ').collect();
    (
        f[0].parse().unwrap(),
        f[1].parse().unwrap(),
        f[4].parse().unwrap(),
        f[7].parse().unwrap(),
    )
}

#[test]
fn records_match_owstats_raw_output() {
    for dir in ["from", "to"] {
        let (_, recs) = read_all(&load(&format!("{dir}.owp")));
        let raw = std::fs::read_to_string(format!("{DIR}owstats_{dir}_raw.txt")).unwrap();
        let lines: Vec<&str> = raw.lines().collect();
        assert_eq!(lines.len(), recs.len());
        for (rec, line) in recs.iter().zip(lines) {
            let (seq, st, rt, ttl) = raw_fields(line);
            assert_eq!(rec.seq, seq);
            assert_eq!(rec.send_time.raw(), st);
            assert_eq!(rec.recv_time.raw(), rt);
            assert_eq!(rec.ttl, ttl);
            // Unsynchronised, multiplier 1, scale 0 (2.32831e-10 s).
            assert_eq!(rec.send_error.raw(), 0x0001);
            assert_eq!(rec.recv_error.raw(), 0x0001);
        }
    }
}

#[test]
fn header_fields_of_the_from_session() {
    let (h, recs) = read_all(&load("from.owp"));
    assert!(h.is_finished());
    assert_eq!(h.next_seqno, 20);
    assert_eq!(h.num_records, 20);
    assert_eq!(recs.len(), 20);
    assert_eq!(h.records_offset, 184);
    assert_eq!(h.skip_ranges_offset, 684);
    assert!(h.skip_ranges.is_empty());
    let r = &h.request;
    assert_eq!(r.num_packets, 20);
    assert_eq!((r.sender_port, r.receiver_port), (8838, 9170));
    assert_eq!(r.sender_address, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(r.receiver_address, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert!(r.conf_sender && !r.conf_receiver);
    assert_eq!(r.timeout, Interval::from_raw(8_590_402_744));
    assert_eq!(hex::encode(r.sid.0), "7f000001eeb25d9e00c8abd5ced58697");
    assert_eq!(h.slots().len(), 1);
    assert_eq!(h.slots()[0].kind, SlotKind::Exponential);
    assert_eq!(h.slots()[0].mean, Interval::from_raw(0x0ccc_cccc));
}

#[test]
fn reference_files_round_trip_byte_for_byte() {
    for name in ["from.owp", "to.owp"] {
        let bytes = load(name);
        let (h, recs) = read_all(&bytes);
        assert_eq!(owp::to_bytes(&h, &recs).unwrap(), bytes, "{name}");
    }
}

#[test]
fn new_header_lays_records_out_like_the_reference_receiver() {
    let (h, recs) = read_all(&load("from.owp"));
    let fresh = owp::SessionHeader::new(h.request.clone(), Vec::new(), recs.len() as u32, 1, 20);
    assert_eq!(fresh, h);
}
