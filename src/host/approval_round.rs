//! gavel's own approval question put to a 2026-07-28 host as an input round
//! (MRTR; reference `mcp-2026-era.md` §2.4, checklist B11).
//!
//! A modern host cannot be sent a request, so the question the approval
//! step would send a legacy host as `elicitation/create` is instead the
//! answer to the host's request: `input_required`, with one form
//! elicitation under [`APPROVAL_KEY`] (the question the legacy path asks,
//! control characters escaped; `approve: boolean`, required) and a
//! `requestState` sealed as [`Kind::Approval`], bound to the principal,
//! server, method, target and arguments, expiring, single use. The host's
//! retry is a new request: it is decided again by the policy, and when
//! the decision still asks for approval, the sealed round — opened and
//! spent once, for exactly this call (`front/session/host_round.rs`) —
//! answers it with the host's `inputResponses[APPROVAL_KEY]`: accept with
//! `approve: true` forwards; decline, cancel or `approve: false` is the
//! legacy path's denial; no answer asks again (a new round, a new state).
//!
//! An upstream's `elicitation/create` or `sampling/createMessage` during
//! such a request that needs approval is asked the same way, unsealed
//! (`seal: None`): the question goes to the request's call as a round of
//! its own, before the upstream's (`upstream::client_rounds`).
//!
//! Only this request's capabilities count (MCP 2026-07-28 carries nothing
//! from one request to the next): a request that does not declare form
//! elicitation cannot be asked, and gets the legacy path's "approval
//! required" denial with its appeal path — an `isError` result the model
//! reads, rather than the spec's -32021, because the policy's answer is a
//! denial the agent can act on (ask a person, use the appeal path), not a
//! protocol failure. The retry of a round of another kind for the same
//! call (a legacy upstream's question, `continuing`) is past its approval:
//! the call it continues was only made once approved.

use rmcp::model::{
    ClientCapabilities, ElicitRequest, ElicitRequestParams, ElicitResult, ElicitationSchema,
    InputRequest, InputRequests, InputRequiredResult,
};
use serde_json::Value;

use super::seal::{Binding, Kind, Sealer};
use crate::decision::Decision;

/// The key of gavel's question in `inputRequests`: namespaced, so no
/// upstream key can be taken for it.
pub const APPROVAL_KEY: &str = "gavel.approval";

/// What a 2026-07-28 request brings to the approval step.
pub struct RoundApproval<'a> {
    /// What seals the round's state, and what it is bound to (this
    /// request); `None`: the question goes into a round its caller seals —
    /// an upstream's question's approval, asked in a round of the host's
    /// call that question came during (`upstream::client_rounds`).
    pub seal: Option<(&'a Sealer, Binding<'a>)>,
    /// The number the round gavel would ask in takes among this request's
    /// rounds (`HostRound::next_round`), or — past the cap on rounds — why
    /// no round is asked (unused when the caller seals the round).
    pub round: Result<u32, String>,
    /// This request declares form elicitation: gavel may ask.
    pub can_ask: bool,
    /// The retry of an approval round: the host's answer to it.
    pub answer: Option<Value>,
    /// The retry of a round of this same call past its approval (a legacy
    /// upstream's question, parked with the call).
    pub continuing: bool,
    /// The approval question was asked for and could not be put to the
    /// host (why): the approval is settled unavailable, so its
    /// `requested` step gets its final one (an upstream's question's
    /// approval, refused by the call it would go to, `upstream::client_rounds`).
    pub unasked: Option<String>,
}

/// How the gate ended when it did not give a permit.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Gate {
    /// Denied (by the policy, or by a person).
    Denied(Decision),
    /// A person must be asked first: answer the host with this round.
    Ask(InputRequiredResult),
}

/// Whether `caps` (one request's) declare form elicitation: an
/// `elicitation` object naming no mode is form mode.
pub fn declares_form(caps: &ClientCapabilities) -> bool {
    caps.elicitation
        .as_ref()
        .is_some_and(|e| e.form.is_some() || e.url.is_none())
}

/// The round that asks `message`, its state naming `decision_id` (the
/// decision that asked, for the log reader; the binding is what counts).
pub fn round(
    approval: &RoundApproval<'_>,
    message: String,
    decision_id: Option<&str>,
) -> Result<InputRequiredResult, String> {
    // A host that retries without answering is asked again, each time in
    // a new round: the cap on rounds ends it (the approval is not given).
    let number = approval.round.clone()?;
    let schema = ElicitationSchema::builder()
        .required_bool("approve")
        .build()
        .map_err(|e| e.to_string())?;
    let params = ElicitRequestParams::FormElicitationParams {
        meta: None,
        message,
        requested_schema: schema,
    };
    let mut requests = InputRequests::new();
    requests.insert(
        APPROVAL_KEY.to_string(),
        InputRequest::Elicitation(ElicitRequest::new(params)),
    );
    let state = approval.seal.as_ref().map(|(sealer, binding)| {
        sealer.seal(
            binding,
            Kind::Approval,
            decision_id.map(String::from),
            number,
        )
    });
    Ok(InputRequiredResult::new(Some(requests), state))
}

/// The host's answer read as the elicitation result it must be.
pub fn answer(v: &Value) -> Result<ElicitResult, String> {
    serde_json::from_value(v.clone()).map_err(|e| {
        format!("the host's answer to the approval question is not an elicitation result ({e})")
    })
}

#[cfg(test)]
#[path = "approval_round_tests.rs"]
mod tests;
