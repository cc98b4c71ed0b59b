//! A legacy upstream's questions during a 2026-07-28 host's call, turned
//! into input rounds (MRTR; reference §2.3 shape 2, checklist B7/B8).
//!
//! A legacy upstream asks its client mid-call (`elicitation/create`,
//! `sampling/createMessage`, `roots/list`); a modern host can never be sent
//! a request. So a modern host's `tools/call`, `prompts/get` or
//! `resources/read` at a legacy upstream runs on a task of its own
//! ([`Session::forward_parked`]), entered with the host link
//! (`host::questions`) as the call the upstream's questions belong to. The
//! host's request waits for whichever comes first: the upstream's answer
//! (the request completes as any), or a question. A question — decided by
//! `host::authorize` as for a legacy host, in the upstream client — that
//! this request's own capabilities cover becomes the answer to the host:
//! `input_required` with the question and a state sealed as `Kind::Parked`
//! naming the call, which waits in the session's bounded table
//! ([`ParkedTable`]) with the upstream's request unanswered. A question
//! the request does not declare the capability for is refused to the
//! upstream (which carries on, or fails, as it sees fit).
//!
//! The host's retry is decided again, opens the state once
//! (`host_round.rs`), takes the parked call (once: the table gives it to
//! one retry), answers the upstream's pending request with
//! `inputResponses[key]`, and waits again — for the final answer or the
//! next question (another round). A retry that answers no question asks
//! it again (a new round, a new state). A call nobody retries is given up
//! after `servers.NAME.call_timeout` (the upstream's call would time out
//! then anyway; `GAVEL_TEST_PARK_TIMEOUT_MS` shortens it for the tests):
//! its question gets an error and its call is cancelled
//! (`notifications/cancelled`) — the spec says a server must never assume
//! the client retries.
//!
//! Over HTTP behind a round robin, the retry may land on another gavel
//! instance than the one whose upstream connection holds the call: the
//! state names the instance (`<instance>/<id>`), and an instance that does
//! not hold it hands the answers to the one that does, through Redis, and
//! answers with what comes back (`handoff.rs`).
//!
//! A legacy upstream that fails the call with -32042 (URL elicitation
//! required) gets a URL round instead, whose retry makes the call again
//! (`url_round.rs`).
//!
//! The call's progress goes to the request it answers: the first until it
//! is parked, nowhere while it waits, then the retry that resumes it —
//! under that retry's own `progressToken`, on its own stream
//! (`upstream::progress::ProgressRoute`, moved here). A retry that reaches
//! another instance than the holder gets it through the hand-off, in order
//! before the result (`handoff.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rmcp::ErrorData;
use rmcp::model::{
    ClientCapabilities, ClientRequest, InputRequest, InputRequests, InputRequiredResult,
    InputResponses, ServerResult,
};
use rmcp::service::{RequestContext, RoleServer};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::Session;
use super::host_round::HostRound;
use super::rounds::Forwarded;
use crate::decision::Permit;
use crate::host::questions::{Question, refused};
use crate::host::seal::Kind;
use crate::sync::Recover;
use crate::upstream::progress::{ProgressRoute, Target};
use crate::upstream::rounds::{BOUNDS, Needs, Outcome};

/// Calls one session keeps parked at once: past it, a new question is
/// refused to its upstream (and its call given up) rather than parked.
pub const MAX_PARKED: usize = 64;

/// `GAVEL_TEST_PARK_TIMEOUT_MS`: the tests' shorter wait for a retry.
const TEST_TIMEOUT_ENV: &str = "GAVEL_TEST_PARK_TIMEOUT_MS";

/// How long a parked call waits for the host's retry: the server's
/// `call_timeout` (its upstream call ends then anyway), or the tests'
/// shorter one — read once, and never silent.
fn park_timeout(call_timeout: Duration) -> Duration {
    static TEST: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    let test = TEST.get_or_init(|| {
        let ms = std::env::var(TEST_TIMEOUT_ENV).ok()?.parse::<u64>().ok()?;
        tracing::warn!(
            "{TEST_TIMEOUT_ENV} is set: a parked input round is given up after {ms} ms (tests only)"
        );
        Some(Duration::from_millis(ms))
    });
    test.map_or(call_timeout, |t| t.min(call_timeout))
}

/// An upstream call of a modern host, running on its own task.
pub(super) struct Running {
    /// The upstream's questions, as `host::questions` hands them over.
    asks: mpsc::Receiver<Question>,
    /// The call's end, with the permit it was sent with.
    done: oneshot::Receiver<(Permit, Result<ServerResult, ErrorData>)>,
    /// Cancels the upstream call (`notifications/cancelled` upstream).
    cancel: CancellationToken,
    /// The upstream server, for messages.
    server: String,
    /// How long the call waits, parked, for the host's retry.
    timeout: Duration,
    /// Where its progress goes: the request it answers — the first, then
    /// each retry that resumes it; nowhere while it waits, parked.
    progress: ProgressRoute,
}

