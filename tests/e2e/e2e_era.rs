//! MCP eras toward upstreams (`servers.NAME.era`, `src/upstream/era.rs`)
//! against a real MCP 2026-07-28-only server: the official TypeScript SDK
//! v2's `serveStdio(…, { legacy: 'reject' })` (`tests/fixture/modern_only.mjs`;
//! the SDK is installed pinned by `scripts/setup`), behind the real gavel
//! binary, driven by a real rmcp host in the legacy era.

use crate::common;

use std::path::{Path, PathBuf};

use common::*;
use rmcp::model::{CallToolRequest, CallToolRequestParams, ClientRequest, ServerResult};
use serde_json::{Value, json};

pub(crate) fn modern_only_server() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sdk = root.join(".deps/node-mcp2/node_modules/@modelcontextprotocol/server/package.json");
    assert!(
        sdk.exists(),
        "{} is missing: run scripts/setup first",
        sdk.display()
    );
    root.join("tests/fixture/modern_only.mjs")
}

/// `add` is allowed below 100 and denied from there: a decision that reads
/// the call's arguments.
const POLICY: &str = r#"package mcp.modern

violations contains "too_big" if input.action.args.a >= 100

decision := {"allow": true} if count(violations) == 0

decision := {"allow": false, "reasons": sort(violations)} if count(violations) > 0
"#;

/// The modern-only server as `[servers.modern]` with `POLICY`, a decision
/// log, and `extra` after the server's keys.
fn setup(extra: &str) -> Setup {
    Setup::with(|s| {
        let bundle =
            common::policy::bundle(s.dir.path(), "modern", "mcp/modern", json!({}), POLICY);
        format!(
            "{}[servers.modern]\ncommand = \"node\"\nargs = [{:?}]\nstartup_timeout = \"30s\"\ncall_timeout = \"30s\"\nbundle = {:?}\n{extra}",
            s.decision_log_table(),
            modern_only_server().display().to_string(),
            bundle.display().to_string()
        )
    })
}

/// gavel on `s`, its status in `s`'s own state directory.
async fn connect(s: &Setup) -> Client {
    let mut cmd = s.command();
    cmd.env("GAVEL_STATE_DIR", s.path("state"));
    connect_cmd(cmd, TestHost::new()).await
}

/// `gavel status --json` for `s`: the one instance's upstream `name`.
pub(crate) fn upstream_status(s: &Setup, name: &str) -> Value {
    let out = std::process::Command::new(GAVEL)
        .args(["status", "--json"])
        .env("GAVEL_STATE_DIR", s.path("state"))
        .output()
        .unwrap();
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    all[0]["session"]["upstreams"][name].clone()
}

