//! The memory plugin through the shim: a sparse RAM disk that keeps what clients write for as
//! long as nbdkit runs. Data is checked byte for byte against what was written, allocation
//! through `nbdinfo --map`, and capabilities as the client sees them.
//!
//! The disk lives only as long as its nbdkit, so tests that need several clients serve it in
//! the background (the harness's server) and run them all against it.

use rustshim_tests::*;

/// `plugin=<memory plugin>` followed by `args`.
fn memory_args(args: &[&str]) -> Vec<String> {
    let mut all = vec![format!("plugin={}", plugin("memory").display())];
    all.extend(args.iter().map(|a| a.to_string()));
    all
}

/// The memory plugin served in the background with nbdkit's `options` (filters) and `args`.
fn memory_server(options: &[&str], args: &[&str]) -> Server {
    serve(options, &memory_args(args))
}

/// Python defining `connect()`, which returns a new handle connected to the server, asking for
/// allocation information (for [`ServerClients::client`] scripts).
const CONNECT: &str = "def connect():\n    \
                           h = nbd.NBD()\n    \
                           h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)\n    \
                           h.connect_unix(SOCKET)\n    \
                           return h\n";

/// `nbdinfo --map` of the server's export.
fn map(server: &Server) -> String {
    run(command("nbdinfo").arg("--map").arg(server.uri()))
        .ok()
        .stdout
}

const HOLE: u32 = 3; // hole|zero
const DATA: u32 = 0;
const K: u64 = 1024;
const M: u64 = 1024 * 1024;

#[test]
fn size_is_required() {
    let out = nbdkit(&memory_args(&[])).failed();
    assert!(out.stderr.contains("size=<SIZE>"), "{}", out.stderr);
}

/// Random data written at aligned, unaligned, page-crossing and end-of-disk offsets reads back
/// exactly, and what was not written reads as zeroes.
#[test]
fn random_data_reads_back_at_several_offsets() {
    let dir = temp_dir("memory-rw");
    let size = 64 * M;
    // (offset, length): aligned; unaligned inside one page; across several pages from an odd
    // offset; the last bytes of the disk.
    let writes = [
        (0, 64 * K),
        (5 * M + 4097, 3000),
        (9 * M - 12345, 300_000),
        (size - 70_001, 70_001),
    ];
    let mut script = String::new();
    for (i, &(offset, len)) in writes.iter().enumerate() {
        let data = dir.join(format!("in{i}"));
        std::fs::write(&data, pattern(i as u64 + 1, len as usize)).unwrap();
        script += &format!("h.pwrite(open({}, 'rb').read(), {offset})\n", py(&data));
    }
    for (i, &(offset, len)) in writes.iter().enumerate() {
        let out = dir.join(format!("out{i}"));
        script += &format!("open({}, 'wb').write(h.pread({len}, {offset}))\n", py(&out));
    }
    // Never written: between the writes, and a whole untouched region.
    script += "print(h.pread(4096, 64 * 1024) == bytes(4096), \
               h.pread(1 << 20, 20 << 20) == bytes(1 << 20))";
    let out = nbdsh(&memory_args(&[&format!("size={size}")]), &script).ok();
    assert_eq!(
        out.stdout.trim(),
        "True True",
        "unwritten regions must read as zeroes"
    );
    for (i, &(offset, len)) in writes.iter().enumerate() {
        let back = std::fs::read(dir.join(format!("out{i}"))).unwrap();
        assert!(
            back == pattern(i as u64 + 1, len as usize),
            "data written at {offset} ({len} bytes) did not read back"
        );
    }
}

