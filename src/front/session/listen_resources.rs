//! `resourceSubscriptions` on a 2026-07-28 host's `subscriptions/listen`:
//! `notifications/resources/updated` for exactly the URIs a listen asked
//! for and gavel honoured, on that listen's stream (reference §1.6, §2.5).
//!
//! **Which URIs are honoured** ([`Session::honoured_uris`], decided on the
//! blocking pool before the acknowledgement, which names them): at most [`MAX_URIS`] per listen,
//! each at most [`MAX_URI_BYTES`] long, duplicates once; a URI the session
//! routes to an upstream (`Router`'s table, as a `resources/read` of it
//! would route) that is up and advertises `resources.subscribe`; that this
//! session is shown (the server is listed for its persona, and a resource
//! the upstream lists is not left out of the session's list by the
//! server's result rules); and that this session may read — a policy
//! query of the `resource_read` it would be
//! ([`crate::decision::SessionState::query`]: its query record written,
//! nothing charged). An update tells the host a resource changed; one it
//! may not read must not be told of. Everything else is left out of the
//! acknowledgement, as the spec says. Over HTTP the session is the
//! principal's that rmcp made the handler for (`front/era/front.rs`,
//! `http::modern::with_principal`).
//!
//! **Fan-in** ([`Session::follow`], before the acknowledgement leaves,
//! which then names only the URIs subscribed — `listen_prepare` on stdio,
//! `http::listen_hold` over HTTP): each URI is decided as the
//! `resource_subscribe` a legacy host's `resources/subscribe` would be
//! (its record written; a denial leaves the URI out of the
//! acknowledgement, logged), and the upstream is asked for its
//! updates when this session starts following it — counted across the
//! session's listens, and for a shared upstream across its sessions
//! (`upstream::shared`): a legacy upstream is sent `resources/subscribe`, a
//! 2026-07-28 one gets the URI in its own listen's `resourceSubscriptions`
//! (`upstream::listen` opens it again with the new set); either way the
//! upstream remembers it, and a restarted one gets it again
//! (`upstream::listen::resubscribe`). Each subscribe runs on a task of its
//! own and is kept only while its listen still waits for it
//! ([`Admission`]): one that completes after the listen stopped waiting or
//! ended is undone. When the last listen of the session
//! that follows a URI ends (the host cancels, its stream is gone, the
//! session stops), its unsubscribe is decided the same way and a legacy
//! upstream sent `resources/unsubscribe` (a modern one's listen re-opened
//! without the URI) — [`Followed`]'s drop. The upstream's
//! `resources/updated` reach the session's [`HostLink`] and from there
//! every listen following that URI ([`HostLink::resource_updates`]).
//!
//! [`HostLink`]: crate::host::link::HostLink
//! [`HostLink::resource_updates`]: crate::host::link::HostLink::resource_updates

// `resources/subscribe` is legacy-only in MCP 2026-07-28 (SEP-2577), and
// exactly what a legacy upstream is sent for a modern host's listen.
#![allow(deprecated)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rmcp::ErrorData;
use rmcp::model::UnsubscribeRequestParams;
use rmcp::model::{ClientRequest, SubscribeRequest, SubscribeRequestParams, UnsubscribeRequest};
use rmcp::service::{RequestContext, RoleServer};
use serde_json::json;

use super::Session;
use crate::decision::{ActionType, RequestEra};
use crate::sync::Recover;
use crate::upstream::era::Spoken;

/// The most URIs one listen is honoured for.
pub(crate) const MAX_URIS: usize = 64;
/// The longest URI honoured (as long as a URI template may match).
pub(crate) const MAX_URI_BYTES: usize = crate::upstream::uri_template::MAX_URI_BYTES;
/// The most distinct URIs one session follows at once, over all its
/// listens: past it, a new URI is not honoured.
pub(crate) const MAX_FOLLOWED: usize = 1024;

/// What a session follows: (server, URI) → how many of its open listens
/// follow it. Held across the upstream `resources/subscribe` and
/// `unsubscribe`, so they reach the upstream in the order counted.
pub(crate) type Following = tokio::sync::Mutex<HashMap<(String, String), usize>>;

