//! Sending test packets on time at little CPU cost: sleep until shortly before a packet is
//! due, then spin to the exact time (RFC 4656 4.1: the sender follows the session's schedule
//! and stamps each packet as it leaves).
//!
//! How early to stop sleeping depends on the machine: a sleep wakes late by the timer slack,
//! the interrupt and the scheduler's latency, a few µs on bare metal and tens of µs in a
//! virtual machine. A fixed spin window either wastes CPU (too long) or sends late (too
//! short). [`SpinWindow`] learns it from the wake-ups actually observed: it keeps the lateness
//! of the recent timed sleeps and sets the window to a high percentile of them plus a margin,
//! bounded. Spinning then costs only the spread of the lateness, not its size: a sleep that
//! wakes 30 µs late into a 35 µs window spins for 5 µs.
//!
//! The rest is what the adapters need from the kernel for that: [`tighten_timer_slack`] (sleeps
//! of the calling thread end when asked rather than up to 50 µs later) and, for an adapter
//! whose runtime has a coarse timer, [`TimerFd`], a timer with nanosecond resolution whose
//! expiry makes a descriptor readable.

use std::io;
use std::time::Duration;

/// Recent wake-ups kept by a [`SpinWindow`].
const SAMPLES: usize = 64;

/// Wake-ups observed before a [`SpinWindow`] trusts its samples.
const WARM_UP: usize = 8;

/// The window until then (within the bounds). Not the longest: a window as long as the
/// interval between packets leaves no sleep to learn from.
const INITIAL: Duration = Duration::from_micros(200);

/// Added to the percentile: a sixteenth of it, and this much more.
const MARGIN: Duration = Duration::from_micros(1);

/// How long before a precise deadline to stop sleeping and spin, learnt from how late recent
/// sleeps woke up.
///
/// Feed it with [`record`](Self::record) the lateness of every timed sleep that ended by its
/// timer (not by input). Over the last 64 such wake-ups, [`window`](Self::window) is then
/// the 90th percentile of their lateness, but at most the median plus three times the
/// distance from the median to the upper quartile, plus a sixteenth and 1 µs, bounded by `min`
/// and `max`. (The 95th percentile with a wider margin cost about a fifth more CPU at 1,000
/// packets/s in a virtual machine whose sleeps wake 20 to 60 µs late, for packets that leave
/// a few µs late one time in ten rather than one in twenty.) The second bound keeps preemptions out: on a loaded machine one wake-up in ten
/// may be milliseconds late, and spinning that long before every packet would cost a core
/// while helping only those few (and would load the machine further). A machine whose
/// wake-ups are late more often than one in four widens the window within a few wake-ups; it
/// narrows again once they have left the last 64. Until eight wake-ups have been seen the
/// window is 200 µs (within the bounds).
#[derive(Debug, Clone)]
pub struct SpinWindow {
    /// Lateness in nanoseconds (saturating), a ring of the last `len` wake-ups.
    samples: [u32; SAMPLES],
    next: usize,
    len: usize,
    min: Duration,
    max: Duration,
    window: Duration,
}

impl Default for SpinWindow {
    fn default() -> Self {
        Self::new(Self::DEFAULT_MIN, Self::DEFAULT_MAX)
    }
}

impl SpinWindow {
    /// The shortest window by default: below this, reading the clock costs about as much as a
    /// spin.
    pub const DEFAULT_MIN: Duration = Duration::from_micros(5);
    /// The longest window by default: past a millisecond of lateness the machine is overloaded
    /// and spinning longer would only take more of it.
    pub const DEFAULT_MAX: Duration = Duration::from_millis(1);

