//! A differential test of the shim's own `parse_probability` and `parse_delay` (host/src/
//! fallback.rs, used when the running nbdkit lacks them) against nbdkit's: 10,000 generated
//! inputs, valid, borderline and garbage, each parsed by the running nbdkit through the test
//! plugin (`parse_probability=` / `parse_delay=` keys) and by the fallback in this process. The
//! answers must be identical: the same accept or reject, the same value to the bit. Where they
//! differ, nbdkit is right and the fallback is what gets fixed.
//!
//! On nbdkit 1.42 and 1.48 (`cargo xtask test --nbdkit all`) the plugin gets nbdkit's own
//! parsers; on 1.32, which has neither, the shim answers with the fallback, and the test checks
//! that it says so (`--dump-plugin`) and that the plugin sees exactly the fallback's answers.

#[path = "../fixtures/support.rs"]
mod support;

use nbdkit_rustshim_plugin::fallback;
use rustshim_tests::*;
use support::*;

/// nbdkit_parse_probability came in 1.36, nbdkit_parse_delay in 1.40 (their man pages).
const PROBABILITY_SINCE: [u32; 2] = [1, 36];
const DELAY_SINCE: [u32; 2] = [1, 40];
const INPUTS: usize = 10_000;

/// Deterministic inputs: numbers in every form C's `%lg` reads (decimal, exponent, hexadecimal,
/// signs, leading blanks, inf/nan), each with a suffix from both syntaxes or a wrong one, plus
/// strings of random characters from the syntax's alphabet.
/// Delays of 2³² seconds and more are in too: nbdkit's C converts them to `unsigned` with
/// undefined behaviour, and the fallback does what nbdkit's x86-64 binaries do.
fn inputs() -> Vec<String> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    let numbers = [
        "0",
        "1",
        "2",
        "10",
        "0.5",
        ".5",
        "5.",
        "1e-1",
        "1E2",
        "2e+3",
        "1e",
        "1e+",
        "+1",
        "-0",
        "-1",
        "  3",
        "\t4",
        "0x10",
        "0X1p-2",
        "0x.8",
        "inf",
        "INF",
        "infinity",
        "nan",
        "NaN",
        "nan(1)",
        "1e308",
        "1e309",
        "4e-320",
        "4294967295.5",
        "4294967296",
        "5e9",
        "1e19",
        "2.5e-9",
        "0.5e-9",
        "0.1",
        "123456789",
        "3.14159",
        "007",
        "1.5",
        "1..2",
        ".",
        "+",
        "-",
        "e5",
        "",
    ];
    let suffixes = [
        "", "%", "s", "ms", "us", "μs", "ns", "m", "S", " ", "%%", "/4", ":3", "/0", ":0", "//2",
        "/:2", "/ 2", " /2", "/2x", "/-2", "/0x4", "/1e1", ":inf", "/.5", "sec", "x",
    ];
    let alphabet: Vec<char> = "0123456789.eExXpP+-%:/smunμ \tinfa".chars().collect();
    let mut out = Vec::with_capacity(INPUTS);
    while out.len() < INPUTS {
        let s = if next(4) == 0 {
            let len = next(9);
            (0..len).map(|_| alphabet[next(alphabet.len())]).collect()
        } else {
            let mut s = numbers[next(numbers.len())].to_string();
            if next(3) == 0 {
                s = format!("{}.{}", next(100_000), next(1_000_000));
            }
            s + suffixes[next(suffixes.len())]
        };
        out.push(s);
    }
    out
}

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

#[test]
fn the_fallback_parsers_answer_exactly_as_nbdkits_own() {
    let inputs = inputs();
    let t = Trace::new("parsers");
    let mut args = vec![test_plugin(), t.arg()];
    for s in &inputs {
        args.push(format!("parse_probability={s}"));
        args.push(format!("parse_delay={s}"));
    }
    nbdkit_run(&args, "true").ok();
    let lines = t.lines();
    let got: Vec<String> = lines
        .iter()
        .filter(|l| l.starts_with("parse_probability(") || l.starts_with("parse_delay("))
        .map(|l| answer(l))
        .collect();
    let want: Vec<String> = inputs
        .iter()
        .flat_map(|s| [expected_probability(s), expected_delay(s)])
        .collect();
    assert_eq!(got.len(), want.len(), "one answer per input and parser");
    let disagreements: Vec<String> = got
        .iter()
        .zip(&want)
        .filter(|(g, w)| g != w)
        .map(|(g, w)| format!("nbdkit {g}\n  shim {w}"))
        .collect();
    let accepted = want.iter().filter(|w| !w.ends_with("= Err")).count();
    eprintln!(
        "{} inputs, {accepted} of {} answers accept, {} disagreements, nbdkit {}",
        inputs.len(),
        want.len(),
        disagreements.len(),
        nbdkit_version()
    );
    assert!(
        disagreements.is_empty(),
        "{} of {} answers differ on nbdkit {}:\n{}",
        disagreements.len(),
        want.len(),
        nbdkit_version(),
        disagreements[..disagreements.len().min(30)].join("\n")
    );
    // Both kinds of answer are in the set, so agreement is not an accident of the inputs.
    assert!(
        accepted > 2_000 && accepted < want.len() - 2_000,
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
}
