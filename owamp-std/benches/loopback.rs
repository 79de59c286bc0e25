//! Loopback benchmark of the std adapter: packet rate, send-timestamp error (of a bare test
//! endpoint, and of whole measurements through the control drivers of both adapters), CPU time,
//! concurrent sessions. A plain program (`cargo bench -p owamp-std --bench loopback`) that
//! prints numbers; `OWAMP_BENCH_QUICK=1` shortens every part, and `OWAMP_BENCH_PARTS` (a
//! comma-separated list of `rate`, `endpoint`, `driver`, `concurrency`) runs only those.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use owamp_core::control::{ClientConfig, Mode, Role, ServerConfig};
use owamp_core::io::{SessionInfo, StoredSession};
use owamp_core::policy::AllowAll;
use owamp_core::session::Schedule;
use owamp_core::time::{Interval, OwampTime};
use owamp_core::wire::{RequestSession, SessionId, Slot, SlotKind, TypeP};
use owamp_os::clock::{Clock, SystemClock};
use owamp_os::net::TestSocket;
use owamp_os::store::MemoryStore;
use owamp_std::control::{run_test, ClientOptions, ServeConfig, Server, SessionSpec, TestPlan};
use owamp_std::endpoint::{EndpointConfig, EndpointResult, TestEndpoint};

fn lo() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

fn fixed(d: Duration) -> Interval {
    Interval::saturating_from_duration(d)
}

/// A sender and a receiver endpoint for one open-mode session on loopback.
fn pair(
    packets: u32,
    interval: Duration,
    timeout: Duration,
    start: OwampTime,
) -> (TestEndpoint, TestEndpoint) {
    let a = TestSocket::bind(SocketAddr::new(lo(), 0)).unwrap();
    let b = TestSocket::bind(SocketAddr::new(lo(), 0)).unwrap();
    // Large receive buffer so the measurement is of the endpoints, not of a small default.
    let _ = b.socket().set_recv_buffer_size(8 << 20);
    let sid = SessionId([7; 16]);
    let request = RequestSession {
        conf_sender: false,
        conf_receiver: true,
        num_packets: packets,
        sender_port: a.local_addr().port(),
        receiver_port: b.local_addr().port(),
        sender_address: lo(),
        receiver_address: lo(),
        sid,
        padding_length: 0,
        start_time: start,
        timeout: fixed(timeout),
        type_p: TypeP::BEST_EFFORT,
        hmac: [0; 16],
        slots: vec![Slot {
            kind: SlotKind::Fixed,
            mean: fixed(interval),
        }],
        slots_hmac: [0; 16],
    };
    let info = |role, local, peer| SessionInfo {
        sid,
        role,
        mode: Mode::Open,
        keys: None,
        local,
        peer,
        request: request.clone(),
    };
    let (al, bl) = (a.local_addr(), b.local_addr());
    (
        TestEndpoint::new(info(Role::Sender, al, bl), a).unwrap(),
        TestEndpoint::new(info(Role::Receiver, bl, al), b).unwrap(),
    )
}

struct Run {
    sent: u64,
    skipped: u64,
    received: u64,
    lost: u64,
    send_secs: f64,
    lateness: Vec<i64>,
    kernel_stamped: u64,
}

