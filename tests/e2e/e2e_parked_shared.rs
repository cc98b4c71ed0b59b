//! A legacy upstream's question, parked for a 2026-07-28 host
//! (`front/session/parked.rs`), answered through another instance: two
//! `gavel serve` behind a round robin sharing Redis and the round key. The
//! retry lands on the instance that does not hold the call; it decides the
//! retry, hands the answer to the holder over Redis
//! (`front/session/handoff.rs`, `state/bus.rs`) and answers with the
//! call's result — or its next round, or a plain error when the holder is
//! gone. The host is the Python SDK (mcp 2.3) pinned to 2026-07-28; the
//! upstream the Rust fixture (its `elicit` tool asks the client mid-call).

use crate::common;

use common::*;
use serde_json::{Value, json};

use super::e2e_relay::{python, refused};
use super::e2e_relay_shared::{round_key, two_instances};

/// The fixture `fx` behind two instances sharing `redis` and one round key.
async fn shared(
    redis: &common::tmpfs::RedisServer,
    more: &str,
) -> (Setup, Vec<String>, Vec<tokio::process::Child>) {
    let s = Setup::with(|s| {
        format!(
            "{}{more}\n[state]\nbackend = \"redis\"\nredis_url = \"{}\"\n",
            // A held call waits long: what gives it up early is gavel.
            fixture_server("fx", &[], &s.record("fx"))
                .replace("call_timeout = \"30s\"", "call_timeout = \"600s\""),
            redis.url()
        )
    });
    let key = [("GAVEL_ROUND_KEY", round_key(5))];
    let (urls, procs) = two_instances(&s, [&key, &key]).await;
    (s, urls, procs)
}

const ASK: &str = "Proceed?";

fn elicit(via: usize, save: &str) -> Value {
    json!({"op": "once", "via": via, "name": "elicit", "args": {"message": ASK}, "save": save})
}

fn result_text(step: &Value) -> &str {
    step["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no result text in {step}"))
}

/// The retry of a parked round that lands on the other instance completes
/// the held call (once: a replay is refused); one that answers nothing is
/// asked again there, and the new round is answered on the first.
#[tokio::test(flavor = "multi_thread")]
async fn a_parked_round_is_answered_through_the_other_instance() {
    let redis = common::tmpfs::RedisServer::start();
    let (s, urls, _procs) = shared(&redis, "").await;
    let answer = json!({"confirm": true, "note": "go"});
    let steps = python(
        &s,
        &urls,
        &[],
        json!([
            elicit(0, "a"),
            {"op": "retry", "via": 1, "name": "elicit", "args": {"message": ASK}, "from": "a", "answer": answer},
            {"op": "retry", "via": 1, "name": "elicit", "args": {"message": ASK}, "from": "a", "answer": answer},
            elicit(1, "b"),
            {"op": "retry", "via": 0, "name": "elicit", "args": {"message": ASK}, "from": "b", "responses": {}, "save": "c"},
            {"op": "retry", "via": 0, "name": "elicit", "args": {"message": ASK}, "from": "c", "answer": {"confirm": false}},
        ]),
    )
    .await;
    assert_eq!(
        steps[0]["result"]["resultType"], "input_required",
        "{steps:?}"
    );
    assert_eq!(
        result_text(&steps[1]),
        r#"action=accept content={"confirm":true,"note":"go"}"#,
        "{steps:?}"
    );
    refused(&steps[2], "already used");
    assert_eq!(
        steps[3]["result"]["resultType"], "input_required",
        "{steps:?}"
    );
    // Asked again, through instance 0, for the call instance 1 holds.
    let again = &steps[4]["result"];
    assert_eq!(again["resultType"], "input_required", "{steps:?}");
    assert_eq!(again["inputRequests"], steps[3]["result"]["inputRequests"]);
    assert_ne!(again["requestState"], steps[3]["result"]["requestState"]);
    assert_eq!(
        result_text(&steps[5]),
        r#"action=accept content={"confirm":false}"#,
        "{steps:?}"
    );
    // Two calls reached an upstream, one per question asked: none twice.
    let calls = recorded_calls(&s.record("fx"));
    assert_eq!(calls.len(), 2, "{calls:?}");
}

