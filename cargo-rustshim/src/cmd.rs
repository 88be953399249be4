//! Running programs and writing files, with what failed in the error.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Result;

/// Cargo itself: the one that runs us (`$CARGO`, which cargo sets for its subcommands), so the
/// same toolchain builds everything. Its directory goes first on `PATH`, before the harness's
/// (`/usr/bin` first), so neither it nor `cargo fmt`/`cargo clippy` pick up a Debian rustc that
/// may be installed there.
pub fn cargo() -> Command {
    let cargo = PathBuf::from(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    let mut path = OsString::new();
    if let Some(toolchain) = cargo.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        path.push(toolchain);
        path.push(":");
    }
    path.push(rustshim_harness::path_env());
    let mut cmd = Command::new(cargo);
    cmd.env("PATH", path);
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

/// Whether we run as root (who may install packages and write nbdkit's directories).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `s` as a TOML basic string.
pub fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string(r#"/a "b"\c"#), r#""/a \"b\"\\c""#);
    }
}
