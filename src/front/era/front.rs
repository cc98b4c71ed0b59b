//! [`EraFront`]: the MCP server a host's transport serves (stdio and HTTP
//! alike), [`Session`]'s methods with the era duties of `front::era`
//! around them. A `ServerHandler` itself — rmcp's HTTP service requires
//! one — so rmcp's envelope validation runs before every method here, and
//! each method only picks the session, delegates, and stamps the result.

// Legacy-era methods (logging, resources/subscribe, roots) are delegated
// as they are; deprecated in MCP 2026-07-28 (SEP-2577).
#![allow(deprecated)]

use std::borrow::Cow;
use std::sync::Arc;

use rmcp::model::*;
use rmcp::service::{NotificationContext, RequestContext, RoleServer, SubscriptionContext};
use rmcp::{ErrorData, ServerHandler};

use super::{gavel_info, modern_version, private_hints, stamp_meta};
use crate::front::http::listen_hold::{self, Hold};
use crate::front::http::modern::ModernSessions;
use crate::front::session::{Listened, Session, prepared_listen};
use crate::sync::Recover;

/// Methods of the `initialize` era that MCP 2026-07-28 removed: the
/// lifecycle and per-session ones, and the 2025-11-25 tasks methods the
/// SEP-2663 tasks extension dropped (rmcp 3.11 has no constant for them;
/// gavel serves no tasks in either era).
const REMOVED_IN_2026: &[&str] = &[
    InitializeResultMethod::VALUE,
    PingRequestMethod::VALUE,
    SetLevelRequestMethod::VALUE,
    SubscribeRequestMethod::VALUE,
    UnsubscribeRequestMethod::VALUE,
    "tasks/list",
    "tasks/result",
];

/// Makes the connection's session, on first use (HTTP).
pub type MakeSession = Arc<dyn Fn() -> Session + Send + Sync>;

/// The connection's session: stdio's from the start; over HTTP made on
/// first use — rmcp makes a handler for every 2026-07-28 request too, which
/// its principal's session serves, and a session made for nothing would
/// cost an allocation, a cancellation-tree node and a sweep of the front's
/// session set per request (and show in `gavel status` while it lived).
#[derive(Clone)]
struct Conn {
    cell: Arc<std::sync::OnceLock<Session>>,
    make: Option<MakeSession>,
}

impl Conn {
    fn get(&self) -> &Session {
        self.cell.get_or_init(|| {
            let make = self
                .make
                .as_ref()
                .expect("a connection without a session has a maker");
            make()
        })
    }
}

/// The session as the host's transport serves it.
#[derive(Clone)]
pub struct EraFront {
    /// The connection's session (stdio: the process's; HTTP: the legacy
    /// session rmcp made this handler for, made when first used).
    conn: Conn,
    /// What gavel says of itself comes from the config alone.
    gw: Arc<crate::gateway::Gateway>,
    /// HTTP only: where a 2026-07-28 request is served instead — the
    /// session of its principal, never one of a connection.
    modern: Option<Arc<ModernSessions>>,
    /// HTTP only: the principal of the request rmcp made this handler for
    /// (`http::modern::with_principal`); `None` when not known.
    principal: Option<crate::front::http::modern::Principal>,
    /// HTTP only, when that request is a 2026-07-28 listen: where its
    /// acknowledgement waits for the URIs it follows (`http::listen_hold`).
    hold: Option<Hold>,
}

impl EraFront {
    /// stdio: one host, one session, whichever era it speaks.
    pub fn stdio(session: Session) -> Self {
        Self {
            gw: session.gateway().clone(),
            conn: Conn {
                cell: Arc::new(session.into()),
                make: None,
            },
            modern: None,
            principal: None,
            hold: None,
        }
    }

