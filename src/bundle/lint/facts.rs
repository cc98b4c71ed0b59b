//! [`facts`]: a bundle's parse tree reduced to what the schema checks
//! judge (`super`): tool names compared, argument reads with the tools their
//! rule body pins, string-prefix tests on path arguments, and whether the
//! decision allows by default.

use std::collections::HashMap;

use regorus::unstable::{AssignOp, BoolOp, Expr, Literal, Module, Query, Rule, RuleHead};
use serde_json::Value;

use super::super::{descend_indices, package_path, parse_module, ref_prefix, walk, walk_query};
use super::{ArgRead, Facts, PrefixTest, Site, ToolRef, path_like};
use crate::bundle::{Bundle, BundleError};

/// A rule of the bundle with the file it is in.
struct RuleAt<'m> {
    file: &'m str,
    rule: &'m Rule,
}

/// The bundle's parse trees and what the extraction looks things up in.
struct Ctx<'m> {
    data: &'m Value,
    /// Rules by (dotted package, head name).
    rules: HashMap<(String, String), Vec<RuleAt<'m>>>,
}

/// Reduces a bundle to its [`Facts`]. `decision_rule` is the layer's decision
/// rule (`data.mcp.x.decision`).
///
/// **Allows by default**: the bundle has a definition of its decision rule
/// (or a `default` one) whose value allows — an object whose `allow` is
/// `true`, or names a rule with such a definition, or is not a literal
/// `false` — and whose body does not test the tool name positively
/// (`input.action.tool == "x"`, `input.action.tool in S`, directly or
/// through a rule the body requires), **and** no rule denies by a negated
/// tool test (`not input.action.tool in S`, `input.action.tool != "x"`).
/// `decision := {"allow": true} if count(violations) == 0` with violations
/// listing tools is such a policy: a tool nobody named is allowed.
pub fn facts(b: &Bundle, decision_rule: &str) -> Result<Facts, BundleError> {
    let parsed: Vec<(String, Module)> = b
        .modules
        .iter()
        .map(|m| {
            parse_module(&b.source, &m.path, &m.text, b.manifest.rego_v0())
                .map(|p| (m.path.clone(), p))
        })
        .collect::<Result<_, _>>()?;
    let mut ctx = Ctx {
        data: &b.data,
        rules: HashMap::new(),
    };
    for (file, m) in &parsed {
        let pkg = package_path(m).replace('/', ".");
        for r in &m.policy {
            let name = head_name(r);
            ctx.rules
                .entry((pkg.clone(), name))
                .or_default()
                .push(RuleAt { file, rule: r });
        }
    }
    let mut facts = Facts::default();
    let mut negated = false;
    for (file, m) in &parsed {
        let pkg = package_path(m).replace('/', ".");
        // Decision-log rules see the decision event as input, not the
        // request; the policy library (`gavel.lib`) is generic over every
        // server's tools by design.
        if pkg.ends_with(".log")
            || pkg == "log"
            || pkg == "gavel.lib"
            || pkg.starts_with("gavel.lib.")
        {
            continue;
        }
        for r in &m.policy {
            if head_name(r).starts_with("test_") {
                continue; // tests, not policy
            }
            let visible = head_name(r) == "visible";
            for part in parts(r) {
                let mut scan = Scan {
                    ctx: &ctx,
                    pkg: &pkg,
                    file,
                    pins: part.query.map(|q| pins(&ctx, &pkg, q)).unwrap_or_default(),
                    locals: part.query.map(locals).unwrap_or_default(),
                    facts: &mut facts,
                    negated: false,
                };
                for v in &part.values {
                    walk(v, &mut |e| scan.visit(e));
                }
                if let Some(q) = part.query {
                    walk_query(q, &mut |e| scan.visit(e));
                    scan.negated |= negated_tool_test(&ctx, &pkg, q);
                }
                negated |= scan.negated && !visible;
            }
        }
    }
    let (pkg, name) = decision_rule
        .trim_start_matches("data.")
        .rsplit_once('.')
        .unwrap_or(("", decision_rule));
    if !negated {
        facts.default_allow = allows_unpinned(&ctx, pkg, name, 0);
    }
    Ok(facts)
}

