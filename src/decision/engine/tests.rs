use super::*;
use crate::bundle::{BundleLimits, load_bundle};
use serde_json::json;
use std::sync::Arc;

pub(super) fn write_bundle(
    dir: &std::path::Path,
    manifest: Value,
    rego: &str,
    data: Option<Value>,
) -> Arc<Bundle> {
    std::fs::create_dir_all(dir.join("p")).unwrap();
    std::fs::write(dir.join(".manifest"), manifest.to_string()).unwrap();
    std::fs::write(dir.join("p/policy.rego"), rego).unwrap();
    if let Some(d) = data {
        std::fs::write(dir.join("p/data.json"), d.to_string()).unwrap();
    }
    Arc::new(load_bundle(dir, &BundleLimits::default()).unwrap())
}

/// Generous (`config::TEST_EVAL_TIMEOUT`): only `slow_policy_times_out`
/// is about the limit, and it sets its own.
pub(super) fn opts() -> EngineOptions {
    EngineOptions {
        eval_timeout: crate::config::TEST_EVAL_TIMEOUT,
        strict_input: false,
    }
}

pub(super) fn one(rego: &str, data: Option<Value>) -> (tempfile::TempDir, PolicyEngine) {
    let d = tempfile::tempdir().unwrap();
    let b = write_bundle(
        d.path(),
        json!({"revision": "7", "roots": ["p"]}),
        rego,
        data,
    );
    let e = PolicyEngine::build("srv", vec![b], &opts()).unwrap();
    (d, e)
}

const POLICY: &str = r#"package p

default decision := {"allow": false, "reasons": ["not_read_only"], "remediation": "use a read tool", "appeal_path": "https://appeal.example.test"}

decision := {"allow": true} if startswith(input.action.tool, "read")

default visible := true
visible := false if input.action.tool == "secret_tool"
"#;

#[test]
fn allow_deny_reasons_catalog_and_version() {
    let (_d, e) = one(
        POLICY,
        Some(json!({"reasons": {"not_read_only": "only read tools are allowed"}})),
    );
    let ok = e.decide(&json!({"action": {"tool": "read_file"}})).unwrap();
    assert!(ok.decision.allow);
    let no = e
        .decide(&json!({"action": {"tool": "write_file"}}))
        .unwrap();
    assert!(!no.decision.allow);
    assert_eq!(no.decision.reasons, vec!["not_read_only"]);
    assert_eq!(
        no.decision.reason_texts["not_read_only"],
        "only read tools are allowed"
    );
    assert_eq!(
        no.decision.appeal_path.as_deref(),
        Some("https://appeal.example.test")
    );
    assert_eq!(no.decision.matched_rules, vec!["data.p.decision"]);
    assert!(e.policy_version().contains("@7"));
    assert!(e.visible(&json!({"action": {"tool": "x"}})).unwrap());
    assert!(
        !e.visible(&json!({"action": {"tool": "secret_tool"}}))
            .unwrap()
    );
}

#[test]
fn undefined_wrong_shape_and_errors_fail_closed_with_distinct_codes() {
    let (_d, e) = one(
        "package p\ndecision := {\"allow\": true} if input.x == 1\n",
        None,
    );
    let u = e.decide(&json!({})).unwrap();
    assert!(!u.decision.allow);
    assert_eq!(u.decision.reasons, vec!["no_decision"]);
    let (_d, e) = one("package p\ndecision := \"yes\"\n", None);
    assert_eq!(
        e.decide(&json!({})).err().unwrap().reason_code(),
        "policy_bad_decision"
    );
    let (_d, e) = one("package p\ndecision := {\"allow\": \"true\"}\n", None);
    assert_eq!(
        e.decide(&json!({})).err().unwrap().reason_code(),
        "policy_bad_decision"
    );
    // Conflicting values for a complete rule are an evaluation error.
    let (_d, e) = one(
        "package p\ndecision := {\"allow\": true} if input.a\ndecision := {\"allow\": false} if input.b\n",
        None,
    );
    assert_eq!(
        e.decide(&json!({"a": true, "b": true}))
            .err()
            .unwrap()
            .reason_code(),
        "policy_error"
    );
}

