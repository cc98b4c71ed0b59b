//! A modern (MCP 2026-07-28) upstream's input rounds (MRTR, SEP-2322),
//! driven through a legacy host (reference §2.3, shape 3).
//!
//! A modern server never sends the host a request: it answers `tools/call`,
//! `prompts/get` or `resources/read` with an `input_required` result naming
//! what it needs (`inputRequests`: elicitation, sampling, roots) and an
//! opaque `requestState`, and expects the same request again with the
//! answers (`inputResponses`) and that state, byte for byte. A legacy host
//! (`initialize`, ≤ 2025-11-25) knows nothing of rounds but does answer real
//! server→client requests, so gavel plays the modern client: each input
//! request becomes a real request to the host, and the call is sent again.
//!
//! What this module owns is the loop and what it trusts of the upstream —
//! nothing: the round's size is bounded ([`Bounds`]), a round that asks for
//! something the host did not declare is refused before anything reaches
//! the host (a clear error naming the server, the call and the capability),
//! and the number of rounds is capped ([`MAX_INPUT_ROUNDS`]). How a request
//! reaches the host, how the retry is decided and how it is sent is the
//! caller's ([`RoundIo`]): the session decides every retry again as the
//! request it is (a `tools/call` with the same arguments, through
//! `host::authorize`), so a round is never a way around the policy. Each
//! retry is a new request with a new JSON-RPC id; the state of one call
//! lives in its own loop and never reaches another.

use std::future::Future;
use std::time::Duration;

use rmcp::model::{
    ClientCapabilities, ClientRequest, CustomResult, ElicitRequestParams, ErrorCode, ErrorData,
    InputRequest, InputResponses, ServerResult,
};
use serde_json::{Value, json};

/// Input rounds one request may take before gavel gives up on it: the cap
/// the rmcp, Python and TypeScript SDKs use (`DEFAULT_MRTR_MAX_ROUNDS`). A
/// round is one `input_required` answer fulfilled and retried; the next
/// `input_required` after the last one fails the request.
pub const MAX_INPUT_ROUNDS: usize = 10;

/// What one round may hold, checked before anything reaches the host: the
/// upstream is untrusted, and every input request may put a question to a
/// person.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Input requests in one round.
    pub requests: usize,
    /// Bytes of one input request's key.
    pub key_bytes: usize,
    /// Bytes of the `requestState` gavel echoes back.
    pub state_bytes: usize,
}

pub const BOUNDS: Bounds = Bounds {
    requests: 8,
    key_bytes: 256,
    state_bytes: 64 * 1024,
};

/// The request the rounds belong to, for messages.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub server: &'a str,
    /// `tools/call`, `prompts/get` or `resources/read`.
    pub method: &'static str,
    /// The tool or prompt name, or the resource URI (the upstream's own).
    pub target: &'a str,
}

impl Call<'_> {
    fn what(&self) -> String {
        let kind = match self.method {
            "tools/call" => "tool",
            "prompts/get" => "prompt",
            _ => "resource",
        };
        format!("{kind} {:?} of server {:?}", self.target, self.server)
    }
}

/// What the host must have declared to answer one input request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    ElicitationForm,
    ElicitationUrl,
    Sampling,
    SamplingTools,
    Roots,
}

impl Needs {
    pub fn of(request: &InputRequest) -> Option<Needs> {
        Some(match request {
            InputRequest::Elicitation(r) => match &r.params {
                ElicitRequestParams::FormElicitationParams { .. } => Needs::ElicitationForm,
                ElicitRequestParams::UrlElicitationParams { .. } => Needs::ElicitationUrl,
                _ => return None,
            },
            InputRequest::CreateMessage(r) if r.params.tools.is_some() => Needs::SamplingTools,
            InputRequest::CreateMessage(_) => Needs::Sampling,
            InputRequest::ListRoots(_) => Needs::Roots,
            _ => return None,
        })
    }

    /// The capability as the spec names it.
    pub fn name(self) -> &'static str {
        match self {
            Needs::ElicitationForm => "elicitation (form mode)",
            Needs::ElicitationUrl => "elicitation (url mode)",
            Needs::Sampling => "sampling",
            Needs::SamplingTools => "sampling with tools",
            Needs::Roots => "roots",
        }
    }

    /// `requiredCapabilities` of the -32021 error.
    fn required(self) -> Value {
        match self {
            Needs::ElicitationForm => json!({"elicitation": {"form": {}}}),
            Needs::ElicitationUrl => json!({"elicitation": {"url": {}}}),
            Needs::Sampling => json!({"sampling": {}}),
            Needs::SamplingTools => json!({"sampling": {"tools": {}}}),
            Needs::Roots => json!({"roots": {}}),
        }
    }

    /// Whether a legacy host's `initialize` capabilities cover it. An
    /// `elicitation` object naming no mode is form mode (2025-06-18).
    pub fn declared(self, caps: &ClientCapabilities) -> bool {
        match self {
            Needs::ElicitationForm => caps
                .elicitation
                .as_ref()
                .is_some_and(|e| e.form.is_some() || e.url.is_none()),
            Needs::ElicitationUrl => caps.elicitation.as_ref().is_some_and(|e| e.url.is_some()),
            Needs::Sampling => caps.sampling.is_some(),
            Needs::SamplingTools => caps.sampling.as_ref().is_some_and(|s| s.tools.is_some()),
            Needs::Roots => caps.roots.is_some(),
        }
    }
}

