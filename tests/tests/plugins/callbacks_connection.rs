//! The callbacks of a client's connection (nbdkit-plugin(3), "CALLBACKS": `.preconnect`,
//! `.list_exports`, `.default_export`, `.open`, `.close`, `.get_size`, `.export_description`,
//! `.block_size` and the `.can_*` and `.is_rotational` capabilities), through the shim with the
//! test plugin: each capability answer is what the client sees, a read-only connection skips the
//! write ones, and a failure or panic in any of them refuses that client and leaves nbdkit
//! serving.

use rustshim_tests::*;

/// Each capability key flipped alone changes exactly its own flag at the client and in the
/// log filter's Connect line (which also shows `zero` and `extents`, invisible to clients).
#[test]
fn each_capability_answer_reaches_the_client() {
    let t = Trace::new("caps");
    let variants: Vec<&str> = vec![
        "",
        "can_flush=false",
        "can_fua=none",
        "can_fua=emulate",
        "can_trim=false",
        "can_zero=false",
        "can_fast_zero=false",
        "can_multi_conn=true",
        "can_cache=none",
        "can_cache=emulate",
        "is_rotational=true",
        "can_extents=false",
        "can_write=false",
    ];
    let mut configs = Vec::new();
    for (i, v) in variants.iter().enumerate() {
        let mut args = vec![
            test_plugin(),
            format!("logfile={}", t.file(&format!("log{i}")).display()),
        ];
        if !v.is_empty() {
            args.push(v.to_string());
        }
        configs.push(stdio_argv(&["--filter=log"], &args));
    }
    let out = python(&format!(
        "for argv in {configs:?}:\n    \
             h = nbd.NBD()\n    \
             h.connect_command(argv)\n    \
             print(' '.join(str(int(f())) for f in (h.is_read_only, h.can_flush, h.can_fua, \
                 h.can_trim, h.can_zero, h.can_fast_zero, h.can_multi_conn, h.can_cache, \
                 h.is_rotational)))\n    \
             h.shutdown()\n    \
             del h"
    ))
    .ok();
    let flags: Vec<&str> = out.stdout.lines().collect();
    //             ro flush fua trim zero fast multi cache rot
    let expected = [
        "0 1 1 1 1 1 0 1 0", // defaults
        "0 0 1 1 1 1 0 1 0", // can_flush=false (FUA native needs no flush)
        "0 1 0 1 1 1 0 1 0", // can_fua=none
        "0 1 1 1 1 1 0 1 0", // can_fua=emulate
        "0 1 1 0 1 1 0 1 0", // can_trim=false
        "0 1 1 1 1 1 0 1 0", // can_zero=false: zero is still advertised (emulated)
        "0 1 1 1 1 0 0 1 0", // can_fast_zero=false
        "0 1 1 1 1 1 1 1 0", // can_multi_conn=true
        "0 1 1 1 1 1 0 0 0", // can_cache=none
        "0 1 1 1 1 1 0 1 0", // can_cache=emulate
        "0 1 1 1 1 1 0 1 1", // is_rotational=true
        "0 1 1 1 1 1 0 1 0", // can_extents=false
        "1 1 0 0 0 0 0 1 0", // can_write=false
    ];
    assert_eq!(flags, expected, "{}", out.stdout);

    let connect: Vec<String> = (0..variants.len())
        .map(|i| {
            let line = connect_line(&t.file(&format!("log{i}")));
            line[line.find("write=").unwrap()..].to_owned()
        })
        .collect();
    let expected = [
        "write=1 flush=1 rotational=0 trim=1 zero=2 fua=2 extents=1 cache=2 fast_zero=1",
        "write=1 flush=0 rotational=0 trim=1 zero=2 fua=2 extents=1 cache=2 fast_zero=1",
        "write=1 flush=1 rotational=0 trim=1 zero=2 fua=0 extents=1 cache=2 fast_zero=1",
        "write=1 flush=1 rotational=0 trim=1 zero=2 fua=1 extents=1 cache=2 fast_zero=1",
        "write=1 flush=1 rotational=0 trim=0 zero=2 fua=2 extents=1 cache=2 fast_zero=1",
        "write=1 flush=1 rotational=0 trim=1 zero=1 fua=2 extents=1 cache=2 fast_zero=1",
        "write=1 flush=1 rotational=0 trim=1 zero=2 fua=2 extents=1 cache=2 fast_zero=0",
        "write=1 flush=1 rotational=0 trim=1 zero=2 fua=2 extents=1 cache=2 fast_zero=1",
        "write=1 flush=1 rotational=0 trim=1 zero=2 fua=2 extents=1 cache=0 fast_zero=1",
        "write=1 flush=1 rotational=0 trim=1 zero=2 fua=2 extents=1 cache=1 fast_zero=1",
        "write=1 flush=1 rotational=1 trim=1 zero=2 fua=2 extents=1 cache=2 fast_zero=1",
        "write=1 flush=1 rotational=0 trim=1 zero=2 fua=2 extents=0 cache=2 fast_zero=1",
        "write=0 flush=1 rotational=0 trim=0 zero=0 fua=0 extents=1 cache=2 fast_zero=0",
    ];
    assert_eq!(connect, expected);
}