#[test]
fn slow_policy_times_out() {
    let d = tempfile::tempdir().unwrap();
    let b = write_bundle(
        d.path(),
        json!({"roots": ["p"]}),
        "package p\n# CPU-bound, small memory: 10^10 pairs tried one at a time, none matches.\nslow if {\n\tsome a in numbers.range(1, 100000)\n\tsome b in numbers.range(1, 100000)\n\ta * b == -1\n}\ndecision := {\"allow\": true} if not slow\n",
        None,
    );
    let e = PolicyEngine::build(
        "srv",
        vec![b],
        &EngineOptions {
            eval_timeout: Duration::from_millis(20),
            strict_input: false,
        },
    )
    .unwrap();
    let err = e.decide(&json!({})).err().unwrap();
    assert_eq!(err.reason_code(), "policy_timeout", "{err}");
}

#[test]
fn layers_across_bundles_and_overlapping_roots() {
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let res = write_bundle(
        d1.path(),
        json!({"roots": ["p"], "metadata": {"gavel": {"layer": "resource"}}}),
        "package p\ndecision := {\"allow\": false, \"reasons\": [\"outside_scope\"]}\n",
        None,
    );
    std::fs::create_dir_all(d2.path().join("o")).unwrap();
    std::fs::write(
        d2.path().join(".manifest"),
        json!({"roots": ["o"], "metadata": {"gavel": {"layer": "override"}}}).to_string(),
    )
    .unwrap();
    std::fs::write(
        d2.path().join("o/o.rego"),
        "package o\ndecision := {\"waive\": [\"outside_scope\"]} if input.user.id == \"ops\"\n",
    )
    .unwrap();
    let ovr = Arc::new(load_bundle(d2.path(), &BundleLimits::default()).unwrap());
    let e = PolicyEngine::build("srv", vec![res.clone(), ovr.clone()], &opts()).unwrap();
    let waived = e.decide(&json!({"user": {"id": "ops"}})).unwrap();
    assert!(waived.decision.allow);
    assert!(waived.decision.matched_rules[0].starts_with("override:"));
    assert!(
        !e.decide(&json!({"user": {"id": "dev"}}))
            .unwrap()
            .decision
            .allow
    );
    let err = PolicyEngine::build("srv", vec![res.clone(), res], &opts())
        .err()
        .unwrap();
    assert!(err.to_string().contains("overlapping roots"), "{err}");
}

#[test]
fn lint_errors_refuse_the_build() {
    let d = tempfile::tempdir().unwrap();
    let b = write_bundle(
        d.path(),
        json!({"roots": ["p"]}),
        "package p\ndecision := {\"allow\": true} if {\n  io.jwt.decode(\"x\")\n}\n",
        None,
    );
    let err = PolicyEngine::build("srv", vec![b], &opts()).err().unwrap();
    assert!(
        err.to_string().contains("p/policy.rego:3") && err.to_string().contains("io.jwt.decode"),
        "{err}"
    );
}

#[test]
fn the_decision_rule_must_be_known() {
    let d = tempfile::tempdir().unwrap();
    let b = write_bundle(
        d.path(),
        json!({"roots": ["p", "q"]}),
        "package p\ndecision := {\"allow\": true}\n",
        None,
    );
    let err = PolicyEngine::build("srv", vec![b], &opts()).err().unwrap();
    assert!(err.to_string().contains("metadata.gavel.decision"), "{err}");
}

fn bundle_at(dir: &std::path::Path, root: &str, gavel: Value, rego: &str) -> Arc<Bundle> {
    std::fs::create_dir_all(dir.join(root)).unwrap();
    std::fs::write(
        dir.join(".manifest"),
        json!({"revision": "1.0", "roots": [root], "metadata": {"gavel": gavel}}).to_string(),
    )
    .unwrap();
    std::fs::write(dir.join(root).join("p.rego"), rego).unwrap();
    Arc::new(load_bundle(dir, &BundleLimits::default()).unwrap())
}

#[test]
fn the_engine_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<PolicyEngine>();
}

