//! What a stored session achieved, for `scripts/bench-max-rate.sh`: for each `.owp` file named
//! on the command line (as owping's -T/-F write them), one line
//! `packets N lost N lost_pct X achieved_pps Y`, where the achieved rate is the packets sent
//! between the first and the last packet received, over the time between their send
//! timestamps (RFC 4656 4.1.2: each is stamped as it leaves), so a sender that fell behind its
//! schedule shows a lower rate than the one asked for.
//!
//! `cargo run --release -p owamp-std --example session_rate -- FILE.owp...`; exits 1 if a
//! file cannot be read.

use std::fs::File;
use std::io::BufReader;

use owamp_core::owp::OwpReader;
use owamp_core::time::OwampTime;

fn rate(path: &str) -> Result<String, String> {
    let f = File::open(path).map_err(|e| e.to_string())?;
    let mut r = OwpReader::new(BufReader::new(f)).map_err(|e| e.to_string())?;
    let asked = r.header().request.num_packets;
    let mut packets = 0u64;
    let mut lost = 0u64;
    let mut first: Option<(u32, OwampTime)> = None;
    let mut last: Option<(u32, OwampTime)> = None;
    for rec in r.records().map_err(|e| e.to_string())? {
        let rec = rec.map_err(|e| e.to_string())?;
        packets += 1;
        if rec.is_lost() {
            lost += 1;
            continue;
        }
        match first {
            Some((s, _)) if s <= rec.seq => {}
            _ => first = Some((rec.seq, rec.send_time)),
        }
        match last {
            Some((s, _)) if s >= rec.seq => {}
            _ => last = Some((rec.seq, rec.send_time)),
        }
    }
    // Packets the file has no record of (a session cut short) count as lost.
    let missing = u64::from(asked).saturating_sub(packets);
    lost += missing;
    let achieved = match (first, last) {
        (Some((s0, t0)), Some((s1, t1))) if s1 > s0 && t1.diff_nanos(t0) > 0 => {
            f64::from(s1 - s0) / (t1.diff_nanos(t0) as f64 / 1e9)
        }
        _ => 0.0,
    };
    let pct = 100.0 * lost as f64 / f64::from(asked.max(1));
    Ok(format!(
        "packets {asked} lost {lost} lost_pct {pct:.4} achieved_pps {achieved:.0}"
    ))
}

fn main() {
    let mut status = 0;
    for path in std::env::args().skip(1) {
        match rate(&path) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("session_rate: {path}: {e}");
                status = 1;
            }
        }
    }
    std::process::exit(status);
}
