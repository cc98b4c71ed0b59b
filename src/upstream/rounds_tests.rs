//! The round driver against a scripted upstream and host: what is asked,
//! what is sent back, and where it stops.

use std::collections::VecDeque;
use std::sync::Mutex;

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, ClientCapabilities, ElicitationCapability,
};

use super::*;

fn result(v: Value) -> ServerResult {
    serde_json::from_value(v).expect("a server result")
}

fn elicit_round(state: &str) -> ServerResult {
    result(json!({
        "resultType": "input_required",
        "inputRequests": {"confirm": {"method": "elicitation/create", "params": {
            "mode": "form", "message": "Sure?",
            "requestedSchema": {"type": "object", "properties": {"confirm": {"type": "boolean"}}}
        }}},
        "requestState": state,
    }))
}

fn done(text: &str) -> ServerResult {
    // No resultType: complete.
    result(json!({"content": [{"type": "text", "text": text}]}))
}

/// A scripted session: the upstream's answers in order, the policy's
/// answers to retries in order, and everything asked and sent.
#[derive(Default)]
struct Script {
    answers: Mutex<VecDeque<ServerResult>>,
    retries_allowed: Mutex<VecDeque<bool>>,
    /// Per round: whether the result step withholds it.
    withhold: Mutex<VecDeque<bool>>,
    asked: Mutex<Vec<(String, Value)>>,
    sent: Mutex<Vec<Value>>,
    decided: Mutex<u32>,
}

impl RoundIo for Script {
    type Permit = u32;
    type Denial = &'static str;
    async fn ask(&self, key: &str, request: InputRequest) -> Result<Value, ErrorData> {
        let req = serde_json::to_value(&request).unwrap();
        self.asked.lock().unwrap().push((key.to_string(), req));
        Ok(json!({"action": "accept", "content": {"confirm": true}}))
    }
    fn screen(
        &self,
        _permit: &u32,
        requests: Vec<(String, InputRequest)>,
    ) -> Result<Vec<(String, InputRequest)>, &'static str> {
        let withheld = self.withhold.lock().unwrap().pop_front() == Some(true);
        if withheld {
            Err("withheld")
        } else {
            Ok(requests)
        }
    }
    async fn decide_retry(&self) -> Result<u32, &'static str> {
        let mut n = self.decided.lock().unwrap();
        *n += 1;
        match self.retries_allowed.lock().unwrap().pop_front() {
            Some(false) => Err("denied"),
            _ => Ok(*n),
        }
    }
    async fn send(&self, _permit: &u32, request: ClientRequest) -> Result<ServerResult, ErrorData> {
        self.sent
            .lock()
            .unwrap()
            .push(serde_json::to_value(&request).unwrap());
        Ok(self
            .answers
            .lock()
            .unwrap()
            .pop_front()
            .expect("the upstream was asked more than scripted"))
    }
}

fn call() -> Call<'static> {
    Call {
        server: "modern",
        method: "tools/call",
        target: "confirm",
    }
}

fn host_caps() -> ClientCapabilities {
    let mut c = ClientCapabilities::default();
    c.elicitation = Some(ElicitationCapability::default());
    c
}

fn request() -> ClientRequest {
    let mut p = CallToolRequestParams::new("confirm");
    p.arguments = Some(json!({"action": "deploy"}).as_object().unwrap().clone());
    ClientRequest::CallToolRequest(CallToolRequest::new(p))
}

async fn run(
    s: &Script,
    first: ServerResult,
    max: usize,
) -> Result<Outcome<u32, &'static str>, ErrorData> {
    drive(s, &call(), &host_caps(), &request(), (0, first), max).await
}

#[tokio::test]
async fn a_round_is_asked_decided_and_retried_with_the_exact_state() {
    let s = Script::default();
    s.answers.lock().unwrap().push_back(done("confirmed"));
    let out = run(&s, elicit_round("opaque \u{1F512} state=="), 10)
        .await
        .unwrap();
    let (permit, r) = match out {
        Outcome::Done(p, ServerResult::CallToolResult(r)) => (p, r),
        other => panic!("{other:?}"),
    };
    // The final answer comes with the retry's own permit.
    assert_eq!(permit, 1);
    assert_eq!(
        serde_json::to_value(&r.content).unwrap()[0]["text"],
        "confirmed"
    );
    let asked = s.asked.lock().unwrap();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].0, "confirm");
    assert_eq!(asked[0].1["method"], "elicitation/create");
    let sent = s.sent.lock().unwrap();
    assert_eq!(sent.len(), 1);
    let params = &sent[0]["params"];
    assert_eq!(params["requestState"], "opaque \u{1F512} state==");
    assert_eq!(
        params["inputResponses"]["confirm"]["content"]["confirm"],
        true
    );
    // Same tool, same arguments.
    assert_eq!(params["name"], "confirm");
    assert_eq!(params["arguments"], json!({"action": "deploy"}));
}

#[tokio::test]
async fn a_result_without_result_type_is_complete() {
    let s = Script::default();
    let out = run(&s, done("at once"), 10).await.unwrap();
    assert!(
        matches!(out, Outcome::Done(0, ServerResult::CallToolResult(_))),
        "{out:?}"
    );
    assert!(s.asked.lock().unwrap().is_empty() && s.sent.lock().unwrap().is_empty());
    assert_eq!(*s.decided.lock().unwrap(), 0);
}

