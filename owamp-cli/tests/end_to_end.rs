//! owampd, owping, owfetch and pfstore run as processes against each other on 127.0.0.1, in
//! open, authenticated and encrypted modes. Every test is bounded: short sessions, and every
//! process is killed past a deadline.

mod common;

use common::{args, run, run_with, wait_bounded, Daemon, Output, OWAMPD};

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const OWPING: &str = env!("CARGO_BIN_EXE_owping");
const OWFETCH: &str = env!("CARGO_BIN_EXE_owfetch");
const PFSTORE: &str = env!("CARGO_BIN_EXE_pfstore");

const PASS: &str = "correct horse battery staple";

fn owping(extra: &[&str], d: &Daemon) -> Output {
    let mut a = args(&["-c", "20", "-i", "0.01", "-L", "1"]);
    a.extend(args(extra));
    a.push(d.addr().into());
    run(OWPING, &a, "", Duration::from_secs(60))
}

/// The summary blocks of owping's (or owstats's) output, split at the "---" headers.
fn blocks(out: &str) -> Vec<Vec<&str>> {
    let mut v: Vec<Vec<&str>> = Vec::new();
    for l in out.lines() {
        if l.starts_with("--- owping statistics from [") {
            v.push(Vec::new());
        }
        if let Some(b) = v.last_mut() {
            b.push(l);
        }
    }
    v
}