    /// A window between `min` and `max` (a `min` above `max` is taken as `max`); `max` zero
    /// never spins.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            samples: [0; SAMPLES],
            next: 0,
            len: 0,
            min: min.min(max),
            max,
            window: INITIAL.clamp(min.min(max), max),
        }
    }

    /// How long before a precise deadline to wake up and start spinning.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// A timed sleep ended by its timer `late` after the time it was asked to end (zero if it
    /// ended early).
    pub fn record(&mut self, late: Duration) {
        // A window that never spins has nothing to learn (and each sample costs a sort).
        if self.max.is_zero() {
            return;
        }
        let ns = u32::try_from(late.as_nanos()).unwrap_or(u32::MAX);
        self.samples[self.next] = ns;
        self.next = (self.next + 1) % SAMPLES;
        self.len = (self.len + 1).min(SAMPLES);
        self.window = self.compute();
    }

    /// How many wake-ups the window is computed from (at most 64).
    pub fn samples(&self) -> usize {
        self.len
    }

    fn compute(&self) -> Duration {
        if self.len < WARM_UP {
            return INITIAL.clamp(self.min, self.max);
        }
        let mut s = self.samples;
        let s = &mut s[..self.len];
        s.sort_unstable();
        let n = self.len;
        // Ranks from the top: the 90th percentile is the 7th largest of 64.
        let at = |from_top: usize| u64::from(s[n - from_top]);
        let p90 = at(n / 10 + 1);
        let median = at(n - n / 2);
        let upper_quartile = at(n / 4 + 1);
        let robust = median + 3 * (upper_quartile - median);
        let q = Duration::from_nanos(p90.min(robust));
        (q + q / 16 + MARGIN).clamp(self.min, self.max)
    }
}

/// Mean intervals shorter than this are worth a spin before each packet
/// ([`max_spin_for`]).
pub const SPIN_BELOW_INTERVAL: Duration = Duration::from_micros(500);

/// The longest spin ([`crate::host::EndpointConfig::max_spin`]) for a sender whose packets
/// are `mean` apart on average. A timed wait wakes some tens of µs late on a typical virtual
/// machine (1 ns timer slack); against a millisecond between packets that is a small part of
/// the interval, and spinning it away would cost most of a sender's CPU (at 1,000 packets/s,
/// about 30 µs of spin a packet against about 25 µs for everything else). Below
/// [`SPIN_BELOW_INTERVAL`] the same lateness is a large part of the interval, and the sender
/// is awake most of the time anyway: it spins the [learnt window](SpinWindow). Every packet is
/// stamped as it leaves either way, so no delay depends on this.
pub fn max_spin_for(mean: Duration) -> Duration {
    if mean < SPIN_BELOW_INTERVAL {
        SpinWindow::DEFAULT_MAX
    } else {
        Duration::ZERO
    }
}

/// The longest spin a sender at a high rate is given at least, whatever its wake-ups learnt
/// ([`min_spin_for`]).
pub const HIGH_RATE_MIN_SPIN: Duration = Duration::from_micros(100);

/// The shortest spin ([`crate::host::EndpointConfig::min_spin`]) for a sender whose packets
/// are `mean` apart on average. Below [`SPIN_BELOW_INTERVAL`] a learnt window alone (about
/// the 90th percentile of recent wake-ups' lateness) leaves one packet in ten to a late
/// wake-up, which at 10,000 packets/s makes the 99th percentile of send lateness tens of µs:
/// such a sender spins at least the mean interval, up to [`HIGH_RATE_MIN_SPIN`] (so at
/// 10,000 packets/s it barely sleeps, as a bare paced UDP sender does). Above, the default.
pub fn min_spin_for(mean: Duration) -> Duration {
    if mean < SPIN_BELOW_INTERVAL {
        mean.clamp(SpinWindow::DEFAULT_MIN, HIGH_RATE_MIN_SPIN)
    } else {
        SpinWindow::DEFAULT_MIN
    }
}

