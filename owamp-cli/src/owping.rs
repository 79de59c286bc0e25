//! owping: requests one-way latency tests from an OWAMP server and prints their statistics,
//! as perfSONAR's owping does.
//!
//! By default two concurrent sessions run, one to the server and one from it; `-t`/`-T` and
//! `-f`/`-F` select one direction (and `-T`/`-F` save its records as a `.owp` file). The
//! records of the session the server received are fetched once the test is over. Each
//! session's statistics are printed as owstats prints them (the output options are owstats's),
//! naming the local host by reverse lookup and the peer as written on the command line.
//! `--json` prints the main numbers as JSON instead (an extension).
//!
//! Exit status: 0 on success (also after a first interrupt, which stops the test early and
//! still reports what was received), 1 on failure (including "Server denied access"), 2 when
//! interrupted before the test started.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufReader, Cursor, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use clap::Parser;
use owamp_core::control::{PortRange, Role};
use owamp_core::io::SessionInfo;
use owamp_core::owp::OwpReader;
use owamp_core::stats::report::EndpointName;
use owamp_core::time::Interval;
use owamp_core::wire::AcceptCode;
use owamp_core::wire::{Slot, SlotKind, TypeP};
use owamp_os::store::sid_hex;
use owamp_std::control::{ClientConnection, SessionSpec, StopHandle, TestEnd};

use crate::args::{ConnectionArgs, Hosts, OutputArgs, PeerArgs};
use crate::client::{self, Family};
use crate::owstats;
use crate::sys::Environment;

/// owping's default test port range for its own test sockets (perfSONAR owping 5.x).
pub const DEFAULT_TEST_PORTS: PortRange = PortRange {
    low: 8760,
    high: 9960,
};

/// The largest padding owping asks for.
pub const MAX_PADDING: u32 = 65_000;

/// Command-line arguments (perfSONAR owping's flags, plus `--json`).
#[derive(Debug, Parser)]
#[command(
    name = "owping",
    about = "Request one-way latency tests from an OWAMP server (perfSONAR owping compatible)",
    override_usage = "owping [arguments] testaddr [servaddr]",
    version = crate::man::VERSION,
    disable_version_flag = true,
    arg = crate::man::version_flag(),
    after_help = crate::man::VERSION_LINE,
    // getopt: a later occurrence of a flag wins.
    args_override_self = true,
    mut_arg("srcaddr", |a| a.help("local address for the control connection and tests")),
    mut_arg("quiet", |a| a.help("run the test and exit without reporting statistics"))
)]
pub struct Args {
    #[command(flatten)]
    pub conn: ConnectionArgs,

    /// number of test packets
    #[arg(
        short = 'c',
        value_name = "count",
        value_parser = crate::args::packet_count,
        allow_hyphen_values = true,
        default_value_t = 100,
        help_heading = "Test Args"
    )]
    pub count: u32,
    /// RFC 2474 style DSCP value for the TOS byte (number or name such as EF, AF11, CS1)
    #[arg(
        short = 'D',
        allow_hyphen_values = true,
        value_name = "DSCP",
        help_heading = "Test Args"
    )]
    pub dscp: Option<String>,
    /// RFC 2836 PHB identification code (not supported by this implementation)
    #[arg(short = 'H', value_name = "PHB", help_heading = "Test Args")]
    pub phb: Option<String>,
    /// time a sender waits after its session before Stop-Sessions (seconds)
    #[arg(
        short = 'E',
        allow_hyphen_values = true,
        value_name = "enddelay",
        help_heading = "Test Args"
    )]
    pub enddelay: Option<String>,
    /// perform one-way test from testhost
    #[arg(short = 'f', help_heading = "Test Args")]
    pub from: bool,
    /// perform one-way test from testhost and save results to file
    #[arg(short = 'F', value_name = "file", help_heading = "Test Args")]
    pub from_file: Option<PathBuf>,
    /// perform one-way test to testhost
    #[arg(short = 't', help_heading = "Test Args")]
    pub to: bool,
    /// perform one-way test to testhost and save results to file
    #[arg(short = 'T', value_name = "file", help_heading = "Test Args")]
    pub to_file: Option<PathBuf>,
    /// mean time between packets (seconds); a comma separated list of slots, each ending in
    /// 'e' (exponential, the default) or 'f' (fixed)
    #[arg(
        short = 'i',
        allow_hyphen_values = true,
        value_name = "wait",
        help_heading = "Test Args"
    )]
    pub schedule: Option<String>,
    /// maximum time to wait for a packet before declaring it lost (seconds)
    #[arg(
        short = 'L',
        allow_hyphen_values = true,
        value_name = "timeout",
        help_heading = "Test Args"
    )]
    pub timeout: Option<String>,
    /// port range to use during the test (0 for any)
    #[arg(short = 'P', value_name = "portrange", help_heading = "Test Args")]
    pub ports: Option<String>,
    /// size of the padding added to each packet (bytes)
    #[arg(short = 's', value_name = "padding", help_heading = "Test Args")]
    pub padding: Option<u32>,
    /// time to wait before executing the test (seconds)
    #[arg(
        short = 'z',
        allow_hyphen_values = true,
        value_name = "delayStart",
        help_heading = "Test Args"
    )]
    pub delay_start: Option<String>,

    #[command(flatten)]
    pub output: OutputArgs,
    /// print the summary numbers as JSON (an extension of this implementation)
    #[arg(long = "json", help_heading = "Output Args")]
    pub json: bool,

    #[command(flatten)]
    pub peer: PeerArgs,
}

