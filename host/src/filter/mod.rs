//! The shim as an nbdkit **filter** (`filter_init`): it registers as the filter `rustshim`, loads
//! a Rust filter dylib (`filter=PATH|NAME`) through the stable ABI of `rustshim-plugin-api`, and
//! forwards every filter callback to it, giving it the layer below through [`services`].
//!
//! * [`version`]: which `struct nbdkit_filter` the running nbdkit has; `filter_init` builds that
//!   one at run time (nbdkit copies it by value).
//! * Layers: nbdkit loads the same `.so` once per `--filter=rustshim` (one `dlopen` handle, one
//!   set of statics) and calls `filter_init` once per layer. Callbacks such as `load`,
//!   `thread_model` or `get_ready` carry nothing that says which layer they are for, so each
//!   `filter_init` call returns a struct whose callbacks are instantiated for that layer
//!   (`callbacks::registration::<I>`), and every layer has its own [`layer::Layer`]: up to
//!   [`layer::MAX_LAYERS`] Rust filters in one nbdkit, each with its own state.
//! * [`config`]: the layer's keys (`filter=`, `filter-reload=`, `allow-insecure-filter=`) and
//!   the routing of the others.
//! * [`callbacks`]: what nbdkit calls.
//! * [`services`]: the `FilterServices` table, through which the Rust filter calls the layer
//!   below (nbdkit's `next` functions, `nbdkit_next_ops`, the context and extents functions).
//!
//! Loading, serving and hot reload are the plugin's (`generation`, `serving`, `reload`), with a
//! `Slot` per layer.

pub mod callbacks;
pub mod config;
pub mod layer;
pub mod next_ops;
mod requests;
pub mod services;
pub mod version;

use std::ffi::{c_void, CString};
use std::sync::atomic::Ordering;

use rustshim_plugin_api::abi::{BackendPtr, FilterModuleRef, InstancePtr, FILTER_CALLBACK_NAMES};

use crate::module::{common_facts, Module};
use crate::nbdkit_c;
use crate::services as host_services;
use layer::{ABI, LAYERS_MADE, MAX_LAYERS};

/// `filter_init`: the struct for the next layer, in the running nbdkit's layout, or NULL (nbdkit
/// then exits) after one line saying why.
pub fn init() -> *const c_void {
    let abi = match host_services::server_version() {
        Some(version) => version::for_version(version),
        None => Err("rustshim: cannot tell the running nbdkit's version (nbdkit --dump-config of /proc/self/exe failed), so the filter cannot load".to_string()),
    };
    let abi = match abi {
        Ok(abi) => abi,
        Err(why) => {
            nbdkit_c::error(&why);
            return std::ptr::null();
        }
    };
    let index = LAYERS_MADE.fetch_add(1, Ordering::AcqRel);
    if index >= MAX_LAYERS {
        nbdkit_c::error(&format!(
            "rustshim: at most {MAX_LAYERS} Rust filters can be stacked in one nbdkit (--filter=rustshim given more often)"
        ));
        return std::ptr::null();
    }
    // Kept for the life of the process: nbdkit keeps `_version` (and prints it for --version).
    let version = CString::new(abi.version.clone()).unwrap_or_default();
    let version: &'static CString = Box::leak(Box::new(version));
    let full = (callbacks::REGISTRATIONS[index])(version.as_ptr());
    let layout = abi.layout;
    let _ = ABI.set(abi);
    match layout {
        version::Layout::V136 => Box::leak(Box::new(full)) as *const _ as *const c_void,
        version::Layout::V132 => {
            Box::leak(Box::new(full.without_newer())) as *const _ as *const c_void
        }
    }
}

impl Module for FilterModuleRef {
    const WHAT: &'static str = "filter";
    const CALLBACK_NAMES: &'static [&'static str] = &FILTER_CALLBACK_NAMES;
    common_facts!();

    fn create(&self, out: &mut InstancePtr) -> i32 {
        (Self::create(self))(host_services::host_services(), services::table(), out)
    }

    unsafe fn cleanup(&self, instance: InstancePtr, backend: *mut c_void) {
        if let Some(f) = Self::cleanup(self) {
            // SAFETY: the caller's contract; `backend` is the layer below of this filter's
            // layer, which nbdkit keeps valid until its `cleanup`.
            unsafe { f(instance, BackendPtr(backend)) }
        }
    }
}
