//! Every clock read of a decision — `environment.time`, the session counters
//! (`calls_last_minute`, `session_age_seconds`), rate limits, budget periods,
//! remembered approvals, record timestamps — goes through [`Clock`], so tests
//! drive time instead of sleeping.
//!
//! Time is Unix seconds (f64): the embedded store is shared by several gavel
//! processes, so a per-process monotonic clock would not do.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::sync::Recover;

pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn now(&self) -> f64;
    /// The file a test clock reads (`GAVEL_TEST_CLOCK_FILE`), so that every
    /// decision record can say it was made on one.
    fn test_clock(&self) -> Option<String> {
        None
    }
    /// Whether this is the real system clock: a shared store may then use
    /// its own server's time instead, so instances agree (Redis `TIME`).
    fn is_system(&self) -> bool {
        false
    }
}

/// Unix seconds as a `SystemTime` (negative times are the epoch).
pub fn system_time(t: f64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(t.max(0.0))
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> f64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    }
    fn is_system(&self) -> bool {
        true
    }
}

/// A clock a test sets by hand.
#[derive(Clone, Default)]
pub struct ManualClock(Arc<Mutex<f64>>);

impl ManualClock {
    pub fn new(at: f64) -> Self {
        ManualClock(Arc::new(Mutex::new(at)))
    }
    pub fn set(&self, at: f64) {
        *self.0.lock().recover() = at;
    }
    pub fn advance(&self, by: f64) {
        *self.0.lock().recover() += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> f64 {
        *self.0.lock().recover()
    }
}

/// The end-to-end tests' clock: Unix seconds read from a file at each read
/// (`GAVEL_TEST_CLOCK_FILE`), so a test moves a running gavel's time. An
/// unreadable file falls back to the system clock.
///
/// It is compiled into release builds because the e2e tests drive the real
/// binary; it is never silent: gavel warns at start naming the file, and
/// every decision-log record carries `labels.test_clock` with it.
pub struct FileClock(pub PathBuf);

impl Clock for FileClock {
    fn now(&self) -> f64 {
        std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| SystemClock.now())
    }

    fn test_clock(&self) -> Option<String> {
        Some(self.0.display().to_string())
    }
}

/// The process clock: the system clock, or the test clock file when
/// `GAVEL_TEST_CLOCK_FILE` is set.
pub fn from_env() -> Arc<dyn Clock> {
    match std::env::var_os("GAVEL_TEST_CLOCK_FILE") {
        Some(p) => {
            let p = PathBuf::from(p);
            tracing::warn!(
                file = %p.display(),
                "GAVEL_TEST_CLOCK_FILE is set: this gavel reads the time from {} (counters, rate limits, budgets, approvals, decision times) and labels every decision record test_clock; it is for tests only — unset it in production",
                p.display()
            );
            Arc::new(FileClock(p))
        }
        None => Arc::new(SystemClock),
    }
}
