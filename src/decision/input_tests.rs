//! The session counters and the policy input they make.

use super::*;
use crate::decision::ActionType;

#[test]
fn counters_follow_the_contract() {
    let mut c = SessionCounters::default();
    c.record_tool_call("fs", "read", true, 10);
    c.record_tool_call("fs", "write", false, 0);
    c.record_tool_call("fs", "read", true, 0);
    assert_eq!(c.turn_count, 3);
    assert_eq!(c.denied_count, 1);
    assert_eq!(c.tool_calls["fs"]["read"], 2);
    assert_eq!(c.cumulative_tokens, 3);
}

#[test]
fn workflow_counters() {
    let call = |c: &mut SessionCounters, tool: &str, t: f64| {
        c.prepare("s", tool, t);
        let view = (c.consecutive_same_tool, c.calls_last_minute);
        c.record_tool_call_at("s", tool, true, 0, t);
        view
    };
    let mut c = SessionCounters::default();
    assert_eq!(
        call(&mut c, "a", 0.0),
        (0, 0),
        "the first call sees nothing before it"
    );
    assert_eq!(call(&mut c, "a", 1.0), (1, 1));
    assert_eq!(call(&mut c, "a", 2.0), (2, 2));
    assert_eq!(
        call(&mut c, "b", 3.0),
        (0, 3),
        "another tool breaks the run"
    );
    assert_eq!(
        call(&mut c, "a", 61.5),
        (0, 2),
        "calls older than a minute drop out"
    );
    c.raise_tokens(10);
    c.add_tokens(8);
    assert_eq!(c.cumulative_tokens, 12);
    c.raise_tokens(5);
    assert_eq!(
        c.cumulative_tokens, 12,
        "a host report never lowers the count"
    );
}

/// A host's `_meta["dev.gavel/cumulative_tokens"]` can only raise the
/// count: u64::MAX stays there through later calls (it used to wrap to a
/// small number and switch the token brake off), a float raises it
/// rounded down (a huge one saturates), a negative or a string is no
/// report. Every counter saturates rather than wraps.
#[test]
fn reported_tokens_only_raise_and_counters_saturate() {
    let r = SessionCounters::reported_tokens;
    assert_eq!(r(&json!(u64::MAX)), Some(u64::MAX));
    assert_eq!(r(&json!(2.5e4)), Some(25_000));
    assert_eq!(r(&json!(1e300)), Some(u64::MAX));
    assert_eq!(r(&json!(-1)), None);
    assert_eq!(r(&json!(-0.5)), None);
    assert_eq!(r(&json!("999999")), None);
    assert_eq!(r(&json!(null)), None);

    let mut c = SessionCounters::default();
    c.raise_tokens(u64::MAX);
    c.record_tool_call_at("s", "t", true, 4000, 0.0);
    c.add_tokens(usize::MAX);
    assert_eq!(c.cumulative_tokens, u64::MAX, "never wraps");
    c.raise_tokens(5);
    assert_eq!(c.cumulative_tokens, u64::MAX, "never lowered");

    let mut c = SessionCounters {
        turn_count: u64::MAX,
        denied_count: u64::MAX,
        ..Default::default()
    };
    c.tool_calls
        .entry("s".into())
        .or_default()
        .insert("t".into(), u64::MAX);
    c.record_tool_call_at("s", "t", false, 0, 0.0);
    c.count_denied();
    assert_eq!(
        (c.turn_count, c.denied_count, c.tool_calls["s"]["t"]),
        (u64::MAX, u64::MAX, u64::MAX)
    );
}

