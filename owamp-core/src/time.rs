//! OWAMP timestamps and error estimates (RFC 4656 4.1.2).
//!
//! [`OwampTime`] is the 64-bit NTP-style timestamp: seconds since 1900-01-01 00:00 UTC in the
//! high 32 bits and a binary fraction of a second in the low 32 bits. The same 32.32 fixed-point
//! layout also carries durations on the wire (schedule slot means, the Request-Session timeout):
//! [`Interval`] holds those, and converts them to and from [`Duration`].
//!
//! Rounding: one unit of the fraction is 2^-32 s (about 233 ps), finer than a nanosecond, so
//! every conversion between the 32.32 format and nanosecond-based std types rounds **to the
//! nearest** representable value (ties away from zero), with a single rounding step. Converting
//! a std value to 32.32 and back therefore returns the original value exactly.
//!
//! The 32-bit seconds field wraps in February 2036 (the end of NTP era 0). This crate does not
//! apply era arithmetic: a timestamp is the plain 64-bit number, ordered as such.

use core::fmt;
use core::time::Duration;

/// Seconds from 1900-01-01 (the OWAMP/NTP epoch) to 1970-01-01 (the Unix epoch).
pub const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

const NANOS_PER_SEC: u128 = 1_000_000_000;
const FRAC_ONE: u128 = 1 << 32;

/// Converts a 32.32 fixed-point second count to nanoseconds, rounded to the nearest nanosecond.
fn fixed_to_nanos(raw: u128) -> u128 {
    (raw * NANOS_PER_SEC + FRAC_ONE / 2) >> 32
}

/// Converts nanoseconds to 32.32 fixed-point units, rounded to the nearest unit.
fn nanos_to_fixed(nanos: u128) -> u128 {
    (nanos * FRAC_ONE + NANOS_PER_SEC / 2) / NANOS_PER_SEC
}

fn duration_from_nanos(nanos: u128) -> Duration {
    // Callers pass at most 2^64 * 10^9 / 2^32 ns, far below the u64 seconds limit.
    let secs = (nanos / NANOS_PER_SEC) as u64;
    let sub = (nanos % NANOS_PER_SEC) as u32;
    Duration::new(secs, sub)
}

/// A duration as a 32.32 fixed-point second count, the form RFC 4656 gives the durations it
/// puts on the wire: the Timeout of Request-Session and the mean of a schedule slot (RFC 4656
/// 3.5), and the send offsets of a schedule (Appendix B).
///
/// The high 32 bits count whole seconds, the low 32 bits a binary fraction of a second, so an
/// interval spans 0 to just under 2^32 s in steps of 2^-32 s (about 233 ps). Arithmetic is
/// checked or saturating: nothing here panics, whatever the 64 bits hold.
///
/// ```
/// use core::time::Duration;
/// use owamp_core::time::Interval;
///
/// // `owping -i 0.05`: the slot mean on the wire is 0x0ccccccd.
/// let mean = Interval::from_duration(Duration::from_millis(50)).unwrap();
/// assert_eq!(mean.raw(), 0x0ccc_cccd);
/// assert_eq!(mean.to_duration(), Duration::from_millis(50));
/// assert_eq!(mean.to_string(), "50ms");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Interval(u64);

impl Interval {
    /// No time at all.
    pub const ZERO: Interval = Interval(0);

    /// The longest interval, 2^32 s minus 2^-32 s.
    pub const MAX: Interval = Interval(u64::MAX);

    /// The interval whose wire representation is `raw`.
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The 64-bit wire representation.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// Whole seconds, exactly.
    pub const fn from_secs(secs: u32) -> Self {
        Self((secs as u64) << 32)
    }

    /// The interval nearest to `d` (ties away from zero); `None` if that is 2^32 s or more.
    ///
    /// This is the checked conversion: [`Interval::saturating_from_duration`] clamps instead.
    /// Converting a whole number of nanoseconds and back with [`Interval::to_duration`]
    /// returns it exactly.
    pub fn from_duration(d: Duration) -> Option<Self> {
        u64::try_from(nanos_to_fixed(d.as_nanos())).ok().map(Self)
    }

