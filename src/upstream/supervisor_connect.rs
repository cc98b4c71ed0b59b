//! Opening one connection to an upstream in one era, over its transport: a
//! stdio child started and spoken to through gavel's framing, or a
//! streamable-HTTP client with bounded SSE resumption — each within
//! `startup_timeout`, a child that fails stopped before the error returns.
//! Apart from the supervisor's loop (which era to try next, when to
//! restart) because this is the transport half: what it takes to get one
//! connection up, and why it failed when it did not.

use std::sync::Arc;
use std::time::Duration;

use rmcp::service::{ClientInitializeError, ClientServiceExt, RoleClient};

use super::super::bounded::Bounded;
use super::super::era::Spoken;
use super::super::{Upstream, child};
use super::{Running, SupervisorDeps};
use crate::transport::LineTransport;
use crate::transport::line::LinkLabel;

/// Why one opening of a connection failed: the message for the log and
/// status, and rmcp's error when the upstream answered (read for its era).
pub(super) struct OpenFailure {
    pub(super) message: String,
    pub(super) init: Option<ClientInitializeError>,
}

impl OpenFailure {
    pub(super) fn plain(message: String) -> Self {
        Self {
            message,
            init: None,
        }
    }
}

/// A stdio upstream's process group, stopped when its life ends.
pub(super) type Process = (tokio::process::Child, child::ProcessGroup);

/// Starts the child and opens the connection in `era` within
/// `startup_timeout`; a child that does not answer, or refuses, is stopped
/// before the error returns.
pub(super) async fn connect_stdio(
    up: &Arc<Upstream>,
    deps: &SupervisorDeps,
    handler: Bounded,
    progress: &Arc<super::super::ProgressMap>,
    era: Spoken,
) -> Result<(Running, Option<Process>), OpenFailure> {
    let timeout = up.cfg.startup_timeout;
    let spawned = child::spawn(
        &up.cfg,
        deps.base_dir.as_deref(),
        &up.stderr_tail,
        &deps.limits,
    )
    .map_err(|e| OpenFailure::plain(e.to_string()))?;
    let label = LinkLabel {
        name: format!("upstream {}", up.name).into(),
        answer_garbage: false,
        refuse_modern_ping: false,
    };
    let ledger = progress.clone();
    let log_ledger = progress.clone();
    let transport = LineTransport::<RoleClient, _, _>::new(
        spawned.stdout,
        spawned.stdin,
        deps.limits.max_message_bytes,
        label,
    )
    .with_progress_observer(Arc::new(move |token| ledger.read(token)))
    .with_log_observer(Arc::new(move || log_ledger.read_log()));
    let proc = Some((spawned.child, spawned.group));
    let opening = opening(era);
    match tokio::time::timeout(
        timeout,
        handler.serve_with_lifecycle(transport, era.lifecycle()),
    )
    .await
    {
        Ok(Ok(r)) => Ok((r, proc)),
        Ok(Err(e)) => {
            stop_process(proc).await;
            Err(OpenFailure {
                message: format!("MCP {opening} failed: {e}"),
                init: Some(e),
            })
        }
        Err(_) => {
            stop_process(proc).await;
            Err(OpenFailure::plain(format!(
                "no answer to {opening} within {timeout:?} (startup_timeout)"
            )))
        }
    }
}

/// The request that opens a connection in `era`, for messages.
pub(super) fn opening(era: Spoken) -> &'static str {
    match era {
        Spoken::Legacy => "initialize",
        Spoken::Modern => "server/discover",
    }
}

/// Opens an HTTP upstream's connection in `era` within `startup_timeout`.
pub(super) async fn connect_http(
    up: &Arc<Upstream>,
    deps: &SupervisorDeps,
    handler: Bounded,
    url: &str,
    headers: &std::collections::BTreeMap<String, String>,
    era: Spoken,
) -> Result<Running, OpenFailure> {
    let timeout = up.cfg.startup_timeout;
    let cfg =
        http_config(url, headers, deps.limits.max_message_bytes).map_err(OpenFailure::plain)?;
    let opening = opening(era);
    // A modern connection reads its answers with gavel's client (JSON
    // lines too: `modern_http`); a legacy one keeps rmcp's (sessions).
    let opened = match era {
        Spoken::Modern => {
            let transport = rmcp::transport::StreamableHttpClientTransport::with_client(
                crate::upstream::modern_http::ModernHttp::new(),
                cfg,
            );
            tokio::time::timeout(
                timeout,
                handler.serve_with_lifecycle(transport, era.lifecycle()),
            )
            .await
        }
        Spoken::Legacy => {
            let transport = rmcp::transport::StreamableHttpClientTransport::from_config(cfg);
            tokio::time::timeout(
                timeout,
                handler.serve_with_lifecycle(transport, era.lifecycle()),
            )
            .await
        }
    };
    match opened {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(OpenFailure {
            message: format!("MCP {opening} with {url} failed: {e}"),
            init: Some(e),
        }),
        Err(_) => Err(OpenFailure::plain(format!(
            "{url} did not answer {opening} within {timeout:?}"
        ))),
    }
}

fn http_config(
    url: &str,
    headers: &std::collections::BTreeMap<String, String>,
    max_bytes: usize,
) -> Result<rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig, String> {
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    let mut map = std::collections::HashMap::new();
    for (k, v) in headers {
        let name =
            http::HeaderName::try_from(k.as_str()).map_err(|e| format!("header {k:?}: {e}"))?;
        let value =
            http::HeaderValue::try_from(v.as_str()).map_err(|e| format!("header {k:?}: {e}"))?;
        map.insert(name, value);
    }
    let mut cfg = StreamableHttpClientTransportConfig::with_uri(url.to_string())
        .custom_headers(map)
        .max_sse_event_size(max_bytes);
    cfg.retry_config = Arc::new(BoundedReconnect);
    Ok(cfg)
}

/// How often a broken SSE stream from an HTTP upstream is resumed before the
/// stream is given up. rmcp's default retries forever with unbounded
/// doubling, so a call whose upstream died mid-answer waited out its whole
/// `call_timeout` (300 s by default) while a stdio upstream's crash failed it
/// at once. Given up, rmcp fails the calls on that stream as closed, which
/// gavel reports exactly like a stdio crash. A stream that reconnects resets
/// the count, so servers that close streams on purpose (SEP-1699) still work.
#[derive(Debug)]
struct BoundedReconnect;

/// Reconnect attempts in a row before the stream is given up: 0.25 s, 0.5 s,
/// 1 s, 2 s apart, so a call learns its upstream is gone within ~4 s.
const RECONNECT_TRIES: usize = 4;
const RECONNECT_FIRST_DELAY: Duration = Duration::from_millis(250);

impl rmcp::transport::common::client_side_sse::SseRetryPolicy for BoundedReconnect {
    fn retry(&self, tries: usize) -> Option<Duration> {
        (tries < RECONNECT_TRIES).then(|| RECONNECT_FIRST_DELAY * (1 << tries.min(8)) as u32)
    }
}

pub(super) async fn stop_process(proc: Option<Process>) -> Option<String> {
    let (child, group) = proc?;
    Some(child::describe_exit(child::terminate(child, group).await))
}
