//! The session's side of the one gate (`host::authorize`): the action a
//! request is decided as, what of the request it carries (era, trace
//! span), and the decision with its approval settled — the permit to
//! forward with, or the denial. Apart from `mod.rs` (the session's state
//! and its forward path) because every handler's first step is here and
//! the last is there: decided, then sent.

use rmcp::service::{RequestContext, RoleServer};
use serde_json::{Value, json};

use super::{Session, host_round};
use crate::decision::{Action, ActionType, Permit};
use crate::host::approval_round::Gate;
use crate::sync::Recover;

impl Session {
    /// The action a request at `server` is decided as: its kind, target and
    /// arguments, whether the server's tool annotations are trusted; what
    /// only the request knows is added by [`Self::describe`].
    pub(super) fn action(&self, kind: ActionType, server: &str, tool: &str, args: Value) -> Action {
        let trusted = self
            .inner
            .gw
            .config
            .servers
            .get(server)
            .is_some_and(|s| s.annotations_trusted);
        Action {
            kind,
            server: server.to_string(),
            tool: tool.to_string(),
            args,
            annotations: json!({}),
            annotations_trusted: trusted,
            tool_digest: None,
            upstream_data_classes: vec![],
            trace: None,
            era: Default::default(),
        }
    }

    /// Decides `action` and settles any human approval its decision asks
    /// for (the one gate of both directions, [`crate::host::authorize`]):
    /// the permit to forward with, or the denial to answer.
    /// With `[telemetry]`, the action is decided in a span of the trace the
    /// request's `_meta` `traceparent` names (or of a new trace).
    pub(super) async fn authorize(
        &self,
        mut action: Action,
        cx: &RequestContext<RoleServer>,
    ) -> Result<Permit, crate::decision::Decision> {
        self.describe(&mut action, cx);
        self.authorize_ref(&action, cx).await
    }

    /// What of the request `action` carries besides its own fields: the
    /// protocol era it came in, and with `[telemetry]` the span it is
    /// decided in (see [`Self::authorize`]).
    pub(super) fn describe(&self, action: &mut Action, cx: &RequestContext<RoleServer>) {
        if self.inner.gw.enforcer.tracer().is_some() {
            action.trace = Some(trace_context(cx));
        }
        action.era = crate::front::era::request_era(cx);
    }

    /// [`Self::authorize`] keeping the action (described first with
    /// [`Self::describe`]): a request that may take input rounds is decided
    /// again, as itself, for each retry (`rounds`).
    pub(super) async fn authorize_ref(
        &self,
        action: &Action,
        cx: &RequestContext<RoleServer>,
    ) -> Result<Permit, crate::decision::Decision> {
        match self.authorize_round(action, cx, None).await {
            Ok(p) => Ok(p),
            Err(Gate::Denied(d)) => Err(d),
            Err(Gate::Ask(_)) => unreachable!("no input round was offered"),
        }
    }

    /// [`Self::authorize_ref`] for a 2026-07-28 request's part in an input
    /// round (`host_round.rs`): an approval is asked through one, and a
    /// denied retry gives up the parked call it would have continued.
    pub(super) async fn authorize_round(
        &self,
        action: &Action,
        cx: &RequestContext<RoleServer>,
        round: Option<&host_round::HostRound>,
    ) -> Result<Permit, Gate> {
        let approval = round.map(|r| r.approval(&self.inner.gw.sealer));
        let r = crate::host::authorize::authorize_round(
            &self.inner.gw.enforcer,
            &self.inner.host,
            &self.inner.state,
            action,
            cx.meta.get_progress_token(),
            approval.as_ref(),
        )
        .await;
        let d = match &r {
            Ok(p) => Some(&p.decision),
            Err(Gate::Denied(d)) => Some(d),
            Err(Gate::Ask(_)) => None,
        };
        if let Some(d) = d {
            self.inner.given.lock().recover().keep(d, &action.server);
        }
        if let (Err(Gate::Denied(_)), Some(id)) = (&r, round.and_then(|r| r.parked())) {
            self.abandon_parked(id, "the host's retry was denied by the policy");
        }
        r
    }
}

/// The span context of a request: the `_meta` `traceparent` (MCP's
/// convention, SEP-414) when there is one, else, over HTTP, the W3C
/// `traceparent`/`tracestate` headers (what HTTP clients instrumented by
/// OpenTelemetry send); a new trace otherwise.
fn trace_context(cx: &RequestContext<RoleServer>) -> crate::telemetry::SpanContext {
    use crate::telemetry::SpanContext;
    let meta = &cx.meta.0.0;
    if meta.contains_key("traceparent") {
        return SpanContext::for_request(Some(meta));
    }
    let Some(parts) = cx.extensions.get::<http::request::Parts>() else {
        return SpanContext::for_request(None);
    };
    // One header each (a repeated traceparent is invalid: ignored).
    let header = |name: &str| {
        let mut values = parts.headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (Some(v), None) => v.to_str().ok().map(|s| Value::String(s.to_string())),
            _ => None,
        }
    };
    let mut from_http = serde_json::Map::new();
    for name in ["traceparent", "tracestate"] {
        if let Some(v) = header(name) {
            from_http.insert(name.into(), v);
        }
    }
    SpanContext::for_request(Some(&from_http))
}
