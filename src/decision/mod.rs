//! The enforcement point: every request that can reach an upstream is decided
//! here first (see ARCHITECTURE.md, invariant 1).
//!
//! `Enforcer::decide` is the one function that decides. Forwarding code needs a
//! [`Permit`] to send anything to an upstream, and only an allowing decision
//! produces one, so a path that forgets to decide does not compile.

pub mod contract;
pub mod deny;
pub mod engine;
pub mod layers;
pub mod static_rules;

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

pub use contract::{Decision, Disclosure};

use crate::config::Config;
use static_rules::StaticRules;

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
}

/// Proof that a request was decided and allowed. Only [`Enforcer::decide`]
/// makes one; upstream senders require it.
#[derive(Debug)]
// A private field, not #[non_exhaustive]: that would still let any module of
// this crate build a Permit; this restricts it to `decision`.
#[allow(clippy::manual_non_exhaustive)]
pub struct Permit {
    pub decision: Decision,
    _private: (),
}

/// The outcome of deciding: forward with the permit, or answer with the denial.
#[derive(Debug)]
pub enum Verdict {
    Allow(Permit),
    Deny(Decision),
}

struct ServerPolicy {
    static_rules: StaticRules,
    /// Bundles configured but not loadable: everything fails closed.
    unavailable: Option<String>,
}

/// Decides every request for every server of one gavel process.
pub struct Enforcer {
    servers: HashMap<String, ServerPolicy>,
}

impl Enforcer {
    pub fn from_config(config: &Config) -> Result<Self, static_rules::StaticRuleError> {
        let mut servers = HashMap::new();
        for (name, server) in &config.servers {
            servers.insert(
                name.clone(),
                ServerPolicy {
                    static_rules: StaticRules::new(name, &server.tools)?,
                    unavailable: (!server.bundles.is_empty() || !config.policy.shared_bundles.is_empty()).then(|| {
                        tracing::error!(server = %name, "policy bundles are configured but this build has no policy engine: every request to this server is denied (policy_unavailable)");
                        format!(
                            "Server {name:?} has policy bundles configured but they cannot be loaded by this gavel build, so every request is refused. Ask the gavel administrator to fix the bundle configuration."
                        )
                    }),
                },
            );
        }
        Ok(Self { servers })
    }

    /// The enforcement function. Synchronous and allocation-light: it runs on
    /// every call, before any byte is written upstream.
    pub fn decide(&self, action: &Action) -> Verdict {
        let mut decision = match self.servers.get(&action.server) {
            // A server gavel has no policy entry for is never forwarded to.
            None => Decision::deny(
                "policy_unavailable",
                format!(
                    "gavel has no policy for server {}; check servers.toml",
                    action.server
                ),
            ),
            Some(ServerPolicy {
                unavailable: Some(why),
                ..
            }) => Decision::deny("policy_unavailable", why.clone()),
            Some(policy) => policy.static_rules.decide(action),
        };
        decision.decision_id = Some(uuid::Uuid::new_v4().to_string());
        if decision.allow {
            Verdict::Allow(Permit {
                decision,
                _private: (),
            })
        } else {
            Verdict::Deny(decision)
        }
    }

    /// Whether a tool appears in `tools/list` (static rules: denied tools are
    /// not listed).
    pub fn tool_listed(&self, server: &str, tool: &str) -> bool {
        self.servers
            .get(server)
            .is_some_and(|p| p.static_rules.tool_allowed(tool).is_ok())
    }
}
