//! pfstore: adds, changes or removes an identity in a pass-phrase file, as perfSONAR's
//! pfstore does.
//!
//! `pfstore [-n] [-d] -f pfsfile identity`: `-n` creates the file (it must not exist), `-d`
//! removes the identity (it must be there); otherwise the pass-phrase is asked for (without
//! echo on a terminal; one line of standard input otherwise) and stored hex-encoded, replacing
//! any earlier one. The file is rewritten through a temporary file (mode 0600) renamed over
//! it, under a lock file next to it. The file's old and new text and the pass-phrase are held in
//! memory that is wiped when dropped.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use clap::Parser;
use owamp_core::crypto::Passphrase;
use zeroize::Zeroizing;

use crate::config::pfs;

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "pfstore",
    about = "Create and manage a pass-phrase store (pfs file) for owampd and owping",
    override_usage = "pfstore [-n] [-d] -f pfsfile identity",
    version = crate::man::VERSION,
    disable_version_flag = true,
    arg = crate::man::version_flag(),
    after_help = crate::man::VERSION_LINE
)]
pub struct Args {
    /// filename to edit [required option]
    #[arg(short = 'f', value_name = "fname", required = true)]
    pub file: PathBuf,
    /// create pffile
    #[arg(short = 'n')]
    pub create: bool,
    /// delete given identity from file
    #[arg(short = 'd')]
    pub delete: bool,
    /// the identity
    #[arg(value_name = "identity")]
    pub identity: String,
}

/// The lock file pfstore uses for `file`: `.pfstore.lock` in the same directory.
fn lock_path(file: &Path) -> PathBuf {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    dir.join(".pfstore.lock")
}

/// Runs pfstore; `read_pass` supplies the pass-phrase (the binary prompts for it). Returns the
/// exit status.
pub fn run(
    argv: impl IntoIterator<Item = OsString>,
    err: &mut dyn Write,
    read_pass: &mut dyn FnMut(&str) -> std::io::Result<Option<Passphrase>>,
) -> i32 {
    let a = match Args::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = write!(err, "{}", e.render());
            return code;
        }
    };
    match edit(&a, read_pass) {
        Ok(()) => 0,
        Err(m) => {
            let _ = writeln!(err, "pfstore: {m}");
            1
        }
    }
}

fn edit(
    a: &Args,
    read_pass: &mut dyn FnMut(&str) -> std::io::Result<Option<Passphrase>>,
) -> Result<(), String> {
    pfs::check_identity(&a.identity).map_err(|e| format!("Identity '{}': {e}", a.identity))?;
    let exists = a.file.exists();
    if a.create && exists {
        return Err(format!("-n option specified: {} exists", a.file.display()));
    }
    if !a.create && !exists {
        return Err(format!(
            "Can't open '{}': no such file\nSee -n option?",
            a.file.display()
        ));
    }
    // pfstore rewrites the file with mode 0600, which also mends a loose mode.
    let text = if exists {
        pfs::read_text(&a.file).map_err(|e| e.to_string())?.0
    } else {
        Zeroizing::new(String::new())
    };
    // Check the file before asking for anything.
    pfs::parse(&text).map_err(|e| e.in_file(&a.file).to_string())?;

    let lock = lock_path(&a.file);
    let lockf = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock)
        .map_err(|e| format!("open({}): {e}", lock.display()))?;
    // SAFETY: flock only operates on the descriptor, which `lockf` keeps open.
    if unsafe { libc::flock(lockf.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(format!(
            "Unable to lock '{}': {}",
            lock.display(),
            std::io::Error::last_os_error()
        ));
    }
    let result = (|| {
        let passphrase = if a.delete {
            None
        } else {
            let prompt = format!("Enter passphrase for identity '{}': ", a.identity);
            match read_pass(&prompt).map_err(|e| format!("reading the pass-phrase: {e}"))? {
                Some(p) if !p.is_empty() => Some(p),
                _ => return Err("no pass-phrase given".to_string()),
            }
        };
        let (new, found) = pfs::update(
            &text,
            &a.identity,
            passphrase.as_ref().map(Passphrase::as_bytes),
        )
        .map_err(|e| e.in_file(&a.file).to_string())?;
        if a.delete && !found {
            return Err(format!("Identity '{}' not found", a.identity));
        }
        let tmp = lock.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(new.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &a.file)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("{}: {e}", a.file.display())
        })
    })();
    drop(lockf);
    let _ = std::fs::remove_file(&lock);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go(args: &[&str], pass: Option<&str>) -> (i32, String) {
        let mut err = Vec::new();
        let mut read = |_: &str| Ok(pass.map(Passphrase::from));
        let code = run(args.iter().map(OsString::from), &mut err, &mut read);
        (code, String::from_utf8_lossy(&err).into_owned())
    }

    #[test]
    fn create_add_change_delete() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("owamp-server.pfs");
        let fs = f.to_str().unwrap();
        // The file must exist without -n.
        let (code, msg) = go(&["pfstore", "-f", fs, "alice"], Some("x"));
        assert_eq!(code, 1);
        assert!(msg.contains("See -n option?"));
        assert_eq!(
            go(
                &["pfstore", "-n", "-f", fs, "alice"],
                Some("correct horse battery staple")
            )
            .0,
            0
        );
        assert_eq!(
            std::fs::read_to_string(&f).unwrap(),
            "alice\t636f727265637420686f727365206261747465727920737461706c65\n"
        );
        // -n again: the file exists.
        assert_eq!(go(&["pfstore", "-n", "-f", fs, "bob"], Some("b")).0, 1);
        assert_eq!(go(&["pfstore", "-f", fs, "bob"], Some("bb")).0, 0);
        assert_eq!(go(&["pfstore", "-f", fs, "alice"], Some("new")).0, 0);
        let parsed = pfs::parse(&std::fs::read_to_string(&f).unwrap()).unwrap();
        assert_eq!(parsed.get("alice"), Some(&"new".into()));
        assert_eq!(parsed.get("bob"), Some(&"bb".into()));
        assert_eq!(go(&["pfstore", "-d", "-f", fs, "alice"], None).0, 0);
        let (code, msg) = go(&["pfstore", "-d", "-f", fs, "alice"], None);
        assert_eq!(code, 1);
        assert!(msg.contains("not found"));
        // No pass-phrase, a bad identity, a missing -f.
        assert_eq!(go(&["pfstore", "-f", fs, "carol"], None).0, 1);
        assert_eq!(go(&["pfstore", "-f", fs, "a#b"], Some("x")).0, 1);
        assert_eq!(go(&["pfstore", "carol"], Some("x")).0, 1);
        let parsed = pfs::parse(&std::fs::read_to_string(&f).unwrap()).unwrap();
        assert_eq!(parsed.entries.len(), 1);
        assert!(!lock_path(&f).exists());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
