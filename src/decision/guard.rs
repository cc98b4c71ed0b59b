//! gavel-side checks after the policy: rate limits, then the budget, charged
//! in the state store (`crate::state`, which knows nothing of decisions: the
//! guard is the part of the enforcer that talks to it).
//!
//! Order (issue contract): Rego → limiter (charged only if Rego allowed) →
//! budget. Only `tools/call` is counted. Everything fails closed: a store
//! that cannot be opened or read denies the calls whose limits or budget it
//! keeps, with `state_unavailable` and a remediation naming the file.
//!
//! The budget increment reaches the store inside the decision, before the
//! call is forwarded — in the embedded store, the shared budget table
//! (`state::budgetfile`), whose pages outlive the process, with SQLite as
//! its ledger written behind — so it survives a crash or `kill -9` of gavel
//! right after.
//!
//! A result's tokens are known only once the upstream answered. They are
//! written to the shared table then, before the reply, when its lock is free
//! (a few stores, no wait: exact across `kill -9`). When another process
//! holds the lock they are kept in memory instead (`decision::owed`) — the
//! reply never waits — and written with the next charge of the same budget,
//! or by the flusher thread within [`crate::decision::owed::FLUSH_EVERY`], or
//! when the guard goes (shutdown). Every read of the budget here counts
//! them. Only those, found the lock held, have a weaker class: another gavel
//! process sees them up to [`crate::decision::owed::FLUSH_EVERY`] later, and
//! a `kill -9` can lose them (calls and argument tokens are charged before
//! the call is forwarded). With Redis they are written at once, as before (a
//! network store: no fold into its script).

use std::sync::Arc;

use serde_json::{Value, json};

use crate::config::{Budget, BudgetPer, Config};
use crate::decision::Decision;
use crate::decision::owed::{Owed, spawn_flusher};
use crate::state::clock::Clock;
use crate::state::limits::Limit;
use crate::state::sqlite::SqliteStore;
use crate::state::{BudgetCharge, StateStore, Usage};

#[path = "guard_pruner.rs"]
mod pruner;
#[path = "guard_refusals.rs"]
mod refusals;
use pruner::PRUNE_EVERY;
pub use pruner::{Pruner, spawn_pruner};
use refusals::{budget_exceeded, rate_limited, unavailable};

pub struct Guard {
    /// Opened when some limit or a budget needs it; `Err` keeps why not.
    store: Option<Result<Arc<dyn StateStore>, String>>,
    clock: Arc<dyn Clock>,
    budget: Option<Budget>,
    /// Result tokens not written yet; `None`: written at once (Redis, or no
    /// usable store).
    owed: Option<Arc<Owed>>,
    /// Stops the pruning thread when the guard goes.
    _pruner: Option<Pruner>,
    /// Stops the flusher of `owed` when the guard goes.
    _flusher: Option<Pruner>,
    /// Reads of the budget made for a view ([`Guard::budget_view_from`]).
    reads: std::sync::atomic::AtomicU64,
}

impl Drop for Guard {
    /// Shutdown: result tokens still owed are written.
    fn drop(&mut self) {
        self.flush();
    }
}

/// What [`Guard::check`] charged a call's budget: the exact key and period,
/// so a refund or the result's tokens land where the call was charged even
/// when the period rolls over meanwhile.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    pub key: String,
    pub period: String,
    pub add: Usage,
}

/// Who a check is for.
pub struct Who<'a> {
    pub server: &'a str,
    pub tool: &'a str,
    pub user: &'a str,
    pub agent: &'a str,
}

fn rfc3339(t: f64) -> String {
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(t.max(0.0)),
    )
    .to_string()
}

/// The largest share of a limited kind spent so far (0 when nothing is
/// limited): one number a policy compares with its warning threshold, so
/// the common "is anything near its limit?" check is one comparison instead
/// of a rule per kind with a null check (each rule costs a few microseconds
/// in regorus, on every call).
fn used_fraction(u: Usage, b: &Budget) -> f64 {
    let share = |used: u64, limit: Option<u64>| match limit {
        Some(0) => 1.0,
        Some(l) => used as f64 / l as f64,
        None => 0.0,
    };
    share(u.calls, b.calls).max(share(u.tokens, b.tokens))
}

