//! The streamable HTTP front: `gavel serve --listen ADDR`. The same
//! [`Session`] that serves stdio serves each HTTP MCP session (rmcp's
//! `StreamableHttpService` makes one per `initialize`), so every session gets
//! its own upstreams (`per_session`), counters and decisions.
//!
//! Protections: `Host` must be an allowed host (default: loopback names)
//! against DNS rebinding; a browser `Origin` must be an allowed origin
//! (default: loopback origins); request bodies are bounded by
//! `limits.max_message_bytes`. gavel refuses to listen on a non-loopback
//! address unless `--behind-proxy` says a TLS-terminating proxy is in front
//! (TLS in gavel itself is not built yet).
//!
//! `server/discover` is answered -32601 here, before rmcp (which would
//! answer it itself), exactly as on stdio: gavel speaks the `initialize` era
//! to hosts.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use serde_json::{Value, json};

use crate::front::session::{Session, WeakSession};
use crate::gateway::Gateway;

pub struct HttpOptions {
    pub listen: SocketAddr,
    /// Extra `Host` values (names or `name:port`) besides the loopback ones.
    pub allowed_hosts: Vec<String>,
    /// Extra browser origins besides the loopback ones.
    pub allowed_origins: Vec<String>,
    pub behind_proxy: bool,
    /// PEM certificate chain and key: serve HTTPS (rustls).
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// At most this many host sessions at once (each has its own upstream
    /// processes); a new `initialize` beyond it gets 503.
    pub max_sessions: usize,
}

const LOOPBACK_HOSTS: &[&str] = &["localhost", "127.0.0.1", "::1", "[::1]"];
const LOOPBACK_ORIGINS: &[&str] = &[
    "http://localhost:*",
    "http://127.0.0.1:*",
    "http://[::1]:*",
    "https://localhost:*",
    "https://127.0.0.1:*",
];

