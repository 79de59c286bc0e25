//! The runner over the TWAMP reference traces (testdata/traces/twamp): every trace replayed
//! through both TWAMP cores byte for byte, the failed authentication as a refused set-up, the
//! test-packet checks, the protocol found without the directory's hint, the importer on the
//! captures (also moved to the TWAMP port 862), and broken traces failing with the RFC 5357
//! check they break.

use std::path::{Path, PathBuf};

use conformance::import::{import, ImportOptions};
use conformance::runner::{run, vectors_from_dirs, Report};
use conformance::trace::Trace;
use owamp_core::control::Protocol;

const TWAMP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/traces/twamp");

fn run_dir(dir: &Path) -> Report {
    run(&vectors_from_dirs(&[dir.to_path_buf()]))
}

fn outcome<'a>(r: &'a Report, name_ends: &str) -> &'a conformance::runner::Outcome {
    r.vectors
        .iter()
        .find(|o| o.name.ends_with(name_ends))
        .unwrap_or_else(|| panic!("no vector {name_ends}"))
}

#[test]
fn every_twamp_trace_replays_through_both_cores() {
    let r = run_dir(Path::new(TWAMP));
    assert!(r.all_passed(), "{}", r.to_text());
    // 9 traces (6 scenarios, 3 decrypted twins) and 6 captures.
    assert_eq!(r.passed, 15, "{}", r.to_text());
    assert_eq!((r.replayed, r.not_replayed), (9, 0), "{}", r.to_text());
    for name in [
        "/a_open.trace",
        "/b_auth.trace",
        "/c_encrypted.trace",
        "/r_open_raw.trace",
        "/m_open_machine.trace",
    ] {
        let o = outcome(&r, name);
        let note = o.details.note.as_deref().unwrap_or("");
        assert!(
            note.starts_with("TWAMP (RFC 5357 3.1-3.8); "),
            "{name}: {note}"
        );
        assert!(
            note.contains("server 192 octets S>C identical; client 340 octets C>S identical"),
            "{name}: {note}"
        );
        for check in [
            "sender-seq (RFC 5357 4.1.2): 20 ok",
            "reflected-fields (RFC 5357 4.2.1): 20 ok",
            "copied-padding (RFC 5357 4.2.1): 20 ok",
            "sender-ttl (RFC 5357 4.2.1): 20 ok",
            "receive-before-send (RFC 5357 4.2.1): 20 ok",
        ] {
            assert!(note.contains(check), "{name}: {check} in {note}");
        }
    }
    for name in ["/b_auth.trace", "/c_encrypted.trace"] {
        let note = outcome(&r, name).details.note.clone().unwrap_or_default();
        assert!(
            note.contains("decrypted: 5 control HMACs and 40 test packets verified"),
            "{note}"
        );
    }
    // The refused set-up: the passphrase (the client's, wrong) opens the Token, the server
    // refuses with Server-Start Accept 1, and both sides replay.
    let note = outcome(&r, "/d_authfail.trace")
        .details
        .note
        .clone()
        .unwrap_or_default();
    assert!(
        note.contains("set-up refused")
            && note.contains("server 112 octets S>C identical; client 164 octets C>S identical"),
        "{note}"
    );
}

/// The traces copied into a directory that says nothing about the protocol.
fn copied(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for n in names {
        std::fs::copy(Path::new(TWAMP).join(n), dir.path().join(n)).unwrap();
    }
    dir
}

#[test]
fn the_protocol_is_found_without_the_directory() {
    // Open mode: the Request-TW-Session in the clear; encrypted: the same, once decrypted.
    let dir = copied(&["a_open.trace", "c_encrypted.trace"]);
    let r = run_dir(dir.path());
    assert!(r.all_passed(), "{}", r.to_text());
    assert_eq!(r.replayed, 2, "{}", r.to_text());
    for name in ["/a_open.trace", "/c_encrypted.trace"] {
        let note = outcome(&r, name).details.note.clone().unwrap_or_default();
        assert!(note.starts_with("TWAMP"), "{name}: {note}");
    }
    // A `protocol: owamp` header overrides what the stream shows: read as OWAMP, the
    // Request-TW-Session (command 5) is no command.
    let text = std::fs::read_to_string(Path::new(TWAMP).join("a_open.trace")).unwrap();
    std::fs::write(
        dir.path().join("a_open.trace"),
        format!("# protocol: owamp\n{text}"),
    )
    .unwrap();
    let r = run_dir(dir.path());
    let o = outcome(&r, "/a_open.trace");
    assert!(!o.passed);
    assert!(
        o.reason.as_deref().unwrap_or("").contains("command"),
        "{:?}",
        o.reason
    );
}

/// A broken copy of a_open.trace must fail with `want` in its reason.
fn broken(edit: impl Fn(&mut Trace), want: &str) {
    let mut t =
        Trace::parse(&std::fs::read_to_string(Path::new(TWAMP).join("a_open.trace")).unwrap())
            .unwrap();
    edit(&mut t);
    let dir = tempfile::tempdir().unwrap();
    let twamp = dir.path().join("twamp");
    std::fs::create_dir(&twamp).unwrap();
    std::fs::write(twamp.join("a_open.trace"), t.to_text()).unwrap();
    let r = run_dir(&twamp);
    let reason = r.vectors[0].reason.clone().unwrap_or_default();
    assert!(!r.vectors[0].passed, "{}", r.to_text());
    assert!(reason.contains(want), "want {want:?} in {reason}");
}

