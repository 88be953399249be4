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

use std::ffi::{c_char, c_int};
use std::ptr;

use rustshim_plugin_api::abi::{BackendPtr, FilterModuleRef, RString, ABI_VERSION};

use super::config::{self, CONFIG_HELP};
use super::layer::{self, Layer, LAYERS, MAX_LAYERS};
use super::requests;
use super::services::{self, layer_next};
use crate::containment;
use crate::failure::Failure;
use crate::ffi::{dump_generation, forward, guarded, print_line, shim_status, status, utf8};
use crate::generation::Generation;
use crate::nbdkit_c::{
    server, Backend, NbdkitExports, NbdkitFilter136, NextConfigCompleteFn, NextConfigFn,
    NextDefaultExportFn, NextListExportsFn, NextPreconnectFn, FILTER_API_VERSION,
    THREAD_MODEL_PARALLEL,
};
use crate::options::ReloadMode;
use crate::reload;
use crate::services::take_error;

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
        open: Some(requests::open::<I>),
        close: Some(requests::close),
        prepare: Some(requests::prepare),
        finalize: Some(requests::finalize),
        get_size: Some(requests::get_size),
        export_description: Some(requests::export_description),
        block_size: Some(requests::block_size),
        can_write: Some(requests::can_write),
        can_flush: Some(requests::can_flush),
        is_rotational: Some(requests::is_rotational),
        can_trim: Some(requests::can_trim),
        can_zero: Some(requests::can_zero),
        can_fast_zero: Some(requests::can_fast_zero),
        can_extents: Some(requests::can_extents),
        can_fua: Some(requests::can_fua),
        can_multi_conn: Some(requests::can_multi_conn),
        can_cache: Some(requests::can_cache),
        pread: Some(requests::pread),
        pwrite: Some(requests::pwrite),
        flush: Some(requests::flush),
        trim: Some(requests::trim),
        zero: Some(requests::zero),
        extents: Some(requests::extents),
        cache: Some(requests::cache),
    }
}

// ---- Loading and configuration ----

extern "C" fn load() {
    let _ = server();
    crate::services::note_start_dir();
}

extern "C" fn unload<const I: usize>() {
    guarded("unload", (), || {
        if let Some(g) = LAYERS[I].slot.retire() {
            g.destroy();
        }
    })
}

unsafe extern "C" fn config<const I: usize>(
    next: Option<NextConfigFn>,
    nxdata: Backend,
    key: *const c_char,
    value: *const c_char,
) -> c_int {
    guarded("config", -1, || {
        // SAFETY: nbdkit's `config` arguments are NUL-terminated strings that live as long
        // as the filter.
        let pair = unsafe { utf8("parameter key", key) }.and_then(|k| {
            // SAFETY: as above.
            let v = unsafe { utf8(&format!("value of parameter '{k}'"), value) }?;
            Ok((k, v))
        });
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
        let given = layer::abi().is_some_and(|abi| abi.thread_model_arg);
        let next_model = if given { next_model } else { -1 };
        layer
            .next_model
            .store(next_model, std::sync::atomic::Ordering::Release);
        match layer.filter_if_given() {
            Err(failure) => shim_status(Err(failure)),
            Ok(Some(g)) => match layer::thread_model(&g, next_model) {
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
            Some(_)
                if layer.options().reload == ReloadMode::Watch
                    && shim_status(reload::watch::check_settings()) < 0 =>
            {
                -1
            }
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
            return shim_status(reload::watch::start_watcher(layer));
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
        print_line("rustshim_filter_shim_version", env!("CARGO_PKG_VERSION"));
        print_line("rustshim_filter_shim_api_version", ABI_VERSION);
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
    dump_generation(g, "rustshim_filter", "rustshim_filter_has_", &[], || {});
}

// ---- Before a connection is opened ----

unsafe extern "C" fn preconnect<const I: usize>(
    next: Option<NextPreconnectFn>,
    nxdata: Backend,
    readonly: c_int,
) -> c_int {
    guarded("preconnect", -1, || {
        let next = layer_next(next, nxdata);
        match LAYERS[I].callback(|m| m.preconnect()) {
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
        match LAYERS[I].callback(|m| m.list_exports()) {
            Some((g, f)) => {
                let sink = containment::export_sink(exports);
                // SAFETY: the generation's own instance; the sink adds to nbdkit's list.
                forward(unsafe { f(g.instance, next, readonly != 0, is_tls != 0, sink) })
            }
            // SAFETY: nbdkit's `next` and list of this call.
            None => unsafe { services::pass_list_exports(next, readonly != 0, exports) },
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
        let Some((g, f)) = LAYERS[I].callback(|m| m.default_export()) else {
            return services::pass_default_export(next, readonly != 0);
        };
        let mut name = RString::new();
        // SAFETY: the generation's own instance; nbdkit's `next` for this call.
        if unsafe { f(g.instance, next, readonly != 0, is_tls != 0, &mut name) } < 0 {
            take_error().report();
            return ptr::null();
        }
        let who = format!("filter '{}'", g.name());
        containment::default_export_answer(&who, name.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustshim_plugin_api::abi::FILTER_CALLBACK_NAMES;
    use std::ffi::c_void;

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
