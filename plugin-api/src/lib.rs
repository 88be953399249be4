//! Write [nbdkit](https://libguestfs.org/nbdkit.1.html) plugins and filters in safe Rust, built
//! as their own `cdylib` and served by nbdkit through the `rustshim` plugin and filter:
//!
//! ```text
//! nbdkit rustshim plugin=./target/release/libmyplugin.so [key=value ...]
//! nbdkit --filter=rustshim filter=./target/release/libmyfilter.so PLUGIN [key=value ...]
//! ```
//!
//! The shim and the plugin are compiled separately and meet only at the stable ABI in [`abi`],
//! so either can be rebuilt, with any compiler settings, without the other.
//!
//! # A plugin
//! ```ignore
//! use rustshim_plugin_api::prelude::*;
//!
//! #[derive(Default)]
//! struct Zeroes { size: u64 }
//!
//! #[plugin]
//! impl Plugin for Zeroes {
//!     type Handle = ();
//!     const NAME: &'static str = "zeroes";
//!     const MAGIC_CONFIG_KEY: Option<&'static str> = Some("size");
//!
//!     fn config(&mut self, key: &str, value: &str) -> Result<()> {
//!         match key {
//!             "size" => self.size = server::parse_size(value)?,
//!             _ => return Err(Error::invalid(format!("unknown parameter '{key}'"))),
//!         }
//!         Ok(())
//!     }
//!     fn open(&self, _readonly: bool) -> Result<()> { Ok(()) }
//!     fn get_size(&self, _h: &()) -> Result<u64> { Ok(self.size) }
//!     fn pread(&self, _h: &(), buf: &mut [u8], _offset: u64, _flags: Flags) -> Result<()> {
//!         buf.fill(0);
//!         Ok(())
//!     }
//! }
//!
//! export_plugin!(Zeroes);
//! ```
//!
//! The crate is a `cdylib` (`[lib] crate-type = ["cdylib"]`) that must be built with the
//! default `panic = "unwind"` for panics to become errors.
//!
//! # Map
//! * [`Plugin`]: the callbacks, in nbdkit's lifecycle order.
//! * [`Filter`]: a filter's callbacks, each passing the call on by default; [`filter`](mod@filter)
//!   has the layer below ([`filter::Next`]) and an example.
//! * [`server`]: nbdkit's server functions (`parse_size`, `export_name`, `peer_pid`, …).
//! * [`Error`]: an errno for the client plus a message for the log.
//! * [`abi`]: what crosses the boundary (for the shim; plugins never need it).
//!
//! # Logging
//! The `log` crate's macros reach nbdkit's log (the plugin needs `log` as a dependency; the
//! logger is installed for it). nbdkit itself has only two levels for plugins, errors (always
//! shown) and debug messages (shown with `nbdkit -v`), so the shim maps the five as follows
//! (where marked \*, nbdkit adds its context in a connection, e.g. `nbdkit: rustshim.0:
//! error: MSG`):
//!
//! | `log` macro | what nbdkit's stderr shows | when |
//! |---|---|---|
//! | `error!` | `nbdkit: error: MSG`\* (`nbdkit_error`) | always; with `--log=syslog`, or in the background without `-f`, in syslog like nbdkit's errors |
//! | `warn!` | `nbdkit: rustshim: warning: MSG` | always, on stderr, as nbdkit prints its own warnings |
//! | `info!` | `nbdkit: rustshim: MSG` | always, on stderr, as the shim prints its own notices (a reload, say) |
//! | `debug!` | `nbdkit: debug: MSG`\* (`nbdkit_debug`) | with `nbdkit -v` |
//! | `trace!` | `nbdkit: debug: MSG`\* | with `nbdkit -v` and `RUSTSHIM_LOG=trace` |
//!
//! (`rustshim` is the plugin's name instead for a native-looking install, `nbdkit NAME`.)
//! `warn!` and `info!` lines go to stderr only, as nbdkit's own warnings do: nbdkit in the
//! background without `-f` or `-v` sends stderr to `/dev/null`. `RUSTSHIM_LOG=off|error|warn|
//! info|debug|trace` in nbdkit's environment sets the most detailed level passed on (default
//! `debug`). [`server::debug`] is `debug!` without the `log` crate.
//!
//! # Errors
//! A callback returns [`Error`]: an [`Errno`] for the client and a message for nbdkit's log.
//! `?` converts a [`std::io::Error`] (keeping its OS errno) and a boxed error
//! (`Box<dyn std::error::Error + Send + Sync>`, `EIO`); for another crate's error, or an
//! `anyhow::Error`, use [`Error::other`]`(errno, e)`.
//!
//! # Panics and locks
//! A panic in a callback fails that one request with `EIO` and a message naming the callback,
//! and nbdkit keeps serving (with the default `panic = "unwind"`). But a panic while the plugin
//! holds a `std::sync::Mutex` or `RwLock` *poisons* it: every later `lock().unwrap()` panics
//! too, so every later request that takes the lock fails, until nbdkit restarts. To keep a bug
//! to the one request:
//! * take std locks with `lock().unwrap_or_else(PoisonError::into_inner)` (below) where the
//!   data cannot be left half-changed: do what may panic (indexing, arithmetic, parsing, an
//!   `unwrap`) before changing it, and change it in steps that cannot panic;
//! * or, where it can be, repair it when the lock comes back poisoned, then
//!   `Mutex::clear_poison()`;
//! * or use a lock without poisoning: [`SharedPages`]' page locks are released, not
//!   poisoned, when a panic unwinds through them.
//!
//! ```
//! use std::sync::{Mutex, MutexGuard, PoisonError};
//!
//! /// Takes the lock whatever an earlier panic left: a panic fails its own request only.
//! fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
//!     mutex.lock().unwrap_or_else(PoisonError::into_inner)
//! }
//!
//! let blocks = Mutex::new(vec![0u8; 4]);
//! // A request with a bug panics while it holds the lock (the shim catches it: one EIO).
//! let _ = std::panic::catch_unwind(|| {
//!     let mut b = blocks.lock().unwrap();
//!     let i = 7;
//!     b[i] = 1; // out of bounds: panics before anything changed
//! });
//! assert!(blocks.lock().is_err()); // poisoned: `lock().unwrap()` would fail every request now
//! assert_eq!(*lock(&blocks), [0; 4]); // the pattern: later requests work on intact data
//! ```
//!
//! `plugins/test/examples/locks.rs` in the repository serves both ways
//! (`tests/tests/authors/author_locks.rs`).
//!
//! # Messages
//! What the plugin writes, in an [`Error`] or a log record, is shown as it wrote it: the shim
//! adds nothing (nbdkit puts its own context first in a connection). So a plugin that wants its
//! name in its messages writes it, as the generated template does (`"my-disk: unknown
//! parameter 'x'"`). Everything the shim says itself starts with `rustshim: `.

