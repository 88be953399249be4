//! [`ServerBuilder`]: one nbdkit command line, run in the background as a [`Server`] or in the
//! foreground to its end.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{HarnessError, Result};
use crate::process::{self, Output};
use crate::server::{self, Server, LOG, PIDFILE, SOCKET, TMPDIR};
use crate::shim;
use crate::temp_dir::TempDir;

/// How long nbdkit may take to start, and each client to run, unless
/// [`ServerBuilder::timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Which shim goes on the command line.
#[derive(Debug, Clone)]
enum Shim {
    /// `$RUSTSHIM_SHIM` or the installed one: [`find_shim`](crate::find_shim).
    Find,
    Path(PathBuf),
    /// None: nbdkit serves a plugin of its own named in the arguments.
    Without,
}

impl Server {
    /// A [`ServerBuilder`] for `plugin` (given as `plugin=PLUGIN`), with no arguments yet.
    pub fn builder(plugin: impl AsRef<Path>) -> ServerBuilder {
        ServerBuilder::for_plugin(plugin.as_ref())
    }
}

/// One nbdkit command line: made by [`Server::builder`] (the plugin under test as `plugin=`)
/// or [`ServerBuilder::new`] (the arguments exactly as given), then started in the background
/// by [`start`](Self::start) or [`spawn`](Self::spawn), or run to its end by
/// [`run`](Self::run).
///
/// In the background the command line is
/// `[prefix] nbdkit -f --exit-with-parent -U SOCKET -P PIDFILE [nbdkit args] SHIM [plugin=PLUGIN] [args]`,
/// with the socket, the pidfile, the log and `TMPDIR` in a private directory; in the
/// foreground it is the same without the options up to the pidfile.
#[derive(Debug, Clone)]
pub struct ServerBuilder {
    plugin: Option<OsString>,
    args: Vec<OsString>,
    nbdkit_args: Vec<OsString>,
    rust_filters: Vec<OsString>,
    prefix: Vec<OsString>,
    shim: Shim,
    nbdkit: Option<PathBuf>,
    envs: Vec<(OsString, OsString)>,
    current_dir: Option<PathBuf>,
    timeout: Duration,
    reloadable: bool,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder::new()
    }
}

impl ServerBuilder {
    /// A command line with no `plugin=`: the shim gets exactly the arguments added with
    /// [`arg`](Self::arg), in order. For the plugin as a bare first argument
    /// (`["./libmy.so", "1M"]`), keys before `plugin=` (`["size=1M", "plugin=./libmy.so"]`),
    /// no plugin at all (`--help`), or, with [`without_shim`](Self::without_shim), another
    /// plugin of nbdkit's.
    pub fn new() -> ServerBuilder {
        ServerBuilder {
            plugin: None,
            args: Vec::new(),
            nbdkit_args: Vec::new(),
            rust_filters: Vec::new(),
            prefix: Vec::new(),
            shim: Shim::Find,
            nbdkit: None,
            envs: Vec::new(),
            current_dir: None,
            timeout: DEFAULT_TIMEOUT,
            reloadable: false,
        }
    }

    pub(crate) fn for_plugin(plugin: &Path) -> ServerBuilder {
        ServerBuilder {
            plugin: Some(plugin.as_os_str().to_owned()),
            ..ServerBuilder::new()
        }
    }

    /// Adds an argument for the plugin (after `plugin=`): `key=value`, or a bare value for the
    /// plugin's magic key. nbdkit options that may follow the plugin (`--run CMD`,
    /// `--dump-plugin`) go here too.
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

    /// Adds options for nbdkit itself, as [`nbdkit_arg`](Self::nbdkit_arg) does.
    pub fn nbdkit_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.nbdkit_args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
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

    /// Runs nbdkit under these words, e.g. `["valgrind", "--tool=memcheck"]` or
    /// `["taskset", "-c", "1"]`: the first is the program started (inside the root of
    /// [`ROOT_ENV`](crate::ROOT_ENV), if set), nbdkit's command line follows the last. Several
    /// calls add up, in order.
    pub fn prefix<I, S>(mut self, words: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.prefix
            .extend(words.into_iter().map(|w| w.as_ref().to_owned()));
        self
    }

