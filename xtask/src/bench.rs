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

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::deps;
use crate::signals::{install_stop_handlers, stopped};
use crate::workspace::{cargo, path_env, plugin_path, run, target_dir, workspace, SHIM};

type Result<T = ()> = crate::Result<T>;

/// The size of every disk.
const SIZE: &str = "1G";
const SIZE_BYTES: u64 = 1 << 30;
/// The bench-only crate: a RAM disk written with the `nbdkit` crate.
const CRATE_PACKAGE: &str = "nbdkit-crate-ramdisk";
const CRATE_PLUGIN: &str = "libnbdkit_crate_ramdisk.so";
/// Reads before callgrind's counters are zeroed, and reads counted after.
const CALLGRIND_WARMUP: u64 = 1_000;
const CALLGRIND_READS: u64 = 20_000;
/// The reads under callgrind cycle over this much of the disk, written first (so that the RAM
/// disks read allocated pages, as in the fio runs).
const CALLGRIND_REGION: u64 = 16 << 20;
/// The servers counted by callgrind.
const CALLGRIND_KINDS: [Kind; 5] = [
    Kind::CNull,
    Kind::ShimNull,
    Kind::CMemory,
    Kind::ShimMemory,
    Kind::Crate,
];

/// nbdkit's python plugin serving a RAM disk, as a python author would write one.
const PYTHON_RAMDISK: &str = r#"# A RAM disk for nbdkit's python plugin (written by `cargo xtask bench`).
import nbdkit

API_VERSION = 2
size = 0
disk = None
view = None


def config(key, value):
    global size
    if key == "size":
        size = nbdkit.parse_size(value)
    else:
        raise RuntimeError("unknown parameter " + key)


def config_complete():
    global disk, view
    disk = bytearray(size)
    view = memoryview(disk)


def thread_model():
    return nbdkit.THREAD_MODEL_PARALLEL


def open(readonly):
    return 1


def get_size(h):
    return size


def can_multi_conn(h):
    return True


def pread(h, buf, offset, flags):
    buf[:] = view[offset:offset + len(buf)]


def pwrite(h, buf, offset, flags):
    view[offset:offset + len(buf)] = buf


def flush(h, flags):
    pass
"#;

// ---- What is compared ----

/// One way of serving a disk.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    CNull,
    ShimNull,
    CMemory,
    ShimMemory,
    CFile,
    ShimFile,
    Crate,
    Python,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::CNull => "C null",
            Kind::ShimNull => "rustshim null",
            Kind::CMemory => "C memory",
            Kind::ShimMemory => "rustshim memory",
            Kind::CFile => "C file",
            Kind::ShimFile => "rustshim file",
            Kind::Crate => "nbdkit-crate ramdisk",
            Kind::Python => "python ramdisk",
        }
    }

    /// A disk that keeps what is written: written whole before measuring, so that reads hit
    /// allocated pages.
    fn keeps_data(self) -> bool {
        matches!(
            self,
            Kind::CMemory | Kind::ShimMemory | Kind::Crate | Kind::Python
        )
    }
}

/// What a comparison must show (nothing is asserted: the report says met or missed).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    /// A C twin: IOPS and bandwidth ≥ 0.99×, server CPU per request ≤ 1.03×.
    Twin,
    /// The native `nbdkit` crate plugin: at least as fast (IOPS and bandwidth ≥ 1.00×).
    AtLeastAsFast,
    /// nbdkit's python plugin: ≥ 3.5× its 4K random-read IOPS.
    Python,
    /// Shown for information.
    None,
}

const TWIN_MIN: f64 = 0.99;
const TWIN_CPU_MAX: f64 = 1.03;
const PYTHON_MIN: f64 = 3.5;
const RSS_OVERHEAD_MAX_KIB: i64 = 4 * 1024;

struct Comparison {
    /// Short name, to find it.
    key: &'static str,
    /// What rustshim is compared with, as the tables and the chart say it.
    name: &'static str,
    shim: Kind,
    other: Kind,
    target: Target,
}

const COMPARISONS: &[Comparison] = &[
    // The noise floor: two identical servers, measured exactly as the real comparisons are.
    // Whatever their ratios stray from 1.000 is what the machine's load does on its own.
    Comparison {
        key: "control",
        name: "C null (A/A control: C null vs C null)",
        shim: Kind::CNull,
        other: Kind::CNull,
        target: Target::None,
    },
    Comparison {
        key: "null",
        name: "C null",
        shim: Kind::ShimNull,
        other: Kind::CNull,
        target: Target::Twin,
    },
    Comparison {
        key: "memory",
        name: "C memory",
        shim: Kind::ShimMemory,
        other: Kind::CMemory,
        target: Target::Twin,
    },
    Comparison {
        key: "file",
        name: "C file",
        shim: Kind::ShimFile,
        other: Kind::CFile,
        target: Target::None,
    },
    Comparison {
        key: "nbdkit crate",
        name: "nbdkit-crate ramdisk",
        shim: Kind::ShimMemory,
        other: Kind::Crate,
        target: Target::AtLeastAsFast,
    },
    Comparison {
        key: "python",
        name: "python ramdisk",
        shim: Kind::ShimMemory,
        other: Kind::Python,
        target: Target::Python,
    },
];

/// One fio workload.
struct Workload {
    name: &'static str,
    rw: &'static str,
    bs: &'static str,
    iodepth: u32,
    /// fio jobs, each with its own NBD connection.
    jobs: u32,
    /// fio on one CPU and nbdkit on the others (see [`Placement`]); otherwise both may run
    /// anywhere and the kernel decides.
    pinned: bool,
}

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "4K random read, QD32",
        rw: "randread",
        bs: "4k",
        iodepth: 32,
        jobs: 1,
        pinned: true,
    },
    Workload {
        name: "4K random write, QD32",
        rw: "randwrite",
        bs: "4k",
        iodepth: 32,
        jobs: 1,
        pinned: true,
    },
    Workload {
        name: "256K sequential read, QD8",
        rw: "read",
        bs: "256k",
        iodepth: 8,
        jobs: 1,
        pinned: true,
    },
    Workload {
        name: "256K sequential write, QD8",
        rw: "write",
        bs: "256k",
        iodepth: 8,
        jobs: 1,
        pinned: true,
    },
    Workload {
        name: "4K random read, 4 connections × QD8",
        rw: "randread",
        bs: "4k",
        iodepth: 8,
        jobs: 4,
        pinned: true,
    },
    // The first workload with client and server sharing the CPUs as the kernel sees fit, as they
    // are where nbdkit is deployed: the python target is judged here (see `PYTHON_WORKLOAD`).
    Workload {
        name: "4K random read, QD32, unpinned",
        rw: "randread",
        bs: "4k",
        iodepth: 32,
        jobs: 1,
        pinned: false,
    },
    // The 4-connection one, unpinned. Here nbdkit's
    // 64 worker threads and fio's 4 compete for 2 CPUs, and throughput flips between a fast and
    // a slow mode with several times the context switches per request (C null too): shown for
    // what it tells about scheduling, judged by no target (see `Report::targets`).
    Workload {
        name: "4K random read, 4 connections × QD8, unpinned",
        rw: "randread",
        bs: "4k",
        iodepth: 8,
        jobs: 4,
        pinned: false,
    },
];

/// 4K random reads at QD32, pinned: the warm-up, and the quick run's workload.
const RANDREAD: usize = 0;
/// The workload the python target is judged on: 4K random reads at QD32, unpinned. Pinned to one
/// CPU, the comparison would take from rustshim the second CPU its requests can use in parallel
/// while costing python nothing (its requests take turns under the interpreter lock anyway), and
/// a GIL handed between threads on one CPU is cheaper than across two: the pinned ratio is in
/// the table, and the targets line gives both.
const PYTHON_WORKLOAD: usize = 5;

struct Settings {
    quick: bool,
    /// Interleaved pairs per cell.
    reps: usize,
    /// Seconds per fio run.
    runtime: u32,
    /// Interleaved pairs of start-up measurements per comparison.
    startup_reps: usize,
    comparisons: Vec<&'static Comparison>,
    workloads: Vec<usize>,
}

impl Settings {
    fn new(quick: bool) -> Settings {
        if quick {
            Settings {
                quick,
                reps: 2,
                runtime: 1,
                startup_reps: 2,
                comparisons: vec![&COMPARISONS[1]],
                workloads: vec![RANDREAD, WORKLOADS.len() - 1],
            }
        } else {
            Settings {
                quick,
                reps: 16,
                runtime: 1,
                startup_reps: 7,
                comparisons: COMPARISONS.iter().collect(),
                workloads: (0..WORKLOADS.len()).collect(),
            }
        }
    }
}

// ---- Entry point ----

