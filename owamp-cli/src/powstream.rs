//! powstream: a continuous stream of one-way latency measurements, as perfSONAR's powstream
//! makes it.
//!
//! One direction only: packets from the test peer to this host (the default) or, with `-t`,
//! from this host to it. The stream is cut into test sessions of `-c` packets at exponentially
//! distributed intervals of mean `-i` seconds; each session runs on its own control connection
//! and starts at the computed send time of the previous session's last packet, so the sessions
//! follow each other without gaps. Enough sessions are requested ahead that the next one is
//! always set up before the previous one ends, however long the loss timeout (`-L`) makes each
//! wait for its results (perfSONAR keeps exactly two; see the manual for the difference).
//!
//! Each completed session is saved in the `-d` directory as `<start>_<end>.owp` with its
//! owstats `-M` summary as `<start>_<end>.sum`, the times being the session's start and the
//! scheduled send time of its last packet in the 64-bit NTP format, as zero-padded decimal
//! numbers (`-N` adds a `.sum` file per sub-session, `-j` a JSON summary); `-p` prints the
//! names of the files as they are written.
//!
//! It runs until SIGINT or SIGTERM (or, an extension, until `-X` sessions are done). On the
//! first signal the sessions under way are stopped with Stop-Sessions and whatever they
//! received is still saved (the file then ends at the last packet it holds); a second signal
//! exits at once.
//!
//! # Several peers (an extension)
//!
//! The operands keep perfSONAR's meaning, `testaddr [servaddr]`, and alone they run one stream
//! exactly as above. `--peer "host[:port] [key=value ...]"` (repeatable) and `--peers FILE` (one
//! such line per peer; [`peers`] has the keys) add peers; with either, every peer (the operand's
//! too, if one is given) has its own directory `<dir>/<host>_<port>` ([`peers::dir_name`]),
//! created if missing and locked with its own `.powlock`, its log lines carry that name, and a
//! peer whose sessions cannot be set up backs off: the retry delay `-I` after the first
//! failure, doubling up to 10 minutes, each wait drawn from its upper half with the OS RNG
//! (instead of the single stream's fixed wait). `-X` counts per peer. The exit status is the
//! worst of the peers'.
//!
//! Design: a thread per peer, each running the single-peer `Stream` unchanged, on its own
//! stop flag (a signal sets them all; a peer that fails fatally stops only itself), writing its
//! messages and file names through a bounded queue to the calling thread, which alone writes
//! standard output and error, whole lines in order. So one peer's failure, slow server or
//! backoff never delays another's, and the one-peer path is the same code with one peer.
//! Bounds, for P peers: threads 1 + P + one test endpoint thread per session under way (a
//! receiving session's endpoint runs on its own thread; at most [`MAX_IN_FLIGHT`] sessions a
//! peer, two or three at the defaults, where the next session is set up while one runs and the
//! previous one waits out its loss timeout); sockets one TCP and one UDP per session under way;
//! memory per peer its sessions under way (their records, at most `-c` each) and one
//! being saved, plus at most 1024 queued lines in all. perfSONAR's way, a process per peer,
//! costs a process where this costs a thread; a Tokio port of the stream (few threads whatever
//! P) would cost less still and is not done.
//!
//! Each finished session (saved, cut short or failed) is passed as a [`FinishedSession`] to
//! every [`SessionObserver`]: the archive stream of `--archive FILE|-` ([`archive`], one JSON
//! line a session, schema in docs/archive.md) and whatever [`run_observed`]'s caller adds.

pub mod archive;
mod mesh;
pub mod peers;

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Cursor, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use clap::{ArgAction, Parser};
use owamp_core::control::{PortRange, Role};
use owamp_core::io::{Finished, StoredSession};
use owamp_core::owp::{self, OwpReader};
use owamp_core::session::Schedule;
use owamp_core::stats::report::{self, ReportContext, Scale};
use owamp_core::time::{Interval, OwampTime};
use owamp_core::wire::{SessionId, Slot, SlotKind, TypeP};
use owamp_os::rng::OsRng;
use owamp_os::store::{owp_header, sid_hex};
use owamp_std::control::{
    fetched_to_stored, ClientConnection, ClientOptions, SessionSpec, StopHandle,
};

use self::archive::ArchiveWriter;
pub use self::archive::{Direction, FinishedSession, SessionObserver};
use self::mesh::{Backoff, ConsoleWriter, Line};
use self::peers::{PeerKey, PeerLine};
use crate::args::{Hosts, PeerArgs};
use crate::client::{self, Family};
use crate::config::server::{check_facility, LOG_LEVELS};
use crate::metrics::powstream::{self as metrics, PowstreamMetrics};
use crate::owping;
use crate::owstats;
use crate::sys::Environment;

/// Packets per session by default (perfSONAR powstream).
pub const DEFAULT_PACKETS: u32 = 300;

/// Mean seconds between packets by default.
pub const DEFAULT_WAIT: f64 = 0.1;

/// Loss timeout by default, in seconds (powstream's, not owping's).
pub const DEFAULT_TIMEOUT: f64 = 10.0;

/// Seconds between attempts to set a session up after a failure, by default.
pub const DEFAULT_RETRY: u64 = 60;

/// Histogram bucket width of the summaries by default, in seconds.
pub const DEFAULT_BUCKET_WIDTH: f64 = 0.0001;

/// The most sessions (and control connections) set up ahead at once.
pub const MAX_IN_FLIGHT: usize = 32;

/// With several peers: the longest a test endpoint waits before it looks at its stop flag.
const MESH_POLL: Duration = Duration::from_millis(200);

/// The end delay assumed for a server that sends: perfSONAR owampd's default, and ours.
const SERVER_END_DELAY: Duration = Duration::from_secs(1);

/// The file that keeps two powstreams from writing into one directory (perfSONAR's name).
pub const LOCK_FILE: &str = ".powlock";

