//! A legacy host in front of a modern (MCP 2026-07-28) upstream: the
//! upstream's input rounds (MRTR) driven through the host as real
//! elicitation, sampling and roots requests, each retry decided again
//! (`src/upstream/rounds.rs`, `src/front/session/rounds.rs`); its list
//! changes heard on `subscriptions/listen` and told to the host
//! (`src/upstream/listen.rs`); the host's `logging/setLevel` carried as the
//! per-request `logLevel`. The upstream is the official TypeScript SDK v2's
//! `serveStdio(…, { legacy: 'reject' })` (`tests/fixture/modern_only.mjs`),
//! the host a real rmcp client in the legacy era (`tests/common`).
// Logging (set_level) is deprecated in MCP 2026-07-28 (SEP-2577) but is what
// a legacy host speaks.
#![allow(deprecated)]

use crate::common;

use common::*;
use rmcp::model::{
    ElicitationAction, ElicitationCapability, GetPromptRequestParams, LoggingLevel,
    ReadResourceRequestParams, SetLevelRequestParams,
};
use serde_json::{Value, json};

use super::e2e_era::{modern_only_server, upstream_status};

/// Everything allowed, except what the test's `extra` rules deny.
fn policy(extra: &str) -> String {
    format!(
        r#"package mcp.modern

violations contains "never" if false

{extra}

decision := {{"allow": true}} if count(violations) == 0

decision := {{"allow": false, "reasons": sort(violations)}} if count(violations) > 0
"#
    )
}

/// The modern-only server as `[servers.modern]` with `policy(extra)` and a
/// decision log. The evaluation limit is generous: a debug build on a
/// busy machine is not what the default 100 ms is for.
fn setup(extra: &str) -> Setup {
    setup_with_data(extra, json!({}))
}

/// [`setup`] with `data` as the policy's data (`data.mcp.modern`).
fn setup_with_data(extra: &str, data: Value) -> Setup {
    let rego = policy(extra);
    Setup::with(|s| {
        let bundle = common::policy::bundle(s.dir.path(), "modern", "mcp/modern", json!({}), &rego);
        std::fs::write(bundle.join("mcp/modern/data.json"), data.to_string()).unwrap();
        format!(
            "{}[policy]\neval_timeout = \"10s\"\n\n[servers.modern]\ncommand = \"node\"\nargs = [{:?}]\nstartup_timeout = \"30s\"\ncall_timeout = \"30s\"\nbundle = {:?}\n",
            s.decision_log_table(),
            modern_only_server().display().to_string(),
            bundle.display().to_string()
        )
    })
}

async fn connect(s: &Setup, host: TestHost) -> Client {
    let mut cmd = s.command();
    cmd.env("GAVEL_STATE_DIR", s.path("state"));
    connect_cmd(cmd, host).await
}

