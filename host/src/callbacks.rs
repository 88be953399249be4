//! The callbacks the shim registers with nbdkit, in nbdkit's lifecycle order.
//!
//! nbdkit copies `struct nbdkit_plugin` once, before the Rust plugin is known, so every slot is
//! installed and each one reproduces, from the plugin's vtable, what nbdkit does for a C plugin
//! that leaves the callback out (nbdkit-plugin(3); `server/plugins.c`). Two of those defaults
//! are deliberately not left to nbdkit: `can_fua` (nbdkit would advertise FUA and call `flush`
//! even when `can_flush` said no) and `zero` failing with `ENOTSUP` (nbdkit < 1.42.6 then
//! zeroes only the first 64 MiB), so the shim writes the zeroes itself.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use rustshim_plugin_api::abi::{
    DumpSink, ExportSink, ExtentSink, HandlePtr, ROption, RStr, RString, ABI_VERSION,
};

use crate::config::{self, ReloadMode, BARE_ARGUMENT_KEY};
use crate::generation::{self, Generation, Lifecycle};
use crate::nbdkit_c::{
    self, server, NbdkitExports, NbdkitExtents, CACHE_NATIVE, CACHE_NONE, FLAG_FAST_ZERO, FLAG_FUA,
    FUA_EMULATE, FUA_NONE, MAX_REQUEST_SIZE, THREAD_MODEL_PARALLEL,
};
use crate::reload;
use crate::services::{self, report, report_failure};

/// Runs a cold callback body, turning a panic in the shim itself into an error instead of an
/// abort (the plugin's own panics are already caught on its side).
fn guarded<R>(callback: &str, on_panic: R, body: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| {
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        report(
            libc::EIO,
            &format!("rustshim: internal error in {callback}: {text}"),
        );
        on_panic
    })
}

/// `Ok` → 0; `Err(msg)` → the message logged, -1.
fn status(result: Result<(), String>) -> c_int {
    match result {
        Ok(()) => 0,
        Err(msg) => {
            report(libc::EINVAL, &format!("rustshim: {msg}"));
            -1
        }
    }
}

/// Converts a plugin status (0 / -1 with the error recorded) into nbdkit's.
#[inline(always)]
fn forward(r: i32) -> c_int {
    if r < 0 {
        report_failure();
        -1
    } else {
        r
    }
}

// ---- Loading and configuration ----

pub(crate) unsafe extern "C" fn load() {
    // The Rust plugin is not known yet (it arrives with `plugin=` in `config`); resolve nbdkit's
    // functions now so that later callbacks find them ready.
    let _ = server();
}

pub(crate) unsafe extern "C" fn unload() {
    guarded("unload", (), || {
        if let Some(generation) = config::state().current.take() {
            generation.destroy();
        }
        generation::remove_private_dir();
    })
}

/// A C string from nbdkit as UTF-8, or a one-line error naming it.
fn utf8<'a>(what: &str, s: *const c_char) -> Result<&'a str, String> {
    if s.is_null() {
        return Err(format!("{what} is missing"));
    }
    // SAFETY: nbdkit passes NUL-terminated strings that live as long as the plugin.
    let s = unsafe { CStr::from_ptr(s) };
    s.to_str()
        .map_err(|_| format!("{what} '{}' is not valid UTF-8", s.to_string_lossy()))
}

pub(crate) unsafe extern "C" fn config(key: *const c_char, value: *const c_char) -> c_int {
    guarded("config", -1, || {
        status(utf8("parameter key", key).and_then(|k| {
            let v = utf8(&format!("value of parameter '{k}'"), value)?;
            config::config(k, v)
        }))
    })
}

pub(crate) unsafe extern "C" fn config_complete() -> c_int {
    guarded("config_complete", -1, || match config::ensure_loaded() {
        Ok(generation) => lifecycle_status(generation.lifecycle(Lifecycle::ConfigComplete)),
        Err(msg) => status(Err(msg)),
    })
}

/// Reports a failed lifecycle callback.
fn lifecycle_status(result: Result<(), (i32, String)>) -> c_int {
    match result {
        Ok(()) => 0,
        Err((errno, msg)) => {
            report(errno, &msg);
            -1
        }
    }
}

pub(crate) unsafe extern "C" fn thread_model() -> c_int {
    guarded("thread_model", -1, || match config::plugin_if_given() {
        Err(msg) => status(Err(msg)),
        Ok(Some(generation)) => match generation.thread_model() {
            Ok(model) => {
                reload::announce_thread_model(model);
                model as c_int
            }
            Err((errno, msg)) => {
                report(errno, &msg);
                -1
            }
        },
        // `--dump-plugin` without a plugin.
        Ok(None) => THREAD_MODEL_PARALLEL,
    })
}

