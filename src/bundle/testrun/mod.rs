//! `gavel test`: runs a bundle's tests as `opa test` does (OPA v1,
//! `v1/tester/runner.go`, `cmd/test.go`): every rule whose head names a
//! `test_*` (or `todo_test_*`, skipped) — conventionally in `*_test.rego`
//! files — is a test; each definition of a name runs on its own
//! (`discover`); its value is judged by OPA's rules (`outcome`); the report
//! is OPA's text or JSON (`report`), with OPA's coverage report
//! (`coverage`).
//!
//! Each test runs on a fresh clone of one engine holding the whole bundle,
//! with an empty-object input (tests set their own with `with input as …`),
//! OPA's non-strict builtin errors, `print` output captured, and a per-test
//! time limit (OPA's default: 5 s), past which the test is an ERROR.

pub mod coverage;
pub mod discover;
pub mod outcome;
pub mod report;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{Bundle, BundleError, invalid, lint};
use discover::{DocKind, TestRule};
use outcome::SubResult;

/// OPA's default per-test time limit (`cmd/test.go`: "default 5s").
pub const TEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How to run: OPA's `--run`, `--coverage` and `--timeout`.
#[derive(Debug, Clone)]
pub struct TestOptions {
    /// Only tests whose full path (`data.pkg.test_x`) matches (`shouldRun`:
    /// an unanchored match, RE2 syntax).
    pub run: Option<regex::Regex>,
    pub coverage: bool,
    pub timeout: Duration,
}

impl Default for TestOptions {
    fn default() -> Self {
        Self {
            run: None,
            coverage: false,
            timeout: TEST_TIMEOUT,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Outcome {
    Pass,
    Fail,
    Error,
    Skip,
}

/// Why a test is an ERROR: OPA's error `code` and `message`.
#[derive(Debug, Clone, Serialize)]
pub struct TestError {
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct TestResult {
    /// `data.mcp.fs`.
    pub package: String,
    /// The test's ref as OPA prints it: `test_reads_allowed`, `test_x#01`.
    pub name: String,
    /// The file, as the bundle was given (`bundles/fs/policy_test.rego`).
    pub file: String,
    pub row: u32,
    pub col: u32,
    pub outcome: Outcome,
    pub error: Option<TestError>,
    /// The cases of a `test_x[case]` rule.
    pub sub_results: BTreeMap<String, SubResult>,
    /// What the test `print`ed, a line per call.
    pub output: String,
    pub duration_ns: u64,
    /// A failed fixture case (`gavel test --config`): the decision it
    /// expected and the one it got.
    pub expected: Option<serde_json::Value>,
    pub actual: Option<serde_json::Value>,
}

impl TestResult {
    /// `data.mcp.fs.test_reads_allowed`.
    pub fn full_name(&self) -> String {
        if self.package.is_empty() {
            return self.name.clone();
        }
        format!("{}.{}", self.package, self.name)
    }

    pub fn passed(&self) -> bool {
        self.outcome == Outcome::Pass
    }

    /// One line on why it did not pass (for logs and gates).
    pub fn why(&self) -> String {
        match (&self.error, self.outcome) {
            (Some(e), _) => e.message.clone(),
            (None, Outcome::Skip) => "skipped".into(),
            (None, _) => {
                let failed: Vec<&str> = self
                    .sub_results
                    .iter()
                    .filter(|(_, s)| s.fail)
                    .map(|(k, _)| k.as_str())
                    .collect();
                if failed.is_empty() {
                    "not true".into()
                } else {
                    format!("cases failed: {}", failed.join(", "))
                }
            }
        }
    }
}

/// Counts as `opa test` reports them (`PrettyReporter.Report`): a test with
/// cases counts each leaf case instead of itself.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub pass: usize,
    pub fail: usize,
    pub skip: usize,
    pub error: usize,
}

impl Counts {
    pub fn total(&self) -> usize {
        self.pass + self.fail + self.skip + self.error
    }
}

#[derive(Debug, Default)]
pub struct TestReport {
    pub results: Vec<TestResult>,
    /// Lines each file's evaluation reached (with `coverage`).
    pub coverage: coverage::Coverage,
}

impl TestReport {
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for r in &self.results {
            match r.outcome {
                Outcome::Skip => c.skip += 1,
                Outcome::Error => c.error += 1,
                _ if !r.sub_results.is_empty() => {
                    let mut all = Vec::new();
                    outcome::walk(&r.sub_results, 0, &mut all);
                    for (_, sr) in all.into_iter().filter(|(_, s)| s.sub_results.is_empty()) {
                        if sr.fail {
                            c.fail += 1;
                        } else {
                            c.pass += 1;
                        }
                    }
                }
                Outcome::Pass => c.pass += 1,
                Outcome::Fail => c.fail += 1,
            }
        }
        c
    }

    /// Tests that failed or errored (skipped ones are neither).
    pub fn failed(&self) -> usize {
        self.results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Fail | Outcome::Error))
            .count()
    }

