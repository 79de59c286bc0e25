//! owstats: prints the statistics of .owp session files exactly as perfSONAR's owstats does.
//!
//! Flags (owstats's set): `-a` percentiles, `-b` bucket width, `-d` directory for `-p`, `-M`
//! machine-readable summary, `-n` units, `-N` packets per sub-summary, `-p` print to files,
//! `-Q` quiet, `-R` raw records, `-v[N]` per-packet lines (of the first N records), `-U` Unix
//! timestamps, `-h` help.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, Command};
use owamp_core::owp::{OwpReader, SessionHeader};
use owamp_core::stats::report::{self, Peer, ReportContext, Scale};
use owamp_core::stats::{SessionInfo, Stats, StatsConfig};

use crate::sys::Environment;

/// Schedule offsets allowed per session besides 8 per record the file can hold: enough for any
/// real session, small enough that a corrupt packet count cannot make owstats run for hours.
const SCHEDULE_BASE_LIMIT: u64 = 1 << 26;

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
    /// The session files.
    pub files: Vec<PathBuf>,
}

fn command() -> Command {
    Command::new("owstats")
        .about("Print statistics of OWAMP session files (.owp) as perfSONAR owstats does")
        .override_usage("owstats [arguments] sessionfile [sessionfile]*")
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

fn parse_percentiles(s: &str) -> Result<Vec<f32>, String> {
    s.split(',')
        .map(|t| match t.trim().parse::<f64>() {
            Ok(v) if (0.0..=100.0).contains(&v) => Ok(v as f32),
            _ => Err(format!("Invalid numeric value ({t}) for percentile")),
        })
        .collect()
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
        Some(s) => match s.parse::<f64>() {
            Ok(v) if v > 0.0 => v as f32,
            _ => {
                return Err(invalid(
                    "Invalid '-b' value. Positive float expected".into(),
                ))
            }
        },
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

fn peer(env: &dyn Environment, addr: std::net::IpAddr, port: u16) -> Peer {
    Peer {
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
    let reader = OwpReader::new(BufReader::new(file)).map_err(|e| e.to_string())?;
    stats_from(reader, opts, out, env, None)
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
            Peer {
                host: f.to_owned(),
                ..Peer::numeric(r.sender_address, r.sender_port)
            },
            Peer {
                host: t.to_owned(),
                ..Peer::numeric(r.receiver_address, r.receiver_port)
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
    let config = StatsConfig {
        bucket_width: f64::from(opts.bucket_width),
        schedule_limit: Some(SCHEDULE_BASE_LIMIT.saturating_add(reader.file_len() / 25 * 8)),
    };
    let mut stats =
        Stats::new(SessionInfo::from_header(&header), config).map_err(|e| e.to_string())?;

    // Sub-summaries of N packets each (owstats -N), the last one possibly shorter.
    let npackets = r.num_packets;
    let n = opts.sub_packets;
    let ranges: Vec<(u32, Option<u32>)> = if n == 0 || n >= npackets {
        vec![(0, None)]
    } else {
        let count = npackets / n + u32::from(npackets % n != 0);
        (0..count)
            .map(|i| {
                let end = n.saturating_mul(i + 1);
                (n * i, (end <= npackets).then_some(end))
            })
            .collect()
    };

    let mut begin_index = 0u64;
    for (first, last) in ranges {
        let mut text = String::new();
        if opts.verbose {
            text.push_str(&report::stats_header(&r.sid, &ctx));
        }
        let mut count = reader.stats_record_count(begin_index);
        if opts.record_limit > 0 {
            count = count.min(opts.record_limit);
        }
        let mut sum = stats.summarize(first, last).map_err(|e| e.to_string())?;
        for rec in reader
            .records_from(begin_index, count)
            .map_err(|e| e.to_string())?
        {
            let rec = rec.map_err(|e| e.to_string())?;
            let ev = sum.push(&rec).map_err(|e| e.to_string())?;
            if let (true, Some(ev)) = (opts.verbose, ev) {
                text.push_str(&report::packet_line(&ev, &ctx));
            }
            // Per-packet lines are flushed as they come, like owstats's stdio.
            if text.len() > 1 << 16 && !opts.print_files {
                out.write_all(text.as_bytes()).map_err(io)?;
                text.clear();
            }
        }
        let next = sum.next_index();
        let summary = sum.finish().map_err(|e| e.to_string())?;
        begin_index = next.map_or(0, |i| begin_index + i);
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

/// Writes `bytes` to a temporary name in the target's directory, then renames it into place
/// (owstats writes an ".i" file and links it to the final name).
fn write_atomically(target: &Path, bytes: &[u8]) -> std::io::Result<()> {
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
