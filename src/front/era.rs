//! The protocol eras gavel serves hosts, on every front: the `initialize`
//! era (2024-11-05 … 2025-11-25, one session per connection) and MCP
//! 2026-07-28 (no handshake; every request names its version, client and
//! capabilities in its own `_meta`).
//!
//! rmcp already tells the eras apart and validates the 2026 envelope before
//! any handler runs: a request missing `protocolVersion` or
//! `clientCapabilities` gets -32602, an unsupported version -32022 with
//! `{supported, requested}`; `ping` and `resources/(un)subscribe` under the
//! envelope get -32601; server→client requests on a 2026 request are
//! refused. [`EraFront`] (`era/front.rs`) wraps the session for what rmcp
//! leaves to the server:
//! - upstreams start on a modern host's first request (there is no
//!   `initialize` to start them), never on `server/discover` alone — a
//!   host that probes and then initializes (Claude Code) must still have
//!   its own capabilities mirrored to upstreams;
//! - `logging/setLevel` under the envelope is -32601 (the level is per
//!   request in 2026-07-28);
//! - gavel's own `serverInfo` is stamped on every modern result and an
//!   upstream's never passes through (on either era);
//! - results a policy decided for this caller are never `public` to caches.

use std::borrow::Cow;

use rmcp::model::*;
use rmcp::service::{RequestContext, RoleServer};
use serde_json::Value;

use crate::decision::RequestEra;

/// The `_meta` key of a result's server identity (2026-07-28).
const SERVER_INFO_KEY: &str = "io.modelcontextprotocol/serverInfo";

/// Every revision gavel serves hosts, oldest first: the `initialize` era
/// and 2026-07-28.
pub fn supported_versions() -> Cow<'static, [ProtocolVersion]> {
    Cow::Borrowed(ProtocolVersion::known_up_to(&ProtocolVersion::V_2026_07_28))
}

/// gavel as it names itself to hosts (and, for a modern host, to
/// upstreams).
pub fn gavel_info() -> Implementation {
    Implementation::new("gavel", env!("CARGO_PKG_VERSION"))
}

/// The 2026-07-28-or-later version a request names in its `_meta`, when it
/// is one gavel serves and the envelope is complete: a request rmcp serves
/// in the modern era. `None` for a legacy request (and for a malformed
/// modern one, which rmcp refuses before any handler runs).
pub fn modern_version(meta: &RequestMetaObject) -> Option<ProtocolVersion> {
    let version = meta.protocol_version()?;
    let complete = meta.missing_required_keys(&version).is_empty();
    (!version.has_initialize() && complete && supported_versions().contains(&version))
        .then_some(version)
}

/// The era of the request `cx` belongs to, as the policy sees it: a modern
/// request's own version and `clientInfo`, or the version its legacy
/// session negotiated.
pub fn request_era(cx: &RequestContext<RoleServer>) -> RequestEra {
    match modern_version(&cx.meta) {
        Some(v) => {
            let mut era = RequestEra::modern(
                v.to_string(),
                cx.meta.client_info().map(|c| (c.name, c.version)),
            );
            era.identity = token_identity(cx);
            era
        }
        None => RequestEra::legacy(cx.protocol_version().map(|v| v.to_string())),
    }
}

/// The verified identity of the bearer token this request came with
/// (HTTP with `[auth]`).
pub fn token_identity(
    cx: &RequestContext<RoleServer>,
) -> Option<std::sync::Arc<crate::config::Identity>> {
    cx.extensions
        .get::<http::request::Parts>()
        .and_then(|p| p.extensions.get::<super::http::auth::TokenIdentity>())
        .map(|t| t.0.clone())
}

/// gavel's answer to `server/discover`: its own identity, every version it
/// serves, and the capabilities a 2026-07-28 host gets from it.
///
/// The capabilities are gavel's, not a union of whatever upstreams happen
/// to be up: tools, resources, prompts and completion are always served
/// (gavel's own agent tools and resources among them), and `listChanged`
/// for all three: a 2026-07-28 host hears of those changes on
/// `subscriptions/listen` (`session::listen`), and `resources.subscribe`
/// (per-URI updates on a listen, `session::listen_resources`). Not
/// advertised:
/// `logging` (gavel emits no log notification to a modern host), and tasks
/// (not implemented on either era). `ttlMs: 0`, `cacheScope: private`:
/// what gavel lists depends on live upstreams and on per-caller policy.
pub fn discover_result(instructions: Option<String>) -> DiscoverResult {
    let caps = ServerCapabilities::builder()
        .enable_tools()
        .enable_tool_list_changed()
        .enable_resources()
        .enable_resources_list_changed()
        .enable_resources_subscribe()
        .enable_prompts()
        .enable_prompts_list_changed()
        .enable_completions()
        .build();
    let mut d = DiscoverResult::new(supported_versions().into_owned(), caps);
    d.instructions = instructions;
    d.ttl_ms = 0;
    d.cache_scope = CacheScope::Private;
    d.with_server_info(gavel_info())
}

/// The `_meta` of a result: with `info` (a modern request) gavel's
/// identity is put in; without (a legacy one) an upstream's is only taken
/// out. Other keys pass unchanged.
fn stamp_meta(meta: &mut Option<MetaObject>, info: Option<&Implementation>) {
    match info {
        Some(info) => {
            let info = serde_json::to_value(info).unwrap_or(Value::Null);
            meta.get_or_insert_with(MetaObject::new)
                .0
                .insert(SERVER_INFO_KEY.into(), info);
        }
        None => {
            if let Some(m) = meta {
                m.0.remove(SERVER_INFO_KEY);
            }
        }
    }
}

/// A list or resource contents gavel answers a modern request with is
/// filtered or decided by policy for this caller: never `public`,
/// whatever an upstream said; the TTL is the upstream's, else 0.
fn private_hints(ttl: &mut Option<u64>, scope: &mut Option<CacheScope>) {
    ttl.get_or_insert(0);
    *scope = Some(CacheScope::Private);
}

mod front;
pub mod params;
pub use front::{EraFront, MakeSession, StdioFront};

#[cfg(test)]
mod tests;
