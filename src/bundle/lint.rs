//! Load-time checks, on regorus's own parse tree (`regorus::unstable`).
//!
//! regorus reports a call to a function it does not have only when that call
//! is evaluated — possibly months later, on the one request that reaches it.
//! gavel refuses such a bundle at load instead, with
//! `file:line`. The available builtins are taken from regorus itself
//! (`unstable::BUILTINS`, the table its interpreter looks calls up in), so the
//! lint cannot drift from the build. A call is fine when it names a builtin,
//! `print`, a rule of the same package (user functions shadow builtins, as in
//! regorus), an import alias, or an explicit `data.` path — except that a
//! call into gavel's policy library (`data.gavel.lib`, directly or through an
//! import) must name one of its functions (`bundle::library`).
//!
//! References to `input.<path>` that the input schema (schemas/input.v1.json)
//! does not have are warnings — errors under `strict_input` — because they are
//! always undefined and a rule using them silently never fires.
//!
//! What this lint cannot know — the tools and argument names a server really
//! offers — is `schema` (`gavel lint`), run once an upstream has listed them.
//!
//! A rule whose name is also a key of the bundle's data in the same package is
//! refused: regorus then silently evaluates one of them. Recursion is refused
//! (`bundle::recursion`): regorus would overflow its stack.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;

use regorus::unstable::{Expr, Module, Parser, Rule, RuleHead, Source};
use serde_json::Value;

use super::{Bundle, BundleError, file_err};

pub mod decision_shape;
mod walk;
pub(crate) use walk::{
    any_query, comprehension, walk, walk_module, walk_query, walk_rule, walk_rule_values,
};

#[derive(Debug, Clone, PartialEq)]
pub struct LintFinding {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for LintFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

#[derive(Debug, Default)]
pub struct LintReport {
    pub errors: Vec<LintFinding>,
    pub warnings: Vec<LintFinding>,
}

/// Parses one module as regorus will (Rego v1 unless the manifest says 0).
/// Syntax errors name the bundle and carry regorus's `file:line:col` text.
pub fn parse_module(
    bundle: &str,
    path: &str,
    text: &str,
    rego_v0: bool,
) -> Result<Module, BundleError> {
    let err = |e| parse_err(bundle, path, e);
    let source = Source::from_contents(path.to_string(), text.to_string()).map_err(err)?;
    let mut parser = Parser::new(&source).map_err(err)?;
    if !rego_v0 {
        parser.enable_rego_v1().map_err(err)?;
    }
    parser.parse().map_err(err)
}

fn parse_err(bundle: &str, path: &str, e: impl fmt::Display) -> BundleError {
    file_err(bundle, path, format!("does not parse: {e}"))
}

/// The expression a reference chain starts from (`a` of `a.b[x].c`): a
/// variable for a chain on `input`, `data` or a local, else what the chain
/// indexes (a call, a literal). One syntax node per chain, so its offset
/// tells chains apart.
pub(crate) fn ref_root(e: &Expr) -> &Expr {
    let mut root = e;
    while let Expr::RefDot { refr, .. } | Expr::RefBrack { refr, .. } = root {
        root = refr;
    }
    root
}

/// The static prefix of a reference (`a.b["c"][x].d` → `[a, b, c]`) and
/// whether it was static all the way.
pub(crate) fn ref_prefix(e: &Expr) -> (Vec<String>, bool) {
    match e {
        Expr::Var { span, .. } => (vec![span.text().to_string()], true),
        Expr::RefDot { refr, field, .. } => {
            let (mut p, whole) = ref_prefix(refr);
            if whole {
                p.push(field.0.text().to_string());
            }
            (p, whole)
        }
        Expr::RefBrack { refr, index, .. } => {
            let (mut p, whole) = ref_prefix(refr);
            let key = match index.as_ref() {
                Expr::String { value, .. } | Expr::RawString { value, .. } => {
                    value.as_string().ok().map(|s| s.to_string())
                }
                _ => None,
            };
            match (whole, key) {
                (true, Some(k)) => {
                    p.push(k);
                    (p, true)
                }
                _ => (p, false),
            }
        }
        _ => (vec![], false),
    }
}

/// `package a.b` → `a/b` (the data path under `data`).
pub fn package_path(m: &Module) -> String {
    ref_prefix(&m.package.refr).0.join("/")
}

/// What the engine and the test runner need to know about one module.
#[derive(Debug, Clone)]
pub struct ModuleIndex {
    pub path: String,
    /// `a/b` for `package a.b`.
    pub package: String,
    /// Static head paths of its rules, dotted (`decision`, `crypto.sha256`).
    pub rules: BTreeSet<String>,
    /// The subset that are functions (heads with arguments).
    pub functions: BTreeSet<String>,
}

fn rule_head(r: &Rule) -> (String, bool) {
    let (refr, func) = match r {
        Rule::Spec { head, .. } => match head {
            RuleHead::Compr { refr, .. } | RuleHead::Set { refr, .. } => (refr, false),
            RuleHead::Func { refr, .. } => (refr, true),
        },
        Rule::Default { refr, args, .. } => (refr, !args.is_empty()),
    };
    (ref_prefix(refr).0.join("."), func)
}

fn index_of(path: &str, m: &Module) -> ModuleIndex {
    let mut rules = BTreeSet::new();
    let mut functions = BTreeSet::new();
    for r in &m.policy {
        let (name, func) = rule_head(r);
        if func {
            functions.insert(name.clone());
        }
        rules.insert(name);
    }
    ModuleIndex {
        path: path.to_string(),
        package: package_path(m),
        rules,
        functions,
    }
}

/// Parses every module of the bundle and indexes its rules.
pub fn index(bundle: &Bundle) -> Result<Vec<ModuleIndex>, BundleError> {
    bundle
        .modules
        .iter()
        .map(|m| {
            parse_module(&bundle.source, &m.path, &m.text, bundle.manifest.rego_v0())
                .map(|p| index_of(&m.path, &p))
        })
        .collect()
}

/// The builtins this build evaluates: regorus's registry plus `print`, which
/// its interpreter handles itself.
fn builtins() -> HashSet<&'static str> {
    let mut s: HashSet<&'static str> = regorus::unstable::BUILTINS.keys().copied().collect();
    s.insert("print");
    s
}

