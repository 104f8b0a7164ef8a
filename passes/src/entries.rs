//! What an entry cut keeps of a matrix: the data `Pass::keep` hands to recovery and `entry_cut` stores. Its own
//! file so that the pass interface (`Keep`) and the entry-cut core both read it without depending on each other.

/// The entries a cut keeps of one matrix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entries {
    /// The parameter group: the matrix is `P.weight`, `[k, n]`.
    pub group: String,
    pub k: usize,
    pub n: usize,
    /// Row-major `k × n`, true = kept.
    pub keep: Vec<bool>,
}

impl Entries {
    /// Every entry of `group`'s `[k, n]` matrix kept.
    pub fn all(group: &str, k: usize, n: usize) -> Self {
        Entries { group: group.to_string(), k, n, keep: vec![true; k * n] }
    }

    /// Entries kept where row `r` is kept in every column (a cut of input features).
    pub fn rows(group: &str, n: usize, rows: &[bool]) -> Self {
        let keep = rows.iter().flat_map(|&r| std::iter::repeat_n(r, n)).collect();
        Entries { group: group.to_string(), k: rows.len(), n, keep }
    }

    /// How many entries go.
    pub fn removed(&self) -> usize {
        self.keep.iter().filter(|k| !**k).count()
    }
}
