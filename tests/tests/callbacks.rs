//! Every callback through the shim with the test plugin (plugins/test): each one is reached with
//! the right arguments and flags (checked in the plugin's trace), each capability answer is what
//! the client sees, and each injected error or panic reaches the client with nbdkit's errno and
//! leaves nbdkit serving.

use rustshim_tests::*;

/// The callbacks nbdkit calls once per connection during the handshake (any order).
const HANDSHAKE: [&str; 12] = [
    "get_size",
    "can_write",
    "can_flush",
    "is_rotational",
    "can_trim",
    "can_zero",
    "can_fua",
    "can_multi_conn",
    "can_extents",
    "can_cache",
    "can_fast_zero",
    "block_size",
];

/// The traced calls of the data callbacks, in order.
fn data_calls(t: &Trace) -> Vec<String> {
    let data = [
        "pread", "pwrite", "flush", "trim", "zero", "extents", "cache",
    ];
    t.calls()
        .into_iter()
        .filter(|l| data.contains(&l.split(' ').next().unwrap_or_default()))
        .collect()
}

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

/// `can_fua` (nbdkit-plugin(3), "FUA SUPPORT") from both ends: what the client is told (and the
/// log filter's `fua=`), what a FUA write, trim and zero get (libnbd's own checks off, so a flag
/// that was not advertised still reaches nbdkit), and what the plugin is called with.
#[test]
fn fua_native_emulate_and_none() {
    struct Case {
        can_fua: &'static str,
        client_sees: &'static str,
        connect: &'static str,
        calls: &'static [&'static str],
    }
    let cases = [
        // The flag is passed to the plugin.
        Case {
            can_fua: "native",
            client_sees: "True ok ok ok",
            connect: " fua=2 ",
            calls: &[
                "pwrite count=4096 offset=0 flags=FUA",
                "trim count=4096 offset=8192 flags=FUA",
                "zero count=4096 offset=16384 flags=MAY_TRIM|FUA",
                "pwrite count=512 offset=0 flags=(none)",
            ],
        },
        // nbdkit flushes after the request instead.
        Case {
            can_fua: "emulate",
            client_sees: "True ok ok ok",
            connect: " fua=1 ",
            calls: &[
                "pwrite count=4096 offset=0 flags=(none)",
                "flush flags=(none)",
                "trim count=4096 offset=8192 flags=(none)",
                "flush flags=(none)",
                "zero count=4096 offset=16384 flags=MAY_TRIM",
                "flush flags=(none)",
                "pwrite count=512 offset=0 flags=(none)",
            ],
        },
        // Not advertised, and refused.
        Case {
            can_fua: "none",
            client_sees: "False EINVAL EINVAL EINVAL",
            connect: " fua=0 ",
            calls: &["pwrite count=512 offset=0 flags=(none)"],
        },
    ];
    for case in cases {
        let t = Trace::new(&format!("fua-{}", case.can_fua));
        let log = t.file("log");
        let out = session(
            &["--filter=log"],
            &[
                test_plugin(),
                t.arg(),
                format!("can_fua={}", case.can_fua),
                format!("logfile={}", log.display()),
            ],
            "h.set_strict_mode(0)",
            "print(h.can_fua(), attempt(h.pwrite, b'a' * 4096, 0, nbd.CMD_FLAG_FUA), \
             attempt(h.trim, 4096, 8192, nbd.CMD_FLAG_FUA), \
             attempt(h.zero, 4096, 16384, nbd.CMD_FLAG_FUA))\n\
             h.pwrite(b'b' * 512, 0)",
        )
        .ok();
        let what = format!("can_fua={}", case.can_fua);
        assert_eq!(out.stdout.trim(), case.client_sees, "{what}");
        assert!(
            connect_line(&log).contains(case.connect),
            "{what}: {}",
            connect_line(&log)
        );
        assert_eq!(data_calls(&t), case.calls, "{what}");
    }
}

