//! Turns a [`Plugin`] into the [`PluginModule`] the shim loads: one generic `extern "C"` function
//! per callback, each of which recovers the plugin's types from the opaque pointers, catches
//! panics, and reports errors through the host services. All of the plugin side's `unsafe` is
//! here; plugin authors never see it.

use std::any::Any;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

use crate::abi::{self, __PrefixTypeTrait, ROption, RSlice};
use crate::abi::{
    DumpSink, ExportSink, ExtentSink, HandlePtr, HostServicesRef, InstancePtr, PluginModule,
    PluginModuleRef, RStr, RString, ERROR, OK,
};
use crate::error::Result;
use crate::handover::Handover;
use crate::plugin::Plugin;
use crate::types::{Dump, Exports, Extents, Flags};

pub mod filter;

/// How this plugin was built, recorded by this crate's build script (same compiler and profile
/// as the plugin, since cargo builds them together).
const BUILD_INFO: &str = env!("RUSTSHIM_BUILD_INFO");

/// Builds the root module for plugin type `T`. Called once per load by the symbol that
/// [`crate::export_plugin!`] emits.
pub fn module<T: Plugin>() -> PluginModuleRef {
    /// The function of each callback field: its adapter, or `None` for an optional callback
    /// the impl does not define.
    #[rustfmt::skip]
    macro_rules! slot {
        // Every plugin has these: `load`/`unload` make and free the instance, and `open`,
        // `get_size` and `pread` are required trait methods; `close` must free the handle.
        (create) => { create::<T> };
        (destroy) => { destroy::<T> };
        (open) => { open::<T> };
        (close) => { close::<T> };
        (get_size) => { get_size::<T> };
        (pread) => { pread::<T> };
        ($name:ident) => {
            if T::CALLBACKS.has(stringify!($name)) { Some($name::<T>) } else { None }
        };
    }
    macro_rules! with_callbacks {
        ($($field:ident),*) => {
            PluginModule {
                name: RStr::from_str(T::NAME),
                longname: opt_str(T::LONGNAME),
                version: opt_str(T::VERSION),
                description: opt_str(T::DESCRIPTION),
                config_help: opt_str(T::CONFIG_HELP),
                magic_config_key: opt_str(T::MAGIC_CONFIG_KEY),
                implemented: T::CALLBACKS.bits(),
                callback_names: RSlice::from_slice(&abi::CALLBACK_NAME_STRS),
                panic_unwinds: cfg!(panic = "unwind"),
                build_info: RStr::from_str(BUILD_INFO),
                $($field: slot!($field),)*
            }
        };
    }
    abi::plugin_module!(each with_callbacks).leak_into_prefix()
}

fn opt_str(s: Option<&'static str>) -> ROption<RStr<'static>> {
    s.map(RStr::from_str).into()
}

// ---- Error and panic reporting ----

thread_local! {
    /// Where the last panic on this thread happened, recorded by the panic hook for the message
    /// built where it is caught.
    static PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn report(e: &crate::Error) {
    if let Some(host) = crate::host::host() {
        let msg = if e.is_logged() { "" } else { e.message() };
        (host.set_error())(e.errno() as i32, RStr::from_str(msg));
    }
}

fn panic_text(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(non-string panic payload)"
    }
}

/// Runs one callback body of the plugin or filter `name`: `Some` on success, `None` after
/// reporting its error or panic.
#[inline(always)]
fn guard<R>(
    name: &'static str,
    callback: &'static str,
    body: impl FnOnce() -> Result<R>,
) -> Option<R> {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => Some(value),
        Ok(Err(e)) => {
            failed(&e);
            None
        }
        Err(payload) => {
            panicked(name, callback, payload);
            None
        }
    }
}

// The failure paths are kept out of line, so that the success path of every callback (inlined
// into each `extern "C"` function) is not laid out around them.

#[cold]
#[inline(never)]
fn failed(e: &crate::Error) {
    report(e);
}

#[cold]
#[inline(never)]
fn panicked(plugin: &str, callback: &str, payload: Box<dyn Any + Send>) {
    let location = PANIC_LOCATION.with(|l| l.borrow_mut().take());
    let mut msg = format!("{plugin}: panic in {callback}: {}", panic_text(&*payload));
    if let Some(location) = location {
        msg.push_str(&format!(" (at {location})"));
    }
    report(&crate::Error::new(crate::Errno::EIO, msg));
}

#[inline(always)]
fn status(done: Option<()>) -> i32 {
    if done.is_some() {
        OK
    } else {
        ERROR
    }
}

