//! What `explain` reads out of a bundle's Rego, on regorus's parse tree (the
//! one the lint uses): which rules produce which reason codes and under which
//! conditions, which rules allow, the remediation a decision carries, and the
//! tool names the policy compares `input.action.tool` with. Conditions are
//! kept as the policy's own statements, with the data they read resolved.

use std::collections::{BTreeMap, BTreeSet};

use regorus::unstable::{Expr, Module, Rule, RuleHead};
use serde_json::Value;

use crate::bundle::lint::{ref_prefix, walk_rule};
use crate::bundle::metadata::Annotation;

/// A rule that produces a reason code or an allowing decision, with its
/// conditions as written.
#[derive(Debug, Clone)]
pub(crate) struct Condition {
    pub(crate) rule: String,
    pub(crate) file: String,
    pub(crate) line: u32,
    pub(crate) when: Vec<String>,
    /// `data.x.y = value` for data the rule reads; `name = …` for constant
    /// rules of the package it mentions.
    pub(crate) where_: Vec<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Facts {
    pub(crate) reasons: BTreeMap<String, Vec<Condition>>,
    pub(crate) allow_when: Vec<Condition>,
    pub(crate) remediation: Vec<String>,
    pub(crate) tools: BTreeMap<String, BTreeSet<String>>,
    pub(crate) rule_docs: Vec<Annotation>,
}

pub(crate) fn data_at<'a>(data: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(data, |v, k| v.get(k))
}

pub(crate) fn short(v: &Value) -> String {
    let s = match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    if s.chars().count() > 160 {
        format!("{}…", s.chars().take(160).collect::<String>())
    } else {
        s
    }
}

fn string_lit(e: &Expr) -> Option<String> {
    match e {
        Expr::String { value, .. } | Expr::RawString { value, .. } => {
            value.as_string().ok().map(|s| s.to_string())
        }
        _ => None,
    }
}

fn is_tool_ref(e: &Expr) -> bool {
    let (p, whole) = ref_prefix(e);
    whole && p == ["input", "action", "tool"]
}

/// Constant rules of a module (`read_tools := {…}`): name → the literal.
fn constants(m: &Module) -> BTreeMap<String, &Expr> {
    let mut out = BTreeMap::new();
    for r in &m.policy {
        if let Rule::Spec {
            head:
                RuleHead::Compr {
                    refr,
                    assign: Some(a),
                    ..
                },
            bodies,
            ..
        } = r.as_ref()
            && bodies.iter().all(|b| b.query.stmts.is_empty())
            && matches!(a.value.as_ref(), Expr::Set { .. } | Expr::Array { .. })
        {
            out.insert(ref_prefix(refr).0.join("."), a.value.as_ref());
        }
    }
    out
}

fn strings_of(e: &Expr) -> Vec<String> {
    match e {
        Expr::Set { items, .. } | Expr::Array { items, .. } => {
            items.iter().filter_map(|i| string_lit(i)).collect()
        }
        _ => vec![],
    }
}

/// The source text of a statement. regorus's spans of string literals
/// exclude the quotes, so a statement ending in one ends a byte early.
fn stmt_text(src: &str, span: &regorus::unstable::Span) -> String {
    let (mut start, mut end) = (span.start as usize, span.end as usize);
    if src.get(start..end).is_none() {
        return span.text().to_string();
    }
    for q in ['"', '`'] {
        if src[start..end].matches(q).count() % 2 == 1 {
            if src[end..].starts_with(q) {
                end += 1;
            } else if src[..start].ends_with(q) {
                start -= 1;
            }
        }
    }
    one_line(&src[start..end])
}

/// Collapses line breaks and indentation (multi-line set literals).
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Reads the facts of one module into `facts`: per rule, the data and
/// constants it reads and the tool names it compares with, then what its
/// head produces (reason codes, an allowing decision, a remediation).
pub(crate) fn analyze_module(path: &str, src: &str, m: &Module, data: &Value, facts: &mut Facts) {
    let consts = constants(m);
    for r in &m.policy {
        let Rule::Spec { head, bodies, span } = r.as_ref() else {
            continue;
        };
        let where_ = rule_reads(r, data, &consts, &mut facts.tools);
        let site = RuleSite {
            src,
            rule: ref_prefix(match head {
                RuleHead::Compr { refr, .. }
                | RuleHead::Set { refr, .. }
                | RuleHead::Func { refr, .. } => refr,
            })
            .0
            .join("."),
            file: path,
            line: span.line,
            where_: where_.into_iter().collect(),
        };
        match head {
            // `violations contains "code" if …`
            RuleHead::Set { key: Some(k), .. } => {
                if let Some(code) = string_lit(k) {
                    for b in bodies {
                        facts
                            .reasons
                            .entry(code.clone())
                            .or_default()
                            .push(site.condition(site.when_of(b)));
                    }
                }
            }
            RuleHead::Compr {
                assign: Some(head_value),
                ..
            } => {
                for b in bodies {
                    decision_body(&site, head_value.value.as_ref(), b, facts);
                }
            }
            _ => {}
        }
    }
}

