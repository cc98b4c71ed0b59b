//! End to end: upstream lifecycle — slow start, crash and restart, oversized
//! replies, children dying with gavel, config mistakes.

use crate::common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn first_list_waits_for_a_slow_server() {
    let s = Setup::with(|s| {
        fixture_server("slowpoke", &["--slow-start-ms", "1500"], &s.path("r.jsonl"))
    });
    let client = s.connect(TestHost::new()).await;
    // initialize was answered before the upstream was up; the first list
    // waits for it (within startup_timeout) instead of answering empty.
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "echo"), "{tools:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_never_starts_fails_clearly_and_others_still_work() {
    let s = Setup::with(|s| {
        let cfg = format!(
            "{}[servers.ghost]\ncommand = \"/nonexistent/mcp-server\"\nstartup_timeout = \"2s\"\n",
            fixture_server("alive", &[], &s.path("r.jsonl"))
        );
        cfg
    });
    let client = s.connect(TestHost::new()).await;
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "alive__echo"));
    let r = call(&client, "alive__echo", json!({"text": "ok"}))
        .await
        .unwrap();
    assert_eq!(text(&r), "ok");
    eventually("the failure is logged with the server name", || {
        let log = s.log_text();
        log.contains("ghost") && log.contains("/nonexistent/mcp-server")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_fails_in_flight_call_then_restarts_and_session_survives() {
    let s = Setup::with(|s| fixture_server("fragile", &[], &s.path("r.jsonl")));
    let host = TestHost::new();
    let seen = host.seen.clone();
    let client = s.connect(host).await;
    client.list_all_tools().await.unwrap();
    let r = call(&client, "crash", json!({"code": 3})).await;
    match r {
        Err(e) => assert!(
            e.to_string().contains("fragile"),
            "error names the server: {e}"
        ),
        Ok(r) => assert_eq!(
            r.is_error,
            Some(true),
            "a crash must surface as an error: {}",
            text(&r)
        ),
    }
    // Restarted with backoff; the same session keeps working.
    let mut last = String::new();
    eventually("the server is back", || {
        let ok = futures_lite_block(call(&client, "echo", json!({"text": "again"})));
        last = format!("{ok:?}");
        matches!(ok, Ok(ref r) if text(r) == "again")
    })
    .await;
    assert!(
        s.log_text().contains("exited with code 3"),
        "crash diagnosis in the log"
    );
    assert!(
        seen.lock().unwrap().tool_list_changed > 0,
        "tools vanished and came back: host told"
    );
}

/// Runs a future to completion from a sync closure (used inside `eventually`).
fn futures_lite_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_upstream_reply_fails_the_call_not_the_session() {
    let s = Setup::with(|s| {
        let cfg = format!(
            "[limits]\nmax_message_bytes = \"1MiB\"\n\n{}",
            fixture_server("big", &[], &s.path("r.jsonl"))
        );
        cfg
    });
    let client = s.connect(TestHost::new()).await;
    let r = call(&client, "huge", json!({"bytes": 3_000_000})).await;
    let e = r.expect_err("an oversized reply is an error, never a hang");
    assert!(e.to_string().contains("max_message_bytes"), "{e}");
    let r = call(&client, "huge", json!({"bytes": 1000})).await.unwrap();
    assert_eq!(text(&r).len(), 1000);
}

#[tokio::test(flavor = "multi_thread")]
async fn children_die_with_gavel_even_on_sigkill() {
    let s = Setup::blank();
    let marker = format!("orphan-check-{}", std::process::id());
    s.write_config(&fixture_server(&marker, &[], &s.path("r.jsonl")));
    let mut child = std::process::Command::new(GAVEL)
        .args([
            "run",
            "--config",
            s.config().to_str().unwrap(),
            "--log-file",
            s.log().to_str().unwrap(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    let stdin = child.stdin.as_mut().unwrap();
    writeln!(stdin, r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-11-25","capabilities":{{}},"clientInfo":{{"name":"t","version":"1"}}}}}}"#).unwrap();
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#
    )
    .unwrap();
    let running = || {
        std::process::Command::new("pgrep")
            .args(["-f", &marker])
            .output()
            .map(|o| !o.stdout.is_empty())
            .unwrap_or(false)
    };
    eventually("the fixture started", running).await;
    child.kill().unwrap(); // SIGKILL: gavel gets no chance to clean up
    child.wait().unwrap();
    eventually("the fixture died with gavel", || !running()).await;
}

#[test]
fn config_mistakes_are_clear_errors() {
    let s = Setup::new("[servers.x]\ncommand = \"echo\"\nstartup_timout = \"5s\"\n");
    let out = s.config_check();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("startup_timout"), "names the field: {err}");
    assert!(err.contains(":3"), "names the line: {err}");

    let out = std::process::Command::new(GAVEL)
        .args(["run", "--config", "/nonexistent/servers.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/servers.toml"));
    assert!(out.stdout.is_empty(), "stdout belongs to the protocol");
}

#[test]
fn config_check_masks_secrets() {
    let s = Setup::new(
        "[servers.api]\nurl = \"https://user:hunter2@api.example.test/mcp\"\nheaders = { Authorization = \"Bearer sk-very-secret\" }\n\n[servers.local]\ncommand = \"echo\"\nenv = { API_TOKEN = \"tok-123456\", REGION = \"eu\", GITHUB_JWT = \"jwt-123456\", MY_BEARER = \"bear-123456\" }\n\n[servers.q]\nurl = \"https://q.example.test/mcp?jwt=qjwt-123456&page=2\"\n",
    );
    let out = s.config_check();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Secret names in any spelling (as the decision log masks them).
    for secret in [
        "hunter2",
        "sk-very-secret",
        "tok-123456",
        "jwt-123456",
        "bear-123456",
        "qjwt-123456",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    assert!(text.contains("eu"), "non-secrets stay visible: {text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_child_stderr_is_drained_into_the_log() {
    let s =
        Setup::with(|s| fixture_server("noisy", &["--stderr-lines", "20000"], &s.path("r.jsonl")));
    let client = s.connect(TestHost::new()).await;
    // ~2.5 MB of stderr would block an undrained child long before it served.
    let r = call(&client, "echo", json!({"text": "not blocked"}))
        .await
        .unwrap();
    assert_eq!(text(&r), "not blocked");
    eventually(
        "stderr lines reach gavel's log with the server name",
        || {
            let log = s.log_text();
            log.contains("server=noisy") && log.contains("stderr line 19999")
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn streamable_http_upstream_with_headers() {
    let s = Setup::blank();
    let (_fixture, url) = fixture_over_http("remote", &s.path("r.jsonl")).await;
    s.write_config(&format!(
        "[servers.remote]\nurl = \"{url}\"\nheaders = {{ X-Team = \"platform\" }}\n"
    ));
    let client = s.connect(TestHost::new()).await;
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "echo"));
    let r = call(&client, "echo", json!({"text": "over http"}))
        .await
        .unwrap();
    assert_eq!(text(&r), "over http");
    assert_eq!(recorded_calls(&s.path("r.jsonl")).len(), 1);
}

#[test]
fn import_writes_a_loadable_config_and_the_host_entry() {
    let s = Setup::new("[servers.placeholder]\ncommand = \"x\"\n");
    let host_cfg = s.path("claude_desktop_config.json");
    std::fs::write(
        &host_cfg,
        serde_json::to_string(&json!({"mcpServers": {
            "fixture": {"command": FIXTURE, "args": ["--name", "imported"], "env": {"A": "1"}, "autoApprove": ["echo"]},
            "remote": {"url": "https://mcp.example.test/mcp"}
        }}))
        .unwrap(),
    )
    .unwrap();
    let out_path = s.path("imported.toml");
    let out = std::process::Command::new(GAVEL)
        .arg("import")
        .arg(&host_cfg)
        .arg("-o")
        .arg(&out_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("autoApprove"),
        "names what it could not carry: {stdout}"
    );
    assert!(
        stdout.contains("\"mcpServers\"") && stdout.contains("\"run\""),
        "prints the host entry: {stdout}"
    );
    let check = std::process::Command::new(GAVEL)
        .args(["config", "check", "--config"])
        .arg(&out_path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    // Refuses to overwrite without --force.
    let again = std::process::Command::new(GAVEL)
        .arg("import")
        .arg(&host_cfg)
        .arg("-o")
        .arg(&out_path)
        .output()
        .unwrap();
    assert!(!again.status.success());
}

/// An HTTP upstream that dies in the middle of a call fails that call at
/// once, as a stdio crash does — not after `call_timeout` (600 s here; the
/// test's PATIENCE is 60 s). rmcp resumed the broken SSE stream forever.
#[tokio::test(flavor = "multi_thread")]
async fn an_http_upstream_dying_mid_call_fails_the_call_at_once() {
    let s = Setup::blank();
    let (mut fixture, url) = fixture_over_http("remote", &s.path("r.jsonl")).await;
    s.write_config(&format!(
        "[servers.remote]\nurl = \"{url}\"\ncall_timeout = \"600s\"\n"
    ));
    let client = s.connect(TestHost::new()).await;
    client.list_all_tools().await.unwrap();
    let r = tokio::time::timeout(PATIENCE, call(&client, "crash", json!({"code": 3})))
        .await
        .expect("the call fails long before its call_timeout");
    let _ = fixture.wait().await;
    let shown = match r {
        Err(e) => e.to_string(),
        Ok(r) => {
            assert_eq!(r.is_error, Some(true), "{}", text(&r));
            text(&r)
        }
    };
    // The stdio crash's error, word for word in shape.
    assert!(
        shown.contains("server \"remote\" closed the connection while handling tools/call"),
        "{shown}"
    );
}

/// What a wrapper starts in the background (`sh -c 'daemon & exec server'`)
/// dies with gavel on every exit gavel controls. The supervisor used to drop
/// the child at shutdown, and tokio's kill-on-drop reaches only the leader.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrappers_background_process_dies_with_gavel() {
    for exit in ["SIGTERM", "host EOF"] {
        let s = Setup::blank();
        let pidfile = s.path("daemon.pid");
        let script = format!(
            "sleep 300 & echo $! > {}; exec {FIXTURE} --name wrapped --record {}",
            pidfile.display(),
            s.path("r.jsonl").display()
        );
        s.write_config(&format!(
            "[servers.wrapped]\ncommand = \"sh\"\nargs = [\"-c\", {:?}]\n",
            script
        ));
        let (client, pid, mut gavel) = s.connect_with_pid(TestHost::new()).await;
        client.list_all_tools().await.unwrap();
        let daemon: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(alive(daemon), "{exit}: the background process runs");
        match exit {
            "SIGTERM" => unsafe {
                libc::kill(pid, libc::SIGTERM);
            },
            _ => {
                let _ = client.cancel().await;
            }
        }
        let status = tokio::time::timeout(PATIENCE, gavel.wait())
            .await
            .expect("gavel exits")
            .unwrap();
        assert!(status.success(), "{exit}: {status:?}");
        eventually(&format!("{exit}: the background process is gone"), || {
            !alive(daemon)
        })
        .await;
    }
}

/// The process exists and is not a zombie waiting to be reaped.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next().map(|r| r.trim().to_string()))
        .is_some_and(|rest| !rest.starts_with('Z') && !rest.starts_with('X'))
}

/// gavel on `s`'s config with a host that initializes it, starts one call
/// and then does not read gavel's stdout — the slowest host there is.
struct StalledHost {
    gavel: std::process::Child,
    /// Kept open: closing it would end the session (host EOF).
    _stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl StalledHost {
    fn start(s: &Setup, call: serde_json::Value) -> StalledHost {
        use std::io::{BufRead, Write};
        let mut gavel = std::process::Command::new(GAVEL)
            .args(s.run_args())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = gavel.stdin.take().unwrap();
        let mut stdout = std::io::BufReader::new(gavel.stdout.take().unwrap());
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {"roots": {}},
            "clientInfo": {"name": "stalled", "version": "1"}}});
        writeln!(stdin, "{init}").unwrap();
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(line.contains("\"id\":1"), "{line}");
        writeln!(
            stdin,
            r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#
        )
        .unwrap();
        let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call});
        writeln!(stdin, "{call}").unwrap();
        StalledHost {
            gavel,
            _stdin: stdin,
            stdout,
        }
    }

    /// gavel's peak resident memory (VmHWM), in bytes.
    fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.gavel.id())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status");
        kb * 1024
    }

    /// Starts reading again: the answer to the call (the session survived).
    fn answer(&mut self) -> serde_json::Value {
        use std::io::BufRead;
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                self.stdout.read_line(&mut line).unwrap() > 0,
                "gavel closed stdout"
            );
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            if v["id"] == 2 {
                return v;
            }
        }
    }
}

