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
use crate::options::{parse_bool, ShimState};
use crate::services;
use crate::serving;

/// The shim's `magic_config_key`: nbdkit passes every bare argument under this key.
pub const MAGIC_CONFIG_KEY: &CStr = c"rustshim-bare-argument";
/// [`MAGIC_CONFIG_KEY`] as the key `config` sees.
pub const BARE_ARGUMENT_KEY: &str = "rustshim-bare-argument";
const _: () = assert!(MAGIC_CONFIG_KEY.to_bytes().len() == BARE_ARGUMENT_KEY.len());

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
[KEY=VALUE ...]        Anything else is the plugin's own configuration: its keys
                       are shown by nbdkit rustshim plugin=PATH --help.\0"
));

/// The shim's part of `--help` for a copy installed as `nbdkit-NAME-plugin.so`, which serves
/// one plugin and takes no `plugin=`.
pub const FRONTED_CONFIG_HELP: &str = concat!(
    shim_options_help!(),
    "
[KEY=VALUE ...]        The plugin's own configuration (bare arguments go to its
                       magic key): its keys are shown below."
);

const fn c_text(text: &str) -> &CStr {
    match CStr::from_bytes_with_nul(text.as_bytes()) {
        Ok(c) => c,
        Err(_) => panic!("a NUL-terminated text without inner NULs"),
    }
}

/// nbdkit's options that take a value (nbdkit ≥ 1.32 to 1.48, `server/options.h`): the short
/// ones and the long ones, so that the plugin's arguments can be told from option values.
const SHORT_WITH_VALUE: &str = "DegipPtuU";
const LONG_WITH_VALUE: &[&str] = &[
    "debug",
    "export",
    "export-name",
    "exportname",
    "filter",
    "group",
    "ip-addr",
    "ipaddr",
    "log",
    "mask-handshake",
    "name",
    "pid-file",
    "pidfile",
    "port",
    "run",
    "selinux-label",
    "threads",
    "timeout",
    "time-out",
    "tls",
    "tls-certificates",
    "tls-psk",
    "unix",
    "user",
];

/// The plugin `nbdkit [options] SHIM [args] --help` names, when nbdkit's command line asks for
/// `--help`: nbdkit reads the shim's `config_help` before it passes the shim any parameter, so
/// the shim reads the plugin from the command line itself (as `plugin=`, the first bare
/// argument, or the plugin a native-looking copy stands for) to show its parameters too.
/// Returns it with the trust `allow-insecure-plugin=` asks for.
pub fn plugin_for_help() -> Option<(PathBuf, Trust)> {
    let cmdline = std::fs::read("/proc/self/cmdline").ok()?;
    // Each argument ends with a NUL.
    let args: Vec<String> = cmdline
        .strip_suffix(b"\0")
        .unwrap_or(&cmdline)
        .split(|&b| b == 0)
        .skip(1)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let (plugin, insecure) = help_request(&args, locate::fronted_plugin())?;
    let trust = if insecure {
        Trust::AnyFile
    } else {
        Trust::CheckPermissions
    };
    Some((PathBuf::from(plugin), trust))
}

/// [`plugin_for_help`] for nbdkit's arguments `args` (without the program): `--help` among the
/// options, then the shim's own arguments after its name, read as nbdkit's `getopt` reads them
/// (options may come anywhere before `--`).
fn help_request(args: &[String], fronted: Option<&str>) -> Option<(String, bool)> {
    let mut help = false;
    let mut positional: Vec<&str> = Vec::new();
    let mut words = args.iter();
    while let Some(word) = words.next() {
        if word == "--" {
            positional.extend(words.by_ref().map(String::as_str));
        } else if let Some(long) = word.strip_prefix("--") {
            help |= long == "help";
            if !long.contains('=') && LONG_WITH_VALUE.contains(&long) {
                words.next();
            }
        } else if let Some(short) = word.strip_prefix('-').filter(|s| !s.is_empty()) {
            // A cluster (`-fv`) ends at the first option with a value, which is the rest of the
            // word or the next word.
            if let Some(at) = short.find(|c| SHORT_WITH_VALUE.contains(c)) {
                if at + 1 == short.len() {
                    words.next();
                }
            }
        } else {
            positional.push(word);
        }
    }
    // The first positional argument is the shim (or a native-looking copy of it).
    let shim_args = positional.get(1..).unwrap_or_default();
    if !help {
        return None;
    }
    let insecure = shim_args.iter().any(|a| {
        a.strip_prefix(ALLOW_INSECURE_KEY)
            .and_then(|rest| rest.strip_prefix('='))
            .and_then(parse_bool)
            == Some(true)
    });
    let plugin = match fronted {
        Some(name) => name.to_owned(),
        None => shim_args
            .iter()
            .find_map(|a| a.strip_prefix("plugin="))
            .or_else(|| shim_args.iter().copied().find(|a| !a.contains('=')))?
            .to_owned(),
    };
    Some((plugin, insecure))
}

/// The shim's key that turns off the permission check of the plugin file.
pub const ALLOW_INSECURE_KEY: &str = "allow-insecure-plugin";

static STATE: Mutex<ShimState> = Mutex::new(ShimState::new());

/// Locks the shim's options (never held across a plugin callback that could re-enter it).
pub fn state() -> MutexGuard<'static, ShimState> {
    let mut st = STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if !st.initialised {
        st.initialised = true;
        st.fronted = locate::fronted_plugin();
        st.path = st.fronted.map(PathBuf::from);
    }
    st
}