/// Once per loaded copy: remember the host, route `log` records and panics to nbdkit.
fn init_copy(host: HostServicesRef) {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        crate::host::set(host);
        crate::logger::install();
        std::panic::set_hook(Box::new(|info| {
            let location = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
            if cfg!(panic = "unwind") {
                // The catch site builds the message; the default hook's stderr line would only
                // duplicate it without nbdkit's prefix.
                PANIC_LOCATION.with(|l| *l.borrow_mut() = location);
            } else {
                log::error!(
                    "panic: {} (at {}); this plugin was built with panic=abort, so nbdkit exits now",
                    panic_text(info.payload()),
                    location.unwrap_or_default()
                );
            }
        }));
    });
}

// ---- The callbacks ----
//
// Each is `unsafe` for one reason, the shim's side of the ABI contract (for plugins and filters
// alike): it passes back exactly the `InstancePtr` that `create` made (a leaked `Box<T>`) and a
// `HandlePtr` that `open` made (a leaked `Box<T::Handle>`), never after `destroy` or `close`; the
// callbacks that take `&mut T` run only while no other callback of the instance runs (the
// threading contract in `crate::abi`). The functions below turn the pointers back into
// references under that contract; the only other `unsafe` is where a callback consumes a box or
// wraps nbdkit's buffer.

/// The plugin value behind `i`.
///
/// # Safety
/// `i` was made by `create::<T>` and not yet passed to `destroy`.
#[inline(always)]
unsafe fn instance<'a, T>(i: InstancePtr) -> &'a T {
    // SAFETY: the caller's contract.
    unsafe { &*(i.0 as *const T) }
}

/// The plugin value behind `i`, exclusively.
///
/// # Safety
/// As [`instance`], and no other callback of the instance runs (a lifecycle callback).
#[inline(always)]
unsafe fn instance_mut<'a, T>(i: InstancePtr) -> &'a mut T {
    // SAFETY: the caller's contract.
    unsafe { &mut *(i.0 as *mut T) }
}

/// The handle behind `h`.
///
/// # Safety
/// `h` was made by `open` (a leaked `Box<H>`) and not yet closed.
#[inline(always)]
unsafe fn handle<'a, H>(h: HandlePtr) -> &'a H {
    // SAFETY: the caller's contract.
    unsafe { &*(h.0 as *const H) }
}

/// The plugin value and the connection's handle.
///
/// # Safety
/// As [`instance`], and `h` was made by `open::<T>` of that instance and not yet closed.
#[inline(always)]
unsafe fn with_handle<'a, T: Plugin>(i: InstancePtr, h: HandlePtr) -> (&'a T, &'a T::Handle) {
    // SAFETY: the caller's contract.
    unsafe { (instance::<T>(i), handle::<T::Handle>(h)) }
}

/// `create` of a plugin or filter `T` named `name`: its `Default` value, then its `load`, leaked
/// as the instance.
fn make_instance<T: Default>(name: &'static str, load: fn(&mut T), out: &mut InstancePtr) -> i32 {
    let made = guard(name, "load", || {
        let mut value = T::default();
        load(&mut value);
        Ok(value)
    });
    match made {
        Some(value) => {
            *out = InstancePtr(Box::into_raw(Box::new(value)).cast());
            OK
        }
        None => ERROR,
    }
}

/// `destroy` of a plugin or filter `T`: its `unload`, then it is dropped.
///
/// # Safety
/// `i` is the `Box<T>` leaked by [`make_instance`], and this is its last use.
unsafe fn free_instance<T>(name: &'static str, i: InstancePtr, unload: fn(&mut T)) {
    // SAFETY: the caller's contract.
    let mut value = unsafe { Box::from_raw(i.0 as *mut T) };
    guard(name, "unload", || {
        unload(&mut value);
        Ok(())
    });
    let _ = catch_unwind(AssertUnwindSafe(move || drop(value)));
}

extern "C" fn create<T: Plugin>(host: HostServicesRef, out: &mut InstancePtr) -> i32 {
    init_copy(host);
    make_instance::<T>(T::NAME, T::load, out)
}

unsafe extern "C" fn destroy<T: Plugin>(i: InstancePtr) {
    // SAFETY: `i` is the instance `create` made, and `destroy` is its last use.
    unsafe { free_instance::<T>(T::NAME, i, T::unload) }
}

unsafe extern "C" fn config<T: Plugin>(i: InstancePtr, key: RStr<'_>, value: RStr<'_>) -> i32 {
    let p = unsafe { instance_mut::<T>(i) };
    status(guard(T::NAME, "config", || {
        p.config(key.as_str(), value.as_str())
    }))
}

/// The lifecycle callbacks that take `&mut self` and return `Result<()>`.
macro_rules! lifecycle_callbacks {
    ($($name:ident),*) => {$(
        unsafe extern "C" fn $name<T: Plugin>(i: InstancePtr) -> i32 {
            let p = unsafe { instance_mut::<T>(i) };
            status(guard(T::NAME, stringify!($name), || p.$name()))
        }
    )*};
}
lifecycle_callbacks!(config_complete, get_ready, after_fork);

