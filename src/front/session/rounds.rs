//! `tools/call`, `prompts/get` and `resources/read` forwarded, with the
//! input rounds a modern upstream may answer them with driven through this
//! legacy host (`upstream::rounds`, reference §2.3 shape 3): each input
//! request becomes a real request to the host (`host::inputs`), and each
//! retry is decided again here, as the request it is, before it is sent.
//! A modern host answers a modern upstream's rounds itself: `relay` passes
//! them on, sealed. A modern host's request at a legacy upstream runs so
//! that the upstream's questions become input rounds of the host's own
//! (`parked.rs`); otherwise this is `forward` and nothing more.

use std::sync::Arc;

use rmcp::ErrorData;
use rmcp::model::{
    ClientRequest, ErrorCode, InitializeRequestParams, InputRequest, InputRequiredResult,
    ServerResult,
};
use rmcp::service::{RequestContext, RoleServer};
use serde_json::Value;

use super::Session;
use super::host_round::HostRound;
use crate::decision::{Action, Decision, Permit};
use crate::upstream::era::Spoken;
use crate::upstream::rounds::{self, Call, Outcome, RoundIo};

/// A forwarded request's end.
pub(super) type Forwarded = Outcome<Permit, Decision>;

/// A legacy host's `initialize`: one that opened with it (rmcp keeps its
/// parameters as the peer's info) takes requests from gavel and knows
/// nothing of rounds. A 2026-07-28 request has none (rmcp makes one up for
/// a stateless HTTP request: its envelope says which it is).
fn legacy_host(cx: &RequestContext<RoleServer>) -> Option<Arc<InitializeRequestParams>> {
    if crate::front::era::modern_version(&cx.meta).is_some() {
        return None;
    }
    cx.peer.peer_info()
}

/// No host is given an upstream's own round state to answer with (a legacy
/// host's rounds are driven by gavel; a modern host's carry gavel's sealed
/// state, opened before the request is decided, `host_round.rs`), so
/// `inputResponses` or `requestState` on a request never reach the
/// upstream, which would take a forged state or forged answers as its own.
fn without_round_fields(request: &mut ClientRequest) {
    crate::upstream::rounds::set_round_fields(request, None, None);
}

/// An upstream's -32021 (it needs a capability the request did not
/// declare: the legacy host's, which gavel declares for it) names the
/// server and the call for a host that cannot know either.
pub(super) fn named(call: &Call<'_>, e: ErrorData) -> ErrorData {
    if e.code != ErrorCode::MISSING_REQUIRED_CLIENT_CAPABILITY {
        return e;
    }
    let required = e
        .data
        .as_ref()
        .and_then(|d| d.get("requiredCapabilities"))
        .cloned();
    let need = required
        .as_ref()
        .and_then(Value::as_object)
        .map(|o| o.keys().cloned().collect::<Vec<_>>().join(" and "))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "a".to_string());
    let mut out = rounds::missing_capability(call, &need, required);
    out.message = format!("{} (the server said: {})", out.message, e.message).into();
    out
}

impl Session {
    /// Forwards `request` (allowed by `permit`, decided as `action`) and,
    /// for a legacy host and a modern upstream, drives the upstream's input
    /// rounds to the end. The final answer comes with the permit that got
    /// it (a retry's own), or the denial of a retry.
    pub(super) async fn forward_call(
        &self,
        server: &str,
        permit: Permit,
        action: &Action,
        mut request: ClientRequest,
        cx: &RequestContext<RoleServer>,
        round: Option<&HostRound>,
    ) -> Result<Forwarded, ErrorData> {
        // A modern host and a modern upstream: the round is the host's to
        // answer, relayed with a sealed state (`relay`).
        if super::relay::relays(self, server, cx).await {
            return self
                .relay_call(server, permit, action, request, cx, round)
                .await;
        }
        let host = legacy_host(cx);
        without_round_fields(&mut request);
        let up = self.router()?.upstreams.get(server).cloned();
        let modern = up
            .as_ref()
            .and_then(|u| u.connection())
            .is_some_and(|c| c.era == Spoken::Modern);
        // A modern host's request at a legacy upstream: its questions
        // become this host's input rounds.
        if let Some(round) = round
            && !modern
            && rounds::round_method(&request).is_some()
        {
            return self
                .forward_parked(server, permit, request, cx, round)
                .await;
        }
        let (Some(host), true, Some(method), Some(up)) =
            (host, modern, rounds::round_method(&request), up)
        else {
            let r = self.forward(server, &permit, request, cx).await?;
            return Ok(Outcome::Done(permit, r));
        };
        let call = Call {
            server,
            method,
            target: &action.tool,
        };
        let first = self
            .forward(server, &permit, request.clone(), cx)
            .await
            .map_err(|e| named(&call, e))?;
        let io = SessionRounds {
            session: self,
            action,
            cx,
            call,
            timeout: up.cfg.call_timeout,
        };
        rounds::drive(
            &io,
            &call,
            &host.capabilities,
            &request,
            (permit, first),
            rounds::MAX_INPUT_ROUNDS,
        )
        .await
    }
}

/// The session's side of one request's rounds.
struct SessionRounds<'a> {
    session: &'a Session,
    action: &'a Action,
    cx: &'a RequestContext<RoleServer>,
    call: Call<'a>,
    timeout: std::time::Duration,
}

impl RoundIo for SessionRounds<'_> {
    type Permit = Permit;
    type Denial = Decision;

    async fn ask(&self, _key: &str, request: InputRequest) -> Result<Value, ErrorData> {
        let inner = &self.session.inner;
        crate::host::inputs::Asker {
            enforcer: &inner.gw.enforcer,
            host: &inner.host,
            session: &inner.state,
            server: self.call.server,
            ct: &self.cx.ct,
            timeout: self.timeout,
        }
        .ask(request)
        .await
    }

    /// The round passes the result step as it would on its way to a
    /// 2026-07-28 host: counted as result bytes (and tokens, for a tool
    /// call) and decided by the server's result rule, redacted or withheld.
    /// The host's era does not change what the policy sees.
    fn screen(
        &self,
        permit: &Permit,
        requests: Vec<(String, InputRequest)>,
    ) -> Result<Vec<(String, InputRequest)>, Decision> {
        let order: Vec<String> = requests.iter().map(|(k, _)| k.clone()).collect();
        let round = InputRequiredResult::new(Some(requests.into_iter().collect()), None);
        let count = self.call.method == "tools/call";
        let mut left = self
            .session
            .round_step(&permit.round_gate(), round, None, count)
            .map_err(|d| *d)?
            .input_requests
            .unwrap_or_default();
        // The upstream's order, which the host is asked in; a key the
        // result rule added (it cannot, but the rule is not trusted) last.
        let mut out: Vec<(String, InputRequest)> = order
            .into_iter()
            .filter_map(|k| left.remove(&k).map(|r| (k, r)))
            .collect();
        out.extend(left);
        Ok(out)
    }

    /// The retry is the request again: decided as it, by the same gate
    /// (policy, limits, budget, approval), on the same arguments.
    async fn decide_retry(&self) -> Result<Permit, Decision> {
        self.session.authorize_ref(self.action, self.cx).await
    }

    async fn send(
        &self,
        permit: &Permit,
        request: ClientRequest,
    ) -> Result<ServerResult, ErrorData> {
        self.session
            .forward(self.call.server, permit, request, self.cx)
            .await
            .map_err(|e| named(&self.call, e))
    }
}
