//! The shim's own command-line keys and the routing of everything else to the plugin.
//!
//! * `plugin=PATH`, or the first bare argument: the plugin file, loaded as soon as it is seen.
//! * Later bare arguments: the plugin's own `magic_config_key`. (nbdkit gives every bare argument
//!   to the shim's private magic key [`BARE_ARGUMENT_KEY`], so the shim can tell them apart.)
//! * Any other `key=value`: the plugin's `config`, in command-line order. Pairs given before
//!   `plugin=` wait and are replayed right after the plugin loads.
//!
//! Every pair given to the plugin is recorded ([`serving::Slot::record`]), so a later generation can be
//! configured the same way.

use std::ffi::CStr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use rustshim_plugin_api::abi::RStr;

use crate::failure::Failure;
use crate::generation::Generation;
use crate::locate::{self, Trust};
use crate::services;
use crate::serving;

/// The shim's `magic_config_key`: nbdkit passes every bare argument under this key.
pub const MAGIC_CONFIG_KEY: &CStr = c"rustshim-bare-argument";
/// [`MAGIC_CONFIG_KEY`] as the key `config` sees.
pub const BARE_ARGUMENT_KEY: &str = "rustshim-bare-argument";
const _: () = assert!(MAGIC_CONFIG_KEY.to_bytes().len() == BARE_ARGUMENT_KEY.len());

/// The text of `nbdkit rustshim --help`.
pub const CONFIG_HELP: &CStr =
    c"plugin=PATH|NAME       (required) The Rust plugin to load: a .so built with
                       rustshim-plugin-api. A NAME (no '/' or '.') is looked up as
                       librustshim_NAME.so or libNAME.so in $RUSTSHIM_PLUGIN_PATH,
                       then in rustshim/ beside this shim. The first bare argument
                       is the same; later bare arguments go to the plugin's magic key.
allow-insecure-plugin=true
                       Load the plugin even if others could write to it or to a
                       directory above it (refused by default).
reload=watch           Load each new build of the plugin file while serving:
                       new connections get the new build, open ones keep theirs
                       (default: reload=off).
[KEY=VALUE ...]        Anything else is the plugin's own configuration:
                       see nbdkit rustshim plugin=PATH --dump-plugin.";

/// What `reload=` asked for.
#[derive(Copy, Clone, PartialEq, Eq, Debug, Default)]
pub enum ReloadMode {
    /// The plugin loaded at start-up serves until nbdkit exits.
    #[default]
    Off,
    /// A new build of the plugin file is loaded and serves new connections (see `reload`).
    Watch,
}

/// The shim's key that turns off the permission check of the plugin file.
pub const ALLOW_INSECURE_KEY: &str = "allow-insecure-plugin";

/// The shim's options and the plugin (or, for a filter layer, the filter) file, as the command
/// line gave them.
#[derive(Default)]
pub struct ShimState {
    /// `reload=` (`filter-reload=`).
    pub reload: ReloadMode,
    /// `allow-insecure-plugin=` (`allow-insecure-filter=`).
    pub allow_insecure: bool,
    /// The file as given.
    pub path: Option<PathBuf>,
    /// Pairs given before the file.
    pub pending: Vec<(String, String)>,
}

impl ShimState {
    /// No options, no file.
    pub const fn new() -> Self {
        ShimState {
            reload: ReloadMode::Off,
            allow_insecure: false,
            path: None,
            pending: Vec::new(),
        }
    }

    /// Whether files must pass the permission check.
    pub fn trust(&self) -> Trust {
        if self.allow_insecure {
            Trust::AnyFile
        } else {
            Trust::CheckPermissions
        }
    }

    /// `reload=`-style `key=value`: watch or off.
    pub fn set_reload(&mut self, key: &str, value: &str) -> Result<(), Failure> {
        self.reload = match value {
            "watch" => ReloadMode::Watch,
            "off" => ReloadMode::Off,
            _ => {
                return Err(Failure::invalid(format!(
                    "{key}={value}: expected {key}=watch or {key}=off"
                )))
            }
        };
        Ok(())
    }

    /// `allow-insecure-*=`-style `key=value`: a boolean.
    pub fn set_allow_insecure(&mut self, key: &str, value: &str) -> Result<(), Failure> {
        self.allow_insecure = parse_bool(value)
            .ok_or_else(|| Failure::invalid(format!("{key}={value}: expected true or false")))?;
        Ok(())
    }

