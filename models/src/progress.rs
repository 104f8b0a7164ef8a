//! Progress bars for long work (training, scoring): one style everywhere, hidden when not wanted.

pub use indicatif::ProgressBar;

/// A bar over `len` items labelled `what`, or a hidden one when `enabled` is false.
pub fn bar(len: usize, what: &str, enabled: bool) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len as u64);
    b.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({eta})")
            .expect("static template")
            .progress_chars("=> "),
    );
    b.set_prefix(what.to_string());
    b
}
