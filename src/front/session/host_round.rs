//! What a 2026-07-28 host's `tools/call`, `prompts/get` or `resources/read`
//! brings to an input round (MRTR, SEP-2322): this request's own
//! capabilities, and — on a retry — the round its `requestState` names.
//!
//! The state is gavel's own ([`crate::host::seal`]): it is opened once per
//! request, here, before the request is decided — MAC first, then expiry
//! and the binding to this principal, server, method, target and
//! arguments, then the host's `inputResponses` bounded (`relay::RESPONSES`)
//! — and its nonce is spent then (in Redis too when instances share
//! rounds), so a state answers one retry whatever happens next (a denied
//! retry included). A state that does not
//! open refuses the request (-32602, naming why: altered, expired, issued
//! for other arguments, already used) before anything is decided or sent.
//! A legacy request takes no part: its round fields are made up and are
//! dropped (`rounds::without_round_fields`).
//!
//! What the opened round is for is its kind: gavel's approval question
//! (`host::approval_round`), a legacy upstream's question parked with its
//! call (`parked.rs`), a legacy upstream's -32042 whose retry re-issues the
//! call (`url_round.rs`), or a modern upstream's own round relayed (its state
//! inside, for the relay).

use rmcp::ErrorData;
use rmcp::model::{ClientCapabilities, InputResponses};
use rmcp::service::{RequestContext, RoleServer};

use super::Session;
use crate::decision::{Action, ActionType};
use crate::host::approval_round::{self, APPROVAL_KEY, RoundApproval};
use crate::host::seal::{Binding, Kind, Opened, args_digest};
use crate::upstream::rounds::{MAX_INPUT_ROUNDS, too_many_rounds};

/// One 2026-07-28 request's part in an input round.
#[derive(Debug)]
pub(super) struct HostRound {
    /// This request's own capabilities (never an earlier request's).
    pub caps: ClientCapabilities,
    principal: String,
    server: String,
    method: &'static str,
    target: String,
    args: [u8; 32],
    /// The round this request answers, opened and spent.
    opened: Option<Opened>,
    /// The host's answers (`inputResponses`), by key.
    pub responses: InputResponses,
}

