//! What powstream tells about each finished session: the [`FinishedSession`] record, the
//! [`SessionObserver`] hook that receives it, and the first observer, the archive stream of
//! `--archive FILE|-` (one JSON object per line; the schema is [`SCHEMA`], written out in
//! docs/archive.md).
//!
//! Observers are called on the thread of the peer whose session finished, right after its files
//! are written, so they must be quick and must not block (a metrics exporter updates counters;
//! the archive writes one line). One observer sees the sessions of every peer.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use owamp_core::stats::to_unix_timespec;
use owamp_core::time::OwampTime;
use owamp_core::wire::SessionId;
use owamp_os::store::sid_hex;

/// Which way a session's test packets went, as seen from powstream's host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From this host to the peer (`-t`).
    To,
    /// From the peer to this host (the default).
    From,
}

impl Direction {
    /// "to" or "from", as owping's and powstream's `--json` summaries write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::To => "to",
            Direction::From => "from",
        }
    }
}

/// One session of a stream that is over: saved, cut short, or failed.
#[derive(Debug, Clone)]
pub struct FinishedSession {
    /// The peer's name: its directory name with several peers (`--peer`, `--peers`), the
    /// test address as written otherwise.
    pub peer: String,
    /// Which way the packets went.
    pub direction: Direction,
    /// The session's SID.
    pub sid: SessionId,
    /// The sender's test address and port, when the session was set up that far.
    pub source: Option<SocketAddr>,
    /// The receiver's test address and port.
    pub destination: Option<SocketAddr>,
    /// The session's start time.
    pub start: OwampTime,
    /// The scheduled send time of its last packet (of the last packet received, for a session
    /// cut short): the second time in the file name.
    pub end: OwampTime,
    /// The .owp file written, if any.
    pub file: Option<PathBuf>,
    /// Whether the session ran to its end and all its results came in.
    pub complete: bool,
    /// Why it failed or was cut short, when it was (the message also logged).
    pub error: Option<String>,
    /// The JSON summary of the session's records (owping `--json`'s object), when it had any.
    pub summary: Option<serde_json::Value>,
}

/// Something that wants to know about every finished session (the archive stream, a metrics
/// exporter). Called from the peers' threads: implementations synchronise themselves and
/// return quickly.
pub trait SessionObserver: Send + Sync {
    /// One session is over (its files, if any, are already written).
    fn session_finished(&self, session: &FinishedSession);
}

/// The type of an archive field's JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// A string.
    String,
    /// A whole number.
    Integer,
    /// Any number.
    Number,
    /// true or false.
    Boolean,
    /// A JSON object.
    Object,
    /// An array of whole numbers.
    IntegerArray,
}

impl FieldType {
    /// The name docs/archive.md gives the type.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Integer => "integer",
            FieldType::Number => "number",
            FieldType::Boolean => "boolean",
            FieldType::Object => "object",
            FieldType::IntegerArray => "array of integers",
        }
    }

    /// Whether `v` is of this type (null is checked apart, by [`Field::nullable`]).
    pub fn matches(self, v: &serde_json::Value) -> bool {
        match self {
            FieldType::String => v.is_string(),
            FieldType::Integer => v.is_u64() || v.is_i64(),
            FieldType::Number => v.is_number(),
            FieldType::Boolean => v.is_boolean(),
            FieldType::Object => v.is_object(),
            FieldType::IntegerArray => v
                .as_array()
                .is_some_and(|a| a.iter().all(|x| x.is_u64() || x.is_i64())),
        }
    }
}

/// One field of an archive line.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// The key.
    pub name: &'static str,
    /// The type of its value.
    pub kind: FieldType,
    /// Whether it may be null.
    pub nullable: bool,
    /// Its unit, or "" when it has none.
    pub unit: &'static str,
    /// What it means.
    pub meaning: &'static str,
}

const fn field(
    name: &'static str,
    kind: FieldType,
    nullable: bool,
    unit: &'static str,
    meaning: &'static str,
) -> Field {
    Field {
        name,
        kind,
        nullable,
        unit,
        meaning,
    }
}

use FieldType::{Boolean, Integer, IntegerArray, Number, Object, String as Str};

