//! `cargo xtask install [--plugindir DIR] [--filterdir DIR]`: the release build of the shim into
//! nbdkit's plugin directory as the plugin `rustshim`, and a copy into its filter directory as
//! the filter `rustshim` (a copy, not a link: a link would share the loaded object and its
//! state); the example plugins and filters into `rustshim/` beside each.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::build::build_artifacts;
use crate::deps;
use crate::workspace::{filter_path, plugin_path, target_dir, SHIM};
use crate::Result;

pub use rustshim_harness::{FILTER_SHIM_INSTALLED, SHIM_INSTALLED};
/// The plugins worth installing; `test` exists for the integration tests.
pub const INSTALLED_PLUGINS: &[&str] = &["null", "memory", "file"];
/// The filters worth installing.
pub const INSTALLED_FILTERS: &[&str] = &["passthrough", "delay", "error", "swab"];

pub fn install(plugindir: Option<PathBuf>, filterdir: Option<PathBuf>) -> Result {
    deps::ensure()?;
    build_artifacts(true)?;
    let plugindir = match plugindir {
        Some(dir) => dir,
        None => nbdkit_dir("plugindir")?,
    };
    let filterdir = match filterdir {
        Some(dir) => dir,
        None => nbdkit_dir("filterdir")?,
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

    let filter_shim = filterdir.join(FILTER_SHIM_INSTALLED);
    install_file(&release.join(SHIM), &filter_shim)?;
    println!("installed {}", filter_shim.display());
    let filters = filterdir.join("rustshim");
    for name in INSTALLED_FILTERS {
        let to = filter_path(&filters, name);
        install_file(&filter_path(&release, name), &to)?;
        println!("installed {}", to.display());
    }

    // `nbdkit rustshim` finds the shim only in nbdkit's own plugindir (and `--filter=rustshim`
    // in its filterdir); elsewhere, by path.
    let shim_arg = match nbdkit_dir("plugindir") {
        Ok(dir) if dir == plugindir => "rustshim".to_string(),
        _ => shim.display().to_string(),
    };
    let filter_arg = match nbdkit_dir("filterdir") {
        Ok(dir) if dir == filterdir => "rustshim".to_string(),
        _ => filter_shim.display().to_string(),
    };
    // The shims find plugins and filters installed beside them by short name.
    println!("try:  nbdkit {shim_arg} plugin=memory size=1G");
    println!("      nbdkit --filter={filter_arg} {shim_arg} plugin=memory size=1G filter=delay delay-read=10ms");
    Ok(())
}

/// One of nbdkit's directories, the `NAME=` line (`plugindir`, `filterdir`) of
/// `nbdkit --dump-config`.
fn nbdkit_dir(name: &str) -> Result<PathBuf> {
    let out = Command::new("nbdkit")
        .arg("--dump-config")
        .output()
        .map_err(|e| format!("cannot run `nbdkit --dump-config`: {e}"))?;
    if !out.status.success() {
        return Err(format!("`nbdkit --dump-config` failed ({})", out.status));
    }
    let prefix = format!("{name}=");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(PathBuf::from)
        .ok_or_else(|| format!("`nbdkit --dump-config` has no {name}= line"))
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