/// Whether `path` (after `input.`) exists in the input schema. Below a node
/// whose `additionalProperties` is `true` or a schema (action.args, maps such
/// as context.tool_calls) any key exists.
fn schema_has(schema: &Value, path: &[String]) -> bool {
    let mut node = schema;
    for seg in path {
        if let Some(p) = node.get("properties").and_then(|p| p.get(seg)) {
            node = p;
            continue;
        }
        return match node.get("additionalProperties") {
            Some(Value::Bool(false)) => false,
            Some(Value::Bool(true)) => true,
            Some(sub) => {
                node = sub;
                continue;
            }
            // An untyped node (`annotations`) is open; a typed leaf is not.
            None => ["properties", "type", "enum"]
                .iter()
                .all(|k| node.get(*k).is_none()),
        };
    }
    true
}

/// The input a bundle's rules may read: the decision input
/// (schemas/input.v1.json) and, for result rules and their per-item rules,
/// `output` and `item` (schemas/result.v1.json).
fn input_schema() -> Value {
    let mut schema: Value = serde_json::from_str(include_str!("../../schemas/input.v1.json"))
        .expect("the bundled input schema is valid JSON");
    let result: Value = serde_json::from_str(include_str!("../../schemas/result.v1.json"))
        .expect("the bundled result schema is valid JSON");
    if let Some(p) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        p.insert("output".into(), result["$defs"]["output"].clone());
        p.insert("item".into(), result["$defs"]["item"].clone());
    }
    schema
}

