//! Unit tests of the budget table (`budgetfile.rs`) through the embedded
//! store, and of its reconciling with the ledger.

use super::*;
use crate::state::StateStore;
use crate::state::sqlite::{LedgerMode, SqliteStore};

const ONE: Usage = Usage {
    calls: 1,
    tokens: 2,
};

/// The ledger's row of `key` in period `day:x`, read by a connection of
/// the test's own (None: no row).
fn ledger(path: &Path, key: &str) -> Option<Usage> {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row(
        "SELECT calls, tokens FROM budget WHERE key = ?1 AND period = 'day:x'",
        [key],
        |r| {
            Ok(Usage {
                calls: r.get::<_, i64>(0)? as u64,
                tokens: r.get::<_, i64>(1)? as u64,
            })
        },
    )
    .ok()
}

/// Waits (bounded; no timing asserted) until the ledger holds `want`.
fn ledger_reaches(path: &Path, key: &str, want: Usage) {
    let start = std::time::Instant::now();
    while ledger(path, key) != Some(want) {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "the ledger stayed at {:?}, not {want:?}",
            ledger(path, key)
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn times(n: u64) -> Usage {
    Usage {
        calls: n,
        tokens: 2 * n,
    }
}

/// A gavel charges and dies before its ledger writer wrote anything (the
/// writer stalled: the fault the e2e test injects, then `kill -9`): the
/// next store finds every charge in the table, refuses exactly at the
/// limit, and its writer brings the ledger up to date.
#[test]
fn charges_a_dead_gavel_never_ledgered_are_kept_and_written_by_the_next() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("state.sqlite");
    let dead = SqliteStore::open_with(&p, LedgerMode::Stalled).unwrap();
    for _ in 0..5 {
        let (ok, _) = dead
            .budget_charge("u", "day:x", ONE, (Some(6), None))
            .unwrap();
        assert!(ok);
    }
    assert_eq!(ledger(&p, "u"), None, "nothing reached the ledger");
    drop(dead);
    let next = SqliteStore::open(&p).unwrap();
    assert_eq!(next.budget_get("u", "day:x").unwrap(), times(5));
    let (ok, u) = next
        .budget_charge("u", "day:x", ONE, (Some(6), None))
        .unwrap();
    assert!(ok && u == times(6), "{u:?}");
    let (ok, u) = next
        .budget_charge("u", "day:x", ONE, (Some(6), None))
        .unwrap();
    assert!(!ok && u == times(6), "the 7th is refused: {u:?}");
    ledger_reaches(&p, "u", times(6));
}

/// Several stores (descriptors, as separate processes have) charging one
/// budget at once: exactly its limit is admitted, and the ledger ends with
/// exactly that.
#[test]
fn stores_charging_one_budget_at_once_stay_exact() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("state.sqlite");
    SqliteStore::open(&p).unwrap();
    let admitted: usize = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let p = &p;
                s.spawn(move || {
                    let store = SqliteStore::open(p).unwrap();
                    (0..40)
                        .filter(|_| {
                            store
                                .budget_charge("shared", "day:x", ONE, (Some(100), None))
                                .unwrap()
                                .0
                        })
                        .count()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(admitted, 100);
    ledger_reaches(&p, "shared", times(100));
}

/// A table damaged on disk (a foreign header) is copied aside, never
/// deleted, and rebuilt from the ledger: what the ledger held is kept.
#[test]
fn a_damaged_table_is_copied_aside_and_rebuilt_from_the_ledger() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("state.sqlite");
    let store = SqliteStore::open(&p).unwrap();
    for _ in 0..3 {
        store.budget_add("u", "day:x", ONE).unwrap();
    }
    store.sync().unwrap();
    drop(store);
    let table = p.with_extension("budgets");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&table)
        .unwrap()
        .write_all_at(b"SOMEONES", 0)
        .unwrap();
    let store = SqliteStore::open(&p).unwrap();
    assert_eq!(store.budget_get("u", "day:x").unwrap(), times(3));
    assert_eq!(store.budget_add("u", "day:x", ONE).unwrap(), times(4));
    let aside = std::fs::read(with_suffix(&table, ".damaged")).unwrap();
    assert_eq!(&aside[..8], b"SOMEONES", "the damaged file is kept");
    // A table of another version is refused, not rebuilt.
    drop(store);
    let mut header = [0u8; 4];
    header.copy_from_slice(&(VERSION + 1).to_le_bytes());
    std::fs::OpenOptions::new()
        .write(true)
        .open(&table)
        .unwrap()
        .write_all_at(&header, 8)
        .unwrap();
    let e = SqliteStore::open(&p).err().unwrap().to_string();
    assert!(e.contains("budget table version 2"), "{e}");
}

