//! Load time: how long `nbdkit PLUGIN ... size=1M --run true` takes from spawning nbdkit to its
//! exit, through the shim (which reads the plugin file once into a sealed memory file, checks
//! it, loads it for a trial in a throwaway process, then loads it) and for nbdkit's C `null`,
//! which nbdkit loads itself. The servers take turns, round after round (the order rotating),
//! so that all of them see the same background load.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rustshim_harness::{ServerBuilder, TempDir};

use super::machine::{loadavg, Machine};
use super::report::format::mib;
use super::sections::Stamp;
use super::stats::Stats;
use super::{interrupted, Result};
use crate::workspace::{plugin_path, target_dir, workspace, SHIM};

/// The section's heading.
pub const HEADING: &str = "## Load time";
/// The command that rewrites only this section.
pub const ALONE: &str = "cargo xtask bench --load";
/// Rounds of the full run and of `--load`; the quick run makes 2.
pub const ROUNDS: usize = 40;
/// How long one nbdkit may take before it is killed and the measurement fails.
const LIMIT: Duration = Duration::from_secs(60);

/// One way of loading a plugin, timed.
pub struct Loader {
    pub label: String,
    /// What follows `nbdkit`.
    pub args: Vec<OsString>,
    /// The plugin file the shim reads, if it is the shim's.
    pub plugin: Option<PathBuf>,
}

/// The loaders: nbdkit's C `null` (the baseline), the release build of rustshim `null` and
/// the debug build of rustshim `memory` (a file many times bigger), both through `shim`.
pub fn loaders(shim: &Path, release: bool) -> Vec<Loader> {
    let through_shim = |label: &str, plugin: PathBuf| Loader {
        label: label.to_string(),
        args: vec![
            shim.into(),
            format!("plugin={}", plugin.display()).into(),
            "size=1M".into(),
            "--run".into(),
            "true".into(),
        ],
        plugin: Some(plugin),
    };
    vec![
        Loader {
            label: "C null".to_string(),
            args: ["null", "size=1M", "--run", "true"]
                .map(OsString::from)
                .to_vec(),
            plugin: None,
        },
        through_shim(
            if release {
                "rustshim null, release build"
            } else {
                "rustshim null, debug build"
            },
            plugin_path(&target_dir(release), "null"),
        ),
        through_shim(
            "rustshim memory, debug build",
            plugin_path(&target_dir(false), "memory"),
        ),
    ]
}

/// The shim the load times are measured through: the release build, unless `release` is false
/// (the quick run).
pub fn shim(release: bool) -> PathBuf {
    target_dir(release).join(SHIM)
}

/// The times of each loader, in milliseconds, round by round.
pub struct LoadTimes {
    pub loaders: Vec<Loader>,
    pub ms: Vec<Vec<f64>>,
    pub rounds: usize,
    pub load_start: String,
    pub load_end: String,
}

