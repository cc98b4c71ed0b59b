//! One host session: the MCP server the host sees. Every request that can
//! reach an upstream is resolved through the router, decided by the enforcer,
//! and only then forwarded with the resulting [`Permit`]. This file is the
//! session's state and its forward path; `authorize` its decide path (the
//! action, then the gate); `handler` is the MCP methods the host calls;
//! `set` the open sessions of a front that serves many (HTTP).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use rmcp::ErrorData;
use rmcp::model::*;
use rmcp::service::{RequestContext, RoleServer};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::decision::{Permit, SessionState};
use crate::front::http::auth::TokenIdentity;
use crate::gateway::Gateway;
use crate::host::link::HostLink;
use crate::router::Router;
use crate::sync::Recover;
use crate::upstream::{SupervisorDeps, Upstream, spawn_supervisor};

mod agent;
mod agent_resources;
mod authorize;
mod dataflow;
mod handler;
mod handoff;
mod host_round;
mod listen;
mod listen_prepare;
mod listen_resources;
mod parked;
mod relay;
mod result;
mod round_result;
mod rounds;
mod set;
mod url_round;
pub use handler::server_config;
pub use handoff::Handoffs;
pub(crate) use listen_prepare::{Listened, Prepared};
pub use set::SessionSet;
pub(crate) mod prepared_listen {
    //! The task-local hand-over of a prepared listen (`listen_prepare`).
    pub(crate) use super::listen_prepare::{current, scoped};
}

struct Inner {
    gw: Arc<Gateway>,
    host: Arc<HostLink>,
    router: OnceLock<Arc<Router>>,
    shutdown: CancellationToken,
    supervisors: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    state: Arc<SessionState>,
    /// This session as shared upstreams see it (kept alive by the session).
    owner: OnceLock<Arc<crate::upstream::shared::Owner>>,
    /// The decisions this session was given, newest last and bounded: the
    /// only ids `gavel__why` explains to it.
    given: Mutex<agent::Given>,
    /// Held while upstreams are being started, by whichever request comes
    /// first: a legacy `initialize` or a modern host's first request.
    starting: Mutex<()>,
    /// Every list change announced, for the host's open listens
    /// (2026-07-28, `listen.rs`).
    changes: Arc<listen::ListChanges>,
    /// A modern host's calls waiting for its retry (`parked.rs`).
    parked: Arc<parked::ParkedTable>,
    /// Other instances that may hold, or resume, this session's parked
    /// calls (HTTP with Redis; `handoff.rs`).
    handoffs: OnceLock<Arc<handoff::Handoffs>>,
    /// The resource URIs its listens follow (`listen_resources.rs`).
    following: listen_resources::Following,
}

/// Cheap to clone; all clones are the same session.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

/// When the last handle of a session goes (an HTTP session closed), its
/// upstreams stop.
impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A handle that does not keep the session alive ([`SessionSet`]).
struct WeakSession(std::sync::Weak<Inner>);

impl WeakSession {
    fn upgrade(&self) -> Option<Session> {
        self.0.upgrade().map(|inner| Session { inner })
    }
}

impl Session {
    pub fn new(gw: Arc<Gateway>) -> Self {
        let shutdown = gw.shutdown.child_token();
        let state = Arc::new(SessionState::new(gw.enforcer.clock().clone()));
        Self {
            inner: Arc::new(Inner {
                gw,
                host: Arc::new(HostLink::default()),
                router: OnceLock::new(),
                shutdown,
                supervisors: Mutex::new(Vec::new()),
                state,
                owner: OnceLock::new(),
                given: Default::default(),
                starting: Mutex::new(()),
                changes: Default::default(),
                parked: Default::default(),
                handoffs: OnceLock::new(),
                following: Default::default(),
            }),
        }
    }

