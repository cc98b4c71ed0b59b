//! Reading one layer's answer: the decision contract v1 object a bundle's
//! decision rule returns, type-checked field by field.
//!
//! Two shapes are accepted, because policies are written both ways: the flat
//! contract (`{allow, reasons, remediation, appeal_path, audit_required}`)
//! and the production pattern's nested one (`{allow, reasons, remediation,
//! metadata: {policy_version, matched_rules, rate_limit_remaining,
//! audit_required, appeal_path}}`). Precedence when both give a field: the
//! top-level value wins, except `audit_required`, which is true when either
//! says so (the stricter reading). The policy's own `policy_version`,
//! `matched_rules` and `rate_limit_remaining` are kept as [`PolicyMetadata`]
//! beside gavel's, never replaced by them.
//!
//! A key gavel does not understand is never silently dropped: it is listed in
//! [`LayerDecision::unknown`] and logged (once per rule and key, see
//! `Loaded::warn_unknown`), and the load-time lint warns about literal keys
//! (`bundle::lint::decision_shape`).

use serde_json::{Map, Value};

use super::super::codes::ReasonCode;
use super::super::contract::{Approval, PolicyMetadata};
use super::super::layers::{Layer, LayerDecision};
use super::EngineError;

/// Top-level keys of a layer's answer that gavel reads.
pub const DECISION_KEYS: &[&str] = &[
    "allow",
    "reasons",
    "remediation",
    "appeal_path",
    "audit_required",
    "require_approval",
    "waive",
    "metadata",
    "policy_version",
    "matched_rules",
    "rate_limit_remaining",
];

/// Keys of the nested `metadata` object that gavel reads.
pub const METADATA_KEYS: &[&str] = &[
    "appeal_path",
    "audit_required",
    "policy_version",
    "matched_rules",
    "rate_limit_remaining",
];

/// Decision contract v1 for one bundle: an object with a boolean `allow`
/// (optional, and ignored, for an override layer), optional `reasons`,
/// `remediation`, `appeal_path`, `require_approval`, `audit_required`, and
/// `waive` (override layer only), flat or under `metadata` (module doc). An
/// undefined decision denies with `no_decision`: a policy that says nothing
/// must not let a request through. Fields are checked in that order; the
/// first wrong one is the error.
pub(super) fn parse_decision(
    rule: &str,
    bundle: &str,
    layer: Layer,
    v: Value,
) -> Result<LayerDecision, EngineError> {
    let obj = match v {
        Value::Null => return Ok(undefined(rule, bundle)),
        Value::Object(o) => o,
        other => {
            return Err(bad_decision(
                rule,
                format!("expected an object with allow, got {other}"),
            ));
        }
    };
    let top = Fields { obj: &obj, rule };
    let allow = match obj.get("allow") {
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(top.bad(format!("allow must be a boolean, got {other}"))),
        None if layer == Layer::Override => false,
        None => return Err(top.bad("missing allow".into())),
    };
    let reasons = top.strings("reasons")?;
    let waive = top.strings("waive")?;
    if !waive.is_empty() && layer != Layer::Override {
        return Err(top.bad(format!(
            "waive is only allowed in an override layer (this bundle's layer is {}); set metadata.gavel.layer = \"override\" or drop waive",
            layer.as_str()
        )));
    }
    let empty = Map::new();
    let meta_obj = match obj.get("metadata") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(other) => return Err(top.bad(format!("metadata must be an object, got {other}"))),
    };
    let meta = Fields {
        obj: meta_obj,
        rule,
    };
    let mut unknown = unknown_keys(&obj, DECISION_KEYS, "");
    unknown.extend(unknown_keys(meta_obj, METADATA_KEYS, "metadata."));
    Ok(LayerDecision {
        bundle: bundle.into(),
        rule: rule.into(),
        allow,
        reasons,
        waive,
        remediation: top.text("remediation")?,
        appeal_path: top.text("appeal_path")?.or(meta.text("appeal_path")?),
        require_approval: top.approval()?,
        audit_required: top.flag("audit_required")? | meta.flag("audit_required")?,
        own: own_metadata(bundle, &top, &meta)?,
        unknown,
        ..Default::default()
    })
}

/// The policy's account of itself: top-level keys first, then `metadata`.
fn own_metadata(
    bundle: &str,
    top: &Fields<'_>,
    meta: &Fields<'_>,
) -> Result<PolicyMetadata, EngineError> {
    let matched_rules = match top.strings("matched_rules")? {
        m if m.is_empty() => meta.strings("matched_rules")?,
        m => m,
    };
    Ok(PolicyMetadata {
        bundle: bundle.into(),
        policy_version: top.text("policy_version")?.or(meta.text("policy_version")?),
        matched_rules,
        rate_limit_remaining: top
            .count("rate_limit_remaining")?
            .or(meta.count("rate_limit_remaining")?),
    })
}

