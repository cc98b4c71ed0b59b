//! One upstream MCP server as gavel sees it: a supervisor that starts it (stdio
//! child or streamable-HTTP connection), keeps its lists, restarts it with
//! backoff when it dies, and the sender that forwards decided requests to it.
// Legacy-era features (sampling, roots, logging, resources/subscribe) are deprecated in MCP
// 2026-07-28 (SEP-2577) but are exactly what the 2024-11-05 … 2025-11-25 era gavel serves.
#![allow(deprecated)]

pub mod bounded;
pub mod child;
pub mod client;
pub mod era;
mod listen;
mod lists;
pub mod modern_http;
pub mod progress;
pub mod rounds;
pub mod supervisor;
mod tool_pins;
pub mod uri_template;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rmcp::model::ServerCapabilities;
use rmcp::model::{ClientRequest, ErrorData, ServerResult};
use rmcp::service::{Peer, PeerRequestOptions, RequestContext, RoleClient, RoleServer};
use tokio::sync::watch;

pub use client::{ListKind, ProgressMap};
pub mod shared;
pub use lists::UpstreamLists;
pub use supervisor::{SupervisorDeps, spawn_supervisor};

use crate::config::ServerConfig;
use crate::decision::Permit;
use crate::sync::Recover;

/// Where an upstream is in its life.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    Starting {
        since: Instant,
    },
    Ready,
    /// Crashed or failed to start; restarting after `retry_at`.
    Down {
        error: String,
        retry_at: Instant,
    },
    Stopped,
    /// It refuses every MCP era its config allows ([`era::EraMismatch`]):
    /// not restarted.
    Incompatible {
        error: String,
    },
}

/// How long a result waits for the progress notifications read before it.
const PROGRESS_SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// A live connection to the upstream.
pub struct Connection {
    pub peer: Peer<RoleClient>,
    pub capabilities: ServerCapabilities,
    pub progress: Arc<ProgressMap>,
    pub protocol_version: String,
    /// The era the connection was opened in.
    pub era: era::Spoken,
}

pub struct Upstream {
    pub name: String,
    pub cfg: ServerConfig,
    phase: watch::Sender<Phase>,
    conn: RwLock<Option<Arc<Connection>>>,
    lists: RwLock<Arc<UpstreamLists>>,
    pub stderr_tail: child::StderrTail,
    restarts: std::sync::atomic::AtomicU64,
    /// The tool digests of the last tool listing, kept across restarts (the
    /// lists are emptied while the upstream is down), so a definition that
    /// changed while it was down is still seen and logged; before the first
    /// listing, the one the last gavel recorded (`tool_pins`).
    pub(crate) last_tool_digests:
        std::sync::Mutex<Option<std::collections::HashMap<String, String>>>,
    /// Set for `session_mode = "shared"`: the sessions this upstream serves.
    pub shared: Option<Arc<shared::SharedRoute>>,
    /// The level a legacy host last set with `logging/setLevel`: stamped on
    /// its requests when the upstream is modern.
    log_level: RwLock<Option<rmcp::model::LoggingLevel>>,
    /// The resource URIs a 2026-07-28 upstream is asked for in its listen's
    /// `resourceSubscriptions` (`listen`: re-opened when the set changes,
    /// and on every new connection). Kept across restarts.
    followed: watch::Sender<std::collections::BTreeSet<String>>,
}

/// Why a request could not be sent to an upstream.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error(
        "server {server:?} is still starting (waited {waited:?}, its startup_timeout); try again shortly"
    )]
    Starting { server: String, waited: Duration },
    #[error("server {server:?} is down: {error}; gavel restarts it in {retry_in:?}")]
    Down {
        server: String,
        error: String,
        retry_in: Duration,
    },
    #[error("server {server:?} is stopped")]
    Stopped { server: String },
    /// The era mismatch's own text names the server and the fix.
    #[error("{error}")]
    Incompatible { error: String },
}

impl From<Unavailable> for ErrorData {
    fn from(u: Unavailable) -> Self {
        ErrorData::internal_error(u.to_string(), None)
    }
}

