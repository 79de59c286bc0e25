//! twping: a two-way (TWAMP, RFC 5357) latency test against a TWAMP server, as perfSONAR's
//! twping 5.2.3 runs it and prints its results.
//!
//! One control connection (TWAMP-Control, RFC 5357 3) asks for one test session with
//! Request-TW-Session; this side is the session-sender (RFC 5357 4.1) and the server's
//! reflector answers every packet (RFC 5357 4.2). The test runs on owamp-std's blocking
//! client connection ([`ClientConnection`], as owping's): the core's connection with
//! `Protocol::Twamp` sends the packets on their schedule from a thread of its own and reads
//! the replies, which [`ClientConnection::wait_two_way`] hands over as they come; the end of
//! the session says how many packets left and which no reply answered (lost, with the time
//! each left, for `-F`). The test socket is the OS layer's `TestSocket`: the packets go out
//! with TTL 255 (as twping's), so that the reflector's Sender TTL counts the hops, and each
//! reply comes with its TTL and the kernel's receive time.
//!
//! `-F file` saves the session as twping 5.2.3 does, in a two-way session file
//! ([`owamp_core::owp::two_way`]) that owstats (ours and perfSONAR's) reads and prints as
//! twping prints its results ([`file_report`]). `-a` adds percentiles of the round-trip time to
//! the summary and `-b` sets the histogram's bucket width, parsed and printed with owstats's
//! and owping's code.
//!
//! Output: the statistics as twping prints them (default), each reflected packet's
//! timestamps (`-R`), the machine-readable summary (`-M`), or `--json` (an extension).
//!
//! Exit status: 0 on success, 1 on any failure.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::Parser;
use owamp_core::control::{CloseReason, Protocol, Role};
use owamp_core::io::SessionInfo;
use owamp_core::owp::{TwoWayEntry, TwoWayFile};
use owamp_core::session::schedule::{Schedule, ScheduleIter};
use owamp_core::session::twamp::{default_padding, TwoWayRecord};
use owamp_core::stats::fmt::{f, g, g6};
use owamp_core::stats::report::{percentile_lines, UNREPRESENTABLE_DATE};
use owamp_core::stats::twamp::{DelayStats, TwoWaySummary};
use owamp_core::stats::DEFAULT_BUCKET_WIDTH;
use owamp_core::stats::{error_seconds, num64_to_f64, to_unix_timespec, NTP_UNIX_OFFSET};
use owamp_core::time::{ErrorEstimate, Interval, OwampTime};
use owamp_core::wire::{RequestSession, SessionId, Slot, SlotKind, TypeP};
use owamp_std::control::{ClientConnection, ClientError, ClientOptions, SentPacket, SessionSpec};

use crate::args::ConnectionArgs;
use crate::client::{self, HostSpec};
use crate::owping::{parse_dscp, parse_ports, parse_schedule, parse_seconds, seconds_to_interval};
use crate::sys::Environment;

/// The TWAMP-Control port (RFC 5357 3.1, IANA "twamp-control").
pub const CONTROL_PORT: u16 = 862;

/// The largest padding twping asks for.
pub const MAX_PADDING: u32 = 65_000;

/// How long the control connection may wait for the server.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);

/// Delay before the first packet, so that Start-Sessions is answered first.
const START_DELAY: Duration = Duration::from_millis(500);

/// Command-line arguments (perfSONAR twping's main flags, plus `--json`).
#[derive(Debug, Parser)]
#[command(
    name = "twping",
    about = "Run a two-way latency test against a TWAMP server (perfSONAR twping compatible)",
    override_usage = "twping [arguments] testaddr [servaddr]",
    version = crate::man::VERSION,
    disable_version_flag = true,
    arg = crate::man::version_flag(),
    after_help = crate::man::VERSION_LINE,
    args_override_self = true,
    mut_arg("authmode", |a| a.help("requested modes: [A]uthenticated, [E]ncrypted, [M]ixed, [O]pen")),
    mut_arg("srcaddr", |a| a.help("local address for the control connection and tests")),
    mut_arg("pfsfile", |a| a.help("passphrase file to use with Authenticated/Encrypted/Mixed modes")),
    mut_arg("username", |a| a.help("username to use with Authenticated/Encrypted/Mixed modes"))
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
    /// mean time between packets (seconds); a comma separated list of slots, each ending in
    /// 'e' (exponential, the default) or 'f' (fixed)
    #[arg(
        short = 'i',
        allow_hyphen_values = true,
        value_name = "wait",
        help_heading = "Test Args"
    )]
    pub schedule: Option<String>,
    /// maximum time to wait for a reply before declaring the packet lost (seconds)
    #[arg(
        short = 'L',
        allow_hyphen_values = true,
        value_name = "timeout",
        help_heading = "Test Args"
    )]
    pub timeout: Option<String>,
    /// size of the padding added to each packet (bytes)
    #[arg(short = 's', value_name = "padding", help_heading = "Test Args")]
    pub padding: Option<u32>,
    /// RFC 2474 style DSCP value for the TOS byte (number or name such as EF, AF11, CS1)
    #[arg(
        short = 'D',
        allow_hyphen_values = true,
        value_name = "DSCP",
        help_heading = "Test Args"
    )]
    pub dscp: Option<String>,
    /// save the results in file for later output with owstats
    #[arg(short = 'F', value_name = "file", help_heading = "Test Args")]
    pub file: Option<String>,
    /// port range to use during the test (0 for any)
    #[arg(short = 'P', value_name = "portrange", help_heading = "Test Args")]
    pub ports: Option<String>,
    /// time to wait before executing the test (seconds)
    #[arg(
        short = 'z',
        allow_hyphen_values = true,
        value_name = "delayStart",
        help_heading = "Test Args"
    )]
    pub delay_start: Option<String>,
    /// do not specify IP addresses for tests packets (NAT traversal)
    #[arg(short = 'Z', help_heading = "Connection Args")]
    pub nat: bool,

    /// report additional percentile levels of the round-trip time (comma separated, 0.0-100.0)
    #[arg(
        short = 'a',
        allow_hyphen_values = true,
        value_name = "alpha",
        help_heading = "Output Args"
    )]
    pub alpha: Option<String>,
    /// bin size for histogram calculations (seconds)
    #[arg(
        short = 'b',
        allow_hyphen_values = true,
        value_name = "bucketwidth",
        help_heading = "Output Args"
    )]
    pub bucket_width: Option<String>,
    /// 'n','u','m', or 's'
    #[arg(short = 'n', value_name = "units", help_heading = "Output Args")]
    pub units: Option<String>,
    /// number of test packets (to summarize per sub-session)
    #[arg(short = 'N', value_name = "count", help_heading = "Output Args")]
    pub sub_count: Option<String>,
    /// run the test and exit without reporting statistics
    #[arg(short = 'Q', help_heading = "Output Args")]
    pub quiet: bool,
    /// print out individual delays (-vN: of the first N packets)
    #[arg(short = 'v', help_heading = "Output Args")]
    pub verbose: bool,
    #[arg(long = "verbose-limit", hide = true, value_name = "N")]
    pub verbose_limit: Option<u32>,
    /// add UNIX timestamps when printing individual delays
    #[arg(short = 'U', help_heading = "Output Args")]
    pub unix: bool,

    /// print the timestamps of every reflected packet
    #[arg(short = 'R', help_heading = "Output Args")]
    pub raw: bool,
    /// print machine-readable statistics
    #[arg(short = 'M', help_heading = "Output Args")]
    pub machine: bool,
    /// print the main numbers as JSON (an extension)
    #[arg(long = "json", help_heading = "Output Args")]
    pub json: bool,

    /// The host to test with.
    #[arg(
        value_name = "testaddr",
        help = "the host to test with: host, host:port (default port 862), [v6addr]:port"
    )]
    pub host: String,
    /// the server to contact, when not testaddr (it must have the same address)
    #[arg(value_name = "servaddr")]
    pub servaddr: Option<String>,
}

