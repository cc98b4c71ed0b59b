//! A logged result re-decided with a candidate policy (`gavel replay`):
//! the result step run on the output a result record holds. What replay
//! cannot know (docs/policy.md): the record holds the output *after* the
//! logged policy's redactions and filters, bounded — values already
//! removed, items already dropped and text past the bound are gone, so a
//! candidate can be seen to redact or filter *more*, never checked for
//! what it would have let through; a denied or withheld result is recorded
//! without its output and cannot be re-decided at all.

use std::path::Path;

use serde_json::Value;

use super::{OutputKind, Step};
use crate::decision::engine::PolicyEngine;
use crate::decision::paths::PathRoot;

/// The candidate's result decision of a logged output.
#[derive(Debug, Clone, PartialEq)]
pub struct Replayed {
    /// `pass`, `modified`, `deny` or `error`.
    pub outcome: &'static str,
    pub reasons: Vec<String>,
    /// As a record's `result.redactions` (`count`: matches in the logged
    /// output, which the logged policy did not remove).
    pub redactions: Vec<Value>,
    /// As a record's `result.filtered`.
    pub filtered: Vec<Value>,
}

/// Re-decides the output in a result record's `input` with `engine`;
/// `None` when the record holds no output (withheld) or is not a result
/// record's input.
pub fn replay(engine: &PolicyEngine, input: &Value) -> Option<Replayed> {
    let output = input.get("output")?;
    if output.get("withheld").is_some() {
        return None;
    }
    let kind = match output.get("kind")?.as_str()? {
        "tool_result" => OutputKind::ToolResult,
        "resource_contents" => OutputKind::ResourceContents,
        "prompt_messages" => OutputKind::PromptMessages,
        "completion" => OutputKind::Completion,
        "resource_list" => OutputKind::ResourceList,
        "input_required" => OutputKind::InputRound,
        _ => return None,
    };
    if !engine.has_result_rules() {
        return Some(Replayed {
            outcome: "pass",
            reasons: vec![],
            redactions: vec![],
            filtered: vec![],
        });
    }
    let mut result = output.clone();
    result.as_object_mut()?.remove("kind");
    let mut base = input.clone();
    base.as_object_mut()?.remove("output");
    let root = input
        .pointer("/action/path_root")
        .and_then(Value::as_str)
        .and_then(|r| PathRoot::new(Path::new(r)).ok());
    let step = Step {
        engine,
        input: &base,
        root: root.as_ref(),
        kind,
    };
    let o = step.run(&mut result);
    let reasons = match &o.error {
        Some((code, _)) => vec![code.to_string()],
        None => o.reasons.clone(),
    };
    Some(Replayed {
        outcome: o.label(),
        reasons,
        redactions: o.redactions,
        filtered: o.filtered,
    })
}

#[cfg(test)]
#[path = "replay_tests.rs"]
mod tests;
