//! `conformance`: import captures into traces and run conformance vectors.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Conformance tools for OWAMP (RFC 4656) and TWAMP (RFC 5357) implementations.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Turn a pcap or pcapng capture into a trace (written to standard output).
    Import {
        /// The capture file.
        capture: PathBuf,
        /// Which control connection to take, if the capture holds several (0-based).
        #[arg(long, default_value_t = 0)]
        connection: usize,
    },
    /// Run the built-in vectors, or one vector per trace and capture in the given directories:
    /// each is checked, decrypted with the passphrase of its headers (A/E modes) and replayed
    /// through our server and client cores. Prints `PASS name (note)` / `FAIL name: why` per
    /// vector, a count of replays, and `N passed, M failed`; exits 1 if any failed.
    Run {
        /// Directories to search (recursively) for *.trace, *.pcap and *.pcapng files.
        dirs: Vec<PathBuf>,
        /// Print a JSON report instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Play the client side against a running OWAMP server and check it step by step (RFC
    /// 4656): the greeting, each mode it offers end to end, refused set-ups and requests,
    /// Stop-Sessions with skip ranges, Fetch-Session, malformed input. One line per check,
    /// then `N passed, M failed`; exits 1 if any failed. Each exchange is written as a trace.
    Probe {
        /// The server: HOST[:PORT] (port 861 by default, 862 with --twamp).
        target: String,
        /// Probe a TWAMP server (RFC 5357): greeting, a session in each mode with every packet
        /// reflected and checked, Stop-Sessions, and OWAMP commands TWAMP does not have.
        #[arg(long)]
        twamp: bool,
        /// The identity for authenticated and encrypted modes.
        #[arg(short = 'u', requires = "pfs")]
        identity: Option<String>,
        /// The pfs file that holds the identity's passphrase.
        #[arg(short = 'k', requires = "identity")]
        pfs: Option<PathBuf>,
        /// Where the traces go.
        #[arg(long, default_value = "probe-traces")]
        traces: PathBuf,
        /// The longest wait for any one answer of the server, in seconds.
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
        /// Print a JSON report instead of text.
        #[arg(long)]
        json: bool,
    },
    /// A strict OWAMP server for testing clients: serves every connection, records it as a
    /// trace and reports each deviation of the client (one line per check as each connection
    /// ends; with --count, `N passed, M failed` at the end and exit status 1 on any failure).
    Serve {
        /// The port to listen on (0: any, printed on standard error; default 861, 862 with
        /// --twamp).
        #[arg(long)]
        port: Option<u16>,
        /// Serve TWAMP (RFC 5357) with our TWAMP server and session-reflector, checking each
        /// client's messages and test packets.
        #[arg(long)]
        twamp: bool,
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        addr: std::net::IpAddr,
        /// The modes offered: any of O (open), A (authenticated), E (encrypted).
        #[arg(long, default_value = "OAE")]
        modes: String,
        /// A pfs file with the identities for authenticated and encrypted modes.
        #[arg(long)]
        pfs: Option<PathBuf>,
        /// Where the traces go.
        #[arg(long, default_value = "serve-traces")]
        traces: PathBuf,
        /// Stop after this many connections.
        #[arg(long)]
        count: Option<usize>,
        /// Print a JSON report instead of text (at the end; needs --count).
        #[arg(long, requires = "count")]
        json: bool,
    },
}

