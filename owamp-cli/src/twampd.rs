//! twampd: the TWAMP server (RFC 5357), configured as perfSONAR's twampd 5.2.3.
//!
//! Same flags and file formats as owampd ([`crate::owampd`]); the files in the `-c` directory
//! are `twamp-server.conf`, `.limits` and `.pfs` (or the older `twampd.*` names), and the
//! default control port is 862. It serves TWAMP-Control (RFC 5357 3) with the core's
//! `control::Server` and reflects every accepted session's packets with
//! `session::twamp::Reflector` (RFC 5357 4.2). Each control connection is served by its own
//! thread (at most `maxcontrolsessions`, default 64), each started session by a reflector
//! thread (at most 16 sessions a connection); every wait is bounded by a short socket
//! timeout, and a connection by the control timeout (`controltimeout`, default 1800 s). Without `-Z` it detaches ([`crate::daemon`])
//! and logs to syslog.
//!
//! The reflector's sockets are the OS layer's `TestSocket`s: replies go out with TTL 255,
//! and the TTL of each sender packet as received goes into the reply's Sender TTL (RFC 5357
//! 4.2.1), so that twping reports the hops; the kernel's receive time stamps the packet.
//!
//! As owampd it writes `twamp-server.pid` (locked while it runs) and `twamp-server.info` in
//! the var directory (`-R`, `vardir`), and keeps owampd's per-address limits:
//! `maxcontrolsessionsperaddr` control connections and `maxsessionsperaddr` test sessions
//! per client address (an IPv4 address or an IPv6 /64), checked with the class limits of
//! `twamp-server.limits` (`allow_open_mode`, `bandwidth`, ...) before a test port is bound.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::{CommandFactory, FromArgMatches};
use owamp_core::control::{AcceptCode, Modes, Protocol, Role, Server, ServerConfig};
use owamp_core::io::{Input, Output};
use owamp_core::policy::{Limits, Peer, PerAddr, ServerPolicy, SessionsPerAddr, TestAdmission};
use owamp_core::session::twamp::Reflector;
use owamp_core::wire::SessionId;
use owamp_os::clock::SystemTimeExt;
use owamp_os::clock::{Clock, SystemClock};
use owamp_os::host::StopHandle;
use owamp_os::net::{canonical, TestSocket};
use owamp_os::rng::OsRng;

use crate::daemon::Detached;
use crate::logging;
use crate::owampd::{self, Args, ConfNames, Fatal, PerAddrLimits, PidFile};

/// twampd's files, current name first, and its port (RFC 5357 3.1).
pub const TWAMPD_NAMES: ConfNames = ConfNames {
    conf: &["twamp-server.conf", "twampd.conf"],
    limits: &["twamp-server.limits", "twampd.limits"],
    pfs: &["twamp-server.pfs", "twampd.pfs"],
    port: crate::twping::CONTROL_PORT,
    twamp: true,
    daemon: "twampd",
    pid: "twamp-server.pid",
    info: "twamp-server.info",
};

/// Control connections served at once when `maxcontrolsessions` is not set (each has a
/// thread): at most this, fewer if the descriptor limit says so.
const DEFAULT_MAX_CONNECTIONS: usize = 64;

/// twampd's policy: the class limits of `twamp-server.limits` and the test sessions per
/// client address (`maxsessionsperaddr`), both shared by every connection.
#[derive(Debug, Clone)]
struct TwampPolicy {
    limits: Limits,
    per_addr: SessionsPerAddr,
}

impl ServerPolicy for TwampPolicy {
    fn modes(&mut self, addr: std::net::IpAddr) -> Modes {
        self.limits.modes(addr)
    }
    fn passphrase(&mut self, key_id: &[u8]) -> Option<owamp_core::crypto::Passphrase> {
        self.limits.passphrase(key_id)
    }
    fn allow_control(&mut self, peer: Peer<'_>) -> Result<(), AcceptCode> {
        let r = self.limits.allow_control(peer);
        if r.is_err() {
            tracing::info!(
                "{}: control connection refused by the limits (allow_open_mode)",
                peer.addr
            );
        }
        r
    }
    fn admit_test(&mut self, test: &TestAdmission<'_>) -> Result<(), AcceptCode> {
        // Before the class limits and before any test port is bound (Accept 5, a temporary
        // resource limitation, as owampd).
        if let Err(e) = self.per_addr.admit(test.peer.addr, test.sid, test.role) {
            tracing::info!(
                "session request from {} refused: per-address limit: {e} test sessions",
                test.peer.addr
            );
            return Err(AcceptCode::TemporaryResourceLimit);
        }
        if let Err(code) = self.limits.admit_test(test) {
            self.per_addr.release(&test.sid, test.role);
            tracing::info!(
                "session request from {} refused by the limits: {code:?}",
                test.peer.addr
            );
            return Err(code);
        }
        Ok(())
    }
    fn release_test(&mut self, sid: &owamp_core::wire::SessionId, role: Role) {
        self.per_addr.release(sid, role);
        self.limits.release_test(sid, role)
    }
}

