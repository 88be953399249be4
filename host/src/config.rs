//! The shim's own command-line keys and the routing of everything else to the plugin.
//!
//! * `plugin=PATH`, or the first bare argument: the plugin file, loaded as soon as it is seen.
//! * Later bare arguments: the plugin's own `magic_config_key`. (nbdkit gives every bare argument
//!   to the shim's private magic key [`BARE_ARGUMENT_KEY`], so the shim can tell them apart.)
//! * Any other `key=value`: the plugin's `config`, in command-line order. Pairs given before
//!   `plugin=` wait and are replayed right after the plugin loads.
//!
//! Every pair given to the plugin is recorded ([`serving::record`]), so a later generation can be
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
/// The shim's options other than `plugin=` (for [`CONFIG_HELP`] and [`FRONTED_CONFIG_HELP`]).
macro_rules! shim_options_help {
    () => {
        "allow-insecure-plugin=true
                       Load the plugin even if others could write to it or to a
                       directory above it (refused by default).
reload=watch           Load each new build of the plugin file while serving:
                       new connections get the new build, open ones keep theirs
                       (default: reload=off)."
    };
}

/// `--help` of `nbdkit rustshim`.
pub const CONFIG_HELP: &CStr = c_text(concat!(
    "plugin=PATH|NAME       (required) The Rust plugin to load: a .so built with
                       rustshim-plugin-api. A NAME (no '/' or '.') is looked up as
                       librustshim_NAME.so or libNAME.so in $RUSTSHIM_PLUGIN_PATH,
                       then in rustshim/ beside this shim. The first bare argument
                       is the same; later bare arguments go to the plugin's magic key.
",
    shim_options_help!(),
    "
[KEY=VALUE ...]        Anything else is the plugin's own configuration:
                       see nbdkit rustshim plugin=PATH --dump-plugin.\0"
));

/// The shim's part of `--help` for a copy installed as `nbdkit-NAME-plugin.so`, which serves
/// one plugin and takes no `plugin=`.
pub const FRONTED_CONFIG_HELP: &str = concat!(
    shim_options_help!(),
    "
[KEY=VALUE ...]        The plugin's own configuration (bare arguments go to its
                       magic key): see --dump-plugin."
);

const fn c_text(text: &str) -> &CStr {
    match CStr::from_bytes_with_nul(text.as_bytes()) {
        Ok(c) => c,
        Err(_) => panic!("a NUL-terminated text without inner NULs"),
    }
}

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

/// The shim's options and the plugin file, as the command line gave them.
#[derive(Default)]
pub struct ShimState {
    /// `reload=`.
    pub reload: ReloadMode,
    /// `allow-insecure-plugin=`.
    pub allow_insecure: bool,
    /// The plugin file as given.
    pub plugin_path: Option<PathBuf>,
    /// Pairs given before `plugin=`.
    pending: Vec<(String, String)>,
    /// The plugin this copy of the shim stands for (`nbdkit-NAME-plugin.so`), if any.
    fronted: Option<&'static str>,
    /// Whether `fronted` (and with it `plugin_path`) has been set from the shim's file name.
    initialised: bool,
}

impl ShimState {
    /// Whether plugin files must pass the permission check.
    pub fn trust(&self) -> Trust {
        if self.allow_insecure {
            Trust::AnyFile
        } else {
            Trust::CheckPermissions
        }
    }
}

static STATE: Mutex<ShimState> = Mutex::new(ShimState {
    reload: ReloadMode::Off,
    allow_insecure: false,
    plugin_path: None,
    pending: Vec::new(),
    fronted: None,
    initialised: false,
});

/// Locks the shim's options (never held across a plugin callback that could re-enter it).
pub fn state() -> MutexGuard<'static, ShimState> {
    let mut st = STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if !st.initialised {
        st.initialised = true;
        st.fronted = locate::fronted_plugin();
        st.plugin_path = st.fronted.map(PathBuf::from);
    }
    st
}

