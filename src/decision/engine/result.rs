//! The engine's side of result policy (docs/policy.md, "Result policy"):
//! which layers have a result rule — found at load like the decision rule —
//! their per-item rule and redaction patterns, and their evaluation. What
//! the answers mean, and what is done with the result, is
//! `decision::result`'s.
//!
//! A layer's result rule is `metadata.gavel.result` in its manifest, else
//! `result` beside its decision rule when a module defines it; its per-item
//! rule is `result_item` in the result rule's package; its patterns are
//! `result_patterns` (`{name: regex}`) in the bundle's data beside the
//! decision rule, else at a root. A pattern that does not compile refuses
//! the bundle at load (the policy is then unavailable: fail closed).

use regex::Regex;
use serde_json::Value;

use super::evaluate::Job;
use super::run;
use super::{EngineError, PolicyEngine, get_path, rule_path, to_regorus};
use crate::bundle::Bundle;
use crate::bundle::lint::ModuleIndex;
use crate::config::Layer;
use crate::decision::memo::Memo;

/// At most this many patterns per bundle, each at most this long: a pattern
/// list is bundle data, and untrusted.
const MAX_PATTERNS: usize = 64;
const MAX_PATTERN_LEN: usize = 4096;
/// Per-item evaluations get one `eval_timeout` per this many items.
pub const ITEMS_PER_TIMEOUT: usize = 100;
/// regex's compiled-size limit per pattern (its default is 10 MiB).
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// One layer's result rules, found at load.
#[derive(Debug)]
pub(super) struct ResultRules {
    /// `data.<package>.result` (or the manifest's `metadata.gavel.result`).
    rule: String,
    /// `<package of the result rule>.result_item`, when a module defines it.
    item_rule: Option<String>,
    /// `result_patterns`: name → compiled pattern, in name order.
    patterns: Vec<(String, Regex)>,
}

/// One layer that has a result rule, as the result step sees it.
#[derive(Debug, Clone, Copy)]
pub struct ResultLayer<'a> {
    pub bundle: &'a str,
    pub layer: Layer,
    pub rule: &'a str,
    pub item_rule: Option<&'a str>,
    patterns: &'a [(String, Regex)],
}

impl<'a> ResultLayer<'a> {
    /// The pattern `name` this layer's bundle declares.
    pub fn pattern(&self, name: &str) -> Option<&'a Regex> {
        self.patterns
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| r)
    }
}

/// The result rules of bundle `b`, whose decision rule lives in package
/// `pkg` (`data.a.b`, path `a/b`); `idx` is its parse tree's index.
pub(super) fn find(
    b: &Bundle,
    pkg: &str,
    pkg_path: &str,
    idx: &[ModuleIndex],
) -> Result<Option<ResultRules>, String> {
    let defines = |package: &str, rule: &str| {
        idx.iter()
            .any(|m| m.package == package && m.rules.contains(rule))
    };
    let rule = match b.manifest.gavel("result") {
        Some(Value::String(r)) => {
            let rule = rule_path(r);
            let (package, name) = rule.rsplit_once('.').unwrap_or(("data", ""));
            let package = package.trim_start_matches("data").trim_start_matches('.');
            if !defines(&package.replace('.', "/"), name) {
                return Err(format!(
                    "bundle {}: no module defines the result rule {rule} named by metadata.gavel.result in .manifest; define it or fix the name",
                    b.name
                ));
            }
            rule
        }
        Some(other) => {
            return Err(format!(
                "bundle {}: metadata.gavel.result must be a rule name (a string), not {other}",
                b.name
            ));
        }
        None if defines(pkg_path, "result") => format!("{pkg}.result"),
        None => return Ok(None),
    };
    let (rule_pkg, _) = rule.rsplit_once('.').unwrap_or(("data", ""));
    let rule_pkg_path = rule_pkg
        .trim_start_matches("data")
        .trim_start_matches('.')
        .replace('.', "/");
    let item_rule =
        defines(&rule_pkg_path, "result_item").then(|| format!("{rule_pkg}.result_item"));
    let declared = std::iter::once(pkg_path)
        .chain(b.manifest.roots.iter().map(String::as_str))
        .find_map(|p| get_path(&b.data, &format!("{p}/result_patterns")));
    let patterns = compile_patterns(&b.name, declared)?;
    Ok(Some(ResultRules {
        rule,
        item_rule,
        patterns,
    }))
}

