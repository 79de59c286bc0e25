//! The runner end to end: built-in vectors, the reference and ESnet traces, a corrupted trace,
//! an unreadable trace, JSON output and the importer, through the library and the binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use conformance::runner::{run, vectors_from_dirs};
use conformance::trace::{equivalent, Trace};

const TRACES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/traces");

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_conformance"))
}

fn reference() -> PathBuf {
    Path::new(TRACES).join("reference")
}

#[test]
fn builtin_vectors_pass() {
    let vs = conformance::vectors::builtin();
    assert!(vs.len() >= 70, "only {} built-in vectors", vs.len());
    let r = run(&vs);
    assert!(r.all_passed(), "{}", r.to_text());
}

#[test]
fn reference_and_esnet_traces_pass() {
    let dirs = [reference(), Path::new(TRACES).join("esnet")];
    let vs = vectors_from_dirs(&dirs);
    let r = run(&vs);
    assert!(r.all_passed(), "{}", r.to_text());
    // Every trace and capture is a vector: 7 traces and 5 captures in reference/, 4 captures
    // in esnet/.
    assert_eq!(r.passed, 16, "{}", r.to_text());
}

#[test]
fn binary_prints_one_line_per_vector_and_the_total() {
    let out = bin().arg("run").arg(reference()).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(*lines.last().unwrap(), "12 passed, 0 failed");
    assert!(lines[..lines.len() - 1]
        .iter()
        .all(|l| l.starts_with("PASS ")));
    assert!(text.contains("a_open.trace\n"));

    let out = bin().arg("run").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.lines().last().unwrap().ends_with(" passed, 0 failed"));
}

#[test]
fn a_flipped_byte_fails_with_message_offset_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(reference().join("a_open.trace")).unwrap();
    // Flip one bit in the MBZ octets of the Server-Start (its octet 5), the second S>C line.
    let mut seen = 0;
    let corrupted: Vec<String> = text
        .lines()
        .map(|l| {
            if let Some(hex) = l.strip_prefix("S>C ") {
                seen += 1;
                if seen == 2 {
                    let mut b = hex::decode(hex).unwrap();
                    b[5] ^= 0x08;
                    return format!("S>C {}", hex::encode(b));
                }
            }
            l.to_string()
        })
        .collect();
    let line = 1 + text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with("S>C "))
        .nth(1)
        .unwrap()
        .0;
    let path = dir.path().join("a_open.trace");
    std::fs::write(&path, corrupted.join("\n") + "\n").unwrap();

    let out = bin().arg("run").arg(dir.path()).output().unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let want = format!(
        "FAIL {}: line {line}: S>C message 2 (Server-Start), byte 5 (stream offset 69): Server-Start: non-zero MBZ octet at offset 5\n0 passed, 1 failed\n",
        path.display()
    );
    assert_eq!(text, want);

    // The same through --json.
    let out = bin()
        .arg("run")
        .arg("--json")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["passed"], 0);
    assert_eq!(v["failed"], 1);
    assert_eq!(v["vectors"][0]["passed"], false);
    assert!(v["vectors"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("byte 5 (stream offset 69)"));
}

#[test]
fn a_flipped_ciphertext_length_or_test_packet_fails() {
    let dir = tempfile::tempdir().unwrap();
    // A test packet cut below the 48 octets authenticated mode needs.
    let text = std::fs::read_to_string(reference().join("b_auth.trace")).unwrap();
    let cut: Vec<String> = text
        .lines()
        .map(|l| match l.strip_prefix("T ") {
            Some(_) if l.ends_with("7b1") => l[..l.len() - 4].to_string(),
            _ => l.to_string(),
        })
        .collect();
    assert_ne!(cut.join("\n") + "\n", text, "no packet was cut");
    std::fs::write(dir.path().join("b_auth.trace"), cut.join("\n") + "\n").unwrap();
    let r = run(&vectors_from_dirs(&[dir.path().to_path_buf()]));
    assert_eq!(r.failed, 1, "{}", r.to_text());
    let why = r.vectors[0].reason.as_deref().unwrap();
    assert!(
        why.contains("test packet 1 (127.0.0.1:9483->127.0.0.1:8828)")
            && why.contains("46 octets, shorter than the 48"),
        "{why}"
    );
}

#[test]
fn an_unreadable_trace_is_a_failure_not_a_skip() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.trace"), "# mode: open\nS>C 00zz\n").unwrap();
    std::fs::write(dir.path().join("empty.trace"), "# nothing\n").unwrap();
    std::fs::write(dir.path().join("junk.pcap"), "not a capture").unwrap();
    let r = run(&vectors_from_dirs(&[dir.path().to_path_buf()]));
    assert_eq!((r.passed, r.failed), (0, 3), "{}", r.to_text());
    let reasons: Vec<&str> = r
        .vectors
        .iter()
        .map(|o| o.reason.as_deref().unwrap())
        .collect();
    assert!(
        reasons[0].starts_with("not a valid trace: line 2: S>C: bad hex"),
        "{reasons:?}"
    );
    assert_eq!(reasons[1], "the trace holds no events");
    assert!(reasons[2].starts_with("cannot import: not a pcap or pcapng capture"));

    // An empty or missing directory fails too.
    let empty = tempfile::tempdir().unwrap();
    let r = run(&vectors_from_dirs(&[
        empty.path().to_path_buf(),
        empty.path().join("missing"),
    ]));
    assert_eq!(r.failed, 2, "{}", r.to_text());
}

#[test]
fn import_command_reproduces_the_reference_trace() {
    for s in ["a_open", "c_encrypted", "d_authfail"] {
        let out = bin()
            .arg("import")
            .arg(reference().join(format!("{s}.pcap")))
            .output()
            .unwrap();
        assert!(out.status.success());
        let got = Trace::parse(&String::from_utf8(out.stdout).unwrap()).unwrap();
        let want =
            Trace::parse(&std::fs::read_to_string(reference().join(format!("{s}.trace"))).unwrap())
                .unwrap();
        equivalent(&got, &want).unwrap();
        assert_eq!(
            got.header("provenance").unwrap(),
            format!("imported from {s}.pcap by conformance import")
        );
        assert_eq!(got.mode(), want.mode());
    }
}
