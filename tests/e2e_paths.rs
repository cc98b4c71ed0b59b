//! End to end: every request path that can reach an upstream (or the host)
//! is decided — subscribe, unsubscribe, completion, the upstream's own
//! elicitation and sampling — and a denied one never arrives: the fixture
//! records what it receives, the test host what it is asked. A request type
//! the bundle does not handle falls to default deny (`no_decision`).
// resources/subscribe is legacy-era MCP (deprecated in 2026-07-28), which is what gavel serves.
#![allow(deprecated)]

mod common;

use common::policy::*;
use common::*;
use rmcp::model::*;
use serde_json::json;

/// Allows tool calls and subscribing to hello; denies unsubscribing,
/// subscribing to anything else, completion and the upstream's elicitation
/// and sampling; says nothing about resource reads and prompts.
const PATHS: &str = r#"package paths

decision := {"allow": true} if input.action.type == "tool_call"

decision := {"allow": true} if {
	input.action.type == "resource_subscribe"
	not input.action.args.unsubscribe
	input.action.tool == "fixture://static/hello"
}

decision := {"allow": false, "reasons": ["subscribe_denied"]} if {
	input.action.type == "resource_subscribe"
	not input.action.args.unsubscribe
	input.action.tool != "fixture://static/hello"
}

decision := {"allow": false, "reasons": ["unsubscribe_denied"]} if {
	input.action.type == "resource_subscribe"
	input.action.args.unsubscribe == true
}

decision := {"allow": false, "reasons": ["completion_denied"]} if input.action.type == "completion"

decision := {"allow": false, "reasons": ["elicitation_denied"]} if input.action.type == "elicitation_request"

decision := {"allow": false, "reasons": ["sampling_denied"]} if input.action.type == "sampling_request"
"#;

fn reason(e: &rmcp::ServiceError) -> String {
    match e {
        rmcp::ServiceError::McpError(d) => d
            .data
            .as_ref()
            .and_then(|v| v["decision"]["reasons"][0].as_str())
            .unwrap_or("")
            .to_string(),
        other => panic!("not a JSON-RPC error: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_path_is_decided_and_a_denied_request_never_arrives() {
    let s = Setup::new("");
    let b = bundle(s.dir.path(), "paths", "paths", json!({}), PATHS);
    std::fs::write(s.config(), config(&s, &[&b], "", "")).unwrap();
    let host = TestHost::new();
    let seen = host.seen.clone();
    let client = s.connect(host).await;
    client.list_all_tools().await.unwrap();
    let peer = client.peer();

    // subscribe: allowed for hello (forwarded), denied for blob.
    peer.subscribe(SubscribeRequestParams::new("fixture://static/hello"))
        .await
        .unwrap();
    let e = peer
        .subscribe(SubscribeRequestParams::new("fixture://static/blob"))
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), Some(403), "{e}");
    assert_eq!(reason(&e), "subscribe_denied");
    // unsubscribe: denied, so the upstream stays subscribed.
    let e = peer
        .unsubscribe(UnsubscribeRequestParams::new("fixture://static/hello"))
        .await
        .unwrap_err();
    assert_eq!(
        (error_code(&e), reason(&e).as_str()),
        (Some(403), "unsubscribe_denied")
    );
    // completion: denied.
    let e = peer
        .complete(CompleteRequestParams::new(
            Reference::for_prompt("greet"),
            ArgumentInfo::new("name", "al"),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (error_code(&e), reason(&e).as_str()),
        (Some(403), "completion_denied")
    );
    // A type the bundle does not handle: default deny.
    let e = peer
        .read_resource(ReadResourceRequestParams::new("fixture://static/hello"))
        .await
        .unwrap_err();
    assert_eq!(
        (error_code(&e), reason(&e).as_str()),
        (Some(403), "no_decision")
    );
    let e = peer
        .get_prompt(GetPromptRequestParams::new("plain"))
        .await
        .unwrap_err();
    assert_eq!(reason(&e), "no_decision");

    // The upstream's own requests to the host: denied, the host never asked.
    let r = call(&client, "elicit", json!({"message": "may I?"}))
        .await
        .unwrap();
    assert!(text(&r).contains("elicitation failed"), "{}", text(&r));
    assert!(text(&r).contains("elicitation_denied"), "{}", text(&r));
    let r = call(&client, "sample", json!({"prompt": "hi"}))
        .await
        .unwrap();
    assert!(text(&r).contains("sampling failed"), "{}", text(&r));
    {
        let seen = seen.lock().unwrap();
        assert!(seen.elicitations.is_empty(), "{:?}", seen.elicitations);
        assert!(seen.samplings.is_empty(), "{:?}", seen.samplings);
    }

    let got = recorded(&s.path("r.jsonl"));
    let methods: Vec<String> = got
        .iter()
        .filter_map(|v| v["method"].as_str().map(String::from))
        .filter(|m| !m.ends_with("/list") && m != "initialize")
        .collect();
    // Only what was allowed arrived: one subscribe (hello) and the two tool calls.
    assert_eq!(
        methods,
        vec!["resources/subscribe", "tools/call", "tools/call"],
        "{got:?}"
    );
    let sub = got
        .iter()
        .find(|v| v["method"] == "resources/subscribe")
        .unwrap();
    assert_eq!(sub["params"]["uri"], "fixture://static/hello");

    // Every decision is in the log with its action type.
    let log = decisions(&s);
    let types: Vec<(&str, bool)> = log
        .iter()
        .map(|r| {
            (
                r["input"]["action"]["type"].as_str().unwrap(),
                r["result"]["allow"].as_bool().unwrap(),
            )
        })
        .collect();
    for expected in [
        ("resource_subscribe", true),
        ("resource_subscribe", false),
        ("completion", false),
        ("resource_read", false),
        ("prompt_get", false),
        ("elicitation_request", false),
        ("sampling_request", false),
    ] {
        assert!(types.contains(&expected), "{expected:?} in {types:?}");
    }
    assert!(
        log.iter()
            .any(|r| r["input"]["action"]["args"]["unsubscribe"] == true
                && r["result"]["allow"] == false)
    );
    client.cancel().await.unwrap();
}
