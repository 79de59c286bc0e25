//! The owstats binary prints, for the reference session files, what perfSONAR's owstats printed,
//! character for character apart from the reverse-resolved host names.

use std::path::Path;
use std::process::{Command, Output};

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../testdata/traces/reference/owp/summary/"
);

fn owstats(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_owstats"))
        .args(args)
        // The reference output shows times in UTC.
        .env("TZ", "UTC")
        .output()
        .unwrap()
}

/// Replaces the host names (which depend on the resolver) by a placeholder.
fn mask_hosts(text: &str) -> String {
    text.lines()
        .map(|l| {
            if let Some(rest) = l.strip_prefix("--- owping statistics from [") {
                let (_, after_from) = rest.split_once(']').unwrap();
                let (mid, to) = after_from.split_once(" to [").unwrap();
                let (_, tail) = to.split_once(']').unwrap();
                format!("--- owping statistics from [HOST]{mid} to [HOST]{tail}")
            } else if l.starts_with("FROM_HOST\t") || l.starts_with("TO_HOST\t") {
                format!("{}\tHOST", l.split('\t').next().unwrap())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + if text.ends_with('\n') { "\n" } else { "" }
}

fn check(dir: &str, kind: &str, flags: &[&str]) {
    let file = format!("{DIR}{dir}.owp");
    let mut args: Vec<&str> = flags.to_vec();
    args.push(&file);
    let out = owstats(&args);
    assert!(out.status.success(), "{dir} {kind}: {out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = String::from_utf8(out.stdout).unwrap();
    let want = std::fs::read_to_string(format!("{DIR}owstats_{dir}_{kind}.txt")).unwrap();
    assert_eq!(mask_hosts(&got), mask_hosts(&want), "{dir} {kind}");
}

#[test]
fn default_summary() {
    check("from", "default", &[]);
    check("to", "default", &[]);
}

#[test]
fn raw_records() {
    check("from", "raw", &["-R"]);
    check("to", "raw", &["-R"]);
}

#[test]
fn machine_summary() {
    check("from", "machine", &["-M"]);
    check("to", "machine", &["-M"]);
}

#[test]
fn verbose_packets() {
    check("from", "verbose", &["-v"]);
    check("to", "verbose", &["-v"]);
}

#[test]
fn masking_keeps_everything_but_the_names() {
    let a = "\n--- owping statistics from [localhost]:1 to [x.example]:2 ---\nFROM_HOST\ta\n";
    let b = "\n--- owping statistics from [other]:1 to [y]:2 ---\nFROM_HOST\tb\n";
    assert_eq!(mask_hosts(a), mask_hosts(b));
    let c = "\n--- owping statistics from [other]:3 to [y]:2 ---\nFROM_HOST\tb\n";
    assert_ne!(mask_hosts(a), mask_hosts(c));
}

#[test]
fn several_files_are_reported_in_order() {
    let from = format!("{DIR}from.owp");
    let to = format!("{DIR}to.owp");
    let out = owstats(&[&from, &to]);
    assert!(out.status.success());
    let want = std::fs::read_to_string(format!("{DIR}owstats_from_default.txt")).unwrap()
        + &std::fs::read_to_string(format!("{DIR}owstats_to_default.txt")).unwrap();
    assert_eq!(
        mask_hosts(&String::from_utf8(out.stdout).unwrap()),
        mask_hosts(&want)
    );
}

#[test]
fn sub_summaries_cover_the_session() {
    let file = format!("{DIR}to.owp");
    let out = owstats(&["-M", "-N", "7", &file]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let counts: Vec<u32> = text
        .lines()
        .filter_map(|l| l.strip_prefix("SAMPLE_PACKET_COUNT\t"))
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(counts, vec![7, 7, 6]);
    let sent: u32 = text
        .lines()
        .filter_map(|l| l.strip_prefix("SENT\t"))
        .map(|v| v.parse::<u32>().unwrap())
        .sum();
    assert_eq!(sent, 20);
}

#[test]
fn quiet_drops_verbose_and_machine_with_a_warning() {
    let file = format!("{DIR}to.owp");
    let out = owstats(&["-Q", "-v", "-M", &file]);
    assert!(out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("Ignoring '-v', '-Q' set"), "{err}");
    assert!(err.contains("Ignoring '-M', '-Q' set"), "{err}");
    let want = std::fs::read_to_string(format!("{DIR}owstats_to_default.txt")).unwrap();
    assert_eq!(
        mask_hosts(&String::from_utf8(out.stdout).unwrap()),
        mask_hosts(&want)
    );
}

#[test]
fn print_files_writes_named_summaries() {
    let dir = tempfile::tempdir().unwrap();
    let file = format!("{DIR}from.owp");
    let d = dir.path().to_str().unwrap();
    let out = owstats(&["-p", "-M", "-d", d, &file]);
    assert!(out.status.success(), "{out:?}");
    let name = "17199912864893280780_17199912870397671847.sum";
    let listed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(listed.trim_end(), Path::new(d).join(name).to_str().unwrap());
    let written = std::fs::read_to_string(dir.path().join(name)).unwrap();
    let want = std::fs::read_to_string(format!("{DIR}owstats_from_machine.txt")).unwrap();
    assert_eq!(mask_hosts(&written), mask_hosts(&want));
}

#[test]
fn a_bad_file_gives_one_line_naming_it_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(format!("{DIR}from.owp")).unwrap();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (bytes[..100].to_vec(), "Request-Session"),
        (bytes[..300].to_vec(), "number of records"),
        (b"not an owp file at all".to_vec(), "magic"),
    ];
    for (i, (content, what)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.owp"));
        std::fs::write(&path, content).unwrap();
        let out = owstats(&[path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        assert!(out.stdout.is_empty());
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&format!("owstats: {}: ", path.display())),
            "{err}"
        );
        assert!(err.contains(what), "{err}");
    }
    let out = owstats(&["/nonexistent/x.owp"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .starts_with("owstats: /nonexistent/x.owp: "));
}

#[test]
fn invalid_flag_values_are_refused() {
    for args in [
        &["-n", "x"][..],
        &["-b", "0"],
        &["-a", "101"],
        &["-N", "abc"],
    ] {
        let out = owstats(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
    }
}
