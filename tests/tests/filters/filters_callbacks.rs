//! What a Rust filter's callbacks get, on whichever nbdkit the suite runs against: every callback
//! with its arguments (the `test` filter traces them), the pass-through defaults against no
//! filter at all, failures and panics in each callback, two Rust filters stacked, the thread
//! model, `--dump-plugin`, and the context and extents functions.

use std::path::Path;

use rustshim_tests::filters::*;
use rustshim_tests::*;

/// `nbdkit --filter=SHIM PLUGIN... filter=test tf-trace=TRACE KEYS...`.
fn traced(plugin: &[&str], trace: &Path, keys: &[&str]) -> Vec<String> {
    let mut args = vec![rust_filter()];
    args.extend(plugin.iter().map(|s| s.to_string()));
    args.push(filter_key("test"));
    args.push(format!("tf-trace={}", trace.display()));
    args.extend(keys.iter().map(|s| s.to_string()));
    nbdkit_words(&args)
}

/// Lines of the trace that start with `prefix`.
fn lines_of<'a>(trace: &'a [String], prefix: &str) -> Vec<&'a str> {
    trace
        .iter()
        .map(String::as_str)
        .filter(|l| l.starts_with(prefix))
        .collect()
}

#[test]
fn every_callback_is_reached_with_its_arguments() {
    let dir = temp_dir("trace");
    let trace = dir.join("trace");
    let args = traced(&["memory", "1M"], &trace, &[]);
    let script = "
h.pwrite(b'x' * 512, 0, nbd.CMD_FLAG_FUA)
h.pread(512, 4096)
h.zero(512, 512)
h.zero(512, 1024, nbd.CMD_FLAG_NO_HOLE)
h.zero(512, 1536, nbd.CMD_FLAG_FAST_ZERO)
h.trim(1024, 8192)
h.flush()
h.cache(2048, 0)
h.block_status(65536, 0, lambda *a: 0)
h.block_status(65536, 0, lambda *a: 0, nbd.CMD_FLAG_REQ_ONE)
";
    nbdsh_with(&args, script).ok();
    let t = trace_lines(&trace);
    for line in [
        "test load",
        "test config key=size value=1M",
        "test config_complete",
        "test get_ready thread_model=parallel",
        "test after_fork",
        "test preconnect readonly=false",
        "test open readonly=false export=\"\" is_tls=false connection=1",
        "test prepare readonly=false connection=1",
        "test prepare get_size -> 1048576",
        "test get_size -> 1048576",
        "test can_write -> true",
        "test pwrite count=512 offset=0 flags=FUA",
        "test pread count=512 offset=4096 flags=(none)",
        "test zero count=512 offset=512 flags=MAY_TRIM",
        "test zero count=512 offset=1024 flags=(none)",
        "test zero count=512 offset=1536 flags=MAY_TRIM|FAST_ZERO",
        "test trim count=1024 offset=8192 flags=(none)",
        "test flush flags=(none)",
        "test cache count=2048 offset=0 flags=(none)",
        "test extents count=65536 offset=0 flags=(none)",
        "test extents count=65536 offset=0 flags=REQ_ONE",
        "test finalize connection=1",
        "test close connection=1",
        "test cleanup",
        "test unload",
    ] {
        assert!(
            t.iter().any(|l| l == line),
            "no '{line}' in the trace:\n{}",
            t.join("\n")
        );
    }
    // nbdkit ≥ 1.44 tells the filter the layer below's thread model.
    let expected = if nbdkit_at_least(&[1, 44]) {
        "parallel"
    } else {
        "unknown"
    };
    assert_eq!(
        lines_of(&t, "test thread_model"),
        [format!("test thread_model next={expected}")]
    );
    for query in [
        "can_flush",
        "is_rotational",
        "can_trim",
        "can_zero",
        "can_fast_zero",
        "can_extents",
        "can_fua",
        "can_multi_conn",
        "can_cache",
        "block_size",
    ] {
        assert_eq!(
            lines_of(&t, &format!("test {query} -> ")).len(),
            1,
            "{query}: {}",
            t.join("\n")
        );
    }
    // Order: configured, readied, served, closed, unloaded.
    let at = |line: &str| t.iter().position(|l| l.starts_with(line)).unwrap();
    assert!(at("test config_complete") < at("test get_ready"));
    assert!(at("test get_ready") < at("test after_fork"));
    assert!(at("test open") < at("test prepare") && at("test prepare") < at("test pwrite"));
    assert!(at("test finalize") < at("test close") && at("test close") < at("test cleanup"));

    // A read-only client, the export list and the description.
    std::fs::remove_file(&trace).unwrap();
    let mut ro = args.clone();
    ro.insert(1, "-r".into());
    nbdinfo_with(&["--list"], &ro).ok();
    let t = trace_lines(&trace);
    for line in [
        "test preconnect readonly=true",
        "test list_exports readonly=true is_tls=false",
        "test list_exports -> [Export { name: \"\", description: None }]",
    ] {
        assert!(
            t.iter().any(|l| l == line),
            "no '{line}':\n{}",
            t.join("\n")
        );
    }
}

