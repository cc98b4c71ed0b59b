//! The exporter: spans go into a bounded queue (a full queue drops the span
//! and counts it; a decision never waits for telemetry), a background task
//! sends them in batches as OTLP/HTTP JSON, retrying 429 and 5xx answers and
//! connection failures with backoff, and flushes what is queued at shutdown
//! within `shutdown_timeout`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::span::{AttrValue, SpanData, export_request, now_unix_ns};
use super::{Settings, SpanContext, TelemetryError};
use crate::sync::Recover;
use crate::text::escape_controls;

/// Attempts per batch (the first and the retries).
const MAX_ATTEMPTS: u32 = 5;
/// The first backoff; doubled per retry, capped by [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Also the cap on a receiver's `Retry-After`.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Handle on the exporter; cheap to clone (every open span holds one).
#[derive(Clone)]
pub struct Tracer {
    inner: Arc<Inner>,
}

struct Inner {
    tx: mpsc::Sender<SpanData>,
    closing: CancellationToken,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    shutdown_timeout: Duration,
    stats: Stats,
}

/// What the exporter did, for `gavel status` and the tests.
#[derive(Default)]
pub struct Stats {
    /// Spans the receiver accepted.
    pub exported: AtomicU64,
    /// Spans dropped because the queue was full or the exporter stopped.
    pub dropped: AtomicU64,
    /// Spans lost because their batch failed after all retries (or was refused).
    pub failed: AtomicU64,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tracer")
    }
}

impl Tracer {
    /// Starts the exporter task (needs a Tokio runtime).
    pub fn start(settings: Settings) -> Result<Tracer, TelemetryError> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .build()
            .map_err(|e| TelemetryError::Client(e.to_string()))?;
        let (tx, rx) = mpsc::channel(settings.queue_size);
        let inner = Arc::new(Inner {
            tx,
            closing: CancellationToken::new(),
            task: Default::default(),
            shutdown_timeout: settings.shutdown_timeout,
            stats: Stats::default(),
        });
        crate::audit::metrics::global().register_telemetry();
        let task = tokio::spawn(run(rx, client, settings, inner.clone()));
        *inner.task.lock().recover() = Some(task);
        Ok(Tracer { inner })
    }

    /// Opens a span; it ends, and is queued, when the returned guard is dropped.
    pub fn begin(&self, context: SpanContext, name: String) -> ActiveSpan {
        ActiveSpan {
            tracer: self.clone(),
            context: Box::new(context.clone()),
            data: std::sync::Mutex::new(Some(Box::new(SpanData::new(context, name)))),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Queues a finished span; never waits.
    fn submit(&self, span: SpanData) {
        if !span.context.sampled() {
            return;
        }
        if self.inner.tx.try_send(span).is_err() {
            let n = self.inner.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            crate::audit::metrics::global().telemetry_spans("dropped", 1);
            // One line for the first drop and one per thousand after: a slow
            // receiver must not flood gavel's log.
            if n == 1 || n.is_multiple_of(1000) {
                tracing::warn!(
                    dropped = n,
                    "telemetry: span queue full or exporter stopped, span dropped ([telemetry] queue_size bounds it)"
                );
            }
        }
    }

    /// Stops the exporter: what is queued is sent, within `shutdown_timeout`.
    pub async fn shutdown(&self) {
        self.inner.closing.cancel();
        let task = self.inner.task.lock().recover().take();
        if let Some(mut task) = task
            && tokio::time::timeout(self.inner.shutdown_timeout, &mut task)
                .await
                .is_err()
        {
            task.abort();
            tracing::warn!(
                "telemetry: spans still queued at shutdown were not sent within shutdown_timeout"
            );
        }
    }
}

/// An open span: attributes are set while it is open (through a shared
/// reference: the span travels inside the permit); dropping it ends it.
pub struct ActiveSpan {
    tracer: Tracer,
    // Boxed: the span rides in every `Permit`, which should stay small.
    context: Box<SpanContext>,
    data: std::sync::Mutex<Option<Box<SpanData>>>,
}

impl std::fmt::Debug for ActiveSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActiveSpan")
            .field("context", &self.context)
            .finish()
    }
}

impl ActiveSpan {
    pub fn context(&self) -> &SpanContext {
        &self.context
    }

    pub fn set(&self, key: &'static str, value: AttrValue) {
        if let Some(d) = &mut *self.data.lock().recover() {
            d.set(key, value);
        }
    }

    /// Marks the span as failed (OTLP status ERROR) with `message`.
    pub fn fail(&self, message: impl Into<String>) {
        if let Some(d) = &mut *self.data.lock().recover() {
            d.error = Some(message.into());
        }
    }
}

