//! owampd: the OWAMP server, configured as perfSONAR's owampd.
//!
//! Configuration comes from the `-c` directory (`owamp-server.conf`, `.limits`, `.pfs`, or the
//! older `owampd.*` names); command-line flags take precedence over `owamp-server.conf`. The
//! daemon runs in the foreground and logs to standard error (`-Z` and `-e` are accepted for
//! compatibility; see the user guide). It writes `owamp-server.pid` (locked while it runs) and
//! `owamp-server.info` (`START=` its start time, `PID=`) in the var directory, keeps received
//! sessions in perfSONAR's layout in the data directory (`hierarchy/<class>/.../<sid>.owp`, a
//! `catalog/<sid>.owp` link each: [`owamp_os::hierarchy`]), deletes those older than
//! `keepfor` seconds when set, and shuts down cleanly on SIGINT, SIGTERM or SIGHUP: running
//! tests are stopped, their records stored, and the pid file removed. Connections are served
//! as tasks on a Tokio runtime of two worker threads.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use owamp_core::control::{AcceptCode, CloseReason, Modes, Role};
use owamp_core::policy::{Limits, Peer, ServerPolicy, SessionsPerAddr, TestAdmission};
use owamp_core::wire::SessionId;
use owamp_os::hierarchy::{HierarchyStore, Placement};
use owamp_os::host::{ConnectionSummary, HostWarning, Refusal, Refused, ServeConfig, StopHandle};
use owamp_os::store::SessionStore;

use crate::client::CONTROL_PORT;
use crate::config::server::SendTiming;
use crate::config::{self, limits, pfs, server, FileError};
use crate::daemon::Detached;
use crate::logging;
use crate::metrics::owampd::OwampdMetrics;

/// Names of the configuration files, current name first.
pub const CONF_NAMES: [&str; 2] = ["owamp-server.conf", "owampd.conf"];
/// Names of the limits file.
pub const LIMITS_NAMES: [&str; 2] = ["owamp-server.limits", "owampd.limits"];
/// Names of the pass-phrase file.
pub const PFS_NAMES: [&str; 2] = ["owamp-server.pfs", "owampd.pfs"];
/// The pid file in the var directory.
pub const PID_FILE: &str = "owamp-server.pid";
/// The info file (`START=` the start time as a 64-bit OWAMP timestamp in decimal, `PID=`) in
/// the var directory, as perfSONAR's owampd writes it.
pub const INFO_FILE: &str = "owamp-server.info";

/// Command-line arguments (perfSONAR owampd's flags).
#[derive(Debug, Parser)]
#[command(
    name = "owampd",
    about = "One-way latency server (perfSONAR owampd compatible)",
    version = crate::man::VERSION,
    disable_version_flag = true,
    arg = crate::man::version_flag(),
    after_help = crate::man::VERSION_LINE
)]
pub struct Args {
    /// Modes offered (`-a`): letters A, E, O.
    #[arg(
        help = "authentication modes offered: [A]uthenticated, [E]ncrypted, [O]pen",
        short = 'a',
        value_name = "authmode"
    )]
    pub authmode: Option<String>,
    /// configuration directory
    #[arg(short = 'c', value_name = "confdir")]
    pub confdir: Option<PathBuf>,
    /// data directory (received sessions)
    #[arg(short = 'd', value_name = "datadir")]
    pub datadir: Option<PathBuf>,
    /// syslog facility (default daemon; with -Z, giving it logs to syslog)
    #[arg(short = 'e', value_name = "facility")]
    pub facility: Option<String>,
    /// allow owampd to run as root
    #[arg(short = 'f')]
    pub allow_root: bool,
    /// group to run as when started as root (name or -gid)
    #[arg(short = 'G', value_name = "group", allow_hyphen_values = true)]
    pub group: Option<String>,
    /// port range for receivers to use (0 for any)
    #[arg(short = 'P', value_name = "portrange")]
    pub testports: Option<String>,
    /// directory for the owamp-server.pid and .info files
    #[arg(short = 'R', value_name = "vardir")]
    pub vardir: Option<PathBuf>,
    /// Listen address (`-S`): node:port, node, :port or a bracketed IPv6 address with a port.
    #[arg(
        help = "address and port to listen on: node:port, node, :port, [v6addr]:port",
        short = 'S',
        value_name = "nodename:port"
    )]
    pub srcnode: Option<String>,
    /// user to run as when started as root (name or -uid)
    #[arg(short = 'U', value_name = "user", allow_hyphen_values = true)]
    pub user: Option<String>,
    /// verbose output
    #[arg(short = 'v')]
    pub verbose: bool,
    /// run in the foreground, logging to standard error (without it owampd detaches and logs
    /// to syslog)
    #[arg(short = 'Z')]
    pub foreground: bool,
    /// debugging flag of the reference; ignored
    #[arg(short = 'w', hide = true)]
    pub childwait: bool,
    /// serve Prometheus metrics (OpenMetrics text) at http://ADDR:PORT/metrics (or the
    /// `metrics` key of owamp-server.conf)
    #[arg(long = "metrics", value_name = "addr:port")]
    pub metrics: Option<String>,
}

/// The daemon's settings: the configuration file with the command line applied.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Configuration directory.
    pub confdir: PathBuf,
    /// The files read.
    pub files: Vec<PathBuf>,
    /// `owamp-server.conf` with the command line applied.
    pub conf: server::ServerConf,
    /// The limits.
    pub limits: limits::LimitsConf,
    /// The identities.
    pub pfs: pfs::PfsFile,
    /// Modes offered.
    pub modes: Modes,
    /// Where to listen.
    pub listen: Vec<SocketAddr>,
    /// Received sessions go here.
    pub datadir: PathBuf,
    /// Pid and info files go here.
    pub vardir: PathBuf,
    /// Allow running as root.
    pub allow_root: bool,
    /// What to warn about at start-up (a pass-phrase file others may read).
    pub warnings: Vec<String>,
    /// The daemon's files and name.
    pub names: ConfNames,
}

/// An error that stops owampd, with the message to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fatal(pub String);

