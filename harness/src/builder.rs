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

/// Which shim the command line uses (as the plugin, and for Rust filters).
#[derive(Debug, Clone)]
enum Shim {
    /// `$RUSTSHIM_SHIM` or the installed one: [`find_shim`](crate::find_shim).
    Find,
    Path(PathBuf),
}

/// One filter of the stack, in the order added: the first is the outermost.
#[derive(Debug, Clone)]
enum Layer {
    /// `--filter=NAME`: a filter of nbdkit's own, or a path to a C filter.
    C(OsString),
    /// `--filter=SHIM`, and `filter=FILTER` after the plugin.
    Rust(OsString),
}

/// What [`ServerBuilder::reloadable`] serves from a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reload {
    Plugin,
    /// The Rust filter at this index of the layers.
    Filter(usize),
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
/// `[prefix] nbdkit -f --exit-with-parent -U SOCKET -P PIDFILE [nbdkit args] [filters] SHIM
/// [plugin=PLUGIN] [filter=FILTER ...] [args]`, with the socket, the pidfile, the log and
/// `TMPDIR` in a private directory; in the foreground it is the same without the options up to
/// the pidfile. The filters are those added with [`filter`](Self::filter) (`--filter=NAME`) and
/// [`rust_filter`](Self::rust_filter) (`--filter=SHIM`), in the order they were added, the first
/// the outermost, as nbdkit reads its command line; each Rust filter's `filter=FILTER` follows
/// the plugin, in the same order.
///
/// ```no_run
/// # fn main() -> Result<(), rustshim_harness::HarnessError> {
/// use rustshim_harness::{plugin_path, Server};
/// // nbdkit --filter=SHIM --filter=error SHIM plugin=memory filter=FILTER error-rate=10% size=1M:
/// // the Rust filter under test sees the errors the C filter below it injects.
/// let server = Server::builder("memory")
///     .rust_filter(plugin_path!())
///     .filter("error")
///     .args(["error-rate=10%", "size=1M"])
///     .start()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ServerBuilder {
    plugin: Option<OsString>,
    args: Vec<OsString>,
    nbdkit_args: Vec<OsString>,
    layers: Vec<Layer>,
    prefix: Vec<OsString>,
    shim: Shim,
    /// Whether the plugin is served through the shim (not [`without_shim`](Self::without_shim)).
    through_shim: bool,
    nbdkit: Option<PathBuf>,
    envs: Vec<(OsString, OsString)>,
    current_dir: Option<PathBuf>,
    timeout: Duration,
    reloadable: Option<Reload>,
    /// The Unix socket, if not the one in the private directory.
    socket: Option<PathBuf>,
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
            layers: Vec::new(),
            prefix: Vec::new(),
            shim: Shim::Find,
            through_shim: true,
            nbdkit: None,
            envs: Vec::new(),
            current_dir: None,
            timeout: DEFAULT_TIMEOUT,
            reloadable: None,
            socket: None,
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

    /// Adds an option for nbdkit itself, placed before the filters and the shim: `-r`, `-v`,
    /// `-D rustshim.foo=1`, `--threads=4`, ... (A `--filter=NAME` given here lands above every
    /// filter added with [`filter`](Self::filter) or [`rust_filter`](Self::rust_filter).)
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

    /// Adds an nbdkit filter (`--filter=NAME`, a filter of nbdkit's own or a path to a C
    /// filter) to the stack in front of the plugin, below the filters added before it and above
    /// those added after it, whether C or Rust ([`rust_filter`](Self::rust_filter)): the first
    /// added is the outermost. Its parameters go with [`arg`](Self::arg).
    pub fn filter(mut self, name: &str) -> Self {
        self.layers.push(Layer::C(name.into()));
        self
    }

    /// Adds a Rust filter (a path to its `.so`, e.g. [`plugin_path!`](crate::plugin_path) in a
    /// filter crate, or a name the shim looks up) to the stack in front of the plugin, in the
    /// order filters are added, C ([`filter`](Self::filter)) or Rust: the first added is the
    /// outermost. The shim is loaded as the filter `rustshim` for it (`--filter=SHIM`, even
    /// [`without_shim`](Self::without_shim)), and `filter=FILTER` follows the plugin. The
    /// arguments ([`arg`](Self::arg)) come after every `filter=`, so the innermost Rust filter
    /// sees them first and passes on what it does not own.
    pub fn rust_filter(mut self, filter: impl AsRef<Path>) -> Self {
        self.layers
            .push(Layer::Rust(filter.as_ref().as_os_str().to_owned()));
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

    /// Uses this shim instead of finding one (see [`find_shim`](crate::find_shim)), for the
    /// plugin and for the Rust filters.
    pub fn shim(mut self, shim: impl Into<PathBuf>) -> Self {
        self.shim = Shim::Path(shim.into());
        self
    }

    /// Serves the plugin without the shim: the plugin is one of nbdkit's own (`null`, `memory`,
    /// a path to a C plugin), e.g. to compare the shim with it, or to put a Rust filter in front
    /// of a C plugin. With [`ServerBuilder::new`] the first argument names the plugin
    /// (`.args(["memory", "1M"])`); with [`Server::builder`]`("memory")` the plugin is that
    /// name. Rust filters ([`rust_filter`](Self::rust_filter)) still load through the shim
    /// (found as usual, or given with [`shim`](Self::shim)), and their `filter=` keys follow
    /// the plugin.
    pub fn without_shim(mut self) -> Self {
        self.through_shim = false;
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
    /// After a [`rust_filter`](Self::rust_filter), it is that Rust filter (the last one added
    /// before this call) that is served from a copy, with `filter-reload=watch`, and that
    /// [`Server::reload`] and [`Server::reload_rebuilt`] replace; the filter must be given as a
    /// path. One thing per server is reloadable: a later call replaces an earlier one.
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
    ///
    /// // A filter crate's own filter, in front of the Rust memory plugin:
    /// let server = Server::builder("memory")
    ///     .rust_filter(plugin_path!())
    ///     .reloadable()
    ///     .arg("size=1M")
    ///     .start()?;
    /// let line = server.reload_rebuilt()?;
    /// assert!(line.contains("generation 2"), "{line}");
    /// # Ok(()) }
    /// ```
    pub fn reloadable(mut self) -> Self {
        let last_rust = self
            .layers
            .iter()
            .rposition(|layer| matches!(layer, Layer::Rust(_)));
        self.reloadable = Some(last_rust.map_or(Reload::Plugin, Reload::Filter));
        self
    }

    /// Makes a background server listen on this Unix socket instead of one in its private
    /// directory: for a server stopped and started again on the same URI (`cargo rustshim run
    /// --restart`). The socket's directory is the caller's; nbdkit removes the socket when it
    /// stops, and a file left there by one that was killed is in the way of the next.
    pub fn socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.socket = Some(path.into());
        self
    }

    /// How long nbdkit may take to become ready, to stop after SIGTERM, or to end when
    /// [`run`](Self::run), and each client call ([`Server::python`], [`Server::read`], ...) to
    /// finish. Default [`DEFAULT_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The command line [`run`](Self::run) runs: `[prefix] nbdkit [nbdkit args] [filters] SHIM
    /// [plugin=PLUGIN] [filter=FILTER ...] [args]` (see [`ServerBuilder`]). Also for a client
    /// that starts nbdkit itself, e.g. libnbd's
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
            socket: self.socket.clone().unwrap_or_else(|| dir.join(SOCKET)),
            dir,
        }))
    }

    /// For [`reloadable`](Self::reloadable): the plugin (or the Rust filter) copied into the
    /// server's directory (`dir/plugin/FILE`, `dir/filter/FILE`), and this command line serving
    /// that copy with `reload=watch` (`filter-reload=watch`).
    fn serve_a_copy(&self, dir: &TempDir) -> Result<(Option<PathBuf>, ServerBuilder)> {
        let Some(reload) = self.reloadable else {
            return Ok((None, self.clone()));
        };
        let (what, given) = match reload {
            Reload::Plugin => (
                "plugin",
                self.plugin.as_deref().map(Path::new).ok_or_else(|| {
                    HarnessError::Unexpected(
                        "reloadable() needs the plugin as a path: use Server::builder(plugin), \
                         or call it after rust_filter(filter) for the filter"
                            .into(),
                    )
                })?,
            ),
            Reload::Filter(i) => match &self.layers[i] {
                Layer::Rust(filter) => ("filter", Path::new(filter)),
                Layer::C(_) => unreachable!("Reload::Filter is the index of a Rust filter"),
            },
        };
        let file = given
            .file_name()
            .filter(|_| given.is_file())
            .ok_or_else(|| {
                HarnessError::Unexpected(format!(
                    "reloadable() needs the {what} as a file, not {}",
                    given.display()
                ))
            })?;
        let copy_dir = dir.join(what);
        std::fs::create_dir(&copy_dir)
            .map_err(|e| HarnessError::io(format!("cannot create {}", copy_dir.display()), e))?;
        let copy = copy_dir.join(file);
        std::fs::copy(given, &copy).map_err(|e| {
            HarnessError::io(
                format!("cannot copy {} to {}", given.display(), copy.display()),
                e,
            )
        })?;
        let mut this = self.clone();
        match reload {
            Reload::Plugin => {
                this.plugin = Some(copy.clone().into_os_string());
                this.args.insert(0, "reload=watch".into());
            }
            // `filter-reload=watch` follows the copy's `filter=`: see `words`.
            Reload::Filter(i) => this.layers[i] = Layer::Rust(copy.clone().into_os_string()),
        }
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

    /// nbdkit, and the shim unless the command line has none (no plugin served through it, no
    /// Rust filter).
    fn programs(&self) -> Result<(PathBuf, Option<PathBuf>)> {
        let nbdkit = self.nbdkit.clone().unwrap_or_else(shim::nbdkit_program);
        let needed = self.through_shim
            || self
                .layers
                .iter()
                .any(|layer| matches!(layer, Layer::Rust(_)));
        let shim = match &self.shim {
            _ if !needed => None,
            Shim::Find => Some(shim::find_shim_for(&nbdkit)?),
            Shim::Path(shim) => Some(shim.clone()),
        };
        Ok((nbdkit, shim))
    }

    /// The command line, with the background server's options for the directory `server`.
    /// `shim` is there if [`programs`](Self::programs) says it is needed.
    fn words(&self, nbdkit: &Path, shim: Option<&Path>, server: Option<&Path>) -> Vec<OsString> {
        let joined = |key: &str, value: &OsStr| {
            let mut word = OsString::from(key);
            word.push(value);
            word
        };
        let mut words = self.prefix.clone();
        words.push(nbdkit.into());
        if let Some(dir) = server {
            words.extend(["-f".into(), "--exit-with-parent".into(), "-U".into()]);
            words.push(
                self.socket
                    .clone()
                    .unwrap_or_else(|| dir.join(SOCKET))
                    .into(),
            );
            words.push("-P".into());
            words.push(dir.join(PIDFILE).into());
        }
        words.extend(self.nbdkit_args.iter().cloned());
        let shim_word = shim.map_or_else(OsString::new, |shim| shim.as_os_str().to_owned());
        for layer in &self.layers {
            words.push(match layer {
                Layer::C(name) => joined("--filter=", name),
                Layer::Rust(_) => joined("--filter=", &shim_word),
            });
        }
        // The Rust filters' keys, in order; each one's `filter-reload=watch` right after its
        // `filter=` (the keys after a `filter=` are that filter's).
        let filter_keys = self
            .layers
            .iter()
            .enumerate()
            .flat_map(|(i, layer)| match layer {
                Layer::Rust(filter) => {
                    let mut keys = vec![joined("filter=", filter)];
                    if self.reloadable == Some(Reload::Filter(i)) {
                        keys.push("filter-reload=watch".into());
                    }
                    keys
                }
                Layer::C(_) => Vec::new(),
            });
        let mut args = self.args.iter().cloned();
        if self.through_shim {
            words.extend(shim.map(OsString::from));
            if let Some(plugin) = &self.plugin {
                words.push(joined("plugin=", plugin));
            }
        } else {
            // nbdkit's own plugin: the plugin given, else the first argument.
            words.extend(self.plugin.clone().or_else(|| args.next()));
        }
        words.extend(filter_keys);
        words.extend(args);
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

    #[test]
    fn filters_c_and_rust_stack_in_the_order_added() {
        let rust_above_c = Server::builder("memory")
            .rust_filter("/f/a.so")
            .filter("error")
            .rust_filter("/f/b.so")
            .arg("size=1M");
        assert_eq!(
            words(&rust_above_c, None),
            [
                "nbdkit",
                "--filter=/s/shim.so",
                "--filter=error",
                "--filter=/s/shim.so",
                "/s/shim.so",
                "plugin=memory",
                "filter=/f/a.so",
                "filter=/f/b.so",
                "size=1M"
            ]
        );
        let c_above_rust = Server::builder("memory")
            .filter("cow")
            .rust_filter("/f/a.so");
        assert_eq!(
            words(&c_above_rust, None)[1..3],
            ["--filter=cow", "--filter=/s/shim.so"]
        );
        // A C plugin: the shim only for the filter, whose key follows the plugin.
        let c_plugin = ServerBuilder::new()
            .without_shim()
            .rust_filter("/f/a.so")
            .args(["memory", "1M", "k=v"]);
        assert_eq!(
            words(&c_plugin, None),
            [
                "nbdkit",
                "--filter=/s/shim.so",
                "memory",
                "filter=/f/a.so",
                "1M",
                "k=v"
            ]
        );
        let named = Server::builder("memory")
            .without_shim()
            .filter("error")
            .arg("1M");
        assert_eq!(
            words(&named, None),
            ["nbdkit", "--filter=error", "memory", "1M"]
        );
    }

    #[test]
    fn reloadable_applies_to_the_last_rust_filter_added_before_it() {
        let filter = ServerBuilder::new()
            .rust_filter("/f/a.so")
            .rust_filter("/f/b.so")
            .reloadable()
            .rust_filter("/f/c.so");
        assert_eq!(filter.reloadable, Some(Reload::Filter(1)));
        assert_eq!(
            words(&filter, None)[5..],
            [
                "filter=/f/a.so",
                "filter=/f/b.so",
                "filter-reload=watch",
                "filter=/f/c.so"
            ]
        );
        let plugin = Server::builder("/p/x.so")
            .reloadable()
            .rust_filter("/f/a.so");
        assert_eq!(plugin.reloadable, Some(Reload::Plugin));
    }
}