impl HostRound {
    /// What a state sealed for this request is bound to.
    pub fn binding(&self) -> Binding<'_> {
        Binding {
            principal: &self.principal,
            server: &self.server,
            method: self.method,
            target: &self.target,
            args: self.args,
        }
    }

    /// The request, for messages (its target as the host named it).
    pub fn call(&self) -> crate::upstream::rounds::Call<'_> {
        crate::upstream::rounds::Call {
            server: &self.server,
            method: self.method,
            target: &self.target,
        }
    }

    /// The number a round sealed for this request takes: one past the
    /// round it answers (1 for a request that answers none). The count
    /// travels in the sealed state, under its MAC, so a host cannot reset
    /// it; past [`MAX_INPUT_ROUNDS`] (the SDKs' own cap) no round is sealed
    /// and the request ends with an error naming the server and the call —
    /// whatever the round would have carried is dropped by the caller (a
    /// relayed upstream state is not sealed, a parked call is given up).
    pub fn next_round(&self) -> Result<u32, ErrorData> {
        let n = self.answered_round().saturating_add(1);
        if n as usize > MAX_INPUT_ROUNDS {
            let call = self.call();
            tracing::warn!(server = %self.server, method = self.method, target = %self.target, "a request reached the cap of {MAX_INPUT_ROUNDS} input rounds: refused");
            return Err(too_many_rounds(&call, MAX_INPUT_ROUNDS));
        }
        Ok(n)
    }

    /// The number of the round this request answers (0: none).
    fn answered_round(&self) -> u32 {
        self.opened.as_ref().map_or(0, |o| o.round)
    }

    /// The upstream's own state of a relayed round this retry answers
    /// (`Some(None)`: the upstream gave none), with the host's answers.
    pub fn relayed(&self) -> Option<(Option<&str>, &InputResponses)> {
        match &self.opened {
            Some(o) if o.kind == Kind::Relay => Some((o.inner.as_deref(), &self.responses)),
            _ => None,
        }
    }

    /// `inputResponses` sent with no `requestState`: answers to no round
    /// gavel issued, which a modern upstream may take for questions it
    /// would have asked without a state (the conformance suite sends such
    /// answers, and a server SHOULD use what it recognizes). Bounded like
    /// any answers, and never gavel's own keys (`gavel.`), which only a
    /// sealed round of gavel's answers.
    pub fn volunteered(&self) -> Option<InputResponses> {
        if self.opened.is_some() || self.responses.is_empty() {
            return None;
        }
        let own = |k: &str| k.starts_with("gavel.");
        let r: InputResponses = self
            .responses
            .iter()
            .filter(|(k, _)| !own(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        (!r.is_empty()).then_some(r)
    }

    /// The parked call this retry answers, if it answers one.
    pub fn parked(&self) -> Option<&str> {
        match &self.opened {
            Some(o) if o.kind == Kind::Parked => o.inner.as_deref(),
            _ => None,
        }
    }

    /// The keys of the URL round (a legacy upstream's -32042) this retry
    /// answers, if it answers one: the original call is made again.
    pub fn reissue(&self) -> Option<Vec<String>> {
        match &self.opened {
            Some(o) if o.kind == Kind::Reissue => Some(
                o.inner
                    .as_deref()
                    .and_then(|i| serde_json::from_str(i).ok())
                    .unwrap_or_default(),
            ),
            _ => None,
        }
    }

    /// What the approval step reads of this request: whether it may ask
    /// (this request declares form elicitation) and, on the retry of an
    /// approval round, the host's answer.
    pub fn approval<'a>(&'a self, sealer: &'a crate::host::seal::Sealer) -> RoundApproval<'a> {
        let answered = matches!(&self.opened, Some(o) if o.kind == Kind::Approval);
        RoundApproval {
            seal: Some((sealer, self.binding())),
            round: self.next_round().map_err(|_| {
                format!(
                    "this request already took {MAX_INPUT_ROUNDS} input rounds, gavel's cap on MCP input rounds; send it again as a new request to be asked again"
                )
            }),
            can_ask: approval_round::declares_form(&self.caps),
            answer: answered
                .then(|| self.responses.get(APPROVAL_KEY).cloned())
                .flatten(),
            // A parked call of this very request is past its approval:
            // it was made only after the approval (if the policy asked
            // for one) was given for these exact arguments, and it is still
            // running. The re-issue of a call its upstream refused until
            // the user opened a URL is not: it is a new call, and the
            // decision made again for it (counters have moved, a bundle
            // may have changed) may ask for an approval the first did not.
            continuing: self.parked().is_some(),
            unasked: None,
        }
    }
}

/// The MCP method of a request that may take a round.
fn round_method(action: &Action) -> Option<&'static str> {
    match action.kind {
        ActionType::ToolCall => Some("tools/call"),
        ActionType::PromptGet => Some("prompts/get"),
        ActionType::ResourceRead => Some("resources/read"),
        _ => None,
    }
}

impl Session {
    /// The part `action`'s request plays in an input round, when it is a
    /// 2026-07-28 request (`None` for a legacy one): `state` and
    /// `responses` are the request's `requestState` and `inputResponses`,
    /// taken off it by the caller (they never go upstream).
    pub(super) async fn host_round(
        &self,
        action: &Action,
        cx: &RequestContext<RoleServer>,
        (state, responses): (Option<String>, Option<InputResponses>),
    ) -> Result<Option<HostRound>, ErrorData> {
        let (Some(_), Some(method)) = (
            crate::front::era::modern_version(&cx.meta),
            round_method(action),
        ) else {
            return Ok(None);
        };
        let mut round = HostRound {
            caps: cx.meta.client_capabilities().unwrap_or_default(),
            principal: self.principal(action),
            server: action.server.clone(),
            method,
            target: action.tool.clone(),
            args: args_digest(action.args.as_object()),
            opened: None,
            responses: responses.unwrap_or_default(),
        };
        let refuse = |e: &dyn std::fmt::Display| {
            // The state itself is never logged.
            tracing::warn!(server = %action.server, method, target = %action.tool, "refused an input-round retry: {e}");
            ErrorData::invalid_params(
                format!(
                    "{method} {:?} of server {:?}: {e}",
                    action.tool, action.server
                ),
                Some(
                    serde_json::json!({"server": action.server, "method": method, "target": action.tool}),
                ),
            )
        };
        // Verified, then the answers bounded, and only then spent (in
        // Redis too when instances share rounds): an oversized answer
        // costs the host only its retry.
        let sealer = &self.inner.gw.sealer;
        let opened = match &state {
            Some(state) => Some(
                sealer
                    .open(state, &round.binding())
                    .map_err(|e| refuse(&e))?,
            ),
            None => None,
        };
        super::relay::check_responses(&round.responses, &super::relay::RESPONSES)
            .map_err(|e| refuse(&e))?;
        if let Some(opened) = opened {
            sealer.spend(&opened).await.map_err(|e| refuse(&e))?;
            round.opened = Some(opened);
        }
        Ok(Some(round))
    }

