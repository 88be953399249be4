//! `cargo xtask`: the project's developer commands, so building, installing, testing and
//! demonstrating the shim need nothing but cargo (and, for the system packages, root).
//!
//! One module per command (`bench/` is a folder of them); `workspace` has the paths and the
//! cargo helpers they share. What the project's commands share with the plugin author's `cargo
//! rustshim` lives in that crate's library: `new-plugin` and `dev` are calls into it, and so are
//! the Debian roots, the system packages and the Ctrl-C handling used here.

mod bench;
mod build;
mod crates;
mod demo;
mod fuzz;
mod install;
mod package;
mod test;
mod try_author;
mod workspace;

use cargo_rustshim::new::Kind;
use cargo_rustshim::{deps, roots};

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Errors are messages for the person at the terminal.
pub type Result<T = ()> = std::result::Result<T, String>;

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
    /// Build in release mode and install the shim and plugins into nbdkit's plugin directory,
    /// and the shim (a copy) and filters into its filter directory
    Install {
        /// Install the plugin shim and plugins here instead of nbdkit's plugindir (from
        /// `nbdkit --dump-config`)
        #[arg(long, value_name = "DIR")]
        plugindir: Option<PathBuf>,
        /// Install the filter shim and filters here instead of nbdkit's filterdir
        #[arg(long, value_name = "DIR")]
        filterdir: Option<PathBuf>,
    },
    /// Check formatting, run clippy, build everything and run all tests
    Test {
        /// Which nbdkit to run the suite against: `system` (the host's), `1.42` (Debian 13's),
        /// `1.48` (Debian forky's) or `all`; newer ones run in Debian roots made on first use
        #[arg(long, value_name = "WHICH", default_value = "system")]
        nbdkit: String,
        /// Passed on to `cargo test`, e.g. `cargo xtask test -- --test plugins memory::`
        #[arg(last = true)]
        args: Vec<OsString>,
    },
    /// Make (or check) the Debian roots: those holding the newer nbdkits (`1.42`, `1.48`), the
    /// fresh Debian 12 and 13 the package is tried in (`package`), or `all`
    Roots {
        /// Which: `1.42`, `1.48`, `package` or `all`
        #[arg(default_value = "all")]
        which: String,
    },
    /// Build the Debian package target/debian/nbdkit-rustshim-plugin_VERSION_ARCH.deb: the
    /// release shim, the example plugins, the man page
    Package,
    /// `cargo package` the crates plugin authors use (plugin-api, its macros, harness), unpack
    /// them and write a config.toml that patches crates.io with them, to build plugin crates
    /// against what would be published
    Crates {
        /// Where to unpack them (default target/crates/; what an earlier run left is replaced)
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Package uncommitted changes too (`cargo package --allow-dirty`)
        #[arg(long)]
        allow_dirty: bool,
    },
    /// Serve a plugin crate with reload=watch and rebuild it whenever its sources change
    /// (`cargo rustshim run` with this checkout's shim)
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
        /// Only the hot reload latency, on the release build (about half a minute); rewrites
        /// only its section of BENCHMARKS.md
        #[arg(long, conflicts_with = "quick")]
        reload: bool,
        /// Only the instruction counts (callgrind, deterministic), on the release build; keeps
        /// the callgrind files in target/bench-callgrind/ for callgrind_annotate; rewrites only
        /// their section of BENCHMARKS.md
        #[arg(long, conflicts_with_all = ["quick", "reload"])]
        instructions: bool,
        /// Only the load times (`nbdkit SHIM plugin=... size=1M --run true`, 40 interleaved
        /// rounds against nbdkit's C null), on the release build and the debug build of memory;
        /// rewrites only their section of BENCHMARKS.md
        #[arg(long, conflicts_with_all = ["quick", "reload", "instructions"])]
        load: bool,
        /// Which nbdkit to measure: `system` (the host's), `1.42` or `1.48` (in the Debian roots
        /// of `cargo xtask test --nbdkit`, whose C plugins are then the ones compared)
        #[arg(long, value_name = "WHICH", default_value = "system")]
        nbdkit: String,
    },
    /// Write a new out-of-tree plugin crate (a RAM disk with a test that runs the real nbdkit),
    /// or with --filter a filter crate, that takes plugin-api and the harness from this checkout
    /// (`cargo rustshim new --api-path` this checkout)
    NewPlugin {
        /// The crate's name: lowercase letters, digits and '-', e.g. my-disk
        name: String,
        /// The directory to write it in (created; refused if it exists and is not empty)
        #[arg(long, value_name = "DIR")]
        path: PathBuf,
        /// Write a filter crate (an nbdkit filter that inverts the data) instead of a plugin
        #[arg(long)]
        filter: bool,
    },
    /// Many one-byte mutations of a plugin file, each served or refused cleanly (the suite runs
    /// a few hundred); optionally the reload race with more tries
    Fuzz {
        /// How many mutated files
        #[arg(long, default_value_t = 5000)]
        cases: u32,
        /// Where the mutations start (any number: each seed is another corpus)
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Also run the reload race with this many tries
        #[arg(long, value_name = "TRIES")]
        race: Option<u32>,
    },
    /// An author's first steps from nothing: `cargo install --path cargo-rustshim`, then in an
    /// empty directory `cargo rustshim new`, `doctor` and `test --nbdkit all`, against the
    /// installed shim and the crates as crates.io would serve them
    TryAuthor,
    /// Serve a 1 GiB memory disk through the shim and show real NBD clients using it
    Demo {
        /// Stop after this many seconds instead of serving until Ctrl-C
        #[arg(long = "for", value_name = "SECONDS")]
        seconds: Option<u64>,
    },
}

