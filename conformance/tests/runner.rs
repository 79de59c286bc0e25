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
    // Replayed through both cores: the 7 reference traces and the ESnet open-mode capture.
    // Not replayed: the ESnet A and E captures (passphrase unknown), and the ESnet failed
    // authentication, whose server side replays but whose client side needs the passphrase.
    assert_eq!((r.replayed, r.not_replayed), (8, 3), "{}", r.to_text());
}

/// The JSON report of `conformance run --json DIR...`.
fn json_report(dirs: &[PathBuf]) -> serde_json::Value {
    let out = bin().arg("run").arg("--json").args(dirs).output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

fn vector<'a>(report: &'a serde_json::Value, name_ends: &str) -> &'a serde_json::Value {
    report["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"].as_str().unwrap().ends_with(name_ends))
        .unwrap_or_else(|| panic!("no vector {name_ends}"))
}

#[test]
fn the_reference_traces_are_replayed_byte_for_byte() {
    let r = json_report(&[reference()]);
    assert_eq!(r["failed"], 0, "{r:#}");
    for (name, cs, sc) in [
        ("/a_open.trace", 596, 1024),
        ("/b_auth.trace", 596, 1024),
        ("/c_encrypted.trace", 596, 1024),
        ("/d_authfail.trace", 164, 112),
    ] {
        let v = vector(&r, name);
        assert_eq!(v["passed"], true, "{v:#}");
        let replay = &v["replay"];
        assert_eq!(replay["server"]["status"], "identical", "{name}: {v:#}");
        assert_eq!(replay["server"]["octets"], sc, "{name}");
        assert_eq!(replay["client"]["status"], "identical", "{name}: {v:#}");
        assert_eq!(replay["client"]["octets"], cs, "{name}");
    }
    // The A and E traces were decrypted and every HMAC verified.
    for name in ["/b_auth.trace", "/c_encrypted.trace"] {
        let note = vector(&r, name)["note"].as_str().unwrap().to_string();
        assert!(
            note.starts_with(
                "decrypted: 16 control HMACs and 40 test packets verified; same plaintext as"
            ),
            "{note}"
        );
    }
}

#[test]
fn traces_without_a_passphrase_pass_their_checks_but_are_not_replayed() {
    let r = json_report(&[Path::new(TRACES).join("esnet")]);
    assert_eq!(r["failed"], 0, "{r:#}");
    assert_eq!(r["replayed"], 1, "{r:#}");
    assert_eq!(r["not_replayed"], 3, "{r:#}");
    for name in ["/owamp-auth-A.pcap", "/owamp-auth-E.pcap"] {
        let v = vector(&r, name);
        for side in ["server", "client"] {
            assert_eq!(v["replay"][side]["status"], "not-possible", "{v:#}");
        }
        assert!(v["note"]
            .as_str()
            .unwrap()
            .contains("not replayed: the passphrase is unknown"));
    }
    let v = vector(&r, "/owamp-auth-failed.pcap");
    assert_eq!(v["replay"]["server"]["status"], "identical", "{v:#}");
    assert_eq!(v["replay"]["client"]["status"], "not-possible", "{v:#}");
    let v = vector(&r, "/owamp-O.pcap");
    assert_eq!(v["replay"]["client"]["status"], "identical", "{v:#}");
}

/// `text` with one octet of the `nth` (0-based) line starting with `tag` changed by `f`;
/// returns the text and the changed line's number.
fn corrupt(
    text: &str,
    tag: &str,
    nth: usize,
    octet: usize,
    f: impl Fn(u8) -> u8,
) -> (String, usize) {
    let mut seen = 0;
    let mut line = 0;
    let lines: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if let Some(hex) = l.strip_prefix(tag) {
                seen += 1;
                if seen == nth + 1 {
                    line = i + 1;
                    let mut b = hex::decode(hex).unwrap();
                    b[octet] = f(b[octet]);
                    return format!("{tag}{}", hex::encode(b));
                }
            }
            l.to_string()
        })
        .collect();
    (lines.join("\n") + "\n", line)
}

