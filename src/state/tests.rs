//! The backend-neutral suite: every `StateStore` must pass `suite`. The
//! Redis backend (HTTP issue) runs the same function.

use super::*;
use proptest::prelude::*;

/// A time well after the epoch, where every step of the suite happens.
const T0: f64 = 1_000_000.0;
/// 2 a second, 3 at once.
const R: Rate = Rate {
    rate: 2.0,
    period_s: 1.0,
    burst: 3,
};

/// What every backend must do. `store` must be empty. The steps run in this
/// order on one store: each later one starts from what the earlier left.
pub fn suite(store: &dyn StateStore) {
    one_limit_gives_its_burst_then_refuses_without_charging(store);
    several_limits_are_charged_all_or_none(store);
    budgets_add_up_per_key_and_period(store);
    a_budget_charge_adds_only_within_its_limit(store);
    a_calls_limits_and_budget_are_charged_together_and_refunded(store);
    super::peek_tests::a_peek_answers_as_the_charge_would_and_charges_nothing(store);
}

fn one_limit_gives_its_burst_then_refuses_without_charging(store: &dyn StateStore) {
    let (r, t0) = (R, T0);
    // A burst of 3, then refused with the wait until the next slot.
    let outs: Vec<RateOutcome> = (0..4).map(|_| store.rate("k", r, t0).unwrap()).collect();
    assert_eq!(
        outs.iter()
            .map(|o| (o.allowed, o.remaining))
            .collect::<Vec<_>>(),
        vec![(true, 2), (true, 1), (true, 0), (false, 0)]
    );
    assert!((outs[3].retry_after - 0.5).abs() < 1e-6, "{:?}", outs[3]);
    // A refused request is not charged: after the wait, one is allowed.
    assert!(store.rate("k", r, t0 + 0.5).unwrap().allowed);
    assert!(!store.rate("k", r, t0 + 0.5).unwrap().allowed);
    // Keys are independent.
    assert!(store.rate("other", r, t0).unwrap().allowed);
    // Refilled after a quiet period.
    assert_eq!(store.rate("k", r, t0 + 10.0).unwrap().remaining, 2);
}

fn several_limits_are_charged_all_or_none(store: &dyn StateStore) {
    let (r, t0) = (R, T0);
    let one = Rate {
        rate: 1.0,
        period_s: 60.0,
        burst: 1,
    };
    let both = vec![("a".to_string(), r), ("b".to_string(), one)];
    let outs = store.rate_all(&both, t0).unwrap();
    assert!(outs.iter().all(|o| o.allowed));
    let outs = store.rate_all(&both, t0).unwrap();
    assert!(outs[0].allowed && !outs[1].allowed);
    assert_eq!(
        store.rate("a", r, t0).unwrap().remaining,
        1,
        "the refused call did not charge limit a: this is its 2nd request of 3"
    );
}

fn budgets_add_up_per_key_and_period(store: &dyn StateStore) {
    assert_eq!(store.budget_get("u", "day:x").unwrap(), Usage::default());
    let u = store
        .budget_add(
            "u",
            "day:x",
            Usage {
                calls: 1,
                tokens: 10,
            },
        )
        .unwrap();
    assert_eq!(
        u,
        Usage {
            calls: 1,
            tokens: 10
        }
    );
    let u = store
        .budget_add(
            "u",
            "day:x",
            Usage {
                calls: 1,
                tokens: 5,
            },
        )
        .unwrap();
    assert_eq!(
        u,
        Usage {
            calls: 2,
            tokens: 15
        }
    );
    assert_eq!(store.budget_get("u", "day:x").unwrap(), u);
    assert_eq!(store.budget_get("u", "day:y").unwrap(), Usage::default());
}

/// Starts from budget `u` at 2 calls and 15 tokens (the step before).
fn a_budget_charge_adds_only_within_its_limit(store: &dyn StateStore) {
    // Charging within a limit, atomically: over it nothing is added.
    let lim = (Some(3), Some(100));
    let (ok, u) = store
        .budget_charge(
            "u",
            "day:x",
            Usage {
                calls: 1,
                tokens: 1,
            },
            lim,
        )
        .unwrap();
    assert!(ok);
    assert_eq!(
        u,
        Usage {
            calls: 3,
            tokens: 16
        }
    );
    let (ok, u) = store
        .budget_charge(
            "u",
            "day:x",
            Usage {
                calls: 1,
                tokens: 1,
            },
            lim,
        )
        .unwrap();
    assert!(!ok, "a 4th call is over 3");
    assert_eq!(
        u,
        Usage {
            calls: 3,
            tokens: 16
        }
    );
    let (ok, _) = store
        .budget_charge(
            "u",
            "day:x",
            Usage {
                calls: 0,
                tokens: 90,
            },
            (None, Some(100)),
        )
        .unwrap();
    assert!(!ok, "tokens over their limit");
}

