//! What an upstream can make gavel hold, bounded. rmcp's service loop reads
//! the upstream as fast as it can and spawns one task per notification and
//! per request, each waiting for the host: a server flooding
//! `notifications/message` grew gavel past a gigabyte in seconds, a host
//! reading as fast as it could included. [`Bounded`] wraps the client
//! handler and lets at most [`MAX_NOTIFICATIONS_IN_FLIGHT`] notifications
//! and [`MAX_REQUESTS_IN_FLIGHT`] upstream→host requests wait at once per
//! upstream; past that, a notification is dropped (counted in
//! `gavel_upstream_messages_dropped_total` and logged at most once a second
//! with the count) and a request is refused on its id. List changes are
//! coalesced instead ([`ListChanges`]): one re-fetch per kind covers any
//! number of announcements. The other queues from an upstream are bounded
//! where they are made: stderr lines (`child`, a capped line and tail, written
//! as read), replies (answered on the caller's id; oversized ones refused by
//! the transport), and writes to a peer that does not read (`transport::line`).

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{ClientConfig, ClientResult, ErrorData, ServerNotification, ServerRequest};
use rmcp::service::{NotificationContext, RequestContext, RoleClient, Service};
use tokio::sync::{Notify, Semaphore};

use super::client::{ListKind, UpstreamClient};

use crate::sync::Recover;

/// Notifications of one upstream on their way to the host at once. A host
/// that keeps up never sees the bound; one that does not loses the excess
/// (progress and log lines are advisory; what matters — results — never
/// passes through here).
pub const MAX_NOTIFICATIONS_IN_FLIGHT: usize = 64;
/// Upstream→host requests (sampling, elicitation, roots, ping) of one
/// upstream being handled at once; each may wait for a human.
pub const MAX_REQUESTS_IN_FLIGHT: usize = 16;
/// At most one log line a second about dropped messages per upstream.
const DROP_LOG_EVERY: Duration = Duration::from_secs(1);

/// The upstream's client handler with its queues bounded (module doc).
pub struct Bounded {
    inner: UpstreamClient,
    notifications: Semaphore,
    requests: Semaphore,
    drops: DropLog,
}

impl Bounded {
    pub fn new(inner: UpstreamClient) -> Self {
        Self {
            drops: DropLog::new(inner.server.clone()),
            inner,
            notifications: Semaphore::new(MAX_NOTIFICATIONS_IN_FLIGHT),
            requests: Semaphore::new(MAX_REQUESTS_IN_FLIGHT),
        }
    }
}

/// Notifications that cost nothing to handle and must not be lost: list
/// changes (coalesced by [`ListChanges`]) and cancellations (rmcp acts on
/// them itself; the handler does nothing).
fn exempt(n: &ServerNotification) -> bool {
    matches!(
        n,
        ServerNotification::ToolListChangedNotification(_)
            | ServerNotification::ResourceListChangedNotification(_)
            | ServerNotification::PromptListChangedNotification(_)
            | ServerNotification::CancelledNotification(_)
    )
}

fn method(r: &ServerRequest) -> &str {
    match r {
        ServerRequest::PingRequest(_) => "ping",
        ServerRequest::CreateMessageRequest(_) => "sampling/createMessage",
        ServerRequest::ListRootsRequest(_) => "roots/list",
        ServerRequest::ElicitRequest(_) => "elicitation/create",
        ServerRequest::CustomRequest(c) => c.method.as_str(),
        _ => "a request",
    }
}

impl Service<RoleClient> for Bounded {
    async fn handle_request(
        &self,
        request: ServerRequest,
        context: RequestContext<RoleClient>,
    ) -> Result<ClientResult, ErrorData> {
        let Ok(_permit) = self.requests.try_acquire() else {
            self.drops.request();
            return Err(ErrorData::internal_error(
                format!(
                    "gavel refused {} from server {:?}: {MAX_REQUESTS_IN_FLIGHT} of its requests to the agent host are already waiting; retry after they are answered",
                    method(&request),
                    self.inner.server
                ),
                None,
            ));
        };
        Service::handle_request(&self.inner, request, context).await
    }