/// A question put to the host: its key in `inputRequests`, the request,
/// and where its answer goes.
struct Pending {
    key: String,
    request: InputRequest,
    reply: oneshot::Sender<Result<Value, ErrorData>>,
}

/// A call waiting for the host's retry.
struct ParkedCall {
    running: Running,
    pending: Vec<Pending>,
}

impl ParkedCall {
    /// Gives the call up: the upstream call cancelled, its questions
    /// refused with `why`.
    fn abandon(self, why: &str) {
        self.running.cancel.cancel();
        for p in self.pending {
            let _ = p.reply.send(Err(refused(
                &self.running.server,
                method_of(&p.request),
                why,
            )));
        }
    }
}

fn method_of(request: &InputRequest) -> &'static str {
    match request {
        InputRequest::Elicitation(_) => "elicitation/create",
        InputRequest::CreateMessage(_) => "sampling/createMessage",
        _ => "roots/list",
    }
}

/// One session's parked calls, by the id their sealed state names.
#[derive(Default)]
pub(super) struct ParkedTable {
    entries: Mutex<HashMap<String, ParkedCall>>,
}

impl ParkedTable {
    /// Parks `call` until `timeout`: its id, or the call back when the
    /// table is full.
    fn park(self: &Arc<Self>, call: ParkedCall, timeout: Duration) -> Result<String, ParkedCall> {
        let mut entries = self.entries.lock().recover();
        if entries.len() >= MAX_PARKED {
            return Err(call);
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        entries.insert(id.clone(), call);
        let table: Weak<Self> = Arc::downgrade(self);
        let expiring = id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            let Some(table) = table.upgrade() else { return };
            if let Some(call) = table.take(&expiring) {
                tracing::info!(server = %call.running.server, "a parked input round was not answered in {timeout:?}: its upstream call is cancelled");
                call.abandon(&format!(
                    "the host did not retry within {timeout:?}, so gavel gave up the call"
                ));
            }
        });
        Ok(id)
    }

    /// The parked call `id`, once.
    fn take(&self, id: &str) -> Option<ParkedCall> {
        self.entries.lock().recover().remove(id)
    }

    /// Whether call `id` waits here.
    pub(super) fn holds(&self, id: &str) -> bool {
        self.entries.lock().recover().contains_key(id)
    }

    /// Parks `call`: its id and the questions to put to the host; when the
    /// table is full the call is given up and the host told why.
    fn park_call(self: &Arc<Self>, call: ParkedCall) -> Result<(String, InputRequests), ErrorData> {
        let requests: InputRequests = call
            .pending
            .iter()
            .map(|p| (p.key.clone(), p.request.clone()))
            .collect();
        let server = call.running.server.clone();
        let timeout = call.running.timeout;
        // The request its progress went to is answered with the round.
        call.running.progress.set(None);
        let id = self.park(call, timeout).map_err(|call| {
            let why = format!(
                "this session already has {MAX_PARKED} calls waiting for the host's answers"
            );
            call.abandon(&why);
            ErrorData::internal_error(
                format!("server {server:?} asked the agent host a question, and {why}; the request was not completed"),
                None,
            )
        })?;
        Ok((id, requests))
    }

    /// Sends parked call `id`'s progress to `target` (the retry that is
    /// about to resume it: its own token, on its own stream) — set before
    /// the call is answered, so nothing it reports after is misrouted.
    pub(super) fn follow(&self, id: &str, target: Option<Target>) {
        if let Some(call) = self.entries.lock().recover().get(id) {
            call.running.progress.set(target);
        }
    }

    /// Takes parked call `id` of `server` for a retry that brings
    /// `responses`: the call running again with its questions answered, or
    /// — when an answer is missing — parked again, to be asked again (the
    /// spec's answer to missing responses).
    pub(super) fn resume(
        self: &Arc<Self>,
        id: &str,
        server: &str,
        responses: &InputResponses,
    ) -> Result<Resumed, ErrorData> {
        let call = {
            let mut entries = self.entries.lock().recover();
            // A call of another server is not this retry's: left waiting.
            match entries.get(id) {
                Some(c) if c.running.server == server => entries.remove(id),
                _ => None,
            }
        };
        let Some(call) = call else {
            return Err(no_longer_waiting(server));
        };
        if call.pending.iter().any(|p| !responses.contains_key(&p.key)) {
            let (id, requests) = self.park_call(call)?;
            return Ok(Resumed::Asked(id, requests));
        }
        let mut call = call;
        for p in call.pending.drain(..) {
            let _ = p.reply.send(Ok(responses[&p.key].clone()));
        }
        Ok(Resumed::Running(call.running))
    }

    /// Waits for `running`'s answer or its next questions: those `caps`
    /// (the retry's own capabilities) cover park the call again; `ct`
    /// cancels it (the host gave the request up).
    pub(super) async fn next_step(
        self: &Arc<Self>,
        mut running: Running,
        caps: &ClientCapabilities,
        ct: &CancellationToken,
    ) -> Result<Step, ErrorData> {
        let server = running.server.clone();
        loop {
            tokio::select! {
                biased;
                done = &mut running.done => {
                    let (sent_with, r) = done.map_err(|_| ErrorData::internal_error(
                        format!("the call to server {server:?} ended without an answer"),
                        None,
                    ))?;
                    return Ok(Step::Done(Box::new((sent_with, r))));
                }
                Some(q) = running.asks.recv() => {
                    let mut questions = vec![q];
                    while questions.len() < BOUNDS.requests
                        && let Ok(q) = running.asks.try_recv()
                    {
                        questions.push(q);
                    }
                    let pending = gate(&server, caps, questions);
                    if pending.is_empty() {
                        continue;
                    }
                    let (id, requests) = self.park_call(ParkedCall { running, pending })?;
                    return Ok(Step::Asked(id, requests));
                }
                _ = ct.cancelled() => {
                    running.cancel.cancel();
                    return Err(ErrorData::internal_error(
                        "request not finished: cancelled by the agent host",
                        None,
                    ));
                }
            }
        }
    }

    /// Gives up parked call `id`, if it is still waiting (its retry was
    /// denied, or could not be served).
    pub(super) fn abandon(&self, id: &str, why: &str) {
        if let Some(call) = self.take(id) {
            call.abandon(why);
        }
    }
}

