//! `gavel test --coverage`: OPA's coverage report (`v1/cover/cover.go`)
//! from what regorus's `coverage` feature records.
//!
//! OPA counts, per file, the row of every rule head and of every
//! expression (statement), `some` declarations excepted
//! (`includeExprInCoverage`); a row is covered when an expression on it was
//! evaluated (`EvalOp`) or a rule with its head there produced a value
//! (`ExitOp`). regorus records the lines on which any expression was
//! evaluated; from its parse tree we take the same rows OPA counts. The one
//! approximation: regorus does not report rule exits, so a head row counts
//! as covered when its value expression was evaluated (regorus evaluates it
//! after the body held) or, for `if` rules without a value, when the last
//! statement of one of its bodies was — a body whose last condition was
//! always false still shows its head covered, where OPA would not.

use std::collections::{BTreeMap, BTreeSet};

use regorus::unstable::{Expr, Literal, Module, Query, Rule, RuleHead};
use serde::Serialize;

use super::super::Bundle;

/// The rows of one file that count: heads (with the rows whose hit means
/// the rule produced a value) and statements.
#[derive(Debug, Default, Clone)]
struct Rows {
    /// Rows that are not covered unless hit (heads, statements).
    counted: BTreeSet<u32>,
    /// `some` declaration rows: covered when hit, never reported missing.
    some_decls: BTreeSet<u32>,
    /// head row → rows any of which, hit, means the rule exited.
    heads: BTreeMap<u32, BTreeSet<u32>>,
}

#[derive(Debug, Default)]
pub struct Coverage {
    /// Display file → lines regorus saw evaluated.
    hits: BTreeMap<String, BTreeSet<u32>>,
    /// Display file → the rows that count (with `--coverage`).
    rows: BTreeMap<String, Rows>,
}

/// `{"start": {"row": 1}, "end": {"row": 3}}`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Range {
    pub start: Position,
    pub end: Position,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Position {
    pub row: u32,
}

/// OPA's `FileReport` (zero values omitted, as OPA's `omitempty` does).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FileReport {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub covered: Vec<Range>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_covered: Vec<Range>,
    #[serde(skip_serializing_if = "is_zero")]
    pub covered_lines: usize,
    #[serde(skip_serializing_if = "is_zero")]
    pub not_covered_lines: usize,
    #[serde(skip_serializing_if = "is_zero_f")]
    pub coverage: f64,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn is_zero_f(n: &f64) -> bool {
    *n == 0.0
}

/// OPA's `Report`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub files: BTreeMap<String, FileReport>,
    pub covered_lines: usize,
    pub not_covered_lines: usize,
    pub coverage: f64,
}

impl Coverage {
    /// Records the lines one test's evaluation reached (the probe modules
    /// gavel adds are not the user's files and are left out).
    pub(super) fn add(
        &mut self,
        bundle: &Bundle,
        parsed: &[(String, String, Module)],
        reports: Vec<regorus::coverage::Report>,
    ) {
        for r in reports {
            for f in r.files {
                if parsed.iter().any(|(p, _, _)| *p == f.path) {
                    self.hits
                        .entry(super::display_file(bundle, &f.path))
                        .or_default()
                        .extend(f.covered);
                }
            }
        }
    }

    /// Takes the rows that count from every module of the bundle.
    pub(super) fn finish(&mut self, bundle: &Bundle, parsed: &[(String, String, Module)]) {
        for (path, _, module) in parsed {
            self.rows
                .insert(super::display_file(bundle, path), module_rows(module));
        }
    }

    pub fn merge(&mut self, other: Coverage) {
        for (f, h) in other.hits {
            self.hits.entry(f).or_default().extend(h);
        }
        self.rows.extend(other.rows);
    }

    /// OPA's report over every file of the bundles run with `--coverage`.
    pub fn report(&self) -> Report {
        let mut files = BTreeMap::new();
        let (mut covered_all, mut not_all) = (0, 0);
        let none = BTreeSet::new();
        for (file, rows) in &self.rows {
            let hits = self.hits.get(file).unwrap_or(&none);
            let mut covered: BTreeSet<u32> = rows
                .counted
                .iter()
                .chain(&rows.some_decls)
                .filter(|r| hits.contains(r))
                .copied()
                .collect();
            for (head, exits) in &rows.heads {
                if exits.iter().any(|r| hits.contains(r)) {
                    covered.insert(*head);
                }
            }
            let not: BTreeSet<u32> = rows.counted.difference(&covered).copied().collect();
            let fr = file_report(&covered, &not);
            covered_all += fr.covered_lines;
            not_all += fr.not_covered_lines;
            files.insert(file.clone(), fr);
        }
        Report {
            files,
            covered_lines: covered_all,
            not_covered_lines: not_all,
            coverage: percent(covered_all, not_all),
        }
    }
}

