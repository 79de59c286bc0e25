//! owup: asks an OWAMP server how long it has been up, as perfSONAR's owup does. The
//! Server-Start message carries the time the server started (RFC 4656 3.1, Start-Time);
//! owup sets a control connection up, prints that time and closes.
//!
//! Output: `Server Up Since: YYYY-MM-DDTHH:MM:SS.mmmZONE`, in the local time zone. Exit
//! status 0 when the server answered, 1 otherwise.

use std::ffi::OsString;
use std::io::Write;

use clap::Parser;
use owamp_core::time::OwampTime;

use crate::args::ConnectionArgs;
use crate::client;
use crate::sys::Environment;

/// Command-line arguments (perfSONAR owup's flags).
#[derive(Debug, Parser)]
#[command(
    name = "owup",
    about = "Ask an OWAMP server since when it has been up (perfSONAR owup compatible)",
    override_usage = "owup [arguments] servaddr",
    version = crate::man::VERSION,
    disable_version_flag = true,
    arg = crate::man::version_flag(),
    after_help = crate::man::VERSION_LINE
)]
pub struct Args {
    #[command(flatten)]
    pub conn: ConnectionArgs,
    /// the server
    #[arg(value_name = "servaddr")]
    pub servaddr: String,
}

/// Runs owup; returns the exit status.
pub fn run(
    argv: impl IntoIterator<Item = OsString>,
    out: &mut dyn Write,
    err: &mut dyn Write,
    env: &dyn Environment,
) -> i32 {
    let a: Args = match client::parse_args(argv, err) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let r = query(&a, out, err, env);
    client::exit_status("owup", r, err)
}

fn query(
    a: &Args,
    out: &mut dyn Write,
    err: &mut dyn Write,
    env: &dyn Environment,
) -> Result<i32, String> {
    let Some(c) = a.conn.open("owup", &a.servaddr, err)? else {
        return Ok(1);
    };
    let since = c.conn.server_start();
    c.conn.close();
    writeln!(out, "Server Up Since: {}", up_since(since, env)).map_err(|e| e.to_string())?;
    Ok(0)
}

/// The server's start time as owup prints it: local calendar time to the millisecond, then
/// the zone's abbreviation.
pub fn up_since(t: OwampTime, env: &dyn Environment) -> String {
    let Some(d) = t.duration_since(OwampTime::UNIX_EPOCH) else {
        return format!("(before 1970: NTP seconds {})", t.seconds());
    };
    let secs = u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
    let ms = d.subsec_millis();
    match env.local_time(secs) {
        Some(day) => format!("{day}.{ms:03}{}", env.zone_name(secs).unwrap_or_default()),
        None => format!("{secs}.{ms:03} (Unix time)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    struct Fixed;
    impl Environment for Fixed {
        fn host_name(&self, _: IpAddr) -> Option<String> {
            None
        }
        fn local_time(&self, secs: u32) -> Option<String> {
            Some(format!("T{secs}"))
        }
        fn zone_name(&self, _: u32) -> Option<String> {
            Some("XYZ".into())
        }
    }

    #[test]
    fn start_time_is_printed_with_milliseconds_and_zone() {
        let t = OwampTime::UNIX_EPOCH
            .checked_add(std::time::Duration::from_millis(1_700_000_000_393))
            .unwrap();
        assert_eq!(up_since(t, &Fixed), "T1700000000.393XYZ");
        assert!(up_since(OwampTime::ZERO, &Fixed).contains("before 1970"));
    }

    #[test]
    fn servaddr_is_required() {
        assert!(Args::try_parse_from(["owup"]).is_err());
        let a = Args::try_parse_from(["owup", "-A", "O", "host:1234"]).unwrap();
        assert_eq!(a.servaddr, "host:1234");
    }
}
