//! `owamp-server.conf` (older name `owampd.conf`): one `keyword [value] [# comment]` per line.
//!
//! The keywords are those perfSONAR owampd 5.x reads (owampd.conf(5) and the daemon's own
//! parser): `authmode`, `controltimeout`, `datadir`, `dieby`, `diskfudge`, `enddelay`,
//! `facility`, `group`, `loglevel`, `loglocation`, `maxcontrolsessions`, `pbkdf2_count`,
//! `rootfolly`, `srcnode`, `syncfuzz`, `testports`, `user`, `vardir`, `verbose`; and some of
//! ours: `keepfor` (retention), `maxcontrolsessionsperaddr` and `maxsessionsperaddr` (limits
//! per client address), `metrics` (the Prometheus endpoint, as `--metrics`) and `sendtiming`
//! (how precisely test packets leave).
//! Any other keyword is an error, as in the reference.

use std::path::PathBuf;

use owamp_core::control::{Mode, Modes};

use super::{logical_lines, strip_trailing_comment, ConfigError, ConfigErrorKind};

/// Test ports: chosen by the system, or a range (owampd's `testports` / `-P`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestPorts {
    /// `0`: any port the system picks.
    Ephemeral,
    /// `low-high` (a single number is a range of one port).
    Range(u16, u16),
}

impl TestPorts {
    /// The range for the control state machines (`None` for system-chosen ports).
    pub fn range(self) -> Option<owamp_core::control::PortRange> {
        match self {
            TestPorts::Ephemeral => None,
            TestPorts::Range(low, high) => Some(owamp_core::control::PortRange { low, high }),
        }
    }
}

/// Parses `0`, `port` or `low-high` (blanks allowed around the dash).
pub fn parse_test_ports(s: &str) -> Result<TestPorts, String> {
    let num = |t: &str| -> Result<u16, String> {
        t.trim()
            .parse::<u16>()
            .map_err(|_| format!("\"{}\" is not a port number (0-65535)", t.trim()))
    };
    let (low, high) = match s.split_once('-') {
        Some((l, h)) => (num(l)?, num(h)?),
        None => {
            let p = num(s)?;
            (p, p)
        }
    };
    if high < low {
        return Err("the high port is below the low port".into());
    }
    if low == 0 && high == 0 {
        return Ok(TestPorts::Ephemeral);
    }
    if low == 0 {
        return Err("port 0 cannot start a range".into());
    }
    Ok(TestPorts::Range(low, high))
}

/// Parses an authentication mode string: any of the letters A, E, O (either case), and M,
/// TWAMP's mixed mode (RFC 5618), which the OWAMP tools refuse after parsing.
pub fn parse_modes(s: &str) -> Result<Modes, String> {
    if s.is_empty() {
        return Err("expected some of the letters A, E, M and O".into());
    }
    let mut m = Modes::EMPTY;
    for c in s.chars() {
        m = match c.to_ascii_uppercase() {
            'O' => m.with(Mode::Open),
            'A' => m.with(Mode::Authenticated),
            'E' => m.with(Mode::Encrypted),
            'M' => owamp_core::wire::twamp::with_mixed(m),
            _ => return Err(format!("'{c}' is not one of A, E, M, O")),
        };
    }
    Ok(m)
}

/// Refuses TWAMP's mixed mode (M) in the modes of an OWAMP tool.
pub fn owamp_modes(m: Modes) -> Result<Modes, String> {
    if owamp_core::wire::twamp::offers_mixed(m) {
        return Err("M (mixed mode, RFC 5618) is a TWAMP mode; OWAMP has A, E and O".into());
    }
    Ok(m)
}

