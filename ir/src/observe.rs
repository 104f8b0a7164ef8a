//! Recording what each parameter group reads: the interpreter's group evaluation (`ops::linear`) reports every
//! input it sees to `observe`, which keeps its extremes while `recording` runs on this thread (calibration,
//! `crate::calibrate`) and does nothing otherwise (one thread-local check per group).

use std::cell::RefCell;
use std::collections::BTreeMap;

use candle_core::Tensor;

use crate::ops::EvalError;

/// Each group's `(min, max)` per evaluation, in order.
pub type Recorded = BTreeMap<String, Vec<(f32, f32)>>;

thread_local! {
    static RECORDING: RefCell<Option<Recorded>> = const { RefCell::new(None) };
}

/// Record the extremes of group `p`'s input `x`, when a recording is running on this thread.
pub(crate) fn observe(p: &str, x: &Tensor) -> Result<(), EvalError> {
    if !is_recording() {
        return Ok(());
    }
    let lo = x.flatten_all()?.min(0)?.to_scalar::<f32>()?;
    let hi = x.flatten_all()?.max(0)?.to_scalar::<f32>()?;
    RECORDING.with(|r| {
        if let Some(m) = r.borrow_mut().as_mut() {
            m.entry(p.to_string()).or_default().push((lo, hi));
        }
    });
    Ok(())
}

/// Whether a recording is running on this thread.
pub fn is_recording() -> bool {
    RECORDING.with(|r| r.borrow().is_some())
}

/// Ends a recording even when the work fails, so later interpreter runs on this thread record nothing.
struct End;

impl Drop for End {
    fn drop(&mut self) {
        RECORDING.with(|r| r.borrow_mut().take());
    }
}

/// Run `work` while recording every group input it evaluates; returns what was recorded.
pub fn recording<E>(work: impl FnOnce() -> Result<(), E>) -> Result<Recorded, E> {
    let _end = End;
    RECORDING.with(|r| *r.borrow_mut() = Some(BTreeMap::new()));
    work()?;
    Ok(RECORDING.with(|r| r.borrow_mut().take()).unwrap_or_default())
}
