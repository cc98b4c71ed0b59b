use super::*;
use rmcp::RoleClient;
use rmcp::RoleServer;
use rmcp::model::NumberOrString;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn t(n: i64) -> ProgressToken {
    ProgressToken(NumberOrString::Number(n))
}

#[test]
fn progress_lines_are_recognised() {
    let line = br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":3,"progress":1}}"#;
    assert_eq!(progress_token_of(line), Some(t(3)));
    let s = br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"a","progress":1}}"#;
    assert_eq!(
        progress_token_of(s),
        Some(ProgressToken(NumberOrString::String("a".into())))
    );
    let result = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"notifications/progress"}]}}"#;
    assert_eq!(progress_token_of(result), None);
}

fn label(answer: bool) -> LinkLabel {
    LinkLabel {
        name: "test".into(),
        answer_garbage: answer,
        refuse_modern_ping: answer,
    }
}

/// A transport reading `input`; returns what it delivered and what it wrote back.
async fn run<Role: crate::transport::typed::Typed>(
    input: Vec<u8>,
    max: usize,
    answer: bool,
) -> (Vec<String>, Vec<serde_json::Value>) {
    let (mut feed, read_side) = tokio::io::duplex(1 << 20);
    let (write_side, out) = tokio::io::duplex(1 << 20);
    let mut t = LineTransport::<Role, _, _>::new(read_side, write_side, max, label(answer));
    tokio::spawn(async move {
        // Dribble the input in small writes to exercise partial lines.
        for chunk in input.chunks(7919) {
            feed.write_all(chunk).await.unwrap();
        }
    });
    let mut delivered = Vec::new();
    while let Some(m) = tokio::time::timeout(std::time::Duration::from_millis(500), t.receive())
        .await
        .ok()
        .flatten()
    {
        delivered.push(serde_json::to_string(&m).unwrap());
    }
    let mut replies = Vec::new();
    let mut lines = BufReader::new(out).lines();
    while let Ok(Ok(Some(l))) =
        tokio::time::timeout(std::time::Duration::from_millis(300), lines.next_line()).await
    {
        replies.push(serde_json::from_str(&l).unwrap());
    }
    t.close().await.unwrap();
    (delivered, replies)
}

#[tokio::test]
async fn passes_normal_messages_and_answers_oversized_requests_on_their_id() {
    let big = "y".repeat(5000);
    let input = format!(
        "{}\n{}\n{}\n",
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        format_args!(
            r#"{{"jsonrpc":"2.0","method":"tools/call","params":{{"name":"e","arguments":{{"t":"{big}"}}}},"id":"req-9"}}"#
        ),
        r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#,
    );
    let (delivered, replies) = run::<RoleServer>(input.into_bytes(), 1024, true).await;
    assert_eq!(delivered.len(), 2, "{delivered:?}");
    assert!(delivered[0].contains("\"id\":1") && delivered[1].contains("\"id\":2"));
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0]["id"], "req-9");
    assert_eq!(replies[0]["error"]["code"], -32600);
}

#[tokio::test]
async fn oversized_reply_becomes_an_error_for_the_call_it_answers() {
    let big = "z".repeat(50_000);
    let input = format!(
        r#"{{"jsonrpc":"2.0","id":77,"result":{{"content":[{{"type":"text","text":"{big}"}}]}}}}"#
    ) + "\n";
    let (delivered, replies) = run::<RoleClient>(input.into_bytes(), 4096, false).await;
    assert!(replies.is_empty());
    assert_eq!(delivered.len(), 1);
    let v: serde_json::Value = serde_json::from_str(&delivered[0]).unwrap();
    assert_eq!(v["id"], 77);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_message_bytes")
    );
}

