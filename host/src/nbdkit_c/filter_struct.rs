// `struct nbdkit_filter` and `struct nbdkit_next_ops` as the shim declares them: the one list
// of their fields. Included, like `plugin_struct.rs`: `nbdkit_c.rs` turns it into
// the `#[repr(C)]` mirrors and their field offsets, and unit tests (`layout_tests` there)
// compare them field by field with the real structs, measured by the C compiler in each nbdkit's
// header (the host's 1.32, and 1.42 and 1.48 of the Debian roots).
//
// A field marked `[1.36]` exists from nbdkit 1.36 on: `filter_struct!` declares the struct twice,
// without those fields (nbdkit 1.32 to 1.35) and with them (1.36 to 1.48).
filter_struct! {
    /// `struct nbdkit_filter` of `<nbdkit-filter.h>` (`NBDKIT_FILTER_API_VERSION` 6), field for
    /// field, with the header's names: `NbdkitFilter132` as nbdkit 1.32 to 1.35 have it,
    /// `NbdkitFilter136` as nbdkit 1.36 to 1.48 do. `thread_model` takes the next layer's model
    /// from nbdkit 1.44 (before, nbdkit passes nothing and the argument is garbage).
    pub struct NbdkitFilter132, NbdkitFilter136 = nbdkit_filter {
        pub _api_version: c_int,
        pub _version: *const c_char,
        pub name: *const c_char,
        pub longname: *const c_char,
        pub description: *const c_char,
        pub load: Option<VoidFn>,
        pub unload: Option<VoidFn>,
        pub config: Option<unsafe extern "C" fn(Option<NextConfigFn>, Backend, *const c_char, *const c_char) -> c_int>,
        pub config_complete: Option<unsafe extern "C" fn(Option<NextConfigCompleteFn>, Backend) -> c_int>,
        pub config_help: *const c_char,
        pub thread_model: Option<unsafe extern "C" fn(c_int) -> c_int>,
        [1.36] pub dump_plugin: Option<VoidFn>,
        pub get_ready: Option<unsafe extern "C" fn(c_int) -> c_int>,
        pub after_fork: Option<unsafe extern "C" fn(Backend) -> c_int>,
        pub cleanup: Option<unsafe extern "C" fn(Backend)>,
        pub preconnect: Option<unsafe extern "C" fn(Option<NextPreconnectFn>, Backend, c_int) -> c_int>,
        pub list_exports: Option<unsafe extern "C" fn(Option<NextListExportsFn>, Backend, c_int, c_int, *mut NbdkitExports) -> c_int>,
        pub default_export: Option<unsafe extern "C" fn(Option<NextDefaultExportFn>, Backend, c_int, c_int) -> *const c_char>,
        pub open: Option<unsafe extern "C" fn(Option<NextOpenFn>, Context, c_int, *const c_char, c_int) -> Handle>,
        pub close: Option<unsafe extern "C" fn(Handle)>,
        pub prepare: Option<unsafe extern "C" fn(Next, Handle, c_int) -> c_int>,
        pub finalize: Option<FilterQueryFn>,
        pub get_size: Option<unsafe extern "C" fn(Next, Handle) -> i64>,
        pub export_description: Option<unsafe extern "C" fn(Next, Handle) -> *const c_char>,
        pub block_size: Option<unsafe extern "C" fn(Next, Handle, *mut u32, *mut u32, *mut u32) -> c_int>,
        pub can_write: Option<FilterQueryFn>,
        pub can_flush: Option<FilterQueryFn>,
        pub is_rotational: Option<FilterQueryFn>,
        pub can_trim: Option<FilterQueryFn>,
        pub can_zero: Option<FilterQueryFn>,
        pub can_fast_zero: Option<FilterQueryFn>,
        pub can_extents: Option<FilterQueryFn>,
        pub can_fua: Option<FilterQueryFn>,
        pub can_multi_conn: Option<FilterQueryFn>,
        pub can_cache: Option<FilterQueryFn>,
        pub pread: Option<unsafe extern "C" fn(Next, Handle, *mut c_void, u32, u64, u32, *mut c_int) -> c_int>,
        pub pwrite: Option<unsafe extern "C" fn(Next, Handle, *const c_void, u32, u64, u32, *mut c_int) -> c_int>,
        pub flush: Option<unsafe extern "C" fn(Next, Handle, u32, *mut c_int) -> c_int>,
        pub trim: Option<FilterRangeFn>,
        pub zero: Option<FilterRangeFn>,
        pub extents: Option<unsafe extern "C" fn(Next, Handle, u32, u64, u32, *mut NbdkitExtents, *mut c_int) -> c_int>,
        pub cache: Option<FilterRangeFn>,
    }
}

c_struct! {
    /// `struct nbdkit_next_ops` (what `nbdkit_next *` points to), the same in nbdkit 1.32 to
    /// 1.48. nbdkit's real object is larger: only ever use pointers nbdkit gives.
    pub struct NbdkitNextOps = nbdkit_next_ops {
        pub prepare: Option<NextStatusFn>,
        pub finalize: Option<NextStatusFn>,
        pub get_size: Option<unsafe extern "C" fn(Next) -> i64>,
        pub export_description: Option<unsafe extern "C" fn(Next) -> *const c_char>,
        pub block_size: Option<unsafe extern "C" fn(Next, *mut u32, *mut u32, *mut u32) -> c_int>,
        pub can_write: Option<NextStatusFn>,
        pub can_flush: Option<NextStatusFn>,
        pub is_rotational: Option<NextStatusFn>,
        pub can_trim: Option<NextStatusFn>,
        pub can_zero: Option<NextStatusFn>,
        pub can_fast_zero: Option<NextStatusFn>,
        pub can_extents: Option<NextStatusFn>,
        pub can_fua: Option<NextStatusFn>,
        pub can_multi_conn: Option<NextStatusFn>,
        pub can_cache: Option<NextStatusFn>,
        pub pread: Option<unsafe extern "C" fn(Next, *mut c_void, u32, u64, u32, *mut c_int) -> c_int>,
        pub pwrite: Option<unsafe extern "C" fn(Next, *const c_void, u32, u64, u32, *mut c_int) -> c_int>,
        pub flush: Option<unsafe extern "C" fn(Next, u32, *mut c_int) -> c_int>,
        pub trim: Option<NextRangeFn>,
        pub zero: Option<NextRangeFn>,
        pub extents: Option<unsafe extern "C" fn(Next, u32, u64, u32, *mut NbdkitExtents, *mut c_int) -> c_int>,
        pub cache: Option<NextRangeFn>,
    }
}
