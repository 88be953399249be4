//! `cargo xtask bench`: what the shim costs. The real nbdkit serves the same workloads through
//! the shim and through what a user would otherwise run (nbdkit's own C plugins, a plugin
//! written natively with the `nbdkit` crate, nbdkit's python plugin), fio drives them over a
//! Unix socket, and the report goes to the terminal, BENCHMARKS.md and benchmarks.svg.
//!
//! The machine this runs on is small and shared, so every comparison is interleaved (A B, B A,
//! A B, ...: both sides see the same background load), reported as the median with its range,
//! and judged by the median of the per-pair ratios. Instructions per request, counted by
//! callgrind, are the one figure that noise cannot touch.
//!
//! `--quick` is a smoke run of a few seconds (one comparison, two workloads, two pairs of 1 s
//! runs, on the debug build that `cargo test` has already made); it writes no files.
//!
//! The parts: `matrix` (what is compared, and the run's settings), `env` (the scratch directory
//! and each server's command line), `server` (nbdkit in the background), `measure` (one
//! comparison, interleaved), `fio`, `nbd` (a minimal client), `callgrind`, `procfs`,
//! `placement` (CPUs), `stats`, `machine`, `report` (tables, targets, BENCHMARKS.md, the chart)
//! `reload` (hot reload latency), `load` (how long nbdkit takes to load a plugin and exit) and
//! `sections` (BENCHMARKS.md's sections, each with the command and commit that wrote it).

mod callgrind;
mod env;
mod fio;
mod load;
mod machine;
mod matrix;
mod measure;
mod nbd;
mod placement;
mod procfs;
mod reload;
mod report;
mod sections;
mod server;
mod stats;

use std::fs;
use std::path::Path;
use std::time::Instant;

use callgrind::{count_instructions, keep_files, CALLGRIND_KINDS};
use env::{Env, CRATE_PACKAGE};
use machine::{loadavg, Machine};
use matrix::{Kind, Settings};
use measure::compare;
use reload::reload_section;
use report::Report;
use sections::{write_section, Stamp, BENCHMARKS, CHART};

use crate::deps;
use crate::workspace::{cargo, run, target_dir, workspace};
use cargo_rustshim::signals::{install_stop_handlers, stopped};

type Result<T = ()> = crate::Result<T>;

pub fn bench(quick: bool, command: &str) -> Result {
    let started = Instant::now();
    let settings = Settings::new(quick);
    deps::ensure()?;
    // The smoke run uses the debug build that `cargo test` has made already (a release build
    // from scratch takes minutes here); the figures are only worth reading from a full run.
    let release = !quick;
    build(release, &settings)?;
    build_for_load(release)?;
    install_stop_handlers();
    let env = Env::new(release, &settings)?;
    let machine = Machine::probe();
    let stamp = Stamp::new(command.to_string(), &machine);

    let mut cells = Vec::new();
    let mut resources = Vec::new();
    for &comparison in &settings.comparisons {
        let (cmp_cells, res) = compare(&env, &settings, comparison)?;
        cells.extend(cmp_cells);
        resources.push(res);
    }
    let instructions = if quick {
        None
    } else {
        Some(count_instructions(&env)?)
    };
    let load_times = load::measure(
        load::loaders(&load::shim(release), release),
        if quick { 2 } else { load::ROUNDS },
    )?;

    let reload = reload_section(release, if quick { 2 } else { 10 }, &stamp)?;

    let report = Report {
        settings: &settings,
        stamp: &stamp,
        env: &env,
        machine,
        load_end: loadavg(),
        cells,
        resources,
        instructions,
        elapsed: started.elapsed(),
    };
    println!();
    println!("{}", report.throughput_table());
    println!("{}", report.resources_table());
    if let Some(table) = report.instructions_table() {
        println!("{table}");
    }
    println!("{}", report.targets());
    println!("\n{}", load_times.section(&stamp, &report.machine)?);
    println!("{reload}");
    if quick {
        println!(
            "(--quick: a smoke run on the debug build, {} s; {BENCHMARKS} and {CHART} are left as they are)",
            report.elapsed.as_secs()
        );
        return Ok(());
    }
    let root = workspace();
    write_file(
        &root.join(BENCHMARKS),
        &format!(
            "{}\n{reload}",
            report.markdown(Some((&load_times, &report.machine)))?
        ),
    )?;
    write_file(&root.join(CHART), &report.svg())?;
    println!(
        "wrote {BENCHMARKS} and {CHART} ({} min {} s)",
        report.elapsed.as_secs() / 60,
        report.elapsed.as_secs() % 60
    );
    Ok(())
}

