//! Progress notifications of forwarded requests: where each goes, and their
//! order against the request's result.
//!
//! rmcp rewrites the progress token of every request it sends (an upstream
//! sees rmcp's own counter), so gavel keeps a route from the upstream's token
//! back to the host's token and peer. Order is the subtle part: rmcp hands
//! each incoming notification to a task of its own, while a response goes
//! straight to the waiting request, so the result of a call can overtake the
//! progress that the upstream sent before it — and a progress notification
//! handled after its call ended has no route any more and is lost (the host
//! saw a call end without its last progress: the conformance suite's
//! `tools-call-with-progress` failed now and then through gavel).
//!
//! So every line read from a stdio upstream is counted when it is a progress
//! notification (`read`, in the order the upstream wrote it), every handled
//! notification is counted too (`forwarded`), and a call whose result has
//! arrived first waits — bounded — until the progress read before it has been
//! forwarded ([`ProgressMap::settle`]). Over HTTP rmcp's client owns the
//! stream, nothing is counted, and `settle` returns at once.
//!
//! Where a call's progress goes is fixed when it is sent — the host's token
//! and peer — except for a call that outlives its request: a 2026-07-28
//! host's call parked on a legacy upstream's question
//! (`front/session/parked.rs`) answers its first request with an input
//! round and goes on for the retry, a new request with its own token. Such
//! a call is sent with a [`ProgressRoute`] (in its context's extensions)
//! that the session moves: to nowhere while the call waits, parked, then to
//! the retry that resumes it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rmcp::model::ProgressToken;
use rmcp::service::{Peer, RoleServer};

use crate::sync::Recover;

/// Where a forwarded request's progress goes.
#[derive(Clone)]
pub enum Target {
    /// The host's token, on its peer.
    Host(ProgressToken, Peer<RoleServer>),
    /// Handed on as it comes: a call resumed here for a retry that reached
    /// another instance, whose host is there (`front/session/handoff.rs`).
    Relay(std::sync::Arc<dyn Fn(rmcp::model::ProgressNotificationParam) + Send + Sync>),
}

/// A route's end: fixed when the request is sent, or a [`ProgressRoute`]
/// its session moves.
#[derive(Clone)]
pub enum Route {
    Fixed(Target),
    Moving(ProgressRoute),
}

impl Route {
    /// Where progress goes now (`None`: nowhere, it is dropped).
    pub fn target(&self) -> Option<Target> {
        match self {
            Route::Fixed(t) => Some(t.clone()),
            Route::Moving(r) => r.target(),
        }
    }
}

/// The movable end of one call's progress route (see the module doc): a
/// call sent with one in its context's extensions has its progress go
/// wherever it was last [`set`](ProgressRoute::set), at once — no await
/// between setting and the next notification.
#[derive(Clone, Default)]
pub struct ProgressRoute(std::sync::Arc<std::sync::Mutex<Option<Target>>>);

impl ProgressRoute {
    /// Sends the call's progress to `target` from now on (`None`: drops it).
    pub fn set(&self, target: Option<Target>) {
        *self.0.lock().recover() = target;
    }

    pub fn target(&self) -> Option<Target> {
        self.0.lock().recover().clone()
    }
}

/// Counts kept per upstream token at most (late or foreign progress beyond
/// this is not counted: ordering falls back to rmcp's).
const MAX_TRACKED: usize = 4096;

#[derive(Default)]
struct Counts {
    read: u64,
    forwarded: u64,
    /// A call is waiting for this token (it is removed when the call ends).
    tracked: bool,
}

/// Upstream progress token → the host's token and peer for the same call,
/// and the read/forwarded ledger that keeps a result behind its progress.
#[derive(Default)]
pub struct ProgressMap {
    /// A tokio mutex: the forwarder holds it across `send_request_with_option`
    /// so that a progress notification racing the insert waits instead of
    /// being lost.
    routes: tokio::sync::Mutex<HashMap<ProgressToken, Route>>,
    ledger: std::sync::Mutex<HashMap<ProgressToken, Counts>>,
    changed: tokio::sync::Notify,
    /// Log lines (`notifications/message`) read and handled: they carry
    /// no token, so a result that may have log lines before it waits for
    /// every one read so far ([`ProgressMap::settle_logs`]).
    logs_read: AtomicU64,
    logs_handled: AtomicU64,
}

impl ProgressMap {
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, HashMap<ProgressToken, Route>> {
        self.routes.lock().await
    }

    fn counts<T>(&self, f: impl FnOnce(&mut HashMap<ProgressToken, Counts>) -> T) -> T {
        f(&mut self.ledger.lock().recover())
    }

