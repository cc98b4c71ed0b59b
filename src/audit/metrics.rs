//! Prometheus metrics (`--metrics-listen`, `[metrics] listen`), via
//! `prometheus-client`: the Prometheus text format 0.0.4 by default, and
//! OpenMetrics 1.0 when the scraper asks for it (`Accept:
//! application/openmetrics-text`), as the Prometheus exposition guide says a
//! target should negotiate. The crate writes OpenMetrics only; the 0.0.4
//! text is made from it (`to_text_004`): the two differ in the `_total`
//! name on a counter's HELP/TYPE lines, `# UNIT` and `# EOF`.
//!
//! Every per-server series is registered at 0 when the server's upstream
//! starts (`register_server`): a counter that first appears at 1 or 2 is
//! invisible to `increase()` and `rate()`, so the alert on the first
//! restart would never fire.
//!
//! What an operator watches: decision latency per server, decisions by
//! outcome, denials by reason, calls per tool, result decisions by outcome
//! with their redactions and dropped items per rule (`results`), upstream
//! health, which bundle revision is active, decision-log write errors.
//!
//! Label cardinality is bounded by construction: no arguments and no user
//! ids; reason codes a bundle does not declare in its reason catalog (nor
//! gavel's own) count as `other`; at most [`MAX_TOOLS`] distinct
//! (server, tool) pairs, then `other`.
//!
//! Several gavel processes run on one machine (one per host window): a port
//! already in use is a warning, never an exit — the first instance serves.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::sync::Recover;

mod exposition;
mod results;
mod shadow;
use exposition::{to_text_004, wants_openmetrics};