/// Checks that a block has perfSONAR's summary shape for `n` packets, sent from `from_host` to
/// `to_host` (either may be `None`: any name).
fn check_block(b: &[&str], n: u32, from_host: Option<&str>, to_host: Option<&str>) {
    let head = b[0];
    let parts: Vec<&str> = head
        .trim_start_matches("--- owping statistics from [")
        .trim_end_matches(" ---")
        .split(" to [")
        .collect();
    assert_eq!(parts.len(), 2, "{head}");
    for (part, host) in parts.iter().zip([from_host, to_host]) {
        let (name, port) = part.split_once("]:").unwrap();
        assert!(port.parse::<u16>().is_ok(), "{head}");
        if let Some(h) = host {
            assert_eq!(name, h, "{head}");
        }
    }
    let sid = b[1].strip_prefix("SID:\t").unwrap();
    assert_eq!(sid.len(), 32);
    assert!(sid
        .bytes()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert!(b[2].starts_with("first:\t20"), "{}", b[2]);
    assert!(b[3].starts_with("last:\t20"), "{}", b[3]);
    assert_eq!(b[4], format!("{n} sent, 0 lost (0.000%), 0 duplicates"));
    assert!(
        b[5].starts_with("one-way delay min/median/max = "),
        "{}",
        b[5]
    );
    assert!(
        b[5].ends_with(" ms, (unsync)") || b[5].contains(" ms, (err="),
        "{}",
        b[5]
    );
    assert!(b[6].starts_with("one-way jitter = ") && b[6].ends_with(" ms (P95-P50)"));
    assert_eq!(b[7], "hops = 0 (consistently)");
    assert_eq!(b[8], "no reordering");
}

fn owstats_of(path: &Path) -> String {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = owamp_cli::owstats::run(
        args(&["owstats", path.to_str().unwrap()]),
        &mut out,
        &mut err,
        &owamp_cli::sys::System,
    );
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    String::from_utf8(out).unwrap()
}

#[test]
fn open_mode_both_directions_with_saved_files() {
    let d = Daemon::start("testports 20000-20999\n", None, None);
    let from = d.path("from.owp");
    let to = d.path("to.owp");
    let o = owping(
        &["-F", from.to_str().unwrap(), "-T", to.to_str().unwrap()],
        &d,
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let first = o.stdout.lines().next().unwrap();
    assert!(
        first.starts_with("Approximately ") && first.ends_with(" seconds until results available"),
        "{first}"
    );
    let b = blocks(&o.stdout);
    assert_eq!(b.len(), 2, "{}", o.stdout);
    // "to" first: from the local host to the peer as written; then "from".
    check_block(&b[0], 20, None, Some("127.0.0.1"));
    check_block(&b[1], 20, Some("127.0.0.1"), None);
    // The server's test ports come from testports.
    let server_port: u16 = b[0][0]
        .rsplit("]:")
        .next()
        .unwrap()
        .trim_end_matches(" ---")
        .parse()
        .unwrap();
    assert!((20000..=20999).contains(&server_port), "{}", b[0][0]);
    // owping's own ports come from its default range.
    let client_port: u16 = b[0][0]
        .split("]:")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((8760..=9960).contains(&client_port), "{}", b[0][0]);

    // The saved files give owstats the same statistics (names aside: owstats resolves both).
    for (file, block) in [(&to, &b[0]), (&from, &b[1])] {
        let s = owstats_of(file);
        let sb = blocks(&s);
        assert_eq!(sb.len(), 1);
        assert_eq!(&sb[0][1..9], &block[1..9], "{}", file.display());
    }
    // The server kept the "to" session, named by its SID, linked in its catalog.
    let sid = b[0][1].strip_prefix("SID:\t").unwrap();
    let stored = common::catalog_link(&d.path("data"), sid);
    assert!(stored.exists(), "{}", stored.display());
    assert_eq!(
        std::fs::read(&stored).unwrap().len(),
        std::fs::read(&to).unwrap().len()
    );

    // owfetch gets it again.
    let fetched = d.path("fetched.owp");
    let f = run(
        OWFETCH,
        &args(&[&d.addr(), sid, fetched.to_str().unwrap()]),
        "",
        Duration::from_secs(30),
    );
    assert_eq!(f.code, 0, "{}", f.stderr);
    assert_eq!(blocks(&f.stdout).len(), 1);
    assert_eq!(owstats_of(&fetched), owstats_of(&to));
    // An unknown SID is refused.
    let f = run(
        OWFETCH,
        &args(&[
            &d.addr(),
            "00000000000000000000000000000000",
            d.path("none.owp").to_str().unwrap(),
        ]),
        "",
        Duration::from_secs(30),
    );
    assert_eq!(f.code, 1);
    assert!(f
        .stderr
        .contains("Unable to fetch sid(00000000000000000000000000000000)"));

    // SIGTERM: clean exit, pid file removed.
    assert!(d.path("owamp-server.pid").exists());
    let pid_file = d.path("owamp-server.pid");
    let (code, log) = d.terminate();
    assert_eq!(code, 0, "{log:?}");
    assert!(!pid_file.exists());
    assert!(log.iter().any(|l| l.contains("exiting")), "{log:?}");
}

/// A pfs file written by our pfstore, the pass-phrase read from standard input.
fn pfs_file(dir: &Path, name: &str, identity: &str, pass: &str) -> PathBuf {
    let f = dir.join(name);
    let o = run(
        PFSTORE,
        &args(&["-n", "-f", f.to_str().unwrap(), identity]),
        &format!("{pass}\n"),
        Duration::from_secs(10),
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    f
}

fn secure_daemon() -> (Daemon, tempfile::TempDir) {
    let keys = tempfile::tempdir().unwrap();
    let server_pfs = pfs_file(keys.path(), "server.pfs", "alice", PASS);
    let limits = "limit root with disk=0, bandwidth=0, delete_on_fetch=off, allow_open_mode=on\n\
limit regular with parent=root, disk=10G, bandwidth=20M\n\
limit authd with parent=root, disk=10G, bandwidth=0\n\
assign default regular\nassign user alice authd\n";
    let d = Daemon::start(
        "",
        Some(limits),
        Some(&std::fs::read_to_string(server_pfs).unwrap()),
    );
    (d, keys)
}

#[test]
fn authenticated_and_encrypted_modes() {
    let (d, keys) = secure_daemon();
    let pfs = pfs_file(keys.path(), "alice.pfs", "alice", PASS);
    for mode in ["A", "E"] {
        let o = owping(
            &["-A", mode, "-u", "alice", "-k", pfs.to_str().unwrap()],
            &d,
        );
        assert_eq!(o.code, 0, "mode {mode}: {}", o.stderr);
        let b = blocks(&o.stdout);
        assert_eq!(b.len(), 2, "{}", o.stdout);
        check_block(&b[0], 20, None, Some("127.0.0.1"));
        check_block(&b[1], 20, Some("127.0.0.1"), None);
    }
    // The server logged the identity and the modes.
    let (code, log) = d.terminate();
    assert_eq!(code, 0);
    assert!(
        log.iter()
            .any(|l| l.contains("mode=authenticated identity=\"alice\"")),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("mode=encrypted identity=\"alice\"")),
        "{log:?}"
    );
}

#[test]
fn wrong_passphrase_is_denied() {
    let (d, keys) = secure_daemon();
    let wrong = pfs_file(keys.path(), "wrong.pfs", "alice", "wrong passphrase");
    let o = owping(
        &["-A", "A", "-u", "alice", "-k", wrong.to_str().unwrap()],
        &d,
    );
    assert_eq!(o.code, 1);
    assert!(o.stdout.is_empty(), "{}", o.stdout);
    assert!(
        o.stderr
            .contains("owping: Server denied access: 127.0.0.1\n"),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.contains(&format!(
            "owping: Unable to open control connection to {}.\n",
            d.addr()
        )),
        "{}",
        o.stderr
    );
    // The daemon says who asked for what and why it refused, and nothing secret.
    let (_, log) = d.terminate();
    let line = log
        .iter()
        .find(|l| l.contains("set-up refused"))
        .unwrap_or_else(|| panic!("no refusal logged: {log:?}"));
    assert!(
        line.contains("connection from 127.0.0.1:")
            && line.ends_with(
                ": set-up refused: wrong passphrase for identity \"alice\" (mode authenticated)"
            ),
        "{line}"
    );
    assert!(!log
        .iter()
        .any(|l| l.contains("wrong passphrase\"") || l.contains(PASS)));
}

#[test]
fn unknown_identity_is_denied_and_logged() {
    let (d, keys) = secure_daemon();
    let bob = pfs_file(keys.path(), "bob.pfs", "bob", PASS);
    let o = owping(&["-A", "E", "-u", "bob", "-k", bob.to_str().unwrap()], &d);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("Server denied access"), "{}", o.stderr);
    let (_, log) = d.terminate();
    assert!(
        log.iter()
            .any(|l| l.ends_with(": set-up refused: unknown identity \"bob\" (mode encrypted)")),
        "{log:?}"
    );
}

#[test]
fn open_mode_refused_by_the_limits_is_logged() {
    // The server offers open mode only, and the limits do not allow it to this address:
    // it offers nothing and closes after the greeting.
    let d = Daemon::start(
        "authmode O\n",
        Some("limit root with allow_open_mode=off\nassign default root\n"),
        None,
    );
    let o = owping(&["-A", "O"], &d);
    assert_eq!(o.code, 1, "{}", o.stderr);
    let (_, log) = d.terminate();
    assert!(
        log.iter().any(|l| l.contains("connection from 127.0.0.1:")
            && l.ends_with(
                ": set-up refused: no mode is offered to this address (the limits allow it none)"
            )),
        "{log:?}"
    );
}

/// The finer `sendtiming`s serve packets from the server as the default does.
#[test]
fn send_timing_settings() {
    for timing in ["fine", "precise"] {
        let d = Daemon::start(&format!("sendtiming {timing}\n"), None, None);
        let o = owping(&["--json", "-f"], &d);
        assert_eq!(o.code, 0, "{timing}: {}", o.stderr);
        let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
        let s = &v["sessions"][0];
        assert_eq!(
            (s["sent"].as_u64(), s["lost"].as_u64()),
            (Some(20), Some(0))
        );
    }
}

#[test]
fn json_output() {
    let d = Daemon::start("", None, None);
    let o = owping(&["--json", "-t"], &d);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let s = v["sessions"].as_array().unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0]["direction"], "to");
    assert_eq!(s[0]["sent"], 20);
    assert_eq!(s[0]["lost"], 0);
    assert_eq!(s[0]["to"]["host"], "127.0.0.1");
    let min = s[0]["delay_min_s"].as_f64().unwrap();
    let max = s[0]["delay_max_s"].as_f64().unwrap();
    assert!(min <= max && max < 1.0);
}