fn percent(covered: usize, not: usize) -> f64 {
    if covered + not == 0 {
        0.0
    } else {
        100.0 * covered as f64 / (covered + not) as f64
    }
}

fn file_report(covered: &BTreeSet<u32>, not: &BTreeSet<u32>) -> FileReport {
    let covered_r = ranges(covered);
    let not_r = ranges(not);
    let lines = |rs: &[Range]| -> usize {
        rs.iter()
            .map(|r| (r.end.row - r.start.row + 1) as usize)
            .sum()
    };
    let (c, n) = (lines(&covered_r), lines(&not_r));
    FileReport {
        covered: covered_r,
        not_covered: not_r,
        covered_lines: c,
        not_covered_lines: n,
        coverage: percent(c, n),
    }
}

/// `sortedPositionSliceToRangeSlice`: consecutive rows as one range.
fn ranges(rows: &BTreeSet<u32>) -> Vec<Range> {
    let mut out: Vec<Range> = Vec::new();
    for &r in rows {
        match out.last_mut() {
            Some(last) if last.end.row + 1 == r => last.end.row = r,
            _ => out.push(Range {
                start: Position { row: r },
                end: Position { row: r },
            }),
        }
    }
    out
}

fn module_rows(m: &Module) -> Rows {
    let mut rows = Rows::default();
    for rule in &m.policy {
        let head_row = rule.span().line;
        rows.counted.insert(head_row);
        let mut exits = BTreeSet::new();
        match rule.as_ref() {
            Rule::Spec { head, bodies, .. } => {
                let value = match head {
                    RuleHead::Compr { assign, .. } | RuleHead::Func { assign, .. } => {
                        assign.as_ref().map(|a| a.value.clone())
                    }
                    RuleHead::Set { key, .. } => key.clone(),
                };
                if let Some(v) = &value {
                    exits.insert(v.span().line);
                    expr_rows(v, &mut rows);
                }
                for b in bodies {
                    let body_row = b.span.line;
                    if b.is_else {
                        rows.counted.insert(body_row);
                    }
                    let mut body_exits = BTreeSet::new();
                    if let Some(a) = &b.assign {
                        body_exits.insert(a.value.span().line);
                        expr_rows(&a.value, &mut rows);
                    } else if value.is_none()
                        && let Some(last) = b.query.stmts.last()
                    {
                        body_exits.insert(last.span.line);
                    }
                    query_rows(&b.query, &mut rows);
                    if b.is_else {
                        rows.heads.entry(body_row).or_default().extend(body_exits);
                    } else {
                        exits.extend(body_exits);
                    }
                }
            }
            Rule::Default { value, .. } => {
                exits.insert(value.span().line);
            }
        }
        rows.heads.entry(head_row).or_default().extend(exits);
    }
    rows
}

fn query_rows(q: &Query, rows: &mut Rows) {
    for s in &q.stmts {
        match &s.literal {
            Literal::SomeVars { .. } | Literal::SomeIn { .. } => {
                rows.some_decls.insert(s.span.line);
            }
            _ => {
                rows.counted.insert(s.span.line);
            }
        }
        match &s.literal {
            Literal::SomeVars { .. } => {}
            Literal::SomeIn {
                key,
                value,
                collection,
                ..
            } => {
                key.iter().for_each(|k| expr_rows(k, rows));
                expr_rows(value, rows);
                expr_rows(collection, rows);
            }
            Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => expr_rows(expr, rows),
            Literal::Every { domain, query, .. } => {
                expr_rows(domain, rows);
                query_rows(query, rows);
            }
        }
        for w in &s.with_mods {
            expr_rows(&w.r#as, rows);
        }
    }
}

/// The statements of the comprehensions inside an expression.
fn expr_rows(e: &Expr, rows: &mut Rows) {
    super::super::lint::walk(e, &mut |x| match super::super::lint::comprehension(x) {
        Some(query) => {
            query_rows(query, rows);
            false
        }
        None => true,
    });
}
