//! Plugins built in a workspace of their own, against a copy of `plugin-api` that may differ
//! from the shim's (another version, a changed ABI): what a third party shipping a binary does.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::artifacts::workspace;

/// How the fixture's copy of `plugin-api` differs from the shim's.
pub struct ApiCopy<'a> {
    /// The version written into the copy's Cargo.toml.
    pub version: &'a str,
    /// Edits to the copy: (file relative to `plugin-api/`, text to find, replacement).
    pub edits: &'a [(&'a str, &'a str, &'a str)],
}

/// A plugin crate's `src/lib.rs`: the smallest useful plugin, named `fixture`.
pub const MINIMAL_PLUGIN: &str = r#"
use rustshim_plugin_api::prelude::*;
#[derive(Default)]
struct Fixture;
#[plugin]
impl Plugin for Fixture {
    type Handle = ();
    const NAME: &'static str = "fixture";
    fn open(&self, _readonly: bool) -> Result<()> { Ok(()) }
    fn get_size(&self, _: &()) -> Result<u64> { Ok(1 << 20) }
    fn pread(&self, _: &(), buf: &mut [u8], _offset: u64, _flags: Flags) -> Result<()> {
        buf.fill(0x5a);
        Ok(())
    }
}
export_plugin!(Fixture);
"#;

/// [`MINIMAL_PLUGIN`] built against `plugin-api` 2.0.0 (otherwise unchanged): a plugin of
/// another major version.
pub fn other_major_plugin() -> PathBuf {
    build_plugin(
        "api_v2",
        &ApiCopy {
            version: "2.0.0",
            edits: &[],
        },
        MINIMAL_PLUGIN,
        &[],
    )
}

fn write_if_changed(path: &Path, contents: &str) {
    if std::fs::read_to_string(path).ok().as_deref() != Some(contents) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
}

fn copy_tree(from: &Path, to: &Path, edit: &dyn Fn(&Path, String) -> String) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "target" {
                copy_tree(&src, &dst, edit);
            }
        } else {
            let text = std::fs::read_to_string(&src).unwrap();
            write_if_changed(&dst, &edit(&src, text));
        }
    }
}

/// Builds `plugin_src` as cdylib `lib<name>.so` in its own workspace under
/// `target/fixtures/<name>` against the given copy of `plugin-api`, with `profile_args`
/// passed to cargo build (e.g. `["--release"]`). Builds are incremental across runs.
pub fn build_plugin(
    name: &str,
    api: &ApiCopy<'_>,
    plugin_src: &str,
    profile_args: &[&str],
) -> PathBuf {
    build_plugins(name, api, &[(name, plugin_src)], profile_args).remove(0)
}

/// Like [`build_plugin`], for several plugin crates `(name, source)` sharing one workspace
/// (and one build of the `plugin-api` copy).
pub fn build_plugins(
    workspace_name: &str,
    api: &ApiCopy<'_>,
    plugins: &[(&str, &str)],
    profile_args: &[&str],
) -> Vec<PathBuf> {
    build(&Workspace {
        name: workspace_name,
        api,
        plugins,
        cargo_args: profile_args,
        ..Workspace::default()
    })
    .plugins
}

/// A fixture workspace: a copy of `plugin-api`, plugin crates, and maybe a copy of the shim.
pub struct Workspace<'a> {
    /// Names the workspace (and its directory under `target/fixtures`).
    pub name: &'a str,
    /// The `plugin-api` copy.
    pub api: &'a ApiCopy<'a>,
    /// Plugin crates: (crate name, `src/lib.rs`).
    pub plugins: &'a [(&'a str, &'a str)],
    /// Also build a copy of the shim (`host/`) with these edits (file relative to `host/`).
    pub shim_edits: Option<&'a [(&'a str, &'a str, &'a str)]>,
    /// Extra arguments to `cargo build` (`--release`, `--config ...`).
    pub cargo_args: &'a [&'a str],
    /// Extra environment for `cargo build` (`RUSTFLAGS`, ...).
    pub env: &'a [(&'a str, &'a str)],
    /// The target directory under `target/fixtures`: builds with other flags need their own,
    /// or cargo rebuilds everything back and forth.
    pub target: &'a str,
    /// Plugin crates of another edition than 2021: (crate name, edition).
    pub editions: &'a [(&'a str, &'a str)],
}

/// The version of this workspace's `plugin-api` (the shim's and the plugins').
pub const API_VERSION: &str = rustshim_plugin_api::abi::ABI_VERSION;

/// The shim's own `plugin-api`, unchanged.
pub const SAME_API: ApiCopy<'static> = ApiCopy {
    version: API_VERSION,
    edits: &[],
};

/// The version after [`API_VERSION`] with the same major and the next minor (`1.2.0` after
/// `1.1.0`): a release that may only add.
pub fn next_minor() -> String {
    let mut parts = API_VERSION
        .split('.')
        .map(|n| n.parse::<u32>().expect("a number"));
    let (major, minor) = (parts.next().unwrap(), parts.next().unwrap());
    format!("{major}.{}.0", minor + 1)
}