#[test]
fn interrupt_stops_early_and_reports() {
    let d = Daemon::start("", None, None);
    // 2000 packets at 10 ms: 20 s if not interrupted.
    let mut child = Command::new(OWPING)
        .args(["-c", "2000", "-i", "0.01f", "-L", "1", &d.addr()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.starts_with("Approximately "), "{first}");
    // Let some packets go, then interrupt once.
    std::thread::sleep(Duration::from_millis(2500));
    let t0 = Instant::now();
    // SAFETY: kill on the pid of a child we started and have not reaped.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let code = wait_bounded(&mut child, Duration::from_secs(15));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert_eq!(code, 0, "{rest}");
    assert!(t0.elapsed() < Duration::from_secs(12));
    let b = blocks(&rest);
    assert_eq!(b.len(), 2, "{rest}");
    for block in &b {
        let sent: u32 = block[4].split(' ').next().unwrap().parse().unwrap();
        assert!(sent > 0 && sent < 2000, "{}", block[4]);
    }
}

#[test]
fn owampd_refuses_bad_configuration() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("owampd.conf"),
        "# comment\nsrcnode 127.0.0.1:0\ntestports 9000-\n",
    )
    .unwrap();
    let o = run(
        OWAMPD,
        &[OsString::from("-f"), "-c".into(), dir.path().into()],
        "",
        Duration::from_secs(10),
    );
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("owampd.conf:3:"), "{}", o.stderr);
    // A limits file naming an identity with no pass-phrase.
    std::fs::write(dir.path().join("owampd.conf"), "srcnode 127.0.0.1:0\n").unwrap();
    std::fs::write(
        dir.path().join("owamp-server.limits"),
        "limit root with \\\n  bandwidth=1M\nassign user bob root\n",
    )
    .unwrap();
    let o = run(
        OWAMPD,
        &[OsString::from("-f"), "-c".into(), dir.path().into()],
        "",
        Duration::from_secs(10),
    );
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("owamp-server.limits:3:"), "{}", o.stderr);
}

