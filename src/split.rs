//! The three-way split every command agrees on: choices (best epoch, exit threshold, budget winner) are made on
//! the validation rows, figures are reported on the test rows, and the model carries a record of the split it was
//! trained on, so that `eval` and `bench` can refuse to report "test" accuracy on rows the model trained on.
//!
//! The data (all `--data` files, concatenated in order) is shuffled with `--seed`; the first `--train-size` rows
//! (default 80 %) are the training pool; the last `--val-size` rows of the pool (default 10 % of it) are the
//! validation set; the rest of the pool is the training set; the rows after the pool are the test set. The test
//! set does not depend on `--val-size`. `--eval FILE` replaces the test set, `--val FILE` the validation set.

use std::path::{Path, PathBuf};

use anyhow::Context;
use bertopt_models::data::Dataset;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Checkpoint metadata key (and ONNX metadata key, with the `bertopt.` prefix) holding the JSON list of the
/// splits a model was trained on: its own, after those of the model it started from.
pub const META_SPLITS: &str = "splits";

/// The data and its split, as a command line names them.
#[derive(clap::Args, Clone, Debug)]
pub struct SplitArgs {
    /// Labelled data: JSON lines, CSV/TSV (text and label columns), UCI JSON, MR CSV. Repeatable.
    #[arg(long)]
    pub data: Vec<PathBuf>,
    /// Test file; without it the test set is the part of --data after the training pool.
    #[arg(long)]
    pub eval: Option<PathBuf>,
    /// Validation file; without it the last --val-size rows of the training pool.
    #[arg(long)]
    pub val: Option<PathBuf>,
    /// Rows of the shuffled data in the training pool (training + validation); default 80 %.
    #[arg(long)]
    pub train_size: Option<usize>,
    /// Rows at the end of the training pool kept for validation; default 10 % of the pool.
    #[arg(long)]
    pub val_size: Option<usize>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Rename labels as written in the data files, e.g. `0=-1,1=1` to read UCI's 0/1 as MR's -1/1.
    #[arg(long, value_parser = parse_label_map)]
    pub label_map: Option<LabelMap>,
}

impl Default for SplitArgs {
    /// No data, and the command line's defaults (seed 42).
    fn default() -> Self {
        SplitArgs { data: vec![], eval: None, val: None, train_size: None, val_size: None, seed: 42, label_map: None }
    }
}

/// `FROM=TO,...`
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelMap(pub Vec<(String, String)>);

fn parse_label_map(s: &str) -> Result<LabelMap, String> {
    s.split(',')
        .map(|p| {
            let (a, b) = p.split_once('=').ok_or_else(|| format!("`{p}` is not FROM=TO"))?;
            let (a, b) = (a.trim(), b.trim());
            if a.is_empty() || b.is_empty() {
                return Err(format!("`{p}`: empty label"));
            }
            Ok((a.to_string(), b.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(LabelMap)
}

/// Which rows a report is computed on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    #[default]
    Test,
    Val,
    /// Every row of the data files, in file order (timing, or out-of-domain data the model never saw).
    All,
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Part::Test => "test",
            Part::Val => "validation",
            Part::All => "all",
        })
    }
}

/// A data file as a split record names it: its file name and the start of its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    pub name: String,
    pub sha256: String,
}

impl FileId {
    pub fn of(path: &Path) -> anyhow::Result<FileId> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let hex: String = Sha256::digest(&bytes).iter().take(8).map(|b| format!("{b:02x}")).collect();
        let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().to_string());
        Ok(FileId { name, sha256: hex })
    }
}

/// What a split was: enough to tell whether two splits of the same files give the same rows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitRecord {
    /// The `--data` files, in the order they were concatenated.
    pub data: Vec<FileId>,
    pub seed: u64,
    /// Rows of the shuffled data in the training pool.
    pub pool: usize,
    pub train: usize,
    pub val: usize,
    pub test: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_file: Option<FileId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_file: Option<FileId>,
}

impl std::fmt::Display for SplitRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.data.iter().map(|d| d.name.as_str()).collect();
        write!(f, "{} shuffled with seed {}: {} train / {} val", names.join("+"), self.seed, self.train, self.val)?;
        if let Some(v) = &self.val_file {
            write!(f, " (from {})", v.name)?;
        }
        match &self.test_file {
            Some(t) => write!(f, " / {} test from {}", self.test, t.name),
            None => write!(f, " / {} test", self.test),
        }
    }
}

