//! One host session: the MCP server the host sees. Every request that can
//! reach an upstream is resolved through the router, decided by the enforcer,
//! and only then forwarded with the resulting [`Permit`].
// Legacy-era features (sampling, roots, logging, resources/subscribe) are deprecated in MCP
// 2026-07-28 (SEP-2577) but are exactly what the 2024-11-05 … 2025-11-25 era gavel serves.
#![allow(deprecated)]

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use rmcp::model::*;
use rmcp::service::{NotificationContext, RequestContext, RoleServer};
use rmcp::{ErrorData, ServerHandler};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::decision::{Action, ActionType, Permit, SessionState, Verdict, deny};
use crate::front::auth::TokenIdentity;
use crate::front::host::HostLink;
use crate::gateway::Gateway;
use crate::router::Router;
use crate::upstream::{SupervisorDeps, Upstream, spawn_supervisor};

/// Spec method names that must never be forwarded as custom requests: rmcp
/// routes a malformed standard request (e.g. `tools/call` with a numeric name)
/// to `on_custom_request`, which would otherwise bypass the decision.
const SPEC_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "tools/call",
    "tools/list",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "subscriptions/listen",
    "tasks/get",
    "tasks/update",
    "tasks/cancel",
    "tasks/list",
    "tasks/result",
    "skills/list",
    "skills/get",
    "resources/directory/read",
    "sampling/createMessage",
    "elicitation/create",
    "roots/list",
];

