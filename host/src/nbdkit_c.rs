//! nbdkit's C ABI as the shim sees it: a `#[repr(C)]` mirror of `struct nbdkit_plugin`
//! (`<nbdkit-plugin.h>`, API version 2; checked against the installed header by a unit test)
//! and nbdkit's server functions, looked up in the running server ([`server`]).

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

/// Opaque `struct nbdkit_exports`.
#[repr(C)]
pub struct NbdkitExports {
    _private: [u8; 0],
}

/// A connection's `void *handle`: whatever the plugin's `open` returned.
pub type Handle = *mut c_void;
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

include!("nbdkit_c/plugin_struct.rs");

/// The registered struct: nbdkit reads it once from `plugin_init` and never frees it.
pub struct Registration(pub NbdkitPlugin);
// SAFETY: the struct is immutable after construction and its pointers refer to static data
// (string literals, or strings leaked for the process), so any thread may hold or read it.
unsafe impl Sync for Registration {}
// SAFETY: as above.
unsafe impl Send for Registration {}

#[cfg(test)]
mod layout_tests {
    use super::NbdkitPlugin;

    /// What `build.rs` compiled from `plugin_struct.rs` against `<nbdkit-plugin.h>`.
    #[cfg(rustshim_nbdkit_header)]
    fn c_layout() -> (usize, Vec<(String, usize)>) {
        use std::ffi::{c_char, CStr};
        #[repr(C)]
        struct CField {
            name: *const c_char,
            offset: usize,
        }
        extern "C" {
            static rustshim_c_plugin_size: usize;
            static rustshim_c_plugin_fields: CField;
            static rustshim_c_plugin_field_count: usize;
        }
        // SAFETY: constant data compiled by build.rs: an array of `rustshim_c_plugin_field_count`
        // fields whose names are string literals.
        unsafe {
            let fields = std::slice::from_raw_parts(
                &rustshim_c_plugin_fields as *const CField,
                rustshim_c_plugin_field_count,
            );
            let fields = fields
                .iter()
                .map(|f| {
                    let name = CStr::from_ptr(f.name).to_string_lossy().into_owned();
                    (name, f.offset)
                })
                .collect();
            (rustshim_c_plugin_size, fields)
        }
    }

    #[cfg(rustshim_nbdkit_header)]
    #[test]
    fn plugin_struct_matches_the_installed_header() {
        let (c_size, c_fields) = c_layout();
        for (name, offset) in NbdkitPlugin::FIELDS {
            let c_offset = c_fields.iter().find(|(n, _)| n == name).map(|f| f.1);
            assert_eq!(Some(*offset), c_offset, "offset of {name}");
        }
        assert_eq!(
            std::mem::size_of::<NbdkitPlugin>(),
            c_size,
            "sizeof(struct nbdkit_plugin): a field at the end is missing or extra"
        );
    }

    #[cfg(not(rustshim_nbdkit_header))]
    #[test]
    fn plugin_struct_matches_the_installed_header() {
        let _ = NbdkitPlugin::FIELDS;
        panic!("/usr/include/nbdkit-plugin.h was not found when building: install nbdkit-plugin-dev (cargo xtask test does)");
    }
}
