//! `subscriptions/listen` for a 2026-07-28 host (MCP's only way to hear of
//! list changes in that era: nothing unsolicited reaches a modern host).
//!
//! Every change the session's router finds — an upstream's list changed
//! (a legacy upstream's `notifications/*/list_changed`, a modern one's
//! listen stream, `upstream::listen`), an upstream started or stopped, a
//! policy activation that shows or hides tools — is published once on the
//! session's [`ListChanges`] channel, the same moment a legacy host is sent
//! its notifications. Each open listen is a receiver of that channel and
//! passes on only the kinds its host asked for and gavel acknowledged;
//! rmcp's sink tags each notification with the listen's `subscriptionId`
//! and sends the acknowledgement before any of them.
//!
//! `resourceSubscriptions` (per-URI `resources/updated`) is honoured for
//! the URIs `listen_resources` allows, and only those are acknowledged;
//! each listen then gets the updates of exactly its URIs, tagged alike.
//! They are subscribed upstream before the acknowledgement leaves: on
//! stdio before rmcp's handler runs (`listen_prepare`), over HTTP while
//! the acknowledgement is held on the wire (`http::listen_hold`).

use rmcp::ErrorData;
use rmcp::model::SubscriptionFilter;
use rmcp::service::{SubscriptionContext, SubscriptionSendError, SubscriptionSink};
use tokio::sync::broadcast;

use super::Session;
use crate::front::http::listen_hold::{self, Hold};

/// Which lists changed: tools, resources, prompts.
pub(crate) type Changed = (bool, bool, bool);

/// How many change sets a slow listen may fall behind before it is told
/// "everything changed" instead (a lagging receiver loses the detail, never
/// the fact that something changed).
const BACKLOG: usize = 16;

/// The session's change channel: one sender, a receiver per open listen.
pub(crate) struct ListChanges(broadcast::Sender<Changed>);

impl Default for ListChanges {
    fn default() -> Self {
        Self(broadcast::channel(BACKLOG).0)
    }
}

impl ListChanges {
    /// Publishes a change set to every open listen (none open: dropped —
    /// a listen opened later starts from what it lists then).
    pub(crate) fn publish(&self, changed: Changed) {
        if changed != (false, false, false) {
            let _ = self.0.send(changed);
        }
    }

    pub(super) fn subscribe(&self) -> broadcast::Receiver<Changed> {
        self.0.subscribe()
    }
}

/// What gavel delivers of a requested filter: the three list kinds it was
/// asked for, and of its `resourceSubscriptions` the URIs `honoured`
/// returns for them (none: the field is left out of the acknowledgement).
pub(crate) fn accepted(
    requested: &SubscriptionFilter,
    honoured: impl FnOnce(&[String]) -> Vec<String>,
) -> SubscriptionFilter {
    let mut f = SubscriptionFilter::new();
    f.tools_list_changed = requested.tools_list_changed.filter(|&b| b);
    f.prompts_list_changed = requested.prompts_list_changed.filter(|&b| b);
    f.resources_list_changed = requested.resources_list_changed.filter(|&b| b);
    f.resource_subscriptions = requested
        .resource_subscriptions
        .as_deref()
        .filter(|u| !u.is_empty())
        .map(honoured)
        .filter(|u| !u.is_empty());
    f
}

/// The kinds of `changed` that `accepted` asked for, as (tools, resources,
/// prompts).
fn wanted(accepted: &SubscriptionFilter, (t, r, p): Changed) -> Changed {
    (
        t && accepted.tools_list_changed == Some(true),
        r && accepted.resources_list_changed == Some(true),
        p && accepted.prompts_list_changed == Some(true),
    )
}

/// Sends the notifications of `changed` on one listen stream; `false` once
/// the stream is gone (host cancelled, transport closed).
async fn deliver(sink: &SubscriptionSink, changed: Changed) -> bool {
    let (tools, resources, prompts) = changed;
    let mut sent = Ok(());
    if tools {
        sent = sent.and(sink.notify_tool_list_changed().await);
    }
    if resources {
        sent = sent.and(sink.notify_resource_list_changed().await);
    }
    if prompts {
        sent = sent.and(sink.notify_prompt_list_changed().await);
    }
    self::sent(sent)
}

/// Whether a listen stream is still there after a send: `false` once it is
/// gone (host cancelled, transport closed).
fn sent(r: Result<(), SubscriptionSendError>) -> bool {
    match r {
        Ok(()) => true,
        Err(SubscriptionSendError::SubscriptionClosed | SubscriptionSendError::Service(_)) => false,
        // Not reachable (only accepted kinds are sent); not a reason to end.
        Err(e) => {
            tracing::debug!("listen notification not sent: {e}");
            true
        }
    }
}

