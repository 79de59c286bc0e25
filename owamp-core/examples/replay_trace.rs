//! Replaying a recorded exchange: the server state machine is fed the octets a perfSONAR
//! owping sent to a perfSONAR owampd (open mode, one session each way, then a fetch), with the
//! random values and times the recording shows, and must answer with exactly the octets
//! that owampd sent.
//!
//! The trace is `testdata/traces/reference/a_open.trace` (see the README beside it): lines
//! `C>S <hex>` and `S>C <hex>` are the control connection's segments in each direction. Run
//! it with `cargo run -p owamp-core --features replay --example replay_trace [TRACE]`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use owamp_core::control::replay::Recorded;
use owamp_core::control::{PortRange, ServerConfig};
use owamp_core::policy::{ClassLimits, Limits};
use owamp_core::wire::Modes;

/// The octets of one direction (`C>S ` or `S>C `), as segments.
fn segments(trace: &str, prefix: &str) -> Result<Vec<Vec<u8>>, String> {
    trace
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .map(|h| hex::decode(h.trim()).map_err(|e| e.to_string()))
        .collect()
}

fn run(path: &str) -> Result<usize, String> {
    let trace = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let (cs, sc) = (segments(&trace, "C>S ")?, segments(&trace, "S>C ")?);
    let recorded =
        Recorded::from_plaintext(&cs.concat(), &sc.concat()).map_err(|e| e.to_string())?;
    // The recording server's configuration: its start time, PBKDF2 count and test ports.
    let cfg = ServerConfig {
        start_time: recorded.server_start.start_time,
        kdf_count: recorded.greeting.count,
        test_ports: Some(PortRange {
            low: 8760,
            high: 8960,
        }),
        end_delay: Duration::ZERO,
        ..ServerConfig::default()
    };
    let policy = Limits::new(Modes::ALL, "regular", ClassLimits::default());
    let lo = |port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let parts: Vec<&[u8]> = cs.iter().map(Vec::as_slice).collect();
    let replayed = recorded.replay_server(cfg, policy, lo(8610), lo(40000), &parts);
    let want = sc.concat();
    if !replayed.errors.is_empty() {
        return Err(format!("inputs refused: {:?}", replayed.errors));
    }
    match replayed.sent.iter().zip(&want).position(|(a, b)| a != b) {
        None if replayed.sent.len() == want.len() => Ok(want.len()),
        at => Err(format!(
            "{} octets sent, {} recorded; first difference at {at:?}",
            replayed.sent.len(),
            want.len()
        )),
    }
}

fn default_trace() -> String {
    format!(
        "{}/../testdata/traces/reference/a_open.trace",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn main() {
    let path = std::env::args().nth(1).unwrap_or_else(default_trace);
    match run(&path) {
        Ok(n) => println!("{path}: the server sent the {n} recorded octets exactly"),
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn replays_the_reference_open_trace() {
        assert_eq!(super::run(&super::default_trace()).map(|n| n > 0), Ok(true));
    }
}
