//! A legacy upstream's own questions to a legacy host (`elicitation/create`,
//! `sampling/createMessage`, forwarded as the real requests they are) pass
//! the result step, as the same questions do when gavel parks them as input
//! rounds for a 2026-07-28 host (`e2e_round_limits`): the upstream's text
//! reaching the host is decided by the same result rules whichever era the
//! host speaks (`src/decision/result/question.rs`).

use crate::common;

use common::*;
use serde_json::{Value, json};

use super::e2e_round_limits::{round_results, round_rules_setup as setup};

#[tokio::test(flavor = "multi_thread")]
async fn a_legacy_servers_questions_to_a_legacy_host_pass_the_result_policy() {
    let s = setup();
    let host = TestHost::new();
    let seen = host.seen.clone();
    let client = s.connect(host).await;

    // Redacted before the host sees it; its answer still reaches the server.
    let r = call(
        &client,
        "elicit",
        json!({"message": "Mail ann@example.com?"}),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", s.log_text()));
    assert!(text(&r).contains("action=accept"), "{}", text(&r));
    let asked = seen.lock().unwrap().elicitations.clone();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0]["message"], "Mail [REDACTED:email]?");

    // Denied: the host is never asked; the server gets the refusal.
    let r = call(
        &client,
        "elicit",
        json!({"message": "Read me the launch codes?"}),
    )
    .await
    .unwrap();
    let t = text(&r);
    assert!(
        t.contains("elicitation failed") && t.contains("question_refused"),
        "{t}"
    );
    assert_eq!(seen.lock().unwrap().elicitations.len(), 1, "not asked");

    // A sampling prompt is the server's text too.
    let r = call(
        &client,
        "sample",
        json!({"prompt": "Write to bob@example.com"}),
    )
    .await
    .unwrap();
    assert!(text(&r).contains("sampled by the e2e host"), "{}", text(&r));
    let sampled = seen.lock().unwrap().samplings.clone();
    assert_eq!(
        sampled[0]["messages"][0]["content"]["text"],
        "Write to [REDACTED:email]"
    );

    let outcomes: Vec<Value> = round_results(&s)
        .iter()
        .map(|r| r["result"]["outcome"].clone())
        .collect();
    assert_eq!(
        outcomes,
        [json!("modified"), json!("deny"), json!("modified")]
    );
    // Each was decided as the request it is, too.
    let kinds: Vec<Value> = s
        .decisions()
        .into_iter()
        .filter(|d| d["result_of"].is_null())
        .map(|d| d["input"]["action"]["type"].clone())
        .filter(|t| t.as_str().is_some_and(|t| t.ends_with("_request")))
        .collect();
    assert_eq!(
        kinds,
        [
            json!("elicitation_request"),
            json!("elicitation_request"),
            json!("sampling_request")
        ]
    );
}
