//! Personas at the enforcement point, on an enforcer built from a config:
//! the agent of the session's identity picks the policy, the server list
//! and the unmatched default hold, and a persona target activates alone.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::config::Identity;
use crate::decision::{Action, ActionType};

fn bundle(dir: &Path, name: &str, root: &str, rego: &str) -> PathBuf {
    let b = dir.join(name);
    std::fs::create_dir_all(b.join(root)).unwrap();
    std::fs::write(
        b.join(".manifest"),
        json!({"revision": format!("{name}-1"), "roots": [root]}).to_string(),
    )
    .unwrap();
    std::fs::write(b.join(root).join("policy.rego"), rego).unwrap();
    b
}

/// Servers `fx` and `mail` (allow-all), persona `hr` (agents `hr-*`, `fx`
/// only) denying `echo`, agent `configured` over stdio.
fn enforcer(dir: &Path, unmatched: &str) -> Enforcer {
    let base = bundle(
        dir,
        "base",
        "base",
        "package base\ndecision := {\"allow\": true}\n",
    );
    let hr = bundle(
        dir,
        "hr",
        "persona/hr",
        "package persona.hr\ndefault decision := {\"allow\": true}\n\
         decision := {\"allow\": false, \"reasons\": [\"hr_no_echo\"]} if input.action.tool == \"echo\"\n",
    );
    let toml = format!(
        "[identity.agent]\nid = \"configured\"\n[policy]\nunmatched_persona = {unmatched:?}\n\
         [servers.fx]\ncommand = \"x\"\nbundle = {b:?}\n[servers.mail]\ncommand = \"y\"\nbundle = {b:?}\n\
         [personas.hr]\nagents = [\"hr-*\"]\nservers = [\"fx\"]\nbundles = [{hr:?}]\n",
        b = base.display().to_string(),
        hr = hr.display().to_string(),
    );
    let config = crate::config::test_config(&toml, &dir.join("servers.toml"));
    Enforcer::from_config(&config).unwrap()
}

fn as_agent(agent: &str) -> DecisionContext {
    let mut identity = Identity::default();
    identity.agent.id = agent.into();
    DecisionContext {
        identity: Some(Arc::new(identity)),
        ..Default::default()
    }
}

fn reasons(e: &Enforcer, ctx: &DecisionContext, server: &str, tool: &str) -> Vec<String> {
    let a = Action::new(ActionType::ToolCall, server, tool, json!({}));
    let d = e.decide(&a, ctx).decision().clone();
    assert_eq!(d.allow, d.reasons.is_empty(), "{d:?}");
    d.reasons
}

#[test]
fn the_sessions_agent_picks_the_persona_policy() {
    let d = tempfile::tempdir().unwrap();
    let e = enforcer(d.path(), "deny");
    let hr = as_agent("hr-bot");
    assert_eq!(reasons(&e, &hr, "fx", "echo"), ["hr_no_echo"]);
    assert!(reasons(&e, &hr, "fx", "add").is_empty());
    assert_eq!(reasons(&e, &hr, "mail", "add"), ["persona_server_denied"]);
    // Unmatched, deny: the token's agent and the configured one alike.
    assert_eq!(
        reasons(&e, &as_agent("sales"), "fx", "add"),
        ["persona_unmatched"]
    );
    assert_eq!(
        reasons(&e, &DecisionContext::default(), "fx", "add"),
        ["persona_unmatched"]
    );
    assert!(!e.tool_listed("mail", "add", &json!({}), &hr));
    assert!(e.tool_listed("fx", "add", &json!({}), &hr));
    assert!(!e.tool_listed("fx", "add", &json!({}), &as_agent("sales")));
}

#[test]
fn unmatched_base_gets_the_servers_own_layers() {
    let d = tempfile::tempdir().unwrap();
    let e = enforcer(d.path(), "base");
    assert!(reasons(&e, &as_agent("sales"), "fx", "echo").is_empty());
    assert!(reasons(&e, &as_agent("sales"), "mail", "echo").is_empty());
    assert_eq!(reasons(&e, &as_agent("hr-1"), "fx", "echo"), ["hr_no_echo"]);
}

