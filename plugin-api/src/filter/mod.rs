//! Filters: the [`Filter`] trait, one method per callback of nbdkit's `struct nbdkit_filter`
//! (nbdkit 1.48), and the layer below it ([`Next`] and friends).
//!
//! A filter sits between nbdkit and the plugin (or the next filter) and sees every call on its
//! way down: it may change it, answer it itself, or pass it on. Every method's default passes the
//! call on unchanged, as nbdkit does for a C filter that leaves the callback out, so a filter
//! writes only what it changes:
//!
//! ```ignore
//! use rustshim_plugin_api::prelude::*;
//!
//! #[derive(Default)]
//! struct Invert;
//!
//! #[filter]
//! impl Filter for Invert {
//!     type Handle = ();
//!     const NAME: &'static str = "invert";
//!
//!     fn pread(&self, next: &Next, _: &(), buf: &mut [u8], offset: u64, flags: Flags) -> Result<()> {
//!         next.pread(buf, offset, flags)?;
//!         buf.iter_mut().for_each(|b| *b = !*b);
//!         Ok(())
//!     }
//! }
//!
//! export_filter!(Invert);
//! ```
//!
//! Served with `nbdkit --filter=rustshim filter=./libinvert.so memory 1G`.

mod next;

pub use next::{
    Backend, Export, Next, NextConfig, NextConfigComplete, NextDefaultExport, NextListExports,
    NextOpen, NextPreconnect, OwnedNext,
};

pub use crate::abi::Extent;

use crate::error::Result;
use crate::handover::Handover;
use crate::types::{
    BlockSize, CacheMode, Callbacks, Dump, Exports, Extents, Flags, FuaMode, ThreadModel, ZeroMode,
};