unsafe extern "C" fn thread_model<T: Plugin>(i: InstancePtr) -> i32 {
    let p = unsafe { instance::<T>(i) };
    match guard(T::NAME, "thread_model", || p.thread_model()) {
        Some(model) => model as i32,
        None => ERROR,
    }
}

unsafe extern "C" fn cleanup<T: Plugin>(i: InstancePtr) {
    let p = unsafe { instance_mut::<T>(i) };
    guard(T::NAME, "cleanup", || {
        p.cleanup();
        Ok(())
    });
}

unsafe extern "C" fn dump_plugin<T: Plugin>(i: InstancePtr, sink: DumpSink) {
    let p = unsafe { instance::<T>(i) };
    guard(T::NAME, "dump_plugin", || {
        p.dump_plugin(&mut Dump::new(sink));
        Ok(())
    });
}

unsafe extern "C" fn preconnect<T: Plugin>(i: InstancePtr, readonly: bool) -> i32 {
    let p = unsafe { instance::<T>(i) };
    status(guard(T::NAME, "preconnect", || p.preconnect(readonly)))
}

unsafe extern "C" fn list_exports<T: Plugin>(
    i: InstancePtr,
    readonly: bool,
    is_tls: bool,
    sink: ExportSink,
) -> i32 {
    let p = unsafe { instance::<T>(i) };
    status(guard(T::NAME, "list_exports", || {
        p.list_exports(readonly, is_tls, &mut Exports::new(sink))
    }))
}

unsafe extern "C" fn default_export<T: Plugin>(
    i: InstancePtr,
    readonly: bool,
    is_tls: bool,
    out: &mut RString,
) -> i32 {
    let p = unsafe { instance::<T>(i) };
    match guard(T::NAME, "default_export", || {
        p.default_export(readonly, is_tls)
    }) {
        Some(name) => {
            *out = name.into();
            OK
        }
        None => ERROR,
    }
}

unsafe extern "C" fn open<T: Plugin>(i: InstancePtr, readonly: bool, out: &mut HandlePtr) -> i32 {
    let p = unsafe { instance::<T>(i) };
    match guard(T::NAME, "open", || p.open(readonly)) {
        Some(h) => {
            *out = HandlePtr(Box::into_raw(Box::new(h)).cast());
            OK
        }
        None => ERROR,
    }
}

unsafe extern "C" fn close<T: Plugin>(i: InstancePtr, h: HandlePtr) {
    // SAFETY: the contract above; `h` is the `Box<T::Handle>` leaked by `open`, and this is its
    // last use.
    let (p, h) = unsafe { (instance::<T>(i), Box::from_raw(h.0 as *mut T::Handle)) };
    guard(T::NAME, "close", || {
        p.close(*h);
        Ok(())
    });
}

unsafe extern "C" fn get_size<T: Plugin>(i: InstancePtr, h: HandlePtr, out: &mut u64) -> i32 {
    let (p, h) = unsafe { with_handle::<T>(i, h) };
    match guard(T::NAME, "get_size", || p.get_size(h)) {
        Some(size) => {
            *out = size;
            OK
        }
        None => ERROR,
    }
}

unsafe extern "C" fn export_description<T: Plugin>(
    i: InstancePtr,
    h: HandlePtr,
    out: &mut RString,
) -> i32 {
    let (p, h) = unsafe { with_handle::<T>(i, h) };
    match guard(T::NAME, "export_description", || p.export_description(h)) {
        Some(d) => {
            *out = d.into();
            OK
        }
        None => ERROR,
    }
}

unsafe extern "C" fn block_size<T: Plugin>(
    i: InstancePtr,
    h: HandlePtr,
    minimum: &mut u32,
    preferred: &mut u32,
    maximum: &mut u32,
) -> i32 {
    let (p, h) = unsafe { with_handle::<T>(i, h) };
    match guard(T::NAME, "block_size", || p.block_size(h)) {
        Some(b) => {
            (*minimum, *preferred, *maximum) = (b.minimum, b.preferred, b.maximum);
            OK
        }
        None => ERROR,
    }
}

/// The `can_*` callbacks: a question about the connection, answered as an `i32` (a bool, or a
/// mode's number).
macro_rules! query_callbacks {
    ($($name:ident),*) => {$(
        unsafe extern "C" fn $name<T: Plugin>(i: InstancePtr, h: HandlePtr) -> i32 {
            let (p, h) = unsafe { with_handle::<T>(i, h) };
            guard(T::NAME, stringify!($name), || p.$name(h)).map_or(ERROR, |answer| answer as i32)
        }
    )*};
}
query_callbacks!(
    can_write,
    can_flush,
    is_rotational,
    can_trim,
    can_zero,
    can_fua,
    can_multi_conn,
    can_extents,
    can_cache,
    can_fast_zero
);

