//! A session belongs to the user and agent whose token opened it (`gavel
//! serve` with `[auth]`). A session id is not a credential: every message
//! that names a session — requests of every method, notifications (a
//! `notifications/cancelled` could otherwise cancel the owner's call),
//! responses, the GET stream (which carries the owner's notifications) and
//! DELETE — must come with a token of that same user and agent.
//!
//! Checked here, at the HTTP layer, once for all of them: rmcp acts on some
//! messages (cancellation, stream resumption) before any handler of ours
//! runs, so a per-handler check could not cover them.
//!
//! The owners also cap each user's sessions (`[serve]
//! max_sessions_per_user`): every session starts its own upstreams, and
//! without a per-user cap one user's idle sessions could take every slot of
//! `max_sessions` and lock everyone else out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;

use super::auth::TokenIdentity;

use crate::sync::Recover;

const SESSION_HEADER: &str = "mcp-session-id";

/// Who owns each open session: (user id, agent id).
pub struct Owners {
    owners: Mutex<HashMap<String, (String, String)>>,
    /// rmcp's sessions: an owner whose session is gone is forgotten.
    manager: Arc<LocalSessionManager>,
    /// Sessions one user may have open at once.
    per_user: usize,
    /// Per user, `initialize` requests admitted and not yet answered: a
    /// session being opened counts before it is recorded.
    pending: Mutex<HashMap<String, usize>>,
    /// One admission at a time, so two concurrent `initialize`s of one user
    /// cannot both take the last slot.
    admit: tokio::sync::Mutex<()>,
}

/// A user's slot for a session being opened; given back when dropped (the
/// session, if one was opened, is recorded by then).
struct Reservation {
    owners: Arc<Owners>,
    user: String,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut pending = self.owners.pending.lock().recover();
        if let Some(n) = pending.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                pending.remove(&self.user);
            }
        }
    }
}

impl Owners {
    pub fn new(manager: Arc<LocalSessionManager>, per_user: usize) -> Self {
        Owners {
            owners: Mutex::default(),
            manager,
            per_user,
            pending: Mutex::default(),
            admit: tokio::sync::Mutex::new(()),
        }
    }

    /// A slot for a new session of `user`, or None when the user has
    /// `per_user` sessions open or being opened. Pending ones are read before
    /// the open ones: a session recorded in between is then counted twice
    /// (refusing early), never missed.
    async fn reserve(self: &Arc<Self>, user: &str) -> Option<Reservation> {
        let _one = self.admit.lock().await;
        let pending = self
            .pending
            .lock()
            .recover()
            .get(user)
            .copied()
            .unwrap_or(0);
        let open = {
            let sessions = self.manager.sessions.read().await;
            self.lock()
                .iter()
                .filter(|(k, (u, _))| u == user && sessions.contains_key(k.as_str()))
                .count()
        };
        if open + pending >= self.per_user {
            return None;
        }
        *self
            .pending
            .lock()
            .recover()
            .entry(user.to_string())
            .or_default() += 1;
        Some(Reservation {
            owners: self.clone(),
            user: user.to_string(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, String)>> {
        self.owners.lock().recover()
    }

    /// Records a new session's owner, forgetting the sessions rmcp closed
    /// (idle timeout, DELETE): the table stays as large as the open sessions.
    async fn record(&self, session: String, owner: (String, String)) {
        let live: Vec<String> = {
            let sessions = self.manager.sessions.read().await;
            let owners = self.lock();
            owners
                .keys()
                .filter(|k| sessions.contains_key(k.as_str()))
                .cloned()
                .collect()
        };
        let mut owners = self.lock();
        owners.retain(|k, _| live.contains(k));
        owners.insert(session, owner);
    }

    /// The owner of `session`: Some(None) when rmcp has the session but no
    /// owner was recorded (refused: fail closed), None when neither knows it.
    async fn owner(&self, session: &str) -> Option<Option<(String, String)>> {
        if let Some(o) = self.lock().get(session) {
            return Some(Some(o.clone()));
        }
        self.manager
            .sessions
            .read()
            .await
            .contains_key(session)
            .then_some(None)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

fn refused(session: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        format!(
            "this request's bearer token is for another user or agent than the one that opened session {session}; a session id is not a credential: open a new session with your own token"
        ),
    )
        .into_response()
}

/// The axum middleware, inside the token check (it reads the verified
/// identity the token check attached).
pub async fn bind(owners: Arc<Owners>, req: Request, next: Next) -> Response {
    let Some(TokenIdentity(id)) = req.extensions().get::<TokenIdentity>().cloned() else {
        return next.run(req).await;
    };
    let me = (id.user.id.clone(), id.agent.id.clone());
    let session = req
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let Some(session) = session else {
        // No session yet: an `initialize`; the session it opens is ours. A
        // 2026-07-28 request opens none (`modern.rs`): no slot to reserve.
        let opens = req.method() == Method::POST && !super::modern::is_modern(req.headers());
        let _slot = if opens {
            match owners.reserve(&me.0).await {
                Some(slot) => Some(slot),
                None => {
                    let max = owners.per_user;
                    tracing::warn!(user = %me.0, max, "refusing a new HTTP session: the user's session cap is reached");
                    return super::cap::busy(format!(
                        "user {:?} has its maximum of {max} sessions open ([serve] max_sessions_per_user, --max-sessions-per-user); close one (DELETE /mcp) or retry once one idles out",
                        me.0
                    ));
                }
            }
        } else {
            None
        };
        let resp = next.run(req).await;
        if let Some(new) = resp
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
        {
            owners.record(new.to_string(), me).await;
        }
        return resp;
    };
    match owners.owner(&session).await {
        Some(Some(owner)) if owner == me => {}
        Some(_) => {
            tracing::warn!(
                session = %session, user = %me.0, agent = %me.1,
                "refused a request on a session opened by another user or agent"
            );
            return refused(&session);
        }
        // Unknown to rmcp too: it answers (404, session not found).
        None => {}
    }
    let delete = req.method() == Method::DELETE;
    let resp = next.run(req).await;
    if delete && resp.status().is_success() {
        owners.lock().remove(&session);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn owners_of_closed_sessions_are_forgotten() {
        let manager = Arc::new(LocalSessionManager::default());
        let owners = Owners::new(manager.clone(), 4);
        owners.record("s1".into(), ("ada".into(), "a".into())).await;
        owners.record("s2".into(), ("bob".into(), "b".into())).await;
        // rmcp has neither (never created there): recording s2 dropped s1.
        assert_eq!(owners.len(), 1);
        assert_eq!(
            owners.owner("s2").await,
            Some(Some(("bob".into(), "b".into())))
        );
        assert_eq!(owners.owner("s1").await, None);
    }
}
