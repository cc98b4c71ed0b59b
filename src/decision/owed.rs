//! Result tokens counted in memory until they reach the budget's store —
//! only those the guard could not write at once because another process held
//! the table's lock: why, and the durability class, are in
//! `decision::guard`'s module doc.
//! The guard folds them into the next charge of the same budget (one
//! transaction); the flusher thread writes the rest every [`FLUSH_EVERY`],
//! and the guard writes what is left when it goes.

use std::sync::Arc;

use super::guard::Pruner;
use crate::state::{StateStore, Usage};
use crate::sync::Recover;

/// How often result tokens kept in memory are written to the store.
pub const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Result tokens counted and not yet written, per (budget key, period).
#[derive(Default)]
pub struct Owed(std::sync::Mutex<std::collections::HashMap<(String, String), u64>>);

impl Owed {
    pub(super) fn add(&self, key: &str, period: &str, tokens: u64) {
        let mut m = self.0.lock().recover();
        match m.get_mut(&(key.to_string(), period.to_string())) {
            Some(t) => *t = t.saturating_add(tokens),
            None => {
                m.insert((key.to_string(), period.to_string()), tokens);
            }
        }
    }

    pub(super) fn get(&self, key: &str, period: &str) -> u64 {
        let m = self.0.lock().recover();
        if m.is_empty() {
            return 0;
        }
        m.get(&(key.to_string(), period.to_string()))
            .copied()
            .unwrap_or(0)
    }

    pub(super) fn take(&self, key: &str, period: &str) -> u64 {
        let mut m = self.0.lock().recover();
        if m.is_empty() {
            return 0;
        }
        m.remove(&(key.to_string(), period.to_string()))
            .unwrap_or(0)
    }

    /// Writes every owed count to `store`; one that fails stays owed.
    pub(super) fn flush(&self, store: &dyn StateStore) {
        let all = std::mem::take(&mut *self.0.lock().recover());
        for ((key, period), tokens) in all {
            let add = Usage { calls: 0, tokens };
            if let Err(e) = store.budget_add(&key, &period, add) {
                tracing::error!(key = %key, "result tokens not yet counted in the budget (kept, retried): {e}");
                self.add(&key, &period, tokens);
            }
        }
    }
}

