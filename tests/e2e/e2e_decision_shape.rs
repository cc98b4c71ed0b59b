//! End to end: a policy that answers in the production pattern's nested
//! shape (`metadata: {policy_version, matched_rules, audit_required,
//! appeal_path, rate_limit_remaining}`) gets every field through to the
//! agent's denial — text, `_meta`, the SEP-2643 hints — and to the decision
//! log; a key gavel does not understand is a warning, never silence.

use crate::common;

use common::policy::*;
use common::*;
use serde_json::{Value, json};

const SEED_SHAPE: &str = r#"package seed

decision := {
	"allow": false,
	"reasons": ["export_blocked"],
	"remediation": "Ask data governance for an export exception.",
	"metadata": {
		"policy_version": "seed-2026.11",
		"matched_rules": ["export.block_external"],
		"audit_required": true,
		"appeal_path": "https://appeals.example.test/export",
		"rate_limit_remaining": 3,
		"owner": "team-data",
	},
} if input.action.tool == "echo"

decision := {"allow": true} if input.action.tool != "echo"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_decision_shape_reaches_the_agent_and_the_log() {
    let s = Setup::with(|s| {
        let b = bundle(s.dir.path(), "seed", "seed", json!({}), SEED_SHAPE);
        config(s, &[&b], "", "")
    });
    let client = s.connect(TestHost::new()).await;
    let r = call(&client, "echo", json!({"text": "hi"})).await.unwrap();
    assert_eq!(r.is_error, Some(true));
    let t = text(&r);
    for needle in [
        "export_blocked",
        "Ask data governance for an export exception.",
        "Appeal: https://appeals.example.test/export",
        "seed-2026.11",
        "export.block_external",
        "rate limit remaining 3",
    ] {
        assert!(t.contains(needle), "{needle} missing from the denial: {t}");
    }
    let v = serde_json::to_value(&r).unwrap();
    let meta = &v["_meta"]["dev.gavel/decision"];
    assert_eq!(meta["appeal_path"], "https://appeals.example.test/export");
    assert_eq!(meta["audit_required"], true);
    assert_eq!(meta["policy_metadata"][0]["policy_version"], "seed-2026.11");
    assert_eq!(
        meta["policy_metadata"][0]["matched_rules"],
        json!(["export.block_external"])
    );
    // gavel's own figures stay beside the policy's.
    assert_eq!(meta["matched_rules"], json!(["data.seed.decision"]));
    assert!(
        meta["policy_version"]
            .as_str()
            .unwrap()
            .contains("seed@seed-1"),
        "{meta}"
    );
    let authz = &v["_meta"]["io.modelcontextprotocol/authorization"];
    assert_eq!(authz["remediation"], "available");
    assert_eq!(
        authz["remediationHints"][0]["url"],
        "https://appeals.example.test/export"
    );
    let ok = call(&client, "echo", json!({"text": "x"})).await.unwrap();
    assert_eq!(ok.is_error, Some(true), "every echo is denied");
    let log = s.decisions();
    let rec: &Value = &log[0];
    assert_eq!(
        rec["result"]["appeal_path"],
        "https://appeals.example.test/export"
    );
    assert_eq!(rec["result"]["audit_required"], true);
    assert_eq!(
        rec["result"]["policy_metadata"][0]["policy_version"],
        "seed-2026.11"
    );
    // `gavel explain --decision` shows the policy's own account beside gavel's.
    let id = rec["decision_id"].as_str().unwrap();
    let config = s.config().display().to_string();
    let (ok, md, err) = gavel(&["explain", "--decision", id, "--config", &config]);
    assert!(ok, "{err}");
    assert!(
        md.contains("reported its own version seed-2026.11")
            && md.contains("matched rules export.block_external")
            && md.contains("https://appeals.example.test/export"),
        "{md}"
    );
    // The unknown key: a load-time lint warning naming file and line, and
    // one log line when a decision carries it (not one per call).
    let text = s.log_text();
    assert!(
        text.contains("policy lint:")
            && text.contains("seed/policy.rego:")
            && text.contains("\"metadata.owner\""),
        "{text}"
    );
    let runtime = text
        .matches("the policy's decision has a key gavel does not understand")
        .count();
    assert_eq!(runtime, 1, "{text}");
    client.cancel().await.unwrap();
}
