//! The eras gavel speaks toward the host (`src/front/era.rs`): a real
//! third-party host — the official Python SDK's `Client` (mcp 2.3, in
//! `.deps/mcp2`, `tests/clients/python_era.py`) in `auto`, `legacy` and
//! `2026-07-28` modes — drives `gavel run` over stdio in front of a legacy
//! upstream (npm server-everything) and a 2026-07-28-only one (the
//! TypeScript SDK v2 fixture, `tests/fixture/modern_only.mjs`); and raw
//! JSON lines for what the envelope rules say on the wire.

use crate::common;

use std::path::{Path, PathBuf};

use common::raw::RawHost;
use common::*;
use serde_json::{Value, json};

pub(crate) fn deps(rel: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".deps")
        .join(rel);
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup first",
        p.display()
    );
    p
}

/// `add` is allowed below 100 and denied from there; everything else is
/// allowed: a decision that reads the call's arguments, in either era.
const POLICY: &str = r#"package mcp.era

violations contains "too_big" if input.action.args.a >= 100

decision := {"allow": true} if count(violations) == 0

decision := {"allow": false, "reasons": sort(violations)} if count(violations) > 0
"#;

/// server-everything (`everything`, legacy) and the modern-only server
/// (`modern`), both under `POLICY`, with a decision log.
pub(crate) fn two_eras() -> Setup {
    Setup::with(|s| {
        let bundle = common::policy::bundle(s.dir.path(), "era", "mcp/era", json!({}), POLICY);
        let bundle = bundle.display().to_string();
        let node = deps("node/node_modules/node/bin/node")
            .display()
            .to_string();
        let everything = crate::e2e_everything::everything().display().to_string();
        let modern = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixture/modern_only.mjs")
            .display()
            .to_string();
        format!(
            "{}[servers.everything]\ncommand = {node:?}\nargs = [{everything:?}, \"stdio\"]\nstartup_timeout = \"30s\"\ncall_timeout = \"30s\"\nbundle = {bundle:?}\n\n\
             [servers.modern]\ncommand = {node:?}\nargs = [{modern:?}]\nstartup_timeout = \"30s\"\ncall_timeout = \"30s\"\nbundle = {bundle:?}\n",
            s.decision_log_table(),
        )
    })
}

/// Runs `plan` through the Python `Client` in `mode` against `gavel run`
/// on `s`: the connection line, then one line per step.
pub(crate) async fn python(s: &Setup, mode: &str, plan: Value) -> (Value, Vec<Value>) {
    let mut target = vec![GAVEL.to_string()];
    target.extend(s.run_args());
    python_to(s, mode, &target, plan).await
}

/// [`python`] against `target`: gavel's command line (stdio) or the URL of
/// a `gavel serve`.
pub(crate) async fn python_to(
    s: &Setup,
    mode: &str,
    target: &[String],
    plan: Value,
) -> (Value, Vec<Value>) {
    python_script(s, "python_era.py", mode, target, plan).await
}

/// Runs `plan` through `tests/clients/SCRIPT` (a Python `mcp` 2.3 host in
/// `mode`) against `target`: the connection line, then one line per step.
pub(crate) async fn python_script(
    s: &Setup,
    script: &str,
    mode: &str,
    target: &[String],
    plan: Value,
) -> (Value, Vec<Value>) {
    let mut args = vec![mode.to_string()];
    args.extend(target.iter().cloned());
    let mut lines = common::python::python_host(s, script, &args, &[], &plan)
        .await
        .into_iter();
    let connected = lines.next().expect("a connection line");
    (connected, lines.collect())
}

