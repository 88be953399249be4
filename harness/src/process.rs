//! Child processes with a time limit, a private temporary directory, and the `PATH` children
//! get.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{HarnessError, Result};

/// `PATH` for children: `/usr/bin` first, because Debian's `python3` there is the one with
/// libnbd's `nbd` module (a pyenv or venv `python3` earlier on `PATH` would not have it).
pub(crate) fn path_env() -> OsString {
    let mut path = OsString::from("/usr/bin:/bin");
    if let Some(rest) = std::env::var_os("PATH") {
        path.push(":");
        path.push(rest);
    }
    path
}

/// Environment variable: a Debian root directory (made by `debootstrap`, e.g. by `cargo xtask
/// test --nbdkit 1.48`) in which nbdkit and every client run, so a test suite runs against that
/// root's nbdkit and libnbd with the plugins built on the host. Unset or empty: the host's.
pub const ROOT_ENV: &str = "RUSTSHIM_ROOT";

/// Enters a root: see the script's own comment.
const ENTER_ROOT: &str = include_str!("enter_root.sh");

/// The root children run in ([`ROOT_ENV`]), if any.
pub fn root() -> Option<PathBuf> {
    std::env::var_os(ROOT_ENV)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
}

/// A command for an outside program (nbdkit, a client, valgrind, ...) as every child of the
/// harness is started: with `/usr/bin` first on `PATH`, no stdin, and inside the Debian root of
/// [`ROOT_ENV`] when that is set (the program is then looked up in the root). Every test that
/// runs nbdkit or a client should make its command here, so that the one variable moves the
/// whole suite to another nbdkit.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    command_in(root().as_deref(), program)
}

/// Like [`command`], inside `root` if given, whatever [`ROOT_ENV`] says.
pub fn command_in(root: Option<&Path>, program: impl AsRef<OsStr>) -> Command {
    let mut cmd = match root {
        None => Command::new(program),
        Some(root) => {
            let mut cmd = Command::new("unshare");
            cmd.args(["--mount", "--propagation", "private", "/bin/sh", "-c"])
                .arg(ENTER_ROOT)
                .arg("enter")
                .arg(root)
                .arg(program);
            cmd
        }
    };
    cmd.env("PATH", path_env()).stdin(Stdio::null());
    cmd
}

/// A command line for messages: the program and its arguments, long ones abbreviated.
pub(crate) fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|arg| {
            let arg = arg.to_string_lossy();
            let line = arg.lines().next().unwrap_or("");
            let arg = match line.char_indices().nth(80) {
                Some((cut, _)) => format!("{}…", &line[..cut]),
                None if line.len() < arg.len() => format!("{line}…"),
                None => line.to_string(),
            };
            if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || c == '\'') {
                format!("'{}'", arg.replace('\'', r"'\''"))
            } else {
                arg
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a finished child printed, and how it ended (`None`: killed at the time limit).
pub(crate) struct Finished {
    pub status: Option<ExitStatus>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Runs `cmd` with `stdin` as its input, killing it after `timeout`.
pub(crate) fn run(cmd: &mut Command, stdin: &[u8], timeout: Duration) -> Result<Finished> {
    let what = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| HarnessError::io(format!("cannot start `{what}`"), e))?;
    let input = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let result = std::thread::scope(|scope| {
        // Feeding and draining in threads: a child blocked on a full pipe never finishes.
        scope.spawn(move || {
            let mut input = input;
            // A child that exits without reading all of it is not an error here.
            let _ = input.write_all(stdin);
        });
        let out = scope.spawn(move || read_all(stdout));
        let err = scope.spawn(move || read_all(stderr));
        let status = wait_until(&mut child, Instant::now() + timeout);
        let status = match status {
            Ok(Some(status)) => Some(status),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                None
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HarnessError::io(format!("waiting for `{what}`"), e));
            }
        };
        Ok(Finished {
            status,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        })
    });
    result
}

fn read_all(mut from: impl Read) -> Vec<u8> {
    let mut bytes = Vec::new();
    let _ = from.read_to_end(&mut bytes);
    bytes
}

/// Waits for `child` until `deadline`: `Ok(None)` if it is still running then.
pub(crate) fn wait_until(
    child: &mut Child,
    deadline: Instant,
) -> std::io::Result<Option<ExitStatus>> {
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// A fresh directory only this user can enter, removed with everything in it on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new() -> Result<TempDir> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        // Unix socket paths are limited to 107 bytes: fall back to /tmp if $TMPDIR is deep.
        let mut base = std::env::temp_dir();
        if base.as_os_str().len() > 60 {
            base = PathBuf::from("/tmp");
        }
        let mut attempts = 0;
        loop {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let dir = base.join(format!(
                "rustshim-harness-{}-{}-{nanos:x}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(TempDir(dir)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempts < 100 => {
                    attempts += 1;
                }
                Err(e) => {
                    return Err(HarnessError::io(
                        format!("cannot create a directory in {}", base.display()),
                        e,
                    ))
                }
            }
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