/// The requested URIs within bounds: each once, none too long or empty, at
/// most [`MAX_URIS`], in the order asked.
pub(crate) fn bounded(requested: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for uri in requested {
        if out.len() == MAX_URIS {
            tracing::warn!(
                max = MAX_URIS,
                asked = requested.len(),
                "subscriptions/listen asked for more resourceSubscriptions than gavel follows per listen; the rest are not acknowledged"
            );
            break;
        }
        if uri.is_empty() || uri.len() > MAX_URI_BYTES || out.contains(uri) {
            continue;
        }
        out.push(uri.clone());
    }
    out
}

/// A URI as a log line shows it: control characters escaped, at most 256
/// bytes (a host may send 16 KiB ones).
fn for_log(uri: &str) -> String {
    let shown = crate::text::prefix(uri, 256);
    let cut = if shown.len() < uri.len() { "…" } else { "" };
    format!("{}{cut}", crate::text::escape_controls(shown))
}

impl Session {
    /// The URIs of `requested` this session honours (see the module doc),
    /// decided now, before the acknowledgement that names them.
    pub(crate) fn honoured_uris(&self, requested: &[String]) -> Vec<String> {
        let following = self
            .inner
            .following
            .try_lock()
            .map(|f| f.len())
            .unwrap_or(0);
        let mut room = MAX_FOLLOWED.saturating_sub(following);
        let mut out = Vec::new();
        for uri in bounded(requested) {
            if room == 0 {
                tracing::warn!(
                    max = MAX_FOLLOWED,
                    uri = %for_log(&uri),
                    "a session follows its maximum of resource URIs; not acknowledged"
                );
                continue;
            }
            match self.may_follow(&uri) {
                Ok(()) => {
                    room -= 1;
                    out.push(uri);
                }
                Err(why) => {
                    tracing::info!(uri = %for_log(&uri), "resourceSubscriptions: not acknowledged: {why}")
                }
            }
        }
        out
    }

    /// Whether this session may follow `uri`: routed, followable at its
    /// upstream, shown and readable (the module doc); why not otherwise.
    fn may_follow(&self, uri: &str) -> Result<(), String> {
        let router = self
            .inner
            .router
            .get()
            .ok_or("no upstream has started yet")?;
        let table = router.table();
        let server = table
            .route_resource(uri, &router.upstreams)
            .ok_or("no upstream lists it or a template matching it")?;
        let up = router
            .upstreams
            .get(&server)
            .ok_or_else(|| format!("no upstream {server:?}"))?;
        let conn = up
            .connection()
            .ok_or_else(|| format!("server {server:?} is not up"))?;
        if conn
            .capabilities
            .resources
            .as_ref()
            .and_then(|r| r.subscribe)
            != Some(true)
        {
            return Err(format!(
                "server {server:?} does not offer resource subscriptions"
            ));
        }
        let enforcer = &self.inner.gw.enforcer;
        if !enforcer.server_listed(&server, &super::list_context(&self.inner.state)) {
            return Err(format!("server {server:?} is not shown to this session"));
        }
        let upstream_lists = up.lists().resources.iter().any(|r| r.uri == uri);
        if upstream_lists && !table.resources.iter().any(|r| r.uri == uri) {
            return Err(
                "the server's result rules leave it out of this session's resource list".into(),
            );
        }
        let mut read = self.action(
            ActionType::ResourceRead,
            &server,
            uri,
            json!({ "uri": uri }),
        );
        read.era = RequestEra::modern(rmcp::model::ProtocolVersion::V_2026_07_28.to_string(), None);
        let p = self.inner.state.query(enforcer, &read, "listen");
        if !p.decision.allow {
            return Err(format!(
                "this session may not read it (policy query {}: {})",
                p.query_id,
                p.decision.reasons.join(", ")
            ));
        }
        Ok(())
    }

    /// [`Self::honoured_uris`] on the blocking pool: up to [`MAX_URIS`]
    /// policy queries, each of which may read the state store (Redis), must
    /// not hold up the event loop every session shares. A check that does
    /// not finish honours nothing (fail closed).
    pub(super) async fn honoured_uris_off_loop(&self, requested: Vec<String>) -> Vec<String> {
        let session = self.clone();
        tokio::task::spawn_blocking(move || session.honoured_uris(&requested))
            .await
            .unwrap_or_else(|e| {
                tracing::error!(
                    "the resourceSubscriptions check did not finish ({e}); no URI is acknowledged"
                );
                Vec::new()
            })
    }

