//! End to end: `gavel explain` on the repo's bundles and config, and on
//! decisions logged by a real gavel session (rmcp client → gavel → fixture).

use crate::common;
use crate::common::governance_session;

use common::*;
use governance_session::*;
use serde_json::Value;

#[test]
fn explains_the_example_config_in_plain_language() {
    let config = repo("servers.toml").display().to_string();
    let (ok, md, err) = gavel(&["explain", "--config", &config, "--format", "markdown"]);
    assert!(ok, "{err}");
    for needle in [
        "# Server `filesystem`",
        "## Filesystem server — path scoping and destructive operations — bundle `filesystem`",
        "`destructive_operation`: moving files is not allowed for agents",
        "when `input.action.tool == \"move_file\"`",
        "Appeal: https://access.example.com/request?resource=filesystem",
        "`move_file`: denied (destructive_operation)",
        "`read_file`: allowed — filesystem: in `read_tools`",
        "`get-env`: denied (tool_blocked)",
        "as the configured user",
        "# Org-wide layers",
        "## Runaway-agent brakes — bundle `workflow`",
        "`data.gavel.workflow.max_calls_per_minute` = `60`",
        "`too_many_calls_per_minute`: the agent is calling tools faster than allowed",
        "Remediation: Set identity.user in gavel's config",
        "`data.gavel.identity.allowed_groups` = `[\"engineering\",\"sre-oncall\"]`",
    ] {
        assert!(md.contains(needle), "{needle} missing from:\n{md}");
    }
    // Shared layers are written once, not per server.
    assert_eq!(md.matches("bundle `workflow`").count(), 1, "{md}");

    let bundle = repo("bundles/workflow").display().to_string();
    let (ok, text, err) = gavel(&["explain", &bundle]);
    assert!(ok, "{err}");
    assert!(text.starts_with("Server workflow\n"), "{text}");
    assert!(!text.contains('`'), "text output has no Markdown: {text}");

    // A .tar.gz (as `gavel bundle build` / `opa build` lay it out) reads the same.
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("workflow.tar.gz").display().to_string();
    let (ok, _, err) = gavel(&["bundle", "build", &bundle, "-o", &tar]);
    assert!(ok, "{err}");
    let (ok, from_tar, err) = gavel(&["explain", &tar]);
    assert!(ok, "{err}");
    assert!(from_tar.contains("max_calls_per_minute = 60"), "{from_tar}");
    assert!(from_tar.contains("Runaway-agent brakes"), "{from_tar}");
}

/// A bundle at `<dir>/b` with root `p` and one module, `p/policy.rego`.
fn one_module_bundle(dir: &std::path::Path, rego: &str) -> std::path::PathBuf {
    let b = dir.join("b");
    std::fs::create_dir_all(b.join("p")).unwrap();
    std::fs::write(b.join(".manifest"), r#"{"roots": ["p"]}"#).unwrap();
    std::fs::write(b.join("p/policy.rego"), rego).unwrap();
    b
}

#[test]
fn a_bundle_gavel_cannot_evaluate_is_still_explained() {
    let dir = tempfile::tempdir().unwrap();
    // No decision rule: gavel refuses to load it, explain still reads it.
    let b = one_module_bundle(
        dir.path(),
        "# METADATA\n# title: Half-written policy\npackage p\n\nviolations contains \"nope\" if input.action.tool == \"rm\"\n",
    );
    let (ok, text, err) = gavel(&["explain", &b.display().to_string()]);
    assert!(ok, "{err}");
    assert!(text.contains("Half-written policy"), "{text}");
    assert!(
        text.contains("- nope (not in the reason catalog)"),
        "{text}"
    );
    assert!(text.contains("The policy cannot be evaluated"), "{text}");
    assert!(
        text.contains("no module defines the decision rule"),
        "{text}"
    );
}

#[test]
fn a_tool_that_needs_a_humans_approval_is_explained_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let b = one_module_bundle(
        dir.path(),
        "package p\n\ndefault decision := {\"allow\": false, \"reasons\": [\"unknown_tool\"]}\n\ndecision := {\"allow\": true, \"require_approval\": {\"reason\": \"deleting needs a human\"}} if input.action.tool == \"delete\"\n\ndecision := {\"allow\": true} if input.action.tool == \"read\"\n",
    );
    let (ok, text, err) = gavel(&["explain", &b.display().to_string()]);
    assert!(ok, "{err}");
    assert!(
        text.contains("- delete: allowed after a human's approval (deleting needs a human)"),
        "{text}"
    );
    assert!(text.contains("- read: allowed —"), "{text}");
}

