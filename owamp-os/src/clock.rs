//! The system clock as [`OwampTime`], and its error estimate from the kernel.
//!
//! OWAMP timestamps are wall-clock times (RFC 4656 4.1.2: NTP format, UTC); each carries an
//! Error Estimate whose S bit says whether the clock is synchronized to UTC. [`SystemClock`]
//! reads `CLOCK_REALTIME` and asks the kernel's NTP discipline (`adjtimex`) for the estimate.
//! The [`Clock`] trait lets tests substitute a clock; [`SystemTimeExt`] converts between the
//! system's time and OWAMP timestamps.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use owamp_core::time::{ErrorEstimate, OwampTime, NTP_UNIX_OFFSET_SECS};

/// Conversions between the system's [`SystemTime`] (from 1970) and [`OwampTime`] (RFC 4656
/// 4.1.2: NTP format, from 1900).
pub trait SystemTimeExt: Sized {
    /// This time as an OWAMP timestamp, rounded to the nearest 2^-32 s. `None` if it is before
    /// 1900 or does not fit in the 32-bit seconds field (from 2036-02-07 06:28:16 UTC on).
    fn to_owamp_time(&self) -> Option<OwampTime>;

    /// The system time of an OWAMP timestamp, rounded to the nearest nanosecond.
    ///
    /// Never panics. On a platform whose `SystemTime` cannot represent the instant (years
    /// 1900-2106 are representable on all mainstream platforms) the result saturates to the
    /// Unix epoch.
    fn from_owamp_time(t: OwampTime) -> Self;
}

impl SystemTimeExt for SystemTime {
    fn to_owamp_time(&self) -> Option<OwampTime> {
        let offset = Duration::from_secs(NTP_UNIX_OFFSET_SECS);
        match self.duration_since(UNIX_EPOCH) {
            Ok(after) => OwampTime::from_since_epoch(after.checked_add(offset)?),
            Err(e) => OwampTime::from_since_epoch(offset.checked_sub(e.duration())?),
        }
    }

    fn from_owamp_time(t: OwampTime) -> Self {
        let since_1900 = t.since_epoch();
        let offset = Duration::from_secs(NTP_UNIX_OFFSET_SECS);
        let st = match since_1900.checked_sub(offset) {
            Some(after) => UNIX_EPOCH.checked_add(after),
            None => offset
                .checked_sub(since_1900)
                .and_then(|before| UNIX_EPOCH.checked_sub(before)),
        };
        st.unwrap_or(UNIX_EPOCH)
    }
}

/// A source of OWAMP timestamps.
///
/// Implementations must be cheap to call: senders read the clock right before each packet.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> OwampTime;

    /// The error estimate to send with (or record for) a timestamp taken now.
    fn error_estimate(&self) -> ErrorEstimate;

    /// Converts a kernel receive timestamp (`SO_TIMESTAMPNS`, taken from `CLOCK_REALTIME`)
    /// into this clock's time scale, or `None` to ignore kernel timestamps and use
    /// [`now`](Self::now) instead. The default converts it as is, which is right for any clock
    /// that reads `CLOCK_REALTIME`.
    fn kernel_timestamp(&self, t: SystemTime) -> Option<OwampTime> {
        t.to_owamp_time()
    }
}

/// A clock shared by the threads of a connection and its test endpoints.
pub type SharedClock = Arc<dyn Clock>;

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> OwampTime {
        (**self).now()
    }
    fn error_estimate(&self) -> ErrorEstimate {
        (**self).error_estimate()
    }
    fn kernel_timestamp(&self, t: SystemTime) -> Option<OwampTime> {
        (**self).kernel_timestamp(t)
    }
}

/// What the kernel's NTP discipline says about the system clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelClockStatus {
    /// The clock is synchronized: `STA_UNSYNC` is clear and the state is not `TIME_ERROR`.
    pub synchronized: bool,
    /// Estimated error (`esterror`).
    pub esterror: Duration,
    /// Maximum error (`maxerror`).
    pub maxerror: Duration,
}

