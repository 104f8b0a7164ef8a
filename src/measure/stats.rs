//! Uncertainty of accuracy figures. An accuracy on a few hundred rows moves by a point or two with the rows drawn,
//! so every accuracy bertopt reports carries a 95 % Wilson score interval, and every comparison of two models on
//! the same rows carries the paired difference with a 95 % interval (paired bootstrap, fixed seed) and the exact
//! McNemar p-value on the rows where the two disagree. A difference whose interval contains 0 is "no measurable
//! difference".

use serde::Serialize;

/// The normal quantile for a two-sided 95 % interval.
const Z95: f64 = 1.959_963_984_540_054;

/// Bootstrap resamples of a paired difference: enough that the interval's ends move by < 0.1 point between seeds
/// on a few hundred rows.
const BOOTSTRAP_RESAMPLES: usize = 10_000;

/// An accuracy with its 95 % interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Accuracy {
    pub correct: usize,
    pub rows: usize,
    pub accuracy: f64,
    /// Wilson score interval, 95 %.
    pub ci95: [f64; 2],
}

impl Accuracy {
    pub fn of(correct: usize, rows: usize) -> Accuracy {
        let (lo, hi) = wilson(correct, rows);
        Accuracy { correct, rows, accuracy: correct as f64 / rows.max(1) as f64, ci95: [lo, hi] }
    }

    pub fn of_rows(right: &[bool]) -> Accuracy {
        Accuracy::of(right.iter().filter(|r| **r).count(), right.len())
    }

    /// "81.38 % [78.5, 83.9]"
    pub fn display(&self) -> String {
        percent_with_interval(self.accuracy, self.ci95)
    }
}

/// A fraction and its interval as percentages: "81.38 % [78.5, 83.9]".
pub fn percent_with_interval(x: f64, ci: [f64; 2]) -> String {
    format!("{:.2} % [{:.1}, {:.1}]", x * 100.0, ci[0] * 100.0, ci[1] * 100.0)
}

/// The Wilson score interval (95 %) of `k` successes in `n` trials; (0, 1) for `n` = 0.
pub fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (n, p, z2) = (n as f64, k as f64 / n as f64, Z95 * Z95);
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z95 / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Exact two-sided McNemar test: under "the two models are equally accurate", each of the `b + c` rows where
/// exactly one is right is equally likely to favour either, so the p-value is a binomial(b + c, 1/2) tail.
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    // log P(X = k) built up from P(X = 0) = 2^-n, so large n does not overflow.
    let mut log_pk = n as f64 * 0.5f64.ln();
    let mut tail = 0.0;
    for k in 0..=b.min(c) {
        if k > 0 {
            log_pk += ((n - k + 1) as f64 / k as f64).ln();
        }
        tail += log_pk.exp();
    }
    (2.0 * tail).min(1.0)
}

/// Model B against model A on the same rows.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct PairedDiff {
    /// Accuracy of B minus accuracy of A (a fraction; positive: B is more accurate).
    pub diff: f64,
    /// 95 % paired-bootstrap interval of `diff`.
    pub ci95: [f64; 2],
    /// Rows A gets right and B wrong.
    pub a_only: usize,
    /// Rows B gets right and A wrong.
    pub b_only: usize,
    /// Exact McNemar p-value.
    pub p_value: f64,
}

/// Whether a model whose paired difference against a baseline is `d` (model minus baseline) is within `max_drop`
/// points of it and not measurably worse (its 95 % interval does not lie below 0).
pub fn within_budget(d: &PairedDiff, max_drop: f64) -> bool {
    d.diff * 100.0 >= -max_drop - 1e-9 && d.ci95[1] >= 0.0
}

