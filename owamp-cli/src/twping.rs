//! twping: a two-way (TWAMP, RFC 5357) latency test against a TWAMP server, as perfSONAR's
//! twping 5.2.3 runs it and prints its results.
//!
//! One control connection (TWAMP-Control, RFC 5357 3) asks for one test session with
//! Request-TW-Session; this side is the session-sender (RFC 5357 4.1) and the server's
//! reflector answers every packet (RFC 5357 4.2). The host here is blocking and single
//! threaded: the control stream and the test socket are read with short timeouts in turn, so
//! every wait is bounded. The test socket is the OS layer's [`TestSocket`]: the packets go
//! out with TTL 255 (as twping's), so that the reflector's Sender TTL counts the hops, and
//! each reply comes with its TTL and the kernel's receive time.
//!
//! Flags of twping 5.2.3 this implementation refuses with a message (exit status 1): `-F`
//! (save results) and the output options `-a`, `-b`.
//!
//! Output: the statistics as twping prints them (default), each reflected packet's
//! timestamps (`-R`), the machine-readable summary (`-M`), or `--json` (an extension).
//!
//! Exit status: 0 on success, 1 on any failure.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use owamp_core::control::PortRange;
use owamp_core::control::{Client, ClientCommand, ClientConfig, Protocol, Role, SessionRequest};
use owamp_core::io::{Input, Output, SessionInfo, SessionReport};
use owamp_core::session::twamp::{default_padding, SessionSender, TwoWayRecord};
use owamp_core::stats::fmt::{f, g, g6};
use owamp_core::stats::report::UNREPRESENTABLE_DATE;
use owamp_core::stats::twamp::{DelayStats, TwoWaySummary};
use owamp_core::time::{ErrorEstimate, Interval, OwampTime};
use owamp_core::wire::{Slot, SlotKind, TypeP};
use owamp_os::clock::{Clock, SystemClock, SystemTimeExt};
use owamp_os::net::TestSocket;
use owamp_os::rng::OsRng;

use crate::args::ConnectionArgs;
use crate::client::{self, HostSpec};
use crate::owping::{parse_dscp, parse_ports, parse_schedule, parse_seconds, seconds_to_interval};
use crate::sys::Environment;

/// The TWAMP-Control port (RFC 5357 3.1, IANA "twamp-control").
pub const CONTROL_PORT: u16 = 862;

/// The largest padding twping asks for.
pub const MAX_PADDING: u32 = 65_000;

/// The histogram bucket width twping reports (`BUCKET_WIDTH`).
const BUCKET_WIDTH: f64 = 0.0001;

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
    /// save results to file (not supported by this implementation)
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

    /// report an additional percentile level for the delays (not supported)
    #[arg(short = 'a', value_name = "alpha", help_heading = "Output Args")]
    pub alpha: Option<String>,
    /// bin size for histogram calculations (not supported)
    #[arg(short = 'b', value_name = "bucketwidth", help_heading = "Output Args")]
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

