//! A legacy upstream's `-32042` (URL elicitation required) toward a
//! 2026-07-28 host (reference §1.5, §2.3 shape 2 last paragraph,
//! checklist B9).
//!
//! A 2025-11-25 server that needs the user to open a URL before it can
//! answer fails the call with -32042, `data.elicitations` listing the URLs;
//! its client opens them and calls again. The 2026-07-28 revision removed
//! the error (it MUST NOT be emitted) in favour of input rounds: so a
//! modern host's `tools/call`, `prompts/get` or `resources/read` that a
//! legacy upstream answers with -32042 is answered `input_required`, one
//! URL-mode `elicitation/create` per elicitation (keys gavel's own, the
//! message and the full URL as the upstream gave them, its
//! `elicitationId` dropped: 2026-07-28 has none), and a state sealed as
//! [`Kind::Reissue`]. Each elicitation is decided first, as the
//! `elicitation_request` it is (the policy that governs an upstream's
//! `elicitation/create` governs its -32042 too). The host's retry is decided
//! again as any retry; answered, it makes the ORIGINAL call again (the
//! round's fields never go upstream) — the upstream learns from its own
//! flow whether the URL was opened, and may answer -32042 again (another
//! round). A retry whose answers decline or cancel a URL is not made again.
//!
//! Whatever cannot become a round — this request does not declare URL-mode
//! elicitation, the method takes no round, the error's data is malformed or
//! oversized, or the policy refuses a URL — is answered as a clear error
//! naming the server (-32021 with `requiredCapabilities` when a capability
//! is what is missing); -32042 itself never reaches a modern host
//! ([`never_to_modern`]).

use rmcp::ErrorData;
use rmcp::model::{
    ElicitRequest, ElicitRequestParams, ErrorCode, InputRequest, InputRequests, InputRequiredResult,
};
use serde_json::{Value, json};

use super::Session;
use super::host_round::HostRound;
use super::rounds::Forwarded;
use crate::decision::{Action, ActionType, deny};
use crate::host::seal::Kind;
use crate::upstream::rounds::{BOUNDS, Call, Needs, Outcome, missing_capability};

/// The code a 2025-11-25 server fails a call with when the user must open
/// a URL first.
pub const URL_ELICITATION_REQUIRED: ErrorCode = ErrorCode(-32042);

/// Bytes of one elicitation's URL and of its message: a sign-in URL with
/// its query fits; anything longer is not passed to a person.
pub const MAX_URL_BYTES: usize = 8 * 1024;
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024;

/// One URL the upstream wants opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlElicitation {
    pub message: String,
    pub url: String,
}

/// `data.elicitations` of a -32042, checked: at least one, at most
/// `BOUNDS.requests`, each URL mode with an `http(s)` URL of printable
/// ASCII and a message, both bounded. `Err`: what is
/// wrong, for the host's error.
pub fn elicitations(data: Option<&Value>) -> Result<Vec<UrlElicitation>, String> {
    let list = data
        .and_then(|d| d.get("elicitations"))
        .and_then(Value::as_array)
        .ok_or("its data has no elicitations list")?;
    if list.is_empty() || list.len() > BOUNDS.requests {
        return Err(format!(
            "it lists {} elicitations (gavel passes 1 to {})",
            list.len(),
            BOUNDS.requests
        ));
    }
    list.iter()
        .enumerate()
        .map(|(n, e)| one(e).map_err(|why| format!("elicitation {}: {why}", n + 1)))
        .collect()
}

fn one(e: &Value) -> Result<UrlElicitation, String> {
    if e.get("mode").and_then(Value::as_str) != Some("url") {
        return Err("its mode is not \"url\"".into());
    }
    let field = |name: &str, max: usize| -> Result<String, String> {
        let v = e
            .get(name)
            .and_then(Value::as_str)
            .ok_or(format!("it has no {name}"))?;
        if v.len() > max {
            return Err(format!("its {name} is {} bytes (at most {max})", v.len()));
        }
        Ok(v.to_string())
    };
    let url = field("url", MAX_URL_BYTES)?;
    let lower = url.get(..8).unwrap_or(&url).to_ascii_lowercase();
    let scheme = lower.starts_with("https://") || lower.starts_with("http://");
    // Printable ASCII only: a person reads the URL before opening it, and
    // spaces, controls or bidirectional marks would disguise where it goes.
    if !scheme || !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            "its url is not an http(s) URL of printable ASCII (non-ASCII must be percent-encoded)"
                .into(),
        );
    }
    Ok(UrlElicitation {
        message: field("message", MAX_MESSAGE_BYTES)?,
        url,
    })
}

