//! Polling: every reference's loop (jittered delay, backoff on errors,
//! "not modified" by layer digest) and what a poll round finds.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Key, Pulled, Supply};
use crate::bundle::oci::OciRef;
use crate::config::OciSettings;
use crate::decision::Enforcer;

impl Supply {
    /// Polls every reference until `shutdown`, activating changes.
    pub fn spawn_polling(self: &Arc<Self>, enforcer: Arc<Enforcer>, shutdown: CancellationToken) {
        for key in self.users.keys().cloned() {
            let (this, enforcer, shutdown) = (self.clone(), enforcer.clone(), shutdown.clone());
            tokio::spawn(async move { this.poll_loop(key, enforcer, shutdown).await });
        }
    }

    async fn poll_loop(
        self: Arc<Self>,
        key: Key,
        enforcer: Arc<Enforcer>,
        shutdown: CancellationToken,
    ) {
        let Ok(r) = OciRef::parse(&key.1) else { return };
        let mut retries: u32 = 0;
        loop {
            let have = self
                .lock()
                .get(&key)
                .and_then(|e| e.current.as_ref().map(|l| l.layer_digest.clone()));
            // A digest pin that is active never changes: nothing to poll.
            let active_ok = self
                .lock()
                .get(&key)
                .is_some_and(|e| e.status.last_successful_activation.is_some());
            if !r.is_mutable() && have.is_some() && active_ok {
                return;
            }
            let now = self
                .lock()
                .get_mut(&key)
                .is_some_and(|e| std::mem::take(&mut e.refresh_now));
            let delay = if now {
                Duration::ZERO
            } else {
                next_delay(retries, &self.settings)
            };
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.cancelled() => return,
            }
            let refused = self.lock().get(&key).and_then(|e| e.refused.clone());
            let mut skip: Vec<&str> = refused.iter().map(String::as_str).collect();
            if active_ok && let Some(h) = &have {
                skip.push(h);
            }
            match self.pull(&key, &r, &skip).await {
                Ok(Pulled::Unchanged {
                    layer: digest,
                    manifest,
                }) => {
                    retries = 0;
                    let active = have.as_deref() == Some(digest.as_str());
                    let still_refused = refused.as_deref() == Some(digest.as_str());
                    self.unchanged(&key, &manifest, active, still_refused);
                }
                Ok(Pulled::New(layer)) => {
                    retries = 0;
                    self.activate_off_loop(&key, layer, &enforcer).await;
                }
                Err(msg) => {
                    retries = retries.saturating_add(1);
                    self.record_error(&key, "bundle_error", msg);
                }
            }
        }
    }

    /// The registry answers with a layer already known: the active one
    /// (`active`: its manifest may have moved), or the one last refused
    /// (`still_refused`: its error stays while the registry serves it).
    fn unchanged(&self, key: &Key, manifest: &str, active: bool, still_refused: bool) {
        if active {
            self.same_layer_new_manifest(key, manifest);
        }
        // The registry answers again with the active layer: an earlier
        // download error or refusal is over.
        if !still_refused && let Some(e) = self.lock().get_mut(key) {
            e.refused = None;
            e.status.code = None;
            e.status.message = None;
        }
    }

    /// Verifying, parsing, the bundle's own tests and the compile take what
    /// they take: on the blocking pool, never on the event loop that answers
    /// requests.
    async fn activate_off_loop(
        self: &Arc<Self>,
        key: &Key,
        layer: super::Layer,
        enforcer: &Arc<Enforcer>,
    ) {
        let (this, k, e) = (self.clone(), key.clone(), enforcer.clone());
        if tokio::task::spawn_blocking(move || this.try_activate(&k, layer, &e))
            .await
            .is_err()
        {
            self.record_error(
                key,
                "bundle_error",
                format!("activating a new layer of {} failed unexpectedly; the last good bundle stays active", key.1),
            );
        }
    }

    /// The registry serves the active layer: a start from the cache is
    /// confirmed (the status says `registry`), and if the tag moved to
    /// another manifest that names the active layer (a re-push of the same
    /// bundle, other annotations) there is nothing to build, but the status
    /// and the cache record name the manifest the tag names now.
    fn same_layer_new_manifest(&self, key: &Key, manifest: &str) {
        let layer = {
            let mut map = self.lock();
            let Some(e) = map.get_mut(key) else { return };
            let Some(cur) = e.current.as_mut() else {
                return;
            };
            // Started from the cache: the registry now serves the very
            // bytes that decide, so they are the registry's as much.
            if cur.source == "cache" {
                cur.source = "registry";
                e.status.source = Some("registry");
            }
            if cur.manifest_digest == manifest {
                return;
            }
            tracing::info!(bundle = %key.1, old = %cur.manifest_digest, new = %manifest, "the tag names a new manifest with the active layer; nothing to reload");
            cur.manifest_digest = manifest.to_string();
            e.status.manifest_digest = Some(manifest.to_string());
            cur.clone()
        };
        if let Err(e) = self
            .cache
            .store(&key.0, &key.1, &layer.manifest_digest, &layer.bytes)
        {
            tracing::warn!(bundle = %key.1, "cannot update the cached bundle's manifest digest: {e}");
        }
    }
}

