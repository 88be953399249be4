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
    // 2⁶³, exactly representable.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if (-LIMIT..LIMIT).contains(&d) {
        d as i64
    } else {
        i64::MIN
    }
}

/// `-D rustshim.fallback=1`: nbdkit sets `<plugin>_debug_<flag>` symbols of a plugin after
/// loading it, so this makes the shim answer with its own versions of the functions below even
/// where nbdkit has them: how the suite holds each fallback to nbdkit's own answer.
#[no_mangle]
pub static rustshim_debug_fallback: std::sync::atomic::AtomicI32 =
    std::sync::atomic::AtomicI32::new(0);

/// `f`, unless `-D rustshim.fallback=1` asks for the shim's own version.
pub fn native<T>(f: Option<T>) -> Option<T> {
    f.filter(|_| rustshim_debug_fallback.load(std::sync::atomic::Ordering::Relaxed) == 0)
}

/// One row of nbdkit's hexdump: `PREFIX` `MARKER` `%08x: ` then 16 columns of `xx ` (an extra
/// space after the eighth), ` |`, the printable characters, `|`. Absent columns are blank.
fn hexdump_row(prefix: &str, marker: &str, row: u64, cells: &[Option<u8>; 16]) -> String {
    use std::fmt::Write;
    let mut line = format!("{prefix}{marker}{row:08x}: ");
    for (column, cell) in cells.iter().enumerate() {
        match cell {
            Some(byte) => write!(line, "{byte:02x} ").expect("writing to a String"),
            None => line.push_str("   "),
        }
        if column == 7 {
            line.push(' ');
        }
    }
    line.push_str(" |");
    line.extend(cells.iter().map(|cell| match cell {
        Some(byte @ 0x20..=0x7e) => char::from(*byte),
        Some(_) => '.',
        None => ' ',
    }));
    line.push('|');
    line
}

/// The rows `buf` occupies when its first byte is at offset `start`: rows are 16-byte aligned
/// (so the first may start part-way), and offsets wrap at 2⁶⁴, as nbdkit's do.
fn rows(buf: &[u8], start: u64) -> Vec<(u64, [Option<u8>; 16])> {
    let mut rows: Vec<(u64, [Option<u8>; 16])> = Vec::new();
    for (i, &byte) in buf.iter().enumerate() {
        let at = start.wrapping_add(i as u64);
        let row = at & !15;
        if rows.last().map_or(true, |(r, _)| *r != row) {
            rows.push((row, [None; 16]));
        }
        rows.last_mut().expect("pushed above").1[(at & 15) as usize] = Some(byte);
    }
    rows
}

/// `nbdkit_debug_hexdump`'s lines (nbdkit ≥ 1.46 has it), in nbdkit 1.48's exact format.
pub fn hexdump(buf: &[u8], prefix: &str, start: u64) -> Vec<String> {
    rows(buf, start)
        .iter()
        .map(|(row, cells)| hexdump_row(prefix, "", *row, cells))
        .collect()
}

/// `nbdkit_debug_hexdiff`'s lines (nbdkit ≥ 1.48 has it): a row the same in both buffers once,
/// marked ` `; a row that differs as `-` with `a`'s bytes, then `+` with only the bytes of `b`
/// that differ.
pub fn hexdiff(a: &[u8], b: &[u8], prefix: &str, start: u64) -> Vec<String> {
    let mut lines = Vec::new();
    for ((row, old), (_, new)) in rows(a, start).iter().zip(rows(b, start)) {
        if *old == new {
            lines.push(hexdump_row(prefix, " ", *row, old));
        } else {
            let changed = std::array::from_fn(|i| new[i].filter(|&byte| old[i] != Some(byte)));
            lines.push(hexdump_row(prefix, "-", *row, old));
            lines.push(hexdump_row(prefix, "+", *row, &changed));
        }
    }
    lines
}

