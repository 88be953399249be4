//! nbdkit in the background, for the bench: the one place that starts and stops it (fio, the
//! callgrind runs, the start-up timing and the reload latency all go through [`Server`]).
//!
//! Kept behind this small interface so that `rustshim-harness` can take its place.

use std::ffi::OsString;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{interrupted, Result};
use crate::workspace::path_env;

/// How long nbdkit may take to listen, and to stop on SIGTERM (valgrind is slow at both).
const TIMEOUT: Duration = Duration::from_secs(120);

/// How to run one nbdkit:
/// `[wrapper...] nbdkit -f --exit-with-parent -U SOCKET -P PIDFILE ARGS...`.
pub struct Launch {
    /// Names the server in errors.
    pub label: String,
    /// What runs nbdkit, e.g. `valgrind --tool=callgrind`; empty for nbdkit itself.
    pub wrapper: Vec<OsString>,
    /// The plugin and its parameters.
    pub args: Vec<OsString>,
    /// Set in nbdkit's environment besides `PATH`.
    pub env: Vec<(OsString, OsString)>,
}

impl Launch {
    /// The command line (without the environment), also for showing it in the report.
    pub fn command(&self, socket: &Path, pidfile: &Path) -> Command {
        let mut cmd = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg("nbdkit");
                cmd
            }
            None => Command::new("nbdkit"),
        };
        cmd.args(["-f", "--exit-with-parent", "-U"])
            .arg(socket)
            .arg("-P")
            .arg(pidfile)
            .args(&self.args);
        cmd
    }
}

/// An nbdkit in the background, in a directory of its own (its socket, pidfile and log);
/// dropping it stops nbdkit and removes the directory.
pub struct Server {
    label: String,
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
    pidfile: PathBuf,
    log: PathBuf,
    /// Just before the spawn.
    spawned: Instant,
}

impl Server {
    /// Starts nbdkit in `dir` (an empty directory, which the server then owns) and does not
    /// wait for it.
    pub fn spawn(dir: PathBuf, launch: &Launch) -> Result<Server> {
        let socket = dir.join("nbd.sock");
        let pidfile = dir.join("nbdkit.pid");
        let log = dir.join("nbdkit.log");
        let mut cmd = launch.command(&socket, &pidfile);
        let stderr =
            File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .env("PATH", path_env())
            .envs(launch.env.iter().map(|(k, v)| (k, v)));
        let spawned = Instant::now();
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
        Ok(Server {
            label: launch.label.clone(),
            child,
            dir,
            socket,
            pidfile,
            log,
            spawned,
        })
    }

    /// Spawns and waits until nbdkit listens (it writes the pidfile then).
    pub fn start(dir: PathBuf, launch: &Launch) -> Result<Server> {
        let mut server = Server::spawn(dir, launch)?;
        let ready = format!("{}\n", server.pid());
        let deadline = Instant::now() + TIMEOUT;
        loop {
            interrupted()?;
            if let Some(status) = server.exited()? {
                return Err(format!(
                    "{} exited ({status}) before it was ready: {}",
                    server.label,
                    server.log_text()
                ));
            }
            if server.socket.exists()
                && fs::read_to_string(&server.pidfile).is_ok_and(|s| s == ready)
            {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} was not ready after {} s: {}",
                    server.label,
                    TIMEOUT.as_secs(),
                    server.log_text()
                ));
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The Unix socket it listens on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// When it was spawned.
    pub fn spawned(&self) -> Instant {
        self.spawned
    }

    /// Its stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Its stderr so far, for an error message.
    pub fn log_text(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        match text.trim() {
            "" => "(nothing on its stderr)".into(),
            text => text.to_string(),
        }
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Result<Option<ExitStatus>> {
        self.child.try_wait().map_err(|e| e.to_string())
    }

    /// SIGTERM (nbdkit shuts down cleanly, and valgrind writes its output), then waits.
    pub fn stop(&mut self) -> Result {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill has no memory-safety preconditions; the child is not reaped yet, so
            // its pid is still its own.
            unsafe { libc::kill(self.pid(), libc::SIGTERM) };
            let deadline = Instant::now() + TIMEOUT;
            while let Ok(None) = self.child.try_wait() {
                if Instant::now() > deadline {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err(format!("{} did not stop on SIGTERM", self.label));
                }
                thread::sleep(Duration::from_millis(5));
            }
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
