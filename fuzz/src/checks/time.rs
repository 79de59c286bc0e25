//! Checks for `owamp_core::time`: timestamps and error estimates as they arrive on the wire
//! (RFC 4656 4.1.2), and their conversions.

use std::time::Duration;

use owamp_core::time::{ErrorEstimate, Interval, OwampTime};

use super::Input;

/// One 2^-32 s unit is about 0.23 ns: rounding to whole nanoseconds and back moves a value by at
/// most this many units.
const NS_ROUNDING_UNITS: u64 = 3;

/// Input: two raw timestamps (8 octets each), a raw error estimate (2), and a duration (8
/// octets of seconds, 4 of nanoseconds taken modulo 10^9), then S bit, scale and multiplier
/// octets.
///
/// - every conversion is total (no panic, whatever the 64 bits hold);
/// - a `Duration` below 2^32 s converts to 32.32 and back exactly;
/// - 32.32 to `Duration` and back moves by at most 3 units;
/// - add/sub/difference agree with each other and with the raw values;
/// - error estimates: fields and raw value agree, `new` validates, `from_duration` never
///   understates the error.
pub fn time_conversions(data: &[u8]) {
    let mut input = Input::new(data);
    let a = OwampTime::from_raw(input.u64());
    let b = OwampTime::from_raw(input.u64());
    let ee = ErrorEstimate::from_raw(input.u16());
    let d = Duration::new(input.u64(), input.u32() % 1_000_000_000);
    let sync = input.u8() & 1 != 0;
    let scale = input.u8();
    let mult = input.u8();

    timestamps(a, b, d);
    durations(a.raw(), d);
    estimates(ee, d, sync, scale, mult);
}

fn timestamps(a: OwampTime, b: OwampTime, d: Duration) {
    assert_eq!(OwampTime::from_parts(a.seconds(), a.fraction()), a);
    assert_eq!(format!("{a:?}").len(), "OwampTime(0x)".len() + 16);

    // Differences.
    let raw = a.diff_raw(b);
    assert_eq!(raw, i128::from(a.raw()) - i128::from(b.raw()));
    assert_eq!(b.diff_raw(a), -raw);
    let ns = a.diff_nanos(b);
    assert_eq!(b.diff_nanos(a), -ns, "diff_nanos is not antisymmetric");
    assert_eq!(ns >= 0, raw >= 0 || ns == 0);
    let _ = a.diff_secs_f64(b);
    let _ = a.as_secs_f64();
    match a.duration_since(b) {
        Some(since) => {
            assert!(a >= b);
            assert_eq!(i128::from(ns), since.as_nanos() as i128);
        }
        None => assert!(a < b),
    }

    // Arithmetic with a duration.
    match a.checked_add(d) {
        Some(sum) => {
            assert!(sum >= a);
            assert_eq!(a.saturating_add(d), sum);
            assert_eq!(sum.checked_sub(d), Some(a), "add then sub");
        }
        None => assert_eq!(a.saturating_add(d), OwampTime::MAX),
    }
    match a.checked_sub(d) {
        Some(diff) => {
            assert!(diff <= a);
            assert_eq!(a.saturating_sub(d), diff);
            assert_eq!(diff.checked_add(d), Some(a), "sub then add");
        }
        None => assert_eq!(a.saturating_sub(d), OwampTime::ZERO),
    }

    // Duration since 1900: out and back within rounding. (Conversions to and from the
    // system's SystemTime live in owamp-os, with property tests of their own.)
    let since = a.since_epoch();
    if let Some(back) = OwampTime::from_since_epoch(since) {
        assert!(back.raw().abs_diff(a.raw()) <= NS_ROUNDING_UNITS);
    }
}

fn durations(raw: u64, d: Duration) {
    let dur = Interval::from_raw(raw).to_duration();
    let back = Interval::from_duration(dur).map(Interval::raw);
    match back {
        Some(v) => assert!(
            v.abs_diff(raw) <= NS_ROUNDING_UNITS,
            "{raw:#x} -> {dur:?} -> {v:#x}"
        ),
        // Only values that round up to 2^32 s do not fit.
        None => assert!(raw > u64::MAX - NS_ROUNDING_UNITS),
    }
    match Interval::from_duration(d) {
        Some(v) => assert_eq!(v.to_duration(), d, "Duration -> 32.32 -> Duration"),
        None => assert!(d.as_secs() >= (1 << 32) - 1),
    }
    if d.as_secs() < (1 << 32) - 1 {
        assert!(Interval::from_duration(d).is_some());
        assert!(OwampTime::from_since_epoch(d).is_some());
    }
}

fn estimates(ee: ErrorEstimate, d: Duration, sync: bool, scale: u8, mult: u8) {
    let raw = ee.raw();
    assert_eq!(ee.synchronized(), raw & 0x8000 != 0);
    assert_eq!(ee.z(), raw & 0x4000 != 0);
    assert_eq!(u16::from(ee.scale()), (raw >> 8) & 0x3f);
    assert_eq!(u16::from(ee.multiplier()), raw & 0xff);
    assert_eq!(ee.is_valid(), ee.multiplier() != 0);
    assert_eq!(ee.with_synchronized(sync).synchronized(), sync);
    assert_eq!(ee.with_synchronized(ee.synchronized()), ee);
    let err = ee.error();
    // Rounded up to whole nanoseconds: never below the exact value.
    assert!(err.as_nanos() * (1u128 << 32) >= ee.error_raw() * 1_000_000_000);
    let _ = ee.error_secs_f64();
    let _ = format!("{ee:?}");

    match ErrorEstimate::new(sync, scale, mult) {
        Some(e) => {
            assert!(scale <= ErrorEstimate::MAX_SCALE && mult != 0);
            assert_eq!(
                (e.synchronized(), e.scale(), e.multiplier(), e.z()),
                (sync, scale, mult, false)
            );
        }
        None => assert!(scale > ErrorEstimate::MAX_SCALE || mult == 0),
    }

    if let Some(e) = ErrorEstimate::from_duration(sync, d) {
        assert!(e.is_valid());
        assert_eq!(e.synchronized(), sync);
        assert!(e.error() >= d, "{d:?} understated as {e:?}");
        // The smallest such estimate: one step less of the multiplier would understate it.
        if e.multiplier() > 1 {
            let less = u128::from(e.multiplier() - 1) << e.scale();
            assert!(
                less * 1_000_000_000 < d.as_nanos() * (1u128 << 32),
                "{e:?} for {d:?}"
            );
        }
    }
}
