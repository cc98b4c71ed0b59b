//! Human approval of a request the policy allows only with one
//! (`require_approval` in the decision).
//!
//! One mechanism for every decided request: [`settle`] runs after every
//! allowing decision — `tools/call`, `resources/read`, `resources/subscribe`
//! and `unsubscribe`, `prompts/get`, `completion/complete` (`front/session/handler.rs`)
//! and the upstream→host `sampling/createMessage` and `elicitation/create`
//! (upstream/client.rs) — so no request that carries `require_approval` is
//! forwarded without it.
//!
//! gavel asks the user through the host's elicitation (what, why, which
//! rule) and forwards only on an explicit accept with `approve: true` — a
//! 2026-07-28 host, which cannot be sent a request, is asked through an
//! input round instead (`approval_round`: the same question as the
//! answer to its request, the answer on its retry);
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

use rmcp::ServiceError;
use rmcp::model::{
    ElicitRequestParams, ElicitResult, ElicitationAction, ElicitationSchema,
    ProgressNotificationParam, ProgressToken,
};
use serde_json::Value;

use super::approval_round::{self, Gate, RoundApproval};
use super::link::HostLink;
use crate::decision::codes::ReasonCode;
use crate::decision::contract::Approval;
use crate::decision::remembered::{Subject, args_digest};
use crate::decision::{Action, ActionType, Decision, Enforcer, Permit, SessionState};

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
/// One approval being settled: the decision that asked for it, the action
/// it is for, and whom to ask. Every step of it is logged through
/// [`Asking::log_step`].
struct Asking<'a> {
    request: &'a Gated<'a>,
    decision: &'a Decision,
    approval: &'a Approval,
}

