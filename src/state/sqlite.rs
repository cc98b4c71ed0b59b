//! The embedded [`StateStore`]: one SQLite file shared by every gavel
//! process on the machine (each host window starts its own gavel), for
//! budgets, with rate limits in a shared-memory table beside it
//! (`<file>.rates`, see `ratefile`: a SQLite write per call was most of a
//! decision's time, and a TAT is soft state).
//!
//! Why SQLite for budgets: in WAL mode readers never block the writer, a
//! busy timeout turns lock contention between processes into a short wait,
//! and every read-modify-write runs in a `BEGIN IMMEDIATE` transaction so two
//! processes never both charge from the same old value. `synchronous =
//! NORMAL` in WAL mode: a committed increment survives a crash or `kill -9`
//! of gavel (it is in the WAL before the call is forwarded); only a power
//! loss can drop the last commits. A call's limits and budget are charged
//! together: the budget transaction runs under the rate table's lock, after
//! every limit allowed.
//!
//! A file that is not a gavel state store (or is corrupt) is an error —
//! never reset: the limits and budgets kept there fail closed. So is a lock
//! another process holds past [`BUSY_TIMEOUT`]. A decision is first tried on
//! the event loop with every wait forbidden (`state::wait`: the mutex tried,
//! `busy_timeout(0)`); only when a lock is held elsewhere does it run again
//! on a blocking thread, where the bounded waits apply
//! (`SessionState::decide_async`).
//! Rows that can no longer matter are removed by [`StateStore::prune`] on the
//! guard's tick (an index on `period` keeps finding ended periods cheap; it
//! is created if missing, the schema version is unchanged).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::gcra::Rate;
use super::ratefile::RateFile;
use super::{StateError, StateStore, Usage};
use crate::sync::Recover;

const SCHEMA_VERSION: i64 = 1;

/// How long a write waits for another process's transaction before the call
/// fails closed (`state_unavailable`). Transactions here take microseconds;
/// a lock held longer than this is a stuck or misbehaving writer, and a
/// bounded refusal beats holding the agent's call.
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// Budget rows of periods that ended this long ago go.
const PRUNE_BUDGET_AFTER_S: f64 = 86_400.0;
/// At most this many rows of each table per prune (one short transaction).
const PRUNE_BATCH: i64 = 1000;

pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// Rate limits live beside the file, in shared memory (`ratefile`):
    /// budgets are accounting and stay here.
    rates: RateFile,
    /// Stops the checkpointer thread when the store goes.
    _checkpointer: Checkpointer,
}

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
struct Checkpointer {
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
fn wal_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_os_string();
    p.push("-wal");
    PathBuf::from(p)
}

fn spawn_checkpointer(path: &Path) -> Checkpointer {
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

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let err = |m: String| StateError::Unavailable {
            path: path.display().to_string(),
            message: m,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        }
        let conn = Connection::open(path).map_err(|e| err(e.to_string()))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| err(e.to_string()))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| err(e.to_string()))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| err(e.to_string()))?;
        // Checkpoints are the checkpointer thread's job (above); a WAL this
        // connection restarts is cut back to the bound.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(|e| err(e.to_string()))?;
        conn.pragma_update(None, "journal_size_limit", WAL_BOUND as i64)
            .map_err(|e| err(e.to_string()))?;
        conn.execute_batch(
            "BEGIN IMMEDIATE;
             CREATE TABLE IF NOT EXISTS gavel_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS budget (key TEXT NOT NULL, period TEXT NOT NULL,
                 calls INTEGER NOT NULL, tokens INTEGER NOT NULL, PRIMARY KEY (key, period));
             CREATE INDEX IF NOT EXISTS budget_period ON budget (period);
             INSERT OR IGNORE INTO gavel_meta (key, value) VALUES ('schema_version', 1);
             COMMIT;",
        )
        .map_err(|e| err(format!("not a usable gavel state store ({e})")))?;
        let version: i64 = conn
            .query_row(
                "SELECT value FROM gavel_meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| err(e.to_string()))?;
        if version != SCHEMA_VERSION {
            return Err(err(format!(
                "schema version {version}, this gavel uses {SCHEMA_VERSION}"
            )));
        }
        let rates = RateFile::open(&path.with_extension("rates"))?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            rates,
            _checkpointer: spawn_checkpointer(path),
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> StateError {
        StateError::Unavailable {
            path: self.path.display().to_string(),
            message: e.to_string(),
        }
    }

    /// The connection, locked for this thread, with the busy timeout the
    /// caller may wait: inside [`super::wait::no_wait`] the mutex is only
    /// tried and SQLite waits for no lock (`busy_timeout(0)`); otherwise
    /// [`BUSY_TIMEOUT`]. A mutex held by another thread while this call may
    /// not wait gives up.
    fn conn(&self) -> Result<MutexGuard<'_, Connection>, StateError> {
        let nowait = super::wait::forbidden();
        let conn = if nowait {
            match self.conn.try_lock() {
                Ok(c) => c,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    return Err(super::wait::gave_up(&self.path, "the state store"));
                }
            }
        } else {
            self.conn.lock().recover()
        };
        // A plain setting of the connection: no syscall.
        conn.busy_timeout(if nowait { Duration::ZERO } else { BUSY_TIMEOUT })
            .map_err(|e| self.err(e))?;
        Ok(conn)
    }

    /// A SQLite error as the store's: a lock another process holds, met
    /// while this call may not wait, gives up ([`super::wait::gave_up`]).
    fn fail(&self, e: rusqlite::Error) -> StateError {
        let busy = matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        );
        if busy && super::wait::forbidden() {
            return super::wait::gave_up(&self.path, "the state store's write lock");
        }
        self.err(e)
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction) -> rusqlite::Result<T>,
    ) -> Result<T, StateError> {
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.fail(e))?;
        let out = f(&tx).map_err(|e| self.fail(e))?;
        tx.commit().map_err(|e| self.fail(e))?;
        Ok(out)
    }
}

