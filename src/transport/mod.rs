//! Newline-delimited JSON-RPC framing owned by gavel (see README.md here).

pub mod idscan;
pub mod line;

pub use line::LineTransport;
