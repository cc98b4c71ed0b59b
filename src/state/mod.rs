//! State that outlives a request: rate limits, and budgets that outlive a
//! session and a process. One interface ([`StateStore`]) with one
//! backend-neutral test suite (`tests.rs`); the embedded backend
//! (`sqlite.rs`) keeps rate limits and budget counters in shared-memory
//! tables (`ratefile.rs`, `budgetfile.rs`) under one lock, with SQLite as
//! the budgets' ledger written behind (`ledger.rs`), shared safely by every
//! gavel process on the machine.
//!
//! Time comes from an injectable [`clock::Clock`]. Nothing here knows about
//! MCP or Rego: the enforcer asks, the store answers.

pub mod budget;
pub mod budgetfile;
pub mod bus;
pub mod checkpoint;
pub mod clock;
pub mod gcra;
pub mod ledger;
pub mod limits;
pub mod ratefile;
pub mod redis;
mod slot_hash;
pub mod sqlite;
pub mod wait;

pub use gcra::{Rate, RateOutcome};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "the state store {path} cannot be used: {message}; gavel fails closed on the limits and budgets it keeps there — fix or move the file (it is never reset silently)"
    )]
    Unavailable { path: String, message: String },
    #[error(
        "Redis at {url} cannot be used: {message}; gavel fails closed on the limits and budgets it keeps there until Redis answers again — check that redis-server is running and reachable from this host ([state] redis_url); nothing is reset"
    )]
    Redis { url: String, message: String },
}

/// Counters kept per (key, period) for budgets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    pub calls: u64,
    pub tokens: u64,
}

/// A budget charge that goes with a call (see [`StateStore::charge`]).
#[derive(Debug, Clone, Copy)]
pub struct BudgetCharge<'a> {
    pub key: &'a str,
    pub period: &'a str,
    pub add: Usage,
    /// (calls, tokens); None: unlimited.
    pub limit: (Option<u64>, Option<u64>),
    /// Already spent and not yet written (the results of earlier calls,
    /// `decision::guard`): added in the same transaction whether or not
    /// `add` fits, and counted before `add` is checked against `limit`.
    pub owed: Usage,
}

/// What [`StateStore::charge`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Charged {
    pub rates: Vec<RateOutcome>,
    /// Whether the budget had room, and its totals (after the charge when it
    /// had); None when a rate limit refused first or no budget was given.
    pub budget: Option<(bool, Usage)>,
}

pub trait StateStore: Send + Sync {
    /// One call's rate limits and budget, atomically: nothing is charged
    /// unless every limit allows and the budget has room.
    fn charge(
        &self,
        limits: &[(String, Rate)],
        now: f64,
        budget: Option<BudgetCharge<'_>>,
    ) -> Result<Charged, StateError>;
    /// One request against several GCRA limits at once, atomically: charged
    /// to every limit only when all allow it (a refused call costs nothing).
    fn rate_all(
        &self,
        limits: &[(String, Rate)],
        now: f64,
    ) -> Result<Vec<RateOutcome>, StateError> {
        Ok(self.charge(limits, now, None)?.rates)
    }
    /// One request against one limit.
    fn rate(&self, key: &str, rate: Rate, now: f64) -> Result<RateOutcome, StateError> {
        let mut v = self.rate_all(&[(key.to_string(), rate)], now)?;
        Ok(v.remove(0))
    }
    /// Adds to a budget counter and returns the totals after the add.
    fn budget_add(&self, key: &str, period: &str, add: Usage) -> Result<Usage, StateError>;
    /// Adds to a budget counter only if the totals stay within `limit`
    /// (None: unlimited), atomically; returns whether it did and the totals.
    fn budget_charge(
        &self,
        key: &str,
        period: &str,
        add: Usage,
        limit: (Option<u64>, Option<u64>),
    ) -> Result<(bool, Usage), StateError> {
        let c = self.charge(
            &[],
            0.0,
            Some(BudgetCharge {
                key,
                period,
                add,
                limit,
                owed: Usage::default(),
            }),
        )?;
        Ok(c.budget.unwrap_or((false, Usage::default())))
    }
    /// What [`StateStore::charge`] would find for the same call now,
    /// without charging anything: each limit's outcome and the budget's
    /// (whether it has room, and the totals the charge would leave). Read
    /// only; two peeks never change an answer. A charge made by anyone
    /// between a peek and the call can still refuse the call.
    fn peek(
        &self,
        limits: &[(String, Rate)],
        now: f64,
        budget: Option<BudgetCharge<'_>>,
    ) -> Result<Charged, StateError>;
    /// The totals of a budget counter (zero when never used).
    fn budget_get(&self, key: &str, period: &str) -> Result<Usage, StateError>;
    /// Removes state that can no longer matter at `now`: rate-limit keys
    /// whose limiter has been full again for a long while, budget counters
    /// of periods that ended long ago. Bounded per call (a long backlog goes
    /// over several ticks); returns how many entries went. Backends whose
    /// entries expire by themselves (Redis TTLs) keep the default.
    fn prune(&self, _now: f64) -> Result<u64, StateError> {
        Ok(0)
    }
    /// Gives back what [`StateStore::charge`] took for a call that was then
    /// not made (its approval was declined): one emission interval on each
    /// limit, `add` on the budget (never below zero).
    fn refund(
        &self,
        limits: &[(String, Rate)],
        budget: Option<BudgetCharge<'_>>,
    ) -> Result<(), StateError>;
    /// Writes now what the store keeps to write later (the embedded
    /// store's ledger, `ledger.rs`): shutdown. Stores that write at once
    /// keep the default.
    fn sync(&self) -> Result<(), StateError> {
        Ok(())
    }
    /// Whether calls may be tried without waiting ([`wait::no_wait`]): the
    /// store's locks are local and a held one gives up at once. False for a
    /// network store, whose every call may wait (Redis).
    fn can_try(&self) -> bool {
        false
    }
}

/// What a charge would do, from the limits' outcomes and the budget's
/// stored totals now (its `owed` is added to them): the budget is only reached when every limit allows,
/// as in [`StateStore::charge`].
pub(crate) fn predicted(
    rates: Vec<RateOutcome>,
    budget: Option<(BudgetCharge<'_>, Usage)>,
) -> Charged {
    let all = rates.iter().all(|o| o.allowed);
    let budget = budget.filter(|_| all).map(|(b, stored)| {
        let used = Usage {
            calls: stored.calls.saturating_add(b.owed.calls),
            tokens: stored.tokens.saturating_add(b.owed.tokens),
        };
        let after = Usage {
            calls: used.calls.saturating_add(b.add.calls),
            tokens: used.tokens.saturating_add(b.add.tokens),
        };
        let fits = b.limit.0.is_none_or(|l| after.calls <= l)
            && b.limit.1.is_none_or(|l| after.tokens <= l);
        if fits { (true, after) } else { (false, used) }
    });
    Charged { rates, budget }
}

#[cfg(test)]
mod peek_tests;
#[cfg(test)]
mod tests;
