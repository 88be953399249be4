//! Child processes: the `PATH` and the Debian root every child gets, and running one to its end
//! under a time limit.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{HarnessError, Result};

/// `PATH` for children: `/usr/bin` first, because Debian's `python3` there is the one with
/// libnbd's `nbd` module (a pyenv or venv `python3` earlier on `PATH` would not have it), then
/// the caller's `PATH`.
pub fn path_env() -> OsString {
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
/// harness is started: with `/usr/bin` first on `PATH` ([`path_env`]), no stdin, and inside the
/// Debian root of [`ROOT_ENV`] when that is set (the program is then looked up in the root).
/// Every test that runs nbdkit or a client should make its command here, so that the one
/// variable moves the whole suite to another nbdkit.
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

/// A command line for messages: the words, long ones abbreviated, quoted as a shell would need.
pub(crate) fn describe_words<'a>(words: impl IntoIterator<Item = &'a OsStr>) -> String {
    words
        .into_iter()
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

/// [`describe_words`] of a command's program and arguments.
pub(crate) fn describe(cmd: &Command) -> String {
    describe_words(std::iter::once(cmd.get_program()).chain(cmd.get_args()))
}

/// What a program run to its end by [`run`] (or [`ServerBuilder::run`](crate::ServerBuilder::run))
/// printed, and how it ended.
#[derive(Debug, Clone)]
pub struct Output {
    /// Its exit status.
    pub status: ExitStatus,
    /// Its standard output (invalid UTF-8 replaced).
    pub stdout: String,
    /// Its standard error (invalid UTF-8 replaced).
    pub stderr: String,
}

impl Output {
    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// Runs `cmd` to its end with no input and returns its status and output, whatever the status:
/// the way to run nbdkit in the foreground (`--dump-plugin`, `--help`, `--run`, a refused
/// parameter) or a client, with a time limit. Make `cmd` with [`command`] so it obeys
/// [`ROOT_ENV`].
///
/// A program that cannot be started is [`HarnessError::NotFound`] or [`HarnessError::Io`]. One
/// still running after `timeout` is killed and is [`HarnessError::TimedOut`], with what it had
/// printed; so is one whose output stays open after it exits (a child it left behind holds it)
/// until `timeout`.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let finished = run_with_input(cmd, b"", timeout).map_err(|e| match e {
        HarnessError::Io { source, context } if source.kind() == std::io::ErrorKind::NotFound => {
            HarnessError::NotFound(format!("{context}: {source}"))
        }
        other => other,
    })?;
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
    match finished.status {
        Some(status) => Ok(Output {
            status,
            stdout: text(finished.stdout),
            stderr: text(finished.stderr),
        }),
        None => Err(HarnessError::TimedOut {
            command: describe(cmd),
            after: timeout,
            stdout: text(finished.stdout),
            stderr: text(finished.stderr),
        }),
    }
}

/// What a finished child printed, and how it ended (`None`: killed at the time limit, or its
/// output was still open then).
pub(crate) struct Finished {
    pub status: Option<ExitStatus>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// After a child is killed, how long what it printed may take to arrive.
const DRAIN_AFTER_KILL: Duration = Duration::from_secs(1);

/// Runs `cmd` with `stdin` as its input, killing it after `timeout`.
pub(crate) fn run_with_input(
    cmd: &mut Command,
    stdin: &[u8],
    timeout: Duration,
) -> Result<Finished> {
    let deadline = Instant::now() + timeout;
    let what = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| HarnessError::io(format!("cannot start `{what}`"), e))?;
    // Feeding and draining in threads of their own: a child blocked on a full pipe never
    // finishes, and a pipe that a grandchild keeps open must not hold us past the deadline.
    let input = child.stdin.take().expect("stdin is piped");
    let stdin = stdin.to_vec();
    std::thread::spawn(move || {
        let mut input = input;
        // A child that exits without reading all of it is not an error here.
        let _ = input.write_all(&stdin);
    });
    let (done_tx, done_rx) = mpsc::channel();
    let stdout = drain(
        child.stdout.take().expect("stdout is piped"),
        done_tx.clone(),
    );
    let stderr = drain(child.stderr.take().expect("stderr is piped"), done_tx);
    let status = match wait_until(&mut child, deadline) {
        Ok(status) => status,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HarnessError::io(format!("waiting for `{what}`"), e));
        }
    };
    let drained_by = match status {
        Some(_) => deadline,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Instant::now() + DRAIN_AFTER_KILL
        }
    };
    let mut open = 2;
    while open > 0 {
        let left = drained_by.saturating_duration_since(Instant::now());
        match done_rx.recv_timeout(left) {
            Ok(()) => open -= 1,
            Err(_) => break,
        }
    }
    let taken = |buffer: Arc<Mutex<Vec<u8>>>| {
        std::mem::take(
            &mut *buffer
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    };
    Ok(Finished {
        status: status.filter(|_| open == 0),
        stdout: taken(stdout),
        stderr: taken(stderr),
    })
}

/// Reads `from` to its end in a thread, into the returned buffer; says so on `done` then.
fn drain(mut from: impl Read + Send + 'static, done: mpsc::Sender<()>) -> Arc<Mutex<Vec<u8>>> {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let filled = Arc::clone(&buffer);
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match from.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => filled
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = done.send(());
    });
    buffer
}

/// Waits for `child` until `deadline`: `Ok(None)` if it is still running then.
pub(crate) fn wait_until(
    child: &mut Child,
    deadline: Instant,
) -> std::io::Result<Option<ExitStatus>> {
    poll_until(deadline, || child.try_wait())
}

/// Asks `check` until it has an answer or `deadline` passes (then `Ok(None)`), pausing 1 ms,
/// then longer, up to 20 ms, in between.
pub(crate) fn poll_until<T, E>(
    deadline: Instant,
    mut check: impl FnMut() -> Result<Option<T>, E>,
) -> Result<Option<T>, E> {
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(answer) = check()? {
            return Ok(Some(answer));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_returns_status_and_output() {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 3"]);
        let out = run(&mut cmd, Duration::from_secs(30)).unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(
            (out.stdout.as_str(), out.stderr.as_str()),
            ("out\n", "err\n")
        );
    }

    #[test]
    fn run_kills_at_the_time_limit_and_keeps_the_output() {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "echo started; exec sleep 30"]);
        let started = Instant::now();
        match run(&mut cmd, Duration::from_millis(300)) {
            Err(HarnessError::TimedOut { stdout, .. }) => assert_eq!(stdout, "started\n"),
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn output_held_open_by_a_grandchild_ends_at_the_time_limit() {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "sleep 30 & echo parent done"]);
        let started = Instant::now();
        assert!(matches!(
            run(&mut cmd, Duration::from_millis(500)),
            Err(HarnessError::TimedOut { .. })
        ));
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_missing_program_is_not_found() {
        let mut cmd = Command::new("/nonexistent/program");
        assert!(matches!(
            run(&mut cmd, Duration::from_secs(5)),
            Err(HarnessError::NotFound(_))
        ));
    }
}
