//! Corrupt plugin files: one-byte mutations of a valid plugin in the parts the dynamic linker
//! and the ABI check read (ELF and program headers, the dynamic section, symbol, string, hash
//! and version tables, relocations, notes, the read-only data the layout check follows).
//! Whatever the byte, nbdkit either serves or refuses the file with one readable line naming it
//! and exit status 1: no signal, no hang, no second line. (The plugin's machine code is not
//! mutated: a damaged instruction fails when the plugin runs it, as in any program.)
//!
//! A few hundred cases run here (`RUSTSHIM_FUZZ_CASES`, `RUSTSHIM_FUZZ_SEED` change that);
//! `cargo xtask fuzz` runs more.

use std::path::Path;

use rustshim_tests::*;

/// The byte ranges of `elf` the loader touches: (start, end).
fn loader_regions(elf: &[u8]) -> Vec<(usize, usize)> {
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) as usize;
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap()) as usize;
    let mut regions = vec![(0, 64)];
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    regions.push((phoff, phoff + phentsize * phnum));
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        // PT_DYNAMIC, PT_NOTE, PT_GNU_EH_FRAME, PT_GNU_PROPERTY. (Not the code: a damaged
        // instruction crashes when the plugin runs it, which no loader can know.)
        if let 2 | 4 | 0x6474_e550 | 0x6474_e553 = u32_at(ph) {
            regions.push((u64_at(ph + 8), u64_at(ph + 8) + u64_at(ph + 0x20)))
        }
    }
    // Sections by name: the dynamic linker's tables, and the read-only data abi_stable reads.
    let (shoff, shentsize, shnum, shstrndx) =
        (u64_at(0x28), u16_at(0x3a), u16_at(0x3c), u16_at(0x3e));
    let names = u64_at(shoff + shstrndx * shentsize + 0x18);
    for i in 0..shnum {
        let sh = shoff + i * shentsize;
        let name_at = names + u32_at(sh);
        let end = elf[name_at..].iter().position(|&b| b == 0).unwrap();
        let name = std::str::from_utf8(&elf[name_at..name_at + end]).unwrap_or("");
        let (offset, size) = (u64_at(sh + 0x18), u64_at(sh + 0x20));
        let wanted = [
            ".dynsym",
            ".dynstr",
            ".gnu.hash",
            ".hash",
            ".gnu.version",
            ".gnu.version_r",
            ".gnu.version_d",
            ".rela.dyn",
            ".rela.plt",
            ".dynamic",
            ".init_array",
            ".data.rel.ro",
        ];
        if wanted.contains(&name) && u32_at(sh + 4) != 8 {
            // Long tables: a window at their start and one at a random place is enough.
            regions.push((offset, offset + size.min(64 << 10)));
        }
    }
    regions.retain(|(a, b)| a < b && *b <= elf.len());
    regions
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// One case: `good` with the byte at a random place of a random region changed.
fn mutate(good: &[u8], regions: &[(usize, usize)], rng: &mut Rng) -> (Vec<u8>, usize, u8) {
    let (a, b) = regions[rng.below(regions.len())];
    let at = a + rng.below(b - a);
    let mut bad = good.to_vec();
    let new = match rng.below(4) {
        0 => 0,
        1 => 0xff,
        2 => bad[at] ^ (1 << rng.below(8)),
        _ => rng.below(256) as u8,
    };
    let new = if new == bad[at] { !new } else { new };
    bad[at] = new;
    (bad, at, new)
}

/// What went wrong with one case, if anything.
fn judge(file: &Path, out: &Run) -> Option<String> {
    use std::os::unix::process::ExitStatusExt;
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    if let Some(signal) = out.status.signal() {
        return Some(format!("killed by signal {signal}"));
    }
    match out.status.code() {
        Some(0) => None,
        Some(1) => {
            let lines: Vec<&str> = out.stderr.lines().collect();
            if lines.len() != 1 {
                Some(format!("{} lines on stderr", lines.len()))
            } else if !lines[0].contains(&name) {
                Some("the line does not name the file".into())
            } else if lines[0].chars().any(|c| c.is_control() || c == '\u{fffd}') {
                Some("the line has raw bytes".into())
            } else if lines[0].contains("panicked at") || lines[0].contains("internal error") {
                Some("a panic".into())
            } else {
                None
            }
        }
        Some(124) | Some(137) => Some("hung".into()),
        Some(code) => Some(format!("exit status {code}")),
        None => Some("no exit status".into()),
    }
}

