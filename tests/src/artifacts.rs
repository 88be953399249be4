//! The built artifacts: the shim, the workspace's plugins, the test plugin's variants, and the
//! files under `tests/` that tests run or serve.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

/// Where cargo puts debug builds.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
        .join("debug")
}

/// `cargo build --quiet ARGS` in the workspace, with the cargo running the tests; panics with
/// `what` if it fails.
pub fn cargo_build(args: &[&str], what: &str) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet"])
        .args(args)
        .current_dir(workspace())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building {what} failed");
}

/// Builds the shim and every plugin (the workspace's default members) once per test binary,
/// so `cargo test` alone works; a no-op when they are up to date.
fn ensure_built() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| cargo_build(&[], "the shim and plugins"));
}

/// The shim, `libnbdkit_rustshim_plugin.so`.
pub fn shim() -> PathBuf {
    ensure_built();
    target_dir().join("libnbdkit_rustshim_plugin.so")
}

/// A plugin of this workspace by its crate suffix: `plugin("memory")` is
/// `librustshim_memory.so`.
pub fn plugin(name: &str) -> PathBuf {
    ensure_built();
    let path = target_dir().join(format!("librustshim_{name}.so"));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// `plugin=…/librustshim_test.so`: the test plugin, which implements every callback.
pub fn test_plugin() -> String {
    format!("plugin={}", plugin("test").display())
}

/// A variant plugin built as an example of the test plugin crate: `example_plugin("minimal")`.
pub fn example_plugin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        cargo_build(
            &["-p", "rustshim-test", "--examples"],
            "the test plugin's examples",
        )
    });
    target_dir().join("examples").join(format!("lib{name}.so"))
}

/// `plugin=…/examples/libNAME.so`, a variant of the test plugin.
pub fn variant(name: &str) -> String {
    let path = example_plugin(name);
    assert!(path.exists(), "{} was not built", path.display());
    format!("plugin={}", path.display())
}

/// A file in `tests/fixtures/`: the python twins of the test plugin's variants, valgrind's
/// suppressions.
pub fn fixture(name: &str) -> String {
    workspace()
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// A Python client script in `tests/scripts/`.
pub fn script(name: &str) -> PathBuf {
    let path = workspace().join("tests/scripts").join(name);
    assert!(path.is_file(), "no script {}", path.display());
    path
}
