//! `nbdkit-rustshim-plugin.so`: the nbdkit plugin `rustshim`.
//!
//! It registers with nbdkit like any C plugin, loads a separately compiled Rust plugin dylib
//! (`plugin=PATH`) through the stable ABI of `rustshim-plugin-api`, and forwards every nbdkit
//! callback to it. See ARCHITECTURE.md for the path of one request.
//!
//! * [`nbdkit_c`]: nbdkit's C ABI (the plugin struct, server functions looked up at run time).
//! * [`callbacks`]: what nbdkit calls, with nbdkit's defaults for callbacks the plugin omits.
//! * [`config`]: the shim's keys and the routing of the plugin's.
//! * [`generation`]: loading one copy of a plugin file into an instance.
//! * [`locate`]: finding the plugin file by name, and its permission check.
//! * [`services`]: the server functions as the plugin sees them.
//! * [`reload`]: hot reload (`reload=watch`).
//! * [`fallback`]: server functions done by the shim on old nbdkit.

pub mod callbacks;
pub mod config;
pub mod fallback;
pub mod generation;
pub mod locate;
pub mod nbdkit_c;
pub mod reload;
pub mod services;

use std::ptr;

use nbdkit_c::{NbdkitPlugin, Registration, API_VERSION, THREAD_MODEL_PARALLEL};

static PLUGIN: Registration = Registration(NbdkitPlugin {
    _struct_size: std::mem::size_of::<NbdkitPlugin>() as u64,
    _api_version: API_VERSION,
    // The loosest model; the plugin's own model is returned by `.thread_model`.
    _thread_model: THREAD_MODEL_PARALLEL,
    name: c"rustshim".as_ptr(),
    longname: c"nbdkit Rust plugin shim".as_ptr(),
    version: concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast(),
    description: c"Loads a Rust plugin built with rustshim-plugin-api (plugin=PATH) and forwards every nbdkit callback to it over a stable ABI.".as_ptr(),
    load: Some(callbacks::load),
    unload: Some(callbacks::unload),
    config: Some(callbacks::config),
    config_complete: Some(callbacks::config_complete),
    config_help: callbacks::CONFIG_HELP.as_ptr(),
    open: Some(callbacks::open),
    close: Some(callbacks::close),
    get_size: Some(callbacks::get_size),
    can_write: Some(callbacks::can_write),
    can_flush: Some(callbacks::can_flush),
    is_rotational: Some(callbacks::is_rotational),
    can_trim: Some(callbacks::can_trim),
    _pread_v1: ptr::null(),
    _pwrite_v1: ptr::null(),
    _flush_v1: ptr::null(),
    _trim_v1: ptr::null(),
    _zero_v1: ptr::null(),
    // Errors always go through nbdkit_set_error: Rust code may clobber errno before returning.
    errno_is_preserved: 0,
    dump_plugin: Some(callbacks::dump_plugin),
    can_zero: Some(callbacks::can_zero),
    can_fua: Some(callbacks::can_fua),
    pread: Some(callbacks::pread),
    pwrite: Some(callbacks::pwrite),
    flush: Some(callbacks::flush),
    trim: Some(callbacks::trim),
    zero: Some(callbacks::zero),
    magic_config_key: callbacks::MAGIC_CONFIG_KEY.as_ptr(),
    can_multi_conn: Some(callbacks::can_multi_conn),
    can_extents: Some(callbacks::can_extents),
    extents: Some(callbacks::extents),
    can_cache: Some(callbacks::can_cache),
    cache: Some(callbacks::cache),
    thread_model: Some(callbacks::thread_model),
    can_fast_zero: Some(callbacks::can_fast_zero),
    preconnect: Some(callbacks::preconnect),
    get_ready: Some(callbacks::get_ready),
    after_fork: Some(callbacks::after_fork),
    list_exports: Some(callbacks::list_exports),
    default_export: Some(callbacks::default_export),
    export_description: Some(callbacks::export_description),
    cleanup: Some(callbacks::cleanup),
    block_size: Some(callbacks::block_size),
});

/// nbdkit's entry point: returns the plugin struct, which nbdkit copies once.
#[no_mangle]
pub extern "C" fn plugin_init() -> *const NbdkitPlugin {
    &PLUGIN.0
}
