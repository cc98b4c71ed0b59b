//! Result policy (docs/policy.md, "Result policy"; contract `result.v1`):
//! what an upstream answered to a decided request is decided too, by the
//! result rules of the server's layers, before the host sees it. The steps
//! of [`Enforcer::decide_result`]: the input (the request's decision input
//! plus `output`, bounded: `input`), every result rule evaluated and its
//! answer read strictly (`answer`), denial if any layer denies, else
//! pointer redaction, per-item filtering (`items`), pattern redaction over
//! the whole output and the structured mirror (`apply`), and the record,
//! linked to the request's decision id (`record`) — written before the
//! host gets the result. Any failure withholds the result (fail closed).
//!
//! Cost: a permit keeps the request's input for its result only when the
//! server's policy has a result rule ([`ResultContext::keep`]); otherwise
//! the result path does nothing at all.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};

use super::active::{Active, Policy};
use super::codes::ReasonCode;
use super::engine::{PolicyEngine, ResultLayer};
use super::{Action, ActionType, Decision, Enforcer, Permit};

pub mod answer;
pub mod apply;
pub mod input;
pub mod items;
pub mod list;
pub mod question;
mod record;
pub mod replay;

pub use answer::Items;
pub use input::OutputKind;

/// What a permit keeps for deciding its result.
#[derive(Clone)]
pub struct ResultContext {
    /// The request's decision input (its record's, before masking);
    /// shared, so that an input round's gate (`Permit::round_gate`) costs
    /// a reference, not a copy of the input, on every 2026-07-28 call.
    input: Arc<Value>,
    /// The policy that decided the request: its result is decided by the
    /// same one, even if another was activated meanwhile.
    active: Arc<Active>,
    server: String,
    tool: String,
    /// `input` as the request's record wrote it (masked), which the
    /// result's record writes again (`audit::stream::WrittenInput`).
    written: Option<Arc<crate::audit::record::WrittenInput>>,
}

impl std::fmt::Debug for ResultContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultContext")
            .field("server", &self.server)
            .field("tool", &self.tool)
            .finish_non_exhaustive()
    }
}

impl ResultContext {
    /// The context to keep for `action`'s result, decided with `active`
    /// (asked first: [`Self::wanted`]).
    pub(super) fn keep(
        action: &Action,
        active: &Arc<Active>,
        input: Value,
        written: Option<crate::audit::record::WrittenInput>,
    ) -> Box<ResultContext> {
        Box::new(ResultContext {
            input: Arc::new(input),
            active: active.clone(),
            server: action.server.clone(),
            tool: action.tool.clone(),
            written: written.map(Arc::new),
        })
    }

    /// Whether `action`'s result is decided: its server's policy has a
    /// result rule and the request is one whose answer is decided (a tool
    /// call, a resource read, a prompt, a completion) — or a server's
    /// question to a legacy host, whose text is decided on its way there
    /// (`question.rs`). Asked before the request's record is written, so
    /// that record keeps its input as written only for a result record.
    pub(super) fn wanted(action: &Action, active: &Active) -> bool {
        let Policy::Rego(engine) = &active.policy else {
            return false;
        };
        matches!(
            action.kind,
            ActionType::ToolCall
                | ActionType::ResourceRead
                | ActionType::PromptGet
                | ActionType::Completion
                | ActionType::ElicitationRequest
                | ActionType::SamplingRequest
        ) && engine.has_result_rules()
    }
}

impl Permit {
    /// Whether this request's result is decided (its server's policy has a
    /// result rule). When false, the result goes to the host untouched.
    pub fn decides_result(&self) -> bool {
        self.result.is_some()
    }

    /// What deciding and counting an input round of this request needs,
    /// apart from the permit (which a parked call keeps on its own task).
    pub fn round_gate(&self) -> RoundGate {
        RoundGate {
            request_id: self.decision.decision_id.clone(),
            receipt: self.receipt.clone(),
            result: self.result.clone(),
        }
    }
}

