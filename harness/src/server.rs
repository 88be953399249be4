//! [`Server`]: the real nbdkit serving in the background on a Unix socket in a private
//! directory, until it is stopped or dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{HarnessError, Result};
use crate::process;
use crate::temp_dir::TempDir;

/// The files of a server's private directory.
pub(crate) const SOCKET: &str = "nbd.sock";
pub(crate) const PIDFILE: &str = "nbdkit.pid";
pub(crate) const LOG: &str = "nbdkit.log";
pub(crate) const TMPDIR: &str = "tmp";

/// Spawns `cmd` from a thread that lives until the returned sender is dropped. nbdkit's
/// `--exit-with-parent` (Linux's parent-death signal) fires when the *thread* that started it
/// ends, so starting it from the caller's thread would stop a server that outlives the thread
/// that made it (one shared by several tests, say). The process ending still stops it.
pub(crate) fn spawn_kept(mut cmd: Command) -> std::io::Result<(Child, mpsc::Sender<()>)> {
    let (child_tx, child_rx) = mpsc::channel();
    let (keep_tx, keep_rx) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("rustshim-harness-nbdkit".into())
        .spawn(move || {
            let _ = child_tx.send(cmd.spawn());
            // Returns (with an error) when the server drops its sender.
            let _ = keep_rx.recv();
        })?;
    let child = child_rx
        .recv()
        .map_err(|_| std::io::Error::other("the thread starting nbdkit ended"))??;
    Ok((child, keep_tx))
}

/// What [`ServerBuilder::spawn`](crate::ServerBuilder::spawn) made a [`Server`] of.
pub(crate) struct Parts {
    pub child: Child,
    pub keeper: mpsc::Sender<()>,
    pub spawned: Instant,
    pub shim: PathBuf,
    pub command: String,
    pub timeout: Duration,
    pub served: Option<PathBuf>,
    pub socket: PathBuf,
    pub dir: TempDir,
}

/// The real nbdkit serving a plugin through the shim on a Unix socket in a private directory;
/// killed, and the directory removed, on drop.
///
/// Its stdout and stderr are captured: see [`log`](Self::log). The client methods run Debian's
/// clients (python3-libnbd, libnbd-bin) against it, each under the builder's time limit, and
/// fail with the client's stderr and nbdkit's log. Every method takes `&self`, so tests may
/// share one server (in a `static`, say: nbdkit is started from a thread of its own, so the end
/// of the test thread that started it does not stop it).
pub struct Server {
    child: Mutex<Child>,
    pid: u32,
    _keeper: mpsc::Sender<()>,
    spawned: Instant,
    socket: PathBuf,
    log_path: PathBuf,
    shim: PathBuf,
    command: String,
    pub(crate) timeout: Duration,
    /// The plugin (or Rust filter) file served with `reload=watch` (`filter-reload=watch`):
    /// [`ServerBuilder::reloadable`](crate::ServerBuilder::reloadable).
    served: Option<PathBuf>,
    // Last: removed after nbdkit is killed (see `Drop`).
    pub(crate) dir: TempDir,
}

/// How a [`Server`] ended: see [`Server::stop`].
#[derive(Debug)]
pub struct Stopped {
    /// nbdkit's exit status.
    pub status: ExitStatus,
    /// Everything nbdkit wrote to stdout and stderr.
    pub log: String,
}

impl Server {
    /// Starts nbdkit serving `plugin` (a path to the plugin's `.so`, e.g. from
    /// [`plugin_path!`](crate::plugin_path), or a name the shim looks up) with the plugin's
    /// arguments `args` (`["size=1M"]`), and waits until it serves. For nbdkit options,
    /// another shim or a time limit, use [`builder`](Self::builder).
    pub fn start(plugin: impl AsRef<Path>, args: &[&str]) -> Result<Server> {
        Server::builder(plugin).args(args).start()
    }

    pub(crate) fn new(parts: Parts) -> Server {
        Server {
            pid: parts.child.id(),
            child: Mutex::new(parts.child),
            _keeper: parts.keeper,
            spawned: parts.spawned,
            socket: parts.socket,
            log_path: parts.dir.join(LOG),
            shim: parts.shim,
            command: parts.command,
            timeout: parts.timeout,
            served: parts.served,
            dir: parts.dir,
        }
    }