pub(crate) unsafe extern "C" fn get_ready() -> c_int {
    guarded("get_ready", -1, || match config::current() {
        Some(generation) => lifecycle_status(generation.lifecycle(Lifecycle::GetReady)),
        None => 0,
    })
}

pub(crate) unsafe extern "C" fn after_fork() -> c_int {
    guarded("after_fork", -1, || {
        let Some(generation) = config::current() else {
            return 0;
        };
        if lifecycle_status(generation.lifecycle(Lifecycle::AfterFork)) < 0 {
            return -1;
        }
        if config::state().reload == ReloadMode::Watch {
            return status(reload::start_watcher());
        }
        0
    })
}

pub(crate) unsafe extern "C" fn cleanup() {
    guarded("cleanup", (), || {
        if let Some(generation) = config::current() {
            generation.cleanup();
        }
    })
}

fn print_line(key: &str, value: &str) {
    let (k, v) = (nbdkit_c::cstring_lossy(key), nbdkit_c::cstring_lossy(value));
    // SAFETY: a constant format with two NUL-terminated strings. C stdio, not Rust's, so the
    // lines stay in order with the ones nbdkit prints.
    unsafe { libc::printf(c"%s=%s\n".as_ptr(), k.as_ptr(), v.as_ptr()) };
}

extern "C" fn dump_line(_ctx: *mut c_void, key: RStr<'_>, value: RStr<'_>) {
    print_line(key.as_str(), value.as_str());
}

pub(crate) unsafe extern "C" fn dump_plugin() {
    guarded("dump_plugin", (), || {
        print_line("rustshim_version", env!("CARGO_PKG_VERSION"));
        print_line("rustshim_api_version", ABI_VERSION);
        print_line(
            "rustshim_server_version",
            services::server_version().unwrap_or("unknown"),
        );
        print_line(
            "rustshim_server_optional_functions",
            &server().optional_features().join(","),
        );
        let g = match config::plugin_if_given() {
            Ok(Some(g)) => g,
            Ok(None) => {
                print_line("rustshim_plugin", "(none: add plugin=PATH)");
                return;
            }
            Err(msg) => {
                report(libc::EINVAL, &format!("rustshim: {msg}"));
                return;
            }
        };
        let m = &g.module;
        print_line("rustshim_plugin_path", &g.source.display().to_string());
        print_line("rustshim_plugin_name", m.name().as_str());
        for (key, value) in [
            ("rustshim_plugin_longname", m.longname()),
            ("rustshim_plugin_version", m.version()),
            ("rustshim_plugin_description", m.description()),
            ("rustshim_plugin_magic_config_key", m.magic_config_key()),
        ] {
            if let ROption::RSome(v) = value {
                print_line(key, v.as_str());
            }
        }
        print_line("rustshim_plugin_api_version", &g.abi_version);
        print_line("rustshim_plugin_build", m.build_info().as_str());
        print_line(
            "rustshim_plugin_panic",
            if m.panic_unwinds() { "unwind" } else { "abort" },
        );
        if let Ok(model) = g.thread_model() {
            print_line("rustshim_plugin_thread_model", model.name());
        }
        if let ROption::RSome(help) = m.config_help() {
            for (i, line) in help.as_str().lines().enumerate() {
                print_line(&format!("rustshim_plugin_config_help_{i}"), line);
            }
        }
        for name in g.implemented() {
            print_line(&format!("rustshim_has_{name}"), "1");
        }
        if let Some(f) = m.dump_plugin() {
            // SAFETY: the instance belongs to this module.
            unsafe {
                f(
                    g.instance,
                    DumpSink {
                        ctx: ptr::null_mut(),
                        line: dump_line,
                    },
                )
            };
            services::log_recorded_error();
        }
    })
}

// ---- Before a connection is opened ----

pub(crate) unsafe extern "C" fn preconnect(readonly: c_int) -> c_int {
    guarded("preconnect", -1, || {
        let Some(g) = config::current() else { return 0 };
        match g.module.preconnect() {
            // SAFETY: the instance belongs to this module.
            Some(f) => forward(unsafe { f(g.instance, readonly != 0) }),
            None => 0,
        }
    })
}