/// Handles one `key=value` from nbdkit's `.config`. Errors are one line, not yet reported.
pub fn config(key: &str, value: &str) -> Result<(), Failure> {
    match key {
        "plugin" => set_plugin(value, "plugin="),
        "reload" => {
            state().reload = match value {
                "watch" => ReloadMode::Watch,
                "off" => ReloadMode::Off,
                _ => {
                    return Err(Failure::invalid(format!(
                        "reload={value}: expected reload=watch or reload=off"
                    )))
                }
            };
            Ok(())
        }
        ALLOW_INSECURE_KEY => {
            state().allow_insecure = parse_bool(value).ok_or_else(|| {
                Failure::invalid(format!(
                    "{ALLOW_INSECURE_KEY}={value}: expected true or false"
                ))
            })?;
            Ok(())
        }
        BARE_ARGUMENT_KEY => {
            refuse_unread_argument_file(value)?;
            if state().plugin_path.is_none() {
                set_plugin(value, "the first bare argument")
            } else {
                give_bare_argument(&*ensure_loaded()?, value)
            }
        }
        _ if key.starts_with("rustshim") => Err(Failure::invalid(format!(
            "unknown shim key '{key}': the shim's keys are plugin, reload and {ALLOW_INSECURE_KEY} (keys starting with 'rustshim' are reserved for it)"
        ))),
        _ => {
            let mut st = state();
            if st.plugin_path.is_none() {
                st.pending.push((key.to_owned(), value.to_owned()));
                return Ok(());
            }
            drop(st);
            give(&*ensure_loaded()?, key, value)
        }
    }
}

/// nbdkit ≥ 1.46 reads `@PATH` (a path with a `/`) as a file of `key=value` lines; an older one
/// passes it on as a bare argument, which would otherwise be taken for the plugin's file.
fn refuse_unread_argument_file(value: &str) -> Result<(), Failure> {
    let version = crate::services::server_version().unwrap_or("unknown");
    let reads_files = version
        .split('.')
        .map(|n| n.parse::<u32>().unwrap_or(0))
        .take(2)
        .ge([1, 46]);
    if value.starts_with('@') && value.contains('/') && !reads_files {
        return Err(Failure::invalid(format!(
            "'{value}': this nbdkit ({version}) does not read @PATH argument files (nbdkit 1.46 and later do): give the keys on the command line"
        )));
    }
    Ok(())
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Records the plugin file; it is loaded when first needed (see [`ensure_loaded`]), so that shim
/// keys such as `allow-insecure-plugin=` may follow it.
fn set_plugin(given: &str, how: &str) -> Result<(), Failure> {
    let mut st = state();
    if let Some(name) = st.fronted {
        return Err(Failure::invalid(format!(
            "'{given}' ({how}): this is the nbdkit plugin '{name}' (the rustshim shim installed as nbdkit-{name}-plugin.so), which serves the Rust plugin '{name}' and takes no plugin="
        )));
    }
    if let Some(first) = &st.plugin_path {
        return Err(Failure::invalid(format!(
            "plugin given twice: '{}' and then '{given}' (as {how}); the shim loads one plugin",
            first.display()
        )));
    }
    st.plugin_path = Some(PathBuf::from(given));
    Ok(())
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
        (st.plugin_path.clone().ok_or_else(no_plugin)?, st.trust())
    };
    let path = locate::resolve(&given)?;
    let generation = Arc::new(Generation::load(1, &path, trust)?);
    serving::replace(Arc::clone(&generation));
    let pending = std::mem::take(&mut state().pending);
    for (key, value) in pending {
        give(&generation, &key, &value)?;
    }
    Ok(generation)
}

/// The plugin, loaded if one was given; `None` if none was (`--dump-plugin` alone).
pub fn plugin_if_given() -> Result<Option<Arc<Generation>>, Failure> {
    if state().plugin_path.is_none() {
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
    serving::record(key, value);
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
