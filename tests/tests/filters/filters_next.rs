//! What a Rust filter's calls to the layer below (`next.*`) give it, and the client, on whichever
//! nbdkit the suite runs against:
//!
//! * a request nbdkit would abort on (a write to a layer that cannot write, a request past its
//!   end, a flag or a request the layer below cannot take, `zero` failing with `ENOTSUP`
//!   without `FAST_ZERO`) fails with the errno README.md documents, and nbdkit keeps serving and
//!   exits with status 0 when stopped;
//! * the layer below's errno reaches the filter, and the client, unchanged.
//!
//! The `test` filter makes the requests (`tf-claim=`, `tf-past-end=`, `tf-pread-writes=`,
//! `tf-fail=`) and traces what `next` answered (`test pwrite -> Err(EROFS)`). nbdkit maps errnos
//! NBD cannot carry (`EROFS` becomes `EPERM`), so the trace shows what the filter got and the
//! client what it was sent.

use std::path::Path;

use rustshim_tests::filters::*;
use rustshim_tests::*;

/// The errno name each request ends with, one `NAME RESULT` line per request: `ok`, or the
/// errno of the `nbd.Error` the client got. Each request is a Python expression over `h`.
fn requests_script(requests: &[(&str, &str)]) -> String {
    let mut script = String::from(
        r#"
h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h.connect_uri(URI)
def seen(f):
    try:
        f()
        return 'ok'
    except nbd.Error as e:
        # libnbd gives the errno's name (or its number, in some versions).
        name = errno.errorcode.get(e.errno, e.errno) if isinstance(e.errno, int) else e.errno
        return (name or e.string).replace('EOPNOTSUPP', 'ENOTSUP')
"#,
    );
    for (name, expr) in requests {
        script.push_str(&format!("print({name:?}, seen(lambda: {expr}))\n"));
    }
    script.push_str("h.shutdown()\n");
    script
}

/// Serves `builder`'s command line, sends `requests` on one connection, then `later` on a new
/// one; returns what each request ended with (by name), the outcome of `later`, and, after
/// stopping nbdkit, its exit status and log.
fn serve_and_request(
    builder: ServerBuilder,
    requests: &[(&str, &str)],
    later: &str,
) -> (Vec<(String, String)>, String, rustshim_harness::Stopped) {
    let server = builder.start().unwrap_or_else(|e| panic!("{e}"));
    let out = server.client(&requests_script(requests)).ok();
    let seen: Vec<(String, String)> = out
        .stdout
        .lines()
        .map(|l| {
            let (name, result) = l.split_once(' ').unwrap();
            (name.to_owned(), result.to_owned())
        })
        .collect();
    assert_eq!(seen.len(), requests.len(), "{}", out.stdout);
    // nbdkit is still serving: a new connection's request succeeds.
    let later = server
        .client(&requests_script(&[("later", later)]))
        .ok()
        .stdout;
    let stopped = server.stop().unwrap_or_else(|e| panic!("{e}"));
    (seen, later.trim().to_owned(), stopped)
}

/// `below` with the test filter in front of it (the outermost of the filters added so far):
/// `[-r] --filter=SHIM ... PLUGIN filter=test tf-trace=TRACE KEYS...`.
fn through_test_filter(
    options: &[&str],
    below: ServerBuilder,
    trace: &Path,
    keys: &[&str],
) -> ServerBuilder {
    below
        .nbdkit_args(options)
        .rust_filter(filter("test"))
        .arg(format!("tf-trace={}", trace.display()))
        .args(keys)
}

/// The Rust test plugin (through the plugin shim) with these keys.
fn test_plugin_with(keys: &[&str]) -> ServerBuilder {
    Server::builder(plugin("test"))
        .shim(shim())
        .timeout(TIMEOUT)
        .args(keys)
}

/// nbdkit's own memory plugin, 1M.
fn memory() -> ServerBuilder {
    ServerBuilder::new()
        .shim(shim())
        .timeout(TIMEOUT)
        .without_shim()
        .args(["memory", "1M"])
}

