//! The shim's own versions of server functions older nbdkits lack (host/src/fallback.rs:
//! `nbdkit_debug_hexdump` and `nbdkit_debug_hexdiff`, `nbdkit_parse_probability` and
//! `nbdkit_parse_delay`) and the plugin API's parsers outside nbdkit (`server::parse_size`,
//! `server::parse_bool`, which follow nbdkit 1.48) are held to nbdkit 1.48.1's own answers on
//! every nbdkit, not only on 1.48: those answers are recorded in
//! `tests/fixtures/nbdkit-1.48.1-server-functions.txt`.
//!
//! * On nbdkit 1.48 (`RUSTSHIM_ROOT=/var/cache/rustshim/roots/forky`) the test plugin calls
//!   nbdkit's own functions, and what nbdkit prints and answers must be the fixture, line for
//!   line, so the fixture cannot drift from nbdkit; then the same with the shim's fallbacks
//!   forced (`-D rustshim.fallback=1`).
//! * On 1.32 and 1.42 the fallbacks answer (forced where the nbdkit has its own parser: 1.42
//!   has `parse_probability` and `parse_delay`), and must give the fixture.
//! * Everywhere, `server::parse_size` and `server::parse_bool` in this process, outside nbdkit,
//!   must give the fixture's answers and messages.
//!
//! The fixture is made on the 1.48 leg with [`WRITE_ENV`]`=1` (the command is in its first
//! lines).

use rustshim_plugin_api::server;
use rustshim_tests::*;

const FIXTURE: &str = "nbdkit-1.48.1-server-functions.txt";
/// Set to `1` on the 1.48 leg to (re)write the fixture from the running nbdkit.
const WRITE_ENV: &str = "RUSTSHIM_WRITE_FIXTURE";
const PROBABILITY_AND_DELAY_INPUTS: usize = 1_000;
const SIZE_INPUTS: usize = 2_200;

/// The server functions the fixture records, as the test plugin's keys name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hexdump,
    Hexdiff,
    Probability,
    Delay,
    Size,
    Bool,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::Hexdump,
        Kind::Hexdiff,
        Kind::Probability,
        Kind::Delay,
        Kind::Size,
        Kind::Bool,
    ];

    /// The test plugin's key.
    fn key(self) -> &'static str {
        match self {
            Kind::Hexdump => "hexdump",
            Kind::Hexdiff => "hexdiff",
            Kind::Probability => "parse_probability",
            Kind::Delay => "parse_delay",
            Kind::Size => "parse_size",
            Kind::Bool => "parse_bool",
        }
    }

    /// The function's name in the test plugin's trace.
    fn traced(self) -> &'static str {
        match self {
            Kind::Hexdump => "debug_hexdump",
            Kind::Hexdiff => "debug_hexdiff",
            other => other.key(),
        }
    }

    /// Those the shim has a fallback for (the others are nbdkit's own inside nbdkit on every
    /// version).
    fn has_fallback(self) -> bool {
        !matches!(self, Kind::Size | Kind::Bool)
    }
}

/// Every input, in fixture order: the test plugin's values.
fn cases() -> Vec<(Kind, String)> {
    let mut cases = Vec::new();
    for value in [
        "0:1234567812345678123456781234567",
        "0:",
        "0:0123456789abcdef",
        "15:0123456789abcdef",
        "16:x",
        "7:ab\u{7f} zZ~ with a tab\there",
        "4294967295:é€ and \u{1}\u{1f}",
        "18446744073709551614:xyz",
        "18446744073709551615:the last byte and on",
        "1000000:a:b:c::",
    ] {
        cases.push((Kind::Hexdump, value.to_owned()));
    }
    for value in [
        "0:AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCC:AAAAAAAAAAAAAAAAbbbbbbbbbbbbbbbbCCCCCCCCCCCCCCCC",
        "3:12345678123456781234567812345678xxxxxxxxxxxxxxxxxxxx:12345678987654321234567812345670xxxxxxxxxxxxxxxxxxxy",
        "0::",
        "0:same bytes here:same bytes here",
        "5:0123456789abcdef0123:ABCDEFGHIJKLMNOPQRST",
        "9:é€ \t.:e€ \t,",
        "18446744073709551610:abcdefghij:abcdefghiJ",
        "0:abc:abcd",
    ] {
        cases.push((Kind::Hexdiff, value.to_owned()));
    }
    for s in probability_and_delay_inputs(PROBABILITY_AND_DELAY_INPUTS) {
        cases.push((Kind::Probability, s.clone()));
        cases.push((Kind::Delay, s));
    }
    cases.extend(
        size_inputs(SIZE_INPUTS)
            .into_iter()
            .map(|s| (Kind::Size, s)),
    );
    cases.extend(bool_inputs().into_iter().map(|s| (Kind::Bool, s)));
    cases
}

