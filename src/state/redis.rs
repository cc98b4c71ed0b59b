//! The shared [`StateStore`] for scale-out: Redis, one server for every
//! gavel instance (`[state] backend = "redis"`, `redis_url`).
//!
//! Each call's rate limits and budget are decided and charged by one Lua
//! script (atomic on the server, one round trip), with the same GCRA
//! arithmetic as `gcra.rs`. Floats travel as strings (Redis truncates Lua
//! numbers in replies); counters are integers written with `%d`/`HINCRBY`,
//! never `tostring` (which gives "1e+14" from 10^14 on, and that would not
//! parse back).
//!
//! Time: with the system clock the script takes `now` from Redis itself
//! (`TIME`), so instances on different machines agree on one GCRA timeline
//! whatever their clock skew; with an injected clock (tests,
//! `GAVEL_TEST_CLOCK_FILE`) the caller's `now` is used, so tests keep driving
//! time. Budget *periods* (UTC day, ISO week) are still named from the
//! caller's clock: skew only matters within seconds of midnight.
//!
//! Never on the event loop: the decision path is synchronous and gavel's
//! runtime is single-threaded (`main.rs`), so a decision that uses the store
//! runs on a blocking-pool thread (`SessionState::decide_async` →
//! `spawn_blocking`) and each round trip blocks that thread only. Called on
//! a multi-threaded runtime's worker instead (a library user), a round trip
//! runs under `block_in_place` ([`blocking`]). Calls do not serialise: a
//! small pool of connections ([`MAX_CONNECTIONS`]).
//!
//! Redis unreachable → every call the store keeps fails closed with an error
//! naming Redis. gavel remembers that it is down and retries only after a
//! backoff (doubling up to [`MAX_BACKOFF`]): meanwhile calls are refused at
//! once instead of each waiting for a connect timeout, and one call probes
//! when the backoff is over; the limits recover when Redis returns. Every
//! wait is bounded (connect, read and write timeouts; waiting for a pooled
//! connection).
//!
//! The budget is still read once before the policy when a rule reads it
//! (`budget_get`, for `input.context.budget`) and charged after it (in the
//! script): folding the two into one round trip would mean charging before the policy has
//! allowed the call, and a refused call must cost nothing.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::clock::{Clock, SystemClock};
use super::gcra::{Rate, RateOutcome};
use super::{BudgetCharge, Charged, StateError, StateStore, Usage};
use crate::sync::Recover;

#[path = "redis_scripts.rs"]
mod scripts;
use scripts::{BUDGET_TTL_S, CHARGE, REFUND};

/// Connect, read and write timeout of one round trip.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Connections kept per process; more concurrent calls wait for one (at
/// most [`TIMEOUT`]).
pub const MAX_CONNECTIONS: usize = 8;
/// First wait after Redis is found unreachable; doubled per failed probe.
const MIN_BACKOFF_S: f64 = 0.25;
/// Longest wait between probes while Redis stays unreachable.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Redis was found unreachable: since when, why, and when to try again.
struct Down {
    since: std::time::SystemTime,
    last_error: String,
    /// Backoff-clock seconds before which no call tries Redis.
    retry_at: f64,
    backoff_s: f64,
}

#[derive(Default)]
struct Pool {
    idle: Vec<redis::Connection>,
    /// Connections in existence (idle or in use).
    open: usize,
    down: Option<Down>,
}

pub struct RedisStore {
    url_masked: String,
    client: redis::Client,
    pool: Mutex<Pool>,
    returned: Condvar,
    script: redis::Script,
    refund: redis::Script,
    /// Take `now` from Redis (`TIME`) rather than from the caller.
    server_time: bool,
    /// Paces the reconnect backoff (a test drives it; gavel uses the system clock).
    backoff_clock: Arc<dyn Clock>,
    /// Connection attempts made, for tests of the backoff.
    attempts: std::sync::atomic::AtomicUsize,
}

/// A connection taken from the pool; goes back unless the call failed.
struct Lease<'a> {
    store: &'a RedisStore,
    conn: Option<redis::Connection>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut p = self.store.lock();
        match self.conn.take() {
            Some(c) if p.down.is_none() => p.idle.push(c),
            _ => p.open -= 1,
        }
        drop(p);
        self.store.returned.notify_one();
    }
}

/// Runs blocking I/O without stalling an async worker: `block_in_place`
/// on a multi-threaded runtime, directly elsewhere (plain threads, tests).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Errors after which the connection (and, for all we know, Redis) is gone.
fn is_unreachable(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_unrecoverable_error()
}

impl RedisStore {
    /// A store on `url`; `server_time`: take `now` from Redis (use it when
    /// gavel runs on the system clock).
    pub fn open(url: &str, server_time: bool) -> Result<Self, StateError> {
        Self::open_with_backoff_clock(url, server_time, Arc::new(SystemClock))
    }

