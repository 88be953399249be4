//! Hot reload (`reload=watch`): when the plugin file changes, load it as a new generation and,
//! only if every step succeeds, let it serve new connections. Open connections stay on the
//! generation that opened them; a replaced generation gets `cleanup` and `unload` when its last
//! connection closes (see `Generation`'s `Drop`).
//!
//! The watcher is an inotify watch on the plugin file's directory, not on the file: cargo
//! replaces its output by unlinking and hard-linking, `mv` renames over it, editors and `install`
//! delete and recreate it, `cp` rewrites it in place. Events come in bursts, so a reload starts
//! only after the directory has been quiet for [`QUIET`]. A half-written file cannot be loaded
//! anyway: the load works on a private copy whose ELF segments are checked first, and a later
//! event (the end of the write) tries again.

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use rustshim_plugin_api::abi::ROption;
use rustshim_plugin_api::ThreadModel;

use crate::config;
use crate::failure::Failure;
use crate::generation::{Generation, Lifecycle};
use crate::nbdkit_c;
use crate::services;
use crate::serving;

/// How long the plugin's directory must be quiet before a reload starts.
pub const QUIET: Duration = Duration::from_millis(150);

/// The thread model nbdkit was told at start-up (`.thread_model`); a new generation may not be
/// stricter, since nbdkit's locking is fixed by then. -1 until nbdkit asked.
static ANNOUNCED_MODEL: AtomicI32 = AtomicI32::new(-1);

/// The number the next generation gets.
static NEXT_GENERATION: AtomicU32 = AtomicU32::new(2);

/// Reloads never overlap.
static RELOADING: Mutex<()> = Mutex::new(());

/// Records the thread model nbdkit runs with.
pub fn announce_thread_model(model: ThreadModel) {
    ANNOUNCED_MODEL.store(model as i32, Ordering::Release);
}

/// A line on nbdkit's stderr, shown without `-v` (nbdkit has no info level for plugins, and
/// `nbdkit_error` would label a success as an error).
fn say(msg: &str) {
    eprintln!("nbdkit: rustshim: {msg}");
    nbdkit_c::debug(&format!("rustshim: {msg}"));
}

/// Starts watching the current plugin's file (from `.after_fork`: threads do not survive
/// nbdkit's fork).
pub fn start_watcher() -> Result<(), Failure> {
    let source = serving::current()
        .map(|g| g.source.clone())
        .ok_or_else(|| Failure::invalid("reload=watch needs a plugin"))?;
    let (dir, name) = match (source.parent(), source.file_name()) {
        (Some(dir), Some(name)) => (dir.to_path_buf(), name.to_os_string()),
        _ => {
            return Err(Failure::invalid(format!(
                "reload=watch: cannot watch '{}'",
                source.display()
            )))
        }
    };
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
        .map_err(|e| format!("reload=watch: inotify: {e}"))?;
    let mask = AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_ATTRIB;
    inotify.add_watch(&dir, mask).map_err(|e| {
        format!(
            "reload=watch: cannot watch directory '{}': {e}",
            dir.display()
        )
    })?;
    std::thread::Builder::new()
        .name("rustshim-reload".into())
        .spawn(move || watch(inotify, source, name))
        .map_err(|e| format!("reload=watch: cannot start the watcher thread: {e}"))?;
    nbdkit_c::debug(&format!(
        "rustshim: watching {} for new builds",
        dir.display()
    ));
    Ok(())
}

fn watch(inotify: Inotify, source: PathBuf, name: OsString) {
    let mut changed_at: Option<Instant> = None;
    loop {
        let timeout = match changed_at {
            Some(at) => QUIET.saturating_sub(at.elapsed()),
            None => Duration::from_secs(3600),
        };
        let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
        let _ = poll(
            &mut fds,
            PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX),
        );
        if let Ok(events) = inotify.read_events() {
            if events
                .iter()
                .any(|e| e.name.as_deref() == Some(name.as_os_str()))
            {
                changed_at = Some(Instant::now());
            }
        }
        if changed_at.is_some_and(|at| at.elapsed() >= QUIET) {
            changed_at = None;
            if source.exists() {
                reload(&source);
            }
        }
    }
}

