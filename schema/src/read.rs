//! Bounded reads of user files, shared by every crate that reads them: a file's reported length cannot be
//! trusted (a device such as /dev/zero reports 0 and never ends), so reading stops one byte past the limit.

use std::io::Read;
use std::path::Path;

/// The whole file, or an `InvalidData` error if it holds more than `max` bytes.
pub fn read_capped(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = vec![];
    std::fs::File::open(path)?.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("more than {max} bytes, larger than such a file can sensibly be"),
        ));
    }
    Ok(bytes)
}

/// `read_capped` as UTF-8 text.
pub fn read_capped_text(path: &Path, max: u64) -> std::io::Result<String> {
    String::from_utf8(read_capped(path, max)?)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not UTF-8 text: {e}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_endless_device_is_cut_off_at_the_limit() {
        let e = super::read_capped(std::path::Path::new("/dev/zero"), 1000).unwrap_err();
        assert!(e.to_string().contains("more than 1000 bytes"), "{e}");
    }
}
