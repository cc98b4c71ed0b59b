//! Input rounds gavel itself makes for a 2026-07-28 host (MRTR; reference
//! §2.3 shape 2 and §2.4): its approval question
//! (`host/approval_round.rs`) and a legacy upstream's questions parked
//! with their call (`front/session/parked.rs`). A real host — the Python
//! SDK's `Client` (mcp 2.3) pinned to 2026-07-28, answering rounds through
//! its elicitation and sampling callbacks or driven one request at a time
//! (`tests/clients/python_host_rounds.py`) — over stdio and HTTP, in front of
//! the fixture (approval, parking) and npm server-everything (its
//! `trigger-elicitation-request` and `trigger-sampling-request` tools, a
//! legacy upstream asking mid-call); raw JSON lines for what the wire
//! must show.

use crate::common;

use common::approval::{deletes, setup, steps};
use common::raw::RawHost;
use common::*;
use serde_json::{Value, json};

/// Runs `plan` (`python_host_rounds.py`'s) against `target` (gavel's command
/// line, or a `gavel serve` URL): one line per step.
pub(crate) async fn python(s: &Setup, target: &[String], plan: Value) -> Vec<Value> {
    common::python::python_host(s, "python_host_rounds.py", target, &[], &plan).await
}

/// gavel on `s` over stdio (as the host launches it) and over HTTP (a
/// `gavel serve` kept alive by the returned child): the two targets.
pub(crate) async fn targets(s: &Setup) -> (Vec<(String, Vec<String>)>, tokio::process::Child) {
    let mut stdio = vec![GAVEL.to_string()];
    stdio.extend(s.run_args());
    let state = s.path("state");
    let (gavel, port) =
        common::gavel_serve(s, &[("GAVEL_STATE_DIR", state.to_str().unwrap())]).await;
    let http = vec![format!("http://127.0.0.1:{port}/mcp")];
    (vec![("stdio".into(), stdio), ("http".into(), http)], gavel)
}

