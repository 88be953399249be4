//! The callback lifecycle (nbdkit-plugin(3), "Callback lifecycle", and the callbacks outside a
//! connection: `.load`, `.config`, `.config_complete`, `.thread_model`, `.get_ready`,
//! `.after_fork`, `.cleanup`, `.unload`, `.dump_plugin`), through the shim with the test plugin
//! (plugins/test): each is reached in nbdkit's order with the right arguments (checked in the
//! plugin's trace), one that fails or panics before serving stops nbdkit with the plugin's
//! message, and one that returns nothing may panic and nbdkit carries on. With `reload=watch`,
//! the shim's own `hand_over` and `take_over` pass state from one build to the next.

use rustshim_tests::*;

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn lifecycle_callbacks_arrive_in_nbdkit_order() {
    let t = Trace::new("lifecycle");
    client(&[test_plugin(), t.arg()], "h.pread(512, 0)");
    let names = t.names();
    let before = [
        "load",
        "config",
        "config_complete",
        "thread_model",
        "get_ready",
        "after_fork",
        "preconnect",
        "default_export",
        "open",
    ];
    assert_eq!(names[..before.len()], before, "{names:#?}");
    let handshake = &names[before.len()..before.len() + HANDSHAKE.len()];
    assert_eq!(
        sorted(handshake.to_vec()),
        sorted(HANDSHAKE.iter().map(|s| s.to_string()).collect()),
        "each handshake callback once: {names:#?}"
    );
    assert_eq!(
        names[before.len() + HANDSHAKE.len()..],
        ["pread", "close", "cleanup", "unload"],
        "{names:#?}"
    );
    // Arguments of the connection callbacks.
    let calls = t.calls();
    for expected in [
        "preconnect readonly=false",
        "default_export readonly=false is_tls=false",
        "open readonly=false",
        "pread count=512 offset=0 flags=(none)",
    ] {
        assert!(
            calls.iter().any(|c| c == expected),
            "{expected}: {calls:#?}"
        );
    }
}

#[test]
fn config_pairs_arrive_in_order_including_early_and_magic_ones() {
    let t = Trace::new("config-order");
    // A pair before plugin=, then plugin=, then a bare argument (the plugin's magic key `size`).
    let out = nbdinfo(
        &["--size"],
        &[
            "can_trim=true".to_string(),
            test_plugin(),
            t.arg(),
            "2M".into(),
            "can_zero=false".into(),
        ],
    )
    .ok();
    assert_eq!(out.stdout.trim(), "2097152");
    let lines = t.lines();
    assert_eq!(lines[0], "load");
    let config: Vec<String> = lines
        .into_iter()
        .filter(|l| l.starts_with("config "))
        .collect();
    assert_eq!(
        config,
        [
            "config can_trim=true".to_string(),
            format!("config {}", t.arg()),
            "config size=2M".into(),
            "config can_zero=false".into(),
        ]
    );

    // The plugin path as the first bare argument; later bare arguments go to the magic key.
    let t = Trace::new("config-bare");
    let out = nbdinfo(
        &["--size"],
        &[plugin("test").display().to_string(), "3M".into(), t.arg()],
    )
    .ok();
    assert_eq!(out.stdout.trim(), "3145728");
    let config: Vec<String> = t
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("config "))
        .collect();
    assert_eq!(
        config,
        ["config size=3M".to_string(), format!("config {}", t.arg())]
    );
}

