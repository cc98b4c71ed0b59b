//! End to end: how `gavel serve` listens and stops — the `[serve]` table
//! and its flags, no plain HTTP on a public address, bounded bodies, and
//! the drain at SIGTERM (in-flight calls answered, new connections refused);
//! connection limits (header and body timeouts, the connection cap,
//! TCP_NODELAY) and the idle-session timeout.

use crate::common;

use common::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn no_plain_http_on_a_public_address() {
    let s = Setup::with(|s| fixture_server("fx", &[], &s.path("r.jsonl")));
    let out = tokio::process::Command::new(GAVEL)
        .args(["serve", "--config"])
        .arg(s.config())
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--behind-proxy"), "{err}");
    // The same from [serve], and the message names the config keys too.
    s.write_config(&format!(
        "[serve]\nlisten = \"0.0.0.0:0\"\n\n{}",
        fixture_server("fx", &[], &s.path("r.jsonl"))
    ));
    let out = tokio::process::Command::new(GAVEL)
        .args(["serve", "--config"])
        .arg(s.config())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to serve plain HTTP on 0.0.0.0")
            && err.contains("[serve] behind_proxy = true")
            && err.contains("[serve] tls_cert"),
        "{err}"
    );
}

/// `gavel serve --config` with no --listen: the address comes from
/// `[serve]`. Returns the process and the address it reports serving at.
async fn serve_from_config(
    s: &Setup,
    env: &[(&str, &str)],
) -> (tokio::process::Child, std::net::SocketAddr) {
    let child = tokio::process::Command::new(GAVEL)
        .args(["serve", "--config"])
        .arg(s.config())
        .arg("--log-file")
        .arg(s.log())
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr = serving_address(&s.log()).await;
    (child, addr)
}

