//! The bytes under the protocol, bounded: newline-delimited JSON-RPC framing
//! owned by gavel for both stdio sides (`line`, `idscan`; see README.md
//! here), and the accept loop every listening port uses (`conn`: `gavel
//! serve` and the metrics port). Nothing here knows of policy or sessions.

pub mod conn;
pub mod idscan;
pub mod line;
pub mod typed;

pub use line::LineTransport;
