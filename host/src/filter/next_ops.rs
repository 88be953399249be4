//! `next->…`: the layer below of one connection, as the filter calls it through
//! `FilterServices` and as the shim passes a request on when the filter leaves a callback out,
//! with [`check`], which refuses a request nbdkit would abort on. The contract behind the
//! `unsafe` is `services`' (a `Next` is NULL or live: [`ops`]).

use std::ffi::{c_char, c_int, c_void, CStr};

use rustshim_plugin_api::abi::{Extent, ExtentSink, NextPtr, RString, RVec};

use crate::nbdkit_c::{server, NbdkitExtents, NbdkitNextOps, Next};

const EIO: i32 = libc::EIO;
const EINVAL: i32 = libc::EINVAL;

/// The function table behind `next`, or `None` for NULL.
///
/// # Safety
/// The module's contract: `next` is NULL or a live `nbdkit_next *`.
#[inline(always)]
pub unsafe fn ops<'a>(next: Next) -> Option<&'a NbdkitNextOps> {
    // SAFETY: the caller's contract; its first member is the function table.
    unsafe { next.as_ref() }
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

pub(super) extern "C" fn prepare(next: NextPtr) -> i32 {
    match call_next!(next.0.cast(), prepare, -1) {
        -1 => EIO,
        _ => 0,
    }
}

pub(super) extern "C" fn finalize(next: NextPtr) -> i32 {
    match call_next!(next.0.cast(), finalize, -1) {
        -1 => EIO,
        _ => 0,
    }
}

/// `next->get_size`.
pub fn get_size_next(next: Next) -> i64 {
    call_next!(next, get_size, -1)
}

pub(super) extern "C" fn get_size(next: NextPtr, out: &mut u64) -> i32 {
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

pub(super) extern "C" fn export_description(next: NextPtr, out: &mut RString) -> i32 {
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

pub(super) extern "C" fn block_size(
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

/// `query_next`, made from the one list of queries.
macro_rules! query_next {
    ($([$n:literal $name:ident])*) => {
        /// `next->can_*` by [`QUERY_NAMES`](rustshim_plugin_api::abi::filter::QUERY_NAMES)
        /// number.
        pub fn query_next(next: Next, which: u32) -> c_int {
            match which {
                $($n => call_next!(next, $name, -1),)*
                _ => -1,
            }
        }
    };
}
rustshim_plugin_api::__filter_queries!(query_next);

pub(super) extern "C" fn query(next: NextPtr, which: u32) -> i32 {
    query_next(next.0.cast(), which)
}

/// `next->pread` and `next->pwrite`, one shape: for a request the filter left to the layer
/// below (`$through`), as nbdkit's own pass-through does it (`return next->pread (…)`):
/// nbdkit's answer and `*err` as they are, a tail call on the hot path; and for the filter's
/// own call through `FilterServices` (`$name`), checked first ([`check`]) and `*err` made
/// non-zero on failure.
macro_rules! buffer_next {
    ($($name:ident, $through:ident, $buf:ty, $filter_buf:ty;)*) => {$(
        /// See [`buffer_next!`].
        ///
        /// # Safety
        /// `next` is the one nbdkit gave the running data callback (not NULL); nbdkit's `buf`
        /// of `count` bytes and `err` of this call.
        #[inline(always)]
        pub unsafe fn $through(
            next: Next,
            buf: $buf,
            count: u32,
            offset: u64,
            flags: u32,
            err: *mut c_int,
        ) -> c_int {
            // SAFETY: the caller's contract: the `next` nbdkit gave a data callback, never NULL
            // (it is the connection's context below this layer), whose function nbdkit always
            // sets (its `next_ops` are the backend's functions, every one present, on every
            // nbdkit it runs on).
            let f = unsafe { (*next).$name.unwrap_unchecked() };
            // SAFETY: nbdkit's function for this `next`, with the caller's arguments.
            unsafe { f(next, buf, count, offset, flags, err) }
        }

        pub(super) extern "C" fn $name(
            next: NextPtr,
            buf: $filter_buf,
            count: u32,
            offset: u64,
            flags: u32,
            err: &mut i32,
        ) -> i32 {
            let next: Next = next.0.cast();
            checked(next, Op::$name, count, offset, flags, err, |err| {
                // SAFETY: the module's contract; the filter's own buffer of `count` bytes
                // (`Next::pread`, `Next::pwrite`).
                data(
                    call_next!(next, $name, -1, buf.cast(), count, offset, flags, err),
                    err,
                )
            })
        }
    )*};
}

buffer_next! {
    pread, pread_through, *mut c_void, *mut u8;
    pwrite, pwrite_through, *const c_void, *const u8;
}

/// `next->flush`.
pub fn flush_next(next: Next, flags: u32, err: &mut c_int) -> c_int {
    data(call_next!(next, flush, -1, flags, err), err)
}

pub(super) extern "C" fn flush(next: NextPtr, flags: u32, err: &mut i32) -> i32 {
    let next = next.0.cast();
    checked(next, Op::flush, 0, 0, flags, err, |err| {
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
    macro_rules! by_number {
        ($([$n:literal $name:ident])*) => {
            match which {
                $($n => call_next!(next, $name, -1, count, offset, flags, err),)*
                _ => -1,
            }
        };
    }
    let r = rustshim_plugin_api::__filter_ranges!(by_number);
    data(r, err)
}

pub(super) extern "C" fn range(
    next: NextPtr,
    which: u32,
    count: u32,
    offset: u64,
    flags: u32,
    err: &mut i32,
) -> i32 {
    let next = next.0.cast();
    macro_rules! by_number {
        ($([$n:literal $name:ident])*) => {
            match which {
                $($n => Op::$name,)*
                _ => {
                    *err = EINVAL;
                    return -1;
                }
            }
        };
    }
    let op = rustshim_plugin_api::__filter_ranges!(by_number);
    checked(next, op, count, offset, flags, err, |err| {
        range_next(next, which, count, offset, flags, err)
    })
}

// ---- What nbdkit asserts before a data request ----

/// A data request, for [`check`], named as its callback (so that the lists of callbacks name
/// them too).
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
#[allow(non_camel_case_types)]
pub enum Op {
    pread,
    pwrite,
    flush,
    trim,
    zero,
    extents,
    cache,
}

const FLAG_MAY_TRIM: u32 = 1;
const FLAG_FUA: u32 = 2;
const FLAG_REQ_ONE: u32 = 4;
const FLAG_FAST_ZERO: u32 = 8;

/// Checks a request to the layer below against what nbdkit asserts before passing it (the
/// `backend_*` functions): its capabilities, its size, the flags it allows. nbdkit aborts the
/// whole server on a failed assertion; here the request fails with an errno (`EROFS` for a
/// write to a read-only layer, `ENOSPC` past the end of a write or zero, `EINVAL` otherwise, as
/// nbdkit answers a client's request past the end). The
/// answers it asks for are cached by nbdkit, so asking is cheap.
pub fn check(next: Next, op: Op, count: u32, offset: u64, flags: u32) -> Result<(), c_int> {
    if next.is_null() {
        return Err(EIO);
    }
    let yes = |which: u32, min: c_int| query_next(next, which) >= min;
    use rustshim_plugin_api::abi::filter::query::*;
    let allowed = match op {
        Op::pread | Op::flush | Op::cache => 0,
        Op::pwrite | Op::trim => FLAG_FUA,
        Op::zero => FLAG_MAY_TRIM | FLAG_FUA | FLAG_FAST_ZERO,
        Op::extents => FLAG_REQ_ONE,
    };
    if flags & !allowed != 0 {
        return Err(EINVAL);
    }
    let writes = matches!(op, Op::pwrite | Op::trim | Op::zero);
    if writes && !yes(can_write, 1) {
        return Err(libc::EROFS);
    }
    let capable = match op {
        Op::flush => yes(can_flush, 1),
        Op::trim => yes(can_trim, 1),
        Op::zero => yes(can_zero, 1) && (flags & FLAG_FAST_ZERO == 0 || yes(can_fast_zero, 1)),
        Op::extents => yes(can_extents, 0),
        Op::cache => yes(can_cache, 1),
        Op::pread | Op::pwrite => true,
    };
    if !capable || (flags & FLAG_FUA != 0 && !yes(can_fua, 1)) {
        return Err(EINVAL);
    }
    if op == Op::flush {
        return Ok(());
    }
    let size = get_size_next(next);
    if size < 0 {
        return Err(EIO);
    }
    let size = size as u64;
    if count == 0 || offset > size || u64::from(count) > size - offset {
        let grows = matches!(op, Op::pwrite | Op::zero);
        return Err(if grows { libc::ENOSPC } else { EINVAL });
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

pub(super) extern "C" fn add_extent(ctx: *mut c_void, offset: u64, length: u64, kind: u32) -> i32 {
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
///
/// # Safety
/// The module's contract, and `list` is nbdkit's list of the running `extents` call.
pub unsafe fn extents_next(
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

pub(super) extern "C" fn extents(
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
    checked(next, Op::extents, count, offset, flags, err, |err| {
        // SAFETY: `list` is behind one of our sinks: nbdkit's list of this `extents` call.
        unsafe { extents_next(next, count, offset, flags, list, err) }
    })
}

pub(super) extern "C" fn extents_full(
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
    if let Err(errno) = check(next.0.cast(), Op::extents, count, offset, flags) {
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

pub(super) extern "C" fn extents_aligned(
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
    if let Err(errno) = check(next.0.cast(), Op::extents, count, offset, flags) {
        *err = errno;
        return -1;
    }
    // SAFETY: the module's contract; `list` is nbdkit's list of the running `extents` call.
    data(
        unsafe { f(next.0.cast(), count.into(), offset, flags, align, list, err) },
        err,
    )
}
