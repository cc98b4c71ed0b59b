//! The enforcer as a whole, built from a config: list filtering per session
//! identity.

use std::path::Path;
use std::sync::Arc;

use serde_json::json;

use super::*;

/// A one-file bundle (root `p`) at `dir/b`, holding `rego`; its path.
pub(super) fn write_bundle(dir: &Path, rego: &str) -> std::path::PathBuf {
    let b = dir.join("b");
    std::fs::create_dir_all(b.join("p")).unwrap();
    std::fs::write(
        b.join(".manifest"),
        json!({"revision": "1", "roots": ["p"]}).to_string(),
    )
    .unwrap();
    std::fs::write(b.join("p/policy.rego"), rego).unwrap();
    b
}

/// An enforcer for one server `fx` with a one-file bundle.
fn enforcer(dir: &Path, rego: &str) -> Enforcer {
    let b = write_bundle(dir, rego);
    let toml = format!(
        "[identity.user]\nid = \"configured\"\n\n[servers.fx]\ncommand = \"x\"\nbundle = {:?}\n",
        b.display().to_string()
    );
    let config = crate::config::test_config(&toml, &dir.join("servers.toml"));
    Enforcer::from_config(&config).unwrap()
}

fn as_user(id: &str, groups: &[&str]) -> DecisionContext {
    let mut identity = Identity::default();
    identity.user.id = id.into();
    identity.user.groups = groups.iter().map(|g| g.to_string()).collect();
    DecisionContext {
        session_id: format!("session-of-{id}"),
        identity: Some(Arc::new(identity)),
        ..Default::default()
    }
}

#[test]
fn visible_sees_the_sessions_identity() {
    let d = tempfile::tempdir().unwrap();
    let e = enforcer(
        d.path(),
        "package p\ndecision := {\"allow\": true}\n\
         default visible := false\n\
         visible if input.action.tool == \"read\"\n\
         visible if \"admins\" in input.user.groups\n\
         visible if input.user.id == \"configured\"\n",
    );
    let listed = |ctx: &DecisionContext| -> Vec<&str> {
        ["read", "drop_table"]
            .into_iter()
            .filter(|t| e.tool_listed("fx", t, &json!({}), ctx))
            .collect()
    };
    assert_eq!(
        listed(&as_user("ada", &["admins"])),
        vec!["read", "drop_table"]
    );
    assert_eq!(listed(&as_user("bob", &["staff"])), vec!["read"]);
    // No session identity (stdio): the configured one.
    assert_eq!(
        listed(&DecisionContext::default()),
        vec!["read", "drop_table"]
    );
}

/// A `visible` rule that fails hides the tool (fail closed) — other tools,
/// for which it does not fail, stay listed.
#[test]
fn a_failing_visible_rule_hides_the_tool() {
    let d = tempfile::tempdir().unwrap();
    let e = enforcer(
        d.path(),
        "package p\ndecision := {\"allow\": true}\n\
         default visible := true\n\
         visible := true if input.action.tool == \"secret\"\n\
         visible := false if startswith(input.action.tool, \"sec\")\n",
    );
    let ctx = DecisionContext::default();
    assert!(e.tool_listed("fx", "read", &json!({}), &ctx));
    assert!(
        !e.tool_listed("fx", "secret", &json!({}), &ctx),
        "the rule conflicts for `secret`: an evaluation error, so hidden"
    );
}

/// A server whose policy cannot be built shows nothing: not its tools nor
/// its prompts and resources (fail closed; a request still gets the
/// denial saying why). A server without Rego (static rules) shows all.
#[test]
fn a_server_whose_policy_is_unavailable_lists_nothing() {
    let d = tempfile::tempdir().unwrap();
    let e = enforcer(d.path(), "package p\ndecision := {\"allow\": tru\n");
    let policy = e.servers.get("fx").unwrap().active.load_full();
    assert!(
        matches!(policy.policy, Policy::Unavailable(_)),
        "the broken bundle is unavailable"
    );
    let ctx = DecisionContext::default();
    assert!(!e.tool_listed("fx", "read", &json!({}), &ctx));
    assert!(!e.server_listed("fx", &ctx));
    assert!(!e.server_listed("nope", &ctx));
    let d2 = tempfile::tempdir().unwrap();
    let toml = "[servers.fx]\ncommand = \"x\"\n";
    let config = Config::from_toml_str(toml, &d2.path().join("servers.toml"), &|_| None).unwrap();
    let plain = Enforcer::from_config(&config).unwrap();
    assert!(plain.tool_listed("fx", "read", &json!({}), &ctx));
    assert!(plain.server_listed("fx", &ctx));
}