    /// The interval nearest to `d`, or [`Interval::MAX`] if `d` does not fit.
    pub fn saturating_from_duration(d: Duration) -> Self {
        Self::from_duration(d).unwrap_or(Self::MAX)
    }

    /// `d` truncated (not rounded) to 2^-32 s, whole seconds clamped to `u32::MAX`: how the
    /// control state machines have always turned their configured durations into deadlines,
    /// kept so that the timers they ask for do not move.
    pub(crate) fn from_duration_truncated(d: Duration) -> Self {
        let secs = d.as_secs().min(u64::from(u32::MAX));
        let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
        Self((secs << 32).saturating_add(frac))
    }

    /// The interval as a [`Duration`], rounded to the nearest nanosecond (ties away from zero).
    pub fn to_duration(self) -> Duration {
        duration_from_nanos(fixed_to_nanos(u128::from(self.0)))
    }

    /// The interval in seconds, as a float.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / FRAC_ONE as f64
    }

    /// `self + other`; `None` on overflow.
    pub const fn checked_add(self, other: Interval) -> Option<Self> {
        match self.0.checked_add(other.0) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }

    /// `self + other`, saturating at [`Interval::MAX`].
    pub const fn saturating_add(self, other: Interval) -> Self {
        Self(self.0.saturating_add(other.0))
    }

    /// `self - other`; `None` if `other` is longer.
    pub const fn checked_sub(self, other: Interval) -> Option<Self> {
        match self.0.checked_sub(other.0) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }

    /// `self - other`, saturating at [`Interval::ZERO`].
    pub const fn saturating_sub(self, other: Interval) -> Self {
        Self(self.0.saturating_sub(other.0))
    }
}

impl fmt::Debug for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Interval({:#x} = {:?})", self.0, self.to_duration())
    }
}

/// As the [`Duration`] it rounds to, e.g. `50ms` or `1.5s`.
impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_duration(), f)
    }
}

impl From<Interval> for Duration {
    fn from(i: Interval) -> Self {
        i.to_duration()
    }
}

/// A timestamp in the 64-bit NTP format used by OWAMP (RFC 4656 4.1.2): the high 32 bits count
/// seconds since 1900-01-01 00:00 UTC, the low 32 bits are a binary fraction of a second.
///
/// Arithmetic is checked or saturating; nothing here panics, whatever the 64 bits hold.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct OwampTime(u64);

impl OwampTime {
    /// The zero timestamp. In a data record a zero receive time marks a lost packet.
    pub const ZERO: OwampTime = OwampTime(0);

    /// The Unix epoch, 1970-01-01 00:00 UTC.
    pub const UNIX_EPOCH: OwampTime = OwampTime(NTP_UNIX_OFFSET_SECS << 32);

    /// The latest representable timestamp.
    pub const MAX: OwampTime = OwampTime(u64::MAX);

    /// The timestamp whose wire representation is `raw`.
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The 64-bit wire representation.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// The timestamp with the given whole seconds since 1900 and 2^-32 s fraction.
    pub const fn from_parts(seconds: u32, fraction: u32) -> Self {
        Self(((seconds as u64) << 32) | fraction as u64)
    }

