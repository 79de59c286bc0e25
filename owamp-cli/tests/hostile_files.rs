//! The command-line tools on session files whose counts were made to hurt: nothing may be
//! allocated from a count in the file. Each tool runs in a child process with a bounded
//! address space, so that a regression fails the test instead of exhausting the machine.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use owamp_core::owp::{self, SessionHeader};
use owamp_core::time::Interval;
use owamp_core::time::{ErrorEstimate, OwampTime};
use owamp_core::wire::{DataRecord, RequestSession, SessionId, Slot, SlotKind, TypeP};

/// A finished session file whose request claims `num_packets` packets but which holds only a
/// few records.
fn write_session(path: &Path, num_packets: u32) {
    std::fs::write(path, session_bytes(num_packets, &[0, 1, 2, 3])).unwrap();
}

/// A finished session of `num_packets` packets 1/16 s apart, with records of the packets
/// `seqs` (received 1000 units after they were sent).
fn session_bytes(num_packets: u32, seqs: &[u32]) -> Vec<u8> {
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let start = OwampTime::from_raw(0xeeb2_5d00_0000_0000);
    let slot_gap = 1u64 << 28;
    let records: Vec<DataRecord> = seqs
        .iter()
        .map(|&seq| {
            let sent = OwampTime::from_raw(
                start
                    .raw()
                    .wrapping_add((u64::from(seq) + 1).wrapping_mul(slot_gap)),
            );
            DataRecord {
                seq,
                send_error: ErrorEstimate::from_raw(1),
                send_time: sent,
                recv_error: ErrorEstimate::from_raw(1),
                recv_time: OwampTime::from_raw(sent.raw() + 1000),
                ttl: 255,
            }
        })
        .collect();
    let request = RequestSession {
        conf_sender: false,
        conf_receiver: true,
        num_packets,
        sender_port: 1,
        receiver_port: 2,
        sender_address: lo,
        receiver_address: lo,
        sid: SessionId([9; 16]),
        padding_length: 0,
        start_time: start,
        timeout: Interval::from_raw(1 << 32),
        type_p: TypeP::BEST_EFFORT,
        hmac: [0; 16],
        slots: vec![Slot {
            kind: SlotKind::Fixed,
            mean: Interval::from_raw(slot_gap),
        }],
        slots_hmac: [0; 16],
    };
    let header = SessionHeader::new(
        request,
        Vec::new(),
        records.len() as u32,
        owp::header::FINISHED_NORMAL,
        4,
    );
    owp::to_bytes(&header, &records).unwrap()
}

/// Runs `bin args...` with at most 2 GB of address space; returns what it printed on
/// standard output within `max` (or up to `enough` octets), then stops it.
fn run_bounded(bin: &str, args: &[&str], enough: usize, max: Duration) -> Vec<u8> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 2000000 && exec \"$@\"")
        .arg("sh")
        .arg(bin)
        .args(args)
        .env("TZ", "UTC")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while got.len() < enough {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let _ = tx.send(got);
    });
    let t0 = Instant::now();
    let got = loop {
        if let Ok(g) = rx.try_recv() {
            break g;
        }
        if t0.elapsed() > max {
            break Vec::new();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    got
}

#[test]
fn owstats_sub_summaries_of_a_huge_packet_count_are_made_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("huge.owp");
    // 2^32 - 1 packets claimed: one range per packet with -N 1.
    write_session(&file, u32::MAX);
    let out = run_bounded(
        env!("CARGO_BIN_EXE_owstats"),
        &["-N", "1", file.to_str().unwrap()],
        64 * 1024,
        Duration::from_secs(60),
    );
    let text = String::from_utf8_lossy(&out);
    let summaries = text.matches("--- owping statistics from").count();
    assert!(
        summaries >= 3,
        "owstats printed {summaries} sub-summaries before ending: {text}"
    );
}

#[test]
fn owping_json_summary_bounds_the_schedule_it_derives() {
    // A server's answer claims 2^32-1 packets and holds one record, of the last packet but
    // one: deriving its send time means generating the whole schedule, billions of steps.
    let bytes = session_bytes(u32::MAX, &[u32::MAX - 1]);
    let peer = owamp_core::stats::report::EndpointName {
        host: "h".into(),
        addr: "127.0.0.1".into(),
        port: "1".into(),
    };
    // Refused for the bound on schedule steps (2^26 and 8 per record), before stepping: the
    // whole schedule would take many minutes.
    let r = owamp_cli::owping::json_summary("to", &bytes, &peer, &peer, 0.0001);
    let e = r.unwrap_err();
    assert!(e.contains("schedule"), "{e}");
}
