//! owampd keeps received sessions in perfSONAR owampd's layout: `hierarchy/<root class>/...`
//! a directory per limits class, `catalog/<sid>.owp` a link each; fetches go through the
//! catalog; `delete_on_fetch` is the class's of the file's directory; a restart rebuilds the
//! catalog and the classes' disk usage; perfSONAR's `owampd-cleanup` script works on the data
//! directory; `keepfor` deletes old sessions. Bounded: short sessions, every process killed
//! past a deadline.

mod common;

use common::{args, catalog_link, run, session_files, wait_bounded, Daemon, Output};

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const OWPING: &str = env!("CARGO_BIN_EXE_owping");
const OWFETCH: &str = env!("CARGO_BIN_EXE_owfetch");

/// A short session to the daemon (the daemon receives it), its results not fetched.
fn session(d: &Daemon, packets: &str) -> Output {
    let a = args(&[
        "-t",
        "-Q",
        "-c",
        packets,
        "-i",
        "0.01",
        "-L",
        "1",
        &d.addr(),
    ]);
    run(OWPING, &a, "", Duration::from_secs(30))
}

/// The SID (lowercase hex) of a session file.
fn sid_of(file: &Path) -> String {
    let name = file.file_name().unwrap().to_str().unwrap();
    name.split('.').next().unwrap().to_owned()
}

fn owfetch(d: &Daemon, sid: &str, to: &Path) -> Output {
    let a = args(&[&d.addr(), sid, to.to_str().unwrap()]);
    run(OWFETCH, &a, "", Duration::from_secs(30))
}

/// Waits (bounded) until `done` holds.
fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

/// The `n` complete session files in `data`, once each is linked in the catalog: owping -Q
/// may exit before owampd has completed the file (waited for, bounded).
fn stored(data: &Path, n: usize) -> Vec<PathBuf> {
    let linked = || {
        let files = session_files(data, ".owp");
        files.len() == n
            && files
                .iter()
                .all(|f| catalog_link(data, &sid_of(f)).is_file())
    };
    eventually(Duration::from_secs(5), linked);
    let files = session_files(data, ".owp");
    assert_eq!(files.len(), n, "{:?}", session_files(data, ""));
    files
}

/// A long receive session in the background; killed when dropped.
struct Background(Child);

