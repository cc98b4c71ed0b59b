//! End to end: `[auth] jwks_url` — keys fetched at start, cached, refetched
//! for a rotated key, and an unknown `kid` refused without hammering the
//! issuer.

mod common;

use std::path::Path;

use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn now() -> u64 {
    unix_now()
}

async fn client(url: &str, bearer: &str) -> Client {
    http_client(url, None, Some(bearer)).await
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
