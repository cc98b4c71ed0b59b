//! MCP 2026-07-28 input rounds (MRTR, SEP-2322) relayed between a modern
//! host and a modern upstream (reference `mcp-2026-era.md` §2.3, shape 1).
//!
//! The upstream answers `tools/call`, `prompts/get` or `resources/read`
//! with `input_required`; the host answers the input requests itself and
//! sends the request again with `inputResponses` and the `requestState` it
//! was given. gavel keeps nothing between the two: the upstream's state
//! travels to the host inside a sealed envelope (`host::seal`, kind
//! `Relay`) bound to the principal, the server, the method, the target and
//! the arguments the policy decided on, expiring, single use. What comes
//! back is untrusted:
//! - the retry is a request like any other: routed, decided (policy,
//!   limits, budget, approval) by the handler before anything here runs;
//! - a `requestState` that does not open for this very request (altered,
//!   expired, another caller's, other arguments, already answered) is
//!   refused with -32602 and the upstream is sent nothing; the budget the
//!   decision charged is given back (the call was not made);
//! - `inputResponses` are bounded ([`RESPONSES`]) before the round is
//!   spent, and passed on as given (the spec has servers ignore keys they
//!   did not ask for);
//! - a host's `inputResponses` without a `requestState` answer nothing
//!   gavel issued (every relayed round carries a sealed state, even when
//!   the upstream gave none): the request is a new call, its responses
//!   dropped.
//!
//! What goes to the host is checked too: the round is read with
//! `upstream::rounds::read`'s bounds, every input request must be one this
//! request's own `_meta` capabilities declare (-32021 naming server, call
//! and capability otherwise), and each elicitation or sampling request
//! passes the one gate as the upstream→host action it is
//! (`host::inputs::Asker::admit`), as it would for a legacy host.

use rmcp::ErrorData;
use rmcp::model::{
    ClientRequest, InputRequests, InputRequiredResult, InputResponses, ServerResult,
};
use rmcp::service::{RequestContext, RoleServer};
use serde_json::json;

use super::Session;
use super::rounds::Forwarded;
use crate::decision::{Action, Permit};
use crate::host::seal::{Binding, Kind, MAX_SEALED_BYTES, SealError, args_digest};
use crate::upstream::rounds::{self, BOUNDS, Call, Outcome, Step};

/// What a host's `inputResponses` may hold: checked before the round is
/// spent, so an oversized answer costs the host nothing but the retry.
#[derive(Debug, Clone, Copy)]
pub struct ResponseBounds {
    /// Entries (a round asks at most `rounds::BOUNDS.requests`; extras are
    /// allowed by the spec, within reason).
    pub entries: usize,
    /// Bytes of one key.
    pub key_bytes: usize,
    /// Bytes of all responses as JSON.
    pub total_bytes: usize,
}

pub const RESPONSES: ResponseBounds = ResponseBounds {
    entries: 4 * BOUNDS.requests,
    key_bytes: BOUNDS.key_bytes,
    total_bytes: 1024 * 1024,
};

/// Whether `server`'s rounds are relayed to the host of `cx`: a
/// 2026-07-28 request (no `initialize` behind it) to an upstream that
/// speaks 2026-07-28 (waiting for one still starting: its era decides).
pub(super) async fn relays(
    session: &Session,
    server: &str,
    cx: &RequestContext<RoleServer>,
) -> bool {
    if crate::front::era::modern_version(&cx.meta).is_none() {
        return false;
    }
    let Some(up) = session
        .router()
        .ok()
        .and_then(|r| r.upstreams.get(server).cloned())
    else {
        return false;
    };
    up.ready()
        .await
        .is_ok_and(|c| c.era == crate::upstream::era::Spoken::Modern)
}

/// Takes the host's round fields off `request` (none for a request that
/// takes no rounds).
fn take_round_fields(request: &mut ClientRequest) -> (Option<InputResponses>, Option<String>) {
    match request {
        ClientRequest::CallToolRequest(r) => (
            r.params.input_responses.take(),
            r.params.request_state.take(),
        ),
        ClientRequest::GetPromptRequest(r) => (
            r.params.input_responses.take(),
            r.params.request_state.take(),
        ),
        ClientRequest::ReadResourceRequest(r) => (
            r.params.input_responses.take(),
            r.params.request_state.take(),
        ),
        _ => (None, None),
    }
}