impl From<FileError> for Fatal {
    fn from(e: FileError) -> Self {
        Fatal(e.to_string())
    }
}

/// Parses `srcnode` / `-S`: `node:port`, `node`, `:port`, `[v6]:port`, `[v6]`. Returns the node
/// (`None` for the wildcard) and the port.
pub fn parse_srcnode(s: &str) -> Result<(Option<String>, u16), String> {
    if let Some(p) = s.strip_prefix(':') {
        let port = p
            .parse::<u16>()
            .map_err(|_| format!("invalid port in \"{s}\""))?;
        return Ok((None, port));
    }
    // Port 0 (any free port) is allowed here, unlike for a peer.
    if let Some(rest) = s.strip_suffix(":0") {
        let h = crate::client::parse_host(rest, CONTROL_PORT)?;
        return Ok((Some(h.node), 0));
    }
    let h = crate::client::parse_host(s, CONTROL_PORT)?;
    Ok((Some(h.node), h.port))
}

/// The addresses to listen on for a `srcnode` value (`None`: the wildcard on port 861).
pub fn listen_addrs(srcnode: Option<&str>) -> Result<Vec<SocketAddr>, String> {
    listen_addrs_on(srcnode, CONTROL_PORT)
}

/// [`listen_addrs`] with another default port (twampd's 862).
pub fn listen_addrs_on(
    srcnode: Option<&str>,
    default_port: u16,
) -> Result<Vec<SocketAddr>, String> {
    let (node, port) = match srcnode {
        Some(s) => {
            let (node, port) = parse_srcnode(s)?;
            // A node without a port: the default port of this daemon.
            let written = s.ends_with(&format!(":{port}"));
            (node, if written { port } else { default_port })
        }
        None => (None, default_port),
    };
    match node {
        // The wildcard: both families, each on its own socket.
        None => Ok(vec![
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
        ]),
        Some(n) => {
            let addrs: Vec<SocketAddr> = (n.as_str(), port)
                .to_socket_addrs()
                .map_err(|e| format!("{n}: {e}"))?
                .collect();
            // One address is enough: a name may resolve to several.
            addrs
                .into_iter()
                .next()
                .map(|a| vec![a])
                .ok_or_else(|| format!("{n}: no address"))
        }
    }
}

/// The names of a daemon's configuration files (current name first) and its default port.
#[derive(Debug, Clone, Copy)]
pub struct ConfNames {
    /// The configuration file.
    pub conf: &'static [&'static str],
    /// The limits file.
    pub limits: &'static [&'static str],
    /// The pass-phrase file.
    pub pfs: &'static [&'static str],
    /// The control port when `srcnode`/`-S` names none.
    pub port: u16,
    /// Whether the daemon speaks TWAMP: it offers RFC 5618's mixed mode (M) by default and
    /// accepts it in `authmode`; owampd refuses M.
    pub twamp: bool,
    /// The daemon's name in its messages.
    pub daemon: &'static str,
    /// The pid file in the var directory.
    pub pid: &'static str,
    /// The info file in the var directory.
    pub info: &'static str,
}

/// owampd's files and port.
pub const OWAMPD_NAMES: ConfNames = ConfNames {
    conf: &CONF_NAMES,
    limits: &LIMITS_NAMES,
    pfs: &PFS_NAMES,
    port: CONTROL_PORT,
    twamp: false,
    daemon: "owampd",
    pid: PID_FILE,
    info: INFO_FILE,
};

/// Reads the configuration directory and applies the command line.
pub fn load_settings(args: &Args) -> Result<Settings, Fatal> {
    load_settings_named(args, &OWAMPD_NAMES)
}

/// [`load_settings`] for a daemon whose files have other names (twampd).
pub fn load_settings_named(args: &Args, names: &ConfNames) -> Result<Settings, Fatal> {
    let cwd = std::env::current_dir().map_err(|e| Fatal(format!("getcwd(): {e}")))?;
    let confdir = args.confdir.clone().unwrap_or_else(|| cwd.clone());
    if args.confdir.is_some() {
        // Without this a directory owampd may not read looks empty ("no owamp-server.conf").
        std::fs::read_dir(&confdir).map_err(|e| {
            Fatal(format!(
                "Unable to read the configuration directory {}: {e}",
                confdir.display()
            ))
        })?;
    }
    let mut files = Vec::new();
    let mut conf = match config::find_in_dir(&confdir, names.conf) {
        Some(p) => {
            let c = config::read_file(&p, server::parse)?;
            files.push(p);
            c
        }
        // Like the reference: a configuration directory given explicitly must hold the file.
        None if args.confdir.is_some() => {
            return Err(Fatal(format!(
                "Unable to open {}: no {} or {} there",
                confdir.display(),
                names.conf[0],
                names.conf[1]
            )))
        }
        None => server::ServerConf::default(),
    };
    let mut warnings = Vec::new();
    let pfs = match config::find_in_dir(&confdir, names.pfs) {
        Some(p) => {
            let (f, loose) = pfs::read(&p)?;
            warnings.extend(loose.map(|w| w.to_string()));
            f.check_unique()
                .map_err(|e| Fatal(e.in_file(&p).to_string()))?;
            files.push(p);
            f
        }
        None => pfs::PfsFile::default(),
    };
    let limits = match config::find_in_dir(&confdir, names.limits) {
        Some(p) => {
            let l = config::read_file(&p, limits::parse)?;
            l.check_users(&pfs)
                .map_err(|e| Fatal(e.in_file(&p).to_string()))?;
            files.push(p);
            l
        }
        None => limits::LimitsConf::default(),
    };

    apply_command_line(&mut conf, args)?;
    let listen = listen_addrs_on(conf.srcnode.as_deref(), names.port)
        .map_err(|e| Fatal(format!("Invalid source address (srcnode/-S): {e}")))?;
    let modes = match conf.authmode {
        Some(m) if names.twamp => m,
        Some(m) => server::owamp_modes(m).map_err(|e| Fatal(format!("Invalid authmode: {e}")))?,
        // twampd offers E, A, M and O by default (RFC 5618 mixed mode included).
        None if names.twamp => owamp_core::wire::twamp::with_mixed(Modes::ALL),
        None => Modes::ALL,
    };
    Ok(Settings {
        confdir,
        files,
        modes,
        listen,
        datadir: conf.datadir.clone().unwrap_or_else(|| cwd.clone()),
        vardir: conf.vardir.clone().unwrap_or(cwd),
        allow_root: args.allow_root || conf.rootfolly,
        conf,
        limits,
        pfs,
        warnings,
        names: *names,
    })
}

