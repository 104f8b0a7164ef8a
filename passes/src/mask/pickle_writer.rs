//! Writes a head mask the way SMP's `pickle.dump(head_mask, f)` does under numpy 1.x with protocol 3: a list of
//! L lists of H `numpy.bool_` scalars, each distinct object memoised once and referenced after. numpy 1.x's
//! module path (`numpy.core.multiarray`) is chosen because numpy 2.x still resolves it, while numpy 1.x cannot
//! resolve 2.x's `numpy._core`.

/// Pickle opcodes used here (see CPython's `pickletools`).
mod op {
    pub const PROTO: u8 = 0x80;
    pub const EMPTY_LIST: u8 = b']';
    pub const MARK: u8 = b'(';
    pub const APPEND: u8 = b'a';
    pub const APPENDS: u8 = b'e';
    pub const GLOBAL: u8 = b'c';
    pub const BINUNICODE: u8 = b'X';
    pub const SHORT_BINBYTES: u8 = b'C';
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const NONE: u8 = b'N';
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const TUPLE: u8 = b't';
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
    pub const REDUCE: u8 = b'R';
    pub const BUILD: u8 = b'b';
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const BINGET: u8 = b'h';
    pub const LONG_BINGET: u8 = b'j';
    pub const STOP: u8 = b'.';
}

/// CPython's pickler writes list items in batches of this many.
const BATCH: usize = 1000;

struct Writer {
    out: Vec<u8>,
    next_memo: u32,
    scalar: Option<u32>,
    dtype: Option<u32>,
    bools: [Option<u32>; 2],
}

impl Writer {
    fn put(&mut self) -> u32 {
        let i = self.next_memo;
        match u8::try_from(i) {
            Ok(b) => self.out.extend([op::BINPUT, b]),
            Err(_) => {
                self.out.push(op::LONG_BINPUT);
                self.out.extend(i.to_le_bytes());
            }
        }
        self.next_memo += 1;
        i
    }

    fn get(&mut self, i: u32) {
        match u8::try_from(i) {
            Ok(b) => self.out.extend([op::BINGET, b]),
            Err(_) => {
                self.out.push(op::LONG_BINGET);
                self.out.extend(i.to_le_bytes());
            }
        }
    }

    fn unicode(&mut self, s: &str) {
        self.out.push(op::BINUNICODE);
        self.out.extend((s.len() as u32).to_le_bytes());
        self.out.extend(s.as_bytes());
        self.put();
    }

    /// `numpy.dtype('b1', False, True)` with its state tuple, as numpy's `__reduce__` spells it.
    fn dtype(&mut self) {
        if let Some(i) = self.dtype {
            return self.get(i);
        }
        self.out.push(op::GLOBAL);
        self.out.extend(b"numpy\ndtype\n");
        self.put();
        self.unicode("b1");
        self.out.extend([op::NEWFALSE, op::NEWTRUE, op::TUPLE3]);
        self.put();
        self.out.push(op::REDUCE);
        self.dtype = Some(self.put());
        self.out.extend([op::MARK, op::BININT1, 3]);
        self.unicode("|");
        self.out.extend([op::NONE, op::NONE, op::NONE, op::BININT]);
        self.out.extend((-1i32).to_le_bytes());
        self.out.push(op::BININT);
        self.out.extend((-1i32).to_le_bytes());
        self.out.extend([op::BININT1, 0, op::TUPLE]);
        self.put();
        self.out.push(op::BUILD);
    }

    /// `numpy.core.multiarray.scalar(dtype('bool'), b'\x00' or b'\x01')`, memoised per value.
    fn bool_scalar(&mut self, value: bool) {
        if let Some(i) = self.bools[value as usize] {
            return self.get(i);
        }
        match self.scalar {
            Some(i) => self.get(i),
            None => {
                self.out.push(op::GLOBAL);
                self.out.extend(b"numpy.core.multiarray\nscalar\n");
                self.scalar = Some(self.put());
            }
        }
        self.dtype();
        self.out.extend([op::SHORT_BINBYTES, 1, value as u8]);
        self.put();
        self.out.push(op::TUPLE2);
        self.put();
        self.out.push(op::REDUCE);
        self.bools[value as usize] = Some(self.put());
    }

    /// A list whose items `item` writes, batched as CPython's `_batch_appends` does.
    fn list<T>(&mut self, items: &[T], mut item: impl FnMut(&mut Self, &T)) {
        self.out.push(op::EMPTY_LIST);
        self.put();
        for chunk in items.chunks(BATCH) {
            if chunk.len() == 1 {
                item(self, &chunk[0]);
                self.out.push(op::APPEND);
            } else {
                self.out.push(op::MARK);
                for x in chunk {
                    item(self, x);
                }
                self.out.push(op::APPENDS);
            }
        }
    }
}

/// The pickle bytes of `keep` (a list of lists of `numpy.bool_`), protocol 3.
pub fn write_bool_lists(keep: &[Vec<bool>]) -> Vec<u8> {
    let mut w = Writer { out: vec![op::PROTO, 3], next_memo: 0, scalar: None, dtype: None, bools: [None; 2] };
    w.list(keep, |w, row| w.list(row, |w, b| w.bool_scalar(*b)));
    w.out.push(op::STOP);
    w.out
}