/// The part of a request's permit an input round (MCP 2026-07-28 MRTR) on
/// its way to the host passes: the result step (`result_step`), as a
/// result would, and the budget its text is counted to.
#[derive(Debug, Clone, Default)]
pub struct RoundGate {
    pub(super) request_id: Option<String>,
    pub(super) receipt: Option<crate::decision::guard::Receipt>,
    pub(super) result: Option<Box<ResultContext>>,
}

impl RoundGate {
    /// Whether the round is decided (the server's policy has a result
    /// rule): when false, it goes to the host untouched.
    pub fn decides(&self) -> bool {
        self.result.is_some()
    }

    /// The decision id of the request the round belongs to.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }
}

/// What the host gets instead of, or as, the upstream's result.
#[derive(Debug)]
pub enum ResultVerdict {
    /// The result, rewritten: something was redacted or filtered.
    Pass(Value),
    /// The result exactly as it came (every rule passed it, nothing
    /// redacted or filtered): the caller hands over the upstream's own
    /// answer, not a re-typed copy of it.
    Unchanged(Value),
    /// A result rule denied it: the call has happened, its result is
    /// withheld; the denial carries the result record's decision id.
    Deny(Decision),
    /// The result could not be decided (a rule failed, answered a wrong
    /// shape, too many items, the record could not be written): withheld.
    Withheld(Decision),
}

/// How a result decision ended, as its record tells it.
#[derive(Debug, Default)]
struct Outcome {
    deny: bool,
    reasons: Vec<String>,
    remediation: Option<String>,
    matched_rules: Vec<String>,
    redactions: Vec<Value>,
    filtered: Vec<Value>,
    /// Why the result was withheld, when a rule failed.
    error: Option<(ReasonCode, String)>,
    eval_ns: u64,
}

impl Outcome {
    fn failed(code: ReasonCode, text: String) -> Outcome {
        Outcome {
            error: Some((code, text)),
            ..Default::default()
        }
    }

    /// `pass`, `modified` (something redacted or filtered), `deny` or
    /// `error`.
    fn label(&self) -> &'static str {
        let count = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        if self.error.is_some() {
            "error"
        } else if self.deny {
            "deny"
        } else if self.redactions.iter().any(|r| count(r, "count") > 0)
            || self.filtered.iter().any(|f| count(f, "dropped") > 0)
        {
            "modified"
        } else {
            "pass"
        }
    }
}

impl Enforcer {
    /// Decides `result`, the upstream's answer (as JSON) to the request
    /// `permit` allowed. A permit without a result context passes it as it
    /// is (and the caller need not even serialize it: see
    /// [`Permit::decides_result`]).
    pub fn decide_result(&self, permit: &Permit, kind: OutputKind, result: Value) -> ResultVerdict {
        let request_id = permit.decision.decision_id.as_deref();
        self.decide_output(permit.result.as_deref(), request_id, kind, result)
    }

    /// Decides an input round (`{"inputRequests": …}`, as the host would
    /// get it, without its state) as the result step decides a result:
    /// `input.output.kind` is `input_required`.
    pub fn decide_round(&self, gate: &RoundGate, round: Value) -> ResultVerdict {
        let request_id = gate.request_id.as_deref();
        self.decide_output(
            gate.result.as_deref(),
            request_id,
            OutputKind::InputRound,
            round,
        )
    }

    fn decide_output(
        &self,
        cx: Option<&ResultContext>,
        request_id: Option<&str>,
        kind: OutputKind,
        result: Value,
    ) -> ResultVerdict {
        let Some(cx) = cx else {
            return ResultVerdict::Unchanged(result);
        };
        let at = (cx.server.as_str(), cx.tool.as_str());
        let input = std::borrow::Cow::Borrowed(&*cx.input);
        let request = (request_id, input, cx.written.as_deref());
        self.decide_in(request, &cx.active, at, kind, result)
    }

