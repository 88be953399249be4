//! The options a plugin and each filter layer share: `reload=` (`filter-reload=`) and
//! `allow-insecure-plugin=` (`allow-insecure-filter=`), and the file as the command line gave
//! it ([`ShimState`]); how the keys are named and routed is each half's (`plugin::config`,
//! `filter::config`).

use std::path::PathBuf;

use crate::failure::Failure;
use crate::locate::Trust;

/// What `reload=` asked for.
#[derive(Copy, Clone, PartialEq, Eq, Debug, Default)]
pub enum ReloadMode {
    /// The plugin loaded at start-up serves until nbdkit exits.
    #[default]
    Off,
    /// A new build of the plugin file is loaded and serves new connections (see `reload`).
    Watch,
}

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
    /// The plugin this copy of the shim stands for (`nbdkit-NAME-plugin.so`), if any.
    pub(crate) fronted: Option<&'static str>,
    /// Whether `fronted` (and with it `path`) has been set from the shim's file name.
    pub(crate) initialised: bool,
}

impl ShimState {
    /// No options, no file.
    pub const fn new() -> Self {
        ShimState {
            reload: ReloadMode::Off,
            allow_insecure: false,
            path: None,
            pending: Vec::new(),
            fronted: None,
            initialised: false,
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
        if let Some(name) = self.fronted {
            return Err(Failure::invalid(format!(
                "'{given}' ({how}): this is the nbdkit plugin '{name}' (the rustshim shim installed as nbdkit-{name}-plugin.so), which serves the Rust plugin '{name}' and takes no plugin="
            )));
        }
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

/// nbdkit's boolean words.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}