    /// HTTP: legacy requests on the session `make` makes (when one
    /// comes), modern ones on their principal's.
    pub fn http(
        gw: Arc<crate::gateway::Gateway>,
        make: MakeSession,
        modern: Arc<ModernSessions>,
        principal: Option<crate::front::http::modern::Principal>,
        hold: Option<Hold>,
    ) -> Self {
        Self {
            gw,
            conn: Conn {
                cell: Arc::default(),
                make: Some(make),
            },
            modern: Some(modern),
            principal,
            hold,
        }
    }

    /// The connection's session (made now if it was not yet).
    pub(crate) fn session(&self) -> &Session {
        self.conn.get()
    }

    /// The session that serves the request of `cx`, and gavel's identity
    /// to stamp when it is a 2026-07-28 request. A modern request starts
    /// its session's upstreams if nothing did yet.
    fn route(
        &self,
        cx: &RequestContext<RoleServer>,
    ) -> Result<(Session, Option<Implementation>), ErrorData> {
        if modern_version(&cx.meta).is_none() {
            return Ok((self.session().clone(), None));
        }
        check_log_level(&cx.meta)?;
        let session = match &self.modern {
            Some(m) => m.session_for(cx)?,
            None => self.session().clone(),
        };
        session.serve_modern_host();
        Ok((session, Some(gavel_info())))
    }
}

/// The request's `io.modelcontextprotocol/logLevel`, when it carries one,
/// must be a level (the spec's SHOULD: -32602), not silently no level.
fn check_log_level(meta: &rmcp::model::RequestMetaObject) -> Result<(), ErrorData> {
    const KEY: &str = "io.modelcontextprotocol/logLevel";
    match meta.0.0.get(KEY) {
        Some(v) if meta.log_level().is_none() => Err(ErrorData::invalid_params(
            format!(
                "_meta {KEY} is {v}, not a log level: use one of debug, info, notice, warning, error, critical, alert, emergency (or leave it out for no log messages)"
            ),
            Some(serde_json::json!({"field": KEY})),
        )),
        _ => Ok(()),
    }
}

/// A complete result to a modern request says so: a legacy upstream's
/// answer has no `resultType`, which 2026-07-28 requires of every result
/// (the Python SDK refuses one without). rmcp takes it off again for a
/// legacy request.
fn typed(result_type: &mut Option<ResultType>, info: &Option<Implementation>) {
    if info.is_some() {
        result_type.get_or_insert(ResultType::COMPLETE);
    }
}

/// Stamps a list result (`$r`) for `$info`: identity, and private caching
/// for a modern request.
macro_rules! stamped_list {
    ($r:expr, $info:expr) => {{
        let mut r = $r;
        stamp_meta(&mut r.meta, $info.as_ref());
        typed(&mut r.result_type, &$info);
        if $info.is_some() {
            private_hints(&mut r.ttl_ms, &mut r.cache_scope);
        }
        Ok(r)
    }};
}

/// Every method's work is awaited boxed (here, or inside the session's
/// own method): rmcp spawns a task per request holding this handler's
/// future — as large as the largest of all its methods' — and copies it
/// several times per spawn. One unboxed method that grows (the MRTR and
/// listen work did) puts the copy back on every forwarded call (issue 17,
/// `bench/instructions.sh`: `wrap` 220k → 338k instructions a call).
impl ServerHandler for EraFront {
    fn get_info(&self) -> ServerConfig {
        crate::front::session::server_config(&self.gw)
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        crate::front::era::supported_versions()
    }

    /// Answered from gavel's configuration; starts nothing.
    /// gavel's own identity and capabilities: from the config, no session
    /// (a probe starts nothing, `front::era`).
    async fn discover(&self, _cx: RequestContext<RoleServer>) -> Result<DiscoverResult, ErrorData> {
        Ok(super::discover_result(
            crate::front::session::server_config(&self.gw).instructions,
        ))
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        Box::pin(self.session().initialize(request, cx)).await
    }

