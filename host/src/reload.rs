//! Hot reload (`reload=watch`, and `filter-reload=watch` for a filter): when the plugin (or
//! filter) file changes, load it as a new generation and, only if every step succeeds, let it
//! serve new connections. Open connections stay on the generation that opened them; a replaced
//! generation gets `cleanup` and `unload` when its last connection closes (see `Generation`'s
//! `Drop`). The same code reloads the plugin and each filter layer: what differs (how a new
//! generation is configured and readied) is the [`Served`] trait.
//!
//! The watcher is an inotify watch on the plugin file's directory, not on the file: cargo
//! replaces its output by unlinking and hard-linking, `mv` renames over it, editors and `install`
//! delete and recreate it, `cp` rewrites it in place. When `plugin=` (or `filter=`) names a
//! symlink, the directory of every link on the way and of the file it leads to are watched, and
//! the chain is followed again after each change (a re-pointed link). A watched directory that
//! is deleted or moved (`cargo clean`) is said on stderr and looked for every [`LOOK_AGAIN`]
//! until it exists again, then watched again (said too). Events come in bursts, so a reload
//! starts only after the directory has been quiet for [`QUIET`]. A half-written file cannot be
//! loaded anyway: the load reads it once and checks those bytes, and a later event (the end of
//! the write) tries again.

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use rustshim_plugin_api::abi::{PluginModuleRef, ROption, HANDOVER_AT_RETIRE};
use rustshim_plugin_api::ThreadModel;

use crate::config;
use crate::failure::Failure;
use crate::generation::{Generation, Lifecycle};
use crate::locate::Trust;
use crate::module::Module;
use crate::nbdkit_c;
use crate::services;
use crate::serving::{self, Slot};

/// How long the watched directory must be quiet before a reload starts.
pub const QUIET: Duration = Duration::from_millis(150);

/// One slot that hot reload renews (the plugin, or a filter layer): how a new generation is
/// brought to where the current one is.
pub trait Served: Sync + 'static {
    /// The root module type it serves.
    type Module: Module;
    /// Its slot.
    fn slot(&self) -> &Slot<Self::Module>;
    /// Whether its files must pass the permission check.
    fn trust(&self) -> Trust;
    /// Gives a new generation one recorded parameter.
    fn configure(
        &self,
        g: &Generation<Self::Module>,
        key: &str,
        value: &str,
    ) -> Result<(), Failure>;
    /// Runs one of a new generation's lifecycle callbacks, with what nbdkit gave the first.
    fn step(&self, g: &Generation<Self::Module>, step: Lifecycle) -> Result<(), Failure>;
    /// A new generation's thread model.
    fn thread_model(&self, g: &Generation<Self::Module>) -> Result<ThreadModel, Failure>;
}

/// The plugin, as hot reload serves it.
pub struct Plugin;

impl Served for Plugin {
    type Module = PluginModuleRef;
    fn slot(&self) -> &Slot<PluginModuleRef> {
        &serving::PLUGIN
    }
    fn trust(&self) -> Trust {
        config::state().trust()
    }
    fn configure(&self, g: &Generation, key: &str, value: &str) -> Result<(), Failure> {
        config::configure(g, key, value)
    }
    fn step(&self, g: &Generation, step: Lifecycle) -> Result<(), Failure> {
        g.lifecycle(step)
    }
    fn thread_model(&self, g: &Generation) -> Result<ThreadModel, Failure> {
        g.thread_model()
    }
}

/// A line on nbdkit's stderr, shown without `-v` (nbdkit has no info level for plugins, and
/// `nbdkit_error` would label a success as an error).
fn say(msg: &str) {
    eprintln!("nbdkit: rustshim: {msg}");
    nbdkit_c::debug(&format!("rustshim: {msg}"));
}

