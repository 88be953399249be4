//! nbdkit's server functions (`nbdkit_error`, `nbdkit_parse_size`, …), each looked up with
//! `dlsym(RTLD_DEFAULT, …)` when first needed rather than linked: the functions newer than the
//! running nbdkit are then simply absent (the shim still loads on nbdkit 1.32), and the shim's
//! own unit tests link without an nbdkit binary.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::sync::OnceLock;

use super::types::{
    Backend, Context, NbdkitExport, NbdkitExports, NbdkitExtent, NbdkitExtents, Next,
};

/// Declares [`ServerApi`] from one list: each field is the function `nbdkit_<field>` with its C
/// signature (from `<nbdkit-common.h>` and `<nbdkit-filter.h>`), `[since]` marking those newer
/// than nbdkit 1.32.
macro_rules! server_api {
    ($($([$since:literal])? $field:ident: $ty:ty,)*) => {
        /// nbdkit's server functions, each `None` when the running nbdkit lacks it.
        pub struct ServerApi {
            $(
                #[doc = concat!("`nbdkit_", stringify!($field), "`", $(" (nbdkit ≥ ", $since, ")",)?)]
                pub $field: Option<$ty>,
            )*
        }

        impl ServerApi {
            fn resolve() -> ServerApi {
                ServerApi {
                    $($field: {
                        let p = lookup(concat!("nbdkit_", stringify!($field), "\0"));
                        // SAFETY: a non-NULL `nbdkit_*` symbol is the nbdkit function of that
                        // name, whose C signature is the field's type; `Option<fn>` is
                        // NULL-niched.
                        unsafe { std::mem::transmute::<*mut c_void, Option<$ty>>(p) }
                    },)*
                }
            }

            /// Whether the running server has `nbdkit_<name>`; `None` for a name not in the list.
            pub fn has(&self, name: &str) -> Option<bool> {
                match name {
                    $(stringify!($field) => Some(self.$field.is_some()),)*
                    _ => None,
                }
            }

            /// The functions newer than nbdkit 1.32 the running server has, oldest first, for
            /// `--dump-plugin`.
            pub fn optional_features(&self) -> Vec<&'static str> {
                let mut have: Vec<(&str, &'static str)> = Vec::new();
                $($(
                    if self.$field.is_some() {
                        have.push(($since, stringify!($field)));
                    }
                )?)*
                have.sort_by_key(|&(since, _)| version_key(since));
                have.into_iter().map(|(_, name)| name).collect()
            }
        }
    };
}

