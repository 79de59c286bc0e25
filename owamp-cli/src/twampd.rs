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
//! Not (yet) done: the pid and info files, received TTLs (std sockets cannot read them: 255
//! is reported), per-address limits.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::{CommandFactory, FromArgMatches};
use owamp_core::control::{AcceptCode, Protocol, Server, ServerConfig};
use owamp_core::io::{Input, Output};
use owamp_core::policy::Limits;
use owamp_core::session::twamp::Reflector;
use owamp_core::wire::SessionId;
use owamp_os::clock::{Clock, SystemClock};
use owamp_os::host::StopHandle;
use owamp_os::rng::OsRng;

use crate::daemon::Detached;
use crate::logging;
use crate::owampd::{self, Args, ConfNames, Fatal};

/// twampd's files, current name first, and its port (RFC 5357 3.1).
pub const TWAMPD_NAMES: ConfNames = ConfNames {
    conf: &["twamp-server.conf", "twampd.conf"],
    limits: &["twamp-server.limits", "twampd.limits"],
    pfs: &["twamp-server.pfs", "twampd.pfs"],
    port: crate::twping::CONTROL_PORT,
};

/// Control connections served at once when `maxcontrolsessions` is not set.
const DEFAULT_MAX_CONNECTIONS: usize = 64;

/// twampd's command line: owampd's flags under twampd's name.
pub fn command() -> clap::Command {
    Args::command()
        .name("twampd")
        .bin_name("twampd")
        .about("Two-way latency (TWAMP) server (perfSONAR twampd compatible)")
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
    if let Some((uid, gid)) = ids {
        owampd::drop_privileges(uid, gid)?;
    }
    let policy = s
        .limits
        .to_policy(s.modes, &s.pfs, s.conf.diskfudge.unwrap_or(1.0));
    let clock = SystemClock::new();
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
    let max = s
        .conf
        .maxcontrolsessions
        .map_or(DEFAULT_MAX_CONNECTIONS, |n| n as usize);
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
                    tracing::warn!("{peer}: refused, {max} control connections already");
                    continue;
                }
                active.fetch_add(1, Ordering::SeqCst);
                let (cfg, policy, active, stop) =
                    (cfg.clone(), policy.clone(), active.clone(), stop.clone());
                workers.push(std::thread::spawn(move || {
                    if let Err(e) = connection(tcp, peer, cfg, policy, &stop) {
                        tracing::info!("{peer}: {e}");
                    }
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
    socket: UdpSocket,
    reflector: Option<(Reflector, SocketAddr)>,
}

/// Serves one TWAMP control connection until it closes, the control timeout or `stop`.
fn connection(
    mut tcp: TcpStream,
    peer: SocketAddr,
    cfg: ServerConfig,
    policy: Limits,
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
                Output::PrepareTestEndpoint(e) => inputs.push(match UdpSocket::bind(e.local) {
                    Ok(u) => {
                        let port = u.local_addr().map_or(0, |a| a.port());
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
    socket: UdpSocket,
    mut r: Reflector,
    to: SocketAddr,
    clock: Arc<SystemClock>,
) -> Running {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        let _ = socket.set_read_timeout(Some(Duration::from_millis(50)));
        let s = socket2::SockRef::from(&socket);
        // Replies go out with TTL 255, as twampd's (RFC 5357 4.2.1).
        let _ = if to.is_ipv4() {
            s.set_ttl_v4(255)
        } else {
            s.set_unicast_hops_v6(255)
        };
        let (mut buf, mut reply) = (vec![0u8; 66_000], Vec::new());
        while !flag.load(Ordering::SeqCst) {
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                let at = clock.now();
                if from != to {
                    continue;
                }
                // std sockets cannot read the TTL received: 255 stands for "unknown".
                if r.reflect(
                    at,
                    255,
                    &buf[..n],
                    clock.now(),
                    clock.error_estimate(),
                    &mut reply,
                )
                .is_ok()
                {
                    let _ = socket.send_to(&reply, from);
                }
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