impl Drop for StalledHost {
    fn drop(&mut self) {
        let _ = self.gavel.kill();
        let _ = self.gavel.wait();
    }
}

/// A generous bound on gavel's peak memory: it idles at a few tens of MiB;
/// the floods below carry ~190 MiB, which gavel held whole before.
const FLOOD_RSS_BOUND: u64 = 128 << 20;

/// An upstream flooding `notifications/message` at a host that does not
/// read: gavel keeps reading the upstream, drops what cannot wait (counted,
/// logged) and its memory stays flat; the call's answer still arrives.
#[tokio::test(flavor = "multi_thread")]
async fn a_notification_flood_keeps_gavel_memory_flat() {
    let s = Setup::with(|s| fixture_server("noisy", &[], &s.path("r.jsonl")));
    let (count, bytes) = (12_000, 16 * 1024);
    let mut host = StalledHost::start(
        &s,
        json!({"name": "flood", "arguments": {"kind": "log", "count": count, "bytes": bytes}}),
    );
    eventually("the upstream sent its whole flood", || {
        records(&s.path("r.jsonl"))
            .iter()
            .any(|r| r["flood"] == "log")
    })
    .await;
    let peak = host.peak_rss();
    assert!(
        peak < FLOOD_RSS_BOUND,
        "gavel peaked at {} MiB under a {} MiB flood",
        peak >> 20,
        (count * bytes) >> 20
    );
    let answer = host.answer();
    assert_eq!(
        answer["result"]["content"][0]["text"],
        format!("flooded {count} log"),
        "{answer}"
    );
    eventually("the drops are logged with the server", || {
        let log = s.log_text();
        log.contains("dropped notifications from the upstream") && log.contains("server=noisy")
    })
    .await;
}

