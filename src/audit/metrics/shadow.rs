//! The shadow bundles' series (`decision::shadow`): divergences by server,
//! direction and reason, and evaluations dropped on a full queue.

use super::{Metrics, ServerL, ShadowL};

impl Metrics {
    /// A shadow outcome that differs from the live one (`decision::shadow`):
    /// one count per shadow reason, bounded by `is_label` as denials are.
    pub fn shadow_divergence(
        &self,
        server: &str,
        direction: &'static str,
        reasons: &[String],
        is_label: impl Fn(&str) -> bool,
    ) {
        let labels = |reason: String| ShadowL {
            server: server.to_string(),
            direction,
            reason,
        };
        if reasons.is_empty() {
            self.shadow_divergences
                .get_or_create(&labels("none".into()))
                .inc();
        }
        for r in reasons {
            let reason = if is_label(r) {
                r.clone()
            } else {
                "other".into()
            };
            self.shadow_divergences.get_or_create(&labels(reason)).inc();
        }
    }

    /// A shadow evaluation dropped on a full queue (`count`: false only
    /// creates the series at 0, for a server that has a shadow).
    pub fn shadow_dropped(&self, server: &str, count: bool) {
        let sl = ServerL {
            server: server.into(),
        };
        let c = self.shadow_dropped.get_or_create(&sl);
        if count {
            c.inc();
        }
    }
}
