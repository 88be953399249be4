//! Hot reload (`reload=watch`, and `filter-reload=watch` for a filter): when the plugin (or
//! filter) file changes, load it as a new generation and, only if every step succeeds, let it
//! serve new connections. Open connections stay on the generation that opened them; a replaced
//! generation gets `cleanup` and `unload` when its last connection closes (see `Generation`'s
//! `Drop`). The same code reloads the plugin and each filter layer: what differs (how a new
//! generation is configured and readied) is the [`Served`] trait.
//!
//! * [`watch`]: when to reload: the watch on the file, and which events finish a build.

pub mod watch;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustshim_plugin_api::abi::{ROption, HANDOVER_AT_RETIRE};
use rustshim_plugin_api::ThreadModel;

use crate::failure::Failure;
use crate::generation::{Build, Generation, Lifecycle};
use crate::image::Digest;
use crate::locate::Trust;
use crate::module::Module;
use crate::nbdkit_c;
use crate::services;
use crate::serving::Slot;

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

/// A line on nbdkit's stderr, shown without `-v` (nbdkit has no info level for plugins, and
/// `nbdkit_error` would label a success as an error).
pub(crate) fn say(msg: &str) {
    eprintln!("nbdkit: rustshim: {msg}");
    nbdkit_c::debug(&format!("rustshim: {msg}"));
}

/// Loads `source` as a new generation of `served` and makes it current if every step succeeds;
/// otherwise the current generation keeps serving and one line says why. Bytes the current
/// generation was loaded from, or those of `tried` (the build tried just before, when this is
/// another event of its burst), are not loaded. Returns what identifies the bytes read, if it
/// got that far.
pub fn reload<S: Served>(served: &S, source: &Path, tried: Option<Digest>) -> Option<Digest> {
    let slot = served.slot();
    let _one_at_a_time = slot.reloading.lock().unwrap_or_else(|p| p.into_inner());
    let old = slot.current()?;
    let number = slot.next_number();
    let started = Instant::now();
    let refused = |why: &str| {
        nbdkit_c::error(&format!(
            "rustshim: reload of '{}' refused, generation {} keeps serving: {why}",
            source.display(),
            old.number
        ))
    };
    let build = match Generation::<S::Module>::read(number, source, served.trust()) {
        Ok(build) => build,
        Err(f) => {
            // Another event of the same file (unchanged since, refused for the same reason)
            // is not said again: one build, one line.
            if refused_before(source, &f.msg) {
                nbdkit_c::debug(&format!(
                    "rustshim: {} is the file just refused, unchanged: not said again",
                    source.display()
                ));
            } else {
                refused(&f.msg);
            }
            return None;
        }
    };
    let digest = build.digest();
    // Compared before loading: a touched file costs one read, no copy is mapped.
    if old.same_build_as(&build) {
        nbdkit_c::debug(&format!(
            "rustshim: {} changed on disk but not in content: no reload",
            source.display()
        ));
        return Some(digest);
    }
    if tried == Some(digest) {
        nbdkit_c::debug(&format!(
            "rustshim: {} is the build just refused (another event of the same write): not tried again",
            source.display()
        ));
        return Some(digest);
    }
    // The recorded parameters and the lifecycle are replayed as the first load saw them
    // (`services::replaying`: relative paths against the directory nbdkit started in).
    let (new, state) = match services::replaying(|| prepare(served, build, &old)) {
        Ok(prepared) => prepared,
        Err(why) => {
            refused(&why);
            return Some(digest);
        }
    };
    // A hand-over at retirement: wait for it, with new connections held at the end; they go
    // on (to the new generation) once it has been swapped in below. `take_over` runs where it
    // always does, after `config_complete` and before `get_ready`: so `get_ready` and
    // `after_fork` come after the wait.
    let state = match state {
        Some(state) => state,
        None => {
            let readied = hand_over_at_retirement(slot, &old, &new)
                .and_then(|state| services::replaying(|| ready(served, &new)).map(|()| state));
            match readied {
                Ok(state) => state,
                Err(why) => {
                    slot.release();
                    new.destroy();
                    refused(&why);
                    return Some(digest);
                }
            }
        }
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
    Some(digest)
}

/// Loads `build` and configures it like the current generation, with what became of the old
/// one's state (`None`: it is handed over when the old one retires). On error the new
/// generation is unloaded again, and the error is the reason for the one line that says the
/// reload was refused.
fn prepare<S: Served>(
    served: &S,
    build: Build<S::Module>,
    old: &Generation<S::Module>,
) -> Result<(Generation<S::Module>, Option<String>), String> {
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
        // Handed over at retirement: readied once it has taken over, after the wait.
        if state.is_some() {
            ready(served, &new)?;
        }
        Ok(state)
    })();
    match configured {
        Ok(state) => Ok((new, state)),
        Err(why) => {
            new.destroy();
            Err(why)
        }
    }
}

