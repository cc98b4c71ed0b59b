//! End to end: `gavel serve` — the same policy-enforced proxy over
//! streamable HTTP, a session (and upstreams, and counters) per client, and
//! the protections: DNS rebinding (Host), foreign Origins, `server/discover`,
//! shared upstreams and the session cap (listening, bodies and shutdown:
//! e2e_http_serve.rs).

use crate::common;

use std::path::Path;

use common::*;
use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn serve_over_http_with_a_session_per_client() {
    let s = Setup::with(|s| {
        let bundle = common::policy::fixture_bundle();
        format!(
            "[identity.user]\nid = \"ada\"\n\n[log]\ndecisions = {:?}\n\n{}bundle = {:?}\n",
            s.path("decisions.jsonl").display().to_string(),
            fixture_server("fx", &[], &s.path("r.jsonl")),
            bundle.display().to_string()
        )
    });
    let state = s.path("state");
    let (mut gavel, port) = gavel_serve(&s, &[("GAVEL_STATE_DIR", state.to_str().unwrap())]).await;
    let url = format!("http://127.0.0.1:{port}/mcp");

    let a = TestHost::new()
        .serve(StreamableHttpClientTransport::from_uri(url.clone()))
        .await
        .expect("HTTP client A initializes");
    let b = TestHost::new()
        .serve(StreamableHttpClientTransport::from_uri(url.clone()))
        .await
        .expect("HTTP client B initializes");
    let tools = a.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "echo"));
    let ok = call(&a, "echo", json!({"text": "over http"}))
        .await
        .unwrap();
    assert_eq!(text(&ok), "over http");
    let denied = call(&b, "destructive_delete", json!({"path": "/"}))
        .await
        .unwrap();
    assert_eq!(denied.is_error, Some(true));
    call(&a, "echo", json!({"text": "again"})).await.unwrap();

    // One upstream per HTTP session.
    let inits = records(&s.path("r.jsonl"))
        .iter()
        .filter(|r| r["method"] == "initialize")
        .count();
    assert_eq!(inits, 2, "each HTTP session starts its own upstream");
    // `gavel status` sees the HTTP instance and its sessions.
    eventually("status shows two HTTP sessions", || {
        let out = std::process::Command::new(GAVEL)
            .args(["status", "--json"])
            .env("GAVEL_STATE_DIR", &state)
            .output()
            .unwrap();
        let all: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        all.first().is_some_and(|i| {
            i["http_sessions"] == 2
                && i["serving"] == json!(url)
                && i["policies"]["fx"]["policy"] == "rego"
        })
    })
    .await;
    // Counters are per session: A's second call saw A's first only.
    let decided = s.decisions();
    let last = decided.last().unwrap();
    assert_eq!(last["input"]["action"]["tool"], "echo");
    assert_eq!(last["input"]["context"]["turn_count"], 1);
    assert_ne!(
        decided[0]["input"]["context"]["session_id"],
        decided[1]["input"]["context"]["session_id"]
    );

    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
    // DNS rebinding: a foreign Host is refused before any MCP happens.
    let r = raw_post(port, "evil.example", None, &init).await;
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    // A foreign browser Origin is refused; a loopback one is served.
    let r = raw_post(port, "127.0.0.1", Some("https://evil.example"), &init).await;
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    let r = raw_post(
        port,
        "127.0.0.1",
        Some(&format!("http://localhost:{port}")),
        &init,
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    // Two Hosts (or Origins), the first one allowed: 400, whatever the case.
    let r = raw_post(port, "127.0.0.1\r\nhost: evil.example", None, &init).await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert!(r.contains("more than one Host"), "{r}");
    let r = raw_post(port, "127.0.0.1\r\nHOST: 127.0.0.1", None, &init).await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let origins = format!("http://localhost:{port}\r\nOrigin: https://evil.example");
    let r = raw_post(port, "127.0.0.1", Some(&origins), &init).await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert!(r.contains("more than one Origin"), "{r}");
    // server/discover: gavel's identity for a dual-era host; without the
    // 2026-07-28 envelope, 400 and -32602.
    let r = raw_post(
        port,
        "127.0.0.1\r\nMCP-Protocol-Version: 2026-07-28\r\nMcp-Method: server/discover",
        None,
        &json!({"jsonrpc": "2.0", "id": 9, "method": "server/discover", "params": {"_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}}}}),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains(r#"/serverInfo":{"name":"gavel""#), "{r}");
    let r = raw_post(
        port,
        "127.0.0.1",
        None,
        &json!({"jsonrpc": "2.0", "id": 9, "method": "server/discover", "params": {}}),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert!(r.contains("-32602"), "{r}");

    a.cancel().await.unwrap();
    b.cancel().await.unwrap();
    unsafe { libc::kill(gavel.id().unwrap() as i32, libc::SIGTERM) };
    let status = gavel.wait().await.unwrap();
    assert!(status.success(), "graceful shutdown on SIGTERM: {status:?}");
    assert!(
        std::fs::read_dir(state.join("instances"))
            .unwrap()
            .next()
            .is_none(),
        "the status file goes with the process"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_https_with_rustls() {
    let s = Setup::with(|s| {
        let bundle = common::policy::fixture_bundle();
        format!(
            "[identity.user]\nid = \"ada\"\n\n{}bundle = {:?}\n",
            fixture_server("fx", &[], &s.path("r.jsonl")),
            bundle.display().to_string()
        )
    });
    let (cert, key, ca_file) = test_pki(&s);
    let (mut gavel, port) = gavel_serve_with(
        &s,
        &[],
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    )
    .await;
    assert!(
        s.log_text()
            .contains(&format!("https://127.0.0.1:{port}/mcp"))
    );
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&ca_file).unwrap()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let url = format!("https://127.0.0.1:{port}/mcp");
    let client = TestHost::new()
        .serve(StreamableHttpClientTransport::with_client(
            http,
            rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
                url.clone(),
            ),
        ))
        .await
        .expect("HTTPS client initializes");
    let ok = call(&client, "echo", json!({"text": "over tls"}))
        .await
        .unwrap();
    assert_eq!(text(&ok), "over tls");
    let denied = call(&client, "destructive_delete", json!({"path": "/"}))
        .await
        .unwrap();
    assert_eq!(denied.is_error, Some(true));
    // Plain HTTP to the TLS port gets no MCP answer.
    let plain = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/mcp"))
        .body("{}")
        .send()
        .await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
    client.cancel().await.unwrap();
    unsafe { libc::kill(gavel.id().unwrap() as i32, libc::SIGTERM) };
    let status = gavel.wait().await.unwrap();
    assert!(status.success(), "graceful shutdown on SIGTERM: {status:?}");

    // A public address with TLS is allowed (no --behind-proxy needed); a
    // broken key is refused naming the file.
    let out = tokio::process::Command::new(GAVEL)
        .args(["serve", "--config"])
        .arg(s.config())
        .args(["--listen", "0.0.0.0:0", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&cert)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--tls-key") && err.contains("cert.pem"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn max_sessions_caps_new_sessions_until_one_closes() {
    let s = Setup::with(|s| fixture_server("fx", &[], &s.path("r.jsonl")));
    let (mut gavel, port) = gavel_serve_with(&s, &[], &["--max-sessions", "1"]).await;
    let url = format!("http://127.0.0.1:{port}/mcp");
    let a = TestHost::new()
        .serve(StreamableHttpClientTransport::from_uri(url.clone()))
        .await
        .expect("the first session fits");
    call(&a, "echo", json!({"text": "a"})).await.unwrap();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
    let r = raw_post(port, "127.0.0.1", None, &init).await;
    assert!(r.starts_with("HTTP/1.1 503"), "{r}");
    assert!(
        r.to_ascii_lowercase().contains("retry-after: 5") && r.contains("--max-sessions"),
        "{r}"
    );
    // gavel's own refusal code, outside the reserved JSON-RPC ranges.
    let body: Value = serde_json::from_str(r.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["error"]["code"], 503, "{body}");
    assert_eq!(body["error"]["data"]["retry_after_seconds"], 5, "{body}");
    // Only one upstream was ever started.
    let inits = records(&s.path("r.jsonl"))
        .iter()
        .filter(|r| r["method"] == "initialize")
        .count();
    assert_eq!(inits, 1);
    // The first session closes (DELETE): a new one fits again.
    a.cancel().await.unwrap();
    let start = std::time::Instant::now();
    let b = loop {
        match TestHost::new()
            .serve(StreamableHttpClientTransport::from_uri(url.clone()))
            .await
        {
            Ok(b) => break b,
            Err(e) => assert!(start.elapsed() < PATIENCE, "never admitted again: {e}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    call(&b, "echo", json!({"text": "b"})).await.unwrap();
    b.cancel().await.unwrap();
    unsafe { libc::kill(gavel.id().unwrap() as i32, libc::SIGTERM) };
    gavel.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
// resources/subscribe is legacy-only in rmcp, and exactly what this era forwards.
#[allow(deprecated)]
async fn a_shared_upstream_serves_every_session_and_routes_back_to_the_caller() {
    let s = Setup::with(|s| {
        let bundle = common::policy::fixture_bundle();
        format!(
            "[identity.user]\nid = \"ada\"\n\n[log]\ndecisions = {:?}\n\n{}bundle = {:?}\nsession_mode = \"shared\"\n",
            s.path("decisions.jsonl").display().to_string(),
            fixture_server("fx", &[], &s.path("r.jsonl")),
            bundle.display().to_string()
        )
    });
    let (mut gavel, port) = gavel_serve(&s, &[]).await;
    let [(a, seen_a), (b, seen_b)] = two_hosts(port).await;
    assert!(
        b.list_all_tools()
            .await
            .unwrap()
            .iter()
            .any(|t| t.name == "echo")
    );
    call(&a, "echo", json!({"text": "a"})).await.unwrap();
    call(&b, "echo", json!({"text": "b"})).await.unwrap();
    call(&b, "echo", json!({"text": "b2"})).await.unwrap();
    // One upstream for both sessions.
    let inits = records(&s.path("r.jsonl"))
        .iter()
        .filter(|r| r["method"] == "initialize")
        .count();
    assert_eq!(inits, 1, "shared: one upstream");
    // Counters stay per session: B's second call saw only B's first.
    let decided = s.decisions();
    assert_eq!(decided.last().unwrap()["input"]["context"]["turn_count"], 1);

    // An elicitation during A's call goes to A's host only.
    let r = call(&a, "elicit", json!({"message": "for a"}))
        .await
        .unwrap();
    assert!(text(&r).starts_with("action=accept"), "{}", text(&r));
    assert_eq!(seen_a.lock().unwrap().elicitations.len(), 1);
    assert_eq!(seen_b.lock().unwrap().elicitations.len(), 0);

    // While B has a call in flight too, gavel cannot tell whose it is: declined.
    let slow = {
        let peer = b.peer().clone();
        let mut p = rmcp::model::CallToolRequestParams::new("slow");
        p.arguments = json!({"ms": 3000}).as_object().cloned();
        tokio::spawn(async move { peer.call_tool(p).await })
    };
    eventually("B's slow call reached the upstream", || {
        records(&s.path("r.jsonl"))
            .iter()
            .any(|r| r["method"] == "tools/call" && r["params"]["name"] == "slow")
    })
    .await;
    let r = call(&a, "elicit", json!({"message": "ambiguous"}))
        .await
        .unwrap();
    assert!(text(&r).contains("cannot tell which user"), "{}", text(&r));
    assert_eq!(seen_b.lock().unwrap().elicitations.len(), 0);
    slow.await.unwrap().unwrap();

    // Subscriptions: both subscribe, A unsubscribes; an update reaches B
    // only — A leaving did not cut B off, and A gets nothing it dropped.
    let uri = "fixture://static/hello";
    a.subscribe(rmcp::model::SubscribeRequestParams::new(uri))
        .await
        .unwrap();
    b.subscribe(rmcp::model::SubscribeRequestParams::new(uri))
        .await
        .unwrap();
    a.unsubscribe(rmcp::model::UnsubscribeRequestParams::new(uri))
        .await
        .unwrap();
    let r = call(&b, "touch_resource", json!({"uri": uri}))
        .await
        .unwrap();
    assert!(text(&r).contains("subscribed=true"), "{}", text(&r));
    eventually("B hears the update", || {
        seen_b
            .lock()
            .unwrap()
            .resource_updated
            .iter()
            .any(|u| u == uri)
    })
    .await;
    assert!(seen_a.lock().unwrap().resource_updated.is_empty());
    let subs = records(&s.path("r.jsonl"))
        .iter()
        .filter(|r| r["method"] == "resources/subscribe")
        .count();
    assert_eq!(subs, 1, "the shared upstream was subscribed once");
    b.unsubscribe(rmcp::model::UnsubscribeRequestParams::new(uri))
        .await
        .unwrap();
    let r = call(&b, "touch_resource", json!({"uri": uri}))
        .await
        .unwrap();
    assert!(
        text(&r).contains("subscribed=false"),
        "the last one out unsubscribed upstream"
    );

    // A list change on the shared upstream reaches every session (counted
    // from here: an earlier list_changed, from the upstream's start, must
    // not satisfy the wait).
    let before = (
        seen_a.lock().unwrap().tool_list_changed,
        seen_b.lock().unwrap().tool_list_changed,
    );
    call(&a, "add_tool", json!({"name": "shared_tool"}))
        .await
        .unwrap();
    for (client, seen, since) in [(&a, &seen_a, before.0), (&b, &seen_b, before.1)] {
        until_announced_list(
            client,
            seen,
            since,
            "list_changed bringing shared_tool",
            |t| t.iter().any(|t| t.name == "shared_tool"),
        )
        .await;
    }

    a.cancel().await.unwrap();
    b.cancel().await.unwrap();
    unsafe { libc::kill(gavel.id().unwrap() as i32, libc::SIGTERM) };
    let status = gavel.wait().await.unwrap();
    assert!(status.success(), "{status:?}");
}

/// Over HTTP the result of a call is the last event of its POST's stream:
/// every progress notification the upstream sent before its result must be
/// in that stream before it. rmcp handles each notification on a task of its
/// own while a result goes straight to its caller, so when an upstream writes
/// its progress and its result in one go (the Python upstream here does it
/// in a single write) the result used to overtake the last progress, which
/// was then dropped — the conformance suite's `tools-call-with-progress`
/// failed now and then through `gavel serve`.
#[tokio::test(flavor = "multi_thread")]
async fn progress_in_one_write_reaches_the_host_before_the_result() {
    let s = Setup::with(|_| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixture/burst_upstream.py");
        format!(
            "[servers.burst]\ncommand = \"python3\"\nargs = [{:?}]\n",
            script.display().to_string()
        )
    });
    let (mut gavel, port) = gavel_serve(&s, &[]).await;
    let url = format!("http://127.0.0.1:{port}/mcp");
    let http = reqwest::Client::new();
    let post = |body: Value, session: Option<String>| {
        let mut r = http
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string());
        if let Some(id) = session {
            r = r.header("mcp-session-id", id);
        }
        r.send()
    };
    let init = post(
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}),
        None,
    )
    .await
    .unwrap();
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    init.text().await.unwrap();
    post(
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        Some(session.clone()),
    )
    .await
    .unwrap();
    for call in 1..=20 {
        let body = post(
            json!({"jsonrpc": "2.0", "id": call, "method": "tools/call", "params": {
                "name": "burst", "arguments": {}, "_meta": {"progressToken": format!("p{call}")}}}),
            Some(session.clone()),
        )
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
        let messages: Vec<Value> = body
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter(|d| !d.trim().is_empty())
            .map(|d| serde_json::from_str(d.trim()).unwrap())
            .collect();
        let last = messages.last().expect("an answer");
        assert_eq!(
            last["id"],
            json!(call),
            "the result ends the stream: {body}"
        );
        assert_eq!(last["result"]["content"][0]["text"], "done", "{body}");
        let steps: Vec<f64> = messages
            .iter()
            .filter(|m| m["method"] == "notifications/progress")
            .map(|m| {
                assert_eq!(m["params"]["progressToken"], format!("p{call}"), "{m}");
                m["params"]["progress"].as_f64().unwrap()
            })
            .collect();
        let all: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(
            steps, all,
            "call {call}: every step before the result, in order"
        );
    }
    gavel.kill().await.unwrap();
}

/// An upstream shared by two hosts that set different log levels: it is
/// set to the more verbose one, and each host gets only what is at or
/// above its own level (before: the upstream took the last host's level,
/// so one host's `error` silenced the other's `debug`, or flooded it).
#[tokio::test(flavor = "multi_thread")]
#[allow(deprecated)]
async fn a_shared_upstream_logs_to_each_host_at_its_own_level() {
    use rmcp::model::{LoggingLevel, SetLevelRequestParams};
    let s = Setup::with(|s| {
        format!(
            "[identity.user]\nid = \"ada\"\n\n{}bundle = {:?}\nsession_mode = \"shared\"\n",
            fixture_server("fx", &[], &s.path("r.jsonl")),
            common::policy::fixture_bundle().display().to_string()
        )
    });
    let (mut gavel, port) = gavel_serve(&s, &[]).await;
    let [(a, seen_a), (b, seen_b)] = two_hosts(port).await;
    a.set_level(SetLevelRequestParams::new(LoggingLevel::Debug))
        .await
        .unwrap();
    b.set_level(SetLevelRequestParams::new(LoggingLevel::Error))
        .await
        .unwrap();
    for (level, message) in [("debug", "a debug line"), ("error", "an error line")] {
        call(&a, "log", json!({"level": level, "message": message}))
            .await
            .unwrap();
    }
    let data = |seen: &std::sync::Arc<std::sync::Mutex<Seen>>| -> Vec<String> {
        seen.lock()
            .unwrap()
            .logs
            .iter()
            .map(|l| l["data"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    eventually("both hosts got the error line", || {
        data(&seen_a).contains(&"an error line".to_string())
            && data(&seen_b).contains(&"an error line".to_string())
    })
    .await;
    // The debug line reached the host that asked for debug, not the other.
    assert!(
        data(&seen_a).contains(&"a debug line".to_string()),
        "{:?}",
        data(&seen_a)
    );
    assert!(
        !data(&seen_b).contains(&"a debug line".to_string()),
        "{:?}",
        data(&seen_b)
    );
    a.cancel().await.unwrap();
    b.cancel().await.unwrap();
    gavel.kill().await.unwrap();
}

/// Two HTTP host sessions on the `gavel serve` at `port`, each with what
/// it has seen.
async fn two_hosts(port: u16) -> [(Client, std::sync::Arc<std::sync::Mutex<Seen>>); 2] {
    let url = format!("http://127.0.0.1:{port}/mcp");
    let mut out = Vec::new();
    for _ in 0..2 {
        let h = TestHost::new();
        let seen = h.seen.clone();
        let c = h
            .serve(StreamableHttpClientTransport::from_uri(url.clone()))
            .await
            .unwrap();
        out.push((c, seen));
    }
    out.try_into().unwrap_or_else(|_| unreachable!())
}
