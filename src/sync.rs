//! The one way gavel takes a `std::sync` lock: [`Recover`], which carries
//! on with the data of a lock whose holder panicked ("poisoned").
//!
//! Why poisoning is ignored: a panic while a lock is held is a bug in one
//! request (a decision, an audit write, a status line), and each of those is
//! already contained — tokio tasks and `spawn_blocking` return the panic as
//! an error, the policy worker catches it (`decision::engine::run`), and the
//! request is refused. Propagating the poison would turn that one bug into a
//! panic in *every* later request that takes the same lock: a proxy that
//! refuses everything until it is restarted, the audit log and rate tables
//! included. The data behind gavel's locks stays sound across a panic:
//! - replaced whole in one assignment (`*slot = Arc::new(..)`: route tables,
//!   upstream lists and connections), so no half-written value is ever seen;
//! - caches, pools and counters (JWKS, engine pool, session counters, stderr
//!   tail), where a lost or half-made update costs one entry or one count;
//! - guards of something with its own atomicity: a SQLite transaction rolls
//!   back when dropped, the rate table is soft state under its own file
//!   lock, a log record is one `write(2)`.
//!
//! Where it must not be used: a lock over a multi-step update whose middle
//! state would decide something (e.g. a grant recorded before the check it
//! depends on). Such code must make its update one step (compute first,
//! then store), or treat a poisoned lock as a failure and fail closed.
//! Today no lock in gavel is of that kind; a new one that is must not call
//! [`Recover::recover`].

use std::sync::{LockResult, PoisonError};

/// `lock()`, `read()`, `write()`, `Condvar::wait*()`: the guard, poisoned
/// or not (see the module doc for why, and where not).
pub trait Recover<G> {
    fn recover(self) -> G;
}

impl<G> Recover<G> for LockResult<G> {
    fn recover(self) -> G {
        self.unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::Recover;
    use std::sync::{Arc, Mutex, RwLock};

    #[test]
    fn a_lock_whose_holder_panicked_still_gives_its_data() {
        let m = Arc::new(Mutex::new(1));
        let r = Arc::new(RwLock::new(2));
        let (m2, r2) = (m.clone(), r.clone());
        let _ = std::thread::spawn(move || {
            let _a = m2.lock().recover();
            let _b = r2.write().recover();
            panic!("poison both");
        })
        .join();
        assert!(m.is_poisoned() && r.is_poisoned());
        *m.lock().recover() += 1;
        assert_eq!(*m.lock().recover(), 2);
        assert_eq!(*r.read().recover(), 2);
    }
}