/// Serves MCP at `http://ADDR/mcp` until a signal, then lets in-flight
/// calls finish and stops every session's upstreams.
pub async fn serve_http(gw: Arc<Gateway>, opts: HttpOptions) -> anyhow::Result<()> {
    if !opts.listen.ip().is_loopback() && !opts.behind_proxy && opts.tls.is_none() {
        anyhow::bail!(
            "refusing to serve plain HTTP on {} (not loopback): give --tls-cert and --tls-key, or put a TLS-terminating proxy in front and pass --behind-proxy, or listen on 127.0.0.1",
            opts.listen
        );
    }
    let tls = opts
        .tls
        .as_ref()
        .map(|(c, k)| super::tls::server_config(c, k))
        .transpose()?;
    let cancel = gw.shutdown.child_token();
    let mut config = StreamableHttpServerConfig::default();
    config.allowed_hosts = LOOPBACK_HOSTS
        .iter()
        .map(|h| h.to_string())
        .chain(opts.allowed_hosts.iter().cloned())
        .collect();
    config.allowed_origins = LOOPBACK_ORIGINS
        .iter()
        .map(|o| o.to_string())
        .chain(opts.allowed_origins.iter().cloned())
        .collect();
    config.max_request_body_bytes = gw.config.limits.max_message_bytes;
    config.cancellation_token = cancel.clone();
    // Weak handles: a closed HTTP session is dropped by rmcp, and its
    // upstreams stop then; the ones still open are stopped at exit.
    let sessions: Arc<std::sync::Mutex<Vec<WeakSession>>> = Default::default();
    let factory = {
        let (gw, sessions) = (gw.clone(), sessions.clone());
        move || {
            let s = gw.session();
            let mut all = sessions.lock().unwrap_or_else(|p| p.into_inner());
            all.retain(|w| w.upgrade().is_some());
            all.push(s.downgrade());
            Ok(s)
        }
    };
    let service =
        StreamableHttpService::new(factory, LocalSessionManager::default().into(), config);
    let max = gw.config.limits.max_message_bytes;
    let mut mcp = axum::Router::new().nest_service("/mcp", service);
    let mut app = axum::Router::new();
    if let Some(settings) = &gw.config.auth {
        let auth = super::auth::Authenticator::start(settings, &gw.config.identity, cancel.clone())
            .await?;
        let metadata = auth.metadata();
        for path in [
            super::auth::METADATA_PATH.to_string(),
            format!("{}/mcp", super::auth::METADATA_PATH),
        ] {
            let m = metadata.clone();
            app = app.route(
                &path,
                axum::routing::get(move || async move {
                    ([(header::CONTENT_TYPE, "application/json")], m.to_string())
                }),
            );
        }
        mcp = mcp.layer(middleware::from_fn(move |req, next| {
            super::auth::require_token(auth.clone(), req, next)
        }));
    }
    let cap = {
        let (sessions, max_sessions) = (sessions.clone(), opts.max_sessions);
        move |req: Request, next: Next| {
            let live = {
                let mut all = sessions.lock().unwrap_or_else(|p| p.into_inner());
                all.retain(|w| w.upgrade().is_some());
                all.len()
            };
            session_cap(req, next, live, max_sessions)
        }
    };
    let app = app.merge(
        mcp.layer(middleware::from_fn(move |req, next| {
            refuse_discover(req, next, max)
        }))
        .layer(middleware::from_fn(cap)),
    );
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", opts.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, "serving MCP over streamable HTTP at {scheme}://{addr}/mcp");
    // `gavel status` sees this process too (policies, OCI bundles, sessions).
    let status_dir = crate::status::state_dir();
    let _status_task = tokio_util::task::AbortOnDropHandle::new({
        let (gw, sessions, dir) = (gw.clone(), sessions.clone(), status_dir.clone());
        let started = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let url = format!("{scheme}://{addr}/mcp");
        tokio::spawn(async move {
            loop {
                let open = {
                    let mut all = sessions.lock().unwrap_or_else(|p| p.into_inner());
                    all.retain(|w| w.upgrade().is_some());
                    all.len()
                };
                let status = json!({
                    "pid": std::process::id(),
                    "started": started,
                    "updated": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
                    "config": gw.config.source,
                    "serving": url,
                    "http_sessions": open,
                    "policies": gw.policy_status_json(),
                });
                if let Err(e) = crate::status::write_instance(&dir, &status) {
                    tracing::debug!("cannot write status to {}: {e}", dir.display());
                }
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
        })
    });
    let shutdown = {
        let cancel = cancel.clone();
        async move {
            super::stdio::shutdown_signal().await;
            tracing::info!("signal received; finishing in-flight requests");
            cancel.cancel();
        }
    };
    match tls {
        Some(config) => {
            tokio::spawn(shutdown);
            super::tls::serve(listener, config, app, cancel.clone()).await?;
        }
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await?
        }
    }
    let all: Vec<Session> = sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain(..)
        .filter_map(|w| w.upgrade())
        .collect();
    futures::future::join_all(all.iter().map(|s| s.shutdown())).await;
    gw.stop_shared().await;
    drop(_status_task);
    crate::status::remove_instance(&status_dir);
    if let Some(log) = gw.enforcer.decision_log() {
        log.sync();
    }
    Ok(())
}

/// A new session (a POST without `Mcp-Session-Id`) when `max` are open:
/// 503 with `Retry-After`, before any upstream is started for it.
async fn session_cap(req: Request, next: Next, live: usize, max: usize) -> Response {
    if req.method() == Method::POST && !req.headers().contains_key("mcp-session-id") && live >= max
    {
        tracing::warn!(
            live,
            max,
            "refusing a new HTTP session: --max-sessions reached"
        );
        let body = json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32000,
            "message": format!("gavel is serving its maximum of {max} sessions (--max-sessions); retry later or close an idle session")}});
        let mut r = (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
        r.headers_mut().insert(
            header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("5"),
        );
        return r;
    }
    next.run(req).await
}

/// rmcp answers `server/discover` itself; a host talking to gavel must get
/// -32601 so that dual-era hosts fall back to `initialize`.
async fn refuse_discover(req: Request, next: Next, max: usize) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let bytes = match to_bytes(body, max).await {
        Ok(b) => b,
        Err(_) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
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
