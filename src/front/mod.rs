//! What the agent host talks to. Toward the host gavel speaks MCP
//! 2024-11-05 … 2025-11-25 (`initialize` era) and 2026-07-28 (per-request
//! `_meta`, `server/discover`): `era` (README.md beside this file).
//!
//! - `session`: the host-facing MCP server, one per host connection and the
//!   same type behind every front (resolve the route, decide, forward with
//!   the `Permit`); `SessionSet` holds a many-session front's open ones.
//! - The fronts, one per transport: `stdio` (the host launched gavel) and
//!   `http` (`gavel serve`: streamable HTTP with its token check, session
//!   owners, Host/Origin lists, TLS, drain). `lifecycle` is what both do
//!   around serving: the status file, SIGINT/SIGTERM, the shutdown epilogue.
//!
//! Beneath the fronts, not in them: the accept loop is `transport::conn`;
//! the link back to the host, the one gate both directions pass and the
//! approval step are `crate::host` (upstream uses them too).

pub mod era;
pub mod http;
pub mod lifecycle;
pub mod session;
pub mod stdio;
