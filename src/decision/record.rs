//! The enforcer's side of the decision record: the record of one decision
//! (its shape and masking are `audit::record`'s) written inside
//! [`Enforcer::decide`] before the decision takes effect (ARCHITECTURE.md,
//! invariant 4: the record precedes the effect), and what becomes of a
//! decision whose record cannot be written.
//!
//! A record that cannot be written — the write fails (disk full, I/O
//! error), or the bundle's `log.drop`/`log.mask` rules fail, which under
//! OPA's semantics means the event is not logged — would let a request take
//! effect with no trace. By default ([`OnWriteError::Deny`]) the decision
//! then becomes a denial with gavel's code `audit_unavailable`; `[log]
//! on_write_error = "allow"` keeps the decision as made (announced at
//! startup). An intended drop (`log.drop` true) is not a failure.

use std::time::Instant;

use serde_json::{Value, json};

use super::engine::PolicyEngine;
use super::{Decision, Enforcer};
use crate::audit::mask::MaskSettings;
pub(super) use crate::audit::record::RecordError;
use crate::audit::record::{DecisionRecord, LogRules, WrittenInput};
use crate::config::OnWriteError;

/// What a record carries besides the decision.
pub(super) struct Record<'a> {
    pub engine: Option<&'a PolicyEngine>,
    pub input: &'a Value,
    pub path: &'a str,
    pub bundles: &'a crate::audit::record::Bundles,
    pub policy: &'a str,
    pub fail_open: bool,
    pub eval_ns: u64,
    pub start: Instant,
    pub now: &'a str,
    /// For a tool call: the data classes the upstream declared in the tool's
    /// `_meta` (see [`DecisionRecord::upstream_classes`]).
    pub upstream_classes: Option<&'a [String]>,
    /// The request's span (`[telemetry]` on): the record's `trace_id` and
    /// `span_id`, as OPA's event has them.
    pub trace: Option<&'a crate::telemetry::SpanContext>,
    /// The agent's persona (`labels.persona`), when it matched one.
    pub persona: Option<&'a str>,
    /// Keep the record's `input` as written, for the record of the
    /// request's result: only when that result is decided
    /// (`ResultContext::wanted`), else the copy would be thrown away.
    pub keep_input: bool,
}

/// Whether a reason code may be a metrics label value as it is: gavel's
/// own codes and the codes in the server's reason catalog (any other is
/// counted as `other` by `audit::metrics`, which keeps labels bounded).
pub(super) fn reason_is_label(engine: Option<&PolicyEngine>, code: &str) -> bool {
    super::codes::is_gavel_code(code) || engine.is_some_and(|e| e.has_reason(code))
}

impl Enforcer {
    pub(super) fn decision_labels(
        &self,
        policy: &str,
        fail_open: bool,
        persona: Option<&str>,
    ) -> serde_json::Map<String, Value> {
        let mut l = self.labels();
        l.insert("policy".into(), json!(policy));
        l.insert("fail_open".into(), json!(fail_open.to_string()));
        if let Some(p) = persona {
            l.insert("persona".into(), json!(p));
        }
        l
    }

    /// Writes the record of `d` (nothing without a decision log, or when the
    /// bundle's `log.drop` says so); the shape and the masking are
    /// `audit::record`'s. Its `input` as written, when kept, for the
    /// record of the request's result.
    pub(super) fn log_decision(
        &self,
        d: &Decision,
        r: Record,
    ) -> Result<Option<WrittenInput>, RecordError> {
        let Some(log) = &self.log else {
            return Ok(None);
        };
        // A bundle without `log.drop`/`log.mask` rules: no rules, so the
        // record is written from its parts (`audit::stream`).
        let rules = r
            .engine
            .filter(|e| e.has_log_rules())
            .map(|e| move |event: &Value| e.log_rules(event).map_err(|e| e.to_string()));
        let record = DecisionRecord {
            decision_id: d.decision_id.as_deref(),
            timestamp: r.now,
            path: r.path,
            input: std::borrow::Cow::Borrowed(r.input),
            result: json!(d),
            bundles: r.bundles,
            labels: self.decision_labels(r.policy, r.fail_open, r.persona),
            eval_ns: r.eval_ns,
            decision_ns: r.start.elapsed().as_nanos() as u64,
            upstream_classes: r.upstream_classes,
            trace: r.trace.map(|t| (t.trace_id_hex(), t.span_id_hex())),
        };
        let keep = r.keep_input;
        record.write(
            log,
            rules.as_ref().map(|f| f as LogRules),
            &MaskSettings {
                secret_fields: &self.config.log.secret_fields,
                max_arg_bytes: self.config.log.max_arg_bytes,
            },
            keep,
        )
    }