/// The rustshim test plugin with unusual answers, so that defaults that passed nothing on would
/// show.
fn odd_plugin() -> Vec<String> {
    [
        shim().display().to_string(),
        format!("plugin={}", plugin("test").display()),
        "size=3M".into(),
        "can_fua=emulate".into(),
        "can_cache=none".into(),
        "can_trim=false".into(),
        "can_multi_conn=true".into(),
        "is_rotational=true".into(),
        "block_size=512:4096:65536".into(),
        "description=an odd export".into(),
        "exports=first:the first,second".into(),
        "default_export=second".into(),
    ]
    .into()
}

#[test]
fn pass_through_defaults_match_no_filter_at_all() {
    let plugin = odd_plugin();
    let none = nbdkit_words(&plugin);
    let mut with = vec![rust_filter()];
    with.extend(plugin.iter().cloned());
    with.push(filter_key("passthrough"));
    let with = nbdkit_words(&with);
    for options in [
        &[][..],
        &["--list"],
        &["--map"],
        &["--can", "fua"],
        &["--is", "rotational"],
    ] {
        let (a, b) = (nbdinfo_with(options, &none), nbdinfo_with(options, &with));
        assert_eq!(a.status.code(), b.status.code(), "{options:?}");
        let strip = |s: &str| -> Vec<String> {
            s.lines()
                .filter(|l| !l.contains("uri:"))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(strip(&b.stdout), strip(&a.stdout), "nbdinfo {options:?}");
    }
    // The same through the test filter's explicit calls to the layer below.
    let dir = temp_dir("explicit");
    let mut explicit = vec![rust_filter()];
    explicit.extend(plugin.iter().cloned());
    explicit.extend([
        filter_key("test"),
        format!("tf-trace={}", dir.join("t").display()),
    ]);
    let explicit = nbdkit_words(&explicit);
    let info = |a: &[String]| -> Vec<String> {
        nbdinfo_with(&["--list"], a)
            .ok()
            .stdout
            .lines()
            .filter(|l| !l.contains("uri:"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(info(&explicit), info(&none));
}

/// What the client sees for each request, after the filter was told to fail or panic in one.
const REQUESTS: &str = "
def outcome(f):
    try:
        f()
        return 'ok'
    except nbd.Error as e:
        return e.string.split(': ')[-1]
for name, f in [
    ('pread', lambda: h.pread(512, 0)),
    ('pwrite', lambda: h.pwrite(b'x' * 512, 0)),
    ('flush', lambda: h.flush()),
    ('trim', lambda: h.trim(512, 0)),
    ('zero', lambda: h.zero(512, 0)),
    ('cache', lambda: h.cache(512, 0)),
    ('extents', lambda: h.block_status(512, 0, lambda *a: 0)),
]:
    print(name, outcome(f))
";

#[test]
fn a_failure_or_panic_in_a_data_callback_fails_that_request_only() {
    let dir = temp_dir("faults");
    let trace = dir.join("t");
    for op in [
        "pread", "pwrite", "flush", "trim", "zero", "cache", "extents",
    ] {
        for (key, seen, logged) in [
            (
                format!("tf-fail={op}:ENOSPC"),
                "No space left on device",
                format!("test filter: injected failure in {op}"),
            ),
            (
                format!("tf-panic={op}"),
                "Input/output error",
                format!("test: panic in {op}: test filter: injected panic in {op}"),
            ),
        ] {
            let out = nbdsh_with(&traced(&["memory", "1M"], &trace, &[&key]), REQUESTS).ok();
            for line in out.stdout.lines() {
                let expected = if line.split(' ').next() == Some(op) {
                    seen
                } else {
                    "ok"
                };
                assert!(line.ends_with(expected), "{key}: {line}\n{}", out.stdout);
            }
            assert_eq!(out.stdout.lines().count(), 7, "{key}: {}", out.stdout);
            assert!(out.stderr.contains(&logged), "{key}: {}", out.stderr);
            assert!(!out.stderr.contains("Assertion"), "{}", out.stderr);
        }
    }
}

#[test]
fn a_failure_or_panic_before_serving_stops_nbdkit_with_one_line() {
    let dir = temp_dir("early");
    let trace = dir.join("t");
    for callback in ["config_complete", "thread_model", "get_ready", "after_fork"] {
        for key in [
            format!("tf-fail={callback}"),
            format!("tf-panic={callback}"),
        ] {
            // Served to one client (`-s`): with `--run`, some nbdkits report the exit status of
            // the command even when the server that ran `after_fork` failed.
            let out = nbdsh_with(
                &traced(&["memory", "1M"], &trace, &[&key]),
                "print(h.get_size())",
            )
            .failed();
            let what = if key.starts_with("tf-fail") {
                "failure"
            } else {
                "panic"
            };
            assert!(
                out.stderr
                    .contains(&format!("injected {what} in {callback}")),
                "{key}: {}",
                out.stderr
            );
            assert!(!out.stderr.contains("panicked at"), "{}", out.stderr);
        }
    }
}

#[test]
fn a_failure_or_panic_in_a_connection_callback_fails_that_connection() {
    let dir = temp_dir("conn");
    let trace = dir.join("t");
    for callback in [
        "preconnect",
        "open",
        "prepare",
        "get_size",
        "can_write",
        "can_zero",
        "block_size",
    ] {
        for key in [
            format!("tf-fail={callback}"),
            format!("tf-panic={callback}"),
        ] {
            let out = nbdsh_with(
                &traced(&["memory", "1M"], &trace, &[&key]),
                "print(h.get_size())",
            );
            assert!(
                !out.status.success(),
                "{key}: the connection was served:\n{}",
                out.stdout
            );
            assert!(
                out.stderr.contains(&format!("in {callback}")),
                "{key}: {}",
                out.stderr
            );
            assert!(!out.stderr.contains("Assertion"), "{}", out.stderr);
        }
    }
}

#[test]
fn two_rust_filters_stack_each_with_its_own_state() {
    let dir = temp_dir("stacked");
    let disk = dir.join("disk");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let (outer, inner) = (dir.join("outer"), dir.join("inner"));
    let args = nbdkit_words(&[
        rust_filter(),
        rust_filter(),
        "file".into(),
        disk.display().to_string(),
        filter_key("test"),
        "tf-label=outer".into(),
        "tf-xor=1".into(),
        format!("tf-trace={}", outer.display()),
        filter_key("test"),
        "tf-label=inner".into(),
        "tf-xor=2".into(),
        format!("tf-trace={}", inner.display()),
    ]);
    // Two connections in turn: each instance counts its own.
    let server = serve_words(&args);
    let out = server.client(
        "for i in range(2):\n    h = nbd.NBD()\n    h.connect_uri(URI)\n    h.pwrite(bytes(range(256)), 0)\n    print(h.pread(256, 0) == bytes(range(256)))\n    h.shutdown()",
    );
    assert_eq!(out.ok().stdout, "True\nTrue\n");
    server.terminate().unwrap();
    drop(server);
    let stored = std::fs::read(&disk).unwrap();
    let expected: Vec<u8> = (0..=255u8).map(|b| b ^ 3).collect();
    assert_eq!(
        &stored[..256],
        &expected[..],
        "both filters changed the data"
    );
    let (o, i) = (trace_lines(&outer), trace_lines(&inner));
    assert!(o.iter().all(|l| l.starts_with("outer ")) && i.iter().all(|l| l.starts_with("inner ")));
    assert!(o.iter().any(|l| l.contains("config key=tf-xor value=1")));
    assert!(
        !o.iter().any(|l| l.contains("value=2")),
        "the outer filter saw the inner's keys"
    );
    assert!(i.iter().any(|l| l.contains("config key=tf-xor value=2")));
    for t in [&o, &i] {
        let opens: Vec<&String> = t.iter().filter(|l| l.contains(" open ")).collect();
        assert_eq!(opens.len(), 2, "{t:?}");
        assert!(
            opens[0].ends_with("connection=1") && opens[1].ends_with("connection=2"),
            "{opens:?}"
        );
    }
    assert_eq!(lines_of(&o, "outer load").len(), 1);
    assert_eq!(lines_of(&i, "inner unload").len(), 1);
}

#[test]
fn more_rust_filters_than_the_shim_has_layers_are_refused_in_one_line() {
    let mut args: Vec<String> = (0..9).map(|_| rust_filter()).collect();
    args.extend(["memory".into(), "1M".into(), "--run".into(), "true".into()]);
    let out = nbdkit_plain(&args).failed();
    assert!(
        out.stderr.contains("at most 8 Rust filters can be stacked"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_thread_model_is_the_stricter_of_the_filters_and_the_layer_belows() {
    let dir = temp_dir("model");
    let trace = dir.join("t");
    let mut args = traced(
        &["memory", "1M"],
        &trace,
        &["tf-thread-model=serialize_requests"],
    );
    args.push("--dump-plugin".into());
    let out = nbdkit_plain(&args[1..]).ok();
    assert!(
        out.stdout
            .lines()
            .any(|l| l == "thread_model=serialize_requests"),
        "{}",
        out.stdout
    );
    // A stricter plugin wins over a looser filter.
    let mut args = traced(
        &[
            &shim().display().to_string(),
            &format!("plugin={}", plugin("test").display()),
            "thread_model=serialize_connections",
        ],
        &trace,
        &[],
    );
    args.push("--dump-plugin".into());
    let out = nbdkit_plain(&args[1..]).ok();
    assert!(
        out.stdout
            .lines()
            .any(|l| l == "thread_model=serialize_connections"),
        "{}",
        out.stdout
    );
    let expected = if nbdkit_at_least(&[1, 44]) {
        "serialize_connections"
    } else {
        "unknown"
    };
    assert!(trace_lines(&trace)
        .iter()
        .any(|l| l == &format!("test thread_model next={expected}")));
}

#[test]
fn dump_plugin_describes_the_rust_filter_from_nbdkit_1_36() {
    let dir = temp_dir("dump");
    let mut args = traced(&["memory", "1M"], &dir.join("t"), &[]);
    args.push("--dump-plugin".into());
    let out = nbdkit_plain(&args[1..]).ok();
    let has = |line: &str| out.stdout.lines().any(|l| l == line);
    // nbdkit 1.32's filter struct has no dump_plugin: only nbdkit's own lines.
    let newer = nbdkit_at_least(&[1, 36]);
    assert_eq!(has("rustshim_filter_name=test"), newer, "{}", out.stdout);
    assert_eq!(has("tf_dump=test"), newer, "{}", out.stdout);
    assert_eq!(has("rustshim_filter_has_pread=1"), newer);
    assert_eq!(has("rustshim_name=rustshim"), newer, "{}", out.stdout);
    assert!(has("name=memory"), "{}", out.stdout);
}

#[test]
fn context_functions_open_and_replace_the_layer_below() {
    let dir = temp_dir("contexts");
    let trace = dir.join("t");
    let args = traced(&["memory", "1M"], &trace, &["tf-contexts=true"]);
    let out = nbdsh_with(
        &args,
        "h.pwrite(b'ctx' * 100, 0)\nprint(h.pread(300, 0) == b'ctx' * 100)",
    )
    .ok();
    assert_eq!(out.stdout.trim(), "True");
    let t = trace_lines(&trace);
    for line in [
        "test after_fork context get_size -> 1048576",
        "test open set_next replaced=false",
    ] {
        assert!(
            t.iter().any(|l| l == line),
            "no '{line}':\n{}",
            t.join("\n")
        );
    }
}

#[test]
fn extents_full_answers_like_the_layer_below() {
    let dir = temp_dir("full");
    // A sparse file: data at 128K and 512K, holes elsewhere.
    let disk = dir.join("disk");
    let file = std::fs::File::create(&disk).unwrap();
    file.set_len(1 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    file.write_all_at(&[1u8; 65536], 131072).unwrap();
    file.write_all_at(&[2u8; 4096], 524288).unwrap();
    let plugin = ["file".to_string(), disk.display().to_string()];
    let map = |args: &[String]| nbdinfo_with(&["--map"], args).ok().stdout;
    let plain = map(&nbdkit_words(&plugin));
    assert!(plain.lines().count() >= 3, "the file has holes: {plain}");
    let plugin: Vec<&str> = plugin.iter().map(String::as_str).collect();
    let with = traced(&plugin, &dir.join("t"), &["tf-extents=full"]);
    assert_eq!(map(&with), plain);
    assert!(trace_lines(&dir.join("t"))
        .iter()
        .any(|l| l.starts_with("test extents full=")));
}

#[test]
fn a_failure_or_panic_in_the_other_callbacks_is_reported_and_contained() {
    let dir = temp_dir("others");
    let trace = dir.join("t");
    // (callback, how the client reaches it): the client fails, or nbdkit logs the message and
    // goes on, but nothing aborts.
    for (callback, options) in [
        ("list_exports", &["--list"][..]),
        ("default_export", &[][..]),
        ("export_description", &[][..]),
        ("finalize", &[][..]),
        ("close", &[][..]),
        ("cleanup", &[][..]),
        ("can_flush", &[][..]),
        ("is_rotational", &[][..]),
        ("can_trim", &[][..]),
        ("can_fast_zero", &[][..]),
        ("can_extents", &[][..]),
        ("can_fua", &[][..]),
        ("can_multi_conn", &[][..]),
        ("can_cache", &[][..]),
    ] {
        // `close` and `cleanup` return nothing: only a panic has something to report.
        let keys = match callback {
            "close" | "cleanup" => vec![format!("tf-panic={callback}")],
            _ => vec![
                format!("tf-fail={callback}"),
                format!("tf-panic={callback}"),
            ],
        };
        for key in keys {
            // Served as an admin runs it, then stopped with SIGTERM: nbdkit must still be
            // serving after the client, and exit with status 0.
            let server = serve_words(&traced(&["memory", "1M"], &trace, &[&key]));
            let out = run(command("nbdinfo").args(options).arg(server.uri()));
            assert!(
                server.is_running(),
                "{key}: nbdkit ended after the client:\n{}",
                server.log()
            );
            let stopped = server.stop().unwrap_or_else(|e| panic!("{key}: {e}"));
            let all = format!("{}{}{}", out.stdout, out.stderr, stopped.log);
            assert!(all.contains(&format!("in {callback}")), "{key}: {all}");
            assert!(
                !all.contains("Assertion") && !all.contains("panicked at"),
                "{key}: {all}"
            );
            assert!(
                stopped.status.success(),
                "{key}: nbdkit exited with {}:\n{all}",
                stopped.status
            );
        }
    }
    // A failing `config` stops nbdkit at the next key, with the filter's message.
    let mut args = traced(&["memory", "1M"], &trace, &["tf-fail=config", "tf-label=x"]);
    args.extend(["--run".into(), "true".into()]);
    let out = nbdkit_plain(&args[1..]).failed();
    assert!(
        out.stderr
            .contains("test filter: injected failure in config"),
        "{}",
        out.stderr
    );
}

#[test]
fn log_reaches_nbdkits_log_and_help_names_the_keys() {
    let dir = temp_dir("log");
    let mut args = traced(&["memory", "1M"], &dir.join("t"), &[]);
    args.insert(1, "-v".into());
    args.extend(["--run".into(), "true".into()]);
    let out = nbdkit_plain(&args[1..]).ok();
    assert!(
        out.stderr.contains("test filter: log from get_ready"),
        "{}",
        out.stderr
    );
    let help = nbdkit_plain(&[rust_filter(), "memory".into(), "--help".into()]).ok();
    for key in [
        "filter=PATH|NAME",
        "filter-reload=watch",
        "allow-insecure-filter=true",
    ] {
        assert!(help.stdout.contains(key), "{}", help.stdout);
    }
}