/// `[serve] listen` on port 0: the OS picks the port as gavel binds (no
/// other process can take it between a pick and the bind), and gavel
/// reports the address it got, never `:0`, where tests and operators look:
/// its log line and its instance status file (`gavel status`). A host
/// reaches it there.
#[tokio::test(flavor = "multi_thread")]
async fn port_0_binds_a_port_the_os_picks_and_reports_the_real_address() {
    let s = Setup::with(|s| {
        format!(
            "[serve]\nlisten = \"127.0.0.1:0\"\n\n{}",
            fixture_server("fx", &[], &s.path("r.jsonl"))
        )
    });
    let state = s.path("state");
    let (mut gavel, addr) =
        serve_from_config(&s, &[("GAVEL_STATE_DIR", state.to_str().unwrap())]).await;
    assert!(
        addr.ip().is_loopback() && addr.port() != 0,
        "serving at {addr}: {}",
        s.log_text()
    );
    let url = format!("http://{addr}/mcp");
    let instance = state.join(format!("instances/{}.json", gavel.id().unwrap()));
    let mut status = Value::Null;
    eventually("gavel writes its instance status", || {
        status = std::fs::read_to_string(&instance)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        !status.is_null()
    })
    .await;
    assert_eq!(status["serving"], json!(url), "{status}");
    // The reported address answers: a host initializes and calls a tool.
    let client = http_client(&url, None, None).await;
    let r = call(&client, "echo", json!({"text": "via port 0"}))
        .await
        .unwrap();
    assert_eq!(text(&r), "via port 0");
    client.cancel().await.unwrap();
    unsafe { libc::kill(gavel.id().unwrap() as i32, libc::SIGTERM) };
    assert!(gavel.wait().await.unwrap().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_serve_table_configures_listen_hosts_and_the_proxy_escape() {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
    // behind_proxy: a public address over plain HTTP is allowed; an extra
    // allowed host is accepted, others still refused.
    let s = Setup::with(|s| {
        format!(
            "[serve]\nlisten = \"0.0.0.0:0\"\nbehind_proxy = true\nallowed_hosts = [\"gavel.internal\"]\n\n{}",
            fixture_server("fx", &[], &s.path("r.jsonl"))
        )
    });
    let (mut gavel, addr) = serve_from_config(&s, &[]).await;
    let port = addr.port();
    assert!(
        addr.ip().is_unspecified() && port != 0,
        "serving at {addr}: {}",
        s.log_text()
    );
    let r = raw_post(port, "gavel.internal", None, &init).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let r = raw_post(port, &format!("gavel.internal:{port}"), None, &init).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let r = raw_post(port, "127.0.0.1", None, &init).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let r = raw_post(port, "evil.example", None, &init).await;
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    unsafe { libc::kill(gavel.id().unwrap() as i32, libc::SIGTERM) };
    assert!(gavel.wait().await.unwrap().success());

    // A flag overrides the table: the config's public address without a
    // proxy would be refused, --listen puts it on loopback; --allowed-host
    // adds to the table's hosts.
    let s = Setup::with(|s| {
        format!(
            "[serve]\nlisten = \"0.0.0.0:8443\"\nallowed_hosts = [\"from-config.internal\"]\n\n{}",
            fixture_server("fx", &[], &s.path("r.jsonl"))
        )
    });
    let (mut gavel, port) =
        gavel_serve_with(&s, &[], &["--allowed-host", "from-flag.internal"]).await;
    for host in ["from-config.internal", "from-flag.internal"] {
        let r = raw_post(port, host, None, &init).await;
        assert!(r.starts_with("HTTP/1.1 200"), "{host}: {r}");
    }
    unsafe { libc::kill(gavel.id().unwrap() as i32, libc::SIGTERM) };
    assert!(gavel.wait().await.unwrap().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_in_flight_calls_over_http_and_https() {
    for tls in [false, true] {
        let s = Setup::with(|s| fixture_server("fx", &[], &s.path("r.jsonl")));
        let pki = tls.then(|| test_pki(&s));
        let mut extra = vec![];
        if let Some((cert, key, _)) = &pki {
            extra = vec![
                "--tls-cert".to_string(),
                cert.display().to_string(),
                "--tls-key".into(),
                key.display().to_string(),
            ];
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let (mut gavel, port) = gavel_serve_with(&s, &[], &extra).await;
        let scheme = if tls { "https" } else { "http" };
        let url = format!("{scheme}://127.0.0.1:{port}/mcp");
        let client = http_client(&url, pki.as_ref().map(|p| p.2.as_path()), None).await;

        // A call held open by the fixture until the test creates `gate`.
        let gate = s.path("gate");
        let slow = {
            let peer = client.peer().clone();
            let mut p = rmcp::model::CallToolRequestParams::new("slow");
            p.arguments = json!({"ms": 120_000, "until": gate.display().to_string()})
                .as_object()
                .cloned();
            tokio::spawn(async move { peer.call_tool(p).await })
        };
        eventually("the slow call reached the upstream", || {
            recorded_calls(&s.path("r.jsonl"))
                .iter()
                .any(|r| r["params"]["name"] == "slow")
        })
        .await;
        unsafe { libc::kill(gavel.id().unwrap() as i32, libc::SIGTERM) };
        // Draining: new connections are refused while the call is in flight.
        let start = std::time::Instant::now();
        loop {
            match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
                _ => assert!(start.elapsed() < PATIENCE, "{scheme}: still accepting"),
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(
            gavel.try_wait().unwrap().is_none(),
            "{scheme}: gavel waits for the call"
        );
        assert!(!slow.is_finished(), "{scheme}: the call is still in flight");
        // The upstream finishes: the host gets the answer, then gavel exits 0.
        std::fs::write(&gate, "").unwrap();
        let r = slow.await.unwrap().expect("the in-flight call is answered");
        assert_eq!(
            text(&r),
            format!("released by {}", gate.display()),
            "{scheme}"
        );
        let status = tokio::time::timeout(PATIENCE, gavel.wait())
            .await
            .expect("gavel exits after the drain")
            .unwrap();
        assert!(status.success(), "{scheme}: {status:?}");
        assert!(
            s.log_text().contains("finishing in-flight requests"),
            "{scheme}"
        );
        drop(client);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_body_is_refused_and_nothing_is_forwarded() {
    let s = Setup::with(|s| {
        format!(
            "[limits]\nmax_message_bytes = \"64KiB\"\n\n{}",
            fixture_server("fx", &[], &s.path("r.jsonl"))
        )
    });
    let (mut gavel, port) = gavel_serve(&s, &[]).await;
    let url = format!("http://127.0.0.1:{port}/mcp");
    let client = http_client(&url, None, None).await;
    // Over the limit: refused at the door, the session survives.
    let big = "x".repeat(100 << 10);
    let r = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"name": "echo", "arguments": {"text": big}}})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let why = r.text().await.unwrap();
    assert!(why.contains("limits.max_message_bytes"), "{why}");
    // Under it: served.
    let ok = call(&client, "echo", json!({"text": "x".repeat(1000)}))
        .await
        .unwrap();
    assert_eq!(text(&ok).len(), 1000);
    let calls = recorded_calls(&s.path("r.jsonl"));
    assert_eq!(calls.len(), 1, "only the small call reached the upstream");
    client.cancel().await.unwrap();
    unsafe { libc::kill(gavel.id().unwrap() as i32, libc::SIGTERM) };
    assert!(gavel.wait().await.unwrap().success());
}

/// With bearer tokens on, the session cap is checked after the token: a
/// caller without a valid token gets 401 and its challenge even when gavel
/// is full (it learns nothing of the cap), and a valid token gets the 503.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_gavel_still_answers_401_to_a_caller_without_a_token() {
    let s = Setup::blank();
    let port = free_port();
    let audience = format!("http://127.0.0.1:{port}/mcp");
    s.write_config(&format!(
        "{}\n{}",
        hs256_auth(&audience),
        fixture_server("fx", &[], &s.path("r.jsonl")),
    ));
    let mut gavel = gavel_serve_at(
        &s,
        port,
        &[("GAVEL_E2E_JWT_SECRET", JWT_SECRET)],
        &["--max-sessions", "1"],
    )
    .await;
    let bearer = hs256_token(
        json!({"iss": "https://idp.example.test", "aud": audience, "exp": unix_now() + 600, "sub": "ada"}),
        JWT_SECRET,
    );
    let url = format!("http://127.0.0.1:{port}/mcp");
    let a = http_client(&url, None, Some(&bearer)).await;
    call(&a, "echo", json!({"text": "a"})).await.unwrap();

    let r = post_init(port, None).await;
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    assert!(!r.contains("max-sessions"), "{r}");
    let r = post_init(port, Some("not-a-token")).await;
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    let r = post_init(port, Some(&bearer)).await;
    assert!(r.starts_with("HTTP/1.1 503"), "{r}");
    assert!(r.contains("--max-sessions"), "{r}");

    a.cancel().await.unwrap();
    gavel.kill().await.unwrap();
}

/// A POST head that promises `len` bytes of body, with `extra` headers.
fn post_head(port: u16, len: usize, extra: &str) -> String {
    format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {len}\r\n\r\n"
    )
}

/// Connections are bounded before any request is decided: a half-sent
/// head is disconnected after `[serve] header_timeout`, a body that stalls
/// gets 408 after `body_timeout`, and gavel still serves the next client.
#[tokio::test(flavor = "multi_thread")]
async fn slow_and_half_sent_requests_are_cut_off() {
    let s = Setup::with(|s| {
        format!(
            "[serve]\nheader_timeout = \"1s\"\nbody_timeout = \"1s\"\n\n{}",
            fixture_server("fx", &[], &s.path("r.jsonl"))
        )
    });
    let (mut gavel, port) = gavel_serve(&s, &[]).await;
    // Half a head, then silence: closed without an answer.
    let mut half = raw_partial(
        port,
        &format!("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-"),
    )
    .await;
    let said = until_closed(&mut half).await;
    assert!(!said.contains("200 OK"), "{said}");
    // Nothing at all: closed too.
    let mut silent = raw_partial(port, "").await;
    until_closed(&mut silent).await;
    // A whole head and a tenth of the body: 408, naming the key.
    let mut slow = raw_partial(port, &format!("{}{{\"jsonrpc\"", post_head(port, 100, ""))).await;
    let said = until_closed(&mut slow).await;
    assert!(said.starts_with("HTTP/1.1 408"), "{said}");
    assert!(said.contains("[serve] body_timeout"), "{said}");
    // Served as ever.
    let client = http_client(&format!("http://127.0.0.1:{port}/mcp"), None, None).await;
    call(&client, "echo", json!({"text": "still here"}))
        .await
        .unwrap();
    assert_eq!(recorded_calls(&s.path("r.jsonl")).len(), 1);
    client.cancel().await.unwrap();
    gavel.kill().await.unwrap();
}

/// `[serve] max_connections`: one connection over the cap gets 503 naming
/// the key (it is not left hanging); once one closes, the next is served.
#[tokio::test(flavor = "multi_thread")]
async fn connections_over_the_cap_are_refused() {
    let s = Setup::with(|s| {
        format!(
            "[serve]\nmax_connections = 2\n\n{}",
            fixture_server("fx", &[], &s.path("r.jsonl"))
        )
    });
    let (mut gavel, port) = gavel_serve(&s, &[]).await;
    let first = raw_partial(port, "POST /mcp HTTP/1.1\r\n").await;
    let _second = raw_partial(port, "POST /mcp HTTP/1.1\r\n").await;
    let r = post_init(port, None).await;
    assert!(r.starts_with("HTTP/1.1 503"), "{r}");
    assert!(r.contains("[serve] max_connections"), "{r}");
    drop(first);
    let start = std::time::Instant::now();
    loop {
        let r = post_init(port, None).await;
        if r.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(start.elapsed() < PATIENCE, "no slot came free: {r}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    gavel.kill().await.unwrap();
}

/// A session with no message for `[serve] session_idle_timeout` is closed,
/// and its upstream process stops with it; its id is then unknown.
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_session_is_closed_and_its_upstream_stops() {
    let s = Setup::blank();
    let marker = format!("idle-check-{}", std::process::id());
    s.write_config(&format!(
        "[serve]\nsession_idle_timeout = \"2s\"\n\n{}",
        fixture_server(&marker, &[], &s.path("r.jsonl"))
    ));
    let (mut gavel, port) = gavel_serve(&s, &[]).await;
    let running = || {
        std::process::Command::new("pgrep")
            .args(["-f", &marker])
            .output()
            .map(|o| !o.stdout.is_empty())
            .unwrap_or(false)
    };
    let client = http_client(&format!("http://127.0.0.1:{port}/mcp"), None, None).await;
    call(&client, "echo", json!({"text": "once"}))
        .await
        .unwrap();
    assert!(running(), "the session's fixture runs");
    eventually("the idle session's upstream stopped", || !running()).await;
    eventually("the idle close is logged", || {
        std::fs::read_to_string(s.log())
            .unwrap_or_default()
            .contains("HTTP session closed after no message for its idle timeout")
    })
    .await;
    drop(client);
    gavel.kill().await.unwrap();
}

/// Every accepted socket has TCP_NODELAY (plain and TLS): without it each
/// answer on a kept-alive connection waits for the client's delayed ACK.
#[tokio::test(flavor = "multi_thread")]
async fn accepted_sockets_have_nodelay_plain_and_tls() {
    let s = Setup::with(|s| fixture_server("fx", &[], &s.path("r.jsonl")));
    let (mut plain, port) = gavel_serve(&s, &[]).await;
    let conn = raw_partial(port, "").await;
    assert!(server_side_nodelay(plain.id().unwrap(), &conn).await);
    plain.kill().await.unwrap();

    let (cert, key, _) = test_pki(&s);
    let log = s.path("tls.log");
    let (mut tls, port) = gavel_serve_logged(
        &s.config(),
        &log,
        "127.0.0.1:0",
        &[],
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    )
    .await;
    let conn = raw_partial(port, "").await;
    assert!(server_side_nodelay(tls.id().unwrap(), &conn).await);
    tls.kill().await.unwrap();
}

/// `DELETE` as the spec says: 204 for an open session (the official Python
/// SDK, which closes its session on exit, logs no "Session termination
/// failed"), 404 for one that is closed or never was; each ending logged.
#[tokio::test(flavor = "multi_thread")]
async fn delete_answers_as_the_spec_says_and_every_ending_is_logged() {
    let s = Setup::with(|s| fixture_server("fx", &[], &s.path("r.jsonl")));
    let (mut gavel, port) = gavel_serve(&s, &[]).await;
    let url = format!("http://127.0.0.1:{port}/mcp");
    let py = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".deps/venv/bin/python");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/python_session.py");
    let out = tokio::process::Command::new(&py)
        .arg(&script)
        .args([url.as_str(), "via python"])
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success() && stdout.contains("via python"),
        "{stdout}{stderr}"
    );
    assert!(!stderr.contains("Session termination failed"), "{stderr}");
    eventually("the client's DELETE is logged", || {
        std::fs::read_to_string(s.log())
            .unwrap_or_default()
            .contains("HTTP session closed by its client (DELETE)")
    })
    .await;

    let init = post_init(port, None).await;
    let id = init
        .lines()
        .find_map(|l| l.strip_prefix("mcp-session-id: "))
        .expect("a session id")
        .trim()
        .to_string();
    let delete = |id: String| async move {
        raw_request(
            port,
            &format!(
                "DELETE /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nmcp-session-id: {id}\r\nConnection: close\r\n\r\n"
            ),
        )
        .await
    };
    let first = delete(id.clone()).await;
    assert!(first.starts_with("HTTP/1.1 204"), "{first}");
    let again = delete(id).await;
    assert!(again.starts_with("HTTP/1.1 404"), "{again}");
    let unknown = delete("no-such-session".into()).await;
    assert!(unknown.starts_with("HTTP/1.1 404"), "{unknown}");
    gavel.kill().await.unwrap();
}
