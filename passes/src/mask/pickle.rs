//! A reader for exactly what SMP's `cal.py` writes with `pickle.dump`: a list of L lists of H `numpy.bool_`
//! scalars (protocol 3 from numpy 1.x, protocol 4 from numpy 2.x). It is a tiny pickle machine that knows only the
//! opcodes such a file uses and only two globals, `numpy.dtype` and `numpy[._]core.multiarray.scalar`, each
//! accepted with the arguments a bool scalar needs. Nothing is executed; anything else is rejected by name.

/// A value on the machine's stack.
#[derive(Clone, Debug, PartialEq)]
enum V {
    None,
    Bool(bool),
    Int(i64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<V>),
    /// Index into the list arena (lists are shared through the memo and filled after creation).
    List(usize),
    /// `numpy.dtype` or `numpy.core.multiarray.scalar`, not yet applied.
    Global(Global),
    /// `numpy.dtype('b1')`.
    BoolDtype,
    Mark,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Global {
    Dtype,
    Scalar,
}

const MAX_ITEMS: usize = 1 << 16;

/// Decode the file's bytes into rows of booleans. Errors say which opcode or object was unexpected and where.
pub fn read_bool_lists(bytes: &[u8]) -> Result<Vec<Vec<bool>>, String> {
    let mut m = Machine { b: bytes, pos: 0, stack: vec![], memo: vec![], lists: vec![] };
    let top = m.run()?;
    let V::List(outer) = top else { return Err(format!("the pickle holds {top:?}, not a list of lists")) };
    let rows = m.lists[outer].clone();
    rows.iter()
        .enumerate()
        .map(|(i, r)| match r {
            V::List(j) => m.lists[*j]
                .iter()
                .enumerate()
                .map(|(h, v)| match v {
                    V::Bool(x) => Ok(*x),
                    other => Err(format!("layer {i}, head {h}: expected a numpy.bool_, found {other:?}")),
                })
                .collect(),
            other => Err(format!("layer {i}: expected a list of heads, found {other:?}")),
        })
        .collect()
}

struct Machine<'a> {
    b: &'a [u8],
    pos: usize,
    stack: Vec<V>,
    memo: Vec<Option<V>>,
    lists: Vec<Vec<V>>,
}

impl Machine<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.pos + n > self.b.len() {
            return Err(format!("truncated pickle at byte {}", self.pos));
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn pop(&mut self) -> Result<V, String> {
        self.stack.pop().ok_or_else(|| format!("stack underflow at byte {}", self.pos))
    }
    fn push(&mut self, v: V) -> Result<(), String> {
        if self.stack.len() >= MAX_ITEMS {
            return Err("pickle stack grows past any head mask's size".into());
        }
        self.stack.push(v);
        Ok(())
    }
    fn pop_mark(&mut self) -> Result<Vec<V>, String> {
        let at = self.stack.iter().rposition(|v| *v == V::Mark).ok_or("no MARK on the stack")?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }
    fn put(&mut self, idx: usize) -> Result<(), String> {
        if idx >= MAX_ITEMS {
            return Err(format!("memo index {idx} is out of range"));
        }
        let v = self.stack.last().cloned().ok_or("MEMOIZE on an empty stack")?;
        if self.memo.len() <= idx {
            self.memo.resize(idx + 1, None);
        }
        self.memo[idx] = Some(v);
        Ok(())
    }
    fn get(&mut self, idx: usize) -> Result<(), String> {
        let v = self.memo.get(idx).cloned().flatten().ok_or_else(|| format!("memo entry {idx} was never stored"))?;
        self.push(v)
    }
    fn global(module: &str, name: &str) -> Result<Global, String> {
        match (module, name) {
            ("numpy", "dtype") => Ok(Global::Dtype),
            ("numpy.core.multiarray" | "numpy._core.multiarray", "scalar") => Ok(Global::Scalar),
            _ => Err(format!("refusing global {module}.{name}: a head mask holds only numpy.bool_ scalars")),
        }
    }
    fn append(&mut self, list: usize, items: Vec<V>) -> Result<(), String> {
        let l = &mut self.lists[list];
        if l.len() + items.len() > MAX_ITEMS {
            return Err("list too long for a head mask".into());
        }
        l.extend(items);
        Ok(())
    }

