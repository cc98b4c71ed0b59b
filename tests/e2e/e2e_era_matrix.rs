//! End to end, issue 18's matrix: the official Python SDK (`mcp` 2.3) as
//! the host in each era mode (`legacy`, `auto`, `2026-07-28`), through gavel
//! (stdio and HTTP), to two legacy upstreams (the Rust fixture and npm
//! server-everything, `initialize` only, which ask by real server→client
//! requests) and a 2026-07-28-only one (the TypeScript SDK v2 fixture,
//! which asks by input rounds) — every round trip a host must see whatever
//! the pairing: elicitation, sampling (and roots), progress, cancellation
//! reaching the upstream, and a list change reaching the host.

use crate::common;
use crate::e2e_host_era::{deps, python_script};

use std::path::Path;

use common::*;
use serde_json::{Value, json};

/// gavel in front of `legacy` (the Rust fixture) and `modern` (the TS v2
/// modern-only fixture), every call allowed, decisions logged.
fn matrix() -> Setup {
    Setup::with(|s| {
        let bundle = common::policy::bundle(
            s.dir.path(),
            "all",
            "all",
            json!({}),
            "package all\n\ndecision := {\"allow\": true}\n",
        );
        let bundle = bundle.display().to_string();
        let node = deps("node/node_modules/node/bin/node")
            .display()
            .to_string();
        let modern = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixture/modern_only.mjs")
            .display()
            .to_string();
        let everything = crate::e2e_everything::everything().display().to_string();
        format!(
            "{}{}bundle = {bundle:?}\n\n\
             [servers.everything]\ncommand = {node:?}\nargs = [{everything:?}, \"stdio\"]\nstartup_timeout = \"30s\"\ncall_timeout = \"30s\"\nbundle = {bundle:?}\n\n\
             [servers.modern]\ncommand = {node:?}\nargs = [{modern:?}]\nstartup_timeout = \"30s\"\ncall_timeout = \"30s\"\nbundle = {bundle:?}\n",
            s.decision_log_table(),
            fixture_server("legacy", &[], &s.path("legacy.jsonl")),
        )
    })
}

fn plan() -> Value {
    json!([
        {"op": "call", "name": "legacy__elicit", "args": {"message": "Proceed with the legacy job?"}},
        {"op": "call", "name": "legacy__sample", "args": {"prompt": "say hi"}},
        {"op": "call", "name": "legacy__progress", "args": {"steps": 3, "delay_ms": 10}, "progress": true},
        {"op": "cancel", "name": "legacy__slow", "args": {"ms": 20000}, "after": 1.0},
        {"op": "changed", "step": {"op": "call", "name": "legacy__add_tool", "args": {"name": "grown_legacy"}}},
        {"op": "call", "name": "modern__confirm", "args": {"action": "deploy"}},
        {"op": "call", "name": "modern__ask_all", "args": {}},
        {"op": "call", "name": "modern__tick", "args": {"steps": 3, "ms": 10}, "progress": true},
        {"op": "cancel", "name": "modern__tick", "args": {"steps": 200, "ms": 100}, "after": 1.0},
        {"op": "changed", "step": {"op": "call", "name": "modern__grow", "args": {"name": "grown_modern"}}},
        {"op": "call", "name": "everything__trigger-elicitation-request", "args": {}},
        {"op": "call", "name": "everything__trigger-sampling-request", "args": {"prompt": "hello", "maxTokens": 20}},
        {"op": "call", "name": "everything__trigger-long-running-operation", "args": {"duration": 0.3, "steps": 3}, "progress": true},
    ])
}

