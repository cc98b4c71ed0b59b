//! End to end: gavel's agent tools (`[agent_tools]`, `gavel
//! policy-server`) through the official Python MCP SDK against the real
//! binary and the fixture server: `gavel__check` answers exactly what the
//! real call then gets, without calling the upstream or charging anything;
//! a tool hidden by `visible` is an unknown tool to it; `gavel__limits`
//! follows the calls made; `gavel__why` explains this session's decisions
//! and no other's; the policy resources list and read; a bundle can refuse
//! the queries; the tools are absent unless enabled.

use std::path::{Path, PathBuf};

use crate::common;

use common::lab::Lab;
use common::*;
use serde_json::{Value, json};

/// Echo allowed (rate-limited: 1 an hour, burst 3), `huge` denied with a
/// remediation and an appeal path, `add` hidden by `visible`; policy
/// queries allowed, except to agent `blocked`.
const POLICY: &str = r#"package fx

default visible := true

visible := false if input.action.tool == "add"

decision := {"allow": true} if {
	input.action.type == "tool_call"
	input.action.tool != "huge"
}

decision := {
	"allow": false,
	"reasons": ["too_big"],
	"remediation": "Ask for fewer bytes.",
	"appeal_path": "https://appeals.example.test/huge",
} if {
	input.action.type == "tool_call"
	input.action.tool == "huge"
}

decision := {"allow": true} if {
	input.action.type == "policy_query"
	input.agent.id != "blocked"
}

decision := {"allow": false, "reasons": ["no_policy_queries"], "remediation": "Ask the operator."} if {
	input.action.type == "policy_query"
	input.agent.id == "blocked"
}
"#;

fn agent_bundle(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("fx")).unwrap();
    std::fs::write(
        dir.join(".manifest"),
        json!({"revision": "1", "roots": ["fx"]}).to_string(),
    )
    .unwrap();
    std::fs::write(dir.join("fx/policy.rego"), POLICY).unwrap();
    std::fs::write(
        dir.join("fx/data.json"),
        json!({"limits": [{"scope": "tool", "tool": "echo", "rate": 1, "per": "1h", "burst": 3}]})
            .to_string(),
    )
    .unwrap();
    dir.to_path_buf()
}

fn lab(agent_tools: bool) -> Lab {
    let extra = if agent_tools {
        "[agent_tools]\nenabled = true\n\n[budget]\ncalls = 100\n"
    } else {
        "[budget]\ncalls = 100\n"
    };
    Lab::build(|s| agent_bundle(&s.path("policy")), extra, None)
}

/// Runs `plan` (tests/clients/python_agent_tools.py) in one MCP session
/// with gavel launched as `args` in the lab's environment (or, when `args`
/// is one http:// URL, with the gavel serving it); each step's answer.
async fn python(lab: &Lab, args: &[String], plan: Value) -> Vec<Value> {
    python_as(lab, "a1", args, plan).await
}

/// [`python`] with gavel's configured agent id `agent` (`E2E_AGENT`).
async fn python_as(lab: &Lab, agent: &str, args: &[String], plan: Value) -> Vec<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = tokio::process::Command::new(root.join(".deps/venv/bin/python"));
    cmd.arg(root.join("tests/clients/python_agent_tools.py"))
        .arg(plan.to_string());
    if !matches!(args, [url] if url.starts_with("http://")) {
        cmd.arg(GAVEL);
    }
    cmd.args(args).envs(lab.env()).env("E2E_AGENT", agent);
    let out = tokio::time::timeout(PATIENCE, cmd.output())
        .await
        .expect("the python session finished")
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "{stdout}\n{stderr}\n{}",
        lab.s.log_text()
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"))
}

