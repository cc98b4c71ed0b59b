//! The streamable HTTP front: `gavel serve --listen ADDR`. The same
//! [`Session`] that serves stdio serves each HTTP MCP session (rmcp's
//! `StreamableHttpService` makes one per `initialize`), so every session gets
//! its own upstreams (`per_session`), counters and decisions.
//!
//! Protections: `Host` must be an allowed host (default: loopback names)
//! against DNS rebinding; a browser `Origin` must be an allowed origin
//! (default: loopback origins); request bodies are bounded by
//! `limits.max_message_bytes` and `[serve] body_timeout`, and read only
//! after the bearer token is checked (a caller without a token cannot make
//! gavel buffer anything); connections, header reads and `TCP_NODELAY` are
//! `conn.rs`'s. Sessions are capped in all (`max_sessions`) and, with
//! bearer tokens, per user (`max_sessions_per_user`, `binding.rs`); a
//! session idle for `session_idle_timeout` is closed by rmcp and its
//! upstreams stop with it. gavel refuses to listen on a non-loopback
//! address without TLS (`--tls-cert`/`--tls-key`, see `tls.rs`) unless
//! `--behind-proxy` says a TLS-terminating proxy is in front.
//!
//! Shutdown (SIGTERM/SIGINT) drains: the listener closes at once (a new
//! connection is refused), requests already in flight — a `tools/call`
//! whose answer is still streaming — run to their end, at most
//! `--drain-timeout`; only then is rmcp's cancellation token cancelled
//! (which ends every session's serve loop and SSE stream) and the
//! upstreams stopped. Cancelling rmcp's token first would cut those answers
//! off.
//!
//! `server/discover` is answered -32601 here, before rmcp (which would
//! answer it itself), exactly as on stdio: gavel speaks the `initialize` era
//! to hosts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::front::session::{Session, WeakSession};
use crate::gateway::Gateway;
use crate::sync::Recover;

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
    /// At shutdown, how long requests in flight may take to finish before
    /// every session is closed anyway.
    pub drain_timeout: Duration,
    /// With bearer tokens: at most this many sessions per user.
    pub max_sessions_per_user: usize,
    /// A session with no message for this long is closed (its upstreams
    /// stop).
    pub session_idle_timeout: Duration,
    /// Connections open at once, the header read timeout.
    pub conn: super::conn::ConnLimits,
    /// How long a request body may take to arrive, once its head has.
    pub body_timeout: Duration,
}

/// After the drain, how long connections get to close before `serve_http`
/// returns anyway (a client that stops reading cannot hold the exit).
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Requests whose response is still being produced or sent (a POST's SSE
/// answer ends when its JSON-RPC response has been written). Standalone GET
/// streams are not counted: they last as long as the session.
#[derive(Clone, Default)]
struct InFlight(Arc<InFlightInner>);

#[derive(Default)]
struct InFlightInner {
    n: AtomicUsize,
    idle: tokio::sync::Notify,
}

/// Held by a response body; dropping it (body finished, or the connection
/// went away) ends the request.
struct InFlightGuard(InFlight);

impl InFlight {
    fn enter(&self) -> InFlightGuard {
        self.0.n.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self.clone())
    }

    fn count(&self) -> usize {
        self.0.n.load(Ordering::SeqCst)
    }

    /// Resolves when no request is in flight.
    async fn idle(&self) {
        loop {
            let notified = self.0.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.0.n.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.0.idle.notify_waiters();
        }
    }
}

