//! owstats: prints the statistics of .owp session files exactly as perfSONAR's owstats does.
//! A two-way file (twping `-F`) gets twping's outputs ([`crate::twping::file_report`]).
//!
//! Flags (owstats's set): `-a` percentiles, `-b` bucket width, `-d` directory for `-p`, `-M`
//! machine-readable summary, `-n` units, `-N` packets per sub-summary, `-p` print to files,
//! `-Q` quiet, `-R` raw records, `-v[N]` per-packet lines (of the first N records), `-U` Unix
//! timestamps, `-h` help. `--json` (an extension) prints each file's summary numbers in
//! owping's `--json` shape instead.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, Command};
use owamp_core::owp::{OwpReader, SessionHeader};
use owamp_core::stats::report::{self, EndpointName, ReportContext, Scale};
use owamp_core::stats::{PacketEvent, SessionMeta, Stats, StatsConfig, Summary};
use owamp_core::time::OwampTime;
use owamp_os::store::sid_hex;

use crate::sys::Environment;

/// Schedule offsets allowed per session besides 8 per record the file can hold: enough for any
/// real session, small enough that a corrupt packet count cannot make owstats run for hours.
const SCHEDULE_BASE_LIMIT: u64 = 1 << 26;

/// The schedule steps the statistics of a session file that can hold at most `max_records`
/// records ([`OwpReader::max_records`]) may take: the packet count in the file is not trusted
/// to bound them.
pub(crate) fn schedule_limit(max_records: u64) -> u64 {
    SCHEDULE_BASE_LIMIT.saturating_add(max_records.saturating_mul(8))
}

/// Marks a write to a closed stdout.
const BROKEN_PIPE: &str = "broken pipe";

/// owstats's options after its consistency rules are applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// -a: percentiles to report.
    pub percentiles: Vec<f32>,
    /// -b: histogram bucket width (a C float in owstats).
    pub bucket_width: f32,
    /// -d: directory for -p files.
    pub save_dir: Option<PathBuf>,
    /// -M.
    pub machine: bool,
    /// -n.
    pub scale: Scale,
    /// -N: packets per sub-summary (0: one summary).
    pub sub_packets: u32,
    /// -p.
    pub print_files: bool,
    /// -R.
    pub raw: bool,
    /// -v.
    pub verbose: bool,
    /// -vN: read only the first N records (0: all).
    pub record_limit: u64,
    /// -U.
    pub unix_timestamps: bool,
    /// --json: one JSON document with every file's summary (an extension).
    pub json: bool,
    /// --plot: draw the (one) session into this SVG file as well (an extension).
    pub plot: Option<PathBuf>,
    /// The session files.
    pub files: Vec<PathBuf>,
}

