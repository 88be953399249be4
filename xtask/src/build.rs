//! `cargo xtask build [--release]`: builds the shim and the plugins, and says where they are.

use std::path::PathBuf;

use crate::workspace::{cargo, plugin_path, run, target_dir, PLUGINS, SHIM};
use crate::Result;

pub fn build(release: bool) -> Result {
    let artifacts = build_artifacts(release)?;
    println!("built:");
    for path in artifacts {
        println!("  {}", path.display());
    }
    Ok(())
}

/// Builds the shim and every plugin, returning their paths (shim first).
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
        .collect();
    match artifacts.iter().find(|path| !path.exists()) {
        Some(path) => Err(format!(
            "cargo build succeeded but {} is missing",
            path.display()
        )),
        None => Ok(artifacts),
    }
}
