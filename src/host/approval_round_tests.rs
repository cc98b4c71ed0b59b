use super::*;
use crate::host::seal::{SealError, SealKey, args_digest};
use serde_json::json;

fn sealer() -> Sealer {
    Sealer::new(SealKey::new(vec![3u8; 32]).unwrap())
}

fn binding(args: &serde_json::Value) -> Binding<'_> {
    Binding {
        principal: "alice\u{1f}agent",
        server: "fx",
        method: "tools/call",
        target: "destructive_delete",
        args: args_digest(args.as_object()),
    }
}

#[test]
fn the_round_asks_one_namespaced_form_question_with_a_sealed_approval_state() {
    let s = sealer();
    let args = json!({"path": "/tmp/x"});
    let a = RoundApproval {
        seal: Some((&s, binding(&args))),
        round: Ok(3),
        can_ask: true,
        answer: None,
        continuing: false,
        unasked: None,
    };
    let r = round(&a, "Approve this call?".into(), Some("d-1")).unwrap();
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["resultType"], "input_required", "{v}");
    let q = &v["inputRequests"][APPROVAL_KEY];
    assert_eq!(q["method"], "elicitation/create", "{v}");
    assert_eq!(q["params"]["message"], "Approve this call?", "{v}");
    let schema = &q["params"]["requestedSchema"];
    assert_eq!(schema["properties"]["approve"]["type"], "boolean", "{v}");
    assert_eq!(schema["required"], json!(["approve"]), "{v}");
    // The state opens once, for this call, as an approval naming the decision.
    let state = r.request_state.unwrap();
    let o = s.open(&state, &binding(&args)).unwrap();
    assert_eq!(o.kind, Kind::Approval);
    assert_eq!(o.inner.as_deref(), Some("d-1"));
    assert_eq!(o.round, 3, "the round's number travels sealed");
    futures::executor::block_on(s.spend(&o)).unwrap();
    let again = s.open(&state, &binding(&args)).unwrap();
    assert_eq!(
        futures::executor::block_on(s.spend(&again)),
        Err(SealError::Replayed)
    );
}

#[test]
fn form_elicitation_is_declared_by_form_or_by_naming_no_mode() {
    let caps = |v: serde_json::Value| serde_json::from_value::<ClientCapabilities>(v).unwrap();
    assert!(declares_form(&caps(json!({"elicitation": {}}))));
    assert!(declares_form(&caps(json!({"elicitation": {"form": {}}}))));
    assert!(!declares_form(&caps(json!({"elicitation": {"url": {}}}))));
    assert!(!declares_form(&caps(json!({"sampling": {}}))));
}

#[test]
fn an_answer_must_be_an_elicitation_result() {
    let ok = answer(&json!({"action": "accept", "content": {"approve": true}})).unwrap();
    assert_eq!(ok.content, Some(json!({"approve": true})));
    assert!(answer(&json!({"approve": true})).is_err());
    assert!(answer(&json!("yes")).is_err());
}

/// A host that retries without answering is asked again in a new round
/// each time: past the cap on rounds no round is asked (the approval step
/// turns that into a denial, saying why).
#[test]
fn no_approval_round_is_asked_past_the_cap() {
    let s = sealer();
    let args = json!({});
    let at = |round: Result<u32, String>| RoundApproval {
        seal: Some((&s, binding(&args))),
        round,
        can_ask: true,
        answer: None,
        continuing: false,
        unasked: None,
    };
    assert!(round(&at(Ok(10)), "Approve?".into(), None).is_ok());
    let e = round(&at(Err("past the cap".into())), "Approve?".into(), None).unwrap_err();
    assert_eq!(e, "past the cap");
}
