//! Memoization and the result step's projection, case by case, through
//! whole engines: the example bundles decide alike memoized and in full,
//! what is (and is never) memoized, and result rules answer on the
//! projection of their input as on the whole of it. Beside `memo_tests`
//! (the generated differential over every bundle) and apart from `tests`
//! (the engine's own decisions) because these are the memo's contract on
//! hand-picked cases.

use super::tests::{one, opts, write_bundle};
use super::*;
use crate::bundle::{BundleLimits, load_bundle};
use serde_json::json;
use std::sync::Arc;

/// Memoized layers decide exactly as evaluating every layer on the full
/// input does, for every example policy over a spread of inputs drawn from a
/// small space (so layers hit their memo) that exercises each rule.
// One piece (over 80 lines) because most of it is the case space — servers,
// tools, paths, users, clocks — as tables; the loop that compares is short.
#[test]
fn memoized_decisions_equal_full_evaluation() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bundles");
    let load = |n: &str| Arc::new(load_bundle(&root.join(n), &BundleLimits::default()).unwrap());
    let shared = ["identity", "compliance", "workflow"];
    let servers: [(&str, &[&str]); 3] = [
        ("filesystem", &["filesystem", "override"]),
        ("everything", &["everything"]),
        ("time", &["time"]),
    ];
    let tools = [
        "read_text_file",
        "write_file",
        "move_file",
        "list_directory",
        "echo",
        "get-env",
        "trigger-long-running-operation",
        "get_current_time",
        "unknown",
    ];
    let args = [
        json!({"path": "demo-data/public/a.txt"}),
        json!({"path": "demo-data/../etc/passwd"}),
        json!({"path": "/etc/passwd"}),
        json!({"paths": ["demo-data/confidential/x", "demo-data/public/y"]}),
        json!({"source": "demo-data/public/a", "destination": "demo-data/b"}),
        json!({"duration": 100, "steps": 3}),
        json!({}),
    ];
    let groups = [json!(["engineering"]), json!(["sre-oncall"]), json!([])];
    let types = ["tool_call", "resource_read", "prompt_get"];
    let mut hits = 0;
    for (server, own) in servers {
        let bundles: Vec<_> = own.iter().chain(shared.iter()).map(|n| load(n)).collect();
        let memo = PolicyEngine::build(server, bundles.clone(), &opts()).unwrap();
        assert!(
            memo.bundles.iter().all(|b| b.memo.is_some()),
            "{server}: every example layer is memoizable"
        );
        let mut full = PolicyEngine::build(server, bundles, &opts()).unwrap();
        full.bundles.iter_mut().for_each(|b| b.memo = None);
        let mut seed = 11u64;
        let mut pick = |n: usize| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize % n
        };
        for _ in 0..600 {
            let user = ["alice", "unknown-user"][pick(2)];
            let group = groups[pick(groups.len())].clone();
            let cleared = [["public", "internal"], ["public", "confidential"]][pick(2)];
            let kind = types[pick(types.len())];
            let tool = tools[pick(tools.len())];
            let a = args[pick(args.len())].clone();
            let classes = [vec![], vec!["confidential"], vec!["pii"]][pick(3)].clone();
            let same = [0, 3, 100][pick(3)];
            let per_minute = [0, 10, 1000][pick(3)];
            let tokens = [0, 10_000, 10_000_000][pick(3)];
            let region = ["eu-west-1", "us-east-1"][pick(2)];
            let input = json!({
                "agent": {"id": "a", "scope": ["tools:call"]},
                "user": {"id": user, "groups": group, "data_classifications_authorized": cleared},
                "action": {
                    "type": kind, "server": server, "tool": tool, "args": a,
                    "annotations": {}, "data_classes_referenced": classes,
                },
                "context": {
                    "turn_count": pick(1000), "consecutive_same_tool": same,
                    "calls_last_minute": per_minute, "cumulative_tokens": tokens,
                    "session_age_seconds": pick(100000),
                },
                "environment": {"region": region, "is_production": pick(2) == 0},
            });
            let before: usize = memo
                .bundles
                .iter()
                .map(|b| b.memo.as_ref().unwrap().len())
                .sum();
            let a = memo.decide(&input).unwrap();
            let after: usize = memo
                .bundles
                .iter()
                .map(|b| b.memo.as_ref().unwrap().len())
                .sum();
            hits += memo.bundles.len() - (after - before);
            // The reference never reuses an engine (fresh clones), while
            // `memo` reuses pooled ones: equality also shows reuse leaks
            // nothing from one evaluation into the next.
            full.pool.clear();
            let b = full.decide(&input).unwrap();
            assert_eq!(
                a.decision, b.decision,
                "{server}: memoized and full differ on {input}"
            );
        }
    }
    assert!(hits > 1000, "the memo is used ({hits} layer hits)");
}

