//! `cargo rustshim`: cargo runs `cargo-rustshim rustshim ARGS` for it. Each command is a module
//! of the library (see its top-level docs).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use cargo_rustshim::new::Kind;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo", bin_name = "cargo")]
enum CargoCli {
    /// Write, serve, test and package nbdkit plugins and filters written in Rust
    #[command(version)]
    Rustshim(Cli),
}

#[derive(Args)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// The crate to work on.
#[derive(Args)]
struct Manifest {
    /// The crate's Cargo.toml (default: the one cargo finds from the current directory)
    #[arg(long, value_name = "PATH")]
    manifest_path: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a new plugin crate (a RAM disk with a test that runs the real nbdkit), or with
    /// --filter a filter crate, that builds, serves and tests as it is
    New {
        /// The crate's name: lowercase letters, digits and '-', e.g. my-disk
        name: String,
        /// Write a filter crate (it inverts the data) instead of a plugin
        #[arg(long)]
        filter: bool,
        /// The directory to write it in (default: NAME; created; refused if not empty)
        #[arg(long, value_name = "DIR")]
        path: Option<PathBuf>,
        /// Take rustshim-plugin-api and rustshim-harness from here instead of crates.io (a
        /// [patch.crates-io] table): an nbdkit-rustshim checkout, or the directory of unpacked
        /// crates `cargo xtask crates` writes
        #[arg(long, value_name = "DIR")]
        api_path: Option<PathBuf>,
    },
    /// Build the crate and serve it with reload=watch, rebuilding on every source change; prints
    /// the URI
    Run {
        #[command(flatten)]
        manifest: Manifest,
        /// Serve through this shim instead of the installed one
        #[arg(long, value_name = "PATH")]
        shim: Option<PathBuf>,
        /// A filter crate: the Rust plugin it is served in front of (default: memory, with
        /// size=1G unless ARGS give size=)
        #[arg(long, value_name = "NAME|PATH")]
        plugin: Option<String>,
        /// How long a reload of a plugin with HAND_OVER_AT_RETIRE waits for the old build's
        /// connections to close before it is refused (RUSTSHIM_RETIRE_LIMIT; default 30)
        #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(0..=86400))]
        retire_limit: Option<u32>,
        /// At each good build, stop nbdkit and start it again on the same URI instead of
        /// reloading it: open connections are closed, and a memory disk starts empty
        #[arg(long)]
        restart: bool,
        /// The plugin's (or filter's) own KEY=VALUE arguments, e.g. size=1G
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run the crate's tests against each nbdkit asked for
    Test {
        #[command(flatten)]
        manifest: Manifest,
        /// `system` (the installed nbdkit), `1.42` (Debian 13's), `1.48` (Debian forky's) or
        /// `all`; the newer ones run in Debian roots made on first use (as root)
        #[arg(long, value_name = "WHICH", default_value = "system")]
        nbdkit: String,
        /// Passed on to `cargo test`, e.g. `cargo rustshim test -- --test serve`
        #[arg(last = true)]
        args: Vec<OsString>,
    },
    /// Build target/debian/nbdkit-plugin-NAME_VERSION_ARCH.deb (a filter: nbdkit-filter-NAME):
    /// the plugin installed beside the shim so that
    /// `nbdkit NAME` serves it (a filter: `filter=NAME` finds it)
    Package {
        #[command(flatten)]
        manifest: Manifest,
    },
    /// Check nbdkit, the shim and its ABI version, the clients, and the crate against them;
    /// each problem with the command that fixes it
    Doctor {
        #[command(flatten)]
        manifest: Manifest,
    },
}

fn main() -> ExitCode {
    let CargoCli::Rustshim(cli) = CargoCli::parse();
    let result = match cli.command {
        Cmd::New {
            name,
            filter,
            path,
            api_path,
        } => {
            let kind = if filter { Kind::Filter } else { Kind::Plugin };
            let path = path.unwrap_or_else(|| PathBuf::from(&name));
            cargo_rustshim::new::new_crate(&name, &path, kind, api_path.as_deref())
        }
        Cmd::Run {
            manifest,
            shim,
            plugin,
            retire_limit,
            restart,
            args,
        } => cargo_rustshim::run::run_with(
            manifest.manifest_path.as_deref(),
            &args,
            shim,
            plugin.as_deref(),
            &cargo_rustshim::run::RunOptions {
                retire_limit,
                restart,
            },
        ),
        Cmd::Test {
            manifest,
            nbdkit,
            args,
        } => cargo_rustshim::test::test(manifest.manifest_path.as_deref(), &nbdkit, &args),
        Cmd::Package { manifest } => {
            cargo_rustshim::package::package(manifest.manifest_path.as_deref()).map(drop)
        }
        Cmd::Doctor { manifest } => {
            cargo_rustshim::doctor::doctor(manifest.manifest_path.as_deref())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("cargo rustshim: error: {message}");
            ExitCode::FAILURE
        }
    }
}
