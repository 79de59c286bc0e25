//! How late each packet of a stored session left: its send timestamp minus its scheduled send
//! time (the session's start time plus the schedule's offset, RFC 4656 3.5 and Appendix B), for
//! each `.owp` file named on the command line (as owping's -T/-F or owampd write them).
//!
//! `cargo run --release -p owamp-std --example send_lateness -- FILE.owp...` prints one line per
//! file: packets received, then the median, 90th, 99th percentile and maximum lateness in µs
//! and the share of packets more than 100 µs late, then the median, 99th percentile and
//! maximum one-way delay in µs (receive minus send timestamp, as `scripts/bench-owd.sh`
//! compares them with the kernel-timestamp floor).

use std::fs::File;
use std::io::BufReader;

use owamp_core::owp::OwpReader;
use owamp_core::session::Schedule;

/// Each received packet's lateness and its one-way delay, in ns, each sorted.
fn lateness_ns(path: &str) -> Result<(Vec<i64>, Vec<i64>), String> {
    let f = File::open(path).map_err(|e| e.to_string())?;
    let mut r = OwpReader::new(BufReader::new(f)).map_err(|e| e.to_string())?;
    let req = r.header().request.clone();
    let schedule =
        Schedule::new(req.sid, &req.slots, req.num_packets).map_err(|e| e.to_string())?;
    let records = r.records().map_err(|e| e.to_string())?;
    let mut l = Vec::new();
    let mut delays = Vec::new();
    // Records come in sequence order: walk the schedule beside them (replaying it from the
    // start for each record would be quadratic in the session's length).
    let mut due = schedule.iter().peekable();
    for rec in records {
        let rec = rec.map_err(|e| e.to_string())?;
        if rec.is_lost() {
            continue;
        }
        if due.peek().is_some_and(|p| p.seq > rec.seq) {
            due = schedule.iter().peekable();
        }
        while due.peek().is_some_and(|p| p.seq < rec.seq) {
            due.next();
        }
        if let Some(p) = due.peek().filter(|p| p.seq == rec.seq) {
            l.push(rec.send_time.diff_nanos(p.send_time(req.start_time)));
        }
        delays.push(rec.recv_time.diff_nanos(rec.send_time));
    }
    l.sort_unstable();
    delays.sort_unstable();
    Ok((l, delays))
}

/// The `q` quantile of sorted nanoseconds, in µs.
fn at(v: &[i64], q: f64) -> f64 {
    v[((v.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0
}

fn main() {
    for path in std::env::args().skip(1) {
        match lateness_ns(&path) {
            Ok((l, d)) if !l.is_empty() && !d.is_empty() => {
                let late = l.iter().filter(|&&x| x > 100_000).count();
                println!(
                    "{path}: {} packets, late median {:.1} us, p90 {:.1} us, p99 {:.1} us, max {:.1} us, {:.1} % over 100 us; delay median {:.1} us, p99 {:.1} us, max {:.1} us",
                    l.len(),
                    at(&l, 0.5),
                    at(&l, 0.9),
                    at(&l, 0.99),
                    at(&l, 1.0),
                    100.0 * late as f64 / l.len() as f64,
                    at(&d, 0.5),
                    at(&d, 0.99),
                    at(&d, 1.0),
                );
            }
            Ok(_) => println!("{path}: no packets received"),
            Err(e) => println!("{path}: {e}"),
        }
    }
}
