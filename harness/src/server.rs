//! [`Server`]: the real nbdkit serving the plugin under test through the shim, on a Unix socket
//! in a private directory, and clients that talk to it.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::{HarnessError, Result};
use crate::process::{self, TempDir};
use crate::shim;

/// How long nbdkit may take to start, and each client to run, unless
/// [`ServerBuilder::timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest request the clients here send at once.
const CHUNK: usize = 4 << 20;

/// Runs the script file `sys.argv[1]` with `h` connected to the server, as `nbdsh` would;
/// the script sees its own path as `sys.argv[0]` and its arguments after it.
const PYTHON_PRELUDE: &str = "\
import os, sys
import nbd
sys.argv = sys.argv[1:]
URI = os.environ['RUSTSHIM_HARNESS_URI']
SOCKET = os.environ['RUSTSHIM_HARNESS_SOCKET']
h = nbd.NBD()
h.connect_unix(SOCKET)
exec(compile(open(sys.argv[0]).read(), sys.argv[0], 'exec'))
try:
    h.shutdown()
except Exception:
    pass
";

/// Configures a [`Server`]: made by [`Server::builder`], started by [`ServerBuilder::start`].
///
/// The command line is
/// `nbdkit -f --exit-with-parent -U SOCKET -P PIDFILE [nbdkit args] [--filter=SHIM ...] SHIM
/// plugin=PLUGIN [filter=FILTER ...] [args]`.
#[derive(Debug, Clone)]
pub struct ServerBuilder {
    plugin: OsString,
    args: Vec<OsString>,
    nbdkit_args: Vec<OsString>,
    rust_filters: Vec<OsString>,
    shim: Option<PathBuf>,
    nbdkit: Option<PathBuf>,
    envs: Vec<(OsString, OsString)>,
    timeout: Duration,
}

impl ServerBuilder {
    /// Adds an argument for the plugin (after `plugin=`): `key=value`, or a bare value for the
    /// plugin's magic key.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments for the plugin, as [`arg`](Self::arg) does.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Adds an option for nbdkit itself, placed before the shim: `-r`, `-v`,
    /// `--filter=cow`, `-D rustshim.foo=1`, `--threads=4`, ...
    pub fn nbdkit_arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.nbdkit_args.push(arg.as_ref().to_owned());
        self
    }

    /// Serves read-only (`nbdkit -r`).
    pub fn readonly(self) -> Self {
        self.nbdkit_arg("-r")
    }

    /// Makes nbdkit verbose (`nbdkit -v`): debug messages, including the plugin's `log::debug!`,
    /// go to [`Server::log`].
    pub fn verbose(self) -> Self {
        self.nbdkit_arg("-v")
    }

    /// Puts an nbdkit filter in front of the plugin (`--filter=NAME`); its parameters go with
    /// [`arg`](Self::arg).
    pub fn filter(self, name: &str) -> Self {
        self.nbdkit_arg(format!("--filter={name}"))
    }

    /// Puts a Rust filter (a path to its `.so`, e.g. [`plugin_path!`](crate::plugin_path) in a
    /// filter crate, or a name the shim looks up) in front of the plugin: the shim is loaded as
    /// the filter `rustshim` too (`--filter=SHIM ... filter=FILTER`). The filter sees the
    /// arguments first and passes on what it does not own; with several, the first given is
    /// the outermost.
    pub fn rust_filter(mut self, filter: impl AsRef<Path>) -> Self {
        let mut arg = OsString::from("filter=");
        arg.push(filter.as_ref());
        self.rust_filters.push(arg);
        self
    }

    /// Uses this shim instead of finding one (see [`find_shim`](crate::find_shim)).
    pub fn shim(mut self, shim: impl Into<PathBuf>) -> Self {
        self.shim = Some(shim.into());
        self
    }

    /// Runs this `nbdkit` instead of `$RUSTSHIM_NBDKIT` or `nbdkit` on `PATH`.
    pub fn nbdkit(mut self, program: impl Into<PathBuf>) -> Self {
        self.nbdkit = Some(program.into());
        self
    }

    /// Sets an environment variable for nbdkit (and so for the plugin).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// How long nbdkit may take to become ready, and each client call
    /// ([`Server::python`], [`Server::read`], ...) to finish. Default [`DEFAULT_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Starts nbdkit and waits until it serves (its pidfile is written); fails with nbdkit's
    /// log if it exits first, e.g. because the plugin refused its parameters.
    pub fn start(self) -> Result<Server> {
        let dir = TempDir::new()?;
        let socket = dir.path().join("nbd.sock");
        let pidfile = dir.path().join("nbdkit.pid");
        let log_path = dir.path().join("nbdkit.log");
        // The shim puts its private copies of the plugin in $TMPDIR: here, they go with the
        // directory even if nbdkit is killed before it can remove them.
        let tmpdir = dir.path().join("tmp");
        std::fs::create_dir(&tmpdir)
            .map_err(|e| HarnessError::io(format!("cannot create {}", tmpdir.display()), e))?;

        let nbdkit = self.nbdkit.unwrap_or_else(shim::nbdkit_program);
        let shim = match self.shim {
            Some(shim) => shim,
            None => shim::find_shim_for(&nbdkit)?,
        };
        let log = File::create(&log_path)
            .map_err(|e| HarnessError::io(format!("cannot create {}", log_path.display()), e))?;
        let log_too = log
            .try_clone()
            .map_err(|e| HarnessError::io("cannot duplicate the log file", e))?;

        let mut plugin_arg = OsString::from("plugin=");
        plugin_arg.push(&self.plugin);
        let mut cmd = process::command(&nbdkit);
        cmd.arg("-f")
            .arg("--exit-with-parent")
            .arg("-U")
            .arg(&socket)
            .arg("-P")
            .arg(&pidfile)
            .args(&self.nbdkit_args)
            .args(self.rust_filters.iter().map(|_| {
                let mut filter = OsString::from("--filter=");
                filter.push(&shim);
                filter
            }))
            .arg(&shim)
            .arg(plugin_arg)
            .args(&self.rust_filters)
            .args(&self.args)
            .env("TMPDIR", &tmpdir)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::from(log_too))
            .stderr(Stdio::from(log));
        let command = process::describe(&cmd);
        let (child, keeper) = spawn_kept(cmd).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => HarnessError::NotFound(format!(
                "cannot run {}: {e}. Install nbdkit (Debian: apt-get install nbdkit) or set {}",
                nbdkit.display(),
                shim::NBDKIT_ENV
            )),
            _ => HarnessError::io(format!("cannot start `{command}`"), e),
        })?;

        let mut server = Server {
            child,
            _keeper: keeper,
            socket,
            log_path,
            shim,
            command,
            timeout: self.timeout,
            dir,
        };
        server.wait_ready(&pidfile)?;
        Ok(server)
    }
}