fn run_pair(packets: u32, interval: Duration, timeout: Duration) -> Run {
    let clock = SystemClock::new();
    let start = clock.now().saturating_add(Duration::from_millis(100));
    let (s, r) = pair(packets, interval, timeout, start);
    let cfg = EndpointConfig {
        record_send_lateness: true,
        margin: Duration::from_secs(2),
        ..EndpointConfig::default()
    };
    let r = r.start(&cfg, None).unwrap();
    let t0 = Instant::now();
    let s = s.start(&cfg, None).unwrap();
    let schedule = interval.as_secs_f64() * f64::from(packets);
    let bound = Duration::from_secs_f64(schedule + timeout.as_secs_f64() * 2.0 + 5.0);
    let Some(EndpointResult::Sender(so)) = s.finish_after(bound) else {
        panic!("sender")
    };
    let send_secs = t0.elapsed().as_secs_f64() - 0.1;
    let Some(EndpointResult::Receiver(ro)) = r.finish_after(timeout * 2 + Duration::from_secs(1))
    else {
        panic!("receiver")
    };
    let skipped = so
        .report
        .skips
        .iter()
        .map(|k| u64::from(k.last - k.first) + 1)
        .sum();
    Run {
        sent: so.sent,
        skipped,
        received: ro.stats().received,
        lost: ro.stats().lost,
        send_secs,
        lateness: so.lateness_nanos,
        kernel_stamped: ro.kernel_stamped,
    }
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn packet_rate(quick: bool) {
    println!("== packet rate (one open-mode session, loopback, fixed intervals) ==");
    println!(
        "{:>12} {:>9} {:>9} {:>9} {:>9} {:>12}",
        "interval", "packets", "sent", "skipped", "received", "sent/s"
    );
    let n = if quick { 20_000 } else { 100_000 };
    for interval_ns in [100_000u64, 20_000, 5_000, 0] {
        let interval = Duration::from_nanos(interval_ns);
        let r = run_pair(n, interval, Duration::from_secs(2));
        println!(
            "{:>10}us {:>9} {:>9} {:>9} {:>9} {:>12.0}",
            interval_ns as f64 / 1000.0,
            n,
            r.sent,
            r.skipped,
            r.received,
            r.sent as f64 / r.send_secs.max(1e-9)
        );
    }
}

fn send_error(quick: bool) {
    println!("== send timestamp minus scheduled time (one session, 1 ms interval) ==");
    let n = if quick { 1000 } else { 5000 };
    let r = run_pair(n, Duration::from_millis(1), Duration::from_secs(1));
    let mut l = r.lateness.clone();
    l.sort_unstable();
    println!(
        "packets {}  sent {}  received {}  lost {}  kernel-stamped {}",
        n, r.sent, r.received, r.lost, r.kernel_stamped
    );
    println!(
        "lateness: min {} ns  median {} ns  p99 {} ns  p99.9 {} ns  max {} ns",
        l.first().copied().unwrap_or(0),
        percentile(&l, 0.5),
        percentile(&l, 0.99),
        percentile(&l, 0.999),
        l.last().copied().unwrap_or(0)
    );
    let late = l.iter().filter(|&&x| x > 100_000).count();
    println!(
        "stamped more than 100 us late: {late} of {} ({:.2} %)",
        l.len(),
        100.0 * late as f64 / l.len().max(1) as f64
    );
}

/// Send timestamp minus scheduled send time, in nanoseconds, of every packet received in a
/// stored session (the schedule is the session's, RFC 4656 3.5 and Appendix B).
fn send_lateness(s: &StoredSession) -> Vec<i64> {
    let r = &s.request;
    let Ok(schedule) = Schedule::new(r.sid, &r.slots, r.num_packets) else {
        return Vec::new();
    };
    let mut l: Vec<i64> = s
        .records
        .iter()
        .filter(|x| !x.is_lost())
        .filter_map(|x| {
            let due = schedule.send_time(r.start_time, x.seq)?;
            Some(x.send_time.diff_nanos(due))
        })
        .collect();
    l.sort_unstable();
    l
}

/// User plus system CPU time of this process so far.
fn cpu_time() -> Duration {
    // SAFETY: rusage is plain integers and timevals, for which all zeroes is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a live, writable rusage that getrusage fills in.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn lateness_line(label: &str, l: &[i64]) {
    let late = l.iter().filter(|&&x| x > 100_000).count();
    println!(
        "{label:<34} {:>6} {:>9} {:>9} {:>9} {:>9} {:>10} {:>7.2}",
        l.len(),
        percentile(l, 0.5),
        percentile(l, 0.9),
        percentile(l, 0.99),
        percentile(l, 0.999),
        l.last().copied().unwrap_or(0),
        100.0 * late as f64 / l.len().max(1) as f64
    );
}

/// Whole measurements through the control drivers (the std client and server, the Tokio
/// client against the std server, and the std pair with spinning off), both directions at
/// once, Poisson schedules as owping's: how late each packet left, from the records, and the
/// process's CPU time per packet.
fn driver_send_error(quick: bool) {
    println!("== send timestamp minus scheduled time through the control drivers (both directions, Poisson) ==");
    let serve = |max_spin: Duration| {
        let mut config = ServeConfig::default();
        config.endpoint.max_spin = max_spin;
        let store = Arc::new(MemoryStore::with_limit(16));
        let server = Server::bind(SocketAddr::new(lo(), 0), config, AllowAll, store).unwrap();
        let addr = server.local_addr().unwrap();
        (addr, server.spawn().unwrap())
    };
    let default_spin = EndpointConfig::default().max_spin;
    let (spinning, spinning_server) = serve(default_spin);
    let (sleeping, sleeping_server) = serve(Duration::ZERO);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "{:<34} {:>6} {:>9} {:>9} {:>9} {:>9} {:>10} {:>7}",
        "sender (ns late)", "n", "median", "p90", "p99", "p99.9", "max", "%>100us"
    );
    let runs: &[(u32, u32)] = if quick {
        &[(1000, 1000), (10_000, 2000)]
    } else {
        &[(1000, 5000), (10_000, 20_000)]
    };
    // (client, server, tokio client, max_spin of both)
    let variants = [
        ("std client", "std server", false, default_spin),
        (
            "tokio client",
            "std server (tokio peer)",
            true,
            default_spin,
        ),
        (
            "std client, no spin",
            "std server, no spin",
            false,
            Duration::ZERO,
        ),
    ];
    for &(rate, packets) in runs {
        let spec = SessionSpec::poisson(packets, Duration::from_secs(1) / rate);
        let plan = TestPlan {
            send: Some(spec.clone()),
            receive: Some(spec),
            start_delay: Duration::from_millis(300),
        };
        for (client, server, tokio_client, max_spin) in variants {
            let mut opts = ClientOptions::default();
            opts.endpoint.max_spin = max_spin;
            let addr = if max_spin.is_zero() {
                sleeping
            } else {
                spinning
            };
            let cpu0 = cpu_time();
            let r = if tokio_client {
                rt.block_on(owamp_tokio::control::run_test(addr, &opts, &plan, None))
                    .map_err(|e| e.to_string())
            } else {
                run_test(addr, &opts, &plan, None).map_err(|e| e.to_string())
            };
            let cpu = cpu_time().saturating_sub(cpu0);
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    println!("{client}, {rate}/s: measurement failed: {e}");
                    continue;
                }
            };
            for (label, d) in [(client, r.to), (server, r.from)] {
                match d.map(|d| d.data) {
                    Some(Ok(s)) => lateness_line(&format!("{label}, {rate}/s"), &send_lateness(&s)),
                    _ => println!("{label}, {rate}/s: no data"),
                }
            }
            println!(
                "  process CPU (client and server): {:.3} s, {:.1} us per packet sent or received",
                cpu.as_secs_f64(),
                cpu.as_secs_f64() * 1e6 / (4.0 * f64::from(packets))
            );
        }
    }
    spinning_server.shutdown().unwrap();
    sleeping_server.shutdown().unwrap();
}

