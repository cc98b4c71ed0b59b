//! Which inputs mattered to a decision, by bounded counterfactual
//! re-evaluation: change one leaf of `input` at a time (remove it, or set it
//! to a contrasting value) and re-decide; a change that flips allow/deny or
//! changes the reasons marks that field as one that mattered.
//!
//! Bounded: at most `budget` evaluations in all (leaves are visited in input
//! order and each gets at most three variants), so a huge input cannot make
//! `explain` run away; what was not tried is counted and reported.

use serde_json::Value;

/// Default evaluation budget for one explanation.
pub const DEFAULT_BUDGET: usize = 200;

/// One decision's outcome, as far as counterfactuals compare it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub allow: bool,
    pub reasons: Vec<String>,
    /// Allowed only after a human's approval (`require_approval`): a field
    /// that adds or removes the question changes the outcome too.
    pub approval: bool,
}

/// One change that altered the outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Flip {
    /// Dotted path from `input` (`input.action.tool`, `input.user.groups[0]`).
    pub field: String,
    /// The logged value.
    pub value: Value,
    /// What was done: `removed` or `set to …`.
    pub change: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Default)]
pub struct Counterfactuals {
    pub evaluations: usize,
    /// Variants not evaluated because the budget ran out.
    pub untried: usize,
    /// Leaves skipped because the log masked them (their logged value is not
    /// the value the policy saw).
    pub masked: Vec<String>,
    pub leaves: usize,
    pub flips: Vec<Flip>,
    /// Variants whose evaluation failed (e.g. a rule erroring on a missing field).
    pub errors: Vec<(String, String)>,
}

type Path = Vec<Step>;

#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

