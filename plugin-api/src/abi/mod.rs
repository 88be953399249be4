//! The boundary between the shim and a plugin.
//!
//! Every type and function pointer that crosses from the shim (`nbdkit-rustshim-plugin.so`) into a
//! separately compiled plugin dylib, or back, is declared in this module, and nothing else is.
//! `abi_stable` is used only here and in [`load`] (the shim's checked loader), so the rest of the
//! crate, the shim and every plugin can ignore it.
//!
//! # Shape
//! * [`PluginModule`] is the plugin's root module: static facts (name, version, which callbacks
//!   exist) and one `extern "C"` function pointer per nbdkit callback. A callback the plugin does
//!   not implement is `None`; the shim then reproduces what nbdkit does for a C plugin that omits it.
//! * [`HostServices`] is the table the shim hands the plugin at [`PluginModule::create`]: nbdkit's
//!   server functions (`nbdkit_parse_size`, `nbdkit_export_name`, …) plus error reporting and
//!   logging. Plugins therefore carry no undefined `nbdkit_*` symbols.
//! * Calls follow nbdkit's own convention: a callback returns [`OK`] (or a non-negative value) on
//!   success, or [`ERROR`] after reporting errno and message through [`HostServices::set_error`].
//!   Host services return `0` or a positive errno.
//!
//! # Compatibility rules (enforced by the loader in [`load`])
//! * The ABI version is this crate's version. Plugins built against another major are refused.
//! * Within a major version, both prefix types only grow, by appending fields after the field
//!   marked `last_prefix_field` (which never moves). Appended fields are read through their
//!   `Option` accessors, so an older plugin on a newer shim, and a newer plugin on an older shim,
//!   both see exactly what the other side has.
//! * Callback bit numbers ([`CALLBACK_NAMES`]) are append-only.
//!
//! # Threading contract
//! The shim calls the lifecycle callbacks that take the instance mutably (`load`, `config`,
//! `config_complete`, `get_ready`, `after_fork`, `cleanup`, `destroy`) only while no other callback
//! of the same instance can run. Everything else may be called concurrently from many threads.

// `StableAbi` derives generate impls in generated modules.
#![allow(non_local_definitions)]

pub mod filter;
pub mod load;
pub(crate) mod table;

pub use filter::{
    BackendPtr, ContextPtr, Extent, FilterModule, FilterModuleRef, FilterServices,
    FilterServicesRef, LayerNext, NextPtr, FILTER_CALLBACK_NAMES, FILTER_CALLBACK_NAME_STRS,
};

use std::ffi::c_void;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize};

use abi_stable::{
    declare_root_module_statics, library::RootModule, package_version_strings,
    sabi_types::VersionStrings, StableAbi,
};

pub use abi_stable::std_types::{ROption, RSlice, RStr, RString, RVec};

#[doc(hidden)]
pub use abi_stable::{
    library::{
        CheckTypeLayout as __CheckTypeLayout, LibHeader as __LibHeader,
        RootModuleResult as __RootModuleResult,
    },
    prefix_type::PrefixTypeTrait as __PrefixTypeTrait,
};

/// Success status of a callback.
pub const OK: i32 = 0;
/// Failure status of a callback; the plugin has called [`HostServices::set_error`] first.
pub const ERROR: i32 = -1;

/// Opaque pointer to a plugin instance (the plugin's own type), made by [`PluginModule::create`].
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq)]
pub struct InstancePtr(pub *mut c_void);

/// Opaque pointer to one open connection's handle (the plugin's `Handle` type), made by
/// [`PluginModule::open`] and released by [`PluginModule::close`].
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq)]
pub struct HandlePtr(pub *mut c_void);

/// Where a plugin's `extents` callback puts extents: the shim validates and clips each one before
/// nbdkit sees it.
#[repr(C)]
#[derive(StableAbi, Copy, Clone)]
pub struct ExtentSink {
    /// The shim's state for this call.
    pub ctx: *mut c_void,
    /// Adds one extent (`kind`: bit 0 hole, bit 1 zero). Returns 0 or a positive errno.
    pub add: extern "C" fn(ctx: *mut c_void, offset: u64, length: u64, kind: u32) -> i32,
}

