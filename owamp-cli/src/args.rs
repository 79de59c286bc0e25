//! Command-line argument groups that the clients share, flattened into each tool's `Args`:
//! owping and owfetch take the same connection and owstats output flags, owping and
//! powstream the same operands.
//!
//! The flags are declared in the order the tools list them, so flattening keeps their help
//! output as it was. Where a tool's help text differs, it overrides it with `mut_arg`.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use owamp_std::control::ClientOptions;

use crate::client::{self, Family, HostSpec};
use crate::owstats;

/// Parses a packet count (`-c`): a whole number of packets. A negative one is named as
/// such rather than taken for a flag.
pub fn packet_count(s: &str) -> Result<u32, String> {
    let t = s.trim();
    if t.starts_with('-') {
        return Err(format!("a packet count can not be negative ({t})"));
    }
    t.parse::<u32>().map_err(|_| {
        format!(
            "\"{t}\" is not a packet count: a whole number from 0 to {}",
            u32::MAX
        )
    })
}

/// The connection and authentication flags (-4, -6, -A, -k, -S, -B, -u).
#[derive(Debug, clap::Args)]
pub struct ConnectionArgs {
    /// connect using IPv4 addresses only
    #[arg(short = '4', help_heading = "Connection Args")]
    pub ipv4: bool,
    /// connect using IPv6 addresses only
    #[arg(short = '6', help_heading = "Connection Args")]
    pub ipv6: bool,
    /// Modes accepted (`-A`): letters A, E, O (and M, TWAMP's mixed mode, for twping).
    #[arg(
        help = "requested modes: [A]uthenticated, [E]ncrypted, [O]pen",
        short = 'A',
        value_name = "authmode",
        help_heading = "Connection Args"
    )]
    pub authmode: Option<String>,
    /// passphrase file to use with Authenticated/Encrypted modes
    #[arg(short = 'k', value_name = "pfsfile", help_heading = "Connection Args")]
    pub pfsfile: Option<PathBuf>,
    /// local address for the control connection
    #[arg(short = 'S', value_name = "srcaddr", help_heading = "Connection Args")]
    pub srcaddr: Option<String>,
    /// specify the interface to use for control connection and tests
    #[arg(
        short = 'B',
        value_name = "interface",
        help_heading = "Connection Args"
    )]
    pub interface: Option<String>,
    /// username (identity) to use with Authenticated/Encrypted modes
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
}

impl ConnectionArgs {
    /// Resolves `servaddr` (default port 861) and sets a control connection up with these
    /// flags. `Ok(None)`: it failed, and what perfSONAR's tools print about it is printed.
    pub fn open(
        &self,
        prog: &str,
        servaddr: &str,
        err: &mut dyn Write,
    ) -> Result<Option<client::Connected>, String> {
        let serv = client::parse_host(servaddr, client::CONTROL_PORT)?;
        let addrs = client::resolve(&serv, self.family()?)?;
        let opts = self.client_options(prog, err)?;
        Ok(client::open_control(
            prog,
            &addrs,
            self.srcaddr.as_deref(),
            servaddr,
            &serv.node,
            &opts,
            err,
        ))
    }

    /// The address family of -4 and -6.
    pub fn family(&self) -> Result<Family, String> {
        client::family(self.ipv4, self.ipv6)
    }

    /// Client options with the modes of -A, the identity of -u and -k, the interface of -B
    /// and the PBKDF2 bound of --max-pbkdf2-count.
    pub fn client_options(&self, prog: &str, err: &mut dyn Write) -> Result<ClientOptions, String> {
        let mut opts = client::client_options(
            prog,
            self.authmode.as_deref(),
            self.username.as_deref(),
            self.pfsfile.as_deref(),
            self.interface.as_deref(),
            err,
        )?;
        if let Some(n) = self.max_pbkdf2_count {
            opts.control.max_kdf_count = n;
        }
        Ok(opts)
    }
}

/// owstats's output flags (-a, -b, -d, -M, -n, -N, -p, -Q, -R, -v, -U).
#[derive(Debug, clap::Args)]
pub struct OutputArgs {
    /// report an additional percentile level for the delays
    #[arg(short = 'a', value_name = "alpha", help_heading = "Output Args")]
    pub alpha: Option<String>,
    /// bin size for histogram calculations
    #[arg(short = 'b', value_name = "bucketwidth", help_heading = "Output Args")]
    pub bucket_width: Option<String>,
    /// directory for the files of -p
    #[arg(short = 'd', value_name = "dir", help_heading = "Output Args")]
    pub save_dir: Option<String>,
    /// print machine (perl) readable summary
    #[arg(short = 'M', help_heading = "Output Args")]
    pub machine: bool,
    /// 'n','u','m', or 's'
    #[arg(short = 'n', value_name = "units", help_heading = "Output Args")]
    pub units: Option<String>,
    /// number of test packets (to summarize per sub-session)
    #[arg(short = 'N', value_name = "count", help_heading = "Output Args")]
    pub sub_count: Option<String>,
    /// write each summary to a file named after its start and end time
    #[arg(short = 'p', help_heading = "Output Args")]
    pub print_files: bool,
    /// do not print statistics
    #[arg(short = 'Q', help_heading = "Output Args")]
    pub quiet: bool,
    /// print RAW data: "SEQNO STIME SS SERR RTIME RS RERR TTL"
    #[arg(short = 'R', help_heading = "Output Args")]
    pub raw: bool,
    /// print out individual delays (-vN: of the first N packets)
    #[arg(short = 'v', help_heading = "Output Args")]
    pub verbose: bool,
    #[arg(long = "verbose-limit", hide = true, value_name = "N")]
    pub verbose_limit: Option<String>,
    /// add UNIX timestamps when printing individual delays
    #[arg(short = 'U', help_heading = "Output Args")]
    pub unix: bool,
}