#[test]
fn open_mode_refused_by_limits() {
    let limits = "limit root with allow_open_mode=off\n";
    let d = Daemon::start("", Some(limits), None);
    let o = owping(&["-A", "O"], &d);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("Unable to open control connection"),
        "{}",
        o.stderr
    );
}

/// A line with names, SIDs, times and numbers replaced by placeholders: what must be the same
/// in our output and the reference's.
fn shape(l: &str) -> String {
    if let Some(sid) = l.strip_prefix("SID:\t") {
        assert_eq!(sid.len(), 32, "{l}");
        return "SID:\tSID".into();
    }
    for p in ["first:\t", "last:\t"] {
        if l.starts_with(p) {
            return format!("{p}TIME");
        }
    }
    let mut out = String::new();
    let mut chars = l.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '[' {
            for d in chars.by_ref() {
                if d == ']' {
                    break;
                }
            }
            out.push_str("[HOST]");
        } else if c.is_ascii_digit() {
            while let Some(&d) = chars.peek() {
                if d.is_ascii_digit() || d == '.' || d == 'e' || d == '-' || d == '+' {
                    chars.next();
                } else {
                    break;
                }
            }
            out.push('N');
        } else {
            out.push(c);
        }
    }
    // Whether the clocks are synchronized depends on the machine.
    out.replace("(unsync)", "(ERR)")
        .replace("(err=N ms)", "(ERR)")
}

#[test]
fn owping_output_has_the_reference_shape() {
    let reference = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/traces/reference/a_open.owping.stdout.txt"
    ))
    .unwrap();
    let d = Daemon::start("", None, None);
    // The reference's command: owping -c 20 -i 0.05 127.0.0.1:8610.
    let o = run(
        OWPING,
        &args(&["-c", "20", "-i", "0.05", &d.addr()]),
        "",
        Duration::from_secs(60),
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let ours: Vec<String> = o.stdout.lines().map(shape).collect();
    let theirs: Vec<String> = reference.lines().map(shape).collect();
    assert_eq!(ours, theirs, "\nours:\n{}", o.stdout);
    // And the stdout ends as the reference's does (a blank line after the last block).
    assert!(o.stdout.ends_with("no reordering\n\n"));

    // -R: only the raw records, 20 per session, 8 fields each; no "Approximately" line.
    let o = run(
        OWPING,
        &args(&["-R", "-c", "20", "-i", "0.01", "-L", "1", &d.addr()]),
        "",
        Duration::from_secs(60),
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines.len(), 40, "{}", o.stdout);
    assert!(
        lines.iter().all(|l| l.split(' ').count() == 8),
        "{}",
        o.stdout
    );
}

