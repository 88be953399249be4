//! nbdkit's C ABI as the shim sees it: a `#[repr(C)]` mirror of `struct nbdkit_plugin`
//! (`<nbdkit-plugin.h>`, API version 2; checked against the installed header by a test) and a
//! table of nbdkit's server functions, looked up in the running server at load time.
//!
//! Every server function is resolved with `dlsym(RTLD_DEFAULT, …)` rather than linked: the
//! functions newer than the running nbdkit are then simply absent (the shim still loads on
//! nbdkit 1.32), and the shim's own unit tests link without an nbdkit binary.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::sync::OnceLock;

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

type Handle = *mut c_void;

/// `struct nbdkit_plugin` for `NBDKIT_API_VERSION 2`, field for field.
#[repr(C)]
pub struct NbdkitPlugin {
    pub struct_size: u64,
    pub api_version: c_int,
    pub thread_model: c_int,
    pub name: *const c_char,
    pub longname: *const c_char,
    pub version: *const c_char,
    pub description: *const c_char,
    pub load: Option<unsafe extern "C" fn()>,
    pub unload: Option<unsafe extern "C" fn()>,
    pub config: Option<unsafe extern "C" fn(*const c_char, *const c_char) -> c_int>,
    pub config_complete: Option<unsafe extern "C" fn() -> c_int>,
    pub config_help: *const c_char,
    pub open: Option<unsafe extern "C" fn(c_int) -> Handle>,
    pub close: Option<unsafe extern "C" fn(Handle)>,
    pub get_size: Option<unsafe extern "C" fn(Handle) -> i64>,
    pub can_write: Option<unsafe extern "C" fn(Handle) -> c_int>,
    pub can_flush: Option<unsafe extern "C" fn(Handle) -> c_int>,
    pub is_rotational: Option<unsafe extern "C" fn(Handle) -> c_int>,
    pub can_trim: Option<unsafe extern "C" fn(Handle) -> c_int>,
    /// The five API v1 data callbacks: always NULL here.
    pub pread_v1: *const c_void,
    pub pwrite_v1: *const c_void,
    pub flush_v1: *const c_void,
    pub trim_v1: *const c_void,
    pub zero_v1: *const c_void,
    pub errno_is_preserved: c_int,
    pub dump_plugin: Option<unsafe extern "C" fn()>,
    pub can_zero: Option<unsafe extern "C" fn(Handle) -> c_int>,
    pub can_fua: Option<unsafe extern "C" fn(Handle) -> c_int>,
    pub pread: Option<unsafe extern "C" fn(Handle, *mut c_void, u32, u64, u32) -> c_int>,
    pub pwrite: Option<unsafe extern "C" fn(Handle, *const c_void, u32, u64, u32) -> c_int>,
    pub flush: Option<unsafe extern "C" fn(Handle, u32) -> c_int>,
    pub trim: Option<unsafe extern "C" fn(Handle, u32, u64, u32) -> c_int>,
    pub zero: Option<unsafe extern "C" fn(Handle, u32, u64, u32) -> c_int>,
    pub magic_config_key: *const c_char,
    pub can_multi_conn: Option<unsafe extern "C" fn(Handle) -> c_int>,
    pub can_extents: Option<unsafe extern "C" fn(Handle) -> c_int>,
    pub extents: Option<unsafe extern "C" fn(Handle, u32, u64, u32, *mut NbdkitExtents) -> c_int>,
    pub can_cache: Option<unsafe extern "C" fn(Handle) -> c_int>,
    pub cache: Option<unsafe extern "C" fn(Handle, u32, u64, u32) -> c_int>,
    pub thread_model_fn: Option<unsafe extern "C" fn() -> c_int>,
    pub can_fast_zero: Option<unsafe extern "C" fn(Handle) -> c_int>,
    pub preconnect: Option<unsafe extern "C" fn(c_int) -> c_int>,
    pub get_ready: Option<unsafe extern "C" fn() -> c_int>,
    pub after_fork: Option<unsafe extern "C" fn() -> c_int>,
    pub list_exports: Option<unsafe extern "C" fn(c_int, c_int, *mut NbdkitExports) -> c_int>,
    pub default_export: Option<unsafe extern "C" fn(c_int, c_int) -> *const c_char>,
    pub export_description: Option<unsafe extern "C" fn(Handle) -> *const c_char>,
    pub cleanup: Option<unsafe extern "C" fn()>,
    pub block_size: Option<unsafe extern "C" fn(Handle, *mut u32, *mut u32, *mut u32) -> c_int>,
}