    /// Subscribes upstream to the honoured `uris` of one listen, waiting at
    /// most `wait` — before its acknowledgement, which names only what is
    /// followed when this returns (subscribe, then acknowledge, then
    /// deliver: an update between the two is not lost).
    ///
    /// Each subscribe runs on a task of its own, so neither the wait
    /// running out nor the listen being cancelled (its future dropped) can
    /// cut one off half-way: one that completes after the returned
    /// [`Followed`] stopped admitting URIs (the wait ran out, the listen
    /// ended) unsubscribes again itself ([`Admission`]).
    pub(super) async fn follow(
        &self,
        uris: &[String],
        cx: &RequestContext<RoleServer>,
        wait: Duration,
    ) -> Followed {
        let mut followed = Followed::none(self, cx);
        let tasks: Vec<_> = uris
            .iter()
            .map(|uri| {
                let (session, cx) = (self.clone(), followed.cx.clone());
                let (admission, uri) = (followed.admission.clone(), uri.clone());
                tokio::spawn(async move {
                    let server = match session.subscribe_for_listen(&uri, &cx).await {
                        Ok(server) => server,
                        Err(e) => {
                            tracing::warn!(uri = %for_log(&uri), "resourceSubscriptions: not acknowledged, the subscription failed: {}", e.message);
                            return;
                        }
                    };
                    let kept = admission.lock().recover().admit((server.clone(), uri.clone()));
                    if !kept {
                        tracing::info!(server, uri = %for_log(&uri), "resourceSubscriptions: subscribed after its listen stopped waiting (or ended); unsubscribing");
                        session.unsubscribe_for_listen(&server, &uri, &cx).await;
                    }
                })
            })
            .collect();
        if tokio::time::timeout(wait, futures::future::join_all(tasks))
            .await
            .is_err()
        {
            tracing::warn!(
                "resourceSubscriptions: an upstream did not confirm its subscription within {wait:?}; its URIs are not acknowledged"
            );
        }
        followed.uris = followed.admission.lock().recover().close();
        followed
    }

    /// One URI followed by one more listen: decided as `resources/subscribe`,
    /// and sent upstream when this session did not follow it yet.
    async fn subscribe_for_listen(
        &self,
        uri: &str,
        cx: &RequestContext<RoleServer>,
    ) -> Result<String, ErrorData> {
        let server = self.route_uri(uri)?;
        let action = self.action(
            ActionType::ResourceSubscribe,
            &server,
            uri,
            json!({ "uri": uri }),
        );
        let permit = self.authorize(action, cx).await.map_err(|d| {
            crate::decision::deny::request_denial(&d, &format!("subscribing to {uri}"))
        })?;
        let mut following = self.inner.following.lock().await;
        let key = (server.clone(), uri.to_string());
        if let Some(n) = following.get_mut(&key) {
            *n += 1;
            return Ok(server);
        }
        // `honoured_uris` counted room before the acknowledgement; listens
        // opened together may still have taken it since.
        if following.len() >= MAX_FOLLOWED {
            return Err(ErrorData::invalid_request(
                format!("this session already follows its maximum of {MAX_FOLLOWED} resource URIs"),
                None,
            ));
        }
        // A shared upstream is subscribed once, by its first session.
        let shared = self.shared_route(&server);
        let first = match &shared {
            Some((route, owner)) => route.subscribe(owner, uri),
            None => true,
        };
        if first && let Err(e) = self.subscribe_upstream(&server, uri, &permit, cx).await {
            if let Some((route, owner)) = &shared {
                route.unsubscribe(owner, uri);
            }
            return Err(e);
        }
        following.insert(key, 1);
        Ok(server)
    }