    /// Whole seconds since 1900-01-01 00:00 UTC.
    pub const fn seconds(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The fraction of a second, in units of 2^-32 s.
    pub const fn fraction(self) -> u32 {
        self.0 as u32
    }

    /// The time elapsed since 1900-01-01 00:00 UTC, rounded to the nearest nanosecond.
    pub fn since_epoch(self) -> Duration {
        Interval(self.0).to_duration()
    }

    /// The timestamp `d` after 1900-01-01 00:00 UTC, rounded to the nearest 2^-32 s; `None` if
    /// that is beyond [`OwampTime::MAX`].
    pub fn from_since_epoch(d: Duration) -> Option<Self> {
        Interval::from_duration(d).map(|i| Self(i.0))
    }

    /// `self + d`, with `d` rounded to the nearest 2^-32 s; `None` on overflow.
    pub fn checked_add(self, d: Duration) -> Option<Self> {
        let units = u64::try_from(nanos_to_fixed(d.as_nanos())).ok()?;
        self.0.checked_add(units).map(Self)
    }

    /// `self - d`, with `d` rounded to the nearest 2^-32 s; `None` if that is before 1900.
    pub fn checked_sub(self, d: Duration) -> Option<Self> {
        let units = u64::try_from(nanos_to_fixed(d.as_nanos())).ok()?;
        self.0.checked_sub(units).map(Self)
    }

    /// `self + d`, saturating at [`OwampTime::MAX`].
    pub fn saturating_add(self, d: Duration) -> Self {
        self.checked_add(d).unwrap_or(Self::MAX)
    }

    /// `self - d`, saturating at [`OwampTime::ZERO`].
    pub fn saturating_sub(self, d: Duration) -> Self {
        self.checked_sub(d).unwrap_or(Self::ZERO)
    }

    /// The time from `earlier` to `self`, rounded to the nearest nanosecond; `None` if
    /// `earlier` is later than `self`.
    pub fn duration_since(self, earlier: OwampTime) -> Option<Duration> {
        self.interval_since(earlier).map(Interval::to_duration)
    }

    /// The exact time from `earlier` to `self`; `None` if `earlier` is later than `self`.
    pub const fn interval_since(self, earlier: OwampTime) -> Option<Interval> {
        match self.0.checked_sub(earlier.0) {
            Some(v) => Some(Interval(v)),
            None => None,
        }
    }

    /// `self + i`, exact; `None` past [`OwampTime::MAX`].
    pub const fn checked_add_interval(self, i: Interval) -> Option<Self> {
        match self.0.checked_add(i.0) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }

    /// `self + i`, exact, saturating at [`OwampTime::MAX`] (so that send times stay monotone
    /// even for absurd schedules).
    pub const fn saturating_add_interval(self, i: Interval) -> Self {
        Self(self.0.saturating_add(i.0))
    }

    /// `self - i`, exact; `None` before 1900.
    pub const fn checked_sub_interval(self, i: Interval) -> Option<Self> {
        match self.0.checked_sub(i.0) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }

    /// `self - i`, exact, saturating at [`OwampTime::ZERO`].
    pub const fn saturating_sub_interval(self, i: Interval) -> Self {
        Self(self.0.saturating_sub(i.0))
    }

    /// `self - other` in 2^-32 s units, exact and signed.
    pub fn diff_raw(self, other: OwampTime) -> i128 {
        i128::from(self.0) - i128::from(other.0)
    }

    /// `self - other` in nanoseconds, signed, rounded to the nearest nanosecond (ties away from
    /// zero). The magnitude is below 2^32 s, so it always fits.
    pub fn diff_nanos(self, other: OwampTime) -> i64 {
        let d = self.diff_raw(other);
        let mag = fixed_to_nanos(d.unsigned_abs());
        // |d| < 2^64 units, so mag < 2^32 * 10^9 < 2^63.
        let mag = i64::try_from(mag).unwrap_or(i64::MAX);
        if d < 0 {
            -mag
        } else {
            mag
        }
    }

    /// `self - other` in seconds, as a float (for statistics).
    pub fn diff_secs_f64(self, other: OwampTime) -> f64 {
        self.diff_raw(other) as f64 / FRAC_ONE as f64
    }

    /// Seconds since 1900 as a float.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / FRAC_ONE as f64
    }
}

impl fmt::Debug for OwampTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OwampTime({:#018x})", self.0)
    }
}

/// The 16-bit Error Estimate of RFC 4656 4.1.2: S (synchronized) bit, Z bit, 6-bit scale and
/// 8-bit multiplier. The estimated error is `multiplier * 2^-32 * 2^scale` seconds.
///
/// A multiplier of zero is not valid on the wire (RFC 4656 4.1.2: the packet should be
/// treated as corrupt); [`ErrorEstimate::is_valid`] tells. The Z bit is sent as zero and ignored
/// on receipt; it is kept so that a parsed value re-encodes unchanged.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ErrorEstimate(u16);