    async fn on_initialized(&self, cx: NotificationContext<RoleServer>) {
        Box::pin(self.session().on_initialized(cx)).await
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let (s, info) = self.route(&cx)?;
        stamped_list!(s.list_tools(request, cx).await?, info)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let (s, info) = self.route(&cx)?;
        let mut r = s.call_tool(request, cx).await?;
        match &mut r {
            CallToolResponse::Complete(c) => {
                stamp_meta(&mut c.meta, info.as_ref());
                typed(&mut c.result_type, &info);
            }
            CallToolResponse::InputRequired(i) => stamp_meta(&mut i.meta, info.as_ref()),
            // A task never reaches a host (gavel advertises no tasks, and
            // rmcp refuses one for a request that did not declare them).
            _ => {}
        }
        Ok(r)
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let (s, info) = self.route(&cx)?;
        stamped_list!(s.list_resources(request, cx).await?, info)
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let (s, info) = self.route(&cx)?;
        stamped_list!(s.list_resource_templates(request, cx).await?, info)
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let (s, info) = self.route(&cx)?;
        let mut r = s.read_resource(request, cx).await?;
        match &mut r {
            ReadResourceResponse::Complete(c) => {
                stamp_meta(&mut c.meta, info.as_ref());
                typed(&mut c.result_type, &info);
                if info.is_some() {
                    private_hints(&mut c.ttl_ms, &mut c.cache_scope);
                }
            }
            ReadResourceResponse::InputRequired(i) => stamp_meta(&mut i.meta, info.as_ref()),
            _ => {}
        }
        Ok(r)
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let (s, _) = self.route(&cx)?;
        s.subscribe(request, cx).await
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let (s, _) = self.route(&cx)?;
        s.unsubscribe(request, cx).await
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let (s, info) = self.route(&cx)?;
        stamped_list!(s.list_prompts(request, cx).await?, info)
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let (s, info) = self.route(&cx)?;
        let mut r = s.get_prompt(request, cx).await?;
        match &mut r {
            GetPromptResponse::Complete(c) => {
                stamp_meta(&mut c.meta, info.as_ref());
                typed(&mut c.result_type, &info);
            }
            GetPromptResponse::InputRequired(i) => stamp_meta(&mut i.meta, info.as_ref()),
            _ => {}
        }
        Ok(r)
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let (s, info) = self.route(&cx)?;
        let mut r = s.complete(request, cx).await?;
        stamp_meta(&mut r.meta, info.as_ref());
        typed(&mut r.result_type, &info);
        Ok(r)
    }

