//! Files the tests make: temporary directories, pattern data, new builds of a plugin landing on
//! a watched path, and `nbdinfo --map` output.

use std::path::{Path, PathBuf};

use rustshim_harness::TempDir;

/// A fresh private temporary directory named after `tag`, removed on drop.
#[track_caller]
pub fn temp_dir(tag: &str) -> TempDir {
    TempDir::with_prefix(&format!("rustshim-test-{tag}")).expect("a temporary directory")
}

/// Deterministic pseudo-random bytes (xorshift), so data tests need no extra crate.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Ways a new build lands on a plugin's path.
#[derive(Copy, Clone, Debug)]
pub enum Install {
    /// Write to a temporary name, rename over (cargo, `install`, most tools).
    RenameOver,
    /// Truncate and rewrite the same file (`cp new old`).
    CopyInPlace,
    /// Remove, then create anew.
    DeleteCreate,
}

/// Puts `from`'s contents at `to` the given way.
pub fn install_build(from: &Path, to: &Path, how: Install) {
    match how {
        Install::RenameOver => {
            let tmp = to.with_extension("so.tmp");
            std::fs::copy(from, &tmp).unwrap();
            std::fs::rename(&tmp, to).unwrap();
        }
        Install::CopyInPlace => {
            std::fs::copy(from, to).unwrap();
        }
        Install::DeleteCreate => {
            let _ = std::fs::remove_file(to);
            std::fs::copy(from, to).unwrap();
        }
    }
}

/// Another build of `plugin`: the same code with bytes appended (which the loader ignores),
/// so a different file, as a rebuild would give.
pub fn rebuilt(plugin: &Path, dir: &TempDir, tag: &str) -> PathBuf {
    let mut bytes = std::fs::read(plugin).unwrap();
    bytes.extend_from_slice(format!("\0rebuilt {tag}\0").as_bytes());
    let path = dir.join(format!("rebuilt-{tag}.so"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The extents in `nbdinfo --map` output: (offset, length, type).
pub fn parse_map(text: &str) -> Vec<(u64, u64, u32)> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert!(fields.len() >= 3, "not a map line: {line:?}");
            (
                fields[0].parse().unwrap(),
                fields[1].parse().unwrap(),
                fields[2].parse().unwrap(),
            )
        })
        .collect()
}
