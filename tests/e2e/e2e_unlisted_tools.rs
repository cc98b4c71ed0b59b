//! `servers.NAME.unlisted_tools = "forward"`: a call to a tool the server
//! serves but does not list (the fixture's `unlisted_echo`) is routed to it
//! and decided by its policy like any call — with no annotations and no
//! definition digest, since gavel knows nothing of the tool — instead of
//! answered "Unknown tool" by gavel. Off by default; with several servers,
//! only `<prefix>__<tool>` of a server that forwards (`src/router/unlisted.rs`).

use crate::common;

use common::*;
use serde_json::{Value, json};

/// The fixture `fx` (recording to `r.jsonl`) behind a bundle that denies
/// the tool `unlisted_denied` and allows the rest; `server_extra` after
/// the server's keys.
fn setup(server_extra: &'static str) -> Setup {
    Setup::with(move |s| {
        let rego = r#"package fx

decision := {"allow": false, "reasons": ["not_this_one"]} if input.action.tool == "unlisted_denied"
decision := {"allow": true} if input.action.tool != "unlisted_denied"
"#;
        let b = common::policy::bundle(&s.path("b"), "fxb", "fx", json!({}), rego);
        common::policy::config(s, &[&b], server_extra, "")
    })
}

fn tool_calls(s: &Setup) -> Vec<Value> {
    records(&s.path("r.jsonl"))
        .into_iter()
        .filter(|r| r["method"] == "tools/call")
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tool_the_server_does_not_list_is_forwarded_only_when_configured() {
    // Default: gavel answers, the server never hears of it.
    let s = setup("");
    let client = s.connect(TestHost::new()).await;
    let e = call(&client, "unlisted_echo", json!({"text": "hi"}))
        .await
        .expect_err("refused by gavel");
    assert!(e.to_string().contains("Unknown tool: unlisted_echo"), "{e}");
    assert!(tool_calls(&s).is_empty());
    client.cancel().await.unwrap();

    let s = setup("unlisted_tools = \"forward\"");
    let client = s.connect(TestHost::new()).await;
    let listed: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(!listed.iter().any(|t| t == "unlisted_echo"), "{listed:?}");
    let r = call(&client, "unlisted_echo", json!({"text": "hi"}))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", s.log_text()));
    assert_eq!(text(&r), "unlisted: hi");
    // Decided like any call, with nothing known of the tool.
    let d = s
        .decisions()
        .into_iter()
        .find(|d| d["input"]["action"]["tool"] == "unlisted_echo")
        .expect("a decision record");
    assert_eq!(d["result"]["allow"], true);
    assert_eq!(d["input"]["action"]["annotations"], json!({}));
    assert!(d["input"]["action"]["tool_digest"].is_null(), "{d}");
    // The policy still decides: denied, it never reaches the server.
    let r = call(&client, "unlisted_denied", json!({})).await.unwrap();
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).contains("not_this_one"), "{}", text(&r));
    let sent: Vec<Value> = tool_calls(&s)
        .iter()
        .map(|r| r["params"]["name"].clone())
        .collect();
    assert_eq!(sent, [json!("unlisted_echo")]);
    // A name the server itself does not know: its own error, passed on.
    let e = call(&client, "no_such_tool", json!({}))
        .await
        .expect_err("the server's error");
    assert!(e.to_string().contains("Unknown tool: no_such_tool"), "{e}");
    assert_eq!(tool_calls(&s).len(), 2, "this one reached the server");
    client.cancel().await.unwrap();
}
