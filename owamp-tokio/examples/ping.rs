//! A minimal async owping: measures both directions against an OWAMP server in open mode and
//! prints owstats's summary of each.
//!
//! ```text
//! cargo run -p owamp-tokio --example ping -- <server[:port]> [packets] [interval-ms]
//! ```
//!
//! Ctrl-C stops the test early; what was measured so far is still summarized.

use std::net::SocketAddr;
use std::time::Duration;

use owamp_core::stats::report::{self, EndpointName, ReportContext, Scale};
use owamp_core::stats::{SessionMeta, Stats, StatsConfig};
use owamp_tokio::control::{run_test, ClientOptions, DirectionResult, SessionSpec, TestPlan};
use owamp_tokio::StopToken;

/// OWAMP-Control's port (RFC 4656 2).
const OWAMP_PORT: u16 = 861;

/// owstats's summary of one direction: `from` sent, `to` received.
fn summarize(d: &DirectionResult, from: SocketAddr, to: SocketAddr) -> Result<String, String> {
    let session = d.data.as_ref().map_err(|e| e.to_string())?;
    let header = owamp_os::store::owp_header(session);
    let mut stats = Stats::new(SessionMeta::from_header(&header), StatsConfig::default())
        .map_err(|e| e.to_string())?;
    let mut sum = stats.summarize(0, None).map_err(|e| e.to_string())?;
    for r in &session.records {
        sum.push(r).map_err(|e| e.to_string())?;
    }
    let summary = sum.finish().map_err(|e| e.to_string())?;
    let ctx = ReportContext {
        from: EndpointName::numeric(from.ip(), from.port()),
        to: EndpointName::numeric(to.ip(), to.port()),
        scale: Scale::Milliseconds,
        unix_timestamps: false,
        time: &report::utc_time,
    };
    Ok(report::summary(&summary, &header, &ctx, &[]))
}

async fn resolve(target: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = target.parse::<SocketAddr>() {
        return Ok(a);
    }
    // A bare address or host name gets OWAMP's port.
    let bare = target.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, OWAMP_PORT));
    }
    let name = if target.contains(':') {
        target.to_string()
    } else {
        format!("{target}:{OWAMP_PORT}")
    };
    let mut addrs = tokio::net::lookup_host(name.as_str())
        .await
        .map_err(|e| format!("{target}: {e}"))?;
    addrs.next().ok_or_else(|| format!("{target}: no address"))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(target) = args.first() else {
        eprintln!("usage: ping <server[:port]> [packets] [interval-ms]");
        return std::process::ExitCode::from(2);
    };
    let packets = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let interval = Duration::from_millis(args.get(2).and_then(|a| a.parse().ok()).unwrap_or(100));
    let server = match resolve(target).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let spec = SessionSpec::poisson(packets, interval);
    let plan = TestPlan {
        send: Some(spec.clone()),
        receive: Some(spec),
        start_delay: Duration::from_secs(1),
    };
    let stop = StopToken::new();
    let on_ctrl_c = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_ctrl_c.stop();
        }
    });
    let results = match run_test(server, &ClientOptions::default(), &plan, Some(&stop)).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("owping: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut ok = true;
    for (d, outbound) in [(&results.to, true), (&results.from, false)] {
        let Some(d) = d else { continue };
        let (from, to) = if outbound {
            (d.info.local, d.info.peer)
        } else {
            (d.info.peer, d.info.local)
        };
        match summarize(d, from, to) {
            Ok(text) => print!("{text}"),
            Err(e) => {
                eprintln!("owping: {e}");
                ok = false;
            }
        }
    }
    if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
