//! The `FilterServices` table every filter instance gets: how a Rust filter calls the layer
//! below. Each function calls nbdkit's own (a `next` function, `next->…`, or a context or extents
//! function), so the filter never depends on nbdkit's structs. The same functions pass a call on
//! when the filter leaves a callback out ([`super::callbacks`]).
//!
//! # The contract behind the `unsafe` here
//! A `Next` (`nbdkit_next *`) is NULL or a pointer nbdkit gave the running callback (or that
//! `nbdkit_next_context_open` made and nothing closed yet): [`ops`] reads its function table, and
//! NULL fails the call with `EIO` instead. A `LayerNext` is the `next` function and its argument
//! nbdkit gave the running callback of the matching kind, or NULL (nothing to call). Buffers and
//! lists come from the filter's own slices or from nbdkit, valid for the call.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

use rustshim_plugin_api::abi::{
    __PrefixTypeTrait, BackendPtr, ContextPtr, ExportSink, Extent, ExtentSink, FilterServices,
    FilterServicesRef, LayerNext, NextPtr, ROption, RStr, RString, RVec,
};

use crate::containment;
use crate::nbdkit_c::{
    server, Backend, NbdkitExports, NbdkitExtents, NbdkitNextOps, Next, NextConfigCompleteFn,
    NextConfigFn, NextDefaultExportFn, NextListExportsFn, NextOpenFn, NextPreconnectFn,
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
            prepare,
            finalize,
            get_size,
            export_description,
            block_size,
            query,
            pread,
            pwrite,
            flush,
            range,
            extents,
            extents_full,
            extents_aligned,
            // Services added in later minor versions go here.
        }
        .leak_into_prefix()
    })
}

