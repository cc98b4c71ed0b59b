//! How a decision is evaluated: which layers come from their memo, which
//! are evaluated (on projected or full input, one rule or the combined
//! one), and the evaluation itself — always on an evaluation thread
//! (`run`), so stack, time and memory are bounded (see `run`, `memory`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{
    COMBINED_RULE, EngineError, PolicyEngine, Pool, from_regorus, memory, run, to_regorus,
};

/// One rule evaluated on `engine` (on an evaluation thread): its value
/// (`Null` when undefined) or why not, with regorus's limit errors told
/// apart.
pub(super) fn eval_rule(
    engine: &mut regorus::Engine,
    rule: &str,
    limit: Duration,
) -> Result<Value, EngineError> {
    let e = match engine.eval_rule(rule.to_string()) {
        Ok(v) => return from_regorus(rule, &v),
        Err(e) => e,
    };
    let message = e.to_string();
    let limit_error = e.downcast_ref::<regorus::LimitError>();
    let timed_out = matches!(
        limit_error,
        Some(regorus::LimitError::TimeLimitExceeded { .. })
    ) || message.contains("exceeded time limit");
    let out_of_memory = matches!(
        limit_error,
        Some(regorus::LimitError::MemoryLimitExceeded { .. })
    ) || message.contains("exceeded memory limit");
    if timed_out {
        return Err(EngineError::Timeout {
            rule: rule.into(),
            limit,
        });
    }
    Err(EngineError::Eval {
        rule: rule.into(),
        message: if out_of_memory {
            format!(
                "exceeded the memory limit ({message}): policy evaluations in flight may add at most {} MiB to the process; bound what the policy builds from its input",
                memory::LIMIT >> 20
            )
        } else {
            message
        },
    })
}

impl PolicyEngine {
    /// Evaluates `rules` in order with `input` on an engine from `pool`, on
    /// an evaluation thread (`run`): bounded in stack, time (the caller
    /// waits until the deadline, no longer) and memory. Stops at the first
    /// error; the engine goes back to its pool only after a success.
    pub(super) fn evaluate(
        &self,
        pool: &Arc<Pool>,
        input: Value,
        rules: Vec<String>,
    ) -> Result<Vec<Value>, EngineError> {
        if rules.is_empty() {
            return Ok(vec![]);
        }
        let limit = self.timeout;
        let start = Instant::now();
        let names = rules.join(", ");
        let pool = Arc::clone(pool);
        let outcome = run::run(start + limit, move || -> Result<Vec<Value>, EngineError> {
            let mut engine = pool.take();
            engine.set_input(to_regorus(&input));
            let mut out = Vec::with_capacity(rules.len());
            for r in &rules {
                out.push(eval_rule(&mut engine, r, limit)?);
            }
            pool.give(engine);
            Ok(out)
        });
        match outcome {
            // Done, but past the limit (one long builtin call the timer
            // could not interrupt): a timeout all the same.
            run::Outcome::Done(Ok(_)) if start.elapsed() > limit => {
                Err(EngineError::Timeout { rule: names, limit })
            }
            run::Outcome::Done(r) => r,
            run::Outcome::TimedOut => Err(EngineError::Timeout { rule: names, limit }),
            run::Outcome::Failed => Err(EngineError::Eval {
                rule: names,
                message: "the evaluation failed inside the policy engine (no result)".into(),
            }),
        }
    }

    /// One rule on one layer's engine.
    pub(super) fn evaluate_one(
        &self,
        pool: &Arc<Pool>,
        input: Value,
        rule: &str,
    ) -> Result<Value, EngineError> {
        let mut v = self.evaluate(pool, input, vec![rule.to_string()])?;
        Ok(v.pop().unwrap_or(Value::Null))
    }

    /// Every layer's raw decision value (`Null` when undefined), in bundle
    /// order: memoized layers from their memo or evaluated on their projected
    /// input; the rest evaluated on the full input — all of them in one
    /// evaluation of the combined rule when no layer is memoized.
    pub(super) fn layer_values(&self, input: &Value) -> Result<Vec<Value>, EngineError> {
        let mut values = vec![Value::Null; self.bundles.len()];
        let mut rest = Vec::new();
        for (i, b) in self.bundles.iter().enumerate() {
            let Some(memo) = &b.memo else {
                rest.push(i);
                continue;
            };
            let key = memo.key(input);
            if let Some(v) = key.as_deref().and_then(|k| memo.get(k)) {
                values[i] = v;
                continue;
            }
            let projected = memo.project(input);
            let pool = b.own.as_ref().unwrap_or(&self.pool);
            let v = self.evaluate_one(pool, projected, &b.decision_rule)?;
            if let Some(key) = key {
                memo.put(key, v.clone());
            }
            values[i] = v;
        }
        if rest.is_empty() {
            return Ok(values);
        }
        if rest.len() < self.bundles.len() {
            let rules = rest
                .iter()
                .map(|&i| self.bundles[i].decision_rule.clone())
                .collect();
            let got = self.evaluate(&self.pool, input.clone(), rules)?;
            for (&i, v) in rest.iter().zip(got) {
                values[i] = v;
            }
            return Ok(values);
        }
        let combined = self.evaluate_one(&self.pool, input.clone(), COMBINED_RULE);
        let gathered = match combined {
            Ok(Value::Array(a)) if a.len() == self.bundles.len() => a,
            Ok(other) => {
                return Err(EngineError::BadDecision {
                    rule: COMBINED_RULE.into(),
                    message: format!("gavel's combined rule returned {other}"),
                });
            }
            Err(EngineError::Timeout { limit, .. }) => {
                let rules: Vec<&str> = self
                    .bundles
                    .iter()
                    .map(|b| b.decision_rule.as_str())
                    .collect();
                return Err(EngineError::Timeout {
                    rule: rules.join(", "),
                    limit,
                });
            }
            // Cold path: evaluate layer by layer so the error names the
            // bundle's own rule rather than gavel's combined one.
            Err(e) => {
                let rules = self
                    .bundles
                    .iter()
                    .map(|b| b.decision_rule.clone())
                    .collect();
                self.evaluate(&self.pool, input.clone(), rules)?;
                return Err(e);
            }
        };
        Ok(gathered
            .into_iter()
            .map(|v| match v {
                Value::Array(mut one) if one.len() == 1 => one.pop().unwrap_or(Value::Null),
                _ => Value::Null,
            })
            .collect())
    }
}
