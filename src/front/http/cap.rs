//! The session caps' answer: a new session beyond `--max-sessions` (here)
//! or beyond a user's `max_sessions_per_user` (`binding.rs`) is refused
//! with 503 before any upstream is started for it.

use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// How long a client refused by a session cap is told to wait.
const RETRY_AFTER_S: u64 = 5;

/// A new session (a POST without `Mcp-Session-Id`) when `max` are open:
/// 503 with `Retry-After`, before any upstream is started for it. The
/// JSON-RPC error code is 503 too: gavel's own refusals use codes outside
/// the reserved -32768..-32000 ranges (docs/denials.md), and -32000 would
/// read as an implementation-defined server error.
pub(super) async fn session_cap(req: Request, next: Next, live: usize, max: usize) -> Response {
    // A 2026-07-28 request opens no session (`modern.rs`).
    if req.method() == Method::POST
        && !req.headers().contains_key("mcp-session-id")
        && !super::modern::is_modern(req.headers())
        && live >= max
    {
        tracing::warn!(
            live,
            max,
            "refusing a new HTTP session: --max-sessions reached"
        );
        return busy(format!(
            "gavel is serving its maximum of {max} sessions (--max-sessions, [serve] max_sessions); retry in {RETRY_AFTER_S} s or close an idle session"
        ));
    }
    next.run(req).await
}

/// 503 with `Retry-After` and a JSON-RPC error (code 503) saying why: the
/// answer of every session cap.
pub(super) fn busy(message: String) -> Response {
    let body = json!({"jsonrpc": "2.0", "id": null, "error": {"code": 503,
        "message": message, "data": {"retry_after_seconds": RETRY_AFTER_S}}});
    let mut r = (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, RETRY_AFTER_S.into());
    r
}
