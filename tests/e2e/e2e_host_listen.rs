//! `subscriptions/listen` toward a 2026-07-28 host (`src/front/session/listen.rs`):
//! gavel in front of a legacy upstream (server-everything) and a
//! 2026-07-28-only one (`tests/fixture/modern_only.mjs`, whose `grow` tool
//! adds a tool and announces it on gavel's own listen to that upstream).
//! Driven by the official Python SDK's `Client.listen` (mcp 2.3) and by raw
//! JSON lines for what crosses the wire: the acknowledgement first, every
//! notification tagged with its listen's id, only the kinds it asked for,
//! nothing unsolicited, nothing after the host cancels.

use crate::common;
use crate::e2e_host_era::{modern_line, python, two_eras};

use common::raw::RawHost;
use serde_json::{Value, json};

pub(crate) const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

#[tokio::test(flavor = "multi_thread")]
async fn a_python_host_listening_for_tools_hears_an_upstreams_new_tool_and_then_lists_it() {
    let s = two_eras();
    let plan = json!([
        {"op": "list_tools"},
        {"op": "listen", "filter": {"tools": true},
         "during": [{"op": "call", "name": "modern__grow", "args": {"name": "sprout"}}],
         "expect_tool": "modern__sprout"},
    ]);
    let (connected, steps) = python(&s, "2026-07-28", plan).await;
    assert_eq!(connected["protocol_version"], "2026-07-28", "{connected}");
    let before: Vec<&str> = steps[0]["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(before.contains(&"modern__grow"), "{before:?}");
    assert!(!before.contains(&"modern__sprout"), "{before:?}");
    let listen = &steps[1];
    assert_eq!(
        listen["honored"],
        json!({"toolsListChanged": true}),
        "{listen}"
    );
    assert_eq!(
        listen["during"][0]["result"]["content"][0]["text"], "added sprout",
        "{listen}"
    );
    let events = listen["events"].as_array().unwrap();
    assert!(!events.is_empty(), "{listen}");
    assert!(events.iter().all(|e| e == "ToolsListChanged"), "{listen}");
    assert!(
        listen["tools"]
            .as_array()
            .unwrap()
            .contains(&json!("modern__sprout")),
        "the new tool is listed after the change was heard: {listen}"
    );
}

/// Reads what gavel writes, into `seen`, until `stop` matches a message.
pub(crate) fn until(
    raw: &mut RawHost,
    seen: &mut Vec<Value>,
    stop: impl Fn(&Value) -> bool,
) -> Value {
    loop {
        let v = raw.next();
        seen.push(v.clone());
        if stop(&v) {
            return v;
        }
    }
}

pub(crate) fn tagged(v: &Value) -> &Value {
    &v["params"]["_meta"][SUBSCRIPTION_ID]
}

fn is_tools_change_for(v: &Value, id: u64) -> bool {
    v["method"] == "notifications/tools/list_changed" && tagged(v) == &json!(id)
}

fn tool_names(list: &Value) -> Vec<String> {
    list["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("a tool list: {list}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

/// Waits for a tools change on listen `sub`, then lists (ids from
/// `first_id`) until `tool` is there: at most three changes.
fn heard_then_listed(
    raw: &mut RawHost,
    seen: &mut Vec<Value>,
    sub: u64,
    first_id: u64,
    tool: &str,
) {
    for id in first_id..first_id + 3 {
        until(raw, seen, |v| is_tools_change_for(v, sub));
        raw.send_line(&modern_line(id, "tools/list", json!({}), ""));
        let list = until(raw, seen, |v| v["id"] == id);
        if tool_names(&list).iter().any(|n| n == tool) {
            return;
        }
    }
    panic!("{tool} is not listed after three changes on listen {sub}: {seen:#?}");
}

#[test]
fn on_the_wire_each_listen_is_acknowledged_first_and_gets_only_its_kinds_until_cancelled() {
    let s = two_eras();
    let mut raw = RawHost::bare(&s);
    let mut seen = Vec::new();
    // The acknowledgement is the first thing written for each listen, with
    // what gavel honours (a URI no upstream serves yet is not honoured:
    // the upstreams start with this first request).
    let listen = |id, filter: Value| {
        modern_line(
            id,
            "subscriptions/listen",
            json!({"notifications": filter}),
            "",
        )
    };
    raw.send_line(&listen(
        1,
        json!({"toolsListChanged": true, "resourceSubscriptions": ["demo://x"]}),
    ));
    let ack = raw.next();
    assert_eq!(
        ack["method"], "notifications/subscriptions/acknowledged",
        "{ack}"
    );
    assert_eq!(tagged(&ack), &json!(1), "{ack}");
    assert_eq!(
        ack["params"]["notifications"],
        json!({"toolsListChanged": true}),
        "{ack}"
    );
    raw.send_line(&listen(2, json!({"promptsListChanged": true})));
    let ack = until(&mut raw, &mut seen, |v| {
        v["method"] == "notifications/subscriptions/acknowledged" && tagged(v) == &json!(2)
    });
    assert_eq!(
        ack["params"]["notifications"],
        json!({"promptsListChanged": true}),
        "{ack}"
    );

    raw.send_line(&modern_line(3, "tools/list", json!({}), ""));
    let list = until(&mut raw, &mut seen, |v| v["id"] == 3);
    assert!(
        !tool_names(&list).contains(&"modern__sprout".to_string()),
        "{list}"
    );
    raw.send_line(&modern_line(
        4,
        "tools/call",
        json!({"name": "modern__grow", "arguments": {"name": "sprout"}}),
        "",
    ));
    // Heard on the tools listen (a change at startup may come first), and
    // after it the new tool is listed.
    heard_then_listed(&mut raw, &mut seen, 1, 5, "modern__sprout");
    let grown = match seen.iter().find(|v| v["id"] == 4) {
        Some(v) => v.clone(),
        None => until(&mut raw, &mut seen, |v| v["id"] == 4),
    };
    assert_eq!(
        grown["result"]["content"][0]["text"], "added sprout",
        "{grown}"
    );

    // A second tools listen; then the host cancels the first: no answer to
    // it and nothing more on it, while the second hears the next change.
    raw.send_line(&listen(13, json!({"toolsListChanged": true})));
    until(&mut raw, &mut seen, |v| {
        v["method"] == "notifications/subscriptions/acknowledged" && tagged(v) == &json!(13)
    });
    let cancelled_at = seen.len();
    raw.send_line(
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#,
    );
    raw.send_line(&modern_line(
        10,
        "tools/call",
        json!({"name": "modern__grow", "arguments": {"name": "bud"}}),
        "",
    ));
    heard_then_listed(&mut raw, &mut seen, 13, 20, "modern__bud");
    // The prompts listen is still open: a request after it is answered.
    raw.send_line(&modern_line(12, "prompts/list", json!({}), ""));
    until(&mut raw, &mut seen, |v| v["id"] == 12);

    for v in &seen {
        // Nothing unsolicited on a modern connection; the prompts listen
        // heard no tools change; no result ends a cancelled listen.
        if v.get("method").is_some() {
            assert!(!tagged(v).is_null(), "an untagged notification: {v}");
            assert_ne!(
                (tagged(v), v["method"].as_str()),
                (&json!(2), Some("notifications/tools/list_changed")),
                "{v}"
            );
        }
        assert_ne!(v["id"], json!(1), "the listen got an answer: {v}");
        for open in [2, 13] {
            assert_ne!(v["id"], json!(open), "the listen got an answer: {v}");
        }
    }
    for v in &seen[cancelled_at..] {
        assert!(!is_tools_change_for(v, 1), "after the cancel: {v}");
    }
}

#[test]
fn when_gavel_stops_an_open_listen_is_answered_as_gracefully_ended() {
    let s = two_eras();
    let mut raw = RawHost::bare(&s);
    raw.send_line(&modern_line(
        1,
        "subscriptions/listen",
        json!({"notifications": {"toolsListChanged": true}}),
        "",
    ));
    let ack = raw.next();
    assert_eq!(
        ack["method"], "notifications/subscriptions/acknowledged",
        "{ack}"
    );
    // The upstreams are up (the listen started them) before gavel is stopped.
    raw.send_line(&modern_line(2, "tools/list", json!({}), ""));
    raw.answer(&json!(2));
    raw.terminate();
    let end = raw.answer(&json!(1));
    assert_eq!(end["result"]["resultType"], "complete", "{end}");
    assert_eq!(end["result"]["_meta"][SUBSCRIPTION_ID], 1, "{end}");
    assert_eq!(
        end["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "gavel",
        "{end}"
    );
}

#[test]
fn a_legacy_upstreams_list_change_reaches_a_modern_listen_and_nothing_else() {
    // The fixture upstream (rmcp, `initialize` era) announces a tool it
    // adds with an unsolicited `notifications/tools/list_changed`.
    let s = common::Setup::solo("fx");
    let mut raw = RawHost::bare(&s);
    let mut seen = Vec::new();
    raw.send_line(&modern_line(
        1,
        "subscriptions/listen",
        json!({"notifications": {"toolsListChanged": true}}),
        "",
    ));
    until(&mut raw, &mut seen, |v| {
        v["method"] == "notifications/subscriptions/acknowledged"
    });
    raw.send_line(&modern_line(2, "tools/list", json!({}), ""));
    let list = until(&mut raw, &mut seen, |v| v["id"] == 2);
    assert!(!tool_names(&list).iter().any(|n| n == "leaf"), "{list}");
    raw.send_line(&modern_line(
        3,
        "tools/call",
        json!({"name": "add_tool", "arguments": {"name": "leaf"}}),
        "",
    ));
    heard_then_listed(&mut raw, &mut seen, 1, 10, "leaf");
    for v in &seen {
        if v.get("method").is_some() {
            assert_eq!(tagged(v), &json!(1), "only the listen's own frames: {v}");
        }
    }
}