    /// Uses this shim instead of finding one (see [`find_shim`](crate::find_shim)).
    pub fn shim(mut self, shim: impl Into<PathBuf>) -> Self {
        self.shim = Shim::Path(shim.into());
        self
    }

    /// Puts no shim on the command line: the arguments name a plugin of nbdkit's own (`null`,
    /// `memory`, a path to a C plugin), e.g. to compare the shim with it. Use with
    /// [`ServerBuilder::new`].
    pub fn without_shim(mut self) -> Self {
        self.shim = Shim::Without;
        self
    }

    /// Runs this `nbdkit` instead of `$RUSTSHIM_NBDKIT` or `nbdkit` on `PATH`.
    pub fn nbdkit(mut self, program: impl Into<PathBuf>) -> Self {
        self.nbdkit = Some(program.into());
        self
    }

    /// Sets an environment variable for nbdkit (and so for the plugin). nbdkit gets `TMPDIR`
    /// set to a directory of its own ([`Server::tmpdir`], or one for [`run`](Self::run))
    /// unless it is set here.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Runs nbdkit in this directory (relative paths in its arguments are relative to it).
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// Serves the plugin with hot reload (`reload=watch`) from a copy in the server's private
    /// directory, so that [`Server::reload`] can put a new build there, as cargo puts one in
    /// `target/`, without touching the crate's own build. Needs the plugin as a path
    /// ([`Server::builder`]).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), rustshim_harness::HarnessError> {
    /// use rustshim_harness::{plugin_path, Server};
    /// let server = Server::builder(plugin_path!()).arg("size=1M").reloadable().start()?;
    /// server.write(0, b"kept")?;
    /// // The same code as a new build: the state goes through `hand_over`/`take_over`.
    /// let line = server.reload_rebuilt()?;
    /// assert!(line.contains("generation 2"), "{line}");
    /// assert_eq!(server.read(0, 4)?, b"kept");
    /// # Ok(()) }
    /// ```
    pub fn reloadable(mut self) -> Self {
        self.reloadable = true;
        self
    }

    /// How long nbdkit may take to become ready, to stop after SIGTERM, or to end when
    /// [`run`](Self::run), and each client call ([`Server::python`], [`Server::read`], ...) to
    /// finish. Default [`DEFAULT_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The command line [`run`](Self::run) runs: `[prefix] nbdkit [nbdkit args] [--filter=SHIM
    /// ...] SHIM [plugin=PLUGIN] [filter=FILTER ...] [args]`. Also for a client that starts nbdkit itself, e.g. libnbd's
    /// `connect_command` (add `-s` and `--exit-with-parent` with
    /// [`nbdkit_arg`](Self::nbdkit_arg)) or `nbdinfo -- [ ... ]`. Finding the shim may fail.
    pub fn argv(&self) -> Result<Vec<OsString>> {
        let (nbdkit, shim) = self.programs()?;
        Ok(self.words(&nbdkit, shim.as_deref(), None))
    }

    /// The command line [`start`](Self::start) runs, with `dir` standing for the server's
    /// private directory (each server gets a fresh one): for showing it.
    pub fn server_argv(&self, dir: &Path) -> Result<Vec<OsString>> {
        let (nbdkit, shim) = self.programs()?;
        Ok(self.words(&nbdkit, shim.as_deref(), Some(dir)))
    }

    /// Starts nbdkit and waits until it serves (its pidfile is written); fails with nbdkit's
    /// log if it exits first, e.g. because the plugin refused its parameters.
    pub fn start(self) -> Result<Server> {
        let server = self.spawn()?;
        server.wait_ready()?;
        Ok(server)
    }

