//! The targets in words: one line each, met or missed, then what has no target but explains
//! the rest.

use super::format::{signed_kib, with_ci};
use super::Report;
use crate::bench::callgrind::Part;
use crate::bench::matrix::{
    Kind, Target, PYTHON_MIN, PYTHON_WORKLOAD, RANDREAD, RSS_OVERHEAD_MAX_KIB, TWIN_CPU_MAX,
    TWIN_MIN,
};
use crate::bench::measure::{Cell, Sample};
use crate::bench::stats::Stats;

/// One target's line, met or missed.
fn verdict(met: bool, text: String) -> String {
    format!("- {} {text}", if met { "**met**:" } else { "**missed**:" })
}

/// The cell whose median ratio is lowest (or highest), with that ratio.
fn worst(cells: &[&Cell], f: &dyn Fn(&Cell) -> Stats, lowest: bool) -> (Stats, String) {
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
            found = Some((r, c.workload.name.to_string()));
        }
    }
    found.unwrap_or((Stats::of(&[]), String::new()))
}

/// Whether a miss is within what this many pairs on this machine can tell apart.
fn unresolved(r: Stats, bound: f64) -> &'static str {
    if r.ci.0 <= bound && bound <= r.ci.1 {
        "; the target lies inside that interval: the run cannot tell this ratio from the target"
    } else {
        ""
    }
}

