//! The shim's checked loader: opens a plugin (or filter) file, checks the ABI version it was
//! built against and the layout of everything it exports, and returns its root module.
//!
//! abi_stable's own `RootModule::load_from*` is not used: it caches one module per type (so a
//! rebuilt plugin could never be loaded again), checks the layout before the version (a major
//! bump then yields a 2,000-line report instead of "version mismatch"), and refuses a plugin built
//! against an older minor version even though prefix types are designed for exactly that
//! (abi_stable issue #118). Here the older side's layout is checked as the "interface", so old
//! plugins run on new shims and new plugins on old shims, within one major version.
//!
//! Every library opened here stays loaded for the life of the process: unloading one that
//! abi_stable has checked leaves dangling pointers in its global check cache.

use std::fmt;
use std::path::Path;

use abi_stable::{
    abi_stability::abi_checking::check_layout_compatibility,
    library::{lib_header_from_path, LibraryError, RootModule},
    sabi_types::VersionNumber,
    StableAbi,
};

/// The root modules the shim loads: [`PluginModuleRef`](super::PluginModuleRef) and
/// [`FilterModuleRef`](super::FilterModuleRef) (so the shim names them without abi_stable).
pub trait Loadable: RootModule + StableAbi {}
impl Loadable for super::PluginModuleRef {}
impl Loadable for super::FilterModuleRef {}

/// What a root module of type `M` is to its users: `plugin` or `filter` (from its abi_stable
/// name, `rustshim_plugin` or `rustshim_filter`).
pub fn kind_of<M: Loadable>() -> &'static str {
    match M::NAME {
        "rustshim_filter" => "filter",
        _ => "plugin",
    }
}

/// Why a plugin file could not be loaded. `Display` is one line; [`LoadError::detail`] has the
/// long form where there is one.
#[derive(Debug)]
pub enum LoadError {
    /// The dynamic linker refused the file.
    Open(String),
    /// The file loaded but exports no abi_stable root module.
    NoRootModule,
    /// The file is an abi_stable library of some other kind (a rustshim filter where a plugin
    /// was expected, or the reverse).
    OtherLibrary {
        /// Its abi_stable root module name.
        found: String,
        /// What was expected: `plugin` or `filter`.
        expected: &'static str,
    },
    /// The plugin was built against another major version of the ABI.
    IncompatibleVersion {
        /// `plugin` or `filter`.
        kind: &'static str,
        /// The ABI version the plugin was built against.
        plugin: String,
        /// The ABI version of the loader.
        shim: String,
    },
    /// The layouts differ although the versions claim compatibility.
    IncompatibleLayout {
        /// The first few `Error:` lines of abi_stable's report.
        summary: String,
        /// abi_stable's full report.
        detail: String,
    },
    /// The plugin's root module constructor panicked or failed.
    RootModule(String),
    /// Anything else abi_stable reported.
    Other(String),
}

impl LoadError {
    /// The long form of the error, for debug logs.
    pub fn detail(&self) -> Option<&str> {
        match self {
            LoadError::IncompatibleLayout { detail, .. } => Some(detail),
            _ => None,
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Open(why) => write!(f, "cannot be loaded by the dynamic linker: {why}"),
            LoadError::NoRootModule => f.write_str("is a shared object but not a rustshim plugin (it exports no rustshim root module; plugins must call rustshim_plugin_api::export_plugin!)"),
            LoadError::OtherLibrary { found, expected } => match found.as_str() {
                "rustshim_filter" => f.write_str("is a rustshim filter, not a plugin: use it with nbdkit --filter=rustshim filter=FILE PLUGIN"),
                "rustshim_plugin" => f.write_str("is a rustshim plugin, not a filter: serve it with nbdkit rustshim plugin=FILE"),
                other => write!(f, "is an abi_stable library of another kind ('{other}'), not a rustshim {expected}"),
            },
            LoadError::IncompatibleVersion { kind, plugin, shim } => write!(
                f,
                "was built against rustshim-plugin-api {plugin}, but this shim speaks {}.x ({shim}): rebuild the {kind} against rustshim-plugin-api {}.x",
                major_of(shim),
                major_of(shim)
            ),
            LoadError::IncompatibleLayout { summary, .. } => write!(
                f,
                "has an ABI incompatible with this shim although both claim compatible versions ({summary}); run nbdkit -v for the full report"
            ),
            LoadError::RootModule(why) => write!(f, "failed while initialising its root module: {why}"),
            LoadError::Other(why) => f.write_str(why),
        }
    }
}

fn major_of(version: &str) -> &str {
    version.split('.').next().unwrap_or(version)
}

