//! Where things are and how to run cargo: the helpers every command uses.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Result;

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

/// Cargo itself: the one that runs us, so the same toolchain builds everything. Its directory
/// goes first on `PATH`, before the harness's (`/usr/bin` first), so neither it nor `cargo
/// fmt`/`cargo clippy` pick up a Debian rustc that may be installed there.
pub fn cargo() -> Command {
    let cargo = PathBuf::from(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    let mut path = OsString::new();
    if let Some(toolchain) = cargo.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        path.push(toolchain);
        path.push(":");
    }
    path.push(rustshim_harness::path_env());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace()).env("PATH", path);
    cmd
}

/// Runs a command to completion, its output going to ours; `what` names it in the error.
pub fn run(what: &str, cmd: &mut Command) -> Result {
    let status = cmd
        .status()
        .map_err(|e| format!("{what}: cannot start {:?}: {e}", cmd.get_program()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

/// Runs a command to completion and returns what it printed on stdout; its stderr goes to ours.
/// `what` names it in the error.
pub fn output(what: &str, cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("{what}: cannot start {:?}: {e}", cmd.get_program()))?;
    if out.status.success() {
        String::from_utf8(out.stdout).map_err(|e| format!("{what}: output is not UTF-8: {e}"))
    } else {
        Err(format!("{what} failed ({})", out.status))
    }
}

/// `fs::create_dir_all`, with the directory in the error.
pub fn mkdir(dir: &Path) -> Result {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

/// Writes `contents` to `path`, making its directory first.
pub fn write(path: &Path, contents: &str) -> Result {
    if let Some(parent) = path.parent() {
        mkdir(parent)?;
    }
    std::fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