impl Upstream {
    pub fn new(cfg: ServerConfig) -> Arc<Self> {
        Self::with_route(cfg, None)
    }

    /// An upstream that serves every host session (`session_mode = "shared"`).
    pub fn new_shared(cfg: ServerConfig) -> Arc<Self> {
        Self::with_route(cfg, Some(Arc::new(shared::SharedRoute::default())))
    }

    fn with_route(cfg: ServerConfig, shared: Option<Arc<shared::SharedRoute>>) -> Arc<Self> {
        Arc::new(Self {
            name: cfg.name.clone(),
            cfg,
            phase: watch::channel(Phase::Starting {
                since: Instant::now(),
            })
            .0,
            conn: RwLock::new(None),
            lists: RwLock::new(Arc::new(UpstreamLists::default())),
            stderr_tail: child::StderrTail::default(),
            restarts: Default::default(),
            last_tool_digests: Default::default(),
            shared,
            log_level: RwLock::new(None),
            followed: watch::channel(Default::default()).0,
        })
    }

    /// The upstream is to send `resources/updated` for `uri` (the caller
    /// counts who follows it): a 2026-07-28 one on its listen, opened
    /// again with it; a legacy one was sent `resources/subscribe` and is
    /// sent it again after a restart (`supervisor::resubscribe`). Kept
    /// across restarts. `true` when it was not followed yet.
    pub fn follow_resource(&self, uri: &str) -> bool {
        self.followed
            .send_if_modified(|s| s.insert(uri.to_string()))
    }

    /// No one follows `uri` any more.
    pub fn unfollow_resource(&self, uri: &str) {
        self.followed.send_if_modified(|s| s.remove(uri));
    }

    pub fn phase(&self) -> Phase {
        self.phase.borrow().clone()
    }