/// A new generation's `get_ready` and `after_fork`.
fn ready<S: Served>(served: &S, new: &Generation<S::Module>) -> Result<(), String> {
    step(served, new, Lifecycle::GetReady)?;
    step(served, new, Lifecycle::AfterFork)
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
/// How long the old generation's connections may stay open before the reload is given up,
/// unless [`RETIRE_LIMIT_ENV`] says otherwise.
const RETIRE_LIMIT: Duration = Duration::from_secs(30);
/// The environment variable that sets [`RETIRE_LIMIT`]: seconds, e.g. `2` or `0.5`.
pub const RETIRE_LIMIT_ENV: &str = "RUSTSHIM_RETIRE_LIMIT";

/// The retire limit: [`RETIRE_LIMIT_ENV`] if set, else [`RETIRE_LIMIT`]. A value that is not a
/// number of seconds (at most a day) is refused in one line naming it.
pub fn retire_limit() -> Result<Duration, String> {
    let Some(value) = std::env::var_os(RETIRE_LIMIT_ENV) else {
        return Ok(RETIRE_LIMIT);
    };
    let value = value.to_string_lossy();
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && (0.0..=86400.0).contains(s))
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            format!("{RETIRE_LIMIT_ENV}={value}: expected a number of seconds from 0 to 86400")
        })
}

/// How a duration is said in the shim's lines: `30 s`, `2.5 s`.
fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

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
    let limit = retire_limit()?;
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
            // On failure the caller releases new connections.
            let result = hand_over(old, new).and_then(|state| {
                state.ok_or_else(|| "the old generation asked to hand over later again".into())
            });
            return result.map(|state| {
                format!(
                    "{state} when generation {} retired, {} ms after it was ready",
                    old.number,
                    started.elapsed().as_millis()
                )
            });
        }
        if started.elapsed() >= limit {
            return Err(format!(
                "it hands over when generation {} retires, but that still has {} open connection(s) after {} ({RETIRE_LIMIT_ENV} sets the limit): close them and rebuild again",
                old.number,
                Arc::strong_count(old) - 2,
                seconds(limit)
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

/// Whether `source`, as it is now on disk, was the last file refused before it could be read,
/// for the same reason; remembers it (and its metadata) otherwise.
fn refused_before(source: &Path, why: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    use std::sync::Mutex;
    type Seen = (std::path::PathBuf, String, [i64; 8]);
    static LAST: Mutex<Option<Seen>> = Mutex::new(None);
    let stamp = std::fs::metadata(source).ok().map(|m| {
        [
            m.dev() as i64,
            m.ino() as i64,
            m.size() as i64,
            m.mtime_nsec() + m.mtime() * 1_000_000_000,
            m.ctime_nsec() + m.ctime() * 1_000_000_000,
            i64::from(m.mode()),
            i64::from(m.uid()),
            i64::from(m.gid()),
        ]
    });
    let Some(stamp) = stamp else { return false };
    let seen = (source.to_path_buf(), why.to_string(), stamp);
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    if last.as_ref() == Some(&seen) {
        return true;
    }
    *last = Some(seen);
    false
}
