//! End to end: what a broken or hostile host sends. Each gets a clear JSON-RPC
//! error on the right id and gavel keeps serving.

use crate::common;

use common::raw::RawHost as Raw;
use common::*;
use serde_json::{Value, json};

fn setup() -> Setup {
    let s = Setup::new("[limits]\nmax_message_bytes = \"64KiB\"\n\n");
    let cfg = format!(
        "[limits]\nmax_message_bytes = \"64KiB\"\n\n{}",
        fixture_server("solo", &[], &s.path("r.jsonl"))
    );
    s.write_config(&cfg);
    s
}

#[test]
fn malformed_unknown_wrong_types_and_oversized_each_get_an_error() {
    let s = setup();
    let mut raw = Raw::start(&s);

    raw.send_line("{this is not json");
    let e = raw.idless_error();
    assert_eq!(e["error"]["code"], -32700, "{e}");

    raw.send_line(r#"{"jsonrpc":"2.0","id":11,"method":"no/such/method","params":{}}"#);
    let e = raw.answer(&json!(11));
    assert_eq!(e["error"]["code"], -32601, "{e}");

    // A malformed tools/call lands in rmcp's custom-request path: it must be
    // refused there, never forwarded.
    raw.send_line(
        r#"{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":123,"arguments":{}}}"#,
    );
    let e = raw.answer(&json!(12));
    assert_eq!(e["error"]["code"], -32602, "{e}");

    raw.send_line(r#"{"jsonrpc":"2.0","id":13,"method":"tools/call","params":{"name":"echo","arguments":"not an object"}}"#);
    let e = raw.answer(&json!(13));
    assert!(e.get("error").is_some(), "{e}");

    let big = "x".repeat(200 * 1024);
    raw.send_line(&format!(
        r#"{{"jsonrpc":"2.0","id":"big-1","method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{big}"}}}}}}"#
    ));
    let e = raw.answer(&json!("big-1"));
    assert_eq!(e["error"]["code"], -32600, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_message_bytes"),
        "{e}"
    );

    // Still serving, and nothing malformed reached the upstream.
    raw.send_line(r#"{"jsonrpc":"2.0","id":14,"method":"tools/call","params":{"name":"echo","arguments":{"text":"alive"}}}"#);
    let ok = raw.answer(&json!(14));
    assert_eq!(ok["result"]["content"][0]["text"], "alive", "{ok}");
    let calls = recorded_calls(&s.path("r.jsonl"));
    assert_eq!(
        calls.len(),
        1,
        "only the good call was forwarded: {calls:?}"
    );
}

#[test]
fn server_discover_on_a_legacy_session_is_answered_and_the_session_goes_on() {
    let s = setup();
    let mut raw = Raw::start(&s);
    // As a dual-era host probes: 2026-07-28 metadata included.
    raw.send_line(r#"{"jsonrpc":"2.0","id":21,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"dual","version":"1"}}}}"#);
    let d = raw.answer(&json!(21));
    assert_eq!(
        d["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "gavel",
        "{d}"
    );
    raw.send_line(r#"{"jsonrpc":"2.0","id":22,"method":"ping"}"#);
    assert!(raw.answer(&json!(22)).get("result").is_some());
}

#[test]
fn malformed_params_of_every_decided_request_are_refused_never_forwarded() {
    let s = setup();
    let mut raw = Raw::start(&s);
    let cases = [
        ("resources/read", json!({"uri": 5})),
        ("resources/read", json!({})),
        (
            "resources/subscribe",
            json!({"uri": ["fixture://static/hello"]}),
        ),
        ("resources/unsubscribe", json!({"uri": {}})),
        ("prompts/get", json!({"name": 1})),
        (
            "prompts/get",
            json!({"name": "greet", "arguments": "not an object"}),
        ),
        (
            "completion/complete",
            json!({"ref": "greet", "argument": {"name": "name", "value": "a"}}),
        ),
        (
            "completion/complete",
            json!({"ref": {"type": "ref/prompt", "name": "greet"}}),
        ),
    ];
    for (i, (method, params)) in cases.iter().enumerate() {
        let id = 100 + i;
        raw.send_line(
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string(),
        );
        let e = raw.answer(&json!(id));
        assert_eq!(e["error"]["code"], -32602, "{method} {params}: {e}");
    }
    // Still serving; none of them reached the upstream.
    raw.send_line(r#"{"jsonrpc":"2.0","id":199,"method":"resources/read","params":{"uri":"fixture://static/hello"}}"#);
    let ok = raw.answer(&json!(199));
    assert!(ok.get("result").is_some(), "{ok}");
    let got = records(&s.path("r.jsonl"));
    let forwarded: Vec<&Value> = got
        .iter()
        .filter(|v| {
            [
                "resources/read",
                "resources/subscribe",
                "resources/unsubscribe",
                "prompts/get",
                "completion/complete",
            ]
            .contains(&v["method"].as_str().unwrap_or(""))
        })
        .collect();
    assert_eq!(forwarded.len(), 1, "only the good read: {forwarded:?}");
}

/// An upstream that sends malformed `sampling/createMessage` and
/// `elicitation/create` requests (tests/fixture/bad_requester.py): each gets
/// a JSON-RPC error, none reaches the host, and gavel keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn malformed_upstream_requests_never_reach_the_host() {
    let s = Setup::with(|s| {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixture/bad_requester.py");
        format!(
            "[log]\ndecisions = {:?}\n\n[servers.bad]\ncommand = \"python3\"\nargs = [{:?}]\n",
            s.path("decisions.jsonl").display().to_string(),
            script.display().to_string()
        )
    });
    let host = TestHost::new();
    let seen = host.seen.clone();
    let client = s.connect(host).await;
    let r = call(&client, "ask_bad", json!({})).await.unwrap();
    let answers: Vec<Value> = serde_json::from_str(&text(&r)).unwrap();
    assert_eq!(answers.len(), 3, "{answers:?}");
    for a in &answers {
        assert!(a["result"].is_null(), "refused, not answered: {a}");
        assert_eq!(a["error"]["code"], -32602, "invalid params: {a}");
    }
    {
        let seen = seen.lock().unwrap();
        assert!(seen.samplings.is_empty(), "{:?}", seen.samplings);
        assert!(seen.elicitations.is_empty(), "{:?}", seen.elicitations);
    }
    // Still serving.
    assert!(call(&client, "ask_bad", json!({})).await.is_ok());
    client.cancel().await.unwrap();
}

/// `depth` levels of objects and arrays with decoy ids at every level, as
/// JSON text (serde_json itself refuses to build or read such a value).
fn nested(depth: usize) -> String {
    let open: String = (0..depth)
        .map(|i| if i % 2 == 0 { r#"{"id":1,"k":"# } else { "[" })
        .collect();
    let close: String = (0..depth)
        .rev()
        .map(|i| if i % 2 == 0 { '}' } else { ']' })
        .collect();
    format!("{open}0{close}")
}

/// A request nested 5,000 levels deep — beyond what serde_json (and so
/// rmcp) reads — is answered on its id whether the id comes before or after
/// the deep params; one with no top-level id gets the error with id null.
#[test]
fn deeply_nested_requests_are_answered_on_their_id() {
    let s = setup();
    let mut raw = Raw::start(&s);
    let deep = nested(5000);
    raw.send_line(&format!(
        r#"{{"jsonrpc":"2.0","id":"deep-before","method":"tools/call","params":{{"name":"echo","arguments":{{"text":{deep}}}}}}}"#
    ));
    raw.send_line(&format!(
        r#"{{"jsonrpc":"2.0","method":"tools/call","params":{{"name":"echo","arguments":{{"text":{deep}}}}},"id":31}}"#
    ));
    for id in [json!("deep-before"), json!(31)] {
        let e = raw.answer(&id);
        assert_eq!(e["error"]["code"], -32600, "{e}");
        let msg = e["error"]["message"].as_str().unwrap();
        assert!(msg.contains("nested 5003 levels deep"), "{msg}");
    }
    raw.send_line(&format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/roots/list_changed","params":{deep}}}"#
    ));
    let e = raw.idless_error();
    assert_eq!(e.get("id"), Some(&Value::Null), "JSON-RPC 2.0 §5: {e}");
    assert_eq!(e["error"]["code"], -32600, "{e}");
    // Still serving, and nothing deep reached the upstream.
    raw.send_line(r#"{"jsonrpc":"2.0","id":32,"method":"tools/call","params":{"name":"echo","arguments":{"text":"alive"}}}"#);
    let ok = raw.answer(&json!(32));
    assert_eq!(ok["result"]["content"][0]["text"], "alive", "{ok}");
    assert_eq!(recorded_calls(&s.path("r.jsonl")).len(), 1);
}

/// The same from an upstream (tests/fixture/deep_upstream.py): a reply
/// nested 5,000 levels deep fails the call it answers (id first or last)
/// instead of leaving it to call_timeout; a deep request from the upstream
/// is answered on its id.
#[tokio::test(flavor = "multi_thread")]
async fn deep_lines_from_an_upstream_fail_the_call_or_are_answered() {
    let s = Setup::with(|_| {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixture/deep_upstream.py");
        format!(
            "[servers.deep]\ncommand = \"python3\"\nargs = [{:?}]\ncall_timeout = \"20s\"\n",
            script.display().to_string()
        )
    });
    let client = s.connect(TestHost::new()).await;
    for id_last in [false, true] {
        let r = tokio::time::timeout(
            PATIENCE,
            call(&client, "deep_reply", json!({ "id_last": id_last })),
        )
        .await
        .expect("an answer, not a hang");
        let e = r.expect_err("a reply gavel cannot read fails the call");
        let e = e.to_string();
        assert!(
            e.contains("unreadable") && e.contains("nested 5003 levels deep"),
            "id_last {id_last}: {e}"
        );
    }
    let r = call(&client, "deep_request", json!({})).await.unwrap();
    let answer: Value = serde_json::from_str(&text(&r)).unwrap();
    assert_eq!(answer["id"], "deep-up-1", "{answer}");
    assert_eq!(answer["error"]["code"], -32600, "{answer}");
    assert_eq!(
        text(&call(&client, "ok", json!({})).await.unwrap()),
        "alive"
    );
    client.cancel().await.unwrap();
}

/// `gavel config check` refuses what `run` and `serve` would refuse, and
/// names the dotted field: values parsed at use (a log filter, an `[auth]`
/// algorithm, a Redis URL, an upstream URL), type errors, and the files
/// `serve` reads at start (the `[auth]` key, the TLS pair).
#[test]
fn config_check_refuses_what_run_and_serve_refuse_naming_the_field() {
    let server = "[servers.fs]\ncommand = \"x\"\n";
    let auth = "[auth]\nissuer = \"https://idp.example\"\naudience = \"https://g.example/mcp\"\n";
    let cases = [
        ("[log]\nlevel = \"gavel=loud\"\n".to_string(), "log.level"),
        (
            format!("{auth}key_env = \"GAVEL_TEST_SECRET\"\n"),
            "auth.algorithm",
        ),
        (
            format!("{auth}key_file = \"k.pem\"\nalgorithm = \"RS999\"\n"),
            "auth.algorithm",
        ),
        (
            "[state]\nbackend = \"redis\"\nredis_url = \"http://cache.example\"\n".to_string(),
            "state.redis_url",
        ),
        (
            "[servers.web]\nurl = \"https://\"\n".to_string(),
            "servers.web.url",
        ),
        (
            "[servers.two]\ncommand = \"x\"\nstartup_timeout = 5\n".to_string(),
            "servers.two.startup_timeout",
        ),
        (
            "[servers.two]\ncommand = \"x\"\nargs = \"x\"\n".to_string(),
            "servers.two.args",
        ),
        (
            "[serve]\nmax_sessions = { n = 1 }\n".to_string(),
            "serve.max_sessions",
        ),
        (
            format!("{auth}key_file = \"not-a-key.pem\"\n"),
            "[auth] key_file",
        ),
        (
            "[serve]\ntls_cert = \"missing.pem\"\ntls_key = \"missing.key\"\n".to_string(),
            "[serve] tls_cert/tls_key",
        ),
    ];
    for (toml, field) in cases {
        let s = Setup::new(&format!("{toml}{server}"));
        std::fs::write(s.path("not-a-key.pem"), "not a key\n").unwrap();
        let out = s.config_check();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(field),
            "{toml}: should be refused naming {field}: {stderr}"
        );
    }
}
