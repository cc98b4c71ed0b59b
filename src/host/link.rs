//! The link back to the agent host: its peer handle, what it declared at
//! `initialize`, and whether it has sent `notifications/initialized` (only then
//! may gavel send it requests). Upstream→host traffic goes through here.
//!
//! A host of the MCP 2026-07-28 era never initializes: it has no session
//! peer gavel could send requests or unsolicited notifications to (the
//! revision forbids both), so such a link has gavel's own identity and no
//! the capabilities it can relay for it ([`HostLink::set_modern`]); an
//! upstream's request reaches such a host only as an input round of the
//! host's call in flight ([`HostLink::questions`], `host::questions`).
// roots/list is deprecated in MCP 2026-07-28 (SEP-2577) but is part of the
// 2024-11-05 … 2025-11-25 era gavel serves.
#![allow(deprecated)]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rmcp::model::{
    ClientCapabilities, ClientResult, ErrorCode, ErrorData, Implementation,
    InitializeRequestParams, ListRootsRequest, ListRootsResult, LoggingLevel,
    ResourceUpdatedNotificationParam, ServerRequest,
};
use rmcp::service::{Peer, PeerRequestOptions, RequestContext, RoleClient, RoleServer};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::decision::Permit;

pub struct HostLink {
    peer: OnceLock<Peer<RoleServer>>,
    params: OnceLock<InitializeRequestParams>,
    initialized: watch::Sender<bool>,
    /// Set when the host opened with 2026-07-28 requests, not `initialize`.
    modern: OnceLock<()>,
    /// The level this host set with `logging/setLevel` (legacy era): log
    /// messages below it are not sent to it, whatever level an upstream
    /// shared with other hosts was set to.
    log_level: std::sync::Mutex<Option<LoggingLevel>>,
    /// A modern host's upstream calls in flight: where an upstream's
    /// question goes (`host::questions`).
    pub questions: std::sync::Arc<super::questions::InFlight>,
    /// A modern host's `resources/updated` from its upstreams, for the
    /// listens that follow the URI (`front/session/listen_resources.rs`);
    /// bounded: a listen that falls behind is told every URI it follows
    /// changed.
    updates: broadcast::Sender<Arc<ResourceUpdatedNotificationParam>>,
}

/// How many resource updates a slow listen may fall behind.
const UPDATES_BACKLOG: usize = 64;

impl Default for HostLink {
    fn default() -> Self {
        Self {
            peer: OnceLock::new(),
            params: OnceLock::new(),
            initialized: watch::channel(false).0,
            modern: OnceLock::new(),
            log_level: Default::default(),
            questions: Default::default(),
            updates: broadcast::channel(UPDATES_BACKLOG).0,
        }
    }
}

/// Why a request to the host was cancelled: the upstream withdrew its own
/// request, or the host cancelled the request an input round belongs to.
const BY_UPSTREAM: &str = "cancelled by the upstream server";
const BY_HOST: &str = "the request this input round belongs to was cancelled";

/// How long an upstream→host request waits for the host to finish its
/// handshake before it is refused.
const INITIALIZED_WAIT: Duration = Duration::from_secs(10);

impl HostLink {
    pub fn set_initialize(&self, peer: Peer<RoleServer>, params: InitializeRequestParams) {
        let _ = self.peer.set(peer);
        let _ = self.params.set(params);
    }

    /// The host speaks MCP 2026-07-28 (it opened without `initialize`):
    /// what legacy upstreams are told at their own `initialize` is gavel's
    /// identity and what gavel can relay to such a host as an input round
    /// (MRTR, `front/session/parked.rs`): form and URL elicitation (a URL
    /// one asked as `elicitation/create` or by failing the call with
    /// -32042, `front/session/url_round.rs`), sampling and roots. A connection's capabilities cannot follow a modern host's,
    /// which are per request; each question is checked against the
    /// capabilities of the request it would answer, and refused to the
    /// upstream when that request does not declare them (an upstream that
    /// registers its asking tools only for a client that declares the
    /// capability — server-everything does — still lists them).
    pub fn set_modern(&self) {
        let caps: ClientCapabilities = serde_json::from_value(serde_json::json!({
            "elicitation": {"form": {}, "url": {}},
            "sampling": {},
            "roots": {},
        }))
        .unwrap_or_default();
        let _ = self.params.set(InitializeRequestParams::new(
            caps,
            Implementation::new("gavel", env!("CARGO_PKG_VERSION")),
        ));
        let _ = self.modern.set(());
    }

