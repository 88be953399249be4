//! The reload race: a watched plugin file that is rewritten in place (`cp`) and truncated while
//! reloads load it. Whatever the timing, nbdkit must not die: a torn or truncated build is
//! refused with one line, a complete one is loaded or found unchanged, and the export keeps
//! serving. (Before the shim loaded exactly the bytes it had checked, this killed nbdkit with
//! SIGBUS within a few dozen tries.)

use std::io::Write;
use std::time::{Duration, Instant};

use rustshim_tests::*;

/// Where the loadable segments of an ELF file end: a cut before that leaves pages the dynamic
/// linker would map missing.
fn loaded_end(elf: &[u8]) -> u64 {
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap());
    let (phoff, phnum) = (
        u64_at(0x20) as usize,
        u16::from_le_bytes([elf[0x38], elf[0x39]]),
    );
    (0..phnum as usize)
        .map(|i| phoff + i * 56)
        .filter(|&ph| elf[ph] == 1)
        .map(|ph| u64_at(ph + 8) + u64_at(ph + 0x20))
        .max()
        .unwrap()
}

/// Rewrites `to` in place, as `cp` does (the same inode, truncated, then written).
fn copy_in_place(to: &std::path::Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(to)
        .unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn copies_in_place_and_truncations_racing_reloads_never_kill_nbdkit() {
    let dir = temp_dir("reload-race");
    let watched = dir.join("libnull.so");
    install_build(&plugin("null"), &watched, Install::RenameOver);
    let builds = [
        std::fs::read(plugin("null")).unwrap(),
        std::fs::read(rebuilt(&plugin("null"), &dir, "b")).unwrap(),
    ];
    let server = serve(
        &[],
        &[
            format!("plugin={}", watched.display()),
            "reload=watch".into(),
            "size=1M".into(),
        ],
    );
    let tries: u64 = std::env::var("RUSTSHIM_RACE_TRIES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(80);
    let mut seed = 0x5eed_u64;
    let mut next = |below: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % below
    };
    let end = loaded_end(&builds[0]);
    let started = Instant::now();
    for n in 0..tries {
        // Mostly the same build again and again (a `cp` that changes nothing), sometimes the
        // other one; every third time cut short inside its loadable segments. The shim starts
        // reading at the close of each write, so each cut and each next copy lands within a few
        // tens of ms of it, while the shim is reading or loading the file.
        let bytes = &builds[usize::from(n % 5 == 4)];
        copy_in_place(&watched, bytes);
        if n % 3 == 2 {
            std::thread::sleep(Duration::from_millis(next(20)));
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&watched)
                .unwrap();
            f.set_len(4096 + next(end - 4096)).unwrap();
        }
        std::thread::sleep(Duration::from_millis(5 + next(30)));
        assert!(
            server.is_running(),
            "nbdkit died at try {n}:\n{}",
            server.log()
        );
    }
    // Let the last build load, then the export must still serve.
    std::fs::write(&watched, &builds[0]).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert!(server.is_running(), "nbdkit died:\n{}", server.log());
    let out = server
        .client("h = nbd.NBD()\nh.connect_unix(SOCKET)\nprint(h.get_size())")
        .ok();
    assert_eq!(out.stdout.trim(), "1048576");
    let log = server.log();
    for line in log.lines() {
        assert!(
            line.chars().all(|c| !c.is_control()),
            "a control character in: {line:?}"
        );
    }
    eprintln!(
        "{tries} tries in {:.1} s: {} reloads, {} refused",
        started.elapsed().as_secs_f64(),
        log.matches("serves new connections").count(),
        log.matches("refused, generation").count()
    );
}
