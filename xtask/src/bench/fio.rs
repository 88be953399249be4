//! fio: its command lines, and what we read of its JSON output.

use std::path::Path;
use std::process::Command;

use serde::Deserialize;

use super::matrix::Workload;
use super::Result;

/// `fio` (or `taskset -c CPU fio`, pinned to `client_cpu`) on the NBD server at `socket`.
fn fio(socket: &Path, client_cpu: Option<&str>) -> Command {
    let mut cmd = match client_cpu {
        Some(cpu) => {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", cpu, "fio"]);
            cmd
        }
        None => Command::new("fio"),
    };
    cmd.arg("--name=bench")
        .arg("--ioengine=nbd")
        .arg(format!("--uri=nbd+unix:///?socket={}", socket.display()));
    cmd
}

/// fio for workload `w`; pinned to `client_cpu` (through `taskset`) when given.
pub fn fio_command(socket: &Path, w: &Workload, runtime: u32, client_cpu: Option<&str>) -> Command {
    let mut cmd = fio(socket, client_cpu);
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
pub fn fio_prewrite(socket: &Path) -> Command {
    let mut cmd = fio(socket, None);
    cmd.args([
        "--rw=write",
        "--bs=1M",
        "--iodepth=8",
        "--output-format=json",
    ]);
    cmd
}

/// What one fio run did, reads and writes together.
pub struct FioResult {
    pub iops: f64,
    /// Bytes per second.
    pub bw: f64,
    /// Requests completed.
    pub ios: u64,
}

/// The part of fio's `--output-format=json` that we read.
#[derive(Deserialize)]
struct Output {
    /// One job: every run uses `--group_reporting`, or one job alone.
    jobs: Vec<Job>,
}

#[derive(Deserialize)]
struct Job {
    #[serde(default)]
    error: i64,
    #[serde(default)]
    read: Direction,
    #[serde(default)]
    write: Direction,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Direction {
    iops: f64,
    bw_bytes: f64,
    total_ios: u64,
}

/// Runs fio as the harness runs every outside program (inside `RUSTSHIM_ROOT`, if set): `cmd`
/// (from [`fio_command`] or [`fio_prewrite`]) says what, and is what the report shows.
pub fn run_fio(cmd: &Command) -> Result<FioResult> {
    let out = rustshim_harness::command(cmd.get_program())
        .args(cmd.get_args())
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
    parse(&stdout)
}

fn parse(stdout: &str) -> Result<FioResult> {
    // The nbd engine prints "fio: connected to NBD server" before the JSON.
    let json = stdout
        .find("\n{")
        .map(|i| &stdout[i + 1..])
        .or_else(|| stdout.strip_prefix('{').map(|_| stdout))
        .ok_or_else(|| format!("no JSON in fio's output: {stdout}"))?;
    let output: Output = serde_json::from_str(json).map_err(|e| format!("fio's JSON: {e}"))?;
    let job = output.jobs.first().ok_or("fio's JSON has no job")?;
    if job.error != 0 {
        return Err(format!("fio reported error {}", job.error));
    }
    Ok(FioResult {
        iops: job.read.iops + job.write.iops,
        bw: job.read.bw_bytes + job.write.bw_bytes,
        ios: job.read.total_ios + job.write.total_ios,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fio_json_after_the_nbd_engine_line() {
        let stdout = "fio: connected to NBD server\n{\"fio version\": \"fio-3.33\", \"jobs\": [\
            {\"jobname\": \"bench\", \"error\": 0, \
             \"read\": {\"iops\": 1000.5, \"bw_bytes\": 4098048, \"total_ios\": 1001}, \
             \"write\": {\"iops\": 0.0, \"bw_bytes\": 0, \"total_ios\": 0}}]}";
        let r = parse(stdout).unwrap();
        assert_eq!((r.iops, r.bw, r.ios), (1000.5, 4098048.0, 1001));
        let failed = parse("{\"jobs\": [{\"error\": 5}]}").err();
        assert!(failed.is_some_and(|e| e.contains("error 5")));
    }
}
