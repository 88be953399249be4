//! The `FilterServices` table every filter instance gets: how a Rust filter calls the layer
//! below. Each function calls nbdkit's own (a `next` function, a context function, or
//! `next->…` in [`super::next_ops`]), so the filter never depends on nbdkit's structs. The same
//! functions pass a call on when the filter leaves a callback out ([`super::callbacks`]).
//!
//! # The contract behind the `unsafe` here
//! A `Next` (`nbdkit_next *`) is NULL or a pointer nbdkit gave the running callback (or that
//! `nbdkit_next_context_open` made and nothing closed yet): [`super::next_ops::ops`] reads its function table, and
//! NULL fails the call with `EIO` instead. A `LayerNext` is the `next` function and its argument
//! nbdkit gave the running callback of the matching kind, or NULL (nothing to call). Buffers and
//! lists come from the filter's own slices or from nbdkit, valid for the call.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr;
use std::sync::OnceLock;

use rustshim_plugin_api::abi::{
    __PrefixTypeTrait, BackendPtr, ContextPtr, ExportSink, FilterServices, FilterServicesRef,
    LayerNext, NextPtr, ROption, RStr, RString,
};

use super::next_ops;
use crate::containment;
use crate::nbdkit_c::{
    server, Backend, NbdkitExports, NextConfigCompleteFn, NextConfigFn, NextDefaultExportFn,
    NextListExportsFn, NextOpenFn, NextPreconnectFn,
};

const EIO: i32 = libc::EIO;
const EINVAL: i32 = libc::EINVAL;

/// The table every filter instance receives (built once).
pub fn table() -> FilterServicesRef {
    static TABLE: OnceLock<FilterServicesRef> = OnceLock::new();
    *TABLE.get_or_init(|| {
        FilterServices {
            config,
            config_complete,
            preconnect,
            list_exports,
            default_export,
            open,
            context_get_backend,
            context_open,
            context_close,
            context_set_next,
            prepare: next_ops::prepare,
            finalize: next_ops::finalize,
            get_size: next_ops::get_size,
            export_description: next_ops::export_description,
            block_size: next_ops::block_size,
            query: next_ops::query,
            pread: next_ops::pread,
            pwrite: next_ops::pwrite,
            flush: next_ops::flush,
            range: next_ops::range,
            extents: next_ops::extents,
            extents_full: next_ops::extents_full,
            extents_aligned: next_ops::extents_aligned,
            // Services added in later minor versions go here.
        }
        .leak_into_prefix()
    })
}

/// A string for nbdkit that lives as long as nbdkit may keep it: interned (for the process
/// during configuration, for the connection within one). `None` if it has a NUL byte (logged).
fn c_string(what: &str, s: RStr<'_>) -> Option<*const c_char> {
    let p = containment::intern(what, s.as_str());
    (!p.is_null()).then_some(p)
}

/// `nbdkit_next`'s function as the `Option` of the type given, from a `LayerNext`.
///
/// # Safety
/// The module's contract: `next.func` is NULL or nbdkit's `next` function of type `F`.
unsafe fn layer_fn<F: Copy>(next: LayerNext) -> Option<F> {
    assert_eq!(
        std::mem::size_of::<F>(),
        std::mem::size_of::<*const c_void>()
    );
    // SAFETY: the caller's contract; `F` is a function pointer type (same size, checked), and
    // NULL was excluded.
    (!next.func.is_null())
        .then(|| unsafe { std::mem::transmute_copy::<*const c_void, F>(&next.func) })
}

