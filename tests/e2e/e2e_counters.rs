//! End to end: the session counters and the server and agent rate-limit
//! scopes, through the real binary on a clock the test drives
//! (`GAVEL_TEST_CLOCK_FILE`): `cumulative_tokens` counts a call's arguments
//! and its result (4 bytes a token, rounded up); `turn_count` and
//! `tool_calls` count `tools/call` requests only, never resource reads or
//! prompts; a server limit counts every tool of its server together (and
//! only that server); an agent limit counts every user and session of the
//! agent together (and only that agent).

use crate::common;

use common::lab::*;
use common::*;
use rmcp::model::{GetPromptRequestParams, ReadResourceRequestParams};
use serde_json::{Value, json};

/// The documented estimate: one token per 4 bytes, rounded up.
fn tokens(bytes: usize) -> u64 {
    bytes.div_ceil(4) as u64
}

/// The bytes of `args` as gavel counts them (the JSON it decided on).
fn arg_bytes(args: &Value) -> usize {
    serde_json::to_vec(args).unwrap().len()
}

/// The logged input context of every `tools/call` decision, in order.
fn tool_call_contexts(lab: &Lab) -> Vec<Value> {
    lab.decisions()
        .into_iter()
        .filter(|r| r["input"]["action"]["type"] == "tool_call")
        .map(|r| r["input"]["context"].clone())
        .collect()
}

/// After a call, the next decision's logged `cumulative_tokens` is the
/// estimate for the previous call's arguments plus its result: a 4000-byte
/// result counts 1000 tokens, far more than its arguments' 4.
#[tokio::test(flavor = "multi_thread")]
async fn cumulative_tokens_count_the_previous_calls_arguments_and_result() {
    let lab = Lab::new(json!({}), "");
    let client = lab.connect().await;
    let huge_args = json!({"bytes": 4000});
    let huge = call(&client, "huge", huge_args.clone()).await.unwrap();
    assert!(allowed(&huge), "{}", text(&huge));
    let huge_result = text(&huge).len();
    assert_eq!(huge_result, 4000);
    let echo_args = json!({"text": "x".repeat(21)});
    let echo = call(&client, "echo", echo_args.clone()).await.unwrap();
    assert!(allowed(&echo), "{}", text(&echo));
    let echo_result = text(&echo).len();
    let last = call(&client, "add", json!({"a": 1, "b": 2})).await.unwrap();
    assert!(allowed(&last), "{}", text(&last));

    let ctx = tool_call_contexts(&lab);
    assert_eq!(ctx.len(), 3, "{ctx:?}");
    assert_eq!(ctx[0]["cumulative_tokens"], 0, "nothing before the first");
    let after_huge = tokens(arg_bytes(&huge_args)) + tokens(huge_result);
    assert_eq!(after_huge, 4 + 1000);
    assert!(
        ctx[1]["cumulative_tokens"].as_u64().unwrap() > tokens(arg_bytes(&huge_args)),
        "the result counts, not only the arguments: {}",
        ctx[1]
    );
    assert_eq!(ctx[1]["cumulative_tokens"], after_huge, "{}", ctx[1]);
    // {"text":"<21 x>"}: 32 bytes, 8 tokens; the echoed 21 bytes: 6 tokens.
    let after_echo = after_huge + tokens(arg_bytes(&echo_args)) + tokens(echo_result);
    assert_eq!(after_echo, after_huge + 8 + 6);
    assert_eq!(ctx[2]["cumulative_tokens"], after_echo, "{}", ctx[2]);
    client.cancel().await.unwrap();
}