/// Handles one `key=value` from nbdkit's `.config`. Errors are one line, not yet reported: the
/// shim's own start with `rustshim: `, the plugin's are its own words (see [`give`]).
pub fn config(key: &str, value: &str) -> Result<(), Failure> {
    match key {
        "plugin" => state()
            .set_path("plugin", value, "plugin=")
            .map_err(Failure::from_shim),
        "reload" => state().set_reload(key, value).map_err(Failure::from_shim),
        ALLOW_INSECURE_KEY => state()
            .set_allow_insecure(key, value)
            .map_err(Failure::from_shim),
        BARE_ARGUMENT_KEY => {
            refuse_unread_argument_file(value).map_err(Failure::from_shim)?;
            if state().path.is_none() {
                state()
                    .set_path("plugin", value, "the first bare argument")
                    .map_err(Failure::from_shim)
            } else {
                give_bare_argument(&*ensure_loaded()?, value)
            }
        }
        _ if key.starts_with("rustshim") => Err(Failure::invalid(format!(
            "unknown shim key '{key}': the shim's keys are plugin, reload and {ALLOW_INSECURE_KEY} (keys starting with 'rustshim' are reserved for it)"
        ))
        .from_shim()),
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

/// The loaded plugin, loading it now if a plugin was given but not loaded yet: at its first
/// parameter, or at `config_complete` (or `--dump-plugin`). Pairs that came before `plugin=`
/// are given to it right after loading. Errors are ready to report, as [`config`]'s.
pub fn ensure_loaded() -> Result<Arc<Generation>, Failure> {
    if let Some(generation) = serving::PLUGIN.current() {
        return Ok(generation);
    }
    let (given, trust) = {
        let st = state();
        (
            st.path.clone().ok_or_else(|| no_plugin().from_shim())?,
            st.trust(),
        )
    };
    let path =
        locate::resolve(&given, "plugin").map_err(|why| Failure::invalid(why).from_shim())?;
    let generation = Arc::new(Generation::load(1, &path, trust).map_err(Failure::from_shim)?);
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
        ))
        .from_shim()),
    }
}

/// Gives one pair to the plugin and records it. A refusal is the plugin's message as it wrote
/// it (nothing added: a plugin names itself if it wants to), or the shim's own, which starts
/// with `rustshim: ` like all of the shim's.
fn give(generation: &Generation, key: &str, value: &str) -> Result<(), Failure> {
    serving::PLUGIN.record(key, value);
    configure_pair(generation, key, value).map_err(|refusal| match refusal {
        Refusal::ByPlugin(failure) => failure,
        Refusal::ByShim(failure) => failure.from_shim(),
        // nbdkit's line says why; a second line would repeat it.
        Refusal::Logged(_) => Failure::invalid(""),
    })
}

/// Who refused a pair.
enum Refusal {
    /// The plugin's `config` failed, with this message.
    ByPlugin(Failure),
    /// The shim could not give it (the plugin takes no parameters, or said nothing).
    ByShim(Failure),
    /// The plugin said nothing, but a server function it called (`parse_size`, say) failed and
    /// its reason is on nbdkit's log already: the shim's message, for where one line must say
    /// everything (a reload's).
    Logged(Failure),
}

/// Calls `config` of one generation. Errors are one line (`EINVAL`), not yet reported, with no
/// prefix (a reload quotes them in its own line).
pub fn configure(generation: &Generation, key: &str, value: &str) -> Result<(), Failure> {
    configure_pair(generation, key, value).map_err(|refusal| match refusal {
        Refusal::ByPlugin(failure) | Refusal::ByShim(failure) | Refusal::Logged(failure) => failure,
    })
}

fn configure_pair(generation: &Generation, key: &str, value: &str) -> Result<(), Refusal> {
    let Some(f) = generation.module.config() else {
        return Err(Refusal::ByShim(Failure::invalid(format!(
            "plugin '{}' takes no parameters, but was given '{key}={value}'",
            generation.name()
        ))));
    };
    services::take_logged();
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
        let logged = services::take_logged();
        return Err(if msg.is_empty() {
            let failure = Failure::invalid(format!(
                "plugin '{}': {key}={value} was refused",
                generation.name()
            ));
            if logged {
                Refusal::Logged(failure.from_shim())
            } else {
                Refusal::ByShim(failure)
            }
        } else {
            Refusal::ByPlugin(Failure::invalid(msg))
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(line: &str, fronted: Option<&str>) -> Option<(String, bool)> {
        let args: Vec<String> = line.split(' ').map(String::from).collect();
        help_request(&args, fronted)
    }

    #[test]
    fn help_names_the_plugin_as_the_shim_would_take_it() {
        let p = |s: &str| Some((s.to_string(), false));
        assert_eq!(request("rustshim plugin=./x.so --help", None), p("./x.so"));
        assert_eq!(request("--help rustshim ./x.so 1G", None), p("./x.so"));
        assert_eq!(
            request("-U /tmp/s -fv rustshim size=1 y.so --help", None),
            p("y.so")
        );
        assert_eq!(request("-fU /tmp/s rustshim y.so --help", None), p("y.so"));
        assert_eq!(
            request(
                "--filter cow -D x.y=1 --unix=/s rustshim --help plugin=m",
                None
            ),
            p("m")
        );
        assert_eq!(
            request("rustshim allow-insecure-plugin=true z.so --help", None),
            Some(("z.so".into(), true))
        );
        assert_eq!(request("memory --help size=1", Some("memory")), p("memory"));
        // No --help, or no plugin: nothing to describe.
        assert_eq!(request("rustshim plugin=./x.so", None), None);
        assert_eq!(request("rustshim --help", None), None);
        assert_eq!(request("rustshim -- --help x.so", None), None);
    }
}
