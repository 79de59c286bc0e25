//! powstream with several peers against two of our owampds on 127.0.0.1 and a closed port:
//! each peer's sessions land in its own directory, per-peer settings of the `--peers` file
//! apply, the archive stream is read while powstream runs and every line is checked against
//! the schema, and the peer nobody answers is retried with backoff without holding the others
//! up. Every run is bounded by `-X`, and every process is killed past a deadline.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{args, run, Daemon};
use owamp_cli::powstream::archive::check_line;

const POWSTREAM: &str = env!("CARGO_BIN_EXE_powstream");

/// The session files of a directory by extension.
fn files(dir: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    let mut m: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.starts_with('.') {
            continue;
        }
        let (_, ext) = name.split_once('.').unwrap();
        m.entry(ext.to_owned()).or_default().push(path);
    }
    m
}

/// The value of `key` in a machine-readable summary (.sum).
fn sum_value(path: &Path, key: &str) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('\t')))
        .unwrap_or_else(|| panic!("{key} in {}", path.display()))
        .to_owned()
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn two_peers_and_a_dead_one_with_the_archive_read_while_running() {
    let d1 = Daemon::start("", None, None);
    let d2 = Daemon::start("", None, None);
    let dead = closed_port();
    let dir = tempfile::tempdir().unwrap();
    let peers = dir.path().join("peers");
    std::fs::write(
        &peers,
        format!(
            "# two live peers and one nobody answers\n\n{}\n{} direction=to count=10 interval=0.02 dscp=AF11 # towards it\n127.0.0.1:{dead}\n",
            d1.addr(),
            d2.addr()
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let archive = dir.path().join("archive.jsonl");
    let n = 3;
    let mut a = args(&["-c", "20", "-i", "0.01", "-L", "1", "-I", "1", "-X"]);
    a.push(n.to_string().into());
    a.extend(args(&["-d"]));
    a.push(out.clone().into());
    a.push("--peers".into());
    a.push(peers.clone().into());
    a.push("--archive".into());
    a.push(archive.clone().into());
    let t0 = Instant::now();
    let mut child = Command::new(POWSTREAM)
        .args(&a)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        for l in BufReader::new(stderr).lines() {
            s.push_str(&l.unwrap());
            s.push('\n');
        }
        s
    });

    // Read the archive as it grows, while powstream runs: each line whole when it appears.
    let mut lines: Vec<String> = Vec::new();
    let mut seen_while_running = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        let exited = child.try_wait().unwrap();
        if let Ok(text) = std::fs::read_to_string(&archive) {
            assert!(text.is_empty() || text.ends_with('\n'), "a partial line");
            let now: Vec<String> = text.lines().map(str::to_owned).collect();
            if exited.is_none() {
                seen_while_running = now.len();
            }
            lines = now;
        }
        if let Some(s) = exited {
            break s.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("powstream did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = err_reader.join().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(20));
    assert!(
        seen_while_running > 0,
        "no archive line before powstream ended"
    );

    let name1 = format!("127.0.0.1_{}", d1.port);
    let name2 = format!("127.0.0.1_{}", d2.port);
    let dead_name = format!("127.0.0.1_{dead}");
    // The dead peer saved nothing: the run as a whole reports a failure.
    assert_eq!(code, 1, "{stderr}");
    // It was tried -X times, with a backoff logged under its name.
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.contains(&format!("{dead_name}: Unable to open control connection")))
            .count(),
        n,
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{dead_name}: retrying in")),
        "{stderr}"
    );

    let mut by_peer: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for l in &lines {
        check_line(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        by_peer
            .entry(v["peer"].as_str().unwrap().to_owned())
            .or_default()
            .push(v);
    }
    assert_eq!(
        by_peer.keys().cloned().collect::<Vec<_>>(),
        {
            let mut v = vec![name1.clone(), name2.clone()];
            v.sort();
            v
        },
        "{lines:?}"
    );
    for (name, direction, count) in [(&name1, "from", 20), (&name2, "to", 10)] {
        let sessions = &by_peer[name];
        assert_eq!(sessions.len(), n, "{name}");
        let f = files(&out.join(name));
        assert_eq!(f["owp"].len(), n, "{name}: {f:?}");
        assert_eq!(f["sum"].len(), n, "{name}: {f:?}");
        for v in sessions {
            assert_eq!(v["complete"], true, "{v}");
            assert_eq!(v["error"], serde_json::Value::Null);
            assert_eq!(v["direction"], direction);
            assert_eq!(v["packets"], count);
            assert_eq!(v["sent"], count);
            assert_eq!(v["lost"], 0);
            let file = PathBuf::from(v["file"].as_str().unwrap());
            assert!(f["owp"].contains(&file), "{}", file.display());
            // The file is named by the archive's times.
            let stem = format!(
                "{}_{}",
                v["start_ntp"].as_str().unwrap(),
                v["end_ntp"].as_str().unwrap()
            );
            assert_eq!(file.file_stem().unwrap().to_str().unwrap(), stem);
            assert_eq!(
                sum_value(&file.with_extension("sum"), "SENT"),
                count.to_string()
            );
            let source = v["source"].as_str().unwrap();
            let destination = v["destination"].as_str().unwrap();
            let server_side = if direction == "from" {
                source
            } else {
                destination
            };
            assert!(server_side.starts_with("127.0.0.1:"), "{v}");
            assert!(v["start_time"].as_str().unwrap().ends_with('Z'));
        }
    }
    // No directory was made for nothing, but the dead peer's was taken (and holds its lock).
    assert!(files(&out.join(&dead_name)).is_empty());
}

#[test]
fn archive_to_standard_output_with_one_peer() {
    let d = Daemon::start("", None, None);
    let dir = tempfile::tempdir().unwrap();
    let mut a = args(&[
        "-c",
        "10",
        "-i",
        "0.01",
        "-L",
        "1",
        "-X",
        "2",
        "--archive",
        "-",
        "-d",
    ]);
    a.push(dir.path().into());
    a.push(d.addr().into());
    let o = run(POWSTREAM, &a, "", Duration::from_secs(20));
    assert_eq!(o.code, 0, "{}", o.stderr);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", o.stdout);
    for l in lines {
        check_line(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        // One peer: the operand as written, files in -d itself.
        assert_eq!(v["peer"], d.addr());
        assert_eq!(
            Path::new(v["file"].as_str().unwrap()).parent().unwrap(),
            dir.path()
        );
    }
}

#[test]
fn a_bad_peers_line_is_refused_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let peers = dir.path().join("peers");
    for (text, want) in [
        (
            "127.0.0.1\n127.0.0.2 speed=3\n",
            "peers:2: unknown key \"speed\"",
        ),
        ("127.0.0.1 count=0\n", "peers:1: Invalid value"),
        (
            "# c\n127.0.0.1 interval=soon\n",
            "peers:2: Invalid (-i) value",
        ),
        ("127.0.0.1 dscp=99\n", "peers:1: Invalid DSCP value"),
        ("127.0.0.1 mode=Q\n", "peers:1: Invalid -authmode"),
        (
            "127.0.0.1\n127.0.0.1:861\n",
            "peers:2: peer 127.0.0.1:861 is given twice",
        ),
        ("# nobody\n", "No test peer"),
    ] {
        std::fs::write(&peers, text).unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let mut a = args(&["-d"]);
        a.push(out.clone().into());
        a.push("--peers".into());
        a.push(peers.clone().into());
        let o = run(POWSTREAM, &a, "", Duration::from_secs(20));
        assert_eq!(o.code, 1, "{text}");
        assert!(o.stderr.contains(want), "{text}: {}", o.stderr);
        // Refused before anything was written.
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "{text}");
    }
    // A peer given with --peer takes the same syntax.
    let o = run(
        POWSTREAM,
        &args(&["--peer", "127.0.0.1 colour=red"]),
        "",
        Duration::from_secs(20),
    );
    assert_eq!(o.code, 1);
    assert!(
        o.stderr
            .contains("--peer \"127.0.0.1 colour=red\": unknown key"),
        "{}",
        o.stderr
    );
}
