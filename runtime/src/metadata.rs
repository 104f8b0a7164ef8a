//! The metadata `optimize` writes into every export (`bertopt_schema::meta`), read without planning the model.

use std::path::Path;

use tract_onnx::prelude::Framework;

use crate::error::{Error, Result};

/// The `metadata_props` of an ONNX file, or of a segmented model's first stage.
pub fn read(path: &Path) -> Result<Vec<(String, String)>> {
    let file = match bertopt_schema::manifest::folder(path) {
        Some(dir) => bertopt_schema::Manifest::first_stage(&dir)?,
        None => path.to_path_buf(),
    };
    let proto = tract_onnx::onnx()
        .proto_model_for_path(&file)
        .map_err(|e| Error::model(&file, format!("not a readable ONNX model: {e:?}")))?;
    Ok(proto.metadata_props.into_iter().map(|e| (e.key, e.value)).collect())
}

/// The value of `key`, if present.
pub fn get<'a>(meta: &'a [(String, String)], key: &str) -> Option<&'a str> {
    meta.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The tokenizer for the model at `path`: `explicit` when given, else the one its export embedded.
pub fn tokenizer(
    path: &Path,
    props: &[(String, String)],
    explicit: Option<&Path>,
) -> Result<crate::tokenize::TextEncoder> {
    if let Some(p) = explicit {
        return crate::tokenize::TextEncoder::from_file(p);
    }
    let key = bertopt_schema::meta::TOKENIZER;
    let json = required(props, path, key, "no tokenizer to encode text with")?;
    crate::tokenize::TextEncoder::from_json(json).map_err(|e| Error::BadMetadata {
        path: path.into(),
        key,
        problem: e.to_string(),
    })
}

/// The value of `key`, or `Error::MissingMetadata` saying what it was needed for.
pub fn required<'a>(
    props: &'a [(String, String)],
    path: &Path,
    key: &'static str,
    what: &'static str,
) -> Result<&'a str> {
    get(props, key).ok_or_else(|| Error::MissingMetadata { path: path.into(), key, what })
}
