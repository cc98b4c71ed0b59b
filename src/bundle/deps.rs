//! What a bundle's decision can depend on, from regorus's parse tree: which
//! `input` paths its modules read, whether they read `data` outside the
//! bundle's own roots, and whether they call a builtin whose answer is not a
//! function of its arguments (`time.now_ns`, `rand.*`, `uuid.*`,
//! `opa.runtime`, `http.send`, `io.jwt.decode_verify`) or that has an
//! effect (`print`, `trace`).
//!
//! The decision memo (`decision::memo`) uses this to key a layer's decision
//! on the parts of the input it reads, so the analysis is conservative:
//! anything it cannot see through — a bare `input` (`walk(input, …)`,
//! `with input as …`, `object.get(input, …)`), `input[x]` at the top, a
//! dynamic `data[x]` — makes the bundle depend on the whole input or on
//! every bundle, never on less.

use std::collections::BTreeSet;

use regorus::unstable::{Expr, Module, Rule};

use super::lint::{parse_module, ref_prefix, ref_root, walk_rule};
use super::recursion::{Graph, head_group};
use super::{Bundle, BundleError};

mod compared;
pub use compared::Compare;

/// Builtins whose result is not determined by their arguments, or that act.
/// `io.jwt.decode_verify` reads the clock when its constraints name no
/// `time`; `net.lookup_ip_addr` asks DNS.
const IMPURE: &[&str] = &[
    "time.now_ns",
    "opa.runtime",
    "http.send",
    "net.lookup_ip_addr",
    "io.jwt.decode_verify",
    "print",
    "trace",
];

/// Whole families treated as impure, present and future members alike
/// (`rand.intn`, `uuid.rfc4122`, …): a deterministic one (`uuid.parse`)
/// only costs its bundle the memo and replay, never a wrong answer.
const IMPURE_FAMILIES: &[&str] = &["rand.", "uuid."];

fn is_impure(name: &str) -> bool {
    IMPURE.contains(&name) || IMPURE_FAMILIES.iter().any(|f| name.starts_with(f))
}

/// The impure builtins that only act (output), whose decisions stay a
/// function of the input: a replay can still reproduce them.
const EFFECT_ONLY: &[&str] = &["print", "trace"];

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Deps {
    /// Calls an impure builtin: not memoizable (its answer may differ for
    /// the same input, or it has an effect each evaluation must have).
    pub impure: bool,
    /// Calls a builtin whose answer is not a function of its arguments
    /// (everything impure but `print`/`trace`): not replayable.
    pub nondeterministic: bool,
    /// Reads `input` in a way whose paths cannot be listed.
    pub whole_input: bool,
    /// Reads `data` outside its own roots (another bundle's rules or data).
    pub foreign_data: bool,
    /// Static `input` paths read (without the leading `input`), prefix-free:
    /// a path whose ancestor is also read is dropped.
    pub input_paths: BTreeSet<Vec<String>>,
    /// Some rule of the bundle — any rule, a `test_*` one too, reached or
    /// not, outside `idle_modules` — or an import names the policy library's `data` (`data.gavel.lib`,
    /// under it, or an ancestor such as `data.gavel` or `data`). An engine
    /// of the bundle alone needs the library only then: a bundle that names
    /// no part of it can neither read nor call it (regorus still prepares
    /// unreached rules, so they count too).
    pub names_library: bool,
    /// The bundle's module files whose every rule is a `test_*` rule that
    /// no other rule of the set can reach (`analyze_set`): what only `gavel
    /// test` runs. An engine that only decides may leave them out — no
    /// decision can reach them — and should: regorus walks every module of
    /// its engine on each `data` reference it evaluates.
    pub idle_modules: BTreeSet<String>,
    /// Input paths (also in `input_paths`) that every read compares with a
    /// constant, and those comparisons (`deps::compared`): the decision
    /// depends on their outcomes, not on the value.
    pub compared: std::collections::BTreeMap<Vec<String>, Vec<Compare>>,
}