    /// A forwarded request's token: its result will [`settle`](Self::settle).
    pub fn track(&self, token: &ProgressToken) {
        self.counts(|m| {
            if m.len() < MAX_TRACKED || m.contains_key(token) {
                m.entry(token.clone()).or_default().tracked = true;
            }
        });
    }

    /// The transport read a progress notification for `token`.
    pub fn read(&self, token: ProgressToken) {
        self.counts(|m| {
            if m.len() < MAX_TRACKED || m.contains_key(&token) {
                m.entry(token).or_default().read += 1;
            }
        });
    }

    /// A progress notification for `token` was handled (forwarded or
    /// dropped).
    pub fn forwarded(&self, token: &ProgressToken) {
        self.counts(|m| {
            if let Some(c) = m.get_mut(token) {
                c.forwarded += 1;
                if !c.tracked && c.forwarded >= c.read {
                    m.remove(token);
                }
            }
        });
        self.changed.notify_waiters();
    }

    /// The transport read a log line.
    pub fn read_log(&self) {
        self.logs_read.fetch_add(1, Ordering::AcqRel);
    }

    /// A log line was handled (passed on or dropped).
    pub fn handled_log(&self) {
        self.logs_handled.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_waiters();
    }

    /// Waits until every log line read before now has been handled, at
    /// most `within` (then counts them handled).
    pub async fn settle_logs(&self, within: Duration) {
        let read = self.logs_read.load(Ordering::Acquire);
        // Every result passes here: with no log line outstanding (the
        // usual case) nothing is armed or timed.
        if self.logs_handled.load(Ordering::Acquire) >= read {
            return;
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.logs_handled.load(Ordering::Acquire) >= read {
                break;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                // A line never handled (rmcp dropped it) costs one wait,
                // not one for every result after it.
                self.logs_handled.fetch_max(read, Ordering::AcqRel);
                tracing::debug!("log lines still being handled when the result went out");
                break;
            }
        }
    }

    fn pending(&self, token: &ProgressToken) -> bool {
        self.counts(|m| m.get(token).is_some_and(|c| c.forwarded < c.read))
    }

    /// Waits until every progress notification read for `token` before now
    /// has been handled, at most `within`; then forgets the token.
    pub async fn settle(&self, token: &ProgressToken, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if !self.pending(token) {
                break;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                tracing::debug!(
                    ?token,
                    "progress still being forwarded when the result went out"
                );
                break;
            }
        }
        self.counts(|m| m.remove(token));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::NumberOrString;

    fn t(n: i64) -> ProgressToken {
        ProgressToken(NumberOrString::Number(n))
    }

    #[tokio::test]
    async fn a_result_waits_for_the_progress_read_before_it() {
        let m = std::sync::Arc::new(ProgressMap::default());
        m.track(&t(1));
        m.read(t(1));
        m.read(t(1));
        let waiter = {
            let m = m.clone();
            tokio::spawn(async move { m.settle(&t(1), Duration::from_secs(30)).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "two notifications still to forward");
        m.forwarded(&t(1));
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "one still to forward");
        m.forwarded(&t(1));
        waiter.await.unwrap();
        assert!(m.counts(|c| c.is_empty()), "forgotten once settled");
        // Nothing read: no wait at all.
        m.track(&t(2));
        m.settle(&t(2), Duration::from_secs(30)).await;
    }

    #[tokio::test]
    async fn a_result_waits_for_the_log_lines_read_before_it() {
        let m = std::sync::Arc::new(ProgressMap::default());
        m.read_log();
        let waiter = {
            let m = m.clone();
            tokio::spawn(async move { m.settle_logs(Duration::from_secs(30)).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "a log line still to handle");
        m.handled_log();
        waiter.await.unwrap();
        // Nothing read since: no wait at all.
        m.settle_logs(Duration::from_secs(30)).await;
        // A line never handled is counted handled once its wait is over:
        // the next result does not wait for it again.
        m.read_log();
        m.settle_logs(Duration::from_millis(1)).await;
        assert_eq!(
            m.logs_handled.load(Ordering::Acquire),
            m.logs_read.load(Ordering::Acquire)
        );
    }

    #[tokio::test]
    async fn late_or_foreign_progress_leaves_nothing_behind_and_the_wait_is_bounded() {
        let m = ProgressMap::default();
        m.read(t(7));
        m.forwarded(&t(7));
        assert!(m.counts(|c| c.is_empty()));
        // A notification that is never handled cannot hold a result forever.
        m.track(&t(8));
        m.read(t(8));
        m.settle(&t(8), Duration::from_millis(10)).await;
        assert!(m.counts(|c| c.is_empty()));
    }
}