/// Starts watching the file of what `served` serves (from `.after_fork`: threads do not survive
/// nbdkit's fork).
pub fn start_watcher<S: Served>(served: &'static S) -> Result<(), Failure> {
    let source = served
        .slot()
        .current()
        .map(|g| g.source.clone())
        .ok_or_else(|| Failure::invalid("reload=watch needs something loaded to watch"))?;
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
        .map_err(|e| format!("reload=watch: inotify: {e}"))?;
    let mut watched = Watched {
        inotify,
        source,
        watches: Vec::new(),
    };
    watched.follow()?;
    let dirs: Vec<String> = watched
        .watches
        .iter()
        .map(|w| w.dir.display().to_string())
        .collect();
    std::thread::Builder::new()
        .name("rustshim-reload".into())
        .spawn(move || watch(served, watched))
        .map_err(|e| format!("reload=watch: cannot start the watcher thread: {e}"))?;
    nbdkit_c::debug(&format!(
        "rustshim: watching {} for new builds",
        dirs.join(", ")
    ));
    Ok(())
}

/// What a directory is watched for.
const MASK: AddWatchFlags = AddWatchFlags::IN_CLOSE_WRITE
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_CREATE)
    .union(AddWatchFlags::IN_MODIFY)
    .union(AddWatchFlags::IN_ATTRIB)
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_MOVE_SELF);

/// One name in one directory: the plugin (or filter) file, or a symlink on the way to it.
struct Watch {
    dir: PathBuf,
    name: OsString,
    /// `None` while the directory is gone (deleted, or moved away).
    wd: Option<WatchDescriptor>,
}

/// The watches of the file as `plugin=` (or `filter=`) named it: its directory, and when it is a
/// symlink, the directory of each link on the way and of the file it leads to.
struct Watched {
    inotify: Inotify,
    source: PathBuf,
    watches: Vec<Watch>,
}

/// The (directory, name) pairs on the way from `source` to the file it leads to.
fn link_chain(source: &Path) -> Vec<(PathBuf, OsString)> {
    let mut chain = Vec::new();
    let mut path = source.to_path_buf();
    for _ in 0..40 {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            break;
        };
        let (dir, name) = (dir.to_path_buf(), name.to_os_string());
        chain.push((dir.clone(), name));
        match std::fs::read_link(&path) {
            Ok(target) => path = dir.join(target),
            Err(_) => break,
        }
    }
    chain
}

impl Watched {
    /// Watches the directories of the current link chain (again, if it changed).
    fn follow(&mut self) -> Result<(), String> {
        let chain = link_chain(&self.source);
        let current: Vec<(PathBuf, OsString)> = self
            .watches
            .iter()
            .map(|w| (w.dir.clone(), w.name.clone()))
            .collect();
        if chain == current {
            return Ok(());
        }
        for w in self.watches.drain(..) {
            if let Some(wd) = w.wd {
                let _ = self.inotify.rm_watch(wd);
            }
        }
        for (dir, name) in chain {
            let wd = self.inotify.add_watch(&dir, MASK).map_err(|e| {
                format!(
                    "reload=watch: cannot watch directory '{}': {e}",
                    dir.display()
                )
            });
            // At start-up every directory exists; later a missing one is waited for.
            let wd = match (wd, self.watches.is_empty() && current.is_empty()) {
                (Ok(wd), _) => Some(wd),
                (Err(e), true) => return Err(e),
                (Err(_), false) => None,
            };
            self.watches.push(Watch { dir, name, wd });
        }
        Ok(())
    }

    /// Handles the events that are ready; returns whether one concerns the watched file.
    fn take_events(&mut self) -> bool {
        let Ok(events) = self.inotify.read_events() else {
            return false;
        };
        let mut changed = false;
        for event in events {
            if event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                changed = true;
                continue;
            }
            let gone = event.mask.intersects(
                AddWatchFlags::IN_IGNORED
                    | AddWatchFlags::IN_DELETE_SELF
                    | AddWatchFlags::IN_MOVE_SELF
                    | AddWatchFlags::IN_UNMOUNT,
            );
            let mut lost = Vec::new();
            for w in self.watches.iter_mut().filter(|w| w.wd == Some(event.wd)) {
                if gone {
                    w.wd = None;
                    lost.push(w.dir.clone());
                } else if event.name.as_deref() == Some(w.name.as_os_str()) {
                    changed = true;
                }
            }
            if gone && !lost.is_empty() {
                // A moved directory is still watched where it went: stop that.
                let _ = self.inotify.rm_watch(event.wd);
                lost.dedup();
                for dir in lost {
                    say(&format!(
                        "reload: lost the watch on '{}' (the directory was deleted or moved): new builds of {} are not seen until it exists again",
                        dir.display(),
                        self.source.display()
                    ));
                }
            }
        }
        changed
    }

    /// Watches the directories that came back; returns whether one did.
    fn rearm(&mut self) -> bool {
        let mut rearmed = false;
        for i in 0..self.watches.len() {
            if self.watches[i].wd.is_some() {
                continue;
            }
            let dir = self.watches[i].dir.clone();
            if let Ok(wd) = self.inotify.add_watch(&dir, MASK) {
                for w in self.watches.iter_mut().filter(|w| w.dir == dir) {
                    w.wd = Some(wd);
                }
                say(&format!(
                    "reload: watching '{}' again for new builds of {}",
                    dir.display(),
                    self.source.display()
                ));
                rearmed = true;
            }
        }
        rearmed
    }
}

