//! `nbdkit-rustshim-plugin.so`: the nbdkit plugin `rustshim`.
//!
//! It registers with nbdkit like any C plugin, loads a separately compiled Rust plugin dylib
//! (`plugin=PATH`) through the stable ABI of `rustshim-plugin-api`, and forwards every nbdkit
//! callback to it. See ARCHITECTURE.md for the path of one request.
//!
//! * [`nbdkit_c`]: nbdkit's C ABI (the plugin struct, server functions looked up at run time).
//! * [`callbacks`]: what nbdkit calls ([`callbacks::PLUGIN`]), with nbdkit's defaults for
//!   callbacks the plugin omits.
//! * [`containment`]: what the shim checks, clips or refuses before nbdkit sees a plugin's answer.
//! * [`config`]: the shim's keys and the routing of the plugin's.
//! * [`serving`]: the generation new connections go to, and the recorded configuration.
//! * [`generation`]: loading one copy of a plugin file into an instance.
//! * [`image`]: a plugin file's bytes, read once into sealed memory; [`probe`]: their trial load
//!   in a throwaway process; [`elf`]: the version tables that trial cannot cover.
//! * [`locate`]: finding the plugin file by name, and its permission check.
//! * [`services`]: the server functions as the plugin sees them.
//! * [`reload`]: hot reload (`reload=watch`).
//! * [`fallback`]: server functions done by the shim on old nbdkit.
//! * [`failure`]: the one error type.

pub mod callbacks;
pub mod config;
pub mod containment;
pub mod elf;
pub mod failure;
pub mod fallback;
pub mod generation;
pub mod image;
pub mod locate;
pub mod nbdkit_c;
pub mod probe;
pub mod reload;
pub mod services;
pub mod serving;

/// nbdkit's entry point: returns the plugin struct, which nbdkit copies once.
#[no_mangle]
pub extern "C" fn plugin_init() -> *const nbdkit_c::NbdkitPlugin {
    &callbacks::PLUGIN.0
}
