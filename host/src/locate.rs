//! Finding the plugin (or filter) file, and deciding whether it may be loaded at all.
//!
//! * A plugin given by short name (`plugin=memory`: letters, digits, `-` and `_` only, as
//!   nbdkit's own short names) is looked up as `librustshim_NAME.so`, then `libNAME.so`, in the
//!   directories of `RUSTSHIM_PLUGIN_PATH` (colon-separated), then in `rustshim/` beside the shim
//!   (where `cargo xtask install` puts plugins). Anything else is a path, used as given. A filter
//!   (`filter=delay`) likewise: `librustshim_filter_NAME.so`, then `libNAME.so`, in
//!   `RUSTSHIM_FILTER_PATH`, then in `rustshim/` beside the filter shim.
//! * Loading a plugin runs its code inside the server, so, as ssh does for keys, the file and
//!   every directory above it must be writable only by their owner, and owned by root or by the
//!   user nbdkit runs as; a world-writable directory with the sticky bit (like `/tmp`) is fine.
//!   Otherwise someone else could swap the code the server runs. `allow-insecure-plugin=true`
//!   turns this off.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Whether a plugin file must pass the permission check.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// Refuse files others could have written (the default).
    CheckPermissions,
    /// `allow-insecure-plugin=true`.
    AnyFile,
}

/// Whether `given` is a short name rather than a path.
fn is_short_name(given: &str) -> bool {
    !given.is_empty()
        && given
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The file of the loaded object that contains `addr`, as the dynamic linker names it.
pub fn object_file_of(addr: usize) -> Option<PathBuf> {
    // SAFETY: an all-zero Dl_info is a valid out value; dladdr only reads the address.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr fills `info` with strings owned by the dynamic linker, or returns 0.
    if unsafe { libc::dladdr(addr as *const libc::c_void, &mut info) } == 0
        || info.dli_fname.is_null()
    {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated string owned by the dynamic linker.
    let file = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    let file =
        Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(file.to_bytes()));
    std::path::absolute(file).ok()
}

/// The file the shim was loaded from, as the dynamic linker was given it (so a symlink's path).
pub fn shim_file() -> Option<PathBuf> {
    // A function of ours that is not exported: `plugin_init` would resolve to the first one
    // nbdkit loaded (nbdkit loads with RTLD_GLOBAL), which may be another plugin's.
    object_file_of(shim_directory as *const () as usize)
}

/// The directory the shim was loaded from.
fn shim_directory() -> Option<PathBuf> {
    shim_file()?.parent().map(Path::to_path_buf)
}

/// The Rust plugin this copy of the shim stands for, when it is installed as
/// `nbdkit-NAME-plugin.so` (a copy or a link of the shim in nbdkit's plugin directory) with a
/// NAME other than `rustshim`: `nbdkit NAME [args]` then serves the plugin NAME, found as
/// `plugin=NAME` would be (in `rustshim/` beside it), as if it were a C plugin called NAME.
pub fn fronted_plugin() -> Option<&'static str> {
    static NAME: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        let file = shim_file()?;
        let name = file
            .file_name()?
            .to_str()?
            .strip_prefix("nbdkit-")?
            .strip_suffix("-plugin.so")?;
        (name != "rustshim" && is_short_name(name)).then(|| name.to_owned())
    })
    .as_deref()
}

/// The plugin (`kind` = `plugin`) or filter (`filter`) file for what the user gave: a path as is,
/// a short name looked up.
pub fn resolve(given: &Path, kind: &str) -> Result<PathBuf, String> {
    let Some(name) = given.to_str().filter(|g| is_short_name(g)) else {
        return Ok(given.to_path_buf());
    };
    let variable = format!("RUSTSHIM_{}_PATH", kind.to_ascii_uppercase());
    let mut dirs: Vec<PathBuf> = std::env::var_os(&variable)
        .map(|p| {
            std::env::split_paths(&p)
                .filter(|d| !d.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    if let Some(shim_dir) = shim_directory() {
        dirs.push(shim_dir.join("rustshim"));
    }
    let prefix = if kind == "plugin" { "" } else { "filter_" };
    let candidates = [
        format!("librustshim_{prefix}{name}.so"),
        format!("lib{name}.so"),
    ];
    for dir in &dirs {
        for file in &candidates {
            let path = dir.join(file);
            if path.is_file() {
                return Ok(path);
            }
        }
    }
    let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    Err(format!(
        "no {kind} named '{name}': looked for {} in {} (set {variable}, or give a path with a '/')",
        candidates.join(" and "),
        if searched.is_empty() {
            "no directory".to_string()
        } else {
            searched.join(", ")
        }
    ))
}

/// Refuses the `kind` (`plugin` or `filter`) file `path` (absolute) if someone other than root or
/// us could have changed it.
pub fn check_permissions(kind: &str, path: &Path) -> Result<(), String> {
    let me = nix::unistd::geteuid().as_raw();
    let real = std::fs::canonicalize(path)
        .map_err(|e| format!("{kind} file '{}': {e}", path.display()))?;
    let mut checked: Option<&Path> = Some(&real);
    while let Some(p) = checked {
        let meta = std::fs::metadata(p).map_err(|e| format!("'{}': {e}", p.display()))?;
        let is_dir = meta.is_dir();
        let what = if is_dir { "directory" } else { "file" };
        let sticky = meta.mode() & 0o1000 != 0;
        if meta.mode() & 0o022 != 0 && !(is_dir && sticky) {
            return Err(refusal(
                kind,
                path,
                &format!(
                    "its {what} '{}' is writable by group or others (mode {:o})",
                    p.display(),
                    meta.mode() & 0o7777
                ),
            ));
        }
        if meta.uid() != 0 && meta.uid() != me {
            return Err(refusal(
                kind,
                path,
                &format!(
                    "its {what} '{}' belongs to another user (uid {})",
                    p.display(),
                    meta.uid()
                ),
            ));
        }
        checked = p.parent();
    }
    Ok(())
}

fn refusal(kind: &str, path: &Path, why: &str) -> String {
    format!(
        "{kind} file '{}' refused: {why}, so someone else could change the code nbdkit runs; fix the permissions, or add allow-insecure-{kind}=true",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_names_not_paths() {
        assert!(is_short_name("memory") && is_short_name("my-disk_2"));
        for path in ["./memory", "libmemory.so", "/abs/lib.so", "", "a b"] {
            assert!(!is_short_name(path), "{path}");
        }
    }

    #[test]
    fn a_path_is_used_as_given() {
        assert_eq!(
            resolve(Path::new("libx.so"), "plugin").unwrap(),
            PathBuf::from("libx.so")
        );
    }
}