pub fn bench(quick: bool) -> Result {
    let started = Instant::now();
    let settings = Settings::new(quick);
    deps::ensure()?;
    // The smoke run uses the debug build that `cargo test` has made already (a release build
    // from scratch takes minutes here); the figures are only worth reading from a full run.
    let release = !quick;
    build(release, &settings)?;
    install_stop_handlers();
    let env = Env::new(release, &settings)?;
    let machine = Machine::probe();

    let mut cells = Vec::new();
    let mut resources = Vec::new();
    for (ci, comparison) in settings.comparisons.iter().enumerate() {
        let (cmp_cells, res) = compare(&env, &settings, ci, comparison)?;
        cells.extend(cmp_cells);
        resources.push(res);
    }
    let instructions = if quick {
        None
    } else {
        Some(count_instructions(&env)?)
    };

    let reload = reload_section(release, if quick { 2 } else { 10 })?;

    let report = Report {
        settings: &settings,
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
    println!("{reload}");
    if quick {
        println!(
            "(--quick: a smoke run on the debug build, {} s; BENCHMARKS.md and benchmarks.svg are left as they are)",
            report.elapsed.as_secs()
        );
        return Ok(());
    }
    let root = workspace();
    write_file(
        &root.join("BENCHMARKS.md"),
        &format!("{}\n{reload}", report.markdown()),
    )?;
    write_file(&root.join("benchmarks.svg"), &report.svg())?;
    println!(
        "wrote BENCHMARKS.md and benchmarks.svg ({} min {} s)",
        report.elapsed.as_secs() / 60,
        report.elapsed.as_secs() % 60
    );
    Ok(())
}

/// `cargo xtask bench --instructions`: only the callgrind counts, on the release build. The
/// callgrind files are kept in `target/bench-callgrind/` so that `callgrind_annotate` can say
/// which functions a difference is in.
pub fn instructions_only() -> Result {
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
    let instructions = count_instructions(&env)?;
    let kept = target_dir(true).with_file_name("bench-callgrind");
    let _ = fs::remove_dir_all(&kept);
    fs::create_dir_all(&kept).map_err(|e| format!("cannot create {}: {e}", kept.display()))?;
    for entry in
        fs::read_dir(&env.dir).map_err(|e| format!("cannot list {}: {e}", env.dir.display()))?
    {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", env.dir.display()))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with("callgrind-") {
            fs::copy(entry.path(), kept.join(&name))
                .map_err(|e| format!("cannot keep {}: {e}", entry.path().display()))?;
        }
    }
    let report = Report {
        settings: &settings,
        env: &env,
        machine: Machine::probe(),
        load_end: loadavg(),
        cells: Vec::new(),
        resources: Vec::new(),
        instructions: Some(instructions),
        elapsed: started.elapsed(),
    };
    if let Some(table) = report.instructions_table() {
        println!("\n{table}");
    }
    println!(
        "callgrind files (the dump of each counted run is *.out.1): {}",
        kept.display()
    );
    Ok(())
}

/// `cargo xtask bench --reload`: only the reload latency, on the release build.
pub fn reload_only(quick: bool) -> Result {
    deps::ensure()?;
    println!("{}", reload_section(!quick, 10)?);
    Ok(())
}

