//! The vector registry and runner.
//!
//! A [`Vector`] is a name and a check that returns what it found ([`Passed`]) or the reason it
//! failed. The built-in vectors come from [`crate::vectors::builtin`]; [`vectors_from_dirs`]
//! makes one vector per trace or capture file found in a directory: each is checked
//! ([`check::check`]), decrypted and verified when its mode and headers allow
//! ([`crate::secure::open`]), and replayed through our server and client cores
//! ([`crate::replay::replay_exchange`]). [`run`] runs vectors and collects a [`Report`],
//! printed as text (`PASS name (note)` / `FAIL name: why`, a count of replays, then
//! `N passed, M failed`) or as JSON.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use serde::Serialize;

use owamp_core::control::Protocol;

use crate::check;
use crate::import::{import, ImportOptions};
use crate::replay::{ReplayOutcome, Side};
use crate::secure::{self, Opened};
use crate::trace::{equivalent, Event, Trace};

/// What a passing vector reports besides passing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Passed {
    /// A remark printed after the name, e.g. what was verified or could not be.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// For a trace: what the replay through our cores found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay: Option<ReplayOutcome>,
}

/// A check: what it found on success, the reason on failure.
pub type CheckFn = Box<dyn Fn() -> Result<Passed, String> + Send + Sync>;

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
        Self::detailed(name, move || check().map(|()| Passed::default()))
    }

    /// A vector whose check also reports what it found when it passes.
    pub fn detailed(
        name: impl Into<String>,
        check: impl Fn() -> Result<Passed, String> + Send + Sync + 'static,
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
    /// What it found, when it passed.
    #[serde(flatten)]
    pub details: Passed,
}

/// The outcomes of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Vectors that passed.
    pub passed: usize,
    /// Vectors that failed.
    pub failed: usize,
    /// Passing vectors whose trace was replayed through both cores, byte for byte.
    pub replayed: usize,
    /// Passing vectors whose trace could not be replayed (entirely or on one side): they
    /// passed what could be checked, not a replay.
    pub not_replayed: usize,
    /// Every outcome, in run order.
    pub vectors: Vec<Outcome>,
}

impl Report {
    /// Whether every vector passed.
    pub fn all_passed(&self) -> bool {
        self.failed == 0
    }

