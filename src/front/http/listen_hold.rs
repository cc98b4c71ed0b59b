//! Over HTTP, a 2026-07-28 listen's acknowledgement waits for the upstream
//! subscriptions it names: subscribe, then acknowledge, then deliver
//! (reference §1.6), as on stdio (`session::listen_prepare`).
//!
//! rmcp's HTTP service takes a `ServerHandler`, which decides the
//! acknowledged subset synchronously and without the request, and rmcp
//! writes the acknowledgement before it runs the handler's `listen` — so
//! on this transport the order is restored on the wire instead: the
//! handler acknowledges every URI it may yet follow (within bounds), its
//! `listen` then starts the upstreams if need be, decides the URIs (on the
//! blocking pool) and subscribes to them, and reports the URIs it follows
//! ([`Hold`]); this layer holds the listen's SSE stream from its
//! acknowledgement on until that report, writes the acknowledgement with
//! exactly those URIs, then lets the rest through. Nothing the listen
//! delivers can overtake its acknowledgement: it is behind it in the same
//! stream. The wait is bounded by the listen's own (startup timeouts,
//! `SUBSCRIBE_WAIT`); a listen that ends before reporting gets its
//! acknowledgement with no URI.

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::sync::Recover;

/// Where a listen's handler reports the URIs it follows (once).
pub(crate) type Hold = Arc<Mutex<Option<oneshot::Sender<Vec<String>>>>>;

/// Marks a request (`body::read_body`) as a 2026-07-28
/// `subscriptions/listen`.
#[derive(Clone, Copy, Debug)]
pub(super) struct IsListen;

tokio::task_local! {
    static HOLD: Hold;
}

/// The hold of the listen whose handler rmcp is making on this task (its
/// factory), if the request is one.
pub(crate) fn current() -> Option<Hold> {
    HOLD.try_with(Clone::clone).ok()
}

/// Whether a 2026-07-28 request body is a `subscriptions/listen` request
/// (a cheap look first: most bodies are not).
pub(super) fn is_listen(body: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"subscriptions/listen";
    if !body.windows(NEEDLE.len()).any(|w| w == NEEDLE) {
        return false;
    }
    serde_json::from_slice::<Value>(body).is_ok_and(|m| {
        m.get("method").and_then(Value::as_str) == Some("subscriptions/listen")
            && m.get("id").is_some()
    })
}

