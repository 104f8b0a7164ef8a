//! Tokenizers for ONNX files: the copy bertopt embeds in every model it writes, or an explicit tokenizer.json.

use std::path::Path;

use anyhow::Context;
pub use bertopt_models::data::tokenize::TextEncoder;

/// Load the tokenizer for an ONNX file: `explicit` if given, else the copy bertopt embedded in the model.
pub fn for_model(onnx: &Path, explicit: Option<&Path>) -> anyhow::Result<TextEncoder> {
    if let Some(p) = explicit {
        return Ok(TextEncoder::from_file(p)?);
    }
    let meta = crate::onnx::read_metadata(onnx).with_context(|| format!("reading {}", onnx.display()))?;
    from_metadata(onnx, &meta, None)
}

/// As `for_model`, from metadata already read from `onnx` (a file parse is the cost of reading it).
pub fn from_metadata(onnx: &Path, meta: &[(String, String)], explicit: Option<&Path>) -> anyhow::Result<TextEncoder> {
    bertopt_runtime::metadata::tokenizer(onnx, meta, explicit).map_err(|e| match e {
        bertopt_runtime::Error::MissingMetadata { .. } => {
            anyhow::anyhow!("{} has no embedded tokenizer: pass --tokenizer PATH/tokenizer.json", onnx.display())
        }
        e => e.into(),
    })
}