/// Asserts each request's outcome, that the later request succeeded, that nbdkit exited with
/// status 0 and never hit one of its assertions, and that the trace has each of `traced`.
#[track_caller]
fn assert_refused(
    case: &str,
    (seen, later, stopped): (Vec<(String, String)>, String, rustshim_harness::Stopped),
    expected: &[(&str, &str)],
    trace: &Path,
    traced: &[&str],
) {
    let seen: Vec<(&str, &str)> = seen.iter().map(|(n, r)| (n.as_str(), r.as_str())).collect();
    assert_eq!(
        seen, expected,
        "{case}: what the client saw\n{}",
        stopped.log
    );
    assert_eq!(
        later, "later ok",
        "{case}: a new connection\n{}",
        stopped.log
    );
    assert!(
        stopped.status.success(),
        "{case}: nbdkit exited with {}:\n{}",
        stopped.status,
        stopped.log
    );
    assert!(
        !stopped.log.contains("Assertion") && !stopped.log.contains("panicked"),
        "{case}: {}",
        stopped.log
    );
    let t = trace_lines(trace);
    for line in traced {
        assert!(
            t.iter().any(|l| l == line),
            "{case}: no '{line}' in the trace:\n{}",
            t.join("\n")
        );
    }
}

#[test]
fn a_write_to_a_layer_that_cannot_write_is_refused_with_erofs() {
    let dir = temp_dir("next-erofs");
    let trace = dir.join("t");
    // `nbdkit -r`: the filter's `pread` writes what it read back through `next.pwrite`.
    let builder = through_test_filter(&["-r"], memory(), &trace, &["tf-pread-writes=true"]);
    assert_refused(
        "nbdkit -r",
        serve_and_request(
            builder,
            &[("pread", "h.pread(512, 4096)")],
            "h.block_status(512, 0, lambda *a: 0)",
        ),
        // nbdkit sends EROFS as NBD's EPERM.
        &[("pread", "EPERM")],
        &trace,
        &["test pread -> ()", "test pread write-back -> Err(EROFS)"],
    );

    // A plugin that cannot write, under a filter that says it can.
    std::fs::remove_file(&trace).unwrap();
    let builder = through_test_filter(
        &[],
        test_plugin_with(&["can_write=false"]),
        &trace,
        &["tf-claim=write", "tf-claim=trim", "tf-claim=zero"],
    );
    assert_refused(
        "a plugin that cannot write",
        serve_and_request(
            builder,
            &[
                ("pwrite", "h.pwrite(b'x' * 512, 0)"),
                ("trim", "h.trim(512, 0)"),
                ("zero", "h.zero(512, 0)"),
            ],
            "h.pread(512, 0)",
        ),
        &[("pwrite", "EPERM"), ("trim", "EPERM"), ("zero", "EPERM")],
        &trace,
        &[
            "test pwrite -> Err(EROFS)",
            "test trim -> Err(EROFS)",
            "test zero -> Err(EROFS)",
        ],
    );
}

#[test]
fn a_request_past_the_end_of_the_layer_below_is_refused() {
    let dir = temp_dir("next-past-end");
    let trace = dir.join("t");
    let builder = through_test_filter(&[], memory(), &trace, &["tf-past-end=true"]);
    // As nbdkit answers a client's request past the end (server/protocol.c, validate_request):
    // ENOSPC for a write or a zero, EINVAL otherwise, trim included.
    assert_refused(
        "past the end",
        serve_and_request(
            builder,
            &[
                ("pread", "h.pread(512, 0)"),
                ("pwrite", "h.pwrite(b'x' * 512, 0)"),
                ("zero", "h.zero(512, 0)"),
                ("trim", "h.trim(512, 0)"),
                ("cache", "h.cache(512, 0)"),
                ("extents", "h.block_status(512, 0, lambda *a: 0)"),
            ],
            // Flush has no offset: it reaches the plugin.
            "h.flush()",
        ),
        &[
            ("pread", "EINVAL"),
            ("pwrite", "ENOSPC"),
            ("zero", "ENOSPC"),
            ("trim", "EINVAL"),
            ("cache", "EINVAL"),
            ("extents", "EINVAL"),
        ],
        &trace,
        &[
            "test pread -> Err(EINVAL)",
            "test pwrite -> Err(ENOSPC)",
            "test zero -> Err(ENOSPC)",
            "test trim -> Err(EINVAL)",
            "test cache -> Err(EINVAL)",
            "test extents -> Err(EINVAL)",
            "test flush -> ()",
        ],
    );
}

