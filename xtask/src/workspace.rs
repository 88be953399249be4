//! Where things are and how to run cargo: the helpers every command uses.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The shim as cargo builds it.
pub const SHIM: &str = "libnbdkit_rustshim_plugin.so";
/// The plugins of this workspace (`librustshim_NAME.so`), in the order they are listed.
pub const PLUGINS: &[&str] = &["null", "memory", "file", "test"];
/// The filters of this workspace (`librustshim_filter_NAME.so`).
pub const FILTERS: &[&str] = &["passthrough", "delay", "error", "swab", "test"];

/// The workspace root: xtask/ is one of its members.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ is inside the workspace")
        .to_path_buf()
}

/// Where cargo puts the artifacts of a profile.
pub fn target_dir(release: bool) -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace().join(dir),
        None => workspace().join("target"),
    };
    target.join(if release { "release" } else { "debug" })
}

/// `librustshim_NAME.so` in `dir`.
pub fn plugin_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("librustshim_{name}.so"))
}

/// `librustshim_filter_NAME.so` in `dir`.
pub fn filter_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("librustshim_filter_{name}.so"))
}

pub use cargo_rustshim::cmd::{mkdir, output, run, write};

/// Cargo itself, as `cargo rustshim` runs it, in the workspace.
pub fn cargo() -> Command {
    let mut cmd = cargo_rustshim::cmd::cargo();
    cmd.current_dir(workspace());
    cmd
}

/// `cargo metadata --no-deps` of the workspace: its packages and target directory.
pub fn workspace_metadata() -> Result<serde_json::Value, String> {
    let text = output(
        "cargo metadata",
        cargo().args(["metadata", "--no-deps", "--format-version=1"]),
    )?;
    serde_json::from_str(&text).map_err(|e| format!("cargo metadata: {e}"))
}