    /// `subscriptions/listen` (2026-07-28; rmcp refuses it on a legacy
    /// request): the list kinds asked for, and the `resourceSubscriptions`
    /// the session follows. On stdio they were subscribed before rmcp asks
    /// ([`StdioFront`], `session::listen_prepare`): exactly those are
    /// acknowledged. Over HTTP every one within bounds is, and the
    /// acknowledgement is cut down to those followed before it leaves
    /// (`http::listen_hold`). Without either (not expected), they are
    /// decided here, without the request: the session is the principal's
    /// this handler was made for; should that be unknown, no URI is
    /// acknowledged.
    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        if let Some(slot) = prepared_listen::current() {
            let prepared = slot.lock().recover();
            return Some(
                self.session()
                    .accepted_listen(requested, Listened::Prepared(prepared.as_ref())),
            );
        }
        if self.hold.is_some() {
            return Some(self.session().accepted_listen(requested, Listened::Held));
        }
        let session = match (&self.modern, &self.principal) {
            (None, _) => Some(self.session().clone()),
            (Some(m), Some(p)) => m.session_of(p.clone()).ok(),
            (Some(_), None) => None,
        };
        let Some(session) = session else {
            return Some(self.session().accepted_listen(requested, Listened::Unknown));
        };
        // A listen may be the host's first request.
        session.serve_modern_host();
        Some(session.accepted_listen(requested, Listened::Now))
    }

    /// One listen, on the session that serves its principal (stdio: the
    /// process's), with what was prepared for it before its
    /// acknowledgement (stdio) or where it reports what it follows (HTTP);
    /// a listen as a host's first request starts the upstreams whose
    /// changes it is to hear.
    async fn listen(&self, cx: SubscriptionContext) -> Result<(), ErrorData> {
        let (s, _) = self.route(cx.request_context())?;
        let prepared = prepared_listen::current().and_then(|slot| slot.lock().recover().take());
        let r = Box::pin(s.listen(cx, prepared, self.hold.clone())).await;
        // Ended before it reported: its acknowledgement names no URI.
        if let Some(hold) = &self.hold {
            listen_hold::report(hold, Vec::new());
        }
        r
    }

    /// Removed in 2026-07-28 (the level is per request): -32601 under the
    /// envelope, which rmcp does not refuse itself.
    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        if modern_version(&cx.meta).is_some() {
            return Err(ErrorData::method_not_found::<SetLevelRequestMethod>());
        }
        Box::pin(self.session().set_level(request, cx)).await
    }

    async fn on_roots_list_changed(&self, cx: NotificationContext<RoleServer>) {
        Box::pin(self.session().on_roots_list_changed(cx)).await
    }

    async fn on_custom_request(
        &self,
        request: CustomRequest,
        cx: RequestContext<RoleServer>,
    ) -> Result<CustomResult, ErrorData> {
        // A method 2026-07-28 removed is not found under its envelope,
        // whatever its params (rmcp hands it here when they do not parse).
        if modern_version(&cx.meta).is_some() && REMOVED_IN_2026.contains(&request.method.as_str())
        {
            return Err(ErrorData::new(
                ErrorCode::METHOD_NOT_FOUND,
                format!(
                    "Method not found: {} (removed in MCP 2026-07-28)",
                    request.method
                ),
                None,
            ));
        }
        // Every custom request is refused (`session::handler`): nothing to
        // start for it.
        Box::pin(self.session().on_custom_request(request, cx)).await
    }
}

/// The stdio front's service: [`EraFront`], with a 2026-07-28 listen made
/// ready before rmcp's handler acknowledges it (`session::listen_prepare`:
/// the upstream subscriptions it names are in place first). rmcp's HTTP
/// service takes a `ServerHandler` only, whose request handling cannot be
/// wrapped, so this is stdio's.
#[derive(Clone)]
pub struct StdioFront(pub EraFront);

impl StdioFront {
    /// A modern listen: prepared (cancellable by the host, whose cancel
    /// then undoes whatever was subscribed for it), then handled by rmcp
    /// with the result at hand.
    async fn listen(
        &self,
        request: ClientRequest,
        cx: RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        let ClientRequest::SubscriptionsListenRequest(listen) = &request else {
            unreachable!("only a listen comes here");
        };
        let prepared = tokio::select! {
            p = self.0.session().prepare_listen(&listen.params.notifications, &cx) => p,
            _ = cx.ct.cancelled() => {
                return Err(ErrorData::invalid_request("the listen was cancelled", None));
            }
        };
        prepared_listen::scoped(
            prepared,
            rmcp::Service::handle_request(&self.0, request, cx),
        )
        .await
    }
}

impl rmcp::Service<RoleServer> for StdioFront {
    async fn handle_request(
        &self,
        request: ClientRequest,
        cx: RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        if matches!(request, ClientRequest::SubscriptionsListenRequest(_))
            && super::modern_version(&cx.meta).is_some()
        {
            // Boxed: every other request's future stays as small as
            // EraFront's own (see the note on its `ServerHandler`).
            return Box::pin(self.listen(request, cx)).await;
        }
        rmcp::Service::handle_request(&self.0, request, cx).await
    }

    async fn handle_notification(
        &self,
        notification: ClientNotification,
        cx: NotificationContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        rmcp::Service::handle_notification(&self.0, notification, cx).await
    }

    fn get_info(&self) -> ServerConfig {
        rmcp::Service::get_info(&self.0)
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        rmcp::Service::supported_protocol_versions(&self.0)
    }
}