#[test]
fn explain_refuses_malformed_metadata_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let b = one_module_bundle(
        dir.path(),
        "package p\n\n# METADATA\n# title: [unclosed\ndecision := {\"allow\": true}\n",
    );
    let (ok, _, err) = gavel(&["explain", &b.display().to_string()]);
    assert!(!ok);
    assert!(
        err.contains("p/policy.rego:3: METADATA block: YAML does not parse"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn explains_logged_decisions_from_a_real_session() {
    let s = Setup::blank();
    let log = run_session(&s).await;
    let denied = log
        .iter()
        .find(|r| r["input"]["action"]["tool"] == "destructive_delete")
        .expect("the denied call is logged");
    let id = denied["decision_id"].as_str().unwrap();
    let log_path = s.path("decisions.jsonl").display().to_string();
    let fixture = repo("tests/bundles/fixture").display().to_string();
    let workflow = repo("bundles/workflow").display().to_string();

    // With the bundles named explicitly…
    let (ok, text, err) = gavel(&[
        "explain",
        "--decision",
        id,
        "--log",
        &log_path,
        "--bundle",
        &fixture,
        "--bundle",
        &workflow,
    ]);
    assert!(ok, "{err}");
    for needle in [
        &format!("Decision {id}"),
        "of tool destructive_delete on server fx at",
        "denied",
        "destructive_denied: destructive tools need a human",
        "Matched rules: data.mcp.fixture.decision",
        "Remediation given: ask a human to run it",
        "Re-evaluated unchanged: denied (destructive_denied), as logged.",
        // The tool name decided it: without it the call would pass.
        "input.action.tool (logged \"destructive_delete\"): removed → allowed",
        // A burst of calls would have added the workflow reason.
        "input.context.calls_last_minute (logged ",
        "→ denied (destructive_denied, too_many_calls_per_minute)",
        "Not tried (masked or erased in the log, real value unknown): input.user.id",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    assert!(!text.contains("digest differs"), "{text}");

    // …or through the config that produced the log: the same findings.
    let config = s.config().display().to_string();
    let (ok, md, err) = gavel(&[
        "explain",
        "--decision",
        id,
        "--config",
        &config,
        "--format",
        "markdown",
    ]);
    assert!(ok, "{err}");
    assert!(
        md.contains("`input.action.tool` (logged `\"destructive_delete\"`): removed → allowed"),
        "{md}"
    );

    // An allowed decision: removing the tool does not change it, a burst does.
    let allowed = log
        .iter()
        .find(|r| r["result"]["allow"] == Value::Bool(true))
        .unwrap();
    let (ok, text, err) = gavel(&[
        "explain",
        "--decision",
        allowed["decision_id"].as_str().unwrap(),
        "--config",
        &config,
    ]);
    assert!(ok, "{err}");
    assert!(
        text.contains("Re-evaluated unchanged: allowed, as logged."),
        "{text}"
    );
    assert!(
        text.contains("→ denied (too_many_calls_per_minute)"),
        "{text}"
    );

    // Bad input is named.
    let (ok, _, err) = gavel(&[
        "explain",
        "--decision",
        "no-such-id",
        "--log",
        &log_path,
        "--bundle",
        &fixture,
    ]);
    assert!(!ok);
    assert!(
        err.contains("decision \"no-such-id\" is not in") && err.contains("decisions.jsonl"),
        "{err}"
    );
    let bad = s.path("bad.jsonl");
    std::fs::write(
        &bad,
        format!("{}\n{{oops\n", serde_json::to_string(denied).unwrap()),
    )
    .unwrap();
    let (ok, _, err) = gavel(&[
        "explain",
        "--decision",
        "x",
        "--log",
        &bad.display().to_string(),
        "--bundle",
        &fixture,
    ]);
    assert!(!ok);
    assert!(
        err.contains("bad.jsonl:2: not a JSON decision record"),
        "{err}"
    );
}

/// What the explanation cannot vouch for, it says: a decision made by static
/// rules, bundles that are not the ones that decided, masked values.
#[test]
fn explain_names_what_it_cannot_reproduce() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("d.jsonl");
    let record = serde_json::json!({
        "decision_id": "static-1", "timestamp": "2026-11-22T10:00:00Z", "path": "gavel/static",
        "input": {"action": {"type": "tool_call", "server": "fx", "tool": "echo",
                             "args": {"token": "**REDACTED**"}},
                  "user": {"id": "ada"}, "context": {"turn_count": 3}},
        "result": {"allow": false, "reasons": ["static_rule"], "matched_rules": ["tools.deny:echo"]},
        "bundles": {"fixture": {"revision": "9.9.8", "digest": "sha256:00"}},
        "labels": {"policy": "static"}, "masked": ["/input/action/args/token"]
    });
    std::fs::write(&log, format!("{record}\n")).unwrap();
    let fixture = repo("tests/bundles/fixture").display().to_string();
    let (ok, text, err) = gavel(&[
        "explain",
        "--decision",
        "static-1",
        "--log",
        &log.display().to_string(),
        "--bundle",
        &fixture,
    ]);
    assert!(ok, "{err}");
    for needle in [
        "Matched rules: tools.deny:echo",
        "fixture (digest differs from the logged one)",
        "made by gavel's static rules",
        "Re-evaluated unchanged: allowed — differs from the log.",
        "Not tried (masked or erased in the log, real value unknown): input.action.args.token",
        "input.context.turn_count (logged 3): set to 1000300 → denied (turn_limit)",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}
