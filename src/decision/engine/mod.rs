//! One warm regorus engine per server, holding the server's own bundles and
//! the shared ones. Each evaluation clones the warm engine (an Arc clone: the
//! parsed modules and data are shared) so evaluations never see each other's
//! input and never re-prepare (reference §7.1: the first evaluation prepares
//! the engine; clones made before that each prepare again).
//!
//! regorus settings, and why: `set_strict_builtin_errors(false)` gives OPA's
//! semantics (a builtin error makes the expression undefined, so `default`
//! rules apply); an `ExecutionTimerConfig` bounds each evaluation — it is
//! cooperative, checked every 64 interpreter steps, so a single long builtin
//! call is only stopped at its next step. That is why every evaluation runs
//! on an evaluation thread (`run`): its caller waits until the deadline and
//! no longer, and the thread's large stack keeps deep values from
//! overflowing it (recursion itself is refused at load, `bundle::recursion`).
//! Memory: regorus's memory check, with the ceiling gavel sets while
//! evaluations are in flight (`memory`).
//!
//! Every failure is distinct so the proxy can fail closed with a precise
//! reason code ([`EngineError::reason_code`]). Building the engine (lint,
//! roots, layers, memo plans) is `build`; this file evaluates.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::codes::ReasonCode;
pub use super::layers::Layer;
use super::layers::{Combined, LayerDecision, combine};
use super::memo::Memo;
use crate::bundle::deps::{Deps, analyze_set};
use crate::bundle::lint::{LintFinding, index, lint};
use crate::bundle::{Bundle, roots_overlap};
use crate::decision::contract::{Decision, Disclosure};
use answer::parse_decision;

mod answer;
mod assemble;
mod build;
mod classify;
mod evaluate;
mod lend;
pub mod memory;
mod result;
mod run;
pub use lend::LayerValues;
pub use result::ResultLayer;
pub(crate) use run::spawn_evaluator;
pub use run::{STACK_BYTES, mark_host};

use super::pool::Pool;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub eval_timeout: Duration,
    pub strict_input: bool,
}

impl EngineOptions {
    /// `[policy] eval_timeout` and `strict_input`.
    pub fn from_config(config: &crate::config::Config) -> Self {
        EngineOptions {
            eval_timeout: config.policy.eval_timeout,
            strict_input: config.policy.strict_input,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BundleInfo {
    pub name: String,
    pub revision: String,
    pub digest: String,
    pub layer: Layer,
}

/// Why the engine could not decide. `Load` is a tuple variant so both
/// `Load(_)` and `Load { .. }` patterns match it.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "policy evaluation of {rule} exceeded the {limit:?} limit ([policy] eval_timeout); simplify the rule or raise the limit"
    )]
    Timeout { rule: String, limit: Duration },
    #[error("policy evaluation of {rule} failed: {message}")]
    Eval { rule: String, message: String },
    #[error(
        "{rule} returned a decision of the wrong shape: {message}; it must return {{\"allow\": bool, \"reasons\": [string], …}} (schemas/decision.v1.json)"
    )]
    BadDecision { rule: String, message: String },
    /// Building the engine failed (the message names server, bundle, file).
    #[error("{0}")]
    Load(String),
}

impl EngineError {
    /// The reason code a fail-closed denial carries.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            EngineError::Timeout { .. } => ReasonCode::PolicyTimeout,
            EngineError::Eval { .. } => ReasonCode::PolicyError,
            EngineError::BadDecision { .. } => ReasonCode::PolicyBadDecision,
            EngineError::Load(_) => ReasonCode::PolicyUnavailable,
        }
    }
}

