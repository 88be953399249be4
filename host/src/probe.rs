//! A trial load of a plugin (or filter) image in a throwaway process, before nbdkit's own process loads it,
//! and the checked open ([`open_checked`]) that both processes run.
//!
//! The dynamic linker trusts the file it loads: a damaged `.so` (one wrong byte in a hash,
//! version or relocation table) makes it crash or abort inside `dlopen`, which in nbdkit's
//! process would take the server down. So the same bytes are loaded first in a separate
//! process, which does exactly what nbdkit's process is about to do
//! ([`open_checked`]: the `dlopen`, the root module, the ABI checks; none of
//! the plugin's callbacks), then exits through the dynamic linker's finaliser (the plugin's
//! destructors run, as at nbdkit's exit), and reports back. If it dies, the file is refused with
//! one line; if it refuses the file, its line is the refusal. Either way nbdkit's process never
//! maps the file.
//!
//! The trial process is the shim itself, run as a program: `build.rs` gives the shim's `.so` an
//! entry point (`rustshim_probe_entry`, below), and the dynamic linker runs a shared object
//! given to it on its command line (`ld.so SHIM`). So no second file has to be installed, and
//! the trial runs the loader code of the running shim: the shim's file is opened once, at the
//! first trial, and that descriptor is what later trials run, whatever happens to the path. The
//! plugin image is inherited as file descriptor [`IMAGE_FD`], the shim as [`SHIM_FD`].

use std::cell::Cell;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rustshim_plugin_api::abi::load::{load_checked, CheckedModule, LoadError};
use rustshim_plugin_api::abi::{FilterModuleRef, PluginModuleRef};

use crate::module::Module;

/// The plugin image's descriptor in the trial process.
const IMAGE_FD: i32 = 3;
/// The shim's own file in the trial process.
const SHIM_FD: i32 = 4;
/// How long a trial load may take.
const TRIAL_LIMIT: Duration = Duration::from_secs(20);

const STARTED: &str = "rustshim-probe: loading";
const REFUSED: &str = "rustshim-probe: refused: ";
/// The plugin file's name, for the trial's messages.
const SOURCE_ENV: &str = "RUSTSHIM_PROBE_SOURCE";
/// What the file is loaded as: `plugin` or `filter` (`Module::WHAT`).
const KIND_ENV: &str = "RUSTSHIM_PROBE_KIND";

/// Set in the trial process.
static IN_TRIAL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A long report (abi_stable's) that goes with a refusal: nbdkit's debug log, or in the trial
/// process its output, which nbdkit's debug log then shows.
pub fn detail(text: &str) {
    if IN_TRIAL.load(std::sync::atomic::Ordering::Relaxed) {
        say(text);
    } else {
        crate::nbdkit_c::debug(text);
    }
}
const FINISHED: &str = "rustshim-probe: finished";

/// The dynamic linker and the shim's own file, found once.
struct Runner {
    linker: PathBuf,
    shim: File,
}

fn runner() -> Option<&'static Runner> {
    static RUNNER: OnceLock<Option<Runner>> = OnceLock::new();
    RUNNER
        .get_or_init(|| {
            let linker = dynamic_linker()?;
            let shim = File::open(crate::locate::shim_file()?).ok()?;
            Some(Runner { linker, shim })
        })
        .as_ref()
}

/// The dynamic linker this process runs under: the object at `AT_BASE`.
fn dynamic_linker() -> Option<PathBuf> {
    // SAFETY: getauxval reads the auxiliary vector; any key is fine.
    let base = unsafe { libc::getauxval(libc::AT_BASE) };
    if base == 0 {
        return None;
    }
    crate::locate::object_file_of(base as usize)
}