/// `nbdkit -U - SHIM plugin=FILE size=1M --run true`, with `$RUSTSHIM_FUZZ_SHIM` as the shim
/// if set (to count what another build of the shim does with the same cases).
fn serve(file: &Path) -> Run {
    let args = [format!("plugin={}", file.display()), "size=1M".into()];
    match std::env::var_os("RUSTSHIM_FUZZ_SHIM") {
        None => nbdkit_run(&args, "true"),
        // An older shim may leave its copy of the plugin in $TMPDIR: give it one to lose.
        Some(shim) => run(command("nbdkit")
            .env("TMPDIR", temp_dir("fuzz-tmpdir").path())
            .args(["-U", "-"])
            .arg(shim)
            .args(args)
            .args(["--run", "true"])),
    }
}

#[test]
fn one_byte_mutations_of_a_plugin_never_crash_nbdkit() {
    let cases: usize = std::env::var("RUSTSHIM_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(240);
    let seed: u64 = std::env::var("RUSTSHIM_FUZZ_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_261_203);
    let good = std::fs::read(plugin("null")).unwrap();
    let regions = loader_regions(&good);
    let dir = temp_dir("fuzz");
    let threads = 2;
    let failures = std::sync::Mutex::new(Vec::new());
    let (refused, served) = (
        std::sync::atomic::AtomicUsize::new(0),
        std::sync::atomic::AtomicUsize::new(0),
    );
    std::thread::scope(|s| {
        for t in 0..threads {
            let (good, regions, dir, failures) = (&good, &regions, &dir, &failures);
            let (refused, served) = (&refused, &served);
            s.spawn(move || {
                for case in (t..cases).step_by(threads) {
                    let mut rng = Rng((seed ^ (case as u64 + 1).wrapping_mul(0x9E37_79B9)) | 1);
                    let (bad, at, byte) = mutate(good, regions, &mut rng);
                    let file = dir.join(format!("libcase{case}.so"));
                    std::fs::write(&file, &bad).unwrap();
                    let out = serve(&file);
                    match judge(&file, &out) {
                        Some(why) => failures.lock().unwrap().push(format!(
                            "case {case} (byte {at:#x} := {byte:#04x}): {why}\n{}",
                            out.stderr.lines().take(3).collect::<Vec<_>>().join("\n")
                        )),
                        None if out.status.success() => {
                            served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        None => {
                            refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    let _ = std::fs::remove_file(&file);
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    eprintln!(
        "{cases} cases (seed {seed}): {} served, {} refused cleanly, {} failed",
        served.into_inner(),
        refused.into_inner(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {cases} mutated files were not handled cleanly:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn malformed_files_get_one_readable_line() {
    let dir = temp_dir("malformed");
    let good = std::fs::read(plugin("null")).unwrap();
    let mut cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("short", good[..63].to_vec(), "truncated"),
        ("header-only", good[..64].to_vec(), "truncated"),
        (
            "elf32",
            {
                let mut b = good.clone();
                b[4] = 1;
                b
            },
            "not a 64-bit",
        ),
    ];
    // A dependency name with raw bytes in it: the message must not print them.
    let mut binary_name = good.clone();
    if let Some(at) = find(&good, b"libgcc_s.so.1\0") {
        binary_name[at..at + 4].copy_from_slice(b"\x01\xfe\x1b[");
        cases.push(("binary-name", binary_name, "libcase-binary-name.so"));
    }
    for (tag, bytes, needle) in cases {
        let file = dir.join(format!("libcase-{tag}.so"));
        std::fs::write(&file, bytes).unwrap();
        let out = nbdkit_run(&[format!("plugin={}", file.display())], "true");
        assert_eq!(judge(&file, &out), None, "{tag}: {}", out.stderr);
        assert_eq!(out.status.code(), Some(1), "{tag}");
        assert!(out.stderr.contains(needle), "{tag}: {}", out.stderr);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