#[tokio::test]
async fn garbage_is_answered_on_the_host_side_and_ignored_upstream() {
    let input = b"not json\n{\"jsonrpc\":\"2.0\",\"id\":5}\n\n".to_vec();
    let (delivered, replies) = run::<RoleServer>(input.clone(), 1024, true).await;
    assert!(delivered.is_empty());
    assert_eq!(replies.len(), 2, "{replies:?}");
    assert_eq!(replies[0]["error"]["code"], -32700);
    assert_eq!(
        replies[0].get("id"),
        Some(&serde_json::Value::Null),
        "JSON-RPC 2.0 §5"
    );
    assert_eq!(replies[1]["error"]["code"], -32600);
    assert_eq!(replies[1]["id"], 5);
    let (delivered, replies) =
        run::<RoleClient>(b"npm notice: hello\n".to_vec(), 1024, false).await;
    assert!(delivered.is_empty() && replies.is_empty());
}

/// `depth` levels of nesting (arrays and objects, with decoy ids and
/// brackets inside strings), as a JSON value.
fn nested(depth: usize) -> String {
    let mut s = String::new();
    for i in 0..depth {
        s.push_str(if i % 2 == 0 {
            r#"{"id":1,"s":"]}\"[{","k":"#
        } else {
            "["
        });
    }
    s.push('0');
    for i in (0..depth).rev() {
        s.push(if i % 2 == 0 { '}' } else { ']' });
    }
    s
}

#[tokio::test]
async fn deep_requests_from_the_host_are_answered_on_their_id_or_with_id_null() {
    let deep = nested(5000);
    let lines = [
        format!(r#"{{"jsonrpc":"2.0","id":"before","method":"tools/call","params":{deep}}}"#),
        format!(r#"{{"jsonrpc":"2.0","method":"tools/call","params":{deep},"id":42}}"#),
        format!(r#"{{"jsonrpc":"2.0","method":"notifications/x","params":{deep}}}"#),
        r#"{"jsonrpc":"2.0","id":9,"method":"ping","params":{"a":}}"#.to_string(),
        r#"{"jsonrpc":"2.0","id":10,"method":"ping"}"#.to_string(),
    ];
    let input = lines.join("\n") + "\n";
    let (delivered, replies) = run::<RoleServer>(input.into_bytes(), 1 << 20, true).await;
    assert_eq!(delivered.len(), 1, "only the good ping: {delivered:?}");
    assert!(delivered[0].contains("\"id\":10"), "{delivered:?}");
    assert_eq!(replies.len(), 4, "{replies:?}");
    let by_id = |id: serde_json::Value| {
        replies
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("no answer on {id}: {replies:?}"))
    };
    for id in [serde_json::json!("before"), serde_json::json!(42)] {
        let r = by_id(id);
        assert_eq!(r["error"]["code"], -32600, "{r}");
        let msg = r["error"]["message"].as_str().unwrap();
        assert!(msg.contains("nested 5001 levels deep"), "{msg}");
    }
    let r = by_id(serde_json::Value::Null);
    assert_eq!(r["error"]["code"], -32600, "{r}");
    assert_eq!(by_id(serde_json::json!(9))["error"]["code"], -32700);
}

#[tokio::test]
async fn deep_lines_from_an_upstream_fail_the_call_or_are_answered() {
    let deep = nested(3000);
    let lines = [
        // A reply: the call it answers must fail, not hang.
        format!(
            r#"{{"jsonrpc":"2.0","id":7,"result":{{"content":[],"structuredContent":{deep}}}}}"#
        ),
        format!(r#"{{"jsonrpc":"2.0","result":{deep},"id":8}}"#),
        // A request from the upstream: answered on its id.
        format!(
            r#"{{"jsonrpc":"2.0","id":"up-1","method":"sampling/createMessage","params":{deep}}}"#
        ),
        // A notification: nobody waits for it; dropped.
        format!(r#"{{"jsonrpc":"2.0","method":"notifications/message","params":{deep}}}"#),
    ];
    let input = lines.join("\n") + "\n";
    let (delivered, replies) = run::<RoleClient>(input.into_bytes(), 1 << 20, false).await;
    assert_eq!(delivered.len(), 2, "{delivered:?}");
    for (d, id) in delivered.iter().zip([7, 8]) {
        let v: serde_json::Value = serde_json::from_str(d).unwrap();
        assert_eq!(v["id"], id, "{v}");
        assert_eq!(v["error"]["code"], -32603, "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("Reply from test unreadable") && msg.contains("nested"),
            "{msg}"
        );
    }
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0]["id"], "up-1");
    assert_eq!(replies[0]["error"]["code"], -32600);
}

/// The depth gavel reads is serde_json's: one level less is delivered as
/// usual, one more is refused as too deep (not as a parse error).
#[tokio::test]
async fn the_depth_limit_is_the_parsers() {
    let line = |d: usize| {
        // The envelope and params are two levels.
        format!(
            r#"{{"jsonrpc":"2.0","id":{d},"method":"tools/call","params":{{"name":"e","arguments":{{"a":{}}}}}}}"#,
            nested(d - 3)
        )
    };
    let depth = MAX_JSON_DEPTH as usize;
    let input = format!("{}\n{}\n", line(depth), line(depth + 1));
    let (delivered, replies) = run::<RoleServer>(input.into_bytes(), 1 << 20, true).await;
    assert_eq!(delivered.len(), 1, "{delivered:?} {replies:?}");
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0]["id"], depth + 1);
    assert_eq!(replies[0]["error"]["code"], -32600, "{}", replies[0]);
}

