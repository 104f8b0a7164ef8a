//! Parser for the text form written by `print`. Errors carry line and column. A weight parses to a declaration
//! (type, no data) unless the text gives its data: `= seeded(N)` (deterministic values, see `seeded`) or
//! `= [v, v, ...]` (row-major literals), which is how a pass file test fixes its result in the file.

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use crate::graph::{Graph, Value, Weight};
use crate::ops::{Attr, Op};
use crate::types::{DType, Dim, ValueType};

#[derive(Debug, thiserror::Error)]
#[error("IR text, line {line}, column {col}: {msg}")]
pub struct ParseError {
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Value(String),
    Weight(String),
    Num(String),
    Punct(char),
    Eof,
}

struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    line: usize,
    col: usize,
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-' || c == b'/'
}

impl<'a> Lexer<'a> {
    fn skip_space(&mut self) {
        while self.pos < self.src.len() {
            let c = self.src[self.pos];
            if c == b'\n' {
                self.line += 1;
                self.col = 1;
                self.pos += 1;
            } else if c.is_ascii_whitespace() {
                self.col += 1;
                self.pos += 1;
            } else if c == b';' {
                // comment to end of line
                while self.pos < self.src.len() && self.src[self.pos] != b'\n' {
                    self.pos += 1;
                }
            } else {
                break;
            }
        }
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> String {
        let start = self.pos;
        while self.pos < self.src.len() && f(self.src[self.pos]) {
            self.pos += 1;
            self.col += 1;
        }
        String::from_utf8_lossy(&self.src[start..self.pos]).into_owned()
    }

    fn next(&mut self) -> Result<(Tok, usize, usize), ParseError> {
        self.skip_space();
        let (line, col) = (self.line, self.col);
        let err = |msg: String| ParseError { line, col, msg };
        if self.pos >= self.src.len() {
            return Ok((Tok::Eof, line, col));
        }
        let c = self.src[self.pos];
        let tok = match c {
            b'%' | b'@' => {
                self.pos += 1;
                self.col += 1;
                let name = self.take_while(is_name_char);
                if name.is_empty() {
                    return Err(err(format!("`{}` must be followed by a name", c as char)));
                }
                if c == b'%' {
                    Tok::Value(name)
                } else {
                    Tok::Weight(name)
                }
            }
            b'0'..=b'9' | b'-' => Tok::Num(self.take_while(|c| c.is_ascii_alphanumeric() || b".-+".contains(&c))),
            c if c.is_ascii_alphabetic() || c == b'_' => Tok::Ident(self.take_while(is_name_char)),
            b'(' | b')' | b'{' | b'}' | b'[' | b']' | b':' | b',' | b'=' => {
                self.pos += 1;
                self.col += 1;
                Tok::Punct(c as char)
            }
            other => return Err(err(format!("unexpected character `{}`", other as char))),
        };
        Ok((tok, line, col))
    }
}

struct Parser<'a> {
    lex: Lexer<'a>,
    tok: Tok,
    line: usize,
    col: usize,
}