/// One case's record: `KEY VALUE = ANSWER` (the value in Rust's quoting, the answer as the
/// test plugin traces it, an error as its errno alone), then what nbdkit logged for it, each
/// message indented, its backslashes and control characters escaped as Rust escapes them (a
/// message may hold a line break): `  debug: hx: …`, `  error: …`.
fn record(kind: Kind, value: &str, answer: &str, log: &[String]) -> Vec<String> {
    let escaped = |l: &String| -> String {
        l.chars()
            .map(|c| match c {
                '\\' => "\\\\".to_owned(),
                c if c.is_control() => c.escape_debug().to_string(),
                c => c.to_string(),
            })
            .collect()
    };
    let mut lines = vec![format!("{} {value:?} = {answer}", kind.key())];
    lines.extend(log.iter().map(|l| format!("  {}", escaped(l))));
    lines
}

/// A traced answer with an error's message left out (the message is the logged line).
fn answer_of(traced: &str) -> String {
    match traced.split_once(": ") {
        Some((errno, _)) if traced.starts_with("Err(") => format!("{errno})"),
        _ => traced.to_owned(),
    }
}

/// Where a case's log starts: a refused boolean whose message the records leave out.
fn marker(i: usize) -> String {
    format!("@case-{i}@")
}

/// nbdkit's messages on its stderr: each starts a line with `nbdkit: `, and takes the lines
/// after it that do not (a message with a line break).
fn messages(stderr: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in stderr.lines() {
        match out.last_mut() {
            Some(message) if !line.starts_with("nbdkit: ") => {
                message.push('\n');
                message.push_str(line);
            }
            _ => out.push(line.to_owned()),
        }
    }
    out
}

/// The messages a case's record keeps, from `debug: ` or `error: ` on (the prefix before varies
/// with the version): the dumps (`hx: `, `hd: `) and the errors.
fn kept(line: &str) -> Option<String> {
    if let Some((_, rest)) = line.split_once("debug: ") {
        return (rest.starts_with("hx: ") || rest.starts_with("hd: "))
            .then(|| format!("debug: {rest}"));
    }
    line.split_once("error: ")
        .map(|(_, rest)| format!("error: {rest}"))
}

/// The records of `cases` as the running nbdkit with the shim and `options` (before `-v`)
/// answers them through the test plugin, in one run.
fn in_nbdkit(cases: &[(Kind, String)], options: &[&str]) -> Vec<Vec<String>> {
    let t = Trace::new("nbdkit-148");
    let mut args = vec![test_plugin(), t.arg()];
    for (i, (kind, value)) in cases.iter().enumerate() {
        args.push(format!("parse_bool={}", marker(i)));
        args.push(format!("{}={value}", kind.key()));
    }
    let mut all_options = vec!["-v"];
    all_options.extend(options);
    let run = nbdkit_run_with(&all_options, &args, "true").ok();

    // Each case's log: the kept lines after its marker's refusal, up to the next marker's.
    let mut logs: Vec<Vec<String>> = Vec::new();
    for line in messages(&run.stderr) {
        if line.contains(&format!("({})", marker(logs.len()))) {
            logs.push(Vec::new());
        } else if let (Some(log), Some(kept)) = (logs.last_mut(), kept(&line)) {
            log.push(kept);
        }
    }
    assert_eq!(
        logs.len(),
        cases.len(),
        "a marker per case:\n{}",
        run.stderr
    );
    let traced: Vec<String> = t
        .lines()
        .into_iter()
        .filter(|l| !l.starts_with("parse_bool(\"@case-"))
        .filter(|l| {
            Kind::ALL
                .iter()
                .any(|k| l.starts_with(&format!("{}(", k.traced())))
        })
        .collect();
    assert_eq!(traced.len(), cases.len(), "an answer per case");
    let answers = cases.iter().zip(&traced).map(|((kind, value), line)| {
        let answer = line
            .strip_prefix(&format!("{}({value:?}) = ", kind.traced()))
            .unwrap_or_else(|| panic!("{line}: not the answer to {kind:?} {value:?}"));
        answer_of(answer)
    });
    cases
        .iter()
        .zip(answers)
        .zip(logs)
        .map(|(((kind, value), answer), log)| record(*kind, value, &answer, &log))
        .collect()
}