/// The model to ship among candidates `1..` (index 0 is the baseline): the fastest that is within budget (see
/// [`within_budget`]) and faster than the baseline. `diffs[i]` and `ms[i]` are candidate i's paired difference
/// against the baseline and its latency; one without either is not eligible. The rule behind `optimize auto`'s
/// choice and the ring of bench's plot.
pub fn fastest_within_budget(diffs: &[Option<PairedDiff>], ms: &[Option<f64>], max_drop: f64) -> Option<usize> {
    let base = ms.first().copied().flatten();
    (1..diffs.len().min(ms.len()))
        .filter(|&i| diffs[i].as_ref().is_some_and(|d| within_budget(d, max_drop)))
        .filter_map(|i| ms[i].filter(|&x| base.is_none_or(|b| x < b)).map(|x| (i, x)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

impl PairedDiff {
    /// Whether the interval excludes 0.
    pub fn measurable(&self) -> bool {
        self.ci95[0] > 0.0 || self.ci95[1] < 0.0
    }

    /// "-1.25 pt [-2.9, +0.4], no measurable difference"
    pub fn display(&self) -> String {
        self.with_mark(", no measurable difference")
    }

    /// For tables: "-1.25 pt [-2.9, +0.4] (=)", the mark explained under the table.
    pub fn short(&self) -> String {
        self.with_mark(" (=)")
    }

    fn with_mark(&self, unmeasurable: &str) -> String {
        format!(
            "{:+.2} pt [{:+.1}, {:+.1}]{}",
            self.diff * 100.0,
            self.ci95[0] * 100.0,
            self.ci95[1] * 100.0,
            if self.measurable() { "" } else { unmeasurable }
        )
    }
}

/// The paired difference of two models' per-row correctness (`a[i]`, `b[i]` on the same row `i`).
pub fn paired(a: &[bool], b: &[bool]) -> PairedDiff {
    assert_eq!(a.len(), b.len(), "paired rows must be the same rows");
    let n = a.len();
    let d: Vec<i8> = a.iter().zip(b).map(|(&x, &y)| y as i8 - x as i8).collect();
    let a_only = d.iter().filter(|v| **v < 0).count();
    let b_only = d.iter().filter(|v| **v > 0).count();
    let diff = (b_only as f64 - a_only as f64) / n.max(1) as f64;
    let ci95 = if n == 0 || a_only + b_only == 0 {
        [0.0, 0.0]
    } else {
        let mut rng = bertopt_models::rng::Rng::new(0x5eed);
        let mut means: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
            .map(|_| (0..n).map(|_| d[rng.below(n)] as i64).sum::<i64>() as f64 / n as f64)
            .collect();
        means.sort_by(f64::total_cmp);
        let at = |q: f64| means[((BOOTSTRAP_RESAMPLES - 1) as f64 * q).round() as usize];
        [at(0.025), at(0.975)]
    };
    PairedDiff { diff, ci95, a_only, b_only, p_value: mcnemar_exact(a_only, b_only) }
}

/// The `p` quantile of sorted latencies (nearest rank); NaN for none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I, example (a):
    /// 81 of 263, Wilson score interval 0.2553 to 0.3662.
    #[test]
    fn wilson_matches_newcombe_example() {
        let (lo, hi) = wilson(81, 263);
        assert!((lo - 0.2553).abs() < 5e-5, "{lo}");
        assert!((hi - 0.3662).abs() < 5e-5, "{hi}");
        // Newcombe's example (d), 0 of 10: 0 to 0.2775.
        let (lo, hi) = wilson(0, 10);
        assert_eq!(lo, 0.0);
        assert!((hi - 0.2775).abs() < 5e-5, "{hi}");
    }

    /// 5 against 15 discordant rows: 2 * P(X <= 5), X ~ Binomial(20, 1/2) = 2 * 21700 / 2^20 = 0.041389...
    /// (1 + 20 + 190 + 1140 + 4845 + 15504 = 21700, by hand).
    #[test]
    fn mcnemar_matches_hand_computed_binomial_tail() {
        let want = 2.0 * 21700.0 / 1048576.0;
        assert!((mcnemar_exact(5, 15) - want).abs() < 1e-12);
        assert!((mcnemar_exact(15, 5) - want).abs() < 1e-12);
        assert_eq!(mcnemar_exact(3, 3), 1.0, "balanced disagreement is no evidence");
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // Large counts stay finite: 400 vs 600 of 1000 is far in the tail.
        let p = mcnemar_exact(400, 600);
        assert!(p > 0.0 && p < 1e-9, "{p}");
    }

    #[test]
    fn paired_counts_and_interval() {
        // 100 rows: A right on 80, B right on the same 80 minus 10 plus 2 others.
        let a: Vec<bool> = (0..100).map(|i| i < 80).collect();
        let b: Vec<bool> = (0..100).map(|i| (10..82).contains(&i)).collect();
        let p = paired(&a, &b);
        assert_eq!((p.a_only, p.b_only), (10, 2));
        assert!((p.diff - (-0.08)).abs() < 1e-12);
        assert!(p.ci95[0] < p.diff && p.diff < p.ci95[1]);
        // The normal approximation's half-width for this paired design: sqrt((b + c) - (b - c)^2 / n) / n
        // = sqrt(12 - 0.64) / 100 = 0.0337 at z = 1.96 -> 0.066; the bootstrap must be close to it.
        let half = (p.ci95[1] - p.ci95[0]) / 2.0;
        assert!((half - 1.96 * (12.0f64 - 0.64).sqrt() / 100.0).abs() < 0.01, "{half}");
        assert!(p.measurable());
        // Identical models: no difference, interval [0, 0].
        let same = paired(&a, &a);
        assert_eq!((same.diff, same.ci95, same.p_value), (0.0, [0.0, 0.0], 1.0));
        assert!(!same.measurable());
    }
}
