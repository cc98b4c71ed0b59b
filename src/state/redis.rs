//! The shared [`StateStore`] for scale-out: Redis, one server for every
//! gavel instance (`[state] backend = "redis"`, `redis_url`).
//!
//! Each call's rate limits and budget are decided and charged by one Lua
//! script (atomic on the server), with the same GCRA arithmetic as
//! `gcra.rs` (floats travel as strings: Redis truncates Lua numbers).
//! Redis unreachable → every call the store keeps fails closed with a
//! clear error; the connection is re-established on the next call, so the
//! limits recover when Redis returns. Every wait is bounded (connect,
//! read and write timeouts).

use std::sync::Mutex;
use std::time::Duration;

use super::gcra::{Rate, RateOutcome};
use super::{BudgetCharge, Charged, StateError, StateStore, Usage};

const TIMEOUT: Duration = Duration::from_secs(2);

/// KEYS: n GCRA keys, then the budget key (or none).
/// ARGV: n, now, has_budget, [interval, tolerance] × n,
///       add_calls, add_tokens, limit_calls (-1: none), limit_tokens (-1: none), ttl.
/// Returns: {allowed_0, remaining_0, retry_0, …, budget_state, calls, tokens}
/// with budget_state -1 (not evaluated), 0 (refused), 1 (charged).
const CHARGE: &str = r#"
local n = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local has_budget = ARGV[3] == "1"
local out = {}
local tats = {}
local all = true
for i = 1, n do
  local t = tonumber(ARGV[3 + 2 * i - 1])
  local tau = tonumber(ARGV[3 + 2 * i])
  local stored = redis.call("GET", KEYS[i])
  local tat = now
  if stored then tat = tonumber(stored) end
  local base = math.max(tat, now)
  local wait = base - now
  if wait > tau + 1e-9 then
    all = false
    table.insert(out, "0"); table.insert(out, "0"); table.insert(out, tostring(wait - tau))
    tats[i] = false
  else
    local new_tat = base + t
    local slack = tau - (new_tat - now)
    local remaining = 0
    if slack >= -1e-9 then remaining = math.floor(slack / t + 1e-9) + 1 end
    table.insert(out, "1"); table.insert(out, tostring(remaining)); table.insert(out, "0")
    tats[i] = {new_tat, math.ceil(new_tat - now + tau) + 1}
  end
end
local b = 3 + 2 * n
if not all then
  table.insert(out, "-1"); table.insert(out, "0"); table.insert(out, "0")
  return out
end
if has_budget then
  local key = KEYS[n + 1]
  local calls = tonumber(redis.call("HGET", key, "calls") or "0")
  local tokens = tonumber(redis.call("HGET", key, "tokens") or "0")
  local ac = tonumber(ARGV[b + 1]); local at = tonumber(ARGV[b + 2])
  local lc = tonumber(ARGV[b + 3]); local lt = tonumber(ARGV[b + 4])
  if (lc >= 0 and calls + ac > lc) or (lt >= 0 and tokens + at > lt) then
    table.insert(out, "0"); table.insert(out, tostring(calls)); table.insert(out, tostring(tokens))
    return out
  end
  redis.call("HSET", key, "calls", tostring(calls + ac), "tokens", tostring(tokens + at))
  redis.call("EXPIRE", key, tonumber(ARGV[b + 5]))
  table.insert(out, "1"); table.insert(out, tostring(calls + ac)); table.insert(out, tostring(tokens + at))
else
  table.insert(out, "-1"); table.insert(out, "0"); table.insert(out, "0")
end
for i = 1, n do
  redis.call("SET", KEYS[i], string.format("%.9f", tats[i][1]), "EX", tats[i][2])
end
return out
"#;

/// KEYS: n GCRA keys, then the budget key (or none).
/// ARGV: n, has_budget, interval × n, calls, tokens.
const REFUND: &str = r#"
local n = tonumber(ARGV[1])
for i = 1, n do
  local stored = redis.call("GET", KEYS[i])
  if stored then
    local ttl = redis.call("TTL", KEYS[i])
    local v = string.format("%.9f", tonumber(stored) - tonumber(ARGV[2 + i]))
    if ttl > 0 then redis.call("SET", KEYS[i], v, "EX", ttl) else redis.call("SET", KEYS[i], v) end
  end
end
if ARGV[2] == "1" then
  local key = KEYS[n + 1]
  local calls = tonumber(redis.call("HGET", key, "calls") or "0")
  local tokens = tonumber(redis.call("HGET", key, "tokens") or "0")
  redis.call("HSET", key, "calls", tostring(math.max(0, calls - tonumber(ARGV[3 + n]))),
    "tokens", tostring(math.max(0, tokens - tonumber(ARGV[4 + n]))))
end
return 1
"#;

/// Budget counters are kept for this long after their last use (a period
/// is at most a week; the margin keeps a period's total for `status`).
const BUDGET_TTL_S: u64 = 15 * 86_400;

pub struct RedisStore {
    url_masked: String,
    client: redis::Client,
    conn: Mutex<Option<redis::Connection>>,
    script: redis::Script,
    refund: redis::Script,
}

