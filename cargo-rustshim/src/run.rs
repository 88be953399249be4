//! `cargo rustshim run [ARGS]` (and `cargo xtask dev DIR`, which calls [`run`] with the
//! checkout's shim): the plugin author's loop. Builds the crate, serves it through the shim
//! with `reload=watch` (a filter: `filter-reload=watch`, in front of the Rust memory plugin) on
//! a Unix socket, prints the URI, and rebuilds whenever a source file changes; the running
//! nbdkit picks up each good build for new connections (open ones keep the build they started
//! with), and a build that fails to compile is reported while the last good one keeps serving.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use rustshim_harness::Server;

use crate::deps;
use crate::new::Kind;
use crate::plugin_crate::PluginCrate;
use crate::serve::{serve_with, start};
use crate::signals::{install_stop_handlers, stopped};
use crate::Result;

/// How long the sources must be quiet before a rebuild (editors save in several steps).
const QUIET: Duration = Duration::from_millis(300);

/// What a filter is served in front of when no arguments are given.
const FILTER_DEFAULT_ARGS: &[&str] = &["size=1G"];

/// Serves the crate of `manifest` (or the one cargo finds from the current directory) with
/// `args` until Ctrl-C, through `shim` (default: the installed one), rebuilding on changes.
pub fn run(manifest: Option<&Path>, args: &[String], shim: Option<PathBuf>) -> Result {
    deps::ensure_host(deps::AUTHOR_PACKAGES)?;
    let krate = PluginCrate::find(manifest)?;
    let built = krate
        .build(false)?
        .ok_or("the first build failed: fix it and run again")?;

    install_stop_handlers();
    let builder = match krate.kind {
        Kind::Plugin => Server::builder(&built).arg("reload=watch").args(args),
        Kind::Filter => {
            let args: Vec<&str> = if args.is_empty() {
                FILTER_DEFAULT_ARGS.to_vec()
            } else {
                args.iter().map(String::as_str).collect()
            };
            Server::builder("memory")
                .rust_filter(&built)
                .arg("filter-reload=watch")
                .args(args)
        }
    };
    let builder = match shim {
        Some(shim) => builder.shim(shim),
        None => builder,
    };
    let Some(server) = start(builder)? else {
        return Ok(());
    };
    let what = match krate.kind {
        Kind::Plugin => "reload=watch",
        Kind::Filter => "filter-reload=watch, in front of the memory plugin,",
    };
    println!(
        "\nServing {} with {what} at\n\n    {}\n",
        built.display(),
        server.uri()
    );
    println!(
        "Edit the sources in {}: each good build is loaded for new connections.",
        krate.dir().display()
    );
    println!("Press Ctrl-C to stop.");
    let _ = std::io::stdout().flush();

    let dir = krate.dir().to_path_buf();
    let mut seen = snapshot(&dir);
    let mut changed_at: Option<Instant> = None;
    serve_with(server, None, || {
        if stopped() {
            return Ok(());
        }
        let now = snapshot(&dir);
        if now != seen {
            seen = now;
            changed_at = Some(Instant::now());
        }
        if changed_at.is_some_and(|at| at.elapsed() >= QUIET) {
            changed_at = None;
            println!("run: sources changed, rebuilding");
            match krate.build(false)? {
                Some(_) => println!("run: build done; nbdkit loads it for new connections"),
                None => {
                    println!("run: the build failed (above); the last good build keeps serving")
                }
            }
            let _ = std::io::stdout().flush();
        }
        Ok(())
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