const MAX_TOOLS: usize = 1000;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerL {
    server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeL {
    server: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonL {
    server: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolL {
    server: String,
    tool: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DroppedL {
    server: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShadowL {
    server: String,
    direction: &'static str,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SpanL {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BundleL {
    server: String,
    bundle: String,
    revision: String,
}

pub struct Metrics {
    registry: Registry,
    latency: Family<ServerL, Histogram>,
    decisions: Family<OutcomeL, Counter>,
    denials: Family<ReasonL, Counter>,
    tool_calls: Family<ToolL, Counter>,
    upstream_up: Family<ServerL, Gauge>,
    upstream_restarts: Family<ServerL, Counter>,
    upstream_dropped: Family<DroppedL, Counter>,
    bundle_active: Family<BundleL, Gauge>,
    policy_available: Family<ServerL, Gauge>,
    log_write_errors: Counter,
    ship: ShipMetrics,
    telemetry_spans: Family<SpanL, Counter>,
    shadow_divergences: Family<ShadowL, Counter>,
    shadow_dropped: Family<ServerL, Counter>,
    results: results::ResultMetrics,
    tools_seen: Mutex<HashSet<(String, String)>>,
}

impl Metrics {
    // One piece (over 80 lines) because it is a table: one registration per
    // series, each with its help text, in the order `/metrics` lists them.
    fn new() -> Self {
        let mut registry = Registry::with_prefix("gavel");
        let latency = Family::<ServerL, Histogram>::new_with_constructor(|| {
            // 10 µs … ~0.3 s.
            Histogram::new(exponential_buckets(0.000_01, 2.0, 16))
        });
        let m = Metrics {
            latency,
            decisions: Family::default(),
            denials: Family::default(),
            tool_calls: Family::default(),
            upstream_up: Family::default(),
            upstream_restarts: Family::default(),
            upstream_dropped: Family::default(),
            bundle_active: Family::default(),
            policy_available: Family::default(),
            log_write_errors: Counter::default(),
            ship: ShipMetrics::default(),
            telemetry_spans: Family::default(),
            shadow_divergences: Family::default(),
            shadow_dropped: Family::default(),
            results: Default::default(),
            tools_seen: Mutex::new(HashSet::new()),
            registry: Registry::default(),
        };
        registry.register(
            "decision_duration_seconds",
            "Time to decide one request (input, policy, record), per server",
            m.latency.clone(),
        );
        registry.register(
            "decisions",
            "Decisions by server and outcome (allow, deny)",
            m.decisions.clone(),
        );
        registry.register(
            "denials",
            "Denials by server and reason code (codes outside the bundle's reason catalog: other)",
            m.denials.clone(),
        );
        registry.register(
            "tool_calls",
            "tools/call decisions by server, tool and outcome",
            m.tool_calls.clone(),
        );
        registry.register(
            "upstream_up",
            "1 when the upstream server is running and listed",
            m.upstream_up.clone(),
        );
        registry.register(
            "upstream_restarts",
            "Restarts of the upstream server after a failure",
            m.upstream_restarts.clone(),
        );
        registry.register(
            "upstream_messages_dropped",
            "Notifications from the upstream dropped and requests from it refused because too many were already waiting for the agent host (kind: notification, request)",
            m.upstream_dropped.clone(),
        );
        registry.register(
            "bundle_active",
            "1 for the bundle revision that decides for a server",
            m.bundle_active.clone(),
        );
        registry.register(
            "policy_available",
            "1 when the server's policy can decide (bundles loaded, or static rules only); 0 when its configured bundles are unavailable and every request is denied",
            m.policy_available.clone(),
        );
        registry.register(
            "decision_log_write_errors",
            "Decision records that could not be written",
            m.log_write_errors.clone(),
        );
        m.ship.register(&mut registry);
        registry.register(
            "telemetry_spans",
            "OpenTelemetry spans by outcome: exported, dropped (queue full), failed (the receiver refused them or retries ran out)",
            m.telemetry_spans.clone(),
        );
        registry.register(
            "shadow_divergences",
            "Requests a server's shadow bundles decided otherwise than its live policy, by direction (allow_to_deny, deny_to_allow, reasons_changed) and the shadow's reason codes (outside its catalog: other; none when it allowed)",
            m.shadow_divergences.clone(),
        );
        registry.register(
            "shadow_dropped",
            "Shadow evaluations dropped because the shadow queue was full (the live decisions are not affected)",
            m.shadow_dropped.clone(),
        );
        m.results.register(&mut registry);
        Metrics { registry, ..m }
    }

    /// One decision. `is_label` says whether a reason code may be a label
    /// value as it is (see [`Metrics::outcome`]).
    pub fn decision(
        &self,
        server: &str,
        tool: Option<&str>,
        allow: bool,
        reasons: &[String],
        is_label: impl Fn(&str) -> bool,
        seconds: f64,
    ) {
        self.latency(server, seconds);
        self.outcome(server, tool, allow, reasons, is_label);
    }

    /// The time one decision took.
    pub fn latency(&self, server: &str, seconds: f64) {
        self.latency
            .get_or_create(&ServerL {
                server: server.to_string(),
            })
            .observe(seconds);
    }

    /// One decision's outcome. A decision that needs a human's approval is
    /// counted once, when the approval is settled, with the effective
    /// outcome (a declined approval is a denial).
    ///
    /// `is_label` is the caller's rule for which reason codes may be label
    /// values as they are (the enforcer's: gavel's own codes and the server's
    /// reason catalog); any other code is counted as `other`, so an agent or
    /// a policy cannot grow the label set without bound.
    pub fn outcome(
        &self,
        server: &str,
        tool: Option<&str>,
        allow: bool,
        reasons: &[String],
        is_label: impl Fn(&str) -> bool,
    ) {
        let server_s = server.to_string();
        let outcome = if allow { "allow" } else { "deny" };
        self.decisions
            .get_or_create(&OutcomeL {
                server: server_s.clone(),
                outcome: outcome.into(),
            })
            .inc();
        if !allow {
            for r in reasons {
                let reason = if is_label(r) {
                    r.clone()
                } else {
                    "other".into()
                };
                self.denials
                    .get_or_create(&ReasonL {
                        server: server_s.clone(),
                        reason,
                    })
                    .inc();
            }
        }
        if let Some(tool) = tool {
            let tool = self.tool_label(server, tool);
            self.tool_calls
                .get_or_create(&ToolL {
                    server: server_s,
                    tool,
                    outcome: outcome.into(),
                })
                .inc();
        }
    }

    /// `tool` as a label value: itself among the first [`MAX_TOOLS`]
    /// (server, tool) pairs seen, `other` after.
    fn tool_label(&self, server: &str, tool: &str) -> String {
        let mut seen = self.tools_seen.lock().recover();
        let key = (server.to_string(), tool.to_string());
        if seen.contains(&key) || seen.len() < MAX_TOOLS {
            seen.insert(key);
            tool.to_string()
        } else {
            "other".to_string()
        }
    }

    /// Creates `server`'s series at 0 (module doc: why).
    pub fn register_server(&self, server: &str) {
        let sl = ServerL {
            server: server.into(),
        };
        // `get_or_create` creates the series; the guard it returns is not needed.
        drop(self.upstream_restarts.get_or_create(&sl));
        drop(self.upstream_up.get_or_create(&sl));
        for outcome in ["allow", "deny"] {
            drop(self.decisions.get_or_create(&OutcomeL {
                server: server.into(),
                outcome: outcome.into(),
            }));
        }
        for kind in ["notification", "request"] {
            drop(self.upstream_dropped.get_or_create(&DroppedL {
                server: server.into(),
                kind,
            }));
        }
    }

    pub fn upstream_up(&self, server: &str, up: bool) {
        self.upstream_up
            .get_or_create(&ServerL {
                server: server.into(),
            })
            .set(up as i64);
    }

    pub fn upstream_restart(&self, server: &str) {
        self.upstream_restarts
            .get_or_create(&ServerL {
                server: server.into(),
            })
            .inc();
    }

    /// A message from `server` dropped (`kind`: notification) or refused
    /// (request) past its in-flight bound (`upstream::bounded`).
    pub fn upstream_dropped(&self, server: &str, kind: &'static str) {
        self.upstream_dropped
            .get_or_create(&DroppedL {
                server: server.into(),
                kind,
            })
            .inc();
    }

    /// Marks `revision` of `bundle` as the one deciding for `server`.
    pub fn bundle_active(&self, server: &str, bundle: &str, revision: &str) {
        self.bundle_active
            .get_or_create(&BundleL {
                server: server.into(),
                bundle: bundle.into(),
                revision: revision.into(),
            })
            .set(1);
    }

    /// A revision no longer deciding (after a reload): its series is
    /// removed, so a process that hot-reloads for months keeps one series
    /// per bundle, not one per revision it ever ran.
    pub fn bundle_inactive(&self, server: &str, bundle: &str, revision: &str) {
        self.bundle_active.remove(&BundleL {
            server: server.into(),
            bundle: bundle.into(),
            revision: revision.into(),
        });
    }

    pub fn policy_available(&self, server: &str, available: bool) {
        self.policy_available
            .get_or_create(&ServerL {
                server: server.into(),
            })
            .set(available as i64);
    }

    pub fn log_write_error(&self) {
        self.log_write_errors.inc();
    }

    /// Decision-log events a service acknowledged (`audit::ship`).
    pub fn ship_delivered(&self, n: u64) {
        self.ship.delivered.inc_by(n);
    }

    /// Decision-log events that will not be shipped (the spool bound,
    /// oversized, rotated away, not JSON); they stay in the local log.
    pub fn ship_dropped(&self, n: u64) {
        self.ship.dropped.inc_by(n);
    }

    pub fn ship_failed(&self) {
        self.ship.failures.inc();
    }

    pub fn ship_stopped(&self, stopped: bool) {
        self.ship.stopped.set(i64::from(stopped));
    }

    /// `[telemetry]` on: every outcome's series at 0 from the start.
    pub fn register_telemetry(&self) {
        for outcome in ["exported", "dropped", "failed"] {
            let _ = self.telemetry_spans.get_or_create(&SpanL { outcome });
        }
    }

    /// `n` spans ended as `outcome` (exported, dropped, failed).
    pub fn telemetry_spans(&self, outcome: &'static str, n: u64) {
        self.telemetry_spans
            .get_or_create(&SpanL { outcome })
            .inc_by(n);
    }

    /// The exposition: OpenMetrics 1.0, or the Prometheus text format 0.0.4.
    pub fn encode(&self, openmetrics: bool) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        if openmetrics { out } else { to_text_004(&out) }
    }
}

/// The process's metrics (recorded whether or not they are served).
/// Decision-log shipping (`audit::ship`), registered at 0 from the start.
#[derive(Default)]
struct ShipMetrics {
    delivered: Counter,
    dropped: Counter,
    failures: Counter,
    stopped: Gauge,
}

impl ShipMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "decision_log_shipped",
            "Decision-log events delivered to the [log.ship] service (2xx)",
            self.delivered.clone(),
        );
        registry.register(
            "decision_log_ship_dropped",
            "Decision-log events not shipped: over [log.ship] max_spool_bytes (drop_oldest), larger than upload_size_limit_bytes, rotated away undelivered, or not JSON (they remain in the local log)",
            self.dropped.clone(),
        );
        registry.register(
            "decision_log_ship_failures",
            "Decision-log uploads that failed (retried with backoff)",
            self.failures.clone(),
        );
        registry.register(
            "decision_log_ship_stopped",
            "1 while shipping is stopped at [log.ship] max_spool_bytes (at_bound = \"stop\")",
            self.stopped.clone(),
        );
    }
}

pub fn global() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}

