//! `cargo xtask`: the project's developer commands, so building, installing, testing and
//! demonstrating the shim need nothing but cargo (and, for the system packages, root).

mod bench;
mod demo;
mod deps;
mod dev;
mod new_plugin;
mod reload_bench;
mod roots;
mod test;

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::{Parser, Subcommand};

/// Errors are messages for the person at the terminal.
pub type Result<T = ()> = std::result::Result<T, String>;

/// The shim as cargo builds it.
const SHIM: &str = "libnbdkit_rustshim_plugin.so";
/// The shim's name in nbdkit's plugin directory, so `nbdkit rustshim ...` finds it.
const SHIM_INSTALLED: &str = "nbdkit-rustshim-plugin.so";
/// The plugins of this workspace (`librustshim_NAME.so`), in the order they are listed.
const PLUGINS: &[&str] = &["null", "memory", "file", "test"];
/// The plugins worth installing; `test` exists for the integration tests.
const INSTALLED_PLUGINS: &[&str] = &["null", "memory", "file"];

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Developer commands for nbdkit-rustshim"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the system packages (nbdkit, libnbd clients, ...) that are missing
    Deps,
    /// Build the shim and the plugins, and print where they are
    Build {
        /// Build with the release profile
        #[arg(long)]
        release: bool,
    },
    /// Build in release mode and install the shim and plugins into nbdkit's plugin directory
    Install {
        /// Install here instead of nbdkit's plugindir (from `nbdkit --dump-config`)
        #[arg(long, value_name = "DIR")]
        plugindir: Option<PathBuf>,
    },
    /// Check formatting, run clippy, build everything and run all tests
    Test {
        /// Which nbdkit to run the suite against: `system` (the host's), `1.42` (Debian 13's),
        /// `1.48` (Debian forky's) or `all`; newer ones run in Debian roots made on first use
        #[arg(long, value_name = "WHICH", default_value = "system")]
        nbdkit: String,
        /// Passed on to `cargo test`, e.g. `cargo xtask test -- --test memory`
        #[arg(last = true)]
        args: Vec<OsString>,
    },
    /// Make (or check) the Debian roots holding the newer nbdkits: `1.42`, `1.48` or `all`
    Roots {
        /// Which: `1.42`, `1.48` or `all`
        #[arg(default_value = "all")]
        which: String,
    },
    /// Serve a plugin crate with reload=watch and rebuild it whenever its sources change
    Dev {
        /// The plugin crate's directory, e.g. plugins/memory
        dir: PathBuf,
        /// The plugin's own arguments, e.g. size=1G
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        plugin_args: Vec<String>,
    },
    /// Measure what the shim costs against nbdkit's C plugins, the `nbdkit` crate and python;
    /// writes BENCHMARKS.md and benchmarks.svg
    Bench {
        /// A smoke run of a few seconds on the debug build; writes nothing
        #[arg(long)]
        quick: bool,
        /// Only the hot reload latency, on the release build (about half a minute)
        #[arg(long, conflicts_with = "quick")]
        reload: bool,
        /// Only the instruction counts (callgrind, deterministic), on the release build; keeps
        /// the callgrind files in target/bench-callgrind/ for callgrind_annotate; writes nothing else
        #[arg(long, conflicts_with_all = ["quick", "reload"])]
        instructions: bool,
    },
    /// Write a new out-of-tree plugin crate (a RAM disk with a test that runs the real nbdkit)
    NewPlugin {
        /// The crate's name: lowercase letters, digits and '-', e.g. my-disk
        name: String,
        /// The directory to write it in (created; refused if it exists and is not empty)
        #[arg(long, value_name = "DIR")]
        path: PathBuf,
    },
    /// Serve a 1 GiB memory disk through the shim and show real NBD clients using it
    Demo {
        /// Stop after this many seconds instead of serving until Ctrl-C
        #[arg(long = "for", value_name = "SECONDS")]
        seconds: Option<u64>,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Cmd::Deps => deps::ensure(),
        Cmd::Build { release } => build(release),
        Cmd::Install { plugindir } => install(plugindir),
        Cmd::Test { nbdkit, args } => test::test(&nbdkit, &args),
        Cmd::Roots { which } => roots::select(&which).and_then(|servers| {
            servers
                .iter()
                .try_for_each(|server| roots::ensure(server).map(drop))
        }),
        Cmd::Demo { seconds } => demo::demo(seconds),
        Cmd::Bench {
            instructions: true, ..
        } => bench::instructions_only(),
        Cmd::Bench {
            quick,
            reload: true,
            ..
        } => bench::reload_only(quick),
        Cmd::Bench { quick, .. } => bench::bench(quick),
        Cmd::Dev { dir, plugin_args } => dev::dev(&dir, &plugin_args),
        Cmd::NewPlugin { name, path } => new_plugin::new_plugin(&name, &path),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: xtask/ is one of its members.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ is inside the workspace")
        .to_path_buf()
}

/// Where cargo puts the artifacts of a profile.
pub fn target_dir(release: bool) -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace().join(dir),
        None => workspace().join("target"),
    };
    target.join(if release { "release" } else { "debug" })
}

