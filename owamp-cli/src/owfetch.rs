//! owfetch: fetches sessions an OWAMP server stored (by SID) and saves them as `.owp` files,
//! as perfSONAR's owfetch does: `owfetch [arguments] servaddr [SID savefile]+`. Unless `-Q`,
//! each session's statistics are printed as owstats prints them.
//!
//! Exit status: 0 when every session was fetched and saved, 1 otherwise (perfSONAR's owfetch
//! reports failed fetches but exits 0).

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use clap::Parser;
use owamp_core::wire::SessionId;
use owamp_std::control::ClientError;

use crate::args::{ConnectionArgs, OutputArgs};
use crate::client;
use crate::owstats;
use crate::sys::Environment;

/// Command-line arguments (perfSONAR owfetch's flags).
#[derive(Debug, Parser)]
#[command(
    name = "owfetch",
    about = "Fetch stored OWAMP sessions from a server (perfSONAR owfetch compatible)",
    override_usage = "owfetch [arguments] servaddr [SID savefile]+",
    version = crate::man::VERSION,
    disable_version_flag = true,
    arg = crate::man::version_flag(),
    after_help = crate::man::VERSION_LINE
)]
pub struct Args {
    #[command(flatten)]
    pub conn: ConnectionArgs,
    #[command(flatten)]
    pub output: OutputArgs,

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

/// Runs owfetch; returns the exit status.
pub fn run(
    argv: impl IntoIterator<Item = OsString>,
    out: &mut dyn Write,
    err: &mut dyn Write,
    env: &dyn Environment,
) -> i32 {
    let a: Args = match client::parse_args(owstats::split_attached_verbose(argv), err) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let r = fetch_all(&a, out, err, env);
    client::exit_status("owfetch", r, err)
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
    let opts_out = a
        .output
        .owstats_options("owfetch", &mut warnings)
        .map_err(|e| e.render().to_string().trim().to_owned())?;
    for w in warnings {
        let _ = writeln!(err, "owfetch: {w}");
    }
    let Some(c) = a.conn.open("owfetch", &a.servaddr, err)? else {
        return Ok(1);
    };
    let mut conn = c.conn;
    let mut status = 0;
    for (sid, path) in &pairs {
        let hexsid = hex::encode(sid.0);
        // The records go to the file as they arrive; it replaces `path` once complete.
        match conn.fetch_to(*sid, 0, u32::MAX, path) {
            Ok(_) => {}
            Err(e @ ClientError::Save { .. }) => {
                let _ = writeln!(err, "owfetch: {e}");
                status = 1;
                continue;
            }
            Err(e) => {
                let _ = writeln!(err, "owfetch: {e}");
                let _ = writeln!(err, "owfetch: Unable to fetch sid({hexsid})");
                status = 1;
                continue;
            }
        }
        if a.output.quiet && !a.output.raw {
            continue;
        }
        if let Err(e) = client::print_stats_file(path, &opts_out, out, env, None) {
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