impl ErrorEstimate {
    const S_BIT: u16 = 0x8000;
    const Z_BIT: u16 = 0x4000;
    /// The largest scale (6 bits).
    pub const MAX_SCALE: u8 = 63;

    /// The estimate sent with timestamps from a clock not synchronized to UTC: S bit clear,
    /// scale 0, multiplier 1 (`0x0001`, 2^-32 s).
    ///
    /// Such a clock has no bound worth sending: the clear S bit already tells the receiver not
    /// to trust the timestamp (RFC 4656 4.1.2). The value is the smallest valid one (a zero
    /// multiplier marks the packet corrupt) and the one perfSONAR owamp sends on an
    /// unsynchronized host (`0x0001` in the reference traces).
    pub const UNSYNCHRONIZED: ErrorEstimate = ErrorEstimate(0x0001);

    /// The estimate whose wire representation is `raw`.
    pub const fn from_raw(raw: u16) -> Self {
        Self(raw)
    }

    /// The 16-bit wire representation.
    pub const fn raw(self) -> u16 {
        self.0
    }

    /// An estimate from its fields (Z bit clear); `None` if `scale` exceeds 63 or `multiplier` is
    /// zero.
    pub const fn new(synchronized: bool, scale: u8, multiplier: u8) -> Option<Self> {
        if scale > Self::MAX_SCALE || multiplier == 0 {
            return None;
        }
        let s = if synchronized { Self::S_BIT } else { 0 };
        Some(Self(s | ((scale as u16) << 8) | multiplier as u16))
    }

    /// The smallest estimate that is at least `error`: the error is never understated. An
    /// error of zero gives the smallest valid estimate, 2^-32 s. Among equal values the finest
    /// scale is used. `None` if `error` exceeds the largest encodable error, 255 * 2^31 s.
    pub fn from_duration(synchronized: bool, error: Duration) -> Option<Self> {
        // Error in 2^-32 s units, rounded up.
        let units = (error.as_nanos() * FRAC_ONE).div_ceil(NANOS_PER_SEC).max(1);
        for scale in 0..=Self::MAX_SCALE {
            let step = 1u128 << scale;
            let mult = units.div_ceil(step);
            if mult <= 255 {
                return Self::new(synchronized, scale, mult as u8);
            }
        }
        None
    }

    /// The estimate for a clock whose discipline (the kernel's NTP state, for instance) says
    /// whether it is `synchronized` and reports its estimated error: when synchronized, that
    /// error rounded up to the next encodable value ([`from_duration`](Self::from_duration))
    /// with the S bit set; otherwise, or if the error is beyond encoding,
    /// [`UNSYNCHRONIZED`](Self::UNSYNCHRONIZED).
    pub fn from_clock(synchronized: bool, estimated_error: Duration) -> Self {
        if !synchronized {
            return Self::UNSYNCHRONIZED;
        }
        Self::from_duration(true, estimated_error).unwrap_or(Self::UNSYNCHRONIZED)
    }

    /// The S bit: whether the clock that took the timestamp was synchronized to UTC by an
    /// external source.
    pub const fn synchronized(self) -> bool {
        self.0 & Self::S_BIT != 0
    }

    /// The Z bit (must be zero when sent, ignored when received).
    pub const fn z(self) -> bool {
        self.0 & Self::Z_BIT != 0
    }

    /// The 6-bit scale.
    pub const fn scale(self) -> u8 {
        ((self.0 >> 8) & 0x3f) as u8
    }

    /// The 8-bit multiplier.
    pub const fn multiplier(self) -> u8 {
        self.0 as u8
    }

    /// Whether the multiplier is non-zero, as RFC 4656 4.1.2 requires.
    pub const fn is_valid(self) -> bool {
        self.multiplier() != 0
    }

    /// The same estimate with the S bit set or cleared.
    pub const fn with_synchronized(self, synchronized: bool) -> Self {
        if synchronized {
            Self(self.0 | Self::S_BIT)
        } else {
            Self(self.0 & !Self::S_BIT)
        }
    }

    /// The error in 2^-32 s units (exact).
    pub fn error_raw(self) -> u128 {
        u128::from(self.multiplier()) << self.scale()
    }

