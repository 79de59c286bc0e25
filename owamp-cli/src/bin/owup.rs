//! owup: since when an OWAMP server has been up, as perfSONAR's owup.

fn main() {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let code = owamp_cli::owup::run(
        std::env::args_os(),
        &mut stdout.lock(),
        &mut stderr.lock(),
        &owamp_cli::sys::System,
    );
    std::process::exit(code);
}