// The header's layout on x86-64 and other LP64 targets (see tests for the check against C).
const _: () = assert!(std::mem::size_of::<NbdkitPlugin>() == 384);
const _: () = assert!(std::mem::offset_of!(NbdkitPlugin, errno_is_preserved) == 184);
const _: () = assert!(std::mem::offset_of!(NbdkitPlugin, block_size) == 376);

/// The registered struct: nbdkit reads it once from `plugin_init` and never frees it.
pub struct Registration(pub NbdkitPlugin);
// SAFETY: the struct is immutable after construction and its pointers refer to static data.
unsafe impl Sync for Registration {}

/// `(field name, offset)` of every field, for the layout test against the C header.
pub fn field_offsets() -> Vec<(&'static str, usize)> {
    macro_rules! offsets {
        ($($field:ident),*) => { vec![$((stringify!($field), std::mem::offset_of!(NbdkitPlugin, $field))),*] };
    }
    offsets!(
        struct_size,
        api_version,
        thread_model,
        name,
        longname,
        version,
        description,
        load,
        unload,
        config,
        config_complete,
        config_help,
        open,
        close,
        get_size,
        can_write,
        can_flush,
        is_rotational,
        can_trim,
        pread_v1,
        pwrite_v1,
        flush_v1,
        trim_v1,
        zero_v1,
        errno_is_preserved,
        dump_plugin,
        can_zero,
        can_fua,
        pread,
        pwrite,
        flush,
        trim,
        zero,
        magic_config_key,
        can_multi_conn,
        can_extents,
        extents,
        can_cache,
        cache,
        thread_model_fn,
        can_fast_zero,
        preconnect,
        get_ready,
        after_fork,
        list_exports,
        default_export,
        export_description,
        cleanup,
        block_size
    )
}

/// nbdkit's server functions, each `None` when the running nbdkit lacks it.
pub struct ServerApi {
    pub error: Option<unsafe extern "C" fn(*const c_char, ...)>,
    pub debug: Option<unsafe extern "C" fn(*const c_char, ...)>,
    pub set_error: Option<unsafe extern "C" fn(c_int)>,
    pub parse_size: Option<unsafe extern "C" fn(*const c_char) -> i64>,
    pub parse_bool: Option<unsafe extern "C" fn(*const c_char) -> c_int>,
    pub parse_probability:
        Option<unsafe extern "C" fn(*const c_char, *const c_char, *mut f64) -> c_int>,
    pub parse_delay: Option<
        unsafe extern "C" fn(*const c_char, *const c_char, *mut c_uint, *mut c_uint) -> c_int,
    >,
    pub read_password: Option<unsafe extern "C" fn(*const c_char, *mut *mut c_char) -> c_int>,
    pub realpath: Option<unsafe extern "C" fn(*const c_char) -> *mut c_char>,
    pub stdio_safe: Option<unsafe extern "C" fn() -> c_int>,
    pub shutdown: Option<unsafe extern "C" fn()>,
    pub disconnect: Option<unsafe extern "C" fn(c_int)>,
    pub export_name: Option<unsafe extern "C" fn() -> *const c_char>,
    pub is_tls: Option<unsafe extern "C" fn() -> c_int>,
    pub peer_name: Option<unsafe extern "C" fn(*mut libc::sockaddr, *mut libc::socklen_t) -> c_int>,
    pub peer_pid: Option<unsafe extern "C" fn() -> i64>,
    pub peer_uid: Option<unsafe extern "C" fn() -> i64>,
    pub peer_gid: Option<unsafe extern "C" fn() -> i64>,
    pub peer_security_context: Option<unsafe extern "C" fn() -> *mut c_char>,
    pub peer_tls_dn: Option<unsafe extern "C" fn() -> *mut c_char>,
    pub peer_tls_issuer_dn: Option<unsafe extern "C" fn() -> *mut c_char>,
    pub nanosleep: Option<unsafe extern "C" fn(c_uint, c_uint) -> c_int>,
    pub add_extent: Option<unsafe extern "C" fn(*mut NbdkitExtents, u64, u64, u32) -> c_int>,
    pub add_export:
        Option<unsafe extern "C" fn(*mut NbdkitExports, *const c_char, *const c_char) -> c_int>,
    pub use_default_export: Option<unsafe extern "C" fn(*mut NbdkitExports) -> c_int>,
    pub strdup_intern: Option<unsafe extern "C" fn(*const c_char) -> *const c_char>,
}

fn lookup(name: &CStr) -> *mut c_void {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only reads the global symbol
    // tables; it returns NULL when the symbol is absent.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }
}