/// A plugin (or filter) file opened and checked.
pub struct CheckedModule<M> {
    /// Its root module.
    pub module: M,
    /// The `rustshim-plugin-api` version the plugin was built against.
    pub abi_version: String,
}

/// Opens `path` (which should be a private copy: see the module docs), checks that it is a root
/// module of type `M` ([`PluginModuleRef`](super::PluginModuleRef) or
/// [`FilterModuleRef`](super::FilterModuleRef)) and returns it. `path` must be absolute, or the
/// dynamic linker's search path is used.
pub fn load_checked<M: Loadable>(path: &Path) -> Result<CheckedModule<M>, LoadError> {
    let header = lib_header_from_path(path).map_err(|e| match e {
        LibraryError::OpenError { err, .. } => LoadError::Open(err.to_string()),
        LibraryError::GetSymbolError { .. } => LoadError::NoRootModule,
        // Its Display dumps both headers, byte arrays and all.
        LibraryError::InvalidAbiHeader(_) => LoadError::Other(
            "is damaged or not a rustshim plugin: its root module symbol does not start with a valid abi_stable header".into(),
        ),
        other => LoadError::Other(one_line(&other.to_string())),
    })?;

    let consts = header.root_mod_consts();
    if consts.name().as_str() != M::NAME {
        return Err(LoadError::OtherLibrary {
            found: consts.name().to_string(),
            expected: kind_of::<M>(),
        });
    }

    let theirs_str = header.version_strings();
    let theirs =
        VersionNumber::new(theirs_str).map_err(|e| LoadError::Other(one_line(&e.to_string())))?;
    let ours = VersionNumber::new(M::VERSION_STRINGS).expect("the crate version parses");
    let abi_version = theirs.to_string();
    if theirs.major != ours.major || theirs.major == 0 && theirs.minor != ours.minor {
        return Err(LoadError::IncompatibleVersion {
            kind: kind_of::<M>(),
            plugin: abi_version,
            shim: ours.to_string(),
        });
    }

    let plugin_layout = header
        .layout()
        .ok_or_else(|| LoadError::Other("exports no type layout to check".into()))?;
    let shim_layout = <M as StableAbi>::LAYOUT;
    // abi_stable accepts an implementation with more prefix fields than the interface, never
    // fewer: so the older side is the interface.
    let plugin_is_older = (theirs.minor, theirs.patch) < (ours.minor, ours.patch);
    let (interface, implementation) = if plugin_is_older {
        (plugin_layout, shim_layout)
    } else {
        (shim_layout, plugin_layout)
    };
    check_layout_compatibility(interface, implementation).map_err(|errors| {
        let detail = errors.to_string();
        LoadError::IncompatibleLayout {
            summary: summarize_layout_errors(&detail),
            detail,
        }
    })?;

    // SAFETY: the layout was checked just above, in the direction that is valid for prefix
    // types; the version check inside only compares majors again.
    let module =
        unsafe { header.init_root_module_with_unchecked_layout::<M>() }.map_err(|e| match e {
            LibraryError::RootModule { err, .. } => {
                LoadError::RootModule(one_line(&err.to_string()))
            }
            other => LoadError::Other(one_line(&other.to_string())),
        })?;
    Ok(CheckedModule {
        module,
        abi_version,
    })
}

/// Picks the lines that say what differs out of abi_stable's report (hundreds of lines that
/// mostly dump both layouts): the field path and the `Error:`/`Expected:`/`Found:` triples.
fn summarize_layout_errors(report: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut lines = report
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .peekable();
    while let Some(line) = lines.next() {
        if let Some(kind) = line.strip_prefix("Error:") {
            let mut part = kind.trim().to_string();
            for label in ["Expected:", "Found:"] {
                if lines.peek() == Some(&label) {
                    lines.next();
                    if let Some(value) = lines.next() {
                        part.push_str(&format!(
                            ", {} {}",
                            label.trim_end_matches(':').to_lowercase(),
                            value
                        ));
                    }
                }
            }
            if !parts.contains(&part) {
                parts.push(part);
            }
        }
        if parts.len() == 3 {
            break;
        }
    }
    if parts.is_empty() {
        one_line(report)
    } else {
        parts.join("; ")
    }
}

/// Folds a multi-line abi_stable message into one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_keeps_kind_and_values() {
        let report = "\n... lots of layout ...\nError:mismatched type\nExpected:\n    u32\nFound:\n    u64\n";
        assert_eq!(
            summarize_layout_errors(report),
            "mismatched type, expected u32, found u64"
        );
    }

    #[test]
    fn summary_of_unknown_text_is_one_line() {
        assert_eq!(summarize_layout_errors("a\n b \n"), "a b");
    }
}
