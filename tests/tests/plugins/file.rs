//! The file plugin through the shim: a real file on disk served to real clients. Reads are
//! checked against the file's known contents, writes, trims and zeroes against the file on disk
//! after nbdkit has exited, holes through `nbdinfo --map` and the file's allocated blocks.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustshim_tests::*;

const K: u64 = 1024;
const M: u64 = 1024 * 1024;
const HOLE: u32 = 3; // hole|zero
const DATA: u32 = 0;

/// `plugin=<file plugin> file=PATH` followed by `args`.
fn file_args(path: &Path, args: &[&str]) -> Vec<String> {
    let mut all = vec![
        format!("plugin={}", plugin("file").display()),
        format!("file={}", path.display()),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    all
}

/// A file of `len` pattern bytes, written through to disk so that its blocks are allocated.
fn data_file(dir: &TempDir, name: &str, seed: u64, len: usize) -> (PathBuf, Vec<u8>) {
    let path = dir.join(name);
    let data = pattern(seed, len);
    std::fs::write(&path, &data).unwrap();
    std::fs::File::open(&path).unwrap().sync_all().unwrap();
    (path, data)
}

/// Reads at several offsets (including the odd-sized tail) return the file's bytes, the size is
/// the file's, the capabilities are what the plugin promises, and `qemu-img compare` finds the
/// export identical to a copy of the file.
#[test]
fn serves_the_file_contents() {
    let dir = temp_dir("file-read");
    let len = 4 * M as usize + 1234;
    let (disk, data) = data_file(&dir, "disk.img", 1, len);
    let copy = dir.join("copy.img");
    std::fs::copy(&disk, &copy).unwrap();

    let reads = [(0, 4096), (12345, 100_000), (len - 5000, 5000)];
    let mut script = String::from(
        "print(h.get_size(), h.can_fua(), h.can_multi_conn(), h.can_trim(), h.can_zero(), \
         h.can_fast_zero(), h.can_flush(), h.is_read_only())\n",
    );
    for (i, (offset, count)) in reads.iter().enumerate() {
        let out = dir.join(format!("out{i}"));
        script += &format!(
            "open({}, 'wb').write(h.pread({count}, {offset}))\n",
            py(&out)
        );
    }
    let out = nbdsh(&file_args(&disk, &[]), &script).ok();
    assert_eq!(
        out.stdout.trim(),
        // No fast zero, like nbdkit's file plugin (nbdkit's default when `zero` exists).
        format!("{len} True True True True False True False")
    );
    for (i, &(offset, count)) in reads.iter().enumerate() {
        let back = std::fs::read(dir.join(format!("out{i}"))).unwrap();
        assert!(
            back == data[offset..offset + count],
            "read of {count} bytes at {offset} differs from the file"
        );
    }

    let out = nbdkit_run(
        &file_args(&disk, &["-r"]),
        &format!("qemu-img compare -f raw {} \"$uri\"", copy.display()),
    )
    .ok();
    assert!(
        out.stdout.contains("Images are identical"),
        "{}",
        out.stdout
    );
}

/// Writes (plain, unaligned, FUA) and a flush land in the file: after nbdkit exits the file on
/// disk holds exactly the written bytes, and nothing else changed.
#[test]
fn writes_land_in_the_file() {
    let dir = temp_dir("file-write");
    let (disk, mut expected) = data_file(&dir, "disk.img", 2, 2 * M as usize);
    let writes = [
        (0usize, 65536usize),
        (777_777, 12345),
        (2 * M as usize - 100, 100),
    ];
    let mut script = String::new();
    for (i, &(offset, len)) in writes.iter().enumerate() {
        let new = pattern(100 + i as u64, len);
        let input = dir.join(format!("in{i}"));
        std::fs::write(&input, &new).unwrap();
        let flags = if i == 1 {
            ", flags=nbd.CMD_FLAG_FUA"
        } else {
            ""
        };
        script += &format!(
            "h.pwrite(open({}, 'rb').read(), {offset}{flags})\n",
            py(&input)
        );
        expected[offset..offset + len].copy_from_slice(&new);
    }
    script += "h.flush()\n";
    nbdsh(&file_args(&disk, &[]), &script).ok();
    assert!(
        std::fs::read(&disk).unwrap() == expected,
        "the file on disk does not hold what was written"
    );
}

/// A trim punches a hole: the range reads back as zeroes, `nbdinfo --map` shows it as a hole,
/// and the file's allocated blocks shrink by about its size.
#[test]
fn trim_punches_a_hole() {
    let dir = temp_dir("file-trim");
    let (disk, mut expected) = data_file(&dir, "disk.img", 3, 4 * M as usize);
    let blocks_before = std::fs::metadata(&disk).unwrap().blocks();

    let out = nbdsh(
        &file_args(&disk, &[]),
        "h.trim(1 << 20, 1 << 20)\nprint(h.pread(1 << 20, 1 << 20) == bytes(1 << 20))",
    )
    .ok();
    assert_eq!(
        out.stdout.trim(),
        "True",
        "the trimmed range must read as zeroes"
    );
    expected[M as usize..2 * M as usize].fill(0);
    assert!(std::fs::read(&disk).unwrap() == expected);

    // st_blocks counts 512-byte units: 1 MiB is 2048 of them.
    let blocks_after = std::fs::metadata(&disk).unwrap().blocks();
    assert!(
        blocks_after + 2000 <= blocks_before,
        "no hole punched: {blocks_before} blocks before, {blocks_after} after"
    );

    let map = nbdinfo(&["--map"], &file_args(&disk, &["-r"])).ok();
    assert_eq!(
        parse_map(&map.stdout),
        [(0, M, DATA), (M, M, HOLE), (2 * M, 2 * M, DATA)],
        "{}",
        map.stdout
    );
}

/// Zeroing works with every flag combination a client can send, at unaligned offsets: the file
/// on disk reads zero exactly in the zeroed ranges. Plain zero may punch a hole (the file gets
/// smaller on disk); NO_HOLE keeps the blocks allocated.
#[test]
fn zero_reads_back_as_zeroes() {
    let dir = temp_dir("file-zero");
    let (disk, mut expected) = data_file(&dir, "disk.img", 4, 4 * M as usize);
    let ops: [(usize, usize, &str); 4] = [
        (M as usize, 0, ""),
        (100_000, 1_500_001, ", flags=nbd.CMD_FLAG_NO_HOLE"),
        (3000, 2_000_500, ", flags=nbd.CMD_FLAG_FUA"),
        (
            300_000,
            3_000_000,
            ", flags=nbd.CMD_FLAG_FUA | nbd.CMD_FLAG_NO_HOLE",
        ),
    ];
    let mut script = String::new();
    for &(count, offset, flags) in &ops {
        script += &format!("h.zero({count}, {offset}{flags})\n");
        expected[offset..offset + count].fill(0);
    }
    let blocks_before = std::fs::metadata(&disk).unwrap().blocks();
    nbdsh(&file_args(&disk, &[]), &script).ok();
    let on_disk = std::fs::read(&disk).unwrap();
    assert_eq!(
        on_disk.len(),
        expected.len(),
        "zeroing changed the file size"
    );
    for (i, (got, want)) in on_disk.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "byte {i} differs after zeroing");
    }
    // The first zero (MAY_TRIM) punched 1 MiB; the NO_HOLE ones freed little or nothing.
    let blocks_after = std::fs::metadata(&disk).unwrap().blocks();
    assert!(
        blocks_after + 2000 <= blocks_before && blocks_after + 3000 > blocks_before,
        "{blocks_before} blocks before, {blocks_after} after"
    );
}