impl Background {
    fn start(d: &Daemon) -> Self {
        let child = Command::new(OWPING)
            .args([
                "-t",
                "-Q",
                "-c",
                "100000",
                "-i",
                "0.01",
                "-L",
                "1",
                &d.addr(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Background(child)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = wait_bounded(&mut self.0, Duration::from_secs(20));
    }
}

const NESTED: &str = "limit root with delete_on_fetch=off\n\
limit mid with parent=root\n\
limit leaf with parent=mid\n\
assign default leaf\n";

/// A session of the class `leaf` (child of `mid`, child of `root`) is filed under
/// `hierarchy/root/mid/leaf/<sid>.owp`, the directories made (mode 0755 at most), the catalog
/// links it, and owfetch gets it through the catalog. The info file has perfSONAR's lines.
#[test]
fn a_session_is_filed_by_class_and_linked_in_the_catalog() {
    let d = Daemon::start("", Some(NESTED), None);
    let info = std::fs::read_to_string(d.path("owamp-server.info")).unwrap();
    let lines: Vec<&str> = info.lines().collect();
    assert_eq!(lines.len(), 2, "{info}");
    let start: u64 = lines[0].strip_prefix("START=").unwrap().parse().unwrap();
    assert!(start > 1 << 63, "an OWAMP timestamp after 1968: {start}");
    assert_eq!(lines[1], format!("PID={}", d.pid()));

    let o = session(&d, "10");
    assert_eq!(o.code, 0, "{}", o.stderr);
    let data = d.path("data");
    let files = stored(&data, 1);
    let leaf = data.join("hierarchy/root/mid/leaf");
    assert_eq!(files[0].parent().unwrap(), leaf);
    let sid = sid_of(&files[0]);
    assert_eq!(sid.len(), 32);
    assert_eq!(sid, sid.to_ascii_lowercase(), "named as perfSONAR names it");
    for dir in [
        "hierarchy",
        "hierarchy/root",
        "hierarchy/root/mid",
        "hierarchy/root/mid/leaf",
    ] {
        let mode = std::fs::metadata(data.join(dir))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777 & !0o755, 0, "{dir}: {mode:o}");
    }
    let link = catalog_link(&data, &sid);
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("../hierarchy/root/mid/leaf").join(format!("{sid}.owp"))
    );
    assert_eq!(
        std::fs::read(&link).unwrap(),
        std::fs::read(&files[0]).unwrap()
    );

    let fetched = d.path("fetched.owp");
    let f = owfetch(&d, &sid, &fetched);
    assert_eq!(f.code, 0, "{}", f.stderr);
    // The header of the answer says finished (it is not the file's octets: no HMAC there).
    assert!(std::fs::metadata(&fetched).unwrap().len() > 10 * 25);

    // Fetched through the catalog: a file the catalog does not link is not found.
    std::fs::remove_file(&link).unwrap();
    let gone = d.path("gone.owp");
    let f = owfetch(&d, &sid, &gone);
    assert_ne!(f.code, 0, "{}", f.stderr);
    assert!(!gone.exists());
}

/// `delete_on_fetch` is that of the class whose directory holds the file, not the fetching
/// connection's: a file of the class `keep` stays once fetched, the same file moved to the
/// directory of `gone` (and its link made to point there) goes, with its link.
#[test]
fn delete_on_fetch_is_the_class_of_the_files_directory() {
    let limits = "limit root with delete_on_fetch=off\n\
limit keep with parent=root\n\
limit gone with parent=root, delete_on_fetch=on\n\
assign default keep\n";
    let d = Daemon::start("", Some(limits), None);
    let data = d.path("data");
    let o = session(&d, "10");
    assert_eq!(o.code, 0, "{}", o.stderr);
    let files = stored(&data, 1);
    assert_eq!(files[0].parent().unwrap(), data.join("hierarchy/root/keep"));
    let sid = sid_of(&files[0]);
    let f = owfetch(&d, &sid, &d.path("first.owp"));
    assert_eq!(f.code, 0, "{}", f.stderr);
    assert_eq!(
        session_files(&data, ""),
        files,
        "class keep keeps its files"
    );

    // The file moves to gone's directory; the catalog follows.
    let gone_dir = data.join("hierarchy/root/gone");
    std::fs::create_dir(&gone_dir).unwrap();
    let moved = gone_dir.join(format!("{sid}.owp"));
    std::fs::rename(&files[0], &moved).unwrap();
    let link = catalog_link(&data, &sid);
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(format!("../hierarchy/root/gone/{sid}.owp"), &link).unwrap();
    let f = owfetch(&d, &sid, &d.path("second.owp"));
    assert_eq!(f.code, 0, "{}", f.stderr);
    assert!(
        eventually(Duration::from_secs(2), || !moved.exists()),
        "a file of class gone goes once fetched"
    );
    assert!(std::fs::symlink_metadata(&link).is_err(), "with its link");
}

/// A restart empties the catalog and rebuilds it from the hierarchy (a stale link goes,
/// strays are left alone), and charges each class the files it holds: a
/// `disk=` limit that one stored session fills still refuses the next after a restart, and
/// admits it again once the file is gone.
#[test]
fn a_restart_rebuilds_the_catalog_and_the_disk_usage() {
    // owping -c 100: an estimate of 56 + 112 + 16 * 101 + 25 * 100 = 4,284 octets; the
    // stored file takes over 2,500 more, so a second session does not fit beside it.
    let limits = "limit root with disk=5284, delete_on_fetch=off\nassign default root\n";
    let mut d = Daemon::start("", Some(limits), None);
    let data = d.path("data");
    let o = session(&d, "100");
    assert_eq!(o.code, 0, "{}", o.stderr);
    let files = stored(&data, 1);
    let o = session(&d, "100");
    assert_ne!(
        o.code, 0,
        "the disk limit holds beside a stored file: {}",
        o.stdout
    );

    // Strays, and a stale link.
    std::fs::write(data.join("hierarchy/root/notes.txt"), "x").unwrap();
    std::fs::create_dir(data.join("hierarchy/unknown")).unwrap();
    let stale = catalog_link(&data, &"ab".repeat(16));
    std::os::unix::fs::symlink("../hierarchy/root/nothing.owp", &stale).unwrap();
    let link = catalog_link(&data, &sid_of(&files[0]));
    std::fs::remove_file(&link).unwrap();
    d.relaunch();
    assert!(link.is_file(), "the link is made again");
    assert!(
        std::fs::symlink_metadata(&stale).is_err(),
        "the stale link goes"
    );
    assert!(data.join("hierarchy/root/notes.txt").exists());
    let o = session(&d, "100");
    assert_ne!(
        o.code, 0,
        "the limit still holds after a restart: {}",
        o.stdout
    );

    std::fs::remove_file(&files[0]).unwrap();
    d.relaunch();
    let o = session(&d, "100");
    assert_eq!(o.code, 0, "room again: {}", o.stderr);
}

/// perfSONAR's `owampd-cleanup` (its daily cron script) on our data directory: it removes
/// session files older than its age and their dangling links, but not the file of a session
/// owampd is writing (it looks at the open files of processes named owampd).
#[test]
fn the_perfsonar_cleanup_script_works_on_our_datadir() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/reference/perfsonar-owamp-5.2.3/conf/owampd-cleanup");
    if !script.exists() {
        eprintln!("skipped: no owampd-cleanup at {}", script.display());
        return;
    }
    if Command::new("perl").arg("-v").output().is_err()
        || Command::new("touch").arg("--version").output().is_err()
    {
        eprintln!("skipped: perl or touch is missing");
        return;
    }
    let d = Daemon::start("", None, None);
    let data = d.path("data").canonicalize().unwrap();
    let o = session(&d, "10");
    assert_eq!(o.code, 0, "{}", o.stderr);
    let done = stored(&data, 1);
    let done_link = catalog_link(&data, &sid_of(&done[0]));
    assert!(done_link.is_file());