/// Spawns `cmd` from a thread that lives until the returned sender is dropped. nbdkit's
/// `--exit-with-parent` (Linux's parent-death signal) fires when the *thread* that started it
/// ends, so starting it from the caller's thread would stop a server that outlives the thread
/// that made it (one shared by several tests, say). The process ending still stops it.
fn spawn_kept(mut cmd: Command) -> std::io::Result<(Child, mpsc::Sender<()>)> {
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

/// The real nbdkit serving a plugin through the shim on a Unix socket in a private directory;
/// killed, and the directory removed, on drop.
///
/// Its stdout and stderr are captured: see [`log`](Self::log). The client methods run Debian's
/// clients (python3-libnbd, libnbd-bin) against it, each under the builder's time limit, and
/// fail with the client's stderr and nbdkit's log; they take `&self`, so tests may share one
/// server (in a `static`, say: nbdkit is started from a thread of its own, so the end of the
/// test thread that started it does not stop it).
pub struct Server {
    child: Child,
    _keeper: mpsc::Sender<()>,
    socket: PathBuf,
    log_path: PathBuf,
    shim: PathBuf,
    command: String,
    timeout: Duration,
    // Last: removed after nbdkit is killed (see `Drop`).
    dir: TempDir,
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

    /// A [`ServerBuilder`] for `plugin`, with no arguments yet.
    pub fn builder(plugin: impl AsRef<Path>) -> ServerBuilder {
        ServerBuilder {
            plugin: plugin.as_ref().as_os_str().to_owned(),
            args: Vec::new(),
            nbdkit_args: Vec::new(),
            rust_filters: Vec::new(),
            shim: None,
            nbdkit: None,
            envs: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    fn wait_ready(&mut self, pidfile: &Path) -> Result<()> {
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            // nbdkit writes the pidfile (`PID\n`) once it accepts connections.
            let written = std::fs::read_to_string(pidfile)
                .is_ok_and(|pid| pid.ends_with('\n') && pid.trim().parse::<u32>().is_ok());
            if written && self.socket.exists() {
                return Ok(());
            }
            let status = self
                .child
                .try_wait()
                .map_err(|e| HarnessError::io("waiting for nbdkit", e))?;
            let reason = match status {
                Some(status) => format!("exited before serving ({status})"),
                None if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
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

    /// The NBD URI of the export: `nbd+unix:///?socket=SOCKET`, for any NBD client.
    pub fn uri(&self) -> String {
        format!("nbd+unix:///?socket={}", uri_encode(&self.socket))
    }

    /// The Unix socket nbdkit listens on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The shim serving the plugin.
    pub fn shim(&self) -> &Path {
        &self.shim
    }

    /// nbdkit's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The nbdkit command line, for messages.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// Whether nbdkit is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Everything nbdkit has written to stdout and stderr so far: the plugin's errors and
    /// `log::warn!`s (and, with [`verbose`](ServerBuilder::verbose), debug messages).
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// The file [`log`](Self::log) reads.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Runs a Python 3 script with libnbd's `nbd` module (`/usr/bin/python3`, Debian's
    /// python3-libnbd) and returns what it printed. The script starts with `h`, an `nbd.NBD()`
    /// handle connected to the server, and `URI` and `SOCKET` defined, as in `nbdsh`; a common
    /// indentation is removed, so it can be an indented raw string. An exception fails the call
    /// with its traceback.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), rustshim_harness::HarnessError> {
    /// # let server = rustshim_harness::Server::start("x.so", &[])?;
    /// let out = server.python(
    ///     r#"
    ///     h.pwrite(b"\x01" * 512, 0)
    ///     print(h.can_flush(), h.pread(4, 0))
    ///     "#,
    /// )?;
    /// assert_eq!(out.trim(), r"True b'\x01\x01\x01\x01'");
    /// # Ok(()) }
    /// ```
    pub fn python(&self, script: &str) -> Result<String> {
        let out = self.python_bytes(script, &[], b"")?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Like [`python`](Self::python), with `args` in `sys.argv[1:]`, `stdin` as its input, and
    /// its output as bytes.
    pub fn python_bytes(&self, script: &str, args: &[&str], stdin: &[u8]) -> Result<Vec<u8>> {
        // The script runs from a file of its own, so a traceback names its lines as written
        // (and shows them).
        static SCRIPTS: AtomicU32 = AtomicU32::new(0);
        let script = dedent(script);
        let file = self.dir.path().join(format!(
            "script-{}.py",
            SCRIPTS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&file, &script)
            .map_err(|e| HarnessError::io(format!("cannot write {}", file.display()), e))?;
        let mut cmd = process::command("/usr/bin/python3");
        cmd.arg("-c")
            .arg(PYTHON_PRELUDE)
            .arg(&file)
            .args(args)
            .env("RUSTSHIM_HARNESS_URI", self.uri())
            .env("RUSTSHIM_HARNESS_SOCKET", &self.socket);
        let finished = self.client(&mut cmd, stdin, "/usr/bin/python3");
        let _ = std::fs::remove_file(&file);
        let finished = finished?;
        if String::from_utf8_lossy(&finished.stderr).contains("No module named 'nbd'")
            && !finished.status.is_some_and(|s| s.success())
        {
            return Err(HarnessError::NotFound(
                "/usr/bin/python3 has no `nbd` module: install libnbd's Python bindings \
                 (Debian: apt-get install python3-libnbd)"
                    .into(),
            ));
        }
        self.succeeded(&cmd, &script, finished)
    }

    /// Reads `len` bytes at `offset` of the export.
    pub fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let data = self.python_bytes(
            &format!(
                "off, n = int(sys.argv[1]), int(sys.argv[2])\n\
                 while n > 0:\n    k = min(n, {CHUNK})\n    \
                 sys.stdout.buffer.write(h.pread(k, off))\n    off += k\n    n -= k\n\
                 sys.stdout.buffer.flush()"
            ),
            &[&offset.to_string(), &len.to_string()],
            b"",
        )?;
        if data.len() != len {
            return Err(HarnessError::Unexpected(format!(
                "reading {len} bytes at {offset} returned {} bytes",
                data.len()
            )));
        }
        Ok(data)
    }

    /// Writes `data` at `offset` of the export (each request returns once the plugin's
    /// `pwrite` has; no flush is sent).
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.python_bytes(
            &format!(
                "off = int(sys.argv[1])\n\
                 data = sys.stdin.buffer.read()\n\
                 for i in range(0, len(data), {CHUNK}):\n    \
                 h.pwrite(data[i:i + {CHUNK}], off + i)"
            ),
            &[&offset.to_string()],
            data,
        )?;
        Ok(())
    }

    /// The size of the export in bytes (`nbdinfo --size`).
    pub fn size(&self) -> Result<u64> {
        let out = self.nbdinfo(&["--size"])?;
        out.trim().parse().map_err(|_| {
            HarnessError::Unexpected(format!("`nbdinfo --size` printed {out:?}, not a size"))
        })
    }

    /// Runs `nbdinfo OPTIONS URI` (libnbd-bin) and returns what it printed: try `--json`,
    /// `--map`, `--can write`, `--is rotational`, `--list`.
    pub fn nbdinfo(&self, options: &[&str]) -> Result<String> {
        let mut cmd = process::command("nbdinfo");
        cmd.args(options).arg(self.uri());
        let finished = self.client(&mut cmd, b"", "nbdinfo")?;
        let out = self.succeeded(&cmd, "", finished)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Runs a client to completion under the time limit; a missing program is `NotFound`.
    fn client(&self, cmd: &mut Command, stdin: &[u8], program: &str) -> Result<process::Finished> {
        match process::run(cmd, stdin, self.timeout) {
            Err(HarnessError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                let package = if program == "nbdinfo" {
                    "libnbd-bin"
                } else {
                    "python3-libnbd"
                };
                Err(HarnessError::NotFound(format!(
                    "cannot run {program}: {source} (Debian: apt-get install {package})"
                )))
            }
            other => other,
        }
    }

    /// The client's stdout if it succeeded, else an error with its stderr and nbdkit's log.
    fn succeeded(
        &self,
        cmd: &Command,
        script: &str,
        finished: process::Finished,
    ) -> Result<Vec<u8>> {
        let status = match finished.status {
            Some(status) if status.success() => return Ok(finished.stdout),
            Some(status) => status.to_string(),
            None => format!("timed out after {:?}", self.timeout),
        };
        Err(HarnessError::Client {
            command: process::describe(cmd),
            script: script.to_string(),
            status,
            stderr: String::from_utf8_lossy(&finished.stderr).into_owned(),
            log: self.log(),
        })
    }

    /// Stops nbdkit as a signal would (SIGTERM): it closes the connections and runs the
    /// plugin's `cleanup` and `unload`. Returns its exit status (success, for a plugin that
    /// shut down cleanly) and its whole log. After the time limit it is killed.
    pub fn stop(mut self) -> Result<Stopped> {
        let pid = self.child.id().to_string();
        let mut kill = process::command("/bin/sh");
        kill.args(["-c", "kill -TERM \"$1\"", "sh", &pid]);
        // If it fails, nbdkit has already exited: the status below says how.
        process::run(&mut kill, b"", self.timeout)?;
        let status = process::wait_until(&mut self.child, Instant::now() + self.timeout)
            .map_err(|e| HarnessError::io("waiting for nbdkit", e))?;
        match status {
            Some(status) => Ok(Stopped {
                status,
                log: self.log(),
            }),
            None => Err(HarnessError::Unexpected(format!(
                "nbdkit did not exit within {:?} of SIGTERM (killed); its log:\n{}",
                self.timeout,
                self.log()
            ))),
        }
    }

    /// The private directory holding the socket and the log (removed on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Then the fields: the keeper thread ends, the directory goes.
    }
}

/// Percent-encodes a socket path for the query of an NBD URI.
fn uri_encode(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for &byte in path.as_os_str().as_bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Removes the indentation common to the script's non-blank lines.
fn dedent(script: &str) -> String {
    let indent = |line: &str| line.len() - line.trim_start_matches([' ', '\t']).len();
    let common = script
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(indent)
        .min()
        .unwrap_or(0);
    script
        .lines()
        .map(|line| line.get(common.min(indent(line))..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedent_removes_common_indentation() {
        assert_eq!(
            dedent("\n    a = 1\n\n    if a:\n        print(a)\n  "),
            "\na = 1\n\nif a:\n    print(a)\n"
        );
        assert_eq!(dedent("print(1)"), "print(1)");
    }

    #[test]
    fn socket_paths_are_encoded_for_uris() {
        assert_eq!(
            uri_encode(Path::new("/tmp/a b/nbd.sock")),
            "/tmp/a%20b/nbd.sock"
        );
    }
}
