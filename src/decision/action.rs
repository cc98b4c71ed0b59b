//! The request being decided (`input.action`) and what deciding it yields:
//! a [`Verdict`], whose allowing side is the [`Permit`] every upstream send
//! requires.

use serde::Serialize;
use serde_json::Value;

use super::Decision;

/// What kind of request is being decided (`input.action.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionType {
    ToolCall,
    ResourceRead,
    ResourceSubscribe,
    PromptGet,
    Completion,
    SamplingRequest,
    ElicitationRequest,
    /// One of gavel's own agent tools (`gavel__check`, …, the
    /// `gavel://policy/…` resources), decided by the server it asks about:
    /// `tool` is the query (`check`, `limits`, `why`, `policy`).
    PolicyQuery,
    /// A server's resource list as result rules decide it (docs/policy.md,
    /// "Resource lists"): never a request that is decided or forwarded —
    /// only the `input.action` of a list's result and per-item rules, with
    /// `tool` = `resources/list`.
    ResourceList,
}

impl ActionType {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionType::ToolCall => "tool_call",
            ActionType::ResourceRead => "resource_read",
            ActionType::ResourceSubscribe => "resource_subscribe",
            ActionType::PromptGet => "prompt_get",
            ActionType::Completion => "completion",
            ActionType::SamplingRequest => "sampling_request",
            ActionType::ElicitationRequest => "elicitation_request",
            ActionType::PolicyQuery => "policy_query",
            ActionType::ResourceList => "resource_list",
        }
    }
}

/// One request as the policy sees it (`input.action`).
#[derive(Debug, Clone, Serialize)]
pub struct Action {
    #[serde(rename = "type")]
    pub kind: ActionType,
    /// Config NAME of the server.
    pub server: String,
    /// The upstream's own name: tool or prompt name, resource URI, or the
    /// method for upstream→host requests.
    pub tool: String,
    pub args: Value,
    pub annotations: Value,
    pub annotations_trusted: bool,
    pub tool_digest: Option<String>,
    /// Data classes the upstream declares in the tool's
    /// `_meta["dev.gavel/data_classes"]`: they can only add to the bundle's
    /// classification, never remove.
    #[serde(skip)]
    pub upstream_data_classes: Vec<String>,
    /// The span this request is decided in (`[telemetry]` on): set by the
    /// front from the request's `_meta` `traceparent`; the decision record
    /// carries its ids.
    #[serde(skip)]
    pub trace: Option<crate::telemetry::SpanContext>,
    /// The protocol the request came in (`input.context.protocol_version`)
    /// and, for a 2026-07-28 request, the client it names itself.
    #[serde(skip)]
    pub era: RequestEra,
}

/// Which MCP revision a request came in, as the policy sees it.
///
/// A 2026-07-28 request is self-contained: it names its version, client
/// and capabilities in its own `_meta`, and nothing is read from earlier
/// requests on the same connection (the spec's statelessness rule). So
/// such a request's `input.agent.client` is the `clientInfo` it carries
/// (`{}` when it carries none), never what an earlier request said; a
/// legacy request's is the session's `initialize` (`DecisionContext`).
/// Everything else in the input is decided exactly as for a legacy
/// request: same identity, action and counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestEra {
    /// The request's protocol version: the one its `_meta` names (2026-07-28
    /// and later), else the one negotiated at `initialize`; `None` for a
    /// request no host sent (an upstream's request to the host).
    pub protocol_version: Option<String>,
    /// `Some` for a 2026-07-28 request: the (name, version) of the
    /// `clientInfo` in its `_meta`, `None` inside when it has none.
    pub own_client: Option<Option<(String, String)>>,
    /// The verified identity of this request's own bearer token, for a
    /// 2026-07-28 request over HTTP with `[auth]`: it is decided as that
    /// token says, not as an earlier request's token said.
    pub identity: Option<std::sync::Arc<crate::config::Identity>>,
}

impl RequestEra {
    /// A legacy request of a session that negotiated `version`.
    pub fn legacy(version: Option<String>) -> Self {
        Self {
            protocol_version: version,
            own_client: None,
            identity: None,
        }
    }

    /// A 2026-07-28 (or later) request that names `version` and `client`.
    pub fn modern(version: String, client: Option<(String, String)>) -> Self {
        Self {
            protocol_version: Some(version),
            own_client: Some(client),
            identity: None,
        }
    }

    /// The client the policy sees: the request's own for a modern request,
    /// the session's for a legacy one.
    pub fn client<'a>(
        &'a self,
        session: &'a Option<(String, String)>,
    ) -> &'a Option<(String, String)> {
        match &self.own_client {
            Some(own) => own,
            None => session,
        }
    }
}