/// Where a rule is, and what it reads: makes its [`Condition`]s.
struct RuleSite<'a> {
    src: &'a str,
    rule: String,
    file: &'a str,
    line: u32,
    where_: Vec<String>,
}

impl RuleSite<'_> {
    fn condition(&self, when: Vec<String>) -> Condition {
        Condition {
            rule: self.rule.clone(),
            file: self.file.to_string(),
            line: self.line,
            when,
            where_: self.where_.clone(),
        }
    }

    /// A body's statements, as written.
    fn when_of(&self, b: &regorus::unstable::RuleBody) -> Vec<String> {
        b.query
            .stmts
            .iter()
            .map(|s| format!("`{}`", stmt_text(self.src, &s.span)))
            .collect()
    }
}

/// Walks a rule: the data (`data.x = value`) and constants it reads, and the
/// tool names it compares `input.action.tool` with (added to `tools`).
fn rule_reads(
    r: &Rule,
    data: &Value,
    consts: &BTreeMap<String, &Expr>,
    tools: &mut BTreeMap<String, BTreeSet<String>>,
) -> BTreeSet<String> {
    let mut where_ = BTreeSet::new();
    walk_rule(r, &mut |e| {
        match e {
            Expr::RefDot { .. } | Expr::RefBrack { .. } => {
                let (p, whole) = ref_prefix(e);
                if whole
                    && p.first().map(String::as_str) == Some("data")
                    && let Some(v) = data_at(data, &p[1..])
                    && !v.is_object()
                {
                    where_.insert(format!("`{} = {}`", p.join("."), short(v)));
                }
                return false;
            }
            Expr::Var { span, .. } => {
                if let Some(c) = consts.get(span.text()) {
                    where_.insert(format!("`{} = {}`", span.text(), one_line(c.span().text())));
                }
            }
            Expr::BoolExpr { lhs, rhs, .. } => {
                for (a, b) in [(lhs, rhs), (rhs, lhs)] {
                    if is_tool_ref(a)
                        && let Some(t) = string_lit(b)
                    {
                        tools
                            .entry(t)
                            .or_default()
                            .insert("named in a comparison".into());
                    }
                }
            }
            Expr::Membership {
                value, collection, ..
            } if is_tool_ref(value) => {
                let (names, via) = tools_in(collection, consts, data);
                for n in names {
                    tools.entry(n).or_default().insert(via.clone());
                }
            }
            _ => {}
        }
        true
    });
    where_
}

/// The tool names of `input.action.tool in <collection>`, and how the
/// collection is named (`in \`name\``, `in a literal set`).
fn tools_in(
    collection: &Expr,
    consts: &BTreeMap<String, &Expr>,
    data: &Value,
) -> (Vec<String>, String) {
    match collection {
        Expr::Var { span, .. } => (
            consts
                .get(span.text())
                .map(|c| strings_of(c))
                .unwrap_or_default(),
            format!("in `{}`", span.text()),
        ),
        c @ (Expr::RefDot { .. } | Expr::RefBrack { .. }) => {
            let (p, _) = ref_prefix(c);
            let list = if p.first().map(String::as_str) == Some("data") {
                data_at(data, &p[1..])
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default()
            } else {
                vec![]
            };
            (list, format!("in `{}`", p.join(".")))
        }
        other => (strings_of(other), "in a literal set".into()),
    }
}

/// One body of `decision := {"allow": …, "reasons": [...], "remediation": …}
/// if …`. An `else := …` body carries its own value and holds only when the
/// bodies before it do not; its value may be another rule (`else :=
/// full_decision`), which is explained where that rule is.
fn decision_body(
    site: &RuleSite,
    head_value: &Expr,
    b: &regorus::unstable::RuleBody,
    facts: &mut Facts,
) {
    let value = match (&b.assign, b.is_else) {
        (Some(a), true) => a.value.as_ref(),
        _ => head_value,
    };
    let Expr::Object { fields, .. } = value else {
        return;
    };
    let field = |name: &str| {
        fields
            .iter()
            .find(|(_, k, _)| string_lit(k).as_deref() == Some(name))
            .map(|(_, _, v)| v.as_ref())
    };
    let mut when = site.when_of(b);
    if b.is_else {
        when.insert(0, "the rule's earlier bodies do not hold".into());
    }
    if let Some(Expr::Bool { value, .. }) = field("allow")
        && value.as_bool().ok() == Some(&true)
    {
        facts.allow_when.push(site.condition(when.clone()));
    }
    for code in field("reasons").map(strings_of).unwrap_or_default() {
        facts
            .reasons
            .entry(code)
            .or_default()
            .push(site.condition(when.clone()));
    }
    if let Some(rem) = field("remediation") {
        let text = string_lit(rem)
            .unwrap_or_else(|| format!("computed per request: `{}`", rem.span().text()));
        if !facts.remediation.contains(&text) {
            facts.remediation.push(text);
        }
    }
}
