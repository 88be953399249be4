//! `cargo rustshim new NAME [--filter] [--path DIR] [--api-path DIR]` (and `cargo xtask
//! new-plugin`, which calls [`new_crate`]): writes a plugin crate that builds, serves and tests
//! as it is: a small RAM disk plugin (or, with `--filter`, a filter that inverts the data), a
//! test that serves it with the real nbdkit through `rustshim-harness`, and a README saying how
//! to build, serve, develop, test and package it.
//!
//! The crate depends on `rustshim-plugin-api` and `rustshim-harness` by version, as on any
//! crate from crates.io. With `--api-path` (and from `cargo xtask new-plugin`, with the checkout)
//! a `[patch.crates-io]` table points them at a local copy instead: a checkout of
//! nbdkit-rustshim, or the directory of unpacked crates `cargo xtask crates` makes. Every path
//! written is relative to the new crate, so no generated file names an absolute path.

use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::cmd::{toml_string, write};
use crate::Result;

/// The version requirement on `rustshim-plugin-api` that new crates get: the API the templates
/// are written against (`cargo rustshim doctor` checks the installed shim speaks it). A test
/// compares it with plugin-api/Cargo.toml.
pub const API_REQUIREMENT: &str = "1.1";
/// The version requirement on `rustshim-harness` that new crates get (checked likewise).
pub const HARNESS_REQUIREMENT: &str = "0.1";

/// The three crates a new crate may take from a local copy: name, and where it is in a
/// checkout.
const LOCAL_CRATES: [(&str, &str); 3] = [
    ("rustshim-plugin-api", "plugin-api"),
    ("rustshim-plugin-api-macros", "plugin-api/macros"),
    ("rustshim-harness", "harness"),
];

/// Which kind of crate to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Plugin,
    Filter,
}

impl Kind {
    /// What `[package.metadata.rustshim] kind` says, and what messages call it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Plugin => "plugin",
            Kind::Filter => "filter",
        }
    }
}

/// The crate's files and their templates, in which `@NAME@` (the package), `@LIB@` (its
/// library's name), `@API_VERSION@` and `@HARNESS_VERSION@` (the version requirements) and
/// `@PATCH@` (the `[patch.crates-io]` table, or nothing) are filled in.
const PLUGIN_TEMPLATES: [(&str, &str); 5] = [
    (
        "Cargo.toml",
        include_str!("../templates/new-plugin/Cargo.toml.in"),
    ),
    (
        "src/lib.rs",
        include_str!("../templates/new-plugin/src/lib.rs.in"),
    ),
    (
        "tests/serve.rs",
        include_str!("../templates/new-plugin/tests/serve.rs.in"),
    ),
    (
        "README.md",
        include_str!("../templates/new-plugin/README.md.in"),
    ),
    (
        ".gitignore",
        include_str!("../templates/new-plugin/gitignore.in"),
    ),
];

/// The filter crate's files, filled in as [`PLUGIN_TEMPLATES`].
const FILTER_TEMPLATES: [(&str, &str); 5] = [
    (
        "Cargo.toml",
        include_str!("../templates/new-filter/Cargo.toml.in"),
    ),
    (
        "src/lib.rs",
        include_str!("../templates/new-filter/src/lib.rs.in"),
    ),
    (
        "tests/serve.rs",
        include_str!("../templates/new-filter/tests/serve.rs.in"),
    ),
    (
        "README.md",
        include_str!("../templates/new-filter/README.md.in"),
    ),
    (
        ".gitignore",
        include_str!("../templates/new-filter/gitignore.in"),
    ),
];

/// Rust keywords and the crates every program can name: not usable as package names.
const RESERVED: &[&str] = &[
    "abstract",
    "alloc",
    "as",
    "async",
    "await",
    "become",
    "box",
    "break",
    "const",
    "continue",
    "core",
    "crate",
    "do",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "proc-macro",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "std",
    "struct",
    "super",
    "test",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
];

