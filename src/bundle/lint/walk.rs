//! Walking regorus's parse tree: every expression of a query, a rule or a
//! module, pre-order, the visitor deciding whether to descend. Apart from
//! the lint because it is shared machinery, not a check: the lint, the
//! input-path analysis of the memo (`bundle::deps`), recursion detection,
//! `gavel test`'s discovery and coverage and `gavel explain` all walk the
//! same tree, and one walker means one place that must learn a new
//! expression kind when regorus adds one.

use regorus::unstable::{Expr, Literal, Module, Query, Rule, RuleHead};

/// Visits every expression of a query (bodies, `with` modifiers, `every`, …).
pub(crate) fn walk_query(q: &Query, f: &mut dyn FnMut(&Expr) -> bool) {
    for s in &q.stmts {
        match &s.literal {
            Literal::SomeVars { .. } => {}
            Literal::SomeIn {
                key,
                value,
                collection,
                ..
            } => {
                key.iter().for_each(|k| walk(k, f));
                walk(value, f);
                walk(collection, f);
            }
            Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => walk(expr, f),
            Literal::Every { domain, query, .. } => {
                walk(domain, f);
                walk_query(query, f);
            }
        }
        for w in &s.with_mods {
            walk(&w.refr, f);
            walk(&w.r#as, f);
        }
    }
}

/// Pre-order walk; `f` returns whether to visit the children.
pub(crate) fn walk(e: &Expr, f: &mut dyn FnMut(&Expr) -> bool) {
    if !f(e) {
        return;
    }
    match e {
        Expr::Array { items, .. } | Expr::Set { items, .. } => {
            items.iter().for_each(|i| walk(i, f))
        }
        Expr::Object { fields, .. } => fields.iter().for_each(|(_, k, v)| {
            walk(k, f);
            walk(v, f);
        }),
        Expr::ArrayCompr { term, query, .. } | Expr::SetCompr { term, query, .. } => {
            walk(term, f);
            walk_query(query, f);
        }
        Expr::ObjectCompr {
            key, value, query, ..
        } => {
            walk(key, f);
            walk(value, f);
            walk_query(query, f);
        }
        Expr::Call { fcn, params, .. } => {
            walk(fcn, f);
            params.iter().for_each(|p| walk(p, f));
        }
        Expr::UnaryExpr { expr, .. } => walk(expr, f),
        Expr::RefDot { refr, .. } => walk(refr, f),
        Expr::RefBrack { refr, index, .. } => {
            walk(refr, f);
            walk(index, f);
        }
        Expr::BinExpr { lhs, rhs, .. }
        | Expr::BoolExpr { lhs, rhs, .. }
        | Expr::ArithExpr { lhs, rhs, .. }
        | Expr::AssignExpr { lhs, rhs, .. } => {
            walk(lhs, f);
            walk(rhs, f);
        }
        Expr::Membership {
            key,
            value,
            collection,
            ..
        } => {
            key.iter().for_each(|k| walk(k, f));
            walk(value, f);
            walk(collection, f);
        }
        _ => {} // scalars and variables
    }
}

pub(crate) fn walk_module(m: &Module, f: &mut dyn FnMut(&Expr) -> bool) {
    for r in &m.policy {
        walk_rule(r, f);
    }
}

pub(crate) fn walk_rule(r: &Rule, f: &mut dyn FnMut(&Expr) -> bool) {
    match r {
        Rule::Spec { head, bodies, .. } => {
            match head {
                RuleHead::Compr { refr, assign, .. } => {
                    walk(refr, f);
                    assign.iter().for_each(|a| walk(&a.value, f));
                }
                RuleHead::Set { refr, key, .. } => {
                    walk(refr, f);
                    key.iter().for_each(|k| walk(k, f));
                }
                RuleHead::Func {
                    refr, args, assign, ..
                } => {
                    walk(refr, f);
                    args.iter().for_each(|a| walk(a, f));
                    assign.iter().for_each(|a| walk(&a.value, f));
                }
            }
            for b in bodies {
                b.assign.iter().for_each(|a| walk(&a.value, f));
                walk_query(&b.query, f);
            }
        }
        Rule::Default {
            refr, args, value, ..
        } => {
            walk(refr, f);
            args.iter().for_each(|a| walk(a, f));
            walk(value, f);
        }
    }
}

/// The query a comprehension holds (`[t | q]`, `{t | q}`, `{k: v | q}`).
pub(crate) fn comprehension(e: &Expr) -> Option<&Query> {
    match e {
        Expr::ArrayCompr { query, .. }
        | Expr::SetCompr { query, .. }
        | Expr::ObjectCompr { query, .. } => Some(query),
        _ => None,
    }
}

/// Whether `f` holds for some query of a rule: its bodies, and every query
/// nested in them or in its head (`every`, comprehensions), at any depth.
/// The expression walk reaches every comprehension, wherever it is (inside
/// an `every` or another comprehension too); each query found is tried with
/// the `every` bodies inside it.
pub(crate) fn any_query(r: &Rule, f: &mut dyn FnMut(&Query) -> bool) -> bool {
    fn with_every(q: &Query, f: &mut dyn FnMut(&Query) -> bool) -> bool {
        f(q) || q
            .stmts
            .iter()
            .any(|s| matches!(&s.literal, Literal::Every { query, .. } if with_every(query, f)))
    }
    let bodies = match r {
        Rule::Spec { bodies, .. } => bodies.as_slice(),
        Rule::Default { .. } => &[],
    };
    if bodies.iter().any(|b| with_every(&b.query, f)) {
        return true;
    }
    let mut found = false;
    walk_rule(r, &mut |e| {
        found = found || comprehension(e).is_some_and(|c| with_every(c, f));
        !found
    });
    found
}

/// Visits what a rule computes with — its bodies, value and set key — but
/// not its head's name or arguments: a function's own name in its head is
/// no call (`bundle::recursion`).
pub(crate) fn walk_rule_values(r: &Rule, f: &mut dyn FnMut(&Expr) -> bool) {
    match r {
        Rule::Spec { head, bodies, .. } => {
            match head {
                RuleHead::Compr { assign, .. } | RuleHead::Func { assign, .. } => {
                    assign.iter().for_each(|a| walk(&a.value, f))
                }
                RuleHead::Set { key, .. } => key.iter().for_each(|k| walk(k, f)),
            }
            for b in bodies {
                b.assign.iter().for_each(|a| walk(&a.value, f));
                walk_query(&b.query, f);
            }
        }
        Rule::Default { value, .. } => walk(value, f),
    }
}
