//! The records of the decision log: their shape (OPA's decision-log event
//! for a decision, gavel's own for an approval step) and the way a decision
//! record is finished before it is written — the bundle's `log.drop` /
//! `log.mask` rules, then gavel's masking ([`super::mask`]). The format is
//! documented in docs/decision-log.md; the one reader is [`super::read`].
//!
//! The decision module composes a record inside `Enforcer::decide`, before
//! the decision takes effect (ARCHITECTURE.md, invariant 4); the approval
//! step writes one per step. What to do when a record cannot be written is
//! the caller's (a decision then becomes `audit_unavailable`): this module
//! only says why ([`RecordError`]).

use serde_json::{Value, json};

use super::DecisionLog;
use super::mask::{MaskSettings, apply_mask_rules, mask_event};
pub use super::stream::{Bundles, WrittenInput};

/// This process's instance id: OPA's `labels.id`, a UUIDv4 drawn once per
/// gavel process, so a receiver can tell apart the processes that share a
/// log file or ship to it.
pub fn instance_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| uuid::Uuid::new_v4().hyphenated().to_string())
}

/// Why a decision record was not written.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{0}")]
    Write(#[from] std::io::Error),
    #[error("the bundle's decision-log rules (log.drop/log.mask) failed: {0}")]
    Rules(String),
}

/// The bundle's decision-log rules over an event: `Ok((true, _))` drops it,
/// `Ok((false, mask))` masks the paths in `mask`; an error means the event
/// is not logged (OPA's semantics).
pub type LogRules<'a> = &'a dyn Fn(&Value) -> Result<(bool, Vec<Value>), String>;

/// One decision, as its record says it.
pub struct DecisionRecord<'a> {
    pub decision_id: Option<&'a str>,
    /// RFC 3339, the enforcer's clock.
    pub timestamp: &'a str,
    /// The policy path decided (`gavel/static` for static rules).
    pub path: &'a str,
    /// Borrowed when the caller keeps it (the enforcer hands it to the
    /// result step after the record is written).
    pub input: std::borrow::Cow<'a, Value>,
    /// The decision (v1 contract), serialized.
    pub result: Value,
    pub bundles: &'a Bundles,
    pub labels: serde_json::Map<String, Value>,
    pub eval_ns: u64,
    pub decision_ns: u64,
    /// For a tool call: the data classes the upstream declared in the tool's
    /// `_meta` (kept apart so that replay can recompute the classification
    /// with a candidate bundle and still add these).
    pub upstream_classes: Option<&'a [String]>,
    /// OPA's `trace_id` and `span_id` (hex): the span the decision was made
    /// in, when tracing is on (`[telemetry]`).
    pub trace: Option<(String, String)>,
}

impl DecisionRecord<'_> {
    /// The decision-log event, before masking. Built member by member with
    /// the owned values moved in: `json!` would serialize each value (the
    /// whole input, the result, the bundles) into a copy and drop the
    /// original — most of a record's cost before this was written so.
    pub fn event(self) -> Value {
        let mut event = serde_json::Map::new();
        event.insert("decision_id".into(), json!(self.decision_id));
        event.insert("timestamp".into(), json!(self.timestamp));
        event.insert("path".into(), json!(self.path));
        event.insert("input".into(), self.input.into_owned());
        event.insert("result".into(), self.result);
        event.insert("bundles".into(), self.bundles.value().clone());
        event.insert("labels".into(), Value::Object(self.labels));
        event.insert(
            "metrics".into(),
            json!({"timer_rego_query_eval_ns": self.eval_ns, "timer_gavel_decision_ns": self.decision_ns}),
        );
        if let Some(classes) = self.upstream_classes {
            event.insert("upstream_data_classes".into(), json!(classes));
        }
        if let Some((trace_id, span_id)) = self.trace {
            event.insert("trace_id".into(), json!(trace_id));
            event.insert("span_id".into(), json!(span_id));
        }
        Value::Object(event)
    }

    /// The record's line, masked, written from its parts
    /// ([`super::stream`]): the bytes `event`, masked and serialized, gives.
    pub fn line(&self, mask: &MaskSettings) -> Vec<u8> {
        super::stream::line(&self.parts(), mask)
    }

    /// [`Self::line`], with its `input` as written for the record of the
    /// request's result ([`super::stream::line_keeping`]).
    pub fn line_keeping(&self, mask: &MaskSettings) -> (Vec<u8>, Option<WrittenInput>) {
        super::stream::line_keeping(&self.parts(), mask)
    }

    fn parts(&self) -> super::stream::Parts<'_, Value> {
        super::stream::Parts {
            bundles: self.bundles,
            decision_id: self.decision_id,
            result_of: None,
            timestamp: self.timestamp,
            path: self.path,
            input: &self.input,
            output: None,
            written: None,
            result: &self.result,
            labels: &self.labels,
            eval_ns: self.eval_ns,
            decision_ns: self.decision_ns,
            upstream_classes: self.upstream_classes,
            trace: self.trace.as_ref().map(|(t, s)| (t.as_str(), s.as_str())),
        }
    }

    /// Writes the record: the bundle's `rules` first (a drop is not a
    /// failure), then gavel's masking, then one line to `log`. Without
    /// rules (a bundle that has none passes `None`) the line is written
    /// from the parts, no event built, and — with `keep` — its `input` as
    /// written comes back for the record of the request's result.
    pub fn write(
        self,
        log: &DecisionLog,
        rules: Option<LogRules>,
        mask: &MaskSettings,
        keep: bool,
    ) -> Result<Option<WrittenInput>, RecordError> {
        if rules.is_none() {
            let (line, written) = if keep {
                self.line_keeping(mask)
            } else {
                (self.line(mask), None)
            };
            log.write_line(line)?;
            return Ok(written);
        }
        let id = self.decision_id;
        write_event(self.event(), id, log, rules, mask).map(|()| None)
    }
}

