//! Input paths a bundle only ever compares with constants.
//!
//! Why: the workflow layer reads counters that change on every call
//! (`input.context.calls_last_minute`, …), so a memo keyed on their values
//! never answers and regorus evaluates the layer each time (~95k
//! instructions a call). But the layer only asks whether each counter is
//! below a threshold from its data. When *every* read of an input path is
//! an operand of a comparison (`<`, `<=`, `==`, `!=`, `>=`, `>`) whose other
//! operand is a constant, the decision depends on the outcomes of those
//! comparisons and not on the value: two inputs that agree on every
//! outcome take the same steps through the policy. The memo then keys that
//! path on the outcomes (`decision::memo`).
//!
//! Soundness, conservatively:
//! - a path qualifies only when no read of it, of an ancestor or of a
//!   descendant is anything else — a variable bound to it, a function
//!   argument, an import alias, a read of the library (whose reads all
//!   count as plain reads) — checked against the plain reads of the whole
//!   analysis (`Deps::input_paths` is built from both);
//! - a constant is a scalar literal, or a static `data` reference inside
//!   the bundle's own roots that resolves in its data and that no rule of
//!   the set defines (a rule at, above or below the path disqualifies it);
//! - a `with` anywhere in the set's reached rules disqualifies every path
//!   (it could replace a constant or the input);
//! - outcomes are computed with regorus's own comparison
//!   (`unstable::comparison::compare`), the function its interpreter calls.

use std::collections::{BTreeMap, BTreeSet};

use regorus::unstable::{BoolOp, Expr, Rule};

use super::super::Bundle;
use super::super::lint::{any_query, ref_prefix, ref_root};

/// One comparison of an input path with a constant.
#[derive(Debug, Clone, PartialEq)]
pub struct Compare {
    pub op: BoolOp,
    pub constant: regorus::Value,
    /// `input.… op constant` (else `constant op input.…`).
    pub input_first: bool,
}

impl Compare {
    /// The comparison's value for an input value at the path, as regorus
    /// evaluates it (`None`: an error, which a memo key must tell apart).
    pub fn outcome(&self, v: &regorus::Value) -> Option<bool> {
        let (a, b) = if self.input_first {
            (v, &self.constant)
        } else {
            (&self.constant, v)
        };
        regorus::unstable::comparison::compare(&self.op, a, b)
            .ok()
            .and_then(|r| r.as_bool().ok().copied())
    }
}

/// A constant operand before it is resolved against the bundle's data.
#[derive(Debug, Clone)]
pub(super) enum Const {
    Literal(regorus::Value),
    /// A static `data` path, without `data`.
    Data(Vec<String>),
}

/// A comparison found in the parse tree: where its input chain starts
/// (the root variable's offset, as `analyze_module` keys chains), the path
/// it reads, and the comparison.
#[derive(Debug, Clone)]
pub(super) struct Candidate {
    pub(super) at: u32,
    pub(super) path: Vec<String>,
    op: BoolOp,
    constant: Const,
    input_first: bool,
}

/// A whole, static `input.a.b` chain: its root's offset and its path.
fn input_chain(e: &Expr) -> Option<(u32, Vec<String>)> {
    if !matches!(e, Expr::RefDot { .. } | Expr::RefBrack { .. }) {
        return None;
    }
    let (path, whole) = ref_prefix(e);
    if !whole || path.len() < 2 || path[0] != "input" {
        return None;
    }
    match ref_root(e) {
        Expr::Var { span, .. } => Some((span.start, path[1..].to_vec())),
        _ => None,
    }
}

fn constant(e: &Expr) -> Option<Const> {
    match e {
        Expr::String { value, .. }
        | Expr::RawString { value, .. }
        | Expr::Number { value, .. }
        | Expr::Bool { value, .. }
        | Expr::Null { value, .. } => Some(Const::Literal(value.clone())),
        Expr::RefDot { .. } | Expr::RefBrack { .. } => match ref_prefix(e) {
            (path, true) if path.len() > 1 && path[0] == "data" => {
                Some(Const::Data(path[1..].to_vec()))
            }
            _ => None,
        },
        _ => None,
    }
}

