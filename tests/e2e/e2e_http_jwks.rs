//! End to end: `[auth] jwks_url` — keys fetched at start, cached, refetched
//! for a rotated key, and an unknown `kid` refused without hammering the
//! issuer.

use crate::common;

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

/// What the JWKS endpoint answers: a status and a body; status 0 closes the
/// connection without answering.
type Reply = std::sync::Arc<std::sync::Mutex<(u16, String)>>;

fn ok(body: String) -> (u16, String) {
    (200, body)
}

/// A tiny JWKS endpoint answering whatever `reply` holds now; counts fetches
/// (counted once the answer is chosen, so the (n+2)-th fetch after a change
/// surely gets the new answer).
async fn jwks_server(reply: Reply, hits: std::sync::Arc<std::sync::atomic::AtomicUsize>) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = l.accept().await else {
                return;
            };
            let (status, body) = reply.lock().unwrap().clone();
            hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = sock.read(&mut buf).await;
                if status == 0 {
                    return; // dropped: the connection closes unanswered
                }
                let _ = sock
                    .write_all(format!("HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes())
                    .await;
            });
        }
    });
    port
}

/// servers.toml: the fixture server with its bundle, tokens checked against
/// the JWKS at `http://127.0.0.1:{jport}/jwks.json`, refetched every
/// `refresh`.
fn jwks_config(s: &Setup, audience: &str, jport: u16, refresh: &str) {
    let bundle = common::policy::fixture_bundle();
    s.write_config(&format!(
            "[auth]\nissuer = \"https://idp.example.test\"\naudience = {audience:?}\nalgorithm = \"HS256\"\njwks_url = \"http://127.0.0.1:{jport}/jwks.json\"\njwks_refresh = {refresh:?}\n\n{}bundle = {:?}\n",
            fixture_server("fx", &[], &s.path("r.jsonl")),
            bundle.display().to_string()
        ));
}

