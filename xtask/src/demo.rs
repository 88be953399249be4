//! `cargo xtask demo`: nbdkit serving a memory disk through the shim (by path, nothing
//! installed), real clients writing and reading it, then serving until Ctrl-C. Also what
//! `cargo xtask dev` serves with: [`start`] and [`serve_with`], over `rustshim-harness`.

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use rustshim_harness::{Server, ServerBuilder};

use crate::build::build_artifacts;
use crate::deps;
use crate::signals::{install_stop_handlers, stopped};
use crate::workspace::{plugin_path, run, target_dir, SHIM};
use crate::Result;

/// How long nbdkit may take to start listening, and to stop.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often we look at nbdkit, its log, the clock and the signal flag.
const POLL: Duration = Duration::from_millis(50);
/// What the demo writes, then reads back.
const MESSAGE: &str = "hello from rustshim";

pub fn demo(seconds: Option<u64>) -> Result {
    deps::ensure()?;
    build_artifacts(true)?;
    let release = target_dir(true);
    let shim = release.join(SHIM);
    let plugin = plugin_path(&release, "memory");

    install_stop_handlers();
    let Some(server) = start(Server::builder(&plugin).shim(&shim).arg("size=1G"))? else {
        return Ok(());
    };
    let uri = server.uri();

    let script = format!(
        "h.pwrite(b{MESSAGE:?}, 0); print(\"read back:\", h.pread({len}, 0).decode())",
        len = MESSAGE.len()
    );
    let clients: [(&str, Vec<&str>); 2] = [
        ("nbdsh", vec!["-u", &uri, "-c", &script]),
        ("nbdinfo", vec![&uri]),
    ];
    for (client, args) in &clients {
        println!("\n$ {client} {}", shell_quote(args));
        let result = run(client, rustshim_harness::command(client).args(args));
        if stopped() {
            return Ok(());
        }
        result?;
    }

    println!("\nServing a 1 GiB memory disk through the rustshim plugin at\n\n    {uri}\n");
    println!("Connect with, for example:");
    let uri = shell_quote(&[&uri]);
    println!("    nbdinfo {uri}");
    println!(
        "    nbdsh -u {uri} -c 'print(h.pread({}, 0))'",
        MESSAGE.len()
    );
    println!("    qemu-img info {uri}");
    println!("    nbdcopy {uri} - | hexdump -C | head");
    let deadline = seconds.map(|s| {
        println!("\nStopping in {s}s (--for {s}).");
        Instant::now() + Duration::from_secs(s)
    });
    if deadline.is_none() {
        println!("\nPress Ctrl-C to stop.");
    }
    let _ = std::io::stdout().flush();
    serve_with(server, deadline, || Ok(()))
}

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
    let mut shown = 0;
    let served = loop {
        show_log(&server, &mut shown);
        if let Err(e) = tick() {
            break Err(e);
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

/// The words as one would type them into a shell, for showing commands.
fn shell_quote(words: &[&str]) -> String {
    let quote = |word: &&str| {
        if !word.is_empty()
            && word
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:+,".contains(c))
        {
            word.to_string()
        } else {
            format!("'{}'", word.replace('\'', r"'\''"))
        }
    };
    words.iter().map(quote).collect::<Vec<_>>().join(" ")
}