/// The decisions of `tool` (tools/call), in order.
fn decisions_of(s: &Setup, tool: &str) -> Vec<Value> {
    s.decisions()
        .into_iter()
        .filter(|d| d["input"]["action"]["tool"] == tool)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_input_round_is_answered_by_the_legacy_host_and_the_retry_decided() {
    let s = setup("");
    let host = TestHost::new();
    let seen = host.seen.clone();
    let client = connect(&s, host).await;
    let r = call(&client, "confirm", json!({"action": "deploy"}))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", s.log_text()));
    // The host's answer reached the upstream, and so did its state, as given.
    assert_eq!(text(&r), "confirmed deploy (state confirm:deploy)", "{r:?}");
    let asked = seen.lock().unwrap().elicitations.clone();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0]["message"], "Really deploy?");
    // The first call and its retry: two tools/call decisions on the same
    // arguments, and the elicitation decided as an upstream→host request.
    let calls = decisions_of(&s, "confirm");
    assert_eq!(calls.len(), 2, "{calls:?}");
    for d in &calls {
        assert_eq!(d["input"]["action"]["type"], "tool_call");
        assert_eq!(d["input"]["action"]["args"], json!({"action": "deploy"}));
        assert_eq!(d["result"]["allow"], true);
    }
    let elicit = decisions_of(&s, "elicitation/create");
    assert_eq!(elicit.len(), 1, "{:?}", s.decisions());
    assert_eq!(elicit[0]["input"]["action"]["type"], "elicitation_request");

    // Sampling, roots and a form in one round, each a real request.
    let r = call(&client, "ask_all", json!({})).await.unwrap();
    let said: Value = serde_json::from_str(&text(&r)).unwrap_or_else(|e| panic!("{e}: {r:?}"));
    assert_eq!(
        said,
        json!({"sample": "sampled by the e2e host", "roots": ["file:///e2e-root"], "form": "accept"})
    );
    assert_eq!(seen.lock().unwrap().samplings.len(), 1);

    // Parallel calls: each retry carries its own call's state and answer.
    let (a, b) = tokio::join!(
        call(&client, "confirm", json!({"action": "left"})),
        call(&client, "confirm", json!({"action": "right"})),
    );
    assert_eq!(text(&a.unwrap()), "confirmed left (state confirm:left)");
    assert_eq!(text(&b.unwrap()), "confirmed right (state confirm:right)");
    client.cancel().await.unwrap();
}

/// `prompts/get` and `resources/read` take rounds too, each retry decided
/// again as the request it is.
#[tokio::test(flavor = "multi_thread")]
async fn prompts_and_resources_take_input_rounds_through_the_legacy_host() {
    let s = setup("");
    let host = TestHost::new();
    let seen = host.seen.clone();
    let client = connect(&s, host).await;
    tool_names(&client).await;
    let p = client
        .peer()
        .get_prompt(GetPromptRequestParams::new("greeting"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", s.log_text()));
    let said = serde_json::to_value(&p.messages).unwrap();
    assert_eq!(
        said[0]["content"]["text"], "Hello, from the e2e host",
        "{said}"
    );
    let r = client
        .peer()
        .read_resource(ReadResourceRequestParams::new("modern://secret"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", s.log_text()));
    let contents = serde_json::to_value(&r.contents).unwrap();
    assert_eq!(contents[0]["text"], "the secret", "{contents}");
    assert_eq!(seen.lock().unwrap().elicitations.len(), 2);
    let kinds: Vec<Value> = s
        .decisions()
        .iter()
        .map(|d| d["input"]["action"]["type"].clone())
        .filter(|k| k == "prompt_get" || k == "resource_read")
        .collect();
    assert_eq!(
        kinds,
        vec![
            json!("prompt_get"),
            json!("prompt_get"),
            json!("resource_read"),
            json!("resource_read")
        ]
    );
    client.cancel().await.unwrap();
}

/// A URL-mode elicitation (2026-07-28 has no `elicitationId`) reaches a
/// host that declared URL mode with the id a 2025-11-25 host needs.
#[tokio::test(flavor = "multi_thread")]
async fn a_url_elicitation_reaches_the_legacy_host_with_an_id() {
    let s = setup("");
    let mut host = TestHost::new();
    host.caps.elicitation = Some(
        ElicitationCapability::new()
            .with_form(Default::default())
            .with_url(Default::default()),
    );
    let seen = host.seen.clone();
    let client = connect(&s, host).await;
    let r = call(&client, "visit", json!({})).await.unwrap();
    assert_eq!(text(&r), "visit accept", "{r:?}");
    let asked = seen.lock().unwrap().elicitations.clone();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0]["mode"], "url");
    assert_eq!(asked[0]["url"], "https://example.test/sign-in");
    assert!(
        asked[0]["elicitationId"]
            .as_str()
            .is_some_and(|id| id.starts_with("gavel-") && id.len() > 10),
        "{asked:?}"
    );
    client.cancel().await.unwrap();
    // A host that declared form mode only is not sent it.
    let s = setup("");
    let client = connect(&s, TestHost::new()).await;
    let e = call(&client, "visit", json!({}))
        .await
        .expect_err("no url mode");
    assert!(e.to_string().contains("elicitation"), "{e}");
    client.cancel().await.unwrap();
}

/// The upstream's question passes the result step on its way to a legacy
/// host as it does to a 2026-07-28 one (`e2e_round_limits`): the host's era
/// does not change what the policy sees. An e-mail address in it is
/// redacted before the host is asked (and the host's answer still reaches
/// the upstream); a question the rules deny is never asked, the call ends
/// denied and nothing more is sent.
#[tokio::test(flavor = "multi_thread")]
async fn a_round_passes_the_result_policy_on_its_way_to_the_legacy_host() {
    let s = setup_with_data(
        super::e2e_round_limits::ROUND_RESULT_RULES,
        json!({"result_patterns": {"email": "[a-z]+@[a-z]+\\.[a-z]+"}}),
    );
    let host = TestHost::new();
    let seen = host.seen.clone();
    let client = connect(&s, host).await;
    let r = call(
        &client,
        "confirm",
        json!({"action": "mail ann@example.com"}),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", s.log_text()));
    assert_eq!(
        text(&r),
        "confirmed mail ann@example.com (state confirm:mail ann@example.com)",
        "{r:?}"
    );
    let asked = seen.lock().unwrap().elicitations.clone();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0]["message"], "Really mail [REDACTED:email]?");

    let r = call(&client, "confirm", json!({"action": "deploy"}))
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true), "{r:?}");
    let t = text(&r);
    assert!(
        t.contains("question_refused") && !t.contains("Really deploy"),
        "{t}"
    );
    assert_eq!(seen.lock().unwrap().elicitations.len(), 1, "not asked");
    // The denied call's round was never retried: one decision for it.
    let deploys = decisions_of(&s, "confirm")
        .into_iter()
        .filter(|d| d["input"]["action"]["args"]["action"] == "deploy" && d["result_of"].is_null())
        .count();
    assert_eq!(deploys, 1);
    let outcomes: Vec<Value> = super::e2e_round_limits::round_results(&s)
        .iter()
        .map(|r| r["result"]["outcome"].clone())
        .collect();
    assert_eq!(outcomes, [json!("modified"), json!("deny")]);
    client.cancel().await.unwrap();
}