/// An nbdkit filter written in safe Rust.
///
/// Write the methods you need inside an impl marked [`#[filter]`](macro@crate::filter); the
/// attribute records which ones you wrote, and for every other callback the shim passes the call
/// to the layer below exactly as nbdkit does for a C filter that leaves it out (the default
/// bodies below say the same in Rust, and are what you call to pass a call on yourself).
/// Without `open`, the attribute writes one that opens the layer below unchanged and makes the
/// handle with [`Default`].
///
/// One value is made with [`Default`] when the filter is loaded; it is configured through
/// `&mut self`, then shared by all connections (`&self`). Each connection gets its own
/// [`Filter::Handle`] from [`Filter::open`]. A panic fails the one request with `EIO`.
///
/// Every callback of a connection gets the layer below as `next` ([`Next`]); the callbacks
/// outside a connection get nbdkit's `next` function for that callback ([`NextConfig`], …).
#[allow(unused_variables)]
pub trait Filter: Default + Send + Sync + 'static {
    /// The per-connection state returned by [`Filter::open`] (use `()` for none).
    type Handle: Send + Sync + 'static;

    /// The filter's name: ASCII letters, digits and `-`, starting with a letter or digit.
    const NAME: &'static str;
    /// A longer name, e.g. `"Rust delay filter"`.
    const LONGNAME: Option<&'static str> = None;
    /// The filter's version, shown by `--dump-plugin` (nbdkit ≥ 1.36) and on hot reload.
    const VERSION: Option<&'static str> = None;
    /// A paragraph describing the filter.
    const DESCRIPTION: Option<&'static str> = None;
    /// Help for the filter's `key=value` parameters, one per line.
    const CONFIG_HELP: Option<&'static str> = None;
    /// Hot reload: hand over when the old generation retires rather than when the new one is
    /// ready, as `Plugin::HAND_OVER_AT_RETIRE` (new connections held meanwhile, so a copied
    /// state has every write). Since 1.1.0 (an older shim gives the successor no state).
    const HAND_OVER_AT_RETIRE: bool = false;

    /// Which methods this impl defines. Written by [`#[filter]`](macro@crate::filter); do not
    /// write it by hand.
    #[doc(hidden)]
    const CALLBACKS: Callbacks;

    // ---- Loading and configuration (single-threaded, before serving) ----

    /// Called once, right after the filter is loaded and its value made with `Default`.
    /// [nbdkit-filter(3) `.load`](https://libguestfs.org/nbdkit-filter.3.html#load)
    fn load(&mut self) {}

    /// One `key=value` parameter. Pass the keys you do not own on with `next.config(key,
    /// value)`: the layers below see only what you pass.
    /// [`.config`](https://libguestfs.org/nbdkit-filter.3.html#config)
    fn config(&mut self, next: &mut NextConfig<'_>, key: &str, value: &str) -> Result<()> {
        next.config(key, value)
    }

    /// All parameters have been given; call `next.config_complete()` for the layers below.
    /// [`.config_complete`](https://libguestfs.org/nbdkit-filter.3.html#config_complete)
    fn config_complete(&mut self, next: &mut NextConfigComplete<'_>) -> Result<()> {
        next.config_complete()
    }

    /// The loosest thread model the filter allows; nbdkit uses the stricter of it and the layer
    /// below's, which is given as `next_model` by nbdkit ≥ 1.44 (`None` before).
    /// [`.thread_model`](https://libguestfs.org/nbdkit-filter.3.html#thread_model)
    fn thread_model(&self, next_model: Option<ThreadModel>) -> Result<ThreadModel> {
        Ok(ThreadModel::Parallel)
    }

    /// Last chance to fail before serving, with the thread model nbdkit settled on.
    /// [`.get_ready`](https://libguestfs.org/nbdkit-filter.3.html#get_ready)
    fn get_ready(&mut self, thread_model: ThreadModel) -> Result<()> {
        Ok(())
    }

    /// After nbdkit forked into the background: start threads here. `backend` is the layer
    /// below, valid until `cleanup`.
    /// [`.after_fork`](https://libguestfs.org/nbdkit-filter.3.html#after_fork)
    fn after_fork(&mut self, backend: Backend) -> Result<()> {
        Ok(())
    }

    /// Extra `key=value` lines for `nbdkit --dump-plugin` (called by nbdkit ≥ 1.36 only).
    /// [`.dump_plugin`](https://libguestfs.org/nbdkit-filter.3.html#dump_plugin)
    fn dump_plugin(&self, dump: &mut Dump) {}

    // ---- Serving: before a connection is opened ----

    /// A client connected; fail to refuse it.
    /// [`.preconnect`](https://libguestfs.org/nbdkit-filter.3.html#preconnect)
    fn preconnect(&self, next: &NextPreconnect<'_>, readonly: bool) -> Result<()> {
        next.preconnect(readonly)
    }

    /// The exports a client may list.
    /// [`.list_exports`](https://libguestfs.org/nbdkit-filter.3.html#list_exports)
    fn list_exports(
        &self,
        next: &NextListExports<'_>,
        readonly: bool,
        is_tls: bool,
        exports: &mut Exports,
    ) -> Result<()> {
        next.list_exports(readonly, exports)
    }

    /// The export name a client asking for `""` gets.
    /// [`.default_export`](https://libguestfs.org/nbdkit-filter.3.html#default_export)
    fn default_export(
        &self,
        next: &NextDefaultExport<'_>,
        readonly: bool,
        is_tls: bool,
    ) -> Result<String> {
        next.default_export(readonly)
    }

    // ---- A connection ----

    /// A client opens `export_name` (already resolved from `""` to the default export). Call
    /// `next.open(readonly, export_name)` (maybe with other arguments) to open the layer below.
    /// Without this method the attribute supplies [`open_unchanged`].
    /// [`.open`](https://libguestfs.org/nbdkit-filter.3.html#open)
    fn open(
        &self,
        next: &mut NextOpen<'_>,
        readonly: bool,
        export_name: &str,
        is_tls: bool,
    ) -> Result<Self::Handle>;

    /// The connection closes (the layer below is closed after this).
    /// [`.close`](https://libguestfs.org/nbdkit-filter.3.html#close)
    fn close(&self, handle: Self::Handle) {}

    /// After the layer below was prepared, before the first request.
    /// [`.prepare`](https://libguestfs.org/nbdkit-filter.3.html#prepare)
    fn prepare(&self, next: &Next<'_>, handle: &Self::Handle, readonly: bool) -> Result<()> {
        Ok(())
    }

    /// Before the layer below is finalized, when the client disconnects cleanly.
    /// [`.finalize`](https://libguestfs.org/nbdkit-filter.3.html#finalize)
    fn finalize(&self, next: &Next<'_>, handle: &Self::Handle) -> Result<()> {
        Ok(())
    }

    /// The export's size.
    fn get_size(&self, next: &Next<'_>, handle: &Self::Handle) -> Result<u64> {
        next.get_size()
    }
    /// The export's description.
    fn export_description(&self, next: &Next<'_>, handle: &Self::Handle) -> Result<String> {
        next.export_description()
    }
    /// Block size constraints.
    fn block_size(&self, next: &Next<'_>, handle: &Self::Handle) -> Result<BlockSize> {
        next.block_size()
    }
    /// Whether the export is writable.
    fn can_write(&self, next: &Next<'_>, handle: &Self::Handle) -> Result<bool> {
        next.can_write()
    }
    /// Whether `flush` works.
    fn can_flush(&self, next: &Next<'_>, handle: &Self::Handle) -> Result<bool> {
        next.can_flush()
    }
    /// Whether the storage is rotational.
    fn is_rotational(&self, next: &Next<'_>, handle: &Self::Handle) -> Result<bool> {
        next.is_rotational()
    }
    /// Whether `trim` works.
    fn can_trim(&self, next: &Next<'_>, handle: &Self::Handle) -> Result<bool> {
        next.can_trim()
    }
    /// How zero requests are handled.
    fn can_zero(&self, next: &Next<'_>, handle: &Self::Handle) -> Result<ZeroMode> {
        next.can_zero()
    }
    /// Whether fast zero is supported.
    fn can_fast_zero(&self, next: &Next<'_>, handle: &Self::Handle) -> Result<bool> {
        next.can_fast_zero()
    }
    /// Whether `extents` works.
    fn can_extents(&self, next: &Next<'_>, handle: &Self::Handle) -> Result<bool> {
        next.can_extents()
    }
    /// How FUA is handled.
    fn can_fua(&self, next: &Next<'_>, handle: &Self::Handle) -> Result<FuaMode> {
        next.can_fua()
    }
    /// Whether several connections see consistent data.
    fn can_multi_conn(&self, next: &Next<'_>, handle: &Self::Handle) -> Result<bool> {
        next.can_multi_conn()
    }
    /// How cache requests are handled.
    fn can_cache(&self, next: &Next<'_>, handle: &Self::Handle) -> Result<CacheMode> {
        next.can_cache()
    }

    // ---- Serving data ----

    /// Fills `buf` (nbdkit's own buffer) with the data at `offset`.
    /// [`.pread`](https://libguestfs.org/nbdkit-filter.3.html#pread)
    fn pread(
        &self,
        next: &Next<'_>,
        handle: &Self::Handle,
        buf: &mut [u8],
        offset: u64,
        flags: Flags,
    ) -> Result<()> {
        next.pread(buf, offset, flags)
    }

    /// Writes `buf` at `offset`.
    fn pwrite(
        &self,
        next: &Next<'_>,
        handle: &Self::Handle,
        buf: &[u8],
        offset: u64,
        flags: Flags,
    ) -> Result<()> {
        next.pwrite(buf, offset, flags)
    }

    /// Makes written data durable.
    fn flush(&self, next: &Next<'_>, handle: &Self::Handle, flags: Flags) -> Result<()> {
        next.flush(flags)
    }

    /// Discards a range.
    fn trim(
        &self,
        next: &Next<'_>,
        handle: &Self::Handle,
        count: u32,
        offset: u64,
        flags: Flags,
    ) -> Result<()> {
        next.trim(count, offset, flags)
    }

    /// Writes zeroes. Must not fail with `ENOTSUP` unless [`Flags::FAST_ZERO`] was given.
    fn zero(
        &self,
        next: &Next<'_>,
        handle: &Self::Handle,
        count: u32,
        offset: u64,
        flags: Flags,
    ) -> Result<()> {
        next.zero(count, offset, flags)
    }

    /// Reports allocated, hole and zero ranges from `offset` into `extents`.
    fn extents(
        &self,
        next: &Next<'_>,
        handle: &Self::Handle,
        count: u32,
        offset: u64,
        flags: Flags,
        extents: &mut Extents,
    ) -> Result<()> {
        next.extents(count, offset, flags, extents)
    }

    /// Prefetches a range.
    fn cache(
        &self,
        next: &Next<'_>,
        handle: &Self::Handle,
        count: u32,
        offset: u64,
        flags: Flags,
    ) -> Result<()> {
        next.cache(count, offset, flags)
    }

    // ---- Hot reload (`filter-reload=watch`) ----

    /// Opt-in: state to hand to the next build of this filter (see `Plugin::hand_over`).
    fn hand_over(&self) -> Option<Handover> {
        None
    }

    /// Opt-in: adopts the state a predecessor handed over, after `config_complete`.
    fn take_over(&mut self, state: Handover) -> Result<bool> {
        drop(state);
        Ok(false)
    }

    // ---- Shutting down ----

    /// The server is shutting down; `backend` is the layer below.
    /// [`.cleanup`](https://libguestfs.org/nbdkit-filter.3.html#cleanup)
    fn cleanup(&mut self, backend: Backend) {}

    /// Last call before the value is dropped.
    fn unload(&mut self) {}
}

/// What a filter without `open` does (the [`#[filter]`](macro@crate::filter) attribute writes
/// it in): opens the layer below with the same arguments, and makes the handle with
/// [`Default`].
pub fn open_unchanged<H: Default>(
    next: &mut NextOpen<'_>,
    readonly: bool,
    export_name: &str,
) -> Result<H> {
    next.open(readonly, export_name)?;
    Ok(H::default())
}
