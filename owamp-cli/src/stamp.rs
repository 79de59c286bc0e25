//! stamp: a STAMP (RFC 8762) and TWAMP Light (RFC 5357 Appendix I) reflector and sender,
//! without a control connection.
//!
//! `stamp reflect` answers every valid test packet that reaches its address (port 862 by
//! default, RFC 8762 4.1) with `session::stamp::StampReflector`; `stamp send` sends a fixed
//! number of packets at a fixed interval with `session::stamp::StampSender` and prints what
//! twping prints (its functions, with the tool's name in the header). Both use owamp-os test
//! sockets: send TTL 255, kernel receive timestamps and received TTLs when the kernel gives
//! them. In authenticated mode both ends read the same key from `--auth-key-file`: hexadecimal
//! digits (whitespace ignored) giving 16 to 64 octets.

use std::ffi::OsString;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use owamp_core::control::{Mode, RequestSession, Role};
use owamp_core::crypto::StampKey;
use owamp_core::io::SessionInfo;
use owamp_core::session::stamp::{
    Numbering, StampPacketError, StampReflector, StampSender, TestFormat, TwoWayRecord,
    DEFAULT_MAX_PEERS, MAX_PACKET_LEN,
};
use owamp_core::stats::twamp::TwoWaySummary;
use owamp_core::time::{Interval, OwampTime};
use owamp_core::wire::{SessionId, TypeP};
use owamp_os::clock::{Clock, SystemClock, SystemTimeExt};
use owamp_os::net::{Received, TestSocket, MAX_DATAGRAM};

use crate::client;
use crate::owping::seconds_to_interval;
use crate::sys::Environment;
use crate::twping::{self, TestResult};

/// The STAMP port (RFC 8762 4.1, the IANA "twamp-control" port that RFC 8545 reuses).
pub const STAMP_PORT: u16 = 862;

/// Longest wait of one receive: how often the reflector looks at its stop flag.
const POLL: Duration = Duration::from_millis(100);

/// The longest test `stamp send` runs (packets times interval plus the loss timeout).
const MAX_TEST: Duration = Duration::from_secs(24 * 3600);

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "stamp",
    about = "STAMP (RFC 8762) and TWAMP Light reflector and sender",
    version = crate::man::VERSION,
    disable_version_flag = true,
    arg = crate::man::version_flag(),
    after_help = crate::man::VERSION_LINE,
    subcommand_required = true
)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `stamp reflect` or `stamp send`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Reflect test packets until interrupted
    Reflect(ReflectArgs),
    /// Send test packets to a reflector and print the statistics
    Send(SendArgs),
}

/// `stamp reflect`.
#[derive(Debug, clap::Args)]
#[command(
    about = "Reflect STAMP or TWAMP Light test packets until interrupted",
    version = crate::man::VERSION,
    disable_version_flag = true,
    arg = crate::man::version_flag(),
    after_help = crate::man::VERSION_LINE
)]
pub struct ReflectArgs {
    /// address and port to listen on
    #[arg(
        long = "listen",
        value_name = "ADDR:PORT",
        default_value = "0.0.0.0:862"
    )]
    pub listen: SocketAddr,
    /// authenticated mode (RFC 8762 4.4): the key, in hexadecimal, is in FILE
    #[arg(long = "auth-key-file", value_name = "FILE")]
    pub auth_key_file: Option<PathBuf>,
    /// number replies per sender (address and port) instead of copying the sender's sequence
    /// number
    #[arg(long = "stateful")]
    pub stateful: bool,
    /// senders a stateful reflector keeps count of (the least recently heard is forgotten
    /// first)
    #[arg(long = "max-peers", value_name = "N", default_value_t = DEFAULT_MAX_PEERS)]
    pub max_peers: usize,
    /// reflect as a TWAMP Light reflector (RFC 5357 Appendix I): 41-octet replies
    #[arg(long = "light", conflicts_with = "auth_key_file")]
    pub light: bool,
}