    /// The error in seconds.
    pub fn error_secs_f64(self) -> f64 {
        f64::from(self.multiplier()) * 2f64.powi(i32::from(self.scale()) - 32)
    }

    /// The error as a [`Duration`], rounded **up** to whole nanoseconds so it is never
    /// understated.
    pub fn error(self) -> Duration {
        duration_from_nanos((self.error_raw() * NANOS_PER_SEC).div_ceil(FRAC_ONE))
    }
}

impl fmt::Debug for ErrorEstimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorEstimate")
            .field("s", &self.synchronized())
            .field("z", &self.z())
            .field("scale", &self.scale())
            .field("multiplier", &self.multiplier())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn unix_epoch() {
        assert_eq!(OwampTime::UNIX_EPOCH.seconds(), 2_208_988_800);
        assert_eq!(
            OwampTime::UNIX_EPOCH.since_epoch(),
            Duration::from_secs(NTP_UNIX_OFFSET_SECS)
        );
    }

    #[test]
    fn fraction_half_second() {
        let t = OwampTime::from_parts(1, 0x8000_0000);
        assert_eq!(t.since_epoch(), Duration::from_millis(1500));
        assert_eq!(t.fraction(), 0x8000_0000);
        assert_eq!(t.seconds(), 1);
    }

    #[test]
    fn reference_slot_mean_is_50ms() {
        // `-i 0.05` on the wire (see the reference traces).
        assert_eq!(
            Interval::from_raw(0x0ccc_cccc).to_duration(),
            Duration::from_millis(50)
        );
        assert_eq!(
            Interval::from_duration(Duration::from_millis(50)),
            Some(Interval::from_raw(0x0ccc_cccd))
        );
    }

    #[test]
    fn interval_conversions_and_limits() {
        assert_eq!(Interval::from_secs(2).raw(), 2 << 32);
        assert_eq!(Interval::ZERO.to_duration(), Duration::ZERO);
        let max = Duration::from_secs(1 << 32);
        assert_eq!(Interval::from_duration(max), None);
        assert_eq!(Interval::saturating_from_duration(max), Interval::MAX);
        // 100 ms is 429496729.6 units: rounded up by from_duration, truncated for deadlines.
        let d = Duration::from_millis(100);
        assert_eq!(
            Interval::from_duration(d).map(Interval::raw),
            Some(429_496_730)
        );
        assert_eq!(Interval::from_duration_truncated(d).raw(), 429_496_729);
        assert_eq!(
            Interval::from_duration_truncated(Duration::MAX).raw() >> 32,
            u64::from(u32::MAX)
        );
        assert_eq!(
            Interval::MAX.saturating_add(Interval::from_raw(1)),
            Interval::MAX
        );
        assert_eq!(Interval::MAX.checked_add(Interval::from_raw(1)), None);
        assert_eq!(Interval::ZERO.checked_sub(Interval::from_raw(1)), None);
        assert_eq!(Interval::from_secs(1).as_secs_f64(), 1.0);
        assert_eq!(Interval::from_raw(1 << 31).to_string(), "500ms");
        assert_eq!(
            format!("{:?}", Interval::from_secs(1)),
            "Interval(0x100000000 = 1s)"
        );
    }

    #[test]
    fn time_plus_interval() {
        let t = OwampTime::from_parts(10, 0);
        let half = Interval::from_raw(1 << 31);
        let u = t.saturating_add_interval(half);
        assert_eq!(u, OwampTime::from_parts(10, 1 << 31));
        assert_eq!(u.interval_since(t), Some(half));
        assert_eq!(t.interval_since(u), None);
        assert_eq!(u.checked_sub_interval(half), Some(t));
        assert_eq!(OwampTime::MAX.checked_add_interval(half), None);
        assert_eq!(OwampTime::MAX.saturating_add_interval(half), OwampTime::MAX);
        assert_eq!(
            OwampTime::ZERO.saturating_sub_interval(half),
            OwampTime::ZERO
        );
    }

    #[test]
    fn subsecond_rounding_carries() {
        // 0xffff_ffff / 2^32 s is 999_999_999.767 ns: rounds to the next whole second.
        let t = OwampTime::from_parts(5, u32::MAX);
        assert_eq!(t.since_epoch(), Duration::from_secs(6));
    }

    #[test]
    fn differences() {
        let a = OwampTime::from_parts(10, 0);
        let b = OwampTime::from_parts(12, 0x4000_0000);
        assert_eq!(b.duration_since(a), Some(Duration::from_millis(2250)));
        assert_eq!(a.duration_since(b), None);
        assert_eq!(a.diff_nanos(b), -2_250_000_000);
        assert_eq!(b.diff_nanos(a), 2_250_000_000);
        assert_eq!(a.diff_secs_f64(b), -2.25);
        assert_eq!(
            OwampTime::MAX.diff_nanos(OwampTime::ZERO),
            4_294_967_296_000_000_000
        );
        assert_eq!(
            OwampTime::ZERO.diff_nanos(OwampTime::MAX),
            -4_294_967_296_000_000_000
        );
    }

    #[test]
    fn checked_arithmetic() {
        let a = OwampTime::from_parts(10, 0);
        assert_eq!(
            a.checked_add(Duration::from_millis(500)),
            Some(OwampTime::from_parts(10, 0x8000_0000))
        );
        assert_eq!(a.checked_sub(Duration::from_secs(11)), None, "before 1900");
        assert_eq!(OwampTime::MAX.checked_add(Duration::from_nanos(1)), None);
        assert_eq!(OwampTime::MAX.saturating_add(Duration::MAX), OwampTime::MAX);
        assert_eq!(a.saturating_sub(Duration::MAX), OwampTime::ZERO);
        assert!(a < a.saturating_add(Duration::from_nanos(1)));
    }

    #[test]
    fn error_estimate_fields() {
        let e = ErrorEstimate::from_raw(0x0001);
        assert!(!e.synchronized());
        assert_eq!((e.scale(), e.multiplier()), (0, 1));
        assert!(e.is_valid());
        assert_eq!(e.error_raw(), 1);
        assert_eq!(e.error(), Duration::from_nanos(1));
        let s = ErrorEstimate::from_raw(0xC000 | (33 << 8) | 3);
        assert!(s.synchronized());
        assert!(s.z());
        assert_eq!(s.scale(), 33);
        assert_eq!(s.error_secs_f64(), 6.0);
        assert_eq!(s.error(), Duration::from_secs(6));
        assert!(!ErrorEstimate::from_raw(0x8100).is_valid());
        assert_eq!(ErrorEstimate::new(false, 64, 1), None);
        assert_eq!(ErrorEstimate::new(false, 1, 0), None);
        assert_eq!(
            ErrorEstimate::new(true, 63, 255).map(|e| e.raw()),
            Some(0xBFFF)
        );
        assert_eq!(
            ErrorEstimate::from_raw(0x0101)
                .with_synchronized(true)
                .raw(),
            0x8101
        );
    }

    #[test]
    fn error_estimate_from_duration_examples() {
        // Zero error still encodes a non-zero multiplier.
        let z = ErrorEstimate::from_duration(false, Duration::ZERO).unwrap();
        assert_eq!(z.raw(), 0x0001);
        // One second is exactly 1 * 2^32 units, or 128 * 2^25.
        let one = ErrorEstimate::from_duration(true, Duration::from_secs(1)).unwrap();
        assert_eq!((one.scale(), one.multiplier()), (25, 128));
        assert!(one.synchronized());
        // One nanosecond is 4.29 units: rounded up to 5.
        let ns = ErrorEstimate::from_duration(false, Duration::from_nanos(1)).unwrap();
        assert_eq!((ns.scale(), ns.multiplier()), (0, 5));
        // Largest value and just beyond.
        let max = Duration::from_secs(255 << 31);
        assert_eq!(
            ErrorEstimate::from_duration(false, max).map(|e| e.raw()),
            Some(0x3FFF)
        );
        assert_eq!(
            ErrorEstimate::from_duration(false, max + Duration::from_nanos(1)),
            None
        );
    }

    #[test]
    fn unsynchronized_clock_is_reference_value() {
        assert_eq!(ErrorEstimate::UNSYNCHRONIZED.raw(), 0x0001);
        assert!(ErrorEstimate::UNSYNCHRONIZED.is_valid());
        let e = ErrorEstimate::from_clock(false, Duration::from_millis(3));
        assert_eq!(e, ErrorEstimate::UNSYNCHRONIZED);
        // An error too large to encode says nothing either.
        let huge = ErrorEstimate::from_clock(true, Duration::from_secs(255 << 32));
        assert_eq!(huge, ErrorEstimate::UNSYNCHRONIZED);
    }

    #[test]
    fn synchronized_clock_rounds_up() {
        let e = ErrorEstimate::from_clock(true, Duration::from_micros(1500));
        assert!(e.synchronized());
        assert!(e.error() >= Duration::from_micros(1500));
        // Within one multiplier step (1/255 relative) of the true value.
        assert!(e.error() < Duration::from_micros(1510));
    }

    proptest! {
        #[test]
        fn raw_time_to_duration_and_back(raw in any::<u64>()) {
            // A nanosecond is coarser than 2^-32 s: the round trip lands within half a unit
            // of a nanosecond, i.e. within 3 units.
            let t = OwampTime::from_raw(raw);
            let back = OwampTime::from_since_epoch(t.since_epoch());
            if let Some(back) = back {
                prop_assert!(back.diff_raw(t).abs() <= 3);
            } else {
                prop_assert!(raw > u64::MAX - 3);
            }
        }

        #[test]
        fn duration_round_trip_is_exact(secs in 0u64..(1 << 32) - 1, nanos in 0u32..1_000_000_000) {
            let d = Duration::new(secs, nanos);
            let t = OwampTime::from_since_epoch(d).unwrap();
            prop_assert_eq!(t.since_epoch(), d);
            prop_assert_eq!(Interval::from_duration(d).unwrap().to_duration(), d);
        }

        #[test]
        fn add_then_sub(raw in 0u64..u64::MAX / 2, ms in 0u64..1_000_000_000) {
            let t = OwampTime::from_raw(raw);
            let d = Duration::from_millis(ms);
            let u = t.checked_add(d).unwrap();
            prop_assert!(u >= t);
            prop_assert_eq!(u.checked_sub(d), Some(t));
            let back = u.duration_since(t).unwrap();
            prop_assert_eq!(back, d);
            prop_assert_eq!(u.diff_nanos(t), (ms * 1_000_000) as i64);
        }

        #[test]
        fn diff_is_antisymmetric(a in any::<u64>(), b in any::<u64>()) {
            let (a, b) = (OwampTime::from_raw(a), OwampTime::from_raw(b));
            prop_assert_eq!(a.diff_nanos(b), -b.diff_nanos(a));
            prop_assert_eq!(a.diff_raw(b) > 0, a > b);
        }

        #[test]
        fn estimate_never_understates_and_is_tight(nanos in any::<u64>(), sync in any::<bool>()) {
            let d = Duration::from_nanos(nanos);
            let e = ErrorEstimate::from_duration(sync, d).unwrap();
            prop_assert!(e.is_valid());
            prop_assert_eq!(e.synchronized(), sync);
            prop_assert!(!e.z());
            prop_assert!(e.error() >= d);
            // Tight: one step less at this scale would understate the error, and a finer scale
            // could not hold the multiplier.
            let units = (u128::from(nanos) << 32).div_ceil(NANOS_PER_SEC).max(1);
            prop_assert!(e.error_raw() >= units);
            prop_assert!(e.error_raw() - units < (1u128 << e.scale()));
            if e.scale() > 0 {
                prop_assert!(units.div_ceil(1u128 << (e.scale() - 1)) > 255);
            }
        }

        #[test]
        fn estimate_fields_round_trip(raw in any::<u16>()) {
            let e = ErrorEstimate::from_raw(raw);
            if let Some(n) = ErrorEstimate::new(e.synchronized(), e.scale(), e.multiplier()) {
                prop_assert_eq!(n.raw(), raw & !0x4000);
            } else {
                prop_assert!(!e.is_valid());
            }
        }
    }
}
