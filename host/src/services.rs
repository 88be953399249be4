//! The host services table the shim hands every plugin instance: nbdkit's server functions
//! behind the stable ABI, plus the error and log channels.
//!
//! A failing plugin callback records its errno and message here ([`set_error`]) and returns
//! `-1`; the shim's callback then decides what nbdkit sees ([`report_failure`]), which lets it
//! swallow an `ENOTSUP` from `zero` and write zeroes instead, as nbdkit itself would.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::ffi::{c_char, CStr, CString};
use std::path::PathBuf;
use std::sync::OnceLock;

use rustshim_plugin_api::abi::{
    __PrefixTypeTrait, HostServices, HostServicesRef, ROption, RSlice, RStr, RString, RVec,
};

use crate::failure::Failure;
use crate::fallback;
use crate::nbdkit_c::{self, server};

const EINVAL: i32 = libc::EINVAL;
const ENOTSUP: i32 = libc::ENOTSUP;

thread_local! {
    /// The error the plugin reported for the callback running on this thread.
    static LAST_ERROR: RefCell<Option<Failure>> = const { RefCell::new(None) };
    /// This thread is bringing a new generation to where the first load was (hot reload).
    static REPLAYING: Cell<bool> = const { Cell::new(false) };
    /// A server function called on this thread failed and its reason went to nbdkit's log as
    /// an error line (nbdkit's own, such as `nbdkit_parse_size`'s, or the shim's for it).
    static LOGGED: Cell<bool> = const { Cell::new(false) };
}

/// The directory nbdkit was started in, noted at `load` (before nbdkit, serving in the
/// background, changes to `/`).
static START_DIR: OnceLock<Option<PathBuf>> = OnceLock::new();

/// Notes the directory nbdkit was started in: from `load`, which runs before nbdkit forks.
pub fn note_start_dir() {
    START_DIR.get_or_init(|| std::env::current_dir().ok());
}

/// Runs `f` (a new generation's `config`, `config_complete`, `get_ready`, … on hot reload) so
/// that the server functions which resolve a relative path (`realpath`, `read_password`'s
/// `+FILE`) resolve it against the directory nbdkit was started in, as they did for the first
/// load: a background nbdkit has changed to `/` since.
pub fn replaying<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            REPLAYING.with(|r| r.set(self.0));
        }
    }
    let _reset = Reset(REPLAYING.with(|r| r.replace(true)));
    f()
}

/// `path` as the first load saw it: while [`replaying`], a relative path is taken relative to
/// the directory nbdkit was started in.
fn as_first_load(path: &str) -> Cow<'_, str> {
    if path.starts_with('/') || !REPLAYING.with(Cell::get) {
        return Cow::Borrowed(path);
    }
    match START_DIR.get() {
        Some(Some(dir)) => match dir.join(path).into_os_string().into_string() {
            Ok(joined) => Cow::Owned(joined),
            Err(_) => Cow::Borrowed(path),
        },
        _ => Cow::Borrowed(path),
    }
}

/// Whether a server function failed on this thread, with its reason logged, since the last
/// call (which starts the count again).
pub fn take_logged() -> bool {
    LOGGED.with(|l| l.replace(false))
}

/// Notes that a server function failed with its reason logged; returns `errno`.
pub fn logged(errno: i32) -> i32 {
    LOGGED.with(|l| l.set(true));
    errno
}

/// Takes the error the plugin recorded for the callback that just failed on this thread (`EIO`
/// without a message if it recorded none).
pub fn take_error() -> Failure {
    LAST_ERROR
        .with(|e| e.borrow_mut().take())
        .unwrap_or_else(|| Failure::new(libc::EIO, ""))
}

/// Reports the failure of the plugin callback that just returned `-1`: its message to nbdkit's
/// log (unless already logged), its errno to the client.
pub fn report_failure() {
    take_error().report();
}

/// Logs the error the plugin recorded in a callback that returns nothing (`close`, `cleanup`,
/// `dump_plugin`, `unload`): its caught panic, which nothing else would report.
pub fn log_recorded_error() {
    if let Some(failure) = LAST_ERROR.with(|e| e.borrow_mut().take()) {
        if !failure.msg.is_empty() {
            nbdkit_c::error(&failure.msg);
        }
    }
}

