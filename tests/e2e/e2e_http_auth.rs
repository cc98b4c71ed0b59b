//! End to end: bearer-token identity on `gavel serve` — 401 with the
//! resource-metadata challenge, the metadata document, refused tokens (wrong
//! audience, issuer, expired, bad signature), the token's user reaching
//! policy, a session that cannot change hands, and the host's token never
//! reaching an (HTTP) upstream. What each user gets (own upstreams, own tool
//! list, own name in the log): e2e_http_users.rs. JWKS URLs: e2e_http_jwks.rs.

use crate::common;

use common::*;
use serde_json::{Value, json};

const SECRET: &str = JWT_SECRET;

fn token(claims: Value, secret: &str) -> String {
    hs256_token(claims, secret)
}

fn now() -> u64 {
    unix_now()
}

async fn raw(port: u16, request: &str) -> String {
    raw_request(port, request).await
}

async fn client(url: &str, bearer: &str) -> Client {
    http_client(url, None, Some(bearer)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_tokens_decide_who_is_asking() {
    let s = Setup::blank();
    // The upstream is the fixture over HTTP, so we can see which headers reach it.
    let (_fixture, upstream) = fixture_over_http("fx", &s.path("r.jsonl")).await;
    let port = free_port();
    let audience = format!("http://127.0.0.1:{port}/mcp");
    let bundle = common::policy::fixture_bundle();
    s.write_config(&format!(
        "{}\n[log]\ndecisions = {:?}\n\n[servers.fx]\nurl = {upstream:?}\nbundle = {:?}\n",
        hs256_auth(&audience),
        s.path("decisions.jsonl").display().to_string(),
        bundle.display().to_string()
    ));
    let mut gavel = gavel_serve_at(&s, port, &[("GAVEL_E2E_JWT_SECRET", SECRET)], &[]).await;

    // No token: 401 and where to find the authorization server.
    let r = post_init(port, None).await;
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    assert!(
        r.to_ascii_lowercase().contains(&format!(
            "www-authenticate: bearer resource_metadata=\"http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp\""
        )),
        "{r}"
    );
    let meta = raw(
        port,
        &format!("GET /.well-known/oauth-protected-resource HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    let body: Value = serde_json::from_str(meta.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["resource"], audience);
    // DNS rebinding: a foreign Host is refused (403) before any route
    // answers — no 401 challenge naming evil.example, no metadata, no
    // server/discover answer; a foreign browser Origin likewise.
    let discover =
        json!({"jsonrpc": "2.0", "id": 9, "method": "server/discover", "params": {}}).to_string();
    for (host, origin) in [
        ("evil.example", None),
        ("127.0.0.1", Some("https://evil.example")),
    ] {
        let origin = origin
            .map(|o| format!("Origin: {o}\r\n"))
            .unwrap_or_default();
        for request in [
            format!(
                "POST /mcp HTTP/1.1\r\nHost: {host}\r\n{origin}Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
            ),
            format!(
                "POST /mcp HTTP/1.1\r\nHost: {host}\r\n{origin}Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{discover}",
                discover.len()
            ),
            format!(
                "GET /mcp HTTP/1.1\r\nHost: {host}\r\n{origin}Accept: text/event-stream\r\nConnection: close\r\n\r\n"
            ),
            format!("DELETE /mcp HTTP/1.1\r\nHost: {host}\r\n{origin}Connection: close\r\n\r\n"),
            format!(
                "GET /.well-known/oauth-protected-resource HTTP/1.1\r\nHost: {host}\r\n{origin}Connection: close\r\n\r\n"
            ),
            format!(
                "GET /.well-known/oauth-protected-resource/mcp HTTP/1.1\r\nHost: {host}\r\n{origin}Connection: close\r\n\r\n"
            ),
        ] {
            let r = raw(port, &request).await;
            assert!(r.starts_with("HTTP/1.1 403"), "{request}\n→ {r}");
            assert!(!r.contains("evil.example/"), "{r}");
            assert!(!r.to_ascii_lowercase().contains("www-authenticate"), "{r}");
        }
    }
    assert_eq!(
        body["authorization_servers"],
        json!(["https://idp.example.test"])
    );

    // One token per user for the whole test, so the leak check below can
    // look for the exact values the host sent.
    let tokens: std::collections::BTreeMap<&str, String> = ["ada", "bob"]
        .into_iter()
        .map(|sub| {
            let t = token(
                json!({"iss": "https://idp.example.test", "aud": audience, "exp": now() + 600,
                       "sub": sub, "groups": ["engineering"], "azp": "agent-7"}),
                SECRET,
            );
            (sub, t)
        })
        .collect();
    let good = |sub: &str| tokens[sub].clone();
    for (bad, why) in [
        (
            token(
                json!({"iss": "https://idp.example.test", "aud": "https://elsewhere.test/mcp", "exp": now() + 600, "sub": "ada"}),
                SECRET,
            ),
            "wrong audience",
        ),
        (
            token(
                json!({"iss": "https://evil.test", "aud": audience, "exp": now() + 600, "sub": "ada"}),
                SECRET,
            ),
            "wrong issuer",
        ),
        (
            token(
                json!({"iss": "https://idp.example.test", "aud": audience, "exp": now() - 3600, "sub": "ada"}),
                SECRET,
            ),
            "expired",
        ),
        (
            token(
                json!({"iss": "https://idp.example.test", "aud": audience, "exp": now() + 600, "sub": "ada"}),
                "another-secret",
            ),
            "bad signature",
        ),
    ] {
        let r = post_init(port, Some(&bad)).await;
        assert!(r.starts_with("HTTP/1.1 401"), "{why}: {r}");
        assert!(r.contains("invalid_token"), "{why}: {r}");
    }

    // A valid token: its user reaches policy and the log. (The config names
    // no user, so without the token the fixture policy would refuse
    // `unknown-user`; its log rules erase the user id from the record.)
    let url = format!("http://127.0.0.1:{port}/mcp");
    let ada = client(&url, &good("ada")).await;
    let ok = call(&ada, "echo", json!({"text": "hi"})).await.unwrap();
    assert_eq!(text(&ok), "hi", "allowed: the policy saw the token's user");
    let decided = s.decisions();
    let last = decided.last().unwrap();
    assert_eq!(last["erased"], json!(["/input/user/id"]));
    assert_eq!(last["input"]["user"]["groups"], json!(["engineering"]));
    assert_eq!(last["input"]["agent"]["id"], "agent-7");

    // The host's token never reaches the upstream.
    let seen = records(&s.path("r.jsonl"));
    let header_sets: Vec<&Value> = seen.iter().filter_map(|r| r.get("http_headers")).collect();
    assert!(
        !header_sets.is_empty(),
        "the upstream recorded its requests' headers"
    );
    assert!(
        header_sets
            .iter()
            .all(|h| !h.to_string().to_ascii_lowercase().contains("authorization")),
        "{header_sets:?}"
    );

    // A session id is not a credential: bob's token on ada's session is refused.
    let r = post_init(port, Some(&good("ada"))).await;
    let sid = r
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("mcp-session-id")
                .then(|| v.trim().to_string())
        })
        .expect("a session id");
    let send = |bearer: String, body: Value| {
        let body = body.to_string();
        format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {bearer}\r\nMcp-Session-Id: {sid}\r\nMcp-Protocol-Version: 2025-06-18\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    raw(
        port,
        &send(
            good("ada"),
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        ),
    )
    .await;
    // Every message bob sends on it is refused, whatever its method —
    // requests, a notification, the GET stream, DELETE.
    let call_echo = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x"}}});
    for body in [
        call_echo.clone(),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {}}),
        json!({"jsonrpc": "2.0", "id": 4, "method": "resources/list", "params": {}}),
        json!({"jsonrpc": "2.0", "id": 5, "method": "prompts/list", "params": {}}),
        json!({"jsonrpc": "2.0", "id": 6, "method": "logging/setLevel", "params": {"level": "debug"}}),
        json!({"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}),
    ] {
        let r = raw(port, &send(good("bob"), body.clone())).await;
        assert!(
            r.starts_with("HTTP/1.1 403") && r.contains("another user or agent"),
            "{body}: {r}"
        );
    }
    let other_verb = |verb: &str, bearer: String| {
        format!(
            "{verb} /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {bearer}\r\nMcp-Session-Id: {sid}\r\nMcp-Protocol-Version: 2025-06-18\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n"
        )
    };
    for verb in ["GET", "DELETE"] {
        let r = raw(port, &other_verb(verb, good("bob"))).await;
        assert!(r.starts_with("HTTP/1.1 403"), "{verb}: {r}");
    }
    // Bob cannot cancel ada's call: she has one in flight (held by the
    // fixture until `gate` exists), bob sends notifications/cancelled for it.
    let gate = s.path("gate");
    let held = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "slow",
        "arguments": {"ms": 120_000, "until": gate.display().to_string()}}});
    let in_flight = tokio::spawn({
        let request = send(good("ada"), held);
        async move { raw(port, &request).await }
    });
    eventually("ada's call reached the upstream", || {
        recorded_calls(&s.path("r.jsonl"))
            .iter()
            .any(|r| r["params"]["name"] == "slow")
    })
    .await;
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7, "reason": "bob says so"}});
    let r = raw(port, &send(good("bob"), cancel)).await;
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    std::fs::write(&gate, "").unwrap();
    let r = in_flight.await.unwrap();
    assert!(
        r.contains("released by"),
        "ada's call was not cancelled: {r}"
    );
    assert!(
        !records(&s.path("r.jsonl"))
            .iter()
            .any(|r| r.get("cancelled").is_some() || r["notification"] == "notifications/cancelled"),
        "no cancellation reached the upstream"
    );
    // The owner may go on, and bob's DELETE did not close her session.
    let r = raw(port, &send(good("ada"), call_echo)).await;
    assert!(r.contains("\"text\":\"x\""), "the owner may go on: {r}");
    let r = raw(
        port,
        &send(
            good("ada"),
            json!({"jsonrpc": "2.0", "id": 8, "method": "tools/list", "params": {}}),
        ),
    )
    .await;
    assert!(r.contains("\"echo\""), "{r}");

    // No line the upstream recorded (requests, notifications, their
    // headers) holds a token the host sent, nor its signature alone.
    let upstream_saw = std::fs::read_to_string(s.path("r.jsonl")).unwrap();
    assert!(upstream_saw.lines().count() > 5, "{upstream_saw}");
    for t in tokens.values() {
        let signature = t.rsplit('.').next().unwrap();
        for line in upstream_saw.lines() {
            assert!(
                !line.contains(t.as_str()) && !line.contains(signature),
                "a host token reached the upstream: {line}"
            );
        }
    }

    ada.cancel().await.unwrap();
    unsafe { libc::kill(gavel.id().unwrap() as i32, libc::SIGTERM) };
    let _ = gavel.wait().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_challenge_names_the_configured_https_resource() {
    let s = Setup::blank();
    let port = free_port();
    // The URL hosts use; the Host gavel sees says nothing about the scheme.
    let audience = format!("https://127.0.0.1:{port}/mcp");
    s.write_config(&format!(
        "{}\n{}",
        hs256_auth(&audience),
        fixture_server("fx", &[], &s.path("r.jsonl")),
    ));
    let (cert, key, ca) = test_pki(&s);
    let mut gavel = gavel_serve_at(
        &s,
        port,
        &[("GAVEL_E2E_JWT_SECRET", SECRET)],
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    )
    .await;
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap())
        .build()
        .unwrap();
    let r = http
        .post(&audience)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    let metadata_url = format!("https://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp");
    assert_eq!(
        challenge,
        format!("Bearer resource_metadata=\"{metadata_url}\"")
    );
    // The document is where the challenge says, and names the resource.
    let meta: Value = http
        .get(&metadata_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["resource"], audience);
    // A token for it works over HTTPS.
    let t = token(
        json!({"iss": "https://idp.example.test", "aud": audience, "exp": now() + 600, "sub": "ada"}),
        SECRET,
    );
    let c = http_client(&audience, Some(&ca), Some(&t)).await;
    assert_eq!(
        text(&call(&c, "echo", json!({"text": "tls"})).await.unwrap()),
        "tls"
    );
    c.cancel().await.unwrap();
    unsafe { libc::kill(gavel.id().unwrap() as i32, libc::SIGTERM) };
    assert!(gavel.wait().await.unwrap().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_and_serve_in_stdio_mode_are_reported_not_silently_ignored() {
    let s = Setup::with(|s| {
        format!(
            "{}\n[serve]\nmax_sessions = 3\n\n[identity.user]\nid = \"ada\"\n\n{}",
            hs256_auth("https://gavel.example.test/mcp"),
            fixture_server("fx", &[], &s.path("r.jsonl"))
        )
    });
    let client = s.connect(TestHost::new()).await;
    call(&client, "echo", json!({"text": "x"})).await.unwrap();
    let log = s.log_text();
    assert!(
        log.contains("[auth] is ignored by gavel run") && log.contains("[identity.*]"),
        "{log}"
    );
    assert!(log.contains("[serve] applies to gavel serve only"), "{log}");
    client.cancel().await.unwrap();
}

/// The token is checked before the body is read: a caller without a token
/// gets 401 — not 413 for an oversized body, and not after gavel has waited
/// for (and buffered) a body it has not been sent yet.
#[tokio::test(flavor = "multi_thread")]
async fn a_tokenless_request_is_refused_before_its_body_is_read() {
    let s = Setup::blank();
    let port = free_port();
    let audience = format!("http://127.0.0.1:{port}/mcp");
    s.write_config(&format!(
        "{}\n[limits]\nmax_message_bytes = \"64KiB\"\n\n{}",
        hs256_auth(&audience),
        fixture_server("fx", &[], &s.path("r.jsonl"))
    ));
    let mut gavel = gavel_serve_at(&s, port, &[("GAVEL_E2E_JWT_SECRET", SECRET)], &[]).await;
    let head = |len: usize, auth: &str| {
        format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {len}\r\n\r\n{{\"jsonrpc\""
        )
    };
    // Over the size limit, only its first bytes sent: 401, not 413.
    let mut big = raw_partial(port, &head(1 << 20, "")).await;
    let r = response_head(&mut big).await;
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    // Under it, body not sent: answered at once all the same.
    let mut stalled = raw_partial(port, &head(1000, "Authorization: Bearer not-a-token\r\n")).await;
    let r = response_head(&mut stalled).await;
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    assert!(records(&s.path("r.jsonl")).is_empty());
    gavel.kill().await.unwrap();
}
