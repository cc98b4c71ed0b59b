//! The upstream client's side of a legacy upstream's question while it
//! serves a 2026-07-28 host (`host::questions`, `front/session/parked.rs`):
//! attributed to the host's call in flight first (fail closed), then
//! decided by the one gate as for a legacy host (elicitation and sampling;
//! `roots/list` is plumbing), then put to that call, the upstream's request
//! waiting for the host's answer, which is read as the result it must be.
//! A question the policy wants a person to approve is preceded by gavel's
//! approval question, put to the same call as a round of its own; the
//! question is decided again with its answer, and only then asked (a
//! decline refuses it to the upstream). The two never share one round:
//! the host fulfils every input request of a round before it retries, so
//! the question would be answered — a sampling request run — before the
//! approval was known.
// Sampling and roots are deprecated in MCP 2026-07-28 (SEP-2577) but are
// what a legacy upstream asks.
#![allow(deprecated)]

use std::sync::Arc;

use rmcp::model::{
    CreateMessageRequest, CreateMessageRequestParams, CreateMessageResult, ElicitRequest,
    ElicitRequestParams, ElicitResult, ErrorData, InputRequest, ListRootsResult,
};
use rmcp::service::{RequestContext, RoleClient};
use serde_json::Value;

use super::UpstreamClient;
use crate::decision::{Action, ActionType, Permit, SessionState, deny};
use crate::host::approval_round::{APPROVAL_KEY, Gate, RoundApproval};
use crate::host::authorize::authorize_round;
use crate::host::link::HostLink;

impl UpstreamClient {
    pub(super) async fn elicit_in_round(
        &self,
        link: (&HostLink, &Arc<SessionState>),
        params: ElicitRequestParams,
        cx: &RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let args = serde_json::to_value(&params).unwrap_or(Value::Null);
        let request = InputRequest::Elicitation(ElicitRequest::new(params));
        let asked = (ActionType::ElicitationRequest, "elicitation/create");
        self.question_in_round(link, asked, args, request, cx).await
    }

    pub(super) async fn sample_in_round(
        &self,
        link: (&HostLink, &Arc<SessionState>),
        params: CreateMessageRequestParams,
        cx: &RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let args = serde_json::to_value(&params).unwrap_or(Value::Null);
        let request = InputRequest::CreateMessage(CreateMessageRequest::new(params));
        let asked = (ActionType::SamplingRequest, "sampling/createMessage");
        self.question_in_round(link, asked, args, request, cx).await
    }

    /// One question (`kind`, `method`): attributed to the host's call in
    /// flight, decided by the one gate on `args`, put to that call, and
    /// the answer read as `method`'s result.
    async fn question_in_round<T: serde::de::DeserializeOwned>(
        &self,
        (host, session): (&HostLink, &Arc<SessionState>),
        (kind, method): (ActionType, &str),
        args: Value,
        request: InputRequest,
        cx: &RequestContext<RoleClient>,
    ) -> Result<T, ErrorData> {
        let slot = host.questions.attribute(&self.server, method)?;
        let action = self.question_action(kind, method, args, &cx.meta);
        let link = (host, session);
        let permit = match self.decide_question(link, &action, None, None).await? {
            Ok(permit) => permit,
            // A person must approve the question first: gavel's approval
            // question goes to the call as a round of its own, and the
            // question is decided again with its answer (settled, or
            // refused to the upstream) before it is put to the host.
            Err(approval) => {
                let answer = match slot
                    .ask_approval(method, approval, &cx.ct, self.call_timeout)
                    .await
                {
                    Ok(a) => a,
                    // Not put to the host (the call's request does not
                    // declare form elicitation, the call ended…): the
                    // approval settled unavailable, logged as its final
                    // step, and the upstream refused with why.
                    Err(e) => {
                        let why = Some(e.message.to_string());
                        return match self.decide_question(link, &action, None, why).await {
                            Err(denial) => Err(denial),
                            Ok(_) => Err(e),
                        };
                    }
                };
                self.decide_question(link, &action, Some(answer), None)
                    .await?
                    .map_err(|_| {
                        ErrorData::internal_error(
                            format!("the approval of {method} from server {:?} was answered, and gavel asked for it again; the request was not passed on", self.server),
                            None,
                        )
                    })?
            }
        };
        let answer = slot
            .ask(&permit, method, request, &cx.ct, self.call_timeout)
            .await?;
        read(method, answer)
    }

    /// Decides this upstream's question (`action`) during a 2026-07-28
    /// host's call, settling with `answer` the approval asked for it (or,
    /// with `unasked`, settling it unavailable: the question could not be
    /// put to the host, for that reason): the
    /// permit, or — when a person must approve it first — gavel's approval
    /// question to put to the call (`host::approval_round`, its round
    /// sealed by the call that carries it, `front/session/parked.rs`).
    async fn decide_question(
        &self,
        (host, session): (&HostLink, &Arc<SessionState>),
        action: &Action,
        answer: Option<Value>,
        unasked: Option<String>,
    ) -> Result<Result<Permit, InputRequest>, ErrorData> {
        let approval = RoundApproval {
            seal: None,
            // Counted by the call's own rounds (`HostRound::next_round`).
            round: Ok(1),
            // Whether the call's request declares form elicitation is the
            // call's to check (`parked::gate`): refused there otherwise.
            can_ask: true,
            answer,
            continuing: false,
            unasked,
        };
        let method = &action.tool;
        let r = authorize_round(&self.enforcer, host, session, action, None, Some(&approval)).await;
        match r {
            Ok(permit) => Ok(Ok(permit)),
            Err(Gate::Ask(round)) => round
                .input_requests
                .and_then(|mut r| r.remove(APPROVAL_KEY))
                .map(Err)
                .ok_or_else(|| {
                    ErrorData::internal_error(
                        format!("gavel could not build the approval question for {method} from server {:?}", self.server),
                        None,
                    )
                }),
            Err(Gate::Denied(d)) => Err(deny::request_denial(
                &d,
                &format!("{method} from server {:?}", self.server),
            )),
        }
    }

    pub(super) async fn roots_in_round(
        &self,
        host: &HostLink,
        cx: &RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        let slot = host.questions.attribute(&self.server, "roots/list")?;
        let answer = slot.ask_roots(&cx.ct, self.call_timeout).await?;
        read("roots/list", answer)
    }
}

/// The host's answer as the result `method` needs; anything else is
/// refused to the upstream, never passed on half-read.
fn read<T: serde::de::DeserializeOwned>(method: &str, answer: Value) -> Result<T, ErrorData> {
    serde_json::from_value(answer).map_err(|e| {
        ErrorData::invalid_params(
            format!("the agent host's answer to {method} is not a {method} result ({e}); gavel did not pass it on"),
            None,
        )
    })
}