type Tx<'a> = rusqlite::Transaction<'a>;

fn usage_in(conn: &Connection, key: &str, period: &str) -> rusqlite::Result<Usage> {
    Ok(conn
        .prepare_cached("SELECT calls, tokens FROM budget WHERE key = ?1 AND period = ?2")?
        .query_row([key, period], |r| {
            Ok(Usage {
                calls: r.get::<_, i64>(0)? as u64,
                tokens: r.get::<_, i64>(1)? as u64,
            })
        })
        .optional()?
        .unwrap_or_default())
}

fn write_usage(tx: &Tx, key: &str, period: &str, u: Usage) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO budget (key, period, calls, tokens) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(key, period) DO UPDATE SET calls = excluded.calls, tokens = excluded.tokens",
    )?
    .execute(params![key, period, u.calls as i64, u.tokens as i64])?;
    Ok(())
}

fn within(u: Usage, limit: (Option<u64>, Option<u64>)) -> bool {
    limit.0.is_none_or(|l| u.calls <= l) && limit.1.is_none_or(|l| u.tokens <= l)
}

fn add(a: Usage, b: Usage) -> Usage {
    Usage {
        calls: a.calls + b.calls,
        tokens: a.tokens + b.tokens,
    }
}

impl StateStore for SqliteStore {
    fn charge(
        &self,
        limits: &[(String, Rate)],
        now: f64,
        budget: Option<super::BudgetCharge<'_>>,
    ) -> Result<super::Charged, StateError> {
        // The budget transaction runs under the rate table's lock, after the
        // limits allowed: the call is charged to all of them or to none.
        let charge_budget = |b: super::BudgetCharge<'_>| {
            self.with(|tx| {
                let used = add(usage_in(tx, b.key, b.period)?, b.owed);
                let after = add(used, b.add);
                if !within(after, b.limit) {
                    if b.owed != Usage::default() {
                        write_usage(tx, b.key, b.period, used)?;
                    }
                    return Ok((false, used));
                }
                write_usage(tx, b.key, b.period, after)?;
                Ok((true, after))
            })
        };
        if limits.is_empty() {
            return Ok(super::Charged {
                rates: vec![],
                budget: budget.map(charge_budget).transpose()?,
            });
        }
        let (rates, budget) = self.rates.charge(limits, now, |outs| {
            if !outs.iter().all(|o| o.allowed) {
                return Ok((false, None));
            }
            match budget {
                None => Ok((true, None)),
                Some(b) => {
                    let done = charge_budget(b)?;
                    Ok((done.0, Some(done)))
                }
            }
        })?;
        Ok(super::Charged { rates, budget })
    }

    fn peek(
        &self,
        limits: &[(String, Rate)],
        now: f64,
        budget: Option<super::BudgetCharge<'_>>,
    ) -> Result<super::Charged, StateError> {
        let rates = if limits.is_empty() {
            vec![]
        } else {
            self.rates.peek(limits, now)?
        };
        let budget = match budget {
            Some(b) => Some((b, self.budget_get(b.key, b.period)?)),
            None => None,
        };
        Ok(super::predicted(rates, budget))
    }

    fn budget_add(&self, key: &str, period: &str, add_: Usage) -> Result<Usage, StateError> {
        self.with(|tx| {
            let after = add(usage_in(tx, key, period)?, add_);
            write_usage(tx, key, period, after)?;
            Ok(after)
        })
    }

    fn refund(
        &self,
        limits: &[(String, Rate)],
        budget: Option<super::BudgetCharge<'_>>,
    ) -> Result<(), StateError> {
        self.rates.refund(limits, || {
            let Some(b) = budget else { return Ok(()) };
            self.with(|tx| {
                let u = usage_in(tx, b.key, b.period)?;
                let back = Usage {
                    calls: u.calls.saturating_sub(b.add.calls),
                    tokens: u.tokens.saturating_sub(b.add.tokens),
                };
                write_usage(tx, b.key, b.period, back)
            })
        })
    }

    /// Bounded deletes in one short transaction: budget rows of periods that
    /// ended a day ago (by the period's name; names gavel does not make are
    /// kept). Rate limits need none: their table reuses drained slots, and a
    /// `gcra` table an earlier gavel left here is no longer read.
    fn prune(&self, now: f64) -> Result<u64, StateError> {
        self.with(|tx| {
            let mut gone = 0;
            let periods: Vec<String> = tx
                .prepare_cached("SELECT DISTINCT period FROM budget")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut left = PRUNE_BATCH as usize;
            for p in periods {
                if left == 0 {
                    break;
                }
                if super::budget::period_end(&p).is_some_and(|end| end < now - PRUNE_BUDGET_AFTER_S)
                {
                    let n = tx
                        .prepare_cached(
                            "DELETE FROM budget WHERE rowid IN
                             (SELECT rowid FROM budget WHERE period = ?1 LIMIT ?2)",
                        )?
                        .execute(params![p, left as i64])?;
                    gone += n;
                    left -= n;
                }
            }
            Ok(gone as u64)
        })
    }

    /// A plain read: no write lock, so it never waits behind a writer (WAL).
    fn budget_get(&self, key: &str, period: &str) -> Result<Usage, StateError> {
        let conn = self.conn()?;
        usage_in(&conn, key, period).map_err(|e| self.fail(e))
    }

    fn can_try(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod checkpoint_tests {
    use super::*;

    #[test]
    fn checkpoints_happen_off_the_write_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        let store = SqliteStore::open(&path).unwrap();
        let size = || std::fs::metadata(&path).unwrap().len();
        let before = size();
        // Far more than SQLite's 1000-page autocheckpoint threshold would allow
        // to sit in the WAL.
        for i in 0..3000 {
            store
                .budget_add(
                    &format!("budget:user:{i}:{}", "x".repeat(200)),
                    "2026-11-22",
                    Usage {
                        calls: 1,
                        tokens: 1,
                    },
                )
                .unwrap();
        }
        // The write path never checkpoints…
        let auto: i64 = store
            .conn
            .lock()
            .unwrap()
            .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .unwrap();
        assert_eq!(auto, 0);
        // …the checkpointer thread copies the WAL into the database file.
        let start = std::time::Instant::now();
        while size() <= before {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no checkpoint happened"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        drop(store);
    }
}

#[cfg(test)]
mod wal_tests {
    use super::*;

    /// Many charges, with a reader always coming and going (as decisions of
    /// other sessions and processes do): the WAL passes its bound and is
    /// brought back under it, and ends under it (bounded waits; no timing
    /// asserted).
    #[test]
    fn the_wal_stays_bounded_under_steady_writes_and_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        let store = std::sync::Arc::new(SqliteStore::open(&path).unwrap());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (stop, path) = (stop.clone(), path.clone());
            std::thread::spawn(move || {
                let conn = Connection::open(&path).unwrap();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = usage_in(&conn, "budget:user:ada", "day:x");
                }
            })
        };
        let wal = || std::fs::metadata(wal_path(&path)).map_or(0, |m| m.len());
        let one = Usage {
            calls: 1,
            tokens: 1,
        };
        let mut peak = 0;
        // Each commit writes a 4 KiB page: 3 × the bound's worth.
        for _ in 0..3 {
            for _ in 0..WAL_BOUND / 4096 {
                store.budget_add("budget:user:ada", "day:x", one).unwrap();
            }
            peak = peak.max(wal());
            let start = std::time::Instant::now();
            while wal() > WAL_BOUND {
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "the WAL stayed at {} bytes",
                    wal()
                );
                store.budget_add("budget:user:ada", "day:x", one).unwrap();
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        reader.join().unwrap();
        assert!(peak > WAL_BOUND, "the test wrote past the bound ({peak})");
        assert!(wal() <= WAL_BOUND, "{} bytes", wal());
        let n = store.budget_get("budget:user:ada", "day:x").unwrap().calls;
        assert!(n >= 3 * (WAL_BOUND / 4096), "every charge kept: {n}");
    }
}
