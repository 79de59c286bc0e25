//! The fixed-point arithmetic of perfSONAR owamp that the statistics depend on, bit for bit.

use crate::time::ErrorEstimate;

/// 2^32 as a float: one second in 32.32 fixed point.
const TWO_POW_32: f64 = 4_294_967_296.0;

/// Seconds between the NTP epoch (1900) and the Unix epoch (1970).
pub const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// A 32.32 fixed-point value as seconds (OWPNum64ToDouble: round to double, then scale).
pub fn num64_to_f64(x: u64) -> f64 {
    x as f64 / TWO_POW_32
}

/// The error estimate in seconds: multiplier * 2^scale * 2^-32 (RFC 4656 4.1.2).
pub fn error_seconds(e: ErrorEstimate) -> f64 {
    let raw = e.raw();
    let multiplier = u64::from(raw & 0xff);
    let scale = u32::from((raw >> 8) & 0x3f);
    num64_to_f64(multiplier << scale)
}

/// The S bit of an error estimate: the clock was synchronised (RFC 4656 4.1.2).
pub fn is_sync(e: ErrorEstimate) -> bool {
    e.raw() & 0x8000 != 0
}

/// Seconds and nanoseconds since the Unix epoch of an NTP timestamp, as the reference converts
/// it for display (wrapping before 1970, seconds kept to 32 bits).
pub fn to_unix_timespec(t: u64) -> (u32, u32) {
    let rel = t.wrapping_sub(NTP_UNIX_OFFSET << 32);
    let sec = (rel >> 32) as u32;
    let nsec = (((rel & 0xffff_ffff) * 1_000_000_000) >> 32) as u32;
    (sec, nsec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_estimate_of_an_unsynchronised_host() {
        let e = ErrorEstimate::from_raw(0x0001);
        assert_eq!(error_seconds(e), 1.0 / TWO_POW_32);
        assert!(!is_sync(e));
        assert!(is_sync(ErrorEstimate::from_raw(0x8001)));
        // Scale shifts the multiplier: 0x0302 is 2 * 2^3 units.
        assert_eq!(
            error_seconds(ErrorEstimate::from_raw(0x0302)),
            16.0 / TWO_POW_32
        );
    }
}