impl Drop for ActiveSpan {
    fn drop(&mut self) {
        if let Some(mut d) = self.data.lock().recover().take() {
            d.end_unix_ns = now_unix_ns();
            self.tracer.submit(*d);
        }
    }
}

/// The exporter task: batches of up to `batch_size`, each sent when full or
/// `flush_interval` after its first span; at shutdown, the rest.
async fn run(
    mut rx: mpsc::Receiver<SpanData>,
    client: reqwest::Client,
    settings: Settings,
    inner: Arc<Inner>,
) {
    let mut sender = Sender {
        client,
        settings: &settings,
        inner: &inner,
        failing: false,
    };
    loop {
        let first = tokio::select! {
            s = rx.recv() => s,
            _ = inner.closing.cancelled() => None,
        };
        let Some(first) = first else { break };
        let mut batch = vec![first];
        let due = Instant::now() + settings.flush_interval;
        while batch.len() < settings.batch_size {
            tokio::select! {
                s = rx.recv() => match s {
                    Some(s) => batch.push(s),
                    None => break,
                },
                _ = tokio::time::sleep_until(due) => break,
                _ = inner.closing.cancelled() => break,
            }
        }
        sender.send(batch).await;
    }
    // Shutting down (bounded by `Tracer::shutdown`): what is queued now.
    rx.close();
    loop {
        let mut batch = Vec::new();
        while batch.len() < settings.batch_size {
            match rx.try_recv() {
                Ok(s) => batch.push(s),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            break;
        }
        sender.send(batch).await;
    }
}

struct Sender<'a> {
    client: reqwest::Client,
    settings: &'a Settings,
    inner: &'a Inner,
    /// The last batch failed: further failures are logged at debug only.
    failing: bool,
}

/// What became of one attempt.
enum Attempt {
    Done,
    Retry(Option<Duration>),
    Refused(String),
}

impl Sender<'_> {
    async fn send(&mut self, batch: Vec<SpanData>) {
        let body = export_request(&self.settings.service_name, &batch).to_string();
        let n = batch.len() as u64;
        let mut backoff = FIRST_BACKOFF;
        let mut why = String::new();
        for attempt in 1..=MAX_ATTEMPTS {
            match self.attempt(&body).await {
                Attempt::Done => {
                    self.inner.stats.exported.fetch_add(n, Ordering::Relaxed);
                    crate::audit::metrics::global().telemetry_spans("exported", n);
                    if std::mem::take(&mut self.failing) {
                        tracing::info!("telemetry: the OTLP receiver accepts spans again");
                    }
                    return;
                }
                Attempt::Refused(e) => {
                    why = e;
                    break;
                }
                Attempt::Retry(after) if attempt < MAX_ATTEMPTS => {
                    let wait = after.unwrap_or(backoff).min(MAX_BACKOFF);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    // At shutdown, no waiting: the remaining attempts are
                    // bounded by `shutdown_timeout`.
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.inner.closing.cancelled() => {}
                    }
                }
                Attempt::Retry(_) => why = format!("still failing after {MAX_ATTEMPTS} attempts"),
            }
        }
        self.inner.stats.failed.fetch_add(n, Ordering::Relaxed);
        crate::audit::metrics::global().telemetry_spans("failed", n);
        let endpoint = escape_controls(&self.settings.endpoint);
        if std::mem::replace(&mut self.failing, true) {
            tracing::debug!(%endpoint, spans = n, "telemetry: spans not exported: {why}");
        } else {
            tracing::warn!(%endpoint, spans = n, "telemetry: spans not exported: {why} (further failures are logged at debug until the receiver recovers)");
        }
    }

    async fn attempt(&self, body: &str) -> Attempt {
        let mut req = self
            .client
            .post(&self.settings.endpoint)
            .header("content-type", "application/json")
            .body(body.to_string());
        for (k, v) in &self.settings.headers {
            req = req.header(k, v);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(
                    "telemetry: export attempt failed: {}",
                    escape_controls(&e.to_string())
                );
                return Attempt::Retry(None);
            }
        };
        let status = resp.status();
        if status.is_success() {
            return Attempt::Done;
        }
        if status.as_u16() == 429 || status.is_server_error() {
            let after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            tracing::debug!(%status, "telemetry: export attempt answered, retrying");
            return Attempt::Retry(after);
        }
        Attempt::Refused(format!(
            "the receiver refused the batch with {status} (check [telemetry] endpoint and headers)"
        ))
    }
}