#[test]
fn zero_flags_may_trim_and_fast_zero() {
    let t = Trace::new("zero-flags");
    let out = client(
        &[test_plugin(), t.arg(), "can_fua=none".into()],
        "print(h.can_fast_zero())\n\
         h.zero(4096, 0)\n\
         h.zero(4096, 4096, nbd.CMD_FLAG_NO_HOLE)\n\
         h.zero(4096, 8192, nbd.CMD_FLAG_FAST_ZERO)\n\
         h.zero(4096, 12288, nbd.CMD_FLAG_NO_HOLE | nbd.CMD_FLAG_FAST_ZERO)",
    );
    assert_eq!(out.trim(), "True");
    assert_eq!(
        data_calls(&t),
        [
            "zero count=4096 offset=0 flags=MAY_TRIM",
            "zero count=4096 offset=4096 flags=(none)",
            "zero count=4096 offset=8192 flags=MAY_TRIM|FAST_ZERO",
            "zero count=4096 offset=12288 flags=FAST_ZERO",
        ]
    );
}

#[test]
fn zero_declined_with_enotsup_is_written_with_pwrite_unless_fast() {
    let t = Trace::new("zero-enotsup");
    let out = session(
        &[],
        &[
            test_plugin(),
            t.arg(),
            "size=8M".into(),
            "can_fua=native".into(),
            "fail=zero:ENOTSUP".into(),
        ],
        "",
        "h.pwrite(b'\\xff' * (3 << 20), 0)\n\
         h.zero(3 << 20, 0, nbd.CMD_FLAG_FUA)\n\
         print(h.pread(3 << 20, 0) == bytes(3 << 20))\n\
         h.pwrite(b'\\xff' * 4096, 0)\n\
         print(attempt(h.zero, 4096, 0, nbd.CMD_FLAG_FAST_ZERO), h.pread(1, 0))",
    )
    .ok();
    assert_eq!(out.stdout.trim(), "True\nENOTSUP bytearray(b'\\xff')");
    let calls = data_calls(&t);
    assert_eq!(
        calls[1..6],
        [
            "zero count=3145728 offset=0 flags=MAY_TRIM|FUA",
            "pwrite count=1048576 offset=0 flags=FUA",
            "pwrite count=1048576 offset=1048576 flags=FUA",
            "pwrite count=1048576 offset=2097152 flags=FUA",
            "pread count=3145728 offset=0 flags=(none)",
        ],
        "{calls:#?}"
    );
    // With FAST_ZERO the plugin's ENOTSUP is the answer: nothing is written.
    assert_eq!(
        calls[6..],
        [
            "pwrite count=4096 offset=0 flags=(none)",
            "zero count=4096 offset=0 flags=MAY_TRIM|FAST_ZERO",
            "pread count=1 offset=0 flags=(none)",
        ]
    );
    // Declining is not an error worth logging (as in nbdkit's python plugin); only the
    // failed fast zero is.
    assert_eq!(
        out.stderr
            .matches("error: test: injected failure in zero")
            .count(),
        1,
        "{}",
        out.stderr
    );
}

#[test]
fn block_status_passes_req_one_and_returns_the_plugins_extents() {
    let t = Trace::new("extents");
    let out = session(
        &[],
        &[test_plugin(), t.arg()],
        "h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)",
        "h.pwrite(b'x' * 65536, 65536)\n\
         for flags in (0, nbd.CMD_FLAG_REQ_ONE):\n    \
             ents = []\n    \
             h.block_status(4 * 65536, 0, lambda ctx, off, e, err: ents.append(list(e)), flags)\n    \
             print(ents)",
    )
    .ok();
    // (length, type) pairs: hole+zero, data, hole+zero; with REQ_ONE only the first.
    assert_eq!(
        out.stdout.trim(),
        "[[65536, 3, 65536, 0, 131072, 3]]\n[[65536, 3]]"
    );
    assert_eq!(
        data_calls(&t)[1..],
        [
            "extents count=262144 offset=0 flags=(none)",
            "extents count=262144 offset=0 flags=REQ_ONE",
        ]
    );
}