/// The instance that held the call is gone: the retry on the other is
/// told so plainly (the call is lost with it), never left waiting.
#[tokio::test(flavor = "multi_thread")]
async fn a_retry_for_an_instance_that_is_gone_is_told_plainly() {
    let redis = common::tmpfs::RedisServer::start();
    let (s, urls, mut procs) = shared(&redis, "").await;
    let first = python(&s, &urls[..1], &[], json!([elicit(0, "a")])).await;
    let state = first[0]["result"]["requestState"]
        .as_str()
        .unwrap()
        .to_string();
    let key = first[0]["result"]["inputRequests"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    procs[0].kill().await.unwrap();
    let _ = procs[0].wait().await;
    let steps = python(
        &s,
        &urls[1..],
        &[],
        json!([{"op": "retry_raw", "name": "elicit", "args": {"message": ASK}, "state": state,
                "responses": {key: {"action": "accept", "content": {"confirm": true}}}}]),
    )
    .await;
    refused(&steps[0], "not running any more");
}

/// A retry the other instance's policy denies (the shared rate limit is
/// spent by the first call) gives the held call up: the holder cancels
/// it upstream instead of leaving it to time out.
#[tokio::test(flavor = "multi_thread")]
async fn a_retry_denied_on_the_other_instance_gives_the_held_call_up() {
    let redis = common::tmpfs::RedisServer::start();
    let limit = "\n[[servers.fx.limits]]\nscope = \"tool\"\ntool = \"elicit\"\nrate = 1\nper = \"1h\"\nburst = 1\n";
    let (s, urls, _procs) = shared(&redis, limit).await;
    let steps = python(
        &s,
        &urls,
        &[],
        json!([
            elicit(0, "a"),
            {"op": "retry", "via": 1, "name": "elicit", "args": {"message": ASK}, "from": "a", "answer": {"confirm": true}},
        ]),
    )
    .await;
    assert_eq!(
        steps[0]["result"]["resultType"], "input_required",
        "{steps:?}"
    );
    let denied = &steps[1]["result"];
    assert_eq!(denied["isError"], true, "{steps:?}");
    assert!(denied.to_string().contains("rate_limited"), "{steps:?}");
    eventually("the held call is cancelled upstream", || {
        records(&s.record("fx"))
            .iter()
            .any(|r| r["notification"] == "notifications/cancelled")
    })
    .await;
}

/// The resumed call's progress travels back with its outcome: the retry
/// that landed on the other instance gets it on its own stream, under its
/// own token, before the result (raw 2026-07-28 POSTs; the fixture's
/// `elicit` reports two steps after the answer).
#[tokio::test(flavor = "multi_thread")]
async fn a_call_resumed_on_the_other_instance_reports_progress_to_the_retry() {
    use super::e2e_round_limits::{accept_all, post_call};
    let redis = common::tmpfs::RedisServer::start();
    let (_s, urls, _procs) = shared(&redis, "").await;
    let caps = json!({"elicitation": {}});
    let call = json!({"name": "elicit", "arguments": {"message": ASK, "progress": 2}});
    let first = post_call(&urls[0], 1, call.clone(), &caps, "first").await;
    let round = first.iter().find(|m| m["id"] == 1).unwrap()["result"].clone();
    assert_eq!(round["resultType"], "input_required", "{first:?}");
    let mut retry = call;
    retry["requestState"] = round["requestState"].clone();
    retry["inputResponses"] = accept_all(&round, json!({"confirm": true}));
    let second = post_call(&urls[1], 2, retry, &caps, "second").await;
    let done = second.iter().position(|m| m["id"] == 2).unwrap();
    assert_eq!(
        second[done]["result"]["content"][0]["text"], r#"action=accept content={"confirm":true}"#,
        "{second:?}"
    );
    let progress: Vec<&Value> = second[..done]
        .iter()
        .filter(|n| n["method"] == "notifications/progress")
        .collect();
    let tokens: Vec<&Value> = progress
        .iter()
        .map(|n| &n["params"]["progressToken"])
        .collect();
    assert_eq!(tokens, [&json!("second"), &json!("second")], "{second:?}");
    assert_eq!(
        progress[1]["params"]["message"], "answered, step 2",
        "{second:?}"
    );
}