/// `result_patterns` compiled: an object of name → regex string (RE2
/// syntax, as OPA's `regex.*` builtins use), bounded in count and size.
fn compile_patterns(bundle: &str, v: Option<&Value>) -> Result<Vec<(String, Regex)>, String> {
    let Some(v) = v else { return Ok(vec![]) };
    let Some(o) = v.as_object() else {
        return Err(format!(
            "bundle {bundle}: result_patterns must be an object of name → regular expression, not {v}"
        ));
    };
    if o.len() > MAX_PATTERNS {
        return Err(format!(
            "bundle {bundle}: result_patterns declares {} patterns; at most {MAX_PATTERNS}",
            o.len()
        ));
    }
    let mut out = Vec::with_capacity(o.len());
    for (name, p) in o {
        let Some(p) = p.as_str() else {
            return Err(format!(
                "bundle {bundle}: result_patterns.{name} must be a string (a regular expression)"
            ));
        };
        if p.len() > MAX_PATTERN_LEN {
            return Err(format!(
                "bundle {bundle}: result_patterns.{name} is {} bytes long; at most {MAX_PATTERN_LEN}",
                p.len()
            ));
        }
        let re = regex::RegexBuilder::new(p)
            .size_limit(PATTERN_SIZE_LIMIT)
            .build()
            .map_err(|e| {
                format!(
                    "bundle {bundle}: result_patterns.{name} is not a valid regular expression: {e}"
                )
            })?;
        out.push((name.clone(), re));
    }
    Ok(out)
}

impl PolicyEngine {
    /// Whether any layer has a result rule: without one, results pass
    /// untouched and nothing is kept for them.
    pub fn has_result_rules(&self) -> bool {
        self.bundles.iter().any(|b| b.result.is_some())
    }