macro_rules! resolve {
    ($name:literal) => {{
        let p = lookup($name);
        // SAFETY: a non-NULL `nbdkit_*` symbol is the nbdkit function of that name, whose C
        // signature (from <nbdkit-common.h>) is the field's type; `Option<fn>` is NULL-niched.
        unsafe { std::mem::transmute::<*mut c_void, Option<_>>(p) }
    }};
}

impl ServerApi {
    fn resolve() -> ServerApi {
        ServerApi {
            error: resolve!(c"nbdkit_error"),
            debug: resolve!(c"nbdkit_debug"),
            set_error: resolve!(c"nbdkit_set_error"),
            parse_size: resolve!(c"nbdkit_parse_size"),
            parse_bool: resolve!(c"nbdkit_parse_bool"),
            parse_probability: resolve!(c"nbdkit_parse_probability"),
            parse_delay: resolve!(c"nbdkit_parse_delay"),
            read_password: resolve!(c"nbdkit_read_password"),
            realpath: resolve!(c"nbdkit_realpath"),
            stdio_safe: resolve!(c"nbdkit_stdio_safe"),
            shutdown: resolve!(c"nbdkit_shutdown"),
            disconnect: resolve!(c"nbdkit_disconnect"),
            export_name: resolve!(c"nbdkit_export_name"),
            is_tls: resolve!(c"nbdkit_is_tls"),
            peer_name: resolve!(c"nbdkit_peer_name"),
            peer_pid: resolve!(c"nbdkit_peer_pid"),
            peer_uid: resolve!(c"nbdkit_peer_uid"),
            peer_gid: resolve!(c"nbdkit_peer_gid"),
            peer_security_context: resolve!(c"nbdkit_peer_security_context"),
            peer_tls_dn: resolve!(c"nbdkit_peer_tls_dn"),
            peer_tls_issuer_dn: resolve!(c"nbdkit_peer_tls_issuer_dn"),
            nanosleep: resolve!(c"nbdkit_nanosleep"),
            add_extent: resolve!(c"nbdkit_add_extent"),
            add_export: resolve!(c"nbdkit_add_export"),
            use_default_export: resolve!(c"nbdkit_use_default_export"),
            strdup_intern: resolve!(c"nbdkit_strdup_intern"),
        }
    }

    /// Which of the functions newer than nbdkit 1.32 the running server has, for
    /// `--dump-plugin`.
    pub fn optional_features(&self) -> Vec<&'static str> {
        let mut have = Vec::new();
        for (name, present) in [
            ("disconnect", self.disconnect.is_some()),
            ("parse_probability", self.parse_probability.is_some()),
            (
                "peer_security_context",
                self.peer_security_context.is_some(),
            ),
            ("parse_delay", self.parse_delay.is_some()),
            ("peer_tls_dn", self.peer_tls_dn.is_some()),
            ("peer_tls_issuer_dn", self.peer_tls_issuer_dn.is_some()),
        ] {
            if present {
                have.push(name);
            }
        }
        have
    }
}

static SERVER: OnceLock<ServerApi> = OnceLock::new();

/// The running server's functions (resolved on first use).
pub fn server() -> &'static ServerApi {
    SERVER.get_or_init(ServerApi::resolve)
}

/// `nbdkit_error("%s", msg)`; stderr outside nbdkit.
pub fn error(msg: &str) {
    let c = cstring_lossy(msg);
    match server().error {
        // SAFETY: "%s" with one NUL-terminated string argument.
        Some(f) => unsafe { f(c"%s".as_ptr(), c.as_ptr()) },
        None => eprintln!("rustshim: error: {msg}"),
    }
}

/// `nbdkit_debug("%s", msg)`; nothing outside nbdkit.
pub fn debug(msg: &str) {
    if let Some(f) = server().debug {
        let c = cstring_lossy(msg);
        // SAFETY: "%s" with one NUL-terminated string argument.
        unsafe { f(c"%s".as_ptr(), c.as_ptr()) }
    }
}

/// `nbdkit_set_error(errno)`.
pub fn set_errno(errno: i32) {
    if let Some(f) = server().set_error {
        // SAFETY: plain int argument; sets nbdkit's thread-local error for this request.
        unsafe { f(errno) }
    }
}

/// A C string of `s`, with any NUL bytes shown as `\0` (for messages only).
pub fn cstring_lossy(s: &str) -> std::ffi::CString {
    std::ffi::CString::new(s.replace('\0', "\\0")).expect("NULs were replaced")
}