/// On tmpfs, which punches holes but cannot zero a range in place, a NO_HOLE zero falls back to
/// writing zeroes and succeeds. Fast zero is not advertised (as by nbdkit's file plugin), so a
/// client never asks for a zero that could not be fast.
#[test]
fn zero_without_fallocate_support_falls_back_or_fails_fast() {
    let shm = Path::new("/dev/shm");
    if nix::sys::statfs::statfs(shm).map(|s| s.filesystem_type())
        != Ok(nix::sys::statfs::TMPFS_MAGIC)
    {
        eprintln!("skipped: /dev/shm is not tmpfs");
        return;
    }
    let disk = shm.join(format!("rustshim-test-file-zero-{}", std::process::id()));
    let data = pattern(5, M as usize);
    std::fs::write(&disk, &data).unwrap();
    let out = nbdsh(
        &file_args(&disk, &[]),
        "h.zero(65536, 4096, flags=nbd.CMD_FLAG_NO_HOLE)\n\
         print('fast zero', h.can_fast_zero())\n\
         h.zero(4096, 300000)",
    );
    let on_disk = std::fs::read(&disk);
    let _ = std::fs::remove_file(&disk);
    let out = out.ok();
    assert_eq!(out.stdout.trim(), "fast zero False");
    let mut expected = data;
    expected[4096..4096 + 65536].fill(0);
    expected[300_000..304_096].fill(0);
    assert!(
        on_disk.unwrap() == expected,
        "tmpfs file differs after zeroing"
    );
}

