//! Which rules are tests, and what `opa test` makes of each: discovery,
//! duplicate names, document kind, and the source rewrites regorus needs to
//! run every definition on its own.
//!
//! OPA's semantics, from `v1/tester/runner.go`:
//! - `ruleName`: a rule is a test when a term of its head's ground prefix
//!   starts with `test_` or `todo_test_` (the first such term names it:
//!   `a.b.test_x` is the test `a.b.test_x` of its package); `todo_test_`
//!   tests are reported SKIPPED and not evaluated (`runTest`).
//! - `rewriteDuplicateTestNames`: every further *rule* (definition) with the
//!   same package and test ref is renamed `test_x#01`, `#02`, … so each
//!   definition runs and is reported on its own. regorus, like OPA without
//!   that stage, merges same-named definitions into one rule — a failing
//!   second definition would hide behind a passing first. We rename in the
//!   source text instead (same line, so locations and coverage stay right).
//! - `Head.DocKind` (`v1/ast/policy.go`) with `parseRules`
//!   (`v1/ast/parser.go`): a head with a key and a value (`p[x] if`, `p[x] :=
//!   v`, any head ref with a variable after the name) is a partial object,
//!   whose entries are the test's cases (`subResults`); a ground key
//!   (`test_x["a"] if`, `test_x.a if`) is a complete object, not `true`, so
//!   a FAIL; `contains` (or Rego v0 `p[x] { }`) is a partial set, which
//!   never passes; a function is an error (OPA's query `data.p.test_f`
//!   fails to type-check); each chained body of a Rego v0 rule is a rule.
//!
//! Checked against OPA v1.20 (PyPI `opa-golib-python-bindings`, which has no
//! test runner): for OPA's `TestRun` rules and the kinds above, the values
//! OPA computes give, under these rules, the outcomes gavel reports.
//! - `injectTestCaseFunc`: a case counts as *reached* once the body has
//!   bound every variable of the key, at the first statement binding the
//!   last of them; a reached case whose body then fails is a FAIL. We find
//!   the same statement on regorus's tree and evaluate a probe rule made of
//!   the body up to it.

use std::collections::{BTreeSet, HashMap};

use regorus::unstable::{Expr, Literal, Module, Query, Rule, RuleHead, Span};

/// What kind of document a test rule defines (OPA's `DocKind`, plus the
/// function case OPA rejects at query compile time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocKind {
    Complete,
    PartialSet,
    PartialObject,
    Function,
}

/// One test definition found in a module.
#[derive(Debug, Clone)]
pub struct TestRule {
    /// `data.a.b` for `package a.b`.
    pub package: String,
    /// The test's ref as OPA prints it: `test_x`, `test_x#01`,
    /// `a.b["test_x#01"]`.
    pub name: String,
    /// The path regorus evaluates (the renamed rule for duplicates).
    pub query: String,
    pub file: String,
    pub row: u32,
    pub col: u32,
    pub kind: DocKind,
    pub skip: bool,
    /// The probe rule giving the reached cases of a partial-object test
    /// (its query path), when the test has a key.
    pub probe: Option<String>,
}

impl TestRule {
    pub fn full_name(&self) -> String {
        format!("{}.{}", self.package, self.name)
    }
}

/// One module after discovery: its text with duplicate tests renamed, and
/// the probe module (if any of its tests has cases).
pub struct Rewritten {
    pub path: String,
    pub text: String,
    pub probe_module: Option<(String, String)>,
}

/// One component of a rule head's ref (`a`, `.b`, `["c"]`, `[x]`).
struct Comp<'a> {
    /// Its name when it is a var, a field or a string index.
    name: Option<String>,
    /// A literal (ground) component; a var-free composite counts too.
    ground: bool,
    /// Where its text is, to rename it, and whether it is written as a string.
    span: Span,
    quoted: bool,
    expr: Option<&'a Expr>,
}

fn comps(e: &Expr) -> Vec<Comp<'_>> {
    match e {
        Expr::Var { span, .. } => vec![Comp {
            name: Some(span.text().to_string()),
            ground: true,
            span: span.clone(),
            quoted: false,
            expr: None,
        }],
        Expr::RefDot { refr, field, .. } => {
            let mut v = comps(refr);
            v.push(Comp {
                name: Some(field.0.text().to_string()),
                ground: true,
                span: field.0.clone(),
                quoted: false,
                expr: None,
            });
            v
        }
        Expr::RefBrack { refr, index, .. } => {
            let mut v = comps(refr);
            let (name, quoted) = match index.as_ref() {
                Expr::String { value, .. } | Expr::RawString { value, .. } => {
                    (value.as_string().ok().map(|s| s.to_string()), true)
                }
                _ => (None, false),
            };
            v.push(Comp {
                name,
                ground: is_constant(index),
                span: index.span().clone(),
                quoted,
                expr: Some(index),
            });
            v
        }
        _ => vec![],
    }
}