/// What the wait for a running call came to.
pub(super) enum Step {
    /// The call ended: the permit it was sent with, and its answer (boxed:
    /// a result is large, and this travels through futures).
    Done(Box<(Permit, Result<ServerResult, ErrorData>)>),
    /// The upstream asked: the call is parked under this id, with these
    /// questions for the host.
    Asked(String, InputRequests),
}

/// What a retry made of its parked call.
pub(super) enum Resumed {
    /// Answered, and running again.
    Running(Running),
    /// An answer was missing: parked again (a new id), to be asked again.
    Asked(String, InputRequests),
}

/// The answer to a retry whose parked call is gone (given up after its
/// wait, or its session ended): wherever the retry landed.
pub(super) fn no_longer_waiting(server: &str) -> ErrorData {
    ErrorData::invalid_params(
        format!(
            "the input round this retry answers is no longer waiting at server {server:?} (it was given up when the host did not retry in time, or its session ended); send the request again without requestState"
        ),
        None,
    )
}

/// The reference a parked round's sealed state carries: the instance that
/// holds the call, and its id there.
fn parked_ref(id: &str) -> String {
    format!("{}/{id}", crate::audit::record::instance_id())
}

/// The instance (when named) and the id of a parked round's reference.
pub(super) fn split_ref(r: &str) -> (Option<&str>, &str) {
    match r.split_once('/') {
        Some((at, id)) => (Some(at), id),
        None => (None, r),
    }
}

impl Session {
    /// Forwards a modern host's round-capable `request` to the legacy
    /// upstream `server`, or resumes the call its retry answers — here, or
    /// through the instance that holds it (`handoff.rs`); the upstream's
    /// answer, or its next question as a round.
    pub(super) async fn forward_parked(
        &self,
        server: &str,
        permit: Permit,
        request: ClientRequest,
        cx: &RequestContext<RoleServer>,
        round: &HostRound,
    ) -> Result<Forwarded, ErrorData> {
        // The retry of a URL round makes the original call again, unless
        // the user declined a URL (the upstream would only ask again).
        if let Some(keys) = round.reissue()
            && let Some((key, action)) = super::url_round::declined(&keys, round)
        {
            return Err(ErrorData::invalid_params(
                format!(
                    "the user answered {action:?} to the URL server {server:?} asked to be opened (input {key:?}), so gavel did not make the call again; send the request again without requestState to start over"
                ),
                Some(serde_json::json!({"server": server, "input": key, "action": action})),
            ));
        }
        let (running, permit) = match round.parked().map(split_ref) {
            None => (self.start_parked(server, permit, request, cx), None),
            Some((Some(at), id)) if at != crate::audit::record::instance_id() => {
                return self
                    .resume_elsewhere(server, permit, (at, id), cx, round)
                    .await;
            }
            Some((_, id)) => {
                let target = cx
                    .meta
                    .get_progress_token()
                    .map(|t| Target::Host(t, cx.peer.clone()));
                self.inner.parked.follow(id, target);
                match self.inner.parked.resume(id, server, &round.responses)? {
                    Resumed::Running(running) => (running, Some(permit)),
                    Resumed::Asked(id, requests) => {
                        return self.parked_round(round, None, &id, requests);
                    }
                }
            }
        };
        let step = self
            .inner
            .parked
            .next_step(running, &round.caps, &cx.ct)
            .await?;
        match step {
            Step::Done(done) => {
                let (sent_with, r) = *done;
                // A retry's answer comes with the retry's own permit.
                self.parked_done(round, permit.unwrap_or(sent_with), r)
                    .await
            }
            Step::Asked(id, requests) => self.parked_round(round, None, &id, requests),
        }
    }

