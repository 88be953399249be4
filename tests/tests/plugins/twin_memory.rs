//! `memory` against nbdkit's C memory plugin, side by side on the same inputs: what `nbdinfo`
//! reports, the answer to every kind of request under each allocator, the largest sizes served
//! sparsely and written at their very end, `allocator=` taken or refused alike, and
//! `--dump-plugin`. Where nbdkit's own plugin differs between versions, the test says so for
//! each version; the twin follows nbdkit 1.42's.

use rustshim_tests::twin::*;
use rustshim_tests::*;

/// 2⁶³ − 1 bytes, the largest size nbdkit serves, and 2⁶³ − 2³⁰ (which qemu can open).
const HUGE: [u64; 2] = [i64::MAX as u64, 9_223_372_035_781_033_984];

/// nbdkit 1.42's memory plugin advertises block sizes (1, its page, unlimited); 1.32's does
/// not, and the twin always does.
#[test]
fn nbdinfo_sees_the_same_export() {
    for size in ["1M", "1G", "9223372036854775807"] {
        let twin = Twin::new("memory", &[size]);
        let [c, rust] = twin.both().map(|(_, s)| nbdinfo_json(&[], s));
        assert!(
            rust.contains("\"block_size_preferred\": 32768"),
            "size={size}: {rust}"
        );
        if nbdkit_at_least(&[1, 42]) {
            assert_eq!(c, rust, "size={size}: C (left) and rustshim (right) differ");
        } else {
            assert!(!c.contains("block_size"), "nbdkit 1.32's C plugin: {c}");
            let without: Vec<&str> = rust
                .lines()
                .filter(|l| !l.contains("block_size_"))
                .collect();
            let c: Vec<&str> = c.lines().collect();
            // The comma that ended the line before the block sizes.
            let strip = |v: Vec<&str>| -> Vec<String> {
                v.iter()
                    .map(|l| l.trim_end_matches(',').to_string())
                    .collect()
            };
            assert_eq!(strip(c), strip(without), "size={size}");
        }
    }
}