extern "C" fn add_export(ctx: *mut c_void, name: RStr<'_>, description: ROption<RStr<'_>>) -> i32 {
    let Some(add) = server().add_export else {
        return libc::ENOTSUP;
    };
    let Ok(name_c) = CString::new(name.as_str()) else {
        nbdkit_c::error(&format!(
            "list_exports: export name '{}' contains a NUL byte",
            name.as_str().escape_debug()
        ));
        return libc::EINVAL;
    };
    let description_c = match description.into_option().map(|d| CString::new(d.as_str())) {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(_)) => {
            nbdkit_c::error(&format!(
                "list_exports: description of '{}' contains a NUL byte",
                name.as_str()
            ));
            return libc::EINVAL;
        }
    };
    let description_p = description_c.as_ref().map_or(ptr::null(), |d| d.as_ptr());
    // SAFETY: `ctx` is the `nbdkit_exports` list of this call; nbdkit copies both strings.
    match unsafe { add(ctx.cast(), name_c.as_ptr(), description_p) } {
        0 => 0,
        _ => libc::EINVAL,
    }
}

extern "C" fn use_default_export(ctx: *mut c_void) -> i32 {
    let Some(f) = server().use_default_export else {
        return libc::ENOTSUP;
    };
    // SAFETY: `ctx` is the `nbdkit_exports` list of this call.
    match unsafe { f(ctx.cast()) } {
        0 => 0,
        _ => libc::EINVAL,
    }
}

pub(crate) unsafe extern "C" fn list_exports(
    readonly: c_int,
    is_tls: c_int,
    exports: *mut NbdkitExports,
) -> c_int {
    guarded("list_exports", -1, || {
        let f = config::current().and_then(|g| g.module.list_exports().map(|f| (g, f)));
        match f {
            Some((g, f)) => {
                let sink = ExportSink {
                    ctx: exports.cast(),
                    add: add_export,
                    use_default: use_default_export,
                };
                // SAFETY: the instance belongs to this module; the sink lives for the call.
                forward(unsafe { f(g.instance, readonly != 0, is_tls != 0, sink) })
            }
            None => match use_default_export(exports.cast()) {
                0 => 0,
                errno => {
                    report(errno, "");
                    -1
                }
            },
        }
    })
}

/// The longest export name or description nbdkit accepts (longer ones it ignores).
const MAX_STRING: usize = 4096;

/// Hands a plugin string to nbdkit: interned (nbdkit frees it at the right time), or NULL with
/// an error if it cannot be a C string.
fn intern(callback: &str, s: &str) -> *const c_char {
    let Ok(c) = CString::new(s) else {
        report(
            libc::EINVAL,
            &format!(
                "{callback}: the plugin returned a string with a NUL byte: '{}'",
                s.escape_debug()
            ),
        );
        return ptr::null();
    };
    match server().strdup_intern {
        // SAFETY: a NUL-terminated string; nbdkit copies it and owns the copy.
        Some(f) => unsafe { f(c.as_ptr()) },
        // Only nbdkit < 1.24 lacks interning (and calls neither callback): keep it forever.
        None => c.into_raw(),
    }
}

pub(crate) unsafe extern "C" fn default_export(readonly: c_int, is_tls: c_int) -> *const c_char {
    guarded("default_export", ptr::null(), || {
        let Some(g) = config::current() else {
            return c"".as_ptr();
        };
        let Some(f) = g.module.default_export() else {
            return c"".as_ptr();
        };
        let mut name = RString::new();
        // SAFETY: the instance belongs to this module.
        if unsafe { f(g.instance, readonly != 0, is_tls != 0, &mut name) } < 0 {
            report_failure();
            return ptr::null();
        }
        if name.len() > MAX_STRING {
            let msg = format!(
                "{}: default_export returned a name of {} bytes, longer than NBD allows ({MAX_STRING})",
                g.name(),
                name.len()
            );
            report(libc::EINVAL, &msg);
            return ptr::null();
        }
        intern("default_export", name.as_str())
    })
}

// ---- A connection ----

/// What nbdkit holds as the handle of one open connection.
pub struct Connection {
    /// The generation that opened it, kept until it closes.
    generation: Arc<Generation>,
    /// The plugin's own handle.
    handle: HandlePtr,
    /// The plugin's `can_zero` answer (`UNKNOWN` until asked), which `can_fast_zero` needs.
    can_zero: AtomicI32,
}

const UNKNOWN: i32 = i32::MIN;

/// The connection behind an nbdkit handle.
///
/// # Safety
/// `h` must be a handle returned by [`open`] and not yet passed to [`close`].
#[inline(always)]
unsafe fn conn<'a>(h: *mut c_void) -> &'a Connection {
    // SAFETY: the caller's contract; `open` leaked a `Box<Connection>`.
    unsafe { &*(h as *const Connection) }
}

