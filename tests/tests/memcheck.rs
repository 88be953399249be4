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
