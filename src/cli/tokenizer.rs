//! `optimize tokenizer`: a WordPiece tokenizer trained on labelled data.

use std::path::PathBuf;

use bertopt_models::data::Dataset;
use clap::Args;

/// Train a WordPiece tokenizer (BERT normalisation) on labelled data files and write tokenizer.json.
#[derive(Args)]
pub struct Tokenizer {
    #[arg(long, required = true)]
    data: Vec<PathBuf>,
    #[arg(long, default_value_t = 4000)]
    vocab_size: usize,
    /// Use only the first N examples after the --seed shuffle (the training split of `optimize train`).
    #[arg(long)]
    train_size: Option<usize>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(short, long)]
    out: PathBuf,
}

impl Tokenizer {
    pub fn run(self) -> anyhow::Result<()> {
        let parts = self.data.iter().map(|p| Dataset::read(p)).collect::<Result<Vec<_>, _>>()?;
        let mut all = Dataset::concat(parts);
        if let Some(n) = self.train_size {
            all = all.split(n, self.seed).0;
        }
        let texts: Vec<String> = all.examples.into_iter().map(|e| e.text).collect();
        let n = bertopt_models::data::tokenize::train_wordpiece(&texts, self.vocab_size, &self.out)?;
        println!("wrote {} ({n} tokens, trained on {} texts)", self.out.display(), texts.len());
        Ok(())
    }
}