/// The keywords of `owamp-server.conf`.
pub const KEYWORDS: &[&str] = &[
    "authmode",
    "controltimeout",
    "datadir",
    "dieby",
    "diskfudge",
    "enddelay",
    "facility",
    "group",
    "keepfor",
    "loglevel",
    "loglocation",
    "maxcontrolsessions",
    "maxcontrolsessionsperaddr",
    "maxsessionsperaddr",
    "metrics",
    "pbkdf2_count",
    "rootfolly",
    "sendtiming",
    "srcnode",
    "syncfuzz",
    "testports",
    "user",
    "vardir",
    "verbose",
];

/// How the server's senders keep their schedule (`sendtiming`, ours). Every packet is stamped
/// with the time it actually left whatever this says; it decides how close to its scheduled
/// time that is, and what that costs in CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SendTiming {
    /// The runtime's millisecond timer, no spinning (the default): packets leave up to about a
    /// millisecond late; cheapest with many clients.
    #[default]
    Coarse,
    /// A nanosecond timer per connection (`timerfd`), no spinning: tens of microseconds late
    /// on a typical virtual machine.
    Fine,
    /// The nanosecond timer and a short spin before each packet, learnt from how late the
    /// timer wakes: a few microseconds late, at the most CPU.
    Precise,
}

impl SendTiming {
    /// The keyword's values, in order of precision.
    pub const NAMES: [&'static str; 3] = ["coarse", "fine", "precise"];

    fn parse(v: &str) -> Option<Self> {
        match v.to_ascii_lowercase().as_str() {
            "coarse" => Some(SendTiming::Coarse),
            "fine" => Some(SendTiming::Fine),
            "precise" => Some(SendTiming::Precise),
            _ => None,
        }
    }
}

/// Syslog facility names owampd accepts (`facility`, `-e`).
pub const FACILITIES: &[&str] = &[
    "auth", "authpriv", "cron", "daemon", "ftp", "kern", "lpr", "mail", "news", "syslog", "user",
    "uucp", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
];

/// Log level names (`loglevel`).
pub const LOG_LEVELS: &[&str] = &["none", "fatal", "warning", "info", "debug", "all"];

/// Checks a syslog facility name (either case, with or without a `LOG_` prefix).
pub fn check_facility(s: &str) -> Result<String, String> {
    let lower = s.to_ascii_lowercase();
    let name = lower.strip_prefix("log_").unwrap_or(&lower);
    if FACILITIES.contains(&name) {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "unknown syslog facility (one of {})",
            FACILITIES.join(", ")
        ))
    }
}

/// The settings of `owamp-server.conf`. `None`/`false` means not given (the daemon's default
/// or command line applies).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServerConf {
    /// `authmode`: modes offered.
    pub authmode: Option<Modes>,
    /// `controltimeout`: seconds to wait for a control message.
    pub controltimeout: Option<u32>,
    /// `datadir`: where receive session files are kept.
    pub datadir: Option<PathBuf>,
    /// `dieby`: seconds to wait for sessions to end on shutdown.
    pub dieby: Option<u32>,
    /// `diskfudge`: factor (1.0 to 10.0) on disk estimates.
    pub diskfudge: Option<f64>,
    /// `enddelay`: seconds a sender waits after its session before Stop-Sessions.
    pub enddelay: Option<f64>,
    /// `facility`: syslog facility (lower case, no `LOG_` prefix).
    pub facility: Option<String>,
    /// `group`: group to run as when started as root.
    pub group: Option<String>,
    /// `keepfor`: seconds received sessions are kept before owampd deletes them (0: for ever).
    /// Ours, not perfSONAR's (whose owampd-cleanup script does this from cron).
    pub keepfor: Option<u64>,
    /// `loglevel`.
    pub loglevel: Option<String>,
    /// `loglocation`: add source locations to messages.
    pub loglocation: bool,
    /// `maxcontrolsessions`: most simultaneous control connections (0: no limit).
    pub maxcontrolsessions: Option<u32>,
    /// `maxcontrolsessionsperaddr`: most simultaneous control connections from one address
    /// (an IPv4 address, or an IPv6 /64; 0: no limit). Ours, not perfSONAR's.
    pub maxcontrolsessionsperaddr: Option<u32>,
    /// `maxsessionsperaddr`: most test sessions set up or running at once for clients at
    /// one address (as above; 0: no limit). Ours, not perfSONAR's.
    pub maxsessionsperaddr: Option<u32>,
    /// `metrics`: `ADDR:PORT` of the Prometheus metrics endpoint (as `--metrics`; checked
    /// when owampd starts). Ours, not perfSONAR's.
    pub metrics: Option<String>,
    /// `pbkdf2_count`: PBKDF2 iteration count offered in the Server-Greeting.
    pub pbkdf2_count: Option<u32>,
    /// `rootfolly`: allow running as root.
    pub rootfolly: bool,
    /// `sendtiming`: how precisely the server's test packets keep their schedule. Ours.
    pub sendtiming: Option<SendTiming>,
    /// `srcnode`: `node:port`, `node`, `:port` or `[v6addr]:port` to listen on.
    pub srcnode: Option<String>,
    /// `syncfuzz`: seconds added to error estimates (older releases).
    pub syncfuzz: Option<f64>,
    /// `testports`.
    pub testports: Option<TestPorts>,
    /// `user`: user to run as when started as root.
    pub user: Option<String>,
    /// `vardir`: where the pid and info files go.
    pub vardir: Option<PathBuf>,
    /// `verbose`.
    pub verbose: bool,
}