/// The shim clips what the plugin returns to the request (nbdkit < 1.44 can assert on an
/// extent past it) and refuses a gap, which fails the request like a C plugin whose
/// nbdkit_add_extent failed.
#[test]
fn extents_are_clipped_to_the_request_and_gaps_refused() {
    let body = "for off, count in ((65536, 65536), (0, 4096), (1048576 - 512, 512)):\n    \
                    ents = []\n    \
                    r = attempt(h.block_status, count, off, lambda ctx, o, e, err: ents.append(list(e)))\n    \
                    print(ents if r == 'ok' else r)\n\
                print(h.pread(1, 0) == bytes(1))";
    let setup = "h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)";
    // One data extent covering the whole disk, whatever the request.
    let out = session(
        &[],
        &[test_plugin(), "extents_mode=whole".into()],
        setup,
        body,
    )
    .ok();
    assert_eq!(
        out.stdout.trim(),
        "[[65536, 0]]\n[[4096, 0]]\n[[512, 0]]\nTrue"
    );
    // 512 bytes, then a gap: an error, unless the gap lies past the request.
    let out = session(
        &[],
        &[test_plugin(), "extents_mode=gap".into()],
        setup,
        body,
    )
    .ok();
    assert_eq!(out.stdout.trim(), "EINVAL\nEINVAL\n[[512, 0]]\nTrue");
    assert!(
        out.stderr.contains(
            "error: extents: the plugin left a gap: extent at 66560 but the previous one ended at 66048"
        ),
        "{}",
        out.stderr
    );
}

/// `can_cache` (nbdkit-plugin(3), ".can_cache"): what the client is told, and what a cache
/// request becomes.
#[test]
fn cache_native_emulate_and_none() {
    let body = "h.set_strict_mode(0)\nprint(h.can_cache(), attempt(h.cache, 4096, 8192))";
    let cases: [(&str, &str, &[&str]); 3] = [
        (
            "native",
            "True ok",
            &["cache count=4096 offset=8192 flags=(none)"],
        ),
        // Emulated: nbdkit reads the range and throws the data away.
        (
            "emulate",
            "True ok",
            &["pread count=4096 offset=8192 flags=(none)"],
        ),
        ("none", "False EINVAL", &[]),
    ];
    for (can_cache, client_sees, calls) in cases {
        let t = Trace::new(&format!("cache-{can_cache}"));
        let out = client(
            &[test_plugin(), t.arg(), format!("can_cache={can_cache}")],
            body,
        );
        assert_eq!(out.trim(), client_sees, "can_cache={can_cache}");
        assert_eq!(data_calls(&t), calls, "can_cache={can_cache}");
    }
}

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
        data_calls(&t),
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

