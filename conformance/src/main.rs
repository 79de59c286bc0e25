//! `conformance`: import captures into traces and run conformance vectors.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Conformance tools for OWAMP (RFC 4656) implementations.
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
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
