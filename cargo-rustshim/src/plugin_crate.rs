//! The crate `cargo rustshim` works on: found from the current directory as cargo finds it, read
//! with `cargo metadata`, built with `cargo build`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::cmd::{cargo, output};
use crate::new::Kind;
use crate::Result;

/// A plugin or filter crate.
#[derive(Debug)]
pub struct PluginCrate {
    /// Its `Cargo.toml`.
    pub manifest: PathBuf,
    /// The package's name and version.
    pub name: String,
    pub version: String,
    /// Its library's name (`my_disk` for `my-disk`): the build is `lib{lib}.so`.
    pub lib: String,
    /// `[package.metadata.rustshim] kind`, a plugin if not said.
    pub kind: Kind,
    /// The version of `rustshim-plugin-api` it resolves to, if it depends on it.
    pub api_version: Option<String>,
    /// The package's `description`, if any.
    pub description: Option<String>,
    /// The package's `license`, if any.
    pub license: Option<String>,
    /// Where cargo puts its builds (`target/`, or `$CARGO_TARGET_DIR`).
    pub target_dir: PathBuf,
}

impl PluginCrate {
    /// The crate whose `Cargo.toml` is `manifest`, or the one cargo finds from the current
    /// directory. Resolves its dependencies (as `cargo build` would) to learn the API version.
    pub fn find(manifest: Option<&Path>) -> Result<PluginCrate> {
        let mut cmd = cargo();
        cmd.args(["metadata", "--format-version=1"]);
        if let Some(manifest) = manifest {
            cmd.arg("--manifest-path").arg(manifest);
        }
        let text = output(
            "cargo metadata (is this a plugin crate's directory?)",
            &mut cmd,
        )?;
        let metadata: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("cargo metadata: {e}"))?;
        let root = metadata["resolve"]["root"]
            .as_str()
            .ok_or("this is a workspace, not a plugin crate: run cargo rustshim in the plugin crate's directory")?;
        let packages = metadata["packages"].as_array().cloned().unwrap_or_default();
        let package = packages
            .iter()
            .find(|p| p["id"] == root)
            .ok_or("cargo metadata has no root package")?;
        let text_of = |value: &serde_json::Value| value.as_str().map(str::to_string);
        let manifest = PathBuf::from(text_of(&package["manifest_path"]).unwrap_or_default());
        let cdylib = package["targets"].as_array().and_then(|targets| {
            targets.iter().find(|t| {
                t["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "cdylib"))
            })
        });
        let Some(cdylib) = cdylib else {
            return Err(format!(
                "{} builds no cdylib: nbdkit loads plugins as shared libraries, so add \
                 [lib] crate-type = [\"cdylib\"]",
                manifest.display()
            ));
        };
        let kind = match package["metadata"]["rustshim"]["kind"].as_str() {
            None | Some("plugin") => Kind::Plugin,
            Some("filter") => Kind::Filter,
            Some(other) => {
                return Err(format!(
                "{}: [package.metadata.rustshim] kind = \"{other}\": not \"plugin\" or \"filter\"",
                manifest.display()
            ))
            }
        };
        // What the root depends on, resolved: the version its plugin-api is.
        let dependencies: Vec<&str> = metadata["resolve"]["nodes"]
            .as_array()
            .and_then(|nodes| nodes.iter().find(|n| n["id"] == root))
            .and_then(|node| node["dependencies"].as_array())
            .map(|deps| deps.iter().filter_map(|d| d.as_str()).collect())
            .unwrap_or_default();
        let api_version = packages
            .iter()
            .filter(|p| p["name"] == "rustshim-plugin-api")
            .find(|p| {
                p["id"]
                    .as_str()
                    .is_some_and(|id| dependencies.contains(&id))
            })
            .and_then(|p| text_of(&p["version"]));
        Ok(PluginCrate {
            name: text_of(&package["name"]).unwrap_or_default(),
            version: text_of(&package["version"]).unwrap_or_default(),
            lib: text_of(&cdylib["name"]).unwrap_or_default(),
            kind,
            api_version,
            description: text_of(&package["description"]),
            license: text_of(&package["license"]),
            target_dir: PathBuf::from(text_of(&metadata["target_directory"]).unwrap_or_default()),
            manifest,
        })
    }

    /// The crate's directory.
    pub fn dir(&self) -> &Path {
        self.manifest.parent().unwrap_or(Path::new("."))
    }

    /// Its debug build, where `cargo build` puts it (it may not exist yet).
    pub fn debug_build(&self) -> PathBuf {
        self.target_dir
            .join("debug")
            .join(format!("lib{}.so", self.lib))
    }

    /// Builds the crate (`release` or debug) and returns its cdylib, or `None` if it does not
    /// compile (cargo's messages were shown).
    pub fn build(&self, release: bool) -> Result<Option<PathBuf>> {
        let mut cmd = cargo();
        cmd.args([
            "build",
            "--lib",
            "--message-format=json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(&self.manifest)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        if release {
            cmd.arg("--release");
        }
        let built = cmd.output().map_err(|e| format!("cannot run cargo: {e}"))?;
        if !built.status.success() {
            return Ok(None);
        }
        let stdout = String::from_utf8_lossy(&built.stdout);
        let cdylib = stdout
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|m| m["reason"] == "compiler-artifact")
            .filter(|m| m["manifest_path"].as_str().map(Path::new) == Some(&self.manifest))
            .find_map(|m| {
                m["filenames"]
                    .as_array()?
                    .iter()
                    .find_map(|f| f.as_str().filter(|f| f.ends_with(".so")).map(PathBuf::from))
            });
        cdylib.map(Some).ok_or_else(|| {
            format!(
                "cargo built {} but named no .so for it",
                self.manifest.display()
            )
        })
    }
}