/// OPA's `IsConstant`: scalars and composites of them.
fn is_constant(e: &Expr) -> bool {
    match e {
        Expr::String { .. }
        | Expr::RawString { .. }
        | Expr::Number { .. }
        | Expr::Bool { .. }
        | Expr::Null { .. } => true,
        Expr::Array { items, .. } | Expr::Set { items, .. } => items.iter().all(|i| is_constant(i)),
        Expr::Object { fields, .. } => fields
            .iter()
            .all(|(_, k, v)| is_constant(k) && is_constant(v)),
        _ => false,
    }
}

/// A valid Rego identifier that is not a keyword, as OPA's `Ref.String`
/// prints it bare (`.name`) rather than quoted (`["name"]`).
fn is_ident(s: &str) -> bool {
    const KEYWORDS: &[&str] = &[
        "as", "contains", "data", "default", "else", "every", "false", "if", "import", "in",
        "input", "not", "null", "package", "some", "true", "with",
    ];
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !KEYWORDS.contains(&s)
}

/// `a`, `a.b`, `a["b#01"]`: a ref's components as OPA prints them.
fn ref_string(names: &[String]) -> String {
    let mut s = String::new();
    for (i, n) in names.iter().enumerate() {
        if i == 0 {
            s.push_str(n);
        } else if is_ident(n) {
            s.push('.');
            s.push_str(n);
        } else {
            s.push_str(&format!("[{}]", serde_json::Value::String(n.clone())));
        }
    }
    s
}

struct Head<'a> {
    refr: &'a Expr,
    kind: DocKind,
    /// The query of the first body (for the probe).
    body: Option<&'a Query>,
}

fn head(r: &Rule) -> Head<'_> {
    match r {
        Rule::Spec { head, bodies, .. } => {
            let body = bodies.first().map(|b| b.query.as_ref());
            match head {
                RuleHead::Func { refr, .. } => Head {
                    refr,
                    kind: DocKind::Function,
                    body,
                },
                RuleHead::Set { refr, key, .. } => Head {
                    refr,
                    // `p.q` with no key is regorus's shape for a ref head
                    // without a value: a complete `true`.
                    kind: if key.is_some() {
                        DocKind::PartialSet
                    } else {
                        DocKind::Complete
                    },
                    body,
                },
                RuleHead::Compr { refr, .. } => Head {
                    refr,
                    kind: DocKind::Complete, // refined by the ref's shape below
                    body,
                },
            }
        }
        Rule::Default { refr, args, .. } => Head {
            refr,
            kind: if args.is_empty() {
                DocKind::Complete
            } else {
                DocKind::Function
            },
            body: None,
        },
    }
}

/// Finds the tests of every module, renames duplicate definitions in the
/// source, and writes the probe rules of partial-object tests. `modules` are
/// (path, text, parsed), in the order their tests are reported.
pub fn discover(
    modules: &[(String, String, Module)],
    rego_v0: bool,
) -> (Vec<TestRule>, Vec<Rewritten>) {
    let mut count: HashMap<String, usize> = HashMap::new();
    let mut tests = Vec::new();
    let mut out = Vec::new();
    for (path, text, module) in modules {
        let package = format!(
            "data.{}",
            super::super::lint::package_path(module).replace('/', ".")
        );
        let mut m = ModuleRewrite::default();
        for rule in &module.policy {
            tests.extend(rule_tests(
                rule, path, &package, &mut count, &mut m, rego_v0,
            ));
        }
        let probe_module = (!m.probes.is_empty()).then(|| {
            let mut text = format!("package {}\n", &package["data.".len()..]);
            for imp in &module.imports {
                let t = imp.span.text();
                if !t.trim_start().starts_with("import") {
                    text.push_str("import ");
                }
                text.push_str(t);
                text.push('\n');
            }
            text.extend(m.probes.iter().map(String::as_str));
            (format!("{path}.__gavel_cases.rego"), text)
        });
        out.push(Rewritten {
            path: path.clone(),
            text: apply(text, m.edits),
            probe_module,
        });
    }
    (tests, out)
}

/// What discovery changes in one module: renames (byte range → new text)
/// and the probe rules of its partial-object tests.
#[derive(Default)]
struct ModuleRewrite {
    edits: Vec<(usize, usize, String)>,
    probes: Vec<String>,
}