/// The dotted head name of a rule (`decision`, `a.b`).
fn head_name(r: &Rule) -> String {
    let refr = match r {
        Rule::Spec { head, .. } => match head {
            RuleHead::Compr { refr, .. }
            | RuleHead::Set { refr, .. }
            | RuleHead::Func { refr, .. } => refr,
        },
        Rule::Default { refr, .. } => refr,
    };
    ref_prefix(refr).0.join(".")
}

/// One body of a rule with the values it yields (its assignment, its set
/// key, a function's arguments); a `default` rule is one body-less part.
struct Part<'m> {
    query: Option<&'m Query>,
    values: Vec<&'m Expr>,
    line: usize,
}

fn parts(r: &Rule) -> Vec<Part<'_>> {
    match r {
        Rule::Default { value, span, .. } => vec![Part {
            query: None,
            values: vec![value],
            line: span.line as usize,
        }],
        Rule::Spec { head, bodies, span } => {
            let head_values: Vec<&Expr> = match head {
                RuleHead::Compr { assign, .. } => assign.iter().map(|a| &*a.value).collect(),
                RuleHead::Set { key, .. } => key.iter().map(|k| &**k).collect(),
                RuleHead::Func { args, assign, .. } => args
                    .iter()
                    .map(|a| &**a)
                    .chain(assign.iter().map(|a| &*a.value))
                    .collect(),
            };
            if bodies.is_empty() {
                return vec![Part {
                    query: None,
                    values: head_values,
                    line: span.line as usize,
                }];
            }
            bodies
                .iter()
                .map(|b| Part {
                    query: Some(&*b.query),
                    values: match &b.assign {
                        Some(a) => vec![&*a.value],
                        None => head_values.clone(),
                    },
                    line: b.span.line as usize,
                })
                .collect()
        }
    }
}

fn is_tool_ref(e: &Expr) -> bool {
    ref_prefix(e) == (vec!["input".into(), "action".into(), "tool".into()], true)
}

fn string_of(e: &Expr) -> Option<String> {
    match e {
        Expr::String { value, .. } | Expr::RawString { value, .. } => {
            value.as_string().ok().map(|s| s.to_string())
        }
        _ => None,
    }
}

fn var_name(e: &Expr) -> Option<&str> {
    match e {
        Expr::Var { span, .. } => Some(span.text()),
        _ => None,
    }
}

/// A name found in a collection: (name, line, file — empty when it is the
/// file being scanned).
type Named = (String, usize, String);

/// A tool test: the names `input.action.tool` is compared with, whether the
/// test is `!=`, the line of each name and the data list they came from.
struct ToolTest {
    names: Vec<Named>,
    ne: bool,
    via: Option<String>,
}

fn tool_test(ctx: &Ctx, pkg: &str, e: &Expr) -> Option<ToolTest> {
    let pair = |lhs: &Expr, rhs: &Expr| -> Option<(String, usize)> {
        let (t, other) = if is_tool_ref(lhs) {
            (lhs, rhs)
        } else {
            (rhs, lhs)
        };
        (is_tool_ref(t)).then_some(())?;
        Some((string_of(other)?, other.span().line as usize))
    };
    match e {
        Expr::BoolExpr { op, lhs, rhs, .. } if matches!(op, BoolOp::Eq | BoolOp::Ne) => {
            let (n, line) = pair(lhs, rhs)?;
            Some(ToolTest {
                names: vec![(n, line, String::new())],
                ne: *op == BoolOp::Ne,
                via: None,
            })
        }
        Expr::AssignExpr {
            op: AssignOp::Eq,
            lhs,
            rhs,
            ..
        } => {
            let (n, line) = pair(lhs, rhs)?;
            Some(ToolTest {
                names: vec![(n, line, String::new())],
                ne: false,
                via: None,
            })
        }
        Expr::Membership {
            key: None,
            value,
            collection,
            ..
        } if is_tool_ref(value) => {
            let (names, via) = collection_names(ctx, pkg, collection)?;
            Some(ToolTest {
                names,
                ne: false,
                via,
            })
        }
        _ => None,
    }
}

