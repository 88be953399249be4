//! `cargo xtask install [--plugindir DIR]`: the release build of the shim into nbdkit's plugin
//! directory, and the example plugins into `rustshim/` beside it.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::build::build_artifacts;
use crate::deps;
use crate::workspace::{plugin_path, target_dir, SHIM};
use crate::Result;

/// The shim's name in nbdkit's plugin directory, so `nbdkit rustshim ...` finds it.
pub const SHIM_INSTALLED: &str = "nbdkit-rustshim-plugin.so";
/// The plugins worth installing; `test` exists for the integration tests.
pub const INSTALLED_PLUGINS: &[&str] = &["null", "memory", "file"];

pub fn install(plugindir: Option<PathBuf>) -> Result {
    deps::ensure()?;
    build_artifacts(true)?;
    let plugindir = match plugindir {
        Some(dir) => dir,
        None => nbdkit_plugindir()?,
    };
    let release = target_dir(true);

    let shim = plugindir.join(SHIM_INSTALLED);
    install_file(&release.join(SHIM), &shim)?;
    println!("installed {}", shim.display());
    // The plugins go in a folder beside the shim, out of the way of nbdkit's own plugins.
    let plugins = plugindir.join("rustshim");
    for name in INSTALLED_PLUGINS {
        let to = plugin_path(&plugins, name);
        install_file(&plugin_path(&release, name), &to)?;
        println!("installed {}", to.display());
    }

    // `nbdkit rustshim` finds the shim only in nbdkit's own plugindir; elsewhere, by path.
    let shim_arg = match nbdkit_plugindir() {
        Ok(dir) if dir == plugindir => "rustshim".to_string(),
        _ => shim.display().to_string(),
    };
    // The shim finds plugins installed beside it by short name.
    println!("try:  nbdkit {shim_arg} plugin=memory size=1G");
    Ok(())
}

/// nbdkit's plugin directory, the `plugindir=` line of `nbdkit --dump-config`.
fn nbdkit_plugindir() -> Result<PathBuf> {
    let out = Command::new("nbdkit")
        .arg("--dump-config")
        .output()
        .map_err(|e| format!("cannot run `nbdkit --dump-config`: {e}"))?;
    if !out.status.success() {
        return Err(format!("`nbdkit --dump-config` failed ({})", out.status));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("plugindir="))
        .map(PathBuf::from)
        .ok_or_else(|| "`nbdkit --dump-config` has no plugindir= line".to_string())
}

/// Copies `from` to `to` by way of a temporary file in the same directory, renamed over `to`.
/// Writing into `to` in place would change the pages of any nbdkit that has it loaded under
/// its feet (and crash it); the rename leaves that process its old, unlinked file.
fn install_file(from: &Path, to: &Path) -> Result {
    let dir = to.parent().expect("an install path has a directory");
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let name = to.file_name().expect("an install path has a file name");
    let mut temp_name = OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".tmp{}", std::process::id()));
    let temp = dir.join(temp_name);

    let copied = fs::copy(from, &temp)
        .and_then(|_| fs::set_permissions(&temp, fs::Permissions::from_mode(0o755)))
        .and_then(|()| fs::rename(&temp, to));
    copied.map_err(|e| {
        let _ = fs::remove_file(&temp);
        format!("cannot install {} as {}: {e}", from.display(), to.display())
    })
}