pub(crate) fn text(step: &Value) -> String {
    step["result"]["content"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|b| b["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

fn reasons(step: &Value) -> Value {
    step["result"]["_meta"]["dev.gavel/decision"]["reasons"].clone()
}

const APPROVE: &str = "gavel.approval";

/// B11: the approval a policy asks for is asked of a modern host as an
/// input round — granted (forwarded once), declined (the legacy path's
/// denial, never forwarded), or not askable (no elicitation declared: the
/// denial with the appeal path) — over stdio and HTTP alike.
#[tokio::test(flavor = "multi_thread")]
async fn a_modern_host_is_asked_for_approval_through_an_input_round() {
    let s = setup("");
    let (targets, _gavel) = targets(&s).await;
    let mut forwarded = 0;
    for (how, target) in &targets {
        let delete = |path: &str| json!({"op": "call", "name": "destructive_delete", "args": {"path": path}});
        let granted = python(
            &s,
            target,
            json!({"elicit": {"action": "accept", "content": {"approve": true}},
                   "steps": [delete(&format!("/granted/{how}"))]}),
        )
        .await;
        assert_ne!(granted[0]["result"]["isError"], true, "{how}: {granted:?}");
        forwarded += 1;
        assert_eq!(deletes(&s), forwarded, "{how}");
        // The question names the server, the tool and the arguments.
        let asked = granted[0]["asked"][0]["message"]
            .as_str()
            .unwrap_or_default();
        for part in [
            "destructive_delete",
            "server fx",
            &format!("/granted/{how}"),
        ] {
            assert!(asked.contains(part), "{how}: {part} not in {asked:?}");
        }
        for (answer, code) in [
            (json!({"action": "decline"}), "approval_declined"),
            (
                json!({"action": "accept", "content": {"approve": false}}),
                "approval_declined",
            ),
            (json!({"action": "cancel"}), "approval_cancelled"),
        ] {
            let denied = python(
                &s,
                target,
                json!({"elicit": answer, "steps": [delete(&format!("/denied/{how}/{code}"))]}),
            )
            .await;
            assert_eq!(denied[0]["result"]["isError"], true, "{how}: {denied:?}");
            assert_eq!(reasons(&denied[0]), json!([code]), "{how}: {denied:?}");
        }
        // A host that declares no elicitation cannot be asked.
        let cannot = python(&s, target, json!({"elicit": null, "steps": [delete("/x")]})).await;
        assert_eq!(reasons(&cannot[0]), json!(["approval_required"]), "{how}");
        let t = text(&cannot[0]);
        assert!(
            t.contains("cannot ask") && t.contains("https://approvals.example.test"),
            "{how}: {t}"
        );
        assert_eq!(
            deletes(&s),
            forwarded,
            "{how}: a refused approval forwarded a call"
        );
    }
    // Every step logged as for a legacy host: each round's question, each
    // answer; the host that could not be asked, as unavailable.
    let steps = steps(&s);
    for step in [
        "requested",
        "approved",
        "declined",
        "cancelled",
        "unavailable",
    ] {
        assert!(steps.iter().any(|s| s == step), "{step} not in {steps:?}");
    }
}

/// B11: the sealed approval state answers once, for exactly the call it
/// was issued for: a retry with other arguments is refused before anything
/// is decided or forwarded (the state stays good for its own call); a
/// retry that answers nothing is asked again; once a state has answered,
/// its replay is refused.
#[tokio::test(flavor = "multi_thread")]
async fn an_approval_state_answers_once_and_only_its_own_call() {
    let s = setup("");
    let mut target = vec![GAVEL.to_string()];
    target.extend(s.run_args());
    let args = json!({"path": "/once"});
    // The host declares elicitation; each step is one request, driven by
    // the test (`call_once`), so the callback never runs.
    let plan = |steps: Value| json!({"elicit": {"action": "decline"}, "steps": steps});
    let ask = json!({"op": "call_once", "name": "destructive_delete", "args": args});
    let yes = json!({APPROVE: {"action": "accept", "content": {"approve": true}}});
    // A retry sends the state step `from` was answered with.
    let retry = |args: &Value, from: usize| {
        json!({"op": "call_once", "name": "destructive_delete",
               "args": args, "responses": yes, "state_from": from})
    };
    let out = python(
        &s,
        &target,
        plan(json!([
            ask,
            retry(&json!({"path": "/other"}), 0),
            // No answer: asked again, with a new state (the old one spent).
            json!({"op": "call_once", "name": "destructive_delete", "args": args,
                   "responses": {}, "state_from": 0}),
            retry(&args, 2),
            retry(&args, 2),
            retry(&args, 0),
        ])),
    )
    .await;
    let r = &out[0]["result"];
    assert_eq!(r["resultType"], "input_required", "{out:?}");
    assert_eq!(
        r["inputRequests"][APPROVE]["method"], "elicitation/create",
        "{r}"
    );
    // Other arguments: refused, naming why, nothing forwarded.
    assert_eq!(out[1]["error"]["code"], -32602, "{out:?}");
    let m = out[1]["error"]["message"].as_str().unwrap_or_default();
    assert!(m.contains("arguments") && m.contains("requestState"), "{m}");
    // The retry that answers nothing is asked again.
    let again = &out[2]["result"];
    assert_eq!(again["resultType"], "input_required", "{out:?}");
    assert_ne!(again["requestState"], r["requestState"], "{out:?}");
    // The new round's answer: approved and forwarded, once.
    assert_ne!(out[3]["result"]["isError"], true, "{out:?}");
    assert_eq!(out[3]["result"]["resultType"], "complete", "{out:?}");
    // Replays of either state: refused before the policy, the upstream
    // never reached.
    for o in &out[4..] {
        assert_eq!(o["error"]["code"], -32602, "{out:?}");
        let m = o["error"]["message"].as_str().unwrap_or_default();
        assert!(m.contains("already used"), "{m}");
    }
    assert_eq!(deletes(&s), 1, "exactly the approved call was forwarded");
}

const ENVELOPE: &str = r#""io.modelcontextprotocol/protocolVersion":"2026-07-28""#;

/// A raw 2026-07-28 request line declaring `caps`.
pub(crate) fn modern(id: u64, method: &str, params: Value, caps: Value) -> String {
    let mut params = params;
    let mut meta: Value = serde_json::from_str(&format!("{{{ENVELOPE}}}")).unwrap();
    meta["io.modelcontextprotocol/clientCapabilities"] = caps;
    params["_meta"] = meta;
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

/// B3: only this request's capabilities say whether gavel may ask — a
/// request declaring elicitation gets the round, the next one, declaring
/// none, the denial (nothing carried over).
#[test]
fn each_request_is_asked_by_its_own_capabilities() {
    let s = setup("");
    let mut raw = RawHost::bare(&s);
    let call = json!({"name": "destructive_delete", "arguments": {"path": "/b3"}});
    raw.send_line(&modern(
        1,
        "tools/call",
        call.clone(),
        json!({"elicitation": {}}),
    ));
    let r = raw.answer(&json!(1));
    assert_eq!(r["result"]["resultType"], "input_required", "{r}");
    assert_eq!(
        r["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "gavel",
        "{r}"
    );
    raw.send_line(&modern(2, "tools/call", call, json!({})));
    let r = raw.answer(&json!(2));
    assert_eq!(r["result"]["isError"], true, "{r}");
    let t = r["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(t.contains("elicitation"), "{t}");
    assert_eq!(deletes(&s), 0);
}

/// B8: server-everything (legacy) asks mid-call; the modern host answers
/// through its callbacks and the tool completes — over stdio and HTTP.
#[tokio::test(flavor = "multi_thread")]
async fn a_legacy_upstreams_questions_reach_a_modern_host_as_rounds() {
    let s = crate::e2e_host_era::two_eras();
    let (targets, _gavel) = targets(&s).await;
    for (how, target) in &targets {
        let out = python(
            &s,
            target,
            json!({
                "elicit": {"action": "accept", "content": {"name": format!("Ada {how}"), "check": true}},
                "sample": format!("sampled for {how}"),
                "steps": [
                    {"op": "call", "name": "everything__trigger-elicitation-request", "args": {}},
                    {"op": "call", "name": "everything__trigger-sampling-request",
                     "args": {"prompt": "hello", "maxTokens": 20}},
                ],
            }),
        )
        .await;
        let elicited = text(&out[0]);
        assert!(elicited.contains(&format!("Ada {how}")), "{how}: {out:?}");
        assert_eq!(
            out[0]["asked"].as_array().map(Vec::len),
            Some(1),
            "{how}: {out:?}"
        );
        let sampled = text(&out[1]);
        assert!(
            sampled.contains(&format!("sampled for {how}")),
            "{how}: {out:?}"
        );
        assert!(
            out[1]["asked"][0]["messages"][0]["content"]["text"]
                .as_str()
                .unwrap_or_default()
                .contains("hello"),
            "{how}: {out:?}"
        );
    }
    // Each question was decided as the upstream→host action it is.
    let kinds: Vec<Value> = s
        .decisions()
        .iter()
        .map(|d| d["input"]["action"]["type"].clone())
        .collect();
    for k in ["elicitation_request", "sampling_request"] {
        assert!(kinds.contains(&json!(k)), "{k} not decided: {kinds:?}");
    }
}

/// B8: a host that does not declare the capability a question needs is
/// not asked: the upstream's request is refused, and the upstream decides
/// what its call answers.
#[tokio::test(flavor = "multi_thread")]
async fn a_question_the_request_cannot_take_is_refused_upstream() {
    let s = Setup::solo("fx");
    let mut target = vec![GAVEL.to_string()];
    target.extend(s.run_args());
    let out = python(
        &s,
        &target,
        json!({"elicit": null, "sample": "unused", "steps": [
            {"op": "call", "name": "elicit", "args": {"message": "Proceed?"}},
            {"op": "call", "name": "sample", "args": {"prompt": "hi"}},
        ]}),
    )
    .await;
    let t = text(&out[0]);
    assert!(
        t.contains("elicitation failed") && t.contains("did not declare"),
        "{out:?}"
    );
    assert!(text(&out[1]).contains("sampled: unused"), "{out:?}");
}

/// gavel on `s` as raw lines, with `env` set.
fn raw_with(s: &Setup, env: &[(&str, &str)]) -> RawHost {
    RawHost::bare_env(s, env)
}

/// B8: a host that never retries: after the (test-shortened) wait, the
/// upstream's question gets an error and its call is cancelled — never
/// left hanging on a retry that does not come.
#[test]
fn a_call_whose_host_never_retries_is_cancelled_upstream() {
    let s = Setup::solo("fx");
    let mut raw = raw_with(&s, &[("GAVEL_TEST_PARK_TIMEOUT_MS", "300")]);
    let call = json!({"name": "elicit", "arguments": {"message": "Proceed?"}});
    raw.send_line(&modern(1, "tools/call", call, json!({"elicitation": {}})));
    let r = raw.answer(&json!(1));
    let requests = r["result"]["inputRequests"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert_eq!(requests.len(), 1, "{r}");
    let (_, q) = requests.iter().next().unwrap();
    assert_eq!(q["method"], "elicitation/create", "{r}");
    assert_eq!(q["params"]["message"], "Proceed?", "{r}");
    let start = std::time::Instant::now();
    loop {
        let cancelled = records(&s.record("fx"))
            .into_iter()
            .any(|r| r["notification"] == "notifications/cancelled");
        if cancelled {
            break;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "the upstream call was never cancelled: {}",
            s.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Its state now names nothing: a late retry is refused, clearly.
    let state = r["result"]["requestState"].as_str().unwrap();
    let retry = json!({"name": "elicit", "arguments": {"message": "Proceed?"},
                       "inputResponses": {requests.keys().next().unwrap(): {"action": "accept", "content": {"confirm": true}}},
                       "requestState": state});
    raw.send_line(&modern(2, "tools/call", retry, json!({"elicitation": {}})));
    let r = raw.answer(&json!(2));
    assert_eq!(r["error"]["code"], -32602, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no longer waiting"),
        "{r}"
    );
}

/// B8: a question gavel cannot attribute to one call — two calls of the
/// host in flight at the upstream — is refused upstream, never delivered
/// to either caller's call.
#[test]
fn a_question_that_cannot_be_attributed_is_refused_upstream() {
    let s = Setup::solo("fx");
    let mut raw = RawHost::bare(&s);
    let gate = s.path("gate");
    let caps = json!({"elicitation": {}});
    raw.send_line(&modern(
        1,
        "tools/call",
        json!({"name": "slow", "arguments": {"ms": 60000, "until": gate.display().to_string()}}),
        caps.clone(),
    ));
    // The slow call is in flight at the upstream before the second starts.
    let start = std::time::Instant::now();
    while recorded_calls(&s.record("fx")).is_empty() {
        assert!(start.elapsed() < PATIENCE, "the slow call never arrived");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    raw.send_line(&modern(
        2,
        "tools/call",
        json!({"name": "elicit", "arguments": {"message": "whose?"}}),
        caps,
    ));
    let r = raw.answer(&json!(2));
    let t = r["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(t.contains("elicitation failed"), "{r}");
    assert!(t.contains("cannot tell which"), "{r}");
    std::fs::write(&gate, "").unwrap();
    let r = raw.answer(&json!(1));
    assert_eq!(
        r["result"]["content"][0]["text"],
        format!("released by {}", gate.display()),
        "{r}"
    );
}

/// An approval and an upstream's question in one call: the approval round
/// first, then — the approved call made — the upstream's question as the
/// next round, whose retry continues the call without asking again; every
/// step logged.
#[tokio::test(flavor = "multi_thread")]
async fn an_approved_call_whose_upstream_asks_continues_without_asking_again() {
    let s = Setup::blank();
    let policy = r#"package fx

decision := {"allow": true} if input.action.tool != "elicit"

decision := {
	"allow": true,
	"require_approval": {"reason": "asking the user needs a human"},
} if input.action.tool == "elicit"
"#;
    let b = common::policy::bundle(
        s.dir.path(),
        "policy",
        "fx",
        json!({"revision": "1"}),
        policy,
    );
    s.write_config(&format!(
        "{}{}bundle = {:?}\n",
        s.decision_log_table(),
        fixture_server("fx", &[], &s.record("fx")),
        b.display().to_string()
    ));
    let mut target = vec![GAVEL.to_string()];
    target.extend(s.run_args());
    // One answer for both questions: gavel reads `approve`, the fixture
    // shows what it got.
    let out = python(
        &s,
        &target,
        json!({"elicit": {"action": "accept", "content": {"approve": true, "confirm": true}},
               "steps": [{"op": "call", "name": "elicit", "args": {"message": "Ship it?"}}]}),
    )
    .await;
    let t = text(&out[0]);
    assert!(
        t.contains("action=accept") && t.contains("\"confirm\":true"),
        "{out:?}"
    );
    let asked: Vec<&str> = out[0]["asked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["message"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!(asked[0].starts_with("Approve this call?"), "{asked:?}");
    assert_eq!(asked[1], "Ship it?", "{asked:?}");
    assert_eq!(steps(&s), vec!["requested", "approved", "continued"]);
    assert_eq!(recorded_calls(&s.record("fx")).len(), 1, "one call made");
}

/// B8 on the wire: the upstream's question under a key of gavel's, a
/// retry that answers nothing asked again (a new state, the same
/// question), and the answer — on the retry of that round — reaching the
/// upstream's waiting request, whose call then completes.
#[test]
fn a_parked_question_is_asked_again_until_answered_and_the_answer_reaches_the_upstream() {
    let s = Setup::solo("fx");
    let mut raw = RawHost::bare(&s);
    let caps = json!({"elicitation": {}});
    let call = json!({"name": "elicit", "arguments": {"message": "Proceed?"}});
    raw.send_line(&modern(1, "tools/call", call.clone(), caps.clone()));
    let first = raw.answer(&json!(1))["result"].clone();
    assert_eq!(first["resultType"], "input_required", "{first}");
    let key = first["inputRequests"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    let retry = |state: &Value, responses: Value| {
        let mut c = call.clone();
        c["requestState"] = state.clone();
        c["inputResponses"] = responses;
        c
    };
    raw.send_line(&modern(
        2,
        "tools/call",
        retry(&first["requestState"], json!({})),
        caps.clone(),
    ));
    let again = raw.answer(&json!(2))["result"].clone();
    assert_eq!(again["resultType"], "input_required", "{again}");
    assert_eq!(again["inputRequests"], first["inputRequests"], "{again}");
    assert_ne!(again["requestState"], first["requestState"], "{again}");
    let answer =
        json!({key.clone(): {"action": "accept", "content": {"confirm": true, "note": "go"}}});
    raw.send_line(&modern(
        3,
        "tools/call",
        retry(&again["requestState"], answer),
        caps,
    ));
    let done = raw.answer(&json!(3));
    let t = done["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(
        t, r#"action=accept content={"confirm":true,"note":"go"}"#,
        "{done}"
    );
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    // One call at the upstream, its question asked once there.
    assert_eq!(recorded_calls(&s.record("fx")).len(), 1);
}

/// B11 for the other two requests that may take a round: a resource read
/// and a prompt the policy wants approved are asked and, approved, served
/// (declined: the JSON-RPC denial, as for a legacy host).
#[tokio::test(flavor = "multi_thread")]
async fn a_resource_read_and_a_prompt_are_approved_through_rounds_too() {
    let s = setup("");
    let mut target = vec![GAVEL.to_string()];
    target.extend(s.run_args());
    let steps = json!([
        {"op": "read", "uri": "fixture://static/hello"},
        {"op": "prompt", "name": "greet", "args": {"name": "Ada"}},
    ]);
    let yes = python(
        &s,
        &target,
        json!({"elicit": {"action": "accept", "content": {"approve": true}}, "steps": steps}),
    )
    .await;
    assert!(
        yes[0]["result"]["contents"][0]["text"].is_string(),
        "{yes:?}"
    );
    let asked = yes[0]["asked"][0]["message"].as_str().unwrap_or_default();
    assert!(
        asked.contains("Resource: fixture://static/hello"),
        "{asked}"
    );
    let greeting = yes[1]["result"]["messages"][0]["content"]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(greeting.contains("Ada"), "{yes:?}");
    let asked = yes[1]["asked"][0]["message"].as_str().unwrap_or_default();
    assert!(asked.contains("Prompt: greet"), "{asked}");
    // A fresh host declining: denied, as any denial of these requests is.
    let s = setup("");
    let mut target = vec![GAVEL.to_string()];
    target.extend(s.run_args());
    let no = python(
        &s,
        &target,
        json!({"elicit": {"action": "decline"}, "steps": steps}),
    )
    .await;
    for step in &no {
        assert_eq!(step["error"]["code"], 403, "{no:?}");
        assert_eq!(step["asked"].as_array().map(Vec::len), Some(1), "{no:?}");
    }
}
