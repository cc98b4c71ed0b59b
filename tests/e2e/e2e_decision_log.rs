//! End to end: the decision log's operational guarantees through the real
//! binary — every answered call's record there after `kill -9`, reopening
//! on SIGHUP (`gavel run` and `gavel serve`), failing closed when a record
//! cannot be written, and rotation at a configured size.

use crate::common;

use common::metrics::*;
use common::policy::*;
use common::tmpfs;
use common::*;
use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn serve_survives_sighup_and_reopens_the_decision_log() {
    let s = Setup::with(|s| config(s, &[&fixture_bundle()], "", ""));
    let state = s.path("state");
    let (mut gavel, port) = gavel_serve(&s, &[("GAVEL_STATE_DIR", state.to_str().unwrap())]).await;
    let client = TestHost::new()
        .serve(StreamableHttpClientTransport::from_uri(format!(
            "http://127.0.0.1:{port}/mcp"
        )))
        .await
        .unwrap();
    call(&client, "echo", json!({"text": "before"}))
        .await
        .unwrap();
    std::fs::rename(s.path("decisions.jsonl"), s.path("decisions.jsonl.old")).unwrap();
    let pid = gavel.id().unwrap() as i32;
    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    eventually("gavel reopened the log", || {
        s.log_text().contains("decision log reopened")
    })
    .await;
    assert!(
        gavel.try_wait().unwrap().is_none(),
        "gavel serve must survive SIGHUP"
    );
    let r = call(&client, "echo", json!({"text": "after"}))
        .await
        .unwrap();
    assert_eq!(text(&r), "after");
    let new = s.decisions();
    assert_eq!(new.len(), 1, "{new:?}");
    assert_eq!(
        new[0]["input"]["action"]["args"]["text"],
        "**masked-by-bundle**"
    );
    let old = records(&s.path("decisions.jsonl.old"));
    assert_eq!(old.len(), 1, "the first record stayed in the moved file");
    assert_ne!(old[0]["decision_id"], new[0]["decision_id"]);
    client.cancel().await.unwrap();
    gavel.kill().await.unwrap();
}

