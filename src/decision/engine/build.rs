//! Building a server's engine from its bundles: roots overlap, lint, the
//! dependency analysis that decides which layers may be memoized, each
//! bundle's reason catalog, classification and limits, and the warm engine
//! (one combined rule evaluates every layer in a single pass).

use std::sync::Arc;

use serde_json::Value;

use super::*;

/// An engine with one bundle alone (same settings as the server's), warmed
/// on its decision rule.
fn alone(
    b: &crate::bundle::Bundle,
    decision_rule: &str,
    opts: &EngineOptions,
) -> Result<regorus::Engine, String> {
    let mut engine = regorus::Engine::new();
    engine.set_strict_builtin_errors(false);
    engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
        limit: opts.eval_timeout,
        check_interval: std::num::NonZeroU32::new(64).expect("non-zero"),
    });
    engine.set_rego_v0(b.manifest.rego_version == Some(0));
    for m in &b.modules {
        engine
            .add_policy(m.path.clone(), m.text.clone())
            .map_err(|e| format!("bundle {}: {}: {e}", b.name, m.path))?;
    }
    engine
        .add_data(to_regorus(&b.data))
        .map_err(|e| format!("bundle {}: data: {e}", b.name))?;
    engine.set_rego_v0(false);
    Ok(warm(engine, decision_rule, opts))
}

/// The engine after one evaluation of `rule` (the first prepares it; clones
/// made after it skip that work) — on an evaluation thread, bounded like
/// every other. If the warm-up does not finish in time, the engine as it was.
fn warm(engine: regorus::Engine, rule: &str, opts: &EngineOptions) -> regorus::Engine {
    let mut warmed = engine.clone();
    let rule = rule.to_string();
    let deadline = std::time::Instant::now() + opts.eval_timeout;
    match run::run(deadline, move || {
        warmed.set_input(regorus::Value::new_object());
        let _ = warmed.eval_rule(rule);
        warmed
    }) {
        run::Outcome::Done(w) => w,
        _ => engine,
    }
}

