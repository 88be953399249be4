//! The callbacks the filter shim registers with nbdkit, in nbdkit's lifecycle order.
//!
//! nbdkit copies `struct nbdkit_filter` before the Rust filter is known, so every slot is
//! installed; each one calls the Rust filter's callback, or, when the filter leaves it out, does
//! what nbdkit does for a C filter without it: pass the call to the layer below
//! (`server/filters.c`). The callbacks that carry nothing naming the layer are instantiated per
//! layer (`I`, see [`REGISTRATIONS`]); the others find it through their handle.
//!
//! The `unsafe` here rests on nbdkit's contract (a handle is one `open` returned, not yet
//! closed: `Connection::from_handle`; `next`, strings, buffers, lists and out parameters are
//! valid for the call), the filter's (`rustshim_plugin_api::abi::filter`: its own instance and
//! handles, given back) and the `services` module's for `next`.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr;

use rustshim_plugin_api::abi::{
    BackendPtr, DumpSink, FilterModuleRef, HandlePtr, LayerNext, NextPtr, ROption, RStr, RString,
    ABI_VERSION, FILTER_CALLBACK_NAMES,
};
use rustshim_plugin_api::Callbacks;

use super::config::{self, CONFIG_HELP};
use super::services::{
    self, extents_next, flush_next, pread_next, pwrite_next, query_next, range_next,
};
use super::{Layer, LAYERS, MAX_LAYERS};
use crate::callbacks::{dump_line, forward, guarded, print_line, shim_status, status};
use crate::config::ReloadMode;
use crate::containment::{self, check_block_size, MAX_STRING};
use crate::failure::Failure;
use crate::generation::{self, Generation};
use crate::nbdkit_c::{
    self, server, Backend, Context, Handle, NbdkitExports, NbdkitExtents, NbdkitFilter136, Next,
    NextConfigCompleteFn, NextConfigFn, NextDefaultExportFn, NextListExportsFn, NextOpenFn,
    NextPreconnectFn, FILTER_API_VERSION, THREAD_MODEL_PARALLEL,
};
use crate::reload;
use crate::services::{log_recorded_error, take_error};

/// What nbdkit holds as a filter layer's handle of one open connection.
type Connection = crate::connection::Connection<FilterModuleRef>;

/// The struct of each layer, from `filter_init`'s `_version` string.
pub const REGISTRATIONS: [fn(*const c_char) -> NbdkitFilter136; MAX_LAYERS] = [
    registration::<0>,
    registration::<1>,
    registration::<2>,
    registration::<3>,
    registration::<4>,
    registration::<5>,
    registration::<6>,
    registration::<7>,
];

fn registration<const I: usize>(version: *const c_char) -> NbdkitFilter136 {
    NbdkitFilter136 {
        _api_version: FILTER_API_VERSION,
        _version: version,
        name: c"rustshim".as_ptr(),
        longname: c"nbdkit Rust filter shim".as_ptr(),
        description: c"Loads a Rust filter built with rustshim-plugin-api (filter=PATH) and forwards every nbdkit filter callback to it over a stable ABI.".as_ptr(),
        load: Some(load),
        unload: Some(unload::<I>),
        config: Some(config::<I>),
        config_complete: Some(config_complete::<I>),
        config_help: CONFIG_HELP.as_ptr(),
        thread_model: Some(thread_model::<I>),
        dump_plugin: Some(dump_plugin::<I>),
        get_ready: Some(get_ready::<I>),
        after_fork: Some(after_fork::<I>),
        cleanup: Some(cleanup::<I>),
        preconnect: Some(preconnect::<I>),
        list_exports: Some(list_exports::<I>),
        default_export: Some(default_export::<I>),
        open: Some(open::<I>),
        close: Some(close),
        prepare: Some(prepare),
        finalize: Some(finalize),
        get_size: Some(get_size),
        export_description: Some(export_description),
        block_size: Some(block_size),
        can_write: Some(can_write),
        can_flush: Some(can_flush),
        is_rotational: Some(is_rotational),
        can_trim: Some(can_trim),
        can_zero: Some(can_zero),
        can_fast_zero: Some(can_fast_zero),
        can_extents: Some(can_extents),
        can_fua: Some(can_fua),
        can_multi_conn: Some(can_multi_conn),
        can_cache: Some(can_cache),
        pread: Some(pread),
        pwrite: Some(pwrite),
        flush: Some(flush),
        trim: Some(trim),
        zero: Some(zero),
        extents: Some(extents),
        cache: Some(cache),
    }
}