    /// Starts nbdkit and returns at once, before it serves: for timing its start-up, say.
    /// [`Server::wait_ready`] waits for it.
    pub fn spawn(self) -> Result<Server> {
        let dir = TempDir::new()?;
        let tmpdir = dir.join(TMPDIR);
        std::fs::create_dir(&tmpdir)
            .map_err(|e| HarnessError::io(format!("cannot create {}", tmpdir.display()), e))?;
        let log_path = dir.join(LOG);
        let log = File::create(&log_path)
            .map_err(|e| HarnessError::io(format!("cannot create {}", log_path.display()), e))?;
        let log_too = log
            .try_clone()
            .map_err(|e| HarnessError::io("cannot duplicate the log file", e))?;
        let (nbdkit, shim) = self.programs()?;
        let (served, this) = self.serve_a_copy(&dir)?;
        let words = this.words(&nbdkit, shim.as_deref(), Some(dir.path()));
        let mut cmd = this.command(&words);
        // A TMPDIR of its own: whatever nbdkit or a plugin leaves there (the shim itself leaves
        // nothing) goes with the directory, even if nbdkit is killed.
        cmd.env("TMPDIR", &tmpdir)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::from(log_too))
            .stderr(Stdio::from(log));
        let command = shown(&words);
        let spawned = Instant::now();
        let (child, keeper) = server::spawn_kept(cmd).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => not_found(&nbdkit, &e),
            _ => HarnessError::io(format!("cannot start `{command}`"), e),
        })?;
        Ok(Server::new(server::Parts {
            child,
            keeper,
            spawned,
            shim: shim.unwrap_or_default(),
            command,
            timeout: self.timeout,
            served,
            dir,
        }))
    }

    /// For [`reloadable`](Self::reloadable): the plugin copied into the server's directory
    /// (`dir/plugin/FILE`), and this command line serving that copy with `reload=watch`.
    fn serve_a_copy(&self, dir: &TempDir) -> Result<(Option<PathBuf>, ServerBuilder)> {
        if !self.reloadable {
            return Ok((None, self.clone()));
        }
        let plugin = self.plugin.as_deref().map(Path::new).ok_or_else(|| {
            HarnessError::Unexpected(
                "reloadable() needs the plugin as a path: use Server::builder(plugin)".into(),
            )
        })?;
        let file = plugin
            .file_name()
            .filter(|_| plugin.is_file())
            .ok_or_else(|| {
                HarnessError::Unexpected(format!(
                    "reloadable() needs the plugin as a file, not {}",
                    plugin.display()
                ))
            })?;
        let plugin_dir = dir.join("plugin");
        std::fs::create_dir(&plugin_dir)
            .map_err(|e| HarnessError::io(format!("cannot create {}", plugin_dir.display()), e))?;
        let copy = plugin_dir.join(file);
        std::fs::copy(plugin, &copy).map_err(|e| {
            HarnessError::io(
                format!("cannot copy {} to {}", plugin.display(), copy.display()),
                e,
            )
        })?;
        let mut this = self.clone();
        this.plugin = Some(copy.clone().into_os_string());
        this.args.insert(0, "reload=watch".into());
        Ok((Some(copy), this))
    }

    /// Runs nbdkit in the foreground to its end and returns its status, stdout and stderr,
    /// whatever the status: for `--dump-plugin`, `--help`, `--run CMD` (with `-U -` among the
    /// [`nbdkit_args`](Self::nbdkit_args)), or parameters the plugin should refuse. Nothing is
    /// added to the command line ([`argv`](Self::argv)), so nbdkit that would serve must be
    /// told `--run` or `-f`. `TMPDIR` is a directory of its own, removed afterwards, unless set
    /// with [`env`](Self::env). Killed after the [`timeout`](Self::timeout):
    /// [`HarnessError::TimedOut`].
    pub fn run(self) -> Result<Output> {
        let (nbdkit, shim) = self.programs()?;
        let mut cmd = self.command(&self.words(&nbdkit, shim.as_deref(), None));
        // As for a server: the shim's private copies of the plugin go with this directory, even
        // when nbdkit exits without removing them (a plugin it refused, a kill at the limit).
        let tmpdir = TempDir::new()?;
        cmd.env("TMPDIR", tmpdir.path())
            .envs(self.envs.iter().map(|(k, v)| (k, v)));
        process::run(&mut cmd, self.timeout).map_err(|e| match e {
            HarnessError::NotFound(why) if self.prefix.is_empty() => {
                not_found(&nbdkit, &std::io::Error::other(why))
            }
            other => other,
        })
    }

    /// nbdkit, and the shim unless there is none.
    fn programs(&self) -> Result<(PathBuf, Option<PathBuf>)> {
        let nbdkit = self.nbdkit.clone().unwrap_or_else(shim::nbdkit_program);
        let shim = match &self.shim {
            Shim::Find => Some(shim::find_shim_for(&nbdkit)?),
            Shim::Path(shim) => Some(shim.clone()),
            Shim::Without => None,
        };
        Ok((nbdkit, shim))
    }

    /// The command line, with the background server's options for the directory `server`.
    fn words(&self, nbdkit: &Path, shim: Option<&Path>, server: Option<&Path>) -> Vec<OsString> {
        let mut words = self.prefix.clone();
        words.push(nbdkit.into());
        if let Some(dir) = server {
            words.extend(["-f".into(), "--exit-with-parent".into(), "-U".into()]);
            words.push(dir.join(SOCKET).into());
            words.push("-P".into());
            words.push(dir.join(PIDFILE).into());
        }
        words.extend(self.nbdkit_args.iter().cloned());
        if let Some(shim) = shim {
            words.extend(self.rust_filters.iter().map(|_| {
                let mut filter = OsString::from("--filter=");
                filter.push(shim);
                filter
            }));
        }
        words.extend(shim.map(OsString::from));
        if let Some(plugin) = &self.plugin {
            let mut plugin_arg = OsString::from("plugin=");
            plugin_arg.push(plugin);
            words.push(plugin_arg);
        }
        words.extend(self.rust_filters.iter().cloned());
        words.extend(self.args.iter().cloned());
        words
    }

    /// The command for `words`, in the root if there is one.
    fn command(&self, words: &[OsString]) -> Command {
        let mut cmd = process::command(&words[0]);
        cmd.args(&words[1..]);
        if let Some(dir) = &self.current_dir {
            cmd.current_dir(dir);
        }
        cmd
    }
}