/// Lints a loaded bundle. `Err` only when a module does not parse.
pub fn lint(bundle: &Bundle, strict_input: bool) -> Result<LintReport, BundleError> {
    let schema = input_schema();
    let builtins = builtins();
    let own_library;
    let library = if super::library::provides(bundle) {
        own_library = super::library::functions_of(bundle)?;
        &own_library
    } else {
        super::library::functions()
    };
    let mut report = LintReport::default();
    let mut parsed = Vec::with_capacity(bundle.modules.len());
    for m in &bundle.modules {
        let module = parse_module(&bundle.source, &m.path, &m.text, bundle.manifest.rego_v0())?;
        let idx = index_of(&m.path, &module);
        parsed.push((module, idx));
    }
    // Rules per package, over every module of the bundle.
    let mut by_package: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for (_, idx) in &parsed {
        by_package
            .entry(idx.package.as_str())
            .or_default()
            .extend(idx.rules.iter().map(String::as_str));
    }
    for (module, idx) in &parsed {
        data_collisions(bundle, module, idx, &mut report);
        let check = ModuleCheck {
            file: &idx.path,
            dotted_pkg: idx.package.replace('/', "."),
            pkg_rules: &by_package[idx.package.as_str()],
            aliases: import_aliases(module),
            // Decision-log rules (`<root>/log`) see the whole event as
            // input; the policy input is at `input.input`.
            log_rules: idx.package.ends_with("/log") || idx.package == "log",
            builtins: &builtins,
            library,
            schema: &schema,
            strict_input,
        };
        walk_module(module, &mut |e| check.visit(e, &mut report));
    }
    // A `# METADATA` block that does not parse loses the rule's documentation
    // silently (regorus skips comments; only `gavel explain` reads them):
    // each module's first bad block is a warning, never a refusal — a
    // comment must not take a server's policy down.
    for m in &bundle.modules {
        if let Err(e) = super::metadata::parse_module(&m.path, &m.text) {
            report.warnings.push(LintFinding {
                file: e.file,
                line: e.line,
                message: format!(
                    "METADATA block: {} (gavel explain cannot read this bundle's documentation)",
                    e.message
                ),
            });
        }
    }
    // Recursion never ends or overflows the stack: refused, as OPA does.
    report.errors.extend(super::recursion::check(&[bundle])?);
    let key = |f: &LintFinding| (f.file.clone(), f.line, f.message.clone());
    report.errors.sort_by_key(key);
    report.errors.dedup();
    report.warnings.sort_by_key(key);
    report.warnings.dedup();
    Ok(report)
}

/// Rules of `module` whose name is also a key of the bundle's data at the
/// package's path.
fn data_collisions(bundle: &Bundle, module: &Module, idx: &ModuleIndex, report: &mut LintReport) {
    let node = idx
        .package
        .split('/')
        .try_fold(&bundle.data, |v, k| v.get(k));
    let Some(Value::Object(keys)) = node else {
        return;
    };
    let dotted_pkg = idx.package.replace('/', ".");
    let mut reported = HashSet::new();
    for r in &module.policy {
        let (name, _) = rule_head(r);
        let head = name.split('.').next().unwrap_or("").to_string();
        if keys.contains_key(&head) && reported.insert(head.clone()) {
            report.errors.push(LintFinding {
                file: idx.path.clone(),
                line: r.span().line as usize,
                message: format!("rule {head} collides with data.{dotted_pkg}.{head} from the bundle's data; rename one of them"),
            });
        }
    }
}

/// The names `data`/`input` imports bind (`import data.x.y as z` → `z`,
/// else `y`), with the path each stands for; `future.keywords` and
/// `rego.v1` bind none.
fn import_aliases(module: &Module) -> HashMap<String, Vec<String>> {
    module
        .imports
        .iter()
        .filter_map(|i| {
            let (p, _) = ref_prefix(&i.refr);
            if !matches!(p.first().map(String::as_str), Some("data" | "input")) {
                return None; // future.keywords, rego.v1
            }
            let alias = i
                .r#as
                .as_ref()
                .map(|s| s.text().to_string())
                .or_else(|| p.last().cloned())?;
            Some((alias, p))
        })
        .collect()
}

/// What one module's expressions are checked against: calls must reach a
/// builtin or a function of the bundle, `input` paths must be in the schema.
struct ModuleCheck<'a> {
    file: &'a String,
    dotted_pkg: String,
    pkg_rules: &'a BTreeSet<&'a str>,
    aliases: HashMap<String, Vec<String>>,
    log_rules: bool,
    builtins: &'a HashSet<&'static str>,
    /// The library functions a call into `data.gavel.lib` may name.
    library: &'a BTreeSet<String>,
    schema: &'a Value,
    strict_input: bool,
}