/// Everything the test produced.
#[derive(Debug)]
pub struct TestResult {
    /// The accepted session.
    pub info: SessionInfo,
    /// Packets sent.
    pub sent: u32,
    /// Replies, in the order they arrived.
    pub records: Vec<TwoWayRecord>,
    /// The loss timeout.
    pub timeout: Interval,
    /// Padding octets per packet.
    pub padding: u32,
    /// Packets asked for.
    pub count: u32,
    /// The DSCP of the test packets (-D).
    pub dscp: u8,
    /// The packets sent that no reply answered, in sequence order: when each left, with the
    /// clock's error estimate.
    pub lost: Vec<SentPacket>,
    /// The schedule the packets followed.
    pub slots: Vec<Slot>,
    /// The start time of the schedule.
    pub start_time: OwampTime,
}

impl TestResult {
    /// What the outputs say about the session besides its records.
    pub fn view(&self) -> SessionView {
        SessionView {
            sid: self.info.sid,
            local: self.info.local,
            peer: self.info.peer,
            timeout: self.timeout,
            padding: self.padding,
            count: self.count,
            dscp: self.dscp,
        }
    }

    /// Every packet sent, in sequence order: its replies in the order they came, or
    /// [`TwoWayEntry::Lost`] (what `-F` saves).
    pub fn entries(&self) -> Vec<TwoWayEntry> {
        let lost = self.lost.iter().map(|p| TwoWayEntry::Lost {
            seq: p.seq,
            send_time: p.send_time,
            send_error: p.send_error,
        });
        let mut out: Vec<TwoWayEntry> = self
            .records
            .iter()
            .map(|r| TwoWayEntry::Reply(*r))
            .chain(lost)
            .collect();
        // Stable: the replies to a packet stay in the order they came.
        out.sort_by_key(TwoWayEntry::seq);
        out
    }

    /// The session's request as `-F` stores it: the addresses and ports the test used, the
    /// schedule followed.
    pub fn stored_request(&self) -> RequestSession {
        RequestSession {
            sender_address: self.info.local.ip(),
            sender_port: self.info.local.port(),
            receiver_address: self.info.peer.ip(),
            receiver_port: self.info.peer.port(),
            sid: self.info.sid,
            num_packets: self.count,
            padding_length: self.padding,
            timeout: self.timeout,
            slots: self.slots.clone(),
            ..self.info.request.clone()
        }
    }
}

/// What twping's outputs say about a session besides its records: from a test, or from a
/// two-way file.
#[derive(Debug, Clone, Copy)]
pub struct SessionView {
    /// The session.
    pub sid: SessionId,
    /// The session-sender's test address.
    pub local: SocketAddr,
    /// The reflector's test address.
    pub peer: SocketAddr,
    /// The loss timeout.
    pub timeout: Interval,
    /// Padding octets per packet.
    pub padding: u32,
    /// Packets asked for.
    pub count: u32,
    /// The DSCP of the test packets.
    pub dscp: u8,
}

/// Runs twping with `argv`; returns the exit status.
pub fn run(
    argv: impl IntoIterator<Item = OsString>,
    out: &mut dyn Write,
    err: &mut dyn Write,
    env: &dyn Environment,
) -> i32 {
    let argv = crate::owstats::split_attached_verbose(argv);
    let args: Args = match client::parse_args(argv, err) {
        Ok(a) => a,
        Err(code) => return code,
    };
    client::exit_status("twping", run_args(&args, out, err, env), err)
}

