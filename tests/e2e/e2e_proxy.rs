//! End to end: the real gavel binary, a real rmcp client as the host, real
//! fixture upstream processes. Forwarding fidelity, aggregation, static rules.

// resources/subscribe is legacy-only in rmcp, and exactly what this era forwards.
#![allow(deprecated)]

use crate::common;

use common::*;
use rmcp::model::*;
use serde_json::json;

fn two_servers(s: &Setup, extra_a: &str) -> String {
    format!(
        "{}{extra_a}\n{}",
        fixture_server("alpha", &[], &s.path("alpha.jsonl")),
        fixture_server("beta", &[], &s.path("beta.jsonl")),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn negotiates_legacy_era_and_prefixes_names_when_several_servers() {
    let s = Setup::with(|s| two_servers(s, ""));
    let client = s.connect(TestHost::new()).await;
    let info = client.peer_info().unwrap();
    assert_eq!(info.protocol_version, ProtocolVersion::V_2025_11_25);
    assert_eq!(info.server_info.as_ref().unwrap().name, "gavel");
    let names = tool_names(&client).await;
    assert!(names.contains(&"alpha__echo".to_string()), "{names:?}");
    assert!(names.contains(&"beta__echo".to_string()), "{names:?}");
    // Routing is by table: each prefix reaches its own server.
    let r = call(&client, "beta__echo", json!({"text": "to beta"}))
        .await
        .unwrap();
    assert_eq!(text(&r), "to beta");
    assert_eq!(recorded_calls(&s.path("beta.jsonl")).len(), 1);
    assert!(recorded_calls(&s.path("alpha.jsonl")).is_empty());
    // Result _meta survives.
    assert_eq!(r.meta.unwrap().0["fixture/echo"], json!(true));
}

#[tokio::test(flavor = "multi_thread")]
async fn one_server_keeps_names_unchanged() {
    let s = Setup::solo("solo");
    let client = s.connect(TestHost::new()).await;
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "echo"));
    assert!(!tools.iter().any(|t| t.name.contains("__")));
}

