//! The upstream client's side of a legacy upstream's question while it
//! serves a 2026-07-28 host (`host::questions`, `front/session/parked.rs`):
//! attributed to the host's call in flight first (fail closed), then
//! decided by the one gate as for a legacy host (elicitation and sampling;
//! `roots/list` is plumbing), then put to that call, the upstream's request
//! waiting for the host's answer, which is read as the result it must be.
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
use crate::decision::{ActionType, SessionState};
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
        let permit = self
            .authorize(host, session, kind, method, args, &cx.meta)
            .await?;
        let answer = slot
            .ask(&permit, method, request, &cx.ct, self.call_timeout)
            .await?;
        read(method, answer)
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