/// The table every instance receives (built once).
pub fn host_services() -> HostServicesRef {
    static TABLE: OnceLock<HostServicesRef> = OnceLock::new();
    *TABLE.get_or_init(|| {
        HostServices {
            set_error,
            log,
            parse_size,
            parse_bool,
            parse_probability,
            parse_delay,
            read_password,
            realpath,
            stdio_safe,
            shutdown,
            disconnect,
            export_name,
            is_tls,
            peer_name,
            peer_pid,
            peer_uid,
            peer_gid,
            peer_security_context,
            peer_tls_dn,
            peer_tls_issuer_dn,
            nanosleep,
            version,
            api_version,
            debug_hexdump,
            debug_hexdiff,
            name,
            timestamp,
            nbdkit_has,
            // Services added in later minor versions go here.
        }
        .leak_into_prefix()
    })
}

extern "C" fn set_error(errno: i32, msg: RStr<'_>) {
    LAST_ERROR.with(|e| *e.borrow_mut() = Some(Failure::new(errno, msg.as_str())));
}

/// A record of the `log` crate (its level as `log::Level`'s number), mapped onto nbdkit's two
/// levels so that each reads as what it is:
/// * `error` (1): `nbdkit_error`, `nbdkit: error: MSG` (`nbdkit: rustshim.0: error: MSG` in a connection), always shown, and sent
///   where nbdkit sends errors (syslog with `--log=syslog` or in the background);
/// * `warn` (2): `nbdkit: rustshim: warning: MSG` on stderr, always, as nbdkit prints its own
///   warnings (nbdkit has no warning level for plugins, and `nbdkit_error` would call it an
///   error);
/// * `info` (3): `nbdkit: rustshim: MSG` on stderr, always, as the shim prints its own notices;
/// * `debug` (4), `trace` (5): `nbdkit_debug`, `nbdkit: debug: MSG`, shown with
///   `nbdkit -v`.
extern "C" fn log(level: u32, msg: RStr<'_>) {
    match level {
        1 => nbdkit_c::error(msg.as_str()),
        2 => notice(&format!("warning: {}", msg.as_str())),
        3 => notice(msg.as_str()),
        _ => nbdkit_c::debug(msg.as_str()),
    }
}

