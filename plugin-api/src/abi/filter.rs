//! The filter half of the boundary: a filter's root module ([`FilterModule`], a second table on
//! `callback_module!`, in `abi/table.rs`) and the shim's table for filters ([`FilterServices`]),
//! through which a filter calls the layer below it.
//!
//! nbdkit's own filter ABI (`struct nbdkit_filter`, `struct nbdkit_next_ops`) changes between
//! nbdkit versions and never crosses this boundary: the shim mirrors it for each nbdkit it knows,
//! and a filter only sees the opaque pointers below and calls the layer below through
//! [`FilterServices`]. So a filter built once runs on every nbdkit the shim supports.
//!
//! Conventions are the plugin's (`super`): a callback returns [`OK`](super::OK) or a non-negative
//! answer, or [`ERROR`](super::ERROR) after [`HostServices::set_error`](super::HostServices).
//! The threading contract is the plugin's too: `load`, `config`, `config_complete`, `get_ready`,
//! `after_fork`, `cleanup`, `unload` and `take_over` run while no other callback of the instance
//! runs.

use std::ffi::c_void;

use abi_stable::{
    declare_root_module_statics, library::RootModule, package_version_strings,
    sabi_types::VersionStrings, StableAbi,
};

use super::{
    DumpSink, ExportSink, ExtentSink, HandlePtr, Handover, HostServicesRef, InstancePtr, ROption,
    RSlice, RStr, RString, RVec,
};

/// nbdkit's `nbdkit_next *`: the layer below, as nbdkit hands it to a connection's callbacks (or
/// as [`FilterServices::context_open`] made it). Only valid during the callback it was passed to,
/// or until closed.
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq)]
pub struct NextPtr(pub *mut c_void);

/// nbdkit's `nbdkit_backend *`: the layer below as a whole, valid from `after_fork` to `cleanup`.
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq)]
pub struct BackendPtr(pub *mut c_void);

/// nbdkit's `nbdkit_context *`: this filter's context of one connection, valid until `close`.
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq)]
pub struct ContextPtr(pub *mut c_void);

/// The `next` function nbdkit gives a callback that runs outside a connection's data path
/// (`config`, `config_complete`, `preconnect`, `list_exports`, `default_export`, `open`): the
/// function and its first argument, both opaque. Only the matching [`FilterServices`] function
/// may call it (`config` for a `config` callback's, …), and only during that callback.
/// `func` is NULL when there is nothing to call: a hot reload replays `config` and
/// `config_complete`, whose pass-through already happened at start-up.
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug)]
pub struct LayerNext {
    /// nbdkit's `nbdkit_next_config *` (or `_config_complete`, `_preconnect`, …), or NULL.
    pub func: *const c_void,
    /// Its first argument: the `nbdkit_backend *` (`nxdata`), or for `open` the
    /// `nbdkit_context *`.
    pub data: *mut c_void,
}

/// One extent as nbdkit lists it (`struct nbdkit_extent`).
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq)]
pub struct Extent {
    /// Where it starts.
    pub offset: u64,
    /// How long it is.
    pub length: u64,
    /// `NBDKIT_EXTENT_HOLE` (1) and/or `NBDKIT_EXTENT_ZERO` (2), or 0 for data.
    pub kind: u32,
}

