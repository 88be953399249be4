//! nbdkit's C ABI as the shim sees it: `#[repr(C)]` mirrors of `struct nbdkit_plugin`
//! (`<nbdkit-plugin.h>`, API version 2), of `struct nbdkit_filter` in its two layouts and of
//! `struct nbdkit_next_ops` (`<nbdkit-filter.h>`), each checked field by field against the real
//! headers by unit tests, and nbdkit's server functions, looked up in the running server
//! ([`server`]).

use std::ffi::{c_char, c_int, c_void};

mod server;

pub use server::{cstring_lossy, debug, error, server, set_errno, ServerApi};

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
/// compiler measures in the real header. `build.rs` reads the same declaration (see
/// `plugin_struct.rs`).
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

include!("nbdkit_c/plugin_struct.rs");
include!("nbdkit_c/filter_struct.rs");

/// The registered struct: nbdkit reads it once from `plugin_init` and never frees it.
pub struct Registration(pub NbdkitPlugin);
// SAFETY: the struct is immutable after construction and its pointers refer to static data
// (string literals, or strings leaked for the process), so any thread may hold or read it.
unsafe impl Sync for Registration {}
// SAFETY: as above.
unsafe impl Send for Registration {}

#[cfg(test)]
mod layout_tests {
    use super::{NbdkitFilter132, NbdkitFilter136, NbdkitNextOps, NbdkitPlugin};

    /// A field list that `build.rs` compiled against a header.
    #[repr(C)]
    struct CField {
        name: *const std::ffi::c_char,
        offset: usize,
    }

    /// The size and the fields `build.rs` measured, from its symbols `PREFIX_size`,
    /// `PREFIX_fields` and `PREFIX_field_count`.
    macro_rules! c_layout {
        ($size:ident, $fields:ident, $count:ident) => {{
            extern "C" {
                static $size: usize;
                static $fields: CField;
                static $count: usize;
            }
            // SAFETY: constant data compiled by build.rs: an array of `$count` fields whose
            // names are string literals.
            unsafe {
                let fields = std::slice::from_raw_parts(&$fields as *const CField, $count);
                let fields: Vec<(String, usize)> = fields
                    .iter()
                    .map(|f| {
                        let name = std::ffi::CStr::from_ptr(f.name);
                        (name.to_string_lossy().into_owned(), f.offset)
                    })
                    .collect();
                ($size, fields)
            }
        }};
    }

    /// Compares a mirror's fields (name, offset) and size with what the C compiler measured.
    fn compare(
        what: &str,
        mirror: &[(&str, usize)],
        size: usize,
        c: (usize, Vec<(String, usize)>),
    ) {
        let (c_size, c_fields) = c;
        assert_eq!(mirror.len(), c_fields.len(), "{what}: number of fields");
        for (name, offset) in mirror {
            let c_offset = c_fields.iter().find(|(n, _)| n == name).map(|f| f.1);
            assert_eq!(Some(*offset), c_offset, "{what}: offset of {name}");
        }
        assert_eq!(
            size, c_size,
            "{what}: sizeof: a field at the end is missing or extra"
        );
    }

    #[cfg(rustshim_nbdkit_header)]
    #[test]
    fn plugin_struct_matches_the_installed_header() {
        let c = c_layout!(
            rustshim_c_plugin_size,
            rustshim_c_plugin_fields,
            rustshim_c_plugin_field_count
        );
        compare(
            "struct nbdkit_plugin",
            NbdkitPlugin::FIELDS,
            std::mem::size_of::<NbdkitPlugin>(),
            c,
        );
    }

    #[cfg(not(rustshim_nbdkit_header))]
    #[test]
    fn plugin_struct_matches_the_installed_header() {
        let _ = NbdkitPlugin::FIELDS;
        panic!("/usr/include/nbdkit-plugin.h was not found when building: install nbdkit-plugin-dev (cargo xtask test does)");
    }

    /// One nbdkit's header: the filter struct in the layout of its version, and next_ops.
    macro_rules! filter_header_test {
        ($test:ident, $tag:literal, $minor:ident, $fs:ident, $ff:ident, $fc:ident, $ns:ident, $nf:ident, $nc:ident, $expect:literal) => {
            #[test]
            fn $test() {
                #[cfg(rustshim_filter_header = $tag)]
                {
                    extern "C" {
                        static $minor: u32;
                    }
                    // SAFETY: a constant compiled by build.rs.
                    let minor = unsafe { $minor };
                    assert_eq!(minor, $expect, "the header of nbdkit 1.{}", $expect);
                    let c = c_layout!($fs, $ff, $fc);
                    let what = format!("struct nbdkit_filter of nbdkit 1.{minor}");
                    if minor < 36 {
                        let size = std::mem::size_of::<NbdkitFilter132>();
                        compare(&what, NbdkitFilter132::FIELDS, size, c);
                    } else {
                        let size = std::mem::size_of::<NbdkitFilter136>();
                        compare(&what, NbdkitFilter136::FIELDS, size, c);
                    }
                    let size = std::mem::size_of::<NbdkitNextOps>();
                    let what = format!("struct nbdkit_next_ops of nbdkit 1.{minor}");
                    compare(&what, NbdkitNextOps::FIELDS, size, c_layout!($ns, $nf, $nc));
                }
                #[cfg(not(rustshim_filter_header = $tag))]
                panic!(
                    "the nbdkit-filter.h of nbdkit 1.{} ({}) was not found when building: install nbdkit-plugin-dev, and make the Debian roots with cargo xtask roots",
                    $expect, $tag
                );
            }
        };
    }

    filter_header_test!(
        filter_structs_match_the_header_of_nbdkit_1_32,
        "host",
        rustshim_c_filter_host_minor,
        rustshim_c_filter_host_size,
        rustshim_c_filter_host_fields,
        rustshim_c_filter_host_field_count,
        rustshim_c_next_ops_host_size,
        rustshim_c_next_ops_host_fields,
        rustshim_c_next_ops_host_field_count,
        32
    );
    filter_header_test!(
        filter_structs_match_the_header_of_nbdkit_1_42,
        "trixie",
        rustshim_c_filter_trixie_minor,
        rustshim_c_filter_trixie_size,
        rustshim_c_filter_trixie_fields,
        rustshim_c_filter_trixie_field_count,
        rustshim_c_next_ops_trixie_size,
        rustshim_c_next_ops_trixie_fields,
        rustshim_c_next_ops_trixie_field_count,
        42
    );
    filter_header_test!(
        filter_structs_match_the_header_of_nbdkit_1_48,
        "forky",
        rustshim_c_filter_forky_minor,
        rustshim_c_filter_forky_size,
        rustshim_c_filter_forky_fields,
        rustshim_c_filter_forky_field_count,
        rustshim_c_next_ops_forky_size,
        rustshim_c_next_ops_forky_fields,
        rustshim_c_next_ops_forky_field_count,
        48
    );

    #[test]
    fn the_older_filter_layout_is_the_newer_without_dump_plugin() {
        let old: Vec<&str> = NbdkitFilter132::FIELDS.iter().map(|f| f.0).collect();
        let new: Vec<&str> = NbdkitFilter136::FIELDS.iter().map(|f| f.0).collect();
        let expected: Vec<&str> = new
            .iter()
            .copied()
            .filter(|f| *f != "dump_plugin")
            .collect();
        assert_eq!(old, expected);
        assert_eq!(std::mem::size_of::<NbdkitFilter132>(), 328);
        assert_eq!(std::mem::size_of::<NbdkitFilter136>(), 336);
    }
}