impl ModuleCheck<'_> {
    /// Checks one expression; whether to visit its children.
    fn visit(&self, e: &Expr, report: &mut LintReport) -> bool {
        match e {
            Expr::Call { span, fcn, .. } => {
                self.call(span.line, fcn, report);
                true
            }
            Expr::RefDot { span, .. } | Expr::RefBrack { span, .. } => {
                self.input_ref(e, span.line, report)
            }
            _ => true,
        }
    }

    fn call(&self, line: u32, fcn: &Expr, report: &mut LintReport) {
        let (path, _) = ref_prefix(fcn);
        let name = path.join(".");
        let first = path.first().map(String::as_str).unwrap_or("");
        let known = self.builtins.contains(name.as_str())
            || self.pkg_rules.contains(name.as_str())
            || first == "data"
            || self.aliases.contains_key(first);
        if let Some(f) = self.library_call(&path) {
            if !self.library.contains(&f) {
                report.errors.push(LintFinding {
                    file: self.file.clone(),
                    line: line as usize,
                    message: format!(
                        "call to {name}(): data.{f} is not a function of gavel's policy library (docs/policy.md, The policy library); check the name"
                    ),
                });
            }
        } else if !known {
            let dotted_pkg = &self.dotted_pkg;
            report.errors.push(LintFinding {
                file: self.file.clone(),
                line: line as usize,
                message: format!(
                    "call to {name}(): not a builtin of this gavel build (regorus 0.14.1 lacks e.g. http.send, io.jwt.*, crypto.*, net.cidr_merge, regex.globs_match) and not a function of package data.{dotted_pkg}; compute the value outside the policy (gavel passes verified claims in input) or remove the call"
                ),
            });
        }
    }

    /// The full dotted name (`gavel.lib.paths.within`) of a call into the
    /// library, directly (`data.gavel.lib.…`) or through an import alias.
    fn library_call(&self, path: &[String]) -> Option<String> {
        let first = path.first()?;
        let full: Vec<String> = match self.aliases.get(first) {
            Some(target) => target.iter().chain(&path[1..]).cloned().collect(),
            None => path.to_vec(),
        };
        let lib: Vec<&str> = std::iter::once("data")
            .chain(super::library::ROOT.split('/'))
            .collect();
        (full.len() > lib.len() && full.iter().zip(&lib).all(|(a, b)| a == b))
            .then(|| full[1..].join("."))
    }

    /// An `input…` reference must be in the input schema (an error with
    /// `strict_input`, else a warning); whether to visit its children.
    fn input_ref(&self, e: &Expr, line: u32, report: &mut LintReport) -> bool {
        let (path, _) = ref_prefix(e);
        if path.first().map(String::as_str) != Some("input") {
            return true;
        }
        let rest: &[String] = if self.log_rules {
            if path.get(1).map(String::as_str) != Some("input") {
                return descend_indices(e);
            }
            &path[2..]
        } else {
            &path[1..]
        };
        if !schema_has(self.schema, rest) {
            let finding = LintFinding {
                file: self.file.clone(),
                line: line as usize,
                message: format!(
                    "{} is not in the input schema (schemas/input.v1.json, `gavel schema input`); it is always undefined",
                    path.join(".")
                ),
            };
            if self.strict_input {
                report.errors.push(finding);
            } else {
                report.warnings.push(finding);
            }
        }
        descend_indices(e)
    }
}

/// After an `input…` chain has been checked as a whole, its children only
/// need visiting when a bracket index is dynamic (`input.a[input.b]`); the
/// shorter prefixes that visit re-checks give duplicate findings, removed at
/// the end.
pub(crate) fn descend_indices(e: &Expr) -> bool {
    let mut cur = e;
    loop {
        match cur {
            Expr::RefDot { refr, .. } => cur = refr,
            Expr::RefBrack { refr, index, .. } => {
                if !matches!(
                    index.as_ref(),
                    Expr::String { .. } | Expr::RawString { .. } | Expr::Number { .. }
                ) {
                    return true;
                }
                cur = refr;
            }
            _ => return false,
        }
    }
}

#[path = "lint/schema.rs"]
pub mod schema;

#[cfg(test)]
#[path = "lint/tests.rs"]
mod tests;
