//! End to end: a policy that allows `destructive_delete` (and reading one
//! resource, getting one prompt, the server's sampling requests) only with a
//! human's approval — accept, remembered approvals (same arguments only,
//! until they expire on the test clock), decline, cancel, timeout with
//! progress on the host's token, and a host that cannot elicit. A refused
//! approval is a denial in the log, the counters and the metrics. What an
//! approval costs and leaves behind: tests/e2e/e2e_approval_effects.rs.

use crate::common;

use std::time::Duration;

use common::approval::*;
use common::*;
use rmcp::model::ElicitationAction;
use serde_json::json;

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

/// Declined (or accepted without `approve: true`) and cancelled: denied,
/// never forwarded — and a denial everywhere: the approval record that
/// settles the decision carries the effective result, the session's
/// `denied_count` counts it, and so do the metrics.
#[tokio::test(flavor = "multi_thread")]
async fn declined_cancelled_or_not_approved_is_a_denial_and_never_forwarded() {
    for (action, approve, code, step) in [
        (
            ElicitationAction::Decline,
            true,
            "approval_declined",
            "declined",
        ),
        (
            ElicitationAction::Accept,
            false,
            "approval_declined",
            "declined",
        ),
        (
            ElicitationAction::Cancel,
            true,
            "approval_cancelled",
            "cancelled",
        ),
    ] {
        let s = setup("");
        let port = free_port();
        add_config(&s, &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
        let mut host = TestHost::new();
        host.elicit_action = action;
        host.approve = approve;
        let client = s.connect(host).await;
        let r = call(&client, "destructive_delete", json!({"path": "/"}))
            .await
            .unwrap();
        assert_eq!(r.is_error, Some(true));
        assert_eq!(reasons(&r), json!([code]));
        assert!(
            text(&r).contains("was not made") || text(&r).contains("declined"),
            "{}",
            text(&r)
        );
        assert_eq!(deletes(&s), 0);
        assert_eq!(steps(&s), vec!["requested", step]);

        // The decision record says what the policy allowed; the final
        // approval record, with the same decision id, what happened.
        let id = r.meta.as_ref().unwrap().0["dev.gavel/decision"]["decision_id"].clone();
        let log = s.decisions();
        let decided = log
            .iter()
            .find(|r| r["decision_id"] == id && r.get("approval").is_none())
            .expect("the decision record");
        assert_eq!(decided["result"]["allow"], true);
        let fin = settled(&s, &id);
        assert_eq!(fin["path"], "gavel/approval");
        assert_eq!(fin["approval"]["step"], step);
        assert_eq!(fin["result"]["allow"], false);
        assert_eq!(fin["result"]["reasons"], json!([code]));
        assert_eq!(fin["labels"]["app"], "gavel");
        let requested = log
            .iter()
            .find(|r| r["decision_id"] == id && r["approval"]["step"] == "requested")
            .unwrap();
        assert_eq!(requested["approval"]["final"], false);
        assert!(requested.get("result").is_none(), "{requested}");

        // The next decision sees the refused call as denied.
        call(&client, "echo", json!({"text": "next"}))
            .await
            .unwrap();
        let next = s
            .decisions()
            .into_iter()
            .rfind(|r| r["input"]["action"]["tool"] == "echo")
            .unwrap();
        assert_eq!(next["input"]["context"]["denied_count"], 1, "{next}");
        assert_eq!(next["input"]["context"]["turn_count"], 1);

        let m = common::metrics::scrape(port).await;
        let v = |series: &str| common::metrics::value(&m, series);
        assert_eq!(
            v(r#"gavel_decisions_total{server="fx",outcome="deny"}"#),
            1.0,
            "{m}"
        );
        assert_eq!(
            v(r#"gavel_decisions_total{server="fx",outcome="allow"}"#),
            1.0,
            "echo only: {m}"
        );
        assert_eq!(
            v(&format!(
                r#"gavel_denials_total{{server="fx",reason="{code}"}}"#
            )),
            1.0,
            "{m}"
        );
        assert_eq!(
            v(r#"gavel_tool_calls_total{server="fx",tool="destructive_delete",outcome="deny"}"#),
            1.0,
            "{m}"
        );
        assert_eq!(
            v(r#"gavel_tool_calls_total{server="fx",tool="destructive_delete",outcome="allow"}"#),
            0.0,
            "{m}"
        );
        client.cancel().await.unwrap();
    }
}

/// Reading a resource, getting a prompt, and the server's own sampling
/// request go through the same approval step as a tool call: asked, and
/// forwarded only on an accept; on a decline a JSON-RPC denial, and the
/// upstream (or, for sampling, the host) never sees the request.
#[tokio::test(flavor = "multi_thread")]
async fn resources_prompts_and_sampling_ask_for_approval_too() {
    use rmcp::model::{GetPromptRequestParams, ReadResourceRequestParams};
    for approve in [true, false] {
        let s = setup("");
        let mut host = TestHost::new();
        host.approve = approve;
        let seen = host.seen.clone();
        let client = s.connect(host).await;
        let read = client
            .peer()
            .read_resource(ReadResourceRequestParams::new("fixture://static/hello"))
            .await;
        let mut gp = GetPromptRequestParams::new("greet");
        gp.arguments = json!({"name": "ada"}).as_object().cloned();
        let prompt = client.peer().get_prompt(gp).await;
        let sampled = call(&client, "sample", json!({"prompt": "hi"}))
            .await
            .unwrap();
        // A resource the policy does not ask about is never held.
        client
            .peer()
            .read_resource(ReadResourceRequestParams::new("fixture://items/7"))
            .await
            .unwrap();

        let questions: Vec<String> = seen
            .lock()
            .unwrap()
            .elicitations
            .iter()
            .map(|e| e["message"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(questions.len(), 3, "{questions:?}");
        assert!(
            questions[0].contains("resource read")
                && questions[0].contains("fixture://static/hello"),
            "{}",
            questions[0]
        );
        assert!(
            questions[1].contains("prompt request") && questions[1].contains("greet"),
            "{}",
            questions[1]
        );
        assert!(
            questions[2].contains("sampling request"),
            "{}",
            questions[2]
        );
        let rec = records(&s.path("r.jsonl"));
        let reached = |method: &str, key: &str, value: &str| {
            rec.iter()
                .any(|v| v["method"] == method && v["params"][key] == value)
        };
        let samplings = seen.lock().unwrap().samplings.len();
        if approve {
            let read = read.unwrap();
            assert!(
                serde_json::to_string(&read)
                    .unwrap()
                    .contains("hello from fx")
            );
            let prompt = prompt.unwrap();
            assert!(
                serde_json::to_string(&prompt)
                    .unwrap()
                    .contains("Hello, ada!")
            );
            assert!(reached("resources/read", "uri", "fixture://static/hello"));
            assert!(reached("prompts/get", "name", "greet"));
            assert_eq!(samplings, 1);
            assert!(
                text(&sampled).contains("sampled by the e2e host"),
                "{}",
                text(&sampled)
            );
            assert_eq!(
                steps(&s),
                vec![
                    "requested",
                    "approved",
                    "requested",
                    "approved",
                    "requested",
                    "approved"
                ]
            );
        } else {
            for e in [read.unwrap_err(), prompt.unwrap_err()] {
                let rmcp::ServiceError::McpError(e) = e else {
                    panic!("a JSON-RPC error: {e}")
                };
                assert_eq!(e.code.0, 403, "{e:?}");
                assert!(e.to_string().contains("approval_declined"), "{e}");
            }
            assert!(
                !reached("resources/read", "uri", "fixture://static/hello"),
                "{rec:?}"
            );
            assert!(!reached("prompts/get", "name", "greet"), "{rec:?}");
            assert_eq!(samplings, 0, "the host's model was never asked");
            assert_ne!(text(&sampled), "sampled by the e2e host");
            assert_eq!(
                steps(&s),
                vec![
                    "requested",
                    "declined",
                    "requested",
                    "declined",
                    "requested",
                    "declined"
                ]
            );
        }
        assert!(reached("resources/read", "uri", "fixture://items/7"));
        client.cancel().await.unwrap();
    }
}

/// A remembered approval lasts `remember_seconds` on gavel's clock: within
/// it the same call is not asked again; once the clock passes it, it is.
#[tokio::test(flavor = "multi_thread")]
async fn a_remembered_approval_expires_with_the_clock() {
    let s = setup("");
    let clock = TestClock::new(s.path("clock"));
    let host = TestHost::new();
    let seen = host.seen.clone();
    let client = s.connect_on(&clock, host).await;
    let args = json!({"path": "/tmp/x"});
    call(&client, "destructive_delete", args.clone())
        .await
        .unwrap();
    clock.advance(599.0);
    call(&client, "destructive_delete", args.clone())
        .await
        .unwrap();
    assert_eq!(
        seen.lock().unwrap().elicitations.len(),
        1,
        "remembered for 600 s"
    );
    clock.advance(2.0);
    call(&client, "destructive_delete", args).await.unwrap();
    assert_eq!(
        seen.lock().unwrap().elicitations.len(),
        2,
        "expired: asked again"
    );
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
    assert_eq!(deletes(&s), 3);
    // Every record of a gavel on a test clock says so.
    let log = s.decisions();
    assert!(
        log.iter()
            .all(|r| r["labels"]["test_clock"] == clock.0.display().to_string()),
        "{log:?}"
    );
    assert!(
        s.log_text().contains("GAVEL_TEST_CLOCK_FILE is set"),
        "{}",
        s.log_text()
    );
    client.cancel().await.unwrap();
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

/// Agent text cannot forge a line in the question the user is asked or in
/// gavel's log: a resource URI with line breaks (`\n`, `\r\n`, U+2028) and
/// a bidi override reaches both escaped, on the line it belongs to.
#[tokio::test(flavor = "multi_thread")]
async fn a_uri_with_line_breaks_forges_no_line_in_the_question_or_the_log() {
    use rmcp::model::ReadResourceRequestParams;
    let s = setup("");
    let rego = s.path("policy/fx/policy.rego");
    let mut policy = std::fs::read_to_string(&rego).unwrap();
    policy.push_str(
        "\nneeds_approval if {\n\tinput.action.type == \"resource_read\"\n\tcontains(input.action.tool, \"FORGED\")\n}\n",
    );
    std::fs::write(&rego, policy).unwrap();
    let host = TestHost::new();
    let seen = host.seen.clone();
    let client = s.connect(host).await;
    let uri = "fixture://items/7\nFORGED INFO gavel: policy activated\r\nDecision: approve\u{2028}FORGED\u{202e}lave";
    let _ = client
        .peer()
        .read_resource(ReadResourceRequestParams::new(uri))
        .await;
    let questions: Vec<String> = seen
        .lock()
        .unwrap()
        .elicitations
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(questions.len(), 1, "{questions:?}");
    let q = &questions[0];
    assert!(q.contains("Resource: fixture://items/7\\nFORGED"), "{q}");
    assert!(
        !q.lines()
            .any(|l| l.starts_with("FORGED") || l.starts_with("Decision: approve")),
        "{q}"
    );
    let raw = |c: char| (c.is_control() && c != '\n') || matches!(c, '\u{2028}' | '\u{202e}');
    assert!(!q.chars().any(raw), "{q:?}");
    client.cancel().await.unwrap();
    let log = s.log_text();
    assert!(log.contains("fixture://items/7\\nFORGED"), "{log}");
    assert!(!log.lines().any(|l| l.starts_with("FORGED")), "{log}");
    assert!(!log.chars().any(raw), "{log:?}");
}