fn run_args(
    args: &Args,
    out: &mut dyn Write,
    err: &mut dyn Write,
    env: &dyn Environment,
) -> Result<i32, String> {
    // -a and -b as owstats and owping read them.
    let percentiles = match &args.alpha {
        Some(s) => crate::owstats::parse_percentiles(s)
            .map_err(|e| format!("{e}\ntwping: Invalid '-a' alpha list ."))?,
        None => Vec::new(),
    };
    let bucket_width = match &args.bucket_width {
        Some(s) => f64::from(crate::owstats::parse_bucket_width(s)?),
        None => DEFAULT_BUCKET_WIDTH,
    };
    let test_spec = client::parse_host(&args.host, CONTROL_PORT)?;
    let spec = match &args.servaddr {
        Some(s) => client::parse_host(s, CONTROL_PORT)?,
        None => test_spec.clone(),
    };
    let dscp = match &args.dscp {
        Some(s) => parse_dscp(s)?,
        None => 0,
    };
    let ports = match &args.ports {
        Some(s) => parse_ports(s)?,
        None => None,
    };
    let sub_count = match &args.sub_count {
        Some(s) => Some(
            s.trim()
                .parse::<u32>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("Invalid -N: \"{s}\""))?,
        ),
        None => None,
    };
    let units = match &args.units {
        Some(s) => Units::parse(s)?,
        None => Units::MS,
    };
    let delay_start = match &args.delay_start {
        Some(s) => Duration::from_secs_f64(parse_seconds('z', s, true)?),
        None => Duration::ZERO,
    };
    let slots = match &args.schedule {
        Some(s) => parse_schedule(s).map_err(|e| format!("Invalid -i: {e}"))?,
        None => vec![Slot {
            kind: SlotKind::Exponential,
            mean: seconds_to_interval(0.1).unwrap_or(Interval::ZERO),
        }],
    };
    let timeout = match &args.timeout {
        Some(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(seconds_to_interval)
            .ok_or_else(|| format!("Invalid -L: \"{s}\""))?,
        None => seconds_to_interval(2.0).unwrap_or(Interval::ZERO),
    };
    // A histogram coarser than the loss timeout makes no sense (twping refuses it too).
    if timeout.as_secs_f64() < bucket_width {
        return Err(format!(
            "Invalid test specification: LossThreshold({:.6}) '-L' < BucketWidth ({bucket_width:.6}) '-b'",
            timeout.as_secs_f64()
        ));
    }
    if let Some(p) = args.padding {
        if p > MAX_PADDING {
            return Err(format!("Invalid -s: padding is at most {MAX_PADDING}"));
        }
    }
    // -F: the file is opened before the test, so that a test is not run for nothing.
    let mut save = match &args.file {
        Some(path) => Some((
            path,
            std::fs::File::create(path)
                .map_err(|e| format!("cannot open {path} to save the results (-F): {e}"))?,
        )),
        None => None,
    };
    let mut opts = args.conn.client_options("twping", err)?;
    let family = args.conn.family()?;
    opts.control.protocol = Protocol::Twamp;
    opts.control.control_timeout = CONTROL_TIMEOUT;
    opts.control.end_delay = Duration::from_millis(100);
    opts.connect_timeout = Duration::from_secs(10);
    opts.io_timeout = Duration::from_secs(10);
    opts.test_ports = ports;
    let test_host = args.servaddr.as_ref().map(|_| &test_spec);
    let addrs = client::resolve_server(&spec, test_host, family)?;
    let source = match &args.conn.srcaddr {
        Some(s) => Some(client::resolve_source(s, addrs[0])?),
        None => None,
    };
    let mean: f64 = slots.iter().map(|s| s.mean.as_secs_f64()).sum::<f64>() / slots.len() as f64;
    // As owping: a sender of a high rate spins longer before each packet.
    let mean_interval = Duration::from_secs_f64(mean.clamp(0.0, 1e9));
    opts.endpoint.max_spin = owamp_os::timing::max_spin_for(mean_interval);
    opts.endpoint.min_spin = owamp_os::timing::min_spin_for(mean_interval);
    // As owping: the time until the start (-z) counts too.
    let approx =
        f64::from(args.count) * mean + timeout.as_secs_f64() + 1.0 + delay_start.as_secs_f64();
    // twping prints this before the summaries, not before -R's lines.
    if !args.raw && !args.json && !args.quiet {
        let _ = writeln!(
            out,
            "Approximately {approx:.1} seconds until results available"
        );
    }
    let _ = out.flush();
    let plan = Plan {
        slots,
        timeout,
        dscp,
        delay_start,
    };
    let t = test(&spec, &addrs, source, &opts, &plan, args)?;
    if let Some((path, file)) = save.take() {
        let mut w = std::io::BufWriter::new(file);
        owamp_core::owp::encode_two_way(&mut w, &t.stored_request(), &t.entries())
            .map_err(|e| e.to_string())
            .and_then(|()| w.flush().map_err(|e| e.to_string()))
            .map_err(|e| format!("saving the results in {path} (-F): {e}"))?;
    }
    if args.quiet {
        return Ok(0);
    }
    let local_name = env
        .host_name(t.info.local.ip())
        .unwrap_or_else(|| t.info.local.ip().to_string());
    let to_name = spec.node.clone();
    let entries = t.entries();
    let report = Report {
        view: t.view(),
        entries: &entries,
        record_limit: args
            .verbose
            .then_some(args.verbose_limit)
            .flatten()
            .map(|n| n as usize),
        schedule: Schedule::new(t.info.sid, &t.slots, t.count)
            .ok()
            .map(|s| (s, t.start_time)),
        from: &local_name,
        to: &to_name,
        bucket_width,
        percentiles: &percentiles,
        units,
    };
    let text = if args.json {
        json(&report.view, &report.whole())
    } else {
        report.text(
            &Style {
                raw: args.raw,
                machine: args.machine,
                verbose: args.verbose,
                unix: args.unix,
                sub_count,
            },
            env,
        )
    };
    out.write_all(text.as_bytes())
        .map_err(|e| format!("writing the results: {e}"))?;
    Ok(0)
}

/// Which of twping's outputs to print.
#[derive(Debug, Clone, Copy, Default)]
pub struct Style {
    /// `-R`.
    pub raw: bool,
    /// `-M`.
    pub machine: bool,
    /// `-v`: the individual delays.
    pub verbose: bool,
    /// `-U`.
    pub unix: bool,
    /// `-N`.
    pub sub_count: Option<u32>,
}

/// A session's results and how to print them: twping's after a test, owstats's for a two-way
/// file.
pub struct Report<'a> {
    /// The session.
    pub view: SessionView,
    /// Every packet, in sequence order (a two-way file's order): its replies, or that it was
    /// lost.
    pub entries: &'a [TwoWayEntry],
    /// `-vN`: only the first N entries are read, for the summaries too (as twping and owstats
    /// read only N records then).
    pub record_limit: Option<usize>,
    /// The send schedule and its start time: "first" and "last" are the scheduled send times
    /// of a summary's first and last packets, as twping and owstats print them.
    pub schedule: Option<(Schedule, OwampTime)>,
    /// The sender's name.
    pub from: &'a str,
    /// The reflector's name.
    pub to: &'a str,
    /// `-b`, seconds.
    pub bucket_width: f64,
    /// `-a`.
    pub percentiles: &'a [f32],
    /// `-n`.
    pub units: Units,
}

/// Scheduled send times, looked up in ascending order of sequence number.
struct SendTimes<'s> {
    packets: Option<(ScheduleIter<'s>, OwampTime)>,
    last: Option<(u32, OwampTime)>,
}

impl SendTimes<'_> {
    fn at(&mut self, seq: u32) -> Option<OwampTime> {
        if let Some((s, t)) = self.last {
            if s == seq {
                return Some(t);
            }
        }
        let (it, start) = self.packets.as_mut()?;
        let p = loop {
            let p = it.next()?;
            if p.seq >= seq {
                break p;
            }
        };
        let t = p.send_time(*start);
        self.last = Some((p.seq, t));
        (p.seq == seq).then_some(t)
    }
}