/// The middleware (innermost, inside `modern::with_principal`): a listen's
/// answer stream is held at its acknowledgement until its handler reports.
pub(super) async fn hold_ack(req: Request, next: Next) -> Response {
    if req.extensions().get::<IsListen>().is_none() {
        return next.run(req).await;
    }
    let (tx, rx) = oneshot::channel();
    let hold: Hold = Arc::new(Mutex::new(Some(tx)));
    let resp = HOLD.scope(hold, next.run(req)).await;
    let sse = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !sse {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let (out, chunks) = mpsc::channel::<Bytes>(16);
    tokio::spawn(relay(body, rx, out));
    let stream = futures::stream::unfold(chunks, |mut chunks| async move {
        chunks
            .recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), chunks))
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

/// Passes `body` on to `out`, holding it from the acknowledgement on until
/// `followed` reports; stops when either side is gone (the client closing
/// drops `body`, which ends the listen).
async fn relay(body: Body, followed: oneshot::Receiver<Vec<String>>, out: mpsc::Sender<Bytes>) {
    let mut body = body.into_data_stream();
    let mut pending: Vec<u8> = Vec::new();
    let mut followed = Some(followed);
    loop {
        let chunk = tokio::select! {
            c = body.next() => c,
            _ = out.closed() => return,
        };
        let Some(Ok(chunk)) = chunk else {
            if !pending.is_empty() {
                let _ = out.send(Bytes::from(pending)).await;
            }
            return;
        };
        let Some(rx) = followed.take() else {
            if out.send(chunk).await.is_err() {
                return;
            }
            continue;
        };
        pending.extend_from_slice(&chunk);
        match find_ack(&pending) {
            Some((start, end)) => {
                let urls = tokio::select! {
                    r = rx => r.unwrap_or_default(),
                    _ = out.closed() => return,
                };
                let ack = rewrite(&pending[start..end], &urls);
                let mut held = pending[..start].to_vec();
                held.extend_from_slice(&ack);
                held.extend_from_slice(&pending[end..]);
                pending = Vec::new();
                if out.send(Bytes::from(held)).await.is_err() {
                    return;
                }
            }
            None => {
                followed = Some(rx);
                // Whole events before the acknowledgement go on at once.
                if let Some(cut) = last_event_end(&pending) {
                    let rest = pending.split_off(cut);
                    let whole = std::mem::replace(&mut pending, rest);
                    if out.send(Bytes::from(whole)).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// The end of the last whole SSE event in `buf` (rmcp ends each with a
/// blank line).
fn last_event_end(buf: &[u8]) -> Option<usize> {
    buf.windows(2).rposition(|w| w == b"\n\n").map(|i| i + 2)
}

/// The byte range of the first whole event in `buf` that is the
/// acknowledgement.
fn find_ack(buf: &[u8]) -> Option<(usize, usize)> {
    let mut start = 0;
    while let Some(len) = buf[start..].windows(2).position(|w| w == b"\n\n") {
        let end = start + len + 2;
        if event_json(&buf[start..end]).is_some_and(|m| {
            m.get("method").and_then(Value::as_str)
                == Some("notifications/subscriptions/acknowledged")
        }) {
            return Some((start, end));
        }
        start = end;
    }
    None
}

/// The JSON of an event's `data:` line.
fn event_json(event: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(event).ok()?;
    let data = text.lines().find_map(|l| l.strip_prefix("data:"))?;
    serde_json::from_str(data.trim()).ok()
}

/// The acknowledgement event with its `resourceSubscriptions` cut down to
/// `followed` (left out when none is); its other lines unchanged.
fn rewrite(event: &[u8], followed: &[String]) -> Vec<u8> {
    let Some(mut ack) = event_json(event) else {
        return event.to_vec();
    };
    if let Some(n) = ack
        .pointer_mut("/params/notifications")
        .and_then(Value::as_object_mut)
        && let Some(uris) = n.get_mut("resourceSubscriptions")
    {
        let kept: Vec<Value> = uris
            .as_array()
            .into_iter()
            .flatten()
            .filter(|u| u.as_str().is_some_and(|u| followed.iter().any(|f| f == u)))
            .cloned()
            .collect();
        if kept.is_empty() {
            n.remove("resourceSubscriptions");
        } else {
            *uris = Value::Array(kept);
        }
    }
    let text = String::from_utf8_lossy(event);
    let mut out = String::with_capacity(event.len());
    for line in text.split_inclusive('\n') {
        if line.starts_with("data:") {
            out.push_str("data: ");
            out.push_str(&ack.to_string());
            out.push('\n');
        } else {
            out.push_str(line);
        }
    }
    out.into_bytes()
}

/// The listen's handler reports the URIs it follows: the acknowledgement
/// held for it goes out with them.
pub(crate) fn report(hold: &Hold, followed: Vec<String>) {
    if let Some(tx) = hold.lock().recover().take() {
        let _ = tx.send(followed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(m: Value, id: &str) -> String {
        format!("data: {m}\nid: {id}\n\n")
    }

    fn ack(uris: &[&str]) -> Value {
        json!({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
            "params": {"notifications": {"toolsListChanged": true, "resourceSubscriptions": uris},
                "_meta": {"io.modelcontextprotocol/subscriptionId": 7}}})
    }

    #[test]
    fn a_listen_request_is_recognised_and_others_are_not() {
        assert!(is_listen(
            br#"{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{}}"#
        ));
        assert!(!is_listen(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"subscriptions/listen"}}"#
        ));
        assert!(!is_listen(
            br#"{"jsonrpc":"2.0","method":"subscriptions/listen"}"#
        ));
    }

    #[test]
    fn the_acknowledgement_is_found_after_the_priming_event_and_cut_to_what_is_followed() {
        let buf = format!(
            "data: \nid: 0\n\n{}",
            event(ack(&["r://a", "r://b", "r://a"]), "1")
        );
        let (start, end) = find_ack(buf.as_bytes()).unwrap();
        assert_eq!(start, "data: \nid: 0\n\n".len());
        assert_eq!(end, buf.len());
        let out = rewrite(&buf.as_bytes()[start..end], &["r://a".into()]);
        let out = String::from_utf8(out).unwrap();
        assert!(out.ends_with("\nid: 1\n\n"), "{out}");
        let m = event_json(out.as_bytes()).unwrap();
        assert_eq!(
            m["params"]["notifications"],
            json!({"toolsListChanged": true, "resourceSubscriptions": ["r://a", "r://a"]})
        );
        assert_eq!(
            m["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
            7
        );
        // None followed: the field is left out, not an empty list.
        let m = event_json(&rewrite(&buf.as_bytes()[start..end], &[])).unwrap();
        assert_eq!(
            m["params"]["notifications"],
            json!({"toolsListChanged": true})
        );
    }

    #[test]
    fn a_partial_event_is_not_taken_for_the_acknowledgement() {
        let whole = event(ack(&["r://a"]), "1");
        assert!(find_ack(&whole.as_bytes()[..whole.len() - 1]).is_none());
        assert_eq!(last_event_end(b"data: \n\ndata: {"), Some(8));
        assert_eq!(last_event_end(b"data: {"), None);
    }

    #[tokio::test]
    async fn the_stream_is_held_at_the_acknowledgement_until_the_report_and_nothing_overtakes_it() {
        let (tx, body_rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
        let body = Body::from_stream(futures::stream::unfold(body_rx, |mut r| async move {
            r.recv().await.map(|c| (c, r))
        }));
        let (report_tx, report_rx) = oneshot::channel();
        let (out, mut got) = mpsc::channel(8);
        let relay = tokio::spawn(relay(body, report_rx, out));
        tx.send(Ok(Bytes::from("data: \nid: 0\n\n"))).await.unwrap();
        assert_eq!(got.recv().await.unwrap(), Bytes::from("data: \nid: 0\n\n"));
        tx.send(Ok(Bytes::from(event(ack(&["r://a", "r://b"]), "1"))))
            .await
            .unwrap();
        let update = event(json!({"method": "notifications/resources/updated"}), "2");
        tx.send(Ok(Bytes::from(update.clone()))).await.unwrap();
        // Held: nothing is passed on before the report.
        tokio::task::yield_now().await;
        assert!(got.try_recv().is_err());
        report_tx.send(vec!["r://b".into()]).unwrap();
        let first = got.recv().await.unwrap();
        let m = event_json(&first).unwrap();
        assert_eq!(
            m["params"]["notifications"]["resourceSubscriptions"],
            json!(["r://b"])
        );
        assert_eq!(got.recv().await.unwrap(), Bytes::from(update));
        drop(tx);
        relay.await.unwrap();
        assert!(got.recv().await.is_none());
    }
}
