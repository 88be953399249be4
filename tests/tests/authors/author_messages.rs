//! What a user sees on nbdkit's stderr from a plugin and from the shim, line by line, on every
//! nbdkit of the matrix:
//! * each `log` level as the docs say (`rustshim_plugin_api::logger` in the crate docs): `error!`
//!   as nbdkit's error, `warn!` as `nbdkit: rustshim: warning: …` and `info!` as
//!   `nbdkit: rustshim: …` without `-v`, `debug!` only with `-v`, `trace!` only with
//!   `RUSTSHIM_LOG=trace` too; no `error: warning:`, no info labelled `debug:`;
//! * one prefix rule: what the plugin wrote is shown as it wrote it, wherever it fails (a
//!   parameter, `config_complete`, a request), and the shim's own lines start with `rustshim: `;
//! * a refused reload names the plugin's callback (`get_ready failed: …`), not a type of the
//!   shim's.

use std::time::Duration;

use rustshim_harness::Server;
use rustshim_tests::*;

/// The lines of `text` containing `needle`.
fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

#[test]
fn each_log_level_reaches_stderr_as_documented() {
    let mut args = vec![test_plugin()];
    for level in ["error", "warn", "info", "debug", "trace"] {
        args.push(format!("log={level}"));
    }
    let quiet = nbdkit_run(&args, "true").ok();
    assert_eq!(
        lines_with(&quiet.stderr, "log at"),
        [
            "nbdkit: error: test: log at ERROR",
            "nbdkit: rustshim: warning: test: log at WARN",
            "nbdkit: rustshim: test: log at INFO",
        ],
        "nbdkit {} without -v:\n{}",
        nbdkit_version(),
        quiet.stderr
    );
    let verbose = nbdkit_run_with(&["-v"], &args, "true").ok();
    assert_eq!(
        lines_with(&verbose.stderr, "log at"),
        [
            "nbdkit: error: test: log at ERROR",
            "nbdkit: rustshim: warning: test: log at WARN",
            "nbdkit: rustshim: test: log at INFO",
            "nbdkit: debug: test: log at DEBUG",
        ],
        "nbdkit {} with -v:\n{}",
        nbdkit_version(),
        verbose.stderr
    );
    let trace = run_nbdkit(
        shim_nbdkit()
            .nbdkit_args(["-v", "-U", "-"])
            .args(&args)
            .args(["--run", "true"])
            .env("RUSTSHIM_LOG", "trace"),
    )
    .ok();
    assert_eq!(
        lines_with(&trace.stderr, "log at TRACE"),
        ["nbdkit: debug: test: log at TRACE"]
    );
    let off = run_nbdkit(
        shim_nbdkit()
            .nbdkit_args(["-U", "-"])
            .args(&args)
            .args(["--run", "true"])
            .env("RUSTSHIM_LOG", "error"),
    )
    .ok();
    assert_eq!(
        lines_with(&off.stderr, "log at"),
        ["nbdkit: error: test: log at ERROR"]
    );
    for out in [&quiet, &verbose] {
        assert!(!out.stderr.contains("error: warning:"), "{}", out.stderr);
        assert!(!out.stderr.contains("debug: test: log at INFO"));
    }
}

