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

use super::link::HostLink;
use crate::decision::{Action, Decision, Enforcer, Permit, SessionState, Verdict};

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
    let verdict = session.decide_async(enforcer, action).await;
    trace_verdict(session, action, &verdict);
    let permit = match verdict {
        Verdict::Deny(d) => return Err(d),
        Verdict::Allow(p) => p,
    };
    let request = super::approval::Gated {
        enforcer,
        host,
        session,
        action,
        progress,
    };
    super::approval::settle(&request, &permit).await?;
    Ok(permit)
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