/// Applies the command line to the configuration file's settings: the command line takes
/// precedence. Checks what it sets as the file's parser would.
pub fn apply_command_line(conf: &mut server::ServerConf, args: &Args) -> Result<(), Fatal> {
    if let Some(a) = &args.authmode {
        conf.authmode =
            Some(server::parse_modes(a).map_err(|e| Fatal(format!("Invalid -a authmode: {e}")))?);
    }
    if let Some(f) = &args.facility {
        conf.facility = Some(
            server::check_facility(f)
                .map_err(|e| Fatal(format!("Invalid -e: Syslog facility \"{f}\": {e}")))?,
        );
    }
    if let Some(p) = &args.testports {
        conf.testports = Some(
            server::parse_test_ports(p)
                .map_err(|e| Fatal(format!("Invalid test port range specified: {e}")))?,
        );
    }
    if args.datadir.is_some() {
        conf.datadir = args.datadir.clone();
    }
    if args.vardir.is_some() {
        conf.vardir = args.vardir.clone();
    }
    if args.srcnode.is_some() {
        conf.srcnode = args.srcnode.clone();
    }
    if args.user.is_some() {
        conf.user = args.user.clone();
    }
    if args.group.is_some() {
        conf.group = args.group.clone();
    }
    if args.metrics.is_some() {
        conf.metrics = args.metrics.clone();
    }
    conf.verbose |= args.verbose;
    Ok(())
}

/// The daemon's policy: the limits, the test sessions per client address, and where each
/// receive session's file goes (the class of the connection that set it up).
#[derive(Debug, Clone)]
pub struct DaemonPolicy {
    /// The limits (shared by every connection).
    pub limits: Limits,
    /// The class of each receive session, for the store's directory of it.
    pub placement: Placement,
    /// Test sessions per client address (`maxsessionsperaddr`, shared by every connection).
    pub per_addr: SessionsPerAddr,
}

impl ServerPolicy for DaemonPolicy {
    fn modes(&mut self, addr: IpAddr) -> Modes {
        self.limits.modes(addr)
    }
    fn passphrase(&mut self, key_id: &[u8]) -> Option<owamp_core::crypto::Passphrase> {
        self.limits.passphrase(key_id)
    }
    fn allow_control(&mut self, peer: Peer<'_>) -> Result<(), AcceptCode> {
        self.limits.allow_control(peer)
    }
    fn admit_test(&mut self, test: &TestAdmission<'_>) -> Result<(), AcceptCode> {
        // Before the class limits and before any test port is bound (RFC 4656 3.5: Accept
        // 5, a temporary resource limitation).
        if let Err(e) = self.per_addr.admit(test.peer.addr, test.sid, test.role) {
            log(&format!(
                "session request from {} refused: per-address limit: {e} test sessions",
                test.peer.addr
            ));
            return Err(AcceptCode::TemporaryResourceLimit);
        }
        if let Err(code) = self.limits.admit_test(test) {
            self.per_addr.release(&test.sid, test.role);
            return Err(code);
        }
        if test.role == Role::Receiver {
            let class = self.limits.class_for(test.peer.addr, test.peer.key_id);
            self.placement.place(test.sid, &class);
        }
        Ok(())
    }
    fn release_test(&mut self, sid: &SessionId, role: Role) {
        self.per_addr.release(sid, role);
        self.limits.release_test(sid, role)
    }
    fn allow_fetch(&mut self, peer: Peer<'_>, sid: &SessionId) -> Result<(), AcceptCode> {
        self.limits.allow_fetch(peer, sid)
    }
}

/// A line of the daemon's log (standard error or syslog: [`crate::logging`]).
pub(crate) fn log(msg: &str) {
    tracing::info!("{msg}");
}

/// The pid file, locked for as long as the daemon runs.
pub struct PidFile {
    path: PathBuf,
    _file: File,
}

impl PidFile {
    /// Creates and locks `vardir/owamp-server.pid` with our pid; fails if another daemon
    /// holds it.
    pub fn create(vardir: &Path) -> Result<Self, Fatal> {
        Self::create_named(vardir, &OWAMPD_NAMES)
    }

