//! `server::parse_size` and `server::parse_bool` outside nbdkit (a plugin's unit test of its
//! `config`) answer as nbdkit does inside it: the same generated inputs go to the functions here,
//! in this test process where there is no nbdkit (so `rustshim_plugin_api::parse` answers), and
//! to the running nbdkit through the test plugin (`parse_size=` / `parse_bool=` keys), and the
//! answers must be the same: accepted or refused, the same value, and the same message.
//!
//! The fallback follows the newest nbdkit's wording. Older nbdkits accept and refuse the same
//! strings with the same values but word some refusals differently; this test asserts each
//! version's own words, from nbdkit's source:
//! * before 1.36 (1.32.5): `server/public.c` formats its own messages (`could not parse size
//!   string (x)`, `size (x) exceeds maximum value`, `overflow computing size (x)`, …);
//! * 1.36 to 1.43.10 (1.42.3): `human_size_parse`, `ERROR: STRING`, with a bad suffix checked
//!   before an overflow and named from the first suffix letter (`unknown suffix: Mx`);
//! * from 1.43.11 (commit c19a21ce, "human-size: Add human_size_parse_substr"): the overflow is
//!   checked first and the bad suffix is what follows a valid one (`x`);
//! * from 1.48 (its release notes: "allow hex and octal sizes, and allow `_` before the scaling
//!   factor"): `strtoimax` in base 0, so `0x1E` is 30 and `010` is 8, and Debian's 1.48.1, built
//!   as C23, also reads `0b101` as 5. The fallback is this newest one.
//!
//! `parse_probability` and `parse_delay` are held to nbdkit the same way by `parsers.rs`.

use rustshim_plugin_api::server;
use rustshim_tests::*;

const SIZE_INPUTS: usize = 3_000;

/// `nbdkit_parse_size` of an nbdkit older than 1.48, from its source: `strtoimax` in base 10,
/// one optional scale letter, no `_`; the overflow checked before a bad suffix from 1.43.11,
/// after it before; each version's wording.
fn older_parse_size(s: &str) -> Result<u64, String> {
    let overflow_first = nbdkit_at_least(&[1, 43, 11]);
    let human_size_h = nbdkit_at_least(&[1, 36]);
    let t = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let (negative, unsigned) = match t.strip_prefix(['+', '-']) {
        Some(u) => (t.starts_with('-'), u),
        None => (false, t),
    };
    let suffix = unsigned.trim_start_matches(|c: char| c.is_ascii_digit());
    let digits = &unsigned[..unsigned.len() - suffix.len()];
    let says = |why: &str, old: String| {
        Err(if human_size_h {
            format!("{why}: {s}")
        } else {
            old
        })
    };
    if digits.is_empty() {
        return says(
            "could not parse size string",
            format!("could not parse size string ({s})"),
        );
    }
    let magnitude = digits.parse::<u128>().unwrap_or(u128::MAX);
    if negative && magnitude > 0 {
        return says(
            "size cannot be negative",
            format!("size cannot be negative ({s})"),
        );
    }
    let Ok(size) = i64::try_from(magnitude) else {
        return says(
            "size exceeds maximum value",
            format!("size ({s}) exceeds maximum value"),
        );
    };
    let scale: i64 = match suffix.chars().next().map(|c| c.to_ascii_lowercase()) {
        None | Some('b') => 1,
        Some('k') => 1 << 10,
        Some('m') => 1 << 20,
        Some('g') => 1 << 30,
        Some('t') => 1 << 40,
        Some('p') => 1 << 50,
        Some('e') => 1 << 60,
        Some('s') => 512,
        Some(_) => 0,
    };
    let overflow = scale > 0 && i64::MAX / scale < size;
    let bad_suffix = scale == 0 || suffix.len() > 1;
    if overflow && (overflow_first || !bad_suffix) {
        return says(
            "could not parse size: size * scale overflows",
            format!("overflow computing size ({s})"),
        );
    }
    if bad_suffix {
        // Named from its first letter before 1.43.11, after a valid one from then on.
        let named = if overflow_first && scale > 0 {
            &suffix[1..]
        } else {
            suffix
        };
        return Err(if human_size_h {
            format!("could not parse size: unknown suffix: {named}")
        } else {
            format!("could not parse size: unknown suffix '{named}'")
        });
    }
    Ok((size * scale) as u64)
}

/// What the running nbdkit answers for a size: the fallback's answer on the newest nbdkit, the
/// older algorithm before 1.48.
fn parse_size_on_this_nbdkit(s: &str) -> Result<u64, String> {
    if nbdkit_at_least(&[1, 48]) {
        server::parse_size(s).map_err(|e| e.message().to_string())
    } else {
        older_parse_size(s)
    }
}

/// The test plugin's trace line for an answer (`Err(EINVAL: …)` as `Err`: the message inside
/// nbdkit is nbdkit's log line, compared separately).
fn traced(function: &str, s: &str, answer: Result<String, ()>) -> String {
    match answer {
        Ok(v) => format!("{function}({s:?}) = Ok({v})"),
        Err(()) => format!("{function}({s:?}) = Err"),
    }
}

