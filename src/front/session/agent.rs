//! gavel's own agent tools (`[agent_tools]`, `gavel policy-server`): an
//! agent asks the policy it works under, through MCP. `gavel__check`
//! ("would this call be allowed?", by the enforcer's own steps with their
//! effects off: [`crate::decision::Enforcer::query`]), `gavel__limits` (this
//! session's counters and the caller's headroom) and `gavel__why` (one of
//! this session's decisions explained). The policy resources are in
//! `agent_resources`.
//!
//! Every agent tool call is itself decided first, like any request: an
//! action of type `policy_query` for the server it asks about (`tool` the
//! query: `check`, `limits`, `why`, `policy`), so a bundle can refuse it
//! (docs/policy.md, "Agent tools"). None reveals more than a real call
//! would: a tool `tools/list` does not show is an unknown tool, a withheld
//! disclosure stays withheld, and only this session's state is shown.

use std::collections::VecDeque;

use rmcp::ErrorData;
use rmcp::model::*;
use rmcp::service::{RequestContext, RoleServer};
use serde_json::{Value, json};

use super::Session;
use crate::config::AgentToolsMode;
use crate::decision::{ActionType, Decision, Disclosure, deny};
use crate::router::reserved::TOOL_PREFIX;
use crate::sync::Recover;

pub(super) const CHECK: &str = "gavel__check";
pub(super) const LIMITS: &str = "gavel__limits";
pub(super) const WHY: &str = "gavel__why";

/// How many of its decision ids a session keeps for `gavel__why`.
const GIVEN_MAX: usize = 256;

/// The decisions a session was given: id, server, whether the policy
/// withheld its details. Bounded ([`GIVEN_MAX`], oldest dropped).
#[derive(Default)]
pub(super) struct Given(VecDeque<(String, String, bool)>);

impl Given {
    pub(super) fn keep(&mut self, d: &Decision, server: &str) {
        let Some(id) = &d.decision_id else { return };
        if self.0.len() == GIVEN_MAX {
            self.0.pop_front();
        }
        let withheld = d.disclosure == Disclosure::Withhold;
        self.0.push_back((id.clone(), server.to_string(), withheld));
    }

    fn find(&self, id: &str) -> Option<(String, bool)> {
        self.0
            .iter()
            .rev()
            .find(|(i, _, _)| i == id)
            .map(|(_, s, w)| (s.clone(), *w))
    }
}

/// The agent tools as `tools/list` shows them.
pub(super) fn tool_defs() -> Vec<Tool> {
    let schema = |v: Value| match v {
        Value::Object(o) => std::sync::Arc::new(o),
        _ => Default::default(),
    };
    vec![
        Tool::new(
            CHECK,
            "Would this call be allowed? The full policy decision for calling `tool` with \
             `arguments` now, as you: allow or deny, reasons, remediation, appeal path, whether \
             a human must approve. Nothing is called, charged or asked; the real call may still \
             differ if limits are spent or the policy changes meanwhile.",
            schema(json!({
                "type": "object",
                "properties": {
                    "tool": {"type": "string", "description": "The tool's name as tools/list shows it."},
                    "arguments": {"type": "object", "description": "The arguments you would call it with."}
                },
                "required": ["tool"]
            })),
        ),
        Tool::new(
            LIMITS,
            "This session's counters (calls, denials, tokens) and your remaining rate-limit and \
             budget headroom, per server. Give `tool` for the limits of that tool.",
            schema(json!({
                "type": "object",
                "properties": {"tool": {"type": "string", "description": "A tool's name as tools/list shows it (optional)."}}
            })),
        ),
        Tool::new(
            WHY,
            "Why one of this session's decisions came out as it did (its decision id, from a \
             denial or gavel__check), in plain words you can relay to the user.",
            schema(json!({
                "type": "object",
                "properties": {"decision_id": {"type": "string"}},
                "required": ["decision_id"]
            })),
        ),
    ]
}

/// A tool result of gavel's own: `text` for the model, `data` structured.
fn answer(text: String, data: Value, is_error: bool) -> CallToolResponse {
    let mut r = if is_error {
        CallToolResult::error(vec![ContentBlock::text(text)])
    } else {
        CallToolResult::success(vec![ContentBlock::text(text)])
    };
    r.structured_content = Some(data);
    r.into()
}

