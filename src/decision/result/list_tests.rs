//! Resource lists through a real enforcer: one result_item rule decides
//! what two identities are shown, and what a read gives; failures hide the
//! whole list; the records hold counts, never the dropped resources.

use std::sync::Arc;

use serde_json::{Value, json};

use super::super::tests::{one, result_records};
use super::*;
use crate::config::Identity;
use crate::decision::result::ResultVerdict;
use crate::decision::{Verdict, result::OutputKind};

/// Lists are filtered per resource; reads are filtered by the same
/// per-item rule and denied when it drops what was read. `admin`s see
/// everything, others nothing under `secret`.
const SCOPED: &str = r#"package p
decision := {"allow": true}
default result := {"redact": {"patterns": ["email"]}}
result := {"filter": {"items": "content"}, "redact": {"patterns": ["email"]}} if input.output.kind == "resource_list"
result := {"deny": true, "reasons": ["resource_hidden"]} if {
	input.output.kind == "resource_contents"
	some c in input.output.contents
	not result_item with input.item as {"kind": "block", "uri": c.uri}
}
default result_item := false
result_item if not contains(input.item.uri, "secret")
result_item if "admin" in input.user.groups
"#;

fn listed() -> Vec<Value> {
    vec![
        json!({"uri": "demo://open/a", "name": "a", "description": "ask ann@example.com"}),
        json!({"uri": "demo://secret/ann@example.com", "name": "s", "mimeType": "text/plain"}),
        json!({"uri": "demo://open/b", "name": "b"}),
    ]
}

fn ctx(groups: &[&str]) -> DecisionContext {
    let mut id = Identity::default();
    id.user.id = "u".into();
    id.user.groups = groups.iter().map(|g| g.to_string()).collect();
    DecisionContext {
        identity: Some(Arc::new(id)),
        ..Default::default()
    }
}

fn uris(v: &[Value]) -> Vec<&str> {
    v.iter().map(|r| r["uri"].as_str().unwrap()).collect()
}

#[test]
fn one_item_rule_scopes_what_each_identity_is_listed_and_reads() {
    let d = tempfile::tempdir().unwrap();
    let (e, log) = one(d.path(), SCOPED);
    let (user, admin) = (ctx(&[]), ctx(&["admin"]));
    let policy = e.resource_list_policy("fx", &user).expect("a result rule");
    let ListVerdict::Shown(shown) = e.decide_resource_list(&policy, "fx", &user, listed()) else {
        panic!("filtered")
    };
    assert_eq!(uris(&shown), ["demo://open/a", "demo://open/b"]);
    assert_eq!(
        shown[0]["description"], "ask [REDACTED:email]",
        "what a list says of a resource is redacted"
    );
    let policy = e.resource_list_policy("fx", &admin).unwrap();
    let ListVerdict::Shown(all) = e.decide_resource_list(&policy, "fx", &admin, listed()) else {
        panic!("redacted")
    };
    assert_eq!(
        uris(&all),
        uris(&listed()),
        "a URI is never redacted: it is the resource's address"
    );

    let recs = result_records(&log);
    assert_eq!(recs.len(), 2, "one record per list decision: {recs:?}");
    let r = &recs[0];
    assert_eq!(r["result_of"], Value::Null, "a list answers no request");
    assert_eq!(r["input"]["action"]["type"], "resource_list");
    assert_eq!(r["input"]["action"]["tool"], LIST_TOOL);
    assert_eq!(r["input"]["output"]["kind"], "resource_list");
    assert_eq!(r["result"]["outcome"], "modified");
    assert_eq!(r["result"]["filtered"][0]["evaluated"], 3);
    assert_eq!(r["result"]["filtered"][0]["dropped"], 1);
    assert_eq!(r["result"]["filtered"][0]["rule"], "data.p.result_item");
    assert!(
        !r.to_string().contains("demo://secret"),
        "a dropped resource is never logged: {r}"
    );

    // A read of the hidden resource is refused by the same rule; the
    // admin reads it.
    for (who, refused) in [(&user, true), (&admin, false)] {
        let action = Action::new(
            ActionType::ResourceRead,
            "fx",
            "demo://secret/x",
            json!({"uri": "demo://secret/x"}),
        );
        let Verdict::Allow(p) = e.decide(&action, who) else {
            panic!("the request is allowed")
        };
        let read = json!({"contents": [{"uri": "demo://secret/x", "text": "t"}]});
        match e.decide_result(&p, OutputKind::ResourceContents, read) {
            ResultVerdict::Deny(d) if refused => assert_eq!(d.reasons, ["resource_hidden"]),
            ResultVerdict::Unchanged(_) if !refused => {}
            other => panic!("refused {refused}: {other:?}"),
        }
    }
}

#[test]
fn without_a_result_rule_there_is_no_list_policy() {
    let d = tempfile::tempdir().unwrap();
    let (e, log) = one(d.path(), "package p\ndecision := {\"allow\": true}\n");
    assert!(e.resource_list_policy("fx", &ctx(&[])).is_none());
    assert!(e.resource_list_policy("nope", &ctx(&[])).is_none());
    assert!(result_records(&log).is_empty());
}

#[test]
fn a_denied_or_undecidable_list_hides_every_resource_and_says_why() {
    for (rego, code, outcome) in [
        (
            "result := {\"deny\": true, \"reasons\": [\"no_lists\"]}",
            "no_lists",
            "deny",
        ),
        (
            "result := {\"filter\": {\"items\": \"content\"}}\nresult_item := \"yes\"",
            "policy_bad_decision",
            "error",
        ),
        (
            "result := {\"redact\": {\"patterns\": [\"undeclared\"]}}",
            "policy_bad_decision",
            "error",
        ),
    ] {
        let d = tempfile::tempdir().unwrap();
        let (e, log) = one(
            d.path(),
            &format!("package p\ndecision := {{\"allow\": true}}\n{rego}\n"),
        );
        let c = ctx(&[]);
        let policy = e.resource_list_policy("fx", &c).unwrap();
        let ListVerdict::Hidden(dec) = e.decide_resource_list(&policy, "fx", &c, listed()) else {
            panic!("{rego}: hidden")
        };
        assert_eq!(dec.reasons, [code], "{rego}");
        let why = dec.remediation.unwrap();
        assert!(
            why.contains("\"fx\"") && why.contains("none of its resources are listed"),
            "{why}"
        );
        let recs = result_records(&log);
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0]["result"]["outcome"], outcome);
        assert_eq!(recs[0]["input"]["output"]["withheld"], true);
    }
}

#[test]
fn a_list_policy_is_the_same_until_another_is_activated() {
    let d = tempfile::tempdir().unwrap();
    let (e, _log) = one(d.path(), SCOPED);
    let a = e.resource_list_policy("fx", &ctx(&[])).unwrap();
    let b = e.resource_list_policy("fx", &ctx(&["admin"])).unwrap();
    assert!(a.same(&b), "one activation, one policy");
    let d2 = tempfile::tempdir().unwrap();
    let (other, _log) = one(d2.path(), SCOPED);
    let c = other.resource_list_policy("fx", &ctx(&[])).unwrap();
    assert!(!a.same(&c), "another build is another policy");
}