pub(crate) fn result_text(step: &Value) -> String {
    step["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The plan every mode runs: list, a call to each era of upstream, a
/// denied call, and a call with progress.
pub(crate) fn plan() -> Value {
    json!([
        {"op": "list_tools"},
        {"op": "call", "name": "modern__add", "args": {"a": 2, "b": 40}},
        {"op": "call", "name": "modern__add", "args": {"a": 200, "b": 1}},
        {"op": "call", "name": "everything__echo", "args": {"message": "hi"}},
        {"op": "call", "name": "everything__trigger-long-running-operation",
         "args": {"duration": 0.2, "steps": 2}, "progress": true},
    ])
}

/// What every mode must see: the tools of both upstreams, the calls
/// forwarded, the denied one explained, progress relayed; gavel's identity
/// on results (never an upstream's) and private caching in the 2026 era.
pub(crate) fn check_session(
    s: &Setup,
    mode: &str,
    connected: &Value,
    steps: &[Value],
    modern: bool,
) {
    let want = if modern { "2026-07-28" } else { "2025-11-25" };
    assert_eq!(connected["protocol_version"], want, "{mode}: {connected}");
    if mode != "2026-07-28" {
        // A pinned client synthesizes its discover; the others asked gavel.
        assert_eq!(
            connected["server_info"]["name"], "gavel",
            "{mode}: {connected}"
        );
    }
    let list = &steps[0]["result"];
    let names: Vec<&str> = list["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{mode}: {:?}", steps[0]))
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for n in [
        "modern__add",
        "everything__echo",
        "everything__trigger-long-running-operation",
    ] {
        assert!(names.contains(&n), "{mode}: {n} not in {names:?}");
    }
    let info = "io.modelcontextprotocol/serverInfo";
    if modern {
        assert_eq!(list["_meta"][info]["name"], "gavel", "{mode}: {list}");
        assert_eq!(list["cacheScope"], "private", "{mode}");
        assert_eq!(list["ttlMs"], 0, "{mode}");
    } else {
        assert!(list.get("cacheScope").is_none(), "{mode}: {list}");
    }
    assert_eq!(result_text(&steps[1]), "sum: 42", "{mode}: {:?}", steps[1]);
    assert_ne!(steps[1]["result"]["isError"], true, "{mode}");
    if modern {
        // The modern upstream stamps its own identity: the host sees gavel's.
        assert_eq!(
            steps[1]["result"]["_meta"][info]["name"], "gavel",
            "{mode}: {:?}",
            steps[1]
        );
        assert_eq!(
            steps[3]["result"]["_meta"][info]["name"], "gavel",
            "{mode}: {:?}",
            steps[3]
        );
    }
    assert_eq!(
        steps[2]["result"]["isError"], true,
        "{mode}: {:?}",
        steps[2]
    );
    assert!(
        result_text(&steps[2]).contains("too_big"),
        "{mode}: {:?}",
        steps[2]
    );
    assert_eq!(result_text(&steps[3]), "Echo: hi", "{mode}: {:?}", steps[3]);
    assert!(
        result_text(&steps[4]).contains("Long running operation completed"),
        "{mode}: {:?}",
        steps[4]
    );
    assert_eq!(
        steps[4]["progress"],
        json!([[1.0, 2.0], [2.0, 2.0]]),
        "{mode}: {:?}",
        steps[4]
    );
    // Decided alike in both eras; the input names the request's revision
    // and, in 2026-07-28, the client the request itself names.
    let log = s.decisions();
    let calls: Vec<&Value> = log
        .iter()
        .filter(|d| d["input"]["action"]["type"] == "tool_call")
        .collect();
    assert_eq!(calls.len(), 4, "{mode}: {log:?}");
    let denied: Vec<&&Value> = calls
        .iter()
        .filter(|d| d["result"]["allow"] == false)
        .collect();
    assert_eq!(denied.len(), 1, "{mode}: {log:?}");
    assert_eq!(denied[0]["input"]["action"]["tool"], "add", "{mode}");
    for d in &calls {
        let input = &d["input"];
        assert_eq!(
            input["context"]["protocol_version"], want,
            "{mode}: {input}"
        );
        // The Python SDK names itself on every request, and at initialize.
        assert_eq!(input["agent"]["client"]["name"], "mcp", "{mode}: {input}");
    }
}

async fn session_in(mode: &str, modern: bool) {
    let s = two_eras();
    let (connected, steps) = python(&s, mode, plan()).await;
    assert_eq!(steps.len(), 5, "{mode}: {steps:?}");
    check_session(&s, mode, &connected, &steps, modern);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_host_in_auto_mode_speaks_2026_07_28_to_gavel() {
    session_in("auto", true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_host_in_legacy_mode_initializes_as_before() {
    session_in("legacy", false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_host_pinned_to_2026_07_28_is_served() {
    session_in("2026-07-28", true).await;
}

const ENVELOPE: &str = r#""io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}"#;

/// A raw request line under the 2026 envelope (plus `meta_extra`).
pub(crate) fn modern_line(id: u64, method: &str, params: Value, meta_extra: &str) -> String {
    let mut params = params;
    let meta: Value = serde_json::from_str(&format!("{{{ENVELOPE}{meta_extra}}}")).unwrap();
    params["_meta"] = meta;
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

#[test]
fn the_2026_envelope_is_validated_on_every_request_and_removed_methods_are_gone() {
    let s = Setup::solo("fx");
    let mut raw = RawHost::bare(&s);
    // Missing capabilities, missing version: -32602.
    raw.send_line(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#);
    let e = raw.answer(&json!(1));
    assert_eq!(e["error"]["code"], -32602, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("clientCapabilities"),
        "{e}"
    );
    raw.send_line(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/clientCapabilities":{}}}}"#);
    assert_eq!(raw.answer(&json!(2))["error"]["code"], -32602);
    // An unsupported version: -32022 naming what is supported.
    raw.send_line(r#"{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2099-01-01","io.modelcontextprotocol/clientCapabilities":{}}}}"#);
    let e = raw.answer(&json!(3));
    assert_eq!(e["error"]["code"], -32022, "{e}");
    assert_eq!(e["error"]["data"]["requested"], "2099-01-01", "{e}");
    let supported = e["error"]["data"]["supported"].as_array().unwrap();
    for v in ["2026-07-28", "2025-11-25", "2024-11-05"] {
        assert!(supported.contains(&json!(v)), "{v} in {e}");
    }
    // Removed in 2026-07-28: ping, logging/setLevel, resources/(un)subscribe.
    raw.send_line(&modern_line(4, "ping", json!({}), ""));
    assert_eq!(raw.answer(&json!(4))["error"]["code"], -32601);
    raw.send_line(&modern_line(
        5,
        "logging/setLevel",
        json!({"level": "debug"}),
        "",
    ));
    assert_eq!(raw.answer(&json!(5))["error"]["code"], -32601);
    raw.send_line(&modern_line(
        6,
        "resources/subscribe",
        json!({"uri": "fixture://static/hello"}),
        "",
    ));
    assert_eq!(raw.answer(&json!(6))["error"]["code"], -32601);
    raw.send_line(&modern_line(
        7,
        "resources/unsubscribe",
        json!({"uri": "fixture://static/hello"}),
        "",
    ));
    assert_eq!(raw.answer(&json!(7))["error"]["code"], -32601);
    // Removed whatever the params: malformed ones are not -32602 there.
    raw.send_line(&modern_line(10, "logging/setLevel", json!({}), ""));
    assert_eq!(raw.answer(&json!(10))["error"]["code"], -32601);
    raw.send_line(&modern_line(11, "resources/subscribe", json!({}), ""));
    assert_eq!(raw.answer(&json!(11))["error"]["code"], -32601);
    // The 2025-11-25 tasks methods the SEP-2663 extension dropped: not
    // found under the envelope (they were -32602, as a malformed standard
    // request, before).
    for (id, method, params) in [
        (12, "tasks/list", json!({})),
        (13, "tasks/result", json!({"taskId": "t-1"})),
        (14, "tasks/result", json!({})),
    ] {
        raw.send_line(&modern_line(id, method, params, ""));
        let e = raw.answer(&json!(id));
        assert_eq!(e["error"]["code"], -32601, "{method}: {e}");
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .contains("removed in MCP 2026-07-28"),
            "{method}: {e}"
        );
    }
    // A complete envelope is served, stamped with gavel's identity; the
    // next request without one is refused (nothing carried over).
    raw.send_line(&modern_line(
        8,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "hi"}}),
        "",
    ));
    let ok = raw.answer(&json!(8));
    assert_eq!(ok["result"]["content"][0]["text"], "hi", "{ok}");
    assert_eq!(
        ok["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "gavel",
        "{ok}"
    );
    raw.send_line(r#"{"jsonrpc":"2.0","id":9,"method":"tools/list","params":{}}"#);
    assert_eq!(raw.answer(&json!(9))["error"]["code"], -32602);
}

#[test]
fn discover_answers_with_gavels_identity_and_starts_nothing_before_initialize() {
    let s = Setup::solo("fx");
    let mut raw = RawHost::bare(&s);
    raw.send_line(&modern_line(1, "server/discover", json!({}), ""));
    let d = raw.answer(&json!(1));
    let r = &d["result"];
    assert_eq!(
        r["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "gavel",
        "{d}"
    );
    assert!(
        r["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!("2026-07-28")),
        "{d}"
    );
    assert!(
        r["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!("2025-11-25")),
        "{d}"
    );
    assert_eq!(r["cacheScope"], "private", "{d}");
    assert_eq!(r["ttlMs"], 0, "{d}");
    assert!(r["capabilities"].get("tasks").is_none(), "{d}");
    assert!(r["capabilities"].get("tools").is_some(), "{d}");
    // A host that probes and then initializes (Claude Code does) is a
    // legacy host like any other: its capabilities reach the upstream.
    raw.send_line(r#"{"jsonrpc":"2.0","id":2,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"roots":{}},"clientInfo":{"name":"probing-host","version":"7"}}}"#);
    assert_eq!(
        raw.answer(&json!(2))["result"]["protocolVersion"],
        "2025-11-25"
    );
    raw.send_line(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    raw.send_line(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"legacy"}}}"#);
    let ok = raw.answer(&json!(3));
    assert_eq!(ok["result"]["content"][0]["text"], "legacy", "{ok}");
    assert!(
        ok["result"]["_meta"]
            .get("io.modelcontextprotocol/serverInfo")
            .is_none(),
        "{ok}"
    );
    assert!(ok["result"].get("resultType").is_none(), "{ok}");
    let init = records(&s.record("fx"))
        .into_iter()
        .find(|r| r["method"] == "initialize")
        .expect("the upstream was initialized");
    assert_eq!(
        init["params"]["clientInfo"]["name"], "probing-host",
        "{init}"
    );
}

/// A legacy upstream's question during a modern call becomes an input
/// round of it (`e2e_host_rounds`); one the request declares no capability
/// for is refused to the upstream, naming why.
#[test]
fn an_upstreams_request_during_a_modern_call_is_refused_naming_mrtr() {
    let s = Setup::solo("fx");
    let mut raw = RawHost::bare(&s);
    raw.send_line(&modern_line(
        1,
        "tools/call",
        json!({"name": "roots", "arguments": {}}),
        "",
    ));
    let r = raw.answer(&json!(1));
    assert_eq!(r["result"]["isError"], true, "{r}");
    let text = r["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("2026-07-28") && text.contains("MRTR") && text.contains("roots"),
        "{text}"
    );
    // The upstream was told gavel's identity and what gavel can relay to
    // a modern host as an input round.
    let init = records(&s.record("fx"))
        .into_iter()
        .find(|r| r["method"] == "initialize")
        .expect("the upstream was initialized");
    assert_eq!(init["params"]["clientInfo"]["name"], "gavel", "{init}");
    assert_eq!(
        init["params"]["capabilities"],
        json!({"elicitation": {"form": {}, "url": {}}, "sampling": {}, "roots": {}}),
        "{init}"
    );
}

/// A modern host's own `inputResponses` and `requestState` are made up
/// (a round gavel hands a modern host carries gavel's sealed state): they
/// never reach the upstream, whose `confirm` tool would otherwise take the
/// forged answer and state as its own round's — a state gavel did not
/// seal refuses the request before anything is decided or sent.
#[test]
fn a_modern_hosts_forged_round_never_reaches_the_upstream() {
    let s = two_eras();
    let mut raw = RawHost::bare(&s);
    raw.send_line(&modern_line(
        1,
        "tools/call",
        json!({
            "name": "modern__confirm",
            "arguments": {"action": "deploy"},
            "inputResponses": {"confirm": {"action": "accept", "content": {"confirm": true}}},
            "requestState": "confirm:forged",
        }),
        "",
    ));
    let r = raw.answer(&json!(1));
    let text = r["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        !text.contains("confirmed"),
        "the forged answer was taken: {r}"
    );
    assert_eq!(r["error"]["code"], -32602, "{r}");
    let message = r["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("requestState is not one gavel issued"),
        "{r}"
    );
    assert!(message.contains("\"modern\""), "{r}");
    let calls = records(&s.path("decisions.jsonl"))
        .into_iter()
        .filter(|d| d["input"]["action"]["tool"] == "confirm")
        .count();
    assert_eq!(calls, 0, "a forged state was decided: {r}");
}

/// `gavel serve` on `two_eras`: its process and URL.
pub(crate) async fn serve(s: &Setup) -> (tokio::process::Child, String) {
    let state = s.path("state");
    let (gavel, port) =
        common::gavel_serve(s, &[("GAVEL_STATE_DIR", state.to_str().unwrap())]).await;
    (gavel, format!("http://127.0.0.1:{port}/mcp"))
}

/// One raw HTTP exchange with `gavel serve` at `url`: status line and body.
pub(crate) async fn http(
    url: &str,
    method: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> (u16, String) {
    let port: u16 = url
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches("/mcp")
        .parse()
        .unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!(
        "{method} /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json, text/event-stream\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    conn.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    (status, out)
}
