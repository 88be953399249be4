//! The harness helpers plugin authors get, used as they would use them, on every nbdkit: a
//! named export's URI and clients (`Server::export`), hot reload (`reloadable()`,
//! `reload(build)`, `reload_rebuilt()`) of a plugin and of a Rust filter, filter stacks of C and
//! Rust filters in any order (`filter`, `rust_filter`, `without_shim`), and the version of the
//! nbdkit it runs (`nbdkit_version`). (`dump_plugin` is used by `author_plugin_info.rs`.)

use rustshim_harness::{HarnessError, Server, ServerBuilder};
use rustshim_tests::filters::{filter, trace_lines};
use rustshim_tests::*;

fn test_server(args: &[String]) -> ServerBuilder {
    Server::builder(plugin("test"))
        .shim(shim())
        .timeout(TIMEOUT)
        .args(args)
}

#[test]
fn a_named_export_has_its_uri_and_clients() {
    let t = Trace::new("author-export");
    let server = test_server(&[t.arg(), "exports=a,disk 2/x".into()])
        .start()
        .unwrap();
    for name in ["", "a", "disk 2/x", "é?&"] {
        let export = server.export(name);
        assert_eq!(export.name(), name);
        assert_eq!(
            export.python("print(h.get_export_name())").unwrap(),
            format!("{name}\n")
        );
        // The URI carries the name: nbdinfo connects with it.
        let json = export.nbdinfo(&["--json"]).unwrap();
        let escaped = name.replace('/', "\\/");
        assert!(
            json.contains(&format!("\"export-name\": \"{name}\""))
                || json.contains(&format!("\"export-name\": \"{escaped}\""))
                || !name.is_ascii(),
            "{name:?}: {json}"
        );
        assert_eq!(export.size().unwrap(), 1 << 20);
        export.write(512, name.as_bytes()).unwrap();
        assert_eq!(export.read(512, name.len()).unwrap(), name.as_bytes());
    }
    assert_eq!(server.uri(), server.export("").uri());
    assert!(
        server
            .export("disk 2/x")
            .uri()
            .starts_with("nbd+unix:///disk%202/x?socket="),
        "{}",
        server.export("disk 2/x").uri()
    );
    let opened: Vec<String> = t
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("export_name = "))
        .collect();
    for name in ["a", "disk 2/x", "é?&"] {
        assert!(
            opened.contains(&format!("export_name = Ok({name:?})")),
            "{name:?} in {opened:?}"
        );
    }
    // `--list` through the same URI sees the plugin's exports.
    let list = server.nbdinfo(&["--list"]).unwrap();
    assert!(list.contains("export=\"disk 2/x\""), "{list}");
}

#[test]
fn reload_puts_a_new_build_in_place_and_waits_for_the_shims_line() {
    let t = Trace::new("author-reload-helper");
    let server = test_server(&[t.arg()]).reloadable().start().unwrap();
    // The served file is the harness's copy, not the workspace's build (`command()` shortens
    // long arguments for messages, so the copy is looked for on disk).
    let copy = server.dir().join("plugin/librustshim_test.so");
    assert!(copy.is_file(), "{}", copy.display());
    server.write(0, b"kept").unwrap();

    // A new build (here the same code with bytes appended, as `rebuilt` makes it).
    let dir = temp_dir("author-builds");
    let line = server.reload(rebuilt(&plugin("test"), &dir, "v2")).unwrap();
    assert!(
        line.starts_with("nbdkit: rustshim: reload: generation 2 from ")
            && line.contains("serves new connections"),
        "{line}"
    );
    // The test plugin hands its size over; its data starts fresh.
    assert!(
        t.lines().iter().any(|l| l.starts_with("take_over")),
        "{:?}",
        t.lines()
    );
    assert_eq!(server.read(0, 4).unwrap(), [0; 4]);
    let line = server.reload_rebuilt().unwrap();
    assert!(line.contains("generation 3 from"), "{line}");

    // A build the shim refuses is an error with the shim's line; the last good one serves.
    let text = dir.join("text.so");
    std::fs::write(&text, "not a plugin\n").unwrap();
    let refused = server.reload(&text).unwrap_err();
    assert!(matches!(refused, HarnessError::Unexpected(_)));
    let refused = refused.to_string();
    assert!(
        refused.contains("refused, generation 3 keeps serving")
            && refused.contains("not a shared object"),
        "{refused}"
    );
    assert_eq!(server.size().unwrap(), 1 << 20);
}

#[test]
fn reload_needs_a_reloadable_server() {
    let server = test_server(&[]).start().unwrap();
    let e = server.reload_rebuilt().unwrap_err().to_string();
    assert!(e.contains("reloadable()"), "{e}");
    let e = ServerBuilder::new()
        .shim(shim())
        .arg(test_plugin())
        .reloadable()
        .start()
        .err()
        .expect("no plugin path to copy")
        .to_string();
    assert!(e.contains("Server::builder(plugin)"), "{e}");
}

/// What a `pread` of 512 bytes at 0 ends with, as the client sees it: `ok` or the errno's name.
const PREAD_ERRNO: &str = r#"
import errno
try:
    h.pread(512, 0)
    print('ok')
except nbd.Error as e:
    print(errno.errorcode.get(e.errno, e.errno) if isinstance(e.errno, int) else e.errno)
"#;

/// The Rust memory plugin (1M) with the `test` filter tracing into `trace` and nbdkit's `error`
/// filter failing every request with ENOSPC, the two in the order `stack` adds them.
fn memory_with_error_and_test_filter(
    trace: &std::path::Path,
    stack: impl FnOnce(ServerBuilder) -> ServerBuilder,
) -> Server {
    stack(
        Server::builder(plugin("memory"))
            .shim(shim())
            .timeout(TIMEOUT),
    )
    .args([
        format!("tf-trace={}", trace.display()),
        "error=ENOSPC".into(),
        "error-rate=100%".into(),
        "size=1M".into(),
    ])
    .start()
    .unwrap()
}

