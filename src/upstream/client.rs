//! gavel as an MCP client of one upstream: what the upstream sends back —
//! progress, logging, list changes, resource updates, and its own requests to
//! the host (sampling, elicitation, roots) — is passed on to the host.
// Legacy-era features (sampling, roots, logging, resources/subscribe) are deprecated in MCP
// 2026-07-28 (SEP-2577) but are exactly what the 2024-11-05 … 2025-11-25 era gavel serves.
#![allow(deprecated)]

use std::sync::Arc;
use std::time::Duration;

use rmcp::ClientHandler;
use rmcp::model::{
    ClientConfig, ClientResult, CreateMessageRequest, CreateMessageRequestParams,
    CreateMessageResult, CustomNotification, ElicitRequest, ElicitRequestParams, ElicitResult,
    ErrorData, ListRootsResult, LoggingMessageNotificationParam, ProgressNotificationParam,
    ResourceUpdatedNotificationParam, ServerNotification, ServerRequest,
};
use rmcp::model::{GetExtensions, GetMeta};
use rmcp::service::{NotificationContext, RequestContext, RoleClient};
use serde_json::Value;

use crate::decision::{Action, ActionType, Enforcer, Permit, deny};
use crate::host::link::HostLink;

pub use super::progress::ProgressMap;

/// A 2026-07-28 host's side: questions as input rounds.
#[path = "client_rounds.rs"]
mod in_rounds;

/// List kinds an upstream can announce changes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Tools,
    Resources,
    Prompts,
}

pub struct UpstreamClient {
    pub server: Arc<str>,
    /// Prefix for `notifications/message` loggers (None when only one server).
    pub logger_prefix: Option<String>,
    pub host: Arc<HostLink>,
    pub enforcer: Arc<Enforcer>,
    pub session: Arc<crate::decision::SessionState>,
    pub progress: Arc<ProgressMap>,
    /// Coalesced: a flood of announcements is one re-fetch per kind.
    pub list_changed: Arc<super::bounded::ListChanges>,
    pub info: ClientConfig,
    pub call_timeout: Duration,
    /// `session_mode = "shared"`: route to the session with a call in flight.
    pub shared: Option<Arc<super::shared::SharedRoute>>,
}

impl UpstreamClient {
    /// The host session an upstream→host request is for.
    fn target(&self) -> Result<(Arc<HostLink>, Arc<crate::decision::SessionState>), ErrorData> {
        match &self.shared {
            None => Ok((self.host.clone(), self.session.clone())),
            Some(route) => route
                .target(&self.server)
                .map(|o| (o.host.clone(), o.session.clone()))
                .map_err(|m| ErrorData::invalid_request(m, None)),
        }
    }

    /// Every host a notification goes to.
    fn hosts(&self) -> Vec<Arc<HostLink>> {
        match &self.shared {
            None => vec![self.host.clone()],
            Some(route) => route.owners().iter().map(|o| o.host.clone()).collect(),
        }
    }

    /// Authorizes an upstream→host request for `session` through the one gate
    /// both directions pass ([`crate::host::authorize`]: decision, then any
    /// human approval): the permit `HostLink::forward_request` requires.
    /// With `[telemetry]`, decided in a span of the trace the upstream's
    /// `_meta` `traceparent` names.
    async fn authorize(
        &self,
        host: &HostLink,
        session: &Arc<crate::decision::SessionState>,
        kind: ActionType,
        method: &str,
        args: Value,
        meta: &rmcp::model::RequestMetaObject,
    ) -> Result<Permit, ErrorData> {
        let action = self.question_action(kind, method, args, meta);
        crate::host::authorize::authorize(&self.enforcer, host, session, &action, None)
            .await
            .map_err(|d| {
                deny::request_denial(&d, &format!("{method} from server {:?}", self.server))
            })
    }

    /// `params` of the question `method` on their way to a legacy host, as
    /// the result step leaves them (`decision::result::question`: the host's
    /// era does not change what the policy sees), counted as result bytes;
    /// or the error the upstream gets for a question withheld.
    fn screened<T>(
        &self,
        session: &crate::decision::SessionState,
        permit: &Permit,
        method: &str,
        params: T,
    ) -> Result<T, ErrorData>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        let gate = permit.round_gate();
        let value = serde_json::to_value(&params).unwrap_or(Value::Null);
        session.add_result_bytes(serde_json::to_vec(&value).map_or(0, |b| b.len()));
        if !gate.decides() {
            return Ok(params);
        }
        let what = format!("{method} from server {:?}", self.server);
        let kept = self
            .enforcer
            .decide_question(&gate, method, value)
            .map_err(|d| deny::request_denial(&d, &what))?;
        serde_json::from_value(kept).map_err(|e| {
            ErrorData::internal_error(
                format!("{what} could not be passed on as the result policy left it ({e}); it is withheld"),
                None,
            )
        })
    }

    /// The action this upstream's `method` request (`kind`, on `args`) is
    /// decided as.
    pub(super) fn question_action(
        &self,
        kind: ActionType,
        method: &str,
        args: Value,
        meta: &rmcp::model::RequestMetaObject,
    ) -> Action {
        let trace = self
            .enforcer
            .tracer()
            .map(|_| crate::telemetry::SpanContext::for_request(Some(&meta.0.0)));
        Action {
            kind,
            server: self.server.to_string(),
            tool: method.to_string(),
            args,
            annotations: serde_json::json!({}),
            annotations_trusted: self.enforcer.annotations_trusted(&self.server),
            tool_digest: None,
            upstream_data_classes: vec![],
            trace,
            era: Default::default(),
        }
    }
}