/// The record of a size or boolean as `server::parse_size` or `server::parse_bool` answers it
/// here, outside nbdkit, with its message as nbdkit logs an error.
fn here(kind: Kind, value: &str) -> Vec<String> {
    let (answer, log) = match kind {
        Kind::Size => match server::parse_size(value) {
            Ok(v) => (format!("Ok({v})"), vec![]),
            Err(e) => (
                "Err(EINVAL)".into(),
                vec![format!("error: {}", e.message())],
            ),
        },
        Kind::Bool => match server::parse_bool(value) {
            Ok(v) => (format!("Ok({v})"), vec![]),
            Err(e) => (
                "Err(EINVAL)".into(),
                vec![format!("error: {}", e.message())],
            ),
        },
        other => panic!("{other:?} needs nbdkit"),
    };
    record(kind, value, &answer, &log)
}

/// The fixture's header: what it is and the command that made it.
fn header(version: &str) -> String {
    format!(
        "# nbdkit {version}'s own answers (Debian's build, in the forky root) to\n\
         # the test plugin's calls of nbdkit_debug_hexdump, nbdkit_debug_hexdiff,\n\
         # nbdkit_parse_probability, nbdkit_parse_delay, nbdkit_parse_size and\n\
         # nbdkit_parse_bool: per call, the value, the answer, and what nbdkit logged (`-v`).\n\
         # Made, and compared with the running nbdkit {version} on every run of the 1.48 leg, by\n\
         #   {WRITE_ENV}=1 cargo xtask test --nbdkit 1.48 -- --test plugins nbdkit_148_answers\n\
         # (without {WRITE_ENV}=1 it compares). Do not edit by hand.\n\
         nbdkit {version}\n"
    )
}

/// The fixture: the version it records and the records, one per case in [`cases`] order.
fn fixture_records() -> (String, Vec<Vec<String>>) {
    let path = fixture(FIXTURE);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut lines = text.lines().filter(|l| !l.starts_with('#'));
    let version = lines
        .next()
        .and_then(|l| l.strip_prefix("nbdkit "))
        .unwrap_or_else(|| panic!("{path}: no `nbdkit VERSION` line"))
        .to_owned();
    let mut records: Vec<Vec<String>> = Vec::new();
    for line in lines {
        match records.last_mut() {
            Some(record) if line.starts_with("  ") => record.push(line.to_owned()),
            _ => records.push(vec![line.to_owned()]),
        }
    }
    (version, records)
}

/// Asserts that `got` (records of `cases`, only those `which` keeps) are the fixture's, but for
/// those `excused` (the case, the fixture's record, `got`'s), naming the first differences.
/// Returns how many were compared and how many were excused.
#[track_caller]
fn assert_recorded(
    what: &str,
    cases: &[(Kind, String)],
    got: &[Vec<String>],
    which: impl Fn(Kind) -> bool,
    excused: impl Fn(&str, &[String], &[String]) -> bool,
) -> (usize, usize) {
    let (_, recorded) = fixture_records();
    assert_eq!(
        recorded.len(),
        cases.len(),
        "the fixture has a record per case: write it again ({WRITE_ENV}=1 on nbdkit 1.48)"
    );
    let (mut compared, mut excuses) = (0, 0);
    let mut differ = Vec::new();
    for (((kind, value), want), got) in cases.iter().zip(&recorded).zip(got) {
        if !which(*kind) {
            continue;
        }
        compared += 1;
        if want == got {
            continue;
        }
        if excused(value, want, got) {
            excuses += 1;
            continue;
        }
        differ.push(format!(
            "the fixture (nbdkit 1.48.1):\n    {}\n  {what}:\n    {}",
            want.join("\n    "),
            got.join("\n    ")
        ));
    }
    assert!(
        differ.is_empty(),
        "{} of {compared} records differ from nbdkit 1.48.1's ({what}, nbdkit {}):\n  {}",
        differ.len(),
        nbdkit_version(),
        differ[..differ.len().min(20)].join("\n  ")
    );
    (compared, excuses)
}

/// No difference is excused.
fn none(_: &str, _: &[String], _: &[String]) -> bool {
    false
}

/// Whether `s` has a decimal number followed by an exponent letter without digits (`1e`,
/// `4E%`, `1e+/2`, `1ems`): how C's `%lg` reads that is the C library's, and glibc's changed.
/// Debian forky's glibc 2.43, under nbdkit 1.48.1, refuses the number, as ISO C says; Debian
/// 12's 2.36 and 13's 2.41 read the digits before the letter and go on after it (`1ems` is
/// 1 ms), and the fallback, which calls the C library's `sscanf` as nbdkit does, reads it as the
/// C library under it does (`parsers.rs` holds it to the nbdkit on the same C library).
fn dangling_exponent(s: &str) -> bool {
    let b = s.as_bytes();
    (1..b.len()).any(|i| {
        let start = b[..i]
            .iter()
            .rposition(|c| !(c.is_ascii_hexdigit() || matches!(c, b'.' | b'x' | b'X')))
            .map_or(0, |p| p + 1);
        let hexadecimal = b[start..i].iter().any(|c| matches!(c, b'x' | b'X'));
        let rest = &b[i + 1..];
        let rest = rest
            .strip_prefix(b"+")
            .or_else(|| rest.strip_prefix(b"-"))
            .unwrap_or(rest);
        matches!(b[i], b'e' | b'E')
            && (b[i - 1].is_ascii_digit() || b[i - 1] == b'.')
            && !hexadecimal
            && !rest.first().is_some_and(u8::is_ascii_digit)
    })
}