fn within_roots(path: &[String], roots: &[String]) -> bool {
    roots.iter().any(|r| {
        let r: Vec<&str> = r.split('/').filter(|s| !s.is_empty()).collect();
        // An empty root owns all of data.
        path.len() >= r.len() && r.iter().zip(path).all(|(a, b)| *a == b.as_str())
    })
}

/// Keeps only the shortest paths: reading `a` already covers `a.b`.
pub(crate) fn prefix_free(paths: BTreeSet<Vec<String>>) -> BTreeSet<Vec<String>> {
    let mut out: BTreeSet<Vec<String>> = BTreeSet::new();
    // Sorted order puts every ancestor before its descendants.
    for p in paths {
        if !out.iter().any(|q| p.starts_with(q)) {
            out.insert(p);
        }
    }
    out
}

fn is_test_name(name: &str) -> bool {
    name.starts_with("test_") || name.starts_with("todo_test_")
}

/// One bundle alone; see [`analyze_set`] for bundles decided together.
pub fn analyze(bundle: &Bundle) -> Result<Deps, BundleError> {
    Ok(analyze_set(&[bundle])?.remove(0))
}

/// What each of `bundles` depends on when they are evaluated together (a
/// server's bundles, shared ones included), in order.
///
/// `test_*` rules (what `gavel test` runs, usually `with input as …`) are
/// left out only when no other rule of *any* of the bundles can reach them:
/// reachability is the rule graph of `bundle::recursion` over the whole set
/// — a helper named `test_…` in one file, used from another file, another
/// package or another bundle, or reached by a dynamic `data.p[x]`, is read
/// like any rule. Deciding per module once missed such a helper, so a layer
/// was memoized on paths that left out what the helper read. Whatever the
/// graph cannot rule out counts as reached: unsure means read, and a read
/// the analysis cannot list (`with input as …` in a reached test) means not
/// memoized.
///
/// gavel's policy library (`bundle::library`: the embedded copy, unless one
/// of `bundles` provides it) is analysed with the set: a bundle that reads
/// `data.gavel.lib` depends on everything the library reads and calls, not
/// on foreign data — unless the library comes from a layer bundle, whose
/// own rules could then be reached too (foreign, as before).
pub fn analyze_set(bundles: &[&Bundle]) -> Result<Vec<Deps>, BundleError> {
    let all = super::library::with_library(bundles);
    let mut parsed = Vec::new();
    for (i, b) in all.iter().enumerate() {
        for m in &b.modules {
            let module = parse_module(&b.source, &m.path, &m.text, b.manifest.rego_v0())?;
            parsed.push((i, m.path.clone(), module));
        }
    }
    let graph = Graph::new(parsed.iter().map(|(_, f, m)| (f.as_str(), m)));
    let live = graph.reachable(
        graph
            .defs
            .keys()
            .filter(|(_, group)| !is_test_name(group))
            .cloned(),
    );
    let mut out = Vec::with_capacity(all.len());
    let mut reads_library = Vec::with_capacity(all.len());
    let mut reads = Vec::with_capacity(all.len());
    // A `with` in a reached rule could replace a constant or the input.
    let mut with = false;
    let mut rules = BTreeSet::new();
    for (_, _, module) in &parsed {
        let pkg = ref_prefix(&module.package.refr).0;
        for r in &module.policy {
            let group = head_group(r);
            let live_rule = group
                .as_ref()
                .is_none_or(|g| live.contains(&(pkg.clone(), g.clone())));
            with |= live_rule && compared::uses_with(r);
            rules.insert(pkg.iter().cloned().chain(group).collect::<Vec<_>>());
        }
    }
    for (i, bundle) in all.iter().enumerate() {
        let mut deps = Deps::default();
        let mut paths = Reads::default();
        let mut library = false;
        for (_, file, module) in parsed.iter().filter(|(j, _, _)| *j == i) {
            let pkg = ref_prefix(&module.package.refr).0;
            let idle = !module.policy.is_empty()
                && module.policy.iter().all(|r| {
                    head_group(r)
                        .is_some_and(|g| is_test_name(&g) && !live.contains(&(pkg.clone(), g)))
                });
            if idle {
                deps.idle_modules.insert(file.clone());
            }
            let rules = module.policy.iter().filter(|r| match head_group(r) {
                Some(g) => live.contains(&(pkg.clone(), g)),
                None => true,
            });
            analyze_module(bundle, module, rules, &mut deps, &mut paths, &mut library);
            if !deps.names_library && !idle {
                // Every rule, reached or not (of a module a deciding
                // engine keeps), on scratch state.
                let mut all = Deps::default();
                analyze_module(
                    bundle,
                    module,
                    module.policy.iter(),
                    &mut all,
                    &mut Reads::default(),
                    &mut false,
                );
                deps.names_library = all.names_library;
            }
        }
        deps.input_paths = prefix_free(
            (paths.plain.iter().cloned())
                .chain(paths.compared.iter().map(|c| c.path.clone()))
                .collect(),
        );
        out.push(deps);
        reads_library.push(library);
        reads.push(paths);
    }
    let provider = all.iter().position(|b| super::library::provides(b));
    if let Some(p) = provider {
        let lib = out[p].clone();
        let layer = !super::library::library_only(all[p]);
        for (i, d) in out.iter_mut().enumerate() {
            if i != p && reads_library[i] {
                merge(d, &lib);
                d.foreign_data |= layer;
                // The library's reads are plain reads of the bundle.
                reads[i].plain.extend(lib.input_paths.iter().cloned());
            }
        }
    }
    for ((d, b), r) in out.iter_mut().zip(&all).zip(&reads) {
        if !with {
            d.compared = compared::resolve(b, &r.compared, &r.plain, &rules);
        }
    }
    out.truncate(bundles.len());
    Ok(out)
}

