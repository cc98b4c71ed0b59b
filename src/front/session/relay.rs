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
//! - its `requestState` is opened before anything is decided
//!   (`host_round.rs`): one that does not open for this very request
//!   (altered, expired, another caller's, other arguments, already
//!   answered), or whose `inputResponses` exceed [`RESPONSES`], is refused
//!   with -32602 and nothing is decided or sent;
//! - the retry is then a request like any other: routed, decided (policy,
//!   limits, budget, approval) by the handler before anything here runs;
//!   its responses are passed on as given (the spec has servers ignore
//!   keys they did not ask for);
//! - a host's `inputResponses` without a `requestState` answer no round
//!   gavel issued (every relayed round carries a sealed state, even when
//!   the upstream gave none): they go on as the host gave them, bounded and
//!   without gavel's own `gavel.` keys, and the upstream uses what it
//!   recognizes — as it would directly (the spec: a server SHOULD ignore
//!   what it does not recognize; the conformance suite checks it). Such an
//!   answer reached no person through gavel's gate, but neither would it
//!   directly: a host that fabricates answers can do so when asked too.
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

use super::Session;
use super::host_round::HostRound;
use super::rounds::Forwarded;
use crate::decision::{Action, Permit};
use crate::host::seal::{Kind, MAX_SEALED_BYTES};
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

impl Session {
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
        round: Option<&HostRound>,
    ) -> Result<Forwarded, ErrorData> {
        // Whatever the host put in the round fields is its own; what goes
        // on is only a round gavel sealed and `host_round` opened.
        rounds::set_round_fields(&mut request, None, None);
        let (Some(method), Some(round)) = (rounds::round_method(&request), round) else {
            let r = self.forward(server, &permit, request, cx).await?;
            return Ok(Outcome::Done(permit, r));
        };
        let call = Call {
            server,
            method,
            target: &action.tool,
        };
        let binding = round.binding();
        if let Some((state, responses)) = round.relayed() {
            let responses = (!responses.is_empty()).then(|| responses.clone());
            rounds::set_round_fields(&mut request, responses, state.map(String::from));
        } else if let Some(volunteered) = round.volunteered() {
            rounds::set_round_fields(&mut request, Some(volunteered), None);
        }
        let answer = self
            .forward(server, &permit, request, cx)
            .await
            .map_err(|e| super::rounds::named(&call, e))?;
        let (requests, state) = match rounds::read(&call, answer, &BOUNDS)? {
            Step::Complete(r) => return Ok(Outcome::Done(permit, r)),
            Step::Input { requests, state } => (requests, state),
        };
        // Past the cap, the upstream's state is dropped: never sealed.
        let number = round.next_round()?;
        let caps = cx.meta.client_capabilities().unwrap_or_default();
        rounds::check_capabilities(&call, &caps, &requests)?;
        self.admit(server, &requests, cx).await?;
        let sealed = self
            .inner
            .gw
            .sealer
            .seal(&binding, Kind::Relay, state, number);
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
    use serde_json::{Value, json};

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