/// Command-line arguments (perfSONAR powstream's flags, plus `-X`).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "powstream",
    about = "Continuous one-way latency tests with an OWAMP server (perfSONAR powstream compatible)",
    override_usage = "powstream [arguments] testaddr [servaddr]\n       powstream [arguments] [testaddr] --peer peer... | --peers file",
    version = crate::man::VERSION,
    disable_version_flag = true,
    arg = crate::man::version_flag(),
    after_help = crate::man::VERSION_LINE,
    // getopt: a later occurrence of a flag wins.
    args_override_self = true
)]
pub struct Args {
    /// use IPv4 only
    #[arg(short = '4', help_heading = "Connection Args")]
    pub ipv4: bool,
    /// use IPv6 only
    #[arg(short = '6', help_heading = "Connection Args")]
    pub ipv6: bool,
    /// Modes accepted (`-A`): letters A, E, O.
    #[arg(
        help = "requested modes: [A]uthenticated, [E]ncrypted, [O]pen",
        short = 'A',
        value_name = "authmode",
        help_heading = "Connection Args"
    )]
    pub authmode: Option<String>,
    /// pass-phrase file to use with Authenticated/Encrypted modes
    #[arg(short = 'k', value_name = "pffile", help_heading = "Connection Args")]
    pub pfsfile: Option<PathBuf>,
    /// local address for the control connections and tests
    #[arg(short = 'S', value_name = "srcaddr", help_heading = "Connection Args")]
    pub srcaddr: Option<String>,
    /// specify the interface to use for control connection and tests
    #[arg(
        short = 'B',
        value_name = "interface",
        help_heading = "Connection Args"
    )]
    pub interface: Option<String>,
    /// username to use with Authenticated/Encrypted modes
    #[arg(short = 'u', value_name = "username", help_heading = "Connection Args")]
    pub username: Option<String>,
    /// largest PBKDF2 count accepted from a server (default 2^20)
    #[arg(
        long = "max-pbkdf2-count",
        value_name = "count",
        value_parser = clap::value_parser!(u32).range(1..),
        help_heading = "Connection Args"
    )]
    pub max_pbkdf2_count: Option<u32>,
    /// time to wait between failed connections (seconds, default 60)
    #[arg(
        short = 'I',
        value_name = "retryDelay",
        help_heading = "Connection Args"
    )]
    pub retry: Option<String>,

    /// number of test packets (per complete session)
    #[arg(
        short = 'c',
        value_name = "count",
        value_parser = crate::args::packet_count,
        allow_hyphen_values = true,
        default_value_t = DEFAULT_PACKETS,
        help_heading = "Test Args"
    )]
    pub count: u32,
    /// time a sender waits after its session before Stop-Sessions (seconds)
    #[arg(
        short = 'E',
        allow_hyphen_values = true,
        value_name = "endDelay",
        help_heading = "Test Args"
    )]
    pub enddelay: Option<String>,
    /// mean average time between packets (seconds, default 0.1)
    #[arg(
        short = 'i',
        allow_hyphen_values = true,
        value_name = "wait",
        help_heading = "Test Args"
    )]
    pub wait: Option<String>,
    /// maximum time to wait for a packet (seconds, default 10)
    #[arg(
        short = 'L',
        allow_hyphen_values = true,
        value_name = "timeout",
        help_heading = "Test Args"
    )]
    pub timeout: Option<String>,
    /// test port range to use (must contain at least 2 ports; 0 for any)
    #[arg(short = 'P', value_name = "portrange", help_heading = "Test Args")]
    pub ports: Option<String>,
    /// size of the padding added to each packet (bytes)
    #[arg(short = 's', value_name = "padding", help_heading = "Test Args")]
    pub padding: Option<u32>,
    /// sets the tests direction from client to server
    #[arg(short = 't', help_heading = "Test Args")]
    pub to: bool,
    /// time to wait before starting first test (seconds)
    #[arg(
        short = 'z',
        allow_hyphen_values = true,
        value_name = "delayStart",
        help_heading = "Test Args"
    )]
    pub delay_start: Option<String>,

    /// bucket width of the summary histograms (seconds)
    #[arg(short = 'b', value_name = "bucketWidth", help_heading = "Output Args")]
    pub bucket_width: Option<String>,
    /// directory to save session files in
    #[arg(short = 'd', value_name = "dir", help_heading = "Output Args")]
    pub dir: Option<PathBuf>,
    /// syslog facility (checked; messages go to standard error)
    #[arg(short = 'e', value_name = "facility", help_heading = "Output Args")]
    pub facility: Option<String>,
    /// log level: NONE, FATAL, WARN, INFO, DEBUG, ALL (checked, not used)
    #[arg(short = 'g', value_name = "loglevel", help_heading = "Output Args")]
    pub loglevel: Option<String>,
    /// number of test packets (per sub-session summary)
    #[arg(short = 'N', value_name = "count", help_heading = "Output Args")]
    pub sub_count: Option<u32>,
    /// print filenames to stdout
    #[arg(short = 'p', help_heading = "Output Args")]
    pub print_files: bool,
    /// no messages on standard error (perfSONAR: syslog only)
    #[arg(short = 'R', help_heading = "Output Args")]
    pub no_stderr: bool,
    /// include more verbose output
    #[arg(short = 'v', action = ArgAction::Count, help_heading = "Output Args")]
    pub verbose: u8,
    /// adds UNIX timestamps to summary results
    #[arg(short = 'U', help_heading = "Output Args")]
    pub unix: bool,
    /// `-j`: also write a JSON summary of each session.
    #[arg(
        short = 'j',
        help = "also write a JSON summary of each session (<start>_<end>.sum.json, owping --json shape)",
        help_heading = "Output Args"
    )]
    pub json: bool,
    /// run this many sessions, then exit (an extension; default: until interrupted)
    #[arg(
        short = 'X',
        long = "sessions",
        value_name = "count",
        help_heading = "Output Args"
    )]
    pub sessions: Option<u64>,

    /// serve Prometheus metrics (OpenMetrics text) at http://ADDR:PORT/metrics
    #[arg(
        long = "metrics",
        value_name = "addr:port",
        help_heading = "Output Args"
    )]
    pub metrics: Option<String>,

    /// `--archive`: the archive stream.
    #[arg(
        long = "archive",
        value_name = "file",
        help = "append one JSON line per finished session to file (- for standard output; see docs/archive.md)",
        help_heading = "Output Args"
    )]
    pub archive: Option<String>,

    /// `--peer`: one more peer (repeatable).
    #[arg(
        long = "peer",
        value_name = "peer",
        action = ArgAction::Append,
        help = "measure to this peer too: \"host[:port] [key=value ...]\" as a --peers line (repeatable; files go to <dir>/<peer-name>/)",
        help_heading = "Peer Args"
    )]
    pub peers_arg: Vec<String>,
    /// `--peers`: a file of peers.
    #[arg(
        long = "peers",
        value_name = "file",
        help = "measure to the peers of file: one \"host[:port] [key=value ...]\" a line, keys mode, user, interval, count, dscp, direction, timeout",
        help_heading = "Peer Args"
    )]
    pub peers_file: Option<PathBuf>,

    /// The peer (`host`, `host:port`, a bracketed IPv6 address with a port).
    #[arg(
        help = "the host to test with: host, host:port, [v6addr]:port",
        value_name = "testaddr"
    )]
    pub testaddr: Option<String>,
    /// the server to contact, when not testaddr (it must have the same address)
    #[arg(value_name = "servaddr", requires = "testaddr")]
    pub servaddr: Option<String>,
}

impl Args {
    /// The operands as owping's [`PeerArgs`], when there is a test address.
    fn peer_args(&self) -> Option<PeerArgs> {
        Some(PeerArgs {
            testaddr: self.testaddr.clone()?,
            servaddr: self.servaddr.clone(),
        })
    }

    /// Whether several peers are asked for (`--peer` or `--peers`): each then has its own
    /// directory under `-d`.
    pub fn several_peers(&self) -> bool {
        !self.peers_arg.is_empty() || self.peers_file.is_some()
    }
}

/// Everything powstream needs from the command line, checked.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) args: Args,
    pub(crate) test: client::HostSpec,
    pub(crate) serv: client::HostSpec,
    pub(crate) serv_name: String,
    pub(crate) family: Family,
    pub(crate) role: Role,
    pub(crate) spec: SessionSpec,
    pub(crate) end_delay: Option<Duration>,
    pub(crate) delay_start: Duration,
    pub(crate) retry: Duration,
    pub(crate) bucket_width: f64,
    pub(crate) sub_count: u32,
    pub(crate) ports: Option<PortRange>,
    /// The peer as the archive names it: the test address as written, or with several peers
    /// its directory name.
    pub(crate) peer: String,
    /// With several peers: each log line starts with the peer's name, and a failing peer
    /// backs off exponentially.
    pub(crate) several: bool,
}