    pub fn open_with_backoff_clock(
        url: &str,
        server_time: bool,
        backoff_clock: Arc<dyn Clock>,
    ) -> Result<Self, StateError> {
        let url_masked = crate::audit::mask::mask_url(url);
        let not_a_url = |e: redis::RedisError| StateError::Redis {
            url: url_masked.clone(),
            message: format!("not a Redis URL ({e}); write redis://host:port/db"),
        };
        // TCP_NODELAY: a charge is one small request and its answer; with
        // Nagle's algorithm on, a request written while the previous
        // answer's ACK is delayed waits for it (tens of ms per call).
        let info = redis::IntoConnectionInfo::into_connection_info(url)
            .map_err(not_a_url)?
            .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        let client = redis::Client::open(info).map_err(not_a_url)?;
        Ok(RedisStore {
            url_masked,
            client,
            pool: Mutex::default(),
            returned: Condvar::new(),
            script: redis::Script::new(CHARGE),
            refund: redis::Script::new(REFUND),
            server_time,
            backoff_clock,
            attempts: Default::default(),
        })
    }

    /// Sets `key` only if it is not set, expiring after `ttl_ms`: true the
    /// first time, false while it stays set (`SET NX PX`, atomic on the
    /// server). What several instances use to do a thing once between
    /// them (a round's nonce, `host::seal`). Fails closed like every call:
    /// an unreachable Redis is an error, never a "first time".
    pub fn set_once(&self, key: &str, ttl_ms: u64) -> Result<bool, StateError> {
        let set: Option<String> = self.with(|c| {
            redis::cmd("SET")
                .arg(key)
                .arg("1")
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms.max(1))
                .query(c)
        })?;
        Ok(set.is_some())
    }

    /// Publishes `payload` on `channel` (`PUBLISH`): how many subscribers
    /// got it — 0 means nobody listens there (an instance gone). What
    /// instances use to hand each other work (`state::bus`). Blocking.
    pub fn publish(&self, channel: &str, payload: &[u8]) -> Result<u64, StateError> {
        self.with(|c| redis::cmd("PUBLISH").arg(channel).arg(payload).query(c))
    }

    /// A client on the same server, for a connection of its own (a
    /// subscriber, which cannot share the pool's).
    pub fn client(&self) -> redis::Client {
        self.client.clone()
    }

    /// The server's URL with any password masked, for messages.
    pub fn url_masked(&self) -> &str {
        &self.url_masked
    }

    /// How many times a connection was attempted (tests).
    pub fn connect_attempts(&self) -> usize {
        self.attempts.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().recover()
    }

    fn err(&self, message: impl std::fmt::Display) -> StateError {
        StateError::Redis {
            url: self.url_masked.clone(),
            message: message.to_string(),
        }
    }

    /// Records that Redis is unreachable (or still is): closes the idle
    /// connections and sets the next probe time.
    fn mark_down(&self, p: &mut Pool, why: String) {
        let now = self.backoff_clock.now();
        p.open -= p.idle.len();
        p.idle.clear();
        let backoff_s = match &p.down {
            Some(d) => (d.backoff_s * 2.0).min(MAX_BACKOFF.as_secs_f64()),
            None => MIN_BACKOFF_S,
        };
        let since = p
            .down
            .as_ref()
            .map_or_else(std::time::SystemTime::now, |d| d.since);
        if p.down.is_none() {
            tracing::error!(url = %self.url_masked, "Redis is unreachable: {why}; limited calls are refused until it answers");
        }
        p.down = Some(Down {
            since,
            last_error: why,
            retry_at: now + backoff_s,
            backoff_s,
        });
    }

    fn down_error(&self, d: &Down) -> StateError {
        self.err(format!(
            "unreachable since {} ({}); next attempt within {:.1} s",
            humantime::format_rfc3339_seconds(d.since),
            d.last_error,
            (d.retry_at - self.backoff_clock.now()).max(0.0)
        ))
    }

    /// A connection: an idle one, a new one (up to [`MAX_CONNECTIONS`]), or
    /// the next one returned (waiting at most [`TIMEOUT`]). While Redis is
    /// down and the backoff is not over, fails at once.
    fn lease(&self) -> Result<Lease<'_>, StateError> {
        let deadline = std::time::Instant::now() + TIMEOUT;
        let mut p = self.lock();
        loop {
            if let Some(d) = p.down.as_mut() {
                let now = self.backoff_clock.now();
                if now < d.retry_at {
                    return Err(self.down_error(d));
                }
                // This call probes; the others keep failing fast meanwhile.
                d.retry_at = now + d.backoff_s;
                return self.connect(p);
            }
            if let Some(c) = p.idle.pop() {
                return Ok(Lease {
                    store: self,
                    conn: Some(c),
                });
            }
            if p.open < MAX_CONNECTIONS {
                return self.connect(p);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(self.err(format!(
                    "all {MAX_CONNECTIONS} connections stayed busy for {TIMEOUT:?}"
                )));
            }
            p = self.returned.wait_timeout(p, left).recover().0;
        }
    }

    /// Opens a connection outside the lock (it may take up to [`TIMEOUT`]).
    fn connect(&self, mut p: std::sync::MutexGuard<'_, Pool>) -> Result<Lease<'_>, StateError> {
        p.open += 1;
        drop(p);
        self.attempts
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let made = self
            .client
            .get_connection_with_timeout(TIMEOUT)
            .and_then(|c| {
                c.set_read_timeout(Some(TIMEOUT))?;
                c.set_write_timeout(Some(TIMEOUT))?;
                Ok(c)
            });
        let mut p = self.lock();
        match made {
            Ok(c) => {
                if p.down.take().is_some() {
                    tracing::info!(url = %self.url_masked, "Redis answers again");
                }
                Ok(Lease {
                    store: self,
                    conn: Some(c),
                })
            }
            Err(e) => {
                p.open -= 1;
                self.mark_down(&mut p, e.to_string());
                let err = self.down_error(p.down.as_ref().expect("just marked down"));
                drop(p);
                self.returned.notify_one();
                Err(err)
            }
        }
    }

    /// Runs `f` on a pooled connection, off the async workers. A failed
    /// call drops its connection; an unreachable Redis is remembered.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StateError> {
        blocking(|| {
            let mut lease = self.lease()?;
            let conn = lease.conn.as_mut().expect("a lease holds a connection");
            match f(conn) {
                Ok(v) => Ok(v),
                Err(e) => {
                    lease.conn = None;
                    if is_unreachable(&e) {
                        let mut p = self.lock();
                        self.mark_down(&mut p, e.to_string());
                    }
                    Err(self.err(e))
                }
            }
        })
    }
}

