//! One write for a call's answer instead of two.
//!
//! rmcp answers a POSTed request with an SSE stream that starts with a
//! priming event (an event id and empty data, so that a client whose
//! connection drops can resume the stream). That event is ready at once, so
//! hyper writes the response head and it straight away, and the answer
//! follows in a second write when the upstream has answered: two TCP
//! segments and two wake-ups of the client for every call, and — without
//! `TCP_NODELAY` — the second write waits for the client's delayed ACK.
//!
//! [`hold_start`] holds the head and the priming event until the next event
//! is ready (the answer, or a notification before it) or [`HOLD`] has
//! passed, and hands them to hyper together, with the end of the stream
//! when it is already there: a call answered within `HOLD` is one write. A
//! longer one is primed at `HOLD`, as before. The bytes on the wire are the
//! same; only the first write comes later. GET streams (the session's
//! standing stream) and non-SSE answers are passed through untouched.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;
use futures::{FutureExt, StreamExt};

/// How long the priming event may wait for the answer. A client that loses
/// its connection within it cannot resume that stream (it has no event id
/// yet); it sees the call fail, as for a connection lost before the answer.
pub const HOLD: Duration = Duration::from_millis(25);

/// The middleware around `/mcp`.
pub(super) async fn coalesce(req: Request, next: Next) -> Response {
    let post = req.method() == Method::POST;
    let resp = next.run(req).await;
    if !post || !is_event_stream(&resp) {
        return resp;
    }
    hold_start(resp, HOLD).await
}

fn is_event_stream(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// `resp` once its first two chunks are ready (or its stream has ended, or
/// `hold` has passed), with them, and the end of the stream if that is
/// ready too, at the front of its body. Nothing is dropped or reordered.
pub(super) async fn hold_start(resp: Response, hold: Duration) -> Response {
    let (parts, body) = resp.into_parts();
    let mut data = body.into_data_stream().fuse();
    let mut ready = Vec::with_capacity(2);
    let mut ended = false;
    let deadline = tokio::time::sleep(hold);
    tokio::pin!(deadline);
    while ready.len() < 2 {
        tokio::select! {
            biased;
            chunk = data.next() => match chunk {
                Some(c) => ready.push(c),
                None => {
                    ended = true;
                    break;
                }
            },
            _ = &mut deadline => break,
        }
    }
    // A call's stream ends right after its answer: when the end is already
    // there, hyper writes the last chunk in the same write.
    if !ended && ready.len() == 2 {
        match data.next().now_or_never() {
            Some(Some(c)) => ready.push(c),
            Some(None) => ended = true,
            None => {}
        }
    }
    let front = futures::stream::iter(ready);
    let body = if ended {
        Body::from_stream(front)
    } else {
        Body::from_stream(front.chain(data))
    };
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Bytes;
    use tokio::sync::mpsc;

    const PRIMING: &str = "id: 0/0\nretry: 3000\ndata:\n\n";
    const ANSWER: &str = "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n";

    /// An SSE response whose events the test sends when it wants.
    fn sse() -> (mpsc::UnboundedSender<&'static str>, Response) {
        let (tx, rx) = mpsc::unbounded_channel::<&'static str>();
        let stream = events(rx).map(|s| Ok::<_, std::io::Error>(Bytes::from(s)));
        let resp = Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .body(Body::from_stream(stream))
            .unwrap();
        (tx, resp)
    }

    fn events(
        mut rx: mpsc::UnboundedReceiver<&'static str>,
    ) -> impl futures::Stream<Item = &'static str> {
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    /// The body's chunks that are ready now, and whether its end is too.
    fn ready_now(body: &mut axum::body::BodyDataStream) -> (Vec<String>, bool) {
        let mut got = Vec::new();
        loop {
            match body.next().now_or_never() {
                Some(Some(c)) => got.push(String::from_utf8(c.unwrap().to_vec()).unwrap()),
                Some(None) => return (got, true),
                None => return (got, false),
            }
        }
    }

    /// A call answered within the hold: the response is handed over only
    /// with the answer, the priming event, the answer and the end all ready
    /// at once (one write), in their order.
    #[tokio::test]
    async fn the_priming_event_waits_for_the_answer() {
        let (tx, resp) = sse();
        tx.send(PRIMING).unwrap();
        let mut held = Box::pin(hold_start(resp, Duration::from_secs(3600)));
        for _ in 0..10 {
            tokio::task::yield_now().await;
            assert!(
                (&mut held).now_or_never().is_none(),
                "handed over before the answer"
            );
        }
        tx.send(ANSWER).unwrap();
        drop(tx);
        let resp = held.await;
        let mut body = resp.into_body().into_data_stream();
        assert_eq!(
            ready_now(&mut body),
            (vec![PRIMING.to_string(), ANSWER.to_string()], true)
        );
    }

    /// A call slower than the hold: primed when the hold is over, as
    /// without it; the answer follows when it comes.
    #[tokio::test]
    async fn a_slow_answer_is_primed_when_the_hold_is_over() {
        let (tx, resp) = sse();
        tx.send(PRIMING).unwrap();
        let resp = hold_start(resp, Duration::ZERO).await;
        let mut body = resp.into_body().into_data_stream();
        assert_eq!(ready_now(&mut body), (vec![PRIMING.to_string()], false));
        tx.send(ANSWER).unwrap();
        drop(tx);
        let answer = body.next().await.unwrap().unwrap();
        assert_eq!(answer, Bytes::from(ANSWER));
        assert!(body.next().await.is_none());
    }
}