/// `stamp send`.
#[derive(Debug, clap::Args)]
#[command(
    about = "Send STAMP or TWAMP Light test packets to a reflector and print the statistics",
    override_usage = "stamp send [arguments] host[:port]",
    version = crate::man::VERSION,
    disable_version_flag = true,
    arg = crate::man::version_flag(),
    after_help = crate::man::VERSION_LINE
)]
pub struct SendArgs {
    /// number of test packets
    #[arg(short = 'c', value_name = "count", default_value_t = 100, value_parser = crate::args::packet_count)]
    pub count: u32,
    /// time between packets (seconds)
    #[arg(short = 'i', value_name = "interval", default_value = "0.1")]
    pub interval: String,
    /// how long to wait for the replies after the last packet (seconds)
    #[arg(short = 'L', value_name = "timeout", default_value = "2")]
    pub timeout: String,
    /// octets of each test packet (UDP payload; default 44, 112 authenticated, 41 with
    /// --light)
    #[arg(short = 's', value_name = "size")]
    pub size: Option<usize>,
    /// authenticated mode (RFC 8762 4.4): the key, in hexadecimal, is in FILE
    #[arg(long = "auth-key-file", value_name = "FILE")]
    pub auth_key_file: Option<PathBuf>,
    /// send TWAMP Light packets (RFC 5357 Appendix I) instead of STAMP's
    #[arg(long = "light", conflicts_with = "auth_key_file")]
    pub light: bool,
    /// print the timestamps of every reply
    #[arg(short = 'R')]
    pub raw: bool,
    /// print machine-readable statistics
    #[arg(short = 'M')]
    pub machine: bool,
    /// print the main numbers as JSON
    #[arg(long = "json")]
    pub json: bool,
    /// the reflector, host or host:port (default port 862)
    #[arg(value_name = "host")]
    pub host: String,
}

/// The command line of `stamp NAME` as a command of its own, `stamp-NAME` (for its manual
/// page).
pub fn subcommand(name: &str) -> clap::Command {
    use clap::CommandFactory;
    let (page, bin) = match name {
        "reflect" => ("stamp-reflect", "stamp reflect"),
        _ => ("stamp-send", "stamp send"),
    };
    Args::command()
        .find_subcommand(name)
        .cloned()
        .unwrap_or_else(|| clap::Command::new(page))
        .name(page)
        .bin_name(bin)
}

/// Reads a key file: hexadecimal digits, whitespace ignored.
pub fn read_key(path: &Path) -> Result<StampKey, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading the key file {}: {e}", path.display()))?;
    let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let octets = hex::decode(&digits)
        .map_err(|e| format!("{}: not a key in hexadecimal digits ({e})", path.display()))?;
    StampKey::new(octets).map_err(|e| format!("{}: {e}", path.display()))
}

fn format_of(key_file: Option<&Path>, light: bool) -> Result<TestFormat, String> {
    Ok(match (key_file, light) {
        (Some(f), _) => TestFormat::StampAuthenticated(read_key(f)?),
        (None, true) => TestFormat::TwampLight,
        (None, false) => TestFormat::Stamp,
    })
}

/// Runs `stamp` with `argv`; `stop` is polled while reflecting (a signal sets it), `ready` is
/// told the address the reflector listens on. Returns the exit status.
pub fn run(
    argv: impl IntoIterator<Item = OsString>,
    out: &mut dyn Write,
    err: &mut dyn Write,
    env: &dyn Environment,
    stop: &dyn Fn() -> bool,
) -> i32 {
    let args: Args = match client::parse_args(argv, err) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let r = match &args.command {
        Command::Reflect(a) => reflect(a, out, err, stop),
        Command::Send(a) => send(a, out, err, env, stop),
    };
    client::exit_status("stamp", r, err)
}

/// The time a datagram arrived: the kernel's when it gave one.
fn arrival(r: &Received, clock: &SystemClock) -> OwampTime {
    r.kernel_time
        .and_then(|t| t.to_owamp_time())
        .unwrap_or_else(|| clock.now())
}

fn reflect(
    a: &ReflectArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
    stop: &dyn Fn() -> bool,
) -> Result<i32, String> {
    let format = format_of(a.auth_key_file.as_deref(), a.light)?;
    let numbering = if a.stateful {
        Numbering::Stateful {
            max_peers: a.max_peers,
        }
    } else {
        Numbering::Stateless
    };
    let mut reflector = StampReflector::new(format, numbering).map_err(|e| e.to_string())?;
    let socket = TestSocket::bind(a.listen).map_err(|e| format!("{}: {e}", a.listen))?;
    let _ = writeln!(out, "stamp: reflecting on {}", socket.local_addr());
    let _ = out.flush();
    let clock = SystemClock::new();
    // Both buffers are allocated once: a datagram costs no allocation.
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut reply = Vec::with_capacity(MAX_DATAGRAM);
    let mut warned_hmac = 0u64;
    while !stop() {
        let r = match socket.recv(&mut buf, POLL) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                let _ = writeln!(err, "stamp: receiving: {e}");
                std::thread::sleep(POLL);
                continue;
            }
        };
        if r.truncated || r.len > MAX_PACKET_LEN {
            continue;
        }
        let received = arrival(&r, &clock);
        // RFC 5357 4.2.1: 255 when the TTL cannot be read.
        let ttl = r.ttl.unwrap_or(255);
        let datagram = buf.get(..r.len).unwrap_or_default();
        let ee = clock.error_estimate();
        match reflector.reflect(
            r.source,
            received,
            ttl,
            datagram,
            clock.now(),
            ee,
            &mut reply,
        ) {
            Ok(_) => {
                if let Err(e) = socket.send_to(&reply, r.source) {
                    let _ = writeln!(err, "stamp: sending to {}: {e}", r.source);
                }
            }
            Err(StampPacketError::Crypto(_)) => {
                // Said once, then at each power of two: bounded output under a flood.
                let n = reflector.counters().bad_hmac;
                if n.is_power_of_two() && n > warned_hmac {
                    warned_hmac = n;
                    let _ = writeln!(
                        err,
                        "stamp: dropped {n} packet(s) with a wrong HMAC (last from {}): does the sender use the same key?",
                        r.source
                    );
                }
            }
            Err(_) => {}
        }
    }
    let c = reflector.counters();
    let _ = writeln!(
        err,
        "stamp: {} reflected, {} malformed, {} with a wrong HMAC",
        c.reflected, c.malformed, c.bad_hmac
    );
    Ok(0)
}