/// owstats's command line.
pub fn command() -> Command {
    Command::new("owstats")
        .about("Print statistics of OWAMP session files (.owp) as perfSONAR owstats does")
        .override_usage("owstats [arguments] sessionfile [sessionfile]*")
        .version(crate::man::VERSION)
        .disable_version_flag(true)
        .arg(crate::man::version_flag())
        .after_help(crate::man::VERSION_LINE)
        .arg(
            Arg::new("alpha")
                .short('a')
                .value_name("alpha")
                .help("report an additional percentile level for the delays (comma separated)"),
        )
        .arg(
            Arg::new("bucketwidth")
                .short('b')
                .value_name("bucketwidth")
                .help("bin size for histogram calculations"),
        )
        .arg(
            Arg::new("savedir")
                .short('d')
                .value_name("dir")
                .help("directory for the files of -p"),
        )
        .arg(
            Arg::new("machine")
                .short('M')
                .action(ArgAction::SetTrue)
                .help("print machine (perl) readable summary"),
        )
        .arg(
            Arg::new("units")
                .short('n')
                .value_name("units")
                .help("'n','u','m', or 's'"),
        )
        .arg(
            Arg::new("count")
                .short('N')
                .value_name("count")
                .help("number of test packets (to summarize per sub-session)"),
        )
        .arg(
            Arg::new("printfiles")
                .short('p')
                .action(ArgAction::SetTrue)
                .help("write each summary to a file named after its start and end time"),
        )
        .arg(
            Arg::new("quiet")
                .short('Q')
                .action(ArgAction::SetTrue)
                .help("do not print -v or -M output"),
        )
        .arg(
            Arg::new("raw")
                .short('R')
                .action(ArgAction::SetTrue)
                .help("print RAW data: \"SEQNO STIME SS SERR RTIME RS RERR TTL\""),
        )
        .arg(
            Arg::new("verbose")
                .short('v')
                .action(ArgAction::SetTrue)
                .help("print out individual delays (-vN: of the first N packets)"),
        )
        .arg(
            Arg::new("verbose-limit")
                .long("verbose-limit")
                .hide(true)
                .value_name("N"),
        )
        .arg(
            Arg::new("unix")
                .short('U')
                .action(ArgAction::SetTrue)
                .help("add UNIX timestamps when printing individual delays"),
        )
        .arg(
            Arg::new("json")
                .long("json")
                .action(ArgAction::SetTrue)
                .conflicts_with_all([
                    "alpha",
                    "machine",
                    "units",
                    "count",
                    "printfiles",
                    "quiet",
                    "raw",
                    "verbose",
                    "unix",
                ])
                .help("print each file's summary numbers as JSON, as owping --json does (an extension)"),
        )
        .arg(
            Arg::new("plot")
                .long("plot")
                .value_name("FILE.svg")
                .value_parser(clap::value_parser!(PathBuf))
                .help("draw the session's one-way delay over time, losses marked, and its delay distribution into an SVG file (an extension; one session file)"),
        )
        .arg(
            Arg::new("files")
                .value_name("sessionfile")
                .num_args(0..)
                .value_parser(clap::value_parser!(PathBuf)),
        )
}

/// owstats's -v takes its optional count attached ("-v20"): turn that into a form clap reads.
pub(crate) fn split_attached_verbose(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    for a in args {
        match a.to_str() {
            Some(s)
                if s.len() > 2
                    && s.starts_with("-v")
                    && s[2..].bytes().all(|b| b.is_ascii_digit()) =>
            {
                out.push(OsString::from("-v"));
                out.push(OsString::from(format!("--verbose-limit={}", &s[2..])));
            }
            _ => out.push(a),
        }
    }
    out
}

/// `-a` of owstats, owping and twping: a comma separated list of percentages (0 to 100), each
/// kept as the C float the reference parses it into. An empty item is not a value.
pub(crate) fn parse_percentiles(s: &str) -> Result<Vec<f32>, String> {
    s.split(',')
        .map(|t| match t.trim().parse::<f64>() {
            _ if t.trim().is_empty() => Err("Unable to parse percentiles specification".into()),
            Ok(v) if (0.0..=100.0).contains(&v) => Ok(v as f32),
            _ => Err(format!("Invalid numeric value ({t}) for percentile")),
        })
        .collect()
}

/// `-b` of owstats, owping and twping: the histogram's bucket width in seconds, a positive C
/// float.
pub(crate) fn parse_bucket_width(s: &str) -> Result<f32, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && (v as f32) > 0.0 && (v as f32).is_finite() => Ok(v as f32),
        _ => Err("Invalid '-b' value. Positive float expected".into()),
    }
}