/// Every key of an archive line, in the order docs/archive.md lists them. Every line has every
/// key (null where there is no value). The fields from `summary` on are those of the `--json`
/// summary, null when the session has no records.
pub const SCHEMA: &[Field] = &[
    field("peer", Str, false, "", "the peer: its directory name with --peer/--peers, the test address as written otherwise"),
    field("direction", Str, false, "", "\"from\" (the peer sent, the default) or \"to\" (this host sent, -t)"),
    field("sid", Str, false, "", "the session's SID, 32 lowercase hexadecimal digits"),
    field("source", Str, true, "", "the sender's test address and port (\"192.0.2.1:8765\", \"[2001:db8::1]:8765\")"),
    field("destination", Str, true, "", "the receiver's test address and port"),
    field("start_ntp", Str, false, "NTP timestamp", "the session's start, a 64-bit NTP timestamp in decimal (the file name's first number; a string because it exceeds 2^63)"),
    field("start_time", Str, false, "RFC 3339", "the session's start in UTC, to the nanosecond"),
    field("end_ntp", Str, false, "NTP timestamp", "the scheduled send time of the last packet (of the last packet held, for a session cut short), as start_ntp"),
    field("end_time", Str, false, "RFC 3339", "end_ntp in UTC"),
    field("file", Str, true, "", "the .owp file written (its .sum is beside it), as -d names its directory; null when none was"),
    field("complete", Boolean, false, "", "whether the session ran to its end and all its results came in"),
    field("error", Str, true, "", "why the session failed or was cut short (the message logged), null when it did not"),
    field("from", Object, true, "", "summary: the sender {host, address, port}"),
    field("to", Object, true, "", "summary: the receiver {host, address, port}"),
    field("first_unix", Number, true, "s (Unix time)", "summary: the send time of the first packet"),
    field("last_unix", Number, true, "s (Unix time)", "summary: the send time of the last packet"),
    field("packets", Integer, true, "packets", "summary: packets the session asked for"),
    field("sent", Integer, true, "packets", "summary: packets sent"),
    field("lost", Integer, true, "packets", "summary: packets lost"),
    field("loss_percent", Number, true, "%", "summary: lost / sent"),
    field("duplicates", Integer, true, "packets", "summary: duplicate packets received"),
    field("synchronized", Boolean, true, "", "summary: whether both clocks were synchronized"),
    field("max_error_s", Number, true, "s", "summary: the largest error estimate of a delay"),
    field("delay_min_s", Number, true, "s", "summary: the smallest one-way delay"),
    field("delay_median_s", Number, true, "s", "summary: the median delay (exact when delay_percentiles_exact)"),
    field("delay_max_s", Number, true, "s", "summary: the largest one-way delay"),
    field("delay_median_histogram_s", Number, true, "s", "summary: the median from owstats's histogram (a bucket's upper edge)"),
    field("jitter_p95_p50_s", Number, true, "s", "summary: the 95th percentile of the delay minus the median (owstats's jitter)"),
    field("delay_percentiles_exact", Boolean, true, "", "summary: whether the percentiles are of the measured delays (not the histogram's)"),
    field("delay_percentiles_s", Object, true, "s", "summary: {p50, p90, p95, p99}, exact, null when not exact"),
    field("hops", Object, true, "", "summary: {distinct, min, max} hop counts from the TTLs, null when none was received"),
    field("reordering", IntegerArray, true, "", "summary: n-reordering counts (RFC 4737), for n = 1, 2, ..."),
    field("session_finished", Boolean, true, "", "summary: whether the .owp file says the session finished normally"),
];

/// The 64-bit NTP timestamp `t` in RFC 3339 form, UTC, to the nanosecond.
pub fn rfc3339(t: OwampTime) -> String {
    let (secs, nanos) = to_unix_timespec(t.raw());
    time::OffsetDateTime::from_unix_timestamp(i64::from(secs))
        .ok()
        .map(|d| d + time::Duration::nanoseconds(i64::from(nanos)))
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The archive line of a session: one JSON object, every key of [`SCHEMA`] present.
pub fn archive_object(s: &FinishedSession) -> serde_json::Value {
    use serde_json::Value;
    let mut m = match &s.summary {
        Some(Value::Object(m)) => m.clone(),
        _ => serde_json::Map::new(),
    };
    let addr = |a: Option<SocketAddr>| a.map_or(Value::Null, |a| Value::from(a.to_string()));
    let text = |t: Option<String>| t.map_or(Value::Null, Value::from);
    for (k, v) in [
        ("peer", Value::from(s.peer.clone())),
        ("direction", Value::from(s.direction.as_str())),
        ("sid", Value::from(sid_hex(&s.sid).to_ascii_lowercase())),
        ("source", addr(s.source)),
        ("destination", addr(s.destination)),
        ("start_ntp", Value::from(s.start.raw().to_string())),
        ("start_time", Value::from(rfc3339(s.start))),
        ("end_ntp", Value::from(s.end.raw().to_string())),
        ("end_time", Value::from(rfc3339(s.end))),
        (
            "file",
            text(s.file.as_ref().map(|f| f.display().to_string())),
        ),
        ("complete", Value::from(s.complete)),
        ("error", text(s.error.clone())),
    ] {
        m.insert(k.to_owned(), v);
    }
    for f in SCHEMA {
        m.entry(f.name).or_insert(Value::Null);
    }
    Value::Object(m)
}

/// Checks an archive line against [`SCHEMA`]: every key present with a value of its type, and
/// no other key. The error names the first key that is wrong.
pub fn check_line(line: &str) -> Result<(), String> {
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("not JSON ({e}): {line}"))?;
    let m = v.as_object().ok_or("not a JSON object")?;
    for f in SCHEMA {
        let x = m.get(f.name).ok_or_else(|| format!("no {}", f.name))?;
        let ok = if x.is_null() {
            f.nullable
        } else {
            f.kind.matches(x)
        };
        if !ok {
            return Err(format!("{}: {x} is not {}", f.name, f.kind.name()));
        }
    }
    if let Some(k) = m.keys().find(|k| !SCHEMA.iter().any(|f| f.name == *k)) {
        return Err(format!("{k}: not in the schema"));
    }
    Ok(())
}