impl PolicyEngine {
    pub fn build(
        server: &str,
        bundles: Vec<Arc<Bundle>>,
        opts: &EngineOptions,
    ) -> Result<PolicyEngine, EngineError> {
        let load = |m: String| EngineError::Load(format!("server {server:?}: {m}"));
        for (i, a) in bundles.iter().enumerate() {
            for b in &bundles[i + 1..] {
                for ra in &a.manifest.roots {
                    for rb in &b.manifest.roots {
                        if roots_overlap(ra, rb) {
                            return Err(load(format!(
                                "detected overlapping roots in manifests for these bundles: [{}, {}] ('{ra}' and '{rb}'); give each bundle its own root",
                                a.name, b.name
                            )));
                        }
                    }
                }
            }
        }
        let mut engine = regorus::Engine::new();
        engine.set_strict_builtin_errors(false);
        engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
            limit: opts.eval_timeout,
            check_interval: std::num::NonZeroU32::new(64).expect("non-zero"),
        });
        let mut loaded = Vec::new();
        let mut warnings = Vec::new();
        for b in &bundles {
            let report = lint(b, opts.strict_input).map_err(|e| load(e.to_string()))?;
            if !report.errors.is_empty() {
                let list: Vec<String> = report.errors.iter().map(|f| f.to_string()).collect();
                return Err(load(format!(
                    "bundle {} ({}) refused by lint:\n  {}",
                    b.name,
                    b.source,
                    list.join("\n  ")
                )));
            }
            warnings.extend(report.warnings);
            engine.set_rego_v0(b.manifest.rego_version == Some(0));
            for m in &b.modules {
                engine
                    .add_policy(m.path.clone(), m.text.clone())
                    .map_err(|e| load(format!("bundle {}: {}: {e}", b.name, m.path)))?;
            }
            engine
                .add_data(to_regorus(&b.data))
                .map_err(|e| load(format!("bundle {}: data: {e}", b.name)))?;
            let decision_rule = match b.manifest.gavel("decision").and_then(Value::as_str) {
                Some(r) => rule_path(r),
                None if b.manifest.roots.len() == 1 && !b.manifest.roots[0].is_empty() => {
                    rule_path(&format!("{}/decision", b.manifest.roots[0]))
                }
                None => {
                    return Err(load(format!(
                        "bundle {}: cannot tell its decision rule: set metadata.gavel.decision in .manifest, or give the bundle exactly one root",
                        b.name
                    )));
                }
            };
            let (pkg, _) = decision_rule.rsplit_once('.').unwrap_or(("data", ""));
            let pkg_path = pkg
                .trim_start_matches("data")
                .trim_start_matches('.')
                .replace('.', "/");
            // Which rules exist, from the parse tree: the decision rule must,
            // `visible` and the `log` package may.
            let idx = index(b).map_err(|e| load(e.to_string()))?;
            let has_rule = |package: &str, rule: &str| {
                idx.iter()
                    .any(|m| m.package == package && m.rules.contains(rule))
            };
            let decision_name = decision_rule.rsplit('.').next().unwrap_or("decision");
            if !has_rule(&pkg_path, decision_name) {
                return Err(load(format!(
                    "bundle {}: no module defines the decision rule {decision_rule}; define it, or point metadata.gavel.decision in .manifest at the right rule",
                    b.name
                )));
            }
            let has_visible = has_rule(&pkg_path, "visible");
            let layer = match b.manifest.gavel("layer").and_then(Value::as_str) {
                None => Layer::Resource,
                Some(l) => Layer::parse(l).ok_or_else(|| load(format!("bundle {}: unknown layer {l:?} (identity, resource, workflow, compliance, override)", b.name)))?,
            };
            let disclosure = b
                .manifest
                .gavel("disclosure")
                .and_then(Value::as_str)
                .unwrap_or("explain");
            if disclosure != "explain" && disclosure != "withhold" {
                return Err(load(format!(
                    "bundle {}: disclosure must be \"explain\" or \"withhold\", not {disclosure:?}",
                    b.name
                )));
            }
            // Reason catalog: beside the decision rule, else at a root.
            let reasons = std::iter::once(pkg_path.as_str())
                .chain(b.manifest.roots.iter().map(String::as_str))
                .find_map(|p| get_path(&b.data, &format!("{p}/reasons")).and_then(Value::as_object))
                .cloned()
                .unwrap_or_default();
            let mut limits = crate::state::limits::Limit::parse_list(
                std::iter::once(pkg_path.as_str())
                    .chain(b.manifest.roots.iter().map(String::as_str))
                    .find_map(|p| get_path(&b.data, &format!("{p}/limits"))),
                &format!("bundle {}", b.name),
            )
            .map_err(load)?;
            // The bundle's identity for its shared user/agent limits: its
            // name and roots (two different bundles never share a root).
            let owner = format!("{}[{}]", b.name, b.manifest.roots.join(","));
            for l in &mut limits {
                l.bundle = Some(owner.clone());
            }
            let classification = get_path(&b.data, &format!("{pkg_path}/classification"))
                .cloned()
                .unwrap_or(Value::Null);
            let log_package = format!("{pkg_path}/log");
            let log_rule =
                |rule: &str| has_rule(&log_package, rule).then(|| format!("{pkg}.log.{rule}"));
            let (log_drop, log_mask) = (log_rule("drop"), log_rule("mask"));
            loaded.push(Loaded {
                info: BundleInfo {
                    name: b.name.clone(),
                    revision: b.manifest.revision.clone(),
                    digest: b.digest.clone(),
                    layer,
                },
                visible_rule: has_visible.then(|| format!("{pkg}.visible")),
                decision_rule,
                reasons,
                classification,
                log_drop,
                log_mask,
                withhold: disclosure == "withhold",
                memo: None,
                own: None,
                limits,
            });
        }
        engine.set_rego_v0(false);
        // Recursion through another bundle's rules (each bundle's own was
        // refused by its lint): refused before anything is evaluated.
        let set: Vec<&Bundle> = bundles.iter().map(|b| b.as_ref()).collect();
        let cycles = crate::bundle::recursion::check(&set).map_err(|e| load(e.to_string()))?;
        if !cycles.is_empty() {
            let list: Vec<String> = cycles.iter().map(|f| f.to_string()).collect();
            return Err(load(format!(
                "bundles refused together:\n  {}",
                list.join("\n  ")
            )));
        }
        // What each layer reads, over all the bundles together: a rule of
        // one may be reached from another.
        let deps: Vec<Deps> = analyze_set(&set).map_err(|e| load(e.to_string()))?;
        // Memoizable layers: pure, with listable input reads; a layer that
        // reads another bundle's data or rules depends on what they read too.
        let listable = |d: &Deps| !d.impure && !d.whole_input;
        let all_listable = deps.iter().all(listable);
        for ((l, d), b) in loaded.iter_mut().zip(&deps).zip(&bundles) {
            if listable(d) && !d.foreign_data {
                l.own = Some(Arc::new(Pool::new(
                    alone(b, &l.decision_rule, opts).map_err(load)?,
                )));
            }
            l.memo = match (listable(d), d.foreign_data) {
                (false, _) => None,
                (true, false) => Some(Memo::new(d.input_paths.iter().cloned())),
                (true, true) if all_listable => {
                    let union: std::collections::BTreeSet<Vec<String>> = deps
                        .iter()
                        .flat_map(|d| d.input_paths.iter().cloned())
                        .collect();
                    Some(Memo::new(crate::bundle::deps::prefix_free(union)))
                }
                (true, true) => None,
            };
        }
        // One rule that gathers every layer's decision, so a decision is one
        // evaluation: rules the layers share (identity helpers, data lookups)
        // are computed once, and the interpreter's per-evaluation set-up is
        // paid once instead of once per layer. `[x | x := …]` keeps an
        // undefined decision apart from the others (an empty list).
        for b in &bundles {
            let idx = index(b).map_err(|e| load(e.to_string()))?;
            if let Some(m) = idx.iter().find(|m| m.package == COMBINED_PACKAGE) {
                return Err(load(format!(
                    "bundle {}: {}: package {COMBINED_PACKAGE} is reserved for gavel; rename it",
                    b.name, m.path
                )));
            }
        }
        let gather: Vec<String> = loaded
            .iter()
            .map(|l| format!("[x | x := {}]", rego_ref(&l.decision_rule)))
            .collect();
        engine
            .add_policy(
                "gavel:combined.rego".into(),
                format!(
                    "package {COMBINED_PACKAGE}\n\nlayers := [{}]\n",
                    gather.join(", ")
                ),
            )
            .map_err(|e| load(format!("gavel's combined decision rule: {e}")))?;
        // Warm: the first evaluation prepares the engine; clones made after it
        // skip that work.
        let engine = warm(engine, COMBINED_RULE, opts);
        let version = loaded
            .iter()
            .map(|b| {
                if b.info.revision.is_empty() {
                    b.info.name.clone()
                } else {
                    format!("{}@{}", b.info.name, b.info.revision)
                }
            })
            .collect::<Vec<_>>()
            .join(",");
        let mut bundles_json = serde_json::Map::new();
        for b in &loaded {
            bundles_json.insert(
                b.info.name.clone(),
                serde_json::json!({"revision": b.info.revision, "digest": b.info.digest, "layer": b.info.layer}),
            );
        }
        Ok(PolicyEngine {
            pool: Arc::new(Pool::new(engine)),
            bundles: loaded,
            version,
            bundles_json: Value::Object(bundles_json),
            warnings,
            timeout: opts.eval_timeout,
        })
    }
}
