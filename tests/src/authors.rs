//! The plugin author's tools as an author runs them: cargo, `cargo rustshim` (the binary this
//! workspace builds, as `cargo install` would put it on `PATH`) and `cargo xtask new-plugin`,
//! on crates outside this workspace that share one target directory, so their dependencies
//! compile once across tests and runs.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{run_within, shim, target_dir, workspace, Run};

/// Seconds a cargo command may take: the first build of a generated crate compiles its
/// dependencies (abi_stable) into a fresh target directory.
pub const CARGO_TIMEOUT_SECS: u32 = 600;

/// Where generated crates live: a fixed place, so their builds stay incremental across runs.
pub fn authors_dir() -> PathBuf {
    workspace().join("target").join("fixtures").join("authors")
}

/// Shared by every generated crate: the dependencies compile once.
pub fn authors_target() -> PathBuf {
    workspace()
        .join("target")
        .join("fixtures")
        .join("target-authors")
}

/// The cargo running the tests, under `timeout`, in `dir`, with its toolchain first on `PATH`
/// (so nothing finds another rustc) and then the test `PATH`, and `$CARGO` set as cargo sets it
/// for its subcommands.
pub fn cargo_in(dir: &Path) -> Command {
    let cargo = cargo_program();
    let mut cmd = Command::new("timeout");
    cmd.arg("--kill-after=5")
        .arg(CARGO_TIMEOUT_SECS.to_string())
        .arg(&cargo)
        .env("PATH", toolchain_path())
        .env("CARGO", &cargo)
        .current_dir(dir)
        .stdin(std::process::Stdio::null());
    cmd
}

/// The cargo running the tests (`$CARGO`).
fn cargo_program() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// `PATH` with the running cargo's directory first.
fn toolchain_path() -> OsString {
    let cargo = cargo_program();
    let mut path = OsString::new();
    if let Some(toolchain) = cargo.parent().filter(|d| !d.as_os_str().is_empty()) {
        path.push(toolchain);
        path.push(":");
    }
    path.push(rustshim_harness::path_env());
    path
}

/// Runs a cargo command to completion (`timeout` ends it first).
pub fn run_cargo(cmd: &mut Command) -> Run {
    run_within(cmd, Duration::from_secs(u64::from(CARGO_TIMEOUT_SECS) + 30))
}

/// `cargo rustshim ARGS` in `dir`, as cargo runs the installed subcommand
/// (`cargo-rustshim rustshim ARGS`), with this checkout's shim (`RUSTSHIM_SHIM`) and the
/// authors' shared target directory.
pub fn cargo_rustshim(dir: &Path, args: &[&str]) -> Command {
    let cargo = cargo_program();
    let mut cmd = Command::new("timeout");
    cmd.arg("--kill-after=5")
        .arg(CARGO_TIMEOUT_SECS.to_string())
        .arg(cargo_rustshim_binary())
        .arg("rustshim")
        .args(args)
        .env("PATH", toolchain_path())
        .env("CARGO", &cargo)
        .env("CARGO_TARGET_DIR", authors_target())
        .env("RUSTSHIM_SHIM", shim())
        .current_dir(dir)
        .stdin(std::process::Stdio::null());
    cmd
}

/// The `cargo-rustshim` binary of this workspace (built by the suite's build step).
pub fn cargo_rustshim_binary() -> PathBuf {
    let binary = target_dir().join("cargo-rustshim");
    assert!(
        binary.is_file(),
        "{} is not built: cargo build -p cargo-rustshim",
        binary.display()
    );
    binary
}

/// `cargo xtask new-plugin NAME --path DIR EXTRA...`: a crate that takes plugin-api and the
/// harness from this checkout.
pub fn xtask_new_plugin(name: &str, dir: &Path, extra: &[&str]) -> Run {
    run_cargo(
        cargo_in(&workspace())
            .args([
                "run",
                "--quiet",
                "-p",
                "xtask",
                "--",
                "new-plugin",
                name,
                "--path",
            ])
            .arg(dir)
            .args(extra),
    )
}