fn positive_seconds(flag: char, s: &str, allow_zero: bool) -> Result<f64, String> {
    match s.parse::<f64>() {
        // The value becomes a Duration: one too large for it is refused here.
        Ok(v)
            if v.is_finite()
                && (v > 0.0 || (allow_zero && v == 0.0))
                && Duration::try_from_secs_f64(v).is_ok() =>
        {
            Ok(v)
        }
        _ => Err(format!("Invalid (-{flag}) value. Positive float expected")),
    }
}

pub(crate) fn plan(args: Args) -> Result<Plan, String> {
    let family = client::family(args.ipv4, args.ipv6)?;
    if let Some(f) = &args.facility {
        check_facility(f).map_err(|e| format!("Invalid -e: Syslog facility \"{f}\": {e}"))?;
    }
    if let Some(l) = &args.loglevel {
        let lower = l.to_ascii_lowercase();
        if lower != "warn" && !LOG_LEVELS.contains(&lower.as_str()) {
            return Err(format!("Log level \"{l}\" invalid"));
        }
    }
    if args.count == 0 {
        return Err("Invalid value. Positive integer expected".into());
    }
    let wait = match &args.wait {
        Some(s) => positive_seconds('i', s, false)?,
        None => DEFAULT_WAIT,
    };
    let mean = owping::seconds_to_interval(wait)
        .filter(|&m| m > Interval::ZERO)
        .ok_or("Invalid (-i) value. Positive float expected")?;
    let timeout = match &args.timeout {
        // It goes into the request as 32.32 seconds.
        Some(s) => Some(positive_seconds('L', s, false)?)
            .filter(|&v| {
                owping::seconds_to_interval(v).is_some_and(|f| f.raw() >> 32 < u64::from(u32::MAX))
            })
            .ok_or("Invalid (-L) value. Positive float expected")?,
        None => DEFAULT_TIMEOUT,
    };
    let end_delay = match &args.enddelay {
        Some(s) => Some(Duration::from_secs_f64(positive_seconds('E', s, false)?)),
        None => None,
    };
    let delay_start = match &args.delay_start {
        Some(s) => Duration::from_secs_f64(positive_seconds('z', s, true)?),
        None => Duration::ZERO,
    };
    let retry = match &args.retry {
        Some(s) => Duration::from_secs(
            s.parse::<u64>()
                .map_err(|_| "Invalid (-I) value. Positive integer expected".to_string())?,
        ),
        None => Duration::from_secs(DEFAULT_RETRY),
    };
    let bucket_width = match &args.bucket_width {
        Some(s) => positive_seconds('b', s, false)?,
        None => DEFAULT_BUCKET_WIDTH,
    };
    let sub_count = args.sub_count.unwrap_or(0);
    if sub_count > 0 && (sub_count > args.count || args.count % sub_count != 0) {
        return Err(format!(
            "Number of summary packets (-N {sub_count}) must be a divisor of the number of session packets (-c {})",
            args.count
        ));
    }
    let ports = match &args.ports {
        Some(p) => owping::parse_ports(p)?,
        None => Some(owping::DEFAULT_TEST_PORTS),
    };
    if let Some(r) = ports {
        if r.high.saturating_sub(r.low) < 1 {
            return Err("Invalid test port range specified: must contain at least 2 ports.".into());
        }
    }
    if args.sessions == Some(0) {
        return Err("Invalid (-X) value. Positive integer expected".into());
    }
    let padding = args.padding.unwrap_or(0).min(owping::MAX_PADDING);
    let Hosts {
        test,
        serv,
        serv_name,
    } = args
        .peer_args()
        .ok_or("No test peer: give testaddr, --peer or --peers")?
        .hosts()?;
    let role = if args.to {
        Role::Sender
    } else {
        Role::Receiver
    };
    let spec = SessionSpec {
        packets: args.count,
        slots: vec![Slot {
            kind: SlotKind::Exponential,
            mean,
        }],
        padding,
        timeout: Duration::from_secs_f64(timeout),
        dscp: 0,
    };
    let peer = args.testaddr.clone().unwrap_or_default();
    Ok(Plan {
        peer,
        several: false,
        args,
        test,
        serv,
        serv_name,
        family,
        role,
        spec,
        end_delay,
        delay_start,
        retry,
        bucket_width,
        sub_count,
        ports,
    })
}

/// The name of a session file without its extension: start and end in the 64-bit NTP format,
/// zero-padded decimal, as perfSONAR names them.
pub fn base_name(start: OwampTime, end: OwampTime) -> String {
    format!("{:020}_{:020}", start.raw(), end.raw())
}

/// The packet ranges of the `-N` sub-session summaries of a session of `count` packets, with
/// the times their files are named by: from the scheduled send time of the last packet of the
/// previous range (the session start for the first) to that of their own last packet. Ranges
/// beyond packet `last_seq` (a session stopped early) are left out.
pub fn sub_sessions(
    schedule: &Schedule,
    start: OwampTime,
    sub: u32,
    last_seq: u32,
) -> Vec<(u32, u32, OwampTime, OwampTime)> {
    let count = schedule.count();
    let mut v = Vec::new();
    if sub == 0 || sub >= count {
        return v;
    }
    let mut it = schedule.iter();
    let mut from = start;
    let mut first = 0u32;
    while first < count && first <= last_seq {
        let last = first.saturating_add(sub).min(count);
        if it.advance_to(last - 1).is_none() {
            break;
        }
        let Some(p) = it.next() else { break };
        let to = p.send_time(start);
        v.push((first, last, from, to));
        from = to;
        first = last;
    }
    v
}

/// The lock on the output directory: perfSONAR's `.powlock`, locked with fcntl as powstream
/// locks it and holding the pid as it writes it (the native bytes of an int).
struct DirLock {
    _file: File,
}

impl DirLock {
    fn take(path: &Path) -> Result<Self, String> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| format!("open({}): {e}", path.display()))?;
        // SAFETY: an all-zero flock is a valid value; the fields that matter are set below.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_WRLCK as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        // SAFETY: F_SETLK reads the flock we own, on a descriptor `file` keeps open.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &fl) };
        if rc != 0 {
            let why = std::io::Error::last_os_error();
            let mut pid = [0u8; 4];
            let holder = file
                .read_exact(&mut pid)
                .map(|()| format!(" (possibly locked by pid {})", i32::from_ne_bytes(pid)))
                .unwrap_or_default();
            return Err(format!(
                "Unable to lock file {}: {why}{holder}",
                path.display()
            ));
        }
        let pid = std::process::id() as i32;
        file.set_len(0)
            .and_then(|()| file.write_all(&pid.to_ne_bytes()))
            .map_err(|e| format!("Unable to write to lockfile: {e}"))?;
        Ok(Self { _file: file })
    }
}

/// One session set up: its control connection, and when it runs.
struct Pending {
    conn: ClientConnection,
    sid: SessionId,
    schedule: Schedule,
    start: OwampTime,
    /// The scheduled send time of its last packet: where the next session starts.
    end: OwampTime,
    /// This host's test address and port.
    local: std::net::SocketAddr,
    /// The peer's.
    remote: std::net::SocketAddr,
}