    /// [`Enforcer::decide_result`] for a caller that decides the permit's
    /// result once: the permit's result context is spent, its copy of the
    /// request's input going into the result record instead of being
    /// copied again for it (a deep copy and a drop a call, issue 17).
    /// Afterwards the permit decides no result ([`Permit::decides_result`]).
    pub fn decide_result_once(
        &self,
        permit: &mut Permit,
        kind: OutputKind,
        result: Value,
    ) -> ResultVerdict {
        let Some(cx) = permit.result.take() else {
            return ResultVerdict::Unchanged(result);
        };
        let ResultContext {
            input,
            active,
            server,
            tool,
            written,
        } = *cx;
        let request_id = permit.decision.decision_id.as_deref();
        // Moved into the record when no round gate holds it any more
        // (the usual case: the caller drops its gate once answered).
        let input =
            std::borrow::Cow::Owned(Arc::try_unwrap(input).unwrap_or_else(|a| (*a).clone()));
        let request = (request_id, input, written.as_deref());
        self.decide_in(request, &active, (&server, &tool), kind, result)
    }

    /// The result step of the request `request_id` to `server`'s `tool`,
    /// decided by `active` on the request's decision input (and that
    /// input as the request's record wrote it, when kept).
    fn decide_in(
        &self,
        (request_id, request_input, written): (
            Option<&str>,
            std::borrow::Cow<'_, Value>,
            Option<&crate::audit::record::WrittenInput>,
        ),
        active: &Active,
        (server, tool): (&str, &str),
        kind: OutputKind,
        result: Value,
    ) -> ResultVerdict {
        let Policy::Rego(engine) = &active.policy else {
            return ResultVerdict::Unchanged(result);
        };
        let start = Instant::now();
        let mut result = result;
        let step = Step {
            engine,
            input: &request_input,
            root: self.servers.get(server).and_then(|s| s.path_root.as_ref()),
            kind,
        };
        let outcome = step.run(&mut result);
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        let mut decision = verdict_decision(&outcome, engine, &id, (tool, kind), request_id);
        let rec = record::ResultRecord {
            engine,
            id: &id,
            request_id,
            output: input::output(kind, &result),
            cx: request_input,
            written,
            kind,
            outcome: &outcome,
            start,
        };
        if self.settle(
            rec,
            &mut decision,
            (server, tool),
            super::record::Unrecorded::Result,
        ) {
            return ResultVerdict::Withheld(decision);
        }
        match (outcome.error.is_some(), outcome.deny) {
            (true, _) => ResultVerdict::Withheld(decision),
            (false, true) => ResultVerdict::Deny(decision),
            (false, false) if outcome.label() == "pass" => ResultVerdict::Unchanged(result),
            (false, false) => ResultVerdict::Pass(result),
        }
    }
}

/// The result step proper, without the enforcer (replay runs it on a
/// logged output with a candidate policy).
struct Step<'a> {
    engine: &'a PolicyEngine,
    /// The request's decision input.
    input: &'a Value,
    /// `servers.NAME.path_root`: what item paths are canonicalized against.
    root: Option<&'a super::paths::PathRoot>,
    kind: OutputKind,
}

