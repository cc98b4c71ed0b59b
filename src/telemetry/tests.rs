//! The exporter against a real HTTP receiver run in the test (axum): batches,
//! retries on 429/5xx, the bounded queue, the shutdown flush.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

use super::*;

#[derive(Default)]
struct Receiver {
    /// Answers to give before accepting (popped from the front).
    fail_with: Mutex<Vec<StatusCode>>,
    bodies: Mutex<Vec<(Option<String>, Value)>>,
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: String) -> StatusCode {
    {
        let mut fail = r.fail_with.lock().unwrap();
        if !fail.is_empty() {
            return fail.remove(0);
        }
    }
    let key = headers
        .get("x-api-key")
        .map(|v| v.to_str().unwrap().to_string());
    r.bodies
        .lock()
        .unwrap()
        .push((key, serde_json::from_str(&body).unwrap()));
    StatusCode::OK
}

async fn receiver(fail_with: Vec<StatusCode>) -> (Arc<Receiver>, String) {
    let r = Arc::new(Receiver {
        fail_with: Mutex::new(fail_with),
        ..Default::default()
    });
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (r, url)
}

fn settings(endpoint: String) -> Settings {
    Settings {
        endpoint,
        headers: vec![("x-api-key".into(), "sekrit".into())],
        service_name: "gavel-test".into(),
        queue_size: 64,
        batch_size: 3,
        flush_interval: Duration::from_millis(50),
        timeout: Duration::from_secs(5),
        shutdown_timeout: Duration::from_secs(20),
    }
}

fn spans_in(r: &Receiver) -> Vec<Value> {
    r.bodies
        .lock()
        .unwrap()
        .iter()
        .flat_map(|(_, b)| {
            b["resourceSpans"][0]["scopeSpans"][0]["spans"]
                .as_array()
                .unwrap()
                .clone()
        })
        .collect()
}

fn open(t: &Tracer, name: &str) {
    let s = t.begin(SpanContext::for_request(None), name.into());
    s.set("gavel.server", AttrValue::Str("fs".into()));
}

#[tokio::test]
async fn spans_arrive_in_batches_after_retries() {
    let (r, url) = receiver(vec![
        StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::TOO_MANY_REQUESTS,
    ])
    .await;
    let t = Tracer::start(settings(url)).unwrap();
    for i in 0..7 {
        open(&t, &format!("span {i}"));
    }
    // Delivered by the running exporter (its backoff waits taken), not by
    // the shutdown flush, which skips them.
    let start = std::time::Instant::now();
    while t.stats().exported.load(Ordering::Relaxed) < 7 {
        assert!(start.elapsed() < Duration::from_secs(60), "not exported");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t.shutdown().await;
    let spans = spans_in(&r);
    let mut names: Vec<_> = spans
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        (0..7).map(|i| format!("span {i}")).collect::<Vec<_>>()
    );
    let bodies = r.bodies.lock().unwrap();
    assert!(bodies.iter().all(|(key, b)| {
        key.as_deref() == Some("sekrit")
            && b["resourceSpans"][0]["scopeSpans"][0]["spans"]
                .as_array()
                .unwrap()
                .len()
                <= 3
    }));
    assert_eq!(t.stats().exported.load(Ordering::Relaxed), 7);
    assert_eq!(t.stats().failed.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_refusing_receiver_loses_the_batch_without_retrying() {
    let (r, url) = receiver(vec![StatusCode::BAD_REQUEST]).await;
    let t = Tracer::start(settings(url)).unwrap();
    open(&t, "refused");
    tokio::time::sleep(Duration::from_millis(300)).await;
    open(&t, "accepted");
    t.shutdown().await;
    let names: Vec<_> = spans_in(&r).iter().map(|s| s["name"].clone()).collect();
    assert_eq!(names, vec![Value::from("accepted")]);
    assert_eq!(t.stats().failed.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_without_waiting() {
    // Nothing listens there: the exporter is stuck retrying its first batch.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    drop(listener);
    let mut s = settings(url);
    s.queue_size = 4;
    s.batch_size = 1;
    s.shutdown_timeout = Duration::from_millis(200);
    let t = Tracer::start(s).unwrap();
    for i in 0..100 {
        open(&t, &format!("{i}"));
    }
    let dropped = t.stats().dropped.load(Ordering::Relaxed);
    assert!(dropped >= 100 - 4 - 1, "dropped {dropped}");
    t.shutdown().await;
    // After shutdown, spans are dropped (counted), not queued.
    let before = t.stats().dropped.load(Ordering::Relaxed);
    open(&t, "late");
    assert_eq!(t.stats().dropped.load(Ordering::Relaxed), before + 1);
}

#[tokio::test]
async fn an_unsampled_span_is_not_exported() {
    let (r, url) = receiver(vec![]).await;
    let t = Tracer::start(settings(url)).unwrap();
    let meta = serde_json::json!({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"});
    drop(t.begin(
        SpanContext::for_request(meta.as_object()),
        "unsampled".into(),
    ));
    open(&t, "sampled");
    t.shutdown().await;
    let names: Vec<_> = spans_in(&r).iter().map(|s| s["name"].clone()).collect();
    assert_eq!(names, vec![Value::from("sampled")]);
}

#[test]
fn header_values_are_not_printed() {
    let s = settings("http://x/v1/traces".into());
    let printed = format!("{s:?}");
    assert!(!printed.contains("sekrit"), "{printed}");
    assert!(printed.contains("x-api-key: ***"));
}