#[test]
fn a_corrupted_client_octet_after_set_up_fails_naming_message_byte_and_why() {
    let dir = tempfile::tempdir().unwrap();
    // Open mode: the receiver port of the first Request-Session (the client sends, so the port
    // is the server's to choose and the client leaves it zero). The framing is still valid;
    // the replay of the client shows the difference.
    let text = std::fs::read_to_string(reference().join("a_open.trace")).unwrap();
    let (bad, line) = corrupt(&text, "C>S ", 1, 15, |_| 0x21);
    let path = dir.path().join("a_open.trace");
    std::fs::write(&path, bad).unwrap();
    let out = bin().arg("run").arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text,
        format!(
            "FAIL {}: line {line}: C>S message 2 (Request-Session), byte 15 (stream offset 179): replay mismatch: our client core sent 0x00, the trace has 0x21\n0 passed, 1 failed\n",
            path.display()
        )
    );

    // Authenticated mode: one bit of the first Request-Session's ciphertext. Its HMAC fails;
    // with the decrypted twin beside it the altered octet itself is named.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(reference().join("b_auth.trace")).unwrap();
    let (bad, line) = corrupt(&text, "C>S ", 1, 20, |b| b ^ 0x04);
    std::fs::write(dir.path().join("b_auth.trace"), &bad).unwrap();
    let r = run(&vectors_from_dirs(&[dir.path().to_path_buf()]));
    assert_eq!((r.passed, r.failed), (0, 1), "{}", r.to_text());
    let why = r.vectors[0].reason.as_deref().unwrap();
    assert_eq!(
        why,
        format!("line {line}: C>S message 2 (Request-Session), byte 96 (stream offset 260): HMAC verification failed: the HMAC at bytes 96..112 does not match bytes 0..96 as decrypted: the ciphertext was altered or the keys are wrong")
    );
    std::fs::copy(
        reference().join("b_auth.plain.trace"),
        dir.path().join("b_auth.plain.trace"),
    )
    .unwrap();
    let r = run(&vectors_from_dirs(&[dir.path().to_path_buf()]));
    let why = r
        .vectors
        .iter()
        .find(|o| o.name.ends_with("/b_auth.trace"))
        .and_then(|o| o.reason.as_deref())
        .unwrap();
    assert!(
        why.ends_with(&format!("; decrypted and compared with b_auth.plain.trace, the altered ciphertext octet is at line {line}: C>S message 2 (Request-Session), byte 20 (stream offset 184)")),
        "{why}"
    );

    // A test packet of the encrypted trace: its HMAC fails.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(reference().join("c_encrypted.trace")).unwrap();
    let mut n = 0;
    let bad: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with("T ") {
                n += 1;
                if n == 5 {
                    // The last octet of the payload: inside the HMAC field.
                    let (head, last) = l.split_at(l.len() - 1);
                    return format!("{head}{}", if last == "0" { "1" } else { "0" });
                }
            }
            l.to_string()
        })
        .collect();
    std::fs::write(dir.path().join("c_encrypted.trace"), bad.join("\n") + "\n").unwrap();
    let r = run(&vectors_from_dirs(&[dir.path().to_path_buf()]));
    let why = r.vectors[0].reason.as_deref().unwrap();
    assert!(
        why.contains(": test packet 5 (") && why.contains("HMAC verification failed"),
        "{why}"
    );
}

#[test]
fn binary_prints_one_line_per_vector_and_the_total() {
    let out = bin().arg("run").arg(reference()).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(*lines.last().unwrap(), "12 passed, 0 failed");
    assert_eq!(
        lines[lines.len() - 2],
        "replays: 7 traces byte-identical through both cores, 0 not replayed (passed the checks that were possible)"
    );
    assert!(lines[..lines.len() - 2]
        .iter()
        .all(|l| l.starts_with("PASS ")));
    assert!(text.contains(
        "a_open.trace (replayed: server 1024 octets S>C identical; client 596 octets C>S identical)\n"
    ));

    let out = bin().arg("run").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.lines().last().unwrap().ends_with(" passed, 0 failed"));
    assert!(!text.contains("replays:"), "no trace was run");
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
