//! A legacy upstream's `-32042` (URL elicitation required) toward a
//! 2026-07-28 host (checklist B9, `front/session/url_round.rs`): npm
//! server-everything's `trigger-url-elicitation` with `errorPath` fails the
//! first call with -32042 and, called again, asks for a URL by
//! `elicitation/create` (its retry only proceeds when the same call comes
//! back). Driven by the Python SDK's `Client` (mcp 2.3) pinned to
//! 2026-07-28, and by raw JSON lines for what the wire must show.

use crate::common;
use crate::e2e_host_era::deps;
use crate::e2e_host_rounds::{modern, python, targets, text};

use common::raw::RawHost;
use common::*;
use serde_json::{Value, json};

const TOOL: &str = "everything__trigger-url-elicitation";
/// The URL server-everything's -32042 asks to be opened first.
const PREREQUISITE: &str = "https://modelcontextprotocol.io";
const TARGET: &str = "https://example.test/authorize?client=gavel&step=2";

fn args() -> Value {
    json!({"url": TARGET, "message": "Finish signing in", "errorPath": true})
}

/// B9 end to end: the -32042 reaches the host as a URL round (message and
/// URL unchanged), the host's retry makes the original call again, whose
/// own URL question is the next round, and the call completes — over
/// stdio and HTTP.
#[tokio::test(flavor = "multi_thread")]
async fn a_legacy_32042_becomes_a_url_round_and_the_call_is_made_again() {
    let s = crate::e2e_host_era::two_eras();
    let (targets, _gavel) = targets(&s).await;
    for (how, target) in &targets {
        let out = python(
            &s,
            target,
            json!({"elicit": {"action": "accept"},
                   "steps": [{"op": "call", "name": TOOL, "args": args()}]}),
        )
        .await;
        let t = text(&out[0]);
        assert!(
            t.contains("User completed the URL elicitation flow") && t.contains(TARGET),
            "{how}: {out:?}"
        );
        let asked = out[0]["asked"].as_array().cloned().unwrap_or_default();
        assert_eq!(asked.len(), 2, "{how}: {asked:?}");
        // First the -32042's prerequisite, as the upstream worded it.
        assert_eq!(asked[0]["mode"], "url", "{how}: {asked:?}");
        assert_eq!(asked[0]["url"], PREREQUISITE, "{how}: {asked:?}");
        assert_eq!(
            asked[0]["message"],
            "Open this link to satisfy the prerequisite, then retry the request.",
            "{how}: {asked:?}"
        );
        // Then the re-issued call's own question.
        assert_eq!(asked[1]["mode"], "url", "{how}: {asked:?}");
        assert_eq!(asked[1]["url"], TARGET, "{how}: {asked:?}");
        assert_eq!(asked[1]["message"], "Finish signing in", "{how}: {asked:?}");
    }
    // The tool was decided on every request of the host (the call, the
    // URL round's retry that re-issued it, the parked question's retry),
    // on each transport, and each URL as the elicitation it is.
    let decisions = s.decisions();
    let count = |kind: &str, tool: &str| {
        decisions
            .iter()
            .filter(|d| {
                d["input"]["action"]["type"] == kind && d["input"]["action"]["tool"] == tool
            })
            .count()
    };
    assert_eq!(
        count("tool_call", "trigger-url-elicitation"),
        6,
        "{decisions:?}"
    );
    assert_eq!(
        count("elicitation_request", "elicitation/create"),
        4,
        "{decisions:?}"
    );
}

