//! The machine and the versions of what runs, as BENCHMARKS.md describes them.

use std::ffi::OsStr;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

/// The machine, as BENCHMARKS.md describes it.
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory: String,
    pub kernel: String,
    pub load_start: String,
    pub nbdkit: String,
    pub rustc: String,
    pub fio: String,
    pub valgrind: String,
    pub date: String,
}

impl Machine {
    pub fn probe() -> Machine {
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
            // What the bench runs, where it runs it (inside RUSTSHIM_ROOT, if set).
            nbdkit: first_line(
                rustshim_harness::command(rustshim_harness::nbdkit_program()).arg("--version"),
            ),
            rustc: first_line(host(rustc).arg("--version")),
            fio: first_line(rustshim_harness::command("fio").arg("--version")),
            valgrind: first_line(rustshim_harness::command("valgrind").arg("--version")),
            date: first_line(host("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])),
        }
    }
}

/// A program of the host itself, with the harness's `PATH`.
fn host(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("PATH", rustshim_harness::path_env());
    cmd
}

/// The first line `cmd` prints, or `unknown`.
fn first_line(cmd: &mut Command) -> String {
    cmd.output()
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
pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