    /// Records the file; it is loaded when first needed, so that options may follow it. `what`
    /// is `plugin` or `filter`, `how` how it was given.
    pub fn set_path(&mut self, what: &str, given: &str, how: &str) -> Result<(), Failure> {
        if let Some(first) = &self.path {
            return Err(Failure::invalid(format!(
                "{what} given twice: '{}' and then '{given}' (as {how}); the shim loads one {what}",
                first.display()
            )));
        }
        self.path = Some(PathBuf::from(given));
        Ok(())
    }
}

static STATE: Mutex<ShimState> = Mutex::new(ShimState::new());

/// Locks the shim's options (never held across a plugin callback that could re-enter it).
pub fn state() -> MutexGuard<'static, ShimState> {
    STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Handles one `key=value` from nbdkit's `.config`. Errors are one line, not yet reported.
pub fn config(key: &str, value: &str) -> Result<(), Failure> {
    match key {
        "plugin" => state().set_path("plugin", value, "plugin="),
        "reload" => state().set_reload(key, value),
        ALLOW_INSECURE_KEY => state().set_allow_insecure(key, value),
        BARE_ARGUMENT_KEY => {
            if state().path.is_none() {
                state().set_path("plugin", value, "the first bare argument")
            } else {
                give_bare_argument(&*ensure_loaded()?, value)
            }
        }
        _ if key.starts_with("rustshim") => Err(Failure::invalid(format!(
            "unknown shim key '{key}': the shim's keys are plugin, reload and {ALLOW_INSECURE_KEY} (keys starting with 'rustshim' are reserved for it)"
        ))),
        _ => {
            let mut st = state();
            if st.path.is_none() {
                st.pending.push((key.to_owned(), value.to_owned()));
                return Ok(());
            }
            drop(st);
            give(&*ensure_loaded()?, key, value)
        }
    }
}

/// nbdkit's boolean words.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// The loaded plugin, loading it now if a plugin was given but not loaded yet: at its first
/// parameter, or at `config_complete` (or `--dump-plugin`). Pairs that came before `plugin=`
/// are given to it right after loading.
pub fn ensure_loaded() -> Result<Arc<Generation>, Failure> {
    if let Some(generation) = serving::current() {
        return Ok(generation);
    }
    let (given, trust) = {
        let st = state();
        (st.path.clone().ok_or_else(no_plugin)?, st.trust())
    };
    let path = locate::resolve(&given, "plugin")?;
    let generation = Arc::new(Generation::load(1, &path, trust)?);
    serving::PLUGIN.replace(Arc::clone(&generation));
    let pending = std::mem::take(&mut state().pending);
    for (key, value) in pending {
        give(&generation, &key, &value)?;
    }
    Ok(generation)
}

/// The plugin, loaded if one was given; `None` if none was (`--dump-plugin` alone).
pub fn plugin_if_given() -> Result<Option<Arc<Generation>>, Failure> {
    if state().path.is_none() {
        return Ok(None);
    }
    ensure_loaded().map(Some)
}

fn no_plugin() -> Failure {
    Failure::invalid("no plugin given: add plugin=PATH (a Rust plugin .so built with rustshim-plugin-api); see nbdkit rustshim --help")
}

fn give_bare_argument(generation: &Generation, value: &str) -> Result<(), Failure> {
    match generation.module.magic_config_key().into_option() {
        Some(key) => give(generation, key.as_str(), value),
        None => Err(Failure::invalid(format!(
            "plugin '{}' has no magic config key, so the bare argument '{value}' means nothing: write it as key=value",
            generation.name()
        ))),
    }
}

/// Gives one pair to the plugin and records it.
fn give(generation: &Generation, key: &str, value: &str) -> Result<(), Failure> {
    serving::PLUGIN.record(key, value);
    configure(generation, key, value)
}

/// Calls `config` of one generation. Errors are one line (`EINVAL`), not yet reported.
pub fn configure(generation: &Generation, key: &str, value: &str) -> Result<(), Failure> {
    let Some(f) = generation.module.config() else {
        return Err(Failure::invalid(format!(
            "plugin '{}' takes no parameters, but was given '{key}={value}'",
            generation.name()
        )));
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
        let msg = services::take_error().msg;
        return Err(Failure::invalid(if msg.is_empty() {
            format!("plugin '{}': {key}={value} was refused", generation.name())
        } else {
            msg
        }));
    }
    Ok(())
}
