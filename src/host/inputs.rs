//! One input request of a modern upstream's round (MCP 2026-07-28 MRTR,
//! `upstream::rounds`) put to a legacy host as the real request it stands
//! for. Elicitation and sampling pass the one gate as the same upstream→host
//! actions a legacy upstream's requests are (`elicitation_request`,
//! `sampling_request`: the policy cannot tell the two eras apart, and need
//! not); `roots/list` is plumbing, as it is for a legacy upstream. A round
//! relayed to a 2026-07-28 host instead is decided the same way, request by
//! request, before it is passed ([`Asker::admit`]).
// Sampling and roots are deprecated in MCP 2026-07-28 (SEP-2577) but are
// what a legacy host answers.
#![allow(deprecated)]

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    ClientResult, CreateMessageRequest, ElicitRequest, ElicitRequestParams, ErrorData,
    InputRequest, ServerRequest,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::link::HostLink;
use crate::decision::{Action, ActionType, Enforcer, Permit, SessionState, deny};

/// Who asks the host, for whom, and for how long.
pub struct Asker<'a> {
    pub enforcer: &'a Arc<Enforcer>,
    pub host: &'a HostLink,
    pub session: &'a Arc<SessionState>,
    /// The upstream whose round it is.
    pub server: &'a str,
    /// The host's request the round belongs to.
    pub ct: &'a CancellationToken,
    /// `servers.NAME.call_timeout`: how long the host may take to answer.
    pub timeout: Duration,
}

impl Asker<'_> {
    /// Asks the host and returns its answer as `inputResponses` carries it
    /// (the bare result object). A request the policy denies fails the
    /// whole request the round belongs to: an input response cannot be an
    /// error, and an invented answer would speak for the user.
    pub async fn ask(&self, request: InputRequest) -> Result<Value, ErrorData> {
        let answer = match request {
            InputRequest::Elicitation(r) => {
                let mut params = r.params;
                // 2026-07-28 dropped the URL elicitation's id; a 2025-11-25
                // host requires one (to match `elicitation/complete`, which
                // a modern server never sends): gavel makes one up.
                if let ElicitRequestParams::UrlElicitationParams { elicitation_id, .. } =
                    &mut params
                    && elicitation_id.is_empty()
                {
                    *elicitation_id = format!("gavel-{}", uuid::Uuid::new_v4().simple());
                }
                let method = "elicitation/create";
                let permit = self
                    .authorize(ActionType::ElicitationRequest, method, to_value(&params))
                    .await?;
                let req = ServerRequest::ElicitRequest(ElicitRequest::new(params));
                match self.forward(&permit, req).await? {
                    ClientResult::ElicitResult(r) => to_value(&r),
                    other => return Err(unexpected(method, other)),
                }
            }
            InputRequest::CreateMessage(r) => {
                let method = "sampling/createMessage";
                let permit = self
                    .authorize(ActionType::SamplingRequest, method, to_value(&r.params))
                    .await?;
                let req = ServerRequest::CreateMessageRequest(CreateMessageRequest::new(r.params));
                match self.forward(&permit, req).await? {
                    ClientResult::CreateMessageResult(r) => to_value(&r),
                    other => return Err(unexpected(method, other)),
                }
            }
            InputRequest::ListRoots(_) => {
                to_value(&self.host.list_roots_input(self.ct, self.timeout).await?)
            }
            _ => {
                return Err(ErrorData::internal_error(
                    format!(
                        "server {:?} asked for input of a kind gavel does not know",
                        self.server
                    ),
                    None,
                ));
            }
        };
        Ok(answer)
    }

    /// Decides one input request of a round relayed to a 2026-07-28 host
    /// (which answers it itself, `front::session::relay`): elicitation and
    /// sampling as the upstream→host actions they are, exactly as
    /// [`Self::ask`] decides them for a legacy host; `roots/list` is
    /// plumbing. A denial fails the request the round belongs to.
    pub async fn admit(&self, request: &InputRequest) -> Result<(), ErrorData> {
        match request {
            InputRequest::Elicitation(r) => {
                self.authorize(
                    ActionType::ElicitationRequest,
                    "elicitation/create",
                    to_value(&r.params),
                )
                .await?;
            }
            InputRequest::CreateMessage(r) => {
                self.authorize(
                    ActionType::SamplingRequest,
                    "sampling/createMessage",
                    to_value(&r.params),
                )
                .await?;
            }
            InputRequest::ListRoots(_) => {}
            _ => {
                return Err(ErrorData::internal_error(
                    format!(
                        "server {:?} asked for input of a kind gavel does not know",
                        self.server
                    ),
                    None,
                ));
            }
        }
        Ok(())
    }

    async fn forward(
        &self,
        permit: &Permit,
        req: ServerRequest,
    ) -> Result<ClientResult, ErrorData> {
        self.host
            .forward_input(permit, req, self.ct, self.timeout)
            .await
    }

    /// The one gate, for an upstream→host request of this round.
    async fn authorize(
        &self,
        kind: ActionType,
        method: &str,
        args: Value,
    ) -> Result<Permit, ErrorData> {
        let mut action = Action::new(kind, self.server, method, args);
        action.annotations_trusted = self.enforcer.annotations_trusted(self.server);
        super::authorize::authorize(self.enforcer, self.host, self.session, &action, None)
            .await
            .map_err(|d| {
                deny::request_denial(&d, &format!("{method} from server {:?}", self.server))
            })
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// A host's answer of the wrong kind for `method` (both directions' relays).
pub(crate) fn unexpected(method: &str, got: ClientResult) -> ErrorData {
    ErrorData::internal_error(
        format!(
            "the agent host answered {method} with an unexpected result: {}",
            serde_json::to_string(&got).unwrap_or_default()
        ),
        None,
    )
}
