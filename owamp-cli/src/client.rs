//! What owping, owfetch and powstream share: the command line's parsing and usage errors, peer
//! names, the control connection (with a source address), the identity and its pass-phrase,
//! the statistics of a fetched session, and the messages perfSONAR's clients print.

use std::ffi::OsString;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use owamp_core::control::{AcceptCode, CloseReason, Identity, Modes};
use owamp_core::owp::OwpReader;
use owamp_os::clock::kernel_clock_status;
use owamp_os::host::HostWarning;
use owamp_std::control::{ClientConnection, ClientError, ClientOptions};

use crate::config::{self, pfs};
use crate::owstats;
use crate::sys::Environment;

/// Parses a tool's command line. On an error, or for `--help`, prints what clap prints and
/// returns the exit status (1 for an error, 0 for help).
pub fn parse_args<A: clap::Parser>(
    argv: impl IntoIterator<Item = OsString>,
    err: &mut dyn Write,
) -> Result<A, i32> {
    A::try_parse_from(argv).map_err(|e| {
        let _ = write!(err, "{}", e.render());
        if e.use_stderr() {
            1
        } else {
            0
        }
    })
}

/// Prints `prog: msg` and the usage line of `A` for a command-line error and returns the exit
/// status for it.
pub fn usage_error<A: clap::CommandFactory>(prog: &str, err: &mut dyn Write, msg: &str) -> i32 {
    let _ = writeln!(err, "{prog}: {msg}");
    let _ = writeln!(err, "{}", A::command().render_usage());
    1
}

/// The OWAMP-Control port (RFC 4656 2, IANA "owamp-control").
pub const CONTROL_PORT: u16 = 861;

/// A host as written on the command line: `node`, `node:port`, `[v6addr]`, `[v6addr]:port`
/// or a bare IPv6 address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    /// The node name or address, without brackets.
    pub node: String,
    /// The port (the default when none was written).
    pub port: u16,
}

/// Parses a host argument as perfSONAR's tools do.
pub fn parse_host(s: &str, default_port: u16) -> Result<HostSpec, String> {
    let port_of = |p: &str| -> Result<u16, String> {
        p.parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("invalid port \"{p}\""))
    };
    let (node, port) = if let Some(rest) = s.strip_prefix('[') {
        let (node, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("missing ']' in \"{s}\""))?;
        let port = match after {
            "" => default_port,
            p => port_of(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("unexpected \"{p}\" after ']'"))?,
            )?,
        };
        (node, port)
    } else {
        match s.matches(':').count() {
            0 => (s, default_port),
            1 => {
                let (n, p) = s.split_once(':').unwrap_or((s, ""));
                (n, port_of(p)?)
            }
            // More than one colon and no brackets: an IPv6 address without a port.
            _ => (s, default_port),
        }
    };
    if node.is_empty() {
        return Err(format!("no host in \"{s}\""));
    }
    Ok(HostSpec {
        node: node.to_owned(),
        port,
    })
}

/// Address family restriction (-4, -6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Family {
    /// Either.
    #[default]
    Any,
    /// IPv4 only.
    V4,
    /// IPv6 only.
    V6,
}

impl Family {
    fn allows(self, a: &SocketAddr) -> bool {
        match self {
            Family::Any => true,
            Family::V4 => a.is_ipv4(),
            Family::V6 => a.is_ipv6(),
        }
    }
}

/// The exit status of a tool's run: its own, or 1 after printing `prog: msg` for an error
/// that stopped it.
pub fn exit_status(prog: &str, r: Result<i32, String>, err: &mut dyn Write) -> i32 {
    r.unwrap_or_else(|m| {
        let _ = writeln!(err, "{prog}: {m}");
        1
    })
}

/// The address family of the -4 and -6 flags.
pub fn family(ipv4: bool, ipv6: bool) -> Result<Family, String> {
    match (ipv4, ipv6) {
        (true, true) => Err("-4 and -6 flags cannot be set together".into()),
        (true, false) => Ok(Family::V4),
        (false, true) => Ok(Family::V6),
        (false, false) => Ok(Family::Any),
    }
}

/// The addresses of a host, filtered by family.
pub fn resolve(h: &HostSpec, family: Family) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = (h.node.as_str(), h.port)
        .to_socket_addrs()
        .map_err(|e| format!("{}: {e}", h.node))?
        .filter(|a| family.allows(a))
        .collect();
    if addrs.is_empty() {
        return Err(format!("{}: no usable address", h.node));
    }
    Ok(addrs)
}

