//! The callbacks the shim registers with nbdkit ([`PLUGIN`]), in nbdkit's lifecycle order.
//!
//! nbdkit copies `struct nbdkit_plugin` once, before the Rust plugin is known, so every slot is
//! installed and each one reproduces, from the plugin's vtable, what nbdkit does for a C plugin
//! that leaves the callback out (nbdkit-plugin(3); `server/plugins.c`). Two of those defaults
//! are deliberately not left to nbdkit: `can_fua` (nbdkit would advertise FUA and call `flush`
//! even when `can_flush` said no) and `zero` failing with `ENOTSUP` (nbdkit < 1.42.6 then
//! zeroes only the first 64 MiB), so the shim writes the zeroes itself.
//!
//! # The two contracts behind the `unsafe` here
//! * nbdkit's: a callback that takes a handle gets one that `open` returned and that has not
//!   been given to `close` (`Connection::from_handle`); pointers it passes (strings, buffers,
//!   lists, out parameters) are valid for the call.
//! * The plugin's (`rustshim_plugin_api::abi`): it gets back its own instance and, with it, a
//!   handle that instance opened, and buffers valid for the call. A [`Connection`] pairs a
//!   handle with the generation that opened it, so every `f(c.instance(), c.handle, …)` keeps
//!   that promise; the other callbacks pass a generation's instance to its own module.

use std::ffi::{c_char, c_int, c_void};
use std::ptr;
use std::sync::atomic::Ordering;

use rustshim_plugin_api::abi::{HandlePtr, InstancePtr, PluginModuleRef, RString, ABI_VERSION};

use super::config::{self, CONFIG_HELP, MAGIC_CONFIG_KEY};
use super::Plugin;
use crate::connection::UNKNOWN;
use crate::containment::{self, ExtentClip};
use crate::failure::Failure;
use crate::ffi::{dump_generation, fail, forward, guarded, print_line, shim_status, status, utf8};
use crate::generation::Lifecycle;
use crate::nbdkit_c::{
    server, Handle, NbdkitExports, NbdkitExtents, NbdkitPlugin, Registration, API_VERSION,
    CACHE_NATIVE, CACHE_NONE, FLAG_FAST_ZERO, FLAG_FUA, FUA_EMULATE, FUA_NONE, MAX_REQUEST_SIZE,
    THREAD_MODEL_PARALLEL,
};
use crate::options::ReloadMode;
use crate::reload;
use crate::services::{self, report_failure};
use crate::serving;

/// What nbdkit copies at start-up (`plugin_init`): every callback is installed.
pub static PLUGIN: Registration = Registration(NbdkitPlugin {
    _struct_size: std::mem::size_of::<NbdkitPlugin>() as u64,
    _api_version: API_VERSION,
    // The loosest model; the plugin's own model is returned by `.thread_model`.
    _thread_model: THREAD_MODEL_PARALLEL,
    name: c"rustshim".as_ptr(),
    longname: c"nbdkit Rust plugin shim".as_ptr(),
    version: concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast(),
    description: c"Loads a Rust plugin built with rustshim-plugin-api (plugin=PATH) and forwards every nbdkit callback to it over a stable ABI.".as_ptr(),
    load: Some(load),
    unload: Some(unload),
    config: Some(config),
    config_complete: Some(config_complete),
    config_help: CONFIG_HELP.as_ptr(),
    open: Some(open),
    close: Some(close),
    get_size: Some(get_size),
    can_write: Some(can_write),
    can_flush: Some(can_flush),
    is_rotational: Some(is_rotational),
    can_trim: Some(can_trim),
    _pread_v1: ptr::null(),
    _pwrite_v1: ptr::null(),
    _flush_v1: ptr::null(),
    _trim_v1: ptr::null(),
    _zero_v1: ptr::null(),
    // Errors always go through nbdkit_set_error: Rust code may clobber errno before returning.
    errno_is_preserved: 0,
    dump_plugin: Some(dump_plugin),
    can_zero: Some(can_zero),
    can_fua: Some(can_fua),
    pread: Some(pread),
    pwrite: Some(pwrite),
    flush: Some(flush),
    trim: Some(trim),
    zero: Some(zero),
    magic_config_key: MAGIC_CONFIG_KEY.as_ptr(),
    can_multi_conn: Some(can_multi_conn),
    can_extents: Some(can_extents),
    extents: Some(extents),
    can_cache: Some(can_cache),
    cache: Some(cache),
    thread_model: Some(thread_model),
    can_fast_zero: Some(can_fast_zero),
    preconnect: Some(preconnect),
    get_ready: Some(get_ready),
    after_fork: Some(after_fork),
    list_exports: Some(list_exports),
    default_export: Some(default_export),
    export_description: Some(export_description),
    cleanup: Some(cleanup),
    block_size: Some(block_size),
});

