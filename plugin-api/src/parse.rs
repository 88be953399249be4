//! nbdkit's four parsers done here, with nbdkit's syntax, limits and error messages: what
//! [`server::parse_size`](crate::server::parse_size) and friends answer when the plugin is not
//! running inside nbdkit (a plugin's unit tests of its `config`), and what the shim answers on
//! an nbdkit too old to have `nbdkit_parse_probability` (1.36) or `nbdkit_parse_delay` (1.40).
//! One copy, used by both: the shim calls this module too.
//!
//! They follow the newest nbdkit (1.48.1, as Debian builds it; `server/public.c` and
//! `common/include/human-size.h`):
//! * `parse_size`: a number as C's `strtoimax` reads it in base 0 (leading blanks, a sign;
//!   `0x` hexadecimal, `0` octal, and `0b` binary as C23's C library reads it, else decimal),
//!   then one optional scale letter (`b`, `k`, `m`, `g`, `t`, `p`, `e` for powers of 1024, `s`
//!   for 512-byte sectors, either case), which an `_` may precede (`0x1_E` is 1 EiB, `0x1E` is
//!   30), at most 2⁶³−1. Older nbdkits read decimal only, without `_` (nbdkit 1.48 added hex,
//!   octal and `_`), and word some refusals differently: 1.32–1.34 `could not parse size string
//!   (x)`, and before 1.43.11 a bad suffix after a valid letter names both (`unknown suffix:
//!   Mx`, now `x`) and a bad suffix wins over an overflow.
//! * `parse_bool`: `1`, `true`, `t`, `yes`, `y`, `on` and `0`, `false`, `f`, `no`, `n`, `off`,
//!   the words in any ASCII case, nothing else (no blanks).
//! * `parse_probability` and `parse_delay`: numbers are read by the C library's `sscanf` with
//!   nbdkit's formats, because `%lg` is not Rust's `f64::from_str` (hexadecimal floats, `1e`
//!   refused where strtod would take the `1`), `%[:/]` takes a run of separators, and
//!   nanoseconds are rounded as the newest nbdkit rounds them (`lrint`, nbdkit 1.48; 1.42 used
//!   `round`, which differs only on an exact half nanosecond).
//!
//! The suite holds them to the running nbdkit's answers on generated inputs
//! (`tests/tests/plugins/parsers.rs`, `tests/tests/authors/author_parsers.rs`). A string with a NUL byte, which
//! no C string can carry, is refused as the shim refuses it inside nbdkit.

use std::ffi::{c_char, c_int, CString};

extern "C" {
    /// glibc's ISO C `sscanf`, the one a C compiler gives nbdkit for `sscanf` (`__isoc23_sscanf`
    /// on newer glibc is the same for the conversions used here).
    #[link_name = "__isoc99_sscanf"]
    fn c_sscanf(s: *const c_char, format: *const c_char, ...) -> c_int;
    /// C's `lrint`: round to nearest, ties to even (the default rounding mode).
    fn lrint(x: f64) -> std::ffi::c_long;
}

/// The refusal of a string with a NUL byte, as the shim words it for nbdkit's functions.
fn nul_byte(function: &str) -> String {
    format!("{function}: argument contains a NUL byte")
}

/// `nbdkit_parse_size`: `512`, `64K`, `1M`, `2G`, `100s` (sectors), `0x1_E`, … as a number of
/// bytes, or nbdkit's error message.
pub fn parse_size(s: &str) -> Result<u64, String> {
    if s.contains('\0') {
        return Err(nul_byte("nbdkit_parse_size"));
    }
    let (size, rest) = match strtoimax(s) {
        Strtoimax::NoDigits => return Err(format!("could not parse size string: {s}")),
        Strtoimax::Negative => return Err(format!("size cannot be negative: {s}")),
        Strtoimax::OutOfRange => return Err(format!("size exceeds maximum value: {s}")),
        Strtoimax::Value(size, rest) => (size, rest),
    };
    let scale_of = |c: Option<&u8>| match c.map(u8::to_ascii_lowercase) {
        Some(b'b') => Some(1),
        Some(b'k') => Some(1 << 10),
        Some(b'm') => Some(1 << 20),
        Some(b'g') => Some(1 << 30),
        Some(b't') => Some(1 << 40),
        Some(b'p') => Some(1 << 50),
        Some(b'e') => Some(1 << 60),
        Some(b's') => Some(512),
        _ => None,
    };
    // An `_` may stand between the number and a scale letter.
    let rest = match rest.strip_prefix('_') {
        Some(after) if scale_of(after.as_bytes().first()).is_some() => after,
        _ => rest,
    };
    let (scale, rest) = match scale_of(rest.as_bytes().first()) {
        Some(scale) => (scale, &rest[1..]),
        None => (1, rest),
    };
    if i64::MAX / scale < size {
        return Err(format!("could not parse size: size * scale overflows: {s}"));
    }
    if !rest.is_empty() {
        return Err(format!("could not parse size: unknown suffix: {rest}"));
    }
    Ok((size * scale) as u64)
}