/// Starts from budget `u` at 3 calls of 3 (the step before).
fn a_calls_limits_and_budget_are_charged_together_and_refunded(store: &dyn StateStore) {
    let t0 = T0;
    // One call's limits and budget together: a budget without room charges
    // no limit; a refusing limit charges no budget.
    let lim = Rate {
        rate: 1.0,
        period_s: 60.0,
        burst: 2,
    };
    let full = BudgetCharge {
        key: "u",
        period: "day:x",
        add: Usage {
            calls: 1,
            tokens: 0,
        },
        owed: Usage::default(),
        limit: (Some(3), None),
    };
    let c = store.charge(&[("z".into(), lim)], t0, Some(full)).unwrap();
    assert_eq!(
        c.budget,
        Some((
            false,
            Usage {
                calls: 3,
                tokens: 16
            }
        ))
    );
    assert_eq!(
        store.rate("z", lim, t0).unwrap().remaining,
        1,
        "z was not charged"
    );
    let room = BudgetCharge {
        key: "v",
        period: "day:x",
        add: Usage {
            calls: 1,
            tokens: 0,
        },
        owed: Usage::default(),
        limit: (Some(9), None),
    };
    let c = store.charge(&[("z".into(), lim)], t0, Some(room)).unwrap();
    assert!(c.rates[0].allowed && c.budget.unwrap().0);
    let c = store.charge(&[("z".into(), lim)], t0, Some(room)).unwrap();
    assert!(!c.rates[0].allowed && c.budget.is_none());
    assert_eq!(
        store.budget_get("v", "day:x").unwrap().calls,
        1,
        "refused: v not charged"
    );
    // A refund gives back one call's charge: the limit has a slot again and
    // the budget its call.
    store.refund(&[("z".into(), lim)], Some(room)).unwrap();
    assert_eq!(store.budget_get("v", "day:x").unwrap().calls, 0);
    let c = store.charge(&[("z".into(), lim)], t0, Some(room)).unwrap();
    assert!(c.rates[0].allowed && c.budget.unwrap().0, "{c:?}");
}

#[test]
fn sqlite_passes_the_suite_and_persists() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("state.sqlite");
    suite(&sqlite::SqliteStore::open(&p).unwrap());
    let again = sqlite::SqliteStore::open(&p).unwrap();
    assert_eq!(
        again.budget_get("u", "day:x").unwrap(),
        Usage {
            calls: 3,
            tokens: 16
        },
        "budgets survive reopening"
    );
}

#[test]
fn sqlite_is_exact_under_concurrent_writers() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("state.sqlite");
    sqlite::SqliteStore::open(&p).unwrap();
    let r = Rate {
        rate: 1.0,
        period_s: 3600.0,
        burst: 50,
    };
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let p = p.clone();
            std::thread::spawn(move || {
                // Each thread its own connection, as separate processes are.
                let s = sqlite::SqliteStore::open(&p).unwrap();
                let mut allowed = 0;
                for _ in 0..25 {
                    s.budget_add(
                        "shared",
                        "day:x",
                        Usage {
                            calls: 1,
                            tokens: 2,
                        },
                    )
                    .unwrap();
                    if s.rate("limit", r, 5_000.0).unwrap().allowed {
                        allowed += 1;
                    }
                }
                allowed
            })
        })
        .collect();
    let allowed: u32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let s = sqlite::SqliteStore::open(&p).unwrap();
    assert_eq!(
        s.budget_get("shared", "day:x").unwrap(),
        Usage {
            calls: 100,
            tokens: 200
        }
    );
    assert_eq!(allowed, 50, "exactly the burst, across connections");
}

/// Pruning: limiter keys full again for an hour and budget counters of
/// periods ended a day ago go; live ones and names gavel does not make stay;
/// each prune is bounded (a backlog goes over several).
#[test]
fn sqlite_prunes_what_can_no_longer_matter_in_bounded_steps() {
    let d = tempfile::tempdir().unwrap();
    let s = sqlite::SqliteStore::open(&d.path().join("state.sqlite")).unwrap();
    let r = Rate {
        rate: 1.0,
        period_s: 60.0,
        burst: 1,
    };
    // 2026-11-23T12:00:00Z
    let now = 1_795_435_200.0;
    s.rate("live", r, now).unwrap();
    let one = Usage {
        calls: 1,
        tokens: 0,
    };
    for i in 0..1500 {
        s.budget_add(&format!("old{i}"), "day:2026-11-20", one)
            .unwrap();
    }
    for (key, period) in [
        ("u", "day:2026-11-21"),
        ("u", "day:2026-11-22"),
        ("u", "day:2026-11-23"),
        ("u", "week:2026-W46"),
        ("u", "week:2026-W48"),
        ("u", "custom"),
    ] {
        s.budget_add(key, period, one).unwrap();
    }
    // Periods are visited in the order SQLite lists them; what matters is
    // that each prune is bounded and that all the ended rows go.
    assert_eq!(s.prune(now).unwrap(), 1000, "a bounded batch");
    assert_eq!(
        s.prune(now).unwrap(),
        500 + 2,
        "the rest of the ended periods"
    );
    assert_eq!(s.prune(now).unwrap(), 0);
    assert!(
        !s.rate("live", r, now).unwrap().allowed,
        "a live limiter is kept"
    );
    for (period, kept) in [
        ("day:2026-11-21", false),
        // Ended at midnight, less than a day ago: kept.
        ("day:2026-11-22", true),
        ("day:2026-11-23", true),
        ("week:2026-W46", false),
        ("week:2026-W48", true),
        ("custom", true),
    ] {
        assert_eq!(s.budget_get("u", period).unwrap() == one, kept, "{period}");
    }
}

