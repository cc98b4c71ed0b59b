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
    /// `cx` as the request's record wrote it, when kept.
    pub written: Option<&'a crate::audit::record::WrittenInput>,
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
            written: None,
            output: super::input::output(step.kind, result),
            kind: step.kind,
            outcome,
            start,
        }
    }

    /// `input.output` as recorded: a denied or withheld result only as
    /// its kind, size and digest (`None`: the output as it is).
    fn withheld(&self) -> Option<Value> {
        let o = self.outcome;
        (o.error.is_some() || o.deny).then(|| {
            let bytes = serde_json::to_vec(&self.output).unwrap_or_default();
            json!({"kind": self.kind.as_str(), "withheld": true, "size_bytes": bytes.len(),
                   "sha256": crate::bundle::canonical::sha256_hex(&bytes)})
        })
    }

    /// The record's `result`.
    fn result(&self, d: &Decision) -> Value {
        let o = self.outcome;
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
        result
    }

    /// [`Self::result`] as a record writes it: the same members, in the
    /// sorted order `Self::result`'s map serializes them in, borrowed.
    fn summary<'s>(&'s self, d: &'s Decision) -> Summary<'s> {
        let o = self.outcome;
        Summary {
            allow: d.allow,
            error: o.error.as_ref().map(|(_, text)| text.as_str()),
            filtered: &o.filtered,
            matched_rules: &d.matched_rules,
            outcome: o.label(),
            policy_version: d.policy_version.as_deref(),
            reasons: &d.reasons,
            redactions: &o.redactions,
            remediation: d.remediation.as_deref(),
        }
    }

    fn labels(mut labels: serde_json::Map<String, Value>) -> serde_json::Map<String, Value> {
        labels.insert("policy".into(), json!("rego"));
        labels.insert("fail_open".into(), json!("false"));
        labels
    }

    /// The record as an event (what a bundle's `log.drop`/`log.mask`
    /// rules read), before masking.
    fn event(self, d: &Decision, labels: serde_json::Map<String, Value>, now: &str) -> Value {
        let output = self.withheld();
        let result = self.result(d);
        let o = self.outcome;
        let mut input = self.cx.into_owned();
        if let Value::Object(m) = &mut input {
            m.insert("output".into(), output.unwrap_or(self.output));
        }
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
        event.insert("labels".into(), Value::Object(Self::labels(labels)));
        event.insert(
            "metrics".into(),
            json!({"timer_rego_query_eval_ns": o.eval_ns,
                   "timer_gavel_decision_ns": self.start.elapsed().as_nanos() as u64}),
        );
        Value::Object(event)
    }

    /// The record's line, masked, written from its parts
    /// (`audit::stream`): the bytes [`Self::event`], masked and
    /// serialized, gives — without copying the request's input into it.
    fn line(
        &self,
        d: &Decision,
        labels: serde_json::Map<String, Value>,
        now: &str,
        mask: &MaskSettings,
    ) -> Vec<u8> {
        let withheld = self.withheld();
        let result = self.summary(d);
        let labels = Self::labels(labels);
        let path = self.engine.result_record_path();
        crate::audit::stream::line(
            &crate::audit::stream::Parts {
                bundles: self.engine.record_bundles(),
                decision_id: Some(self.id),
                result_of: Some(self.request_id),
                timestamp: now,
                path: &path,
                input: &self.cx,
                output: Some(withheld.as_ref().unwrap_or(&self.output)),
                written: self.written,
                result: &result,
                labels: &labels,
                eval_ns: self.outcome.eval_ns,
                decision_ns: self.start.elapsed().as_nanos() as u64,
                upstream_classes: None,
                trace: None,
            },
            mask,
        )
    }
}