    /// The gateway this session serves from.
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.inner.gw
    }

    /// The verified token identity of the `initialize` (HTTP with `[auth]`)
    /// becomes the session's, for every decision it makes. That later
    /// messages on the session carry a token of the same user and agent is
    /// enforced for every message, notifications included, by
    /// `front::binding` at the HTTP layer (rmcp acts on some of them, e.g.
    /// cancellation, before any handler here runs).
    fn adopt_identity(&self, cx: &RequestContext<RoleServer>) {
        if let Some(TokenIdentity(id)) = cx
            .extensions
            .get::<http::request::Parts>()
            .and_then(|p| p.extensions.get::<TokenIdentity>())
        {
            let _ = self.inner.state.identity.set(id.clone());
        }
    }

    /// A 2026-07-28 host's request arrived: starts the upstreams if no
    /// request started them yet. There is no `initialize` to mirror, so
    /// upstreams are told gavel's identity and no capability
    /// ([`HostLink::set_modern`]).
    pub(crate) fn serve_modern_host(&self) {
        if self.inner.router.get().is_some() {
            return;
        }
        let _starting = self.inner.starting.lock().recover();
        if self.inner.router.get().is_none() {
            self.inner.host.set_modern();
            self.start_upstreams();
        }
    }

    /// The verified identity of the principal a 2026-07-28 HTTP session
    /// serves (`front::http::modern`), for what its decisions read when a
    /// request carries none of its own.
    pub(crate) fn set_identity(&self, id: Arc<crate::config::Identity>) {
        let _ = self.inner.state.identity.set(id);
    }

    /// Handles to this session alive now: a session held only by the
    /// table that keeps it has no request in flight (every request, listen
    /// streams included, holds a handle while it runs).
    pub(crate) fn handles(&self) -> usize {
        Arc::strong_count(&self.inner)
    }

    fn downgrade(&self) -> WeakSession {
        WeakSession(Arc::downgrade(&self.inner))
    }

    pub fn id(&self) -> &str {
        &self.inner.state.id
    }

    /// Starts every enabled upstream in parallel, mirroring the host's
    /// capabilities, and the task that keeps the name table current.
    fn start_upstreams(&self) {
        let gw = &self.inner.gw;
        let prefixed = gw.prefixed();
        let (changed_tx, mut changed_rx) = mpsc::channel::<crate::upstream::supervisor::Changed>(
            crate::upstream::supervisor::CHANGES_QUEUED,
        );
        let mut ups = BTreeMap::new();
        let mut handles = Vec::new();
        let owner = Arc::new(crate::upstream::shared::Owner {
            host: self.inner.host.clone(),
            session: self.inner.state.clone(),
            changed: changed_tx.clone(),
        });
        let _ = self.inner.owner.set(owner.clone());
        for (name, cfg) in gw.config.enabled_servers() {
            let deps = |changed| SupervisorDeps {
                host: self.inner.host.clone(),
                enforcer: gw.enforcer.clone(),
                limits: gw.config.limits.clone(),
                logger_prefix: prefixed.then(|| cfg.prefix.clone()),
                changed,
                session: self.inner.state.clone(),
                shutdown: self.inner.shutdown.clone(),
                base_dir: gw
                    .config
                    .source
                    .as_ref()
                    .and_then(|p| std::path::absolute(p).ok())
                    .and_then(|p| p.parent().map(|d| d.to_path_buf())),
            };
            if cfg.session_mode == crate::config::SessionMode::Shared {
                ups.insert(name.clone(), gw.shared_upstream(cfg, &owner, deps));
                continue;
            }
            let up = Upstream::new(cfg.clone());
            handles.push(spawn_supervisor(
                up.clone(),
                deps(crate::upstream::supervisor::ChangeSink::One(
                    changed_tx.clone(),
                )),
            ));
            ups.insert(name.clone(), up);
        }
        let router =
            Arc::new(Router::new(ups, prefixed).reserving(gw.config.agent_tools.enabled()));
        let _ = self.inner.router.set(router.clone());
        self.inner.supervisors.lock().recover().extend(handles);
        let host = self.inner.host.clone();
        let enforcer = gw.enforcer.clone();
        let shutdown = self.inner.shutdown.clone();
        let state = self.inner.state.clone();
        let changes = self.inner.changes.clone();
        // A newly activated policy may show or hide tools (`visible`).
        let mut policies = enforcer.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some(first) = changed_rx.recv() => {
                        // Coalesce bursts (several upstreams becoming ready together).
                        let mut heard = vec![first];
                        while let Ok(c) = changed_rx.try_recv() {
                            heard.push(c);
                        }
                        router.rebuild(&enforcer, &list_context(&state));
                        let found = router.take_unannounced();
                        announce(&host, &changes, with_notices(&router, found, &heard)).await;
                    }
                    Ok(()) = policies.changed() => {
                        router.rebuild(&enforcer, &list_context(&state));
                        announce(&host, &changes, router.take_unannounced()).await;
                    }
                    _ = shutdown.cancelled() => break,
                    else => break,
                }
            }
        });
    }

    /// The upstream `server` routes to (an error naming it when there is
    /// none: the router knows every configured server).
    fn upstream(&self, server: &str) -> Result<Arc<Upstream>, ErrorData> {
        self.router()?
            .upstreams
            .get(server)
            .cloned()
            .ok_or_else(|| ErrorData::internal_error(format!("no upstream {server:?}"), None))
    }

    fn router(&self) -> Result<&Arc<Router>, ErrorData> {
        self.inner.router.get().ok_or_else(|| {
            ErrorData::invalid_request(
                "the session is not initialized: send initialize first",
                None,
            )
        })
    }

    /// Waits for upstreams still starting (each up to its startup_timeout),
    /// for a request that routes: the table is rebuilt only if some
    /// upstream's lists changed since it was built ([`Router::refresh`]).
    async fn wait_started(&self) -> Result<&Arc<Router>, ErrorData> {
        self.started(false).await
    }

    /// As [`Self::wait_started`], for a list answer: the table is rebuilt in
    /// full, so what is listed follows the active policy and the clock.
    async fn listing(&self) -> Result<&Arc<Router>, ErrorData> {
        self.started(true).await
    }

    async fn started(&self, full: bool) -> Result<&Arc<Router>, ErrorData> {
        let router = self.router()?;
        futures::future::join_all(router.upstreams.values().map(|u| u.wait_started())).await;
        // Servers that just became ready are in the table before we answer
        // (the background rebuild may not have run yet). A change found here
        // is still announced by the listener, unless this request is the
        // list itself (`Router::answered`).
        let (enforcer, state) = (&self.inner.gw.enforcer, &self.inner.state);
        if full {
            router.rebuild(enforcer, &list_context(state));
        } else {
            router.refresh(enforcer, || list_context(state));
        }
        Ok(router)
    }

    /// Upstream state for `gavel status`: phase, restarts, last error, what is
    /// listed and what was withheld by a name collision.
    pub fn status_json(&self) -> Value {
        let Some(router) = self.inner.router.get() else {
            return json!({"session": self.id(), "state": "waiting for the host's first request"});
        };
        let table = router.table();
        let mut servers = serde_json::Map::new();
        for (name, up) in &router.upstreams {
            let (phase, last_error) = match up.phase() {
                crate::upstream::Phase::Starting { .. } => ("starting", None),
                crate::upstream::Phase::Ready => ("ready", None),
                crate::upstream::Phase::Down { error, .. } => ("down", Some(error)),
                crate::upstream::Phase::Stopped => ("stopped", None),
                crate::upstream::Phase::Incompatible { error } => ("incompatible", Some(error)),
            };
            let era = up.connection().map(|c| c.era.as_str());
            let tools = table
                .tool_routes
                .values()
                .filter(|r| &r.server == name)
                .count();
            servers.insert(name.clone(), json!({"phase": phase, "era": era, "restarts": up.restarts(), "last_error": last_error, "tools": tools}));
        }
        json!({"session": self.id(), "upstreams": servers, "withheld_names": table.withheld})
    }

    /// Stops every upstream of this session and waits for them to exit.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let handles: Vec<_> = self.inner.supervisors.lock().recover().drain(..).collect();
        crate::upstream::supervisor::join_bounded(handles).await;
    }

    /// Sends a decided request to `server` and returns its answer. A
    /// 2026-07-28 request never gets -32042 (URL elicitation required, a
    /// 2025-11-25 error its revision forbids): only a call that can take a
    /// round turns it into one (`url_round.rs`, through `parked.rs`).
    async fn forward(
        &self,
        server: &str,
        permit: &Permit,
        request: ClientRequest,
        cx: &RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        // Only a modern request needs the method afterwards (the error
        // below): a legacy call, the usual one, copies nothing for it.
        let method = crate::front::era::modern_version(&cx.meta)
            .is_some()
            .then(|| request.method().to_string());
        let r = self.forward_asking(server, permit, request, cx, None).await;
        match (r, method) {
            // -32042 is not a 2026-07-28 error: only a parked call's
            // (`parked.rs`) becomes a URL round, any other is told plainly.
            (Err(e), Some(method)) if e.code == url_round::URL_ELICITATION_REQUIRED => {
                Err(url_round::never_to_modern(
                    server,
                    &method,
                    &e,
                    "a 2026-07-28 host can be asked to open one only in an input round of a tools/call, prompts/get or resources/read of a server of the 2025-11-25 era",
                ))
            }
            (r, _) => r,
        }
    }

    /// [`Self::forward`]; for a 2026-07-28 host, the call is entered as in
    /// flight at `server` for as long as it is (`host::questions`), taking
    /// the upstream's questions on `asks` when it can answer with a round.
    async fn forward_asking(
        &self,
        server: &str,
        permit: &Permit,
        request: ClientRequest,
        cx: &RequestContext<RoleServer>,
        asks: Option<tokio::sync::mpsc::Sender<crate::host::questions::Question>>,
    ) -> Result<ServerResult, ErrorData> {
        let host = &self.inner.host;
        let up = self.upstream(server)?;
        let log = log_sink(&up, cx);
        let _entered = host
            .is_modern()
            .then(|| host.questions.enter_logging(server, asks, log));
        // A shared upstream learns whose call is in flight (to route its
        // requests back to the right user) until this call ends.
        let _in_flight = match (&up.shared, self.inner.owner.get()) {
            (Some(route), Some(owner)) => Some(route.begin(owner.clone())),
            _ => None,
        };
        let result = up.send(permit, request, cx).await;
        if let (Err(e), Some(span)) = (&result, &permit.span) {
            // The code only: an error's text may quote the request.
            span.fail(format!("the upstream answered with error {}", e.code.0));
        }
        result
    }

    /// For a shared upstream: its route and this session as it sees it.
    fn shared_route(
        &self,
        server: &str,
    ) -> Option<(
        Arc<crate::upstream::shared::SharedRoute>,
        Arc<crate::upstream::shared::Owner>,
    )> {
        let up = self.inner.router.get()?.upstreams.get(server)?;
        Some((up.shared.clone()?, self.inner.owner.get()?.clone()))
    }

    /// Resolves a resource URI to its server, or the JSON-RPC error to return.
    fn route_uri(&self, uri: &str) -> Result<String, ErrorData> {
        let router = self.router()?;
        router.table().route_resource(uri, &router.upstreams).ok_or_else(|| {
            ErrorData::resource_not_found(
                format!("Unknown resource: {uri} (no upstream server lists it or a template matching it)"),
                Some(json!({ "uri": uri })),
            )
        })
    }
}

