//! `nbdkit-rustshim-plugin.so`: the nbdkit plugin `rustshim`, and (installed again, as a copy,
//! as `nbdkit-rustshim-filter.so`) the nbdkit filter `rustshim`.
//!
//! It registers with nbdkit like any C plugin (`plugin_init`) or C filter (`filter_init`), loads
//! a separately compiled Rust plugin (`plugin=PATH`) or filter (`filter=PATH`) dylib through the
//! stable ABI of `rustshim-plugin-api`, and forwards every nbdkit callback to it. The two halves
//! share the loading, serving and reload code and keep their state apart, so one file can be
//! loaded as both. See ARCHITECTURE.md for the path of one request.
//!
//! * [`nbdkit_c`]: nbdkit's C ABI (the plugin struct, server functions looked up at run time).
//! * [`plugin`]: the plugin half: what nbdkit calls ([`plugin::callbacks::PLUGIN`]), with
//!   nbdkit's defaults for callbacks the plugin omits; the shim's keys and the routing of the
//!   plugin's.
//! * [`filter`]: the filter half.
//! * [`ffi`]: what both halves share at nbdkit's C ABI (guards, statuses, UTF-8, printing);
//!   [`options`]: the options both halves share.
//! * [`containment`]: what the shim checks, clips or refuses before nbdkit sees a plugin's answer.
//! * [`serving`]: the generation new connections go to, and the recorded configuration.
//! * [`generation`]: loading one copy of a plugin file into an instance.
//! * [`image`]: a plugin file's bytes, read once into sealed memory; [`probe`]: their trial load
//!   in a throwaway process; [`elf`]: the version tables that trial cannot cover.
//! * [`locate`]: finding the plugin file by name, and its permission check.
//! * [`services`]: the server functions as the plugin sees them.
//! * [`reload`]: hot reload (`reload=watch`).
//! * [`fallback`]: server functions done by the shim on old nbdkit.
//! * [`failure`]: the one error type.
//! * [`module`], [`connection`]: what plugins and filters share.

pub mod connection;
pub mod containment;
pub mod elf;
pub mod failure;
pub mod fallback;
pub mod ffi;
pub mod filter;
pub mod generation;
pub mod image;
pub mod locate;
pub mod module;
pub mod nbdkit_c;
pub mod options;
pub mod plugin;
pub mod probe;
pub mod reload;
pub mod services;
pub mod serving;

/// nbdkit's entry point: returns the plugin struct, which nbdkit copies once.
#[no_mangle]
pub extern "C" fn plugin_init() -> *const nbdkit_c::NbdkitPlugin {
    let registration = match locate::fronted_plugin() {
        None => &plugin::callbacks::PLUGIN,
        Some(name) => plugin::registration::registration_as(name),
    };
    // With `--help`, the plugin's own parameters are shown too.
    &plugin::registration::with_plugin_help(registration).0
}

/// nbdkit's entry point for filters: returns the filter struct of the next `--filter=rustshim`
/// layer, in the running nbdkit's layout, which nbdkit copies once (see [`filter`]).
#[no_mangle]
pub extern "C" fn filter_init() -> *const std::ffi::c_void {
    ffi::guarded("filter_init", std::ptr::null(), filter::init)
}