/// A lifecycle step as messages name it: the callback's name in nbdkit-plugin(3) and in the
/// plugin's trait (`get_ready`), not the shim's type.
impl std::fmt::Display for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Lifecycle::ConfigComplete => "config_complete",
            Lifecycle::GetReady => "get_ready",
            Lifecycle::AfterFork => "after_fork",
        })
    }
}

/// What nbdkit holds as the plugin's handle of one open connection.
type Connection = crate::connection::Connection<PluginModuleRef>;

// ---- Loading and configuration ----

extern "C" fn load() {
    // The Rust plugin is not known yet (it arrives with `plugin=` in `config`); resolve nbdkit's
    // functions now so that later callbacks find them ready.
    let _ = server();
    crate::services::note_start_dir();
}

extern "C" fn unload() {
    guarded("unload", (), || {
        if let Some(generation) = serving::PLUGIN.retire() {
            generation.destroy();
        }
    })
}

unsafe extern "C" fn config(key: *const c_char, value: *const c_char) -> c_int {
    guarded("config", -1, || {
        // SAFETY: nbdkit's `config` arguments are such strings.
        let pair = unsafe { utf8("parameter key", key) }.and_then(|k| {
            // SAFETY: as above.
            let v = unsafe { utf8(&format!("value of parameter '{k}'"), value) }?;
            Ok((k, v))
        });
        // `config::config` words its own errors (the shim's start with `rustshim: `).
        status(
            pair.map_err(Failure::from_shim)
                .and_then(|(k, v)| config::config(k, v)),
        )
    })
}

extern "C" fn config_complete() -> c_int {
    guarded("config_complete", -1, || match config::ensure_loaded() {
        Ok(generation) => status(generation.lifecycle(Lifecycle::ConfigComplete)),
        Err(failure) => status(Err(failure)),
    })
}

extern "C" fn thread_model() -> c_int {
    guarded("thread_model", -1, || match config::plugin_if_given() {
        Err(failure) => status(Err(failure)),
        Ok(Some(generation)) => match generation.thread_model() {
            Ok(model) => {
                serving::PLUGIN.announce_thread_model(model as i32);
                model as c_int
            }
            Err(failure) => status(Err(failure)),
        },
        // `--dump-plugin` without a plugin.
        Ok(None) => THREAD_MODEL_PARALLEL,
    })
}

extern "C" fn get_ready() -> c_int {
    guarded("get_ready", -1, || match serving::current() {
        Some(_)
            if config::state().reload == ReloadMode::Watch
                && shim_status(reload::watch::check_settings()) < 0 =>
        {
            -1
        }
        Some(generation) => status(generation.lifecycle(Lifecycle::GetReady)),
        None => 0,
    })
}

extern "C" fn after_fork() -> c_int {
    guarded("after_fork", -1, || {
        let Some(generation) = serving::current() else {
            return 0;
        };
        if status(generation.lifecycle(Lifecycle::AfterFork)) < 0 {
            return -1;
        }
        if config::state().reload == ReloadMode::Watch {
            return shim_status(reload::watch::start_watcher(&Plugin));
        }
        0
    })
}

extern "C" fn cleanup() {
    guarded("cleanup", (), || {
        if let Some(generation) = serving::current() {
            generation.cleanup();
        }
    })
}

extern "C" fn dump_plugin() {
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
            Err(failure) => {
                status(Err(failure));
                return;
            }
        };
        let m = &g.module;
        let facts = [("rustshim_plugin_magic_config_key", m.magic_config_key())];
        dump_generation(&g, "rustshim_plugin", "rustshim_has_", &facts, || {
            print_line(
                "rustshim_plugin_panic",
                if m.panic_unwinds() { "unwind" } else { "abort" },
            );
            if let Ok(model) = g.thread_model() {
                print_line("rustshim_plugin_thread_model", model.name());
            }
        });
    })
}