/// The tests one rule defines, if it is one: renamed when its name was
/// defined before (`rewriteDuplicateTestNames`), with its document kind
/// and, for a partial object, its probe. OPA's parser makes each chained
/// body of a Rego v0 rule (`test_x { a } { b }`) a rule of its own
/// (`parseRules`); regorus keeps them as bodies of one, so each further
/// body is split off as a rule of its own, on the same line.
fn rule_tests(
    rule: &Rule,
    path: &str,
    package: &str,
    count: &mut HashMap<String, usize>,
    m: &mut ModuleRewrite,
    rego_v0: bool,
) -> Vec<TestRule> {
    let h = head(rule);
    let cs = comps(h.refr);
    let Some(i) = test_index(&cs) else {
        return vec![];
    };
    let def = Def {
        h: &h,
        cs: &cs,
        i,
        path,
        package,
        rego_v0,
    };
    let mut out = vec![def.test(rule, None, count, m)];
    if let Rule::Spec {
        head: rh, bodies, ..
    } = rule
    {
        for b in bodies.iter().skip(1).filter(|b| !b.is_else) {
            let hs = match rh {
                RuleHead::Compr { span, .. }
                | RuleHead::Set { span, .. }
                | RuleHead::Func { span, .. } => span,
            };
            out.push(def.test(rule, Some((hs, b)), count, m));
        }
    }
    out
}

/// One rule head's test facts, shared by its definitions.
struct Def<'a> {
    h: &'a Head<'a>,
    cs: &'a [Comp<'a>],
    i: usize,
    path: &'a str,
    package: &'a str,
    rego_v0: bool,
}

impl Def<'_> {
    /// The test of the rule's first body (`split` None) or of a chained
    /// body split off (its head's span and the body).
    fn test(
        &self,
        rule: &Rule,
        split: Option<(&Span, &regorus::unstable::RuleBody)>,
        count: &mut HashMap<String, usize>,
        m: &mut ModuleRewrite,
    ) -> TestRule {
        let (cs, i, package) = (self.cs, self.i, self.package);
        let base = cs[i].name.clone().unwrap_or_default();
        let mut names: Vec<String> = cs[..=i]
            .iter()
            .map(|c| c.name.clone().unwrap_or_default())
            .collect();
        let skip = base.starts_with("todo_test_");
        let mut query_names = names.clone();
        let mut renamed = None;
        if !skip {
            let n = count
                .entry(format!("{package}.{}", ref_string(&names)))
                .or_insert(0);
            if *n > 0 {
                // A var or field must stay an identifier; a string can be anything.
                let internal = format!("__gavel_dup{:02}_{base}", *n);
                renamed = Some(if cs[i].quoted {
                    serde_json::Value::String(internal.clone()).to_string()
                } else {
                    internal.clone()
                });
                names[i] = format!("{base}#{:02}", *n);
                query_names[i] = internal;
            }
            *n += 1;
        }
        let name_span = &cs[i].span;
        match (split, &renamed) {
            (None, Some(r)) => {
                m.edits
                    .push((name_span.start as usize, name_span.end as usize, r.clone()));
            }
            (Some((head_span, body)), _) => {
                // `<head, renamed> ` before the chained body's `{`.
                let mut head = head_span.text().to_string();
                if let Some(r) = &renamed {
                    let from = (name_span.start - head_span.start) as usize;
                    let to = (name_span.end - head_span.start) as usize;
                    if to <= head.len() {
                        head.replace_range(from..to, r);
                    }
                }
                let at = body.span.start as usize;
                m.edits.push((at, at, format!("{head} ")));
            }
            (None, None) => {}
        }
        let tail = &cs[i + 1..];
        let kind = match self.h.kind {
            // `p[x] if`, and any head with a variable after the test's name.
            DocKind::Complete if tail.iter().any(|c| !c.ground) => DocKind::PartialObject,
            k => k,
        };
        let body = split.map(|(_, b)| b.query.as_ref()).or(self.h.body);
        let probe = (kind == DocKind::PartialObject && !skip).then(|| {
            let probe_name = format!("__gavel_cases{}", m.probes.len());
            m.probes
                .push(probe_rule(&probe_name, tail, body, self.rego_v0));
            format!("{package}.{probe_name}")
        });
        let span = split.map_or(rule.span(), |(_, b)| &b.span);
        TestRule {
            package: package.to_string(),
            name: ref_string(&names),
            query: format!("{package}.{}", ref_string(&query_names)),
            file: self.path.to_string(),
            row: span.line,
            col: span.col,
            kind,
            skip,
            probe,
        }
    }
}