/// Seconds as 32.32 fixed point, truncated as owping converts doubles (`-i 0.05` is
/// 0x0ccccccc in the reference's requests).
pub fn seconds_to_interval(v: f64) -> Option<Interval> {
    let x = v * 4_294_967_296.0;
    (0.0..18_446_744_073_709_551_616.0)
        .contains(&x)
        .then_some(Interval::from_raw(x as u64))
}

/// owping's default mean wait: 0.1 s, held in a C float, so the slot is 0x199999a0.
pub fn default_slot() -> Slot {
    Slot {
        kind: SlotKind::Exponential,
        mean: seconds_to_interval(f64::from(0.1f32)).unwrap_or(Interval::ZERO),
    }
}

/// Parses a send schedule: comma separated slots, each a number of seconds followed by an
/// optional 'e' (exponential mean, the default) or 'f' (fixed offset).
pub fn parse_schedule(s: &str) -> Result<Vec<Slot>, String> {
    s.split(',')
        .map(|t| {
            let (num, kind) = match t.char_indices().last() {
                Some((i, c)) if c.eq_ignore_ascii_case(&'e') && i > 0 => {
                    (&t[..i], SlotKind::Exponential)
                }
                Some((i, c)) if c.eq_ignore_ascii_case(&'f') && i > 0 => (&t[..i], SlotKind::Fixed),
                _ => (t, SlotKind::Exponential),
            };
            let v: f64 = num
                .parse()
                .map_err(|_| format!("Invalid numeric value ({t}) for schedule"))?;
            if !v.is_finite() || v < 0.0 {
                return Err(format!("Invalid numeric value ({t}) for schedule"));
            }
            let mean = seconds_to_interval(v)
                .ok_or_else(|| format!("Invalid numeric value ({t}) for schedule"))?;
            Ok(Slot { kind, mean })
        })
        .collect()
}

/// Parses a DSCP (-D): a 6-bit number (decimal, 0x hex or 0 octal) or one of the RFC 4594
/// names (NONE, DEFAULT, DF, CS0-CS7, AF11-AF43, EF).
pub fn parse_dscp(s: &str) -> Result<u8, String> {
    let t = s.trim();
    let bad = || format!("Invalid DSCP value (-D): \"{s}\"");
    let num = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u32::from_str_radix(h, 16).ok()
    } else if t.len() > 1 && t.starts_with('0') {
        u32::from_str_radix(&t[1..], 8).ok()
    } else {
        t.parse::<u32>().ok()
    };
    if let Some(n) = num {
        return u8::try_from(n).ok().filter(|&n| n <= 0x3F).ok_or_else(bad);
    }
    let u = t.to_ascii_uppercase();
    match u.as_str() {
        "NONE" | "DEFAULT" | "DF" => return Ok(0),
        "EF" => return Ok(0b101110),
        _ => {}
    }
    let b = u.as_bytes();
    match b {
        [b'C', b'S', d] if (b'0'..=b'7').contains(d) => Ok((d - b'0') << 3),
        [b'A', b'F', c, p] if (b'1'..=b'4').contains(c) && (b'1'..=b'3').contains(p) => {
            Ok(((c - b'0') << 3) | ((p - b'0') << 1))
        }
        _ => Err(bad()),
    }
}

pub(crate) fn parse_seconds(flag: char, s: &str, allow_zero: bool) -> Result<f64, String> {
    match s.parse::<f64>() {
        // The value becomes a Duration: one too large for it is refused here, not by a panic.
        Ok(v)
            if v.is_finite()
                && (v > 0.0 || (allow_zero && v == 0.0))
                && Duration::try_from_secs_f64(v).is_ok() =>
        {
            Ok(v)
        }
        _ => Err(format!("Invalid '-{flag}' value. Positive float expected")),
    }
}

/// Parses -P: `0` (any port) or `low-high`.
pub fn parse_ports(s: &str) -> Result<Option<PortRange>, String> {
    match crate::config::server::parse_test_ports(s) {
        Ok(crate::config::server::TestPorts::Ephemeral) => Ok(None),
        Ok(crate::config::server::TestPorts::Range(low, high)) => Ok(Some(PortRange { low, high })),
        Err(e) => Err(format!("Invalid test port range specified: {e}")),
    }
}

