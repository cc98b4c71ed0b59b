//! `gavel test` as `opa test` users run it: the real binary on bundles
//! written to show each of OPA's runner semantics (duplicate test names,
//! `test_x[case]` rules, `--run`, `--verbose` with `print`, `--coverage`,
//! `--format json`, exit statuses), and on fixture files through the
//! example config's layered decisions.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::gavel_cmd;

fn bundle(dir: &Path, test_rego: &str) -> PathBuf {
    let b = dir.join("b");
    std::fs::create_dir_all(b.join("p")).unwrap();
    std::fs::write(b.join(".manifest"), r#"{"roots":["p"]}"#).unwrap();
    std::fs::write(
        b.join("p/p.rego"),
        "package p\n\nallow if {\n\tinput.x == 1\n}\n\ndeny if {\n\tinput.y == 2\n}\n",
    )
    .unwrap();
    std::fs::write(b.join("p/p_test.rego"), test_rego).unwrap();
    b
}

fn run(args: &[&str], b: &Path) -> (Option<i32>, String, String) {
    let mut all: Vec<&str> = args.to_vec();
    let path = b.to_str().unwrap();
    all.push(path);
    let Output {
        status,
        stdout,
        stderr,
    } = gavel_cmd(&all);
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// A failing second definition of a test name is its own FAIL (OPA's
/// `test_x#01`), not hidden behind a passing first; `test_x[case]` rules
/// pass by their cases and a failing case is named.
#[test]
fn duplicate_names_and_cases_are_reported_as_opa_does() {
    let d = tempfile::tempdir().unwrap();
    let b = bundle(
        d.path(),
        "package p\n\ntest_allow if allow with input as {\"x\": 1}\n\ntest_allow if allow with input as {\"x\": 2}\n\ntest_cases[n] if {\n\tsome n in [1, 2, 3]\n\tn != 2\n}\n",
    );
    let (code, out, err) = run(&["test"], &b);
    assert_eq!(code, Some(2), "{out}{err}");
    let file = b.join("p/p_test.rego");
    assert!(
        out.contains(&format!(
            "{}:5:\ndata.p.test_allow#01: FAIL (",
            file.display()
        )),
        "{out}"
    );
    assert!(
        !out.contains("data.p.test_allow: "),
        "a passing test is not listed: {out}"
    );
    assert!(
        out.contains("data.p.test_cases: FAIL (") && out.contains("\n  2: FAIL\n"),
        "{out}"
    );
    assert!(out.ends_with("PASS: 3/5\nFAIL: 2/5\n"), "{out}");
}

#[test]
fn run_verbose_and_json_as_opa() {
    let d = tempfile::tempdir().unwrap();
    let b = bundle(
        d.path(),
        "package p\n\ntest_allow if {\n\tprint(\"checking\", 1)\n\tallow with input as {\"x\": 1}\n}\n\ntest_deny if deny with input as {\"y\": 2}\n\ntodo_test_later if false\n",
    );
    // --run: the full rule path, unanchored.
    let (code, out, _) = run(&["test", "-v", "--run", "p.test_allow"], &b);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("data.p.test_allow: PASS (") && out.contains("\n  checking 1\n"),
        "{out}"
    );
    assert!(!out.contains("test_deny"), "{out}");
    // A skipped test makes the status 2 unless --exit-zero-on-skipped.
    let (code, out, _) = run(&["test"], &b);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("data.p.todo_test_later: SKIPPED\n") && out.contains("SKIPPED: 1/3"),
        "{out}"
    );
    let (code, out, _) = run(&["test", "-z", "--format", "json"], &b);
    assert_eq!(code, Some(0), "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["test_allow", "test_deny", "todo_test_later"]);
    assert_eq!(v[0]["package"], "data.p");
    assert_eq!(v[0]["location"]["row"], 3);
    assert_eq!(v[2]["skip"], true);
    // Go's []byte: the print output, base64.
    use base64::Engine as _;
    let output = base64::engine::general_purpose::STANDARD
        .decode(v[0]["output"].as_str().unwrap())
        .unwrap();
    assert_eq!(output, b"checking 1\n");
}

/// `--coverage --format json` prints OPA's coverage report; `--threshold`
/// fails the run when it is not met.
#[test]
fn coverage_report_and_threshold() {
    let d = tempfile::tempdir().unwrap();
    let b = bundle(
        d.path(),
        "package p\n\ntest_allow if allow with input as {\"x\": 1}\n",
    );
    let (code, out, _) = run(&["test", "--coverage", "--format", "json"], &b);
    assert_eq!(code, Some(0), "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let policy = b.join("p/p.rego");
    let f = &v["files"][policy.to_str().unwrap()];
    assert_eq!(
        f["covered"],
        serde_json::json!([{"start": {"row": 3}, "end": {"row": 4}}]),
        "{v}"
    );
    assert_eq!(
        f["not_covered"],
        serde_json::json!([{"start": {"row": 7}, "end": {"row": 8}}]),
        "{v}"
    );
    assert_eq!(
        (f["covered_lines"].as_u64(), f["not_covered_lines"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(v["coverage"], 60.0);
    let (code, out, _) = run(&["test", "--coverage"], &b);
    assert_eq!(code, Some(0));
    assert!(out.contains("COVERAGE: 60.00% (3/5 lines)"), "{out}");
    let (code, _, err) = run(&["test", "--threshold", "80"], &b);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("Code coverage threshold not met: got 60.00 instead of 80.00"),
        "{err}"
    );
}

#[test]
fn a_bundle_that_does_not_load_is_status_1() {
    let d = tempfile::tempdir().unwrap();
    let b = bundle(d.path(), "package p\n\ntest_x if {\n");
    let (code, _, err) = run(&["test"], &b);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("p_test.rego"), "{err}");
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The example config in `dir` (its relative paths linked to the repo's),
/// with the tests' evaluation limit (`TEST_EVAL_TIMEOUT`, which says why)
/// instead of its wall-clock 100 ms, which a loaded machine can run a
/// decision of its layers past.
fn example_config(dir: &Path) -> PathBuf {
    for name in ["bundles", "demo-data", ".deps"] {
        std::os::unix::fs::symlink(root().join(name), dir.join(name)).unwrap();
    }
    let example = std::fs::read_to_string(root().join("servers.toml")).unwrap();
    let limit = "eval_timeout = \"100ms\"";
    assert!(
        example.contains(limit),
        "the example's eval_timeout changed"
    );
    let config = dir.join("servers.toml");
    let ours = format!(
        "eval_timeout = {:?}",
        crate::common::policy::TEST_EVAL_TIMEOUT
    );
    std::fs::write(&config, example.replace(limit, &ours)).unwrap();
    config
}

/// The fixtures shipped for the example config pass through each server's
/// whole layered decision.
#[test]
fn example_fixtures_pass_through_the_layered_decision() {
    let d = tempfile::tempdir().unwrap();
    let config = example_config(d.path());
    for server in ["time", "filesystem"] {
        let fixture = root().join(format!("fixtures/{server}.yaml"));
        let out = gavel_cmd(&[
            "test",
            "--config",
            config.to_str().unwrap(),
            "--server",
            server,
            fixture.to_str().unwrap(),
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{server}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.starts_with("PASS: "), "{stdout}");
    }
}

/// A wrong expectation fails with the decision actually made; a fixture
/// with an unknown field is refused naming it.
#[test]
fn fixture_failures_show_the_actual_decision() {
    let d = tempfile::tempdir().unwrap();
    let config = example_config(d.path());
    let wrong = d.path().join("wrong.yaml");
    std::fs::write(
        &wrong,
        "cases:\n  - name: refused in truth\n    input:\n      action: {tool: get_current_time}\n      user: {groups: [marketing]}\n    expect: {allow: true}\n",
    )
    .unwrap();
    let args = |f: &Path| -> Vec<String> {
        [
            "test",
            "--config",
            config.to_str().unwrap(),
            "--server",
            "time",
            f.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    };
    let a = args(&wrong);
    let out = gavel_cmd(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("wrong.yaml#refused in truth: FAIL ("),
        "{stdout}"
    );
    assert!(
        stdout.contains("\"reasons\":[\"user_not_in_allowed_group\"]"),
        "{stdout}"
    );
    let typo = d.path().join("typo.yaml");
    std::fs::write(
        &typo,
        "cases:\n  - name: t\n    input: {action: {tol: x}}\n    expect: {allow: true}\n",
    )
    .unwrap();
    let a = args(&typo);
    let out = gavel_cmd(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("typo.yaml") && stderr.contains("unknown field `tol`"),
        "{stderr}"
    );
}

/// Fixture runs write neither the configured decision log nor the
/// configured state store (limits are charged in a private one), and the
/// cases of a file share that private store as successive calls.
#[test]
fn fixtures_leave_the_configured_log_and_state_alone() {
    let d = tempfile::tempdir().unwrap();
    let bundles = root().join("bundles");
    std::fs::write(
        d.path().join("servers.toml"),
        crate::common::policy::with_test_eval_timeout(&format!(
            "[policy]\nshared_bundles = [{:?}]\n[log]\ndecisions = \"decisions.jsonl\"\n[state]\npath = \"state.sqlite\"\n[servers.time]\ncommand = \"true\"\nbundle = {:?}\n",
            bundles.join("workflow"),
            bundles.join("time")
        )),
    )
    .unwrap();
    std::fs::write(
        d.path().join("f.yaml"),
        "cases:\n  - name: one\n    input: {action: {tool: get_current_time}}\n    expect: {allow: true}\n  - name: two\n    input: {action: {tool: get_current_time}}\n    expect: {allow: true}\n",
    )
    .unwrap();
    let config = d.path().join("servers.toml");
    let fixture = d.path().join("f.yaml");
    let out = gavel_cmd(&[
        "test",
        "--config",
        config.to_str().unwrap(),
        "--server",
        "time",
        "-v",
        fixture.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("f.yaml#two: PASS ("), "{stdout}");
    assert!(
        !d.path().join("decisions.jsonl").exists(),
        "no decision log written"
    );
    assert!(
        !d.path().join("state.sqlite").exists(),
        "the configured store untouched"
    );
}
