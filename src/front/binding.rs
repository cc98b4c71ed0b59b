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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;

use super::auth::TokenIdentity;

const SESSION_HEADER: &str = "mcp-session-id";

/// Who owns each open session: (user id, agent id).
pub struct Owners {
    owners: Mutex<HashMap<String, (String, String)>>,
    /// rmcp's sessions: an owner whose session is gone is forgotten.
    manager: Arc<LocalSessionManager>,
}

impl Owners {
    pub fn new(manager: Arc<LocalSessionManager>) -> Self {
        Owners {
            owners: Mutex::default(),
            manager,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, String)>> {
        self.owners.lock().unwrap_or_else(|p| p.into_inner())
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
        // No session yet: an `initialize`; the session it opens is ours.
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
        let owners = Owners::new(manager.clone());
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
