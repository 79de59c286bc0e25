//! owampd's log: `tracing` events, written to standard error as `owampd[pid]: message` or
//! sent to syslog, filtered by the `loglevel` of owamp-server.conf.
//!
//! The destination can change while the daemon runs: a daemon logs to standard error until
//! it has detached from its terminal (so that a start-up error reaches whoever started it),
//! then to syslog. Events from the library crates (`owamp_os`, `owamp_tokio`, ...) go the same
//! way.
//!
//! Syslog messages go to `/dev/log` in the BSD format (RFC 3164) with the facility of `-e` or
//! `facility`; `OWAMPD_SYSLOG_SOCKET` names another Unix datagram socket (for containers
//! whose syslog listens elsewhere, and for tests).

use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// The environment variable naming the syslog socket (default `/dev/log`).
pub const SYSLOG_SOCKET_ENV: &str = "OWAMPD_SYSLOG_SOCKET";

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// Standard error, one `prog[pid]: message` line each.
    Stderr,
    /// Syslog, with the facility of [`configure`].
    Syslog,
}

type SyslogLogger = syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>;

enum Sink {
    Stderr,
    Syslog(SyslogLogger),
}

struct State {
    prog: &'static str,
    /// The least severe level written (`None`: nothing).
    max: Option<Level>,
    /// The syslog facility's name.
    facility: String,
    sink: Sink,
}

static STATE: OnceLock<Mutex<State>> = OnceLock::new();

fn state() -> &'static Mutex<State> {
    STATE.get_or_init(|| {
        Mutex::new(State {
            prog: "owampd",
            max: Some(Level::INFO),
            facility: "daemon".into(),
            sink: Sink::Stderr,
        })
    })
}

/// The levels of `loglevel` (owamp-server.conf): the least severe level written.
pub fn parse_level(name: &str) -> Result<Option<Level>, String> {
    match name.to_ascii_lowercase().as_str() {
        "none" => Ok(None),
        "fatal" => Ok(Some(Level::ERROR)),
        "warning" | "warn" => Ok(Some(Level::WARN)),
        "info" => Ok(Some(Level::INFO)),
        "debug" => Ok(Some(Level::DEBUG)),
        "all" => Ok(Some(Level::TRACE)),
        other => Err(format!(
            "unknown log level \"{other}\" (none, fatal, warning, info, debug or all)"
        )),
    }
}

/// Installs the log as the process's `tracing` subscriber (once; later calls only change
/// the settings), writing to standard error at `max` and above.
pub fn init(prog: &'static str, max: Option<Level>) {
    {
        let mut s = state().lock().unwrap_or_else(|p| p.into_inner());
        s.prog = prog;
        s.max = max;
    }
    let _ = tracing_subscriber::registry().with(LogLayer).try_init();
}

/// Sets the least severe level written and the syslog facility (a name as
/// owamp-server.conf takes it: `daemon`, `local5`, ...).
pub fn configure(max: Option<Level>, facility: &str) {
    let mut s = state().lock().unwrap_or_else(|p| p.into_inner());
    s.max = max;
    s.facility = facility.to_owned();
}

/// Sends what follows to `dest`. Connecting to syslog can fail (no socket): the log then
/// stays where it was and the error is returned.
pub fn set_destination(dest: Destination) -> Result<(), String> {
    let sink = match dest {
        Destination::Stderr => Sink::Stderr,
        Destination::Syslog => Sink::Syslog(connect_syslog()?),
    };
    state().lock().unwrap_or_else(|p| p.into_inner()).sink = sink;
    Ok(())
}

fn connect_syslog() -> Result<SyslogLogger, String> {
    let (prog, name) = {
        let s = state().lock().unwrap_or_else(|p| p.into_inner());
        (s.prog, s.facility.clone())
    };
    let facility: syslog::Facility = format!("LOG_{}", name.to_ascii_uppercase())
        .parse()
        .map_err(|()| format!("unknown syslog facility \"{name}\""))?;
    let formatter = syslog::Formatter3164 {
        facility,
        hostname: None,
        process: prog.into(),
        pid: std::process::id(),
    };
    let path = std::env::var_os(SYSLOG_SOCKET_ENV).unwrap_or_else(|| "/dev/log".into());
    syslog::unix_custom(formatter, &path).map_err(|e| {
        format!(
            "syslog socket {}: {e}",
            std::path::Path::new(&path).display()
        )
    })
}

/// The layer that writes each event's message (and its other fields, `name=value`).
struct LogLayer;

#[derive(Default)]
struct Message(String);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.insert_str(0, value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let m = format!("{value:?}");
            self.0.insert_str(0, &m);
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for LogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        let mut s = state().lock().unwrap_or_else(|p| p.into_inner());
        // Level ordering: ERROR is the "smallest"; `max` is the least severe level kept.
        match s.max {
            Some(max) if level <= max => {}
            _ => return,
        }
        let mut m = Message::default();
        event.record(&mut m);
        let prog = s.prog;
        match &mut s.sink {
            Sink::Stderr => eprintln!("{prog}[{}]: {}", std::process::id(), m.0),
            Sink::Syslog(l) => {
                // A syslog that went away loses the line; there is nowhere else to put it.
                let _ = match level {
                    Level::ERROR => l.err(&m.0),
                    Level::WARN => l.warning(&m.0),
                    Level::INFO => l.info(&m.0),
                    _ => l.debug(&m.0),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_owamp_server_conf() {
        assert_eq!(parse_level("none").unwrap(), None);
        assert_eq!(parse_level("WARNING").unwrap(), Some(Level::WARN));
        assert_eq!(parse_level("all").unwrap(), Some(Level::TRACE));
        assert!(parse_level("loud").is_err());
    }
}
