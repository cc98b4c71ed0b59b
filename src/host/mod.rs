//! The agent host as gavel reaches back to it: the link to a host session
//! that upstream→host requests (sampling, elicitation, roots) travel over,
//! the one authorization gate both directions pass ([`authorize`]), and the
//! human-approval question asked of the user through the host.
//!
//! Below `front` and `upstream` on the data path: both use it, it uses
//! neither (ARCHITECTURE.md, "Invariants of absence").

pub mod approval;
pub mod approval_round;
pub mod authorize;
pub mod inputs;
pub mod link;
pub mod questions;
pub mod seal;

pub use authorize::authorize;
pub use link::HostLink;
