use super::*;
use rmcp::model::{ElicitRequest, ElicitRequestParams};
use serde_json::json;

fn elicit() -> InputRequest {
    let params: ElicitRequestParams = serde_json::from_value(json!({
        "mode": "form",
        "message": "Proceed?",
        "requestedSchema": {"type": "object", "properties": {"ok": {"type": "boolean"}}},
    }))
    .unwrap();
    InputRequest::Elicitation(ElicitRequest::new(params))
}

#[test]
fn a_question_goes_only_to_the_one_call_in_flight_that_takes_questions() {
    let t = Arc::new(InFlight::default());
    let none = t.attribute("fx", "elicitation/create").unwrap_err();
    assert!(none.message.contains("no request"), "{}", none.message);
    let (tx, _rx) = mpsc::channel(1);
    let one = t.enter("fx", Some(tx));
    assert!(t.attribute("fx", "elicitation/create").is_ok());
    // Another server's call is not this one's.
    assert!(t.attribute("other", "elicitation/create").is_err());
    // A second call in flight at the same server: nobody's.
    let (tx2, _rx2) = mpsc::channel(1);
    let two = t.enter("fx", Some(tx2));
    let many = t.attribute("fx", "elicitation/create").unwrap_err();
    assert!(many.message.contains("2 requests"), "{}", many.message);
    assert!(many.message.contains("\"fx\""), "{}", many.message);
    drop(one);
    assert!(t.attribute("fx", "elicitation/create").is_ok());
    drop(two);
    assert!(t.attribute("fx", "elicitation/create").is_err());
    assert!(t.calls.lock().unwrap().is_empty(), "left entries behind");
}

#[test]
fn a_call_that_cannot_take_a_round_takes_no_question() {
    let t = Arc::new(InFlight::default());
    let _completion = t.enter("fx", None);
    let e = t.attribute("fx", "sampling/createMessage").unwrap_err();
    assert!(
        e.message.contains("cannot carry an input round"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn the_hosts_answer_reaches_the_upstreams_request() {
    let t = Arc::new(InFlight::default());
    let (tx, mut rx) = mpsc::channel(1);
    let _call = t.enter("fx", Some(tx));
    let slot = t.attribute("fx", "roots/list").unwrap();
    let host = tokio::spawn(async move {
        let q = rx.recv().await.unwrap();
        assert!(matches!(q.request, InputRequest::ListRoots(_)));
        q.reply.send(Ok(json!({"roots": []}))).unwrap();
    });
    let ct = CancellationToken::new();
    let answer = slot.ask_roots(&ct, Duration::from_secs(30)).await.unwrap();
    assert_eq!(answer, json!({"roots": []}));
    host.await.unwrap();
}

#[tokio::test]
async fn a_call_that_ends_or_is_full_refuses_the_question() {
    let t = Arc::new(InFlight::default());
    let (tx, rx) = mpsc::channel(1);
    let call = t.enter("fx", Some(tx));
    let slot = t.attribute("fx", "elicitation/create").unwrap();
    let ct = CancellationToken::new();
    // The call drops the question unanswered (it ended, or gave up).
    let mut rx = rx;
    let dropper = tokio::spawn(async move {
        let q = rx.recv().await.unwrap();
        drop(q);
        rx
    });
    let e = slot
        .put("elicitation/create", elicit(), &ct, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(
        e.message.contains("ended before the host answered"),
        "{}",
        e.message
    );
    let rx = dropper.await.unwrap();
    // One question waits unread: the next finds the call full.
    let (reply, _keep) = oneshot::channel();
    slot.asks
        .try_send(Question {
            request: elicit(),
            reply,
        })
        .unwrap();
    let e = slot
        .put("elicitation/create", elicit(), &ct, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(e.message.contains("unanswered questions"), "{}", e.message);
    drop((rx, call));
    let e = slot
        .put("elicitation/create", elicit(), &ct, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(e.message.contains("has ended"), "{}", e.message);
}