    /// [`create`](Self::create) for the daemon of `names` (twampd: `twamp-server.pid`).
    pub fn create_named(vardir: &Path, names: &ConfNames) -> Result<Self, Fatal> {
        let path = vardir.join(names.pid);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Fatal(format!("open({}): {e}", path.display())))?;
        // SAFETY: flock only operates on the descriptor, which `file` keeps open.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(Fatal(format!(
                "Unable to lock file {}: {} (is another {} running?)",
                path.display(),
                std::io::Error::last_os_error(),
                names.daemon
            )));
        }
        file.set_len(0)
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .and_then(|_| file.flush())
            .map_err(|e| Fatal(format!("{}: {e}", path.display())))?;
        Ok(Self { path, _file: file })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Writes the info file (`START=`, the daemon's start time, and `PID=`) in the var directory.
pub(crate) fn write_info_file(
    s: &Settings,
    start: owamp_core::time::OwampTime,
) -> Result<(), Fatal> {
    let info = s.vardir.join(s.names.info);
    std::fs::write(
        &info,
        format!("START={}\nPID={}\n", start.raw(), std::process::id()),
    )
    .map_err(|e| Fatal(format!("{}: {e}", info.display())))
}

/// Looks up a user (name or `-uid`): uid and primary gid.
fn lookup_user(u: &str) -> Result<(libc::uid_t, libc::gid_t), Fatal> {
    let bad = || Fatal(format!("Invalid user/-U option: {u}"));
    let c = std::ffi::CString::new(u).map_err(|_| bad())?;
    // SAFETY: getpwnam/getpwuid return a pointer to static storage or null; it is read at once
    // and not kept (the daemon is single-threaded at this point).
    unsafe {
        let pw = match u.strip_prefix('-') {
            Some(id) => libc::getpwuid(id.parse::<libc::uid_t>().map_err(|_| bad())?),
            None => libc::getpwnam(c.as_ptr()),
        };
        if pw.is_null() {
            return Err(bad());
        }
        Ok(((*pw).pw_uid, (*pw).pw_gid))
    }
}

/// Looks up a group (name or `-gid`).
fn lookup_group(g: &str) -> Result<libc::gid_t, Fatal> {
    let bad = || Fatal(format!("Invalid group/-G option: {g}"));
    let c = std::ffi::CString::new(g).map_err(|_| bad())?;
    // SAFETY: as in lookup_user, for the group database.
    unsafe {
        let gr = match g.strip_prefix('-') {
            Some(id) => libc::getgrgid(id.parse::<libc::gid_t>().map_err(|_| bad())?),
            None => libc::getgrnam(c.as_ptr()),
        };
        if gr.is_null() {
            return Err(bad());
        }
        Ok((*gr).gr_gid)
    }
}

/// When started as root: the user and group to switch to (`None` to stay root, only allowed
/// with `-f` or `rootfolly`). When not root, `user` and `group` are ignored, as in the
/// reference.
pub(crate) fn privileges(s: &Settings) -> Result<Option<(libc::uid_t, libc::gid_t)>, Fatal> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let Some(user) = &s.conf.user else {
        if s.allow_root {
            return Ok(None);
        }
        return Err(Fatal(format!(
            "Running {} as root is folly!\nUse the -U option! (or allow root with the -f option)",
            s.names.daemon
        )));
    };
    let (uid, mut gid) = lookup_user(user)?;
    if let Some(g) = &s.conf.group {
        gid = lookup_group(g)?;
    }
    Ok(Some((uid, gid)))
}

/// Switches to `uid`/`gid` for good.
pub(crate) fn drop_privileges(uid: libc::uid_t, gid: libc::gid_t) -> Result<(), Fatal> {
    // SAFETY: plain system calls on ids; the order (groups, gid, then uid) keeps the right to
    // change the groups until the uid changes.
    unsafe {
        if libc::setgroups(1, &gid) != 0 || libc::setgid(gid) != 0 {
            return Err(Fatal(format!(
                "Unable to setgid to {gid}: {}",
                std::io::Error::last_os_error()
            )));
        }
        if libc::setuid(uid) != 0 {
            return Err(Fatal(format!(
                "Unable to setuid to {uid}: {}",
                std::io::Error::last_os_error()
            )));
        }
    }
    Ok(())
}

/// Binds a listening socket (IPv6 sockets accept IPv6 only: IPv4 has its own socket).
pub(crate) fn bind_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let sock = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_reuse_address(true)?;
    sock.bind(&addr.into())?;
    // A deep backlog: a burst of connections (a mesh's powstreams starting together, or a
    // flood the limits then refuse) waits in the kernel instead of having its SYNs dropped and
    // retried a second later. The kernel caps it at net.core.somaxconn.
    sock.listen(1024)?;
    Ok(sock.into())
}

/// Runs owampd until `stop` is set (the binary sets it on SIGINT, SIGTERM or SIGHUP).
/// Whether the command line asks owampd to detach ([`crate::daemon`]): it does without `-Z`.
/// A command line that does not parse does not: its error is printed in the foreground.
pub fn wants_daemon(argv: &[OsString]) -> bool {
    Args::try_parse_from(argv).is_ok_and(|a| !a.foreground)
}

/// Returns the exit status. `ready` is told the addresses listened on once serving.
pub fn run(
    argv: impl IntoIterator<Item = OsString>,
    stop: &StopHandle,
    ready: &mut dyn FnMut(&[SocketAddr]),
) -> i32 {
    run_as(argv, stop, ready, None)
}

