//! One question a legacy upstream puts to a legacy host
//! (`elicitation/create`, `sampling/createMessage`, sent as the real
//! server→client request it is): the upstream's text on its way to the
//! host, so it passes the result step as an input round does on its way to
//! a 2026-07-28 host (docs/policy.md, "Result policy" — input rounds). The
//! host's era must not change what the policy sees: the same question,
//! asked of a 2026-07-28 host, is parked as a round and decided there.
//!
//! The rules see it as a round of one request, under [`QUESTION_KEY`]:
//! `input.output = {"kind": "input_required", "inputRequests": {"request":
//! {method, params}}}`, with the input of the question's own decision (an
//! `elicitation_request` or `sampling_request`: a legacy server's question
//! comes with no call of the host's to tie it to).

use serde_json::{Value, json};

use super::{ResultVerdict, RoundGate};
use crate::decision::codes::ReasonCode;
use crate::decision::{Decision, Enforcer};

/// The key a legacy host's question goes under in `inputRequests`.
pub const QUESTION_KEY: &str = "request";

impl Enforcer {
    /// `params` of the question `method` as the result step leaves them
    /// (redacted), or the decision that withholds it from the host (a rule
    /// denied it, or it could not be decided: fail closed). A server whose
    /// layers have no result rule gets its params back untouched.
    pub fn decide_question(
        &self,
        gate: &RoundGate,
        method: &str,
        params: Value,
    ) -> Result<Value, Box<Decision>> {
        if !gate.decides() {
            return Ok(params);
        }
        let round =
            json!({ "inputRequests": { QUESTION_KEY: { "method": method, "params": params } } });
        match self.decide_round(gate, round) {
            ResultVerdict::Unchanged(mut v) | ResultVerdict::Pass(mut v) => v
                .pointer_mut(&format!("/inputRequests/{QUESTION_KEY}/params"))
                .map(Value::take)
                .ok_or_else(|| Box::new(unreadable(gate, method))),
            ResultVerdict::Deny(d) | ResultVerdict::Withheld(d) => Err(Box::new(d)),
        }
    }
}

/// A question the result rules rewrote out of shape: withheld.
fn unreadable(gate: &RoundGate, method: &str) -> Decision {
    let mut d = Decision::deny(
        ReasonCode::PolicyError,
        format!(
            "The server's {method} could not be passed on as the result policy left it (its params are gone); it is withheld."
        ),
    );
    d.decision_id = gate.request_id().map(String::from);
    d
}
