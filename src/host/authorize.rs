//! The one gate both directions pass: a host's request to an upstream
//! (`tools/call`, `resources/read`, …) and an upstream's request to the host
//! (`sampling/createMessage`, `elicitation/create`).
//!
//! [`authorize`] decides the action with the session's context, settles any
//! human approval the decision asks for, and only then hands out the
//! [`Permit`]. Every forwarding function on either side —
//! `Upstream::send` toward a server, `HostLink::forward_request` toward the
//! host — takes that permit, so "only a decided, approved request reaches the
//! other side" is enforced by the types, not by each caller remembering to
//! decide first. There is no second path: the session handler and the
//! upstream client both call this function.

use std::sync::Arc;

use rmcp::model::ProgressToken;

use super::approval_round::{Gate, RoundApproval};
use super::link::HostLink;
use crate::decision::{Action, ActionType, Decision, Enforcer, Permit, SessionState, Verdict};
use crate::telemetry::{ActiveSpan, AttrValue};

/// Decides `action` for `session` and settles its approval step: the permit
/// to forward with, or the denial to answer. `progress`: the host's progress
/// token, if the request carried one (gavel keeps the host's request alive
/// with progress while a human decides).
pub async fn authorize(
    enforcer: &Arc<Enforcer>,
    host: &HostLink,
    session: &Arc<SessionState>,
    action: &Action,
    progress: Option<ProgressToken>,
) -> Result<Permit, Decision> {
    match authorize_round(enforcer, host, session, action, progress, None).await {
        Ok(p) => Ok(p),
        Err(Gate::Denied(d)) => Err(d),
        // Without a round to ask in, the approval step never asks in one.
        Err(Gate::Ask(_)) => unreachable!("no input round was offered"),
    }
}

/// [`authorize`] for a 2026-07-28 request that may take an input round:
/// with `round`, an approval the decision asks for is asked through one
/// (`host::approval_round`), and the gate may end in [`Gate::Ask`] — the
/// round to answer the host with, nothing forwarded.
pub async fn authorize_round(
    enforcer: &Arc<Enforcer>,
    host: &HostLink,
    session: &Arc<SessionState>,
    action: &Action,
    progress: Option<ProgressToken>,
    round: Option<&RoundApproval<'_>>,
) -> Result<Permit, Gate> {
    // Opened before deciding, so the span covers the decision (and, held by
    // the permit, the forwarded request until its answer).
    let span = match (&action.trace, enforcer.tracer()) {
        (Some(cx), Some(tracer)) => Some(tracer.begin(cx.clone(), span_name(action))),
        _ => None,
    };
    let verdict = session.decide_async(enforcer, action).await;
    trace_verdict(session, action, &verdict);
    let mut permit = match verdict {
        Verdict::Deny(d) => {
            describe(span.as_ref(), action, &d);
            return Err(Gate::Denied(d));
        }
        Verdict::Allow(p) => p,
    };
    let request = super::approval::Gated {
        enforcer,
        host,
        session,
        action,
        progress,
        round,
    };
    match super::approval::settle(&request, &permit).await {
        Ok(()) => {}
        Err(Gate::Denied(d)) => {
            describe(span.as_ref(), action, &d);
            return Err(Gate::Denied(d));
        }
        Err(ask) => return Err(ask),
    }
    describe(span.as_ref(), action, &permit.decision);
    permit.span = span;
    Ok(permit)
}

/// `gavel.decide <method>`: the MCP method decided.
fn span_name(action: &Action) -> String {
    let method = match action.kind {
        ActionType::ToolCall => "tools/call",
        ActionType::ResourceRead => "resources/read",
        ActionType::ResourceSubscribe if action.args.get("unsubscribe").is_some() => {
            "resources/unsubscribe"
        }
        ActionType::ResourceSubscribe => "resources/subscribe",
        ActionType::PromptGet => "prompts/get",
        ActionType::Completion => "completion/complete",
        ActionType::SamplingRequest => "sampling/createMessage",
        ActionType::ElicitationRequest => "elicitation/create",
        ActionType::PolicyQuery => "tools/call",
        ActionType::ResourceList => "resources/list",
    };
    format!("gavel.decide {method}")
}

/// The decision as span attributes (docs/decision-log.md, "Tracing"). Never
/// arguments, resource URIs or identity: a trace backend is usually read by
/// more people than the decision log, and `gavel.decision_id` leads from
/// the span to the full record.
fn describe(span: Option<&ActiveSpan>, action: &Action, d: &Decision) {
    let Some(span) = span else { return };
    let method = span_name(action);
    span.set(
        "mcp.method.name",
        AttrValue::Str(method.trim_start_matches("gavel.decide ").into()),
    );
    span.set("gavel.action", AttrValue::Str(action.kind.as_str().into()));
    span.set("gavel.server", AttrValue::Str(action.server.clone()));
    // Names the upstream lists (tools, prompts), not data the agent chose.
    if matches!(action.kind, ActionType::ToolCall | ActionType::PromptGet) {
        span.set("gavel.tool", AttrValue::Str(action.tool.clone()));
    }
    span.set("gavel.decision.allow", AttrValue::Bool(d.allow));
    span.set(
        "gavel.decision.reasons",
        AttrValue::StrList(d.reasons.clone()),
    );
    span.set(
        "gavel.decision.matched_rules",
        AttrValue::StrList(d.matched_rules.clone()),
    );
    span.set(
        "gavel.decision.audit_required",
        AttrValue::Bool(d.audit_required),
    );
    if let Some(id) = &d.decision_id {
        span.set("gavel.decision_id", AttrValue::Str(id.clone()));
    }
    if let Some(v) = &d.policy_version {
        span.set("gavel.policy_version", AttrValue::Str(v.clone()));
    }
}

/// gavel's own diagnostic line for a decision. The decision log is the audit
/// record; this line shows denials at info and allows only at debug (they are
/// the hot path).
fn trace_verdict(session: &SessionState, action: &Action, verdict: &Verdict) {
    let d = verdict.decision();
    let id = d.decision_id.as_deref().unwrap_or("-");
    if d.allow {
        tracing::debug!(
            target: "gavel::decision",
            session = %session.id, server = %action.server, tool = %action.tool,
            action = action.kind.as_str(), decision_id = id,
            "allowed"
        );
    } else {
        tracing::info!(
            target: "gavel::decision",
            session = %session.id, server = %action.server, tool = %action.tool,
            action = action.kind.as_str(), reasons = ?d.reasons, decision_id = id,
            "denied"
        );
    }
}