/// A table last written under another boot (a power loss may have kept
/// older pages than the ledger, or the ledger older rows than the table):
/// each counter becomes the larger of the two, and the ledger follows.
#[test]
fn after_another_boot_each_counter_is_the_larger_of_table_and_ledger() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("state.sqlite");
    let store = SqliteStore::open_with(&p, LedgerMode::Stalled).unwrap();
    for _ in 0..5 {
        store.budget_add("u", "day:x", ONE).unwrap();
    }
    for _ in 0..3 {
        store.budget_add("v", "day:x", ONE).unwrap();
    }
    drop(store);
    let conn = rusqlite::Connection::open(&p).unwrap();
    conn.execute_batch(
        "INSERT INTO budget (key, period, calls, tokens) VALUES ('u', 'day:x', 2, 4), ('v', 'day:x', 9, 18)",
    )
    .unwrap();
    let table = p.with_extension("budgets");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&table)
        .unwrap()
        .write_all_at(&[0xAB; 16], BOOT_AT as u64)
        .unwrap();
    let store = SqliteStore::open(&p).unwrap();
    assert_eq!(store.budget_get("u", "day:x").unwrap(), times(5));
    assert_eq!(store.budget_get("v", "day:x").unwrap(), times(9));
    ledger_reaches(&p, "u", times(5));
    ledger_reaches(&p, "v", times(9));
    // The boot is recorded: the next open is intact and changes nothing.
    drop(store);
    let store = SqliteStore::open(&p).unwrap();
    assert_eq!(store.budget_get("u", "day:x").unwrap(), times(5));
}

/// `PROBE + 1` names of one home slot.
fn crowd() -> Vec<String> {
    let mut keys = vec![];
    let mut i = 0u64;
    while keys.len() < PROBE + 1 {
        let k = format!("budget:user:{i}");
        if (name_hash(&k, "day:x").0 as usize) % SLOTS == 7 {
            keys.push(k);
        }
        i += 1;
    }
    keys
}

/// A probe window of counters not yet ledgered: the next counter is
/// charged in the ledger directly (exactly); once the window is ledgered,
/// that counter takes a clean slot, seeded from the ledger, and the
/// counter it displaced is still read exactly (from the ledger).
#[test]
fn a_full_window_charges_the_ledger_and_clean_slots_are_reused() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("state.sqlite");
    let keys = crowd();
    let stalled = SqliteStore::open_with(&p, LedgerMode::Stalled).unwrap();
    for k in &keys[..PROBE] {
        stalled.budget_add(k, "day:x", ONE).unwrap();
    }
    let last = &keys[PROBE];
    for n in 1..=2 {
        assert_eq!(stalled.budget_add(last, "day:x", ONE).unwrap(), times(n));
        assert_eq!(ledger(&p, last), Some(times(n)), "charged in the ledger");
    }
    drop(stalled);
    let store = SqliteStore::open(&p).unwrap();
    store.sync().unwrap();
    assert_eq!(store.budget_add(last, "day:x", ONE).unwrap(), times(3));
    for k in &keys[..PROBE] {
        assert_eq!(store.budget_get(k, "day:x").unwrap(), times(1), "{k}");
    }
    store.sync().unwrap();
    assert_eq!(ledger(&p, last), Some(times(3)));
    // Every name of the window still charges exactly.
    for k in &keys {
        store.budget_add(k, "day:x", ONE).unwrap();
    }
    assert_eq!(store.budget_get(last, "day:x").unwrap(), times(4));
    assert_eq!(store.budget_get(&keys[0], "day:x").unwrap(), times(2));
}