/// Counts a POST from its arrival until its response body is done.
async fn count_in_flight(in_flight: InFlight, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let guard = in_flight.enter();
    let (parts, body) = next.run(req).await.into_parts();
    // A body of known length (JSON, 202, an error) is already complete;
    // only a stream (the SSE answer of a request) is still in flight.
    if axum::body::HttpBody::size_hint(&body).exact().is_some() {
        return Response::from_parts(parts, body);
    }
    let body = body.into_data_stream().map(move |chunk| {
        let _held = &guard;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(body))
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
            "refusing to serve plain HTTP on {} (not loopback): give --tls-cert and --tls-key ([serve] tls_cert/tls_key), or put a TLS-terminating proxy in front and pass --behind-proxy ([serve] behind_proxy = true), or listen on 127.0.0.1",
            opts.listen
        );
    }
    let tls = opts
        .tls
        .as_ref()
        .map(|(c, k)| super::tls::server_config(c, k))
        .transpose()?;
    // `stop`: the signal arrived, accept nothing new. `close`: the drain is
    // over, end every session (rmcp's token). Two tokens, so in-flight
    // answers are not cut off by the first.
    let stop = CancellationToken::new();
    let close = gw.shutdown.child_token();
    let in_flight = InFlight::default();
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
    let (config_hosts, config_origins) =
        (config.allowed_hosts.clone(), config.allowed_origins.clone());
    config.max_request_body_bytes = gw.config.limits.max_message_bytes;
    config.cancellation_token = close.clone();
    // Weak handles: a closed HTTP session is dropped by rmcp, and its
    // upstreams stop then; the ones still open are stopped at exit.
    let sessions: Arc<std::sync::Mutex<Vec<WeakSession>>> = Default::default();
    let factory = {
        let (gw, sessions) = (gw.clone(), sessions.clone());
        move || {
            let s = gw.session();
            let mut all = sessions.lock().recover();
            all.retain(|w| w.upgrade().is_some());
            all.push(s.downgrade());
            Ok(s)
        }
    };
    // rmcp closes a session with no message for `keep_alive`; the
    // session's service is dropped then, and its upstreams stop.
    let mut manager = LocalSessionManager::default();
    manager.session_config.keep_alive = Some(opts.session_idle_timeout);
    let manager = Arc::new(manager);
    let service = StreamableHttpService::new(factory, manager.clone(), config);
    let max = gw.config.limits.max_message_bytes;
    let mut mcp = axum::Router::new().nest_service("/mcp", service);
    let mut app = axum::Router::new();
    // The session cap sits inside the token check (added first, so it runs
    // after it): a caller without a valid token gets 401 and its challenge,
    // never learns how full gavel is, and cannot use up the cap's answer.
    mcp = mcp.layer(middleware::from_fn({
        let (sessions, max_sessions) = (sessions.clone(), opts.max_sessions);
        move |req: Request, next: Next| {
            let live = {
                let mut all = sessions.lock().recover();
                all.retain(|w| w.upgrade().is_some());
                all.len()
            };
            session_cap(req, next, live, max_sessions)
        }
    }));
    // The body is read here, inside the token check (added before it, so it
    // runs after it): a caller without a valid token gets its 401 before a
    // byte of its body is read, and cannot make gavel buffer up to
    // `max_message_bytes` per connection.
    let body_timeout = opts.body_timeout;
    mcp = mcp.layer(middleware::from_fn(move |req, next| {
        refuse_discover(req, next, max, body_timeout)
    }));
    if let Some(settings) = &gw.config.auth {
        let auth =
            super::auth::Authenticator::start(settings, &gw.config.identity, close.clone()).await?;
        let metadata = auth.metadata();
        for path in auth.metadata_paths() {
            let m = metadata.clone();
            app = app.route(
                path,
                axum::routing::get(move || async move {
                    ([(header::CONTENT_TYPE, "application/json")], m.to_string())
                }),
            );
        }
        // Inside the token check: every message naming a session must carry
        // a token of the session's owner.
        let owners = Arc::new(super::binding::Owners::new(
            manager.clone(),
            opts.max_sessions_per_user,
        ));
        mcp = mcp
            .layer(middleware::from_fn(move |req, next| {
                super::binding::bind(owners.clone(), req, next)
            }))
            .layer(middleware::from_fn(move |req, next| {
                super::auth::require_token(auth.clone(), req, next)
            }));
    }
    let counted = in_flight.clone();
    let app = app.merge(mcp.layer(middleware::from_fn(move |req, next| {
        count_in_flight(counted.clone(), req, next)
    })));
    // Host/Origin first, for every route: nothing (401 challenge, metadata,
    // `server/discover` refusal) answers a rebinding page.
    let allowed = Arc::new(super::hosts::Allowed::new(&config_hosts, &config_origins)?);
    let app = app.layer(middleware::from_fn(move |req, next| {
        super::hosts::check(allowed.clone(), req, next)
    }));
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
                    let mut all = sessions.lock().recover();
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
    let drain = {
        let (stop, close, in_flight) = (stop.clone(), close.clone(), in_flight.clone());
        let timeout = opts.drain_timeout;
        async move {
            super::stdio::shutdown_signal().await;
            stop.cancel();
            tracing::info!(
                in_flight = in_flight.count(),
                "signal received; not accepting connections, finishing in-flight requests (at most {timeout:?})"
            );
            if tokio::time::timeout(timeout, in_flight.idle())
                .await
                .is_err()
            {
                tracing::warn!(
                    in_flight = in_flight.count(),
                    "requests still in flight after the drain timeout ({timeout:?}); closing every session"
                );
            }
            close.cancel();
        }
    };
    let _drain = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(drain));
    // Bounded: once the sessions are closed, connections get CLOSE_GRACE.
    let closed = {
        let close = close.clone();
        async move {
            close.cancelled().await;
            tokio::time::sleep(CLOSE_GRACE).await;
        }
    };
    super::conn::serve(listener, tls, app, opts.conn, stop.clone(), closed).await?;
    close.cancel();
    let all: Vec<Session> = sessions
        .lock()
        .recover()
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

/// How long a client refused by the session cap is told to wait.
const RETRY_AFTER_S: u64 = 5;

/// A new session (a POST without `Mcp-Session-Id`) when `max` are open:
/// 503 with `Retry-After`, before any upstream is started for it. The
/// JSON-RPC error code is 503 too: gavel's own refusals use codes outside
/// the reserved -32768..-32000 ranges (docs/denials.md), and -32000 would
/// read as an implementation-defined server error.
async fn session_cap(req: Request, next: Next, live: usize, max: usize) -> Response {
    if req.method() == Method::POST && !req.headers().contains_key("mcp-session-id") && live >= max
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

/// rmcp answers `server/discover` itself; a host talking to gavel must get
/// -32601 so that dual-era hosts fall back to `initialize`. The body is
/// read here, bounded in size (`max`) and in time (`timeout`: a client that
/// sends a head and then trickles or stalls gets 408 and is disconnected).
async fn refuse_discover(req: Request, next: Next, max: usize, timeout: Duration) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let bytes = match tokio::time::timeout(timeout, to_bytes(body, max)).await {
        Ok(Ok(b)) => b,
        Err(_) => {
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
            return r;
        }
        Ok(Err(_)) => {
            tracing::warn!(max, "refused a request body over limits.max_message_bytes");
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the request body is over {max} bytes (limits.max_message_bytes); nothing was forwarded"
                ),
            )
                .into_response();
        }
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
