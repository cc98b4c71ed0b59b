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
        },
        pending: vec![Pending {
            key: "fx.1".into(),
            request: InputRequest::ListRoots(ListRootsRequest::default()),
            reply,
        }],
        server: "fx".into(),
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