fn text(step: &Value) -> String {
    step["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn asked(step: &Value) -> Vec<String> {
    step["asked"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Every round trip of the plan, checked step by step (`what` names the
/// pairing in messages).
fn check(s: &Setup, what: &str, connected: &Value, steps: &[Value], era: &str) {
    assert_eq!(connected["protocol_version"], era, "{what}: {connected}");
    assert_eq!(steps.len(), 13, "{what}: {steps:#?}");
    let at = |i: usize| &steps[i];
    let ok = |i: usize| {
        assert!(
            at(i).get("error").is_none() && at(i)["result"]["isError"] != json!(true),
            "{what}: step {i} failed: {}\ngavel log: {}",
            at(i),
            s.log_text()
        )
    };
    // Elicitation, both eras of upstream: the host was asked, and the
    // upstream got the host's answer.
    ok(0);
    assert!(
        asked(at(0))
            .iter()
            .any(|a| a.contains("Proceed with the legacy job?")),
        "{what}: {}",
        at(0)
    );
    assert!(text(at(0)).contains("action=accept"), "{what}: {}", at(0));
    assert!(
        text(at(0)).contains("from the python host"),
        "{what}: {}",
        at(0)
    );
    ok(5);
    assert!(
        asked(at(5)).iter().any(|a| a.contains("Really deploy?")),
        "{what}: {}",
        at(5)
    );
    assert!(
        text(at(5)).starts_with("confirmed deploy"),
        "{what}: {}",
        at(5)
    );
    // Sampling (and roots, and a form, in one round from the modern one).
    ok(1);
    assert_eq!(asked(at(1)), ["sampling"], "{what}: {}", at(1));
    assert!(
        text(at(1)).contains("sampled by the python host"),
        "{what}: {}",
        at(1)
    );
    ok(6);
    let said: Value = serde_json::from_str(&text(at(6))).unwrap_or(Value::Null);
    assert_eq!(
        said,
        json!({"sample": "sampled by the python host", "roots": ["file:///matrix-root"], "form": "accept"}),
        "{what}: {}",
        at(6)
    );
    // Progress, relayed in order.
    for i in [2, 7] {
        ok(i);
        assert_eq!(
            at(i)["progress"],
            json!([[1.0, 3.0], [2.0, 3.0], [3.0, 3.0]]),
            "{what}: step {i}: {}",
            at(i)
        );
    }
    // server-everything (legacy): its form filled in by the host, its
    // sampling answered, its progress relayed.
    ok(10);
    assert!(
        asked(at(10)).iter().any(|a| a.starts_with("elicitation:")),
        "{what}: {}",
        at(10)
    );
    assert!(
        text(at(10)).contains("User provided the requested information"),
        "{what}: {}",
        at(10)
    );
    ok(11);
    assert_eq!(asked(at(11)), ["sampling"], "{what}: {}", at(11));
    assert!(
        at(11).to_string().contains("sampled by the python host"),
        "{what}: {}",
        at(11)
    );
    ok(12);
    assert_eq!(
        at(12)["progress"],
        json!([[1.0, 3.0], [2.0, 3.0], [3.0, 3.0]]),
        "{what}: {}",
        at(12)
    );
    // Cancellation reached the upstream: the legacy one records it, the
    // modern one says so on stderr (in gavel's log).
    assert_eq!(at(3)["cancelled"], true, "{what}: {}", at(3));
    assert_eq!(at(8)["cancelled"], true, "{what}: {}", at(8));
    eventually(
        &format!("{what}: the legacy upstream saw the cancellation"),
        || {
            records(&s.path("legacy.jsonl"))
                .iter()
                .any(|r| r.get("cancelled").is_some())
        },
    );
    eventually(
        &format!("{what}: the modern upstream saw the cancellation"),
        || s.log_text().contains("tick cancelled after"),
    );
    // A list change reached the host, and the new tool is listed.
    for (i, tool) in [(4, "legacy__grown_legacy"), (9, "modern__grown_modern")] {
        assert_eq!(at(i)["heard"], true, "{what}: step {i}: {}", at(i));
        assert!(
            at(i)["tools"].as_array().unwrap().iter().any(|t| t == tool),
            "{what}: step {i}: {}",
            at(i)
        );
    }
}

fn eventually(what: &str, ok: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !ok() {
        assert!(start.elapsed() < PATIENCE, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

async fn over_stdio(mode: &str, era: &str) {
    let s = matrix();
    let mut target = vec![GAVEL.to_string()];
    target.extend(s.run_args());
    let (connected, steps) = python_script(&s, "python_matrix.py", mode, &target, plan()).await;
    check(&s, &format!("{mode} over stdio"), &connected, &steps, era);
}

async fn over_http(mode: &str, era: &str) {
    let s = matrix();
    let state = s.path("state");
    let (mut gavel, port) =
        common::gavel_serve(&s, &[("GAVEL_STATE_DIR", state.to_str().unwrap())]).await;
    let url = format!("http://127.0.0.1:{port}/mcp");
    let (connected, steps) = python_script(&s, "python_matrix.py", mode, &[url], plan()).await;
    check(&s, &format!("{mode} over HTTP"), &connected, &steps, era);
    gavel.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_legacy_host_over_stdio_gets_every_round_trip_from_both_eras() {
    over_stdio("legacy", "2025-11-25").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_legacy_host_over_http_gets_every_round_trip_from_both_eras() {
    over_http("legacy", "2025-11-25").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_auto_host_over_stdio_picks_2026_and_gets_every_round_trip() {
    over_stdio("auto", "2026-07-28").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_auto_host_over_http_picks_2026_and_gets_every_round_trip() {
    over_http("auto", "2026-07-28").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_modern_host_over_stdio_gets_every_round_trip_from_both_eras() {
    over_stdio("2026-07-28", "2026-07-28").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_modern_host_over_http_gets_every_round_trip_from_both_eras() {
    over_http("2026-07-28", "2026-07-28").await;
}