impl KernelClockStatus {
    /// The Error Estimate for this status (RFC 4656 4.1.2), as [`ErrorEstimate::from_clock`]
    /// gives it from the synchronization flag and the estimated error.
    pub fn error_estimate(&self) -> ErrorEstimate {
        ErrorEstimate::from_clock(self.synchronized, self.esterror)
    }
}

/// Asks the kernel for the clock's synchronization status (`adjtimex` with no modes set, which
/// only reads).
#[cfg(target_os = "linux")]
pub fn kernel_clock_status() -> std::io::Result<KernelClockStatus> {
    // SAFETY: `timex` is a plain C struct for which all-zero bytes are a valid value.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    tx.modes = 0;
    // SAFETY: `tx` is a valid, writable `timex`; with `modes == 0` the call only reads the
    // kernel's state into it and needs no privilege.
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state == -1 {
        return Err(std::io::Error::last_os_error());
    }
    let synchronized = state != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0;
    let micros = |v: libc::c_long| Duration::from_micros(u64::try_from(v).unwrap_or(0));
    Ok(KernelClockStatus {
        synchronized,
        esterror: micros(tx.esterror),
        maxerror: micros(tx.maxerror),
    })
}

/// Asks the kernel for the clock's synchronization status (not available here: always
/// unsynchronized).
#[cfg(not(target_os = "linux"))]
pub fn kernel_clock_status() -> std::io::Result<KernelClockStatus> {
    Ok(KernelClockStatus {
        synchronized: false,
        esterror: Duration::ZERO,
        maxerror: Duration::ZERO,
    })
}

/// The error estimate of the system clock now ([`ErrorEstimate::UNSYNCHRONIZED`] if the kernel
/// cannot tell).
pub fn kernel_error_estimate() -> ErrorEstimate {
    kernel_clock_status().map_or(ErrorEstimate::UNSYNCHRONIZED, |s| s.error_estimate())
}

/// The system clock (`CLOCK_REALTIME`), with the kernel's error estimate re-read at most once
/// per [`refresh`](SystemClock::with_refresh) interval (one second by default), so asking for
/// it per packet costs no system call.
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
    refresh: Duration,
    /// Nanoseconds since `origin` of the last refresh, plus one (0 = never).
    refreshed_at: AtomicU64,
    /// The cached estimate (raw).
    estimate: AtomicU64,
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl SystemClock {
    /// The system clock, re-reading the error estimate every second.
    pub fn new() -> Self {
        Self::with_refresh(Duration::from_secs(1))
    }

    /// The system clock, re-reading the error estimate every `refresh`.
    pub fn with_refresh(refresh: Duration) -> Self {
        Self {
            origin: Instant::now(),
            refresh,
            refreshed_at: AtomicU64::new(0),
            estimate: AtomicU64::new(u64::from(ErrorEstimate::UNSYNCHRONIZED.raw())),
        }
    }

    /// A shared system clock.
    pub fn shared() -> SharedClock {
        Arc::new(Self::new())
    }
}

impl Clock for SystemClock {
    fn now(&self) -> OwampTime {
        // Before 1900 or after 2036's era wrap cannot happen on a sane host; fall back to the
        // epoch rather than panic.
        SystemTime::now()
            .to_owamp_time()
            .unwrap_or(OwampTime::UNIX_EPOCH)
    }

    fn error_estimate(&self) -> ErrorEstimate {
        let elapsed = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let last = self.refreshed_at.load(Ordering::Relaxed);
        let refresh = u64::try_from(self.refresh.as_nanos()).unwrap_or(u64::MAX);
        if last == 0 || elapsed.saturating_add(1).saturating_sub(last) >= refresh {
            let e = kernel_error_estimate();
            self.estimate.store(u64::from(e.raw()), Ordering::Relaxed);
            self.refreshed_at
                .store(elapsed.saturating_add(1), Ordering::Relaxed);
            return e;
        }
        ErrorEstimate::from_raw(self.estimate.load(Ordering::Relaxed) as u16)
    }
}

/// A clock that reads the system clock shifted by a fixed offset, with a fixed error
/// estimate. Kernel timestamps are shifted too. Useful in tests to simulate a peer whose clock
/// is off.
#[derive(Debug, Clone, Copy)]
pub struct OffsetClock {
    /// Added to the system time (may be negative), in nanoseconds.
    pub offset_nanos: i64,
    /// The estimate reported.
    pub estimate: ErrorEstimate,
}

