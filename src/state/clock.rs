//! Every clock read of the stateful checks (rate limits, budget periods)
//! goes through [`Clock`], so tests drive time instead of sleeping.
//!
//! Time is Unix seconds (f64): the embedded store is shared by several gavel
//! processes, so a per-process monotonic clock would not do.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn now(&self) -> f64;
    /// Whether this is the real system clock: a shared store may then use
    /// its own server's time instead, so instances agree (Redis `TIME`).
    fn is_system(&self) -> bool {
        false
    }
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
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }
    pub fn advance(&self, by: f64) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> f64 {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The end-to-end tests' clock: Unix seconds read from a file at each read
/// (`GAVEL_TEST_CLOCK_FILE`), so a test moves a running gavel's time. An
/// unreadable file falls back to the system clock.
pub struct FileClock(pub PathBuf);

impl Clock for FileClock {
    fn now(&self) -> f64 {
        std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| SystemClock.now())
    }
}

/// The process clock: the system clock, or the test clock file when
/// `GAVEL_TEST_CLOCK_FILE` is set.
pub fn from_env() -> Arc<dyn Clock> {
    match std::env::var_os("GAVEL_TEST_CLOCK_FILE") {
        Some(p) => {
            tracing::warn!(file = %PathBuf::from(&p).display(), "GAVEL_TEST_CLOCK_FILE is set: rate limits and budgets use a test clock");
            Arc::new(FileClock(p.into()))
        }
        None => Arc::new(SystemClock),
    }
}