#[test]
fn a_persona_target_builds_and_activates_alone() {
    let d = tempfile::tempdir().unwrap();
    let e = enforcer(d.path(), "deny");
    let t = target("fx", "hr");
    let before = e.active(&t).unwrap().version();
    assert_eq!(before.as_deref(), Some("base@base-1,hr@hr-1"));
    assert!(
        e.active(&target("mail", "hr")).is_none(),
        "hr does not reach mail"
    );
    // A new hr bundle, built for the target and activated: only the
    // persona's policy changes.
    std::fs::write(
        d.path().join("hr/persona/hr/policy.rego"),
        "package persona.hr\ndecision := {\"allow\": true}\n",
    )
    .unwrap();
    let rebuilt = e
        .build_server(&t, &crate::policy::source::Offline::new(None))
        .unwrap();
    assert!(rebuilt.is_rego());
    e.activate(&t, rebuilt);
    assert!(reasons(&e, &as_agent("hr-bot"), "fx", "echo").is_empty());
    assert_eq!(
        e.active("fx").unwrap().version().as_deref(),
        Some("base@base-1")
    );
    let status = e.status_json();
    assert_eq!(status["fx"]["personas"]["hr"]["policy"], "rego");
    assert!(status["mail"].get("personas").is_none());
}

#[test]
fn a_broken_persona_bundle_fails_closed_for_that_persona_only() {
    let d = tempfile::tempdir().unwrap();
    let e = enforcer(d.path(), "base");
    assert_eq!(
        e.persona_policy_status(),
        [("fx@hr".to_string(), Ok("base@base-1,hr@hr-1".to_string()))]
    );
    // The hr bundle no longer compiles: a rebuilt target is unavailable,
    // and once activated hr's requests fail closed; others are unaffected.
    std::fs::write(
        d.path().join("hr/persona/hr/policy.rego"),
        "package persona.hr\ndecision := \n",
    )
    .unwrap();
    let t = target("fx", "hr");
    let broken = e
        .build_server(&t, &crate::policy::source::Offline::new(None))
        .unwrap();
    assert!(broken.unavailable().is_some());
    e.activate(&t, broken);
    assert_eq!(
        reasons(&e, &as_agent("hr-bot"), "fx", "add"),
        ["policy_unavailable"]
    );
    assert!(reasons(&e, &as_agent("sales"), "fx", "add").is_empty());
    let st = e.persona_policy_status();
    assert!(
        st[0].1.as_ref().is_err_and(|w| w.contains("persona")),
        "{st:?}"
    );
}

fn tool(name: &str) -> rmcp::model::Tool {
    serde_json::from_value(json!({"name": name, "inputSchema": {"type": "object"}})).unwrap()
}

#[test]
fn a_personas_bundle_is_linted_against_the_tools_of_the_servers_it_reaches() {
    let d = tempfile::tempdir().unwrap();
    let e = enforcer(d.path(), "deny");
    // hr's bundle names `echo`; fx lists only `add`.
    e.note_tools("fx", &[tool("add")]);
    let found = e.lint_tools();
    let fx: Vec<(&str, &str)> = found["fx"]
        .iter()
        .map(|f| (f.bundle.as_str(), f.message.as_str()))
        .collect();
    assert!(
        fx.iter().any(|(b, m)| *b == "hr" && m.contains("\"echo\"")),
        "{fx:?}"
    );
    // Once fx lists echo, nothing is left to say about hr.
    e.note_tools("fx", &[tool("add"), tool("echo")]);
    assert!(e.lint_tools()["fx"].iter().all(|f| f.bundle != "hr"));
}

/// `gavel__check` predicts the persona's decision, not the base layers':
/// a query picks the policy exactly as `decide` does.
#[test]
fn a_policy_query_is_decided_by_the_callers_persona() {
    let d = tempfile::tempdir().unwrap();
    let e = enforcer(d.path(), "deny");
    for (agent, server, tool) in [
        ("hr-bot", "fx", "echo"),
        ("hr-bot", "fx", "add"),
        ("hr-bot", "mail", "add"),
        ("sales", "fx", "add"),
    ] {
        let ctx = as_agent(agent);
        let a = Action::new(ActionType::ToolCall, server, tool, json!({}));
        let predicted = e.query(&a, &ctx, "check").decision;
        let real = e.decide(&a, &ctx).decision().clone();
        assert_eq!(
            (predicted.allow, &predicted.reasons),
            (real.allow, &real.reasons),
            "{agent} {server} {tool}"
        );
    }
}
