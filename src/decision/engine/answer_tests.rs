//! Reading a layer's answer (`answer.rs`): the production pattern's nested
//! `metadata` shape, precedence, and unknown keys.

use super::tests::one;
use serde_json::json;

#[test]
fn the_nested_metadata_shape_is_read_and_the_policys_own_figures_kept() {
    let (_d, e) = one(
        r#"package p
decision := {"allow": false, "reasons": ["r"], "remediation": "do x",
  "metadata": {"appeal_path": "https://a.test", "audit_required": true,
    "policy_version": "v9", "matched_rules": ["rule.one"], "rate_limit_remaining": 4}}
"#,
        None,
    );
    let d = e.decide(&json!({})).unwrap().decision;
    assert!(!d.allow);
    assert_eq!(d.appeal_path.as_deref(), Some("https://a.test"));
    assert!(d.audit_required);
    assert_eq!(d.remediation.as_deref(), Some("do x"));
    // gavel's own version and rule path, and the policy's beside them.
    assert!(d.policy_version.as_deref().unwrap().contains("@7"));
    assert_eq!(d.matched_rules, vec!["data.p.decision"]);
    assert_eq!(d.policy_metadata.len(), 1);
    let m = &d.policy_metadata[0];
    assert_eq!(m.policy_version.as_deref(), Some("v9"));
    assert_eq!(m.matched_rules, vec!["rule.one"]);
    assert_eq!(m.rate_limit_remaining, Some(4));
    assert!(e.warnings().is_empty(), "{:?}", e.warnings());
}

#[test]
fn top_level_fields_win_over_metadata_and_audit_required_is_the_stricter() {
    let (_d, e) = one(
        r#"package p
decision := {"allow": false, "appeal_path": "https://top.test", "audit_required": false,
  "policy_version": "top", "metadata": {"appeal_path": "https://nested.test",
  "audit_required": true, "policy_version": "nested"}}
"#,
        None,
    );
    let d = e.decide(&json!({})).unwrap().decision;
    assert_eq!(d.appeal_path.as_deref(), Some("https://top.test"));
    assert!(d.audit_required);
    assert_eq!(d.policy_metadata[0].policy_version.as_deref(), Some("top"));
}

#[test]
fn wrong_metadata_types_fail_closed_and_unknown_keys_are_warned_at_load() {
    for bad in [
        r#"{"allow": true, "metadata": "v1"}"#,
        r#"{"allow": true, "metadata": {"appeal_path": 3}}"#,
        r#"{"allow": true, "metadata": {"rate_limit_remaining": -1}}"#,
        r#"{"allow": true, "metadata": {"matched_rules": "one"}}"#,
    ] {
        let (_d, e) = one(&format!("package p\ndecision := {bad}\n"), None);
        assert_eq!(
            e.decide(&json!({})).err().unwrap().reason_code(),
            "policy_bad_decision",
            "{bad}"
        );
    }
    let (_d, e) = one(
        "package p\ndecision := {\"allow\": true, \"apeal_path\": \"x\", \"metadata\": {\"owner\": \"t\"}}\n",
        None,
    );
    let w: Vec<String> = e.warnings().iter().map(|f| f.to_string()).collect();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].contains("\"apeal_path\"") && w[1].contains("\"metadata.owner\""),
        "{w:?}"
    );
    // Enforced all the same: the unknown keys change nothing.
    assert!(e.decide(&json!({})).unwrap().decision.allow);
}
