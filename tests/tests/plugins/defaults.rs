//! A Rust plugin that leaves callbacks out must look to a client exactly like a plugin nbdkit
//! serves directly that leaves the same callbacks out. The oracle is nbdkit's own python plugin
//! serving a twin of each variant (tests/fixtures/NAME.py, same size and data): what `nbdinfo`
//! reports, the capabilities nbdkit settles on (the log filter's Connect line) and the outcome
//! of every kind of request must be the same.

use rustshim_tests::*;

/// The variants of the test plugin (plugins/test/examples), each with a python twin.
const VARIANTS: [&str; 4] = ["minimal", "readwrite", "zero_enotsup", "allops"];

/// nbdkit serving variant `name` through the shim.
fn shim_twin(name: &str) -> ServerBuilder {
    shim_nbdkit().arg(variant(name))
}

/// nbdkit serving the python twin of `name`.
fn python_twin(name: &str) -> ServerBuilder {
    ServerBuilder::new()
        .without_shim()
        .timeout(TIMEOUT)
        .args(["python".to_string(), fixture(&format!("{name}.py"))])
}

/// `nbdinfo OPTIONS --json -- [ NBDKIT ]`, without the fields that name the export.
fn nbdinfo_json(options: &[&str], nbdkit: &ServerBuilder) -> String {
    let out = run(command("nbdinfo")
        .args(options)
        .args(["--json", "--", "["])
        .args(argv(nbdkit))
        .arg("]"))
    .ok();
    out.stdout
        .lines()
        .filter(|l| {
            !["\"export-name\"", "\"description\"", "\"uri\""]
                .iter()
                .any(|f| l.contains(f))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn nbdinfo_sees_the_same_export_as_with_the_python_twin() {
    for name in VARIANTS {
        let shim = nbdinfo_json(&[], &shim_twin(name));
        let python = nbdinfo_json(&[], &python_twin(name));
        assert!(shim.contains("\"export-size\""), "{shim}");
        assert_eq!(
            shim, python,
            "{name}: shim (left) and python twin (right) differ"
        );
        // Without list_exports and default_export: the list is the default export, "".
        let shim = nbdinfo_json(&["--list"], &shim_twin(name));
        let python = nbdinfo_json(&["--list"], &python_twin(name));
        assert!(shim.contains("\"export-size\""), "{shim}");
        assert_eq!(
            shim, python,
            "{name} --list: shim (left) and python twin (right) differ"
        );
        let listed = run(command("nbdinfo")
            .args(["--list", "--json", "--", "["])
            .args(argv(&shim_twin(name)))
            .arg("]"))
        .ok()
        .stdout;
        assert_eq!(
            json_query(&listed, r#"[e["export-name"] for e in j["exports"]]"#),
            r#"[""]"#
        );
    }
}

#[test]
fn nbdkit_settles_on_the_same_capabilities_as_with_the_python_twin() {
    let dir = temp_dir("defaults-log");
    for name in VARIANTS {
        let mut lines = Vec::new();
        for (tag, nbdkit) in [("shim", shim_twin(name)), ("python", python_twin(name))] {
            let log = dir.join(format!("{name}-{tag}.log"));
            let nbdkit = nbdkit
                .nbdkit_arg("--filter=log")
                .arg(format!("logfile={}", log.display()));
            run(command("nbdinfo")
                .args(["--size", "--", "["])
                .args(argv(&nbdkit))
                .arg("]"))
            .ok();
            lines.push(connect_line(&log));
        }
        assert!(lines[0].contains(" write="), "{}", lines[0]);
        assert_eq!(
            lines[0], lines[1],
            "{name}: shim (left) and python twin (right)"
        );
    }
}

/// Every kind of request (`tests/scripts/every_request.py`), with libnbd's client-side checks
/// off so the server answers even those it did not advertise.
#[test]
fn every_request_gets_the_same_answer_as_with_the_python_twin() {
    for name in VARIANTS {
        let mut outputs = Vec::new();
        for nbdkit in [shim_twin(name), python_twin(name)] {
            let out = python_script("every_request.py", &stdio(nbdkit)).ok();
            outputs.push(out.stdout);
        }
        assert!(outputs[0].contains("pread "), "{}", outputs[0]);
        assert_eq!(
            outputs[0], outputs[1],
            "{name}: shim (left) and python twin (right)"
        );
    }
}

/// Zeroes 128 MiB over data and reads back at marks below and beyond 64 MiB (and just past
/// the zeroed range, which must keep its data). Prints one True/False per mark.
const ZERO_128_MIB: &str = r#"
h.connect_command(argv)
M = 1 << 20
marks = (0, 10 * M, 63 * M, 64 * M, 65 * M, 100 * M, 128 * M - 4096, 128 * M)
for off in marks:
    h.pwrite(b"\xab" * 4096, off)
h.zero(128 * M, 0)
print(" ".join(str(h.pread(4096, off) == bytes(4096)) for off in marks))
h.shutdown()
"#;

/// The command line of `nbdkit` for libnbd's `connect_command`: over stdio, exiting with it.
fn stdio(nbdkit: ServerBuilder) -> Vec<String> {
    argv(&nbdkit.nbdkit_args(["-s", "--exit-with-parent"]))
}

fn zero_128_mib(nbdkit: ServerBuilder) -> String {
    let argv = stdio(nbdkit);
    python(&format!("argv = {argv:?}\nh = nbd.NBD()\n{ZERO_128_MIB}"))
        .ok()
        .stdout
        .trim()
        .to_owned()
}

#[test]
fn zeroing_past_64_mib_is_correct_when_zero_is_missing_or_declines() {
    let correct = "True True True True True True True False";
    // zero declines with ENOTSUP: the shim writes the zeroes itself.
    assert_eq!(zero_128_mib(shim_twin("zero_enotsup")), correct);
    // No zero at all: nbdkit emulates it with pwrite (can_zero is false).
    assert_eq!(zero_128_mib(shim_twin("readwrite")), correct);
    assert_eq!(zero_128_mib(python_twin("readwrite")), correct);
}

/// Why the shim does not leave a declined zero to nbdkit: nbdkit's own fallback zeroes only the
/// first 64 MiB of each request, until its fix (commit 20b23fc9, "server: Fix .zero fallback
/// path") in 1.45.1 and, backported, 1.42.6; 1.43.x and 1.44.x do not have it.
#[test]
fn nbdkits_own_fallback_for_a_declined_zero_stops_at_64_mib_where_unfixed() {
    let fixed = (nbdkit_at_least(&[1, 42, 6]) && !nbdkit_at_least(&[1, 43]))
        || nbdkit_at_least(&[1, 45, 1]);
    let expected = if fixed {
        "True True True True True True True False"
    } else {
        "True True True False False False False False"
    };
    assert_eq!(
        zero_128_mib(python_twin("zero_enotsup")),
        expected,
        "nbdkit {} (fixed fallback: {fixed})",
        nbdkit_version()
    );
}

/// Without `config`, any parameter is refused before serving (as nbdkit refuses one for a
/// plugin without `.config`), with a message saying why.
#[test]
fn a_plugin_without_config_refuses_parameters() {
    let out = nbdkit_run(&[variant("minimal"), "foo=bar".into()], "echo served").failed();
    assert!(!out.stdout.contains("served"));
    assert!(
        out.stderr
            .contains("plugin 'minimal' takes no parameters, but was given 'foo=bar'"),
        "{}",
        out.stderr
    );
    let out = nbdkit_run(&[variant("minimal"), "1M".into()], "echo served").failed();
    assert!(
        out.stderr.contains(
            "plugin 'minimal' has no magic config key, so the bare argument '1M' means nothing"
        ),
        "{}",
        out.stderr
    );
    // The python twin is refused too.
    let out = run_nbdkit(python_twin("minimal").nbdkit_args(["-U", "-"]).args([
        "foo=bar",
        "--run",
        "echo served",
    ]))
    .failed();
    assert!(
        out.stderr
            .contains("this plugin does not need command line configuration"),
        "{}",
        out.stderr
    );
}