/// Impure builtins and unlisted input reads are never memoized; a layer
/// that reads another bundle's rules keys on what both read.
#[test]
fn what_is_memoized() {
    let (_d, e) = one(
        "package p\ndecision := {\"allow\": time.now_ns() > 0}\n",
        None,
    );
    assert!(e.bundles[0].memo.is_none());
    let (_d, e) = one(
        "package p\ndecision := {\"allow\": count(input) > 0}\n",
        None,
    );
    assert!(e.bundles[0].memo.is_none());
    let d1 = tempfile::tempdir().unwrap();
    let a = write_bundle(
        d1.path(),
        json!({"roots": ["p"]}),
        "package p\nok if input.user.id == \"x\"\ndecision := {\"allow\": ok}\n",
        None,
    );
    let d2 = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d2.path().join("q")).unwrap();
    std::fs::write(d2.path().join(".manifest"), r#"{"roots": ["q"]}"#).unwrap();
    std::fs::write(
        d2.path().join("q/q.rego"),
        "package q\ndecision := {\"allow\": data.p.ok} if input.action.tool == \"t\"\n",
    )
    .unwrap();
    let b = Arc::new(load_bundle(d2.path(), &BundleLimits::default()).unwrap());
    let e = PolicyEngine::build("srv", vec![a, b], &opts()).unwrap();
    let key = |i: usize| {
        e.bundles[i].memo.as_ref().unwrap().project(
            &json!({"user": {"id": "x", "groups": []}, "action": {"tool": "t", "args": {}}}),
        )
    };
    assert_eq!(key(0), json!({"user": {"id": "x"}}));
    assert_eq!(
        key(1),
        json!({"user": {"id": "x"}, "action": {"tool": "t"}})
    );
    let d = e
        .decide(&json!({"user": {"id": "x"}, "action": {"tool": "t"}}))
        .unwrap();
    assert!(d.decision.allow);
    let d = e
        .decide(&json!({"user": {"id": "y"}, "action": {"tool": "t"}}))
        .unwrap();
    assert!(!d.decision.allow);
}

/// The result step evaluates on the projection of its input on the paths
/// the engine's rules may read (`PolicyEngine::result_input`, issue 17):
/// the example filesystem layers answer every result exactly as on the
/// whole input, a field no rule reads is left out, and an engine with a
/// rule that reads the input whole gets all of it.
#[test]
fn result_rules_answer_on_the_projection_as_on_the_whole_input() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bundles");
    let load = |n: &str| Arc::new(load_bundle(&root.join(n), &BundleLimits::default()).unwrap());
    let bundles: Vec<_> = [
        "filesystem",
        "override",
        "identity",
        "compliance",
        "workflow",
    ]
    .iter()
    .map(|n| load(n))
    .collect();
    let e = PolicyEngine::build("filesystem", bundles.clone(), &opts()).unwrap();
    // A second engine asked only as the result step asks: its misses are
    // evaluated on a document built from the input and output apart.
    let apart = PolicyEngine::build("filesystem", bundles, &opts()).unwrap();
    assert!(e.reads.is_some(), "the example layers' reads can be listed");
    let outputs = [
        json!({"content": [{"type": "text", "text": "mail ada@example.com"}]}),
        json!({"content": [{"type": "text", "text": "a\nb"}], "isError": true}),
        json!({"content": [], "structuredContent": {"x": 1}}),
    ];
    for tool in ["read_text_file", "search_files", "directory_tree", "echo"] {
        for groups in [json!(["engineering"]), json!([])] {
            let input = json!({
                "action": {"type": "tool_call", "server": "filesystem", "tool": tool,
                           "args": {"path": "demo-data/public/a.txt"}},
                "user": {"id": "u", "groups": groups,
                         "data_classifications_authorized": ["public"]},
                "agent": {"id": "a"},
                "environment": {"region": "eu-west-1"},
                "context": {"cumulative_tokens": 3},
                "no_rule_reads_this": {"big": "x".repeat(1000)},
            });
            for out in &outputs {
                let projected = e.result_input(&input, out.clone());
                assert!(projected.get("no_rule_reads_this").is_none());
                assert_eq!(projected["output"], *out);
                let mut whole = input.clone();
                whole["output"] = out.clone();
                let whole = e.eval_results_unmemoized(whole).unwrap();
                assert_eq!(
                    apart.eval_results_for(&input, out.clone()).unwrap(),
                    whole,
                    "{tool} {groups} {out} (a fresh memo)"
                );
                assert_eq!(
                    e.eval_results(projected.clone()).unwrap(),
                    whole,
                    "{tool} {groups} {out}"
                );
                // The second time from the result memo: the same answer;
                // and the same from the request's input and the output
                // apart, as the result step asks (keys read without the
                // document).
                assert_eq!(
                    e.eval_results(projected).unwrap(),
                    whole,
                    "{tool} {groups} {out} (memo)"
                );
                assert_eq!(
                    e.eval_results_for(&input, out.clone()).unwrap(),
                    whole,
                    "{tool} {groups} {out} (input and output apart)"
                );
            }
        }
    }
    // The filesystem layer's result rule is memoized, on the paths the
    // bundle reads: the groups (not read) and the text of the output (not
    // read) share entries; the tool and `output.isError` (read) do not.
    let memo = e.bundles[0].result_memo.as_ref().expect("memoized");
    assert_eq!(memo.len(), 4 * 2, "{} entries", memo.len());
    let (_d, whole) = one(
        "package p\n\ndecision := {\"allow\": count(object.keys(input)) > 0}\n\nresult := {}\n",
        None,
    );
    assert!(whole.reads.is_none(), "object.keys(input) reads it whole");
    let input = json!({"a": 1, "b": {"c": 2}});
    assert_eq!(
        whole.result_input(&input, json!({"content": []})),
        json!({"a": 1, "b": {"c": 2}, "output": {"content": []}})
    );
}