impl<'a> Parser<'a> {
    fn err<T>(&self, msg: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError { line: self.line, col: self.col, msg: msg.into() })
    }
    fn bump(&mut self) -> Result<Tok, ParseError> {
        let (t, l, c) = self.lex.next()?;
        let old = std::mem::replace(&mut self.tok, t);
        self.line = l;
        self.col = c;
        Ok(old)
    }
    fn punct(&mut self, p: char) -> Result<(), ParseError> {
        if self.tok == Tok::Punct(p) {
            self.bump()?;
            Ok(())
        } else {
            self.err(format!("expected `{p}`, found {}", describe(&self.tok)))
        }
    }
    fn eat(&mut self, p: char) -> Result<bool, ParseError> {
        if self.tok == Tok::Punct(p) {
            self.bump()?;
            return Ok(true);
        }
        Ok(false)
    }
    fn ident(&mut self) -> Result<String, ParseError> {
        match &self.tok {
            Tok::Ident(s) => {
                let s = s.clone();
                self.bump()?;
                Ok(s)
            }
            t => self.err(format!("expected a name, found {}", describe(t))),
        }
    }
    fn keyword(&mut self, k: &str) -> Result<(), ParseError> {
        match &self.tok {
            Tok::Ident(s) if s == k => {
                self.bump()?;
                Ok(())
            }
            t => self.err(format!("expected `{k}`, found {}", describe(t))),
        }
    }
    fn value(&mut self) -> Result<String, ParseError> {
        match &self.tok {
            Tok::Value(s) => {
                let s = s.clone();
                self.bump()?;
                Ok(s)
            }
            t => self.err(format!("expected a value (%name), found {}", describe(t))),
        }
    }
    fn ty(&mut self) -> Result<ValueType, ParseError> {
        let d = self.ident()?;
        let Some(dtype) = DType::from_name(&d) else {
            return self.err(format!("unknown element type `{d}` (types: f32, i64)"));
        };
        self.punct('[')?;
        let mut shape = vec![];
        if !self.eat(']')? {
            loop {
                match self.bump()? {
                    Tok::Num(n) => match n.parse::<usize>() {
                        Ok(v) => shape.push(Dim::Known(v)),
                        Err(_) => return self.err(format!("bad dimension `{n}`")),
                    },
                    Tok::Ident(s) => shape.push(Dim::Sym(s)),
                    t => return self.err(format!("expected a dimension, found {}", describe(&t))),
                }
                if self.eat(']')? {
                    break;
                }
                self.punct(',')?;
            }
        }
        Ok(ValueType::new(dtype, shape))
    }
    /// A weight's data after `=`: `seeded(N)` (see `seeded`) or the row-major values `[v, v, ...]`.
    fn weight_data(&mut self, name: &str, ty: &ValueType) -> Result<Tensor, ParseError> {
        let dims = ty.known_dims().expect("checked by the caller");
        let count: usize = dims.iter().product();
        let (line, col) = (self.line, self.col);
        if self.eat('[')? {
            let mut v = vec![];
            while !self.eat(']')? {
                match self.bump()? {
                    Tok::Num(n) => match n.parse::<f32>() {
                        Ok(x) => v.push(x),
                        Err(_) => return self.err(format!("bad number `{n}` in the data of @{name}")),
                    },
                    t => return self.err(format!("expected a number in the data of @{name}, found {}", describe(&t))),
                }
                if !self.eat(',')? && self.tok != Tok::Punct(']') {
                    return self
                        .err(format!("expected `,` or `]` in the data of @{name}, found {}", describe(&self.tok)));
                }
            }
            if v.len() != count {
                let msg = format!("@{name} is {ty} ({count} values) but its data has {}", v.len());
                return Err(ParseError { line, col, msg });
            }
            let t = Tensor::from_vec(v, dims.as_slice(), &Device::Cpu).expect("length checked");
            return Ok(match ty.dtype {
                DType::I64 => t.to_dtype(candle_core::DType::I64).expect("f32 converts to i64"),
                _ => t,
            });
        }
        self.keyword("seeded")?;
        self.punct('(')?;
        let seed = match self.bump()? {
            Tok::Num(n) => n.parse::<usize>().map_err(|_| ParseError {
                line: self.line,
                col: self.col,
                msg: format!("seeded(...) takes a whole number, got `{n}`"),
            })?,
            t => return self.err(format!("seeded(...) takes a whole number, found {}", describe(&t))),
        };
        self.punct(')')?;
        Ok(crate::seeded::seeded(&dims, seed, ty.dtype))
    }
    fn attr(&mut self) -> Result<Attr, ParseError> {
        match self.bump()? {
            Tok::Weight(w) => Ok(Attr::Weight(w)),
            Tok::Num(n) => {
                if let Ok(i) = n.parse::<i64>() {
                    Ok(Attr::Int(i))
                } else if let Ok(x) = n.parse::<f32>() {
                    Ok(Attr::Float(x))
                } else {
                    self.err(format!("bad number `{n}`"))
                }
            }
            Tok::Punct('[') => {
                let mut v = vec![];
                if self.eat(']')? {
                    return Ok(Attr::Ints(v));
                }
                loop {
                    match self.bump()? {
                        Tok::Num(n) => match n.parse::<i64>() {
                            Ok(i) => v.push(i),
                            Err(_) => return self.err(format!("expected an integer in the list, found `{n}`")),
                        },
                        t => return self.err(format!("expected an integer in the list, found {}", describe(&t))),
                    }
                    if self.eat(']')? {
                        return Ok(Attr::Ints(v));
                    }
                    self.punct(',')?;
                }
            }
            t => self.err(format!("expected an attribute value, found {}", describe(&t))),
        }
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("`{s}`"),
        Tok::Value(s) => format!("`%{s}`"),
        Tok::Weight(s) => format!("`@{s}`"),
        Tok::Num(s) => format!("`{s}`"),
        Tok::Punct(c) => format!("`{c}`"),
        Tok::Eof => "end of text".into(),
    }
}

