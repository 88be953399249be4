//! `cargo rustshim run [ARGS]` (and `cargo xtask dev DIR`, which calls [`run`] with the
//! checkout's shim): the plugin author's loop. Builds the crate, serves it through the shim
//! with `reload=watch` (a filter: `filter-reload=watch`, in front of the Rust memory plugin with
//! `size=1G` unless the arguments give `size=`, or of the plugin `--plugin` names) on
//! a Unix socket, prints the URI, and rebuilds whenever a source file changes; the running
//! nbdkit picks up each good build for new connections (open ones keep the build they started
//! with), and a build that fails to compile is reported while the last good one keeps serving.
//! With `--restart`, each good build restarts nbdkit on the same socket instead; with
//! `--retire-limit SECONDS`, nbdkit gets `RUSTSHIM_RETIRE_LIMIT`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use rustshim_harness::{Server, ServerBuilder, TempDir};

use crate::deps;
use crate::new::Kind;
use crate::plugin_crate::PluginCrate;
use crate::serve::{serve_with, serve_with_end, start};
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

/// How `run` serves each new build: the options of `cargo rustshim run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `--retire-limit SECONDS`: `RUSTSHIM_RETIRE_LIMIT` for nbdkit, how long a reload of a
    /// plugin with `HAND_OVER_AT_RETIRE` waits for the old build's connections (default 30).
    pub retire_limit: Option<u32>,
    /// `--restart`: stop nbdkit and start it again on the same socket at each good build,
    /// instead of reloading it: open connections are closed, and state (a memory disk) is not
    /// handed over.
    pub restart: bool,
}

/// Serves the crate of `manifest` (or the one cargo finds from the current directory) with
/// `args` until Ctrl-C, through `shim` (default: the installed one), rebuilding on changes. A
/// filter is served in front of `plugin` (default [`FILTER_DEFAULT_PLUGIN`], a Rust plugin the
/// shim finds by name, or a path to one). Each good build is hot-reloaded.
pub fn run(
    manifest: Option<&Path>,
    args: &[String],
    shim: Option<PathBuf>,
    plugin: Option<&str>,
) -> Result {
    run_with(manifest, args, shim, plugin, &RunOptions::default())
}

/// [`run`], with `options` saying how each new build is served.
pub fn run_with(
    manifest: Option<&Path>,
    args: &[String],
    shim: Option<PathBuf>,
    plugin: Option<&str>,
    options: &RunOptions,
) -> Result {
    let below = plugin.unwrap_or(FILTER_DEFAULT_PLUGIN);
    deps::ensure_host(deps::AUTHOR_PACKAGES)?;
    let krate = PluginCrate::find(manifest)?;
    if krate.kind == Kind::Plugin && plugin.is_some() {
        return Err(
            "--plugin is for a filter crate: it names the plugin the filter is served in front of"
                .into(),
        );
    }
    let built = krate
        .build(false)?
        .ok_or("the first build failed: fix it and run again")?;

    install_stop_handlers();
    let builder = builder_for(&krate, &built, below, args, shim, options);
    // One socket for every nbdkit of this run, so a restart keeps the URI.
    let socket_dir = TempDir::with_prefix("cargo-rustshim-run").map_err(|e| e.to_string())?;
    let socket = socket_dir.join("nbd.sock");
    let builder = if options.restart {
        builder.socket(&socket)
    } else {
        builder
    };
    let Some(server) = start(builder.clone())? else {
        return Ok(());
    };
    announce(&krate, &built, &server.uri(), below, args, options);
    let _ = std::io::stdout().flush();

    let dir = krate.dir().to_path_buf();
    let mut seen = snapshot(&dir);
    let mut changed_at: Option<Instant> = None;
    let mut rebuild = || -> Result<bool> {
        let now = snapshot(&dir);
        if now != seen {
            seen = now;
            changed_at = Some(Instant::now());
        }
        if !changed_at.is_some_and(|at| at.elapsed() >= QUIET) {
            return Ok(false);
        }
        changed_at = None;
        println!("run: sources changed, rebuilding");
        let good = krate.build(false)?.is_some();
        match (good, options.restart) {
            (true, false) => println!("run: build done; nbdkit loads it for new connections"),
            (true, true) => println!("run: build done; restarting nbdkit"),
            (false, _) => {
                println!("run: the build failed (above); the last good build keeps serving")
            }
        }
        let _ = std::io::stdout().flush();
        Ok(good)
    };
    if !options.restart {
        return serve_with(server, None, || {
            if stopped() {
                return Ok(());
            }
            rebuild().map(drop)
        });
    }
    let mut server = Some(server);
    loop {
        // Served until the next good build, or to the end.
        let mut restart = false;
        let current = match server.take() {
            Some(current) => current,
            None => {
                // The last build did not start: wait for the next good one.
                if stopped() {
                    return Ok(());
                }
                if rebuild()? {
                    server = restart_on(&builder, &socket)?;
                }
                std::thread::sleep(POLL);
                continue;
            }
        };
        serve_with_end(current, || {
            if stopped() {
                return Ok(true);
            }
            restart = rebuild()?;
            Ok(restart)
        })?;
        if !restart {
            return Ok(());
        }
        server = restart_on(&builder, &socket)?;
    }
}

