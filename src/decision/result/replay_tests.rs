//! A logged result re-decided: a candidate that redacts more finds what it
//! would remove in the logged output; the logged policy itself finds
//! nothing left to do.

use serde_json::{Value, json};

use super::replay;
use crate::decision::Enforcer;
use crate::decision::active::Policy;
use crate::decision::result::tests::{one, permit, result_records, text_result};
use crate::decision::result::{OutputKind, ResultVerdict};

const LOGGED: &str = r#"package p
decision := {"allow": true}
result := {"redact": {"patterns": ["email"]}}
"#;

const STRICTER: &str = r#"package p
decision := {"allow": true}
result := {"redact": {"patterns": ["email", "card"]}}
"#;

/// `f` with the Rego engine that decides server `fx` of `e`.
fn with_engine<T>(e: &Enforcer, f: impl FnOnce(&crate::decision::engine::PolicyEngine) -> T) -> T {
    let active = e.servers["fx"].active.load_full();
    let Policy::Rego(engine) = &active.policy else {
        panic!("fx decides with Rego")
    };
    f(engine)
}

/// The one result record the logged policy wrote for a text with an email
/// address and a card number.
fn logged_record(dir: &std::path::Path) -> (Enforcer, Value) {
    let (e, log) = one(dir, LOGGED);
    let p = permit(&e, "read", json!({"path": "notes.txt"}));
    let r = text_result("mail ann@example.com, card 4111 1111 1111 1111");
    let ResultVerdict::Pass(_) = e.decide_result(&p, OutputKind::ToolResult, r) else {
        panic!("redacted")
    };
    let mut recs = result_records(&log);
    assert_eq!(recs.len(), 1);
    (e, recs.remove(0))
}

fn count_of(redactions: &[Value], pattern: &str) -> u64 {
    redactions
        .iter()
        .find(|r| r["pattern"] == pattern)
        .and_then(|r| r["count"].as_u64())
        .unwrap_or_else(|| panic!("{pattern} not asked for: {redactions:?}"))
}

#[test]
fn a_candidate_that_redacts_more_reports_the_difference() {
    let d = tempfile::tempdir().unwrap();
    let (_logged, rec) = logged_record(d.path());
    assert_eq!(rec["result"]["outcome"], "modified");
    let d2 = tempfile::tempdir().unwrap();
    let (candidate, _) = one(d2.path(), STRICTER);
    let now = with_engine(&candidate, |engine| replay(engine, &rec["input"])).unwrap();
    assert_eq!(now.outcome, "modified", "{now:?}");
    assert_eq!(
        count_of(&now.redactions, "card"),
        2,
        "the card number left in the text and its structured mirror"
    );
    assert_eq!(
        count_of(&now.redactions, "email"),
        0,
        "the logged policy already removed the address"
    );
}

#[test]
fn the_logged_policy_itself_reports_no_change() {
    let d = tempfile::tempdir().unwrap();
    let (logged, rec) = logged_record(d.path());
    let now = with_engine(&logged, |engine| replay(engine, &rec["input"])).unwrap();
    assert_eq!(now.outcome, "pass", "{now:?}");
    assert_eq!(count_of(&now.redactions, "email"), 0);
    assert!(now.filtered.is_empty() && now.reasons.is_empty());
}

#[test]
fn a_withheld_result_is_not_replayable() {
    let d = tempfile::tempdir().unwrap();
    let (e, _) = one(d.path(), LOGGED);
    let input = json!({"action": {"server": "fx"}, "output": {"kind": "tool_result", "withheld": true, "size_bytes": 3}});
    assert!(with_engine(&e, |engine| replay(engine, &input)).is_none());
}