// ---- Before a connection is opened ----

extern "C" fn preconnect(readonly: c_int) -> c_int {
    guarded("preconnect", -1, || {
        let Some(g) = serving::current() else {
            return 0;
        };
        match g.module.preconnect() {
            // SAFETY: the generation's own instance.
            Some(f) => forward(unsafe { f(g.instance, readonly != 0) }),
            None => 0,
        }
    })
}

unsafe extern "C" fn list_exports(
    readonly: c_int,
    is_tls: c_int,
    exports: *mut NbdkitExports,
) -> c_int {
    guarded("list_exports", -1, || {
        let f = serving::current().and_then(|g| g.module.list_exports().map(|f| (g, f)));
        match f {
            Some((g, f)) => {
                let sink = containment::export_sink(exports);
                // SAFETY: the generation's own instance; the sink adds to nbdkit's list of
                // this call.
                forward(unsafe { f(g.instance, readonly != 0, is_tls != 0, sink) })
            }
            None => match containment::add_default_export(exports) {
                0 => 0,
                errno => fail(errno),
            },
        }
    })
}

extern "C" fn default_export(readonly: c_int, is_tls: c_int) -> *const c_char {
    guarded("default_export", ptr::null(), || {
        let Some(g) = serving::current() else {
            return c"".as_ptr();
        };
        let Some(f) = g.module.default_export() else {
            return c"".as_ptr();
        };
        let mut name = RString::new();
        // SAFETY: the generation's own instance.
        if unsafe { f(g.instance, readonly != 0, is_tls != 0, &mut name) } < 0 {
            report_failure();
            return ptr::null();
        }
        let who = format!("rustshim: plugin '{}'", g.name());
        containment::default_export_answer(&who, name.as_str())
    })
}

// ---- A connection ----

extern "C" fn open(readonly: c_int) -> Handle {
    guarded("open", ptr::null_mut(), || {
        let Some(generation) = serving::current() else {
            Failure::new(libc::EIO, "rustshim: open without a loaded plugin").report();
            return ptr::null_mut();
        };
        let mut handle = HandlePtr(ptr::null_mut());
        // SAFETY: the generation's own instance.
        if unsafe { (generation.module.open())(generation.instance, readonly != 0, &mut handle) }
            < 0
        {
            report_failure();
            return ptr::null_mut();
        }
        Connection::new(generation, handle).into_handle()
    })
}

unsafe extern "C" fn close(h: Handle) {
    guarded("close", (), || {
        // SAFETY: nbdkit passes a handle from `open` exactly once to `close`, its last use.
        let c = unsafe { Connection::from_close(h) };
        unsafe { (c.module().close())(c.instance(), c.handle) };
        services::log_recorded_error();
    })
}

unsafe extern "C" fn get_size(h: Handle) -> i64 {
    let c = unsafe { Connection::from_handle(h) };
    let mut size = 0u64;
    if unsafe { (c.module().get_size())(c.instance(), c.handle, &mut size) } < 0 {
        report_failure();
        return -1;
    }
    match i64::try_from(size) {
        Ok(size) => size,
        Err(_) => {
            Failure::invalid(format!(
                "rustshim: plugin '{}': get_size returned {size}, larger than nbdkit allows ({})",
                c.generation.name(),
                i64::MAX
            ))
            .report();
            -1
        }
    }
}

unsafe extern "C" fn export_description(h: Handle) -> *const c_char {
    let c = unsafe { Connection::from_handle(h) };
    let Some(f) = c.module().export_description() else {
        return ptr::null();
    };
    guarded("export_description", ptr::null(), || {
        let mut description = RString::new();
        if unsafe { f(c.instance(), c.handle, &mut description) } < 0 {
            report_failure();
            return ptr::null();
        }
        let text = containment::cut_description(c.generation.name(), description.as_str());
        containment::intern("export_description", text)
    })
}

