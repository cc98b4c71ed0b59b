//! `gavel serve`'s graceful shutdown. At SIGTERM/SIGINT the listener closes
//! at once (a new connection is refused); requests already in flight — a
//! `tools/call` whose answer is still streaming — run to their end, at most
//! `--drain-timeout`; only then is rmcp's cancellation token cancelled
//! (which ends every session's serve loop and SSE stream). Cancelling rmcp's
//! token first would cut those answers off, hence two tokens ([`Stops`]) and
//! a count of the requests in flight ([`InFlight`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

/// After the drain, how long connections get to close before `serve_http`
/// returns anyway (a client that stops reading cannot hold the exit).
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The two steps of a stop. `stop`: the signal arrived, accept nothing
/// new. `close`: the drain is over, end every session (rmcp's token).
#[derive(Clone)]
pub(super) struct Stops {
    pub stop: CancellationToken,
    pub close: CancellationToken,
}

/// Requests whose response is still being produced or sent (a POST's SSE
/// answer ends when its JSON-RPC response has been written). Standalone GET
/// streams are not counted: they last as long as the session.
#[derive(Clone, Default)]
pub(super) struct InFlight(Arc<InFlightInner>);

#[derive(Default)]
struct InFlightInner {
    n: AtomicUsize,
    idle: tokio::sync::Notify,
}

/// Held by a response body; dropping it (body finished, or the connection
/// went away) ends the request.
struct InFlightGuard(InFlight);

impl InFlight {
    fn enter(&self) -> InFlightGuard {
        self.0.n.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self.clone())
    }

    fn count(&self) -> usize {
        self.0.n.load(Ordering::SeqCst)
    }

    /// Resolves when no request is in flight.
    async fn idle(&self) {
        loop {
            let notified = self.0.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.0.n.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.0.idle.notify_waiters();
        }
    }
}

/// Counts a POST from its arrival until its response body is done.
pub(super) async fn count_in_flight(in_flight: InFlight, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let guard = in_flight.enter();
    let (parts, body) = next.run(req).await.into_parts();
    // A body of known length (JSON, 202, an error) is already complete;
    // only a stream (the SSE answer of a request) is still in flight.
    if axum::body::HttpBody::size_hint(&body).exact().is_some() {
        return Response::from_parts(parts, body);
    }
    let body = body.into_data_stream().map(move |chunk| {
        let _held = &guard;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(body))
}

/// Waits for the signal, then: stop accepting, wait for the requests in
/// flight (at most `timeout`), close every session.
pub(super) async fn drain_on_signal(stops: Stops, in_flight: InFlight, timeout: Duration) {
    crate::front::lifecycle::shutdown_signal().await;
    stops.stop.cancel();
    tracing::info!(
        in_flight = in_flight.count(),
        "signal received; not accepting connections, finishing in-flight requests (at most {timeout:?})"
    );
    if tokio::time::timeout(timeout, in_flight.idle())
        .await
        .is_err()
    {
        tracing::warn!(
            in_flight = in_flight.count(),
            "requests still in flight after the drain timeout ({timeout:?}); closing every session"
        );
    }
    stops.close.cancel();
}

/// Resolves [`CLOSE_GRACE`] after the sessions are closed: when the
/// accept loop stops waiting for connections to finish.
pub(super) async fn closed(close: CancellationToken) {
    close.cancelled().await;
    tokio::time::sleep(CLOSE_GRACE).await;
}
