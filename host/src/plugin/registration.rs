//! The variants of [`PLUGIN`] that nbdkit may be given instead of it: under the name of the
//! Rust plugin a native-looking copy of the shim stands for, and with the plugin's own
//! parameters added to `--help`. Each is made once, at `plugin_init`; nbdkit copies it.

use std::ffi::{c_char, CStr};
use std::path::Path;
use std::sync::OnceLock;

use rustshim_plugin_api::abi::{PluginModuleRef, ROption};

use super::callbacks::PLUGIN;
use super::config::{self, FRONTED_CONFIG_HELP};
use crate::failure::Failure;
use crate::generation::Generation;
use crate::nbdkit_c::{self, NbdkitPlugin, Registration};

/// [`PLUGIN`] under the name of the Rust plugin a copy of the shim installed as
/// `nbdkit-NAME-plugin.so` stands for (see [`crate::locate::fronted_plugin`]), so nbdkit's messages,
/// `--help` and `--dump-plugin` say NAME. Made once; nbdkit copies it.
pub fn registration_as(name: &'static str) -> &'static Registration {
    static FRONTING: OnceLock<Registration> = OnceLock::new();
    FRONTING.get_or_init(|| {
        let text = |s: String| -> *const c_char {
            Box::leak(nbdkit_c::cstring_lossy(&s).into_boxed_c_str()).as_ptr()
        };
        Registration(NbdkitPlugin {
            name: text(name.to_owned()),
            longname: text(format!("nbdkit {name} plugin (Rust, served by rustshim)")),
            description: text(format!(
                "The Rust plugin '{name}', loaded from rustshim/ beside this file by the rustshim shim, which forwards every nbdkit callback to it."
            )),
            config_help: text(format!(
                "This is the Rust plugin '{name}' behind rustshim: its own keys, plus\n{}",
                FRONTED_CONFIG_HELP
            )),
            ..PLUGIN.0
        })
    })
}

/// `base` (what nbdkit is to copy), with the `--help` of the plugin named on nbdkit's command
/// line added to its `config_help` when the command line asks for `--help` (see
/// [`config::plugin_for_help`]): the plugin is loaded to read its `CONFIG_HELP`, and unloaded
/// again. Otherwise `base` itself. Made once; nbdkit copies it.
pub fn with_plugin_help(base: &'static Registration) -> &'static Registration {
    static WITH_HELP: OnceLock<Option<Registration>> = OnceLock::new();
    let made = WITH_HELP.get_or_init(|| {
        let (given, trust) = config::plugin_for_help()?;
        // SAFETY: a registration's strings are NUL-terminated and static (`Registration`).
        let shim_help = unsafe { CStr::from_ptr(base.0.config_help) }.to_string_lossy();
        let help = format!("{}\n\n{}", shim_help.trim_end(), plugin_help(&given, trust));
        Some(Registration(NbdkitPlugin {
            config_help: Box::leak(nbdkit_c::cstring_lossy(&help).into_boxed_c_str()).as_ptr(),
            ..base.0
        }))
    });
    made.as_ref().unwrap_or(base)
}

/// The part of `--help` about the plugin `given`: its name, version, file, description and
/// `CONFIG_HELP`, or why it could not be loaded.
fn plugin_help(given: &Path, trust: crate::locate::Trust) -> String {
    let loaded = crate::locate::resolve(given, "plugin")
        .map_err(Failure::invalid)
        .and_then(|path| Generation::<PluginModuleRef>::load(1, &path, trust));
    let g = match loaded {
        Ok(g) => g,
        Err(why) => {
            return format!(
                "The plugin '{}' could not be loaded to show its parameters: {why}",
                given.display()
            )
        }
    };
    let m = &g.module;
    let mut text = format!("The Rust plugin '{}'", g.name());
    if let ROption::RSome(version) = m.version() {
        text += &format!(", version {}", version.as_str());
    }
    text += &format!(" ({}):", g.source.display());
    if let ROption::RSome(description) = m.description() {
        text += &format!("\n{}", description.as_str().trim_end());
    }
    text += &match m.config_help() {
        ROption::RSome(help) if !help.as_str().trim().is_empty() => {
            format!("\n{}", help.as_str().trim_end())
        }
        _ => "\n(It describes no parameters: its CONFIG_HELP is empty.)".to_string(),
    };
    text
}
