use super::*;
use crate::bundle::{BundleLimits, load_bundle};
use serde_json::json;

fn bundle(dir: &std::path::Path, rego: &str) -> Arc<Bundle> {
    bundle_with_data(dir, rego, None)
}

fn bundle_with_data(dir: &std::path::Path, rego: &str, data: Option<Value>) -> Arc<Bundle> {
    std::fs::create_dir_all(dir.join("p")).unwrap();
    if let Some(d) = data {
        std::fs::write(dir.join("p/data.json"), d.to_string()).unwrap();
    }
    std::fs::write(
        dir.join(".manifest"),
        r#"{"revision": "2", "roots": ["p"]}"#,
    )
    .unwrap();
    std::fs::write(dir.join("p/p.rego"), rego).unwrap();
    Arc::new(load_bundle(dir, &BundleLimits::default()).unwrap())
}

/// Generous (`config::TEST_EVAL_TIMEOUT`): no replay test is about the
/// limit.
fn opts() -> EngineOptions {
    EngineOptions {
        eval_timeout: crate::config::TEST_EVAL_TIMEOUT,
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

/// Denies requests that reference `pii` data.
const NO_PII: &str = "package p\ndecision := {\"allow\": true} if not \"pii\" in input.action.data_classes_referenced\ndecision := {\"allow\": false, \"reasons\": [\"pii\"]} if \"pii\" in input.action.data_classes_referenced\n";

fn classified(
    id: &str,
    tool: &str,
    path: &str,
    logged: &[&str],
    upstream: Option<&[&str]>,
) -> Value {
    let mut r = rec(id, tool, true, &[]);
    r["input"]["action"]["args"] = json!({"path": path});
    r["input"]["action"]["data_classes_referenced"] = json!(logged);
    if let Some(u) = upstream {
        r["upstream_data_classes"] = json!(u);
    }
    r
}

#[test]
fn data_classes_are_recomputed_with_the_candidates_classification() {
    let d = tempfile::tempdir().unwrap();
    let b = bundle_with_data(
        d.path(),
        NO_PII,
        Some(json!({"classification": {"paths": [{"prefix": "/hr/", "classes": ["pii"]}]}})),
    );
    // Logged under an old bundle that classified nothing: the candidate's
    // classification now flips it.
    let flipped = classified("c1", "read_file", "/hr/salaries", &[], Some(&[]));
    // Classified by the old bundle as pii, not by the candidate: allowed now.
    let mut was_pii = classified("c2", "read_file", "/public/readme", &["pii"], Some(&[]));
    was_pii["result"] = json!({"allow": false, "reasons": ["pii"]});
    // The upstream declared pii itself: that stays.
    let mut upstream = classified("c3", "read_file", "/public/x", &["pii"], Some(&["pii"]));
    upstream["result"] = json!({"allow": false, "reasons": ["pii"]});
    // An older record without upstream_data_classes keeps what it logged.
    let mut old = classified("c4", "read_file", "/public/y", &["pii"], None);
    old["result"] = json!({"allow": false, "reasons": ["pii"]});
    // The path the classification reads was masked: cannot be recomputed.
    let mut hidden = classified("c5", "read_file", "**REDACTED**", &[], Some(&[]));
    hidden["masked"] = json!(["/input/action/args/path"]);
    // Another argument was masked: no matter.
    let mut other = classified("c6", "read_file", "/public/z", &[], Some(&[]));
    other["masked"] = json!(["/input/action/args/content"]);
    let lines: Vec<String> = [flipped, was_pii, upstream, old, hidden, other]
        .iter()
        .map(Value::to_string)
        .collect();
    let s = replay(b, &lines);
    assert_eq!(s.by_tool["allow→deny fs/read_file"].examples, vec!["c1"]);
    assert_eq!(s.by_tool["deny→allow fs/read_file"].examples, vec!["c2"]);
    assert_eq!((s.allow_to_deny, s.deny_to_allow, s.unchanged), (1, 1, 3));
    assert_eq!(s.not_replayable["masked_classification_input"], 1);
}

/// Denies writes after the session saw `confidential` data.
const NO_EGRESS: &str = "package p\nseen := {e.class | some e in input.context.data_classes_seen}\ndecision := {\"allow\": true} if not \"confidential\" in seen\ndecision := {\"allow\": false, \"reasons\": [\"egress\"]} if \"confidential\" in seen\n";

/// `input.context.data_classes_seen` is replayed as logged (a candidate
/// classification recomputes the request's classes, never what the session
/// saw): the write after a confidential read flips, the fresh one does not.
#[test]
fn data_classes_seen_replay_as_logged() {
    let d = tempfile::tempdir().unwrap();
    let b = bundle_with_data(
        d.path(),
        NO_EGRESS,
        Some(json!({"classification": {"paths": [{"prefix": "/hr/", "classes": ["pii"]}]}})),
    );
    let mut after = classified("s1", "write_file", "/public/x", &[], Some(&[]));
    after["input"]["context"]["data_classes_seen"] =
        json!([{"class": "confidential", "server": "fs", "tool": "read_file"}]);
    let mut fresh = classified("s2", "write_file", "/public/x", &[], Some(&[]));
    fresh["input"]["context"]["data_classes_seen"] = json!([]);
    let lines: Vec<String> = [after, fresh].iter().map(Value::to_string).collect();
    let s = replay(b, &lines);
    assert_eq!(s.by_tool["allow→deny fs/write_file"].examples, vec!["s1"]);
    assert_eq!((s.allow_to_deny, s.unchanged), (1, 1));
}

#[test]
fn a_candidate_alone_over_a_log_of_several_servers_is_refused_naming_them() {
    let d = tempfile::tempdir().unwrap();
    let b = bundle(d.path(), READS_ONLY);
    let mut other = rec("o1", "read_file", true, &[]);
    other["input"]["action"]["server"] = json!("db");
    let log = [rec("f1", "read_file", true, &[]), other]
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    let mut r = Replayer::new(Bundles::Only(vec![b.clone()]), None, opts());
    let e = r
        .run(std::io::Cursor::new(log.clone()), |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("several servers (db, fs)") && e.contains("--server"),
        "{e}"
    );
    // With --server it replays that one.
    let mut r = Replayer::new(Bundles::Only(vec![b]), Some("db".into()), opts());
    r.run(std::io::Cursor::new(log), |_| {}).unwrap();
    assert_eq!((r.summary.unchanged, r.summary.other_server), (1, 1));
}

/// A decision record that allowed only with a human's approval.
fn asked(id: &str, tool: &str) -> Value {
    let mut r = rec(id, tool, true, &[]);
    r["result"]["require_approval"] = json!({"reason": "old rule"});
    r
}

/// The final approval step of decision `id`, as `host::approval` logs it.
fn step(id: &str, tool: &str, step: &str, allow: bool) -> Value {
    let reasons: Vec<&str> = if allow {
        vec![]
    } else {
        vec!["approval_declined"]
    };
    json!({
        "decision_id": id, "path": "gavel/approval",
        "approval": {"step": step, "final": true, "type": "tool_call", "server": "fs", "tool": tool},
        "result": {"allow": allow, "reasons": reasons},
    })
}

#[test]
fn an_approval_decision_ends_as_its_final_step_says() {
    let d = tempfile::tempdir().unwrap();
    // Candidate: writes still need a human, deletes are denied, reads are
    // allowed outright.
    let b = bundle(
        d.path(),
        "package p\ndefault decision := {\"allow\": false, \"reasons\": [\"no_deletes\"]}\ndecision := {\"allow\": true, \"require_approval\": {\"reason\": \"writes need a human\"}} if startswith(input.action.tool, \"write\")\ndecision := {\"allow\": true} if startswith(input.action.tool, \"read\")\n",
    );
    let requested = json!({
        "decision_id": "w1", "path": "gavel/approval",
        "approval": {"step": "requested", "final": false, "type": "tool_call", "server": "fs", "tool": "write_file"},
    });
    let lines: Vec<String> = [
        // Declined; the candidate asks too: the human's no stands.
        asked("w1", "write_file"),
        requested,
        step("w1", "write_file", "declined", false),
        // Declined; the candidate allows reads outright: a real flip.
        asked("r1", "read_file"),
        step("r1", "read_file", "declined", false),
        // Approved; the candidate denies deletes: a real flip.
        asked("x1", "delete"),
        step("x1", "delete", "accepted", true),
        // Approved; the candidate asks too: unchanged.
        asked("w2", "write_file"),
        step("w2", "write_file", "remembered", true),
        // Never settled (gavel stopped while asking).
        asked("w3", "write_file"),
    ]
    .iter()
    .map(Value::to_string)
    .collect();
    let s = replay(b, &lines);
    assert_eq!(s.total, 5);
    assert_eq!(s.approval_steps, 5);
    assert_eq!((s.unchanged, s.allow_to_deny, s.deny_to_allow), (2, 1, 1));
    assert_eq!(s.by_tool["deny→allow fs/read_file"].examples, vec!["r1"]);
    assert_eq!(s.by_reason["deny→allow approval_declined"].count, 1);
    assert_eq!(s.by_tool["allow→deny fs/delete"].examples, vec!["x1"]);
    assert_eq!(s.by_reason["allow→deny no_deletes"].count, 1);
    assert_eq!(s.reasons_changed, 0, "a declined approval is gavel-side");
    assert_eq!(s.not_replayable["approval_unsettled"], 1);
}

#[test]
fn approval_added_or_removed_is_reported_apart_from_flips() {
    let d = tempfile::tempdir().unwrap();
    let b = bundle(
        d.path(),
        "package p\ndecision := {\"allow\": true, \"require_approval\": {\"reason\": \"writes need a human\"}} if startswith(input.action.tool, \"write\")\ndecision := {\"allow\": true} if not startswith(input.action.tool, \"write\")\n",
    );
    let lines: Vec<String> = [
        rec("w1", "write_file", true, &[]),
        asked("r1", "read_file"),
        step("r1", "read_file", "accepted", true),
        rec("r2", "read_file", true, &[]),
    ]
    .iter()
    .map(Value::to_string)
    .collect();
    let s = replay(b, &lines);
    assert_eq!((s.unchanged, s.flips()), (3, 0));
    assert_eq!((s.approval_added, s.approval_removed), (1, 1));
    assert_eq!(
        s.by_approval["approval added fs/write_file"].examples,
        vec!["w1"]
    );
    assert_eq!(
        s.by_approval["approval removed fs/read_file"].examples,
        vec!["r1"]
    );
    assert!(
        render(&s).contains("approval added     1 / removed 1"),
        "{}",
        render(&s)
    );
}

#[test]
fn an_over_long_line_is_malformed_and_skipped_without_losing_the_next() {
    let d = tempfile::tempdir().unwrap();
    let b = bundle(d.path(), READS_ONLY);
    let mut long = rec("big", "read_file", true, &[]);
    long["input"]["action"]["args"]["content"] = json!("x".repeat(5000));
    let log = [
        long.to_string(),
        rec("ok", "read_file", true, &[]).to_string(),
    ]
    .join("\n");
    let mut r = Replayer::new(Bundles::Only(vec![b]), None, opts()).with_max_line_bytes(1000);
    r.run(
        std::io::BufReader::with_capacity(64, std::io::Cursor::new(log)),
        |_| {},
    )
    .unwrap();
    assert_eq!((r.summary.malformed, r.summary.too_long), (1, 1));
    assert_eq!(r.summary.malformed_lines, vec![1]);
    assert_eq!(r.summary.unchanged, 1, "the next line is read whole");
}

#[test]
fn print_and_trace_do_not_make_a_policy_unreplayable() {
    let d = tempfile::tempdir().unwrap();
    let b = bundle(
        d.path(),
        "package p\ndecision := {\"allow\": true} if {\n\tprint(\"deciding\", input.action.tool)\n\tstartswith(input.action.tool, \"read\")\n}\n",
    );
    let s = replay(b, &[rec("p1", "read_file", true, &[]).to_string()]);
    assert!(s.not_replayable.is_empty(), "{:?}", s.not_replayable);
    assert_eq!(s.unchanged, 1);
}

#[test]
fn a_long_log_streams_with_progress_and_bounded_groups() {
    let d = tempfile::tempdir().unwrap();
    let b = bundle(d.path(), READS_ONLY);
    // 3500 records, each a write to its own tool: every one flips, each
    // under a group of its own — more groups than are kept.
    let log: String = (0..3500)
        .map(|i| rec(&format!("d{i}"), &format!("write_{i}"), true, &[]).to_string() + "\n")
        .collect();
    let mut r = Replayer::new(Bundles::Only(vec![b]), None, opts());
    let mut ticks = vec![];
    r.run(std::io::Cursor::new(log), |n| ticks.push(n)).unwrap();
    assert_eq!(ticks, vec![1000, 2000, 3000], "progress every 1000 lines");
    let s = r.summary;
    assert_eq!((s.total, s.allow_to_deny), (3500, 3500));
    assert_eq!(s.by_tool.len(), MAX_GROUPS, "groups are capped");
    assert_eq!(
        s.by_reason["allow→deny write_denied"].count, 3500,
        "an existing group keeps counting"
    );
    assert!(
        s.by_reason["allow→deny write_denied"].examples.len() <= MAX_EXAMPLES,
        "examples are capped"
    );
}