    /// A parked call's end as the host's answer: -32042 is no answer for a
    /// modern host, but a URL round.
    pub(super) async fn parked_done(
        &self,
        round: &HostRound,
        permit: Permit,
        r: Result<ServerResult, ErrorData>,
    ) -> Result<Forwarded, ErrorData> {
        match r {
            Err(e) if e.code == super::url_round::URL_ELICITATION_REQUIRED => {
                self.url_round(&round.call(), round, e).await
            }
            r => Ok(Outcome::Done(permit, r?)),
        }
    }

    /// The round that asks the host a parked call's questions: its state
    /// sealed for this request, naming the call — on instance `at`, or here.
    /// Past the cap on a request's rounds the call is given up instead
    /// (its upstream call cancelled, its questions refused) and the host
    /// told why.
    pub(super) fn parked_round(
        &self,
        round: &HostRound,
        at: Option<&str>,
        id: &str,
        requests: InputRequests,
    ) -> Result<Forwarded, ErrorData> {
        let inner = match at {
            Some(at) => format!("{at}/{id}"),
            None => parked_ref(id),
        };
        let number = round.next_round().inspect_err(|_| {
            self.abandon_parked(
                &inner,
                "the host's request reached gavel's cap on input rounds",
            );
        })?;
        let state = self
            .inner
            .gw
            .sealer
            .seal(&round.binding(), Kind::Parked, Some(inner), number);
        Ok(Outcome::Input(InputRequiredResult::new(
            Some(requests),
            Some(state),
        )))
    }

    /// Runs the upstream call on its own task: it outlives this request
    /// when the upstream asks something.
    fn start_parked(
        &self,
        server: &str,
        permit: Permit,
        request: ClientRequest,
        cx: &RequestContext<RoleServer>,
    ) -> Running {
        let up = self
            .router()
            .ok()
            .and_then(|r| r.upstreams.get(server).cloned());
        let timeout = park_timeout(up.map_or(Duration::from_secs(60), |u| u.cfg.call_timeout));
        let (asks_tx, asks) = mpsc::channel(BOUNDS.requests);
        let (done_tx, done) = oneshot::channel();
        let cancel = self.inner.shutdown.child_token();
        let mut call_cx = cx.clone();
        call_cx.ct = cancel.clone();
        let progress = ProgressRoute::default();
        call_cx.extensions.insert(progress.clone());
        let session = self.clone();
        let name = server.to_string();
        tokio::spawn(async move {
            let r = session
                .forward_asking(&name, &permit, request, &call_cx, Some(asks_tx))
                .await;
            let _ = done_tx.send((permit, r));
        });
        Running {
            asks,
            done,
            cancel,
            server: server.to_string(),
            timeout,
            progress,
        }
    }
}

/// The questions this request can take, keyed: each needs a capability
/// this request (only this one) declares; the others are refused to the
/// upstream here.
fn gate(server: &str, caps: &ClientCapabilities, questions: Vec<Question>) -> Vec<Pending> {
    let mut pending = Vec::new();
    for (n, q) in questions.into_iter().enumerate() {
        let method = method_of(&q.request);
        match Needs::of(&q.request) {
            Some(need) if need.declared(caps) => pending.push(Pending {
                key: format!("{server}.{}", n + 1),
                request: q.request,
                reply: q.reply,
            }),
            need => {
                let what = need.map_or("a capability gavel does not know", Needs::name);
                let _ = q.reply.send(Err(refused(
                    server,
                    method,
                    &format!("the host's request did not declare the {what} capability"),
                )));
            }
        }
    }
    pending
}

#[cfg(test)]
#[path = "parked_tests.rs"]
mod tests;