/// One round not counted (the files into the page cache), then `rounds` rounds in which every
/// loader runs once, the first of each round one further along.
pub fn measure(loaders: Vec<Loader>, rounds: usize) -> Result<LoadTimes> {
    let load_start = loadavg();
    let scratch = TempDir::with_prefix("rustshim-load-bench").map_err(|e| e.to_string())?;
    let mut ms = vec![Vec::with_capacity(rounds); loaders.len()];
    println!(
        "==> load time: {} rounds of {}",
        rounds,
        loaders
            .iter()
            .map(|l| l.label.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for loader in &loaders {
        run_once(loader, &scratch)?;
    }
    for round in 0..rounds {
        for i in 0..loaders.len() {
            interrupted()?;
            let which = (round + i) % loaders.len();
            ms[which].push(run_once(&loaders[which], &scratch)?);
        }
    }
    for (loader, times) in loaders.iter().zip(&ms) {
        let s = Stats::of(times);
        println!(
            "    {}: {:.1} ({:.1}–{:.1}) ms",
            loader.label, s.median, s.min, s.max
        );
    }
    Ok(LoadTimes {
        loaders,
        ms,
        rounds,
        load_start,
        load_end: loadavg(),
    })
}

/// The command line of a loader, as the harness makes it.
fn argv(loader: &Loader) -> Result<Vec<OsString>> {
    ServerBuilder::new()
        .without_shim()
        .args(&loader.args)
        .argv()
        .map_err(|e| format!("{}: {e}", loader.label))
}

/// Runs nbdkit once, to its end, and returns how long that took in milliseconds: from just
/// before the spawn to the moment a thread blocked in `wait` sees it exit. Its output goes to a
/// file, shown if it fails.
fn run_once(loader: &Loader, scratch: &TempDir) -> Result<f64> {
    let words = argv(loader)?;
    let log_path = scratch.join("nbdkit.log");
    let log = File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let log_too = log.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = rustshim_harness::command(&words[0]);
    cmd.args(&words[1..])
        .env("TMPDIR", scratch.path())
        .stdin(Stdio::null())
        .stdout(Stdio::from(log_too))
        .stderr(Stdio::from(log));
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{}: cannot start nbdkit: {e}", loader.label))?;
    let pid = Pid::from_raw(child.id() as i32);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let status = child.wait();
        let _ = tx.send((status, Instant::now()));
    });
    let (status, ended) = match rx.recv_timeout(LIMIT) {
        Ok(done) => done,
        Err(_) => {
            // Not yet reaped (the thread is still waiting for it), so the pid is still its own.
            let _ = kill(pid, Signal::SIGKILL);
            let _ = rx.recv();
            return Err(format!(
                "{} did not exit within {} s: {}",
                loader.label,
                LIMIT.as_secs(),
                std::fs::read_to_string(&log_path)
                    .unwrap_or_default()
                    .trim()
            ));
        }
    };
    let status = status.map_err(|e| format!("{}: waiting for nbdkit: {e}", loader.label))?;
    if !status.success() {
        return Err(format!(
            "{} failed ({status}): {}",
            loader.label,
            std::fs::read_to_string(&log_path)
                .unwrap_or_default()
                .trim()
        ));
    }
    Ok((ended - started).as_secs_f64() * 1e3)
}

impl LoadTimes {
    /// The section of BENCHMARKS.md (and of the terminal's report).
    pub fn section(&self, stamp: &Stamp, machine: &Machine) -> Result<String> {
        let mut md = format!("{HEADING}\n\n{}\n\n", stamp.line(Some(ALONE)));
        let _ = writeln!(
            md,
            "The time from spawning nbdkit to its exit, for `nbdkit PLUGIN … size=1M --run true`: \
             nbdkit loads the plugin, listens on a socket of its own, runs `true` and shuts down. \
             Through the shim, loading is reading the plugin file once into a sealed memory file, \
             checking it, loading it for a trial in a throwaway process, then loading it \
             (ARCHITECTURE.md); nbdkit's C `null` is loaded by nbdkit itself. {} rounds, each \
             running every server once (the first of each round one further along), after one \
             round not counted; median (min–max), ms. The load of the machine moves these \
             figures (load average {} at the start, {} at the end, on {} cores): compare them \
             within the table, not across runs.\n",
            self.rounds, self.load_start, self.load_end, machine.cores
        );
        md.push_str(
            "| server | plugin file | ms | minus C null, same round (ms) |\n|---|---|---|---|\n",
        );
        let baseline = &self.ms[0];
        for (i, (loader, times)) in self.loaders.iter().zip(&self.ms).enumerate() {
            let s = Stats::of(times);
            let size = match &loader.plugin {
                Some(plugin) => {
                    let bytes = std::fs::metadata(plugin)
                        .map_err(|e| format!("{}: {e}", plugin.display()))?
                        .len();
                    format!("{} MiB", mib(bytes as f64))
                }
                None => "–".to_string(),
            };
            let difference = if i == 0 {
                "–".to_string()
            } else {
                let d = Stats::of(
                    &times
                        .iter()
                        .zip(baseline)
                        .map(|(a, b)| a - b)
                        .collect::<Vec<_>>(),
                );
                format!("{:+.1} ({:+.1} to {:+.1})", d.median, d.min, d.max)
            };
            let _ = writeln!(
                md,
                "| {} | {size} | **{:.1}** ({:.1}–{:.1}) | {difference} |",
                loader.label, s.median, s.min, s.max
            );
        }
        md.push_str("\nThe commands (paths relative to the workspace):\n\n```\n");
        let root = format!("{}/", workspace().display());
        for loader in &self.loaders {
            let words = argv(loader)?;
            let line = words
                .iter()
                .map(|w| w.to_string_lossy().replace(&root, ""))
                .collect::<Vec<_>>()
                .join(" ");
            let _ = writeln!(md, "{line}");
        }
        md.push_str("```\n");
        Ok(md)
    }
}
