//! MCP 2026-07-28 over HTTP: no protocol session at all. Every request is
//! its own POST with its own envelope (rmcp validates it and serves it
//! without a session), so nothing here may depend on which connection or
//! session id a request came with:
//! - a modern request's `Mcp-Session-Id` is dropped (never minted, never
//!   echoed, never looked up); GET and DELETE, which exist only to manage a
//!   legacy session, are 405; so is the handshake: `initialize` sent as a
//!   modern request is 404 / -32601;
//! - the session caps, which count legacy sessions being opened, do not
//!   apply to modern requests, which open none;
//! - what gavel keeps per caller between modern requests — the upstreams
//!   its requests go to, the counters its policy reads — lives in one
//!   [`Session`] per authenticated principal (user, agent), or one for every
//!   caller without `[auth]` ([`ModernSessions`]): any request of that
//!   principal, on any connection, finds the same one. Each request is still
//!   decided as its own token says (`RequestEra::identity`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rmcp::model::{ErrorCode, ErrorData};
use rmcp::service::{RequestContext, RoleServer};

use crate::front::session::{Session, SessionSet};
use crate::gateway::Gateway;
use crate::sync::Recover;

const VERSION_HEADER: &str = "mcp-protocol-version";

/// Whether a request names MCP 2026-07-28 or later in its
/// `MCP-Protocol-Version` header (which a modern client sends on every
/// request and rmcp checks against the body's `_meta`).
pub(super) fn is_modern(headers: &HeaderMap) -> bool {
    headers
        .get(VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.len() == 10 && v >= "2026-07-28")
}

/// 405 for a GET or DELETE of the modern era: there is no session to
/// stream or end.
pub(super) fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "POST")],
        "Method Not Allowed: MCP 2026-07-28 has no HTTP session to stream or end; send each request as a POST",
    )
        .into_response()
}

/// An `initialize` sent with the 2026-07-28 header: 404 and -32601, as
/// for any method that era does not have (a plain `initialize`, without
/// the header, opens a legacy session as before). rmcp would route it to
/// the handshake whatever the header says.
pub(super) fn refuse_initialize(body: &[u8]) -> Option<Response> {
    const NEEDLE: &[u8] = b"\"initialize\"";
    if !body.windows(NEEDLE.len()).any(|w| w == NEEDLE) {
        return None;
    }
    let msg: serde_json::Value = serde_json::from_slice(body).ok()?;
    if msg.get("method")?.as_str()? != "initialize" {
        return None;
    }
    let reply = serde_json::json!({"jsonrpc": "2.0", "id": msg.get("id"), "error": {
        "code": -32601,
        "message": "Method not found: initialize (MCP 2026-07-28 has no handshake: send each request with its own _meta, or initialize without the MCP-Protocol-Version header of that era)"}});
    Some(
        (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "application/json")],
            reply.to_string(),
        )
            .into_response(),
    )
}

/// The sessions that serve 2026-07-28 requests, one per principal.
/// Bounded by `[serve] max_sessions`; they live until gavel stops (each is
/// also in the front's [`SessionSet`], which stops them then and counts
/// them in `gavel status`).
pub struct ModernSessions {
    gw: Arc<Gateway>,
    set: SessionSet,
    by_principal: Mutex<HashMap<(String, String), Session>>,
    max: usize,
}

impl ModernSessions {
    pub fn new(gw: Arc<Gateway>, set: SessionSet, max: usize) -> Self {
        Self {
            gw,
            set,
            by_principal: Mutex::default(),
            max,
        }
    }

    /// The session of the principal whose token `cx` came with (the one
    /// shared by every caller without `[auth]`), made on its first request.
    pub fn session_for(&self, cx: &RequestContext<RoleServer>) -> Result<Session, ErrorData> {
        let identity = crate::front::era::token_identity(cx);
        let key = identity
            .as_ref()
            .map(|i| (i.user.id.clone(), i.agent.id.clone()))
            .unwrap_or_default();
        let mut all = self.by_principal.lock().recover();
        if let Some(s) = all.get(&key) {
            return Ok(s.clone());
        }
        if all.len() >= self.max {
            tracing::warn!(user = %key.0, agent = %key.1, max = self.max, "refusing a new 2026-07-28 caller: [serve] max_sessions reached");
            return Err(ErrorData::new(
                ErrorCode(503),
                format!(
                    "gavel is serving its maximum of {} callers (--max-sessions, [serve] max_sessions); retry later",
                    self.max
                ),
                None,
            ));
        }
        let session = Session::new(self.gw.clone());
        if let Some(id) = identity {
            session.set_identity(id);
        }
        self.set.add(&session);
        all.insert(key, session.clone());
        Ok(session)
    }
}