/// `size=1T` starts at once and costs memory only for the pages written: 64 writes spread over
/// the whole terabyte leave nbdkit far below what a table of 2²⁵ pages alone would take.
#[test]
fn a_terabyte_disk_uses_memory_only_for_written_pages() {
    let server = memory_server(&[], &["size=1T"]);
    let out = server
        .client(&format!(
            "{CONNECT}\
             h = connect()\n\
             print('size', h.get_size())\n\
             for i in range(64):\n    \
                 h.pwrite(b'\\x5a' * 4096, i * (16 << 30) + 12345)\n\
             assert h.pread(4096, 3 * (16 << 30) + 12345) == b'\\x5a' * 4096\n\
             print('unwritten zero', h.pread(65536, (1 << 40) - 65536) == bytes(65536),\n      \
                   h.pread(65536, 500 << 30) == bytes(65536))"
        ))
        .ok();
    assert!(
        out.stdout.contains(&format!("size {}", 1u64 << 40)),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("unwritten zero True True"),
        "{}",
        out.stdout
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in {status}"));
    assert!(
        rss_kib < 64 * 1024,
        "nbdkit uses {rss_kib} KiB for 64 written pages of a 1T disk"
    );
}

/// `nbdinfo --map` shows written pages as data and the rest as holes, neighbours merged; after
/// a trim and a zero (which may trim) the freed pages are holes again. With REQ_ONE the first
/// extent alone comes back.
#[test]
fn extents_show_holes_and_data_after_writes() {
    let server = memory_server(&[], &["size=1M"]);
    // 64 KiB writes at 64 KiB boundaries: whole pages for any page size up to 64 KiB.
    server
        .client(
            "h.connect_unix(SOCKET)\n\
             h.pwrite(b'\\x01' * 131072, 128 * 1024)\n\
             h.pwrite(b'\\x02' * 65536, 512 * 1024)\n\
             h.pwrite(b'\\x03' * 65536, 960 * 1024)",
        )
        .ok();
    let before = map(&server);
    let req_one = server
        .client(&format!(
            "{CONNECT}\
             h = connect()\n\
             got = []\n\
             h.block_status(1 << 20, 0, lambda ctx, off, entries, err: got.extend(entries),\n               \
                            flags=nbd.CMD_FLAG_REQ_ONE)\n\
             print(got)"
        ))
        .ok()
        .stdout;
    server
        .client("h.connect_unix(SOCKET)\nh.trim(65536, 128 * 1024)\nh.zero(65536, 512 * 1024)")
        .ok();
    let after = map(&server);
    assert_eq!(
        parse_map(&before),
        [
            (0, 128 * K, HOLE),
            (128 * K, 128 * K, DATA),
            (256 * K, 256 * K, HOLE),
            (512 * K, 64 * K, DATA),
            (576 * K, 384 * K, HOLE),
            (960 * K, 64 * K, DATA),
        ],
        "{before}"
    );
    assert_eq!(req_one.trim(), format!("[{}, {HOLE}]", 128 * K));
    assert_eq!(
        parse_map(&after),
        [
            (0, 192 * K, HOLE),
            (192 * K, 64 * K, DATA),
            (256 * K, 704 * K, HOLE),
            (960 * K, 64 * K, DATA),
        ],
        "{after}"
    );
}

/// Zero (plain, FAST_ZERO, NO_HOLE) and trim all read back as zeroes, at unaligned offsets, and
/// nothing outside their ranges changes. FAST_ZERO succeeds: zeroing RAM is fast.
#[test]
fn zero_and_trim_read_back_as_zeroes() {
    let dir = temp_dir("memory-zero");
    let len = 512 * 1024;
    let data = pattern(7, len);
    let input = dir.join("in");
    let output = dir.join("out");
    std::fs::write(&input, &data).unwrap();
    // (count, offset, how)
    let ops: [(usize, usize, &str); 4] = [
        (65536, 10_000, "h.zero"),
        (100_000, 140_000, "h.zero+fast"),
        (33_333, 250_001, "h.zero+nohole"),
        (80_000, 400_000, "h.trim"),
    ];
    let mut script = format!("h.pwrite(open({}, 'rb').read(), 0)\n", py(&input));
    let mut expected = data.clone();
    for &(count, offset, how) in &ops {
        script += &match how {
            "h.zero" => format!("h.zero({count}, {offset})\n"),
            "h.zero+fast" => format!("h.zero({count}, {offset}, flags=nbd.CMD_FLAG_FAST_ZERO)\n"),
            "h.zero+nohole" => format!("h.zero({count}, {offset}, flags=nbd.CMD_FLAG_NO_HOLE)\n"),
            _ => format!("h.trim({count}, {offset})\n"),
        };
        expected[offset..offset + count].fill(0);
    }
    script += &format!("open({}, 'wb').write(h.pread({len}, 0))\n", py(&output));
    nbdsh(&memory_args(&["size=1M"]), &script).ok();
    let back = std::fs::read(&output).unwrap();
    assert_eq!(back.len(), len);
    for (i, (got, want)) in back.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "byte {i} differs after zero/trim");
    }
}

