//! End to end: OpenTelemetry spans (`[telemetry]`) through the real binary,
//! exported to a real OTLP/HTTP receiver the test runs
//! (`tests/otlp/receiver.py`), with the fixture upstream recording the
//! `_meta` it received: a host's `traceparent` makes gavel's span a child in
//! the host's trace and the upstream's request a child of gavel's span; a
//! request without a valid one starts a new trace; the decision is on the
//! span and the span's ids are in the decision record; a receiver that
//! never answers neither fails nor holds calls.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::common;
use common::raw::RawHost;
use common::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

/// The receiver, started on a free port; killed when dropped.
struct Receiver {
    child: std::process::Child,
    out: PathBuf,
    port: u16,
}

impl Receiver {
    fn start(s: &Setup, hang: bool) -> Receiver {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/otlp/receiver.py");
        let (out, port_file) = (s.path("otlp.jsonl"), s.path("otlp.port"));
        let mut cmd = std::process::Command::new("python3");
        cmd.arg(script).arg(&out).arg(&port_file);
        if hang {
            cmd.arg("--hang");
        }
        let child = cmd.spawn().expect("python3 runs the OTLP receiver");
        let start = std::time::Instant::now();
        while !port_file.exists() {
            assert!(
                start.elapsed() < PATIENCE,
                "the OTLP receiver did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let port = std::fs::read_to_string(&port_file)
            .unwrap()
            .parse()
            .unwrap();
        Receiver { child, out, port }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1/traces", self.port)
    }

    /// Every export request received (with its content type and path).
    fn requests(&self) -> Vec<Value> {
        records(&self.out)
    }

    fn spans(&self) -> Vec<Value> {
        self.requests()
            .iter()
            .flat_map(|r| {
                r["body"]["resourceSpans"][0]["scopeSpans"][0]["spans"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fixture `fx` (its `add` denied by a static rule), the decision log,
/// and `[telemetry]` toward `rx` plus `extra` keys. Written once the
/// receiver runs: its port is known only then.
fn configure(s: &Setup, rx: &Receiver, extra: &str) {
    s.write_config(&format!(
        "{}{}[servers.fx.tools]\ndeny = [\"add\"]\n\n[telemetry]\nendpoint = {:?}\nheaders = {{ x-api-key = \"k-1\" }}\nservice_name = \"gavel-e2e\"\nflush_interval = \"100ms\"\n{extra}",
        s.decision_log_table(),
        fixture_server("fx", &[], &s.record("fx")),
        rx.endpoint(),
    ));
}

fn call_line(id: u64, tool: &str, args: Value, meta: Option<Value>) -> String {
    let mut params = json!({"name": tool, "arguments": args});
    if let Some(m) = meta {
        params["_meta"] = m;
    }
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}).to_string()
}

fn attr<'a>(span: &'a Value, key: &str) -> &'a Value {
    span["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
        .unwrap_or(&Value::Null)
}

/// The span named by `decision_id`.
fn span_of<'a>(spans: &'a [Value], decision_id: &Value) -> &'a Value {
    spans
        .iter()
        .find(|s| &attr(s, "gavel.decision_id")["stringValue"] == decision_id)
        .unwrap_or_else(|| panic!("no span for decision {decision_id}: {spans:#?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_join_the_hosts_trace_and_the_upstream_joins_gavels() {
    let s = Setup::blank();
    let rx = Receiver::start(&s, false);
    configure(&s, &rx, "");
    let mut host = RawHost::start(&s);
    let traced =
        json!({"traceparent": format!("00-{TRACE}-{PARENT}-01"), "tracestate": "vendor=v1"});
    host.send_line(&call_line(
        1,
        "echo",
        json!({"text": "do-not-export-me"}),
        Some(traced.clone()),
    ));
    let allowed = host.answer(&json!(1));
    assert_eq!(
        allowed["result"]["content"][0]["text"], "do-not-export-me",
        "{allowed}"
    );
    host.send_line(&call_line(2, "add", json!({"a": 1, "b": 2}), Some(traced)));
    let denied = host.answer(&json!(2));
    assert_eq!(denied["result"]["isError"], true, "{denied}");
    // Not a valid traceparent (uppercase hex): ignored, a new trace.
    let bad = json!({"traceparent": format!("00-{}-{PARENT}-01", TRACE.to_uppercase())});
    host.send_line(&call_line(3, "echo", json!({"text": "third"}), Some(bad)));
    host.answer(&json!(3));
    host.send_line(&call_line(4, "echo", json!({"text": "fourth"}), None));
    host.answer(&json!(4));

    eventually("four spans exported", || rx.spans().len() >= 4).await;
    let spans = rx.spans();
    assert_eq!(spans.len(), 4, "{spans:#?}");
    for r in rx.requests() {
        assert_eq!(r["path"], "/v1/traces");
        assert_eq!(r["content_type"], "application/json");
        assert_eq!(r["x_api_key"], "k-1");
        let resource = &r["body"]["resourceSpans"][0]["resource"]["attributes"];
        assert!(
            resource
                .as_array()
                .unwrap()
                .contains(&json!({"key": "service.name", "value": {"stringValue": "gavel-e2e"}}))
        );
    }
    let decisions = s.decisions();
    assert_eq!(decisions.len(), 4, "{decisions:#?}");
    let upstream = recorded_calls(&s.record("fx"));
    assert_eq!(
        upstream.len(),
        3,
        "the denied call never reached the upstream: {upstream:#?}"
    );

    // 1: allowed, in the host's trace, the upstream's request its child.
    let first = span_of(&spans, &decisions[0]["decision_id"]);
    assert_eq!(first["name"], "gavel.decide tools/call");
    assert_eq!(first["traceId"], TRACE);
    assert_eq!(first["parentSpanId"], PARENT);
    assert_eq!(first["traceState"], "vendor=v1");
    assert_eq!(
        attr(first, "gavel.decision.allow"),
        &json!({"boolValue": true})
    );
    assert_eq!(attr(first, "gavel.server"), &json!({"stringValue": "fx"}));
    assert_eq!(attr(first, "gavel.tool"), &json!({"stringValue": "echo"}));
    assert_eq!(
        attr(first, "mcp.method.name"),
        &json!({"stringValue": "tools/call"})
    );
    assert!(attr(first, "gavel.policy_version")["stringValue"].is_string());
    assert!(
        !first.to_string().contains("do-not-export-me"),
        "arguments never go on a span"
    );
    let span_id = first["spanId"].as_str().unwrap();
    assert_eq!(decisions[0]["trace_id"], TRACE);
    assert_eq!(decisions[0]["span_id"], span_id);
    let meta = &upstream[0]["params"]["_meta"];
    assert_eq!(
        meta["traceparent"],
        format!("00-{TRACE}-{span_id}-01"),
        "{meta}"
    );
    assert_eq!(meta["tracestate"], "vendor=v1");

    // 2: denied, same trace, the decision on the span.
    let second = span_of(&spans, &decisions[1]["decision_id"]);
    assert_eq!(second["traceId"], TRACE);
    assert_eq!(
        attr(second, "gavel.decision.allow"),
        &json!({"boolValue": false})
    );
    let reasons = &attr(second, "gavel.decision.reasons")["arrayValue"]["values"];
    assert_eq!(
        reasons[0]["stringValue"], decisions[1]["result"]["reasons"][0],
        "{second:#?}"
    );
    let rules = &attr(second, "gavel.decision.matched_rules")["arrayValue"]["values"];
    assert_eq!(
        rules.as_array().unwrap().len(),
        decisions[1]["result"]["matched_rules"]
            .as_array()
            .unwrap()
            .len()
    );

    // 3 and 4: new traces of their own; the upstream gets gavel's context,
    // not the host's invalid one.
    for (d, up) in [(&decisions[2], &upstream[1]), (&decisions[3], &upstream[2])] {
        let span = span_of(&spans, &d["decision_id"]);
        assert!(span.get("parentSpanId").is_none(), "{span:#?}");
        assert_ne!(span["traceId"], TRACE);
        assert_eq!(d["trace_id"], span["traceId"]);
        assert_eq!(
            up["params"]["_meta"]["traceparent"],
            format!(
                "00-{}-{}-01",
                span["traceId"].as_str().unwrap(),
                span["spanId"].as_str().unwrap()
            )
        );
    }
    assert_ne!(
        spans_of_trace(&spans, &decisions[2]),
        spans_of_trace(&spans, &decisions[3])
    );
}

fn spans_of_trace(spans: &[Value], d: &Value) -> Value {
    span_of(spans, &d["decision_id"])["traceId"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_that_never_answers_neither_fails_nor_holds_calls() {
    let s = Setup::blank();
    let rx = Receiver::start(&s, true);
    let metrics = free_port();
    configure(
        &s,
        &rx,
        &format!(
            "queue_size = 4\nbatch_size = 2\ntimeout = \"1m\"\n\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n"
        ),
    );
    let mut host = RawHost::start(&s);
    // More calls than the queue holds while the exporter waits on the
    // receiver: every one is answered (each within PATIENCE, RawHost's bound).
    for id in 1..=20u64 {
        host.send_line(&call_line(
            id,
            "echo",
            json!({"text": format!("n{id}")}),
            None,
        ));
        let r = host.answer(&json!(id));
        assert_eq!(r["result"]["content"][0]["text"], format!("n{id}"), "{r}");
    }
    assert_eq!(s.decisions().len(), 20);
    assert!(rx.spans().is_empty());
    eventually("the full queue is logged", || {
        s.log_text().contains("span dropped")
    })
    .await;
    // 20 spans: at most one batch (2) waits on the receiver, at most 4 in
    // the queue; the rest are dropped and counted.
    let text = common::metrics::scrape(metrics).await;
    let series = |o: &str| {
        common::metrics::value(
            &text,
            &format!("gavel_telemetry_spans_total{{outcome=\"{o}\"}}"),
        )
    };
    assert!(series("dropped") >= 14.0, "{text}");
    assert_eq!(series("exported"), 0.0, "{text}");
    assert!(
        text.contains("gavel_telemetry_spans_total{outcome=\"failed\"} 0"),
        "every outcome at 0 from the start: {text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_still_queued_at_exit_are_sent_before_gavel_exits() {
    let s = Setup::blank();
    let rx = Receiver::start(&s, false);
    // A batch would wait a minute to fill: only the shutdown flush sends it.
    configure(&s, &rx, "");
    let text = std::fs::read_to_string(s.config()).unwrap();
    s.write_config(&text.replace("flush_interval = \"100ms\"", "flush_interval = \"1m\""));
    let (client, pid, mut gavel) = s.connect_with_pid(TestHost::new()).await;
    call(&client, "echo", json!({"text": "x"})).await.unwrap();
    assert!(
        rx.spans().is_empty(),
        "sent before exit: the test would prove nothing"
    );
    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = tokio::time::timeout(PATIENCE, gavel.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    // No waiting here: gavel sent the span before it exited.
    let spans = rx.spans();
    assert_eq!(spans.len(), 1, "{spans:#?}");
    assert_eq!(
        attr(&spans[0], "gavel.tool"),
        &json!({"stringValue": "echo"})
    );
    drop(client);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstreams_request_to_the_host_is_a_span_and_the_host_its_child() {
    let s = Setup::blank();
    let rx = Receiver::start(&s, false);
    configure(&s, &rx, "");
    let host = TestHost::new();
    let seen = host.seen.clone();
    let client = s.connect(host).await;
    let r = call(&client, "sample", json!({"prompt": "say hi"}))
        .await
        .unwrap();
    assert!(text(&r).contains("sampled by the e2e host"), "{}", text(&r));
    eventually("two spans exported", || rx.spans().len() >= 2).await;
    let spans = rx.spans();
    let sampling = spans
        .iter()
        .find(|s| s["name"] == "gavel.decide sampling/createMessage")
        .unwrap_or_else(|| panic!("{spans:#?}"));
    assert_eq!(
        attr(sampling, "gavel.decision.allow"),
        &json!({"boolValue": true})
    );
    assert_eq!(
        attr(sampling, "gavel.action"),
        &json!({"stringValue": "sampling_request"})
    );
    let meta = seen.lock().unwrap().sampling_metas[0].clone();
    assert_eq!(
        meta["traceparent"],
        format!(
            "00-{}-{}-01",
            sampling["traceId"].as_str().unwrap(),
            sampling["spanId"].as_str().unwrap()
        ),
        "{meta}"
    );
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn over_http_the_w3c_headers_give_the_trace_when_meta_has_none() {
    use rmcp::ServiceExt;
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    let s = Setup::blank();
    let rx = Receiver::start(&s, false);
    configure(&s, &rx, "");
    let (mut gavel, port) = common::gavel_serve(
        &s,
        &[("GAVEL_STATE_DIR", s.path("state").to_str().unwrap())],
    )
    .await;
    let mut config =
        StreamableHttpClientTransportConfig::with_uri(format!("http://127.0.0.1:{port}/mcp"));
    config.custom_headers.insert(
        http::HeaderName::from_static("traceparent"),
        http::HeaderValue::from_str(&format!("00-{TRACE}-{PARENT}-01")).unwrap(),
    );
    let client = TestHost::new()
        .serve(StreamableHttpClientTransport::from_config(config))
        .await
        .unwrap();
    call(&client, "echo", json!({"text": "over http"}))
        .await
        .unwrap();
    eventually("a span exported", || !rx.spans().is_empty()).await;
    let spans = rx.spans();
    assert_eq!(spans[0]["traceId"], TRACE, "{spans:#?}");
    assert_eq!(spans[0]["parentSpanId"], PARENT);
    let upstream = recorded_calls(&s.record("fx"));
    assert_eq!(
        upstream[0]["params"]["_meta"]["traceparent"],
        format!("00-{TRACE}-{}-01", spans[0]["spanId"].as_str().unwrap())
    );
    client.cancel().await.unwrap();
    gavel.kill().await.unwrap();
}
