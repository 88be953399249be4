//! The shim's own command-line keys and the routing of everything else to the plugin.
//!
//! * `plugin=PATH`, or the first bare argument: the plugin file, loaded as soon as it is seen.
//! * Later bare arguments: the plugin's own `magic_config_key`. (nbdkit gives every bare argument
//!   to the shim's private magic key [`BARE_ARGUMENT_KEY`], so the shim can tell them apart.)
//! * Any other `key=value`: the plugin's `config`, in command-line order. Pairs given before
//!   `plugin=` wait and are replayed right after the plugin loads.
//!
//! Every pair given to the plugin is recorded, so a later generation can be configured the same
//! way.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use rustshim_plugin_api::abi::RStr;

use crate::generation::Generation;
use crate::services;

/// The shim's `magic_config_key`: nbdkit passes every bare argument under this key.
pub const BARE_ARGUMENT_KEY: &str = "rustshim-bare-argument";

/// What `reload=` asked for.
#[derive(Copy, Clone, PartialEq, Eq, Debug, Default)]
pub enum ReloadMode {
    /// The plugin loaded at start-up serves until nbdkit exits.
    #[default]
    Off,
    /// A new build of the plugin file is loaded and serves new connections (see `reload`).
    Watch,
}

/// The shim's state, shared by all callbacks.
#[derive(Default)]
pub struct ShimState {
    /// `reload=`.
    pub reload: ReloadMode,
    /// The plugin file as given.
    pub plugin_path: Option<PathBuf>,
    /// Pairs given before `plugin=`.
    pending: Vec<(String, String)>,
    /// Every pair given to the plugin, in order.
    pub recorded: Vec<(String, String)>,
    /// The generation new connections go to.
    pub current: Option<Arc<Generation>>,
}

static STATE: Mutex<ShimState> = Mutex::new(ShimState {
    reload: ReloadMode::Off,
    plugin_path: None,
    pending: Vec::new(),
    recorded: Vec::new(),
    current: None,
});

/// Locks the shim's state (never held across a plugin callback that could re-enter it).
pub fn state() -> MutexGuard<'static, ShimState> {
    STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The generation new connections go to, if a plugin is loaded.
pub fn current() -> Option<Arc<Generation>> {
    state().current.clone()
}

/// Handles one `key=value` from nbdkit's `.config`. Errors are one line, not yet reported.
pub fn config(key: &str, value: &str) -> Result<(), String> {
    match key {
        "plugin" => load_plugin(value, "plugin="),
        "reload" => {
            state().reload = match value {
                "watch" => ReloadMode::Watch,
                "off" => ReloadMode::Off,
                _ => {
                    return Err(format!(
                        "reload={value}: expected reload=watch or reload=off"
                    ))
                }
            };
            Ok(())
        }
        BARE_ARGUMENT_KEY => {
            if state().plugin_path.is_none() {
                load_plugin(value, "the first bare argument")
            } else {
                give_bare_argument(value)
            }
        }
        _ => {
            let mut st = state();
            if st.current.is_none() {
                st.pending.push((key.to_owned(), value.to_owned()));
                Ok(())
            } else {
                drop(st);
                give(key, value)
            }
        }
    }
}

fn load_plugin(path: &str, how: &str) -> Result<(), String> {
    {
        let mut st = state();
        if let Some(first) = &st.plugin_path {
            return Err(format!(
                "plugin given twice: '{}' and then '{path}' (as {how}); the shim loads one plugin",
                first.display()
            ));
        }
        st.plugin_path = Some(PathBuf::from(path));
    }
    let generation = Generation::load(1, path.as_ref())?;
    let pending = {
        let mut st = state();
        st.current = Some(Arc::new(generation));
        std::mem::take(&mut st.pending)
    };
    for (key, value) in pending {
        give(&key, &value)?;
    }
    Ok(())
}

fn give_bare_argument(value: &str) -> Result<(), String> {
    let generation = current().expect("a plugin path implies a loaded plugin");
    match generation.module.magic_config_key().into_option() {
        Some(key) => give(key.as_str(), value),
        None => Err(format!(
            "plugin '{}' has no magic config key, so the bare argument '{value}' means nothing: write it as key=value",
            generation.name()
        )),
    }
}

/// Gives one pair to the current plugin and records it.
fn give(key: &str, value: &str) -> Result<(), String> {
    let generation = current().expect("only called with a plugin loaded");
    state().recorded.push((key.to_owned(), value.to_owned()));
    configure(&generation, key, value)
}

/// Calls `config` of one generation. Errors are one line, not yet reported.
pub fn configure(generation: &Generation, key: &str, value: &str) -> Result<(), String> {
    let Some(f) = generation.module.config() else {
        return Err(format!(
            "plugin '{}' takes no parameters, but was given '{key}={value}'",
            generation.name()
        ));
    };
    // SAFETY: configuration runs single-threaded before serving (the threading contract).
    if unsafe {
        f(
            generation.instance,
            RStr::from_str(key),
            RStr::from_str(value),
        )
    } != 0
    {
        let (_, msg) = services::take_error();
        return Err(if msg.is_empty() {
            format!("plugin '{}': {key}={value} was refused", generation.name())
        } else {
            msg
        });
    }
    Ok(())
}

/// Checks that a plugin was given (from `.config_complete`).
pub fn require_plugin() -> Result<Arc<Generation>, String> {
    current().ok_or_else(|| {
        "no plugin given: add plugin=PATH (a Rust plugin .so built with rustshim-plugin-api); see nbdkit rustshim --help"
            .to_owned()
    })
}
