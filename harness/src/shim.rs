//! Finding nbdkit and the rustshim plugin (the shim) that loads the plugin under test.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{HarnessError, Result};
use crate::process;

/// Environment variable: the shim to use, a path to `libnbdkit_rustshim_plugin.so` (as cargo
/// builds it in an nbdkit-rustshim checkout) or `nbdkit-rustshim-plugin.so`. When unset, the
/// shim installed in nbdkit's plugin directory is used.
pub const SHIM_ENV: &str = "RUSTSHIM_SHIM";

/// Environment variable: the `nbdkit` program to run (default: `nbdkit` on `PATH`, with
/// `/usr/bin` first).
pub const NBDKIT_ENV: &str = "RUSTSHIM_NBDKIT";

/// The shim's file name in nbdkit's plugin directory, where `cargo xtask install` puts it so
/// that `nbdkit rustshim ...` finds it.
pub const SHIM_INSTALLED: &str = "nbdkit-rustshim-plugin.so";

/// The shim's file name in nbdkit's filter directory (a copy of the same shim), so that
/// `nbdkit --filter=rustshim ...` finds it.
pub const FILTER_SHIM_INSTALLED: &str = "nbdkit-rustshim-filter.so";

/// How to get a shim, for the error messages.
const HOW_TO_GET_A_SHIM: &str = "run `cargo xtask install` in the nbdkit-rustshim checkout \
     (it installs the shim into nbdkit's plugin directory), or set RUSTSHIM_SHIM to the path \
     of a built shim (target/debug/libnbdkit_rustshim_plugin.so there)";

/// The `nbdkit` program: `$RUSTSHIM_NBDKIT`, else `nbdkit`.
pub fn nbdkit_program() -> PathBuf {
    std::env::var_os(NBDKIT_ENV)
        .filter(|value| !value.is_empty())
        .map_or_else(|| PathBuf::from("nbdkit"), PathBuf::from)
}

/// The shim to serve plugins with: `$RUSTSHIM_SHIM` if set, else `nbdkit-rustshim-plugin.so` in
/// the plugin directory of [`nbdkit_program`] (the `plugindir=` of `nbdkit --dump-config`),
/// i.e. the shim `nbdkit rustshim` runs. The error says how to get one.
pub fn find_shim() -> Result<PathBuf> {
    find_shim_for(&nbdkit_program())
}

pub(crate) fn find_shim_for(nbdkit: &Path) -> Result<PathBuf> {
    if let Some(shim) = std::env::var_os(SHIM_ENV).filter(|value| !value.is_empty()) {
        let shim = PathBuf::from(shim);
        return if shim.is_file() {
            Ok(shim)
        } else {
            Err(HarnessError::NotFound(format!(
                "{SHIM_ENV}={} is not a file (build the shim with `cargo build -p \
                 nbdkit-rustshim-plugin` in the nbdkit-rustshim checkout, or unset {SHIM_ENV} \
                 to use the installed one)",
                shim.display()
            )))
        };
    }
    let plugindir = plugindir(nbdkit)?;
    let shim = plugindir.join(SHIM_INSTALLED);
    if shim.is_file() {
        Ok(shim)
    } else {
        Err(HarnessError::NotFound(format!(
            "the nbdkit rustshim plugin is not installed (no {} in nbdkit's plugin directory \
             {}) and {SHIM_ENV} is not set: {HOW_TO_GET_A_SHIM}",
            SHIM_INSTALLED,
            plugindir.display()
        )))
    }
}

/// nbdkit's plugin directory, from `nbdkit --dump-config`.
fn plugindir(nbdkit: &Path) -> Result<PathBuf> {
    let mut cmd = process::command(nbdkit);
    cmd.arg("--dump-config");
    let not_found = |why: String| {
        HarnessError::NotFound(format!(
            "cannot find the rustshim plugin: {why}. Install nbdkit (Debian: apt-get install \
             nbdkit) or set {NBDKIT_ENV}; or set {SHIM_ENV} to the shim's path"
        ))
    };
    let out = match process::run_with_input(&mut cmd, b"", Duration::from_secs(30)) {
        Ok(out) => out,
        Err(HarnessError::Io { context, source }) => {
            return Err(not_found(format!("{context}: {source}")))
        }
        Err(e) => return Err(e),
    };
    if !out.status.is_some_and(|status| status.success()) {
        return Err(not_found(format!(
            "`{} --dump-config` failed: {}",
            nbdkit.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("plugindir="))
        .map(PathBuf::from)
        .ok_or_else(|| {
            not_found(format!(
                "`{} --dump-config` printed no plugindir=",
                nbdkit.display()
            ))
        })
}
