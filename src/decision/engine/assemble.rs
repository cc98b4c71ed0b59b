//! Assembling regorus engines from bundles: gavel's engine settings, a
//! bundle's modules and data added (less what no decision reaches), a
//! layer's own engine, the server's engine for deciding, the combined rule
//! that gathers every layer, and the warm-up. What to put in each engine is
//! decided in `build` (the analysis, `bundle::deps`); this is how.

use std::collections::BTreeSet;

use super::*;

/// A regorus engine with gavel's settings, shared by a server's engine and a
/// bundle's own: OPA's semantics for builtin errors (the expression is
/// undefined, so `default` rules apply) and the evaluation timer, checked
/// every 64 interpreter steps.
pub(super) fn new_engine(opts: &EngineOptions) -> regorus::Engine {
    let mut engine = regorus::Engine::new();
    engine.set_strict_builtin_errors(false);
    engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
        limit: opts.eval_timeout,
        check_interval: std::num::NonZeroU32::new(64).expect("non-zero"),
    });
    engine
}

/// Adds a bundle's modules (parsed in its own Rego version) and data to
/// `engine`. The error names the bundle and the module.
pub(super) fn add_bundle(engine: &mut regorus::Engine, b: &Bundle) -> Result<(), String> {
    add_bundle_but(engine, b, &BTreeSet::new())
}

/// [`add_bundle`] without the module files in `idle` (`Deps::idle_modules`).
pub(super) fn add_bundle_but(
    engine: &mut regorus::Engine,
    b: &Bundle,
    idle: &BTreeSet<String>,
) -> Result<(), String> {
    engine.set_rego_v0(b.manifest.rego_version == Some(0));
    for m in b.modules.iter().filter(|m| !idle.contains(&m.path)) {
        engine
            .add_policy(m.path.clone(), m.text.clone())
            .map_err(|e| format!("bundle {}: {}: {e}", b.name, m.path))?;
    }
    engine
        .add_data(to_regorus(&b.data))
        .map_err(|e| format!("bundle {}: data: {e}", b.name))?;
    engine.set_rego_v0(false);
    Ok(())
}

/// An engine with one bundle alone (same settings as the server's) and,
/// when given, the policy library (unless the bundle is it), warmed on its
/// decision rule. It carries only what a decision can reach: regorus walks
/// every module of its engine on each `data` reference it evaluates, so a
/// bundle evaluated on every call (its memo never answering) pays for each
/// module it carries. The library is left out when the bundle names no
/// part of it (`Deps::names_library`), and so are its test files that no
/// rule reaches (`Deps::idle_modules`).
pub(super) fn alone(
    b: &Bundle,
    deps: &Deps,
    library: &Bundle,
    decision_rule: &str,
    opts: &EngineOptions,
) -> Result<regorus::Engine, String> {
    let mut engine = new_engine(opts);
    add_bundle_but(&mut engine, b, &deps.idle_modules)?;
    if deps.names_library && !std::ptr::eq(b, library) {
        add_bundle(&mut engine, library)?;
    }
    Ok(warm(engine, decision_rule, opts))
}

/// The engine after one evaluation of `rule` (the first prepares it; clones
/// made after it skip that work) — on an evaluation thread, bounded like
/// every other. If the warm-up does not finish in time, the engine as it was.
pub(super) fn warm(engine: regorus::Engine, rule: &str, opts: &EngineOptions) -> regorus::Engine {
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

/// The server's engine for deciding: every configured bundle without its
/// idle test files (`idle`, in `configured` order) and the policy library
/// (`bundle::library::with_library`: the embedded copy unless a configured
/// bundle provides it). What the builder's engine holds, less what no
/// decision can reach.
pub(super) fn deciding_engine(
    configured: &[&Bundle],
    idle: &[BTreeSet<String>],
    opts: &EngineOptions,
) -> Result<regorus::Engine, String> {
    let mut engine = new_engine(opts);
    let none = BTreeSet::new();
    for (i, b) in crate::bundle::library::with_library(configured)
        .into_iter()
        .enumerate()
    {
        add_bundle_but(&mut engine, b, idle.get(i).unwrap_or(&none))?;
    }
    Ok(engine)
}

/// One rule that gathers every layer's decision, so a decision is one
/// evaluation: rules the layers share (identity helpers, data lookups) are
/// computed once, and the interpreter's per-evaluation set-up is paid once
/// instead of once per layer. `[x | x := …]` keeps an undefined decision
/// apart from the others (an empty list). Then the engine is warmed: the
/// first evaluation prepares it; clones made after it skip that work.
pub(super) fn gather(
    mut engine: regorus::Engine,
    loaded: &[Loaded],
    opts: &EngineOptions,
) -> Result<regorus::Engine, String> {
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
        .map_err(|e| format!("gavel's combined decision rule: {e}"))?;
    Ok(warm(engine, COMBINED_RULE, opts))
}
