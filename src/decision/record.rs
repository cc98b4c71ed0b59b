//! The decision record: OPA's decision-log event for one decision, masked,
//! written inside [`Enforcer::decide`] before the decision takes effect
//! (ARCHITECTURE.md, invariant 4: the record precedes the effect).
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
use crate::audit::mask::{MaskSettings, mask_event};
use crate::config::OnWriteError;

/// Why a decision record was not written.
#[derive(Debug, thiserror::Error)]
pub(super) enum RecordError {
    #[error("{0}")]
    Write(#[from] std::io::Error),
    #[error("the bundle's decision-log rules (log.drop/log.mask) failed: {0}")]
    Rules(String),
}

/// What a record carries besides the decision.
pub(super) struct Record<'a> {
    pub engine: Option<&'a PolicyEngine>,
    pub input: Value,
    pub path: &'a str,
    pub bundles: Value,
    pub policy: &'a str,
    pub fail_open: bool,
    pub eval_ns: u64,
    pub start: Instant,
    pub now: &'a str,
    /// For a tool call: the data classes the upstream declared in the tool's
    /// `_meta` (kept apart so that replay can recompute the classification
    /// with a candidate bundle and still add these).
    pub upstream_classes: Option<&'a [String]>,
}

impl Enforcer {
    fn decision_labels(&self, policy: &str, fail_open: bool) -> Value {
        let mut l = self.labels();
        l.insert("policy".into(), json!(policy));
        l.insert("fail_open".into(), json!(fail_open.to_string()));
        Value::Object(l)
    }

    /// Writes the record of `d` (nothing without a decision log, or when the
    /// bundle's `log.drop` says so).
    pub(super) fn log_decision(&self, d: &Decision, r: Record) -> Result<(), RecordError> {
        let Some(log) = &self.log else { return Ok(()) };
        let mut event = json!({
            "decision_id": d.decision_id,
            "timestamp": r.now,
            "path": r.path,
            "input": r.input,
            "result": d,
            "bundles": r.bundles,
            "labels": self.decision_labels(r.policy, r.fail_open),
            "metrics": {"timer_rego_query_eval_ns": r.eval_ns, "timer_gavel_decision_ns": r.start.elapsed().as_nanos() as u64},
        });
        if let Some(classes) = r.upstream_classes {
            event["upstream_data_classes"] = json!(classes);
        }
        if let Some(engine) = r.engine {
            match engine.log_rules(&event) {
                Ok((true, _)) => return Ok(()),
                Ok((false, mask)) => {
                    // Items not applied are warned about there.
                    crate::audit::mask::apply_mask_rules(&mut event, &Value::Array(mask));
                }
                Err(e) => {
                    // OPA semantics: a failing drop/mask rule means the event is not logged.
                    log.count_failure();
                    tracing::error!(decision_id = ?d.decision_id, "decision-log rules failed, event not logged: {e}");
                    return Err(RecordError::Rules(e.to_string()));
                }
            }
        }
        mask_event(
            &mut event,
            &MaskSettings {
                secret_fields: &self.config.log.secret_fields,
                max_arg_bytes: self.config.log.max_arg_bytes,
            },
        );
        Ok(log.write(&event)?)
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
                "The decision log at {path} cannot be written ({e}), and gavel does not carry out a decision it cannot record: the request was refused. Retrying will not help until an operator fixes the decision log (disk space, permissions, the bundle's log rules)."
            ),
        );
        denied.decision_id = d.decision_id.take();
        denied.policy_version = d.policy_version.take();
        *d = denied;
        was_allowed
    }
}
