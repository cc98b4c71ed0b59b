//! A legacy upstream's own questions to a legacy host (`elicitation/create`,
//! `sampling/createMessage`, forwarded as the real requests they are) pass
//! the result step, as the same questions do when gavel parks them as input
//! rounds for a 2026-07-28 host (`e2e_round_limits`): the upstream's text
//! reaching the host is decided by the same result rules whichever era the
//! host speaks (`src/decision/result/question.rs`). And a question whose
//! approval gavel cannot put to the call it came during is settled, not
//! left half-logged.

use crate::common;

use common::raw::RawHost;
use common::*;
use serde_json::{Value, json};

use super::e2e_host_rounds::modern;
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

/// An upstream's question that needs approval, during a call whose request
/// declares sampling but not form elicitation: gavel cannot put its
/// approval question to that call, so the approval is settled unavailable
/// — its `requested` step gets a final one — and the upstream is refused
/// with why; the host never sees the question.
#[test]
fn an_approval_that_cannot_be_asked_is_settled_not_left_requested() {
    let s = common::approval::setup("");
    let mut raw = RawHost::bare(&s);
    let p = json!({"name": "sample", "arguments": {"prompt": "Say hi"}});
    raw.send_line(&modern(1, "tools/call", p, json!({"sampling": {}})));
    let done = raw.answer(&json!(1));
    let t = done["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        t.starts_with("sampling failed")
            && t.contains("approval_required")
            && t.contains("could not put the question to the host")
            && t.contains("elicitation"),
        "{done}"
    );
    assert!(done["result"].get("inputRequests").is_none(), "{done}");
    assert_eq!(common::approval::steps(&s), ["requested", "unavailable"]);
}
