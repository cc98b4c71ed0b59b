//! What bounds a 2026-07-28 host's input rounds (MRTR) beyond their seal:
//! gavel's own cap on the rounds one request may take, counted in the
//! sealed state so a host cannot reset it (`HostRound::next_round`), for
//! every kind of round — a modern upstream's relayed (`relay.rs`, the
//! TypeScript SDK v2 fixture's `nag`, which asks forever), a legacy
//! upstream's question parked with its call (`parked.rs`, the Rust
//! fixture's `elicit`, asked again while the host answers nothing) and
//! gavel's own approval question (`host/approval_round.rs`, asked again
//! while unanswered). The host is raw 2026-07-28 JSON lines: the SDKs cap
//! rounds themselves, and a hostile host would not.

use crate::common;

use common::raw::RawHost;
use common::*;
use serde_json::{Value, json};

use super::e2e_host_rounds::modern;

/// The cap (`upstream::rounds::MAX_INPUT_ROUNDS`).
const CAP: usize = 10;

/// Sends `call` as a 2026-07-28 `tools/call` declaring `caps`, then
/// retries it with each round's state and `answer(round)` as its
/// responses until an answer is not a round (or `CAP + 2` rounds came):
/// every answer, in order.
fn drive(
    raw: &mut RawHost,
    call: &Value,
    caps: &Value,
    answer: impl Fn(&Value) -> Value,
) -> Vec<Value> {
    let mut out = Vec::new();
    let mut params = call.clone();
    for id in 1..=(CAP as u64 + 2) {
        raw.send_line(&modern(id, "tools/call", params.clone(), caps.clone()));
        let r = raw.answer(&json!(id));
        let round = r["result"].clone();
        out.push(r);
        if round["resultType"] != "input_required" {
            break;
        }
        params = call.clone();
        params["requestState"] = round["requestState"].clone();
        params["inputResponses"] = answer(&round);
    }
    out
}

/// `CAP` rounds, then the error that names the server and the tool.
fn capped(out: &[Value], server: &str, tool: &str) {
    assert_eq!(out.len(), CAP + 1, "{out:#?}");
    for r in &out[..CAP] {
        assert_eq!(r["result"]["resultType"], "input_required", "{r}");
    }
    let e = &out[CAP]["error"];
    let m = e["message"].as_str().unwrap_or_default();
    assert!(
        m.contains(&format!("tool {tool:?} of server {server:?}"))
            && m.contains("after 10 rounds")
            && m.contains("dropped"),
        "{e}"
    );
    assert_eq!(e["data"]["maxRounds"], CAP, "{e}");
}