/// The strings of a collection: a literal set or array, a rule of the
/// package defined as one, or a `data.` list of the bundle.
fn collection_names(ctx: &Ctx, pkg: &str, c: &Expr) -> Option<(Vec<Named>, Option<String>)> {
    let literal = |items: &[regorus::unstable::Ref<Expr>]| -> Vec<Named> {
        items
            .iter()
            .filter_map(|i| string_of(i).map(|s| (s, i.span().line as usize, String::new())))
            .collect()
    };
    match c {
        Expr::Set { items, .. } | Expr::Array { items, .. } => Some((literal(items), None)),
        Expr::Var { span, .. } => {
            let defs = ctx.rules.get(&(pkg.to_string(), span.text().to_string()))?;
            let mut out = Vec::new();
            for d in defs {
                for p in parts(d.rule) {
                    for v in p.values {
                        if let Expr::Set { items, .. } | Expr::Array { items, .. } = v {
                            out.extend(
                                literal(items)
                                    .into_iter()
                                    .map(|(n, l, _)| (n, l, d.file.to_string())),
                            );
                        }
                    }
                }
            }
            Some((out, None))
        }
        _ => {
            let (path, whole) = ref_prefix(c);
            if !whole || path.first().map(String::as_str) != Some("data") {
                return None;
            }
            let list = path[1..].iter().try_fold(ctx.data, |v, k| v.get(k))?;
            let names = list
                .as_array()?
                .iter()
                .filter_map(|v| {
                    v.as_str()
                        .map(|s| (s.to_string(), c.span().line as usize, String::new()))
                })
                .collect();
            Some((names, Some(path.join("."))))
        }
    }
}

/// The tool names a body pins: positive tool tests among its top-level
/// literals.
fn pins(ctx: &Ctx, pkg: &str, q: &Query) -> Vec<String> {
    let mut out = Vec::new();
    for s in &q.stmts {
        if let Literal::Expr { expr, .. } = &s.literal
            && let Some(t) = tool_test(ctx, pkg, expr)
            && !t.ne
        {
            out.extend(t.names.into_iter().map(|(n, _, _)| n));
        }
    }
    out
}

/// Whether a body denies by a negated tool test: `not <tool test>` or `!=`.
fn negated_tool_test(ctx: &Ctx, pkg: &str, q: &Query) -> bool {
    q.stmts.iter().any(|s| match &s.literal {
        Literal::NotExpr { expr, .. } => tool_test(ctx, pkg, expr).is_some_and(|t| !t.ne),
        Literal::Expr { expr, .. } => tool_test(ctx, pkg, expr).is_some_and(|t| t.ne),
        _ => false,
    })
}

/// `input.action.args.X` / `input.action.canonical_args.X` → (X, view).
fn arg_of(e: &Expr) -> Option<(String, &'static str)> {
    let (p, _) = ref_prefix(e);
    if p.len() < 4 || p[0] != "input" || p[1] != "action" {
        return None;
    }
    let view = match p[2].as_str() {
        "args" => "args",
        "canonical_args" => "canonical_args",
        _ => return None,
    };
    Some((p[3].clone(), view))
}

/// Local variables a body binds from an argument: `p := input.action.args.path`,
/// `some p in input.action.args.paths`, `every p in …`.
fn locals(q: &Query) -> HashMap<String, (String, &'static str)> {
    let mut out = HashMap::new();
    for s in &q.stmts {
        let (var, from) = match &s.literal {
            Literal::Expr { expr, .. } => match &**expr {
                Expr::AssignExpr { lhs, rhs, .. } => (var_name(lhs), &**rhs),
                _ => continue,
            },
            Literal::SomeIn {
                value, collection, ..
            } => (var_name(value), &**collection),
            Literal::Every { value, domain, .. } => (Some(value.text()), &**domain),
            _ => continue,
        };
        if let (Some(v), Some(arg)) = (var, arg_of(from)) {
            out.insert(v.to_string(), arg);
        }
    }
    out
}

/// One rule part being scanned.
struct Scan<'a, 'm> {
    ctx: &'a Ctx<'m>,
    pkg: &'a str,
    file: &'a str,
    pins: Vec<String>,
    locals: HashMap<String, (String, &'static str)>,
    facts: &'a mut Facts,
    negated: bool,
}

impl Scan<'_, '_> {
    fn site(&self, line: usize) -> Site {
        Site {
            file: self.file.to_string(),
            line,
        }
    }