/// The round's key for elicitation `n` (0-based) of `server`.
fn key(server: &str, n: usize) -> String {
    format!("{server}.url.{}", n + 1)
}

/// The upstream's -32042 as an error a modern host may get: one that says
/// which server needs what, and `why` no round could carry it.
pub fn never_to_modern(server: &str, method: &str, e: &ErrorData, why: &str) -> ErrorData {
    ErrorData::internal_error(
        format!(
            "server {server:?} needs the user to open a URL before it answers {method} ({why}); the request was not completed (the server said: {})",
            e.message
        ),
        Some(json!({"server": server, "method": method})),
    )
}

/// Whether a retry's answers to the URL round `keys` decline or cancel
/// one: the key and the action, if so. A missing answer declines nothing
/// (the upstream judges whether its URL was opened).
pub fn declined<'a>(keys: &'a [String], round: &HostRound) -> Option<(&'a str, String)> {
    keys.iter().find_map(|k| {
        let action = round.responses.get(k)?.get("action")?.as_str()?;
        (action != "accept").then(|| (k.as_str(), action.to_string()))
    })
}

impl Session {
    /// A legacy upstream's -32042 `e` to this modern request of `call`:
    /// the URL round, or the clear error when it cannot be one.
    pub(super) async fn url_round(
        &self,
        call: &Call<'_>,
        round: &HostRound,
        e: ErrorData,
    ) -> Result<Forwarded, ErrorData> {
        let (server, method) = (call.server, call.method);
        // An upstream that keeps sending the user to URLs is capped like
        // any that keeps asking.
        let number = round.next_round()?;
        let list = elicitations(e.data.as_ref()).map_err(|why| {
            never_to_modern(
                server,
                method,
                &e,
                &format!("gavel cannot pass its -32042 on: {why}"),
            )
        })?;
        if !Needs::ElicitationUrl.declared(&round.caps) {
            let mut out = missing_capability(
                call,
                Needs::ElicitationUrl.name(),
                Some(json!({"elicitation": {"url": {}}})),
            );
            out.message = format!("{} (the server said: {})", out.message, e.message).into();
            return Err(out);
        }
        let mut requests = InputRequests::new();
        let mut keys = Vec::with_capacity(list.len());
        for (n, u) in list.into_iter().enumerate() {
            let params = ElicitRequestParams::UrlElicitationParams {
                meta: None,
                message: u.message,
                url: u.url,
                elicitation_id: String::new(),
            };
            self.decide_url(server, &params).await?;
            keys.push(key(server, n));
            requests.insert(
                key(server, n),
                InputRequest::Elicitation(ElicitRequest::new(params)),
            );
        }
        tracing::info!(
            server,
            method,
            urls = keys.len(),
            "a legacy upstream's -32042 became a URL input round"
        );
        let inner = serde_json::to_string(&keys).unwrap_or_default();
        let state = self
            .inner
            .gw
            .sealer
            .seal(&round.binding(), Kind::Reissue, Some(inner), number);
        Ok(Outcome::Input(InputRequiredResult::new(
            Some(requests),
            Some(state),
        )))
    }

    /// One URL decided as the upstream's `elicitation/create` would be: a
    /// denial is the host's error, naming the server.
    async fn decide_url(
        &self,
        server: &str,
        params: &ElicitRequestParams,
    ) -> Result<(), ErrorData> {
        let inner = &self.inner;
        let action = Action {
            kind: ActionType::ElicitationRequest,
            server: server.to_string(),
            tool: "elicitation/create".into(),
            args: serde_json::to_value(params).unwrap_or(Value::Null),
            annotations: json!({}),
            annotations_trusted: inner.gw.enforcer.annotations_trusted(server),
            tool_digest: None,
            upstream_data_classes: vec![],
            trace: None,
            era: Default::default(),
        };
        crate::host::authorize::authorize(
            &inner.gw.enforcer,
            &inner.host,
            &inner.state,
            &action,
            None,
        )
        .await
        .map(drop)
        .map_err(|d| {
            deny::request_denial(
                &d,
                &format!("the URL elicitation (-32042) from server {server:?}"),
            )
        })
    }
}

#[cfg(test)]
#[path = "url_round_tests.rs"]
mod tests;
