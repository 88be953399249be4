//! The shim as an nbdkit **plugin** (`plugin_init`): it registers as the plugin `rustshim`
//! ([`callbacks::PLUGIN`]), loads a Rust plugin dylib (`plugin=PATH|NAME`) through the stable
//! ABI of `rustshim-plugin-api`, and forwards every nbdkit callback to it.
//!
//! * [`callbacks`]: what nbdkit calls, with nbdkit's defaults for callbacks the plugin omits.
//! * [`config`]: the shim's keys and the routing of the plugin's.
//! * [`registration`]: the shim installed as `nbdkit-NAME-plugin.so`, and `--help`.
//!
//! Loading, serving and hot reload are shared with the filter half (`generation`, `serving`,
//! `reload`); what is the plugin's is here: its [`Module`] face and its [`Served`] face.

pub mod callbacks;
pub mod config;
pub mod registration;

use std::ffi::c_void;

use rustshim_plugin_api::abi::{InstancePtr, PluginModuleRef, CALLBACK_NAMES};
use rustshim_plugin_api::ThreadModel;

use crate::failure::Failure;
use crate::generation::{Generation, Lifecycle};
use crate::locate::Trust;
use crate::module::{common_facts, Module};
use crate::reload::Served;
use crate::services::host_services;
use crate::serving::{self, Slot};

impl Module for PluginModuleRef {
    const WHAT: &'static str = "plugin";
    const CALLBACK_NAMES: &'static [&'static str] = &CALLBACK_NAMES;
    common_facts!();

    fn create(&self, out: &mut InstancePtr) -> i32 {
        (Self::create(self))(host_services(), out)
    }

    unsafe fn cleanup(&self, instance: InstancePtr, _backend: *mut c_void) {
        if let Some(f) = Self::cleanup(self) {
            // SAFETY: the caller's contract.
            unsafe { f(instance) }
        }
    }
}

/// The plugin, as hot reload serves it.
pub struct Plugin;

impl Served for Plugin {
    type Module = PluginModuleRef;
    fn slot(&self) -> &Slot<PluginModuleRef> {
        &serving::PLUGIN
    }
    fn trust(&self) -> Trust {
        config::state().trust()
    }
    fn configure(&self, g: &Generation, key: &str, value: &str) -> Result<(), Failure> {
        config::configure(g, key, value)
    }
    fn step(&self, g: &Generation, step: Lifecycle) -> Result<(), Failure> {
        g.lifecycle(step)
    }
    fn thread_model(&self, g: &Generation) -> Result<ThreadModel, Failure> {
        g.thread_model()
    }
}