impl Report<'_> {
    /// The entries a summary reads, from entry `begin` on: at most N of them with `-vN`.
    fn read(&self, begin: usize) -> &[TwoWayEntry] {
        let rest = self.entries.get(begin..).unwrap_or_default();
        &rest[..self.record_limit.unwrap_or(usize::MAX).min(rest.len())]
    }

    /// Where the summary after one of `..hi` that read `read` from `begin` starts reading: at
    /// the first entry it read past `hi`, or, when it read none (`-vN` stopped it first, or
    /// the file ended), at the first entry of the file, as twping and owstats do.
    fn next_begin(read: &[TwoWayEntry], begin: usize, hi: u32) -> usize {
        read.iter()
            .position(|e| e.seq() >= hi)
            .map_or(0, |i| begin + i)
    }

    /// The packets the summaries cover: the session's count, but for a file whose count its
    /// records do not come near (a corrupt header must not make owstats run for hours), one
    /// past the last sequence number seen.
    fn count(&self) -> u32 {
        let n = self.entries.len() as u64;
        if u64::from(self.view.count) <= n.saturating_mul(8).saturating_add(1 << 20) {
            self.view.count
        } else {
            self.entries
                .iter()
                .map(|e| e.seq().saturating_add(1))
                .max()
                .unwrap_or(0)
        }
    }

    /// The replies of the packets `lo..hi` among `read`.
    fn replies(read: &[TwoWayEntry], (lo, hi): (u32, u32)) -> Vec<TwoWayRecord> {
        read.iter()
            .filter_map(|e| match e {
                TwoWayEntry::Reply(r) if (lo..hi).contains(&r.sender_seq) => Some(*r),
                _ => None,
            })
            .collect()
    }

    /// The statistics of the packets `lo..hi` among the entries `read`: sent are those with a
    /// record (twping counts the records), first and last are the scheduled send times of
    /// `lo` and `hi - 1`.
    fn summary(
        &self,
        read: &[TwoWayEntry],
        (lo, hi): (u32, u32),
        times: &mut SendTimes<'_>,
    ) -> TwoWaySummary {
        let in_range: Vec<&TwoWayEntry> = read
            .iter()
            .filter(|e| (lo..hi).contains(&e.seq()))
            .collect();
        let mut seqs: Vec<u32> = in_range.iter().map(|e| e.seq()).collect();
        seqs.sort_unstable();
        seqs.dedup();
        let sent = u32::try_from(seqs.len()).unwrap_or(u32::MAX);
        let lost = in_range.iter().filter_map(|e| match e {
            TwoWayEntry::Lost { send_error, .. } => Some(*send_error),
            TwoWayEntry::Reply(_) => None,
        });
        let records = Self::replies(read, (lo, hi));
        let mut s =
            TwoWaySummary::with_bucket_width(&records, sent, self.bucket_width).with_lost(lost);
        if hi > lo {
            if let (Some(a), Some(z)) = (times.at(lo), times.at(hi - 1)) {
                s.first_last = Some((a, z));
            }
        }
        s
    }

    fn send_times(&self) -> SendTimes<'_> {
        SendTimes {
            packets: self.schedule.as_ref().map(|(s, start)| (s.iter(), *start)),
            last: None,
        }
    }

    /// The summary of the whole session, for `--json`.
    pub fn whole(&self) -> TwoWaySummary {
        self.summary(self.read(0), (0, self.count()), &mut self.send_times())
    }

    /// The output `style` asks for.
    pub fn text(&self, style: &Style, env: &dyn Environment) -> String {
        let (v, from, to, u) = (&self.view, self.from, self.to, self.units);
        let pct = self.percentiles;
        if style.raw {
            return raw(&Self::replies(self.entries, (0, u32::MAX)));
        }
        let mut times = self.send_times();
        let whole = (0, self.count());
        if style.machine {
            let read = self.read(0);
            let s = self.summary(read, whole, &mut times);
            return machine(v, &Self::replies(read, whole), &s, from, to);
        }
        // -N: one summary for each n packets, in order.
        let ranges: Box<dyn Iterator<Item = (u32, u32)>> = match style.sub_count {
            Some(n) => Box::new(sub_ranges(whole.1, n)),
            None => Box::new(std::iter::once(whole)),
        };
        let mut o = String::new();
        let mut begin = 0;
        for (lo, hi) in ranges {
            let read = self.read(begin);
            if style.verbose {
                o.push_str(&header(v, from, to));
                let entries: Vec<TwoWayEntry> = read
                    .iter()
                    .filter(|e| (lo..hi).contains(&e.seq()))
                    .copied()
                    .collect();
                o.push_str(&individual(&entries, style.unix, u));
            }
            let s = self.summary(read, (lo, hi), &mut times);
            o.push_str(&summary(v, &s, from, to, env, u, pct));
            begin = Self::next_begin(read, begin, hi);
        }
        o
    }
}

/// owstats on a two-way file (twping `-F`): the output twping would have printed with the same
/// flags (`-R`, `-M`, `-v[N]`, `-U`, `-N`, `-n`, `-a`, `-b`; `--json` in twping's shape).
pub fn file_report(
    f: &TwoWayFile,
    opts: &crate::owstats::Options,
    env: &dyn Environment,
) -> Result<String, String> {
    let r = &f.header.request;
    let view = SessionView {
        sid: r.sid,
        local: SocketAddr::new(r.sender_address, r.sender_port),
        peer: SocketAddr::new(r.receiver_address, r.receiver_port),
        timeout: r.timeout,
        padding: r.padding_length,
        count: r.num_packets,
        dscp: r.type_p.dscp().unwrap_or(0),
    };
    let name = |ip: IpAddr| env.host_name(ip).unwrap_or_else(|| ip.to_string());
    let (from, to) = (name(view.local.ip()), name(view.peer.ip()));
    let report = Report {
        view,
        entries: &f.entries,
        record_limit: (opts.verbose && opts.record_limit > 0)
            .then(|| usize::try_from(opts.record_limit).unwrap_or(usize::MAX)),
        schedule: Schedule::new(r.sid, &r.slots, r.num_packets)
            .ok()
            .map(|s| (s, r.start_time)),
        from: &from,
        to: &to,
        bucket_width: f64::from(opts.bucket_width),
        percentiles: &opts.percentiles,
        units: Units {
            per_second: opts.scale.factor(),
            label: opts.scale.unit(),
        },
    };
    if opts.json {
        return Ok(json(&view, &report.whole()));
    }
    Ok(report.text(
        &Style {
            raw: opts.raw,
            machine: opts.machine,
            verbose: opts.verbose,
            unix: opts.unix_timestamps,
            sub_count: (opts.sub_packets > 0).then_some(opts.sub_packets),
        },
        env,
    ))
}

/// The test's parameters, checked.
struct Plan {
    slots: Vec<Slot>,
    timeout: Interval,
    dscp: u8,
    delay_start: Duration,
}

/// What twping says of a client error: the reference's words where it has them.
fn describe(e: &ClientError) -> String {
    match e {
        ClientError::Closed(CloseReason::PeerClosed) => {
            "the server closed the control connection".into()
        }
        ClientError::Closed(CloseReason::Timeout) => "no answer from the server in time".into(),
        ClientError::Closed(r) => format!("{r:?}"),
        ClientError::Rejected(accept) => {
            format!(
                "Session request refused: {}",
                client::describe_accept(*accept)
            )
        }
        other => other.to_string(),
    }
}