/// How long a reference's loop waits before its next poll: a jittered delay
/// in `[min_delay, max_delay]` while the registry answers, OPA's backoff
/// after `retries` failed polls in a row.
fn next_delay(retries: u32, settings: &OciSettings) -> Duration {
    if retries == 0 {
        jitter_between(settings.min_delay, settings.max_delay)
    } else {
        backoff(retries, settings.max_delay)
    }
}

/// Uniform in `[min, max]`.
fn jitter_between(min: Duration, max: Duration) -> Duration {
    let span = max.saturating_sub(min).as_secs_f64();
    min + Duration::from_secs_f64(span * rand_unit())
}

/// OPA's `util.DefaultBackoff`: 100 ms × 1.6^retries, capped, ±20 %.
fn backoff(retries: u32, max: Duration) -> Duration {
    let base = 0.1 * 1.6f64.powi(retries.min(64) as i32);
    let capped = base.min(max.as_secs_f64());
    let jittered = capped * (0.8 + 0.4 * rand_unit());
    Duration::from_secs_f64(jittered.min(max.as_secs_f64()))
}

fn rand_unit() -> f64 {
    (uuid::Uuid::new_v4().as_u64_pair().0 >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(min_ms: u64, max_ms: u64) -> OciSettings {
        OciSettings {
            min_delay: Duration::from_millis(min_ms),
            max_delay: Duration::from_millis(max_ms),
            ..Default::default()
        }
    }

    #[test]
    fn backoff_grows_by_1_6_with_jitter_and_is_capped() {
        let max = Duration::from_secs(5);
        // 100 ms × 1.6^n ± 20 %, for every draw.
        for n in 0..8u32 {
            let base = 0.1 * 1.6f64.powi(n as i32);
            for _ in 0..50 {
                let d = backoff(n, max).as_secs_f64();
                assert!(
                    d >= base * 0.8 - 1e-9 && d <= base * 1.2 + 1e-9,
                    "retry {n}: {d}"
                );
            }
        }
        for _ in 0..50 {
            let d = backoff(30, max);
            assert!(d <= max && d >= max.mul_f64(0.8), "{d:?}");
        }
        // Jittered: not one value drawn over and over.
        let draws: std::collections::BTreeSet<u128> =
            (0..50).map(|_| backoff(3, max).as_nanos()).collect();
        assert!(draws.len() > 10, "{draws:?}");
    }

    #[test]
    fn the_next_poll_is_jittered_while_healthy_and_backs_off_after_errors() {
        let s = settings(1_000, 2_000);
        let healthy: Vec<Duration> = (0..100).map(|_| next_delay(0, &s)).collect();
        assert!(
            healthy
                .iter()
                .all(|d| *d >= s.min_delay && *d <= s.max_delay),
            "{healthy:?}"
        );
        let distinct: std::collections::BTreeSet<_> = healthy.iter().collect();
        assert!(distinct.len() > 10, "jittered: {distinct:?}");
        // The first retry comes sooner than min_delay (100 ms ± 20 %), then
        // the wait grows, never past max_delay.
        assert!(next_delay(1, &s) <= Duration::from_millis(192));
        assert!(next_delay(5, &s) >= Duration::from_millis(800));
        for n in 6..40 {
            assert!(next_delay(n, &s) <= s.max_delay);
        }
    }
}
