//! The `#[repr(C)]` mirrors of nbdkit's structs (`plugin_struct.rs`, `filter_struct.rs`), its
//! constants and its function pointer types, as `<nbdkit-plugin.h>` and `<nbdkit-filter.h>`
//! declare them.

use std::ffi::{c_char, c_int, c_void};

/// `NBDKIT_API_VERSION`.
pub const API_VERSION: c_int = 2;
/// `NBDKIT_THREAD_MODEL_PARALLEL`.
pub const THREAD_MODEL_PARALLEL: c_int = 3;
/// `NBDKIT_FLAG_FUA`.
pub const FLAG_FUA: u32 = 1 << 1;
/// `NBDKIT_FLAG_FAST_ZERO`.
pub const FLAG_FAST_ZERO: u32 = 1 << 3;
/// `NBDKIT_FUA_NONE` / `_EMULATE`.
pub const FUA_NONE: c_int = 0;
pub const FUA_EMULATE: c_int = 1;
/// `NBDKIT_CACHE_NONE` / `_NATIVE`.
pub const CACHE_NONE: c_int = 0;
pub const CACHE_NATIVE: c_int = 2;
/// The largest `pread`/`pwrite` nbdkit issues (`MAX_REQUEST_SIZE`).
pub const MAX_REQUEST_SIZE: usize = 64 << 20;

/// Opaque `struct nbdkit_extents`.
#[repr(C)]
pub struct NbdkitExtents {
    _private: [u8; 0],
}

/// `struct nbdkit_extent`, as `nbdkit_get_extent` returns it.
#[repr(C)]
#[derive(Copy, Clone, Debug)]
pub struct NbdkitExtent {
    pub offset: u64,
    pub length: u64,
    pub type_: u32,
}

/// `struct nbdkit_export`, as `nbdkit_get_export` returns it (strings owned by the list).
#[repr(C)]
#[derive(Copy, Clone, Debug)]
pub struct NbdkitExport {
    pub name: *mut c_char,
    pub description: *mut c_char,
}

/// Opaque `struct nbdkit_exports`.
#[repr(C)]
pub struct NbdkitExports {
    _private: [u8; 0],
}

/// A connection's `void *handle`: whatever the plugin's (or filter's) `open` returned.
pub type Handle = *mut c_void;
/// Opaque `nbdkit_backend *` (a filter's layer below, outside a connection).
pub type Backend = *mut c_void;
/// Opaque `nbdkit_context *` (a filter's context of one connection).
pub type Context = *mut c_void;
/// `nbdkit_next *`: the layer below of one connection.
pub type Next = *mut NbdkitNextOps;
/// `nbdkit_next_config`.
pub type NextConfigFn = unsafe extern "C" fn(Backend, *const c_char, *const c_char) -> c_int;
/// `nbdkit_next_config_complete`.
pub type NextConfigCompleteFn = unsafe extern "C" fn(Backend) -> c_int;
/// `nbdkit_next_preconnect`.
pub type NextPreconnectFn = unsafe extern "C" fn(Backend, c_int) -> c_int;
/// `nbdkit_next_list_exports`.
pub type NextListExportsFn = unsafe extern "C" fn(Backend, c_int, *mut NbdkitExports) -> c_int;
/// `nbdkit_next_default_export`.
pub type NextDefaultExportFn = unsafe extern "C" fn(Backend, c_int) -> *const c_char;
/// `nbdkit_next_open`.
pub type NextOpenFn = unsafe extern "C" fn(Context, c_int, *const c_char) -> c_int;
/// `int (*) (nbdkit_next *next, void *handle)`: a filter's `can_*`, `finalize`.
pub type FilterQueryFn = unsafe extern "C" fn(Next, Handle) -> c_int;
/// A filter's `trim`, `zero`, `cache`.
pub type FilterRangeFn = unsafe extern "C" fn(Next, Handle, u32, u64, u32, *mut c_int) -> c_int;
/// `int (*) (nbdkit_next *)`: `next->can_*`, `prepare`, `finalize`.
pub type NextStatusFn = unsafe extern "C" fn(Next) -> c_int;
/// `next->trim`, `zero`, `cache`.
pub type NextRangeFn = unsafe extern "C" fn(Next, u32, u64, u32, *mut c_int) -> c_int;
/// `NBDKIT_FILTER_API_VERSION`.
pub const FILTER_API_VERSION: c_int = 6;
/// `void (*) (void)`: `load`, `unload`, `dump_plugin`, `cleanup`.
pub type VoidFn = unsafe extern "C" fn();
/// `int (*) (void)`: `config_complete`, `thread_model`, `get_ready`, `after_fork`.
pub type StatusFn = unsafe extern "C" fn() -> c_int;
/// `int (*) (void *handle)`: the `can_*` callbacks and `is_rotational`.
pub type QueryFn = unsafe extern "C" fn(Handle) -> c_int;
/// `int (*) (void *handle, uint32_t count, uint64_t offset, uint32_t flags)`: `trim`, `zero`,
/// `cache`.
pub type RangeFn = unsafe extern "C" fn(Handle, u32, u64, u32) -> c_int;

