//! How the tests run nbdkit and clients: every command line is made by `rustshim-harness`, so
//! `RUSTSHIM_ROOT` moves all of them into a Debian root with another nbdkit, and every run has
//! a time limit, so a hang fails the test instead of the suite.

use std::ffi::OsStr;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use rustshim_harness::{Server, ServerBuilder};

use crate::artifacts::shim;
use crate::clients::python;

/// Seconds any one child process may run.
pub const TIMEOUT_SECS: u32 = 120;

/// [`TIMEOUT_SECS`] as a duration: how long nbdkit run by the harness may take to start, to
/// stop, or (in the foreground) to end.
pub const TIMEOUT: Duration = Duration::from_secs(TIMEOUT_SECS as u64);

/// A command for a client (or anything else) under `timeout`, made by the harness: inside the
/// Debian root of `$RUSTSHIM_ROOT` when that is set (`cargo xtask test --nbdkit 1.48`).
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = rustshim_harness::command("timeout");
    cmd.arg("--kill-after=5")
        .arg(TIMEOUT_SECS.to_string())
        .arg(program);
    cmd
}

/// Output of a finished process, as text.
pub type Run = rustshim_harness::Output;

/// What a test expects of a finished process.
pub trait Check {
    /// Panics with the output unless the process succeeded.
    fn ok(self) -> Run;
    /// Panics unless the process failed with a plain non-zero exit (no signal, no timeout).
    fn failed(self) -> Run;
}

