//! Labelled text data: JSON lines, CSV and TSV with text and label columns (GLUE's SST-2 TSV works as is), the UCI
//! Sentiment Labelled Sentences JSON (`[{"text", "class"}]`, the trailing null-class record dropped) and the MR
//! polarity CSV (labels 1/-1). A bad row is reported with file and line number.

pub mod tokenize;

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}, line {line}: {problem}")]
    Row { path: PathBuf, line: usize, problem: String },
    #[error("{path}: {problem}")]
    File { path: PathBuf, problem: String },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    pub text: String,
    pub label: usize,
}

/// A labelled data set and the label names (index = class id).
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    pub examples: Vec<Example>,
    pub labels: Vec<String>,
}

impl Dataset {
    /// Read any supported format, chosen from the extension and content.
    pub fn read(path: &Path) -> Result<Dataset, DataError> {
        let text = bertopt_ir::read_capped_text(path, crate::limits::MAX_DATA_BYTES)
            .map_err(|source| DataError::Io { path: path.into(), source })?;
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        let first = text.trim_start().chars().next();
        match (ext.as_str(), first) {
            (_, Some('[')) => read_json_array(path, &text),
            ("jsonl" | "json", _) | (_, Some('{')) => read_jsonl(path, &text),
            ("tsv", _) => read_delimited(path, &text, '\t'),
            _ => read_delimited(
                path,
                &text,
                if text.lines().next().is_some_and(|l| l.contains('\t')) { '\t' } else { ',' },
            ),
        }
    }

    /// Deterministic split: shuffle indices with `seed`, the first `n_train` go to training.
    pub fn split(&self, n_train: usize, seed: u64) -> (Dataset, Dataset) {
        let mut idx: Vec<usize> = (0..self.examples.len()).collect();
        let mut rng = crate::rng::Rng::new(seed);
        rng.shuffle(&mut idx);
        let pick = |ids: &[usize]| Dataset {
            examples: ids.iter().map(|&i| self.examples[i].clone()).collect(),
            labels: self.labels.clone(),
        };
        let n = n_train.min(idx.len());
        (pick(&idx[..n]), pick(&idx[n..]))
    }

    /// The three-way split: shuffle indices with `seed`; the first `n_pool` rows are the training pool, the last
    /// `n_val` rows of that pool are the validation set, the rest of the pool is the training set, and the rows
    /// after the pool are the test set. The test set is exactly `split(n_pool, seed).1`, whatever `n_val` is.
    pub fn split3(&self, n_pool: usize, n_val: usize, seed: u64) -> (Dataset, Dataset, Dataset) {
        let (pool, test) = self.split(n_pool, seed);
        let cut = pool.examples.len().saturating_sub(n_val);
        let val = Dataset { examples: pool.examples[cut..].to_vec(), labels: self.labels.clone() };
        let train = Dataset { examples: pool.examples[..cut].to_vec(), labels: self.labels.clone() };
        (train, val, test)
    }

    /// Rename labels as written in the file (`from` -> `to`) and renumber: e.g. UCI's 0/1 as MR's -1/1
    /// (`0=-1,1=1`). Every label of the data must be named by the map.
    pub fn map_labels(mut self, map: &[(String, String)]) -> Result<Dataset, String> {
        let mut renamed = Vec::with_capacity(self.labels.len());
        for l in &self.labels {
            match map.iter().find(|(from, _)| from == l) {
                Some((_, to)) => renamed.push(to.clone()),
                None if !self.examples.iter().any(|e| self.labels[e.label] == *l) => renamed.push(l.clone()),
                None => return Err(format!("the label map does not say what label {l:?} becomes")),
            }
        }
        let mut names = renamed.clone();
        sort_label_names(&mut names);
        for e in &mut self.examples {
            e.label = names.iter().position(|n| *n == renamed[e.label]).expect("renamed label listed");
        }
        self.labels = names;
        Ok(self)
    }

    /// Label names that at least one example carries, in class order.
    pub fn used_labels(&self) -> Vec<&str> {
        let mut used = vec![false; self.labels.len()];
        for e in &self.examples {
            used[e.label] = true;
        }
        self.labels.iter().zip(used).filter(|(_, u)| *u).map(|(l, _)| l.as_str()).collect()
    }

    /// Concatenate data sets with the same label names.
    pub fn concat(parts: Vec<Dataset>) -> Dataset {
        let labels = parts.iter().map(|p| p.labels.clone()).max_by_key(Vec::len).unwrap_or_default();
        Dataset { examples: parts.into_iter().flat_map(|p| p.examples).collect(), labels }
    }
}

/// Sort and dedup label names: by value when all are integers (returns true), else as strings.
fn sort_label_names(names: &mut Vec<String>) -> bool {
    let numeric = names.iter().all(|l| l.parse::<i64>().is_ok());
    if numeric {
        names.sort_by_key(|l| l.parse::<i64>().expect("checked numeric"));
    } else {
        names.sort();
    }
    names.dedup();
    numeric
}

