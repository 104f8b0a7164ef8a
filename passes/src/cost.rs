//! What a pass saved is counted by the IR (`bertopt_ir::cost`: each op counts its own arithmetic); passes and
//! their reports use it from here.

pub use bertopt_ir::cost::{cost, Cost};
