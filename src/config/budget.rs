//! `[budget]`: the calls and tokens one user, agent or pair may spend per
//! calendar period.

use super::ctx::*;
use super::*;

impl Config {
    pub(super) fn budget(ctx: &Ctx, b: &Spanned<raw::RawBudget>) -> Result<Budget, ConfigError> {
        let r = b.get_ref();
        let at = b.span().start;
        let per = match r.per.as_ref().map(|p| p.get_ref().as_str()) {
            None | Some("user") => BudgetPer::User,
            Some("agent") => BudgetPer::Agent,
            Some("user_agent") => BudgetPer::UserAgent,
            Some(other) => {
                return Err(ctx.at(
                    at,
                    "budget.per",
                    format!("{other:?}: use \"user\", \"agent\" or \"user_agent\""),
                ));
            }
        };
        let period = match r.period.as_ref().map(|p| p.get_ref().as_str()) {
            None => crate::state::budget::Period::Day,
            Some(p) => crate::state::budget::Period::parse(p).ok_or_else(|| {
                ctx.at(
                    at,
                    "budget.period",
                    format!("{p:?}: use \"day\" (UTC) or \"week\" (ISO, Monday 00:00 UTC)"),
                )
            })?,
        };
        use crate::state::budget::Calendar;
        let utc_offset_s = match &r.utc_offset {
            None => 0,
            Some(o) => Calendar::parse_offset(o.get_ref()).ok_or_else(|| {
                ctx.at(
                    o.span().start,
                    "budget.utc_offset",
                    format!(
                        "{:?}: use \"+HH:MM\" or \"-HH:MM\" within 14 hours of UTC (e.g. \"+05:30\"), or \"Z\"",
                        o.get_ref()
                    ),
                )
            })?,
        };
        let week_start = match &r.week_starts {
            None => 0,
            Some(d) => Calendar::parse_weekday(d.get_ref()).ok_or_else(|| {
                ctx.at(
                    d.span().start,
                    "budget.week_starts",
                    format!(
                        "{:?}: use a weekday in lower case, \"monday\" … \"sunday\"",
                        d.get_ref()
                    ),
                )
            })?,
        };
        if r.calls.is_none() && r.tokens.is_none() {
            return Err(ctx.at(at, "budget", "set calls and/or tokens (per period)"));
        }
        Ok(Budget {
            per,
            period,
            calendar: Calendar {
                utc_offset_s,
                week_start,
            },
            calls: r.calls,
            tokens: r.tokens,
        })
    }
}
