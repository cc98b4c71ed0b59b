//! End to end: a policy that allows `destructive_delete` only with a human's
//! approval — accept, remembered approvals (same arguments only), decline,
//! timeout with progress on the host's token, and a host that cannot elicit.

mod common;

use std::time::Duration;

use common::*;
use rmcp::model::ElicitationAction;
use serde_json::{Value, json};

const POLICY: &str = r#"package fx

decision := {"allow": true} if input.action.tool != "destructive_delete"

decision := {
	"allow": true,
	"require_approval": {"reason": "deleting needs a human", "remember_seconds": 600},
	"appeal_path": "https://approvals.example.test",
} if input.action.tool == "destructive_delete"
"#;

fn setup(extra_policy: &str) -> Setup {
    let s = Setup::new("");
    let b = s.path("policy");
    std::fs::create_dir_all(b.join("fx")).unwrap();
    std::fs::write(b.join(".manifest"), r#"{"revision": "1", "roots": ["fx"]}"#).unwrap();
    std::fs::write(b.join("fx/policy.rego"), POLICY).unwrap();
    std::fs::write(
        s.config(),
        format!(
            "[policy]\n{extra_policy}\n\n[log]\ndecisions = {:?}\n\n{}bundle = {:?}\n",
            s.path("decisions.jsonl").display().to_string(),
            fixture_server("fx", &[], &s.path("r.jsonl")),
            b.display().to_string()
        ),
    )
    .unwrap();
    s
}

fn steps(s: &Setup) -> Vec<String> {
    std::fs::read_to_string(s.path("decisions.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter_map(|r| r["approval"]["step"].as_str().map(String::from))
        .collect()
}

fn deletes(s: &Setup) -> usize {
    recorded_calls(&s.path("r.jsonl"))
        .iter()
        .filter(|c| c["params"]["name"] == "destructive_delete")
        .count()
}

fn reasons(r: &rmcp::model::CallToolResult) -> Value {
    r.meta.as_ref().unwrap().0["dev.gavel/decision"]["reasons"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn approved_remembered_for_the_same_arguments_only() {
    let s = setup("");
    let host = TestHost::new();
    let seen = host.seen.clone();
    let client = s.connect(host).await;
    let ok = call(&client, "destructive_delete", json!({"path": "/tmp/x"}))
        .await
        .unwrap();
    assert_ne!(ok.is_error, Some(true), "{}", text(&ok));
    assert_eq!(deletes(&s), 1, "approved: the call reached the upstream");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.elicitations.len(), 1);
        let msg = seen.elicitations[0]["message"].as_str().unwrap();
        assert!(
            msg.contains("destructive_delete") && msg.contains("deleting needs a human"),
            "{msg}"
        );
        assert!(msg.contains("/tmp/x"), "{msg}");
    }
    // Same arguments: remembered, no new question.
    call(&client, "destructive_delete", json!({"path": "/tmp/x"}))
        .await
        .unwrap();
    assert_eq!(seen.lock().unwrap().elicitations.len(), 1);
    // Other arguments: asked again.
    call(&client, "destructive_delete", json!({"path": "/"}))
        .await
        .unwrap();
    assert_eq!(seen.lock().unwrap().elicitations.len(), 2);
    assert_eq!(deletes(&s), 3);
    // Calls that need no approval never ask.
    call(&client, "echo", json!({"text": "x"})).await.unwrap();
    assert_eq!(seen.lock().unwrap().elicitations.len(), 2);
    assert_eq!(
        steps(&s),
        vec![
            "requested",
            "approved",
            "remembered",
            "requested",
            "approved"
        ]
    );
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn declined_or_not_approved_is_denied_and_never_forwarded() {
    for (action, approve) in [
        (ElicitationAction::Decline, true),
        (ElicitationAction::Accept, false),
    ] {
        let s = setup("");
        let mut host = TestHost::new();
        host.elicit_action = action;
        host.approve = approve;
        let client = s.connect(host).await;
        let r = call(&client, "destructive_delete", json!({"path": "/"}))
            .await
            .unwrap();
        assert_eq!(r.is_error, Some(true));
        assert_eq!(reasons(&r), json!(["approval_declined"]));
        assert!(text(&r).contains("declined"), "{}", text(&r));
        assert_eq!(deletes(&s), 0);
        assert_eq!(steps(&s), vec!["requested", "declined"]);
        client.cancel().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn timeout_denies_after_progress_on_the_hosts_token() {
    let s = setup("approval_timeout = \"1s\"");
    let mut host = TestHost::new();
    host.elicit_delay = Some(Duration::from_secs(4));
    let seen = host.seen.clone();
    let client = s.connect(host).await;
    let (r, token) = call_with_progress(&client, "destructive_delete", json!({"path": "/"})).await;
    assert_eq!(r.is_error, Some(true));
    assert_eq!(reasons(&r), json!(["approval_timeout"]));
    assert_eq!(deletes(&s), 0);
    let progress = seen.lock().unwrap().progress.clone();
    assert!(
        progress.iter().any(|p| p.progress_token == token
            && p.message.as_deref() == Some("waiting for a human to approve the call")),
        "{progress:?}"
    );
    assert_eq!(steps(&s), vec!["requested", "timeout"]);
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_that_cannot_elicit_gets_approval_required() {
    let s = setup("");
    let client = s.connect(TestHost::bare()).await;
    let r = call(&client, "destructive_delete", json!({"path": "/"}))
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true));
    assert_eq!(reasons(&r), json!(["approval_required"]));
    assert!(
        text(&r).contains("https://approvals.example.test"),
        "{}",
        text(&r)
    );
    assert_eq!(deletes(&s), 0);
    assert_eq!(steps(&s), vec!["unavailable"]);
    client.cancel().await.unwrap();
}

/// A call whose approval is declined is not made, so it costs nothing: with
/// a budget of one call, a declined call leaves the budget for the next one.
#[tokio::test(flavor = "multi_thread")]
async fn a_declined_call_gives_back_its_budget() {
    let s = setup("");
    let mut cfg = std::fs::read_to_string(s.config()).unwrap();
    cfg.push_str(&format!(
        "\n[budget]\ncalls = 1\n\n[state]\npath = {:?}\n",
        s.path("state.sqlite").display().to_string()
    ));
    std::fs::write(s.config(), cfg).unwrap();
    let mut host = TestHost::new();
    host.approve = false;
    let client = s.connect(host).await;
    let r = call(&client, "destructive_delete", json!({"path": "/"}))
        .await
        .unwrap();
    assert_eq!(reasons(&r), json!(["approval_declined"]));
    let ok = call(&client, "echo", json!({"text": "still in budget"}))
        .await
        .unwrap();
    assert_ne!(ok.is_error, Some(true), "{}", text(&ok));
    let over = call(&client, "echo", json!({"text": "over"}))
        .await
        .unwrap();
    assert_eq!(reasons(&over), json!(["budget_exceeded"]));
    client.cancel().await.unwrap();
}