impl RedisStore {
    pub fn open(url: &str) -> Result<Self, StateError> {
        let url_masked = crate::config::mask::mask_url(url);
        let client = redis::Client::open(url).map_err(|e| StateError::Unavailable {
            path: url_masked.clone(),
            message: format!("not a Redis URL ({e}); write redis://host:port/db"),
        })?;
        Ok(RedisStore {
            url_masked,
            client,
            conn: Mutex::new(None),
            script: redis::Script::new(CHARGE),
            refund: redis::Script::new(REFUND),
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> StateError {
        StateError::Unavailable {
            path: self.url_masked.clone(),
            message: format!("Redis: {e}"),
        }
    }

    /// Runs `f` on the connection, (re)connecting first when needed; a
    /// failed call drops the connection so the next one reconnects.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StateError> {
        let mut slot = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            let c = self
                .client
                .get_connection_with_timeout(TIMEOUT)
                .map_err(|e| self.err(e))?;
            c.set_read_timeout(Some(TIMEOUT)).map_err(|e| self.err(e))?;
            c.set_write_timeout(Some(TIMEOUT))
                .map_err(|e| self.err(e))?;
            *slot = Some(c);
        }
        let conn = slot.as_mut().expect("connected above");
        match f(conn) {
            Ok(v) => Ok(v),
            Err(e) => {
                *slot = None;
                Err(self.err(e))
            }
        }
    }
}

fn num(v: &str) -> f64 {
    v.parse().unwrap_or(0.0)
}

impl StateStore for RedisStore {
    fn charge(
        &self,
        limits: &[(String, Rate)],
        now: f64,
        budget: Option<BudgetCharge<'_>>,
    ) -> Result<Charged, StateError> {
        let mut inv = self.script.prepare_invoke();
        for (k, _) in limits {
            inv.key(k);
        }
        if let Some(b) = &budget {
            inv.key(format!("{}|{}", b.key, b.period));
        }
        inv.arg(limits.len())
            .arg(format!("{now:.6}"))
            .arg(if budget.is_some() { "1" } else { "0" });
        for (_, r) in limits {
            let t = r.period_s / r.rate;
            inv.arg(format!("{t:.9}"))
                .arg(format!("{:.9}", t * (r.burst.max(1) - 1) as f64));
        }
        let b = budget.unwrap_or(BudgetCharge {
            key: "",
            period: "",
            add: Usage::default(),
            limit: (None, None),
        });
        inv.arg(b.add.calls)
            .arg(b.add.tokens)
            .arg(b.limit.0.map_or(-1, |v| v as i64))
            .arg(b.limit.1.map_or(-1, |v| v as i64))
            .arg(BUDGET_TTL_S);
        let out: Vec<String> = self.with(|c| inv.invoke(c))?;
        if out.len() != limits.len() * 3 + 3 {
            return Err(self.err(format!("unexpected script answer {out:?}")));
        }
        let rates = out[..limits.len() * 3]
            .chunks(3)
            .map(|c| RateOutcome {
                allowed: c[0] == "1",
                remaining: num(&c[1]) as u64,
                retry_after: num(&c[2]),
            })
            .collect();
        let tail = &out[limits.len() * 3..];
        let used = Usage {
            calls: num(&tail[1]) as u64,
            tokens: num(&tail[2]) as u64,
        };
        let budget = match tail[0].as_str() {
            "1" => Some((true, used)),
            "0" => Some((false, used)),
            _ => None,
        };
        Ok(Charged { rates, budget })
    }

    fn budget_add(&self, key: &str, period: &str, add: Usage) -> Result<Usage, StateError> {
        let k = format!("{key}|{period}");
        let (calls, tokens): (u64, u64) = self.with(|c| {
            redis::pipe()
                .atomic()
                .hincr(&k, "calls", add.calls)
                .hincr(&k, "tokens", add.tokens)
                .expire(&k, BUDGET_TTL_S as i64)
                .ignore()
                .query(c)
        })?;
        Ok(Usage { calls, tokens })
    }

    fn refund(
        &self,
        limits: &[(String, Rate)],
        budget: Option<BudgetCharge<'_>>,
    ) -> Result<(), StateError> {
        let mut inv = self.refund.prepare_invoke();
        for (k, _) in limits {
            inv.key(k);
        }
        if let Some(b) = &budget {
            inv.key(format!("{}|{}", b.key, b.period));
        }
        inv.arg(limits.len())
            .arg(if budget.is_some() { "1" } else { "0" });
        for (_, r) in limits {
            inv.arg(format!("{:.9}", r.period_s / r.rate));
        }
        let b = budget.map(|b| b.add).unwrap_or_default();
        inv.arg(b.calls).arg(b.tokens);
        let _: i64 = self.with(|c| inv.invoke(c))?;
        Ok(())
    }

    fn budget_get(&self, key: &str, period: &str) -> Result<Usage, StateError> {
        let k = format!("{key}|{period}");
        let (calls, tokens): (Option<u64>, Option<u64>) = self.with(|c| {
            redis::cmd("HMGET")
                .arg(&k)
                .arg("calls")
                .arg("tokens")
                .query(c)
        })?;
        Ok(Usage {
            calls: calls.unwrap_or(0),
            tokens: tokens.unwrap_or(0),
        })
    }
}