/// `nbdkit_timestamp`'s text for `time` (nbdkit ≥ 1.48 has it): UTC, `YYYY-MM-DD HH:MM:SS.uuuuuu`.
/// (nbdkit 1.48.1's own gives `!` outside a connection's thread; this one always has the time.)
pub fn timestamp(time: std::time::SystemTime) -> String {
    let since = time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm, for the proleptic
    // Gregorian calendar).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:06}",
        rest / 3_600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_micros()
    )
}

/// `nbdkit_name` (nbdkit ≥ 1.48 has it): the value of `--name` on nbdkit's command line (`args`
/// without the program), which nbdkit ≥ 1.46 accepts and older ones refuse, so `None` there.
pub fn name(args: &[String]) -> Option<String> {
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        if arg == "--name" {
            return args.next().cloned();
        }
        if let Some(name) = arg.strip_prefix("--name=") {
            return Some(name.to_owned());
        }
    }
    None
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

    /// nbdkit 1.48.1's own output for the same calls (captured with `nbdkit -v` in the forky
    /// root); the suite compares with the running nbdkit too.
    #[test]
    fn hexdump_and_hexdiff_in_nbdkits_format() {
        assert_eq!(
            hexdump(b"1234567812345678123456781234567", "data: ", 0),
            [
                "data: 00000000: 31 32 33 34 35 36 37 38  31 32 33 34 35 36 37 38  |1234567812345678|",
                "data: 00000010: 31 32 33 34 35 36 37 38  31 32 33 34 35 36 37     |123456781234567 |",
            ]
        );
        assert_eq!(
            hexdump(b"ab\x00\xff\n\t zZ~\x7f", "", 7),
            [
                "00000000:                      61  62 00 ff 0a 09 20 7a 5a  |       ab.... zZ|",
                "00000010: 7e 7f                                             |~.              |",
            ]
        );
        assert_eq!(
            hexdump(b"\x80\xc3\xa9", "", 0xffff_ffff_ffff_fffe),
            [
                "fffffffffffffff0:                                            80 c3  |              ..|",
                "00000000: a9                                                |.               |",
            ]
        );
        assert!(hexdump(b"", "empty: ", 0).is_empty());
        let a = [&b"A"[..]; 16].concat();
        let (a, b) = (
            [a.clone(), vec![b'B'; 16], vec![b'C'; 16]].concat(),
            [a, vec![b'b'; 16], vec![b'C'; 16]].concat(),
        );
        assert_eq!(
            hexdiff(&a, &b, "", 0),
            [
                " 00000000: 41 41 41 41 41 41 41 41  41 41 41 41 41 41 41 41  |AAAAAAAAAAAAAAAA|",
                "-00000010: 42 42 42 42 42 42 42 42  42 42 42 42 42 42 42 42  |BBBBBBBBBBBBBBBB|",
                "+00000010: 62 62 62 62 62 62 62 62  62 62 62 62 62 62 62 62  |bbbbbbbbbbbbbbbb|",
                " 00000020: 43 43 43 43 43 43 43 43  43 43 43 43 43 43 43 43  |CCCCCCCCCCCCCCCC|",
            ]
        );
        assert_eq!(
            hexdiff(b"12345678123456", b"12345678987654", "d: ", 3)[1],
            "d: +00000000:                                   39 38 37 36     |           9876 |"
        );
    }

    #[test]
    fn timestamps_and_names() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::new(1_796_315_471, 424_774_999);
        assert_eq!(timestamp(at), "2026-12-03 16:31:11.424774");
        assert_eq!(
            timestamp(std::time::UNIX_EPOCH),
            "1970-01-01 00:00:00.000000"
        );
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(951_782_400);
        assert_eq!(timestamp(at), "2000-02-29 00:00:00.000000");
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            name(&args(&["-f", "--name=disk7", "rustshim"])),
            Some("disk7".into())
        );
        assert_eq!(name(&args(&["--name", "d", "rustshim"])), Some("d".into()));
        assert_eq!(name(&args(&["-f", "rustshim", "plugin=x"])), None);
        assert_eq!(name(&args(&["--", "--name=x"])), None);
    }
}