pub(crate) unsafe extern "C" fn open(readonly: c_int) -> *mut c_void {
    guarded("open", ptr::null_mut(), || {
        let Some(generation) = config::current() else {
            report(libc::EIO, "rustshim: open without a loaded plugin");
            return ptr::null_mut();
        };
        let mut handle = HandlePtr(ptr::null_mut());
        // SAFETY: the instance belongs to this module.
        if unsafe { (generation.module.open())(generation.instance, readonly != 0, &mut handle) }
            < 0
        {
            report_failure();
            return ptr::null_mut();
        }
        Box::into_raw(Box::new(Connection {
            generation,
            handle,
            can_zero: AtomicI32::new(UNKNOWN),
        }))
        .cast()
    })
}

pub(crate) unsafe extern "C" fn close(h: *mut c_void) {
    guarded("close", (), || {
        // SAFETY: nbdkit passes a handle from `open` exactly once to `close`.
        let c = unsafe { Box::from_raw(h as *mut Connection) };
        // SAFETY: the handle belongs to this generation's instance and is not used again.
        unsafe { (c.generation.module.close())(c.generation.instance, c.handle) };
        services::log_recorded_error();
    })
}

pub(crate) unsafe extern "C" fn get_size(h: *mut c_void) -> i64 {
    // SAFETY: nbdkit passes a live handle.
    let c = unsafe { conn(h) };
    let mut size = 0u64;
    // SAFETY: the handle belongs to this generation's instance.
    if unsafe { (c.generation.module.get_size())(c.generation.instance, c.handle, &mut size) } < 0 {
        report_failure();
        return -1;
    }
    match i64::try_from(size) {
        Ok(size) => size,
        Err(_) => {
            report(
                libc::EINVAL,
                &format!(
                    "{}: get_size returned {size}, larger than nbdkit allows ({})",
                    c.generation.name(),
                    i64::MAX
                ),
            );
            -1
        }
    }
}

pub(crate) unsafe extern "C" fn export_description(h: *mut c_void) -> *const c_char {
    // SAFETY: nbdkit passes a live handle.
    let c = unsafe { conn(h) };
    let Some(f) = c.generation.module.export_description() else {
        return ptr::null();
    };
    guarded("export_description", ptr::null(), || {
        let mut description = RString::new();
        // SAFETY: the handle belongs to this generation's instance.
        if unsafe { f(c.generation.instance, c.handle, &mut description) } < 0 {
            report_failure();
            return ptr::null();
        }
        // A description is only informative: cut it to what NBD carries (on a character
        // boundary) rather than lose it.
        let mut text = description.as_str();
        if text.len() > MAX_STRING {
            let mut end = MAX_STRING;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            nbdkit_c::debug(&format!(
                "rustshim: {}: export description of {} bytes cut to {end}",
                c.generation.name(),
                text.len()
            ));
            text = &text[..end];
        }
        intern("export_description", text)
    })
}

pub(crate) unsafe extern "C" fn block_size(
    h: *mut c_void,
    minimum: *mut u32,
    preferred: *mut u32,
    maximum: *mut u32,
) -> c_int {
    // SAFETY: nbdkit passes a live handle and valid out pointers.
    let (c, minimum, preferred, maximum) =
        unsafe { (conn(h), &mut *minimum, &mut *preferred, &mut *maximum) };
    let Some(f) = c.generation.module.block_size() else {
        (*minimum, *preferred, *maximum) = (0, 0, 0);
        return 0;
    };
    // SAFETY: the handle belongs to this generation's instance.
    if forward(unsafe { f(c.generation.instance, c.handle, minimum, preferred, maximum) }) < 0 {
        return -1;
    }
    match check_block_size(*minimum, *preferred, *maximum) {
        Ok(()) => 0,
        Err(why) => {
            let msg = format!(
                "{}: block_size returned minimum {} preferred {} maximum {}: {why}",
                c.generation.name(),
                *minimum,
                *preferred,
                *maximum
            );
            report(libc::EINVAL, &msg);
            -1
        }
    }
}