struct Loaded {
    info: BundleInfo,
    /// The bundle as loaded, for the schema lint (`decision::tool_lint`).
    source: Arc<Bundle>,
    decision_rule: String,
    visible_rule: Option<String>,
    reasons: serde_json::Map<String, Value>,
    /// `data.<package>.classification`: `{tools: {name: [classes]}, paths:
    /// [{prefix, classes}]}` — how this bundle classifies requests.
    classification: Value,
    /// `data.<package>.log.drop` / `.mask` when the bundle defines them
    /// (evaluating a rule no module defines is an error, not "undefined").
    log_drop: Option<String>,
    log_mask: Option<String>,
    withhold: bool,
    /// Set when the layer's decision may be memoized (see `memo`).
    memo: Option<Memo>,
    /// For a memoized layer that reads nothing of the other bundles: an
    /// engine holding this bundle alone, warm. A memo miss clones and
    /// evaluates this small engine instead of the server's whole one.
    own: Option<Arc<Pool>>,
    /// `data.<package>.limits` (else at a root): rate limits it declares.
    limits: Vec<crate::state::limits::Limit>,
    /// The layer's result rules, when it has one (`result`).
    result: Option<result::ResultRules>,
    /// The memo of the layer's result rule: set when the layer has one and
    /// its decision is memoized (`memo`), on the same input paths — the
    /// bundle's reads are analysed over all its rules, the result rule's
    /// included, so its answer is a function of them too (`output.*` is
    /// among them when the rule reads the output). A separate map: a
    /// decision's input and a result's never share a key's meaning.
    result_memo: Option<Memo>,
    /// Reads nothing outside its own roots (`bundle::deps`): its decision
    /// depends on its bundle, the policy library and the input alone, so
    /// another engine with the same three may take its value (`lend`).
    independent: bool,
}

/// One evaluation: the decision, complete except `decision_id` (the
/// enforcer's), and how long the evaluation took (the record's
/// `metrics.timer_rego_query_eval_ns`).
#[derive(Debug, Clone)]
pub struct EvalOutcome {
    pub decision: Decision,
    pub eval_ns: u64,
}

pub struct PolicyEngine {
    /// The warm engine (every bundle loaded, prepared once) and its reusable
    /// copies for evaluations.
    pool: Arc<Pool>,
    bundles: Vec<Loaded>,
    /// Precomputed: `name@revision,…` and the decision log's `bundles` object.
    version: String,
    bundles_json: crate::audit::record::Bundles,
    warnings: Vec<LintFinding>,
    timeout: Duration,
    /// Whether some rule may read `input.context.budget` (`bundle::deps`).
    reads_budget: bool,
    /// The digest of the policy library the layers are loaded with.
    library: String,
    /// A shadow engine's map to the live one (`lend`): for each layer, the
    /// live layer whose value it takes; empty on a live engine.
    lent: Vec<Option<usize>>,
    /// A shadow engine's need of the input (`lend`): when every layer it
    /// evaluates itself is memoized, only the paths those layers read
    /// (`None`: the whole input).
    needs: Option<Vec<Vec<String>>>,
    /// Every `input` path a rule of this engine may read (`bundle::deps`,
    /// over all its bundles and the library), when each bundle's reads can
    /// be listed; `None`: some rule may read the input whole. The result
    /// step evaluates on this projection of its input
    /// ([`PolicyEngine::result_input`]).
    reads: Option<Vec<Vec<String>>>,
    /// The path rules' prefixes, read once (`classify`).
    prefixes: classify::Prefixes,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("version", &self.version)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn rule_path(s: &str) -> String {
    if s.starts_with("data.") {
        s.to_string()
    } else {
        format!("data.{}", s.trim_matches('/').replace('/', "."))
    }
}

/// `data.a.b.decision` as OPA's decision log writes a path: `a/b/decision`.
fn opa_path(rule: &str) -> String {
    rule.trim_start_matches("data.").replace('.', "/")
}

/// The package of the synthetic rule that gathers every layer's decision.
const COMBINED_PACKAGE: &str = "__gavel__";
const COMBINED_RULE: &str = "data.__gavel__.layers";

/// `data.a.b-c.d` as a Rego reference that survives any key: `data["a"]["b-c"]["d"]`.
fn rego_ref(rule: &str) -> String {
    let mut out = String::from("data");
    for part in rule.trim_start_matches("data.").split('.') {
        out.push('[');
        out.push_str(&Value::String(part.to_string()).to_string());
        out.push(']');
    }
    out
}

fn get_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .try_fold(v, |v, k| v.get(k))
}

