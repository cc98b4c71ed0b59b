//! How an HTTP session ends, answered as the spec says and logged each time.
//!
//! rmcp answers every `DELETE /mcp` 202, for a session it has and for one it
//! never had: the Python SDK then logs "Session termination failed" (it
//! expects 200 or 204), and a client cannot tell a typo'd session id from a
//! closed one. The spec: a server that has terminated a session (or never
//! had it) answers requests naming it 404. So here: a `DELETE` naming a
//! session that is not open is 404 (as rmcp answers other methods on an
//! unknown session), one that closes an open session is 204.
//!
//! A session also ends when it has had no message for `[serve]
//! session_idle_timeout` (rmcp closes it; its [`Session`] drops and the
//! upstreams stop) — clients that never send `DELETE` (the TypeScript SDK,
//! the Inspector) would otherwise keep upstream processes alive. rmcp logs
//! that only at debug level; the watcher here notices each session that
//! disappeared and says why, at info, so an operator can see upstream
//! processes come and go for a reason.
//!
//! Bounded: one entry per open session (removed when it ends); the watcher
//! ticks at most every 30 s and at least every second.
//!
//! [`Session`]: crate::front::session::Session

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use tokio_util::sync::CancellationToken;

use crate::sync::Recover;

const SESSION_HEADER: &str = "mcp-session-id";

/// The open sessions as this layer last saw them: when each last had a
/// message.
pub struct Endings {
    manager: Arc<LocalSessionManager>,
    last_seen: Mutex<HashMap<String, Instant>>,
    idle_timeout: Duration,
}

impl Endings {
    pub fn new(manager: Arc<LocalSessionManager>, idle_timeout: Duration) -> Arc<Self> {
        Arc::new(Endings {
            manager,
            last_seen: Mutex::new(HashMap::new()),
            idle_timeout,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Instant>> {
        self.last_seen.lock().recover()
    }

    async fn is_open(&self, id: &str) -> bool {
        self.manager.sessions.read().await.contains_key(id)
    }

    /// Notes a message on `id` if rmcp has the session open (a new one from
    /// an `initialize` answer included): only open sessions are tracked.
    async fn seen(&self, id: &str) {
        if self.is_open(id).await {
            self.lock().insert(id.to_string(), Instant::now());
        }
    }

    /// Every tracked session rmcp no longer has, logged with why it ended.
    async fn sweep(&self) {
        let live: Vec<String> = {
            let sessions = self.manager.sessions.read().await;
            self.lock()
                .keys()
                .filter(|k| sessions.contains_key(k.as_str()))
                .cloned()
                .collect()
        };
        let mut seen = self.lock();
        let ended: Vec<(String, Instant)> = seen
            .iter()
            .filter(|(k, _)| !live.contains(k))
            .map(|(k, t)| (k.clone(), *t))
            .collect();
        for (id, last) in ended {
            seen.remove(&id);
            let quiet = last.elapsed();
            if quiet >= self.idle_timeout {
                tracing::info!(
                    session = %id,
                    idle_seconds = self.idle_timeout.as_secs(),
                    "HTTP session closed after no message for its idle timeout ([serve] session_idle_timeout); its upstreams stop"
                );
            } else {
                tracing::info!(session = %id, "HTTP session ended (its transport closed); its upstreams stop");
            }
        }
    }

    /// Watches for sessions that ended until `stop`.
    pub fn watch(self: &Arc<Self>, stop: CancellationToken) {
        let me = self.clone();
        let tick = (self.idle_timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(tick) => me.sweep().await,
                }
            }
        });
    }
}

/// The middleware: `DELETE` answered as the spec says, every other message
/// noted for the idle log.
pub async fn track(endings: Arc<Endings>, req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    if req.method() == Method::DELETE {
        return delete(&endings, id, req, next).await;
    }
    let resp = next.run(req).await;
    let id = id.or_else(|| {
        resp.headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    });
    if let Some(id) = id {
        endings.seen(&id).await;
    }
    resp
}

async fn delete(endings: &Endings, id: Option<String>, req: Request, next: Next) -> Response {
    let Some(id) = id else {
        // rmcp answers it: 400, a session id is required.
        return next.run(req).await;
    };
    if !endings.is_open(&id).await {
        return status(StatusCode::NOT_FOUND, "Not Found: Session not found");
    }
    let resp = next.run(req).await;
    if !resp.status().is_success() {
        return resp;
    }
    endings.lock().remove(&id);
    tracing::info!(
        session = %crate::text::escape_controls(&id),
        "HTTP session closed by its client (DELETE); its upstreams stop"
    );
    status(StatusCode::NO_CONTENT, "")
}

fn status(code: StatusCode, text: &'static str) -> Response {
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = code;
    r
}
