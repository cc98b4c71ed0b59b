//! The methods that forward to an upstream or wait for one, each run on
//! the heap (`Box::pin` in its `ServerHandler` method): rmcp spawns a task
//! per request whose future holds the handler's — as large as the largest
//! of all the methods' state machines — and copies it several times on
//! every spawn. Boxed, the task holds a pointer (issue 17: ~135k fewer
//! instructions a forwarded call, `wrap` and deployed alike, measured
//! with `bench/instructions.sh`).

use super::*;
use crate::decision::result::RoundGate;

/// What an input round of a 2026-07-28 request needs of its permit, taken
/// before the permit goes with the request (a parked call keeps it on its
/// own task): nothing for a legacy request, which takes no round here.
fn round_gate(
    permit: &crate::decision::Permit,
    round: Option<&crate::front::session::host_round::HostRound>,
) -> RoundGate {
    round.map(|_| permit.round_gate()).unwrap_or_default()
}

impl Session {
    pub(super) async fn call_tool_forwarded(
        &self,
        mut request: CallToolRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if let Some(answer) = self.agent_call(&request, &cx).await {
            return answer;
        }
        let route = self.tool_route(&request.name).await?;
        // A modern HTTP call's Mcp-Param-* headers against the schema of the
        // tool it routes to (rmcp cannot: it has no route); refused before
        // anything is decided, as any malformed request.
        crate::front::era::params::check_call(&route.tool, request.arguments.as_ref(), &cx)?;
        self.raise_reported_tokens(&cx);
        let mut action = self.tool_action(&route, &request);
        self.describe(&mut action, &cx);
        let fields = (request.request_state.take(), request.input_responses.take());
        let round = self.host_round(&action, &cx, fields).await?;
        // Unlike the other methods, a denied call is answered as a tool
        // result (`isError`), which agents show the model: it reads why.
        let permit = match self.authorize_round(&action, &cx, round.as_ref()).await {
            Ok(p) => p,
            Err(Gate::Ask(r)) => return Ok(r.into()),
            Err(Gate::Denied(d)) => {
                let has_schema = route.tool.output_schema.is_some();
                return Ok(deny::tool_denial(&d, &request.name, has_schema).into());
            }
        };
        let host_name = request.name.clone();
        let mut upstream_req = request;
        upstream_req.name = route.name.clone().into();
        let req = ClientRequest::CallToolRequest(CallToolRequest::new(upstream_req));
        let gate = round_gate(&permit, round.as_ref());
        let has_schema = route.tool.output_schema.is_some();
        // An input round (upstream text) passes the result step as a
        // result would; refused, the host gets the denial instead.
        let asked = |r, gate: &RoundGate| match self.round_step(gate, r, round.as_ref(), true) {
            Ok(r) => CallToolResponse::InputRequired(r),
            Err(d) => {
                let what = format!(
                    "the question server {:?} asked during the call to tool {:?}",
                    route.server, route.name
                );
                crate::decision::deny::tool_error(&d, &what, has_schema).into()
            }
        };
        // A retry of an input round the policy denies is answered as the
        // first call's denial would be.
        let (permit, result) = match self
            .forward_call(&route.server, permit, &action, req, &cx, round.as_ref())
            .await?
        {
            Outcome::Done(p, r) => (p, r),
            Outcome::Input(r) => return Ok(asked(r, &gate)),
            Outcome::Denied(d) => {
                return Ok(deny::tool_denial(&d, &host_name, has_schema).into());
            }
        };
        // The gate held the result context for a round; the result takes it.
        drop(gate);
        // A relayed input round is the host's to answer, not a result.
        let result = match super::super::relay::as_round(result) {
            Ok(r) => return Ok(asked(r, &permit.round_gate())),
            Err(r) => r,
        };
        self.tool_answer(&route, permit, result)
    }

    /// The answer of a forwarded `tools/call`: its size counted (bytes,
    /// then the budget's result tokens), the result step, and what the
    /// host is shown of it remembered (`dataflow`). Apart from
    /// [`Self::call_tool_forwarded`] (route, decide, forward, rounds)
    /// because nothing here waits: the upstream has answered.
    fn tool_answer(
        &self,
        route: &ToolRoute,
        mut permit: crate::decision::Permit,
        result: ServerResult,
    ) -> Result<CallToolResponse, ErrorData> {
        let bytes = super::super::result::result_bytes(&result);
        self.inner.state.add_result_bytes(bytes);
        // Written to the shared table when its lock is free, else owed to
        // the next charge (`decision::guard`): the reply never waits.
        self.inner.gw.enforcer.charge_result_tokens(&permit, bytes);
        let (result, json) =
            match self.result_policy_seen(&mut permit, OutputKind::ToolResult, result) {
                Ok(r) => r,
                Err(d) => {
                    let has_schema = route.tool.output_schema.is_some();
                    return Ok(super::super::result::tool_result_denial(
                        &d,
                        &route.name,
                        has_schema,
                    )
                    .into());
                }
            };
        // Only what the host gets is seen: after the result policy.
        self.saw_json(&route.server, &route.name, &permit, &result, json);
        tool_result(&route.server, result)
    }

