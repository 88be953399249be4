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
//! * [`Filter`]: a filter's callbacks, each passing the call on by default; [`filter`] has the
//!   layer below ([`filter::Next`]) and an example.
//! * [`server`]: nbdkit's server functions (`parse_size`, `export_name`, `peer_pid`, …).
//! * [`Error`]: an errno for the client plus a message for the log.
//! * [`abi`]: what crosses the boundary (for the shim; plugins never need it).
//!
//! `log` macros (`log::debug!`, …) reach nbdkit's log: errors and warnings always, the rest
//! with `nbdkit -v`.

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
