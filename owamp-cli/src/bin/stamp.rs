//! stamp: a STAMP (RFC 8762) and TWAMP Light reflector and sender. `stamp reflect` runs in the
//! foreground until SIGINT or SIGTERM (exit 0); `stamp send` runs one test.

fn main() {
    if let Err(e) = owamp_cli::signals::install() {
        eprintln!("stamp: sigaction(): {e}");
        std::process::exit(1);
    }
    let stdout = std::io::stdout();
    let code = owamp_cli::stamp::run(
        std::env::args_os(),
        &mut stdout.lock(),
        &mut std::io::stderr(),
        &owamp_cli::sys::System,
        &|| owamp_cli::signals::count() > 0,
    );
    std::process::exit(code);
}
