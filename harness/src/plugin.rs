//! The plugin under test: the cdylib of the crate whose tests are running, built by cargo.
//!
//! `cargo test` does not build the cdylib of a `crate-type = ["cdylib"]` crate (it builds the
//! library only as the unit-test binary), and after an edit a cdylib from an earlier
//! `cargo build` is stale. So [`PluginCrate::build`] runs `cargo build --lib` itself, once per
//! test process: a no-op when the cdylib is up to date, and cargo, not file times, decides.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use crate::error::{HarnessError, Result};

/// The cdylib of the plugin crate whose tests are running, built if needed: a `PathBuf` to
/// give [`Server::start`](crate::Server::start). Panics with cargo's messages if it does not
/// build.
///
/// It expands in the calling crate to a [`PluginCrate`] for that crate's `CARGO_MANIFEST_DIR`,
/// with the release profile if the test is built without debug assertions
/// (`cargo test --release`) and, in integration tests (`tests/*.rs`), the very target directory
/// the test was built in (from `CARGO_TARGET_TMPDIR`); then [`PluginCrate::build`].
///
/// ```no_run
/// let plugin = rustshim_harness::plugin_path!();
/// let server = rustshim_harness::Server::start(&plugin, &["size=1M"]).unwrap();
/// ```
#[macro_export]
macro_rules! plugin_path {
    () => {
        match $crate::PluginCrate::new(::core::env!("CARGO_MANIFEST_DIR"))
            .release(!::core::cfg!(debug_assertions))
            .cargo_target_tmpdir(::core::option_env!("CARGO_TARGET_TMPDIR"))
            .build()
        {
            ::core::result::Result::Ok(path) => path,
            ::core::result::Result::Err(error) => ::core::panic!("{}", error),
        }
    };
}

/// A plugin crate to build with cargo for its cdylib: what [`plugin_path!`] uses, for when the
/// plugin under test is another crate, or needs features.
#[derive(Debug, Clone)]
pub struct PluginCrate {
    manifest_dir: PathBuf,
    release: bool,
    target_dir: Option<PathBuf>,
    cargo_args: Vec<String>,
}

impl PluginCrate {
    /// The crate in `manifest_dir` (the directory of its `Cargo.toml`), debug profile, default
    /// features, cargo's usual target directory.
    pub fn new(manifest_dir: impl Into<PathBuf>) -> PluginCrate {
        PluginCrate {
            manifest_dir: manifest_dir.into(),
            release: false,
            target_dir: None,
            cargo_args: Vec::new(),
        }
    }

    /// Builds with the release profile (`--release`) or not.
    pub fn release(mut self, release: bool) -> PluginCrate {
        self.release = release;
        self
    }

    /// Builds in this target directory (`CARGO_TARGET_DIR`). Without it cargo picks its usual
    /// one (`$CARGO_TARGET_DIR`, `build.target-dir`, or the workspace's `target/`).
    pub fn target_dir(mut self, dir: impl Into<PathBuf>) -> PluginCrate {
        self.target_dir = Some(dir.into());
        self
    }

    /// Builds in the target directory whose `tmp/` is `tmpdir`: the value cargo gives
    /// integration tests at compile time as `CARGO_TARGET_TMPDIR`, so the plugin lands beside
    /// the test, however that directory was chosen. `None` changes nothing.
    pub fn cargo_target_tmpdir(self, tmpdir: Option<&str>) -> PluginCrate {
        match tmpdir.and_then(|tmp| Path::new(tmp).parent()) {
            Some(target) => self.target_dir(target),
            None => self,
        }
    }