fn num(v: &str) -> f64 {
    v.parse().unwrap_or(0.0)
}

/// A stored counter: an integer (older gavels may have written a float).
fn count(v: Option<String>) -> Result<u64, String> {
    match v {
        None => Ok(0),
        Some(s) => s
            .parse::<u64>()
            .or_else(|_| s.parse::<f64>().map(|f| f.max(0.0) as u64))
            .map_err(|_| format!("budget counter {s:?} is not a number")),
    }
}

impl StateStore for RedisStore {
    fn charge(
        &self,
        limits: &[(String, Rate)],
        now: f64,
        budget: Option<BudgetCharge<'_>>,
    ) -> Result<Charged, StateError> {
        // gavel's guard folds owed result tokens only into the embedded
        // store (`decision::guard`); a caller that passes some here has them
        // written first, in a round trip of their own.
        if let Some(b) = &budget
            && b.owed != Usage::default()
        {
            self.budget_add(b.key, b.period, b.owed)?;
        }
        let mut inv = self.script.prepare_invoke();
        for (k, _) in limits {
            inv.key(k);
        }
        if let Some(b) = &budget {
            inv.key(format!("{}|{}", b.key, b.period));
        }
        inv.arg(limits.len())
            .arg(format!("{now:.6}"))
            .arg(if budget.is_some() { "1" } else { "0" })
            .arg(if self.server_time { "1" } else { "0" });
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
            owed: Usage::default(),
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
            calls: count(Some(tail[1].clone())).map_err(|e| self.err(e))?,
            tokens: count(Some(tail[2].clone())).map_err(|e| self.err(e))?,
        };
        let budget = match tail[0].as_str() {
            "1" => Some((true, used)),
            "0" => Some((false, used)),
            _ => None,
        };
        Ok(Charged { rates, budget })
    }

    /// The stored TATs (and Redis's clock, when it is the one the script
    /// reads) through plain reads: nothing is written.
    fn peek(
        &self,
        limits: &[(String, Rate)],
        now: f64,
        budget: Option<BudgetCharge<'_>>,
    ) -> Result<Charged, StateError> {
        let mut rates = Vec::with_capacity(limits.len());
        if !limits.is_empty() {
            let keys: Vec<&str> = limits.iter().map(|(k, _)| k.as_str()).collect();
            let server_time = self.server_time;
            let (tats, time): (Vec<Option<String>>, Option<(String, String)>) = self.with(|c| {
                let tats: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query(c)?;
                let time = if server_time {
                    Some(redis::cmd("TIME").query(c)?)
                } else {
                    None
                };
                Ok((tats, time))
            })?;
            let now = time.map_or(now, |(s, us)| num(&s) + num(&us) / 1e6);
            for ((_, rate), tat) in limits.iter().zip(tats) {
                let tat = tat.map(|t| num(&t));
                rates.push(crate::state::gcra::check(tat, *rate, now).0);
            }
        }
        let budget = match budget {
            Some(b) => Some((b, self.budget_get(b.key, b.period)?)),
            None => None,
        };
        Ok(super::predicted(rates, budget))
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
        let (calls, tokens): (Option<String>, Option<String>) = self.with(|c| {
            redis::cmd("HMGET")
                .arg(&k)
                .arg("calls")
                .arg("tokens")
                .query(c)
        })?;
        Ok(Usage {
            calls: count(calls).map_err(|e| self.err(e))?,
            tokens: count(tokens).map_err(|e| self.err(e))?,
        })
    }
}

#[cfg(test)]
#[path = "redis_tests.rs"]
mod tests;