impl Step<'_> {
    /// Evaluates the result rules and applies their answers to `result`.
    fn run(&self, result: &mut Value) -> Outcome {
        let (engine, kind) = (self.engine, self.kind);
        let layers = engine.result_layers();
        let t = Instant::now();
        let raw = match engine.eval_results_for(self.input, input::output(kind, result)) {
            Ok(v) => v,
            Err(e) => return Outcome::failed(e.reason_code(), e.to_string()),
        };
        let eval_ns = t.elapsed().as_nanos() as u64;
        let mut answers = Vec::with_capacity(layers.len());
        for (l, v) in layers.iter().zip(raw) {
            match answer::parse(v) {
                Ok(a) => answers.push((*l, a)),
                Err(m) => {
                    return Outcome::failed(
                        ReasonCode::PolicyBadDecision,
                        format!(
                            "{} answered a result of the wrong shape: {m} (schemas/result.v1.json)",
                            l.rule
                        ),
                    );
                }
            }
        }
        let mut out = match denial(&answers) {
            Some(d) => d,
            None => self.modify(result, &answers),
        };
        out.eval_ns = eval_ns;
        out
    }

    /// Redactions and filters of every layer, applied to `result`.
    fn modify(
        &self,
        result: &mut Value,
        answers: &[(ResultLayer, answer::LayerAnswer)],
    ) -> Outcome {
        let kind = self.kind;
        let mut out = Outcome::default();
        // Every pattern named must be the layer's bundle's own.
        let mut patterns = Vec::new();
        for (l, a) in answers {
            for name in &a.patterns {
                let Some(re) = l.pattern(name) else {
                    return Outcome::failed(
                        ReasonCode::PolicyBadDecision,
                        format!(
                            "{} asks to redact pattern {name:?}, which bundle {} does not declare in result_patterns",
                            l.rule, l.bundle
                        ),
                    );
                };
                // One pattern of one bundle is applied once, whichever
                // layers name it.
                let seen = |(m, n, _): &(&ResultLayer, &str, _)| m.bundle == l.bundle && *n == name;
                if !patterns.iter().any(seen) {
                    patterns.push((l, name.as_str(), re));
                }
            }
            if !a.patterns.is_empty() || !a.pointers.is_empty() || !a.filters.is_empty() {
                out.matched_rules.push(l.rule.to_string());
            }
        }
        let mirrors = if kind == OutputKind::ToolResult {
            apply::json_mirrors(result)
        } else {
            vec![]
        };
        for (l, a) in answers {
            let ptrs: Vec<&str> = a.pointers.iter().map(String::as_str).collect();
            for (p, n) in a.pointers.iter().zip(apply::redact_pointers(result, &ptrs)) {
                out.redactions
                    .push(json!({"bundle": l.bundle, "rule": l.rule, "pointer": p, "count": n}));
            }
        }
        let mirror_idx: Vec<usize> = mirrors.iter().map(|(i, _)| *i).collect();
        for (l, a) in answers {
            for f in &a.filters {
                match self.filter(result, l, f, &mirror_idx) {
                    Ok(rec) => out.filtered.push(rec),
                    Err((code, text)) => return Outcome::failed(code, text),
                }
            }
        }
        let named: Vec<(&str, &regex::Regex)> = patterns.iter().map(|(_, n, r)| (*n, *r)).collect();
        let counts = apply::redact_patterns(result, kind, &named, &mirrors);
        for ((l, n, _), count) in patterns.iter().zip(counts) {
            out.redactions
                .push(json!({"bundle": l.bundle, "rule": l.rule, "pattern": n, "count": count}));
        }
        apply::rewrite_mirrors(result, &mirrors);
        out
    }

    /// One filter of one layer: its items gathered, its per-item rule
    /// evaluated on each, the dropped ones removed. The record's entry, or
    /// the failed outcome.
    fn filter(
        &self,
        result: &mut Value,
        l: &ResultLayer,
        f: &Items,
        mirrors: &[usize],
    ) -> Result<Value, Failure> {
        let (engine, root) = (self.engine, self.root);
        let bad = |m: String| (ReasonCode::PolicyBadDecision, m);
        let Some(item_rule) = l.item_rule else {
            return Err(bad(format!(
                "{} asks to filter items but its package defines no result_item rule",
                l.rule
            )));
        };
        let classify = |p: &str| {
            let canonical = super::paths::canonical(p, root).map_or(Value::Null, Value::String);
            (canonical, engine.classify("", &json!({ "path": p }), root))
        };
        let icx = items::ItemCx {
            kind: self.kind,
            classify: &classify,
            base_path: self
                .input
                .pointer("/action/args/path")
                .and_then(Value::as_str),
            mirrors,
        };
        let metas = items::gather(result, f, &icx).map_err(|e| item_failure(l, f, e))?;
        let evaluated = metas.len();
        let values = engine
            .eval_items(item_rule, self.input, metas)
            .map_err(|e| (e.reason_code(), e.to_string()))?;
        let mut keep = Vec::with_capacity(values.len());
        for v in values {
            match v {
                Value::Bool(b) => keep.push(b),
                other => {
                    return Err(bad(format!(
                        "{item_rule} must answer true (keep) or false (drop) for every item, not {other}; give it a default"
                    )));
                }
            }
        }
        let dropped = items::apply(result, f, &keep, &icx).map_err(|e| item_failure(l, f, e))?;
        Ok(json!({
            "bundle": l.bundle, "rule": item_rule, "items": f.as_str(),
            "evaluated": evaluated, "dropped": dropped,
        }))
    }
}

