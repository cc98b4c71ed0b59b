//! Golden test: what rmcp 3.11's typed model drops when gavel forwards a
//! message. gavel's core is typed (one `ServerHandler` serves stdio and HTTP),
//! so anything outside the negotiated schema plus `_meta`/`structuredContent`
//! is lost. This test pins the exact list; if rmcp changes, it fails and this
//! list (and docs/fidelity.md) must be updated.

use rmcp::model::{CallToolResult, ListToolsResult, ServerResult, Tool};
use serde_json::{Value, json};

/// JSON pointers present in `before` but absent in `after`.
fn dropped(before: &Value, after: &Value, path: String, out: &mut Vec<String>) {
    match (before, after) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = format!("{path}/{k}");
                match b.get(k) {
                    None => out.push(p),
                    Some(w) => dropped(v, w, p, out),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, v) in a.iter().enumerate() {
                match b.get(i) {
                    None => out.push(format!("{path}/{i}")),
                    Some(w) => dropped(v, w, format!("{path}/{i}"), out),
                }
            }
        }
        _ => {}
    }
}

fn roundtrip<T: serde::de::DeserializeOwned + serde::Serialize>(v: &Value) -> Vec<String> {
    let t: T = serde_json::from_value(v.clone()).expect("parses");
    let after = serde_json::to_value(&t).unwrap();
    let mut out = Vec::new();
    dropped(v, &after, String::new(), &mut out);
    out
}

#[test]
fn tool_definition_fields() {
    let tool = json!({
        "name": "t", "title": "T", "description": "d",
        "inputSchema": {"type": "object", "properties": {"a": {"type": "string"}}, "x-vendor": 1},
        "outputSchema": {"type": "object"},
        "annotations": {"title": "A", "readOnlyHint": true, "destructiveHint": false, "idempotentHint": true, "openWorldHint": false},
        "icons": [{"src": "https://example.test/i.png", "mimeType": "image/png"}],
        "_meta": {"vendor/x": 1},
        "execution": {"taskSupport": "optional"},
        "vendorField": 7
    });
    let lost = roundtrip::<Tool>(&tool);
    // Documented losses: SEP task support (`execution`) and non-schema fields.
    assert_eq!(
        lost,
        vec!["/execution", "/vendorField"],
        "update docs/fidelity.md if this changes"
    );
    let list = json!({"tools": [tool], "nextCursor": "c"});
    assert_eq!(
        roundtrip::<ListToolsResult>(&list),
        vec!["/tools/0/execution", "/tools/0/vendorField"]
    );
}

#[test]
fn call_tool_result_fields() {
    let r = json!({
        "content": [
            {"type": "text", "text": "hi", "annotations": {"audience": ["user"], "priority": 0.5}, "_meta": {"k": 1}},
            {"type": "image", "data": "AAAA", "mimeType": "image/png"},
            {"type": "resource_link", "uri": "file:///x", "name": "x"},
            {"type": "resource", "resource": {"uri": "file:///y", "text": "y"}}
        ],
        "structuredContent": {"a": [1, {"b": null}]},
        "isError": false,
        "_meta": {"vendor/trace": "abc"},
        "extraField": 42
    });
    assert_eq!(
        roundtrip::<CallToolResult>(&r),
        vec!["/extraField"],
        "update docs/fidelity.md if this changes"
    );
}

#[test]
fn unknown_content_type_is_not_a_call_tool_result() {
    // A content block type newer than rmcp's model does not parse as a
    // CallToolResult: rmcp hands it over as a CustomResult, which gavel tries
    // to convert and otherwise reports as an error naming the server.
    let r = json!({"content": [{"type": "hologram", "data": "?"}]});
    assert!(serde_json::from_value::<CallToolResult>(r.clone()).is_err());
    let sr: ServerResult = serde_json::from_value(r).unwrap();
    assert!(matches!(sr, ServerResult::CustomResult(_)));
}

#[test]
fn a_tool_result_without_content_is_a_call_tool_result() {
    // rmcp 3.11 (#1434): `content` may be absent (MCP 2026-07-28 servers
    // may send structured output alone); before, such a result was no
    // CallToolResult and the host saw an error. gavel hands it on with an
    // empty `content`, what a 2025-11-25 host expects.
    let r = json!({"structuredContent": {"n": 1}, "isError": false});
    let sr: ServerResult = serde_json::from_value(r).unwrap();
    let ServerResult::CallToolResult(t) = sr else {
        panic!("not a CallToolResult: {sr:?}")
    };
    assert!(t.content.is_empty());
    assert_eq!(t.structured_content, Some(json!({"n": 1})));
    assert_eq!(serde_json::to_value(&t).unwrap()["content"], json!([]));
}