unsafe extern "C" fn pread<T: Plugin>(
    i: InstancePtr,
    h: HandlePtr,
    buf: *mut u8,
    count: u32,
    offset: u64,
    flags: u32,
) -> i32 {
    let (p, h) = unsafe { with_handle::<T>(i, h) };
    // SAFETY: nbdkit's buffer holds `count` bytes, not aliased, for the duration of the call.
    let buf = unsafe { std::slice::from_raw_parts_mut(buf, count as usize) };
    status(guard(T::NAME, "pread", || {
        p.pread(h, buf, offset, Flags::from_bits(flags))
    }))
}

unsafe extern "C" fn pwrite<T: Plugin>(
    i: InstancePtr,
    h: HandlePtr,
    buf: *const u8,
    count: u32,
    offset: u64,
    flags: u32,
) -> i32 {
    let (p, h) = unsafe { with_handle::<T>(i, h) };
    // SAFETY: nbdkit's buffer holds `count` bytes for the duration of the call.
    let buf = unsafe { std::slice::from_raw_parts(buf, count as usize) };
    status(guard(T::NAME, "pwrite", || {
        p.pwrite(h, buf, offset, Flags::from_bits(flags))
    }))
}

unsafe extern "C" fn flush<T: Plugin>(i: InstancePtr, h: HandlePtr, flags: u32) -> i32 {
    let (p, h) = unsafe { with_handle::<T>(i, h) };
    status(guard(T::NAME, "flush", || {
        p.flush(h, Flags::from_bits(flags))
    }))
}

/// The callbacks on a range of the export: `(count, offset, flags)`.
macro_rules! range_callbacks {
    ($($name:ident),*) => {$(
        unsafe extern "C" fn $name<T: Plugin>(i: InstancePtr, h: HandlePtr, count: u32, offset: u64, flags: u32) -> i32 {
            let (p, h) = unsafe { with_handle::<T>(i, h) };
            status(guard(T::NAME, stringify!($name), || p.$name(h, count, offset, Flags::from_bits(flags))))
        }
    )*};
}
range_callbacks!(trim, zero, cache);

unsafe extern "C" fn extents<T: Plugin>(
    i: InstancePtr,
    h: HandlePtr,
    count: u32,
    offset: u64,
    flags: u32,
    sink: ExtentSink,
) -> i32 {
    let (p, h) = unsafe { with_handle::<T>(i, h) };
    status(guard(T::NAME, "extents", || {
        p.extents(
            h,
            count,
            offset,
            Flags::from_bits(flags),
            &mut Extents::new(sink),
        )
    }))
}

/// `hand_over` and `take_over` (hot reload), the same for plugins and filters: defined for
/// `T: $trait` where the macro is used.
macro_rules! reload_callbacks {
    ($trait:ident) => {
        unsafe extern "C" fn hand_over<T: $trait>(
            i: InstancePtr,
            out: &mut ROption<abi::Handover>,
        ) -> i32 {
            // One that hands over when it retires is asked twice: at the swap it answers
            // "later" (each loaded copy has its own statics and one instance), then it hands
            // over for real.
            static ASKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            if T::HAND_OVER_AT_RETIRE && !ASKED.swap(true, std::sync::atomic::Ordering::AcqRel) {
                *out = ROption::RSome(Handover::at_retire_marker());
                return 1;
            }
            let p = unsafe { instance::<T>(i) };
            match guard(T::NAME, "hand_over", || Ok(p.hand_over())) {
                Some(Some(state)) => {
                    *out = ROption::RSome(state.into_raw());
                    1
                }
                Some(None) => 0,
                None => ERROR,
            }
        }

        unsafe extern "C" fn take_over<T: $trait>(i: InstancePtr, state: abi::Handover) -> i32 {
            // A generation that is not serving yet: nothing else uses the instance.
            let p = unsafe { instance_mut::<T>(i) };
            let state = Handover::from_raw(state);
            match guard(T::NAME, "take_over", || p.take_over(state)) {
                Some(adopted) => adopted as i32,
                None => ERROR,
            }
        }
    };
}
use reload_callbacks;
reload_callbacks!(Plugin);

// Callbacks added in later minor versions go here.

/// Exports plugin type `T` from this cdylib as a rustshim plugin. Use once per plugin crate:
///
/// ```ignore
/// rustshim_plugin_api::export_plugin!(MyPlugin);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        fn __rustshim_make_module() -> $crate::abi::PluginModuleRef {
            $crate::adapter::module::<$plugin>()
        }
        $crate::__export_root_module!(__rustshim_make_module, $crate::abi::PluginModuleRef);
    };
}
