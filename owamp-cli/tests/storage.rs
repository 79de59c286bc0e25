//! owampd writes received records to disk as they come: a session of any length is accepted
//! (the class's disk limit decides), and a crash of the daemon leaves a partial `.owp` file
//! that owstats reads. Bounded: short sessions, every process killed past a deadline.

mod common;

use common::{args, run, wait_bounded, Daemon};

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const OWPING: &str = env!("CARGO_BIN_EXE_owping");

/// The session files of owampd's data directory `data` (under `data/hierarchy`).
fn files(data: &Path, ext: &str) -> Vec<PathBuf> {
    common::session_files(data, ext)
}

fn owstats(path: &Path) -> (i32, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = owamp_cli::owstats::run(
        args(&["owstats", path.to_str().unwrap()]),
        &mut out,
        &mut err,
        &owamp_cli::sys::System,
    );
    (
        code,
        String::from_utf8_lossy(&out).into_owned() + &String::from_utf8_lossy(&err),
    )
}

/// "N sent" from a summary.
fn sent(summary: &str) -> u64 {
    let line = summary
        .lines()
        .find(|l| l.contains(" sent, "))
        .unwrap_or_else(|| panic!("no counts in {summary}"));
    line.split(' ').next().unwrap().parse().unwrap()
}

/// A receive session of 2^23 packets (over the old in-memory cap of 2^22) is accepted and
/// runs; killed with SIGKILL midway, owampd leaves `hierarchy/<class>/<sid>.owp.i` holding
/// what it received, which our owstats (and perfSONAR's, when it is at hand) summarise;
/// owping reports the failure with a non-zero exit. owampd then starts again on the same
/// directories although the killed one left its pid file behind (only a lock held by a live
/// daemon stops a start), keeps the partial file, unchanged, under its final name and linked
/// in the catalog, as perfSONAR's owampd keeps it (a session not finished: a whole fetch of
/// it is refused, RFC 4656 3.9, a range of records is served), and serves a test.
#[test]
fn kill_9_mid_session_leaves_a_partial_file_owstats_reads() {
    let mut d = Daemon::start("", None, None);
    let data = d.path("data");
    let mut child = Command::new(OWPING)
        .args(["-t", "-c", "8388608", "-i", "0.001", "-L", "1", &d.addr()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.starts_with("Approximately "), "{first}");
    // Sessions start about a second after the request; let a second or two of packets in.
    std::thread::sleep(Duration::from_millis(3500));
    assert!(
        files(&data, ".owp").is_empty(),
        "nothing is finished yet: {:?}",
        files(&data, "")
    );
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    let code = wait_bounded(&mut child, Duration::from_secs(20));
    assert_ne!(code, 0, "owping must fail when its results are lost");

    let partial = files(&data, ".owp.i");
    assert_eq!(partial.len(), 1, "{:?}", files(&data, ""));
    let (code, summary) = owstats(&partial[0]);
    assert_eq!(code, 0, "{summary}");
    let n = sent(&summary);
    // At 1,000 packets/s for one to three seconds.
    assert!((200..=5000).contains(&n), "{n} records: {summary}");
    assert!(summary.contains("0 lost"), "{summary}");

    // perfSONAR's owstats reads the same file, with the same counts.
    let reference = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/reference/perfsonar-owamp-5.2.3/bin/owstats");
    if reference.exists() {
        let r = Command::new(&reference)
            .arg(&partial[0])
            .output()
            .expect("reference owstats");
        let text = String::from_utf8_lossy(&r.stdout);
        assert!(r.status.success(), "{text}");
        assert_eq!(sent(&text), n, "{text}");
    } else {
        eprintln!("perfSONAR owstats not found: comparison skipped");
    }

    // The restart, over the stale pid file.
    let pid_file = d.path("owamp-server.pid");
    let stale = std::fs::read_to_string(&pid_file).expect("the killed daemon's pid file");
    assert_eq!(stale.trim(), d.child.id().to_string());
    let partial_bytes = std::fs::read(&partial[0]).unwrap();
    d.relaunch();
    let kept = PathBuf::from(partial[0].to_string_lossy().trim_end_matches(".i"));
    assert!(!partial[0].exists());
    assert_eq!(
        std::fs::read(&kept).unwrap(),
        partial_bytes,
        "the partial file is kept as it was, under its final name"
    );
    let sid = kept.file_stem().unwrap().to_str().unwrap().to_owned();
    assert!(common::catalog_link(&data, &sid).is_file(), "linked");
    let fresh = std::fs::read_to_string(&pid_file).unwrap();
    assert_eq!(fresh.trim(), d.child.id().to_string(), "pid file rewritten");
    let a = args(&["-t", "-c", "20", "-i", "0.01", "-L", "1", &d.addr()]);
    let o = run(OWPING, &a, "", Duration::from_secs(30));
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("20 sent, 0 lost"), "{}", o.stdout);
    assert_eq!(files(&data, ".owp").len(), 2, "the new session is stored");
    let (code, summary) = owstats(&kept);
    assert_eq!((code, sent(&summary)), (0, n), "{summary}");
    let (code, log) = d.terminate();
    assert_eq!(code, 0, "{log:?}");
    assert!(!pid_file.exists(), "a clean exit removes the pid file");
}

/// A session that ends normally is stored under its final name, and no partial file is
/// left.
#[test]
fn finished_sessions_leave_no_partial_file() {
    let d = Daemon::start("", None, None);
    let a = args(&["-t", "-c", "50", "-i", "0.01", "-L", "1", &d.addr()]);
    let o = run(OWPING, &a, "", Duration::from_secs(60));
    assert_eq!(o.code, 0, "{}", o.stderr);
    let data = d.path("data");
    assert!(files(&data, ".owp.i").is_empty());
    let done = files(&data, ".owp");
    assert_eq!(done.len(), 1);
    let (code, summary) = owstats(&done[0]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(sent(&summary), 50);
}
