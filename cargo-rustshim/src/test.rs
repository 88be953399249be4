//! `cargo rustshim test [--nbdkit system|1.42|1.48|all] [-- CARGO TEST ARGS]`: the crate's own
//! `cargo test`, once against each nbdkit asked for, with the same build of the plugin. The
//! newer nbdkits run in the Debian roots of [`roots`](crate::roots) (made on first use, as
//! root), through `rustshim-harness`'s `RUSTSHIM_ROOT`: nbdkit and the clients run inside the
//! root, the plugin and the test binaries are the host's.
//!
//! The shim is the installed one (or `$RUSTSHIM_SHIM`), found on the host, so every nbdkit loads
//! the same bytes. The host's leg uses it where it is; a root has its own /usr, where an
//! installed shim would not be seen, so each root leg gets a copy in its private `TMPDIR` (which
//! the root shares, removed after the leg), with the plugins and filters of `rustshim/` beside
//! it (what `plugin=NAME` and `filter=NAME` find).

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rustshim_harness::{find_shim, ROOT_ENV, SHIM_ENV};

use crate::cmd::{cargo, run};
use crate::plugin_crate::PluginCrate;
use crate::{deps, roots, Result};

pub fn test(manifest: Option<&Path>, which: &str, args: &[OsString]) -> Result {
    let servers = roots::select(which)?;
    deps::ensure_host(deps::AUTHOR_PACKAGES)?;
    let krate = PluginCrate::find(manifest)?;
    let shim = find_shim().map_err(|e| e.to_string())?;
    // Every root is made before any leg runs, so a failed download stops the run early.
    let roots = servers
        .iter()
        .map(roots::ensure)
        .collect::<Result<Vec<_>>>()?;
    let mut took = Vec::new();
    for (server, root) in servers.iter().zip(&roots) {
        let tmpdir = std::env::temp_dir().join(format!(
            "rustshim-test-{}-{}",
            std::process::id(),
            server.key
        ));
        fs::create_dir_all(&tmpdir)
            .map_err(|e| format!("cannot create {}: {e}", tmpdir.display()))?;
        let started = Instant::now();
        let passed = leg(&krate, &shim, root.as_deref(), &tmpdir, args, server.key);
        let _ = fs::remove_dir_all(&tmpdir);
        passed?;
        took.push((server.key, started.elapsed()));
    }
    for (key, took) in &took {
        println!(
            "test: nbdkit {key}: the tests of {} passed in {:.0} s",
            krate.name,
            took.as_secs_f64()
        );
    }
    Ok(())
}

/// One `cargo test` against the nbdkit in `root` (the host's if `None`).
fn leg(
    krate: &PluginCrate,
    shim: &Path,
    root: Option<&Path>,
    tmpdir: &Path,
    args: &[OsString],
    key: &str,
) -> Result {
    let shim: PathBuf = match root {
        Some(_) => copy_shim(shim, tmpdir)?,
        None => shim.to_path_buf(),
    };
    let mut cmd = cargo();
    cmd.args(["test", "--manifest-path"])
        .arg(&krate.manifest)
        .args(args)
        .env(SHIM_ENV, &shim)
        // nbdkit (`-U -`) and libnbd leave empty directories behind in TMPDIR when a test ends
        // them by a signal: the leg's own, removed afterwards.
        .env("TMPDIR", tmpdir);
    match root {
        Some(root) => cmd.env(ROOT_ENV, root),
        None => cmd.env_remove(ROOT_ENV),
    };
    println!(
        "==> test on nbdkit {key}: cargo test{} (shim {})",
        root.map_or_else(String::new, |r| format!(" in {}", r.display())),
        shim.display()
    );
    run(&format!("the tests on nbdkit {key}"), &mut cmd)
}

/// Copies `shim` and the files of `rustshim/` beside it into `dir`; returns the copy.
fn copy_shim(shim: &Path, dir: &Path) -> Result<PathBuf> {
    let copy = |from: &Path, to: &Path| {
        fs::copy(from, to)
            .map(drop)
            .map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), to.display()))
    };
    let to = dir.join(shim.file_name().unwrap_or("shim.so".as_ref()));
    copy(shim, &to)?;
    let named = shim.with_file_name("rustshim");
    if let Ok(entries) = fs::read_dir(&named) {
        fs::create_dir_all(dir.join("rustshim"))
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        for entry in entries.flatten().filter(|e| e.path().is_file()) {
            copy(&entry.path(), &dir.join("rustshim").join(entry.file_name()))?;
        }
    }
    Ok(to)
}