/// A C string from nbdkit as UTF-8, or a one-line error naming it.
fn utf8<'a>(what: &str, s: *const c_char) -> Result<&'a str, Failure> {
    if s.is_null() {
        return Err(Failure::invalid(format!("{what} is missing")));
    }
    // SAFETY: nbdkit's NUL-terminated string, which lives at least for the call (config keys
    // for the process).
    let s = unsafe { CStr::from_ptr(s) };
    s.to_str().map_err(|_| {
        Failure::invalid(format!(
            "{what} '{}' is not valid UTF-8",
            s.to_string_lossy()
        ))
    })
}

/// A `next` function and its argument as the filter gets them.
fn layer_next<F>(func: Option<F>, data: *mut c_void) -> LayerNext {
    LayerNext {
        func: match func {
            // SAFETY: `F` is a function pointer type (Option<F> is NULL-niched), read as a
            // plain pointer.
            Some(f) => unsafe { std::mem::transmute_copy::<F, *const c_void>(&f) },
            None => ptr::null(),
        },
        data,
    }
}

// ---- Loading and configuration ----

extern "C" fn load() {
    let _ = server();
}

extern "C" fn unload<const I: usize>() {
    guarded("unload", (), || {
        if let Some(g) = LAYERS[I].slot.retire() {
            g.destroy();
        }
        generation::remove_private_dir();
    })
}

unsafe extern "C" fn config<const I: usize>(
    next: Option<NextConfigFn>,
    nxdata: Backend,
    key: *const c_char,
    value: *const c_char,
) -> c_int {
    guarded("config", -1, || {
        let pair = utf8("parameter key", key)
            .and_then(|k| Ok((k, utf8(&format!("value of parameter '{k}'"), value)?)));
        let next = layer_next(next, nxdata);
        shim_status(pair.and_then(|(k, v)| config::config(&LAYERS[I], next, k, v)))
    })
}

unsafe extern "C" fn config_complete<const I: usize>(
    next: Option<NextConfigCompleteFn>,
    nxdata: Backend,
) -> c_int {
    guarded("config_complete", -1, || {
        let g = match config::loaded(&LAYERS[I]) {
            Ok(g) => g,
            Err(failure) => return shim_status(Err(failure)),
        };
        let next = layer_next(next, nxdata);
        match g.module.config_complete() {
            // SAFETY: single-threaded configuration; `next` is nbdkit's for this call.
            Some(f) => status(lifecycle_status(unsafe { f(g.instance, next) })),
            None => shim_status(errno_status(services::config_complete_next(next))),
        }
    })
}

/// A filter callback's status as a result, its recorded error taken.
fn lifecycle_status(r: i32) -> Result<(), Failure> {
    if r < 0 {
        return Err(take_error());
    }
    Ok(())
}

/// `0` or an errno (already logged) as a result.
fn errno_status(errno: i32) -> Result<(), Failure> {
    match errno {
        0 => Ok(()),
        errno => Err(Failure::new(errno, "")),
    }
}

unsafe extern "C" fn thread_model<const I: usize>(next_model: c_int) -> c_int {
    guarded("thread_model", -1, || {
        let layer = &LAYERS[I];
        let given = super::abi().is_some_and(|abi| abi.thread_model_arg);
        let next_model = if given { next_model } else { -1 };
        layer
            .next_model
            .store(next_model, std::sync::atomic::Ordering::Release);
        match layer.filter_if_given() {
            Err(failure) => shim_status(Err(failure)),
            Ok(Some(g)) => match super::thread_model(&g, next_model) {
                Ok(model) => {
                    layer.slot.announce_thread_model(model as i32);
                    model as c_int
                }
                Err(failure) => status(Err(failure)),
            },
            // `--dump-plugin` without a filter.
            Ok(None) => THREAD_MODEL_PARALLEL,
        }
    })
}