/// How often a lost directory is looked for.
const LOOK_AGAIN: Duration = Duration::from_millis(250);

fn watch<S: Served>(served: &'static S, mut watched: Watched) {
    let mut changed_at: Option<Instant> = None;
    loop {
        let lost = watched.watches.iter().any(|w| w.wd.is_none());
        let timeout = match changed_at {
            Some(at) => QUIET.saturating_sub(at.elapsed()),
            None if lost => LOOK_AGAIN,
            None => Duration::from_secs(3600),
        };
        let mut fds = [PollFd::new(watched.inotify.as_fd(), PollFlags::POLLIN)];
        let _ = poll(
            &mut fds,
            PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX),
        );
        if watched.take_events() {
            changed_at = Some(Instant::now());
        }
        // A directory that came back may already hold a new build.
        if lost && watched.rearm() {
            changed_at = Some(Instant::now());
        }
        if changed_at.is_some_and(|at| at.elapsed() >= QUIET) {
            changed_at = None;
            // A re-pointed link leads elsewhere now.
            let _ = watched.follow();
            if watched.source.exists() {
                reload(served, &watched.source);
            }
        }
    }
}

/// Loads `source` as a new generation of `served` and makes it current if every step succeeds;
/// otherwise the current generation keeps serving and one line says why. Returns whether it
/// swapped.
pub fn reload<S: Served>(served: &S, source: &Path) -> bool {
    let slot = served.slot();
    let _one_at_a_time = slot.reloading.lock().unwrap_or_else(|p| p.into_inner());
    let Some(old) = slot.current() else {
        return false;
    };
    let number = slot.next_number();
    let started = Instant::now();
    let refused = |why: &str| {
        nbdkit_c::error(&format!(
            "rustshim: reload of '{}' refused, generation {} keeps serving: {why}",
            source.display(),
            old.number
        ))
    };
    let (new, state) = match prepare(served, number, source, &old) {
        Ok(Some(prepared)) => prepared,
        Ok(None) => return false,
        Err(why) => {
            refused(&why);
            return false;
        }
    };
    // A hand-over at retirement: wait for it, with new connections held at the end; they go
    // on (to the new generation) once it has been swapped in below.
    let state = match state {
        Some(state) => state,
        None => match hand_over_at_retirement(slot, &old, &new) {
            Ok(state) => state,
            Err(why) => {
                new.destroy();
                refused(&why);
                return false;
            }
        },
    };
    slot.take_number();
    let what_changed = describe_change(&old, &new);
    drop(old);
    let new = Arc::new(new);
    let replaced = slot.replace(new).expect("a current generation");
    slot.release();
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
/// one's state (`None`: it is handed over when the old one retires). `Ok(None)`: the file did
/// not change. On error the new generation is unloaded
/// again, and the error is the reason for the one line that says the reload was refused.
#[allow(clippy::type_complexity)]
fn prepare<S: Served>(
    served: &S,
    number: u32,
    source: &Path,
    old: &Generation<S::Module>,
) -> Result<Option<(Generation<S::Module>, Option<String>)>, String> {
    let build = Generation::<S::Module>::read(number, source, served.trust()).map_err(|f| f.msg)?;
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
        for (key, value) in &served.slot().recorded() {
            served
                .configure(&new, key, value)
                .map_err(|e| format!("config {key}={value}: {e}"))?;
        }
        step(served, &new, Lifecycle::ConfigComplete)?;
        let state = hand_over(old, &new)?;
        let announced = served.slot().announced_thread_model();
        let model = served
            .thread_model(&new)
            .map_err(|f| format!("thread_model failed: {f}"))?;
        if announced >= 0 && (model as i32) < announced {
            return Err(format!(
                "it asks for thread model {}, stricter than the {} nbdkit already runs with",
                model.name(),
                ThreadModel::from_raw(announced).map_or("?", ThreadModel::name)
            ));
        }
        step(served, &new, Lifecycle::GetReady)?;
        step(served, &new, Lifecycle::AfterFork)?;
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

/// Passes the old generation's state to the new one, if both opt in. Says what happened;
/// `None` if the old one hands over only when it retires.
fn hand_over<M: Module>(
    old: &Generation<M>,
    new: &Generation<M>,
) -> Result<Option<String>, String> {
    let Some(give) = old.module.hand_over() else {
        return Ok(Some("starts with fresh state".into()));
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
        return Ok(Some("starts with fresh state".into()));
    };
    if state.format == HANDOVER_AT_RETIRE {
        (state.release)(state.state);
        return Ok(None);
    }
    let kind = state.kind.to_string();
    let Some(take) = new.module.take_over() else {
        (state.release)(state.state);
        return Ok(Some(format!(
            "starts with fresh state: it does not take over state '{kind}'"
        )));
    };
    // SAFETY: the new generation's instance is not serving yet: nothing else uses it.
    match unsafe { take(new.instance, state) } {
        1 => Ok(Some(format!("took over state '{kind}'"))),
        0 => Ok(Some(format!(
            "starts with fresh state: it did not take state '{kind}'"
        ))),
        _ => Err(format!("take_over failed: {}", services::take_error())),
    }
}

/// How long new connections still go to a generation that hands over at retirement, before
/// they are held until it has retired.
const LET_THROUGH: Duration = Duration::from_secs(1);
/// How long the old generation's connections may stay open before the reload is given up.
const RETIRE_LIMIT: Duration = Duration::from_secs(30);

/// Waits until nothing but `slot` and `old` itself refer to the old generation (its
/// last connection has closed), holding new connections after [`LET_THROUGH`], and hands its
/// state over then. On success new connections are still held: the caller swaps generations
/// and releases them. On failure they are released.
fn hand_over_at_retirement<M: Module>(
    slot: &Slot<M>,
    old: &Arc<Generation<M>>,
    new: &Generation<M>,
) -> Result<String, String> {
    let started = Instant::now();
    let mut holding = false;
    loop {
        if !holding && started.elapsed() >= LET_THROUGH {
            slot.hold();
            holding = true;
        }
        if Arc::strong_count(old) <= 2 {
            if !holding {
                slot.hold();
                holding = true;
                if Arc::strong_count(old) > 2 {
                    continue; // a connection opened meanwhile
                }
            }
            let result = hand_over(old, new).and_then(|state| {
                state.ok_or_else(|| "the old generation asked to hand over later again".into())
            });
            if result.is_err() {
                slot.release();
            }
            return result.map(|state| {
                format!(
                    "{state} when generation {} retired, {} ms after it was ready",
                    old.number,
                    started.elapsed().as_millis()
                )
            });
        }
        if started.elapsed() >= RETIRE_LIMIT {
            slot.release();
            return Err(format!(
                "it hands over when generation {} retires, but that still has {} open connection(s) after {} s: close them and rebuild again",
                old.number,
                Arc::strong_count(old) - 2,
                RETIRE_LIMIT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs one lifecycle callback, with the author's own message on failure.
fn step<S: Served>(
    served: &S,
    generation: &Generation<S::Module>,
    callback: Lifecycle,
) -> Result<(), String> {
    served.step(generation, callback).map_err(|f| {
        format!(
            "{callback} failed{}",
            if f.msg.is_empty() {
                String::new()
            } else {
                format!(": {}", f.msg)
            }
        )
    })
}

fn describe_change<M: Module>(old: &Generation<M>, new: &Generation<M>) -> String {
    let version = |g: &Generation<M>| {
        g.module
            .version()
            .map(|v| v.to_string())
            .unwrap_or_else(|| "(none)".into())
    };
    let mut parts = vec![format!(
        "{} '{}' version {} -> {}",
        M::WHAT,
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
