//! The decision a call gets when the guard refuses it: a rate limit
//! reached, the budget spent, or the state store unusable. Apart from
//! [`super::Guard::apply`], which decides *whether* to refuse, because these
//! only say *what* the agent is told — the reason code, the remediation with
//! the limit's numbers and when to try again, the rule that matched — and
//! each replaces the policy's allowing decision whole (keeping its version).

use super::{BudgetSlot, Who, rfc3339};
use crate::decision::Decision;
use crate::decision::codes::ReasonCode;
use crate::state::Usage;
use crate::state::budget::Period;
use crate::state::limits::Limit;

/// `d` refused by the rate limit `l` (state key `key`): wait `retry_after`
/// seconds, rounded up to a tenth.
pub(super) fn rate_limited(d: &mut Decision, who: &Who, l: &Limit, key: &str, retry_after: f64) {
    let retry = (retry_after * 10.0).ceil() / 10.0;
    *d = Decision {
        allow: false,
        reasons: vec![ReasonCode::RateLimited.into()],
        remediation: Some(format!(
            "Rate limit ({} per {}s, burst {}, from {}) reached for {:?}: wait {retry:.1} s before calling it again.",
            l.rate.rate, l.rate.period_s, l.rate.burst, l.source, who.tool
        )),
        rate_limit_remaining: Some(0),
        retry_after_seconds: Some(retry),
        matched_rules: vec![format!("gavel:limit:{key}")],
        policy_version: d.policy_version.take(),
        ..Default::default()
    };
}

/// `d` refused because the budget of `slot` is spent (`used` so far).
pub(super) fn budget_exceeded(d: &mut Decision, slot: &BudgetSlot, used: Usage) {
    let b = slot.budget;
    *d = Decision {
        allow: false,
        reasons: vec![ReasonCode::BudgetExceeded.into()],
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
            rfc3339(slot.ends)
        )),
        matched_rules: vec![format!("gavel:budget:{}:{}", slot.key, slot.period)],
        policy_version: d.policy_version.take(),
        ..Default::default()
    };
}

/// `d` refused because the state store cannot be used (`why`): fail closed.
pub(super) fn unavailable(d: &mut Decision, why: &str) {
    *d = Decision {
        allow: false,
        reasons: vec![ReasonCode::StateUnavailable.into()],
        remediation: Some(format!(
            "gavel cannot check this call's rate limits or budget: {why}"
        )),
        policy_version: d.policy_version.take(),
        ..Default::default()
    };
}
