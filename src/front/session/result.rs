//! The result step of a session (docs/policy.md, "Result policy"): an
//! upstream's answer to a decided request goes to the enforcer's result
//! policy before the host sees it. A request whose server has no result
//! rule skips this step entirely — its result is not even serialized.
//! A denied or withheld result is answered like a denied request (a tool
//! call as an `isError` result the model reads, other requests as a
//! JSON-RPC error), saying that the call has happened.

use rmcp::model::*;
use serde_json::Value;

use super::Session;
use crate::decision::result::{OutputKind, ResultVerdict};
use crate::decision::{Decision, Permit};

impl Session {
    /// `result` as the result policy leaves it, or the decision that
    /// withholds it.
    pub(super) fn result_policy(
        &self,
        permit: &Permit,
        kind: OutputKind,
        result: ServerResult,
    ) -> Result<ServerResult, Box<Decision>> {
        if !permit.decides_result() {
            return Ok(result);
        }
        let value = match &result {
            ServerResult::CallToolResult(r) => serde_json::to_value(r),
            ServerResult::ReadResourceResult(r) => serde_json::to_value(r),
            ServerResult::GetPromptResult(r) => serde_json::to_value(r),
            ServerResult::CompleteResult(r) => serde_json::to_value(r),
            ServerResult::CustomResult(CustomResult(v)) => Ok(v.clone()),
            // Another shape is refused by the caller as unexpected.
            _ => return Ok(result),
        };
        let value = value.map_err(|e| unrepresentable(permit, e))?;
        let enforcer = &self.inner.gw.enforcer;
        match enforcer.decide_result(permit, kind, value) {
            ResultVerdict::Unchanged(_) => Ok(result),
            ResultVerdict::Pass(v) => retyped(&result, v).map_err(|e| unrepresentable(permit, e)),
            ResultVerdict::Deny(d) | ResultVerdict::Withheld(d) => Err(Box::new(d)),
        }
    }
}

/// The rewritten result in the variant it came as.
fn retyped(like: &ServerResult, v: Value) -> Result<ServerResult, serde_json::Error> {
    Ok(match like {
        ServerResult::CallToolResult(_) => ServerResult::CallToolResult(serde_json::from_value(v)?),
        ServerResult::ReadResourceResult(_) => {
            ServerResult::ReadResourceResult(serde_json::from_value(v)?)
        }
        ServerResult::GetPromptResult(_) => {
            ServerResult::GetPromptResult(serde_json::from_value(v)?)
        }
        ServerResult::CompleteResult(_) => ServerResult::CompleteResult(serde_json::from_value(v)?),
        _ => ServerResult::CustomResult(CustomResult(v)),
    })
}

/// A result gavel cannot carry through the result policy: withheld.
fn unrepresentable(permit: &Permit, e: serde_json::Error) -> Box<Decision> {
    let mut d = Decision::deny(
        crate::decision::codes::ReasonCode::PolicyError,
        format!(
            "The request has already been carried out (decision {}), but its result could not be read for the result policy ({e}); it is withheld.",
            permit.decision.decision_id.as_deref().unwrap_or("-")
        ),
    );
    d.decision_id = permit.decision.decision_id.clone();
    Box::new(d)
}

/// The `tools/call` answer for a result that was denied or withheld: an
/// `isError` result the model reads, saying the call has happened, with
/// the decision in `_meta` (and as `structuredContent` when the tool
/// declares no output schema), as a denied call's is.
pub(super) fn tool_result_denial(
    d: &Decision,
    tool: &str,
    has_output_schema: bool,
) -> CallToolResult {
    let what = format!("the result of the call to tool {tool:?} (the call itself has happened)");
    crate::decision::deny::tool_error(d, &what, has_output_schema)
}
