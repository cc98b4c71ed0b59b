//! The modern upstream's answer as bytes arrive: one message, JSON lines,
//! bounded SSE.

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use rmcp::transport::streamable_http_client::StreamableHttpPostResponse;
use serde_json::{Value, json};

use super::read::{Values, bounded_sse, json_answer};

/// A body of `chunks`, then its end — or, with `open`, never an end (a
/// listen that stays open).
fn body(chunks: &[&str], open: bool) -> super::read::Body {
    let items: Vec<reqwest::Result<Bytes>> = chunks
        .iter()
        .map(|c| Ok(Bytes::copy_from_slice(c.as_bytes())))
        .collect();
    let s = stream::iter(items);
    if open {
        s.chain(stream::pending()).boxed()
    } else {
        s.boxed()
    }
}

const RESULT: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#;
const PROGRESS: &str = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1}}"#;

fn data(e: &sse_stream::Sse) -> Value {
    serde_json::from_str(e.data.as_deref().unwrap()).unwrap()
}

#[tokio::test]
async fn one_message_whose_length_is_known_is_one_message() {
    let n = RESULT.len() as u64;
    let r = json_answer(
        body(&[&RESULT[..10], &RESULT[10..]], false),
        Some(n),
        1 << 20,
    )
    .await
    .unwrap();
    assert!(matches!(r, StreamableHttpPostResponse::Json(..)), "{r:?}");
    // Chunked (no length): still one message once the body ended.
    let r = json_answer(body(&[RESULT, "\n"], false), None, 1 << 20)
        .await
        .unwrap();
    assert!(
        matches!(
            r,
            StreamableHttpPostResponse::Json(..) | StreamableHttpPostResponse::Sse(..)
        ),
        "{r:?}"
    );
}