/// `cargo xtask dev DIR`: `cargo rustshim run` on the crate in DIR, with this checkout's shim.
fn dev(dir: &std::path::Path, plugin_args: &[String]) -> Result {
    workspace::run(
        "build the shim",
        workspace::cargo().args(["build", "--quiet", "-p", "nbdkit-rustshim-plugin"]),
    )?;
    let shim = workspace::target_dir(false).join(workspace::SHIM);
    cargo_rustshim::run::run(Some(&dir.join("Cargo.toml")), plugin_args, Some(shim), None)
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Cmd::Deps => deps::ensure(),
        Cmd::Build { release } => build::build(release),
        Cmd::Install {
            plugindir,
            filterdir,
        } => install::install(plugindir, filterdir),
        Cmd::Test { nbdkit, args } => test::test(&nbdkit, &args),
        Cmd::Roots { which } => roots::make_roots(&which),
        Cmd::Package => package::package(),
        Cmd::Crates { out, allow_dirty } => crates::crates(out, allow_dirty),
        Cmd::Demo { seconds } => demo::demo(seconds),
        Cmd::TryAuthor => try_author::try_author(),
        Cmd::Fuzz { cases, seed, race } => fuzz::fuzz(cases, seed, race),
        Cmd::Bench {
            quick,
            reload,
            instructions,
            load,
            nbdkit,
        } => {
            // The command as the sections of BENCHMARKS.md name it.
            let mut command = "cargo xtask bench".to_string();
            for (set, flag) in [
                (quick, " --quick"),
                (reload, " --reload"),
                (instructions, " --instructions"),
                (load, " --load"),
            ] {
                if set {
                    command.push_str(flag);
                }
            }
            if nbdkit != "system" {
                command.push_str(&format!(" --nbdkit {nbdkit}"));
            }
            roots::enter_for_this_process(&nbdkit).and_then(|()| {
                if instructions {
                    bench::instructions_only(&command)
                } else if load {
                    bench::load_only(&command)
                } else if reload {
                    bench::reload_only(&command)
                } else {
                    bench::bench(quick, &command)
                }
            })
        }
        Cmd::Dev { dir, plugin_args } => dev(&dir, &plugin_args),
        Cmd::NewPlugin { name, path, filter } => {
            let kind = if filter { Kind::Filter } else { Kind::Plugin };
            // The crate takes plugin-api and the harness from this checkout.
            cargo_rustshim::new::new_crate(&name, &path, kind, Some(&workspace::workspace()))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: error: {message}");
            ExitCode::FAILURE
        }
    }
}
