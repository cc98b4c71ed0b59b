//! The streamable HTTP front: `gavel serve --listen ADDR`. The same
//! [`Session`](crate::front::session::Session) that serves stdio serves each
//! HTTP MCP session (rmcp's `StreamableHttpService` makes one per
//! `initialize`), so every session gets its own upstreams (`per_session`),
//! counters and decisions.
//!
//! Protections, outermost first: `Host` must be an allowed host (default:
//! loopback names) against DNS rebinding and a browser `Origin` an allowed
//! origin (default: loopback origins) — `hosts.rs`; the bearer token
//! (`auth.rs`) and the session's owner (`binding.rs`); request bodies
//! bounded by `limits.max_message_bytes` and `[serve] body_timeout`, read
//! only after the token is checked, `server/discover` refused — `body.rs`;
//! connections, header reads and `TCP_NODELAY` are `transport::conn`'s. Sessions
//! are capped in all (`max_sessions`, `cap.rs`) and, with bearer tokens,
//! per user (`max_sessions_per_user`, `binding.rs`); a session idle for
//! `session_idle_timeout` is closed by rmcp and its upstreams stop with it;
//! `DELETE` answers 204 or 404 and every ending is logged (`ending.rs`); a
//! POST's SSE answer goes out in one write with its priming event
//! (`sse_start.rs`).
//! gavel refuses to listen on a non-loopback address without TLS
//! (`--tls-cert`/`--tls-key`, see `tls.rs`) unless `--behind-proxy` says a
//! TLS-terminating proxy is in front.
//!
//! Shutdown (SIGTERM/SIGINT) drains in-flight requests before the sessions
//! close (`drain.rs`); the status file and the epilogue are every front's
//! ([`FrontLifecycle`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::header;
use axum::middleware::{self, Next};
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use self::drain::{InFlight, Stops};
use crate::front::lifecycle::{FrontFields, FrontLifecycle};
use crate::front::session::SessionSet;
use crate::gateway::Gateway;

pub mod auth;
pub mod binding;
mod body;
mod cap;
mod drain;
mod ending;
pub mod hosts;
pub(crate) mod listen_hold;
pub mod modern;
mod sse_start;
pub mod tls;

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
    pub conn: crate::transport::conn::ConnLimits,
    /// How long a request body may take to arrive, once its head has.
    pub body_timeout: Duration,
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
    refuse_plain_http_off_loopback(&opts)?;
    let tls = opts
        .tls
        .as_ref()
        .map(|(c, k)| tls::server_config(c, k))
        .transpose()?;
    let stops = Stops {
        stop: CancellationToken::new(),
        close: gw.shutdown.child_token(),
    };
    let sessions = SessionSet::default();
    let in_flight = InFlight::default();
    let app = app(&gw, &opts, &sessions, &in_flight, &stops.close).await?;
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", opts.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, "serving MCP over streamable HTTP at {scheme}://{addr}/mcp");
    // `gavel status` sees this process too (policies, OCI bundles, sessions).
    let url = format!("{scheme}://{addr}/mcp");
    let lifecycle = FrontLifecycle::start(&gw, status_fields(url, sessions.clone()));
    let _drain = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(drain::drain_on_signal(
        stops.clone(),
        in_flight,
        opts.drain_timeout,
    )));
    let closed = drain::closed(stops.close.clone());
    let port = crate::transport::conn::Port {
        listener,
        tls,
        limits: opts.conn,
    };
    let served = crate::transport::conn::serve(port, app, stops.stop, closed).await;
    stops.close.cancel();
    sessions.shutdown_all().await;
    lifecycle.finish().await;
    served
}

/// Plain HTTP only on loopback, unless TLS is given or a TLS-terminating
/// proxy is declared: tokens and tool traffic never cross a network in the
/// clear by default.
fn refuse_plain_http_off_loopback(opts: &HttpOptions) -> anyhow::Result<()> {
    if !opts.listen.ip().is_loopback() && !opts.behind_proxy && opts.tls.is_none() {
        anyhow::bail!(
            "refusing to serve plain HTTP on {} (not loopback): give --tls-cert and --tls-key ([serve] tls_cert/tls_key), or put a TLS-terminating proxy in front and pass --behind-proxy ([serve] behind_proxy = true), or listen on 127.0.0.1",
            opts.listen
        );
    }
    Ok(())
}

/// The HTTP front's fields of the status file.
fn status_fields(url: String, sessions: SessionSet) -> FrontFields {
    Box::new(move || {
        let mut fields = Map::new();
        fields.insert("serving".into(), Value::from(url.clone()));
        fields.insert("http_sessions".into(), Value::from(sessions.open()));
        fields
    })
}