server_api! {
    error: unsafe extern "C" fn(*const c_char, ...),
    debug: unsafe extern "C" fn(*const c_char, ...),
    set_error: unsafe extern "C" fn(c_int),
    parse_size: unsafe extern "C" fn(*const c_char) -> i64,
    parse_bool: unsafe extern "C" fn(*const c_char) -> c_int,
    ["1.36"] parse_probability: unsafe extern "C" fn(*const c_char, *const c_char, *mut f64) -> c_int,
    ["1.40"] parse_delay:
        unsafe extern "C" fn(*const c_char, *const c_char, *mut c_uint, *mut c_uint) -> c_int,
    read_password: unsafe extern "C" fn(*const c_char, *mut *mut c_char) -> c_int,
    realpath: unsafe extern "C" fn(*const c_char) -> *mut c_char,
    stdio_safe: unsafe extern "C" fn() -> c_int,
    shutdown: unsafe extern "C" fn(),
    ["1.34"] disconnect: unsafe extern "C" fn(c_int),
    export_name: unsafe extern "C" fn() -> *const c_char,
    is_tls: unsafe extern "C" fn() -> c_int,
    peer_name: unsafe extern "C" fn(*mut libc::sockaddr, *mut libc::socklen_t) -> c_int,
    peer_pid: unsafe extern "C" fn() -> i64,
    peer_uid: unsafe extern "C" fn() -> i64,
    peer_gid: unsafe extern "C" fn() -> i64,
    ["1.36"] peer_security_context: unsafe extern "C" fn() -> *mut c_char,
    ["1.40"] peer_tls_dn: unsafe extern "C" fn() -> *mut c_char,
    ["1.40"] peer_tls_issuer_dn: unsafe extern "C" fn() -> *mut c_char,
    nanosleep: unsafe extern "C" fn(c_uint, c_uint) -> c_int,
    add_extent: unsafe extern "C" fn(*mut NbdkitExtents, u64, u64, u32) -> c_int,
    add_export: unsafe extern "C" fn(*mut NbdkitExports, *const c_char, *const c_char) -> c_int,
    use_default_export: unsafe extern "C" fn(*mut NbdkitExports) -> c_int,
    strdup_intern: unsafe extern "C" fn(*const c_char) -> *const c_char,
    ["1.46"] debug_hexdump: unsafe extern "C" fn(*const c_void, usize, *const c_char, u64),
    ["1.48"] debug_hexdiff:
        unsafe extern "C" fn(*const c_void, *const c_void, usize, *const c_char, u64),
    ["1.48"] name: unsafe extern "C" fn() -> *const c_char,
    ["1.48"] timestamp: unsafe extern "C" fn() -> *const c_char,
    // Filters only (`<nbdkit-filter.h>`).
    extents_full: unsafe extern "C" fn(Next, u32, u64, u32, *mut c_int) -> *mut NbdkitExtents,
    // `count` is `uint32_t` before nbdkit 1.46 and `uint64_t` after: passing a `u64` that fits in
    // 32 bits is right for both (the callee reads `esi` or `rsi`).
    extents_aligned: unsafe extern "C" fn(Next, u64, u64, u32, u32, *mut NbdkitExtents, *mut c_int) -> c_int,
    extents_count: unsafe extern "C" fn(*const NbdkitExtents) -> usize,
    get_extent: unsafe extern "C" fn(*const NbdkitExtents, usize) -> NbdkitExtent,
    extents_free: unsafe extern "C" fn(*mut NbdkitExtents),
    exports_new: unsafe extern "C" fn() -> *mut NbdkitExports,
    exports_count: unsafe extern "C" fn(*const NbdkitExports) -> usize,
    get_export: unsafe extern "C" fn(*const NbdkitExports, usize) -> NbdkitExport,
    exports_free: unsafe extern "C" fn(*mut NbdkitExports),
    context_get_backend: unsafe extern "C" fn(Context) -> Backend,
    next_context_open: unsafe extern "C" fn(Backend, c_int, *const c_char, c_int) -> Next,
    next_context_close: unsafe extern "C" fn(Next),
    context_set_next: unsafe extern "C" fn(Context, Next) -> Next,
}

/// `"1.36"` as `(1, 36)`.
fn version_key(version: &str) -> (u32, u32) {
    let (major, minor) = version.split_once('.').unwrap_or((version, "0"));
    (major.parse().unwrap_or(0), minor.parse().unwrap_or(0))
}

/// `name` (NUL-terminated) in the global symbol tables, or NULL.
fn lookup(name: &str) -> *mut c_void {
    let name = CStr::from_bytes_with_nul(name.as_bytes()).expect("a NUL-terminated name");
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only reads the global symbol
    // tables; it returns NULL when the symbol is absent.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }
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

#[cfg(test)]
mod tests {
    use super::*;

    unsafe extern "C" fn disconnect(_: c_int) {}
    unsafe extern "C" fn parse_probability(
        _: *const c_char,
        _: *const c_char,
        _: *mut f64,
    ) -> c_int {
        0
    }
    unsafe extern "C" fn parse_delay(
        _: *const c_char,
        _: *const c_char,
        _: *mut c_uint,
        _: *mut c_uint,
    ) -> c_int {
        0
    }
    unsafe extern "C" fn peer_string() -> *mut c_char {
        std::ptr::null_mut()
    }

    #[test]
    fn functions_newer_than_1_32_are_listed_oldest_first() {
        let all = ServerApi {
            disconnect: Some(disconnect),
            parse_probability: Some(parse_probability),
            peer_security_context: Some(peer_string),
            parse_delay: Some(parse_delay),
            peer_tls_dn: Some(peer_string),
            peer_tls_issuer_dn: Some(peer_string),
            ..ServerApi::resolve()
        };
        assert_eq!(
            all.optional_features(),
            [
                "disconnect",
                "parse_probability",
                "peer_security_context",
                "parse_delay",
                "peer_tls_dn",
                "peer_tls_issuer_dn"
            ]
        );
    }
}
