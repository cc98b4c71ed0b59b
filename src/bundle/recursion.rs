//! Recursion refused at load, as OPA refuses it at compile time
//! (`rego_recursion_error`).
//!
//! Why: regorus has no recursion check. `f(x) := y if { y := f(x) }` never
//! ends, and `f(n)` that counts down an agent-supplied `n` recurses as deep
//! as the agent likes; either overflows the evaluating thread's stack, which
//! aborts the whole process (no unwinding from a stack overflow) — a crash of
//! `gavel config check`, or of the proxy on one request. Rego needs no
//! recursion (`walk()`, `numbers.range`, comprehensions), so a bundle that
//! has any is refused with the cycle and the `file:line` of each rule in it.
//!
//! The graph: a node is a rule group — a package and the first name of a
//! rule's head (`f`, or `a` for `a.b.c := …`), all definitions and bodies
//! together. An edge is a reference from a rule's value, bodies or set key to
//! a group: a name of the same package (unless declared locally in that rule:
//! `:=`, `some`, `every`, function arguments), an import alias, or a
//! `data.…` path; a path that stops above a rule (`data.p`, `data.p[x]`,
//! bare `data`) reaches every rule under it. Conservative like OPA: a
//! reference that *may* reach a rule counts. Checked per bundle (`lint`,
//! `gavel test`) and over all of a server's bundles together (cycles through
//! another layer's rules), before anything is evaluated.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use regorus::unstable::{AssignOp, Expr, Literal, Module, Query, Rule, RuleHead};

use super::lint::{LintFinding, parse_module, ref_prefix, ref_root, walk, walk_rule_values};
use super::{Bundle, BundleError};

/// A rule group: package components (`["a", "b"]` for `package a.b`) and
/// the head's first name.
pub(crate) type Node = (Vec<String>, String);

/// Which rule groups refer to which: also what `bundle::deps` follows to
/// tell which `test_*` rules a decision can reach.
pub(crate) struct Graph {
    /// Where each group is first defined: file (with its bundle when several
    /// are checked together) and line.
    pub(crate) defs: BTreeMap<Node, (String, usize)>,
    edges: BTreeMap<Node, BTreeSet<Node>>,
}

pub(crate) fn head_group(r: &Rule) -> Option<String> {
    let refr = match r {
        Rule::Spec { head, .. } => match head {
            RuleHead::Compr { refr, .. }
            | RuleHead::Set { refr, .. }
            | RuleHead::Func { refr, .. } => refr,
        },
        Rule::Default { refr, .. } => refr,
    };
    ref_prefix(refr).0.first().cloned()
}

/// Every variable inside `e` (destructuring patterns included).
fn vars_in(e: &Expr, out: &mut HashSet<String>) {
    walk(e, &mut |x| {
        if let Expr::Var { span, .. } = x {
            out.insert(span.text().to_string());
        }
        true
    });
}

/// Names a query declares: `some`, `some … in`, `every`, and `:=` (also
/// inside comprehensions, which the walk enters).
fn decls_query(q: &Query, out: &mut HashSet<String>) {
    for s in &q.stmts {
        match &s.literal {
            Literal::SomeVars { vars, .. } => {
                out.extend(vars.iter().map(|v| v.text().to_string()));
            }
            Literal::SomeIn { key, value, .. } => {
                key.iter().for_each(|k| vars_in(k, out));
                vars_in(value, out);
            }
            Literal::Every {
                key, value, query, ..
            } => {
                out.extend(key.iter().map(|k| k.text().to_string()));
                out.insert(value.text().to_string());
                decls_query(query, out);
            }
            Literal::Expr { .. } | Literal::NotExpr { .. } => {}
        }
    }
}

fn decls(r: &Rule) -> HashSet<String> {
    let mut out = HashSet::new();
    if let Rule::Spec { head, bodies, .. } = r {
        if let RuleHead::Func { args, .. } = head {
            args.iter().for_each(|a| vars_in(a, &mut out));
        }
        for b in bodies {
            decls_query(&b.query, &mut out);
        }
    }
    if let Rule::Default { args, .. } = r {
        args.iter().for_each(|a| vars_in(a, &mut out));
    }
    walk_rule_values(r, &mut |e| {
        if let Expr::AssignExpr {
            op: AssignOp::ColEq,
            lhs,
            ..
        } = e
        {
            vars_in(lhs, &mut out);
        }
        true
    });
    out
}

/// The longest static prefix of every reference chain in the rule's values
/// and bodies (each chain once: the walk also visits its shorter chains),
/// and every lone variable.
fn references(r: &Rule) -> Vec<Vec<String>> {
    let mut seen_roots = HashSet::new();
    let mut out = Vec::new();
    walk_rule_values(r, &mut |e| {
        match e {
            Expr::RefDot { .. } | Expr::RefBrack { .. } => {
                if let Expr::Var { span, .. } = ref_root(e)
                    && seen_roots.insert(span.start)
                {
                    out.push(ref_prefix(e).0);
                }
            }
            Expr::Var { span, .. } if seen_roots.insert(span.start) => {
                out.push(vec![span.text().to_string()]);
            }
            _ => {}
        }
        true
    });
    out
}