/// What settled an approval (the step logged last) and its outcome.
type Settled = (&'static str, Result<(), Decision>);

/// Asking ends settled, or — a 2026-07-28 request — with the round that
/// asks (its `requested` step logged).
type Asked = Result<Settled, rmcp::model::InputRequiredResult>;

impl Asking<'_> {
    /// Logs one approval step: `settled` is the effective result, on the
    /// final step only.
    fn log_step(&self, step: &str, settled: Option<&Decision>) -> Result<(), String> {
        let (enforcer, d, action, a) = (
            self.request.enforcer,
            self.decision,
            self.request.action,
            self.approval,
        );
        tracing::info!(server = %action.server, tool = %action.tool, decision_id = d.decision_id.as_deref().unwrap_or("-"), step, "approval");
        let Some(log) = enforcer.decision_log() else {
            return Ok(());
        };
        let now = enforcer.now_rfc3339();
        let record = crate::audit::record::ApprovalStep {
            decision_id: d.decision_id.as_deref(),
            timestamp: &now,
            step,
            kind: action.kind.as_str(),
            server: &action.server,
            tool: &action.tool,
            args_sha256: args_digest(&action.args),
            reason: &a.reason,
            scope: a.scope.as_deref().unwrap_or("call"),
            remember_seconds: a.remember_seconds,
            labels: Value::Object(self.labels()),
            settled: settled.map(|result| serde_json::to_value(result).unwrap_or(Value::Null)),
        };
        record.write(log).map_err(|e| {
            tracing::error!("approval step not logged: {e}");
            format!("the approval step {step:?} could not be recorded: {e}")
        })
    }

    /// The step's labels: the process's, and the session's persona (as on
    /// the decision it settles, so a report counts it for that persona).
    fn labels(&self) -> serde_json::Map<String, Value> {
        let enforcer = self.request.enforcer;
        let mut l = enforcer.labels();
        let identity = self.request.session.identity.get().map(|i| i.as_ref());
        if let Some(p) = enforcer.persona_of(identity) {
            l.insert("persona".into(), Value::String(p.to_string()));
        }
        l
    }

    /// Asks (or finds a remembered answer): the step that settled it and
    /// the outcome, or the round that asks.
    async fn ask(&self, subject: &Subject<'_>) -> Asked {
        let (enforcer, d, a) = (self.request.enforcer, self.decision, self.approval);
        if enforcer.approvals().covers(a, subject) {
            return Ok(("remembered", Ok(())));
        }
        if let Some(round) = self.request.round {
            return self.ask_in_round(round, subject);
        }
        let peer = match self.request.host.peer() {
            Some(p) if self.request.host.capabilities().elicitation.is_some() => p.clone(),
            _ => return Ok(("unavailable", Err(self.host_cannot_ask()))),
        };
        let schema = match ElicitationSchema::builder()
            .required_bool("approve")
            .build()
        {
            Ok(s) => s,
            Err(e) => {
                let why = format!("gavel could not build the approval request ({e}).");
                return Ok(("failed", Err(denied(d, ReasonCode::ApprovalFailed, why))));
            }
        };
        // A question whose asking cannot be recorded is not asked.
        if let Some(refused) = self.log_requested() {
            return Ok(refused);
        }
        let request = peer.create_elicitation(ElicitRequestParams::FormElicitationParams {
            meta: None,
            message: question(self.request.action, d, a),
            requested_schema: schema,
        });
        // Progress every few seconds while a person thinks, so the host's
        // request timeout (reset by progress) does not cut the wait short.
        let ticker = async {
            let Some(token) = self.request.progress.clone() else {
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
            r = tokio::time::timeout(timeout, request) => r.map_err(|_| timeout),
            _ = ticker => unreachable!("the ticker never ends"),
        };
        Ok(self.settle_answer(subject, answer))
    }

    /// Logs the `requested` step: `Some` when it cannot be recorded and
    /// the question must not be asked (the denial that settles it).
    fn log_requested(&self) -> Option<Settled> {
        let why = self.log_step("requested", None).err()?;
        let mut denial = self.decision.clone();
        self.request
            .enforcer
            .refuse_unrecorded(&mut denial, why)
            .then_some(("unrecorded", Err(denial)))
    }

    /// A 2026-07-28 request: the retry of this call's round continues it
    /// (already approved), the retry of an approval round is settled by
    /// its answer, and a request that can be asked is answered with the
    /// round that asks. Only this request's capabilities count.
    fn ask_in_round(&self, round: &RoundApproval<'_>, subject: &Subject<'_>) -> Asked {
        let d = self.decision;
        if round.continuing {
            return Ok(("continued", Ok(())));
        }
        if let Some(answer) = &round.answer {
            return Ok(match approval_round::answer(answer) {
                Ok(r) => self.settle_answer(subject, Ok(Ok(r))),
                Err(why) => (
                    "failed",
                    Err(denied(
                        d,
                        ReasonCode::ApprovalFailed,
                        format!("{why}; the {} was not made.", what(self.request.action)),
                    )),
                ),
            });
        }
        if let Some(why) = &round.unasked {
            let message = format!(
                "This {} needs a human's approval ({}), and gavel could not put the question to the host: {why}.",
                what(self.request.action),
                self.approval.reason
            );
            return Ok((
                "unavailable",
                Err(denied(d, ReasonCode::ApprovalRequired, message)),
            ));
        }
        if !round.can_ask {
            return Ok(("unavailable", Err(self.host_cannot_ask())));
        }
        let message = question(self.request.action, d, self.approval);
        let asking = match approval_round::round(round, message, d.decision_id.as_deref()) {
            Ok(r) => r,
            Err(e) => {
                let why = format!("gavel could not build the approval request ({e}).");
                return Ok(("failed", Err(denied(d, ReasonCode::ApprovalFailed, why))));
            }
        };
        if let Some(refused) = self.log_requested() {
            return Ok(refused);
        }
        Err(asking)
    }

    /// The denial when the host cannot ask (no elicitation).
    fn host_cannot_ask(&self) -> Decision {
        let (d, a) = (self.decision, self.approval);
        // A 2026-07-28 host is asked through an input round of the request
        // itself, when the request declares elicitation and can take one.
        let why = match (self.request.round, self.request.host.is_modern()) {
            (Some(_), _) => {
                "this request did not declare the elicitation capability (form mode), which gavel asks through"
            }
            (None, true) => {
                "it speaks MCP 2026-07-28, where gavel asks only through an input round, which this kind of request cannot carry"
            }
            (None, false) => "it does not support elicitation",
        };
        denied(
            d,
            ReasonCode::ApprovalRequired,
            format!(
                "This {} needs a human's approval ({}), and this host cannot ask for one ({why}). Ask a person to approve it{}, or use a host that supports elicitation.",
                what(self.request.action),
                a.reason,
                d.appeal_path
                    .as_deref()
                    .map(|p| format!(" at {p}"))
                    .unwrap_or_default()
            ),
        )
    }

    /// What the user's answer (or its absence after `timeout`) settles.
    fn settle_answer(
        &self,
        subject: &Subject<'_>,
        answer: Result<Result<ElicitResult, ServiceError>, Duration>,
    ) -> Settled {
        let what = what(self.request.action);
        let (step, code, text) = match answer {
            Err(timeout) => (
                "timeout",
                ReasonCode::ApprovalTimeout,
                format!(
                    "No one approved the {what} within {timeout:?}; ask again when someone can answer."
                ),
            ),
            Ok(Err(e)) => (
                "failed",
                ReasonCode::ApprovalFailed,
                format!("The approval request failed ({e}); the {what} was not made."),
            ),
            Ok(Ok(r)) => match r.action {
                ElicitationAction::Accept
                    if r.content.as_ref().and_then(|c| c.get("approve"))
                        == Some(&Value::Bool(true)) =>
                {
                    self.request
                        .enforcer
                        .approvals()
                        .remember(self.approval, subject);
                    return ("approved", Ok(()));
                }
                ElicitationAction::Accept | ElicitationAction::Decline => (
                    "declined",
                    ReasonCode::ApprovalDeclined,
                    format!(
                        "The user declined this {what}. Do not retry it or reach the same result another way; ask the user what to do instead."
                    ),
                ),
                // Cancel, and any answer a later protocol adds: not an accept.
                _ => (
                    "cancelled",
                    ReasonCode::ApprovalCancelled,
                    format!(
                        "The user dismissed the approval request; the {what} was not made. Ask the user before trying again."
                    ),
                ),
            },
        };
        (step, Err(denied(self.decision, code, text)))
    }
}

/// A request passing the gate: what it asks, for which session, over which
/// host link, with the host's progress token if it gave one.
pub struct Gated<'a> {
    pub enforcer: &'a Enforcer,
    pub host: &'a HostLink,
    pub session: &'a SessionState,
    pub action: &'a Action,
    pub progress: Option<ProgressToken>,
    /// A 2026-07-28 request that may take an input round: how gavel asks
    /// it (`approval_round`).
    pub round: Option<&'a RoundApproval<'a>>,
}

