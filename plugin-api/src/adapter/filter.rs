//! Turns a [`Filter`] into the [`FilterModule`] the shim loads, as the parent module does for
//! plugins, under the same contract (stated there): one generic `extern "C"` function per
//! callback, the layer below passed through as the opaque pointers the shim gave.

use super::{
    free_instance, guard, handle, init_copy, instance, instance_mut, make_instance, opt_str,
    status, BUILD_INFO,
};
use crate::abi::{self, __PrefixTypeTrait, ROption, RSlice};
use crate::abi::{
    BackendPtr, DumpSink, ExportSink, ExtentSink, FilterModule, FilterModuleRef, FilterServicesRef,
    HandlePtr, HostServicesRef, InstancePtr, LayerNext, NextPtr, RStr, RString, ERROR, OK,
};
use crate::filter::{
    Backend, Filter, Next, NextConfig, NextConfigComplete, NextDefaultExport, NextListExports,
    NextOpen, NextPreconnect,
};
use crate::handover::Handover;
use crate::types::{Dump, Exports, Extents, Flags, ThreadModel};

/// Builds the root module for filter type `T`. Called once per load by the symbol that
/// [`crate::export_filter!`] emits.
pub fn module<T: Filter>() -> FilterModuleRef {
    /// The function of each callback field: its adapter, or `None` for an optional callback
    /// the impl does not define.
    #[rustfmt::skip]
    macro_rules! slot {
        // Every filter has these: `load`/`unload` make and free the instance, `open` makes the
        // handle (the attribute writes one when the author did not) and `close` frees it.
        (create) => { create::<T> };
        (destroy) => { destroy::<T> };
        (open) => { open::<T> };
        (close) => { close::<T> };
        ($name:ident) => {
            if T::CALLBACKS.has(stringify!($name)) { Some($name::<T>) } else { None }
        };
    }
    macro_rules! with_callbacks {
        ($($field:ident),*) => {
            FilterModule {
                name: RStr::from_str(T::NAME),
                longname: opt_str(T::LONGNAME),
                version: opt_str(T::VERSION),
                description: opt_str(T::DESCRIPTION),
                config_help: opt_str(T::CONFIG_HELP),
                implemented: T::CALLBACKS.bits(),
                callback_names: RSlice::from_slice(&abi::FILTER_CALLBACK_NAME_STRS),
                panic_unwinds: cfg!(panic = "unwind"),
                build_info: RStr::from_str(BUILD_INFO),
                $($field: slot!($field),)*
            }
        };
    }
    abi::filter::filter_module!(each with_callbacks).leak_into_prefix()
}

/// The filter value and the connection's handle.
///
/// # Safety
/// The parent module's contract: `i` made by `create::<T>`, `h` by `open::<T>` of it, neither
/// released yet.
#[inline(always)]
unsafe fn with_handle<'a, T: Filter>(i: InstancePtr, h: HandlePtr) -> (&'a T, &'a T::Handle) {
    // SAFETY: the caller's contract.
    unsafe { (instance::<T>(i), handle::<T::Handle>(h)) }
}

extern "C" fn create<T: Filter>(
    host: HostServicesRef,
    services: FilterServicesRef,
    out: &mut InstancePtr,
) -> i32 {
    init_copy(host);
    crate::host::set_filter_services(services);
    make_instance::<T>(T::NAME, T::load, out)
}

unsafe extern "C" fn destroy<T: Filter>(i: InstancePtr) {
    // SAFETY: `i` is the instance `create` made, and `destroy` is its last use.
    unsafe { free_instance::<T>(T::NAME, i, T::unload) }
}

unsafe extern "C" fn config<T: Filter>(
    i: InstancePtr,
    next: LayerNext,
    key: RStr<'_>,
    value: RStr<'_>,
) -> i32 {
    let f = unsafe { instance_mut::<T>(i) };
    let mut next = NextConfig::new(next);
    status(guard(T::NAME, "config", || {
        f.config(&mut next, key.as_str(), value.as_str())
    }))
}

unsafe extern "C" fn config_complete<T: Filter>(i: InstancePtr, next: LayerNext) -> i32 {
    let f = unsafe { instance_mut::<T>(i) };
    let mut next = NextConfigComplete::new(next);
    status(guard(T::NAME, "config_complete", || {
        f.config_complete(&mut next)
    }))
}

unsafe extern "C" fn thread_model<T: Filter>(i: InstancePtr, next_model: i32) -> i32 {
    let f = unsafe { instance::<T>(i) };
    let next_model = ThreadModel::from_raw(next_model);
    match guard(T::NAME, "thread_model", || f.thread_model(next_model)) {
        Some(model) => model as i32,
        None => ERROR,
    }
}