/// `responses` within [`RESPONSES`], each one an object (an
/// `ElicitResult`, `CreateMessageResult` or `ListRootsResult`).
pub fn check_responses(responses: &InputResponses, bounds: &ResponseBounds) -> Result<(), String> {
    if responses.len() > bounds.entries {
        return Err(format!(
            "inputResponses holds {} entries; gavel passes at most {}",
            responses.len(),
            bounds.entries
        ));
    }
    for (k, v) in responses {
        if k.len() > bounds.key_bytes {
            return Err(format!(
                "an inputResponses key is {} bytes long; at most {} are allowed",
                k.len(),
                bounds.key_bytes
            ));
        }
        if !v.is_object() {
            return Err(format!(
                "the inputResponses entry {k:?} is not an object (an elicitation, sampling or roots result)"
            ));
        }
    }
    let total = serde_json::to_vec(responses)
        .map(|b| b.len())
        .unwrap_or(usize::MAX);
    if total > bounds.total_bytes {
        return Err(format!(
            "inputResponses is {total} bytes; at most {} are allowed",
            bounds.total_bytes
        ));
    }
    Ok(())
}

/// A relayed round as the host gets it: the upstream's input requests
/// unchanged, gavel's sealed state.
pub(super) fn input_required(requests: InputRequests, sealed: String) -> ServerResult {
    ServerResult::InputRequiredResult(InputRequiredResult::new(
        (!requests.is_empty()).then_some(requests),
        Some(sealed),
    ))
}

/// The answer the handler returns as a round rather than a result. (Made
/// and consumed once per answer, never stored: the size of the `Err`
/// variant costs nothing.)
#[allow(clippy::result_large_err)]
pub(super) fn as_round(result: ServerResult) -> Result<InputRequiredResult, ServerResult> {
    match result {
        ServerResult::InputRequiredResult(r) => Ok(r),
        other => Err(other),
    }
}

/// -32602 for a retry gavel refuses before anything reaches the upstream,
/// logged (the decision record says the call was allowed: this says why it
/// was not made). The state itself is never logged.
fn refused(call: &Call<'_>, why: impl std::fmt::Display) -> ErrorData {
    tracing::warn!(
        server = %call.server,
        method = call.method,
        target = %call.target,
        "refused an input-round retry: {why}"
    );
    ErrorData::invalid_params(
        format!(
            "{} of {:?} on server {:?} refused: {why}",
            call.method, call.target, call.server
        ),
        Some(json!({"server": call.server, "method": call.method, "target": call.target})),
    )
}

impl Session {
    /// Who a sealed round belongs to: the bearer token's user and agent
    /// (HTTP with `[auth]`), else the session's identity — the configured
    /// one on stdio and for every caller without `[auth]`, where the
    /// per-process key (or the operator's shared one) is the boundary.
    fn principal(&self, cx: &RequestContext<RoleServer>) -> String {
        let id = crate::front::era::token_identity(cx)
            .or_else(|| self.inner.state.identity.get().cloned());
        let configured = self.inner.gw.enforcer.configured_identity();
        let (user, agent) = match &id {
            Some(i) => (i.user.id.as_str(), i.agent.id.as_str()),
            None => (configured.user.id.as_str(), configured.agent.id.as_str()),
        };
        // JSON: no separator a user id could forge.
        json!([user, agent]).to_string()
    }