/// A line on stderr in nbdkit's form, `nbdkit: NAME: TEXT`, shown without `-v` (NAME is the
/// name nbdkit knows the shim by: `rustshim`, or the plugin's own for a native-looking one).
/// One `write` per line, so lines of concurrent connections do not interleave.
pub fn notice(text: &str) {
    use std::io::Write;
    let name = crate::locate::fronted_plugin().unwrap_or("rustshim");
    let line = format!("nbdkit: {name}: {text}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// A C string for nbdkit, or `EINVAL` (logged) if `s` has a NUL byte.
fn c_arg(function: &str, s: RStr<'_>) -> Result<CString, i32> {
    CString::new(s.as_str()).map_err(|_| {
        nbdkit_c::error(&format!("{function}: argument contains a NUL byte"));
        logged(EINVAL)
    })
}

/// Copies a malloc'd C string from nbdkit into `out` and frees it.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string allocated with malloc that the caller owns.
unsafe fn take_c_string(p: *mut c_char, out: &mut RString) -> bool {
    if p.is_null() {
        return false;
    }
    // SAFETY: non-NULL, NUL-terminated (caller's contract).
    *out = unsafe { CStr::from_ptr(p) }
        .to_string_lossy()
        .as_ref()
        .into();
    // SAFETY: allocated with malloc by nbdkit and owned by us (caller's contract).
    unsafe { libc::free(p.cast()) };
    true
}

fn errno_or(default: i32) -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .filter(|&e| e != 0)
        .unwrap_or(default)
}

/// Calls nbdkit's parser `f` (named `function`) on `s`: its result, or `None` when the server
/// lacks it or `s` has a NUL byte (logged).
fn call_parser<R>(
    function: &str,
    f: Option<unsafe extern "C" fn(*const c_char) -> R>,
    s: RStr<'_>,
) -> Option<R> {
    let (Some(f), Ok(c)) = (f, c_arg(function, s)) else {
        return None;
    };
    // SAFETY: a NUL-terminated argument; nbdkit logs its own errors.
    Some(unsafe { f(c.as_ptr()) })
}

extern "C" fn parse_size(s: RStr<'_>, out: &mut u64) -> i32 {
    match call_parser("nbdkit_parse_size", server().parse_size, s) {
        Some(r) if r >= 0 => {
            *out = r as u64;
            0
        }
        _ => logged(EINVAL),
    }
}

extern "C" fn parse_bool(s: RStr<'_>, out: &mut bool) -> i32 {
    match call_parser("nbdkit_parse_bool", server().parse_bool, s) {
        Some(r) if r >= 0 => {
            *out = r != 0;
            0
        }
        _ => logged(EINVAL),
    }
}

/// What the shim parsed itself on an nbdkit too old to have the function: stored, or its
/// message logged and `EINVAL`.
fn parsed_here<T>(parsed: Result<T, String>, store: impl FnOnce(T)) -> i32 {
    match parsed {
        Ok(value) => {
            store(value);
            0
        }
        Err(msg) => {
            nbdkit_c::error(&msg);
            logged(EINVAL)
        }
    }
}

extern "C" fn parse_probability(what: RStr<'_>, s: RStr<'_>, out: &mut f64) -> i32 {
    let Some(f) = fallback::native(server().parse_probability) else {
        // nbdkit < 1.36: same syntax, parsed here.
        let parsed = fallback::parse_probability(what.as_str(), s.as_str());
        return parsed_here(parsed, |p| *out = p);
    };
    let (Ok(w), Ok(c)) = (
        c_arg("nbdkit_parse_probability", what),
        c_arg("nbdkit_parse_probability", s),
    ) else {
        return EINVAL;
    };
    // SAFETY: NUL-terminated arguments and a valid out pointer; nbdkit logs its own errors.
    match unsafe { f(w.as_ptr(), c.as_ptr(), out) } {
        0 => 0,
        _ => logged(EINVAL),
    }
}

extern "C" fn parse_delay(what: RStr<'_>, s: RStr<'_>, sec: &mut u32, nsec: &mut u32) -> i32 {
    let Some(f) = fallback::native(server().parse_delay) else {
        // nbdkit < 1.40: same syntax, parsed here.
        let parsed = fallback::parse_delay(what.as_str(), s.as_str());
        return parsed_here(parsed, |(s, ns)| (*sec, *nsec) = (s, ns));
    };
    let (Ok(w), Ok(c)) = (
        c_arg("nbdkit_parse_delay", what),
        c_arg("nbdkit_parse_delay", s),
    ) else {
        return EINVAL;
    };
    // SAFETY: NUL-terminated arguments and valid out pointers; nbdkit logs its own errors.
    match unsafe { f(w.as_ptr(), c.as_ptr(), sec, nsec) } {
        0 => 0,
        _ => logged(EINVAL),
    }
}

extern "C" fn read_password(value: RStr<'_>, out: &mut RString) -> i32 {
    // `+FILE` reads the password from FILE.
    let value: Cow<'_, str> = match value.as_str().strip_prefix('+') {
        Some(file) => match as_first_load(file) {
            Cow::Owned(file) => Cow::Owned(format!("+{file}")),
            Cow::Borrowed(_) => Cow::Borrowed(value.as_str()),
        },
        None => Cow::Borrowed(value.as_str()),
    };
    let (Some(f), Ok(c)) = (
        server().read_password,
        c_arg("nbdkit_read_password", value.as_ref().into()),
    ) else {
        return EINVAL;
    };
    let mut password: *mut c_char = std::ptr::null_mut();
    // SAFETY: NUL-terminated argument and a valid out pointer; on success nbdkit stores a
    // malloc'd string we own.
    if unsafe { f(c.as_ptr(), &mut password) } == -1 {
        return logged(errno_or(EINVAL));
    }
    // SAFETY: malloc'd by nbdkit_read_password, ours to free.
    unsafe { take_c_string(password, out) };
    0
}

extern "C" fn realpath(path: RStr<'_>, out: &mut RString) -> i32 {
    let path = as_first_load(path.as_str());
    let (Some(f), Ok(c)) = (
        server().realpath,
        c_arg("nbdkit_realpath", path.as_ref().into()),
    ) else {
        return EINVAL;
    };
    // SAFETY: NUL-terminated argument; the result is NULL or a malloc'd string we own.
    let p = unsafe { f(c.as_ptr()) };
    let err = errno_or(libc::ENOENT);
    // SAFETY: as above.
    if unsafe { take_c_string(p, out) } {
        0
    } else {
        logged(err)
    }
}

extern "C" fn stdio_safe(out: &mut bool) -> i32 {
    let Some(f) = server().stdio_safe else {
        return ENOTSUP;
    };
    // SAFETY: no arguments.
    *out = unsafe { f() } != 0;
    0
}

extern "C" fn shutdown() -> i32 {
    let Some(f) = server().shutdown else {
        return ENOTSUP;
    };
    // SAFETY: no arguments; an asynchronous request.
    unsafe { f() };
    0
}

extern "C" fn disconnect(force: bool) -> i32 {
    let Some(f) = server().disconnect else {
        return ENOTSUP;
    };
    // SAFETY: plain int argument (the C type is int, not bool).
    unsafe { f(force as i32) };
    0
}

