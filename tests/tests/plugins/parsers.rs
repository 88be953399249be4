//! A differential test of the shim's own `parse_probability` and `parse_delay` (host/src/
//! fallback.rs, used when the running nbdkit lacks them) against nbdkit's: 10,000 generated
//! inputs, valid, borderline and garbage, each parsed through the test plugin
//! (`parse_probability=` / `parse_delay=` keys) by the running nbdkit, and again with
//! `-D rustshim.fallback=1`, which makes the shim answer with its own parsers in the same process
//! (so with the same C library: glibc's `sscanf` changed its reading of `1e` between Debian 13
//! and forky). The answers must be identical: the same accept or reject, the same value to the
//! bit. Where they differ, nbdkit is right and the fallback is what gets fixed.
//!
//! On nbdkit 1.42 and 1.48 (`cargo xtask test --nbdkit all`) that compares the fallback with
//! nbdkit's own parsers; on 1.32, which has neither, both runs are the fallback, and the test
//! checks that the shim says so (`--dump-plugin`) and that the plugin sees exactly what the
//! fallback computes in this process (the same machine, the same C library);
//! `nbdkit_148_answers.rs` holds the fallback there to nbdkit 1.48.1's recorded answers.

use nbdkit_rustshim_plugin::fallback;
use rustshim_tests::*;

/// nbdkit_parse_probability came in 1.36, nbdkit_parse_delay in 1.40 (their man pages).
const PROBABILITY_SINCE: [u32; 2] = [1, 36];
const DELAY_SINCE: [u32; 2] = [1, 40];
const INPUTS: usize = 10_000;

fn expected_probability(s: &str) -> String {
    match fallback::parse_probability("parse_probability", s) {
        Ok(v) => format!("parse_probability({s:?}) = Ok({v:?})"),
        Err(_) => format!("parse_probability({s:?}) = Err"),
    }
}

fn expected_delay(s: &str) -> String {
    match fallback::parse_delay("parse_delay", s) {
        Ok((sec, nsec)) => {
            let d = std::time::Duration::new(sec.into(), nsec);
            format!(
                "parse_delay({s:?}) = Ok({:?})",
                format!("{}s+{}ns", d.as_secs(), d.subsec_nanos())
            )
        }
        Err(_) => format!("parse_delay({s:?}) = Err"),
    }
}

/// The traced answer with the message of an error left out (nbdkit's and the fallback's words
/// are compared by other tests).
fn answer(line: &str) -> String {
    match line.find(" = Err(") {
        Some(at) => format!("{} = Err", &line[..at]),
        None => line.to_owned(),
    }
}

/// Every input through both parsers of the test plugin, in nbdkit started with `options`.
fn answers(inputs: &[String], options: &[&str]) -> Vec<String> {
    let t = Trace::new("parsers");
    let mut args = vec![test_plugin(), t.arg()];
    for s in inputs {
        args.push(format!("parse_probability={s}"));
        args.push(format!("parse_delay={s}"));
    }
    nbdkit_run_with(options, &args, "true").ok();
    t.lines()
        .iter()
        .filter(|l| l.starts_with("parse_probability(") || l.starts_with("parse_delay("))
        .map(|l| answer(l))
        .collect()
}

/// The nanoseconds of an `Ok` delay answer.
fn nanos(answer: &str) -> Option<(String, u64)> {
    let (head, value) = answer.split_once(" = Ok(\"")?;
    let (secs, nanos) = value.trim_end_matches("ns\")").split_once("s+")?;
    Some((format!("{head} {secs}"), nanos.parse().ok()?))
}

/// nbdkit 1.42.3's binary rounds the nanoseconds with `round` (ties away from zero), 1.48.1's and
/// the shim's with `lrint` (ties to even): on an exact half nanosecond `n + 0.5` with `n` even
/// they differ by one. Which versions between do which is not known here, so it is allowed on
/// every nbdkit older than 1.48 that has the parser.
fn is_tie_rounded_away(native: &str, ours: &str) -> bool {
    match (nanos(native), nanos(ours)) {
        (Some((a, n)), Some((b, m))) => a == b && n == m + 1 && m % 2 == 0,
        _ => false,
    }
}

#[test]
fn the_fallback_parsers_answer_exactly_as_nbdkits_own() {
    let inputs = probability_and_delay_inputs(INPUTS);
    let native = answers(&inputs, &[]);
    let ours = answers(&inputs, &["-D", "rustshim.fallback=1"]);
    assert_eq!(
        native.len(),
        2 * inputs.len(),
        "one answer per input and parser"
    );
    assert_eq!(ours.len(), native.len(), "one answer per input and parser");
    let ties_allowed = !nbdkit_at_least(&[1, 48]);
    let (mut ties, mut disagreements) = (0, Vec::new());
    for (n, o) in native.iter().zip(&ours) {
        if n == o {
            continue;
        }
        if ties_allowed && is_tie_rounded_away(n, o) {
            ties += 1;
        } else {
            disagreements.push(format!("nbdkit {n}\n  shim {o}"));
        }
    }
    let accepted = native.iter().filter(|a| !a.ends_with("= Err")).count();
    eprintln!(
        "{} inputs, {accepted} of {} answers accept, {} disagreements, {ties} half-nanosecond \
         ties rounded away from zero by nbdkit {}",
        inputs.len(),
        native.len(),
        disagreements.len(),
        nbdkit_version()
    );
    assert!(
        disagreements.is_empty(),
        "{} of {} answers differ on nbdkit {}:\n{}",
        disagreements.len(),
        native.len(),
        nbdkit_version(),
        disagreements[..disagreements.len().min(30)].join("\n")
    );
    // Both kinds of answer are in the set, so agreement is not an accident of the inputs.
    assert!(
        accepted > 2_000 && accepted < native.len() - 2_000,
        "{accepted}"
    );

    // Which parser answered: nbdkit's own where it has one, else the shim's.
    let dump = nbdkit(&[test_plugin(), "--dump-plugin".into()]).ok().stdout;
    let optional = dump
        .lines()
        .find_map(|l| l.strip_prefix("rustshim_server_optional_functions="))
        .expect("--dump-plugin lists the optional functions");
    for (function, since) in [
        ("parse_probability", PROBABILITY_SINCE),
        ("parse_delay", DELAY_SINCE),
    ] {
        assert_eq!(
            optional.split(',').any(|f| f == function),
            nbdkit_at_least(&since),
            "{function} on nbdkit {}: {optional}",
            nbdkit_version()
        );
    }
    // On the host's nbdkit the C library is this process's: the plugin must see exactly what
    // the fallback computes here.
    if rustshim_harness::root().is_none() {
        let here: Vec<String> = inputs
            .iter()
            .flat_map(|s| [expected_probability(s), expected_delay(s)])
            .collect();
        assert_eq!(ours, here);
    }
}
