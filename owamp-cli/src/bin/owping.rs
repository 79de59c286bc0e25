//! owping: one-way latency tests against an OWAMP server, as perfSONAR's owping.

use owamp_std::control::StopHandle;

fn main() {
    let stop = StopHandle::new();
    if let Err(e) = owamp_cli::signals::install() {
        eprintln!("owping: sigaction(): {e}");
        std::process::exit(1);
    }
    // First interrupt: stop the test early and report what was received. Second: give up.
    let s = stop.clone();
    owamp_cli::signals::watch(move |n| {
        if n >= 2 {
            // The exit skips destructors: the records on disk go first.
            owamp_cli::owping::remove_scratch();
            std::process::exit(2);
        }
        s.stop();
    });
    let stdout = std::io::stdout();
    // Standard error is locked per message, not for the whole run: the progress line is drawn
    // on it from another thread.
    let code = owamp_cli::owping::run(
        std::env::args_os(),
        &mut stdout.lock(),
        &mut std::io::stderr(),
        &owamp_cli::sys::System,
        &stop,
    );
    std::process::exit(code);
}