/// Sets up the control connection and runs the session on owamp-std's client connection
/// (a thread of its own sends the packets on their schedule and reads the replies).
fn test(
    spec: &HostSpec,
    addrs: &[SocketAddr],
    source: Option<IpAddr>,
    opts: &ClientOptions,
    plan: &Plan,
    args: &Args,
) -> Result<TestResult, String> {
    let (slots, timeout) = (&plan.slots[..], plan.timeout);
    let fail_open = || {
        format!(
            "Unable to open control connection to {}:{}.",
            spec.node, spec.port
        )
    };
    let stream = addrs
        .iter()
        .find_map(|a| {
            client::connect_stream(
                *a,
                source,
                args.conn.interface.as_deref(),
                opts.connect_timeout,
            )
            .ok()
        })
        .ok_or_else(fail_open)?;
    let mut conn = ClientConnection::from_stream(stream, opts)
        .map_err(|e| format!("{}\ntwping: {}", describe(&e), fail_open()))?;
    // RFC 5357 3.5 (RFC 4656 3.5): the Type-P descriptor carries the DSCP.
    TypeP::from_dscp(plan.dscp).ok_or("Invalid DSCP value (-D)")?;
    // The test packets' mode: open in mixed mode (RFC 5618).
    let padding = args
        .padding
        .unwrap_or_else(|| default_padding(conn.packet_mode()));
    let session = SessionSpec {
        packets: args.count,
        slots: slots.to_vec(),
        padding,
        timeout: timeout.to_duration(),
        dscp: plan.dscp,
    };
    let start_time = conn.now().saturating_add(START_DELAY + plan.delay_start);
    // -Z: the request names no addresses (zeros); the reflector then answers the address the
    // control connection comes from (RFC 5357 3.5 as RFC 4656 3.5: zero addresses stand for
    // the control connection's).
    let info = if args.nat {
        conn.request_session_unaddressed(Role::Sender, &session, start_time)
    } else {
        conn.request_session(Role::Sender, &session, start_time)
    }
    .map_err(|e| describe(&e))?;
    conn.start().map_err(|e| describe(&e))?;
    let mut records = Vec::new();
    let end = conn
        .wait_two_way(None, &mut |_, r| records.extend_from_slice(r))
        .map_err(|e| describe(&e))?;
    conn.close();
    if !end.test.complete {
        let reason = end.test.closed.unwrap_or(CloseReason::Local);
        return Err(describe(&ClientError::Closed(reason)));
    }
    let (sent, lost) = end
        .sessions
        .into_iter()
        .find(|s| s.end.sid == info.sid)
        .map_or((0, Vec::new()), |s| (s.end.sent, s.unanswered));
    Ok(TestResult {
        info,
        sent,
        records,
        timeout,
        padding,
        count: args.count,
        dscp: plan.dscp,
        lost,
        slots: slots.to_vec(),
        start_time,
    })
}

fn sync(e: ErrorEstimate) -> u8 {
    u8::from(e.synchronized())
}

/// `-R`: one line per reply (twping's layout): sender sequence number, send time, S, error,
/// reflector receive time, S, error, Sender TTL, reflector sequence number, reflector send
/// time, S, error, receive time, S, error, TTL.
pub fn raw(records: &[TwoWayRecord]) -> String {
    let mut o = String::new();
    for r in records {
        let _ = writeln!(
            o,
            "{} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {}",
            r.sender_seq,
            r.send_time.raw(),
            sync(r.send_error),
            g6(r.send_error.error_secs_f64()),
            r.reflector_recv_time.raw(),
            sync(r.reflector_error),
            g6(r.reflector_error.error_secs_f64()),
            r.sender_ttl,
            r.reflector_seq,
            r.reflector_send_time.raw(),
            sync(r.reflector_error),
            g6(r.reflector_error.error_secs_f64()),
            r.recv_time.raw(),
            sync(r.recv_error),
            g6(r.recv_error.error_secs_f64()),
            r.reply_ttl,
        );
    }
    o
}

/// The unit of the delays printed (`-n`): how many in a second, and its label.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Units {
    /// Units in a second.
    pub per_second: f64,
    /// The label after each value ("" for seconds, as twping).
    pub label: &'static str,
}

impl Units {
    /// Milliseconds, twping's default.
    pub const MS: Units = Units {
        per_second: 1e3,
        label: "ms",
    };

    /// `-n`: 'n', 'u', 'm' or 's'.
    pub fn parse(s: &str) -> Result<Units, String> {
        let (per_second, label) = match s {
            "n" => (1e9, "ns"),
            "u" => (1e6, "us"),
            "m" => (1e3, "ms"),
            "s" => (1.0, ""),
            _ => return Err(format!("Invalid -n: \"{s}\" (one of n, u, m, s)")),
        };
        Ok(Units { per_second, label })
    }

    fn g3(self, v: Option<f64>) -> String {
        v.map_or_else(|| "nan".to_string(), |x| g(x * self.per_second, 3))
    }
}

/// A time as twping prints it: local time, milliseconds rounded as twping rounds them (the
/// nanoseconds as a C float over a million, `%03.0f`).
fn time_of(t: OwampTime, env: &dyn Environment) -> String {
    let (secs, nsec) = to_unix_timespec(t.raw());
    let date = env
        .local_time(secs)
        .unwrap_or_else(|| UNREPRESENTABLE_DATE.into());
    let ms = nsec as f32 / 1_000_000f32;
    format!("{date}.{:03.0}", f64::from(ms))
}

fn delay_line(o: &mut String, label: &str, d: &DelayStats, sync: bool, u: Units) {
    let err = if sync {
        format!("(err={} {})", u.g3(Some(d.max_error)), u.label)
    } else {
        "(unsync)".to_string()
    };
    let _ = writeln!(
        o,
        "{label} min/median/max = {}/{}/{} {l}, {err}",
        u.g3(d.min),
        u.g3(d.median()),
        u.g3(d.max),
        l = u.label
    );
}

fn hops_line(o: &mut String, label: &str, h: Option<owamp_core::stats::twamp::Hops>) {
    match h {
        None => {
            let _ = writeln!(o, "{label} TTL not reported");
        }
        Some(h) if h.min == h.max => {
            let _ = writeln!(o, "{label} hops = {} (consistently)", h.min);
        }
        Some(h) => {
            let _ = writeln!(
                o,
                "{label} hops takes {} values; min hops = {}, max hops = {}",
                u32::from(h.max - h.min) + 1,
                h.min,
                h.max
            );
        }
    }
}

/// `-N`: the packets `0..count` in parts of `n` (sequence number ranges, the last one
/// possibly shorter).
pub fn sub_ranges(count: u32, n: u32) -> impl Iterator<Item = (u32, u32)> {
    let n = n.max(1);
    (0..count.div_ceil(n)).map(move |k| {
        let low = k * n;
        (low, low.saturating_add(n).min(count))
    })
}

/// The two lines that start twping's summaries.
fn header(v: &SessionView, from: &str, to: &str) -> String {
    format!(
        "\n--- twping statistics from [{from}]:{} to [{to}]:{} ---\nSID:\t{}\n",
        v.local.port(),
        v.peer.port(),
        hex::encode(v.sid.0)
    )
}

