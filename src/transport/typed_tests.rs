use super::*;
use rmcp::model::{ClientNotification, ClientRequest, ClientResult};
use serde_json::{Value, json};

type HostLine = JsonRpcMessage<ClientRequest, ClientResult, ClientNotification>;

/// rmcp's own read of `line`, as JSON (for comparison).
fn generic<M: for<'de> Deserialize<'de> + serde::Serialize>(line: &Value) -> Value {
    let m: M = serde_json::from_value(line.clone()).expect("rmcp reads it");
    serde_json::to_value(m).unwrap()
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// Each forwarded request reads as the same message rmcp's own read makes
/// of it, `_meta` (extensions) included.
#[test]
fn requests_read_as_rmcp_reads_them() {
    let lines = [
        json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
               "params": {"name": "echo", "arguments": {"text": "hi", "n": [1, 2.5, null]},
                          "_meta": {"progressToken": "p1", "io.modelcontextprotocol/protocolVersion": "2026-07-28"}}}),
        json!({"id": "s", "jsonrpc": "2.0", "method": "prompts/get", "params": {"name": "p", "arguments": {"a": "b"}}}),
        json!({"jsonrpc": "2.0", "method": "resources/read", "params": {"uri": "file:///x"}, "id": 0}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "t"}, "extra": {"x": 1}}),
    ];
    for line in &lines {
        let fast = read_request(&bytes(line)).unwrap_or_else(|| panic!("not read fast: {line}"));
        assert_eq!(
            serde_json::to_value(&fast).unwrap(),
            generic::<HostLine>(line),
            "{line}"
        );
    }
}

/// What is not a forwarded request — or what rmcp's read would refuse or
/// read otherwise — is left to rmcp.
#[test]
fn anything_else_is_left_to_rmcp() {
    for line in [
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        json!({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "t"}}),
        json!({"jsonrpc": "2.0", "id": null, "method": "tools/call", "params": {"name": "t"}}),
        json!({"jsonrpc": "1.0", "id": 1, "method": "tools/call", "params": {"name": "t"}}),
        json!({"id": 1, "method": "tools/call", "params": {"name": "t"}}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "t"}, "result": null}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": 123}}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call"}),
        json!([1, 2]),
    ] {
        assert!(read_request(&bytes(&line)).is_none(), "{line}");
    }
    assert!(read_request(b"{not json").is_none());
    assert!(
        read_request(
            br#"{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/call","params":{"name":"t"}}"#
        )
        .is_none()
    );
}

fn call(id: i64) -> TxJsonRpcMessage<RoleClient> {
    let params = rmcp::model::CallToolRequestParams::new("echo");
    JsonRpcMessage::Request(JsonRpcRequest::new(
        RequestId::Number(id),
        ClientRequest::CallToolRequest(CallToolRequest::new(params)),
    ))
}

/// A reply to a call gavel sent reads as a `CallToolResult`, equal to what
/// rmcp makes of it; it settles its request (a second reply on the id is
/// rmcp's to handle).
#[test]
fn a_reply_reads_as_what_its_request_asked_for() {
    let mut asked = Asked::default();
    RoleClient::sent(&call(3), &mut asked);
    let line = json!({"jsonrpc": "2.0", "id": 3, "result": {
        "content": [{"type": "text", "text": "hi"}], "structuredContent": {"a": 1},
        "isError": false, "_meta": {"k": "v"}}});
    let fast = RoleClient::read(&bytes(&line), &mut asked).expect("read fast");
    let JsonRpcMessage::Response(r) = &fast else {
        panic!("{fast:?}")
    };
    assert!(matches!(r.result, ServerResult::CallToolResult(_)));
    let slow: RxJsonRpcMessage<RoleClient> = serde_json::from_value(line.clone()).unwrap();
    assert_eq!(
        serde_json::to_value(&fast).unwrap(),
        serde_json::to_value(&slow).unwrap()
    );
    assert!(RoleClient::read(&bytes(&line), &mut asked).is_none());
}

/// A call answered with what is not a tool result (an input round, an
/// error) is left to rmcp, and the request is settled all the same; ids
/// never sent, and requests, are rmcp's.
#[test]
fn other_replies_are_left_to_rmcp_and_settle_their_request() {
    let mut asked = Asked::default();
    RoleClient::sent(&call(1), &mut asked);
    RoleClient::sent(&call(2), &mut asked);
    let round = json!({"jsonrpc": "2.0", "id": 1, "result": {"resultType": "input_required",
        "inputRequests": {"k": {"method": "roots/list"}}}});
    let read = RoleClient::read(&bytes(&round), &mut asked);
    if let Some(JsonRpcMessage::Response(r)) = &read {
        // Only if rmcp's own read makes a tool result of it too.
        let slow: RxJsonRpcMessage<RoleClient> = serde_json::from_value(round.clone()).unwrap();
        assert_eq!(
            serde_json::to_value(&read).unwrap(),
            serde_json::to_value(&slow).unwrap(),
            "{:?}",
            r.result
        );
    }
    let error = json!({"jsonrpc": "2.0", "id": 2, "error": {"code": -32602, "message": "no"}});
    assert!(RoleClient::read(&bytes(&error), &mut asked).is_none());
    assert!(asked.0.is_empty(), "every reply settles its request");
    let stray = json!({"jsonrpc": "2.0", "id": 9, "result": {"content": []}});
    assert!(RoleClient::read(&bytes(&stray), &mut asked).is_none());
    let request = json!({"jsonrpc": "2.0", "id": 1, "method": "roots/list"});
    assert!(RoleClient::read(&bytes(&request), &mut asked).is_none());
}

/// The table of unanswered requests stays bounded whatever is never
/// answered.
#[test]
fn the_table_of_unanswered_requests_is_bounded() {
    let mut asked = Asked::default();
    for id in 0..(MAX_ASKED as i64 * 3) {
        RoleClient::sent(&call(id), &mut asked);
        assert!(asked.0.len() <= MAX_ASKED);
    }
}
