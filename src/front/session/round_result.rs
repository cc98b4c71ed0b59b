//! An input round on its way to a 2026-07-28 host, through the result
//! step (docs/policy.md, "Result policy" — input rounds). A 2026-07-28
//! upstream's round that gavel drives through a legacy host passes the same
//! step (`rounds.rs`, `RoundIo::screen`): the host's era does not change
//! what the policy sees.
//!
//! A round carries the upstream's text to the host as a result does:
//! elicitation messages and URLs, sampling prompts — a modern upstream's
//! round relayed (`relay.rs`), a legacy upstream's questions parked with
//! their call (`parked.rs`), its -32042 URLs (`url_round.rs`). So it is
//! counted and decided like the final answer of the request it belongs to:
//! its requests' size counts as result bytes and, for a tool call, result
//! tokens against the budget the call was charged; and when the server's
//! policy has a result rule, the rule sees it as `input.output` of kind
//! `input_required` (`{"kind": "input_required", "inputRequests": {key:
//! {method, params}}}`, bounded like any output; never the round's
//! `requestState`). A deny — or any failure, fail closed — refuses the
//! round: the host gets the denial, never the question, and the round's
//! state is dropped (a parked call it names is given up: its upstream call
//! cancelled, its questions refused). Pattern redaction applies to every
//! string of the requests' `params`; a filter finds no items in a round.
//! gavel's approval question for the host's own request is not upstream
//! text and skips this step (`Gate::Ask`, answered before any forward); its
//! approval question for an upstream's question, which quotes that
//! question, is a round of the upstream's call and passes it.

use rmcp::model::{InputRequests, InputRequiredResult};
use serde_json::{Value, json};

use super::Session;
use super::host_round::HostRound;
use crate::decision::Decision;
use crate::decision::result::{ResultVerdict, RoundGate};
use crate::host::seal::Kind;

/// The size of a round's requests, as the host gets them (its state goes
/// back to gavel, not to the model): what the round counts for.
pub(super) fn round_bytes(round: &InputRequiredResult) -> usize {
    round
        .input_requests
        .as_ref()
        .filter(|r| !r.is_empty())
        .and_then(|r| serde_json::to_vec(r).ok())
        .map_or(0, |b| b.len())
}

impl Session {
    /// `round` as the result step of its request leaves it (`gate`: the
    /// request's permit's), counted as result tokens when `count` (a tool
    /// call, as its result would be), or the decision that refuses it —
    /// its state then dropped. `host`: the request's part in the round,
    /// which the state is bound to.
    pub(super) fn round_step(
        &self,
        gate: &RoundGate,
        mut round: InputRequiredResult,
        host: Option<&HostRound>,
        count: bool,
    ) -> Result<InputRequiredResult, Box<Decision>> {
        if count {
            let bytes = round_bytes(&round);
            self.inner.state.add_result_bytes(bytes);
            self.inner.gw.enforcer.charge_round_tokens(gate, bytes);
        }
        let Some(requests) = round.input_requests.take().filter(|r| !r.is_empty()) else {
            // A state-only round ("retry now") carries no upstream text.
            return Ok(round);
        };
        if !gate.decides() {
            round.input_requests = Some(requests);
            return Ok(round);
        }
        let value = json!({ "inputRequests": requests });
        let verdict = self.inner.gw.enforcer.decide_round(gate, value);
        let refused = match verdict {
            ResultVerdict::Unchanged(_) => {
                round.input_requests = Some(requests);
                return Ok(round);
            }
            ResultVerdict::Pass(v) => match retyped(v) {
                Ok(r) => {
                    round.input_requests = Some(r);
                    return Ok(round);
                }
                Err(e) => unreadable(gate, &e),
            },
            ResultVerdict::Deny(d) | ResultVerdict::Withheld(d) => d,
        };
        self.drop_round(&round, host);
        Err(Box::new(refused))
    }

    /// Drops the state of a round the host will never get: a parked call
    /// it names is given up (the others hold nothing in gavel, and their
    /// state, never given out, answers nothing).
    fn drop_round(&self, round: &InputRequiredResult, host: Option<&HostRound>) {
        let (Some(state), Some(host)) = (&round.request_state, host) else {
            return;
        };
        let Ok(opened) = self.inner.gw.sealer.open(state, &host.binding()) else {
            return;
        };
        if opened.kind == Kind::Parked
            && let Some(reference) = &opened.inner
        {
            // Here, or on the instance that holds it (`handoff.rs`).
            self.abandon_parked(
                reference,
                "the question was withheld from the host by the result policy",
            );
        }
    }
}

/// The requests as the result rules left them (redacted).
fn retyped(v: Value) -> Result<InputRequests, serde_json::Error> {
    serde_json::from_value(v.get("inputRequests").cloned().unwrap_or(Value::Null))
}

/// A round the result rules rewrote into something gavel cannot send:
/// withheld.
fn unreadable(gate: &RoundGate, e: &serde_json::Error) -> Decision {
    let mut d = Decision::deny(
        crate::decision::codes::ReasonCode::PolicyError,
        format!(
            "The request's server asked for input, and its question could not be passed on as the result policy left it ({e}); it is withheld."
        ),
    );
    d.decision_id = gate.request_id().map(String::from);
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_counts_its_requests_not_its_state() {
        let requests: InputRequests = serde_json::from_value(json!({
            "ask": {"method": "elicitation/create", "params": {"message": "Sure?", "requestedSchema": {"type": "object", "properties": {}}}},
        }))
        .unwrap();
        let with =
            |state: &str| InputRequiredResult::new(Some(requests.clone()), Some(state.to_string()));
        let n = round_bytes(&with("s"));
        assert_eq!(n, serde_json::to_vec(&requests).unwrap().len());
        assert_eq!(round_bytes(&with(&"x".repeat(10_000))), n);
        assert_eq!(
            round_bytes(&InputRequiredResult::new(None, Some("s".into()))),
            0
        );
    }
}