/// nbdkit's command line for `built`: the plugin with `args`, or the filter in front of the
/// plugin `below`; watched for new builds unless restarted at each.
fn builder_for(
    krate: &PluginCrate,
    built: &Path,
    below: &str,
    args: &[String],
    shim: Option<PathBuf>,
    options: &RunOptions,
) -> ServerBuilder {
    // Restarted, nbdkit serves the build cargo left in target/ (the shim loads a private copy
    // of it), so it watches nothing.
    let watch = !options.restart;
    let builder = match krate.kind {
        Kind::Plugin if watch => Server::builder(built).arg("reload=watch").args(args),
        Kind::Plugin => Server::builder(built).args(args),
        Kind::Filter => {
            let builder = Server::builder(below).rust_filter(built);
            let builder = if watch {
                builder.arg("filter-reload=watch")
            } else {
                builder
            };
            builder.args(filter_args(below, args))
        }
    };
    let builder = match shim {
        Some(shim) => builder.shim(shim),
        None => builder,
    };
    match options.retire_limit {
        Some(limit) => builder.env(RETIRE_LIMIT_ENV, limit.to_string()),
        None => builder,
    }
}

/// Says what is served where, and how new builds reach it.
fn announce(
    krate: &PluginCrate,
    built: &Path,
    uri: &str,
    below: &str,
    args: &[String],
    options: &RunOptions,
) {
    let reload = match krate.kind {
        Kind::Plugin => "reload=watch",
        Kind::Filter => "filter-reload=watch",
    };
    let how = if options.restart {
        "restarted at each good build".to_string()
    } else {
        reload.to_string()
    };
    let what = match krate.kind {
        Kind::Plugin => how,
        Kind::Filter => format!(
            "{how}, in front of the Rust plugin '{below}' ({}; --plugin NAME|PATH chooses another),",
            match filter_args(below, args).join(" ") {
                a if a.is_empty() => "no arguments".to_string(),
                a => a,
            }
        ),
    };
    println!(
        "\nServing {} with {what} at\n\n    {}\n",
        built.display(),
        uri
    );
    if options.restart {
        println!(
            "Edit the sources in {}: each good build restarts nbdkit on this URI (open \
             connections are closed; a memory disk starts empty).",
            krate.dir().display()
        );
    } else {
        println!(
            "Edit the sources in {}: each good build is loaded for new connections.",
            krate.dir().display()
        );
    }
    println!("Press Ctrl-C to stop.");
}

/// `RUSTSHIM_RETIRE_LIMIT`: the shim's variable, read by nbdkit (host/src/reload/mod.rs).
const RETIRE_LIMIT_ENV: &str = "RUSTSHIM_RETIRE_LIMIT";

/// How often the restart loop looks at the sources while no nbdkit runs.
const POLL: Duration = Duration::from_millis(50);

/// Starts nbdkit again after a restart: `None` (said) if the new build does not start.
fn restart_on(builder: &ServerBuilder, socket: &Path) -> Result<Option<Server>> {
    // nbdkit removes its socket when it stops; one killed leaves it in the way.
    let _ = fs::remove_file(socket);
    match start(builder.clone()) {
        Ok(Some(server)) => {
            println!("run: nbdkit serves the new build at {}", server.uri());
            let _ = std::io::stdout().flush();
            Ok(Some(server))
        }
        Ok(None) => Ok(None),
        Err(why) => {
            println!(
                "run: the new build did not start (below); fix it and save again\n{}",
                why.trim_end()
            );
            let _ = std::io::stdout().flush();
            Ok(None)
        }
    }
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
