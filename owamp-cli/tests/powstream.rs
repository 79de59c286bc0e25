//! powstream against owampd on 127.0.0.1: the files of a bounded run follow each other without
//! gaps, each reads back with owstats; an interrupt keeps what the session under way received;
//! a second powstream cannot write into the same directory. Every run is bounded by `-X` or a
//! signal, and every process is killed past a deadline.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{args, run, wait_bounded, Daemon};

const POWSTREAM: &str = env!("CARGO_BIN_EXE_powstream");

/// A session file name: start, end (64-bit NTP times) and the extension.
fn parse_name(path: &Path) -> (u64, u64, String) {
    let name = path.file_name().unwrap().to_str().unwrap();
    let (stem, ext) = name.split_once('.').unwrap();
    let (start, end) = stem.split_once('_').unwrap();
    assert_eq!(start.len(), 20, "{name}");
    assert_eq!(end.len(), 20, "{name}");
    (start.parse().unwrap(), end.parse().unwrap(), ext.to_owned())
}

/// The session files in `dir` by extension, each list sorted by name (so by start time).
fn files(dir: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    let mut m: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.starts_with('.') {
            continue;
        }
        let (_, _, ext) = parse_name(&path);
        m.entry(ext).or_default().push(path);
    }
    for v in m.values_mut() {
        v.sort();
    }
    m
}

/// owstats's "N sent" for a session file.
fn owstats_sent(path: &Path) -> u32 {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = owamp_cli::owstats::run(
        args(&["owstats", path.to_str().unwrap()]),
        &mut out,
        &mut err,
        &owamp_cli::sys::System,
    );
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    let out = String::from_utf8(out).unwrap();
    let line = out.lines().find(|l| l.contains(" sent, ")).unwrap();
    line.split(' ').next().unwrap().parse().unwrap()
}

/// The value of `key` in a machine-readable summary (.sum).
fn sum_value(path: &Path, key: &str) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('\t')))
        .unwrap_or_else(|| panic!("{key} in {}", path.display()))
        .to_owned()
}

fn powstream(extra: &[&str], dir: &Path, d: &Daemon) -> common::Output {
    let mut a = args(&["-c", "20", "-i", "0.01", "-L", "1", "-p", "-d"]);
    a.push(dir.into());
    a.extend(args(extra));
    a.push(d.addr().into());
    run(POWSTREAM, &a, "", Duration::from_secs(60))
}

#[test]
fn bounded_run_writes_back_to_back_sessions() {
    let d = Daemon::start("", None, None);
    let dir = tempfile::tempdir().unwrap();
    // More sessions than are set up ahead at the start (about 3.5 s of 0.2 s sessions), so
    // that later ones are requested while earlier ones are still running.
    let n = 24;
    let o = powstream(&["-X", &n.to_string()], dir.path(), &d);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let f = files(dir.path());
    let owp = &f["owp"];
    let sum = &f["sum"];
    assert_eq!(owp.len(), n, "{f:?}");
    assert_eq!(sum.len(), n, "{f:?}");
    assert_eq!(f.len(), 2, "{f:?}");
    // -p: each session's data file, then its summary.
    let printed: Vec<PathBuf> = o.stdout.lines().map(PathBuf::from).collect();
    let mut expected = Vec::new();
    for (a, b) in owp.iter().zip(sum) {
        expected.push(a.clone());
        expected.push(b.clone());
    }
    assert_eq!(printed, expected);
    let mut previous_end = None;
    for (o, s) in owp.iter().zip(sum) {
        let (start, end, _) = parse_name(o);
        assert_eq!(parse_name(s).0, start);
        assert_eq!(parse_name(s).1, end);
        assert!(start < end);
        // 20 packets at 10 ms on average: well under 2 s.
        assert!(end - start < 2 << 32, "{}", o.display());
        // Each session starts where the previous one's last packet was due.
        if let Some(p) = previous_end {
            assert_eq!(start, p, "gap before {}", o.display());
        }
        previous_end = Some(end);
        assert_eq!(owstats_sent(o), 20, "{}", o.display());
        assert_eq!(sum_value(s, "SENT"), "20");
        assert_eq!(sum_value(s, "SESSION_PACKET_COUNT"), "20");
        // The summary ends with the session's last packet, as the name does.
        assert_eq!(sum_value(s, "END_TIME"), format!("{end:020}"));
    }
}

