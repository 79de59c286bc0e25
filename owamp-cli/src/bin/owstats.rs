//! owstats: statistics of .owp session files, as perfSONAR's owstats prints them.

fn main() {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let code = owamp_cli::owstats::run(
        std::env::args_os(),
        &mut stdout.lock(),
        &mut stderr.lock(),
        &owamp_cli::sys::System,
    );
    std::process::exit(code);
}
