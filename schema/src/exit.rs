//! Early-exit rules (DeeBERT's entropy, PABEE/ElasticBERT's patience) and the per-row bookkeeping they need.
//! One implementation serves the interpreter, the candle reference and the runner's segmented driver, so the
//! three cannot disagree on what "confident" means.

use std::fmt;

/// When a row may leave at an exit point.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ExitRule {
    /// Leave when the entropy `-Σ p ln p` of the exit's softmax is below the threshold (DeeBERT).
    Entropy { threshold: f32 },
    /// Leave when this many consecutive exits after the first agreed with their predecessor on the argmax
    /// (PABEE, as ElasticBERT uses it).
    Patience { patience: usize },
}

impl fmt::Display for ExitRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitRule::Entropy { threshold } => write!(f, "entropy < {threshold}"),
            ExitRule::Patience { patience } => write!(f, "patience {patience}"),
        }
    }
}

/// Natural-log entropy of the softmax of one row of logits, computed through log-softmax as the ONNX lowering
/// does.
pub fn entropy(logits: &[f32]) -> f32 {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = logits.iter().map(|&x| (x - m).exp()).sum::<f32>().ln() + m;
    -logits.iter().map(|&x| (x - lse).exp() * (x - lse)).sum::<f32>()
}

/// Index of the largest logit; the first one on ties (ONNX `ArgMax`'s default).
pub fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] {
            best = i;
        }
    }
    best
}

/// The state of a set of rows as they pass exit points in order.
#[derive(Clone, Debug)]
pub struct ExitTracker {
    rule: ExitRule,
    prev: Vec<Option<usize>>,
    count: Vec<usize>,
}

impl ExitTracker {
    pub fn new(rule: ExitRule, rows: usize) -> Self {
        ExitTracker { rule, prev: vec![None; rows], count: vec![0; rows] }
    }

    /// Feed the logits of the next exit point, one row per tracked row; returns which rows may leave here.
    pub fn observe(&mut self, logits: &[Vec<f32>]) -> Vec<bool> {
        assert_eq!(logits.len(), self.prev.len(), "one row of logits per tracked row");
        logits
            .iter()
            .enumerate()
            .map(|(r, row)| match self.rule {
                ExitRule::Entropy { threshold } => entropy(row) < threshold,
                ExitRule::Patience { patience } => {
                    let a = argmax(row);
                    self.count[r] = if self.prev[r] == Some(a) { self.count[r] + 1 } else { 0 };
                    self.prev[r] = Some(a);
                    self.count[r] >= patience
                }
            })
            .collect()
    }

    /// Keep only the rows at `keep` (in order), as the segmented driver does when others leave.
    pub fn retain(&mut self, keep: &[usize]) {
        self.prev = keep.iter().map(|&i| self.prev[i]).collect();
        self.count = keep.iter().map(|&i| self.count[i]).collect();
    }
}

/// The exit point a whole batch leaves at (the `If` lowering's semantics): the first where every row may
/// leave, else the last. `exits[j]` holds exit point j's logits, one row per input.
pub fn batch_exit(rule: ExitRule, exits: &[Vec<Vec<f32>>]) -> usize {
    let rows = exits.first().map_or(0, Vec::len);
    let mut t = ExitTracker::new(rule, rows);
    for (j, logits) in exits.iter().enumerate() {
        if t.observe(logits).iter().all(|&x| x) {
            return j;
        }
    }
    exits.len().saturating_sub(1)
}

/// The exit point each row leaves at on its own (per-sample semantics, what the segmented driver computes).
pub fn row_exits(rule: ExitRule, exits: &[Vec<Vec<f32>>]) -> Vec<usize> {
    let rows = exits.first().map_or(0, Vec::len);
    let last = exits.len().saturating_sub(1);
    let mut t = ExitTracker::new(rule, rows);
    let mut out = vec![None; rows];
    for (j, logits) in exits.iter().enumerate() {
        for (r, leave) in t.observe(logits).into_iter().enumerate() {
            if leave && out[r].is_none() {
                out[r] = Some(j);
            }
        }
    }
    out.into_iter().map(|o| o.unwrap_or(last)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_of_uniform_is_ln_n_and_of_certain_is_zero() {
        assert!((entropy(&[0.0, 0.0, 0.0]) - 3f32.ln()).abs() < 1e-6);
        assert!(entropy(&[100.0, -100.0]) < 1e-6);
    }

    #[test]
    fn patience_counts_agreements_after_the_first_exit() {
        let rule = ExitRule::Patience { patience: 2 };
        // Row 0 predicts 0,0,0,.. -> counts 0,1,2: leaves at exit 2. Row 1 flips every time: never leaves.
        let exits: Vec<Vec<Vec<f32>>> =
            (0..5).map(|j| vec![vec![1.0, 0.0], if j % 2 == 0 { vec![1.0, 0.0] } else { vec![0.0, 1.0] }]).collect();
        assert_eq!(row_exits(rule, &exits), vec![2, 4]);
        assert_eq!(batch_exit(rule, &exits), 4);
        assert_eq!(batch_exit(rule, &exits[..3].iter().map(|e| vec![e[0].clone()]).collect::<Vec<_>>()), 2);
    }

    #[test]
    fn entropy_rule_leaves_at_the_first_confident_exit() {
        let rule = ExitRule::Entropy { threshold: 0.3 };
        let exits = vec![
            vec![vec![0.0, 0.0], vec![5.0, 0.0]],
            vec![vec![6.0, 0.0], vec![0.0, 0.0]],
            vec![vec![0.0, 0.0], vec![0.0, 0.0]],
        ];
        assert_eq!(row_exits(rule, &exits), vec![1, 0]);
        assert_eq!(batch_exit(rule, &exits), 2);
    }
}
