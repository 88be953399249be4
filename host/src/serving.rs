//! What serves: for the plugin, and for each Rust filter layer, a [`Slot`]: the generation new
//! connections go to, the parameters every generation is configured with, and what hot reload
//! needs to keep (the thread model nbdkit was told, the next generation's number).
//!
//! Only `open` (and `preconnect`, `list_exports`, `default_export`) ask for the current
//! generation; a connection keeps the one that opened it, so requests never take this lock or
//! see a reload swap generations.

use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use rustshim_plugin_api::abi::PluginModuleRef;

use crate::generation::Generation;
use crate::module::Module;

struct Serving<M: Module> {
    /// The generation new connections go to.
    current: Option<Arc<Generation<M>>>,
    /// Set while a reload holds new connections (a hand-over at retirement).
    held: bool,
    /// Every pair given to it, in order, for configuring a later generation alike.
    recorded: Vec<(String, String)>,
}

/// One thing that serves: the plugin, or one filter layer.
pub struct Slot<M: Module> {
    serving: Mutex<Serving<M>>,
    /// Signalled when new connections are no longer held.
    released: Condvar,
    /// The thread model nbdkit was told (`.thread_model`); a new generation may not be
    /// stricter, since nbdkit's locking is fixed by then. -1 until nbdkit asked.
    announced_model: AtomicI32,
    /// The number the next generation gets.
    next_number: AtomicU32,
    /// Reloads of this slot never overlap.
    pub(crate) reloading: Mutex<()>,
}

impl<M: Module> Slot<M> {
    /// An empty slot.
    pub const fn new() -> Self {
        Slot {
            serving: Mutex::new(Serving {
                current: None,
                held: false,
                recorded: Vec::new(),
            }),
            released: Condvar::new(),
            announced_model: AtomicI32::new(-1),
            next_number: AtomicU32::new(2),
            reloading: Mutex::new(()),
        }
    }

    /// Never held across a callback, which could come back here.
    fn lock(&self) -> MutexGuard<'_, Serving<M>> {
        self.serving
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The generation new connections go to, if one is loaded (waiting while a reload holds
    /// new connections).
    pub fn current(&self) -> Option<Arc<Generation<M>>> {
        let mut s = self.lock();
        while s.held {
            s = self.released.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        s.current.clone()
    }

    /// Holds new connections ([`Slot::current`] waits) until [`Slot::release`].
    pub fn hold(&self) {
        self.lock().held = true;
    }

    /// Lets new connections go on.
    pub fn release(&self) {
        self.lock().held = false;
        self.released.notify_all();
    }

    /// Makes `generation` the current one; returns the one it replaces.
    pub fn replace(&self, generation: Arc<Generation<M>>) -> Option<Arc<Generation<M>>> {
        self.lock().current.replace(generation)
    }

    /// Stops serving (nbdkit's `unload`): returns the current generation.
    pub fn retire(&self) -> Option<Arc<Generation<M>>> {
        self.lock().current.take()
    }

    /// Records a pair given to it.
    pub fn record(&self, key: &str, value: &str) {
        self.lock()
            .recorded
            .push((key.to_owned(), value.to_owned()));
    }

    /// Every pair given to it so far, in order.
    pub fn recorded(&self) -> Vec<(String, String)> {
        self.lock().recorded.clone()
    }

    /// Records the thread model nbdkit runs this slot with.
    pub fn announce_thread_model(&self, model: i32) {
        self.announced_model.store(model, Ordering::Release);
    }

    /// The thread model nbdkit was told, or -1.
    pub fn announced_thread_model(&self) -> i32 {
        self.announced_model.load(Ordering::Acquire)
    }

    /// The number the next generation will get (reloads are serialised, so it is only taken
    /// with [`Slot::take_number`] when the swap happens).
    pub fn next_number(&self) -> u32 {
        self.next_number.load(Ordering::Relaxed)
    }

    /// Takes the number [`Slot::next_number`] said.
    pub fn take_number(&self) {
        self.next_number.fetch_add(1, Ordering::Relaxed);
    }
}

impl<M: Module> Default for Slot<M> {
    fn default() -> Self {
        Slot::new()
    }
}

/// The plugin's slot.
pub static PLUGIN: Slot<PluginModuleRef> = Slot::new();

/// The plugin generation new connections go to, if a plugin is loaded.
pub fn current() -> Option<Arc<Generation>> {
    PLUGIN.current()
}
