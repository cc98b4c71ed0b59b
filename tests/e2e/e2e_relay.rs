//! A 2026-07-28 host in front of a 2026-07-28 upstream: the upstream's
//! input rounds (MRTR) relayed to the host with gavel's sealed
//! `requestState` (`src/front/session/relay.rs`, `src/host/seal.rs`). The
//! host is the official Python SDK (mcp 2.3, `tests/clients/python_rounds.py`)
//! pinned to 2026-07-28, driving the rounds itself or by hand; the upstream
//! the TypeScript SDK v2's modern-only fixture (`tests/fixture/modern_only.mjs`),
//! which writes every request its round tools get to a file, so each test
//! says what reached it — and that a refused retry reached nothing.

use crate::common;

use common::*;
use serde_json::{Value, json};

use super::e2e_era::modern_only_server;

/// Everything allowed except what `extra` denies; `context` rules read the
/// budget (so the decision input shows it).
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

/// The modern-only server as the one server (`modern`, no prefix), with
/// its call log at `calls.jsonl`, `policy(extra)`, a decision log and
/// `more` appended to the config.
pub(crate) fn setup(extra: &str, more: &str) -> Setup {
    let rego = policy(extra);
    Setup::with(|s| {
        let bundle = common::policy::bundle(s.dir.path(), "modern", "mcp/modern", json!({}), &rego);
        format!(
            "{}[policy]\neval_timeout = \"10s\"\n\n[servers.modern]\ncommand = \"node\"\nargs = [{:?}]\nstartup_timeout = \"30s\"\ncall_timeout = \"30s\"\nbundle = {:?}\nenv = {{ MODERN_CALL_LOG = {:?} }}\n\n{more}",
            s.decision_log_table(),
            modern_only_server().display().to_string(),
            bundle.display().to_string(),
            s.path("calls.jsonl").display().to_string(),
        )
    })
}

/// What reached the upstream's round tools, in order.
pub(crate) fn upstream_calls(s: &Setup) -> Vec<Value> {
    records(&s.path("calls.jsonl"))
}

/// Runs `plan` through the Python host at `targets` (gavel's command line,
/// or one or more `gavel serve` URLs) with `env`: one line per step.
pub(crate) async fn python(
    s: &Setup,
    targets: &[String],
    env: &[(&str, String)],
    plan: Value,
) -> Vec<Value> {
    let mut lines = common::python::python_host(s, "python_rounds.py", targets, env, &plan).await;
    assert_eq!(lines.remove(0)["op"], "connected", "{lines:?}");
    lines
}

/// gavel's stdio command line on `s`.
fn stdio(s: &Setup) -> Vec<String> {
    let mut t = vec![GAVEL.to_string()];
    t.extend(s.run_args());
    t
}

pub(crate) fn text(step: &Value) -> String {
    let r = &step["result"];
    let t = r["content"][0]["text"]
        .as_str()
        .or_else(|| r["messages"][0]["content"]["text"].as_str())
        .or_else(|| r["contents"][0]["text"].as_str());
    t.unwrap_or_else(|| panic!("no text in {step}")).to_string()
}

/// The error of a step gavel refused, which must be -32602 saying `says`.
pub(crate) fn refused(step: &Value, says: &str) {
    assert_eq!(step["error"]["code"], -32602, "{step}");
    let m = step["error"]["message"].as_str().unwrap_or_default();
    assert!(m.contains(says), "{says:?} not in {step}");
}