/// twampd's command line: owampd's flags under twampd's name.
pub fn command() -> clap::Command {
    Args::command()
        .name("twampd")
        .bin_name("twampd")
        .about("Two-way latency (TWAMP) server (perfSONAR twampd compatible)")
        .mut_arg("authmode", |a| {
            a.help("authentication modes offered: [E]ncrypted, [A]uthenticated, [M]ixed, [O]pen")
        })
        .mut_arg("datadir", |a| {
            a.help("data directory (twampd stores no sessions)")
        })
        .mut_arg("allow_root", |a| a.help("allow twampd to run as root"))
        .mut_arg("vardir", |a| {
            a.help("directory for the twamp-server.pid and .info files")
        })
        .mut_arg("foreground", |a| {
            a.help(
                "run in the foreground, logging to standard error (without it twampd detaches \
                 and logs to syslog)",
            )
        })
        // Not served by twampd yet: refused at start (see `serve`).
        .mut_arg("metrics", |a| a.hide(true))
}

fn parse(argv: impl IntoIterator<Item = OsString>) -> Result<Args, clap::Error> {
    let m = command().try_get_matches_from(argv)?;
    Args::from_arg_matches(&m)
}

/// Whether the command line asks twampd to detach: it does without `-Z`.
pub fn wants_daemon(argv: &[OsString]) -> bool {
    parse(argv.iter().cloned()).is_ok_and(|a| !a.foreground)
}