/// A command line for messages, and the root it runs in.
fn shown(words: &[OsString]) -> String {
    let line = process::describe_words(words.iter().map(OsString::as_os_str));
    match process::root() {
        Some(root) => format!("{line} (in the root {})", root.display()),
        None => line,
    }
}

fn not_found(nbdkit: &Path, e: &std::io::Error) -> HarnessError {
    HarnessError::NotFound(format!(
        "cannot run {}: {e}. Install nbdkit (Debian: apt-get install nbdkit) or set {}",
        nbdkit.display(),
        shim::NBDKIT_ENV
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(builder: &ServerBuilder, server: Option<&Path>) -> Vec<String> {
        builder
            .words(Path::new("nbdkit"), Some(Path::new("/s/shim.so")), server)
            .iter()
            .map(|w| w.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn the_command_line_puts_each_part_in_its_place() {
        let builder = Server::builder("/p/libx.so")
            .arg("size=1M")
            .readonly()
            .prefix(["valgrind", "-q"]);
        assert_eq!(
            words(&builder, Some(Path::new("/d"))),
            [
                "valgrind",
                "-q",
                "nbdkit",
                "-f",
                "--exit-with-parent",
                "-U",
                "/d/nbd.sock",
                "-P",
                "/d/nbdkit.pid",
                "-r",
                "/s/shim.so",
                "plugin=/p/libx.so",
                "size=1M"
            ]
        );
        let raw = ServerBuilder::new()
            .args(["size=1M", "plugin=x"])
            .nbdkit_args(["-U", "-"]);
        assert_eq!(
            words(&raw, None),
            ["nbdkit", "-U", "-", "/s/shim.so", "size=1M", "plugin=x"]
        );
        let own = ServerBuilder::new().without_shim().args(["null", "1M"]);
        assert_eq!(own.argv().unwrap()[1..], ["null", "1M"]);
    }
}