/// What `strtoimax (s, &end, 0)` found.
enum Strtoimax<'a> {
    /// No digits: `end == s`.
    NoDigits,
    /// A negative value (`-0` is not).
    Negative,
    /// Above `INTMAX_MAX` (`ERANGE`).
    OutOfRange,
    /// The value and the rest of the string after it.
    Value(i64, &'a str),
}

/// C's `strtoimax` in base 0, the C locale and C23 (glibc's `__isoc23_strtoimax`): blanks
/// (`isspace`), an optional sign, then `0x`/`0X` and hexadecimal digits, `0b`/`0B` and binary
/// digits (each prefix only when a digit follows it), `0` and octal digits, or decimal digits.
/// Below `INTMAX_MIN` is `INTMAX_MIN`, which is [`Strtoimax::Negative`] too.
fn strtoimax(s: &str) -> Strtoimax<'_> {
    let start = s.len()
        - s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r'])
            .len();
    let bytes = &s.as_bytes()[start..];
    let (negative, signed) = match bytes.first() {
        Some(b'-') => (true, 1),
        Some(b'+') => (false, 1),
        _ => (false, 0),
    };
    let number = &bytes[signed..];
    let digit_after_prefix = |radix: u32| {
        number
            .get(2)
            .is_some_and(|&d| char::from(d).is_digit(radix))
    };
    let (radix, prefix) = match number {
        [b'0', b'x' | b'X', ..] if digit_after_prefix(16) => (16, 2),
        [b'0', b'b' | b'B', ..] if digit_after_prefix(2) => (2, 2),
        [b'0', ..] => (8, 0),
        _ => (10, 0),
    };
    let digits = number[prefix..]
        .iter()
        .take_while(|&&d| char::from(d).is_digit(radix))
        .count();
    if digits == 0 {
        return Strtoimax::NoDigits;
    }
    let rest = &s[start + signed + prefix + digits..];
    // The magnitude, saturated just above 2⁶³ (all that matters is whether it fits).
    let magnitude = number[prefix..prefix + digits].iter().fold(0u64, |m, &d| {
        let digit = char::from(d).to_digit(radix).unwrap_or(0);
        m.saturating_mul(u64::from(radix))
            .saturating_add(u64::from(digit))
            .min(1 << 63)
    });
    match (negative, magnitude) {
        (true, 0) => Strtoimax::Value(0, rest),
        (true, _) => Strtoimax::Negative,
        (false, m) if m > i64::MAX as u64 => Strtoimax::OutOfRange,
        (false, m) => Strtoimax::Value(m as i64, rest),
    }
}

/// `nbdkit_parse_bool`: `1`/`true`/`t`/`yes`/`y`/`on` or `0`/`false`/`f`/`no`/`n`/`off`, or
/// nbdkit's error message.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    if s.contains('\0') {
        return Err(nul_byte("nbdkit_parse_bool"));
    }
    let is = |word: &str| s.eq_ignore_ascii_case(word);
    if s == "1" || ["true", "t", "yes", "y", "on"].into_iter().any(is) {
        Ok(true)
    } else if s == "0" || ["false", "f", "no", "n", "off"].into_iter().any(is) {
        Ok(false)
    } else {
        Err(format!("could not decipher boolean ({s})"))
    }
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

