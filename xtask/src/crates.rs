//! `cargo xtask crates [--out DIR]`: the crates a plugin author depends on, as `cargo package`
//! makes them for crates.io, unpacked where a plugin crate can build against them before they
//! are published.
//!
//! `cargo package` packages `rustshim-plugin-api-macros`, `rustshim-plugin-api` and
//! `rustshim-harness` together (each verified by building the packaged crate, plugin-api against
//! the packaged macros), the `.crate` files are unpacked into DIR (default `target/crates/`),
//! and `DIR/config.toml` gets a `[patch.crates-io]` table naming each unpacked directory. With
//! it, a plugin crate that depends on them by version (`rustshim-plugin-api = "1.1"`) builds
//! against exactly what would be published: `cargo --config DIR/config.toml build`, or the
//! table in `~/.cargo/config.toml` or in a `.cargo/config.toml` above the plugin crate (which
//! `cargo test` with the harness needs: the harness builds the plugin with a cargo of its own,
//! which `--config` does not reach).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use cargo_rustshim::cmd::toml_string;

use crate::workspace::{cargo, mkdir, run, workspace, workspace_metadata, write};
use crate::Result;

/// The published crates, in the order they are published (each depends only on those before).
const CRATES: &[&str] = &[
    "rustshim-plugin-api-macros",
    "rustshim-plugin-api",
    "rustshim-harness",
];

/// The first line of `DIR/config.toml`: a DIR holding it is ours to replace.
const HEADER: &str = "# Written by `cargo xtask crates`";

/// One packaged crate.
struct Packaged {
    name: String,
    version: String,
    /// The `.crate` file cargo wrote.
    file: PathBuf,
}

pub fn crates(out: Option<PathBuf>, allow_dirty: bool) -> Result {
    let (target, versions) = metadata()?;
    let out = match out {
        Some(dir) => std::path::absolute(&dir)
            .map_err(|e| format!("cannot make {} absolute: {e}", dir.display()))?,
        None => target.join("crates"),
    };

    let mut cmd = cargo();
    cmd.arg("package");
    for name in CRATES {
        cmd.args(["-p", name]);
    }
    if allow_dirty {
        cmd.arg("--allow-dirty");
    }
    run("cargo package", &mut cmd)?;

    let packaged: Vec<Packaged> = CRATES
        .iter()
        .zip(versions)
        .map(|(name, version)| Packaged {
            file: target
                .join("package")
                .join(format!("{name}-{version}.crate")),
            name: name.to_string(),
            version,
        })
        .collect();

    clear(&out)?;
    mkdir(&out)?;
    let mut dirs = Vec::new();
    for krate in &packaged {
        // On stdin and in its working directory: tar reads no path of ours as an argument
        // (GNU tar unquotes backslashes in those).
        let file = fs::File::open(&krate.file)
            .map_err(|e| format!("cannot open {}: {e}", krate.file.display()))?;
        run(
            &format!("unpacking {}", krate.file.display()),
            Command::new("tar")
                .args(["-xzf", "-"])
                .current_dir(&out)
                .stdin(file),
        )?;
        let dir = out.join(format!("{}-{}", krate.name, krate.version));
        if !dir.join("Cargo.toml").is_file() {
            return Err(format!(
                "{} did not unpack into {}",
                krate.file.display(),
                dir.display()
            ));
        }
        dirs.push((krate.name.as_str(), dir));
    }
    let config = out.join("config.toml");
    write(&config, &config_toml(&dirs)?)?;

    println!(
        "\nThe crates as `cargo package` made them for crates.io, unpacked in {}{}:",
        out.display(),
        if out.starts_with(&target) {
            " (this checkout's target directory: `cargo clean` removes them, `--out DIR` puts them elsewhere; \
             one directory for any number of plugin crates)"
        } else {
            " (one directory for any number of plugin crates)"
        }
    );
    for krate in &packaged {
        println!("  {} {}", krate.name, krate.version);
    }
    // What plugin crates depend on: the API, and the harness for their tests.
    let (api, harness) = (&packaged[1], &packaged[2]);
    println!(
        "\nThey are not on crates.io yet. To build a plugin crate that depends on them by version\n\
         ({} = \"{}\", {} = \"{}\") against exactly these, patch crates.io\n\
         with the [patch.crates-io] table of\n\n  {config}\n\n\
         for one command:\n\n  cargo --config {config} build\n\n\
         or for every cargo command: copy the table into ~/.cargo/config.toml, or into\n\
         .cargo/config.toml in a directory above the plugin crate. `cargo test` with\n\
         rustshim-harness needs the latter: the harness builds the plugin with a cargo of its\n\
         own, which --config does not reach. Cargo warns that a patch was not used for a\n\
         crate the plugin does not depend on.",
        api.name,
        requirement(&api.version),
        harness.name,
        requirement(&harness.version),
        config = config.display()
    );
    Ok(())
}

