//! The guard's background threads' handle: the pruner that keeps the state
//! store from growing without bound, and (`decision::owed`) the flusher of
//! owed result tokens — each stopped when the guard drops its handle. Apart
//! from the guard because neither is on the decision path: they run on
//! their own threads, on the guard's clock.

use std::sync::Arc;

use crate::state::StateStore;
use crate::state::clock::Clock;

/// How often expired rate-limit keys and ended budget periods are pruned.
pub(super) const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// The background tick that keeps the store from growing without bound
/// ([`StateStore::prune`]), on the guard's clock, off the decision path.
pub struct Pruner {
    pub(in crate::decision) stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Pruner {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Prunes `store` every `every` until the returned handle is dropped.
pub fn spawn_pruner(
    store: Arc<dyn StateStore>,
    clock: Arc<dyn Clock>,
    every: std::time::Duration,
) -> Pruner {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let step = every.min(std::time::Duration::from_secs(1));
    let spawned = std::thread::Builder::new()
        .name("gavel-state-prune".into())
        .spawn(move || {
            let mut waited = std::time::Duration::ZERO;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(step);
                waited += step;
                if waited < every {
                    continue;
                }
                waited = std::time::Duration::ZERO;
                match store.prune(clock.now()) {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(entries = n, "state store pruned"),
                    Err(e) => tracing::warn!("state store prune: {e}"),
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the state store's pruner: {e}");
    }
    Pruner { stop }
}
