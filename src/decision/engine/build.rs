//! Building a server's engine from its bundles: roots overlap, lint, the
//! dependency analysis that decides which layers may be memoized, each
//! bundle's reason catalog, classification and limits, and the warm engine
//! (one combined rule evaluates every layer in a single pass).
//!
//! [`PolicyEngine::build`] is the sequence; each step is a method of
//! [`Builder`], which holds what the steps share (the server's engine being
//! filled, the lint warnings, the server name every error starts with).
//! The steps run in a fixed order and the first failure is the error, so a
//! bundle with several problems always reports the same one. How the
//! regorus engines themselves are put together is `assemble`.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;

use super::assemble::{add_bundle, alone, deciding_engine, gather, new_engine};
use super::*;
use crate::bundle::lint::{ModuleIndex, decision_shape};
use crate::state::limits::Limit;

impl PolicyEngine {
    /// Compiles `server`'s bundles into one engine: refuses overlapping
    /// roots, loads the policy library (`bundle::library`: a configured
    /// one, else the embedded copy) and lints and loads each layer, refuses
    /// recursion across bundles, plans the memos, then adds the rule that
    /// gathers every layer and warms the engine.
    pub fn build(
        server: &str,
        bundles: Vec<Arc<Bundle>>,
        opts: &EngineOptions,
    ) -> Result<PolicyEngine, EngineError> {
        let mut builder = Builder {
            server,
            opts,
            engine: new_engine(opts),
            warnings: Vec::new(),
            reserved: None,
        };
        builder.refuse_overlapping_roots(&bundles)?;
        let configured: Vec<&Bundle> = bundles.iter().map(|b| b.as_ref()).collect();
        let library = builder.load_library(&configured)?;
        let layers: Vec<&Bundle> = configured
            .iter()
            .copied()
            .filter(|b| !crate::bundle::library::library_only(b))
            .collect();
        if layers.is_empty() && !configured.is_empty() {
            // A library decides nothing: without a layer every request
            // would pass unexamined.
            return Err(load_error(
                server,
                "its only bundle is the policy library (roots [\"gavel/lib\"]), which decides nothing; add the bundle whose decision rule governs the server".into(),
            ));
        }
        let mut loaded = Vec::with_capacity(layers.len());
        // The same layers as `layers`, as the shared bundles the engine keeps.
        for b in bundles
            .iter()
            .filter(|b| !crate::bundle::library::library_only(b))
        {
            loaded.push(builder.load_layer(b)?);
        }
        builder.refuse_recursion(&crate::bundle::library::with_library(&configured))?;
        let plan = builder.plan_memos(&mut loaded, &layers, &configured, library)?;
        builder.refuse_reserved_package()?;
        let Builder {
            engine, warnings, ..
        } = builder;
        // The engine again without the test files no rule reaches, if any:
        // every `data` reference walks each module of the engine.
        let engine = if plan.idle.iter().all(BTreeSet::is_empty) {
            engine
        } else {
            deciding_engine(&configured, &plan.idle, opts).map_err(|m| load_error(server, m))?
        };
        let engine = gather(engine, &loaded, opts).map_err(|m| load_error(server, m))?;
        Ok(PolicyEngine {
            pool: Arc::new(Pool::new(engine)),
            version: version_of(&loaded),
            bundles_json: crate::audit::record::Bundles::new(bundles_json_of(&loaded)),
            bundles: loaded,
            warnings,
            timeout: opts.eval_timeout,
            reads_budget: plan.reads_budget,
            library: library.digest.clone(),
            lent: Vec::new(),
            needs: None,
            reads: plan.reads,
            prefixes: Default::default(),
        })
    }
}

/// What [`Builder::plan_memos`] found beside the memos.
struct Plan {
    /// Whether any rule may read `input.context.budget`.
    reads_budget: bool,
    /// Every input path any rule may read, when each layer's can be listed.
    reads: Option<Vec<Vec<String>>>,
    /// Per configured bundle, its test files no rule reaches
    /// (`Deps::idle_modules`).
    idle: Vec<BTreeSet<String>>,
}

/// Whether a rule with these dependencies may read `input.context.budget`
/// (a path above it, below it, or input it cannot list).
fn reads_budget(d: &Deps) -> bool {
    const BUDGET: [&str; 2] = ["context", "budget"];
    d.whole_input
        || d.input_paths
            .iter()
            .any(|p| p.iter().zip(BUDGET).all(|(a, b)| a == b))
}

/// A build failure, named by the server whose policy it is.
fn load_error(server: &str, m: String) -> EngineError {
    EngineError::Load(format!("server {server:?}: {m}"))
}