/// The round the SDK drives: relayed for tools, prompts and resources, the
/// upstream's state back to it byte for byte; over stdio and HTTP alike.
async fn relayed_rounds_complete(s: &Setup, targets: &[String]) {
    let steps = python(
        s,
        targets,
        &[],
        json!([
            {"op": "call", "name": "confirm", "args": {"action": "deploy"}, "answer": {"confirm": true}},
            {"op": "prompt", "name": "greeting", "answer": {"note": "Ada"}},
            {"op": "read", "uri": "modern://secret", "answer": {"confirm": true}},
            {"op": "once", "name": "confirm", "args": {"action": "ship"}},
        ]),
    )
    .await;
    assert_eq!(
        text(&steps[0]),
        "confirmed deploy (state confirm:deploy)",
        "{steps:?}"
    );
    assert_eq!(text(&steps[1]), "Hello, Ada", "{steps:?}");
    assert_eq!(text(&steps[2]), "the secret", "{steps:?}");
    // On the wire: input_required, the upstream's question unchanged, and a
    // state of gavel's (never the upstream's own).
    let round = &steps[3]["result"];
    assert_eq!(round["resultType"], "input_required", "{round}");
    assert_eq!(
        round["inputRequests"]["confirm"]["params"]["message"],
        "Really ship?"
    );
    assert_eq!(
        round["inputRequests"]["confirm"]["method"],
        "elicitation/create"
    );
    let state = round["requestState"].as_str().unwrap();
    assert!(state.starts_with("gavel1."), "{state}");
    assert_eq!(
        round["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "gavel"
    );
    // The upstream saw each call twice: first without state, then with its
    // own state exactly and the host's answer.
    let calls = upstream_calls(s);
    let confirm: Vec<&Value> = calls.iter().filter(|c| c["tool"] == "confirm").collect();
    assert_eq!(confirm.len(), 3, "{calls:?}");
    assert_eq!(confirm[0]["requestState"], Value::Null);
    assert_eq!(confirm[1]["requestState"], "confirm:deploy");
    assert_eq!(
        confirm[1]["inputResponses"]["confirm"],
        json!({"action": "accept", "content": {"confirm": true}})
    );
    for tool in ["greeting", "secret"] {
        let n = calls.iter().filter(|c| c["tool"] == tool).count();
        assert_eq!(n, 2, "{tool}: {calls:?}");
    }
    // Every request decided, the retry as well; each round's question
    // decided as the upstream→host request it is.
    let log = s.decisions();
    let kinds = |k: &str| {
        log.iter()
            .filter(|d| d["input"]["action"]["type"] == k)
            .count()
    };
    assert_eq!(kinds("tool_call"), 3, "{log:?}");
    assert_eq!(kinds("prompt_get"), 2, "{log:?}");
    assert_eq!(kinds("resource_read"), 2, "{log:?}");
    assert_eq!(kinds("elicitation_request"), 4, "{log:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_modern_hosts_round_is_relayed_and_its_retry_completes_over_stdio() {
    let s = setup("", "");
    relayed_rounds_complete(&s, &stdio(&s)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_modern_hosts_round_is_relayed_and_its_retry_completes_over_http() {
    let s = setup("", "");
    let state = s.path("state");
    let (_gavel, port) =
        common::gavel_serve(&s, &[("GAVEL_STATE_DIR", state.to_str().unwrap())]).await;
    relayed_rounds_complete(&s, &[format!("http://127.0.0.1:{port}/mcp")]).await;
}

/// Tampered, moved, malformed, oversized or replayed: refused with -32602,
/// and the upstream gets nothing; the good retry completes once.
#[tokio::test(flavor = "multi_thread")]
async fn a_bad_retry_is_refused_and_never_reaches_the_upstream() {
    let s = setup("", "");
    let a = json!({"action": "a"});
    let big = "x".repeat(1024 * 1024 + 1);
    let steps = python(
        &s,
        &stdio(&s),
        &[],
        json!([
            {"op": "once", "name": "confirm", "args": a, "save": "r"},
            {"op": "retry", "name": "confirm", "args": a, "from": "r", "state": "flip", "answer": {"confirm": true}},
            {"op": "retry", "name": "confirm", "args": {"action": "b"}, "from": "r", "answer": {"confirm": true}},
            {"op": "retry", "name": "confirm", "args": a, "from": "r", "responses": {"confirm": {"action": "accept", "content": {"note": big}}}},
            {"op": "retry", "name": "confirm", "args": a, "from": "r", "state": "gavel1.forged"},
            {"op": "retry", "name": "confirm", "args": a, "from": "r", "answer": {"confirm": true}},
            {"op": "retry", "name": "confirm", "args": a, "from": "r", "answer": {"confirm": true}},
            {"op": "retry", "name": "confirm", "args": a, "from": "r", "state": "none", "answer": {"confirm": true}},
        ]),
    )
    .await;
    assert_eq!(
        steps[0]["result"]["resultType"], "input_required",
        "{steps:?}"
    );
    refused(&steps[1], "not one gavel issued");
    refused(&steps[2], "set of arguments");
    refused(&steps[3], "at most 1048576");
    refused(&steps[4], "not one gavel issued");
    // Each refusal names the call and the server.
    assert!(
        steps[2]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tools/call \"confirm\" of server \"modern\""),
        "{}",
        steps[2]
    );
    // The refused retries did not spend the round.
    assert_eq!(text(&steps[5]), "confirmed a (state confirm:a)");
    refused(&steps[6], "already used");
    // Responses without a state answer no round gavel issued: they go on
    // as given (the upstream uses what it recognizes, as directly), with
    // no state.
    assert!(text(&steps[7]).starts_with("confirmed a"), "{steps:?}");
    let calls = upstream_calls(&s);
    let states: Vec<&Value> = calls.iter().map(|c| &c["requestState"]).collect();
    assert_eq!(
        states,
        [&Value::Null, &json!("confirm:a"), &Value::Null],
        "{calls:?}"
    );
    assert_eq!(
        calls[2]["inputResponses"]["confirm"]["action"], "accept",
        "{calls:?}"
    );
    // A refused retry is refused before any decision: only the first
    // call, the good retry and the new call were decided.
    let decided = s
        .decisions()
        .into_iter()
        .filter(|d| d["input"]["action"]["type"] == "tool_call")
        .count();
    assert_eq!(decided, 3);
    // Each refusal is logged, naming why; the state never is.
    let log = s.log_text();
    assert!(log.contains("refused an input-round retry"), "{log}");
    assert!(log.contains("already used"), "{log}");
    let state = steps[0]["result"]["requestState"].as_str().unwrap();
    assert!(!log.contains(state), "the state was logged: {log}");
}

/// A raw 2026-07-28 request line declaring form elicitation.
pub(crate) fn line(id: u64, method: &str, params: Value) -> String {
    let mut params = params;
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}}},
    });
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