/// Training, validation and test rows, and the record of how they were made.
pub struct Splits {
    /// Every row of the data files, in file order.
    pub all: Dataset,
    pub train: Dataset,
    pub val: Dataset,
    pub test: Dataset,
    pub record: SplitRecord,
}

impl Splits {
    pub fn part(&self, part: Part) -> Dataset {
        match part {
            Part::Test => self.test.clone(),
            Part::Val => self.val.clone(),
            Part::All => self.all.clone(),
        }
    }
}

impl SplitArgs {
    /// `Some(self)` when data was given (commands where accuracy is optional).
    pub fn given(self) -> Option<SplitArgs> {
        (!self.data.is_empty()).then_some(self)
    }

    fn read(&self, path: &Path) -> anyhow::Result<Dataset> {
        let d = Dataset::read(path)?;
        match &self.label_map {
            Some(m) => d.map_labels(&m.0).map_err(|e| anyhow::anyhow!("{}: {e}", path.display())),
            None => Ok(d),
        }
    }

    /// Read the files and split them (see the module doc).
    pub fn splits(&self) -> anyhow::Result<Splits> {
        anyhow::ensure!(!self.data.is_empty(), "give at least one --data FILE");
        let parts = self.data.iter().map(|p| self.read(p)).collect::<anyhow::Result<Vec<_>>>()?;
        let all = Dataset::concat(parts);
        let n = all.examples.len();
        let pool = match (&self.eval, self.train_size) {
            (Some(_), Some(k)) => k.min(n),
            (Some(_), None) => n,
            (None, Some(k)) => {
                anyhow::ensure!(k < n, "--train-size {k} leaves nothing of {n} examples for the test set");
                k
            }
            (None, None) => n * 4 / 5,
        };
        let val_size = match (&self.val, self.val_size) {
            (Some(_), _) => 0,
            (None, Some(v)) => v,
            (None, None) => (pool / 10).max(1),
        };
        anyhow::ensure!(
            val_size < pool,
            "--val-size {val_size} leaves nothing of the {pool}-row training pool for training"
        );
        anyhow::ensure!(
            self.val.is_some() || val_size > 0,
            "--val-size 0 leaves no validation rows: give --val FILE or a positive --val-size"
        );
        let (train, mut val, mut test) = all.split3(pool, val_size, self.seed);
        if let Some(v) = &self.val {
            val = self.read(v)?;
        }
        if let Some(e) = &self.eval {
            test = self.read(e)?;
        }
        let record = SplitRecord {
            data: self.data.iter().map(|p| FileId::of(p)).collect::<anyhow::Result<_>>()?,
            seed: self.seed,
            pool,
            train: train.examples.len(),
            val: val.examples.len(),
            test: test.examples.len(),
            val_file: self.val.as_deref().map(FileId::of).transpose()?,
            test_file: self.eval.as_deref().map(FileId::of).transpose()?,
        };
        Ok(Splits { all, train, val, test, record })
    }

    /// The rows of one part, after checking that a model trained on `trained_on` did not train or select on
    /// them (see `check_disjoint`).
    pub fn rows_for(&self, part: Part, model: &Path, trained_on: &[SplitRecord]) -> anyhow::Result<Dataset> {
        let s = self.splits()?;
        check_disjoint(trained_on, &s.record, part)
            .map_err(|why| anyhow::anyhow!("refusing to report {part} accuracy of {}: {why}", model.display()))?;
        Ok(s.part(part))
    }
}