/// Loads `source` as a new generation and makes it current if every step succeeds; otherwise
/// the current generation keeps serving and one line says why. Returns whether it swapped.
pub fn reload(source: &Path) -> bool {
    let _one_at_a_time = RELOADING.lock().unwrap_or_else(|p| p.into_inner());
    let Some(old) = serving::current() else {
        return false;
    };
    // Reloads are serialised, so the number is only taken when the swap happens.
    let number = NEXT_GENERATION.load(Ordering::Relaxed);
    let started = Instant::now();
    let (new, state) = match prepare(number, source, &old) {
        Ok(Some(prepared)) => prepared,
        Ok(None) => return false,
        Err(why) => {
            nbdkit_c::error(&format!(
                "rustshim: reload of '{}' refused, generation {} keeps serving: {why}",
                source.display(),
                old.number
            ));
            return false;
        }
    };
    NEXT_GENERATION.store(number + 1, Ordering::Relaxed);
    let what_changed = describe_change(&old, &new);
    drop(old);
    let new = Arc::new(new);
    let replaced = serving::replace(new).expect("a current generation");
    // Connections of the old generation still hold it (the state's reference is `replaced`).
    let still_open = Arc::strong_count(&replaced) - 1;
    say(&format!(
        "reload: generation {number} from {} serves new connections ({what_changed}; {state}; ready in {} ms); generation {} retires {}",
        source.display(),
        started.elapsed().as_millis(),
        replaced.number,
        if still_open == 0 { "now".to_string() } else { format!("when its {still_open} open connection(s) close") }
    ));
    drop(replaced);
    true
}

/// Loads and configures a new generation like the current one, with what became of the old
/// one's state. `Ok(None)`: the file did not change. On error the new generation is unloaded
/// again, and the error is the reason for the one line that says the reload was refused.
fn prepare(
    number: u32,
    source: &Path,
    old: &Generation,
) -> Result<Option<(Generation, String)>, String> {
    let trust = config::state().trust();
    let build = Generation::read(number, source, trust).map_err(|f| f.msg)?;
    // Compared before loading: a touched file costs one read, no copy is mapped.
    if old.same_build_as(&build) {
        nbdkit_c::debug(&format!(
            "rustshim: {} changed on disk but not in content: no reload",
            source.display()
        ));
        return Ok(None);
    }
    let new = build.load().map_err(|f| f.msg)?;
    // From here on a failure must unload the instance we made.
    let configured = (|| {
        for (key, value) in &serving::recorded() {
            config::configure(&new, key, value)
                .map_err(|e| format!("config {key}={value}: {e}"))?;
        }
        step(&new, Lifecycle::ConfigComplete)?;
        let state = hand_over(old, &new)?;
        let announced = ANNOUNCED_MODEL.load(Ordering::Acquire);
        let model = new
            .thread_model()
            .map_err(|f| format!("thread_model failed: {f}"))?;
        if announced >= 0 && (model as i32) < announced {
            return Err(format!(
                "it asks for thread model {}, stricter than the {} nbdkit already runs with",
                model.name(),
                ThreadModel::from_raw(announced).map_or("?", ThreadModel::name)
            ));
        }
        step(&new, Lifecycle::GetReady)?;
        step(&new, Lifecycle::AfterFork)?;
        Ok(state)
    })();
    match configured {
        Ok(state) => Ok(Some((new, state))),
        Err(why) => {
            new.destroy();
            Err(why)
        }
    }
}

/// Passes the old generation's state to the new one, if both opt in. Says what happened.
fn hand_over(old: &Generation, new: &Generation) -> Result<String, String> {
    let Some(give) = old.module.hand_over() else {
        return Ok("starts with fresh state".into());
    };
    let mut out = ROption::RNone;
    // SAFETY: a `&self` callback of the serving generation's instance.
    if unsafe { give(old.instance, &mut out) } < 0 {
        return Err(format!(
            "hand_over of generation {} failed: {}",
            old.number,
            services::take_error()
        ));
    }
    let ROption::RSome(state) = out else {
        return Ok("starts with fresh state".into());
    };
    let kind = state.kind.to_string();
    let Some(take) = new.module.take_over() else {
        (state.release)(state.state);
        return Ok(format!(
            "starts with fresh state: it does not take over state '{kind}'"
        ));
    };
    // SAFETY: the new generation's instance is not serving yet: nothing else uses it.
    match unsafe { take(new.instance, state) } {
        1 => Ok(format!("took over state '{kind}'")),
        0 => Ok(format!(
            "starts with fresh state: it did not take state '{kind}'"
        )),
        _ => Err(format!("take_over failed: {}", services::take_error())),
    }
}

/// Runs one lifecycle callback, with the plugin's own message on failure.
fn step(generation: &Generation, callback: Lifecycle) -> Result<(), String> {
    generation.lifecycle(callback).map_err(|f| {
        format!(
            "{callback:?} failed{}",
            if f.msg.is_empty() {
                String::new()
            } else {
                format!(": {}", f.msg)
            }
        )
    })
}

fn describe_change(old: &Generation, new: &Generation) -> String {
    let version = |g: &Generation| {
        g.module
            .version()
            .map(|v| v.to_string())
            .unwrap_or_else(|| "(none)".into())
    };
    let mut parts = vec![format!(
        "plugin '{}' version {} -> {}",
        new.name(),
        version(old),
        version(new)
    )];
    if old.name() != new.name() {
        parts.push(format!("name was '{}'", old.name()));
    }
    if old.abi_version != new.abi_version {
        parts.push(format!(
            "plugin-api {} -> {}",
            old.abi_version, new.abi_version
        ));
    }
    parts.join(", ")
}
