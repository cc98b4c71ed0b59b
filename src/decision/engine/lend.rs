//! Layer values one engine lends another: a shadow engine (the live layers
//! with some bundles swapped or added, `decision::shadow`) evaluates only
//! the layers that differ and takes the live evaluation's value for the
//! rest — so a shadow costs about what its own bundles cost, not a second
//! evaluation of the whole stack (issue 20: a shadow must not weigh on the
//! forwarded path, and on two cores its CPU is taken from it).
//!
//! A value is lent only when it is the same decision: the same bundle
//! (digest) with the same decision rule and layer, reading nothing outside
//! its own roots (`bundle::deps`: another bundle's rules or data may differ
//! between the two engines), loaded with the same policy library, on the
//! same input (the shadow job carries the live decision's input).

use std::collections::BTreeSet;

use serde_json::Value;

use super::{EngineError, EvalOutcome, PolicyEngine};

/// Each layer's raw decision value from one evaluation, in its engine's
/// layer order: what a shadow engine borrows ([`PolicyEngine::decide_lent`]).
#[derive(Debug, Clone, Default)]
pub struct LayerValues(Vec<Value>);

impl PolicyEngine {
    /// Makes this (shadow) engine take from `live` every layer value it can
    /// (see the module doc).
    pub fn borrow_from(&mut self, live: &PolicyEngine) {
        self.lent = self.lend_map(live);
        self.needs = self.own_needs();
    }

    /// The input paths this engine's own layers read, when each of them is
    /// memoized (a memoized layer is looked up, and evaluated on a miss, on
    /// its projection of the input alone — `decision::memo`); `None` when
    /// some layer needs the whole input.
    fn own_needs(&self) -> Option<Vec<Vec<String>>> {
        if !self.borrows() {
            return None;
        }
        let mut paths = BTreeSet::new();
        for (b, lent) in self.bundles.iter().zip(&self.lent) {
            if lent.is_none() {
                paths.extend(b.memo.as_ref()?.paths().iter().cloned());
            }
        }
        Some(
            crate::bundle::deps::prefix_free(paths)
                .into_iter()
                .collect(),
        )
    }

    /// What of `input` this (shadow) engine needs to decide with the live
    /// layer values: the paths its own layers read, or the whole input. A
    /// copy made on the forwarded path, so the smaller the better.
    pub fn shadow_input(&self, input: &Value) -> Value {
        match &self.needs {
            Some(paths) => crate::decision::memo::project(input, paths),
            None => input.clone(),
        }
    }

    /// For each of this engine's layers, the layer of `live` with the same
    /// decision, when its value may be taken.
    fn lend_map(&self, live: &PolicyEngine) -> Vec<Option<usize>> {
        if self.library != live.library {
            return vec![None; self.bundles.len()];
        }
        self.bundles
            .iter()
            .map(|b| {
                if !b.independent {
                    return None;
                }
                live.bundles.iter().position(|l| {
                    l.independent
                        && l.info.digest == b.info.digest
                        && l.info.layer == b.info.layer
                        && l.decision_rule == b.decision_rule
                })
            })
            .collect()
    }

    /// Whether this engine takes any layer's value from the live one: only
    /// then is it worth keeping the live values ([`Self::decide_keeping`]).
    pub fn borrows(&self) -> bool {
        self.lent.iter().any(Option::is_some)
    }

    /// [`PolicyEngine::decide`], keeping each layer's raw value for a
    /// shadow engine to borrow.
    pub fn decide_keeping(&self, input: &Value) -> Result<(EvalOutcome, LayerValues), EngineError> {
        let start = std::time::Instant::now();
        let values = self.layer_values(input, &mut [])?;
        let kept = LayerValues(values.clone());
        Ok((self.combine_values(values, start)?, kept))
    }

