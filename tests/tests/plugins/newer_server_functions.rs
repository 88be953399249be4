//! The server functions of nbdkit 1.46 and 1.48 (`debug_hexdump`, `debug_hexdiff`, `name`,
//! `timestamp`) and `nbdkit_has`, on every nbdkit: nbdkit's own where the running server has
//! them, the shim's where it does not, and the two held to the same output. With
//! `-D rustshim.fallback=1` the shim uses its own version even where nbdkit has one, so on
//! nbdkit 1.48 (`cargo xtask test --nbdkit 1.48`) each fallback is compared with nbdkit itself;
//! on older ones `nbdkit_148_answers.rs` holds the hexdump and hexdiff fallbacks to nbdkit
//! 1.48.1's recorded output.

use nbdkit_rustshim_plugin::fallback;
use rustshim_tests::*;

const HEXDUMP_SINCE: [u32; 2] = [1, 46];
const NAME_OPTION_SINCE: [u32; 2] = [1, 46];
const HEXDIFF_NAME_TIMESTAMP_SINCE: [u32; 2] = [1, 48];

/// Runs the test plugin with `-v` and these keys (and nbdkit options before the shim); returns
/// the trace and nbdkit's stderr.
fn serve(options: &[&str], keys: &[&str]) -> (Trace, String) {
    let t = Trace::new("newer");
    let mut args = vec![test_plugin(), t.arg()];
    args.extend(keys.iter().map(|k| k.to_string()));
    let out = nbdkit_run_with(options, &args, "nbdinfo --size \"$uri\"").ok();
    assert_eq!(out.stdout.trim(), "1048576");
    (t, out.stderr)
}

/// The debug lines that carry `prefix`, from the prefix on.
fn debug_lines(stderr: &str, prefix: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|line| line.split_once("debug: ").map(|(_, rest)| rest))
        .filter(|rest| rest.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 26
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b' ',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            _ => c.is_ascii_digit(),
        })
}

#[test]
fn hexdump_and_hexdiff_match_nbdkits_format_natively_and_in_the_fallback() {
    let keys = [
        "hexdump=0:1234567812345678123456781234567",
        "hexdump=7:ab\u{7f} zZ~ with a tab\there",
        "hexdump=18446744073709551614:xyz",
        "hexdiff=3:12345678123456781234567812345678xxxxxxxxxxxxxxxxxxxx:12345678987654321234567812345670xxxxxxxxxxxxxxxxxxxy",
        "hexdiff=0:AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCC:AAAAAAAAAAAAAAAAbbbbbbbbbbbbbbbbCCCCCCCCCCCCCCCC",
    ];
    let mut expected_dump = Vec::new();
    let mut expected_diff = Vec::new();
    for key in keys {
        let (kind, rest) = key.split_once('=').unwrap();
        let (start, text) = rest.split_once(':').unwrap();
        let start: u64 = start.parse().unwrap();
        if kind == "hexdump" {
            expected_dump.extend(fallback::hexdump(text.as_bytes(), "hx: ", start));
        } else {
            let (a, b) = text.split_once(':').unwrap();
            expected_diff.extend(fallback::hexdiff(a.as_bytes(), b.as_bytes(), "hd: ", start));
        }
    }
    for options in [&["-v"][..], &["-v", "-D", "rustshim.fallback=1"]] {
        let (t, stderr) = serve(options, &keys);
        assert_eq!(
            debug_lines(&stderr, "hx: "),
            expected_dump,
            "{options:?}\n{stderr}"
        );
        assert_eq!(
            debug_lines(&stderr, "hd: "),
            expected_diff,
            "{options:?}\n{stderr}"
        );
        for line in t.lines().iter().filter(|l| l.starts_with("debug_hex")) {
            assert!(line.ends_with(" = Ok(())"), "{line}");
        }
    }
    // Buffers of different lengths are refused.
    let t = Trace::new("hexdiff-lengths");
    let out = nbdkit_run(
        &[test_plugin(), t.arg(), "hexdiff=0:abc:abcd".into()],
        "true",
    )
    .ok();
    assert_eq!(
        t.result("debug_hexdiff(\"0:abc:abcd\")"),
        "Err(EINVAL: nbdkit_debug_hexdiff failed)"
    );
    assert!(
        out.stderr
            .contains("nbdkit_debug_hexdiff: the buffers differ in length (3 and 4 bytes)"),
        "{}",
        out.stderr
    );
}