fn string_arg<'a>(request: &'a CallToolRequestParams, key: &str) -> Option<&'a str> {
    request.arguments.as_ref()?.get(key)?.as_str()
}

impl Session {
    /// Answers a `tools/call` of an agent tool; None when the name is not
    /// one (or the agent tools are off): the caller routes it upstream.
    pub(super) async fn agent_call(
        &self,
        request: &CallToolRequestParams,
        cx: &RequestContext<RoleServer>,
    ) -> Option<Result<CallToolResponse, ErrorData>> {
        let mode = self.inner.gw.config.agent_tools;
        if !mode.enabled() {
            return None;
        }
        let name = request.name.as_ref();
        Some(match name {
            CHECK => self.check(request, cx).await,
            LIMITS => self.limits(request, cx).await,
            WHY => self.why(request, cx).await,
            _ if crate::router::reserved::is_reserved_tool(name)
                || mode == AgentToolsMode::Only =>
            {
                Err(ErrorData::invalid_params(
                    format!("Unknown tool: {name}"),
                    None,
                ))
            }
            _ => return None,
        })
    }

    /// `tools/list`: the upstreams' tools, and the agent tools when on
    /// (alone under `gavel policy-server`).
    pub(super) fn with_agent_tools(&self, upstream: &[Tool]) -> Vec<Tool> {
        let mut all = self.upstream_items(upstream);
        if self.inner.gw.config.agent_tools.enabled() {
            all.extend(tool_defs());
        }
        all
    }

    /// An upstream list as this session shows it: empty under `gavel
    /// policy-server`, which serves the agent tools alone.
    pub(super) fn upstream_items<T: Clone>(&self, items: &[T]) -> Vec<T> {
        if self.inner.gw.config.agent_tools == AgentToolsMode::Only {
            return vec![];
        }
        items.to_vec()
    }

    /// Refuses a request meant for an upstream under `gavel
    /// policy-server` (it serves the agent tools alone): -32601, as a
    /// method this server does not offer.
    pub(super) fn serves_upstreams(&self) -> Result<(), ErrorData> {
        if self.inner.gw.config.agent_tools == AgentToolsMode::Only {
            return Err(ErrorData::new(
                ErrorCode::METHOD_NOT_FOUND,
                "gavel policy-server serves gavel's agent tools only; this request is for an upstream server",
                None,
            ));
        }
        Ok(())
    }

    /// Decides the agent tool call itself (`policy_query`, `tool` the
    /// query): the denial, if the policy refuses it. Nothing is forwarded:
    /// an allowing permit ends here.
    async fn gate(
        &self,
        server: &str,
        query: &str,
        args: Value,
        cx: &RequestContext<RoleServer>,
    ) -> Result<(), Decision> {
        let action = self.action(ActionType::PolicyQuery, server, query, args);
        self.authorize(action, cx).await.map(drop)
    }

    /// `gavel__check`: the decision a call of `tool` with `arguments` would
    /// get now. A tool `tools/list` does not show (hidden by `visible` or
    /// the static rules, or unknown) is answered exactly as an unknown tool.
    async fn check(
        &self,
        request: &CallToolRequestParams,
        cx: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(name) = string_arg(request, "tool") else {
            return Err(ErrorData::invalid_params(
                format!("{CHECK} needs \"tool\": the name of a tool as tools/list shows it"),
                None,
            ));
        };
        let arguments = match request.arguments.as_ref().and_then(|a| a.get("arguments")) {
            None | Some(Value::Null) => serde_json::Map::new(),
            Some(Value::Object(o)) => o.clone(),
            Some(_) => {
                return Err(ErrorData::invalid_params(
                    format!("{CHECK}: \"arguments\" must be an object"),
                    None,
                ));
            }
        };
        let table = self.listing().await?.table();
        let route = table
            .tools
            .iter()
            .any(|t| t.name == name)
            .then(|| table.tool_routes.get(name).cloned())
            .flatten()
            .ok_or_else(|| ErrorData::invalid_params(format!("Unknown tool: {name}"), None))?;
        let gate_args = json!({"tool": route.name, "arguments": arguments});
        if let Err(d) = self.gate(&route.server, "check", gate_args, cx).await {
            return Ok(refused(&d, "check"));
        }
        let mut call = CallToolRequestParams::new(name.to_string());
        call.arguments = Some(arguments);
        let action = self.tool_action(&route, &call);
        let p = self
            .inner
            .state
            .query_async(&self.inner.gw.enforcer, &action, "check")
            .await
            .map_err(|e| ErrorData::internal_error(e, None))?;
        let d = &p.decision;
        let verdict = match (d.allow, d.require_approval.is_some()) {
            (true, false) => "allowed",
            (true, true) => "allowed once a human approves it",
            (false, _) => "denied",
        };
        let mut text = format!(
            "A call to tool {name:?} with these arguments would be {verdict} now (query {}; nothing was called, charged or asked).",
            p.query_id
        );
        if !d.allow {
            text.push('\n');
            text.push_str(&deny::denial_text(d, &format!("the call to tool {name:?}")));
        }
        let data = json!({
            "tool": name,
            "would": if d.allow { "allow" } else { "deny" },
            "query_id": p.query_id,
            "decision": deny::visible_decision(d),
        });
        Ok(answer(text, data, false))
    }

