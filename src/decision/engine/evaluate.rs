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
        let pool = Arc::clone(pool);
        match self.evaluate_batch(vec![Job { pool, input, rules }]) {
            (_, Some(e)) => Err(e),
            (mut done, None) => Ok(done.pop().unwrap_or_default()),
        }
    }

    /// [`PolicyEngine::evaluate`] of several jobs in one hand-off to an
    /// evaluation thread (each hand-off costs two cross-thread wake-ups):
    /// each job bounded as if it ran alone (its own `eval_timeout`, checked
    /// again when it ends), the caller waiting at most one limit per job.
    /// Stops at the first error: the values of the jobs finished before it,
    /// then the error.
    pub(super) fn evaluate_batch(&self, jobs: Vec<Job>) -> (Vec<Vec<Value>>, Option<EngineError>) {
        let limit = self.timeout;
        let start = Instant::now();
        let names = |jobs: &[Job]| {
            let all: Vec<&str> = jobs
                .iter()
                .flat_map(|j| j.rules.iter().map(String::as_str))
                .collect();
            all.join(", ")
        };
        let every = names(&jobs);
        let deadline = start + limit * jobs.len().max(1) as u32;
        let cap = run::INLINE_INPUT_BYTES;
        let size = jobs
            .iter()
            .map(|j| run::input_bytes(&j.input, cap))
            .fold(0usize, usize::saturating_add);
        let outcome = run::run_sized(deadline, size, move || {
            let mut done = Vec::with_capacity(jobs.len());
            for job in &jobs {
                if job.rules.is_empty() {
                    done.push(vec![]);
                    continue;
                }
                let t = Instant::now();
                let mut engine = job.pool.take();
                engine.set_input(to_regorus(&job.input));
                let mut out = Vec::with_capacity(job.rules.len());
                for r in &job.rules {
                    match eval_rule(&mut engine, r, limit) {
                        Ok(v) => out.push(v),
                        Err(e) => return (done, Some(e)),
                    }
                }
                // Done, but past the limit (one long builtin call the timer
                // could not interrupt): a timeout all the same.
                if t.elapsed() > limit {
                    let rule = names(std::slice::from_ref(job));
                    return (done, Some(EngineError::Timeout { rule, limit }));
                }
                job.pool.give(engine);
                done.push(out);
            }
            (done, None)
        });
        match outcome {
            run::Outcome::Done(r) => r,
            run::Outcome::TimedOut => (vec![], Some(EngineError::Timeout { rule: every, limit })),
            run::Outcome::Failed => (
                vec![],
                Some(EngineError::Eval {
                    rule: every,
                    message: "the evaluation failed inside the policy engine (no result)".into(),
                }),
            ),
        }
    }

    /// Every layer's raw decision value (`Null` when undefined), in bundle
    /// order: memoized layers from their memo or evaluated on their projected
    /// input; the rest evaluated on the full input — all of them in one
    /// evaluation of the combined rule when no layer is memoized. Everything
    /// that has to be evaluated goes to the evaluation thread in one batch.
    /// A layer whose value `given` holds (another engine's evaluation of the
    /// same decision on the same input, `lend`) is taken as it is.
    pub(super) fn layer_values(
        &self,
        input: &Value,
        given: &mut [Option<Value>],
    ) -> Result<Vec<Value>, EngineError> {
        let mut values = vec![Value::Null; self.bundles.len()];
        let mut rest = Vec::new();
        let (mut missed, mut jobs) = (Vec::new(), Vec::new());
        for (i, b) in self.bundles.iter().enumerate() {
            if let Some(v) = given.get_mut(i).and_then(Option::take) {
                values[i] = v;
                continue;
            }
            let Some(memo) = &b.memo else {
                rest.push(i);
                continue;
            };
            let key = memo.key(input);
            if let Some(v) = key.as_deref().and_then(|k| memo.get(k)) {
                values[i] = v;
                continue;
            }
            jobs.push(Job {
                pool: Arc::clone(b.own.as_ref().unwrap_or(&self.pool)),
                input: memo.project(input),
                rules: vec![b.decision_rule.clone()],
            });
            missed.push((i, memo, key));
        }
        let combined = rest.len() == self.bundles.len();
        if !rest.is_empty() {
            let rules = if combined {
                vec![COMBINED_RULE.to_string()]
            } else {
                rest.iter()
                    .map(|&i| self.bundles[i].decision_rule.clone())
                    .collect()
            };
            jobs.push(Job {
                pool: Arc::clone(&self.pool),
                input: input.clone(),
                rules,
            });
        }
        if jobs.is_empty() {
            return Ok(values);
        }
        let (done, mut err) = self.evaluate_batch(jobs);
        let mut failed = || {
            err.take().unwrap_or_else(|| EngineError::Eval {
                rule: COMBINED_RULE.into(),
                message: "the evaluation ended without a result".into(),
            })
        };
        let mut done = done.into_iter();
        for (i, memo, key) in missed {
            let v = done
                .next()
                .ok_or_else(&mut failed)?
                .pop()
                .unwrap_or(Value::Null);
            if let Some(key) = key {
                memo.put(key, v.clone());
            }
            values[i] = v;
        }
        if rest.is_empty() {
            return Ok(values);
        }
        let got = done.next();
        if !combined {
            for (&i, v) in rest.iter().zip(got.ok_or_else(&mut failed)?) {
                values[i] = v;
            }
            return Ok(values);
        }
        let combined = match got {
            Some(mut v) => Ok(v.pop().unwrap_or(Value::Null)),
            None => Err(failed()),
        };
        self.split_combined(input, combined)
    }

    /// The combined rule's answer split into each layer's value (`Null`
    /// when undefined). An error is made to name what failed: a timeout the
    /// bundles' own rules, any other error — on this cold path only — found
    /// again layer by layer so it names the bundle's rule rather than
    /// gavel's combined one. Apart from [`Self::layer_values`] (what to
    /// evaluate, and how) because this reads the one answer back.
    fn split_combined(
        &self,
        input: &Value,
        combined: Result<Value, EngineError>,
    ) -> Result<Vec<Value>, EngineError> {
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

/// One evaluation of a batch: `rules` in order on `input`, on an engine
/// from `pool`.
pub(super) struct Job {
    pub pool: Arc<Pool>,
    pub input: Value,
    pub rules: Vec<String>,
}