extern "C" fn export_name(out: &mut RVec<u8>) -> i32 {
    let Some(f) = server().export_name else {
        return ENOTSUP;
    };
    // SAFETY: no arguments; the result is NULL (error logged) or a string owned by nbdkit that
    // stays valid until the connection closes.
    let p = unsafe { f() };
    if p.is_null() {
        return EINVAL;
    }
    // SAFETY: non-NULL, NUL-terminated, valid for this call.
    *out = unsafe { CStr::from_ptr(p) }.to_bytes().into();
    0
}

extern "C" fn is_tls(out: &mut bool) -> i32 {
    let Some(f) = server().is_tls else {
        return ENOTSUP;
    };
    // SAFETY: no arguments.
    match unsafe { f() } {
        -1 => EINVAL,
        r => {
            *out = r != 0;
            0
        }
    }
}

extern "C" fn peer_name(out: &mut RVec<u8>) -> i32 {
    let Some(f) = server().peer_name else {
        return ENOTSUP;
    };
    // SAFETY: sockaddr_storage is plain data; zeroes are a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: the buffer and its length are valid; getpeername semantics.
    if unsafe {
        f(
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    } == -1
    {
        return errno_or(EINVAL);
    }
    let len = (len as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: `storage` is `len` initialised bytes.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&storage as *const libc::sockaddr_storage).cast::<u8>(),
            len,
        )
    };
    *out = bytes.into();
    0
}

fn peer_id(f: Option<unsafe extern "C" fn() -> i64>, out: &mut i64) -> i32 {
    let Some(f) = f else { return ENOTSUP };
    // SAFETY: no arguments.
    match unsafe { f() } {
        -1 => EINVAL,
        v => {
            *out = v;
            0
        }
    }
}

extern "C" fn peer_pid(out: &mut i64) -> i32 {
    peer_id(server().peer_pid, out)
}
extern "C" fn peer_uid(out: &mut i64) -> i32 {
    peer_id(server().peer_uid, out)
}
extern "C" fn peer_gid(out: &mut i64) -> i32 {
    peer_id(server().peer_gid, out)
}

fn peer_string(f: Option<unsafe extern "C" fn() -> *mut c_char>, out: &mut RString) -> i32 {
    let Some(f) = f else { return ENOTSUP };
    // SAFETY: no arguments; the result is NULL (error logged) or a malloc'd string we own.
    if unsafe { take_c_string(f(), out) } {
        0
    } else {
        EINVAL
    }
}

extern "C" fn peer_security_context(out: &mut RString) -> i32 {
    nix::errno::Errno::clear();
    match peer_string(server().peer_security_context, out) {
        // nbdkit returns NULL without an error when the socket has no label (getsockopt
        // SO_PEERSEC fails with ENOPROTOOPT, "not really an error" to nbdkit): pass that on.
        EINVAL if nix::errno::Errno::last() == nix::errno::Errno::ENOPROTOOPT => libc::ENOPROTOOPT,
        status => status,
    }
}
extern "C" fn peer_tls_dn(out: &mut RString) -> i32 {
    peer_string(server().peer_tls_dn, out)
}
extern "C" fn peer_tls_issuer_dn(out: &mut RString) -> i32 {
    peer_string(server().peer_tls_issuer_dn, out)
}

extern "C" fn nanosleep(sec: u32, nsec: u32) -> i32 {
    let Some(f) = server().nanosleep else {
        std::thread::sleep(std::time::Duration::new(sec.into(), nsec));
        return 0;
    };
    // SAFETY: plain arguments.
    match unsafe { f(sec, nsec) } {
        0 => 0,
        _ => libc::ESHUTDOWN,
    }
}

extern "C" fn version(out: &mut RString) -> i32 {
    match server_version() {
        Some(v) => {
            *out = v.into();
            0
        }
        None => ENOTSUP,
    }
}

extern "C" fn api_version() -> i32 {
    nbdkit_c::API_VERSION
}

/// Calls nbdkit's hexdump-like function `f` with `prefix` as nbdkit takes it (NULL for none),
/// or, where the running nbdkit lacks it, logs the lines the shim makes itself (`here`).
fn hex_lines<F>(
    function: &str,
    f: Option<F>,
    prefix: RStr<'_>,
    here: impl FnOnce() -> Vec<String>,
    call: impl FnOnce(F, *const c_char),
) -> i32 {
    let Some(f) = f else {
        for line in here() {
            nbdkit_c::debug(&line);
        }
        return 0;
    };
    let prefix = match prefix.as_str() {
        "" => None,
        _ => match c_arg(function, prefix) {
            Ok(prefix) => Some(prefix),
            Err(errno) => return errno,
        },
    };
    call(f, prefix.as_ref().map_or(std::ptr::null(), |p| p.as_ptr()));
    0
}