    /// Whether the host opened in the 2026-07-28 era ([`Self::set_modern`]).
    pub fn is_modern(&self) -> bool {
        self.modern.get().is_some()
    }

    /// The error an upstream's `what` request (sampling, elicitation,
    /// roots) gets when a legacy host cannot be asked: a capability it did
    /// not declare. (A modern host's are checked per request,
    /// `front/session/parked.rs`.)
    pub fn cannot_relay(&self, what: &str) -> ErrorData {
        ErrorData::new(
            ErrorCode::METHOD_NOT_FOUND,
            format!(
                "the agent host did not declare the {what} capability; gavel cannot pass this request on"
            ),
            None,
        )
    }

    /// Notes the level the host set (`logging/setLevel`).
    pub fn set_log_level(&self, level: LoggingLevel) {
        *self.log_level.lock().unwrap_or_else(|p| p.into_inner()) = Some(level);
    }

    /// The level the host set, if it did.
    pub fn log_level(&self) -> Option<LoggingLevel> {
        *self.log_level.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a log message at `level` is for this host: at or above the
    /// level it set; any, when it set none (the server decides, as the
    /// spec leaves it).
    pub fn wants_log(&self, level: LoggingLevel) -> bool {
        self.log_level().is_none_or(|min| level as u8 >= min as u8)
    }

    pub fn mark_initialized(&self) {
        self.initialized.send_replace(true);
    }

    pub fn params(&self) -> Option<&InitializeRequestParams> {
        self.params.get()
    }

    pub fn capabilities(&self) -> ClientCapabilities {
        self.params
            .get()
            .map(|p| p.capabilities.clone())
            .unwrap_or_default()
    }

    /// An upstream's `notifications/resources/updated` for this host: a
    /// legacy host gets it unsolicited (it subscribed with
    /// `resources/subscribe`), a 2026-07-28 host only on the listens that
    /// follow its URI (nothing unsolicited reaches a modern host).
    pub async fn resource_updated(&self, params: ResourceUpdatedNotificationParam) {
        if self.is_modern() {
            // No listen open: nobody follows it.
            let _ = self.updates.send(Arc::new(params));
        } else if let Some(peer) = self.peer() {
            let _ = peer.notify_resource_updated(params).await;
        }
    }

    /// The resource updates a modern host's listen reads from.
    pub fn resource_updates(&self) -> broadcast::Receiver<Arc<ResourceUpdatedNotificationParam>> {
        self.updates.subscribe()
    }

    /// The host peer, once the host may receive notifications.
    pub fn peer(&self) -> Option<&Peer<RoleServer>> {
        if *self.initialized.borrow() {
            self.peer.get()
        } else {
            None
        }
    }

    async fn ready_peer(&self) -> Result<Peer<RoleServer>, ErrorData> {
        let mut rx = self.initialized.subscribe();
        let ok = tokio::time::timeout(INITIALIZED_WAIT, rx.wait_for(|v| *v)).await;
        match (ok, self.peer.get()) {
            (Ok(Ok(_)), Some(p)) => Ok(p.clone()),
            _ => Err(ErrorData::internal_error(
                "the agent host has not completed its MCP handshake; gavel cannot pass the request on",
                None,
            )),
        }
    }

    /// Sends an upstream's decided request to the host and returns the host's
    /// answer verbatim. The [`Permit`] proves it passed the one gate
    /// ([`crate::host::authorize`]): no upstream→host request reaches the
    /// host undecided. The upstream cancelling its request cancels the host's.
    /// With `[telemetry]`, the `_meta` `traceparent` names gavel's span.
    pub async fn forward_request(
        &self,
        permit: &Permit,
        request: ServerRequest,
        upstream_cx: &RequestContext<RoleClient>,
        timeout: Duration,
    ) -> Result<ClientResult, ErrorData> {
        let mut meta = upstream_cx.meta.clone();
        if let Some(span) = &permit.span {
            span.context().propagate(&mut meta.0.0);
        }
        self.send(request, (&upstream_cx.ct, BY_UPSTREAM), meta, timeout)
            .await
    }

    /// Sends one input request of a modern upstream's round (MCP 2026-07-28
    /// MRTR, `upstream::rounds`) to this legacy host as a real request, with
    /// the [`Permit`] that decided it; `ct` is the host's own request that
    /// the round belongs to (cancelling it cancels this one).
    pub async fn forward_input(
        &self,
        permit: &Permit,
        request: ServerRequest,
        ct: &CancellationToken,
        timeout: Duration,
    ) -> Result<ClientResult, ErrorData> {
        let mut meta = rmcp::model::RequestMetaObject::default();
        if let Some(span) = &permit.span {
            span.context().propagate(&mut meta.0.0);
        }
        self.send(request, (ct, BY_HOST), meta, timeout).await
    }

    /// `roots/list` for a modern upstream's input round: plumbing, as
    /// [`Self::list_roots`] is, and built here for the same reason.
    pub async fn list_roots_input(
        &self,
        ct: &CancellationToken,
        timeout: Duration,
    ) -> Result<ListRootsResult, ErrorData> {
        let request = ServerRequest::ListRootsRequest(ListRootsRequest::default());
        match self
            .send(request, (ct, BY_HOST), Default::default(), timeout)
            .await?
        {
            ClientResult::ListRootsResult(r) => Ok(r),
            _ => Err(ErrorData::internal_error(
                "the agent host answered roots/list with a result of another kind",
                None,
            )),
        }
    }

    /// An upstream's `roots/list`, the one upstream→host request that is
    /// protocol plumbing rather than a policy decision (ARCHITECTURE.md
    /// invariant 1): it carries no parameters an upstream could use, and it is
    /// built here, so this path cannot carry anything else to the host.
    pub async fn list_roots(
        &self,
        upstream_cx: &RequestContext<RoleClient>,
        timeout: Duration,
    ) -> Result<ListRootsResult, ErrorData> {
        let request = ServerRequest::ListRootsRequest(ListRootsRequest::default());
        match self
            .send(
                request,
                (&upstream_cx.ct, BY_UPSTREAM),
                upstream_cx.meta.clone(),
                timeout,
            )
            .await?
        {
            ClientResult::ListRootsResult(r) => Ok(r),
            _ => Err(ErrorData::internal_error(
                "the agent host answered roots/list with a result of another kind",
                None,
            )),
        }
    }

    async fn send(
        &self,
        request: ServerRequest,
        (ct, why): (&CancellationToken, &str),
        meta: rmcp::model::RequestMetaObject,
        timeout: Duration,
    ) -> Result<ClientResult, ErrorData> {
        let peer = self.ready_peer().await?;
        let options = PeerRequestOptions::with_timeout(timeout).with_meta(meta);
        let handle = peer
            .send_request_with_option(request, options)
            .await
            .map_err(|e| {
                ErrorData::internal_error(format!("could not reach the agent host: {e}"), None)
            })?;
        let id = handle.id.clone();
        let host = handle.peer.clone();
        tokio::select! {
            r = handle.await_response() => r.map_err(|e| match e {
                rmcp::ServiceError::McpError(e) => e,
                other => ErrorData::internal_error(format!("agent host did not answer: {other}"), None),
            }),
            _ = ct.cancelled() => {
                let _ = host.notify_cancelled(rmcp::model::CancelledNotificationParam::new(
                    Some(id),
                    Some(why.into()),
                )).await;
                Err(ErrorData::internal_error(why.to_string(), None))
            }
        }
    }
}