impl ClientHandler for UpstreamClient {
    fn get_info(&self) -> ClientConfig {
        self.info.clone()
    }

    // Awaited boxed for the reason `front::era::front::EraFront` gives:
    // rmcp copies the handler's future per spawned request.
    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        cx: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let (host, session) = self.target()?;
        if host.is_modern() {
            return Box::pin(self.sample_in_round((&host, &session), params, &cx)).await;
        }
        if host.capabilities().sampling.is_none() {
            return Err(host.cannot_relay("sampling"));
        }
        let permit = Box::pin(self.authorize(
            &host,
            &session,
            ActionType::SamplingRequest,
            "sampling/createMessage",
            serde_json::to_value(&params).unwrap_or(Value::Null),
            &cx.meta,
        ))
        .await?;
        let params = self.screened(&session, &permit, "sampling/createMessage", params)?;
        let req = ServerRequest::CreateMessageRequest(CreateMessageRequest::new(params));
        match Box::pin(host.forward_request(&permit, req, &cx, self.call_timeout)).await? {
            ClientResult::CreateMessageResult(r) => Ok(*r),
            other => Err(crate::host::inputs::unexpected(
                "sampling/createMessage",
                other,
            )),
        }
    }

    async fn list_roots(
        &self,
        cx: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        let (host, _) = self.target()?;
        if host.is_modern() {
            return Box::pin(self.roots_in_round(&host, &cx)).await;
        }
        if host.capabilities().roots.is_none() {
            return Err(host.cannot_relay("roots"));
        }
        Box::pin(host.list_roots(&cx, self.call_timeout)).await
    }

    async fn create_elicitation(
        &self,
        params: ElicitRequestParams,
        cx: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let (host, session) = self.target()?;
        if host.is_modern() {
            return Box::pin(self.elicit_in_round((&host, &session), params, &cx)).await;
        }
        if host.capabilities().elicitation.is_none() {
            return Err(host.cannot_relay("elicitation"));
        }
        let permit = Box::pin(self.authorize(
            &host,
            &session,
            ActionType::ElicitationRequest,
            "elicitation/create",
            serde_json::to_value(&params).unwrap_or(Value::Null),
            &cx.meta,
        ))
        .await?;
        let params = self.screened(&session, &permit, "elicitation/create", params)?;
        let req = ServerRequest::ElicitRequest(ElicitRequest::new(params));
        match Box::pin(host.forward_request(&permit, req, &cx, self.call_timeout)).await? {
            ClientResult::ElicitResult(r) => Ok(r),
            other => Err(crate::host::inputs::unexpected("elicitation/create", other)),
        }
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _cx: NotificationContext<RoleClient>,
    ) {
        let host_token = self
            .progress
            .lock()
            .await
            .get(&params.progress_token)
            .and_then(super::progress::Route::target);
        // Progress for a token gavel did not hand out (or whose call is over) is
        // dropped: the host never asked for it. It goes to the peer that asked.
        let upstream_token = params.progress_token.clone();
        match host_token {
            Some(super::progress::Target::Host(token, peer)) => {
                let mut p = params;
                p.progress_token = token;
                let _ = peer.notify_progress(p).await;
            }
            Some(super::progress::Target::Relay(relay)) => relay(params),
            None => {}
        }
        // The call's result may be waiting for this one (`ProgressMap::settle`).
        self.progress.forwarded(&upstream_token);
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _cx: NotificationContext<RoleClient>,
    ) {
        let mut p = params;
        if let Some(prefix) = &self.logger_prefix {
            p.logger = Some(match p.logger {
                Some(l) => format!("{prefix}/{l}"),
                None => prefix.clone(),
            });
        }
        let hosts = self.hosts();
        // Each legacy host gets what it asked for: an upstream shared by
        // several is set to the most verbose of their levels
        // (`send_set_level`).
        for host in hosts
            .iter()
            .filter(|h| !h.is_modern() && h.wants_log(p.level))
        {
            if let Some(peer) = host.peer() {
                let _ = peer.notify_logging_message(p.clone()).await;
            }
        }
        // A modern host's request gets the messages of its own call, on its
        // own stream, at or above the level it set — when gavel can tell
        // which call a message is for (one call in flight that asked);
        // otherwise nobody does.
        let sinks: Vec<_> = hosts
            .iter()
            .filter(|h| h.is_modern())
            .flat_map(|h| h.questions.log_sinks(&self.server))
            .take(2)
            .collect();
        match sinks.as_slice() {
            [one] if p.level as u8 >= one.min as u8 => {
                let _ = one.peer.notify_logging_message(p).await;
            }
            [_] => {}
            [] => {}
            _ => {
                tracing::debug!(server = %self.server, "dropped a log message: several requests in flight asked for this server's log messages, and it names none")
            }
        }
        // The call's result may be waiting for this line (`settle_logs`).
        self.progress.handled_log();
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _cx: NotificationContext<RoleClient>,
    ) {
        resource_updated(&self.host, self.shared.as_ref(), params).await;
    }

    async fn on_tool_list_changed(&self, _cx: NotificationContext<RoleClient>) {
        self.list_changed.announce(ListKind::Tools);
    }

    async fn on_resource_list_changed(&self, _cx: NotificationContext<RoleClient>) {
        self.list_changed.announce(ListKind::Resources);
    }

    async fn on_prompt_list_changed(&self, _cx: NotificationContext<RoleClient>) {
        self.list_changed.announce(ListKind::Prompts);
    }

    /// rmcp hands over here every upstream→host request it could not parse
    /// — a standard method with malformed params included. Neither reaches
    /// the host: a malformed standard request cannot be decided (its params
    /// are what the policy reads) and is refused as invalid params; an
    /// unknown method has no policy path and is not found.
    async fn on_custom_request(
        &self,
        request: rmcp::model::CustomRequest,
        _cx: RequestContext<RoleClient>,
    ) -> Result<rmcp::model::CustomResult, ErrorData> {
        let method = request.method.as_str();
        if UPSTREAM_SPEC_METHODS.contains(&method) {
            tracing::warn!(server = %self.server, method, "refused a malformed request from the upstream");
            return Err(ErrorData::invalid_params(
                format!(
                    "Invalid params for {method}: the request does not match the MCP schema (check field names and types); gavel did not pass it to the host"
                ),
                None,
            ));
        }
        Err(ErrorData::new(
            rmcp::model::ErrorCode::METHOD_NOT_FOUND,
            format!(
                "Method not found: {method} (gavel passes only the standard server-to-client requests to the host)"
            ),
            None,
        ))
    }

    async fn on_custom_notification(
        &self,
        notification: CustomNotification,
        cx: NotificationContext<RoleClient>,
    ) {
        // Unknown notifications pass through unchanged (transparency). rmcp
        // moves the notification's extensions — where a custom notification
        // keeps its `_meta` — into the context: put them back.
        if notification.method == "notifications/message" {
            // A log line rmcp could not read as one: counted as handled
            // (`settle_logs`), and passed on as any unknown notification.
            self.progress.handled_log();
        }
        let mut notification = notification;
        let NotificationContext {
            meta, extensions, ..
        } = cx;
        *notification.extensions_mut() = extensions;
        if !meta.0.is_empty() {
            notification.get_meta_mut().extend(meta);
        }
        // A modern host is sent nothing unsolicited; and the end of a URL
        // elicitation (`notifications/elicitation/complete`, gone in
        // 2026-07-28) is told by the call it belongs to, re-issued
        // (`front/session/url_round.rs`).
        for host in self.hosts().into_iter().filter(|h| !h.is_modern()) {
            if let Some(peer) = host.peer() {
                let _ = peer
                    .send_notification(ServerNotification::CustomNotification(notification.clone()))
                    .await;
            }
        }
    }
}

/// An upstream's `resources/updated` (a legacy one's notification, a
/// modern one's listen frame) to the hosts that follow its URI: the
/// upstream's own host, or for a shared upstream the sessions subscribed.
pub(super) async fn resource_updated(
    host: &Arc<HostLink>,
    shared: Option<&Arc<super::shared::SharedRoute>>,
    params: ResourceUpdatedNotificationParam,
) {
    let hosts = match shared {
        None => vec![host.clone()],
        Some(route) => route
            .subscribers(&params.uri)
            .iter()
            .map(|o| o.host.clone())
            .collect(),
    };
    for host in hosts {
        host.resource_updated(params.clone()).await;
    }
}

/// The standard requests a server may send its client (MCP 2025-11-25).
/// Named by rmcp's method constants.
const UPSTREAM_SPEC_METHODS: &[&str] = {
    use rmcp::model::*;
    &[
        PingRequestMethod::VALUE,
        CreateMessageRequestMethod::VALUE,
        ElicitationCreateRequestMethod::VALUE,
        ListRootsRequestMethod::VALUE,
    ]
};