#[tokio::test(flavor = "multi_thread")]
async fn jwks_url_keys_are_fetched_cached_and_rotated() {
    let s = Setup::blank();
    let doc: Reply = std::sync::Arc::new(std::sync::Mutex::new(ok(jwks(&[(
        "k1",
        "first-jwks-secret-padded-to-32-bytes",
    )]))));
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let jport = jwks_server(doc.clone(), hits.clone()).await;
    let port = free_port();
    let audience = format!("http://127.0.0.1:{port}/mcp");
    jwks_config(&s, &audience, jport, "1h");
    let mut gavel = gavel_serve_at(&s, port, &[], &[]).await;
    let claims = |sub: &str| json!({"iss": "https://idp.example.test", "aud": audience, "exp": now() + 600, "sub": sub});
    // A k1 token works; fetching happened once at start, and verifying more
    // tokens does not refetch (cached).
    let c = client(
        &audience,
        &token_kid(claims("ada"), "first-jwks-secret-padded-to-32-bytes", "k1"),
    )
    .await;
    call(&c, "echo", json!({"text": "hi"})).await.unwrap();
    let after_first = hits.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(after_first, 1, "fetched once at start");
    assert!(
        post_init(
            port,
            Some(&token_kid(
                claims("ada"),
                "first-jwks-secret-padded-to-32-bytes",
                "k1"
            ))
        )
        .await
        .starts_with("HTTP/1.1 200")
    );
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1, "cached");
    // The issuer rotates to k2: a k2 token makes gavel refetch, then it works.
    *doc.lock().unwrap() = ok(jwks(&[("k2", "second-jwks-secret-padded-to-32-bytes")]));
    let r = post_init(
        port,
        Some(&token_kid(
            claims("bob"),
            "second-jwks-secret-padded-to-32-bytes",
            "k2",
        )),
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

const KEY_A: &str = "secret-of-jwks-key-a-padded-to-32-bytes";
const KEY_B: &str = "secret-of-jwks-key-b-padded-to-32-bytes";

/// `gavel serve` with `jwks_url` on a [`jwks_server`] answering `first`,
/// refetching every `refresh`.
struct Served {
    s: Setup,
    reply: Reply,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    port: u16,
    audience: String,
    gavel: tokio::process::Child,
}

impl Served {
    async fn start(first: (u16, String), refresh: &str) -> Self {
        let s = Setup::blank();
        let reply: Reply = std::sync::Arc::new(std::sync::Mutex::new(first));
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let jport = jwks_server(reply.clone(), hits.clone()).await;
        let port = free_port();
        let audience = format!("http://127.0.0.1:{port}/mcp");
        jwks_config(&s, &audience, jport, refresh);
        let gavel = gavel_serve_at(&s, port, &[], &[]).await;
        Served {
            s,
            reply,
            hits,
            port,
            audience,
            gavel,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Switches what the endpoint answers and waits until it has answered
    /// that at least once (two fetches counted after the switch).
    async fn answer(&self, reply: (u16, String)) {
        *self.reply.lock().unwrap() = reply;
        let h = self.hits();
        eventually("two more JWKS fetches", || self.hits() >= h + 2).await;
    }

    /// A token for `sub` signed with `secret`, carrying `kid`.
    fn token(&self, secret: &str, kid: &str) -> String {
        let claims = json!({"iss": "https://idp.example.test", "aud": self.audience,
                            "exp": now() + 600, "sub": "ada"});
        token_kid(claims, secret, kid)
    }

    async fn init(&self, secret: &str, kid: &str) -> String {
        post_init(self.port, Some(&self.token(secret, kid))).await
    }

    /// Presents the token until it is accepted (bounded by PATIENCE): the
    /// fetch counted may still be on its way into gavel.
    async fn until_accepted(&self, secret: &str, kid: &str) {
        let start = std::time::Instant::now();
        loop {
            let r = self.init(secret, kid).await;
            if r.starts_with("HTTP/1.1 200") {
                return;
            }
            assert!(start.elapsed() < PATIENCE, "never accepted: {r}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// The lines of gavel's log containing all of `needles`.
    fn log_lines(&self, needles: &[&str]) -> usize {
        std::fs::read_to_string(self.s.log())
            .unwrap_or_default()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count()
    }

    async fn stop(mut self) {
        unsafe { libc::kill(self.gavel.id().unwrap() as i32, libc::SIGTERM) };
        self.gavel.wait().await.unwrap();
    }
}

/// 401 because the token's signature is wrong for the key its kid names
/// (not an unknown kid, which would make gavel refetch).
fn bad_signature(r: &str) -> bool {
    r.starts_with("HTTP/1.1 401") && r.contains("InvalidSignature") && !r.contains("no key matches")
}

#[tokio::test(flavor = "multi_thread")]
async fn jwks_refresh_refetches_on_its_own_and_picks_up_a_rotation() {
    let g = Served::start(ok(jwks(&[("k1", KEY_A)])), "1s").await;
    // No token at all yet: the count rises by the timer alone.
    let h0 = g.hits();
    assert!(h0 >= 1, "fetched at start");
    eventually("timed JWKS refetches", || g.hits() >= h0 + 2).await;
    let r = g.init(KEY_A, "k1").await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    // A and B share the kid: a B token is a bad signature, never an unknown
    // kid, so nothing but the timed refresh can make gavel learn B.
    let r = g.init(KEY_B, "k1").await;
    assert!(bad_signature(&r), "{r}");
    // The issuer rotates A out for B (same kid).
    g.answer(ok(jwks(&[("k1", KEY_B)]))).await;
    g.until_accepted(KEY_B, "k1").await;
    let r = g.init(KEY_A, "k1").await;
    assert!(bad_signature(&r), "A is gone after the timed refresh: {r}");
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_jwks_refresh_keeps_the_current_keys_then_recovers() {
    let g = Served::start(ok(jwks(&[("k1", KEY_A)])), "1s").await;
    let r = g.init(KEY_A, "k1").await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let failed = "JWKS fetch failed (current keys kept)";
    for (reply, why) in [
        ((500, "oops".to_string()), "HTTP 500"),
        (ok("<html>not json</html>".into()), "not a JWKS document"),
        (ok(r#"{"keys": []}"#.into()), "no keys"),
        ((0, String::new()), "error sending request"),
    ] {
        let before = g.log_lines(&[failed, why]);
        g.answer(reply).await;
        eventually(&format!("the log names the failed refresh ({why})"), || {
            g.log_lines(&[failed, why]) > before
        })
        .await;
        // The failure is logged after it is recorded: A still works.
        let r = g.init(KEY_A, "k1").await;
        assert!(r.starts_with("HTTP/1.1 200"), "A kept after {why}: {r}");
        // An unknown kid meanwhile is refused naming the failing endpoint.
        let r = g.init(KEY_B, "k9").await;
        assert!(
            r.starts_with("HTTP/1.1 401") && r.contains("could not be fetched"),
            "{why}: {r}"
        );
    }
    // The endpoint is good again, now with B (same kid): the timed refresh
    // recovers, A goes, and the failure is no longer named.
    let fetched = g.log_lines(&["JWKS fetched"]);
    g.answer(ok(jwks(&[("k1", KEY_B)]))).await;
    g.until_accepted(KEY_B, "k1").await;
    assert!(g.log_lines(&["JWKS fetched"]) > fetched);
    let r = g.init(KEY_A, "k1").await;
    assert!(bad_signature(&r), "{r}");
    let r = g.init(KEY_B, "k9").await;
    assert!(
        r.starts_with("HTTP/1.1 401")
            && r.contains("no key matches")
            && !r.contains("could not be fetched"),
        "{r}"
    );
    g.stop().await;
}

/// A JWKS endpoint that redirects to plain http on another host: the
/// redirect is not followed (keys never arrive over plain http from
/// elsewhere), the log says why, and tokens are refused for want of keys.
#[tokio::test(flavor = "multi_thread")]
async fn a_jwks_redirect_to_plain_http_elsewhere_is_not_followed() {
    let s = Setup::blank();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jport = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = sock.read(&mut buf).await;
                let _ = sock
                    .write_all(b"HTTP/1.1 302 Found\r\nLocation: http://203.0.113.9/jwks.json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    let port = free_port();
    let audience = format!("http://127.0.0.1:{port}/mcp");
    jwks_config(&s, &audience, jport, "10m");
    let mut gavel = gavel_serve_at(&s, port, &[], &[]).await;
    let claims = json!({"iss": "https://idp.example.test", "aud": audience, "exp": now() + 600, "sub": "ada"});
    let answer = post_init(port, Some(&token_kid(claims, "any-secret", "k1"))).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("could not be fetched"), "{answer}");
    eventually("the refused redirect is logged", || {
        s.log_text()
            .contains("redirected to http://203.0.113.9/jwks.json: keys must come over https://")
    })
    .await;
    gavel.kill().await.unwrap();
}