/// Lifecycle callbacks that fail or panic stop nbdkit with the plugin's message.
#[test]
fn failures_before_serving_stop_nbdkit() {
    for cb in ["config_complete", "thread_model", "get_ready"] {
        for fault in [format!("fail={cb}:EPERM"), format!("panic={cb}")] {
            let t = Trace::new("lifecycle-fail");
            let out = nbdkit_run(&[test_plugin(), t.arg(), fault.clone()], "echo served").failed();
            assert!(!out.stdout.contains("served"), "{fault}");
            let message = if fault.starts_with("fail") {
                format!("error: test: injected failure in {cb}\n")
            } else {
                format!("error: test: panic in {cb}: test: injected panic in {cb} (at ")
            };
            assert!(out.stderr.contains(&message), "{fault}: {}", out.stderr);
            assert!(t.names().contains(&cb.to_string()));
        }
    }

    // after_fork runs in the serving process: the client is never served.
    for fault in ["fail=after_fork:EPERM", "panic=after_fork"] {
        let out = raw_client(
            &[],
            &[test_plugin(), fault.into()],
            "print(attempt(h.connect_command, argv) != 'ok')",
        )
        .ok();
        assert_eq!(out.stdout.trim(), "True", "{fault}");
        assert!(out.stderr.contains("after_fork"), "{fault}: {}", out.stderr);
    }

    // fail=config refuses the next key.
    let t = Trace::new("config-fail");
    let out = nbdkit_run(
        &[
            test_plugin(),
            t.arg(),
            "fail=config:EINVAL".into(),
            "size=2M".into(),
        ],
        "echo served",
    )
    .failed();
    assert!(
        out.stderr.contains("test: injected failure in config"),
        "{}",
        out.stderr
    );
    assert_eq!(t.lines().last().unwrap(), "config size=2M");

    let t = Trace::new("config-panic");
    let out = nbdkit_run(
        &[
            test_plugin(),
            t.arg(),
            "panic=config".into(),
            "size=2M".into(),
        ],
        "echo served",
    )
    .failed();
    assert!(
        out.stderr
            .contains("test: panic in config: test: injected panic in config"),
        "{}",
        out.stderr
    );

    // load runs before any configuration: it reads the environment.
    let out = run_nbdkit(
        shim_nbdkit()
            .arg(test_plugin())
            .args(["-U", "-", "--run", "echo served"])
            .env("RUSTSHIM_TEST_FAIL_LOAD", "panic"),
    )
    .failed();
    assert!(
        out.stderr
            .contains("test: panic in load: test: injected panic in load"),
        "{}",
        out.stderr
    );
}

/// Callbacks that return nothing (close, cleanup, unload, dump_plugin) may still panic: the
/// panic is logged and nbdkit carries on to a clean exit.
#[test]
fn panics_in_void_callbacks_are_logged_and_survived() {
    let t = Trace::new("void-panics");
    let server = serve(
        &[],
        &[
            test_plugin(),
            t.arg(),
            "panic=close".into(),
            "panic=cleanup".into(),
            "panic=unload".into(),
        ],
    );
    let out = server
        .client(
            "for i in range(2):\n    \
                 h = nbd.NBD()\n    \
                 h.connect_unix(SOCKET)\n    \
                 print(h.get_size())\n    \
                 h.shutdown()\n    \
                 del h",
        )
        .ok();
    assert_eq!(out.stdout.trim(), "1048576\n1048576");
    // Both connections close (nbdkit would skip close if it were already shutting down).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while t.count("close") < 2 {
        assert!(std::time::Instant::now() < deadline, "{:#?}", t.names());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = server.terminate().expect("nbdkit stops on SIGTERM");
    assert!(status.success(), "{status}: {}", server.log());
    let names = t.names();
    assert_eq!(names[names.len() - 2..], ["cleanup", "unload"]);
    for cb in ["close", "cleanup", "unload"] {
        let message = format!("test: panic in {cb}: test: injected panic in {cb}");
        assert!(server.log().contains(&message), "{cb}: {}", server.log());
    }
    assert_eq!(
        server
            .log()
            .matches("test: panic in close: test: injected panic in close")
            .count(),
        2
    );

    let out = nbdkit(&[
        test_plugin(),
        "panic=dump_plugin".into(),
        "--dump-plugin".into(),
    ])
    .ok();
    assert!(out.stdout.contains("rustshim_has_pread=1"));
    assert!(!out.stdout.contains("test_dump=42"));
    assert!(
        out.stderr
            .contains("test: panic in dump_plugin: test: injected panic in dump_plugin"),
        "{}",
        out.stderr
    );
}