#[test]
fn root_drops_to_the_configured_user() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: nothing to drop");
        return;
    }
    // SAFETY: getpwnam returns static storage or null; it is read at once.
    let nobody = unsafe {
        let pw = libc::getpwnam(c"nobody".as_ptr());
        if pw.is_null() {
            eprintln!("no user nobody");
            return;
        }
        (*pw).pw_uid
    };
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // The configuration is read as root; the data directory must be the user's to write.
    let d = {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::write(
            dir.path().join("owamp-server.conf"),
            format!(
                "srcnode 127.0.0.1:0\ndatadir {}\nvardir {}\nuser nobody\n",
                data.display(),
                dir.path().display()
            ),
        )
        .unwrap();
        dir
    };
    let mut child = Command::new(OWAMPD)
        .args(["-Z", "-c"])
        .arg(d.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut port = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while port.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            break;
        };
        if let Some(rest) = line.split("listening on 127.0.0.1:").nth(1) {
            port = rest
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse::<u16>()
                .ok();
        }
    }
    let Some(port) = port else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("owampd did not start");
    };
    let o = run(
        OWPING,
        &args(&[
            "-t",
            "-c",
            "5",
            "-i",
            "0.01",
            "-L",
            "1",
            &format!("127.0.0.1:{port}"),
        ]),
        "",
        Duration::from_secs(60),
    );
    // SAFETY: kill on the pid of a child we started and have not reaped.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let code = wait_bounded(&mut child, Duration::from_secs(20));
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(code, 0);
    let files = common::session_files(&d.path().join("data"), "");
    assert_eq!(files.len(), 1);
    assert_eq!(std::fs::metadata(&files[0]).unwrap().uid(), nobody);
    // The class's directory too, made when first needed.
    let class_dir = files[0].parent().unwrap();
    assert_eq!(std::fs::metadata(class_dir).unwrap().uid(), nobody);
}

#[test]
fn unwritable_output_file_fails_before_the_test() {
    let d = Daemon::start("", None, None);
    let o = owping(&["-T", "/nonexistent-dir/to.owp"], &d);
    assert_eq!(o.code, 1);
    assert!(o.stdout.is_empty(), "{}", o.stdout);
    assert!(
        o.stderr.contains("fopen(/nonexistent-dir/to.owp)"),
        "{}",
        o.stderr
    );
    // A denied connection leaves no empty file behind.
    let f = d.path("to.owp");
    let o = run(
        OWPING,
        &args(&["-A", "A", "-T", f.to_str().unwrap(), &d.addr()]),
        "",
        Duration::from_secs(30),
    );
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(!f.exists());
}

#[test]
fn delete_on_fetch_removes_fetched_sessions() {
    let limits = "limit root with delete_on_fetch=off\n\
limit keep with parent=root\n\
limit gone with parent=root, delete_on_fetch=on\n\
assign default gone\n";
    let d = Daemon::start("", Some(limits), None);
    let o = owping(&["-t"], &d);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(blocks(&o.stdout).len(), 1);
    let left = common::session_files(&d.path("data"), "").len();
    assert_eq!(left, 0, "the fetched session should be gone");
    let links = std::fs::read_dir(d.path("data/catalog")).unwrap().count();
    assert_eq!(links, 0, "and its catalog link");
    // -Q without -T: nothing is fetched, so the session stays.
    let o = owping(&["-t", "-Q"], &d);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.is_empty(), "{}", o.stdout);
    let left = common::session_files(&d.path("data"), "").len();
    assert_eq!(left, 1);
}