/// Parse a graph from its text form. The result is not verified: call `verify` for that.
pub fn parse(src: &str) -> Result<Graph, ParseError> {
    let mut p = Parser { lex: Lexer { src: src.as_bytes(), pos: 0, line: 1, col: 1 }, tok: Tok::Eof, line: 1, col: 1 };
    p.bump()?;
    p.keyword("graph")?;
    let mut g = Graph::new(p.ident()?);
    let mut env: HashMap<String, Value> = HashMap::new();
    p.punct('(')?;
    if !p.eat(')')? {
        loop {
            let name = p.value()?;
            p.punct(':')?;
            let ty = p.ty()?;
            if env.contains_key(&name) {
                return p.err(format!("input %{name} declared twice"));
            }
            let n = g.add_input(&name, ty);
            env.insert(name, n.into());
            if p.eat(')')? {
                break;
            }
            p.punct(',')?;
        }
    }
    p.punct('{')?;
    loop {
        if let Tok::Ident(k) = &p.tok {
            if k == "return" {
                p.bump()?;
                loop {
                    let name = p.ident()?;
                    p.punct('=')?;
                    let v = p.value()?;
                    let Some(&n) = env.get(&v) else {
                        return p.err(format!("undefined value %{v}"));
                    };
                    g.add_output(&name, n);
                    if !p.eat(',')? {
                        break;
                    }
                }
                p.punct('}')?;
                break;
            }
        }
        // `%a: T = op(...)`, or for an op with several results `%a: T, %b: U = op(...)`.
        let mut results = vec![];
        loop {
            let name = p.value()?;
            if env.contains_key(&name) || results.iter().any(|(r, _)| *r == name) {
                return p.err(format!("value %{name} defined twice"));
            }
            p.punct(':')?;
            results.push((name, p.ty()?));
            if !p.eat(',')? {
                break;
            }
        }
        p.punct('=')?;
        let (mline, mcol) = (p.line, p.col);
        let mnemonic = p.ident()?;
        p.punct('(')?;
        let mut args = vec![];
        if !p.eat(')')? {
            loop {
                let v = p.value()?;
                let Some(&n) = env.get(&v) else {
                    return p.err(format!("undefined value %{v}"));
                };
                args.push(n);
                if p.eat(')')? {
                    break;
                }
                p.punct(',')?;
            }
        }
        let mut attrs = vec![];
        if p.eat('{')? && !p.eat('}')? {
            loop {
                let k = p.ident()?;
                p.punct(':')?;
                attrs.push((k, p.attr()?));
                if p.eat('}')? {
                    break;
                }
                p.punct(',')?;
            }
        }
        let op = Op::from_parts(&mnemonic, &attrs).map_err(|msg| ParseError { line: mline, col: mcol, msg })?;
        if args.len() != op.arity() {
            return Err(ParseError {
                line: mline,
                col: mcol,
                msg: format!("`{mnemonic}` takes {} operand(s), got {}", op.arity(), args.len()),
            });
        }
        let mut results = results.into_iter();
        let (name, ty) = results.next().expect("at least one result");
        let (names, more): (Vec<String>, Vec<_>) = results.unzip();
        let n = g.add_node_results(op, ty, more, &args);
        env.insert(name, n.into());
        for (i, name) in names.into_iter().enumerate() {
            env.insert(name, Value { node: n, result: i + 1 });
        }
    }
    for (block, spare) in [("weights", false), ("spare", true)] {
        if matches!(&p.tok, Tok::Ident(k) if k == block) {
            p.bump()?;
            p.punct('{')?;
            while !p.eat('}')? {
                let name = match p.bump()? {
                    Tok::Weight(w) => w,
                    t => return p.err(format!("expected a weight (@name), found {}", describe(&t))),
                };
                p.punct(':')?;
                let ty = p.ty()?;
                if ty.known_dims().is_none() {
                    return p.err(format!("weight @{name} must have a fully known shape, got {ty}"));
                }
                let data = if p.eat('=')? { Some(p.weight_data(&name, &ty)?) } else { None };
                let set = if spare { &mut g.spare } else { &mut g.weights };
                if set.0.insert(name.clone(), Weight { ty, data }).is_some() {
                    return p.err(format!("weight @{name} declared twice"));
                }
            }
        }
    }
    if p.tok != Tok::Eof {
        return p.err(format!("expected end of text, found {}", describe(&p.tok)));
    }
    Ok(g)
}