/// Declares a `#[repr(C)]` mirror of a C struct, its fields named as in the C header, and
/// `FIELDS`: each field's name and offset, for the unit test that compares them with what the C
/// compiler measures in the real header.
macro_rules! c_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident = $c_name:ident {
            $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)*
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl $name {
            /// Every field's name (as in the C header) and offset.
            pub const FIELDS: &'static [(&'static str, usize)] =
                &[$((stringify!($field), std::mem::offset_of!($name, $field))),*];
        }
    };
}

/// Declares the two layouts of `struct nbdkit_filter` from one list (`filter_struct.rs`): the
/// newer (`$new`) with every field, the older (`$old`) without the fields marked `[since]`, and
/// `$new::without_newer` to turn one into the other. Both get `FIELDS` (see [`c_struct!`]).
macro_rules! filter_struct {
    (
        $(#[$meta:meta])*
        pub struct $old:ident, $new:ident = $c_name:ident { $($fields:tt)* }
    ) => {
        filter_struct!(@split [$(#[$meta])*] $old $new $c_name [] [] $($fields)*);
    };
    // A field newer than the old layout: only in the new one.
    (@split $meta:tt $old:ident $new:ident $c_name:ident [$($o:tt)*] [$($n:tt)*]
        $(#[$fmeta:meta])* [$since:literal] pub $field:ident: $ty:ty, $($rest:tt)*
    ) => {
        filter_struct!(@split $meta $old $new $c_name [$($o)*]
            [$($n)* $(#[$fmeta])* pub $field: $ty,] $($rest)*);
    };
    // A field of both.
    (@split $meta:tt $old:ident $new:ident $c_name:ident [$($o:tt)*] [$($n:tt)*]
        $(#[$fmeta:meta])* pub $field:ident: $ty:ty, $($rest:tt)*
    ) => {
        filter_struct!(@split $meta $old $new $c_name [$($o)* $(#[$fmeta])* pub $field: $ty,]
            [$($n)* $(#[$fmeta])* pub $field: $ty,] $($rest)*);
    };
    (@split [$($meta:tt)*] $old:ident $new:ident $c_name:ident
        [$($(#[$ometa:meta])* pub $ofield:ident: $oty:ty,)*] [$($n:tt)*]
    ) => {
        c_struct! { $($meta)* pub struct $old = $c_name { $($(#[$ometa])* pub $ofield: $oty,)* } }
        c_struct! { $($meta)* pub struct $new = $c_name { $($n)* } }

        impl $new {
            /// The same struct in the older layout (the newer fields left out).
            pub fn without_newer(&self) -> $old {
                $old { $($ofield: self.$ofield,)* }
            }
        }
    };
}

include!("plugin_struct.rs");
include!("filter_struct.rs");

/// The registered struct: nbdkit reads it once from `plugin_init` and never frees it.
pub struct Registration(pub NbdkitPlugin);
// SAFETY: the struct is immutable after construction and its pointers refer to static data
// (string literals, or strings leaked for the process), so any thread may hold or read it.
unsafe impl Sync for Registration {}
// SAFETY: as above.
unsafe impl Send for Registration {}
