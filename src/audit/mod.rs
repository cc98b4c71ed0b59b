//! What auditors read: the decision log — one home for its record shapes
//! (`record`: OPA's decision-log event for a decision, gavel's for an
//! approval step), the masking applied before anything is written (`mask`),
//! the writer (`log`) and the one streaming reader (`read`, used by replay,
//! report and explain) — plus the Prometheus metrics and `replay`. See
//! docs/decision-log.md for the format and the guarantees.
//!
//! audit sits below the decision module: it imports neither `decision` nor
//! the fronts (replay, which re-decides with a candidate policy, is the
//! exception and is moving to `governance`).

pub mod log;
pub mod mask;
pub mod metrics;
pub mod read;
pub mod record;
pub mod replay;

pub use log::{DecisionLog, Rotation};
