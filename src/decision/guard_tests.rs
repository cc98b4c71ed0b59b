use super::*;
use crate::state::budget::Period;
use crate::state::clock::ManualClock;

fn guard(dir: &std::path::Path, clock: &ManualClock) -> Guard {
    guard_with(dir, clock, "calls = 5")
}

/// A guard on `dir`'s store with `[budget]` `budget` (TOML lines), for
/// server `fx`.
pub(in crate::decision) fn guard_with(
    dir: &std::path::Path,
    clock: &ManualClock,
    budget: &str,
) -> Guard {
    let text = format!(
        "[budget]\n{budget}\n\n[state]\npath = {:?}\n\n[servers.fx]\ncommand = \"x\"\n",
        dir.join("state.sqlite").display().to_string()
    );
    let config = Config::from_toml_str(&text, &dir.join("servers.toml"), &|_| None).unwrap();
    Guard::from_config(&config, false, Arc::new(clock.clone()))
}

pub(in crate::decision) fn who() -> Who<'static> {
    Who {
        server: "fx",
        tool: "echo",
        user: "ada",
        agent: "a1",
    }
}

/// A refund after the budget period rolled over goes back into the period
/// the call was charged to, not the new one; so do the result's tokens.
#[test]
fn refunds_and_result_tokens_land_in_the_charged_period() {
    let dir = tempfile::tempdir().unwrap();
    // 2026-11-22T23:59:59Z: one second before a new UTC day.
    let clock = ManualClock::new(1_795_391_999.0);
    let g = guard(dir.path(), &clock);
    let mut d = Decision::allow("t");
    let receipt = g.check(&who(), &[], 3, &mut d).expect("charged");
    assert!(d.allow);
    assert_eq!(receipt.period, "day:2026-11-22");
    let mut d2 = Decision::allow("t");
    let kept = g.check(&who(), &[], 1, &mut d2).unwrap();
    clock.advance(2.0);
    let today = Period::Day.at(clock.now()).0;
    assert_eq!(today, "day:2026-11-23");
    g.charge_result_tokens(&kept, 7);
    g.refund_budget(&receipt);
    g.flush();
    let store = g.store().unwrap();
    let key = "budget:user:ada";
    assert_eq!(
        store.budget_get(key, "day:2026-11-22").unwrap(),
        Usage {
            calls: 1,
            tokens: 8
        },
        "one call back, the other's result tokens in its own period"
    );
    assert_eq!(store.budget_get(key, &today).unwrap(), Usage::default());
}

/// The pruner removes what can no longer matter, on the guard's clock.
#[test]
fn the_pruner_ticks_on_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_795_391_999.0);
    let store: Arc<dyn StateStore> =
        Arc::new(SqliteStore::open(&dir.path().join("s.sqlite")).unwrap());
    store
        .budget_add(
            "b",
            "day:2026-11-22",
            Usage {
                calls: 1,
                tokens: 0,
            },
        )
        .unwrap();
    let _p = spawn_pruner(
        store.clone(),
        Arc::new(clock.clone()),
        std::time::Duration::from_millis(10),
    );
    // Two days later the day's counter is gone (bounded wait, no timing
    // asserted).
    clock.advance(2.0 * 86_400.0 + 1.0);
    let start = std::time::Instant::now();
    while store.budget_get("b", "day:2026-11-22").unwrap().calls != 0 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "never pruned"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn used_fraction_is_the_most_spent_limited_kind() {
    let budget = |calls, tokens| Budget {
        per: BudgetPer::User,
        period: Period::Day,
        calendar: Default::default(),
        calls,
        tokens,
    };
    let u = Usage {
        calls: 30,
        tokens: 900,
    };
    assert_eq!(used_fraction(u, &budget(Some(100), Some(1000))), 0.9);
    assert_eq!(used_fraction(u, &budget(Some(100), None)), 0.3);
    assert_eq!(used_fraction(u, &budget(None, None)), 0.0);
    assert_eq!(used_fraction(u, &budget(Some(0), None)), 1.0);
}