    /// The upstream is to send `uri`'s updates: a legacy one is sent
    /// `resources/subscribe`; a 2026-07-28 one's listen is opened again
    /// with `uri` among its `resourceSubscriptions` (`upstream::listen`).
    /// Either way the upstream remembers it ([`Upstream::follow_resource`]),
    /// so a restarted one gets it again: a new listen carries it, a legacy
    /// one is sent `resources/subscribe` again.
    ///
    /// [`Upstream::follow_resource`]: crate::upstream::Upstream::follow_resource
    /// A legacy host's own `resources/subscribe` comes here too
    /// (`handler`), once decided.
    pub(super) async fn subscribe_upstream(
        &self,
        server: &str,
        uri: &str,
        permit: &crate::decision::Permit,
        cx: &RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let up = self.upstream(server)?;
        let conn = up.ready().await?;
        // Remembered before it is sent: a legacy upstream that restarts
        // while it is on its way is sent it again with the rest
        // (`supervisor::resubscribe`); it stays remembered only if it
        // took (or was there already).
        let new = up.follow_resource(uri);
        if conn.era == Spoken::Modern {
            return Ok(());
        }
        let req = ClientRequest::SubscribeRequest(SubscribeRequest::new(
            SubscribeRequestParams::new(uri),
        ));
        let r = self.forward(server, permit, req, cx).await.map(|_| ());
        if r.is_err() && new {
            up.unfollow_resource(uri);
        }
        r
    }

    /// One listen stops following `uri` at `server`; the last one sends
    /// the upstream `resources/unsubscribe` (decided as a legacy host's
    /// would be).
    async fn unsubscribe_for_listen(
        &self,
        server: &str,
        uri: &str,
        cx: &RequestContext<RoleServer>,
    ) {
        let mut following = self.inner.following.lock().await;
        let key = (server.to_string(), uri.to_string());
        match following.get_mut(&key) {
            Some(n) if *n > 1 => {
                *n -= 1;
                return;
            }
            Some(_) => {
                following.remove(&key);
            }
            None => return,
        }
        // A shared upstream stays subscribed while another session is.
        if let Some((route, owner)) = self.shared_route(server)
            && !route.unsubscribe(&owner, uri)
        {
            return;
        }
        let action = self.action(
            ActionType::ResourceSubscribe,
            server,
            uri,
            json!({ "uri": uri, "unsubscribe": true }),
        );
        let permit = match self.authorize(action, cx).await {
            Ok(p) => p,
            Err(d) => {
                tracing::warn!(server, uri = %for_log(uri), reasons = ?d.reasons, "the policy denied the resources/unsubscribe that ends a listen's subscription; the upstream stays subscribed (its updates reach no listen)");
                return;
            }
        };
        if let Err(e) = self.unsubscribe_upstream(server, uri, &permit, cx).await {
            tracing::debug!(server, "resources/unsubscribe not sent: {}", e.message);
        }
    }

    /// The upstream is no longer to send `uri`'s updates: a legacy one is
    /// sent `resources/unsubscribe`; a 2026-07-28 one's listen is opened
    /// again without it.
    pub(super) async fn unsubscribe_upstream(
        &self,
        server: &str,
        uri: &str,
        permit: &crate::decision::Permit,
        cx: &RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let up = self.router()?.upstreams.get(server).cloned();
        if let Some(up) = &up {
            up.unfollow_resource(uri);
            if up.connection().is_some_and(|c| c.era == Spoken::Modern) {
                return Ok(());
            }
        }
        let req = ClientRequest::UnsubscribeRequest(UnsubscribeRequest::new(
            UnsubscribeRequestParams::new(uri),
        ));
        self.forward(server, permit, req, cx).await.map(|_| ())
    }
}

/// Which subscribes of one listen it keeps: those that complete while it
/// still admits them. Once closed (the listen's wait for them ran out, or
/// the listen ended), a subscribe that completes is refused and undone by
/// whoever made it — whichever order the two happen in, every upstream
/// subscription made for a listen is either the listen's (and released
/// with it) or undone at once.
#[derive(Debug)]
pub(super) struct Admission<T> {
    closed: bool,
    kept: Vec<T>,
}

impl<T> Default for Admission<T> {
    fn default() -> Self {
        Self {
            closed: false,
            kept: Vec::new(),
        }
    }
}

impl<T> Admission<T> {
    /// Keeps `item` while open (`true`); `false`: the caller undoes it.
    pub(super) fn admit(&mut self, item: T) -> bool {
        if self.closed {
            return false;
        }
        self.kept.push(item);
        true
    }