/// `inputResponses` the SDKs would not send (the Python one validates its
/// own): each refused with -32602 before the round is spent, the upstream
/// sent nothing; the well-formed retry after them completes.
#[test]
fn malformed_input_responses_are_refused_before_the_upstream() {
    let s = setup("", "");
    let mut raw = common::raw::RawHost::bare(&s);
    let args = json!({"action": "raw"});
    raw.send_line(&line(
        1,
        "tools/call",
        json!({"name": "confirm", "arguments": args}),
    ));
    let round = raw.answer(&json!(1));
    assert_eq!(round["result"]["resultType"], "input_required", "{round}");
    let state = round["result"]["requestState"].clone();
    let retry = |id: u64, responses: Value| {
        line(
            id,
            "tools/call",
            json!({"name": "confirm", "arguments": args, "requestState": state, "inputResponses": responses}),
        )
    };
    let many: serde_json::Map<String, Value> =
        (0..33).map(|i| (format!("k{i}"), json!({}))).collect();
    for (id, responses, says) in [
        (2, json!({"confirm": "yes"}), "not an object"),
        (3, json!({"confirm": 5}), "not an object"),
        (4, Value::Object(many), "33 entries"),
        (5, json!({"k".repeat(300): {}}), "300 bytes"),
    ] {
        raw.send_line(&retry(id, responses));
        let r = raw.answer(&json!(id));
        assert_eq!(r["error"]["code"], -32602, "{r}");
        let m = r["error"]["message"].as_str().unwrap();
        assert!(m.contains(says), "{says:?} not in {m}");
    }
    // Not a map at all: not a tools/call rmcp can read, refused as such.
    raw.send_line(&retry(6, json!("yes")));
    assert_eq!(raw.answer(&json!(6))["error"]["code"], -32602);
    assert_eq!(upstream_calls(&s).len(), 1, "{:?}", upstream_calls(&s));
    raw.send_line(&retry(
        7,
        json!({"confirm": {"action": "accept", "content": {"confirm": true}}, "extra": {"ignored": true}}),
    ));
    let done = raw.answer(&json!(7));
    assert_eq!(
        done["result"]["content"][0]["text"], "confirmed raw (state confirm:raw)",
        "{done}"
    );
    // The extra answer went to the upstream, which ignores it (the spec).
    let calls = upstream_calls(&s);
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(
        calls[1]["inputResponses"]["extra"],
        json!({"ignored": true})
    );
}