#[tokio::test(flavor = "multi_thread")]
async fn static_deny_hides_tool_and_never_reaches_upstream() {
    let s = Setup::with(|s| {
        format!(
            "{}[servers.alpha.tools]\ndeny = [\"destructive_*\"]\n",
            fixture_server("alpha", &[], &s.path("alpha.jsonl"))
        )
    });
    let client = s.connect(TestHost::new()).await;
    let tools = client.list_all_tools().await.unwrap();
    assert!(
        !tools.iter().any(|t| t.name == "destructive_delete"),
        "denied tools are not listed"
    );
    let r = call(&client, "destructive_delete", json!({"path": "/etc"})).await;
    // Not listed → unknown to the host; still never forwarded.
    let denied = match r {
        Ok(r) => r,
        Err(e) => panic!("expected a structured denial, got {e}"),
    };
    assert_eq!(denied.is_error, Some(true));
    let t = text(&denied);
    assert!(
        t.contains("static_rule") && t.contains("destructive_delete"),
        "{t}"
    );
    let meta = denied.meta.unwrap();
    assert_eq!(
        meta.0["dev.gavel/decision"]["reasons"],
        json!(["static_rule"])
    );
    assert_eq!(meta.0["dev.gavel/decision"]["allow"], json!(false));
    assert_eq!(
        meta.0["io.modelcontextprotocol/authorization"]["reason"],
        "insufficient_authorization"
    );
    assert_eq!(
        denied.structured_content.unwrap()["matched_rules"][0],
        r#"servers.alpha.tools.deny["destructive_*"]"#
    );
    assert!(
        recorded_calls(&s.path("alpha.jsonl")).is_empty(),
        "a denied call must not reach the upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn meta_and_structured_content_pass_through() {
    let s = Setup::solo("solo");
    let client = s.connect(TestHost::new()).await;
    let mut p = CallToolRequestParams::new("echo_meta");
    p.arguments = Some(Default::default());
    let mut meta = RequestMetaObject::default();
    meta.0.0.insert(
        "traceparent".into(),
        json!("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    );
    meta.0
        .0
        .insert("dev.example/custom".into(), json!({"k": 1}));
    p.meta = Some(meta);
    let r = client.peer().call_tool(p).await.unwrap();
    let seen = &r.structured_content.unwrap()["meta"];
    assert_eq!(
        seen["traceparent"],
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );
    assert_eq!(seen["dev.example/custom"], json!({"k": 1}));
    let r = call(&client, "structured", json!({"value": "v1"}))
        .await
        .unwrap();
    assert_eq!(r.structured_content.unwrap(), json!({"value": "v1"}));
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_tokens_are_mapped_back_to_the_hosts() {
    let s = Setup::solo("solo");
    let host = TestHost::new();
    let seen = host.seen.clone();
    let client = s.connect(host).await;
    let (r, host_token) =
        call_with_progress(&client, "progress", json!({"steps": 3, "delay_ms": 10})).await;
    assert_eq!(text(&r), "done 3");
    eventually("3 progress notifications", || {
        seen.lock().unwrap().progress.len() >= 3
    })
    .await;
    let progress = seen.lock().unwrap().progress.clone();
    assert!(
        progress.iter().all(|p| p.progress_token == host_token),
        "{progress:?} vs {host_token:?}"
    );
    // The upstream saw gavel's own token, not the host's: mapping happened.
    let upstream_meta = recorded_calls(&s.record("solo"))[0]["params"]["_meta"].clone();
    assert!(
        upstream_meta.get("progressToken").is_some(),
        "{upstream_meta}"
    );
    let values: Vec<f64> = progress.iter().map(|p| p.progress).collect();
    assert_eq!(values, vec![1.0, 2.0, 3.0]);
}

/// On the wire, every progress notification the upstream sent before its
/// result reaches the host before the result, also when the upstream writes
/// them all at once (tests/fixture/burst_upstream.py; the same over HTTP in
/// e2e_http.rs).
#[test]
fn progress_in_one_write_reaches_the_host_before_the_result() {
    let s = Setup::blank();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixture/burst_upstream.py");
    s.write_config(&format!(
        "[servers.burst]\ncommand = \"python3\"\nargs = [{:?}]\n",
        script.display().to_string()
    ));
    let mut host = common::raw::RawHost::start(&s);
    for call in 1..=20 {
        host.send_line(&format!(
            r#"{{"jsonrpc":"2.0","id":{call},"method":"tools/call","params":{{"name":"burst","arguments":{{}},"_meta":{{"progressToken":"p{call}"}}}}}}"#
        ));
        let mut steps = vec![];
        loop {
            let m = host.next();
            if m["id"] == json!(call) {
                assert_eq!(m["result"]["content"][0]["text"], "done", "{m}");
                break;
            }
            if m["method"] == "notifications/progress" {
                assert_eq!(m["params"]["progressToken"], format!("p{call}"), "{m}");
                steps.push(m["params"]["progress"].as_f64().unwrap());
            }
        }
        let all: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(
            steps, all,
            "call {call}: every step before the result, in order"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cancellation_reaches_the_owning_upstream_only() {
    let s = Setup::with(|s| two_servers(s, ""));
    let client = s.connect(TestHost::new()).await;
    let mut p = CallToolRequestParams::new("alpha__slow");
    p.arguments = json!({"ms": 30000}).as_object().cloned();
    let req = ClientRequest::CallToolRequest(CallToolRequest::new(p));
    let handle = client
        .peer()
        .send_cancellable_request(req, rmcp::service::PeerRequestOptions::no_options())
        .await
        .unwrap();
    let alpha = s.path("alpha.jsonl");
    eventually("the slow call reached alpha", || {
        !recorded_calls(&alpha).is_empty()
    })
    .await;
    handle.cancel(Some("test cancels".into())).await.unwrap();
    eventually("alpha saw the cancellation", || {
        records(&alpha)
            .iter()
            .any(|v| v.get("cancelled").is_some() || v["notification"] == "notifications/cancelled")
    })
    .await;
    assert!(
        !records(&s.path("beta.jsonl"))
            .iter()
            .any(|v| v["notification"] == "notifications/cancelled"),
        "beta must not see alpha's cancellation"
    );
    // The session is alive.
    assert_eq!(
        text(
            &call(&client, "beta__echo", json!({"text": "still here"}))
                .await
                .unwrap()
        ),
        "still here"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_requests_reach_the_host_elicitation_sampling_roots() {
    let s = Setup::solo("solo");
    let host = TestHost::new();
    let seen = host.seen.clone();
    let client = s.connect(host).await;
    let r = call(&client, "elicit", json!({"message": "Proceed?"}))
        .await
        .unwrap();
    assert!(text(&r).contains("action=accept"), "{}", text(&r));
    assert!(text(&r).contains("from the e2e host"), "{}", text(&r));
    assert_eq!(seen.lock().unwrap().elicitations[0]["message"], "Proceed?");
    let r = call(&client, "sample", json!({"prompt": "say hi"}))
        .await
        .unwrap();
    assert!(text(&r).contains("sampled by the e2e host"), "{}", text(&r));
    let r = call(&client, "roots", json!({})).await.unwrap();
    assert!(text(&r).contains("file:///e2e-root"), "{}", text(&r));
}

#[tokio::test(flavor = "multi_thread")]
async fn host_without_elicitation_is_not_asked() {
    let s = Setup::solo("solo");
    let client = s.connect(TestHost::bare()).await;
    let r = call(&client, "elicit", json!({"message": "Proceed?"}))
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true), "{}", text(&r));
}

#[tokio::test(flavor = "multi_thread")]
async fn list_changed_is_refetched_and_reannounced() {
    let s = Setup::with(|s| two_servers(s, ""));
    let host = TestHost::new();
    let seen = host.seen.clone();
    let client = s.connect(host).await;
    client.list_all_tools().await.unwrap();
    let before = seen.lock().unwrap().tool_list_changed;
    call(&client, "alpha__add_tool", json!({"name": "fresh"}))
        .await
        .unwrap();
    // The host is told first, without asking: a tools/list of its own
    // while the change is on its way would rebuild the table itself (and
    // answer with the new tool), leaving gavel nothing new to announce.
    // gavel re-fetches only on the upstream's list_changed, so the new tool
    // being listed after an announcement proves the re-fetch.
    until_announced_list(
        &client,
        &seen,
        before,
        "tools/list_changed bringing alpha__fresh",
        |tools| tools.iter().any(|t| t.name == "alpha__fresh"),
    )
    .await;
    let r = call(&client, "alpha__fresh", json!({})).await.unwrap();
    assert_eq!(text(&r), "dynamic fresh");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_upstream_page_is_fetched() {
    let s = Setup::with(|s| {
        fixture_server(
            "solo",
            &["--page-size", "3", "--extra-tools", "25"],
            &s.record("solo"),
        )
    });
    let client = s.connect(TestHost::new()).await;
    let tools = client.list_all_tools().await.unwrap();
    for i in 0..25 {
        let n = format!("extra_{i:03}");
        assert!(tools.iter().any(|t| t.name == n), "{n} missing");
    }
    assert!(tools.iter().any(|t| t.name == "echo"));
}

#[tokio::test(flavor = "multi_thread")]
async fn resources_prompts_completion_logging_route_to_their_server() {
    let s = Setup::with(|s| two_servers(s, ""));
    let host = TestHost::new();
    let seen = host.seen.clone();
    let client = s.connect(host).await;
    // Resources are not renamed; both fixtures list the same static URI, so
    // the second is withheld and the first routes.
    let resources = client.list_all_resources().await.unwrap();
    assert!(resources.iter().any(|r| r.uri == "fixture://static/hello"));
    // Every list and completion method a host may call is answered by
    // gavel's own handler (rmcp 3.11 answers an unimplemented one -32601):
    // tools, resources, prompts and completion here, templates too.
    let templates = client.list_all_resource_templates().await.unwrap();
    assert!(
        templates
            .iter()
            .any(|t| t.uri_template == "fixture://items/{id}"),
        "{templates:?}"
    );
    let r = client
        .peer()
        .read_resource(ReadResourceRequestParams::new("fixture://items/42"))
        .await
        .unwrap();
    assert!(serde_json::to_string(&r).unwrap().contains("item 42"));
    let prompts = client.list_all_prompts().await.unwrap();
    assert!(prompts.iter().any(|p| p.name == "beta__greet"));
    let mut gp = GetPromptRequestParams::new("beta__greet");
    gp.arguments = json!({"name": "Ada"}).as_object().cloned();
    let r = client.peer().get_prompt(gp).await.unwrap();
    assert!(serde_json::to_string(&r).unwrap().contains("Hello, Ada!"));
    assert_eq!(
        records(&s.path("beta.jsonl"))
            .iter()
            .filter(|v| v["method"] == "prompts/get")
            .count(),
        1
    );
    let c = client
        .peer()
        .complete(CompleteRequestParams::new(
            Reference::for_prompt("beta__greet"),
            ArgumentInfo::new("name", "al"),
        ))
        .await
        .unwrap();
    assert_eq!(
        c.completion.values,
        vec!["alice".to_string(), "alfred".to_string()]
    );
    call(
        &client,
        "beta__log",
        json!({"level": "warning", "message": "from beta"}),
    )
    .await
    .unwrap();
    eventually("log forwarded", || !seen.lock().unwrap().logs.is_empty()).await;
    let log = seen.lock().unwrap().logs[0].clone();
    assert_eq!(log["logger"], "beta/fixture");
    assert_eq!(log["data"], "from beta");
}

#[tokio::test(flavor = "multi_thread")]
async fn subscriptions_and_updates() {
    let s = Setup::solo("solo");
    let host = TestHost::new();
    let seen = host.seen.clone();
    let client = s.connect(host).await;
    client
        .peer()
        .subscribe(SubscribeRequestParams::new("fixture://static/hello"))
        .await
        .unwrap();
    let r = call(
        &client,
        "touch_resource",
        json!({"uri": "fixture://static/hello"}),
    )
    .await
    .unwrap();
    assert!(text(&r).contains("subscribed=true"), "{}", text(&r));
    eventually("resources/updated forwarded", || {
        !seen.lock().unwrap().resource_updated.is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_later_name_collision_is_withheld_and_logged() {
    // Prefix "p" + tool "_x" and prefix "p_" + tool "x" both expose "p___x".
    let s = Setup::with(|s| {
        format!(
            "{}prefix = \"p\"\n\n{}prefix = \"p_\"\n",
            fixture_server("first", &[], &s.path("first.jsonl")),
            fixture_server("second", &[], &s.path("second.jsonl")),
        )
    });
    let client = s.connect(TestHost::new()).await;
    client.list_all_tools().await.unwrap();
    call(&client, "p__add_tool", json!({"name": "_x"}))
        .await
        .unwrap();
    eventually("first's tool is listed", || {
        let tools = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(client.list_all_tools())
        })
        .unwrap();
        tools.iter().any(|t| t.name == "p___x")
    })
    .await;
    call(&client, "p___add_tool", json!({"name": "x"}))
        .await
        .unwrap();
    eventually("the collision is logged", || {
        s.log_text().contains("collides")
    })
    .await;
    // The first claimant keeps the name; the newcomer is withheld.
    let r = call(&client, "p___x", json!({})).await.unwrap();
    assert_eq!(text(&r), "dynamic _x");
    assert_eq!(
        recorded_calls(&s.path("first.jsonl"))
            .iter()
            .filter(|c| c["params"]["name"] == "_x")
            .count(),
        1
    );
    assert!(
        recorded_calls(&s.path("second.jsonl"))
            .iter()
            .all(|c| c["params"]["name"] != "x")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_notifications_pass_through_with_their_meta() {
    let s = Setup::solo("solo");
    let host = TestHost::new();
    let seen = host.seen.clone();
    let client = s.connect(host).await;
    call(&client, "notify_custom", json!({})).await.unwrap();
    eventually("the custom notification reached the host", || {
        !seen.lock().unwrap().custom.is_empty()
    })
    .await;
    let n = seen.lock().unwrap().custom[0].clone();
    assert_eq!(n["method"], "notifications/fixture/custom");
    assert_eq!(n["params"]["x"], 1, "{n}");
    assert_eq!(n["meta"]["fixture/tag"], "kept", "_meta survives: {n}");
}

/// An upstream's `list_changed` that changed nothing gavel shows still
/// reaches the host, as the server sent it: the host is shown the server's
/// whole list, so the notice tells it of nothing hidden
/// (`router::notice`; the guard against hidden items is unit-tested there).
#[tokio::test(flavor = "multi_thread")]
async fn an_upstreams_own_list_changed_notice_is_passed_on() {
    let s = Setup::solo("solo");
    let host = TestHost::new();
    let seen = host.seen.clone();
    let client = s.connect(host).await;
    let before = client.list_all_tools().await.unwrap();
    let heard = seen.lock().unwrap().tool_list_changed;
    call(&client, "tools_changed", json!({})).await.unwrap();
    eventually("the host hears the server's notice", || {
        seen.lock().unwrap().tool_list_changed > heard
    })
    .await;
    let after = client.list_all_tools().await.unwrap();
    assert_eq!(before.len(), after.len(), "nothing changed but the notice");
}