/// Keys of `obj` not in `known`, prefixed (`metadata.`), sorted.
fn unknown_keys(obj: &Map<String, Value>, known: &[&str], prefix: &str) -> Vec<String> {
    obj.keys()
        .filter(|k| !known.contains(&k.as_str()))
        .map(|k| format!("{prefix}{k}"))
        .collect()
}

/// Distinct `(rule, key)` pairs logged so far, bounded: a policy can make
/// keys up from its input, and the log must not grow with them.
static WARNED: std::sync::Mutex<Option<std::collections::HashSet<(String, String)>>> =
    std::sync::Mutex::new(None);
const MAX_WARNED: usize = 256;

/// Logs, once per rule and key, the keys of an answer gavel ignored, so an
/// author who misspells `apeal_path` or invents a field learns it from the
/// log rather than from an agent that was never told where to appeal.
pub(super) fn warn_unknown(rule: &str, unknown: &[String]) {
    use crate::sync::Recover;
    if unknown.is_empty() {
        return;
    }
    let mut warned = WARNED.lock().recover();
    let set = warned.get_or_insert_with(Default::default);
    for key in unknown {
        if set.len() >= MAX_WARNED {
            return;
        }
        if set.insert((rule.to_string(), key.clone())) {
            tracing::warn!(
                rule = %rule,
                key = %crate::text::escape_controls(key),
                "the policy's decision has a key gavel does not understand; it is ignored (schemas/decision.v1.json lists the keys; `metadata` may hold appeal_path, audit_required, policy_version, matched_rules, rate_limit_remaining)"
            );
        }
    }
}

/// The decision of a rule that gave none: deny, `no_decision`.
fn undefined(rule: &str, bundle: &str) -> LayerDecision {
    LayerDecision {
        bundle: bundle.into(),
        rule: rule.into(),
        reasons: vec![ReasonCode::NoDecision.into()],
        remediation: Some(format!(
            "The policy rule {rule} gave no decision for this request."
        )),
        ..Default::default()
    }
}

fn bad_decision(rule: &str, message: String) -> EngineError {
    EngineError::BadDecision {
        rule: rule.into(),
        message,
    }
}

/// The optional fields of one decision object, each read with its type
/// checked; an error names the field and what it must be.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    rule: &'a str,
}

impl Fields<'_> {
    fn bad(&self, message: String) -> EngineError {
        bad_decision(self.rule, message)
    }

    /// A list of strings (absent: empty).
    fn strings(&self, k: &str) -> Result<Vec<String>, EngineError> {
        match self.obj.get(k) {
            None => Ok(vec![]),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(String::from)
                        .ok_or_else(|| self.bad(format!("{k} must be a list of strings")))
                })
                .collect(),
            Some(other) => Err(self.bad(format!("{k} must be a list of strings, got {other}"))),
        }
    }

    /// A string (absent or null: none).
    fn text(&self, k: &str) -> Result<Option<String>, EngineError> {
        match self.obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.bad(format!("{k} must be a string, got {other}"))),
        }
    }

    /// A non-negative integer (absent or null: none).
    fn count(&self, k: &str) -> Result<Option<u64>, EngineError> {
        match self.obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
            Some(other) => {
                Err(self.bad(format!("{k} must be a non-negative integer, got {other}")))
            }
        }
    }

    /// A boolean (absent: false).
    fn flag(&self, k: &str) -> Result<bool, EngineError> {
        match self.obj.get(k) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(self.bad(format!("{k} must be a boolean, got {other}"))),
        }
    }

    /// `require_approval` (absent or null: none), its scope one gavel knows.
    fn approval(&self) -> Result<Option<Approval>, EngineError> {
        let v = match self.obj.get("require_approval") {
            None | Some(Value::Null) => return Ok(None),
            Some(v) => v,
        };
        let a: Approval = serde_json::from_value(v.clone())
            .map_err(|e| self.bad(format!("require_approval must be {{\"reason\": string, \"remember_seconds\"?: number, \"scope\"?: \"call\"|\"tool\"|\"server\"}}: {e}")))?;
        if let Some(s) = &a.scope
            && !["call", "tool", "server"].contains(&s.as_str())
        {
            return Err(self.bad(format!(
                "require_approval.scope must be \"call\", \"tool\" or \"server\", not {s:?}"
            )));
        }
        Ok(Some(a))
    }
}
