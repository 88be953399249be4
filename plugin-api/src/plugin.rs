//! The trait a plugin implements: one method per nbdkit callback, in the order nbdkit calls them.

use crate::error::{Errno, Error, Result};
use crate::handover::Handover;
use crate::types::{
    BlockSize, CacheMode, Callbacks, Dump, Exports, Extents, Flags, FuaMode, ThreadModel,
};

/// An nbdkit plugin written in safe Rust.
///
/// Write only the methods you need inside an impl marked [`#[plugin]`](macro@crate::plugin);
/// the attribute records which ones you wrote, and for every other callback the shim does exactly
/// what nbdkit does for a C plugin that leaves it out (see `nbdkit-plugin(3)`). `open`,
/// `get_size` and `pread` are required.
///
/// One value of this type is made with [`Default`] when the plugin is loaded; it receives the
/// configuration through `&mut self` before serving starts, and is shared by all connections
/// (`&self`) afterwards. Each connection gets its own [`Plugin::Handle`] from [`Plugin::open`].
///
/// Plugins are `Send + Sync`, so the default thread model is
/// [`ThreadModel::Parallel`]: nbdkit may call any `&self` method from many threads at once.
///
/// A panic in any method is caught: the request fails with `EIO` and a message naming the
/// callback, and nbdkit goes on serving. (Not with `panic = "abort"`: then it ends the process.)
///
/// The methods' defaults are never called: a method the impl does not define is reported absent
/// to the shim.
#[allow(unused_variables)]
pub trait Plugin: Default + Send + Sync + 'static {
    /// The per-connection state returned by [`Plugin::open`] (use `()` for none).
    type Handle: Send + Sync + 'static;

    /// The plugin's name: ASCII letters, digits and `-`, starting with a letter or digit.
    const NAME: &'static str;
    /// A longer name, e.g. `"Rust memory plugin"`.
    const LONGNAME: Option<&'static str> = None;
    /// The plugin's version; shown by `--dump-plugin` so users can tell builds apart.
    const VERSION: Option<&'static str> = None;
    /// A paragraph describing the plugin.
    const DESCRIPTION: Option<&'static str> = None;
    /// Help for the plugin's `key=value` parameters, one per line.
    const CONFIG_HELP: Option<&'static str> = None;
    /// The key that bare command-line arguments are given to, e.g. `size` so that
    /// `nbdkit rustshim libfoo.so 1G` means `size=1G`.
    const MAGIC_CONFIG_KEY: Option<&'static str> = None;
    /// Hot reload: hand over when the old generation retires rather than when the new one is
    /// ready (see [`hand_over`](Self::hand_over)). For state that cannot be shared, only copied
    /// ([`Handover::bytes`]): the shim swaps generations only once every connection of the old
    /// one has closed (new connections keep going to the old one for a second, then wait; after
    /// 30 s of open connections, or as many seconds as `$RUSTSHIM_RETIRE_LIMIT` says, the reload
    /// is refused and the old generation keeps serving), and calls `hand_over` then, so no write
    /// is lost. The new generation's `take_over` runs where it always does, after
    /// `config_complete` and before `get_ready`: with this, its `get_ready` and `after_fork` wait
    /// for the old generation's retirement too, and it serves right after them. Since 1.1.0 (an
    /// older shim gives the successor no state).
    const HAND_OVER_AT_RETIRE: bool = false;

    /// Which methods this impl defines. Written by [`#[plugin]`](macro@crate::plugin); do not
    /// write it by hand.
    #[doc(hidden)]
    const CALLBACKS: Callbacks;

    // ---- Loading and configuration (single-threaded, before serving) ----

    /// Called once, right after the plugin is loaded and its value made with `Default`.
    /// [nbdkit-plugin(3) `.load`](https://libguestfs.org/nbdkit-plugin.3.html#load)
    fn load(&mut self) {}

    /// One `key=value` parameter from the command line, in command-line order.
    /// Reject keys you do not know: without this method any parameter is an error.
    /// [`.config`](https://libguestfs.org/nbdkit-plugin.3.html#config)
    fn config(&mut self, key: &str, value: &str) -> Result<()> {
        Err(Error::invalid(format!("unknown parameter '{key}'")))
    }

    /// All parameters have been given: check that the required ones were.
    /// [`.config_complete`](https://libguestfs.org/nbdkit-plugin.3.html#config_complete)
    fn config_complete(&mut self) -> Result<()> {
        Ok(())
    }

    /// The loosest thread model the plugin allows, decided after configuration.
    /// [`.thread_model`](https://libguestfs.org/nbdkit-plugin.3.html#thread_model)
    fn thread_model(&self) -> Result<ThreadModel> {
        Ok(ThreadModel::Parallel)
    }

    /// Last chance to fail before the server starts; allocate resources here.
    /// [`.get_ready`](https://libguestfs.org/nbdkit-plugin.3.html#get_ready)
    fn get_ready(&mut self) -> Result<()> {
        Ok(())
    }

    /// After nbdkit forked into the background: start background threads here.
    /// [`.after_fork`](https://libguestfs.org/nbdkit-plugin.3.html#after_fork)
    fn after_fork(&mut self) -> Result<()> {
        Ok(())
    }

    /// Extra `key=value` lines for `nbdkit --dump-plugin` (prefix keys with the plugin name),
    /// written with [`Dump::field`].
    ///
    /// `nbdkit rustshim plugin=… [key=value …] --dump-plugin` is a run of nbdkit of its own, in
    /// its own process, that serves nothing: the plugin is loaded (`load`), gets `config` for
    /// each parameter on that command line, then `dump_plugin`, and is unloaded. There is no
    /// `config_complete`, `get_ready`, connection or state from a serving nbdkit: write what
    /// the plugin can say from its build and its parameters (a serving nbdkit never calls this).
    /// [`.dump_plugin`](https://libguestfs.org/nbdkit-plugin.3.html#dump_plugin)
    fn dump_plugin(&self, dump: &mut Dump) {}

    // ---- Serving: before a connection is opened ----

    /// A client connected, before any NBD negotiation. Fail to refuse it.
    /// [`.preconnect`](https://libguestfs.org/nbdkit-plugin.3.html#preconnect)
    fn preconnect(&self, readonly: bool) -> Result<()> {
        Ok(())
    }

    /// The exports a client may list. Without this method: the default export only.
    /// [`.list_exports`](https://libguestfs.org/nbdkit-plugin.3.html#list_exports)
    fn list_exports(&self, readonly: bool, is_tls: bool, exports: &mut Exports) -> Result<()> {
        exports.use_default()
    }

    /// The export name a client asking for `""` gets. Without this method: `""`.
    /// [`.default_export`](https://libguestfs.org/nbdkit-plugin.3.html#default_export)
    fn default_export(&self, readonly: bool, is_tls: bool) -> Result<String> {
        Ok(String::new())
    }

    // ---- A connection ----

    /// A client opens the export (see [`crate::server::export_name`]). Required.
    /// [`.open`](https://libguestfs.org/nbdkit-plugin.3.html#open)
    fn open(&self, readonly: bool) -> Result<Self::Handle>;

    /// The connection closes. Without this method the handle is simply dropped.
    /// [`.close`](https://libguestfs.org/nbdkit-plugin.3.html#close)
    fn close(&self, handle: Self::Handle) {}

    /// The export's size in bytes (at most `i64::MAX`). Required.
    /// [`.get_size`](https://libguestfs.org/nbdkit-plugin.3.html#get_size)
    fn get_size(&self, handle: &Self::Handle) -> Result<u64>;

    /// A description shown to clients that ask for one.
    /// [`.export_description`](https://libguestfs.org/nbdkit-plugin.3.html#export_description)
    fn export_description(&self, handle: &Self::Handle) -> Result<String> {
        Err(Errno::ENOTSUP.into())
    }

    /// Block size constraints. Without this method: none advertised.
    /// [`.block_size`](https://libguestfs.org/nbdkit-plugin.3.html#block_size)
    fn block_size(&self, handle: &Self::Handle) -> Result<BlockSize> {
        Ok(BlockSize::default())
    }

    /// Whether the export is writable. Without this method: whether `pwrite` is defined.
    fn can_write(&self, handle: &Self::Handle) -> Result<bool> {
        Ok(false)
    }
    /// Whether `flush` works. Without this method: whether `flush` is defined.
    fn can_flush(&self, handle: &Self::Handle) -> Result<bool> {
        Ok(false)
    }
    /// Whether the storage is rotational (a hint). Without this method: false.
    fn is_rotational(&self, handle: &Self::Handle) -> Result<bool> {
        Ok(false)
    }
    /// Whether `trim` works. Without this method: whether `trim` is defined.
    fn can_trim(&self, handle: &Self::Handle) -> Result<bool> {
        Ok(false)
    }
    /// Whether `zero` is efficient. Without this method: whether `zero` is defined; when
    /// false, nbdkit writes zeroes with `pwrite` instead.
    fn can_zero(&self, handle: &Self::Handle) -> Result<bool> {
        Ok(false)
    }
    /// How FUA is handled. Without this method: [`FuaMode::Emulate`] if `flush` is defined,
    /// else [`FuaMode::None`].
    fn can_fua(&self, handle: &Self::Handle) -> Result<FuaMode> {
        Ok(FuaMode::None)
    }
    /// Whether several connections see consistent data. Without this method: false.
    fn can_multi_conn(&self, handle: &Self::Handle) -> Result<bool> {
        Ok(false)
    }
    /// Whether `extents` works. Without this method: whether `extents` is defined.
    fn can_extents(&self, handle: &Self::Handle) -> Result<bool> {
        Ok(false)
    }
    /// How cache requests are handled. Without this method: [`CacheMode::Native`] if `cache`
    /// is defined, else [`CacheMode::None`].
    fn can_cache(&self, handle: &Self::Handle) -> Result<CacheMode> {
        Ok(CacheMode::None)
    }
    /// Whether `zero` with [`Flags::FAST_ZERO`] is supported. Without this method: true when
    /// `zero` is missing or `can_zero` is false (those fail fast), false otherwise.
    fn can_fast_zero(&self, handle: &Self::Handle) -> Result<bool> {
        Ok(false)
    }

    // ---- Serving data ----

    /// Fills `buf` (nbdkit's own buffer) with the data at `offset`. Required.
    /// [`.pread`](https://libguestfs.org/nbdkit-plugin.3.html#pread)
    fn pread(&self, handle: &Self::Handle, buf: &mut [u8], offset: u64, flags: Flags)
        -> Result<()>;

    /// Writes `buf` at `offset`; honour [`Flags::FUA`] if `can_fua` said native.
    /// Without this method the export is read-only (`EROFS`).
    /// [`.pwrite`](https://libguestfs.org/nbdkit-plugin.3.html#pwrite)
    fn pwrite(&self, handle: &Self::Handle, buf: &[u8], offset: u64, flags: Flags) -> Result<()> {
        Err(Errno::EROFS.into())
    }

    /// Makes written data durable.
    /// [`.flush`](https://libguestfs.org/nbdkit-plugin.3.html#flush)
    fn flush(&self, handle: &Self::Handle, flags: Flags) -> Result<()> {
        Err(Errno::EINVAL.into())
    }

    /// Discards a range (a hint: the data may or may not read back as zeroes).
    /// [`.trim`](https://libguestfs.org/nbdkit-plugin.3.html#trim)
    fn trim(&self, handle: &Self::Handle, count: u32, offset: u64, flags: Flags) -> Result<()> {
        Err(Errno::EINVAL.into())
    }

    /// Writes zeroes; may punch holes with [`Flags::MAY_TRIM`]; with [`Flags::FAST_ZERO`] must
    /// fail with `ENOTSUP` unless it is faster than writing. Failing with `ENOTSUP` without
    /// `FAST_ZERO` makes the shim write zeroes with `pwrite` instead.
    /// [`.zero`](https://libguestfs.org/nbdkit-plugin.3.html#zero)
    fn zero(&self, handle: &Self::Handle, count: u32, offset: u64, flags: Flags) -> Result<()> {
        Err(Errno::ENOTSUP.into())
    }

    /// Reports allocated, hole and zero ranges from `offset`.
    /// [`.extents`](https://libguestfs.org/nbdkit-plugin.3.html#extents)
    fn extents(
        &self,
        handle: &Self::Handle,
        count: u32,
        offset: u64,
        flags: Flags,
        extents: &mut Extents,
    ) -> Result<()> {
        extents.add(offset, count.into(), crate::types::ExtentType::DATA)
    }

    /// Prefetches a range.
    /// [`.cache`](https://libguestfs.org/nbdkit-plugin.3.html#cache)
    fn cache(&self, handle: &Self::Handle, count: u32, offset: u64, flags: Flags) -> Result<()> {
        Ok(())
    }

    // ---- Hot reload (`reload=watch`) ----

    /// Opt-in: state to hand to the next build of this plugin when the running server loads it.
    /// Without this method (or returning `None`) the successor starts fresh. When it is called,
    /// and so what a write on a connection still open on this generation becomes:
    ///
    /// * by default, when the new build is ready, and this generation keeps serving its open
    ///   connections: hand over state both can use at once, like
    ///   [`SharedPages`](crate::SharedPages) ([`Handover::pages`]), and every write is seen by
    ///   both; a copy ([`Handover::bytes`]) is a snapshot, and writes made after it on the old
    ///   connections are not in the new build;
    /// * with [`HAND_OVER_AT_RETIRE`](Self::HAND_OVER_AT_RETIRE), once this generation's last
    ///   connection has closed, with new connections held meanwhile: then a copy has every
    ///   write.
    fn hand_over(&self) -> Option<Handover> {
        None
    }

    /// Opt-in: adopts the state a predecessor handed over, after `config_complete` and before
    /// `get_ready`. Return `Ok(false)` if it is not something this build understands (check
    /// [`Handover::kind`]): the plugin then starts fresh. Without this method handed-over state
    /// is dropped.
    fn take_over(&mut self, state: Handover) -> Result<bool> {
        drop(state);
        Ok(false)
    }

    // ---- Shutting down ----

    /// The server is shutting down (connections may still hold handles).
    /// [`.cleanup`](https://libguestfs.org/nbdkit-plugin.3.html#cleanup)
    fn cleanup(&mut self) {}

    /// Last call before the value is dropped.
    /// [`.unload`](https://libguestfs.org/nbdkit-plugin.3.html#unload)
    fn unload(&mut self) {}
}