    /// Forwards a modern host's request to a modern upstream, relaying an
    /// input round the upstream answers with, or resuming one the host
    /// answered. `permit` is the decision on this very request (a retry is
    /// decided like any call, in the handler).
    pub(super) async fn relay_call(
        &self,
        server: &str,
        permit: Permit,
        action: &Action,
        mut request: ClientRequest,
        cx: &RequestContext<RoleServer>,
    ) -> Result<Forwarded, ErrorData> {
        let Some(method) = rounds::round_method(&request) else {
            let r = self.forward(server, &permit, request, cx).await?;
            return Ok(Outcome::Done(permit, r));
        };
        let call = Call {
            server,
            method,
            target: &action.tool,
        };
        let principal = self.principal(cx);
        let binding = Binding {
            principal: &principal,
            server,
            method,
            target: &action.tool,
            args: args_digest(action.args.as_object()),
        };
        let (responses, state) = take_round_fields(&mut request);
        if let Some(token) = state {
            match self.resume(&call, &binding, &token, responses).await {
                Ok((responses, inner)) => {
                    rounds::set_round_fields(&mut request, responses, inner);
                }
                Err(e) => {
                    // Not made: what the decision charged the budget goes back.
                    self.inner.gw.enforcer.refund(&permit);
                    return Err(e);
                }
            }
        }
        let answer = self
            .forward(server, &permit, request, cx)
            .await
            .map_err(|e| super::rounds::named(&call, e))?;
        let (requests, state) = match rounds::read(&call, answer, &BOUNDS)? {
            Step::Complete(r) => return Ok(Outcome::Done(permit, r)),
            Step::Input { requests, state } => (requests, state),
        };
        let caps = cx.meta.client_capabilities().unwrap_or_default();
        rounds::check_capabilities(&call, &caps, &requests)?;
        self.admit(server, &requests, cx).await?;
        let sealed = self.inner.gw.sealer.seal(&binding, Kind::Relay, state);
        // An upstream state within `BOUNDS` can still seal longer than
        // gavel opens (JSON escapes, base64): refused now, not at a retry
        // that could never succeed.
        if sealed.len() > MAX_SEALED_BYTES {
            return Err(ErrorData::internal_error(
                format!(
                    "server {server:?} answered {method} of {:?} with an input round whose requestState is too large for gavel to relay ({} bytes sealed, at most {MAX_SEALED_BYTES}); the request was not completed",
                    action.tool,
                    sealed.len()
                ),
                None,
            ));
        }
        Ok(Outcome::Done(
            permit,
            input_required(requests.into_iter().collect(), sealed),
        ))
    }

    /// Opens the host's `requestState` for this request, checks its
    /// responses, then spends the round: the responses and the upstream's
    /// own state to send on.
    async fn resume(
        &self,
        call: &Call<'_>,
        binding: &Binding<'_>,
        token: &str,
        responses: Option<InputResponses>,
    ) -> Result<(Option<InputResponses>, Option<String>), ErrorData> {
        let sealer = &self.inner.gw.sealer;
        let opened = sealer.open(token, binding).map_err(|e| refused(call, e))?;
        if opened.kind != Kind::Relay {
            return Err(refused(call, SealError::Mismatch("kind of input round")));
        }
        if let Some(r) = &responses {
            check_responses(r, &RESPONSES).map_err(|e| refused(call, e))?;
        }
        sealer.spend(&opened).await.map_err(|e| refused(call, e))?;
        Ok((responses, opened.inner))
    }

    /// Each elicitation and sampling request of a round through the one
    /// gate, as the upstream→host request it is (`host::inputs`).
    async fn admit(
        &self,
        server: &str,
        requests: &[(String, rmcp::model::InputRequest)],
        cx: &RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let inner = &self.inner;
        let asker = crate::host::inputs::Asker {
            enforcer: &inner.gw.enforcer,
            host: &inner.host,
            session: &inner.state,
            server,
            ct: &cx.ct,
            timeout: std::time::Duration::ZERO,
        };
        for (_, r) in requests {
            asker.admit(r).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn responses(v: Value) -> InputResponses {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn responses_within_bounds_pass_and_each_bound_refuses() {
        let b = ResponseBounds {
            entries: 2,
            key_bytes: 8,
            total_bytes: 100,
        };
        assert_eq!(
            check_responses(&responses(json!({"a": {"action": "accept"}})), &b),
            Ok(())
        );
        let e = check_responses(&responses(json!({"a": {}, "b": {}, "c": {}})), &b).unwrap_err();
        assert!(e.contains("3 entries"), "{e}");
        let e = check_responses(&responses(json!({"longer-than-8": {}})), &b).unwrap_err();
        assert!(e.contains("13 bytes"), "{e}");
        let e = check_responses(&responses(json!({"a": "accept"})), &b).unwrap_err();
        assert!(e.contains("not an object"), "{e}");
        let e = check_responses(&responses(json!({"a": {"x": "y".repeat(200)}})), &b).unwrap_err();
        assert!(e.contains("at most 100"), "{e}");
    }
}
