//! What serves: the generation new connections go to, and the parameters every generation is
//! configured with.
//!
//! Only `open` (and `preconnect`, `list_exports`, `default_export`) ask for the current
//! generation; a connection keeps the one that opened it, so requests never take this lock or
//! see a reload swap generations.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::generation::Generation;

struct Serving {
    /// The generation new connections go to.
    current: Option<Arc<Generation>>,
    /// Set while a reload holds new connections (a hand-over at retirement).
    held: bool,
    /// Every pair given to the plugin, in order, for configuring a later generation alike.
    recorded: Vec<(String, String)>,
}

static SERVING: Mutex<Serving> = Mutex::new(Serving {
    current: None,
    held: false,
    recorded: Vec::new(),
});

/// Never held across a plugin callback, which could come back here.
fn serving() -> MutexGuard<'static, Serving> {
    SERVING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Signalled when new connections are no longer held.
static RELEASED: Condvar = Condvar::new();

/// The generation new connections go to, if a plugin is loaded (waiting while a reload holds
/// new connections).
pub fn current() -> Option<Arc<Generation>> {
    let mut s = serving();
    while s.held {
        s = RELEASED.wait(s).unwrap_or_else(|p| p.into_inner());
    }
    s.current.clone()
}

/// Holds new connections ([`current`] waits) until [`release`].
pub fn hold() {
    serving().held = true;
}

/// Lets new connections go on.
pub fn release() {
    serving().held = false;
    RELEASED.notify_all();
}

/// Makes `generation` the current one; returns the one it replaces.
pub fn replace(generation: Arc<Generation>) -> Option<Arc<Generation>> {
    serving().current.replace(generation)
}

/// Stops serving (nbdkit's `unload`): returns the current generation.
pub fn retire() -> Option<Arc<Generation>> {
    serving().current.take()
}

/// Records a pair given to the plugin.
pub fn record(key: &str, value: &str) {
    serving().recorded.push((key.to_owned(), value.to_owned()));
}

/// Every pair given to the plugin so far, in order.
pub fn recorded() -> Vec<(String, String)> {
    serving().recorded.clone()
}