fn tool_names(list: &Value) -> Vec<String> {
    list["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

/// The fields of a decision an agent acts on.
fn essentials(d: &Value) -> Value {
    json!({
        "allow": d["allow"],
        "reasons": d["reasons"],
        "remediation": d["remediation"],
        "appeal_path": d["appeal_path"],
        "require_approval": d["require_approval"],
    })
}

/// The `tools/call` requests the fixture received.
fn upstream_calls(lab: &Lab) -> usize {
    records(&lab.s.path("r.jsonl"))
        .iter()
        .filter(|r| r["method"] == "tools/call")
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn check_predicts_the_real_decisions_without_calling_or_charging() {
    let lab = lab(true);
    // Another session's decision, which this session must not be explained.
    let other = lab.connect().await;
    let r = call(&other, "huge", json!({"bytes": 1})).await.unwrap();
    let other_id = lab::decision(&r)["decision_id"]
        .as_str()
        .unwrap()
        .to_string();
    other.cancel().await.unwrap();
    assert_eq!(upstream_calls(&lab), 0);

    let plan = json!([
        {"op": "list_tools"},
        {"op": "call", "name": "gavel__check", "args": {"tool": "echo", "arguments": {"text": "hi"}}},
        {"op": "call", "name": "gavel__check", "args": {"tool": "huge", "arguments": {"bytes": 10}}},
        {"op": "call", "name": "gavel__check", "args": {"tool": "add", "arguments": {"a": 1, "b": 2}}},
        {"op": "call", "name": "gavel__check", "args": {"tool": "nope", "arguments": {}}},
        {"op": "call", "name": "gavel__limits", "args": {}},
        {"op": "call", "name": "echo", "args": {"text": "hi"}},
        {"op": "call", "name": "huge", "args": {"bytes": 10}},
        {"op": "call", "name": "gavel__limits", "args": {}},
        {"op": "call", "name": "gavel__why", "args": {"decision_id": "$last_decision_id"}},
        {"op": "call", "name": "gavel__why", "args": {"decision_id": other_id}},
        {"op": "list_resources"},
        {"op": "read", "uri": "gavel://policy/fx"},
    ]);
    let out = python(&lab, &lab.s.run_args(), plan).await;

    let names = tool_names(&out[0]);
    for t in [
        "echo",
        "huge",
        "gavel__check",
        "gavel__limits",
        "gavel__why",
    ] {
        assert!(names.contains(&t.to_string()), "{t}: {names:?}");
    }
    assert!(
        !names.contains(&"add".to_string()),
        "hidden by visible: {names:?}"
    );

    // check: allowed echo, denied huge — the decisions the calls then get.
    let (ok, no) = (&out[1]["structuredContent"], &out[2]["structuredContent"]);
    assert_eq!(ok["would"], "allow", "{ok}");
    assert_eq!(ok["decision"]["rate_limit_remaining"], 2, "{ok}");
    assert_eq!(out[6]["isError"], false, "{}", out[6]);
    assert_eq!(out[6]["content"][0]["text"], "hi");
    assert_eq!(no["would"], "deny", "{no}");
    let real = &out[7]["_meta"]["dev.gavel/decision"];
    assert_eq!(out[7]["isError"], true, "{}", out[7]);
    assert_eq!(
        essentials(&no["decision"]),
        essentials(real),
        "{no} vs {real}"
    );
    assert_eq!(real["reasons"], json!(["too_big"]));
    assert_eq!(real["appeal_path"], "https://appeals.example.test/huge");

    // A tool hidden by `visible` is answered exactly as an unknown one.
    let unknown = |i: usize, name: &str| {
        let e = &out[i]["error"];
        json!({"code": e["code"], "message": e["message"].as_str().unwrap().replace(name, "T")})
    };
    assert!(
        out[3]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Unknown tool"),
        "{}",
        out[3]
    );
    assert_eq!(unknown(3, "add"), unknown(4, "nope"));

    // limits: nothing charged by the checks; the real call counted.
    let before = &out[5]["structuredContent"];
    assert_eq!(before["session"]["turn_count"], 0, "{before}");
    assert_eq!(before["budget"]["used"]["calls"], 0, "{before}");
    let after = &out[8]["structuredContent"];
    assert_eq!(after["session"]["turn_count"], 2, "{after}");
    assert_eq!(
        after["servers"]["fx"]["tools"]["echo"]["calls"], 1,
        "{after}"
    );
    assert_eq!(
        after["servers"]["fx"]["tools"]["echo"]["rate_limits"][0]["remaining"], 2,
        "burst 3, one real call: {after}"
    );
    assert_eq!(
        after["budget"]["used"]["calls"], 1,
        "only the real echo: {after}"
    );

    // why: this session's denial explained; another session's unknown.
    let why = &out[9];
    assert_eq!(why["isError"], false, "{why}");
    let text = why["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("too_big") && text.contains("denied"),
        "{text}"
    );
    assert_eq!(out[10]["isError"], true, "{}", out[10]);
    assert_eq!(out[10]["structuredContent"]["known"], false, "{}", out[10]);

    // The policy resources.
    let uris: Vec<&str> = out[11]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["uri"].as_str())
        .collect();
    assert!(uris.contains(&"gavel://policy/fx"), "{uris:?}");
    let policy = out[12]["contents"][0]["text"].as_str().unwrap_or_default();
    assert!(policy.contains("fx"), "{}", out[12]);

    // The upstream saw the one allowed real call; the log has the queries
    // as their own kind, never as decisions.
    assert_eq!(upstream_calls(&lab), 1);
    let log = lab.decisions();
    let queries: Vec<&Value> = log.iter().filter(|r| r.get("query").is_some()).collect();
    assert_eq!(queries.len(), 2, "{queries:?}");
    for q in &queries {
        assert!(q.get("decision_id").is_none(), "{q}");
        assert_eq!(q["query"]["kind"], "check");
        assert!(q["query_id"].is_string());
    }
    assert_eq!(queries[1]["result"]["reasons"], json!(["too_big"]));
    let echo_decisions = log
        .iter()
        .filter(|r| r.get("query").is_none() && r["input"]["action"]["tool"] == "echo")
        .count();
    assert_eq!(echo_decisions, 1, "the checks decided nothing: {log:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn check_predicts_a_spent_rate_limit_without_spending_more() {
    let lab = lab(true);
    let plan = json!([
        {"op": "call", "name": "echo", "args": {"text": "1"}},
        {"op": "call", "name": "echo", "args": {"text": "2"}},
        {"op": "call", "name": "echo", "args": {"text": "3"}},
        {"op": "call", "name": "gavel__check", "args": {"tool": "echo", "arguments": {"text": "4"}}},
        {"op": "call", "name": "gavel__check", "args": {"tool": "echo", "arguments": {"text": "4"}}},
        {"op": "call", "name": "echo", "args": {"text": "4"}},
    ]);
    let out = python(&lab, &lab.s.run_args(), plan).await;
    let predicted = &out[3]["structuredContent"]["decision"];
    assert_eq!(predicted["reasons"], json!(["rate_limited"]), "{predicted}");
    assert_eq!(
        essentials(predicted),
        essentials(&out[4]["structuredContent"]["decision"]),
        "a check changes nothing"
    );
    let real = &out[5]["_meta"]["dev.gavel/decision"];
    assert_eq!(
        essentials(predicted),
        essentials(real),
        "{predicted} vs {real}"
    );
    assert_eq!(upstream_calls(&lab), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bundle_that_refuses_policy_queries_is_obeyed() {
    let lab = lab(true);
    let plan = json!([
        {"op": "call", "name": "gavel__check", "args": {"tool": "echo", "arguments": {"text": "x"}}},
        {"op": "call", "name": "gavel__limits", "args": {}},
        {"op": "read", "uri": "gavel://policy/fx"},
    ]);
    let out = python_as(&lab, "blocked", &lab.s.run_args(), plan).await;
    assert_eq!(out[0]["isError"], true, "{}", out[0]);
    let d = &out[0]["_meta"]["dev.gavel/decision"];
    assert_eq!(d["reasons"], json!(["no_policy_queries"]), "{d}");
    let limits = &out[1]["structuredContent"];
    assert!(limits["servers"]["fx"]["withheld"].is_string(), "{limits}");
    assert!(limits["session"].is_null(), "{limits}");
    assert_eq!(out[2]["error"]["code"], 403, "{}", out[2]);
    let log = lab.decisions();
    assert!(
        log.iter().all(|r| r.get("query").is_none()),
        "no query ran: {log:?}"
    );
    let gate = log
        .iter()
        .find(|r| r["input"]["action"]["type"] == "policy_query")
        .expect("the query itself was decided");
    assert_eq!(gate["input"]["action"]["tool"], "check");
    assert_eq!(gate["input"]["action"]["args"]["tool"], "echo");
    assert_eq!(gate["input"]["agent"]["id"], "blocked");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_tools_are_absent_unless_enabled() {
    let lab = lab(false);
    let plan = json!([
        {"op": "list_tools"},
        {"op": "call", "name": "gavel__check", "args": {"tool": "echo"}},
        {"op": "list_resources"},
    ]);
    let out = python(&lab, &lab.s.run_args(), plan).await;
    let names = tool_names(&out[0]);
    assert!(names.contains(&"echo".to_string()), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("gavel__")), "{names:?}");
    assert!(
        out[1]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Unknown tool: gavel__check"),
        "{}",
        out[1]
    );
    assert!(!out[2].to_string().contains("gavel://"), "{}", out[2]);
}

#[tokio::test(flavor = "multi_thread")]
async fn policy_server_answers_check_alone() {
    let lab = lab(false);
    let args: Vec<String> = vec![
        "policy-server".into(),
        "--config".into(),
        lab.s.config().display().to_string(),
        "--log-file".into(),
        lab.s.log().display().to_string(),
    ];
    let plan = json!([
        {"op": "list_tools"},
        {"op": "call", "name": "gavel__check", "args": {"tool": "echo", "arguments": {"text": "hi"}}},
        {"op": "call", "name": "gavel__check", "args": {"tool": "huge", "arguments": {"bytes": 10}}},
        {"op": "call", "name": "echo", "args": {"text": "hi"}},
        {"op": "list_resources"},
    ]);
    let out = python(&lab, &args, plan).await;
    let mut names = tool_names(&out[0]);
    names.sort();
    assert_eq!(names, ["gavel__check", "gavel__limits", "gavel__why"]);
    assert_eq!(out[1]["structuredContent"]["would"], "allow", "{}", out[1]);
    let no = &out[2]["structuredContent"]["decision"];
    assert_eq!(no["reasons"], json!(["too_big"]), "{no}");
    assert_eq!(no["appeal_path"], "https://appeals.example.test/huge");
    assert!(
        out[3]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Unknown tool: echo"),
        "{}",
        out[3]
    );
    let uris: Vec<&str> = out[4]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["uri"].as_str())
        .collect();
    assert_eq!(uris, ["gavel://policy/fx"], "the agent resources alone");
    assert_eq!(
        upstream_calls(&lab),
        0,
        "a policy server never calls upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn policy_server_answers_check_over_http() {
    let lab = lab(false);
    let log = lab.s.path("policy-server.log");
    let _server = tokio::process::Command::new(GAVEL)
        .args([
            "policy-server",
            "--http",
            "--listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(lab.s.config())
        .arg("--log-file")
        .arg(&log)
        .envs(lab.env())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let port = serving_address(&log).await.port();
    let plan = json!([
        {"op": "list_tools"},
        {"op": "call", "name": "gavel__check", "args": {"tool": "huge", "arguments": {"bytes": 10}}},
        {"op": "call", "name": "echo", "args": {"text": "hi"}},
    ]);
    let out = python(&lab, &[format!("http://127.0.0.1:{port}/mcp")], plan).await;
    let mut names = tool_names(&out[0]);
    names.sort();
    assert_eq!(names, ["gavel__check", "gavel__limits", "gavel__why"]);
    let no = &out[1]["structuredContent"]["decision"];
    assert_eq!(no["reasons"], json!(["too_big"]), "{}", out[1]);
    assert!(
        out[2]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Unknown tool: echo"),
        "{}",
        out[2]
    );
    assert_eq!(
        upstream_calls(&lab),
        0,
        "a policy server never calls upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_tool_with_a_reserved_name_is_withheld_and_logged() {
    let lab = lab(true);
    let client = lab.connect().await;
    let r = call(&client, "add_tool", json!({"name": "gavel__check"}))
        .await
        .unwrap();
    assert_eq!(text(&r), "added gavel__check");
    eventually("the reserved name is logged", || {
        lab.s.log_text().contains("reserved name")
            && lab
                .s
                .log_text()
                .contains("\"gavel__check\" from server \"fx\"")
    })
    .await;
    let tools = client.list_all_tools().await.unwrap();
    let ours: Vec<_> = tools.iter().filter(|t| t.name == "gavel__check").collect();
    assert_eq!(ours.len(), 1, "{tools:?}");
    assert!(
        ours[0]
            .description
            .as_deref()
            .unwrap_or_default()
            .starts_with("Would this call be allowed?"),
        "{:?}",
        ours[0]
    );
    let r = call(&client, "gavel__check", json!({"tool": "echo"}))
        .await
        .unwrap();
    assert_eq!(r.structured_content.unwrap()["would"], "allow");
    client.cancel().await.unwrap();
    assert_eq!(upstream_calls(&lab), 1, "only add_tool reached the fixture");
}