/// The plugin's refusals, each as the plugin wrote it, with nothing added by the shim.
#[test]
fn the_plugins_messages_are_shown_as_it_wrote_them() {
    for (args, line) in [
        (
            vec![test_plugin(), "bogus=1".into()],
            "nbdkit: error: test: unknown parameter 'bogus'",
        ),
        // Given before plugin=, so replayed once the plugin loads.
        (
            vec!["bogus=1".into(), test_plugin()],
            "nbdkit: error: test: unknown parameter 'bogus'",
        ),
        (
            vec![test_plugin(), "fail=config_complete".into()],
            "nbdkit: error: test: injected failure in config_complete",
        ),
        (
            vec![test_plugin(), "fail=get_ready:EPERM".into()],
            "nbdkit: error: test: injected failure in get_ready",
        ),
    ] {
        let out = run_nbdkit(shim_nbdkit().args(&args).args(["--run", "true"])).failed();
        assert_eq!(
            lines_with(&out.stderr, "error:"),
            [line],
            "{args:?} on nbdkit {}",
            nbdkit_version()
        );
    }
    // In a request: nbdkit puts its own context first (`rustshim.0:` or
    // `rustshim.1:`, depending on the version), then the plugin's words.
    let server = serve(&[], &[test_plugin(), "fail=pread@4096".into()]);
    let out = server
        .client(
            "h.connect_unix(SOCKET)\n\
             try:\n    h.pread(512, 4096)\nexcept nbd.Error as e:\n    print('failed')",
        )
        .ok();
    assert_eq!(out.stdout.trim(), "failed");
    let log = server.log();
    let errors = lines_with(&log, "error:");
    assert_eq!(errors.len(), 1, "{log}");
    assert!(
        errors[0].starts_with("nbdkit: rustshim")
            && errors[0].ends_with(": error: test: injected failure in pread"),
        "{}",
        errors[0]
    );
}

/// The shim's own refusals start with `rustshim: `.
#[test]
fn the_shims_messages_start_with_rustshim() {
    for (args, line) in [
        (
            vec![test_plugin(), "reload=sometimes".into()],
            "nbdkit: error: rustshim: reload=sometimes: expected reload=watch or reload=off",
        ),
        (
            vec![test_plugin(), "rustshim_x=1".into()],
            "nbdkit: error: rustshim: unknown shim key 'rustshim_x': the shim's keys are \
             plugin, reload and allow-insecure-plugin (keys starting with 'rustshim' are \
             reserved for it)",
        ),
        (
            vec!["plugin=/nonexistent/libx.so".into()],
            "nbdkit: error: rustshim: plugin file '/nonexistent/libx.so' does not exist",
        ),
    ] {
        let out = run_nbdkit(shim_nbdkit().args(&args).args(["--run", "true"])).failed();
        assert_eq!(lines_with(&out.stderr, "error:"), [line], "{args:?}");
    }
    // The plugin failed without a message of its own (nbdkit logged the cause): that line of
    // nbdkit's is the only one (a refusal is one line); the shim adds nothing.
    let out = run_nbdkit(
        shim_nbdkit()
            .args([test_plugin(), "size=lots".into()])
            .args(["--run", "true"]),
    );
    let line = one_refusal(&out, &["lots"]);
    assert!(!line.contains("rustshim"), "nbdkit's own: {line}");
}

/// A reload refused in `get_ready` says `get_ready failed:` and the plugin's message; the next
/// good build is taken. Uses the harness's reload helper, as an author would.
#[test]
fn a_refused_reload_names_the_callback() {
    let dir = temp_dir("author-reload");
    let armed = dir.join("armed");
    let server = Server::builder(plugin("test"))
        .shim(shim())
        .timeout(TIMEOUT)
        .args([
            "fail=get_ready".to_string(),
            format!("faults_if={}", armed.display()),
        ])
        .reloadable()
        .start()
        .unwrap();
    // From now on get_ready fails: the next build is refused, and the first keeps serving.
    std::fs::write(&armed, "").unwrap();
    let refused = server.reload_rebuilt().unwrap_err().to_string();
    assert!(
        refused.contains(
            "nbdkit: error: rustshim: reload of '"
        ) && refused.contains(
            "' refused, generation 1 keeps serving: get_ready failed: test: injected failure in get_ready"
        ),
        "{refused}"
    );
    assert!(!server.log().contains("GetReady"), "{}", server.log());
    assert_eq!(server.size().unwrap(), 1 << 20);
    std::fs::remove_file(&armed).unwrap();
    let line = server.reload_rebuilt().unwrap();
    assert!(
        line.starts_with("nbdkit: rustshim: reload: generation 2 from ")
            && line.contains("serves new connections"),
        "{line}"
    );
    assert!(server
        .wait_timeout(Duration::from_millis(1))
        .unwrap()
        .is_none());
}