/// The error a host gets when a round asks for a capability it did not
/// declare, or when the upstream itself refused the call for one (-32021):
/// it names the server, the call and the capability.
pub fn missing_capability(call: &Call<'_>, need: &str, required: Option<Value>) -> ErrorData {
    ErrorData::new(
        ErrorCode::MISSING_REQUIRED_CLIENT_CAPABILITY,
        format!(
            "{} needs the agent host's {need} capability to complete {}, and the host did not declare it; the request was not completed",
            call.what(),
            call.method
        ),
        required.map(|r| json!({ "requiredCapabilities": r })),
    )
}

/// One upstream answer, read. (Made and consumed once per answer, never
/// stored: the size difference of the variants costs nothing.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Step {
    Complete(ServerResult),
    /// An input round: what to ask (in the upstream's key order) and the
    /// state to echo.
    Input {
        requests: Vec<(String, InputRequest)>,
        state: Option<String>,
    },
}

/// Reads an upstream's answer: a round, bounded, or anything else as the
/// complete answer (a result without `resultType` is complete). An
/// `input_required` result rmcp could not type (an input request of a kind
/// or shape MCP does not define) is refused, never passed on.
pub fn read(call: &Call<'_>, result: ServerResult, bounds: &Bounds) -> Result<Step, ErrorData> {
    let r = match result {
        ServerResult::InputRequiredResult(r) => r,
        ServerResult::CustomResult(CustomResult(v))
            if v.get("resultType").and_then(Value::as_str) == Some("input_required") =>
        {
            return Err(bad_round(
                call,
                "it is not a valid MCP 2026-07-28 input_required result (unknown or malformed input request)",
            ));
        }
        other => return Ok(Step::Complete(other)),
    };
    let requests: Vec<(String, InputRequest)> =
        r.input_requests.unwrap_or_default().into_iter().collect();
    if requests.is_empty() && r.request_state.is_none() {
        return Err(bad_round(
            call,
            "it holds neither inputRequests nor requestState",
        ));
    }
    if requests.len() > bounds.requests {
        return Err(bad_round(
            call,
            &format!(
                "it holds {} input requests; gavel passes at most {} in one round",
                requests.len(),
                bounds.requests
            ),
        ));
    }
    if let Some((k, _)) = requests.iter().find(|(k, _)| k.len() > bounds.key_bytes) {
        return Err(bad_round(
            call,
            &format!(
                "an input request key is {} bytes long; at most {} are allowed",
                k.len(),
                bounds.key_bytes
            ),
        ));
    }
    if let Some(s) = &r.request_state
        && s.len() > bounds.state_bytes
    {
        return Err(bad_round(
            call,
            &format!(
                "its requestState is {} bytes; at most {} are allowed",
                s.len(),
                bounds.state_bytes
            ),
        ));
    }
    Ok(Step::Input {
        requests,
        state: r.request_state,
    })
}

fn bad_round(call: &Call<'_>, why: &str) -> ErrorData {
    ErrorData::internal_error(
        format!(
            "{} answered {} with an input round gavel refuses: {why}; the request was not completed",
            call.what(),
            call.method
        ),
        None,
    )
}

/// Every request of a round must be one the host declared, checked before
/// the first one is asked (a person is not asked half a round for nothing).
pub fn check_capabilities(
    call: &Call<'_>,
    caps: &ClientCapabilities,
    requests: &[(String, InputRequest)],
) -> Result<(), ErrorData> {
    for (key, request) in requests {
        let Some(need) = Needs::of(request) else {
            return Err(bad_round(
                call,
                &format!("input request {key:?} is of a kind gavel does not know"),
            ));
        };
        if !need.declared(caps) {
            return Err(missing_capability(call, need.name(), Some(need.required())));
        }
    }
    Ok(())
}

/// The request again, with this round's answers and the upstream's state
/// exactly as it was given (none if none was).
pub fn retry_request(
    original: &ClientRequest,
    responses: InputResponses,
    state: Option<String>,
) -> Option<ClientRequest> {
    let responses = (!responses.is_empty()).then_some(responses);
    let mut request = original.clone();
    set_round_fields(&mut request, responses, state).then_some(request)
}

/// Sets a request's round fields (`inputResponses`, `requestState`); false
/// for a request that has none (only `tools/call`, `prompts/get` and
/// `resources/read` take rounds).
pub fn set_round_fields(
    request: &mut ClientRequest,
    responses: Option<InputResponses>,
    state: Option<String>,
) -> bool {
    match request {
        ClientRequest::CallToolRequest(r) => {
            r.params.input_responses = responses;
            r.params.request_state = state;
        }
        ClientRequest::GetPromptRequest(r) => {
            r.params.input_responses = responses;
            r.params.request_state = state;
        }
        ClientRequest::ReadResourceRequest(r) => {
            r.params.input_responses = responses;
            r.params.request_state = state;
        }
        _ => return false,
    }
    true
}