/// Converts without cloning the JSON first (`&serde_json::Value` is itself a
/// serde deserializer).
/// A JSON value as regorus's own: what `regorus::Value::deserialize` makes
/// of it — the same numbers (u64, then i64, then f64, as serde visits
/// them), strings, arrays and objects — built directly rather than through
/// serde's visitor, which charged ~17k instructions a small input (each
/// element's allocator-limit check, key interning). The input is already
/// bounded in size and depth (the message it came in); an evaluation is
/// bounded in memory where it runs (`memory`). Parity with the visitor:
/// `tests::to_regorus_builds_what_regorus_deserializes`.
pub(super) fn to_regorus(v: &Value) -> regorus::Value {
    match v {
        Value::Null => regorus::Value::Null,
        Value::Bool(b) => regorus::Value::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => regorus::Value::from(u),
            (None, Some(i)) => regorus::Value::from(i),
            // Finite: serde_json holds no NaN or infinity.
            (None, None) => n
                .as_f64()
                .map_or(regorus::Value::Undefined, regorus::Value::from),
        },
        Value::String(s) => regorus::Value::from(s.as_str()),
        Value::Array(a) => regorus::Value::from(a.iter().map(to_regorus).collect::<Vec<_>>()),
        Value::Object(m) => regorus::Value::from(
            m.iter()
                .map(|(k, v)| (regorus::Value::from(k.as_str()), to_regorus(v)))
                .collect::<std::collections::BTreeMap<_, _>>(),
        ),
    }
}

fn from_regorus(rule: &str, v: &regorus::Value) -> Result<Value, EngineError> {
    match v {
        regorus::Value::Undefined => Ok(Value::Null),
        v => serde_json::to_value(v).map_err(|e| EngineError::BadDecision {
            rule: rule.into(),
            message: e.to_string(),
        }),
    }
}

impl PolicyEngine {
    /// The rate limits the bundles declare (`data.<package>.limits`).
    pub fn limits(&self) -> impl Iterator<Item = &crate::state::limits::Limit> {
        self.bundles.iter().flat_map(|b| b.limits.iter())
    }

    /// Whether a reason code is in one of the bundles' reason catalogs.
    pub fn has_reason(&self, code: &str) -> bool {
        self.bundles.iter().any(|b| b.reasons.contains_key(code))
    }

    pub fn bundle_info(&self) -> Vec<BundleInfo> {
        self.bundles.iter().map(|b| b.info.clone()).collect()
    }

    /// Each bundle with its layer and decision rule (`data.a.b.decision`).
    pub fn sources(&self) -> Vec<(Arc<Bundle>, Layer, &str)> {
        self.bundles
            .iter()
            .map(|b| (b.source.clone(), b.info.layer, b.decision_rule.as_str()))
            .collect()
    }

    pub fn warnings(&self) -> &[LintFinding] {
        &self.warnings
    }

    /// Whether some rule of the bundles may read `input.context.budget`
    /// (by the dependency analysis the memos use; unsure means yes).
    pub fn reads_budget(&self) -> bool {
        self.reads_budget
    }

    /// `name@revision` of every bundle, comma-separated.
    pub fn policy_version(&self) -> &str {
        &self.version
    }

    /// `{name: {revision, digest, layer}}` for decision records.
    pub fn bundles_json(&self) -> &Value {
        self.bundles_json.value()
    }

    /// [`Self::bundles_json`] as a record writes it (serialized once).
    pub fn record_bundles(&self) -> &crate::audit::record::Bundles {
        &self.bundles_json
    }

    /// Whether a bundle has decision-log rules (`log.drop`, `log.mask`):
    /// without them a record needs no event built for them to read.
    pub fn has_log_rules(&self) -> bool {
        self.bundles
            .iter()
            .any(|b| b.log_drop.is_some() || b.log_mask.is_some())
    }

    /// The record's `path`, as OPA writes a decision path
    /// (`mcp/filesystem/decision` for `data.mcp.filesystem.decision`): the
    /// rule of the first layer that denied (layer order), else — every
    /// layer allowed — the first non-override layer's rule. Which bundles
    /// took part is the record's `bundles`.
    pub fn record_path(&self, d: &Decision) -> String {
        let layered = || {
            self.bundles
                .iter()
                .filter(|b| b.info.layer != Layer::Override)
        };
        let denying = (!d.allow)
            .then(|| layered().find(|b| d.matched_rules.contains(&b.decision_rule)))
            .flatten();
        denying
            .or_else(|| layered().next())
            .or(self.bundles.first())
            .map_or_else(String::new, |b| opa_path(&b.decision_rule))
    }

    /// Evaluates every layer on `input` and combines their answers
    /// (`layers`) into one decision.
    pub fn decide(&self, input: &Value) -> Result<EvalOutcome, EngineError> {
        let start = Instant::now();
        let values = self.layer_values(input, &mut [])?;
        self.combine_values(values, start)
    }