/// owfetch checks that it can save an answer before it asks for it: with delete_on_fetch,
/// a fetch to a path it can not write must not cost the server the session.
#[test]
fn owfetch_to_a_bad_path_leaves_the_session_on_the_server() {
    let d = Daemon::start(
        "",
        Some("limit root with delete_on_fetch=on\nassign default root\n"),
        None,
    );
    let o = owping(&["-t", "-Q"], &d);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let stored = entries(&d.path("data/catalog"));
    assert_eq!(stored.len(), 1, "{stored:?}");
    let sid = stored[0].trim_end_matches(".owp").to_owned();
    for bad in ["/nonexistent-dir/s.owp", d.path("data").to_str().unwrap()] {
        let o = run(
            OWFETCH,
            &args(&["-A", "O", &d.addr(), &sid, bad]),
            "",
            Duration::from_secs(30),
        );
        assert_eq!(o.code, 1, "{}", o.stderr);
        assert!(o.stderr.contains(bad), "{}", o.stderr);
        assert_eq!(
            entries(&d.path("data/catalog")),
            stored,
            "the session must stay"
        );
    }
    let good = d.path("fetched.owp");
    let o = run(
        OWFETCH,
        &args(&["-A", "O", &d.addr(), &sid, good.to_str().unwrap()]),
        "",
        Duration::from_secs(30),
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(good.exists());
}

#[test]
fn request_over_the_bandwidth_limit_is_refused() {
    // 100 packets per second of 42 octets need 33.6 kbit/s.
    let d = Daemon::start("", Some("limit root with bandwidth=10k\n"), None);
    let o = owping(&[], &d);
    assert_eq!(o.code, 1);
    assert!(o.stdout.is_empty(), "{}", o.stdout);
    assert!(
        o.stderr
            .contains("owping: Server denied the session request: Failure (Accept = 1)"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("owping: Session Failed!"), "{}", o.stderr);
}

/// The entries of a directory, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// owping with `TMPDIR` set to `tmp`.
fn owping_in(tmp: &Path, extra: &[&str], d: &Daemon) -> Output {
    let mut a = args(&["-c", "20", "-i", "0.01", "-L", "1"]);
    a.extend(args(extra));
    a.push(d.addr().into());
    run_with(
        Command::new(OWPING).args(&a).env("TMPDIR", tmp),
        "",
        Duration::from_secs(60),
    )
}

/// owping writes the records to disk as they come (fetched and received alike) and reads
/// its statistics back from there: the -R output is the saved files' records exactly as
/// owstats prints them, and nothing is left behind beside the -T/-F files or in the
/// temporary directory, whether the run succeeds, fails, or ends on a second interrupt.
#[test]
fn owping_records_go_through_files_it_removes() {
    let d = Daemon::start("", None, None);
    let tmp = tempfile::tempdir().unwrap();
    let keep = tempfile::tempdir().unwrap();
    let to = keep.path().join("to.owp");
    let from = keep.path().join("from.owp");
    let (to_s, from_s) = (to.to_str().unwrap(), from.to_str().unwrap());
    let o = owping_in(tmp.path(), &["-R", "-T", to_s, "-F", from_s], &d);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(entries(keep.path()), ["from.owp", "to.owp"]);
    assert!(entries(tmp.path()).is_empty());
    let raw = |path: &Path| {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = owamp_cli::owstats::run(
            args(&["owstats", "-R", path.to_str().unwrap()]),
            &mut out,
            &mut err,
            &owamp_cli::sys::System,
        );
        assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
        String::from_utf8(out).unwrap()
    };
    assert_eq!(o.stdout, raw(&to) + &raw(&from));
    assert_eq!(o.stdout.lines().count(), 40);

    // Without files, both directions and the summaries: nothing left either.
    let o = owping_in(tmp.path(), &[], &d);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(blocks(&o.stdout).len(), 2);
    assert!(entries(tmp.path()).is_empty());

    // A run that fails (no identity for the only mode allowed).
    let denied = keep.path().join("denied.owp");
    let o = owping_in(tmp.path(), &["-A", "A", "-T", denied.to_str().unwrap()], &d);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(entries(tmp.path()).is_empty());
    assert_eq!(entries(keep.path()), ["from.owp", "to.owp"]);

    // Two signals at once during a long test (two different ones: a second SIGINT sent
    // before the first is delivered would merge with it): owping exits at once, with 2.
    let mut child = Command::new(OWPING)
        .args(["-c", "2000", "-i", "0.01f", "-L", "1", &d.addr()])
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.starts_with("Approximately "), "{first}");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(entries(tmp.path()).len(), 1, "the records' directory");
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: kill on the pid of a child we started and have not reaped.
        unsafe {
            libc::kill(child.id() as libc::pid_t, sig);
        }
    }
    assert_eq!(wait_bounded(&mut child, Duration::from_secs(15)), 2);
    assert!(entries(tmp.path()).is_empty());
}

