//! `cargo xtask new-plugin NAME --path DIR [--filter]`: writes an out-of-tree plugin crate that
//! builds, serves and tests as it is: a small RAM disk plugin (or, with `--filter`, a filter that
//! inverts the data) against this checkout's `plugin-api`, a test that serves it with the real
//! nbdkit through `rustshim-harness`, and a README saying how to build, serve, develop and test
//! it.

use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::workspace::write;
use crate::Result;

/// The crate's files and their templates, in which `@NAME@` (the package), `@LIB@` (its
/// library's name), `@REPO@` (this checkout, from the new crate), `@DIR@` (the new crate, from
/// this checkout), `@API@` and `@HARNESS@` (the paths of `plugin-api` and `harness` from the new
/// crate, as TOML strings) are filled in: all relative, so no generated file names an absolute
/// path, and the two directories may move together.
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
/// empty directory): a plugin, or a filter with `filter`.
pub fn new_plugin(name: &str, path: &Path, filter: bool) -> Result {
    check_name(name)?;
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
    let repo = fs::canonicalize(crate::workspace::workspace())
        .map_err(|e| format!("cannot find this checkout: {e}"))?;

    let lib = name.replace('-', "_");
    let templates = if filter {
        FILTER_TEMPLATES
    } else {
        PLUGIN_TEMPLATES
    };
    for (file, template) in templates {
        write(&dir.join(file), &fill(template, name, &repo, &dir))?;
    }
    // The dependency versions this checkout builds and tests with (cargo drops what the new
    // crate does not use): the first build needs no resolution and gets known-good versions.
    let lock = repo.join("Cargo.lock");
    if lock.is_file() {
        fs::copy(&lock, dir.join("Cargo.lock"))
            .map_err(|e| format!("cannot copy {}: {e}", lock.display()))?;
    }

    let what = if filter { "filter" } else { "plugin" };
    println!("created the {what} crate {name} in {}", dir.display());
    println!();
    println!("  cd {}", dir.display());
    if filter {
        println!(
            "  cargo build && nbdkit --filter=rustshim memory 1G filter=./target/debug/lib{lib}.so"
        );
        println!("  cargo test     # serves it with the real nbdkit (see README.md)");
        return Ok(());
    }
    println!("  cargo build && nbdkit rustshim plugin=./target/debug/lib{lib}.so size=1G");
    println!("  cargo test     # serves it with the real nbdkit (see README.md)");
    println!(
        "  cargo xtask dev {} size=1G   # from {}",
        dir.display(),
        repo.display()
    );
    Ok(())
}

/// A template with its placeholders filled in (see [`PLUGIN_TEMPLATES`]), for the checkout `repo` and
/// the new crate `dir` (both absolute).
fn fill(template: &str, name: &str, repo: &Path, dir: &Path) -> String {
    let to_repo = relative(dir, repo);
    template
        .replace("@NAME@", name)
        .replace("@LIB@", &name.replace('-', "_"))
        .replace("@REPO@", &to_repo.display().to_string())
        .replace("@DIR@", &relative(repo, dir).display().to_string())
        .replace(
            "@API@",
            &toml_string(&to_repo.join("plugin-api").display().to_string()),
        )
        .replace(
            "@HARNESS@",
            &toml_string(&to_repo.join("harness").display().to_string()),
        )
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

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
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
        let (repo, dir) = (Path::new("/src/nbdkit-rustshim"), Path::new("/src/my-disk"));
        for (file, template) in PLUGIN_TEMPLATES.iter().chain(&FILTER_TEMPLATES) {
            let filled = fill(template, "my-disk", repo, dir);
            assert!(!filled.contains('@'), "{file}: {filled}");
            assert!(
                !filled.contains("/src/"),
                "{file} has an absolute path: {filled}"
            );
        }
        let cargo_toml = fill(PLUGIN_TEMPLATES[0].1, "my-disk", repo, dir);
        assert!(cargo_toml.contains(r#"path = "../nbdkit-rustshim/plugin-api""#));
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

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string(r#"/a "b"\c"#), r#""/a \"b\"\\c""#);
    }
}