#[test]
fn decision_is_complete_and_withhold_comes_from_denying_layers() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let id = bundle_at(
        &d1.path().join("id"),
        "id",
        json!({"layer": "identity", "disclosure": "withhold"}),
        "package id\ndecision := {\"allow\": input.user.id != \"mallory\", \"reasons\": [\"blocked_user\"], \"audit_required\": true}\n",
    );
    let fs = bundle_at(
        &d2.path().join("fs"),
        "fs",
        json!({}),
        "package fs\ndecision := {\"allow\": false, \"reasons\": [\"not_allowed\"]} if input.action.tool == \"rm\"\ndecision := {\"allow\": true} if input.action.tool != \"rm\"\n",
    );
    let e = PolicyEngine::build("srv", vec![id, fs], &opts()).unwrap();
    assert_eq!(e.policy_version(), "id@1.0,fs@1.0");
    let layers: Vec<Layer> = e.bundle_info().iter().map(|b| b.layer).collect();
    assert_eq!(layers, [Layer::Identity, Layer::Resource]);
    // Only the resource layer denies: its disclosure (explain) applies.
    let out = e
        .decide(&json!({"user": {"id": "ann"}, "action": {"tool": "rm"}}))
        .unwrap();
    let d = &out.decision;
    assert!(!d.allow);
    assert_eq!(d.reasons, ["not_allowed"]);
    assert_eq!(d.matched_rules, ["data.fs.decision"]);
    assert_eq!(d.disclosure, Disclosure::Explain);
    assert!(d.audit_required, "audit_required from any layer");
    assert_eq!(d.policy_version.as_deref(), Some("id@1.0,fs@1.0"));
    // The identity layer denies and withholds.
    let d = e
        .decide(&json!({"user": {"id": "mallory"}, "action": {"tool": "ls"}}))
        .unwrap()
        .decision;
    assert_eq!(d.disclosure, Disclosure::Withhold);
    assert_eq!(d.matched_rules, ["data.id.decision"]);
    assert!(
        e.decide(&json!({"user": {"id": "ann"}, "action": {"tool": "ls"}}))
            .unwrap()
            .decision
            .allow
    );
    // Neither bundle has a visible rule: everything is listed.
    assert!(e.visible(&json!({})).unwrap());
}

#[test]
fn shape_and_build_refusals() {
    let d = tempfile::tempdir().unwrap();
    let b = bundle_at(
        d.path(),
        "p",
        json!({}),
        "package p\ndecision := {\"allow\": false, \"waive\": [\"x\"]}\n",
    );
    let e = PolicyEngine::build("srv", vec![b], &opts()).unwrap();
    let err = e.decide(&json!({})).unwrap_err();
    assert_eq!(err.reason_code(), "policy_bad_decision");
    assert!(
        err.to_string()
            .contains("waive is only allowed in an override layer"),
        "{err}"
    );

    let d = tempfile::tempdir().unwrap();
    let b = bundle_at(d.path(), "p", json!({}), "package p\nallow := true\n");
    let err = PolicyEngine::build("srv", vec![b], &opts()).unwrap_err();
    assert_eq!(err.reason_code(), "policy_unavailable");
    assert!(
        err.to_string()
            .contains("no module defines the decision rule data.p.decision"),
        "{err}"
    );

    let d = tempfile::tempdir().unwrap();
    let b = bundle_at(
        d.path(),
        "p",
        json!({"layer": "sideways"}),
        "package p\ndecision := {\"allow\": true}\n",
    );
    assert!(
        PolicyEngine::build("srv", vec![b], &opts())
            .unwrap_err()
            .to_string()
            .contains("unknown layer")
    );

    let d = tempfile::tempdir().unwrap();
    let b = bundle_at(
        d.path(),
        "p",
        json!({"disclosure": "maybe"}),
        "package p\ndecision := {\"allow\": true}\n",
    );
    assert!(
        PolicyEngine::build("srv", vec![b], &opts())
            .unwrap_err()
            .to_string()
            .contains("disclosure")
    );
}

#[test]
fn explicit_decision_path_and_rego_v0() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("a/b")).unwrap();
    std::fs::write(
        d.path().join(".manifest"),
        json!({"roots": ["a", "c"], "rego_version": 0, "metadata": {"gavel": {"decision": "a/b/verdict"}}}).to_string(),
    )
    .unwrap();
    std::fs::write(
        d.path().join("a/b/p.rego"),
        "package a.b\nverdict = {\"allow\": true} { input.ok }\nvisible { input.ok }\n",
    )
    .unwrap();
    let b = Arc::new(load_bundle(d.path(), &BundleLimits::default()).unwrap());
    let e = PolicyEngine::build("srv", vec![b], &opts()).unwrap();
    assert!(e.decide(&json!({"ok": true})).unwrap().decision.allow);
    let no = e.decide(&json!({})).unwrap().decision;
    assert_eq!(
        (no.allow, no.reasons.clone()),
        (false, vec!["no_decision".to_string()])
    );
    assert!(e.visible(&json!({"ok": true})).unwrap());
    assert!(
        !e.visible(&json!({})).unwrap(),
        "undefined visible hides the tool"
    );
}