/// Resource reads, prompts and lists between tool calls are decided (and
/// logged) but not counted: the next tool call sees only the tool calls in
/// `turn_count`, `tool_calls`, `calls_last_minute` and `cumulative_tokens`.
#[tokio::test(flavor = "multi_thread")]
async fn counters_count_tools_call_requests_only() {
    let lab = Lab::new(json!({}), "");
    let client = lab.connect().await;
    let peer = client.peer().clone();
    let read = || async {
        peer.read_resource(ReadResourceRequestParams::new("fixture://static/hello"))
            .await
            .unwrap()
    };
    let prompt = || async {
        let mut gp = GetPromptRequestParams::new("greet");
        gp.arguments = json!({"name": "ada"}).as_object().cloned();
        peer.get_prompt(gp).await.unwrap()
    };
    let echo_args = json!({"text": "hi"});
    let add_args = json!({"a": 1, "b": 2});
    let mut tool_tokens = 0;
    let r = call(&client, "echo", echo_args.clone()).await.unwrap();
    assert!(allowed(&r), "{}", text(&r));
    tool_tokens += tokens(arg_bytes(&echo_args)) + tokens(text(&r).len());
    read().await;
    prompt().await;
    client.list_all_resources().await.unwrap();
    client.list_all_prompts().await.unwrap();
    let r = call(&client, "add", add_args.clone()).await.unwrap();
    assert!(allowed(&r), "{}", text(&r));
    tool_tokens += tokens(arg_bytes(&add_args)) + tokens(text(&r).len());
    read().await;
    prompt().await;
    read().await;
    let r = call(&client, "echo", echo_args).await.unwrap();
    assert!(allowed(&r), "{}", text(&r));

    let log = lab.decisions();
    let kinds: Vec<&str> = log
        .iter()
        .map(|r| r["input"]["action"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "tool_call",
            "resource_read",
            "prompt_get",
            "tool_call",
            "resource_read",
            "prompt_get",
            "resource_read",
            "tool_call"
        ],
        "the other requests were decided: they went through the counters"
    );
    let last = &log.last().unwrap()["input"]["context"];
    assert_eq!(last["turn_count"], 2, "{last}");
    assert_eq!(last["tool_calls"], json!({"fx": {"echo": 1, "add": 1}}));
    assert_eq!(last["calls_last_minute"], 2, "{last}");
    assert_eq!(last["consecutive_same_tool"], 0, "add came between");
    assert_eq!(last["cumulative_tokens"], tool_tokens, "{last}");
    // A read between them saw the tool calls before it, no more.
    assert_eq!(log[4]["input"]["context"]["turn_count"], 2);
    assert_eq!(log[6]["input"]["context"]["turn_count"], 2);
    client.cancel().await.unwrap();
}

/// A server limit counts the calls of every tool of its server together:
/// echo, then add, then a third tool is over the burst of 2 and refused
/// with a retry-after; another server deciding with the same bundle has its
/// own limit. After the retry-after the server's tools are allowed again.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_limit_counts_every_tool_of_the_server_together() {
    let s = Setup::blank();
    let clock = TestClock::new(s.path("clock"));
    let bundle = limit_bundle(
        &s.path("policy"),
        json!({"limits": [{"scope": "server", "rate": 1, "per": "1m", "burst": 2}]}),
    );
    let bundle = format!("bundle = {:?}\n", bundle.display().to_string());
    s.write_config(&format!(
            "[identity.user]\nid = \"ada\"\n\n[state]\npath = {:?}\n\n[log]\ndecisions = {:?}\n\n{}{bundle}\n{}{bundle}",
            s.path("state.sqlite").display().to_string(),
            s.path("decisions.jsonl").display().to_string(),
            fixture_server("fx", &[], &s.path("rx.jsonl")),
            fixture_server("fy", &[], &s.path("ry.jsonl")),
        ));
    let client = s.connect_on(&clock, TestHost::new()).await;
    client.list_all_tools().await.unwrap();
    for (tool, args) in [
        ("fx__echo", json!({"text": "x"})),
        ("fx__add", json!({"a": 1, "b": 2})),
    ] {
        let r = call(&client, tool, args).await.unwrap();
        assert!(allowed(&r), "{tool}: {}", text(&r));
    }
    let third = call(&client, "fx__echo_meta", json!({})).await.unwrap();
    assert!(!allowed(&third), "{}", text(&third));
    let d = decision(&third);
    assert_eq!(d["reasons"], json!(["rate_limited"]), "{d}");
    assert_eq!(d["retry_after_seconds"], json!(60.0), "{d}");
    assert!(
        d["matched_rules"][0]
            .as_str()
            .unwrap()
            .starts_with("gavel:limit:rl:fx:server:"),
        "{d}"
    );
    // The other server's limit is its own.
    let other = call(&client, "fy__echo", json!({"text": "x"}))
        .await
        .unwrap();
    assert!(allowed(&other), "{}", text(&other));
    // Half the wait is not enough; the whole of it is.
    clock.advance(30.0);
    let r = call(&client, "fx__add", json!({"a": 1, "b": 2}))
        .await
        .unwrap();
    assert_eq!(decision(&r)["retry_after_seconds"], json!(30.0));
    clock.advance(30.0);
    let r = call(&client, "fx__add", json!({"a": 1, "b": 2}))
        .await
        .unwrap();
    assert!(allowed(&r), "allowed after retry_after: {}", text(&r));
    // The refused calls never reached the upstream.
    let reached: Vec<Value> = recorded_calls(&s.path("rx.jsonl"))
        .into_iter()
        .map(|c| c["params"]["name"].clone())
        .collect();
    assert_eq!(reached, [json!("echo"), json!("add"), json!("add")]);
    client.cancel().await.unwrap();
}