fn exit_for(report: &conformance::live::report::LiveReport, json: bool) -> ExitCode {
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    if report.all_passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[allow(clippy::too_many_arguments)]
fn probe(
    target: &str,
    twamp: bool,
    identity: Option<String>,
    pfs: Option<PathBuf>,
    traces: PathBuf,
    timeout: f64,
    json: bool,
) -> ExitCode {
    use conformance::live::probe::{owamp_checks, resolve_with_port, ProbeConfig};
    let port = if twamp {
        conformance::live::twamp::TWAMP_PORT
    } else {
        conformance::live::probe::OWAMP_PORT
    };
    let server = match resolve_with_port(target, port) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut cfg = ProbeConfig::new(server);
    cfg.traces = Some(traces);
    if !(timeout.is_finite() && timeout > 0.0 && timeout < 3600.0) {
        eprintln!("--timeout: want seconds between 0 and 3600");
        return ExitCode::from(2);
    }
    cfg.timeout = std::time::Duration::from_secs_f64(timeout);
    if let (Some(id), Some(pfs)) = (identity, pfs) {
        match conformance::live::read_pfs(&pfs, &id) {
            Ok(passphrase) => {
                cfg.identity = Some(owamp_core::control::Identity {
                    key_id: id.into_bytes(),
                    passphrase: passphrase.into(),
                })
            }
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        }
    }
    if twamp {
        exit_for(&conformance::live::twamp::twamp_checks(&cfg), json)
    } else {
        exit_for(&owamp_checks(&cfg), json)
    }
}

#[allow(clippy::too_many_arguments)]
fn serve(
    addr: std::net::IpAddr,
    port: Option<u16>,
    twamp: bool,
    modes: &str,
    pfs: Option<PathBuf>,
    traces: PathBuf,
    count: Option<usize>,
    json: bool,
) -> ExitCode {
    use conformance::live::serve::{serve, ServeConfig};
    use owamp_core::wire::{Mode, Modes};
    let mut m = Modes::EMPTY;
    for c in modes.chars() {
        m = match c.to_ascii_uppercase() {
            'O' => m.with(Mode::Open),
            'A' => m.with(Mode::Authenticated),
            'E' => m.with(Mode::Encrypted),
            _ => {
                eprintln!("--modes: want letters of O, A, E, not {c:?}");
                return ExitCode::from(2);
            }
        };
    }
    let mut cfg = ServeConfig {
        modes: m,
        traces: Some(traces),
        ..ServeConfig::default()
    };
    if let Some(p) = pfs {
        match std::fs::read_to_string(&p) {
            Ok(t) => cfg.identities = conformance::live::pfs_entries(&t),
            Err(e) => {
                eprintln!("{}: {e}", p.display());
                return ExitCode::from(2);
            }
        }
    }
    let port = port.unwrap_or(if twamp {
        conformance::live::twamp::TWAMP_PORT
    } else {
        conformance::live::probe::OWAMP_PORT
    });
    let listener = match std::net::TcpListener::bind((addr, port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {addr}:{port}: {e}");
            return ExitCode::from(2);
        }
    };
    if let Ok(a) = listener.local_addr() {
        eprintln!("conformance serve: listening on {a}");
    }
    let each = |checks: &[conformance::live::report::CheckOutcome]| {
        if !json {
            let mut r = conformance::live::report::LiveReport::default();
            for c in checks {
                r.push(c.clone());
            }
            let text = r.to_text();
            // The per-connection lines; the totals come at the end.
            for line in text
                .lines()
                .filter(|l| l.starts_with("PASS") || l.starts_with("FAIL"))
            {
                println!("{line}");
            }
        }
    };
    let report = if twamp {
        conformance::live::twamp::serve_twamp(&cfg, &listener, count, each)
    } else {
        serve(&cfg, &listener, count, each)
    };
    if json {
        println!("{}", report.to_json());
    } else {
        println!("{} passed, {} failed", report.passed, report.failed);
    }
    if report.all_passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Probe {
            target,
            twamp,
            identity,
            pfs,
            traces,
            timeout,
            json,
        } => probe(&target, twamp, identity, pfs, traces, timeout, json),
        Command::Serve {
            port,
            twamp,
            addr,
            modes,
            pfs,
            traces,
            count,
            json,
        } => serve(addr, port, twamp, &modes, pfs, traces, count, json),
        Command::Run { dirs, json } => {
            let vectors = if dirs.is_empty() {
                conformance::vectors::builtin()
            } else {
                conformance::runner::vectors_from_dirs(&dirs)
            };
            let report = conformance::runner::run(&vectors);
            if json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_text());
            }
            if report.all_passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Command::Import {
            capture,
            connection,
        } => {
            let data = match std::fs::read(&capture) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("{}: {e}", capture.display());
                    return ExitCode::from(2);
                }
            };
            let name = capture
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let opts = conformance::import::ImportOptions { connection, name };
            match conformance::import::import(&data, &opts) {
                Ok(t) => {
                    print!("{}", t.to_text());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{}: {e}", capture.display());
                    ExitCode::from(2)
                }
            }
        }
    }
}