/// The addresses of the server. When a test address was given apart from the server
/// (`test`), it must be one of the server's: tests with a third host are not supported.
pub fn resolve_server(
    serv: &HostSpec,
    test: Option<&HostSpec>,
    family: Family,
) -> Result<Vec<SocketAddr>, String> {
    let serv_addrs = resolve(serv, family)?;
    if let Some(test) = test {
        let test_addrs = resolve(test, family)?;
        if !test_addrs.iter().any(|t| t.ip() == serv_addrs[0].ip()) {
            return Err(format!(
                "a test address ({}) other than the server's ({}) is not supported",
                test.node, serv.node
            ));
        }
    }
    Ok(serv_addrs)
}

/// Connects a TCP stream to `server`, from `source` if given and by the network interface
/// `device` if given (`-B`: `SO_BINDTODEVICE`), within `timeout`.
pub fn connect_stream(
    server: SocketAddr,
    source: Option<IpAddr>,
    device: Option<&str>,
    timeout: Duration,
) -> std::io::Result<TcpStream> {
    if source.is_none() && device.is_none() {
        return TcpStream::connect_timeout(&server, timeout);
    }
    let domain = socket2::Domain::for_address(server);
    let sock = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    if let Some(d) = device {
        owamp_os::net::bind_device(&sock, d)?;
    }
    if let Some(src) = source {
        sock.bind(&SocketAddr::new(src, 0).into())?;
    }
    sock.connect_timeout(&server.into(), timeout)?;
    Ok(sock.into())
}

/// Resolves a source address (-S) in the family of `server`.
pub fn resolve_source(src: &str, server: SocketAddr) -> Result<IpAddr, String> {
    let node = src
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(src);
    (node, 0)
        .to_socket_addrs()
        .map_err(|e| format!("{src}: {e}"))?
        .find(|a| a.is_ipv4() == server.is_ipv4())
        .map(|a| a.ip())
        .ok_or_else(|| format!("{src}: no address in the server's family"))
}

/// Parses the -A mode letters.
pub fn parse_authmode(s: Option<&str>) -> Result<Modes, String> {
    match s {
        None => Ok(Modes::ALL),
        Some(s) => config::server::parse_modes(s).map_err(|e| format!("Invalid -authmode: {e}")),
    }
}

/// The identity for -u, its pass-phrase from the -k file or asked for. As owping does, a
/// pass-phrase that cannot be found is reported and the identity dropped (only open mode is
/// then possible). Errors that stop the tool (an unreadable or invalid file) are `Err`. A -k
/// file that group or others may read or write is used, with a warning naming it and its mode.
pub fn identity(
    prog: &str,
    user: Option<&str>,
    pfs_file: Option<&Path>,
    err: &mut dyn Write,
) -> Result<Option<Identity>, String> {
    let Some(user) = user else {
        return Ok(None);
    };
    if user.len() > pfs::MAX_IDENTITY_LEN {
        return Err(format!(
            "identity \"{user}\" is longer than {} octets",
            pfs::MAX_IDENTITY_LEN
        ));
    }
    let passphrase = match pfs_file {
        Some(path) => {
            let (f, loose) = pfs::read(path).map_err(|e| e.to_string())?;
            if let Some(w) = loose {
                let _ = writeln!(err, "{prog}: {w}");
            }
            match f.get(user) {
                Some(p) => Some(p.clone()),
                None => {
                    let _ = writeln!(
                        err,
                        "{prog}: Unable to find pass-phrase for id=\"{user}\" from pffile=\"{}\"",
                        path.display()
                    );
                    None
                }
            }
        }
        None => {
            crate::prompt::read_passphrase(&format!("Enter passphrase for identity '{user}': "))
                .map_err(|e| format!("reading the pass-phrase: {e}"))?
        }
    };
    Ok(passphrase.map(|p| Identity::new(user.as_bytes(), p)))
}

/// Client options with the modes of -A, the identity of -u and its pass-phrase (-k), and the
/// interface of -B (for the control connection and the test sockets).
pub fn client_options(
    prog: &str,
    authmode: Option<&str>,
    user: Option<&str>,
    pfs_file: Option<&Path>,
    interface: Option<&str>,
    err: &mut dyn Write,
) -> Result<ClientOptions, String> {
    let mut opts = ClientOptions::default();
    opts.control.modes = parse_authmode(authmode)?;
    // Mixed mode (-A M) is TWAMP's (RFC 5618): only twping may ask for it.
    if prog != "twping" {
        opts.control.modes = config::server::owamp_modes(opts.control.modes)
            .map_err(|e| format!("Invalid -authmode: {e}"))?;
    }
    if let Some(i) = interface {
        // Checked before anything connects: a name that is wrong is not a network problem.
        if !owamp_os::net::interface_exists(i) {
            return Err(format!(
                "-B {}: no such network interface",
                i.escape_debug()
            ));
        }
        opts.endpoint.bind_device = Some(i.to_owned());
    }
    opts.control.identity = identity(prog, user, pfs_file, err)?;
    Ok(opts)
}