/// Connections the metrics port holds open at once (scrapers are few).
const METRICS_MAX_CONNECTIONS: usize = 32;
/// How long a scraper may take to send a request head.
const METRICS_HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves `GET /metrics` on `addr` in the background. A bind failure (the
/// port taken by another gavel, a bad address) is a warning: gavel runs on.
pub async fn serve(addr: &str) -> Option<tokio::task::JoinHandle<()>> {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(%addr, error = %e, "metrics not served: cannot listen (another gavel may already serve this port); gavel runs on");
            return None;
        }
    };
    tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "metrics served at /metrics");
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(|headers: http::HeaderMap| async move {
            let om = wants_openmetrics(&headers);
            let content_type = if om {
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            } else {
                "text/plain; version=0.0.4; charset=utf-8"
            };
            (
                [(http::header::CONTENT_TYPE, content_type)],
                global().encode(om),
            )
        }),
    );
    // The same bounded accept loop as `gavel serve` (connection cap, header
    // timeout, TCP_NODELAY): a scraper port is an edge like any other, and
    // axum's own `serve` bounds neither idle nor half-sent connections.
    let limits = crate::transport::conn::ConnLimits {
        max_connections: METRICS_MAX_CONNECTIONS,
        header_timeout: METRICS_HEADER_TIMEOUT,
    };
    Some(tokio::spawn(async move {
        let never = tokio_util::sync::CancellationToken::new();
        let port = crate::transport::conn::Port {
            listener,
            tls: None,
            limits,
        };
        let served = crate::transport::conn::serve(port, app, never, std::future::pending()).await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "metrics server stopped");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded_and_unknown_reasons_are_other() {
        let m = Metrics::new();
        // The enforcer's rule (gavel's codes and the catalog) is tested with
        // it, `decision::record::reason_is_label`.
        let known = |c: &str| {
            [
                "path_outside_scope",
                "policy_timeout",
                "rate_limited",
                "state_unavailable",
                "audit_unavailable",
                "approval_declined",
            ]
            .contains(&c)
        };
        m.decision(
            "fs",
            Some("read"),
            false,
            &[
                "path_outside_scope".into(),
                "made_up_code".into(),
                "policy_timeout".into(),
                "rate_limited".into(),
                "state_unavailable".into(),
                "audit_unavailable".into(),
                "approval_declined".into(),
            ],
            known,
            0.0001,
        );
        m.decision("fs", Some("read"), true, &[], known, 0.00002);
        for i in 0..MAX_TOOLS + 5 {
            m.decision("fs", Some(&format!("t{i}")), true, &[], known, 0.00001);
        }
        let text = m.encode(true);
        assert!(
            text.contains(r#"gavel_denials_total{server="fs",reason="path_outside_scope"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"gavel_denials_total{server="fs",reason="other"} 1"#));
        assert!(text.contains(r#"gavel_denials_total{server="fs",reason="policy_timeout"} 1"#));
        for gavel_side in [
            "rate_limited",
            "state_unavailable",
            "audit_unavailable",
            "approval_declined",
        ] {
            assert!(
                text.contains(&format!(
                    r#"gavel_denials_total{{server="fs",reason="{gavel_side}"}} 1"#
                )),
                "{text}"
            );
        }
        assert!(!text.contains("made_up_code"));
        assert!(
            text.contains(r#"gavel_decisions_total{server="fs",outcome="allow"} 1006"#),
            "{text}"
        );
        assert!(
            text.contains(r#"gavel_tool_calls_total{server="fs",tool="other",outcome="allow"} 6"#),
            "{text}"
        );
        assert!(text.contains(r#"gavel_decision_duration_seconds_count{server="fs"} 1007"#));
    }
}