/// nbdkit's rules for block size constraints (all zero: none), checked before nbdkit sees them
/// so the message can name the plugin and the values.
pub fn check_block_size(minimum: u32, preferred: u32, maximum: u32) -> Result<(), &'static str> {
    if (minimum, preferred, maximum) == (0, 0, 0) {
        return Ok(());
    }
    if !(1..=65536).contains(&minimum) || !minimum.is_power_of_two() {
        return Err("the minimum must be a power of 2 from 1 to 64K");
    }
    if !(512..=32 << 20).contains(&preferred) || !preferred.is_power_of_two() {
        return Err("the preferred size must be a power of 2 from 512 to 32M");
    }
    if maximum != u32::MAX && maximum % minimum != 0 {
        return Err("the maximum must be a multiple of the minimum, or u32::MAX for no limit");
    }
    if minimum > preferred || preferred > maximum {
        return Err("they must be ordered minimum <= preferred <= maximum");
    }
    Ok(())
}

/// Calls an optional `can_*` callback, or answers `default` as nbdkit would without it.
#[inline(always)]
fn ask(
    c: &Connection,
    slot: Option<unsafe extern "C" fn(rustshim_plugin_api::abi::InstancePtr, HandlePtr) -> i32>,
    default: impl FnOnce() -> c_int,
) -> c_int {
    match slot {
        // SAFETY: the handle belongs to this generation's instance.
        Some(f) => forward(unsafe { f(c.generation.instance, c.handle) }),
        None => default(),
    }
}

pub(crate) unsafe extern "C" fn can_write(h: *mut c_void) -> c_int {
    // SAFETY: nbdkit passes a live handle.
    let c = unsafe { conn(h) };
    let m = &c.generation.module;
    ask(c, m.can_write(), || m.pwrite().is_some() as c_int)
}

pub(crate) unsafe extern "C" fn can_flush(h: *mut c_void) -> c_int {
    // SAFETY: nbdkit passes a live handle.
    let c = unsafe { conn(h) };
    let m = &c.generation.module;
    ask(c, m.can_flush(), || m.flush().is_some() as c_int)
}

pub(crate) unsafe extern "C" fn is_rotational(h: *mut c_void) -> c_int {
    // SAFETY: nbdkit passes a live handle.
    let c = unsafe { conn(h) };
    ask(c, c.generation.module.is_rotational(), || 0)
}

pub(crate) unsafe extern "C" fn can_trim(h: *mut c_void) -> c_int {
    // SAFETY: nbdkit passes a live handle.
    let c = unsafe { conn(h) };
    let m = &c.generation.module;
    ask(c, m.can_trim(), || m.trim().is_some() as c_int)
}

/// The plugin's `can_zero` answer, asked at most once per connection as nbdkit does.
fn plugin_can_zero(c: &Connection) -> c_int {
    let cached = c.can_zero.load(Ordering::Acquire);
    if cached != UNKNOWN {
        return cached;
    }
    let m = &c.generation.module;
    // Without `zero`, answering 0 makes nbdkit emulate zeroing with `pwrite` in its backend,
    // which is correct on every version (unlike its fallback after a failed `zero`).
    let answer = ask(c, m.can_zero(), || m.zero().is_some() as c_int);
    if answer >= 0 {
        c.can_zero.store(answer, Ordering::Release);
    }
    answer
}

pub(crate) unsafe extern "C" fn can_zero(h: *mut c_void) -> c_int {
    // SAFETY: nbdkit passes a live handle.
    plugin_can_zero(unsafe { conn(h) })
}

pub(crate) unsafe extern "C" fn can_fast_zero(h: *mut c_void) -> c_int {
    // SAFETY: nbdkit passes a live handle.
    let c = unsafe { conn(h) };
    let m = &c.generation.module;
    // nbdkit's default: fast zero is "supported" when zeroing would be emulated anyway (it then
    // fails fast), otherwise not.
    ask(c, m.can_fast_zero(), || {
        if m.zero().is_none() {
            return 1;
        }
        match plugin_can_zero(c) {
            -1 => -1,
            can => (can == 0) as c_int,
        }
    })
}

pub(crate) unsafe extern "C" fn can_fua(h: *mut c_void) -> c_int {
    // SAFETY: nbdkit passes a live handle.
    let c = unsafe { conn(h) };
    let m = &c.generation.module;
    ask(c, m.can_fua(), || {
        if m.flush().is_some() {
            FUA_EMULATE
        } else {
            FUA_NONE
        }
    })
}

pub(crate) unsafe extern "C" fn can_multi_conn(h: *mut c_void) -> c_int {
    // SAFETY: nbdkit passes a live handle.
    let c = unsafe { conn(h) };
    ask(c, c.generation.module.can_multi_conn(), || 0)
}

pub(crate) unsafe extern "C" fn can_extents(h: *mut c_void) -> c_int {
    // SAFETY: nbdkit passes a live handle.
    let c = unsafe { conn(h) };
    let m = &c.generation.module;
    ask(c, m.can_extents(), || m.extents().is_some() as c_int)
}