fn status_text(s: &Setup) -> String {
    let out = std::process::Command::new(GAVEL)
        .arg("status")
        .env("GAVEL_STATE_DIR", s.path("state"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_modern_only_server_is_listed_called_and_decided_through_gavel() {
    let s = setup("");
    let client = connect(&s).await;
    let names = tool_names(&client).await;
    assert!(
        names.contains(&"add".to_string()) && names.contains(&"envelope".to_string()),
        "{names:?}\n{}",
        s.log_text()
    );
    let r = call(&client, "add", json!({"a": 2, "b": 40}))
        .await
        .unwrap();
    assert_eq!(text(&r), "sum: 42", "{r:?}");
    assert_eq!(r.structured_content, Some(json!({"sum": 42})));
    assert_ne!(r.is_error, Some(true));
    // The policy reads the arguments: this one is denied, as any call is.
    let denied = call(&client, "add", json!({"a": 200, "b": 1}))
        .await
        .unwrap();
    assert_eq!(denied.is_error, Some(true), "{denied:?}");
    assert!(text(&denied).contains("too_big"), "{}", text(&denied));
    // Structured output that only 2026-07-28 allows (an array) reaches the
    // legacy host in the shape its revision allows: as text, without
    // `structuredContent` or the array-rooted `outputSchema` (rmcp 3.11,
    // #1340).
    let primes = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.name == "primes")
        .expect("primes is listed");
    assert_eq!(primes.output_schema, None, "{primes:?}");
    let r = call(&client, "primes", json!({})).await.unwrap();
    assert_eq!(r.structured_content, None, "{r:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&text(&r)).ok(),
        Some(json!([2, 3, 5])),
        "{r:?}"
    );
    let log = s.decisions();
    let adds: Vec<&Value> = log
        .iter()
        .filter(|d| d["input"]["action"]["tool"] == "add")
        .collect();
    assert_eq!(adds.len(), 2, "{log:?}");
    assert_eq!(adds[0]["result"]["allow"], true);
    assert_eq!(adds[1]["result"]["allow"], false);
    eventually(
        "gavel status shows the upstream ready in the modern era",
        || {
            let up = upstream_status(&s, "modern");
            up["phase"] == "ready" && up["era"] == "modern"
        },
    )
    .await;
    assert!(
        status_text(&s).contains("modern: upstream ready, modern era"),
        "{}",
        status_text(&s)
    );
    client.cancel().await.unwrap();
}

/// The host's connection keys in `_meta` stay with gavel; gavel's own
/// envelope (2026-07-28, the host's client info, the capabilities gavel
/// can honour for it — the host's elicitation, sampling and roots from its
/// `initialize`, never the ones its `_meta` claims) reaches the upstream,
/// and the host's other keys pass.
#[tokio::test(flavor = "multi_thread")]
async fn the_host_connection_meta_never_reaches_a_modern_upstream() {
    let s = setup("");
    let mut host = TestHost::bare();
    host.caps.elicitation = Some(Default::default());
    let mut cmd = s.command();
    cmd.env("GAVEL_STATE_DIR", s.path("state"));
    let client = connect_cmd(cmd, host).await;
    tool_names(&client).await;
    let mut p = CallToolRequestParams::new("envelope");
    p.arguments = Some(Default::default());
    p.meta = Some(
        serde_json::from_value(json!({
            "io.modelcontextprotocol/clientInfo": {"name": "sneaky-host", "version": "6.6.6"},
            "io.modelcontextprotocol/clientCapabilities": {"sampling": {}},
            "io.modelcontextprotocol/logLevel": "debug",
            "x.vendor/trace": "kept",
        }))
        .unwrap(),
    );
    let req = CallToolRequest::new(p);
    let handle = client
        .peer()
        .send_request_with_option(
            ClientRequest::CallToolRequest(req),
            rmcp::service::PeerRequestOptions::no_options(),
        )
        .await
        .unwrap();
    let ServerResult::CallToolResult(r) = handle.await_response().await.unwrap() else {
        panic!("not a tool result")
    };
    let seen: Value = serde_json::from_str(&text(&r)).unwrap_or_else(|e| panic!("{e}: {r:?}"));
    let env = &seen["envelope"];
    assert_eq!(
        env["io.modelcontextprotocol/protocolVersion"], "2026-07-28",
        "{seen}"
    );
    assert_eq!(
        env["io.modelcontextprotocol/clientInfo"]["name"], "gavel-e2e-host",
        "{seen}"
    );
    assert_eq!(
        env["io.modelcontextprotocol/clientCapabilities"],
        json!({"elicitation": {"form": {}}}),
        "{seen}"
    );
    assert!(
        env.get("io.modelcontextprotocol/logLevel").is_none(),
        "{seen}"
    );
    assert_eq!(seen["meta"]["x.vendor/trace"], "kept", "{seen}");
    client.cancel().await.unwrap();
}

/// `era = "legacy"` against the same server: a named, permanent error —
/// the call's answer and `gavel status` say which server and why — never
/// "Unknown tool", and no restart loop.
#[tokio::test(flavor = "multi_thread")]
async fn a_legacy_only_setting_against_a_modern_only_server_is_a_named_error() {
    let s = setup("era = \"legacy\"\n");
    let client = connect(&s).await;
    let msg = refused(
        &client,
        &s,
        ("modern", "add", json!({"a": 1, "b": 2})),
        &[
            "server \"modern\" cannot be used",
            "refused initialize",
            "-32022",
            "servers.modern.era = \"legacy\"",
        ],
    )
    .await;
    assert!(!msg.contains("Unknown tool"), "{msg}");
    let up = upstream_status(&s, "modern");
    assert_eq!(up["restarts"], 0, "{up}");
    assert!(
        up["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("server \"modern\" cannot be used")),
        "{up}"
    );
    let text = status_text(&s);
    assert!(
        text.contains("modern: upstream incompatible") && text.contains("refused initialize"),
        "{text}"
    );
    assert!(
        recorded_nothing(&s),
        "no call was decided: {:?}",
        s.decisions()
    );
    client.cancel().await.unwrap();
}

/// Calls `tool` of `server`, whose era is refused: the call fails with an
/// error holding every one of `parts`, and `gavel status` shows the server
/// incompatible. Returns the error's text.
async fn refused(
    client: &Client,
    s: &Setup,
    (server, tool, args): (&str, &str, Value),
    parts: &[&str],
) -> String {
    let e = call(client, tool, args)
        .await
        .expect_err("no upstream to call");
    let msg = e.to_string();
    for part in parts {
        assert!(msg.contains(part), "{part:?} missing from: {msg}");
    }
    eventually("gavel status shows the upstream incompatible", || {
        upstream_status(s, server)["phase"] == "incompatible"
    })
    .await;
    msg
}

fn recorded_nothing(s: &Setup) -> bool {
    s.decisions()
        .iter()
        .all(|d| d["input"]["action"]["tool"] != "add")
}

/// `era = "modern"` against a legacy server (the fixture, which answers
/// `server/discover` with -32601): the same kind of named error.
#[tokio::test(flavor = "multi_thread")]
async fn a_modern_only_setting_against_a_legacy_server_is_a_named_error() {
    let s = Setup::with(|s| {
        format!(
            "{}era = \"modern\"\n",
            fixture_server("fx", &[], &s.record("fx"))
        )
    });
    let client = connect(&s).await;
    refused(
        &client,
        &s,
        ("fx", "echo", json!({"text": "hi"})),
        &[
            "server \"fx\" cannot be used",
            "does not speak MCP 2026-07-28",
            "-32601",
            "servers.fx.era = \"modern\"",
        ],
    )
    .await;
    client.cancel().await.unwrap();
}

/// A restart goes straight to the era found at the first start: the
/// server is not asked `initialize` again.
#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_modern_server_is_not_asked_initialize_again() {
    let s = setup("");
    let client = connect(&s).await;
    // It answers, then exits: whether the answer wins the race is not the
    // point.
    let _ = call(&client, "crash", json!({})).await;
    eventually("the server was restarted and is ready again", || {
        let up = upstream_status(&s, "modern");
        up["restarts"] == 1 && up["phase"] == "ready"
    })
    .await;
    let r = call(&client, "add", json!({"a": 1, "b": 2})).await.unwrap();
    assert_eq!(text(&r), "sum: 3");
    let refusals = s.log_text().matches("refused initialize").count();
    assert_eq!(refusals, 1, "{}", s.log_text());
    client.cancel().await.unwrap();
}