/// Loads the image of `source` as a `kind` (`plugin` or `filter`) in a trial process. `Err` is the one line that refuses the file:
/// the trial died, or it refused the file (then nbdkit's process never maps it). A trial that
/// cannot run at all is skipped, with a debug message.
pub fn trial_load(
    image: BorrowedFd<'_>,
    source: &std::path::Path,
    kind: &str,
) -> Result<(), String> {
    let shown = source.display();
    let Some(runner) = runner() else {
        crate::nbdkit_c::debug(
            "rustshim: no trial load: the dynamic linker or the shim's file was not found",
        );
        return Ok(());
    };
    let output = match run(runner, image, source, kind) {
        Ok(output) => output,
        Err(why) => {
            crate::nbdkit_c::debug(&format!("rustshim: no trial load: {why}"));
            return Ok(());
        }
    };
    let Trial { status, text } = output;
    if !text.contains(STARTED) {
        crate::nbdkit_c::debug(&format!(
            "rustshim: no trial load: the trial process did not start ({})",
            readable(&text, "")
        ));
        return Ok(());
    }
    crate::nbdkit_c::debug(&format!(
        "rustshim: trial load of '{shown}':\n{}",
        text.trim_end()
    ));
    if text.contains(FINISHED) && status.is_some_and(|s| s.success()) {
        return match text.lines().find_map(|l| l.strip_prefix(REFUSED)) {
            Some(why) => Err(why.to_string()),
            None => Ok(()),
        };
    }
    let said = text
        .lines()
        .find(|l| !l.starts_with("rustshim-probe:") && !l.trim().is_empty())
        .map(|l| format!(": {}", readable(l, &format!("/proc/self/fd/{IMAGE_FD}"))))
        .unwrap_or_default();
    Err(match status {
        None => format!(
            "{kind} file '{shown}' is damaged or hangs: loading it in a trial process did not finish within {} s",
            TRIAL_LIMIT.as_secs()
        ),
        Some(s) if s.signal().is_some() => format!(
            "{kind} file '{shown}' is damaged: loading it killed a trial process with {}{said} (nbdkit did not load it)",
            signal_name(s.signal().unwrap_or(0))
        ),
        Some(s) => format!(
            "{kind} file '{shown}' is damaged: the dynamic linker gave up on it in a trial process (exit status {}){said}",
            s.code().unwrap_or(-1)
        ),
    })
}

struct Trial {
    /// `None` if it was killed at the time limit.
    status: Option<std::process::ExitStatus>,
    /// Its stdout and stderr.
    text: String,
}

