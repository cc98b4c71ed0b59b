//! End to end: what each bearer-token user of `gavel serve` gets — per-session
//! upstreams that do not leak state between users, the tool list the policy
//! shows that user, and the user's name in the decision log. Token checks
//! themselves: e2e_http_auth.rs.

use crate::common;

use std::path::Path;

use common::*;
use serde_json::{Value, json};

async fn client(url: &str, bearer: &str) -> Client {
    http_client(url, None, Some(bearer)).await
}

/// `gavel serve` on a free port taking HS256 tokens for its own URL, with
/// `tables` (TOML) and the fixture server decided by `bundle`, decisions
/// logged to `decisions.jsonl`: its port, audience and process.
async fn serve_for_tokens(
    s: &Setup,
    tables: &str,
    bundle: &Path,
) -> (u16, String, tokio::process::Child) {
    let port = free_port();
    let audience = format!("http://127.0.0.1:{port}/mcp");
    s.write_config(&format!(
        "{}\n{tables}[log]\ndecisions = {:?}\n\n{}bundle = {:?}\n",
        hs256_auth(&audience),
        s.path("decisions.jsonl").display().to_string(),
        fixture_server("fx", &[], &s.path("r.jsonl")),
        bundle.display().to_string()
    ));
    let gavel = gavel_serve_at(s, port, &[("GAVEL_E2E_JWT_SECRET", JWT_SECRET)], &[]).await;
    (port, audience, gavel)
}

