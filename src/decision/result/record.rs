//! The record of a result decision (docs/decision-log.md, "Result
//! records"): its own decision-log event, with its own `decision_id` and
//! `result_of` naming the request's, written before the host gets the
//! result — a record that cannot be written withholds it, as a request's
//! does (`audit_unavailable`, unless `[log] on_write_error = "allow"`).
//!
//! What it holds: the request's input with `output` — the output *after*
//! redaction and filtering, bounded as the policy saw it and masked as
//! arguments are; a denied or withheld result only as its size and digest.
//! The result says what was redacted (pointer or pattern, by which rule,
//! how many matches) and filtered (which rule, which items, how many
//! evaluated and dropped) — never the values removed.

use std::time::Instant;

use serde_json::{Value, json};

use super::super::record::{RecordError, Unrecorded};
use super::{Outcome, OutputKind, Step};
use crate::audit::mask::MaskSettings;
use crate::audit::record::LogRules;
use crate::decision::engine::PolicyEngine;
use crate::decision::{Decision, Enforcer};

pub(super) struct ResultRecord<'a> {
    pub engine: &'a PolicyEngine,
    pub id: &'a str,
    /// The request's decision id (`result_of`); none for a resource list.
    pub request_id: Option<&'a str>,
    /// The request's decision input (owned when the permit's result
    /// context was spent on it: `Enforcer::decide_result_once`).
    pub cx: std::borrow::Cow<'a, Value>,
    /// `input.output` of the result as the host gets it.
    pub output: Value,
    pub kind: OutputKind,
    pub outcome: &'a Outcome,
    pub start: Instant,
}

impl<'a> ResultRecord<'a> {
    /// The record of what `step` made of `result` (as the host gets it).
    pub fn new(
        step: &Step<'a>,
        id: &'a str,
        request_id: Option<&'a str>,
        result: &Value,
        outcome: &'a Outcome,
        start: Instant,
    ) -> Self {
        ResultRecord {
            engine: step.engine,
            id,
            request_id,
            cx: std::borrow::Cow::Borrowed(step.input),
            output: super::input::output(step.kind, result),
            kind: step.kind,
            outcome,
            start,
        }
    }

    fn event(self, d: &Decision, labels: serde_json::Map<String, Value>, now: &str) -> Value {
        let o = self.outcome;
        let mut input = self.cx.into_owned();
        let output = if o.error.is_some() || o.deny {
            let bytes = serde_json::to_vec(&self.output).unwrap_or_default();
            json!({"kind": self.kind.as_str(), "withheld": true, "size_bytes": bytes.len(),
                   "sha256": crate::bundle::canonical::sha256_hex(&bytes)})
        } else {
            self.output
        };
        if let Value::Object(m) = &mut input {
            m.insert("output".into(), output);
        }
        let mut result = json!({
            "allow": d.allow,
            "outcome": o.label(),
            "reasons": d.reasons,
            "redactions": o.redactions,
            "filtered": o.filtered,
            "policy_version": d.policy_version,
            "matched_rules": d.matched_rules,
        });
        if let Some(r) = &d.remediation {
            result["remediation"] = json!(r);
        }
        if let Some((_, text)) = &o.error {
            result["error"] = json!(text);
        }
        let mut labels = labels;
        labels.insert("policy".into(), json!("rego"));
        labels.insert("fail_open".into(), json!("false"));
        // Member by member, the owned values moved in (`json!` would
        // serialize the input and result into copies:
        // `audit::record::DecisionRecord::event` says why).
        let mut event = serde_json::Map::new();
        event.insert("decision_id".into(), json!(self.id));
        event.insert("result_of".into(), json!(self.request_id));
        event.insert("timestamp".into(), json!(now));
        event.insert("path".into(), json!(self.engine.result_record_path()));
        event.insert("input".into(), input);
        event.insert("result".into(), result);
        event.insert("bundles".into(), self.engine.bundles_json().clone());
        event.insert("labels".into(), Value::Object(labels));
        event.insert(
            "metrics".into(),
            json!({"timer_rego_query_eval_ns": o.eval_ns,
                   "timer_gavel_decision_ns": self.start.elapsed().as_nanos() as u64}),
        );
        Value::Object(event)
    }
}

impl Enforcer {
    /// Writes a result record (nothing without a decision log): the
    /// bundle's `log.drop`/`log.mask` rules and gavel's masking apply as to
    /// a request's record.
    fn log_result(&self, r: ResultRecord, d: &Decision) -> Result<(), RecordError> {
        let Some(log) = &self.log else { return Ok(()) };
        let engine = r.engine;
        let id = r.id.to_string();
        let event = r.event(d, self.labels(), &self.now_rfc3339());
        let rules = move |event: &Value| engine.log_rules(event).map_err(|e| e.to_string());
        crate::audit::record::write_event(
            event,
            Some(&id),
            log,
            Some(&rules as LogRules),
            &MaskSettings {
                secret_fields: &self.config.log.secret_fields,
                max_arg_bytes: self.config.log.max_arg_bytes,
            },
        )
    }
}

impl Enforcer {
    /// Writes the record of result decision `d` and counts it (as `tool`
    /// of `server`). True when the record could not be written and `d`
    /// now withholds the result (`what` says what became of it).
    pub(super) fn settle(
        &self,
        r: ResultRecord,
        d: &mut Decision,
        (server, tool): (&str, &str),
        what: Unrecorded,
    ) -> bool {
        let outcome = r.outcome;
        let unrecorded = match self.log_result(r, d) {
            Ok(()) => false,
            Err(e) => self.unrecorded_as(d, &e, what),
        };
        count(server, tool, outcome, unrecorded);
        unrecorded
    }
}

/// Counts a result decision in the Prometheus metrics
/// (`gavel_result_decisions_total`, and the redactions and dropped items
/// of each rule): `unrecorded` — its record could not be written, so it was
/// withheld — counts as `error` whatever the rules said.
fn count(server: &str, tool: &str, o: &Outcome, unrecorded: bool) {
    let m = crate::audit::metrics::global();
    m.result_decision(server, tool, if unrecorded { "error" } else { o.label() });
    let n = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    for r in &o.redactions {
        // A pattern by its name (declared by the bundle: bounded); every
        // pointer as `pointer` (policy-chosen strings are no label).
        let what = match r.get("pattern") {
            Some(_) => s(r, "pattern"),
            None => "pointer".into(),
        };
        m.result_redactions(server, &s(r, "rule"), &what, n(r, "count"));
    }
    for f in &o.filtered {
        m.result_filtered(server, &s(f, "rule"), &s(f, "items"), n(f, "dropped"));
    }
}