extern "C" fn debug_hexdump(buf: RSlice<'_, u8>, prefix: RStr<'_>, start: u64) -> i32 {
    hex_lines(
        "nbdkit_debug_hexdump",
        fallback::native(server().debug_hexdump),
        prefix,
        || fallback::hexdump(buf.as_slice(), prefix.as_str(), start),
        // SAFETY: `buf` is valid for its length; the prefix is NULL or NUL-terminated.
        |f, prefix| unsafe { f(buf.as_ptr().cast(), buf.len(), prefix, start) },
    )
}

extern "C" fn debug_hexdiff(
    a: RSlice<'_, u8>,
    b: RSlice<'_, u8>,
    prefix: RStr<'_>,
    start: u64,
) -> i32 {
    if a.len() != b.len() {
        nbdkit_c::error(&format!(
            "nbdkit_debug_hexdiff: the buffers differ in length ({} and {} bytes)",
            a.len(),
            b.len()
        ));
        return EINVAL;
    }
    hex_lines(
        "nbdkit_debug_hexdiff",
        fallback::native(server().debug_hexdiff),
        prefix,
        || fallback::hexdiff(a.as_slice(), b.as_slice(), prefix.as_str(), start),
        // SAFETY: both buffers are valid for the (equal) length; the prefix is NULL or
        // NUL-terminated.
        |f, prefix| unsafe { f(a.as_ptr().cast(), b.as_ptr().cast(), a.len(), prefix, start) },
    )
}

extern "C" fn name(out: &mut ROption<RString>) -> i32 {
    let name = match fallback::native(server().name) {
        // SAFETY: no arguments; the result is NULL or a string valid for the process.
        Some(f) => match unsafe { f() } {
            p if p.is_null() => None,
            // SAFETY: non-NULL, NUL-terminated and constant (nbdkit_name(3)).
            p => Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()),
        },
        // nbdkit < 1.48: nbdkit's own command line says.
        None => {
            let cmdline = std::fs::read("/proc/self/cmdline").unwrap_or_default();
            let args: Vec<String> = cmdline
                .split(|&b| b == 0)
                .skip(1)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            fallback::name(&args)
        }
    };
    *out = name.map(RString::from).into();
    0
}

extern "C" fn timestamp(out: &mut RString) -> i32 {
    *out = match fallback::native(server().timestamp) {
        // SAFETY: no arguments; the result is never NULL and valid until the next call on this
        // thread (nbdkit_timestamp(3)), and copied at once.
        Some(f) => unsafe { CStr::from_ptr(f()) }
            .to_string_lossy()
            .as_ref()
            .into(),
        // nbdkit < 1.48: the same format, made here.
        None => fallback::timestamp(std::time::SystemTime::now()).into(),
    };
    0
}

extern "C" fn nbdkit_has(function: RStr<'_>, out: &mut bool) -> i32 {
    match server().has(function.as_str()) {
        Some(has) => {
            *out = has;
            0
        }
        None => libc::ENOENT,
    }
}

// The functions of services added in later minor versions go here.

/// The running nbdkit's version, read once from `nbdkit --dump-config` of the running binary
/// (nbdkit offers plugins no other way to learn it): `/proc/self/exe`, or, where that is another
/// program (under valgrind it is valgrind's), the program as it was executed (`AT_EXECFN`).
pub fn server_version() -> Option<&'static str> {
    static VERSION: OnceLock<Option<String>> = OnceLock::new();
    VERSION
        .get_or_init(|| {
            // Outside nbdkit /proc/self/exe is some other program: do not run it.
            server().error?;
            dump_config_version("/proc/self/exe".as_ref()).or_else(|| {
                // SAFETY: getauxval only reads the auxiliary vector; AT_EXECFN, when present, is
                // a NUL-terminated string that lives for the process.
                let execfn = unsafe { libc::getauxval(libc::AT_EXECFN) } as *const c_char;
                if execfn.is_null() {
                    return None;
                }
                // SAFETY: as above.
                let path = unsafe { CStr::from_ptr(execfn) };
                let path =
                    <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(path.to_bytes());
                dump_config_version(path)
            })
        })
        .as_deref()
}

/// The `version=` line of `PROGRAM --dump-config`, run without a shell.
fn dump_config_version(program: &std::ffi::OsStr) -> Option<String> {
    let out = std::process::Command::new(program)
        .arg("--dump-config")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("version=").map(str::to_owned))
}
