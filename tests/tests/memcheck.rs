//! nbdkit with the shim under valgrind's memcheck: connections, reads, writes, zeroes, trims,
//! extents, a panicking request and a hot reload, against the memory, file and test plugins.
//! No invalid read or write, no use of uninitialised memory, and no definite leak (the one
//! deliberate, per-load leak of abi_stable's library handle is suppressed by name in
//! tests/fixtures/valgrind.supp).

use std::process::Stdio;

use rustshim_tests::*;

const WORKLOAD: &str = r#"
import nbd, os, sys
sock = sys.argv[1]
for c in range(4):
    h = nbd.NBD()
    h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    h.connect_unix(sock)
    for i in range(64):
        d = os.urandom(4096)
        h.pwrite(d, i * 4096)
        assert h.pread(4096, i * 4096) == d
    h.zero(65536, 0)
    h.trim(65536, 65536)
    h.block_status(1 << 20, 0, lambda *a: 0)
    h.flush()
    try:
        h.pread(512, 4096 * 1000)  # the test plugin panics here when asked to
    except nbd.Error:
        pass
    h.shutdown()
print('ok')
"#;

/// Runs nbdkit under memcheck with these arguments, the workload against it, and `during`
/// (given the socket and nbdkit's stderr file) while it serves; returns valgrind's log.
fn memcheck(args: &[String], during: impl FnOnce(&std::path::Path, &std::path::Path)) -> String {
    let dir = TempDir::new("memcheck");
    let socket = dir.join("sock");
    let log = dir.join("valgrind.log");
    let stderr = dir.join("nbdkit.stderr");
    let supp = workspace().join("tests/fixtures/valgrind.supp");
    let mut child = rustshim_harness::command("valgrind")
        .args([
            "--tool=memcheck",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
            "--track-origins=no",
        ])
        .arg(format!("--suppressions={}", supp.display()))
        .arg(format!("--log-file={}", log.display()))
        .args(["nbdkit", "-f", "-U"])
        .arg(&socket)
        .arg(shim())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("valgrind starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !socket.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "nbdkit died under valgrind:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(
            std::time::Instant::now() < deadline,
            "nbdkit did not start under valgrind"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = run(command("/usr/bin/python3")
        .args(["-c", WORKLOAD])
        .arg(&socket))
    .ok();
    assert_eq!(out.stdout.trim(), "ok");
    during(&socket, &stderr);
    // SIGTERM: nbdkit shuts down cleanly (cleanup, unload), so leaks are counted at a real exit.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        status.success(),
        "nbdkit under valgrind exited {status}:\n{text}"
    );
    text
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
    let dir = TempDir::new("memcheck-reload");
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
        |socket, stderr| {
            std::fs::write(dir.join("incoming"), &rebuilt).unwrap();
            std::fs::rename(dir.join("incoming"), &watched).unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
            while !std::fs::read_to_string(stderr)
                .unwrap()
                .contains("generation 2 from")
            {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{}",
                    std::fs::read_to_string(stderr).unwrap()
                );
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            // The workload again, now served by generation 2 (on the disk it took over).
            let out = run(command("/usr/bin/python3")
                .args(["-c", WORKLOAD])
                .arg(socket))
            .ok();
            assert_eq!(out.stdout.trim(), "ok");
        },
    );
    assert_clean(&log);
}

#[test]
fn file_plugin_is_clean_under_memcheck() {
    let dir = TempDir::new("memcheck-file");
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
        |_, _| {},
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
        |_, _| {},
    );
    assert_clean(&log);
}
