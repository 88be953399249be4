//! The callbacks of one connection of a filter layer: `open` (instantiated per layer, like the
//! lifecycle callbacks in [`super::callbacks`], whose contracts these share) and those that
//! find the layer through their handle: the Rust filter's callback, or the request passed on
//! to the layer below as nbdkit would for a C filter without it.

use std::ffi::{c_char, c_int, c_void};
use std::ptr;

use rustshim_plugin_api::abi::{
    FilterModuleRef, HandlePtr, NextPtr, RStr, RString, FILTER_CALLBACK_NAMES,
};
use rustshim_plugin_api::Callbacks;

use super::layer::LAYERS;
use super::next_ops::{self, extents_next, flush_next, query_next, range_next};
use super::services::layer_next;
use crate::containment;
use crate::failure::Failure;
use crate::ffi::{forward, guarded, utf8};
use crate::nbdkit_c::{self, Context, Handle, NbdkitExtents, Next, NextOpenFn};
use crate::services::{log_recorded_error, take_error};

/// What nbdkit holds as a filter layer's handle of one open connection.
type Connection = crate::connection::Connection<FilterModuleRef>;

// ---- A connection ----

pub(super) unsafe extern "C" fn open<const I: usize>(
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
        // SAFETY: nbdkit's export name, a NUL-terminated string valid for the call.
        let name = match unsafe { utf8("export name", export_name) } {
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
        let pass = passes(&g.module);
        Connection {
            pass,
            ..Connection::new(g, handle)
        }
        .into_handle()
    })
}