impl Guard {
    /// `needed`: whether any server has rate limits (bundle or config).
    pub fn from_config(config: &Config, needed: bool, clock: Arc<dyn Clock>) -> Self {
        let store = (needed || config.budget.is_some()).then(|| {
            if let Some(url) = &config.redis_url {
                return match crate::state::redis::RedisStore::open(url, clock.is_system()) {
                    Ok(s) => Ok(Arc::new(s) as Arc<dyn StateStore>),
                    Err(e) => {
                        tracing::error!("{e}");
                        Err(e.to_string())
                    }
                };
            }
            let path = config
                .state_path
                .clone()
                .unwrap_or_else(|| crate::status::state_dir().join("state.sqlite"));
            match SqliteStore::open(&path) {
                Ok(s) => Ok(Arc::new(s) as Arc<dyn StateStore>),
                Err(e) => {
                    tracing::error!("{e}");
                    Err(e.to_string())
                }
            }
        });
        let pruner = match &store {
            Some(Ok(s)) => Some(spawn_pruner(s.clone(), clock.clone(), PRUNE_EVERY)),
            _ => None,
        };
        // Folded only into the embedded store (its charge takes `owed` in
        // the same transaction).
        let owed = match &store {
            Some(Ok(s)) if config.budget.is_some() && s.can_try() => {
                Some(Arc::new(Owed::default()))
            }
            _ => None,
        };
        let flusher = match (&store, &owed) {
            (Some(Ok(s)), Some(o)) => Some(spawn_flusher(s.clone(), o.clone())),
            _ => None,
        };
        Guard {
            store,
            clock,
            budget: config.budget.clone(),
            owed,
            _pruner: pruner,
            _flusher: flusher,
            reads: Default::default(),
        }
    }

    /// Writes the result tokens kept in memory now (shutdown; the flusher
    /// does it every [`crate::decision::owed::FLUSH_EVERY`]).
    pub fn flush(&self) {
        if let (Some(owed), Ok(store)) = (&self.owed, self.store()) {
            owed.flush(store.as_ref());
        }
        if let Ok(store) = self.store()
            && let Err(e) = store.sync()
        {
            tracing::warn!(
                "budget counters not yet in the ledger (they stay in the budget table, written at the next start): {e}"
            );
        }
    }

    /// Result tokens of `key`'s `period` not yet written.
    fn owed(&self, key: &str, period: &str) -> u64 {
        self.owed.as_ref().map_or(0, |o| o.get(key, period))
    }

    /// Whether decisions read or write the state store (then they may wait
    /// on it, and a front should not make them on its event loop).
    pub fn uses_store(&self) -> bool {
        self.store.is_some()
    }

    /// Whether a decision may be tried on the event loop first
    /// ([`crate::state::wait`]): no store, a store that failed to open (it
    /// refuses at once), or one whose locks can be tried without waiting.
    pub fn can_try_inline(&self) -> bool {
        match &self.store {
            Some(Ok(s)) => s.can_try(),
            _ => true,
        }
    }

    fn store(&self) -> Result<&Arc<dyn StateStore>, String> {
        match &self.store {
            Some(Ok(s)) => Ok(s),
            Some(Err(e)) => Err(e.clone()),
            None => Err("no state store is open".into()),
        }
    }

    fn budget_key(b: &Budget, who: &Who) -> String {
        match b.per {
            BudgetPer::User => format!("budget:user:{}", who.user),
            BudgetPer::Agent => format!("budget:agent:{}", who.agent),
            BudgetPer::UserAgent => format!("budget:user_agent:{}:{}", who.user, who.agent),
        }
    }

    /// `input.context.budget`: `{used{calls,tokens}, limit{calls,tokens},
    /// period, period_ends}` — or `{error}` when the store cannot say (the
    /// call will then be denied after the policy).
    pub fn budget_view(&self, who: &Who) -> Option<Value> {
        self.budget_view_from(who, None)
    }