/// The same modern-only server over Streamable HTTP (the SDK's
/// `createMcpHandler`, legacy requests rejected with 400 and -32022): found
/// with `server/discover` after its refusal of `initialize`, called and
/// decided like the stdio one.
#[tokio::test(flavor = "multi_thread")]
async fn a_modern_only_http_server_is_reached_with_discover() {
    use tokio::io::AsyncBufReadExt;
    let mut server = tokio::process::Command::new("node")
        .arg(modern_only_server())
        .args(["--http", "0"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(server.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("the server says where it listens")
        .unwrap()
        .and_then(|l| l.strip_prefix("LISTENING ").map(String::from))
        .expect("a LISTENING line");
    let s = Setup::with(|s| {
        let bundle =
            common::policy::bundle(s.dir.path(), "modern", "mcp/modern", json!({}), POLICY);
        format!(
            "{}[servers.modern]\nurl = {url:?}\nstartup_timeout = \"30s\"\ncall_timeout = \"30s\"\nbundle = {:?}\n",
            s.decision_log_table(),
            bundle.display().to_string()
        )
    });
    let client = connect(&s).await;
    let r = call(&client, "add", json!({"a": 20, "b": 22})).await;
    let r = r.unwrap_or_else(|e| panic!("{e}\n{}", s.log_text()));
    assert_eq!(text(&r), "sum: 42", "{r:?}");
    let denied = call(&client, "add", json!({"a": 100, "b": 0}))
        .await
        .unwrap();
    assert_eq!(denied.is_error, Some(true), "{denied:?}");
    eventually(
        "gavel status shows the HTTP upstream in the modern era",
        || upstream_status(&s, "modern")["era"] == "modern",
    )
    .await;
    client.cancel().await.unwrap();
}

/// The SDK server as `[servers.NAME]` (no policy) started with `flag`.
fn variant(name: &str, flag: &str) -> Setup {
    Setup::with(|_| {
        format!(
            "[servers.{name}]\ncommand = \"node\"\nargs = [{:?}, {flag:?}]\nstartup_timeout = \"30s\"\n",
            modern_only_server().display().to_string()
        )
    })
}

/// A dual-era server (the same SDK's default, `legacy: 'serve'`) under the
/// default `era = "auto"` stays in the legacy era gavel has always used
/// with it (opened with `initialize`, which it accepts at once).
#[tokio::test(flavor = "multi_thread")]
async fn a_dual_era_server_stays_legacy_under_auto() {
    let s = variant("dual", "--dual");
    let client = connect(&s).await;
    let r = call(&client, "add", json!({"a": 1, "b": 1})).await.unwrap();
    assert_eq!(text(&r), "sum: 2");
    eventually("gavel status shows the legacy era", || {
        upstream_status(&s, "dual")["era"] == "legacy"
    })
    .await;
    assert!(
        !s.log_text().contains("refused initialize"),
        "{}",
        s.log_text()
    );
    client.cancel().await.unwrap();
}

/// A modern-only server that exits on `initialize` instead of refusing it:
/// under `auto` it is started again and reached with `server/discover` in
/// the same start (not restarted, not a loop).
#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_exits_on_initialize_is_started_again_with_discover() {
    let s = variant("strict", "--exit-on-initialize");
    let client = connect(&s).await;
    let r = call(&client, "add", json!({"a": 5, "b": 5}))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", s.log_text()));
    assert_eq!(text(&r), "sum: 10");
    eventually("gavel status shows the upstream's era", || {
        upstream_status(&s, "strict")["era"].is_string()
    })
    .await;
    let up = upstream_status(&s, "strict");
    assert_eq!(
        (up["era"].as_str(), up["restarts"].as_u64()),
        (Some("modern"), Some(0)),
        "{up}"
    );
    assert!(
        s.log_text().contains("trying the other era"),
        "{}",
        s.log_text()
    );
    client.cancel().await.unwrap();
}