/// A ledger write lock held by another process: a counter in the budget
/// table is charged without it (the ledger is written behind, and catches
/// up once the lock goes); a counter the table cannot hold (a name longer
/// than a slot) is charged in the ledger directly, and past the busy
/// timeout fails closed with a clear error instead of holding the call.
#[test]
fn sqlite_fails_closed_when_another_writer_holds_the_lock() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("state.sqlite");
    let s = sqlite::SqliteStore::open(&p).unwrap();
    let other = rusqlite::Connection::open(&p).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let one = Usage {
        calls: 1,
        tokens: 0,
    };
    assert_eq!(s.budget_add("u", "day:x", one).unwrap().calls, 1);
    let long = "l".repeat(budgetfile::NAME_MAX);
    let e = s.budget_add(&long, "day:x", one).unwrap_err();
    assert!(e.to_string().contains("locked"), "{e}");
    assert!(e.to_string().contains("fails closed"), "{e}");
    other.execute_batch("ROLLBACK").unwrap();
    assert_eq!(s.budget_add(&long, "day:x", one).unwrap().calls, 1);
    let ledger = |key: &str| {
        other
            .query_row(
                "SELECT calls FROM budget WHERE key = ?1 AND period = 'day:x'",
                [key],
                |r| r.get::<_, i64>(0),
            )
            .ok()
    };
    assert_eq!(ledger(&long), Some(1), "charged in the ledger directly");
    let start = std::time::Instant::now();
    while ledger("u") != Some(1) {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "the ledger never caught up"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_file_that_is_not_a_store_is_an_error_and_is_left_alone() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("state.sqlite");
    std::fs::write(&p, b"this is not a database, and it is mine").unwrap();
    let e = sqlite::SqliteStore::open(&p).err().expect("refused");
    assert!(e.to_string().contains("never reset"), "{e}");
    assert_eq!(
        std::fs::read(&p).unwrap(),
        b"this is not a database, and it is mine"
    );
}

proptest! {
    /// GCRA: over any sequence of request times, no window of length
    /// `period` admits more than `burst + rate` requests, a refusal always
    /// says how long to wait, and waiting that long is enough.
    #[test]
    fn gcra_never_admits_more_than_the_rate_allows(
        rate in 1u32..20, burst in 1u64..10, gaps in proptest::collection::vec(0u32..2000, 1..200)
    ) {
        let r = Rate { rate: rate as f64, period_s: 1.0, burst };
        let mut tat = None;
        let mut now = 0.0;
        let mut admitted: Vec<f64> = Vec::new();
        for g in gaps {
            now += g as f64 / 1000.0;
            let (out, new_tat) = gcra::check(tat, r, now);
            tat = Some(new_tat);
            if out.allowed {
                admitted.push(now);
            } else {
                prop_assert!(out.retry_after > 0.0);
                let (later, _) = gcra::check(tat, r, now + out.retry_after + 1e-6);
                prop_assert!(later.allowed, "waiting retry_after is enough");
            }
        }
        for (i, t) in admitted.iter().enumerate() {
            let in_window = admitted[i..].iter().take_while(|u| **u < t + 1.0).count() as u64;
            prop_assert!(in_window <= burst + rate as u64, "{in_window} in one period");
        }
    }

    /// Budget periods: every instant belongs to the period that ends after it,
    /// and a period ends at most a day (week) later.
    #[test]
    fn periods_contain_their_instant(
        now in 0u64..4_102_444_800u64,
        offset_min in -840i64..=840,
        week_start in 0u8..7,
    ) {
        let now = now as f64;
        let cal = budget::Calendar { utc_offset_s: offset_min * 60, week_start };
        for (p, len) in [(budget::Period::Day, 86_400.0), (budget::Period::Week, 7.0 * 86_400.0)] {
            let (name, end) = p.at_in(now, &cal);
            prop_assert!(end > now && end - now <= len, "{}", name);
            // The instant one period-length earlier is in the previous one.
            let (before, _) = p.at_in(end - len - 0.5, &cal);
            prop_assert_ne!(&before, &name);
            prop_assert_eq!(budget::period_end(&name), Some(end));
        }
    }
}