/// Whether an error writing a file is one to wait out (the next session may fare better), as
/// perfSONAR's powstream tells them apart; others (permissions) stop it.
fn is_temporary(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOSPC | libc::EDQUOT | libc::ENOMEM | libc::EMFILE | libc::ENFILE)
    )
}

/// Why a session's files could not all be written.
#[derive(Debug)]
enum SaveError {
    /// Writing a file (or standard output) failed.
    Write(String, std::io::Error),
    /// The session's data could not be encoded or summarized.
    Other(String),
}

impl SaveError {
    fn other(e: impl std::fmt::Display) -> Self {
        SaveError::Other(e.to_string())
    }
}

/// What [`Stream::save`] wrote.
#[derive(Default)]
struct Saved {
    /// The .owp file.
    owp: Option<PathBuf>,
    /// The end time in its name.
    end: Option<OwampTime>,
    /// The JSON summary, when -j or an observer wants it.
    summary: Option<serde_json::Value>,
}

/// Writes a file under a temporary name and renames it into place.
fn put(path: &Path, bytes: &[u8]) -> Result<(), SaveError> {
    owstats::write_atomically(path, bytes)
        .map_err(|e| SaveError::Write(path.display().to_string(), e))
}

/// The running stream of one peer.
struct Stream<'a> {
    p: &'a Plan,
    /// Told of every finished session.
    observers: &'a [&'a dyn SessionObserver],
    /// Set when powstream must stop for another reason than a signal (standard output failed).
    abort: &'a AtomicBool,
    /// With several peers: the growing wait after each failure to set a session up.
    backoff: Option<Backoff>,
    opts: ClientOptions,
    /// Warnings of the test endpoints, printed after each request.
    warnings: client::Warnings,
    env: &'a dyn Environment,
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
    stop: &'a StopHandle,
    /// Time from connect to Server-Start of the last connection.
    rtt: Duration,
    queue: VecDeque<Pending>,
    /// Where the stream goes on: the end of the last session set up.
    next_start: Option<OwampTime>,
    first: bool,
    /// Sessions set up, or tried, so far (what `-X` bounds).
    planned: u64,
    /// Sessions saved.
    saved: u64,
    /// No attempt to set a session up before this, after a failure.
    retry_at: Option<Instant>,
    /// A write error that stops powstream.
    fatal: bool,
    /// `--metrics`: the sessions' outcomes and numbers (owamp-cli/src/metrics).
    metrics: Option<&'a PowstreamMetrics>,
}