/// [`run`] in a process that [`crate::daemon::detach`]ed (`detached`): once it serves, the
/// log goes to syslog and the parent is told to exit.
pub fn run_as(
    argv: impl IntoIterator<Item = OsString>,
    stop: &StopHandle,
    ready: &mut dyn FnMut(&[SocketAddr]),
    detached: Option<Detached>,
) -> i32 {
    logging::init("owampd", Some(tracing::Level::INFO));
    let args = match Args::try_parse_from(argv) {
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
            // Checked in `serve`: syslog answered a moment ago.
            if let Err(e) = logging::set_destination(logging::Destination::Syslog) {
                tracing::error!("{e}");
            }
            let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
            log(&format!(
                "detached (pid {}), listening on {}",
                std::process::id(),
                list.join(", ")
            ));
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
    let s = load_settings(args)?;
    configure_log(args, &s, daemon)?;
    for w in &s.warnings {
        tracing::warn!("{w}");
    }
    if s.conf.verbose {
        for f in &s.files {
            log(&format!("read {}", f.display()));
        }
    }
    let ids = privileges(&s)?;

    // Listen first (the port may be privileged), then write the pid file, then drop root.
    let mut listeners = Vec::new();
    let mut last_err = None;
    for a in &s.listen {
        match bind_listener(*a) {
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
    let pid = PidFile::create(&s.vardir)?;
    let clock = owamp_os::clock::SystemClock::shared();
    let start = owamp_os::clock::Clock::now(&clock);
    write_info_file(&s, start)?;
    // The data directory is created and written as the user owampd runs as.
    if let Some((uid, gid)) = ids {
        drop_privileges(uid, gid)?;
        log(&format!("running as uid {uid}, gid {gid}"));
    }

    let limits = PerAddrLimits::of(&s.conf, nofile_limit());
    let class_limits = s
        .limits
        .to_policy(s.modes, &s.pfs, s.conf.diskfudge.unwrap_or(1.0));
    let files = open_store(&s, class_limits.clone())?;
    let policy = DaemonPolicy {
        limits: class_limits,
        placement: files.placement(),
        per_addr: SessionsPerAddr::new(limits.sessions),
    };
    let retention = match s.conf.keepfor {
        None | Some(0) => None,
        Some(secs) => {
            log(&format!(
                "keepfor: sessions are deleted {secs} s after they were last written"
            ));
            Some(Retention {
                store: files.clone(),
                keep: Duration::from_secs(secs),
            })
        }
    };
    let store: Arc<dyn SessionStore> = Arc::new(files);

    let mut cfg = ServeConfig::default();
    cfg.control.start_time = start;
    cfg.control.test_ports = s.conf.testports.and_then(server::TestPorts::range);
    if let Some(t) = s.conf.controltimeout {
        cfg.control.control_timeout = Duration::from_secs(u64::from(t));
    }
    if let Some(d) = s.conf.enddelay {
        cfg.control.end_delay = Duration::from_secs_f64(d);
    }
    if let Some(n) = s.conf.pbkdf2_count {
        cfg.control.kdf_count = n;
    }
    // Received records go to disk as they come (DirectoryStore streams them), so the packet
    // count of a receive session costs no memory: the class's disk limit decides, as in the
    // reference.
    cfg.control.max_receive_packets = u32::MAX;
    cfg.endpoint.clock = clock;
    // Many connections share the runtime's two threads: a spinning or finely timed wait for
    // one costs all the others. Measured with scripts/bench-many-clients.sh (500 clients):
    // 2.2 s of CPU with Tokio's timer and no spin, 4.5 s with a timerfd per connection, 6.3 s
    // with the timerfd and the spin. So by default test packets leave up to about a
    // millisecond late; each is stamped with the time it left, so the measurement stays
    // exact. `sendtiming` buys precision with CPU for a server of few clients.
    let timing = s.conf.sendtiming.unwrap_or_default();
    cfg.endpoint.fine_timer = timing != SendTiming::Coarse;
    if timing != SendTiming::Precise {
        cfg.endpoint.max_spin = Duration::ZERO;
    }
    cfg.endpoint.warn = Some(Arc::new(|w: &HostWarning| tracing::warn!("warning: {w}")));
    cfg.max_connections = limits.connections;
    cfg.max_connections_per_addr = limits.connections_per_addr;
    cfg.refused = Some(Arc::new(|r: &Refused| {
        let setting = match r.reason {
            Refusal::Busy { .. } => " (maxcontrolsessions)",
            Refusal::PerAddr(_) => " (maxcontrolsessionsperaddr)",
            _ => "",
        };
        tracing::warn!("{r}{setting}")
    }));
    log(&format!(
        "limits: {} control connections ({}), {} per address, {} test sessions per address \
         (an IPv4 address or an IPv6 /64; 0: none)",
        shown(limits.connections),
        limits.connections_from,
        limits.connections_per_addr,
        limits.sessions
    ));
    cfg.shutdown_grace = Duration::from_secs(u64::from(s.conf.dieby.unwrap_or(5)));
    let verbose = s.conf.verbose;
    cfg.log = Some(Arc::new(move |c: &ConnectionSummary| {
        // Access lines: every connection with -v, otherwise those that ran tests or failed.
        let abnormal = !matches!(
            c.close,
            None | Some(CloseReason::Local | CloseReason::PeerClosed)
        );
        if verbose || c.sessions > 0 || abnormal || c.foreign_datagrams > 0 {
            log(&describe(c));
        }
    }));

    // --metrics (owamp-cli/src/metrics): counts what `cfg` reports and what the store writes.
    let (metrics, store) = match &s.conf.metrics {
        Some(addr) => {
            let m =
                OwampdMetrics::serve(addr, &policy.per_addr).map_err(|e| Fatal(e.to_string()))?;
            log(&format!("metrics at http://{}/metrics", m.local_addr()));
            m.instrument(&mut cfg);
            let store = m.store(store);
            (Some(m), store)
        }
        None => (None, store),
    };
    let served = run_servers(
        listeners,
        cfg,
        (policy, store, retention),
        stop,
        ready,
        &s.datadir,
        pid,
    );
    drop(metrics);
    served
}

/// The session store in the data directory, in perfSONAR's layout, with its catalog rebuilt
/// and its classes charged for the files already there.
fn open_store(s: &Settings, limits: Limits) -> Result<HierarchyStore, Fatal> {
    let store = HierarchyStore::new(&s.datadir, limits)
        .with_delete_on_fetch(
            s.limits
                .classes
                .iter()
                .filter(|c| c.settings.delete_on_fetch)
                .map(|c| c.name.clone()),
        )
        .with_log(Arc::new(|m: &str| tracing::warn!("{m}")));
    std::fs::create_dir_all(&s.datadir)
        .map_err(|e| Fatal(format!("Unable to mkdir({}): {e}", s.datadir.display())))?;
    check_writable(&s.datadir)?;
    let found = store
        .rebuild()
        .map_err(|e| Fatal(format!("datadir {}: {e}", s.datadir.display())))?;
    log(&format!(
        "catalog rebuilt: {} sessions ({} octets) in {}{}",
        found.sessions,
        found.octets,
        store.hierarchy_dir().display(),
        if found.recovered > 0 {
            format!(", {} partial files left by a crash kept", found.recovered)
        } else {
            String::new()
        }
    ));
    if found.legacy > 0 {
        log(&format!(
            "{} sessions of the older flat layout in {} are still served from there",
            found.legacy,
            s.datadir.display()
        ));
    }
    Ok(store)
}

/// `keepfor`: sessions older than `keep` are deleted, checked every [`Retention::every`].
struct Retention {
    store: HierarchyStore,
    keep: Duration,
}

impl Retention {
    /// How often to look: a tenth of the age kept, between a second and a minute.
    fn every(&self) -> Duration {
        (self.keep / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// Deletes what is older than the age kept.
    fn sweep(&self) {
        let Some(cutoff) = std::time::SystemTime::now().checked_sub(self.keep) else {
            return;
        };
        let n = self.store.remove_older_than(cutoff);
        if n > 0 {
            log(&format!(
                "keepfor: {n} sessions older than {} s deleted",
                self.keep.as_secs()
            ));
        }
    }
}

/// Serves every listener on one Tokio runtime of two worker threads: connections and their
/// test sessions are tasks, not threads, so a thousand clients cost a few threads (measured
/// with scripts/bench-many-clients.sh: docs/performance.md).
fn run_servers(
    listeners: Vec<TcpListener>,
    cfg: ServeConfig,
    (policy, store, retention): (DaemonPolicy, Arc<dyn SessionStore>, Option<Retention>),
    stop: &StopHandle,
    ready: &mut dyn FnMut(&[SocketAddr]),
    datadir: &Path,
    pid: PidFile,
) -> Result<(), Fatal> {
    server_runtime()?.block_on(async {
        let handle = owamp_tokio::control::ServerHandle::default();
        let (running, bound) = spawn_servers(listeners, &cfg, &policy, &store, &handle)?;
        log(&format!(
            "listening on {} (data in {})",
            bound
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            datadir.display()
        ));
        ready(&bound);
        let mut last_sweep: Option<tokio::time::Instant> = None;
        while !stop.is_stopped() && !handle.is_shutdown() {
            if let Some(r) = &retention {
                if last_sweep.map_or(true, |t| t.elapsed() >= r.every()) {
                    last_sweep = Some(tokio::time::Instant::now());
                    // A walk of the data directory: off the runtime's worker threads.
                    let store = r.store.clone();
                    let keep = r.keep;
                    let sweep =
                        tokio::task::spawn_blocking(move || Retention { store, keep }.sweep());
                    if let Err(e) = sweep.await {
                        log(&format!("keepfor: {e}"));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        shut_down(running).await;
        Ok::<(), Fatal>(())
    })?;
    drop(pid);
    log("exiting");
    Ok(())
}

/// The daemons' runtime: two worker threads (owampd and twampd alike; chosen by measurement,
/// docs/performance.md "One owampd, many clients").
pub(crate) fn server_runtime() -> Result<tokio::runtime::Runtime, Fatal> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Fatal(format!("Unable to start the runtime: {e}")))
}

/// Starts a server task on each listener, all under `handle` (they shut down and count their
/// connections together). Call from within the runtime. Returns the tasks and the addresses
/// they listen on.
pub(crate) fn spawn_servers<P: ServerPolicy + Clone + Send + 'static>(
    listeners: Vec<TcpListener>,
    cfg: &ServeConfig,
    policy: &P,
    store: &Arc<dyn SessionStore>,
    handle: &owamp_tokio::control::ServerHandle,
) -> Result<(Vec<owamp_tokio::control::RunningServer>, Vec<SocketAddr>), Fatal> {
    let mut running = Vec::new();
    let mut bound = Vec::new();
    for l in listeners {
        let addr = l
            .local_addr()
            .map_err(|e| Fatal(format!("getsockname(): {e}")))?;
        l.set_nonblocking(true)
            .map_err(|e| Fatal(format!("{addr}: {e}")))?;
        let l = tokio::net::TcpListener::from_std(l).map_err(|e| Fatal(format!("{addr}: {e}")))?;
        let server = owamp_tokio::control::Server::from_listener(
            l,
            cfg.clone(),
            policy.clone(),
            store.clone(),
        )
        .with_handle(handle.clone());
        running.push(server.spawn());
        bound.push(addr);
    }
    Ok((running, bound))
}

/// Stops the server tasks of [`spawn_servers`], logging any that ended in error.
pub(crate) async fn shut_down(running: Vec<owamp_tokio::control::RunningServer>) {
    log("shutting down");
    for r in running {
        if let Err(e) = r.shutdown().await {
            log(&format!("server task: {e}"));
        }
    }
}

/// The log's level and facility from the settings. A daemon checks that syslog answers
/// before it detaches (it would otherwise lose every line); in the foreground, `-e` on the
/// command line sends the log to syslog, and standard error is used otherwise.
pub(crate) fn configure_log(args: &Args, s: &Settings, daemon: bool) -> Result<(), Fatal> {
    let level = match &s.conf.loglevel {
        Some(l) => logging::parse_level(l).map_err(|e| Fatal(format!("loglevel: {e}")))?,
        None => Some(tracing::Level::INFO),
    };
    logging::configure(level, s.conf.facility.as_deref().unwrap_or("daemon"));
    if daemon {
        logging::set_destination(logging::Destination::Syslog).map_err(|e| {
            Fatal(format!(
                "Unable to log to syslog ({e}): start {} with -Z to log to standard error",
                s.names.daemon
            ))
        })?;
        logging::set_destination(logging::Destination::Stderr).map_err(Fatal)?;
    } else if args.facility.is_some() {
        logging::set_destination(logging::Destination::Syslog).map_err(Fatal)?;
    }
    Ok(())
}

/// Checks that received sessions can be stored: a file can be created (and removed) in the
/// data directory as the user owampd runs as. A daemon that could not would lose every
/// session it receives.
fn check_writable(datadir: &Path) -> Result<(), Fatal> {
    let probe = datadir.join(format!(".owampd-write-check.{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|e| {
            Fatal(format!(
                "datadir {} is not writable: {e}: received sessions could not be stored",
                datadir.display()
            ))
        })
}

/// One log line for a finished connection. A refused set-up says what was asked for and
/// why (never a secret: the pass-phrase, keys and Token stay out of the log).
pub(crate) fn describe(c: &ConnectionSummary) -> String {
    if let Some(r) = &c.setup_refused {
        return format!("connection from {}: set-up refused: {r}", c.peer);
    }
    let id = c
        .key_id
        .as_deref()
        .map(|k| format!(" identity={:?}", String::from_utf8_lossy(k)))
        .unwrap_or_default();
    let close = match &c.close {
        Some(r) => r.to_string(),
        None => "server shutdown".into(),
    };
    let store_error = c
        .store_error
        .as_deref()
        .map(|e| format!(" (last store error: {e})"))
        .unwrap_or_default();
    let foreign = if c.foreign_datagrams > 0 {
        format!(" foreign_datagrams_dropped={}", c.foreign_datagrams)
    } else {
        String::new()
    };
    format!(
        "connection from {}: mode={}{id} sessions={} stored={} store_errors={}{store_error}{foreign}; {close}",
        c.peer, c.mode, c.sessions, c.stored, c.store_errors
    )
}

/// Descriptors kept for the daemon itself (listeners, standard streams, the log, the pid
/// file, the runtime's own) before the rest of `RLIMIT_NOFILE` is shared out.
const FD_RESERVE: u64 = 32;
/// Descriptors one control connection may hold: its socket, a test socket for each of the
/// two sessions (one each way) a client usually runs, and a received session's file.
const FDS_PER_CONNECTION: u64 = 4;
/// The least default cap, however low the descriptor limit.
const MIN_MAX_CONTROL_SESSIONS: usize = 16;
/// The most default cap, however high (or unlimited) the descriptor limit.
const MAX_DEFAULT_CONTROL_SESSIONS: usize = 16_384;

/// The connection cap for a `maxcontrolsessions` setting, and how it was found (for the
/// start-up log). Unset, it follows the soft descriptor limit (`nofile`, `None` when it can
/// not be read or is unlimited): each connection costs [`FDS_PER_CONNECTION`] descriptors
/// after a reserve of [`FD_RESERVE`], so that an unconfigured daemon runs out of connection
/// slots, which it refuses cleanly, before it runs out of descriptors (perfSONAR's has no
/// cap). `maxcontrolsessions 0` asks for no limit.
fn max_connections(setting: Option<u32>, nofile: Option<u64>) -> (usize, String) {
    match setting {
        Some(0) => (usize::MAX, "maxcontrolsessions 0: no limit".into()),
        Some(n) => (
            usize::try_from(n).unwrap_or(usize::MAX),
            "from maxcontrolsessions".into(),
        ),
        None => {
            let Some(soft) = nofile else {
                return (
                    MAX_DEFAULT_CONTROL_SESSIONS,
                    "maxcontrolsessions not set, no descriptor limit".into(),
                );
            };
            let share = soft.saturating_sub(FD_RESERVE) / FDS_PER_CONNECTION;
            let n = usize::try_from(share)
                .unwrap_or(usize::MAX)
                .clamp(MIN_MAX_CONTROL_SESSIONS, MAX_DEFAULT_CONTROL_SESSIONS);
            (
                n,
                format!(
                    "maxcontrolsessions not set: (RLIMIT_NOFILE {soft} - {FD_RESERVE} reserved) \
                     / {FDS_PER_CONNECTION} descriptors per connection, within \
                     {MIN_MAX_CONTROL_SESSIONS}..={MAX_DEFAULT_CONTROL_SESSIONS}"
                ),
            )
        }
    }
}

/// The soft limit on open descriptors (`None`: unlimited, or it can not be read).
pub(crate) fn nofile_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the local struct it is given a valid pointer to.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0
        || r.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    Some(r.rlim_cur)
}

/// A limit for the log line: "none" for no limit.
pub(crate) fn shown(n: usize) -> String {
    if n == usize::MAX {
        "no limit on".into()
    } else {
        n.to_string()
    }
}

/// The connection limits and the per-address limits owampd runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PerAddrLimits {
    /// Control connections at once (`usize::MAX`: no limit).
    pub(crate) connections: usize,
    /// Control connections at once per address (0: no limit).
    pub(crate) connections_per_addr: usize,
    /// Test sessions at once per address (0: no limit).
    pub(crate) sessions: usize,
    /// How `connections` was found.
    pub(crate) connections_from: String,
}

/// Per-address control connections when the configuration does not say: a quarter of the
/// connection cap, so that one host never takes every slot, and at least 4 (and 64 when
/// there is no cap).
fn default_connections_per_addr(connections: usize) -> usize {
    if connections == usize::MAX {
        64
    } else {
        (connections / 4).max(4)
    }
}

impl PerAddrLimits {
    /// The limits of `conf`, with the soft descriptor limit `nofile` for the default cap.
    pub(crate) fn of(conf: &server::ServerConf, nofile: Option<u64>) -> Self {
        let (connections, connections_from) = max_connections(conf.maxcontrolsessions, nofile);
        let to_usize = |n: u32| usize::try_from(n).unwrap_or(usize::MAX);
        let connections_per_addr = conf
            .maxcontrolsessionsperaddr
            .map_or_else(|| default_connections_per_addr(connections), to_usize);
        // Unset: two sessions (one each way) for every connection an address may hold, and
        // no more than a quarter of the test port range (at least 4).
        let sessions = conf.maxsessionsperaddr.map_or_else(
            || {
                let per_conn = default_connections_per_addr(connections).saturating_mul(2);
                match conf.testports.and_then(server::TestPorts::range) {
                    Some(r) => per_conn.min((usize::from(r.high - r.low) + 1) / 4).max(4),
                    None => per_conn,
                }
            },
            to_usize,
        );
        Self {
            connections,
            connections_per_addr,
            sessions,
            connections_from,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unconfigured_daemon_caps_its_connections_by_its_descriptors() {
        assert_eq!(max_connections(Some(0), Some(1024)).0, usize::MAX);
        assert_eq!(max_connections(Some(50), Some(1024)).0, 50);
        // (1024 - 32) / 4, (4096 - 32) / 4: a connection's socket, two test sockets, a file.
        assert_eq!(max_connections(None, Some(1024)).0, 248);
        let (n, why) = max_connections(None, Some(4096));
        assert_eq!(n, 1016);
        assert!(why.contains("RLIMIT_NOFILE 4096"), "{why}");
        // Never below 16 nor above 16384, and bounded when nothing limits descriptors.
        assert_eq!(max_connections(None, Some(20)).0, 16);
        assert_eq!(max_connections(None, Some(1 << 40)).0, 16_384);
        assert_eq!(max_connections(None, None).0, 16_384);
    }

    #[test]
    fn per_address_limits_default_to_a_share_of_the_whole() {
        let of = |text: &str| PerAddrLimits::of(&server::parse(text).unwrap(), Some(1056));
        let l = of("");
        assert_eq!(
            (l.connections, l.connections_per_addr, l.sessions),
            (256, 64, 128)
        );
        let l = of("maxcontrolsessions 8\ntestports 9000-9009\n");
        assert_eq!((l.connections_per_addr, l.sessions), (4, 4));
        let l = of("maxcontrolsessions 0\n");
        assert_eq!((l.connections, l.connections_per_addr), (usize::MAX, 64));
        let l = of("maxcontrolsessionsperaddr 0\nmaxsessionsperaddr 3\n");
        assert_eq!((l.connections_per_addr, l.sessions), (0, 3));
    }

    #[test]
    fn the_packaged_example_configuration_is_read() {
        // packaging/etc: what the Debian package installs in /etc/owamp-server.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/etc");
        let args =
            Args::try_parse_from([OsString::from("owampd"), "-c".into(), dir.into_os_string()])
                .unwrap();
        let s = load_settings(&args).unwrap();
        assert_eq!(s.files.len(), 2);
        assert_eq!(s.datadir, Path::new("/var/lib/owamp"));
        assert_eq!(s.modes, Modes::ALL);
        // The standard port on every address, as a server should.
        assert_eq!(s.listen.len(), 2);
        assert!(s.listen.iter().all(|a| a.port() == CONTROL_PORT));
        assert_eq!(s.limits.classes.len(), 2);
    }

    #[test]
    fn srcnode_forms() {
        assert_eq!(
            parse_srcnode("127.0.0.1:8610"),
            Ok((Some("127.0.0.1".into()), 8610))
        );
        assert_eq!(parse_srcnode(":8610"), Ok((None, 8610)));
        assert_eq!(
            parse_srcnode("localhost"),
            Ok((Some("localhost".into()), 861))
        );
        assert_eq!(parse_srcnode("[::1]:9"), Ok((Some("::1".into()), 9)));
        assert!(parse_srcnode(":x").is_err());
        assert_eq!(
            parse_srcnode("127.0.0.1:0"),
            Ok((Some("127.0.0.1".into()), 0))
        );
        assert_eq!(parse_srcnode("[::1]:0"), Ok((Some("::1".into()), 0)));
        assert_eq!(listen_addrs(None).unwrap().len(), 2);
        assert_eq!(
            listen_addrs(Some("127.0.0.1:8610")).unwrap(),
            vec!["127.0.0.1:8610".parse().unwrap()]
        );
    }

    #[test]
    fn retention_looks_at_a_tenth_of_the_age_within_bounds() {
        let every = |secs| {
            let dir = tempfile::tempdir().unwrap();
            let limits =
                limits::LimitsConf::default().to_policy(Modes::ALL, &Default::default(), 1.0);
            Retention {
                store: HierarchyStore::new(dir.path(), limits),
                keep: Duration::from_secs(secs),
            }
            .every()
        };
        assert_eq!(every(2), Duration::from_secs(1));
        assert_eq!(every(100), Duration::from_secs(10));
        assert_eq!(every(86400), Duration::from_secs(60));
    }

    #[test]
    fn settings_from_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("owampd.conf"),
            "srcnode 127.0.0.1:8610\ntestports 8760-8960\nauthmode AE\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("owamp-server.limits"),
            "limit root with bandwidth=1M\nassign user alice root\n",
        )
        .unwrap();
        let args = |extra: &[&str]| {
            let mut v = vec!["owampd", "-c", dir.path().to_str().unwrap()];
            v.extend_from_slice(extra);
            Args::try_parse_from(v).unwrap()
        };
        // alice has no pass-phrase yet.
        let e = load_settings(&args(&[])).unwrap_err();
        assert!(e.0.contains("owamp-server.limits:2"), "{}", e.0);
        std::fs::write(dir.path().join("owamp-server.pfs"), "alice 6162\n").unwrap();
        let s = load_settings(&args(&["-a", "O", "-P", "9000-9001"])).unwrap();
        assert_eq!(s.modes, Modes::EMPTY.with(owamp_core::control::Mode::Open));
        assert_eq!(s.conf.testports, Some(server::TestPorts::Range(9000, 9001)));
        assert_eq!(s.listen, vec!["127.0.0.1:8610".parse().unwrap()]);
        assert_eq!(s.files.len(), 3);
        std::fs::write(dir.path().join("owampd.conf"), "bogus\n").unwrap();
        let e = load_settings(&args(&[])).unwrap_err();
        assert!(
            e.0.ends_with("owampd.conf:1: unknown keyword \"bogus\""),
            "{}",
            e.0
        );
        let empty = tempfile::tempdir().unwrap();
        let e = load_settings(
            &Args::try_parse_from(["owampd", "-c", empty.path().to_str().unwrap()]).unwrap(),
        )
        .unwrap_err();
        assert!(e.0.contains("Unable to open"));
    }

    #[test]
    fn a_pass_phrase_file_others_can_read_is_used_with_a_warning() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("owampd.conf"), "srcnode 127.0.0.1:8610\n").unwrap();
        let pfs = dir.path().join("owampd.pfs");
        std::fs::write(&pfs, "alice 6162\n").unwrap();
        let args = Args::try_parse_from(["owampd", "-c", dir.path().to_str().unwrap()]).unwrap();
        let chmod = |m| std::fs::set_permissions(&pfs, std::fs::Permissions::from_mode(m));
        chmod(0o604).unwrap();
        let s = load_settings(&args).unwrap();
        assert_eq!(s.pfs.get("alice"), Some(&"ab".into()));
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        let w = &s.warnings[0];
        assert!(w.contains(&pfs.display().to_string()), "{w}");
        assert!(w.contains("mode 0604 (others can read it)"), "{w}");
        assert!(!w.contains("6162"), "{w}");
        chmod(0o600).unwrap();
        assert!(load_settings(&args).unwrap().warnings.is_empty());
        chmod(0o640).unwrap();
        assert!(load_settings(&args).unwrap().warnings[0].contains("group can read it"));
    }
}
