//! powstream: continuous one-way latency tests, as perfSONAR's powstream.

use owamp_std::control::StopHandle;

fn main() {
    let stop = StopHandle::new();
    if let Err(e) = owamp_cli::signals::install() {
        eprintln!("powstream: sigaction(): {e}");
        std::process::exit(1);
    }
    // First signal: stop the sessions under way and save what they received. Second: give up.
    let s = stop.clone();
    owamp_cli::signals::watch(move |n| {
        if n >= 2 {
            std::process::exit(2);
        }
        s.stop();
    });
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let code = owamp_cli::powstream::run(
        std::env::args_os(),
        &mut stdout.lock(),
        &mut stderr.lock(),
        &owamp_cli::sys::System,
        &stop,
    );
    std::process::exit(code);
}
