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
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rmcp::model::{ErrorCode, ErrorData};
use rmcp::service::{RequestContext, RoleServer};

use crate::front::session::{Session, SessionSet};
use crate::gateway::Gateway;
use crate::sync::Recover;

const VERSION_HEADER: &str = "mcp-protocol-version";

/// A verified token identity, or none (no `[auth]`).
pub(crate) type Principal = Option<Arc<crate::config::Identity>>;

tokio::task_local! {
    /// The principal of the HTTP request being served (`with_principal`).
    static PRINCIPAL: Principal;
}

/// Innermost layer: the request's principal, for the handler rmcp makes
/// for it ([`current_principal`]). rmcp asks some handler methods — the
/// subset of a listen's filter to acknowledge — without the request, so a
/// handler must know whose request it serves from when it was made; rmcp
/// makes it on this request's own task.
pub(super) async fn with_principal(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let id = req
        .extensions()
        .get::<super::auth::TokenIdentity>()
        .map(|t| t.0.clone());
    PRINCIPAL.scope(id, next.run(req)).await
}

/// The principal of the HTTP request on this task; `None` outside one.
pub(crate) fn current_principal() -> Option<Principal> {
    PRINCIPAL.try_with(Clone::clone).ok()
}

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

/// How many 2026-07-28 callers are served at once, and for how long an
/// idle one is kept: the same `[serve]` keys as legacy sessions.
#[derive(Debug, Clone, Copy)]
pub struct ModernLimits {
    /// `max_sessions`: callers (principals) at once.
    pub max: usize,
    /// `max_sessions_per_user`: one user's principals (user, agent) at once.
    pub per_user: usize,
    /// `session_idle_timeout`: a caller with no request for this long, and
    /// none in flight, is forgotten and its upstreams stop.
    pub idle: Duration,
}

struct Entry {
    session: Session,
    last: Instant,
}

/// The sessions that serve 2026-07-28 requests, one per principal.
/// Bounded as legacy sessions are: at most `max` principals, at most
/// `per_user` for one user, and a principal with no request for the idle
/// timeout (and none in flight) is dropped, its upstreams stopped — so the
/// table never fills with callers that came once and left, which would
/// lock every new caller out until a restart. Each is also in the front's
/// [`SessionSet`], which stops them at exit and counts them in `gavel
/// status`. Dropping one loses nothing a caller relies on: MCP 2026-07-28
/// keeps no state between requests, and round state is sealed in the
/// request (`host::seal`).
pub struct ModernSessions {
    gw: Arc<Gateway>,
    set: SessionSet,
    by_principal: Mutex<HashMap<(String, String), Entry>>,
    limits: ModernLimits,
    /// Parked rounds answered across instances (with Redis; `handoff.rs`).
    handoffs: Option<Arc<crate::front::session::Handoffs>>,
}

fn full(message: String) -> ErrorData {
    ErrorData::new(ErrorCode(503), message, None)
}

impl ModernSessions {
    pub fn new(gw: Arc<Gateway>, set: SessionSet, limits: ModernLimits) -> Arc<Self> {
        // With a shared Redis, a retry of a round parked here may land on
        // another instance, and one parked there here.
        let handoffs = gw.redis.as_ref().map(|store| {
            let bus = crate::state::bus::Bus::start(
                store.clone(),
                crate::audit::record::instance_id(),
                gw.shutdown.clone(),
            );
            crate::front::session::Handoffs::start(bus, gw.sealer.clone())
        });
        let me = Arc::new(Self {
            gw,
            set,
            by_principal: Mutex::default(),
            limits,
            handoffs,
        });
        me.watch();
        me
    }

    /// The session of the principal whose token `cx` came with (the one
    /// shared by every caller without `[auth]`), made on its first request.
    pub fn session_for(&self, cx: &RequestContext<RoleServer>) -> Result<Session, ErrorData> {
        self.session_of(crate::front::era::token_identity(cx))
    }

    /// [`Self::session_for`] the principal `identity`.
    pub(crate) fn session_of(&self, identity: Principal) -> Result<Session, ErrorData> {
        let key = identity
            .as_ref()
            .map(|i| (i.user.id.clone(), i.agent.id.clone()))
            .unwrap_or_default();
        let mut all = self.by_principal.lock().recover();
        if let Some(e) = all.get_mut(&key) {
            e.last = Instant::now();
            return Ok(e.session.clone());
        }
        if all.len() >= self.limits.max {
            Self::sweep_locked(&mut all, self.limits.idle);
        }
        if all.len() >= self.limits.max {
            tracing::warn!(user = %key.0, agent = %key.1, max = self.limits.max, "refusing a new 2026-07-28 caller: [serve] max_sessions reached");
            return Err(full(format!(
                "gavel is serving its maximum of {} callers (--max-sessions, [serve] max_sessions); retry once one idles out ([serve] session_idle_timeout)",
                self.limits.max
            )));
        }
        let of_user = all.keys().filter(|(u, _)| *u == key.0).count();
        if identity.is_some() && of_user >= self.limits.per_user {
            tracing::warn!(user = %key.0, agent = %key.1, max = self.limits.per_user, "refusing a new 2026-07-28 caller: [serve] max_sessions_per_user reached");
            return Err(full(format!(
                "user {:?} has its maximum of {} agents served at once ([serve] max_sessions_per_user, --max-sessions-per-user); retry once one idles out ([serve] session_idle_timeout)",
                key.0, self.limits.per_user
            )));
        }
        let session = Session::new(self.gw.clone());
        if let Some(h) = &self.handoffs {
            session.join_handoffs(h);
        }
        if let Some(id) = identity {
            session.set_identity(id);
        }
        self.set.add(&session);
        all.insert(
            key,
            Entry {
                session: session.clone(),
                last: Instant::now(),
            },
        );
        Ok(session)
    }

    /// Drops every principal idle for `idle` with no request in flight.
    /// Dropping the last handle of a session stops its upstreams.
    fn sweep_locked(all: &mut HashMap<(String, String), Entry>, idle: Duration) {
        all.retain(|(user, agent), e| {
            let keep = e.last.elapsed() < idle || e.session.handles() > 1;
            if !keep {
                tracing::info!(user = %user, agent = %agent, idle_seconds = idle.as_secs(), "2026-07-28 caller forgotten after no request for its idle timeout ([serve] session_idle_timeout); its upstreams stop");
            }
            keep
        });
    }

    /// Sweeps idle principals until gavel stops.
    fn watch(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        let stop = self.gw.shutdown.clone();
        let tick =
            (self.limits.idle / 4).clamp(Duration::from_millis(250), Duration::from_secs(30));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(tick) => {}
                }
                let Some(me) = me.upgrade() else { return };
                Self::sweep_locked(&mut me.by_principal.lock().recover(), me.limits.idle);
            }
        });
    }
}