#[test]
fn can_zero_false_makes_nbdkit_write_zeroes_with_pwrite() {
    let t = Trace::new("can-zero-false");
    let out = client(
        &[
            test_plugin(),
            t.arg(),
            "can_zero=false".into(),
            "can_fua=none".into(),
        ],
        "h.pwrite(b'\\xff' * 8192, 0)\n\
         h.zero(4096, 4096)\n\
         print(h.pread(8192, 0) == b'\\xff' * 4096 + bytes(4096))",
    );
    assert_eq!(out.trim(), "True");
    assert_eq!(
        t.data_calls(),
        [
            "pwrite count=8192 offset=0 flags=(none)",
            "pwrite count=4096 offset=4096 flags=(none)",
            "pread count=8192 offset=0 flags=(none)",
        ]
    );
}

#[test]
fn can_extents_false_makes_nbdkit_report_all_data() {
    let t = Trace::new("can-extents-false");
    let out = session(
        &[],
        &[test_plugin(), t.arg(), "can_extents=false".into()],
        "h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)",
        "ents = []\n\
         h.block_status(4 * 65536, 0, lambda ctx, off, e, err: ents.append(list(e)))\n\
         print(ents)",
    )
    .ok();
    assert_eq!(out.stdout.trim(), "[[262144, 0]]");
    assert_eq!(t.count("extents"), 0, "{:#?}", t.calls());
}

#[test]
fn read_only_connections_skip_the_write_capabilities() {
    let t = Trace::new("readonly");
    let out = session(
        &["-r"],
        &[test_plugin(), t.arg()],
        "",
        "h.set_strict_mode(0)\nprint(h.is_read_only(), attempt(h.pwrite, b'a', 0))",
    )
    .ok();
    assert_eq!(out.stdout.trim(), "True EPERM");
    let calls = t.calls();
    assert!(calls.contains(&"preconnect readonly=true".to_string()));
    assert!(calls.contains(&"open readonly=true".to_string()));
    assert!(calls.contains(&"default_export readonly=true is_tls=false".to_string()));
    for skipped in [
        "can_write",
        "can_trim",
        "can_zero",
        "can_fua",
        "can_fast_zero",
    ] {
        assert_eq!(t.count(skipped), 0, "{skipped} with -r: {calls:#?}");
    }
    assert_eq!(t.count("can_flush"), 1);
    assert_eq!(t.count("pwrite"), 0);
}

/// A failure or panic in a connection-setup callback refuses that client, with the message in
/// nbdkit's log; nbdkit itself keeps running.
#[test]
fn failures_in_connection_callbacks_refuse_the_client() {
    // What nbdkit calls while a client connects: before the handshake, then the handshake.
    let callbacks: Vec<&str> = ["preconnect", "default_export", "open"]
        .into_iter()
        .chain(HANDSHAKE)
        .collect();
    for kind in ["fail", "panic"] {
        let configs: Vec<Vec<String>> = callbacks
            .iter()
            .map(|cb| {
                let fault = if kind == "fail" {
                    format!("fail={cb}:EPERM")
                } else {
                    format!("panic={cb}")
                };
                stdio_argv(&[], &[test_plugin(), fault])
            })
            .collect();
        let out = python(&format!(
            "for argv in {configs:?}:\n    \
                 h = nbd.NBD()\n    \
                 r = attempt(h.connect_command, argv)\n    \
                 print('refused' if r != 'ok' else 'connected')\n    \
                 del h"
        ))
        .ok();
        assert_eq!(
            out.stdout.lines().collect::<Vec<_>>(),
            vec!["refused"; callbacks.len()],
            "{kind}: {}",
            out.stderr
        );
        for cb in &callbacks {
            let message = if kind == "fail" {
                format!("error: test: injected failure in {cb}\n")
            } else {
                format!("error: test: panic in {cb}: test: injected panic in {cb} (at ")
            };
            assert!(out.stderr.contains(&message), "{kind} {cb}: {}", out.stderr);
        }
    }

    // The server survives a refused client: the next connection reaches open again.
    let t = Trace::new("open-panic");
    let server = serve(&[], &[test_plugin(), t.arg(), "panic=open".into()]);
    let out = server
        .client("for i in range(2):\n    print(attempt(nbd.NBD().connect_unix, SOCKET) != 'ok')")
        .ok();
    assert_eq!(out.stdout.trim(), "True\nTrue");
    assert!(server.is_running(), "{}", server.log());
    assert_eq!(t.count("open"), 2);
}

