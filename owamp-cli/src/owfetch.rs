//! owfetch: fetches sessions an OWAMP server stored (by SID) and saves them as `.owp` files,
//! as perfSONAR's owfetch does: `owfetch [arguments] servaddr [SID savefile]+`. Unless `-Q`,
//! each session's statistics are printed as owstats prints them.
//!
//! Exit status: 0 when every session was fetched and saved, 1 otherwise (perfSONAR's owfetch
//! reports failed fetches but exits 0).

use std::ffi::OsString;
use std::io::{Cursor, Write};
use std::path::PathBuf;

use clap::Parser;
use owamp_core::io::StoredSession;
use owamp_core::owp::{self, OwpReader};
use owamp_core::wire::SessionId;
use owamp_std::control::{owp_header, ClientOptions};

use crate::client::{self, Family};
use crate::owstats;
use crate::sys::Environment;

/// Command-line arguments (perfSONAR owfetch's flags).
#[derive(Debug, Parser)]
#[command(
    name = "owfetch",
    about = "Fetch stored OWAMP sessions from a server (perfSONAR owfetch compatible)",
    override_usage = "owfetch [arguments] servaddr [SID savefile]+",
    disable_version_flag = true
)]
pub struct Args {
    /// connect using IPv4 addresses only
    #[arg(short = '4', help_heading = "Connection Args")]
    pub ipv4: bool,
    /// connect using IPv6 addresses only
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
    /// passphrase file to use with Authenticated/Encrypted modes
    #[arg(short = 'k', value_name = "pfsfile", help_heading = "Connection Args")]
    pub pfsfile: Option<PathBuf>,
    /// local address for the control connection
    #[arg(short = 'S', value_name = "srcaddr", help_heading = "Connection Args")]
    pub srcaddr: Option<String>,
    /// username (identity) to use with Authenticated/Encrypted modes
    #[arg(short = 'u', value_name = "username", help_heading = "Connection Args")]
    pub username: Option<String>,

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

    /// the server
    #[arg(value_name = "servaddr")]
    pub servaddr: String,
    /// pairs of SID (32 hexadecimal digits) and file to save it in
    #[arg(value_name = "SID savefile", num_args = 1.., required = true)]
    pub pairs: Vec<String>,
}

/// Parses a SID written as 32 hexadecimal digits.
pub fn parse_sid(s: &str) -> Result<SessionId, String> {
    let v = hex::decode(s).map_err(|_| format!("invalid SID \"{s}\" (32 hexadecimal digits)"))?;
    let a: [u8; 16] = v
        .try_into()
        .map_err(|_| format!("invalid SID \"{s}\" (32 hexadecimal digits)"))?;
    Ok(SessionId(a))
}

fn output_options(a: &Args, warnings: &mut Vec<String>) -> Result<owstats::Options, String> {
    let mut v: Vec<OsString> = vec!["owfetch".into()];
    for (flag, val) in [
        ("-a", &a.alpha),
        ("-b", &a.bucket_width),
        ("-d", &a.save_dir),
        ("-n", &a.units),
        ("-N", &a.sub_count),
    ] {
        if let Some(x) = val {
            v.push(flag.into());
            v.push(x.into());
        }
    }
    if let Some(n) = &a.verbose_limit {
        v.push(format!("--verbose-limit={n}").into());
    }
    for (set, flag) in [
        (a.machine, "-M"),
        (a.print_files, "-p"),
        (a.quiet, "-Q"),
        (a.raw, "-R"),
        (a.verbose, "-v"),
        (a.unix, "-U"),
    ] {
        if set {
            v.push(flag.into());
        }
    }
    owstats::parse_options(v, warnings).map_err(|e| e.render().to_string().trim().to_owned())
}

/// Runs owfetch; returns the exit status.
pub fn run(
    argv: impl IntoIterator<Item = OsString>,
    out: &mut dyn Write,
    err: &mut dyn Write,
    env: &dyn Environment,
) -> i32 {
    let argv = owstats::split_attached_verbose(argv);
    let a = match Args::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = write!(err, "{}", e.render());
            return code;
        }
    };
    match fetch_all(&a, out, err, env) {
        Ok(code) => code,
        Err(m) => {
            let _ = writeln!(err, "owfetch: {m}");
            1
        }
    }
}