fn float_in(
    line: usize,
    key: &str,
    v: &str,
    ok: impl Fn(f64) -> bool,
    what: &str,
) -> Result<f64, ConfigError> {
    match v.parse::<f64>() {
        Ok(x) if x.is_finite() && ok(x) => Ok(x),
        _ => Err(ConfigError::invalid(line, key, v, what)),
    }
}

fn uint(line: usize, key: &str, v: &str) -> Result<u32, ConfigError> {
    v.parse::<u32>()
        .map_err(|_| ConfigError::invalid(line, key, v, "expected a whole number"))
}

/// Parses the text of `owamp-server.conf`.
pub fn parse(text: &str) -> Result<ServerConf, ConfigError> {
    let mut c = ServerConf::default();
    for l in logical_lines(text)? {
        let body = strip_trailing_comment(&l.text);
        let mut words = body.split_whitespace();
        let Some(key_raw) = words.next() else {
            continue;
        };
        let value = words.next();
        if let Some(extra) = words.next() {
            return Err(ConfigError::new(
                l.line,
                ConfigErrorKind::TrailingText(extra.to_owned()),
            ));
        }
        let key = key_raw.to_ascii_lowercase();
        let line = l.line;
        if !KEYWORDS.contains(&key.as_str()) {
            return Err(ConfigError::new(
                line,
                ConfigErrorKind::UnknownKeyword(key_raw.to_owned()),
            ));
        }
        let flag = |set: &mut bool| -> Result<(), ConfigError> {
            match value {
                None => {
                    *set = true;
                    Ok(())
                }
                Some(_) => Err(ConfigError::new(
                    line,
                    ConfigErrorKind::UnexpectedValue(key_raw.to_owned()),
                )),
            }
        };
        match key.as_str() {
            "verbose" => flag(&mut c.verbose)?,
            "loglocation" => flag(&mut c.loglocation)?,
            "rootfolly" => flag(&mut c.rootfolly)?,
            _ => {
                let v = value.ok_or_else(|| {
                    ConfigError::new(line, ConfigErrorKind::MissingValue(key_raw.to_owned()))
                })?;
                match key.as_str() {
                    "authmode" => {
                        c.authmode = Some(
                            parse_modes(v)
                                .map_err(|r| ConfigError::invalid(line, key_raw, v, r))?,
                        )
                    }
                    "controltimeout" => c.controltimeout = Some(uint(line, key_raw, v)?),
                    "datadir" => c.datadir = Some(PathBuf::from(v)),
                    "dieby" => c.dieby = Some(uint(line, key_raw, v)?),
                    "diskfudge" => {
                        c.diskfudge = Some(float_in(
                            line,
                            key_raw,
                            v,
                            |x| (1.0..=10.0).contains(&x),
                            "expected a number from 1.0 to 10.0",
                        )?)
                    }
                    "enddelay" => {
                        // It becomes a Duration: a value too large for one is refused here
                        // rather than aborting owampd when it starts.
                        c.enddelay = Some(float_in(
                            line,
                            key_raw,
                            v,
                            |x| x >= 0.0 && std::time::Duration::try_from_secs_f64(x).is_ok(),
                            "expected a number of seconds, 0 or more",
                        )?)
                    }
                    "facility" => {
                        c.facility = Some(
                            check_facility(v)
                                .map_err(|r| ConfigError::invalid(line, key_raw, v, r))?,
                        )
                    }
                    "group" => c.group = Some(v.to_owned()),
                    "keepfor" => {
                        c.keepfor = Some(v.parse::<u64>().map_err(|_| {
                            ConfigError::invalid(
                                line,
                                key_raw,
                                v,
                                "expected a whole number of seconds (0: keep for ever)",
                            )
                        })?)
                    }
                    "loglevel" => {
                        let lv = v.to_ascii_lowercase();
                        if !LOG_LEVELS.contains(&lv.as_str()) {
                            return Err(ConfigError::invalid(
                                line,
                                key_raw,
                                v,
                                format!("expected one of {}", LOG_LEVELS.join(", ")),
                            ));
                        }
                        c.loglevel = Some(lv);
                    }
                    "maxcontrolsessions" => c.maxcontrolsessions = Some(uint(line, key_raw, v)?),
                    "maxcontrolsessionsperaddr" => {
                        c.maxcontrolsessionsperaddr = Some(uint(line, key_raw, v)?)
                    }
                    "maxsessionsperaddr" => c.maxsessionsperaddr = Some(uint(line, key_raw, v)?),
                    "metrics" => c.metrics = Some(v.to_owned()),
                    "pbkdf2_count" => {
                        let n = uint(line, key_raw, v)?;
                        if n == 0 {
                            return Err(ConfigError::invalid(
                                line,
                                key_raw,
                                v,
                                "the count must be at least 1",
                            ));
                        }
                        // The server derives keys with the same bound its clients apply: a
                        // larger count would refuse every authenticated client.
                        let max = owamp_core::crypto::DEFAULT_MAX_KDF_COUNT;
                        if n > max {
                            return Err(ConfigError::invalid(
                                line,
                                key_raw,
                                v,
                                format!("the count must be at most {max}"),
                            ));
                        }
                        c.pbkdf2_count = Some(n)
                    }
                    "sendtiming" => {
                        c.sendtiming = Some(SendTiming::parse(v).ok_or_else(|| {
                            ConfigError::invalid(
                                line,
                                key_raw,
                                v,
                                format!("expected one of {}", SendTiming::NAMES.join(", ")),
                            )
                        })?)
                    }
                    "srcnode" => c.srcnode = Some(v.to_owned()),
                    "syncfuzz" => {
                        c.syncfuzz = Some(float_in(
                            line,
                            key_raw,
                            v,
                            |x| x >= 0.0,
                            "expected a number of seconds, 0 or more",
                        )?)
                    }
                    "testports" => {
                        c.testports = Some(
                            parse_test_ports(v)
                                .map_err(|r| ConfigError::invalid(line, key_raw, v, r))?,
                        )
                    }
                    "user" => c.user = Some(v.to_owned()),
                    "vardir" => c.vardir = Some(PathBuf::from(v)),
                    _ => {
                        return Err(ConfigError::new(
                            line,
                            ConfigErrorKind::UnknownKeyword(key_raw.to_owned()),
                        ))
                    }
                }
            }
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {

    #[test]
    fn mixed_mode_letter_is_twamps() {
        let m = parse_modes("aeMo").unwrap();
        assert!(owamp_core::wire::twamp::offers_mixed(m));
        assert_eq!(m.known(), Modes::ALL);
        assert!(owamp_modes(m).is_err());
        assert_eq!(owamp_modes(Modes::ALL), Ok(Modes::ALL));
        assert!(parse_modes("X").is_err() && parse_modes("").is_err());
    }

    use super::*;

    /// The configuration of the server that recorded the reference traces.
    const REFERENCE: &str = "# owamp-server.conf\nsrcnode 127.0.0.1:8610\ntestports 8760-8960\n\
datadir /srv/owamp/data\nvardir /run/owamp\ndiskfudge 3.0\n";

    #[test]
    fn reference_configuration() {
        let c = parse(REFERENCE).unwrap();
        assert_eq!(c.srcnode.as_deref(), Some("127.0.0.1:8610"));
        assert_eq!(c.testports, Some(TestPorts::Range(8760, 8960)));
        assert_eq!(c.datadir, Some(PathBuf::from("/srv/owamp/data")));
        assert_eq!(c.vardir, Some(PathBuf::from("/run/owamp")));
        assert_eq!(c.diskfudge, Some(3.0));
        assert!(!c.verbose);
    }

    /// `keepfor` (ours): whole seconds, 0 meaning for ever.
    #[test]
    fn keepfor_takes_whole_seconds() {
        assert_eq!(parse("keepfor 86400\n").unwrap().keepfor, Some(86400));
        assert_eq!(parse("keepfor 0\n").unwrap().keepfor, Some(0));
        assert_eq!(parse("").unwrap().keepfor, None);
        for bad in [
            "keepfor -1\n",
            "keepfor 1.5\n",
            "keepfor\n",
            "keepfor 1 2\n",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    /// The annotated example shipped with owamp (conf/owampd.conf), its settings uncommented.
    #[test]
    fn shipped_example() {
        let text = "# run as group/user\nuser\t\towamp\ngroup\t\towamp\n\nverbose\n\
facility\tlocal5\nloglocation\n#vardir\t\t/var/run\nauthmode O\nsrcnode localhost:8765\n\
testports 0\ndiskfudge\t3.0\ndieby 5\ncontroltimeout\t1800\npbkdf2_count 2048\n\
enddelay 1.5\nmaxcontrolsessions 50\nrootfolly\n";
        let c = parse(text).unwrap();
        assert_eq!(c.user.as_deref(), Some("owamp"));
        assert_eq!(c.group.as_deref(), Some("owamp"));
        assert!(c.verbose && c.loglocation && c.rootfolly);
        assert_eq!(c.facility.as_deref(), Some("local5"));
        assert_eq!(c.authmode, Some(Modes::OPEN));
        assert_eq!(c.testports, Some(TestPorts::Ephemeral));
        assert_eq!(c.dieby, Some(5));
        assert_eq!(c.controltimeout, Some(1800));
        assert_eq!(c.pbkdf2_count, Some(2048));
        assert_eq!(c.enddelay, Some(1.5));
        assert_eq!(c.maxcontrolsessions, Some(50));
        assert_eq!(c.vardir, None);
    }

    #[test]
    fn send_timing() {
        assert_eq!(parse("").unwrap().sendtiming, None);
        for (v, want) in [
            ("coarse", SendTiming::Coarse),
            ("Fine", SendTiming::Fine),
            ("PRECISE", SendTiming::Precise),
        ] {
            assert_eq!(
                parse(&format!("sendtiming {v}\n")).unwrap().sendtiming,
                Some(want)
            );
        }
        let e = parse("sendtiming exact\n").unwrap_err().to_string();
        assert!(e.contains("coarse, fine, precise"), "{e}");
        assert!(parse("sendtiming\n").is_err());
    }

    #[test]
    fn per_address_limits() {
        let c = parse(
            "maxcontrolsessionsperaddr 8
MaxSessionsPerAddr 0
",
        )
        .unwrap();
        assert_eq!(c.maxcontrolsessionsperaddr, Some(8));
        assert_eq!(c.maxsessionsperaddr, Some(0));
        let c = parse(
            "maxcontrolsessions 50
",
        )
        .unwrap();
        assert_eq!(
            (c.maxcontrolsessionsperaddr, c.maxsessionsperaddr),
            (None, None)
        );
        assert!(parse(
            "maxsessionsperaddr -1
"
        )
        .is_err());
        assert!(parse(
            "maxcontrolsessionsperaddr
"
        )
        .is_err());
    }

    #[test]
    fn keywords_ignore_case_and_allow_trailing_comments() {
        let c = parse("DataDir /d   # buffered sessions\nAUTHMODE aeo\n").unwrap();
        assert_eq!(c.datadir, Some(PathBuf::from("/d")));
        assert_eq!(c.authmode, Some(Modes::ALL));
    }

    #[test]
    fn continuation_lines() {
        let c = parse("testports \\\n 9000-9100\n").unwrap();
        assert_eq!(c.testports, Some(TestPorts::Range(9000, 9100)));
    }

    #[test]
    fn unknown_keyword_names_its_line() {
        let e = parse("# c\ndatadir /x\nbogus 1\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert_eq!(e.kind, ConfigErrorKind::UnknownKeyword("bogus".into()));
        let e = parse("Bogus\n").unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::UnknownKeyword("Bogus".into()));
    }

    #[test]
    fn bad_values() {
        for (text, line) in [
            ("diskfudge 11\n", 1),
            ("\ndiskfudge x\n", 2),
            ("testports 9000-8000\n", 1),
            ("testports 0-100\n", 1),
            ("testports 70000\n", 1),
            ("authmode X\n", 1),
            ("controltimeout -1\n", 1),
            ("enddelay -0.5\n", 1),
            ("facility nowhere\n", 1),
            ("loglevel loud\n", 1),
            ("pbkdf2_count 0\n", 1),
            ("datadir\n", 1),
            ("verbose yes\n", 1),
            ("datadir /a /b\n", 1),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
        }
    }

    #[test]
    fn pbkdf2_count_within_what_the_server_derives_with() {
        let max = owamp_core::crypto::DEFAULT_MAX_KDF_COUNT;
        assert_eq!(
            parse(&format!("pbkdf2_count {max}\n"))
                .unwrap()
                .pbkdf2_count,
            Some(max)
        );
        let e = parse(&format!("pbkdf2_count {}\n", max + 1)).unwrap_err();
        assert_eq!(e.line, 1, "{e}");
        // The bound is the one key derivation enforces.
        let salt = [0u8; 16];
        assert!(owamp_core::crypto::derive_key(b"x", &salt, max + 1).is_err());
    }

    #[test]
    fn enddelay_must_fit_a_duration() {
        // owampd turns the value into a Duration when it starts.
        for big in ["1e20", "1e300"] {
            let e = parse(&format!("enddelay {big}\n")).unwrap_err();
            assert_eq!(e.line, 1, "{big}: {e}");
        }
        let c = parse("enddelay 1e9\n").unwrap();
        let d = std::time::Duration::from_secs_f64(c.enddelay.unwrap());
        assert_eq!(d.as_secs(), 1_000_000_000);
    }

    #[test]
    fn port_ranges() {
        assert_eq!(parse_test_ports("0"), Ok(TestPorts::Ephemeral));
        assert_eq!(
            parse_test_ports("8760 - 8960"),
            Ok(TestPorts::Range(8760, 8960))
        );
        assert_eq!(parse_test_ports("9000"), Ok(TestPorts::Range(9000, 9000)));
        assert!(parse_test_ports("a-b").is_err());
        assert_eq!(
            TestPorts::Range(1, 2).range(),
            Some(owamp_core::control::PortRange { low: 1, high: 2 })
        );
    }
}