pub(super) unsafe extern "C" fn close(h: Handle) {
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

pub(super) unsafe extern "C" fn prepare(next: Next, h: Handle, readonly: c_int) -> c_int {
    let c = unsafe { Connection::from_handle(h) };
    match c.module().prepare() {
        Some(f) => {
            answer(unsafe { f(c.instance(), c.handle, NextPtr(next.cast()), readonly != 0) })
        }
        None => 0,
    }
}

pub(super) unsafe extern "C" fn finalize(next: Next, h: Handle) -> c_int {
    let c = unsafe { Connection::from_handle(h) };
    match c.module().finalize() {
        Some(f) => answer(unsafe { f(c.instance(), c.handle, NextPtr(next.cast())) }),
        None => 0,
    }
}

pub(super) unsafe extern "C" fn get_size(next: Next, h: Handle) -> i64 {
    let c = unsafe { Connection::from_handle(h) };
    let Some(f) = c.module().get_size() else {
        return next_ops::get_size_next(next);
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

pub(super) unsafe extern "C" fn export_description(next: Next, h: Handle) -> *const c_char {
    let c = unsafe { Connection::from_handle(h) };
    let Some(f) = c.module().export_description() else {
        return next_ops::export_description_next(next);
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

pub(super) unsafe extern "C" fn block_size(
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
        return next_ops::block_size_next(next, minimum, preferred, maximum);
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
    let who = format!("filter '{}'", c.generation.name());
    containment::block_size_answer(&who, *minimum, *preferred, *maximum)
}

/// The `can_*` callbacks, one per query of the one list: the filter's answer, or the layer
/// below's.
macro_rules! queries {
    ($([$which:literal $name:ident])*) => {$(
        pub(super) unsafe extern "C" fn $name(next: Next, h: Handle) -> c_int {
            let c = unsafe { Connection::from_handle(h) };
            match c.module().$name() {
                Some(f) => answer(unsafe { f(c.instance(), c.handle, NextPtr(next.cast())) }),
                None => query_next(next, $which),
            }
        }
    )*};
}

rustshim_plugin_api::__filter_queries!(queries);

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

/// `count` and `flags` of a data request in one word ([`apart`] undoes it).
#[inline(always)]
fn both(count: u32, flags: u32) -> u64 {
    u64::from(count) | u64::from(flags) << 32
}

/// `count` and `flags` from [`both`].
#[inline(always)]
fn apart(word: u64) -> (u32, u32) {
    (word as u32, (word >> 32) as u32)
}

/// [`Connection::pass`]'s bits: the data callbacks that go straight to the layer below.
const PASS_PREAD: u32 = 1 << 0;
const PASS_PWRITE: u32 = 1 << 1;

/// Which data callbacks of a connection of `m` go straight to the layer below, as nbdkit's
/// own pass-through does: those the filter leaves out, unless it reshapes the requests (then
/// each is checked first). Decided at `open`: a connection keeps its generation's module.
fn passes(m: &FilterModuleRef) -> u32 {
    if m.implemented() & SHAPES_REQUESTS != 0 {
        return 0;
    }
    let left_out = |present: bool, bit: u32| if present { 0 } else { bit };
    left_out(m.pread().is_some(), PASS_PREAD) | left_out(m.pwrite().is_some(), PASS_PWRITE)
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
    report_data_failure(take_error(), err)
}

/// A data callback's failure as nbdkit expects it: its message to the log, `*err` set (never 0:
/// nbdkit aborts on that), -1.
fn report_data_failure(failure: Failure, err: *mut c_int) -> c_int {
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
            if let Err(errno) = next_ops::check($next, $op, $count, $offset, $flags) {
                // SAFETY: nbdkit's `err`, valid for the call.
                unsafe { *$err = errno };
                return -1;
            }
        }
        // SAFETY: nbdkit's `err`, valid for the call.
        $call(unsafe { &mut *$err })
    }};
}

/// `pread` and `pwrite`, one shape: a request the filter leaves out goes straight to the layer
/// below when [`passes`] said so at `open` (`$pass`), a tail call to nbdkit's own `next`
/// function; everything else is `$slow`, kept apart with the same arguments (also a tail
/// call, `count` and `flags` in one word so that all go in registers) so that the
/// pass-through stays lean: the filter's own callback and its status as nbdkit expects it,
/// or the layer below's after [`next_ops::check`] (the filter reshaped the requests).
macro_rules! buffer_requests {
    ($($name:ident, $slow:ident, $through:ident, $buf:ty, $pass:ident;)*) => {$(
        pub(super) unsafe extern "C" fn $name(
            next: Next,
            h: Handle,
            buf: $buf,
            count: u32,
            offset: u64,
            flags: u32,
            err: *mut c_int,
        ) -> c_int {
            let c = unsafe { Connection::from_handle(h) };
            if c.pass & $pass != 0 {
                // SAFETY: nbdkit's `next`, buffer and `err` of this call.
                return unsafe { next_ops::$through(next, buf, count, offset, flags, err) };
            }
            // SAFETY: nbdkit's arguments of this call, passed on as they came.
            unsafe { $slow(next, h, buf, offset, both(count, flags), err) }
        }

        /// The request when it does not go straight to the layer below (see above).
        ///
        /// # Safety
        /// nbdkit's arguments of the filter callback.
        #[inline(never)]
        unsafe extern "C" fn $slow(
            next: Next,
            h: Handle,
            buf: $buf,
            offset: u64,
            count_flags: u64,
            err: *mut c_int,
        ) -> c_int {
            let (count, flags) = apart(count_flags);
            let c = unsafe { Connection::from_handle(h) };
            let Some(f) = c.module().$name() else {
                if reshaped(c) {
                    if let Err(errno) =
                        next_ops::check(next, next_ops::Op::$name, count, offset, flags)
                    {
                        // SAFETY: nbdkit's `err`, valid for the call.
                        unsafe { *err = errno };
                        return -1;
                    }
                }
                // SAFETY: the caller's contract.
                return unsafe { next_ops::$through(next, buf, count, offset, flags, err) };
            };
            let r = unsafe {
                f(c.instance(), c.handle, NextPtr(next.cast()), buf.cast(), count, offset, flags)
            };
            data(r, err)
        }
    )*};
}

buffer_requests! {
    pread, pread_slow, pread_through, *mut c_void, PASS_PREAD;
    pwrite, pwrite_slow, pwrite_through, *const c_void, PASS_PWRITE;
}

pub(super) unsafe extern "C" fn flush(next: Next, h: Handle, flags: u32, err: *mut c_int) -> c_int {
    let c = unsafe { Connection::from_handle(h) };
    match c.module().flush() {
        Some(f) => data(
            unsafe { f(c.instance(), c.handle, NextPtr(next.cast()), flags) },
            err,
        ),
        None => pass_on!(c, next, next_ops::Op::flush, 0, 0, flags, err, |err| {
            flush_next(next, flags, err)
        }),
    }
}

/// `trim`, `zero`, `cache`, one per range request of the one list: the filter's callback, or
/// the layer below's.
macro_rules! ranges {
    ($([$which:literal $name:ident])*) => {$(
        pub(super) unsafe extern "C" fn $name(
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
                None => pass_on!(c, next, next_ops::Op::$name, count, offset, flags, err, |err| {
                    range_next(next, $which, count, offset, flags, err)
                }),
            }
        }
    )*};
}

rustshim_plugin_api::__filter_ranges!(ranges);

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
    report_data_failure(failure, err)
}

pub(super) unsafe extern "C" fn extents(
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
            let sink = next_ops::extents_sink(list);
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
            next_ops::Op::extents,
            count,
            offset,
            flags,
            err,
            |err| { extents_next(next, count, offset, flags, list, err) }
        ),
    }
}
