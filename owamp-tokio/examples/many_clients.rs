//! A load generator: many concurrent OWAMP clients against one server, from one process.
//!
//! Each client connects, requests a session in each direction (the same number of packets at
//! the same mean interval), runs it, fetches what the server received and checks that every
//! packet arrived both ways. Used by `scripts/bench-many-clients.sh` to compare servers; it
//! is a benchmark tool, not a test.
//!
//! ```text
//! cargo run --release -p owamp-tokio --example many_clients -- \
//!     --server 127.0.0.1:861 --clients 1000 --packets 50 --interval-ms 100
//! ```
//!
//! Prints one summary line and exits 0 when every client completed with no loss, 1 otherwise.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use owamp_tokio::control::{run_test, ClientOptions, SessionSpec, TestPlan};

struct Args {
    server: SocketAddr,
    clients: u32,
    packets: u32,
    interval: Duration,
    /// Connections opened per second while ramping up.
    ramp: u32,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        server: "127.0.0.1:861".parse().map_err(|e| format!("{e}"))?,
        clients: 100,
        packets: 50,
        interval: Duration::from_millis(100),
        ramp: 200,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = || v.parse::<u32>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--server" => a.server = v.parse().map_err(|e| format!("--server {v}: {e}"))?,
            "--clients" => a.clients = num()?,
            "--packets" => a.packets = num()?,
            "--interval-ms" => a.interval = Duration::from_millis(u64::from(num()?)),
            "--ramp" => a.ramp = num()?.max(1),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if !a.server.ip().is_loopback() {
        return Err("this load generator only runs against a loopback address".into());
    }
    Ok(a)
}

#[derive(Default)]
struct Tally {
    complete: AtomicU64,
    failed: AtomicU64,
    lossy: AtomicU64,
    sent: AtomicU64,
    lost: AtomicU64,
}

fn main() {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("many_clients: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let tally = Arc::new(Tally::default());
    let t0 = Instant::now();
    rt.block_on(async {
        let mut opts = ClientOptions::default();
        // Precision does not matter to a load generator: sleep, never spin.
        opts.endpoint.max_spin = Duration::ZERO;
        opts.control.control_timeout = Duration::from_secs(60);
        let spec = SessionSpec::periodic(a.packets, a.interval);
        let mut tasks = Vec::new();
        let gap = Duration::from_secs(1) / a.ramp;
        for i in 0..a.clients {
            let opts = opts.clone();
            let spec = spec.clone();
            let tally = tally.clone();
            let server = a.server;
            // Every session starts after the ramp, so all of them run at once.
            let ramp_left = gap * (a.clients - i);
            tasks.push(tokio::spawn(async move {
                let plan = TestPlan {
                    send: Some(spec.clone()),
                    receive: Some(spec),
                    start_delay: ramp_left + Duration::from_secs(2),
                };
                let bounded = tokio::time::timeout(
                    ramp_left + Duration::from_secs(120),
                    run_test(server, &opts, &plan, None),
                );
                let r = match bounded.await {
                    Ok(r) => r,
                    Err(_) => {
                        tally.failed.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                };
                let Ok(r) = r else {
                    tally.failed.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                let mut ok = true;
                let mut loss = false;
                for d in [r.to, r.from].into_iter().flatten() {
                    match d.data {
                        Ok(s) => {
                            let lost = s.records.iter().filter(|r| r.is_lost()).count() as u64;
                            let n = s.records.len() as u64;
                            tally.sent.fetch_add(n, Ordering::Relaxed);
                            tally.lost.fetch_add(lost, Ordering::Relaxed);
                            if lost > 0 || n != u64::from(d.info.request.num_packets) {
                                loss = true;
                            }
                        }
                        Err(_) => ok = false,
                    }
                }
                let c = match (ok, loss) {
                    (false, _) => &tally.failed,
                    (true, true) => &tally.lossy,
                    (true, false) => &tally.complete,
                };
                c.fetch_add(1, Ordering::Relaxed);
            }));
            tokio::time::sleep(gap).await;
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    println!(
        "clients={} complete={} lossy={} failed={} records={} lost={} wall={:.1}s",
        a.clients,
        get(&tally.complete),
        get(&tally.lossy),
        get(&tally.failed),
        get(&tally.sent),
        get(&tally.lost),
        t0.elapsed().as_secs_f64()
    );
    let clean = get(&tally.complete) == u64::from(a.clients);
    std::process::exit(if clean { 0 } else { 1 });
}