impl Graph {
    /// The graph of `modules` (each with the file name findings use).
    pub(crate) fn new<'a>(modules: impl Iterator<Item = (&'a str, &'a Module)> + Clone) -> Graph {
        let mut g = Graph {
            defs: BTreeMap::new(),
            edges: BTreeMap::new(),
        };
        for (file, m) in modules.clone() {
            let pkg = ref_prefix(&m.package.refr).0;
            for r in &m.policy {
                if let Some(group) = head_group(r) {
                    g.defs
                        .entry((pkg.clone(), group))
                        .or_insert_with(|| (file.to_string(), r.span().line as usize));
                }
            }
        }
        for (_, m) in modules {
            g.add_module(m);
        }
        g
    }

    /// Every group reachable from `from` (themselves included).
    pub(crate) fn reachable(&self, from: impl IntoIterator<Item = Node>) -> BTreeSet<Node> {
        let mut seen: BTreeSet<Node> = BTreeSet::new();
        let mut todo: Vec<Node> = from.into_iter().collect();
        while let Some(n) = todo.pop() {
            if let Some(next) = self.edges.get(&n) {
                todo.extend(next.iter().filter(|m| !seen.contains(*m)).cloned());
            }
            seen.insert(n);
        }
        seen
    }

    /// The groups a `data` path (without `data`) may evaluate.
    fn data_targets(&self, rest: &[String], out: &mut BTreeSet<Node>) {
        for (pkg, group) in self.defs.keys() {
            let reaches = if pkg.starts_with(rest) {
                true // stops at or above the package: all of it
            } else {
                rest.starts_with(pkg) && rest[pkg.len()] == *group
            };
            if reaches {
                out.insert((pkg.clone(), group.clone()));
            }
        }
    }

    fn add_module(&mut self, m: &Module) {
        let pkg: Vec<String> = ref_prefix(&m.package.refr).0;
        let aliases: HashMap<String, Vec<String>> = m
            .imports
            .iter()
            .filter_map(|i| {
                let (p, _) = ref_prefix(&i.refr);
                if p.first().map(String::as_str) != Some("data") {
                    return None;
                }
                let name = i
                    .r#as
                    .as_ref()
                    .map(|s| s.text().to_string())
                    .or_else(|| p.last().cloned())?;
                Some((name, p[1..].to_vec()))
            })
            .collect();
        for r in &m.policy {
            let Some(group) = head_group(r) else { continue };
            let from = (pkg.clone(), group);
            let local = decls(r);
            let mut to = BTreeSet::new();
            for path in references(r) {
                let Some(first) = path.first() else { continue };
                if first == "data" {
                    self.data_targets(&path[1..], &mut to);
                } else if local.contains(first) || first == "input" {
                } else if let Some(target) = aliases.get(first) {
                    let mut full = target.clone();
                    full.extend_from_slice(&path[1..]);
                    self.data_targets(&full, &mut to);
                } else {
                    let node = (pkg.clone(), first.clone());
                    if self.defs.contains_key(&node) {
                        to.insert(node);
                    }
                }
            }
            self.edges.entry(from).or_default().extend(to);
        }
    }

    /// A shortest cycle through `start` (first and last element `start`).
    fn cycle_through(&self, start: &Node) -> Option<Vec<Node>> {
        let mut prev: BTreeMap<&Node, &Node> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        while let Some(n) = queue.pop_front() {
            for next in self.edges.get(n).into_iter().flatten() {
                if next == start {
                    let mut path = vec![start.clone()];
                    let mut at = n;
                    while at != start {
                        path.push(at.clone());
                        at = prev[at];
                    }
                    path.push(start.clone());
                    path.reverse();
                    return Some(path);
                }
                if !prev.contains_key(next) && next != start {
                    prev.insert(next, n);
                    queue.push_back(next);
                }
            }
        }
        None
    }
}

fn dotted(n: &Node) -> String {
    let mut s = String::from("data");
    for p in &n.0 {
        s.push('.');
        s.push_str(p);
    }
    format!("{s}.{}", n.1)
}

