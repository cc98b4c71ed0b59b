//! The Redis store's server-side half: the Lua scripts that decide and
//! charge (or give back) one call's rate limits and budget atomically, in
//! one round trip. Apart from the client (`redis.rs`: pool, backoff, reply
//! parsing) because they are another program in another language, run by
//! Redis: their argument layout below is the contract the client keeps.
//! The GCRA arithmetic is `gcra.rs`'s; counters are written with `%d`,
//! never `tostring` (module doc of `redis.rs`).

/// KEYS: n GCRA keys, then the budget key (or none).
/// ARGV: n, now, has_budget, server_time, [interval, tolerance] × n,
///       add_calls, add_tokens, limit_calls (-1: none), limit_tokens (-1: none), ttl.
/// Returns: {allowed_0, remaining_0, retry_0, …, budget_state, calls, tokens}
/// with budget_state -1 (not evaluated), 0 (refused), 1 (charged).
pub(super) const CHARGE: &str = r#"
local n = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local has_budget = ARGV[3] == "1"
if ARGV[4] == "1" then
  local t = redis.call("TIME")
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function int(x) return string.format("%d", x) end
local function real(x) return string.format("%.9f", x) end
local out = {}
local tats = {}
local all = true
for i = 1, n do
  local t = tonumber(ARGV[4 + 2 * i - 1])
  local tau = tonumber(ARGV[4 + 2 * i])
  local stored = redis.call("GET", KEYS[i])
  local tat = now
  if stored then tat = tonumber(stored) end
  local base = math.max(tat, now)
  local wait = base - now
  if wait > tau + 1e-9 then
    all = false
    table.insert(out, "0"); table.insert(out, "0"); table.insert(out, real(wait - tau))
    tats[i] = false
  else
    local new_tat = base + t
    local slack = tau - (new_tat - now)
    local remaining = 0
    if slack >= -1e-9 then remaining = math.floor(slack / t + 1e-9) + 1 end
    table.insert(out, "1"); table.insert(out, int(remaining)); table.insert(out, "0")
    tats[i] = {new_tat, math.ceil(new_tat - now + tau) + 1}
  end
end
local b = 4 + 2 * n
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
    table.insert(out, "0"); table.insert(out, int(calls)); table.insert(out, int(tokens))
    return out
  end
  local c2 = redis.call("HINCRBY", key, "calls", ARGV[b + 1])
  local t2 = redis.call("HINCRBY", key, "tokens", ARGV[b + 2])
  redis.call("EXPIRE", key, ARGV[b + 5])
  table.insert(out, "1"); table.insert(out, int(c2)); table.insert(out, int(t2))
else
  table.insert(out, "-1"); table.insert(out, "0"); table.insert(out, "0")
end
for i = 1, n do
  redis.call("SET", KEYS[i], real(tats[i][1]), "EX", int(tats[i][2]))
end
return out
"#;

/// KEYS: n GCRA keys, then the budget key (or none).
/// ARGV: n, has_budget, interval × n, calls, tokens.
pub(super) const REFUND: &str = r#"
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
  redis.call("HSET", key,
    "calls", string.format("%d", math.max(0, calls - tonumber(ARGV[3 + n]))),
    "tokens", string.format("%d", math.max(0, tokens - tonumber(ARGV[4 + n]))))
end
return 1
"#;

/// Budget counters are kept for this long after their last use (a period
/// is at most a week; the margin keeps a period's total for `status`).
pub(super) const BUDGET_TTL_S: u64 = 15 * 86_400;