/// OPA semantics for an undefined right-hand side: `_ := data.x[input.y]`
/// makes the body fail, so an unknown key denies. regorus's RVM (0.14.1)
/// evaluates such a body as true — a fail-open — which is why gavel
/// decides on the interpreter only (ARCHITECTURE.md, "Invariants").
#[test]
fn an_undefined_assignment_fails_the_rule() {
    let (_d, e) = one(
        "package p\ndecision := {\"allow\": true} if { _ := data.p.allowed[input.user.id] }\ndefault decision := {\"allow\": false, \"reasons\": [\"not_allowed\"]}\n",
        Some(json!({"allowed": {"alice": true}})),
    );
    assert!(
        e.decide(&json!({"user": {"id": "alice"}}))
            .unwrap()
            .decision
            .allow
    );
    let no = e
        .decide(&json!({"user": {"id": "mallory"}}))
        .unwrap()
        .decision;
    assert!(!no.allow);
    assert_eq!(no.reasons, vec!["not_allowed"]);
}

#[test]
fn log_rules_evaluate_only_the_rules_a_bundle_defines() {
    let with_log = |log: &str| {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("p/log")).unwrap();
        std::fs::write(d.path().join("p/log/log.rego"), log).unwrap();
        let b = write_bundle(
            d.path(),
            json!({"revision": "1", "roots": ["p"]}),
            "package p\ndecision := {\"allow\": true}\n",
            None,
        );
        (d, PolicyEngine::build("srv", vec![b], &opts()).unwrap())
    };
    let event = json!({"input": {"action": {"tool": "t"}}});
    // Only `mask`: no `drop` rule to evaluate (that would be an error).
    let (_d, e) = with_log("package p.log\nmask contains \"/input/user/id\"\n");
    assert_eq!(
        e.log_rules(&event).unwrap(),
        (false, vec![json!("/input/user/id")])
    );
    // Only `drop`.
    let (_d, e) = with_log("package p.log\ndrop if input.input.action.tool == \"t\"\n");
    assert_eq!(e.log_rules(&event).unwrap(), (true, vec![]));
    // A failing rule is an error (the caller refuses the request).
    let (_d, e) = with_log("package p.log\ndrop := true\ndrop := false\n");
    assert!(e.log_rules(&event).is_err());
}

#[test]
fn builtin_errors_are_undefined_as_in_opa_so_the_default_applies() {
    // OPA's non-strict builtin errors: `to_number("x")` makes the expression
    // undefined (no error), so the rule does not apply and the default does.
    let (_d, e) = one(
        "package p\ndefault decision := {\"allow\": false, \"reasons\": [\"default\"]}\ndecision := {\"allow\": true} if to_number(input.action.args.n) > 0\n",
        None,
    );
    let bad = e
        .decide(&json!({"action": {"args": {"n": "x"}}}))
        .expect("a builtin error is not an evaluation error");
    assert!(!bad.decision.allow);
    assert_eq!(bad.decision.reasons, vec!["default"]);
    let good = e.decide(&json!({"action": {"args": {"n": "5"}}})).unwrap();
    assert!(good.decision.allow);
}

/// The direct conversion builds what regorus's own deserializer does, for
/// every kind of JSON value and every kind of number at its edges.
#[test]
fn to_regorus_builds_what_regorus_deserializes() {
    use serde::Deserialize;
    let mut cases = crate::json_out::edge_values();
    cases.push(json!([1, "a", [null, {"b": [2.5]}], {}]));
    cases.push(json!({"m": -7, "é": "x", "deep": [[[{"k": [0.5, -3]}]]]}));
    for v in cases {
        let want = regorus::Value::deserialize(&v).unwrap();
        let got = to_regorus(&v);
        assert_eq!(got, want, "{v}");
        assert_eq!(
            serde_json::to_string(&got).unwrap(),
            serde_json::to_string(&want).unwrap(),
            "{v}"
        );
    }
}