fn seconds(flag: &str, s: &str) -> Result<Duration, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .and_then(seconds_to_interval)
        .map(Interval::to_duration)
        .ok_or_else(|| format!("Invalid {flag}: \"{s}\""))
}

fn send(
    a: &SendArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
    env: &dyn Environment,
    stop: &dyn Fn() -> bool,
) -> Result<i32, String> {
    let interval = seconds("-i", &a.interval)?;
    let timeout = seconds("-L", &a.timeout)?;
    let format = format_of(a.auth_key_file.as_deref(), a.light)?;
    let size = a.size.unwrap_or_else(|| format.default_packet_len());
    let authenticated = matches!(format, TestFormat::StampAuthenticated(_));
    let header = format.min_packet_len();
    let total = interval
        .checked_mul(a.count)
        .and_then(|d| d.checked_add(timeout))
        .filter(|d| *d <= MAX_TEST)
        .ok_or("Invalid -c/-i/-L: the test would last more than a day")?;
    let mut sender = StampSender::new(format, size, a.count, interval)
        .map_err(|e| format!("Invalid -s: {e}"))?;
    let spec = client::parse_host(&a.host, STAMP_PORT)?;
    let peer = client::resolve(&spec, client::Family::Any)?[0];
    let any = match peer.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let socket =
        TestSocket::bind(SocketAddr::new(any, 0)).map_err(|e| format!("test socket: {e}"))?;
    // Only the reflector's replies reach the socket.
    socket
        .accept_only_from(peer)
        .map_err(|e| format!("test socket: {e}"))?;
    // Connected, the socket has the local address the route chose.
    let local = socket
        .socket()
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .unwrap_or_else(|| socket.local_addr());
    if !a.raw && !a.json {
        let _ = writeln!(
            out,
            "Approximately {:.1} seconds until results available",
            total.as_secs_f64()
        );
        let _ = out.flush();
    }
    let clock = SystemClock::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut pkt = Vec::with_capacity(size);
    let mut replies = Replies {
        peer,
        records: Vec::new(),
        answered: std::collections::HashSet::new(),
        bad_hmac: 0,
    };
    let start = clock.now();
    let started = Instant::now();
    while let Some(due) = sender.due(start) {
        if stop() || started.elapsed() > total + POLL {
            break;
        }
        if let Some(wait) = due.duration_since(clock.now()).filter(|d| !d.is_zero()) {
            if let Ok(Some(r)) = socket.recv(&mut buf, wait.min(POLL)) {
                replies.take(&r, &buf, &sender, &clock);
            }
            continue;
        }
        sender
            .build(clock.now(), clock.error_estimate(), &mut pkt)
            .map_err(|e| format!("test packet: {e}"))?;
        if let Err(e) = socket.send_to(&pkt, peer) {
            // A refused send (ICMP port unreachable after an earlier packet) is a loss.
            if e.kind() != std::io::ErrorKind::ConnectionRefused {
                return Err(format!("sending a test packet: {e}"));
            }
        }
    }
    let wait_until = Instant::now() + timeout;
    while Instant::now() < wait_until && (replies.answered.len() as u32) < sender.sent() && !stop()
    {
        let left = wait_until.saturating_duration_since(Instant::now());
        if let Ok(Some(r)) = socket.recv(&mut buf, left.min(POLL)) {
            replies.take(&r, &buf, &sender, &clock);
        }
    }
    let (records, bad_hmac) = (replies.records, replies.bad_hmac);
    let sent = sender.sent();
    let t = TestResult {
        info: session_info(local, peer, timeout),
        sent,
        records,
        timeout: Interval::saturating_from_duration(timeout),
        padding: u32::try_from(size - header).unwrap_or(u32::MAX),
        count: a.count,
        // Sent unmarked: stamp has no -D.
        dscp: 0,
        // stamp saves no file: the send times of lost packets are not kept.
        lost: Vec::new(),
        slots: Vec::new(),
        start_time: OwampTime::ZERO,
    };
    print_results(a, &t, &spec.node, env, out)?;
    if bad_hmac > 0 {
        let _ = writeln!(
            err,
            "stamp: {bad_hmac} repl{} with a wrong HMAC dropped: does the reflector use the same key?",
            if bad_hmac == 1 { "y" } else { "ies" }
        );
    }
    if sent > 0 && t.records.is_empty() {
        let hint = if authenticated {
            " (in authenticated mode both ends need the same key: a reflector drops packets with a wrong HMAC)"
        } else {
            ""
        };
        let _ = writeln!(err, "stamp: no reply from {peer}{hint}");
    }
    Ok(0)
}

