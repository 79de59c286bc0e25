//! The manual pages: the committed section 1 and 8 pages are what the clap definitions
//! generate (`OWAMP_UPDATE_MAN=1 cargo test -p owamp-cli --test man_pages` rewrites them), and
//! every page, generated or hand-written (section 5), renders with man(1) without a warning.

use std::path::{Path, PathBuf};
use std::process::Command;

fn man_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/man")
}

#[test]
fn generated_pages_are_up_to_date() {
    let update = std::env::var_os("OWAMP_UPDATE_MAN").is_some();
    let mut stale = Vec::new();
    for page in owamp_cli::man::pages() {
        let dir = man_dir().join(format!("man{}", page.section));
        let path = dir.join(page.file_name());
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed == page.roff {
            continue;
        }
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &page.roff).unwrap();
        } else {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "stale manual pages (regenerate with OWAMP_UPDATE_MAN=1 cargo test -p owamp-cli --test man_pages): {stale:?}"
    );
}

#[test]
fn every_tool_has_a_page_that_names_each_of_its_flags() {
    for (name, _, cmd) in owamp_cli::man::commands() {
        let page = owamp_cli::man::pages()
            .into_iter()
            .find(|p| p.name == name)
            .unwrap();
        for arg in cmd.get_arguments() {
            if let Some(s) = arg.get_short() {
                assert!(
                    page.roff.contains(&format!("\\-{s}")),
                    "{name}: -{s} missing from its page"
                );
            }
        }
        assert!(page.roff.contains(".SH \"EXIT STATUS\"") || page.roff.contains(".SH EXIT"));
        assert!(
            page.roff.contains(".SH \"SEE ALSO\""),
            "{name}: no SEE ALSO"
        );
    }
}

/// Every page under docs/man/man*/.
fn all_pages() -> Vec<PathBuf> {
    let mut v = Vec::new();
    for s in ["man1", "man5", "man8"] {
        let Ok(rd) = std::fs::read_dir(man_dir().join(s)) else {
            continue;
        };
        for e in rd {
            v.push(e.unwrap().path());
        }
    }
    v.sort();
    v
}

#[test]
fn every_page_renders_with_man_and_no_warning() {
    let pages = all_pages();
    for section in ["5", "8"] {
        assert!(
            pages
                .iter()
                .any(|p| p.extension().is_some_and(|e| e == section)),
            "no section {section} page"
        );
    }
    if Command::new("man").arg("--version").output().is_err() {
        eprintln!("man(1) is not installed: pages not rendered");
        return;
    }
    for p in pages {
        let out = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(&p)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "80")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}: {stderr}", p.display());
        assert!(stderr.trim().is_empty(), "{}: {stderr}", p.display());
        assert!(stdout.contains("NAME"), "{}: nothing rendered", p.display());
    }
}