/// The sizes the C plugin serves sparsely are served by the twin too (they failed with "cannot
/// allocate a page table"), written and read back at their very end, with qemu-io where qemu
/// can open the size; the twin's memory follows what was written, not the size.
#[test]
fn the_largest_sizes_are_served_and_written_at_the_very_end() {
    let dir = temp_dir("twin-memory-huge");
    for size in HUGE {
        let twin = Twin::new("memory", &[format!("size={size}")]);
        let script = r#"
h.connect_command(argv)
size = h.get_size()
h.pwrite(b"\x5a" * 4096, size - 4096)
h.pwrite(b"\xa5" * 100, size - 10000)
print(size, h.pread(4096, size - 4096) == b"\x5a" * 4096,
      h.pread(300, size - 10100) == bytes(100) + b"\xa5" * 100 + bytes(100),
      h.pread(4096, size // 2) == bytes(4096), attempt(h.pread, 1, size))
h.shutdown()
"#;
        let [c, rust] = twin
            .both()
            .map(|(_, s)| stdio_client(s, script).ok().stdout);
        assert_eq!(c, format!("{size} True True True EINVAL\n"), "C");
        assert_eq!(c, rust, "size={size}: C (left) and rustshim (right)");
        if size == HUGE[1] {
            let end = size - 1024;
            for (label, server) in twin.both() {
                let out = serve_run(
                    &[],
                    server,
                    &format!(
                        "qemu-io -f raw -c 'write -P 0x55 {end} 512' -c 'read -P 0x55 {end} 512' \
                         -c 'read -P 0 {} 512' \"$uri\"",
                        end + 512
                    ),
                )
                .ok();
                assert_eq!(
                    out.stdout.matches("512/512 bytes at offset").count(),
                    3,
                    "{label}: {}",
                    out.stdout
                );
            }
        }
        // Memory: 64 pages written across the whole size.
        let pidfile = dir.join("pid");
        let _ = std::fs::remove_file(&pidfile);
        let mut server = vec!["-P".to_string(), pidfile.display().to_string()];
        server.extend(twin.rust.iter().cloned());
        let out = serve_run(
            &[],
            &server,
            &format!(
                "nbdsh -u \"$uri\" -c 'for i in range(64): h.pwrite(b\"x\" * 4096, \
                 i * (h.get_size() // 64))' && grep VmRSS /proc/$(cat {})/status",
                pidfile.display()
            ),
        )
        .ok();
        let rss_kib: u64 = out
            .stdout
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS in {}", out.stdout));
        assert!(rss_kib < 64 * 1024, "{rss_kib} KiB for 64 pages of {size}");
    }
}

/// Each allocator the twin takes: the same answers to the same requests.
#[test]
fn every_request_gets_the_same_answer_with_each_allocator() {
    for allocator in ["sparse", "malloc", "malloc,mlock=true"] {
        let twin = Twin::new("memory", &["size=1M", &format!("allocator={allocator}")]);
        let [c, rust] = requests(&twin);
        assert!(c.contains("extents "), "{c}");
        assert_eq!(
            c, rust,
            "allocator={allocator}: C (left) and rustshim (right)"
        );
    }
}

/// `allocator=` values: both serve the good ones, both refuse the bad ones for the same
/// reason; `zstd` is the C plugin's (when built with zstd) and refused by the twin in one line.
#[test]
fn allocator_values_are_taken_or_refused_alike() {
    for allocator in [
        "sparse",
        "malloc",
        "malloc,mlock=true",
        "malloc,mlock=false",
    ] {
        for (label, server) in
            Twin::new("memory", &["1M", &format!("allocator={allocator}")]).both()
        {
            let out = serve_run(&[], server, "nbdinfo --size \"$uri\"").ok();
            assert_eq!(
                out.stdout.trim(),
                "1048576",
                "{label} allocator={allocator}"
            );
        }
    }
    for (allocator, reason) in [
        ("bogus", "unknown allocator \"bogus\""),
        ("malloc,foo=1", "allocator=malloc: unknown parameter foo"),
        (
            "sparse,mlock=true",
            "allocator=sparse does not take extra parameters",
        ),
        ("malloc,mlock=bogus", "could not decipher boolean (bogus)"),
    ] {
        let [c, rust] = both_refuse(&Twin::new(
            "memory",
            &["1M", &format!("allocator={allocator}")],
        ));
        assert!(c.contains(reason), "C allocator={allocator}: {c}");
        assert!(
            rust.contains(reason),
            "rustshim allocator={allocator}: {rust}"
        );
    }
    // A malloc'd terabyte: neither has the memory.
    both_refuse(&Twin::new("memory", &["1T", "allocator=malloc"]));
    let twin = Twin::new("memory", &["1M", "allocator=zstd"]);
    let c_has_zstd = dump_plugin_lines(&twin.c).iter().any(|l| l == "zstd=yes");
    let c = serve_run(&[], &twin.c, "nbdinfo --size \"$uri\"");
    assert_eq!(c.status.success(), c_has_zstd, "C: {}", c.stderr);
    let rust = serve_run(&[], &twin.rust, "echo served").failed();
    assert_eq!(rust.stderr.lines().count(), 1, "{}", rust.stderr);
    assert!(
        rust.stderr.contains("allocator=zstd is not supported"),
        "{}",
        rust.stderr
    );
}

/// `--dump-plugin`: both have `mlock=yes`; the C plugin says whether it has zstd, the twin
/// that it has not.
#[test]
fn dump_plugin_says_which_allocators_there_are() {
    let twin = Twin::new("memory", &[] as &[&str]);
    let [c, rust] = twin.both().map(|(_, s)| dump_plugin_lines(s));
    assert!(c.iter().any(|l| l == "mlock=yes"), "C: {c:?}");
    assert!(c.iter().any(|l| l.starts_with("zstd=")), "C: {c:?}");
    assert!(rust.iter().any(|l| l == "mlock=yes"), "{rust:?}");
    assert!(rust.iter().any(|l| l == "zstd=no"), "{rust:?}");
    assert!(rust
        .iter()
        .any(|l| l == "rustshim_plugin_magic_config_key=size"));
    assert!(c.iter().any(|l| l == "magic_config_key=size"));
}
