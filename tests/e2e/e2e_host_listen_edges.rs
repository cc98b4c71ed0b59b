//! The edges of a 2026-07-28 host's `subscriptions/listen` with
//! `resourceSubscriptions` (`src/front/session/listen_prepare.rs`,
//! `listen_resources.rs`, `upstream::listen::resubscribe`), in raw JSON
//! lines on stdio against the Rust fixture as a legacy upstream: the
//! upstream is subscribed before the acknowledgement names its URI (and a
//! URI whose subscription is not confirmed in time is left out of it), a
//! listen as the host's first request is honoured, a crashed and restarted
//! upstream is subscribed again, and a listen cancelled while its
//! subscription is in flight leaves none behind.

use crate::common;
use crate::e2e_host_era::modern_line;
use crate::e2e_host_listen::{tagged, until};
use crate::e2e_host_listen_resources::{
    HELLO, heard, is_ack_for, listen, recorded, setup_with, touch, update_of, wait_recorded,
};

use common::raw::RawHost;
use common::{PATIENCE, Setup};
use serde_json::{Value, json};

/// The fixture answers `resources/subscribe` this long after it got it:
/// a subscription in flight long enough to cancel its listen meanwhile,
/// and within gavel's wait for it (10 s).
const SLOW: &[&str] = &["--slow-subscribe-ms", "3000"];
/// Longer than gavel waits for a subscription before acknowledging.
const TOO_SLOW: &[&str] = &["--slow-subscribe-ms", "13000"];

/// How many times the fixture was sent `method` for HELLO.
fn count(s: &Setup, method: &str) -> usize {
    recorded(s, method).iter().filter(|u| *u == HELLO).count()
}

