//! Hot reload latency (`reload=watch`, on the memory plugin): from a new build landing on the
//! watched plugin file (a rename over it, as cargo and `install` do) to the new generation
//! serving new connections, and to the first read served on a new connection.
//!
//! The shim prints its reload line right after the swap, so the moment that line appears in
//! nbdkit's stderr is the moment new connections go to the new generation. There is no debounce
//! (there was one of 150 ms): the shim reads the file at the event that finishes a build, here
//! the rename (`IN_MOVED_TO`), so the figure is the event's delivery, the read and checks, the
//! trial load, the load, the hand-over and the swap.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use rustshim_harness::TempDir;

use super::nbd::NbdClient;
use super::sections::Stamp;
use super::server::{Launch, Server};
use super::Result;
use crate::workspace::{cargo, plugin_path, run, target_dir, SHIM};

/// One reload, in milliseconds.
struct ReloadSample {
    /// New file renamed into place → the reload line (new connections go to the new build).
    swap_ms: f64,
    /// New file renamed into place → a 4 KiB read on a new connection returned (the bench's
    /// own client: connect, handshake, read).
    first_read_ms: f64,
}

/// The section's heading.
pub const HEADING: &str = "## Hot reload latency";
/// The command that rewrites only this section.
pub const ALONE: &str = "cargo xtask bench --reload";

/// Builds the memory plugin, measures `rounds` reloads, and returns the report's section.
pub fn reload_section(release: bool, rounds: usize, stamp: &Stamp) -> Result<String> {
    let mut cargo = cargo();
    cargo.args([
        "build",
        "--quiet",
        "-p",
        "rustshim-memory",
        "-p",
        "nbdkit-rustshim-plugin",
    ]);
    if release {
        cargo.arg("--release");
    }
    run("build the memory plugin", &mut cargo)?;
    let dir = target_dir(release);
    let samples = reload_latency(&dir.join(SHIM), &plugin_path(&dir, "memory"), rounds)?;
    let summary = |values: Vec<f64>| {
        let mut v = values;
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    let (swap, swap_min, swap_max) = summary(samples.iter().map(|s| s.swap_ms).collect());
    let (read, read_min, read_max) = summary(samples.iter().map(|s| s.first_read_ms).collect());
    let verdict = if read <= 50.0 { "met" } else { "**missed**" };
    Ok(format!(
        "{HEADING}\n\n{}\n\n\
         `reload=watch` on the memory plugin (64 MiB, its disk handed over each time), {} reloads of a new build renamed over the watched file. \
         No debounce: the shim reads the file at the event that finishes a build (here the rename; a close after writing, or cargo's hard link, alike). Median (min–max), ms.\n\n\
         | from the new file landing to | ms | target | result |\n|---|---|---|---|\n\
         | new connections served by the new build (the shim's reload line) | {swap:.0} ({swap_min:.0}–{swap_max:.0}) | – | – |\n\
         | the first 4 KiB read on a new connection returned (connect, handshake, read) | {read:.0} ({read_min:.0}–{read_max:.0}) | ≤ 50 | {verdict} |\n",
        stamp.line(Some(ALONE)),
        samples.len()
    ))
}

/// Serves `plugin` (the memory plugin: its disk is handed over on each reload) through `shim`
/// with `reload=watch` and rolls `rounds` new builds into it.
fn reload_latency(shim: &Path, plugin: &Path, rounds: usize) -> Result<Vec<ReloadSample>> {
    let dir = TempDir::with_prefix("rustshim-reload-bench").map_err(|e| e.to_string())?;
    let watched = dir.join("libwatched.so");
    let original = fs::read(plugin).map_err(|e| format!("{}: {e}", plugin.display()))?;
    fs::write(&watched, &original).map_err(|e| e.to_string())?;
    let launch = Launch {
        label: "nbdkit with reload=watch".to_string(),
        wrapper: Vec::new(),
        args: vec![
            shim.into(),
            format!("plugin={}", watched.display()).into(),
            "reload=watch".into(),
            "size=64M".into(),
        ],
        env: Vec::new(),
    };
    let server = Server::start(&launch)?;
    let log = server.log_path();

    let mut samples = Vec::with_capacity(rounds);
    for round in 0..rounds {
        // A different build each time: the same code with a tag appended (ignored by the
        // loader), written beside the watched file and renamed over it.
        let mut build = original.clone();
        build.extend_from_slice(format!("\0reload-bench {round}\0").as_bytes());
        let incoming = dir.join("incoming.so");
        fs::write(&incoming, &build).map_err(|e| e.to_string())?;
        let line = format!("generation {} from", round + 2);
        let landed = Instant::now();
        fs::rename(&incoming, &watched).map_err(|e| e.to_string())?;
        wait_for(
            || fs::read_to_string(log).unwrap_or_default().contains(&line),
            &line,
            log,
        )?;
        let swap_ms = landed.elapsed().as_secs_f64() * 1e3;
        // A new connection and a 4 KiB read on it, with the bench's own client (no process to
        // start): served by the new generation, which new connections go to after the swap.
        let mut client = NbdClient::connect(server.socket())
            .map_err(|e| format!("connect after reload {round}: {e}"))?;
        let mut block = [0u8; 4096];
        client
            .read(&mut block, 0)
            .map_err(|e| format!("read after reload {round}: {e}"))?;
        let first_read_ms = landed.elapsed().as_secs_f64() * 1e3;
        client.disconnect();
        samples.push(ReloadSample {
            swap_ms,
            first_read_ms,
        });
        // Let the retired generation go before the next build lands.
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = fs::read_to_string(log).unwrap_or_default();
    if text.contains("refused") {
        return Err(format!("a reload was refused:\n{text}"));
    }
    drop(server);
    Ok(samples)
}

fn wait_for(mut done: impl FnMut() -> bool, what: &str, log: &Path) -> Result {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        if Instant::now() > deadline {
            return Err(format!(
                "timed out waiting for {what}:\n{}",
                fs::read_to_string(log).unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}