impl Stream<'_> {
    fn log(&mut self, msg: &str) {
        if !self.p.args.no_stderr {
            let pid = std::process::id();
            let _ = if self.p.several {
                writeln!(self.err, "powstream[{pid}]: {}: {msg}", self.p.peer)
            } else {
                writeln!(self.err, "powstream[{pid}]: {msg}")
            };
        }
    }

    fn done_planning(&self) -> bool {
        self.p.args.sessions.is_some_and(|n| self.planned >= n)
    }

    /// How long after a session's last packet its results come: the loss timeout and the
    /// sender's end delay.
    fn tail(&self) -> Duration {
        let end_delay = match self.p.role {
            Role::Sender => self.opts.control.end_delay,
            Role::Receiver => SERVER_END_DELAY,
        };
        self.p.spec.timeout.saturating_add(end_delay)
    }

    /// Time to allow for the Stop-Sessions exchange, a fetch, writing the files and setting
    /// the next session up.
    fn slack(&self) -> Duration {
        self.rtt
            .saturating_mul(6)
            .saturating_add(Duration::from_millis(1500))
    }

    /// Whether another session must be set up now: once the oldest one's results are in (which
    /// is when this program next gets to set one up), the newest one must still be far enough
    /// from its end for the next one to be requested in time.
    fn needs_more(&self) -> bool {
        match (self.queue.front(), self.queue.back()) {
            (Some(f), Some(b)) => {
                b.end
                    < f.end
                        .saturating_add(self.tail().saturating_add(self.slack()))
            }
            _ => true,
        }
    }

    fn run(&mut self) -> i32 {
        loop {
            if self.abort.load(Ordering::SeqCst) {
                self.fatal = true;
            }
            if self.stop.is_stopped() || self.fatal {
                break;
            }
            self.fill();
            let Some(front) = self.queue.pop_front() else {
                if self.done_planning() {
                    break;
                }
                self.pause_for_retry();
                continue;
            };
            self.finish(front);
        }
        // Interrupted (or a fatal error): stop what is under way, keeping what was received.
        let interrupted = self.stop.is_stopped();
        self.stop.stop();
        while let Some(s) = self.queue.pop_front() {
            self.finish(s);
        }
        // A bounded run that saved nothing has failed.
        let nothing = self.p.args.sessions.is_some() && self.saved == 0 && !interrupted;
        if self.fatal || nothing {
            1
        } else {
            0
        }
    }

    /// Sets sessions up until enough are ahead.
    fn fill(&mut self) {
        while !self.stop.is_stopped()
            && !self.done_planning()
            && self.queue.len() < MAX_IN_FLIGHT
            && self.retry_at.map_or(true, |t| Instant::now() >= t)
            && self.needs_more()
        {
            match self.setup() {
                Some(s) => {
                    if self.p.args.verbose > 0 {
                        let msg = format!(
                            "Session {} set up (SID {})",
                            base_name(s.start, s.end),
                            sid_hex(&s.sid).to_ascii_lowercase()
                        );
                        self.log(&msg);
                    }
                    self.next_start = Some(s.end);
                    self.planned += 1;
                    self.retry_at = None;
                    if let Some(b) = &mut self.backoff {
                        b.reset();
                    }
                    self.queue.push_back(s);
                }
                None => {
                    self.metrics_session_end(None);
                    // A session that could not be set up counts against -X too, so that an
                    // unreachable server cannot keep a bounded run going.
                    self.planned += 1;
                    // perfSONAR waits the retry delay, shortened to a session's duration.
                    let session = Duration::try_from_secs_f64(
                        f64::from(self.p.spec.packets) * self.mean_wait(),
                    )
                    .unwrap_or(Duration::MAX);
                    // Never a busy loop, even with -I 0.
                    let wait = match &mut self.backoff {
                        Some(b) => {
                            let wait = b.next_delay(&mut OsRng);
                            if !self.done_planning() {
                                let msg = format!("retrying in {:.1} seconds", wait.as_secs_f64());
                                self.log(&msg);
                            }
                            wait
                        }
                        None => self.p.retry.min(session),
                    }
                    .max(Duration::from_millis(100));
                    self.retry_at = Some(Instant::now() + wait);
                    break;
                }
            }
        }
    }

    fn mean_wait(&self) -> f64 {
        self.p.spec.slots[0].mean.as_secs_f64()
    }

    /// Nothing under way and setting up failed: wait for the retry time (or a signal).
    fn pause_for_retry(&mut self) {
        let until = self
            .retry_at
            .unwrap_or_else(|| Instant::now() + Duration::from_millis(100));
        while !self.stop.is_stopped() && !self.abort.load(Ordering::SeqCst) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }

    /// Opens a control connection and sets one session up on it, starting where the stream
    /// is, or afresh when that is too close (a gap in the stream).
    fn setup(&mut self) -> Option<Pending> {
        let p = self.p;
        let addrs = match client::resolve(&p.serv, p.family) {
            Ok(a) => a,
            Err(e) => {
                self.log(&e);
                return None;
            }
        };
        let mut msgs = Vec::new();
        let connected = client::open_control(
            "powstream",
            &addrs,
            p.args.srcaddr.as_deref(),
            &p.serv_name,
            &p.serv.node,
            &self.opts,
            &mut msgs,
        );
        for line in String::from_utf8_lossy(&msgs).lines() {
            let line = line.strip_prefix("powstream: ").unwrap_or(line).to_owned();
            self.log(&line);
        }
        let connected = connected?;
        self.rtt = connected.rtt_bound;
        let mut conn = connected.conn;
        if self.stop.is_stopped() {
            conn.close();
            return None;
        }
        let now = conn.now();
        // A request and Start-Sessions must be done before the start.
        let min_lead = self.rtt * 2 + Duration::from_millis(200);
        let start = match self.next_start {
            Some(s) if s >= now.saturating_add(min_lead) => s,
            prev => {
                let mut lead = self.rtt * 2 + Duration::from_secs(1);
                if self.first {
                    lead = lead.saturating_add(p.delay_start);
                }
                let fresh = now.saturating_add(lead);
                if let Some(s) = prev {
                    let msg = format!(
                        "The next session could not be set up in time: the stream has a gap of {:.3} seconds",
                        fresh.diff_secs_f64(s)
                    );
                    self.log(&msg);
                }
                fresh
            }
        };
        let info = match conn.request_session(p.role, &p.spec, start) {
            Ok(i) => i,
            Err(e) => {
                self.log(&client::request_failure(&e));
                conn.close();
                return None;
            }
        };
        for w in self.warnings.take() {
            self.log(&format!("warning: {w}"));
        }
        if self.stop.is_stopped() {
            conn.close();
            return None;
        }
        if let Err(e) = conn.start() {
            let msg = format!("Start-Sessions failed: {e}");
            self.log(&msg);
            return None;
        }
        self.first = false;
        let schedule = match Schedule::new(info.sid, &p.spec.slots, p.spec.packets) {
            Ok(s) => s,
            Err(e) => {
                self.log(&e.to_string());
                conn.close();
                return None;
            }
        };
        let end = schedule
            .send_time(start, p.spec.packets - 1)
            .unwrap_or(start);
        Some(Pending {
            conn,
            sid: info.sid,
            schedule,
            start,
            end,
            local: info.local,
            remote: info.peer,
        })
    }

    /// Waits for a session's end (or stops it, once interrupted), collects its records,
    /// saves them and tells the observers.
    fn finish(&mut self, mut s: Pending) {
        let sid = sid_hex(&s.sid).to_ascii_lowercase();
        let mut partial = true;
        // The first thing that went wrong, for the observers (each is also logged).
        let mut error: Option<String> = None;
        let mut fail = |this: &mut Self, msg: String| {
            this.log(&msg);
            error.get_or_insert(msg);
        };
        let data = match s.conn.wait(Some(self.stop)) {
            Err(e) => {
                fail(self, format!("Test session {sid} failed: {e}"));
                None
            }
            Ok(end) => {
                partial = end.stopped_early || !end.complete;
                if !end.complete && !end.stopped_early {
                    let msg = format!(
                        "Test session {sid} failed{}",
                        end.closed
                            .as_ref()
                            .map(|r| format!(" ({r:?})"))
                            .unwrap_or_default()
                    );
                    fail(self, msg);
                }
                match self.p.role {
                    Role::Receiver => {
                        let found = end.received.into_iter().find(|r| r.request.sid == s.sid);
                        if found.is_none() {
                            fail(self, format!("No records for session {sid}"));
                        }
                        found
                    }
                    Role::Sender if end.complete => match s.conn.fetch(s.sid, 0, u32::MAX) {
                        Ok(f) => Some(fetched_to_stored(f)),
                        Err(e) => {
                            fail(self, format!("Unable to fetch data for sid({sid}): {e}"));
                            None
                        }
                    },
                    Role::Sender => {
                        let msg = format!(
                            "Unable to fetch data for sid({sid}): the test did not end normally"
                        );
                        fail(self, msg);
                        None
                    }
                }
            }
        };
        s.conn.close();
        let mut saved = Saved::default();
        if let Some(d) = &data {
            partial = partial || d.finished != Finished::Normal;
            let r = self.save(&s.schedule, s.start, s.end, d, partial);
            self.metrics_session_end(r.is_ok().then_some(d));
            match r {
                Ok(done) => saved = done,
                Err(SaveError::Write(what, e)) => {
                    fail(self, format!("{what}: {e}"));
                    // Permissions and the like will not get better: stop (as perfSONAR does).
                    if !is_temporary(&e) {
                        self.fatal = true;
                    }
                }
                Err(SaveError::Other(e)) => fail(self, format!("Session {sid}: {e}")),
            }
        } else {
            self.metrics_session_end(None);
        }
        if self.observers.is_empty() {
            return;
        }
        if partial && error.is_none() {
            error = Some(if self.stop.is_stopped() {
                "stopped early: powstream was interrupted".to_owned()
            } else {
                "the session did not end normally".to_owned()
            });
        }
        let (direction, source, destination) = match self.p.role {
            Role::Sender => (Direction::To, s.local, s.remote),
            Role::Receiver => (Direction::From, s.remote, s.local),
        };
        let done = FinishedSession {
            peer: self.p.peer.clone(),
            direction,
            sid: s.sid,
            source: Some(source),
            destination: Some(destination),
            start: s.start,
            end: saved.end.unwrap_or(s.end),
            file: saved.owp,
            complete: !partial && error.is_none(),
            error,
            summary: saved.summary,
        };
        for o in self.observers {
            o.session_finished(&done);
        }
    }

    /// `--metrics`: a session ended, with its files saved (`Some`) or not.
    fn metrics_session_end(&self, saved: Option<&StoredSession>) {
        if let Some(m) = self.metrics {
            let peer = metrics::peer_label(&self.p.serv.node, self.p.serv.port);
            let direction = metrics::Direction::of(self.p.role);
            m.session_end(&peer, direction, saved, self.p.bucket_width);
        }
    }

    /// Writes a session's files: the sub-session summaries (-N), the data, its summary and
    /// (-j) its JSON summary; prints their names (-p) in that order, as perfSONAR does.
    fn save(
        &mut self,
        schedule: &Schedule,
        start: OwampTime,
        end: OwampTime,
        d: &StoredSession,
        partial: bool,
    ) -> Result<Saved, SaveError> {
        let p = self.p;
        let Some(last_seq) = d.records.iter().map(|r| r.seq).max() else {
            if p.args.verbose > 0 {
                let msg = format!("No data - skip writing session {}", base_name(start, end));
                self.log(&msg);
            }
            return Ok(Saved::default());
        };
        // A session cut short ends, in its name, at the last packet it holds.
        let end = if partial {
            schedule
                .send_time(start, last_seq.min(p.spec.packets - 1))
                .unwrap_or(end)
                .min(end)
        } else {
            end
        };
        let base = base_name(start, end);
        let path = |name: String| match &p.args.dir {
            Some(dir) => dir.join(name),
            None => PathBuf::from(name),
        };
        let bytes = owp::to_bytes(&owp_header(d), &d.records).map_err(SaveError::other)?;
        let owp_path = path(format!("{base}.owp"));
        put(&owp_path, &bytes)?;
        self.saved += 1;

        let r = &d.request;
        let env = self.env;
        let time = |secs| env.local_time(secs);
        let ctx = ReportContext {
            from: owstats::peer(env, r.sender_address, r.sender_port),
            to: owstats::peer(env, r.receiver_address, r.receiver_port),
            scale: Scale::Milliseconds,
            unix_timestamps: p.args.unix,
            time: &time,
        };
        let reader = || OwpReader::new(Cursor::new(bytes.as_slice())).map_err(SaveError::other);
        let mut names = Vec::new();

        let subs = sub_sessions(schedule, start, p.sub_count, last_seq);
        if !subs.is_empty() {
            let mut rd = reader()?;
            let mut stats = owstats::stats_for(&rd, p.bucket_width).map_err(SaveError::other)?;
            let mut begin = 0u64;
            for (first, last, from, to) in subs {
                let (sum, next) = owstats::summarize_range(
                    &mut rd,
                    &mut stats,
                    begin,
                    (first, Some(last)),
                    0,
                    |_| Ok(()),
                )
                .map_err(SaveError::other)?;
                begin = next;
                // Like the session's, the name of a range cut short ends at the last packet.
                let name = path(format!("{}.sum", base_name(from, to.min(end))));
                put(&name, report::machine(&sum, rd.header(), &ctx).as_bytes())?;
                names.push(name);
            }
        }
        let owp_index = names.len();
        names.push(owp_path);

        let mut rd = reader()?;
        let mut stats = owstats::stats_for(&rd, p.bucket_width).map_err(SaveError::other)?;
        let (sum, _) = owstats::summarize_range(&mut rd, &mut stats, 0, (0, None), 0, |_| Ok(()))
            .map_err(SaveError::other)?;
        let sum_path = path(format!("{base}.sum"));
        put(
            &sum_path,
            report::machine(&sum, rd.header(), &ctx).as_bytes(),
        )?;
        names.push(sum_path);

        let mut summary = None;
        if p.args.json || !self.observers.is_empty() {
            let direction = match p.role {
                Role::Sender => "to",
                Role::Receiver => "from",
            };
            summary = Some(
                owstats::json_summary(
                    Some(direction),
                    reader()?,
                    &ctx.from,
                    &ctx.to,
                    p.bucket_width,
                )
                .map_err(SaveError::other)?,
            );
        }
        if let (true, Some(v)) = (p.args.json, &summary) {
            let json_path = path(format!("{base}.sum.json"));
            let text = serde_json::to_string_pretty(&v).unwrap_or_default() + "\n";
            put(&json_path, text.as_bytes())?;
            names.push(json_path);
        }

        if p.args.print_files {
            let stdout = |e| SaveError::Write("standard output".into(), e);
            for n in &names {
                writeln!(self.out, "{}", n.display()).map_err(stdout)?;
            }
            self.out.flush().map_err(stdout)?;
        }
        Ok(Saved {
            owp: Some(names.swap_remove(owp_index)),
            end: Some(end),
            summary,
        })
    }
}