/// The comparison `e` is, when one side is a whole static input chain and
/// the other a constant.
pub(super) fn candidate(e: &Expr) -> Option<Candidate> {
    let Expr::BoolExpr { op, lhs, rhs, .. } = e else {
        return None;
    };
    let (input_first, (at, path), c) = match (input_chain(lhs), input_chain(rhs)) {
        (Some(chain), None) => (true, chain, constant(rhs)?),
        (None, Some(chain)) => (false, chain, constant(lhs)?),
        _ => return None,
    };
    Some(Candidate {
        at,
        path,
        op: op.clone(),
        constant: c,
        input_first,
    })
}

/// Whether a rule, anywhere inside, has a `with` modifier.
pub(super) fn uses_with(r: &Rule) -> bool {
    any_query(r, &mut |q| q.stmts.iter().any(|s| !s.with_mods.is_empty()))
}

/// Whether two paths overlap: one is the other or an ancestor of it.
fn overlaps(a: &[String], b: &[String]) -> bool {
    a.iter().zip(b).all(|(x, y)| x == y)
}

/// The paths of `found` that every read compares with a resolved constant:
/// none overlaps a path of `plain` (the other reads), and each constant
/// resolves in `bundle`'s data, inside its roots, at a path no rule of
/// `rules` (package and head name, of every bundle of the set) overlaps.
pub(super) fn resolve(
    bundle: &Bundle,
    found: &[Candidate],
    plain: &BTreeSet<Vec<String>>,
    rules: &BTreeSet<Vec<String>>,
) -> BTreeMap<Vec<String>, Vec<Compare>> {
    let mut out: BTreeMap<Vec<String>, Vec<Compare>> = BTreeMap::new();
    let mut refused: BTreeSet<Vec<String>> = BTreeSet::new();
    for c in found {
        let value = match &c.constant {
            Const::Literal(v) => Some(v.clone()),
            Const::Data(path) => data_constant(bundle, path, rules),
        };
        match value {
            Some(constant) => out.entry(c.path.clone()).or_default().push(Compare {
                op: c.op.clone(),
                constant,
                input_first: c.input_first,
            }),
            None => {
                refused.insert(c.path.clone());
            }
        }
    }
    // Two compared paths where one is inside the other cannot both be keyed
    // on outcomes (the outer one's key would stand for the inner value).
    let keys: Vec<Vec<String>> = out.keys().cloned().collect();
    let clashing: Vec<&Vec<String>> = keys
        .iter()
        .filter(|p| {
            refused.iter().chain(plain).any(|q| overlaps(p, q))
                || keys.iter().any(|q| q != *p && overlaps(p, q))
        })
        .collect();
    for p in clashing {
        out.remove(p);
    }
    for compares in out.values_mut() {
        let mut unique = Vec::new();
        for c in compares.drain(..) {
            if !unique.contains(&c) {
                unique.push(c);
            }
        }
        *compares = unique;
    }
    out
}

fn data_constant(
    bundle: &Bundle,
    path: &[String],
    rules: &BTreeSet<Vec<String>>,
) -> Option<regorus::Value> {
    if !super::within_roots(path, &bundle.manifest.roots) || rules.iter().any(|r| overlaps(r, path))
    {
        return None;
    }
    let v = path.iter().try_fold(&bundle.data, |v, k| v.get(k))?;
    serde_json::from_value(v.clone()).ok()
}

#[cfg(test)]
mod tests {
    use super::super::analyze;
    use crate::bundle::{BundleLimits, load_bundle};

    /// The compared paths of a bundle `p` (root `p`, data
    /// `{"p": {"max": 20, "name": "x"}}`) made of `files`, as `a.b: ops`.
    fn compared(files: &[(&str, &str)]) -> Vec<String> {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("p")).unwrap();
        std::fs::write(d.path().join(".manifest"), r#"{"roots": ["p"]}"#).unwrap();
        std::fs::write(
            d.path().join("p/data.json"),
            r#"{"max": 20, "name": "x", "nested": {"k": 1}}"#,
        )
        .unwrap();
        for (name, rego) in files {
            std::fs::write(d.path().join("p").join(name), rego).unwrap();
        }
        let deps = analyze(&load_bundle(d.path(), &BundleLimits::default()).unwrap()).unwrap();
        assert!(
            deps.compared.keys().all(|p| deps.input_paths.contains(p)),
            "a compared path is read: {:?} {:?}",
            deps.input_paths,
            deps.compared.keys()
        );
        deps.compared
            .iter()
            .map(|(p, cs)| format!("{}: {}", p.join("."), cs.len()))
            .collect()
    }

