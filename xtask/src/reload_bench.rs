//! Reload latency for `cargo xtask bench`: from a new build landing on the watched plugin file
//! (a rename over it, as cargo and `install` do) to the new generation serving new connections,
//! and to the first read served on a new connection.
//!
//! The shim prints its reload line right after the swap, so the moment that line appears in
//! nbdkit's stderr is the moment new connections go to the new generation. The shim waits for
//! the file to be quiet for 150 ms first (debounce), which is part of what a user waits for and
//! so part of the figure.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::workspace::path_env;
use crate::Result;

/// One reload, in milliseconds.
pub struct ReloadSample {
    /// New file renamed into place → the reload line (new connections go to the new build).
    pub swap_ms: f64,
    /// New file renamed into place → a read on a new connection returned (includes starting
    /// `nbdinfo`, a few ms).
    pub first_read_ms: f64,
}

struct Nbdkit {
    child: Child,
    dir: PathBuf,
}

impl Drop for Nbdkit {
    fn drop(&mut self) {
        // SAFETY: kill has no memory-safety preconditions; the child is not yet reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Serves `plugin` (the memory plugin: its disk is handed over on each reload) through `shim`
/// with `reload=watch` and rolls `rounds` new builds into it.
pub fn reload_latency(shim: &Path, plugin: &Path, rounds: usize) -> Result<Vec<ReloadSample>> {
    let dir = std::env::temp_dir().join(format!("rustshim-reload-bench-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let watched = dir.join("libwatched.so");
    let original = fs::read(plugin).map_err(|e| format!("{}: {e}", plugin.display()))?;
    fs::write(&watched, &original).map_err(|e| e.to_string())?;
    let socket = dir.join("nbd.sock");
    let log = dir.join("nbdkit.log");
    let child = Command::new("nbdkit")
        .env("PATH", path_env())
        .env("TMPDIR", &dir)
        .args(["-f", "--exit-with-parent", "-U"])
        .arg(&socket)
        .arg(shim)
        .arg(format!("plugin={}", watched.display()))
        .args(["reload=watch", "size=64M"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("cannot start nbdkit: {e}"))?;
    let server = Nbdkit {
        child,
        dir: dir.clone(),
    };
    wait_for(|| socket.exists(), "nbdkit's socket", &log)?;
    let uri = format!("nbd+unix:///?socket={}", socket.display());

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
            || fs::read_to_string(&log).unwrap_or_default().contains(&line),
            &line,
            &log,
        )?;
        let swap_ms = landed.elapsed().as_secs_f64() * 1e3;
        let out = Command::new("nbdinfo")
            .env("PATH", path_env())
            .args(["--size", &uri])
            .output()
            .map_err(|e| format!("nbdinfo: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "nbdinfo after reload {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let first_read_ms = landed.elapsed().as_secs_f64() * 1e3;
        samples.push(ReloadSample {
            swap_ms,
            first_read_ms,
        });
        // Let the retired generation go before the next build lands.
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = fs::read_to_string(&log).unwrap_or_default();
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
