//! twampd: the TWAMP server (RFC 5357), configured as perfSONAR's twampd 5.2.3.
//!
//! Same flags and file formats as owampd ([`crate::owampd`]); the files in the `-c` directory
//! are `twamp-server.conf`, `.limits` and `.pfs` (or the older `twampd.*` names), and the
//! default control port is 862. It is served as owampd is: `owamp_tokio::control::Server` on
//! one Tokio runtime of two worker threads, each control connection a task driving the core's
//! `connection::ServerConnection` with `Protocol::Twamp`, which reflects every accepted
//! session's packets itself (RFC 5357 4.2) and keeps answering for the request's Timeout after
//! Stop-Sessions (RFC 5357 3.5). At most `maxcontrolsessions` connections (default 64) and 16
//! test sessions a connection; a connection is bounded by the control timeout
//! (`controltimeout`, default 1800 s). Without `-Z` it detaches ([`crate::daemon`]) and logs
//! to syslog.
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

use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches};
use owamp_core::control::{AcceptCode, CloseReason, Modes, Protocol, Role};
use owamp_core::policy::{Limits, Peer, ServerPolicy, SessionsPerAddr, TestAdmission};
use owamp_os::clock::{Clock, SystemClock};
use owamp_os::host::{ConnectionSummary, HostWarning, Refusal, Refused, ServeConfig, StopHandle};
use owamp_os::store::{MemoryStore, SessionStore};

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

/// Test sessions (reflectors, each with its socket) one control connection may hold.
const MAX_SESSIONS_PER_CONNECTION: usize = 16;

/// twampd's policy: the class limits of `twamp-server.limits` and the test sessions per
/// client address (`maxsessionsperaddr`), both shared by every connection.
#[derive(Debug, Clone)]
struct TwampPolicy {
    limits: Limits,
    per_addr: SessionsPerAddr,
    /// Test sessions admitted on this connection and not yet released: each connection
    /// gets its own clone of the policy, with its own count.
    sessions: usize,
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
        if self.sessions >= MAX_SESSIONS_PER_CONNECTION {
            tracing::info!(
                "session request from {} refused: {MAX_SESSIONS_PER_CONNECTION} test sessions \
                 on its connection already",
                test.peer.addr
            );
            return Err(AcceptCode::TemporaryResourceLimit);
        }
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
        self.sessions += 1;
        Ok(())
    }
    fn release_test(&mut self, sid: &owamp_core::wire::SessionId, role: Role) {
        self.sessions = self.sessions.saturating_sub(1);
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
    let clock = SystemClock::shared();
    let start = Clock::now(&clock);
    owampd::write_info_file(&s, start)?;
    if let Some((uid, gid)) = ids {
        owampd::drop_privileges(uid, gid)?;
    }
    let per_addr = PerAddrLimits::of(&s.conf, owampd::nofile_limit());
    let policy = TwampPolicy {
        limits: s
            .limits
            .to_policy(s.modes, &s.pfs, s.conf.diskfudge.unwrap_or(1.0)),
        per_addr: SessionsPerAddr::new(per_addr.sessions),
        sessions: 0,
    };
    let mut cfg = ServeConfig::default();
    cfg.control.start_time = start;
    cfg.control.test_ports = s
        .conf
        .testports
        .and_then(crate::config::server::TestPorts::range);
    cfg.control.control_timeout =
        Duration::from_secs(u64::from(s.conf.controltimeout.unwrap_or(1800)));
    cfg.control.protocol = Protocol::Twamp;
    cfg.endpoint.clock = clock;
    // A reflector sends nothing on a schedule: its replies leave as the packets arrive, so
    // neither a fine timer nor a spin before a due packet is of any use.
    cfg.endpoint.fine_timer = false;
    cfg.endpoint.max_spin = Duration::ZERO;
    cfg.endpoint.warn = Some(Arc::new(|w: &HostWarning| tracing::warn!("warning: {w}")));
    cfg.max_connections = match s.conf.maxcontrolsessions {
        Some(_) => per_addr.connections,
        None => per_addr.connections.min(DEFAULT_MAX_CONNECTIONS),
    };
    cfg.max_connections_per_addr = per_addr.connections_per_addr;
    cfg.refused = Some(Arc::new(|r: &Refused| {
        let setting = match r.reason {
            Refusal::Busy { .. } => " (maxcontrolsessions)",
            Refusal::PerAddr(_) => " (maxcontrolsessionsperaddr)",
            _ => "",
        };
        tracing::warn!("{r}{setting}")
    }));
    cfg.shutdown_grace = Duration::from_secs(u64::from(s.conf.dieby.unwrap_or(5)));
    cfg.log = Some(Arc::new(|c: &ConnectionSummary| {
        let abnormal = !matches!(
            c.close,
            None | Some(CloseReason::Local | CloseReason::PeerClosed)
        );
        if abnormal {
            tracing::info!("{}", owampd::describe(c));
        }
    }));
    owampd::log(&format!(
        "limits: {} control connections, {} per address, {} test sessions per address \
         (an IPv4 address or an IPv6 /64; 0: none)",
        owampd::shown(cfg.max_connections),
        per_addr.connections_per_addr,
        per_addr.sessions
    ));
    // A reflector stores nothing: the store only completes the server's parts.
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::with_limit(1));
    run_servers(listeners, cfg, policy, store, stop, ready)?;
    drop(pid);
    Ok(())
}

/// Serves every listener on one Tokio runtime of two worker threads, as owampd: control
/// connections and their reflectors are tasks, not threads.
fn run_servers(
    listeners: Vec<TcpListener>,
    cfg: ServeConfig,
    policy: TwampPolicy,
    store: Arc<dyn SessionStore>,
    stop: &StopHandle,
    ready: &mut dyn FnMut(&[SocketAddr]),
) -> Result<(), Fatal> {
    owampd::server_runtime()?.block_on(async {
        let handle = owamp_tokio::control::ServerHandle::default();
        let (running, bound) = owampd::spawn_servers(listeners, &cfg, &policy, &store, &handle)?;
        owampd::log(&format!(
            "twampd listening on {}",
            bound
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
        ready(&bound);
        while !stop.is_stopped() && !handle.is_shutdown() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        owampd::shut_down(running).await;
        Ok::<(), Fatal>(())
    })
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