impl Action {
    /// A request to `server` for `target` (tool or prompt name, resource
    /// URI, or method) with `args`: no annotations (untrusted), no tool
    /// digest, no data classes from the upstream — the caller sets those it
    /// knows.
    pub fn new(
        kind: ActionType,
        server: impl Into<String>,
        target: impl Into<String>,
        args: Value,
    ) -> Self {
        Action {
            kind,
            server: server.into(),
            tool: target.into(),
            args,
            annotations: Value::Object(Default::default()),
            annotations_trusted: false,
            tool_digest: None,
            upstream_data_classes: Vec::new(),
            trace: None,
            era: RequestEra::default(),
        }
    }
}

/// Proof that a request was decided and allowed. Only [`Enforcer::decide`]
/// makes one; upstream senders require it.
#[derive(Debug)]
// A private field, not #[non_exhaustive]: that would still let any module of
// this crate build a Permit; `pub(super)` restricts it to `decision`.
#[allow(clippy::manual_non_exhaustive)]
pub struct Permit {
    pub decision: Decision,
    /// What the call's budget was charged (a `tools/call` under `[budget]`):
    /// given back if the call is not made, and where its result's tokens go.
    pub(super) receipt: Option<crate::decision::guard::Receipt>,
    /// The request's span (`[telemetry]` on), open until the permit is
    /// dropped: it covers the decision and the forwarded request.
    pub span: Option<crate::telemetry::ActiveSpan>,
    /// The data classes the request referenced
    /// (`input.action.data_classes_referenced`): what its answer, once the
    /// host gets it, adds to the session's `data_classes_seen`.
    pub(super) data_classes: Vec<String>,
    /// The request's path arguments as sent (`decision::paths::PATH_ARGS`):
    /// the directory a listing in its answer is relative to.
    pub(super) request_paths: Vec<String>,
    /// What deciding the request's result needs, kept only when its
    /// server's policy has a result rule (`decision::result`).
    pub(super) result: Option<Box<super::result::ResultContext>>,
    pub(super) _private: (),
}

impl Permit {
    /// The data classes the allowed request referenced.
    pub fn data_classes(&self) -> &[String] {
        &self.data_classes
    }

    /// The allowed request's path arguments, as sent.
    pub fn request_paths(&self) -> &[String] {
        &self.request_paths
    }
}

/// The outcome of deciding: forward with the permit, or answer with the denial.
#[derive(Debug)]
pub enum Verdict {
    Allow(Permit),
    Deny(Decision),
}

impl Verdict {
    /// The decision as the caller gets it: a denial, or the [`Permit`] —
    /// made only here, by [`Enforcer::decide`]'s last step — carrying what
    /// the steps after the forward need (the budget's receipt, the data
    /// classes, the result step's context, the request's paths).
    pub(super) fn of(
        action: &Action,
        engine: Option<&super::engine::PolicyEngine>,
        decision: Decision,
        receipt: Option<crate::decision::guard::Receipt>,
        data_classes: Vec<String>,
        result: Option<Box<super::result::ResultContext>>,
    ) -> Verdict {
        if !decision.allow {
            return Verdict::Deny(decision);
        }
        Verdict::Allow(Permit {
            decision,
            receipt,
            span: None,
            data_classes,
            // Only a policy that classifies paths reads them back (`seen`: a
            // listing's entries joined to the directory the request named);
            // every other call allocates nothing here.
            request_paths: if engine.is_some_and(super::engine::PolicyEngine::classifies) {
                super::paths::path_values(&action.args)
                    .into_iter()
                    .map(String::from)
                    .collect()
            } else {
                Vec::new()
            },
            result,
            _private: (),
        })
    }

    pub fn decision(&self) -> &Decision {
        match self {
            Verdict::Allow(p) => &p.decision,
            Verdict::Deny(d) => d,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ActionType::{self, *};

    /// Every action type gavel puts in `input.action.type` is one the input
    /// contract lists (the linter checks policies against that schema): a
    /// new variant fails to compile in the match below until it is added to
    /// the list, and this test until it is in the schema.
    #[test]
    fn every_action_type_is_in_the_input_schema() {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../schemas/input.v1.json")).unwrap();
        let listed = &schema["properties"]["action"]["properties"]["type"]["enum"];
        let all = [
            ToolCall,
            ResourceRead,
            ResourceSubscribe,
            PromptGet,
            Completion,
            SamplingRequest,
            ElicitationRequest,
            PolicyQuery,
            ResourceList,
        ];
        for t in all {
            match t {
                ToolCall | ResourceRead | ResourceSubscribe | PromptGet | Completion
                | SamplingRequest | ElicitationRequest | PolicyQuery | ResourceList => {}
            }
            let name = ActionType::as_str(t);
            assert!(
                listed.as_array().unwrap().iter().any(|v| v == name),
                "{name} is missing from schemas/input.v1.json's action types: {listed}"
            );
        }
    }
}