impl OffsetClock {
    fn shift(&self, t: OwampTime) -> OwampTime {
        let d = Duration::from_nanos(self.offset_nanos.unsigned_abs());
        if self.offset_nanos >= 0 {
            t.saturating_add(d)
        } else {
            t.saturating_sub(d)
        }
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> OwampTime {
        self.shift(SystemClock::new().now())
    }
    fn error_estimate(&self) -> ErrorEstimate {
        self.estimate
    }
    fn kernel_timestamp(&self, t: SystemTime) -> Option<OwampTime> {
        t.to_owamp_time().map(|t| self.shift(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn unix_epoch_round_trips() {
        assert_eq!(UNIX_EPOCH.to_owamp_time(), Some(OwampTime::UNIX_EPOCH));
        assert_eq!(
            SystemTime::from_owamp_time(OwampTime::UNIX_EPOCH),
            UNIX_EPOCH
        );
    }

    #[test]
    fn system_time_limits() {
        let before_1900 = UNIX_EPOCH - Duration::from_secs(NTP_UNIX_OFFSET_SECS + 1);
        assert_eq!(before_1900.to_owamp_time(), None);
        let era_end = UNIX_EPOCH + Duration::from_secs((1 << 32) - NTP_UNIX_OFFSET_SECS);
        assert_eq!(era_end.to_owamp_time(), None);
        let last = era_end - Duration::from_nanos(1);
        // 1 ns is 4.29 units: the last nanosecond of the era rounds to MAX - 3.
        assert_eq!(
            last.to_owamp_time(),
            Some(OwampTime::from_raw(u64::MAX - 3))
        );
        let t1900 = UNIX_EPOCH - Duration::from_secs(NTP_UNIX_OFFSET_SECS);
        assert_eq!(t1900.to_owamp_time(), Some(OwampTime::ZERO));
        assert_eq!(SystemTime::from_owamp_time(OwampTime::ZERO), t1900);
    }

    proptest! {
        #[test]
        fn system_time_never_panics_and_round_trips(raw in any::<u64>()) {
            let t = OwampTime::from_raw(raw);
            let st = SystemTime::from_owamp_time(t);
            if let Some(back) = st.to_owamp_time() {
                prop_assert!(back.diff_raw(t).abs() <= 3);
            }
        }

        #[test]
        fn system_time_round_trip_is_exact(secs in 0u64..(1 << 32) - 1, nanos in 0u32..1_000_000_000) {
            let st = UNIX_EPOCH - Duration::from_secs(NTP_UNIX_OFFSET_SECS) + Duration::new(secs, nanos);
            let t = st.to_owamp_time().unwrap();
            prop_assert_eq!(SystemTime::from_owamp_time(t), st);
        }
    }

    #[test]
    fn status_maps_estimated_error_through_the_core() {
        // The rounding and the unsynchronized value are the core's (ErrorEstimate::from_clock);
        // here only which kernel fields feed it.
        for synchronized in [false, true] {
            let s = KernelClockStatus {
                synchronized,
                esterror: Duration::from_micros(1500),
                maxerror: Duration::from_secs(16),
            };
            assert_eq!(
                s.error_estimate(),
                ErrorEstimate::from_clock(synchronized, Duration::from_micros(1500))
            );
        }
    }

    #[test]
    fn system_clock_is_close_to_system_time() {
        let c = SystemClock::new();
        let a = SystemTime::now().to_owamp_time().unwrap();
        let b = c.now();
        assert!(b.diff_nanos(a).abs() < 1_000_000_000);
        // The kernel answers on Linux; either way the estimate is valid.
        assert!(c.error_estimate().is_valid());
        assert!(kernel_clock_status().is_ok());
    }

    #[test]
    fn offset_clock_shifts() {
        let c = OffsetClock {
            offset_nanos: -5_000_000_000,
            estimate: ErrorEstimate::UNSYNCHRONIZED,
        };
        let sys = SystemClock::new().now();
        let d = sys.diff_nanos(c.now());
        assert!((4_000_000_000..6_000_000_000).contains(&d), "{d}");
    }
}
