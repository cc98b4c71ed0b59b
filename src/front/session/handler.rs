//! The MCP methods a host session answers (`ServerHandler`): each one that
//! can reach an upstream resolves its route, is decided, and only then is
//! forwarded with its [`Permit`](crate::decision::Permit); the rest are
//! answered by gavel itself from the router's table.
// Legacy-era features (sampling, roots, logging, resources/subscribe) are deprecated in MCP
// 2026-07-28 (SEP-2577) but are exactly what the 2024-11-05 … 2025-11-25 era gavel serves.
#![allow(deprecated)]

use std::borrow::Cow;

use rmcp::model::*;
use rmcp::service::{NotificationContext, RequestContext, RoleServer};
use rmcp::{ErrorData, ServerHandler};
use serde_json::{Value, json};

use super::Session;
use crate::decision::result::OutputKind;
use crate::decision::{Action, ActionType, deny};
use crate::gateway::Gateway;
use crate::host::approval_round::Gate;
use crate::router::ToolRoute;
use crate::sync::Recover;
use crate::upstream::rounds::Outcome;

/// Spec method names that must never be forwarded as custom requests: rmcp
/// routes a malformed standard request (e.g. `tools/call` with a numeric name)
/// to `on_custom_request`, which would otherwise bypass the decision. Named
/// by rmcp's method constants, so the list follows rmcp's model.
const SPEC_METHODS: &[&str] = &[
    InitializeResultMethod::VALUE,
    PingRequestMethod::VALUE,
    DiscoverRequestMethod::VALUE,
    CallToolRequestMethod::VALUE,
    ListToolsRequestMethod::VALUE,
    ListResourcesRequestMethod::VALUE,
    ReadResourceRequestMethod::VALUE,
    ListResourceTemplatesRequestMethod::VALUE,
    SubscribeRequestMethod::VALUE,
    UnsubscribeRequestMethod::VALUE,
    ListPromptsRequestMethod::VALUE,
    GetPromptRequestMethod::VALUE,
    CompleteRequestMethod::VALUE,
    SetLevelRequestMethod::VALUE,
    SubscriptionsListenRequestMethod::VALUE,
    GetTaskMethod::VALUE,
    UpdateTaskMethod::VALUE,
    CancelTaskMethod::VALUE,
    // The 2025-11-25 tasks methods rmcp 3.11 has no constant for (its model
    // is the SEP-2663 tasks extension: get, update, cancel).
    "tasks/list",
    "tasks/result",
    ListSkillsRequestMethod::VALUE,
    GetSkillRequestMethod::VALUE,
    ReadResourceDirectoryRequestMethod::VALUE,
    CreateMessageRequestMethod::VALUE,
    ElicitationCreateRequestMethod::VALUE,
    ListRootsRequestMethod::VALUE,
];

fn unexpected(method: &str, r: ServerResult) -> ErrorData {
    ErrorData::internal_error(
        format!(
            "upstream answered {method} with an unexpected result: {}",
            serde_json::to_string(&r).unwrap_or_default()
        ),
        None,
    )
}

/// The steps of `tools/call`.
impl Session {
    /// The route of a tool by the name the host sees, waiting for servers
    /// still starting when it is not (yet) in the table.
    async fn tool_route(&self, name: &str) -> Result<ToolRoute, ErrorData> {
        let mut route = self.router()?.table().tool_routes.get(name).cloned();
        if route.is_none() {
            // The tool's server may still be starting.
            route = self
                .wait_started()
                .await?
                .table()
                .tool_routes
                .get(name)
                .cloned();
        }
        if let Some(route) = route {
            return Ok(route);
        }
        // A tool of a server that is not connected is not listed; the host
        // is told why its server cannot be reached, not that the tool does
        // not exist.
        if let Some(up) = self.router()?.unready_owner(name)
            && let Err(why) = up.ready().await
        {
            return Err(why.into());
        }
        // A server that takes calls to tools it does not list
        // (`unlisted_tools = "forward"`): routed, then decided as any call.
        if let Some(route) = self.router()?.unlisted_route(name) {
            return Ok(route);
        }
        Err(ErrorData::invalid_params(
            format!("Unknown tool: {name}"),
            None,
        ))
    }

    /// A host may report the tokens its conversation used so far
    /// (`_meta["dev.gavel/cumulative_tokens"]`); it only ever raises the
    /// session's count.
    fn raise_reported_tokens(&self, cx: &RequestContext<RoleServer>) {
        if let Some(n) = cx
            .meta
            .0
            .0
            .get("dev.gavel/cumulative_tokens")
            .and_then(crate::decision::input::SessionCounters::reported_tokens)
        {
            self.inner.state.raise_tokens(n);
        }
    }