    /// Who a round is bound to: the request's own verified identity (HTTP
    /// with `[auth]`), else the session's, else the configured one — user
    /// and agent, the pair a decision is made for.
    fn principal(&self, action: &Action) -> String {
        let enforcer = &self.inner.gw.enforcer;
        let id = action
            .era
            .identity
            .clone()
            .or_else(|| self.inner.state.identity.get().cloned());
        let id = id.as_deref().unwrap_or(enforcer.configured_identity());
        // A separator no id can hold ambiguously: ids are compared whole.
        format!("{}\u{1f}{}", id.user.id, id.agent.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::seal::Kind;

    fn round(responses: serde_json::Value, opened: Option<Kind>) -> HostRound {
        HostRound {
            caps: ClientCapabilities::default(),
            principal: "p".into(),
            server: "s".into(),
            method: "tools/call",
            target: "t".into(),
            args: [0; 32],
            opened: opened.map(|kind| Opened {
                kind,
                inner: None,
                nonce: "n".into(),
                expires_ms: 1,
                round: 1,
            }),
            responses: serde_json::from_value(responses).unwrap(),
        }
    }

    /// A parked call's retry continues an approved, running call; the
    /// re-issue after a URL round is a new call, asked again if its
    /// decision asks.
    #[test]
    fn only_a_parked_retry_is_past_its_approval() {
        let sealer = crate::host::seal::Sealer::new(crate::host::seal::SealKey::random());
        let mut parked = round(serde_json::json!({}), Some(Kind::Parked));
        parked.opened.as_mut().unwrap().inner = Some("p-1".into());
        assert!(parked.approval(&sealer).continuing);
        let reissue = round(serde_json::json!({}), Some(Kind::Reissue));
        assert!(!reissue.approval(&sealer).continuing);
        assert!(
            !round(serde_json::json!({}), None)
                .approval(&sealer)
                .continuing
        );
    }

    /// A request's rounds are numbered on from the one it answers, up to
    /// the cap; past it, the error names the server and the call.
    #[test]
    fn rounds_are_numbered_on_and_capped() {
        assert_eq!(round(serde_json::json!({}), None).next_round().unwrap(), 1);
        let mut r = round(serde_json::json!({}), Some(Kind::Relay));
        r.opened.as_mut().unwrap().round = MAX_INPUT_ROUNDS as u32 - 1;
        assert_eq!(r.next_round().unwrap(), MAX_INPUT_ROUNDS as u32);
        r.opened.as_mut().unwrap().round = MAX_INPUT_ROUNDS as u32;
        let e = r.next_round().unwrap_err();
        assert!(
            e.message.contains("tool \"t\" of server \"s\"")
                && e.message.contains("after 10 rounds"),
            "{e:?}"
        );
        r.opened.as_mut().unwrap().round = u32::MAX;
        assert!(r.next_round().is_err(), "no overflow back under the cap");
    }

    /// Answers sent with no state go on without gavel's own keys; answers
    /// to a sealed round are that round's, never volunteered.
    #[test]
    fn volunteered_answers_never_carry_gavels_keys() {
        let answer = serde_json::json!({"action": "accept"});
        let r = round(
            serde_json::json!({"confirm": answer, "gavel.approval": answer}),
            None,
        );
        let v = r.volunteered().unwrap();
        assert_eq!(v.keys().collect::<Vec<_>>(), ["confirm"]);
        assert!(
            round(serde_json::json!({"gavel.approval": answer}), None)
                .volunteered()
                .is_none()
        );
        assert!(
            round(serde_json::json!({"confirm": answer}), Some(Kind::Relay))
                .volunteered()
                .is_none()
        );
        assert!(round(serde_json::json!({}), None).volunteered().is_none());
    }
}