/// The approval step of an allowed request: `Ok` when it may be forwarded,
/// the denial to answer otherwise (the request is then not made: its budget
/// charge is given back and it counts as denied), or the input round that
/// asks (not made either: its budget charge is given back, and the retry
/// is decided and charged as the request it is; it counts once, when its
/// approval settles).
pub async fn settle(request: &Gated<'_>, permit: &Permit) -> Result<(), Gate> {
    let (enforcer, session, action) = (request.enforcer, request.session, request.action);
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
    let asking = Asking {
        request,
        decision: d,
        approval: a,
    };
    let (step, mut outcome) = match asking.ask(&subject).await {
        Ok(settled) => settled,
        Err(round) => {
            enforcer.refund(permit);
            return Err(Gate::Ask(round));
        }
    };
    // No record, no effect: an approval whose final step cannot be recorded
    // is not carried out (unless `[log] on_write_error = "allow"`).
    if let Err(why) = asking.log_step(step, Some(outcome.as_ref().err().unwrap_or(d)))
        && outcome.is_ok()
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
    outcome.map_err(Gate::Denied)
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
        let cut = crate::text::prefix(&args, 500).len();
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
        ActionType::PolicyQuery => "policy question",
        ActionType::ResourceList => "resource list",
    }
}

/// The label of `action.tool` in the question.
fn target_label(action: &Action) -> &'static str {
    match action.kind {
        ActionType::ToolCall => "Tool",
        ActionType::ResourceRead | ActionType::ResourceSubscribe | ActionType::ResourceList => {
            "Resource"
        }
        ActionType::PromptGet => "Prompt",
        ActionType::Completion => "Completion for",
        ActionType::SamplingRequest | ActionType::ElicitationRequest => "Request",
        ActionType::PolicyQuery => "Question",
    }
}