impl Check for Run {
    #[track_caller]
    fn ok(self) -> Run {
        assert!(
            self.status.success(),
            "failed ({}):\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    #[track_caller]
    fn failed(self) -> Run {
        use std::os::unix::process::ExitStatusExt;
        let code = self.status.code();
        assert!(
            code.is_some()
                && code != Some(0)
                && code != Some(124)
                && code != Some(137)
                && self.status.signal().is_none(),
            "expected a clean failure, got {:?}:\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs a command (from [`command`], under `timeout`) to completion. The harness's own limit
/// is a backstop: `timeout` ends the command first, with status 124.
#[track_caller]
pub fn run(cmd: &mut Command) -> Run {
    run_within(cmd, TIMEOUT + Duration::from_secs(30))
}

/// Runs a command to completion, killed after `limit` (for one under a `timeout` of its own
/// longer than [`TIMEOUT_SECS`], such as a cargo build).
#[track_caller]
pub fn run_within(cmd: &mut Command, limit: Duration) -> Run {
    rustshim_harness::run(cmd, limit).unwrap_or_else(|e| panic!("{e}"))
}

/// nbdkit with the workspace's shim and no `plugin=` (tests name the plugin in the arguments,
/// as a user would), under the time limit: run it with [`run_nbdkit`] or [`ServerBuilder::start`].
pub fn shim_nbdkit() -> ServerBuilder {
    ServerBuilder::new().shim(shim()).timeout(TIMEOUT)
}

/// Runs `builder`'s nbdkit in the foreground to its end (for `--dump-plugin`, `--help`,
/// refusals, `--run`).
#[track_caller]
pub fn run_nbdkit(builder: ServerBuilder) -> Run {
    builder.run().unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `nbdkit SHIM args...` itself (for `--dump-plugin`, `--help`, error cases).
#[track_caller]
pub fn nbdkit<S: AsRef<OsStr>>(args: &[S]) -> Run {
    run_nbdkit(shim_nbdkit().args(args))
}

/// `nbdkit -U - SHIM args... --run CMD`: CMD sees `$uri`, `$unixsocket` and friends.
#[track_caller]
pub fn nbdkit_run<S: AsRef<OsStr>>(args: &[S], cmd: &str) -> Run {
    nbdkit_run_with(&[], args, cmd)
}

/// [`nbdkit_run`] with nbdkit's `options` (`-v`, filters, `-D ...`) before the shim.
#[track_caller]
pub fn nbdkit_run_with<S: AsRef<OsStr>>(options: &[&str], args: &[S], cmd: &str) -> Run {
    run_nbdkit(
        shim_nbdkit()
            .nbdkit_args(["-U", "-"])
            .nbdkit_args(options)
            .args(args)
            .args(["--run", cmd]),
    )
}

/// The user ID the permission tests run nbdkit as: `nobody`.
pub const NOBODY: u32 = 65534;

/// [`shim_nbdkit`] run as the ordinary user `nobody` (`setpriv`, in the root too), so that the
/// shim's permission check runs for a user who is not root. Needs root; the files it is to
/// read must be in directories `nobody` can enter (a [`temp_dir`](crate::temp_dir) is 0700:
/// make it 0755).
pub fn shim_nbdkit_as_nobody() -> ServerBuilder {
    assert!(
        nix::unistd::geteuid().is_root(),
        "running nbdkit as another user, and giving files away, needs root (the suite runs as root)"
    );
    shim_nbdkit().prefix([
        "setpriv".to_string(),
        format!("--reuid={NOBODY}"),
        format!("--regid={NOBODY}"),
        "--clear-groups".to_string(),
    ])
}

/// Runs `nbdkit SHIM args --run true` and expects a refusal: see [`one_refusal`]. Returns its
/// line.
#[track_caller]
pub fn refused<S: AsRef<OsStr>>(args: &[S], needles: &[&str]) -> String {
    one_refusal(
        &run_nbdkit(shim_nbdkit().args(args).args(["--run", "true"])),
        needles,
    )
}

/// Whether `line` is one nbdkit prints as an error: `nbdkit: ` then, on some versions and in
/// some threads, the plugin's or filter's name (`rustshim: `, `rustshim[1]: `), then
/// `error: ` (nbdkit's `nbdkit_error`, whoever calls it: the shim, a plugin, a server
/// function).
pub fn is_error_line(line: &str) -> bool {
    line.strip_prefix("nbdkit: ").is_some_and(|rest| {
        rest.starts_with("error: ")
            || rest
                .split_once(": ")
                .is_some_and(|(name, after)| !name.contains(' ') && after.starts_with("error: "))
    })
}

/// What the README promises of a refusal ("When a plugin will not load", and the same for
/// filters and reloads): nbdkit exits with status 1 (not another code, not a signal, not the
/// time limit) and its stderr is exactly one line, an error line ([`is_error_line`]) that
/// contains every one of `needles`. No line is left out of the count: nbdkit prints nothing
/// else when a plugin or filter is refused at start (`--run true` prints nothing), so a second
/// line (an error of nbdkit's own server function, a warning, a panic message) is a second
/// line the user sees. Returns the line.
#[track_caller]
pub fn one_refusal(out: &Run, needles: &[&str]) -> String {
    use std::os::unix::process::ExitStatusExt;
    assert!(
        out.status.code() == Some(1) && out.status.signal().is_none(),
        "expected nbdkit to exit with status 1, got {:?}:\nstdout:\n{}\nstderr:\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert!(
        lines.len() == 1 && is_error_line(lines[0]),
        "expected exactly one error line on stderr, got {}:\n{}",
        lines.len(),
        out.stderr
    );
    let line = lines[0];
    assert!(!line.contains("panicked at"), "no raw panic output: {line}");
    for needle in needles {
        assert!(line.contains(needle), "'{needle}' not in: {line}");
    }
    line.to_string()
}

/// nbdkit serving `SHIM args...` in the background, with nbdkit's `options` (filters, `-r`,
/// `-v`) before the shim; stopped on drop.
#[track_caller]
pub fn serve<S: AsRef<OsStr>>(options: &[&str], args: &[S]) -> Server {
    shim_nbdkit()
        .nbdkit_args(options)
        .args(args)
        .start()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// `builder`'s command line as strings, for a client that starts nbdkit itself.
pub fn argv(builder: &ServerBuilder) -> Vec<String> {
    builder
        .argv()
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|word| word.to_string_lossy().into_owned())
        .collect()
}

/// The argv of `nbdkit -s --exit-with-parent OPTS SHIM ARGS`, for libnbd's `connect_command`
/// (options such as `--filter=log` must come before the plugin).
pub fn stdio_argv<S: AsRef<OsStr>>(opts: &[&str], args: &[S]) -> Vec<String> {
    argv(
        &shim_nbdkit()
            .nbdkit_args(["-s", "--exit-with-parent"])
            .nbdkit_args(opts)
            .args(args),
    )
}

/// Runs a Python script with libnbd's `nbd` module, the connected handle in `h`: nbdkit with
/// the shim and `args` is started by libnbd (`-s --exit-with-parent`), no socket involved.
/// What the script prints is returned.
#[track_caller]
pub fn nbdsh<S: AsRef<OsStr>>(args: &[S], script: &str) -> Run {
    let argv = stdio_argv(&[], args);
    python(&format!(
        "h = nbd.NBD()\nh.connect_command({argv:?})\n{script}\n"
    ))
}

/// `nbdinfo OPTIONS -- [ nbdkit --exit-with-parent SHIM args... ]` (nbdinfo starts nbdkit by
/// socket activation). `--exit-with-parent` because libnbd 1.22 (Debian 13; not Debian 12's
/// 1.14) leaves the server running when it gives up on it (a refused export, say), and that
/// nbdkit would hold our stderr pipe open.
#[track_caller]
pub fn nbdinfo<S: AsRef<OsStr>>(options: &[&str], args: &[S]) -> Run {
    let argv = argv(&shim_nbdkit().nbdkit_arg("--exit-with-parent").args(args));
    run(command("nbdinfo")
        .args(options)
        .arg("--")
        .arg("[")
        .args(argv)
        .arg("]"))
}

/// The version of the nbdkit the suite runs against (`1.32.5`), from the harness's
/// [`rustshim_harness::nbdkit_version`] (`nbdkit --version`, asked once per test binary).
pub fn nbdkit_version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let (major, minor, patch) =
            rustshim_harness::nbdkit_version().unwrap_or_else(|e| panic!("{e}"));
        format!("{major}.{minor}.{patch}")
    })
}

/// Whether that nbdkit is at least `min` (`[1, 42]`, `[1, 42, 6]`).
pub fn nbdkit_at_least(min: &[u32]) -> bool {
    let (major, minor, patch) =
        rustshim_harness::nbdkit_version().unwrap_or_else(|e| panic!("{e}"));
    let version = [major, minor, patch];
    version[..min.len().min(3)] >= *min
}
