//! The vector registry and runner.
//!
//! A [`Vector`] is a name and a check that returns `Ok(())` or the reason it failed. The
//! built-in vectors come from [`crate::vectors::builtin`]; [`vectors_from_dirs`] makes one
//! vector per trace or capture file found in a directory. [`run`] runs vectors and collects a
//! [`Report`], printed as text (`PASS name` / `FAIL name: why`, then `N passed, M failed`) or as
//! JSON.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::check;
use crate::import::{import, ImportOptions};
use crate::trace::{equivalent, Trace};

/// A check: `Ok(())` on success, the reason on failure.
pub type CheckFn = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

/// One named conformance vector.
pub struct Vector {
    /// A unique, stable name.
    pub name: String,
    /// The check.
    pub check: CheckFn,
}

impl Vector {
    /// A vector from a name and a check.
    pub fn new(
        name: impl Into<String>,
        check: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        Vector {
            name: name.into(),
            check: Box::new(check),
        }
    }
}

/// The outcome of one vector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The vector's name.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The outcomes of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Vectors that passed.
    pub passed: usize,
    /// Vectors that failed.
    pub failed: usize,
    /// Every outcome, in run order.
    pub vectors: Vec<Outcome>,
}

impl Report {
    /// Whether every vector passed.
    pub fn all_passed(&self) -> bool {
        self.failed == 0
    }

    /// One line per vector, then `N passed, M failed`.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for o in &self.vectors {
            match &o.reason {
                None => s.push_str(&format!("PASS {}\n", o.name)),
                Some(r) => s.push_str(&format!("FAIL {}: {r}\n", o.name)),
            }
        }
        s.push_str(&format!("{} passed, {} failed\n", self.passed, self.failed));
        s
    }

    /// The report as JSON: `{"passed": N, "failed": M, "vectors": [{"name", "passed",
    /// "reason"?}]}`.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// Runs the vectors in order. A vector that panics fails with the panic message.
pub fn run(vectors: &[Vector]) -> Report {
    let mut report = Report::default();
    for v in vectors {
        let r = catch_unwind(AssertUnwindSafe(|| (v.check)())).unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(format!("panicked: {msg}"))
        });
        match r {
            Ok(()) => {
                report.passed += 1;
                report.vectors.push(Outcome {
                    name: v.name.clone(),
                    passed: true,
                    reason: None,
                });
            }
            Err(reason) => {
                report.failed += 1;
                report.vectors.push(Outcome {
                    name: v.name.clone(),
                    passed: false,
                    reason: Some(reason),
                });
            }
        }
    }
    report
}

fn is_capture(p: &Path) -> bool {
    p.extension()
        .is_some_and(|e| e == "pcap" || e == "pcapng" || e == "cap")
}

fn is_trace(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "trace")
}

/// Files below `dir` (recursively), sorted.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

/// The vectors for every file below each directory (recursively):
/// - each `*.trace`: the trace parses and [`check::check`] finds nothing; a `X.trace` beside a
///   `X.plain.trace` must also have the same segment lengths and clear prefix;
/// - each capture (`*.pcap`, `*.pcapng`, `*.cap`): it imports; if a `X.trace` stands beside
///   `X.pcap`, the import must be [`equivalent`] to it, otherwise the imported trace is checked
///   like a trace file.
///
/// A directory that cannot be read, or holds no trace or capture, is a failing vector.
pub fn vectors_from_dirs(dirs: &[PathBuf]) -> Vec<Vector> {
    let mut out = Vec::new();
    for dir in dirs {
        let mut files = Vec::new();
        if let Err(e) = walk(dir, &mut files) {
            let why = format!("cannot read directory: {e}");
            out.push(Vector::new(dir.display().to_string(), move || {
                Err(why.clone())
            }));
            continue;
        }
        let before = out.len();
        for f in files {
            if is_trace(&f) {
                out.push(trace_vector(f));
            } else if is_capture(&f) {
                out.push(capture_vector(f));
            }
        }
        if out.len() == before {
            let d = dir.display().to_string();
            out.push(Vector::new(d, || {
                Err("no *.trace, *.pcap or *.pcapng file found".into())
            }));
        }
    }
    out
}

