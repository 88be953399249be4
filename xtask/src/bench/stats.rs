//! The statistics of the interleaved runs: median, range, and a distribution-free confidence
//! interval of the median.

#[derive(Clone, Copy)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// A distribution-free confidence interval of the median, of at least 95 % (see
    /// [`median_ci_rank`]).
    pub ci: (f64, f64),
}

impl Stats {
    pub fn of(values: &[f64]) -> Stats {
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
}