extern "C" fn get_ready<const I: usize>(model: c_int) -> c_int {
    guarded("get_ready", -1, || {
        let layer = &LAYERS[I];
        layer
            .final_model
            .store(model, std::sync::atomic::Ordering::Release);
        match layer.slot.current() {
            Some(g) => status(lifecycle_status(match g.module.get_ready() {
                // SAFETY: single-threaded, before serving.
                Some(f) => unsafe { f(g.instance, model) },
                None => 0,
            })),
            None => 0,
        }
    })
}

unsafe extern "C" fn after_fork<const I: usize>(backend: Backend) -> c_int {
    guarded("after_fork", -1, || {
        let layer: &'static Layer = &LAYERS[I];
        layer
            .backend
            .store(backend, std::sync::atomic::Ordering::Release);
        let Some(g) = layer.slot.current() else {
            return 0;
        };
        g.backend
            .store(backend, std::sync::atomic::Ordering::Release);
        let r = match g.module.after_fork() {
            // SAFETY: single-threaded, before serving; nbdkit's backend, valid until cleanup.
            Some(f) => unsafe { f(g.instance, BackendPtr(backend)) },
            None => 0,
        };
        if status(lifecycle_status(r)) < 0 {
            return -1;
        }
        g.set_serving();
        if layer.options().reload == ReloadMode::Watch {
            return shim_status(reload::start_watcher(layer));
        }
        0
    })
}

unsafe extern "C" fn cleanup<const I: usize>(_backend: Backend) {
    guarded("cleanup", (), || {
        if let Some(g) = LAYERS[I].slot.current() {
            g.cleanup();
        }
    })
}

extern "C" fn dump_plugin<const I: usize>() {
    guarded("dump_plugin", (), || {
        let layer = &LAYERS[I];
        print_line("rustshim_filter_version", env!("CARGO_PKG_VERSION"));
        print_line("rustshim_filter_api_version", ABI_VERSION);
        print_line("rustshim_filter_layer", &layer.index.to_string());
        let g = match layer.filter_if_given() {
            Ok(Some(g)) => g,
            Ok(None) => {
                print_line("rustshim_filter", "(none: add filter=PATH)");
                return;
            }
            Err(failure) => {
                shim_status(Err(failure));
                return;
            }
        };
        dump_filter(&g);
    })
}

fn dump_filter(g: &Generation<FilterModuleRef>) {
    let m = &g.module;
    print_line("rustshim_filter_path", &g.source.display().to_string());
    print_line("rustshim_filter_name", m.name().as_str());
    for (key, value) in [
        ("rustshim_filter_longname", m.longname()),
        ("rustshim_filter_filter_version", m.version()),
        ("rustshim_filter_description", m.description()),
    ] {
        if let ROption::RSome(v) = value {
            print_line(key, v.as_str());
        }
    }
    print_line("rustshim_filter_built_against", &g.abi_version);
    print_line("rustshim_filter_build", m.build_info().as_str());
    if let ROption::RSome(help) = m.config_help() {
        for (i, line) in help.as_str().lines().enumerate() {
            print_line(&format!("rustshim_filter_config_help_{i}"), line);
        }
    }
    for name in g.implemented() {
        print_line(&format!("rustshim_filter_has_{name}"), "1");
    }
    if let Some(f) = m.dump_plugin() {
        let sink = DumpSink {
            ctx: ptr::null_mut(),
            line: dump_line,
        };
        // SAFETY: the generation's own instance.
        unsafe { f(g.instance, sink) };
        log_recorded_error();
    }
}

// ---- Before a connection is opened ----