#[test]
fn failing_list_exports_and_export_description() {
    let out = raw_client(
        &[],
        &[test_plugin(), "fail=list_exports:EPERM".into()],
        "h.set_opt_mode(True)\nh.connect_command(argv)\n\
         print(attempt(h.opt_list, lambda *a: 0))\nh.opt_abort()",
    )
    .ok();
    // nbdkit answers a failed list with NBD_REP_ERR_PLATFORM whatever the errno, which libnbd
    // reports as ENOTSUP (the same as for a python plugin whose list_exports raises).
    assert_eq!(out.stdout.trim(), "ENOTSUP");
    assert!(out
        .stderr
        .contains("error: test: injected failure in list_exports"));

    // A description that cannot be had is simply not sent.
    let out = session(
        &[],
        &[
            test_plugin(),
            "description=hello".into(),
            "fail=export_description:EIO".into(),
        ],
        "h.set_full_info(True)",
        "print(attempt(h.get_export_description))",
    )
    .ok();
    assert_eq!(out.stdout.trim(), "ENOTSUP");
    assert!(out
        .stderr
        .contains("error: test: injected failure in export_description"));
}

#[test]
fn list_exports_and_default_export() {
    let t = Trace::new("exports");
    let args = [
        test_plugin(),
        t.arg(),
        "exports=name1:desc1,name2".into(),
        "default_export=name1".into(),
    ];
    let out = nbdinfo(&["--list", "--json"], &args).ok();
    assert_eq!(
        json_query(
            &out.stdout,
            r#"[[e["export-name"], e.get("description")] for e in j["exports"]]"#
        ),
        r#"[["name1", "desc1"], ["name2", null]]"#
    );
    assert!(t
        .calls()
        .contains(&"list_exports readonly=false is_tls=false".to_string()));

    // A client asking for "" gets the default export.
    let out = nbdinfo(&["--json"], &args).ok();
    assert_eq!(
        json_query(&out.stdout, r#"[e["export-name"] for e in j["exports"]]"#),
        r#"["name1"]"#
    );
    assert!(t
        .results("export_name")
        .contains(&r#"Ok("name1")"#.to_string()));

    // Without exports=, the list is nbdkit's default: the default export.
    let out = nbdinfo(
        &["--list", "--json"],
        &[test_plugin(), "default_export=dflt".into()],
    )
    .ok();
    assert_eq!(
        json_query(&out.stdout, r#"[e["export-name"] for e in j["exports"]]"#),
        r#"["dflt"]"#
    );
}

#[test]
fn export_description_and_block_size() {
    let t = Trace::new("info");
    let out = nbdinfo(
        &["--json"],
        &[
            test_plugin(),
            t.arg(),
            "description=a test disk".into(),
            "block_size=512:4096:1048576".into(),
        ],
    )
    .ok();
    assert_eq!(
        json_query(
            &out.stdout,
            r#"[[e.get("description"), e["block_size_minimum"], e["block_size_preferred"], e["block_size_maximum"]] for e in j["exports"]]"#
        ),
        r#"[["a test disk", 512, 4096, 1048576]]"#
    );
    assert!(t.count("export_description") >= 1);

    // Neither by default, and export_description is only called when a client asks.
    let t = Trace::new("no-info");
    let out = nbdinfo(&["--json"], &[test_plugin(), t.arg()]).ok();
    assert_eq!(
        json_query(
            &out.stdout,
            r#"[[e.get("description"), e.get("block_size_minimum")] for e in j["exports"]]"#
        ),
        "[[null, null]]"
    );
    let t = Trace::new("no-info-asked");
    client(&[test_plugin(), t.arg(), "description=x".into()], "");
    assert_eq!(t.count("export_description"), 0);
}