/// OPA's `ruleName`: the first component of the head's ground prefix
/// named `test_…` or `todo_test_…`.
fn test_index(cs: &[Comp<'_>]) -> Option<usize> {
    for (i, c) in cs.iter().enumerate() {
        if !c.ground {
            return None;
        }
        if let Some(n) = &c.name
            && (n.starts_with("test_") || n.starts_with("todo_test_"))
        {
            return Some(i);
        }
    }
    None
}

fn apply(text: &str, mut edits: Vec<(usize, usize, String)>) -> String {
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut s = text.to_string();
    for (start, end, with) in edits {
        if start <= end && end <= s.len() && s.is_char_boundary(start) && s.is_char_boundary(end) {
            s.replace_range(start..end, &with);
        }
    }
    s
}

/// `__gavel_casesN contains [k1, k2] if { <body up to the statement binding
/// the last key variable> }`: the cases OPA's injected `internal.test_case`
/// call would have recorded.
fn probe_rule(name: &str, tail: &[Comp<'_>], body: Option<&Query>, rego_v0: bool) -> String {
    let mut keys = Vec::new();
    let mut vars = BTreeSet::new();
    for c in tail {
        match c.expr {
            Some(e) => {
                keys.push(e.span().text().to_string());
                collect_vars(e, &mut vars);
            }
            None => {
                keys.push(serde_json::Value::String(c.name.clone().unwrap_or_default()).to_string())
            }
        }
    }
    let mut stmts: Vec<String> = Vec::new();
    if let Some(q) = body {
        // The first statement each key variable occurs in; the probe body
        // ends at the last of those (OPA: "inject below the lowest first
        // occurrence of any referenced var"). `some x` declarations bind
        // nothing (OPA's compiler drops them).
        let mut upto: Option<usize> = None;
        for v in &vars {
            let first = q.stmts.iter().position(|s| {
                !matches!(s.literal, Literal::SomeVars { .. }) && stmt_vars(s).contains(v)
            });
            if let Some(f) = first {
                upto = Some(upto.map_or(f, |u: usize| u.max(f)));
            }
        }
        if let Some(u) = upto {
            for s in &q.stmts[..=u] {
                stmts.push(stmt_text(s));
            }
        }
    }
    if stmts.is_empty() {
        stmts.push("true".into());
    }
    let key = format!("[{}]", keys.join(", "));
    let body = stmts.join("\n  ");
    if rego_v0 {
        format!("{name}[{key}] {{\n  {body}\n}}\n")
    } else {
        format!("{name} contains {key} if {{\n  {body}\n}}\n")
    }
}

/// A statement's text with its `with` modifiers.
fn stmt_text(s: &regorus::unstable::LiteralStmt) -> String {
    let src = s.span.source.contents();
    let start = s.span.start as usize;
    let end = s
        .with_mods
        .iter()
        .map(|w| w.span.end as usize)
        .chain([s.span.end as usize])
        .max()
        .unwrap_or(start);
    src.get(start..end)
        .unwrap_or_else(|| s.span.text())
        .to_string()
}

fn stmt_vars(s: &regorus::unstable::LiteralStmt) -> BTreeSet<String> {
    let mut vars = BTreeSet::new();
    match &s.literal {
        Literal::SomeVars { vars: vs, .. } => {
            vars.extend(vs.iter().map(|v| v.text().to_string()));
        }
        Literal::SomeIn {
            key,
            value,
            collection,
            ..
        } => {
            key.iter().for_each(|k| collect_vars(k, &mut vars));
            collect_vars(value, &mut vars);
            collect_vars(collection, &mut vars);
        }
        Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => collect_vars(expr, &mut vars),
        Literal::Every { domain, .. } => collect_vars(domain, &mut vars),
    }
    vars
}

/// The variables of an expression in its own scope (not inside
/// comprehensions, whose variables are theirs).
fn collect_vars(e: &Expr, vars: &mut BTreeSet<String>) {
    super::super::lint::walk(e, &mut |x| match x {
        Expr::Var { span, .. } => {
            let t = span.text();
            if t != "_" && t != "input" && t != "data" {
                vars.insert(t.to_string());
            }
            false
        }
        Expr::RefDot { refr, .. } => {
            collect_vars(refr, vars);
            false
        }
        Expr::ArrayCompr { .. } | Expr::SetCompr { .. } | Expr::ObjectCompr { .. } => false,
        _ => true,
    });
}