/// The shim's table for filters: how a filter calls the layer below.
///
/// Functions without `err` return `0` or a positive errno (the `can_*` queries return their
/// answer, `context_set_next` the old context). The data functions follow nbdkit's `next_ops`:
/// `-1` with `*err` set to a positive errno, or `0`. Every `NextPtr` argument may be NULL (the
/// layer below was not opened): the call then fails with `EIO` instead of reaching nbdkit.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = FilterServicesRef)))]
#[sabi(missing_field(option))]
pub struct FilterServices {
    /// `config`'s `next (nxdata, key, value)`.
    pub config: extern "C" fn(next: LayerNext, key: RStr<'_>, value: RStr<'_>) -> i32,
    /// `config_complete`'s `next (nxdata)`.
    pub config_complete: extern "C" fn(next: LayerNext) -> i32,
    /// `preconnect`'s `next (nxdata, readonly)`.
    pub preconnect: extern "C" fn(next: LayerNext, readonly: bool) -> i32,
    /// `list_exports`'s `next (nxdata, readonly, exports)`: the layer below's exports, each added
    /// to `sink`.
    pub list_exports: extern "C" fn(next: LayerNext, readonly: bool, sink: ExportSink) -> i32,
    /// `default_export`'s `next (nxdata, readonly)`.
    pub default_export: extern "C" fn(next: LayerNext, readonly: bool, out: &mut RString) -> i32,
    /// `open`'s `next (context, readonly, exportname)`: opens the layer below for this
    /// connection. A second call fails with `EINVAL` (nbdkit would abort).
    pub open: extern "C" fn(next: LayerNext, readonly: bool, export_name: RStr<'_>) -> i32,
    /// `nbdkit_context_get_backend`.
    pub context_get_backend: extern "C" fn(context: ContextPtr) -> BackendPtr,
    /// `nbdkit_next_context_open`: writes the new context to `out`.
    pub context_open: extern "C" fn(
        backend: BackendPtr,
        readonly: bool,
        export_name: RStr<'_>,
        shared: bool,
        out: &mut NextPtr,
    ) -> i32,
    /// `nbdkit_next_context_close`.
    pub context_close: extern "C" fn(next: NextPtr),
    /// `nbdkit_context_set_next`: returns the context it replaces (NULL if none).
    pub context_set_next: extern "C" fn(context: ContextPtr, next: NextPtr) -> NextPtr,
    /// `next->prepare`.
    pub prepare: extern "C" fn(next: NextPtr) -> i32,
    /// `next->finalize`.
    pub finalize: extern "C" fn(next: NextPtr) -> i32,
    /// `next->get_size`.
    pub get_size: extern "C" fn(next: NextPtr, out: &mut u64) -> i32,
    /// `next->export_description` (`ENOTSUP` when the layer below has none).
    pub export_description: extern "C" fn(next: NextPtr, out: &mut RString) -> i32,
    /// `next->block_size`.
    pub block_size: extern "C" fn(
        next: NextPtr,
        minimum: &mut u32,
        preferred: &mut u32,
        maximum: &mut u32,
    ) -> i32,
    /// `next->can_write`, … : the query numbered [`QUERY_NAMES`] (its answer, or -1).
    pub query: extern "C" fn(next: NextPtr, which: u32) -> i32,
    /// `next->pread`.
    pub pread: extern "C" fn(
        next: NextPtr,
        buf: *mut u8,
        count: u32,
        offset: u64,
        flags: u32,
        err: &mut i32,
    ) -> i32,
    /// `next->pwrite`.
    pub pwrite: extern "C" fn(
        next: NextPtr,
        buf: *const u8,
        count: u32,
        offset: u64,
        flags: u32,
        err: &mut i32,
    ) -> i32,
    /// `next->flush`.
    pub flush: extern "C" fn(next: NextPtr, flags: u32, err: &mut i32) -> i32,
    /// `next->trim`, `next->zero` or `next->cache`: the range request numbered
    /// [`RANGE_NAMES`].
    pub range: extern "C" fn(
        next: NextPtr,
        which: u32,
        count: u32,
        offset: u64,
        flags: u32,
        err: &mut i32,
    ) -> i32,
    /// `next->extents` into a list of the shim's (the `sink` of the filter's own `extents`
    /// callback; any other sink fails with `EINVAL`).
    pub extents: extern "C" fn(
        next: NextPtr,
        count: u32,
        offset: u64,
        flags: u32,
        sink: ExtentSink,
        err: &mut i32,
    ) -> i32,
    /// `nbdkit_extents_full`: the extents of the whole range, into `out`.
    pub extents_full: extern "C" fn(
        next: NextPtr,
        count: u32,
        offset: u64,
        flags: u32,
        out: &mut RVec<Extent>,
        err: &mut i32,
    ) -> i32,
    /// `nbdkit_extents_aligned` into a list of the shim's (as for `extents`).
    #[sabi(last_prefix_field)]
    pub extents_aligned: extern "C" fn(
        next: NextPtr,
        count: u32,
        offset: u64,
        flags: u32,
        align: u32,
        sink: ExtentSink,
        err: &mut i32,
    ) -> i32,
    // Services added in later minor versions go here.
}

/// The queries of [`FilterServices::query`]: the one list, `[number name]`, append-only.
/// Everything numbered by it is made from it: [`QUERY_NAMES`], [`query`]'s numbers, the
/// methods of the filter's `Next`, and the shim's forwarding (`__filter_queries!(m ARGS)`
/// calls `m!(ARGS [0 can_write] [1 can_flush] …)`).
#[doc(hidden)]
#[macro_export]
macro_rules! __filter_queries {
    ($then:ident $($args:tt)*) => {
        $then! { $($args)*
            [0 can_write]
            [1 can_flush]
            [2 is_rotational]
            [3 can_trim]
            [4 can_zero]
            [5 can_fast_zero]
            [6 can_extents]
            [7 can_fua]
            [8 can_multi_conn]
            [9 can_cache]
        }
    };
}

/// The range requests of [`FilterServices::range`]: the one list, as [`__filter_queries!`]
/// is the queries'.
#[doc(hidden)]
#[macro_export]
macro_rules! __filter_ranges {
    ($then:ident $($args:tt)*) => {
        $then! { $($args)*
            [0 trim]
            [1 zero]
            [2 cache]
        }
    };
}

/// Declares the names of a numbered list by number, and a module of its numbers by name.
macro_rules! numbered {
    ($(#[$meta:meta])* $names:ident, $module:ident; $([$n:literal $name:ident])*) => {
        $(#[$meta])*
        pub const $names: [&str; [$($n),*].len()] =
            super::table::by_bit([$(($n, stringify!($name))),*]);

        /// The numbers of the list, by name.
        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        pub mod $module {
            $(
                #[doc = concat!("`", stringify!($name), "`.")]
                pub const $name: u32 = $n;
            )*
        }
    };
}

crate::__filter_queries!(numbered
    /// The queries of [`FilterServices::query`], by number (append-only).
    QUERY_NAMES, query;
);
crate::__filter_ranges!(numbered
    /// The range requests of [`FilterServices::range`], by number (append-only).
    RANGE_NAMES, range;
);

/// The table of [`FilterModule`], as `plugin_module!` is [`PluginModule`](super::PluginModule)'s:
/// its static facts, then one entry per callback with its bit number. The order of entries is
/// the ABI's field order. A callback the filter does not define is `None`, and the shim does what
/// nbdkit does for a C filter without it: pass the call to the layer below.
///
/// Adding a callback: append an entry at the end, with the next bit number, as `Option<..>`.
macro_rules! filter_module {
    ($($how:tt)*) => { $crate::abi::table::callback_module! { $($how)*
        /// A filter's root module: what it is and one function pointer per nbdkit filter
        /// callback. Callbacks that take a connection's handle also get the layer below
        /// (`next`), as nbdkit's do.
        #[sabi(kind(Prefix(prefix_ref = FilterModuleRef)))]
        #[sabi(missing_field(option))]
        pub struct FilterModule, names FILTER_CALLBACK_NAMES, strs FILTER_CALLBACK_NAME_STRS {
            /// nbdkit `name` of the Rust filter (the shim registers as `rustshim`).
            pub name: RStr<'static>,
            /// nbdkit `longname`.
            pub longname: ROption<RStr<'static>>,
            /// The filter's version, for `--dump-plugin` and reload messages.
            pub version: ROption<RStr<'static>>,
            /// nbdkit `description`.
            pub description: ROption<RStr<'static>>,
            /// nbdkit `config_help`.
            pub config_help: ROption<RStr<'static>>,
            /// Which callbacks the filter author wrote, as bits numbered by
            /// [`FILTER_CALLBACK_NAMES`].
            pub implemented: u64,
            /// The filter's [`FILTER_CALLBACK_NAMES`], so an older shim can name callbacks it
            /// does not know.
            pub callback_names: RSlice<'static, RStr<'static>>,
            /// `false` when the filter was built with `panic = "abort"`.
            pub panic_unwinds: bool,
            /// How the filter was built (`rustc …; profile=…`).
            pub build_info: RStr<'static>,
        }
        callbacks {
            /// Makes a new instance (the filter's `load`). Writes it to `out`.
            [0 load] create: (extern "C" fn(
                host: HostServicesRef,
                filter: FilterServicesRef,
                out: &mut InstancePtr,
            ) -> i32),
            /// Runs the filter's `unload` and frees the instance.
            [1 unload] destroy: (unsafe extern "C" fn(instance: InstancePtr)),
            /// nbdkit `config`: `next` passes a key on.
            [2] config: (Option<
                unsafe extern "C" fn(
                    instance: InstancePtr,
                    next: LayerNext,
                    key: RStr<'_>,
                    value: RStr<'_>,
                ) -> i32,
            >),
            /// nbdkit `config_complete`.
            [3] config_complete: (Option<unsafe extern "C" fn(instance: InstancePtr, next: LayerNext) -> i32>),
            /// nbdkit `thread_model`: given the layer below's model (-1: this nbdkit does not
            /// say, before 1.44), returns the filter's (0–3) or [`ERROR`](super::ERROR).
            [4] thread_model: (Option<unsafe extern "C" fn(instance: InstancePtr, next_model: i32) -> i32>),
            /// nbdkit `get_ready`, with the final thread model.
            [5] get_ready: (Option<unsafe extern "C" fn(instance: InstancePtr, thread_model: i32) -> i32>),
            /// nbdkit `after_fork`.
            [6] after_fork: (Option<unsafe extern "C" fn(instance: InstancePtr, backend: BackendPtr) -> i32>),
            /// nbdkit `cleanup`.
            [7] cleanup: (Option<unsafe extern "C" fn(instance: InstancePtr, backend: BackendPtr)>),
            /// nbdkit `dump_plugin` (called by nbdkit ≥ 1.36 only).
            [8] dump_plugin: (Option<unsafe extern "C" fn(instance: InstancePtr, sink: DumpSink)>),
            /// nbdkit `preconnect`.
            [9] preconnect: (Option<
                unsafe extern "C" fn(instance: InstancePtr, next: LayerNext, readonly: bool) -> i32,
            >),
            /// nbdkit `list_exports`.
            [10] list_exports: (Option<
                unsafe extern "C" fn(
                    instance: InstancePtr,
                    next: LayerNext,
                    readonly: bool,
                    is_tls: bool,
                    sink: ExportSink,
                ) -> i32,
            >),
            /// nbdkit `default_export`.
            [11] default_export: (Option<
                unsafe extern "C" fn(
                    instance: InstancePtr,
                    next: LayerNext,
                    readonly: bool,
                    is_tls: bool,
                    out: &mut RString,
                ) -> i32,
            >),
            /// nbdkit `open`: writes the new handle to `out` (always present: a filter without
            /// `open` gets one that opens the layer below unchanged).
            [12] open: (unsafe extern "C" fn(
                instance: InstancePtr,
                next: LayerNext,
                readonly: bool,
                export_name: RStr<'_>,
                is_tls: bool,
                out: &mut HandlePtr,
            ) -> i32),
            /// nbdkit `close`: releases the handle (always present).
            [13] close: (unsafe extern "C" fn(instance: InstancePtr, handle: HandlePtr)),
            /// nbdkit `prepare`.
            [14] prepare: (Option<
                unsafe extern "C" fn(instance: InstancePtr, handle: HandlePtr, next: NextPtr, readonly: bool) -> i32,
            >),
            /// nbdkit `finalize`.
            [15] finalize: (Option<unsafe extern "C" fn(instance: InstancePtr, handle: HandlePtr, next: NextPtr) -> i32>),
            /// nbdkit `get_size`.
            [16] get_size: (Option<
                unsafe extern "C" fn(instance: InstancePtr, handle: HandlePtr, next: NextPtr, out: &mut u64) -> i32,
            >),
            /// nbdkit `export_description`.
            [17] export_description: (Option<
                unsafe extern "C" fn(instance: InstancePtr, handle: HandlePtr, next: NextPtr, out: &mut RString) -> i32,
            >),
            /// nbdkit `block_size`.
            [18] block_size: (Option<
                unsafe extern "C" fn(
                    instance: InstancePtr,
                    handle: HandlePtr,
                    next: NextPtr,
                    minimum: &mut u32,
                    preferred: &mut u32,
                    maximum: &mut u32,
                ) -> i32,
            >),
            /// nbdkit `can_write`: 1, 0 or [`ERROR`](super::ERROR).
            [19] can_write: (Option<unsafe extern "C" fn(instance: InstancePtr, handle: HandlePtr, next: NextPtr) -> i32>),
            /// nbdkit `can_flush`.
            [20] can_flush: (Option<unsafe extern "C" fn(instance: InstancePtr, handle: HandlePtr, next: NextPtr) -> i32>),
            /// nbdkit `is_rotational`.
            [21] is_rotational: (Option<unsafe extern "C" fn(instance: InstancePtr, handle: HandlePtr, next: NextPtr) -> i32>),
            /// nbdkit `can_trim`.
            [22] can_trim: (Option<unsafe extern "C" fn(instance: InstancePtr, handle: HandlePtr, next: NextPtr) -> i32>),
            /// nbdkit `can_zero`: 0 none, 1 emulate, 2 native.
            [23] can_zero: (Option<unsafe extern "C" fn(instance: InstancePtr, handle: HandlePtr, next: NextPtr) -> i32>),
            /// nbdkit `can_fast_zero`.
            [24] can_fast_zero: (Option<unsafe extern "C" fn(instance: InstancePtr, handle: HandlePtr, next: NextPtr) -> i32>),
            /// nbdkit `can_extents`.
            [25] can_extents: (Option<unsafe extern "C" fn(instance: InstancePtr, handle: HandlePtr, next: NextPtr) -> i32>),
            /// nbdkit `can_fua`: 0 none, 1 emulate, 2 native.
            [26] can_fua: (Option<unsafe extern "C" fn(instance: InstancePtr, handle: HandlePtr, next: NextPtr) -> i32>),
            /// nbdkit `can_multi_conn`.
            [27] can_multi_conn: (Option<unsafe extern "C" fn(instance: InstancePtr, handle: HandlePtr, next: NextPtr) -> i32>),
            /// nbdkit `can_cache`: 0 none, 1 emulate, 2 native.
            [28] can_cache: (Option<unsafe extern "C" fn(instance: InstancePtr, handle: HandlePtr, next: NextPtr) -> i32>),
            /// nbdkit `pread`: fills `count` bytes at `buf`.
            [29] pread: (Option<
                unsafe extern "C" fn(
                    instance: InstancePtr,
                    handle: HandlePtr,
                    next: NextPtr,
                    buf: *mut u8,
                    count: u32,
                    offset: u64,
                    flags: u32,
                ) -> i32,
            >),
            /// nbdkit `pwrite`: writes `count` bytes from `buf`.
            [30] pwrite: (Option<
                unsafe extern "C" fn(
                    instance: InstancePtr,
                    handle: HandlePtr,
                    next: NextPtr,
                    buf: *const u8,
                    count: u32,
                    offset: u64,
                    flags: u32,
                ) -> i32,
            >),
            /// nbdkit `flush`.
            [31] flush: (Option<
                unsafe extern "C" fn(instance: InstancePtr, handle: HandlePtr, next: NextPtr, flags: u32) -> i32,
            >),
            /// nbdkit `trim`.
            [32] trim: (Option<
                unsafe extern "C" fn(
                    instance: InstancePtr,
                    handle: HandlePtr,
                    next: NextPtr,
                    count: u32,
                    offset: u64,
                    flags: u32,
                ) -> i32,
            >),
            /// nbdkit `zero`.
            [33] zero: (Option<
                unsafe extern "C" fn(
                    instance: InstancePtr,
                    handle: HandlePtr,
                    next: NextPtr,
                    count: u32,
                    offset: u64,
                    flags: u32,
                ) -> i32,
            >),
            /// nbdkit `extents`: `sink` adds to nbdkit's list of this request.
            [34] extents: (Option<
                unsafe extern "C" fn(
                    instance: InstancePtr,
                    handle: HandlePtr,
                    next: NextPtr,
                    count: u32,
                    offset: u64,
                    flags: u32,
                    sink: ExtentSink,
                ) -> i32,
            >),
            /// nbdkit `cache`.
            [35] cache: (Option<
                unsafe extern "C" fn(
                    instance: InstancePtr,
                    handle: HandlePtr,
                    next: NextPtr,
                    count: u32,
                    offset: u64,
                    flags: u32,
                ) -> i32,
            >),
            /// Hot reload: the state this instance hands to its successor.
            [36] hand_over: (Option<unsafe extern "C" fn(instance: InstancePtr, out: &mut ROption<Handover>) -> i32>),
            /// Hot reload: adopts a predecessor's state; 1 adopted, 0 not (released).
            #[sabi(last_prefix_field)]
            [37] take_over: (Option<unsafe extern "C" fn(instance: InstancePtr, state: Handover) -> i32>),
            // Callbacks added in later minor versions go here (`Option`, the next bit number).
        }
    } };
}
pub(crate) use filter_module;

filter_module!(declare);

impl RootModule for FilterModuleRef {
    declare_root_module_statics! {FilterModuleRef}
    const BASE_NAME: &'static str = "rustshim_filter";
    const NAME: &'static str = "rustshim_filter";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