/// Parses the command line (without the program name handling of clap's help) and applies
/// owstats's rules between flags; warnings go to `warnings`.
pub fn parse_options(
    args: impl IntoIterator<Item = OsString>,
    warnings: &mut Vec<String>,
) -> Result<Options, clap::Error> {
    let m = command().try_get_matches_from(split_attached_verbose(args))?;
    let invalid = |msg: String| command().error(clap::error::ErrorKind::ValueValidation, msg);
    let percentiles = match m.get_one::<String>("alpha") {
        Some(s) => parse_percentiles(s).map_err(invalid)?,
        None => Vec::new(),
    };
    let bucket_width = match m.get_one::<String>("bucketwidth") {
        Some(s) => parse_bucket_width(s).map_err(invalid)?,
        None => 0.0001,
    };
    let scale = match m.get_one::<String>("units") {
        Some(s) => s
            .chars()
            .next()
            .and_then(Scale::from_letter)
            .ok_or_else(|| invalid("Invalid '-n' value.".into()))?,
        None => Scale::Milliseconds,
    };
    let sub_packets = match m.get_one::<String>("count") {
        Some(s) => s
            .parse::<u32>()
            .map_err(|_| invalid("Invalid \"-N\" value. Positive integer expected".into()))?,
        None => 0,
    };
    let record_limit = match m.get_one::<String>("verbose-limit") {
        Some(s) => s
            .parse::<u64>()
            .map_err(|_| invalid("Invalid \"-v\" value. Positive integer expected".into()))?,
        None => 0,
    };
    let mut o = Options {
        percentiles,
        bucket_width,
        save_dir: m.get_one::<String>("savedir").map(PathBuf::from),
        machine: m.get_flag("machine"),
        scale,
        sub_packets,
        print_files: m.get_flag("printfiles"),
        raw: m.get_flag("raw"),
        verbose: m.get_flag("verbose"),
        record_limit,
        unix_timestamps: m.get_flag("unix"),
        json: m.get_flag("json"),
        plot: m.get_one::<PathBuf>("plot").cloned(),
        files: m
            .get_many::<PathBuf>("files")
            .map(|v| v.cloned().collect())
            .unwrap_or_default(),
    };
    // owstats: -R implies -Q; -Q drops -v and -M; -M drops -v.
    let quiet = m.get_flag("quiet") || o.raw;
    if o.verbose && quiet {
        warnings.push("Ignoring '-v', '-Q' set".into());
        o.verbose = false;
    }
    if o.machine && quiet {
        warnings.push("Ignoring '-M', '-Q' set".into());
        o.machine = false;
    }
    if o.verbose && o.machine {
        warnings.push("Ignoring '-v', '-M' set".into());
        o.verbose = false;
    }
    Ok(o)
}

/// Runs owstats; returns the exit status.
pub fn run(
    args: impl IntoIterator<Item = OsString>,
    out: &mut dyn Write,
    err: &mut dyn Write,
    env: &dyn Environment,
) -> i32 {
    let mut warnings = Vec::new();
    let opts = match parse_options(args, &mut warnings) {
        Ok(o) => o,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = write!(err, "{}", e.render());
            return code;
        }
    };
    for w in warnings {
        let _ = writeln!(err, "owstats: {w}");
    }
    if let Some(svg) = &opts.plot {
        if let Err(msg) = plot_file(&opts.files, svg) {
            let _ = writeln!(err, "owstats: {msg}");
            return 1;
        }
    }
    if opts.json {
        return json_files(&opts, out, err, env);
    }
    for f in &opts.files {
        if let Err(msg) = do_stats(f, &opts, out, env) {
            let _ = out.flush();
            // A closed stdout (owstats ... | head) ends the run quietly, as SIGPIPE ends owstats.
            if msg != BROKEN_PIPE {
                let _ = writeln!(err, "owstats: {}: {msg}", f.display());
            }
            return 1;
        }
    }
    let _ = out.flush();
    0
}

/// owstats --plot: the one session file drawn into `svg`.
fn plot_file(files: &[PathBuf], svg: &Path) -> Result<(), String> {
    let [file] = files else {
        return Err(format!(
            "--plot draws one session: give one session file, not {}",
            files.len()
        ));
    };
    let f = File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut reader = OwpReader::new(std::io::BufReader::new(f))
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let sid = sid_hex(&reader.header().request.sid);
    crate::plot::plot(&mut reader, svg, &format!("OWAMP session {sid}"))
}