    /// The layers' raw values (in bundle order) parsed and combined into
    /// one decision; `start` is when the evaluation began.
    fn combine_values(
        &self,
        values: Vec<Value>,
        start: Instant,
    ) -> Result<EvalOutcome, EngineError> {
        let mut layers = Vec::with_capacity(self.bundles.len());
        for (b, v) in self.bundles.iter().zip(values) {
            let d = parse_decision(&b.decision_rule, &b.info.name, b.info.layer, v)?;
            answer::warn_unknown(&b.decision_rule, &d.unknown);
            layers.push((
                b.info.layer,
                LayerDecision {
                    withhold: b.withhold,
                    ..d
                },
            ));
        }
        let decision = self.decision_of(combine(&layers));
        Ok(EvalOutcome {
            decision,
            eval_ns: start.elapsed().as_nanos() as u64,
        })
    }

    /// The combined layers as the decision contract: with the policy
    /// version and each reason's text from the bundles' reason catalogs.
    fn decision_of(&self, c: Combined) -> Decision {
        let mut reason_texts = std::collections::BTreeMap::new();
        for code in &c.reasons {
            if let Some(t) = self
                .bundles
                .iter()
                .find_map(|b| b.reasons.get(code).and_then(Value::as_str))
            {
                reason_texts.insert(code.clone(), t.to_string());
            }
        }
        Decision {
            allow: c.allow,
            decision_id: None,
            reasons: c.reasons,
            reason_texts,
            remediation: c.remediation,
            appeal_path: c.appeal_path,
            audit_required: c.audit_required,
            policy_version: Some(self.version.clone()),
            matched_rules: c.matched_rules,
            disclosure: if c.withhold {
                Disclosure::Withhold
            } else {
                Disclosure::Explain
            },
            require_approval: c.require_approval,
            policy_metadata: c.policy_metadata,
            ..Default::default()
        }
    }

    /// Decision-log rules, OPA semantics at a per-bundle path: with the whole
    /// event as input, `data.<package>.log.drop` true discards the event;
    /// `data.<package>.log.mask` names what to erase or upsert. Returns
    /// `(drop, mask items)`; an error means the event must not be logged.
    pub fn log_rules(&self, event: &Value) -> Result<(bool, Vec<Value>), EngineError> {
        if !self.has_log_rules() {
            return Ok((false, vec![]));
        }
        // OPA: drop first (any bundle), then mask — both in one hand-off to
        // the evaluation thread; a drop wins even if a mask rule failed.
        let rules = |pick: fn(&Loaded) -> Option<&String>| -> Vec<String> {
            self.bundles.iter().filter_map(pick).cloned().collect()
        };
        let job = |rules| evaluate::Job {
            pool: Arc::clone(&self.pool),
            input: event.clone(),
            rules,
        };
        let jobs = vec![
            job(rules(|b| b.log_drop.as_ref())),
            job(rules(|b| b.log_mask.as_ref())),
        ];
        let (done, err) = self.evaluate_batch(jobs);
        let mut done = done.into_iter();
        let drops = done.next().unwrap_or_default();
        if drops.contains(&Value::Bool(true)) {
            return Ok((true, vec![]));
        }
        if let Some(e) = err {
            return Err(e);
        }
        let mut mask = Vec::new();
        for v in done.next().unwrap_or_default() {
            if let Value::Array(items) = v {
                mask.extend(items);
            }
        }
        Ok((false, mask))
    }

    /// The list rule: every bundle that defines `visible` must make it true.
    pub fn visible(&self, input: &Value) -> Result<bool, EngineError> {
        let rules: Vec<String> = self
            .bundles
            .iter()
            .filter_map(|b| b.visible_rule.clone())
            .collect();
        if rules.is_empty() {
            return Ok(true);
        }
        for (rule, v) in
            rules
                .iter()
                .zip(self.evaluate(&self.pool, input.clone(), rules.clone())?)
        {
            match v {
                Value::Bool(true) => {}
                Value::Bool(false) | Value::Null => return Ok(false),
                other => {
                    return Err(EngineError::BadDecision {
                        rule: rule.clone(),
                        message: format!("visible must be a boolean, got {other}"),
                    });
                }
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod answer_tests;
#[cfg(test)]
mod limits_tests;
#[cfg(test)]
mod memo_cases_tests;
#[cfg(test)]
mod memo_tests;
#[cfg(test)]
mod tests;
