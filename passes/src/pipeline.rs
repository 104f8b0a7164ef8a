//! Textual pass pipelines in LLVM's style: `heads(ratio=0.5),ffn(sparsity=0.5),dce`.

use std::collections::BTreeMap;

use crate::error::PassError;

/// One pass of a pipeline as written: its name and arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassSpec {
    pub name: String,
    pub args: BTreeMap<String, String>,
}

/// Parse `a,b(k=v,k2=v2),c`. Names and keys are `[A-Za-z0-9_-]+`; values run to the next `,` or `)`.
pub fn parse_pipeline(text: &str) -> Result<Vec<PassSpec>, PassError> {
    let err =
        |col: usize, problem: &str| PassError::Syntax { pipeline: text.into(), col: col + 1, problem: problem.into() };
    let b = text.as_bytes();
    let mut i = 0;
    let mut out = vec![];
    let word = |i: &mut usize| {
        let s = *i;
        while *i < b.len() && (b[*i].is_ascii_alphanumeric() || b[*i] == b'_' || b[*i] == b'-') {
            *i += 1;
        }
        text[s..*i].to_string()
    };
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && b[*i] == b' ' {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        let name = word(&mut i);
        if name.is_empty() {
            return Err(err(i, "expected a pass name"));
        }
        let mut args = BTreeMap::new();
        skip_ws(&mut i);
        if i < b.len() && b[i] == b'(' {
            i += 1;
            loop {
                skip_ws(&mut i);
                if i < b.len() && b[i] == b')' && args.is_empty() {
                    i += 1;
                    break;
                }
                let key = word(&mut i);
                if key.is_empty() {
                    return Err(err(i, "expected an argument name"));
                }
                skip_ws(&mut i);
                if i >= b.len() || b[i] != b'=' {
                    return Err(err(i, "expected `=` after the argument name"));
                }
                i += 1;
                let s = i;
                while i < b.len() && b[i] != b',' && b[i] != b')' {
                    i += 1;
                }
                let value = text[s..i].trim().to_string();
                if value.is_empty() {
                    return Err(err(s, "expected a value"));
                }
                if args.insert(key.clone(), value).is_some() {
                    return Err(err(s, &format!("argument `{key}` given twice")));
                }
                if i >= b.len() {
                    return Err(err(i, "missing `)`"));
                }
                i += 1;
                if b[i - 1] == b')' {
                    break;
                }
            }
        }
        out.push(PassSpec { name, args });
        skip_ws(&mut i);
        if i == b.len() {
            return Ok(out);
        }
        if b[i] != b',' {
            return Err(err(i, "expected `,` between passes"));
        }
        i += 1;
    }
}
