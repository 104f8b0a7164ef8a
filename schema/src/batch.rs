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

    /// Round the sequence length up to a multiple of `bucket` (at most `max_len`, never below the current length)
    /// with right padding (id 0, mask 0, type 0): the shape a runner with one plan per length bucket runs. The
    /// real tokens' outputs do not change, since padding is masked.
    pub fn padded_to_bucket(&self, bucket: usize, max_len: usize) -> Batch {
        let want = self.seq.div_ceil(bucket.max(1)) * bucket.max(1);
        let seq = want.min(max_len).max(self.seq);
        if seq == self.seq {
            return self.clone();
        }
        let mut b = Batch::padding(self.batch, seq);
        for r in 0..self.batch {
            let (from, to) = (r * self.seq..(r + 1) * self.seq, r * seq..r * seq + self.seq);
            b.input_ids[to.clone()].copy_from_slice(&self.input_ids[from.clone()]);
            b.attention_mask[to.clone()].copy_from_slice(&self.attention_mask[from.clone()]);
            b.token_type_ids[to].copy_from_slice(&self.token_type_ids[from]);
        }
        b
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

#[cfg(test)]
mod tests {
    use super::Batch;

    #[test]
    fn bucket_padding_keeps_rows_and_masks_the_rest() {
        let b = Batch {
            batch: 2,
            seq: 3,
            input_ids: vec![1, 2, 3, 4, 5, 0],
            attention_mask: vec![1, 1, 1, 1, 1, 0],
            token_type_ids: vec![0, 0, 0, 1, 1, 0],
        };
        let p = b.padded_to_bucket(4, 128);
        assert_eq!((p.batch, p.seq), (2, 4));
        assert_eq!(p.input_ids, [1, 2, 3, 0, 4, 5, 0, 0]);
        assert_eq!(p.attention_mask, [1, 1, 1, 0, 1, 1, 0, 0]);
        assert_eq!(p.token_type_ids, [0, 0, 0, 0, 1, 1, 0, 0]);
        // Already a multiple, or the limit below the next multiple: unchanged length.
        assert_eq!(b.padded_to_bucket(3, 128).seq, 3);
        assert_eq!(b.padded_to_bucket(16, 3).seq, 3);
        assert_eq!(b.padded_to_bucket(16, 10).seq, 10);
    }
}