unsafe extern "C" fn block_size(
    h: Handle,
    minimum: *mut u32,
    preferred: *mut u32,
    maximum: *mut u32,
) -> c_int {
    // SAFETY: nbdkit's out pointers are valid for the call.
    let (c, minimum, preferred, maximum) = unsafe {
        (
            Connection::from_handle(h),
            &mut *minimum,
            &mut *preferred,
            &mut *maximum,
        )
    };
    let Some(f) = c.module().block_size() else {
        (*minimum, *preferred, *maximum) = (0, 0, 0);
        return 0;
    };
    if forward(unsafe { f(c.instance(), c.handle, minimum, preferred, maximum) }) < 0 {
        return -1;
    }
    let who = format!("rustshim: plugin '{}'", c.generation.name());
    containment::block_size_answer(&who, *minimum, *preferred, *maximum)
}

/// Calls an optional `can_*` callback, or answers `default` as nbdkit would without it.
#[inline(always)]
fn ask(
    c: &Connection,
    slot: Option<unsafe extern "C" fn(InstancePtr, HandlePtr) -> i32>,
    default: impl FnOnce() -> c_int,
) -> c_int {
    match slot {
        Some(f) => forward(unsafe { f(c.instance(), c.handle) }),
        None => default(),
    }
}

/// The `can_*` callbacks: the plugin's answer, or without its callback nbdkit's default,
/// computed from the module `$m` (nbdkit-plugin(3)).
macro_rules! queries {
    ($($name:ident: |$m:ident| $default:expr;)*) => {$(
        unsafe extern "C" fn $name(h: Handle) -> c_int {
            let c = unsafe { Connection::from_handle(h) };
            let $m = c.module();
            ask(c, $m.$name(), || $default)
        }
    )*};
}

queries! {
    can_write: |m| m.pwrite().is_some() as c_int;
    can_flush: |m| m.flush().is_some() as c_int;
    is_rotational: |_m| 0;
    can_trim: |m| m.trim().is_some() as c_int;
    can_multi_conn: |_m| 0;
    can_extents: |m| m.extents().is_some() as c_int;
    // Unlike nbdkit, which would advertise FUA even when `can_flush` said no.
    can_fua: |m| if m.flush().is_some() { FUA_EMULATE } else { FUA_NONE };
    can_cache: |m| if m.cache().is_some() { CACHE_NATIVE } else { CACHE_NONE };
}

/// The plugin's `can_zero` answer, asked at most once per connection as nbdkit does.
fn plugin_can_zero(c: &Connection) -> c_int {
    let cached = c.can_zero.load(Ordering::Acquire);
    if cached != UNKNOWN {
        return cached;
    }
    let m = c.module();
    // Without `zero`, answering 0 makes nbdkit emulate zeroing with `pwrite` in its backend,
    // which is correct on every version (unlike its fallback after a failed `zero`).
    let answer = ask(c, m.can_zero(), || m.zero().is_some() as c_int);
    if answer >= 0 {
        c.can_zero.store(answer, Ordering::Release);
    }
    answer
}

unsafe extern "C" fn can_zero(h: Handle) -> c_int {
    plugin_can_zero(unsafe { Connection::from_handle(h) })
}

