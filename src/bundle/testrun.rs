//! `gavel test`: runs a bundle's tests like `opa test` — every rule named
//! `test_*` (not functions) in any module, conventionally in `*_test.rego`
//! files. Each runs on a fresh clone of one engine holding the whole bundle,
//! with an empty-object input (tests set their own with `with input as …`),
//! OPA's non-strict builtin errors, and a per-test time limit; it passes iff
//! its value is `true`.

use std::fmt;
use std::time::{Duration, Instant};

use super::{Bundle, BundleError, invalid, lint};

/// Time limit per test: generous, but a runaway test must not hang CI.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, serde::Serialize)]
pub struct TestResult {
    /// Full rule path, e.g. `data.mcp.fs.test_reads_allowed`.
    pub name: String,
    pub file: String,
    pub passed: bool,
    /// Why it failed: undefined, another value, or the evaluation error.
    pub error: Option<String>,
    pub duration_ns: u64,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct TestReport {
    pub results: Vec<TestResult>,
}

impl TestReport {
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.passed).count()
    }

    pub fn failed(&self) -> usize {
        self.results.len() - self.passed()
    }
}

/// `opa test`-style text: failures first with their reason, then the summary.
impl fmt::Display for TestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in self.results.iter().filter(|r| !r.passed) {
            writeln!(f, "{}:", r.file)?;
            writeln!(
                f,
                "{}: FAIL ({:?}): {}",
                r.name,
                Duration::from_nanos(r.duration_ns),
                r.error.as_deref().unwrap_or("")
            )?;
        }
        writeln!(f, "{}", "-".repeat(80))?;
        if self.failed() == 0 {
            writeln!(f, "PASS: {}/{}", self.passed(), self.results.len())
        } else {
            writeln!(f, "PASS: {}/{}", self.passed(), self.results.len())?;
            writeln!(f, "FAIL: {}/{}", self.failed(), self.results.len())
        }
    }
}

/// Runs every test of the bundle. `Err` when the bundle itself cannot be
/// loaded into an engine (a test failing is a result, not an error).
pub fn run_tests(bundle: &Bundle) -> Result<TestReport, BundleError> {
    let index = lint::index(bundle)?;
    // A recursive rule would overflow the stack (the process aborts) as
    // soon as a test reaches it: refused before anything is evaluated.
    if let Some(f) = super::recursion::check(&[bundle])?.first() {
        return Err(super::file_err(
            &bundle.source,
            &f.file,
            format!("line {}: {}", f.line, f.message),
        ));
    }
    let mut engine = regorus::Engine::new();
    engine.set_strict_builtin_errors(false);
    engine.set_rego_v0(bundle.manifest.rego_v0());
    engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
        limit: TEST_TIMEOUT,
        check_interval: std::num::NonZeroU32::new(64).expect("non-zero"),
    });
    for m in &bundle.modules {
        engine
            .add_policy(m.path.clone(), m.text.clone())
            .map_err(|e| super::file_err(&bundle.source, &m.path, e.to_string()))?;
    }
    super::library::add_to(&mut engine, bundle)?;
    let data: regorus::Value = serde_json::from_value(bundle.data.clone())
        .map_err(|e| invalid(&bundle.source, format!("data: {e}")))?;
    engine
        .add_data(data)
        .map_err(|e| invalid(&bundle.source, format!("data: {e}")))?;
    let mut report = TestReport::default();
    let mut seen = std::collections::HashSet::new();
    for m in &index {
        for rule in &m.rules {
            if !rule.starts_with("test_") || rule.contains('.') || m.functions.contains(rule) {
                continue;
            }
            let name = format!("data.{}.{rule}", m.package.replace('/', "."));
            if !seen.insert(name.clone()) {
                continue; // a test defined in several bodies or files runs once
            }
            let mut e = engine.clone();
            e.set_input(regorus::Value::new_object());
            let start = Instant::now();
            let (passed, error) = match e.eval_rule(name.clone()) {
                Ok(regorus::Value::Bool(true)) => (true, None),
                Ok(regorus::Value::Undefined) => {
                    (false, Some("undefined (a condition did not hold)".into()))
                }
                Ok(other) => (false, Some(format!("evaluated to {other}, not true"))),
                Err(err) => (false, Some(err.to_string())),
            };
            report.results.push(TestResult {
                name,
                file: m.path.clone(),
                passed,
                error,
                duration_ns: start.elapsed().as_nanos() as u64,
            });
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::{Manifest, RegoModule};

    #[test]
    fn runs_tests_like_opa_test() {
        let module = |path: &str, text: &str| RegoModule {
            path: path.into(),
            text: text.into(),
        };
        let b = Bundle {
            name: "b".into(),
            source: "b".into(),
            manifest: Manifest::default(),
            modules: vec![
                module(
                    "p/policy.rego",
                    "package p\nallow if input.x == 1\nlimit := data.p.max\n",
                ),
                module(
                    "p/policy_test.rego",
                    "package p\ntest_allow if allow with input as {\"x\": 1}\ntest_deny if allow with input as {\"x\": 2}\ntest_value := 3\ntest_error if 1 / 0 == 1\ntest_data if limit == 5\ntest_helper(x) := x\n",
                ),
            ],
            data: serde_json::json!({"p": {"max": 5}}),
            digest: String::new(),
            signatures: None,
            files: vec![],
        };
        let r = run_tests(&b).unwrap();
        let outcome: Vec<(&str, bool)> = r
            .results
            .iter()
            .map(|t| (t.name.as_str(), t.passed))
            .collect();
        assert_eq!(
            outcome,
            [
                ("data.p.test_allow", true),
                ("data.p.test_data", true),
                ("data.p.test_deny", false),
                ("data.p.test_error", false),
                ("data.p.test_value", false),
            ]
        );
        assert_eq!((r.passed(), r.failed()), (2, 3));
        assert!(r.results[2].error.as_deref().unwrap().contains("undefined"));
        assert!(r.results[4].error.as_deref().unwrap().contains("not true"));
        let text = r.to_string();
        assert!(
            text.contains("data.p.test_deny: FAIL")
                && text.contains("PASS: 2/5")
                && text.contains("FAIL: 3/5"),
            "{text}"
        );
    }
}