/// C's `%e`: six decimals, a signed exponent of at least two digits.
fn c_exp(x: f64) -> String {
    let s = format!("{x:.6e}");
    match s.split_once('e') {
        Some((m, e)) => {
            let (sign, digits) = e.strip_prefix('-').map_or(("+", e), |d| ("-", d));
            format!("{m}e{sign}{digits:0>2}")
        }
        None => s,
    }
}

/// UNIX time with microseconds, as `-U` prints it: the timestamp as a double less the
/// seconds from 1900 to 1970.
fn unix_secs(t: OwampTime) -> String {
    format!(
        "{:.6}",
        num64_to_f64(t.raw()) - num64_to_f64(NTP_UNIX_OFFSET << 32)
    )
}

/// A delay as twping computes it: the difference of the timestamps as doubles.
fn delay(a: OwampTime, b: OwampTime) -> f64 {
    num64_to_f64(a.raw()) - num64_to_f64(b.raw())
}

/// `-v`: each packet's delays (or `*LOST*`), as twping prints them; with `unix` (`-U`) in
/// `%e` and followed by the four timestamps.
pub fn individual(entries: &[TwoWayEntry], unix: bool, u: Units) -> String {
    let mut o = String::new();
    let l = u.label;
    for e in entries {
        let r = match e {
            TwoWayEntry::Reply(r) => r,
            TwoWayEntry::Lost { seq, .. } => {
                let _ = writeln!(o, "seq_no={seq:<10} *LOST*");
                continue;
            }
        };
        let k = u.per_second;
        let fwd = delay(r.reflector_recv_time, r.send_time) * k;
        let bck = delay(r.recv_time, r.reflector_send_time) * k;
        let proc = delay(r.reflector_send_time, r.reflector_recv_time);
        // The round trip without the reflector's processing time.
        let rtt = (delay(r.recv_time, r.send_time) - proc) * k;
        let proc = proc * k;
        // The round trip's error: both ends' and twice the reflector's.
        let err = (error_seconds(r.send_error)
            + 2.0 * error_seconds(r.reflector_error)
            + error_seconds(r.recv_error))
            * k;
        if unix {
            let _ = writeln!(
                o,
                "seq_no={} fwd_delay={} {l} bck_delay={} {l} delay={} {l} proc_delay={} {l} \
                 (err={} {l}) sent={} recv={} reflected={} recv={}",
                r.sender_seq,
                c_exp(fwd),
                c_exp(bck),
                c_exp(rtt),
                c_exp(proc),
                g(err, 3),
                unix_secs(r.send_time),
                unix_secs(r.reflector_recv_time),
                unix_secs(r.reflector_send_time),
                unix_secs(r.recv_time),
            );
        } else {
            let _ = writeln!(
                o,
                "seq_no={:<10} fwd_delay={} {l} bck_delay={} {l} delay={} {l} proc_delay={} {l}\t\
                 (err={} {l})",
                r.sender_seq,
                g(fwd, 3),
                g(bck, 3),
                g(rtt, 3),
                g(proc, 3),
                g(err, 3),
            );
        }
    }
    o
}

/// The default output, laid out as twping's; first and last in local time (`env`); with the
/// round-trip time at each of `percentiles` (`-a`).
pub fn summary(
    v: &SessionView,
    s: &TwoWaySummary,
    from: &str,
    to: &str,
    env: &dyn Environment,
    u: Units,
    percentiles: &[f32],
) -> String {
    let mut o = header(v, from, to);
    match s.first_last {
        Some((a, z)) => {
            let _ = writeln!(o, "first:\t{}\nlast:\t{}", time_of(a, env), time_of(z, env));
        }
        None => {
            let _ = writeln!(o, "first:\tnan\nlast:\tnan");
        }
    }
    let _ = writeln!(
        o,
        "{} sent, {} lost ({}%), {} send duplicates, {} reflect duplicates",
        s.sent,
        s.lost,
        f(100.0 * s.loss_fraction(), 3),
        s.send_duplicates,
        s.reflect_duplicates
    );
    delay_line(&mut o, "round-trip time", &s.round_trip, s.sync, u);
    delay_line(&mut o, "send time", &s.send, s.sync, u);
    delay_line(&mut o, "reflect time", &s.reflect, s.sync, u);
    let _ = writeln!(
        o,
        "reflector processing time min/max = {}/{} {}",
        u.g3(s.processing.min),
        u.g3(s.processing.max),
        u.label
    );
    for (label, d) in [
        ("two-way jitter", &s.round_trip),
        ("send jitter", &s.send),
        ("reflect jitter", &s.reflect),
    ] {
        let _ = writeln!(o, "{label} = {} {} (P95-P50)", u.g3(d.jitter()), u.label);
    }
    o.push_str(&percentile_lines(
        percentiles,
        |a| s.round_trip_percentile(a),
        u.per_second,
        u.label,
    ));
    hops_line(&mut o, "send", s.send_hops);
    hops_line(&mut o, "reflect", s.reflect_hops);
    o.push('\n');
    o
}