/// Writes the crate `name` into `path` (created if missing; refused if it exists and is not an
/// empty directory). With `local`, the rustshim crates come from that checkout or directory of
/// unpacked crates (a `[patch.crates-io]` table), and a checkout's `Cargo.lock` is copied so the
/// first build gets the versions the checkout is tested with.
pub fn new_crate(name: &str, path: &Path, kind: Kind, local: Option<&Path>) -> Result {
    check_name(name)?;
    let local = local
        .map(|dir| fs::canonicalize(dir).map_err(|e| format!("--api-path {}: {e}", dir.display())))
        .transpose()?;
    let crates = local.as_deref().map(local_crates).transpose()?;
    match fs::read_dir(path) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(format!(
                    "{} exists and is not empty: give a new or empty directory",
                    path.display()
                ));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        }
        Err(e) => return Err(format!("{}: {e}", path.display())),
    }
    let dir = fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let patch = crates
        .as_ref()
        .map_or_else(String::new, |crates| patch_table(crates, &dir));

    let templates = match kind {
        Kind::Plugin => PLUGIN_TEMPLATES,
        Kind::Filter => FILTER_TEMPLATES,
    };
    for (file, template) in templates {
        write(&dir.join(file), &fill(template, name, &patch))?;
    }
    if let Some(lock) = local
        .map(|dir| dir.join("Cargo.lock"))
        .filter(|l| l.is_file())
    {
        fs::copy(&lock, dir.join("Cargo.lock"))
            .map_err(|e| format!("cannot copy {}: {e}", lock.display()))?;
    }

    let lib = name.replace('-', "_");
    println!(
        "created the {} crate {name} in {}",
        kind.as_str(),
        dir.display()
    );
    println!();
    println!("  cd {}", path.display());
    match kind {
        Kind::Plugin => println!(
            "  cargo rustshim run size=1G     # serve it, rebuilt and reloaded on every edit"
        ),
        Kind::Filter => println!(
            "  cargo rustshim run             # serve it over a 1 GiB memory disk, rebuilt on every edit"
        ),
    }
    println!("  cargo rustshim test            # its tests, with the real nbdkit (--nbdkit all: every nbdkit)");
    println!("  cargo rustshim doctor          # what is installed, and what to fix");
    println!(
        "  (the {} file: target/debug/lib{lib}.so after cargo build)",
        kind.as_str()
    );
    Ok(())
}

/// The directories of the three crates in `dir`: a checkout (`plugin-api/`, ...) or a
/// directory of unpacked crates (`rustshim-plugin-api-1.1.0/`, ..., as `cargo xtask crates`
/// makes), the newest version of each.
fn local_crates(dir: &Path) -> Result<Vec<(&'static str, PathBuf)>> {
    LOCAL_CRATES
        .iter()
        .map(|(name, in_checkout)| {
            let checkout = dir.join(in_checkout);
            if checkout.join("Cargo.toml").is_file() {
                return Ok((*name, checkout));
            }
            let prefix = format!("{name}-");
            let mut unpacked: Vec<PathBuf> = fs::read_dir(dir)
                .map_err(|e| format!("--api-path {}: {e}", dir.display()))?
                .flatten()
                .filter(|entry| {
                    entry.file_name().to_str().is_some_and(|file| {
                        file.strip_prefix(&prefix).is_some_and(|version| {
                            version.starts_with(|c: char| c.is_ascii_digit())
                        })
                    })
                })
                .map(|entry| entry.path())
                .filter(|path| path.join("Cargo.toml").is_file())
                .collect();
            unpacked.sort_by_key(|path| version_key(path));
            unpacked.pop().map(|path| (*name, path)).ok_or_else(|| {
                format!(
                    "--api-path {}: no {name} there (give an nbdkit-rustshim checkout, or the \
                     directory `cargo xtask crates` wrote)",
                    dir.display()
                )
            })
        })
        .collect()
}

/// `rustshim-plugin-api-1.10.0` sorts after `-1.9.0`.
fn version_key(path: &Path) -> Vec<u64> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let version = name.rsplit('-').next().unwrap_or("");
    version.split('.').map(|n| n.parse().unwrap_or(0)).collect()
}

/// The `[patch.crates-io]` table pointing the crates at `crates`, with paths relative to the
/// new crate `dir`.
fn patch_table(crates: &[(&str, PathBuf)], dir: &Path) -> String {
    let mut table = String::from(
        "\n# The rustshim crates from a local copy (`cargo rustshim new --api-path`) instead of\n\
         # crates.io: delete this table to use the published ones.\n[patch.crates-io]\n",
    );
    for (name, path) in crates {
        let path = relative(dir, path).display().to_string();
        table += &format!("{name} = {{ path = {} }}\n", toml_string(&path));
    }
    table
}

/// A template with its placeholders filled in (see [`PLUGIN_TEMPLATES`]).
fn fill(template: &str, name: &str, patch: &str) -> String {
    template
        .replace("@NAME@", name)
        .replace("@LIB@", &name.replace('-', "_"))
        .replace("@API_VERSION@", API_REQUIREMENT)
        .replace("@HARNESS_VERSION@", HARNESS_REQUIREMENT)
        .replace("@PATCH@\n", patch)
}

/// The path of `to` relative to the directory `from` (both absolute): `../nbdkit-rustshim`.
fn relative(from: &Path, to: &Path) -> PathBuf {
    let (from, to): (Vec<_>, Vec<_>) = (from.components().collect(), to.components().collect());
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path: PathBuf = (common..from.len())
        .map(|_| Component::ParentDir)
        .chain(to[common..].iter().copied())
        .collect();
    if path.as_os_str().is_empty() {
        path.push(".");
    }
    path
}

