//! Where a request body is read: bounded in size (`limits.max_message_bytes`)
//! and in time (`[serve] body_timeout`), and only after the bearer token is
//! checked (a caller without a token cannot make gavel buffer anything).
//! Here too, before anything that knows HTTP sessions (the caps, the
//! session endings, rmcp): a request of the MCP 2026-07-28 era
//! (`modern.rs`) has no session — its `Mcp-Session-Id` is dropped, a GET
//! or DELETE of that era is 405, and an `initialize` sent as one is 404.

use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Reads a POST body within `max` bytes and `timeout` (a client that sends
/// a head and then trickles or stalls gets 408 and is disconnected) and
/// passes the request on with the body read; answers a 2026-07-28 GET or
/// DELETE 405 and drops a 2026-07-28 request's session id.
pub(super) async fn read_body(
    mut req: Request,
    next: Next,
    max: usize,
    timeout: Duration,
) -> Response {
    let modern = super::modern::is_modern(req.headers());
    if modern {
        if matches!(*req.method(), Method::GET | Method::DELETE) {
            return super::modern::method_not_allowed();
        }
        req.headers_mut().remove("mcp-session-id");
    }
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let bytes = match tokio::time::timeout(timeout, to_bytes(body, max)).await {
        Ok(Ok(b)) => b,
        Err(_) => return too_slow(timeout),
        Ok(Err(_)) => return too_large(max),
    };
    if modern && let Some(refused) = super::modern::refuse_initialize(&bytes) {
        return refused;
    }
    let mut parts = parts;
    if modern && super::listen_hold::is_listen(&bytes) {
        parts.extensions.insert(super::listen_hold::IsListen);
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// 408, and the connection closed: the body did not arrive in time.
fn too_slow(timeout: Duration) -> Response {
    tracing::warn!(
        ?timeout,
        "refused a request whose body did not arrive within [serve] body_timeout"
    );
    let mut r = (
        StatusCode::REQUEST_TIMEOUT,
        format!(
            "the request body did not arrive within {} ([serve] body_timeout, --body-timeout); nothing was forwarded",
            humantime::format_duration(timeout)
        ),
    )
        .into_response();
    r.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    r
}

/// 413: the body is over `limits.max_message_bytes`.
fn too_large(max: usize) -> Response {
    tracing::warn!(max, "refused a request body over limits.max_message_bytes");
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the request body is over {max} bytes (limits.max_message_bytes); nothing was forwarded"
        ),
    )
        .into_response()
}
