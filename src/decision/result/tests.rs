//! Result policy through a real enforcer: bundles on disk, a decision log,
//! a request decided, then its result.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::*;
use crate::config::Config;
use crate::decision::{DecisionContext, Verdict};

pub(super) const PATTERNS: &str = r#"{"result_patterns": {
    "email": "[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\\.[A-Za-z]{2,}",
    "card": "\\b(?:\\d[ -]?){13,16}\\b"}}"#;

/// A bundle directory `name` with root `root`, the given Rego, data and
/// layer.
pub(super) fn bundle(
    dir: &Path,
    name: &str,
    root: &str,
    rego: &str,
    data: Option<&str>,
    layer: &str,
) -> PathBuf {
    let b = dir.join(name);
    std::fs::create_dir_all(b.join(root)).unwrap();
    std::fs::write(
        b.join(".manifest"),
        json!({"revision": "1", "roots": [root], "metadata": {"gavel": {"layer": layer}}})
            .to_string(),
    )
    .unwrap();
    std::fs::write(b.join(root).join("policy.rego"), rego).unwrap();
    if let Some(d) = data {
        std::fs::write(b.join(root).join("data.json"), d).unwrap();
    }
    b
}

/// An enforcer for server `fx` with `bundles` and a decision log.
pub(super) fn enforcer(dir: &Path, bundles: &[PathBuf]) -> (Enforcer, PathBuf) {
    let log = dir.join("decisions.jsonl");
    let list: Vec<String> = bundles
        .iter()
        .map(|b| format!("{:?}", b.display().to_string()))
        .collect();
    let toml = format!(
        "[policy]\neval_timeout = \"5s\"\n\n[log]\ndecisions = {:?}\n\n[servers.fx]\ncommand = \"x\"\npath_root = {:?}\nbundles = [{}]\n",
        log.display().to_string(),
        dir.display().to_string(),
        list.join(", ")
    );
    let config = Config::from_toml_str(&toml, &dir.join("servers.toml"), &|_| None).unwrap();
    (Enforcer::from_config(&config).unwrap(), log)
}

pub(super) fn one(dir: &Path, rego: &str) -> (Enforcer, PathBuf) {
    let b = bundle(dir, "b", "p", rego, Some(PATTERNS), "resource");
    enforcer(dir, &[b])
}

pub(super) fn permit(e: &Enforcer, tool: &str, args: Value) -> Permit {
    let action = Action::new(ActionType::ToolCall, "fx", tool, args);
    match e.decide(&action, &DecisionContext::default()) {
        Verdict::Allow(p) => p,
        Verdict::Deny(d) => panic!("denied: {d:?}"),
    }
}