/// The retry is a `tools/call` the policy decides afresh: here the second
/// `confirm` of the session is denied, so the host's answer is never sent.
#[tokio::test(flavor = "multi_thread")]
async fn a_policy_that_denies_the_retry_stops_it() {
    let s = setup(
        r#"violations contains "confirm_once" if {
    input.action.tool == "confirm"
    input.context.tool_calls.modern.confirm >= 1
}"#,
    );
    let host = TestHost::new();
    let seen = host.seen.clone();
    let client = connect(&s, host).await;
    let r = call(&client, "confirm", json!({"action": "deploy"}))
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true), "{r:?}");
    assert!(text(&r).contains("confirm_once"), "{}", text(&r));
    assert!(!text(&r).contains("confirmed"), "{}", text(&r));
    // The host was asked (the first call was allowed), then the retry refused.
    assert_eq!(seen.lock().unwrap().elicitations.len(), 1);
    let calls = decisions_of(&s, "confirm");
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0]["result"]["allow"], true);
    assert_eq!(calls[1]["result"]["allow"], false);
    client.cancel().await.unwrap();
}

/// A host that did not declare elicitation is not asked: the call fails
/// with an error naming the server, the tool and the capability.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_without_elicitation_gets_an_error_naming_what_is_missing() {
    let s = setup("");
    let host = TestHost::bare();
    let seen = host.seen.clone();
    let client = connect(&s, host).await;
    let e = call(&client, "confirm", json!({"action": "deploy"}))
        .await
        .expect_err("the round cannot be answered");
    let msg = e.to_string();
    for part in [
        "server \"modern\"",
        "tool \"confirm\"",
        "elicitation",
        "did not declare",
    ] {
        assert!(msg.contains(part), "{part:?} missing from: {msg}");
    }
    assert!(seen.lock().unwrap().elicitations.is_empty());
    client.cancel().await.unwrap();
}