    /// Adds arguments to `cargo build`, e.g. `["--features", "extra"]`.
    pub fn cargo_args<I, S>(mut self, args: I) -> PluginCrate
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.cargo_args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Runs `cargo build --lib` for the crate (once per process for the same settings; cargo
    /// itself skips the work when nothing changed) and returns the path of its cdylib. Fails
    /// with cargo's messages if it does not build, or if the crate builds no cdylib.
    pub fn build(&self) -> Result<PathBuf> {
        static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
        let key = format!("{self:?}");
        // Held while building: concurrent tests wait for one build instead of racing cargo.
        let mut built = BUILT
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(path) = built.get(&key) {
            return Ok(path.clone());
        }
        let path = self.cargo_build()?;
        built.insert(key, path.clone());
        Ok(path)
    }

    fn cargo_build(&self) -> Result<PathBuf> {
        let manifest = self.manifest_dir.join("Cargo.toml");
        // The cargo running the tests (it sets $CARGO), so the same toolchain builds the plugin.
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(&cargo);
        cmd.args(["build", "--lib", "--message-format=json-render-diagnostics"])
            .arg("--manifest-path")
            .arg(&manifest)
            .current_dir(&self.manifest_dir);
        if self.release {
            cmd.arg("--release");
        }
        cmd.args(&self.cargo_args);
        if let Some(dir) = &self.target_dir {
            cmd.env("CARGO_TARGET_DIR", dir);
        }
        let out = cmd.output().map_err(|e| {
            HarnessError::Build(format!(
                "cannot run {} to build the plugin: {e}",
                Path::new(&cargo).display()
            ))
        })?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            return Err(HarnessError::Build(format!(
                "building the plugin {} failed ({}):\n{stderr}",
                manifest.display(),
                out.status
            )));
        }
        let wanted = manifest.canonicalize().unwrap_or(manifest.clone());
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|line| {
                json_strings(line, "reason").first().map(String::as_str)
                    == Some("compiler-artifact")
            })
            .filter(|line| {
                json_strings(line, "crate_types")
                    .iter()
                    .any(|t| t == "cdylib")
            })
            .filter(|line| {
                json_strings(line, "manifest_path")
                    .first()
                    .is_some_and(|path| {
                        Path::new(path).canonicalize().ok().as_ref() == Some(&wanted)
                    })
            })
            .find_map(|line| {
                json_strings(line, "filenames")
                    .into_iter()
                    .find(|f| f.ends_with(".so") || f.ends_with(".dylib"))
                    .map(PathBuf::from)
            })
            .ok_or_else(|| {
                HarnessError::Build(format!(
                    "{} builds no cdylib: a plugin crate needs `[lib] crate-type = [\"cdylib\"]`",
                    manifest.display()
                ))
            })
    }
}

/// The string, or the strings of the array, that follow `"key":` in one line of cargo's JSON
/// messages (enough JSON for them; no dependency).
fn json_strings(line: &str, key: &str) -> Vec<String> {
    let Some(at) = line.find(&format!("\"{key}\":")) else {
        return Vec::new();
    };
    let mut chars = line[at + key.len() + 3..].chars().peekable();
    let mut strings = Vec::new();
    let in_array = chars.peek() == Some(&'[');
    if in_array {
        chars.next();
    }
    loop {
        match chars.next() {
            Some('"') => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return strings,
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some('r') => s.push('\r'),
                            Some('b') => s.push('\u{8}'),
                            Some('f') => s.push('\u{c}'),
                            Some('u') => {
                                let hex: String = chars.by_ref().take(4).collect();
                                let code = u32::from_str_radix(&hex, 16).unwrap_or(0xfffd);
                                s.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                            }
                            Some(c) => s.push(c),
                            None => return strings,
                        },
                        Some(c) => s.push(c),
                    }
                }
                strings.push(s);
                if !in_array {
                    return strings;
                }
            }
            Some(',' | ' ') if in_array => {}
            _ => return strings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::json_strings;

    #[test]
    fn reads_strings_and_arrays_from_cargo_messages() {
        let line = r#"{"reason":"compiler-artifact","manifest_path":"/a \"b\"/Cargo.toml","target":{"kind":["cdylib"],"crate_types":["rlib","cdylib"]},"filenames":["/t/libx.rlib","/t/libx.so"],"fresh":true}"#;
        assert_eq!(json_strings(line, "reason"), ["compiler-artifact"]);
        assert_eq!(json_strings(line, "manifest_path"), ["/a \"b\"/Cargo.toml"]);
        assert_eq!(json_strings(line, "crate_types"), ["rlib", "cdylib"]);
        assert_eq!(
            json_strings(line, "filenames"),
            ["/t/libx.rlib", "/t/libx.so"]
        );
        assert!(json_strings(line, "fresh").is_empty());
        assert!(json_strings(line, "missing").is_empty());
    }
}
