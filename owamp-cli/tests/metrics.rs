//! The Prometheus endpoints (`--metrics`) of powstream and owampd on 127.0.0.1, scraped with a
//! plain HTTP GET: the families and their values against the sessions' own `-j` summaries and
//! the files owampd stored; a refused set-up counted with its reason; a port in use is a
//! start-up error. scripts/prometheus-test.sh does the same with a real Prometheus.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{wait_bounded, Daemon};

const POWSTREAM: &str = env!("CARGO_BIN_EXE_powstream");

/// A loopback port free a moment ago (the process given it binds it at once).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A scrape: status line, headers (names in lower case), body.
struct Scrape {
    status: String,
    headers: BTreeMap<String, String>,
    body: String,
}

/// `GET path` over a plain TCP connection, with timeouts.
fn get(addr: SocketAddr, path: &str) -> Scrape {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.take(1 << 20).read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Scrape {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// The samples of an OpenMetrics text: `name{labels}` as written, and the value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    assert!(text.ends_with("# EOF\n"), "{text}");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_owned(), v.parse::<f64>().unwrap())
        })
        .collect()
}

/// The metrics at `addr`, checked to be served as OpenMetrics.
fn scrape(addr: SocketAddr) -> BTreeMap<String, f64> {
    let s = get(addr, "/metrics");
    assert!(s.status.starts_with("HTTP/1.1 200"), "{}", s.status);
    assert_eq!(
        s.headers.get("content-type").map(String::as_str),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    samples(&s.body)
}

fn value(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("no {key} in {:#?}", m.keys().collect::<Vec<_>>()))
}

/// A powstream measuring to `server`, killed when dropped; the files it saved come on `files`.
struct Powstream {
    child: Child,
    dir: tempfile::TempDir,
    files: mpsc::Receiver<PathBuf>,
    metrics: SocketAddr,
}

impl Powstream {
    fn start(server: &str, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut child = Command::new(POWSTREAM)
            .args(["-c", "20", "-i", "0.01", "-L", "1", "-p", "-j", "-X", "50"])
            .args(extra)
            .arg("--metrics")
            .arg(metrics.to_string())
            .arg("-d")
            .arg(dir.path())
            .arg(server)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, files) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(PathBuf::from(line)).is_err() {
                    break;
                }
            }
        });
        Powstream {
            child,
            dir,
            files,
            metrics,
        }
    }

    /// Waits (bounded) until `n` sessions' JSON summaries are written.
    fn wait_sessions(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = 0;
        while seen < n {
            let left = deadline.saturating_duration_since(Instant::now());
            let f = self
                .files
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("{seen} of {n} sessions saved in time"));
            if f.to_string_lossy().ends_with(".sum.json") {
                seen += 1;
            }
        }
    }

    /// The JSON summaries of the first `n` sessions, in order.
    fn summaries(&self, n: usize) -> Vec<serde_json::Value> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(".sum.json"))
            .collect();
        v.sort();
        assert!(v.len() >= n, "{} summaries, {n} sessions counted", v.len());
        v.iter()
            .take(n)
            .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
            .collect()
    }
}

impl Drop for Powstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = wait_bounded(&mut self.child, Duration::from_secs(10));
    }
}

/// The counters and last-session gauges of one peer and direction agree with the sessions'
/// `-j` summaries (owamp-core's statistics, as owstats --json gives them).
fn check_powstream(p: &Powstream, peer: &str, direction: &str) {
    p.wait_sessions(2);
    let l = format!("peer=\"{peer}\",direction=\"{direction}\"");
    let key = format!("owamp_sessions_total{{{l},outcome=\"completed\"}}");
    // A session's files are printed just before it is counted.
    let m = scrape_until(p.metrics, |m| m.get(&key).is_some_and(|&n| n >= 2.0));
    let completed = value(&m, &key);
    assert!(completed >= 2.0, "{completed}");
    assert_eq!(
        value(
            &m,
            &format!("owamp_sessions_total{{{l},outcome=\"failed\"}}")
        ),
        0.0
    );
    // Sessions are saved in order, each before it is counted.
    let sums = p.summaries(completed as usize);
    let total = |key: &str| sums.iter().map(|s| s[key].as_f64().unwrap()).sum::<f64>();
    assert_eq!(
        value(&m, &format!("owamp_packets_sent_total{{{l}}}")),
        total("sent")
    );
    assert_eq!(
        value(&m, &format!("owamp_packets_lost_total{{{l}}}")),
        total("lost")
    );
    assert_eq!(
        value(&m, &format!("owamp_packets_duplicates_total{{{l}}}")),
        total("duplicates")
    );
    assert_eq!(
        value(&m, &format!("owamp_delay_seconds_count{{{l}}}")),
        total("sent") - total("lost")
    );
    assert_eq!(
        value(
            &m,
            &format!("owamp_delay_seconds_bucket{{le=\"+Inf\",{l}}}")
        ),
        total("sent") - total("lost")
    );
    let last = sums.last().unwrap();
    let near = |metric: f64, json: &serde_json::Value| {
        let j = json.as_f64().unwrap();
        // The JSON rounds to the picosecond.
        assert!((metric - j).abs() < 1e-9, "{metric} against {j}");
    };
    near(
        value(&m, &format!("owamp_loss_ratio{{{l}}}")),
        &serde_json::json!(last["loss_percent"].as_f64().unwrap() / 100.0),
    );
    let q = |x: &str| value(&m, &format!("owamp_last_session_{x}_delay_seconds{{{l}}}"));
    near(q("min"), &last["delay_min_s"]);
    near(q("median"), &last["delay_median_s"]);
    near(q("max"), &last["delay_max_s"]);
    // Loopback: no loss, delays between 0 and a second, no hop.
    assert_eq!(value(&m, &format!("owamp_loss_ratio{{{l}}}")), 0.0);
    assert!(
        q("min") > 0.0 && q("max") < 1.0,
        "{} {}",
        q("min"),
        q("max")
    );
    assert_eq!(value(&m, &format!("owamp_hops{{{l}}}")), 0.0);
    let sync = value(&m, "owamp_clock_synchronized");
    assert!(sync == 0.0 || sync == 1.0);
    assert!(value(&m, "owamp_clock_error_seconds") > 0.0);
}