/// The method of a request that may take rounds.
pub fn round_method(request: &ClientRequest) -> Option<&'static str> {
    match request {
        ClientRequest::CallToolRequest(_) => Some("tools/call"),
        ClientRequest::GetPromptRequest(_) => Some("prompts/get"),
        ClientRequest::ReadResourceRequest(_) => Some("resources/read"),
        _ => None,
    }
}

/// How the rounds reach the host and the upstream (the session's).
pub trait RoundIo {
    type Permit;
    type Denial;
    /// Puts one input request to the host and returns its answer (the
    /// bare result object, as `inputResponses` carries it).
    fn ask(
        &self,
        key: &str,
        request: InputRequest,
    ) -> impl Future<Output = Result<Value, ErrorData>> + Send;
    /// The round's input requests (in the upstream's order) as the result
    /// step leaves them — upstream text on its way to the host, decided as
    /// a modern host's round is (`front/session/round_result.rs`) — or the
    /// decision that withholds them: then nothing is asked and the request
    /// ends denied. `permit`: the request's that got this round.
    fn screen(
        &self,
        permit: &Self::Permit,
        requests: Vec<(String, InputRequest)>,
    ) -> Result<Vec<(String, InputRequest)>, Self::Denial>;
    /// Decides the retry again, as the request it is.
    fn decide_retry(&self) -> impl Future<Output = Result<Self::Permit, Self::Denial>> + Send;
    fn send(
        &self,
        permit: &Self::Permit,
        request: ClientRequest,
    ) -> impl Future<Output = Result<ServerResult, ErrorData>> + Send;
}

/// How the rounds ended. (Returned once per request, never stored.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Outcome<P, D> {
    /// The upstream's final answer, with the permit of the request that got it.
    Done(P, ServerResult),
    /// The policy (or a person) refused a retry: nothing more was sent.
    Denied(D),
    /// The host must answer an input round first (a 2026-07-28 host:
    /// `front/session/parked.rs`); never produced by [`drive`].
    Input(rmcp::model::InputRequiredResult),
}

/// A state-only round (no input requests: "retry now") waits a little,
/// more each time in a row: 50 ms doubling to 250 ms (what rmcp waits).
fn state_only_pause(in_a_row: u32) -> Duration {
    Duration::from_millis((50u64 << in_a_row.min(3)).min(250))
}

/// Drives `first`, the upstream's answer to `request` (sent with `permit`),
/// to its end: each round's input requests checked against what the host
/// declared, passed through the result step ([`RoundIo::screen`]), asked of
/// the host in order, the retry decided, then sent with the answers and the
/// state. At most `max_rounds` rounds.
pub async fn drive<I: RoundIo>(
    io: &I,
    call: &Call<'_>,
    caps: &ClientCapabilities,
    request: &ClientRequest,
    (permit, first): (I::Permit, ServerResult),
    max_rounds: usize,
) -> Result<Outcome<I::Permit, I::Denial>, ErrorData> {
    let (mut permit, mut answer) = (permit, first);
    let mut state_only = 0u32;
    for round in 0..=max_rounds {
        let (requests, state) = match read(call, answer, &BOUNDS)? {
            Step::Complete(r) => return Ok(Outcome::Done(permit, r)),
            Step::Input { requests, state } => (requests, state),
        };
        if round == max_rounds {
            break;
        }
        check_capabilities(call, caps, &requests)?;
        let requests = match io.screen(&permit, requests) {
            Ok(r) => r,
            Err(d) => return Ok(Outcome::Denied(d)),
        };
        if requests.is_empty() {
            tokio::time::sleep(state_only_pause(state_only)).await;
            state_only += 1;
        } else {
            state_only = 0;
        }
        let mut responses = InputResponses::new();
        for (key, input) in requests {
            let answer = io.ask(&key, input).await?;
            responses.insert(key, answer);
        }
        let retry = retry_request(request, responses, state)
            .ok_or_else(|| bad_round(call, "the request is not one that may take input rounds"))?;
        // The permit of the round before ends here: the retry has its own.
        permit = match io.decide_retry().await {
            Ok(p) => p,
            Err(d) => return Ok(Outcome::Denied(d)),
        };
        answer = io.send(&permit, retry).await?;
    }
    Err(too_many_rounds(call, max_rounds))
}

/// The error that ends a request whose upstream still asks for input after
/// `max_rounds` rounds (gavel's cap, whichever era the host speaks): names
/// the server and the call, and says what was dropped.
pub fn too_many_rounds(call: &Call<'_>, max_rounds: usize) -> ErrorData {
    ErrorData::internal_error(
        format!(
            "{} still asked for input after {max_rounds} rounds (gavel's cap on MCP input rounds); the request was not completed and its round state was dropped (send the request again, as a new request, to start over)",
            call.what()
        ),
        Some(json!({
            "server": call.server,
            "method": call.method,
            "target": call.target,
            "maxRounds": max_rounds,
        })),
    )
}

#[cfg(test)]
#[path = "rounds_tests.rs"]
mod tests;
