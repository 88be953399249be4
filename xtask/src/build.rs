//! `cargo xtask build [--release]`: builds the shim, the plugins and the filters, and says where
//! they are.

use std::path::PathBuf;

use crate::workspace::{cargo, filter_path, plugin_path, run, target_dir, FILTERS, PLUGINS, SHIM};
use crate::Result;

pub fn build(release: bool) -> Result {
    let artifacts = build_artifacts(release)?;
    println!("built:");
    for path in artifacts {
        println!("  {}", path.display());
    }
    Ok(())
}

/// Builds the shim, every plugin and every filter, returning their paths (shim first).
pub fn build_artifacts(release: bool) -> Result<Vec<PathBuf>> {
    // Without -p or --workspace cargo builds the default members: the shim, the plugin API
    // and the plugins, not the tests or xtask.
    let mut cmd = cargo();
    cmd.arg("build");
    if release {
        cmd.arg("--release");
    }
    run("cargo build", &mut cmd)?;

    let dir = target_dir(release);
    let artifacts: Vec<PathBuf> = std::iter::once(dir.join(SHIM))
        .chain(PLUGINS.iter().map(|name| plugin_path(&dir, name)))
        .chain(FILTERS.iter().map(|name| filter_path(&dir, name)))
        .collect();
    match artifacts.iter().find(|path| !path.exists()) {
        Some(path) => Err(format!(
            "cargo build succeeded but {} is missing",
            path.display()
        )),
        None => Ok(artifacts),
    }
}