#[test]
fn data_round_trips_with_nbdcopy_and_qemu() {
    let dir = temp_dir("copy");
    let input = dir.join("in");
    let output = dir.join("out");
    let data = pattern(7, 16 << 20);
    std::fs::write(&input, &data).unwrap();
    let t = Trace::new("copy");
    // nbdcopy over 4 connections (the plugin says multi-conn is safe) with 16 requests in
    // flight on each: many concurrent calls through the shim.
    let cmd = format!(
        "nbdcopy --threads=4 --connections=4 --requests=16 --request-size=262144 {input} \"$uri\" && \
         nbdcopy --threads=4 --connections=4 --requests=16 --request-size=262144 \"$uri\" {output} && \
         qemu-io -f raw -c 'write -f -P 0x55 65536 4096' -c 'read -P 0x55 65536 4096' \"$uri\" && \
         qemu-img map --output=json \"$uri\"",
        input = input.display(),
        output = output.display()
    );
    let out = nbdkit_run(
        &[
            test_plugin(),
            t.arg(),
            "size=16M".into(),
            "can_fua=native".into(),
            "can_multi_conn=true".into(),
        ],
        &cmd,
    )
    .ok();
    assert!(
        std::fs::read(&output).unwrap() == data,
        "nbdcopy round trip"
    );
    assert!(t.count("open") >= 8, "{} opens", t.count("open"));
    assert_eq!(t.count("pwrite"), 64 + 1);
    // qemu-io's FUA write reaches the plugin as FUA.
    assert!(
        t.calls()
            .contains(&"pwrite count=4096 offset=65536 flags=FUA".to_string()),
        "{:#?}",
        data_calls(&t)
    );
    assert!(
        out.stdout.contains("read 4096/4096 bytes at offset 65536"),
        "{}",
        out.stdout
    );
    // nbdcopy filled every block, so qemu-img sees one data extent from the plugin.
    assert!(
        out.stdout.contains(
            r#""start": 0, "length": 16777216, "depth": 0, "present": true, "zero": false, "data": true"#
        ),
        "{}",
        out.stdout
    );
    assert!(t.count("extents") > 0);
}

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

/// A failure or panic in a connection-setup callback refuses that client, with the message in
/// nbdkit's log; nbdkit itself keeps running.
#[test]
fn failures_in_connection_callbacks_refuse_the_client() {
    let callbacks = [
        "preconnect",
        "default_export",
        "open",
        "get_size",
        "can_write",
        "can_flush",
        "is_rotational",
        "can_trim",
        "can_zero",
        "can_fua",
        "can_multi_conn",
        "can_extents",
        "can_cache",
        "can_fast_zero",
        "block_size",
    ];
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
        for cb in callbacks {
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

#[test]
fn thread_model_reaches_nbdkit() {
    for model in [
        "serialize_connections",
        "serialize_all_requests",
        "serialize_requests",
        "parallel",
    ] {
        let out = nbdkit(&[
            test_plugin(),
            format!("thread_model={model}"),
            "--dump-plugin".into(),
        ])
        .ok();
        assert!(
            out.stdout
                .lines()
                .any(|l| l == format!("thread_model={model}")),
            "{model}: {}",
            out.stdout
        );
    }
}

/// nbdkit enforces the plugin's thread model: four reads that each sleep 400 ms overlap on a
/// parallel plugin and run one after another on a serializing one.
#[test]
fn thread_model_is_enforced() {
    let body = "start = time.monotonic()\n\
                cmds = [h.aio_pread(nbd.Buffer(512), i * 512) for i in range(4)]\n\
                while h.aio_in_flight() > 0:\n    \
                    h.poll(-1)\n\
                assert all(h.aio_command_completed(c) for c in cmds)\n\
                print(round(time.monotonic() - start, 1))";
    let elapsed = |model: &str| -> f64 {
        let out = client(
            &[
                test_plugin(),
                "on_pread=sleep:400ms".into(),
                format!("thread_model={model}"),
            ],
            body,
        );
        out.trim().parse().unwrap()
    };
    let parallel = elapsed("parallel");
    assert!(parallel < 1.2, "parallel took {parallel} s");
    let serialized = elapsed("serialize_requests");
    assert!(serialized >= 1.5, "serialize_requests took {serialized} s");
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

/// The plugin's log records reach nbdkit's log: errors and warnings always, the rest (and
/// server::debug) only with -v, trace records only with RUSTSHIM_LOG=trace too.
#[test]
fn log_messages_reach_nbdkit() {
    let mut args = vec![test_plugin()];
    for level in ["error", "warn", "info", "debug", "trace"] {
        args.push(format!("log={level}"));
    }
    let always = [
        "error: test: log at ERROR\n",
        "error: warning: test: log at WARN\n",
    ];
    let verbose = [
        "debug: test: log at INFO\n",
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
