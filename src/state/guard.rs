//! gavel-side checks after the policy: rate limits, then the budget.
//!
//! Order (issue contract): Rego → limiter (charged only if Rego allowed) →
//! budget. Only `tools/call` is counted. Everything fails closed: a store
//! that cannot be opened or read denies the calls whose limits or budget it
//! keeps, with `state_unavailable` and a remediation naming the file.
//!
//! The budget increment reaches the store (a committed SQLite transaction)
//! inside the decision, before the call is forwarded — so it survives a
//! crash or `kill -9` of gavel right after.

use std::sync::Arc;

use serde_json::{Value, json};

use super::budget::Period;
use super::clock::Clock;
use super::limits::Limit;
use super::sqlite::SqliteStore;
use super::{BudgetCharge, StateStore, Usage};
use crate::config::{Budget, BudgetPer, Config};
use crate::decision::Decision;

pub struct Guard {
    /// Opened when some limit or a budget needs it; `Err` keeps why not.
    store: Option<Result<Arc<dyn StateStore>, String>>,
    clock: Arc<dyn Clock>,
    budget: Option<Budget>,
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

impl Guard {
    /// `needed`: whether any server has rate limits (bundle or config).
    pub fn from_config(config: &Config, needed: bool, clock: Arc<dyn Clock>) -> Self {
        let store = (needed || config.budget.is_some()).then(|| {
            if let Some(url) = &config.redis_url {
                return match super::redis::RedisStore::open(url, clock.is_system()) {
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
        Guard {
            store,
            clock,
            budget: config.budget.clone(),
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
        let b = self.budget.as_ref()?;
        let (period, ends) = b.period.at(self.clock.now());
        let used = self.store().and_then(|s| {
            s.budget_get(&Self::budget_key(b, who), &period)
                .map_err(|e| e.to_string())
        });
        Some(match used {
            Ok(u) => json!({
                "used": u,
                "limit": {"calls": b.calls, "tokens": b.tokens},
                "period": period,
                "period_ends": rfc3339(ends),
            }),
            Err(e) => json!({"error": e, "limit": {"calls": b.calls, "tokens": b.tokens}}),
        })
    }

    /// Applies limits then budget to a `tools/call` the policy allowed, in
    /// one atomic charge: a call refused by either costs nothing.
    pub fn check(&self, who: &Who, limits: &[&Limit], arg_tokens: u64, d: &mut Decision) {
        if !d.allow || (limits.is_empty() && self.budget.is_none()) {
            return;
        }
        let now = self.clock.now();
        let keys: Vec<(String, super::Rate)> = limits
            .iter()
            .map(|l| (l.key(who.server, who.tool, who.user, who.agent), l.rate))
            .collect();
        let budget = self.budget.as_ref().map(|b| {
            let (period, ends) = b.period.at(now);
            (b, Self::budget_key(b, who), period, ends)
        });
        let charged = self.store().and_then(|s| {
            s.charge(
                &keys,
                now,
                budget.as_ref().map(|(b, key, period, _)| BudgetCharge {
                    key,
                    period,
                    add: Usage {
                        calls: 1,
                        tokens: arg_tokens,
                    },
                    limit: (b.calls, b.tokens),
                }),
            )
            .map_err(|e| e.to_string())
        });
        let c = match charged {
            Err(e) => return unavailable(d, &e),
            Ok(c) => c,
        };
        if let Some((i, worst)) = c
            .rates
            .iter()
            .enumerate()
            .filter(|(_, o)| !o.allowed)
            .max_by(|a, b| a.1.retry_after.total_cmp(&b.1.retry_after))
        {
            let l = limits[i];
            let retry = (worst.retry_after * 10.0).ceil() / 10.0;
            *d = Decision {
                allow: false,
                reasons: vec!["rate_limited".into()],
                remediation: Some(format!(
                    "Rate limit ({} per {}s, burst {}, from {}) reached for {:?}: wait {retry:.1} s before calling it again.",
                    l.rate.rate, l.rate.period_s, l.rate.burst, l.source, who.tool
                )),
                rate_limit_remaining: Some(0),
                retry_after_seconds: Some(retry),
                matched_rules: vec![format!("gavel:limit:{}", keys[i].0)],
                policy_version: d.policy_version.take(),
                ..Default::default()
            };
            return;
        }
        if !keys.is_empty() {
            d.rate_limit_remaining = c.rates.iter().map(|o| o.remaining).min();
        }
        if let (Some((false, used)), Some((b, key, period, ends))) = (c.budget, &budget) {
            *d = Decision {
                allow: false,
                reasons: vec!["budget_exceeded".into()],
                remediation: Some(format!(
                    "The {} budget ({}; used {} calls, {} tokens) is spent; it renews at {}. Ask for a larger budget if this work must go on.",
                    match b.period {
                        Period::Day => "daily",
                        Period::Week => "weekly",
                    },
                    [
                        b.calls.map(|c| format!("{c} calls")),
                        b.tokens.map(|t| format!("{t} tokens"))
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(", "),
                    used.calls,
                    used.tokens,
                    rfc3339(*ends)
                )),
                matched_rules: vec![format!("gavel:budget:{key}:{period}")],
                policy_version: d.policy_version.take(),
                ..Default::default()
            };
        }
    }

    /// Undoes [`Guard::check`]'s charge for a call that was then not made.
    pub fn refund(&self, who: &Who, limits: &[&Limit], arg_tokens: u64) {
        if limits.is_empty() && self.budget.is_none() {
            return;
        }
        let keys: Vec<(String, super::Rate)> = limits
            .iter()
            .map(|l| (l.key(who.server, who.tool, who.user, who.agent), l.rate))
            .collect();
        let budget = self.budget.as_ref().map(|b| {
            let (period, _) = b.period.at(self.clock.now());
            (Self::budget_key(b, who), period)
        });
        let r = self.store().and_then(|s| {
            s.refund(
                &keys,
                budget.as_ref().map(|(key, period)| BudgetCharge {
                    key,
                    period,
                    add: Usage {
                        calls: 1,
                        tokens: arg_tokens,
                    },
                    limit: (None, None),
                }),
            )
            .map_err(|e| e.to_string())
        });
        if let Err(e) = r {
            tracing::error!(server = %who.server, tool = %who.tool, "could not give back the charge of a call that was not made: {e}");
        }
    }

    /// Result tokens, counted after the call (the next call sees them).
    pub fn charge_result_tokens(&self, who: &Who, tokens: u64) {
        let Some(b) = &self.budget else { return };
        if tokens == 0 {
            return;
        }
        let (period, _) = b.period.at(self.clock.now());
        let r = self.store().and_then(|s| {
            s.budget_add(
                &Self::budget_key(b, who),
                &period,
                Usage { calls: 0, tokens },
            )
            .map_err(|e| e.to_string())
        });
        if let Err(e) = r {
            tracing::error!(server = %who.server, "result tokens not counted in the budget: {e}");
        }
    }
}

fn unavailable(d: &mut Decision, why: &str) {
    *d = Decision {
        allow: false,
        reasons: vec!["state_unavailable".into()],
        remediation: Some(format!(
            "gavel cannot check this call's rate limits or budget: {why}"
        )),
        policy_version: d.policy_version.take(),
        ..Default::default()
    };
}
