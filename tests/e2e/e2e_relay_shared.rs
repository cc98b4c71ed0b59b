//! gavel's MCP 2026-07-28 round relay (`e2e_relay`) across instances and
//! principals: two `gavel serve` behind a round robin sharing the round key
//! (`GAVEL_ROUND_KEY`) and Redis (`[state]`), instances with different
//! keys, Redis gone, a bad key at start, and a round bound to the bearer
//! token's user (`src/host/seal.rs`, `src/gateway.rs`).

use crate::common;

use common::*;
use serde_json::{Value, json};

use super::e2e_relay::{line, python, refused, setup, text, upstream_calls};

/// Two `gavel serve` instances on `s`'s config with `env` each (their own
/// logs): their URLs and processes.
pub(crate) async fn two_instances(
    s: &Setup,
    env: [&[(&str, String)]; 2],
) -> (Vec<String>, Vec<tokio::process::Child>) {
    let mut urls = vec![];
    let mut procs = vec![];
    let state = s.path("state").display().to_string();
    for (i, extra) in env.iter().enumerate() {
        let mut e: Vec<(&str, &str)> = vec![("GAVEL_STATE_DIR", state.as_str())];
        e.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
        let log = s.path(&format!("gavel-{i}.log"));
        let (p, port) = gavel_serve_logged(&s.config(), &log, "127.0.0.1:0", &e, &[]).await;
        urls.push(format!("http://127.0.0.1:{port}/mcp"));
        procs.push(p);
    }
    (urls, procs)
}

pub(crate) fn round_key(byte: u8) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

/// D4: two instances behind a round robin, sharing Redis and the round
/// key: a round issued by one is answered on the other, once across both;
/// a replay costs nothing (the budget the policy sees stays exact).
#[tokio::test(flavor = "multi_thread")]
async fn a_round_answered_on_another_instance_completes_once_across_both() {
    let redis = common::tmpfs::RedisServer::start();
    let s = setup(
        r#"violations contains "over_budget" if input.context.budget.used.calls >= 100"#,
        &format!(
            "[budget]\ncalls = 100\n\n[state]\nbackend = \"redis\"\nredis_url = \"{}\"\n",
            redis.url()
        ),
    );
    let key = [("GAVEL_ROUND_KEY", round_key(7))];
    let (urls, _procs) = two_instances(&s, [&key, &key]).await;
    let rr = json!({"action": "rr"});
    let steps = python(
        &s,
        &urls,
        &[],
        json!([
            {"op": "once", "via": 0, "name": "confirm", "args": rr, "save": "r"},
            {"op": "retry", "via": 1, "name": "confirm", "args": rr, "from": "r", "answer": {"confirm": true}},
            {"op": "retry", "via": 0, "name": "confirm", "args": rr, "from": "r", "answer": {"confirm": true}},
            {"op": "retry", "via": 1, "name": "confirm", "args": rr, "from": "r", "answer": {"confirm": true}},
            {"op": "once", "via": 1, "name": "confirm", "args": {"action": "after"}},
        ]),
    )
    .await;
    assert_eq!(
        steps[0]["result"]["resultType"], "input_required",
        "{steps:?}"
    );
    assert_eq!(
        text(&steps[1]),
        "confirmed rr (state confirm:rr)",
        "{steps:?}"
    );
    refused(&steps[2], "already used");
    refused(&steps[3], "already used");
    assert_eq!(
        steps[4]["result"]["resultType"], "input_required",
        "{steps:?}"
    );
    // Each instance has its own upstream; between them they got the first
    // call, the one retry and the last call.
    let states: Vec<Value> = upstream_calls(&s)
        .iter()
        .map(|c| c["requestState"].clone())
        .collect();
    assert_eq!(states, [Value::Null, json!("confirm:rr"), Value::Null]);
    // Three decisions: the two refused replays were refused before any
    // decision (nothing charged), so the last call saw exactly the two
    // calls made.
    let log = s.decisions();
    let calls: Vec<&Value> = log
        .iter()
        .filter(|d| d["input"]["action"]["type"] == "tool_call")
        .collect();
    assert_eq!(calls.len(), 3, "{log:?}");
    assert_eq!(
        calls[2]["input"]["context"]["budget"]["used"]["calls"], 2,
        "{:?}",
        calls[2]
    );
}

/// Instances with different keys (or none): a round issued by one does
/// not open on the other, cleanly; it still answers where it was issued.
#[tokio::test(flavor = "multi_thread")]
async fn a_round_does_not_open_on_an_instance_with_another_key() {
    let s = setup("", "");
    let (urls, _procs) = two_instances(
        &s,
        [
            &[("GAVEL_ROUND_KEY", round_key(1))],
            &[("GAVEL_ROUND_KEY", round_key(2))],
        ],
    )
    .await;
    let k = json!({"action": "keys"});
    let steps = python(
        &s,
        &urls,
        &[],
        json!([
            {"op": "once", "via": 0, "name": "confirm", "args": k, "save": "r"},
            {"op": "retry", "via": 1, "name": "confirm", "args": k, "from": "r", "answer": {"confirm": true}},
            {"op": "retry", "via": 0, "name": "confirm", "args": k, "from": "r", "answer": {"confirm": true}},
        ]),
    )
    .await;
    refused(&steps[1], "not one gavel issued");
    assert_eq!(
        text(&steps[2]),
        "confirmed keys (state confirm:keys)",
        "{steps:?}"
    );
    assert_eq!(upstream_calls(&s).len(), 2, "{:?}", upstream_calls(&s));
}