/// Everything owping needs from the command line, checked.
pub(crate) struct Plan {
    pub(crate) args: Args,
    pub(crate) out: owstats::Options,
    pub(crate) test: client::HostSpec,
    pub(crate) serv: client::HostSpec,
    pub(crate) serv_name: String,
    pub(crate) family: Family,
    pub(crate) slots: Vec<Slot>,
    pub(crate) timeout: Option<f64>,
    pub(crate) delay_start: f64,
    pub(crate) end_delay: Option<f64>,
    pub(crate) padding: u32,
    pub(crate) dscp: u8,
    pub(crate) ports: Option<PortRange>,
    pub(crate) to: bool,
    pub(crate) from: bool,
}

impl Plan {
    /// The mean time between packets, in seconds: the mean of the slots' means (RFC 4656
    /// 3.5: the schedule cycles through its slots). Positive: `plan` refuses all-zero slots.
    pub(crate) fn mean_interval(&self) -> f64 {
        let total: f64 = self.slots.iter().map(|s| s.mean.as_secs_f64()).sum();
        total / self.slots.len().max(1) as f64
    }
}

pub(crate) fn plan(args: Args, err: &mut dyn Write) -> Result<Plan, String> {
    let mut warnings = Vec::new();
    let out = args
        .output
        .owstats_options("owping", &mut warnings)
        .map_err(|e| {
            let r = e.render().to_string();
            r.trim_start_matches("error: ").trim_end().to_owned()
        })?;
    for w in warnings {
        let _ = writeln!(err, "owping: {w}");
    }
    let family = args.conn.family()?;
    if args.count == 0 {
        return Err("Invalid value. Positive integer expected".into());
    }
    let slots = match &args.schedule {
        Some(s) => parse_schedule(s).map_err(|e| format!("Invalid Schedule. {e}"))?,
        None => vec![default_slot()],
    };
    if slots.iter().all(|s| s.mean == Interval::ZERO) {
        return Err("Invalid Schedule. The slots may not all be zero".into());
    }
    let timeout = match &args.timeout {
        Some(s) => Some(parse_seconds('L', s, true)?).filter(|&v| v > 0.0),
        None => None,
    };
    let delay_start = match &args.delay_start {
        Some(s) => parse_seconds('z', s, true)?,
        None => 0.0,
    };
    let end_delay = match &args.enddelay {
        Some(s) => Some(parse_seconds('E', s, true)?),
        None => None,
    };
    if args.phb.is_some() {
        return Err("-H (PHB) is not supported by this implementation; use -D".into());
    }
    let dscp = match &args.dscp {
        Some(s) => parse_dscp(s)?,
        None => 0,
    };
    let ports = match &args.ports {
        Some(p) => parse_ports(p)?,
        None => Some(DEFAULT_TEST_PORTS),
    };
    let padding = args.padding.unwrap_or(0).min(MAX_PADDING);
    let Hosts {
        test,
        serv,
        serv_name,
    } = args.peer.hosts()?;
    let mut to = args.to || args.to_file.is_some();
    let mut from = args.from || args.from_file.is_some();
    if !to && !from {
        to = true;
        from = true;
    }
    Ok(Plan {
        args,
        out,
        test,
        serv,
        serv_name,
        family,
        slots,
        timeout,
        delay_start,
        end_delay,
        padding,
        dscp,
        ports,
        to,
        from,
    })
}

/// The JSON summary of one session (`--json`) from the bytes of its `.owp` file.
pub fn json_summary(
    direction: &str,
    bytes: &[u8],
    from: &EndpointName,
    to: &EndpointName,
    bucket_width: f64,
) -> Result<serde_json::Value, String> {
    let reader = OwpReader::new(Cursor::new(bytes)).map_err(|e| e.to_string())?;
    owstats::json_summary(Some(direction), reader, from, to, bucket_width)
}

/// Runs owping with `argv` (program name first). `stop` is set by the caller on the first
/// interrupt: before the test it makes owping exit with 2, during the test it stops the test
/// early (the results so far are still reported).
pub fn run(
    argv: impl IntoIterator<Item = OsString>,
    out: &mut dyn Write,
    err: &mut dyn Write,
    env: &dyn Environment,
    stop: &StopHandle,
) -> i32 {
    let args = match client::parse_args(owstats::split_attached_verbose(argv), err) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let p = match plan(args, err) {
        Ok(p) => p,
        Err(m) => return client::usage_error::<Args>("owping", err, &m),
    };
    let r = execute(&p, out, err, env, stop);
    client::exit_status("owping", r, err)
}

/// The `-F`/`-T` files, created (truncated) before the test as owping does, so that an
/// unwritable path fails early; those not written by the end are removed.
struct OutputFiles(Vec<(PathBuf, bool)>);

impl OutputFiles {
    fn create(paths: &[&Option<PathBuf>]) -> Result<Self, String> {
        let mut v = OutputFiles(Vec::new());
        for path in paths.iter().copied().flatten() {
            std::fs::File::create(path).map_err(|e| format!("fopen({}): {e}", path.display()))?;
            v.0.push((path.clone(), false));
        }
        Ok(v)
    }