fn read_trace(path: &Path) -> Result<Trace, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    Trace::parse(&text).map_err(|e| format!("not a valid trace: {e}"))
}

/// Formats the first findings of a check.
fn findings_text(r: &check::Report) -> Result<(), String> {
    let Some(first) = r.findings.first() else {
        return Ok(());
    };
    let more = r.findings.len() - 1;
    if more == 0 {
        Err(first.to_string())
    } else {
        Err(format!("{first} (and {more} more)"))
    }
}

/// The vector for one trace file.
pub fn trace_vector(path: PathBuf) -> Vector {
    Vector::new(path.display().to_string(), move || {
        let t = read_trace(&path)?;
        if t.events.is_empty() {
            return Err("the trace holds no events".into());
        }
        findings_text(&check::check(&t))?;
        if let Some(Err(e)) = crate::replay::replay_trace(&t) {
            return Err(format!("replay: {e}"));
        }
        // X.trace beside X.plain.trace: same segmentation, same clear prefix.
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(stem) = name.strip_suffix(".trace") {
            let plain = path.with_file_name(format!("{stem}.plain.trace"));
            if !stem.ends_with(".plain") && plain.exists() {
                let p = read_trace(&plain).map_err(|e| format!("{}: {e}", plain.display()))?;
                same_framing(&t, &p).map_err(|e| format!("against {}: {e}", plain.display()))?;
            }
        }
        Ok(())
    })
}

/// A trace and its decrypted twin: the same control lines (direction and length), the same
/// clear prefix (164 octets C>S, 96 S>C), the same test packet lines (time, addresses, length).
fn same_framing(wire: &Trace, plain: &Trace) -> Result<(), String> {
    use crate::trace::{Direction, Event};
    if wire.events.len() != plain.events.len() {
        return Err(format!(
            "{} events vs {} in the decrypted trace",
            wire.events.len(),
            plain.events.len()
        ));
    }
    for (i, (a, b)) in wire.events.iter().zip(&plain.events).enumerate() {
        let ok = match (a, b) {
            (
                Event::Control {
                    dir: d1, bytes: x, ..
                },
                Event::Control {
                    dir: d2, bytes: y, ..
                },
            ) => d1 == d2 && x.len() == y.len(),
            (
                Event::Test {
                    micros: t1,
                    src: s1,
                    dst: d1,
                    payload: x,
                    ..
                },
                Event::Test {
                    micros: t2,
                    src: s2,
                    dst: d2,
                    payload: y,
                    ..
                },
            ) => t1 == t2 && s1 == s2 && d1 == d2 && x.len() == y.len(),
            _ => false,
        };
        if !ok {
            return Err(format!(
                "line {}: event differs in kind, direction, time, addresses or length from line {}",
                wire.event_line(i),
                plain.event_line(i)
            ));
        }
    }
    for (dir, n) in [
        (Direction::ClientToServer, 164),
        (Direction::ServerToClient, 96),
    ] {
        let (a, b) = (wire.stream(dir), plain.stream(dir));
        let n = n.min(a.len());
        if let Some(i) = (0..n).find(|&i| a.get(i) != b.get(i)) {
            return Err(format!("{dir} clear prefix differs at stream offset {i}"));
        }
    }
    Ok(())
}

/// The vector for one capture file.
pub fn capture_vector(path: PathBuf) -> Vector {
    Vector::new(path.display().to_string(), move || {
        let data = std::fs::read(&path).map_err(|e| format!("cannot read: {e}"))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let t = import(
            &data,
            &ImportOptions {
                connection: 0,
                name,
            },
        )
        .map_err(|e| format!("cannot import: {e}"))?;
        if t.events.is_empty() {
            return Err("the capture holds no OWAMP control or test traffic".into());
        }
        let twin = path.with_extension("trace");
        if twin.exists() {
            let want = read_trace(&twin).map_err(|e| format!("{}: {e}", twin.display()))?;
            equivalent(&t, &want)
                .map_err(|e| format!("import differs from {}: {e}", twin.display()))?;
        }
        findings_text(&check::check(&t)).map_err(|e| format!("imported trace: {e}"))
    })
}
