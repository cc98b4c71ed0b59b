//! `session_mode = "shared"`: one upstream connection serves every host
//! session of this gavel. What the upstream sends back must still reach the
//! right host:
//!
//! - a response goes to the request it answers (rmcp matches ids);
//! - progress goes to the host peer of the request that carries the token
//!   (the progress map holds that peer);
//! - an upstream→host request (sampling, elicitation, roots) goes to the one
//!   session whose call to this upstream is in flight — and is declined when
//!   none is, or when several are (gavel cannot tell whose it is);
//! - a resource update goes to the sessions subscribed to that URI; the
//!   upstream subscription is made by the first of them and dropped by the
//!   last (one session unsubscribing must not cut the others off);
//! - list changes and log messages go to every attached session.
//!
//! Decisions and counters stay per host session: each request is decided in
//! its own session before it is forwarded here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::mpsc;

use crate::decision::SessionState;
use crate::host::link::HostLink;
use crate::sync::Recover;

/// A host session as a shared upstream sees it.
pub struct Owner {
    pub host: Arc<HostLink>,
    pub session: Arc<SessionState>,
    /// The session's name-table rebuild channel.
    pub changed: mpsc::Sender<super::supervisor::Changed>,
}

#[derive(Default)]
pub struct SharedRoute {
    attached: Mutex<Vec<Weak<Owner>>>,
    in_flight: Mutex<Vec<(u64, Arc<Owner>)>>,
    next: AtomicU64,
    /// URI → the sessions subscribed to it.
    subscriptions: Mutex<std::collections::HashMap<String, Vec<Weak<Owner>>>>,
}

/// Removes its call from the in-flight set when dropped.
pub struct InFlight {
    route: Arc<SharedRoute>,
    id: u64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.route
            .in_flight
            .lock()
            .recover()
            .retain(|(i, _)| *i != self.id);
    }
}

impl SharedRoute {
    /// A session starts using the shared upstream (weakly: a closed session
    /// drops out by itself).
    pub fn attach(&self, owner: &Arc<Owner>) {
        let mut a = self.attached.lock().recover();
        a.retain(|w| w.strong_count() > 0);
        a.push(Arc::downgrade(owner));
    }

    /// Every live attached session.
    pub fn owners(&self) -> Vec<Arc<Owner>> {
        self.attached
            .lock()
            .recover()
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// Marks a call of `owner` in flight until the guard drops.
    pub fn begin(self: &Arc<Self>, owner: Arc<Owner>) -> InFlight {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.in_flight.lock().recover().push((id, owner));
        InFlight {
            route: self.clone(),
            id,
        }
    }

    /// The session an upstream→host request belongs to: the only one with a
    /// call in flight.
    pub fn target(&self, server: &str) -> Result<Arc<Owner>, String> {
        let flying = self.in_flight.lock().recover();
        let mut distinct: Vec<&Arc<Owner>> = Vec::new();
        for (_, o) in flying.iter() {
            if !distinct.iter().any(|d| Arc::ptr_eq(d, o)) {
                distinct.push(o);
            }
        }
        match distinct.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(format!(
                "server {server:?} is shared by several sessions and asked the host something while none of its calls was in flight; gavel cannot tell which user to ask, so it declines"
            )),
            many => Err(format!(
                "server {server:?} is shared and {} sessions have calls in flight; gavel cannot tell which user this request is for, so it declines (use session_mode = \"per_session\" for servers that ask the user)",
                many.len()
            )),
        }
    }

    /// Records `owner`'s subscription; true when it is the first live one
    /// (the upstream must be asked to subscribe).
    pub fn subscribe(&self, owner: &Arc<Owner>, uri: &str) -> bool {
        let mut subs = self.subscriptions.lock().recover();
        let list = subs.entry(uri.to_string()).or_default();
        list.retain(|w| w.strong_count() > 0);
        let first = list.is_empty();
        if !list
            .iter()
            .any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(owner)))
        {
            list.push(Arc::downgrade(owner));
        }
        first
    }

    /// Drops `owner`'s subscription; true when no live one is left (the
    /// upstream must be asked to unsubscribe).
    pub fn unsubscribe(&self, owner: &Arc<Owner>, uri: &str) -> bool {
        let mut subs = self.subscriptions.lock().recover();
        let Some(list) = subs.get_mut(uri) else {
            return true;
        };
        list.retain(|w| w.strong_count() > 0 && !std::ptr::eq(w.as_ptr(), Arc::as_ptr(owner)));
        let last = list.is_empty();
        if last {
            subs.remove(uri);
        }
        last
    }

    /// The live sessions subscribed to `uri`.
    pub fn subscribers(&self, uri: &str) -> Vec<Arc<Owner>> {
        self.subscriptions
            .lock()
            .recover()
            .get(uri)
            .map(|l| l.iter().filter_map(Weak::upgrade).collect())
            .unwrap_or_default()
    }

    /// Tells every attached session that `server`'s lists changed.
    pub fn changed(&self, c: super::supervisor::Changed) {
        for o in self.owners() {
            let _ = o.changed.try_send(c.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> (
        Arc<Owner>,
        mpsc::Receiver<crate::upstream::supervisor::Changed>,
    ) {
        let (tx, rx) = mpsc::channel(8);
        (
            Arc::new(Owner {
                host: Arc::new(HostLink::default()),
                session: Arc::new(SessionState::default()),
                changed: tx,
            }),
            rx,
        )
    }

    #[test]
    fn requests_route_to_the_one_session_in_flight_else_decline() {
        let route = Arc::new(SharedRoute::default());
        let (a, mut arx) = owner();
        let (b, mut brx) = owner();
        route.attach(&a);
        route.attach(&b);
        assert!(
            route
                .target("s")
                .err()
                .unwrap()
                .contains("none of its calls")
        );
        let g1 = route.begin(a.clone());
        let g2 = route.begin(a.clone());
        assert!(
            Arc::ptr_eq(&route.target("s").unwrap(), &a),
            "two calls, one session"
        );
        let g3 = route.begin(b.clone());
        assert!(route.target("s").err().unwrap().contains("2 sessions"));
        drop((g1, g2));
        assert!(Arc::ptr_eq(&route.target("s").unwrap(), &b));
        drop(g3);
        route.changed(crate::upstream::supervisor::Changed {
            server: "s".into(),
            notice: None,
        });
        assert_eq!(arx.try_recv().unwrap().server, "s");
        assert_eq!(brx.try_recv().unwrap().server, "s");
        assert!(route.subscribe(&a, "r://x"), "first subscriber");
        assert!(!route.subscribe(&b, "r://x"));
        assert!(!route.subscribe(&a, "r://x"), "idempotent");
        assert!(!route.unsubscribe(&a, "r://x"), "b still subscribed");
        assert_eq!(route.subscribers("r://x").len(), 1);
        assert!(Arc::ptr_eq(&route.subscribers("r://x")[0], &b));
        drop(b);
        assert_eq!(route.owners().len(), 1, "a closed session drops out");
        assert!(route.subscribers("r://x").is_empty());
        assert!(
            route.subscribe(&a, "r://x"),
            "only dead subscribers: first again"
        );
        assert!(route.unsubscribe(&a, "r://x"));
    }
}
