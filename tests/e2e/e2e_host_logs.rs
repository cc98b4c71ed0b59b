//! Log messages for a 2026-07-28 host (checklist B13): a request that
//! carries `io.modelcontextprotocol/logLevel` gets its modern upstream's log
//! messages for it, at or above that level, on its own stream; a request
//! without one gets none. The TypeScript SDK v2 modern-only fixture's
//! `chatty` tool logs at debug, info and warning (each only at or above the
//! request's level, as the SDK decides) and names the level it was told;
//! the Python SDK's `Client` (mcp 2.3) pinned to 2026-07-28 is the host,
//! over stdio and HTTP.

use crate::common;
use crate::e2e_host_rounds::{python, targets, text};

use serde_json::{Value, json};

fn lines(step: &Value) -> Vec<(String, String)> {
    step["logs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|l| {
            (
                l["level"].as_str().unwrap_or_default().to_string(),
                l["data"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_modern_request_gets_its_upstreams_log_messages_at_its_own_level() {
    let s = crate::e2e_host_era::two_eras();
    let (targets, _gavel) = targets(&s).await;
    let chatty = json!([{"op": "call", "name": "modern__chatty", "args": {}}]);
    for (how, target) in &targets {
        let info = python(&s, target, json!({"log_level": "info", "steps": chatty})).await;
        // The upstream was told the request's own level ...
        assert_eq!(text(&info[0]), "logLevel info", "{how}: {info:?}");
        // ... and what it sent for the request reached it, before the result.
        assert_eq!(
            lines(&info[0]),
            vec![
                ("info".to_string(), "a info line".to_string()),
                ("warning".to_string(), "a warning line".to_string()),
            ],
            "{how}: {info:?}"
        );
        let logger = info[0]["logs"][0]["logger"].as_str().unwrap_or_default();
        assert!(logger.ends_with("chatty"), "{how}: {logger}");
        // No level: none told upstream, nothing sent.
        let none = python(&s, target, json!({"steps": chatty})).await;
        assert_eq!(text(&none[0]), "logLevel none", "{how}: {none:?}");
        assert_eq!(lines(&none[0]), vec![], "{how}: {none:?}");
    }
}

/// Every line gavel writes up to the answer to `id`.
fn until_answer(raw: &mut common::raw::RawHost, id: u64) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let m = raw.next();
        let done = m["id"] == json!(id);
        seen.push(m);
        if done {
            return seen;
        }
    }
}

/// A legacy upstream's log messages belong to its session, never to one
/// request: a modern request that asks for log messages gets none of them
/// (a legacy host, which set no level, gets the same line).
#[test]
fn a_legacy_upstreams_session_logs_never_reach_a_modern_request() {
    let s = common::Setup::solo("fx");
    let call = json!({"name": "log", "arguments": {"level": "error", "message": "session-scoped"}});
    let is_log = |m: &Value| m["method"] == "notifications/message";
    let mut legacy = common::raw::RawHost::start(&s);
    legacy.send_line(
        &json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": call}).to_string(),
    );
    let seen = until_answer(&mut legacy, 7);
    assert!(
        seen.iter()
            .any(|m| is_log(m) && m["params"]["data"] == "session-scoped"),
        "the fixture logs during the call: {seen:?}"
    );
    let mut modern = common::raw::RawHost::bare(&s);
    let mut line: Value = serde_json::from_str(&crate::e2e_host_rounds::modern(
        8,
        "tools/call",
        call,
        json!({}),
    ))
    .unwrap();
    line["params"]["_meta"]["io.modelcontextprotocol/logLevel"] = json!("debug");
    modern.send_line(&line.to_string());
    let seen = until_answer(&mut modern, 8);
    assert_eq!(
        seen.last().unwrap()["result"]["content"][0]["text"],
        "logged",
        "{seen:?}"
    );
    assert!(!seen.iter().any(is_log), "{seen:?}");
}

/// A `logLevel` that is not a level is the request's error (-32602,
/// naming the field), not silently no log messages.
#[test]
fn a_log_level_that_is_not_one_is_refused() {
    let s = common::Setup::solo("fx");
    let mut raw = common::raw::RawHost::bare(&s);
    let mut line: Value = serde_json::from_str(&crate::e2e_host_rounds::modern(
        1,
        "tools/call",
        json!({"name": "log", "arguments": {"level": "error", "message": "m"}}),
        json!({}),
    ))
    .unwrap();
    line["params"]["_meta"]["io.modelcontextprotocol/logLevel"] = json!("loud");
    raw.send_line(&line.to_string());
    let r = raw.answer(&json!(1));
    assert_eq!(r["error"]["code"], -32602, "{r}");
    let m = r["error"]["message"].as_str().unwrap();
    assert!(m.contains("logLevel") && m.contains("\"loud\""), "{m}");
    assert!(common::recorded_calls(&s.record("fx")).is_empty());
}
