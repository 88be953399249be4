//! The report: the verdict of each target, the tables (terminal and BENCHMARKS.md), the
//! targets in words (`targets`), BENCHMARKS.md itself (`markdown`) and the chart (`svg`).

pub mod format;
mod markdown;
mod svg;
mod targets;

use std::fmt::Write as _;
use std::time::Duration;

use super::callgrind::{Instructions, Part};
use super::env::Env;
use super::machine::Machine;
use super::matrix::{
    Kind, Settings, Target, Workload, PYTHON_MIN, PYTHON_WORKLOAD, TWIN_CPU_MAX, TWIN_MIN,
};
use super::measure::{Cell, Resources, Sample};
use super::sections::Stamp;
use super::stats::Stats;
use format::{kib, mib, ratio_text, si, signed_kib, with_ci, with_range};

/// A target's verdict for one cell.
struct Verdict {
    target: &'static str,
    /// `None`: no target for this cell.
    met: Option<bool>,
    why: String,
}

pub struct Report<'a> {
    pub settings: &'a Settings,
    /// The command, the commit, the date and the nbdkit, for each section's first line.
    pub stamp: &'a Stamp,
    pub env: &'a Env,
    pub machine: Machine,
    pub load_end: String,
    pub cells: Vec<Cell>,
    pub resources: Vec<Resources>,
    /// Per server: the first run, and the total of the second.
    pub instructions: Option<Vec<(Instructions, f64)>>,
    pub elapsed: Duration,
}

impl Report<'_> {
    /// Whether the targets judge this workload: the pinned ones (all of them on a machine where
    /// nothing can be pinned). The unpinned workload measures the scheduler as much as the
    /// servers: see `matrix::WORKLOADS`.
    fn judged(&self, workload: &Workload) -> bool {
        workload.pinned || self.env.placement.is_none()
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
        let (target, applies) = match cell.comparison.target {
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
            Target::Python if cell.workload.key == PYTHON_WORKLOAD => {
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

    pub fn throughput_table(&self) -> String {
        let mut t = table_head(&[
            "rustshim vs",
            "workload",
            "rustshim IOPS",
            "other IOPS",
            "IOPS ratio",
            "rustshim MiB/s",
            "other MiB/s",
            "MiB/s ratio",
            "server CPU s per M req, rustshim",
            "other",
            "CPU ratio",
            "context switches per req, rustshim",
            "other",
            "target",
            "result",
        ]);
        for cell in &self.cells {
            let c = cell.comparison;
            let v = self.verdict(cell);
            let result = match v.met {
                Some(true) => "met".to_string(),
                Some(false) => format!("**missed** ({})", v.why),
                None => "–".to_string(),
            };
            let two = |x: f64| format!("{x:.2}");
            let _ = writeln!(
                t,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                c.name,
                cell.workload.name,
                sides(cell, |s| s.iops, si),
                ratio_text(cell.ratio(|s| s.iops)),
                sides(cell, |s| s.bw, mib),
                ratio_text(cell.ratio(|s| s.bw)),
                sides(cell, Sample::cpu_per_mreq, two),
                ratio_text(cell.ratio(Sample::cpu_per_mreq)),
                sides(cell, Sample::switches_per_req, two),
                if v.target.is_empty() { "–" } else { v.target },
                result
            );
        }
        t
    }

    pub fn resources_table(&self) -> String {
        let mut t = table_head(&[
            "rustshim vs",
            "peak RSS, rustshim",
            "other",
            "difference",
            "start-up to first 4K read, rustshim (ms)",
            "other (ms)",
        ]);
        for r in &self.resources {
            let c = r.comparison;
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

    pub fn instructions_table(&self) -> Option<String> {
        let results = self.instructions.as_ref()?;
        let of = |kind: Kind| results.iter().map(|r| &r.0).find(|r| r.kind == kind);
        let mut columns = vec!["server", "instructions per 4K read", "second run"];
        columns.extend(Part::ALL.iter().map(|p| p.column()));
        let mut t = table_head(&columns);
        for (r, second) in results {
            let parts: Vec<String> = Part::ALL
                .iter()
                .map(|&p| format!("{:.0}", r.part(p)))
                .collect();
            let _ = writeln!(
                t,
                "| {} | **{:.0}** | {:.0} | {} |",
                r.kind.label(),
                r.total,
                second,
                parts.join(" | ")
            );
        }
        for (a, b) in INSTRUCTION_DIFFERENCES {
            let (Some(a), Some(b)) = (of(a), of(b)) else {
                continue;
            };
            let parts: Vec<String> = Part::ALL
                .iter()
                .map(|&p| format!("{:+.0}", a.part(p) - b.part(p)))
                .collect();
            let _ = writeln!(
                t,
                "| {} − {} | **{:+.0}** ({:+.1} %) | | {} |",
                a.kind.label(),
                b.kind.label(),
                a.total - b.total,
                (a.total / b.total - 1.0) * 100.0,
                parts.join(" | ")
            );
        }
        Some(t)
    }
}

/// The differences the instructions table shows, as (minuend, subtrahend).
const INSTRUCTION_DIFFERENCES: [(Kind, Kind); 5] = [
    (Kind::ShimNull, Kind::CNull),
    (Kind::ShimMemory, Kind::CMemory),
    (Kind::ShimMemory, Kind::Crate),
    (Kind::NullRustFilter, Kind::NullCFilter),
    (Kind::NullRustFilter, Kind::CNull),
];

/// One figure of a cell on both sides, as two columns: rustshim's, then the other's, each the
/// median with its range.
fn sides(
    cell: &Cell,
    f: impl Fn(&Sample) -> f64 + Copy,
    shown: impl Fn(f64) -> String + Copy,
) -> String {
    format!(
        "{} | {}",
        with_range(cell.side(true, f), shown),
        with_range(cell.side(false, f), shown)
    )
}

/// A markdown table's header row and the rule under it.
fn table_head(columns: &[&str]) -> String {
    format!(
        "| {} |\n|{}\n",
        columns.join(" | "),
        "---|".repeat(columns.len())
    )
}