/// Upstream→host requests are bounded too: past the bound a request is
/// refused on its id at once instead of waiting (held) for a host that does
/// not answer.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_flood_is_refused_past_the_bound() {
    let s = Setup::with(|s| fixture_server("asker", &[], &s.path("r.jsonl")));
    let count = 500;
    let _host = StalledHost::start(
        &s,
        json!({"name": "flood", "arguments": {"kind": "roots", "count": count}}),
    );
    // All but the few allowed to wait are refused, while the host reads nothing.
    eventually("the requests past the bound are refused", || {
        let refused = records(&s.path("r.jsonl"))
            .iter()
            .filter(|r| {
                r["flood_reply"] == "error"
                    && r["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("refused roots/list"))
            })
            .count();
        refused >= count - 16
    })
    .await;
}
/// `gavel run` stopped by SIGTERM with a call in flight says so on stderr,
/// and blames no one else: neither its log nor the cancellation the
/// upstream gets says the agent host cancelled the call (gavel cancels
/// every request in flight when it stops, through the same path as a
/// host's cancellation).
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_is_logged_as_sigterm_not_as_the_host_cancelling() {
    let s = Setup::with(|s| fixture_server("fx", &[], &s.path("r.jsonl")));
    let stderr = std::fs::File::create(s.path("stderr.txt")).unwrap();
    let mut child = tokio::process::Command::new(GAVEL)
        .args(["run", "--config", s.config().to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap() as i32;
    let io = (child.stdout.take().unwrap(), child.stdin.take().unwrap());
    let client = tokio::time::timeout(PATIENCE, rmcp::ServiceExt::serve(TestHost::new(), io))
        .await
        .unwrap()
        .unwrap();
    client.list_all_tools().await.unwrap();
    let in_flight = tokio::spawn({
        let peer = client.peer().clone();
        async move {
            let mut p = rmcp::model::CallToolRequestParams::new("slow");
            p.arguments = json!({"ms": 600_000}).as_object().cloned();
            peer.call_tool(p).await
        }
    });
    eventually("the upstream has the call", || {
        recorded_calls(&s.path("r.jsonl"))
            .iter()
            .any(|c| c["params"]["name"] == "slow")
    })
    .await;
    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("gavel stops on SIGTERM")
        .unwrap();
    let _ = in_flight.await;
    let log = std::fs::read_to_string(s.path("stderr.txt")).unwrap();
    assert!(log.contains("stopped by SIGTERM"), "{log}");
    assert!(!log.contains("agent host"), "{log}");
    for n in records(&s.path("r.jsonl")) {
        if n["method"] == "notifications/cancelled" {
            let reason = n["params"]["reason"].as_str().unwrap_or_default();
            assert!(reason.contains("SIGTERM"), "{n}");
        }
    }
}