/// Finishes and writes one event shaped like a decision's (a decision, a result,
/// a policy query): the bundle's `rules` first (a drop is not a failure),
/// then gavel's masking, then one line to `log`. `id` names it in errors.
pub fn write_event(
    mut event: Value,
    id: Option<&str>,
    log: &DecisionLog,
    rules: Option<LogRules>,
    mask: &MaskSettings,
) -> Result<(), RecordError> {
    if let Some(rules) = rules {
        match rules(&event) {
            Ok((true, _)) => return Ok(()),
            Ok((false, paths)) => {
                // Items not applied are warned about there.
                apply_mask_rules(&mut event, &Value::Array(paths));
            }
            Err(e) => {
                // OPA semantics: a failing drop/mask rule means the event is not logged.
                log.count_failure();
                tracing::error!(id = ?id, "decision-log rules failed, event not logged: {e}");
                return Err(RecordError::Rules(e));
            }
        }
    }
    mask_event(&mut event, mask);
    Ok(log.write(&event)?)
}

/// One step of a human approval (docs/decision-log.md): its own record,
/// with the decision id it belongs to; the step that settles the approval is
/// final and carries the effective result.
pub struct ApprovalStep<'a> {
    pub decision_id: Option<&'a str>,
    pub timestamp: &'a str,
    /// remembered, requested, approved, declined, cancelled, timeout,
    /// failed, unavailable.
    pub step: &'a str,
    /// The action type (`tool_call`, …).
    pub kind: &'a str,
    pub server: &'a str,
    pub tool: &'a str,
    pub args_sha256: String,
    pub reason: &'a str,
    pub scope: &'a str,
    pub remember_seconds: Option<u64>,
    pub labels: Value,
    /// The effective result, on the step that settles the approval.
    pub settled: Option<Value>,
}

impl ApprovalStep<'_> {
    pub fn event(&self) -> Value {
        let mut record = json!({
            "decision_id": self.decision_id,
            "timestamp": self.timestamp,
            "path": "gavel/approval",
            // OPA's `input` is what was decided: here the action the step
            // is about. Its arguments are only digested: they stand,
            // masked by the bundle's `log.mask` rules, in the decision
            // record with the same id, which these steps cannot apply.
            "input": {"action": {
                "type": self.kind,
                "server": self.server,
                "tool": self.tool,
                "args_sha256": self.args_sha256,
            }},
            "approval": {
                "step": self.step,
                "final": self.settled.is_some(),
                "type": self.kind,
                "server": self.server,
                "tool": self.tool,
                "args_sha256": self.args_sha256,
                "reason": self.reason,
                "scope": self.scope,
                "remember_seconds": self.remember_seconds,
            },
            "labels": self.labels,
        });
        if let Some(result) = &self.settled {
            record["result"] = result.clone();
        }
        record
    }

    pub fn write(&self, log: &DecisionLog) -> std::io::Result<()> {
        log.write(&self.event())
    }
}
