//! Resource lists decided by result rules (docs/policy.md, "Resource
//! lists"): what a session is shown of a server's `resources/list` is an
//! answer of that server too, so the result rules of its policy decide it
//! like any other — the list is the output (`kind` `resource_list`,
//! `resources`), a `filter` of items `content` runs the layer's
//! `result_item` rule once per listed resource (`input.item.kind`
//! `resource`, with its uri, path, data classes), a `deny` or any failure
//! leaves all of the server's resources out (fail closed), patterns
//! redact what the list says of a resource (never its URI).
//!
//! The step itself is the result step's ([`Step::run`]): the same bounds
//! (1000 items, `eval_timeout` per 100), the same strict answer, the same
//! record — with `result_of` null, for there is no request (the router
//! lists from its own fetch). The input is what `visible` sees of a
//! session (identity, session id; counters zero: listing is not a call),
//! with `input.action` = `{type: resource_list, tool: resources/list}`.
//!
//! Cost: a server whose policy has no result rule costs a lookup
//! ([`Enforcer::resource_list_policy`] answers `None`); one that has is
//! decided once per (upstream list, policy) by the router's cache, not at
//! every `resources/list`.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};

use super::super::active::{Active, Policy};
use super::super::record::Unrecorded;
use super::{OutputKind, Step, record, verdict_decision};
use crate::decision::{Action, ActionType, Decision, DecisionContext, Enforcer};

/// `input.action.tool` of a list decision, and its tool in records and
/// metrics.
pub const LIST_TOOL: &str = "resources/list";

/// The policy that decides a server's resource list for one session: one
/// with a result rule. Two are the same when the same activation built
/// them — the router's cache key.
#[derive(Clone)]
pub struct ListPolicy {
    active: Arc<Active>,
}

impl std::fmt::Debug for ListPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListPolicy").finish_non_exhaustive()
    }
}

impl ListPolicy {
    /// Whether `other` is this same activated policy.
    pub fn same(&self, other: &ListPolicy) -> bool {
        Arc::ptr_eq(&self.active, &other.active)
    }
}

/// What a session is shown of a server's resources.
#[derive(Debug)]
pub enum ListVerdict {
    /// Every result rule passed the list as it is.
    Unchanged,
    /// The list as the host sees it (MCP `Resource` objects), filtered or
    /// redacted.
    Shown(Vec<Value>),
    /// None of the server's resources are listed: a result rule denied the
    /// list, or it could not be decided (the decision says why; logged).
    Hidden(Box<Decision>),
}

impl Enforcer {
    /// The policy that decides `server`'s resource list for the session of
    /// `ctx`; `None` (list it as it is) unless a layer has a result rule.
    pub fn resource_list_policy(&self, server: &str, ctx: &DecisionContext) -> Option<ListPolicy> {
        let sp = self.servers.get(server)?;
        let pick = self.pick_persona(server, ctx);
        if pick.refusal().is_some() {
            return None;
        }
        let active = self.active_for(sp, server, &pick);
        match &active.policy {
            Policy::Rego(engine) if engine.has_result_rules() => Some(ListPolicy { active }),
            _ => None,
        }
    }

    /// Decides `resources` (the server's list, as MCP `Resource` objects)
    /// with `policy`'s result rules, writes the result record and counts
    /// it. Fail closed: a denial or a failure hides the whole list.
    pub fn decide_resource_list(
        &self,
        policy: &ListPolicy,
        server: &str,
        ctx: &DecisionContext,
        resources: Vec<Value>,
    ) -> ListVerdict {
        let Policy::Rego(engine) = &policy.active.policy else {
            return ListVerdict::Unchanged;
        };
        let start = Instant::now();
        let sp = self.servers.get(server);
        let mut action = Action::new(ActionType::ResourceList, server, LIST_TOOL, json!({}));
        action.annotations_trusted = sp.is_some_and(|s| s.annotations_trusted);
        let base =
            super::super::input::build(self.identity(ctx), &action, ctx, &[], &self.now_rfc3339());
        let kind = OutputKind::ResourceList;
        let mut result = json!({ "resources": resources });
        let step = Step {
            engine,
            input: &base,
            root: sp.and_then(|s| s.path_root.as_ref()),
            kind,
        };
        let outcome = step.run(&mut result);
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        let mut decision = verdict_decision(
            &outcome,
            engine,
            &id,
            (LIST_TOOL, OutputKind::ResourceList),
            None,
        );
        if !decision.allow {
            decision.remediation = Some(hidden_text(server, &outcome));
        }
        let rec = record::ResultRecord::new(&step, &id, None, &result, &outcome, start);
        let unrecorded = self.settle(rec, &mut decision, (server, LIST_TOOL), Unrecorded::List);
        if unrecorded || !decision.allow {
            tracing::warn!(
                server = %server,
                decision_id = %id,
                "none of the server's resources are listed: {}",
                decision.remediation.as_deref().unwrap_or("")
            );
            return ListVerdict::Hidden(Box::new(decision));
        }
        match (outcome.label(), result) {
            ("pass", _) => ListVerdict::Unchanged,
            (_, Value::Object(mut o)) => match o.remove("resources") {
                Some(Value::Array(shown)) => ListVerdict::Shown(shown),
                _ => ListVerdict::Shown(vec![]),
            },
            _ => ListVerdict::Shown(vec![]),
        }
    }
}

/// Why a server's resources are not listed, for the record and the log.
fn hidden_text(server: &str, o: &super::Outcome) -> String {
    match &o.error {
        Some((_, text)) => format!(
            "gavel could not decide on server {server:?}'s resource list ({text}), so none of its resources are listed; fix the result rule (docs/policy.md, \"Resource lists\")"
        ),
        None => format!(
            "a result rule denied server {server:?}'s resource list ({}), so none of its resources are listed",
            o.reasons.join(", ")
        ),
    }
}

#[cfg(test)]
#[path = "list_tests.rs"]
mod tests;