#[test]
fn parse_size_and_parse_bool_answer_outside_nbdkit_as_inside() {
    let sizes = size_inputs(SIZE_INPUTS);
    let bools = bool_inputs();

    // Here: no nbdkit, so the plugin API's own parsers answer.
    let mut expected_trace = Vec::new();
    let mut expected_stderr = String::new();
    let mut newest_differs = 0;
    for s in &sizes {
        let newest = server::parse_size(s);
        if let Err(e) = &newest {
            assert_eq!(e.errno(), nix::errno::Errno::EINVAL, "{s:?}");
        }
        let answer = parse_size_on_this_nbdkit(s);
        if answer != newest.clone().map_err(|e| e.message().to_string()) {
            newest_differs += 1;
        }
        if let Err(line) = &answer {
            expected_stderr += &format!("nbdkit: error: {line}\n");
        }
        expected_trace.push(traced(
            "parse_size",
            s,
            answer.map(|v| v.to_string()).map_err(drop),
        ));
    }
    for s in &bools {
        let answer = server::parse_bool(s);
        if let Err(e) = &answer {
            assert_eq!(e.errno(), nix::errno::Errno::EINVAL, "{s:?}");
            expected_stderr += &format!("nbdkit: error: {}\n", e.message());
        }
        expected_trace.push(traced(
            "parse_bool",
            s,
            answer.map(|v| v.to_string()).map_err(drop),
        ));
    }

    // In nbdkit: the same inputs, through the test plugin, in one run.
    let t = Trace::new("author-parsers");
    let mut args = vec![test_plugin(), t.arg()];
    args.extend(sizes.iter().map(|s| format!("parse_size={s}")));
    args.extend(bools.iter().map(|s| format!("parse_bool={s}")));
    let run = nbdkit_run_with(&[], &args, "true").ok();
    let got_trace: Vec<String> = t
        .lines()
        .iter()
        .filter(|l| l.starts_with("parse_size(") || l.starts_with("parse_bool("))
        .map(|l| match l.find(" = Err(") {
            Some(at) => format!("{} = Err", &l[..at]),
            None => l.clone(),
        })
        .collect();

    assert_eq!(
        got_trace.len(),
        sizes.len() + bools.len(),
        "one answer each"
    );
    let differ: Vec<String> = expected_trace
        .iter()
        .zip(&got_trace)
        .filter(|(a, b)| a != b)
        .map(|(here, nbdkit)| format!("  here  {here}\n  nbdkit {nbdkit}"))
        .collect();
    assert!(
        differ.is_empty(),
        "{} of {} answers differ on nbdkit {}:\n{}",
        differ.len(),
        got_trace.len(),
        nbdkit_version(),
        differ[..differ.len().min(20)].join("\n")
    );
    let accepted = got_trace.iter().filter(|a| !a.ends_with("= Err")).count();
    assert!(
        accepted > 500 && accepted < got_trace.len() - 500,
        "both kinds of answer are in the set: {accepted} of {}",
        got_trace.len()
    );

    // nbdkit's log: one error line per refusal, in this nbdkit's words, and nothing else.
    if run.stderr != expected_stderr {
        let (got, want): (Vec<&str>, Vec<&str>) = (
            run.stderr.lines().collect(),
            expected_stderr.lines().collect(),
        );
        let first = got
            .iter()
            .zip(&want)
            .position(|(g, w)| g != w)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "nbdkit {} logged {} lines, expected {}; first difference at line {first}:\n  \
             nbdkit {:?}\n  here   {:?}",
            nbdkit_version(),
            got.len(),
            want.len(),
            got.get(first),
            want.get(first)
        );
    }
    eprintln!(
        "nbdkit {}: {} sizes and {} booleans, {accepted} accepted, the answers and messages \
         expected; {newest_differs} sizes answered otherwise by the newest nbdkit (the fallback)",
        nbdkit_version(),
        sizes.len(),
        bools.len()
    );
    // The older versions' differences are in the inputs (hexadecimal, octal, `_`, wording).
    assert_eq!(newest_differs == 0, nbdkit_at_least(&[1, 48]));
}

/// The example a plugin author would write: a `config` tested without nbdkit.
#[test]
fn a_config_can_be_unit_tested_without_nbdkit() {
    fn config(key: &str, value: &str) -> rustshim_plugin_api::Result<u64> {
        match key {
            "size" => server::parse_size(value),
            _ => Err(rustshim_plugin_api::Error::invalid(format!(
                "unknown parameter '{key}'"
            ))),
        }
    }
    assert_eq!(config("size", "1G").unwrap(), 1 << 30);
    assert_eq!(
        config("size", "1.5G").unwrap_err().message(),
        "could not parse size: unknown suffix: .5G"
    );
    assert_eq!(
        server::parse_delay("d", "120ms").unwrap(),
        std::time::Duration::from_millis(120)
    );
    assert_eq!(server::parse_probability("p", "1:4").unwrap(), 0.25);
    assert_eq!(
        server::parse_bool("maybe").unwrap_err().message(),
        "could not decipher boolean (maybe)"
    );
    // Functions about the server and its clients still need nbdkit.
    assert_eq!(
        server::export_name().unwrap_err().errno(),
        nix::errno::Errno::ENOTSUP
    );
}