#[test]
fn a_request_the_layer_below_cannot_take_is_refused_with_einval() {
    let dir = temp_dir("next-cannot");
    let trace = dir.join("t");
    // A plugin that cannot flush, trim, cache, FUA or fast zero, under a filter that says it can.
    let builder = through_test_filter(
        &[],
        test_plugin_with(&[
            "can_flush=false",
            "can_trim=false",
            "can_cache=none",
            "can_fua=none",
            "can_fast_zero=false",
        ]),
        &trace,
        &[
            "tf-claim=flush",
            "tf-claim=trim",
            "tf-claim=cache",
            "tf-claim=fua",
            "tf-claim=fast_zero",
        ],
    );
    assert_refused(
        "a plugin without the capabilities",
        serve_and_request(
            builder,
            &[
                ("flush", "h.flush()"),
                ("trim", "h.trim(512, 0)"),
                ("cache", "h.cache(512, 0)"),
                ("fua", "h.pwrite(b'x' * 512, 0, nbd.CMD_FLAG_FUA)"),
                ("fast_zero", "h.zero(512, 0, nbd.CMD_FLAG_FAST_ZERO)"),
            ],
            "h.pwrite(b'y' * 512, 0)",
        ),
        &[
            ("flush", "EINVAL"),
            ("trim", "EINVAL"),
            ("cache", "EINVAL"),
            ("fua", "EINVAL"),
            ("fast_zero", "EINVAL"),
        ],
        &trace,
        &[
            "test flush -> Err(EINVAL)",
            "test trim -> Err(EINVAL)",
            "test cache -> Err(EINVAL)",
            "test pwrite -> Err(EINVAL)",
            "test zero -> Err(EINVAL)",
            "test pwrite -> ()",
        ],
    );

    // A layer below that cannot zero at all: nbdkit's nozero filter, below the Rust filter.
    std::fs::remove_file(&trace).unwrap();
    // `--filter=SHIM --filter=nozero memory 1M ...`: nozero is below the Rust filter.
    let builder = through_test_filter(&[], memory(), &trace, &["tf-claim=zero", "zeromode=none"])
        .filter("nozero");
    assert_eq!(
        argv(&builder)[1..3],
        [rust_filter(), "--filter=nozero".to_string()]
    );
    assert_refused(
        "nozero zeromode=none below",
        serve_and_request(
            builder,
            &[("zero", "h.zero(512, 0)")],
            "h.pwrite(b'y' * 512, 0)",
        ),
        &[("zero", "EINVAL")],
        &trace,
        &["test zero -> Err(EINVAL)"],
    );
}

#[test]
fn zero_failing_with_enotsup_without_fast_zero_becomes_eio() {
    let dir = temp_dir("next-enotsup");
    let trace = dir.join("t");
    let builder = through_test_filter(&[], memory(), &trace, &["tf-fail=zero:ENOTSUP"]);
    let result = serve_and_request(
        builder,
        &[
            ("zero", "h.zero(512, 0)"),
            // With FAST_ZERO, ENOTSUP is what the client is told.
            ("fast_zero", "h.zero(512, 0, nbd.CMD_FLAG_FAST_ZERO)"),
        ],
        "h.pread(512, 0)",
    );
    let log = result.2.log.clone();
    assert_refused(
        "zero ENOTSUP",
        result,
        &[("zero", "EIO"), ("fast_zero", "ENOTSUP")],
        &trace,
        &[],
    );
    assert!(
        log.contains(
            "filter 'test': zero failed with ENOTSUP without FAST_ZERO, which nbdkit does not allow"
        ),
        "{log}"
    );
}

/// The requests each of which the error filter below fails (it has no `flush`).
const EVERY_REQUEST: &[(&str, &str)] = &[
    ("pread", "h.pread(512, 0)"),
    ("pwrite", "h.pwrite(b'x' * 512, 0)"),
    ("trim", "h.trim(512, 0)"),
    ("zero", "h.zero(512, 0)"),
    ("cache", "h.cache(512, 0)"),
    ("extents", "h.block_status(512, 0, lambda *a: 0)"),
];