/// Runs powstream with `argv` (program name first) until it is done (`-X`), `stop` is set
/// (the caller sets it on SIGINT/SIGTERM) or a fatal error. Returns the exit status: 0, or 1
/// for a bad command line or a fatal error (with several peers: of any peer).
pub fn run(
    argv: impl IntoIterator<Item = OsString>,
    out: &mut dyn Write,
    err: &mut dyn Write,
    env: &(dyn Environment + Sync),
    stop: &StopHandle,
) -> i32 {
    run_observed(argv, out, err, env, stop, &[])
}

/// [`run`], telling `observers` (after the archive of `--archive`, if any) of every finished
/// session of every peer. See [`SessionObserver`] for what they must do.
pub fn run_observed(
    argv: impl IntoIterator<Item = OsString>,
    out: &mut dyn Write,
    err: &mut dyn Write,
    env: &(dyn Environment + Sync),
    stop: &StopHandle,
    observers: &[&dyn SessionObserver],
) -> i32 {
    let args = match client::parse_args(argv, err) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let plans = match plans(args) {
        Ok(p) => p,
        Err(m) => return client::usage_error::<Args>("powstream", err, &m),
    };
    let r = start(&plans, out, err, env, stop, observers);
    client::exit_status("powstream", r, err)
}

/// The plan of each peer: the operands' one alone, or with `--peer` and `--peers` one per
/// peer (the operands' first), each with its own directory under `-d`.
pub(crate) fn plans(args: Args) -> Result<Vec<Plan>, String> {
    if !args.several_peers() {
        return Ok(vec![plan(args)?]);
    }
    let mut lines = Vec::new();
    if let Some(t) = &args.testaddr {
        lines.push(PeerLine {
            origin: "testaddr".into(),
            host: t.clone(),
            settings: Vec::new(),
        });
    }
    for v in &args.peers_arg {
        let origin = format!("--peer \"{v}\"");
        lines.extend(peers::parse_line(&origin, v)?);
    }
    if let Some(f) = &args.peers_file {
        lines.extend(peers::read_file(f)?);
    }
    if lines.is_empty() {
        return Err("No test peer: give testaddr, --peer or --peers".into());
    }
    if lines.len() > peers::MAX_PEERS {
        return Err(format!("More than {} peers", peers::MAX_PEERS));
    }
    let base = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let mut plans: Vec<Plan> = Vec::with_capacity(lines.len());
    for line in lines {
        let at = |e: String| format!("{}: {e}", line.origin);
        let mut a = args.clone();
        a.peers_arg.clear();
        if line.origin != "testaddr" {
            a.testaddr = Some(line.host.clone());
            a.servaddr = None;
        }
        let mut dscp = 0;
        for (key, v) in &line.settings {
            match key {
                PeerKey::Mode => {
                    client::parse_authmode(Some(v)).map_err(at)?;
                    a.authmode = Some(v.clone());
                }
                PeerKey::User => a.username = Some(v.clone()),
                PeerKey::Interval => a.wait = Some(v.clone()),
                PeerKey::Count => a.count = crate::args::packet_count(v).map_err(at)?,
                PeerKey::Dscp => {
                    dscp = owping::parse_dscp(v).map_err(at)?;
                    if TypeP::from_dscp(dscp).is_none() {
                        return Err(at(format!("Invalid DSCP value \"{v}\"")));
                    }
                }
                PeerKey::Direction => a.to = v == "to",
                PeerKey::Timeout => a.timeout = Some(v.clone()),
            }
        }
        let mut p = plan(a).map_err(at)?;
        p.spec.dscp = dscp;
        p.several = true;
        p.peer = peers::dir_name(&p.test);
        if let Some(other) = plans.iter().find(|o| o.peer == p.peer) {
            return Err(at(format!(
                "peer {} is given twice (its directory name {} again)",
                line.host, other.peer
            )));
        }
        p.args.dir = Some(base.join(&p.peer));
        plans.push(p);
    }
    Ok(plans)
}