fn run(
    runner: &Runner,
    image: BorrowedFd<'_>,
    source: &std::path::Path,
    kind: &str,
) -> Result<Trial, String> {
    // Both outputs go to one pipe, read until it closes: the moment the trial process ends.
    let (reader, writer) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let (image_fd, shim_fd) = (image.as_raw_fd(), runner.shim.as_raw_fd());
    let mut cmd = Command::new(&runner.linker);
    cmd.arg(format!("/proc/self/fd/{SHIM_FD}"))
        .env(SOURCE_ENV, source)
        .env(KIND_ENV, kind)
        .stdin(Stdio::null())
        .stdout(writer.try_clone().map_err(|e| e.to_string())?)
        .stderr(writer);
    // SAFETY: runs in the forked child before exec, and only calls async-signal-safe `fcntl` and
    // `dup2` on descriptors the parent keeps open until the child has been waited for.
    unsafe {
        cmd.pre_exec(move || {
            // Move both out of the way first: either may already be 3 or 4.
            let high_image = libc::fcntl(image_fd, libc::F_DUPFD, 10);
            let high_shim = libc::fcntl(shim_fd, libc::F_DUPFD, 10);
            if high_image < 0
                || high_shim < 0
                || libc::dup2(high_image, IMAGE_FD) < 0
                || libc::dup2(high_shim, SHIM_FD) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", runner.linker.display()))?;
    // The command held the only write ends; they are closed now, so EOF means the child is gone.
    drop(cmd);
    let mut reader = File::from(reader);
    let deadline = Instant::now() + TRIAL_LIMIT;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    let finished = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut fds = [nix::poll::PollFd::new(
            reader.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let timeout = nix::poll::PollTimeout::try_from(left).unwrap_or(nix::poll::PollTimeout::MAX);
        match nix::poll::poll(&mut fds, timeout) {
            Ok(0) => break false,
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("waiting for the trial process: {e}")),
        }
        match reader.read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) if bytes.len() < 64 << 10 => bytes.extend_from_slice(&chunk[..n]),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading from the trial process: {e}")),
        }
    };
    if !finished {
        let _ = child.kill();
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for the trial process: {e}"))?;
    Ok(Trial {
        status: finished.then_some(status),
        text: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// A line fit for nbdkit's log: one line of printable characters, at most 1000 of them, without
/// `own_name` (the name the plugin's copy was loaded under, which means nothing to the user).
pub fn readable(line: &str, own_name: &str) -> String {
    let line = if own_name.is_empty() {
        line.to_string()
    } else {
        line.replace(&format!("{own_name}: "), "")
            .replace(own_name, "the plugin")
    };
    let mut out: String = line
        .trim()
        .chars()
        .map(|c| {
            if c.is_control() || c == '\u{fffd}' {
                '?'
            } else {
                c
            }
        })
        .take(1000)
        .collect();
    if line.trim().chars().count() > 1000 {
        out.push('…');
    }
    out
}

fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {signal}"))
}

fn say(line: &str) {
    let line = format!("{line}\n");
    // SAFETY: writes a buffer that lives for the call to the inherited stdout.
    unsafe { libc::write(1, line.as_ptr().cast(), line.len()) };
}

extern "C" fn say_finished() {
    say(FINISHED);
}

/// The trial process: what runs when the dynamic linker runs the shim as a program. It opens
/// the inherited image as nbdkit's process would ([`open_checked`]), then
/// exits through the dynamic linker's finaliser, which runs the plugin's destructors as
/// nbdkit's exit will; it says how far it got, and a crash on the way is the answer.
/// `linker_fini` is the finaliser the dynamic linker hands a program's entry point.
extern "C" fn probe_main(linker_fini: Option<extern "C" fn()>) -> ! {
    say(STARTED);
    std::panic::set_hook(Box::new(|_| {}));
    // SAFETY: registers plain functions without arguments; they run at `exit`, in reverse order.
    unsafe {
        libc::atexit(say_finished);
        if let Some(fini) = linker_fini {
            libc::atexit(fini);
        }
    }
    IN_TRIAL.store(true, std::sync::atomic::Ordering::Relaxed);
    let path = PathBuf::from(format!("/proc/self/fd/{IMAGE_FD}"));
    let source = std::env::var_os(SOURCE_ENV).map_or_else(|| path.clone(), PathBuf::from);
    let filter = std::env::var_os(KIND_ENV).is_some_and(|k| k == "filter");
    let result = std::panic::catch_unwind(|| {
        if filter {
            open_checked::<FilterModuleRef>(&path, &source).map(|_| ())
        } else {
            open_checked::<PluginModuleRef>(&path, &source).map(|_| ())
        }
    });
    match result {
        Ok(Ok(())) => say("rustshim-probe: loaded"),
        Ok(Err(why)) => say(&format!("{REFUSED}{}", readable(&why, ""))),
        Err(_) => say("rustshim-probe: panicked"),
    }
    // SAFETY: a normal exit: atexit handlers, then the process ends.
    unsafe { libc::exit(0) }
}

// The entry point the dynamic linker jumps to, with the stack as the kernel left it and its
// finaliser in rdx (x0 on aarch64): align the stack as a call expects and call `probe_main` with
// the finaliser; it never returns.
#[cfg(target_arch = "x86_64")]
std::arch::global_asm!(
    ".globl rustshim_probe_entry",
    ".type rustshim_probe_entry,@function",
    "rustshim_probe_entry:",
    "xor ebp, ebp",
    "and rsp, -16",
    "mov rdi, rdx",
    "call {main}",
    "ud2",
    main = sym probe_main,
);

#[cfg(target_arch = "aarch64")]
std::arch::global_asm!(
    ".globl rustshim_probe_entry",
    ".type rustshim_probe_entry,%function",
    "rustshim_probe_entry:",
    "mov x29, #0",
    "mov x30, #0",
    "bl {main}",
    "brk #1",
    main = sym probe_main,
);

/// Runs `f` with the shim's panic messages off, and turns a panic into its text: abi_stable's
/// layout check panics on some inconsistent layout data instead of returning an error.
fn without_panic_output<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    thread_local!(static QUIET: Cell<bool> = const { Cell::new(false) });
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.get() {
                previous(info)
            }
        }));
    });
    QUIET.set(true);
    let result = catch_unwind(AssertUnwindSafe(f));
    QUIET.set(false);
    result.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into())
    })
}

