//! Prints what the kernel says about the system clock and the Error Estimate sent with it.

fn main() {
    match owamp_os::clock::kernel_clock_status() {
        Ok(s) => {
            let e = s.error_estimate();
            println!(
                "synchronized: {}  esterror: {:?}  maxerror: {:?}  error estimate: {:#06x} ({:?})",
                s.synchronized,
                s.esterror,
                s.maxerror,
                e.raw(),
                e.error()
            );
        }
        Err(e) => println!("adjtimex failed: {e}"),
    }
}
