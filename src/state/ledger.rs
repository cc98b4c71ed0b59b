//! The budget ledger: the SQLite `budget` rows, written *behind* the budget
//! table (`budgetfile`), off the decision path, by one thread per gavel
//! process.
//!
//! Why behind: a budget charge used to be a SQLite write transaction under
//! the rate table's lock on every call — ~7 `fcntl` locks and a WAL frame
//! write, most of a decision's store time. Now the charge is made in the
//! shared table and this thread copies changed counters to SQLite in
//! batches, every [`LEDGER_EVERY`] (nothing to do: one `fstat` and one load).
//! The queue is the table itself: a counter is "queued" while its slot's
//! `ledgered` seq is behind its `seq`, so it is bounded by the table's size
//! and survives the process — a counter a killed gavel charged and never
//! wrote is written by the next pass of any gavel sharing the table, the
//! one that replaces it included.
//!
//! A pass: under the rate table's lock, the dirty counters are copied (a
//! scan of the table, microseconds); without it, they are written in one
//! transaction, each only over an older seq (`WHERE excluded.seq >
//! budget.seq`: passes of several processes may race, the ledger only moves
//! forward); under the lock again, each counter not changed since is
//! marked clean. The lock is never held while SQLite's is awaited, here or
//! on the decision path's fallback (`SqliteStore::charge`), so the two never
//! deadlock.
//!
//! `GAVEL_TEST_LEDGER_STALL` (tests only, warned at start) stops this
//! writer from writing at all — the fault-injection hook with which the
//! end-to-end tests kill gavel between a charge and its ledger write.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior, params};

use super::budgetfile::{BudgetFile, Dirty, LedgerRead};
use super::ratefile::RateFile;
use super::{StateError, Usage};

/// How often the ledger writer looks for counters to write.
pub const LEDGER_EVERY: Duration = Duration::from_millis(100);
/// At most this many counters per transaction (more go next pass).
const BATCH: usize = 1024;

/// The environment variable that stalls the ledger writer (tests only).
pub const STALL_ENV: &str = "GAVEL_TEST_LEDGER_STALL";

/// The shared tables of the embedded store: the lock's owner and the
/// budget counters kept under it.
pub struct Tables {
    pub rates: RateFile,
    pub budgets: BudgetFile,
    /// One ledger pass at a time in this process (the writer's, a prune's,
    /// shutdown's): a pass that read counters before a prune forgot them
    /// must not write them back after. Passes of other processes can still
    /// put back rows of periods ended long ago; the next prune removes them.
    pub passes: std::sync::Mutex<()>,
}

/// A connection's view of the ledger (for reconciling the table at open).
pub struct Rows<'a> {
    pub conn: &'a Connection,
    pub path: &'a Path,
}

impl Rows<'_> {
    fn err(&self, e: rusqlite::Error) -> StateError {
        StateError::Unavailable {
            path: self.path.display().to_string(),
            message: e.to_string(),
        }
    }
}

impl LedgerRead for Rows<'_> {
    fn row(&self, key: &str, period: &str) -> Result<Usage, StateError> {
        super::sqlite::usage_in(self.conn, key, period).map_err(|e| self.err(e))
    }

    fn max_seq(&self) -> Result<u64, StateError> {
        self.conn
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM budget", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|s| s.max(0) as u64)
            .map_err(|e| self.err(e))
    }
}

/// One pass: writes up to [`BATCH`] counters not yet in the ledger;
/// returns how many it found.
pub fn write_pass(
    tables: &Tables,
    conn: &mut Connection,
    path: &Path,
) -> Result<usize, StateError> {
    use crate::sync::Recover;
    let _one = tables.passes.lock().recover();
    write_locked(tables, conn, path)
}

/// [`write_pass`] for a caller already holding `tables.passes`.
pub fn write_locked(
    tables: &Tables,
    conn: &mut Connection,
    path: &Path,
) -> Result<usize, StateError> {
    let dirty = tables.rates.with_lock(|| tables.budgets.dirty(BATCH))?;
    if dirty.is_empty() {
        return Ok(0);
    }
    let err = |e: rusqlite::Error| StateError::Unavailable {
        path: path.display().to_string(),
        message: format!("cannot write the budget ledger: {e}"),
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    for d in &dirty {
        write_row(&tx, d).map_err(err)?;
    }
    tx.commit().map_err(err)?;
    tables
        .rates
        .with_lock(|| tables.budgets.mark_clean(&dirty))?;
    Ok(dirty.len())
}

fn write_row(tx: &rusqlite::Transaction, d: &Dirty) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO budget (key, period, calls, tokens, seq) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(key, period) DO UPDATE SET calls = excluded.calls,
             tokens = excluded.tokens, seq = excluded.seq
         WHERE excluded.seq > budget.seq",
    )?
    .execute(params![
        d.key,
        d.period,
        d.usage.calls as i64,
        d.usage.tokens as i64,
        d.seq as i64
    ])?;
    Ok(())
}

