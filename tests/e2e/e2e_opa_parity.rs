//! gavel's policy library (`bundles/lib`, embedded as `data.gavel.lib`)
//! evaluates in gavel exactly as in OPA: a policy written and tested with
//! `opa test` means the same under gavel, and no input reads one way in one
//! engine and another way in the other (that difference would be a bypass).
//!
//! OPA is the real one, v1 embedded through PyPI `opa-golib-python-bindings`
//! in `.deps/venv` (scripts/setup installs it); `tests/opa_parity/
//! opa_parity.py` drives it. Missing bindings fail the test: they are part
//! of the setup, not optional.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::GAVEL;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `opa_parity.py` with `args`, its JSON answer.
fn opa(args: &[&str]) -> Value {
    let python = root().join(".deps/venv/bin/python");
    let out = Command::new(&python)
        .arg(root().join("tests/opa_parity/opa_parity.py"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/setup", python.display()));
    assert!(
        out.status.success(),
        "OPA (opa-golib-python-bindings in .deps/venv; run scripts/setup): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("opa_parity.py prints JSON")
}

/// `gavel test DIR`: each test rule's name and whether it passed, and the
/// whole output for messages.
fn gavel_test(dir: &Path) -> (BTreeMap<String, bool>, String) {
    // OPA's `--format json` shape: `package` + `.` + `name`; a test passed
    // when it has no `fail`, `error` or `skip` key.
    let out = Command::new(GAVEL)
        .args(["test", "--format", "json"])
        .arg(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let results: Vec<Value> = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("gavel test --format json: {e}\n{stdout}"));
    let results = results
        .iter()
        .map(|r| {
            let name = format!(
                "{}.{}",
                r["package"].as_str().unwrap(),
                r["name"].as_str().unwrap()
            );
            let passed = ["fail", "error", "skip"]
                .iter()
                .all(|k| r.get(*k).is_none_or(|v| v == false || v.is_null()));
            (name, passed)
        })
        .collect();
    (results, stdout)
}

/// The test rules under `prefix` of `bundles` (loaded together in OPA, the
/// library among them), and `gavel test` of `dir`: the same rules, all
/// passing in both; how many.
fn tests_agree(bundles: &[&str], dir: &str, prefix: &str) -> usize {
    let mut args = vec!["tests"];
    args.extend_from_slice(bundles);
    let opa: BTreeMap<String, Value> = serde_json::from_value(opa(&args)).unwrap();
    let opa: BTreeMap<String, Value> = opa
        .into_iter()
        .filter(|(name, _)| name.starts_with(prefix))
        .collect();
    let (gavel, text) = gavel_test(&root().join(dir));
    assert_eq!(
        opa.keys().collect::<Vec<_>>(),
        gavel.keys().collect::<Vec<_>>(),
        "the same test rules\n{text}"
    );
    for (name, result) in &opa {
        assert_eq!(result, &Value::Bool(true), "OPA: {name}");
        assert!(gavel[name], "gavel: {name}\n{text}");
    }
    opa.len()
}

#[test]
fn the_library_tests_pass_in_opa_and_in_gavel() {
    let n = tests_agree(&["bundles/lib"], "bundles/lib", "data.gavel.lib.");
    assert!(n >= 30, "{n} tests");
}

/// The example written on the library: under OPA with `bundles/lib` beside
/// it, under gavel with the embedded copy — the same results.
#[test]
fn the_filesystem_example_passes_in_opa_and_in_gavel() {
    let n = tests_agree(
        &["bundles/lib", "bundles/filesystem"],
        "bundles/filesystem",
        "data.mcp.filesystem.",
    );
    assert!(n >= 13, "{n} tests");
}

/// The ids of `r["id"] := …` in cases.rego, in order.
fn case_ids(src: &str) -> Vec<String> {
    src.lines()
        .filter_map(|l| l.strip_prefix("r[\"")?.split_once("\"]"))
        .map(|(id, _)| id.to_string())
        .collect()
}

#[test]
fn library_calls_have_the_same_value_in_opa_and_in_gavel() {
    let cases = root().join("tests/opa_parity/cases.rego");
    let src = std::fs::read_to_string(&cases).unwrap();
    let ids = case_ids(&src);
    assert!(ids.len() >= 60, "{ids:?}");
    let opa = opa(&["cases", "bundles/lib", "tests/opa_parity/cases.rego"]);
    let opa = opa.as_object().expect("data.parity.r is an object");
    // Hostile inputs are undefined on purpose; most cases have a value.
    let undefined = ids.iter().filter(|id| !opa.contains_key(*id)).count();
    assert!(
        undefined >= 8 && undefined * 3 < ids.len(),
        "{undefined} of {} undefined",
        ids.len()
    );
    // The same module in a bundle gavel tests, with one test per case
    // asserting OPA's answer; the library is gavel's embedded copy.
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("parity")).unwrap();
    std::fs::write(d.path().join(".manifest"), r#"{"roots": ["parity"]}"#).unwrap();
    std::fs::write(d.path().join("parity/cases.rego"), &src).unwrap();
    let mut tests = String::from("package parity\n\n");
    for (i, id) in ids.iter().enumerate() {
        match opa.get(id) {
            Some(v) => tests.push_str(&format!("test_case_{i} if r[{id:?}] == {v}\n")),
            None => tests.push_str(&format!("test_case_{i} if not {id:?} in object.keys(r)\n")),
        }
    }
    std::fs::write(d.path().join("parity/parity_test.rego"), &tests).unwrap();
    let (gavel, text) = gavel_test(d.path());
    assert_eq!(gavel.len(), ids.len(), "{text}");
    let differ: Vec<String> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| !gavel[&format!("data.parity.test_case_{i}")])
        .map(|(_, id)| format!("{id}: OPA says {:?}", opa.get(id)))
        .collect();
    assert!(
        differ.is_empty(),
        "gavel differs from OPA:\n{}\n{text}",
        differ.join("\n")
    );
}