/// Where a plugin's `list_exports` callback puts exports.
#[repr(C)]
#[derive(StableAbi, Copy, Clone)]
pub struct ExportSink {
    /// The shim's state for this call.
    pub ctx: *mut c_void,
    /// Adds one export. Returns 0 or a positive errno.
    pub add: extern "C" fn(ctx: *mut c_void, name: RStr<'_>, description: ROption<RStr<'_>>) -> i32,
    /// Adds the export nbdkit would list for a plugin without `list_exports`.
    pub use_default: extern "C" fn(ctx: *mut c_void) -> i32,
}

/// Where a plugin's `dump_plugin` callback writes its `key=value` lines.
#[repr(C)]
#[derive(StableAbi, Copy, Clone)]
pub struct DumpSink {
    /// The shim's state for this call.
    pub ctx: *mut c_void,
    /// Prints one `key=value` line on nbdkit's standard output.
    pub line: extern "C" fn(ctx: *mut c_void, key: RStr<'_>, value: RStr<'_>),
}

/// What one generation of a plugin hands to the next on a hot reload (opt-in: see
/// `Plugin::hand_over`). Owns one reference to `state`, dropped with `release`.
#[repr(C)]
#[derive(StableAbi)]
pub struct Handover {
    /// Names what the state is, chosen by the plugin: a successor that does not recognise it
    /// starts fresh.
    pub kind: RString,
    /// How `state` is laid out: [`HANDOVER_PAGES`] or [`HANDOVER_BYTES`] (or
    /// [`HANDOVER_AT_RETIRE`]: none yet).
    pub format: u32,
    /// The state.
    pub state: *const c_void,
    /// Drops this reference to `state` (code of the generation that made it, never unloaded).
    pub release: extern "C" fn(state: *const c_void),
}

/// [`Handover::format`]: `state` is a [`PagesStore`].
pub const HANDOVER_PAGES: u32 = 1;
/// [`Handover::format`]: `state` is a `RVec<u8>`.
pub const HANDOVER_BYTES: u32 = 2;
/// [`Handover::format`]: no state yet (`state` is null): the plugin hands over when the old
/// generation retires (`Plugin::HAND_OVER_AT_RETIRE`), so the shim calls `hand_over` again
/// once the old generation's last connection has closed. Added in 1.1.0: an older shim hands
/// this on, and the successor starts fresh.
pub const HANDOVER_AT_RETIRE: u32 = 3;

/// [`PagesStore::magic`].
pub const PAGES_MAGIC: u64 = u64::from_le_bytes(*b"RSPAGES\0");
/// [`PagesStore::layout_version`]: bump on any change to the layout or the locking protocol.
pub const PAGES_LAYOUT_VERSION: u32 = 3;

/// The memory of a `SharedPages` store (`crate::shared_pages`): a sparse array of pages that the
/// generations of a plugin read and write directly, concurrently, across hot reloads. Fixed by
/// [`PAGES_LAYOUT_VERSION`]; all its memory comes from the C allocator, so any generation may
/// free it.
///
/// Protocol: page `i` is `1 << page_shift` bytes, found through a radix tree of
/// `AtomicPtr`s. The root has `page_count >> top_shift` (rounded up) entries; each entry of a
/// level with a shift `s > 0` points at a node of `1 << node_shift` entries (NULL: nothing below
/// was ever written) for the next level, with shift `s - node_shift`; the level with shift 0
/// holds the pages (NULL: reads as zeroes). So the entry of page `i` is reached from
/// `root[i >> top_shift]`, then `node[(i >> s) & ((1 << node_shift) - 1)]` for each lower `s`.
/// Nodes are made with `calloc` and published with a compare-and-swap from NULL (the loser
/// frees its own), and are freed only with the store. A page's contents and pointer are guarded
/// by `locks[i & (lock_stripes - 1)]` (`lock_stripes` is a power of two), a reader-writer lock
/// in one 32-bit word (zero: free) whose protocol is in `crate::page_lock`: read lock to read,
/// write lock to allocate, write, zero or free. `refs` counts the handles. If `dense` is not
/// NULL, every page was allocated at once as one block of `dense_len` bytes (page `i` at
/// `dense + (i << page_shift)`, `allocator=malloc`), and pages are zeroed, never freed.
///
/// Version 1 had `pthread_rwlock_t` locks, version 2 a flat page table and page locks whose
/// waiting writer could be overtaken by readers; a build does not adopt a store of another
/// version (its disk starts empty).
#[repr(C)]
pub struct PagesStore {
    /// [`PAGES_MAGIC`].
    pub magic: u64,
    /// [`PAGES_LAYOUT_VERSION`].
    pub layout_version: u32,
    /// log2 of the page size.
    pub page_shift: u32,
    /// Size in bytes.
    pub size: u64,
    /// Pages of the disk.
    pub page_count: u64,
    /// Handles to this store.
    pub refs: AtomicUsize,
    /// The page table's root node.
    pub root: *mut AtomicPtr<u8>,
    /// Entries in `locks`, a power of two.
    pub lock_stripes: u64,
    /// The page locks (see `crate::page_lock`).
    pub locks: *mut AtomicU32,
    /// log2 of the entries of a node below the root.
    pub node_shift: u32,
    /// How far a page index is shifted to index the root: `node_shift` times the levels below
    /// it.
    pub top_shift: u32,
    /// All the pages in one block, or NULL (sparse).
    pub dense: *mut u8,
    /// Bytes at `dense`.
    pub dense_len: u64,
}