impl Args {
    /// The first flag given that this twping does not support, with why.
    fn unsupported(&self) -> Option<&'static str> {
        let flags = [
            (self.file.is_some(), "-F (save results to a file)"),
            (self.alpha.is_some(), "-a (an additional percentile)"),
            (self.bucket_width.is_some(), "-b (histogram bucket width)"),
        ];
        flags.into_iter().find(|f| f.0).map(|f| f.1)
    }
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
    if let Some(flag) = args.unsupported() {
        return Err(format!("{flag} is not supported by this twping"));
    }
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
    if let Some(p) = args.padding {
        if p > MAX_PADDING {
            return Err(format!("Invalid -s: padding is at most {MAX_PADDING}"));
        }
    }
    let opts = args.conn.client_options("twping", err)?;
    let family = args.conn.family()?;
    let mut cfg = opts.control;
    cfg.protocol = Protocol::Twamp;
    cfg.control_timeout = CONTROL_TIMEOUT;
    cfg.end_delay = Duration::from_millis(100);
    let test_host = args.servaddr.as_ref().map(|_| &test_spec);
    let addrs = client::resolve_server(&spec, test_host, family)?;
    let source = match &args.conn.srcaddr {
        Some(s) => Some(client::resolve_source(s, addrs[0])?),
        None => None,
    };
    let mean: f64 = slots.iter().map(|s| s.mean.as_secs_f64()).sum::<f64>() / slots.len() as f64;
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
        ports,
        delay_start,
    };
    let t = test(&spec, &addrs, source, cfg, &plan, args)?;
    if args.quiet {
        return Ok(0);
    }
    let local_name = env
        .host_name(t.info.local.ip())
        .unwrap_or_else(|| t.info.local.ip().to_string());
    let to_name = spec.node.clone();
    let s = TwoWaySummary::new(&t.records, t.sent);
    let text = if args.raw {
        raw(&t.records)
    } else if args.machine {
        machine(&t, &s, &local_name, &to_name)
    } else if args.json {
        json(&t, &s)
    } else if args.verbose {
        let limit = args.verbose_limit.map_or(usize::MAX, |n| n as usize);
        let mut o = header(&t, &local_name, &to_name);
        o.push_str(&individual(&t.records, limit, args.unix, units));
        o.push_str(&summary(&t, &s, &local_name, &to_name, env, units));
        o
    } else if let Some(n) = sub_count {
        // -N: one summary for each n packets sent, in order.
        sub_sessions(&t.records, t.sent, n)
            .iter()
            .map(|(records, sent)| {
                let s = TwoWaySummary::new(records, *sent);
                summary(&t, &s, &local_name, &to_name, env, units)
            })
            .collect()
    } else {
        summary(&t, &s, &local_name, &to_name, env, units)
    };
    out.write_all(text.as_bytes())
        .map_err(|e| format!("writing the results: {e}"))?;
    Ok(0)
}

fn now(clock: &SystemClock) -> OwampTime {
    clock.now()
}

/// Drives the client until `done`, reading the control stream with short timeouts; an error,
/// a close or `limit` ends it with `Err`.
fn drive(
    c: &mut Client<OsRng>,
    tcp: &mut TcpStream,
    clock: &SystemClock,
    ev: &mut Events,
    limit: Instant,
    done: &dyn Fn(&Client<OsRng>, &Events) -> bool,
) -> Result<(), String> {
    let mut buf = [0u8; 4096];
    loop {
        flush(c, tcp, ev)?;
        if done(c, ev) {
            return Ok(());
        }
        if Instant::now() >= limit {
            return Err("no answer from the server in time".into());
        }
        if c.poll_timeout().is_some_and(|t| now(clock) >= t) {
            c.handle_input(now(clock), Input::Timer)
                .map_err(|e| e.to_string())?;
            continue;
        }
        match tcp.read(&mut buf) {
            Ok(0) => return Err("the server closed the control connection".into()),
            Ok(n) => c
                .handle_input(now(clock), Input::Received(&buf[..n]))
                .map_err(|e| e.to_string())?,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(format!("control connection: {e}")),
        }
    }
}

/// What the client told its host.
#[derive(Default)]
struct Events {
    accepted: Option<SessionInfo>,
    rejected: Option<String>,
    started: bool,
    complete: bool,
    connected: bool,
}

fn flush(c: &mut Client<OsRng>, tcp: &mut TcpStream, ev: &mut Events) -> Result<(), String> {
    while let Some(o) = c.poll_output() {
        match o {
            Output::Transmit(b) => tcp
                .write_all(&b)
                .map_err(|e| format!("control connection: {e}"))?,
            Output::Connected { .. } => ev.connected = true,
            Output::SessionAccepted(i) => ev.accepted = Some(*i),
            Output::SessionRejected { accept } => {
                ev.rejected = Some(client::describe_accept(accept))
            }
            Output::StartSessions => ev.started = true,
            Output::TestComplete => ev.complete = true,
            Output::Close(r) => return Err(format!("{r:?}")),
            _ => {}
        }
    }
    Ok(())
}