/// A package name: lowercase ASCII letters, digits and `-`, starting with a letter, not ending
/// with `-`, not a Rust keyword or a standard crate.
fn check_name(name: &str) -> Result {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.len() <= 64;
    if !valid {
        return Err(format!(
            "'{name}' is not a valid plugin name: use lowercase letters, digits and '-', \
             starting with a letter (e.g. my-disk)"
        ));
    }
    if RESERVED.contains(&name) {
        return Err(format!(
            "'{name}' is a Rust keyword or a standard crate's name: choose another plugin name"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["ramdisk", "my-disk", "disk2", "a-b-c"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "", "My", "2disk", "-disk", "disk-", "my_disk", "my disk", "self", "test",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_placeholder_is_filled_in_with_relative_paths() {
        let dir = Path::new("/src/my-disk");
        let crates: Vec<(&str, PathBuf)> = LOCAL_CRATES
            .iter()
            .map(|(name, sub)| (*name, Path::new("/src/nbdkit-rustshim").join(sub)))
            .collect();
        for patch in [String::new(), patch_table(&crates, dir)] {
            for (file, template) in PLUGIN_TEMPLATES.iter().chain(&FILTER_TEMPLATES) {
                let filled = fill(template, "my-disk", &patch);
                assert!(!filled.contains('@'), "{file}: {filled}");
                assert!(
                    !filled.contains("/src/"),
                    "{file} has an absolute path: {filled}"
                );
            }
        }
        let cargo_toml = fill(PLUGIN_TEMPLATES[0].1, "my-disk", &patch_table(&crates, dir));
        assert!(cargo_toml.contains(&format!("rustshim-plugin-api = \"{API_REQUIREMENT}\"")));
        assert!(cargo_toml.contains(
            "[patch.crates-io]\nrustshim-plugin-api = { path = \"../nbdkit-rustshim/plugin-api\" }"
        ));
        let cargo_toml = fill(PLUGIN_TEMPLATES[0].1, "my-disk", "");
        assert!(!cargo_toml.contains("patch"), "{cargo_toml}");
    }

    /// The requirements new crates get are the versions of this checkout's crates: a release
    /// that bumps one and not the other fails here.
    #[test]
    fn the_requirements_are_the_workspace_versions() {
        let version = |manifest: &str| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(manifest);
            let text = fs::read_to_string(&path).unwrap();
            text.lines()
                .find_map(|line| line.strip_prefix("version = \""))
                .and_then(|rest| rest.strip_suffix('"'))
                .unwrap_or_else(|| panic!("no version in {}", path.display()))
                .to_string()
        };
        let requirement = |version: String| {
            let parts: Vec<&str> = version.split('.').collect();
            format!("{}.{}", parts[0], parts[1])
        };
        assert_eq!(
            requirement(version("plugin-api/Cargo.toml")),
            API_REQUIREMENT
        );
        assert_eq!(
            requirement(version("harness/Cargo.toml")),
            HARNESS_REQUIREMENT
        );
    }

    #[test]
    fn unpacked_crates_are_found_newest_first() {
        let temp = std::env::temp_dir().join(format!("rustshim-new-test-{}", std::process::id()));
        for dir in [
            "rustshim-plugin-api-1.9.0",
            "rustshim-plugin-api-1.10.0",
            "rustshim-plugin-api-macros-1.0.0",
            "rustshim-harness-0.1.0",
        ] {
            write(&temp.join(dir).join("Cargo.toml"), "").unwrap();
        }
        let found = local_crates(&temp);
        fs::remove_dir_all(&temp).unwrap();
        let found = found.unwrap();
        assert!(
            found[0].1.ends_with("rustshim-plugin-api-1.10.0"),
            "{found:?}"
        );
        assert!(found[1].1.ends_with("rustshim-plugin-api-macros-1.0.0"));
        let missing = local_crates(Path::new("/")).unwrap_err();
        assert!(
            missing.contains("no rustshim-plugin-api there"),
            "{missing}"
        );
    }

    #[test]
    fn relative_paths() {
        let rel = |a: &str, b: &str| relative(Path::new(a), Path::new(b)).display().to_string();
        assert_eq!(
            rel("/src/my-disk", "/src/nbdkit-rustshim"),
            "../nbdkit-rustshim"
        );
        assert_eq!(rel("/a/b/c", "/a"), "../..");
        assert_eq!(rel("/a", "/a/b/c"), "b/c");
        assert_eq!(rel("/a", "/a"), ".");
        assert_eq!(rel("/x/y", "/work/repo"), "../../work/repo");
    }
}
