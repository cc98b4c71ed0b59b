//! Human approval of a request the policy allows only with one
//! (`require_approval` in the decision).
//!
//! One mechanism for every decided request: [`settle`] runs after every
//! allowing decision — `tools/call`, `resources/read`, `resources/subscribe`
//! and `unsubscribe`, `prompts/get`, `completion/complete` (front/session.rs)
//! and the upstream→host `sampling/createMessage` and `elicitation/create`
//! (upstream/client.rs) — so no request that carries `require_approval` is
//! forwarded without it.
//!
//! gavel asks the user through the host's elicitation (what, why, which
//! rule) and forwards only on an explicit accept with `approve: true`;
//! decline, cancel, `approve: false`, a failed request or the timeout
//! (`[policy] approval_timeout`) deny with a remediation. A host that did
//! not declare elicitation cannot ask: the request is denied with "approval
//! required" and the appeal path. While the user thinks, gavel sends
//! progress on the host's own progressToken, so the host's request timeout
//! (reset by progress in most clients) does not fire.
//!
//! Every step — remembered, requested, approved, declined, cancelled,
//! timeout, failed, unavailable — is a record in the decision log with the
//! decision id it belongs to; the step that settles the approval is marked
//! `final` and carries the effective `result` (docs/decision-log.md). A
//! refused approval is a denial everywhere: the session's `denied_count`,
//! the metrics, and that final record. Its budget charge is given back (the
//! call was not made); its rate-limit charge is not, so an agent that keeps
//! asking for a call the user keeps refusing is throttled like any other.

use std::time::Duration;

use rmcp::model::{
    ElicitRequestParams, ElicitationAction, ElicitationSchema, ProgressNotificationParam,
    ProgressToken,
};
use serde_json::{Value, json};

use super::host::HostLink;
use crate::decision::codes::ReasonCode;
use crate::decision::contract::Approval;
use crate::decision::{Action, ActionType, Decision, Enforcer, Permit, SessionState};
use crate::state::approval::{Subject, args_digest};

/// How often progress is sent while waiting for the user.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

fn denied(d: &Decision, code: ReasonCode, remediation: String) -> Decision {
    Decision {
        allow: false,
        reasons: vec![code.into()],
        remediation: Some(remediation),
        appeal_path: d.appeal_path.clone(),
        policy_version: d.policy_version.clone(),
        matched_rules: d.matched_rules.clone(),
        decision_id: d.decision_id.clone(),
        require_approval: d.require_approval.clone(),
        ..Default::default()
    }
}

/// Writes one approval step. `settled`: the effective result, on the step
/// that settles the approval (absent on `requested`).
fn log_step(
    enforcer: &Enforcer,
    d: &Decision,
    action: &Action,
    a: &Approval,
    step: &str,
    settled: Option<&Decision>,
) -> Result<(), String> {
    tracing::info!(server = %action.server, tool = %action.tool, decision_id = d.decision_id.as_deref().unwrap_or("-"), step, "approval");
    let Some(log) = enforcer.decision_log() else {
        return Ok(());
    };
    let mut record = json!({
        "decision_id": d.decision_id,
        "timestamp": enforcer.now_rfc3339(),
        "path": "gavel/approval",
        "approval": {
            "step": step,
            "final": settled.is_some(),
            "type": action.kind.as_str(),
            "server": action.server,
            "tool": action.tool,
            "args_sha256": args_digest(&action.args),
            "reason": a.reason,
            "scope": a.scope.as_deref().unwrap_or("call"),
            "remember_seconds": a.remember_seconds,
        },
        "labels": Value::Object(enforcer.labels()),
    });
    if let Some(result) = settled {
        record["result"] = serde_json::to_value(result).unwrap_or(Value::Null);
    }
    log.write(&record).map_err(|e| {
        tracing::error!("approval step not logged: {e}");
        format!("the approval step {step:?} could not be recorded: {e}")
    })
}

