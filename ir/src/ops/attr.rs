//! Attributes as the text form writes them (`heads=12`, `w=@p`, `layers=[2, 4]`), and the reader an op's
//! `parse` takes them from: each read marks the attribute used, so one the op does not know is an error.

/// An attribute value as the text form writes it.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    Int(i64),
    Float(f32),
    /// A reference to a weight or a weight group: `@encoder.layer.0.attention.self.query`.
    Weight(String),
    /// A list of integers: `[4, 8, 12]`.
    Ints(Vec<i64>),
}

/// The attributes of one op line, read by name.
pub struct AttrReader<'a> {
    attrs: &'a [(String, Attr)],
    used: Vec<bool>,
}

impl<'a> AttrReader<'a> {
    pub fn new(attrs: &'a [(String, Attr)]) -> Self {
        AttrReader { attrs, used: vec![false; attrs.len()] }
    }

    /// The first attribute no read asked for, if any.
    pub fn unused(&self) -> Option<&'a str> {
        self.used.iter().position(|u| !u).map(|i| self.attrs[i].0.as_str())
    }

    fn get(&mut self, key: &str) -> Result<&Attr, String> {
        let i = self.attrs.iter().position(|(k, _)| k == key).ok_or_else(|| format!("missing attribute `{key}`"))?;
        self.used[i] = true;
        Ok(&self.attrs[i].1)
    }
    pub fn has(&self, key: &str) -> bool {
        self.attrs.iter().any(|(k, _)| k == key)
    }
    pub fn usizes(&mut self, key: &str) -> Result<Vec<usize>, String> {
        match self.get(key)? {
            Attr::Ints(v) if v.iter().all(|&i| i >= 0) => Ok(v.iter().map(|&i| i as usize).collect()),
            other => Err(format!("attribute `{key}` must be a list of non-negative integers, got {other:?}")),
        }
    }
    pub fn weight(&mut self, key: &str) -> Result<String, String> {
        match self.get(key)? {
            Attr::Weight(s) => Ok(s.clone()),
            other => Err(format!("attribute `{key}` must be a weight (@name), got {other:?}")),
        }
    }
    pub fn float(&mut self, key: &str) -> Result<f32, String> {
        match self.get(key)? {
            Attr::Float(x) => Ok(*x),
            Attr::Int(i) => Ok(*i as f32),
            other => Err(format!("attribute `{key}` must be a number, got {other:?}")),
        }
    }
    pub fn usize(&mut self, key: &str) -> Result<usize, String> {
        match self.get(key)? {
            Attr::Int(i) if *i >= 0 => Ok(*i as usize),
            other => Err(format!("attribute `{key}` must be a non-negative integer, got {other:?}")),
        }
    }
}

/// `@name` as an attribute.
pub fn weight(name: &str) -> Attr {
    Attr::Weight(name.to_string())
}

/// A count as an attribute.
pub fn int(v: usize) -> Attr {
    Attr::Int(v as i64)
}
