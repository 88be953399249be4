//! This repository as it was at an earlier commit: its shim and example plugins built from
//! `git archive COMMIT`, as an admin who has not upgraded, or a vendor who built against an
//! earlier `rustshim-plugin-api`, has them.
//!
//! There are no release tags; the releases of `rustshim-plugin-api` are the commits where its
//! version was last 1.0.0 and first 1.1.0 (`git log -p -- plugin-api/Cargo.toml`):
//!
//! * [`API_1_0_0`]: the last commit before the 1.1 host services were appended (28ddf25). The
//!   version said 1.0.0 from the first commit (4a1f975) on, but the ABI was still settling until
//!   c2d378c (the compatibility promise; `callback_names` and the hand-over callbacks came
//!   before it); from there to this commit the ABI did not change.
//! * [`API_1_1_0`]: 8b6f80c, where the version became 1.1.0.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use crate::artifacts::workspace;

/// `rustshim-plugin-api` 1.0.0: the last commit of its final ABI (see the module docs).
pub const API_1_0_0: &str = "cce0efdf688aa51f62db7042b57ddd0c2a688023";
/// `rustshim-plugin-api` 1.1.0: the commit that made it so.
pub const API_1_1_0: &str = "8b6f80c654d85d847d1eaa7b6ce3f753d9bd8be2";

/// What the tree of one commit built.
#[derive(Clone, Debug)]
pub struct Release {
    /// `libnbdkit_rustshim_plugin.so`, debug build.
    pub shim: PathBuf,
    /// Where its files are: `librustshim_NAME.so` of the example plugins.
    pub dir: PathBuf,
}

impl Release {
    /// The example plugin `librustshim_NAME.so` of that commit.
    pub fn plugin(&self, name: &str) -> PathBuf {
        let path = self.dir.join(format!("librustshim_{name}.so"));
        assert!(path.is_file(), "{} was not built", path.display());
        path
    }
}

/// The shim and the `null` and `memory` plugins as of `commit`, built once per test process
/// (incrementally across runs: the tree is unpacked under `target/fixtures/at-COMMIT`, built
/// into `target/fixtures/target-history`, which every commit shares, and what it built is
/// copied to `target/fixtures/built-COMMIT`).
pub fn release(commit: &str) -> Release {
    static BUILT: OnceLock<Mutex<Vec<(String, Release)>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, release)) = built.iter().find(|(c, _)| c == commit) {
        return release.clone();
    }
    let root = workspace();
    let tree = unpack(&root, commit);
    let target = root.join("target/fixtures/target-history");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--quiet", "--locked"])
        .args(["-p", "nbdkit-rustshim-plugin"])
        .args(["-p", "rustshim-null", "-p", "rustshim-memory"])
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .current_dir(&tree)
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "building the tree of {commit} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The commits share the target directory (their dependencies are built once), so each
    // one's outputs are copied out before another commit's build replaces them.
    let dir = root.join("target/fixtures").join(format!("built-{commit}"));
    std::fs::create_dir_all(&dir).unwrap();
    for name in [
        "libnbdkit_rustshim_plugin.so",
        "librustshim_null.so",
        "librustshim_memory.so",
    ] {
        std::fs::copy(target.join("debug").join(name), dir.join(name))
            .unwrap_or_else(|e| panic!("{commit}: {name}: {e}"));
    }
    let release = Release {
        shim: dir.join("libnbdkit_rustshim_plugin.so"),
        dir,
    };
    built.push((commit.to_string(), release.clone()));
    release
}

/// The tree of `commit`, unpacked once under `target/fixtures/at-COMMIT`.
fn unpack(root: &Path, commit: &str) -> PathBuf {
    let tree = root.join("target/fixtures").join(format!("at-{commit}"));
    let done = tree.join(".unpacked");
    if done.exists() {
        return tree;
    }
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(&tree).unwrap();
    let status = Command::new("bash")
        .arg("-c")
        .arg("set -o pipefail; git -C \"$1\" archive \"$2\" | tar -x -C \"$3\"")
        .arg("bash")
        .arg(root)
        .arg(commit)
        .arg(&tree)
        .status()
        .expect("bash runs");
    assert!(
        status.success(),
        "cannot unpack commit {commit} of {} (a clone without history?)",
        root.display()
    );
    std::fs::write(&done, commit).unwrap();
    tree
}