/// Whether the `part` rows of `asked` can have been training or validation rows of a model trained on each of
/// `trained_on`: `Err` with both splits named if they can. A model with no record passes.
pub fn check_disjoint(trained_on: &[SplitRecord], asked: &SplitRecord, part: Part) -> Result<(), String> {
    for r in trained_on {
        let seen = |f: &FileId| r.data.iter().any(|d| d.sha256 == f.sha256);
        let selected_on = |f: &FileId| r.val_file.as_ref().is_some_and(|v| v.sha256 == f.sha256);
        let clash = |what: &str| {
            Err(format!(
                "{what}, so its rows may have been training or validation rows of the model (trained on {r}; asked \
                 for {asked}); give the --data, --train-size, --val-size and --seed it was trained with"
            ))
        };
        let from_file = match part {
            Part::Test => asked.test_file.as_ref(),
            Part::Val => asked.val_file.as_ref(),
            Part::All => None,
        };
        if let Some(f) = from_file {
            if seen(f) || selected_on(f) {
                return clash(&format!("the {part} file {} is one the model was trained or validated on", f.name));
            }
            continue;
        }
        // The rows come from a split of asked.data.
        let overlap = asked.data.iter().any(seen);
        if asked.data.iter().any(selected_on) {
            return clash("the data includes the model's validation file");
        }
        if !overlap {
            continue;
        }
        if part == Part::All {
            return clash("the data includes a file the model was trained on");
        }
        // The same pool of the same shuffled files: its rows are the same rows, whichever test set either run named.
        let same_pool = r.data == asked.data && r.seed == asked.seed && r.pool == asked.pool;
        let same_val = r.val == asked.val && r.val_file.is_none() && asked.val_file.is_none();
        if !same_pool || (part == Part::Val && !same_val) {
            return clash("the split differs from the one the model was trained on");
        }
    }
    Ok(())
}

/// The splits recorded in a checkpoint's metadata (`META_SPLITS`), empty when it has none.
pub fn parse_recorded(json: Option<&str>) -> anyhow::Result<Vec<SplitRecord>> {
    match json {
        None => Ok(vec![]),
        Some(j) => serde_json::from_str(j).context("the model's recorded split is not valid JSON"),
    }
}