/// Runs twampd until `stop` is set; `detached` as [`owampd::run_as`]. Returns the exit status.
pub fn run_as(
    argv: impl IntoIterator<Item = OsString>,
    stop: &StopHandle,
    ready: &mut dyn FnMut(&[SocketAddr]),
    detached: Option<Detached>,
) -> i32 {
    logging::init("twampd", Some(tracing::Level::INFO));
    let args = match parse(argv) {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let daemon = detached.is_some();
    let mut detached = detached;
    let mut on_ready = |addrs: &[SocketAddr]| {
        ready(addrs);
        if let Some(d) = detached.take() {
            if let Err(e) = logging::set_destination(logging::Destination::Syslog) {
                tracing::error!("{e}");
            }
            d.ready();
        }
    };
    match serve(&args, stop, &mut on_ready, daemon) {
        Ok(()) => 0,
        Err(Fatal(m)) => {
            for line in m.lines() {
                tracing::error!("{line}");
            }
            1
        }
    }
}

fn serve(
    args: &Args,
    stop: &StopHandle,
    ready: &mut dyn FnMut(&[SocketAddr]),
    daemon: bool,
) -> Result<(), Fatal> {
    let s = owampd::load_settings_named(args, &TWAMPD_NAMES)?;
    // owampd's flags and keys, all but this one (docs/metrics.md).
    if s.conf.metrics.is_some() {
        return Err(Fatal(
            "metrics: twampd has no Prometheus metrics yet (owampd and powstream do)".into(),
        ));
    }
    owampd::configure_log(args, &s, daemon)?;
    for w in &s.warnings {
        tracing::warn!("{w}");
    }
    let ids = owampd::privileges(&s)?;
    let mut listeners = Vec::new();
    let mut last_err = None;
    for a in &s.listen {
        match owampd::bind_listener(*a) {
            Ok(l) => listeners.push(l),
            Err(e) => last_err = Some(format!("{a}: {e}")),
        }
    }
    if listeners.is_empty() {
        return Err(Fatal(format!(
            "Unable to listen: {}",
            last_err.unwrap_or_else(|| "no address".into())
        )));
    }
    // As owampd: listen first (the port may be privileged), then the pid and info files,
    // then drop root.
    let pid = PidFile::create_named(&s.vardir, &TWAMPD_NAMES)?;
    let clock = SystemClock::new();
    owampd::write_info_file(&s, clock.now())?;
    if let Some((uid, gid)) = ids {
        owampd::drop_privileges(uid, gid)?;
    }
    let per_addr = PerAddrLimits::of(&s.conf, owampd::nofile_limit());
    let policy = TwampPolicy {
        limits: s
            .limits
            .to_policy(s.modes, &s.pfs, s.conf.diskfudge.unwrap_or(1.0)),
        per_addr: SessionsPerAddr::new(per_addr.sessions),
    };
    let cfg = ServerConfig {
        start_time: clock.now(),
        test_ports: s
            .conf
            .testports
            .and_then(crate::config::server::TestPorts::range),
        control_timeout: Duration::from_secs(u64::from(s.conf.controltimeout.unwrap_or(1800))),
        protocol: Protocol::Twamp,
        ..ServerConfig::default()
    };
    let max = match s.conf.maxcontrolsessions {
        Some(_) => per_addr.connections,
        None => per_addr.connections.min(DEFAULT_MAX_CONNECTIONS),
    };
    let connections_per_addr = PerAddr::new(per_addr.connections_per_addr);
    owampd::log(&format!(
        "limits: {} control connections, {} per address, {} test sessions per address \
         (an IPv4 address or an IPv6 /64; 0: none)",
        owampd::shown(max),
        per_addr.connections_per_addr,
        per_addr.sessions
    ));
    let addrs: Vec<SocketAddr> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    for l in &listeners {
        l.set_nonblocking(true)
            .map_err(|e| Fatal(format!("listener: {e}")))?;
    }
    owampd::log(&format!(
        "twampd listening on {}",
        addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    ));
    ready(&addrs);
    let active = Arc::new(AtomicUsize::new(0));
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    while !stop.is_stopped() {
        let mut idle = true;
        for l in &listeners {
            if let Ok((tcp, peer)) = l.accept() {
                idle = false;
                if active.load(Ordering::SeqCst) >= max {
                    tracing::warn!(
                        "{peer}: refused, {max} control connections already (maxcontrolsessions)"
                    );
                    continue;
                }
                if let Err(e) = connections_per_addr.acquire(peer.ip()) {
                    tracing::warn!(
                        "{peer}: refused, {e} control connections (maxcontrolsessionsperaddr)"
                    );
                    continue;
                }
                active.fetch_add(1, Ordering::SeqCst);
                let (cfg, policy, active, stop, per_addr) = (
                    cfg.clone(),
                    policy.clone(),
                    active.clone(),
                    stop.clone(),
                    connections_per_addr.clone(),
                );
                workers.push(std::thread::spawn(move || {
                    if let Err(e) = connection(tcp, peer, cfg, policy, &stop) {
                        tracing::info!("{peer}: {e}");
                    }
                    per_addr.release(peer.ip());
                    active.fetch_sub(1, Ordering::SeqCst);
                }));
            }
        }
        workers.retain(|w| !w.is_finished());
        if idle {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for w in workers {
        let _ = w.join();
    }
    drop(pid);
    Ok(())
}

/// Test sessions (sockets and reflector threads) one control connection may hold.
const MAX_SESSIONS_PER_CONNECTION: usize = 16;

/// A reflector thread and its stop flag.
struct Running {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// An accepted session's socket and reflector, until Start-Sessions.
struct Session {
    socket: TestSocket,
    reflector: Option<(Reflector, SocketAddr)>,
}

/// Serves one TWAMP control connection until it closes, the control timeout or `stop`.
fn connection(
    mut tcp: TcpStream,
    peer: SocketAddr,
    cfg: ServerConfig,
    policy: TwampPolicy,
    stop: &StopHandle,
) -> Result<(), String> {
    tcp.set_nonblocking(false).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_millis(20)))
        .map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let clock = Arc::new(SystemClock::new());
    let local = tcp.local_addr().map_err(|e| e.to_string())?;
    // The longest a connection may live: bounded even if the state machine never closes.
    let limit = Instant::now() + cfg.control_timeout.saturating_mul(2) + Duration::from_secs(60);
    let mut server = Server::new(clock.now(), cfg, policy, OsRng, local, peer);
    let mut sessions: HashMap<SessionId, Session> = HashMap::new();
    let mut running: Vec<Running> = Vec::new();
    let mut buf = [0u8; 4096];
    let result = loop {
        if stop.is_stopped() || Instant::now() >= limit {
            break Ok(());
        }
        let mut inputs = Vec::new();
        let mut closed = false;
        while let Some(o) = server.poll_output() {
            match o {
                Output::Transmit(b) => {
                    if let Err(e) = tcp.write_all(&b) {
                        closed = true;
                        tracing::info!("{peer}: {e}");
                    }
                }
                Output::PrepareTestEndpoint(e)
                    if sessions.len() + running.len() >= MAX_SESSIONS_PER_CONNECTION =>
                {
                    inputs.push(Input::EndpointFailed {
                        sid: e.sid,
                        accept: AcceptCode::TemporaryResourceLimit,
                    })
                }
                Output::PrepareTestEndpoint(e) => inputs.push(match TestSocket::bind(e.local) {
                    Ok(u) => {
                        let port = u.local_addr().port();
                        sessions.insert(
                            e.sid,
                            Session {
                                socket: u,
                                reflector: None,
                            },
                        );
                        Input::EndpointReady { sid: e.sid, port }
                    }
                    Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => {
                        Input::PortInUse { sid: e.sid }
                    }
                    Err(_) => Input::EndpointFailed {
                        sid: e.sid,
                        accept: AcceptCode::Failure,
                    },
                }),
                Output::SessionAccepted(info) => {
                    if let Some(s) = sessions.get_mut(&info.sid) {
                        match Reflector::new(&info) {
                            Ok(r) => s.reflector = Some((r, info.peer)),
                            Err(e) => tracing::warn!("{peer}: session: {e}"),
                        }
                    }
                }
                Output::StartSessions => {
                    for (_, s) in sessions.drain() {
                        if let Some((r, to)) = s.reflector {
                            running.push(reflect(s.socket, r, to, clock.clone()));
                        }
                    }
                }
                Output::StopLocalSessions => stop_all(&mut running),
                Output::Close(r) => {
                    tracing::debug!("{peer}: closed: {r:?}");
                    closed = true;
                }
                _ => {}
            }
        }
        if closed {
            break Ok(());
        }
        for i in inputs {
            if let Err(e) = server.handle_input(clock.now(), i) {
                // The state machine queued its Close; the next round writes it out.
                tracing::info!("{peer}: {e}");
            }
        }
        if server.poll_timeout().is_some_and(|t| clock.now() >= t) {
            let _ = server.handle_input(clock.now(), Input::Timer);
            continue;
        }
        match tcp.read(&mut buf) {
            Ok(0) => {
                let _ = server.handle_input(clock.now(), Input::PeerClosed);
                break Ok(());
            }
            Ok(n) => {
                if let Err(e) = server.handle_input(clock.now(), Input::Received(&buf[..n])) {
                    // The state machine queued its Close; let the loop write it out.
                    tracing::info!("{peer}: {e}");
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => break Err(e.to_string()),
        }
    };
    stop_all(&mut running);
    result
}

fn stop_all(running: &mut Vec<Running>) {
    for r in running.iter() {
        r.stop.store(true, Ordering::SeqCst);
    }
    for r in running.drain(..) {
        let _ = r.thread.join();
    }
}

/// Reflects the packets from `to` arriving on `socket` (RFC 5357 4.2.1) until stopped.
fn reflect(
    socket: TestSocket,
    mut r: Reflector,
    to: SocketAddr,
    clock: Arc<SystemClock>,
) -> Running {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        // Replies go out with TTL 255, as twampd's (TestSocket's configuration).
        let to = canonical(to);
        let (mut buf, mut reply) = (vec![0u8; 66_000], Vec::new());
        while !flag.load(Ordering::SeqCst) {
            let Ok(Some(got)) = socket.recv(&mut buf, Duration::from_millis(50)) else {
                continue;
            };
            let at = got
                .kernel_time
                .and_then(|t| t.to_owamp_time())
                .unwrap_or_else(|| clock.now());
            if canonical(got.source) != to || got.truncated {
                continue;
            }
            let Some(datagram) = buf.get(..got.len) else {
                continue;
            };
            // RFC 5357 4.2.1: Sender TTL is the TTL the packet arrived with (255 when the
            // kernel does not tell it).
            let ttl = got.ttl.unwrap_or(255);
            if r.reflect(
                at,
                ttl,
                datagram,
                clock.now(),
                clock.error_estimate(),
                &mut reply,
            )
            .is_ok()
            {
                let _ = socket.send_to(&reply, got.source);
            }
        }
    });
    Running { stop, thread }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_port_is_862() {
        let a = owampd::listen_addrs_on(Some("127.0.0.1"), TWAMPD_NAMES.port).unwrap();
        assert_eq!(a, vec!["127.0.0.1:862".parse().unwrap()]);
        let a = owampd::listen_addrs_on(Some("127.0.0.1:9000"), TWAMPD_NAMES.port).unwrap();
        assert_eq!(a, vec!["127.0.0.1:9000".parse().unwrap()]);
        let a = owampd::listen_addrs_on(None, TWAMPD_NAMES.port).unwrap();
        assert!(a.iter().all(|a| a.port() == 862) && a.len() == 2);
        // owampd keeps 861.
        let a = owampd::listen_addrs(Some("127.0.0.1")).unwrap();
        assert_eq!(a[0].port(), 861);
    }

    /// RFC 5357 4.2.1: the reply's Sender TTL is the TTL the sender's packet arrived with
    /// (64 here), read from the socket, not a constant.
    #[test]
    fn the_reflector_reports_the_ttl_received() {
        use owamp_core::session::PacketProtection;
        let socket = TestSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        if !socket.features().ttl {
            eprintln!("skipped: the kernel does not deliver received TTLs");
            return;
        }
        let to = socket.local_addr();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_ttl(64).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let running = reflect(
            socket,
            Reflector::with_protection(PacketProtection::Open),
            client.local_addr().unwrap(),
            Arc::new(SystemClock::new()),
        );
        // An open sender packet (RFC 4656 4.1.2): sequence 0, a timestamp, an error
        // estimate with multiplier 1, and 27 octets of padding.
        let mut pkt = vec![0u8; 14 + 27];
        pkt[4] = 0xee;
        pkt[13] = 1;
        client.send_to(&pkt, to).unwrap();
        let mut buf = [0u8; 128];
        let got = client.recv_from(&mut buf);
        let mut running = vec![running];
        stop_all(&mut running);
        let (n, from) = got.expect("a reply");
        assert_eq!(from, to);
        assert_eq!(n, 41, "the open reflector packet");
        assert_eq!(buf[40], 64, "Sender TTL");
    }

    #[test]
    fn mixed_mode_is_offered_by_default_and_only_by_twampd() {
        use owamp_core::wire::twamp::offers_mixed;
        let dir = tempfile::tempdir().unwrap();
        for f in ["twamp-server.conf", "owamp-server.conf"] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        let d = dir.path().to_str().unwrap();
        let load = |v: &[&str]| {
            let a = parse(v.iter().map(OsString::from)).unwrap();
            owampd::load_settings_named(&a, &TWAMPD_NAMES)
        };
        let s = load(&["twampd", "-c", d]).unwrap();
        assert!(offers_mixed(s.modes) && s.modes.known() == Modes::ALL);
        let s = load(&["twampd", "-c", d, "-a", "AM"]).unwrap();
        assert!(offers_mixed(s.modes) && s.modes.known() == Modes::AUTHENTICATED);
        let s = load(&["twampd", "-c", d, "-a", "O"]).unwrap();
        assert!(!offers_mixed(s.modes));
        let a = <Args as clap::Parser>::try_parse_from(["owampd", "-c", d, "-a", "M"]).unwrap();
        assert!(owampd::load_settings(&a).is_err());
    }

    #[test]
    fn command_line_is_owampds_under_twampds_name() {
        let a = parse(["twampd", "-Z", "-c", "/x"].map(OsString::from)).unwrap();
        assert!(a.foreground);
        assert!(!wants_daemon(&["twampd", "-Z"].map(OsString::from)));
        assert!(wants_daemon(&["twampd"].map(OsString::from)));
        assert!(parse(["twampd", "-q"].map(OsString::from)).is_err());
        assert_eq!(command().get_name(), "twampd");
    }
}