/// What `visible` sees of a session: its id and identity (counters stay
/// zero — listing is not a call).
fn list_context(state: &SessionState) -> crate::decision::DecisionContext {
    crate::decision::DecisionContext {
        session_id: state.id.clone(),
        identity: state.identity.get().cloned(),
        ..Default::default()
    }
}

/// Tells the host which lists changed (tools, resources, prompts): a
/// legacy host by unsolicited notifications, a 2026-07-28 host only on the
/// listens it opened (`listen.rs`; it has no session peer, so `peer()` is
/// `None` for it).
async fn announce(
    host: &crate::host::link::HostLink,
    changes: &listen::ListChanges,
    changed: listen::Changed,
) {
    changes.publish(changed);
    let (tools, resources, prompts) = changed;
    if let Some(peer) = host.peer() {
        if tools {
            let _ = peer.notify_tool_list_changed().await;
        }
        if resources {
            let _ = peer.notify_resource_list_changed().await;
        }
        if prompts {
            let _ = peer.notify_prompt_list_changed().await;
        }
    }
}

/// What changed as found (`found`), plus every kind an upstream itself
/// announced a change of (`heard`) where the host is shown that server's
/// whole list of it (`Router::shows_whole`): its notice is passed on as the
/// server sent it, even when nothing the host sees changed.
fn with_notices(
    router: &Router,
    found: listen::Changed,
    heard: &[crate::upstream::supervisor::Changed],
) -> listen::Changed {
    use crate::upstream::client::ListKind;
    let (mut tools, mut resources, mut prompts) = found;
    for c in heard {
        let Some(kind) = c.notice else { continue };
        if router.shows_whole(&c.server, kind) {
            match kind {
                ListKind::Tools => tools = true,
                ListKind::Resources => resources = true,
                ListKind::Prompts => prompts = true,
            }
        }
    }
    (tools, resources, prompts)
}

/// Where the upstream's log messages for a 2026-07-28 request go (B13): the
/// request's own stream, at or above the level it set — only when it set
/// one and `up` is a modern upstream that logs (it is then told the level,
/// `era::stamp_modern_host`). A legacy upstream's log messages belong to
/// its session, never to one request: a modern host is not sent them.
fn log_sink(
    up: &crate::upstream::Upstream,
    cx: &RequestContext<RoleServer>,
) -> Option<crate::host::questions::LogSink> {
    crate::front::era::modern_version(&cx.meta)?;
    let min = cx.meta.log_level()?;
    let conn = up.connection()?;
    (conn.era == crate::upstream::era::Spoken::Modern && conn.capabilities.logging.is_some()).then(
        || crate::host::questions::LogSink {
            min,
            peer: cx.peer.clone(),
        },
    )
}