impl Default for Workspace<'_> {
    fn default() -> Self {
        Workspace {
            name: "",
            api: &SAME_API,
            plugins: &[],
            shim_edits: None,
            cargo_args: &[],
            env: &[],
            target: "target",
            editions: &[],
        }
    }
}

/// What [`build`] made.
pub struct Built {
    /// The shim copy, if one was asked for.
    pub shim: Option<PathBuf>,
    /// The plugins, in order.
    pub plugins: Vec<PathBuf>,
}

/// Removes what `to` has and `from` no longer has (a file moved since the last copy), so
/// the copy is the source as it is now.
fn remove_stale(from: &Path, to: &Path) {
    let Ok(entries) = std::fs::read_dir(to) else {
        return;
    };
    for entry in entries.flatten() {
        let (src, dst) = (from.join(entry.file_name()), entry.path());
        if entry.file_name() == "target" {
            continue;
        }
        if !src.exists() {
            let _ = std::fs::remove_dir_all(&dst).or_else(|_| std::fs::remove_file(&dst));
        } else if dst.is_dir() {
            remove_stale(&src, &dst);
        }
    }
}

fn copy_with_edits(from: &Path, to: &Path, edits: &[(&str, &str, &str)], version: Option<&str>) {
    remove_stale(from, to);
    for (file, _, _) in edits {
        assert!(
            from.join(file).is_file(),
            "fixture edit names no file: {file}"
        );
    }
    copy_tree(from, to, &|src, mut text| {
        for (file, old, new) in edits {
            if src == from.join(file) {
                assert!(
                    text.contains(old),
                    "fixture edit target not found in {file}: {old}"
                );
                text = text.replacen(old, new, 1);
            }
        }
        if let Some(version) = version {
            if src == from.join("Cargo.toml") {
                text = text.replacen(
                    &format!("version = \"{API_VERSION}\""),
                    &format!("version = \"{version}\""),
                    1,
                );
            }
        }
        text
    });
}

/// Builds a fixture workspace (incrementally across runs).
pub fn build(ws: &Workspace<'_>) -> Built {
    let root = workspace();
    let dir = root.join("target").join("fixtures").join(ws.name);
    // Fixtures share target dirs, and cargo names a path package's artifacts by its path
    // relative to the workspace root: so each fixture's copies get paths of their own.
    let api_rel = format!("api-{}", ws.name);
    let shim_rel = format!("shim-{}", ws.name);
    copy_with_edits(
        &root.join("plugin-api"),
        &dir.join(&api_rel),
        ws.api.edits,
        Some(ws.api.version),
    );
    if let Some(edits) = ws.shim_edits {
        copy_with_edits(&root.join("host"), &dir.join(&shim_rel), edits, None);
    }
    // The workspace's shared settings, without its members.
    let main_manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let shared = &main_manifest[main_manifest
        .find("[workspace.package]")
        .expect("workspace.package")..];
    let shared = shared
        .replace(
            &format!("path = \"plugin-api\", version = \"{API_VERSION}\""),
            &format!("path = \"{api_rel}\", version = \"{}\"", ws.api.version),
        )
        .replace(
            "path = \"plugin-api/macros\"",
            &format!("path = \"{api_rel}/macros\""),
        );
    let mut members: Vec<String> = vec![format!("\"{api_rel}\""), format!("\"{api_rel}/macros\"")];
    if ws.shim_edits.is_some() {
        members.push(format!("\"{shim_rel}\""));
    }
    members.extend(ws.plugins.iter().map(|(name, _)| format!("\"{name}\"")));
    write_if_changed(
        &dir.join("Cargo.toml"),
        &format!(
            "[workspace]\nresolver = \"2\"\nmembers = [{}]\n\n{shared}",
            members.join(", ")
        ),
    );
    for (name, src) in ws.plugins {
        let edition = ws
            .editions
            .iter()
            .find(|(crate_name, _)| crate_name == name)
            .map_or("2021", |(_, edition)| edition);
        write_if_changed(
            &dir.join(name).join("Cargo.toml"),
            &format!(
                "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"{edition}\"\npublish = false\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\nrustshim-plugin-api.workspace = true\n"
            ),
        );
        write_if_changed(&dir.join(name).join("src/lib.rs"), src);
    }
    if !dir.join("Cargo.lock").exists() {
        std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target = root.join("target").join("fixtures").join(ws.target);
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet"])
        .args(ws.cargo_args)
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(&dir);
    cmd.envs(ws.env.iter().copied());
    if ws.shim_edits.is_some() {
        cmd.args(["-p", "nbdkit-rustshim-plugin"]);
    }
    for (name, _) in ws.plugins {
        cmd.args(["-p", name]);
    }
    let out = cmd.output().expect("cargo runs");
    assert!(
        out.status.success(),
        "building fixture {} failed:\n{}",
        ws.name,
        String::from_utf8_lossy(&out.stderr)
    );
    let profile = if ws.cargo_args.contains(&"--release") {
        "release"
    } else {
        "debug"
    };
    Built {
        shim: ws
            .shim_edits
            .map(|_| target.join(profile).join("libnbdkit_rustshim_plugin.so")),
        plugins: ws
            .plugins
            .iter()
            .map(|(name, _)| target.join(profile).join(format!("lib{name}.so")))
            .collect(),
    }
}
