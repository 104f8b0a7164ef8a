//! A reader for `.npy` arrays of shape [L, H]: bool, uint8, int64, float32 or float64 holding only 0 and 1.

/// Returns (shape, values as f64 in C order).
pub fn read(bytes: &[u8]) -> Result<(Vec<usize>, Vec<f64>), String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not an .npy file (no \\x93NUMPY magic)".into());
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(format!(".npy version {v} is not supported")),
    };
    let header = bytes.get(start..start + hlen).ok_or("truncated .npy header")?;
    let header = std::str::from_utf8(header).map_err(|_| ".npy header is not text")?;
    let field = |key: &str| -> Result<&str, String> {
        let at = header.find(&format!("'{key}'")).ok_or_else(|| format!(".npy header has no '{key}'"))?;
        Ok(header[at + key.len() + 2..].trim_start().trim_start_matches(':').trim_start())
    };
    let descr = field("descr")?;
    let descr = descr.get(1..).and_then(|d| d.split('\'').next()).ok_or("bad descr")?;
    let fortran = field("fortran_order")?.starts_with("True");
    let shape_text = field("shape")?;
    let shape_text = shape_text.strip_prefix('(').and_then(|s| s.split(')').next()).ok_or("bad shape")?;
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| format!("bad dimension `{s}`")))
        .collect::<Result<_, _>>()?;
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("shape overflows")?;
    let data = &bytes[start + hlen..];
    let (size, conv): (usize, fn(&[u8]) -> f64) = match descr {
        "|b1" | "|u1" => (1, |b| b[0] as f64),
        "<i8" => (8, |b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as f64),
        "<f4" => (4, |b| f32::from_le_bytes(b.try_into().expect("4 bytes")) as f64),
        "<f8" => (8, |b| f64::from_le_bytes(b.try_into().expect("8 bytes"))),
        other => return Err(format!("dtype `{other}` is not supported (bool, uint8, int64, float32, float64)")),
    };
    let need = count.checked_mul(size).ok_or_else(|| format!("shape {shape:?} of `{descr}` overflows"))?;
    if data.len() != need {
        return Err(format!("data holds {} bytes, shape {shape:?} of `{descr}` needs {need}", data.len()));
    }
    let mut values: Vec<f64> = data.chunks_exact(size).map(conv).collect();
    if fortran && shape.len() == 2 {
        let (r, c) = (shape[0], shape[1]);
        values = (0..r * c).map(|i| values[(i % c) * r + i / c]).collect();
    }
    Ok((shape, values))
}