/// On the older C libraries under nbdkit 1.32 and 1.42 (see [`dangling_exponent`]): a number
/// with a dangling exponent that nbdkit 1.48.1 refused and the fallback read.
fn older_c_library_reads(value: &str, want: &[String], got: &[String]) -> bool {
    dangling_exponent(value) && want[0].ends_with(" = Err(EINVAL)") && got[0].contains(" = Ok(")
}

#[test]
fn the_fallbacks_answer_as_nbdkit_1_48_does() {
    let cases = cases();
    if nbdkit_at_least(&[1, 48]) {
        let live = in_nbdkit(&cases, &[]);
        if std::env::var_os(WRITE_ENV).is_some_and(|v| v == "1") {
            let mut text = header(nbdkit_version());
            for line in live.iter().flatten() {
                text += line;
                text += "\n";
            }
            std::fs::write(fixture(FIXTURE), text).expect("write the fixture");
            eprintln!("wrote {}", fixture(FIXTURE));
        }
        // The fixture is this nbdkit's answers, to the line.
        let (version, _) = fixture_records();
        assert_eq!(
            version,
            nbdkit_version(),
            "the fixture records another nbdkit: write it again ({WRITE_ENV}=1)"
        );
        let (n, _) = assert_recorded("the running nbdkit's own", &cases, &live, |_| true, none);
        // And the shim's fallbacks, forced, answer the same in the same nbdkit.
        let forced = in_nbdkit(&cases, &["-D", "rustshim.fallback=1"]);
        let (m, _) = assert_recorded(
            "the shim's fallbacks",
            &cases,
            &forced,
            Kind::has_fallback,
            none,
        );
        eprintln!(
            "nbdkit {}: {n} records, then {m} through the fallbacks, as recorded",
            nbdkit_version()
        );
    } else {
        assert!(
            std::env::var_os(WRITE_ENV).is_none(),
            "the fixture records nbdkit 1.48.1: write it on that leg \
             ({WRITE_ENV}=1 cargo xtask test --nbdkit 1.48 -- --test plugins nbdkit_148_answers)"
        );
        let forced = in_nbdkit(&cases, &["-D", "rustshim.fallback=1"]);
        let (m, excused) = assert_recorded(
            "the shim's fallbacks",
            &cases,
            &forced,
            Kind::has_fallback,
            older_c_library_reads,
        );
        eprintln!(
            "nbdkit {}: {m} records through the fallbacks, all as nbdkit 1.48.1 recorded them \
             but {excused} numbers with a dangling exponent, which this C library reads",
            nbdkit_version()
        );
    }
}

#[test]
fn the_plugin_apis_parsers_outside_nbdkit_answer_as_nbdkit_1_48_does() {
    let cases = cases();
    let got: Vec<Vec<String>> = cases
        .iter()
        .map(|(kind, value)| match kind {
            Kind::Size | Kind::Bool => here(*kind, value),
            _ => Vec::new(),
        })
        .collect();
    let (n, _) = assert_recorded("outside nbdkit", &cases, &got, |k| !k.has_fallback(), none);
    assert_eq!(n, SIZE_INPUTS + bool_inputs().len());
}

/// The fixture is not vacuous: every kind is there, accepted and refused, with nbdkit's
/// messages and dumps.
#[test]
fn the_fixture_records_both_answers_of_every_function() {
    let cases = cases();
    let (version, records) = fixture_records();
    assert_eq!(version, "1.48.1");
    assert_eq!(records.len(), cases.len());
    for kind in Kind::ALL {
        let of_kind: Vec<&Vec<String>> = cases
            .iter()
            .zip(&records)
            .filter(|((k, _), _)| *k == kind)
            .map(|(_, r)| r)
            .collect();
        let ok = of_kind.iter().filter(|r| r[0].contains(" = Ok(")).count();
        let err = of_kind.iter().filter(|r| r[0].contains(" = Err(")).count();
        let logged = of_kind.iter().filter(|r| r.len() > 1).count();
        // A dump cannot fail.
        assert!(
            ok > 0 && (err > 0 || kind == Kind::Hexdump),
            "{kind:?}: {ok} accepted, {err} refused"
        );
        assert!(logged >= err, "{kind:?}: {logged} logged, {err} refused");
    }
}
