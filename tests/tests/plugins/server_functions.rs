//! Every server function as a plugin sees it, through the shim on the real nbdkit: the test
//! plugin calls each one and traces the result (plugins/test), and the tests compare it with
//! what the client, the file system or nbdkit itself says it must be.

use std::time::Duration;

use rustshim_tests::*;

/// Configures the test plugin with `keys` (each `key=value`), serves one client and returns
/// the trace and nbdkit's stderr.
fn configure(keys: &[&str]) -> (Trace, String) {
    let t = Trace::new("config");
    let mut args = vec![test_plugin(), t.arg()];
    args.extend(keys.iter().map(|k| k.to_string()));
    let out = nbdkit_run(&args, "nbdinfo --size \"$uri\"").ok();
    assert_eq!(out.stdout.trim(), "1048576");
    (t, out.stderr)
}

/// The traced lines that start with `prefix`.
fn traced(t: &Trace, prefix: &str) -> Vec<String> {
    t.lines()
        .into_iter()
        .filter(|l| l.starts_with(prefix))
        .collect()
}

#[test]
fn parse_size() {
    let (t, stderr) = configure(&[
        "parse_size=1M",
        "parse_size=512",
        "parse_size=2G",
        "parse_size=0",
        "parse_size=1.5k",
        "parse_size=abc",
        "parse_size=-1",
    ]);
    assert_eq!(
        traced(&t, "parse_size("),
        [
            r#"parse_size("1M") = Ok(1048576)"#,
            r#"parse_size("512") = Ok(512)"#,
            r#"parse_size("2G") = Ok(2147483648)"#,
            r#"parse_size("0") = Ok(0)"#,
            r#"parse_size("1.5k") = Err(EINVAL: nbdkit_parse_size failed)"#,
            r#"parse_size("abc") = Err(EINVAL: nbdkit_parse_size failed)"#,
            r#"parse_size("-1") = Err(EINVAL: nbdkit_parse_size failed)"#,
        ]
    );
    // nbdkit's own message explains each failure, in its own words for each version.
    let why = if nbdkit_at_least(&[1, 36]) {
        "could not parse size string: abc"
    } else {
        "could not parse size string (abc)"
    };
    assert!(stderr.contains(why), "{stderr}");
    // The plugin's size key uses the same function.
    let out = nbdinfo(&["--size"], &[test_plugin(), "size=3k".into()]).ok();
    assert_eq!(out.stdout.trim(), "3072");
}

#[test]
fn parse_bool() {
    let (t, stderr) = configure(&[
        "parse_bool=on",
        "parse_bool=true",
        "parse_bool=1",
        "parse_bool=YES",
        "parse_bool=off",
        "parse_bool=false",
        "parse_bool=0",
        "parse_bool=no",
        "parse_bool=maybe",
    ]);
    assert_eq!(
        traced(&t, "parse_bool("),
        [
            r#"parse_bool("on") = Ok(true)"#,
            r#"parse_bool("true") = Ok(true)"#,
            r#"parse_bool("1") = Ok(true)"#,
            r#"parse_bool("YES") = Ok(true)"#,
            r#"parse_bool("off") = Ok(false)"#,
            r#"parse_bool("false") = Ok(false)"#,
            r#"parse_bool("0") = Ok(false)"#,
            r#"parse_bool("no") = Ok(false)"#,
            r#"parse_bool("maybe") = Err(EINVAL: nbdkit_parse_bool failed)"#,
        ]
    );
    assert!(
        stderr.contains("could not decipher boolean (maybe)"),
        "{stderr}"
    );
}