/// Warnings of a client's test endpoints (a receive buffer the kernel capped), kept until the
/// tool prints them: the endpoints tell them on the connection's thread, while the tool's
/// thread holds standard error.
#[derive(Debug, Clone, Default)]
pub struct Warnings(Arc<Mutex<Vec<String>>>);

impl Warnings {
    /// Collects the warnings of connections made with `opts`.
    pub fn install(&self, opts: &mut ClientOptions) {
        let kept = self.0.clone();
        opts.endpoint.warn = Some(Arc::new(move |w: &HostWarning| {
            if let Ok(mut v) = kept.lock() {
                v.push(w.to_string());
            }
        }));
    }

    /// The warnings told since the last call.
    pub fn take(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

/// The warning perfSONAR's clients give when the kernel clock is not synchronized.
pub const NTP_UNSYNC: &str = "NTP: Status UNSYNC (clock offset issues likely)";

/// Whether the kernel says its clock is not synchronized (false when it cannot tell).
pub fn clock_unsynchronized() -> bool {
    kernel_clock_status().is_ok_and(|s| !s.synchronized)
}

/// A set-up control connection and how long the set-up took (owping's round-trip bound).
pub struct Connected {
    /// The connection.
    pub conn: ClientConnection,
    /// Time from the TCP connect to Server-Start.
    pub rtt_bound: Duration,
    /// The local address of the control connection.
    pub local: SocketAddr,
}

/// Connects to the first address of `addrs` that answers and sets the connection up. On
/// failure, prints what perfSONAR's clients print ("Server denied access", "Unable to open
/// control connection") and returns `None`.
pub fn open_control(
    prog: &str,
    addrs: &[SocketAddr],
    source: Option<&str>,
    serv_name: &str,
    node: &str,
    opts: &ClientOptions,
    err: &mut dyn Write,
) -> Option<Connected> {
    let mut last: Option<String> = None;
    for &server in addrs {
        let src = match source.map(|s| resolve_source(s, server)).transpose() {
            Ok(s) => s,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        let t0 = Instant::now();
        let device = opts.endpoint.bind_device.as_deref();
        let stream = match connect_stream(server, src, device, opts.connect_timeout) {
            Ok(s) => s,
            Err(e) => {
                last = Some(format!("{server}: {e}"));
                continue;
            }
        };
        let local = match stream.local_addr() {
            Ok(a) => a,
            Err(e) => {
                last = Some(e.to_string());
                continue;
            }
        };
        let mut o = opts.clone();
        if let Some(ip) = src {
            o.test_ip = Some(ip);
        }
        match ClientConnection::from_stream(stream, &o) {
            Ok(conn) => {
                return Some(Connected {
                    conn,
                    rtt_bound: t0.elapsed(),
                    local,
                })
            }
            Err(ClientError::Closed(CloseReason::SetupRejected(_))) => {
                let _ = writeln!(err, "{prog}: Server denied access: {node}");
                last = None;
                break;
            }
            Err(ClientError::Closed(CloseReason::NoCommonMode)) => {
                let _ = writeln!(
                    err,
                    "{prog}: No Common Modes: the server offers no mode allowed here (see -A and -u)"
                );
                last = None;
                break;
            }
            Err(ClientError::Closed(CloseReason::Protocol(p))) => {
                last = Some(format!(
                    "{server} does not answer as an OWAMP server would ({p}): is it the right address and port?"
                ))
            }
            Err(e) => last = Some(e.to_string()),
        }
    }
    if let Some(m) = last {
        let _ = writeln!(err, "{prog}: {m}");
    }
    let _ = writeln!(
        err,
        "{prog}: Unable to open control connection to {serv_name}."
    );
    None
}

/// Prints the owstats statistics of the session in the `.owp` file `path`, read as it is
/// needed (the records are never all in memory), naming its ends `names` (sender,
/// receiver) when given.
pub fn print_stats_file(
    path: &Path,
    opts: &owstats::Options,
    out: &mut dyn Write,
    env: &dyn Environment,
    names: Option<(&str, &str)>,
) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    OwpReader::new(std::io::BufReader::new(file))
        .map_err(|e| e.to_string())
        .and_then(|r| owstats::stats_from(r, opts, out, env, names))
}

/// Why a Request-Session failed, as the clients report it.
pub fn request_failure(e: &ClientError) -> String {
    match e {
        ClientError::Rejected(c) => {
            format!("Server denied the session request: {}", describe_accept(*c))
        }
        other => other.to_string(),
    }
}

/// A short description of a refused request.
pub fn describe_accept(code: AcceptCode) -> String {
    format!("{code:?} (Accept = {})", code.to_u8())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_forms() {
        let h = |s| parse_host(s, 861).unwrap();
        assert_eq!(
            h("127.0.0.1:8610"),
            HostSpec {
                node: "127.0.0.1".into(),
                port: 8610
            }
        );
        assert_eq!(
            h("example.net"),
            HostSpec {
                node: "example.net".into(),
                port: 861
            }
        );
        assert_eq!(
            h("[::1]:4000"),
            HostSpec {
                node: "::1".into(),
                port: 4000
            }
        );
        assert_eq!(
            h("[fe80::1]"),
            HostSpec {
                node: "fe80::1".into(),
                port: 861
            }
        );
        assert_eq!(
            h("2001:db8::5"),
            HostSpec {
                node: "2001:db8::5".into(),
                port: 861
            }
        );
        assert!(parse_host("host:", 861).is_err());
        assert!(parse_host(":861", 861).is_err());
        assert!(parse_host("host:99999", 861).is_err());
        assert!(parse_host("[::1", 861).is_err());
        assert!(parse_host("[::1]x", 861).is_err());
    }

    #[test]
    fn resolving_respects_the_family() {
        let h = parse_host("127.0.0.1:9", 861).unwrap();
        assert_eq!(resolve(&h, Family::V4).unwrap()[0].port(), 9);
        assert!(resolve(&h, Family::V6).is_err());
    }

    #[test]
    fn families() {
        assert_eq!(family(false, false), Ok(Family::Any));
        assert_eq!(family(true, false), Ok(Family::V4));
        assert_eq!(family(false, true), Ok(Family::V6));
        assert_eq!(
            family(true, true),
            Err("-4 and -6 flags cannot be set together".to_string())
        );
    }

    #[test]
    fn a_separate_test_host_must_be_the_server() {
        let serv = parse_host("127.0.0.1:9", 861).unwrap();
        let same = parse_host("127.0.0.1", 861).unwrap();
        let other = parse_host("127.0.0.2", 861).unwrap();
        assert_eq!(
            resolve_server(&serv, None, Family::Any).unwrap()[0].port(),
            9
        );
        assert!(resolve_server(&serv, Some(&same), Family::Any).is_ok());
        let e = resolve_server(&serv, Some(&other), Family::Any).unwrap_err();
        assert!(e.contains("other than the server's"), "{e}");
    }

    #[test]
    fn client_options_show_the_identity_but_not_its_pass_phrase() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("alice.pfs");
        let pass = "s3cret pass phrase";
        std::fs::write(&f, pfs::format_line("alice", pass.as_bytes()).as_bytes()).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut err = Vec::new();
        let opts = client_options(
            "owping",
            Some("AE"),
            Some("alice"),
            Some(&f),
            None,
            &mut err,
        )
        .unwrap();
        assert!(err.is_empty(), "{}", String::from_utf8_lossy(&err));
        let id = opts.control.identity.as_ref().unwrap();
        assert_eq!(id.passphrase.as_bytes(), pass.as_bytes());
        let shown = format!("{opts:?} {opts:#?}");
        assert!(shown.contains("alice"), "{shown}");
        assert!(!shown.contains(pass), "{shown}");
        assert!(!shown.contains(&hex::encode(pass)), "{shown}");
        let dec = format!("{:?}", &pass.as_bytes()[..4]);
        assert!(!shown.contains(dec.trim_matches(['[', ']'])), "{shown}");

        // A file others may read: used, with a warning naming it and its mode.
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let opts = client_options("owping", None, Some("alice"), Some(&f), None, &mut err).unwrap();
        assert!(opts.control.identity.is_some());
        let err = String::from_utf8(err).unwrap();
        assert!(
            err.starts_with(&format!(
                "owping: warning: pass-phrase file {} has mode 0644",
                f.display()
            )),
            "{err}"
        );
    }

    #[test]
    fn mode_letters() {
        assert_eq!(parse_authmode(None), Ok(Modes::ALL));
        assert_eq!(parse_authmode(Some("e")).unwrap().raw(), 4);
        assert!(parse_authmode(Some("Z")).is_err());
    }
}