/// A table removed under a live gavel (or replaced) fails its budgets
/// closed: charging the old copy while a new gavel charges a new one would
/// spend each budget twice.
#[test]
fn a_table_removed_under_a_live_gavel_fails_closed() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("state.sqlite");
    let store = SqliteStore::open(&p).unwrap();
    store.budget_add("u", "day:x", ONE).unwrap();
    std::fs::remove_file(p.with_extension("budgets")).unwrap();
    let e = store.budget_add("u", "day:x", ONE).unwrap_err().to_string();
    assert!(e.contains("budget table was removed or replaced"), "{e}");
    // The rate table's file is the lock of both: removed, both fail closed.
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("state.sqlite");
    let store = SqliteStore::open(&p).unwrap();
    std::fs::remove_file(p.with_extension("rates")).unwrap();
    let e = store.budget_add("u", "day:x", ONE).unwrap_err().to_string();
    assert!(e.contains("rate table was removed or replaced"), "{e}");
}

/// A ledger with no rows (for the table on its own).
struct NoLedger;

impl LedgerRead for NoLedger {
    fn row(&self, _: &str, _: &str) -> Result<Usage, StateError> {
        Ok(Usage::default())
    }
    fn max_seq(&self) -> Result<u64, StateError> {
        Ok(0)
    }
}

/// A slot left marked pruned in the middle of a probe chain (a prune, or
/// a gavel killed while giving the slot to another counter) is skipped by
/// lookups: the counters after it are still found, never claimed twice.
#[test]
fn a_pruned_or_half_claimed_slot_keeps_the_chain() {
    let d = tempfile::tempdir().unwrap();
    let (t, opened) = BudgetFile::open(&d.path().join("b"), &NoLedger, [0; 16]).unwrap();
    assert_eq!(opened, Opened::Created);
    let keys = crowd();
    let charge = |k: &str| {
        t.update(
            k,
            "day:x",
            || Ok(Usage::default()),
            |u| {
                let after = Usage {
                    calls: u.calls + 1,
                    tokens: u.tokens + 2,
                };
                (Some(after), after)
            },
        )
        .unwrap()
        .unwrap()
    };
    for k in &keys[..3] {
        assert_eq!(charge(k), times(1));
    }
    let mid = t.find(name_hash(&keys[1], "day:x")).unwrap();
    t.set(mid, 0, TOMB.0);
    t.set(mid, 1, TOMB.1);
    assert_eq!(t.read(&keys[2], "day:x").unwrap(), Some(times(1)));
    assert_eq!(charge(&keys[2]), times(2), "the same slot, not a new one");
    assert_eq!(t.read(&keys[1], "day:x").unwrap(), None);
    assert_eq!(t.dirty(100).unwrap().len(), 2, "keys 0 and 2");
}

/// The per-thread memory of name hashes answers what the digest answers,
/// for more names than it keeps (entries replaced) and again for each.
#[test]
fn remembered_name_hashes_are_the_digests() {
    let names: Vec<String> = (0..3 * crate::state::slot_hash::ENTRIES)
        .map(|i| format!("user:{i}"))
        .collect();
    for _ in 0..3 {
        for n in &names {
            for period in ["day:x", "day:y"] {
                assert_eq!(name_hash(n, period), name_digest(n, period), "{n} {period}");
            }
        }
    }
    assert_ne!(
        name_hash("a", "b"),
        name_hash("a\0b", ""),
        "key and period kept apart"
    );
}
