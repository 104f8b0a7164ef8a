//! What a measurement ran on and with, recorded beside every figure: the machine, the runtime versions as
//! loaded, and the name a model goes by in tables.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::run::Runtime;

#[derive(Debug, Serialize, Deserialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub os: String,
}

/// The machine this process runs on.
pub fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel =
        std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default();
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        os: format!("{} {kernel}", std::env::consts::OS).trim().to_string(),
    }
}

/// The runtime as loaded: for ONNX Runtime, the version of the library this process loaded (its
/// `GetVersionString`), not the one the bindings were written for.
pub fn runtime_version(rt: Runtime) -> String {
    match rt {
        Runtime::Tract => "tract-onnx 0.23.9".into(),
        Runtime::Ort => format!(
            "onnxruntime {} (ort 2.0.0-rc.15)",
            ort_loaded_version().unwrap_or_else(|| "(version unknown: library not loaded)".into())
        ),
    }
}

/// The version string of the ONNX Runtime library already loaded from `ORT_DYLIB_PATH` (`None` if it is not
/// loaded: `RTLD_NOLOAD` never loads a second copy).
fn ort_loaded_version() -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(std::env::var_os("ORT_DYLIB_PATH")?.as_bytes()).ok()?;
    // SAFETY: dlopen with RTLD_NOLOAD only returns a handle to a library this process has loaded; the symbol is
    // ONNX Runtime's C entry point `OrtGetApiBase`, whose `GetVersionString` returns a static C string.
    unsafe {
        let handle = libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD);
        if handle.is_null() {
            return None;
        }
        let sym = libc::dlsym(handle, c"OrtGetApiBase".as_ptr());
        let version = (!sym.is_null()).then(|| {
            let get: unsafe extern "C" fn() -> *const ort::sys::OrtApiBase = std::mem::transmute(sym);
            let base = get();
            std::ffi::CStr::from_ptr(((*base).GetVersionString)()).to_string_lossy().into_owned()
        });
        libc::dlclose(handle);
        version
    }
}

/// A model's name in tables: its file or folder name.
pub fn name(p: &Path) -> String {
    p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().to_string())
}
