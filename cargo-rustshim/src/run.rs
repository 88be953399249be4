//! `cargo rustshim run [ARGS]` (and `cargo xtask dev DIR`, which calls [`run`] with the
//! checkout's shim): the plugin author's loop. Builds the crate, serves it through the shim
//! with `reload=watch` (a filter: `filter-reload=watch`, in front of the Rust memory plugin with
//! `size=1G` unless the arguments give `size=`, or of the plugin `--plugin` names) on
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

/// The plugin a filter is served in front of, unless `--plugin` names another.
pub const FILTER_DEFAULT_PLUGIN: &str = "memory";
/// Its arguments, each kept unless the author gives the same key.
const FILTER_DEFAULT_ARGS: &[&str] = &["size=1G"];

/// A filter's arguments: the author's `args`, after each of the defaults for `plugin` (the
/// memory plugin's `size=1G`) whose key the author does not give. Another plugin gets no
/// defaults.
pub fn filter_args(plugin: &str, args: &[String]) -> Vec<String> {
    let key = |arg: &str| arg.split_once('=').map(|(k, _)| k.to_string());
    let given: Vec<String> = args.iter().filter_map(|a| key(a)).collect();
    let defaults = if plugin == FILTER_DEFAULT_PLUGIN {
        FILTER_DEFAULT_ARGS
    } else {
        &[]
    };
    defaults
        .iter()
        .filter(|d| key(d).is_some_and(|k| !given.contains(&k)))
        .map(|d| d.to_string())
        .chain(args.iter().cloned())
        .collect()
}

/// Serves the crate of `manifest` (or the one cargo finds from the current directory) with
/// `args` until Ctrl-C, through `shim` (default: the installed one), rebuilding on changes. A
/// filter is served in front of `plugin` (default [`FILTER_DEFAULT_PLUGIN`], a Rust plugin the
/// shim finds by name, or a path to one).
pub fn run(
    manifest: Option<&Path>,
    args: &[String],
    shim: Option<PathBuf>,
    plugin: Option<&str>,
) -> Result {
    let below = plugin.unwrap_or(FILTER_DEFAULT_PLUGIN);
    deps::ensure_host(deps::AUTHOR_PACKAGES)?;
    let krate = PluginCrate::find(manifest)?;
    let built = krate
        .build(false)?
        .ok_or("the first build failed: fix it and run again")?;

    install_stop_handlers();
    let builder = match krate.kind {
        Kind::Plugin => Server::builder(&built).arg("reload=watch").args(args),
        Kind::Filter => Server::builder(below)
            .rust_filter(&built)
            .arg("filter-reload=watch")
            .args(filter_args(below, args)),
    };
    if krate.kind == Kind::Plugin && plugin.is_some() {
        return Err(
            "--plugin is for a filter crate: it names the plugin the filter is served in front of"
                .into(),
        );
    }
    let builder = match shim {
        Some(shim) => builder.shim(shim),
        None => builder,
    };
    let Some(server) = start(builder)? else {
        return Ok(());
    };
    let what = match krate.kind {
        Kind::Plugin => "reload=watch".to_string(),
        Kind::Filter => format!(
            "filter-reload=watch, in front of the Rust plugin '{below}' ({}; --plugin NAME|PATH chooses another),",
            match filter_args(below, args).join(" ") {
                a if a.is_empty() => "no arguments".to_string(),
                a => a,
            }
        ),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_filters_defaults_stay_unless_the_author_gives_the_key() {
        assert_eq!(filter_args("memory", &[]), ["size=1G"]);
        assert_eq!(
            filter_args("memory", &args(&["checksum-log=/tmp/x"])),
            ["size=1G", "checksum-log=/tmp/x"]
        );
        assert_eq!(filter_args("memory", &args(&["size=1M"])), ["size=1M"]);
        assert_eq!(filter_args("file", &args(&["file=d.img"])), ["file=d.img"]);
    }
}
