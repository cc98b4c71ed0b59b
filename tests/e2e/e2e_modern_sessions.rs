//! End to end: the per-principal sessions `gavel serve` keeps for MCP
//! 2026-07-28 callers are bounded like legacy sessions — an idle caller is
//! forgotten (its upstreams stop) and comes back on its next request, and
//! one user cannot hold more than `max_sessions_per_user` agents at once.

use crate::common;
use crate::e2e_host_era::http;

use common::*;
use serde_json::{Value, json};

fn modern_call(id: u64, text: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": text},
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {}}}})
}

async fn post(url: &str, body: &Value, bearer: Option<&str>) -> (u16, String) {
    let auth = bearer.map(|b| format!("Bearer {b}"));
    let mut headers = vec![
        ("MCP-Protocol-Version", "2026-07-28"),
        ("Mcp-Method", "tools/call"),
        ("Mcp-Name", "echo"),
    ];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    http(url, "POST", &headers, Some(body)).await
}

fn running(marker: &str) -> bool {
    std::process::Command::new("pgrep")
        .args(["-f", marker])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_modern_caller_is_forgotten_and_served_again() {
    let s = Setup::blank();
    let marker = format!("modern-idle-{}", std::process::id());
    s.write_config(&format!(
        "[serve]\nsession_idle_timeout = \"1s\"\n\n{}",
        fixture_server(&marker, &[], &s.path("r.jsonl"))
    ));
    let (mut gavel, port) = gavel_serve(&s, &[]).await;
    let url = format!("http://127.0.0.1:{port}/mcp");
    let (status, r) = post(&url, &modern_call(1, "first"), None).await;
    assert_eq!(status, 200, "{r}");
    assert!(r.contains("first"), "{r}");
    assert!(running(&marker), "the caller's upstream runs");
    eventually("the idle caller's upstream stopped", || !running(&marker)).await;
    eventually("the forgetting is logged", || {
        std::fs::read_to_string(s.log())
            .unwrap_or_default()
            .contains("2026-07-28 caller forgotten after no request for its idle timeout")
    })
    .await;
    // The caller is served again, on a fresh session.
    let (status, r) = post(&url, &modern_call(2, "again"), None).await;
    assert_eq!(status, 200, "{r}");
    assert!(r.contains("again"), "{r}");
    assert!(running(&marker));
    gavel.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn one_user_holds_at_most_max_sessions_per_user_agents() {
    let s = Setup::blank();
    let port = free_port();
    let audience = format!("http://127.0.0.1:{port}/mcp");
    s.write_config(&format!(
        "[serve]\nmax_sessions_per_user = 2\n\n{}\n{}bundle = {:?}\n",
        hs256_auth(&audience),
        fixture_server("fx", &[], &s.path("r.jsonl")),
        common::policy::fixture_bundle().display().to_string()
    ));
    let mut gavel = gavel_serve_at(&s, port, &[("GAVEL_E2E_JWT_SECRET", JWT_SECRET)], &[]).await;
    let token = |sub: &str, azp: &str| {
        hs256_token(
            json!({"iss": "https://idp.example.test", "aud": audience,
                "exp": unix_now() + 600, "sub": sub, "azp": azp}),
            JWT_SECRET,
        )
    };
    for (i, agent) in ["a1", "a2"].into_iter().enumerate() {
        let (status, r) = post(
            &audience,
            &modern_call(i as u64, agent),
            Some(&token("ada", agent)),
        )
        .await;
        assert_eq!(status, 200, "{agent}: {r}");
    }
    // A third agent of the same user is refused, naming the key; the two
    // admitted keep being served, and another user is not affected.
    let (_, r) = post(&audience, &modern_call(9, "a3"), Some(&token("ada", "a3"))).await;
    assert!(r.contains("max_sessions_per_user"), "{r}");
    assert!(!r.contains("\"text\":\"a3\""), "{r}");
    let (status, r) = post(
        &audience,
        &modern_call(10, "again"),
        Some(&token("ada", "a1")),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert!(r.contains("again"), "{r}");
    let (status, r) = post(
        &audience,
        &modern_call(11, "bob"),
        Some(&token("bob", "a3")),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert!(r.contains("bob"), "{r}");
    gavel.kill().await.unwrap();
}
