//! twampd: the TWAMP server, as perfSONAR's twampd. Without -Z it detaches from the terminal
//! (fork, setsid, the parent exiting once it listens) and logs to syslog; with
//! -Z it stays in the foreground and logs to standard error.

use owamp_std::control::StopHandle;

fn main() {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Before any thread starts: only the forking thread lives on in the child.
    let detached = if owamp_cli::twampd::wants_daemon(&argv) {
        match owamp_cli::daemon::detach() {
            Ok(d) => Some(d),
            Err(e) => {
                eprintln!("twampd: Unable to daemonize: {e}");
                std::process::exit(1);
            }
        }
    } else {
        None
    };
    let stop = StopHandle::new();
    if let Err(e) = owamp_cli::signals::install() {
        eprintln!("twampd: sigaction(): {e}");
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
    let code = owamp_cli::twampd::run_as(argv, &stop, &mut |_| {}, detached);
    std::process::exit(code);
}
