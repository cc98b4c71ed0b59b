//! What the agent host talks to. `session` is the host-facing MCP server
//! (one per host connection, shared by every front); `stdio` serves it on
//! stdin/stdout. Toward the host gavel speaks 2024-11-05 … 2025-11-25.

pub mod http;
pub mod lifecycle;
pub mod session;
pub mod stdio;