fn concurrency(quick: bool) {
    println!("== concurrent measurements (client and server in this process, both directions, 100 packets at 10 ms) ==");
    let store = Arc::new(MemoryStore::with_limit(4096));
    let config = ServeConfig {
        control: ServerConfig {
            end_delay: Duration::from_millis(200),
            control_timeout: Duration::from_secs(10),
            ..ServerConfig::default()
        },
        max_connections: 256,
        // Every client comes from 127.0.0.1.
        max_connections_per_addr: 0,
        ..ServeConfig::default()
    };
    let server = Server::bind(SocketAddr::new(lo(), 0), config, AllowAll, store).unwrap();
    let addr = server.local_addr().unwrap();
    let server = server.spawn().unwrap();
    let spec = SessionSpec {
        timeout: Duration::from_millis(500),
        ..SessionSpec::periodic(100, Duration::from_millis(10))
    };
    let plan = TestPlan {
        send: Some(spec.clone()),
        receive: Some(spec),
        start_delay: Duration::from_millis(500),
    };
    let levels: &[usize] = if quick { &[1, 8] } else { &[1, 8, 32, 64] };
    println!(
        "{:>6} {:>8} {:>10} {:>10} {:>8}",
        "N", "ok", "received", "expected", "wall s"
    );
    for &n in levels {
        let t0 = Instant::now();
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let plan = plan.clone();
                std::thread::spawn(move || {
                    let opts = ClientOptions {
                        control: ClientConfig {
                            end_delay: Duration::from_millis(200),
                            control_timeout: Duration::from_secs(10),
                            ..ClientConfig::default()
                        },
                        ..ClientOptions::default()
                    };
                    run_test(addr, &opts, &plan, None)
                })
            })
            .collect();
        let mut ok = 0;
        let mut received = 0usize;
        for h in handles {
            if let Ok(Ok(r)) = h.join() {
                ok += 1;
                for d in [r.to, r.from].into_iter().flatten() {
                    if let Ok(s) = d.data {
                        received += s.records.iter().filter(|x| !x.is_lost()).count();
                    }
                }
            }
        }
        println!(
            "{:>6} {:>8} {:>10} {:>10} {:>8.2}",
            n,
            ok,
            received,
            n * 200,
            t0.elapsed().as_secs_f64()
        );
    }
    server.shutdown().unwrap();
}

fn main() {
    let quick = std::env::var_os("OWAMP_BENCH_QUICK").is_some_and(|v| !v.is_empty());
    // `cargo test --benches` runs this with no `--bench`: do the quick version.
    let quick = quick || !std::env::args().any(|a| a == "--bench");
    let parts = std::env::var("OWAMP_BENCH_PARTS").unwrap_or_default();
    let run = |part: &str| parts.is_empty() || parts.split(',').any(|p| p.trim() == part);
    if run("rate") {
        packet_rate(quick);
    }
    if run("endpoint") {
        send_error(quick);
    }
    if run("driver") {
        driver_send_error(quick);
    }
    if run("concurrency") {
        concurrency(quick);
    }
}