    pub fn restarts(&self) -> u64 {
        self.restarts.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Replaces the lists as a re-fetch would (router tests).
    #[cfg(test)]
    pub(crate) fn set_lists(&self, lists: UpstreamLists) {
        *self.lists.write().recover() = Arc::new(lists);
    }

    pub fn lists(&self) -> Arc<UpstreamLists> {
        self.lists.read().recover().clone()
    }

    pub fn connection(&self) -> Option<Arc<Connection>> {
        self.conn.read().recover().clone()
    }

    fn set_phase(&self, p: Phase) {
        crate::audit::metrics::global().upstream_up(&self.name, matches!(p, Phase::Ready));
        self.phase.send_replace(p);
    }

    /// Waits while the upstream is starting, up to its `startup_timeout`
    /// counted from the start of the current attempt.
    pub async fn wait_started(&self) {
        let mut rx = self.phase.subscribe();
        let since = match &*rx.borrow() {
            Phase::Starting { since } => *since,
            _ => return,
        };
        let deadline = since + self.cfg.startup_timeout;
        let _ = tokio::time::timeout_at(
            deadline.into(),
            rx.wait_for(|p| !matches!(p, Phase::Starting { .. })),
        )
        .await;
    }

    /// The connection, waiting for a start in progress; a clear error otherwise.
    pub async fn ready(&self) -> Result<Arc<Connection>, Unavailable> {
        self.wait_started().await;
        if let Some(c) = self.connection() {
            return Ok(c);
        }
        Err(match self.phase() {
            Phase::Starting { since } => Unavailable::Starting {
                server: self.name.clone(),
                waited: since.elapsed(),
            },
            Phase::Down { error, retry_at } => Unavailable::Down {
                server: self.name.clone(),
                error,
                retry_in: retry_at.saturating_duration_since(Instant::now()),
            },
            Phase::Incompatible { error } => Unavailable::Incompatible { error },
            Phase::Ready | Phase::Stopped => Unavailable::Stopped {
                server: self.name.clone(),
            },
        })
    }

    /// Forwards a decided request. The [`Permit`] proves the enforcement
    /// function allowed it; the host's `_meta` travels along (rmcp replaces only
    /// the progress token, which is mapped back to the host's in
    /// [`client::UpstreamClient::on_progress`]); host cancellation is passed on.
    /// With `[telemetry]`, the `_meta` `traceparent` names gavel's span of the
    /// request, so that the upstream's spans are its children.
    pub async fn send(
        &self,
        permit: &Permit,
        request: ClientRequest,
        host_cx: &RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        let conn = self.ready().await?;
        let mut meta = era::upstream_meta(&host_cx.meta);
        // A request to a modern upstream carries what gavel can honour for
        // it: a legacy host's `initialize` capabilities and the level it set
        // (`era::stamp_legacy_host`), or a modern request's own capabilities
        // (`era::stamp_modern_host`).
        if conn.era == era::Spoken::Modern {
            if let Some(caps) = era::modern_request_capabilities(&host_cx.meta) {
                // A modern host's request: what gavel can relay of this
                // request's own capabilities (its input rounds go to the
                // host, `front::session::relay`). Checked first: rmcp gives
                // a stateless HTTP request a made-up peer info.
                let level = conn
                    .capabilities
                    .logging
                    .is_some()
                    .then(|| host_cx.meta.log_level())
                    .flatten();
                era::stamp_modern_host(&mut meta, &caps, level);
            } else if let Some(host) = host_cx.peer.peer_info() {
                let level = conn
                    .capabilities
                    .logging
                    .is_some()
                    .then(|| *self.log_level.read().recover())
                    .flatten();
                era::stamp_legacy_host(&mut meta, &host.capabilities, level);
            }
        }
        if let Some(span) = &permit.span {
            span.context().propagate(&mut meta.0.0);
        }
        self.send_on(&conn, request, host_cx, meta).await
    }

    async fn send_on(
        &self,
        conn: &Connection,
        request: ClientRequest,
        host_cx: &RequestContext<RoleServer>,
        meta: rmcp::model::RequestMetaObject,
    ) -> Result<ServerResult, ErrorData> {
        let method = request.method().to_string();
        let host_token = host_cx.meta.get_progress_token();
        let options = PeerRequestOptions::with_timeout(self.cfg.call_timeout).with_meta(meta);
        let handle = {
            let mut map = conn.progress.lock().await;
            let handle = conn
                .peer
                .send_request_with_option(request, options)
                .await
                .map_err(|e| self.service_error(&method, e))?;
            // The host peer travels with the token: with a shared
            // upstream, progress must reach the session that asked.
            let target = host_token.map(|t| progress::Target::Host(t, host_cx.peer.clone()));
            // A call that outlives its request (parked) is routed where its
            // session moves it (`progress::ProgressRoute`).
            match host_cx.extensions.get::<progress::ProgressRoute>() {
                Some(route) => {
                    route.set(target);
                    map.insert(
                        handle.progress_token.clone(),
                        progress::Route::Moving(route.clone()),
                    );
                }
                None => {
                    if let Some(t) = target {
                        map.insert(handle.progress_token.clone(), progress::Route::Fixed(t));
                    }
                }
            }
            conn.progress.track(&handle.progress_token);
            handle
        };
        let token = handle.progress_token.clone();
        let id = handle.id.clone();
        let peer = handle.peer.clone();
        let result = tokio::select! {
            r = handle.await_response() => r.map_err(|e| self.service_error(&method, e)),
            _ = host_cx.ct.cancelled() => {
                // The host's request is cancelled by the host, or by gavel
                // stopping on a signal (which cancels every request): say which.
                let why = match crate::status::stop_reason() {
                    Some(sig) => format!("gavel stopped by {sig}"),
                    None => "cancelled by the agent host".to_string(),
                };
                // Cancellation goes to the owning upstream only, on its own id.
                let _ = peer.notify_cancelled(rmcp::model::CancelledNotificationParam::new(
                    Some(id),
                    Some(why.clone()),
                )).await;
                Err(ErrorData::internal_error(format!("request not finished: {why}"), None))
            }
        };
        // Progress the upstream sent before its result reaches the host
        // before the result does (see `progress`).
        conn.progress.settle(&token, PROGRESS_SETTLE).await;
        // So do the log lines read before it (a modern request's own go to
        // its stream, which the result closes; a legacy host reads them in
        // the order the upstream wrote them).
        conn.progress.settle_logs(PROGRESS_SETTLE).await;
        conn.progress.lock().await.remove(&token);
        result
    }

    /// Protocol plumbing that is not a policy decision (documented in
    /// ARCHITECTURE.md): `logging/setLevel` broadcast to upstreams.
    pub async fn send_set_level(
        &self,
        request: rmcp::model::SetLevelRequestParams,
    ) -> Result<(), ErrorData> {
        // `logging/setLevel` is gone from MCP 2026-07-28: the level travels
        // on each request (`send`), so it is kept, for this connection and
        // the next, and a modern upstream is not sent it. A shared upstream
        // is set to the most verbose level any of its hosts set, never just
        // the last one's: each host is then sent only what is at or above
        // its own (`client::on_logging_message`).
        let mut request = request;
        if let Some(route) = &self.shared {
            let owners = route.owners();
            let levels = owners.iter().filter_map(|o| o.host.log_level());
            request.level = levels
                .chain([request.level])
                .min_by_key(|l| *l as u8)
                .unwrap_or(request.level);
        }
        *self.log_level.write().recover() = Some(request.level);
        let Some(conn) = self.connection() else {
            return Ok(());
        };
        if conn.capabilities.logging.is_none() || conn.era == era::Spoken::Modern {
            return Ok(());
        }
        let req = ClientRequest::SetLevelRequest(rmcp::model::SetLevelRequest::new(request));
        let options = PeerRequestOptions::with_timeout(self.cfg.call_timeout);
        let handle = conn
            .peer
            .send_request_with_option(req, options)
            .await
            .map_err(|e| self.service_error("logging/setLevel", e))?;
        handle
            .await_response()
            .await
            .map(|_| ())
            .map_err(|e| self.service_error("logging/setLevel", e))
    }

    fn service_error(&self, method: &str, e: rmcp::ServiceError) -> ErrorData {
        use rmcp::ServiceError as S;
        match e {
            // The upstream's own JSON-RPC error passes through verbatim.
            S::McpError(e) => e,
            S::Timeout { timeout } => ErrorData::internal_error(
                format!(
                    "server {:?} did not answer {method} within {timeout:?} (servers.{}.call_timeout)",
                    self.name, self.name
                ),
                None,
            ),
            S::TransportSend(e) if unreadable_answer(&e) => ErrorData::internal_error(
                format!(
                    "server {:?} answered {method} in a form gavel cannot read ({}); an HTTP \
                     server must answer with one JSON-RPC message (Content-Type: \
                     application/json) or an SSE stream (text/event-stream); the connection \
                     stays up",
                    self.name,
                    crate::text::escape_controls(crate::text::prefix(&e.error.to_string(), 300)),
                ),
                None,
            ),
            S::TransportClosed | S::TransportSend(_) => ErrorData::internal_error(
                format!(
                    "server {:?} closed the connection while handling {method} (it may have crashed; gavel restarts it)",
                    self.name
                ),
                None,
            ),
            other => ErrorData::internal_error(
                format!("server {:?} failed on {method}: {other}", self.name),
                None,
            ),
        }
    }
}

/// An HTTP upstream's answer to one request that its transport could not
/// read (not JSON-RPC, several JSON lines under `application/json`, a body
/// over the size bound): that request fails, the connection does not — so
/// the host is told what the server sent wrong, not that it crashed.
fn unreadable_answer(e: &rmcp::transport::DynamicTransportError) -> bool {
    use rmcp::transport::streamable_http_client::StreamableHttpError;
    matches!(
        e.error
            .downcast_ref::<StreamableHttpError<reqwest::Error>>(),
        Some(StreamableHttpError::UnexpectedServerResponse(_))
    )
}