/// The test's parameters, checked.
struct Plan {
    slots: Vec<Slot>,
    timeout: Interval,
    dscp: u8,
    ports: Option<PortRange>,
    delay_start: Duration,
}

/// Sets up the control connection and runs the session.
fn test(
    spec: &HostSpec,
    addrs: &[SocketAddr],
    source: Option<IpAddr>,
    cfg: ClientConfig,
    plan: &Plan,
    args: &Args,
) -> Result<TestResult, String> {
    let (slots, timeout) = (&plan.slots[..], plan.timeout);
    let clock = SystemClock::new();
    let fail_open = || {
        format!(
            "Unable to open control connection to {}:{}.",
            spec.node, spec.port
        )
    };
    let mut tcp = addrs
        .iter()
        .find_map(|a| {
            client::connect_stream(
                *a,
                source,
                args.conn.interface.as_deref(),
                Duration::from_secs(10),
            )
            .ok()
        })
        .ok_or_else(fail_open)?;
    tcp.set_read_timeout(Some(Duration::from_millis(5)))
        .map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let server = tcp.peer_addr().map_err(|e| e.to_string())?;
    let local = tcp.local_addr().map_err(|e| e.to_string())?;
    let mut c = Client::new(now(&clock), cfg, OsRng);
    let mut ev = Events::default();
    let limit = Instant::now() + CONTROL_TIMEOUT;
    drive(&mut c, &mut tcp, &clock, &mut ev, limit, &|c, _| {
        c.is_ready()
    })
    .map_err(|e| format!("{e}\ntwping: {}", fail_open()))?;

    let udp = match plan.ports {
        Some(range) => {
            let mut d = [0u8; 4];
            rand_core_fill(&mut d)?;
            TestSocket::bind_in_range(local.ip(), range, range.pick(u32::from_be_bytes(d)))
                .map_err(|e| format!("test socket: {e}"))?
        }
        None => TestSocket::bind_on(
            SocketAddr::new(local.ip(), 0),
            args.conn.interface.as_deref(),
        )
        .map_err(|e| format!("test socket: {e}"))?,
    };
    // RFC 5357 3.5 (RFC 4656 3.5): the Type-P descriptor carries the DSCP.
    let type_p = TypeP::from_dscp(plan.dscp).ok_or("Invalid DSCP value (-D)")?;
    if plan.dscp != 0 {
        udp.set_dscp(plan.dscp)
            .map_err(|e| format!("test socket DSCP: {e}"))?;
    }
    // The test packets' mode: open in mixed mode (RFC 5618).
    let mode = c.packet_mode();
    let padding = args.padding.unwrap_or_else(|| default_padding(mode));
    // -Z: the request names no addresses (zeros); the reflector then answers the address the
    // control connection comes from (RFC 5357 3.5 as RFC 4656 3.5: zero addresses stand for
    // the control connection's).
    let (req_local, req_peer) = if args.nat {
        let any = match udp.local_addr().ip() {
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        };
        (SocketAddr::new(any, udp.local_addr().port()), any)
    } else {
        (udp.local_addr(), server.ip())
    };
    let req = SessionRequest {
        role: Role::Sender,
        local: req_local,
        peer: req_peer,
        slots: slots.to_vec(),
        packets: args.count,
        padding,
        start_time: now(&clock).saturating_add_interval(Interval::saturating_from_duration(
            START_DELAY + plan.delay_start,
        )),
        timeout,
        type_p,
    };
    c.handle_input(
        now(&clock),
        Input::Command(ClientCommand::RequestSession(req)),
    )
    .map_err(|e| e.to_string())?;
    let limit = Instant::now() + CONTROL_TIMEOUT;
    drive(&mut c, &mut tcp, &clock, &mut ev, limit, &|c, ev| {
        ev.rejected.is_some() || (ev.accepted.is_some() && c.is_ready())
    })?;
    if let Some(r) = ev.rejected.take() {
        return Err(format!("Session request refused: {r}"));
    }
    let mut info = ev.accepted.take().ok_or("no session")?;
    if info.peer.ip().is_unspecified() {
        // -Z: the reflector is at the server's address.
        info.peer.set_ip(server.ip());
    }
    if info.local.ip().is_unspecified() {
        info.local = udp.local_addr();
    }
    let mut sender = SessionSender::new(&info, vec![0; padding as usize])
        .map_err(|e| format!("session: {e}"))?;
    c.handle_input(now(&clock), Input::Command(ClientCommand::StartSessions))
        .map_err(|e| e.to_string())?;
    drive(&mut c, &mut tcp, &clock, &mut ev, limit, &|_, ev| {
        ev.started
    })?;

    // The schedule: each slot in turn, exponential gaps drawn from the OS RNG (RFC 4656 3.5).
    // -z: the first packet leaves at the start time asked for.
    let first = Instant::now() + plan.delay_start;
    let mut records = Vec::new();
    let mut buf = vec![0u8; 66_000];
    let mut pkt = Vec::new();
    let mut next = first;
    let mut control_buf = [0u8; 4096];
    for i in 0..args.count {
        while Instant::now() < next {
            receive(&udp, &mut sender, &clock, &info, &mut buf, &mut records);
        }
        let ee = clock.error_estimate();
        sender
            .build(now(&clock), ee, &mut pkt)
            .map_err(|e| format!("test packet: {e}"))?;
        udp.send_to(&pkt, info.peer)
            .map_err(|e| format!("sending a test packet: {e}"))?;
        let slot = slots[i as usize % slots.len()];
        next += gap(slot);
        // Keep the control connection read: the server may close it.
        if let Ok(0) = peek(&mut tcp, &mut control_buf) {
            return Err("the server closed the control connection".into());
        }
    }
    let wait_until = Instant::now() + timeout.to_duration();
    while Instant::now() < wait_until && (records.len() as u32) < sender.sent() {
        receive(&udp, &mut sender, &clock, &info, &mut buf, &mut records);
    }
    let sent = sender.sent();
    c.handle_input(
        now(&clock),
        Input::SessionFinished(SessionReport::completed(info.sid, sent)),
    )
    .map_err(|e| e.to_string())?;
    let limit = Instant::now() + CONTROL_TIMEOUT;
    drive(&mut c, &mut tcp, &clock, &mut ev, limit, &|_, ev| {
        ev.complete
    })?;
    let _ = c.handle_input(now(&clock), Input::Command(ClientCommand::Close));
    let _ = flush(&mut c, &mut tcp, &mut ev);
    Ok(TestResult {
        info,
        sent,
        records,
        timeout,
        padding,
        count: args.count,
        dscp: plan.dscp,
    })
}

