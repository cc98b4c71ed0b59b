//! Builds the policy input (contract `schemas/input.v1.json`, printed by
//! `gavel schema input`) for one request.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::Action;
use crate::config::Identity;

/// The host session as the policy sees it, snapshotted under the session's
/// counter lock so that counts are exact even with concurrent calls.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SessionCounters {
    pub turn_count: u64,
    pub denied_count: u64,
    pub tool_calls: BTreeMap<String, BTreeMap<String, u64>>,
    pub cumulative_tokens: u64,
}

impl SessionCounters {
    /// Counts one decided `tools/call` (and only those: never protocol chatter).
    pub fn record_tool_call(&mut self, server: &str, tool: &str, allowed: bool, arg_bytes: usize) {
        self.turn_count += 1;
        if !allowed {
            self.denied_count += 1;
        }
        *self
            .tool_calls
            .entry(server.into())
            .or_default()
            .entry(tool.into())
            .or_default() += 1;
        self.add_tokens(arg_bytes);
    }

    /// Documented estimate: one token per 4 bytes of UTF-8, rounded up.
    pub fn add_tokens(&mut self, bytes: usize) {
        self.cumulative_tokens += bytes.div_ceil(4) as u64;
    }
}

#[derive(Debug, Clone, Default)]
pub struct DecisionContext {
    pub session_id: String,
    pub client: Option<(String, String)>,
    pub session_age_seconds: f64,
    pub counters: SessionCounters,
}

pub fn build(
    identity: &Identity,
    action: &Action,
    ctx: &DecisionContext,
    data_classes: &[String],
    now_rfc3339: &str,
) -> Value {
    let client = ctx
        .client
        .as_ref()
        .map(|(n, v)| json!({"name": n, "version": v}));
    json!({
        "agent": {
            "id": identity.agent.id,
            "scope": identity.agent.scope,
            "owner_team": identity.agent.owner_team,
            "client": client.unwrap_or_else(|| json!({})),
        },
        "user": {
            "id": identity.user.id,
            "groups": identity.user.groups,
            "data_classifications_authorized": identity.user.data_classifications_authorized,
        },
        "action": {
            "type": action.kind.as_str(),
            "server": action.server,
            "tool": action.tool,
            "args": action.args,
            "annotations": action.annotations,
            "annotations_trusted": action.annotations_trusted,
            "tool_digest": action.tool_digest,
            "data_classes_referenced": data_classes,
        },
        "context": {
            "session_id": ctx.session_id,
            "turn_count": ctx.counters.turn_count,
            "denied_count": ctx.counters.denied_count,
            "tool_calls": ctx.counters.tool_calls,
            "cumulative_tokens": ctx.counters.cumulative_tokens,
            "session_age_seconds": ctx.session_age_seconds,
        },
        "environment": {
            "region": identity.environment.region,
            "time": now_rfc3339,
            "is_production": identity.environment.is_production,
            "labels": identity.environment.labels,
        },
    })
}

/// One host session's policy-relevant state. Decisions of a session are taken
/// under its counter lock, so `turn_count` is exact under concurrent calls.
pub struct SessionState {
    pub id: String,
    started: std::time::Instant,
    client: std::sync::OnceLock<(String, String)>,
    counters: std::sync::Mutex<SessionCounters>,
}

impl Default for SessionState {
    fn default() -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            started: std::time::Instant::now(),
            client: Default::default(),
            counters: Default::default(),
        }
    }
}

impl SessionState {
    pub fn set_client(&self, name: String, version: String) {
        let _ = self.client.set((name, version));
    }

    /// Decides `action` with this session's context; counts it if it is a
    /// `tools/call`.
    pub fn decide(&self, enforcer: &super::Enforcer, action: &Action) -> super::Verdict {
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let ctx = DecisionContext {
            session_id: self.id.clone(),
            client: self.client.get().cloned(),
            session_age_seconds: self.started.elapsed().as_secs_f64(),
            counters: counters.clone(),
        };
        let verdict = enforcer.decide(action, &ctx);
        if action.kind == super::ActionType::ToolCall {
            let bytes = serde_json::to_vec(&action.args)
                .map(|v| v.len())
                .unwrap_or(0);
            counters.record_tool_call(
                &action.server,
                &action.tool,
                verdict.decision().allow,
                bytes,
            );
        }
        verdict
    }

    /// Counts the tokens of a tool result.
    pub fn add_result_bytes(&self, bytes: usize) {
        self.counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add_tokens(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::ActionType;

    #[test]
    fn counters_follow_the_contract() {
        let mut c = SessionCounters::default();
        c.record_tool_call("fs", "read", true, 10);
        c.record_tool_call("fs", "write", false, 0);
        c.record_tool_call("fs", "read", true, 0);
        assert_eq!(c.turn_count, 3);
        assert_eq!(c.denied_count, 1);
        assert_eq!(c.tool_calls["fs"]["read"], 2);
        assert_eq!(c.cumulative_tokens, 3);
    }

    #[test]
    fn input_has_every_contract_field() {
        let action = Action {
            kind: ActionType::ToolCall,
            server: "fs".into(),
            tool: "read".into(),
            args: json!({"path": "/x"}),
            annotations: json!({"readOnlyHint": true}),
            annotations_trusted: false,
            tool_digest: Some("sha256:00".into()),
            upstream_data_classes: vec![],
        };
        let v = build(
            &Identity::default(),
            &action,
            &DecisionContext::default(),
            &["pii".into()],
            "2026-01-01T00:00:00Z",
        );
        let schema: Value =
            serde_json::from_str(include_str!("../../schemas/input.v1.json")).unwrap();
        for (section, props) in schema["properties"].as_object().unwrap() {
            for key in props["properties"].as_object().unwrap().keys() {
                let reserved = ["consecutive_same_tool", "calls_last_minute", "budget"];
                if !reserved.contains(&key.as_str()) {
                    assert!(
                        v[section].get(key).is_some(),
                        "input.{section}.{key} missing"
                    );
                }
            }
        }
        assert_eq!(v["action"]["type"], "tool_call");
        assert_eq!(v["action"]["data_classes_referenced"], json!(["pii"]));
    }
}
