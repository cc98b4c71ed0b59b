//! [`StateStore::peek`] in the backend-neutral suite (`tests.rs` calls it
//! for every backend): a policy query reads what a charge would find.

use super::*;

const T0: f64 = 1_000_000.0;

/// `peek` (a policy query) finds what `charge` would, for limits and
/// budget, and leaves the store as it was: any number of peeks, then the
/// charge still finds exactly what the peeks predicted.
pub(super) fn a_peek_answers_as_the_charge_would_and_charges_nothing(store: &dyn StateStore) {
    let t0 = T0 + 1000.0;
    let lim = Rate {
        rate: 1.0,
        period_s: 60.0,
        burst: 2,
    };
    let keys = [("peek".to_string(), lim)];
    let b = BudgetCharge {
        key: "pb",
        period: "day:p",
        add: Usage {
            calls: 1,
            tokens: 5,
        },
        owed: Usage::default(),
        limit: (Some(2), None),
    };
    for _ in 0..2 {
        let before = store.peek(&keys, t0, Some(b)).unwrap();
        for _ in 0..3 {
            assert_eq!(
                store.peek(&keys, t0, Some(b)).unwrap(),
                before,
                "a peek changes nothing"
            );
        }
        assert_eq!(store.charge(&keys, t0, Some(b)).unwrap(), before);
    }
    // Both spent: the limit refuses (the budget is not reached), as a
    // charge would, still without charging.
    let spent = store.peek(&keys, t0, Some(b)).unwrap();
    assert!(
        !spent.rates[0].allowed && spent.budget.is_none(),
        "{spent:?}"
    );
    assert_eq!(store.charge(&keys, t0, Some(b)).unwrap(), spent);
    // The budget alone: full after two calls.
    let alone = store.peek(&[], t0, Some(b)).unwrap();
    assert_eq!(
        alone.budget,
        Some((
            false,
            Usage {
                calls: 2,
                tokens: 10
            }
        ))
    );
    assert_eq!(store.budget_get("pb", "day:p").unwrap().calls, 2);
    // A key never seen stays unseen: a peek claims no slot.
    let fresh = store.peek(&[("never".to_string(), lim)], t0, None).unwrap();
    assert_eq!(
        (fresh.rates[0].allowed, fresh.rates[0].remaining),
        (true, 1)
    );
}