/// Writes passes until the table has nothing left for the ledger (bounded:
/// a table's worth of batches); shutdown and pruning.
pub fn write_all(tables: &Tables, conn: &mut Connection, path: &Path) -> Result<(), StateError> {
    for _ in 0..=super::budgetfile::SLOTS / BATCH {
        if write_pass(tables, conn, path)? < BATCH {
            return Ok(());
        }
    }
    Ok(())
}

/// A connection for the ledger writer: the store's own settings (bounded
/// busy wait, no checkpoint on commit — the checkpointer's job).
pub fn connect(path: &Path) -> Result<Connection, StateError> {
    let err = |e: rusqlite::Error| StateError::Unavailable {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let conn = Connection::open(path).map_err(err)?;
    conn.busy_timeout(super::sqlite::BUSY_TIMEOUT)
        .map_err(err)?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(err)?;
    conn.pragma_update(None, "journal_size_limit", super::sqlite::WAL_BOUND as i64)
        .map_err(err)?;
    Ok(conn)
}

/// The writer thread; stopped (after a last pass) when dropped.
pub struct Writer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::Thread>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = &self.thread {
            t.unpark();
        }
    }
}

/// Starts the writer for the store at `path`. `stalled`: never write (the
/// tests' fault injection, [`STALL_ENV`]).
pub fn spawn(path: &Path, tables: Arc<Tables>, stalled: bool) -> Writer {
    let stop = Arc::new(AtomicBool::new(false));
    let (flag, path): (_, PathBuf) = (stop.clone(), path.to_path_buf());
    let spawned = std::thread::Builder::new()
        .name("gavel-budget-ledger".into())
        .spawn(move || {
            if stalled {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::park_timeout(LEDGER_EVERY);
                }
                return;
            }
            let mut conn = match connect(&path) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!("the budget ledger writer cannot start (counters stay in the budget table, written by another gavel or the next start): {e}");
                    return;
                }
            };
            // The change counter when a pass last found nothing to write.
            let mut settled = None;
            loop {
                std::thread::park_timeout(LEDGER_EVERY);
                let stopping = flag.load(Ordering::Relaxed);
                let now = tables
                    .rates
                    .with_lock(|| tables.budgets.check_intact().map(|()| tables.budgets.seq()));
                let seq = match now {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!("budget ledger: {e}");
                        if stopping {
                            return;
                        }
                        continue;
                    }
                };
                if settled != Some(seq) || stopping {
                    match write_all(&tables, &mut conn, &path) {
                        Ok(()) => settled = Some(seq),
                        Err(e) => tracing::warn!("budget ledger (retried): {e}"),
                    }
                }
                if stopping {
                    return;
                }
            }
        });
    match spawned {
        Ok(h) => Writer {
            stop,
            thread: Some(h.thread().clone()),
        },
        Err(e) => {
            tracing::warn!(
                "cannot start the budget ledger writer (counters stay in the budget table): {e}"
            );
            Writer { stop, thread: None }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Passes of several processes may race: a row is only ever replaced
    /// by a later change (a higher seq), so the ledger never moves back.
    #[test]
    fn a_stale_write_never_overtakes_a_newer_one() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.sqlite");
        drop(super::super::sqlite::SqliteStore::open(&p).unwrap());
        let mut conn = connect(&p).unwrap();
        let row = |calls: u64, seq: u64| Dirty {
            index: 0,
            hash: (1, 1),
            key: "u".into(),
            period: "day:x".into(),
            usage: Usage { calls, tokens: 0 },
            seq,
        };
        for (calls, seq) in [(5, 10), (4, 9), (5, 10), (6, 11)] {
            let tx = conn.transaction().unwrap();
            write_row(&tx, &row(calls, seq)).unwrap();
            tx.commit().unwrap();
            let got = super::super::sqlite::usage_in(&conn, "u", "day:x").unwrap();
            assert_eq!(got.calls, calls.max(5), "after ({calls}, seq {seq})");
        }
    }
}