/// The approval step of an allowed request: `Ok` when it may be forwarded,
/// the denial to answer otherwise (the request is then not made: its budget
/// charge is given back and it counts as denied).
pub async fn settle(
    enforcer: &Enforcer,
    host: &HostLink,
    session: &SessionState,
    action: &Action,
    permit: &Permit,
    progress: Option<ProgressToken>,
) -> Result<(), Decision> {
    let d = &permit.decision;
    let Some(a) = &d.require_approval else {
        return Ok(());
    };
    let identity = session.identity.get().cloned();
    let identity = identity
        .as_deref()
        .unwrap_or(enforcer.configured_identity());
    let subject = Subject {
        user: &identity.user.id,
        agent: &identity.agent.id,
        kind: action.kind.as_str(),
        server: &action.server,
        tool: &action.tool,
        args: &action.args,
    };
    let (step, mut outcome) = ask(enforcer, host, &subject, action, d, a, progress).await;
    // No record, no effect: an approval whose final step cannot be recorded
    // is not carried out (unless `[log] on_write_error = "allow"`).
    if let Err(why) = log_step(
        enforcer,
        d,
        action,
        a,
        step,
        Some(outcome.as_ref().err().unwrap_or(d)),
    ) && outcome.is_ok()
    {
        let mut denial = d.clone();
        if enforcer.refuse_unrecorded(&mut denial, why) {
            outcome = Err(denial);
        }
    }
    let effective = outcome.as_ref().err().unwrap_or(d);
    enforcer.count_outcome(action, effective);
    if outcome.is_err() {
        enforcer.refund(permit);
        if action.kind == ActionType::ToolCall {
            session.count_denied();
        }
    }
    outcome
}

/// Asks (or finds a remembered answer): the step that settled it and the
/// outcome.
async fn ask(
    enforcer: &Enforcer,
    host: &HostLink,
    subject: &Subject<'_>,
    action: &Action,
    d: &Decision,
    a: &Approval,
    progress: Option<ProgressToken>,
) -> (&'static str, Result<(), Decision>) {
    let approvals = enforcer.approvals();
    if approvals.covers(a, subject) {
        return ("remembered", Ok(()));
    }
    let peer = match host.peer() {
        Some(p) if host.capabilities().elicitation.is_some() => p.clone(),
        _ => {
            return (
                "unavailable",
                Err(denied(
                    d,
                    ReasonCode::ApprovalRequired,
                    format!(
                        "This {} needs a human's approval ({}), and this host cannot ask for one (it does not support elicitation). Ask a person to approve it{}, or use a host that supports elicitation.",
                        what(action),
                        a.reason,
                        d.appeal_path
                            .as_deref()
                            .map(|p| format!(" at {p}"))
                            .unwrap_or_default()
                    ),
                )),
            );
        }
    };
    let message = question(action, d, a);
    let schema = match ElicitationSchema::builder()
        .required_bool("approve")
        .build()
    {
        Ok(s) => s,
        Err(e) => {
            return (
                "failed",
                Err(denied(
                    d,
                    ReasonCode::ApprovalFailed,
                    format!("gavel could not build the approval request ({e})."),
                )),
            );
        }
    };
    // A question whose asking cannot be recorded is not asked.
    if let Err(why) = log_step(enforcer, d, action, a, "requested", None) {
        let mut denial = d.clone();
        if enforcer.refuse_unrecorded(&mut denial, why) {
            return ("unrecorded", Err(denial));
        }
    }
    let request = peer.create_elicitation(ElicitRequestParams::FormElicitationParams {
        meta: None,
        message,
        requested_schema: schema,
    });
    let ticker = async {
        let Some(token) = progress else {
            return std::future::pending::<()>().await;
        };
        let mut n = 0.0;
        loop {
            let mut p = ProgressNotificationParam::new(token.clone(), n);
            p.message = Some("waiting for a human to approve the call".into());
            let _ = peer.notify_progress(p).await;
            n += 1.0;
            tokio::time::sleep(PROGRESS_EVERY).await;
        }
    };
    let timeout = enforcer.approval_timeout();
    let answer = tokio::select! {
        r = tokio::time::timeout(timeout, request) => r,
        _ = ticker => unreachable!("the ticker never ends"),
    };
    let (step, code, text) = match answer {
        Err(_) => (
            "timeout",
            ReasonCode::ApprovalTimeout,
            format!(
                "No one approved the {} within {timeout:?}; ask again when someone can answer.",
                what(action)
            ),
        ),
        Ok(Err(e)) => (
            "failed",
            ReasonCode::ApprovalFailed,
            format!(
                "The approval request failed ({e}); the {} was not made.",
                what(action)
            ),
        ),
        Ok(Ok(r)) => match r.action {
            ElicitationAction::Accept
                if r.content.as_ref().and_then(|c| c.get("approve"))
                    == Some(&Value::Bool(true)) =>
            {
                enforcer.approvals().remember(a, subject);
                return ("approved", Ok(()));
            }
            ElicitationAction::Accept | ElicitationAction::Decline => (
                "declined",
                ReasonCode::ApprovalDeclined,
                format!(
                    "The user declined this {}. Do not retry it or reach the same result another way; ask the user what to do instead.",
                    what(action)
                ),
            ),
            // Cancel, and any answer a later protocol adds: not an accept.
            _ => (
                "cancelled",
                ReasonCode::ApprovalCancelled,
                format!(
                    "The user dismissed the approval request; the {} was not made. Ask the user before trying again.",
                    what(action)
                ),
            ),
        },
    };
    (step, Err(denied(d, code, text)))
}