struct Inner {
    gw: Arc<Gateway>,
    host: Arc<HostLink>,
    router: OnceLock<Arc<Router>>,
    shutdown: CancellationToken,
    supervisors: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    state: Arc<SessionState>,
    /// This session as shared upstreams see it (kept alive by the session).
    owner: OnceLock<Arc<crate::upstream::shared::Owner>>,
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

/// A handle that does not keep the session alive.
pub struct WeakSession(std::sync::Weak<Inner>);

impl WeakSession {
    pub fn upgrade(&self) -> Option<Session> {
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
            }),
        }
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

    pub fn downgrade(&self) -> WeakSession {
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
        let (changed_tx, mut changed_rx) = mpsc::unbounded_channel::<String>();
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
        let router = Arc::new(Router::new(ups, prefixed));
        let _ = self.inner.router.set(router.clone());
        self.inner
            .supervisors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(handles);
        let host = self.inner.host.clone();
        let enforcer = gw.enforcer.clone();
        let shutdown = self.inner.shutdown.clone();
        let state = self.inner.state.clone();
        // A newly activated policy may show or hide tools (`visible`).
        let mut policies = enforcer.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some(_server) = changed_rx.recv() => {
                        // Coalesce bursts (several upstreams becoming ready together).
                        while changed_rx.try_recv().is_ok() {}
                        announce(&host, router.rebuild(&enforcer, &list_context(&state))).await;
                    }
                    Ok(()) = policies.changed() => {
                        announce(&host, router.rebuild(&enforcer, &list_context(&state))).await;
                    }
                    _ = shutdown.cancelled() => break,
                    else => break,
                }
            }
        });
    }

    fn router(&self) -> Result<&Arc<Router>, ErrorData> {
        self.inner.router.get().ok_or_else(|| {
            ErrorData::invalid_request(
                "the session is not initialized: send initialize first",
                None,
            )
        })
    }

    /// Waits for upstreams still starting (each up to its startup_timeout).
    async fn wait_started(&self) -> Result<&Arc<Router>, ErrorData> {
        let router = self.router()?;
        futures::future::join_all(router.upstreams.values().map(|u| u.wait_started())).await;
        // Servers that just became ready are in the table before we answer
        // (the background rebuild may not have run yet); the listener then
        // finds nothing changed and sends no redundant list_changed.
        router.rebuild(&self.inner.gw.enforcer, &list_context(&self.inner.state));
        Ok(router)
    }

    /// Upstream state for `gavel status`: phase, restarts, last error, what is
    /// listed and what was withheld by a name collision.
    pub fn status_json(&self) -> Value {
        let Some(router) = self.inner.router.get() else {
            return json!({"session": self.id(), "state": "waiting for the host's initialize"});
        };
        let table = router.table();
        let mut servers = serde_json::Map::new();
        for (name, up) in &router.upstreams {
            let (phase, last_error) = match up.phase() {
                crate::upstream::Phase::Starting { .. } => ("starting", None),
                crate::upstream::Phase::Ready => ("ready", None),
                crate::upstream::Phase::Down { error, .. } => ("down", Some(error)),
                crate::upstream::Phase::Stopped => ("stopped", None),
            };
            let tools = table
                .tool_routes
                .values()
                .filter(|r| &r.server == name)
                .count();
            servers.insert(name.clone(), json!({"phase": phase, "restarts": up.restarts(), "last_error": last_error, "tools": tools}));
        }
        json!({"session": self.id(), "upstreams": servers, "withheld_names": table.withheld})
    }

    /// Stops every upstream of this session and waits for them to exit.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let handles: Vec<_> = self
            .inner
            .supervisors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        crate::upstream::supervisor::join_bounded(handles).await;
    }

    fn action(&self, kind: ActionType, server: &str, tool: &str, args: Value) -> Action {
        let trusted = self
            .inner
            .gw
            .config
            .servers
            .get(server)
            .is_some_and(|s| s.annotations_trusted);
        Action {
            kind,
            server: server.to_string(),
            tool: tool.to_string(),
            args,
            annotations: json!({}),
            annotations_trusted: trusted,
            tool_digest: None,
            upstream_data_classes: vec![],
        }
    }

    async fn decide(&self, action: &Action) -> Verdict {
        let verdict = self
            .inner
            .state
            .decide_async(&self.inner.gw.enforcer, action)
            .await;
        let d = verdict.decision();
        // The decision log is the audit record; this diagnostic line shows
        // denials at info and allows only at debug (they are the hot path).
        if d.allow {
            tracing::debug!(
                target: "gavel::decision",
                session = %self.inner.state.id, server = %action.server, tool = %action.tool,
                action = action.kind.as_str(), decision_id = d.decision_id.as_deref().unwrap_or("-"),
                "allowed"
            );
        } else {
            tracing::info!(
                target: "gavel::decision",
                session = %self.inner.state.id, server = %action.server, tool = %action.tool,
                action = action.kind.as_str(), reasons = ?d.reasons,
                decision_id = d.decision_id.as_deref().unwrap_or("-"),
                "denied"
            );
        }
        verdict
    }

    /// Decides `action` and settles any human approval its decision asks
    /// for (one mechanism for every kind of request): the permit to forward
    /// with, or the denial to answer.
    async fn authorize(
        &self,
        action: &Action,
        cx: &RequestContext<RoleServer>,
    ) -> Result<Permit, crate::decision::Decision> {
        let permit = match self.decide(action).await {
            Verdict::Deny(d) => return Err(d),
            Verdict::Allow(p) => p,
        };
        super::approval::settle(
            &self.inner.gw.enforcer,
            &self.inner.host,
            &self.inner.state,
            action,
            &permit,
            cx.meta.get_progress_token(),
        )
        .await?;
        Ok(permit)
    }

    async fn forward(
        &self,
        server: &str,
        permit: &Permit,
        request: ClientRequest,
        cx: &RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        let up =
            self.router()?.upstreams.get(server).ok_or_else(|| {
                ErrorData::internal_error(format!("no upstream {server:?}"), None)
            })?;
        // A shared upstream learns whose call is in flight (to route its
        // requests back to the right user) until this call ends.
        let _in_flight = match (&up.shared, self.inner.owner.get()) {
            (Some(route), Some(owner)) => Some(route.begin(owner.clone())),
            _ => None,
        };
        up.send(permit, request, cx).await
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

/// Tells the host which lists changed (tools, resources, prompts).
async fn announce(
    host: &crate::front::host::HostLink,
    (tools, resources, prompts): (bool, bool, bool),
) {
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

/// A tool's annotations as the input contract has them: an object, empty
/// when the upstream declared none.
pub fn annotations_value(tool: &Tool) -> Value {
    tool.annotations
        .as_ref()
        .and_then(|a| serde_json::to_value(a).ok())
        .unwrap_or_else(|| json!({}))
}

/// Size of a tool result for the token estimate, without serializing it
/// again: the text it carries (binary content counts as its base64 text).
fn result_bytes(r: &ServerResult) -> usize {
    match r {
        ServerResult::CallToolResult(r) => {
            let content: usize = r
                .content
                .iter()
                .map(|c| match c.as_text() {
                    Some(t) => t.text.len(),
                    None => serde_json::to_vec(c).map(|v| v.len()).unwrap_or(0),
                })
                .sum();
            content
                + r.structured_content
                    .as_ref()
                    .map_or(0, |v| v.to_string().len())
        }
        other => serde_json::to_vec(other).map(|v| v.len()).unwrap_or(0),
    }
}

fn unexpected(method: &str, r: ServerResult) -> ErrorData {
    ErrorData::internal_error(
        format!(
            "upstream answered {method} with an unexpected result: {}",
            serde_json::to_string(&r).unwrap_or_default()
        ),
        None,
    )
}

impl ServerHandler for Session {
    fn get_info(&self) -> ServerConfig {
        let caps = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_resources_list_changed()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_logging()
            .enable_completions()
            .build();
        let names: Vec<&str> = self
            .inner
            .gw
            .config
            .enabled_servers()
            .map(|(n, _)| n.as_str())
            .collect();
        ServerConfig::new(caps)
            .with_server_info(Implementation::new("gavel", env!("CARGO_PKG_VERSION")))
            .with_protocol_version(ProtocolVersion::V_2025_11_25)
            .with_instructions(format!(
                "gavel policy proxy in front of: {}. Every call is checked against policy; \
                 a denied call returns an explanation — do not try to work around it.",
                names.join(", ")
            ))
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::known_up_to(&ProtocolVersion::V_2025_11_25))
    }

    /// `-32601` so dual-era hosts fall back to `initialize` (the 2026-07-28
    /// era is not served yet).
    async fn discover(&self, _cx: RequestContext<RoleServer>) -> Result<DiscoverResult, ErrorData> {
        Err(ErrorData::method_not_found::<DiscoverRequestMethod>())
    }

    /// Answered at once; upstreams start in the background.
    async fn initialize(
        &self,
        request: InitializeRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        cx.peer.set_peer_info(request.clone());
        self.adopt_identity(&cx);
        let result = self.negotiate_initialize(&request)?;
        if self.inner.router.get().is_none() {
            self.inner.state.set_client(
                request.client_info.name.clone(),
                request.client_info.version.clone(),
            );
            self.inner.host.set_initialize(cx.peer.clone(), request);
            self.start_upstreams();
        }
        Ok(result)
    }

    async fn on_initialized(&self, _cx: NotificationContext<RoleServer>) {
        self.inner.host.mark_initialized();
    }

    async fn list_tools(
        &self,
        _r: Option<PaginatedRequestParams>,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let router = self.wait_started().await?;
        let t = router.table();
        Ok(ListToolsResult::with_all_items(t.tools.clone()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let mut route = self
            .router()?
            .table()
            .tool_routes
            .get(request.name.as_ref())
            .cloned();
        if route.is_none() {
            // The tool's server may still be starting.
            route = self
                .wait_started()
                .await?
                .table()
                .tool_routes
                .get(request.name.as_ref())
                .cloned();
        }
        let Some(route) = route else {
            return Err(ErrorData::invalid_params(
                format!("Unknown tool: {}", request.name),
                None,
            ));
        };
        if let Some(n) = cx
            .meta
            .0
            .0
            .get("dev.gavel/cumulative_tokens")
            .and_then(Value::as_u64)
        {
            self.inner.state.raise_tokens(n);
        }
        let args = request
            .arguments
            .clone()
            .map(Value::Object)
            .unwrap_or_else(|| json!({}));
        let mut action = self.action(ActionType::ToolCall, &route.server, &route.name, args);
        action.annotations = annotations_value(&route.tool);
        action.tool_digest = route.digest.clone();
        action.upstream_data_classes = route
            .tool
            .meta
            .as_ref()
            .and_then(|m| m.0.get("dev.gavel/data_classes"))
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let permit = match self.authorize(&action, &cx).await {
            Err(d) => {
                let has_schema = route.tool.output_schema.is_some();
                return Ok(deny::tool_denial(&d, &request.name, has_schema).into());
            }
            Ok(p) => p,
        };
        let mut upstream_req = request;
        upstream_req.name = route.name.clone().into();
        let req = ClientRequest::CallToolRequest(CallToolRequest::new(upstream_req));
        let result = self.forward(&route.server, &permit, req, &cx).await?;
        let bytes = result_bytes(&result);
        self.inner.state.add_result_bytes(bytes);
        self.inner.gw.enforcer.charge_result_tokens(&permit, bytes);
        match result {
            ServerResult::CallToolResult(r) => Ok(r.into()),
            ServerResult::CustomResult(CustomResult(v)) => serde_json::from_value::<CallToolResult>(v.clone())
                .map(Into::into)
                .map_err(|e| ErrorData::internal_error(
                    format!("server {:?} returned a tools/call result gavel cannot represent ({e}): {v}", route.server),
                    None,
                )),
            other => Err(unexpected("tools/call", other)),
        }
    }

    async fn list_resources(
        &self,
        _r: Option<PaginatedRequestParams>,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let t = self.wait_started().await?.table();
        Ok(ListResourcesResult::with_all_items(t.resources.clone()))
    }

    async fn list_resource_templates(
        &self,
        _r: Option<PaginatedRequestParams>,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let t = self.wait_started().await?.table();
        Ok(ListResourceTemplatesResult::with_all_items(
            t.templates.clone(),
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        self.wait_started().await?;
        let server = self.route_uri(&request.uri)?;
        let action = self.action(
            ActionType::ResourceRead,
            &server,
            &request.uri,
            json!({ "uri": request.uri }),
        );
        let permit = match self.authorize(&action, &cx).await {
            Err(d) => {
                return Err(deny::request_denial(
                    &d,
                    &format!("reading resource {}", request.uri),
                ));
            }
            Ok(p) => p,
        };
        let req = ClientRequest::ReadResourceRequest(ReadResourceRequest::new(request));
        match self.forward(&server, &permit, req, &cx).await? {
            ServerResult::ReadResourceResult(r) => Ok(r.into()),
            other => Err(unexpected("resources/read", other)),
        }
    }

    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.wait_started().await?;
        let server = self.route_uri(&request.uri)?;
        let action = self.action(
            ActionType::ResourceSubscribe,
            &server,
            &request.uri,
            json!({ "uri": request.uri }),
        );
        let permit = match self.authorize(&action, &cx).await {
            Err(d) => {
                return Err(deny::request_denial(
                    &d,
                    &format!("subscribing to {}", request.uri),
                ));
            }
            Ok(p) => p,
        };
        // A shared upstream is subscribed once, by the first session.
        let shared = self.shared_route(&server);
        if let Some((route, owner)) = &shared
            && !route.subscribe(owner, &request.uri)
        {
            return Ok(());
        }
        let uri = request.uri.clone();
        let req = ClientRequest::SubscribeRequest(SubscribeRequest::new(request));
        let r = self.forward(&server, &permit, req, &cx).await.map(|_| ());
        if r.is_err()
            && let Some((route, owner)) = &shared
        {
            route.unsubscribe(owner, &uri);
        }
        r
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let server = self.route_uri(&request.uri)?;
        // Giving up access is decided like subscribing (same action type) so
        // the single enforcement point still sees it.
        let action = self.action(
            ActionType::ResourceSubscribe,
            &server,
            &request.uri,
            json!({ "uri": request.uri, "unsubscribe": true }),
        );
        let permit = match self.authorize(&action, &cx).await {
            Err(d) => {
                return Err(deny::request_denial(
                    &d,
                    &format!("unsubscribing from {}", request.uri),
                ));
            }
            Ok(p) => p,
        };
        // A shared upstream stays subscribed while another session is.
        if let Some((route, owner)) = self.shared_route(&server)
            && !route.unsubscribe(&owner, &request.uri)
        {
            return Ok(());
        }
        let req = ClientRequest::UnsubscribeRequest(UnsubscribeRequest::new(request));
        self.forward(&server, &permit, req, &cx).await.map(|_| ())
    }

    async fn list_prompts(
        &self,
        _r: Option<PaginatedRequestParams>,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let t = self.wait_started().await?.table();
        Ok(ListPromptsResult::with_all_items(t.prompts.clone()))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let table = self.wait_started().await?.table();
        let Some(route) = table.prompt_routes.get(&request.name).cloned() else {
            return Err(ErrorData::invalid_params(
                format!("Unknown prompt: {}", request.name),
                None,
            ));
        };
        let args = serde_json::to_value(&request.arguments).unwrap_or(Value::Null);
        let action = self.action(ActionType::PromptGet, &route.server, &route.name, args);
        let permit = match self.authorize(&action, &cx).await {
            Err(d) => {
                return Err(deny::request_denial(
                    &d,
                    &format!("getting prompt {}", request.name),
                ));
            }
            Ok(p) => p,
        };
        let mut upstream_req = request;
        upstream_req.name = route.name.clone();
        let req = ClientRequest::GetPromptRequest(GetPromptRequest::new(upstream_req));
        match self.forward(&route.server, &permit, req, &cx).await? {
            ServerResult::GetPromptResult(r) => Ok(r.into()),
            other => Err(unexpected("prompts/get", other)),
        }
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let table = self.wait_started().await?.table();
        let mut upstream_req = request.clone();
        let (server, target) = match &request.r#ref {
            Reference::Prompt(p) => {
                let route = table.prompt_routes.get(&p.name).cloned().ok_or_else(|| {
                    ErrorData::invalid_params(format!("Unknown prompt: {}", p.name), None)
                })?;
                if let Reference::Prompt(up) = &mut upstream_req.r#ref {
                    up.name = route.name.clone();
                }
                (route.server, route.name)
            }
            Reference::Resource(r) => {
                let server = table
                    .route_template(&r.uri)
                    .map_or_else(|| self.route_uri(&r.uri), Ok)?;
                (server, r.uri.clone())
            }
            _ => {
                return Err(ErrorData::invalid_params(
                    "unsupported completion reference type",
                    None,
                ));
            }
        };
        let args = serde_json::to_value(&request.argument).unwrap_or(Value::Null);
        let action = self.action(ActionType::Completion, &server, &target, args);
        let permit = match self.authorize(&action, &cx).await {
            Err(d) => {
                return Err(deny::request_denial(
                    &d,
                    &format!("completion for {target}"),
                ));
            }
            Ok(p) => p,
        };
        let req = ClientRequest::CompleteRequest(CompleteRequest::new(upstream_req));
        match self.forward(&server, &permit, req, &cx).await? {
            ServerResult::CompleteResult(r) => Ok(r),
            other => Err(unexpected("completion/complete", other)),
        }
    }

    /// Protocol plumbing, not a policy decision: broadcast to every upstream
    /// that declared logging.
    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let router = self.wait_started().await?;
        for up in router.upstreams.values() {
            if let Err(e) = up.send_set_level(request.clone()).await {
                tracing::warn!(server = %up.name, "logging/setLevel failed: {}", e.message);
            }
        }
        Ok(())
    }

    async fn on_roots_list_changed(&self, _cx: NotificationContext<RoleServer>) {
        if let Ok(router) = self.router() {
            for up in router.upstreams.values() {
                if let Some(c) = up.connection() {
                    let _ = c.peer.notify_roots_list_changed().await;
                }
            }
        }
    }

    async fn on_custom_request(
        &self,
        request: CustomRequest,
        _cx: RequestContext<RoleServer>,
    ) -> Result<CustomResult, ErrorData> {
        if SPEC_METHODS.contains(&request.method.as_str()) {
            tracing::warn!(method = %request.method, "refused a malformed standard request");
            return Err(ErrorData::invalid_params(
                format!(
                    "Invalid params for {}: the request does not match the MCP schema (check field names and types)",
                    request.method
                ),
                None,
            ));
        }
        // gavel cannot tell which upstream an unknown method is for, and an
        // undecided request must not reach any of them.
        Err(ErrorData::new(
            ErrorCode::METHOD_NOT_FOUND,
            format!("Method not found: {}", request.method),
            None,
        ))
    }
}