fn dotted(p: &[Step]) -> String {
    let mut s = String::from("input");
    for step in p {
        match step {
            Step::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            Step::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// `/input/a/b` (JSON pointer under the record) for masked-path matching.
fn pointer(p: &[Step]) -> String {
    let mut s = String::from("/input");
    for step in p {
        s.push('/');
        match step {
            Step::Key(k) => s.push_str(&k.replace('~', "~0").replace('/', "~1")),
            Step::Index(i) => s.push_str(&i.to_string()),
        }
    }
    s
}

fn leaves(v: &Value, path: &mut Path, out: &mut Vec<(Path, Value)>) {
    match v {
        Value::Object(o) if !o.is_empty() => {
            for (k, c) in o {
                path.push(Step::Key(k.clone()));
                leaves(c, path, out);
                path.pop();
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for (i, c) in a.iter().enumerate() {
                path.push(Step::Index(i));
                leaves(c, path, out);
                path.pop();
            }
        }
        other => out.push((path.clone(), other.clone())),
    }
}

/// The contrasting values tried for a leaf (besides removing it).
fn alternatives(v: &Value) -> Vec<Value> {
    match v {
        Value::Bool(b) => vec![Value::Bool(!b)],
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            let big = serde_json::json!((x.abs() * 100.0 + 1_000_000.0).round() as i64);
            if x == 0.0 {
                vec![big]
            } else {
                vec![serde_json::json!(0), big]
            }
        }
        Value::String(s) if s.is_empty() => vec![Value::String("gavel-counterfactual".into())],
        Value::String(_) => vec![Value::String(String::new())],
        _ => vec![],
    }
}

fn edit(root: &mut Value, path: &[Step], new: Option<Value>) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    let mut node = root;
    for step in parent_path {
        node = match (step, node) {
            (Step::Key(k), Value::Object(o)) => match o.get_mut(k) {
                Some(n) => n,
                None => return,
            },
            (Step::Index(i), Value::Array(a)) => match a.get_mut(*i) {
                Some(n) => n,
                None => return,
            },
            _ => return,
        };
    }
    match (last, node, new) {
        (Step::Key(k), Value::Object(o), Some(v)) => {
            o.insert(k.clone(), v);
        }
        (Step::Key(k), Value::Object(o), None) => {
            o.remove(k);
        }
        (Step::Index(i), Value::Array(a), Some(v)) if *i < a.len() => a[*i] = v,
        (Step::Index(i), Value::Array(a), None) if *i < a.len() => {
            a.remove(*i);
        }
        _ => {}
    }
}

/// Runs the counterfactuals of `input` against `decide`, whose answer for
/// the unchanged input is `baseline`. `masked` are JSON pointers
/// (`/input/...`) the log masked or erased.
pub fn explore<E: std::fmt::Display>(
    input: &Value,
    baseline: &Outcome,
    masked: &[String],
    budget: usize,
    decide: &mut dyn FnMut(&Value) -> Result<Outcome, E>,
) -> Counterfactuals {
    let mut all = Vec::new();
    leaves(input, &mut Vec::new(), &mut all);
    let mut cf = Counterfactuals {
        leaves: all.len(),
        ..Default::default()
    };
    for (path, value) in all {
        let ptr = pointer(&path);
        if masked
            .iter()
            .any(|m| ptr == *m || ptr.starts_with(&format!("{m}/")))
            || value == Value::String("**REDACTED**".into())
        {
            cf.masked.push(dotted(&path));
            continue;
        }
        let mut variants: Vec<(String, Option<Value>)> = vec![("removed".into(), None)];
        variants.extend(
            alternatives(&value)
                .into_iter()
                .map(|v| (format!("set to {v}"), Some(v))),
        );
        for (change, new) in variants {
            if cf.evaluations >= budget {
                cf.untried += 1;
                continue;
            }
            let mut changed = input.clone();
            edit(&mut changed, &path, new);
            cf.evaluations += 1;
            match decide(&changed) {
                Ok(o) if o != *baseline => cf.flips.push(Flip {
                    field: dotted(&path),
                    value: value.clone(),
                    change,
                    outcome: o,
                }),
                Ok(_) => {}
                Err(e) => cf
                    .errors
                    .push((format!("{} {change}", dotted(&path)), e.to_string())),
            }
        }
    }
    cf
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A stand-in policy: deny when calls >= 60 or the tool is move_file;
    /// `user.id` must be present.
    fn policy(i: &Value) -> Result<Outcome, String> {
        let mut reasons = vec![];
        if i["user"]["id"].is_null() {
            return Err("user.id missing".into());
        }
        if i["context"]["calls"].as_i64().unwrap_or(0) >= 60 {
            reasons.push("too_many".to_string());
        }
        if i["action"]["tool"] == "move_file" {
            reasons.push("destructive".to_string());
        }
        Ok(Outcome {
            allow: reasons.is_empty(),
            reasons,
            approval: false,
        })
    }

    fn input() -> Value {
        json!({"user": {"id": "ada", "groups": ["eng"]}, "action": {"tool": "move_file", "args": {"token": "**REDACTED**", "path": "x"}}, "context": {"calls": 3, "flag": true}})
    }

    #[test]
    fn finds_the_fields_that_matter() {
        let input = input();
        let base = policy(&input).unwrap();
        let cf = explore(&input, &base, &[], DEFAULT_BUDGET, &mut policy);
        let fields: Vec<(&str, &str)> = cf
            .flips
            .iter()
            .map(|f| (f.field.as_str(), f.change.as_str()))
            .collect();
        assert!(
            fields.contains(&("input.action.tool", "removed")),
            "{fields:?}"
        );
        assert!(
            fields.contains(&("input.action.tool", "set to \"\"")),
            "{fields:?}"
        );
        assert!(
            fields.contains(&("input.context.calls", "set to 1000300")),
            "{fields:?}"
        );
        assert!(
            !fields
                .iter()
                .any(|(f, _)| f.starts_with("input.user.groups")),
            "{fields:?}"
        );
        assert_eq!(
            cf.errors.len(),
            1,
            "removing user.id errors: {:?}",
            cf.errors
        );
        assert_eq!(cf.masked, vec!["input.action.args.token".to_string()]);
        assert_eq!(cf.untried, 0);
        assert_eq!(cf.leaves, 7);
    }

    #[test]
    fn masked_pointers_are_skipped() {
        let input = input();
        let base = policy(&input).unwrap();
        let cf = explore(
            &input,
            &base,
            &["/input/action".into()],
            DEFAULT_BUDGET,
            &mut policy,
        );
        assert!(cf.masked.contains(&"input.action.tool".to_string()));
        assert!(
            cf.flips
                .iter()
                .all(|f| !f.field.starts_with("input.action"))
        );
    }

    #[test]
    fn budget_bounds_evaluations() {
        let mut big = serde_json::Map::new();
        for i in 0..500 {
            big.insert(format!("k{i:03}"), json!(i));
        }
        let input = json!({"user": {"id": "u"}, "context": big});
        let base = policy(&input).unwrap();
        let mut calls = 0;
        let mut counting = |i: &Value| {
            calls += 1;
            policy(i)
        };
        let cf = explore(&input, &base, &[], 50, &mut counting);
        assert_eq!(calls, 50);
        assert_eq!(cf.evaluations, 50);
        assert!(cf.untried > 900, "{}", cf.untried);
    }
}