/// The client sees FUA, multi-conn, fast zero, trim, zero, cache and flush; nbdkit's log filter
/// shows FUA and cache as native (2) and the FUA flag passed down with the write; the FUA write
/// reads back.
#[test]
fn fua_write_and_capabilities_as_seen_by_the_client() {
    let dir = temp_dir("memory-fua");
    let log = dir.join("log");
    let server = memory_server(
        &["--filter=log"],
        &["size=1M", &format!("logfile={}", log.display())],
    );
    let out = server
        .client(
            "h.connect_unix(SOCKET)\n\
             h.pwrite(b'\\xfa' * 4096, 8192, flags=nbd.CMD_FLAG_FUA)\n\
             assert h.pread(4096, 8192) == b'\\xfa' * 4096\n\
             h.cache(65536, 0)\n\
             h.flush()\n\
             print(h.can_fua(), h.can_multi_conn(), h.can_fast_zero(), h.can_trim(), h.can_zero(),\n      \
                   h.can_cache(), h.can_flush(), h.is_read_only())\n\
             h.shutdown()",
        )
        .ok();
    assert_eq!(
        out.stdout.trim(),
        "True True True True True True True False"
    );
    // Stopped, so the log filter has written everything.
    server.stop().unwrap();
    let log = std::fs::read_to_string(&log).unwrap();
    let connect = log.lines().find(|l| l.contains("Connect")).unwrap();
    for field in ["fua=2", "cache=2", "fast_zero=1", "zero=2", "trim=1"] {
        assert!(
            connect.split_whitespace().any(|f| f == field),
            "{field} missing: {connect}"
        );
    }
    assert!(
        log.lines()
            .any(|l| l.contains("Write") && l.contains("offset=0x2000") && l.contains("fua=1")),
        "the FUA flag did not reach the plugin:\n{log}"
    );
}

/// A local file with data and zero runs, copied into the disk by `nbdcopy` over 4 connections
/// with many small parallel requests, then copied back out: `qemu-img compare` finds both
/// identical, and so does a byte comparison.
fn nbdcopy_round_trip(options: &[&str]) {
    let dir = temp_dir("memory-copy");
    let size = 8 * M as usize;
    let mut data = pattern(42, size);
    // Zero runs that nbdcopy will send as zero requests.
    data[M as usize..3 * M as usize].fill(0);
    data[6 * M as usize + 1000..7 * M as usize].fill(0);
    let src = dir.join("src.img");
    let dst = dir.join("dst.img");
    std::fs::write(&src, &data).unwrap();
    let server = memory_server(options, &[&format!("size={size}")]);
    run(command("nbdcopy")
        .args(["--connections=4", "--requests=32", "--request-size=4096"])
        .arg(&src)
        .arg(server.uri()))
    .ok();
    run(command("nbdcopy").arg(server.uri()).arg(&dst)).ok();
    let out = run(command("qemu-img")
        .args(["compare", "-f", "raw", "-F", "raw"])
        .arg(&src)
        .arg(&dst))
    .ok();
    assert!(
        out.stdout.contains("Images are identical"),
        "{}",
        out.stdout
    );
    assert!(
        std::fs::read(&dst).unwrap() == data,
        "copied-out data differs"
    );
}

#[test]
fn nbdcopy_round_trip_is_identical() {
    nbdcopy_round_trip(&[]);
}

#[test]
fn nbdcopy_round_trip_under_the_cow_filter_is_identical() {
    nbdcopy_round_trip(&["--filter=cow"]);
}

/// Data written on one connection is read on another at once, and zero and trim done on the
/// second are seen by the first: what multi-conn promises.
#[test]
fn writes_on_one_connection_are_seen_on_another() {
    let dir = temp_dir("memory-multi");
    let input = dir.join("in");
    std::fs::write(&input, pattern(3, 200_000)).unwrap();
    let server = memory_server(&[], &["size=1M"]);
    let out = server
        .client(&format!(
            "{CONNECT}\
             a, b = connect(), connect()\n\
             data = open({input}, 'rb').read()\n\
             print('multi_conn', a.can_multi_conn(), b.can_multi_conn())\n\
             a.pwrite(data, 77777)\n\
             print('b reads a', b.pread(len(data), 77777) == data)\n\
             b.zero(1000, 80000)\n\
             b.trim(65536, 131072)\n\
             expected = bytearray(data)\n\
             expected[80000 - 77777:81000 - 77777] = bytes(1000)\n\
             expected[131072 - 77777:196608 - 77777] = bytes(65536)\n\
             print('a reads b', a.pread(len(data), 77777) == expected)",
            input = py(&input)
        ))
        .ok();
    assert_eq!(
        out.stdout.trim(),
        "multi_conn True True\nb reads a True\na reads b True"
    );
}
