//! `resourceSubscriptions` on a 2026-07-28 host's `subscriptions/listen`
//! (`src/front/session/listen_resources.rs`), in raw JSON lines against the
//! Rust fixture (a legacy upstream: gavel sends it `resources/subscribe`,
//! its `touch_resource` tool sends `notifications/resources/updated` for a
//! URI it is subscribed to, and it records every request it gets).

use crate::common;
use crate::e2e_host_era::modern_line;
use crate::e2e_host_listen::{tagged, until};

use common::raw::RawHost;
use common::{PATIENCE, Setup, fixture_server, records};
use serde_json::{Value, json};

pub(crate) const HELLO: &str = "fixture://static/hello";
const ITEM: &str = "fixture://items/1";
const SECRET: &str = "fixture://items/secret";

/// Everything is allowed but reading `SECRET`.
const POLICY: &str = r#"package mcp.fx

default decision := {"allow": true}

decision := {"allow": false, "reasons": ["secret"]} if {
	input.action.type == "resource_read"
	input.action.args.uri == "fixture://items/secret"
}
"#;

fn setup() -> Setup {
    setup_with(&[])
}

/// As `setup`, the fixture started with `args` too.
pub(crate) fn setup_with(args: &'static [&'static str]) -> Setup {
    Setup::with(move |s| {
        let bundle = common::policy::bundle(s.dir.path(), "fx", "mcp/fx", json!({}), POLICY);
        format!(
            "{}{}bundle = {:?}\n",
            s.decision_log_table(),
            fixture_server("fx", args, &s.record("fx")),
            bundle.display().to_string()
        )
    })
}

pub(crate) fn listen(id: u64, uris: &[&str]) -> String {
    modern_line(
        id,
        "subscriptions/listen",
        json!({"notifications": {"resourceSubscriptions": uris}}),
        "",
    )
}

pub(crate) fn is_ack_for(v: &Value, id: u64) -> bool {
    v["method"] == "notifications/subscriptions/acknowledged" && tagged(v) == &json!(id)
}

fn is_update(v: &Value) -> bool {
    v["method"] == "notifications/resources/updated"
}