/// owstats --json: `{"sessions": [...]}`, one object per file in owping's `--json` shape
/// plus its `file`; nothing is printed unless every file could be read.
fn json_files(
    opts: &Options,
    out: &mut dyn Write,
    err: &mut dyn Write,
    env: &dyn Environment,
) -> i32 {
    let mut sessions = Vec::new();
    for f in &opts.files {
        let one = File::open(f)
            .map_err(|e| e.to_string())
            .and_then(|file| OwpReader::new(BufReader::new(file)).map_err(|e| e.to_string()))
            .and_then(|reader| {
                let r = &reader.header().request;
                // JSON has no use for owstats's "***": a failed lookup gives the address.
                let name = |addr: std::net::IpAddr, port: u16| EndpointName {
                    host: env.host_name(addr).unwrap_or_else(|| addr.to_string()),
                    ..EndpointName::numeric(addr, port)
                };
                let from = name(r.sender_address, r.sender_port);
                let to = name(r.receiver_address, r.receiver_port);
                json_summary(None, reader, &from, &to, f64::from(opts.bucket_width))
            });
        match one {
            Ok(mut v) => {
                if let Some(o) = v.as_object_mut() {
                    o.insert("file".into(), f.display().to_string().into());
                }
                sessions.push(v);
            }
            Err(msg) => {
                let _ = writeln!(err, "owstats: {}: {msg}", f.display());
                return 1;
            }
        }
    }
    let doc = serde_json::json!({ "sessions": sessions });
    match writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    ) {
        Ok(()) => {
            let _ = out.flush();
            0
        }
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 1,
        Err(e) => {
            let _ = writeln!(err, "owstats: {e}");
            1
        }
    }
}

pub(crate) fn peer(env: &dyn Environment, addr: std::net::IpAddr, port: u16) -> EndpointName {
    EndpointName {
        host: env.host_name(addr).unwrap_or_else(|| "***".into()),
        addr: addr.to_string(),
        port: port.to_string(),
    }
}

