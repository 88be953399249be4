//! benchmarks.svg: bars of the per-pair IOPS ratios.

use std::fmt::Write as _;

use super::format::escape;
use super::Report;
use crate::bench::matrix::{Comparison, Target, PYTHON_MIN, TWIN_MIN};
use crate::bench::measure::Cell;
use crate::bench::stats::Stats;

/// The bars' colours, one per workload.
const COLOURS: [&str; 7] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#9c755f",
];

impl Report<'_> {
    /// Bars of the per-pair IOPS ratios, grouped by comparison, coloured by workload: one panel
    /// for the comparisons near 1 and one for python.
    pub fn svg(&self) -> String {
        let width = 1100.0;
        let mut svg = String::new();
        let groups = |python: bool| -> Vec<(&Comparison, Vec<&Cell>)> {
            self.settings
                .comparisons
                .iter()
                .filter(|c| (c.target == Target::Python) == python)
                .map(|&c| {
                    let cells = self
                        .cells
                        .iter()
                        .filter(|cell| cell.comparison.key == c.key);
                    (c, cells.collect())
                })
                .collect()
        };
        let near = groups(false);
        let far = groups(true);
        let panel_h = 330.0;
        // The legend, in as many rows as it needs: (x, row) of each workload's swatch.
        let mut legend = Vec::new();
        let (mut x, mut row) = (20.0, 0.0);
        for &w in &self.settings.workloads {
            let item = 16.0 + 6.6 * w.name.chars().count() as f64 + 18.0;
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
                escape(w.name)
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
        groups: &[(&Comparison, Vec<&Cell>)],
        top: f64,
        height: f64,
        width: f64,
        marks: &[(f64, &str)],
    ) {
        let stats: Vec<Vec<Stats>> = groups
            .iter()
            .map(|(_, cells)| cells.iter().map(|c| c.ratio(|s| s.iops)).collect())
            .collect();
        let (lo, hi, step) = scale(&stats, marks);
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
        for (g, ((c, cells), stats)) in groups.iter().zip(&stats).enumerate() {
            let gx = left + g as f64 * group_w;
            let bar_w = ((group_w - 30.0) / cells.len().max(1) as f64).min(60.0);
            // The bars of a group are centred in it.
            let bars_x = gx + (group_w - 30.0 - bar_w * cells.len() as f64) / 2.0;
            for (b, (cell, s)) in cells.iter().zip(stats).enumerate() {
                let colour = COLOURS[self
                    .settings
                    .workloads
                    .iter()
                    .position(|w| w.key == cell.workload.key)
                    .unwrap_or(0)
                    % COLOURS.len()];
                let x = bars_x + 15.0 + b as f64 * bar_w;
                bar(svg, x, bar_w, s, colour, &y);
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

/// The axis of the ratios `stats` and the `marks`: lowest and highest value shown, grid step.
fn scale(stats: &[Vec<Stats>], marks: &[(f64, &str)]) -> (f64, f64, f64) {
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
    (lo, hi, step)
}

/// One bar at `x`, `bar_w` wide: the median ratio from 1, its min–max whisker and its label;
/// `y` maps a ratio to the picture.
fn bar(svg: &mut String, x: f64, bar_w: f64, s: &Stats, colour: &str, y: &dyn Fn(f64) -> f64) {
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
