//! nbdkit with the shim under valgrind's memcheck: connections, reads, writes, zeroes, trims,
//! extents, a panicking request and a hot reload, against the memory, file and test plugins.
//! No invalid read or write, no use of uninitialised memory, and no definite leak (the one
//! deliberate, per-load leak of abi_stable's library handle is suppressed by name in
//! tests/fixtures/valgrind.supp).

use rustshim_tests::*;

/// Runs nbdkit under memcheck with these arguments, the workload against it, and `during`
/// while it serves; returns valgrind's log.
fn memcheck(args: &[String], during: impl FnOnce(&Server)) -> String {
    let dir = temp_dir("memcheck");
    let log = dir.join("valgrind.log");
    let valgrind_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let server = shim_nbdkit()
        .prefix([
            "valgrind",
            "--tool=memcheck",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
            "--track-origins=no",
        ])
        .prefix([
            format!("--suppressions={}", fixture("valgrind.supp")),
            format!("--log-file={}", log.display()),
        ])
        .args(args)
        .start()
        .unwrap_or_else(|e| {
            panic!(
                "nbdkit under valgrind: {e}\nvalgrind's log:\n{}",
                valgrind_log()
            )
        });
    workload(&server);
    during(&server);
    // SIGTERM: nbdkit shuts down cleanly (cleanup, unload), so leaks are counted at a real exit.
    let stopped = server.stop().unwrap();
    let text = valgrind_log();
    assert!(
        stopped.status.success(),
        "nbdkit under valgrind exited {}:\n{text}",
        stopped.status
    );
    text
}

/// Runs the workload against the server.
fn workload(server: &Server) {
    let out = python_script(
        "memcheck_workload.py",
        &[server.socket().display().to_string()],
    )
    .ok();
    assert_eq!(out.stdout.trim(), "ok");
}

fn assert_clean(log: &str) {
    let summary = log
        .lines()
        .find(|l| l.contains("ERROR SUMMARY"))
        .expect("valgrind summary");
    assert!(summary.contains("ERROR SUMMARY: 0 errors"), "{log}");
    assert!(
        !log.contains("Invalid read") && !log.contains("Invalid write"),
        "{log}"
    );
    assert!(
        log.contains("definitely lost: 0 bytes") || log.contains("All heap blocks were freed"),
        "{log}"
    );
}

#[test]
fn memory_plugin_is_clean_under_memcheck_including_a_reload() {
    let dir = temp_dir("memcheck-reload");
    let watched = dir.join("libmemory.so");
    install_build(&plugin("memory"), &watched, Install::RenameOver);
    let mut rebuilt = std::fs::read(plugin("memory")).unwrap();
    rebuilt.extend_from_slice(b"\0rebuilt\0");
    let log = memcheck(
        &[
            format!("plugin={}", watched.display()),
            "reload=watch".into(),
            "size=16M".into(),
        ],
        |server| {
            std::fs::write(dir.join("incoming"), &rebuilt).unwrap();
            std::fs::rename(dir.join("incoming"), &watched).unwrap();
            server.wait_for_log("generation 2 from", 1).unwrap();
            // The workload again, now served by generation 2 (on the disk it took over).
            workload(server);
        },
    );
    assert_clean(&log);
}

#[test]
fn file_plugin_is_clean_under_memcheck() {
    let dir = temp_dir("memcheck-file");
    let disk = dir.join("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let log = memcheck(
        &[
            format!("plugin={}", plugin("file").display()),
            format!("file={}", disk.display()),
        ],
        |_| {},
    );
    assert_clean(&log);
}

#[test]
fn test_plugin_with_a_panic_is_clean_under_memcheck() {
    let log = memcheck(
        &[
            format!("plugin={}", plugin("test").display()),
            "size=16M".into(),
            format!("panic=pread@{}", 4096 * 1000),
        ],
        |_| {},
    );
    assert_clean(&log);
}

/// The heap allocations valgrind counts in `builder`'s nbdkit while one connection reads
/// `reads` 4 KiB blocks (and nothing else: connect, then the reads, then disconnect).
fn allocations(builder: ServerBuilder, reads: usize) -> u64 {
    let dir = temp_dir("memcheck-allocations");
    let log = dir.join("valgrind.log");
    let server = builder
        .prefix(["valgrind", "--tool=memcheck", "--leak-check=no"])
        .prefix([format!("--log-file={}", log.display())])
        .start()
        .unwrap_or_else(|e| panic!("nbdkit under valgrind: {e}"));
    let out = server.client(&format!(
        "h.connect_unix(SOCKET)\nbuf = bytearray(4096)\n\
         for i in range({reads}):\n    h.pread(4096, (i % 256) * 4096)\n\
         h.shutdown()\nprint('ok')"
    ));
    assert_eq!(out.ok().stdout.trim(), "ok");
    assert!(server.stop().unwrap().status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    // "total heap usage: 1,234 allocs, 1,230 frees, 56,789 bytes allocated"
    let usage = text
        .lines()
        .find_map(|l| l.split("total heap usage: ").nth(1))
        .unwrap_or_else(|| panic!("valgrind's heap summary:\n{text}"));
    usage
        .split(" allocs")
        .next()
        .unwrap()
        .replace(',', "")
        .parse()
        .unwrap()
}

/// ARCHITECTURE.md: "no heap allocation on the request path". What the shim and the Rust
/// memory plugin allocate per 4 KiB read, over what nbdkit and its own C memory plugin do
/// (nbdkit's server allocates per request itself on some versions): 1,000 more reads may add
/// no more than a handful of allocations (nbdkit's own, e.g. a thread's first use of a buffer).
#[test]
fn no_heap_allocation_on_the_request_path() {
    let rust = |reads| {
        let builder = shim_nbdkit().args([
            format!("plugin={}", plugin("memory").display()),
            "size=1M".into(),
        ]);
        allocations(builder, reads)
    };
    let c = |reads| {
        let builder = ServerBuilder::new()
            .without_shim()
            .timeout(TIMEOUT)
            .args(["memory", "size=1M"]);
        allocations(builder, reads)
    };
    let per_1000 = |count: &dyn Fn(usize) -> u64| count(1100) as i64 - count(100) as i64;
    let (rust, c) = (per_1000(&rust), per_1000(&c));
    assert!(
        rust - c < 20,
        "1,000 more 4 KiB reads: {rust} more allocations with the shim and the Rust memory \
         plugin, {c} with nbdkit's C memory plugin"
    );
}