/// `nbdkit_parse_probability`: `0.1`, `1e-1`, `10%`, `1:10`, `1/10` (may exceed 1; `0/0` is 0),
/// or nbdkit's error message, which names the parameter `what`.
pub fn parse_probability(what: &str, s: &str) -> Result<f64, String> {
    let bad = || format!("{what}: could not parse '{s}' as a probability");
    let c = CString::new(s).map_err(|_| nul_byte("nbdkit_parse_probability"))?;
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

/// `nbdkit_parse_delay`: `1`, `1.5s`, `120ms`, `10us`/`10μs`, `1ns`, as (seconds, nanoseconds),
/// or nbdkit's error message, which names the parameter `what`. The nanoseconds may be
/// 1,000,000,000 after rounding, as nbdkit's may. Like nbdkit's C, which converts with x86-64's
/// `cvttsd2si` and keeps the low 32 bits, 2³² seconds or more wrap (nbdkit's behaviour there is
/// undefined in C; this is what its binaries do).
pub fn parse_delay(what: &str, s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("{what}: could not parse delay or sleep: \"{s}\"");
    let c = CString::new(s).map_err(|_| nul_byte("nbdkit_parse_delay"))?;
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
    // 2⁶³, exactly representable.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if (-LIMIT..LIMIT).contains(&d) {
        d as i64
    } else {
        i64::MIN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_every_documented_form() {
        for (s, want) in [
            ("0", 0),
            ("512", 512),
            ("1b", 1),
            ("1B", 1),
            ("1k", 1024),
            ("64K", 64 << 10),
            ("1M", 1 << 20),
            ("2G", 2 << 30),
            ("3T", 3 << 40),
            ("4P", 4 << 50),
            ("7E", 7 << 60),
            ("100s", 51_200),
            ("100S", 51_200),
            (" \t\n5M", 5 << 20),
            ("+5", 5),
            ("-0", 0),
            ("007", 7),
            ("010", 8),
            ("0x1E", 30),
            ("0x1_E", 1 << 60),
            ("1_M", 1 << 20),
            ("0b101", 5),
            ("0b", 0),
            ("0X1fk", 31 << 10),
            ("9223372036854775807", i64::MAX as u64),
            ("0x7fffffffffffffff", i64::MAX as u64),
            ("8191P", 8191 << 50),
        ] {
            assert_eq!(parse_size(s), Ok(want), "{s:?}");
        }
        for (s, why) in [
            ("", "could not parse size string: "),
            ("x", "could not parse size string: x"),
            ("0x", "could not parse size: unknown suffix: x"),
            ("0xg", "could not parse size: unknown suffix: xg"),
            ("08", "could not parse size: unknown suffix: 8"),
            ("0b2", "could not parse size: unknown suffix: 2"),
            ("1_", "could not parse size: unknown suffix: _"),
            ("1__M", "could not parse size: unknown suffix: __M"),
            ("1_M_", "could not parse size: unknown suffix: _"),
            ("_1M", "could not parse size string: _1M"),
            ("-0x1", "size cannot be negative: -0x1"),
            (
                "0x8000000000000000",
                "size exceeds maximum value: 0x8000000000000000",
            ),
            ("1.5M", "could not parse size: unknown suffix: .5M"),
            ("-1", "size cannot be negative: -1"),
            (
                "-99999999999999999999",
                "size cannot be negative: -99999999999999999999",
            ),
            (
                "9223372036854775808",
                "size exceeds maximum value: 9223372036854775808",
            ),
            ("8E", "could not parse size: size * scale overflows: 8E"),
            ("8Ex", "could not parse size: size * scale overflows: 8Ex"),
            ("1Mx", "could not parse size: unknown suffix: x"),
            ("1MiB", "could not parse size: unknown suffix: iB"),
            ("1 ", "could not parse size: unknown suffix:  "),
            ("1x", "could not parse size: unknown suffix: x"),
            ("1\0", "nbdkit_parse_size: argument contains a NUL byte"),
        ] {
            assert_eq!(parse_size(s), Err(why.to_string()), "{s:?}");
        }
    }

    #[test]
    fn booleans_as_nbdkit_spells_them() {
        for s in ["1", "true", "TRUE", "t", "T", "yes", "Yes", "y", "on", "ON"] {
            assert_eq!(parse_bool(s), Ok(true), "{s}");
        }
        for s in ["0", "false", "f", "no", "N", "n", "off", "OfF"] {
            assert_eq!(parse_bool(s), Ok(false), "{s}");
        }
        for s in ["", " 1", "1 ", "01", "+1", "2", "yess", "enable", "tru"] {
            assert_eq!(
                parse_bool(s),
                Err(format!("could not decipher boolean ({s})")),
                "{s:?}"
            );
        }
    }

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

    /// Random strings from the syntaxes' alphabets never panic, and every accepted value is
    /// finite and not negative; numbers written in each form read back as their value.
    #[test]
    fn random_input_is_parsed_or_refused_never_panics() {
        let alphabet: Vec<char> = "0123456789.e-+%:/smunμ xkKgGtTpPEbB\t".chars().collect();
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
            if let Ok(size) = parse_size(&s) {
                assert!(size <= i64::MAX as u64, "{s:?} -> {size}");
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
            assert_eq!(parse_size(&format!("{a}K")), Ok(a << 10));
        }
    }
}