    pub(super) async fn read_resource_forwarded(
        &self,
        mut request: ReadResourceRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        if let Some(answer) = self.agent_read(&request.uri, &cx).await {
            return answer.map(Into::into);
        }
        self.wait_started().await?;
        let server = self.route_uri(&request.uri)?;
        let mut action = self.action(
            ActionType::ResourceRead,
            &server,
            &request.uri,
            json!({ "uri": request.uri }),
        );
        self.describe(&mut action, &cx);
        let what = format!("reading resource {}", request.uri);
        let fields = (request.request_state.take(), request.input_responses.take());
        let round = self.host_round(&action, &cx, fields).await?;
        let permit = match self.authorize_round(&action, &cx, round.as_ref()).await {
            Ok(p) => p,
            Err(Gate::Ask(r)) => return Ok(r.into()),
            Err(Gate::Denied(d)) => return Err(deny::request_denial(&d, &what)),
        };
        let uri = request.uri.clone();
        let req = ClientRequest::ReadResourceRequest(ReadResourceRequest::new(request));
        let gate = round_gate(&permit, round.as_ref());
        let asked = |r, gate: &RoundGate| {
            self.round_step(gate, r, round.as_ref(), false)
                .map(ReadResourceResponse::InputRequired)
                .map_err(|d| {
                    let what = format!(
                        "the question server {server:?} asked while reading resource {uri}"
                    );
                    deny::request_denial(&d, &what)
                })
        };
        let (mut permit, result) = match self
            .forward_call(&server, permit, &action, req, &cx, round.as_ref())
            .await?
        {
            Outcome::Done(p, r) => (p, r),
            Outcome::Input(r) => return asked(r, &gate),
            Outcome::Denied(d) => return Err(deny::request_denial(&d, &what)),
        };
        drop(gate);
        let result = match super::super::relay::as_round(result) {
            Ok(r) => return asked(r, &permit.round_gate()),
            Err(r) => r,
        };
        let result = self
            .result_policy(&mut permit, OutputKind::ResourceContents, result)
            .map_err(|d| {
                deny::request_denial(&d, &format!("the result of reading resource {uri}"))
            })?;
        if matches!(result, ServerResult::ReadResourceResult(_)) {
            self.saw(&server, &uri, &permit, &result);
        }
        match result {
            ServerResult::ReadResourceResult(r) => Ok(r.into()),
            other => Err(unexpected("resources/read", other)),
        }
    }

    pub(super) async fn get_prompt_forwarded(
        &self,
        mut request: GetPromptRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        self.serves_upstreams()?;
        let table = self.wait_started().await?.table();
        let Some(route) = table.prompt_routes.get(&request.name).cloned() else {
            return Err(ErrorData::invalid_params(
                format!("Unknown prompt: {}", request.name),
                None,
            ));
        };
        let args = serde_json::to_value(&request.arguments).unwrap_or(Value::Null);
        let mut action = self.action(ActionType::PromptGet, &route.server, &route.name, args);
        self.describe(&mut action, &cx);
        let what = format!("getting prompt {}", request.name);
        let fields = (request.request_state.take(), request.input_responses.take());
        let round = self.host_round(&action, &cx, fields).await?;
        let permit = match self.authorize_round(&action, &cx, round.as_ref()).await {
            Ok(p) => p,
            Err(Gate::Ask(r)) => return Ok(r.into()),
            Err(Gate::Denied(d)) => return Err(deny::request_denial(&d, &what)),
        };
        let mut upstream_req = request;
        upstream_req.name = route.name.clone();
        let req = ClientRequest::GetPromptRequest(GetPromptRequest::new(upstream_req));
        let gate = round_gate(&permit, round.as_ref());
        let asked = |r, gate: &RoundGate| {
            self.round_step(gate, r, round.as_ref(), false)
                .map(GetPromptResponse::InputRequired)
                .map_err(|d| {
                    let what = format!(
                        "the question server {:?} asked while getting prompt {:?}",
                        route.server, route.name
                    );
                    deny::request_denial(&d, &what)
                })
        };
        let (mut permit, result) = match self
            .forward_call(&route.server, permit, &action, req, &cx, round.as_ref())
            .await?
        {
            Outcome::Done(p, r) => (p, r),
            Outcome::Input(r) => return asked(r, &gate),
            Outcome::Denied(d) => return Err(deny::request_denial(&d, &what)),
        };
        drop(gate);
        let result = match super::super::relay::as_round(result) {
            Ok(r) => return asked(r, &permit.round_gate()),
            Err(r) => r,
        };
        let result = self
            .result_policy(&mut permit, OutputKind::PromptMessages, result)
            .map_err(|d| {
                deny::request_denial(&d, &format!("the result of getting prompt {}", route.name))
            })?;
        match result {
            ServerResult::GetPromptResult(r) => Ok(r.into()),
            other => Err(unexpected("prompts/get", other)),
        }
    }