fn fetch_all(
    a: &Args,
    out: &mut dyn Write,
    err: &mut dyn Write,
    env: &dyn Environment,
) -> Result<i32, String> {
    if a.pairs.len() % 2 != 0 {
        return Err("usage: owfetch [arguments] servaddr [SID savefile]+".into());
    }
    let pairs: Vec<(SessionId, PathBuf)> = a
        .pairs
        .chunks(2)
        .map(|c| Ok((parse_sid(&c[0])?, PathBuf::from(&c[1]))))
        .collect::<Result<_, String>>()?;
    let mut warnings = Vec::new();
    let opts_out = output_options(a, &mut warnings)?;
    for w in warnings {
        let _ = writeln!(err, "owfetch: {w}");
    }
    if a.ipv4 && a.ipv6 {
        return Err("-4 and -6 flags cannot be set together".into());
    }
    let family = match (a.ipv4, a.ipv6) {
        (true, _) => Family::V4,
        (_, true) => Family::V6,
        _ => Family::Any,
    };
    let serv = client::parse_host(&a.servaddr, client::CONTROL_PORT)?;
    let addrs = client::resolve(&serv, family)?;
    let mut opts = ClientOptions::default();
    opts.control.modes = client::parse_authmode(a.authmode.as_deref())?;
    opts.control.identity =
        client::identity("owfetch", a.username.as_deref(), a.pfsfile.as_deref(), err)?;
    let Some(c) = client::open_control(
        "owfetch",
        &addrs,
        a.srcaddr.as_deref(),
        &a.servaddr,
        &serv.node,
        &opts,
        err,
    ) else {
        return Ok(1);
    };
    let mut conn = c.conn;
    let mut status = 0;
    for (sid, path) in &pairs {
        let hexsid = hex::encode(sid.0);
        let f = match conn.fetch(*sid, 0, u32::MAX) {
            Ok(f) => f,
            Err(e) => {
                let _ = writeln!(err, "owfetch: {e}");
                let _ = writeln!(err, "owfetch: Unable to fetch sid({hexsid})");
                status = 1;
                continue;
            }
        };
        let s = StoredSession {
            request: f.request,
            finished: f.finished,
            next_seqno: f.next_seqno,
            skips: f.skips,
            records: f.records,
        };
        let h = owp_header(&s);
        if let Err(e) = owp::write_file(path, &h, s.records.iter().copied()) {
            let _ = writeln!(err, "owfetch: {}: {e}", path.display());
            status = 1;
            continue;
        }
        if a.quiet && !a.raw {
            continue;
        }
        let bytes = owp::to_bytes(&h, &s.records).map_err(|e| e.to_string())?;
        let r = OwpReader::new(Cursor::new(bytes.as_slice()))
            .map_err(|e| e.to_string())
            .and_then(|r| owstats::stats_from(r, &opts_out, out, env, None));
        if let Err(e) = r {
            let _ = writeln!(err, "owfetch: do_stats() failed: {e}");
            status = 1;
        }
    }
    conn.close();
    let _ = out.flush();
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sids() {
        let s = parse_sid("7f000001eeb25d6ef64217d2e7f3e751").unwrap();
        assert_eq!(s.0[0], 0x7f);
        assert_eq!(s.0[15], 0x51);
        assert!(parse_sid("7f00").is_err());
        assert!(parse_sid("zz000001eeb25d6ef64217d2e7f3e751").is_err());
    }

    #[test]
    fn pairs_must_be_complete() {
        let mut err = Vec::new();
        let code = run(
            ["owfetch", "127.0.0.1:1", "7f000001eeb25d6ef64217d2e7f3e751"]
                .iter()
                .map(OsString::from),
            &mut Vec::new(),
            &mut err,
            &crate::sys::System,
        );
        assert_eq!(code, 1);
        assert!(String::from_utf8_lossy(&err).contains("usage"));
    }
}
