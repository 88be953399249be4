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
    //! The mirrors against nbdkit's real headers, measured when the tests run (not when the
    //! shim is built, so the result cannot depend on which headers a machine had at build
    //! time): each test writes a small C program that prints the struct's size and its fields'
    //! offsets, compiles it with the system's `cc` against one nbdkit's headers and reads what
    //! it prints. The headers are the host's (`/usr/include`, Debian 12's nbdkit 1.32) and those
    //! of the Debian roots `cargo xtask roots` makes (trixie's 1.42, forky's 1.48), in
    //! `$RUSTSHIM_ROOTS` or `/var/cache/rustshim/roots`.

    use std::path::{Path, PathBuf};
    use std::process::Command;

    use super::{NbdkitFilter132, NbdkitFilter136, NbdkitNextOps, NbdkitPlugin};

    /// A struct as one header has it: `NBDKIT_VERSION_MINOR`, its size and its fields' offsets.
    struct Measured {
        minor: u32,
        size: usize,
        fields: Vec<(String, usize)>,
    }

    /// Measures `struct c_struct`'s `fields` in the headers under `include`, after `#include`
    /// of `header`.
    fn measure(include: &Path, header: &str, c_struct: &str, fields: &[&str]) -> Measured {
        let found = include.join(header);
        assert!(
            found.exists(),
            "{} is missing: install nbdkit-plugin-dev, and make the Debian roots with `cargo xtask roots` (cargo xtask test does both)",
            found.display()
        );
        let mut c = format!(
            "#include <stddef.h>\n#include <stdio.h>\n#define NBDKIT_API_VERSION 2\n\
             #include <{header}>\n#include <nbdkit-version.h>\nint main (void) {{\n\
             printf (\"minor %d\\n\", NBDKIT_VERSION_MINOR);\n\
             printf (\"size %zu\\n\", sizeof (struct {c_struct}));\n"
        );
        for field in fields {
            c += &format!("printf (\"{field} %zu\\n\", offsetof (struct {c_struct}, {field}));\n");
        }
        c += "return 0;\n}\n";
        let dir = std::env::temp_dir().join(format!(
            "rustshim-layout-{}-{c_struct}-{}",
            std::process::id(),
            include.display().to_string().replace('/', "_")
        ));
        std::fs::create_dir_all(&dir).expect("creating the layout test's directory");
        let source = dir.join("layout.c");
        let program = dir.join("layout");
        std::fs::write(&source, c).expect("writing layout.c");
        // Newer nbdkits' headers have declarations today's gcc warns about: -w.
        let compiled = Command::new("cc")
            .arg("-w")
            .arg("-I")
            .arg(include)
            .arg(&source)
            .arg("-o")
            .arg(&program)
            .output()
            .expect("running cc");
        let ran = compiled.status.success().then(|| {
            Command::new(&program)
                .output()
                .expect("running the layout program")
        });
        std::fs::remove_dir_all(&dir).expect("removing the layout test's directory");
        assert!(
            compiled.status.success(),
            "cc could not measure struct {c_struct} in {}:\n{}",
            include.display(),
            String::from_utf8_lossy(&compiled.stderr)
        );
        let out = String::from_utf8(ran.expect("compiled").stdout).expect("ASCII output");
        let mut lines = out.lines().map(|l| {
            let (name, value) = l.split_once(' ').expect("NAME VALUE");
            (name.to_string(), value.parse::<usize>().expect("a number"))
        });
        let (_, minor) = lines.next().expect("the minor version");
        let (_, size) = lines.next().expect("the size");
        Measured {
            minor: minor.try_into().expect("a small minor version"),
            size,
            fields: lines.collect(),
        }
    }

    /// Where `cargo xtask roots` keeps the Debian roots (as `cargo_rustshim::roots::dir`).
    fn roots() -> PathBuf {
        std::env::var_os("RUSTSHIM_ROOTS")
            .map_or_else(|| PathBuf::from("/var/cache/rustshim/roots"), PathBuf::from)
    }

    fn names(fields: &[(&'static str, usize)]) -> Vec<&'static str> {
        fields.iter().map(|(name, _)| *name).collect()
    }

    /// Compares a mirror's fields (name, offset) and size with what the C compiler measured.
    fn compare(what: &str, mirror: &[(&str, usize)], size: usize, c: &Measured) {
        assert_eq!(mirror.len(), c.fields.len(), "{what}: number of fields");
        for (name, offset) in mirror {
            let c_offset = c.fields.iter().find(|(n, _)| n == name).map(|f| f.1);
            assert_eq!(Some(*offset), c_offset, "{what}: offset of {name}");
        }
        assert_eq!(
            size, c.size,
            "{what}: sizeof: a field at the end is missing or extra"
        );
    }

    #[test]
    fn plugin_struct_matches_the_installed_header() {
        let fields = names(NbdkitPlugin::FIELDS);
        let c = measure(
            Path::new("/usr/include"),
            "nbdkit-plugin.h",
            "nbdkit_plugin",
            &fields,
        );
        let size = std::mem::size_of::<NbdkitPlugin>();
        compare("struct nbdkit_plugin", NbdkitPlugin::FIELDS, size, &c);
    }

    /// The filter struct in the layout of the header's version, and next_ops, against the
    /// headers under `include`, which must be nbdkit 1.`expect`'s.
    fn filter_structs_match(include: &Path, expect: u32) {
        let (mirror, size) = if expect < 36 {
            let size = std::mem::size_of::<NbdkitFilter132>();
            (NbdkitFilter132::FIELDS, size)
        } else {
            (
                NbdkitFilter136::FIELDS,
                std::mem::size_of::<NbdkitFilter136>(),
            )
        };
        let c = measure(include, "nbdkit-filter.h", "nbdkit_filter", &names(mirror));
        assert_eq!(
            c.minor,
            expect,
            "the header in {} is nbdkit 1.{expect}'s",
            include.display()
        );
        compare(
            &format!("struct nbdkit_filter of nbdkit 1.{expect}"),
            mirror,
            size,
            &c,
        );
        let next_ops = names(NbdkitNextOps::FIELDS);
        let c = measure(include, "nbdkit-filter.h", "nbdkit_next_ops", &next_ops);
        let size = std::mem::size_of::<NbdkitNextOps>();
        let what = format!("struct nbdkit_next_ops of nbdkit 1.{expect}");
        compare(&what, NbdkitNextOps::FIELDS, size, &c);
    }

    #[test]
    fn filter_structs_match_the_header_of_nbdkit_1_32() {
        filter_structs_match(Path::new("/usr/include"), 32);
    }

    #[test]
    fn filter_structs_match_the_header_of_nbdkit_1_42() {
        filter_structs_match(&roots().join("trixie/usr/include"), 42);
    }

    #[test]
    fn filter_structs_match_the_header_of_nbdkit_1_48() {
        filter_structs_match(&roots().join("forky/usr/include"), 48);
    }

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