    /// [`PolicyEngine::decide`] with the live evaluation's layer values on
    /// the same input: the borrowed layers are taken, the others evaluated.
    /// `input` may be [`Self::shadow_input`]'s projection of it.
    pub fn decide_lent(
        &self,
        input: &Value,
        live: LayerValues,
    ) -> Result<EvalOutcome, EngineError> {
        let start = std::time::Instant::now();
        let mut live = live.0;
        // Taken, not cloned: two layers of one engine are never the same
        // bundle (their roots would overlap, refused at build).
        let mut given: Vec<Option<Value>> = self
            .lent
            .iter()
            .map(|j| j.and_then(|j| live.get_mut(j).map(Value::take)))
            .collect();
        let values = self.layer_values(input, &mut given)?;
        self.combine_values(values, start)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::bundle::{Bundle, BundleLimits, load_bundle};
    use crate::decision::engine::EngineOptions;

    fn bundle(dir: &std::path::Path, name: &str, package: &str, rego: &str) -> Arc<Bundle> {
        let root = dir.join(name);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(
            root.join(".manifest"),
            json!({"roots": [package], "revision": name}).to_string(),
        )
        .unwrap();
        std::fs::write(
            root.join("policy.rego"),
            format!("package {package}\n\n{rego}"),
        )
        .unwrap();
        Arc::new(load_bundle(&root, &BundleLimits::default()).unwrap())
    }

    fn engine(bundles: Vec<Arc<Bundle>>) -> PolicyEngine {
        let opts = EngineOptions {
            eval_timeout: Duration::from_secs(2),
            strict_input: false,
        };
        PolicyEngine::build("s", bundles, &opts).unwrap()
    }

    const ALLOW_READS: &str = r#"default decision := {"allow": false, "reasons": ["not_a_read"]}
decision := {"allow": true} if input.action.tool == "read""#;

    /// The borrowed layer's value is taken as it is, the swapped one is
    /// evaluated: a live value that is not what the bundle would answer
    /// shows which was which, and the decision equals the full evaluation
    /// when the values are the live ones.
    #[test]
    fn a_shadow_evaluates_only_its_own_layers() {
        let dir = tempfile::tempdir().unwrap();
        let base = bundle(dir.path(), "base", "base", ALLOW_READS);
        let live_top = bundle(dir.path(), "top", "top", "decision := {\"allow\": true}");
        let shadow_top = bundle(
            dir.path(),
            "top2",
            "top",
            "decision := {\"allow\": false, \"reasons\": [\"shadow_says_no\"]}",
        );
        let live = engine(vec![base.clone(), live_top]);
        let mut shadow = engine(vec![base, shadow_top]);
        shadow.borrow_from(&live);
        assert_eq!(shadow.lent, vec![Some(0), None]);
        assert!(shadow.borrows());

        let input = json!({"action": {"tool": "read"}});
        let (out, values) = live.decide_keeping(&input).unwrap();
        assert!(out.decision.allow);
        let lent = shadow.decide_lent(&input, values.clone()).unwrap();
        let full = shadow.decide(&input).unwrap();
        // The shadow's own layer reads nothing of the input (the layer that
        // reads `input.action.tool` is lent): its job carries nothing of it,
        // and it decides the same.
        let small = shadow.shadow_input(&input);
        assert_eq!(small, json!({}));
        let projected = shadow.decide_lent(&small, values).unwrap();
        assert_eq!(projected.decision.reasons, full.decision.reasons);
        assert_eq!(lent.decision.allow, full.decision.allow);
        assert_eq!(lent.decision.reasons, full.decision.reasons);
        assert_eq!(lent.decision.reasons, vec!["shadow_says_no".to_string()]);

        // A doctored live value for the base layer is taken, not evaluated
        // again: proof the borrowed layer is not re-run.
        let doctored = LayerValues(vec![
            json!({"allow": false, "reasons": ["from_live"]}),
            Value::Null,
        ]);
        let d = shadow.decide_lent(&input, doctored).unwrap().decision;
        assert!(d.reasons.contains(&"from_live".to_string()), "{d:?}");
    }

    /// A layer that reads another bundle's data is never borrowed: what it
    /// reads may be what the shadow changed.
    #[test]
    fn a_layer_reading_other_bundles_is_evaluated_again() {
        let dir = tempfile::tempdir().unwrap();
        let reader = bundle(
            dir.path(),
            "reader",
            "reader",
            "default decision := {\"allow\": false, \"reasons\": [\"closed\"]}\ndecision := {\"allow\": true} if data.flags.open",
        );
        let live_flags = bundle(
            dir.path(),
            "flags",
            "flags",
            "open := true\ndecision := {\"allow\": true}",
        );
        let shadow_flags = bundle(
            dir.path(),
            "flags2",
            "flags",
            "open := false\ndecision := {\"allow\": true}",
        );
        let live = engine(vec![reader.clone(), live_flags]);
        let mut shadow = engine(vec![reader, shadow_flags]);
        shadow.borrow_from(&live);
        assert_eq!(shadow.lent, vec![None, None]);
        assert!(!shadow.borrows());
        let input = json!({"action": {"tool": "x"}});
        let (_, values) = live.decide_keeping(&input).unwrap();
        assert_eq!(
            shadow.shadow_input(&input),
            input,
            "nothing lent: the whole input"
        );
        let d = shadow.decide_lent(&input, values).unwrap().decision;
        assert!(!d.allow, "the reader sees the shadow's flags: {d:?}");
        assert_eq!(d.reasons, vec!["closed".to_string()]);
    }

    /// The example's filesystem stack (its five layers, `servers.toml`)
    /// with a shadow layer beside it: the shadow borrows every live layer,
    /// so a shadow evaluation is its own bundle's alone.
    #[test]
    fn the_example_layers_are_all_lent() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bundles");
        let load =
            |n: &str| Arc::new(load_bundle(&root.join(n), &BundleLimits::default()).unwrap());
        let layers: Vec<Arc<Bundle>> = [
            "filesystem",
            "override",
            "identity",
            "compliance",
            "workflow",
        ]
        .into_iter()
        .map(load)
        .collect();
        let dir = tempfile::tempdir().unwrap();
        let extra = bundle(dir.path(), "candidate", "candidate", ALLOW_READS);
        let live = engine(layers.clone());
        let mut with_extra = layers;
        with_extra.push(extra);
        let mut shadow = engine(with_extra);
        shadow.borrow_from(&live);
        let lent: Vec<bool> = shadow.lent.iter().map(Option::is_some).collect();
        assert_eq!(lent, vec![true, true, true, true, true, false]);
        let input =
            json!({"action": {"tool": "read", "arguments": {"path": "x"}}, "user": {"id": "ada"}});
        assert_eq!(
            shadow.shadow_input(&input),
            json!({"action": {"tool": "read"}})
        );
    }
}
