//! owampd: the OWAMP server, as perfSONAR's owampd (in the foreground, logging to stderr).

use owamp_std::control::StopHandle;

fn main() {
    let stop = StopHandle::new();
    if let Err(e) = owamp_cli::signals::install() {
        eprintln!("owampd: sigaction(): {e}");
        std::process::exit(1);
    }
    // First signal: graceful shutdown (tests stopped, records stored). Second: exit at once.
    let s = stop.clone();
    owamp_cli::signals::watch(move |n| {
        if n >= 2 {
            std::process::exit(1);
        }
        s.stop();
    });
    let code = owamp_cli::owampd::run(std::env::args_os(), &stop, &mut |_| {});
    std::process::exit(code);
}
