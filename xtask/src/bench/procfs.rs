//! What the kernel says about the server and the machine while it serves (`/proc`).

use std::fs;

use super::Result;

/// CPU time (user + system, all threads, including finished ones) of a process, in seconds.
pub fn cpu_seconds(pid: i32) -> Result<f64> {
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
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .ok_or("sysconf(_SC_CLK_TCK) has no value")? as f64;
    Ok((ticks(11)? + ticks(12)?) / hz)
}

/// Peak resident set size (VmHWM), in KiB.
pub fn peak_rss_kib(pid: i32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no VmHWM in {path}"))
}

/// Context switches on the whole machine so far (`ctxt` in `/proc/stat`). The server's own are
/// not enough: its worker threads end with their connections, taking their counts with them,
/// and fio's switches are part of the story.
pub fn context_switches() -> Result<u64> {
    let stat =
        fs::read_to_string("/proc/stat").map_err(|e| format!("cannot read /proc/stat: {e}"))?;
    stat.lines()
        .find_map(|l| l.strip_prefix("ctxt "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "no ctxt line in /proc/stat".into())
}