/// The question the user is asked. Everything in it but gavel's own words
/// came from the agent (tool, URI, prompt name, arguments), the upstream
/// (the request of a sampling or elicitation) or the policy (reason, rules):
/// each is escaped ([`crate::text::escape_controls`]), so none can break the
/// question's lines — a forged "Rule:" or "Decision:" line, an "approve"
/// hint on a line of its own — or reorder what the user reads (bidi
/// controls). The arguments are cut at 500 bytes (after escaping).
fn question(action: &Action, d: &Decision, a: &Approval) -> String {
    use crate::text::escape_controls as esc;
    let mut args = esc(&action.args.to_string()).into_owned();
    if args.len() > 500 {
        let cut = (0..=500)
            .rev()
            .find(|i| args.is_char_boundary(*i))
            .unwrap_or(0);
        args.truncate(cut);
        args.push('…');
    }
    format!(
        "Approve this {}?\n\n{}: {} on server {}\nArguments: {args}\nWhy approval is needed: {}\nRule: {}\nDecision: {}",
        what(action),
        target_label(action),
        esc(&action.tool),
        esc(&action.server),
        esc(&a.reason),
        esc(&d.matched_rules.join(", ")),
        esc(d.decision_id.as_deref().unwrap_or("-")),
    )
}

/// What is being approved, in the user's words.
fn what(action: &Action) -> &'static str {
    match action.kind {
        ActionType::ToolCall => "call",
        ActionType::ResourceRead => "resource read",
        ActionType::ResourceSubscribe => "resource subscription",
        ActionType::PromptGet => "prompt request",
        ActionType::Completion => "completion request",
        ActionType::SamplingRequest => "sampling request from the server",
        ActionType::ElicitationRequest => "question from the server",
    }
}

/// The label of `action.tool` in the question.
fn target_label(action: &Action) -> &'static str {
    match action.kind {
        ActionType::ToolCall => "Tool",
        ActionType::ResourceRead | ActionType::ResourceSubscribe => "Resource",
        ActionType::PromptGet => "Prompt",
        ActionType::Completion => "Completion for",
        ActionType::SamplingRequest | ActionType::ElicitationRequest => "Request",
    }
}