/// Sets the calling thread's timer slack to 1 ns (`PR_SET_TIMERSLACK`), so that its timed
/// waits (`poll`, `nanosleep`, ...) end when asked rather than up to the default 50 µs later.
/// For threads that send test packets; it costs some power, not CPU time. A no-op returning
/// `Ok` on other systems than Linux.
pub fn tighten_timer_slack() -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_TIMERSLACK takes one unsigned long argument (nanoseconds; 0 would
        // restore the default) and changes only the calling thread's timer slack; the other
        // arguments are unused.
        let r = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A one-shot timer on `CLOCK_MONOTONIC` with nanosecond resolution whose expiry makes its
/// descriptor readable (`timerfd_create(2)`), for a runtime whose own timer is coarser: register
/// the descriptor with the runtime's reactor, [`arm`](Self::arm) it, wait until it is readable
/// and [`expired`](Self::expired) says so. The kernel applies no timer slack to it.
#[derive(Debug)]
pub struct TimerFd {
    fd: std::os::fd::OwnedFd,
}

impl TimerFd {
    /// A disarmed, non-blocking timer.
    pub fn new() -> io::Result<Self> {
        use std::os::fd::FromRawFd;
        // SAFETY: no pointers are passed; the flags are valid for timerfd_create.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by timerfd_create and is owned by nothing else.
        Ok(Self {
            fd: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Arms the timer to expire `after` from now (at least 1 ns: zero would disarm it),
    /// replacing any earlier setting and forgetting an expiry not yet read.
    pub fn arm(&self, after: Duration) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is a live, writable timespec.
        if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // Absolute: the time spent between reading the clock and arming is not added.
        let after = after.max(Duration::from_nanos(1));
        let at = Duration::new(
            u64::try_from(now.tv_sec).unwrap_or(0),
            u32::try_from(now.tv_nsec).unwrap_or(0),
        )
        .saturating_add(after);
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: libc::time_t::try_from(at.as_secs()).unwrap_or(libc::time_t::MAX),
                tv_nsec: at.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: the descriptor is an open timerfd owned by `self`; `spec` is a live
        // itimerspec and the old-value pointer may be null.
        let r = unsafe {
            libc::timerfd_settime(
                self.fd.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Whether the timer has expired since it was last armed (reading the expiry, so the
    /// descriptor is no longer readable); `false` if not yet.
    pub fn expired(&self) -> io::Result<bool> {
        use std::os::fd::AsRawFd;
        let mut ticks = [0u8; 8];
        // SAFETY: reads at most 8 octets into the live, writable `ticks`.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), ticks.as_mut_ptr().cast(), 8) };
        if n == 8 {
            return Ok(true);
        }
        if n >= 0 {
            return Ok(false);
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(false),
            _ => Err(e),
        }
    }
}

impl std::os::fd::AsRawFd for TimerFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.fd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn spin_bounds_follow_the_rate() {
        // 1,000 packets/s: no spin at all.
        assert_eq!(max_spin_for(us(1000)), Duration::ZERO);
        assert_eq!(min_spin_for(us(1000)), SpinWindow::DEFAULT_MIN);
        // 10,000 packets/s: at least the mean interval; 100,000: the same.
        assert_eq!(max_spin_for(us(100)), SpinWindow::DEFAULT_MAX);
        assert_eq!(min_spin_for(us(100)), us(100));
        assert_eq!(min_spin_for(us(10)), us(10));
        // Just under the threshold: capped.
        assert_eq!(min_spin_for(us(499)), HIGH_RATE_MIN_SPIN);
        // The window keeps the floor whatever it learns.
        let mut w = SpinWindow::new(min_spin_for(us(100)), max_spin_for(us(100)));
        fed(&mut w, [1; 64]);
        assert_eq!(w.window(), us(100));
    }

    fn fed(w: &mut SpinWindow, late_us: impl IntoIterator<Item = u64>) {
        for l in late_us {
            w.record(us(l));
        }
    }

    #[test]
    fn starts_at_the_initial_window_until_warmed_up() {
        let mut w = SpinWindow::new(us(5), us(1000));
        assert_eq!(w.window(), INITIAL);
        assert_eq!(SpinWindow::new(us(5), us(100)).window(), us(100));
        assert_eq!(SpinWindow::new(us(300), us(1000)).window(), us(300));
        fed(&mut w, [30; WARM_UP - 1]);
        assert_eq!(w.window(), INITIAL);
        w.record(us(30));
        assert_eq!(w.samples(), WARM_UP);
        // 30 + 30/16 + 1 µs.
        assert_eq!(w.window(), Duration::from_nanos(32_875));
    }

    #[test]
    fn follows_a_high_percentile_not_the_rare_outlier() {
        let mut w = SpinWindow::default();
        // A steady 20-40 µs, and one wake in 32 preempted for 3 ms.
        for i in 0..640u64 {
            w.record(if i % 32 == 31 {
                us(3000)
            } else {
                us(20 + i % 21)
            });
        }
        let win = w.window();
        assert!(win >= us(40) && win < us(50), "{win:?}");
    }

    #[test]
    fn keeps_frequent_preemptions_out() {
        let mut w = SpinWindow::default();
        // 20-40 µs, but one wake in eight preempted for 2 ms: the 90th percentile is 2 ms,
        // the median and quartile bound about 30 + 3 * 8 µs.
        for i in 0..640u64 {
            w.record(if i % 8 == 7 {
                us(2000)
            } else {
                us(20 + i % 21)
            });
        }
        let win = w.window();
        assert!(win >= us(40) && win < us(80), "{win:?}");
    }

    #[test]
    fn widens_when_wake_ups_get_later_and_narrows_again() {
        let mut w = SpinWindow::default();
        fed(&mut w, [10; 64]);
        let calm = w.window();
        assert!(calm < us(20), "{calm:?}");
        // Every other wake is 400 µs late: the machine got busy.
        for i in 0..64u64 {
            w.record(if i % 2 == 0 { us(400) } else { us(10) });
        }
        let busy = w.window();
        assert!(busy >= us(400), "{busy:?}");
        // 64 calm wake-ups later, the busy ones are forgotten.
        fed(&mut w, [10; 64]);
        assert_eq!(w.window(), calm);
    }

    #[test]
    fn stays_within_its_bounds() {
        let mut w = SpinWindow::new(us(5), us(1000));
        fed(&mut w, [0; 64]);
        assert_eq!(w.window(), us(5));
        fed(&mut w, [10_000_000; 64]);
        assert_eq!(w.window(), us(1000));
        // Lateness beyond u32 nanoseconds saturates.
        w.record(Duration::from_secs(3600));
        assert_eq!(w.window(), us(1000));
        let mut inverted = SpinWindow::new(us(50), us(10));
        assert_eq!(inverted.window(), us(10));
        fed(&mut inverted, [0; 64]);
        assert_eq!(inverted.window(), us(10));
        let mut never = SpinWindow::new(us(5), Duration::ZERO);
        fed(&mut never, [100; 64]);
        assert_eq!(never.window(), Duration::ZERO);
    }

    #[test]
    fn timer_fd_arms_and_reports_expiry() {
        let t = TimerFd::new().unwrap();
        // Not armed: nothing to read.
        assert!(!t.expired().unwrap());
        t.arm(Duration::from_nanos(1)).unwrap();
        // Bounded: a 1 ns timer has expired well within a second.
        let fd = std::os::fd::AsRawFd::as_raw_fd(&t);
        assert!(crate::net::wait_readable(fd, Duration::from_secs(1)).unwrap());
        assert!(t.expired().unwrap());
        assert!(!t.expired().unwrap());
        // Re-arming far ahead forgets nothing but leaves nothing to read.
        t.arm(Duration::from_secs(3600)).unwrap();
        assert!(!t.expired().unwrap());
    }

    #[test]
    fn timer_slack_can_be_tightened() {
        tighten_timer_slack().unwrap();
    }
}