/// The state [`PolicyEngine::build`]'s steps share.
struct Builder<'a> {
    server: &'a str,
    opts: &'a EngineOptions,
    /// The server's engine: every bundle's modules and data.
    engine: regorus::Engine,
    /// Lint warnings of every bundle, in bundle order.
    warnings: Vec<LintFinding>,
    /// The first module (bundle, path) found in gavel's reserved package,
    /// refused once the layers are loaded.
    reserved: Option<(String, String)>,
}

impl Builder<'_> {
    fn load(&self, m: String) -> EngineError {
        load_error(self.server, m)
    }

    /// Two bundles of one server must not share a root (OPA's rule).
    fn refuse_overlapping_roots(&self, bundles: &[Arc<Bundle>]) -> Result<(), EngineError> {
        for (i, a) in bundles.iter().enumerate() {
            for b in &bundles[i + 1..] {
                for ra in &a.manifest.roots {
                    for rb in &b.manifest.roots {
                        if roots_overlap(ra, rb) {
                            return Err(self.load(format!(
                                "detected overlapping roots in manifests for these bundles: [{}, {}] ('{ra}' and '{rb}'); give each bundle its own root",
                                a.name, b.name
                            )));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The policy library the server's engine gets: a configured bundle
    /// that provides it (added with its layer when it is one), else the
    /// embedded copy. Every configured bundle is checked against the
    /// reserved package here, before anything is added.
    fn load_library<'b>(&mut self, configured: &[&'b Bundle]) -> Result<&'b Bundle, EngineError> {
        for b in configured {
            crate::bundle::library::check_reserved(b).map_err(|e| self.load(e.to_string()))?;
        }
        if let Some(b) = configured
            .iter()
            .find(|b| crate::bundle::library::provides(b))
        {
            if crate::bundle::library::library_only(b) {
                self.lint_and_add(b)?;
            }
            return Ok(b);
        }
        let lib = crate::bundle::library::embedded();
        add_bundle(&mut self.engine, lib).map_err(|m| self.load(m))?;
        Ok(lib)
    }

    /// Lints `b` (errors refuse it, warnings are kept) and adds it to the
    /// server's engine.
    fn lint_and_add(&mut self, b: &Bundle) -> Result<(), EngineError> {
        let report = lint(b, self.opts.strict_input).map_err(|e| self.load(e.to_string()))?;
        if !report.errors.is_empty() {
            let list: Vec<String> = report.errors.iter().map(|f| f.to_string()).collect();
            return Err(self.load(format!(
                "bundle {} ({}) refused by lint:\n  {}",
                b.name,
                b.source,
                list.join("\n  ")
            )));
        }
        self.warnings.extend(report.warnings);
        add_bundle(&mut self.engine, b).map_err(|m| self.load(m))
    }

    /// One bundle as a layer: linted, added to the server's engine, its
    /// decision rule found and checked to exist (from the bundle's parse
    /// tree, parsed once here), its layer, disclosure, reason catalog,
    /// limits, classification and log rules read.
    fn load_layer(&mut self, b: &Arc<Bundle>) -> Result<Loaded, EngineError> {
        self.lint_and_add(b)?;
        let decision_rule = self.decision_rule(b)?;
        let (pkg, _) = decision_rule.rsplit_once('.').unwrap_or(("data", ""));
        let pkg_path = pkg
            .trim_start_matches("data")
            .trim_start_matches('.')
            .replace('.', "/");
        // Which rules exist, from the parse tree: the decision rule must,
        // `visible` and the `log` package may.
        let idx = index(b).map_err(|e| self.load(e.to_string()))?;
        if self.reserved.is_none() {
            self.reserved = idx
                .iter()
                .find(|m| m.package == COMBINED_PACKAGE)
                .map(|m| (b.name.clone(), m.path.clone()));
        }
        let defines = |package: &str, rule: &str| has_rule(&idx, package, rule);
        let decision_name = decision_rule.rsplit('.').next().unwrap_or("decision");
        if !defines(&pkg_path, decision_name) {
            return Err(self.load(format!(
                "bundle {}: no module defines the decision rule {decision_rule}; define it, or point metadata.gavel.decision in .manifest at the right rule",
                b.name
            )));
        }
        self.warnings.extend(
            decision_shape::unknown_keys(
                b,
                &decision_rule,
                &decision_shape::Known {
                    decision: answer::DECISION_KEYS,
                    metadata: answer::METADATA_KEYS,
                },
            )
            .map_err(|e| self.load(e.to_string()))?,
        );
        let has_visible = defines(&pkg_path, "visible");
        let layer = self.layer(b)?;
        let withhold = self.withhold(b)?;
        // Reason catalog: beside the decision rule, else at a root.
        let reasons = std::iter::once(pkg_path.as_str())
            .chain(b.manifest.roots.iter().map(String::as_str))
            .find_map(|p| get_path(&b.data, &format!("{p}/reasons")).and_then(Value::as_object))
            .cloned()
            .unwrap_or_default();
        let limits = self.limits(b, &pkg_path)?;
        let classification = get_path(&b.data, &format!("{pkg_path}/classification"))
            .cloned()
            .unwrap_or(Value::Null);
        let log_package = format!("{pkg_path}/log");
        let log_rule =
            |rule: &str| defines(&log_package, rule).then(|| format!("{pkg}.log.{rule}"));
        let (log_drop, log_mask) = (log_rule("drop"), log_rule("mask"));
        let result = super::result::find(b, pkg, &pkg_path, &idx).map_err(|m| self.load(m))?;
        Ok(Loaded {
            info: BundleInfo {
                name: b.name.clone(),
                revision: b.manifest.revision.clone(),
                digest: b.digest.clone(),
                layer,
            },
            source: b.clone(),
            visible_rule: has_visible.then(|| format!("{pkg}.visible")),
            decision_rule,
            reasons,
            classification,
            log_drop,
            log_mask,
            withhold,
            memo: None,
            own: None,
            limits,
            result,
            result_memo: None,
            independent: false,
        })
    }

    /// `metadata.gavel.decision`, else `<the one root>/decision`.
    fn decision_rule(&self, b: &Bundle) -> Result<String, EngineError> {
        match b.manifest.gavel("decision").and_then(Value::as_str) {
            Some(r) => Ok(rule_path(r)),
            None if b.manifest.roots.len() == 1 && !b.manifest.roots[0].is_empty() => {
                Ok(rule_path(&format!("{}/decision", b.manifest.roots[0])))
            }
            None => Err(self.load(format!(
                "bundle {}: cannot tell its decision rule: set metadata.gavel.decision in .manifest, or give the bundle exactly one root",
                b.name
            ))),
        }
    }

    /// `metadata.gavel.layer` (default: resource).
    fn layer(&self, b: &Bundle) -> Result<Layer, EngineError> {
        match b.manifest.gavel("layer").and_then(Value::as_str) {
            None => Ok(Layer::Resource),
            Some(l) => Layer::parse(l).ok_or_else(|| {
                self.load(format!(
                    "bundle {}: unknown layer {l:?} (identity, resource, workflow, compliance, override)",
                    b.name
                ))
            }),
        }
    }

    /// Whether `metadata.gavel.disclosure` withholds the reasons from the
    /// agent (default: explain).
    fn withhold(&self, b: &Bundle) -> Result<bool, EngineError> {
        let disclosure = b
            .manifest
            .gavel("disclosure")
            .and_then(Value::as_str)
            .unwrap_or("explain");
        if disclosure != "explain" && disclosure != "withhold" {
            return Err(self.load(format!(
                "bundle {}: disclosure must be \"explain\" or \"withhold\", not {disclosure:?}",
                b.name
            )));
        }
        Ok(disclosure == "withhold")
    }

    /// The rate limits the bundle declares (beside the decision rule, else
    /// at a root), owned by the bundle: its name and roots are the identity
    /// of its shared user/agent limits (two different bundles never share a
    /// root).
    fn limits(&self, b: &Bundle, pkg_path: &str) -> Result<Vec<Limit>, EngineError> {
        let mut limits = Limit::parse_list(
            beside_or_at_root(b, pkg_path, "limits"),
            &format!("bundle {}", b.name),
        )
        .map_err(|m| self.load(m))?;
        let owner = format!("{}[{}]", b.name, b.manifest.roots.join(","));
        for l in &mut limits {
            l.bundle = Some(owner.clone());
        }
        Ok(limits)
    }

    /// Recursion through another bundle's rules (each bundle's own was
    /// refused by its lint): refused before anything is evaluated.
    fn refuse_recursion(&self, set: &[&Bundle]) -> Result<(), EngineError> {
        let cycles = crate::bundle::recursion::check(set).map_err(|e| self.load(e.to_string()))?;
        if !cycles.is_empty() {
            let list: Vec<String> = cycles.iter().map(|f| f.to_string()).collect();
            return Err(self.load(format!(
                "bundles refused together:\n  {}",
                list.join("\n  ")
            )));
        }
        Ok(())
    }

    /// Which layers may be memoized, and on which input paths. What each
    /// layer reads is analysed over all the bundles together (a rule of one
    /// may be reached from another). Memoizable layers: pure, with listable
    /// input reads; a layer that reads another bundle's data or rules
    /// depends on what they read too. A layer that reads nothing of the
    /// others gets an engine of its own (with the library) for its memo
    /// misses. `configured` is every bundle (a library-only one too, for
    /// the analysis); `set` the layers, in `loaded` order. Returns whether
    /// any rule of the bundles may read `input.context.budget` (the same
    /// analysis: a server whose rules never do is decided without reading
    /// the budget before the policy, `Enforcer::input_for`), and every
    /// input path any rule may read when each layer's reads can be listed
    /// (the union a memo of a layer that reads other bundles is keyed on;
    /// `PolicyEngine::result_input`).
    fn plan_memos(
        &self,
        loaded: &mut [Loaded],
        set: &[&Bundle],
        configured: &[&Bundle],
        library: &Bundle,
    ) -> Result<Plan, EngineError> {
        let all: Vec<Deps> = analyze_set(configured).map_err(|e| self.load(e.to_string()))?;
        let budget = all.iter().any(reads_budget);
        let idle = all.iter().map(|d| d.idle_modules.clone()).collect();
        let deps: Vec<Deps> = configured
            .iter()
            .zip(all)
            .filter(|(b, _)| !crate::bundle::library::library_only(b))
            .map(|(_, d)| d)
            .collect();
        let listable = |d: &Deps| !d.impure && !d.whole_input;
        let all_listable = deps.iter().all(listable);
        for ((l, d), b) in loaded.iter_mut().zip(&deps).zip(set) {
            l.independent = !d.foreign_data;
            if listable(d) && !d.foreign_data {
                l.own = Some(Arc::new(Pool::new(
                    alone(b, d, library, &l.decision_rule, self.opts).map_err(|m| self.load(m))?,
                )));
            }
            l.memo = match (listable(d), d.foreign_data) {
                (false, _) => None,
                (true, false) => {
                    Some(Memo::new(d.input_paths.iter().cloned()).comparing(&d.compared))
                }
                (true, true) if all_listable => {
                    let union: BTreeSet<Vec<String>> = deps
                        .iter()
                        .flat_map(|d| d.input_paths.iter().cloned())
                        .collect();
                    Some(Memo::new(crate::bundle::deps::prefix_free(union)))
                }
                (true, true) => None,
            };
            l.result_memo = match (&l.memo, &l.result) {
                (Some(m), Some(_)) => Some(m.keyed_alike()),
                _ => None,
            };
        }
        // Impurity does not matter here: only which input paths are read.
        let reads = deps.iter().all(|d| !d.whole_input).then(|| {
            let union: BTreeSet<Vec<String>> = deps
                .iter()
                .flat_map(|d| d.input_paths.iter().cloned())
                .collect();
            crate::bundle::deps::prefix_free(union)
                .into_iter()
                .collect()
        });
        Ok(Plan {
            reads_budget: budget,
            reads,
            idle,
        })
    }

    /// gavel's combined rule lives in its own package: a bundle may not
    /// define it.
    fn refuse_reserved_package(&self) -> Result<(), EngineError> {
        match &self.reserved {
            Some((bundle, path)) => Err(self.load(format!(
                "bundle {bundle}: {path}: package {COMBINED_PACKAGE} is reserved for gavel; rename it"
            ))),
            None => Ok(()),
        }
    }
}

/// Whether a module of `package` defines `rule`.
fn has_rule(idx: &[ModuleIndex], package: &str, rule: &str) -> bool {
    idx.iter()
        .any(|m| m.package == package && m.rules.contains(rule))
}

/// `<package>/<name>` in a bundle's data, else `<root>/<name>` at its
/// first root that has it.
fn beside_or_at_root<'a>(b: &'a Bundle, pkg_path: &str, name: &str) -> Option<&'a Value> {
    std::iter::once(pkg_path)
        .chain(b.manifest.roots.iter().map(String::as_str))
        .find_map(|p| get_path(&b.data, &format!("{p}/{name}")))
}

/// `name@revision` of every bundle (the name alone without a revision),
/// comma-separated.
fn version_of(loaded: &[Loaded]) -> String {
    loaded
        .iter()
        .map(|b| {
            if b.info.revision.is_empty() {
                b.info.name.clone()
            } else {
                format!("{}@{}", b.info.name, b.info.revision)
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The decision log's `bundles`: `{name: {revision, digest, layer}}`.
fn bundles_json_of(loaded: &[Loaded]) -> Value {
    let mut bundles_json = serde_json::Map::new();
    for b in loaded {
        bundles_json.insert(
            b.info.name.clone(),
            serde_json::json!({"revision": b.info.revision, "digest": b.info.digest, "layer": b.info.layer}),
        );
    }
    Value::Object(bundles_json)
}