#[test]
fn sender_direction_with_sub_sessions_and_json() {
    let d = Daemon::start("", None, None);
    let dir = tempfile::tempdir().unwrap();
    let o = powstream(&["-t", "-N", "5", "-j", "-X", "2"], dir.path(), &d);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let f = files(dir.path());
    let owp = &f["owp"];
    assert_eq!(owp.len(), 2, "{f:?}");
    assert_eq!(f["sum.json"].len(), 2, "{f:?}");
    // Per session: 4 sub-session summaries and the whole session's.
    assert_eq!(f["sum"].len(), 2 * 5, "{f:?}");
    for o in owp {
        let (start, end, _) = parse_name(o);
        assert_eq!(owstats_sent(o), 20);
        let whole = o.with_extension("sum");
        assert_eq!(sum_value(&whole, "SENT"), "20");
        // The sub-session summaries tile the session.
        let mut subs: Vec<(u64, u64, &PathBuf)> = f["sum"]
            .iter()
            .filter(|p| **p != whole)
            .map(|p| {
                let (s, e, _) = parse_name(p);
                (s, e, p)
            })
            .filter(|&(s, e, _)| s >= start && e <= end)
            .collect();
        subs.sort();
        assert_eq!(subs.len(), 4, "{subs:?}");
        assert_eq!(subs[0].0, start);
        assert_eq!(subs[3].1, end);
        for w in subs.windows(2) {
            assert_eq!(w[0].1, w[1].0);
        }
        for (_, _, p) in &subs {
            assert_eq!(sum_value(p, "SAMPLE_PACKET_COUNT"), "5");
            assert_eq!(sum_value(p, "SENT"), "5");
        }
        let json = std::fs::read_to_string(o.with_extension("sum.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["direction"], "to");
        assert_eq!(v["sent"], 20);
        assert_eq!(v["to"]["address"], "127.0.0.1");
    }
}

#[test]
fn interrupt_keeps_the_partial_session_and_the_directory_is_locked() {
    let d = Daemon::start("", None, None);
    let dir = tempfile::tempdir().unwrap();
    // 1000 packets at 10 ms: a 10 s session if not interrupted.
    let mut child = Command::new(POWSTREAM)
        .args(["-c", "1000", "-i", "0.01", "-L", "1", "-p", "-d"])
        .arg(dir.path())
        .arg(d.addr())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));

    // A second powstream on the same directory is refused at once.
    let mut a: Vec<OsString> = args(&["-X", "1", "-d"]);
    a.push(dir.path().into());
    a.push(d.addr().into());
    let second = run(POWSTREAM, &a, "", Duration::from_secs(20));
    assert_eq!(second.code, 1);
    assert!(
        second.stderr.contains("Unable to lock file"),
        "{}",
        second.stderr
    );

    // Let packets flow for a while, then interrupt once.
    std::thread::sleep(Duration::from_millis(2000));
    let t0 = Instant::now();
    // SAFETY: kill on the pid of a child we started and have not reaped.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let code = wait_bounded(&mut child, Duration::from_secs(15));
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(t0.elapsed() < Duration::from_secs(10));
    let f = files(dir.path());
    let owp = &f["owp"];
    assert_eq!(owp.len(), 1, "{f:?}");
    let (start, end, _) = parse_name(&owp[0]);
    let sent = owstats_sent(&owp[0]);
    assert!(sent > 0 && sent < 1000, "{sent}");
    // The name ends at the last packet the file holds, not at the planned end.
    let secs = (end - start) as f64 / 4_294_967_296.0;
    assert!(secs < 5.0, "{secs}");
    let whole = owp[0].with_extension("sum");
    assert_eq!(sum_value(&whole, "SENT"), sent.to_string());
    let printed: Vec<PathBuf> = out.lines().map(PathBuf::from).collect();
    assert_eq!(printed, vec![owp[0].clone(), whole]);
}

#[test]
fn bad_arguments_exit_with_status_1() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        &["-c", "twenty", "127.0.0.1"][..],
        &["-c", "30", "-N", "7", "127.0.0.1"],
        &["-L", "0", "127.0.0.1"],
        &[],
    ] {
        let mut a = args(&["-d"]);
        a.push(dir.path().into());
        a.extend(args(bad));
        let o = run(POWSTREAM, &a, "", Duration::from_secs(20));
        assert_eq!(o.code, 1, "{bad:?}");
        assert!(!o.stderr.is_empty());
        assert!(o.stdout.is_empty());
    }
    // Nothing was written, not even the lock file.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn bounded_run_against_no_server_ends_with_status_1() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut a = args(&["-X", "2", "-I", "1", "-c", "10", "-i", "0.05", "-d"]);
    a.push(dir.path().into());
    a.push(format!("127.0.0.1:{port}").into());
    let t0 = Instant::now();
    let o = run(POWSTREAM, &a, "", Duration::from_secs(20));
    assert_eq!(o.code, 1, "{}", o.stderr);
    // Each attempt counts against -X; the retry waits at most a session's duration.
    assert_eq!(
        o.stderr
            .matches("Unable to open control connection")
            .count(),
        2,
        "{}",
        o.stderr
    );
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert!(files(dir.path()).is_empty());
}

#[test]
fn sessions_too_short_to_keep_ahead_leave_reported_gaps() {
    let d = Daemon::start("", None, None);
    let dir = tempfile::tempdir().unwrap();
    // 2 packets at 10 ms: 32 sessions ahead last well under the loss timeout, so the stream
    // cannot stay gapless.
    let o = powstream(&["-c", "2", "-X", "40"], dir.path(), &d);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stderr.contains("Warning: Holes in data are likely"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("the stream has a gap of"), "{}", o.stderr);
    let f = files(dir.path());
    let owp = &f["owp"];
    assert_eq!(owp.len(), 40);
    let names: Vec<(u64, u64, String)> = owp.iter().map(|p| parse_name(p)).collect();
    let gaps = names.windows(2).filter(|w| w[1].0 != w[0].1).count();
    // Each gap was reported.
    assert_eq!(gaps, o.stderr.matches("the stream has a gap of").count());
    assert!(names.windows(2).all(|w| w[1].0 >= w[0].1));
    for p in owp {
        assert_eq!(owstats_sent(p), 2);
    }
}
