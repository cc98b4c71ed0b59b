//! List changes from a modern (MCP 2026-07-28) upstream. A modern server
//! sends no unsolicited `*/list_changed`: it sends them on a
//! `subscriptions/listen` request the client keeps open, and only the kinds
//! it asked for (reference §1.6, §2.5). gavel keeps one open per modern
//! upstream that advertises `listChanged`, for every kind it advertises,
//! and turns each frame into the same announcement a legacy upstream's
//! notification makes ([`ListChanges`]): the supervisor re-lists, the
//! session's router rebuilds its table and tells a legacy host
//! `notifications/*/list_changed` — one path for both eras. (rmcp hands a
//! listen's frames to the `Subscription`, never to the client handler's
//! `on_*_list_changed`.)
//!
//! A stream that ends (the server closed it, the transport dropped, gavel
//! fell behind) is opened again with backoff for as long as the connection
//! lives; every kind it carries is re-listed then, since a change may have
//! come while it was closed. An upstream that refuses the listen itself
//! (-32601, -32602) is not asked again on this connection. A restarted upstream gets a new connection and
//! a new stream with it.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{ErrorCode, ServerCapabilities, ServerNotification, SubscriptionFilter};
use rmcp::service::{Peer, RoleClient};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::bounded::ListChanges;
use super::client::ListKind;

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What to listen for: every list whose changes the upstream advertises;
/// `None` when it advertises none.
pub fn filter(caps: &ServerCapabilities) -> Option<SubscriptionFilter> {
    let tools = caps.tools.as_ref().and_then(|t| t.list_changed) == Some(true);
    let prompts = caps.prompts.as_ref().and_then(|p| p.list_changed) == Some(true);
    let resources = caps.resources.as_ref().and_then(|r| r.list_changed) == Some(true);
    if !(tools || prompts || resources) {
        return None;
    }
    let mut f = SubscriptionFilter::new();
    f.tools_list_changed = tools.then_some(true);
    f.prompts_list_changed = prompts.then_some(true);
    f.resources_list_changed = resources.then_some(true);
    Some(f)
}

/// The kinds a filter (as acknowledged) carries.
fn kinds(f: &SubscriptionFilter) -> Vec<ListKind> {
    let mut k = Vec::new();
    if f.tools_list_changed == Some(true) {
        k.push(ListKind::Tools);
    }
    if f.resources_list_changed == Some(true) {
        k.push(ListKind::Resources);
    }
    if f.prompts_list_changed == Some(true) {
        k.push(ListKind::Prompts);
    }
    k
}

/// The list a frame announces a change of; resource updates and anything
/// else are not asked for and not acted on.
fn kind(n: &ServerNotification) -> Option<ListKind> {
    match n {
        ServerNotification::ToolListChangedNotification(_) => Some(ListKind::Tools),
        ServerNotification::ResourceListChangedNotification(_) => Some(ListKind::Resources),
        ServerNotification::PromptListChangedNotification(_) => Some(ListKind::Prompts),
        _ => None,
    }
}

/// One modern upstream's listen, kept open until `ct` is cancelled.
pub struct Listen {
    pub server: Arc<str>,
    pub peer: Peer<RoleClient>,
    pub filter: SubscriptionFilter,
    pub changes: Arc<ListChanges>,
    pub ct: CancellationToken,
    /// How long the upstream may take to acknowledge a listen.
    pub ack_timeout: Duration,
}

impl Listen {
    /// Runs the stream, opened again after each end. `opened` is told when
    /// the first attempt is over (acknowledged or failed): the supervisor
    /// lists after that, so no change between the listing and the
    /// acknowledgement is missed.
    pub async fn run(self, opened: oneshot::Sender<()>) {
        let mut opened = Some(opened);
        let mut backoff = FIRST_BACKOFF;
        let mut first = true;
        loop {
            let attempt = tokio::select! {
                r = tokio::time::timeout(self.ack_timeout, self.peer.listen(self.filter.clone())) => r,
                _ = self.ct.cancelled() => return,
            };
            if let Some(tx) = opened.take() {
                let _ = tx.send(());
            }
            match attempt {
                Ok(Ok(mut sub)) => {
                    backoff = FIRST_BACKOFF;
                    if !first {
                        for k in kinds(sub.acknowledged()) {
                            self.changes.announce(k);
                        }
                    }
                    tracing::debug!(server = %self.server, acknowledged = ?sub.acknowledged(), "listening for list changes");
                    let why = loop {
                        let next = tokio::select! {
                            n = sub.next() => n,
                            _ = self.ct.cancelled() => {
                                let _ = sub.cancel().await;
                                return;
                            }
                        };
                        match next {
                            Ok(Some(n)) => {
                                if let Some(k) = kind(&n) {
                                    self.changes.announce(k);
                                }
                            }
                            Ok(None) => break format!("it ended ({:?})", sub.end()),
                            Err(e) => break format!("it failed: {e}"),
                        }
                    };
                    if !self.ct.is_cancelled() {
                        tracing::info!(server = %self.server, "subscriptions/listen: {why}; opening it again in {backoff:?}");
                    }
                }
                Ok(Err(rmcp::ServiceError::McpError(e)))
                    if e.code == ErrorCode::METHOD_NOT_FOUND
                        || e.code == ErrorCode::INVALID_PARAMS =>
                {
                    // It advertises list changes but refuses to send them:
                    // asking again would not change its mind.
                    tracing::warn!(server = %self.server, "it refused subscriptions/listen ({}: {}); its list changes are not followed until it restarts", e.code.0, e.message);
                    return;
                }
                Ok(Err(e)) => {
                    tracing::warn!(server = %self.server, "subscriptions/listen could not be opened: {e}; trying again in {backoff:?}");
                }
                Err(_) => {
                    tracing::warn!(server = %self.server, "subscriptions/listen was not acknowledged within {:?}; trying again in {backoff:?}", self.ack_timeout);
                }
            }
            first = false;
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.ct.cancelled() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

#[cfg(test)]
#[path = "listen_tests.rs"]
mod tests;