/// The URIs an acknowledgement names.
fn acked(ack: &Value) -> Vec<String> {
    let mut uris: Vec<String> = ack["params"]["notifications"]["resourceSubscriptions"]
        .as_array()
        .map(|a| a.iter().map(|u| u.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    uris.dedup();
    uris
}

#[test]
fn the_acknowledgement_comes_after_the_upstream_subscription() {
    let s = setup_with(&[]);
    let mut raw = RawHost::bare(&s);
    let mut seen = Vec::new();
    raw.send_line(&modern_line(1, "resources/list", json!({}), ""));
    until(&mut raw, &mut seen, |v| v["id"] == 1);
    raw.send_line(&listen(10, &[HELLO]));
    let ack = until(&mut raw, &mut seen, |v| is_ack_for(v, 10));
    // The fixture records a request before it answers it, and gavel
    // acknowledges only once it answered: the record has it already.
    // (Before, the acknowledgement was written first and the subscribe
    // sent after it.)
    assert_eq!(
        count(&s, "resources/subscribe"),
        1,
        "acknowledged before the upstream was subscribed: {ack}"
    );
    assert_eq!(acked(&ack), vec![HELLO], "{ack}");
    let at = seen.len();
    assert_eq!(
        touch(&mut raw, &mut seen, 20, HELLO),
        "touched subscribed=true"
    );
    heard(&mut raw, &mut seen, at, update_of(10, HELLO));
}

#[test]
fn a_subscription_not_confirmed_in_time_is_not_acknowledged_and_is_undone() {
    let s = setup_with(TOO_SLOW);
    let mut raw = RawHost::bare(&s);
    let mut seen = Vec::new();
    raw.send_line(&modern_line(1, "resources/list", json!({}), ""));
    until(&mut raw, &mut seen, |v| v["id"] == 1);
    raw.send_line(&modern_line(
        10,
        "subscriptions/listen",
        json!({"notifications": {"toolsListChanged": true, "resourceSubscriptions": [HELLO]}}),
        "",
    ));
    let ack = until(&mut raw, &mut seen, |v| is_ack_for(v, 10));
    // The upstream got the subscribe but had not confirmed it: the URI is
    // left out, the list kind asked for is still acknowledged.
    assert_eq!(count(&s, "resources/subscribe"), 1, "{ack}");
    assert_eq!(
        ack["params"]["notifications"],
        json!({"toolsListChanged": true}),
        "{ack}"
    );
    // When the upstream does confirm it, no listen follows it: undone.
    wait_recorded(&s, "resources/unsubscribe", HELLO);
    assert_eq!(count(&s, "resources/unsubscribe"), 1);
    assert_eq!(
        touch(&mut raw, &mut seen, 20, HELLO),
        "touched subscribed=false"
    );
    assert!(
        !seen
            .iter()
            .any(|v| v["method"] == "notifications/resources/updated"),
        "{seen:#?}"
    );
}

/// Opens listen `id` on HELLO and waits for its acknowledgement, which
/// must name HELLO: the acknowledgement.
fn listen_hello(raw: &mut RawHost, seen: &mut Vec<Value>, id: u64) -> Value {
    raw.send_line(&listen(id, &[HELLO]));
    let ack = until(raw, seen, |v| is_ack_for(v, id));
    assert_eq!(acked(&ack), vec![HELLO], "{ack}");
    ack
}

#[test]
fn a_listen_as_the_hosts_first_request_is_honoured() {
    let s = setup_with(&[]);
    let mut raw = RawHost::bare(&s);
    let mut seen = Vec::new();
    // Nothing started the upstreams: the listen does, and waits for them.
    let ack = listen_hello(&mut raw, &mut seen, 1);
    assert_eq!(count(&s, "resources/subscribe"), 1, "{ack}");
    let at = seen.len();
    assert_eq!(
        touch(&mut raw, &mut seen, 20, HELLO),
        "touched subscribed=true"
    );
    heard(&mut raw, &mut seen, at, update_of(1, HELLO));
}

/// Crashes the fixture (its `crash` tool) and touches HELLO until the
/// restarted fixture answers: what it says then.
fn crash_and_touch(raw: &mut RawHost, seen: &mut Vec<Value>, modern: bool) -> String {
    let line = |id: u64, name: &str, args: Value| {
        let params = json!({"name": name, "arguments": args});
        if modern {
            modern_line(id, "tools/call", params, "")
        } else {
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
                .to_string()
        }
    };
    raw.send_line(&line(30, "crash", json!({})));
    until(raw, seen, |v| v["id"] == 30);
    let (mut id, start) = (31, std::time::Instant::now());
    loop {
        raw.send_line(&line(id, "touch_resource", json!({"uri": HELLO})));
        let r = until(raw, seen, |v| v["id"] == id);
        if let Some(text) = r["result"]["content"][0]["text"].as_str()
            && text.starts_with("touched")
        {
            return text.to_string();
        }
        assert!(
            start.elapsed() < PATIENCE,
            "the fixture did not come back: {r}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
        id += 1;
    }
}

#[test]
fn a_restarted_upstream_is_subscribed_again_for_an_open_listen() {
    let s = setup_with(&[]);
    let mut raw = RawHost::bare(&s);
    let mut seen = Vec::new();
    listen_hello(&mut raw, &mut seen, 10);
    let at = seen.len();
    // The new child forgot the subscription; gavel sent it again before
    // the restarted upstream took its first call.
    assert_eq!(
        crash_and_touch(&mut raw, &mut seen, true),
        "touched subscribed=true"
    );
    assert_eq!(count(&s, "resources/subscribe"), 2);
    heard(&mut raw, &mut seen, at, update_of(10, HELLO));
}

#[test]
fn a_legacy_hosts_subscription_survives_its_upstreams_restart() {
    let s = setup_with(&[]);
    let mut raw = RawHost::start(&s);
    let mut seen = Vec::new();
    raw.send_line(
        &json!({"jsonrpc": "2.0", "id": 2, "method": "resources/subscribe", "params": {"uri": HELLO}})
            .to_string(),
    );
    let r = until(&mut raw, &mut seen, |v| v["id"] == 2);
    assert_eq!(r["result"], json!({}), "{r}");
    assert_eq!(
        crash_and_touch(&mut raw, &mut seen, false),
        "touched subscribed=true"
    );
    assert_eq!(count(&s, "resources/subscribe"), 2);
    let start = std::time::Instant::now();
    while !seen
        .iter()
        .any(|v| v["method"] == "notifications/resources/updated" && v["params"]["uri"] == HELLO)
    {
        assert!(start.elapsed() < PATIENCE, "no update: {seen:#?}");
        seen.push(raw.next());
    }
}

#[test]
fn a_listen_cancelled_while_its_subscription_is_in_flight_leaves_none_behind() {
    let s = setup_with(SLOW);
    let mut raw = RawHost::bare(&s);
    let mut seen = Vec::new();
    raw.send_line(&modern_line(1, "resources/list", json!({}), ""));
    until(&mut raw, &mut seen, |v| v["id"] == 1);
    raw.send_line(&listen(10, &[HELLO]));
    // The fixture has it and has not answered yet: cancel the listen now.
    wait_recorded(&s, "resources/subscribe", HELLO);
    raw.send_line(
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":10}}"#,
    );
    // Once the subscribe is answered, it is undone: the record ends with
    // the unsubscribe. (Before, the subscription stayed.)
    wait_recorded(&s, "resources/unsubscribe", HELLO);
    let methods: Vec<String> = common::records(&s.record("fx"))
        .into_iter()
        .filter_map(|r| r["method"].as_str().map(str::to_string))
        .filter(|m| m.starts_with("resources/") && m.ends_with("subscribe"))
        .collect();
    assert_eq!(
        methods,
        vec!["resources/subscribe", "resources/unsubscribe"],
        "{methods:?}"
    );
    assert_eq!(
        touch(&mut raw, &mut seen, 20, HELLO),
        "touched subscribed=false"
    );
    for v in &seen {
        assert!(
            !is_ack_for(v, 10) || acked(v).is_empty(),
            "a cancelled listen was acknowledged for its URI: {v}"
        );
        assert!(
            tagged(v) != &json!(10) || v["method"] == "notifications/subscriptions/acknowledged",
            "{v}"
        );
    }
}

/// Over HTTP (raw, no client library to hide the order): a listen sent as
/// the principal's first request starts the upstream, and its
/// acknowledgement, held by gavel until the subscription is in place,
/// names the URI; an update then arrives on the listen's stream, and
/// closing the stream unsubscribes.
#[tokio::test(flavor = "multi_thread")]
async fn over_http_a_first_request_listen_is_acknowledged_once_subscribed() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let s = setup_with(&[]);
    let (_gavel, url) = crate::e2e_host_era::serve(&s).await;
    let conn = post_listen(&url, 1).await;
    let mut lines = BufReader::new(conn).lines();
    let mut next_message = async || -> Value {
        loop {
            let line = tokio::time::timeout(PATIENCE, lines.next_line())
                .await
                .expect("the listen stream went quiet")
                .unwrap()
                .expect("the listen stream ended");
            if let Some(data) = line.strip_prefix("data: ")
                && data.starts_with('{')
            {
                return serde_json::from_str(data).unwrap();
            }
        }
    };
    let ack = next_message().await;
    assert_eq!(
        ack["method"], "notifications/subscriptions/acknowledged",
        "{ack}"
    );
    // The fixture had the subscribe before the acknowledgement left gavel.
    assert_eq!(count(&s, "resources/subscribe"), 1, "{ack}");
    assert_eq!(acked(&ack), vec![HELLO], "{ack}");
    let call = serde_json::from_str::<Value>(&modern_line(
        2,
        "tools/call",
        json!({"name": "touch_resource", "arguments": {"uri": HELLO}}),
        "",
    ))
    .unwrap();
    let (status, r) = crate::e2e_host_era::http(
        &url,
        "POST",
        &[
            ("MCP-Protocol-Version", "2026-07-28"),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "touch_resource"),
        ],
        Some(&call),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert!(r.contains("touched subscribed=true"), "{r}");
    let update = next_message().await;
    assert_eq!(
        update["method"], "notifications/resources/updated",
        "{update}"
    );
    assert_eq!(update["params"]["uri"], HELLO, "{update}");
    assert_eq!(tagged(&update), &json!(1), "{update}");
    // The client closes the stream: the upstream is unsubscribed.
    drop(lines);
    wait_recorded(&s, "resources/unsubscribe", HELLO);
}

/// The 2026-07-28-only fixture (`modern_only.mjs`) crashes and is
/// restarted: gavel's new listen to it carries the URI a host's listen
/// still follows, so a touch after the restart still reaches that listen
/// (the same record, `Upstream::follow_resource`, that a legacy upstream's
/// `resources/subscribe` is sent again from).
#[test]
fn a_restarted_modern_upstreams_new_listen_carries_the_followed_uri() {
    let s = crate::e2e_host_era::two_eras();
    let state = s.path("state");
    let mut raw = RawHost::bare_env(&s, &[("GAVEL_STATE_DIR", state.to_str().unwrap())]);
    let mut seen = Vec::new();
    raw.send_line(&listen(10, &["modern://note"]));
    let ack = until(&mut raw, &mut seen, |v| is_ack_for(v, 10));
    assert_eq!(acked(&ack), vec!["modern://note"], "{ack}");
    raw.send_line(&modern_line(
        11,
        "tools/call",
        json!({"name": "modern__crash", "arguments": {}}),
        "",
    ));
    until(&mut raw, &mut seen, |v| v["id"] == 11);
    // The old child is gone and the new one is up (so no touch below can
    // reach the listen that was open before the crash).
    let start = std::time::Instant::now();
    loop {
        let up = crate::e2e_era::upstream_status(&s, "modern");
        if up["restarts"] == 1 && up["phase"] == "ready" {
            break;
        }
        assert!(start.elapsed() < PATIENCE, "not restarted: {up}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let after_crash = seen.len();
    // Touch until the restarted upstream's touch reaches the listen (its
    // listen is opened again just after it is back).
    let (mut id, start) = (20, std::time::Instant::now());
    let heard = |seen: &[Value]| {
        seen[after_crash..].iter().any(|v| {
            v["method"] == "notifications/resources/updated"
                && tagged(v) == &json!(10)
                && v["params"]["uri"] == "modern://note"
        })
    };
    while !heard(&seen) {
        assert!(
            start.elapsed() < PATIENCE,
            "no update after the restart: {seen:#?}"
        );
        raw.send_line(&modern_line(
            id,
            "tools/call",
            json!({"name": "modern__touch", "arguments": {"uri": "modern://note"}}),
            "",
        ));
        until(&mut raw, &mut seen, |v| v["id"] == id);
        raw.send_line(&modern_line(id + 1, "tools/list", json!({}), ""));
        until(&mut raw, &mut seen, |v| v["id"] == id + 1);
        id += 2;
        if !heard(&seen) {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

/// Opens listen `id` on HELLO with a raw 2026-07-28 POST to `url` (a
/// `gavel serve`): the connection, its answer stream still open.
async fn post_listen(url: &str, id: u64) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let port: u16 = url
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches("/mcp")
        .parse()
        .unwrap();
    let body = listen(id, &[HELLO]);
    let req = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json, text/event-stream\r\nContent-Type: application/json\r\nMCP-Protocol-Version: 2026-07-28\r\nMcp-Method: subscriptions/listen\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    conn.write_all(req.as_bytes()).await.unwrap();
    conn
}

/// Over HTTP: the client closes its listen's stream while the upstream
/// subscription is in flight (its acknowledgement still held): once the
/// upstream confirms, it is undone.
#[tokio::test(flavor = "multi_thread")]
async fn over_http_a_listen_closed_while_subscribing_leaves_no_subscription() {
    let s = setup_with(SLOW);
    let (_gavel, url) = crate::e2e_host_era::serve(&s).await;
    // The upstream is up first (so the subscription is not held up by its
    // start).
    let list =
        serde_json::from_str::<Value>(&modern_line(1, "resources/list", json!({}), "")).unwrap();
    let v = ("MCP-Protocol-Version", "2026-07-28");
    let (status, r) = crate::e2e_host_era::http(
        &url,
        "POST",
        &[v, ("Mcp-Method", "resources/list")],
        Some(&list),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let conn = post_listen(&url, 2).await;
    let record = s.record("fx");
    common::eventually("the fixture got the subscribe", || {
        recorded(&s, "resources/subscribe").len() == 1
    })
    .await;
    drop(conn);
    wait_recorded(&s, "resources/unsubscribe", HELLO);
    let methods: Vec<String> = common::records(&record)
        .into_iter()
        .filter_map(|r| r["method"].as_str().map(str::to_string))
        .filter(|m| m.starts_with("resources/") && m.ends_with("subscribe"))
        .collect();
    assert_eq!(
        methods,
        vec!["resources/subscribe", "resources/unsubscribe"],
        "{methods:?}"
    );
}