    fn written(&mut self, path: &Path) {
        for (p, done) in &mut self.0 {
            if p == path {
                *done = true;
            }
        }
    }
}

impl Drop for OutputFiles {
    fn drop(&mut self) {
        for (p, done) in &self.0 {
            if !done {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

fn execute(
    p: &Plan,
    out: &mut dyn Write,
    err: &mut dyn Write,
    env: &dyn Environment,
    stop: &StopHandle,
) -> Result<i32, String> {
    let a = &p.args;
    let mut opts = a.conn.client_options("owping", err)?;
    let mean = Duration::from_secs_f64(p.mean_interval().clamp(0.0, 1e9));
    opts.endpoint.max_spin = owamp_os::timing::max_spin_for(mean);
    opts.endpoint.min_spin = owamp_os::timing::min_spin_for(mean);
    if client::clock_unsynchronized() {
        let _ = writeln!(err, "owping: {}", client::NTP_UNSYNC);
    }
    let mut files = OutputFiles::create(&[&a.to_file, &a.from_file])?;
    // Declared before the connection, so removed after it is closed.
    let mut scratch = Scratch::default();
    let dirs = RecordDirs {
        to: p
            .to
            .then(|| scratch.dir_for(a.to_file.as_deref()))
            .transpose()?,
        from: p
            .from
            .then(|| scratch.dir_for(a.from_file.as_deref()))
            .transpose()?,
    };
    // The session from the server goes to disk as its packets arrive.
    opts.receive_dir = dirs.from.clone();
    let test = a.peer.servaddr.as_ref().map(|_| &p.test);
    let serv_addrs = client::resolve_server(&p.serv, test, p.family)?;
    if stop.is_stopped() {
        return Ok(2);
    }

    if let Some(d) = p.end_delay {
        opts.control.end_delay = Duration::from_secs_f64(d);
    }
    opts.test_ports = p.ports;
    let warnings = client::Warnings::default();
    warnings.install(&mut opts);
    let Some(connected) = client::open_control(
        "owping",
        &serv_addrs,
        a.conn.srcaddr.as_deref(),
        &p.serv_name,
        &p.serv.node,
        &opts,
        err,
    ) else {
        return Ok(1);
    };
    let mut conn = connected.conn;
    let rtt = connected.rtt_bound;
    if stop.is_stopped() {
        conn.close();
        return Ok(2);
    }

    // Loss timeout: as given, or the round-trip bound plus 2 s (owping's guess at how long a
    // user is willing to wait).
    let timeout = p
        .timeout
        .map(Duration::from_secs_f64)
        .unwrap_or(rtt + Duration::from_secs(2));
    let spec = SessionSpec {
        packets: p.args.count,
        slots: p.slots.clone(),
        padding: p.padding,
        timeout,
        dscp: p.dscp,
    };
    if TypeP::from_dscp(spec.dscp).is_none() {
        return Err("Invalid DSCP value".into());
    }
    // The start leaves one round trip per request and for Start-Sessions, plus a second.
    let round_trips = 1 + u32::from(p.to) + u32::from(p.from);
    let min_delay = rtt * round_trips + Duration::from_secs(1);
    let delay = min_delay.max(Duration::from_secs_f64(p.delay_start));
    let start = conn.now().saturating_add(delay);

    let mut to_info = None;
    let mut from_info = None;
    for (want, role) in [(p.to, Role::Sender), (p.from, Role::Receiver)] {
        if !want {
            continue;
        }
        match conn.request_session(role, &spec, start) {
            Ok(info) => {
                if role == Role::Sender {
                    to_info = Some(info);
                } else {
                    from_info = Some(info);
                }
            }
            Err(e) => {
                let _ = writeln!(err, "owping: {}", client::request_failure(&e));
                let _ = writeln!(err, "owping: Session Failed!");
                conn.close();
                return Ok(1);
            }
        }
        if stop.is_stopped() {
            conn.close();
            return Ok(2);
        }
    }
    for w in warnings.take() {
        let _ = writeln!(err, "owping: warning: {w}");
    }
    if let Err(e) = conn.start() {
        let _ = writeln!(err, "owping: {e}");
        let _ = writeln!(err, "owping: Session Failed!");
        return Ok(1);
    }
    let quiet = p.out.raw || (a.output.quiet && !a.json);
    if !quiet && !a.json {
        // When the results should be ready: the schedule, the loss timeout and one round trip
        // for Stop-Sessions, from the start time.
        let rate = 1.0 / p.mean_interval();
        let duration = f64::from(p.args.count) / rate + timeout.as_secs_f64() + rtt.as_secs_f64();
        let remaining = start.diff_secs_f64(conn.now()) + duration;
        let _ = writeln!(
            out,
            "Approximately {remaining:.1} seconds until results available"
        );
        let _ = out.flush();
    }

    // For people at a terminal: packets so far and the time left, cleared before the results.
    let progress = {
        let rate = 1.0 / p.mean_interval();
        let secs = start.diff_secs_f64(conn.now()) + f64::from(p.args.count) / rate;
        let expected = Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::ZERO);
        crate::progress::ProgressLine::start(conn.progress(), expected + timeout)
    };
    let end = conn.wait(Some(stop));
    if let Some(line) = progress {
        line.finish();
    }
    let end = match end {
        Ok(e) => e,
        Err(e) => {
            let _ = writeln!(err, "owping: {e}");
            let _ = writeln!(err, "owping: Test session(s) Failed...");
            return Ok(1);
        }
    };
    if !end.complete && !end.stopped_early {
        let _ = writeln!(
            err,
            "owping: Test session(s) Failed...{}",
            end.closed
                .as_ref()
                .map(|r| format!(" ({r:?})"))
                .unwrap_or_default()
        );
        conn.close();
        return Ok(1);
    }

    let mut status = 0;
    if let Some(accept) = end.server_failure {
        // RFC 4656 3.8: the server ended the sessions abnormally, while they ran.
        let _ = writeln!(err, "owping: {}", server_failure_message(accept));
        status = 1;
    }

    // Names as owping prints them: the local host by reverse lookup, the peer as written.
    let local_ip: IpAddr = connected.local.ip();
    let local_name = env
        .host_name(local_ip)
        .unwrap_or_else(|| local_ip.to_string());
    let remote_name = p.test.node.clone();

    let sessions = collect_sessions(
        p,
        &mut conn,
        &end,
        [&to_info, &from_info],
        &dirs,
        err,
        &mut status,
    );
    conn.close();
    let results = Results {
        sessions,
        names: Names {
            local: local_name,
            remote: remote_name,
        },
        stopped_early: end.stopped_early,
    };
    status |= report(p, &results, &mut files, out, err, env);
    Ok(status)
}

/// What owping says when the server's Stop-Sessions ended the test abnormally: the Accept
/// code, and what our owampd means by it (it stops a test that way when it cannot store the
/// records it receives: a full disk is a temporary resource limitation).
fn server_failure_message(accept: AcceptCode) -> String {
    let why = match accept {
        AcceptCode::TemporaryResourceLimit | AcceptCode::PermanentResourceLimit => {
            ": it ran out of a resource, such as room on its disk for the records"
        }
        AcceptCode::InternalError => ": an internal error, such as a failure to store the records",
        _ => "",
    };
    format!(
        "the server stopped the test early (Stop-Sessions Accept {}, {accept}){why}; the results are incomplete",
        accept.to_u8()
    )
}

/// What a test left to report.
struct Results {
    /// Each direction's records, in their files.
    sessions: Vec<SessionFile>,
    names: Names,
    stopped_early: bool,
}

/// The records of the test, each in its file: the "to" session fetched from the server (when
/// it is wanted) as its answer arrives, the "from" session as this client received it.
fn collect_sessions(
    p: &Plan,
    conn: &mut ClientConnection,
    end: &TestEnd,
    [to_info, from_info]: [&Option<SessionInfo>; 2],
    dirs: &RecordDirs,
    err: &mut dyn Write,
    status: &mut i32,
) -> Vec<SessionFile> {
    let a = &p.args;
    let mut sessions = Vec::new();
    if let (Some(info), Some(dir)) = (to_info, &dirs.to) {
        let wanted = a.to_file.is_some() || !a.output.quiet || a.output.raw || a.json;
        let sid = sid_hex(&info.sid).to_ascii_lowercase();
        if wanted && end.server_failure.is_some() {
            // The server said it could not keep them: there is nothing whole to fetch.
            let _ = writeln!(
                err,
                "owping: Unable to fetch data for sid({sid}): the server could not keep them"
            );
            *status = 1;
        } else if wanted && end.complete {
            // Written to disk as the answer arrives (RFC 4656 3.9).
            let path = dir.join("to.owp");
            match conn.fetch_to(info.sid, 0, u32::MAX, &path) {
                Ok(_) => sessions.push(SessionFile {
                    dir: "to",
                    path,
                    keep_as: a.to_file.clone(),
                }),
                Err(e) => {
                    let _ = writeln!(err, "owping: {e}");
                    let _ = writeln!(err, "owping: Unable to fetch data for sid({sid})");
                    *status = 1;
                }
            }
        } else if wanted {
            let _ = writeln!(
                err,
                "owping: Unable to fetch data for sid({sid}): the test did not end normally"
            );
            *status = 1;
        }
    }
    if let Some(info) = from_info {
        match end.saved.iter().find(|s| s.sid == info.sid) {
            Some(s) if s.error.is_none() => sessions.push(SessionFile {
                dir: "from",
                path: s.path.clone(),
                keep_as: a.from_file.clone(),
            }),
            Some(s) => {
                let e = s.error.as_deref().unwrap_or_default();
                let _ = writeln!(err, "owping: {}: {e}", s.path.display());
                let _ = writeln!(err, "owping: no records for the \"from\" session");
                *status = 1;
            }
            None => {
                let _ = writeln!(err, "owping: no records for the \"from\" session");
                *status = 1;
            }
        }
    }
    sessions
}

/// Keeps each session's file where the user asked for it, then prints its statistics (or
/// the JSON document of them all), read back from the file. Returns 1 if something failed.
fn report(
    p: &Plan,
    r: &Results,
    files: &mut OutputFiles,
    out: &mut dyn Write,
    err: &mut dyn Write,
    env: &dyn Environment,
) -> i32 {
    let a = &p.args;
    let names = &r.names;
    let mut status = 0;
    let mut json = Vec::new();
    let mut kept = Vec::new();
    for s in &r.sessions {
        let path = s.keep(files, err, &mut status);
        kept.push((s.dir, path));
        if a.json {
            match s.json(path, names, f64::from(p.out.bucket_width)) {
                Ok(v) => json.push(v),
                Err(e) => {
                    let _ = writeln!(err, "owping: {} session: {e}", s.dir);
                    status = 1;
                }
            }
            continue;
        }
        if a.output.quiet && !a.output.raw {
            continue;
        }
        if let Err(e) = client::print_stats_file(path, &p.out, out, env, Some(names.of(s.dir))) {
            let _ = writeln!(err, "owping: do_stats(\"{}\" session): {e}", s.dir);
        }
    }
    // A session cut short is never reported as a clean shorter run.
    for (dir, path) in kept {
        if let Err(m) = whole(path, r.stopped_early) {
            let _ = writeln!(err, "owping: the \"{dir}\" session {m}");
            status = 1;
        }
    }
    if a.json {
        let doc = serde_json::json!({
            "stopped_early": r.stopped_early,
            "sessions": json,
        });
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        );
    }
    let _ = out.flush();
    status
}

/// Whether the session in `path` ran as requested: finished normally (RFC 4656 3.8), every
/// packet sent unless the user stopped the test early, and none skipped by a sender that fell
/// more than a loss timeout behind its schedule.
fn whole(path: &Path, stopped_early: bool) -> Result<(), String> {
    let reader = open_owp(path)?;
    let h = reader.header();
    if !h.is_finished() {
        return Err("did not finish normally (no Stop-Sessions): its results are partial".into());
    }
    let count = h.request.num_packets;
    if h.next_seqno < count && !stopped_early {
        return Err(format!(
            "was cut short: its sender stopped after {} of {count} packets",
            h.next_seqno
        ));
    }
    let skipped: u64 = h
        .skip_ranges
        .iter()
        .map(|r| u64::from(r.last.saturating_sub(r.first)) + 1)
        .sum();
    if skipped > 0 {
        return Err(format!(
            "did not keep its schedule: its sender skipped {skipped} packets it could not send in time"
        ));
    }
    Ok(())
}

/// How owping names the ends of a session: the local host by reverse lookup, the peer as
/// written on the command line.
struct Names {
    local: String,
    remote: String,
}

impl Names {
    /// Sender and receiver of a session in direction `dir` ("to": from here to the peer).
    fn of(&self, dir: &str) -> (&str, &str) {
        if dir == "to" {
            (&self.local, &self.remote)
        } else {
            (&self.remote, &self.local)
        }
    }
}

/// The records of one direction, in their file in a [`Scratch`] directory, and the `-T`/`-F`
/// file the user wants it kept as.
struct SessionFile {
    dir: &'static str,
    path: PathBuf,
    keep_as: Option<PathBuf>,
}

impl SessionFile {
    /// Moves the file to where the user wants it (a rename within its directory: the
    /// target holds either its old content or the whole file) and returns where it is now.
    /// If it cannot be moved, says so and leaves it where it was, for the statistics.
    fn keep<'a>(
        &'a self,
        files: &mut OutputFiles,
        err: &mut dyn Write,
        status: &mut i32,
    ) -> &'a Path {
        let Some(target) = &self.keep_as else {
            return &self.path;
        };
        match std::fs::rename(&self.path, target) {
            Ok(()) => {
                files.written(target);
                owamp_os::owp_file::sync_parent(target);
                target
            }
            Err(e) => {
                let _ = writeln!(err, "owping: {}: {e}", target.display());
                *status = 1;
                &self.path
            }
        }
    }