    fn one(rego: &str) -> Vec<String> {
        compared(&[("p.rego", &format!("package p\n{rego}\n"))])
    }

    #[test]
    fn paths_only_compared_with_constants_are_found() {
        assert_eq!(
            one(
                "x if input.c.n >= data.p.max\ny if 3 < input.c.n\nz if input.a.t == \"tool_call\""
            ),
            vec!["a.t: 1", "c.n: 2"]
        );
        // Under `not`, in an `else`, in a comprehension: still comparisons.
        assert_eq!(
            one(
                "x if not input.c.n >= data.p.nested.k\ny := 1 if input.c.m > 2 else := 2\nz := [1 | input.c.k != null]"
            ),
            vec!["c.k: 1", "c.m: 1", "c.n: 1"]
        );
        // The same comparison twice is one.
        assert_eq!(
            one("x if input.c.n > 1\ny if input.c.n > 1"),
            vec!["c.n: 1"]
        );
    }

    #[test]
    fn any_other_read_of_the_path_or_near_it_keeps_its_value() {
        for rego in [
            // Bound to a variable, passed to a function or a builtin.
            "x if input.c.n > 1\ny := input.c.n",
            "x if input.c.n > 1\ny if f(input.c.n)\nf(v) if v > 2",
            "x if input.c.n > 1\ny := sprintf(\"%v\", [input.c.n])",
            // An ancestor or a descendant read.
            "x if input.c.n > 1\ny := input.c",
            "x if input.c.n > 1\ny if input.c.n.k == 2",
            "x if input.c.n > 1\ny if input.c[k] == 2",
            // Compared with something not constant.
            "x if input.c.n > input.c.m",
            "x if input.c.n > count(input.c.list)",
            "x if input.c.n > [1][0]",
            // Arithmetic on it.
            "x if input.c.n + 1 > 2",
            // A dynamic chain.
            "x if input.c[input.k] > 2",
        ] {
            let found = one(rego);
            assert!(
                !found
                    .iter()
                    .any(|p| p.starts_with("c.n:") || p.starts_with("c:")),
                "{rego}: {found:?}"
            );
        }
        // An import alias reads the whole path.
        assert!(one("import input.c\nx if input.c.n > 1").is_empty());
    }

    #[test]
    fn constants_are_literals_or_own_data_no_rule_defines() {
        // A rule at, above or below the data path: not a constant.
        assert!(one("x if input.c.n > data.p.max\nmax := 3").is_empty());
        assert!(one("x if input.c.n > data.p.nested.k\nnested.k := 3").is_empty());
        // Data outside the roots, or missing: not constants.
        assert!(one("x if input.c.n > data.q.max").is_empty());
        assert!(one("x if input.c.n > data.p.missing").is_empty());
        // Another file's rule defines it.
        assert!(
            compared(&[
                ("a.rego", "package p\nx if input.c.n > data.p.max\n"),
                ("b.rego", "package p\nmax := 3\n"),
            ])
            .is_empty()
        );
        // One comparison refused refuses its path's others too.
        assert!(one("x if input.c.n > data.p.max\ny if input.c.n < data.q.y").is_empty());
    }

    #[test]
    fn a_with_anywhere_in_a_reached_rule_refuses_them_all() {
        // The `with` replaces the constant (not the input path, whose read
        // there would refuse it by itself): only the scan for `with` sees it,
        // in a body, a head's comprehension, an `every`, a comprehension in a
        // body, an `every` in a comprehension, a comprehension in an
        // `every`, a function's value.
        let x = "x if input.c.n > data.p.max";
        assert_eq!(one(x), vec!["c.n: 1"]);
        for rule in [
            "y if x with data.p.max as 1",
            "y := [1 | x with data.p.max as 5]",
            "y if every v in [1] { x with data.p.max as v }",
            "y if { z := [1 | x with data.p.max as 5]; count(z) > 0 }",
            "y := {1 | every v in [1] { x with data.p.max as v }}",
            "y if every v in [1] { count([1 | x with data.p.max as v]) > 0 }",
            "f(a) := [a | x with data.p.max as a]\ny := f(1)",
        ] {
            assert!(one(&format!("{x}\n{rule}")).is_empty(), "{rule}");
        }
        // In a test rule nothing reaches: never evaluated by a decision.
        assert_eq!(
            one(&format!("{x}\ntest_x if x with data.p.max as 5")),
            vec!["c.n: 1"]
        );
    }
}
