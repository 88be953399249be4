//! `cargo xtask demo`: nbdkit serving a memory disk through the shim (by path, nothing
//! installed), real clients writing and reading it, then serving until Ctrl-C, as `cargo
//! rustshim run` serves (`cargo_rustshim::serve`).

use std::io::Write;
use std::time::{Duration, Instant};

use cargo_rustshim::deps;
use cargo_rustshim::serve::{serve_with, start};
use cargo_rustshim::signals::{install_stop_handlers, stopped};
use rustshim_harness::Server;

use crate::build::build_artifacts;
use crate::workspace::{plugin_path, run, target_dir, SHIM};
use crate::Result;

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