    /// `gavel__limits`: per server this session can see (and whose policy
    /// allows the query), the session's calls to it and each limit's
    /// headroom for the tools it called (or `tool`); the budget once.
    async fn limits(
        &self,
        request: &CallToolRequestParams,
        cx: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let table = self.listing().await?.table();
        let only = match string_arg(request, "tool") {
            Some(name) => Some(
                table
                    .tools
                    .iter()
                    .any(|t| t.name == name)
                    .then(|| table.tool_routes.get(name).cloned())
                    .flatten()
                    .ok_or_else(|| {
                        ErrorData::invalid_params(format!("Unknown tool: {name}"), None)
                    })?,
            ),
            None => None,
        };
        let ctx = self.inner.state.context();
        let mut servers = serde_json::Map::new();
        let mut any_allowed = false;
        for server in self.visible_servers(&table) {
            if only.as_ref().is_some_and(|r| r.server != server) {
                continue;
            }
            if let Err(d) = self.gate(&server, "limits", json!({}), cx).await {
                let d = deny::visible_decision(&d);
                servers.insert(
                    server,
                    json!({"withheld": "the policy refused this query", "decision": d}),
                );
                continue;
            }
            any_allowed = true;
            let only_tool = only.as_ref().map(|r| r.name.as_str());
            let per_tool = self.tool_headroom(&ctx, &server, only_tool).await;
            servers.insert(server, json!({"tools": per_tool}));
        }
        let budget = if any_allowed {
            let (e, c) = (self.inner.gw.enforcer.clone(), ctx.clone());
            tokio::task::spawn_blocking(move || e.budget_for(&c))
                .await
                .unwrap_or(None)
        } else {
            None
        };
        let session = any_allowed.then(|| {
            json!({
                "turn_count": ctx.counters.turn_count,
                "denied_count": ctx.counters.denied_count,
                "cumulative_tokens": ctx.counters.cumulative_tokens,
                "calls_last_minute": ctx.counters.calls_last_minute,
            })
        });
        let data = json!({"session": session, "servers": servers, "budget": budget});
        let text = serde_json::to_string_pretty(&data).unwrap_or_default();
        Ok(answer(text, data, false))
    }

    /// Per tool of `server` this session called (or `only`): its calls and
    /// each rate limit's headroom, read off the event loop.
    async fn tool_headroom(
        &self,
        ctx: &crate::decision::DecisionContext,
        server: &str,
        only: Option<&str>,
    ) -> serde_json::Map<String, Value> {
        let calls = ctx
            .counters
            .tool_calls
            .get(server)
            .cloned()
            .unwrap_or_default();
        let tools: Vec<String> = match only {
            Some(t) => vec![t.to_string()],
            None => calls.keys().cloned().collect(),
        };
        let mut per_tool = serde_json::Map::new();
        let Ok(router) = self.router() else {
            return per_tool;
        };
        for tool in tools {
            let e = self.inner.gw.enforcer.clone();
            let (c, s, t) = (ctx.clone(), server.to_string(), tool.clone());
            let h = tokio::task::spawn_blocking(move || e.headroom(&s, &t, &c))
                .await
                .unwrap_or_else(|e| json!({"error": e.to_string()}));
            per_tool.insert(
                router.exposed_name(server, &tool),
                json!({"calls": calls.get(&tool).copied().unwrap_or(0), "rate_limits": h}),
            );
        }
        per_tool
    }

