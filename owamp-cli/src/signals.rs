//! SIGINT, SIGTERM and SIGHUP, counted, as owping and owampd use them: the first asks for a
//! graceful stop, later ones for a quicker exit. The handler only increments an atomic
//! counter (async-signal-safe); the tools poll [`count`] from their own threads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

static SIGNALS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_signal(_signo: libc::c_int) {
    SIGNALS.fetch_add(1, Ordering::SeqCst);
}

/// Installs the handler for SIGINT, SIGTERM and SIGHUP.
pub fn install() -> std::io::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: an all-zero sigaction is a valid starting point; the handler is an
        // `extern "C" fn(c_int)` that only touches an atomic, which is async-signal-safe, and
        // the mask is initialised with sigemptyset before use.
        let rc = unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut act.sa_mask);
            act.sa_flags = libc::SA_RESTART;
            libc::sigaction(sig, &act, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Signals received since start.
pub fn count() -> usize {
    SIGNALS.load(Ordering::SeqCst)
}

/// Runs `on_change(count)` on a background thread each time the signal count grows (checked
/// every 50 ms). The thread lives as long as the process.
pub fn watch(on_change: impl Fn(usize) + Send + 'static) {
    let _ = std::thread::Builder::new()
        .name("signal-watch".into())
        .spawn(move || {
            let mut seen = 0;
            loop {
                let n = count();
                if n != seen {
                    seen = n;
                    on_change(n);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
}