#[test]
fn name_is_nbdkits_name_option() {
    let (t, _) = serve(&[], &[]);
    assert_eq!(t.result("name"), "Ok(None)");
    if nbdkit_at_least(&NAME_OPTION_SINCE) {
        for options in [
            &["--name=disk7"][..],
            &["--name=disk7", "-D", "rustshim.fallback=1"],
        ] {
            let (t, _) = serve(options, &[]);
            assert_eq!(t.result("name"), r#"Ok(Some("disk7"))"#, "{options:?}");
        }
    } else {
        // Before 1.46 nbdkit has no --name, so no name: the fallback's answer stands alone.
        let (t, _) = serve(&["-D", "rustshim.fallback=1"], &[]);
        assert_eq!(t.result("name"), "Ok(None)");
    }
}

/// A timestamp in a connection's thread everywhere; outside one (in `get_ready`) nbdkit 1.48.1's
/// own gives `!`, the shim's the time.
#[test]
fn timestamps_in_nbdkits_format() {
    let native = nbdkit_at_least(&HEXDIFF_NAME_TIMESTAMP_SINCE);
    for forced in [false, true] {
        let options: &[&str] = if forced {
            &["-D", "rustshim.fallback=1"]
        } else {
            &[]
        };
        let (t, _) = serve(options, &[]);
        let in_open = t.result("timestamp(open)");
        let stamp = in_open.trim_start_matches("Ok(\"").trim_end_matches("\")");
        assert!(is_timestamp(stamp), "{in_open}");
        let in_get_ready = t.result("timestamp");
        if native && !forced {
            assert_eq!(in_get_ready, r#"Ok("!")"#);
        } else {
            let stamp = in_get_ready
                .trim_start_matches("Ok(\"")
                .trim_end_matches("\")");
            assert!(is_timestamp(stamp), "{in_get_ready}");
        }
    }
}

#[test]
fn nbdkit_has_says_which_functions_the_running_nbdkit_has() {
    let cases: [(&str, [u32; 2]); 10] = [
        ("parse_size", [1, 0]),
        ("disconnect", [1, 34]),
        ("parse_probability", [1, 36]),
        ("peer_security_context", [1, 36]),
        ("parse_delay", [1, 40]),
        ("peer_tls_dn", [1, 40]),
        ("debug_hexdump", HEXDUMP_SINCE),
        ("debug_hexdiff", HEXDIFF_NAME_TIMESTAMP_SINCE),
        ("name", HEXDIFF_NAME_TIMESTAMP_SINCE),
        ("timestamp", HEXDIFF_NAME_TIMESTAMP_SINCE),
    ];
    let keys: Vec<String> = cases
        .iter()
        .map(|(f, _)| format!("nbdkit_has={f}"))
        .chain(["nbdkit_has=no_such_function".to_string()])
        .collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let (t, _) = serve(&[], &keys);
    let dump = nbdkit(&[test_plugin(), "--dump-plugin".into()]).ok().stdout;
    let optional = dump
        .lines()
        .find_map(|l| l.strip_prefix("rustshim_server_optional_functions="))
        .expect("--dump-plugin lists the optional functions")
        .to_owned();
    for (function, since) in cases {
        let has = nbdkit_at_least(&since);
        assert_eq!(
            t.result(&format!("nbdkit_has({function:?})")),
            format!("Ok({has})"),
            "{function} on nbdkit {}",
            nbdkit_version()
        );
        if since > [1, 32] {
            assert_eq!(
                optional.split(',').any(|f| f == function),
                has,
                "{optional}"
            );
        }
    }
    assert_eq!(
        t.result("nbdkit_has(\"no_such_function\")"),
        "Err(ENOENT: nbdkit_no_such_function is not a server function the shim knows)"
    );
}