/// A peer that does not read cannot make gavel hold unbounded output:
/// past `MAX_PENDING_WRITE_BYTES` a send fails at once (it used to wait
/// in line for the writer, holding its message, for ever).
#[tokio::test]
async fn writes_to_a_peer_that_does_not_read_are_bounded() {
    use tokio::io::DuplexStream;
    type T = LineTransport<RoleServer, DuplexStream, DuplexStream>;
    let (_unread, write_side) = tokio::io::duplex(64);
    let (read_side, _feed) = tokio::io::duplex(64);
    let t = T::new(read_side, write_side, 1 << 20, label(true));
    // What `send` does, without its `&mut self` borrow (so that many
    // sends can be started and held at once, as rmcp's tasks do).
    let send = |t: &T| {
        let msg = TxJsonRpcMessage::<RoleServer>::error(
            ErrorData::internal_error("x".repeat(1 << 20), None),
            None,
        );
        let writer = t.writer.clone();
        let queued = t.queue(&msg);
        Box::pin(async move { T::write_queued(&writer, queued?).await })
    };
    // Started (one holds the writer, stuck), never finished.
    let mut stuck: Vec<_> = (0..8).map(|_| send(&t)).collect();
    for f in &mut stuck {
        assert!(futures::FutureExt::now_or_never(f.as_mut()).is_none());
    }
    let mut waiting = Vec::new();
    let refused = loop {
        let mut f = send(&t);
        match futures::FutureExt::now_or_never(f.as_mut()) {
            None => waiting.push(f),
            Some(r) => break r,
        }
        assert!(
            waiting.len() < 100,
            "sends to a stuck peer are never refused"
        );
    };
    let e = refused.expect_err("refused, not written");
    assert!(e.to_string().contains("test is not reading"), "{e}");
    assert!(waiting.len() + stuck.len() <= MAX_PENDING_WRITE_BYTES >> 20);
    // Once what waited is gone (written or dropped), sending works again.
    drop(waiting);
    drop(stuck);
    let mut f = send(&t);
    assert!(futures::FutureExt::now_or_never(f.as_mut()).is_none());
}

#[tokio::test]
async fn a_ping_under_the_2026_envelope_is_method_not_found_on_the_host_side_only() {
    let modern = r#"{"jsonrpc":"2.0","id":3,"method":"ping","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let input = format!(
        "{}\n{modern}\n{}\n",
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":2,"method":"ping","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2025-11-25"}}}"#,
    );
    let (delivered, replies) = run::<RoleServer>(input.clone().into_bytes(), 1024, true).await;
    // The legacy pings reach rmcp; the modern one is answered here.
    assert_eq!(delivered.len(), 2, "{delivered:?}");
    assert!(delivered[0].contains("\"id\":1") && delivered[1].contains("\"id\":2"));
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0]["id"], 3);
    assert_eq!(replies[0]["error"]["code"], -32601);
    // Not on a link that does not ask for it (an upstream's).
    let (delivered, replies) = run::<RoleServer>(input.into_bytes(), 1024, false).await;
    assert_eq!(delivered.len(), 3, "{delivered:?}");
    assert!(replies.is_empty(), "{replies:?}");
}