#[tokio::test]
async fn json_lines_whose_length_is_known_are_still_cut() {
    let lines = format!("{PROGRESS}\n{RESULT}\n");
    let n = lines.len() as u64;
    let r = json_answer(body(&[&lines], false), Some(n), 1 << 20)
        .await
        .unwrap();
    let StreamableHttpPostResponse::Sse(events, _) = r else {
        panic!("a stream: {r:?}");
    };
    let got: Vec<_> = events.collect().await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(data(got[1].as_ref().unwrap())["id"], 1);
    // Not JSON at all, with a length: an error, as without one.
    assert!(
        json_answer(body(&["<html>"], false), Some(6), 1 << 20)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn json_lines_become_events_as_they_come() {
    // The second line arrives in two pieces; the body stays open after.
    let lines = format!("{PROGRESS}\n{RESULT}\n");
    let (a, b) = lines.split_at(PROGRESS.len() + 10);
    let r = json_answer(body(&[a, b], true), None, 1 << 20)
        .await
        .unwrap();
    let StreamableHttpPostResponse::Sse(mut events, _) = r else {
        panic!("a stream: {r:?}");
    };
    let first = events.next().await.unwrap().unwrap();
    assert_eq!(data(&first)["method"], "notifications/progress");
    let second = events.next().await.unwrap().unwrap();
    assert_eq!(data(&second)["id"], 1);
}

#[tokio::test]
async fn the_first_message_of_an_open_body_is_not_held_back() {
    // A listen: the acknowledgement, then nothing for as long as it lasts.
    let ack =
        r#"{"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{}}"#;
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        json_answer(body(&[ack, "\n"], true), None, 1 << 20),
    )
    .await
    .expect("answered without the body ending")
    .unwrap();
    let StreamableHttpPostResponse::Sse(mut events, _) = r else {
        panic!("a stream: {r:?}");
    };
    let e = events.next().await.unwrap().unwrap();
    assert_eq!(
        data(&e)["method"],
        "notifications/subscriptions/acknowledged"
    );
}

#[tokio::test]
async fn a_message_over_the_bound_or_not_json_is_an_error() {
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"result":{{"x":"{}"}}}}"#,
        "a".repeat(200)
    );
    assert!(json_answer(body(&[&big], false), None, 100).await.is_err());
    assert!(
        json_answer(body(&["<html>"], false), None, 100)
            .await
            .is_err()
    );
    assert!(
        json_answer(body(&[r#"{"jsonrpc":"#], false), None, 100)
            .await
            .is_err()
    );
    assert!(
        json_answer(body(&["  \n"], false), None, 100)
            .await
            .is_err()
    );
    // In a stream, the bound is per message: many small ones pass.
    let many: String = (0..50).map(|_| format!("{PROGRESS}\n")).collect();
    let r = json_answer(body(&[&many], true), None, PROGRESS.len() + 1)
        .await
        .unwrap();
    let StreamableHttpPostResponse::Sse(events, _) = r else {
        panic!("a stream");
    };
    let got: Vec<_> = events.take(50).collect().await;
    assert!(got.iter().all(Result::is_ok));
}

#[test]
fn a_large_value_is_not_rescanned_on_every_chunk() {
    // Pretty-printed (newlines inside) or not, the value is found whole.
    let pretty = serde_json::to_string_pretty(&json!({"a": [1, 2, 3], "b": "x"})).unwrap();
    let mut v = Values::new(1 << 20);
    for (i, chunk) in pretty.as_bytes().chunks(3).enumerate() {
        v.push(chunk);
        let fresh = chunk.contains(&b'\n');
        let got = v.next_value(fresh, false).unwrap();
        if i + 1 < pretty.len().div_ceil(3) {
            assert!(got.is_none(), "not whole yet at chunk {i}");
        } else {
            // The last chunk ends the value; it may be found now or at the end.
            if got.is_none() {
                assert!(v.next_value(false, true).unwrap().is_some());
            }
        }
    }
}

#[tokio::test]
async fn an_sse_event_over_the_bound_fails_before_it_is_parsed() {
    let ok = "data: {\"a\":1}\n\n";
    let events: Vec<_> = bounded_sse(body(&[ok, ok], false), 64).collect().await;
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(Result::is_ok));
    let big = format!("data: {}\n\n", "x".repeat(100));
    let events: Vec<_> = bounded_sse(body(&[ok, &big], false), 64).collect().await;
    assert!(events[0].is_ok());
    assert!(events.iter().any(Result::is_err), "{events:?}");
}

#[test]
fn a_listen_tag_written_as_a_string_is_the_listens_numeric_id() {
    let frame = r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed","params":{"_meta":{"io.modelcontextprotocol/subscriptionId":"7"}}}"#;
    let fixed: Value = serde_json::from_str(&super::retag(frame, 7, "7").unwrap()).unwrap();
    assert_eq!(
        fixed["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        7
    );
    // Another listen's tag, a number already, or no tag: untouched.
    assert!(super::retag(frame, 8, "8").is_none());
    let numeric = frame.replace("\"7\"", "7");
    assert!(super::retag(&numeric, 7, "7").is_none());
    assert!(super::retag(PROGRESS, 7, "7").is_none());
}

fn response(status: u16, ct: &str, body: &str) -> reqwest::Response {
    let r = http::Response::builder()
        .status(status)
        .header("content-type", ct)
        .body(body.to_string())
        .unwrap();
    reqwest::Response::from(r)
}

#[tokio::test]
async fn a_refusal_passes_its_json_rpc_error_on_or_says_its_status() {
    let limits = rmcp::transport::streamable_http_client::StreamableHttpResponseLimits::default();
    let err = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"bad _meta"}}"#;
    let r = super::failure(
        response(400, "application/json", err),
        http::StatusCode::BAD_REQUEST,
        super::Media::Json,
        &limits,
    )
    .await
    .unwrap();
    assert!(matches!(r, StreamableHttpPostResponse::Json(..)), "{r:?}");
    let e = super::failure(
        response(502, "text/html", "<h1>bad\u{1b}[31m gateway</h1>"),
        http::StatusCode::BAD_GATEWAY,
        super::Media::Other(Some("text/html".into())),
        &limits,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("HTTP 502") && e.contains("bad") && !e.contains('\u{1b}'),
        "{e}"
    );
}