/// Hot reload latency (`reload=watch`), measured on the memory plugin: see `reload_bench`.
fn reload_section(release: bool, rounds: usize) -> Result<String> {
    let mut cargo = cargo();
    cargo.args([
        "build",
        "--quiet",
        "-p",
        "rustshim-memory",
        "-p",
        "nbdkit-rustshim-plugin",
    ]);
    if release {
        cargo.arg("--release");
    }
    run("build the memory plugin", &mut cargo)?;
    let dir = target_dir(release);
    let samples =
        crate::reload_bench::reload_latency(&dir.join(SHIM), &plugin_path(&dir, "memory"), rounds)?;
    let summary = |values: Vec<f64>| {
        let mut v = values;
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    let (swap, swap_min, swap_max) = summary(samples.iter().map(|s| s.swap_ms).collect());
    let (read, read_min, read_max) = summary(samples.iter().map(|s| s.first_read_ms).collect());
    let verdict = if read < 300.0 { "met" } else { "**missed**" };
    Ok(format!(
        "## Hot reload latency\n\n\
         `reload=watch` on the memory plugin (64 MiB, its disk handed over each time), {} reloads of a new build renamed over the watched file. \
         Includes the shim's 150 ms debounce. Median (min–max), ms.\n\n\
         | from the new file landing to | ms | target | result |\n|---|---|---|---|\n\
         | new connections served by the new build (the shim's reload line) | {swap:.0} ({swap_min:.0}–{swap_max:.0}) | – | – |\n\
         | the first read on a new connection returned (incl. starting nbdinfo) | {read:.0} ({read_min:.0}–{read_max:.0}) | < 300 | {verdict} |\n",
        samples.len()
    ))
}

/// Builds the shim and the plugins the comparisons use, and only those (the other members may
/// be half-edited while someone measures).
fn build(release: bool, settings: &Settings) -> Result {
    let mut packages = vec!["nbdkit-rustshim-plugin"];
    let uses = |kind: Kind| {
        settings
            .comparisons
            .iter()
            .any(|c| c.shim == kind || c.other == kind)
    };
    for (kind, package) in [
        (Kind::ShimNull, "rustshim-null"),
        (Kind::ShimMemory, "rustshim-memory"),
        (Kind::ShimFile, "rustshim-file"),
        (Kind::Crate, CRATE_PACKAGE),
    ] {
        if uses(kind) {
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

fn write_file(path: &Path, text: &str) -> Result {
    fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn interrupted() -> Result {
    if stopped() {
        Err("interrupted".into())
    } else {
        Ok(())
    }
}

/// Runs every workload of one comparison, then measures start-up.
fn compare(
    env: &Env,
    settings: &Settings,
    index: usize,
    comparison: &Comparison,
) -> Result<(Vec<Cell>, Resources)> {
    let (a, b) = (comparison.shim, comparison.other);
    println!("==> {} vs {}", a.label(), comparison.name);
    let shim = Server::start(env, a, &[])?;
    let other = Server::start(env, b, &[])?;
    for server in [&shim, &other] {
        prepare(server, settings)?;
    }
    let mut cells = Vec::new();
    for &w in &settings.workloads {
        let workload = &WORKLOADS[w];
        let mut cell = Cell {
            comparison: index,
            workload: w,
            shim: Vec::new(),
            other: Vec::new(),
        };
        for rep in 0..settings.reps {
            // A B, then B A: neither side always goes first.
            let order = if rep % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for is_shim in order {
                interrupted()?;
                let server = if is_shim { &shim } else { &other };
                let sample = measure(env, server, workload, settings.runtime)?;
                if is_shim {
                    cell.shim.push(sample);
                } else {
                    cell.other.push(sample);
                }
            }
        }
        println!(
            "    {:<38} {:>9} vs {:>9} IOPS   ratio {:.3}",
            workload.name,
            si(cell.side(true, |s| s.iops).median),
            si(cell.side(false, |s| s.iops).median),
            cell.ratio(|s| s.iops).median
        );
        cells.push(cell);
    }
    let rss = (peak_rss_kib(shim.pid())?, peak_rss_kib(other.pid())?);
    drop(shim);
    drop(other);

    let mut startup = (Vec::new(), Vec::new());
    for rep in 0..settings.startup_reps {
        let order = if rep % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for is_shim in order {
            interrupted()?;
            let kind = if is_shim { a } else { b };
            let ms = startup_ms(env, kind)?;
            if is_shim {
                startup.0.push(ms);
            } else {
                startup.1.push(ms);
            }
        }
    }
    println!(
        "    peak RSS {} vs {}; start-up to the first 4K read {:.1} ms vs {:.1} ms",
        kib(rss.0 as i64),
        kib(rss.1 as i64),
        Stats::of(&startup.0).median,
        Stats::of(&startup.1).median
    );
    Ok((
        cells,
        Resources {
            comparison: index,
            rss,
            startup,
        },
    ))
}

/// Ram disks are written whole first (reads then hit allocated pages); every server gets a
/// short warm-up run.
fn prepare(server: &Server, settings: &Settings) -> Result {
    if settings.quick {
        return Ok(());
    }
    if server.kind.keeps_data() {
        run_fio(&mut fio_prewrite(&server.socket))?;
    }
    run_fio(&mut fio_command(
        &server.socket,
        &WORKLOADS[RANDREAD],
        1,
        None,
    ))?;
    Ok(())
}

// ---- The environment: built artifacts and scratch files ----

struct Env {
    /// Scratch directory (sockets, the disk image, the python script, callgrind output).
    dir: PathBuf,
    artifacts: PathBuf,
    disk_image: PathBuf,
    python_script: PathBuf,
    next_server: std::cell::Cell<u32>,
    /// `None` on a machine with one CPU: then nothing is pinned.
    placement: Option<Placement>,
}

impl Env {
    fn new(release: bool, settings: &Settings) -> Result<Env> {
        let dir = std::env::temp_dir().join(format!("rustshim-bench-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let env = Env {
            disk_image: dir.join("disk.img"),
            python_script: dir.join("ramdisk.py"),
            dir,
            artifacts: target_dir(release),
            next_server: std::cell::Cell::new(0),
            placement: Placement::probe(),
        };
        let uses = |kind: Kind| {
            settings
                .comparisons
                .iter()
                .any(|c| c.shim == kind || c.other == kind)
        };
        if uses(Kind::Python) {
            write_file(&env.python_script, PYTHON_RAMDISK)?;
        }
        if uses(Kind::CFile) {
            make_disk_image(&env.disk_image)?;
        }
        Ok(env)
    }

    fn shim(&self) -> PathBuf {
        self.artifacts.join(SHIM)
    }

    /// What follows `nbdkit -f --exit-with-parent -U SOCKET -P PIDFILE`.
    fn server_args(&self, kind: Kind) -> Vec<OsString> {
        let shim = |plugin: &str| -> Vec<OsString> {
            vec![
                self.shim().into(),
                format!("plugin={}", plugin_path(&self.artifacts, plugin).display()).into(),
            ]
        };
        let size: OsString = format!("size={SIZE}").into();
        let file: OsString = format!("file={}", self.disk_image.display()).into();
        let mut args: Vec<OsString> = match kind {
            Kind::CNull => vec!["null".into()],
            Kind::ShimNull => shim("null"),
            Kind::CMemory => vec!["memory".into()],
            Kind::ShimMemory => shim("memory"),
            Kind::CFile => vec!["file".into()],
            Kind::ShimFile => shim("file"),
            Kind::Crate => vec![self.artifacts.join(CRATE_PLUGIN).into()],
            Kind::Python => vec!["python".into(), self.python_script.clone().into()],
        };
        args.push(if matches!(kind, Kind::CFile | Kind::ShimFile) {
            file
        } else {
            size
        });
        args
    }

    fn new_server_dir(&self) -> Result<PathBuf> {
        let n = self.next_server.get() + 1;
        self.next_server.set(n);
        let dir = self.dir.join(format!("srv{n}"));
        fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(dir)
    }

    /// A path or argument as the report shows it: the scratch directory as `$BENCH`, the
    /// workspace as a relative path.
    fn shown(&self, arg: &OsStr) -> String {
        let text = arg.to_string_lossy();
        let root = format!("{}/", workspace().display());
        text.replace(&*self.dir.to_string_lossy(), "$BENCH")
            .replace(&root, "")
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A 1 GiB file of pseudo-random bytes, read once so that it is in the page cache.
fn make_disk_image(path: &Path) -> Result {
    let fail = |e: io::Error| format!("cannot make {}: {e}", path.display());
    let mut file = File::create(path).map_err(fail)?;
    let mut chunk = vec![0u8; 1 << 20];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..SIZE_BYTES >> 20 {
        for word in chunk.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        file.write_all(&chunk).map_err(fail)?;
    }
    drop(file);
    let mut file = File::open(path).map_err(fail)?;
    while file.read(&mut chunk).map_err(fail)? > 0 {}
    Ok(())
}

// ---- nbdkit ----

/// An nbdkit in the background, in a directory of its own; dropping it stops nbdkit.
struct Server {
    kind: Kind,
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
    pidfile: PathBuf,
    log: PathBuf,
    /// Just before the spawn.
    spawned: Instant,
}

impl Server {
    /// `[wrapper...] nbdkit -f --exit-with-parent -U SOCKET -P PIDFILE ARGS...`, not waited for.
    fn spawn(env: &Env, kind: Kind, wrapper: &[OsString]) -> Result<Server> {
        let dir = env.new_server_dir()?;
        let socket = dir.join("nbd.sock");
        let pidfile = dir.join("nbdkit.pid");
        let log = dir.join("nbdkit.log");
        let mut cmd = server_command(env, kind, wrapper, &socket, &pidfile);
        let stderr =
            File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .env("PATH", path_env());
        let spawned = Instant::now();
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
        Ok(Server {
            kind,
            child,
            dir,
            socket,
            pidfile,
            log,
            spawned,
        })
    }

    /// Spawns and waits until nbdkit listens (it writes the pidfile then).
    fn start(env: &Env, kind: Kind, wrapper: &[OsString]) -> Result<Server> {
        let mut server = Server::spawn(env, kind, wrapper)?;
        let ready = format!("{}\n", server.pid());
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            interrupted()?;
            if let Some(status) = server.child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!(
                    "{} exited ({status}) before it was ready: {}",
                    kind.label(),
                    server.log_text()
                ));
            }
            if server.socket.exists()
                && fs::read_to_string(&server.pidfile).is_ok_and(|s| s == ready)
            {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} was not ready after 120 s: {}",
                    kind.label(),
                    server.log_text()
                ));
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn log_text(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        match text.trim() {
            "" => "(nothing on its stderr)".into(),
            text => text.to_string(),
        }
    }

    /// SIGTERM (nbdkit shuts down cleanly, and valgrind writes its output), then waits.
    fn stop(&mut self) -> Result {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill has no memory-safety preconditions; the child is not reaped yet, so
            // its pid is still its own.
            unsafe { libc::kill(self.pid(), libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(120);
            while let Ok(None) = self.child.try_wait() {
                if Instant::now() > deadline {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err(format!("{} did not stop on SIGTERM", self.kind.label()));
                }
                thread::sleep(Duration::from_millis(5));
            }
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn server_command(
    env: &Env,
    kind: Kind,
    wrapper: &[OsString],
    socket: &Path,
    pidfile: &Path,
) -> Command {
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut cmd = Command::new(program);
            cmd.args(args).arg("nbdkit");
            cmd
        }
        None => Command::new("nbdkit"),
    };
    cmd.args(["-f", "--exit-with-parent", "-U"])
        .arg(socket)
        .arg("-P")
        .arg(pidfile)
        .args(env.server_args(kind));
    cmd
}

/// Time from spawning nbdkit to the first 4 KiB read served.
fn startup_ms(env: &Env, kind: Kind) -> Result<f64> {
    let mut server = Server::spawn(env, kind, &[])?;
    let deadline = server.spawned + Duration::from_secs(60);
    let mut buf = [0u8; 4096];
    loop {
        if let Ok(mut client) = NbdClient::connect(&server.socket) {
            if client.read(&mut buf, 0).is_ok() {
                let ms = server.spawned.elapsed().as_secs_f64() * 1e3;
                client.disconnect();
                server.stop()?;
                return Ok(ms);
            }
        }
        if let Some(status) = server.child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!(
                "{} exited ({status}) before serving: {}",
                kind.label(),
                server.log_text()
            ));
        }
        if Instant::now() > deadline {
            return Err(format!("{} served nothing within 60 s", kind.label()));
        }
        thread::sleep(Duration::from_millis(1));
    }
}

// ---- What the kernel says about the server ----

/// CPU time (user + system, all threads, including finished ones) of a process, in seconds.
fn cpu_seconds(pid: i32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    // The command name is in parentheses and may contain spaces; utime and stime are fields 14
    // and 15 of proc(5), the 12th and 13th after the name.
    let fields: Vec<&str> = stat[stat.rfind(')').ok_or("bad /proc stat")? + 1..]
        .split_whitespace()
        .collect();
    let ticks = |i: usize| -> Result<f64> {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .map(|t| t as f64)
            .ok_or_else(|| format!("bad {path}"))
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((ticks(11)? + ticks(12)?) / hz)
}

/// Peak resident set size (VmHWM), in KiB.
fn peak_rss_kib(pid: i32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no VmHWM in {path}"))
}

// ---- Where client and server run ----

/// Which CPUs fio and nbdkit run on for a pinned workload: fio on the first CPU we may use,
/// nbdkit (every thread) on the rest. On a 2-CPU machine where fio and 64 nbdkit threads
/// otherwise share both CPUs, the run-to-run spread comes mostly from how the scheduler happens
/// to interleave them; apart, the server is the bottleneck on a CPU of its own, so its IOPS are
/// what its cost per request allows — which is what a comparison of plugins is after.
struct Placement {
    client: String,
    server: String,
    /// Every CPU we may use (for the unpinned workloads).
    all: String,
}

impl Placement {
    fn probe() -> Option<Placement> {
        let status = fs::read_to_string("/proc/self/status").ok()?;
        let all = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?
            .trim()
            .to_string();
        let cpus = parse_cpu_list(&all)?;
        let (client, server) = cpus.split_first()?;
        if server.is_empty() {
            return None;
        }
        let list = |cpus: &[usize]| {
            cpus.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        Some(Placement {
            client: client.to_string(),
            server: list(server),
            all,
        })
    }
}

/// "0-2,5" → [0, 1, 2, 5] (the format of `Cpus_allowed_list` and `taskset -c`).
fn parse_cpu_list(text: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.trim().parse::<usize>().ok()?..=b.trim().parse().ok()?),
            None => cpus.push(part.trim().parse().ok()?),
        }
    }
    Some(cpus)
}

/// Moves every thread of process `pid` onto `cpus`; threads it makes later inherit that.
fn set_affinity(pid: i32, cpus: &str) -> Result {
    let out = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .env("PATH", path_env())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run taskset: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "taskset -a -p -c {cpus} {pid} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Context switches on the whole machine so far (`ctxt` in `/proc/stat`). The server's own are
/// not enough: its worker threads end with their connections, taking their counts with them,
/// and fio's switches are part of the story.
fn context_switches() -> Result<u64> {
    let stat =
        fs::read_to_string("/proc/stat").map_err(|e| format!("cannot read /proc/stat: {e}"))?;
    stat.lines()
        .find_map(|l| l.strip_prefix("ctxt "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "no ctxt line in /proc/stat".into())
}

// ---- fio ----

fn fio_base(socket: &Path) -> Command {
    let mut cmd = Command::new("fio");
    cmd.arg("--name=bench")
        .arg("--ioengine=nbd")
        .arg(format!("--uri=nbd+unix:///?socket={}", socket.display()));
    cmd
}

/// fio for workload `w`; pinned to `client_cpu` (through `taskset`) when given.
fn fio_command(socket: &Path, w: &Workload, runtime: u32, client_cpu: Option<&str>) -> Command {
    let mut cmd = match client_cpu {
        Some(cpu) => {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", cpu, "fio", "--name=bench", "--ioengine=nbd"])
                .arg(format!("--uri=nbd+unix:///?socket={}", socket.display()));
            cmd
        }
        None => fio_base(socket),
    };
    cmd.arg(format!("--rw={}", w.rw))
        .arg(format!("--bs={}", w.bs))
        .arg(format!("--iodepth={}", w.iodepth))
        .arg(format!("--numjobs={}", w.jobs))
        .arg("--group_reporting")
        .arg("--time_based")
        .arg(format!("--runtime={runtime}"))
        .arg("--norandommap")
        .arg("--randrepeat=1")
        .arg("--output-format=json");
    cmd
}

/// Writes the whole disk once.
fn fio_prewrite(socket: &Path) -> Command {
    let mut cmd = fio_base(socket);
    cmd.args([
        "--rw=write",
        "--bs=1M",
        "--iodepth=8",
        "--output-format=json",
    ]);
    cmd
}

struct FioResult {
    iops: f64,
    /// Bytes per second.
    bw: f64,
    /// Requests completed.
    ios: u64,
}

fn run_fio(cmd: &mut Command) -> Result<FioResult> {
    let out = cmd
        .env("PATH", path_env())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run fio: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "fio failed ({}): {}{}",
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    // The nbd engine prints "fio: connected to NBD server" before the JSON.
    let json = stdout
        .find("\n{")
        .map(|i| &stdout[i + 1..])
        .or_else(|| stdout.strip_prefix('{').map(|_| &*stdout))
        .ok_or_else(|| format!("no JSON in fio's output: {stdout}"))?;
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("fio's JSON: {e}"))?;
    let job = &value["jobs"][0];
    if job["error"].as_i64().unwrap_or(0) != 0 {
        return Err(format!("fio reported error {}", job["error"]));
    }
    let sum = |field: &str| {
        job["read"][field].as_f64().unwrap_or(0.0) + job["write"][field].as_f64().unwrap_or(0.0)
    };
    Ok(FioResult {
        iops: sum("iops"),
        bw: sum("bw_bytes"),
        ios: sum("total_ios") as u64,
    })
}

/// One fio run against one server.
#[derive(Clone, Copy)]
struct Sample {
    iops: f64,
    bw: f64,
    ios: u64,
    /// Server CPU seconds during the run.
    cpu: f64,
    /// Context switches on the whole machine during the run.
    switches: u64,
}

impl Sample {
    /// Server CPU seconds per million requests.
    fn cpu_per_mreq(&self) -> f64 {
        self.cpu / self.ios.max(1) as f64 * 1e6
    }

    /// Context switches (whole machine) per request.
    fn switches_per_req(&self) -> f64 {
        self.switches as f64 / self.ios.max(1) as f64
    }
}

fn measure(env: &Env, server: &Server, w: &Workload, runtime: u32) -> Result<Sample> {
    let client_cpu = match (&env.placement, w.pinned) {
        (Some(p), true) => {
            set_affinity(server.pid(), &p.server)?;
            Some(p.client.as_str())
        }
        (Some(p), false) => {
            set_affinity(server.pid(), &p.all)?;
            None
        }
        (None, _) => None,
    };
    let mut fio = fio_command(&server.socket, w, runtime, client_cpu);
    let switches = context_switches()?;
    let before = cpu_seconds(server.pid())?;
    let result = run_fio(&mut fio)?;
    let after = cpu_seconds(server.pid())?;
    Ok(Sample {
        iops: result.iops,
        bw: result.bw,
        ios: result.ios,
        cpu: after - before,
        switches: context_switches()? - switches,
    })
}

// ---- A minimal NBD client (fixed newstyle, NBD_OPT_GO, simple replies) ----

const NBD_MAGIC: u64 = 0x4e42_444d_4147_4943; // "NBDMAGIC"
const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
const NBD_OPT_GO: u32 = 7;
const NBD_REP_MAGIC: u64 = 0x0003_e889_0455_65a9;
const NBD_REP_ACK: u32 = 1;
const NBD_REQUEST_MAGIC: u32 = 0x2560_9513;
const NBD_SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
const NBD_CMD_READ: u16 = 0;
const NBD_CMD_WRITE: u16 = 1;
const NBD_CMD_DISC: u16 = 2;

/// Just enough of a client to time the first read and to send an exact number of reads.
struct NbdClient {
    sock: UnixStream,
    cookie: u64,
}

impl NbdClient {
    fn connect(socket: &Path) -> io::Result<NbdClient> {
        let mut sock = UnixStream::connect(socket)?;
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        let mut greeting = [0u8; 18];
        sock.read_exact(&mut greeting)?;
        if greeting[..8] != NBD_MAGIC.to_be_bytes() || greeting[8..16] != IHAVEOPT.to_be_bytes() {
            return Err(bad("not a newstyle NBD server"));
        }
        let server_flags = u16::from_be_bytes([greeting[16], greeting[17]]);
        // FIXED_NEWSTYLE and NO_ZEROES, as far as the server offers them.
        sock.write_all(&(u32::from(server_flags) & 3).to_be_bytes())?;
        // NBD_OPT_GO: the default export (empty name), no information requests.
        let mut option = Vec::with_capacity(22);
        option.extend_from_slice(&IHAVEOPT.to_be_bytes());
        option.extend_from_slice(&NBD_OPT_GO.to_be_bytes());
        option.extend_from_slice(&6u32.to_be_bytes());
        option.extend_from_slice(&0u32.to_be_bytes());
        option.extend_from_slice(&0u16.to_be_bytes());
        sock.write_all(&option)?;
        loop {
            let mut header = [0u8; 20];
            sock.read_exact(&mut header)?;
            let magic = u64::from_be_bytes(header[..8].try_into().unwrap());
            let kind = u32::from_be_bytes(header[12..16].try_into().unwrap());
            let len = u32::from_be_bytes(header[16..20].try_into().unwrap());
            let mut data = vec![0u8; len as usize];
            sock.read_exact(&mut data)?;
            if magic != NBD_REP_MAGIC {
                return Err(bad("bad option reply"));
            }
            if kind == NBD_REP_ACK {
                return Ok(NbdClient { sock, cookie: 0 });
            }
            if kind & 0x8000_0000 != 0 {
                return Err(bad("the server refused NBD_OPT_GO"));
            }
        }
    }

    fn request(&mut self, command: u16, offset: u64, len: u32) -> io::Result<()> {
        self.cookie += 1;
        let mut req = [0u8; 28];
        req[..4].copy_from_slice(&NBD_REQUEST_MAGIC.to_be_bytes());
        req[6..8].copy_from_slice(&command.to_be_bytes());
        req[8..16].copy_from_slice(&self.cookie.to_be_bytes());
        req[16..24].copy_from_slice(&offset.to_be_bytes());
        req[24..28].copy_from_slice(&len.to_be_bytes());
        self.sock.write_all(&req)
    }

    fn read(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.request(NBD_CMD_READ, offset, buf.len() as u32)?;
        self.reply()?;
        self.sock.read_exact(buf)
    }

    fn write(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.request(NBD_CMD_WRITE, offset, buf.len() as u32)?;
        self.sock.write_all(buf)?;
        self.reply()
    }

    /// A simple reply's header, checked.
    fn reply(&mut self) -> io::Result<()> {
        let mut reply = [0u8; 16];
        self.sock.read_exact(&mut reply)?;
        let magic = u32::from_be_bytes(reply[..4].try_into().unwrap());
        let error = u32::from_be_bytes(reply[4..8].try_into().unwrap());
        if magic != NBD_SIMPLE_REPLY_MAGIC || reply[8..16] != self.cookie.to_be_bytes() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "bad reply"));
        }
        if error != 0 {
            return Err(io::Error::other(format!("NBD error {error}")));
        }
        Ok(())
    }

    fn disconnect(mut self) {
        let _ = self.request(NBD_CMD_DISC, 0, 0);
    }
}

// ---- Instructions per request (callgrind) ----

/// Where the instructions of one callgrind run went, by object.
#[derive(Default)]
struct Costs {
    total: u64,
    /// nbdkit, libc, shim, plugin, other.
    parts: [u64; 5],
}

fn part_of(object: &str) -> usize {
    if object.ends_with("/nbdkit") {
        0
    } else if object.contains("/libc.so") {
        1
    } else if object.contains(SHIM) {
        2
    } else if [
        "librustshim_",
        "nbdkit-null-plugin",
        "nbdkit-memory-plugin",
        CRATE_PLUGIN,
    ]
    .iter()
    .any(|name| object.contains(name))
    {
        3
    } else {
        4
    }
}

/// Self cost (Ir) per object from a callgrind output file: cost lines count for the current
/// `ob=`, except the one after `calls=` (that is the inclusive cost of a call).
fn parse_callgrind(path: &Path) -> Result<Costs> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut names: HashMap<String, String> = HashMap::new();
    let mut resolve = |spec: &str| -> String {
        let spec = spec.trim();
        match spec.strip_prefix('(').and_then(|s| s.split_once(')')) {
            Some((id, name)) => {
                let name = name.trim();
                if name.is_empty() {
                    names.get(id).cloned().unwrap_or_default()
                } else {
                    names.insert(id.to_string(), name.to_string());
                    name.to_string()
                }
            }
            None => spec.to_string(),
        }
    };
    let mut costs = Costs::default();
    let mut part = 4;
    let mut skip = false;
    for line in text.lines() {
        if let Some(spec) = line.strip_prefix("ob=") {
            part = part_of(&resolve(spec));
        } else if let Some(spec) = line.strip_prefix("cob=") {
            resolve(spec);
        } else if line.starts_with("calls=") {
            skip = true;
        } else if let Some(total) = line.strip_prefix("totals:") {
            costs.total = total.trim().parse().unwrap_or(0);
        } else if line.starts_with(|c: char| c.is_ascii_digit() || "+-*".contains(c)) {
            if std::mem::take(&mut skip) {
                continue;
            }
            if let Some(ir) = line
                .split_whitespace()
                .nth(1)
                .and_then(|n| n.parse::<u64>().ok())
            {
                costs.parts[part] += ir;
            }
        }
    }
    let sum: u64 = costs.parts.iter().sum();
    if costs.total == 0 {
        costs.total = sum;
    }
    Ok(costs)
}

/// nbdkit under callgrind: one connection writes [`CALLGRIND_REGION`] in 256 KiB requests and
/// reads it 4 KiB at a time ([`CALLGRIND_WARMUP`] reads); then callgrind's counters are zeroed,
/// the connection makes [`CALLGRIND_READS`] more reads (wrapping round), and callgrind dumps what
/// they cost. Returns that cost per read.
fn callgrind_run(env: &Env, kind: Kind, run_number: u32) -> Result<Instructions> {
    let out = env.dir.join(format!("callgrind-{kind:?}-{run_number}.out"));
    let wrapper: Vec<OsString> = vec![
        "valgrind".into(),
        "--tool=callgrind".into(),
        format!("--callgrind-out-file={}", out.display()).into(),
    ];
    let mut server = Server::start(env, kind, &wrapper)?;
    let mut client = NbdClient::connect(&server.socket)
        .map_err(|e| format!("cannot connect to {} under valgrind: {e}", kind.label()))?;
    let failed = |e: io::Error| format!("{} under valgrind: {e}", kind.label());
    let data: Vec<u8> = (0..256 << 10).map(|i: u32| (i % 251) as u8 | 1).collect();
    for offset in (0..CALLGRIND_REGION).step_by(data.len()) {
        client.write(&data, offset).map_err(failed)?;
    }
    let mut buf = vec![0u8; 4096];
    let mut offset = 0;
    let mut read = |client: &mut NbdClient, n: u64| -> Result {
        for _ in 0..n {
            client.read(&mut buf, offset).map_err(failed)?;
            offset = (offset + 4096) % CALLGRIND_REGION;
        }
        Ok(())
    };
    read(&mut client, CALLGRIND_WARMUP)?;
    callgrind_control(&server, "--zero")?;
    read(&mut client, CALLGRIND_READS)?;
    callgrind_control(&server, "--dump")?;
    client.disconnect();
    server.stop()?;
    // The dump is the file's first part, `OUT.1`; `OUT` itself has what came after.
    let mut dump = out.into_os_string();
    dump.push(".1");
    let costs = parse_callgrind(Path::new(&dump))?;
    let per = |x: u64| x as f64 / CALLGRIND_READS as f64;
    Ok(Instructions {
        kind,
        total: per(costs.total),
        parts: costs.parts.map(per),
    })
}

fn callgrind_control(server: &Server, command: &str) -> Result {
    let out = Command::new("callgrind_control")
        .arg(command)
        .arg(server.pid().to_string())
        .env("PATH", path_env())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run callgrind_control: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "callgrind_control {command} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Instructions per 4 KiB read in one server.
#[derive(Clone, Copy)]
struct Instructions {
    kind: Kind,
    /// Per read: total, then by part.
    total: f64,
    parts: [f64; 5],
}

/// Two callgrind runs per server: the first is reported, the second shows how repeatable it is.
fn count_instructions(env: &Env) -> Result<Vec<(Instructions, f64)>> {
    let mut results = Vec::new();
    for kind in CALLGRIND_KINDS {
        interrupted()?;
        println!("==> callgrind: {}, {CALLGRIND_READS} reads", kind.label());
        let first = callgrind_run(env, kind, 1)?;
        let second = callgrind_run(env, kind, 2)?;
        println!(
            "    {:.1} and {:.1} instructions per 4K read",
            first.total, second.total
        );
        results.push((first, second.total));
    }
    Ok(results)
}

// ---- Statistics ----

#[derive(Clone, Copy)]
struct Stats {
    median: f64,
    min: f64,
    max: f64,
    /// A distribution-free confidence interval of the median, of at least 95 % (see
    /// [`median_ci`]).
    ci: (f64, f64),
}

impl Stats {
    fn of(values: &[f64]) -> Stats {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Stats {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
                ci: (f64::NAN, f64::NAN),
            };
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        let k = median_ci_rank(n);
        Stats {
            median,
            min: v[0],
            max: v[n - 1],
            ci: (v[k], v[n - 1 - k]),
        }
    }
}

/// The order statistics that bound a ≥ 95 % confidence interval of the median of `n` values
/// (0-based: the interval is from the `k`th smallest to the `k`th largest). The median lies
/// below the `k+1`th smallest of `n` independent values with probability P(Binomial(n, ½) ≤ k),
/// so the largest `k` with that ≤ 2.5 % on each side gives at least 95 % coverage, whatever the
/// distribution. With fewer than 6 values no such `k` exists and the interval is the range.
fn median_ci_rank(n: usize) -> usize {
    let mut at_most = 0.0;
    let mut k = 0;
    while k < n / 2 {
        at_most += binomial_half(n, k); // P(X ≤ k)
        if at_most > 0.025 {
            break;
        }
        k += 1;
    }
    k.saturating_sub(1)
}

/// P(X = k) for X ~ Binomial(n, ½).
fn binomial_half(n: usize, k: usize) -> f64 {
    let mut p = 0.5f64.powi(n as i32);
    for i in 0..k {
        p *= (n - i) as f64 / (i + 1) as f64;
    }
    p
}

/// One comparison × one workload: the interleaved samples of both sides.
struct Cell {
    comparison: usize,
    workload: usize,
    shim: Vec<Sample>,
    other: Vec<Sample>,
}

impl Cell {
    fn side(&self, shim: bool, f: impl Fn(&Sample) -> f64) -> Stats {
        let samples = if shim { &self.shim } else { &self.other };
        Stats::of(&samples.iter().map(f).collect::<Vec<_>>())
    }

    /// rustshim ÷ other, pair by pair.
    fn ratio(&self, f: impl Fn(&Sample) -> f64) -> Stats {
        let ratios: Vec<f64> = self
            .shim
            .iter()
            .zip(&self.other)
            .map(|(a, b)| f(a) / f(b))
            .collect();
        Stats::of(&ratios)
    }
}

struct Resources {
    comparison: usize,
    /// Peak RSS in KiB: rustshim, other.
    rss: (u64, u64),
    /// Start-up to the first read, in ms: rustshim, other.
    startup: (Vec<f64>, Vec<f64>),
}

// ---- Formatting ----

/// 123456 → "123.5k".
fn si(x: f64) -> String {
    if !x.is_finite() {
        "–".into()
    } else if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

fn kib(k: i64) -> String {
    if k.abs() >= 10 * 1024 {
        format!("{:.1} MiB", k as f64 / 1024.0)
    } else {
        format!("{k} KiB")
    }
}

fn with_range(s: Stats, f: impl Fn(f64) -> String) -> String {
    format!("{} ({}–{})", f(s.median), f(s.min), f(s.max))
}

fn ratio_text(s: Stats) -> String {
    format!("**{:.3}** ({:.3}–{:.3})", s.median, s.min, s.max)
}

/// A median ratio with the 95 % confidence interval of that median.
fn with_ci(s: Stats) -> String {
    format!("{:.3} (95 % CI {:.3}–{:.3})", s.median, s.ci.0, s.ci.1)
}

fn mib(x: f64) -> String {
    let m = x / (1 << 20) as f64;
    if m >= 100.0 {
        format!("{m:.0}")
    } else {
        format!("{m:.1}")
    }
}

/// The machine, as BENCHMARKS.md describes it.
struct Machine {
    cpu: String,
    cores: usize,
    memory: String,
    kernel: String,
    load_start: String,
    nbdkit: String,
    rustc: String,
    fio: String,
    valgrind: String,
    date: String,
}

impl Machine {
    fn probe() -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let cores = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        let memory = fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            })
            .map(|k| format!("{:.1} GiB", k / (1 << 20) as f64))
            .unwrap_or_else(|| "unknown".into());
        // The rustc of the cargo that runs us.
        let rustc = std::env::var_os("CARGO")
            .map(PathBuf::from)
            .and_then(|c| c.parent().map(|d| d.join("rustc")))
            .filter(|p| p.exists())
            .unwrap_or_else(|| "rustc".into());
        Machine {
            cpu,
            cores,
            memory,
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            load_start: loadavg(),
            nbdkit: first_line("nbdkit", &["--version"]),
            rustc: first_line(rustc, &["--version"]),
            fio: first_line("fio", &["--version"]),
            valgrind: first_line("valgrind", &["--version"]),
            date: first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        }
    }
}

