//! Server functions the shim does itself when the running nbdkit is too old to have them, with
//! nbdkit's documented syntax and error messages (`nbdkit_parse_probability(3)`, nbdkit ≥ 1.36;
//! `nbdkit_parse_delay(3)`, nbdkit ≥ 1.40).

/// Splits `s` into the longest leading decimal number (as `sscanf("%lg")` reads it, leading
/// white space skipped) and the rest.
fn leading_number(s: &str) -> Option<(f64, &str)> {
    let t = s.trim_start();
    (1..=t.len())
        .rev()
        .filter(|&end| t.is_char_boundary(end))
        .find_map(|end| t[..end].parse::<f64>().ok().map(|v| (v, &t[end..])))
}

/// `nbdkit_parse_probability`: `0.1`, `1e-1`, `10%`, `1:10`, `1/10` (may exceed 1; `0/0` is 0).
pub fn parse_probability(what: &str, s: &str) -> Result<f64, String> {
    let bad = || format!("{what}: could not parse '{s}' as a probability");
    let (mut d, rest) = leading_number(s).ok_or_else(bad)?;
    if let Some(divisor) = rest.strip_prefix([':', '/']) {
        let (d2, tail) = leading_number(divisor).ok_or_else(bad)?;
        if !tail.is_empty() {
            return Err(bad());
        }
        if !(d == 0.0 && d2 == 0.0) {
            if d2 == 0.0 {
                return Err(bad());
            }
            d /= d2;
        }
    } else if rest == "%" {
        d /= 100.0;
    } else if !rest.is_empty() {
        return Err(bad());
    }
    if !d.is_finite() || d.is_sign_negative() {
        return Err(bad());
    }
    Ok(d)
}

/// `nbdkit_parse_delay`: `1`, `1.5s`, `120ms`, `10us`/`10μs`, `1ns`, as (seconds, nanoseconds).
pub fn parse_delay(what: &str, s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("{what}: could not parse delay or sleep: \"{s}\"");
    let (mut d, unit) = leading_number(s).ok_or_else(bad)?;
    d /= match unit {
        "" | "s" => 1.0,
        "ms" => 1e3,
        "us" | "μs" => 1e6,
        "ns" => 1e9,
        _ => return Err(bad()),
    };
    if !d.is_finite() || d.is_sign_negative() {
        return Err(bad());
    }
    let sec = d.min(u32::MAX as f64) as u32;
    let nsec = ((d - sec as f64) * 1e9).clamp(0.0, 999_999_999.0) as u32;
    Ok((sec, nsec))
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
        // Like nbdkit's C, the fraction is truncated, so decimal fractions may lose a nanosecond.
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
                assert!(nsec < 1_000_000_000, "{s:?} -> {sec}s {nsec}ns");
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