fn has_lines(dump: &str) -> Vec<String> {
    let mut v: Vec<String> = dump
        .lines()
        .filter_map(|l| l.strip_prefix("rustshim_has_"))
        .map(|l| {
            assert!(l.ends_with("=1"), "{l}");
            l.trim_end_matches("=1").to_owned()
        })
        .collect();
    v.sort();
    v
}

#[test]
fn dump_plugin_shows_the_plugins_own_lines_and_callbacks() {
    let out = nbdkit(&[test_plugin(), "--dump-plugin".into()]).ok();
    assert!(
        out.stdout.lines().any(|l| l == "test_dump=42"),
        "{}",
        out.stdout
    );
    let mut all: Vec<String> = rustshim_names();
    all.sort();
    assert_eq!(has_lines(&out.stdout), all);

    let out = nbdkit(&[variant("minimal"), "--dump-plugin".into()]).ok();
    assert_eq!(has_lines(&out.stdout), ["get_size", "open", "pread"]);
    assert!(!out.stdout.contains("test_dump"));
    let out = nbdkit(&[variant("readwrite"), "--dump-plugin".into()]).ok();
    assert_eq!(
        has_lines(&out.stdout),
        ["get_size", "open", "pread", "pwrite"]
    );
}

/// Every callback name of the ABI, nbdkit's and the shim's own hot-reload ones (the test plugin
/// implements them all).
fn rustshim_names() -> Vec<String> {
    rustshim_plugin_api::abi::CALLBACK_NAMES
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// With reload=watch, a new build of the plugin file gets the old one's state: `hand_over` runs
/// on the serving generation, `take_over` on the new one after its `config_complete` (with the
/// same configuration replayed) and before its `get_ready`.
#[test]
fn hot_reload_hands_state_from_one_build_to_the_next() {
    let dir = temp_dir("handover");
    let watched = dir.join("libtest.so");
    std::fs::copy(plugin("test"), &watched).unwrap();
    let t = Trace::new("handover");
    let server = serve(
        &[],
        &[
            format!("plugin={}", watched.display()),
            "reload=watch".into(),
            t.arg(),
            "size=2M".into(),
        ],
    );
    let get_size = "h.connect_unix(SOCKET)\nprint(h.get_size())\nh.shutdown()";
    assert_eq!(server.client(get_size).ok().stdout.trim(), "2097152");

    // Another build: the same code with bytes appended, renamed over the watched file.
    let mut bytes = std::fs::read(&watched).unwrap();
    bytes.extend_from_slice(b"\0another build\0");
    let tmp = dir.join("libtest.so.tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, &watched).unwrap();

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while t.count("unload") < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "no reload: {:#?}\n{}",
            t.lines(),
            server.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let names = t.names();
    let second_load = names.iter().rposition(|n| n == "load").unwrap();
    assert!(second_load > 0, "{names:#?}");
    let new_build: Vec<&str> = names[second_load..]
        .iter()
        .map(String::as_str)
        .filter(|n| *n != "config")
        .collect();
    // hand_over is traced by the old build, the rest by the new one; then the old build,
    // serving no connection, retires at once.
    assert_eq!(
        new_build,
        [
            "load",
            "config_complete",
            "hand_over",
            "take_over",
            "thread_model",
            "get_ready",
            "after_fork",
            "cleanup",
            "unload"
        ],
        "{names:#?}"
    );
    assert!(t
        .calls()
        .contains(&r#"take_over kind="rustshim-test" bytes=Some("2097152")"#.to_string()));
    // The configuration was replayed to the new build, which now serves.
    assert_eq!(t.count("config"), 4, "{names:#?}");
    assert_eq!(server.client(get_size).ok().stdout.trim(), "2097152");
    assert_eq!(t.count("open"), 2);
}
