//! The runner's semantics, each against what `opa test` does (cases from
//! OPA's `v1/tester/runner_test.go`, `TestRun`).

use super::*;
use crate::bundle::{Manifest, RegoModule};

pub(super) fn bundle(files: &[(&str, &str)]) -> Bundle {
    Bundle {
        name: "b".into(),
        source: "b".into(),
        manifest: Manifest::default(),
        modules: files
            .iter()
            .map(|(p, t)| RegoModule {
                path: p.to_string(),
                text: t.to_string(),
            })
            .collect(),
        data: serde_json::json!({"p": {"max": 5}}),
        digest: String::new(),
        signatures: None,
        files: vec![],
    }
}

fn outcomes(r: &TestReport) -> Vec<(String, Outcome)> {
    r.results
        .iter()
        .map(|t| (t.full_name(), t.outcome))
        .collect()
}

/// OPA's `TestRun` modules (runner_test.go), with its expected outcomes:
/// every definition of a duplicated name is its own test, `test_x[case]`
/// rules pass or fail by their cases. (Long: OPA's table, kept whole so it
/// can be read against runner_test.go.)
#[test]
fn runs_each_definition_and_each_case_as_opa_does() {
    let b = bundle(&[
        ("a.rego", "package foo\nallow if { true }\n"),
        (
            "a_test.rego",
            "package foo\ntest_pass if { allow }\nnon_test if { true }\ntest_fail if { not allow }\ntest_fail_non_bool = 100\ntest_err if { conflict }\nconflict = true\nconflict = false\ntest_duplicate if { false }\ntest_duplicate if { true }\ntest_duplicate if { true }\ntodo_test_skip if { true }\n",
        ),
        ("b_test.rego", "package bar\ntest_duplicate if { true }\n"),
        (
            "c_test.rego",
            "package baz\na.b.test_duplicate if { false }\na.b.test_duplicate if { true }\na.b.test_duplicate if { true }\n",
        ),
        (
            "d_test.rego",
            "package test\na[0] := 1\ntest_pass if { true }\n",
        ),
        (
            "e_test.rego",
            "package qux\ntest_cases_pass[x] if { some x in [\"foo\", \"bar\"] }\ntest_cases_fail[x] if { some x in [\"foo\", \"bar\"]; false }\ntest_cases_partial_fail[x] if { some x in [\"foo\", \"bar\", \"baz\"]; x != \"bar\" }\ntest_cases_nested[x][y] if { some x in [\"foo\", \"bar\"]; some y in [\"do\", \"re\", \"mi\"]; not f(x, y) }\nf(x, y) if { x == \"foo\"; y == \"re\" }\n",
        ),
    ]);
    let r = run_tests(&b).unwrap();
    use Outcome::*;
    let want = [
        ("data.foo.test_pass", Pass),
        ("data.foo.test_fail", Fail),
        ("data.foo.test_fail_non_bool", Fail),
        ("data.foo.test_err", Error),
        ("data.foo.test_duplicate", Fail),
        ("data.foo.test_duplicate#01", Pass),
        ("data.foo.test_duplicate#02", Pass),
        ("data.foo.todo_test_skip", Skip),
        ("data.bar.test_duplicate", Pass),
        ("data.baz.a.b.test_duplicate", Fail),
        ("data.baz.a.b[\"test_duplicate#01\"]", Pass),
        ("data.baz.a.b[\"test_duplicate#02\"]", Pass),
        ("data.test.test_pass", Pass),
        ("data.qux.test_cases_pass", Pass),
        ("data.qux.test_cases_fail", Fail),
        ("data.qux.test_cases_partial_fail", Fail),
        ("data.qux.test_cases_nested", Fail),
    ];
    let got = outcomes(&r);
    let want: Vec<(String, Outcome)> = want.iter().map(|(n, o)| (n.to_string(), *o)).collect();
    assert_eq!(got, want);
    let case = |test: &str| -> Vec<(String, bool)> {
        let t = r.results.iter().find(|t| t.full_name() == test).unwrap();
        let mut all = Vec::new();
        outcome::walk(&t.sub_results, 0, &mut all);
        all.iter()
            .map(|(d, s)| (format!("{}{}", "-".repeat(*d), s.name), s.fail))
            .collect()
    };
    let s = |v: &[(&str, bool)]| -> Vec<(String, bool)> {
        v.iter().map(|(n, f)| (n.to_string(), *f)).collect()
    };
    assert_eq!(
        case("data.qux.test_cases_pass"),
        s(&[("bar", false), ("foo", false)])
    );
    assert_eq!(
        case("data.qux.test_cases_fail"),
        s(&[("bar", true), ("foo", true)])
    );
    assert_eq!(
        case("data.qux.test_cases_partial_fail"),
        s(&[("bar", true), ("baz", false), ("foo", false)])
    );
    assert_eq!(
        case("data.qux.test_cases_nested"),
        s(&[
            ("bar", false),
            ("-do", false),
            ("-mi", false),
            ("-re", false),
            ("foo", true),
            ("-do", false),
            ("-mi", false),
            ("-re", true),
        ])
    );
    // Counted as OPA's PrettyReporter counts: leaf cases instead of their test.
    let c = r.counts();
    assert_eq!((c.pass, c.fail, c.skip, c.error), (16, 8, 1, 1), "{c:?}");
}

