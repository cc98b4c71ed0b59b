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
//! When the upstream offers `resources.subscribe`, the same stream carries
//! the resource URIs gavel's hosts follow on it (a 2026-07-28 host's
//! listen, `front/session/listen_resources.rs`) in its
//! `resourceSubscriptions`; the stream is opened again whenever that set
//! changes, and its `resources/updated` frames go to the hosts that follow
//! the URI (`client::resource_updated`).
//!
//! A stream that ends (the server closed it, the transport dropped, gavel
//! fell behind) is opened again with backoff for as long as the connection
//! lives; every kind it carries is re-listed then, since a change may have
//! come while it was closed. An upstream that refuses the listen itself
//! (-32601, -32602) is not asked again on this connection. A restarted upstream gets a new connection and
//! a new stream with it, carrying the URIs still followed; a restarted
//! legacy upstream is sent their `resources/subscribe` again instead
//! ([`resubscribe`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{ErrorCode, ServerCapabilities, ServerNotification, SubscriptionFilter};
use rmcp::service::{Peer, RoleClient};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::bounded::ListChanges;
use super::client::ListKind;
use super::shared::SharedRoute;
use crate::host::link::HostLink;

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How long an upstream's readiness waits for its first listen to be
/// acknowledged (at most its `startup_timeout`). Listing after the
/// acknowledgement means no change in between is missed; but a listen is
/// only the upstream's change feed, and one that is slow or never
/// acknowledged (a server that answers it in a shape the client cannot
/// read, one that holds it) must not keep every call to a working server
/// waiting. Past this bound the upstream is made ready from its lists, and
/// a late acknowledgement re-lists every kind it covers
/// ([`Listen::run`]), which closes the same gap.
pub const READY_WAIT: Duration = Duration::from_secs(3);

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
    /// The list kinds it advertises changes of (`filter`), if any.
    pub filter: Option<SubscriptionFilter>,
    /// When it offers `resources.subscribe`: the URIs gavel's hosts follow
    /// on it ([`super::Upstream::follow_resource`]); the stream is opened
    /// again with the new set whenever it changes (a listen's filter is
    /// fixed for its life).
    pub uris: Option<watch::Receiver<BTreeSet<String>>>,
    pub changes: Arc<ListChanges>,
    /// Where its `resources/updated` go (`client::resource_updated`).
    pub host: Arc<HostLink>,
    pub shared: Option<Arc<SharedRoute>>,
    pub ct: CancellationToken,
    /// How long the upstream may take to acknowledge a listen.
    pub ack_timeout: Duration,
}

/// Why an open stream stopped.
enum Ended {
    /// Gone (ended, failed): opened again after a backoff.
    Dropped(String),
    /// The followed URIs changed: opened again at once with the new set.
    Refollow,
    /// gavel let go of the connection.
    Cancelled,
}

impl Listen {
    /// The filter to open with now: the list kinds and the followed URIs;
    /// `None` when there is nothing to listen for.
    fn current(&mut self) -> Option<SubscriptionFilter> {
        let mut f = self.filter.clone().unwrap_or_default();
        if let Some(rx) = &mut self.uris {
            let uris = rx.borrow_and_update();
            if !uris.is_empty() {
                f.resource_subscriptions = Some(uris.iter().cloned().collect());
            }
        }
        (f != SubscriptionFilter::new()).then_some(f)
    }

    /// Waits for the followed URIs to change; `false` when they never can
    /// (no subscriptions offered) or gavel let go.
    async fn uris_changed(&mut self) -> bool {
        let Some(rx) = &mut self.uris else {
            return false;
        };
        tokio::select! {
            r = rx.changed() => r.is_ok(),
            _ = self.ct.cancelled() => false,
        }
    }