unsafe extern "C" fn can_fast_zero(h: Handle) -> c_int {
    let c = unsafe { Connection::from_handle(h) };
    let m = c.module();
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

// ---- Serving data ----

unsafe extern "C" fn pread(
    h: Handle,
    buf: *mut c_void,
    count: u32,
    offset: u64,
    flags: u32,
) -> c_int {
    let c = unsafe { Connection::from_handle(h) };
    forward(unsafe {
        (c.module().pread())(c.instance(), c.handle, buf.cast(), count, offset, flags)
    })
}

unsafe extern "C" fn pwrite(
    h: Handle,
    buf: *const c_void,
    count: u32,
    offset: u64,
    flags: u32,
) -> c_int {
    let c = unsafe { Connection::from_handle(h) };
    match c.module().pwrite() {
        Some(f) => forward(unsafe { f(c.instance(), c.handle, buf.cast(), count, offset, flags) }),
        None => fail(libc::EROFS),
    }
}

unsafe extern "C" fn flush(h: Handle, flags: u32) -> c_int {
    let c = unsafe { Connection::from_handle(h) };
    match c.module().flush() {
        Some(f) => forward(unsafe { f(c.instance(), c.handle, flags) }),
        None => fail(libc::EINVAL),
    }
}

unsafe extern "C" fn trim(h: Handle, count: u32, offset: u64, flags: u32) -> c_int {
    let c = unsafe { Connection::from_handle(h) };
    match c.module().trim() {
        Some(f) => forward(unsafe { f(c.instance(), c.handle, count, offset, flags) }),
        None => fail(libc::EINVAL),
    }
}

/// Zeroes from a static buffer, written with `pwrite` in chunks.
static ZEROES: [u8; 1 << 20] = [0; 1 << 20];

/// Writes zeroes with the plugin's `pwrite`, as nbdkit does when `zero` is missing or declines.
fn write_zeroes(c: &Connection, mut count: u32, mut offset: u64, flags: u32) -> c_int {
    let Some(pwrite) = c.module().pwrite() else {
        return fail(libc::EROFS);
    };
    const _: () = assert!(ZEROES.len() <= MAX_REQUEST_SIZE);
    while count > 0 {
        let n = count.min(ZEROES.len() as u32);
        // FUA applies to every chunk: the whole range must be durable when this returns.
        let chunk_flags = flags & FLAG_FUA;
        // ZEROES holds `n` bytes and is never written.
        let buf = ZEROES.as_ptr();
        if unsafe { pwrite(c.instance(), c.handle, buf, n, offset, chunk_flags) } < 0 {
            report_failure();
            return -1;
        }
        count -= n;
        offset += u64::from(n);
    }
    0
}

unsafe extern "C" fn zero(h: Handle, count: u32, offset: u64, flags: u32) -> c_int {
    let c = unsafe { Connection::from_handle(h) };
    let fast = flags & FLAG_FAST_ZERO != 0;
    let Some(f) = c.module().zero() else {
        if fast {
            return fail(libc::ENOTSUP);
        }
        return write_zeroes(c, count, offset, flags);
    };
    if unsafe { f(c.instance(), c.handle, count, offset, flags) } == 0 {
        return 0;
    }
    let failure = services::take_error();
    if !fast && (failure.errno == libc::ENOTSUP || failure.errno == libc::EOPNOTSUPP) {
        return write_zeroes(c, count, offset, flags);
    }
    status(Err(failure))
}

unsafe extern "C" fn cache(h: Handle, count: u32, offset: u64, flags: u32) -> c_int {
    let c = unsafe { Connection::from_handle(h) };
    match c.module().cache() {
        Some(f) => forward(unsafe { f(c.instance(), c.handle, count, offset, flags) }),
        None => 0,
    }
}

unsafe extern "C" fn extents(
    h: Handle,
    count: u32,
    offset: u64,
    flags: u32,
    list: *mut NbdkitExtents,
) -> c_int {
    let c = unsafe { Connection::from_handle(h) };
    let mut clip = ExtentClip::new(list, count, offset);
    let Some(f) = c.module().extents() else {
        // nbdkit's default: the whole range is allocated data.
        return match clip.add(offset, count.into(), 0) {
            0 => 0,
            errno => fail(errno),
        };
    };
    // The sink outlives the call.
    forward(unsafe { f(c.instance(), c.handle, count, offset, flags, clip.sink()) })
}

#[cfg(test)]
mod tests {
    use rustshim_plugin_api::abi::CALLBACK_NAMES;

    use super::*;

    /// The plugin callbacks that are the shim's own (hot reload), not nbdkit's.
    const RUSTSHIM_ONLY: [&str; 2] = ["hand_over", "take_over"];

    #[test]
    fn every_nbdkit_callback_of_the_abi_is_registered() {
        for name in CALLBACK_NAMES.iter().filter(|n| !RUSTSHIM_ONLY.contains(n)) {
            let Some(&(_, offset)) = NbdkitPlugin::FIELDS.iter().find(|(f, _)| f == name) else {
                panic!("struct nbdkit_plugin has no field '{name}': add it to nbdkit_c/plugin_struct.rs, or to RUSTSHIM_ONLY if nbdkit has no such callback");
            };
            // SAFETY: `offset` is that of a function pointer field of `PLUGIN`.
            let slot = unsafe {
                *(ptr::from_ref(&PLUGIN.0).cast::<u8>().add(offset) as *const *const c_void)
            };
            assert!(!slot.is_null(), "'{name}' is not registered in PLUGIN");
        }
    }
}