/// The whole router: `/mcp` (rmcp's service inside gavel's layers) and,
/// with `[auth]`, the protected-resource metadata; `Host`/`Origin` checked
/// first for every route. axum runs the layer added last first, so the
/// layers below are added innermost first.
async fn app(
    gw: &Arc<Gateway>,
    opts: &HttpOptions,
    sessions: &SessionSet,
    in_flight: &InFlight,
    close: &CancellationToken,
) -> anyhow::Result<axum::Router> {
    let config = rmcp_config(gw, opts, close);
    let (allowed_hosts, allowed_origins) =
        (config.allowed_hosts.clone(), config.allowed_origins.clone());
    let (mcp, manager) = mcp_service(gw, opts, sessions, config);
    // Next: the principal, for the handler rmcp makes for the request
    // (`modern::with_principal`).
    // Innermost of all: a listen's answer held at its acknowledgement
    // until its upstream subscriptions are in place (`listen_hold`).
    let mcp = mcp.layer(middleware::from_fn(listen_hold::hold_ack));
    let mcp = mcp.layer(middleware::from_fn(modern::with_principal));
    // Next: only rmcp's own answers are held (`sse_start`).
    let mcp = mcp.layer(middleware::from_fn(sse_start::coalesce));
    // Next: how sessions end (`DELETE` as the spec says, idle closes
    // logged), seeing only requests every outer layer let through.
    let endings = ending::Endings::new(manager.clone(), opts.session_idle_timeout);
    endings.watch(close.clone());
    let mcp = mcp.layer(middleware::from_fn(move |req, next| {
        ending::track(endings.clone(), req, next)
    }));
    // The session cap sits inside the token check (added first, so it runs
    // after it): a caller without a valid token gets 401 and its challenge,
    // never learns how full gavel is, and cannot use up the cap's answer.
    let (open, max_sessions) = (sessions.clone(), opts.max_sessions);
    let mut mcp = mcp.layer(middleware::from_fn(move |req: Request, next: Next| {
        cap::session_cap(req, next, open.open(), max_sessions)
    }));
    // The body is read here, inside the token check (added before it, so it
    // runs after it): a caller without a valid token gets its 401 before a
    // byte of its body is read, and cannot make gavel buffer up to
    // `max_message_bytes` per connection.
    let (max, body_timeout) = (gw.config.limits.max_message_bytes, opts.body_timeout);
    mcp = mcp.layer(middleware::from_fn(move |req, next| {
        body::read_body(req, next, max, body_timeout)
    }));
    let mut app = axum::Router::new();
    if let Some(settings) = &gw.config.auth {
        let auth = auth::Authenticator::start(settings, &gw.config.identity, close.clone()).await?;
        app = with_metadata(app, &auth);
        mcp = with_token_check(mcp, auth, manager, opts.max_sessions_per_user);
    }
    let counted = in_flight.clone();
    let app = app.merge(mcp.layer(middleware::from_fn(move |req, next| {
        drain::count_in_flight(counted.clone(), req, next)
    })));
    // Host/Origin first, for every route: nothing (401 challenge, metadata,
    // `server/discover` refusal) answers a rebinding page.
    let allowed = Arc::new(hosts::Allowed::new(&allowed_hosts, &allowed_origins)?);
    Ok(app.layer(middleware::from_fn(move |req, next| {
        hosts::check(allowed.clone(), req, next)
    })))
}

/// rmcp's own settings: the same allow-lists gavel checks (rmcp checks
/// `/mcp` again), the body bound, and `close` as its cancellation token.
fn rmcp_config(
    gw: &Gateway,
    opts: &HttpOptions,
    close: &CancellationToken,
) -> StreamableHttpServerConfig {
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
    config.cancellation_token = close.clone();
    config
}

/// rmcp's streamable-HTTP service at `/mcp`, one [`Session`] per MCP
/// session, each remembered (weakly) in `sessions`; and its session manager,
/// which the owner binding asks which sessions are still open.
///
/// [`Session`]: crate::front::session::Session
fn mcp_service(
    gw: &Arc<Gateway>,
    opts: &HttpOptions,
    sessions: &SessionSet,
    config: StreamableHttpServerConfig,
) -> (axum::Router, Arc<LocalSessionManager>) {
    let modern = modern::ModernSessions::new(
        gw.clone(),
        sessions.clone(),
        modern::ModernLimits {
            max: opts.max_sessions,
            per_user: opts.max_sessions_per_user,
            idle: opts.session_idle_timeout,
        },
    );
    // rmcp asks for a handler per legacy session and per modern request;
    // a modern request is served by its principal's session (`modern`).
    let factory = {
        let (gw, sessions) = (gw.clone(), sessions.clone());
        move || {
            let make: crate::front::era::MakeSession = {
                let (gw, sessions) = (gw.clone(), sessions.clone());
                Arc::new(move || {
                    let s = crate::front::session::Session::new(gw.clone());
                    sessions.add(&s);
                    s
                })
            };
            let principal = modern::current_principal();
            Ok(crate::front::era::EraFront::http(
                gw.clone(),
                make,
                modern.clone(),
                principal,
                listen_hold::current(),
            ))
        }
    };
    // rmcp closes a session with no message for `keep_alive`; the
    // session's service is dropped then, and its upstreams stop.
    let mut manager = LocalSessionManager::default();
    manager.session_config.keep_alive = Some(opts.session_idle_timeout);
    let manager = Arc::new(manager);
    let service = StreamableHttpService::new(factory, manager.clone(), config);
    (axum::Router::new().nest_service("/mcp", service), manager)
}

/// The Protected Resource Metadata (RFC 9728), at every path a client may
/// look for it; served without a token (it is how a client finds where to
/// get one).
fn with_metadata(mut app: axum::Router, auth: &auth::Authenticator) -> axum::Router {
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
    app
}

/// The bearer-token check around `/mcp`, and inside it the owner binding:
/// every message naming a session must carry a token of the session's
/// owner.
fn with_token_check(
    mcp: axum::Router,
    auth: Arc<auth::Authenticator>,
    manager: Arc<LocalSessionManager>,
    max_sessions_per_user: usize,
) -> axum::Router {
    let owners = Arc::new(binding::Owners::new(manager, max_sessions_per_user));
    mcp.layer(middleware::from_fn(move |req, next| {
        binding::bind(owners.clone(), req, next)
    }))
    .layer(middleware::from_fn(move |req, next| {
        auth::require_token(auth.clone(), req, next)
    }))
}
