//! What loading, serving and hot reload need to know about a root module, whether a plugin's
//! ([`PluginModuleRef`](rustshim_plugin_api::abi::PluginModuleRef)) or a filter's
//! ([`FilterModuleRef`](rustshim_plugin_api::abi::FilterModuleRef)): the one trait that lets
//! `generation`, `serving` and `reload` serve both without a second copy.

use std::ffi::c_void;

use rustshim_plugin_api::abi::load::Loadable;
use rustshim_plugin_api::abi::{DumpSink, Handover, InstancePtr, ROption, RSlice, RStr};

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
        fn name(&self) -> ::rustshim_plugin_api::abi::RStr<'static> {
            Self::name(self)
        }
        fn version(
            &self,
        ) -> ::rustshim_plugin_api::abi::ROption<::rustshim_plugin_api::abi::RStr<'static>> {
            Self::version(self)
        }
        fn longname(
            &self,
        ) -> ::rustshim_plugin_api::abi::ROption<::rustshim_plugin_api::abi::RStr<'static>> {
            Self::longname(self)
        }
        fn description(
            &self,
        ) -> ::rustshim_plugin_api::abi::ROption<::rustshim_plugin_api::abi::RStr<'static>> {
            Self::description(self)
        }
        fn config_help(
            &self,
        ) -> ::rustshim_plugin_api::abi::ROption<::rustshim_plugin_api::abi::RStr<'static>> {
            Self::config_help(self)
        }
        fn dump_plugin(
            &self,
        ) -> Option<
            unsafe extern "C" fn(
                ::rustshim_plugin_api::abi::InstancePtr,
                ::rustshim_plugin_api::abi::DumpSink,
            ),
        > {
            Self::dump_plugin(self)
        }
        fn implemented(&self) -> u64 {
            Self::implemented(self)
        }
        fn callback_names(
            &self,
        ) -> ::rustshim_plugin_api::abi::RSlice<'static, ::rustshim_plugin_api::abi::RStr<'static>>
        {
            Self::callback_names(self)
        }
        fn panic_unwinds(&self) -> bool {
            Self::panic_unwinds(self)
        }
        fn build_info(&self) -> ::rustshim_plugin_api::abi::RStr<'static> {
            Self::build_info(self)
        }
        unsafe fn destroy(&self, instance: ::rustshim_plugin_api::abi::InstancePtr) {
            // SAFETY: the caller's contract.
            unsafe { (Self::destroy(self))(instance) }
        }
        fn hand_over(
            &self,
        ) -> Option<
            unsafe extern "C" fn(
                ::rustshim_plugin_api::abi::InstancePtr,
                &mut ::rustshim_plugin_api::abi::ROption<::rustshim_plugin_api::abi::Handover>,
            ) -> i32,
        > {
            Self::hand_over(self)
        }
        fn take_over(
            &self,
        ) -> Option<
            unsafe extern "C" fn(
                ::rustshim_plugin_api::abi::InstancePtr,
                ::rustshim_plugin_api::abi::Handover,
            ) -> i32,
        > {
            Self::take_over(self)
        }
    };
}
pub(crate) use common_facts;