/// `nbdkit -r` (after the plugin, as nbdkit takes its options anywhere): the client sees a
/// read-only export, a write fails with EPERM, and the file is unchanged.
#[test]
fn nbdkit_r_makes_the_export_read_only() {
    let dir = temp_dir("file-ro");
    let (disk, data) = data_file(&dir, "disk.img", 6, 1 << 20);
    let out = nbdsh(
        &file_args(&disk, &["-r"]),
        "print(h.is_read_only())\n\
         try:\n    \
             h.pwrite(b'x' * 512, 0)\n    \
             print('write succeeded')\n\
         except nbd.Error as e:\n    \
             print(e.errno)",
    )
    .ok();
    assert_eq!(out.stdout.trim(), "True\nEPERM");
    assert!(std::fs::read(&disk).unwrap() == data);
}

/// A missing file stops nbdkit at startup with one line naming the file and the reason.
#[test]
fn a_missing_file_is_one_clear_error() {
    let dir = temp_dir("file-missing");
    let missing = dir.join("no-such-disk.img");
    let out = nbdkit(&file_args(&missing, &[])).failed();
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", out.stderr);
    assert!(
        lines[0].contains(&missing.display().to_string())
            && lines[0].contains("No such file or directory"),
        "{}",
        out.stderr
    );
}

/// A sparse file (a hole, 64 KiB of data, a hole up to the end) maps as exactly that.
#[test]
fn extents_of_a_sparse_file() {
    let dir = temp_dir("file-sparse");
    let disk = dir.join("sparse.img");
    let file = std::fs::File::create(&disk).unwrap();
    file.set_len(8 * M).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &pattern(8, 64 * K as usize), 3 * M).unwrap();
    file.sync_all().unwrap();
    let out = nbdinfo(&["--map"], &file_args(&disk, &[])).ok();
    assert_eq!(
        parse_map(&out.stdout),
        [
            (0, 3 * M, HOLE),
            (3 * M, 64 * K, DATA),
            (3 * M + 64 * K, 5 * M - 64 * K, HOLE)
        ],
        "{}",
        out.stdout
    );
}

/// qemu-io writes a pattern through NBD and verifies it on reading; the file holds it after.
#[test]
fn qemu_io_writes_and_verifies_a_pattern() {
    let dir = temp_dir("file-qemu-io");
    let (disk, mut expected) = data_file(&dir, "disk.img", 9, M as usize);
    let out = nbdkit_run(
        &file_args(&disk, &[]),
        "qemu-io -f raw -c 'write -P 0xab 0 64k' -c 'read -P 0xab 0 64k' \"$uri\"",
    )
    .ok();
    assert!(
        out.stdout.contains("wrote 65536/65536 bytes")
            && out.stdout.contains("read 65536/65536 bytes")
            && !out.stdout.contains("failed"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    expected[..64 * K as usize].fill(0xab);
    assert!(std::fs::read(&disk).unwrap() == expected);
}

/// nbdkit run as a daemon (no `-f`), killed by its pid when dropped.
struct Daemon(nix::unistd::Pid);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGTERM);
    }
}

/// `file=` relative to nbdkit's working directory still works once nbdkit has forked into the
/// background and changed directory to `/`: the plugin made the path absolute while configuring.
#[test]
fn a_relative_path_works_after_nbdkit_daemonizes() {
    let dir = temp_dir("file-relative");
    let (_, data) = data_file(&dir, "disk.img", 10, 65536);
    let socket = dir.join("sock");
    let pidfile = dir.join("pid");
    run_nbdkit(
        shim_nbdkit()
            .current_dir(dir.path())
            .nbdkit_arg("-U")
            .nbdkit_arg(&socket)
            .nbdkit_arg("-P")
            .nbdkit_arg(&pidfile)
            .arg(format!("plugin={}", plugin("file").display()))
            .arg("file=disk.img"),
    )
    .ok();
    // The background nbdkit writes its pid file just after the parent exits.
    let deadline = Instant::now() + Duration::from_secs(10);
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            break pid;
        }
        assert!(Instant::now() < deadline, "nbdkit wrote no pid file");
        std::thread::sleep(Duration::from_millis(20));
    };
    let _daemon = Daemon(nix::unistd::Pid::from_raw(pid));
    let out = dir.join("out");
    run(command("nbdsh")
        .arg("-u")
        .arg(format!("nbd+unix:///?socket={}", socket.display()))
        .arg("-c")
        .arg(format!("open({}, 'wb').write(h.pread(65536, 0))", py(&out))))
    .ok();
    assert!(std::fs::read(&out).unwrap() == data);
}
