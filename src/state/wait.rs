//! Whether a store call may wait for a lock, for the thread making it.
//!
//! Why: a decision that uses the embedded store used to hop to the blocking
//! pool every time, because a lock another process holds could make it wait
//! up to the busy timeout — on a single-threaded runtime that would stall
//! every session. Measured, the hop itself (futex, eventfd, a second thread
//! woken) cost 40–90 µs a call, while the locks are free nearly always. So a
//! decision first runs on the event loop inside [`no_wait`]: the rate
//! table's `flock` is tried once (`LOCK_NB`), SQLite runs with a zero busy
//! timeout, and the in-process mutexes are only tried. A store that would
//! have to wait gives up instead and marks the attempt ([`gave_up`]); the
//! caller drops that attempt (nothing was charged: a charge is atomic) and
//! decides again on the blocking pool, where the usual bounded waits apply.
//!
//! A thread-local rather than a parameter: the decision path between the
//! front and the store (enforcer, guard, the store trait) is the same for
//! both attempts, and only the embedded store has locks to try. Stores that
//! cannot promise not to wait (Redis: a network round trip) are never tried
//! inline ([`crate::state::StateStore::can_try`]).

use std::cell::Cell;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The default: store calls wait, bounded by their timeouts.
    Patient,
    /// Inside [`no_wait`]: give up rather than wait.
    NoWait,
    /// Inside [`no_wait`], and a store call gave up.
    GaveUp,
}

thread_local! {
    static MODE: Cell<Mode> = const { Cell::new(Mode::Patient) };
}

/// Runs `f` with store calls on this thread forbidden to wait; returns its
/// value and whether some store call gave up (then `f`'s effects on the
/// store were none, and its answer must not be used).
pub fn no_wait<T>(f: impl FnOnce() -> T) -> (T, bool) {
    struct Restore(Mode);
    impl Drop for Restore {
        fn drop(&mut self) {
            MODE.with(|m| m.set(self.0));
        }
    }
    let _restore = Restore(MODE.with(|m| m.replace(Mode::NoWait)));
    let out = f();
    (out, MODE.with(|m| m.get()) == Mode::GaveUp)
}

/// Whether a store call on this thread must not wait now.
pub(crate) fn forbidden() -> bool {
    MODE.with(|m| m.get()) != Mode::Patient
}

/// A store call that would have waited: marks the attempt, and returns the
/// error it gives (never seen by the agent: the attempt is dropped).
pub(crate) fn gave_up(path: &std::path::Path, what: &str) -> super::StateError {
    MODE.with(|m| {
        if m.get() == Mode::NoWait {
            m.set(Mode::GaveUp);
        }
    });
    super::StateError::Unavailable {
        path: path.display().to_string(),
        message: format!(
            "{what} is held elsewhere; the decision is taken again off the event loop"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_is_marked_only_when_a_store_gave_up() {
        assert!(!forbidden());
        let ((), gave) = no_wait(|| assert!(forbidden()));
        assert!(!gave);
        let ((), gave) = no_wait(|| {
            let _ = gave_up(std::path::Path::new("s"), "the lock");
            assert!(forbidden(), "still no waiting after giving up");
        });
        assert!(gave);
        assert!(!forbidden(), "patient again after the attempt");
        // Outside an attempt, giving up marks nothing.
        let _ = gave_up(std::path::Path::new("s"), "the lock");
        let ((), gave) = no_wait(|| ());
        assert!(!gave, "a new attempt starts unmarked");
    }
}