/// A round answered after its expiry (gavel's clock moved past it) is
/// refused; the upstream never sees the late retry.
#[tokio::test(flavor = "multi_thread")]
async fn an_expired_round_is_refused() {
    let s = setup("", "");
    let clock = TestClock::new(s.path("clock"));
    let a = json!({"action": "late"});
    let steps = python(
        &s,
        &stdio(&s),
        &[("GAVEL_TEST_CLOCK_FILE", clock.0.display().to_string())],
        json!([
            {"op": "once", "name": "confirm", "args": a, "save": "r"},
            {"op": "advance", "seconds": 601},
            {"op": "retry", "name": "confirm", "args": a, "from": "r", "answer": {"confirm": true}},
        ]),
    )
    .await;
    assert_eq!(
        steps[0]["result"]["resultType"], "input_required",
        "{steps:?}"
    );
    refused(&steps[2], "expired");
    assert_eq!(upstream_calls(&s).len(), 1, "{:?}", upstream_calls(&s));
}

/// A retry the policy denies gets the policy's denial, as any call would;
/// nothing more reaches the upstream.
#[tokio::test(flavor = "multi_thread")]
async fn a_retry_is_decided_again_and_a_denial_stops_it() {
    let s = setup(
        "",
        "[[servers.modern.limits]]\nscope = \"tool\"\ntool = \"confirm\"\nrate = 1\nper = \"1h\"\nburst = 1\n",
    );
    let a = json!({"action": "once"});
    let steps = python(
        &s,
        &stdio(&s),
        &[],
        json!([
            {"op": "once", "name": "confirm", "args": a, "save": "r"},
            {"op": "retry", "name": "confirm", "args": a, "from": "r", "answer": {"confirm": true}},
        ]),
    )
    .await;
    assert_eq!(
        steps[0]["result"]["resultType"], "input_required",
        "{steps:?}"
    );
    let denial = &steps[1]["result"];
    assert_eq!(denial["isError"], true, "{steps:?}");
    assert!(
        denial["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("rate_limited"),
        "{denial}"
    );
    assert_eq!(upstream_calls(&s).len(), 1, "{:?}", upstream_calls(&s));
}

/// A malformed standard request under the 2026 envelope is refused as
/// such, never forwarded.
#[test]
fn a_malformed_modern_tools_call_reaches_no_upstream() {
    let s = setup("", "");
    let mut raw = common::raw::RawHost::bare(&s);
    raw.send_line(&super::e2e_host_era::modern_line(
        1,
        "tools/call",
        json!({"name": 123, "arguments": {"action": "x"}, "requestState": "gavel1.x.y"}),
        "",
    ));
    let r = raw.answer(&json!(1));
    assert_eq!(r["error"]["code"], -32602, "{r}");
    // A well-formed call after it works, and is the only one the upstream saw.
    raw.send_line(&super::e2e_host_era::modern_line(
        2,
        "tools/call",
        json!({"name": "confirm", "arguments": {"action": "x"}}),
        "",
    ));
    let r = raw.answer(&json!(2));
    assert_eq!(
        r["error"]["code"], -32021,
        "a host without elicitation: {r}"
    );
    assert_eq!(upstream_calls(&s).len(), 1, "{:?}", upstream_calls(&s));
    assert!(
        s.decisions()
            .iter()
            .all(|d| d["input"]["action"]["tool"] != json!(123))
    );
}

/// A round's question is decided as the upstream→host request it is: a
/// policy that denies elicitation from this server stops the round before
/// the host sees it.
#[tokio::test(flavor = "multi_thread")]
async fn a_rounds_question_the_policy_denies_never_reaches_the_host() {
    let s = setup(
        r#"violations contains "no_questions" if input.action.type == "elicitation_request""#,
        "",
    );
    let steps = python(
        &s,
        &stdio(&s),
        &[],
        json!([{"op": "once", "name": "confirm", "args": {"action": "ask"}}]),
    )
    .await;
    let e = &steps[0]["error"];
    assert!(steps[0]["result"].is_null(), "{steps:?}");
    assert!(
        e["message"].as_str().unwrap().contains("no_questions")
            || e["data"].to_string().contains("no_questions"),
        "{steps:?}"
    );
    let asked: Vec<Value> = s
        .decisions()
        .into_iter()
        .filter(|d| d["input"]["action"]["type"] == "elicitation_request")
        .collect();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0]["result"]["allow"], false);
}