/// `d` also depends on what `lib` does.
fn merge(d: &mut Deps, lib: &Deps) {
    d.impure |= lib.impure;
    d.nondeterministic |= lib.nondeterministic;
    d.whole_input |= lib.whole_input;
    d.foreign_data |= lib.foreign_data;
    let paths = std::mem::take(&mut d.input_paths);
    d.input_paths = prefix_free(paths.into_iter().chain(lib.input_paths.clone()).collect());
}

/// Whether a `data` path (without `data`) is at or under the library's root.
fn in_library(path: &[String]) -> bool {
    let root: Vec<&str> = super::library::ROOT.split('/').collect();
    path.len() >= root.len() && root.iter().zip(path).all(|(a, b)| *a == b.as_str())
}

/// Whether a `data` path (without `data`) may reach the library: at or
/// under its root, or an ancestor of it (`data.gavel`, `data`, and so the
/// static prefix of a dynamic `data.gavel[x]`).
fn near_library(path: &[String]) -> bool {
    let root: Vec<&str> = super::library::ROOT.split('/').collect();
    root.iter().zip(path).all(|(a, b)| *a == b.as_str())
}

/// Notes a read of `data` (`path` starts with `data`): of the library, or
/// of foreign data outside the bundle's roots.
fn note_data(bundle: &Bundle, path: &[String], deps: &mut Deps, library: &mut bool) {
    if within_roots(&path[1..], &bundle.manifest.roots) {
        return;
    }
    if in_library(&path[1..]) {
        *library = true;
    } else {
        deps.foreign_data = true;
    }
}

