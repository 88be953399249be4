//! Where client and server run.

use std::fs;

use super::Result;

/// Which CPUs fio and nbdkit run on for a pinned workload: fio on the first CPU we may use,
/// nbdkit (every thread) on the rest. On a 2-CPU machine where fio and 64 nbdkit threads
/// otherwise share both CPUs, the run-to-run spread comes mostly from how the scheduler happens
/// to interleave them; apart, the server is the bottleneck on a CPU of its own, so its IOPS are
/// what its cost per request allows — which is what a comparison of plugins is after.
pub struct Placement {
    pub client: String,
    pub server: String,
    /// Every CPU we may use (for the unpinned workloads).
    pub all: String,
}

impl Placement {
    pub fn probe() -> Option<Placement> {
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
pub fn set_affinity(pid: i32, cpus: &str) -> Result {
    let out = rustshim_harness::command("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-1"), Some(vec![0, 1]));
        assert_eq!(parse_cpu_list("0,2-4,7"), Some(vec![0, 2, 3, 4, 7]));
        assert_eq!(parse_cpu_list("x"), None);
    }
}