/// nbdkit's server functions and the shim's error and log channels, as seen by a plugin.
///
/// Functions return `0` or a positive errno. `ENOTSUP` means the running nbdkit lacks the
/// function and the shim could not reproduce it; any other errno means nbdkit (or the shim)
/// has already logged why.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = HostServicesRef)))]
#[sabi(missing_field(option))]
pub struct HostServices {
    /// Records the error of the callback that is about to return [`ERROR`]: errno and message
    /// (an empty message means it was already logged).
    pub set_error: extern "C" fn(errno: i32, msg: RStr<'_>),
    /// Logs one message: levels as in the `log` crate (1 error … 5 trace).
    pub log: extern "C" fn(level: u32, msg: RStr<'_>),
    /// `nbdkit_parse_size`.
    pub parse_size: extern "C" fn(s: RStr<'_>, out: &mut u64) -> i32,
    /// `nbdkit_parse_bool`.
    pub parse_bool: extern "C" fn(s: RStr<'_>, out: &mut bool) -> i32,
    /// `nbdkit_parse_probability` (done by the shim on nbdkit < 1.36).
    pub parse_probability: extern "C" fn(what: RStr<'_>, s: RStr<'_>, out: &mut f64) -> i32,
    /// `nbdkit_parse_delay` (done by the shim on nbdkit < 1.40).
    pub parse_delay:
        extern "C" fn(what: RStr<'_>, s: RStr<'_>, sec: &mut u32, nsec: &mut u32) -> i32,
    /// `nbdkit_read_password`.
    pub read_password: extern "C" fn(value: RStr<'_>, out: &mut RString) -> i32,
    /// `nbdkit_realpath`.
    pub realpath: extern "C" fn(path: RStr<'_>, out: &mut RString) -> i32,
    /// `nbdkit_stdio_safe`: writes 1 or 0.
    pub stdio_safe: extern "C" fn(out: &mut bool) -> i32,
    /// `nbdkit_shutdown`.
    pub shutdown: extern "C" fn() -> i32,
    /// `nbdkit_disconnect` (nbdkit ≥ 1.34).
    pub disconnect: extern "C" fn(force: bool) -> i32,
    /// `nbdkit_export_name`, as bytes.
    pub export_name: extern "C" fn(out: &mut RVec<u8>) -> i32,
    /// `nbdkit_is_tls`.
    pub is_tls: extern "C" fn(out: &mut bool) -> i32,
    /// `nbdkit_peer_name`: the raw `struct sockaddr` bytes.
    pub peer_name: extern "C" fn(out: &mut RVec<u8>) -> i32,
    /// `nbdkit_peer_pid`.
    pub peer_pid: extern "C" fn(out: &mut i64) -> i32,
    /// `nbdkit_peer_uid`.
    pub peer_uid: extern "C" fn(out: &mut i64) -> i32,
    /// `nbdkit_peer_gid`.
    pub peer_gid: extern "C" fn(out: &mut i64) -> i32,
    /// `nbdkit_peer_security_context` (nbdkit ≥ 1.36).
    pub peer_security_context: extern "C" fn(out: &mut RString) -> i32,
    /// `nbdkit_peer_tls_dn` (nbdkit ≥ 1.40).
    pub peer_tls_dn: extern "C" fn(out: &mut RString) -> i32,
    /// `nbdkit_peer_tls_issuer_dn` (nbdkit ≥ 1.40).
    pub peer_tls_issuer_dn: extern "C" fn(out: &mut RString) -> i32,
    /// `nbdkit_nanosleep`.
    pub nanosleep: extern "C" fn(sec: u32, nsec: u32) -> i32,
    /// The running nbdkit's version, e.g. `1.32.5`.
    pub version: extern "C" fn(out: &mut RString) -> i32,
    /// nbdkit's plugin API version the shim speaks (2).
    #[sabi(last_prefix_field)]
    pub api_version: extern "C" fn() -> i32,
    /// `nbdkit_debug_hexdump` (nbdkit ≥ 1.46; the shim formats it itself on older ones). Added
    /// in 1.1. An empty `prefix` means none.
    pub debug_hexdump: extern "C" fn(buf: RSlice<'_, u8>, prefix: RStr<'_>, start: u64) -> i32,
    /// `nbdkit_debug_hexdiff` (nbdkit ≥ 1.48; the shim formats it itself on older ones): `a` and
    /// `b` have the same length. Added in 1.1.
    pub debug_hexdiff:
        extern "C" fn(a: RSlice<'_, u8>, b: RSlice<'_, u8>, prefix: RStr<'_>, start: u64) -> i32,
    /// `nbdkit_name`: the `--name` of this nbdkit, if given (nbdkit ≥ 1.48; the shim reads its
    /// command line on older ones). Added in 1.1.
    pub name: extern "C" fn(out: &mut ROption<RString>) -> i32,
    /// `nbdkit_timestamp` (nbdkit ≥ 1.48; the shim makes one itself on older ones). Added in 1.1.
    pub timestamp: extern "C" fn(out: &mut RString) -> i32,
    /// Whether the running nbdkit itself has the server function `nbdkit_<name>` (a name as in
    /// `--dump-plugin`'s list); an unknown name is `ENOENT`. Added in 1.1.
    pub nbdkit_has: extern "C" fn(name: RStr<'_>, out: &mut bool) -> i32,
    // Services added in later minor versions go here.
}

/// The table of [`PluginModule`]: its static facts, then one entry per callback, `[bit]` being
/// the callback's bit number in [`PluginModule::implemented`] and [`CALLBACK_NAMES`] (`[bit
/// name]` where the field is named otherwise). The order of entries is the ABI's field order.
/// See [`table`] for what is derived from it.
///
/// Adding a callback: append an entry at the end, with the next bit number, as `Option<..>`.
macro_rules! plugin_module {
    ($($how:tt)*) => { $crate::abi::table::callback_module! { $($how)*
        /// A plugin's root module: what it is and one function pointer per nbdkit callback.
        ///
        /// Optional callbacks are `None` when the plugin does not implement them.
        #[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
        #[sabi(missing_field(option))]
        pub struct PluginModule, names CALLBACK_NAMES, strs CALLBACK_NAME_STRS {
            /// nbdkit `name`.
            pub name: RStr<'static>,
            /// nbdkit `longname`.
            pub longname: ROption<RStr<'static>>,
            /// nbdkit `version`.
            pub version: ROption<RStr<'static>>,
            /// nbdkit `description`.
            pub description: ROption<RStr<'static>>,
            /// nbdkit `config_help`.
            pub config_help: ROption<RStr<'static>>,
            /// nbdkit `magic_config_key`.
            pub magic_config_key: ROption<RStr<'static>>,
            /// Which callbacks the plugin author wrote, as bits numbered by [`CALLBACK_NAMES`].
            pub implemented: u64,
            /// The plugin's [`CALLBACK_NAMES`], so an older shim can name callbacks it does not
            /// know.
            pub callback_names: RSlice<'static, RStr<'static>>,
            /// `false` when the plugin was built with `panic = "abort"`: any panic then ends
            /// nbdkit.
            pub panic_unwinds: bool,
            /// How the plugin was built (`rustc …; profile=…`), for `--dump-plugin`.
            pub build_info: RStr<'static>,
        }
        callbacks {
            /// Makes a new instance (the plugin's `load`). Writes it to `out`.
            [0 load] create: (extern "C" fn(host: HostServicesRef, out: &mut InstancePtr) -> i32),
            /// Runs the plugin's `unload` and frees the instance.
            [1 unload] destroy: (unsafe extern "C" fn(instance: InstancePtr)),
            /// nbdkit `config`.
            [2] config: (Option<
                unsafe extern "C" fn(instance: InstancePtr, key: RStr<'_>, value: RStr<'_>) -> i32,
            >),
            /// nbdkit `config_complete`.
            [3] config_complete: (Option<unsafe extern "C" fn(instance: InstancePtr) -> i32>),
            /// nbdkit `thread_model`: returns the model (0–3, as nbdkit numbers them) or
            /// [`ERROR`].
            [4] thread_model: (Option<unsafe extern "C" fn(instance: InstancePtr) -> i32>),
            /// nbdkit `get_ready`.
            [5] get_ready: (Option<unsafe extern "C" fn(instance: InstancePtr) -> i32>),
            /// nbdkit `after_fork`.
            [6] after_fork: (Option<unsafe extern "C" fn(instance: InstancePtr) -> i32>),
            /// nbdkit `cleanup`.
            [7] cleanup: (Option<unsafe extern "C" fn(instance: InstancePtr)>),
            /// nbdkit `dump_plugin`.
            [8] dump_plugin: (Option<unsafe extern "C" fn(instance: InstancePtr, sink: DumpSink)>),
            /// nbdkit `preconnect`.
            [9] preconnect: (Option<unsafe extern "C" fn(instance: InstancePtr, readonly: bool) -> i32>),
            /// nbdkit `list_exports`.
            [10] list_exports: (Option<
                unsafe extern "C" fn(
                    instance: InstancePtr,
                    readonly: bool,
                    is_tls: bool,
                    sink: ExportSink,
                ) -> i32,
            >),
            /// nbdkit `default_export`.
            [11] default_export: (Option<
                unsafe extern "C" fn(
                    instance: InstancePtr,
                    readonly: bool,
                    is_tls: bool,
                    out: &mut RString,
                ) -> i32,
            >),
            /// nbdkit `open`: writes the new handle to `out`.
            [12] open: (unsafe extern "C" fn(instance: InstancePtr, readonly: bool, out: &mut HandlePtr) -> i32),
            /// nbdkit `close`: releases the handle (always present: the handle must be freed).
            [13] close: (unsafe extern "C" fn(instance: InstancePtr, handle: HandlePtr)),
            /// nbdkit `get_size`.
            [14] get_size: (unsafe extern "C" fn(instance: InstancePtr, handle: HandlePtr, out: &mut u64) -> i32),
            /// nbdkit `export_description`.
            [15] export_description: (Option<
                unsafe extern "C" fn(instance: InstancePtr, handle: HandlePtr, out: &mut RString) -> i32,
            >),
            /// nbdkit `block_size`.
            [16] block_size: (Option<
                unsafe extern "C" fn(
                    instance: InstancePtr,
                    handle: HandlePtr,
                    minimum: &mut u32,
                    preferred: &mut u32,
                    maximum: &mut u32,
                ) -> i32,
            >),
            /// nbdkit `can_write`: 1, 0 or [`ERROR`].
            [17] can_write: (Option<unsafe extern "C" fn(instance: InstancePtr, handle: HandlePtr) -> i32>),
            /// nbdkit `can_flush`.
            [18] can_flush: (Option<unsafe extern "C" fn(instance: InstancePtr, handle: HandlePtr) -> i32>),
            /// nbdkit `is_rotational`.
            [19] is_rotational: (Option<unsafe extern "C" fn(instance: InstancePtr, handle: HandlePtr) -> i32>),
            /// nbdkit `can_trim`.
            [20] can_trim: (Option<unsafe extern "C" fn(instance: InstancePtr, handle: HandlePtr) -> i32>),
            /// nbdkit `can_zero`.
            [21] can_zero: (Option<unsafe extern "C" fn(instance: InstancePtr, handle: HandlePtr) -> i32>),
            /// nbdkit `can_fua`: 0 none, 1 emulate, 2 native, or [`ERROR`].
            [22] can_fua: (Option<unsafe extern "C" fn(instance: InstancePtr, handle: HandlePtr) -> i32>),
            /// nbdkit `can_multi_conn`.
            [23] can_multi_conn: (Option<unsafe extern "C" fn(instance: InstancePtr, handle: HandlePtr) -> i32>),
            /// nbdkit `can_extents`.
            [24] can_extents: (Option<unsafe extern "C" fn(instance: InstancePtr, handle: HandlePtr) -> i32>),
            /// nbdkit `can_cache`: 0 none, 1 emulate, 2 native, or [`ERROR`].
            [25] can_cache: (Option<unsafe extern "C" fn(instance: InstancePtr, handle: HandlePtr) -> i32>),
            /// nbdkit `can_fast_zero`.
            [26] can_fast_zero: (Option<unsafe extern "C" fn(instance: InstancePtr, handle: HandlePtr) -> i32>),
            /// nbdkit `pread`: fills `count` bytes at `buf`.
            [27] pread: (unsafe extern "C" fn(
                instance: InstancePtr,
                handle: HandlePtr,
                buf: *mut u8,
                count: u32,
                offset: u64,
                flags: u32,
            ) -> i32),
            /// nbdkit `pwrite`: writes `count` bytes from `buf`.
            [28] pwrite: (Option<
                unsafe extern "C" fn(
                    instance: InstancePtr,
                    handle: HandlePtr,
                    buf: *const u8,
                    count: u32,
                    offset: u64,
                    flags: u32,
                ) -> i32,
            >),
            /// nbdkit `flush`.
            [29] flush: (Option<unsafe extern "C" fn(instance: InstancePtr, handle: HandlePtr, flags: u32) -> i32>),
            /// nbdkit `trim`.
            [30] trim: (Option<
                unsafe extern "C" fn(
                    instance: InstancePtr,
                    handle: HandlePtr,
                    count: u32,
                    offset: u64,
                    flags: u32,
                ) -> i32,
            >),
            /// nbdkit `zero`.
            [31] zero: (Option<
                unsafe extern "C" fn(
                    instance: InstancePtr,
                    handle: HandlePtr,
                    count: u32,
                    offset: u64,
                    flags: u32,
                ) -> i32,
            >),
            /// nbdkit `cache`.
            [33] cache: (Option<
                unsafe extern "C" fn(
                    instance: InstancePtr,
                    handle: HandlePtr,
                    count: u32,
                    offset: u64,
                    flags: u32,
                ) -> i32,
            >),
            /// Hot reload: the state this instance hands to its successor, written to `out`.
            [34] hand_over: (Option<unsafe extern "C" fn(instance: InstancePtr, out: &mut ROption<Handover>) -> i32>),
            /// Hot reload: adopts a predecessor's state; returns 1 if adopted, 0 if not
            /// (released).
            [35] take_over: (Option<unsafe extern "C" fn(instance: InstancePtr, state: Handover) -> i32>),
            /// nbdkit `extents`.
            #[sabi(last_prefix_field)]
            [32] extents: (Option<
                unsafe extern "C" fn(
                    instance: InstancePtr,
                    handle: HandlePtr,
                    count: u32,
                    offset: u64,
                    flags: u32,
                    sink: ExtentSink,
                ) -> i32,
            >),
            // Callbacks added in later minor versions go here (`Option`, the next bit number).
        }
    } };
}
pub(crate) use plugin_module;

plugin_module!(declare);

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "rustshim_plugin";
    const NAME: &'static str = "rustshim_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// The `rustshim-plugin-api` version this copy of the ABI declares (what the shim speaks, or what
/// a plugin was built against).
pub const ABI_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Emits the root module symbol the shim looks for, for a root module of type `$module`
/// ([`PluginModuleRef`] or [`FilterModuleRef`]). Used by [`crate::export_plugin!`] and
/// [`crate::export_filter!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __export_root_module {
    ($make:path, $module:ty) => {
        #[no_mangle]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::abi::__LibHeader = {
            extern "C" fn __rustshim_root_module() -> $crate::abi::__RootModuleResult {
                $crate::abi::__call_root_module_loader($make)
            }
            // SAFETY: the constructor returns the module type named here, built by this crate's
            // adapter; abi_stable records its layout for the loader to check.
            unsafe {
                $crate::abi::__LibHeader::from_constructor::<$module>(
                    __rustshim_root_module,
                    $crate::abi::__CheckTypeLayout::Yes,
                )
            }
        };
    };
}

#[doc(hidden)]
pub use abi_stable::library::__call_root_module_loader;