/// `parents` followed by `own` (once).
pub fn lineage(mut parents: Vec<SplitRecord>, own: &SplitRecord) -> Vec<SplitRecord> {
    if !parents.contains(own) {
        parents.push(own.clone());
    }
    parents
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, rows: usize) -> PathBuf {
        let p = dir.join(name);
        let body: String =
            (0..rows).map(|i| format!("{{\"text\": \"row {i} of {name}\", \"label\": {}}}\n", i % 2)).collect();
        std::fs::write(&p, body).unwrap();
        p
    }

    fn texts(d: &Dataset) -> Vec<String> {
        d.examples.iter().map(|e| e.text.clone()).collect()
    }

    #[test]
    fn sizes_disjointness_and_the_two_way_test_rows() {
        let dir = tempfile::tempdir().unwrap();
        let data = write(dir.path(), "d.jsonl", 1000);
        let a =
            SplitArgs { data: vec![data.clone()], train_size: Some(800), val_size: Some(100), ..Default::default() };
        let s = a.splits().unwrap();
        assert_eq!((s.train.examples.len(), s.val.examples.len(), s.test.examples.len()), (700, 100, 200));
        let (tr, va, te) = (texts(&s.train), texts(&s.val), texts(&s.test));
        let mut all: Vec<&String> = tr.iter().chain(&va).chain(&te).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 1000, "the three parts are disjoint and cover the data");
        // The test rows are exactly the held-out rows of the two-way split, in the same order, for any val size.
        let two_way = Dataset::read(&data).unwrap().split(800, 42).1;
        assert_eq!(te, texts(&two_way));
        let other = SplitArgs { val_size: Some(250), ..a.clone() }.splits().unwrap();
        assert_eq!(texts(&other.test), te);
        // The validation rows are the end of the pool: the training rows are its start.
        let pool = Dataset::read(&data).unwrap().split(800, 42).0;
        assert_eq!(texts(&pool)[700..].to_vec(), va);
        assert_eq!(texts(&pool)[..700].to_vec(), tr);
        // Defaults: 80 % pool, 10 % of it for validation.
        let d = SplitArgs { data: vec![data], ..Default::default() }.splits().unwrap();
        assert_eq!((d.train.examples.len(), d.val.examples.len(), d.test.examples.len()), (720, 80, 200));
        assert_eq!(d.record.pool, 800);
    }

    #[test]
    fn bad_sizes_are_refused_with_the_flag_named() {
        let dir = tempfile::tempdir().unwrap();
        let data = write(dir.path(), "d.jsonl", 100);
        let e = SplitArgs { data: vec![data.clone()], train_size: Some(100), ..Default::default() }.splits();
        assert!(e.err().unwrap().to_string().contains("--train-size 100"));
        let e = SplitArgs { data: vec![data], train_size: Some(50), val_size: Some(50), ..Default::default() }.splits();
        assert!(e.err().unwrap().to_string().contains("--val-size 50"));
    }

    #[test]
    fn recorded_split_must_match_for_test_rows_of_the_same_files() {
        let dir = tempfile::tempdir().unwrap();
        let data = write(dir.path(), "d.jsonl", 200);
        let other = write(dir.path(), "ood.jsonl", 50);
        let base = SplitArgs { data: vec![data.clone()], train_size: Some(150), ..Default::default() };
        let trained = base.splits().unwrap().record;
        let model = std::slice::from_ref(&trained);
        let rec = |a: SplitArgs| a.splits().unwrap().record;
        // The same split, or another validation size (same test rows): allowed for test.
        assert!(check_disjoint(model, &trained, Part::Test).is_ok());
        let vs = rec(SplitArgs { val_size: Some(30), ..base.clone() });
        assert!(check_disjoint(model, &vs, Part::Test).is_ok());
        assert!(check_disjoint(model, &vs, Part::Val).is_err(), "other validation rows");
        // Another seed or pool size of the same file: refused, naming both splits.
        let e = check_disjoint(model, &rec(SplitArgs { seed: 7, ..base.clone() }), Part::Test);
        let msg = e.unwrap_err();
        assert!(msg.contains("seed 42") && msg.contains("seed 7"), "{msg}");
        assert!(check_disjoint(model, &rec(SplitArgs { train_size: Some(100), ..base.clone() }), Part::Test).is_err());
        // The training file itself as the test file: refused. A file the model never saw: allowed.
        let as_test = rec(SplitArgs { eval: Some(data.clone()), ..base.clone() });
        assert!(check_disjoint(model, &as_test, Part::Test).is_err());
        let ood = rec(SplitArgs { data: vec![other.clone()], eval: Some(other.clone()), ..Default::default() });
        assert!(check_disjoint(model, &ood, Part::Test).is_ok());
        // Every row of a file: allowed for a file the model never saw (out-of-domain), refused for its own.
        let ood_all = rec(SplitArgs { data: vec![other.clone()], ..Default::default() });
        assert!(check_disjoint(model, &ood_all, Part::All).is_ok());
        assert!(check_disjoint(model, &trained, Part::All).is_err());
        // A model with no record is evaluated as asked.
        assert!(check_disjoint(&[], &as_test, Part::Test).is_ok());
        // A model fine-tuned on all of the data file (its test set a separate file): any split of it is refused.
        let all_of_it = rec(SplitArgs { eval: Some(other.clone()), train_size: None, ..base.clone() });
        assert!(check_disjoint(&[all_of_it], &trained, Part::Test).is_err());
        // A model whose test set was a separate file but whose pool was the same 150 rows: the rows after the pool
        // were never its training or validation rows, and its validation rows are the same rows.
        let same_pool = rec(SplitArgs { eval: Some(other), ..base.clone() });
        assert!(check_disjoint(std::slice::from_ref(&same_pool), &trained, Part::Test).is_ok());
        assert!(check_disjoint(&[same_pool], &trained, Part::Val).is_ok());
    }

    #[test]
    fn label_map_renames_and_renumbers() {
        let dir = tempfile::tempdir().unwrap();
        let data = write(dir.path(), "d.jsonl", 10);
        let map = parse_label_map("0=-1,1=1").unwrap();
        let a = SplitArgs { data: vec![data.clone()], label_map: Some(map), ..Default::default() };
        let d = a.read(&data).unwrap();
        assert_eq!(d.labels, vec!["-1", "1"]);
        let raw = Dataset::read(&data).unwrap();
        for (x, y) in d.examples.iter().zip(&raw.examples) {
            assert_eq!(d.labels[x.label], if raw.labels[y.label] == "0" { "-1" } else { "1" });
        }
        let partial = SplitArgs { label_map: Some(parse_label_map("0=-1").unwrap()), ..a };
        assert!(partial.read(&data).unwrap_err().to_string().contains("label \"1\""));
        assert!(parse_label_map("0-1").is_err());
    }
}