pub(crate) unsafe extern "C" fn can_cache(h: *mut c_void) -> c_int {
    // SAFETY: nbdkit passes a live handle.
    let c = unsafe { conn(h) };
    let m = &c.generation.module;
    ask(c, m.can_cache(), || {
        if m.cache().is_some() {
            CACHE_NATIVE
        } else {
            CACHE_NONE
        }
    })
}

// ---- Serving data ----

pub(crate) unsafe extern "C" fn pread(
    h: *mut c_void,
    buf: *mut c_void,
    count: u32,
    offset: u64,
    flags: u32,
) -> c_int {
    // SAFETY: nbdkit passes a live handle.
    let c = unsafe { conn(h) };
    // SAFETY: the handle belongs to this generation's instance; nbdkit's buffer holds `count`
    // bytes for the duration of the call.
    forward(unsafe {
        (c.generation.module.pread())(
            c.generation.instance,
            c.handle,
            buf.cast(),
            count,
            offset,
            flags,
        )
    })
}

pub(crate) unsafe extern "C" fn pwrite(
    h: *mut c_void,
    buf: *const c_void,
    count: u32,
    offset: u64,
    flags: u32,
) -> c_int {
    // SAFETY: nbdkit passes a live handle.
    let c = unsafe { conn(h) };
    match c.generation.module.pwrite() {
        // SAFETY: as for pread.
        Some(f) => forward(unsafe {
            f(
                c.generation.instance,
                c.handle,
                buf.cast(),
                count,
                offset,
                flags,
            )
        }),
        None => {
            report(libc::EROFS, "");
            -1
        }
    }
}

pub(crate) unsafe extern "C" fn flush(h: *mut c_void, flags: u32) -> c_int {
    // SAFETY: nbdkit passes a live handle.
    let c = unsafe { conn(h) };
    match c.generation.module.flush() {
        // SAFETY: the handle belongs to this generation's instance.
        Some(f) => forward(unsafe { f(c.generation.instance, c.handle, flags) }),
        None => {
            report(libc::EINVAL, "");
            -1
        }
    }
}

pub(crate) unsafe extern "C" fn trim(h: *mut c_void, count: u32, offset: u64, flags: u32) -> c_int {
    // SAFETY: nbdkit passes a live handle.
    let c = unsafe { conn(h) };
    match c.generation.module.trim() {
        // SAFETY: the handle belongs to this generation's instance.
        Some(f) => forward(unsafe { f(c.generation.instance, c.handle, count, offset, flags) }),
        None => {
            report(libc::EINVAL, "");
            -1
        }
    }
}

/// Zeroes from a static buffer, written with `pwrite` in chunks.
static ZEROES: [u8; 1 << 20] = [0; 1 << 20];

/// Writes zeroes with the plugin's `pwrite`, as nbdkit does when `zero` is missing or declines.
fn write_zeroes(c: &Connection, mut count: u32, mut offset: u64, flags: u32) -> c_int {
    let Some(pwrite) = c.generation.module.pwrite() else {
        report(libc::EROFS, "");
        return -1;
    };
    const _: () = assert!(ZEROES.len() <= MAX_REQUEST_SIZE);
    while count > 0 {
        let n = count.min(ZEROES.len() as u32);
        // FUA applies to every chunk: the whole range must be durable when this returns.
        let chunk_flags = flags & FLAG_FUA;
        // SAFETY: the handle belongs to this generation's instance; ZEROES holds `n` bytes and
        // is never written.
        if unsafe {
            pwrite(
                c.generation.instance,
                c.handle,
                ZEROES.as_ptr(),
                n,
                offset,
                chunk_flags,
            )
        } < 0
        {
            report_failure();
            return -1;
        }
        count -= n;
        offset += u64::from(n);
    }
    0
}

pub(crate) unsafe extern "C" fn zero(h: *mut c_void, count: u32, offset: u64, flags: u32) -> c_int {
    // SAFETY: nbdkit passes a live handle.
    let c = unsafe { conn(h) };
    let fast = flags & FLAG_FAST_ZERO != 0;
    let Some(f) = c.generation.module.zero() else {
        if fast {
            report(libc::ENOTSUP, "");
            return -1;
        }
        return write_zeroes(c, count, offset, flags);
    };
    // SAFETY: the handle belongs to this generation's instance.
    if unsafe { f(c.generation.instance, c.handle, count, offset, flags) } == 0 {
        return 0;
    }
    let (errno, msg) = services::take_error();
    if !fast && (errno == libc::ENOTSUP || errno == libc::EOPNOTSUPP) {
        return write_zeroes(c, count, offset, flags);
    }
    report(errno, &msg);
    -1
}