fn key_and_request(result: &Value) -> (String, Value) {
    let requests = result["inputRequests"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert_eq!(requests.len(), 1, "{result}");
    let (k, v) = requests.into_iter().next().unwrap();
    (k, v)
}

fn call(state: Option<&Value>, responses: Value) -> Value {
    let mut c = json!({"name": TOOL, "arguments": args()});
    if let Some(state) = state {
        c["requestState"] = state.clone();
        c["inputResponses"] = responses;
    }
    c
}

const URL_CAPS: &str = r#"{"elicitation": {"form": {}, "url": {}}}"#;

fn caps(c: &str) -> Value {
    serde_json::from_str(c).unwrap()
}

/// B9 on the wire: the round's request is a URL-mode `elicitation/create`
/// under gavel's key, with no 2025-11-25 `elicitationId`; -32042 is never
/// the answer; a declined URL is not called again; the state answers once;
/// an accepted round makes the call again.
#[test]
fn the_url_round_on_the_wire() {
    let s = crate::e2e_host_era::two_eras();
    let mut raw = RawHost::bare(&s);
    raw.send_line(&modern(
        1,
        "tools/call",
        call(None, json!({})),
        caps(URL_CAPS),
    ));
    let first = raw.answer(&json!(1))["result"].clone();
    assert_eq!(first["resultType"], "input_required", "{first}");
    let (key, q) = key_and_request(&first);
    assert_eq!(key, "everything.url.1");
    assert_eq!(q["method"], "elicitation/create", "{q}");
    assert_eq!(q["params"]["mode"], "url", "{q}");
    assert_eq!(q["params"]["url"], PREREQUISITE, "{q}");
    assert!(
        q["params"].get("elicitationId").is_none_or(|v| v == ""),
        "{q}"
    );
    let state = first["requestState"].clone();
    assert!(state.as_str().unwrap().starts_with("gavel1."), "{first}");
    // Declined: not called again, said so.
    raw.send_line(&modern(
        2,
        "tools/call",
        call(Some(&state), json!({key.clone(): {"action": "decline"}})),
        caps(URL_CAPS),
    ));
    let r = raw.answer(&json!(2));
    assert_eq!(r["error"]["code"], -32602, "{r}");
    let m = r["error"]["message"].as_str().unwrap();
    assert!(m.contains("decline") && m.contains("everything"), "{m}");
    // Its state is spent: a second answer to the same round is refused.
    raw.send_line(&modern(
        3,
        "tools/call",
        call(Some(&state), json!({key.clone(): {"action": "accept"}})),
        caps(URL_CAPS),
    ));
    let r = raw.answer(&json!(3));
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{r}"
    );
    // The upstream remembers the first call: a fresh one is its retry,
    // which asks for the target URL (a parked question of the call).
    raw.send_line(&modern(
        4,
        "tools/call",
        call(None, json!({})),
        caps(URL_CAPS),
    ));
    let asked = raw.answer(&json!(4))["result"].clone();
    let (key, q) = key_and_request(&asked);
    assert_eq!(q["params"]["url"], TARGET, "{asked}");
    raw.send_line(&modern(
        5,
        "tools/call",
        call(
            Some(&asked["requestState"]),
            json!({key: {"action": "accept"}}),
        ),
        caps(URL_CAPS),
    ));
    let done = raw.answer(&json!(5));
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    assert!(
        done["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("User completed"),
        "{done}"
    );
    // And an accepted URL round re-issues the call: the upstream, asked
    // again, raises -32042 again (a new round, not the error).
    raw.send_line(&modern(
        6,
        "tools/call",
        call(None, json!({})),
        caps(URL_CAPS),
    ));
    let again = raw.answer(&json!(6))["result"].clone();
    let (key, q) = key_and_request(&again);
    assert_eq!(q["params"]["url"], PREREQUISITE, "{again}");
    raw.send_line(&modern(
        7,
        "tools/call",
        call(
            Some(&again["requestState"]),
            json!({key: {"action": "accept"}}),
        ),
        caps(URL_CAPS),
    ));
    let next = raw.answer(&json!(7))["result"].clone();
    let (_, q) = key_and_request(&next);
    assert_eq!(
        q["params"]["url"], TARGET,
        "the call was made again: {next}"
    );
}

/// B9, capability-gated by this request only: one declaring form-only
/// elicitation gets -32021 naming the URL capability, never -32042.
#[test]
fn a_request_without_url_elicitation_gets_a_clear_32021() {
    let s = crate::e2e_host_era::two_eras();
    let mut raw = RawHost::bare(&s);
    raw.send_line(&modern(
        1,
        "tools/call",
        call(None, json!({})),
        json!({"elicitation": {"form": {}}}),
    ));
    let r = raw.answer(&json!(1));
    assert_eq!(r["error"]["code"], -32021, "{r}");
    assert_eq!(
        r["error"]["data"]["requiredCapabilities"],
        json!({"elicitation": {"url": {}}}),
        "{r}"
    );
    let m = r["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("everything") && m.contains("url mode") && m.contains("browser-based"),
        "{m}"
    );
}

const URL_POLICY: &str = r#"package mcp.url

denied if {
	input.action.type == "elicitation_request"
	not startswith(input.action.args.url, "https://example.test/")
}

decision := {"allow": true} if not denied

decision := {"allow": false, "reasons": ["url_not_allowed"]} if denied
"#;

/// The policy that governs an upstream's `elicitation/create` governs its
/// -32042 too: a URL it refuses is never put to the host.
#[test]
fn a_url_the_policy_refuses_is_never_asked() {
    let s = Setup::with(|s| {
        let bundle = common::policy::bundle(s.dir.path(), "url", "mcp/url", json!({}), URL_POLICY);
        let node = deps("node/node_modules/node/bin/node");
        let everything = crate::e2e_everything::everything();
        format!(
            "{}[servers.everything]\ncommand = {:?}\nargs = [{:?}, \"stdio\"]\nstartup_timeout = \"30s\"\ncall_timeout = \"30s\"\nbundle = {:?}\n",
            s.decision_log_table(),
            node.display().to_string(),
            everything.display().to_string(),
            bundle.display().to_string(),
        )
    });
    let mut raw = RawHost::bare(&s);
    // One server: its tools keep their own names.
    let one = json!({"name": "trigger-url-elicitation", "arguments": args()});
    raw.send_line(&modern(1, "tools/call", one, caps(URL_CAPS)));
    let r = raw.answer(&json!(1));
    assert!(r.get("result").is_none(), "{r}");
    assert_ne!(r["error"]["code"], -32042, "{r}");
    let reasons = &r["error"]["data"]["decision"]["reasons"];
    assert_eq!(reasons, &json!(["url_not_allowed"]), "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("everything"),
        "{r}"
    );
}

/// The fixture's `url_required`: -32042 with `data` as given.
fn url_required(data: Value) -> Value {
    json!({"name": "url_required", "arguments": {"data": data}})
}

/// A -32042 whose data gavel cannot pass on as a round reaches a modern
/// host as a plain error naming the server and the fault — never as
/// -32042 — while a legacy host (2025-11-25, where -32042 is the protocol)
/// gets the upstream's error as it was. A well-formed one is a round whose
/// accepted retry reaches the upstream again.
#[test]
fn a_32042_that_cannot_be_a_round_is_a_plain_error_and_a_legacy_host_gets_it_as_is() {
    let s = Setup::solo("fx");
    let bad =
        json!({"elicitations": [{"mode": "url", "url": "javascript:alert(1)", "message": "m"}]});
    let mut raw = RawHost::bare(&s);
    raw.send_line(&modern(
        1,
        "tools/call",
        url_required(bad.clone()),
        caps(URL_CAPS),
    ));
    let r = raw.answer(&json!(1));
    assert_eq!(r["error"]["code"], -32603, "{r}");
    let m = r["error"]["message"].as_str().unwrap();
    for part in [
        "\"fx\"",
        "elicitation 1",
        "http(s)",
        "the fixture needs a URL opened",
    ] {
        assert!(m.contains(part), "{part}: {m}");
    }
    let mut legacy = RawHost::start(&s);
    legacy.send_line(
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": url_required(bad.clone())})
            .to_string(),
    );
    let r = legacy.answer(&json!(2));
    assert_eq!(r["error"]["code"], -32042, "{r}");
    assert_eq!(r["error"]["data"], bad, "{r}");
    // Well-formed: a round; its accepted retry calls the upstream again.
    let good = json!({"elicitations": [
        {"mode": "url", "url": "https://a.example.test/one", "message": "One", "elicitationId": "1"},
        {"mode": "url", "url": "https://a.example.test/two", "message": "Two", "elicitationId": "2"},
    ]});
    let before = recorded_calls(&s.record("fx")).len();
    raw.send_line(&modern(
        3,
        "tools/call",
        url_required(good.clone()),
        caps(URL_CAPS),
    ));
    let round = raw.answer(&json!(3))["result"].clone();
    let requests = round["inputRequests"].as_object().unwrap();
    assert_eq!(
        requests.keys().collect::<Vec<_>>(),
        ["fx.url.1", "fx.url.2"],
        "{round}"
    );
    assert_eq!(
        requests["fx.url.2"]["params"]["url"],
        "https://a.example.test/two"
    );
    assert_eq!(requests["fx.url.2"]["params"]["message"], "Two");
    let mut retry = url_required(good);
    retry["requestState"] = round["requestState"].clone();
    retry["inputResponses"] =
        json!({"fx.url.1": {"action": "accept"}, "fx.url.2": {"action": "accept"}});
    raw.send_line(&modern(4, "tools/call", retry, caps(URL_CAPS)));
    let again = raw.answer(&json!(4));
    assert_eq!(again["result"]["resultType"], "input_required", "{again}");
    let calls = recorded_calls(&s.record("fx"));
    assert_eq!(calls.len(), before + 2, "the retry made the call again");
    // The upstream never saw the round's fields.
    let last = &calls.last().unwrap()["params"];
    assert_eq!(
        last["arguments"], calls[before]["params"]["arguments"],
        "{last}"
    );
    assert!(
        last.get("requestState").is_none() && last.get("inputResponses").is_none(),
        "{last}"
    );
}

/// -32042 is never emitted to a modern host, whatever it answers: a
/// legacy upstream failing a request that can take no round with it
/// (`completion/complete`) is answered as a plain error naming the server
/// and the method; a legacy host gets the -32042 as it was.
#[test]
fn a_32042_on_a_request_that_takes_no_round_never_reaches_a_modern_host() {
    let s = Setup::solo("fx");
    let complete = json!({"ref": {"type": "ref/prompt", "name": "greet"},
                          "argument": {"name": "name", "value": "url-required"}});
    let mut raw = RawHost::bare(&s);
    raw.send_line(&modern(
        1,
        "completion/complete",
        complete.clone(),
        caps(URL_CAPS),
    ));
    let r = raw.answer(&json!(1));
    assert_eq!(r["error"]["code"], -32603, "{r}");
    let m = r["error"]["message"].as_str().unwrap();
    for part in [
        "\"fx\"",
        "completion/complete",
        "needs a URL opened",
        "input round",
    ] {
        assert!(m.contains(part), "{part}: {m}");
    }
    let mut legacy = RawHost::start(&s);
    legacy.send_line(
        &json!({"jsonrpc": "2.0", "id": 2, "method": "completion/complete", "params": complete})
            .to_string(),
    );
    assert_eq!(legacy.answer(&json!(2))["error"]["code"], -32042);
}
