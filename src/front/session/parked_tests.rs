// roots/list is deprecated in MCP 2026-07-28 (SEP-2577); a legacy upstream
// still asks it.
#![allow(deprecated)]

use super::*;
use rmcp::model::ListRootsRequest;

/// A parked call with one pending question: the call, the question's
/// answer receiver, and the call's cancel token.
fn call() -> (
    ParkedCall,
    oneshot::Receiver<Result<Value, ErrorData>>,
    CancellationToken,
) {
    let (_asks_tx, asks) = mpsc::channel(1);
    let (_done_tx, done) = oneshot::channel();
    let cancel = CancellationToken::new();
    let (reply, answer) = oneshot::channel();
    let call = ParkedCall {
        running: Running {
            asks,
            done,
            cancel: cancel.clone(),
            server: "fx".into(),
            timeout: Duration::from_secs(600),
            progress: ProgressRoute::default(),
        },
        pending: vec![Pending {
            key: "fx.1".into(),
            request: InputRequest::ListRoots(ListRootsRequest::default()),
            reply,
        }],
    };
    (call, answer, cancel)
}

#[tokio::test]
async fn a_parked_call_is_taken_once() {
    let t = Arc::new(ParkedTable::default());
    let (c, _answer, cancel) = call();
    let id = t.park(c, Duration::from_secs(600)).ok().unwrap();
    assert!(t.take(&id).is_some());
    assert!(t.take(&id).is_none(), "a parked call answers one retry");
    assert!(!cancel.is_cancelled());
}

#[tokio::test]
async fn the_table_is_bounded() {
    let t = Arc::new(ParkedTable::default());
    let mut kept = Vec::new();
    for _ in 0..MAX_PARKED {
        let (c, answer, _) = call();
        kept.push((t.park(c, Duration::from_secs(600)).ok().unwrap(), answer));
    }
    let (c, _answer, _) = call();
    let refused = t.park(c, Duration::from_secs(600));
    assert!(refused.is_err(), "a full table parks no more");
}

#[tokio::test]
async fn an_unanswered_call_is_given_up_its_question_refused_and_its_call_cancelled() {
    let t = Arc::new(ParkedTable::default());
    let (c, answer, cancel) = call();
    // A wait that is over at once: what matters is what its end does.
    let id = t.park(c, Duration::from_millis(1)).ok().unwrap();
    let e = answer.await.unwrap().unwrap_err();
    assert!(e.message.contains("did not retry"), "{}", e.message);
    assert!(e.message.contains("roots/list"), "{}", e.message);
    assert!(cancel.is_cancelled(), "the upstream call was not cancelled");
    assert!(t.take(&id).is_none());
}

#[tokio::test]
async fn a_denied_retry_gives_the_call_up() {
    let t = Arc::new(ParkedTable::default());
    let (c, answer, cancel) = call();
    let id = t.park(c, Duration::from_secs(600)).ok().unwrap();
    t.abandon(&id, "the host's retry was denied by the policy");
    let e = answer.await.unwrap().unwrap_err();
    assert!(e.message.contains("denied by the policy"), "{}", e.message);
    assert!(cancel.is_cancelled());
}

/// A retry resumes only its own server's call; one that answers nothing
/// parks the call again under a new id (asked again); one that answers
/// sends the answer to the upstream's waiting request.
#[tokio::test]
async fn a_retry_resumes_its_own_call_and_is_asked_again_until_it_answers() {
    let t = Arc::new(ParkedTable::default());
    let (c, answer, _) = call();
    let id = t.park(c, Duration::from_secs(600)).ok().unwrap();
    let none = InputResponses::new();
    let e = t.resume(&id, "other", &none).err().unwrap();
    assert!(e.message.contains("no longer waiting"), "{}", e.message);
    assert!(t.holds(&id), "another server's retry took the call");
    let Ok(Resumed::Asked(again, requests)) = t.resume(&id, "fx", &none) else {
        panic!("a retry that answers nothing is asked again")
    };
    assert_ne!(again, id);
    assert_eq!(requests.keys().collect::<Vec<_>>(), ["fx.1"]);
    assert!(!t.holds(&id) && t.holds(&again));
    let answers: InputResponses = [("fx.1".to_string(), serde_json::json!({"roots": []}))].into();
    let Ok(Resumed::Running(_)) = t.resume(&again, "fx", &answers) else {
        panic!("an answered retry runs the call again")
    };
    assert_eq!(
        answer.await.unwrap().unwrap(),
        serde_json::json!({"roots": []})
    );
    assert!(!t.holds(&again));
}

#[test]
fn a_reference_names_its_instance() {
    assert_eq!(split_ref("i-1/abc"), (Some("i-1"), "abc"));
    assert_eq!(split_ref("abc"), (None, "abc"));
    let r = parked_ref("xyz");
    let (at, id) = split_ref(&r);
    assert_eq!((at, id), (Some(crate::audit::record::instance_id()), "xyz"));
}