/// nbdkit 1.32.5 has no nbdkit_parse_probability (1.36): the shim parses with its syntax.
#[test]
fn parse_probability() {
    let (t, stderr) = configure(&[
        "parse_probability=1:10",
        "parse_probability=10%",
        "parse_probability=1/10",
        "parse_probability=0.1",
        "parse_probability=1e-1",
        "parse_probability=2",
        "parse_probability=0/0",
        "parse_probability=x",
        "parse_probability=1/0",
        "parse_probability=-0.5",
    ]);
    assert_eq!(
        traced(&t, "parse_probability("),
        [
            r#"parse_probability("1:10") = Ok(0.1)"#,
            r#"parse_probability("10%") = Ok(0.1)"#,
            r#"parse_probability("1/10") = Ok(0.1)"#,
            r#"parse_probability("0.1") = Ok(0.1)"#,
            r#"parse_probability("1e-1") = Ok(0.1)"#,
            r#"parse_probability("2") = Ok(2.0)"#,
            r#"parse_probability("0/0") = Ok(0.0)"#,
            r#"parse_probability("x") = Err(EINVAL: nbdkit_parse_probability failed)"#,
            r#"parse_probability("1/0") = Err(EINVAL: nbdkit_parse_probability failed)"#,
            r#"parse_probability("-0.5") = Err(EINVAL: nbdkit_parse_probability failed)"#,
        ]
    );
    assert!(
        stderr.contains("error: parse_probability: could not parse 'x' as a probability"),
        "{stderr}"
    );
}