    fn run(&mut self) -> Result<V, String> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if !(2..=5).contains(&proto) {
                        return Err(format!("pickle protocol {proto} is not one SMP writes (3 or 4)"));
                    }
                }
                0x95 => {
                    self.take(8)?; // FRAME: a length hint only
                }
                b']' => {
                    if self.lists.len() >= MAX_ITEMS {
                        return Err("too many lists".into());
                    }
                    self.lists.push(vec![]);
                    self.push(V::List(self.lists.len() - 1))?;
                }
                b')' => self.push(V::Tuple(vec![]))?,
                b'(' => self.push(V::Mark)?,
                0x94 => {
                    let idx = self.memo.len();
                    self.put(idx)?
                }
                b'q' => {
                    let i = self.u8()? as usize;
                    self.put(i)?
                }
                b'r' => {
                    let i = self.u32()? as usize;
                    self.put(i)?
                }
                b'h' => {
                    let i = self.u8()? as usize;
                    self.get(i)?
                }
                b'j' => {
                    let i = self.u32()? as usize;
                    self.get(i)?
                }
                0x8c | b'X' => {
                    let n = if op == 0x8c { self.u8()? as usize } else { self.u32()? as usize };
                    let s = String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "string is not UTF-8")?;
                    self.push(V::Str(s))?
                }
                b'C' | b'B' => {
                    let n = if op == b'C' { self.u8()? as usize } else { self.u32()? as usize };
                    let s = self.take(n)?.to_vec();
                    self.push(V::Bytes(s))?
                }
                b'c' => {
                    let rest = &self.b[self.pos..];
                    let mut lines = rest.splitn(3, |&c| c == b'\n');
                    let module = lines.next().ok_or("truncated GLOBAL")?;
                    let name = lines.next().ok_or("truncated GLOBAL")?;
                    let (module, name) =
                        (String::from_utf8_lossy(module).to_string(), String::from_utf8_lossy(name).to_string());
                    self.pos += module.len() + name.len() + 2;
                    if self.pos > self.b.len() {
                        return Err("truncated GLOBAL".into());
                    }
                    self.push(V::Global(Self::global(&module, &name)?))?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (V::Str(m), V::Str(n)) => self.push(V::Global(Self::global(&m, &n)?))?,
                        _ => return Err("STACK_GLOBAL without two strings".into()),
                    }
                }
                0x88 => self.push(V::Bool(true))?,
                0x89 => self.push(V::Bool(false))?,
                b'N' => self.push(V::None)?,
                b'K' => {
                    let v = self.u8()? as i64;
                    self.push(V::Int(v))?
                }
                b'M' => {
                    let s = self.take(2)?;
                    let v = u16::from_le_bytes([s[0], s[1]]) as i64;
                    self.push(V::Int(v))?
                }
                b'J' => {
                    let v = self.u32()? as i32 as i64;
                    self.push(V::Int(v))?
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(V::Tuple(items))?
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err(format!("stack underflow at byte {at}"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.push(V::Tuple(items))?
                }
                b'R' => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let v = match (f, args) {
                        (V::Global(Global::Dtype), V::Tuple(a)) if a.first() == Some(&V::Str("b1".into())) => {
                            V::BoolDtype
                        }
                        (V::Global(Global::Dtype), a) => {
                            return Err(format!("numpy.dtype{a:?} is not the bool dtype 'b1'"))
                        }
                        (V::Global(Global::Scalar), V::Tuple(a)) => match a.as_slice() {
                            [V::BoolDtype, V::Bytes(b)] if b.len() == 1 && b[0] <= 1 => V::Bool(b[0] == 1),
                            other => return Err(format!("numpy scalar{other:?} is not a bool scalar")),
                        },
                        (f, _) => {
                            return Err(format!("REDUCE on {f:?} at byte {at}: only numpy globals may be called"))
                        }
                    };
                    self.push(v)?
                }
                b'b' => {
                    // BUILD sets the dtype's pickled state (byte order etc.); the bool dtype needs none of it.
                    let _state = self.pop()?;
                    match self.stack.last() {
                        Some(V::BoolDtype) => {}
                        other => return Err(format!("BUILD on {other:?}: only the bool dtype is expected")),
                    }
                }
                b'a' => {
                    let item = self.pop()?;
                    match self.stack.last() {
                        Some(V::List(l)) => {
                            let l = *l;
                            self.append(l, vec![item])?
                        }
                        _ => return Err(format!("APPEND to a non-list at byte {at}")),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.stack.last() {
                        Some(V::List(l)) => {
                            let l = *l;
                            self.append(l, items)?
                        }
                        _ => return Err(format!("APPENDS to a non-list at byte {at}")),
                    }
                }
                b'.' => {
                    let v = self.pop()?;
                    return Ok(v);
                }
                other => {
                    return Err(format!(
                        "unsupported pickle opcode 0x{other:02x} at byte {at} (not used by SMP head masks)"
                    ))
                }
            }
        }
    }
}
