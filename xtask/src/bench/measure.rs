//! One comparison, measured: both servers side by side, fio alternating between them (A B,
//! B A, A B, ...) workload by workload, then their peak RSS and start-up times.

use std::time::{Duration, Instant};

use super::env::Env;
use super::fio::{fio_command, fio_prewrite, run_fio};
use super::matrix::{Comparison, Kind, Settings, Workload, RANDREAD};
use super::nbd::NbdClient;
use super::placement::set_affinity;
use super::procfs::{context_switches, cpu_seconds, peak_rss_kib};
use super::report::format::{kib, si};
use super::server::Server;
use super::stats::Stats;
use super::{interrupted, Result};

/// One fio run against one server.
#[derive(Clone, Copy)]
pub struct Sample {
    pub iops: f64,
    pub bw: f64,
    pub ios: u64,
    /// Server CPU seconds during the run.
    pub cpu: f64,
    /// Context switches on the whole machine during the run.
    pub switches: u64,
}

impl Sample {
    /// Server CPU seconds per million requests.
    pub fn cpu_per_mreq(&self) -> f64 {
        self.cpu / self.ios.max(1) as f64 * 1e6
    }

    /// Context switches (whole machine) per request.
    pub fn switches_per_req(&self) -> f64 {
        self.switches as f64 / self.ios.max(1) as f64
    }
}

/// One comparison × one workload: the interleaved samples of both sides.
pub struct Cell {
    pub comparison: &'static Comparison,
    pub workload: &'static Workload,
    pub shim: Vec<Sample>,
    pub other: Vec<Sample>,
}

impl Cell {
    pub fn side(&self, shim: bool, f: impl Fn(&Sample) -> f64) -> Stats {
        let samples = if shim { &self.shim } else { &self.other };
        Stats::of(&samples.iter().map(f).collect::<Vec<_>>())
    }

    /// rustshim ÷ other, pair by pair.
    pub fn ratio(&self, f: impl Fn(&Sample) -> f64) -> Stats {
        let ratios: Vec<f64> = self
            .shim
            .iter()
            .zip(&self.other)
            .map(|(a, b)| f(a) / f(b))
            .collect();
        Stats::of(&ratios)
    }
}

pub struct Resources {
    pub comparison: &'static Comparison,
    /// Peak RSS in KiB: rustshim, other.
    pub rss: (u64, u64),
    /// Start-up to the first read, in ms: rustshim, other.
    pub startup: (Vec<f64>, Vec<f64>),
}

/// `reps` interleaved pairs: `measure(true)` is rustshim's side, `measure(false)` the other's,
/// in the order A B, B A, A B, ... so that neither side always goes first. Returns both sides'
/// results.
fn interleaved<T>(
    reps: usize,
    mut measure: impl FnMut(bool) -> Result<T>,
) -> Result<(Vec<T>, Vec<T>)> {
    let (mut shim, mut other) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        let order = if rep % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for is_shim in order {
            interrupted()?;
            let result = measure(is_shim)?;
            if is_shim {
                shim.push(result);
            } else {
                other.push(result);
            }
        }
    }
    Ok((shim, other))
}

/// Runs every workload of one comparison, then measures start-up.
pub fn compare(
    env: &Env,
    settings: &Settings,
    comparison: &'static Comparison,
) -> Result<(Vec<Cell>, Resources)> {
    let (a, b) = (comparison.shim, comparison.other);
    println!("==> {} vs {}", a.label(), comparison.name);
    let shim = env.start(a, &[])?;
    let other = env.start(b, &[])?;
    for (server, kind) in [(&shim, a), (&other, b)] {
        prepare(server, kind, settings)?;
    }
    let mut cells = Vec::new();
    for &workload in &settings.workloads {
        let (shim_samples, other_samples) = interleaved(settings.reps, |is_shim| {
            let server = if is_shim { &shim } else { &other };
            measure(env, server, workload, settings.runtime)
        })?;
        let cell = Cell {
            comparison,
            workload,
            shim: shim_samples,
            other: other_samples,
        };
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

    let startup = interleaved(settings.startup_reps, |is_shim| {
        startup_ms(env, if is_shim { a } else { b })
    })?;
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
            comparison,
            rss,
            startup,
        },
    ))
}

/// Ram disks are written whole first (reads then hit allocated pages); every server gets a
/// short warm-up run.
fn prepare(server: &Server, kind: Kind, settings: &Settings) -> Result {
    if settings.quick {
        return Ok(());
    }
    if kind.keeps_data() {
        run_fio(&fio_prewrite(server.socket()))?;
    }
    run_fio(&fio_command(
        server.socket(),
        Workload::get(RANDREAD),
        1,
        None,
    ))?;
    Ok(())
}

/// One fio run of workload `w` against `server`, with the server's CPU time and the machine's
/// context switches during it.
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
    let fio = fio_command(server.socket(), w, runtime, client_cpu);
    let switches = context_switches()?;
    let before = cpu_seconds(server.pid())?;
    let result = run_fio(&fio)?;
    let after = cpu_seconds(server.pid())?;
    Ok(Sample {
        iops: result.iops,
        bw: result.bw,
        ios: result.ios,
        cpu: after - before,
        switches: context_switches()? - switches,
    })
}

/// Time from spawning nbdkit to the first 4 KiB read served.
fn startup_ms(env: &Env, kind: Kind) -> Result<f64> {
    let mut server = env.spawn(kind)?;
    let deadline = server.spawned() + Duration::from_secs(60);
    let mut buf = [0u8; 4096];
    loop {
        if let Ok(mut client) = NbdClient::connect(server.socket()) {
            if client.read(&mut buf, 0).is_ok() {
                let ms = server.spawned().elapsed().as_secs_f64() * 1e3;
                client.disconnect();
                server.stop()?;
                return Ok(ms);
            }
        }
        if let Some(status) = server.exited()? {
            return Err(format!(
                "{} exited ({status}) before serving: {}",
                kind.label(),
                server.log_text()
            ));
        }
        if Instant::now() > deadline {
            return Err(format!("{} served nothing within 60 s", kind.label()));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