/// `-M`: the machine-readable summary of `records`, with twping's keys.
pub fn machine(
    t: &SessionView,
    records: &[TwoWayRecord],
    s: &TwoWaySummary,
    from: &str,
    to: &str,
) -> String {
    let mut o = String::new();
    let mut kv = |k: &str, v: String| {
        let _ = writeln!(o, "{k}\t{v}");
    };
    kv("SUMMARY", "3.00".into());
    kv("SID", hex::encode(t.sid.0));
    kv("FROM_HOST", from.into());
    kv("FROM_ADDR", t.local.ip().to_string());
    kv("FROM_PORT", t.local.port().to_string());
    kv("TO_HOST", to.into());
    kv("TO_ADDR", t.peer.ip().to_string());
    kv("TO_PORT", t.peer.port().to_string());
    let (first, last) = s.first_last.map_or((0, 0), |(a, z)| (a.raw(), z.raw()));
    kv("START_TIME", first.to_string());
    kv("END_TIME", last.to_string());
    kv("DSCP", format!("{:#04x}", t.dscp));
    kv("LOSS_TIMEOUT", t.timeout.raw().to_string());
    kv("PACKET_PADDING", t.padding.to_string());
    kv("SESSION_PACKET_COUNT", t.count.to_string());
    kv("SAMPLE_PACKET_COUNT", s.sent.to_string());
    kv("BUCKET_WIDTH", g6(s.round_trip.bucket_width));
    kv("SESSION_FINISHED", "1".into());
    kv("SENT", s.sent.to_string());
    kv("SYNC", u8::from(s.sync).to_string());
    kv("MAXERR", g6(s.round_trip.max_error));
    kv("MAXERR_FWD", g6(s.send.max_error));
    kv("MAXERR_BCK", g6(s.reflect.max_error));
    kv("DUPS_FWD", s.send_duplicates.to_string());
    kv("DUPS_BCK", s.reflect_duplicates.to_string());
    kv("LOST", s.lost.to_string());
    // Values that do not exist (nothing came back, no bucket reaches the level) are left
    // out, as twping leaves them out.
    let mut opt = |k: &str, v: Option<f64>| {
        if let Some(v) = v {
            let _ = writeln!(o, "{k}\t{}", g6(v));
        }
    };
    opt("MIN", s.round_trip.min);
    opt("MIN_FWD", s.send.min);
    opt("MIN_BCK", s.reflect.min);
    opt("MIN_PROC", s.processing.min);
    opt("MEDIAN", s.round_trip.median());
    opt("MEDIAN_FWD", s.send.median());
    opt("MEDIAN_BCK", s.reflect.median());
    opt("MAX", s.round_trip.max);
    opt("MAX_FWD", s.send.max);
    opt("MAX_BCK", s.reflect.max);
    opt("MAX_PROC", s.processing.max);
    opt("PDV", s.round_trip.jitter());
    opt("PDV_FWD", s.send.jitter());
    opt("PDV_BCK", s.reflect.jitter());
    let _ = writeln!(o, "<BUCKETS>");
    let mut buckets: std::collections::BTreeMap<i32, [u32; 3]> = Default::default();
    for (i, d) in [&s.round_trip, &s.send, &s.reflect].into_iter().enumerate() {
        for &(b, n) in &d.buckets {
            buckets.entry(b).or_default()[i] += n;
        }
    }
    for (b, [a, fw, bk]) in buckets {
        let _ = writeln!(o, "\t{b}\t{a}\t{fw}\t{bk}");
    }
    let _ = writeln!(o, "</BUCKETS>");
    let ttl = |h: Option<owamp_core::stats::twamp::Hops>, max: bool| {
        h.map_or_else(
            || "nan".to_string(),
            |h| (255 - if max { h.min } else { h.max }).to_string(),
        )
    };
    let _ = writeln!(o, "MINTTL_FWD\t{}", ttl(s.send_hops, false));
    let _ = writeln!(o, "MAXTTL_FWD\t{}", ttl(s.send_hops, true));
    let _ = writeln!(o, "MINTTL_BCK\t{}", ttl(s.reflect_hops, false));
    let _ = writeln!(o, "MAXTTL_BCK\t{}", ttl(s.reflect_hops, true));
    let _ = writeln!(o, "<TTLBUCKETS>");
    let mut ttls: std::collections::BTreeMap<u8, [u32; 2]> = Default::default();
    let mut seen = std::collections::HashSet::new();
    for r in records {
        if seen.insert(r.sender_seq) {
            ttls.entry(r.sender_ttl).or_default()[0] += 1;
            ttls.entry(r.reply_ttl).or_default()[1] += 1;
        }
    }
    for (ttl, [fw, bk]) in ttls {
        let _ = writeln!(o, "\t{ttl}\t{fw}\t{bk}");
    }
    let _ = writeln!(o, "</TTLBUCKETS>");
    o.push('\n');
    o
}