/// Notes what the given rules of one module read and call.
fn analyze_module<'a>(
    bundle: &Bundle,
    module: &Module,
    rules: impl Iterator<Item = &'a regorus::unstable::Ref<Rule>>,
    deps: &mut Deps,
    reads: &mut Reads,
    library: &mut bool,
) {
    let paths = &mut reads.plain;
    let mut note = |path: Vec<String>, deps: &mut Deps| match path.first().map(String::as_str) {
        Some("data") => {
            deps.names_library |= near_library(&path[1..]);
            note_data(bundle, &path, deps, library)
        }
        Some("input") if path.len() == 1 => deps.whole_input = true,
        Some("input") => {
            paths.insert(path[1..].to_vec());
        }
        _ => {}
    };
    for i in &module.imports {
        note(ref_prefix(&i.refr).0, deps);
    }
    // Every ref chain is noted with its static prefix, and so is every
    // shorter chain inside it; the root variable of a chain that was
    // noted is remembered by position so that only a bare `input` or
    // `data` variable counts as reading all of it.
    let mut chains: std::collections::BTreeMap<u32, Vec<String>> = Default::default();
    let mut bare: Vec<(String, u32)> = Vec::new();
    let mut found: Vec<compared::Candidate> = Vec::new();
    let mut visit = |e: &Expr| {
        if let Some(c) = compared::candidate(e) {
            found.push(c);
        }
        match e {
            Expr::RefDot { .. } | Expr::RefBrack { .. } => {
                let (path, _) = ref_prefix(e);
                // The walk also visits each shorter chain inside this
                // one; the longest static prefix per chain is the read.
                if let Expr::Var { span, .. } = ref_root(e) {
                    let longest = chains.entry(span.start).or_default();
                    if path.len() > longest.len() {
                        *longest = path;
                    }
                }
            }
            Expr::Var { span, .. } if matches!(span.text(), "input" | "data") => {
                bare.push((span.text().to_string(), span.start));
            }
            Expr::Call { fcn, .. } if is_impure(&ref_prefix(fcn).0.join(".")) => {
                deps.impure = true;
                if !EFFECT_ONLY.contains(&ref_prefix(fcn).0.join(".").as_str()) {
                    deps.nondeterministic = true;
                }
            }
            _ => {}
        }
        true
    };
    for r in rules {
        walk_rule(r, &mut visit);
    }
    for (name, at) in bare {
        if !chains.contains_key(&at) {
            note(vec![name], deps);
        }
    }
    // A chain that is a whole operand of a comparison with a constant is
    // read only through it (`deps::compared`); every other chain is plain.
    for (at, path) in chains {
        let compared = found
            .iter()
            .position(|c| c.at == at && c.path[..] == path[1..]);
        match compared {
            Some(k) => reads.compared.push(found.swap_remove(k)),
            None => note(path, deps),
        }
    }
}

/// The input reads of one bundle: plain paths, and the comparisons whose
/// chains are read nowhere else.
#[derive(Default)]
struct Reads {
    plain: BTreeSet<Vec<String>>,
    compared: Vec<compared::Candidate>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::{BundleLimits, load_bundle};

    fn deps(rego: &str) -> Deps {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("p")).unwrap();
        std::fs::write(d.path().join(".manifest"), r#"{"roots": ["p"]}"#).unwrap();
        std::fs::write(d.path().join("p/p.rego"), rego).unwrap();
        analyze(&load_bundle(d.path(), &BundleLimits::default()).unwrap()).unwrap()
    }

    fn paths(d: &Deps) -> Vec<String> {
        d.input_paths.iter().map(|p| p.join(".")).collect()
    }

    #[test]
    fn static_input_paths_are_listed_prefix_free() {
        let d = deps(
            "package p\nimport input.user as u\nx if input.action.args.path\ny if input.action.args[input.action.tool]\nz if u.id\nw if input[\"environment\"].region\n",
        );
        assert_eq!(
            paths(&d),
            vec!["action.args", "action.tool", "environment.region", "user"]
        );
        assert!(!d.whole_input && !d.impure && !d.foreign_data);
    }

    #[test]
    fn what_cannot_be_listed_reads_the_whole_input() {
        for rego in [
            "package p\nx if walk(input, [p, v])\n",
            "package p\nx := object.get(input, \"a\", 1)\n",
            "package p\nx if input[k] == 1\n",
            "package p\nx if { y with input as {} }\ny := 1\n",
            "package p\nimport input\nx if input.a\n",
        ] {
            assert!(deps(rego).whole_input, "{rego}");
        }
    }