    pub fn merge(&mut self, other: TestReport) {
        self.results.extend(other.results);
        self.coverage.merge(other.coverage);
    }
}

/// Runs every test of the bundle with the default options.
pub fn run_tests(bundle: &Bundle) -> Result<TestReport, BundleError> {
    run_tests_with(bundle, &TestOptions::default())
}

/// Runs the bundle's tests. `Err` when the bundle itself cannot be loaded
/// into an engine (a test failing is a result, not an error).
pub fn run_tests_with(bundle: &Bundle, opts: &TestOptions) -> Result<TestReport, BundleError> {
    // A recursive rule would overflow the stack (the process aborts) as
    // soon as a test reaches it: refused before anything is evaluated.
    if let Some(f) = super::recursion::check(&[bundle])?.first() {
        return Err(super::file_err(
            &bundle.source,
            &f.file,
            format!("line {}: {}", f.line, f.message),
        ));
    }
    let rego_v0 = bundle.manifest.rego_v0();
    let parsed = bundle
        .modules
        .iter()
        .map(|m| {
            lint::parse_module(&bundle.source, &m.path, &m.text, rego_v0)
                .map(|p| (m.path.clone(), m.text.clone(), p))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (tests, rewritten) = discover::discover(&parsed, rego_v0);
    let engine = engine_for(bundle, &rewritten, opts)?;
    let mut report = TestReport::default();
    for t in &tests {
        if let Some(re) = &opts.run
            && !re.is_match(&t.full_name())
        {
            continue;
        }
        let (result, hits) = run_one(&engine, t, opts, &display_file(bundle, &t.file));
        report.results.push(result);
        if let Some(hits) = hits {
            report.coverage.add(bundle, &parsed, hits);
        }
    }
    if opts.coverage {
        report.coverage.finish(bundle, &parsed);
    }
    Ok(report)
}

/// The file as the user gave the bundle: `<bundle>/<path in the bundle>`.
pub fn display_file(bundle: &Bundle, path: &str) -> String {
    std::path::Path::new(&bundle.source)
        .join(path)
        .display()
        .to_string()
}

/// One engine with the whole bundle (duplicate tests renamed, the case
/// probes added) and its data.
fn engine_for(
    bundle: &Bundle,
    rewritten: &[discover::Rewritten],
    opts: &TestOptions,
) -> Result<regorus::Engine, BundleError> {
    let mut engine = regorus::Engine::new();
    engine.set_strict_builtin_errors(false);
    engine.set_rego_v0(bundle.manifest.rego_v0());
    engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
        limit: opts.timeout,
        check_interval: std::num::NonZeroU32::new(64).expect("non-zero"),
    });
    for m in rewritten {
        engine
            .add_policy(m.path.clone(), m.text.clone())
            .map_err(|e| super::file_err(&bundle.source, &m.path, e.to_string()))?;
        if let Some((path, text)) = &m.probe_module {
            engine.add_policy(path.clone(), text.clone()).map_err(|e| {
                super::file_err(
                    &bundle.source,
                    &m.path,
                    format!("gavel could not derive the cases of its test_x[case] rules: {e}"),
                )
            })?;
        }
    }
    // The embedded policy library (`bundle::library`) joins the engine
    // after the bundle's modules (unless the bundle is the library itself).
    super::library::add_to(&mut engine, bundle)?;
    let data: regorus::Value = serde_json::from_value(bundle.data.clone())
        .map_err(|e| invalid(&bundle.source, format!("data: {e}")))?;
    engine
        .add_data(data)
        .map_err(|e| invalid(&bundle.source, format!("data: {e}")))?;
    engine.set_gather_prints(true);
    if opts.coverage {
        engine.set_enable_coverage(true);
    }
    Ok(engine)
}

/// Evaluates `query` on a fresh clone: its value (Undefined when no
/// result), what it printed, and its coverage.
fn eval(
    engine: &regorus::Engine,
    query: &str,
    coverage: bool,
) -> (
    Result<regorus::Value, String>,
    Vec<String>,
    Option<regorus::coverage::Report>,
) {
    let mut e = engine.clone();
    e.set_input(regorus::Value::new_object());
    let value = e
        .eval_query(query.to_string(), false)
        .map(|r| {
            r.result
                .into_iter()
                .next()
                .and_then(|r| r.expressions.into_iter().next())
                .map(|x| x.value)
                .unwrap_or(regorus::Value::Undefined)
        })
        .map_err(|e| e.to_string());
    let prints = e.take_prints().unwrap_or_default();
    let cov = if coverage {
        e.get_coverage_report().ok()
    } else {
        None
    };
    (value, prints, cov)
}

