//! The manifest of a segmented early-exit model (`segments.json`): one ONNX file per exit point, in order, and
//! the exit rule the driver applies between them. `optimize` writes it (`onnx::segments`); runners read it.

use std::path::{Path, PathBuf};

use crate::exit::ExitRule;

/// The file that describes a segmented model, inside its folder.
pub const MANIFEST: &str = "segments.json";

/// A model file (or folder) that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct FileError {
    pub path: PathBuf,
    pub problem: String,
}

impl FileError {
    pub fn new(path: &Path, problem: impl Into<String>) -> Self {
        FileError { path: path.to_path_buf(), problem: problem.into() }
    }
}

/// What the driver needs to know about a segmented model.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// `entropy` or `patience`.
    pub criterion: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patience: Option<usize>,
    pub stages: Vec<StageSpec>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StageSpec {
    /// The ONNX file, relative to the manifest.
    pub file: String,
    /// The layer (1-based) whose exit this stage ends with; the last stage's is the model's depth.
    pub exit_layer: usize,
    pub inputs: Vec<String>,
    /// Besides `logits`: values later stages read.
    pub carries: Vec<String>,
}

impl Manifest {
    /// The exit rule the manifest names (the problem as text when it names none).
    pub fn rule(&self) -> Result<ExitRule, String> {
        match (self.criterion.as_str(), self.threshold, self.patience) {
            ("entropy", Some(threshold), None) => Ok(ExitRule::Entropy { threshold }),
            ("patience", None, Some(patience)) => Ok(ExitRule::Patience { patience }),
            (c, t, p) => Err(format!(
                "criterion `{c}` with threshold {t:?} and patience {p:?} is not a rule (entropy needs a threshold, \
                 patience a patience)"
            )),
        }
    }

    /// Read and check a manifest: a rule, stages in order, files present.
    pub fn read(dir: &Path) -> Result<Manifest, FileError> {
        let path = dir.join(MANIFEST);
        let fail = |problem: String| FileError::new(&path, problem);
        let text = crate::read::read_capped_text(&path, crate::limits::MAX_CONFIG_BYTES)
            .map_err(|e| fail(format!("cannot read it: {e}")))?;
        let m: Manifest = serde_json::from_str(&text).map_err(|e| fail(format!("not a segment manifest: {e}")))?;
        m.rule().map_err(fail)?;
        if m.stages.is_empty() {
            return Err(fail("lists no stages".into()));
        }
        for w in m.stages.windows(2) {
            if w[0].exit_layer >= w[1].exit_layer {
                return Err(fail(format!(
                    "stage exit layers must increase ({} then {})",
                    w[0].exit_layer, w[1].exit_layer
                )));
            }
        }
        for s in &m.stages {
            if s.file.contains('/') || s.file.contains('\\') || s.file.starts_with('.') {
                return Err(fail(format!("stage file `{}` must be a plain name in the same folder", s.file)));
            }
            let f = dir.join(&s.file);
            if !f.is_file() {
                return Err(fail(format!("stage file {} is missing", f.display())));
            }
        }
        Ok(m)
    }

    /// The first stage's file: where the metadata (labels, tokenizer) of a segmented model is read from.
    pub fn first_stage(dir: &Path) -> Result<PathBuf, FileError> {
        Ok(dir.join(&Manifest::read(dir)?.stages[0].file))
    }
}

/// The folder of a segmented model, when `path` is one (or is its manifest).
pub fn folder(path: &Path) -> Option<PathBuf> {
    if path.is_dir() && path.join(MANIFEST).is_file() {
        return Some(path.to_path_buf());
    }
    if path.file_name().is_some_and(|n| n == MANIFEST) && path.is_file() {
        return Some(path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(".")));
    }
    None
}