unsafe extern "C" fn preconnect<const I: usize>(
    next: Option<NextPreconnectFn>,
    nxdata: Backend,
    readonly: c_int,
) -> c_int {
    guarded("preconnect", -1, || {
        let next = layer_next(next, nxdata);
        match LAYERS[I]
            .slot
            .current()
            .and_then(|g| g.module.preconnect().map(|f| (g, f)))
        {
            // SAFETY: the generation's own instance; nbdkit's `next` for this call.
            Some((g, f)) => forward(unsafe { f(g.instance, next, readonly != 0) }),
            None => match services::preconnect_next(next, readonly != 0) {
                0 => 0,
                _ => -1,
            },
        }
    })
}

unsafe extern "C" fn list_exports<const I: usize>(
    next: Option<NextListExportsFn>,
    nxdata: Backend,
    readonly: c_int,
    is_tls: c_int,
    exports: *mut NbdkitExports,
) -> c_int {
    guarded("list_exports", -1, || {
        let next = layer_next(next, nxdata);
        match LAYERS[I]
            .slot
            .current()
            .and_then(|g| g.module.list_exports().map(|f| (g, f)))
        {
            Some((g, f)) => {
                let sink = containment::export_sink(exports);
                // SAFETY: the generation's own instance; the sink adds to nbdkit's list.
                forward(unsafe { f(g.instance, next, readonly != 0, is_tls != 0, sink) })
            }
            None => services::pass_list_exports(next, readonly != 0, exports),
        }
    })
}

unsafe extern "C" fn default_export<const I: usize>(
    next: Option<NextDefaultExportFn>,
    nxdata: Backend,
    readonly: c_int,
    is_tls: c_int,
) -> *const c_char {
    guarded("default_export", ptr::null(), || {
        let next = layer_next(next, nxdata);
        let Some((g, f)) = LAYERS[I]
            .slot
            .current()
            .and_then(|g| g.module.default_export().map(|f| (g, f)))
        else {
            return services::pass_default_export(next, readonly != 0);
        };
        let mut name = RString::new();
        // SAFETY: the generation's own instance; nbdkit's `next` for this call.
        if unsafe { f(g.instance, next, readonly != 0, is_tls != 0, &mut name) } < 0 {
            take_error().report();
            return ptr::null();
        }
        if name.len() > MAX_STRING {
            Failure::invalid(format!(
                "filter '{}': default_export returned a name of {} bytes, longer than NBD allows ({MAX_STRING})",
                g.name(),
                name.len()
            ))
            .report();
            return ptr::null();
        }
        containment::intern("default_export", name.as_str())
    })
}

// ---- A connection ----

unsafe extern "C" fn open<const I: usize>(
    next: Option<NextOpenFn>,
    context: Context,
    readonly: c_int,
    export_name: *const c_char,
    is_tls: c_int,
) -> Handle {
    guarded("open", ptr::null_mut(), || {
        let Some(g) = LAYERS[I].slot.current() else {
            Failure::new(libc::EIO, "rustshim: open without a loaded filter").report();
            return ptr::null_mut();
        };
        let name = match utf8("export name", export_name) {
            Ok(name) => name,
            Err(failure) => {
                failure.report();
                return ptr::null_mut();
            }
        };
        let mut handle = HandlePtr(ptr::null_mut());
        let next = layer_next(next, context);
        // SAFETY: the generation's own instance; nbdkit's `next` and context for this call.
        if unsafe {
            (g.module.open())(
                g.instance,
                next,
                readonly != 0,
                RStr::from_str(name),
                is_tls != 0,
                &mut handle,
            )
        } < 0
        {
            take_error().report();
            return ptr::null_mut();
        }
        Connection::new(g, handle).into_handle()
    })
}

unsafe extern "C" fn close(h: Handle) {
    guarded("close", (), || {
        // SAFETY: nbdkit passes a handle from `open` exactly once to `close`, its last use.
        let c = unsafe { Connection::from_close(h) };
        unsafe { (c.module().close())(c.instance(), c.handle) };
        log_recorded_error();
    })
}

