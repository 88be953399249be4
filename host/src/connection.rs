//! [`Connection`]: what nbdkit holds as the handle of one open connection, for the plugin and
//! for each Rust filter layer alike.

use std::sync::atomic::AtomicI32;
use std::sync::Arc;

use rustshim_plugin_api::abi::{HandlePtr, InstancePtr, PluginModuleRef};

use crate::generation::Generation;
use crate::module::Module;
use crate::nbdkit_c::Handle;

/// The author's handle of one connection and the generation whose instance opened it, kept
/// alive until the connection closes.
pub struct Connection<M: Module = PluginModuleRef> {
    /// The generation that opened it.
    pub generation: Arc<Generation<M>>,
    /// The author's own handle.
    pub handle: HandlePtr,
    /// A plugin's `can_zero` answer ([`UNKNOWN`] until asked), which `can_fast_zero` needs.
    pub can_zero: AtomicI32,
    /// A filter layer's data callbacks that go straight to the layer below, one bit each
    /// (the filter leaves them out and reshapes nothing: `filter::requests::passes`); 0 for
    /// the plugin.
    pub pass: u32,
}

/// [`Connection::can_zero`] before it is asked.
pub const UNKNOWN: i32 = i32::MIN;

impl<M: Module> Connection<M> {
    /// A connection of `generation` with the author's `handle`.
    pub fn new(generation: Arc<Generation<M>>, handle: HandlePtr) -> Self {
        Connection {
            generation,
            handle,
            can_zero: AtomicI32::new(UNKNOWN),
            pass: 0,
        }
    }

    /// The handle nbdkit keeps: this connection, leaked until [`Connection::from_close`].
    pub fn into_handle(self) -> Handle {
        Box::into_raw(Box::new(self)).cast()
    }

    /// The connection behind nbdkit's handle: how every callback that takes a handle starts.
    ///
    /// # Safety
    /// nbdkit's contract with those callbacks: `h` is what `open` returned (from
    /// [`Connection::into_handle`] of the same `M`), and nbdkit uses it in no callback after
    /// `close`.
    #[inline(always)]
    pub unsafe fn from_handle<'a>(h: Handle) -> &'a Connection<M> {
        // SAFETY: the caller's contract.
        unsafe { &*(h as *const Connection<M>) }
    }

    /// The connection back from nbdkit's handle, in `close`.
    ///
    /// # Safety
    /// As [`Connection::from_handle`], and this is the handle's last use (`close`).
    pub unsafe fn from_close(h: Handle) -> Box<Connection<M>> {
        // SAFETY: the caller's contract: the box leaked by `into_handle`, used no more.
        unsafe { Box::from_raw(h as *mut Connection<M>) }
    }

    /// The root module of the generation that opened it.
    #[inline(always)]
    pub fn module(&self) -> &M {
        &self.generation.module
    }

    /// The instance that opened [`Connection::handle`].
    #[inline(always)]
    pub fn instance(&self) -> InstancePtr {
        self.generation.instance
    }
}
