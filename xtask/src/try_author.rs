//! `cargo xtask try-author`: the plugin author's first ten minutes, from nothing, as the README's
//! "Writing a plugin" tells them, with nothing of this checkout on the way but what an author
//! would have: `cargo install --path cargo-rustshim`, the installed shim, and the rustshim
//! crates as they would come from crates.io.
//!
//! 1. `cargo xtask crates`: the three crates as `cargo package` makes them, unpacked, and the
//!    `[patch.crates-io]` table that stands in for crates.io until they are published, put in
//!    the `.cargo/config.toml` of a scratch directory outside the checkout (as an author would
//!    put it in `~/.cargo/config.toml`).
//! 2. `cargo install --path cargo-rustshim` into a scratch root, first on `PATH`.
//! 3. `cargo xtask install` into scratch plugin and filter directories: the installed shim,
//!    named by `RUSTSHIM_SHIM` (the system's directories are left alone).
//! 4. In an empty directory in the scratch directory: `cargo rustshim new demo`, then in `demo/`
//!    `cargo rustshim doctor` and `cargo rustshim test --nbdkit all`; the same for a filter
//!    crate (`new --filter`).
//!
//! Every step must succeed; the scratch directory is removed at the end, whichever way it ends.
//! The builds go to `target/try-author/` (kept, so a second run is quick), as an author's
//! shared `CARGO_TARGET_DIR` would.

use std::path::Path;
use std::process::Command;

use cargo_rustshim::cmd::run;
use rustshim_harness::TempDir;

use crate::workspace::{cargo, target_dir};
use crate::Result;

pub fn try_author() -> Result {
    let cache = target_dir(false).with_file_name("try-author");
    let scratch = TempDir::with_prefix("rustshim-try-author").map_err(|e| e.to_string())?;
    let crates = scratch.join("crates");
    let home = scratch.join("authors");
    let install = scratch.join("cargo-root");
    let (plugindir, filterdir) = (scratch.join("plugins"), scratch.join("filters"));

    step("the crates as crates.io would serve them");
    crate::crates::crates(Some(crates.clone()), true)?;
    let config = std::fs::read_to_string(crates.join("config.toml"))
        .map_err(|e| format!("cannot read {}/config.toml: {e}", crates.display()))?;
    crate::workspace::write(&home.join(".cargo/config.toml"), &config)?;

    step("cargo install --path cargo-rustshim");
    run(
        "cargo install",
        cargo()
            .args([
                "install",
                "--debug",
                "--locked",
                "--path",
                "cargo-rustshim",
                "--root",
            ])
            .arg(&install)
            .env("CARGO_TARGET_DIR", cache.join("install")),
    )?;

    step("the shim, installed");
    crate::install::install(Some(plugindir.clone()), Some(filterdir.clone()))?;

    let empty = home.join("work");
    crate::workspace::mkdir(&empty)?;
    let mut path = install.join("bin").into_os_string();
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    let author = |dir: &Path, line: &str| -> Result {
        println!("\n{} $ {line}", dir.display());
        let mut cmd = Command::new("sh");
        cmd.args(["-c", line])
            .current_dir(dir)
            .env("PATH", &path)
            .env("CARGO_TARGET_DIR", cache.join("crates"))
            .env(
                rustshim_harness::SHIM_ENV,
                plugindir.join(rustshim_harness::SHIM_INSTALLED),
            )
            .env_remove(rustshim_harness::ROOT_ENV)
            .env_remove("CARGO")
            .env_remove("RUSTSHIM_PLUGIN_PATH")
            .env_remove("RUSTSHIM_FILTER_PATH");
        run(line, &mut cmd)
    };
    step("an author, in an empty directory");
    author(&empty, "cargo rustshim new demo")?;
    author(&empty.join("demo"), "cargo rustshim doctor")?;
    author(&empty.join("demo"), "cargo rustshim test --nbdkit all")?;
    author(&empty, "cargo rustshim new demo-filter --filter")?;
    author(
        &empty.join("demo-filter"),
        "cargo rustshim test --nbdkit all",
    )?;
    println!("\ntry-author: every step passed");
    Ok(())
}

fn step(what: &str) {
    println!("\n==> try-author: {what}");
}
