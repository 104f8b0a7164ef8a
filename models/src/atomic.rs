//! Atomic output: every file bertopt writes goes to a temporary file in the target directory first and is
//! renamed into place only when complete.

use std::io::{BufWriter, Write};
use std::path::Path;

pub fn write_atomic(path: &Path, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("output directory {} does not exist", dir.display()),
        ));
    }
    // Renaming over a device, FIFO or socket would replace it with a regular file (over /dev/null, for one).
    if let Ok(meta) = std::fs::metadata(path) {
        if !meta.is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} exists and is not a regular file; bertopt replaces only regular files", path.display()),
            ));
        }
    }
    let tmp = tempfile::Builder::new().prefix(".bertopt-").suffix(".tmp").tempfile_in(dir)?;
    {
        let mut w = BufWriter::new(tmp.as_file());
        write(&mut w)?;
        w.flush()?;
    }
    tmp.as_file().sync_all()?;
    // Temporary files are created private (0600); a model or report is meant to be shared like any other file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_to_replace_what_is_not_a_regular_file() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("pipe");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        let err = write_atomic(&fifo, |w| w.write_all(b"x")).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        assert!(!std::fs::metadata(&fifo).unwrap().is_file(), "the FIFO must still be there");
        // A regular file is replaced.
        let f = d.path().join("f");
        std::fs::write(&f, "old").unwrap();
        write_atomic(&f, |w| w.write_all(b"new")).unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "new");
    }
}