/// A bad key stops gavel at start with an error naming where it came
/// from, never quoting it.
#[test]
fn a_bad_round_key_is_a_named_start_error() {
    let s = setup("", "[serve]\nround_key_file = \"round.key\"\n");
    std::fs::write(s.path("round.key"), "c2hvcnQ=\n").unwrap();
    let out = std::process::Command::new(GAVEL)
        .args(["serve", "--config"])
        .arg(s.config())
        .args(["--listen", "127.0.0.1:0"])
        .env("GAVEL_STATE_DIR", s.path("state"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("round_key_file") && err.contains("5 bytes") && err.contains("at least 32"),
        "{err}"
    );
    // `gavel config check` refuses it as a start would.
    let out = s.config_check();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("round_key_file") && err.contains("5 bytes"),
        "{err}"
    );
    let out = std::process::Command::new(GAVEL)
        .args(["serve", "--config"])
        .arg(s.config())
        .args(["--listen", "127.0.0.1:0"])
        .env("GAVEL_STATE_DIR", s.path("state"))
        .env("GAVEL_ROUND_KEY", "%%%")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("GAVEL_ROUND_KEY") && err.contains("not base64") && !err.contains("%%%"),
        "{err}"
    );
}

/// Rounds spent in Redis: with Redis gone, whether a round was answered
/// cannot be checked, and the retry is refused (fail closed) saying so;
/// the upstream gets nothing.
#[tokio::test(flavor = "multi_thread")]
async fn with_redis_down_a_retry_is_refused() {
    let mut redis = common::tmpfs::RedisServer::start();
    let s = setup(
        "",
        &format!(
            "[state]\nbackend = \"redis\"\nredis_url = \"{}\"\n",
            redis.url()
        ),
    );
    let key = [("GAVEL_ROUND_KEY", round_key(9))];
    let (urls, _procs) = two_instances(&s, [&key, &key]).await;
    let d = json!({"action": "down"});
    let first = python(
        &s,
        &urls[..1],
        &[],
        json!([{"op": "once", "name": "confirm", "args": d, "save": "r"}]),
    )
    .await;
    assert_eq!(
        first[0]["result"]["resultType"], "input_required",
        "{first:?}"
    );
    redis.stop();
    // The state travels through the test: a second host process retries.
    let state = first[0]["result"]["requestState"].clone();
    let steps = python(
        &s,
        &urls[1..],
        &[],
        json!([{"op": "retry_raw", "name": "confirm", "args": d, "state": state,
                "responses": {"confirm": {"action": "accept", "content": {"confirm": true}}}}]),
    )
    .await;
    refused(&steps[0], "cannot be checked");
    assert!(
        steps[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Redis"),
        "{steps:?}"
    );
    assert_eq!(upstream_calls(&s).len(), 1, "{:?}", upstream_calls(&s));
}

/// With `[auth]` a round belongs to the token's user and agent: another
/// user's retry with it is refused (nothing reaches the upstream); the
/// owner's completes.
#[tokio::test(flavor = "multi_thread")]
async fn a_round_is_bound_to_the_tokens_principal() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let s = setup("", &hs256_auth(&url));
    let _gavel = gavel_serve_at(
        &s,
        port,
        &[
            ("GAVEL_E2E_JWT_SECRET", JWT_SECRET),
            ("GAVEL_STATE_DIR", s.path("state").to_str().unwrap()),
        ],
        &[],
    )
    .await;
    let bearer = |sub: &str| {
        let claims = json!({"iss": "https://idp.example.test", "aud": url,
            "exp": unix_now() + 600, "sub": sub});
        format!("Bearer {}", hs256_token(claims, JWT_SECRET))
    };
    let post = |who: &'static str, body: Value| {
        let (url, bearer) = (url.clone(), bearer(who));
        async move {
            let headers = [
                ("MCP-Protocol-Version", "2026-07-28"),
                ("Mcp-Method", "tools/call"),
                ("Mcp-Name", "confirm"),
                ("Authorization", bearer.as_str()),
            ];
            let (status, out) =
                super::e2e_host_era::http(&url, "POST", &headers, Some(&body)).await;
            assert_eq!(status, 200, "{out}");
            // The JSON-RPC answer, plain or as an SSE event.
            let at = out.find("{\"jsonrpc\"").unwrap_or_else(|| panic!("{out}"));
            let line = out[at..].lines().next().unwrap();
            serde_json::from_str::<Value>(line).unwrap()
        }
    };
    let args = json!({"action": "mine"});
    let r = post(
        "ada",
        serde_json::from_str(&line(
            1,
            "tools/call",
            json!({"name": "confirm", "arguments": args}),
        ))
        .unwrap(),
    )
    .await;
    let state = r["result"]["requestState"].clone();
    assert!(
        state.as_str().is_some_and(|s| s.starts_with("gavel1.")),
        "{r}"
    );
    let retry = |id: u64| -> Value {
        serde_json::from_str(&line(
            id,
            "tools/call",
            json!({"name": "confirm", "arguments": args, "requestState": state,
                   "inputResponses": {"confirm": {"action": "accept", "content": {"confirm": true}}}}),
        ))
        .unwrap()
    };
    let stolen = post("bob", retry(2)).await;
    assert_eq!(stolen["error"]["code"], -32602, "{stolen}");
    assert!(
        stolen["error"]["message"]
            .as_str()
            .unwrap()
            .contains("principal"),
        "{stolen}"
    );
    assert_eq!(upstream_calls(&s).len(), 1, "{:?}", upstream_calls(&s));
    let mine = post("ada", retry(3)).await;
    assert_eq!(
        mine["result"]["content"][0]["text"], "confirmed mine (state confirm:mine)",
        "{mine}"
    );
}