    /// Records what `e` shows; whether to visit its children.
    fn visit(&mut self, e: &Expr) -> bool {
        if let Some(t) = tool_test(self.ctx, self.pkg, e) {
            for (name, line, file) in t.names {
                let mut at = self.site(line);
                if !file.is_empty() {
                    at.file = file;
                }
                self.facts.tools.push(ToolRef {
                    name,
                    at,
                    via: t.via.clone(),
                });
            }
            self.negated |= t.ne;
        }
        match e {
            Expr::RefDot { span, .. } | Expr::RefBrack { span, .. } => {
                if let Some((name, view)) = arg_of(e) {
                    self.facts.args.push(ArgRead {
                        name,
                        view,
                        pinned: self.pins.clone(),
                        at: self.site(span.line as usize),
                    });
                    return descend_indices(e);
                }
                true
            }
            Expr::Call {
                span, fcn, params, ..
            } => {
                let f = ref_prefix(fcn).0.join(".");
                if matches!(f.as_str(), "startswith" | "strings.any_prefix_match")
                    && let Some(first) = params.first()
                {
                    self.prefix_test(first, span.line as usize);
                }
                true
            }
            _ => true,
        }
    }

    fn prefix_test(&mut self, subject: &Expr, line: usize) {
        let (arg, local) = match (arg_of(subject), var_name(subject)) {
            (Some(a), _) => (a, None),
            (None, Some(v)) => match self.locals.get(v) {
                Some(a) => (a.clone(), Some(v.to_string())),
                None => return,
            },
            _ => return,
        };
        if path_like(&arg.0) {
            self.facts.prefix_tests.push(PrefixTest {
                arg: arg.0,
                view: arg.1,
                local,
                at: self.site(line),
            });
        }
    }
}

/// How deep rule references are followed when judging "allows by default".
const MAX_DEPTH: usize = 8;

/// Where rule `name` of `pkg` has an allowing definition whose body does not
/// pin the tool (see [`facts`]).
fn allows_unpinned(ctx: &Ctx, pkg: &str, name: &str, depth: usize) -> Option<Site> {
    if depth > MAX_DEPTH {
        return None;
    }
    for d in ctx.rules.get(&(pkg.to_string(), name.to_string()))? {
        for p in parts(d.rule) {
            // `r if …` has no value: it is `true`.
            let allowing =
                p.values.is_empty() || p.values.iter().any(|v| allowing_value(ctx, pkg, v, depth));
            let pinned = p.query.is_some_and(|q| pinned(ctx, pkg, q, depth));
            if allowing && !pinned {
                return Some(Site {
                    file: d.file.to_string(),
                    line: p.line,
                });
            }
        }
    }
    None
}

/// Whether a decision value allows: `{"allow": true}`, `true`, a rule that
/// allows unpinned, or anything not literally `false` (not knowable here).
fn allowing_value(ctx: &Ctx, pkg: &str, v: &Expr, depth: usize) -> bool {
    match v {
        Expr::Bool { value, .. } => value.as_bool().ok().copied().unwrap_or(true),
        Expr::Var { span, .. } => allows_unpinned(ctx, pkg, span.text(), depth + 1).is_some(),
        Expr::Object { fields, .. } => fields
            .iter()
            .find(|(_, k, _)| string_of(k).as_deref() == Some("allow"))
            .is_none_or(|(_, _, val)| allowing_value(ctx, pkg, val, depth)),
        _ => true,
    }
}

/// Whether a body tests the tool name positively, itself or through a rule
/// of the package it requires (a bare reference or call) every allowing
/// definition of which does.
fn pinned(ctx: &Ctx, pkg: &str, q: &Query, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    q.stmts.iter().any(|s| {
        let Literal::Expr { expr, .. } = &s.literal else {
            return false;
        };
        if tool_test(ctx, pkg, expr).is_some_and(|t| !t.ne) {
            return true;
        }
        let name = match &**expr {
            Expr::Var { span, .. } => span.text(),
            Expr::Call { fcn, .. } => match &**fcn {
                Expr::Var { span, .. } => span.text(),
                _ => return false,
            },
            _ => return false,
        };
        ctx.rules.contains_key(&(pkg.to_string(), name.to_string()))
            && allows_unpinned(ctx, pkg, name, depth + 1).is_none()
    })
}
