//! Human approval of a call the policy allows only with one
//! (`require_approval` in the decision).
//!
//! gavel asks the user through the host's elicitation (what, why, which
//! rule) and forwards only on an explicit accept with `approve: true`;
//! decline, cancel, `approve: false`, a failed request or the timeout
//! (`[policy] approval_timeout`) deny with a remediation. A host that did
//! not declare elicitation cannot ask: the call is denied with "approval
//! required" and the appeal path. While the user thinks, gavel sends
//! progress on the host's own progressToken, so the host's request timeout
//! (reset by progress in most clients) does not fire. Every step — remembered,
//! requested, approved, declined, cancelled, timeout, unavailable — is a
//! record in the decision log with the decision id it belongs to.

use std::time::Duration;

use rmcp::model::{
    ElicitRequestParams, ElicitationAction, ElicitationSchema, ProgressNotificationParam,
    ProgressToken,
};
use serde_json::{Value, json};

use super::host::HostLink;
use crate::decision::contract::Approval;
use crate::decision::{Action, Decision};
use crate::gateway::Gateway;
use crate::state::approval::{Subject, args_digest};

/// How often progress is sent while waiting for the user.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

fn denied(d: &Decision, code: &str, remediation: String) -> Decision {
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

fn log_step(gw: &Gateway, d: &Decision, action: &Action, a: &Approval, step: &str) {
    tracing::info!(server = %action.server, tool = %action.tool, decision_id = d.decision_id.as_deref().unwrap_or("-"), step, "approval");
    let Some(log) = gw.enforcer.decision_log() else {
        return;
    };
    let record = json!({
        "decision_id": d.decision_id,
        "timestamp": humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
        "approval": {
            "step": step,
            "server": action.server,
            "tool": action.tool,
            "args_sha256": args_digest(&action.args),
            "reason": a.reason,
            "scope": a.scope.as_deref().unwrap_or("call"),
            "remember_seconds": a.remember_seconds,
        },
        "labels": {"app": "gavel", "version": env!("CARGO_PKG_VERSION")},
    });
    if let Err(e) = log.write(&record) {
        tracing::error!("approval step not logged: {e}");
    }
}

/// `Ok` when the call may go on; the denial to answer otherwise.
pub async fn approve(
    gw: &Gateway,
    host: &HostLink,
    identity: &crate::config::Identity,
    action: &Action,
    d: &Decision,
    progress: Option<ProgressToken>,
) -> Result<(), Decision> {
    let Some(a) = &d.require_approval else {
        return Ok(());
    };
    let subject = Subject {
        user: &identity.user.id,
        agent: &identity.agent.id,
        server: &action.server,
        tool: &action.tool,
        args: &action.args,
    };
    if gw.approvals.covers(a, &subject) {
        log_step(gw, d, action, a, "remembered");
        return Ok(());
    }
    let peer = match host.peer() {
        Some(p) if host.capabilities().elicitation.is_some() => p.clone(),
        _ => {
            log_step(gw, d, action, a, "unavailable");
            return Err(denied(
                d,
                "approval_required",
                format!(
                    "This call needs a human's approval ({}), and this host cannot ask for one (it does not support elicitation). Ask a person to approve it{}, or use a host that supports elicitation.",
                    a.reason,
                    d.appeal_path
                        .as_deref()
                        .map(|p| format!(" at {p}"))
                        .unwrap_or_default()
                ),
            ));
        }
    };
    let mut args = action.args.to_string();
    if args.len() > 500 {
        let cut = (0..=500)
            .rev()
            .find(|i| args.is_char_boundary(*i))
            .unwrap_or(0);
        args.truncate(cut);
        args.push('…');
    }
    let message = format!(
        "Approve this call?\n\nTool: {} on server {}\nArguments: {args}\nWhy approval is needed: {}\nRule: {}\nDecision: {}",
        action.tool,
        action.server,
        a.reason,
        d.matched_rules.join(", "),
        d.decision_id.as_deref().unwrap_or("-"),
    );
    let schema = match ElicitationSchema::builder()
        .required_bool("approve")
        .build()
    {
        Ok(s) => s,
        Err(e) => {
            return Err(denied(
                d,
                "approval_failed",
                format!("gavel could not build the approval request ({e})."),
            ));
        }
    };
    log_step(gw, d, action, a, "requested");
    let ask = peer.create_elicitation(ElicitRequestParams::FormElicitationParams {
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
    let timeout = gw.config.policy.approval_timeout;
    let answer = tokio::select! {
        r = tokio::time::timeout(timeout, ask) => r,
        _ = ticker => unreachable!("the ticker never ends"),
    };
    let (step, code, text) = match answer {
        Err(_) => (
            "timeout",
            "approval_timeout",
            format!("No one approved the call within {timeout:?}; ask again when someone can answer."),
        ),
        Ok(Err(e)) => (
            "failed",
            "approval_failed",
            format!("The approval request failed ({e}); the call was not made."),
        ),
        Ok(Ok(r)) => match r.action {
            ElicitationAction::Accept
                if r.content.as_ref().and_then(|c| c.get("approve")) == Some(&Value::Bool(true)) =>
            {
                gw.approvals.remember(a, &subject);
                log_step(gw, d, action, a, "approved");
                return Ok(());
            }
            ElicitationAction::Accept | ElicitationAction::Decline => (
                "declined",
                "approval_declined",
                "The user declined this call. Do not retry it or reach the same result another way; ask the user what to do instead.".to_string(),
            ),
            // Cancel, and any answer a later protocol adds: not an accept.
            _ => (
                "cancelled",
                "approval_cancelled",
                "The user dismissed the approval request; the call was not made. Ask the user before trying again.".to_string(),
            ),
        },
    };
    log_step(gw, d, action, a, step);
    Err(denied(d, code, text))
}