pub(crate) use crate::test_support::RedisServer;

#[test]
#[ignore = "needs redis-server (scripts/setup installs it); .ci/run runs it: cargo test --lib -- --ignored redis"]
fn redis_passes_the_suite() {
    let server = RedisServer::start();
    // The suite drives time itself: the caller's clock, not Redis's.
    suite(&redis::RedisStore::open(&server.url(), false).unwrap());
}

#[test]
#[ignore = "needs redis-server (scripts/setup installs it); .ci/run runs it: cargo test --lib -- --ignored redis"]
fn redis_is_exact_across_connections_and_fails_closed_until_it_returns() {
    let mut server = RedisServer::start();
    let url = server.url();
    let r = Rate {
        rate: 1.0,
        period_s: 3600.0,
        burst: 50,
    };
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let s = redis::RedisStore::open(&url, false).unwrap();
                (0..25)
                    .filter(|_| s.rate("limit", r, 5_000.0).unwrap().allowed)
                    .count()
            })
        })
        .collect();
    let allowed: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(allowed, 50, "exactly the burst, across connections");

    // Down and back: the backoff runs on a clock the test moves.
    let backoff = clock::ManualClock::new(0.0);
    let store = redis::RedisStore::open_with_backoff_clock(
        &url,
        false,
        std::sync::Arc::new(backoff.clone()),
    )
    .unwrap();
    assert!(store.rate("x", r, 1.0).is_ok());
    let port = server.port;
    server.stop();
    let e = store.rate("x", r, 1.0).unwrap_err().to_string();
    assert!(
        e.contains("Redis at redis://127.0.0.1") && e.contains("redis-server"),
        "{e}"
    );
    let attempts = store.connect_attempts();
    // While down, calls fail at once without trying Redis again.
    for _ in 0..20 {
        let e = store.budget_get("u", "day:x").unwrap_err().to_string();
        assert!(e.contains("unreachable since"), "{e}");
    }
    assert_eq!(
        store.connect_attempts(),
        attempts,
        "no attempt within the backoff"
    );
    // Redis returns; the backoff is not over yet: still refused, untried.
    let _back = RedisServer::start_on(port);
    assert!(store.rate("x", r, 1.0).is_err());
    assert_eq!(store.connect_attempts(), attempts);
    // After the backoff, one call probes, reconnects and is allowed.
    backoff.advance(redis::MAX_BACKOFF.as_secs_f64());
    assert!(
        store.rate("x", r, 1.0).unwrap().allowed,
        "recovers when Redis returns"
    );
    assert_eq!(store.connect_attempts(), attempts + 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The shared-memory rate table (the limiter gavel runs) decides every
    /// call exactly as the GCRA model does with an in-memory map of TATs:
    /// per key, all-or-nothing across a call's limits, refusals charging
    /// nothing — over random calls naming random subsets of a few keys.
    #[test]
    fn the_rate_table_decides_as_the_gcra_model(
        calls in proptest::collection::vec(
            (0u32..1500, proptest::collection::vec(0usize..4, 1..3)),
            1..120,
        ),
        rates in proptest::collection::vec((1u32..10, 1u64..5), 4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let table = ratefile::RateFile::open(&dir.path().join("state.rates")).unwrap();
        let rates: Vec<Rate> = rates
            .iter()
            .map(|(r, b)| Rate { rate: *r as f64, period_s: 1.0, burst: *b })
            .collect();
        let mut model: std::collections::HashMap<usize, f64> = Default::default();
        let mut now = 1_000.0;
        for (gap, keys) in calls {
            now += gap as f64 / 1000.0;
            let mut keys = keys;
            keys.sort();
            keys.dedup();
            let limits: Vec<(String, Rate)> =
                keys.iter().map(|k| (format!("rl:k{k}"), rates[*k])).collect();
            let (got, ()) = table.charge(&limits, now, |_| Ok((true, ()))).unwrap();
            let want: Vec<(gcra::RateOutcome, f64)> = keys
                .iter()
                .map(|k| gcra::check(model.get(k).copied(), rates[*k], now))
                .collect();
            for (g, (w, _)) in got.iter().zip(&want) {
                prop_assert_eq!(g.allowed, w.allowed);
                prop_assert!((g.retry_after - w.retry_after).abs() < 1e-6);
                prop_assert_eq!(g.remaining, w.remaining);
            }
            if want.iter().all(|(w, _)| w.allowed) {
                for (k, (_, tat)) in keys.iter().zip(want) {
                    model.insert(*k, tat);
                }
            }
        }
    }
}
