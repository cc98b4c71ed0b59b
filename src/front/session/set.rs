//! The open sessions of a front that serves many (`gavel serve`: one per
//! HTTP MCP session). Held weakly: rmcp drops a closed session (DELETE, idle
//! timeout), and dropping its last handle stops its upstreams; the set must
//! not keep it alive. What is still open at exit is stopped explicitly.

use crate::sync::Recover;
use std::sync::{Arc, Mutex};

use super::{Session, WeakSession};

/// Cheap to clone; all clones are the same set.
#[derive(Clone, Default)]
pub struct SessionSet(Arc<Mutex<Vec<WeakSession>>>);

impl SessionSet {
    /// Adds a new session, forgetting the closed ones (the list stays as
    /// long as the open sessions, plus those closed since the last sweep).
    pub fn add(&self, session: &Session) {
        let mut all = self.lock_swept();
        all.push(session.downgrade());
    }

    /// How many sessions are open now (for the session cap and the status).
    pub fn open(&self) -> usize {
        self.lock_swept().len()
    }

    /// Stops every session still open and waits for their upstreams; the
    /// set is empty afterwards.
    pub async fn shutdown_all(&self) {
        let open: Vec<Session> = self.lock().drain(..).filter_map(|w| w.upgrade()).collect();
        futures::future::join_all(open.iter().map(|s| s.shutdown())).await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<WeakSession>> {
        self.0.lock().recover()
    }

    /// The list with the closed sessions swept out.
    fn lock_swept(&self) -> std::sync::MutexGuard<'_, Vec<WeakSession>> {
        let mut all = self.lock();
        all.retain(|w| w.upgrade().is_some());
        all
    }
}