pub(crate) unsafe extern "C" fn cache(
    h: *mut c_void,
    count: u32,
    offset: u64,
    flags: u32,
) -> c_int {
    // SAFETY: nbdkit passes a live handle.
    let c = unsafe { conn(h) };
    match c.generation.module.cache() {
        // SAFETY: the handle belongs to this generation's instance.
        Some(f) => forward(unsafe { f(c.generation.instance, c.handle, count, offset, flags) }),
        None => 0,
    }
}

/// The state of one `extents` call: nbdkit's list and the range still to be covered.
struct ExtentClip {
    list: *mut NbdkitExtents,
    /// Where the next extent must start.
    next: u64,
    /// End of the requested range.
    end: u64,
}

/// Adds one plugin extent, clipped to the requested range and to what is already covered:
/// nbdkit never sees an extent outside the request (nbdkit < 1.44 can assert on one, CVE-2025-47711)
/// or overlapping a previous one. A gap is refused.
extern "C" fn add_extent(ctx: *mut c_void, offset: u64, length: u64, kind: u32) -> i32 {
    // SAFETY: `ctx` is the `ExtentClip` of the running `extents` call.
    let clip = unsafe { &mut *(ctx as *mut ExtentClip) };
    let (start, stop) = match clip_extent(clip.next, clip.end, offset, length) {
        Clipped::Skip => return 0,
        Clipped::Gap => {
            nbdkit_c::error(&format!(
                "extents: the plugin left a gap: extent at {offset} but the previous one ended at {}",
                clip.next
            ));
            return libc::ERANGE;
        }
        Clipped::Add { start, stop } => (start, stop),
    };
    let Some(add) = server().add_extent else {
        return libc::ENOTSUP;
    };
    // SAFETY: `list` is nbdkit's extents list for this call; nbdkit validates again.
    if unsafe { add(clip.list, start, stop - start, kind & 3) } != 0 {
        return libc::ERANGE;
    }
    clip.next = stop;
    0
}

/// What becomes of one extent a plugin reports.
#[derive(Debug, PartialEq, Eq)]
pub enum Clipped {
    /// Nothing of it is new (zero length, already covered, or past the end).
    Skip,
    /// It starts after the covered part ends.
    Gap,
    /// Pass `[start, stop)` on.
    Add { start: u64, stop: u64 },
}

/// Clips the extent `[offset, offset + length)` to the part after `next` (the end of what is
/// covered so far) and before `end` (the end of the request).
pub fn clip_extent(next: u64, end: u64, offset: u64, length: u64) -> Clipped {
    let stop = offset.saturating_add(length).min(end);
    if stop <= next {
        Clipped::Skip
    } else if offset > next {
        Clipped::Gap
    } else {
        Clipped::Add { start: next, stop }
    }
}

pub(crate) unsafe extern "C" fn extents(
    h: *mut c_void,
    count: u32,
    offset: u64,
    flags: u32,
    list: *mut NbdkitExtents,
) -> c_int {
    // SAFETY: nbdkit passes a live handle.
    let c = unsafe { conn(h) };
    let mut clip = ExtentClip {
        list,
        next: offset,
        end: offset.saturating_add(count.into()),
    };
    let Some(f) = c.generation.module.extents() else {
        // nbdkit's default: the whole range is allocated data.
        return match add_extent(
            (&mut clip as *mut ExtentClip).cast(),
            offset,
            count.into(),
            0,
        ) {
            0 => 0,
            errno => {
                report(errno, "");
                -1
            }
        };
    };
    let sink = ExtentSink {
        ctx: (&mut clip as *mut ExtentClip).cast(),
        add: add_extent,
    };
    // SAFETY: the handle belongs to this generation's instance; the sink outlives the call.
    forward(unsafe { f(c.generation.instance, c.handle, count, offset, flags, sink) })
}

/// The text of `nbdkit rustshim --help`.
pub const CONFIG_HELP: &CStr =
    c"plugin=PATH|NAME       (required) The Rust plugin to load: a .so built with
                       rustshim-plugin-api. A NAME (no '/' or '.') is looked up as
                       librustshim_NAME.so or libNAME.so in $RUSTSHIM_PLUGIN_PATH,
                       then in rustshim/ beside this shim. The first bare argument
                       is the same; later bare arguments go to the plugin's magic key.
allow-insecure-plugin=true
                       Load the plugin even if others could write to it or to a
                       directory above it (refused by default).
