//! gavel: a transparent MCP proxy that decides every agent request against
//! per-server policy before it reaches an upstream server.
//!
//! The data path follows the modules: `front` (what the host talks to) →
//! `router` (names, aggregation) → `decision` (the one enforcement point),
//! with `host` (the one authorize gate, approval) → `upstream` (children and
//! HTTP servers). Beside it: `policy` (bundles built into engines and kept
//! current), `bundle` (the format), `audit`, `state`, `config`,
//! `governance`; `transport` is the bytes under the protocol. Each module
//! uses only those below it: ARCHITECTURE.md's layer table, checked by
//! `architecture_tests`.

#[cfg(test)]
mod architecture_tests;
pub mod atomic_file;
pub mod audit;
pub mod bundle;
pub mod cli;
pub mod config;
pub mod decision;
pub mod error_text;
pub mod front;
pub mod fuzzing;
pub mod gateway;
pub mod governance;
pub mod host;
pub mod json_out;
pub mod policy;
pub mod router;
pub mod state;
pub mod status;
pub mod sync;
pub mod telemetry;
#[cfg(test)]
pub(crate) mod test_support;
pub mod text;
pub mod transport;
pub mod upstream;

// The process allocator is mimalloc — the policy interpreter allocates and
// frees many small values per decision; glibc's allocator was a fifth of a
// decision's time — in regorus's own build (`regorus-mimalloc`, declared
// global by regorus with `allocator-memory-limits`): it counts live bytes for
// the memory bound of policy evaluation (`decision::engine::memory`).