/// Statistics of one file, written to `out` (or to files with -p).
fn do_stats(
    path: &Path,
    opts: &Options,
    out: &mut dyn Write,
    env: &dyn Environment,
) -> Result<(), String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    match OwpReader::new(BufReader::new(file)) {
        Ok(reader) => stats_from(reader, opts, out, env, None),
        // twping -F: a two-way file, printed as twping prints its results.
        Err(owamp_core::owp::OwpError::TwoWay) => {
            let file = File::open(path).map_err(|e| e.to_string())?;
            let f =
                owamp_core::owp::read_two_way(BufReader::new(file)).map_err(|e| e.to_string())?;
            let text = crate::twping::file_report(&f, opts, env)?;
            out.write_all(text.as_bytes()).map_err(|e| {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    BROKEN_PIPE.to_string()
                } else {
                    e.to_string()
                }
            })
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Statistics of one session read by `reader`, written to `out` (or to files with -p).
/// `names`, when given, are the host names printed for the sender and the receiver instead of
/// their reverse lookups (owping names the peer as the user wrote it).
pub(crate) fn stats_from<R: Read + Seek>(
    mut reader: OwpReader<R>,
    opts: &Options,
    out: &mut dyn Write,
    env: &dyn Environment,
    names: Option<(&str, &str)>,
) -> Result<(), String> {
    let io = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            BROKEN_PIPE.to_string()
        } else {
            e.to_string()
        }
    };

    if opts.raw {
        for rec in reader.records().map_err(|e| e.to_string())? {
            let rec = rec.map_err(|e| e.to_string())?;
            out.write_all(report::raw_line(&rec).as_bytes())
                .map_err(io)?;
        }
        return Ok(());
    }

    let header: SessionHeader = reader.header().clone();
    let r = &header.request;
    let time = |secs: u32| env.local_time(secs);
    let (from, to) = match names {
        Some((f, t)) => (
            EndpointName {
                host: f.to_owned(),
                ..EndpointName::numeric(r.sender_address, r.sender_port)
            },
            EndpointName {
                host: t.to_owned(),
                ..EndpointName::numeric(r.receiver_address, r.receiver_port)
            },
        ),
        None => (
            peer(env, r.sender_address, r.sender_port),
            peer(env, r.receiver_address, r.receiver_port),
        ),
    };
    let ctx = ReportContext {
        from,
        to,
        scale: opts.scale,
        unix_timestamps: opts.unix_timestamps,
        time: &time,
    };
    let mut stats = stats_for(&reader, f64::from(opts.bucket_width))?;

    // Sub-summaries of N packets each (owstats -N), the last one possibly shorter. The
    // packet count comes from the file: the ranges are made one at a time, never collected.
    let npackets = r.num_packets;
    let n = opts.sub_packets;
    let ranges: Box<dyn Iterator<Item = (u32, Option<u32>)>> = if n == 0 || n >= npackets {
        Box::new(std::iter::once((0, None)))
    } else {
        let count = npackets / n + u32::from(npackets % n != 0);
        Box::new((0..count).map(move |i| {
            let end = n.saturating_mul(i + 1);
            (n * i, (end <= npackets).then_some(end))
        }))
    };

    let mut begin_index = 0u64;
    for (first, last) in ranges {
        let mut text = String::new();
        if opts.verbose {
            text.push_str(&report::stats_header(&r.sid, &ctx));
        }
        let (summary, next) = summarize_range(
            &mut reader,
            &mut stats,
            begin_index,
            (first, last),
            opts.record_limit,
            |ev| {
                if opts.verbose {
                    text.push_str(&report::packet_line(&ev, &ctx));
                }
                // Per-packet lines are flushed as they come, like owstats's stdio.
                if text.len() > 1 << 16 && !opts.print_files {
                    out.write_all(text.as_bytes()).map_err(io)?;
                    text.clear();
                }
                Ok(())
            },
        )?;
        begin_index = next;
        if opts.machine {
            text.push_str(&report::machine(&summary, &header, &ctx));
        } else {
            text.push_str(&report::summary(&summary, &header, &ctx, &opts.percentiles));
        }
        if opts.print_files {
            let ext = if opts.machine { ".sum" } else { ".txt" };
            let name = format!(
                "{:020}_{:020}{ext}",
                summary.start_time.raw(),
                summary.end_time.raw()
            );
            let target = match &opts.save_dir {
                Some(d) => d.join(&name),
                None => PathBuf::from(&name),
            };
            write_atomically(&target, text.as_bytes()).map_err(io)?;
            writeln!(out, "{}", target.display()).map_err(io)?;
        } else {
            out.write_all(text.as_bytes()).map_err(io)?;
        }
    }
    Ok(())
}

/// Summarizes packets `first..last` (`last` `None`: to the end) of the session `reader`
/// holds, reading its records from record `begin_index` on (at most `record_limit` of them
/// when not 0), and hands each per-packet event to `on_event`. Returns the summary and the
/// record index where the next range begins (owstats -N reads range after range this way).
pub(crate) fn summarize_range<R: Read + Seek>(
    reader: &mut OwpReader<R>,
    stats: &mut Stats,
    begin_index: u64,
    (first, last): (u32, Option<u32>),
    record_limit: u64,
    mut on_event: impl FnMut(PacketEvent) -> Result<(), String>,
) -> Result<(Summary, u64), String> {
    let mut count = reader.stats_record_count(begin_index);
    if record_limit > 0 {
        count = count.min(record_limit);
    }
    let mut sum = stats.summarize(first, last).map_err(|e| e.to_string())?;
    for rec in reader
        .records_from(begin_index, count)
        .map_err(|e| e.to_string())?
    {
        let rec = rec.map_err(|e| e.to_string())?;
        if let Some(ev) = sum.push(&rec).map_err(|e| e.to_string())? {
            on_event(ev)?;
        }
    }
    let next = sum.next_index();
    let summary = sum.finish().map_err(|e| e.to_string())?;
    Ok((summary, next.map_or(0, |i| begin_index + i)))
}