/// Runs one test (OPA's `runTest`) and judges its value (`outcome`).
fn run_one(
    engine: &regorus::Engine,
    t: &TestRule,
    opts: &TestOptions,
    file: &str,
) -> (TestResult, Option<Vec<regorus::coverage::Report>>) {
    let mut r = TestResult {
        package: t.package.clone(),
        name: t.name.clone(),
        file: file.to_string(),
        row: t.row,
        col: t.col,
        outcome: Outcome::Pass,
        error: None,
        sub_results: BTreeMap::new(),
        output: String::new(),
        duration_ns: 0,
        expected: None,
        actual: None,
    };
    if t.skip {
        r.outcome = Outcome::Skip;
        return (r, None);
    }
    if t.kind == DocKind::Function {
        // OPA: the query `data.p.test_f` does not type-check.
        r.outcome = Outcome::Error;
        r.error = Some(TestError {
            code: "rego_type_error",
            message: format!("function {} used as reference, not called", t.full_name()),
        });
        return (r, None);
    }
    let start = Instant::now();
    let (value, prints, cov) = eval(engine, &t.query, opts.coverage);
    r.duration_ns = start.elapsed().as_nanos() as u64;
    r.output = bounded_output(&prints);
    let mut hits: Vec<regorus::coverage::Report> = cov.into_iter().collect();
    let value = match value {
        Err(e) => {
            r.outcome = Outcome::Error;
            let code = if e.contains("exceeded time limit") {
                "eval_cancel_error"
            } else {
                "eval_error"
            };
            r.error = Some(TestError { code, message: e });
            return (r, opts.coverage.then_some(hits));
        }
        Ok(v) => v,
    };
    let fail = match t.kind {
        DocKind::PartialObject => match cases_failed(engine, t, value, opts, &mut hits) {
            Ok((fail, subs)) => {
                r.sub_results = subs;
                fail
            }
            Err(error) => {
                r.outcome = Outcome::Error;
                r.error = Some(error);
                return (r, opts.coverage.then_some(hits));
            }
        },
        _ => value != regorus::Value::Bool(true),
    };
    if fail {
        r.outcome = Outcome::Fail;
    }
    (r, opts.coverage.then_some(hits))
}

/// A `test_x[case]` rule's verdict (OPA's `subResults`): each case its value
/// produced, and each case the body reached without producing it (found by
/// the probe query) a failure.
fn cases_failed(
    engine: &regorus::Engine,
    t: &TestRule,
    value: regorus::Value,
    opts: &TestOptions,
    hits: &mut Vec<regorus::coverage::Report>,
) -> Result<(bool, BTreeMap<String, SubResult>), TestError> {
    let v = match value {
        // OPA evaluates a partial object without entries to `{}`.
        regorus::Value::Undefined => serde_json::json!({}),
        v => serde_json::to_value(&v).unwrap_or(serde_json::Value::Null),
    };
    let (mut fail, mut subs) = outcome::sub_results(&v);
    if let Some(probe) = &t.probe {
        let (reached, _, pcov) = eval(engine, probe, opts.coverage);
        hits.extend(pcov);
        let reached = reached.map_err(|e| TestError {
            code: "eval_error",
            message: format!("while finding the cases of this test: {e}"),
        })?;
        for case in cases(&reached) {
            fail |= outcome::reach(&mut subs, &case);
        }
    }
    Ok((fail, subs))
}

/// Bound on one test's captured `print` output.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// What a test printed, a line per call, cut at [`MAX_OUTPUT_BYTES`] (a
/// print in a loop must not fill memory or the terminal).
fn bounded_output(prints: &[String]) -> String {
    let mut out = String::new();
    for p in prints {
        let line = strip_location(p);
        if out.len() + line.len() + 1 > MAX_OUTPUT_BYTES {
            out.push_str("… (print output cut at 64 KiB)\n");
            break;
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The probe's value, a set of key arrays, as case paths.
fn cases(v: &regorus::Value) -> Vec<Vec<String>> {
    let json = serde_json::to_value(v).unwrap_or(serde_json::Value::Null);
    let serde_json::Value::Array(items) = json else {
        return vec![];
    };
    items
        .iter()
        .filter_map(|k| k.as_array())
        .map(|k| k.iter().map(outcome::term_to_string).collect())
        .collect()
}

/// regorus prefixes gathered prints with `file:line: `; OPA's test output
/// is the message alone.
fn strip_location(p: &str) -> String {
    match p.split_once(": ") {
        Some((loc, msg))
            if loc
                .rsplit_once(':')
                .is_some_and(|(_, n)| n.parse::<u32>().is_ok()) =>
        {
            msg.to_string()
        }
        _ => p.to_string(),
    }
}

#[cfg(test)]
mod tests;
