// `struct nbdkit_plugin` as the shim declares it: the one list of its fields. Included into
// `nbdkit_c.rs`, beside the macro that turns it into the `#[repr(C)]` struct and its list of
// field offsets; a unit test there compares them field by field, by name, with the real struct
// as the C compiler measures it in the installed header.
c_struct! {
    /// `struct nbdkit_plugin` of `<nbdkit-plugin.h>` for `NBDKIT_API_VERSION 2`, field for
    /// field, with the header's names.
    #[derive(Clone, Copy)]
    pub struct NbdkitPlugin = nbdkit_plugin {
        pub _struct_size: u64,
        pub _api_version: c_int,
        pub _thread_model: c_int,
        pub name: *const c_char,
        pub longname: *const c_char,
        pub version: *const c_char,
        pub description: *const c_char,
        pub load: Option<VoidFn>,
        pub unload: Option<VoidFn>,
        pub config: Option<unsafe extern "C" fn(*const c_char, *const c_char) -> c_int>,
        pub config_complete: Option<StatusFn>,
        pub config_help: *const c_char,
        pub open: Option<unsafe extern "C" fn(c_int) -> Handle>,
        pub close: Option<unsafe extern "C" fn(Handle)>,
        pub get_size: Option<unsafe extern "C" fn(Handle) -> i64>,
        pub can_write: Option<QueryFn>,
        pub can_flush: Option<QueryFn>,
        pub is_rotational: Option<QueryFn>,
        pub can_trim: Option<QueryFn>,
        /// The five API v1 data callbacks: always NULL here.
        pub _pread_v1: *const c_void,
        pub _pwrite_v1: *const c_void,
        pub _flush_v1: *const c_void,
        pub _trim_v1: *const c_void,
        pub _zero_v1: *const c_void,
        pub errno_is_preserved: c_int,
        pub dump_plugin: Option<VoidFn>,
        pub can_zero: Option<QueryFn>,
        pub can_fua: Option<QueryFn>,
        pub pread: Option<unsafe extern "C" fn(Handle, *mut c_void, u32, u64, u32) -> c_int>,
        pub pwrite: Option<unsafe extern "C" fn(Handle, *const c_void, u32, u64, u32) -> c_int>,
        pub flush: Option<unsafe extern "C" fn(Handle, u32) -> c_int>,
        pub trim: Option<RangeFn>,
        pub zero: Option<RangeFn>,
        pub magic_config_key: *const c_char,
        pub can_multi_conn: Option<QueryFn>,
        pub can_extents: Option<QueryFn>,
        pub extents: Option<unsafe extern "C" fn(Handle, u32, u64, u32, *mut NbdkitExtents) -> c_int>,
        pub can_cache: Option<QueryFn>,
        pub cache: Option<RangeFn>,
        pub thread_model: Option<StatusFn>,
        pub can_fast_zero: Option<QueryFn>,
        pub preconnect: Option<unsafe extern "C" fn(c_int) -> c_int>,
        pub get_ready: Option<StatusFn>,
        pub after_fork: Option<StatusFn>,
        pub list_exports: Option<unsafe extern "C" fn(c_int, c_int, *mut NbdkitExports) -> c_int>,
        pub default_export: Option<unsafe extern "C" fn(c_int, c_int) -> *const c_char>,
        pub export_description: Option<unsafe extern "C" fn(Handle) -> *const c_char>,
        pub cleanup: Option<VoidFn>,
        pub block_size: Option<unsafe extern "C" fn(Handle, *mut u32, *mut u32, *mut u32) -> c_int>,
    }
}