/// The statistics engine for the session `reader` holds, bounded as owstats bounds it: the
/// packet count in a file is not trusted to bound the schedule steps.
pub(crate) fn stats_for<R: Read + Seek>(
    reader: &OwpReader<R>,
    bucket_width: f64,
) -> Result<Stats, String> {
    // owstats's numbers come from the histogram: memory stays bounded whatever the session's
    // length.
    stats_with(reader, bucket_width, false)
}

fn stats_with<R: Read + Seek>(
    reader: &OwpReader<R>,
    bucket_width: f64,
    keep_delays: bool,
) -> Result<Stats, String> {
    Stats::new(
        SessionMeta::from_header(reader.header()),
        StatsConfig {
            bucket_width,
            schedule_limit: Some(schedule_limit(reader.max_records())),
            keep_delays,
        },
    )
    .map_err(|e| e.to_string())
}

/// The most records whose delays `--json` keeps for exact percentiles (8 octets each: 32 MiB
/// at most). Longer sessions get the histogram's percentiles only, and say so.
pub const JSON_EXACT_RECORDS: u64 = 1 << 22;

/// A measured time in seconds (a delay, an error estimate) as JSON prints it: to the
/// picosecond, finer than the 2^-32 s resolution of OWAMP timestamps, without the binary
/// noise of a double's last digits.
pub fn json_seconds(x: f64) -> f64 {
    (x * 1e12).round() / 1e12
}

/// A number the histogram computed in single precision (as perfSONAR's owstats does: bucket
/// width times bucket number) as JSON prints it: as the single-precision number it is
/// (0.0001, not 0.00009999999747378752).
pub fn json_single(x: f64) -> f64 {
    let single = x as f32;
    single.to_string().parse().unwrap_or(x)
}

/// Unix seconds of an OWAMP time.
fn unix_secs(t: OwampTime) -> f64 {
    t.as_secs_f64() - owamp_core::time::NTP_UNIX_OFFSET_SECS as f64
}

/// The JSON summary of one session (owping and owstats `--json`, powstream `-j`): the whole
/// session's numbers, delays in seconds, `null` where not defined. `direction` is owping's
/// "to" or "from" (`null` when not known).
pub fn json_summary<R: Read + Seek>(
    direction: Option<&str>,
    mut reader: OwpReader<R>,
    from: &EndpointName,
    to: &EndpointName,
    bucket_width: f64,
) -> Result<serde_json::Value, String> {
    let header = reader.header().clone();
    let exact = reader.stats_record_count(0) <= JSON_EXACT_RECORDS;
    let mut stats = stats_with(&reader, bucket_width, exact)?;
    let (s, _) = summarize_range(&mut reader, &mut stats, 0, (0, None), 0, |_| Ok(()))?;
    let secs = |x: Option<f64>| x.map(json_seconds);
    let single = |x: Option<f64>| x.map(json_single);
    let exact_at = |alpha: f64| {
        secs(if exact {
            s.exact_percentile(alpha)
        } else {
            None
        })
    };
    let (n, min_ttl, max_ttl) = s.ttl_range();
    let peer = |p: &EndpointName| serde_json::json!({ "host": p.host, "address": p.addr, "port": p.port.parse::<u16>().ok() });
    let loss_percent = 100.0 * s.loss_fraction();
    Ok(serde_json::json!({
        "direction": direction,
        "sid": sid_hex(&header.request.sid).to_ascii_lowercase(),
        "from": peer(from),
        "to": peer(to),
        "first_unix": unix_secs(s.start_time),
        "last_unix": unix_secs(s.end_time),
        "packets": header.request.num_packets,
        "sent": s.sent,
        "lost": s.lost,
        "loss_percent": loss_percent,
        "duplicates": s.duplicates,
        "synchronized": s.sync,
        "max_error_s": json_seconds(s.max_error),
        "delay_min_s": secs(s.min_delay()),
        // Exact (one of the measured delays) when the delays were kept, else the histogram's.
        "delay_median_s": if exact { exact_at(0.5) } else { single(s.median()) },
        "delay_max_s": secs(s.max_delay()),
        // owstats's numbers, from the histogram (a bucket's upper edge).
        "delay_median_histogram_s": single(s.median()),
        "jitter_p95_p50_s": single(s.jitter()),
        "delay_percentiles_exact": exact,
        "delay_percentiles_s": {
            "p50": exact_at(0.5),
            "p90": exact_at(0.9),
            "p95": exact_at(0.95),
            "p99": exact_at(0.99),
        },
        "hops": if n == 0 { None } else { Some(serde_json::json!({
            "distinct": n,
            "min": 255 - u32::from(max_ttl),
            "max": 255 - u32::from(min_ttl),
        })) },
        "reordering": s.reordering,
        "session_finished": header.is_finished(),
    }))
}