fn test_payload(t: &mut Trace, n: usize) -> &mut Vec<u8> {
    t.events
        .iter_mut()
        .filter_map(|e| match e {
            conformance::trace::Event::Test { payload, .. } => Some(payload),
            _ => None,
        })
        .nth(n)
        .unwrap()
}

#[test]
fn broken_twamp_traces_fail_with_their_rfc_check() {
    // The first reflector packet: Sender TTL (octet 40).
    broken(
        |t| test_payload(t, 1)[40] = 64,
        "sender-ttl (RFC 5357 4.2.1): 1 failed, first line 25",
    );
    // The second sender packet's sequence number.
    broken(|t| test_payload(t, 2)[3] = 7, "sender-seq (RFC 5357 4.1.2)");
    // The reflector's MBZ octet 14: the packet does not parse.
    broken(
        |t| test_payload(t, 3)[14] = 1,
        "reflector packet: non-zero MBZ octet at offset 14",
    );
    // The Request-TW-Session's Receiver Port: twping (and our client core) put the sender's
    // own port in both port fields.
    broken(
        |t| {
            let conformance::trace::Event::Control { bytes, .. } = &mut t.events[3] else {
                panic!()
            };
            bytes[15] ^= 1;
        },
        "C>S message 2 (Request-TW-Session), byte 15 (stream offset 179): replay mismatch",
    );
    // A Stop-Sessions from the server: only the client sends one in TWAMP (RFC 5357 3.8).
    broken(
        |t| {
            let mut stop = vec![3, 0, 0, 0, 0, 0, 0, 1];
            stop.resize(32, 0);
            t.events.insert(
                8,
                conformance::trace::Event::Control {
                    dir: conformance::trace::Direction::ServerToClient,
                    bytes: stop,
                    comment: None,
                },
            );
        },
        "the server sent with no request outstanding",
    );
}

fn capture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(TWAMP).join(name)).unwrap()
}

fn import_named(data: &[u8], name: &str) -> Trace {
    import(
        data,
        &ImportOptions {
            connection: 0,
            name: name.into(),
        },
    )
    .unwrap()
}

#[test]
fn the_importer_marks_clear_twamp_captures() {
    let t = import_named(&capture("a_open.pcap"), "a_open.pcap");
    assert_eq!(t.protocol(), Some(Protocol::Twamp));
    // Encrypted past the set-up, on a port that is not 862: the capture cannot tell.
    let t = import_named(&capture("c_encrypted.pcap"), "c_encrypted.pcap");
    assert_eq!(t.protocol(), None);
}

/// A classic Ethernet/IPv4 pcap with every TCP port `from` changed to `to` (checksums are not
/// fixed: the importer does not check them).
fn move_port(pcap: &[u8], from: u16, to: u16) -> Vec<u8> {
    let mut out = pcap.to_vec();
    let mut at = 24;
    while at + 16 <= out.len() {
        let caplen = u32::from_le_bytes(out[at + 8..at + 12].try_into().unwrap()) as usize;
        let frame = at + 16;
        let ip = frame + 14;
        if out.get(ip + 9) == Some(&6) {
            let tcp = ip + usize::from(out[ip] & 0x0f) * 4;
            for p in [tcp, tcp + 2] {
                if out[p..p + 2] == from.to_be_bytes() {
                    out[p..p + 2].copy_from_slice(&to.to_be_bytes());
                }
            }
        }
        at = frame + caplen;
    }
    out
}

#[test]
fn a_capture_on_port_862_is_twamp_even_when_encrypted() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["c_encrypted.pcap", "d_authfail.pcap"] {
        let moved = move_port(&capture(name), 8620, 862);
        let t = import_named(&moved, name);
        assert_eq!(t.protocol(), Some(Protocol::Twamp), "{name}");
        assert_eq!(t.header("server-control"), Some("127.0.0.1:862"));
        std::fs::write(dir.path().join(name), &moved).unwrap();
    }
    // No twin trace beside them, and an A/E capture names no passphrase: checked, not
    // replayed; the refused set-up replays on the server side.
    let r = run_dir(dir.path());
    assert!(r.all_passed(), "{}", r.to_text());
    let note = outcome(&r, "/d_authfail.pcap")
        .details
        .note
        .clone()
        .unwrap_or_default();
    assert!(
        note.starts_with("TWAMP") && note.contains("server 112 octets S>C identical"),
        "{note}"
    );
}

#[test]
fn the_binary_runs_the_twamp_directory() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_conformance"))
        .arg("run")
        .arg(PathBuf::from(TWAMP))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.ends_with("15 passed, 0 failed\n"), "{text}");
}

#[test]
fn every_twamp_capture_imports_to_its_trace() {
    for name in [
        "a_open",
        "b_auth",
        "c_encrypted",
        "d_authfail",
        "r_open_raw",
        "m_open_machine",
    ] {
        let t = import_named(&capture(&format!("{name}.pcap")), &format!("{name}.pcap"));
        let want = Trace::parse(
            &std::fs::read_to_string(Path::new(TWAMP).join(format!("{name}.trace"))).unwrap(),
        )
        .unwrap();
        conformance::trace::equivalent(&t, &want).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(t.header("import-warning"), None, "{name}");
    }
}
