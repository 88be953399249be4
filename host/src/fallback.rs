//! Server functions the shim does itself when the running nbdkit is too old to have them
//! (`nbdkit_parse_probability(3)`, nbdkit ≥ 1.36; `nbdkit_parse_delay(3)`, nbdkit ≥ 1.40), with
//! nbdkit's syntax, numbers and error messages.
//!
//! They are nbdkit's own algorithm (server/public.c), down to the C library calls: numbers are
//! read by glibc's `sscanf` with nbdkit's formats, because `%lg` is not Rust's `f64::from_str`
//! (hexadecimal floats, `1e` refused where strtod would take the `1`), `%[:/]` takes a run of
//! separators, and nanoseconds are rounded as the newest nbdkit rounds them (`lrint`, nbdkit
//! 1.48; 1.42 used `round`, which differs only on an exact half nanosecond). The differential
//! test `tests/tests/parsers.rs` holds them to nbdkit's answers on 10,000 inputs.

use std::ffi::{c_char, c_int, CString};

extern "C" {
    /// glibc's ISO C `sscanf`, the one a C compiler gives nbdkit for `sscanf` (`__isoc23_sscanf`
    /// on newer glibc is the same for the conversions used here).
    #[link_name = "__isoc99_sscanf"]
    fn c_sscanf(s: *const c_char, format: *const c_char, ...) -> c_int;
    /// C's `lrint`: round to nearest, ties to even (the default rounding mode).
    fn lrint(x: f64) -> std::ffi::c_long;
}

/// `sscanf (s, "%lg%n", &d, &n) == 1`: the number and the bytes it took.
fn scan_number(s: &CString) -> Option<(f64, usize)> {
    let (mut d, mut n): (f64, c_int) = (0.0, 0);
    // SAFETY: `s` and the format are NUL-terminated; `%lg` stores one double and `%n` one int,
    // to the two pointers given, and nothing else is written.
    let matched = unsafe { c_sscanf(s.as_ptr(), c"%lg%n".as_ptr(), &mut d, &mut n) };
    (matched == 1).then_some((d, n as usize))
}

/// `sscanf (s, "%lg%[:/]%lg%n", &d, &c, &d2, &n) == 3`: numerator, denominator and the bytes
/// taken. nbdkit passes a single `char` for the `%[:/]` run (which the terminating NUL alone
/// overflows); here the run has room for the whole string.
fn scan_ratio(s: &CString) -> Option<(f64, f64, usize)> {
    let (mut d, mut d2, mut n): (f64, f64, c_int) = (0.0, 0.0, 0);
    let mut separators = vec![0 as c_char; s.as_bytes().len() + 1];
    // SAFETY: as in `scan_number`; `%[:/]` stores at most the string's length plus a NUL, which
    // `separators` holds.
    let matched = unsafe {
        c_sscanf(
            s.as_ptr(),
            c"%lg%[:/]%lg%n".as_ptr(),
            &mut d,
            separators.as_mut_ptr(),
            &mut d2,
            &mut n,
        )
    };
    (matched == 3).then_some((d, d2, n as usize))
}

/// The rest of `s` after `n` bytes (`&str[n]` in C); `n` always falls on a character boundary
/// here because sscanf stops after ASCII.
fn after(s: &str, n: usize) -> &str {
    s.get(n..).unwrap_or("")
}

/// `nbdkit_parse_probability`: `0.1`, `1e-1`, `10%`, `1:10`, `1/10` (may exceed 1; `0/0` is 0).
pub fn parse_probability(what: &str, s: &str) -> Result<f64, String> {
    let bad = || format!("{what}: could not parse '{s}' as a probability");
    let c = CString::new(s).map_err(|_| bad())?;
    let d = match scan_ratio(&c) {
        Some((d, d2, n)) if after(s, n).is_empty() => {
            if d == 0.0 && d2 == 0.0 {
                d
            } else if d2 == 0.0 {
                return Err(bad());
            } else {
                d / d2
            }
        }
        _ => match scan_number(&c) {
            Some((d, n)) if after(s, n) == "%" => d / 100.0,
            Some((d, n)) if after(s, n).is_empty() => d,
            _ => return Err(bad()),
        },
    };
    if !d.is_finite() || d.is_sign_negative() {
        return Err(bad());
    }
    Ok(d)
}