    /// Runs the stream, opened again after each end. `opened` is told when
    /// the first attempt is over (acknowledged or failed, or nothing to
    /// listen for yet): the supervisor lists after that, so no change
    /// between the listing and the acknowledgement is missed. When the
    /// supervisor stopped waiting first ([`READY_WAIT`]: `opened` finds no
    /// receiver) it has listed already, so that acknowledgement announces
    /// its kinds like every later one: the lists are fetched again.
    pub async fn run(mut self, opened: oneshot::Sender<()>) {
        let mut opened = Some(opened);
        let mut backoff = FIRST_BACKOFF;
        let mut first = true;
        loop {
            let Some(filter) = self.current() else {
                if let Some(tx) = opened.take() {
                    let _ = tx.send(());
                }
                if !self.uris_changed().await {
                    return;
                }
                continue;
            };
            let attempt = tokio::select! {
                r = tokio::time::timeout(self.ack_timeout, self.peer.listen(filter)) => r,
                _ = self.ct.cancelled() => return,
            };
            let listed_before = match opened.take() {
                Some(tx) => tx.send(()).is_err(),
                None => true,
            };
            match attempt {
                Ok(Ok(sub)) => {
                    backoff = FIRST_BACKOFF;
                    if !first || listed_before {
                        for k in kinds(sub.acknowledged()) {
                            self.changes.announce(k);
                        }
                    }
                    first = false;
                    tracing::debug!(server = %self.server, acknowledged = ?sub.acknowledged(), "listening");
                    match self.follow(sub).await {
                        Ended::Cancelled => return,
                        Ended::Refollow => continue,
                        Ended::Dropped(why) => {
                            tracing::info!(server = %self.server, "subscriptions/listen: {why}; opening it again in {backoff:?}");
                        }
                    }
                }
                Ok(Err(rmcp::ServiceError::McpError(e)))
                    if e.code == ErrorCode::METHOD_NOT_FOUND
                        || e.code == ErrorCode::INVALID_PARAMS =>
                {
                    // It advertises list changes but refuses to send them:
                    // asking again would not change its mind.
                    tracing::warn!(server = %self.server, "it refused subscriptions/listen ({}: {}); its list changes and resource updates are not followed until it restarts", e.code.0, e.message);
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

    /// Reads one open stream until it stops: list changes announced,
    /// resource updates passed on to the hosts that follow them.
    async fn follow(&mut self, mut sub: rmcp::service::Subscription) -> Ended {
        let mut uris = self.uris.clone();
        let ended = loop {
            let next = tokio::select! {
                n = sub.next() => n,
                _ = self.ct.cancelled() => break Ended::Cancelled,
                Some(true) = async { match &mut uris {
                    Some(rx) => Some(rx.changed().await.is_ok()),
                    None => std::future::pending().await,
                } } => break Ended::Refollow,
            };
            match next {
                Ok(Some(ServerNotification::ResourceUpdatedNotification(n))) => {
                    super::client::resource_updated(&self.host, self.shared.as_ref(), n.params)
                        .await;
                }
                Ok(Some(n)) => {
                    if let Some(k) = kind(&n) {
                        self.changes.announce(k);
                    }
                }
                Ok(None) => break Ended::Dropped(format!("it ended ({:?})", sub.end())),
                Err(e) => break Ended::Dropped(format!("it failed: {e}")),
            }
        };
        if !matches!(ended, Ended::Dropped(_)) {
            let _ = sub.cancel().await;
        }
        ended
    }
}

/// A restarted legacy upstream's subscriptions back: every URI gavel's
/// hosts follow on it ([`super::Upstream::follow_resource`], kept across
/// restarts) is sent `resources/subscribe` again on the new connection —
/// the child that crashed forgot them — before the upstream is marked
/// ready, so an update after its return reaches the listens (and legacy
/// hosts) that still follow it. The same set a 2026-07-28 upstream's new
/// listen carries ([`Listen::current`]): one record, two ways to restore
/// it. Each is bounded by `timeout`; one that fails is logged, and a host
/// that subscribes to it again retries it.
#[allow(deprecated)] // `resources/subscribe` is what a legacy upstream has.
pub(super) async fn resubscribe(
    up: &super::Upstream,
    peer: &Peer<RoleClient>,
    caps: &ServerCapabilities,
    timeout: Duration,
) {
    if caps.resources.as_ref().and_then(|r| r.subscribe) != Some(true) {
        return;
    }
    let uris: Vec<String> = up.followed.borrow().iter().cloned().collect();
    if uris.is_empty() {
        return;
    }
    let sends = uris.iter().map(|uri| async move {
        let params = rmcp::model::SubscribeRequestParams::new(uri.clone());
        match tokio::time::timeout(timeout, peer.subscribe(params)).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::warn!(server = %up.name, uri = %crate::text::escape_controls(uri), "resources/subscribe again after the restart failed: {e}; its updates do not arrive until a host subscribes again");
                false
            }
            Err(_) => {
                tracing::warn!(server = %up.name, uri = %crate::text::escape_controls(uri), "resources/subscribe again after the restart got no answer within {timeout:?}");
                false
            }
        }
    });
    let done = futures::future::join_all(sends).await;
    let ok = done.iter().filter(|&&ok| ok).count();
    tracing::info!(server = %up.name, subscribed = ok, of = uris.len(), "resource subscriptions restored after a restart");
}

#[cfg(test)]
#[path = "listen_tests.rs"]
mod tests;