/// `cargo xtask bench --instructions`: only the callgrind counts, on the release build; rewrites
/// their section of BENCHMARKS.md. The callgrind files are kept in `target/bench-callgrind/` so
/// that `callgrind_annotate` can say which functions a difference is in.
pub fn instructions_only(command: &str) -> Result {
    let started = Instant::now();
    let mut settings = Settings::new(false);
    // The callgrind servers only: no python script, no disk image.
    settings
        .comparisons
        .retain(|c| CALLGRIND_KINDS.contains(&c.shim) && CALLGRIND_KINDS.contains(&c.other));
    deps::ensure()?;
    build(true, &settings)?;
    install_stop_handlers();
    let env = Env::new(true, &settings)?;
    let machine = Machine::probe();
    let stamp = Stamp::new(command.to_string(), &machine);
    let instructions = count_instructions(&env)?;
    let kept = target_dir(true).with_file_name("bench-callgrind");
    keep_files(&env, &kept)?;
    let report = Report {
        settings: &settings,
        stamp: &stamp,
        env: &env,
        machine,
        load_end: loadavg(),
        cells: Vec::new(),
        resources: Vec::new(),
        instructions: Some(instructions),
        elapsed: started.elapsed(),
    };
    let section = report
        .instructions_section()
        .expect("the instructions were counted");
    println!("\n{section}");
    println!(
        "callgrind files (the dump of each counted run is *.out.1): {}",
        kept.display()
    );
    write_section(&section)
}

/// `cargo xtask bench --load`: only the load times, on the release build (and the debug build
/// of `memory`); rewrites their section of BENCHMARKS.md.
pub fn load_only(command: &str) -> Result {
    deps::ensure()?;
    build_for_load(true)?;
    install_stop_handlers();
    let machine = Machine::probe();
    let stamp = Stamp::new(command.to_string(), &machine);
    let times = load::measure(load::loaders(&load::shim(true), true), load::ROUNDS)?;
    let section = times.section(&stamp, &machine)?;
    println!("\n{section}");
    write_section(&section)
}

/// `cargo xtask bench --reload`: only the reload latency, on the release build; rewrites its
/// section of BENCHMARKS.md.
pub fn reload_only(command: &str) -> Result {
    deps::ensure()?;
    let stamp = Stamp::new(command.to_string(), &Machine::probe());
    let section = reload_section(true, 10, &stamp)?;
    println!("{section}");
    write_section(&section)
}

/// What the load times load: the shim and `null` in the profile of the run, and the debug
/// build of `memory`.
fn build_for_load(release: bool) -> Result {
    let mut cmd = cargo();
    cmd.args([
        "build",
        "-p",
        "nbdkit-rustshim-plugin",
        "-p",
        "rustshim-null",
    ]);
    if release {
        cmd.arg("--release");
    }
    run(
        "cargo build -p nbdkit-rustshim-plugin -p rustshim-null",
        &mut cmd,
    )?;
    run(
        "cargo build -p rustshim-memory",
        cargo().args(["build", "-p", "rustshim-memory"]),
    )
}

/// Builds the shim and the plugins the comparisons use, and only those (the other members may
/// be half-edited while someone measures).
fn build(release: bool, settings: &Settings) -> Result {
    let mut packages = vec!["nbdkit-rustshim-plugin"];
    for (kind, package) in [
        (Kind::ShimNull, "rustshim-null"),
        (Kind::ShimMemory, "rustshim-memory"),
        (Kind::ShimFile, "rustshim-file"),
        (Kind::Crate, CRATE_PACKAGE),
        (Kind::NullRustFilter, "rustshim-filter-passthrough"),
    ] {
        if settings.uses(kind) {
            packages.push(package);
        }
    }
    let mut cmd = cargo();
    cmd.arg("build");
    if release {
        cmd.arg("--release");
    }
    for package in &packages {
        cmd.args(["-p", package]);
    }
    run(
        &format!("cargo build -p {}", packages.join(" -p ")),
        &mut cmd,
    )
}

/// Writes a file of the report (or the python script), naming it in the error.
pub fn write_file(path: &Path, text: &str) -> Result {
    fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// An error once a stop signal (Ctrl-C) has arrived: the loops check it between runs.
pub fn interrupted() -> Result {
    if stopped() {
        Err("interrupted".into())
    } else {
        Ok(())
    }
}