    /// The action a `tools/call` asks for: the upstream's own tool name, the
    /// arguments, and what the upstream declared about the tool
    /// (annotations, definition digest, data classes).
    pub(super) fn tool_action(&self, route: &ToolRoute, request: &CallToolRequestParams) -> Action {
        let args = request
            .arguments
            .clone()
            .map(Value::Object)
            .unwrap_or_else(|| json!({}));
        let mut action = self.action(ActionType::ToolCall, &route.server, &route.name, args);
        action.annotations = route.annotations.clone();
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
        action
    }
}

/// An upstream's answer to `tools/call` as the host gets it; a result rmcp
/// did not type (a custom result) is parsed as a tool result or refused.
fn tool_result(server: &str, result: ServerResult) -> Result<CallToolResponse, ErrorData> {
    match result {
        ServerResult::CallToolResult(r) => Ok(r.into()),
        ServerResult::InputRequiredResult(_) => Err(ErrorData::internal_error(
            format!(
                "server {server:?} asked for more input (an MCP 2026-07-28 input_required round) where gavel relays none (only between a 2026-07-28 host and a 2026-07-28 server); the call was not completed"
            ),
            None,
        )),
        ServerResult::CustomResult(CustomResult(v)) => serde_json::from_value::<CallToolResult>(v.clone())
            .map(Into::into)
            .map_err(|e| ErrorData::internal_error(
                format!("server {server:?} returned a tools/call result gavel cannot represent ({e}): {v}"),
                None,
            )),
        other => Err(unexpected("tools/call", other)),
    }
}

/// gavel's own server description: what `initialize` and `server/discover`
/// answer, from the config alone (no session needed to say it).
pub fn server_config(gw: &Gateway) -> ServerConfig {
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
    let names: Vec<&str> = gw
        .config
        .enabled_servers()
        .map(|(n, _)| n.as_str())
        .collect();
    ServerConfig::new(caps)
        .with_server_info(crate::front::era::gavel_info())
        .with_protocol_version(ProtocolVersion::V_2025_11_25)
        .with_instructions(format!(
            "gavel policy proxy in front of: {}. Every call is checked against policy; \
             a denied call returns an explanation — do not try to work around it.",
            names.join(", ")
        ))
}

impl ServerHandler for Session {
    fn get_info(&self) -> ServerConfig {
        server_config(&self.inner.gw)
    }

    /// The `initialize` era and 2026-07-28 (`front::era`).
    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        crate::front::era::supported_versions()
    }

    /// gavel's own identity and capabilities; starts nothing (a host may
    /// probe and then `initialize`, `front::era`).
    async fn discover(&self, _cx: RequestContext<RoleServer>) -> Result<DiscoverResult, ErrorData> {
        Ok(crate::front::era::discover_result(
            self.get_info().instructions,
        ))
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
        let _starting = self.inner.starting.lock().recover();
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
        Box::pin(self.list_tools_forwarded(_r, _cx)).await
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        Box::pin(self.call_tool_forwarded(request, cx)).await
    }

    async fn list_resources(
        &self,
        _r: Option<PaginatedRequestParams>,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Box::pin(self.list_resources_forwarded(_r, _cx)).await
    }

    async fn list_resource_templates(
        &self,
        _r: Option<PaginatedRequestParams>,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Box::pin(self.list_resource_templates_forwarded(_r, _cx)).await
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        Box::pin(self.read_resource_forwarded(request, cx)).await
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        Box::pin(self.subscribe_forwarded(request, cx)).await
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        Box::pin(self.unsubscribe_forwarded(request, cx)).await
    }

    async fn list_prompts(
        &self,
        _r: Option<PaginatedRequestParams>,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        Box::pin(self.list_prompts_forwarded(_r, _cx)).await
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        Box::pin(self.get_prompt_forwarded(request, cx)).await
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        Box::pin(self.complete_forwarded(request, cx)).await
    }

    /// Protocol plumbing, not a policy decision: broadcast to every upstream
    /// that declared logging.
    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let router = self.wait_started().await?;
        self.inner.host.set_log_level(request.level);
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

// The bodies of the methods above that wait for an upstream (run boxed).
#[path = "handler_forwarded.rs"]
mod forwarded;
