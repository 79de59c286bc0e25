//! owfetch: fetch stored OWAMP sessions by SID, as perfSONAR's owfetch.

fn main() {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let code = owamp_cli::owfetch::run(
        std::env::args_os(),
        &mut stdout.lock(),
        &mut stderr.lock(),
        &owamp_cli::sys::System,
    );
    std::process::exit(code);
}
