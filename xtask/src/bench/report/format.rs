//! How figures are written in the tables, the chart and the terminal.

use crate::bench::stats::Stats;

/// 123456 → "123.5k".
pub fn si(x: f64) -> String {
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

pub fn kib(k: i64) -> String {
    if k.abs() >= 10 * 1024 {
        format!("{:.1} MiB", k as f64 / 1024.0)
    } else {
        format!("{k} KiB")
    }
}

pub fn with_range(s: Stats, f: impl Fn(f64) -> String) -> String {
    format!("{} ({}–{})", f(s.median), f(s.min), f(s.max))
}

pub fn ratio_text(s: Stats) -> String {
    format!("**{:.3}** ({:.3}–{:.3})", s.median, s.min, s.max)
}

/// A median ratio with the 95 % confidence interval of that median.
pub fn with_ci(s: Stats) -> String {
    format!("{:.3} (95 % CI {:.3}–{:.3})", s.median, s.ci.0, s.ci.1)
}

pub fn mib(x: f64) -> String {
    let m = x / (1 << 20) as f64;
    if m >= 100.0 {
        format!("{m:.0}")
    } else {
        format!("{m:.1}")
    }
}

pub fn signed_kib(k: i64) -> String {
    if k >= 0 {
        format!("+{}", kib(k))
    } else {
        format!("−{}", kib(-k))
    }
}

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