unsafe extern "C" fn get_ready<T: Filter>(i: InstancePtr, model: i32) -> i32 {
    let f = unsafe { instance_mut::<T>(i) };
    status(guard(T::NAME, "get_ready", || {
        let model = ThreadModel::from_raw(model).ok_or_else(|| {
            crate::Error::invalid(format!("get_ready: unknown thread model {model}"))
        })?;
        f.get_ready(model)
    }))
}

unsafe extern "C" fn after_fork<T: Filter>(i: InstancePtr, backend: BackendPtr) -> i32 {
    let f = unsafe { instance_mut::<T>(i) };
    status(guard(T::NAME, "after_fork", || {
        f.after_fork(Backend::new(backend))
    }))
}

unsafe extern "C" fn cleanup<T: Filter>(i: InstancePtr, backend: BackendPtr) {
    let f = unsafe { instance_mut::<T>(i) };
    guard(T::NAME, "cleanup", || {
        f.cleanup(Backend::new(backend));
        Ok(())
    });
}

unsafe extern "C" fn dump_plugin<T: Filter>(i: InstancePtr, sink: DumpSink) {
    let f = unsafe { instance::<T>(i) };
    guard(T::NAME, "dump_plugin", || {
        f.dump_plugin(&mut Dump::new(sink));
        Ok(())
    });
}

unsafe extern "C" fn preconnect<T: Filter>(i: InstancePtr, next: LayerNext, readonly: bool) -> i32 {
    let f = unsafe { instance::<T>(i) };
    let next = NextPreconnect::new(next);
    status(guard(T::NAME, "preconnect", || {
        f.preconnect(&next, readonly)
    }))
}

unsafe extern "C" fn list_exports<T: Filter>(
    i: InstancePtr,
    next: LayerNext,
    readonly: bool,
    is_tls: bool,
    sink: ExportSink,
) -> i32 {
    let f = unsafe { instance::<T>(i) };
    let next = NextListExports::new(next);
    status(guard(T::NAME, "list_exports", || {
        f.list_exports(&next, readonly, is_tls, &mut Exports::new(sink))
    }))
}

unsafe extern "C" fn default_export<T: Filter>(
    i: InstancePtr,
    next: LayerNext,
    readonly: bool,
    is_tls: bool,
    out: &mut RString,
) -> i32 {
    let f = unsafe { instance::<T>(i) };
    let next = NextDefaultExport::new(next);
    match guard(T::NAME, "default_export", || {
        f.default_export(&next, readonly, is_tls)
    }) {
        Some(name) => {
            *out = name.into();
            OK
        }
        None => ERROR,
    }
}

unsafe extern "C" fn open<T: Filter>(
    i: InstancePtr,
    next: LayerNext,
    readonly: bool,
    export_name: RStr<'_>,
    is_tls: bool,
    out: &mut HandlePtr,
) -> i32 {
    let f = unsafe { instance::<T>(i) };
    let mut next = NextOpen::new(next);
    match guard(T::NAME, "open", || {
        f.open(&mut next, readonly, export_name.as_str(), is_tls)
    }) {
        Some(h) => {
            *out = HandlePtr(Box::into_raw(Box::new(h)).cast());
            OK
        }
        None => ERROR,
    }
}

unsafe extern "C" fn close<T: Filter>(i: InstancePtr, h: HandlePtr) {
    // SAFETY: the contract; `h` is the `Box<T::Handle>` leaked by `open`, and this is its last
    // use.
    let (f, h) = unsafe { (instance::<T>(i), Box::from_raw(h.0 as *mut T::Handle)) };
    guard(T::NAME, "close", || {
        f.close(*h);
        Ok(())
    });
}

unsafe extern "C" fn prepare<T: Filter>(
    i: InstancePtr,
    h: HandlePtr,
    next: NextPtr,
    readonly: bool,
) -> i32 {
    let (f, h) = unsafe { with_handle::<T>(i, h) };
    status(guard(T::NAME, "prepare", || {
        f.prepare(&Next::new(next), h, readonly)
    }))
}

unsafe extern "C" fn finalize<T: Filter>(i: InstancePtr, h: HandlePtr, next: NextPtr) -> i32 {
    let (f, h) = unsafe { with_handle::<T>(i, h) };
    status(guard(T::NAME, "finalize", || {
        f.finalize(&Next::new(next), h)
    }))
}

unsafe extern "C" fn get_size<T: Filter>(
    i: InstancePtr,
    h: HandlePtr,
    next: NextPtr,
    out: &mut u64,
) -> i32 {
    let (f, h) = unsafe { with_handle::<T>(i, h) };
    match guard(T::NAME, "get_size", || f.get_size(&Next::new(next), h)) {
        Some(size) => {
            *out = size;
            OK
        }
        None => ERROR,
    }
}