    /// The layers with a result rule, in bundle order.
    pub fn result_layers(&self) -> Vec<ResultLayer<'_>> {
        self.bundles
            .iter()
            .filter_map(|b| {
                b.result.as_ref().map(|r| ResultLayer {
                    bundle: &b.info.name,
                    layer: b.info.layer,
                    rule: &r.rule,
                    item_rule: r.item_rule.as_deref(),
                    patterns: &r.patterns,
                })
            })
            .collect()
    }

    /// The input result rules are evaluated on: the request's decision
    /// `input` with `output` — projected on the paths this engine's rules
    /// may read when they can all be listed (the decision memo's soundness
    /// argument, `decision::memo`: a path no rule reads cannot change an
    /// answer), so the whole request input is neither copied nor converted
    /// to regorus values for a rule that reads a few fields of it.
    pub fn result_input(&self, input: &Value, output: Value) -> Value {
        let mut full = match (&self.reads, input) {
            (Some(paths), Value::Object(_)) => crate::decision::memo::project(input, paths),
            _ => input.clone(),
        };
        if let Value::Object(o) = &mut full {
            o.insert("output".into(), output);
        }
        full
    }

    /// Every result rule's raw answer on `input` (`Null` when undefined), in
    /// [`PolicyEngine::result_layers`] order (see
    /// [`PolicyEngine::eval_results_for`]).
    #[cfg(test)]
    pub fn eval_results(&self, input: Value) -> Result<Vec<Value>, EngineError> {
        self.results_with(
            &|path| path.iter().try_fold(&input, |v, k| v.get(k)),
            || input.clone(),
        )
    }

    /// Every result rule's raw answer on the request's decision `input`
    /// with `output` (the document [`PolicyEngine::result_input`] builds),
    /// in [`PolicyEngine::result_layers`] order, bounded like a decision's.
    /// A layer with a result memo answers from it, or on a miss is
    /// evaluated on its projection of the document alone and remembered —
    /// the decision memo's argument (`decision::memo`): most results of a
    /// session are decided on the same few facts (the tool, the user's
    /// clearances, whether the output is an error), and the evaluation was
    /// a third of the result step (issue 17). The other layers are evaluated
    /// together on the document; everything to evaluate goes to the
    /// evaluation thread in one batch. Errors and timeouts are never
    /// remembered. When every layer answers from its memo the document is
    /// not even built: the keys are read from `input` and `output` directly.
    pub fn eval_results_for(
        &self,
        input: &Value,
        output: Value,
    ) -> Result<Vec<Value>, EngineError> {
        // `result_input` sets `output` only on an object input.
        let over = input.is_object();
        let at = |path: &[String]| match path.split_first() {
            Some((first, rest)) if over && first == "output" => {
                rest.iter().try_fold(&output, |v, k| v.get(k))
            }
            _ => path.iter().try_fold(input, |v, k| v.get(k)),
        };
        // Keys first (they borrow `output`), then the document if needed.
        let keys = self.result_keys(&at);
        self.results_keyed(keys, || self.result_input(input, output))
    }

    /// The shared part of [`PolicyEngine::eval_results`]: keys read through
    /// `at`, the document built by `full` only when something is evaluated.
    #[cfg(test)]
    fn results_with<'v>(
        &self,
        at: &dyn Fn(&[String]) -> Option<&'v Value>,
        full: impl FnOnce() -> Value,
    ) -> Result<Vec<Value>, EngineError> {
        let keys = self.result_keys(at);
        self.results_keyed(keys, full)
    }

    /// For each layer with a result rule, in order: its result memo and the
    /// memo's answer or key (`None`: no memo; a key of `None`: bypassed).
    #[allow(clippy::type_complexity)]
    fn result_keys<'v>(
        &self,
        at: &dyn Fn(&[String]) -> Option<&'v Value>,
    ) -> Vec<(
        &super::Loaded,
        Option<(&Memo, Result<Value, Option<Vec<u8>>>)>,
    )> {
        self.bundles
            .iter()
            .filter(|b| b.result.is_some())
            .map(|b| {
                let looked = b.result_memo.as_ref().map(|memo| {
                    let key = memo.key_by(at);
                    match key.as_deref().and_then(|k| memo.get(k)) {
                        Some(v) => (memo, Ok(v)),
                        None => (memo, Err(key)),
                    }
                });
                (b, looked)
            })
            .collect()
    }

    #[allow(clippy::type_complexity)]
    fn results_keyed(
        &self,
        keys: Vec<(
            &super::Loaded,
            Option<(&Memo, Result<Value, Option<Vec<u8>>>)>,
        )>,
        full: impl FnOnce() -> Value,
    ) -> Result<Vec<Value>, EngineError> {
        let rule = |b: &super::Loaded| b.result.as_ref().map_or(String::new(), |r| r.rule.clone());
        let every = || {
            keys.iter()
                .map(|(b, _)| rule(b))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut values = vec![Value::Null; keys.len()];
        let (mut missed, mut rest) = (Vec::new(), Vec::new());
        for (i, (b, looked)) in keys.iter().enumerate() {
            match looked {
                None => rest.push(i),
                Some((_, Ok(v))) => values[i] = v.clone(),
                Some((memo, Err(key))) => missed.push((i, *b, *memo, key.clone())),
            }
        }
        if missed.is_empty() && rest.is_empty() {
            return Ok(values);
        }
        let full = full();
        let mut jobs: Vec<Job> = missed
            .iter()
            .map(|(_, b, memo, _)| Job {
                pool: std::sync::Arc::clone(b.own.as_ref().unwrap_or(&self.pool)),
                input: memo.project(&full),
                rules: vec![rule(b)],
            })
            .collect();
        if !rest.is_empty() {
            jobs.push(Job {
                pool: std::sync::Arc::clone(&self.pool),
                input: full,
                rules: rest.iter().map(|&i| rule(keys[i].0)).collect(),
            });
        }
        let (done, err) = self.evaluate_batch(jobs);
        if let Some(e) = err {
            return Err(e);
        }
        let mut done = done.into_iter();
        let mut next = || {
            done.next().ok_or_else(|| EngineError::Eval {
                rule: every(),
                message: "the evaluation ended without a result".into(),
            })
        };
        for (i, _, memo, key) in missed {
            let v = next()?.pop().unwrap_or(Value::Null);
            if let Some(key) = key {
                memo.put(key, v.clone());
            }
            values[i] = v;
        }
        if !rest.is_empty() {
            for (&i, v) in rest.iter().zip(next()?) {
                values[i] = v;
            }
        }
        Ok(values)
    }

    /// Every result rule evaluated together on `input`, no memo: what
    /// [`PolicyEngine::eval_results`] must answer.
    #[cfg(test)]
    pub(super) fn eval_results_unmemoized(&self, input: Value) -> Result<Vec<Value>, EngineError> {
        let rules: Vec<String> = self.result_layers().iter().map(|l| l.rule.into()).collect();
        self.evaluate(&self.pool, input, rules)
    }

    /// `item_rule` once per item: `input` is `base` with `item` set to each
    /// item in turn. One evaluation thread for all of them; each evaluation
    /// bounded by `eval_timeout` (regorus's timer), and all of them together
    /// by one `eval_timeout` per [`ITEMS_PER_TIMEOUT`] items (at least one):
    /// at the default 100 ms, a second for the 1000 items a filter may have.
    pub fn eval_items(
        &self,
        item_rule: &str,
        base: &Value,
        items: Vec<Value>,
    ) -> Result<Vec<Value>, EngineError> {
        let limit = self.timeout;
        let batches = items.len().div_ceil(ITEMS_PER_TIMEOUT).max(1) as u32;
        let total = limit * batches;
        let start = std::time::Instant::now();
        let pool = std::sync::Arc::clone(&self.pool);
        let base_json = base;
        let base = to_regorus(base);
        let rule = item_rule.to_string();
        let cap = run::INLINE_INPUT_BYTES;
        let size = items
            .iter()
            .map(|i| run::input_bytes(i, cap))
            .fold(run::input_bytes(base_json, cap), usize::saturating_add);
        let outcome = run::run_sized(
            start + total,
            size,
            move || -> Result<Vec<Value>, EngineError> {
                let mut engine = pool.take();
                let mut out = Vec::with_capacity(items.len());
                for item in &items {
                    let mut input = base.clone();
                    if let Ok(o) = input.as_object_mut() {
                        o.insert(regorus::Value::from("item"), to_regorus(item));
                    }
                    engine.set_input(input);
                    out.push(super::evaluate::eval_rule(&mut engine, &rule, limit)?);
                }
                pool.give(engine);
                Ok(out)
            },
        );
        let rule = item_rule.to_string();
        match outcome {
            run::Outcome::Done(Ok(_)) if start.elapsed() > total => {
                Err(EngineError::Timeout { rule, limit: total })
            }
            run::Outcome::Done(r) => r,
            run::Outcome::TimedOut => Err(EngineError::Timeout { rule, limit: total }),
            run::Outcome::Failed => Err(EngineError::Eval {
                rule,
                message: "the evaluation failed inside the policy engine (no result)".into(),
            }),
        }
    }

    /// The text of a reason code in the bundles' reason catalogs.
    pub fn reason_text(&self, code: &str) -> Option<String> {
        self.bundles
            .iter()
            .find_map(|b| b.reasons.get(code).and_then(Value::as_str))
            .map(String::from)
    }

    /// The record path of a result decision: the first result rule's, as
    /// OPA writes a path (`mcp/filesystem/result`).
    pub fn result_record_path(&self) -> String {
        self.result_layers()
            .first()
            .map_or_else(|| "gavel/result".into(), |l| super::opa_path(l.rule))
    }
}