/// The shipped workflow layer reads counters that change on every call but
/// only compares them with its thresholds (`bundle::deps::compared`): its
/// memo keys them on the comparisons' outcomes, so calls below every
/// threshold share one entry, and crossing one is another key and decision.
#[test]
fn the_workflow_layer_keys_its_counters_on_their_thresholds() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bundles");
    let b = Arc::new(load_bundle(&root.join("workflow"), &BundleLimits::default()).unwrap());
    let e = PolicyEngine::build("srv", vec![b], &opts()).unwrap();
    let memo = e.bundles[0]
        .memo
        .as_ref()
        .expect("the workflow layer is memoized");
    let input = |same: u64, minute: u64, tokens: u64, used: f64| {
        json!({
            "action": {"type": "tool_call", "tool": "t"},
            "context": {
                "consecutive_same_tool": same,
                "calls_last_minute": minute,
                "cumulative_tokens": tokens,
                "budget": {"used_fraction": used},
            },
        })
    };
    let key = |v: &Value| memo.keyed_alike().key(v).unwrap();
    assert_eq!(
        key(&input(0, 0, 0, 0.0)),
        key(&input(19, 59, 200_000, 0.79))
    );
    assert_ne!(key(&input(0, 0, 0, 0.0)), key(&input(20, 0, 0, 0.0)));
    assert_ne!(key(&input(0, 0, 0, 0.0)), key(&input(0, 0, 200_001, 0.0)));
    let mut budgetless = input(0, 0, 0, 0.0);
    budgetless["context"]
        .as_object_mut()
        .unwrap()
        .remove("budget");
    assert_ne!(key(&input(0, 0, 0, 0.0)), key(&budgetless));
    for (same, minute, tokens, used) in [(0, 0, 0, 0.0), (5, 7, 1000, 0.1), (19, 59, 200_000, 0.79)]
    {
        let d = e.decide(&input(same, minute, tokens, used)).unwrap();
        assert!(d.decision.allow && !d.decision.audit_required);
    }
    assert_eq!(memo.len(), 1, "calls below every threshold share one entry");
    let d = e.decide(&input(20, 0, 0, 0.0)).unwrap();
    assert!(!d.decision.allow);
    assert!(
        d.decision
            .reasons
            .iter()
            .any(|r| r.contains("same_tool_loop")),
        "{:?}",
        d.decision.reasons
    );
    let d = e.decide(&input(0, 0, 0, 0.8)).unwrap();
    assert!(d.decision.allow && d.decision.audit_required);
}