/// Where the archive goes.
enum Sink {
    /// A file opened for appending: each line goes to the end of the file as it is then, so
    /// a copy-and-truncate rotation (logrotate's `copytruncate`) loses nothing after it.
    File(File),
    /// Lines handed to the caller (powstream's standard output).
    Lines(Box<dyn Fn(String) + Send + Sync>),
}

/// The archive stream: one JSON line per finished session, written (one `write`) and flushed
/// as soon as the session is over.
pub struct ArchiveWriter {
    sink: Mutex<Sink>,
    /// Reports a failed write once (the archive is then still tried for each later session).
    on_error: Box<dyn Fn(String) + Send + Sync>,
}

impl ArchiveWriter {
    /// An archive appended to `path` (created if missing, mode 0644 less the umask).
    pub fn append_to(
        path: &Path,
        on_error: Box<dyn Fn(String) + Send + Sync>,
    ) -> std::io::Result<Self> {
        let file = OpenOptions::new().append(true).create(true).open(path)?;
        Ok(Self {
            sink: Mutex::new(Sink::File(file)),
            on_error,
        })
    }

    /// An archive whose lines (newline included) go to `lines`.
    pub fn to_lines(
        lines: Box<dyn Fn(String) + Send + Sync>,
        on_error: Box<dyn Fn(String) + Send + Sync>,
    ) -> Self {
        Self {
            sink: Mutex::new(Sink::Lines(lines)),
            on_error,
        }
    }
}

impl SessionObserver for ArchiveWriter {
    fn session_finished(&self, session: &FinishedSession) {
        let mut line = archive_object(session).to_string();
        line.push('\n');
        // A poisoned lock only means another thread panicked mid-write: go on.
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *sink {
            Sink::File(f) => {
                if let Err(e) = f.write_all(line.as_bytes()).and_then(|()| f.flush()) {
                    (self.on_error)(format!("archive: {e}"));
                }
            }
            Sink::Lines(f) => f(line),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(summary: Option<serde_json::Value>) -> FinishedSession {
        FinishedSession {
            peer: "127.0.0.1_861".into(),
            direction: Direction::From,
            sid: SessionId([0xab; 16]),
            source: Some("127.0.0.1:9000".parse().unwrap()),
            destination: None,
            start: OwampTime::from_raw(0xe800_0000_8000_0000),
            end: OwampTime::from_raw(0xe800_0001_0000_0000),
            file: Some(PathBuf::from("d/x.owp")),
            complete: false,
            error: Some("cut short".into()),
            summary,
        }
    }

    #[test]
    fn a_line_without_summary_has_every_key() {
        let v = archive_object(&session(None));
        check_line(&v.to_string()).unwrap();
        assert_eq!(v["sid"], "abababababababababababababababab");
        assert_eq!(v["start_ntp"], (0xe800_0000_8000_0000u64).to_string());
        assert_eq!(v["sent"], serde_json::Value::Null);
        // 0xe8000000 seconds after 1900 is 2023-05-05T22:21:52 UTC (date -u -d @$((0xe8000000 - 2208988800))).
        assert_eq!(v["start_time"], "2023-05-05T22:21:52.5Z");
        assert_eq!(v["end_time"], "2023-05-05T22:21:53Z");
    }

    #[test]
    fn the_checker_refuses_wrong_types_and_extra_keys() {
        let mut v = archive_object(&session(None));
        v["complete"] = serde_json::json!("yes");
        assert!(check_line(&v.to_string())
            .unwrap_err()
            .starts_with("complete"));
        let mut v = archive_object(&session(None));
        v["peer"] = serde_json::Value::Null;
        assert!(check_line(&v.to_string()).is_err());
        let v = archive_object(&session(Some(serde_json::json!({"surprise": 1}))));
        assert!(check_line(&v.to_string())
            .unwrap_err()
            .starts_with("surprise"));
    }

    /// docs/archive.md lists the schema's fields, in its order, with their types and units.
    #[test]
    fn the_documented_schema_is_the_written_one() {
        let doc = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/archive.md"),
        )
        .unwrap();
        let rows: Vec<Vec<String>> = doc
            .lines()
            .filter(|l| l.starts_with("| `"))
            .map(|l| {
                l.trim_matches('|')
                    .split('|')
                    .map(|c| c.trim().to_owned())
                    .collect()
            })
            .collect();
        let names: Vec<&str> = rows.iter().map(|r| r[0].trim_matches('`')).collect();
        let schema: Vec<&str> = SCHEMA.iter().map(|f| f.name).collect();
        assert_eq!(names, schema);
        for (r, f) in rows.iter().zip(SCHEMA) {
            let kind = if f.nullable {
                format!("{} or null", f.kind.name())
            } else {
                f.kind.name().to_owned()
            };
            assert_eq!(r[1], kind, "{}", f.name);
            assert_eq!(r[2], f.unit, "{}", f.name);
        }
    }
}
