//! Where a decision that uses the embedded store runs
//! (`SessionState::decide_async`): on the event loop when the store's locks
//! are free, on the blocking pool — with the same, exact outcome — when
//! another descriptor holds the rate table's `flock` (the one lock of the
//! limits and the budget; SQLite, the budget's ledger, is written behind).

use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::state::StateStore;

/// An enforcer for server `fx` (static rules only) with a daily budget of
/// 10 calls and a rate limit of 100 calls a minute on `echo`.
fn enforcer(dir: &Path) -> Enforcer {
    let toml = format!(
        "[identity.user]\nid = \"ada\"\n\n[budget]\ncalls = 10\n\n[state]\npath = {:?}\n\n[servers.fx]\ncommand = \"x\"\n\n\
         [[servers.fx.limits]]\nscope = \"tool\"\ntool = \"echo\"\nrate = 100\nper = \"1m\"\nburst = 100\n",
        dir.join("state.sqlite").display().to_string()
    );
    let config = crate::config::test_config(&toml, &dir.join("servers.toml"));
    Enforcer::from_config(&config).unwrap()
}

fn echo() -> Action {
    Action::new(ActionType::ToolCall, "fx", "echo", json!({"text": "hi"}))
}

/// Calls the budget holds now, read from the file by a store of its own.
fn calls_charged(dir: &Path) -> u64 {
    let store = crate::state::sqlite::SqliteStore::open(&dir.join("state.sqlite")).unwrap();
    let day = crate::state::budget::Period::Day
        .at(crate::state::clock::Clock::now(
            &crate::state::clock::SystemClock,
        ))
        .0;
    store.budget_get("budget:user:ada", &day).unwrap().calls
}

/// Waits (bounded) until `state` handed a decision to the pool: the inline
/// attempt met the held lock and gave up.
fn until_pooled(state: &SessionState) {
    let start = std::time::Instant::now();
    while state.pooled_decisions() == 0 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "the decision never went to the pool"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[tokio::test]
async fn a_free_store_decides_on_the_event_loop() {
    let d = tempfile::tempdir().unwrap();
    let e = Arc::new(enforcer(d.path()));
    let state = Arc::new(SessionState::default());
    for _ in 0..3 {
        assert!(state.decide_async(&e, &echo()).await.decision().allow);
    }
    assert_eq!(state.pooled_decisions(), 0, "every decision ran inline");
    assert_eq!(calls_charged(d.path()), 3);
}

/// SQLite is the budget's ledger, written behind (`state::ledger`): a
/// write lock another process holds on it no longer touches a decision —
/// the charge is made in the shared budget table, on the event loop — and
/// the ledger catches up once the lock goes.
#[tokio::test]
async fn a_held_sqlite_write_lock_leaves_the_decision_on_the_event_loop() {
    let d = tempfile::tempdir().unwrap();
    let e = Arc::new(enforcer(d.path()));
    let state = Arc::new(SessionState::default());
    assert!(state.decide_async(&e, &echo()).await.decision().allow);
    let holder = rusqlite::Connection::open(d.path().join("state.sqlite")).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let v = state.decide_async(&e, &echo()).await;
    assert!(v.decision().allow, "{:?}", v.decision());
    assert_eq!(state.pooled_decisions(), 0, "decided inline");
    holder.execute_batch("COMMIT").unwrap();
    assert_eq!(calls_charged(d.path()), 2);
    let day = crate::state::budget::Period::Day
        .at(crate::state::clock::Clock::now(
            &crate::state::clock::SystemClock,
        ))
        .0;
    let start = std::time::Instant::now();
    loop {
        let ledger: Option<i64> = holder
            .query_row(
                "SELECT calls FROM budget WHERE key = 'budget:user:ada' AND period = ?1",
                [&day],
                |r| r.get(0),
            )
            .ok();
        if ledger == Some(2) {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "the ledger stayed at {ledger:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[tokio::test]
async fn a_held_rate_table_lock_sends_the_decision_to_the_pool() {
    let d = tempfile::tempdir().unwrap();
    let e = Arc::new(enforcer(d.path()));
    let state = Arc::new(SessionState::default());
    let first = state.decide_async(&e, &echo()).await;
    let left = first
        .decision()
        .rate_limit_remaining
        .expect("a limit applies");
    // Another open file description: flock conflicts as between processes.
    let rates = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(d.path().join("state.rates"))
        .unwrap();
    // SAFETY: plain flock on a descriptor this test owns.
    assert_eq!(unsafe { libc::flock(rates.as_raw_fd(), libc::LOCK_EX) }, 0);
    let watched = state.clone();
    let release = std::thread::spawn(move || {
        until_pooled(&watched);
        // SAFETY: as above.
        unsafe { libc::flock(rates.as_raw_fd(), libc::LOCK_UN) };
    });
    let v = state.decide_async(&e, &echo()).await;
    release.join().unwrap();
    assert!(v.decision().allow, "{:?}", v.decision());
    assert_eq!(v.decision().rate_limit_remaining, Some(left - 1));
    assert_eq!(state.pooled_decisions(), 1);
    assert_eq!(calls_charged(d.path()), 2, "charged once, by the pool");
}