#[test]
fn a_c_filter_added_after_a_rust_filter_is_below_it() {
    let dir = temp_dir("author-c-below");
    let trace = dir.join("trace");
    let server = memory_with_error_and_test_filter(&trace, |b| {
        b.rust_filter(filter("test")).filter("error")
    });
    assert_eq!(server.python(PREAD_ERRNO).unwrap().trim(), "ENOSPC");
    // The Rust filter asked the error filter below it, and got its error.
    let t = trace_lines(&trace);
    assert!(
        t.iter().any(|l| l == "test pread -> Err(ENOSPC)"),
        "{}\n{}",
        t.join("\n"),
        server.command()
    );
}

#[test]
fn a_c_filter_added_before_a_rust_filter_is_above_it() {
    let dir = temp_dir("author-c-above");
    let trace = dir.join("trace");
    let server = memory_with_error_and_test_filter(&trace, |b| {
        b.filter("error").rust_filter(filter("test"))
    });
    assert_eq!(server.python(PREAD_ERRNO).unwrap().trim(), "ENOSPC");
    // The error filter failed the request before it reached the Rust filter, which did see
    // the connection.
    let t = trace_lines(&trace);
    assert!(
        t.iter().any(|l| l.starts_with("test open")),
        "{}",
        t.join("\n")
    );
    assert!(
        !t.iter().any(|l| l.starts_with("test pread")),
        "{}\n{}",
        t.join("\n"),
        server.command()
    );
}

#[test]
fn without_shim_serves_a_c_plugin_behind_a_rust_filter() {
    let dir = temp_dir("author-c-plugin");
    let trace = dir.join("trace");
    // nbdkit's own memory plugin; the shim only as the filter.
    let server = ServerBuilder::new()
        .shim(shim())
        .timeout(TIMEOUT)
        .without_shim()
        .rust_filter(filter("test"))
        .args(["memory", "1M"])
        .arg(format!("tf-trace={}", trace.display()))
        .start()
        .unwrap();
    assert_eq!(server.size().unwrap(), 1 << 20);
    server.write(4096, b"through").unwrap();
    assert_eq!(server.read(4096, 7).unwrap(), b"through");
    let t = trace_lines(&trace);
    for line in ["test pwrite -> ()", "test pread -> ()"] {
        assert!(t.iter().any(|l| l == line), "{line}: {}", t.join("\n"));
    }
    assert_eq!(server.shim(), shim());
    // nbdkit's own memory plugin serves, not the shim: no `plugin=` on the command line ran.
    assert!(
        server.command().contains(" memory filter=") && !server.command().contains("plugin="),
        "{}",
        server.command()
    );
}

#[test]
fn a_reloadable_rust_filter_is_reloaded_by_the_harness() {
    let dir = temp_dir("author-filter-reload");
    let trace = dir.join("trace");
    // The XOR makes the data depend on the filter's configuration, which each build must get.
    let server = Server::builder(plugin("memory"))
        .shim(shim())
        .timeout(TIMEOUT)
        .rust_filter(filter("test"))
        .reloadable()
        .args([
            format!("tf-trace={}", trace.display()),
            "tf-xor=7".into(),
            "size=1M".into(),
        ])
        .start()
        .unwrap();
    // The filter is served from the harness's copy; the plugin is not copied.
    let copy = server.dir().join("filter/librustshim_filter_test.so");
    assert!(copy.is_file(), "{}", copy.display());
    assert!(!server.dir().join("plugin").exists());
    server.write(0, b"kept").unwrap();

    let line = server.reload(rebuilt(&filter("test"), &dir, "v2")).unwrap();
    assert!(
        line.contains("rustshim: reload: generation 2 from ")
            && line.contains("filter 'test'")
            && line.contains("serves new connections"),
        "{line}"
    );
    assert_eq!(server.read(0, 4).unwrap(), b"kept");
    let line = server.reload_rebuilt().unwrap();
    assert!(line.contains("generation 3 from"), "{line}");
    assert_eq!(server.read(0, 4).unwrap(), b"kept");

    // A build the shim refuses is an error with the shim's line; the last good one serves.
    let text = dir.join("text.so");
    std::fs::write(&text, "not a filter\n").unwrap();
    let refused = server.reload(&text).unwrap_err().to_string();
    assert!(
        refused.contains("refused, generation 3 keeps serving")
            && refused.contains("not a shared object"),
        "{refused}"
    );
    assert_eq!(server.read(0, 4).unwrap(), b"kept");
}

#[test]
fn the_harness_tells_the_version_of_the_nbdkit_it_runs() {
    let (major, minor, patch) = rustshim_harness::nbdkit_version().unwrap();
    // nbdkit's own answers, asked here without the harness's parser.
    let version = run(command("nbdkit").arg("--version")).ok();
    assert!(
        version
            .stdout
            .starts_with(&format!("nbdkit {major}.{minor}.{patch}")),
        "{:?} against {}",
        (major, minor, patch),
        version.stdout
    );
    let config = run(command("nbdkit").arg("--dump-config")).ok();
    for line in [
        format!("version_major={major}"),
        format!("version_minor={minor}"),
    ] {
        assert!(
            config.stdout.lines().any(|l| l == line),
            "{line}: {}",
            config.stdout
        );
    }
    // The tests' own helper is the harness's.
    assert_eq!(nbdkit_version(), format!("{major}.{minor}.{patch}"));
}