/// Opens the private copy as nbdkit's process does, and checks it: every symbol bound at once
/// (a symbol that cannot be bound would otherwise end the process at its first call), then
/// abi_stable's checks, then, for an object without our root module, a look at what it is.
/// The trial process runs exactly this too (see `probe`), so whatever of it could crash has
/// been tried. Errors are one line naming `source`.
pub fn open_checked<M: Module>(copy: &Path, source: &Path) -> Result<CheckedModule<M>, String> {
    let kind = M::WHAT;
    let shown = source.display();
    let own_name = copy.display().to_string();
    // SAFETY: opening runs the object's initialisers, which the trial process has run without
    // dying. The handle is never closed: the shim never unloads a plugin.
    let bound = unsafe {
        libloading::os::unix::Library::open(Some(copy), libc::RTLD_NOW | libc::RTLD_LOCAL)
    }
    .map(std::mem::forget)
    .map_err(|e| readable(&e.to_string(), &own_name));
    match without_panic_output(|| load_checked::<M>(copy)) {
        Ok(Ok(checked)) => match bound {
            Ok(()) => Ok(checked),
            Err(why) => Err(format!(
                "{kind} file '{shown}' cannot be loaded by the dynamic linker: {why}"
            )),
        },
        Ok(Err(LoadError::NoRootModule)) => Err(explain_foreign_object(kind, source, copy)),
        Ok(Err(e)) => {
            if let Some(report) = e.detail() {
                detail(&format!(
                    "rustshim: full ABI report for '{shown}':\n{report}"
                ));
            }
            let why = readable(&e.to_string(), &own_name);
            Err(format!("{kind} file '{shown}' {why}"))
        }
        Err(panic) => Err(format!(
            "{kind} file '{shown}' is damaged: its ABI layout data is inconsistent (the layout check failed: {})",
            readable(&panic, &own_name)
        )),
    }
}

/// Says what a shared object without our root module is, when it can tell.
fn explain_foreign_object(kind: &str, source: &Path, copy: &Path) -> String {
    let shown = source.display();
    // abi_stable closed the copy again when our symbol was missing: open it once more to look
    // (it is still open, so its name still leads to it).
    // SAFETY: opening runs the object's initialisers, as nbdkit itself would for a C plugin;
    // only symbol addresses are taken below, nothing is called.
    let lib = unsafe {
        libloading::os::unix::Library::open(Some(copy), libc::RTLD_LAZY | libc::RTLD_LOCAL)
    };
    let has = |symbol: &[u8]| {
        lib.as_ref()
            // SAFETY: only the symbol's address is taken; it is never called.
            .map(|l| unsafe { l.get::<*const ()>(symbol) }.is_ok())
            .unwrap_or(false)
    };
    let (plugin_init, filter_init) = (has(b"plugin_init\0"), has(b"filter_init\0"));
    if plugin_init && filter_init {
        format!("{kind} file '{shown}' is the rustshim shim itself, not a Rust {kind}: give the {kind} the shim should load")
    } else if plugin_init {
        format!(
            "{kind} file '{shown}' is a C nbdkit plugin, not a Rust rustshim {kind}: run it directly with: nbdkit {shown}"
        )
    } else if filter_init {
        format!("{kind} file '{shown}' is a C nbdkit filter, not a Rust rustshim {kind}: use it directly with: nbdkit --filter={shown}")
    } else {
        format!(
            "{kind} file '{shown}' is a shared object but not a rustshim {kind} (no rustshim root module: build it with rustshim_plugin_api::export_{kind}!)"
        )
    }
}
