//! End to end: bearer-token identity on `gavel serve` — 401 with the
//! resource-metadata challenge, the metadata document, refused tokens (wrong
//! audience, issuer, expired, bad signature), the token's user reaching
//! policy and the decision log, a session that cannot change hands, and the
//! host's token never reaching an (HTTP) upstream.

mod common;

use std::path::Path;

use common::*;
use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "e2e-secret-for-hs256-tokens-only";

fn token(claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn raw(port: u16, request: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

async fn post_init(port: u16, bearer: Option<&str>) -> String {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}})
    .to_string();
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    raw(
        port,
        &format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await
}

async fn client(url: &str, bearer: &str) -> Client {
    let t = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.to_string())
            .auth_header(bearer.to_string()),
    );
    TestHost::new()
        .serve(t)
        .await
        .expect("authorized client initializes")
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_tokens_decide_who_is_asking() {
    let s = Setup::new("");
    // The upstream is the fixture over HTTP, so we can see which headers reach it.
    let (_fixture, upstream) = fixture_over_http("fx", &s.path("r.jsonl")).await;
    let port = free_port();
    let audience = format!("http://127.0.0.1:{port}/mcp");
    let bundle = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bundles/fixture");
    std::fs::write(
        s.config(),
        format!(
            "[auth]\nissuer = \"https://idp.example.test\"\naudience = {audience:?}\nalgorithm = \"HS256\"\nkey_env = \"GAVEL_E2E_JWT_SECRET\"\n\n[log]\ndecisions = {:?}\n\n[servers.fx]\nurl = {upstream:?}\nbundle = {:?}\n",
            s.path("decisions.jsonl").display().to_string(),
            bundle.display().to_string()
        ),
    )
    .unwrap();
    let mut gavel = gavel_serve(&s, port, &[("GAVEL_E2E_JWT_SECRET", SECRET)]).await;

    // No token: 401 and where to find the authorization server.
    let r = post_init(port, None).await;
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    assert!(
        r.to_ascii_lowercase().contains(&format!(
            "www-authenticate: bearer resource_metadata=\"http://127.0.0.1:{port}/.well-known/oauth-protected-resource\""
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
    assert_eq!(
        body["authorization_servers"],
        json!(["https://idp.example.test"])
    );

    let good = |sub: &str| {
        token(
            json!({"iss": "https://idp.example.test", "aud": audience, "exp": now() + 600,
                   "sub": sub, "groups": ["engineering"], "azp": "agent-7"}),
            SECRET,
        )
    };
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
    let records: Vec<Value> = std::fs::read_to_string(s.path("decisions.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let last = records.last().unwrap();
    assert_eq!(last["erased"], json!(["/input/user/id"]));
    assert_eq!(last["input"]["user"]["groups"], json!(["engineering"]));
    assert_eq!(last["input"]["agent"]["id"], "agent-7");

    // The host's token never reaches the upstream.
    let seen = recorded(&s.path("r.jsonl"));
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
    let call_echo = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x"}}});
    let r = raw(port, &send(good("bob"), call_echo.clone())).await;
    assert!(r.contains("another user or agent"), "{r}");
    let r = raw(port, &send(good("ada"), call_echo)).await;
    assert!(r.contains("\"text\":\"x\""), "the owner may go on: {r}");

    ada.cancel().await.unwrap();
    unsafe { libc::kill(gavel.id().unwrap() as i32, libc::SIGTERM) };
    let _ = gavel.wait().await;
}

fn token_kid(claims: Value, secret: &str, kid: &str) -> String {
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    h.kid = Some(kid.to_string());
    jsonwebtoken::encode(
        &h,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn jwks(keys: &[(&str, &str)]) -> String {
    use base64::Engine;
    let keys: Vec<Value> = keys
        .iter()
        .map(|(kid, secret)| {
            json!({"kty": "oct", "kid": kid, "alg": "HS256",
                   "k": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)})
        })
        .collect();
    json!({ "keys": keys }).to_string()
}

/// A tiny JWKS endpoint serving whatever `doc` holds now; counts fetches.
async fn jwks_server(
    doc: std::sync::Arc<std::sync::Mutex<String>>,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = l.accept().await else {
                return;
            };
            let body = doc.lock().unwrap().clone();
            hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = sock.read(&mut buf).await;
                let _ = sock
                    .write_all(format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes())
                    .await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn jwks_url_keys_are_fetched_cached_and_rotated() {
    let s = Setup::new("");
    let doc = std::sync::Arc::new(std::sync::Mutex::new(jwks(&[("k1", "first-jwks-secret")])));
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let jport = jwks_server(doc.clone(), hits.clone()).await;
    let port = free_port();
    let audience = format!("http://127.0.0.1:{port}/mcp");
    let bundle = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bundles/fixture");
    std::fs::write(
        s.config(),
        format!(
            "[auth]\nissuer = \"https://idp.example.test\"\naudience = {audience:?}\nalgorithm = \"HS256\"\njwks_url = \"http://127.0.0.1:{jport}/jwks.json\"\njwks_refresh = \"1h\"\n\n{}bundle = {:?}\n",
            fixture_server("fx", &[], &s.path("r.jsonl")),
            bundle.display().to_string()
        ),
    )
    .unwrap();
    let mut gavel = gavel_serve(&s, port, &[]).await;
    let claims = |sub: &str| json!({"iss": "https://idp.example.test", "aud": audience, "exp": now() + 600, "sub": sub});
    // A k1 token works; fetching happened once at start, and verifying more
    // tokens does not refetch (cached).
    let c = client(
        &audience,
        &token_kid(claims("ada"), "first-jwks-secret", "k1"),
    )
    .await;
    call(&c, "echo", json!({"text": "hi"})).await.unwrap();
    let after_first = hits.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(after_first, 1, "fetched once at start");
    assert!(
        post_init(
            port,
            Some(&token_kid(claims("ada"), "first-jwks-secret", "k1"))
        )
        .await
        .starts_with("HTTP/1.1 200")
    );
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1, "cached");
    // The issuer rotates to k2: a k2 token makes gavel refetch, then it works.
    *doc.lock().unwrap() = jwks(&[("k2", "second-jwks-secret")]);
    let r = post_init(
        port,
        Some(&token_kid(claims("bob"), "second-jwks-secret", "k2")),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "refetched for the new kid"
    );
    // An unknown kid right after is refused without hammering the issuer.
    let r = post_init(port, Some(&token_kid(claims("eve"), "whatever", "k9"))).await;
    assert!(
        r.starts_with("HTTP/1.1 401") && r.contains("no key matches"),
        "{r}"
    );
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "rate-limited refetch"
    );
    c.cancel().await.unwrap();
    unsafe { libc::kill(gavel.id().unwrap() as i32, libc::SIGTERM) };
    gavel.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn per_session_upstreams_do_not_leak_between_users() {
    let s = Setup::new("");
    let port = free_port();
    let audience = format!("http://127.0.0.1:{port}/mcp");
    let bundle = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bundles/fixture");
    std::fs::write(
        s.config(),
        format!(
            "[auth]\nissuer = \"https://idp.example.test\"\naudience = {audience:?}\nalgorithm = \"HS256\"\nkey_env = \"GAVEL_E2E_JWT_SECRET\"\n\n[log]\ndecisions = {:?}\n\n{}bundle = {:?}\n",
            s.path("decisions.jsonl").display().to_string(),
            fixture_server("fx", &[], &s.path("r.jsonl")),
            bundle.display().to_string()
        ),
    )
    .unwrap();
    let mut gavel = gavel_serve(&s, port, &[("GAVEL_E2E_JWT_SECRET", SECRET)]).await;
    let claims = |sub: &str| json!({"iss": "https://idp.example.test", "aud": audience, "exp": now() + 600, "sub": sub});
    let ada = client(&audience, &token(claims("ada"), SECRET)).await;
    let bob = client(&audience, &token(claims("bob"), SECRET)).await;
    // Ada adds a tool on her upstream (the fixture's dynamic tools); Bob's
    // upstream, a different process, never sees it.
    let before_bob: Vec<String> = bob
        .list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    call(&ada, "add_tool", json!({"name": "adas_secret_tool"}))
        .await
        .unwrap();
    let start = std::time::Instant::now();
    loop {
        let ada_tools: Vec<String> = ada
            .list_all_tools()
            .await
            .unwrap()
            .iter()
            .map(|t| t.name.to_string())
            .collect();
        if ada_tools.contains(&"adas_secret_tool".to_string()) {
            break;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "ada never saw her tool: {ada_tools:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let bob_tools: Vec<String> = bob
        .list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(bob_tools, before_bob, "bob's upstream is not ada's");
    // Counters are per session and user: each decision names its own user
    // and counts only its own calls.
    call(&ada, "echo", json!({"text": "a"})).await.unwrap();
    call(&bob, "echo", json!({"text": "b"})).await.unwrap();
    let records: Vec<Value> = std::fs::read_to_string(s.path("decisions.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // (The fixture bundle's log rules erase user ids: group by session.)
    let mut by_session: std::collections::BTreeMap<String, Vec<&Value>> = Default::default();
    for r in &records {
        by_session
            .entry(
                r["input"]["context"]["session_id"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
            .or_default()
            .push(r);
    }
    assert_eq!(by_session.len(), 2, "one session per user");
    let mut sizes: Vec<(usize, u64)> = by_session
        .values()
        .map(|v| {
            (
                v.len(),
                v.last().unwrap()["input"]["context"]["turn_count"]
                    .as_u64()
                    .unwrap(),
            )
        })
        .collect();
    sizes.sort();
    // Bob: one call, which saw no earlier call; Ada: two calls, the second
    // saw only her first.
    assert_eq!(sizes, vec![(1, 0), (2, 1)]);
    ada.cancel().await.unwrap();
    bob.cancel().await.unwrap();
    unsafe { libc::kill(gavel.id().unwrap() as i32, libc::SIGTERM) };
    gavel.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn visible_lists_tools_per_token_user() {
    let s = Setup::new("");
    let port = free_port();
    let audience = format!("http://127.0.0.1:{port}/mcp");
    let b = common::policy::bundle(
        s.dir.path(),
        "vis",
        "vis",
        json!({}),
        "package vis\ndecision := {\"allow\": true}\ndefault visible := true\nvisible := false if {\n\tinput.action.tool == \"destructive_delete\"\n\tnot \"admins\" in input.user.groups\n}\n",
    );
    std::fs::write(
        s.config(),
        format!(
            "[auth]\nissuer = \"https://idp.example.test\"\naudience = {audience:?}\nalgorithm = \"HS256\"\nkey_env = \"GAVEL_E2E_JWT_SECRET\"\n\n{}bundle = {:?}\n",
            fixture_server("fx", &[], &s.path("r.jsonl")),
            b.display().to_string()
        ),
    )
    .unwrap();
    let mut gavel = gavel_serve(&s, port, &[("GAVEL_E2E_JWT_SECRET", SECRET)]).await;
    let as_user = |sub: &str, groups: &[&str]| {
        token(
            json!({"iss": "https://idp.example.test", "aud": audience, "exp": now() + 600,
                   "sub": sub, "groups": groups}),
            SECRET,
        )
    };
    let url = format!("http://127.0.0.1:{port}/mcp");
    let admin = client(&url, &as_user("ada", &["admins"])).await;
    let staff = client(&url, &as_user("bob", &["staff"])).await;
    let names = |tools: Vec<rmcp::model::Tool>| -> Vec<String> {
        tools.into_iter().map(|t| t.name.to_string()).collect()
    };
    let a = names(admin.list_all_tools().await.unwrap());
    let b = names(staff.list_all_tools().await.unwrap());
    assert!(a.contains(&"destructive_delete".to_string()), "{a:?}");
    assert!(!b.contains(&"destructive_delete".to_string()), "{b:?}");
    assert!(b.contains(&"echo".to_string()), "{b:?}");
    admin.cancel().await.unwrap();
    staff.cancel().await.unwrap();
    gavel.kill().await.unwrap();
}
