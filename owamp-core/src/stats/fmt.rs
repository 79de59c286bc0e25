//! C printf number conversions (%g, %e, %f) with glibc's output, for owstats-identical text.
//!
//! Rust's float formatting rounds the exact binary value half-to-even, as glibc does, so only
//! the layout rules of C differ and are reproduced here.

fn non_finite(v: f64) -> Option<String> {
    if v.is_nan() {
        Some(if v.is_sign_negative() { "-nan" } else { "nan" }.to_string())
    } else if v.is_infinite() {
        Some(if v < 0.0 { "-inf" } else { "inf" }.to_string())
    } else {
        None
    }
}

/// Splits Rust's `{:e}` output into mantissa and exponent.
fn split_exp(s: &str) -> (&str, i32) {
    match s.split_once('e') {
        Some((m, e)) => (m, e.parse().unwrap_or(0)),
        None => (s, 0),
    }
}

fn c_exponent(e: i32) -> String {
    let sign = if e < 0 { '-' } else { '+' };
    format!("{sign}{:02}", e.unsigned_abs())
}

/// `%.{prec}e`.
pub fn e(v: f64, prec: usize) -> String {
    if let Some(s) = non_finite(v) {
        return s;
    }
    let s = format!("{v:.prec$e}");
    let (m, x) = split_exp(&s);
    format!("{m}e{}", c_exponent(x))
}

/// `%.{prec}f`.
pub fn f(v: f64, prec: usize) -> String {
    if let Some(s) = non_finite(v) {
        return s;
    }
    format!("{v:.prec$}")
}

fn strip_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// `%.{prec}g`: `%e` or `%f` by the exponent, trailing zeros removed.
pub fn g(v: f64, prec: usize) -> String {
    if let Some(s) = non_finite(v) {
        return s;
    }
    let p = prec.max(1);
    let s = format!("{v:.*e}", p - 1);
    let (m, x) = split_exp(&s);
    if x >= -4 && x < p as i32 {
        let decimals = (p as i32 - 1 - x) as usize;
        strip_zeros(&format!("{v:.decimals$}")).to_string()
    } else {
        format!("{}e{}", strip_zeros(m), c_exponent(x))
    }
}

/// `%g` (precision 6).
pub fn g6(v: f64) -> String {
    g(v, 6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g_matches_glibc() {
        let cases: &[(f64, usize, &str)] = &[
            (0.0262, 3, "0.0262"),
            (2.6226e-05, 6, "2.6226e-05"),
            (2.0 / 4_294_967_296.0, 6, "4.65661e-10"),
            (0.0001, 6, "0.0001"),
            (0.000_377_655, 6, "0.000377655"),
            (0.0, 3, "0"),
            (100.0, 3, "100"),
            (1234.0, 3, "1.23e+03"),
            (0.3, 3, "0.3"),
            (0.000_030_000_1, 3, "3e-05"),
            (123_456.0, 6, "123456"),
            (1_234_567.0, 6, "1.23457e+06"),
            (-0.5, 3, "-0.5"),
            (9.9996, 4, "10"),
            (1e100, 6, "1e+100"),
        ];
        for &(v, p, want) in cases {
            assert_eq!(g(v, p), want, "{v} %.{p}g");
        }
    }

    #[test]
    fn e_and_f() {
        assert_eq!(e(0.000_378, 6), "3.780000e-04");
        assert_eq!(e(-12.5, 2), "-1.25e+01");
        assert_eq!(f(0.5, 3), "0.500");
        assert_eq!(f(f64::NAN, 3), "nan");
    }
}
