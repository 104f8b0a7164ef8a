//! A tokenized batch: row-major `[batch, seq]` ids, attention mask and token types, as every runner and the
//! trainer consume it.

/// One batch of tokenized inputs, row-major `[batch, seq]`.
#[derive(Clone, Debug)]
pub struct Batch {
    pub batch: usize,
    pub seq: usize,
    pub input_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
    pub token_type_ids: Vec<i64>,
}

impl Batch {
    /// The tensor for a graph input by its Optimum name.
    pub fn by_name(&self, name: &str) -> Option<&[i64]> {
        match name {
            "input_ids" => Some(&self.input_ids),
            "attention_mask" => Some(&self.attention_mask),
            "token_type_ids" => Some(&self.token_type_ids),
            _ => None,
        }
    }

    /// A batch of `batch` rows of `seq` padding tokens (id 0, mask 0), to be filled in.
    pub fn padding(batch: usize, seq: usize) -> Batch {
        let zeros = vec![0; batch * seq];
        Batch { batch, seq, input_ids: zeros.clone(), attention_mask: zeros.clone(), token_type_ids: zeros }
    }

    /// A deterministic batch of random token ids with random right padding (for benches and checks).
    pub fn synthetic(batch: usize, seq: usize, vocab: usize, seed: u64) -> Batch {
        let mut rng = crate::rng::Rng::new(seed);
        let mut b = Batch::padding(batch, seq);
        for r in 0..batch {
            // the first row is full length; the others keep at least half
            let len = if r == 0 { seq } else { seq / 2 + rng.below((seq - seq / 2).max(1)) }.max(1);
            for c in 0..len {
                b.input_ids[r * seq + c] = 1 + rng.below(vocab.saturating_sub(1).max(1)) as i64;
                b.attention_mask[r * seq + c] = 1;
            }
        }
        b
    }
}
