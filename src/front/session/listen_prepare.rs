//! What a 2026-07-28 host's `subscriptions/listen` needs in place before
//! rmcp acknowledges it: the spec's order is subscribe, then acknowledge,
//! then deliver (reference §1.6), and an update that comes between an
//! acknowledgement and the upstream subscription it names is lost.
//!
//! rmcp decides the acknowledged subset synchronously
//! (`ServerHandler::accepted_subscription_filter`, no request context) and
//! sends the acknowledgement before it calls `listen`, so nothing awaited
//! inside the handler can come first — and gavel's single-threaded runtime
//! rules out blocking there for it. The work is therefore done *around*
//! rmcp's handler, where the request and its context are at hand: the
//! stdio front's [`Service`](rmcp::Service) (`front::era::StdioFront`)
//! runs [`Session::prepare_listen`] first — start the upstreams if this
//! is the host's first request and wait for them, decide which URIs are
//! honoured (on the blocking pool), subscribe upstream to each within
//! [`SUBSCRIBE_WAIT`] — and hands rmcp's handler the result on the
//! request's task ([`scoped`], [`current`]): the acknowledgement names
//! exactly the URIs subscribed, and the listen delivers from receivers
//! opened before the first subscribe.
//!
//! rmcp's HTTP service takes only a `ServerHandler`, whose request
//! handling cannot be wrapped: over HTTP the same work is done in the
//! handler's `listen` while `http::listen_hold` holds the acknowledgement
//! on the wire (`Session::follow_acknowledged`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{ResourceUpdatedNotificationParam, SubscriptionFilter};
use rmcp::service::{RequestContext, RoleServer};
use tokio::sync::broadcast;

use super::Session;
use super::listen::Changed;
use super::listen_resources::{Followed, bounded};

/// How long a listen's acknowledgement waits for the upstream
/// subscriptions it is to name (after the upstreams it routes to have
/// started, each within its `startup_timeout`): an upstream that has not
/// confirmed by then is not named, and its subscription, should it still
/// complete, is undone.
pub(crate) const SUBSCRIBE_WAIT: Duration = Duration::from_secs(10);

/// A listen made ready before its acknowledgement.
pub(crate) struct Prepared {
    /// The `resourceSubscriptions` subscribed upstream: what is
    /// acknowledged of them.
    pub(super) acked: Vec<String>,
    pub(super) followed: Followed,
    /// Opened before the first upstream subscribe: nothing that comes
    /// after it is missed.
    pub(super) changes: broadcast::Receiver<Changed>,
    pub(super) updates: broadcast::Receiver<Arc<ResourceUpdatedNotificationParam>>,
}

/// Where a prepared listen waits for rmcp's handler to take it.
pub(crate) type Slot = Arc<Mutex<Option<Prepared>>>;

tokio::task_local! {
    static PREPARED: Slot;
}

/// The prepared listen of the request being handled on this task, if any.
pub(crate) fn current() -> Option<Slot> {
    PREPARED.try_with(Clone::clone).ok()
}

/// Runs `f` (rmcp's handling of the listen) with `prepared` at hand.
pub(crate) async fn scoped<F: Future>(prepared: Prepared, f: F) -> F::Output {
    PREPARED
        .scope(Arc::new(Mutex::new(Some(prepared))), f)
        .await
}

impl Session {
    /// Makes one listen ready to be acknowledged (the module doc): its
    /// receivers opened, its honoured `resourceSubscriptions` subscribed.
    pub(crate) async fn prepare_listen(
        &self,
        requested: &SubscriptionFilter,
        cx: &RequestContext<RoleServer>,
    ) -> Prepared {
        // A listen may be the host's first request.
        self.serve_modern_host();
        let changes = self.inner.changes.subscribe();
        let updates = self.inner.host.resource_updates();
        let asked = bounded(
            requested
                .resource_subscriptions
                .as_deref()
                .unwrap_or_default(),
        );
        if asked.is_empty() {
            return Prepared {
                acked: Vec::new(),
                followed: Followed::none(self, cx),
                changes,
                updates,
            };
        }
        // As any first request that routes: the upstreams it started are
        // waited for (each within its startup_timeout), so their
        // resources can be honoured.
        if let Err(e) = self.wait_started().await {
            tracing::warn!(
                "resourceSubscriptions: no upstream to follow them on: {}",
                e.message
            );
        }
        let honoured = self.honoured_uris_off_loop(asked).await;
        let followed = self.follow(&honoured, cx, SUBSCRIBE_WAIT).await;
        // In the order asked.
        let acked = honoured.into_iter().filter(|u| followed.has(u)).collect();
        Prepared {
            acked,
            followed,
            changes,
            updates,
        }
    }

    /// What rmcp acknowledges of `requested`: the list kinds asked for,
    /// and of its `resourceSubscriptions` what `how` says.
    pub(crate) fn accepted_listen(
        &self,
        requested: &SubscriptionFilter,
        how: Listened<'_>,
    ) -> SubscriptionFilter {
        super::listen::accepted(requested, |asked| match how {
            Listened::Prepared(Some(p)) => p.acked.clone(),
            Listened::Prepared(None) | Listened::Unknown => Vec::new(),
            Listened::Held => bounded(asked),
            Listened::Now => self.honoured_uris(asked),
        })
    }
}

/// How a listen's `resourceSubscriptions` are acknowledged.
pub(crate) enum Listened<'a> {
    /// stdio: those subscribed before (none if the preparation is gone).
    Prepared(Option<&'a Prepared>),
    /// HTTP: every one within bounds; the acknowledgement is cut down to
    /// those followed before it leaves (`http::listen_hold`).
    Held,
    /// Not prepared nor held (not expected): decided now, on the event
    /// loop, and followed after the acknowledgement.
    Now,
    /// The session is not known: none.
    Unknown,
}