/// Why a result is withheld: the code and the text.
type Failure = (ReasonCode, String);

fn item_failure(l: &ResultLayer, f: &Items, e: items::ItemError) -> Failure {
    match e {
        items::ItemError::TooMany(n) => (
            ReasonCode::ResultTooManyItems,
            format!(
                "{} asks to filter the result's {} items, and it has more than {} ({n} counted); gavel evaluates at most {} and withholds a result it cannot filter whole",
                l.rule,
                f.as_str(),
                items::MAX_ITEMS,
                items::MAX_ITEMS
            ),
        ),
        items::ItemError::Shape(m) => (
            ReasonCode::PolicyBadDecision,
            format!("{} asks to filter {} items: {m}", l.rule, f.as_str()),
        ),
    }
}

/// Any layer's deny wins (override layers too: nothing waives a result
/// denial).
fn denial(answers: &[(ResultLayer, answer::LayerAnswer)]) -> Option<Outcome> {
    let denying: Vec<_> = answers.iter().filter(|(_, a)| a.deny).collect();
    if denying.is_empty() {
        return None;
    }
    let mut out = Outcome {
        deny: true,
        ..Default::default()
    };
    for (l, a) in denying {
        out.matched_rules.push(l.rule.to_string());
        if a.reasons.is_empty() {
            out.reasons.push(ReasonCode::ResultDenied.into());
        }
        for r in &a.reasons {
            if !out.reasons.contains(r) {
                out.reasons.push(r.clone());
            }
        }
        if out.remediation.is_none() {
            out.remediation = a.remediation.clone();
        }
    }
    Some(out)
}

/// The decision of a result as the record and the host see it.
fn verdict_decision(
    o: &Outcome,
    engine: &PolicyEngine,
    id: &str,
    (tool, kind): (&str, OutputKind),
    request_id: Option<&str>,
) -> Decision {
    let request_id = request_id.unwrap_or("-");
    let happened = if kind == OutputKind::InputRound {
        format!(
            "The request for {tool:?} reached its server (decision {request_id}), which asked for input: its question is withheld"
        )
    } else {
        format!(
            "The request for {tool:?} has already been carried out (decision {request_id}): only its result is withheld"
        )
    };
    let mut d = match &o.error {
        Some((code, text)) => Decision::deny(
            *code,
            format!(
                "{happened}, because gavel could not decide on the result ({text}). Do not repeat the request to get it; report this to the policy owners."
            ),
        ),
        None if o.deny => {
            let mut d = Decision::deny(ReasonCode::ResultDenied, String::new());
            d.reasons = o.reasons.clone();
            d.remediation = Some(match &o.remediation {
                Some(r) => format!("{happened} by policy. {r}"),
                None => format!("{happened} by policy. Do not repeat the request to get it."),
            });
            d
        }
        None => Decision {
            allow: true,
            ..Default::default()
        },
    };
    let mut texts = BTreeMap::new();
    for code in &d.reasons {
        if let Some(t) = engine.reason_text(code) {
            texts.insert(code.clone(), t);
        }
    }
    d.reason_texts = texts;
    d.decision_id = Some(id.to_string());
    d.policy_version = Some(engine.policy_version().to_string());
    d.matched_rules = o.matched_rules.clone();
    d
}

#[cfg(test)]
mod tests;