/// `PATH` with `/usr/bin` first: nbdsh runs `python3`, and only Debian's has the `nbd` module
/// (a pyenv or venv python earlier on `PATH` would not).
pub fn path_env() -> OsString {
    let mut path = OsString::from("/usr/bin:/bin");
    if let Some(rest) = std::env::var_os("PATH") {
        path.push(":");
        path.push(rest);
    }
    path
}

/// Cargo itself: the one that runs us, so the same toolchain builds everything. Its directory
/// goes first on `PATH`, before `/usr/bin`, so neither it nor `cargo fmt`/`cargo clippy` pick
/// up a Debian rustc that may be installed there.
pub fn cargo() -> Command {
    let cargo = PathBuf::from(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    let mut path = OsString::new();
    if let Some(toolchain) = cargo.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        path.push(toolchain);
        path.push(":");
    }
    path.push(path_env());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace()).env("PATH", path);
    cmd
}

/// Runs a command to completion, its output going to ours; `what` names it in the error.
pub fn run(what: &str, cmd: &mut Command) -> Result {
    let status = cmd
        .status()
        .map_err(|e| format!("{what}: cannot start {:?}: {e}", cmd.get_program()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

/// Builds the shim and every plugin, returning their paths (shim first).
pub fn build_artifacts(release: bool) -> Result<Vec<PathBuf>> {
    // Without -p or --workspace cargo builds the default members: the shim, the plugin API
    // and the plugins, not the tests or xtask.
    let mut cmd = cargo();
    cmd.arg("build");
    if release {
        cmd.arg("--release");
    }
    run("cargo build", &mut cmd)?;

    let dir = target_dir(release);
    let artifacts: Vec<PathBuf> = std::iter::once(dir.join(SHIM))
        .chain(PLUGINS.iter().map(|name| plugin_path(&dir, name)))
        .collect();
    match artifacts.iter().find(|path| !path.exists()) {
        Some(path) => Err(format!(
            "cargo build succeeded but {} is missing",
            path.display()
        )),
        None => Ok(artifacts),
    }
}

/// `librustshim_NAME.so` in `dir`.
pub fn plugin_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("librustshim_{name}.so"))
}

fn build(release: bool) -> Result {
    let artifacts = build_artifacts(release)?;
    println!("built:");
    for path in artifacts {
        println!("  {}", path.display());
    }
    Ok(())
}

fn install(plugindir: Option<PathBuf>) -> Result {
    deps::ensure()?;
    build_artifacts(true)?;
    let plugindir = match plugindir {
        Some(dir) => dir,
        None => nbdkit_plugindir()?,
    };
    let release = target_dir(true);

    let shim = plugindir.join(SHIM_INSTALLED);
    install_file(&release.join(SHIM), &shim)?;
    println!("installed {}", shim.display());
    // The plugins go in a folder beside the shim, out of the way of nbdkit's own plugins.
    let plugins = plugindir.join("rustshim");
    for name in INSTALLED_PLUGINS {
        let to = plugin_path(&plugins, name);
        install_file(&plugin_path(&release, name), &to)?;
        println!("installed {}", to.display());
    }

    // `nbdkit rustshim` finds the shim only in nbdkit's own plugindir; elsewhere, by path.
    let shim_arg = match nbdkit_plugindir() {
        Ok(dir) if dir == plugindir => "rustshim".to_string(),
        _ => shim.display().to_string(),
    };
    // The shim finds plugins installed beside it by short name.
    println!("try:  nbdkit {shim_arg} plugin=memory size=1G");
    Ok(())
}

/// nbdkit's plugin directory, the `plugindir=` line of `nbdkit --dump-config`.
fn nbdkit_plugindir() -> Result<PathBuf> {
    let out = Command::new("nbdkit")
        .arg("--dump-config")
        .output()
        .map_err(|e| format!("cannot run `nbdkit --dump-config`: {e}"))?;
    if !out.status.success() {
        return Err(format!("`nbdkit --dump-config` failed ({})", out.status));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("plugindir="))
        .map(PathBuf::from)
        .ok_or_else(|| "`nbdkit --dump-config` has no plugindir= line".to_string())
}

/// Copies `from` to `to` by way of a temporary file in the same directory, renamed over `to`.
/// Writing into `to` in place would change the pages of any nbdkit that has it loaded under
/// its feet (and crash it); the rename leaves that process its old, unlinked file.
fn install_file(from: &Path, to: &Path) -> Result {
    let dir = to.parent().expect("an install path has a directory");
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let name = to.file_name().expect("an install path has a file name");
    let mut temp_name = OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".tmp{}", std::process::id()));
    let temp = dir.join(temp_name);

    let copied = fs::copy(from, &temp)
        .and_then(|_| fs::set_permissions(&temp, fs::Permissions::from_mode(0o755)))
        .and_then(|()| fs::rename(&temp, to));
    copied.map_err(|e| {
        let _ = fs::remove_file(&temp);
        format!("cannot install {} as {}: {e}", from.display(), to.display())
    })
}