    /// One line per vector (`PASS name`, with a note in parentheses, or `FAIL name: why`),
    /// a line counting replays when traces were run, then `N passed, M failed`.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for o in &self.vectors {
            match (&o.reason, &o.details.note) {
                (None, None) => s.push_str(&format!("PASS {}\n", o.name)),
                (None, Some(n)) => s.push_str(&format!("PASS {} ({n})\n", o.name)),
                (Some(r), _) => s.push_str(&format!("FAIL {}: {r}\n", o.name)),
            }
        }
        if self.replayed + self.not_replayed > 0 {
            s.push_str(&format!(
                "replays: {} traces byte-identical through both cores, {} not replayed (passed the checks that were possible)\n",
                self.replayed, self.not_replayed
            ));
        }
        s.push_str(&format!("{} passed, {} failed\n", self.passed, self.failed));
        s
    }

    /// The report as JSON: `{"passed": N, "failed": M, "replayed": R, "not_replayed": U,
    /// "vectors": [{"name", "passed", "reason"?, "note"?, "replay"?}]}`.
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
            Ok(details) => {
                report.passed += 1;
                if let Some(r) = &details.replay {
                    if r.server.is_identical() && r.client.is_identical() {
                        report.replayed += 1;
                    } else {
                        report.not_replayed += 1;
                    }
                }
                report.vectors.push(Outcome {
                    name: v.name.clone(),
                    passed: true,
                    reason: None,
                    details,
                });
            }
            Err(reason) => {
                report.failed += 1;
                report.vectors.push(Outcome {
                    name: v.name.clone(),
                    passed: false,
                    reason: Some(reason),
                    details: Passed::default(),
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
/// - each `*.trace`: see [`trace_vector`];
/// - each capture (`*.pcap`, `*.pcapng`, `*.cap`): see [`capture_vector`].
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

/// Decrypts and verifies (in authenticated and encrypted modes) and replays a trace that
/// passed [`check::check`]; `twin` is its decrypted twin and that twin's name, if any.
pub fn analyse(t: &Trace, twin: Option<(&Trace, &str)>) -> Result<Passed, String> {
    analyse_as(t, twin, None)
}

/// The protocol a file's place tells: a trace or capture below a directory named `twamp` is
/// TWAMP (see [`check::protocol_of`] for what comes before and after this hint).
pub fn protocol_hint(path: &Path) -> Option<Protocol> {
    path.parent()?
        .components()
        .any(|c| c.as_os_str().eq_ignore_ascii_case("twamp"))
        .then_some(Protocol::Twamp)
}

/// [`analyse`] with a protocol hint (see [`check::protocol_of`]).
pub fn analyse_as(
    t: &Trace,
    twin: Option<(&Trace, &str)>,
    hint: Option<Protocol>,
) -> Result<Passed, String> {
    if !t.events.iter().any(|e| matches!(e, Event::Control { .. })) {
        let why = "the trace holds no control connection";
        return Ok(Passed {
            note: Some(format!("test packets checked; not replayed: {why}")),
            replay: Some(ReplayOutcome {
                server: Side::NotPossible { reason: why.into() },
                client: Side::NotPossible { reason: why.into() },
            }),
        });
    }
    match secure::open_as(t, twin, hint)? {
        Opened::Unreadable(why) => Ok(Passed {
            note: Some(format!(
                "clear part and framing checked; not decrypted, not replayed: {why}"
            )),
            replay: Some(ReplayOutcome {
                server: Side::NotPossible {
                    reason: why.clone(),
                },
                client: Side::NotPossible { reason: why },
            }),
        }),
        Opened::Readable(ex) => {
            let r = crate::replay::replay_exchange(&ex).map_err(|e| e.to_string())?;
            let mut note = String::new();
            if ex.protocol == Protocol::Twamp {
                note.push_str("TWAMP (RFC 5357 3.1-3.8); ");
            }
            match (&ex.keys, ex.accepted) {
                (Some(_), true) => note.push_str(&format!(
                    "decrypted: {} control HMACs and {} test packets verified; ",
                    ex.hmacs, ex.test_packets
                )),
                (Some(_), false) => note.push_str(
                    "the passphrase opens the Token; set-up refused, nothing encrypted; ",
                ),
                (None, _) => {}
            }
            if let Some((_, name)) = twin {
                note.push_str(&format!("same plaintext as {name}; "));
            }
            note.push_str(&r.summary());
            if ex.protocol == Protocol::Twamp && ex.accepted {
                let checks = crate::twamp::check_test_packets(&ex)?;
                let summary = crate::twamp::summary(&checks)?;
                if checks.iter().any(|c| c.passed > 0) {
                    note.push_str("; test packets: ");
                    note.push_str(&summary);
                }
            }
            Ok(Passed {
                note: Some(note),
                replay: Some(r),
            })
        }
    }
}

/// The vector for one trace file: it parses, holds events and checks; beside its decrypted
/// twin `X.plain.trace` it has the same framing and decrypts to it; then [`analyse`].
pub fn trace_vector(path: PathBuf) -> Vector {
    Vector::detailed(path.display().to_string(), move || {
        let t = read_trace(&path)?;
        if t.events.is_empty() {
            return Err("the trace holds no events".into());
        }
        let hint = protocol_hint(&path);
        findings_text(&check::check_as(&t, check::protocol_of(&t, hint)))?;
        // X.trace beside X.plain.trace: same segmentation, same clear prefix, same plaintext.
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let mut twin = None;
        if let Some(stem) = name.strip_suffix(".trace") {
            let plain = path.with_file_name(format!("{stem}.plain.trace"));
            if !stem.ends_with(".plain") && plain.exists() {
                let p = read_trace(&plain).map_err(|e| format!("{}: {e}", plain.display()))?;
                same_framing(&t, &p).map_err(|e| format!("against {}: {e}", plain.display()))?;
                twin = Some((p, format!("{stem}.plain.trace")));
            }
        }
        analyse_as(&t, twin.as_ref().map(|(p, n)| (p, n.as_str())), hint)
    })
}

/// A trace and its decrypted twin: the same control lines (direction and length), the same
/// clear prefix (164 octets C>S, 96 S>C), the same test packet lines (time, addresses, length).
fn same_framing(wire: &Trace, plain: &Trace) -> Result<(), String> {
    use crate::trace::Direction;
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

/// The vector for one capture file: it imports; beside `X.trace` the import must be
/// equivalent to it (which that trace's vector analyses), otherwise the imported trace is
/// checked and analysed like a trace file.
pub fn capture_vector(path: PathBuf) -> Vector {
    Vector::detailed(path.display().to_string(), move || {
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
            let twin_name = twin.file_name().map(|n| n.to_string_lossy().into_owned());
            return Ok(Passed {
                note: Some(format!(
                    "imports to the same exchange as {}, which is replayed as a trace",
                    twin_name.unwrap_or_default()
                )),
                replay: None,
            });
        }
        let hint = protocol_hint(&path);
        findings_text(&check::check_as(&t, check::protocol_of(&t, hint)))
            .map_err(|e| format!("imported trace: {e}"))?;
        analyse_as(&t, None, hint).map_err(|e| format!("imported trace: {e}"))
    })
}
