//! `gavel test` output in `opa test`'s shapes (`v1/tester/reporter.go`):
//! the pretty text of `PrettyReporter` and the JSON array of
//! `JSONReporter` (`Result` as Go marshals it), plus a text summary of the
//! coverage report (OPA prints only its JSON).

use std::fmt::Write as _;
use std::time::Duration;

use base64::Engine as _;
use serde::Serialize;

use super::coverage::Report as CoverageReport;
use super::{Outcome, TestReport, TestResult, outcome};

/// `PrettyReporter.Report`: each non-passing test (every test with
/// `verbose`) under its `file:row:`, its failing (or, verbose, all) cases
/// indented, its `print` output; then a rule and the counts.
pub fn pretty(report: &TestReport, verbose: bool) -> String {
    let mut s = String::new();
    let mut dirty = false;
    let mut last_file: Option<&str> = None;
    for r in &report.results {
        if verbose || !r.passed() {
            if last_file.is_some_and(|f| f != r.file) {
                s.push('\n');
            }
            let _ = writeln!(s, "{}:{}:", r.file, r.row);
            last_file = Some(&r.file);
            dirty = true;
            let _ = writeln!(s, "{}", line(r));
            let mut all = Vec::new();
            outcome::walk(&r.sub_results, 0, &mut all);
            for (depth, sr) in all {
                if sr.fail || verbose {
                    let _ = writeln!(
                        s,
                        "  {}{}: {}",
                        "  ".repeat(depth),
                        sr.name,
                        if sr.fail { "FAIL" } else { "PASS" }
                    );
                }
            }
            for (label, v) in [("expected", &r.expected), ("actual", &r.actual)] {
                if let Some(v) = v {
                    let _ = writeln!(s, "  {label}: {v}");
                }
            }
            if !r.output.is_empty() {
                s.push('\n');
                for l in r.output.trim().lines() {
                    let _ = writeln!(s, "  {l}");
                }
                s.push('\n');
            }
        }
        if let Some(e) = &r.error {
            let _ = writeln!(s, "  {}", e.message);
        }
    }
    if dirty {
        let _ = writeln!(s, "{}", "-".repeat(80));
    }
    let c = report.counts();
    let total = c.total();
    for (label, n) in [
        ("PASS", c.pass),
        ("FAIL", c.fail),
        ("SKIPPED", c.skip),
        ("ERROR", c.error),
    ] {
        if n != 0 {
            let _ = writeln!(s, "{label}: {n}/{total}");
        }
    }
    s
}

/// `data.p.test_x: FAIL (1.2ms)`; a skipped test has no duration.
fn line(r: &TestResult) -> String {
    let outcome = match r.outcome {
        Outcome::Pass => "PASS",
        Outcome::Fail => "FAIL",
        Outcome::Error => "ERROR",
        Outcome::Skip => return format!("{}: SKIPPED", r.full_name()),
    };
    format!(
        "{}: {outcome} ({:?})",
        r.full_name(),
        Duration::from_nanos(r.duration_ns)
    )
}

/// One `Result` as `opa test --format json` marshals it (Go field order,
/// `omitempty` fields left out; `output` is base64, as Go encodes `[]byte`).
#[derive(Serialize)]
struct JsonResult<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a super::TestError>,
    location: Location<'a>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    sub_results: &'a std::collections::BTreeMap<String, outcome::SubResult>,
    package: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<String>,
    duration: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    fail: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    skip: bool,
    /// gavel's own (fixture cases): the decision expected and the one made.
    #[serde(skip_serializing_if = "Option::is_none")]
    expected: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    actual: Option<&'a serde_json::Value>,
}

#[derive(Serialize)]
struct Location<'a> {
    file: &'a str,
    row: u32,
    col: u32,
}

/// `JSONReporter.Report`: the results as an indented JSON array.
pub fn json(report: &TestReport) -> String {
    let results: Vec<JsonResult> = report
        .results
        .iter()
        .map(|r| JsonResult {
            error: r.error.as_ref(),
            location: Location {
                file: &r.file,
                row: r.row,
                col: r.col,
            },
            sub_results: &r.sub_results,
            package: &r.package,
            name: &r.name,
            output: (!r.output.is_empty())
                .then(|| base64::engine::general_purpose::STANDARD.encode(r.output.as_bytes())),
            duration: r.duration_ns,
            fail: r.outcome == Outcome::Fail,
            skip: r.outcome == Outcome::Skip,
            expected: r.expected.as_ref(),
            actual: r.actual.as_ref(),
        })
        .collect();
    serde_json::to_string_pretty(&results).unwrap_or_else(|_| "[]".into())
}

/// The coverage report in words: the total, then each file with the rows
/// no test reached.
pub fn coverage_text(c: &CoverageReport) -> String {
    let mut s = format!(
        "COVERAGE: {:.2}% ({}/{} lines)\n",
        c.coverage,
        c.covered_lines,
        c.covered_lines + c.not_covered_lines
    );
    for (file, f) in &c.files {
        let _ = write!(
            s,
            "  {file}: {:.2}% ({}/{})",
            f.coverage,
            f.covered_lines,
            f.covered_lines + f.not_covered_lines
        );
        if !f.not_covered.is_empty() {
            let rows: Vec<String> = f
                .not_covered
                .iter()
                .map(|r| {
                    if r.start.row == r.end.row {
                        r.start.row.to_string()
                    } else {
                        format!("{}-{}", r.start.row, r.end.row)
                    }
                })
                .collect();
            let _ = write!(s, ", not covered: {}", rows.join(", "));
        }
        s.push('\n');
    }
    s
}