    pub(super) async fn complete_forwarded(
        &self,
        request: CompleteRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        self.serves_upstreams()?;
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
        let mut permit = self
            .authorize(action, &cx)
            .await
            .map_err(|d| deny::request_denial(&d, &format!("completion for {target}")))?;
        let req = ClientRequest::CompleteRequest(CompleteRequest::new(upstream_req));
        let result = self.forward(&server, &permit, req, &cx).await?;
        let result = self
            .result_policy(&mut permit, OutputKind::Completion, result)
            .map_err(|d| {
                deny::request_denial(&d, &format!("the result of completion for {target}"))
            })?;
        match result {
            ServerResult::CompleteResult(r) => Ok(r),
            other => Err(unexpected("completion/complete", other)),
        }
    }

    pub(super) async fn subscribe_forwarded(
        &self,
        request: SubscribeRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.serves_upstreams()?;
        self.wait_started().await?;
        let server = self.route_uri(&request.uri)?;
        let action = self.action(
            ActionType::ResourceSubscribe,
            &server,
            &request.uri,
            json!({ "uri": request.uri }),
        );
        let permit = self
            .authorize(action, &cx)
            .await
            .map_err(|d| deny::request_denial(&d, &format!("subscribing to {}", request.uri)))?;
        // A shared upstream is subscribed once, by the first session.
        let shared = self.shared_route(&server);
        if let Some((route, owner)) = &shared
            && !route.subscribe(owner, &request.uri)
        {
            return Ok(());
        }
        let uri = request.uri.clone();
        // A legacy upstream is sent it; a 2026-07-28 one's listen carries it.
        let r = self.subscribe_upstream(&server, &uri, &permit, &cx).await;
        if r.is_err()
            && let Some((route, owner)) = &shared
        {
            route.unsubscribe(owner, &uri);
        }
        r
    }

    pub(super) async fn unsubscribe_forwarded(
        &self,
        request: UnsubscribeRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.serves_upstreams()?;
        let server = self.route_uri(&request.uri)?;
        // Giving up access is decided like subscribing (same action type) so
        // the single enforcement point still sees it.
        let action = self.action(
            ActionType::ResourceSubscribe,
            &server,
            &request.uri,
            json!({ "uri": request.uri, "unsubscribe": true }),
        );
        let permit = self.authorize(action, &cx).await.map_err(|d| {
            deny::request_denial(&d, &format!("unsubscribing from {}", request.uri))
        })?;
        // A shared upstream stays subscribed while another session is.
        if let Some((route, owner)) = self.shared_route(&server)
            && !route.unsubscribe(&owner, &request.uri)
        {
            return Ok(());
        }
        self.unsubscribe_upstream(&server, &request.uri, &permit, &cx)
            .await
    }

    pub(super) async fn list_tools_forwarded(
        &self,
        _r: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let t = self.listed(crate::router::TOOLS, &cx).await?;
        Ok(ListToolsResult::with_all_items(
            self.with_agent_tools(&t.tools),
        ))
    }

    pub(super) async fn list_resources_forwarded(
        &self,
        _r: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let t = self.listed(crate::router::RESOURCES, &cx).await?;
        let mut all = self.upstream_items(&t.resources);
        all.extend(self.agent_resources().await?);
        Ok(ListResourcesResult::with_all_items(all))
    }

    pub(super) async fn list_resource_templates_forwarded(
        &self,
        _r: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let t = self.listed(crate::router::RESOURCES, &cx).await?;
        Ok(ListResourceTemplatesResult::with_all_items(
            self.upstream_items(&t.templates),
        ))
    }

    pub(super) async fn list_prompts_forwarded(
        &self,
        _r: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let t = self.listed(crate::router::PROMPTS, &cx).await?;
        Ok(ListPromptsResult::with_all_items(
            self.upstream_items(&t.prompts),
        ))
    }
}

impl Session {
    /// The route table a list request of `kind` is answered from, once
    /// the servers have started. A legacy host, whose session is its own,
    /// then knows that list, and a change it already showed is not
    /// announced to it again (`Router::answered`). Not so a 2026-07-28
    /// request: its session is its principal's, shared by every client of
    /// that principal, and each listen open on it must hear every change —
    /// the client that listed may not be the one listening — so its list
    /// marks nothing (an extra announcement is harmless, a missed one is
    /// not).
    async fn listed(
        &self,
        kind: usize,
        cx: &RequestContext<RoleServer>,
    ) -> Result<std::sync::Arc<crate::router::RouteTable>, ErrorData> {
        let router = self.listing().await?;
        let t = router.table();
        if crate::front::era::modern_version(&cx.meta).is_none() {
            router.answered(kind, &t);
        }
        Ok(t)
    }
}