/// An agent limit counts the agent's calls across users and sessions (two
/// gavel processes sharing one state store): ada's and bob's calls through
/// agent `bot` spend one burst of 3; agent `other`, run by ada too, is not
/// affected.
#[tokio::test(flavor = "multi_thread")]
async fn an_agent_limit_spans_users_and_sessions_of_the_agent() {
    let lab = Lab::new(
        json!({"limits": [{"scope": "agent", "rate": 1, "per": "1h", "burst": 3}]}),
        "",
    );
    let ada_bot = lab.connect_as("ada", "bot").await;
    let bob_bot = lab.connect_as("bob", "bot").await;
    let ada_other = lab.connect_as("ada", "other").await;
    for c in [&ada_bot, &bob_bot, &ada_bot] {
        let r = call(c, "echo", json!({"text": "x"})).await.unwrap();
        assert!(allowed(&r), "{}", text(&r));
    }
    // bob's second call through bot: his own first was the burst's second.
    let over = call(&bob_bot, "add", json!({"a": 1, "b": 2}))
        .await
        .unwrap();
    assert!(!allowed(&over), "{}", text(&over));
    let d = decision(&over);
    assert_eq!(d["reasons"], json!(["rate_limited"]), "{d}");
    assert_eq!(d["retry_after_seconds"], json!(3600.0), "{d}");
    let rule = d["matched_rules"][0].as_str().unwrap();
    assert!(
        rule.starts_with("gavel:limit:rlb:") && rule.contains(":agent:bot:"),
        "{rule}"
    );
    for _ in 0..3 {
        let r = call(&ada_other, "echo", json!({"text": "x"}))
            .await
            .unwrap();
        assert!(allowed(&r), "another agent, another limit: {}", text(&r));
    }
    // The log says who asked: both users, through one agent.
    let who: Vec<(String, String)> = lab
        .decisions()
        .iter()
        .take(4)
        .map(|r| {
            (
                r["input"]["user"]["id"].as_str().unwrap().to_string(),
                r["input"]["agent"]["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let pair = |u: &str| (u.to_string(), "bot".to_string());
    assert_eq!(who, [pair("ada"), pair("bob"), pair("ada"), pair("bob")]);
    for c in [ada_bot, bob_bot, ada_other] {
        c.cancel().await.unwrap();
    }
}

/// A `tools/call` carrying the host's `_meta["dev.gavel/cumulative_tokens"]`.
async fn call_reporting(
    client: &Client,
    tool: &str,
    args: Value,
    reported: Value,
) -> rmcp::model::CallToolResult {
    let mut p = rmcp::model::CallToolRequestParams::new(tool.to_string());
    p.arguments = args.as_object().cloned();
    let mut meta = rmcp::model::RequestMetaObject::default();
    meta.0
        .0
        .insert("dev.gavel/cumulative_tokens".into(), reported);
    p.meta = Some(meta);
    client.peer().call_tool(p).await.unwrap()
}

/// A host-reported token count only ever raises the session's: a negative
/// or a string is no report, a float counts (rounded down), and 2^64-1
/// stays 2^64-1 through the calls after it — it used to wrap to a small
/// number with the next call's tokens, switching the token brake off.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_reported_token_count_saturates_and_never_lowers() {
    let lab = Lab::new(json!({}), "");
    let client = lab.connect().await;
    let args = json!({"a": 1, "b": 2});
    for reported in [json!(-5), json!("900000"), json!(25_000.7)] {
        let r = call_reporting(&client, "add", args.clone(), reported).await;
        assert!(allowed(&r), "{}", text(&r));
    }
    let r = call_reporting(&client, "add", args.clone(), json!(u64::MAX)).await;
    assert!(allowed(&r), "{}", text(&r));
    let r = call(&client, "echo", json!({"text": "after"}))
        .await
        .unwrap();
    assert!(allowed(&r), "{}", text(&r));
    let r = call_reporting(&client, "add", args.clone(), json!(1)).await;
    assert!(allowed(&r), "{}", text(&r));

    let ctx = tool_call_contexts(&lab);
    let seen: Vec<u64> = ctx
        .iter()
        .map(|c| c["cumulative_tokens"].as_u64().unwrap())
        .collect();
    assert_eq!(seen.len(), 6, "{ctx:?}");
    // A call's report is seen by its own decision.
    assert_eq!(seen[0], 0, "a negative report is none: {seen:?}");
    assert!(seen[1] < 100, "a string is no report: {seen:?}");
    assert!(seen[2] >= 25_000, "a float report raises: {seen:?}");
    assert_eq!(
        &seen[3..],
        &[u64::MAX, u64::MAX, u64::MAX],
        "saturated, not wrapped by the next calls' tokens"
    );
    client.cancel().await.unwrap();
}
