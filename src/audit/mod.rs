//! What auditors and operators read: the decision log (one JSON line per
//! decision, OPA's decision-log event shape), the masking applied before
//! anything is written (and to every secret gavel prints: `mask`), and the
//! Prometheus metrics. See docs/decision-log.md for the format and the
//! guarantees. Re-deciding a log with another policy (`replay`) reads logs
//! and runs the engine, so it lives above the enforcer, in `governance`.

pub mod log;
pub mod mask;
pub mod metrics;

pub use log::{DecisionLog, Rotation};