#[test]
fn the_layer_belows_errno_reaches_the_filter_and_the_client_unchanged() {
    let dir = temp_dir("next-errno");
    let trace = dir.join("t");
    for errno in ["ENOSPC", "ESHUTDOWN", "EIO", "EPERM", "ENOMEM", "EINVAL"] {
        for filter in ["test", "passthrough"] {
            // `--filter=SHIM --filter=error memory filter=F 1M [tf-trace=TRACE] error=ERRNO
            // error-rate=100%`: the C error filter is below the Rust filter.
            let _ = std::fs::remove_file(&trace);
            let mut builder = memory().rust_filter(rustshim_tests::filters::filter(filter));
            if filter == "test" {
                // The pass-through filter has no tf-trace= key.
                builder = builder.arg(format!("tf-trace={}", trace.display()));
            }
            let builder = builder
                .filter("error")
                .args([format!("error={errno}"), "error-rate=100%".into()]);
            assert_eq!(
                argv(&builder)[1..3],
                [rust_filter(), "--filter=error".to_string()]
            );
            let server = builder.start().unwrap_or_else(|e| panic!("{e}"));
            let out = server.client(&requests_script(EVERY_REQUEST)).ok();
            let expected: String = EVERY_REQUEST
                .iter()
                .map(|(name, _)| format!("{name} {errno}\n"))
                .collect();
            assert_eq!(out.stdout, expected, "{filter} {errno}:\n{}", server.log());
            let stopped = server.stop().unwrap();
            assert!(
                stopped.status.success(),
                "{}: {}",
                stopped.status,
                stopped.log
            );
            if filter == "test" {
                let t = trace_lines(&trace);
                for (name, _) in EVERY_REQUEST {
                    let line = format!("test {name} -> Err({errno})");
                    assert!(
                        t.iter().any(|l| l == &line),
                        "no '{line}' in the trace:\n{}",
                        t.join("\n")
                    );
                }
            }
        }
    }

    // From a plugin below: `flush` failing, and errnos NBD cannot carry, which the filter gets
    // unchanged and the client as nbdkit maps them (EROFS is sent as EPERM, EDQUOT as ENOSPC).
    let _ = std::fs::remove_file(&trace);
    let builder = through_test_filter(
        &[],
        test_plugin_with(&[
            "fail=flush:ESHUTDOWN",
            "fail=pwrite:EROFS",
            "fail=pread:EDQUOT",
        ]),
        &trace,
        &[],
    );
    assert_refused(
        "a plugin failing below",
        serve_and_request(
            builder,
            &[
                ("flush", "h.flush()"),
                ("pwrite", "h.pwrite(b'x' * 512, 0)"),
                ("pread", "h.pread(512, 0)"),
            ],
            "h.zero(512, 0)",
        ),
        &[
            ("flush", "ESHUTDOWN"),
            ("pwrite", "EPERM"),
            ("pread", "ENOSPC"),
        ],
        &trace,
        &[
            "test flush -> Err(ESHUTDOWN)",
            "test pwrite -> Err(EROFS)",
            "test pread -> Err(EDQUOT)",
        ],
    );
}

/// A filter that says the layer below can write and leaves every data callback to the shim.
const CLAIMS_WRITE: &str = r#"
use rustshim_plugin_api::prelude::*;
#[derive(Default)]
struct ClaimsWrite;
#[filter]
impl Filter for ClaimsWrite {
    type Handle = ();
    const NAME: &'static str = "claims_write";
    fn can_write(&self, _next: &Next<'_>, _handle: &()) -> Result<bool> {
        Ok(true)
    }
}
export_filter!(ClaimsWrite);
"#;

/// The shim passes a request the filter leaves out straight to the layer below, as nbdkit's
/// own pass-through does, but not when the filter reshaped what nbdkit lets through (here
/// `can_write`): then the request is checked first, as the filter's own `next` calls are, and
/// nbdkit does not abort on a write to a layer that cannot write.
#[test]
fn a_left_out_request_of_a_filter_that_reshapes_is_checked_before_the_layer_below() {
    let filter = rustshim_tests::fixtures::build_plugin(
        "filter_claims_write",
        &rustshim_tests::fixtures::SAME_API,
        CLAIMS_WRITE,
        &[],
    );
    // A plugin that cannot write (`nbdkit -r` would refuse the write above every filter).
    let builder = test_plugin_with(&["can_write=false"]).rust_filter(&filter);
    let (seen, later, stopped) = serve_and_request(
        builder,
        &[
            ("pwrite", "h.pwrite(b'x' * 512, 0)"),
            ("pread", "h.pread(512, 0)"),
        ],
        "h.pread(512, 4096)",
    );
    let seen: Vec<(&str, &str)> = seen.iter().map(|(n, r)| (n.as_str(), r.as_str())).collect();
    // nbdkit sends EROFS as NBD's EPERM.
    assert_eq!(
        seen,
        [("pwrite", "EPERM"), ("pread", "ok")],
        "what the client saw\n{}",
        stopped.log
    );
    assert_eq!(later, "later ok", "a new connection\n{}", stopped.log);
    assert!(
        stopped.status.success() && !stopped.log.contains("Assertion"),
        "nbdkit exited with {}:\n{}",
        stopped.status,
        stopped.log
    );
}
