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
use std::io::{Cursor, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use owamp_core::control::{PortRange, Role};
use owamp_core::io::StoredSession;
use owamp_core::owp::OwpReader;
use owamp_core::stats::report::EndpointName;
use owamp_core::time::Interval;
use owamp_core::wire::{Slot, SlotKind, TypeP};
use owamp_os::store::sid_hex;
use owamp_std::control::{fetched_to_stored, SessionSpec, StopHandle};

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
    disable_version_flag = true,
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

fn parse_seconds(flag: char, s: &str, allow_zero: bool) -> Result<f64, String> {
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
struct Plan {
    args: Args,
    out: owstats::Options,
    test: client::HostSpec,
    serv: client::HostSpec,
    serv_name: String,
    family: Family,
    slots: Vec<Slot>,
    timeout: Option<f64>,
    delay_start: f64,
    end_delay: Option<f64>,
    padding: u32,
    dscp: u8,
    ports: Option<PortRange>,
    to: bool,
    from: bool,
}

fn plan(args: Args, err: &mut dyn Write) -> Result<Plan, String> {
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
    if client::clock_unsynchronized() {
        let _ = writeln!(err, "owping: {}", client::NTP_UNSYNC);
    }
    let mut files = OutputFiles::create(&[&a.to_file, &a.from_file])?;
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
        let rate = {
            let total: f64 = p.slots.iter().map(|s| s.mean.as_secs_f64()).sum();
            p.slots.len() as f64 / total
        };
        let duration = f64::from(p.args.count) / rate + timeout.as_secs_f64() + rtt.as_secs_f64();
        let remaining = start.diff_secs_f64(conn.now()) + duration;
        let _ = writeln!(
            out,
            "Approximately {remaining:.1} seconds until results available"
        );
        let _ = out.flush();
    }

    let end = match conn.wait(Some(stop)) {
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

    // Names as owping prints them: the local host by reverse lookup, the peer as written.
    let local_ip: IpAddr = connected.local.ip();
    let local_name = env
        .host_name(local_ip)
        .unwrap_or_else(|| local_ip.to_string());
    let remote_name = p.test.node.clone();

    let mut sessions: Vec<(&str, StoredSession)> = Vec::new();
    if let Some(info) = &to_info {
        let wanted = a.to_file.is_some() || !a.output.quiet || a.output.raw || a.json;
        if wanted {
            if end.complete {
                match conn.fetch(info.sid, 0, u32::MAX) {
                    Ok(f) => sessions.push(("to", fetched_to_stored(f))),
                    Err(e) => {
                        let _ = writeln!(err, "owping: {e}");
                        let _ = writeln!(
                            err,
                            "owping: Unable to fetch data for sid({})",
                            sid_hex(&info.sid).to_ascii_lowercase()
                        );
                    }
                }
            } else {
                let _ = writeln!(
                    err,
                    "owping: Unable to fetch data for sid({}): the test did not end normally",
                    sid_hex(&info.sid).to_ascii_lowercase()
                );
            }
        }
    }
    if let Some(info) = &from_info {
        match end.received.iter().find(|s| s.request.sid == info.sid) {
            Some(s) => sessions.push(("from", s.clone())),
            None => {
                let _ = writeln!(err, "owping: no records for the \"from\" session");
            }
        }
    }
    conn.close();

    let mut json = Vec::new();
    let mut status = 0;
    for (dir, s) in &sessions {
        let file = if *dir == "to" {
            &a.to_file
        } else {
            &a.from_file
        };
        if let Some(path) = file {
            match client::save_owp(path, s) {
                Ok(()) => files.written(path),
                Err(e) => {
                    let _ = writeln!(err, "owping: {e}");
                    status = 1;
                }
            }
        }
        let (from_name, to_name) = if *dir == "to" {
            (local_name.as_str(), remote_name.as_str())
        } else {
            (remote_name.as_str(), local_name.as_str())
        };
        let bytes = match client::owp_bytes(s) {
            Ok(b) => b,
            Err(e) => {
                let _ = writeln!(err, "owping: {e}");
                status = 1;
                continue;
            }
        };
        if a.json {
            let r = &s.request;
            let from = EndpointName {
                host: from_name.to_owned(),
                ..EndpointName::numeric(r.sender_address, r.sender_port)
            };
            let to = EndpointName {
                host: to_name.to_owned(),
                ..EndpointName::numeric(r.receiver_address, r.receiver_port)
            };
            match json_summary(dir, &bytes, &from, &to, f64::from(p.out.bucket_width)) {
                Ok(v) => json.push(v),
                Err(e) => {
                    let _ = writeln!(err, "owping: {dir} session: {e}");
                    status = 1;
                }
            }
            continue;
        }
        if a.output.quiet && !a.output.raw {
            continue;
        }
        let names = Some((from_name, to_name));
        if let Err(e) = client::print_stats(&bytes, &p.out, out, env, names) {
            let _ = writeln!(err, "owping: do_stats(\"{dir}\" session): {e}");
        }
    }
    if a.json {
        let doc = serde_json::json!({
            "stopped_early": end.stopped_early,
            "sessions": json,
        });
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        );
    }
    let _ = out.flush();
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

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