/// `gavel run` on `s` with `--metrics-listen` on a free port.
async fn run_with_metrics(s: &Setup) -> (Client, u16) {
    let port = free_port();
    let mut cmd = tokio::process::Command::new(GAVEL);
    cmd.args(s.run_args())
        .args(["--metrics-listen", &format!("127.0.0.1:{port}")]);
    let client = connect_cmd(cmd, TestHost::new()).await;
    (client, port)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_that_cannot_be_written_denies_the_request() {
    let s = Setup::with(|s| {
        // /dev/full accepts the open and fails every write with ENOSPC (root
        // can write anywhere, so permissions would not test this).
        config(s, &[&fixture_bundle()], "", "").replace(
            &format!("{:?}", s.path("decisions.jsonl").display().to_string()),
            "\"/dev/full\"",
        )
    });
    let (client, port) = run_with_metrics(&s).await;
    client.list_all_tools().await.unwrap();
    let before = scrape(port).await;
    let r = call(&client, "echo", json!({"text": "unrecorded"}))
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true), "{}", text(&r));
    let d = &r.meta.as_ref().unwrap().0["dev.gavel/decision"];
    assert_eq!(d["reasons"], json!(["audit_unavailable"]), "{d}");
    assert!(d["allow"] == false && d["decision_id"].is_string(), "{d}");
    let remediation = d["remediation"].as_str().unwrap();
    assert!(remediation.contains("/dev/full"), "{remediation}");
    // A non-tool request is refused the same way (a JSON-RPC error).
    let e = client
        .peer()
        .read_resource(rmcp::model::ReadResourceRequestParams::new(
            "fixture://static/hello",
        ))
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), Some(403), "{e}");
    assert!(e.to_string().contains("audit_unavailable"), "{e}");
    let seen = records(&s.path("r.jsonl"));
    assert!(
        !seen
            .iter()
            .any(|v| v["method"] == "tools/call" || v["method"] == "resources/read"),
        "the upstream never saw an unrecorded request: {seen:?}"
    );
    let after = scrape(port).await;
    let moved = |series: &str| value(&after, series) - value(&before, series);
    assert_eq!(
        moved("gavel_decision_log_write_errors_total"),
        2.0,
        "{after}"
    );
    assert_eq!(
        moved(r#"gavel_denials_total{server="fx",reason="audit_unavailable"}"#),
        2.0,
        "{after}"
    );
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn on_write_error_allow_carries_out_unrecorded_and_says_so() {
    let s = Setup::with(|s| {
        config(s, &[&fixture_bundle()], "", "").replace(
            &format!("{:?}", s.path("decisions.jsonl").display().to_string()),
            "\"/dev/full\"\non_write_error = \"allow\"",
        )
    });
    let client = s.connect(TestHost::new()).await;
    let r = call(&client, "echo", json!({"text": "through"}))
        .await
        .unwrap();
    assert_eq!(text(&r), "through");
    assert_eq!(recorded_calls(&s.path("r.jsonl")).len(), 1);
    let log = s.log_text();
    assert!(
        log.contains("on_write_error = \"allow\"") && log.contains("UNRECORDED"),
        "announced at startup: {log}"
    );
    client.cancel().await.unwrap();
    // `gavel config check` names it too.
    let out = s.config_check();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("on_write_error"), "{stderr}");
    assert!(stdout_ok(out).contains("on_write_error = \"allow\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_decision_log_rules_deny_instead_of_dropping_the_record() {
    let s = Setup::blank();
    // `drop` has two values for echo "bad": an evaluation error in the log rules.
    let b = bundle(
        s.dir.path(),
        "conflict",
        "p",
        json!({}),
        "package p\ndecision := {\"allow\": true}\n",
    );
    std::fs::create_dir_all(b.join("p/log")).unwrap();
    std::fs::write(
        b.join("p/log/log.rego"),
        "package p.log\nbad if input.input.action.args.text == \"bad\"\ndrop := true if bad\ndrop := false if bad\n",
    )
    .unwrap();
    // One echo a day: a refused call must not spend it.
    let limit = "[[servers.fx.limits]]\nscope = \"tool\"\ntool = \"echo\"\nrate = 1\nper = \"1day\"\nburst = 1\n";
    let state = format!(
        "[state]\npath = {:?}\n",
        s.path("state.sqlite").display().to_string()
    );
    s.write_config(&config(&s, &[&b], limit, &state));
    let client = s.connect(TestHost::new()).await;
    let r = call(&client, "echo", json!({"text": "bad"})).await.unwrap();
    let d = &r.meta.as_ref().unwrap().0["dev.gavel/decision"];
    assert_eq!(d["reasons"], json!(["audit_unavailable"]), "{d}");
    assert!(
        d["remediation"].as_str().unwrap().contains("log rules"),
        "{d}"
    );
    assert!(recorded_calls(&s.path("r.jsonl")).is_empty());
    // Its rate-limit charge was given back: the day's one echo still goes.
    let ok = call(&client, "echo", json!({"text": "good"}))
        .await
        .unwrap();
    assert_eq!(text(&ok), "good", "{ok:?}");
    let calls = recorded_calls(&s.path("r.jsonl"));
    assert_eq!(
        calls.len(),
        1,
        "only the recorded call went through: {calls:?}"
    );
    let log = s.decisions();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["result"]["allow"], true);
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_log_rotates_at_the_configured_size_and_keeps_its_generations() {
    let s = Setup::with(|s| {
        config(s, &[&fixture_bundle()], "", "").replace(
            "max_arg_bytes = 256\n",
            "max_arg_bytes = 256\nrotate_bytes = \"4KiB\"\nrotate_keep = 2\n",
        )
    });
    let client = s.connect(TestHost::new()).await;
    for i in 0..30 {
        call(&client, "echo", json!({"text": format!("call {i}")}))
            .await
            .unwrap();
    }
    let rotated = |n: u32| s.path(&format!("decisions.jsonl.{n}"));
    assert!(
        rotated(1).exists() && rotated(2).exists(),
        "two generations kept"
    );
    assert!(!rotated(3).exists(), "the oldest is dropped");
    let current = s.path("decisions.jsonl");
    assert!(std::fs::metadata(&current).unwrap().len() <= 4096 + 2048);
    // Every file holds whole records (`records` parses each line); the
    // current file may be empty right after a rotation.
    let kept: usize = [current, rotated(1), rotated(2)]
        .iter()
        .map(|f| records(f).len())
        .sum();
    assert!(kept > 0 && kept < 30, "older records rotated away: {kept}");
    client.cancel().await.unwrap();
}

/// On a real full filesystem (a small tmpfs): a record the disk has no
/// room for denies its call (`audit_unavailable`) and leaves no fragment —
/// once space is back, the next record is a line of its own and the whole
/// log reads line by line. Before, the part of the refused record that fit
/// stayed in the file and the next record was glued onto it.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_denies_and_leaves_no_fragment_in_the_log() {
    let Some(fs) = tmpfs::Tmpfs::mount(
        256 * 1024,
        "a_full_disk_denies_and_leaves_no_fragment_in_the_log",
    ) else {
        return;
    };
    let s = Setup::blank();
    let log = fs.path().join("decisions.jsonl");
    let cfg = config(&s, &[&fixture_bundle()], "", "").replace(
        &format!("{:?}", s.path("decisions.jsonl").display().to_string()),
        &format!("{:?}", log.display().to_string()),
    );
    s.write_config(&cfg);
    let client = s.connect(TestHost::new()).await;
    client.list_all_tools().await.unwrap();
    // Secret argument names in the spellings clients use are masked.
    let secrets = json!({"text": "before", "x-api-key": "k-1", "privateKey": "k-2", "jwt": "k-3", "bearer": "k-4", "credentials": "k-5", "access-key": "k-6", "auth": "k-7"});
    let r = call(&client, "echo", secrets).await.unwrap();
    assert_eq!(text(&r), "before");
    let logged = std::fs::read_to_string(&log).unwrap();
    for secret in ["k-1", "k-2", "k-3", "k-4", "k-5", "k-6", "k-7"] {
        assert!(!logged.contains(secret), "{secret} leaked: {logged}");
    }
    // Over a page of arguments (each under max_arg_bytes, so logged as
    // they are): the record never fits in the room left in the log's last
    // page, so on the full filesystem it is cut short.
    let mut big = serde_json::Map::new();
    big.insert("text".into(), json!("refused"));
    for i in 0..40 {
        big.insert(format!("a{i}"), json!("x".repeat(200)));
    }
    let filler = fs.fill();
    let r = call(&client, "echo", serde_json::Value::Object(big))
        .await
        .unwrap();
    let d = &r.meta.as_ref().unwrap().0["dev.gavel/decision"];
    assert_eq!(d["reasons"], json!(["audit_unavailable"]), "{d}");
    std::fs::remove_file(filler).unwrap();
    let r = call(&client, "echo", json!({"text": "after"}))
        .await
        .unwrap();
    assert_eq!(
        text(&r),
        "after",
        "space is back: the call is recorded and made"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let recs: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not one whole record ({e}): {l:?}"))
        })
        .collect();
    assert_eq!(recs.len(), 2, "{text}");
    assert!(recs.iter().all(|r| r["result"]["allow"] == true), "{text}");
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn decision_records_survive_kill_9() {
    let s = Setup::with(|s| config(s, &[&fixture_bundle()], "", ""));
    let (client, pid, mut child) = s.connect_with_pid(TestHost::new()).await;
    for i in 0..5 {
        call(&client, "echo", json!({"text": format!("n{i}")}))
            .await
            .unwrap();
    }
    call(&client, "destructive_delete", json!({"path": "/"}))
        .await
        .unwrap();
    // SIGKILL: no flush, no exit handler. Every answered call's record is there.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = child.wait().await;
    let log = s.decisions();
    assert_eq!(log.len(), 6, "{log:?}");
    assert_eq!(
        log.iter().filter(|r| r["result"]["allow"] == false).count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reopens_the_decision_log_after_rotation() {
    let s = Setup::with(|s| config(s, &[&fixture_bundle()], "", ""));
    let (client, pid, _child) = s.connect_with_pid(TestHost::new()).await;
    call(&client, "echo", json!({"text": "before"}))
        .await
        .unwrap();
    std::fs::rename(s.path("decisions.jsonl"), s.path("decisions.jsonl.old")).unwrap();
    unsafe { libc::kill(pid, libc::SIGHUP) };
    eventually("gavel reopened the log", || {
        s.log_text().contains("decision log reopened")
    })
    .await;
    call(&client, "echo", json!({"text": "after"}))
        .await
        .unwrap();
    let new = s.decisions();
    assert_eq!(new.len(), 1, "{new:?}");
    let old = std::fs::read_to_string(s.path("decisions.jsonl.old")).unwrap();
    assert_eq!(
        old.lines().count(),
        1,
        "the first record stayed in the rotated file"
    );
    assert!(!old.contains(new[0]["decision_id"].as_str().unwrap()));
}