/// The filter's status of a callback that is not a data request: as nbdkit expects it.
#[inline(always)]
fn answer(r: i32) -> c_int {
    forward(r)
}

unsafe extern "C" fn prepare(next: Next, h: Handle, readonly: c_int) -> c_int {
    let c = unsafe { Connection::from_handle(h) };
    match c.module().prepare() {
        Some(f) => {
            answer(unsafe { f(c.instance(), c.handle, NextPtr(next.cast()), readonly != 0) })
        }
        None => 0,
    }
}

unsafe extern "C" fn finalize(next: Next, h: Handle) -> c_int {
    let c = unsafe { Connection::from_handle(h) };
    match c.module().finalize() {
        Some(f) => answer(unsafe { f(c.instance(), c.handle, NextPtr(next.cast())) }),
        None => 0,
    }
}

unsafe extern "C" fn get_size(next: Next, h: Handle) -> i64 {
    let c = unsafe { Connection::from_handle(h) };
    let Some(f) = c.module().get_size() else {
        return services::get_size_next(next);
    };
    let mut size = 0u64;
    if unsafe { f(c.instance(), c.handle, NextPtr(next.cast()), &mut size) } < 0 {
        take_error().report();
        return -1;
    }
    i64::try_from(size).unwrap_or_else(|_| {
        Failure::invalid(format!(
            "filter '{}': get_size returned {size}, larger than nbdkit allows ({})",
            c.generation.name(),
            i64::MAX
        ))
        .report();
        -1
    })
}

unsafe extern "C" fn export_description(next: Next, h: Handle) -> *const c_char {
    let c = unsafe { Connection::from_handle(h) };
    let Some(f) = c.module().export_description() else {
        return services::export_description_next(next);
    };
    guarded("export_description", ptr::null(), || {
        let mut description = RString::new();
        if unsafe {
            f(
                c.instance(),
                c.handle,
                NextPtr(next.cast()),
                &mut description,
            )
        } < 0
        {
            take_error().report();
            return ptr::null();
        }
        let text = containment::cut_description(c.generation.name(), description.as_str());
        containment::intern("export_description", text)
    })
}

unsafe extern "C" fn block_size(
    next: Next,
    h: Handle,
    minimum: *mut u32,
    preferred: *mut u32,
    maximum: *mut u32,
) -> c_int {
    let c = unsafe { Connection::from_handle(h) };
    // SAFETY: nbdkit's out pointers are valid for the call.
    let (minimum, preferred, maximum) = unsafe { (&mut *minimum, &mut *preferred, &mut *maximum) };
    let Some(f) = c.module().block_size() else {
        return services::block_size_next(next, minimum, preferred, maximum);
    };
    if answer(unsafe {
        f(
            c.instance(),
            c.handle,
            NextPtr(next.cast()),
            minimum,
            preferred,
            maximum,
        )
    }) < 0
    {
        return -1;
    }
    match check_block_size(*minimum, *preferred, *maximum) {
        Ok(()) => 0,
        Err(why) => status(Err(Failure::invalid(format!(
            "filter '{}': block_size returned minimum {} preferred {} maximum {}: {why}",
            c.generation.name(),
            *minimum,
            *preferred,
            *maximum
        )))),
    }
}

/// The `can_*` callbacks: the filter's answer, or the layer below's (number `$which` of
/// `QUERY_NAMES`).
macro_rules! queries {
    ($($name:ident = $which:literal;)*) => {$(
        unsafe extern "C" fn $name(next: Next, h: Handle) -> c_int {
            let c = unsafe { Connection::from_handle(h) };
            match c.module().$name() {
                Some(f) => answer(unsafe { f(c.instance(), c.handle, NextPtr(next.cast())) }),
                None => query_next(next, $which),
            }
        }
    )*};
}

queries! {
    can_write = 0;
    can_flush = 1;
    is_rotational = 2;
    can_trim = 3;
    can_zero = 4;
    can_fast_zero = 5;
    can_extents = 6;
    can_fua = 7;
    can_multi_conn = 8;
    can_cache = 9;
}