/// `--json`: the main numbers (seconds).
pub fn json(t: &SessionView, s: &TwoWaySummary) -> String {
    let d = |x: &DelayStats| {
        serde_json::json!({
            "min": x.min, "median": x.median(), "max": x.max,
            "max_error": x.max_error, "jitter": x.jitter(),
        })
    };
    let v = serde_json::json!({
        "sid": hex::encode(t.sid.0),
        "from": t.local.to_string(),
        "to": t.peer.to_string(),
        "sent": s.sent,
        "lost": s.lost,
        "send_duplicates": s.send_duplicates,
        "reflect_duplicates": s.reflect_duplicates,
        "round_trip": d(&s.round_trip),
        "send": d(&s.send),
        "reflect": d(&s.reflect),
        "processing": {"min": s.processing.min, "max": s.processing.max},
    });
    format!("{v}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u32) -> TwoWayRecord {
        let t = |s: u64| OwampTime::from_raw(s << 32);
        let ee = ErrorEstimate::from_raw(1);
        TwoWayRecord {
            sender_seq: seq,
            send_time: t(100),
            send_error: ee,
            reflector_recv_time: t(101),
            reflector_error: ee,
            sender_ttl: 254,
            reflector_seq: seq,
            reflector_send_time: t(102),
            recv_time: t(103),
            recv_error: ee,
            reply_ttl: 255,
        }
    }

    #[test]
    fn raw_lines_have_twpings_sixteen_fields() {
        let o = raw(&[record(0), record(1)]);
        let rows: Vec<Vec<&str>> = o.lines().map(|l| l.split(' ').collect()).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].len(), 16);
        assert_eq!(rows[1][0], "1");
        assert_eq!(rows[1][1], (100u64 << 32).to_string());
        assert_eq!(rows[1][2], "0");
        assert_eq!(rows[1][3], "2.32831e-10");
        assert_eq!(rows[1][7], "254");
        assert_eq!(rows[1][12], (103u64 << 32).to_string());
        assert_eq!(rows[1][15], "255");
    }

    #[test]
    fn hops_lines() {
        let mut o = String::new();
        hops_line(&mut o, "send", None);
        hops_line(
            &mut o,
            "send",
            Some(owamp_core::stats::twamp::Hops { min: 1, max: 1 }),
        );
        hops_line(
            &mut o,
            "send",
            Some(owamp_core::stats::twamp::Hops { min: 1, max: 3 }),
        );
        assert_eq!(
            o,
            "send TTL not reported\nsend hops = 1 (consistently)\n\
             send hops takes 3 values; min hops = 1, max hops = 3\n"
        );
    }

    #[test]
    fn arguments() {
        let a = Args::try_parse_from(["twping", "-c", "5", "-R", "host"]).unwrap();
        assert_eq!((a.count, a.raw, a.machine), (5, true, false));
        assert_eq!(client::parse_host(&a.host, CONTROL_PORT).unwrap().port, 862);
        assert!(Args::try_parse_from(["twping"]).is_err());
        assert!(Args::try_parse_from(["twping", "-c", "-1", "h"]).is_err());
    }

    #[test]
    fn file_and_output_flags() {
        let a = Args::try_parse_from([
            "twping", "-F", "f", "-Q", "-a", "5,95", "-b", "-1", "h", "s",
        ])
        .unwrap();
        assert_eq!(a.file.as_deref(), Some("f"));
        assert_eq!(a.alpha.as_deref(), Some("5,95"));
        assert_eq!(a.bucket_width.as_deref(), Some("-1"));
        assert!(a.quiet);
        assert_eq!(a.servaddr.as_deref(), Some("s"));
    }

    #[test]
    fn lost_packets_are_saved_and_make_the_summary_unsynchronized() {
        let info_of = |t: &TestResult| t.entries();
        let ee = ErrorEstimate::from_raw(1);
        let t = TestResult {
            info: SessionInfo {
                sid: SessionId([1; 16]),
                role: Role::Sender,
                mode: owamp_core::wire::Mode::Open,
                keys: None,
                local: "127.0.0.1:9000".parse().unwrap(),
                peer: "127.0.0.1:9001".parse().unwrap(),
                request: RequestSession {
                    conf_sender: false,
                    conf_receiver: true,
                    num_packets: 3,
                    sender_port: 0,
                    receiver_port: 0,
                    sender_address: "127.0.0.1".parse().unwrap(),
                    receiver_address: "127.0.0.1".parse().unwrap(),
                    sid: SessionId([1; 16]),
                    padding_length: 0,
                    start_time: OwampTime::from_raw(99 << 32),
                    timeout: Interval::from_raw(1 << 32),
                    type_p: TypeP::from_dscp(0).unwrap(),
                    hmac: [0; 16],
                    slots: Vec::new(),
                    slots_hmac: [0; 16],
                },
            },
            sent: 3,
            records: vec![record(2), record(0), record(0)],
            timeout: Interval::from_raw(1 << 32),
            padding: 0,
            count: 3,
            dscp: 0,
            // Packet 1 was not answered.
            lost: vec![SentPacket {
                seq: 1,
                send_time: OwampTime::from_raw(100 << 32),
                send_error: ee,
            }],
            slots: vec![Slot {
                kind: SlotKind::Fixed,
                mean: Interval::from_raw(1 << 31),
            }],
            start_time: OwampTime::from_raw(99 << 32),
        };
        let entries = info_of(&t);
        // Sequence order, the duplicate after the first reply, the lost packet in its place.
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[0], TwoWayEntry::Reply(record(0)));
        assert_eq!(entries[1], TwoWayEntry::Reply(record(0)));
        assert!(matches!(entries[2], TwoWayEntry::Lost { seq: 1, .. }));
        assert_eq!(entries[3], TwoWayEntry::Reply(record(2)));
        let req = t.stored_request();
        assert_eq!((req.sender_port, req.receiver_port), (9000, 9001));
        assert_eq!(req.slots, t.slots);
        let report = Report {
            view: t.view(),
            entries: &entries,
            record_limit: None,
            schedule: Schedule::new(t.info.sid, &t.slots, 3)
                .ok()
                .map(|s| (s, t.start_time)),
            from: "a",
            to: "b",
            bucket_width: DEFAULT_BUCKET_WIDTH,
            percentiles: &[],
            units: Units::MS,
        };
        let s = report.whole();
        assert_eq!((s.sent, s.lost, s.send_duplicates), (3, 1, 0));
        assert_eq!(s.reflect_duplicates, 1);
        // The lost packet's clock was not synchronized; first and last are scheduled times
        // (fixed slots of half a second from 99 s).
        assert!(!s.sync);
        assert_eq!(
            s.first_last,
            Some((
                OwampTime::from_raw((99 << 32) + (1 << 31)),
                OwampTime::from_raw((99 << 32) + 3 * (1 << 31))
            ))
        );
        let v = individual(&entries, false, Units::MS);
        assert!(v.contains("\nseq_no=1          *LOST*\n"), "{v}");
    }

    #[test]
    fn individual_delays_as_twping_prints_them() {
        let reply = |n| TwoWayEntry::Reply(record(n));
        let o = individual(&[reply(0)], false, Units::MS);
        assert_eq!(
            o,
            "seq_no=0          fwd_delay=1e+03 ms bck_delay=1e+03 ms delay=2e+03 ms \
             proc_delay=1e+03 ms\t(err=9.31e-07 ms)\n"
        );
        let o = individual(&[reply(3)], true, Units::MS);
        assert!(
            o.starts_with(
                "seq_no=3 fwd_delay=1.000000e+03 ms bck_delay=1.000000e+03 ms \
                 delay=2.000000e+03 ms proc_delay=1.000000e+03 ms (err=9.31e-07 ms) sent="
            ),
            "{o}"
        );
        assert_eq!(c_exp(0.0305), "3.050000e-02");
        let o = individual(&[reply(0)], false, Units::parse("s").unwrap());
        assert!(o.contains("fwd_delay=1  bck_delay=1  delay=2  proc_delay=1 \t(err=9.31e-10 )"));
        let o = individual(&[reply(0)], false, Units::parse("u").unwrap());
        assert!(o.contains("fwd_delay=1e+06 us"), "{o}");
        assert!(Units::parse("x").is_err());
        assert_eq!(c_exp(0.0), "0.000000e+00");
        let a = Args::try_parse_from(crate::owstats::split_attached_verbose(
            ["twping", "-v20", "-U", "h"].map(OsString::from),
        ))
        .unwrap();
        assert_eq!((a.verbose, a.verbose_limit, a.unix), (true, Some(20), true));
    }

    #[test]
    fn sub_ranges_split_the_packets() {
        let r: Vec<(u32, u32)> = sub_ranges(5, 2).collect();
        assert_eq!(r, vec![(0, 2), (2, 4), (4, 5)]);
        assert_eq!(sub_ranges(0, 2).count(), 0);
        assert_eq!(sub_ranges(3, 0).count(), 3);
    }

    #[test]
    fn first_and_last_are_local_times() {
        struct Zone;
        impl Environment for Zone {
            fn host_name(&self, _: IpAddr) -> Option<String> {
                None
            }
            fn local_time(&self, secs: u32) -> Option<String> {
                Some(format!("local{secs}"))
            }
        }
        let t = OwampTime::from_raw((2_208_988_800u64 + 7) << 32);
        assert_eq!(time_of(t, &Zone), "local7.000");
    }

    #[test]
    fn bad_values_are_errors_with_status_1() {
        let mut out = Vec::new();
        let mut err = Vec::new();
        for bad in [
            &["twping", "-L", "x", "127.0.0.1"][..],
            &["twping", "-s", "70000", "127.0.0.1"],
            &["twping", "-i", "0.1q", "127.0.0.1"],
            &["twping", "127.0.0.1:0"],
            &["twping", "-D", "64", "127.0.0.1"],
            &["twping", "-P", "9-x", "127.0.0.1"],
            &["twping", "-z", "-1", "127.0.0.1"],
            &["twping", "-N", "0", "127.0.0.1"],
            &["twping", "-a", "x", "127.0.0.1"],
            &["twping", "-b", "0", "127.0.0.1"],
            &["twping", "-b", "5", "127.0.0.1"],
            &["twping", "-n", "k", "127.0.0.1"],
            &["twping", "-A", "Q", "127.0.0.1"],
            // A test address other than the server's.
            &["twping", "127.0.0.1", "127.0.0.2"],
        ] {
            let code = run(
                bad.iter().map(OsString::from),
                &mut out,
                &mut err,
                &crate::sys::System,
            );
            assert_eq!(code, 1, "{bad:?}: {}", String::from_utf8_lossy(&err));
        }
    }
}
