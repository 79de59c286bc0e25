//! twping: two-way latency tests against a TWAMP server, as perfSONAR's twping.

fn main() {
    let stdout = std::io::stdout();
    let code = owamp_cli::twping::run(
        std::env::args_os(),
        &mut stdout.lock(),
        &mut std::io::stderr(),
        &owamp_cli::sys::System,
    );
    std::process::exit(code);
}
