use super::*;
use crate::bundle::{BundleLimits, load_bundle};
use serde_json::json;
use std::time::Duration;

fn bundle(dir: &std::path::Path, rego: &str) -> Arc<Bundle> {
    std::fs::create_dir_all(dir.join("p")).unwrap();
    std::fs::write(
        dir.join(".manifest"),
        r#"{"revision": "2", "roots": ["p"]}"#,
    )
    .unwrap();
    std::fs::write(dir.join("p/p.rego"), rego).unwrap();
    Arc::new(load_bundle(dir, &BundleLimits::default()).unwrap())
}

fn opts() -> EngineOptions {
    EngineOptions {
        eval_timeout: Duration::from_millis(500),
        strict_input: false,
    }
}

const READS_ONLY: &str = "package p\ndefault decision := {\"allow\": false, \"reasons\": [\"write_denied\"]}\ndecision := {\"allow\": true} if startswith(input.action.tool, \"read\")\n";

fn rec(id: &str, tool: &str, allow: bool, reasons: &[&str]) -> Value {
    json!({
        "decision_id": id, "path": "p", "bundles": {"p": {"revision": "1", "digest": "sha256:x"}},
        "input": {"action": {"server": "fs", "tool": tool, "type": "tool_call", "args": {"content": "secret"}}},
        "result": {"allow": allow, "reasons": reasons},
    })
}

fn replay(b: Arc<Bundle>, lines: &[String]) -> Summary {
    let mut r = Replayer::new(Bundles::Only(vec![b]), None, opts());
    r.run(std::io::Cursor::new(lines.join("\n")), |_| {})
        .unwrap();
    r.summary
}

#[test]
fn flips_are_counted_and_grouped_with_examples() {
    let d = tempfile::tempdir().unwrap();
    let b = bundle(d.path(), READS_ONLY);
    let lines: Vec<String> = [
        rec("a1", "read_file", true, &[]),
        rec("a2", "write_file", true, &[]),
        rec("a3", "write_file", true, &[]),
        rec("a4", "read_file", false, &["old_reason"]),
        rec("a5", "delete", false, &["write_denied"]),
        rec("a6", "delete", false, &["other"]),
    ]
    .iter()
    .map(Value::to_string)
    .collect();
    let s = replay(b, &lines);
    assert_eq!(s.total, 6);
    assert_eq!((s.unchanged, s.allow_to_deny, s.deny_to_allow), (3, 2, 1));
    assert_eq!(s.reasons_changed, 1, "a6: denied for another reason now");
    assert_eq!(
        s.by_tool["allow→deny fs/write_file"],
        Group {
            count: 2,
            examples: vec!["a2".into(), "a3".into()]
        }
    );
    assert_eq!(s.by_tool["deny→allow fs/read_file"].count, 1);
    assert_eq!(s.by_reason["allow→deny write_denied"].count, 2);
    assert_eq!(s.by_reason["deny→allow old_reason"].count, 1);
    assert_eq!(s.logged_revisions["p"], vec!["1"]);
    assert_eq!(s.flips(), 3);
    let text = render(&s);
    assert!(text.contains("allow → deny       2"), "{text}");
}

#[test]
fn gavel_side_outcomes_and_static_rules_stand() {
    let d = tempfile::tempdir().unwrap();
    let b = bundle(d.path(), READS_ONLY);
    let mut stat = rec("s1", "write_file", false, &["tool_denied_by_config"]);
    stat["path"] = json!("gavel/static");
    let lines = vec![
        stat.to_string(),
        rec("g1", "read_file", false, &["rate_limited"]).to_string(),
    ];
    let s = replay(b, &lines);
    assert_eq!(s.gavel_side, 1);
    assert_eq!(
        (s.unchanged, s.flips()),
        (1, 0),
        "a rate-limited call stays denied"
    );
}

#[test]
fn masked_inputs_the_policy_reads_and_impure_policies_are_not_replayable() {
    let d = tempfile::tempdir().unwrap();
    let b = bundle(d.path(), READS_ONLY);
    // Masked content the policy never reads: replayable.
    let mut m = rec("m1", "read_file", true, &[]);
    m["masked"] = json!(["/input/action/args/content"]);
    // Masked tool name, which the policy reads: not replayable.
    let mut t = rec("m2", "read_file", true, &[]);
    t["erased"] = json!(["/input/action/tool"]);
    let s = replay(b, &[m.to_string(), t.to_string()]);
    assert_eq!(s.unchanged, 1);
    assert_eq!(s.not_replayable["masked_input"], 1);

    let d = tempfile::tempdir().unwrap();
    let b = bundle(
        d.path(),
        "package p\ndecision := {\"allow\": time.now_ns() > 0}\n",
    );
    let s = replay(b, &[rec("n1", "x", true, &[]).to_string()]);
    assert_eq!(s.not_replayable["non_deterministic_builtin"], 1);
    assert_eq!(s.flips(), 0);
}

#[test]
fn malformed_lines_are_counted_with_their_numbers_and_the_rest_is_replayed() {
    let d = tempfile::tempdir().unwrap();
    let b = bundle(d.path(), READS_ONLY);
    let lines = vec![
        "not json".to_string(),
        rec("ok", "read_file", true, &[]).to_string(),
        "{\"input\": {}}".to_string(),
        String::new(),
        "[1,2]".to_string(),
    ];
    let s = replay(b, &lines);
    assert_eq!(s.malformed, 3);
    assert_eq!(s.malformed_lines, vec![1, 3, 5]);
    assert_eq!(s.unchanged, 1);
}

#[test]
fn a_candidate_that_does_not_load_is_an_error_naming_the_server() {
    let d = tempfile::tempdir().unwrap();
    let b = bundle(d.path(), "package p\ndecision := {\"allow\": nope(1)}\n");
    let mut r = Replayer::new(Bundles::Only(vec![b]), None, opts());
    let e = r
        .line(1, &rec("x", "read", true, &[]).to_string())
        .unwrap_err();
    assert!(e.to_string().contains("server \"fs\""), "{e}");
}

#[test]
fn only_server_and_unknown_servers_are_skipped() {
    let d = tempfile::tempdir().unwrap();
    let b = bundle(d.path(), READS_ONLY);
    let mut r = Replayer::new(Bundles::Only(vec![b.clone()]), Some("other".into()), opts());
    r.line(1, &rec("x", "read", true, &[]).to_string()).unwrap();
    assert_eq!((r.summary.total, r.summary.other_server), (0, 1));
    let mut per = BTreeMap::new();
    per.insert("elsewhere".to_string(), vec![b]);
    let mut r = Replayer::new(Bundles::PerServer(per), None, opts());
    r.line(1, &rec("x", "read", true, &[]).to_string()).unwrap();
    assert_eq!((r.summary.total, r.summary.other_server), (0, 1));
}
