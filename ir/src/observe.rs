//! Recording what each parameter group reads: the interpreter's group evaluation (`ops::linear`) reports every
//! input it sees to `observe`, which keeps its extremes while `recording` runs on this thread (calibration,
//! `crate::calibrate`), or the whole input while `recording_inputs` runs (tracing where an int8 graph's
//! runtimes round differently), and does nothing otherwise (one thread-local check per group).

use std::cell::RefCell;
use std::collections::BTreeMap;

use candle_core::Tensor;

use crate::ops::EvalError;

/// Each group's `(min, max)` per evaluation, in order.
pub type Recorded = BTreeMap<String, Vec<(f32, f32)>>;

/// Each group's input per evaluation, in evaluation order.
pub type Inputs = Vec<(String, Tensor)>;

enum Recording {
    Extremes(Recorded),
    Inputs(Inputs),
}

thread_local! {
    static RECORDING: RefCell<Option<Recording>> = const { RefCell::new(None) };
}

/// Record the extremes of group `p`'s input `x`, when a recording is running on this thread.
pub(crate) fn observe(p: &str, x: &Tensor) -> Result<(), EvalError> {
    let Some(extremes) = RECORDING.with(|r| r.borrow().as_ref().map(|rec| matches!(rec, Recording::Extremes(_))))
    else {
        return Ok(());
    };
    let range = if extremes {
        Some((x.flatten_all()?.min(0)?.to_scalar::<f32>()?, x.flatten_all()?.max(0)?.to_scalar::<f32>()?))
    } else {
        None
    };
    RECORDING.with(|r| match (r.borrow_mut().as_mut(), range) {
        (Some(Recording::Extremes(m)), Some(range)) => m.entry(p.to_string()).or_default().push(range),
        (Some(Recording::Inputs(v)), _) => v.push((p.to_string(), x.clone())),
        _ => {}
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

/// Run `work` while recording the extremes of every group input it evaluates; returns what was recorded.
pub fn recording<E>(work: impl FnOnce() -> Result<(), E>) -> Result<Recorded, E> {
    match record(Recording::Extremes(BTreeMap::new()), work)? {
        Some(Recording::Extremes(m)) => Ok(m),
        _ => Ok(Recorded::new()),
    }
}

/// Run `work` while recording every group input it evaluates, whole; returns them in evaluation order.
pub fn recording_inputs<E>(work: impl FnOnce() -> Result<(), E>) -> Result<Inputs, E> {
    match record(Recording::Inputs(vec![]), work)? {
        Some(Recording::Inputs(v)) => Ok(v),
        _ => Ok(vec![]),
    }
}

fn record<E>(start: Recording, work: impl FnOnce() -> Result<(), E>) -> Result<Option<Recording>, E> {
    let _end = End;
    RECORDING.with(|r| *r.borrow_mut() = Some(start));
    work()?;
    Ok(RECORDING.with(|r| r.borrow_mut().take()))
}