/// The sizes of the complete `.owp` files under `dir`.
fn owp_octets(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() && e.path().extension().is_some_and(|x| x == "owp") {
                total += e.metadata().unwrap().len();
            }
        }
    }
    total
}

/// Polls owampd's metrics (bounded) until `want` holds.
fn scrape_until(
    addr: SocketAddr,
    want: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = scrape(addr);
        if want(&m) || Instant::now() > deadline {
            return m;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn powstream_and_owampd_serve_their_numbers() {
    let owampd_metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    // Open mode only, so that a client asking for another is refused.
    let d = Daemon::start(
        &format!("metrics {owampd_metrics}\nauthmode O\n"),
        None,
        None,
    );
    let server = d.addr();
    // One powstream receiving from owampd, one sending to it (owampd stores those sessions).
    let from = Powstream::start(&server, &[]);
    let to = Powstream::start(&server, &["-t"]);
    check_powstream(&from, &server, "from");
    check_powstream(&to, &server, "to");

    // A Set-Up-Response asking for a mode owampd did not offer (RFC 4656 3.1: Mode 2,
    // authenticated).
    let mut c = TcpStream::connect(&server).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut greeting = [0u8; 64];
    c.read_exact(&mut greeting).unwrap();
    let mut setup = [0u8; 164];
    setup[..4].copy_from_slice(&2u32.to_be_bytes());
    c.write_all(&setup).unwrap();
    let _ = c.read_to_end(&mut Vec::new());

    let m = scrape_until(owampd_metrics, |m| {
        m.get("owampd_refusals_total{reason=\"mode_not_offered\"}") == Some(&1.0)
    });
    assert_eq!(
        value(&m, "owampd_refusals_total{reason=\"mode_not_offered\"}"),
        1.0
    );
    assert_eq!(
        value(&m, "owampd_control_connections_total{outcome=\"refused\"}"),
        1.0
    );
    assert_eq!(
        value(&m, "owampd_refusals_total{reason=\"maxcontrolsessions\"}"),
        0.0
    );
    assert!(value(&m, "owampd_control_connections_total{outcome=\"accepted\"}") >= 4.0);
    assert_eq!(value(&m, "owampd_store_errors_total"), 0.0);
    // powstream sets sessions up ahead: some are always set up or running.
    assert!(value(&m, "owampd_active_sessions") >= 1.0);
    // Every counted octet is in a complete file (files complete before they are counted).
    let stored = value(&m, "owampd_stored_bytes_total");
    let on_disk = owp_octets(&d.path("data")) as f64;
    assert!(
        stored > 0.0 && stored <= on_disk,
        "{stored} counted, {on_disk} on disk"
    );
    assert!(value(&m, "owamp_clock_error_seconds") > 0.0);

    // Only /metrics is served.
    let s = get(owampd_metrics, "/other");
    assert!(s.status.starts_with("HTTP/1.1 404"), "{}", s.status);
}

#[test]
fn a_metrics_port_in_use_stops_powstream_at_start() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = common::run_with(
        Command::new(POWSTREAM)
            .args(["-X", "1", "--metrics", &addr, "-d"])
            .arg(dir.path())
            .arg("127.0.0.1:1"),
        "",
        Duration::from_secs(20),
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("--metrics: unable to listen on"),
        "{}",
        out.stderr
    );
    let out = common::run_with(
        Command::new(POWSTREAM)
            .args(["-X", "1", "--metrics", "nowhere", "-d"])
            .arg(dir.path())
            .arg("127.0.0.1:1"),
        "",
        Duration::from_secs(20),
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("expected ADDR:PORT"), "{}", out.stderr);
}

/// The endpoint on its own (an empty registry): a client that says nothing is closed at the
/// header timeout, while the others are served; oversized headers get no metrics; the
/// connections served at once are bounded.
#[test]
fn the_endpoint_bounds_what_clients_can_hold() {
    use owamp_cli::metrics::{MetricsServer, HEADER_TIMEOUT, MAX_CONNECTIONS};
    let server = MetricsServer::start(
        "127.0.0.1:0".parse().unwrap(),
        prometheus_client::registry::Registry::default(),
    )
    .unwrap();
    let addr = server.local_addr();
    assert_eq!(get(addr, "/metrics").body, "# EOF\n");

    // Silent clients, one fewer than the slots: a scrape is still served.
    let silent: Vec<TcpStream> = (0..MAX_CONNECTIONS - 1)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    assert!(get(addr, "/metrics").status.starts_with("HTTP/1.1 200"));
    // Each is closed once the header timeout has passed (bounded wait: 3 timeouts).
    for mut s in silent {
        s.set_read_timeout(Some(HEADER_TIMEOUT * 3)).unwrap();
        let mut buf = Vec::new();
        let r = s.read_to_end(&mut buf);
        assert!(r.is_ok(), "still open: {r:?}");
        assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    }

    // 64 KiB of headers: refused, not served.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let big = "x".repeat(64 * 1024);
    let _ = write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\n\r\n"
    );
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let answer = String::from_utf8_lossy(&buf);
    assert!(!answer.contains("200 OK"), "{answer}");
}