/// What twping's printers read of a session, for a test without control: no SID (zeros).
fn session_info(local: SocketAddr, peer: SocketAddr, timeout: Duration) -> SessionInfo {
    SessionInfo {
        sid: SessionId([0; 16]),
        role: Role::Sender,
        mode: Mode::Open,
        keys: None,
        local,
        peer,
        request: RequestSession {
            conf_sender: false,
            conf_receiver: true,
            num_packets: 0,
            sender_port: local.port(),
            receiver_port: peer.port(),
            sender_address: local.ip(),
            receiver_address: peer.ip(),
            sid: SessionId([0; 16]),
            padding_length: 0,
            start_time: OwampTime::ZERO,
            timeout: Interval::saturating_from_duration(timeout),
            type_p: TypeP::BEST_EFFORT,
            hmac: [0; 16],
            slots: Vec::new(),
            slots_hmac: [0; 16],
        },
    }
}

fn print_results(
    a: &SendArgs,
    t: &TestResult,
    to: &str,
    env: &dyn Environment,
    out: &mut dyn Write,
) -> Result<(), String> {
    let from = env
        .host_name(t.info.local.ip())
        .unwrap_or_else(|| t.info.local.ip().to_string());
    let s = TwoWaySummary::new(&t.records, t.sent);
    let v = t.view();
    let text = if a.raw {
        twping::raw(&t.records)
    } else if a.machine {
        twping::machine(&v, &t.records, &s, &from, to)
    } else if a.json {
        twping::json(&v, &s)
    } else {
        twping::summary(&v, &s, &from, to, env, twping::Units::MS, &[]).replacen(
            "--- twping statistics",
            "--- stamp statistics",
            1,
        )
    };
    out.write_all(text.as_bytes())
        .map_err(|e| format!("writing the results: {e}"))
}

/// The replies a sender has read.
struct Replies {
    peer: SocketAddr,
    records: Vec<TwoWayRecord>,
    /// Sender sequence numbers answered at least once.
    answered: std::collections::HashSet<u32>,
    bad_hmac: u32,
}

impl Replies {
    fn take(&mut self, r: &Received, buf: &[u8], sender: &StampSender, clock: &SystemClock) {
        if r.source != self.peer || r.truncated {
            return;
        }
        let at = arrival(r, clock);
        let datagram = buf.get(..r.len).unwrap_or_default();
        match sender.handle_reply(at, r.ttl.unwrap_or(255), clock.error_estimate(), datagram) {
            Ok(rec) => {
                self.answered.insert(rec.sender_seq);
                self.records.push(rec);
            }
            Err(StampPacketError::Crypto(_)) => self.bad_hmac += 1,
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(v)
    }

    #[test]
    fn arguments() {
        let a = parse(&["stamp", "reflect", "--listen", "127.0.0.1:0", "--stateful"]).unwrap();
        match a.command {
            Command::Reflect(r) => {
                assert!(r.stateful && !r.light);
                assert_eq!(r.listen, "127.0.0.1:0".parse().unwrap());
            }
            Command::Send(_) => panic!("not send"),
        }
        let a = parse(&["stamp", "send", "-c", "5", "-s", "60", "--light", "h:9"]).unwrap();
        match a.command {
            Command::Send(s) => assert_eq!((s.count, s.size, s.light), (5, Some(60), true)),
            Command::Reflect(_) => panic!("not reflect"),
        }
        assert!(parse(&["stamp"]).is_err());
        assert!(parse(&["stamp", "send", "--light", "--auth-key-file", "k", "h"]).is_err());
        assert!(parse(&["stamp", "reflect", "--listen", "nowhere"]).is_err());
    }

    #[test]
    fn key_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, "00112233 44556677\n8899aabbccddeeff\n").unwrap();
        assert!(read_key(&p).is_ok());
        std::fs::write(&p, "0011").unwrap();
        assert!(read_key(&p).unwrap_err().contains("at least 16 octets"));
        std::fs::write(&p, "zz").unwrap();
        assert!(read_key(&p).unwrap_err().contains("hexadecimal"));
        assert!(read_key(&dir.path().join("none")).is_err());
    }
}