reload=watch           Load each new build of the plugin file while serving:
                       new connections get the new build, open ones keep theirs
                       (default: reload=off).
[KEY=VALUE ...]        Anything else is the plugin's own configuration:
                       see nbdkit rustshim plugin=PATH --dump-plugin.";

/// The shim's magic key as a C string.
pub const MAGIC_CONFIG_KEY: &CStr = c"rustshim-bare-argument";
const _: () = assert!(MAGIC_CONFIG_KEY.to_bytes().len() == BARE_ARGUMENT_KEY.len());

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift64*), so the properties need no extra crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Whatever a plugin reports, what reaches nbdkit is ascending, contiguous, starts at the
    /// request's offset, stays inside the request, and covers every byte the plugin covered
    /// contiguously from the start.
    #[test]
    fn clipped_extents_are_always_valid() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        for _ in 0..20_000 {
            let offset = match rng.below(3) {
                0 => rng.below(1 << 20),
                1 => u64::MAX - rng.below(1 << 20),
                _ => rng.next(),
            };
            let end = offset.saturating_add(rng.below(1 << 20) + 1);
            let mut next = offset;
            let mut passed: Vec<(u64, u64)> = Vec::new();
            let mut gap = false;
            for _ in 0..rng.below(8) {
                // Extents near the request, some sane, some not.
                let start = match rng.below(4) {
                    0 => next,
                    1 => next.saturating_sub(rng.below(4096)),
                    2 => next.saturating_add(rng.below(4096)),
                    _ => rng.next(),
                };
                let length = match rng.below(4) {
                    0 => 0,
                    1 => u64::MAX - rng.below(10),
                    _ => rng.below(1 << 19),
                };
                match clip_extent(next, end, start, length) {
                    Clipped::Skip => assert!(start.saturating_add(length).min(end) <= next),
                    Clipped::Gap => {
                        assert!(start > next);
                        gap = true;
                        break;
                    }
                    Clipped::Add { start: s, stop } => {
                        assert_eq!(s, next, "contiguous");
                        assert!(s < stop && stop <= end, "inside the request");
                        assert!(
                            start <= s && stop <= start.saturating_add(length),
                            "part of what the plugin said"
                        );
                        passed.push((s, stop));
                        next = stop;
                    }
                }
            }
            if let Some(first) = passed.first() {
                assert_eq!(first.0, offset, "the first extent covers the offset");
            }
            assert!(gap || passed.windows(2).all(|w| w[0].1 == w[1].0));
        }
    }

    #[test]
    fn sane_extents_pass_unchanged() {
        assert_eq!(
            clip_extent(100, 200, 100, 50),
            Clipped::Add {
                start: 100,
                stop: 150
            }
        );
        assert_eq!(
            clip_extent(150, 200, 150, 500),
            Clipped::Add {
                start: 150,
                stop: 200
            }
        );
        assert_eq!(clip_extent(100, 200, 100, 0), Clipped::Skip);
        assert_eq!(clip_extent(100, 200, 120, 10), Clipped::Gap);
    }

    #[test]
    fn block_size_rules_match_nbdkits() {
        assert_eq!(check_block_size(0, 0, 0), Ok(()));
        assert_eq!(check_block_size(1, 512, u32::MAX), Ok(()));
        assert_eq!(check_block_size(512, 4096, 32 << 20), Ok(()));
        assert!(check_block_size(0, 512, 4096).is_err());
        assert!(check_block_size(1 << 17, 1 << 17, 1 << 17).is_err());
        assert!(check_block_size(512, 1000, 4096).is_err());
        assert!(check_block_size(512, 64 << 20, u32::MAX).is_err());
        assert!(check_block_size(512, 4096, 4097).is_err());
        assert!(check_block_size(4096, 512, 4096).is_err());
        // Random triples never panic, and accepted ones satisfy every rule.
        let mut rng = Rng(42);
        for _ in 0..100_000 {
            let pick = |rng: &mut Rng| match rng.below(3) {
                0 => 1u32 << rng.below(32),
                1 => rng.next() as u32,
                _ => u32::MAX,
            };
            let (a, b, c) = (pick(&mut rng), pick(&mut rng), pick(&mut rng));
            if check_block_size(a, b, c).is_ok() && (a, b, c) != (0, 0, 0) {
                assert!(
                    a.is_power_of_two()
                        && a <= 65536
                        && b.is_power_of_two()
                        && (512..=32 << 20).contains(&b)
                );
                assert!(a <= b && b <= c && (c == u32::MAX || c % a == 0));
            }
        }
    }
}