impl Session {
    /// Runs one host listen until the host cancels it (rmcp then drops the
    /// final result), its stream is gone, or gavel stops (the session's
    /// shutdown, or rmcp cancelling the connection's requests on a signal):
    /// rmcp then answers the listen with the graceful
    /// `SubscriptionsListenResult`, draining it before the connection
    /// closes.
    ///
    /// `prepared` (stdio, `listen_prepare`): its URIs were subscribed
    /// before the acknowledgement and its receivers opened before that.
    /// Without one (HTTP), the URIs are decided and followed now and
    /// reported to `hold`, which has held the acknowledgement on the wire
    /// until then (`http::listen_hold`). Either way they are given up when
    /// the listen ends, however it ends.
    pub(crate) async fn listen(
        &self,
        cx: SubscriptionContext,
        prepared: Option<super::Prepared>,
        hold: Option<Hold>,
    ) -> Result<(), ErrorData> {
        let sink = cx.sink().clone();
        let shutdown = self.inner.shutdown.clone();
        let (mut rx, mut updates, followed) = match prepared {
            Some(p) => (p.changes, p.updates, p.followed),
            None => {
                let (rx, updates) = (
                    self.inner.changes.subscribe(),
                    self.inner.host.resource_updates(),
                );
                let followed = tokio::select! {
                    f = self.follow_acknowledged(&cx, hold.is_some()) => f,
                    _ = cx.cancelled() => return Ok(()),
                    _ = shutdown.cancelled() => return Ok(()),
                };
                if let Some(hold) = &hold {
                    listen_hold::report(hold, followed.uris().map(str::to_string).collect());
                }
                (rx, updates, followed)
            }
        };
        loop {
            let changed = tokio::select! {
                _ = cx.cancelled() => return Ok(()),
                _ = shutdown.cancelled() => return Ok(()),
                r = rx.recv() => match r {
                    Ok(c) => c,
                    Err(broadcast::error::RecvError::Lagged(_)) => (true, true, true),
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
                u = updates.recv(), if !followed.is_empty() => {
                    let uris: Vec<String> = match u {
                        Ok(p) if followed.has(&p.uri) => vec![p.uri.clone()],
                        Ok(_) => continue,
                        // Fell behind: any URI it follows may have changed.
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            followed.uris().map(str::to_string).collect()
                        }
                        Err(broadcast::error::RecvError::Closed) => return Ok(()),
                    };
                    for uri in uris {
                        if !sent(sink.notify_resource_updated(uri).await) {
                            return Ok(());
                        }
                    }
                    continue;
                }
            };
            let changed = wanted(cx.accepted(), changed);
            if changed != (false, false, false) && !deliver(&sink, changed).await {
                return Ok(());
            }
        }
    }
}

impl Session {
    /// Follows the URIs rmcp acknowledged for a listen that was not
    /// prepared: over HTTP (`held`) every one within bounds was, and the
    /// upstreams are waited for and the URIs decided now (on the blocking
    /// pool) while its acknowledgement is held (`http::listen_hold`);
    /// otherwise they were decided when rmcp asked.
    async fn follow_acknowledged(
        &self,
        cx: &SubscriptionContext,
        held: bool,
    ) -> super::listen_resources::Followed {
        // rmcp acknowledges the request's list cut down to what gavel
        // honours: a URI asked for twice is there twice, followed once.
        let mut uris = super::listen_resources::bounded(
            cx.accepted()
                .resource_subscriptions
                .as_deref()
                .unwrap_or_default(),
        );
        if held && !uris.is_empty() {
            // As any first request that routes (a listen may be one).
            if let Err(e) = self.wait_started().await {
                tracing::warn!(
                    "resourceSubscriptions: no upstream to follow them on: {}",
                    e.message
                );
            }
            uris = self.honoured_uris_off_loop(uris).await;
        }
        let wait = super::listen_prepare::SUBSCRIBE_WAIT;
        self.follow(&uris, cx.request_context(), wait).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_requested_list_kinds_and_the_honoured_uris_are_accepted() {
        let mut req = SubscriptionFilter::builder().tools_list_changed().build();
        req.prompts_list_changed = Some(false);
        req.resource_subscriptions = Some(vec!["file:///x".into(), "file:///y".into()]);
        let a = accepted(&req, |u| {
            u.iter().filter(|u| u.ends_with('y')).cloned().collect()
        });
        assert_eq!(a.tools_list_changed, Some(true));
        assert_eq!(a.prompts_list_changed, None);
        assert_eq!(a.resources_list_changed, None);
        assert_eq!(a.resource_subscriptions, Some(vec!["file:///y".into()]));
        // None honoured: the field is left out, not an empty list.
        let a = accepted(&req, |_| vec![]);
        assert_eq!(a.resource_subscriptions, None);
        // None asked: the honouring is not even consulted.
        let a = accepted(&SubscriptionFilter::new(), |_| panic!("not asked"));
        assert_eq!(a, SubscriptionFilter::new());
    }

    #[test]
    fn a_listen_gets_only_the_kinds_it_accepted() {
        let prompts = SubscriptionFilter::builder().prompts_list_changed().build();
        assert_eq!(wanted(&prompts, (true, true, false)), (false, false, false));
        assert_eq!(wanted(&prompts, (true, false, true)), (false, false, true));
    }

    #[tokio::test]
    async fn every_receiver_sees_a_published_change_and_empty_sets_are_not_sent() {
        let c = ListChanges::default();
        let (mut a, mut b) = (c.subscribe(), c.subscribe());
        c.publish((false, false, false));
        c.publish((true, false, false));
        assert_eq!(a.recv().await.unwrap(), (true, false, false));
        assert_eq!(b.recv().await.unwrap(), (true, false, false));
        assert!(a.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_lagging_receiver_is_told_it_lagged() {
        let c = ListChanges::default();
        let mut a = c.subscribe();
        for _ in 0..=BACKLOG {
            c.publish((false, true, false));
        }
        assert!(matches!(
            a.recv().await,
            Err(broadcast::error::RecvError::Lagged(_))
        ));
    }
}
