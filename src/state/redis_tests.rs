//! Redis-only behaviour (the shared suite is in `state/tests.rs`): server
//! time, integer counters, the connection pool, and I/O kept off the async
//! workers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use crate::state::tests::RedisServer;

const R: Rate = Rate {
    rate: 1.0,
    period_s: 3600.0,
    burst: 2,
};

#[test]
#[ignore = "needs redis-server (scripts/setup installs it); .ci/run runs it: cargo test --lib -- --ignored redis"]
fn with_server_time_instances_with_skewed_clocks_agree() {
    let server = RedisServer::start();
    // Two instances whose clocks disagree by years: each passes its own now.
    let a = RedisStore::open(&server.url(), true).unwrap();
    let b = RedisStore::open(&server.url(), true).unwrap();
    assert!(a.rate("k", R, 1_000.0).unwrap().allowed);
    assert!(b.rate("k", R, 1e9).unwrap().allowed);
    // Caller time would have refilled b's bucket long ago (and put a's
    // far in the past); Redis's TIME puts both on one timeline.
    let refused = a.rate("k", R, 1_000.0).unwrap();
    assert!(!refused.allowed);
    assert!(
        refused.retry_after > 0.0 && refused.retry_after <= 3600.0,
        "{refused:?}"
    );
    assert!(!b.rate("k", R, 1e9).unwrap().allowed);

    // Without server time the caller's clock rules (what tests drive).
    let c = RedisStore::open(&server.url(), false).unwrap();
    assert!(c.rate("k2", R, 1_000.0).unwrap().allowed);
    assert!(c.rate("k2", R, 1_000.0).unwrap().allowed);
    assert!(!c.rate("k2", R, 1_000.0).unwrap().allowed);
    assert!(c.rate("k2", R, 1_000.0 + 3600.0).unwrap().allowed);
}

#[test]
#[ignore = "needs redis-server (scripts/setup installs it); .ci/run runs it: cargo test --lib -- --ignored redis"]
fn counters_stay_exact_integers_past_1e14() {
    let server = RedisServer::start();
    let s = RedisStore::open(&server.url(), false).unwrap();
    let big = 100_000_000_000_000u64; // 1e14: Lua's tostring gives "1e+14"
    let charge = |add: u64, limit: Option<u64>| {
        s.budget_charge(
            "u",
            "day:x",
            Usage {
                calls: 1,
                tokens: add,
            },
            (None, limit),
        )
        .unwrap()
    };
    assert_eq!(
        charge(big, None),
        (
            true,
            Usage {
                calls: 1,
                tokens: big
            }
        )
    );
    assert_eq!(charge(7, None).1.tokens, big + 7);
    assert_eq!(s.budget_get("u", "day:x").unwrap().tokens, big + 7);
    // A refusal reports the totals as integers too.
    let (ok, used) = charge(1, Some(big));
    assert!(!ok);
    assert_eq!(used.tokens, big + 7);
    s.refund(
        &[],
        Some(BudgetCharge {
            key: "u",
            period: "day:x",
            add: Usage {
                calls: 1,
                tokens: 7,
            },
            owed: Usage::default(),
            limit: (None, None),
        }),
    )
    .unwrap();
    assert_eq!(
        s.budget_get("u", "day:x").unwrap(),
        Usage {
            calls: 1,
            tokens: big
        }
    );
}

#[test]
#[ignore = "needs redis-server (scripts/setup installs it); .ci/run runs it: cargo test --lib -- --ignored redis"]
fn one_store_serves_many_threads_exactly_through_its_pool() {
    let server = RedisServer::start();
    let s = Arc::new(RedisStore::open(&server.url(), false).unwrap());
    let r = Rate {
        rate: 1.0,
        period_s: 3600.0,
        burst: 40,
    };
    let handles: Vec<_> = (0..3 * MAX_CONNECTIONS)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || {
                (0..5)
                    .filter(|_| s.rate("pooled", r, 5_000.0).unwrap().allowed)
                    .count()
            })
        })
        .collect();
    let allowed: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(allowed, 40, "exactly the burst");
    assert!(
        s.connect_attempts() <= MAX_CONNECTIONS,
        "{} connections for at most {MAX_CONNECTIONS}",
        s.connect_attempts()
    );
}

/// While a Redis round trip waits, the async worker it was called from keeps
/// running other tasks (`block_in_place`). The fake Redis below never
/// answers; it closes the connection only when another task of the same
/// one-worker runtime has run — which it can only do if the blocked call
/// gave its worker away.
#[test]
fn a_waiting_round_trip_does_not_hold_its_async_worker() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let fake = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        // Hold the connection open, silent, until told (or the store's read
        // timeout gives up first, which fails the test below).
        let _ = release_rx.recv();
        drop(conn);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let entered = Arc::new(AtomicBool::new(false));
    let other_ran = Arc::new(AtomicBool::new(false));
    let seen_by_call = rt.block_on(async {
        let store = RedisStore::open(&format!("redis://127.0.0.1:{port}/0"), false).unwrap();
        let other = {
            let (entered, other_ran) = (entered.clone(), other_ran.clone());
            tokio::spawn(async move {
                while !entered.load(Ordering::SeqCst) {
                    tokio::task::yield_now().await;
                }
                other_ran.store(true, Ordering::SeqCst);
                let _ = release_tx.send(());
            })
        };
        let call = {
            let (entered, other_ran) = (entered.clone(), other_ran.clone());
            tokio::spawn(async move {
                entered.store(true, Ordering::SeqCst);
                let r = store.budget_get("u", "day:x");
                (r.is_err(), other_ran.load(Ordering::SeqCst))
            })
        };
        let seen = call.await.unwrap();
        other.await.unwrap();
        seen
    });
    fake.join().unwrap();
    assert_eq!(
        seen_by_call,
        (true, true),
        "the fake Redis fails the call, and the other task ran while it waited"
    );
}

/// Every connection is opened with TCP_NODELAY (no Redis needed: the
/// client's settings, which each new connection applies).
#[test]
fn connections_are_opened_without_nagle_delay() {
    let store = RedisStore::open("redis://127.0.0.1:1/0", false).unwrap();
    assert!(store.client.get_connection_info().tcp_settings().nodelay());
    assert!(RedisStore::open("not a url", false).is_err());
}

#[test]
#[ignore = "needs redis-server (scripts/setup installs it); .ci/run runs it: cargo test --lib -- --ignored redis"]
fn set_once_is_once_across_stores_until_it_expires_and_fails_closed_when_down() {
    let mut server = RedisServer::start();
    let a = RedisStore::open(&server.url(), true).unwrap();
    let b = RedisStore::open(&server.url(), true).unwrap();
    assert!(a.set_once("once:n1", 60_000).unwrap());
    // Another instance sees it spent; so does the first.
    assert!(!b.set_once("once:n1", 60_000).unwrap());
    assert!(!a.set_once("once:n1", 60_000).unwrap());
    assert!(b.set_once("once:n2", 60_000).unwrap());
    // Gone after its expiry (a short one, polled: no timing asserted).
    assert!(a.set_once("once:short", 1).unwrap());
    let mut again = false;
    for _ in 0..200 {
        if b.set_once("once:short", 60_000).unwrap() {
            again = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(again, "an expired key is free again");
    // Redis gone: an error, never a first time.
    server.stop();
    let e = a.set_once("once:n3", 60_000).unwrap_err();
    assert!(e.to_string().contains("Redis"), "{e}");
}
