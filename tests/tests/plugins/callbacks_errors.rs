//! nbdkit-plugin(3), "Error handling" and "DEBUGGING": an error a data callback returns reaches
//! the client with nbdkit's errno mapping, a panic fails only its request (EIO) and leaves the
//! connection serving, and the plugin's log records reach nbdkit's log at the right levels.

use rustshim_tests::*;

#[test]
fn injected_errors_reach_the_client_with_nbdkits_errno_mapping() {
    // (errno the plugin fails with, errno the client sees): NBD carries only a few.
    let cases = [
        ("EPERM", "EPERM"),
        ("EIO", "EIO"),
        ("ENOMEM", "ENOMEM"),
        ("ENOSPC", "ENOSPC"),
        ("ESHUTDOWN", "ESHUTDOWN"),
        ("EINVAL", "EINVAL"),
        ("EROFS", "EPERM"),
        ("EFBIG", "ENOSPC"),
        ("EDQUOT", "ENOSPC"),
        ("ENOTSUP", "EINVAL"),
        ("EOVERFLOW", "EINVAL"),
        ("ERANGE", "EINVAL"),
        ("EACCES", "EINVAL"),
    ];
    let mut args = vec![test_plugin()];
    for (i, (errno, _)) in cases.iter().enumerate() {
        args.push(format!("fail=pread:{errno}@{}", i * 512));
    }
    let out = session(
        &[],
        &args,
        "",
        &format!(
            "print(' '.join(str(attempt(h.pread, 512, i * 512)) for i in range({n})))\n\
             print(h.pread(512, {n} * 512) == bytes(512))",
            n = cases.len()
        ),
    )
    .ok();
    let expected: Vec<&str> = cases.iter().map(|(_, seen)| *seen).collect();
    assert_eq!(out.stdout.trim(), format!("{}\nTrue", expected.join(" ")));
    assert_eq!(
        out.stderr
            .matches("error: test: injected failure in pread")
            .count(),
        cases.len(),
        "{}",
        out.stderr
    );

    // Every other data callback too.
    let out = session(
        &[],
        &[
            test_plugin(),
            "fail=pwrite:ENOSPC".into(),
            "fail=flush:EIO".into(),
            "fail=trim:EPERM".into(),
            "fail=zero:ENOMEM".into(),
            "fail=extents:ESHUTDOWN".into(),
            "fail=cache:EINVAL".into(),
        ],
        "h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)",
        "print(attempt(h.pwrite, b'a' * 512, 0), attempt(h.flush), attempt(h.trim, 512, 0), \
         attempt(h.zero, 512, 0), attempt(h.block_status, 512, 0, lambda *a: 0), \
         attempt(h.cache, 512, 0), attempt(h.pread, 512, 0) == bytes(512))",
    )
    .ok();
    assert_eq!(
        out.stdout.trim(),
        "ENOSPC EIO EPERM ENOMEM ESHUTDOWN EINVAL True"
    );
    for callback in ["pwrite", "flush", "trim", "zero", "extents", "cache"] {
        assert!(
            out.stderr
                .contains(&format!("error: test: injected failure in {callback}")),
            "{callback}: {}",
            out.stderr
        );
    }
}

#[test]
fn panics_in_data_callbacks_fail_only_that_request_with_eio() {
    let out = session(
        &[],
        &[
            test_plugin(),
            "panic=pread@512".into(),
            "panic=pwrite@512".into(),
            "panic=trim@512".into(),
            "panic=zero@512".into(),
            "panic=extents@512".into(),
            "panic=cache@512".into(),
            "panic=flush".into(),
        ],
        "h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)",
        r#"ops = [
    ("pread", lambda o: h.pread(512, o)),
    ("pwrite", lambda o: h.pwrite(b"a" * 512, o)),
    ("trim", lambda o: h.trim(512, o)),
    ("zero", lambda o: h.zero(512, o)),
    ("extents", lambda o: h.block_status(512, o, lambda *a: 0)),
    ("cache", lambda o: h.cache(512, o)),
]
for name, op in ops:
    # The panicking request fails; the next one on the same connection works.
    print(name, attempt(op, 512), "ok" if attempt(op, 1024) != "EIO" else "EIO")
print("flush", attempt(h.flush), attempt(h.pread, 512, 0) == bytes(512))"#,
    )
    .ok();
    assert_eq!(
        out.stdout.trim(),
        "pread EIO ok\npwrite EIO ok\ntrim EIO ok\nzero EIO ok\nextents EIO ok\ncache EIO ok\n\
         flush EIO True"
    );
    for callback in [
        "pread", "pwrite", "trim", "zero", "extents", "cache", "flush",
    ] {
        assert!(
            out.stderr.contains(&format!(
                "error: test: panic in {callback}: test: injected panic in {callback} (at "
            )),
            "{callback}: {}",
            out.stderr
        );
    }
}

/// The plugin's log records reach nbdkit's log: errors, warnings and infos always, the rest
/// (and server::debug) only with -v, trace records only with RUSTSHIM_LOG=trace too
/// (`author_messages.rs` has the exact lines).
#[test]
fn log_messages_reach_nbdkit() {
    let mut args = vec![test_plugin()];
    for level in ["error", "warn", "info", "debug", "trace"] {
        args.push(format!("log={level}"));
    }
    let always = [
        "error: test: log at ERROR\n",
        "rustshim: warning: test: log at WARN\n",
        "rustshim: test: log at INFO\n",
    ];
    let verbose = [
        "debug: test: log at DEBUG\n",
        "debug: test: get_ready: the test plugin is ready\n",
        "debug: test: after_fork: server::debug works\n",
    ];
    let out = nbdkit_run(&args, "true").ok();
    for message in always {
        assert!(out.stderr.contains(message), "{message}: {}", out.stderr);
    }
    for message in verbose {
        assert!(!out.stderr.contains(message), "{message}: {}", out.stderr);
    }
    args.insert(0, "-v".into());
    let out = nbdkit_run(&args, "true").ok();
    for message in always.iter().chain(&verbose) {
        assert!(out.stderr.contains(message), "{message}: {}", out.stderr);
    }
    // Trace records need RUSTSHIM_LOG=trace as well (the default level is debug).
    let trace = "debug: test: log at TRACE\n";
    assert!(!out.stderr.contains(trace), "{}", out.stderr);
    let out = run_nbdkit(
        shim_nbdkit()
            .args(&args)
            .args(["-U", "-", "--run", "true"])
            .env("RUSTSHIM_LOG", "trace"),
    )
    .ok();
    assert!(out.stderr.contains(trace), "{}", out.stderr);
}
