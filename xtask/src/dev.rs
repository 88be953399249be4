//! `cargo xtask dev DIR [plugin args]`: the plugin author's loop. Builds the plugin crate in DIR,
//! serves it through the shim with `reload=watch` on a Unix socket, and rebuilds whenever a
//! source file changes; the running nbdkit picks up each good build (open connections keep the
//! build they started with), and a build that fails to compile is reported while the last good
//! one keeps serving.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use rustshim_harness::Server;

use crate::demo::{serve_with, start};
use crate::deps;
use crate::signals::{install_stop_handlers, stopped};
use crate::workspace::{cargo, run, target_dir, SHIM};
use crate::Result;

/// How long the sources must be quiet before a rebuild (editors save in several steps).
const QUIET: Duration = Duration::from_millis(300);

pub fn dev(dir: &Path, plugin_args: &[String]) -> Result {
    deps::ensure()?;
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(format!(
            "{}: no Cargo.toml (give the directory of a plugin crate)",
            dir.display()
        ));
    }
    run(
        "build the shim",
        cargo().args(["build", "--quiet", "-p", "nbdkit-rustshim-plugin"]),
    )?;
    let shim = target_dir(false).join(SHIM);
    let plugin = build_plugin(&manifest)?
        .ok_or("the first build failed: fix it and run cargo xtask dev again")?;

    install_stop_handlers();
    let builder = Server::builder(&plugin)
        .shim(&shim)
        .arg("reload=watch")
        .args(plugin_args);
    let Some(server) = start(builder)? else {
        return Ok(());
    };
    let uri = server.uri();
    println!(
        "\nServing {} with reload=watch at\n\n    {uri}\n",
        plugin.display()
    );
    println!(
        "Edit the sources in {}: each good build is loaded for new connections.",
        dir.display()
    );
    println!("Press Ctrl-C to stop.");
    let _ = std::io::stdout().flush();

    let mut seen = snapshot(dir);
    let mut changed_at: Option<Instant> = None;
    serve_with(server, None, || {
        if stopped() {
            return Ok(());
        }
        let now = snapshot(dir);
        if now != seen {
            seen = now;
            changed_at = Some(Instant::now());
        }
        if changed_at.is_some_and(|at| at.elapsed() >= QUIET) {
            changed_at = None;
            println!("dev: sources changed, rebuilding");
            match build_plugin(&manifest)? {
                Some(_) => println!("dev: build done; nbdkit loads it for new connections"),
                None => {
                    println!("dev: the build failed (above); the last good build keeps serving")
                }
            }
        }
        Ok(())
    })
}

/// Builds the crate and returns its cdylib, or `None` if it does not compile (cargo's messages
/// were shown).
fn build_plugin(manifest: &Path) -> Result<Option<PathBuf>> {
    let output = cargo()
        .args([
            "build",
            "--message-format=json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(manifest)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !output.status.success() {
        return Ok(None);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let cdylib = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "cdylib"))
        })
        .filter(|m| {
            m["manifest_path"].as_str().map(Path::new) == fs::canonicalize(manifest).ok().as_deref()
        })
        .find_map(|m| {
            m["filenames"]
                .as_array()?
                .iter()
                .find_map(|f| f.as_str().filter(|f| f.ends_with(".so")).map(PathBuf::from))
        });
    cdylib.map(Some).ok_or_else(|| {
        format!(
            "{} builds no cdylib: plugins need crate-type = [\"cdylib\"]",
            manifest.display()
        )
    })
}

/// Modification times of the crate's files (its target directory and hidden files aside).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, SystemTime> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') || name == "target" {
                continue;
            }
            let path = entry.path();
            match entry.metadata() {
                Ok(m) if m.is_dir() => pending.push(path),
                Ok(m) => {
                    files.insert(path, m.modified().unwrap_or(SystemTime::UNIX_EPOCH));
                }
                Err(_) => {}
            }
        }
    }
    files
}