pub(super) fn records(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub(super) fn result_records(log: &Path) -> Vec<Value> {
    records(log)
        .into_iter()
        .filter(|r| r.get("result_of").is_some())
        .collect()
}

pub(super) fn text_result(text: &str) -> Value {
    json!({"content": [{"type": "text", "text": text}], "structuredContent": {"content": text}, "isError": false})
}

const REDACTING: &str = r#"package p
decision := {"allow": true}
default result := {}
result := {"redact": {"patterns": ["email", "card"], "pointers": ["/secret"]}} if input.action.tool == "read"
"#;

#[test]
fn without_a_result_rule_nothing_is_kept_and_results_pass_untouched() {
    let d = tempfile::tempdir().unwrap();
    let (e, log) = one(d.path(), "package p\ndecision := {\"allow\": true}\n");
    let p = permit(&e, "read", json!({}));
    assert!(!p.decides_result());
    let r = text_result("ann@example.com");
    match e.decide_result(&p, OutputKind::ToolResult, r.clone()) {
        ResultVerdict::Unchanged(v) => assert_eq!(v, r),
        other => panic!("{other:?}"),
    }
    assert!(result_records(&log).is_empty());
}

#[test]
fn redaction_holds_in_text_and_mirror_and_the_record_never_holds_the_values() {
    let d = tempfile::tempdir().unwrap();
    let (e, log) = one(d.path(), REDACTING);
    let p = permit(&e, "read", json!({"path": "notes.txt"}));
    assert!(p.decides_result());
    let text = format!(
        "{}contact ann@example.com, card 4111-1111-1111-1111",
        "padding ".repeat(4000)
    );
    let mut r = text_result(&text);
    r["structuredContent"]["secret"] = json!("hunter2");
    let out = match e.decide_result(&p, OutputKind::ToolResult, r) {
        ResultVerdict::Pass(v) => v,
        other => panic!("{other:?}"),
    };
    let t = out["content"][0]["text"].as_str().unwrap();
    assert!(
        t.ends_with("contact [REDACTED:email], card [REDACTED:card]"),
        "past the policy's prefix too"
    );
    assert_eq!(
        out["structuredContent"]["content"], t,
        "the mirror says the same"
    );
    assert_eq!(out["structuredContent"]["secret"], apply::REDACTED);
    let recs = result_records(&log);
    assert_eq!(recs.len(), 1);
    let rec = &recs[0];
    assert_eq!(rec["result_of"], json!(p.decision.decision_id));
    assert_ne!(rec["decision_id"], rec["result_of"]);
    assert_eq!(rec["path"], "p/result");
    assert_eq!(rec["result"]["outcome"], "modified");
    let line = serde_json::to_string(rec).unwrap();
    for gone in ["ann@example.com", "4111-1111", "hunter2"] {
        assert!(!line.contains(gone), "the record holds {gone}: {line}");
    }
    let counts: Vec<(String, u64)> = rec["result"]["redactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let what = r
                .get("pattern")
                .or(r.get("pointer"))
                .unwrap()
                .as_str()
                .unwrap()
                .to_string();
            (what, r["count"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(
        counts,
        [
            ("/secret".to_string(), 1),
            ("email".to_string(), 2),
            ("card".to_string(), 2)
        ],
        "text and mirror both counted"
    );
}

#[test]
fn a_result_denial_says_the_call_happened_and_records_no_output() {
    let d = tempfile::tempdir().unwrap();
    let (e, log) = one(
        d.path(),
        "package p\ndecision := {\"allow\": true}\nresult := {\"deny\": true, \"reasons\": [\"secret_output\"]}\n",
    );
    let p = permit(&e, "read", json!({}));
    let ResultVerdict::Deny(dec) =
        e.decide_result(&p, OutputKind::ToolResult, text_result("top secret"))
    else {
        panic!("not denied")
    };
    assert!(!dec.allow);
    assert_eq!(dec.reasons, ["secret_output"]);
    assert!(
        dec.remediation
            .as_deref()
            .unwrap()
            .contains("already been carried out")
    );
    let rec = &result_records(&log)[0];
    assert_eq!(rec["result"]["outcome"], "deny");
    assert_eq!(rec["decision_id"], json!(dec.decision_id));
    assert_eq!(rec["input"]["output"]["withheld"], true);
    assert!(!serde_json::to_string(rec).unwrap().contains("top secret"));
}

#[test]
fn every_failing_result_rule_withholds_the_result() {
    for (rego, code) in [
        // Undefined (no default).
        ("result := {} if false", "policy_bad_decision"),
        ("result := {\"allow\": true}", "policy_bad_decision"),
        (
            "result := {\"redact\": {\"patterns\": [\"phone\"]}}",
            "policy_bad_decision",
        ),
        (
            "result := {\"redact\": {\"pointers\": [\"secret\"]}}",
            "policy_bad_decision",
        ),
        (
            "result := {\"filter\": {\"items\": \"lines\"}}",
            "policy_bad_decision",
        ),
        (
            "result := {\"filter\": {\"items\": \"lines\"}}\nresult_item := \"yes\"",
            "policy_bad_decision",
        ),
        (
            "result := {\"filter\": {\"items\": \"tree\"}}\nresult_item := true",
            "policy_bad_decision",
        ),
        (
            "result := x if { x := {\"deny\": input.output.nope.nope} }\n",
            "policy_bad_decision",
        ),
    ] {
        let d = tempfile::tempdir().unwrap();
        let (e, log) = one(
            d.path(),
            &format!("package p\ndecision := {{\"allow\": true}}\n{rego}\n"),
        );
        let p = permit(&e, "read", json!({}));
        let v = e.decide_result(&p, OutputKind::ToolResult, text_result("a\nb"));
        let ResultVerdict::Withheld(dec) = v else {
            panic!("{rego}: {v:?}")
        };
        assert_eq!(dec.reasons, [code], "{rego}: {dec:?}");
        assert!(
            dec.remediation
                .as_deref()
                .unwrap()
                .contains("already been carried out")
        );
        let rec = &result_records(&log)[0];
        assert_eq!(rec["result"]["outcome"], "error", "{rego}");
        assert!(rec["result"]["error"].is_string());
    }
}

#[test]
fn layers_combine_denials_win_and_redactions_accumulate() {
    let d = tempfile::tempdir().unwrap();
    let a = bundle(
        d.path(),
        "a",
        "p",
        "package p\ndecision := {\"allow\": true}\nresult := {\"redact\": {\"patterns\": [\"email\"]}}\n",
        Some(PATTERNS),
        "resource",
    );
    let b = bundle(
        d.path(),
        "b",
        "q",
        "package q\ndecision := {\"allow\": true}\ndefault result := {}\nresult := {\"redact\": {\"pointers\": [\"/id\"]}} if not input.output.isError\nresult := {\"deny\": true} if input.output.isError\n",
        None,
        "compliance",
    );
    let o = bundle(
        d.path(),
        "o",
        "o",
        "package o\ndecision := {\"waive\": [\"result_denied\"]}\nresult := {}\n",
        None,
        "override",
    );
    let (e, _log) = enforcer(d.path(), &[a, b, o]);
    let p = permit(&e, "read", json!({}));
    let r = json!({"content": [{"type": "text", "text": "ann@example.com"}], "structuredContent": {"id": 7}, "isError": false});
    let ResultVerdict::Pass(out) = e.decide_result(&p, OutputKind::ToolResult, r.clone()) else {
        panic!()
    };
    assert_eq!(out["content"][0]["text"], "[REDACTED:email]");
    assert_eq!(out["structuredContent"]["id"], apply::REDACTED);
    // Nothing to redact (no address, no `/id`): the upstream's own answer
    // is handed over, not a re-typed copy.
    let clean = json!({"content": [{"type": "text", "text": "no address"}], "structuredContent": {"n": 7}, "isError": false});
    match e.decide_result(&p, OutputKind::ToolResult, clean.clone()) {
        ResultVerdict::Unchanged(v) => assert_eq!(v, clean),
        other => panic!("{other:?}"),
    }
    let mut err = r;
    err["isError"] = json!(true);
    let v = e.decide_result(&p, OutputKind::ToolResult, err);
    let ResultVerdict::Deny(dec) = v else {
        panic!("{v:?}")
    };
    assert_eq!(
        dec.reasons,
        ["result_denied"],
        "an override cannot waive a result denial"
    );
    assert_eq!(dec.matched_rules, ["data.q.result"]);
}

const FILTERING: &str = r#"package p
decision := {"allow": true}
result := {"filter": {"items": input.action.args.items}}
default result_item := false
result_item if not "confidential" in input.item.data_classes
"#;

fn filtering(dir: &Path) -> (Enforcer, PathBuf) {
    let data = r#"{"classification": {"paths": [{"prefix": "confidential", "classes": ["confidential"]}]}}"#;
    let b = bundle(dir, "b", "p", FILTERING, Some(data), "resource");
    enforcer(dir, &[b])
}

fn filtered(e: &Enforcer, items: &str, path: &str, r: Value) -> Value {
    let p = permit(e, "search", json!({"items": items, "path": path}));
    match e.decide_result(&p, OutputKind::ToolResult, r) {
        // Unchanged: the rule kept every item.
        ResultVerdict::Pass(v) | ResultVerdict::Unchanged(v) => v,
        other => panic!("{other:?}"),
    }
}

#[test]
fn lines_and_tree_entries_are_filtered_by_path_class_in_text_and_mirror() {
    let d = tempfile::tempdir().unwrap();
    let (e, log) = filtering(d.path());
    let root = d.path().display().to_string();
    let text = format!(
        "{root}/public/a.txt\n{root}/confidential/plan.txt\n{root}/confidential\n{root}/b.txt"
    );
    let out = filtered(&e, "lines", ".", text_result(&text));
    let want = format!("{root}/public/a.txt\n{root}/b.txt");
    assert_eq!(out["content"][0]["text"], want);
    assert_eq!(out["structuredContent"]["content"], want);
    let tree = json!([
        {"name": "confidential", "type": "directory", "children": [{"name": "plan.txt", "type": "file"}]},
        {"name": "public", "type": "directory", "children": [
            {"name": "a.txt", "type": "file"},
            {"name": "confidential", "type": "directory", "children": []}]},
        {"name": "b.txt", "type": "file"},
    ]);
    let pretty = serde_json::to_string_pretty(&tree).unwrap();
    let out = filtered(&e, "tree", ".", text_result(&pretty));
    let kept: Value = serde_json::from_str(out["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(
        kept,
        json!([
            {"name": "public", "type": "directory", "children": [
                {"name": "a.txt", "type": "file"},
                {"name": "confidential", "type": "directory", "children": []}]},
            {"name": "b.txt", "type": "file"},
        ]),
        "only the top-level confidential/ is classified; its subtree goes with it"
    );
    assert_eq!(
        out["structuredContent"]["content"],
        out["content"][0]["text"]
    );
    assert!(
        out["content"][0]["text"].as_str().unwrap().contains("\n  "),
        "still pretty"
    );
    // Seen from inside confidential/, every entry is.
    let out = filtered(
        &e,
        "tree",
        "confidential",
        text_result(&json!([{"name": "x", "type": "file"}]).to_string()),
    );
    assert_eq!(out["content"][0]["text"], "[]");
    let recs = result_records(&log);
    assert_eq!(recs[0]["result"]["filtered"][0]["dropped"], 2);
    assert_eq!(recs[0]["result"]["filtered"][0]["evaluated"], 4);
    assert_eq!(
        recs[0]["result"]["filtered"][0]["rule"],
        "data.p.result_item"
    );
    assert!(
        !serde_json::to_string(&recs[0])
            .unwrap()
            .contains("plan.txt"),
        "dropped items are not in the record"
    );
}

#[test]
fn content_blocks_and_structured_elements_are_filtered() {
    let d = tempfile::tempdir().unwrap();
    let (e, _log) = filtering(d.path());
    let r = json!({"content": [
        {"type": "resource_link", "uri": "file:///nowhere/confidential/x", "name": "x"},
        {"type": "resource_link", "uri": "confidential/y.txt", "name": "y"},
        {"type": "text", "text": "kept"}]});
    let out = filtered(&e, "content", ".", r);
    assert_eq!(
        out["content"],
        json!([{"type": "resource_link", "uri": "file:///nowhere/confidential/x", "name": "x"}, {"type": "text", "text": "kept"}])
    );
    let data = json!({"hits": [{"path": "confidential/a"}, {"path": "public/b"}, 3]});
    let r =
        json!({"content": [{"type": "text", "text": data.to_string()}], "structuredContent": data});
    let b = bundle(
        d.path(),
        "s",
        "p",
        &FILTERING.replace(
            "input.action.args.items}",
            "\"structured\", \"pointer\": \"/hits\"}",
        ),
        Some(
            r#"{"classification": {"paths": [{"prefix": "confidential", "classes": ["confidential"]}]}}"#,
        ),
        "resource",
    );
    let d2 = tempfile::tempdir().unwrap();
    let (e2, _) = enforcer(d2.path(), &[b]);
    let p = permit(&e2, "search", json!({}));
    let ResultVerdict::Pass(out) = e2.decide_result(&p, OutputKind::ToolResult, r) else {
        panic!()
    };
    assert_eq!(
        out["structuredContent"],
        json!({"hits": [{"path": "public/b"}, 3]})
    );
    assert_eq!(
        out["content"][0]["text"],
        out["structuredContent"].to_string(),
        "the JSON mirror follows"
    );
}

#[test]
fn more_items_than_the_bound_withhold_the_result() {
    let d = tempfile::tempdir().unwrap();
    let (e, _log) = filtering(d.path());
    let at_bound = vec!["x"; items::MAX_ITEMS].join("\n");
    let out = filtered(&e, "lines", ".", text_result(&at_bound));
    assert_eq!(out["content"][0]["text"], at_bound);
    let over = vec!["x"; items::MAX_ITEMS + 1].join("\n");
    let p = permit(&e, "search", json!({"items": "lines"}));
    let v = e.decide_result(&p, OutputKind::ToolResult, text_result(&over));
    let ResultVerdict::Withheld(dec) = v else {
        panic!("{v:?}")
    };
    assert_eq!(dec.reasons, ["result_too_many_items"]);
}

#[test]
fn other_kinds_are_decided_too() {
    let d = tempfile::tempdir().unwrap();
    let (e, _log) = one(
        d.path(),
        "package p\ndecision := {\"allow\": true}\nresult := {\"redact\": {\"patterns\": [\"email\"]}}\n",
    );
    for (kind, action, r, at) in [
        (
            OutputKind::ResourceContents,
            ActionType::ResourceRead,
            json!({"contents": [{"uri": "file:///a", "text": "ann@example.com"}]}),
            "/contents/0/text",
        ),
        (
            OutputKind::PromptMessages,
            ActionType::PromptGet,
            json!({"messages": [{"role": "user", "content": {"type": "text", "text": "ann@example.com"}}]}),
            "/messages/0/content/text",
        ),
        (
            OutputKind::Completion,
            ActionType::Completion,
            json!({"completion": {"values": ["ann@example.com"]}}),
            "/completion/values/0",
        ),
    ] {
        let a = Action::new(action, "fx", "t", json!({}));
        let Verdict::Allow(p) = e.decide(&a, &DecisionContext::default()) else {
            panic!()
        };
        let ResultVerdict::Pass(out) = e.decide_result(&p, kind, r) else {
            panic!()
        };
        assert_eq!(out.pointer(at).unwrap(), "[REDACTED:email]", "{kind:?}");
    }
}

/// A result decided once (`decide_result_once`, the session's way: the
/// permit's copy of the request's input goes into the record) is decided and
/// recorded exactly as by `decide_result`: the same verdict, the same record
/// but for its own ids and times; afterwards the permit decides no result.
#[test]
fn a_result_decided_once_is_decided_and_recorded_as_by_decide_result() {
    let d = tempfile::tempdir().unwrap();
    let (e, log) = one(d.path(), REDACTING);
    let args = json!({"path": "notes.txt"});
    let mut r = text_result("mail ann@example.com");
    r["structuredContent"]["secret"] = json!("hunter2");
    let p = permit(&e, "read", args.clone());
    let shared = e.decide_result(&p, OutputKind::ToolResult, r.clone());
    let mut q = permit(&e, "read", args);
    let once = e.decide_result_once(&mut q, OutputKind::ToolResult, r);
    assert!(!q.decides_result(), "the result context is spent");
    match (shared, once) {
        (ResultVerdict::Pass(a), ResultVerdict::Pass(b)) => assert_eq!(a, b),
        other => panic!("{other:?}"),
    }
    let strip = |mut rec: Value| {
        let o = rec.as_object_mut().unwrap();
        for k in ["decision_id", "result_of", "timestamp", "metrics"] {
            o.remove(k);
        }
        let input = o["input"].as_object_mut().unwrap();
        input["context"]
            .as_object_mut()
            .unwrap()
            .remove("session_age_seconds");
        input["environment"].as_object_mut().unwrap().remove("time");
        rec
    };
    let recs = result_records(&log);
    assert_eq!(recs.len(), 2);
    assert!(recs[1]["input"]["output"].is_object(), "{}", recs[1]);
    assert_eq!(strip(recs[0].clone()), strip(recs[1].clone()));
    // A permit spent is one without a result rule's work: passed as is.
    let again = text_result("ann@example.com");
    match e.decide_result_once(&mut q, OutputKind::ToolResult, again.clone()) {
        ResultVerdict::Unchanged(v) => assert_eq!(v, again),
        other => panic!("{other:?}"),
    }
}