/// What a peer's stream needs besides its plan, made before any thread starts.
struct Prepared {
    opts: ClientOptions,
    warnings: client::Warnings,
    _lock: DirLock,
}

/// Checks a peer's options, takes its directory and resolves its server.
fn prepare(p: &Plan, err: &mut dyn Write) -> Result<Prepared, String> {
    let a = &p.args;
    let mut opts = client::client_options(
        "powstream",
        a.authmode.as_deref(),
        a.username.as_deref(),
        a.pfsfile.as_deref(),
        a.interface.as_deref(),
        err,
    )?;
    if let Some(n) = a.max_pbkdf2_count {
        opts.control.max_kdf_count = n;
    }
    if p.several {
        if let Some(d) = &a.dir {
            std::fs::create_dir_all(d).map_err(|e| format!("mkdir({}): {e}", d.display()))?;
        }
    }
    let lock_path = match &a.dir {
        Some(d) => d.join(LOCK_FILE),
        None => PathBuf::from(LOCK_FILE),
    };
    let lock = DirLock::take(&lock_path)?;
    // A name that does not resolve now is a mistake, not a network problem to wait out; but
    // of many peers, one whose name does not resolve is retried like any failing peer.
    if !p.several {
        let test = a.servaddr.as_ref().map(|_| &p.test);
        client::resolve_server(&p.serv, test, p.family)?;
    }
    if let Some(d) = p.end_delay {
        opts.control.end_delay = d;
    }
    opts.test_ports = p.ports;
    if p.several {
        // Many sessions at once on one host: endpoints wake less often (a stop is noticed
        // within MESH_POLL), and senders neither spin nor use a timer of their own, as
        // owampd's do; each packet is stamped with the time it left, so no delay is wrong.
        opts.endpoint.poll_interval = MESH_POLL;
        opts.endpoint.max_spin = Duration::ZERO;
        opts.endpoint.fine_timer = false;
    }
    let warnings = client::Warnings::default();
    warnings.install(&mut opts);
    Ok(Prepared {
        opts,
        warnings,
        _lock: lock,
    })
}

/// Opens the archive of `--archive`.
fn open_archive(a: &Args, tx: &SyncSender<Line>) -> Result<Option<ArchiveWriter>, String> {
    let Some(target) = a.archive.as_deref() else {
        return Ok(None);
    };
    let quiet = a.no_stderr;
    let etx = tx.clone();
    let on_error = Box::new(move |m: String| {
        if !quiet {
            let line = format!("powstream[{}]: {m}\n", std::process::id());
            let _ = etx.send(Line::Err(line.into_bytes()));
        }
    });
    if target == "-" {
        let otx = tx.clone();
        let lines = Box::new(move |l: String| {
            let _ = otx.send(Line::Out(l.into_bytes()));
        });
        return Ok(Some(ArchiveWriter::to_lines(lines, on_error)));
    }
    ArchiveWriter::append_to(Path::new(target), on_error)
        .map(Some)
        .map_err(|e| format!("{target}: {e}"))
}

/// Runs every peer's stream on a thread of its own while this one writes their messages.
fn start(
    plans: &[Plan],
    out: &mut dyn Write,
    err: &mut dyn Write,
    env: &(dyn Environment + Sync),
    stop: &StopHandle,
    extra: &[&dyn SessionObserver],
) -> Result<i32, String> {
    let first = &plans.first().ok_or("No test peer")?.args;
    let mut prepared = Vec::with_capacity(plans.len());
    for p in plans {
        let r = prepare(p, err);
        prepared.push(r.map_err(|e| {
            if p.several {
                format!("{}: {e}", p.peer)
            } else {
                e
            }
        })?);
    }
    // One registry and endpoint for the process, every peer's series in it.
    let metrics = match &first.metrics {
        Some(addr) => Some(PowstreamMetrics::serve(addr).map_err(|e| e.to_string())?),
        None => None,
    };
    let (tx, rx) = mesh::console();
    let archive = open_archive(first, &tx)?;
    let mut observers: Vec<&dyn SessionObserver> = Vec::new();
    if let Some(a) = &archive {
        observers.push(a);
    }
    observers.extend_from_slice(extra);
    if client::clock_unsynchronized() && !first.no_stderr {
        let _ = writeln!(
            err,
            "powstream[{}]: {}",
            std::process::id(),
            client::NTP_UNSYNC
        );
    }
    let abort = AtomicBool::new(false);
    let peer_stops: Vec<StopHandle> = plans.iter().map(|_| StopHandle::new()).collect();
    let codes = std::thread::scope(|scope| {
        let mut handles = Vec::with_capacity(plans.len());
        let mut codes = Vec::with_capacity(plans.len());
        for ((p, prep), pstop) in plans.iter().zip(prepared).zip(&peer_stops) {
            let (otx, etx) = (tx.clone(), tx.clone());
            let (observers, abort, metrics) = (&observers, &abort, metrics.as_ref());
            let spawned = std::thread::Builder::new()
                .name(format!("powstream {}", p.peer))
                .spawn_scoped(scope, move || {
                    let mut o = ConsoleWriter::out(otx);
                    let mut e = ConsoleWriter::err(etx);
                    let code = run_stream(
                        p, prep, env, &mut o, &mut e, pstop, observers, abort, metrics,
                    );
                    let _ = o.flush();
                    let _ = e.flush();
                    code
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    let _ = writeln!(err, "powstream: no thread for {}: {e}", p.peer);
                    abort.store(true, Ordering::SeqCst);
                    codes.push(1);
                }
            }
        }
        drop(tx);
        let running = || handles.iter().any(|h| !h.is_finished());
        mesh::serve(&rx, out, err, stop, &peer_stops, &running, &abort);
        codes.extend(handles.into_iter().map(|h| h.join().unwrap_or(1)));
        codes
    });
    Ok(codes.into_iter().max().unwrap_or(1))
}