    #[test]
    fn foreign_data_and_impure_builtins() {
        assert!(deps("package p\nx if data.q.y\n").foreign_data);
        assert!(!deps("package p\nx if data[\"p\"][k]\n").foreign_data);
        assert!(deps("package p\nx if data[k]\n").foreign_data);
        assert!(deps("package p\nimport data.other\nx if other.y\n").foreign_data);
        assert!(!deps("package p\nx if data.p.y\n").foreign_data);
        assert!(deps("package p\nx if time.now_ns() > 0\n").impure);
        assert!(deps("package p\nx if time.now_ns() > 0\n").nondeterministic);
        // Families by prefix, and the clock-reading token check.
        assert!(deps("package p\nx if rand.intn(\"k\", 10) > 0\n").nondeterministic);
        assert!(deps("package p\nx if uuid.rfc4122(\"k\") != \"\"\n").nondeterministic);
        assert!(
            deps("package p\nx if io.jwt.decode_verify(input.t, {\"secret\": \"s\"})[0]\n")
                .nondeterministic
        );
        assert!(!deps("package p\nx if time.parse_rfc3339_ns(input.t) > 0\n").nondeterministic);
        let printing = deps("package p\nx if print(\"hi\")\n");
        assert!(printing.impure && !printing.nondeterministic);
        assert!(!deps("package p\nx if time.weekday(0) == \"Thursday\"\n").impure);
    }

    #[test]
    fn test_rules_are_left_out_unless_referenced() {
        let d = deps("package p\nx if input.a\ntest_x if x with input as {\"a\": 1}\n");
        assert!(!d.whole_input);
        assert_eq!(paths(&d), vec!["a"]);
        let d = deps("package p\nx if test_y\ntest_y if input.b\n");
        assert_eq!(paths(&d), vec!["b"]);
    }

    fn deps_files(files: &[(&str, &str)]) -> Deps {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("p")).unwrap();
        std::fs::write(d.path().join(".manifest"), r#"{"roots": ["p"]}"#).unwrap();
        for (name, rego) in files {
            std::fs::write(d.path().join("p").join(name), rego).unwrap();
        }
        analyze(&load_bundle(d.path(), &BundleLimits::default()).unwrap()).unwrap()
    }

    /// A bundle's own engine gets the library only when some rule of the
    /// bundle — reached or not — or an import could name it.
    #[test]
    fn naming_the_library_is_seen_in_every_rule_and_spelling() {
        let names = |rego: &str| deps(&format!("package p\n{rego}\n")).names_library;
        assert!(!names("decision := {\"allow\": input.user.id == \"x\"}"));
        assert!(!names("decision := {\"allow\": data.p.limit > 1}"));
        assert!(!names("decision := {\"allow\": data.gavel.other.x}"));
        assert!(names(
            "decision := {\"allow\": data.gavel.lib.paths.normalize(input.a) == \"/x\"}"
        ));
        assert!(names(
            "import data.gavel.lib.paths\ndecision := {\"allow\": true}"
        ));
        assert!(names(
            "import data.gavel.lib\ndecision := {\"allow\": true}"
        ));
        assert!(names("decision := {\"allow\": count(data.gavel) > 0}"));
        assert!(names("decision := {\"allow\": data.gavel[input.k].x}"));
        assert!(names("decision := {\"allow\": data[input.k]}"));
        assert!(names("decision := {\"allow\": count(data) > 0}"));
        // In a test rule nothing reaches: regorus prepares it all the same.
        assert!(names(
            "decision := {\"allow\": true}\ntest_norm if data.gavel.lib.paths.normalize(\"a\") == \"a\""
        ));
    }

