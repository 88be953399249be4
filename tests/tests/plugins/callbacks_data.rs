//! The data callbacks (nbdkit-plugin(3), "CALLBACKS": `.pread`, `.pwrite`, `.flush`, `.trim`,
//! `.zero`, `.extents`, `.cache`) and their "Flags" (FUA, MAY_TRIM, FAST_ZERO, REQ_ONE), through
//! the shim with the test plugin: each is reached with the right arguments and flags (checked in
//! the plugin's trace), what the shim does when a plugin declines, and the extents it clips or
//! refuses; data round-trips with real clients.

use rustshim_tests::*;

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
        assert_eq!(t.data_calls(), case.calls, "{what}");
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
        t.data_calls(),
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
    let calls = t.data_calls();
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
        t.data_calls()[1..],
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
            "error: rustshim: extents: the plugin left a gap: extent at 66560 but the previous one ended at 66048"
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
        assert_eq!(t.data_calls(), calls, "can_cache={can_cache}");
    }
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
        t.data_calls()
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
