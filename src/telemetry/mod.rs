//! OpenTelemetry tracing (`[telemetry]`, docs/decision-log.md "Tracing"):
//! one span per decided request, in the agent host's trace when the request
//! carries a W3C `traceparent` in `params._meta` (`context`), exported over
//! OTLP/HTTP with the JSON encoding (`span`, `export`).
//!
//! This module knows spans, trace context and the exporter; it does not know
//! decisions. The gate (`host::authorize`) opens the span and sets the
//! decision's attributes, the upstream send puts the span's `traceparent`
//! in the forwarded request's `_meta`, and the decision record carries the
//! span's `trace_id`/`span_id`. Tracing never changes what a request does:
//! a bad `traceparent` starts a new trace, a full queue drops the span, an
//! unreachable receiver costs only the exporter's retries.

mod context;
mod export;
mod span;

use std::time::Duration;

pub use context::{SpanContext, TraceParent, valid_tracestate};
pub use export::{ActiveSpan, Stats, Tracer};
pub use span::{AttrValue, SpanData, export_request};

/// `[telemetry]`, validated (`config/telemetry.rs`). Present only when an
/// endpoint is configured: tracing is off by default.
#[derive(Clone, PartialEq)]
pub struct Settings {
    /// The OTLP/HTTP traces URL (`…/v1/traces`).
    pub endpoint: String,
    /// Sent with every export (e.g. an API key read from the environment).
    pub headers: Vec<(String, String)>,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// Spans waiting for export; beyond it spans are dropped and counted.
    pub queue_size: usize,
    /// Spans per export request.
    pub batch_size: usize,
    /// How long a batch waits to fill before it is sent.
    pub flush_interval: Duration,
    /// One export request, connection included.
    pub timeout: Duration,
    /// How long shutdown waits for queued spans to be sent.
    pub shutdown_timeout: Duration,
}

/// Header values are secrets (API keys): never printed.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("endpoint", &self.endpoint)
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(k, _)| format!("{k}: ***"))
                    .collect::<Vec<_>>(),
            )
            .field("service_name", &self.service_name)
            .field("queue_size", &self.queue_size)
            .field("batch_size", &self.batch_size)
            .field("flush_interval", &self.flush_interval)
            .field("timeout", &self.timeout)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot build the OTLP HTTP client: {0}")]
    Client(String),
}

#[cfg(test)]
mod tests;
