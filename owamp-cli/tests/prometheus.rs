//! A real Prometheus scraping powstream and owampd: runs scripts/prometheus-test.sh with the
//! binaries of this build (two owampd, a powstream measuring from each, Prometheus with the
//! rules of docs/examples/owamp-rules.yml, checks through its HTTP API, `promtool check
//! metrics` on every endpoint). The script skips, with a message, without the `prometheus`
//! Debian package (which .ci/run installs).

mod common;

use std::process::Command;
use std::time::Duration;

#[test]
fn a_real_prometheus_scrapes_powstream_and_owampd() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/prometheus-test.sh");
    let out = common::run_with(
        Command::new("bash")
            .arg(script)
            .env("OWAMPD", env!("CARGO_BIN_EXE_owampd"))
            .env("POWSTREAM", env!("CARGO_BIN_EXE_powstream")),
        "",
        Duration::from_secs(120),
    );
    print!("{}", out.stdout);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("prometheus-test: OK") || out.stdout.contains("skipped"),
        "{}",
        out.stdout
    );
}