    /// The `--json` summary of the session in `path`.
    fn json(
        &self,
        path: &Path,
        names: &Names,
        bucket_width: f64,
    ) -> Result<serde_json::Value, String> {
        let reader = open_owp(path)?;
        let r = &reader.header().request;
        let (from_name, to_name) = names.of(self.dir);
        let from = EndpointName {
            host: from_name.to_owned(),
            ..EndpointName::numeric(r.sender_address, r.sender_port)
        };
        let to = EndpointName {
            host: to_name.to_owned(),
            ..EndpointName::numeric(r.receiver_address, r.receiver_port)
        };
        owstats::json_summary(Some(self.dir), reader, &from, &to, bucket_width)
    }
}

/// A `.owp` file opened for reading, its records streamed.
fn open_owp(path: &Path) -> Result<OwpReader<BufReader<File>>, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    OwpReader::new(BufReader::new(file)).map_err(|e| e.to_string())
}

/// The directories of a run's records, by direction.
struct RecordDirs {
    to: Option<PathBuf>,
    from: Option<PathBuf>,
}

/// Directories that hold the records of a run while it lasts: they go to disk as they come,
/// so that owping's memory does not grow with the session's length. Each is made beside the
/// `-T`/`-F` file it is for (the finished file is then renamed into place) or in the
/// temporary directory, private to the user, and removed with everything in it when owping
/// ends, whichever way: on return (drop), or on a second interrupt ([`remove_scratch`]).
#[derive(Default)]
struct Scratch(Vec<(PathBuf, PathBuf)>);

