//! What loading, serving and hot reload need to know about a root module, whether a plugin's
//! ([`PluginModuleRef`]) or a filter's ([`FilterModuleRef`]): the one trait that lets
//! `generation`, `serving` and `reload` serve both without a second copy.

use std::ffi::c_void;

use rustshim_plugin_api::abi::load::Loadable;
use rustshim_plugin_api::abi::{
    BackendPtr, DumpSink, FilterModuleRef, Handover, InstancePtr, PluginModuleRef, ROption, RSlice,
    RStr, CALLBACK_NAMES, FILTER_CALLBACK_NAMES,
};

use crate::services::host_services;

/// A root module the shim loads: its static facts and the callbacks every kind has.
pub trait Module: Loadable + Copy + Send + Sync + 'static {
    /// `plugin` or `filter`, for messages (`plugin file '…' does not exist`).
    const WHAT: &'static str;
    /// The callback names of this kind's table, by bit.
    const CALLBACK_NAMES: &'static [&'static str];

    /// The author's name for it.
    fn name(&self) -> RStr<'static>;
    /// The author's version, if given.
    fn version(&self) -> ROption<RStr<'static>>;
    /// The author's long name, if given.
    fn longname(&self) -> ROption<RStr<'static>>;
    /// The author's description, if given.
    fn description(&self) -> ROption<RStr<'static>>;
    /// Help for its keys, if given.
    fn config_help(&self) -> ROption<RStr<'static>>;
    /// Its `dump_plugin`, if it has one.
    fn dump_plugin(&self) -> Option<unsafe extern "C" fn(InstancePtr, DumpSink)>;
    /// Which callbacks the author wrote, by bit.
    fn implemented(&self) -> u64;
    /// The callback names of the table it was built with.
    fn callback_names(&self) -> RSlice<'static, RStr<'static>>;
    /// Whether it was built with `panic = "unwind"`.
    fn panic_unwinds(&self) -> bool;
    /// How it was built.
    fn build_info(&self) -> RStr<'static>;
    /// Makes an instance (its `load`), handing it the shim's services. 0 or -1.
    fn create(&self, out: &mut InstancePtr) -> i32;
    /// Its `unload`, then frees the instance.
    ///
    /// # Safety
    /// `instance` was made by this module's `create` and is used no more.
    unsafe fn destroy(&self, instance: InstancePtr);
    /// Its `cleanup`, if it has one (a filter's gets the layer below, `backend`).
    ///
    /// # Safety
    /// `instance` belongs to this module; no request of it runs any more.
    unsafe fn cleanup(&self, instance: InstancePtr, backend: *mut c_void);
    /// Its `hand_over`, if it has one.
    fn hand_over(&self)
        -> Option<unsafe extern "C" fn(InstancePtr, &mut ROption<Handover>) -> i32>;
    /// Its `take_over`, if it has one.
    fn take_over(&self) -> Option<unsafe extern "C" fn(InstancePtr, Handover) -> i32>;
}

/// The facts both module types have under the same names.
macro_rules! common_facts {
    () => {
        fn name(&self) -> RStr<'static> {
            Self::name(self)
        }
        fn version(&self) -> ROption<RStr<'static>> {
            Self::version(self)
        }
        fn longname(&self) -> ROption<RStr<'static>> {
            Self::longname(self)
        }
        fn description(&self) -> ROption<RStr<'static>> {
            Self::description(self)
        }
        fn config_help(&self) -> ROption<RStr<'static>> {
            Self::config_help(self)
        }
        fn dump_plugin(&self) -> Option<unsafe extern "C" fn(InstancePtr, DumpSink)> {
            Self::dump_plugin(self)
        }
        fn implemented(&self) -> u64 {
            Self::implemented(self)
        }
        fn callback_names(&self) -> RSlice<'static, RStr<'static>> {
            Self::callback_names(self)
        }
        fn panic_unwinds(&self) -> bool {
            Self::panic_unwinds(self)
        }
        fn build_info(&self) -> RStr<'static> {
            Self::build_info(self)
        }
        unsafe fn destroy(&self, instance: InstancePtr) {
            // SAFETY: the caller's contract.
            unsafe { (Self::destroy(self))(instance) }
        }
        fn hand_over(
            &self,
        ) -> Option<unsafe extern "C" fn(InstancePtr, &mut ROption<Handover>) -> i32> {
            Self::hand_over(self)
        }
        fn take_over(&self) -> Option<unsafe extern "C" fn(InstancePtr, Handover) -> i32> {
            Self::take_over(self)
        }
    };
}

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

impl Module for FilterModuleRef {
    const WHAT: &'static str = "filter";
    const CALLBACK_NAMES: &'static [&'static str] = &FILTER_CALLBACK_NAMES;
    common_facts!();

    fn create(&self, out: &mut InstancePtr) -> i32 {
        (Self::create(self))(host_services(), crate::filter::services::table(), out)
    }

    unsafe fn cleanup(&self, instance: InstancePtr, backend: *mut c_void) {
        if let Some(f) = Self::cleanup(self) {
            // SAFETY: the caller's contract; `backend` is the layer below of this filter's
            // layer, which nbdkit keeps valid until its `cleanup`.
            unsafe { f(instance, BackendPtr(backend)) }
        }
    }
}