    fn child(&self) -> MutexGuard<'_, Child> {
        self.child
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until nbdkit serves: it has written its pidfile (it does once it accepts
    /// connections) and the socket exists. [`ServerBuilder::start`](crate::ServerBuilder::start) does this; after
    /// [`ServerBuilder::spawn`](crate::ServerBuilder::spawn) it is up to the caller. Fails with nbdkit's log if it exits
    /// first, and kills it if it is not serving within the time limit.
    pub fn wait_ready(&self) -> Result<()> {
        let pidfile = self.dir.join(PIDFILE);
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            let written = std::fs::read_to_string(&pidfile)
                .is_ok_and(|pid| pid.ends_with('\n') && pid.trim().parse::<u32>().is_ok());
            if written && self.socket.exists() {
                return Ok(());
            }
            let reason = match self.try_wait()? {
                Some(status) => format!("exited before serving ({status})"),
                None if Instant::now() >= deadline => {
                    self.kill();
                    format!("was not serving within {:?} (killed)", self.timeout)
                }
                None => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                    continue;
                }
            };
            return Err(HarnessError::Start {
                command: self.command.clone(),
                reason,
                log: self.log(),
            });
        }
    }

    /// The Unix socket nbdkit listens on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The shim on the command line, serving the plugin or the Rust filters (empty for a
    /// server started [`without_shim`](crate::ServerBuilder::without_shim) and with no Rust
    /// filter).
    pub fn shim(&self) -> &Path {
        &self.shim
    }

    /// nbdkit's process ID (that of the first word of the [`prefix`](crate::ServerBuilder::prefix),
    /// if there is one).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The moment just before nbdkit was spawned.
    pub fn spawned(&self) -> Instant {
        self.spawned
    }

    /// The nbdkit command line, for messages.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// The `TMPDIR` nbdkit was given, a directory of the server's own (the shim makes no files
    /// there: its private copies of plugins and filters are in memory).
    pub fn tmpdir(&self) -> PathBuf {
        self.dir.join(TMPDIR)
    }

    /// Whether nbdkit is still running.
    pub fn is_running(&self) -> bool {
        matches!(self.child().try_wait(), Ok(None))
    }

    /// nbdkit's exit status if it has exited, without waiting.
    pub fn try_wait(&self) -> Result<Option<ExitStatus>> {
        self.child()
            .try_wait()
            .map_err(|e| HarnessError::io("waiting for nbdkit", e))
    }

    /// Waits up to `limit` for nbdkit to exit by itself: its exit status, or `None` if it is
    /// still running.
    pub fn wait_timeout(&self, limit: Duration) -> Result<Option<ExitStatus>> {
        process::poll_until(Instant::now() + limit, || self.try_wait())
    }

    /// Everything nbdkit has written to stdout and stderr so far: the plugin's errors and
    /// `log::warn!`s (and, with [`verbose`](crate::ServerBuilder::verbose), debug messages).
    pub fn log(&self) -> String {
        std::fs::read(self.log_path())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// The file [`log`](Self::log) reads.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Waits until nbdkit's log has `count` lines containing `needle` and returns the
    /// `count`-th of them (e.g. the shim's reload line: `wait_for_log("generation 2 from", 1)`).
    /// Fails with the log if nbdkit exits first or the time limit passes.
    pub fn wait_for_log(&self, needle: &str, count: usize) -> Result<String> {
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            // Read before looking at the process: the last lines of one that has exited count.
            let exited = self.try_wait()?;
            let log = self.log();
            if let Some(line) = log
                .lines()
                .filter(|l| l.contains(needle))
                .nth(count.max(1) - 1)
            {
                return Ok(line.to_string());
            }
            let why = match exited {
                Some(status) => format!("nbdkit exited ({status})"),
                None if Instant::now() >= deadline => format!("{:?} passed", self.timeout),
                None => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(10));
                    continue;
                }
            };
            return Err(HarnessError::Unexpected(format!(
                "{why} before its log had {count} line(s) containing {needle:?}; its log:\n{log}"
            )));
        }
    }

    /// Puts `build` (a plugin `.so`, e.g. from a [`PluginCrate`](crate::PluginCrate) with other
    /// features) where this server, started [`reloadable`](crate::ServerBuilder::reloadable), watches
    /// its plugin (a copy and a rename, as cargo does), and waits for the shim's line about it.
    /// For a server whose Rust filter was made reloadable, `build` is a new build of that
    /// filter, and the same goes for it.
    /// Returns the line saying that the new build serves new connections (open ones keep the
    /// build that opened them); a build the shim refuses is [`HarnessError::Unexpected`] with
    /// the shim's line saying why, and the previous build keeps serving. `build` must differ
    /// from the build serving (an identical file is not reloaded):
    /// [`reload_rebuilt`](Self::reload_rebuilt) reloads the same code.
    pub fn reload(&self, build: impl AsRef<Path>) -> Result<String> {
        let bytes = std::fs::read(build.as_ref()).map_err(|e| {
            HarnessError::io(format!("cannot read {}", build.as_ref().display()), e)
        })?;
        self.reload_bytes(&bytes)
    }

    /// Reloads the build that serves as if it had been rebuilt: the same code in a new file (a
    /// few bytes appended, which the loader ignores), so the shim loads it as a new generation.
    /// For testing a plugin's (or a Rust filter's) `hand_over`/`take_over` (and `cleanup` of
    /// the old generation) without a second build. See [`reload`](Self::reload).
    pub fn reload_rebuilt(&self) -> Result<String> {
        static REBUILDS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let served = self.served_plugin()?;
        let mut bytes = std::fs::read(served)
            .map_err(|e| HarnessError::io(format!("cannot read {}", served.display()), e))?;
        let n = REBUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        bytes.extend_from_slice(format!("\0rustshim-harness rebuild {n}\0").as_bytes());
        self.reload_bytes(&bytes)
    }

    fn served_plugin(&self) -> Result<&Path> {
        self.served.as_deref().ok_or_else(|| {
            HarnessError::Unexpected(
                "reload needs a server started with Server::builder(plugin).reloadable(), or \
                 reloadable() right after rust_filter(filter)"
                    .into(),
            )
        })
    }

    fn reload_bytes(&self, bytes: &[u8]) -> Result<String> {
        // The shim's lines (host/src/reload/): one per build it loaded or refused.
        const LOADED: &str = "rustshim: reload: generation ";
        const REFUSED: &str = "rustshim: reload of '";
        let is_reload_line = |l: &&str| l.contains(LOADED) || l.contains(REFUSED);
        let served = self.served_plugin()?;
        let before = self.log().lines().filter(is_reload_line).count();
        let tmp = served.with_extension("rustshim-harness-new");
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, served))
            .map_err(|e| HarnessError::io(format!("cannot replace {}", served.display()), e))?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let exited = self.try_wait()?;
            let log = self.log();
            if let Some(line) = log.lines().filter(is_reload_line).nth(before) {
                return if line.contains(LOADED) {
                    Ok(line.to_string())
                } else {
                    Err(HarnessError::Unexpected(format!(
                        "the shim refused the new build of {}: {line}",
                        served.display()
                    )))
                };
            }
            let why = match exited {
                Some(status) => format!("nbdkit exited ({status})"),
                None if Instant::now() >= deadline => format!("{:?} passed", self.timeout),
                None => {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            return Err(HarnessError::Unexpected(format!(
                "{why} before the shim said whether it reloaded {} (was the server started \
                 reloadable(), and does the new build differ?); its log:\n{log}",
                served.display()
            )));
        }
    }

    /// Sends nbdkit SIGTERM, as an admin would stop it: it closes the connections and runs the
    /// plugin's `cleanup` and `unload`. Waits for it and returns its exit status (success, for
    /// a plugin that shut down cleanly); after the time limit it is killed and that is an
    /// error. The log stays readable.
    pub fn terminate(&self) -> Result<ExitStatus> {
        if self.try_wait()?.is_none() {
            // Not reaped yet, so the pid is still nbdkit's. If kill fails, nbdkit has exited
            // meanwhile: the status below says how.
            let mut kill = Command::new("/bin/sh");
            kill.args(["-c", "kill -TERM \"$1\"", "sh", &self.pid.to_string()]);
            process::run_with_input(&mut kill, b"", self.timeout)?;
        }
        match self.wait_timeout(self.timeout)? {
            Some(status) => Ok(status),
            None => {
                self.kill();
                Err(HarnessError::Unexpected(format!(
                    "nbdkit did not exit within {:?} of SIGTERM (killed); its log:\n{}",
                    self.timeout,
                    self.log()
                )))
            }
        }
    }

    /// [`terminate`](Self::terminate)s nbdkit and returns its exit status with its whole log.
    pub fn stop(self) -> Result<Stopped> {
        let status = self.terminate()?;
        Ok(Stopped {
            status,
            log: self.log(),
        })
    }

    /// The private directory holding the socket, the pidfile, the log and the `TMPDIR`
    /// (removed on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn kill(&self) {
        let mut child = self.child();
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        // Then the fields: the keeper thread ends, the directory goes.
    }
}