/// A decision's snapshot gives the policy input exactly what a full
/// copy gives, without the call-time window.
#[test]
fn a_snapshot_is_what_the_policy_sees_without_the_window() {
    let mut c = SessionCounters::default();
    for i in 0..500 {
        let tool = if i % 3 == 0 { "a" } else { "b" };
        c.prepare("s", tool, i as f64 * 0.1);
        c.record_tool_call_at("s", tool, i % 7 != 0, 40, i as f64 * 0.1);
    }
    c.data_classes_seen.add("s", "a", &["pii".to_string()]);
    c.prepare("s", "b", 50.0);
    let snap = c.snapshot();
    assert!(snap.recent.is_empty() && snap.last_tool.is_none());
    assert_eq!(c.recent.len(), 500);
    let action = Action::new(ActionType::ToolCall, "s", "b", json!({}));
    let input = |counters: SessionCounters| {
        let ctx = DecisionContext {
            counters,
            ..Default::default()
        };
        build(&Identity::default(), &action, &ctx, &[], "t")
    };
    assert_eq!(input(snap), input(c.clone()));
    assert_eq!(input(c.snapshot())["context"]["calls_last_minute"], 500);
}

#[test]
fn input_has_every_contract_field() {
    let action = Action {
        kind: ActionType::ToolCall,
        server: "fs".into(),
        tool: "read".into(),
        args: json!({"path": "/x"}),
        annotations: json!({"readOnlyHint": true}),
        annotations_trusted: false,
        tool_digest: Some("sha256:00".into()),
        upstream_data_classes: vec![],
        trace: None,
        era: Default::default(),
    };
    let v = build(
        &Identity::default(),
        &action,
        &DecisionContext::default(),
        &["pii".into()],
        "2026-01-01T00:00:00Z",
    );
    let schema: Value = serde_json::from_str(include_str!("../../schemas/input.v1.json")).unwrap();
    for (section, props) in schema["properties"].as_object().unwrap() {
        for key in props["properties"].as_object().unwrap().keys() {
            // budget: only with [budget]; the canonical path view is
            // added by the enforcer, which knows the server's path_root.
            let reserved = ["budget", "canonical_args", "path_root"];
            if !reserved.contains(&key.as_str()) {
                assert!(
                    v[section].get(key).is_some(),
                    "input.{section}.{key} missing"
                );
            }
        }
    }
    assert_eq!(v["action"]["type"], "tool_call");
    assert_eq!(v["action"]["data_classes_referenced"], json!(["pii"]));
}

proptest::proptest! {
    /// The counters against a naive model over any sequence of calls:
    /// exact turn/denied/per-tool counts, the run length of the same
    /// tool, the calls in the 60 s before, and tokens that only grow.
    #[test]
    fn counters_match_a_naive_model(
        calls in proptest::collection::vec((0usize..3, 0usize..3, proptest::bool::ANY, 0u32..5000, 0usize..200), 1..120)
    ) {
        let mut c = SessionCounters::default();
        let mut history: Vec<(String, String, f64)> = Vec::new();
        let (mut now, mut denied, mut tokens) = (0.0f64, 0u64, 0u64);
        for (s, t, allowed, gap_ms, bytes) in calls {
            now += gap_ms as f64 / 1000.0;
            let (server, tool) = (format!("s{s}"), format!("t{t}"));
            c.prepare(&server, &tool, now);
            let run = history
                .iter()
                .rev()
                .take_while(|(hs, ht, _)| *hs == server && *ht == tool)
                .count() as u64;
            let recent = history.iter().filter(|(_, _, at)| now - at <= 60.0).count() as u64;
            proptest::prop_assert_eq!(c.consecutive_same_tool, run);
            proptest::prop_assert_eq!(c.calls_last_minute, recent);
            proptest::prop_assert_eq!(c.turn_count, history.len() as u64);
            proptest::prop_assert_eq!(c.denied_count, denied);
            proptest::prop_assert_eq!(c.cumulative_tokens, tokens);
            c.record_tool_call_at(&server, &tool, allowed, bytes, now);
            history.push((server.clone(), tool.clone(), now));
            denied += u64::from(!allowed);
            tokens += bytes.div_ceil(4) as u64;
            let per_tool = history.iter().filter(|(hs, ht, _)| *hs == server && *ht == tool).count() as u64;
            proptest::prop_assert_eq!(c.tool_calls[&server][&tool], per_tool);
        }
    }
}
