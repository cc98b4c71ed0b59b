//! `gavel lint`: a bundle written to have each of the four schema problems,
//! held against the real fixture upstream through the CLI (text, JSON, exit
//! codes); a server that does not start; the example config; and the same
//! checks in a running proxy (its log and `gavel status`).

use crate::common;

use std::path::Path;

use common::*;
use serde_json::{Value, json};

/// The fixture offers `destructive_delete` (path), `echo` (text) and
/// `read_file` (path), among others; this policy gets each wrong once and
/// allows by default (allow unless a violation matches).
const PROBLEMS: &str = r#"package mcp.fx

# 1: a typo, so this deny never fires
violations contains "no_delete" if input.action.tool == "destructive_delet"

# 2: echo's argument is `text`
violations contains "too_long" if {
	input.action.tool == "echo"
	count(input.action.args.message) > 100
}

# 3: string-prefix scoping, through a local variable
violations contains "outside" if {
	input.action.tool == "read_file"
	p := input.action.args.path
	not startswith(p, "/srv/data")
}

decision := {"allow": true} if count(violations) == 0

decision := {"allow": false, "reasons": sort(violations)} if count(violations) > 0
"#;

/// An allow-list that names only tools and arguments the fixture has.
const CLEAN: &str = r#"package mcp.fx

decision := {"allow": true} if {
	input.action.tool == "echo"
	count(input.action.args.text) < 100
}

default decision := {"allow": false, "reasons": ["not_listed"]}
"#;

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

/// A setup with the fixture server `fx` deciding with `rego`; `extra` goes
/// after the server's keys.
fn setup(rego: &str, extra: &str) -> Setup {
    Setup::with(|s| {
        let b = common::policy::bundle(s.dir.path(), "lint", "mcp/fx", json!({}), rego);
        format!(
            "{}bundle = {:?}\n{extra}",
            fixture_server("fx", &[], &s.record("fx")),
            b.display().to_string()
        )
    })
}

fn lint(s: &Setup, extra: &[&str]) -> (bool, String, String) {
    let config = s.config().display().to_string();
    let mut args = vec!["lint", "--config", config.as_str()];
    args.extend(extra);
    gavel(&args)
}

fn lint_json(s: &Setup, extra: &[&str]) -> (bool, Value) {
    let mut args = vec!["--json"];
    args.extend(extra);
    let (ok, out, err) = lint(s, &args);
    (
        ok,
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}")),
    )
}

#[test]
fn lint_reports_each_problem_with_file_and_line_in_text() {
    let s = setup(PROBLEMS, "[servers.fx.tools]\ndeny = [\"destrucive_*\"]\n");
    let (ok, out, err) = lint(&s, &[]);
    assert!(!ok, "errors fail the run by default:\n{out}{err}");
    let file = "mcp/fx/policy.rego";
    let expect = [
        format!(
            "error fx lint {file}:{}: the policy compares input.action.tool with \"destructive_delet\"",
            line_of(PROBLEMS, "destructive_delet")
        ),
        format!(
            "error fx lint {file}:{}: input.action.args.message: the inputSchema of \"echo\"",
            line_of(PROBLEMS, "args.message")
        ),
        format!(
            "warning fx lint {file}:{}: string-prefix test on the path argument input.action.args.path (through p)",
            line_of(PROBLEMS, "startswith")
        ),
        format!(
            "warning fx lint {file}:{}: tool \"echo_meta\" is offered by the server but no rule names it",
            line_of(PROBLEMS, "if count(violations) == 0")
        ),
        format!(
            "error fx - {}:{}: servers.fx.tools.deny: \"destrucive_*\" matches no tool",
            s.config().display(),
            line_of(&std::fs::read_to_string(s.config()).unwrap(), "destrucive_")
        ),
    ];
    for e in &expect {
        assert!(
            out.lines().any(|l| l.starts_with(e.as_str())),
            "missing {e:?} in:\n{out}"
        );
    }
    assert!(
        out.contains("did you mean \"destructive_delete\"?"),
        "{out}"
    );
    assert!(out.contains("data.gavel.lib.paths.within"), "{out}");
    // Tools a rule names are not reported as unnamed.
    for named in ["\"echo\" is offered", "\"read_file\" is offered"] {
        assert!(!out.contains(named), "{out}");
    }
    assert!(
        err.contains("3 error(s)") && err.contains("finding(s) at or above --fail-on error"),
        "{err}"
    );
}

