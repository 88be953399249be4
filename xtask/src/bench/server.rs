//! nbdkit in the background, for the bench: the one place the bench starts and stops it (fio,
//! the callgrind runs, the start-up timing and the reload latency all go through [`Server`]).
//!
//! A thin layer over `rustshim-harness`, which makes the command line, starts nbdkit (inside
//! the Debian root of `RUSTSHIM_ROOT`, if set), waits for it and stops it; here are only the
//! bench's labels, errors as text, and a SIGTERM on drop.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use rustshim_harness::ServerBuilder;

use super::{interrupted, Result};

/// How long nbdkit may take to listen, and to stop on SIGTERM (valgrind is slow at both).
const TIMEOUT: Duration = Duration::from_secs(120);

/// How to run one nbdkit:
/// `[wrapper...] nbdkit -f --exit-with-parent -U SOCKET -P PIDFILE ARGS...`.
pub struct Launch {
    /// Names the server in errors.
    pub label: String,
    /// What runs nbdkit, e.g. `valgrind --tool=callgrind`; empty for nbdkit itself.
    pub wrapper: Vec<OsString>,
    /// The plugin and its parameters (the shim first, for the shim's servers).
    pub args: Vec<OsString>,
    /// Set in nbdkit's environment.
    pub env: Vec<(OsString, OsString)>,
}

impl Launch {
    fn builder(&self) -> ServerBuilder {
        let mut builder = ServerBuilder::new()
            .without_shim()
            .prefix(&self.wrapper)
            .args(&self.args)
            .timeout(TIMEOUT);
        for (key, value) in &self.env {
            builder = builder.env(key, value);
        }
        builder
    }

    /// The command line, with `dir` standing for the server's own directory: for the report.
    pub fn command_line(&self, dir: &Path) -> Vec<OsString> {
        self.builder()
            .server_argv(dir)
            .expect("without a shim to find, the command line is known")
    }
}

/// An nbdkit in the background, in a directory of its own (its socket, pidfile and log);
/// dropping it stops nbdkit (SIGTERM) and removes the directory.
pub struct Server {
    label: String,
    server: rustshim_harness::Server,
}

impl Server {
    /// Starts nbdkit and does not wait for it.
    pub fn spawn(launch: &Launch) -> Result<Server> {
        let server = launch
            .builder()
            .spawn()
            .map_err(|e| format!("{}: {e}", launch.label))?;
        Ok(Server {
            label: launch.label.clone(),
            server,
        })
    }

    /// Spawns and waits until nbdkit listens (it writes the pidfile then).
    pub fn start(launch: &Launch) -> Result<Server> {
        let server = Server::spawn(launch)?;
        let ready = server.server.wait_ready();
        // A Ctrl-C reaches nbdkit too, which then exits before it is ready: say why.
        interrupted()?;
        ready.map_err(|e| format!("{}: {e}", server.label))?;
        Ok(server)
    }

    pub fn pid(&self) -> i32 {
        self.server.pid() as i32
    }

    /// The Unix socket it listens on.
    pub fn socket(&self) -> &Path {
        self.server.socket()
    }

    /// When it was spawned.
    pub fn spawned(&self) -> Instant {
        self.server.spawned()
    }

    /// The `TMPDIR` it was given (the harness gives each server its own).
    pub fn tmpdir(&self) -> PathBuf {
        self.server.tmpdir()
    }

    /// Its stdout and stderr.
    pub fn log_path(&self) -> &Path {
        self.server.log_path()
    }

    /// Its stderr so far, for an error message.
    pub fn log_text(&self) -> String {
        match self.server.log().trim() {
            "" => "(nothing on its stderr)".into(),
            text => text.to_string(),
        }
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Result<Option<ExitStatus>> {
        self.server.try_wait().map_err(|e| e.to_string())
    }

    /// SIGTERM (nbdkit shuts down cleanly, and valgrind writes its output), then waits.
    pub fn stop(&mut self) -> Result {
        self.server
            .terminate()
            .map(|_| ())
            .map_err(|e| format!("{} did not stop on SIGTERM: {e}", self.label))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