// ---- Serving data ----

/// The callbacks whose answers decide what nbdkit lets through to the layer below: a filter
/// that overrides one of them may let through a request the layer below cannot take, so the
/// pass-through checks it first ([`services::check`]).
const SHAPES_REQUESTS: u64 = {
    let c = Callbacks::in_table(
        &FILTER_CALLBACK_NAMES,
        &[
            "get_size",
            "can_write",
            "can_flush",
            "can_trim",
            "can_zero",
            "can_fast_zero",
            "can_extents",
            "can_fua",
            "can_cache",
        ],
    );
    c.bits()
};

/// Whether a pass-through request of `c` must be checked against the layer below.
#[inline(always)]
fn reshaped(c: &Connection) -> bool {
    c.module().implemented() & SHAPES_REQUESTS != 0
}

/// A data callback's status: on failure the filter's message to the log, and `*err` set
/// (never 0: nbdkit aborts on that).
#[inline(always)]
fn data(r: i32, err: *mut c_int) -> c_int {
    if r < 0 {
        return data_failed(err);
    }
    r
}

#[cold]
#[inline(never)]
fn data_failed(err: *mut c_int) -> c_int {
    let failure = take_error();
    if !failure.msg.is_empty() {
        nbdkit_c::error(&failure.msg);
    }
    // SAFETY: nbdkit's `err`, valid for the call.
    unsafe {
        *err = if failure.errno > 0 {
            failure.errno
        } else {
            libc::EIO
        }
    };
    -1
}

/// Passes a request on, after [`services::check`] when the filter reshaped the requests.
macro_rules! pass_on {
    ($c:expr, $next:expr, $op:expr, $count:expr, $offset:expr, $flags:expr, $err:expr, $call:expr) => {{
        if reshaped($c) {
            if let Err(errno) = services::check($next, $op, $count, $offset, $flags) {
                // SAFETY: nbdkit's `err`, valid for the call.
                unsafe { *$err = errno };
                return -1;
            }
        }
        // SAFETY: nbdkit's `err`, valid for the call.
        $call(unsafe { &mut *$err })
    }};
}

unsafe extern "C" fn pread(
    next: Next,
    h: Handle,
    buf: *mut c_void,
    count: u32,
    offset: u64,
    flags: u32,
    err: *mut c_int,
) -> c_int {
    let c = unsafe { Connection::from_handle(h) };
    match c.module().pread() {
        Some(f) => data(
            unsafe {
                f(
                    c.instance(),
                    c.handle,
                    NextPtr(next.cast()),
                    buf.cast(),
                    count,
                    offset,
                    flags,
                )
            },
            err,
        ),
        None => pass_on!(
            c,
            next,
            services::Op::Pread,
            count,
            offset,
            flags,
            err,
            |err| { pread_next(next, buf, count, offset, flags, err) }
        ),
    }
}

unsafe extern "C" fn pwrite(
    next: Next,
    h: Handle,
    buf: *const c_void,
    count: u32,
    offset: u64,
    flags: u32,
    err: *mut c_int,
) -> c_int {
    let c = unsafe { Connection::from_handle(h) };
    match c.module().pwrite() {
        Some(f) => data(
            unsafe {
                f(
                    c.instance(),
                    c.handle,
                    NextPtr(next.cast()),
                    buf.cast(),
                    count,
                    offset,
                    flags,
                )
            },
            err,
        ),
        None => pass_on!(
            c,
            next,
            services::Op::Pwrite,
            count,
            offset,
            flags,
            err,
            |err| { pwrite_next(next, buf, count, offset, flags, err) }
        ),
    }
}

unsafe extern "C" fn flush(next: Next, h: Handle, flags: u32, err: *mut c_int) -> c_int {
    let c = unsafe { Connection::from_handle(h) };
    match c.module().flush() {
        Some(f) => data(
            unsafe { f(c.instance(), c.handle, NextPtr(next.cast()), flags) },
            err,
        ),
        None => pass_on!(c, next, services::Op::Flush, 0, 0, flags, err, |err| {
            flush_next(next, flags, err)
        }),
    }
}