/// nbdkit 1.32.5 has no nbdkit_parse_delay (1.40): the shim parses with its syntax.
#[test]
fn parse_delay() {
    let (t, stderr) = configure(&[
        "parse_delay=120ms",
        "parse_delay=1.5s",
        "parse_delay=2",
        "parse_delay=0.25",
        "parse_delay=10us",
        "parse_delay=10μs",
        "parse_delay=7ns",
        "parse_delay=1m",
        "parse_delay=-1",
    ]);
    assert_eq!(
        traced(&t, "parse_delay("),
        [
            r#"parse_delay("120ms") = Ok("0s+120000000ns")"#,
            r#"parse_delay("1.5s") = Ok("1s+500000000ns")"#,
            r#"parse_delay("2") = Ok("2s+0ns")"#,
            r#"parse_delay("0.25") = Ok("0s+250000000ns")"#,
            r#"parse_delay("10us") = Ok("0s+10000ns")"#,
            r#"parse_delay("10μs") = Ok("0s+10000ns")"#,
            r#"parse_delay("7ns") = Ok("0s+7ns")"#,
            r#"parse_delay("1m") = Err(EINVAL: nbdkit_parse_delay failed)"#,
            r#"parse_delay("-1") = Err(EINVAL: nbdkit_parse_delay failed)"#,
        ]
    );
    assert!(
        stderr.contains(r#"error: parse_delay: could not parse delay or sleep: "1m""#),
        "{stderr}"
    );
}

#[test]
fn read_password() {
    let dir = temp_dir("password");
    let file = dir.join("pw");
    std::fs::write(&file, "hunter2\n").unwrap();
    let plus = format!("password=+{}", file.display());
    let missing = format!("password=+{}", dir.join("missing").display());
    let (t, stderr) = configure(&[&plus, "password=literal secret", &missing]);
    assert_eq!(
        traced(&t, "read_password("),
        [
            format!(r#"read_password("+{}") = Ok("hunter2")"#, file.display()),
            r#"read_password("literal secret") = Ok("literal secret")"#.to_string(),
            format!(
                r#"read_password("+{}") = Err(ENOENT: nbdkit_read_password failed)"#,
                dir.join("missing").display()
            ),
        ]
    );
    assert!(stderr.contains("No such file or directory"), "{stderr}");
}

#[test]
fn realpath() {
    let dir = temp_dir("realpath");
    let target = dir.join("target");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("file"), "x").unwrap();
    std::os::unix::fs::symlink(&target, dir.join("link")).unwrap();
    let canonical = std::fs::canonicalize(target.join("file")).unwrap();
    let via_link = dir.join("link/../target/./file");
    let missing = dir.join("missing");
    let (t, stderr) = configure(&[
        &format!("realpath={}", dir.join("link/file").display()),
        &format!("realpath={}", via_link.display()),
        &format!("realpath={}", missing.display()),
    ]);
    assert_eq!(
        traced(&t, "realpath("),
        [
            format!(
                r#"realpath("{}") = Ok("{}")"#,
                dir.join("link/file").display(),
                canonical.display()
            ),
            format!(
                r#"realpath("{}") = Ok("{}")"#,
                via_link.display(),
                canonical.display()
            ),
            format!(
                r#"realpath("{}") = Err(ENOENT: nbdkit_realpath failed)"#,
                missing.display()
            ),
        ]
    );
    assert!(stderr.contains("No such file or directory"), "{stderr}");
}

#[test]
fn stdio_safe_is_false_only_with_dash_s() {
    // Traced in config_complete and in get_ready.
    let t = Trace::new("stdio");
    nbdkit_run(&[test_plugin(), t.arg()], "true").ok();
    assert_eq!(t.results("stdio_safe"), ["true", "true"]);

    let t = Trace::new("stdio-s");
    client(&[test_plugin(), t.arg()], "");
    assert_eq!(t.results("stdio_safe"), ["false", "false"]);
}

#[test]
fn version_and_api_version() {
    let t = Trace::new("version");
    nbdkit_run(&[test_plugin(), t.arg()], "true").ok();
    assert_eq!(t.result("version"), format!("Ok({:?})", nbdkit_version()));
    assert_eq!(t.result("api_version"), "2");
}

#[test]
fn export_name_with_odd_names() {
    let long = "long-".repeat(20);
    let names = [
        "",
        "/",
        "δοκιμή",
        "a name with spaces",
        "new\nline",
        long.as_str(),
    ];
    let t = Trace::new("export-names");
    let server = serve(&[], &[test_plugin(), t.arg()]);
    // Rust's {:?} of these strings is also a Python string literal.
    let list: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    let out = server
        .client(&format!(
            "for name in [{}]:\n    \
                 h = nbd.NBD()\n    \
                 h.set_export_name(name)\n    \
                 h.connect_unix(SOCKET)\n    \
                 h.pread(512, 0)\n    \
                 h.shutdown()\n    \
                 del h\n\
             print('done')",
            list.join(", ")
        ))
        .ok();
    assert_eq!(out.stdout.trim(), "done");
    let expected: Vec<String> = names.iter().map(|n| format!("Ok({n:?})")).collect();
    assert_eq!(t.results("export_name"), expected);
}

#[test]
fn export_name_via_a_stdio_connection() {
    let t = Trace::new("export-name-s");
    session(
        &[],
        &[test_plugin(), t.arg()],
        "h.set_export_name('δοκιμή')",
        "h.pread(1, 0)",
    )
    .ok();
    assert_eq!(t.result("export_name"), r#"Ok("δοκιμή")"#);
}

#[test]
fn is_tls_with_psk_and_without() {
    let t = Trace::new("tls");
    let psk = t.file("keys.psk");
    run(command("psktool").args(["-u", "alice", "-p"]).arg(&psk)).ok();
    let server = serve(
        &["--tls=require", &format!("--tls-psk={}", psk.display())],
        &[test_plugin(), t.arg()],
    );
    let out = server
        .client(&format!(
            "h.set_tls(nbd.TLS_REQUIRE)\n\
             h.set_tls_psk_file({psk:?})\n\
             h.set_tls_username('alice')\n\
             h.set_opt_mode(True)\n\
             h.connect_unix(SOCKET)\n\
             h.opt_list(lambda *a: 0)\n\
             h.opt_go()\n\
             print(h.get_tls_negotiated(), h.pread(4, 0) == bytes(4))\n\
             h.shutdown()\n\
             # Without TLS the server refuses the client.\n\
             h2 = nbd.NBD()\n\
             print(attempt(h2.connect_unix, SOCKET) != 'ok')",
            psk = psk.display().to_string()
        ))
        .ok();
    assert_eq!(out.stdout.trim(), "True True\nTrue");
    assert_eq!(t.result("is_tls"), "Ok(true)");
    let calls = t.calls();
    assert!(
        calls.contains(&"list_exports readonly=false is_tls=true".to_string()),
        "{calls:#?}"
    );
    assert!(
        calls.contains(&"default_export readonly=false is_tls=true".to_string()),
        "{calls:#?}"
    );
    drop(server);

    let t = Trace::new("no-tls");
    client(&[test_plugin(), t.arg()], "");
    assert_eq!(t.result("is_tls"), "Ok(false)");
}

#[test]
fn peer_credentials_on_a_unix_socket() {
    let t = Trace::new("peer");
    let server = serve(&[], &[test_plugin(), t.arg()]);
    let out = server
        .client(
            "h.connect_unix(SOCKET)\n\
             print(os.getpid(), os.getuid(), os.getgid())\n\
             h.shutdown()",
        )
        .ok();
    let ids: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(ids.len(), 3, "{}", out.stdout);
    assert_eq!(t.result("peer_pid"), format!("Ok({})", ids[0]));
    assert_eq!(t.result("peer_uid"), format!("Ok({})", ids[1]));
    assert_eq!(t.result("peer_gid"), format!("Ok({})", ids[2]));
    assert_eq!(t.result("peer_name"), r#"Ok("unix")"#);
}

#[test]
fn nanosleep_sleeps() {
    let t = Trace::new("nanosleep");
    let out = client(
        &[test_plugin(), t.arg(), "on_pread=sleep:300ms".into()],
        "start = time.monotonic()\n\
         h.pread(512, 0)\n\
         print(time.monotonic() - start >= 0.3)",
    );
    assert_eq!(out.trim(), "True");
    assert_eq!(t.result("nanosleep(300ms)"), "Ok(())");
}

#[test]
fn nanosleep_returns_early_with_eshutdown_when_nbdkit_stops() {
    let t = Trace::new("nanosleep-shutdown");
    let server = serve(&[], &[test_plugin(), t.arg(), "on_pread=sleep:60".into()]);
    let out = server
        .client(&format!(
            "h.connect_unix(SOCKET)\n\
             c = h.aio_pread(nbd.Buffer(512), 0)\n\
             time.sleep(0.5)\n\
             start = time.monotonic()\n\
             os.kill({pid}, signal.SIGTERM)\n\
             print(attempt(lambda: [h.poll(1) for _ in iter(lambda: h.aio_command_completed(c), True)]))\n\
             print(time.monotonic() - start < 10)",
            pid = server.pid()
        ))
        .ok();
    assert_eq!(out.stdout.trim(), "ESHUTDOWN\nTrue");
    let status = server
        .wait_timeout(Duration::from_secs(10))
        .unwrap()
        .expect("nbdkit exits");
    assert!(status.success(), "{status}: {}", server.log());
    assert_eq!(
        t.result("nanosleep(60s)"),
        "Err(ESHUTDOWN: nbdkit_nanosleep failed)"
    );
}

#[test]
fn shutdown_stops_the_server_after_the_request() {
    let t = Trace::new("shutdown");
    let server = serve(&[], &[test_plugin(), t.arg(), "on_pread=shutdown".into()]);
    let out = server
        .client(
            "h.connect_unix(SOCKET)\n\
             h.pwrite(b'\\x42' * 512, 0)\n\
             print(h.pread(512, 0) == b'\\x42' * 512)",
        )
        .ok();
    // The request that asked for the shutdown is still served.
    assert_eq!(out.stdout.trim(), "True");
    let status = server
        .wait_timeout(Duration::from_secs(10))
        .unwrap()
        .expect("nbdkit exits by itself");
    assert!(status.success(), "{status}: {}", server.log());
    let lines = t.lines();
    let at = lines
        .iter()
        .position(|l| l == "shutdown()")
        .expect("traced");
    assert_eq!(lines[at - 1], "pread count=512 offset=0 flags=(none)");
    assert_eq!(lines.last().unwrap(), "unload");
    assert!(lines[at..].contains(&"cleanup".to_string()));
}

/// `disconnect(force)` called in `pread`, as the client sees it: the result of that read and of
/// the next one on the same connection, then the size on a new connection (nbdkit keeps serving
/// other clients either way). nbdkit has nbdkit_disconnect since 1.33.5 (1.34 stable): there a
/// graceful disconnect lets the read in flight complete and fails the next with ESHUTDOWN, and
/// a forced one drops the connection without a reply; before, the plugin is told ENOTSUP and
/// nothing happens to the client.
#[test]
fn disconnect_as_the_client_sees_it_on_every_nbdkit() {
    let native = nbdkit_at_least(&[1, 33, 5]);
    for (action, force) in [("disconnect", false), ("disconnect_force", true)] {
        let t = Trace::new("disconnect");
        let server = serve(&[], &[test_plugin(), t.arg(), format!("on_pread={action}")]);
        let out = server
            .client(
                "h.connect_unix(SOCKET)\n\
                 read = lambda: h.pread(4, 0) == bytes(4)\n\
                 print(attempt(read), attempt(read))\n\
                 h = nbd.NBD()\n\
                 h.connect_unix(SOCKET)\n\
                 print(h.get_size())",
            )
            .ok();
        let expected = match (native, force) {
            (false, _) => "True True",
            (true, false) => "True ESHUTDOWN",
            // The read in flight sees the connection go; libnbd refuses the next one itself
            // (EINVAL: the handle is dead).
            (true, true) => "ENOTCONN EINVAL",
        };
        assert_eq!(
            out.stdout.trim(),
            format!("{expected}\n1048576"),
            "disconnect({force}) on nbdkit {}",
            nbdkit_version()
        );
        assert!(server.is_running(), "{}", server.log());
        let results = t.results(&format!("disconnect({force})"));
        if native {
            // Called once: the connection takes no further read.
            assert_eq!(results, ["Ok(())"]);
        } else {
            let expected = format!(
                "Err(ENOTSUP: nbdkit_disconnect is not supported by this nbdkit ({}))",
                nbdkit_version()
            );
            assert_eq!(results, [expected.clone(), expected]);
        }
    }
}

/// Outside a connection (here in get_ready) the client functions fail with nbdkit's reason
/// instead of returning garbage or crashing.
#[test]
fn client_functions_fail_cleanly_outside_a_connection() {
    let t = Trace::new("outside");
    let out = nbdkit_run(
        &[test_plugin(), t.arg(), "trace_outside=true".into()],
        "true",
    )
    .ok();
    for function in ["export_name", "is_tls", "peer_pid", "peer_name"] {
        assert_eq!(
            traced(&t, &format!("outside: {function} = ")),
            [format!(
                "outside: {function} = Err(EINVAL: nbdkit_{function} failed)"
            )]
        );
    }
    // nbdkit explains each failure; since 1.43.9 (commit 096c3404, "server: Move saved
    // exportname from connection to context") export_name's reason is the context.
    let export_name_reason = if nbdkit_at_least(&[1, 43, 9]) {
        "error: no context in this thread"
    } else {
        "error: no connection in this thread"
    };
    let reasons: Vec<&str> = out
        .stderr
        .lines()
        .filter(|line| line.contains("error: no con"))
        .collect();
    assert_eq!(reasons.len(), 4, "{}", out.stderr);
    assert!(reasons[0].ends_with(export_name_reason), "{}", out.stderr);
    assert!(
        reasons[1..]
            .iter()
            .all(|line| line.ends_with("error: no connection in this thread")),
        "{}",
        out.stderr
    );
}
