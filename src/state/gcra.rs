//! GCRA (generic cell rate algorithm), the arithmetic every backend shares:
//! the stored state per key is one number, the theoretical arrival time
//! (TAT). With emission interval `T = period / rate` and tolerance
//! `τ = T·(burst − 1)`, a request at `now` is allowed iff
//! `max(TAT, now) − now ≤ τ`, and then `TAT = max(TAT, now) + T`.
//! A rejected request leaves TAT unchanged (it is not charged).

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RateOutcome {
    pub allowed: bool,
    /// Requests still allowed right now after this one.
    pub remaining: u64,
    /// When rejected: seconds until one request would be allowed.
    pub retry_after: f64,
}

/// A rate: `rate` requests per `period_s` seconds, `burst` at once (≥ 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub rate: f64,
    pub period_s: f64,
    pub burst: u64,
}

impl Rate {
    fn interval(&self) -> f64 {
        self.period_s / self.rate
    }
    fn tolerance(&self) -> f64 {
        self.interval() * (self.burst.max(1) - 1) as f64
    }
}

/// Decides one request. `tat` is the stored TAT (None: never seen). Returns
/// the outcome and the TAT to store (unchanged when rejected).
pub fn check(tat: Option<f64>, rate: Rate, now: f64) -> (RateOutcome, f64) {
    let t = rate.interval();
    let tau = rate.tolerance();
    let base = tat.unwrap_or(now).max(now);
    let wait = base - now;
    if wait > tau + 1e-9 {
        return (
            RateOutcome {
                allowed: false,
                remaining: 0,
                retry_after: wait - tau,
            },
            tat.unwrap_or(now),
        );
    }
    let new_tat = base + t;
    let slack = tau - (new_tat - now);
    let remaining = if slack < -1e-9 {
        0
    } else {
        (slack / t + 1e-9).floor() as u64 + 1
    };
    (
        RateOutcome {
            allowed: true,
            remaining,
            retry_after: 0.0,
        },
        new_tat,
    )
}