/// Calls the fixture's `touch_resource` on `uri`: its answer says whether
/// the fixture was subscribed to it (and so sent the update).
pub(crate) fn touch(raw: &mut RawHost, seen: &mut Vec<Value>, id: u64, uri: &str) -> String {
    raw.send_line(&modern_line(
        id,
        "tools/call",
        json!({"name": "touch_resource", "arguments": {"uri": uri}}),
        "",
    ));
    let r = until(raw, seen, |v| v["id"] == id);
    r["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("a tool result: {r}"))
        .to_string()
}

/// The first message from `from` on that matches `pred`: already read
/// (an update may come before the answer to the call that caused it), or
/// read now.
pub(crate) fn heard(
    raw: &mut RawHost,
    seen: &mut Vec<Value>,
    from: usize,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    match seen[from..].iter().find(|v| pred(v)) {
        Some(v) => v.clone(),
        None => until(raw, seen, pred),
    }
}

/// An update of `uri` tagged for listen `id`.
pub(crate) fn update_of(id: u64, uri: &'static str) -> impl Fn(&Value) -> bool {
    move |v| is_update(v) && tagged(v) == &json!(id) && v["params"]["uri"] == uri
}

/// The URIs the fixture was sent `method` for, in order.
pub(crate) fn recorded(s: &Setup, method: &str) -> Vec<String> {
    records(&s.record("fx"))
        .into_iter()
        .filter(|r| r["method"] == method)
        .map(|r| r["params"]["uri"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Waits (bounded) until the fixture has recorded `method` for `uri`.
pub(crate) fn wait_recorded(s: &Setup, method: &str, uri: &str) {
    let start = std::time::Instant::now();
    while !recorded(s, method).iter().any(|u| u == uri) {
        assert!(
            start.elapsed() < PATIENCE,
            "the fixture never got {method} for {uri}: {:?}",
            records(&s.record("fx"))
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_listen_gets_updates_of_exactly_its_honoured_uris_and_its_end_unsubscribes() {
    let s = setup();
    let mut raw = RawHost::bare(&s);
    let mut seen = Vec::new();
    // The upstream is up and listed before anything is followed.
    raw.send_line(&modern_line(1, "resources/list", json!({}), ""));
    until(&mut raw, &mut seen, |v| v["id"] == 1);

    // Honoured: a listed resource the session may read. Not: a URI it may
    // not read (the policy denies the read), an over-long one, a repeat.
    let long = format!("fixture://items/{}", "x".repeat(20_000));
    raw.send_line(&listen(10, &[HELLO, SECRET, &long, HELLO]));
    let ack = until(&mut raw, &mut seen, |v| is_ack_for(v, 10));
    // (rmcp writes the acknowledgement as the request's list cut down to
    // what gavel honours, so a URI asked for twice is named twice.)
    let mut acked: Vec<&str> = ack["params"]["notifications"]["resourceSubscriptions"]
        .as_array()
        .unwrap_or_else(|| panic!("{ack}"))
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    acked.dedup();
    assert_eq!(acked, vec![HELLO], "{ack}");
    assert_eq!(
        ack["params"]["notifications"].as_object().unwrap().len(),
        1,
        "{ack}"
    );
    // A URI through the fixture's template, on a listen of its own.
    raw.send_line(&listen(11, &[ITEM]));
    let ack = until(&mut raw, &mut seen, |v| is_ack_for(v, 11));
    assert_eq!(
        ack["params"]["notifications"],
        json!({"resourceSubscriptions": [ITEM]}),
        "{ack}"
    );
    // A second listen on HELLO: the upstream stays subscribed until both end.
    raw.send_line(&listen(12, &[HELLO]));
    until(&mut raw, &mut seen, |v| is_ack_for(v, 12));
    wait_recorded(&s, "resources/subscribe", ITEM);
    wait_recorded(&s, "resources/subscribe", HELLO);
    assert_eq!(
        recorded(&s, "resources/subscribe")
            .iter()
            .filter(|u| *u == HELLO)
            .count(),
        1,
        "one upstream subscription for two listens"
    );

    // Each update reaches the listens that follow its URI, tagged with
    // each one's id.
    let at = seen.len();
    assert_eq!(
        touch(&mut raw, &mut seen, 20, ITEM),
        "touched subscribed=true"
    );
    heard(&mut raw, &mut seen, at, update_of(11, ITEM));
    let at = seen.len();
    assert_eq!(
        touch(&mut raw, &mut seen, 21, HELLO),
        "touched subscribed=true"
    );
    for id in [10, 12] {
        heard(&mut raw, &mut seen, at, update_of(id, HELLO));
    }
    // The URI the session may not read was never subscribed upstream.
    assert_eq!(
        touch(&mut raw, &mut seen, 22, SECRET),
        "touched subscribed=false"
    );

    // The host cancels listen 10: listen 12 still follows HELLO, so the
    // upstream is not unsubscribed and 12 still hears it.
    raw.send_line(
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":10}}"#,
    );
    let at = seen.len();
    assert_eq!(
        touch(&mut raw, &mut seen, 23, HELLO),
        "touched subscribed=true"
    );
    heard(&mut raw, &mut seen, at, update_of(12, HELLO));
    assert!(recorded(&s, "resources/unsubscribe").is_empty());
    // The last listen of HELLO ends: the fixture is unsubscribed.
    let cancelled_at = seen.len();
    raw.send_line(
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":12}}"#,
    );
    wait_recorded(&s, "resources/unsubscribe", HELLO);
    assert_eq!(recorded(&s, "resources/unsubscribe"), vec![HELLO]);
    assert_eq!(
        touch(&mut raw, &mut seen, 24, HELLO),
        "touched subscribed=false"
    );
    // Listen 11 is still open and still hears ITEM.
    let at = seen.len();
    assert_eq!(
        touch(&mut raw, &mut seen, 25, ITEM),
        "touched subscribed=true"
    );
    heard(&mut raw, &mut seen, at, update_of(11, ITEM));

    for v in &seen {
        if is_update(v) {
            // Only the listens that follow a URI hear it; nothing untagged.
            let (id, uri) = (tagged(v), &v["params"]["uri"]);
            let ok = (id == &json!(11) && uri == ITEM)
                || ((id == &json!(10) || id == &json!(12)) && uri == HELLO);
            assert!(ok, "an update for a listen that did not follow it: {v}");
        }
        if v.get("method").is_some() {
            assert!(!tagged(v).is_null(), "an untagged notification: {v}");
        }
        assert!(
            v["id"] != json!(10) && v["id"] != json!(12),
            "a cancelled listen got an answer: {v}"
        );
    }
    for v in &seen[cancelled_at..] {
        assert!(
            !(is_update(v) && tagged(v) == &json!(12)),
            "after the cancel: {v}"
        );
    }
    // The subscriptions were decided as a legacy host's would be.
    let subscribes: Vec<Value> = s
        .decisions()
        .into_iter()
        .filter(|d| d["input"]["action"]["type"] == "resource_subscribe")
        .collect();
    for uri in [HELLO, ITEM] {
        assert!(
            subscribes
                .iter()
                .any(|d| d["input"]["action"]["args"]["uri"] == uri),
            "{uri}: {subscribes:#?}"
        );
    }
    assert!(
        !subscribes
            .iter()
            .any(|d| d["input"]["action"]["args"]["uri"] == SECRET),
        "{subscribes:#?}"
    );
}

#[test]
fn discover_on_stdio_advertises_resource_subscriptions() {
    let s = setup();
    let mut raw = RawHost::bare(&s);
    raw.send_line(&modern_line(1, "server/discover", json!({}), ""));
    let d = raw.answer(&json!(1));
    assert_eq!(
        d["result"]["capabilities"]["resources"]["subscribe"], true,
        "{d}"
    );
}

#[test]
fn a_modern_upstreams_resource_is_followed_on_its_own_listen() {
    // server-everything (legacy) and the 2026-07-28-only fixture, whose
    // `touch` tool sends resources/updated on the listens that follow it.
    let s = crate::e2e_host_era::two_eras();
    let mut raw = RawHost::bare(&s);
    let mut seen = Vec::new();
    raw.send_line(&modern_line(1, "resources/list", json!({}), ""));
    until(&mut raw, &mut seen, |v| v["id"] == 1);
    raw.send_line(&listen(10, &["modern://note"]));
    let ack = until(&mut raw, &mut seen, |v| is_ack_for(v, 10));
    assert_eq!(
        ack["params"]["notifications"],
        json!({"resourceSubscriptions": ["modern://note"]}),
        "{ack}"
    );
    // gavel's listen to the upstream is opened again with the URI: until
    // then a touch reaches no listen, so touch until one is heard.
    let (mut id, start) = (20, std::time::Instant::now());
    loop {
        let at = seen.len();
        raw.send_line(&modern_line(
            id,
            "tools/call",
            json!({"name": "modern__touch", "arguments": {"uri": "modern://note"}}),
            "",
        ));
        let r = until(&mut raw, &mut seen, |v| v["id"] == id);
        assert_eq!(
            r["result"]["content"][0]["text"], "touched modern://note",
            "{r}"
        );
        if seen[at..]
            .iter()
            .any(|v| is_update(v) && tagged(v) == &json!(10))
        {
            break;
        }
        // The update may follow the answer.
        raw.send_line(&modern_line(id + 1, "tools/list", json!({}), ""));
        until(&mut raw, &mut seen, |v| v["id"] == id + 1);
        if seen[at..]
            .iter()
            .any(|v| is_update(v) && tagged(v) == &json!(10))
        {
            break;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "no update reached the listen: {seen:#?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
        id += 2;
    }
    for v in &seen {
        if is_update(v) {
            assert_eq!(v["params"]["uri"], "modern://note", "{v}");
            assert_eq!(tagged(v), &json!(10), "{v}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn over_http_a_python_host_follows_the_resources_its_principal_may_read() {
    let s = setup();
    let (_gavel, url) = crate::e2e_host_era::serve(&s).await;
    let record = s.record("fx").display().to_string();
    let plan = json!([
        {"op": "list_tools"},
        {"op": "listen", "filter": {"resources": [HELLO, SECRET]},
         "during": [
            // (The upstream was subscribed before the acknowledgement.)
            {"op": "wait_file", "path": record, "contains": "resources/subscribe"},
            {"op": "call", "name": "touch_resource", "args": {"uri": HELLO}},
         ],
         "expect_uri": HELLO},
    ]);
    let (connected, steps) =
        crate::e2e_host_era::python_to(&s, "2026-07-28", std::slice::from_ref(&url), plan).await;
    assert_eq!(connected["protocol_version"], "2026-07-28", "{connected}");
    let listen = &steps[1];
    assert_eq!(
        listen["honored"],
        json!({"resourceSubscriptions": [HELLO]}),
        "{listen}"
    );
    assert_eq!(
        listen["during"][1]["result"]["content"][0]["text"], "touched subscribed=true",
        "{listen}"
    );
    assert_eq!(
        listen["events"],
        json!([format!("ResourceUpdated:{HELLO}")]),
        "{listen}"
    );
    assert_eq!(recorded(&s, "resources/subscribe"), vec![HELLO]);
    // The client closed its listen: the upstream is unsubscribed.
    wait_recorded(&s, "resources/unsubscribe", HELLO);
}

#[test]
fn a_legacy_hosts_subscription_to_a_modern_upstreams_resource_rides_gavels_listen() {
    // Before, gavel sent the 2026-07-28 upstream `resources/subscribe`,
    // which that revision does not have.
    let s = crate::e2e_host_era::two_eras();
    let mut raw = RawHost::start(&s);
    let mut seen = Vec::new();
    let line = |id: u64, method: &str, params: Value| {
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
    };
    raw.send_line(&line(1, "resources/list", json!({})));
    until(&mut raw, &mut seen, |v| v["id"] == 1);
    raw.send_line(&line(
        2,
        "resources/subscribe",
        json!({"uri": "modern://note"}),
    ));
    let r = until(&mut raw, &mut seen, |v| v["id"] == 2);
    assert_eq!(r["result"], json!({}), "{r}");
    // gavel's listen to the upstream is opened again with the URI just
    // after: touch until the update is heard.
    let heard = |seen: &[Value]| {
        seen.iter().any(|v| {
            v["method"] == "notifications/resources/updated"
                && v["params"]["uri"] == "modern://note"
        })
    };
    let (mut id, start) = (10, std::time::Instant::now());
    while !heard(&seen) {
        assert!(start.elapsed() < PATIENCE, "no update: {seen:#?}");
        raw.send_line(&line(
            id,
            "tools/call",
            json!({"name": "modern__touch", "arguments": {"uri": "modern://note"}}),
        ));
        let r = until(&mut raw, &mut seen, |v| v["id"] == id);
        assert_eq!(
            r["result"]["content"][0]["text"], "touched modern://note",
            "{r}"
        );
        raw.send_line(&line(id + 1, "ping", json!({})));
        until(&mut raw, &mut seen, |v| v["id"] == id + 1);
        id += 2;
        if !heard(&seen) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    let update = seen
        .iter()
        .find(|v| v["method"] == "notifications/resources/updated")
        .unwrap();
    assert!(
        update["params"]["_meta"][crate::e2e_host_listen::SUBSCRIPTION_ID].is_null(),
        "a legacy host is never shown gavel's listen: {update}"
    );
    raw.send_line(&line(
        3,
        "resources/unsubscribe",
        json!({"uri": "modern://note"}),
    ));
    let r = until(&mut raw, &mut seen, |v| v["id"] == 3);
    assert_eq!(r["result"], json!({}), "{r}");
}