#![deny(missing_docs)]

pub mod abi;
#[doc(hidden)]
pub mod adapter;
mod error;
pub mod filter;
mod handover;
mod host;
mod logger;
mod page_lock;
// nbdkit's parsers in Rust: `server`'s answers outside nbdkit, and the shim's on old nbdkit.
#[doc(hidden)]
pub mod parse;
mod plugin;
pub mod server;
mod shared_pages;
mod types;

pub use error::{Errno, Error, Result};
pub use filter::Filter;
pub use handover::Handover;
pub use plugin::Plugin;
pub use rustshim_plugin_api_macros::{filter, plugin};
pub use shared_pages::SharedPages;
pub use types::{
    BlockSize, CacheMode, Callbacks, Dump, Exports, ExtentType, Extents, Flags, FuaMode,
    ThreadModel, ZeroMode,
};

/// Everything a plugin or filter usually needs: `use rustshim_plugin_api::prelude::*;`
pub mod prelude {
    pub use crate::filter::{
        Backend, Next, NextConfig, NextConfigComplete, NextDefaultExport, NextListExports,
        NextOpen, NextPreconnect,
    };
    pub use crate::{
        export_filter, export_plugin, filter, plugin, server, BlockSize, CacheMode, Dump, Errno,
        Error, Exports, ExtentType, Extents, Filter, Flags, FuaMode, Handover, Plugin, Result,
        SharedPages, ThreadModel, ZeroMode,
    };
}