    // A session being written, as old as the other.
    let running = Background::start(&d);
    assert!(
        eventually(Duration::from_secs(10), || !session_files(&data, ".owp.i")
            .is_empty()),
        "the running session's file"
    );
    let open = session_files(&data, ".owp.i").remove(0);
    let touch = |p: &Path, link: bool| {
        let mut c = Command::new("touch");
        if link {
            c.arg("-h");
        }
        let s = c.args(["-d", "2 hours ago"]).arg(p).status().unwrap();
        assert!(s.success());
    };
    touch(&done[0], false);
    touch(&done_link, true);
    touch(&open, false);

    let hierarchy = format!("{}/", data.join("hierarchy").display());
    let catalog = format!("{}/", data.join("catalog").display());
    let out = Command::new("perl")
        .arg(&script)
        .args(["-v", "-a", "1", "-d", &hierarchy, "-l", &catalog])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!done[0].exists(), "the old file goes: {text}");
    assert!(
        std::fs::symlink_metadata(&done_link).is_err(),
        "its dangling link goes: {text}"
    );
    assert!(open.exists(), "the file being written stays: {text}");
    assert!(
        text.contains(&format!("Skipping active file: {}", open.display())),
        "seen as open by owampd: {text}"
    );

    // The running session still ends up stored and linked.
    drop(running);
    let sid = sid_of(&open);
    assert!(
        eventually(Duration::from_secs(10), || catalog_link(&data, &sid)
            .is_file()),
        "{:?}",
        session_files(&data, "")
    );
}

/// `keepfor 2`: a stored session goes, with its link, a few seconds after it was written,
/// while one being written stays.
#[test]
fn keepfor_deletes_old_sessions_but_not_one_being_written() {
    let d = Daemon::start("keepfor 2\n", None, None);
    let data = d.path("data");
    let o = session(&d, "10");
    assert_eq!(o.code, 0, "{}", o.stderr);
    let done = stored(&data, 1);
    let link = catalog_link(&data, &sid_of(&done[0]));
    assert!(link.is_file());
    let _running = Background::start(&d);
    assert!(
        eventually(Duration::from_secs(10), || !done[0].exists()),
        "deleted after 2 s"
    );
    assert!(std::fs::symlink_metadata(&link).is_err(), "with its link");
    let partial = session_files(&data, ".owp.i");
    assert_eq!(partial.len(), 1, "the running session's file stays");
    // However old it looks.
    let s = Command::new("touch")
        .args(["-d", "2 hours ago"])
        .arg(&partial[0])
        .status();
    if s.is_ok_and(|s| s.success()) {
        std::thread::sleep(Duration::from_millis(2500));
        assert!(
            partial[0].exists(),
            "a session being written is never deleted"
        );
    }
    let log = d.log_until("keepfor: 1 sessions", Duration::from_secs(2));
    assert!(
        log.iter().any(|l| l.contains("keepfor: 1 sessions")),
        "{log:?}"
    );
}

/// A session of the older flat layout (`datadir/<SID>.owp`, uppercase) is still served after
/// an upgrade, with a log line naming the old place.
#[test]
fn sessions_of_the_flat_layout_are_still_served() {
    let mut d = Daemon::start("", None, None);
    let data = d.path("data");
    let o = session(&d, "10");
    assert_eq!(o.code, 0, "{}", o.stderr);
    let files = stored(&data, 1);
    let sid = sid_of(&files[0]);
    let flat = data.join(format!("{}.owp", sid.to_ascii_uppercase()));
    std::fs::rename(&files[0], &flat).unwrap();
    d.relaunch();
    assert!(
        std::fs::symlink_metadata(catalog_link(&data, &sid)).is_err(),
        "not in the catalog"
    );
    let fetched = d.path("fetched.owp");
    let f = owfetch(&d, &sid, &fetched);
    assert_eq!(f.code, 0, "{}", f.stderr);
    let log = d.log_until("old flat layout", Duration::from_secs(5));
    assert!(
        log.iter()
            .any(|l| l.contains("old flat layout") && l.contains(&flat.display().to_string())),
        "{log:?}"
    );
    assert!(flat.exists(), "left where it is");
}