    /// `gavel__why`: one of this session's own decisions explained. Any
    /// other id (another session's, a made-up one, one this session was
    /// given too long ago) gets the same answer: unknown.
    async fn why(
        &self,
        request: &CallToolRequestParams,
        cx: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(id) = string_arg(request, "decision_id") else {
            return Err(ErrorData::invalid_params(
                format!("{WHY} needs \"decision_id\""),
                None,
            ));
        };
        let found = self.inner.given.lock().recover().find(id);
        let Some((server, withheld)) = found else {
            return Ok(answer(
                format!(
                    "Unknown decision id {id:?}: {WHY} explains only decisions this session was given (its latest {GIVEN_MAX})."
                ),
                json!({"decision_id": id, "known": false}),
                true,
            ));
        };
        if let Err(d) = self
            .gate(&server, "why", json!({"decision_id": id}), cx)
            .await
        {
            return Ok(refused(&d, "why"));
        }
        if withheld {
            return Ok(answer(
                format!(
                    "The policy withholds the details of decision {id}; tell the user the action is not permitted."
                ),
                json!({"decision_id": id, "known": true, "disclosure": "withhold"}),
                false,
            ));
        }
        let Some(texts) = self.inner.gw.policy_texts().cloned() else {
            return Err(ErrorData::internal_error(
                "this gavel cannot explain decisions (no explainer installed)",
                None,
            ));
        };
        let (config, owned) = (self.inner.gw.config.clone(), id.to_string());
        let explained = tokio::task::spawn_blocking(move || texts.decision(&config, &owned))
            .await
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        Ok(match explained {
            Ok(text) => answer(
                text.clone(),
                json!({"decision_id": id, "known": true, "explanation": text}),
                false,
            ),
            Err(e) => answer(
                format!("Decision {id} cannot be explained now: {e}"),
                json!({"decision_id": id, "known": true, "error": e}),
                true,
            ),
        })
    }

    /// The servers this session can see: those with a tool, prompt or
    /// resource in its lists (routed but unlisted ones do not count: a
    /// persona is not told of servers it may not reach).
    pub(super) fn visible_servers(&self, table: &crate::router::RouteTable) -> Vec<String> {
        let mut out: Vec<String> = table
            .tools
            .iter()
            .filter_map(|t| {
                table
                    .tool_routes
                    .get(t.name.as_ref())
                    .map(|r| r.server.clone())
            })
            .chain(table.prompts.iter().filter_map(|p| {
                table
                    .prompt_routes
                    .get(p.name.as_str())
                    .map(|r| r.server.clone())
            }))
            .chain(
                table
                    .resources
                    .iter()
                    .filter_map(|r| table.resource_routes.get(r.uri.as_str()).cloned()),
            )
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// The answer to an agent tool call the policy refused: a denied call,
/// as any other.
fn refused(d: &Decision, query: &str) -> CallToolResponse {
    deny::tool_denial(d, &format!("{TOOL_PREFIX}{query}"), false).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_ids_are_bounded_and_remember_their_server() {
        let mut g = Given::default();
        for i in 0..GIVEN_MAX + 3 {
            let mut d = Decision::allow("t");
            d.decision_id = Some(format!("id{i}"));
            g.keep(&d, "fx");
        }
        assert_eq!(g.0.len(), GIVEN_MAX);
        assert!(g.find("id0").is_none(), "the oldest go first");
        assert_eq!(
            g.find(&format!("id{}", GIVEN_MAX + 2)),
            Some(("fx".into(), false))
        );
        let mut d = Decision::allow("t");
        g.keep(&d, "fx");
        assert_eq!(g.0.len(), GIVEN_MAX, "a decision without an id is not kept");
        d.decision_id = Some("w".into());
        d.disclosure = Disclosure::Withhold;
        g.keep(&d, "other");
        assert_eq!(g.find("w"), Some(("other".into(), true)));
    }

    #[test]
    fn the_agent_tools_are_in_the_reserved_space() {
        for t in tool_defs() {
            assert!(
                crate::router::reserved::is_reserved_tool(&t.name),
                "{}",
                t.name
            );
        }
    }
}