#[tokio::test(flavor = "multi_thread")]
async fn per_session_upstreams_do_not_leak_between_users() {
    let s = Setup::blank();
    let bundle = common::policy::fixture_bundle();
    let (_port, audience, mut gavel) = serve_for_tokens(&s, "", &bundle).await;
    let claims = |sub: &str| json!({"iss": "https://idp.example.test", "aud": audience, "exp": unix_now() + 600, "sub": sub});
    let ada = client(&audience, &hs256_token(claims("ada"), JWT_SECRET)).await;
    let bob = client(&audience, &hs256_token(claims("bob"), JWT_SECRET)).await;
    // Ada adds a tool on her upstream (the fixture's dynamic tools); Bob's
    // upstream, a different process, never sees it.
    let before_bob = tool_names(&bob).await;
    call(&ada, "add_tool", json!({"name": "adas_secret_tool"}))
        .await
        .unwrap();
    let start = std::time::Instant::now();
    loop {
        let ada_tools = tool_names(&ada).await;
        if ada_tools.contains(&"adas_secret_tool".to_string()) {
            break;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "ada never saw her tool: {ada_tools:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let bob_tools = tool_names(&bob).await;
    assert_eq!(bob_tools, before_bob, "bob's upstream is not ada's");
    // Counters are per session and user: each decision names its own user
    // and counts only its own calls.
    call(&ada, "echo", json!({"text": "a"})).await.unwrap();
    call(&bob, "echo", json!({"text": "b"})).await.unwrap();
    let decided = s.decisions();
    // (The fixture bundle's log rules erase user ids: group by session.)
    let mut by_session: std::collections::BTreeMap<String, Vec<&Value>> = Default::default();
    for r in &decided {
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
async fn the_decision_log_records_who_asked() {
    let s = Setup::blank();
    // A bundle with no log rules: nothing is erased from the records.
    let bundle = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bundles/allow-all");
    let (_port, audience, mut gavel) =
        serve_for_tokens(&s, "[identity.user]\nid = \"configured-user\"\n\n", &bundle).await;
    let t = |sub: &str, groups: Value, azp: &str| {
        hs256_token(
            json!({"iss": "https://idp.example.test", "aud": audience, "exp": unix_now() + 600,
                   "sub": sub, "groups": groups, "azp": azp}),
            JWT_SECRET,
        )
    };
    let ada = client(&audience, &t("ada", json!(["engineering"]), "agent-ada")).await;
    // Groups as a space-separated string (the OAuth `scope` style) count too.
    let bob = client(&audience, &t("bob", json!("finance audit"), "agent-bob")).await;
    call(&ada, "echo", json!({"text": "a1"})).await.unwrap();
    call(&bob, "echo", json!({"text": "b1"})).await.unwrap();
    call(&ada, "echo", json!({"text": "a2"})).await.unwrap();
    let decided = s.decisions();
    let who: Vec<(Value, Value, Value, Value)> = decided
        .iter()
        .map(|r| {
            assert!(r.get("erased").is_none_or(|e| e == &json!([])), "{r}");
            let i = &r["input"];
            (
                i["user"]["id"].clone(),
                i["agent"]["id"].clone(),
                i["user"]["groups"].clone(),
                i["action"]["args"]["text"].clone(),
            )
        })
        .collect();
    assert_eq!(
        who,
        vec![
            (
                json!("ada"),
                json!("agent-ada"),
                json!(["engineering"]),
                json!("a1")
            ),
            (
                json!("bob"),
                json!("agent-bob"),
                json!(["finance", "audit"]),
                json!("b1")
            ),
            (
                json!("ada"),
                json!("agent-ada"),
                json!(["engineering"]),
                json!("a2")
            ),
        ]
    );
    ada.cancel().await.unwrap();
    bob.cancel().await.unwrap();
    unsafe { libc::kill(gavel.id().unwrap() as i32, libc::SIGTERM) };
    assert!(gavel.wait().await.unwrap().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn visible_lists_tools_per_token_user() {
    let s = Setup::blank();
    let b = common::policy::bundle(
        s.dir.path(),
        "vis",
        "vis",
        json!({}),
        "package vis\ndecision := {\"allow\": true}\ndefault visible := true\nvisible := false if {\n\tinput.action.tool == \"destructive_delete\"\n\tnot \"admins\" in input.user.groups\n}\n",
    );
    let (port, audience, mut gavel) = serve_for_tokens(&s, "", &b).await;
    let as_user = |sub: &str, groups: &[&str]| {
        hs256_token(
            json!({"iss": "https://idp.example.test", "aud": audience, "exp": unix_now() + 600,
                   "sub": sub, "groups": groups}),
            JWT_SECRET,
        )
    };
    let url = format!("http://127.0.0.1:{port}/mcp");
    let admin = client(&url, &as_user("ada", &["admins"])).await;
    let staff = client(&url, &as_user("bob", &["staff"])).await;
    let a = tool_names(&admin).await;
    let b = tool_names(&staff).await;
    assert!(a.contains(&"destructive_delete".to_string()), "{a:?}");
    assert!(!b.contains(&"destructive_delete".to_string()), "{b:?}");
    assert!(b.contains(&"echo".to_string()), "{b:?}");
    admin.cancel().await.unwrap();
    staff.cancel().await.unwrap();
    gavel.kill().await.unwrap();
}

/// `[serve] max_sessions_per_user`: one user at the cap gets 503 naming the
/// key, while another user still gets a session; a session the user closes
/// gives the slot back.
#[tokio::test(flavor = "multi_thread")]
async fn one_users_sessions_are_capped_and_others_still_get_one() {
    let s = Setup::blank();
    let bundle = common::policy::fixture_bundle();
    let (port, audience, mut gavel) =
        serve_for_tokens(&s, "[serve]\nmax_sessions_per_user = 2\n", &bundle).await;
    let token = |sub: &str| {
        hs256_token(
            json!({"iss": "https://idp.example.test", "aud": audience, "exp": unix_now() + 600, "sub": sub}),
            JWT_SECRET,
        )
    };
    let (ada, bob) = (token("ada"), token("bob"));
    let session_of = |r: &str| {
        r.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("mcp-session-id")
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no session id in {r}"))
    };
    let first = post_init(port, Some(&ada)).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let r = post_init(port, Some(&ada)).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let r = post_init(port, Some(&ada)).await;
    assert!(r.starts_with("HTTP/1.1 503"), "{r}");
    assert!(
        r.contains("max_sessions_per_user") && r.contains("ada"),
        "{r}"
    );
    // Bob is not locked out by Ada's sessions.
    let r = post_init(port, Some(&bob)).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    // Ada closes one: she may open another.
    let r = raw_request(
        port,
        &format!(
            "DELETE /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {ada}\r\nMcp-Session-Id: {}\r\nConnection: close\r\n\r\n",
            session_of(&first)
        ),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 2"), "{r}");
    let r = post_init(port, Some(&ada)).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    gavel.kill().await.unwrap();
}
