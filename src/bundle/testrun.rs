//! `gavel test`: runs a bundle's `test_*` rules like `opa test` — each with no
//! input (tests set their own with `with input as …`), passing when true.

use super::{Bundle, BundleError};

#[derive(Debug, Clone, serde::Serialize)]
pub struct TestResult {
    pub name: String,
    pub file: String,
    pub passed: bool,
    pub error: Option<String>,
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

pub fn run_tests(bundle: &Bundle) -> Result<TestReport, BundleError> {
    let err = |m: String| BundleError::Invalid {
        bundle: bundle.name.clone(),
        message: m,
    };
    let mut engine = regorus::Engine::new();
    engine.set_strict_builtin_errors(false);
    engine.set_rego_v0(bundle.manifest.rego_version == Some(0));
    for m in &bundle.modules {
        engine
            .add_policy(m.path.clone(), m.text.clone())
            .map_err(|e| err(format!("{}: {e}", m.path)))?;
    }
    let data: regorus::Value =
        serde_json::from_value(bundle.data.clone()).map_err(|e| err(e.to_string()))?;
    engine.add_data(data).map_err(|e| err(e.to_string()))?;
    let mut report = TestReport::default();
    for m in &bundle.modules {
        let Some(pkg) = super::reader::package_path(&m.text) else {
            continue;
        };
        let mut seen = std::collections::BTreeSet::new();
        for line in m.text.lines() {
            let Some(name) = line.strip_prefix("test_").map(|r| {
                let end = r
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(r.len());
                format!("test_{}", &r[..end])
            }) else {
                continue;
            };
            if !seen.insert(name.clone()) {
                continue;
            }
            let rule = format!("data.{}.{name}", pkg.replace('/', "."));
            let mut e = engine.clone();
            e.set_input(regorus::Value::new_object());
            let (passed, error) = match e.eval_rule(rule.clone()) {
                Ok(regorus::Value::Bool(true)) => (true, None),
                Ok(regorus::Value::Undefined) => {
                    (false, Some("undefined (a condition did not hold)".into()))
                }
                Ok(other) => (false, Some(format!("evaluated to {other}, not true"))),
                Err(e) => (false, Some(e.to_string())),
            };
            report.results.push(TestResult {
                name: rule,
                file: m.path.clone(),
                passed,
                error,
            });
        }
    }
    Ok(report)
}