/// `trim`, `zero`, `cache`: the filter's callback, or the layer below's (`$which` of
/// `RANGE_NAMES`).
macro_rules! ranges {
    ($($name:ident = $which:literal, $op:ident;)*) => {$(
        unsafe extern "C" fn $name(
            next: Next,
            h: Handle,
            count: u32,
            offset: u64,
            flags: u32,
            err: *mut c_int,
        ) -> c_int {
            let c = unsafe { Connection::from_handle(h) };
            match c.module().$name() {
                Some(f) => {
                    let r = unsafe { f(c.instance(), c.handle, NextPtr(next.cast()), count, offset, flags) };
                    range_status(stringify!($name), c, r, flags, err)
                }
                None => pass_on!(c, next, services::Op::$op, count, offset, flags, err, |err| {
                    range_next(next, $which, count, offset, flags, err)
                }),
            }
        }
    )*};
}

ranges! {
    trim = 0, Trim;
    zero = 1, Zero;
    cache = 2, Cache;
}

/// A range request's status. nbdkit aborts when `zero` fails with `ENOTSUP` without
/// `FAST_ZERO`: that becomes `EIO`, with a line naming the filter.
#[inline(always)]
fn range_status(name: &str, c: &Connection, r: i32, flags: u32, err: *mut c_int) -> c_int {
    if r >= 0 {
        return r;
    }
    let fast = flags & nbdkit_c::FLAG_FAST_ZERO != 0;
    let failure = take_error();
    let refused = failure.errno == libc::ENOTSUP || failure.errno == libc::EOPNOTSUPP;
    let failure = if name == "zero" && !fast && refused {
        Failure::new(
            libc::EIO,
            format!(
                "filter '{}': zero failed with ENOTSUP without FAST_ZERO, which nbdkit does not allow ({})",
                c.generation.name(),
                failure.msg
            ),
        )
    } else {
        failure
    };
    if !failure.msg.is_empty() {
        nbdkit_c::error(&failure.msg);
    }
    // SAFETY: nbdkit's `err`, valid for the call.
    unsafe {
        *err = if failure.errno > 0 {
            failure.errno
        } else {
            libc::EIO
        }
    };
    -1
}

unsafe extern "C" fn extents(
    next: Next,
    h: Handle,
    count: u32,
    offset: u64,
    flags: u32,
    list: *mut NbdkitExtents,
    err: *mut c_int,
) -> c_int {
    let c = unsafe { Connection::from_handle(h) };
    match c.module().extents() {
        Some(f) => {
            let sink = services::extents_sink(list);
            data(
                unsafe {
                    f(
                        c.instance(),
                        c.handle,
                        NextPtr(next.cast()),
                        count,
                        offset,
                        flags,
                        sink,
                    )
                },
                err,
            )
        }
        None => pass_on!(
            c,
            next,
            services::Op::Extents,
            count,
            offset,
            flags,
            err,
            |err| { extents_next(next, count, offset, flags, list, err) }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nbdkit_filter_callback_of_the_abi_is_registered() {
        const SHIM_ONLY: [&str; 2] = ["hand_over", "take_over"];
        let r = registration::<0>(ptr::null());
        for name in FILTER_CALLBACK_NAMES
            .iter()
            .filter(|n| !SHIM_ONLY.contains(n))
        {
            let Some(&(_, offset)) = NbdkitFilter136::FIELDS.iter().find(|(f, _)| f == name) else {
                panic!("struct nbdkit_filter has no field '{name}'");
            };
            // SAFETY: `offset` is that of a function pointer field of `r`.
            let slot =
                unsafe { *(ptr::from_ref(&r).cast::<u8>().add(offset) as *const *const c_void) };
            assert!(!slot.is_null(), "'{name}' is not registered");
        }
    }
}