#[tokio::test]
async fn a_denied_retry_sends_nothing_more() {
    let s = Script::default();
    s.retries_allowed.lock().unwrap().push_back(false);
    let out = run(&s, elicit_round("st"), 10).await.unwrap();
    assert!(matches!(out, Outcome::Denied("denied")), "{out:?}");
    assert_eq!(s.asked.lock().unwrap().len(), 1);
    assert!(s.sent.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_round_the_result_step_withholds_asks_nothing_and_sends_nothing() {
    let s = Script::default();
    s.withhold.lock().unwrap().push_back(true);
    let out = run(&s, elicit_round("st"), 10).await.unwrap();
    assert!(matches!(out, Outcome::Denied("withheld")), "{out:?}");
    assert!(s.asked.lock().unwrap().is_empty());
    assert!(s.sent.lock().unwrap().is_empty());
    assert_eq!(*s.decided.lock().unwrap(), 0);
}

#[tokio::test]
async fn the_round_cap_holds() {
    let s = Script::default();
    for i in 0..3 {
        s.answers
            .lock()
            .unwrap()
            .push_back(elicit_round(&format!("round {i}")));
    }
    let e = run(&s, elicit_round("first"), 3).await.unwrap_err();
    assert!(e.message.contains("after 3 rounds"), "{}", e.message);
    assert!(
        e.message.contains("tool \"confirm\" of server \"modern\""),
        "{}",
        e.message
    );
    // Three rounds asked and retried; the fourth input round is refused.
    assert_eq!(s.asked.lock().unwrap().len(), 3);
    assert_eq!(s.sent.lock().unwrap().len(), 3);
    assert!(s.answers.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_host_without_the_capability_gets_a_named_error_and_no_question() {
    let s = Script::default();
    let e = drive(
        &s,
        &call(),
        &ClientCapabilities::default(),
        &request(),
        (0, elicit_round("st")),
        10,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::MISSING_REQUIRED_CLIENT_CAPABILITY);
    for part in [
        "\"modern\"",
        "\"confirm\"",
        "elicitation (form mode)",
        "tools/call",
    ] {
        assert!(e.message.contains(part), "{part} in {}", e.message);
    }
    assert_eq!(
        e.data,
        Some(json!({"requiredCapabilities": {"elicitation": {"form": {}}}}))
    );
    assert!(s.asked.lock().unwrap().is_empty());
}

#[test]
fn capabilities_are_read_as_a_legacy_host_declares_them() {
    let mut caps = host_caps();
    assert!(Needs::ElicitationForm.declared(&caps));
    assert!(!Needs::ElicitationUrl.declared(&caps));
    caps.elicitation = Some(ElicitationCapability::new().with_url(Default::default()));
    assert!(!Needs::ElicitationForm.declared(&caps));
    assert!(Needs::ElicitationUrl.declared(&caps));
    assert!(!Needs::Sampling.declared(&caps) && !Needs::Roots.declared(&caps));
}

#[test]
fn rounds_are_bounded() {
    let many: serde_json::Map<String, Value> = (0..9)
        .map(|i| (format!("k{i}"), json!({"method": "roots/list"})))
        .collect();
    let too_many = result(json!({"resultType": "input_required", "inputRequests": many}));
    let e = read(&call(), too_many, &BOUNDS).unwrap_err();
    assert!(
        e.message.contains("9 input requests") && e.message.contains("at most 8"),
        "{}",
        e.message
    );

    let long_key = result(json!({"resultType": "input_required",
        "inputRequests": {"k".repeat(257): {"method": "roots/list"}}}));
    let e = read(&call(), long_key, &BOUNDS).unwrap_err();
    assert!(e.message.contains("257 bytes"), "{}", e.message);

    let big_state = result(json!({"resultType": "input_required",
        "requestState": "s".repeat(64 * 1024 + 1)}));
    let e = read(&call(), big_state, &BOUNDS).unwrap_err();
    assert!(
        e.message.contains("requestState is 65537 bytes"),
        "{}",
        e.message
    );

    // At the bounds exactly: read.
    let ok = result(json!({"resultType": "input_required",
        "inputRequests": {"k".repeat(256): {"method": "roots/list"}},
        "requestState": "s".repeat(64 * 1024)}));
    assert!(matches!(read(&call(), ok, &BOUNDS), Ok(Step::Input { .. })));
}

#[test]
fn a_round_rmcp_cannot_type_is_refused() {
    // `ping` is not an input request MCP allows.
    let odd = result(json!({"resultType": "input_required",
        "inputRequests": {"k": {"method": "ping"}}}));
    assert!(matches!(odd, ServerResult::CustomResult(_)), "{odd:?}");
    let e = read(&call(), odd, &BOUNDS).unwrap_err();
    assert!(
        e.message
            .contains("not a valid MCP 2026-07-28 input_required result"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn a_state_only_round_is_retried_with_the_state_and_no_responses() {
    let s = Script::default();
    s.answers.lock().unwrap().push_back(done("later"));
    let first = result(json!({"resultType": "input_required", "requestState": "again"}));
    let out = run(&s, first, 10).await.unwrap();
    assert!(matches!(out, Outcome::Done(1, _)), "{out:?}");
    let sent = s.sent.lock().unwrap();
    assert_eq!(sent[0]["params"]["requestState"], "again");
    assert!(
        sent[0]["params"].get("inputResponses").is_none(),
        "{}",
        sent[0]
    );
    assert!(s.asked.lock().unwrap().is_empty());
}
