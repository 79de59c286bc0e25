//! The `stamp` binary over loopback: our STAMP sender against our TWAMP Light reflector and
//! the reverse (RFC 8762 4.6), authenticated STAMP, a wrong key, stateful numbering, and the
//! reflector's exit on SIGTERM. Each test runs a reflector process and a sender of a few
//! dozen packets 10 ms apart.
//!
//! Our TWAMP Light sender against our twampd is not tested: twampd reflects only sessions set
//! up over TWAMP-Control, and TWAMP Light has none.

#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{args, run, wait_bounded};

const STAMP: &str = env!("CARGO_BIN_EXE_stamp");
const LIMIT: Duration = Duration::from_secs(15);

struct Reflector {
    child: Child,
    addr: String,
    stderr: mpsc::Receiver<String>,
}

impl Reflector {
    fn start(extra: &[&str]) -> Reflector {
        let mut child = Command::new(STAMP)
            .args(["reflect", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let err = child.stderr.take().unwrap();
        let (tx, stderr) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("stamp: reflecting on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Reflector {
            child,
            addr,
            stderr,
        }
    }

    /// SIGTERM; returns the exit code and what it wrote to standard error.
    fn stop(mut self) -> (i32, String) {
        // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let code = wait_bounded(&mut self.child, LIMIT);
        // The reader thread may not have passed on the last lines yet: read until it ends
        // (the pipe closed with the process), each wait bounded.
        let mut err = Vec::new();
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(5)) {
            err.push(line);
        }
        (code, err.join("\n"))
    }
}

fn key_file(dir: &tempfile::TempDir, name: &str, hex: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, hex).unwrap();
    p.to_str().unwrap().to_owned()
}

/// `stamp send --json` against `addr`; returns the parsed summary and standard error.
fn send(addr: &str, extra: &[&str]) -> (serde_json::Value, String) {
    let mut a = vec!["send", "-c", "20", "-i", "0.01", "-L", "1", "--json"];
    a.extend_from_slice(extra);
    a.push(addr);
    let o = run(STAMP, &args(&a), "", LIMIT);
    assert_eq!(o.code, 0, "stamp send {a:?}: {}", o.stderr);
    (serde_json::from_str(&o.stdout).unwrap(), o.stderr)
}

fn assert_all_back(v: &serde_json::Value) {
    assert_eq!(v["sent"], 20, "{v}");
    assert_eq!(v["lost"], 0, "{v}");
    assert!(v["round_trip"]["min"].as_f64().unwrap() > 0.0, "{v}");
}

#[test]
fn stamp_sender_against_twamp_light_reflector() {
    let r = Reflector::start(&["--light"]);
    let (v, _) = send(&r.addr, &[]);
    assert_all_back(&v);
    let (code, err) = r.stop();
    assert_eq!(code, 0);
    assert!(err.contains("20 reflected, 0 malformed"), "{err}");
}

#[test]
fn twamp_light_sender_against_stamp_reflector() {
    let r = Reflector::start(&[]);
    let (v, _) = send(&r.addr, &["--light"]);
    assert_all_back(&v);
    // A TWAMP Light packet shorter than STAMP's base packet is answered all the same.
    let (v, _) = send(&r.addr, &["--light", "-s", "14"]);
    assert_all_back(&v);
    assert_eq!(r.stop().0, 0);
}

#[test]
fn authenticated_stamp_both_ways_and_a_wrong_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = key_file(
        &dir,
        "good",
        "000102030405060708090a0b0c0d0e0f\n101112131415161718191a1b1c1d1e1f\n",
    );
    let bad = key_file(&dir, "bad", &"ff".repeat(32));
    let r = Reflector::start(&["--auth-key-file", &good]);
    let (v, _) = send(&r.addr, &["--auth-key-file", &good]);
    assert_all_back(&v);
    let (v, err) = send(&r.addr, &["--auth-key-file", &bad]);
    assert_eq!(
        (v["sent"].as_u64(), v["lost"].as_u64()),
        (Some(20), Some(20))
    );
    assert!(err.contains("same key"), "{err}");
    // An unauthenticated sender is not answered either.
    let (v, _) = send(&r.addr, &[]);
    assert_eq!(v["lost"], 20);
    let (code, err) = r.stop();
    assert_eq!(code, 0);
    assert!(err.contains("wrong HMAC"), "{err}");
    assert!(
        err.contains("20 reflected, 20 malformed, 20 with a wrong HMAC"),
        "{err}"
    );
}

#[test]
fn stateful_reflector_numbers_its_replies() {
    let r = Reflector::start(&["--stateful"]);
    let o = run(
        STAMP,
        &args(&["send", "-c", "5", "-i", "0.01", "-L", "1", "-R", &r.addr]),
        "",
        LIMIT,
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    // -R: field 1 is the sender's sequence number, field 9 the reflector's.
    let seqs: Vec<(u32, u32)> = o
        .stdout
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].parse().unwrap(), f[8].parse().unwrap())
        })
        .collect();
    assert_eq!(seqs.len(), 5, "{}", o.stdout);
    let mut reflector_seqs: Vec<u32> = seqs.iter().map(|s| s.1).collect();
    reflector_seqs.sort();
    assert_eq!(reflector_seqs, [0, 1, 2, 3, 4]);
    assert_eq!(r.stop().0, 0);
}

#[test]
fn summary_layout_and_bad_arguments() {
    let r = Reflector::start(&[]);
    let o = run(
        STAMP,
        &args(&["send", "-c", "3", "-i", "0.01", "-L", "1", &r.addr]),
        "",
        LIMIT,
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stdout.contains("--- stamp statistics from ["),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains(&format!(
            "to [127.0.0.1]:{} ---",
            r.addr.rsplit(':').next().unwrap()
        )),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("3 sent, 0 lost (0.000%)"), "{}", o.stdout);
    assert_eq!(r.stop().0, 0);

    for bad in [
        vec!["send", "-s", "43", "127.0.0.1"],
        vec!["send", "-i", "x", "127.0.0.1"],
        vec!["send", "--auth-key-file", "/nonexistent/key", "127.0.0.1"],
        vec!["reflect", "--light", "--auth-key-file", "k"],
        vec![
            "reflect",
            "--stateful",
            "--max-peers",
            "0",
            "--listen",
            "127.0.0.1:0",
        ],
    ] {
        let o = run(STAMP, &args(&bad), "", LIMIT);
        assert_eq!(o.code, 1, "{bad:?}: {}", o.stderr);
        assert!(!o.stderr.is_empty());
    }
}