/// `nbdkit_parse_delay`: `1`, `1.5s`, `120ms`, `10us`/`10μs`, `1ns`, as (seconds, nanoseconds).
/// The nanoseconds may be 1,000,000,000 after rounding, as nbdkit's may. Like nbdkit's C, which
/// converts with x86-64's `cvttsd2si` and keeps the low 32 bits, 2³² seconds or more wrap
/// (nbdkit's behaviour there is undefined in C; this is what its binaries do).
pub fn parse_delay(what: &str, s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("{what}: could not parse delay or sleep: \"{s}\"");
    let c = CString::new(s).map_err(|_| bad())?;
    let (mut d, n) = scan_number(&c).ok_or_else(bad)?;
    d /= match after(s, n) {
        "" | "s" => 1.0,
        "ms" => 1e3,
        "us" | "μs" => 1e6,
        "ns" => 1e9,
        _ => return Err(bad()),
    };
    if !d.is_finite() || d.is_sign_negative() {
        return Err(bad());
    }
    let sec = truncate_like_c(d) as u32;
    // SAFETY: lrint is a pure function of its argument.
    let nsec = unsafe { lrint((d - f64::from(sec)) * 1e9) } as u32;
    Ok((sec, nsec))
}

/// `(int64_t) d` as x86-64 computes it (`cvttsd2si`): out of range gives `i64::MIN`.
fn truncate_like_c(d: f64) -> i64 {
    // -2⁶³ and 2⁶³, both exact in an f64.
    let min = i64::MIN as f64;
    if (min..-min).contains(&d) {
        d as i64
    } else {
        i64::MIN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_in_every_documented_form() {
        for (s, want) in [
            ("0.1", 0.1),
            ("1e-1", 0.1),
            ("10%", 0.1),
            ("1:10", 0.1),
            ("1/10", 0.1),
            ("0/0", 0.0),
            ("2", 2.0),
        ] {
            let got = parse_probability("p", s).unwrap();
            assert!((got - want).abs() < 1e-12, "{s}: {got}");
        }
        for s in ["", "x", "1/0", "-0.5", "10%%", "1:", "nan", "inf", "1 /2x"] {
            assert!(parse_probability("p", s).is_err(), "{s} should fail");
        }
        assert_eq!(
            parse_probability("error-rate", "x").unwrap_err(),
            "error-rate: could not parse 'x' as a probability"
        );
    }

    #[test]
    fn delays_in_every_documented_unit() {
        assert_eq!(parse_delay("d", "1").unwrap(), (1, 0));
        assert_eq!(parse_delay("d", "1.5s").unwrap(), (1, 500_000_000));
        // The fraction is rounded to the nearest nanosecond, as nbdkit 1.48 rounds it.
        for (s, want) in [
            ("120ms", 120_000_000),
            ("10us", 10_000),
            ("10μs", 10_000),
            ("7ns", 7),
        ] {
            let (sec, nsec) = parse_delay("d", s).unwrap();
            assert!(sec == 0 && nsec.abs_diff(want) <= 1, "{s}: {sec}s {nsec}ns");
        }
        for s in ["", "1m", "-1", "s", "inf"] {
            assert!(parse_delay("d", s).is_err(), "{s} should fail");
        }
    }

    /// Random strings from the syntax's alphabet never panic, and every accepted value is
    /// finite and not negative; numbers written in each form read back as their value.
    #[test]
    fn random_input_is_parsed_or_refused_never_panics() {
        let alphabet: Vec<char> = "0123456789.e-+%:/smunμ x".chars().collect();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..50_000 {
            let len = (next() % 8) as usize;
            let s: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            if let Ok(p) = parse_probability("p", &s) {
                assert!(p.is_finite() && p >= 0.0, "{s:?} -> {p}");
            }
            if let Ok((sec, nsec)) = parse_delay("d", &s) {
                assert!(nsec <= 1_000_000_000, "{s:?} -> {sec}s {nsec}ns");
            }
            let (a, b) = (next() % 1000, next() % 999 + 1);
            let ratio = parse_probability("p", &format!("{a}/{b}")).unwrap();
            assert!((ratio - a as f64 / b as f64).abs() < 1e-12);
            assert!(
                (parse_probability("p", &format!("{a}%")).unwrap() - a as f64 / 100.0).abs()
                    < 1e-12
            );
            let (sec, nsec) = parse_delay("d", &format!("{a}ms")).unwrap();
            let got = u64::from(sec) * 1_000_000_000 + u64::from(nsec);
            assert!(got.abs_diff(a * 1_000_000) <= 1, "{a}ms -> {got}ns");
        }
    }
}