/// Labels as written in files become class ids: numeric labels keep their value (-1 and 1 of MR map to 0 and 1,
/// in sorted order), other strings are numbered in sorted order.
fn index_labels(path: &Path, raw: Vec<(usize, String, String)>) -> Result<Dataset, DataError> {
    if raw.is_empty() {
        return Err(DataError::File { path: path.into(), problem: "no examples".into() });
    }
    let mut names: Vec<String> = raw.iter().map(|(_, _, l)| l.clone()).collect();
    let numeric = sort_label_names(&mut names);
    if numeric && names.iter().all(|l| l.parse::<i64>().is_ok_and(|v| v >= 0)) {
        // 0..k labels: keep ids as written (a class missing from this file still keeps its number).
        let max = names.iter().map(|l| l.parse::<usize>().expect("non-negative")).max().unwrap_or(0);
        names = (0..=max).map(|i| i.to_string()).collect();
    }
    if names.len() < 2 {
        return Err(DataError::File {
            path: path.into(),
            problem: format!("only one label ({}) in the data", names[0]),
        });
    }
    let examples = raw
        .into_iter()
        .map(|(_, text, l)| Example { label: names.iter().position(|n| *n == l).expect("label listed"), text })
        .collect();
    Ok(Dataset { examples, labels: names })
}

fn label_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Number(n) => n.as_i64().map(|i| i.to_string()),
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        serde_json::Value::Bool(b) => Some((*b as i64).to_string()),
        _ => None,
    }
}

const TEXT_KEYS: [&str; 3] = ["text", "sentence", "review"];
const LABEL_KEYS: [&str; 3] = ["label", "class", "polarity"];

fn from_object(o: &serde_json::Map<String, serde_json::Value>) -> Result<Option<(String, String)>, String> {
    let text = TEXT_KEYS.iter().find_map(|k| o.get(*k)).ok_or("no text field (text, sentence, review)")?;
    let text = text.as_str().ok_or("the text field is not a string")?.to_string();
    let label = LABEL_KEYS.iter().find_map(|k| o.get(*k)).ok_or("no label field (label, class, polarity)")?;
    if label.is_null() {
        return Ok(None); // UCI files end with a record whose class is null
    }
    let label = label_string(label).ok_or_else(|| format!("label {label} is not an integer or a name"))?;
    Ok(Some((text, label)))
}

fn read_json_array(path: &Path, text: &str) -> Result<Dataset, DataError> {
    let rows: Vec<serde_json::Value> = serde_json::from_str(text).map_err(|e| DataError::Row {
        path: path.into(),
        line: e.line(),
        problem: e.to_string(),
    })?;
    let mut raw = vec![];
    for (i, r) in rows.iter().enumerate() {
        let o = r
            .as_object()
            .ok_or_else(|| DataError::File { path: path.into(), problem: format!("record {i} is not an object") })?;
        match from_object(o) {
            Ok(Some((t, l))) => raw.push((i, t, l)),
            Ok(None) => {}
            Err(problem) => {
                return Err(DataError::File { path: path.into(), problem: format!("record {i}: {problem}") })
            }
        }
    }
    index_labels(path, raw)
}

fn read_jsonl(path: &Path, text: &str) -> Result<Dataset, DataError> {
    let mut raw = vec![];
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row = |problem: String| DataError::Row { path: path.into(), line: i + 1, problem };
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| row(e.to_string()))?;
        let o = v.as_object().ok_or_else(|| row("not a JSON object".into()))?;
        if let Some((t, l)) = from_object(o).map_err(row)? {
            raw.push((i + 1, t, l));
        }
    }
    index_labels(path, raw)
}

/// CSV/TSV through the `csv` crate (quoted fields may span lines, as in MR's file). With a header naming text and
/// label columns (`sentence`/`text`, `label`), those are used; without one, a two-column file whose first column is
/// numeric is `label,text` (MR: `"1","the rock is ..."`), otherwise `text,label`.
fn read_delimited(path: &Path, text: &str, sep: char) -> Result<Dataset, DataError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(sep as u8)
        .has_headers(false)
        .flexible(true)
        .quoting(sep != '\t')
        .from_reader(text.as_bytes());
    let mut records = vec![];
    for r in reader.records() {
        let r = r.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line() as usize);
            DataError::Row { path: path.into(), line, problem: e.to_string() }
        })?;
        let line = r.position().map_or(0, |p| p.line() as usize);
        if r.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        records.push((line, r));
    }
    let Some((_, first)) = records.first() else {
        return Err(DataError::File { path: path.into(), problem: "empty file".into() });
    };
    let lower: Vec<String> = first.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
    let find = |keys: &[&str]| lower.iter().position(|h| keys.contains(&h.as_str()));
    let (ti, li, skip) = match (find(&TEXT_KEYS), find(&LABEL_KEYS)) {
        (Some(t), Some(l)) => (t, l, 1),
        _ if lower.len() >= 2 && lower[0].parse::<i64>().is_ok() => (1, 0, 0),
        _ => (0, 1, 0),
    };
    let mut raw = vec![];
    for (line, r) in records.into_iter().skip(skip) {
        let row = |problem: String| DataError::Row { path: path.into(), line, problem };
        let (Some(t), Some(l)) = (r.get(ti), r.get(li)) else {
            return Err(row(format!("expected at least {} columns, found {}", ti.max(li) + 1, r.len())));
        };
        let (t, l) = (t.trim().to_string(), l.trim().to_string());
        if l.is_empty() {
            return Err(row("empty label".into()));
        }
        if t.is_empty() {
            return Err(row("empty text".into()));
        }
        raw.push((line, t, l));
    }
    index_labels(path, raw)
}
