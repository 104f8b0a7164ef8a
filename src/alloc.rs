//! Allocator tuning for candle on the CPU. candle allocates a fresh buffer for every tensor op; with glibc's
//! defaults, buffers above the (dynamic) mmap threshold are mapped and unmapped on every step, and each first
//! touch page-faults. Training MiniLM spent about half its time in the kernel that way. Keeping big blocks in
//! the heap (and not trimming it) doubled training throughput on the project machine (docs/results.md, "MiniLM fine-tuned on MR").

/// Raise glibc's mmap and trim thresholds so large tensor buffers are reused. A no-op on other C libraries.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called once at start-up, before threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
