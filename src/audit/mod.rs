//! What auditors and operators read: the decision log — one home for its
//! record shapes (`record`: OPA's decision-log event for a decision,
//! gavel's for an approval step), the masking applied before anything is
//! written and to every secret gavel prints (`mask`), a record written
//! straight from its parts, masked on the way (`stream`), the writer (`log`)
//! and the one streaming reader (`read`, used by replay, report and
//! explain), the shipper to an OPA decision-log service (`ship`) — plus
//! the Prometheus metrics. See docs/decision-log.md for the
//! format and the guarantees. audit imports neither `decision` nor the
//! fronts; re-deciding a log with another policy (`replay`) runs the engine,
//! so it lives above the enforcer, in `governance`.

pub mod log;
pub mod mask;
pub mod metrics;
pub mod read;
pub mod record;
pub mod ship;
pub mod stream;

pub use log::{DecisionLog, Rotation};