/// Writes `bytes` to a temporary name in the target's directory, then renames it into place
/// (owstats writes an ".i" file and links it to the final name).
pub(crate) fn write_atomically(target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = target.as_os_str().to_owned();
    tmp.push(format!(".{}.i", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let res = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, target)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIR: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/traces/reference/owp/summary/"
    );

    /// Names every address "peer", so that nothing depends on the resolver.
    struct Named;
    impl Environment for Named {
        fn host_name(&self, _addr: std::net::IpAddr) -> Option<String> {
            Some("peer".into())
        }
        fn local_time(&self, _secs: u32) -> Option<String> {
            None
        }
    }

    fn run_args(v: &[&str]) -> (i32, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(v.iter().map(OsString::from), &mut out, &mut err, &Named);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    /// The value of `key` in perfSONAR owstats -M output.
    fn machine_value<'a>(text: &'a str, key: &str) -> &'a str {
        text.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('\t')))
            .unwrap()
    }

    #[test]
    fn json_matches_the_reference_machine_summary() {
        let files = [format!("{DIR}to.owp"), format!("{DIR}from.owp")];
        let (code, out, err) = run_args(&["owstats", "--json", &files[0], &files[1]]);
        assert_eq!(code, 0, "{err}");
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        let sessions = doc["sessions"].as_array().unwrap();
        assert_eq!(sessions.len(), 2);
        for (s, (file, dir)) in sessions.iter().zip(files.iter().zip(["to", "from"])) {
            let want = std::fs::read_to_string(format!("{DIR}owstats_{dir}_machine.txt")).unwrap();
            let num = |k: &str| machine_value(&want, k).parse::<f64>().unwrap();
            assert_eq!(s["file"], file.as_str());
            assert!(s["direction"].is_null());
            assert_eq!(s["sid"], machine_value(&want, "SID"));
            assert_eq!(s["sent"].as_f64().unwrap(), num("SENT"));
            assert_eq!(s["lost"].as_f64().unwrap(), num("LOST"));
            assert_eq!(s["duplicates"].as_f64().unwrap(), num("DUPS"));
            assert_eq!(s["packets"].as_f64().unwrap(), num("SESSION_PACKET_COUNT"));
            assert_eq!(s["synchronized"], num("SYNC") == 1.0);
            assert_eq!(s["session_finished"], num("SESSION_FINISHED") == 1.0);
            assert_eq!(s["from"]["host"], "peer");
            assert_eq!(s["from"]["address"], machine_value(&want, "FROM_ADDR"));
            assert_eq!(s["to"]["port"].as_f64().unwrap(), num("TO_PORT"));
            // owstats -M prints six significant digits.
            for (k, m) in [
                ("delay_min_s", "MIN"),
                ("delay_max_s", "MAX"),
                ("delay_median_histogram_s", "MEDIAN"),
                ("jitter_p95_p50_s", "PDV"),
            ] {
                let got = s[k].as_f64().unwrap();
                assert!((got - num(m)).abs() <= num(m).abs() * 1e-5, "{k}: {got}");
            }
            // The same object as owping --json gives for the same file, but for the two keys
            // only one of them knows.
            let bytes = std::fs::read(file).unwrap();
            let peer = EndpointName {
                host: "peer".into(),
                ..EndpointName::numeric(std::net::Ipv4Addr::LOCALHOST.into(), 0)
            };
            let o = crate::owping::json_summary(dir, &bytes, &peer, &peer, f64::from(0.0001f32))
                .unwrap();
            // Through text, as the other one came.
            let mut o: serde_json::Value = serde_json::from_str(&o.to_string()).unwrap();
            let mut j = s.clone();
            for v in [&mut o, &mut j] {
                let m = v.as_object_mut().unwrap();
                for k in ["file", "direction", "from", "to"] {
                    m.remove(k);
                }
            }
            assert_eq!(o, j);
        }
    }

    /// JSON numbers at their real precision, and an exact median that, unlike the
    /// histogram's, lies between the smallest and the largest delay.
    #[test]
    fn json_numbers_are_exact_and_the_median_within_the_delays() {
        let (code, out, err) = run_args(&["owstats", "--json", &format!("{DIR}from.owp")]);
        assert_eq!(code, 0, "{err}");
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        let s = &doc["sessions"][0];
        let f = |k: &str| s[k].as_f64().unwrap();
        // The histogram puts this session's median in the 0.1 ms bucket, above its max.
        assert_eq!(f("delay_median_histogram_s"), 0.0001);
        assert!(f("delay_median_histogram_s") > f("delay_max_s"));
        assert!(f("delay_min_s") <= f("delay_median_s") && f("delay_median_s") <= f("delay_max_s"));
        assert_eq!(s["delay_percentiles_exact"], true);
        let p = &s["delay_percentiles_s"];
        assert_eq!(p["p50"], s["delay_median_s"]);
        let (p50, p99) = (p["p50"].as_f64().unwrap(), p["p99"].as_f64().unwrap());
        assert!(p50 <= p99 && p99 <= f("delay_max_s"));
        // No binary noise: measured times to the picosecond at most, the histogram's as the
        // single-precision numbers they are.
        for k in ["delay_min_s", "delay_max_s", "delay_median_s"] {
            let text = s[k].to_string();
            let decimals = text.split('.').nth(1).map_or(0, str::len);
            assert!(decimals <= 12, "{k}: {text}");
        }
        assert_eq!(s["delay_median_histogram_s"].to_string(), "0.0001");
    }

    #[test]
    fn json_bucket_width_and_errors() {
        let file = format!("{DIR}to.owp");
        // A coarser histogram moves the median to its bucket.
        let (code, out, _) = run_args(&["owstats", "--json", "-b", "0.001", &file]);
        assert_eq!(code, 0);
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        let median = doc["sessions"][0]["delay_median_histogram_s"]
            .as_f64()
            .unwrap();
        assert_eq!(median, 0.001);
        // Output flags it has no use for are refused.
        for flag in ["-M", "-R", "-v", "-p", "-Q", "-U"] {
            let (code, out, err) = run_args(&["owstats", "--json", flag, &file]);
            assert_eq!(code, 1, "{flag}");
            assert!(
                out.is_empty() && err.contains("cannot be used"),
                "{flag}: {err}"
            );
        }
        // One unreadable file: an error and no partial document.
        let (code, out, err) = run_args(&["owstats", "--json", &file, "/nonexistent/x.owp"]);
        assert_eq!(code, 1);
        assert!(out.is_empty());
        assert!(err.contains("/nonexistent/x.owp"), "{err}");
    }
}