/// The function table behind `next`, or `None` for NULL.
///
/// # Safety
/// The module's contract: `next` is NULL or a live `nbdkit_next *`.
#[inline(always)]
pub unsafe fn ops<'a>(next: Next) -> Option<&'a NbdkitNextOps> {
    // SAFETY: the caller's contract; its first member is the function table.
    unsafe { next.as_ref() }
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
        -1 => EINVAL,
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
pub fn pass_list_exports(next: LayerNext, readonly: bool, list: *mut NbdkitExports) -> c_int {
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

// ---- The layer below of a connection (`next->…`) ----

/// Calls `next->$name (next, args…)`: `$none` when `next` is NULL.
macro_rules! call_next {
    ($next:expr, $name:ident, $none:expr $(, $arg:expr)*) => {{
        let next: Next = $next;
        // SAFETY: the module's contract.
        match unsafe { ops(next) }.and_then(|o| o.$name) {
            // SAFETY: nbdkit's function for this `next`, with arguments valid for the call.
            Some(f) => unsafe { f(next $(, $arg)*) },
            None => $none,
        }
    }};
}

/// A data call's failure: `-1` with `*err` set (never 0, or nbdkit aborts).
#[inline(always)]
fn data_failed(err: &mut c_int) -> c_int {
    if *err <= 0 {
        *err = EIO;
    }
    -1
}

/// `r` from nbdkit's data call: `*err` made non-zero when it failed.
#[inline(always)]
fn data(r: c_int, err: &mut c_int) -> c_int {
    if r < 0 {
        return data_failed(err);
    }
    r
}

extern "C" fn prepare(next: NextPtr) -> i32 {
    match call_next!(next.0.cast(), prepare, -1) {
        -1 => EIO,
        _ => 0,
    }
}

extern "C" fn finalize(next: NextPtr) -> i32 {
    match call_next!(next.0.cast(), finalize, -1) {
        -1 => EIO,
        _ => 0,
    }
}

/// `next->get_size`.
pub fn get_size_next(next: Next) -> i64 {
    call_next!(next, get_size, -1)
}

extern "C" fn get_size(next: NextPtr, out: &mut u64) -> i32 {
    match get_size_next(next.0.cast()) {
        -1 => EIO,
        size => {
            *out = size as u64;
            0
        }
    }
}

/// `next->export_description`.
pub fn export_description_next(next: Next) -> *const c_char {
    call_next!(next, export_description, std::ptr::null())
}

extern "C" fn export_description(next: NextPtr, out: &mut RString) -> i32 {
    let p = export_description_next(next.0.cast());
    if p.is_null() {
        return libc::ENOTSUP;
    }
    // SAFETY: a string nbdkit keeps for the connection.
    *out = unsafe { CStr::from_ptr(p) }
        .to_string_lossy()
        .as_ref()
        .into();
    0
}

/// `next->block_size`.
pub fn block_size_next(
    next: Next,
    minimum: &mut u32,
    preferred: &mut u32,
    maximum: &mut u32,
) -> c_int {
    call_next!(next, block_size, -1, minimum, preferred, maximum)
}

extern "C" fn block_size(
    next: NextPtr,
    minimum: &mut u32,
    preferred: &mut u32,
    maximum: &mut u32,
) -> i32 {
    match block_size_next(next.0.cast(), minimum, preferred, maximum) {
        -1 => EIO,
        _ => 0,
    }
}

/// `next->can_*` by [`QUERY_NAMES`](rustshim_plugin_api::abi::filter::QUERY_NAMES) number.
pub fn query_next(next: Next, which: u32) -> c_int {
    match which {
        0 => call_next!(next, can_write, -1),
        1 => call_next!(next, can_flush, -1),
        2 => call_next!(next, is_rotational, -1),
        3 => call_next!(next, can_trim, -1),
        4 => call_next!(next, can_zero, -1),
        5 => call_next!(next, can_fast_zero, -1),
        6 => call_next!(next, can_extents, -1),
        7 => call_next!(next, can_fua, -1),
        8 => call_next!(next, can_multi_conn, -1),
        9 => call_next!(next, can_cache, -1),
        _ => -1,
    }
}

extern "C" fn query(next: NextPtr, which: u32) -> i32 {
    query_next(next.0.cast(), which)
}

/// `next->pread`. `buf` holds `count` bytes (the module's contract).
pub fn pread_next(
    next: Next,
    buf: *mut c_void,
    count: u32,
    offset: u64,
    flags: u32,
    err: &mut c_int,
) -> c_int {
    data(
        call_next!(next, pread, -1, buf, count, offset, flags, err),
        err,
    )
}

extern "C" fn pread(
    next: NextPtr,
    buf: *mut u8,
    count: u32,
    offset: u64,
    flags: u32,
    err: &mut i32,
) -> i32 {
    let next = next.0.cast();
    checked(next, Op::Pread, count, offset, flags, err, |err| {
        pread_next(next, buf.cast(), count, offset, flags, err)
    })
}

/// `next->pwrite`. `buf` holds `count` bytes (the module's contract).
pub fn pwrite_next(
    next: Next,
    buf: *const c_void,
    count: u32,
    offset: u64,
    flags: u32,
    err: &mut c_int,
) -> c_int {
    data(
        call_next!(next, pwrite, -1, buf, count, offset, flags, err),
        err,
    )
}

extern "C" fn pwrite(
    next: NextPtr,
    buf: *const u8,
    count: u32,
    offset: u64,
    flags: u32,
    err: &mut i32,
) -> i32 {
    let next = next.0.cast();
    checked(next, Op::Pwrite, count, offset, flags, err, |err| {
        pwrite_next(next, buf.cast(), count, offset, flags, err)
    })
}

/// `next->flush`.
pub fn flush_next(next: Next, flags: u32, err: &mut c_int) -> c_int {
    data(call_next!(next, flush, -1, flags, err), err)
}

extern "C" fn flush(next: NextPtr, flags: u32, err: &mut i32) -> i32 {
    let next = next.0.cast();
    checked(next, Op::Flush, 0, 0, flags, err, |err| {
        flush_next(next, flags, err)
    })
}

/// `next->trim`, `zero` or `cache` by [`RANGE_NAMES`](rustshim_plugin_api::abi::filter::RANGE_NAMES)
/// number.
pub fn range_next(
    next: Next,
    which: u32,
    count: u32,
    offset: u64,
    flags: u32,
    err: &mut c_int,
) -> c_int {
    let r = match which {
        0 => call_next!(next, trim, -1, count, offset, flags, err),
        1 => call_next!(next, zero, -1, count, offset, flags, err),
        2 => call_next!(next, cache, -1, count, offset, flags, err),
        _ => -1,
    };
    data(r, err)
}

extern "C" fn range(
    next: NextPtr,
    which: u32,
    count: u32,
    offset: u64,
    flags: u32,
    err: &mut i32,
) -> i32 {
    let next = next.0.cast();
    let op = match which {
        0 => Op::Trim,
        1 => Op::Zero,
        2 => Op::Cache,
        _ => {
            *err = EINVAL;
            return -1;
        }
    };
    checked(next, op, count, offset, flags, err, |err| {
        range_next(next, which, count, offset, flags, err)
    })
}

// ---- What nbdkit asserts before a data request ----

/// A data request, for [`check`].
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum Op {
    Pread,
    Pwrite,
    Flush,
    Trim,
    Zero,
    Extents,
    Cache,
}

const FLAG_MAY_TRIM: u32 = 1;
const FLAG_FUA: u32 = 2;
const FLAG_REQ_ONE: u32 = 4;
const FLAG_FAST_ZERO: u32 = 8;

/// Checks a request to the layer below against what nbdkit asserts before passing it (the
/// `backend_*` functions): its capabilities, its size, the flags it allows. nbdkit aborts the
/// whole server on a failed assertion; here the request fails with an errno (`EROFS` for a
/// write to a read-only layer, `ENOSPC` past the end of a write, `EINVAL` otherwise). The
/// answers it asks for are cached by nbdkit, so asking is cheap.
pub fn check(next: Next, op: Op, count: u32, offset: u64, flags: u32) -> Result<(), c_int> {
    if next.is_null() {
        return Err(EIO);
    }
    let yes = |which: u32, min: c_int| query_next(next, which) >= min;
    let allowed = match op {
        Op::Pread | Op::Flush | Op::Cache => 0,
        Op::Pwrite | Op::Trim => FLAG_FUA,
        Op::Zero => FLAG_MAY_TRIM | FLAG_FUA | FLAG_FAST_ZERO,
        Op::Extents => FLAG_REQ_ONE,
    };
    if flags & !allowed != 0 {
        return Err(EINVAL);
    }
    let writes = matches!(op, Op::Pwrite | Op::Trim | Op::Zero);
    if writes && !yes(0, 1) {
        return Err(libc::EROFS);
    }
    let capable = match op {
        Op::Flush => yes(1, 1),
        Op::Trim => yes(3, 1),
        Op::Zero => yes(4, 1) && (flags & FLAG_FAST_ZERO == 0 || yes(5, 1)),
        Op::Extents => yes(6, 0),
        Op::Cache => yes(9, 1),
        Op::Pread | Op::Pwrite => true,
    };
    if !capable || (flags & FLAG_FUA != 0 && !yes(7, 1)) {
        return Err(EINVAL);
    }
    if op == Op::Flush {
        return Ok(());
    }
    let size = get_size_next(next);
    if size < 0 {
        return Err(EIO);
    }
    let size = size as u64;
    if count == 0 || offset > size || u64::from(count) > size - offset {
        return Err(if writes { libc::ENOSPC } else { EINVAL });
    }
    Ok(())
}

/// Runs `call` if [`check`] lets the request through.
#[inline(always)]
fn checked(
    next: Next,
    op: Op,
    count: u32,
    offset: u64,
    flags: u32,
    err: &mut c_int,
    call: impl FnOnce(&mut c_int) -> c_int,
) -> c_int {
    if let Err(errno) = check(next, op, count, offset, flags) {
        *err = errno;
        return -1;
    }
    call(err)
}

// ---- Extents ----

/// The sink of a filter's `extents` call: adds to nbdkit's `list` directly (nbdkit checks each
/// extent), and is the one sink [`extents`] and [`extents_aligned`] accept.
pub fn extents_sink(list: *mut NbdkitExtents) -> ExtentSink {
    ExtentSink {
        ctx: list.cast(),
        add: add_extent,
    }
}

extern "C" fn add_extent(ctx: *mut c_void, offset: u64, length: u64, kind: u32) -> i32 {
    let Some(add) = server().add_extent else {
        return libc::ENOTSUP;
    };
    // SAFETY: `ctx` is nbdkit's list of the running `extents` call (`extents_sink`).
    match unsafe { add(ctx.cast(), offset, length, kind) } {
        -1 => EINVAL,
        _ => 0,
    }
}

/// nbdkit's list behind one of our sinks, or `None` for any other sink.
fn list_of(sink: ExtentSink) -> Option<*mut NbdkitExtents> {
    (sink.add as *const () == add_extent as *const ()).then_some(sink.ctx.cast())
}

/// `next->extents` into nbdkit's `list`.
pub fn extents_next(
    next: Next,
    count: u32,
    offset: u64,
    flags: u32,
    list: *mut NbdkitExtents,
    err: &mut c_int,
) -> c_int {
    data(
        call_next!(next, extents, -1, count, offset, flags, list, err),
        err,
    )
}

extern "C" fn extents(
    next: NextPtr,
    count: u32,
    offset: u64,
    flags: u32,
    sink: ExtentSink,
    err: &mut i32,
) -> i32 {
    let Some(list) = list_of(sink) else {
        *err = EINVAL;
        return -1;
    };
    let next = next.0.cast();
    checked(next, Op::Extents, count, offset, flags, err, |err| {
        extents_next(next, count, offset, flags, list, err)
    })
}

extern "C" fn extents_full(
    next: NextPtr,
    count: u32,
    offset: u64,
    flags: u32,
    out: &mut RVec<Extent>,
    err: &mut i32,
) -> i32 {
    let api = server();
    let (Some(full), Some(len), Some(get), Some(free)) = (
        api.extents_full,
        api.extents_count,
        api.get_extent,
        api.extents_free,
    ) else {
        *err = libc::ENOTSUP;
        return -1;
    };
    if let Err(errno) = check(next.0.cast(), Op::Extents, count, offset, flags) {
        *err = errno;
        return -1;
    }
    // SAFETY: the module's contract; nbdkit makes a list we free below.
    let list = unsafe { full(next.0.cast(), count, offset, flags, err) };
    if list.is_null() {
        return data_failed(err);
    }
    // SAFETY: our list, read then freed.
    unsafe {
        for i in 0..len(list) {
            let e = get(list, i);
            out.push(Extent {
                offset: e.offset,
                length: e.length,
                kind: e.type_,
            });
        }
        free(list);
    }
    0
}

extern "C" fn extents_aligned(
    next: NextPtr,
    count: u32,
    offset: u64,
    flags: u32,
    align: u32,
    sink: ExtentSink,
    err: &mut i32,
) -> i32 {
    let (Some(list), Some(f)) = (list_of(sink), server().extents_aligned) else {
        *err = EINVAL;
        return -1;
    };
    if let Err(errno) = check(next.0.cast(), Op::Extents, count, offset, flags) {
        *err = errno;
        return -1;
    }
    // SAFETY: the module's contract; `list` is nbdkit's list of the running `extents` call.
    data(
        unsafe { f(next.0.cast(), count.into(), offset, flags, align, list, err) },
        err,
    )
}

/// For messages: a C string from nbdkit, lossy.
pub fn lossy(s: *const c_char) -> String {
    if s.is_null() {
        return String::new();
    }
    // SAFETY: nbdkit's NUL-terminated string, valid for the call.
    unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
}