    /// [`Enforcer::unrecorded`] for a record written outside `decide` (an
    /// approval step): whether `d`, allowed, became `audit_unavailable`.
    pub fn refuse_unrecorded(&self, d: &mut Decision, why: String) -> bool {
        self.unrecorded(d, &RecordError::Write(std::io::Error::other(why)))
    }

    /// The decision after its record could not be written: refused
    /// (`audit_unavailable`, same decision id) unless `on_write_error =
    /// "allow"`. Returns whether an allowed decision was turned into a deny
    /// (its rate-limit and budget charges are then given back by the caller).
    pub(super) fn unrecorded(&self, d: &mut Decision, e: &RecordError) -> bool {
        self.unrecorded_as(d, e, Unrecorded::Request)
    }

    /// [`Enforcer::unrecorded`], saying what became of `what`: a request
    /// refused, or a result withheld after its call was carried out.
    pub(super) fn unrecorded_as(
        &self,
        d: &mut Decision,
        e: &RecordError,
        what: Unrecorded,
    ) -> bool {
        let path = self
            .log
            .as_ref()
            .map(|l| l.path().display().to_string())
            .unwrap_or_default();
        if self.config.log.on_write_error == OnWriteError::Allow {
            tracing::warn!(decision_id = ?d.decision_id, "decision carried out without its record ([log] on_write_error = \"allow\"): {e}");
            return false;
        }
        let was_allowed = d.allow;
        let mut denied = Decision::deny(
            super::codes::ReasonCode::AuditUnavailable,
            format!(
                "The decision log at {path} cannot be written ({e}), and gavel does not carry out a decision it cannot record: {} Retrying will not help until an operator fixes the decision log (disk space, permissions, the bundle's log rules).",
                what.outcome()
            ),
        );
        denied.decision_id = d.decision_id.take();
        denied.policy_version = d.policy_version.take();
        *d = denied;
        was_allowed
    }
}

/// What a decision that could not be recorded was about.
#[derive(Debug, Clone, Copy)]
pub(super) enum Unrecorded {
    /// A request: it was refused, nothing reached the upstream.
    Request,
    /// An upstream's result: the call was carried out, its result withheld.
    Result,
    /// A server's resource list: its resources were left out of the list.
    List,
}

impl Unrecorded {
    fn outcome(self) -> &'static str {
        match self {
            Unrecorded::Request => "the request was refused.",
            Unrecorded::Result => {
                "the call itself has been carried out (do not repeat it), but its result was withheld."
            }
            Unrecorded::List => "the server's resources were left out of the resource list.",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Unrecorded, reason_is_label};

    #[test]
    fn an_unrecorded_result_says_the_call_happened() {
        assert!(Unrecorded::Request.outcome().contains("refused"));
        let r = Unrecorded::Result.outcome();
        assert!(r.contains("carried out") && r.contains("withheld"), "{r}");
    }

    #[test]
    fn gavel_codes_are_labels_and_other_codes_need_a_catalog() {
        for code in [
            "policy_timeout",
            "rate_limited",
            "state_unavailable",
            "audit_unavailable",
            "approval_declined",
        ] {
            assert!(reason_is_label(None, code), "{code}");
        }
        assert!(!reason_is_label(None, "made_up_code"));
        assert!(!reason_is_label(None, "path_outside_scope"));
    }
}