impl OutputArgs {
    /// The owstats options these flags stand for, checked as owstats checks them (`prog`
    /// names the tool in clap's messages).
    pub fn owstats_options(
        &self,
        prog: &str,
        warnings: &mut Vec<String>,
    ) -> Result<owstats::Options, clap::Error> {
        let mut v: Vec<OsString> = vec![prog.into()];
        for (flag, val) in [
            ("-a", &self.alpha),
            ("-b", &self.bucket_width),
            ("-d", &self.save_dir),
            ("-n", &self.units),
            ("-N", &self.sub_count),
        ] {
            if let Some(x) = val {
                v.push(flag.into());
                v.push(x.into());
            }
        }
        if let Some(n) = &self.verbose_limit {
            v.push(format!("--verbose-limit={n}").into());
        }
        for (set, flag) in [
            (self.machine, "-M"),
            (self.print_files, "-p"),
            (self.quiet, "-Q"),
            (self.raw, "-R"),
            (self.verbose, "-v"),
            (self.unix, "-U"),
        ] {
            if set {
                v.push(flag.into());
            }
        }
        owstats::parse_options(v, warnings)
    }
}

/// The operands of owping and powstream: the test peer and, when it is another name for it,
/// the server to contact.
#[derive(Debug, clap::Args)]
pub struct PeerArgs {
    /// The peer (`host`, `host:port`, a bracketed IPv6 address with a port).
    #[arg(
        help = "the host to test with: host, host:port, [v6addr]:port",
        value_name = "testaddr"
    )]
    pub testaddr: String,
    /// the server to contact, when not testaddr (it must have the same address)
    #[arg(value_name = "servaddr")]
    pub servaddr: Option<String>,
}

/// The hosts of [`PeerArgs`], parsed.
#[derive(Debug)]
pub struct Hosts {
    /// The test peer.
    pub test: HostSpec,
    /// The server to contact.
    pub serv: HostSpec,
    /// The server as written (servaddr, or testaddr when there is none).
    pub serv_name: String,
}

impl PeerArgs {
    /// Parses the test peer and the server, on the OWAMP-Control port unless one is written.
    pub fn hosts(&self) -> Result<Hosts, String> {
        let test = client::parse_host(&self.testaddr, client::CONTROL_PORT)?;
        let serv_name = self
            .servaddr
            .clone()
            .unwrap_or_else(|| self.testaddr.clone());
        let serv = client::parse_host(&serv_name, client::CONTROL_PORT)?;
        Ok(Hosts {
            test,
            serv,
            serv_name,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn help_of<A: CommandFactory>(id: &str) -> String {
        A::command()
            .get_arguments()
            .find(|a| a.get_id() == id)
            .and_then(|a| a.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn each_tool_keeps_its_own_help_for_shared_flags() {
        use crate::{owfetch, owping};
        assert_eq!(
            help_of::<owping::Args>("srcaddr"),
            "local address for the control connection and tests"
        );
        assert_eq!(
            help_of::<owfetch::Args>("srcaddr"),
            "local address for the control connection"
        );
        assert_eq!(
            help_of::<owping::Args>("quiet"),
            "run the test and exit without reporting statistics"
        );
        assert_eq!(help_of::<owfetch::Args>("quiet"), "do not print statistics");
    }

    #[test]
    fn the_server_defaults_to_the_test_peer() {
        let p = PeerArgs {
            testaddr: "[::1]:4000".into(),
            servaddr: None,
        };
        let h = p.hosts().unwrap();
        assert_eq!(h.serv_name, "[::1]:4000");
        assert_eq!(h.serv, h.test);
        assert_eq!(h.serv.port, 4000);
        let p = PeerArgs {
            testaddr: "a.example".into(),
            servaddr: Some("b.example:9".into()),
        };
        let h = p.hosts().unwrap();
        assert_eq!((h.test.node.as_str(), h.test.port), ("a.example", 861));
        assert_eq!((h.serv.node.as_str(), h.serv.port), ("b.example", 9));
        let p = PeerArgs {
            testaddr: "h".into(),
            servaddr: Some("h:0".into()),
        };
        assert!(p.hosts().is_err());
    }

    #[test]
    fn output_flags_reach_owstats() {
        let o = OutputArgs {
            alpha: None,
            bucket_width: None,
            save_dir: None,
            machine: false,
            units: None,
            sub_count: None,
            print_files: false,
            quiet: false,
            raw: false,
            verbose: true,
            verbose_limit: Some("20".into()),
            unix: false,
        };
        let opts = o.owstats_options("test", &mut Vec::new()).unwrap();
        assert!(opts.verbose);
        assert_eq!(opts.record_limit, 20);
        assert!(!opts.machine);
        let machine = OutputArgs {
            machine: true,
            verbose: false,
            verbose_limit: None,
            ..o
        };
        let opts = machine.owstats_options("test", &mut Vec::new()).unwrap();
        assert!(opts.machine && !opts.verbose);
        let bad = OutputArgs {
            units: Some("x".into()),
            ..machine
        };
        assert!(bad.owstats_options("test", &mut Vec::new()).is_err());
    }
}
