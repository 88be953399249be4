//! Test nbdkit rustshim plugins with the real nbdkit, from the plugin crate's own `cargo test`.
//!
//! A plugin built with `rustshim-plugin-api` is a `cdylib` that nbdkit serves through the
//! `rustshim` plugin (the *shim*). This crate, a dev-dependency of the plugin crate, builds that
//! cdylib, starts `nbdkit` with the shim and the plugin on a Unix socket in a private directory,
//! waits until it serves, and talks to it with real NBD clients; the server is killed and its
//! directory removed when it is dropped.
//!
//! ```toml
//! [dev-dependencies]
//! rustshim-harness = { path = "../nbdkit-rustshim/harness" }
//! ```
//!
//! `tests/serve.rs`:
//!
//! ```no_run
//! use rustshim_harness::{plugin_path, HarnessError, Server};
//!
//! // #[test]
//! fn reads_back_what_was_written() -> Result<(), HarnessError> {
//!     // Builds this crate's cdylib (if needed), starts
//!     // `nbdkit -f -U SOCKET SHIM plugin=target/debug/libmyplugin.so size=1M`.
//!     let server = Server::start(plugin_path!(), &["size=1M"])?;
//!     assert_eq!(server.size()?, 1 << 20);
//!     server.write(4096, b"hello")?;
//!     assert_eq!(server.read(4096, 5)?, b"hello");
//!     // Anything else with libnbd's Python bindings: `h` is a connected handle.
//!     let out = server.python("print(h.is_read_only(), h.can_multi_conn())")?;
//!     assert_eq!(out.trim(), "False True");
//!     // Or any NBD client, with the URI.
//!     println!("{}", server.uri());
//!     Ok(())
//! }
//! # reads_back_what_was_written().unwrap();
//! ```
//!
//! A server that fails to start (the plugin refuses its parameters, say) is an
//! [`HarnessError::Start`] whose message includes nbdkit's log, so such cases are tests too:
//!
//! ```no_run
//! # use rustshim_harness::{plugin_path, HarnessError, Server};
//! let error = Server::start(plugin_path!(), &["colour=red"]).err().unwrap();
//! assert!(error.to_string().contains("unknown parameter 'colour'"));
//! ```
//!
//! # Named exports, `--dump-plugin`, hot reload
//!
//! * [`Server::export`]`("disk2")` is one export of a plugin that serves several: its
//!   [`uri`](Export::uri) (`nbd+unix:///disk2?socket=…`) and the same clients, with `h`
//!   connected to it in [`python`](Export::python).
//! * [`dump_plugin`]`(plugin_path!(), &[])` runs `--dump-plugin` and returns its `key=value`
//!   lines ([`PluginDump`]: [`get`](PluginDump::get), the plugin's own
//!   [`plugin_fields`](PluginDump::plugin_fields)).
//! * A server started with [`ServerBuilder::reloadable`] serves a copy of the plugin with
//!   `reload=watch`; [`Server::reload`]`(new_build)` puts a new build in its place and returns
//!   the shim's line once the new build serves (an error with the shim's reason if it refused
//!   it), and [`Server::reload_rebuilt`] does the same with the same code, to test a plugin's
//!   `hand_over` and `take_over`. Called right after [`rust_filter`](ServerBuilder::rust_filter),
//!   `reloadable()` does the same for that Rust filter (`filter-reload=watch`).
//! * [`nbdkit_version`] is the version of the nbdkit the harness runs, `(1, 32, 5)`, for what
//!   depends on it (nbdkit gives filters `--dump-plugin` from 1.36).
//!
//! ```no_run
//! # use rustshim_harness::{plugin_path, HarnessError, Server};
//! # fn main() -> Result<(), HarnessError> {
//! let server = Server::builder(plugin_path!()).arg("size=1M").reloadable().start()?;
//! server.export("scratch").write(0, b"data")?;
//! server.reload_rebuilt()?; // new connections get generation 2, with what it took over
//! assert_eq!(server.export("scratch").read(0, 4)?, b"data");
//! # Ok(()) }
//! ```
//!
//! # Filters
//!
//! A filter crate's tests serve its filter in front of a plugin:
//! [`rust_filter`](ServerBuilder::rust_filter) adds a Rust filter (through the shim loaded as the
//! filter `rustshim`), [`filter`](ServerBuilder::filter) one of nbdkit's own (`error`, `cow`,
//! ...). They stack in the order they are added, C and Rust alike, the first the outermost, as
//! nbdkit's command line reads: `.rust_filter(mine).filter("error")` puts nbdkit's error filter
//! below the filter under test, so the test sees what it does with the errors from below. With
//! [`without_shim`](ServerBuilder::without_shim) the plugin is one of nbdkit's own (a C plugin),
//! while the Rust filters still go through the shim.
//!
//! ```no_run
//! # use rustshim_harness::{plugin_path, HarnessError, ServerBuilder};
//! # fn main() -> Result<(), HarnessError> {
//! // nbdkit --filter=SHIM --filter=error memory filter=FILTER 1M error-rate=100%
//! let server = ServerBuilder::new()
//!     .without_shim()
//!     .rust_filter(plugin_path!())
//!     .filter("error")
//!     .args(["memory", "1M", "error-rate=100%"])
//!     .start()?;
//! assert!(server.read(0, 512).is_err());
//! # Ok(()) }
//! ```
//!
//! # Any nbdkit command line
//!
//! The same [`ServerBuilder`] makes every nbdkit command line the project's own tests, demo and
//! benchmark run, so it does more than serve one plugin:
//!
//! * [`ServerBuilder::new`] passes the arguments exactly as given (the plugin as a bare first
//!   argument, keys before `plugin=`, `--help`), and
//!   [`without_shim`](ServerBuilder::without_shim) serves one of nbdkit's own plugins;
//! * [`prefix`](ServerBuilder::prefix) runs nbdkit under `valgrind`, `taskset`, `setpriv`...;
//! * [`ServerBuilder::run`] runs nbdkit in the foreground to its end (`--dump-plugin`,
//!   `--run`, parameters the plugin must refuse) and returns its status and output;
//!   [`argv`](ServerBuilder::argv) is the command line for a client that starts nbdkit itself;
//! * a running [`Server`] has its [`pid`](Server::pid), [`log`](Server::log),
//!   [`wait_for_log`](Server::wait_for_log), [`tmpdir`](Server::tmpdir), and
//!   [`terminate`](Server::terminate) (SIGTERM, then its exit status);
//! * [`run`] runs any client to its end under a time limit, [`TempDir`] is a private scratch
//!   directory.
//!
//! ```no_run
//! # use rustshim_harness::{HarnessError, ServerBuilder};
//! # fn main() -> Result<(), HarnessError> {
//! let out = ServerBuilder::new()
//!     .args(["./libmy.so", "--dump-plugin"])
//!     .run()?;
//! assert!(out.success() && out.stdout.contains("rustshim_plugin_name="));
//! # Ok(()) }
//! ```
//!
//! # What it needs
//! * `nbdkit` (Debian: `nbdkit`), or the program named by `$RUSTSHIM_NBDKIT`;
//! * the shim: `$RUSTSHIM_SHIM` (a path to `libnbdkit_rustshim_plugin.so`) if set, else
//!   `nbdkit-rustshim-plugin.so` in nbdkit's plugin directory, where `cargo xtask install` in
//!   the nbdkit-rustshim checkout puts it (the one `nbdkit rustshim` runs): see [`find_shim`];
//! * for the clients: `/usr/bin/python3` with libnbd's `nbd` module (Debian:
//!   `python3-libnbd`) and `nbdinfo` (Debian: `libnbd-bin`). `/usr/bin` is put first on `PATH`
//!   for every child, so a pyenv or venv `python3` does not hide Debian's.
//!
//! Every wait has a time limit ([`DEFAULT_TIMEOUT`], or [`ServerBuilder::timeout`]), so a hung
//! plugin fails the test instead of hanging it. nbdkit runs with `--exit-with-parent`: it goes
//! with the test process however that ends. With [`ROOT_ENV`] (`RUSTSHIM_ROOT`) set to a Debian
//! root, nbdkit and every client run inside it (see [`command`]).

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod builder;
mod clients;
mod dump;
mod error;
mod plugin;
mod process;
mod server;
mod shim;
mod temp_dir;
mod version;

pub use builder::{ServerBuilder, DEFAULT_TIMEOUT};
pub use clients::Export;
pub use dump::{dump_plugin, PluginDump};
pub use error::{HarnessError, Result};
pub use plugin::PluginCrate;
pub use process::{command, command_in, path_env, root, run, Output, ROOT_ENV};
pub use server::{Server, Stopped};
pub use shim::{
    find_shim, nbdkit_program, FILTER_SHIM_INSTALLED, NBDKIT_ENV, SHIM_ENV, SHIM_INSTALLED,
};
pub use temp_dir::TempDir;
pub use version::nbdkit_version;