unsafe extern "C" fn export_description<T: Filter>(
    i: InstancePtr,
    h: HandlePtr,
    next: NextPtr,
    out: &mut RString,
) -> i32 {
    let (f, h) = unsafe { with_handle::<T>(i, h) };
    match guard(T::NAME, "export_description", || {
        f.export_description(&Next::new(next), h)
    }) {
        Some(d) => {
            *out = d.into();
            OK
        }
        None => ERROR,
    }
}

unsafe extern "C" fn block_size<T: Filter>(
    i: InstancePtr,
    h: HandlePtr,
    next: NextPtr,
    minimum: &mut u32,
    preferred: &mut u32,
    maximum: &mut u32,
) -> i32 {
    let (f, h) = unsafe { with_handle::<T>(i, h) };
    match guard(T::NAME, "block_size", || f.block_size(&Next::new(next), h)) {
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
        unsafe extern "C" fn $name<T: Filter>(i: InstancePtr, h: HandlePtr, next: NextPtr) -> i32 {
            let (f, h) = unsafe { with_handle::<T>(i, h) };
            guard(T::NAME, stringify!($name), || f.$name(&Next::new(next), h))
                .map_or(ERROR, |answer| answer as i32)
        }
    )*};
}
query_callbacks!(
    can_write,
    can_flush,
    is_rotational,
    can_trim,
    can_zero,
    can_fast_zero,
    can_extents,
    can_fua,
    can_multi_conn,
    can_cache
);

unsafe extern "C" fn pread<T: Filter>(
    i: InstancePtr,
    h: HandlePtr,
    next: NextPtr,
    buf: *mut u8,
    count: u32,
    offset: u64,
    flags: u32,
) -> i32 {
    let (f, h) = unsafe { with_handle::<T>(i, h) };
    // SAFETY: nbdkit's buffer holds `count` bytes, not aliased, for the duration of the call.
    let buf = unsafe { std::slice::from_raw_parts_mut(buf, count as usize) };
    status(guard(T::NAME, "pread", || {
        f.pread(&Next::new(next), h, buf, offset, Flags::from_bits(flags))
    }))
}

unsafe extern "C" fn pwrite<T: Filter>(
    i: InstancePtr,
    h: HandlePtr,
    next: NextPtr,
    buf: *const u8,
    count: u32,
    offset: u64,
    flags: u32,
) -> i32 {
    let (f, h) = unsafe { with_handle::<T>(i, h) };
    // SAFETY: nbdkit's buffer holds `count` bytes for the duration of the call.
    let buf = unsafe { std::slice::from_raw_parts(buf, count as usize) };
    status(guard(T::NAME, "pwrite", || {
        f.pwrite(&Next::new(next), h, buf, offset, Flags::from_bits(flags))
    }))
}

unsafe extern "C" fn flush<T: Filter>(
    i: InstancePtr,
    h: HandlePtr,
    next: NextPtr,
    flags: u32,
) -> i32 {
    let (f, h) = unsafe { with_handle::<T>(i, h) };
    status(guard(T::NAME, "flush", || {
        f.flush(&Next::new(next), h, Flags::from_bits(flags))
    }))
}

/// The callbacks on a range of the export: `(count, offset, flags)`.
macro_rules! range_callbacks {
    ($($name:ident),*) => {$(
        unsafe extern "C" fn $name<T: Filter>(
            i: InstancePtr,
            h: HandlePtr,
            next: NextPtr,
            count: u32,
            offset: u64,
            flags: u32,
        ) -> i32 {
            let (f, h) = unsafe { with_handle::<T>(i, h) };
            status(guard(T::NAME, stringify!($name), || {
                f.$name(&Next::new(next), h, count, offset, Flags::from_bits(flags))
            }))
        }
    )*};
}
range_callbacks!(trim, zero, cache);

unsafe extern "C" fn extents<T: Filter>(
    i: InstancePtr,
    h: HandlePtr,
    next: NextPtr,
    count: u32,
    offset: u64,
    flags: u32,
    sink: ExtentSink,
) -> i32 {
    let (f, h) = unsafe { with_handle::<T>(i, h) };
    status(guard(T::NAME, "extents", || {
        f.extents(
            &Next::new(next),
            h,
            count,
            offset,
            Flags::from_bits(flags),
            &mut Extents::new(sink),
        )
    }))
}

super::reload_callbacks!(Filter);

// Callbacks added in later minor versions go here.

/// Exports filter type `T` from this cdylib as a rustshim filter. Use once per filter crate:
///
/// ```ignore
/// rustshim_plugin_api::export_filter!(MyFilter);
/// ```
#[macro_export]
macro_rules! export_filter {
    ($filter:ty) => {
        fn __rustshim_make_module() -> $crate::abi::FilterModuleRef {
            $crate::adapter::filter::module::<$filter>()
        }
        $crate::__export_root_module!(__rustshim_make_module, $crate::abi::FilterModuleRef);
    };
}