    /// Admits nothing more; what was kept until now is handed over.
    pub(super) fn close(&mut self) -> Vec<T> {
        self.closed = true;
        std::mem::take(&mut self.kept)
    }
}

/// The URIs one listen follows; dropping it (the listen ended, however,
/// or never got acknowledged) releases them off the caller's task,
/// together with any subscribe still in flight for it ([`Admission`]).
pub(crate) struct Followed {
    session: Session,
    cx: RequestContext<RoleServer>,
    admission: Arc<std::sync::Mutex<Admission<(String, String)>>>,
    /// (server, URI) followed: what the admission held when it closed.
    uris: Vec<(String, String)>,
}

impl Followed {
    /// Nothing followed (yet), for a listen of `cx`. The listen's own
    /// context, with a token of its own: the host cancelling the listen
    /// must not cancel the unsubscribe it causes.
    pub(super) fn none(session: &Session, cx: &RequestContext<RoleServer>) -> Self {
        let mut own = cx.clone();
        own.ct = tokio_util::sync::CancellationToken::new();
        Self {
            session: session.clone(),
            cx: own,
            admission: Default::default(),
            uris: Vec::new(),
        }
    }

    /// Whether this listen follows `uri`.
    pub(super) fn has(&self, uri: &str) -> bool {
        self.uris.iter().any(|(_, u)| u == uri)
    }

    /// The URIs followed.
    pub(super) fn uris(&self) -> impl Iterator<Item = &str> {
        self.uris.iter().map(|(_, u)| u.as_str())
    }

    pub(super) fn is_empty(&self) -> bool {
        self.uris.is_empty()
    }
}

impl Drop for Followed {
    fn drop(&mut self) {
        // Dropped before `follow` closed it (the listen was cancelled while
        // subscribing): whatever it kept is released too, and whatever is
        // still in flight is undone when it completes.
        let mut uris = self.admission.lock().recover().close();
        uris.append(&mut self.uris);
        if uris.is_empty() {
            return;
        }
        let (session, cx) = (self.session.clone(), self.cx.clone());
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            for (server, uri) in uris {
                session.unsubscribe_for_listen(&server, &uri, &cx).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_bounded_in_number_and_length_and_taken_once() {
        let long = format!("file:///{}", "a".repeat(MAX_URI_BYTES));
        let asked = vec![
            "file:///a".to_string(),
            String::new(),
            long,
            "file:///a".to_string(),
            "file:///b".to_string(),
        ];
        assert_eq!(bounded(&asked), vec!["file:///a", "file:///b"]);
        let many: Vec<String> = (0..MAX_URIS + 5).map(|i| format!("r://{i}")).collect();
        let b = bounded(&many);
        assert_eq!(b.len(), MAX_URIS);
        assert_eq!(b[0], "r://0");
        assert_eq!(b[MAX_URIS - 1], format!("r://{}", MAX_URIS - 1));
    }

    #[test]
    fn what_completes_before_the_close_is_kept_and_what_completes_after_is_refused() {
        let mut a = Admission::default();
        assert!(a.admit("r://a"));
        assert!(a.admit("r://b"));
        // The listen stops waiting (acknowledged) or ends: it takes what
        // completed, in the order it did.
        assert_eq!(a.close(), vec!["r://a", "r://b"]);
        // A subscription that completes later is refused: its maker undoes it.
        assert!(!a.admit("r://c"));
        // Closing again (the listen's end after its acknowledgement) hands
        // nothing over twice.
        assert!(a.close().is_empty());
    }

    #[test]
    fn a_listen_that_ends_before_any_subscription_completes_keeps_none() {
        let mut a: Admission<&str> = Admission::default();
        assert!(a.close().is_empty());
        assert!(!a.admit("r://a"));
    }

    #[test]
    fn a_uri_in_a_log_line_is_cut_and_escaped() {
        let long = "é".repeat(MAX_URI_BYTES / 2);
        let shown = for_log(&long);
        assert!(shown.len() <= 256 + "…".len(), "{}", shown.len());
        assert!(shown.ends_with('…'));
        assert!(!for_log("r://a\nforged line").contains('\n'));
        assert_eq!(for_log("r://a"), "r://a");
    }
}