#[test]
fn lint_json_and_exit_status_follow_fail_on() {
    let s = setup(PROBLEMS, "");
    let (ok, v) = lint_json(&s, &[]);
    assert!(!ok);
    let checks: Vec<(&str, &str, u64)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert_eq!(
                (f["server"].as_str(), f["bundle"].as_str()),
                (Some("fx"), Some("lint"))
            );
            (
                f["severity"].as_str().unwrap(),
                f["check"].as_str().unwrap(),
                f["line"].as_u64().unwrap(),
            )
        })
        .collect();
    for want in [
        (
            "error",
            "unknown_tool",
            line_of(PROBLEMS, "destructive_delet"),
        ),
        (
            "error",
            "unknown_argument",
            line_of(PROBLEMS, "args.message"),
        ),
        ("warning", "prefix_test", line_of(PROBLEMS, "startswith")),
        (
            "warning",
            "unmentioned_tool",
            line_of(PROBLEMS, "if count(violations) == 0"),
        ),
    ] {
        assert!(
            checks.contains(&(want.0, want.1, want.2 as u64)),
            "{want:?} not in {checks:?}"
        );
    }
    assert_eq!(v["errors"], 2, "{v}");

    // Warnings alone pass by default and fail with --fail-on warning.
    let fixed = PROBLEMS
        .replace("destructive_delet\"", "destructive_delete\"")
        .replace("args.message", "args.text");
    let s = setup(&fixed, "");
    let (ok, v) = lint_json(&s, &[]);
    assert!(ok, "{v}");
    assert_eq!(v["errors"], 0, "{v}");
    assert!(v["warnings"].as_u64().unwrap() > 0, "{v}");
    let (ok, _) = lint_json(&s, &["--fail-on", "warning"]);
    assert!(!ok, "--fail-on warning fails on warnings");

    // An allow-list naming real tools and arguments: no finding at all.
    let s = setup(CLEAN, "");
    let (ok, v) = lint_json(&s, &["--fail-on", "warning"]);
    assert!(ok, "{v}");
    assert_eq!(v["findings"], json!([]), "{v}");
}

#[test]
fn a_server_that_does_not_start_is_an_error_naming_it() {
    let s = Setup::with(|s| {
        format!(
            "{}\n[servers.broken]\ncommand = {:?}\nstartup_timeout = \"5s\"\n",
            fixture_server("fx", &[], &s.record("fx")),
            s.path("no-such-server").display().to_string()
        )
    });
    let (ok, out, err) = lint(&s, &[]);
    assert!(!ok, "{out}{err}");
    let line = line_of(
        &std::fs::read_to_string(s.config()).unwrap(),
        "[servers.broken]",
    );
    let want = format!(
        "error broken - {}:{line}: the server did not start",
        s.config().display()
    );
    assert!(
        out.lines().any(|l| l.starts_with(&want)),
        "missing {want:?} in:\n{out}"
    );
    // --server picks one server; an unknown name is refused with the list.
    let (ok, out, _) = lint(&s, &["--server", "fx"]);
    assert!(ok && out.is_empty(), "{out}");
    let (ok, _, err) = lint(&s, &["--server", "nope"]);
    assert!(
        !ok && err.contains("--server \"nope\"") && err.contains("broken, fx"),
        "{err}"
    );
}

/// The example config (servers.toml with bundles/, the servers scripts/setup
/// installs) lints clean: no error and no warning. (`bundles/everything` was
/// a deny-list, and every server-everything tool it did not name was
/// reported as allowed unreviewed; it is an allow-list of reviewed tools now.)
#[test]
fn the_example_config_lints_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join(".deps/node/node_modules/@modelcontextprotocol/server-everything")
            .exists(),
        "run scripts/setup first"
    );
    let out = std::process::Command::new(GAVEL)
        .current_dir(root)
        .args(["lint", "--config", "servers.toml", "--json", "--fail-on", "warning"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{v}");
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(v["findings"], serde_json::json!([]), "{v}");
}

/// The proxy runs the same checks once its upstream has listed its tools:
/// warnings in its log, a summary in `gavel status`.
#[tokio::test(flavor = "multi_thread")]
async fn the_proxy_lints_at_start_into_its_log_and_status() {
    let s = setup(PROBLEMS, "");
    let state = s.path("state");
    let mut cmd = s.command();
    cmd.env("GAVEL_STATE_DIR", &state);
    let client = connect_cmd(cmd, TestHost::new()).await;
    client.list_all_tools().await.unwrap();
    let status = || -> Vec<Value> {
        let out = std::process::Command::new(GAVEL)
            .args(["status", "--json"])
            .env("GAVEL_STATE_DIR", &state)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    };
    eventually("status shows the lint of fx", || {
        status()
            .first()
            .is_some_and(|i| i["policies"]["fx"]["lint"]["errors"] == 2)
    })
    .await;
    let lint = &status()[0]["policies"]["fx"]["lint"];
    assert!(lint["findings"].as_array().unwrap().len() <= 20, "{lint}");
    let log = s.log_text();
    assert!(
        log.contains("lint error: mcp/fx/policy.rego") && log.contains("destructive_delet"),
        "{log}"
    );
    let text = std::process::Command::new(GAVEL)
        .arg("status")
        .env("GAVEL_STATE_DIR", &state)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("lint: 2 error(s)"), "{text}");
    client.cancel().await.unwrap();
}