/// The requirement a dependent writes for `version`, as `cargo rustshim new` and the README
/// write it: major and minor, `1.1` for 1.1.0 (the oldest API with what it has), `0.1` for
/// 0.1.0.
fn requirement(version: &str) -> String {
    let mut parts = version.split('.');
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor)) => format!("{major}.{minor}"),
        (Some(major), None) => major.to_string(),
        (None, _) => version.to_string(),
    }
}

/// The workspace's target directory and the version of each of [`CRATES`], from
/// `cargo metadata`.
fn metadata() -> Result<(PathBuf, Vec<String>)> {
    let metadata = workspace_metadata()?;
    let target = metadata["target_directory"]
        .as_str()
        .map(|dir| workspace().join(dir))
        .ok_or("cargo metadata names no target directory")?;
    let packages = metadata["packages"]
        .as_array()
        .ok_or("cargo metadata lists no packages")?;
    let versions = CRATES
        .iter()
        .map(|name| {
            packages
                .iter()
                .find(|p| p["name"] == *name)
                .and_then(|p| p["version"].as_str())
                .map(str::to_string)
                .ok_or_else(|| format!("cargo metadata names no package {name}"))
        })
        .collect::<Result<_>>()?;
    Ok((target, versions))
}

/// Removes what an earlier run left in `dir`; refuses a directory that is not empty and not
/// one this command wrote (no `config.toml` of ours), so `--out` cannot remove anything else.
fn clear(dir: &Path) -> Result {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
    };
    let ours =
        fs::read_to_string(dir.join("config.toml")).is_ok_and(|config| config.starts_with(HEADER));
    if entries.count() > 0 && !ours {
        return Err(format!(
            "{} is not empty and was not written by `cargo xtask crates`: give an empty or new \
             directory",
            dir.display()
        ));
    }
    fs::remove_dir_all(dir).map_err(|e| format!("cannot remove {}: {e}", dir.display()))
}

