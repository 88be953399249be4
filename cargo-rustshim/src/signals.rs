//! Ctrl-C for the commands that run servers (demo, dev, bench): a stop signal sets a flag that
//! their loops poll, so they stop nbdkit and remove their directories instead of dying with
//! them left behind.
//!
//! `signal-hook` installs the handlers (an atomic store, async-signal-safe). A handler, unlike
//! `SIG_IGN`, is reset to the default in the children we exec, so nbdkit and the clients still
//! get Ctrl-C.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// Set by SIGINT, SIGTERM and SIGHUP once [`install_stop_handlers`] ran.
fn flag() -> &'static Arc<AtomicBool> {
    static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    STOP.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Makes SIGINT, SIGTERM and SIGHUP set the stop flag instead of killing us, so that whatever
/// runs gets cleaned up.
pub fn install_stop_handlers() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    for signal in [SIGINT, SIGTERM, SIGHUP] {
        signal_hook::flag::register(signal, Arc::clone(flag()))
            .expect("installing a signal handler");
    }
}

/// Whether a stop signal arrived.
pub fn stopped() -> bool {
    flag().load(Ordering::SeqCst)
}