/// A result record's `result`, borrowed from the decision and its outcome:
/// the members of [`ResultRecord::result`]'s map, declared in its sorted
/// order, so serializing it writes the bytes that map does without
/// building it (issue 17). Two records per call built it only to write it.
#[derive(serde::Serialize)]
struct Summary<'a> {
    allow: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    filtered: &'a [Value],
    matched_rules: &'a [String],
    outcome: &'a str,
    /// `null` when none, as in the map.
    policy_version: Option<&'a str>,
    reasons: &'a [String],
    redactions: &'a [Value],
    #[serde(skip_serializing_if = "Option::is_none")]
    remediation: Option<&'a str>,
}

impl Enforcer {
    /// Writes a result record (nothing without a decision log): the
    /// bundle's `log.drop`/`log.mask` rules and gavel's masking apply as to
    /// a request's record.
    fn log_result(&self, r: ResultRecord, d: &Decision) -> Result<(), RecordError> {
        let Some(log) = &self.log else { return Ok(()) };
        let engine = r.engine;
        let mask = MaskSettings {
            secret_fields: &self.config.log.secret_fields,
            max_arg_bytes: self.config.log.max_arg_bytes,
        };
        if !engine.has_log_rules() {
            // Nothing reads the event: written from its parts.
            return Ok(log.write_line(r.line(d, self.labels(), &self.now_rfc3339(), &mask))?);
        }
        let id = r.id.to_string();
        let event = r.event(d, self.labels(), &self.now_rfc3339());
        let rules = move |event: &Value| engine.log_rules(event).map_err(|e| e.to_string());
        crate::audit::record::write_event(event, Some(&id), log, Some(&rules as LogRules), &mask)
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

#[cfg(test)]
mod tests {
    //! A result record written from its parts is byte for byte the record
    //! built as an event, masked and serialized.
    use std::borrow::Cow;
    use std::time::Instant;

    use serde_json::{Value, json};

    use super::super::{Outcome, OutputKind};
    use super::ResultRecord;
    use crate::audit::mask::{MaskSettings, mask_event};
    use crate::audit::record::WrittenInput;
    use crate::decision::Decision;
    use crate::decision::codes::ReasonCode;
    use crate::decision::engine::{EngineOptions, PolicyEngine};

    fn engine(dir: &std::path::Path) -> PolicyEngine {
        std::fs::create_dir_all(dir.join("p")).unwrap();
        std::fs::write(
            dir.join(".manifest"),
            json!({"revision": "2.\u{1}0", "roots": ["p"]}).to_string(),
        )
        .unwrap();
        std::fs::write(
            dir.join("p/policy.rego"),
            "package p\ndecision := {\"allow\": true}\nresult := {}\n",
        )
        .unwrap();
        let b = crate::bundle::load_bundle(dir, &Default::default()).unwrap();
        let opts = EngineOptions {
            eval_timeout: std::time::Duration::from_secs(5),
            strict_input: false,
        };
        PolicyEngine::build("srv", vec![std::sync::Arc::new(b)], &opts).unwrap()
    }

    /// The line with its decision timer's digits taken out: the timer
    /// differs between two writes, the rest must not.
    fn untimed(line: &str) -> String {
        const KEY: &str = "\"timer_gavel_decision_ns\":";
        let at = line.find(KEY).expect("a timer") + KEY.len();
        let digits = line[at..].bytes().take_while(u8::is_ascii_digit).count();
        assert!(digits > 0, "{line}");
        format!("{}{}", &line[..at], &line[at + digits..])
    }

    /// `input` as a request's record writes it (`audit::stream`).
    fn kept_of(input: &Value, mask: &MaskSettings) -> Option<WrittenInput> {
        let labels = serde_json::Map::new();
        let parts = crate::audit::stream::Parts {
            bundles: crate::audit::record::Bundles::none(),
            decision_id: Some("q-1"),
            result_of: None,
            timestamp: "now",
            path: "p",
            input,
            output: None,
            written: None,
            result: &Value::Null,
            labels: &labels,
            eval_ns: 0,
            decision_ns: 0,
            upstream_classes: None,
            trace: None,
        };
        crate::audit::stream::line_keeping(&parts, mask).1
    }

    fn outcomes() -> Vec<Outcome> {
        vec![
            Outcome::default(),
            Outcome {
                redactions: vec![
                    json!({"bundle": "b", "count": 2, "pattern": "email", "rule": "data.p.result"}),
                ],
                filtered: vec![
                    json!({"rule": "data.p.result", "items": "lines", "dropped": 1, "evaluated": 3}),
                ],
                eval_ns: 12_345,
                ..Default::default()
            },
            Outcome {
                deny: true,
                reasons: vec!["secret_in_output".into()],
                ..Default::default()
            },
            Outcome::failed(ReasonCode::PolicyError, "the rule \"failed\"\u{0}".into()),
        ]
    }

    #[test]
    fn a_result_record_from_its_parts_is_the_built_one_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path());
        let secret_fields = vec!["session".to_string()];
        let request = json!({
            "action": {"args": {"path": "a/b", "password": "p", "big": "x".repeat(100)}, "canonical_args": {"path": "/a/b"}, "tool": "read"},
            "context": {"session_age_seconds": 1.5, "budget": {"used_fraction": 2.7e-7}},
            "user": {"id": "ü\u{2028}"},
        });
        let outputs = [
            json!({"content": [{"type": "text", "text": "hi \"there\"\n", "token": "t"}], "isError": false, "_meta": {"session": "s"}}),
            json!({"contents": [{"uri": "file:///x", "blob": "AAAA"}]}),
            json!(null),
        ];
        let decisions: Vec<Decision> = vec![
            serde_json::from_value(
                json!({"allow": true, "policy_version": "b@2", "matched_rules": ["data.p.result"]}),
            )
            .unwrap(),
            serde_json::from_value(
                json!({"allow": false, "reasons": ["r"], "remediation": "Ask \u{7}an admin"}),
            )
            .unwrap(),
        ];
        // Inputs whose members all sort before `output`, all after it.
        let before = json!({"action": {"args": {"password": "p"}}});
        let after = json!({"user": {"id": "u", "token": "t"}});
        let inputs = [&request, &Value::Null, &before, &after];
        let mut n = 0;
        for max_arg_bytes in [64, 1 << 20] {
            let mask = MaskSettings {
                secret_fields: &secret_fields,
                max_arg_bytes,
            };
            let other = MaskSettings {
                secret_fields: &[],
                max_arg_bytes: 1,
            };
            for outcome in &outcomes() {
                for output in &outputs {
                    for d in &decisions {
                        for input in inputs {
                            // The input as the request's record writes
                            // it, with this masking and with another.
                            let kept = kept_of(input, &mask);
                            assert_eq!(kept.is_some(), input.is_object());
                            let kept_other = kept_of(input, &other);
                            for written in [None, kept.as_ref(), kept_other.as_ref()] {
                                let start = Instant::now();
                                let record = || ResultRecord {
                                    engine: &engine,
                                    id: "r-1",
                                    request_id: (n % 2 == 0).then_some("q-1"),
                                    cx: Cow::Borrowed(input),
                                    written,
                                    output: output.clone(),
                                    kind: OutputKind::ToolResult,
                                    outcome,
                                    start,
                                };
                                let mut labels = serde_json::Map::new();
                                labels.insert("app".into(), json!("gavel"));
                                let streamed = record().line(d, labels.clone(), "now", &mask);
                                let streamed = String::from_utf8(streamed).unwrap();
                                let mut event = record().event(d, labels, "now");
                                mask_event(&mut event, &mask);
                                let expected =
                                    format!("{}\n", serde_json::to_string(&event).unwrap());
                                assert_eq!(untimed(&streamed), untimed(&expected));
                                n += 1;
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(n, 2 * 4 * 3 * 2 * 4 * 3);
    }
}