impl Report<'_> {
    /// The targets, one line each, then what has no target but explains the rest.
    pub fn targets(&self) -> String {
        let judged = self
            .settings
            .workloads
            .iter()
            .filter(|w| self.judged(w))
            .count();
        let every = format!("every pinned workload ({judged})");
        let mut lines = self.twin_lines(&every);
        lines.extend(self.crate_lines(&every));
        lines.extend(self.python_lines());
        lines.extend(self.rss_lines());
        lines.extend(self.control_lines());
        lines.extend(self.unpinned_lines());
        lines.extend(self.instruction_lines());
        lines.join("\n")
    }

    /// The judged cells of one comparison.
    fn cells_of(&self, key: &str) -> Vec<&Cell> {
        self.cells
            .iter()
            .filter(|c| c.comparison.key == key && self.judged(c.workload))
            .collect()
    }

    /// rustshim null and memory against their C twins: throughput and CPU.
    fn twin_lines(&self, every: &str) -> Vec<String> {
        let mut lines = Vec::new();
        for key in ["null", "memory"] {
            let cells = self.cells_of(key);
            if cells.is_empty() {
                continue;
            }
            let iops = worst(&cells, &|c| c.ratio(|s| s.iops), true);
            let bw = worst(&cells, &|c| c.ratio(|s| s.bw), true);
            lines.push(verdict(
                iops.0.median >= TWIN_MIN && bw.0.median >= TWIN_MIN,
                format!(
                    "rustshim {key} ≥ 0.99× C {key} in IOPS and bandwidth (median of per-pair ratios), {every}: lowest IOPS ratio {} ({}{}), lowest bandwidth ratio {} ({})",
                    with_ci(iops.0),
                    iops.1,
                    if iops.0.median < TWIN_MIN { unresolved(iops.0, TWIN_MIN) } else { "" },
                    with_ci(bw.0),
                    bw.1
                ),
            ));
            let cpu = worst(&cells, &|c| c.ratio(Sample::cpu_per_mreq), false);
            lines.push(verdict(
                cpu.0.median <= TWIN_CPU_MAX,
                format!(
                    "server CPU per request, rustshim {key} ≤ 1.03× C {key}, {every}: highest ratio {} ({}{})",
                    with_ci(cpu.0),
                    cpu.1,
                    if cpu.0.median > TWIN_CPU_MAX { unresolved(cpu.0, TWIN_CPU_MAX) } else { "" },
                ),
            ));
        }
        lines
    }

    /// rustshim memory against the same RAM disk written with the `nbdkit` crate.
    fn crate_lines(&self, every: &str) -> Vec<String> {
        let mut lines = Vec::new();
        let crate_cells = self.cells_of("nbdkit crate");
        if !crate_cells.is_empty() {
            let iops = worst(&crate_cells, &|c| c.ratio(|s| s.iops), true);
            let bw = worst(&crate_cells, &|c| c.ratio(|s| s.bw), true);
            lines.push(verdict(
                iops.0.median >= 1.0 && bw.0.median >= 1.0,
                format!(
                    "rustshim memory at least as fast as the same RAM disk written with the `nbdkit` crate, {every}: lowest IOPS ratio {} ({}{}), lowest bandwidth ratio {} ({})",
                    with_ci(iops.0),
                    iops.1,
                    if iops.0.median < 1.0 { unresolved(iops.0, 1.0) } else { "" },
                    with_ci(bw.0),
                    bw.1
                ),
            ));
        }
        lines
    }

    /// rustshim memory against the python RAM disk.
    fn python_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let python = |w: &str| {
            self.cells
                .iter()
                .find(|c| c.comparison.target == Target::Python && c.workload.key == w)
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
            lines.push(verdict(
                r.median >= PYTHON_MIN,
                format!(
                    "rustshim memory ≥ 3.5× the python RAM disk's 4K random-read IOPS (QD32, client and server sharing the CPUs, as deployed): {:.2}× (95 % CI {:.2}–{:.2}){pinned}",
                    r.median, r.ci.0, r.ci.1
                ),
            ));
        }
        lines
    }

    /// The shim's memory overhead.
    fn rss_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(r) = self.resources.iter().find(|r| r.comparison.key == "null") {
            let overhead = r.rss.0 as i64 - r.rss.1 as i64;
            lines.push(verdict(
                overhead < RSS_OVERHEAD_MAX_KIB,
                format!(
                    "shim RSS overhead under 4 MiB (peak RSS, rustshim null − C null, after all workloads): {}",
                    signed_kib(overhead)
                ),
            ));
        }
        lines
    }

    /// The A/A control: the noise floor.
    fn control_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let control = self.cells_of("control");
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
        lines
    }

    /// The unpinned workloads, comparison by comparison.
    fn unpinned_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for &w in &self.settings.workloads {
            if self.judged(w) {
                continue;
            }
            let parts: Vec<String> = self
                .cells
                .iter()
                .filter(|c| c.workload.key == w.key && c.comparison.target != Target::Python)
                .map(|c| {
                    let cmp = c.comparison;
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
            let why = if w.jobs > 1 {
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
                w.name,
                parts.join("; ")
            ));
        }
        lines
    }

    /// Instructions per 4K read: the plugin path and the filter path.
    fn instruction_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(results) = &self.instructions {
            let of = |kind: Kind| results.iter().map(|r| &r.0).find(|r| r.kind == kind);
            if let (Some(shim), Some(c)) = (of(Kind::ShimNull), of(Kind::CNull)) {
                lines.push(format!(
                    "- (no target; deterministic) instructions per 4K read, rustshim null − C null: \
                     {:+.0} ({:+.2} %), of which {:.0} in the shim and {:.0} in the Rust plugin",
                    shim.total - c.total,
                    (shim.total / c.total - 1.0) * 100.0,
                    shim.part(Part::Shim),
                    shim.part(Part::Plugin)
                ));
            }
            if let (Some(rust), Some(c)) = (of(Kind::NullRustFilter), of(Kind::NullCFilter)) {
                let over = (rust.total / c.total - 1.0) * 100.0;
                lines.push(format!(
                    "- {} instructions per 4K read through a filter, rustshim passthrough − C \
                     nofilter (target ≤ +1 %): {:+.0} ({over:+.2} %); {:.0} in the filter shim \
                     and {:.0} in the Rust filter, against {:.0} in C nofilter",
                    if over <= 1.0 {
                        "**met**:"
                    } else {
                        "**missed**:"
                    },
                    rust.total - c.total,
                    rust.part(Part::FilterShim),
                    rust.part(Part::Filter),
                    c.part(Part::Filter)
                ));
            }
        }
        lines
    }
}