/// Every scratch directory of the process, for [`remove_scratch`].
static SCRATCH: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn scratch_registry() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    // Every update is a single push or removal: a panic elsewhere leaves it consistent.
    SCRATCH.lock().unwrap_or_else(|e| e.into_inner())
}

impl Scratch {
    /// The directory for the records of a session the user wants kept as `keep_as`, if any.
    fn dir_for(&mut self, keep_as: Option<&Path>) -> Result<PathBuf, String> {
        let parent = match keep_as.map(Path::parent) {
            Some(Some(p)) if !p.as_os_str().is_empty() => p.to_owned(),
            Some(_) => PathBuf::from("."),
            None => std::env::temp_dir(),
        };
        if let Some((_, d)) = self.0.iter().find(|(p, _)| *p == parent) {
            return Ok(d.clone());
        }
        let dir = private_dir(&parent)?;
        scratch_registry().push(dir.clone());
        self.0.push((parent, dir.clone()));
        Ok(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let mut all = scratch_registry();
        for (_, dir) in self.0.drain(..) {
            let _ = std::fs::remove_dir_all(&dir);
            all.retain(|d| *d != dir);
        }
    }
}

/// A new directory `.owping.<pid>.<n>` in `parent`, readable by its owner only.
fn private_dir(parent: &Path) -> Result<PathBuf, String> {
    use std::os::unix::fs::DirBuilderExt;
    for n in 0..1000 {
        let dir = parent.join(format!(".owping.{}.{n}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        }
    }
    Err(format!(
        "{}: no free name for a scratch directory",
        parent.display()
    ))
}

/// Removes every scratch directory of the process: for an exit that skips the destructors
/// (owping's second interrupt).
pub fn remove_scratch() {
    for dir in scratch_registry().drain(..) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session file with these Stop-Sessions results.
    fn session_file(
        dir: &Path,
        finished: u32,
        next_seqno: u32,
        skips: Vec<owamp_core::wire::SkipRange>,
    ) -> PathBuf {
        use owamp_core::owp::SessionHeader;
        use owamp_core::time::OwampTime;
        use owamp_core::wire::{RequestSession, SessionId, Slot, TypeP};
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let request = RequestSession {
            conf_sender: false,
            conf_receiver: true,
            num_packets: 10,
            sender_port: 1,
            receiver_port: 2,
            sender_address: lo,
            receiver_address: lo,
            sid: SessionId([1; 16]),
            padding_length: 0,
            start_time: OwampTime::from_raw(0xeeb2_5d00_0000_0000),
            timeout: Interval::from_raw(1 << 32),
            type_p: TypeP::BEST_EFFORT,
            hmac: [0; 16],
            slots: vec![Slot {
                kind: SlotKind::Fixed,
                mean: Interval::from_raw(1 << 28),
            }],
            slots_hmac: [0; 16],
        };
        let h = SessionHeader::records_first(request, skips, 0, finished, next_seqno);
        let path = dir.join(format!("{finished}-{next_seqno}.owp"));
        std::fs::write(&path, owamp_core::owp::to_bytes(&h, &[]).unwrap()).unwrap();
        path
    }

    #[test]
    fn sessions_cut_short_are_not_whole() {
        use owamp_core::wire::SkipRange;
        let d = tempfile::tempdir().unwrap();
        let ok = session_file(d.path(), 1, 10, Vec::new());
        assert_eq!(whole(&ok, false), Ok(()));
        let incomplete = session_file(d.path(), 2, 0, Vec::new());
        assert!(whole(&incomplete, true)
            .unwrap_err()
            .contains("did not finish"));
        let short = session_file(d.path(), 1, 7, Vec::new());
        assert!(whole(&short, false).unwrap_err().contains("7 of 10"));
        // Stopped by the user: a shorter run is what was asked for.
        assert_eq!(whole(&short, true), Ok(()));
        let skipped = session_file(d.path(), 1, 10, vec![SkipRange { first: 2, last: 4 }]);
        assert!(whole(&skipped, true)
            .unwrap_err()
            .contains("skipped 3 packets"));
    }

    #[test]
    fn schedules() {
        let s = parse_schedule("0.05").unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].kind, SlotKind::Exponential);
        // owping -i 0.05 puts 0x0ccccccc in the request (reference README).
        assert_eq!(s[0].mean, Interval::from_raw(0x0ccc_cccc));
        let s = parse_schedule("1.0e,0f").unwrap();
        assert_eq!(s[0].kind, SlotKind::Exponential);
        assert_eq!(s[0].mean, Interval::from_secs(1));
        assert_eq!(s[1].kind, SlotKind::Fixed);
        assert_eq!(s[1].mean, Interval::ZERO);
        assert_eq!(parse_schedule("0.01f").unwrap()[0].kind, SlotKind::Fixed);
        assert!(parse_schedule("x").is_err());
        assert!(parse_schedule("1g").is_err());
        assert!(parse_schedule("1,").is_err());
        assert!(parse_schedule("-1").is_err());
        assert!(parse_schedule("e").is_err());
        assert_eq!(default_slot().mean, Interval::from_raw(0x1999_99a0));
    }

    #[test]
    fn dscp_values() {
        assert_eq!(parse_dscp("0"), Ok(0));
        assert_eq!(parse_dscp("46"), Ok(46));
        assert_eq!(parse_dscp("0x2e"), Ok(46));
        assert_eq!(parse_dscp("056"), Ok(46));
        assert_eq!(parse_dscp("EF"), Ok(46));
        assert_eq!(parse_dscp("ef"), Ok(46));
        assert_eq!(parse_dscp("CS1"), Ok(8));
        assert_eq!(parse_dscp("AF11"), Ok(10));
        assert_eq!(parse_dscp("af43"), Ok(38));
        assert_eq!(parse_dscp("default"), Ok(0));
        assert!(parse_dscp("64").is_err());
        assert!(parse_dscp("AF51").is_err());
        assert!(parse_dscp("CS8").is_err());
        assert!(parse_dscp("fast").is_err());
    }

    #[test]
    fn port_ranges() {
        assert_eq!(parse_ports("0"), Ok(None));
        assert_eq!(
            parse_ports("9000-9010"),
            Ok(Some(PortRange {
                low: 9000,
                high: 9010
            }))
        );
        assert!(parse_ports("9010-9000").is_err());
    }

    fn args(v: &[&str]) -> Args {
        Args::try_parse_from(owstats::split_attached_verbose(
            v.iter().map(OsString::from),
        ))
        .unwrap()
    }

    #[test]
    fn directions_and_defaults() {
        let mut sink = Vec::new();
        let p = plan(args(&["owping", "host"]), &mut sink).unwrap();
        assert!(p.to && p.from);
        assert_eq!(p.args.count, 100);
        assert_eq!(p.ports, Some(DEFAULT_TEST_PORTS));
        assert_eq!(p.serv.port, 861);
        let p = plan(
            args(&["owping", "-T", "to.owp", "-P", "0", "h:9"]),
            &mut sink,
        )
        .unwrap();
        assert!(p.to && !p.from);
        assert_eq!(p.ports, None);
        assert_eq!(p.serv.port, 9);
        let p = plan(args(&["owping", "-f", "-v20", "h"]), &mut sink).unwrap();
        assert!(!p.to && p.from);
        assert!(p.out.verbose);
        assert_eq!(p.out.record_limit, 20);
    }

    #[test]
    fn a_repeated_flag_takes_its_last_value() {
        let a = Args::try_parse_from(["owping", "-c", "10", "-c", "20", "h"]).unwrap();
        assert_eq!(a.count, 20);
    }

    #[test]
    fn bad_arguments() {
        let mut sink = Vec::new();
        for v in [
            &["owping", "-4", "-6", "h"][..],
            &["owping", "-c", "0", "h"],
            &["owping", "-L", "-1", "h"],
            &["owping", "-i", "abc", "h"],
            &["owping", "-D", "99", "h"],
            &["owping", "-H", "1", "h"],
            &["owping", "-n", "x", "h"],
            &["owping", "h:0"],
            // Finite, but too large for a Duration.
            &["owping", "-L", "1e20", "h"],
            &["owping", "-E", "1e300", "h"],
            &["owping", "-z", "1e300", "h"],
        ] {
            assert!(plan(args(v), &mut sink).is_err(), "{v:?}");
        }
        let mut err = Vec::new();
        let code = run(
            ["owping"].iter().map(OsString::from),
            &mut Vec::new(),
            &mut err,
            &crate::sys::System,
            &StopHandle::new(),
        );
        assert_eq!(code, 1);
    }

    #[test]
    fn quiet_overrides_and_warnings() {
        let mut warn = Vec::new();
        let p = plan(args(&["owping", "-R", "-v", "h"]), &mut warn).unwrap();
        assert!(p.out.raw && !p.out.verbose);
        assert!(String::from_utf8_lossy(&warn).contains("Ignoring '-v', '-Q' set"));
    }
}