/// Messages a user can act on: a server that does not speak OWAMP, a negative packet count, a
/// configuration directory owampd may not read.
#[test]
fn errors_say_what_is_wrong() {
    // A "server" that answers like a web server.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        if let Ok((mut c, _)) = l.accept() {
            use std::io::Write;
            let _ =
                c.write_all(&[b"HTTP/1.1 400 Bad Request\r\n".as_slice(), &[b'x'; 100]].concat());
        }
    });
    let o = run(
        OWPING,
        &args(&["-c", "1", &addr.to_string()]),
        "",
        Duration::from_secs(20),
    );
    t.join().unwrap();
    assert_eq!(o.code, 1);
    assert!(
        o.stderr
            .contains("does not answer as an OWAMP server would (Server-Greeting: non-zero MBZ"),
        "{}",
        o.stderr
    );
    assert!(!o.stderr.contains("Protocol(Wire"), "{}", o.stderr);

    let o = run(
        OWPING,
        &args(&["-c", "-5", "127.0.0.1"]),
        "",
        Duration::from_secs(10),
    );
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("a packet count can not be negative (-5)"),
        "{}",
        o.stderr
    );

    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir(&conf).unwrap();
    std::fs::write(conf.join("owamp-server.conf"), "srcnode 127.0.0.1:0\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o000)).unwrap();
    let mut cmd = Command::new(OWAMPD);
    cmd.args(["-Z", "-f", "-c"]).arg(&conf);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // Root reads anything: read as nobody.
        use std::os::unix::process::CommandExt;
        cmd.uid(65534).gid(65534);
    }
    let o = run_with(&mut cmd, "", Duration::from_secs(10));
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(o.code, 1);
    assert!(
        o.stderr
            .contains("Unable to read the configuration directory")
            && o.stderr.contains("Permission denied"),
        "{}",
        o.stderr
    );
}

/// At a terminal, owping shows a progress line while the test runs (packets so far, time
/// left); through a pipe it does not. The terminal is a pseudo-terminal from script(1).
#[test]
fn progress_line_only_at_a_terminal() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("script(1) is not installed: skipped");
        return;
    }
    let d = Daemon::start("", None, None);
    // 40 packets 0.1 s apart: long enough for a line (3 s or more).
    let cmd = format!("{OWPING} -c 40 -i 0.1f -L 1 {}", d.addr());
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("sent ") && text.contains("s left"), "{text}");
    assert!(text.contains("40 sent, 0 lost"), "{text}");
    // Through pipes: no progress line on standard error.
    let o = owping(&["-c", "40", "-i", "0.1f", "-L", "1"], &d);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(!o.stderr.contains("s left"), "{}", o.stderr);
}

#[test]
fn b_binds_the_control_connection_and_the_tests_to_an_interface() {
    let d = Daemon::start("", None, None);
    let o = owping(&["-B", "lo"], &d);
    if o.code != 0 && o.stderr.contains("Operation not permitted") {
        // Kernels before 5.7 let only CAP_NET_RAW bind to a device.
        eprintln!("skipped: SO_BINDTODEVICE not permitted: {}", o.stderr);
        return;
    }
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(blocks(&o.stdout).len(), 2, "{}", o.stdout);
    assert!(o.stdout.contains("20 sent, 0 lost"), "{}", o.stdout);
    // owup takes it too.
    let up = run(
        env!("CARGO_BIN_EXE_owup"),
        &args(&["-B", "lo", &d.addr()]),
        "",
        Duration::from_secs(30),
    );
    assert_eq!(up.code, 0, "{}", up.stderr);
    // An interface that does not exist stops each tool before it connects.
    for bin in [OWPING, OWFETCH, env!("CARGO_BIN_EXE_owup")] {
        let name = Path::new(bin).file_name().unwrap().to_str().unwrap();
        let mut a = args(&["-B", "nosuchif0", &d.addr()]);
        if name == "owfetch" {
            a.push("00000000000000000000000000000000".into());
            a.push(d.path("fetched.owp").into());
        }
        let o = run(bin, &a, "", Duration::from_secs(30));
        assert_eq!(o.code, 1, "{name}: {}", o.stderr);
        assert_eq!(
            o.stderr,
            format!("{name}: -B nosuchif0: no such network interface\n"),
            "{name}"
        );
    }
}