    /// How many times a view read the budget from the store.
    pub fn budget_reads(&self) -> u64 {
        self.reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// [`Guard::budget_view`] with the totals a charge already found
    /// (`found`, [`Guard::check_seen`]): no read of its own then.
    pub fn budget_view_from(&self, who: &Who, found: Option<Usage>) -> Option<Value> {
        let b = self.budget.as_ref()?;
        let (period, ends) = b.period.at_in(self.clock.now(), &b.calendar);
        let key = Self::budget_key(b, who);
        let used = match found {
            Some(u) => Ok(u),
            None => self.store().and_then(|s| {
                self.reads
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut u = s.budget_get(&key, &period).map_err(|e| e.to_string())?;
                u.tokens = u.tokens.saturating_add(self.owed(&key, &period));
                Ok(u)
            }),
        };
        Some(match used {
            Ok(u) => json!({
                "used": u,
                "limit": {"calls": b.calls, "tokens": b.tokens},
                "used_fraction": used_fraction(u, b),
                "period": period,
                "period_ends": rfc3339(ends),
            }),
            Err(e) => json!({"error": e, "limit": {"calls": b.calls, "tokens": b.tokens}}),
        })
    }

    /// Applies limits then budget to a `tools/call` the policy allowed, in
    /// one atomic charge: a call refused by either costs nothing. Returns what
    /// the budget was charged (None: no budget, or the call was refused, and
    /// then `d` is the refusal).
    pub fn check(
        &self,
        who: &Who,
        limits: &[&Limit],
        arg_tokens: u64,
        d: &mut Decision,
    ) -> Option<Receipt> {
        self.apply(who, limits, arg_tokens, d, Mode::Charge, &mut None)
    }

    /// [`Guard::check`], also giving the budget's totals before this call
    /// as the charge's transaction found them (None: the charge did not
    /// reach the budget) — what [`Guard::budget_view`] would have read
    /// first, without a read of its own.
    pub fn check_seen(
        &self,
        who: &Who,
        limits: &[&Limit],
        arg_tokens: u64,
        d: &mut Decision,
    ) -> (Option<Receipt>, Option<Usage>) {
        let mut seen = None;
        let receipt = self.apply(who, limits, arg_tokens, d, Mode::Charge, &mut seen);
        (receipt, seen)
    }

    /// What [`Guard::check`] would make of `d` now, charging nothing (a
    /// policy query, `gavel__check`): the same refusals and the same
    /// `rate_limit_remaining`, read from the store ([`StateStore::peek`]).
    pub fn peek(&self, who: &Who, limits: &[&Limit], arg_tokens: u64, d: &mut Decision) {
        self.apply(who, limits, arg_tokens, d, Mode::Peek, &mut None);
    }

    /// [`Guard::check`] and [`Guard::peek`]: one path, so a prediction is
    /// the decision the call then gets; only the store call differs. `seen`:
    /// the budget's totals before the call, when the store reached it.
    fn apply(
        &self,
        who: &Who,
        limits: &[&Limit],
        arg_tokens: u64,
        d: &mut Decision,
        mode: Mode,
        seen: &mut Option<Usage>,
    ) -> Option<Receipt> {
        if !d.allow || (limits.is_empty() && self.budget.is_none()) {
            return None;
        }
        let now = self.clock.now();
        let keys = rate_keys(who, limits);
        let budget = self.budget.as_ref().map(|b| {
            let (period, ends) = b.period.at_in(now, &b.calendar);
            BudgetSlot {
                budget: b,
                key: Self::budget_key(b, who),
                period,
                ends,
            }
        });
        let add = Usage {
            calls: 1,
            tokens: arg_tokens,
        };
        let charged = self.charge_store(&keys, now, budget.as_ref(), add, mode);
        let c = match charged {
            Err(e) => {
                unavailable(d, &e);
                return None;
            }
            Ok(c) => c,
        };
        // The limit that refused with the longest wait speaks for all.
        if let Some((i, worst)) = c
            .rates
            .iter()
            .enumerate()
            .filter(|(_, o)| !o.allowed)
            .max_by(|a, b| a.1.retry_after.total_cmp(&b.1.retry_after))
        {
            rate_limited(d, who, limits[i], &keys[i].0, worst.retry_after);
            return None;
        }
        if !keys.is_empty() {
            d.rate_limit_remaining = c.rates.iter().map(|o| o.remaining).min();
        }
        *seen = c.budget.map(|(fits, u)| match fits {
            true => Usage {
                calls: u.calls.saturating_sub(add.calls),
                tokens: u.tokens.saturating_sub(add.tokens),
            },
            false => u,
        });
        let slot = budget?;
        if let Some((false, used)) = c.budget {
            budget_exceeded(d, &slot, used);
            return None;
        }
        (mode == Mode::Charge).then_some(Receipt {
            key: slot.key,
            period: slot.period,
            add,
        })
    }

    /// The one store call of [`Guard::apply`], with the result tokens owed
    /// to the call's budget folded in: a charge writes them in its
    /// transaction (and gives them back to memory when it did not reach the
    /// budget), a peek counts them. Apart from `apply` because this is the
    /// bookkeeping of what the store was asked, not what the agent is told.
    fn charge_store(
        &self,
        keys: &[(String, crate::state::Rate)],
        now: f64,
        budget: Option<&BudgetSlot>,
        add: Usage,
        mode: Mode,
    ) -> Result<crate::state::Charged, String> {
        // Result tokens owed to this budget: written by the charge in its
        // transaction (given back to memory if it did not reach the budget),
        // counted by a peek.
        let owed = budget.map_or(0, |slot| match (mode, &self.owed) {
            (Mode::Charge, Some(o)) => o.take(&slot.key, &slot.period),
            (Mode::Peek, _) => self.owed(&slot.key, &slot.period),
            _ => 0,
        });
        let charged = self.store().and_then(|s| {
            let b = budget.map(|slot| BudgetCharge {
                key: &slot.key,
                period: &slot.period,
                add,
                limit: (slot.budget.calls, slot.budget.tokens),
                owed: Usage {
                    calls: 0,
                    tokens: owed,
                },
            });
            match mode {
                Mode::Charge => s.charge(keys, now, b),
                Mode::Peek => s.peek(keys, now, b),
            }
            .map_err(|e| e.to_string())
        });
        let reached_budget = matches!(&charged, Ok(c) if c.budget.is_some());
        if let (Mode::Charge, Some(o), Some(slot)) = (mode, &self.owed, budget)
            && owed > 0
            && !reached_budget
        {
            o.add(&slot.key, &slot.period, owed);
        }
        charged
    }

    /// Each limit's headroom for `who` now, as `gavel__limits` shows it:
    /// the limit, and how many calls it would still allow at once (read
    /// only). `Err`: the store cannot say.
    pub fn headroom(&self, who: &Who, limits: &[&Limit]) -> Result<Vec<Value>, String> {
        if limits.is_empty() {
            return Ok(vec![]);
        }
        let keys = rate_keys(who, limits);
        let c = self
            .store()?
            .peek(&keys, self.clock.now(), None)
            .map_err(|e| e.to_string())?;
        Ok(limits
            .iter()
            .zip(c.rates)
            .map(|(l, o)| {
                json!({
                    "tool": who.tool,
                    "rate": l.rate.rate,
                    "period_seconds": l.rate.period_s,
                    "burst": l.rate.burst,
                    "source": l.source,
                    "remaining": if o.allowed { o.remaining + 1 } else { 0 },
                    "retry_after_seconds": (!o.allowed).then_some((o.retry_after * 10.0).ceil() / 10.0),
                })
            })
            .collect())
    }

    /// Gives back the budget charge of a call that was then not made (its
    /// approval was declined, cancelled or timed out), into the period that
    /// was charged. The rate limits are deliberately not given back: a
    /// refused approval still cost the user a question, and an agent that
    /// keeps asking for a call the user keeps refusing must be throttled by
    /// the same limits as any other call (docs/policy.md).
    pub fn refund_budget(&self, receipt: &Receipt) {
        // Written before the denial is answered: the agent's next call must
        // see its charge given back (a refund that could land after that
        // call's decision would deny it for a call that was never made).
        let r = self.store().and_then(|s| {
            s.refund(
                &[],
                Some(BudgetCharge {
                    key: &receipt.key,
                    period: &receipt.period,
                    add: receipt.add,
                    limit: (None, None),
                    owed: Usage::default(),
                }),
            )
            .map_err(|e| e.to_string())
        });
        if let Err(e) = r {
            tracing::error!(key = %receipt.key, "could not give back the budget charge of a call that was not made: {e}");
        }
    }

    /// Runs `f` on the store where it may wait (a Redis round trip)
    /// without holding an event-loop thread: on tokio's blocking pool when
    /// called from the runtime, else here. Only for writes nobody waits on
    /// (Redis result tokens, which the embedded store may owe just the
    /// same); tokio finishes queued blocking work before the runtime ends.
    /// Refunds are not: the next call must see them.
    fn off_loop(&self, f: impl FnOnce(&dyn StateStore) + Send + 'static) {
        let store = match self.store() {
            Ok(s) => s.clone(),
            Err(e) => {
                tracing::error!(
                    "the state store is not open ({e}); a result-token charge was not written"
                );
                return;
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn_blocking(move || f(store.as_ref()));
            }
            Err(_) => f(store.as_ref()),
        }
    }

    /// Gives back the rate-limit charge of an allowed call that gavel then
    /// did not make through no doing of the agent's (its decision record
    /// could not be written). Unlike a refused approval, nothing was asked of
    /// anyone: the agent keeps its allowance.
    pub fn refund_limits(&self, who: &Who, limits: &[&Limit]) {
        if limits.is_empty() {
            return;
        }
        // Before the denial is answered, as `refund_budget` says.
        let keys = rate_keys(who, limits);
        if let Err(e) = self
            .store()
            .and_then(|s| s.refund(&keys, None).map_err(|e| e.to_string()))
        {
            tracing::error!(server = %who.server, tool = %who.tool, "could not give back the rate-limit charge of a call that was not made: {e}");
        }
    }

    /// Result tokens, counted after the call (the next call sees them), in
    /// the period the call was charged to: kept in memory and written with
    /// the next charge or by the flusher (module doc), else — Redis — now,
    /// off the event loop (`off_loop`): the reply never waits for Redis.
    pub fn charge_result_tokens(&self, receipt: &Receipt, tokens: u64) {
        if tokens == 0 {
            return;
        }
        if let Some(o) = &self.owed {
            // The embedded store: a few stores in the shared table, written
            // now when its lock is free (before the host has the answer:
            // exact across `kill -9`), owed when another holds it — the
            // reply never waits for a lock.
            let add = Usage { calls: 0, tokens };
            let now = self.store().ok().map(|s| {
                crate::state::wait::no_wait(|| s.budget_add(&receipt.key, &receipt.period, add))
            });
            if !matches!(now, Some((Ok(_), _))) {
                o.add(&receipt.key, &receipt.period, tokens);
            }
            return;
        }
        let receipt = receipt.clone();
        self.off_loop(move |s| {
            let add = Usage { calls: 0, tokens };
            if let Err(e) = s.budget_add(&receipt.key, &receipt.period, add) {
                tracing::error!(key = %receipt.key, "result tokens not counted in the budget: {e}");
            }
        });
    }
}

/// Whether [`Guard::apply`] charges or only reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Charge,
    Peek,
}

/// The budget period a call is charged to: the budget's key for who is
/// asking, the period and when it ends (Unix seconds).
struct BudgetSlot<'a> {
    budget: &'a Budget,
    key: String,
    period: String,
    ends: f64,
}

/// The state-store key and rate of each limit, for who is asking.
fn rate_keys(who: &Who, limits: &[&Limit]) -> Vec<(String, crate::state::Rate)> {
    limits
        .iter()
        .map(|l| (l.key(who.server, who.tool, who.user, who.agent), l.rate))
        .collect()
}

#[cfg(test)]
#[path = "guard_tests.rs"]
pub(super) mod tests;