/// Every question of `round` accepted with `content`.
pub(crate) fn accept_all(round: &Value, content: Value) -> Value {
    let keys = round["inputRequests"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    keys.keys()
        .map(|k| (k.clone(), json!({"action": "accept", "content": content})))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// A modern upstream that asks on every retry: its rounds are relayed
/// `CAP` times, the next is refused (its state never sealed), and the last
/// round's state cannot be replayed to go on.
#[test]
fn a_relayed_upstream_that_asks_forever_is_stopped_at_the_cap() {
    let s = super::e2e_relay::setup("", "");
    let mut raw = RawHost::bare(&s);
    let call = json!({"name": "nag", "arguments": {}});
    let caps = json!({"elicitation": {"form": {}}});
    let out = drive(&mut raw, &call, &caps, |r| {
        accept_all(r, json!({"confirm": true}))
    });
    capped(&out, "modern", "nag");
    // Each round was the upstream's own, answered and relayed on: the
    // upstream counted them in its state (which gavel carried sealed).
    let last = &out[CAP - 1]["result"]["inputRequests"]["again"]["params"]["message"];
    assert_eq!(last, &json!(format!("Round {CAP}: again?")), "{out:#?}");
    // Every request, the refused one too, was decided (11 calls).
    let decided = s
        .decisions()
        .into_iter()
        .filter(|d| d["input"]["action"]["type"] == "tool_call")
        .count();
    assert_eq!(decided, CAP + 1);
    // The state the refused retry answered was spent: no way around the cap.
    let mut replay = call.clone();
    replay["requestState"] = out[CAP - 1]["result"]["requestState"].clone();
    replay["inputResponses"] = accept_all(&out[CAP - 1]["result"], json!({"confirm": true}));
    raw.send_line(&modern(99, "tools/call", replay, caps));
    let r = raw.answer(&json!(99));
    assert_eq!(r["error"]["code"], -32602, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{r}"
    );
}

/// A legacy upstream's question parked with its call, asked again while
/// the host answers nothing: `CAP` rounds, then the call is given up —
/// the error names server and tool, and the upstream's call is cancelled.
#[test]
fn a_parked_call_asked_again_and_again_is_given_up_at_the_cap() {
    let s = Setup::solo("fx");
    let mut raw = RawHost::bare(&s);
    let call = json!({"name": "elicit", "arguments": {"message": "Proceed?"}});
    let out = drive(&mut raw, &call, &json!({"elicitation": {}}), |_| json!({}));
    capped(&out, "fx", "elicit");
    for r in &out[..CAP] {
        assert_eq!(
            r["result"]["inputRequests"]["fx.1"]["params"]["message"], "Proceed?",
            "{r}"
        );
    }
    let start = std::time::Instant::now();
    while !records(&s.record("fx"))
        .iter()
        .any(|r| r["notification"] == "notifications/cancelled")
    {
        assert!(
            start.elapsed() < PATIENCE,
            "the capped call was never cancelled upstream: {}",
            s.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // One call reached the upstream, and it never completed.
    assert_eq!(recorded_calls(&s.record("fx")).len(), 1);
}

/// gavel's approval question, retried without an answer: asked `CAP`
/// times, then denied (never forwarded), the denial saying why.
#[test]
fn an_approval_never_answered_is_denied_at_the_cap() {
    let s = common::approval::setup("");
    let mut raw = RawHost::bare(&s);
    let call = json!({"name": "destructive_delete", "arguments": {"path": "/capped"}});
    let caps = json!({"elicitation": {}});
    let out = drive(&mut raw, &call, &caps, |_| json!({}));
    assert_eq!(out.len(), CAP + 1, "{out:#?}");
    for r in &out[..CAP] {
        assert_eq!(r["result"]["resultType"], "input_required", "{r}");
    }
    let denial = &out[CAP]["result"];
    assert_eq!(denial["isError"], true, "{denial}");
    let t = denial["content"][0]["text"].as_str().unwrap_or_default();
    assert!(t.contains("already took 10 input rounds"), "{t}");
    assert_eq!(common::approval::deletes(&s), 0);
}

/// Result rules that see input rounds: a question naming "deploy" or the
/// "launch codes" is denied, an e-mail address in one is redacted.
pub(crate) const ROUND_RESULT_RULES: &str = r#"
default result := {}

result := {"deny": true, "reasons": ["question_refused"]} if {
	input.output.kind == "input_required"
	some k
	msg := input.output.inputRequests[k].params.message
	some word in ["deploy", "launch codes"]
	contains(msg, word)
}

result := {"redact": {"patterns": ["email"]}} if {
	input.output.kind == "input_required"
	every k, r in input.output.inputRequests {
		not contains(r.params.message, "deploy")
		not contains(r.params.message, "launch codes")
	}
}
"#;

/// The fixture `fx` behind a bundle that allows every request and has
/// [`ROUND_RESULT_RULES`] with an `email` pattern.
pub(crate) fn round_rules_setup() -> Setup {
    Setup::with(|s| {
        let rego = format!("package fx\n\ndecision := {{\"allow\": true}}\n{ROUND_RESULT_RULES}");
        let b = common::policy::bundle(&s.path("b"), "fxb", "fx", json!({}), &rego);
        std::fs::write(
            b.join("fx/data.json"),
            r#"{"result_patterns": {"email": "[a-z]+@[a-z]+\\.[a-z]+"}}"#,
        )
        .unwrap();
        common::policy::config(s, &[&b], "", "")
    })
}

/// The result records (`result_of` set) of kind `input_required`.
pub(crate) fn round_results(s: &Setup) -> Vec<Value> {
    s.decisions()
        .into_iter()
        .filter(|r| r["input"]["output"]["kind"] == "input_required")
        .collect()
}

/// A modern upstream's relayed round passes the result step: a question
/// the rules deny never reaches the host (it gets the denial), one they
/// pass does, and its text counts as the call's result tokens against
/// the budget (the retry's decision sees them).
#[test]
fn a_relayed_round_passes_the_result_policy_and_counts_as_result_tokens() {
    let s = super::e2e_relay::setup(ROUND_RESULT_RULES, "[budget]\ntokens = 100000\n");
    std::fs::write(
        s.dir.path().join("modern/mcp/modern/data.json"),
        r#"{"result_patterns": {"email": "[a-z]+@[a-z]+\\.[a-z]+"}}"#,
    )
    .unwrap();
    let state = s.path("state");
    let mut raw = RawHost::bare_env(&s, &[("GAVEL_STATE_DIR", state.to_str().unwrap())]);
    let line = super::e2e_relay::line;
    let ship = json!({"action": "ship"});
    raw.send_line(&line(
        1,
        "tools/call",
        json!({"name": "confirm", "arguments": ship}),
    ));
    let round = raw.answer(&json!(1))["result"].clone();
    assert_eq!(round["resultType"], "input_required", "{round}");
    assert_eq!(
        round["inputRequests"]["confirm"]["params"]["message"],
        "Really ship?"
    );
    let round_bytes = serde_json::to_vec(&round["inputRequests"]).unwrap().len();
    let retry = json!({"name": "confirm", "arguments": ship, "requestState": round["requestState"],
                       "inputResponses": accept_all(&round, json!({"confirm": true}))});
    raw.send_line(&line(2, "tools/call", retry));
    let done = raw.answer(&json!(2));
    assert_eq!(
        done["result"]["content"][0]["text"], "confirmed ship (state confirm:ship)",
        "{done}"
    );
    // The question the rules deny: the host gets the denial, not the round.
    raw.send_line(&line(
        3,
        "tools/call",
        json!({"name": "confirm", "arguments": {"action": "deploy"}}),
    ));
    let denied = raw.answer(&json!(3))["result"].clone();
    assert_eq!(denied["isError"], true, "{denied}");
    assert!(denied.get("inputRequests").is_none(), "{denied}");
    let t = denied["content"][0]["text"].as_str().unwrap_or_default();
    assert!(
        t.contains("question_refused")
            && t.contains("asked for input")
            && !t.contains("Really deploy"),
        "{t}"
    );
    // Both rounds were decided as rounds: passed, then denied.
    let outcomes: Vec<Value> = round_results(&s)
        .iter()
        .map(|r| r["result"]["outcome"].clone())
        .collect();
    assert_eq!(outcomes, [json!("pass"), json!("deny")]);
    // The retry's decision sees the budget charged with the first call's
    // arguments and its round's text (4 bytes a token, as a result's).
    let retry_cx = s
        .decisions()
        .into_iter()
        .filter(|d| d["input"]["action"]["type"] == "tool_call" && d["result_of"].is_null())
        .nth(1)
        .unwrap()["input"]["context"]
        .clone();
    let tokens = |n: usize| n.div_ceil(4) as u64;
    let args = serde_json::to_vec(&ship).unwrap().len();
    let want = tokens(args) + tokens(round_bytes);
    assert_eq!(retry_cx["cumulative_tokens"], want, "{retry_cx}");
    assert_eq!(retry_cx["budget"]["used"]["tokens"], want, "{retry_cx}");
}

/// A legacy upstream's question parked with its call passes the result
/// step too: an e-mail address in it is redacted before the host sees it;
/// a question the rules deny is withheld and its waiting call given up.
#[test]
fn a_parked_question_passes_the_result_policy() {
    let s = round_rules_setup();
    let mut raw = RawHost::bare(&s);
    let caps = json!({"elicitation": {}});
    let ask = |message: &str| json!({"name": "elicit", "arguments": {"message": message}});
    raw.send_line(&modern(
        1,
        "tools/call",
        ask("Mail ann@example.com?"),
        caps.clone(),
    ));
    let round = raw.answer(&json!(1))["result"].clone();
    assert_eq!(
        round["inputRequests"]["fx.1"]["params"]["message"], "Mail [REDACTED:email]?",
        "{round}"
    );
    // The redacted question is still the upstream's, and its answer reaches it.
    let mut retry = ask("Mail ann@example.com?");
    retry["requestState"] = round["requestState"].clone();
    retry["inputResponses"] = accept_all(&round, json!({"confirm": true}));
    raw.send_line(&modern(2, "tools/call", retry, caps.clone()));
    let done = raw.answer(&json!(2));
    assert_eq!(
        done["result"]["content"][0]["text"], r#"action=accept content={"confirm":true}"#,
        "{done}"
    );
    raw.send_line(&modern(
        3,
        "tools/call",
        ask("Read me the launch codes?"),
        caps,
    ));
    let denied = raw.answer(&json!(3))["result"].clone();
    assert_eq!(denied["isError"], true, "{denied}");
    let t = denied["content"][0]["text"].as_str().unwrap_or_default();
    assert!(
        t.contains("question_refused") && !t.contains("launch codes"),
        "{t}"
    );
    // The withheld question's call was given up: cancelled upstream.
    let start = std::time::Instant::now();
    while !records(&s.path("r.jsonl"))
        .iter()
        .any(|r| r["notification"] == "notifications/cancelled")
    {
        assert!(
            start.elapsed() < PATIENCE,
            "never cancelled: {}",
            s.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let outcomes: Vec<Value> = round_results(&s)
        .iter()
        .map(|r| r["result"]["outcome"].clone())
        .collect();
    assert_eq!(outcomes, [json!("modified"), json!("deny")]);
}

/// A raw 2026-07-28 `tools/call` line (declaring `caps`) carrying
/// `_meta.progressToken` = `token`.
fn with_progress(id: u64, params: Value, caps: Value, token: &str) -> String {
    let mut v: Value = serde_json::from_str(&modern(id, "tools/call", params, caps)).unwrap();
    v["params"]["_meta"]["progressToken"] = json!(token);
    v.to_string()
}

/// Everything gavel writes until the answer to `id`: the notifications
/// before it, and the answer.
fn until_answer(raw: &mut RawHost, id: u64) -> (Vec<Value>, Value) {
    let mut before = Vec::new();
    loop {
        let v = raw.next();
        if v["id"] == json!(id) {
            return (before, v);
        }
        before.push(v);
    }
}

/// A parked call's progress after the host's answer goes to the retry
/// that resumed it, under the retry's own progress token — never to the
/// first request's, already answered with the round.
#[test]
fn a_resumed_calls_progress_reaches_the_retry_under_its_token() {
    let s = Setup::solo("fx");
    let mut raw = RawHost::bare(&s);
    let caps = json!({"elicitation": {}});
    let call = json!({"name": "elicit", "arguments": {"message": "Go?", "progress": 2}});
    raw.send_line(&with_progress(1, call.clone(), caps.clone(), "first"));
    let (_, first) = until_answer(&mut raw, 1);
    let round = first["result"].clone();
    assert_eq!(round["resultType"], "input_required", "{first}");
    let mut retry = call;
    retry["requestState"] = round["requestState"].clone();
    retry["inputResponses"] = accept_all(&round, json!({"confirm": true}));
    raw.send_line(&with_progress(2, retry, caps, "second"));
    let (before, done) = until_answer(&mut raw, 2);
    assert_eq!(
        done["result"]["content"][0]["text"], r#"action=accept content={"confirm":true}"#,
        "{done}"
    );
    let progress: Vec<&Value> = before
        .iter()
        .filter(|n| n["method"] == "notifications/progress")
        .collect();
    let tokens: Vec<&Value> = progress
        .iter()
        .map(|n| &n["params"]["progressToken"])
        .collect();
    assert_eq!(tokens, [&json!("second"), &json!("second")], "{before:?}");
    assert_eq!(progress[1]["params"]["message"], "answered, step 2");
}

/// Every JSON-RPC message of an HTTP answer (a JSON body or an SSE stream).
fn messages(raw: &str) -> Vec<Value> {
    let body = raw
        .split("\r\n\r\n")
        .skip(1)
        .collect::<Vec<_>>()
        .join("\r\n\r\n");
    let mut out: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect();
    if out.is_empty() {
        // A plain JSON body (possibly chunked: take the object).
        if let (Some(a), Some(b)) = (body.find('{'), body.rfind('}')) {
            out.extend(serde_json::from_str::<Value>(&body[a..=b]).ok());
        }
    }
    out
}

/// A raw 2026-07-28 `tools/call` POST of `params` to `url` (declaring
/// `caps`, progress token `token`): every message of its answer.
pub(crate) async fn post_call(
    url: &str,
    id: u64,
    params: Value,
    caps: &Value,
    token: &str,
) -> Vec<Value> {
    let body: Value =
        serde_json::from_str(&with_progress(id, params, caps.clone(), token)).unwrap();
    let name = body["params"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let headers = [
        ("MCP-Protocol-Version", "2026-07-28"),
        ("Mcp-Method", "tools/call"),
        ("Mcp-Name", name.as_str()),
    ];
    let (status, raw) = super::e2e_host_era::http(url, "POST", &headers, Some(&body)).await;
    assert_eq!(status, 200, "{raw}");
    messages(&raw)
}

/// The same over `gavel serve`: the retry is a request of its own, on its
/// own response stream, and the resumed call's progress arrives on it.
#[tokio::test(flavor = "multi_thread")]
async fn over_http_a_resumed_calls_progress_reaches_the_retrys_stream() {
    let s = Setup::solo("fx");
    let (_gavel, url) = super::e2e_host_era::serve(&s).await;
    let caps = json!({"elicitation": {}});
    let call = json!({"name": "elicit", "arguments": {"message": "Go?", "progress": 2}});
    let first = post_call(&url, 1, call.clone(), &caps, "first").await;
    let round = first.iter().find(|m| m["id"] == 1).unwrap()["result"].clone();
    assert_eq!(round["resultType"], "input_required", "{first:?}");
    let mut retry = call;
    retry["requestState"] = round["requestState"].clone();
    retry["inputResponses"] = accept_all(&round, json!({"confirm": true}));
    let second = post_call(&url, 2, retry, &caps, "second").await;
    let done = second.iter().find(|m| m["id"] == 2).unwrap();
    assert_eq!(
        done["result"]["content"][0]["text"], r#"action=accept content={"confirm":true}"#,
        "{second:?}"
    );
    let tokens: Vec<&Value> = second
        .iter()
        .filter(|n| n["method"] == "notifications/progress")
        .map(|n| &n["params"]["progressToken"])
        .collect();
    assert_eq!(tokens, [&json!("second"), &json!("second")], "{second:?}");
}

/// An upstream's question the policy wants a person to approve (the
/// approval policy: every `sampling_request`) during a 2026-07-28 host's
/// call: gavel's approval question comes first, in a round of its own —
/// never beside the question, which the host would fulfil before the
/// approval is known — then, approved, the sampling request itself;
/// declined, the upstream's request is refused and the host never sees it.
#[test]
fn an_upstreams_question_that_needs_approval_is_approved_in_a_round_first() {
    let s = common::approval::setup("");
    let mut raw = RawHost::bare(&s);
    let caps = json!({"elicitation": {}, "sampling": {}});
    let call = |id: u64, state: Option<&Value>, responses: Value| {
        // Another prompt after the first approval, which is remembered
        // for the same arguments (`remember_seconds`, scope `call`).
        let prompt = if id < 4 { "Say hi" } else { "Say bye" };
        let mut p = json!({"name": "sample", "arguments": {"prompt": prompt}});
        if let Some(state) = state {
            p["requestState"] = state.clone();
            p["inputResponses"] = responses;
        }
        modern(id, "tools/call", p, caps.clone())
    };
    let only = |round: &Value| -> (String, Value) {
        let r = round["inputRequests"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert_eq!(r.len(), 1, "one input request a round: {round}");
        let (k, v) = r.into_iter().next().unwrap();
        (k, v)
    };
    // Approved: the approval round, then the question's.
    raw.send_line(&call(1, None, json!({})));
    let first = raw.answer(&json!(1))["result"].clone();
    let (key, asked) = only(&first);
    assert_eq!(asked["method"], "elicitation/create", "{first}");
    let message = asked["params"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("fx"), "names the server: {message}");
    let yes = json!({key: {"action": "accept", "content": {"approve": true}}});
    raw.send_line(&call(2, Some(&first["requestState"]), yes));
    let second = raw.answer(&json!(2))["result"].clone();
    let (key, sampling) = only(&second);
    assert_eq!(sampling["method"], "sampling/createMessage", "{second}");
    let sampled = json!({key: {"role": "assistant", "model": "m",
                               "content": {"type": "text", "text": "hi there"}}});
    raw.send_line(&call(3, Some(&second["requestState"]), sampled));
    let done = raw.answer(&json!(3));
    assert_eq!(
        done["result"]["content"][0]["text"], "sampled: hi there",
        "{done}"
    );
    assert_eq!(common::approval::steps(&s), ["requested", "approved"]);
    // Remembered: the same question again is asked at once.
    raw.send_line(&call(3, None, json!({})).replace("\"id\":3", "\"id\":30"));
    let again = raw.answer(&json!(30))["result"].clone();
    let (key, sampling) = only(&again);
    assert_eq!(sampling["method"], "sampling/createMessage", "{again}");
    // (Answered, so that one call is in flight at a time: gavel refuses a
    // question it cannot attribute to exactly one.)
    let sampled = json!({key: {"role": "assistant", "model": "m",
                               "content": {"type": "text", "text": "hi again"}}});
    let retry = call(3, Some(&again["requestState"]), sampled);
    raw.send_line(&retry.replace("\"id\":3", "\"id\":31"));
    let done = raw.answer(&json!(31));
    assert_eq!(
        done["result"]["content"][0]["text"], "sampled: hi again",
        "{done}"
    );
    // Declined: the question is refused to the upstream, never shown.
    raw.send_line(&call(4, None, json!({})));
    let first = raw.answer(&json!(4))["result"].clone();
    let (key, asked) = only(&first);
    assert_eq!(asked["method"], "elicitation/create", "{first}");
    let no = json!({key: {"action": "decline"}});
    raw.send_line(&call(5, Some(&first["requestState"]), no));
    let done = raw.answer(&json!(5));
    let t = done["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        t.starts_with("sampling failed") && t.contains("approval_declined"),
        "{done}"
    );
    assert_eq!(
        common::approval::steps(&s),
        [
            "requested",
            "approved",
            "remembered",
            "requested",
            "declined"
        ]
    );
}
