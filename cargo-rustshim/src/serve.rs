//! Serving in the foreground for a person at a terminal (`cargo rustshim run`, `cargo xtask
//! demo` and `dev`): start nbdkit through `rustshim-harness`, show its messages as they come,
//! and stop it cleanly on Ctrl-C.

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use rustshim_harness::{Server, ServerBuilder};

use crate::signals::stopped;
use crate::Result;

/// How long nbdkit may take to start listening, and to stop.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often we look at nbdkit, its log, the clock and the signal flag.
const POLL: Duration = Duration::from_millis(50);

/// Starts nbdkit in the background as `builder` says (on a Unix socket in a private directory,
/// `TMPDIR` there too, inside `RUSTSHIM_ROOT` if set) and shows its command line; `None` if a
/// stop signal came first. A failure to start says why, with nbdkit's messages.
pub fn start(builder: ServerBuilder) -> Result<Option<Server>> {
    match builder.timeout(START_TIMEOUT).start() {
        Ok(server) => {
            println!("$ {}", server.command());
            Ok(Some(server))
        }
        Err(_) if stopped() => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Serves until Ctrl-C (or another stop signal) or the deadline, calling `tick` every poll
/// interval and copying nbdkit's messages to our stderr as they come; nbdkit exiting by itself
/// is an error. Then stops nbdkit with SIGTERM, as an admin would.
pub fn serve_with(
    server: Server,
    deadline: Option<Instant>,
    mut tick: impl FnMut() -> Result,
) -> Result {
    serve_until(server, deadline, || tick().map(|()| false))
}

/// Like [`serve_with`] with no deadline, but `tick` may also end the serving (`Ok(true)`), and
/// that is no stop signal: nbdkit is stopped all the same, quietly (`cargo rustshim run
/// --restart` starts it again).
pub fn serve_with_end(server: Server, tick: impl FnMut() -> Result<bool>) -> Result {
    serve_until(server, None, tick)
}

fn serve_until(
    server: Server,
    deadline: Option<Instant>,
    mut tick: impl FnMut() -> Result<bool>,
) -> Result {
    let mut shown = 0;
    let served = loop {
        show_log(&server, &mut shown);
        match tick() {
            Err(e) => break Err(e),
            Ok(true) if !stopped() => break Ok(()),
            Ok(_) => {}
        }
        if stopped() {
            println!("\nStopping.");
            break Ok(());
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            println!("Stopping nbdkit.");
            break Ok(());
        }
        match server.try_wait() {
            Ok(Some(status)) => break Err(format!("nbdkit exited unexpectedly ({status})")),
            Ok(None) => {}
            Err(e) => break Err(e.to_string()),
        }
        thread::sleep(POLL);
    };
    // A terminal's Ctrl-C has already reached nbdkit; anything else we pass on as SIGTERM, which
    // nbdkit handles by shutting down cleanly (it is killed if it does not).
    let _ = server.terminate();
    show_log(&server, &mut shown);
    served
}

/// Copies what nbdkit has logged since `shown` bytes to our stderr.
fn show_log(server: &Server, shown: &mut usize) {
    let log = std::fs::read(server.log_path()).unwrap_or_default();
    if let Some(new) = log.get(*shown..) {
        let _ = std::io::stderr().write_all(new);
        *shown = log.len();
    }
}