    async fn handle_notification(
        &self,
        notification: ServerNotification,
        context: NotificationContext<RoleClient>,
    ) -> Result<(), ErrorData> {
        if exempt(&notification) {
            return Service::handle_notification(&self.inner, notification, context).await;
        }
        let Ok(_permit) = self.notifications.try_acquire() else {
            if let ServerNotification::ProgressNotification(p) = &notification {
                // Handled, as far as the result waiting behind it is concerned.
                self.inner.progress.forwarded(&p.params.progress_token);
            }
            self.drops.notification();
            return Ok(());
        };
        self.drops.summarize();
        Service::handle_notification(&self.inner, notification, context).await
    }

    fn get_info(&self) -> ClientConfig {
        Service::get_info(&self.inner)
    }
}

/// Counts drops and says so in the log, boundedly: the first drop of an
/// episode and then a summary at most once per [`DROP_LOG_EVERY`].
struct DropLog {
    server: Arc<str>,
    notifications: AtomicU64,
    requests: AtomicU64,
    /// Dropped since the last log line; when that line was written.
    unreported: AtomicU64,
    last_line: Mutex<Option<Instant>>,
}

impl DropLog {
    fn new(server: Arc<str>) -> Self {
        Self {
            server,
            notifications: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            unreported: AtomicU64::new(0),
            last_line: Mutex::new(None),
        }
    }

    fn notification(&self) {
        self.notifications.fetch_add(1, Ordering::Relaxed);
        crate::audit::metrics::global().upstream_dropped(&self.server, "notification");
        self.unreported.fetch_add(1, Ordering::Relaxed);
        self.summarize();
    }

    fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        crate::audit::metrics::global().upstream_dropped(&self.server, "request");
        tracing::warn!(
            server = %self.server,
            "refused a request from the upstream: {MAX_REQUESTS_IN_FLIGHT} of its requests to the host are already waiting"
        );
    }

    /// Logs the drops not yet reported, if the last line is old enough.
    fn summarize(&self) {
        if self.unreported.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut last = self.last_line.lock().recover();
        if last.is_some_and(|t| t.elapsed() < DROP_LOG_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        let n = self.unreported.swap(0, Ordering::Relaxed);
        tracing::warn!(
            server = %self.server,
            dropped = n,
            total = self.notifications.load(Ordering::Relaxed),
            "dropped notifications from the upstream: it sends them faster than the agent host takes them ({MAX_NOTIFICATIONS_IN_FLIGHT} may wait at once)"
        );
    }
}

/// Announced list changes, coalesced: a set of pending kinds, not a queue.
/// Any number of `list_changed` notifications between two re-fetches cost one
/// re-fetch per kind (an unbounded channel held every one, and re-fetched the
/// list once per announcement).
#[derive(Default)]
pub struct ListChanges {
    pending: AtomicU8,
    wake: Notify,
}

fn bit(kind: ListKind) -> u8 {
    match kind {
        ListKind::Tools => 1,
        ListKind::Resources => 2,
        ListKind::Prompts => 4,
    }
}

impl ListChanges {
    pub fn announce(&self, kind: ListKind) {
        self.pending.fetch_or(bit(kind), Ordering::AcqRel);
        // Stores a wake-up if nobody waits yet: none is lost.
        self.wake.notify_one();
    }

    /// The kinds announced since the last call, waiting for one.
    pub async fn next(&self) -> Vec<ListKind> {
        loop {
            let bits = self.pending.swap(0, Ordering::AcqRel);
            if bits != 0 {
                return [ListKind::Tools, ListKind::Resources, ListKind::Prompts]
                    .into_iter()
                    .filter(|k| bits & bit(*k) != 0)
                    .collect();
            }
            self.wake.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn list_changes_coalesce() {
        let c = ListChanges::default();
        for _ in 0..10_000 {
            c.announce(ListKind::Tools);
        }
        c.announce(ListKind::Prompts);
        assert_eq!(c.next().await, vec![ListKind::Tools, ListKind::Prompts]);
        // Nothing more is pending: the next call waits for a new announcement.
        assert!(futures::FutureExt::now_or_never(c.next()).is_none());
        c.announce(ListKind::Resources);
        assert_eq!(c.next().await, vec![ListKind::Resources]);
    }
}
