//! The result step of a session (docs/policy.md, "Result policy"): an
//! upstream's answer to a decided request goes to the enforcer's result
//! policy before the host sees it. A request whose server has no result
//! rule skips this step entirely — its result is not even serialized.
//! A denied or withheld result is answered like a denied request (a tool
//! call as an `isError` result the model reads, other requests as a
//! JSON-RPC error), saying that the call has happened. Also the size a
//! tool result counts for the token estimate (`result_bytes`).

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
        permit: &mut Permit,
        kind: OutputKind,
        result: ServerResult,
    ) -> Result<ServerResult, Box<Decision>> {
        self.result_policy_seen(permit, kind, result)
            .map(|(r, _)| r)
    }

    /// [`Session::result_policy`], also giving the result's JSON when the
    /// step already made it and the host gets the result as it came
    /// (`ResultVerdict::Unchanged`: that JSON is exactly what serializing
    /// the result again would give, `ServerResult` being untagged), so
    /// [`Session::saw`] need not serialize it a second time. `None`: no
    /// result step ran, or the result was rewritten (re-typed through
    /// rmcp's model, which may not carry every field of the JSON the rules
    /// returned — `saw` then serializes what the host really gets). The
    /// permit's result context is spent (`Enforcer::decide_result_once`):
    /// a result is decided once.
    pub(super) fn result_policy_seen(
        &self,
        permit: &mut Permit,
        kind: OutputKind,
        result: ServerResult,
    ) -> Result<(ServerResult, Option<Value>), Box<Decision>> {
        if !permit.decides_result() {
            return Ok((result, None));
        }
        let value = match &result {
            ServerResult::CallToolResult(r) => serde_json::to_value(r),
            ServerResult::ReadResourceResult(r) => serde_json::to_value(r),
            ServerResult::GetPromptResult(r) => serde_json::to_value(r),
            ServerResult::CompleteResult(r) => serde_json::to_value(r),
            ServerResult::CustomResult(CustomResult(v)) => Ok(v.clone()),
            // Another shape is refused by the caller as unexpected.
            _ => return Ok((result, None)),
        };
        let value = value.map_err(|e| unrepresentable(permit, e))?;
        let enforcer = &self.inner.gw.enforcer;
        match enforcer.decide_result_once(permit, kind, value) {
            ResultVerdict::Unchanged(v) => Ok((result, Some(v))),
            ResultVerdict::Pass(v) => retyped(&result, v)
                .map(|r| (r, None))
                .map_err(|e| unrepresentable(permit, e)),
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

/// Size of a tool result for the token estimate, without serializing it
/// again: the text it carries (binary content counts as its base64 text),
/// plus `structuredContent` unless a text block already mirrors it (the
/// spec asks tools to send both: the same data counts once).
pub(super) fn result_bytes(r: &ServerResult) -> usize {
    match r {
        ServerResult::CallToolResult(r) => {
            let content: usize = r
                .content
                .iter()
                .map(|c| match c.as_text() {
                    Some(t) => t.text.len(),
                    None => serde_json::to_vec(c).map(|v| v.len()).unwrap_or(0),
                })
                .sum();
            let structured = r.structured_content.as_ref().map_or(0, |v| {
                let compact = v.to_string();
                // The usual mirror is the compact JSON itself; a reformatted
                // one is parsed (only texts that look like JSON).
                let mirrored = r.content.iter().filter_map(|c| c.as_text()).any(|t| {
                    t.text == compact
                        || (t.text.trim_start().starts_with(['{', '['])
                            && serde_json::from_str::<serde_json::Value>(&t.text)
                                .is_ok_and(|x| x == *v))
                });
                if mirrored { 0 } else { compact.len() }
            });
            content + structured
        }
        other => serde_json::to_vec(other).map(|v| v.len()).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::ContentBlock;
    use serde_json::json;

    #[test]
    fn a_structured_result_mirrored_in_text_counts_once() {
        let data = json!({"temperature": 21.5, "unit": "C"});
        let text = data.to_string();
        let mirrored = CallToolResult::structured(data.clone());
        assert_eq!(
            result_bytes(&ServerResult::CallToolResult(mirrored)),
            text.len(),
            "the text block mirrors structuredContent"
        );
        let mut pretty = CallToolResult::structured(data.clone());
        pretty.content = vec![ContentBlock::text(
            serde_json::to_string_pretty(&data).unwrap(),
        )];
        assert_eq!(
            result_bytes(&ServerResult::CallToolResult(pretty)),
            serde_json::to_string_pretty(&data).unwrap().len(),
            "a reformatted mirror counts once too"
        );
        let mut summary = CallToolResult::success(vec![ContentBlock::text("21.5 C")]);
        summary.structured_content = Some(data);
        assert_eq!(
            result_bytes(&ServerResult::CallToolResult(summary)),
            "21.5 C".len() + text.len(),
            "a summary and the data: both count"
        );
    }
}