/// The recursive rule groups of `bundles` taken together, one finding per
/// cycle, at the first-defined rule of the cycle. `Err` only when a module
/// does not parse.
pub fn check(bundles: &[&Bundle]) -> Result<Vec<LintFinding>, BundleError> {
    let mut parsed = Vec::new();
    for b in bundles {
        for m in &b.modules {
            let module = parse_module(&b.source, &m.path, &m.text, b.manifest.rego_v0())?;
            let file = if bundles.len() > 1 {
                format!("bundle {}: {}", b.name, m.path)
            } else {
                m.path.clone()
            };
            parsed.push((file, module));
        }
    }
    let g = Graph::new(parsed.iter().map(|(f, m)| (f.as_str(), m)));
    let mut reported: HashSet<Node> = HashSet::new();
    let mut findings = Vec::new();
    for node in g.defs.keys() {
        if reported.contains(node) {
            continue;
        }
        let Some(cycle) = g.cycle_through(node) else {
            continue;
        };
        reported.extend(cycle.iter().cloned());
        let names: Vec<String> = cycle.iter().map(dotted).collect();
        let at: Vec<String> = cycle[..cycle.len() - 1]
            .iter()
            .map(|n| {
                let (f, l) = &g.defs[n];
                format!("{} at {f}:{l}", dotted(n))
            })
            .collect();
        let (file, line) = g.defs[node].clone();
        findings.push(LintFinding {
            file,
            line,
            message: format!(
                "rule {} is recursive: {} ({}); Rego does not allow recursion (OPA refuses it at compile time) and gavel will not evaluate it: compute the value without the rule referring back to itself (walk(), numbers.range, a comprehension)",
                dotted(node),
                names.join(" -> "),
                at.join(", ")
            ),
        });
    }
    Ok(findings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::{Manifest, RegoModule};

    fn bundle(name: &str, files: &[(&str, &str)]) -> Bundle {
        Bundle {
            name: name.into(),
            source: name.into(),
            manifest: Manifest::default(),
            modules: files
                .iter()
                .map(|(p, t)| RegoModule {
                    path: p.to_string(),
                    text: t.to_string(),
                })
                .collect(),
            data: serde_json::json!({}),
            digest: String::new(),
            signatures: None,
            files: vec![],
        }
    }

    fn found(files: &[(&str, &str)]) -> Vec<String> {
        check(&[&bundle("b", files)])
            .unwrap()
            .iter()
            .map(|f| f.to_string())
            .collect()
    }

    #[test]
    fn direct_and_self_recursion_is_found_with_file_and_line() {
        let f = found(&[(
            "p.rego",
            "package p\n\nf(x) := y if {\n  x > 0\n  y := f(x - 1)\n}\n",
        )]);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].starts_with("p.rego:3: rule data.p.f is recursive: data.p.f -> data.p.f"),
            "{f:?}"
        );
        let f = found(&[("p.rego", "package p\nf(x) := y if { y := f(x) }\n")]);
        assert_eq!(f.len(), 1, "{f:?}");
        let f = found(&[("p.rego", "package p\nx if data.p.x\n")]);
        assert_eq!(f.len(), 1, "{f:?}");
    }

    #[test]
    fn mutual_recursion_across_files_packages_aliases_and_ref_heads() {
        // Two files of one package.
        let f = found(&[
            ("a.rego", "package p\na if b\n"),
            ("b.rego", "package p\nb if { some x in [1]; a; x }\n"),
        ]);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].contains("data.p.a -> data.p.b -> data.p.a"), "{f:?}");
        assert!(
            f[0].contains("a.rego:2") && f[0].contains("b.rego:2"),
            "{f:?}"
        );
        // Across packages, through an import alias and a ref head.
        let f = found(&[
            (
                "a.rego",
                "package a\nimport data.b as other\nx.y := other.z\n",
            ),
            ("b.rego", "package b\nz := data.a.x.y\n"),
        ]);
        assert_eq!(f.len(), 1, "{f:?}");
        // A dynamic reference into the package reaches every rule in it.
        let f = found(&[(
            "a.rego",
            "package a\nx := data.a[k] if k := \"y\"\ny := 1\n",
        )]);
        assert_eq!(f.len(), 1, "{f:?}");
        // Through a function called from a comprehension in a set key.
        let f = found(&[(
            "a.rego",
            "package a\ns contains v if { v := g(1) }\ng(n) := count([1 | s[_]]) + n\n",
        )]);
        assert_eq!(f.len(), 1, "{f:?}");
    }

    #[test]
    fn recursion_across_bundles_is_found_together_only() {
        let a = bundle("one", &[("a.rego", "package a\nx if data.b.y\n")]);
        let b = bundle("two", &[("b.rego", "package b\ny if data.a.x\n")]);
        assert!(check(&[&a]).unwrap().is_empty());
        assert!(check(&[&b]).unwrap().is_empty());
        let f = check(&[&a, &b]).unwrap();
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].to_string().contains("bundle one: a.rego:2"),
            "{}",
            f[0]
        );
    }

    #[test]
    fn locals_helpers_and_the_example_bundles_are_not_recursion() {
        assert!(
            found(&[(
                "p.rego",
                "package p\nx := 1\ny if { x := 2; x > 1 }\nz if { some x in [1]; x }\nw if { every x in [1] { x } }\nf(x) := x + 1\ng := f(1)\nh := data.q.r\n",
            )])
            .is_empty()
        );
        let roots = [
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bundles"),
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bundles"),
        ];
        let mut all = Vec::new();
        for root in roots {
            for e in std::fs::read_dir(root).unwrap() {
                let b = crate::bundle::load_bundle(
                    &e.unwrap().path(),
                    &crate::bundle::BundleLimits::default(),
                )
                .unwrap();
                all.push(b);
            }
        }
        let refs: Vec<&Bundle> = all.iter().collect();
        assert!(check(&refs).unwrap().is_empty());
    }
}
