//! What auditors read: the decision log (one JSON line per decision, OPA's
//! decision-log event shape) and the masking applied before anything is
//! written. See docs/decision-log.md for the format and the guarantees.

pub mod log;
pub mod mask;
pub mod metrics;
pub mod replay;

pub use log::{DecisionLog, Rotation};
