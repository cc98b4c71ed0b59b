//! Where a request body is read: bounded in size (`limits.max_message_bytes`)
//! and in time (`[serve] body_timeout`), and only after the bearer token is
//! checked (a caller without a token cannot make gavel buffer anything).
//! Once read, `server/discover` is answered -32601 here, before rmcp (which
//! would answer it itself), exactly as on stdio: gavel speaks the
//! `initialize` era to hosts, and dual-era hosts fall back to it.

use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Reads a POST body within `max` bytes and `timeout` (a client that sends
/// a head and then trickles or stalls gets 408 and is disconnected), refuses
/// `server/discover`, and passes everything else on with the body read.
pub(super) async fn refuse_discover(
    req: Request,
    next: Next,
    max: usize,
    timeout: Duration,
) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let bytes = match tokio::time::timeout(timeout, to_bytes(body, max)).await {
        Ok(Ok(b)) => b,
        Err(_) => return too_slow(timeout),
        Ok(Err(_)) => return too_large(max),
    };
    if let Ok(msg) = serde_json::from_slice::<Value>(&bytes)
        && msg["method"] == "server/discover"
    {
        let reply = json!({
            "jsonrpc": "2.0", "id": msg["id"],
            "error": {"code": -32601, "message": "Method not found: server/discover"},
        });
        return (
            [(header::CONTENT_TYPE, "application/json")],
            reply.to_string(),
        )
            .into_response();
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