/// Runs one peer's stream; its exit status.
#[allow(clippy::too_many_arguments)]
fn run_stream(
    p: &Plan,
    prep: Prepared,
    env: &dyn Environment,
    out: &mut dyn Write,
    err: &mut dyn Write,
    stop: &StopHandle,
    observers: &[&dyn SessionObserver],
    abort: &AtomicBool,
    metrics: Option<&PowstreamMetrics>,
) -> i32 {
    let Prepared {
        opts,
        warnings,
        _lock,
    } = prep;
    let mut s = Stream {
        p,
        observers,
        abort,
        backoff: p.several.then(|| Backoff::new(p.retry)),
        opts,
        warnings,
        env,
        out,
        err,
        stop,
        rtt: Duration::ZERO,
        queue: VecDeque::new(),
        next_start: None,
        first: true,
        planned: 0,
        saved: 0,
        retry_at: None,
        fatal: false,
        metrics,
    };
    // How many sessions must be under way at once to keep the stream without gaps.
    let session = f64::from(p.spec.packets) * s.mean_wait();
    let ahead = s.tail().saturating_add(s.slack()).as_secs_f64() / session;
    if ahead.ceil() as usize + 1 > MAX_IN_FLIGHT {
        let msg = format!(
            "Warning: Holes in data are likely because lossThreshold({}) is too large a fraction of approx summary session duration({session:.3})",
            p.spec.timeout.as_secs_f64()
        );
        s.log(&msg);
    }
    s.run()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Args {
        Args::try_parse_from(v.iter().map(OsString::from)).unwrap()
    }

    #[test]
    fn defaults_are_perfsonar_powstream_s() {
        let p = plan(args(&["powstream", "host"])).unwrap();
        assert_eq!(p.spec.packets, 300);
        assert_eq!(p.spec.slots.len(), 1);
        assert_eq!(p.spec.slots[0].kind, SlotKind::Exponential);
        assert_eq!(
            p.spec.slots[0].mean,
            owping::seconds_to_interval(0.1).unwrap()
        );
        assert_eq!(p.spec.timeout, Duration::from_secs(10));
        assert_eq!(p.role, Role::Receiver);
        assert_eq!(p.retry, Duration::from_secs(60));
        assert_eq!(p.sub_count, 0);
        assert_eq!(p.serv.port, 861);
        assert_eq!(p.ports, Some(owping::DEFAULT_TEST_PORTS));
        let p = plan(args(&[
            "powstream",
            "-t",
            "-c",
            "20",
            "-N",
            "5",
            "-L",
            "1.5",
            "h:9",
        ]))
        .unwrap();
        assert_eq!(p.role, Role::Sender);
        assert_eq!(p.sub_count, 5);
        assert_eq!(p.spec.timeout, Duration::from_millis(1500));
        assert_eq!(p.serv.port, 9);
    }

    #[test]
    fn bad_arguments_are_refused() {
        for v in [
            &["powstream", "-4", "-6", "h"][..],
            &["powstream", "-c", "0", "h"],
            &["powstream", "-i", "0", "h"],
            &["powstream", "-i", "x", "h"],
            &["powstream", "-L", "-1", "h"],
            &["powstream", "-L", "1e300", "h"],
            &["powstream", "-L", "5e9", "h"],
            &["powstream", "-E", "0", "h"],
            &["powstream", "-z", "-3", "h"],
            &["powstream", "-b", "0", "h"],
            &["powstream", "-I", "soon", "h"],
            &["powstream", "-c", "30", "-N", "7", "h"],
            &["powstream", "-c", "30", "-N", "60", "h"],
            &["powstream", "-P", "9000-9000", "h"],
            &["powstream", "-P", "9010-9000", "h"],
            &["powstream", "-e", "nosuch", "h"],
            &["powstream", "-g", "loud", "h"],
            &["powstream", "-X", "0", "h"],
            &["powstream", "h:0"],
        ] {
            assert!(plan(args(v)).is_err(), "{v:?}");
        }
        assert!(plan(args(&["powstream", "-e", "LOG_LOCAL3", "-g", "warn", "h"])).is_ok());
        // As with getopt, the last of a repeated flag wins.
        assert_eq!(
            plan(args(&["powstream", "-c", "10", "-c", "20", "h"]))
                .unwrap()
                .spec
                .packets,
            20
        );
        // Parse errors and a missing peer: a message and status 1.
        for v in [
            &["powstream"][..],
            &["powstream", "-c", "many", "h"],
            &["powstream", "-q", "h"],
        ] {
            let mut err = Vec::new();
            let code = run(
                v.iter().map(OsString::from),
                &mut Vec::new(),
                &mut err,
                &crate::sys::System,
                &StopHandle::new(),
            );
            assert_eq!(code, 1, "{v:?}");
            assert!(!err.is_empty());
        }
    }

    #[test]
    fn each_peer_has_its_settings_and_directory() {
        let v = plans(args(&[
            "powstream",
            "-d",
            "out",
            "-c",
            "50",
            "srv.example:9",
            "--peer",
            "[::1]:8610 count=7 direction=to timeout=3 dscp=EF mode=A user=u interval=0.5",
            "--peer",
            "b.example",
        ]))
        .unwrap();
        let names: Vec<&str> = v.iter().map(|p| p.peer.as_str()).collect();
        assert_eq!(names, ["srv.example_9", "__1_8610", "b.example_861"]);
        assert!(v.iter().all(|p| p.several));
        assert_eq!(v[1].args.dir, Some(PathBuf::from("out/__1_8610")));
        // The command line's settings, unless the peer's line says otherwise.
        assert_eq!((v[0].spec.packets, v[0].role), (50, Role::Receiver));
        assert_eq!((v[2].spec.packets, v[2].spec.dscp), (50, 0));
        let p = &v[1];
        assert_eq!((p.spec.packets, p.role), (7, Role::Sender));
        assert_eq!(p.spec.timeout, Duration::from_secs(3));
        assert_eq!(p.spec.dscp, 46);
        assert_eq!(p.args.authmode.as_deref(), Some("A"));
        assert_eq!(p.args.username.as_deref(), Some("u"));
        assert_eq!(
            p.spec.slots[0].mean,
            owping::seconds_to_interval(0.5).unwrap()
        );
        // One peer as operands alone: perfSONAR's layout, no name prefix.
        let one = plans(args(&["powstream", "-d", "out", "h"])).unwrap();
        assert_eq!(one.len(), 1);
        assert!(!one[0].several);
        assert_eq!(one[0].args.dir, Some(PathBuf::from("out")));
        // The same peer twice is refused.
        let e = plans(args(&["powstream", "--peer", "h", "--peer", "h:861"])).unwrap_err();
        assert!(e.contains("given twice"), "{e}");
    }

    #[test]
    fn names_are_zero_padded_ntp_times() {
        let n = base_name(OwampTime::from_raw(1), OwampTime::from_raw(u64::MAX));
        assert_eq!(n, "00000000000000000001_18446744073709551615");
    }

    #[test]
    fn sub_sessions_tile_the_session() {
        let sid = SessionId([7; 16]);
        let slots = [Slot {
            kind: SlotKind::Exponential,
            mean: Interval::from_raw(1 << 30),
        }];
        let schedule = Schedule::new(sid, &slots, 12).unwrap();
        let start = OwampTime::from_raw(1 << 40);
        let subs = sub_sessions(&schedule, start, 4, u32::MAX);
        assert_eq!(subs.len(), 3);
        assert_eq!(subs[0].2, start);
        for (i, s) in subs.iter().enumerate() {
            assert_eq!((s.0, s.1), (4 * i as u32, 4 * i as u32 + 4));
            assert_eq!(Some(s.3), schedule.send_time(start, s.1 - 1));
            if i > 0 {
                assert_eq!(s.2, subs[i - 1].3);
            }
        }
        // The last one ends where the session does.
        assert_eq!(Some(subs[2].3), schedule.send_time(start, 11));
        // Cut short after packet 5: the third range has nothing.
        assert_eq!(sub_sessions(&schedule, start, 4, 5).len(), 2);
        // No sub-sessions unless they divide the session.
        assert!(sub_sessions(&schedule, start, 0, u32::MAX).is_empty());
        assert!(sub_sessions(&schedule, start, 12, u32::MAX).is_empty());
    }

    #[test]
    fn the_directory_lock_holds_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        let held = DirLock::take(&path).unwrap();
        let pid = std::fs::read(&path).unwrap();
        assert_eq!(pid, (std::process::id() as i32).to_ne_bytes());
        // fcntl locks belong to the process, so a second writer is tried in another one (the
        // end-to-end tests); here the lock is taken again once released.
        drop(held);
        assert!(DirLock::take(&path).is_ok());
    }
}