/// Writes `owed` to `store` every [`FLUSH_EVERY`] until dropped.
pub(super) fn spawn_flusher(store: Arc<dyn StateStore>, owed: Arc<Owed>) -> Pruner {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let spawned = std::thread::Builder::new()
        .name("gavel-budget-flush".into())
        .spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(FLUSH_EVERY);
                owed.flush(store.as_ref());
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(
            "cannot start the budget's flusher (result tokens are written at the next charge or at shutdown): {e}"
        );
    }
    Pruner { stop }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Decision;
    use crate::decision::guard::Guard;
    use crate::decision::guard::tests::{guard_with, who};
    use crate::state::clock::ManualClock;
    use crate::state::limits::Limit;

    /// A guard with a daily budget of 30 tokens, on `dir`'s store.
    fn guard(dir: &std::path::Path, clock: &ManualClock) -> Guard {
        guard_with(dir, clock, "tokens = 30")
    }

    /// The budget's stored totals, read by a store of its own.
    fn stored(dir: &std::path::Path, period: &str) -> Usage {
        crate::state::sqlite::SqliteStore::open(&dir.join("state.sqlite"))
            .unwrap()
            .budget_get("budget:user:ada", period)
            .unwrap()
    }

    const NOW: f64 = 1_795_391_000.0;

    /// A guard after one call of 13 argument tokens whose result had 10.
    fn charged(
        dir: &std::path::Path,
        clock: &ManualClock,
    ) -> (Guard, crate::decision::guard::Receipt) {
        let g = guard(dir, clock);
        let mut d = Decision::allow("t");
        let first = g.check(&who(), &[], 13, &mut d).expect("13 of 30");
        g.charge_result_tokens(&first, 10);
        (g, first)
    }

    /// A result's tokens count for the next call at once (the policy's view
    /// and the charge's limit), also when that charge is refused; written
    /// once.
    #[test]
    fn result_tokens_fold_into_the_next_charge() {
        let (dir, clock) = (tempfile::tempdir().unwrap(), ManualClock::new(NOW));
        let (g, first) = charged(dir.path(), &clock);
        let view = g.budget_view(&who()).unwrap();
        assert_eq!(view["used"]["tokens"], 23, "{view}");
        let mut d = Decision::allow("t");
        assert!(
            g.check(&who(), &[], 13, &mut d).is_none(),
            "13 + 10 + 13 > 30"
        );
        assert_eq!(d.reasons, vec!["budget_exceeded".to_string()]);
        assert_eq!(stored(dir.path(), &first.period).tokens, 23);
        let mut d = Decision::allow("t");
        let small = g.check(&who(), &[], 7, &mut d).expect("23 + 7 = 30");
        drop(g);
        assert_eq!(
            stored(dir.path(), &small.period),
            Usage {
                calls: 2,
                tokens: 30
            },
            "every token once"
        );
    }

    /// Owed tokens reach the store with no other call: by the flusher, and
    /// by the guard when it goes; a charge refused by a rate limit (which
    /// never reaches the budget) leaves them owed, not lost.
    #[test]
    fn owed_tokens_are_written_without_another_call_and_never_lost() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(NOW);
        let g = guard(dir.path(), &clock);
        let mut d = Decision::allow("t");
        let r = g.check(&who(), &[], 1, &mut d).unwrap();
        g.charge_result_tokens(&r, 4);
        let start = std::time::Instant::now();
        while stored(dir.path(), &r.period).tokens != 5 {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(30),
                "the flusher never wrote the owed tokens"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let limit = Limit::parse(
            &serde_json::json!({"scope": "tool", "tool": "echo", "rate": 1, "per": "1h", "burst": 1}),
            "test",
        )
        .unwrap();
        let mut d = Decision::allow("t");
        let r2 = g.check(&who(), &[&limit], 1, &mut d).unwrap();
        g.charge_result_tokens(&r2, 6);
        let mut d = Decision::allow("t");
        assert!(g.check(&who(), &[&limit], 1, &mut d).is_none());
        assert_eq!(d.reasons, vec!["rate_limited".to_string()]);
        drop(g);
        assert_eq!(
            stored(dir.path(), &r.period),
            Usage {
                calls: 2,
                tokens: 12
            },
            "1 + 4 + 1 + 6"
        );
    }

    /// A result's tokens are in the store as soon as they are charged when
    /// the table's lock is free (exact across `kill -9`); with the lock held
    /// by another process the charge returns at once — the reply never
    /// waits — and the tokens are owed, counted by every read here, and
    /// written later, never lost.
    #[test]
    fn result_tokens_are_written_at_once_and_owed_only_when_the_lock_is_held() {
        use std::os::fd::AsRawFd;
        let (dir, clock) = (tempfile::tempdir().unwrap(), ManualClock::new(NOW));
        let (g, first) = charged(dir.path(), &clock);
        assert_eq!(
            stored(dir.path(), &first.period).tokens,
            23,
            "written at once"
        );

        // Another open file description: flock conflicts as between processes.
        let rates = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.path().join("state.rates"))
            .unwrap();
        // SAFETY: plain flock on a descriptor this test owns.
        assert_eq!(unsafe { libc::flock(rates.as_raw_fd(), libc::LOCK_EX) }, 0);
        g.charge_result_tokens(&first, 5);
        // SAFETY: as above.
        unsafe { libc::flock(rates.as_raw_fd(), libc::LOCK_UN) };
        let view = g.budget_view(&who()).unwrap();
        assert_eq!(
            view["used"]["tokens"], 28,
            "owed tokens are counted: {view}"
        );
        drop(g);
        assert_eq!(
            stored(dir.path(), &first.period).tokens,
            28,
            "and written, once"
        );
    }
}