/// A `next` function and its argument as the filter gets them.
pub(super) fn layer_next<F>(func: Option<F>, data: *mut c_void) -> LayerNext {
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

// ---- The `next` functions of the callbacks outside a connection ----

/// Passes `key=value` to the layer below through `config`'s `next` (nothing for a replay).
pub fn pass_config(next: LayerNext, key: &str, value: &str) -> i32 {
    config(next, RStr::from_str(key), RStr::from_str(value))
}

extern "C" fn config(next: LayerNext, key: RStr<'_>, value: RStr<'_>) -> i32 {
    // SAFETY: the module's contract (a `config` callback's `next`).
    let Some(f) = (unsafe { layer_fn::<NextConfigFn>(next) }) else {
        return 0;
    };
    let (Some(k), Some(v)) = (c_string("config", key), c_string("config", value)) else {
        return EINVAL;
    };
    // SAFETY: nbdkit's `next` with its `nxdata`; interned strings outlive every layer's use.
    match unsafe { f(next.data, k, v) } {
        // The layer below refused it, and said why.
        -1 => crate::services::logged(EINVAL),
        _ => 0,
    }
}

extern "C" fn config_complete(next: LayerNext) -> i32 {
    config_complete_next(next)
}

/// `config_complete`'s `next (nxdata)`: 0 or an errno (nothing to call for a replay).
pub fn config_complete_next(next: LayerNext) -> i32 {
    // SAFETY: the module's contract (a `config_complete` callback's `next`).
    match unsafe { layer_fn::<NextConfigCompleteFn>(next) } {
        // SAFETY: nbdkit's `next` with its `nxdata`.
        Some(f) if unsafe { f(next.data) } == -1 => EINVAL,
        _ => 0,
    }
}

extern "C" fn preconnect(next: LayerNext, readonly: bool) -> i32 {
    preconnect_next(next, readonly)
}

/// `preconnect`'s `next (nxdata, readonly)`: 0 or an errno.
pub fn preconnect_next(next: LayerNext, readonly: bool) -> i32 {
    // SAFETY: the module's contract (a `preconnect` callback's `next`).
    match unsafe { layer_fn::<NextPreconnectFn>(next) } {
        // SAFETY: nbdkit's `next` with its `nxdata`.
        Some(f) if unsafe { f(next.data, readonly as c_int) } == -1 => EIO,
        _ => 0,
    }
}

extern "C" fn list_exports(next: LayerNext, readonly: bool, sink: ExportSink) -> i32 {
    // SAFETY: the module's contract (a `list_exports` callback's `next`).
    let Some(f) = (unsafe { layer_fn::<NextListExportsFn>(next) }) else {
        return EINVAL;
    };
    let api = server();
    let (Some(new), Some(count), Some(get), Some(free)) = (
        api.exports_new,
        api.exports_count,
        api.get_export,
        api.exports_free,
    ) else {
        return libc::ENOTSUP;
    };
    // SAFETY: a new list of ours, freed below; nbdkit's `next` fills it.
    let list = unsafe { new() };
    if list.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: as above.
    let mut status = match unsafe { f(next.data, readonly as c_int, list) } {
        -1 => EIO,
        _ => 0,
    };
    // SAFETY: the list's entries and their strings live until it is freed.
    for i in 0..unsafe { count(list) } {
        if status != 0 {
            break;
        }
        let e = unsafe { get(list, i) };
        let name = unsafe { CStr::from_ptr(e.name) }.to_string_lossy();
        let description = (!e.description.is_null())
            .then(|| unsafe { CStr::from_ptr(e.description) }.to_string_lossy());
        let description = description.as_deref().map(RStr::from_str);
        status = (sink.add)(sink.ctx, RStr::from_str(&name), ROption::from(description));
    }
    // SAFETY: ours, used no more.
    unsafe { free(list) };
    status
}

/// Adds to the filter's own list through nbdkit's `next` directly (the pass-through).
///
/// # Safety
/// The module's contract, and `list` is nbdkit's list of the running `list_exports` call.
pub unsafe fn pass_list_exports(
    next: LayerNext,
    readonly: bool,
    list: *mut NbdkitExports,
) -> c_int {
    // SAFETY: the module's contract (a `list_exports` callback's `next`); `list` is nbdkit's.
    match unsafe { layer_fn::<NextListExportsFn>(next) } {
        Some(f) => unsafe { f(next.data, readonly as c_int, list) },
        None => -1,
    }
}

/// The layer below's default export, as nbdkit's `next` returns it (NULL on error).
pub fn pass_default_export(next: LayerNext, readonly: bool) -> *const c_char {
    // SAFETY: the module's contract (a `default_export` callback's `next`).
    match unsafe { layer_fn::<NextDefaultExportFn>(next) } {
        Some(f) => unsafe { f(next.data, readonly as c_int) },
        None => std::ptr::null(),
    }
}

extern "C" fn default_export(next: LayerNext, readonly: bool, out: &mut RString) -> i32 {
    let p = pass_default_export(next, readonly);
    if p.is_null() {
        return EIO;
    }
    // SAFETY: a string nbdkit keeps for the connection.
    *out = unsafe { CStr::from_ptr(p) }
        .to_string_lossy()
        .as_ref()
        .into();
    0
}

extern "C" fn open(next: LayerNext, readonly: bool, export_name: RStr<'_>) -> i32 {
    // SAFETY: the module's contract (an `open` callback's `next`, whose argument is the
    // context).
    let Some(f) = (unsafe { layer_fn::<NextOpenFn>(next) }) else {
        return EINVAL;
    };
    let Some(name) = c_string("open", export_name) else {
        return EINVAL;
    };
    // SAFETY: nbdkit's `next` with its context; the interned name lives for the connection.
    match unsafe { f(next.data, readonly as c_int, name) } {
        -1 => EIO,
        _ => 0,
    }
}

// ---- Contexts ----

extern "C" fn context_get_backend(context: ContextPtr) -> BackendPtr {
    match server().context_get_backend {
        // SAFETY: the context nbdkit gave the running `open` (NextOpen's).
        Some(f) => BackendPtr(unsafe { f(context.0) }),
        None => BackendPtr(std::ptr::null_mut()),
    }
}

extern "C" fn context_open(
    backend: BackendPtr,
    readonly: bool,
    export_name: RStr<'_>,
    shared: bool,
    out: &mut NextPtr,
) -> i32 {
    let Some(f) = server().next_context_open else {
        return libc::ENOTSUP;
    };
    let Some(name) = c_string("nbdkit_next_context_open", export_name) else {
        return EINVAL;
    };
    if backend.0.is_null() {
        return EINVAL;
    }
    // SAFETY: the backend nbdkit gave this filter (`after_fork`, or its context's).
    let next = unsafe {
        f(
            backend.0 as Backend,
            readonly as c_int,
            name,
            shared as c_int,
        )
    };
    if next.is_null() {
        return EIO;
    }
    *out = NextPtr(next.cast());
    0
}

extern "C" fn context_close(next: NextPtr) {
    if let Some(f) = server().next_context_close {
        // SAFETY: a context the filter opened and closes once (OwnedNext's drop).
        unsafe { f(next.0.cast()) }
    }
}

extern "C" fn context_set_next(context: ContextPtr, next: NextPtr) -> NextPtr {
    match server().context_set_next {
        // SAFETY: the running `open`'s context and a context the filter opened.
        Some(f) => NextPtr(unsafe { f(context.0, next.0.cast()) }.cast()),
        None => NextPtr(std::ptr::null_mut()),
    }
}
