//! The approval e2e tests' policy and readers: `destructive_delete` (and one
//! resource, one prompt, the server's sampling) allowed only with a human's
//! approval.

use serde_json::Value;

use super::*;

/// The policy every approval test decides with.
pub const POLICY: &str = r#"package fx

needs_approval if input.action.tool == "destructive_delete"

needs_approval if {
	input.action.type == "resource_read"
	input.action.tool == "fixture://static/hello"
}

needs_approval if {
	input.action.type == "prompt_get"
	input.action.tool == "greet"
}

needs_approval if input.action.type == "sampling_request"

decision := {"allow": true} if not needs_approval

decision := {
	"allow": true,
	"require_approval": {"reason": "deleting needs a human", "remember_seconds": 600},
	"appeal_path": "https://approvals.example.test",
} if needs_approval
"#;

pub fn setup(extra_policy: &str) -> Setup {
    let s = Setup::blank();
    let b = super::policy::bundle(
        s.dir.path(),
        "policy",
        "fx",
        json!({"revision": "1"}),
        POLICY,
    );
    s.write_config(&format!(
        "[policy]\n{extra_policy}\n\n[log]\ndecisions = {:?}\n\n{}bundle = {:?}\n",
        s.path("decisions.jsonl").display().to_string(),
        fixture_server("fx", &[], &s.path("r.jsonl")),
        b.display().to_string()
    ));
    s
}

/// Appends tables to the setup's servers.toml.
pub fn add_config(s: &Setup, tables: &str) {
    let mut cfg = std::fs::read_to_string(s.config()).unwrap();
    cfg.push('\n');
    cfg.push_str(tables);
    s.write_config(&cfg);
}

pub fn steps(s: &Setup) -> Vec<String> {
    s.decisions()
        .iter()
        .filter_map(|r| r["approval"]["step"].as_str().map(String::from))
        .collect()
}

/// The approval record that settled decision `id` (`approval.final`).
pub fn settled(s: &Setup, id: &Value) -> Value {
    let finals: Vec<Value> = s
        .decisions()
        .into_iter()
        .filter(|r| r["decision_id"] == *id && r["approval"]["final"] == true)
        .collect();
    assert_eq!(finals.len(), 1, "one final approval record for {id}");
    finals[0].clone()
}

pub fn deletes(s: &Setup) -> usize {
    recorded_calls(&s.path("r.jsonl"))
        .iter()
        .filter(|c| c["params"]["name"] == "destructive_delete")
        .count()
}

pub fn reasons(r: &rmcp::model::CallToolResult) -> Value {
    r.meta.as_ref().unwrap().0["dev.gavel/decision"]["reasons"].clone()
}
