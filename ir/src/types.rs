//! Value types: an element type and a shape whose dims are numbers or named symbols.

use std::fmt;

/// Element type of a value or weight. The IR only needs what BERT graphs carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    I64,
    /// Weights only: an int8 linear's whole-number weights (see `quant`), held as f32 data.
    I8,
}

impl DType {
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::I64 => "i64",
            DType::I8 => "i8",
        }
    }

    pub fn from_name(s: &str) -> Option<DType> {
        match s {
            "f32" => Some(DType::F32),
            "i64" => Some(DType::I64),
            "i8" => Some(DType::I8),
            _ => None,
        }
    }
}

/// One dimension: known size or a symbol bound at run time (`batch`, `sequence`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    Known(usize),
    Sym(String),
}

impl Dim {
    pub fn sym(s: &str) -> Dim {
        Dim::Sym(s.to_string())
    }

    pub fn known(&self) -> Option<usize> {
        match self {
            Dim::Known(n) => Some(*n),
            Dim::Sym(_) => None,
        }
    }
}

impl From<usize> for Dim {
    fn from(n: usize) -> Dim {
        Dim::Known(n)
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(n) => write!(f, "{n}"),
            Dim::Sym(s) => write!(f, "{s}"),
        }
    }
}

/// The type of a value: `f32[batch, sequence, 384]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ValueType {
    pub dtype: DType,
    pub shape: Vec<Dim>,
}

impl ValueType {
    pub fn new(dtype: DType, shape: Vec<Dim>) -> Self {
        ValueType { dtype, shape }
    }

    /// A fully known shape (weights always have one).
    pub fn known(dtype: DType, dims: &[usize]) -> Self {
        ValueType { dtype, shape: dims.iter().map(|&d| Dim::Known(d)).collect() }
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn last(&self) -> Option<&Dim> {
        self.shape.last()
    }

    /// The dims as numbers, if none is symbolic.
    pub fn known_dims(&self) -> Option<Vec<usize>> {
        self.shape.iter().map(Dim::known).collect()
    }

    /// Number of elements, if the shape is fully known and the product does not overflow.
    pub fn num_elements(&self) -> Option<usize> {
        self.known_dims()?.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
    }

    /// Same type with the last dim replaced.
    pub fn with_last(&self, d: Dim) -> Self {
        let mut t = self.clone();
        if let Some(l) = t.shape.last_mut() {
            *l = d;
        }
        t
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[", self.dtype.name())?;
        for (i, d) in self.shape.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, "]")
    }
}
