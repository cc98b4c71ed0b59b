//! The WAL checkpointer of the embedded store's SQLite file (the budget
//! ledger): off every write path, and keeping the WAL bounded.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

/// WAL checkpoints run on their own thread, once a second, instead of on
/// whichever decision happens to cross SQLite's 1000-page threshold (a
/// checkpoint copies pages and fsyncs: it was the decision path's tail).
/// PASSIVE never blocks writers or readers, in this process or another.
///
/// PASSIVE alone does not bound the WAL: under steady load some reader or
/// writer always holds a frame, the WAL never restarts, and it grew by
/// every commit (311 MB after 38 k calls). So the thread also looks at the
/// WAL's size every [`WAL_LOOK`], and past [`WAL_BOUND`] runs a TRUNCATE
/// checkpoint: it waits (busy timeout) for the readers of old frames,
/// copies the rest and empties the file. Writers of every process wait
/// meanwhile — milliseconds for a few MB, within their own bounded busy
/// wait, and a decision tried on the event loop just moves to the pool.
/// `journal_size_limit` makes any process that restarts the WAL cut it back
/// too. Several processes may run this on one file: SQLite serialises
/// checkpoints, and a busy one is tried again at the next look.
pub struct Checkpointer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// The WAL size past which it is checkpointed and truncated.
pub const WAL_BOUND: u64 = 4 << 20;
/// How often the WAL's size is looked at (one `stat`).
const WAL_LOOK: Duration = Duration::from_millis(100);

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// `<file>-wal`, where SQLite keeps the WAL of `path`.
pub fn wal_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_os_string();
    p.push("-wal");
    PathBuf::from(p)
}

pub fn spawn_checkpointer(path: &Path) -> Checkpointer {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (flag, path) = (stop.clone(), path.to_path_buf());
    let spawned = std::thread::Builder::new()
        .name("gavel-sqlite-checkpoint".into())
        .spawn(move || {
            let Ok(conn) = Connection::open(&path) else {
                return;
            };
            let _ = conn.busy_timeout(Duration::from_secs(5));
            let _ = conn.pragma_update(None, "journal_size_limit", WAL_BOUND as i64);
            let wal = wal_path(&path);
            let looks_per_passive = (1000 / WAL_LOOK.as_millis()).max(1);
            let mut looks = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(WAL_LOOK);
                looks += 1;
                let big = std::fs::metadata(&wal).is_ok_and(|m| m.len() > WAL_BOUND);
                let mode = match (big, looks % looks_per_passive == 0) {
                    (true, _) => "TRUNCATE",
                    (false, true) => "PASSIVE",
                    (false, false) => continue,
                };
                let sql = format!("PRAGMA wal_checkpoint({mode})");
                if let Err(e) = conn.query_row(&sql, [], |_| Ok(())) {
                    tracing::debug!(path = %path.display(), "WAL checkpoint ({mode}): {e}");
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the state store's checkpointer: {e}");
    }
    Checkpointer { stop }
}