fn peek(tcp: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    tcp.set_nonblocking(true)?;
    let r = tcp.peek(buf);
    tcp.set_nonblocking(false)?;
    r
}

/// The gap after a packet sent in `slot`.
fn gap(slot: Slot) -> Duration {
    let mean = slot.mean.as_secs_f64();
    let secs = match slot.kind {
        SlotKind::Fixed => mean,
        _ => {
            let mut b = [0u8; 8];
            let _ = rand_core_fill(&mut b);
            // Uniform in (0, 1]: never 0, so the logarithm is finite.
            let u = ((u64::from_le_bytes(b) >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
            -u.ln() * mean
        }
    };
    Duration::try_from_secs_f64(secs.clamp(0.0, 3600.0)).unwrap_or(Duration::ZERO)
}

fn rand_core_fill(b: &mut [u8]) -> Result<(), String> {
    use owamp_core::rand_core::RngCore;
    OsRng.try_fill_bytes(b).map_err(|e| e.to_string())
}

/// Reads a reply waiting on the test socket (one short wait).
fn receive(
    udp: &TestSocket,
    sender: &mut SessionSender,
    clock: &SystemClock,
    info: &SessionInfo,
    buf: &mut [u8],
    records: &mut Vec<TwoWayRecord>,
) {
    if let Ok(Some(r)) = udp.recv(buf, Duration::from_millis(2)) {
        let at = r
            .kernel_time
            .and_then(|t| t.to_owamp_time())
            .unwrap_or_else(|| now(clock));
        let from = owamp_os::net::canonical(r.source);
        if from == owamp_os::net::canonical(info.peer) && !r.truncated {
            // RFC 5357 4.2.1: the reply's own TTL gives the reflect hops (255 if the kernel
            // does not tell it).
            let ttl = r.ttl.unwrap_or(255);
            if let Some(d) = buf.get(..r.len) {
                if let Ok(rec) = sender.handle_reply(at, ttl, clock.error_estimate(), d) {
                    records.push(rec);
                }
            }
        }
    }
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

/// A time as twping prints it: local time, milliseconds.
fn time_of(t: OwampTime, env: &dyn Environment) -> String {
    let st = SystemTime::from_owamp_time(t);
    let d = st
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let date = u32::try_from(d.as_secs())
        .ok()
        .and_then(|s| env.local_time(s))
        .unwrap_or_else(|| UNREPRESENTABLE_DATE.into());
    format!("{date}.{:03}", d.subsec_millis())
}

fn delay_line(o: &mut String, label: &str, d: &DelayStats, u: Units) {
    let _ = writeln!(
        o,
        "{label} min/median/max = {}/{}/{} {l}, (err={} {l})",
        u.g3(d.min),
        u.g3(d.median()),
        u.g3(d.max),
        u.g3(Some(d.max_error)),
        l = u.label
    );
}

fn hops_line(o: &mut String, label: &str, h: Option<owamp_core::stats::twamp::Hops>) {
    match h {
        None => {
            let _ = writeln!(o, "{label} hops = nan");
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

/// `-N`: the replies of each `n` packets sent (by sender sequence number), with the number
/// of packets sent in each part.
pub fn sub_sessions(records: &[TwoWayRecord], sent: u32, n: u32) -> Vec<(Vec<TwoWayRecord>, u32)> {
    let n = n.max(1);
    (0..sent.div_ceil(n))
        .map(|k| {
            let low = k * n;
            let high = low.saturating_add(n).min(sent);
            let part = records
                .iter()
                .filter(|r| (low..high).contains(&r.sender_seq))
                .copied()
                .collect();
            (part, high - low)
        })
        .collect()
}

/// The two lines that start twping's summaries.
fn header(t: &TestResult, from: &str, to: &str) -> String {
    format!(
        "\n--- twping statistics from [{from}]:{} to [{to}]:{} ---\nSID:\t{}\n",
        t.info.local.port(),
        t.info.peer.port(),
        hex::encode(t.info.sid.0)
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

/// UNIX time with microseconds, as `-U` prints it.
fn unix_secs(t: OwampTime) -> String {
    let d = SystemTime::from_owamp_time(t)
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    format!("{}.{:06}", d.as_secs(), d.subsec_micros())
}

/// `-v`: each reply's delays (milliseconds), the first `limit` of them, as twping prints
/// them; with `unix` (`-U`) in `%e` and followed by the four timestamps.
pub fn individual(records: &[TwoWayRecord], limit: usize, unix: bool, u: Units) -> String {
    let mut o = String::new();
    let l = u.label;
    for r in records.iter().take(limit) {
        let ms = |a: OwampTime, b: OwampTime| a.diff_secs_f64(b) * u.per_second;
        let fwd = ms(r.reflector_recv_time, r.send_time);
        let bck = ms(r.recv_time, r.reflector_send_time);
        let proc = ms(r.reflector_send_time, r.reflector_recv_time);
        // The round trip's error: both ends' and twice the reflector's.
        let err = (r.send_error.error_secs_f64()
            + 2.0 * r.reflector_error.error_secs_f64()
            + r.recv_error.error_secs_f64())
            * u.per_second;
        if unix {
            let _ = writeln!(
                o,
                "seq_no={} fwd_delay={} {l} bck_delay={} {l} delay={} {l} proc_delay={} {l} \
                 (err={} {l}) sent={} recv={} reflected={} recv={}",
                r.sender_seq,
                c_exp(fwd),
                c_exp(bck),
                c_exp(fwd + bck),
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
                g(fwd + bck, 3),
                g(proc, 3),
                g(err, 3),
            );
        }
    }
    o
}

/// The default output, laid out as twping's; first and last in local time (`env`).
pub fn summary(
    t: &TestResult,
    s: &TwoWaySummary,
    from: &str,
    to: &str,
    env: &dyn Environment,
    u: Units,
) -> String {
    let mut o = header(t, from, to);
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
    delay_line(&mut o, "round-trip time", &s.round_trip, u);
    delay_line(&mut o, "send time", &s.send, u);
    delay_line(&mut o, "reflect time", &s.reflect, u);
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
    hops_line(&mut o, "send", s.send_hops);
    hops_line(&mut o, "reflect", s.reflect_hops);
    o.push('\n');
    o
}

fn opt6(v: Option<f64>) -> String {
    v.map_or_else(|| "nan".to_string(), g6)
}

/// `-M`: the machine-readable summary, with twping's keys.
pub fn machine(t: &TestResult, s: &TwoWaySummary, from: &str, to: &str) -> String {
    let mut o = String::new();
    let mut kv = |k: &str, v: String| {
        let _ = writeln!(o, "{k}\t{v}");
    };
    kv("SUMMARY", "3.00".into());
    kv("SID", hex::encode(t.info.sid.0));
    kv("FROM_HOST", from.into());
    kv("FROM_ADDR", t.info.local.ip().to_string());
    kv("FROM_PORT", t.info.local.port().to_string());
    kv("TO_HOST", to.into());
    kv("TO_ADDR", t.info.peer.ip().to_string());
    kv("TO_PORT", t.info.peer.port().to_string());
    let (first, last) = s.first_last.map_or((0, 0), |(a, z)| (a.raw(), z.raw()));
    kv("START_TIME", first.to_string());
    kv("END_TIME", last.to_string());
    kv("DSCP", format!("{:#04x}", t.dscp));
    kv("LOSS_TIMEOUT", t.timeout.raw().to_string());
    kv("PACKET_PADDING", t.padding.to_string());
    kv("SESSION_PACKET_COUNT", t.count.to_string());
    kv("SAMPLE_PACKET_COUNT", s.sent.to_string());
    kv("BUCKET_WIDTH", g6(BUCKET_WIDTH));
    kv("SESSION_FINISHED", "1".into());
    kv("SENT", s.sent.to_string());
    let synced = t.records.iter().all(|r| {
        r.send_error.synchronized()
            && r.recv_error.synchronized()
            && r.reflector_error.synchronized()
    }) && !t.records.is_empty();
    kv("SYNC", u8::from(synced).to_string());
    kv("MAXERR", g6(s.round_trip.max_error));
    kv("MAXERR_FWD", g6(s.send.max_error));
    kv("MAXERR_BCK", g6(s.reflect.max_error));
    kv("DUPS_FWD", s.send_duplicates.to_string());
    kv("DUPS_BCK", s.reflect_duplicates.to_string());
    kv("LOST", s.lost.to_string());
    kv("MIN", opt6(s.round_trip.min));
    kv("MIN_FWD", opt6(s.send.min));
    kv("MIN_BCK", opt6(s.reflect.min));
    kv("MIN_PROC", opt6(s.processing.min));
    kv("MEDIAN", opt6(s.round_trip.median()));
    kv("MEDIAN_FWD", opt6(s.send.median()));
    kv("MEDIAN_BCK", opt6(s.reflect.median()));
    kv("MAX", opt6(s.round_trip.max));
    kv("MAX_FWD", opt6(s.send.max));
    kv("MAX_BCK", opt6(s.reflect.max));
    kv("MAX_PROC", opt6(s.processing.max));
    kv("PDV", opt6(s.round_trip.jitter()));
    kv("PDV_FWD", opt6(s.send.jitter()));
    kv("PDV_BCK", opt6(s.reflect.jitter()));
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
    for r in &t.records {
        if seen.insert(r.sender_seq) {
            ttls.entry(r.sender_ttl).or_default()[0] += 1;
            ttls.entry(r.reply_ttl).or_default()[1] += 1;
        }
    }
    for (ttl, [fw, bk]) in ttls {
        let _ = writeln!(o, "\t{ttl}\t{fw}\t{bk}");
    }
    let _ = writeln!(o, "</TTLBUCKETS>");
    o
}

/// `--json`: the main numbers (seconds).
pub fn json(t: &TestResult, s: &TwoWaySummary) -> String {
    let d = |x: &DelayStats| {
        serde_json::json!({
            "min": x.min, "median": x.median(), "max": x.max,
            "max_error": x.max_error, "jitter": x.jitter(),
        })
    };
    let v = serde_json::json!({
        "sid": hex::encode(t.info.sid.0),
        "from": t.info.local.to_string(),
        "to": t.info.peer.to_string(),
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
            "send hops = nan\nsend hops = 1 (consistently)\n\
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
    fn unsupported_flags_are_named() {
        let a = Args::try_parse_from(["twping", "-F", "f", "-Q", "h", "s"]).unwrap();
        assert_eq!(a.unsupported(), Some("-F (save results to a file)"));
        assert!(a.quiet);
        assert_eq!(a.servaddr.as_deref(), Some("s"));
        let a = Args::try_parse_from(["twping", "-D", "EF", "-z", "1", "-P", "9000-9010", "h"]);
        assert_eq!(a.unwrap().unsupported(), None);
    }

    #[test]
    fn individual_delays_as_twping_prints_them() {
        let o = individual(&[record(0), record(1)], 1, false, Units::MS);
        assert_eq!(
            o,
            "seq_no=0          fwd_delay=1e+03 ms bck_delay=1e+03 ms delay=2e+03 ms \
             proc_delay=1e+03 ms\t(err=9.31e-07 ms)\n"
        );
        let o = individual(&[record(3)], 5, true, Units::MS);
        assert!(
            o.starts_with(
                "seq_no=3 fwd_delay=1.000000e+03 ms bck_delay=1.000000e+03 ms \
                 delay=2.000000e+03 ms proc_delay=1.000000e+03 ms (err=9.31e-07 ms) sent="
            ),
            "{o}"
        );
        assert_eq!(c_exp(0.0305), "3.050000e-02");
        let o = individual(&[record(0)], 1, false, Units::parse("s").unwrap());
        assert!(o.contains("fwd_delay=1  bck_delay=1  delay=2  proc_delay=1 \t(err=9.31e-10 )"));
        let o = individual(&[record(0)], 1, false, Units::parse("u").unwrap());
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
    fn sub_sessions_split_by_sender_sequence() {
        let recs: Vec<_> = [0, 1, 1, 3, 4].into_iter().map(record).collect();
        let parts = sub_sessions(&recs, 5, 2);
        let seqs: Vec<(Vec<u32>, u32)> = parts
            .iter()
            .map(|(r, n)| (r.iter().map(|r| r.sender_seq).collect(), *n))
            .collect();
        assert_eq!(seqs, vec![(vec![0, 1, 1], 2), (vec![3], 2), (vec![4], 1)]);
        assert!(sub_sessions(&recs, 0, 2).is_empty());
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
            &["twping", "-F", "out", "127.0.0.1"],
            &["twping", "-N", "0", "127.0.0.1"],
            &["twping", "-a", "0.5", "127.0.0.1"],
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