fn first_line(program: impl AsRef<OsStr>, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .env("PATH", path_env())
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The 1, 5 and 15 minute load averages.
fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A target's verdict for one cell.
struct Verdict {
    target: &'static str,
    /// `None`: no target for this cell.
    met: Option<bool>,
    why: String,
}

struct Report<'a> {
    settings: &'a Settings,
    env: &'a Env,
    machine: Machine,
    load_end: String,
    cells: Vec<Cell>,
    resources: Vec<Resources>,
    /// Per server: the first run, and the total of the second.
    instructions: Option<Vec<(Instructions, f64)>>,
    elapsed: Duration,
}

impl Report<'_> {
    fn comparison(&self, index: usize) -> &Comparison {
        self.settings.comparisons[index]
    }

    /// Whether the targets judge this workload: the pinned ones (all of them on a machine where
    /// nothing can be pinned). The unpinned workload measures the scheduler as much as the
    /// servers: see `WORKLOADS`.
    fn judged(&self, workload: usize) -> bool {
        WORKLOADS[workload].pinned || self.env.placement.is_none()
    }

    fn verdict(&self, cell: &Cell) -> Verdict {
        let iops = cell.ratio(|s| s.iops);
        let bw = cell.ratio(|s| s.bw);
        let cpu = cell.ratio(Sample::cpu_per_mreq);
        let mut misses = Vec::new();
        let mut low = |what: &str, r: Stats, min: f64| {
            if r.median < min {
                misses.push(format!("{what} {}", with_ci(r)));
            }
        };
        let judged = self.judged(cell.workload);
        let (target, applies) = match self.comparison(cell.comparison).target {
            Target::Twin if judged => {
                low("IOPS", iops, TWIN_MIN);
                low("MiB/s", bw, TWIN_MIN);
                if cpu.median > TWIN_CPU_MAX {
                    misses.push(format!("CPU {}", with_ci(cpu)));
                }
                ("IOPS, MiB/s ≥ 0.99×; CPU ≤ 1.03×", true)
            }
            Target::AtLeastAsFast if judged => {
                low("IOPS", iops, 1.0);
                low("MiB/s", bw, 1.0);
                ("IOPS, MiB/s ≥ 1.00×", true)
            }
            Target::Python if cell.workload == PYTHON_WORKLOAD => {
                low("IOPS", iops, PYTHON_MIN);
                ("IOPS ≥ 3.5×", true)
            }
            _ => ("", false),
        };
        Verdict {
            target,
            met: applies.then_some(misses.is_empty()),
            why: misses.join(", "),
        }
    }

    fn throughput_table(&self) -> String {
        let mut t = String::new();
        t.push_str("| rustshim vs | workload | rustshim IOPS | other IOPS | IOPS ratio | rustshim MiB/s | other MiB/s | MiB/s ratio | server CPU s per M req, rustshim | other | CPU ratio | context switches per req, rustshim | other | target | result |\n");
        t.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for cell in &self.cells {
            let c = self.comparison(cell.comparison);
            let v = self.verdict(cell);
            let result = match v.met {
                Some(true) => "met".to_string(),
                Some(false) => format!("**missed** ({})", v.why),
                None => "–".to_string(),
            };
            let _ = writeln!(
                t,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                c.name,
                WORKLOADS[cell.workload].name,
                with_range(cell.side(true, |s| s.iops), si),
                with_range(cell.side(false, |s| s.iops), si),
                ratio_text(cell.ratio(|s| s.iops)),
                with_range(cell.side(true, |s| s.bw), mib),
                with_range(cell.side(false, |s| s.bw), mib),
                ratio_text(cell.ratio(|s| s.bw)),
                with_range(cell.side(true, Sample::cpu_per_mreq), |x| format!("{x:.2}")),
                with_range(cell.side(false, Sample::cpu_per_mreq), |x| format!(
                    "{x:.2}"
                )),
                ratio_text(cell.ratio(Sample::cpu_per_mreq)),
                with_range(cell.side(true, Sample::switches_per_req), |x| format!(
                    "{x:.2}"
                )),
                with_range(cell.side(false, Sample::switches_per_req), |x| format!(
                    "{x:.2}"
                )),
                if v.target.is_empty() { "–" } else { v.target },
                result
            );
        }
        t
    }

    fn resources_table(&self) -> String {
        let mut t = String::new();
        t.push_str("| rustshim vs | peak RSS, rustshim | other | difference | start-up to first 4K read, rustshim (ms) | other (ms) |\n");
        t.push_str("|---|---|---|---|---|---|\n");
        for r in &self.resources {
            let c = self.comparison(r.comparison);
            let ms = |v: &Vec<f64>| with_range(Stats::of(v), |x| format!("{x:.1}"));
            let _ = writeln!(
                t,
                "| {} | {} | {} | {} | {} | {} |",
                if c.key == "control" {
                    "A/A control (C null / C null)".to_string()
                } else {
                    format!("{} ({} / {})", c.name, c.shim.label(), c.other.label())
                },
                kib(r.rss.0 as i64),
                kib(r.rss.1 as i64),
                signed_kib(r.rss.0 as i64 - r.rss.1 as i64),
                ms(&r.startup.0),
                ms(&r.startup.1)
            );
        }
        t
    }

    fn instructions_table(&self) -> Option<String> {
        let results = self.instructions.as_ref()?;
        let of = |kind: Kind| results.iter().map(|r| &r.0).find(|r| r.kind == kind);
        let mut t = String::new();
        t.push_str("| server | instructions per 4K read | second run | in nbdkit | in libc | in the shim | in the plugin | elsewhere |\n");
        t.push_str("|---|---|---|---|---|---|---|---|\n");
        for (r, second) in results {
            let _ = writeln!(
                t,
                "| {} | **{:.0}** | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
                r.kind.label(),
                r.total,
                second,
                r.parts[0],
                r.parts[1],
                r.parts[2],
                r.parts[3],
                r.parts[4]
            );
        }
        for (a, b) in [
            (Kind::ShimNull, Kind::CNull),
            (Kind::ShimMemory, Kind::CMemory),
            (Kind::ShimMemory, Kind::Crate),
        ] {
            let (Some(a), Some(b)) = (of(a), of(b)) else {
                continue;
            };
            let _ = writeln!(
                t,
                "| {} − {} | **{:+.0}** ({:+.1} %) | | {:+.0} | {:+.0} | {:+.0} | {:+.0} | {:+.0} |",
                a.kind.label(),
                b.kind.label(),
                a.total - b.total,
                (a.total / b.total - 1.0) * 100.0,
                a.parts[0] - b.parts[0],
                a.parts[1] - b.parts[1],
                a.parts[2] - b.parts[2],
                a.parts[3] - b.parts[3],
                a.parts[4] - b.parts[4]
            );
        }
        Some(t)
    }

    /// The targets, one line each, then what has no target but explains the rest.
    fn targets(&self) -> String {
        let mut lines = Vec::new();
        let mut line = |met: bool, text: String| {
            lines.push(format!(
                "- {} {text}",
                if met { "**met**:" } else { "**missed**:" }
            ))
        };
        // The judged cells of one comparison.
        let cells_of = |key: &str| -> Vec<&Cell> {
            self.cells
                .iter()
                .filter(|c| self.comparison(c.comparison).key == key && self.judged(c.workload))
                .collect()
        };
        // The cell whose median ratio is lowest (or highest), with that ratio.
        let worst =
            |cells: &[&Cell], f: &dyn Fn(&Cell) -> Stats, lowest: bool| -> (Stats, String) {
                let mut found: Option<(Stats, String)> = None;
                for c in cells {
                    let r = f(c);
                    let better = |old: &Stats| {
                        if lowest {
                            r.median < old.median
                        } else {
                            r.median > old.median
                        }
                    };
                    if found.as_ref().is_none_or(|(old, _)| better(old)) {
                        found = Some((r, WORKLOADS[c.workload].name.to_string()));
                    }
                }
                found.unwrap_or((Stats::of(&[]), String::new()))
            };
        // Whether a miss is within what this many pairs on this machine can tell apart.
        let unresolved = |r: Stats, bound: f64| {
            if r.ci.0 <= bound && bound <= r.ci.1 {
                "; the target lies inside that interval: the run cannot tell this ratio from the target"
            } else {
                ""
            }
        };
        let judged = self
            .settings
            .workloads
            .iter()
            .filter(|&&w| self.judged(w))
            .count();
        let every = format!("every pinned workload ({judged})");
        for key in ["null", "memory"] {
            let cells = cells_of(key);
            if cells.is_empty() {
                continue;
            }
            let iops = worst(&cells, &|c| c.ratio(|s| s.iops), true);
            let bw = worst(&cells, &|c| c.ratio(|s| s.bw), true);
            line(
                iops.0.median >= TWIN_MIN && bw.0.median >= TWIN_MIN,
                format!(
                    "rustshim {key} ≥ 0.99× C {key} in IOPS and bandwidth (median of per-pair ratios), {every}: lowest IOPS ratio {} ({}{}), lowest bandwidth ratio {} ({})",
                    with_ci(iops.0),
                    iops.1,
                    if iops.0.median < TWIN_MIN { unresolved(iops.0, TWIN_MIN) } else { "" },
                    with_ci(bw.0),
                    bw.1
                ),
            );
            let cpu = worst(&cells, &|c| c.ratio(Sample::cpu_per_mreq), false);
            line(
                cpu.0.median <= TWIN_CPU_MAX,
                format!(
                    "server CPU per request, rustshim {key} ≤ 1.03× C {key}, {every}: highest ratio {} ({}{})",
                    with_ci(cpu.0),
                    cpu.1,
                    if cpu.0.median > TWIN_CPU_MAX { unresolved(cpu.0, TWIN_CPU_MAX) } else { "" },
                ),
            );
        }
        let crate_cells = cells_of("nbdkit crate");
        if !crate_cells.is_empty() {
            let iops = worst(&crate_cells, &|c| c.ratio(|s| s.iops), true);
            let bw = worst(&crate_cells, &|c| c.ratio(|s| s.bw), true);
            line(
                iops.0.median >= 1.0 && bw.0.median >= 1.0,
                format!(
                    "rustshim memory at least as fast as the same RAM disk written with the `nbdkit` crate, {every}: lowest IOPS ratio {} ({}{}), lowest bandwidth ratio {} ({})",
                    with_ci(iops.0),
                    iops.1,
                    if iops.0.median < 1.0 { unresolved(iops.0, 1.0) } else { "" },
                    with_ci(bw.0),
                    bw.1
                ),
            );
        }
        let python = |w: usize| {
            self.cells
                .iter()
                .find(|c| self.comparison(c.comparison).target == Target::Python && c.workload == w)
        };
        if let Some(cell) = python(PYTHON_WORKLOAD) {
            let r = cell.ratio(|s| s.iops);
            let pinned = python(RANDREAD)
                .map(|c| {
                    let p = c.ratio(|s| s.iops);
                    format!(
                        "; pinned, with each server confined to one CPU, {:.2}× (95 % CI {:.2}–{:.2})",
                        p.median, p.ci.0, p.ci.1
                    )
                })
                .unwrap_or_default();
            line(
                r.median >= PYTHON_MIN,
                format!(
                    "rustshim memory ≥ 3.5× the python RAM disk's 4K random-read IOPS (QD32, client and server sharing the CPUs, as deployed): {:.2}× (95 % CI {:.2}–{:.2}){pinned}",
                    r.median, r.ci.0, r.ci.1
                ),
            );
        }
        if let Some(r) = self
            .resources
            .iter()
            .find(|r| self.comparison(r.comparison).key == "null")
        {
            let overhead = r.rss.0 as i64 - r.rss.1 as i64;
            line(
                overhead < RSS_OVERHEAD_MAX_KIB,
                format!(
                    "shim RSS overhead under 4 MiB (peak RSS, rustshim null − C null, after all workloads): {}",
                    signed_kib(overhead)
                ),
            );
        }
        let control = cells_of("control");
        if !control.is_empty() {
            let medians: Vec<f64> = control.iter().map(|c| c.ratio(|s| s.iops).median).collect();
            let pairs: Vec<f64> = control
                .iter()
                .flat_map(|c| [c.ratio(|s| s.iops).min, c.ratio(|s| s.iops).max])
                .collect();
            let (m, p) = (Stats::of(&medians), Stats::of(&pairs));
            let cpu: Vec<f64> = control
                .iter()
                .map(|c| c.ratio(Sample::cpu_per_mreq).median)
                .collect();
            let cpu = Stats::of(&cpu);
            lines.push(format!(
                "- (no target; the noise floor) the A/A control, C null against an identical C null, \
                 pinned workloads: median IOPS ratios {:.3}–{:.3} (single pairs {:.3}–{:.3}), \
                 median CPU ratios {:.3}–{:.3}. Differences of that size between rustshim and the \
                 others are the machine's load, not the shim",
                m.min, m.max, p.min, p.max, cpu.min, cpu.max
            ));
        }
        // The unpinned workloads, comparison by comparison.
        for &w in &self.settings.workloads {
            if self.judged(w) {
                continue;
            }
            let parts: Vec<String> = self
                .cells
                .iter()
                .filter(|c| {
                    c.workload == w && self.comparison(c.comparison).target != Target::Python
                })
                .map(|c| {
                    let cmp = self.comparison(c.comparison);
                    let r = c.ratio(|s| s.iops);
                    let who = if cmp.key == "control" {
                        "A/A control".to_string()
                    } else {
                        format!("{} ÷ {}", cmp.shim.label(), cmp.other.label())
                    };
                    format!(
                        "{who} {} (single pairs {:.3}–{:.3}; context switches per request {:.1} vs {:.1})",
                        with_ci(r),
                        r.min,
                        r.max,
                        c.side(true, Sample::switches_per_req).median,
                        c.side(false, Sample::switches_per_req).median
                    )
                })
                .collect();
            let why = if WORKLOADS[w].jobs > 1 {
                format!(
                    " Unpinned, fio and nbdkit's 64 worker threads share the {} CPUs. When this \
                     was looked into (README, Performance), single runs settled either in a fast \
                     mode or in a slow one with several times the context switches per request, \
                     C null against C null included, and a plugin that serialises its requests (C \
                     memory takes one mutex for every read and write) reached the fast mode more \
                     often; rustshim memory locks per page, so that requests on different pages \
                     run in parallel where there are CPUs to spare",
                    self.machine.cores
                )
            } else {
                String::new()
            };
            lines.push(format!(
                "- (no target; client and server sharing the CPUs) {}, IOPS ratios: {}.{why}",
                WORKLOADS[w].name,
                parts.join("; ")
            ));
        }
        if let Some(results) = &self.instructions {
            let of = |kind: Kind| results.iter().map(|r| &r.0).find(|r| r.kind == kind);
            if let (Some(shim), Some(c)) = (of(Kind::ShimNull), of(Kind::CNull)) {
                lines.push(format!(
                    "- (no target; deterministic) instructions per 4K read, rustshim null − C null: \
                     {:+.0} ({:+.2} %), of which {:.0} in the shim and {:.0} in the Rust plugin",
                    shim.total - c.total,
                    (shim.total / c.total - 1.0) * 100.0,
                    shim.parts[2],
                    shim.parts[3]
                ));
            }
        }
        lines.join("\n")
    }

    fn markdown(&self) -> String {
        let m = &self.machine;
        let s = self.settings;
        let mut md = String::new();
        let _ = writeln!(md, "# Benchmarks: what the shim costs\n");
        let _ = writeln!(
            md,
            "Generated by `cargo xtask bench` on {} in {} min {} s (`xtask/src/bench.rs`; \
             `cargo xtask bench --quick` is a smoke run of a few seconds that writes nothing). \
             Chart of the ratios: [benchmarks.svg](benchmarks.svg).\n",
            m.date,
            self.elapsed.as_secs() / 60,
            self.elapsed.as_secs() % 60
        );
        let _ = writeln!(
            md,
            "**Read with care: the machine is a small shared VM** (load average {} at the start, \
             {} at the end, on {} cores), and other tenants' load moves every figure. Every \
             comparison is therefore interleaved: the two servers run side by side and fio \
             alternates between them, A B, B A, A B, … ({} pairs of {} s runs per cell), so both \
             see the same background load; each figure is the median with its min–max range, \
             and each ratio is the median of the per-pair ratios (rustshim ÷ other, so above 1 \
             means rustshim served more; for CPU, above 1 means rustshim used more), given in \
             the targets with a 95 % confidence interval of that median (distribution-free: \
             order statistics of the pairs). The first comparison is an A/A control, two \
             identical C null servers measured the same way: how far its ratios stray from 1 is \
             what the load does on its own. {} The instruction counts (callgrind) are the one \
             figure the noise cannot touch.\n",
            m.load_start,
            self.load_end,
            m.cores,
            s.reps,
            s.runtime,
            match &self.env.placement {
                Some(p) => format!(
                    "In the pinned workloads fio runs on CPU {} and every nbdkit thread on CPU {} \
                     (`taskset`), so the server is the bottleneck on a CPU of its own and its \
                     IOPS measure its cost per request: the targets for the C twins and the \
                     `nbdkit` crate are judged on these. The two unpinned workloads repeat the \
                     4K random reads with client and server sharing CPUs {} as the kernel sees \
                     fit, as where nbdkit is deployed: the python target is judged on the first \
                     of them.",
                    p.client, p.server, p.all
                ),
                None => "This machine has one CPU, so nothing is pinned.".to_string(),
            }
        );
        let _ = writeln!(md, "## Machine and versions\n");
        let _ = writeln!(
            md,
            "- CPU: {}, {} cores; memory {}; Linux {}",
            m.cpu, m.cores, m.memory, m.kernel
        );
        let _ = writeln!(md, "- {}; fio: {}; {}", m.nbdkit, m.fio, m.valgrind);
        let _ = writeln!(
            md,
            "- {}; the shim, its plugins and the `nbdkit`-crate plugin built with the release profile\n",
            m.rustc
        );
        let _ = writeln!(md, "## Targets\n\n{}\n", self.targets());
        let _ = writeln!(md, "## Throughput and server CPU\n");
        let _ = writeln!(
            md,
            "fio's IOPS and bandwidth; server CPU is the nbdkit process's user + system time \
             (`/proc/PID/stat`, all threads) during the run, divided by the requests fio \
             completed, in seconds per million requests. Context switches are the whole \
             machine's (`ctxt` in `/proc/stat`: fio's count as much as nbdkit's) during the run, \
             per request. Each cell: median (min–max) of {} runs per side.\n",
            s.reps
        );
        md.push_str(&self.throughput_table());
        let _ = writeln!(md, "\n![per-pair IOPS ratios](benchmarks.svg)\n");
        let _ = writeln!(md, "## Memory and start-up\n");
        let _ = writeln!(
            md,
            "Peak RSS is the server's `VmHWM` (`/proc/PID/status`) after all the workloads of \
             its comparison (for RAM disks it includes the 1 GiB written). Start-up is the time \
             from spawning nbdkit to the first 4 KiB read answered on its socket (a minimal NBD \
             client retrying every millisecond), median (min–max) of {} interleaved starts per \
             side.\n",
            s.startup_reps
        );
        md.push_str(&self.resources_table());
        if let Some(table) = self.instructions_table() {
            let _ = writeln!(md, "\n## Instructions per request (deterministic)\n");
            let _ = writeln!(
                md,
                "Each server runs under `valgrind --tool=callgrind` (size=1G) and serves one \
                 connection of a minimal NBD client: {} MiB written in 256 KiB requests and {} \
                 reads of 4 KiB over them; then callgrind's counters are zeroed \
                 (`callgrind_control --zero`), the client makes {} more 4 KiB reads, and \
                 `callgrind_control --dump` records what they cost. The instructions executed by \
                 the whole server (every thread) divided by {} are the cost of one 4 KiB read, \
                 from receiving the request to sending the reply, in user space (a system call \
                 counts as the few instructions that issue it). Unlike the fio figures this does \
                 not move with the machine's load: each server is counted twice to show it. By \
                 object: nbdkit itself, libc (the 4 KiB memset or memcpy, locks, socket calls), \
                 the shim (`{}`), and the plugin (nbdkit's C plugin, the Rust plugin behind the \
                 shim, or the `nbdkit`-crate plugin).\n",
                CALLGRIND_REGION >> 20,
                CALLGRIND_WARMUP,
                CALLGRIND_READS,
                CALLGRIND_READS,
                SHIM
            );
            md.push_str(&table);
        }
        let _ = writeln!(md, "\n## Method: the exact commands\n");
        let _ = writeln!(
            md,
            "`$BENCH` is a scratch directory (`$TMPDIR/rustshim-bench-PID`); paths are relative \
             to the workspace. Each comparison starts its two servers the same way, on Unix \
             sockets, with nbdkit's default `--threads`{}:\n",
            match &self.env.placement {
                Some(p) => format!(
                    "; before each pinned run, `taskset -a -p -c {} PID` moves every thread of \
                     the server onto CPU {} (and `taskset -a -p -c {} PID` back before an \
                     unpinned one)",
                    p.server, p.server, p.all
                ),
                None => String::new(),
            }
        );
        md.push_str("```\n");
        let mut kinds: Vec<Kind> = Vec::new();
        for c in &s.comparisons {
            for k in [c.shim, c.other] {
                if !kinds.contains(&k) {
                    kinds.push(k);
                }
            }
        }
        let socket = self.env.dir.join("srvN/nbd.sock");
        let pidfile = self.env.dir.join("srvN/nbdkit.pid");
        for &k in &kinds {
            let cmd = server_command(self.env, k, &[], &socket, &pidfile);
            let _ = writeln!(md, "{}", self.shown_command(&cmd));
        }
        md.push_str("```\n\n");
        let _ = writeln!(
            md,
            "RAM disks (C memory, rustshim memory, the `nbdkit`-crate disk, the python disk) are \
             first written whole, so that reads hit allocated pages; every server then gets a 1 s \
             warm-up run. The file comparison serves a 1 GiB file of pseudo-random bytes that was \
             read once just before, so it is in the page cache. Then, per workload ({} pairs, A B, \
             B A, …):\n",
            s.reps
        );
        md.push_str("```\n");
        let _ = writeln!(
            md,
            "{}   # RAM disks, once",
            self.shown_command(&fio_prewrite(&socket))
        );
        for &w in &s.workloads {
            let _ = writeln!(
                md,
                "{}",
                self.shown_command(&fio_command(
                    &socket,
                    &WORKLOADS[w],
                    s.runtime,
                    self.env
                        .placement
                        .as_ref()
                        .filter(|_| WORKLOADS[w].pinned)
                        .map(|p| p.client.as_str())
                ))
            );
        }
        if self.instructions.is_some() {
            let wrapper: Vec<OsString> = vec![
                "valgrind".into(),
                "--tool=callgrind".into(),
                "--callgrind-out-file=$BENCH/callgrind.out".into(),
            ];
            for k in CALLGRIND_KINDS {
                let cmd = server_command(self.env, k, &wrapper, &socket, &pidfile);
                let _ = writeln!(md, "{}", self.shown_command(&cmd));
            }
            let _ = writeln!(
                md,
                "callgrind_control --zero PID   # after the writes and {CALLGRIND_WARMUP} reads\n\
                 callgrind_control --dump PID   # after {CALLGRIND_READS} more reads"
            );
        }
        md.push_str("```\n\n");
        let _ = writeln!(
            md,
            "The `nbdkit`-crate RAM disk is `bench/nbdkit-crate-ramdisk` (the registry's `nbdkit` \
             0.3.0; sparse 32 KiB pages, one read-write lock per page, like rustshim's memory \
             plugin). The python RAM disk (`$BENCH/ramdisk.py`):\n"
        );
        let _ = writeln!(md, "```python\n{}```", PYTHON_RAMDISK);
        md
    }

    fn shown_command(&self, cmd: &Command) -> String {
        std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| {
                let shown = self.env.shown(a);
                if shown.contains(['?', ' ', '*', '\'']) {
                    format!("\"{shown}\"")
                } else {
                    shown
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Bars of the per-pair IOPS ratios, grouped by comparison, coloured by workload: one panel
    /// for the comparisons near 1 and one for python.
    fn svg(&self) -> String {
        const COLOURS: [&str; 7] = [
            "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#9c755f",
        ];
        let width = 1100.0;
        let mut svg = String::new();
        let groups = |python: bool| -> Vec<(usize, Vec<&Cell>)> {
            (0..self.settings.comparisons.len())
                .filter(|&i| (self.comparison(i).target == Target::Python) == python)
                .map(|i| (i, self.cells.iter().filter(|c| c.comparison == i).collect()))
                .collect()
        };
        let near = groups(false);
        let far = groups(true);
        let panel_h = 330.0;
        // The legend, in as many rows as it needs: (x, row) of each workload's swatch.
        let mut legend = Vec::new();
        let (mut x, mut row) = (20.0, 0.0);
        for &w in &self.settings.workloads {
            let item = 16.0 + 6.6 * WORKLOADS[w].name.chars().count() as f64 + 18.0;
            if x + item > width - 20.0 && x > 20.0 {
                (x, row) = (20.0, row + 1.0);
            }
            legend.push((x, row));
            x += item;
        }
        let top = 80.0 + 18.0 * row;
        let height = top + 10.0 + panel_h + if far.is_empty() { 0.0 } else { panel_h + 40.0 };
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            svg,
            r#"<text x="20" y="24" font-size="16" font-weight="bold">rustshim ÷ other: IOPS, median of per-pair ratios (whiskers: min–max)</text>"#
        );
        let _ = writeln!(
            svg,
            r##"<text x="20" y="44" fill="#555">Above the 1.0 line rustshim served more. {}; {} pairs of {} s runs per bar.</text>"##,
            self.machine.date, self.settings.reps, self.settings.runtime
        );
        for (i, (&w, &(x, row))) in self.settings.workloads.iter().zip(&legend).enumerate() {
            let _ = writeln!(
                svg,
                r#"<rect x="{x:.1}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
                56.0 + 18.0 * row,
                COLOURS[i % COLOURS.len()],
                x + 16.0,
                66.0 + 18.0 * row,
                escape(WORKLOADS[w].name)
            );
        }
        self.svg_panel(
            &mut svg,
            &near,
            top,
            panel_h,
            width,
            &[(TWIN_MIN, "0.99 target")],
        );
        if !far.is_empty() {
            self.svg_panel(
                &mut svg,
                &far,
                top + panel_h + 40.0,
                panel_h,
                width,
                &[(PYTHON_MIN, "3.5 target")],
            );
        }
        svg.push_str("</svg>\n");
        svg
    }

    fn svg_panel(
        &self,
        svg: &mut String,
        groups: &[(usize, Vec<&Cell>)],
        top: f64,
        height: f64,
        width: f64,
        marks: &[(f64, &str)],
    ) {
        const COLOURS: [&str; 7] = [
            "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#9c755f",
        ];
        let stats: Vec<Vec<Stats>> = groups
            .iter()
            .map(|(_, cells)| cells.iter().map(|c| c.ratio(|s| s.iops)).collect())
            .collect();
        let all: Vec<f64> = stats
            .iter()
            .flatten()
            .flat_map(|s| [s.min, s.max])
            .filter(|x| x.is_finite())
            .chain(marks.iter().map(|m| m.0))
            .collect();
        let lo_data = all.iter().copied().fold(1.0, f64::min);
        let hi_data = all.iter().copied().fold(1.0, f64::max);
        let step = if hi_data > 2.0 {
            0.5
        } else if hi_data - lo_data > 0.4 {
            0.1
        } else {
            0.05
        };
        let lo = if hi_data > 2.0 {
            0.0
        } else {
            ((lo_data.min(0.9) - 0.02) / step).floor() * step
        };
        let hi = ((hi_data.max(1.1) + 0.02) / step).ceil() * step;
        let (left, right) = (70.0, width - 90.0);
        let (plot_top, plot_bottom) = (top + 10.0, top + height - 40.0);
        let y =
            |v: f64| plot_bottom - (v.clamp(lo, hi) - lo) / (hi - lo) * (plot_bottom - plot_top);
        // Grid and axis labels.
        let mut v = lo;
        while v <= hi + 1e-9 {
            let _ = writeln!(
                svg,
                r##"<line x1="{left}" x2="{right}" y1="{0:.1}" y2="{0:.1}" stroke="#e5e5e5"/><text x="{1}" y="{2:.1}" text-anchor="end" fill="#555">{v:.2}</text>"##,
                y(v),
                left - 6.0,
                y(v) + 4.0
            );
            v += step;
        }
        for (value, label) in marks {
            let _ = writeln!(
                svg,
                r##"<line x1="{left}" x2="{right}" y1="{0:.1}" y2="{0:.1}" stroke="#c00" stroke-dasharray="6 4"/><text x="{1}" y="{2:.1}" fill="#c00">{label}</text>"##,
                y(*value),
                right + 6.0,
                y(*value) + 4.0
            );
        }
        let group_w = (right - left) / groups.len().max(1) as f64;
        for (g, ((index, cells), stats)) in groups.iter().zip(&stats).enumerate() {
            let c = self.comparison(*index);
            let gx = left + g as f64 * group_w;
            let bar_w = ((group_w - 30.0) / cells.len().max(1) as f64).min(60.0);
            // The bars of a group are centred in it.
            let bars_x = gx + (group_w - 30.0 - bar_w * cells.len() as f64) / 2.0;
            for (b, (cell, s)) in cells.iter().zip(stats).enumerate() {
                let colour = COLOURS[self
                    .settings
                    .workloads
                    .iter()
                    .position(|&w| w == cell.workload)
                    .unwrap_or(0)
                    % COLOURS.len()];
                let x = bars_x + 15.0 + b as f64 * bar_w;
                let (y0, y1) = (y(1.0), y(s.median));
                let _ = writeln!(
                    svg,
                    r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{colour}"/>"#,
                    y0.min(y1),
                    bar_w - 4.0,
                    (y1 - y0).abs().max(1.0)
                );
                let mid = x + (bar_w - 4.0) / 2.0;
                let (lo_y, hi_y, cap0, cap1) = (y(s.min), y(s.max), mid - 4.0, mid + 4.0);
                let _ = writeln!(
                    svg,
                    r##"<line x1="{mid:.1}" x2="{mid:.1}" y1="{lo_y:.1}" y2="{hi_y:.1}" stroke="#333"/><line x1="{cap0:.1}" x2="{cap1:.1}" y1="{lo_y:.1}" y2="{lo_y:.1}" stroke="#333"/><line x1="{cap0:.1}" x2="{cap1:.1}" y1="{hi_y:.1}" y2="{hi_y:.1}" stroke="#333"/>"##
                );
                let label_y = if s.median >= 1.0 {
                    y(s.max) - 5.0
                } else {
                    y(s.min) + 14.0
                };
                let _ = writeln!(
                    svg,
                    r#"<text x="{mid:.1}" y="{label_y:.1}" text-anchor="middle" font-size="10">{:.3}</text>"#,
                    s.median
                );
            }
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-weight="bold">{}</text>"#,
                gx + group_w / 2.0,
                plot_bottom + 24.0,
                if c.key == "control" {
                    "A/A control (C null ÷ C null)".to_string()
                } else {
                    format!("vs {}", escape(c.name))
                }
            );
        }
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" x2="{right}" y1="{0:.1}" y2="{0:.1}" stroke="#000" stroke-width="1.5"/>"##,
            y(1.0)
        );
    }
}

fn signed_kib(k: i64) -> String {
    if k >= 0 {
        format!("+{}", kib(k))
    } else {
        format!("−{}", kib(-k))
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_confidence_ranks_match_the_binomial_tables() {
        // From tables of the sign test: the 95 % interval of the median of n values runs from
        // the (k+1)th smallest to the (k+1)th largest.
        for (n, k) in [
            (1, 0),
            (5, 0),
            (6, 0),
            (9, 1),
            (12, 2),
            (16, 3),
            (20, 5),
            (30, 9),
        ] {
            assert_eq!(median_ci_rank(n), k, "n = {n}");
        }
    }

    #[test]
    fn stats_of_sixteen_values() {
        let values: Vec<f64> = (1..=16).rev().map(f64::from).collect();
        let s = Stats::of(&values);
        assert_eq!(
            (s.median, s.min, s.max, s.ci),
            (8.5, 1.0, 16.0, (4.0, 13.0))
        );
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-1"), Some(vec![0, 1]));
        assert_eq!(parse_cpu_list("0,2-4,7"), Some(vec![0, 2, 3, 4, 7]));
        assert_eq!(parse_cpu_list("x"), None);
    }
}
