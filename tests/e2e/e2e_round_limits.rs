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
fn accept_all(round: &Value, content: Value) -> Value {
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
