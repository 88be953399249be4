//! Ctrl-C for the commands that run servers (demo, dev, bench): a stop signal sets a flag that
//! their loops poll, so they stop nbdkit and remove their directories instead of dying with
//! them left behind.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set by SIGINT, SIGTERM and SIGHUP.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: anything more is not async-signal-safe.
    STOP.store(true, Ordering::SeqCst);
}

/// Makes SIGINT, SIGTERM and SIGHUP set [`STOP`] instead of killing us, so that whatever runs
/// gets cleaned up.
pub fn install_stop_handlers() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic. A handler, unlike SIG_IGN, is reset
        // to the default in the children we exec, so nbdkit and the clients still get Ctrl-C.
        unsafe {
            libc::signal(
                signal,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
}

/// Whether a stop signal arrived.
pub fn stopped() -> bool {
    STOP.load(Ordering::SeqCst)
}