/// The other kinds of test rules: `contains` (a set, never `true`), a
/// function (OPA: "used as reference, not called"), values other than
/// `true`, a case the body never reaches, and ref heads.
#[test]
fn judges_every_kind_of_test_rule_as_opa() {
    let b = bundle(&[(
        "t_test.rego",
        "package p\ncases := [{\"n\": \"a\", \"x\": 1}, {\"n\": \"b\", \"x\": 2}]\ntest_set contains tc.n if { some tc in cases }\ntest_f(x) := x\ntest_false := false\ntest_undefined if { input.nothing }\ntest_obj[tc.n] if { some tc in cases; tc.x == 1 }\ntest_none[tc.n] if { some tc in cases; tc.x > 5 }\ntest_ground.y if { true }\ntest_data if { data.p.max == 5 }\n",
    )]);
    let r = run_tests(&b).unwrap();
    use Outcome::*;
    let want = [
        ("data.p.test_set", Fail),
        ("data.p.test_f", Error),
        ("data.p.test_false", Fail),
        ("data.p.test_undefined", Fail),
        ("data.p.test_obj", Fail),
        ("data.p.test_none", Fail),
        ("data.p.test_ground", Fail),
        ("data.p.test_data", Pass),
    ];
    let want: Vec<(String, Outcome)> = want.iter().map(|(n, o)| (n.to_string(), *o)).collect();
    assert_eq!(outcomes(&r), want);
    assert!(r.results[1].why().contains("used as reference, not called"));
    // test_obj: case a produced, b reached (its `some`) but not produced.
    let obj = &r.results[4].sub_results;
    assert!(!obj["a"].fail && obj["b"].fail, "{obj:?}");
}

#[test]
fn run_filter_matches_the_full_rule_path() {
    let b = bundle(&[
        (
            "a_test.rego",
            "package foo\ntest_pass if { true }\ntest_fail if { false }\n",
        ),
        ("b_test.rego", "package bar\ntest_pass if { true }\n"),
    ]);
    let names = |re: &str| -> Vec<String> {
        let opts = TestOptions {
            run: Some(regex::Regex::new(re).unwrap()),
            ..Default::default()
        };
        let r = run_tests_with(&b, &opts).unwrap();
        r.results.iter().map(|t| t.full_name()).collect()
    };
    // OPA's TestRunWithFilterRegex cases: package, full path, unanchored.
    assert_eq!(names("bar"), ["data.bar.test_pass"]);
    assert_eq!(names("data.foo.test_pass"), ["data.foo.test_pass"]);
    assert_eq!(names("(?i)DATA.BAR"), ["data.bar.test_pass"]);
    assert_eq!(
        names("test_pass"),
        ["data.foo.test_pass", "data.bar.test_pass"]
    );
    assert!(names("^$").is_empty());
}

/// `print` output is captured per test, failed or passed, without
/// regorus's location prefix (OPA's TestRunnerPrintOutput).
#[test]
fn captures_print_output_per_test() {
    let b = bundle(&[(
        "t.rego",
        "package t\ntest_a if { print(\"A\") }\ntest_b if { false; print(\"B\") }\ntest_c if { print(\"C\", 1); false }\n",
    )]);
    let r = run_tests(&b).unwrap();
    let out: Vec<&str> = r.results.iter().map(|t| t.output.as_str()).collect();
    assert_eq!(out, ["A\n", "", "C 1\n"]);
    // Shown for the failing test; every test's with --verbose.
    let text = report::pretty(&r, false);
    assert!(
        text.contains("data.t.test_c: FAIL") && text.contains("\n  C 1\n"),
        "{text}"
    );
    assert!(!text.contains("  A\n"), "{text}");
    assert!(report::pretty(&r, true).contains("data.t.test_a: PASS"));
}