/// `config.toml`: a `[patch.crates-io]` table giving each crate its unpacked directory.
fn config_toml(dirs: &[(&str, PathBuf)]) -> Result<String> {
    let mut text = format!(
        "{HEADER}: the crates as `cargo package` made them for crates.io.\n\
         # Use with `cargo --config THIS_FILE ...`, or copy the table into ~/.cargo/config.toml\n\
         # or into .cargo/config.toml in a directory above the plugin crate.\n\
         [patch.crates-io]\n"
    );
    for (name, dir) in dirs {
        let dir = dir
            .to_str()
            .ok_or_else(|| format!("{} is not UTF-8: TOML cannot name it", dir.display()))?;
        text.push_str(&format!("{name} = {{ path = {} }}\n", toml_string(dir)));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paths TOML must escape: quotes, backslashes, control characters; and plain Unicode.
    const AWKWARD: &str = "/tmp/a \"b\" \\c\td\ne\u{7f}f é/rustshim-plugin-api-1.1.0";

    /// Reads back a TOML basic string as the spec defines it (the escapes `toml_string` writes,
    /// and the others), and returns it and what follows it.
    fn unescape(quoted: &str) -> (String, &str) {
        let mut chars = quoted
            .strip_prefix('"')
            .expect("starts with a quote")
            .char_indices();
        let mut out = String::new();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return (out, &quoted[i + 2..]),
                '\\' => match chars.next().expect("an escape").1 {
                    '"' => out.push('"'),
                    '\\' => out.push('\\'),
                    'b' => out.push('\u{8}'),
                    't' => out.push('\t'),
                    'n' => out.push('\n'),
                    'f' => out.push('\u{c}'),
                    'r' => out.push('\r'),
                    'u' => {
                        let hex: String = (0..4).map(|_| chars.next().unwrap().1).collect();
                        let code = u32::from_str_radix(&hex, 16).unwrap();
                        out.push(char::from_u32(code).unwrap());
                    }
                    other => panic!("no such escape \\{other} in {quoted}"),
                },
                c => {
                    assert!(
                        c == '\t' || !c.is_control(),
                        "unescaped control character in {quoted}"
                    );
                    out.push(c);
                }
            }
        }
        panic!("unterminated string {quoted}")
    }

    #[test]
    fn requirements() {
        assert_eq!(requirement("1.1.0"), "1.1");
        assert_eq!(requirement("0.1.0"), "0.1");
        assert_eq!(requirement("12.0.3-rc.1"), "12.0");
    }

    #[test]
    fn strings_round_trip() {
        for s in ["", "/plain/path", AWKWARD, "\\\\\"\"", "\u{0}\u{1f}\u{9f}"] {
            let quoted = toml_string(s);
            assert_eq!(unescape(&quoted), (s.to_string(), ""), "{quoted}");
        }
    }

    #[test]
    fn the_config_patches_each_crate_with_its_directory() {
        let dirs: Vec<(&str, PathBuf)> = CRATES
            .iter()
            .map(|name| (*name, PathBuf::from(AWKWARD).join(name)))
            .collect();
        let text = config_toml(&dirs).unwrap();
        assert!(text.starts_with(HEADER));
        let table: Vec<&str> = text
            .lines()
            .skip_while(|line| *line != "[patch.crates-io]")
            .skip(1)
            .collect();
        assert_eq!(table.len(), CRATES.len(), "{text}");
        for (line, (name, dir)) in table.iter().zip(&dirs) {
            let rest = line
                .strip_prefix(&format!("{name} = {{ path = "))
                .unwrap_or_else(|| panic!("{line}"));
            let (path, after) = unescape(rest);
            assert_eq!(Path::new(&path), dir);
            assert_eq!(after, " }");
        }
    }

    /// Cargo itself reads the file: `--config FILE` is parsed before any command runs.
    #[test]
    fn cargo_reads_the_config() {
        let dir = rustshim_harness::TempDir::with_prefix("xtask-crates").unwrap();
        let dirs: Vec<(&str, PathBuf)> = CRATES
            .iter()
            .map(|name| (*name, PathBuf::from(AWKWARD).join(name)))
            .collect();
        let config = dir.path().join("config.toml");
        fs::write(&config, config_toml(&dirs).unwrap()).unwrap();
        let out = cargo()
            .arg("--config")
            .arg(&config)
            .args(["locate-project", "--workspace"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn only_our_own_directory_is_replaced() {
        let dir = rustshim_harness::TempDir::with_prefix("xtask-crates").unwrap();
        let out = dir.path().join("out");
        clear(&out).unwrap(); // none yet
        mkdir(&out).unwrap();
        clear(&out).unwrap(); // empty
        assert!(!out.exists());
        mkdir(&out).unwrap();
        fs::write(out.join("precious"), "").unwrap();
        assert!(clear(&out).is_err());
        assert!(out.join("precious").exists());
        fs::write(out.join("config.toml"), format!("{HEADER}: ...\n")).unwrap();
        clear(&out).unwrap();
        assert!(!out.exists());
    }
}
