//! Head masks: which heads of which layer to keep (True = keep, as SMP writes them). Read from SMP's pickle,
//! JSON `[[true, false, ...], ...]`, `.npy` or safetensors (one [L, H] tensor), recognised by content.

mod npy;
mod pickle;
mod pickle_writer;

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("head mask {path}: {problem}")]
pub struct MaskError {
    pub path: PathBuf,
    pub problem: String,
}

/// `keep[layer][head]`; every layer has the same number of heads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeadMask {
    pub keep: Vec<Vec<bool>>,
}

/// A mask file larger than this is not a head mask.
const MAX_BYTES: u64 = 16 << 20;

impl HeadMask {
    pub fn layers(&self) -> usize {
        self.keep.len()
    }
    pub fn heads(&self) -> usize {
        self.keep.first().map_or(0, Vec::len)
    }
    pub fn kept(&self) -> usize {
        self.keep.iter().flatten().filter(|k| **k).count()
    }

    fn from_rows(keep: Vec<Vec<bool>>) -> Result<Self, String> {
        if keep.is_empty() || keep[0].is_empty() {
            return Err("the mask is empty".into());
        }
        if let Some((i, r)) = keep.iter().enumerate().find(|(_, r)| r.len() != keep[0].len()) {
            return Err(format!("layer {i} has {} heads but layer 0 has {}", r.len(), keep[0].len()));
        }
        Ok(HeadMask { keep })
    }

    fn from_values(shape: &[usize], v: &[f64]) -> Result<Self, String> {
        if shape.len() != 2 {
            return Err(format!("expected shape [layers, heads], got {shape:?}"));
        }
        if let Some(x) = v.iter().find(|x| **x != 0.0 && **x != 1.0) {
            return Err(format!("values must be 0 or 1, found {x}"));
        }
        Self::from_rows(v.chunks(shape[1].max(1)).map(|r| r.iter().map(|x| *x == 1.0).collect()).collect())
    }

    /// Read a mask, choosing the format from the file's content.
    pub fn read(path: &Path) -> Result<Self, MaskError> {
        let err = |problem: String| MaskError { path: path.into(), problem };
        let bytes = bertopt_ir::read_capped(path, MAX_BYTES).map_err(|e| err(format!("cannot read: {e}")))?;
        Self::from_bytes(&bytes).map_err(err)
    }

    /// Decode a mask file's content (the format is recognised by its first bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let first = bytes.iter().copied().find(|c| !c.is_ascii_whitespace());
        if bytes.first() == Some(&0x80) {
            pickle::read_bool_lists(bytes)
                .map_err(|e| format!("not an SMP head-mask pickle: {e}"))
                .and_then(Self::from_rows)
        } else if bytes.starts_with(b"\x93NUMPY") {
            npy::read(bytes).and_then(|(s, v)| Self::from_values(&s, &v))
        } else if first == Some(b'[') {
            serde_json::from_slice::<Vec<Vec<serde_json::Value>>>(bytes)
                .map_err(|e| format!("bad JSON: {e}"))
                .and_then(|rows| {
                    rows.into_iter()
                        .map(|r| {
                            r.into_iter()
                                .map(|v| match v {
                                    serde_json::Value::Bool(b) => Ok(b),
                                    serde_json::Value::Number(n) if n.as_f64() == Some(1.0) => Ok(true),
                                    serde_json::Value::Number(n) if n.as_f64() == Some(0.0) => Ok(false),
                                    other => Err(format!("expected true/false or 1/0, found {other}")),
                                })
                                .collect::<Result<Vec<bool>, String>>()
                        })
                        .collect::<Result<Vec<_>, String>>()
                })
                .and_then(Self::from_rows)
        } else {
            read_safetensors(bytes)
        }
    }

    /// The mask as SMP writes it: a protocol-3 pickle of L lists of H `numpy.bool_`.
    pub fn to_pickle(&self) -> Vec<u8> {
        pickle_writer::write_bool_lists(&self.keep)
    }

    /// The mask as JSON, one layer per line.
    pub fn to_json(&self) -> String {
        let rows: Vec<String> = self.keep.iter().map(|r| serde_json::to_string(r).expect("bools serialise")).collect();
        format!("[\n  {}\n]\n", rows.join(",\n  "))
    }
}

fn read_safetensors(bytes: &[u8]) -> Result<HeadMask, String> {
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| format!("not a pickle, .npy, JSON or safetensors head mask ({e})"))?;
    let names = st.names();
    if names.len() != 1 {
        return Err(format!(
            "a safetensors head mask holds exactly one [layers, heads] tensor, this one holds {}",
            names.len()
        ));
    }
    let t = st.tensor(names[0]).map_err(|e| e.to_string())?;
    let data = t.data();
    use safetensors::Dtype::*;
    let v: Vec<f64> = match t.dtype() {
        BOOL | U8 => data.iter().map(|&b| b as f64).collect(),
        F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64).collect(),
        I64 => data.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as f64).collect(),
        other => return Err(format!("dtype {other:?} is not supported (bool, u8, f32, i64)")),
    };
    HeadMask::from_values(t.shape(), &v)
}