    /// Test helpers are followed across files, imports and dynamic refs of
    /// the bundle: what they read is read.
    #[test]
    fn test_named_helpers_are_followed_across_the_bundle() {
        let d = deps_files(&[
            ("a.rego", "package p\ndecision := {\"allow\": test_ok}\n"),
            ("b.rego", "package p\ntest_ok if input.user.id == \"x\"\n"),
        ]);
        assert_eq!(paths(&d), vec!["user.id"]);
        let d = deps_files(&[
            (
                "a.rego",
                "package p\nimport data.p.q.test_ok as ok\ndecision := {\"allow\": ok}\n",
            ),
            ("b.rego", "package p.q\ntest_ok if input.user.id == \"x\"\n"),
        ]);
        assert_eq!(paths(&d), vec!["user.id"]);
        // Reached through a dynamic reference: unsure, so it counts — and
        // its `with input as` cannot be listed.
        let d = deps_files(&[
            (
                "a.rego",
                "package p\ndecision := {\"allow\": data.p[k]} if k := input.k\n",
            ),
            ("b.rego", "package p\ntest_x if true with input as {}\n"),
        ]);
        assert!(d.whole_input);
        // Unreached tests stay out.
        let d = deps_files(&[
            ("a.rego", "package p\ndecision := {\"allow\": input.a}\n"),
            (
                "a_test.rego",
                "package p\ntest_x if decision with input as {\"a\": 1}\n",
            ),
        ]);
        assert!(!d.whole_input);
        assert_eq!(
            d.idle_modules,
            BTreeSet::from(["p/a_test.rego".to_string()])
        );
        // A file of tests one of which is reached is not idle.
        let d = deps_files(&[
            ("a.rego", "package p\ndecision := {\"allow\": test_ok}\n"),
            (
                "a_test.rego",
                "package p\ntest_ok if input.a\ntest_x if decision\n",
            ),
        ]);
        assert!(d.idle_modules.is_empty());
        // Reached through an imported package, or with `not`: not idle (a
        // dropped helper under `not` would allow).
        for (a, b) in [
            (
                "package p.q\nimport data.p\ndecision := {\"allow\": true} if not p.test_blocked\n",
                "package p\ntest_blocked if input.x\n",
            ),
            (
                "package p\ndecision := {\"allow\": true} if not test_blocked\n",
                "package p\ntest_blocked if input.x\n",
            ),
        ] {
            let d = deps_files(&[("a.rego", a), ("a_test.rego", b)]);
            assert!(d.idle_modules.is_empty(), "{a}");
        }
        // The package read whole (its value holds the test rules): reached.
        for whole in ["count(data.p) > 0", "count(data) > 0", "data.p[input.k]"] {
            let d = deps_files(&[
                (
                    "a.rego",
                    &format!("package p\ndecision := {{\"allow\": {whole}}}\n"),
                ),
                ("a_test.rego", "package p\ntest_x if input.a\n"),
            ]);
            assert!(d.idle_modules.is_empty(), "{whole}");
        }
    }

    /// A test helper in another bundle decided alongside is read too.
    #[test]
    fn test_named_helpers_are_followed_across_bundles() {
        let dir = |root: &str, rego: &str| {
            let d = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(d.path().join(root)).unwrap();
            std::fs::write(
                d.path().join(".manifest"),
                format!(r#"{{"roots": ["{root}"]}}"#),
            )
            .unwrap();
            std::fs::write(d.path().join(root).join("x.rego"), rego).unwrap();
            let b = load_bundle(d.path(), &BundleLimits::default()).unwrap();
            (d, b)
        };
        let (_a, a) = dir("p", "package p\ntest_helper if input.user.id == \"x\"\n");
        let (_b, b) = dir(
            "q",
            "package q\ndecision := {\"allow\": data.p.test_helper}\n",
        );
        let d = analyze_set(&[&a, &b]).unwrap();
        assert_eq!(paths(&d[0]), vec!["user.id"]);
        assert!(d[1].foreign_data);
        assert!(
            paths(&analyze(&a).unwrap()).is_empty(),
            "alone, nothing reaches it"
        );
    }

    #[test]
    fn the_example_bundles() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bundles");
        let d = analyze(&load_bundle(&root.join("identity"), &BundleLimits::default()).unwrap())
            .unwrap();
        assert_eq!(paths(&d), vec!["user.groups", "user.id"]);
        assert!(!d.whole_input && !d.impure && !d.foreign_data);
    }
}