/// An upstream that asks forever is stopped at gavel's cap (10 rounds).
#[tokio::test(flavor = "multi_thread")]
async fn the_round_cap_holds() {
    let s = setup("");
    let mut host = TestHost::new();
    host.elicit_action = ElicitationAction::Decline;
    let seen = host.seen.clone();
    let client = connect(&s, host).await;
    let e = call(&client, "nag", json!({}))
        .await
        .expect_err("the rounds never end");
    let msg = e.to_string();
    assert!(
        msg.contains("tool \"nag\"") && msg.contains("after 10 rounds"),
        "{msg}"
    );
    let asked = seen.lock().unwrap().elicitations.clone();
    assert_eq!(asked.len(), 10, "{asked:?}");
    assert_eq!(asked[9]["message"], "Round 10: again?");
    // The first call and ten retries, each decided.
    assert_eq!(decisions_of(&s, "nag").len(), 11);
    client.cancel().await.unwrap();
}

/// A modern upstream's list change (on its listen stream) reaches the
/// legacy host as `notifications/tools/list_changed`, and the new tool is
/// listed and callable — also after the upstream restarted (a new stream).
#[tokio::test(flavor = "multi_thread")]
async fn a_legacy_host_hears_of_a_modern_upstream_list_change() {
    let s = setup("");
    let host = TestHost::new();
    let seen = host.seen.clone();
    let client = connect(&s, host).await;
    tool_names(&client).await;
    let heard = seen.lock().unwrap().tool_list_changed;
    let r = call(&client, "grow", json!({"name": "grown"}))
        .await
        .unwrap();
    assert_eq!(text(&r), "added grown");
    until_announced_list(&client, &seen, heard, "grown is announced", |t| {
        t.iter().any(|t| t.name == "grown")
    })
    .await;
    let r = call(&client, "grown", json!({})).await.unwrap();
    assert_eq!(text(&r), "grown here");

    let _ = call(&client, "crash", json!({})).await;
    eventually("the server was restarted and is ready again", || {
        let up = upstream_status(&s, "modern");
        up["restarts"] == 1 && up["phase"] == "ready"
    })
    .await;
    // The restarted server lists its own tools (grown is gone); wait for
    // the table to have it, then change it again.
    tool_names(&client).await;
    let heard = seen.lock().unwrap().tool_list_changed;
    let r = call(&client, "grow", json!({"name": "regrown"}))
        .await
        .unwrap();
    assert_eq!(text(&r), "added regrown");
    until_announced_list(&client, &seen, heard, "regrown is announced", |t| {
        t.iter().any(|t| t.name == "regrown")
    })
    .await;
    client.cancel().await.unwrap();
}

/// `logging/setLevel` of a legacy host travels as the per-request
/// `logLevel` to a modern upstream, which logs at and above it only.
#[tokio::test(flavor = "multi_thread")]
async fn a_legacy_host_log_level_travels_on_each_modern_request() {
    let s = setup("");
    let host = TestHost::new();
    let seen = host.seen.clone();
    let client = connect(&s, host).await;
    // No level set: a modern server logs nothing for the request.
    let r = call(&client, "chatty", json!({})).await.unwrap();
    assert_eq!(text(&r), "logLevel none");
    client
        .peer()
        .set_level(SetLevelRequestParams::new(LoggingLevel::Warning))
        .await
        .unwrap();
    let r = call(&client, "chatty", json!({})).await.unwrap();
    assert_eq!(text(&r), "logLevel warning");
    eventually("the warning reaches the host", || {
        seen.lock()
            .unwrap()
            .logs
            .iter()
            .any(|l| l["data"] == "a warning line")
    })
    .await;
    let logs = seen.lock().unwrap().logs.clone();
    assert!(
        logs.iter().all(|l| l["level"] == "warning"),
        "only the warning is sent: {logs:?}"
    );
    client.cancel().await.unwrap();
}
