//! `cargo xtask demo`: nbdkit serving a memory disk through the shim (by path, nothing
//! installed), real clients writing and reading it, then serving until Ctrl-C.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::build::build_artifacts;
use crate::deps;
use crate::signals::{install_stop_handlers, stopped};
use crate::workspace::{path_env, plugin_path, run, target_dir, SHIM};
use crate::Result;

/// How long nbdkit may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often we look at nbdkit, the clock and the signal flag.
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
    let server = Server::start(
        &shim,
        &[format!("plugin={}", plugin.display()), "size=1G".into()],
    )?;
    if stopped() {
        return Ok(());
    }
    let uri = format!("nbd+unix:///?socket={}", server.socket.display());

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
        let result = run(
            client,
            Command::new(client)
                .args(args)
                .env("PATH", path_env())
                .stdin(Stdio::null()),
        );
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
    server.serve(deadline)
}

/// nbdkit running in the background, and the directory holding its socket. Dropping it stops
/// nbdkit and removes the directory, on every way out of [`demo`].
pub struct Server {
    child: Child,
    dir: PathBuf,
    /// The Unix socket nbdkit listens on.
    pub socket: PathBuf,
    stderr: StderrLog,
}

impl Server {
    /// Starts `nbdkit -f -U SOCKET SHIM args...` in a private directory and waits until it
    /// listens.
    pub fn start(shim: &Path, args: &[String]) -> Result<Server> {
        let dir = temp_dir()?;
        let socket = dir.join("nbd.sock");
        let pidfile = dir.join("nbdkit.pid");
        let mut nbdkit = Command::new("nbdkit");
        // -f: stay our child. --exit-with-parent: die with us even if we are SIGKILLed.
        nbdkit
            .args(["-f", "--exit-with-parent", "-U"])
            .arg(&socket)
            .arg("-P")
            .arg(&pidfile)
            .arg(shim)
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::piped());
        let args: Vec<_> = nbdkit.get_args().map(|a| a.to_string_lossy()).collect();
        println!(
            "$ nbdkit {}",
            shell_quote(&args.iter().map(|a| &**a).collect::<Vec<_>>())
        );
        let mut child = match nbdkit.spawn() {
            Ok(child) => child,
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(format!("cannot start nbdkit: {e}"));
            }
        };
        let stderr = StderrLog::new(child.stderr.take().expect("stderr is piped"));
        let mut server = Server {
            child,
            dir,
            socket,
            stderr,
        };

        // nbdkit writes the pidfile once it is listening; the socket file alone appears at
        // bind(), a moment before a client could connect.
        let ready = format!("{}\n", server.child.id());
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if stopped() {
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!(
                    "nbdkit exited ({status}) before it was ready; its stderr:\n{}",
                    shown(&server.stderr.finish())
                ));
            }
            if server.socket.exists() && fs::read_to_string(&pidfile).is_ok_and(|s| s == ready) {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "nbdkit was not listening on {} after {START_TIMEOUT:?}; its stderr so far:\n{}",
                    server.socket.display(),
                    shown(&server.stderr.take())
                ));
            }
            thread::sleep(POLL);
        }
        // From now on nbdkit's messages go straight to our stderr.
        eprint!("{}", server.stderr.take());
        Ok(server)
    }

    /// Waits for Ctrl-C (or a signal) or the deadline; nbdkit exiting by itself is an error.
    fn serve(self, deadline: Option<Instant>) -> Result {
        self.serve_with(deadline, || Ok(()))
    }

    /// Like `serve`, calling `tick` every poll interval.
    pub fn serve_with(
        mut self,
        deadline: Option<Instant>,
        mut tick: impl FnMut() -> Result,
    ) -> Result {
        loop {
            tick()?;
            if stopped() {
                println!("\nStopping.");
                return Ok(());
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                println!("Stopping nbdkit.");
                return Ok(());
            }
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("nbdkit exited unexpectedly ({status})"));
            }
            thread::sleep(POLL);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A terminal's Ctrl-C has already reached nbdkit; anything else we pass on as SIGTERM,
        // which nbdkit handles by shutting down cleanly. Signalling only a child that has not
        // been reaped (try_wait is None) means its pid cannot have been reused.
        if let Ok(None) = self.child.try_wait() {
            let pid = self.child.id() as libc::pid_t;
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while let Ok(None) = self.child.try_wait() {
                if Instant::now() > deadline {
                    let _ = self.child.kill();
                    break;
                }
                thread::sleep(POLL);
            }
            let _ = self.child.wait();
        }
        eprint!("{}", self.stderr.finish());
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// nbdkit's stderr: kept while it starts, so a failure to start can show it, and copied to
/// our stderr after that (and nothing is lost if we stop reading: a full pipe would block
/// nbdkit).
struct StderrLog {
    kept: Arc<Mutex<Option<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl StderrLog {
    fn new(stderr: ChildStderr) -> StderrLog {
        let kept = Arc::new(Mutex::new(Some(String::new())));
        let shared = Arc::clone(&kept);
        let thread = thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                match shared.lock().unwrap().as_mut() {
                    Some(kept) => {
                        kept.push_str(&line);
                        kept.push('\n');
                    }
                    None => eprintln!("{line}"),
                }
            }
        });
        StderrLog {
            kept,
            thread: Some(thread),
        }
    }

    /// What was kept; later lines are copied to our stderr as they come.
    fn take(&self) -> String {
        self.kept.lock().unwrap().take().unwrap_or_default()
    }

    /// Waits for the last of it (nbdkit has exited, so the pipe is closed) and returns what
    /// was kept.
    fn finish(&mut self) -> String {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.take()
    }
}

/// Captured output for an error message.
fn shown(output: &str) -> &str {
    match output.trim_end() {
        "" => "(nothing)",
        text => text,
    }
}

/// A new private directory for the socket.
fn temp_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("rustshim-demo-{}", std::process::id()));
    // One left by an earlier demo with our pid that was killed outright is stale.
    let _ = fs::remove_dir_all(&dir);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
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