/// Coverage of a bundle small enough to count by hand (OPA's rows: rule
/// heads and statements).
#[test]
fn coverage_counts_rows_as_opa() {
    let b = bundle(&[
        (
            "p.rego",
            "package p\n\nallow if {\n  input.x == 1\n}\n\ndeny if {\n  input.y == 2\n}\n",
        ),
        (
            "p_test.rego",
            "package p\ntest_allow if allow with input as {\"x\": 1}\n",
        ),
    ]);
    let opts = TestOptions {
        coverage: true,
        ..Default::default()
    };
    let r = run_tests_with(&b, &opts).unwrap();
    assert_eq!(r.counts().pass, 1);
    let c = r.coverage.report();
    let f = &c.files["b/p.rego"];
    // Rows 3 (head, its body held) and 4 covered; 7 and 8 (deny) not.
    let rows = |v: &[coverage::Range]| -> Vec<(u32, u32)> {
        v.iter().map(|r| (r.start.row, r.end.row)).collect()
    };
    assert_eq!(rows(&f.covered), [(3, 4)]);
    assert_eq!(rows(&f.not_covered), [(7, 8)]);
    assert_eq!(
        (f.covered_lines, f.not_covered_lines, f.coverage),
        (2, 2, 50.0)
    );
    let t = &c.files["b/p_test.rego"];
    assert_eq!((t.covered_lines, t.not_covered_lines), (1, 0));
    assert_eq!((c.covered_lines, c.not_covered_lines), (3, 2));
    assert!((c.coverage - 60.0).abs() < 1e-9);
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(
        json["files"]["b/p.rego"]["not_covered"][0]["start"]["row"],
        7
    );
    assert!(report::coverage_text(&c).contains("b/p.rego: 50.00% (2/4), not covered: 7-8"));
}

/// The text and JSON shapes of `opa test` (`PrettyReporter`, `JSONReporter`).
#[test]
fn reports_in_opa_shapes() {
    let b = bundle(&[(
        "t_test.rego",
        "package t\ntest_ok if { true }\ntest_bad if { false }\ntodo_test_later if { false }\ntest_c[x] if { some x in [\"u\", \"v\"]; x == \"u\" }\n",
    )]);
    let r = run_tests(&b).unwrap();
    let text = report::pretty(&r, false);
    assert!(
        text.contains("b/t_test.rego:3:\ndata.t.test_bad: FAIL ("),
        "{text}"
    );
    assert!(text.contains("data.t.todo_test_later: SKIPPED\n"), "{text}");
    assert!(
        text.contains("data.t.test_c: FAIL (") && text.contains("\n  v: FAIL\n"),
        "{text}"
    );
    assert!(!text.contains("u: PASS"), "{text}");
    assert!(
        text.ends_with(&format!(
            "{}\nPASS: 2/5\nFAIL: 2/5\nSKIPPED: 1/5\n",
            "-".repeat(80)
        )),
        "{text}"
    );
    let v: serde_json::Value = serde_json::from_str(&report::json(&r)).unwrap();
    assert_eq!(v[1]["name"], "test_bad");
    assert_eq!(v[1]["package"], "data.t");
    assert_eq!(v[1]["fail"], true);
    assert_eq!(v[1]["location"]["row"], 3);
    assert!(v[0].get("fail").is_none() && v[0]["duration"].is_u64());
    assert_eq!(v[2]["skip"], true);
    assert_eq!(v[3]["sub_results"]["v"]["fail"], true);
}

/// Rego v0: `p[x] { }` is a partial set (FAIL, as in OPA), `p[x] = true {
/// }` a partial object whose cases are found by a v0 probe, and chained
/// bodies are separate tests.
#[test]
fn rego_v0_bundles_get_the_same_rules() {
    let mut b = bundle(&[(
        "t_test.rego",
        "package t\ntest_set[x] { x := 1 }\ntest_obj[x] = true { x := [\"a\", \"b\"][_]; x == \"a\" }\ntest_dup { false }\ntest_dup { true }\ntest_chained { true } {\n  false\n}\n",
    )]);
    b.manifest.rego_version = Some(0);
    let r = run_tests(&b).unwrap();
    use Outcome::*;
    let want: Vec<(String, Outcome)> = [
        ("data.t.test_set", Fail),
        ("data.t.test_obj", Fail),
        ("data.t.test_dup", Fail),
        ("data.t.test_dup#01", Pass),
        // OPA's parser: each chained body is a rule of its own.
        ("data.t.test_chained", Pass),
        ("data.t.test_chained#01", Fail),
    ]
    .iter()
    .map(|(n, o)| (n.to_string(), *o))
    .collect();
    assert_eq!(outcomes(&r), want);
    assert!(r.results[1].sub_results["b"].fail && !r.results[1].sub_results["a"].fail);
}

/// A test past its time limit is an ERROR (OPA: a cancelled evaluation),
/// and the run goes on with the next test.
#[test]
fn a_runaway_test_is_an_error_and_the_run_goes_on() {
    let b = bundle(&[(
        "t_test.rego",
        "package t\nn := numbers.range(1, 2000)\ntest_slow if { count({[a, b, c] | some a in n; some b in n; some c in n; false}) == 0 }\ntest_next if { true }\n",
    )]);
    let opts = TestOptions {
        timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let r = run_tests_with(&b, &opts).unwrap();
    assert_eq!(r.results[0].outcome, Outcome::Error);
    assert_eq!(
        r.results[0].error.as_ref().unwrap().code,
        "eval_cancel_error"
    );
    assert_eq!(r.results[1].outcome, Outcome::Pass);
}
